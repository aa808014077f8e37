use std::collections::BTreeMap;

use super::*;
use crate::Participant;

fn in_call() -> ClientState {
    ClientState { call: Some(CallState::joining("home", "lobby")), ..ClientState::default() }
}

fn saved(identity: &str) -> u32 {
    if identity == "alice" { 50 } else { 100 }
}

fn call(state: &ClientState) -> &CallState {
    state.call.as_ref().expect("the state should hold a call")
}

#[test]
fn joined_participants_get_their_saved_volume() {
    let mut state = in_call();
    let joined = SessionEvent::Joined {
        room: "lobby".into(),
        identity: "me".into(),
        participants: vec![Participant { identity: "alice".into(), name: "Alice".into(), can_publish: true }],
        encryption: CallEncryption::None,
    };
    assert!(apply_session_event(&mut state, &joined, &saved), "joining changes the state");
    apply_session_event(
        &mut state,
        &SessionEvent::ParticipantJoined { identity: "bob".into(), name: String::new(), can_publish: true },
        &saved,
    );
    let participants = &call(&state).participants;
    assert_eq!(participants.len(), 2, "alice and bob should be listed: {participants:?}");
    assert_eq!((participants[0].name.as_str(), participants[0].volume), ("Alice", 50), "alice at her saved 50 %");
    assert_eq!((participants[1].name.as_str(), participants[1].volume), ("bob", 100), "bob named by identity, 100 %");
    assert_eq!(call(&state).identity.as_deref(), Some("me"), "our identity should be known once joined");
}

#[test]
fn levels_are_told_apart_from_the_rest_of_the_state() {
    let mut before = in_call();
    let participant = |identity: &str| SessionEvent::ParticipantJoined {
        identity: identity.into(),
        name: String::new(),
        can_publish: true,
    };
    apply_session_event(&mut before, &participant("bob"), &saved);
    apply_session_event(&mut before, &participant("alice"), &saved);
    let mut louder = before.clone();
    let levels = SessionEvent::Levels {
        input_dbfs: -30.0,
        participants: BTreeMap::from([("alice".to_string(), -12.5), ("bob".to_string(), -40.0)]),
    };
    apply_session_event(&mut louder, &levels, &saved);
    assert_eq!(louder.levels(), Levels { input_dbfs: -30.0, participants: vec![-40.0, -12.5] }, "bob first");
    assert!(louder.same_apart_from_levels(&before), "only levels changed");
    assert!(!apply_session_event(&mut louder, &levels, &saved), "the same levels again are no change");
    let mut muted = louder.clone();
    apply_session_event(&mut muted, &SessionEvent::TrackMuted { identity: "bob".into(), sid: "TR".into() }, &saved);
    assert!(!muted.same_apart_from_levels(&louder), "bob's mute is more than a level");
    assert_eq!(ClientState::default().levels(), Levels { input_dbfs: SILENCE_DBFS, participants: vec![] });
}

#[test]
fn speaking_levels_mutes_and_departures_reach_the_participant() {
    let mut state = in_call();
    apply_session_event(
        &mut state,
        &SessionEvent::ParticipantJoined { identity: "bob".into(), name: "Bob".into(), can_publish: true },
        &saved,
    );
    apply_session_event(&mut state, &SessionEvent::ActiveSpeakers { identities: vec!["bob".into()] }, &saved);
    let levels = SessionEvent::Levels { input_dbfs: -30.0, participants: BTreeMap::from([("bob".to_string(), -12.5)]) };
    apply_session_event(&mut state, &levels, &saved);
    apply_session_event(&mut state, &SessionEvent::TrackMuted { identity: "bob".into(), sid: "TR".into() }, &saved);
    let bob = &call(&state).participants[0];
    assert!(bob.speaking && bob.muted, "bob should be speaking and muted: {bob:?}");
    assert_eq!(bob.level_dbfs, -12.5, "bob's level should be the reported peak");
    assert_eq!(state.local.input_level_dbfs, -30.0, "our input level should be the reported one");
    apply_session_event(
        &mut state,
        &SessionEvent::ParticipantLeft { identity: "bob".into(), reason: "left".into() },
        &saved,
    );
    assert!(call(&state).participants.is_empty(), "bob should be gone after leaving");
}

#[test]
fn a_listener_can_speak_once_the_server_grants_it() {
    let mut state = in_call();
    assert!(call(&state).can_speak, "a call may speak unless the server says otherwise");
    let denied = SessionEvent::PublishPermission { can_publish: false };
    assert!(apply_session_event(&mut state, &denied, &saved), "the permission is shown");
    assert!(!call(&state).can_speak, "a listener cannot speak");
    apply_session_event(&mut state, &SessionEvent::PublishPermission { can_publish: true }, &saved);
    assert!(call(&state).can_speak, "invited to speak, they can");
}

#[test]
fn being_removed_by_the_backend_fails_the_call_with_banned() {
    let mut state = in_call();
    let removed = MembershipEvent::Removed { reason: "spam".into(), code: "banned".into() };
    assert!(apply_membership_event(&mut state, &removed, &saved), "removal changes the state");
    assert!(
        matches!(&call(&state).phase, CallPhase::Failed { code: ErrorCode::Banned, .. }),
        "the call should fail as banned: {:?}",
        call(&state).phase
    );
}

#[test]
fn backend_participants_bring_roles_and_raised_hands() {
    let mut state = in_call();
    apply_session_event(
        &mut state,
        &SessionEvent::Joined {
            room: "lobby".into(),
            identity: "me".into(),
            participants: Vec::new(),
            encryption: CallEncryption::None,
        },
        &saved,
    );
    let backend = |identity: &str, role: &str, hand: bool| PlaneParticipant {
        identity: identity.into(),
        name: identity.into(),
        role: Some(role.into()),
        muted: None,
        hand_raised: Some(hand),
        avatar_url: None,
        deafened: None,
        hard_muted: None,
    };
    let event = MembershipEvent::Backend {
        backend: PlaneEvent::Participants {
            participants: vec![backend("me", "listener", true), backend("carol", "speaker", false)],
        },
    };
    apply_membership_event(&mut state, &event, &saved);
    let call = call(&state);
    assert!(call.hand_raised && call.role.as_deref() == Some("listener"), "our hand and role: {call:?}");
    assert_eq!(call.participants[0].role.as_deref(), Some("speaker"), "carol should be a speaker");
}

#[test]
fn people_known_only_from_the_backend_follow_its_latest_list_and_are_capped() {
    let mut state = in_call();
    let joined = SessionEvent::Joined {
        room: "lobby".into(),
        identity: "me".into(),
        participants: vec![Participant { identity: "bob".into(), name: "Bob".into(), can_publish: true }],
        encryption: CallEncryption::None,
    };
    apply_session_event(&mut state, &joined, &saved);
    let listed = |identities: Vec<String>| MembershipEvent::Backend {
        backend: PlaneEvent::Participants {
            participants: identities
                .into_iter()
                .map(|identity| PlaneParticipant {
                    name: identity.clone(),
                    identity,
                    role: None,
                    muted: None,
                    hand_raised: None,
                    avatar_url: None,
                    deafened: None,
                    hard_muted: None,
                })
                .collect(),
        },
    };
    let names = |state: &ClientState| -> Vec<String> {
        call(state).participants.iter().map(|participant| participant.identity.clone()).collect()
    };
    apply_membership_event(&mut state, &listed(vec!["bob".into(), "lobby-carol".into()]), &saved);
    assert_eq!(names(&state), ["bob", "lobby-carol"], "the backend's own people are shown");
    apply_membership_event(&mut state, &listed(Vec::new()), &saved);
    assert_eq!(names(&state), ["bob"], "carol left the backend's list; bob is still in the LiveKit room");

    let flood: Vec<String> = (0..5000).map(|index| format!("ghost-{index}")).collect();
    apply_membership_event(&mut state, &listed(flood), &saved);
    let shown = names(&state);
    assert_eq!(shown.len(), 1 + MAX_BACKEND_ONLY_PARTICIPANTS, "bob and at most the cap of backend-only people");
    assert_eq!(shown[0], "bob");
}

#[test]
fn someone_the_server_stops_from_publishing_is_hard_muted_unless_a_listener() {
    let mut state = in_call();
    let joined = SessionEvent::Joined {
        room: "lobby".into(),
        identity: "me".into(),
        participants: vec![Participant { identity: "bob".into(), name: "Bob".into(), can_publish: false }],
        encryption: CallEncryption::None,
    };
    apply_session_event(&mut state, &joined, &saved);
    let bob = &call(&state).participants[0];
    assert!(!bob.can_speak && bob.hard_muted, "joined without the right to publish: {bob:?}");
    let restored = SessionEvent::ParticipantPermission { identity: "bob".into(), can_publish: true };
    assert!(apply_session_event(&mut state, &restored, &saved), "a permission change is shown");
    let bob = &call(&state).participants[0];
    assert!(bob.can_speak && !bob.hard_muted, "restored: {bob:?}");

    // On a stage, a listener who may not publish is just a listener.
    let listener = MembershipEvent::Backend {
        backend: PlaneEvent::RoleChanged { identity: "bob".into(), role: "listener".into() },
    };
    apply_membership_event(&mut state, &listener, &saved);
    let revoked = SessionEvent::ParticipantPermission { identity: "bob".into(), can_publish: false };
    apply_session_event(&mut state, &revoked, &saved);
    let bob = &call(&state).participants[0];
    assert!(!bob.can_speak && !bob.hard_muted, "a listener is not hard-muted: {bob:?}");
    let unknown = SessionEvent::ParticipantPermission { identity: "nobody".into(), can_publish: false };
    assert!(!apply_session_event(&mut state, &unknown, &saved), "nobody to show it on");
}

#[test]
fn the_backends_word_on_hard_mute_and_deafen_wins() {
    let mut state = in_call();
    let backend = |hard_muted: Option<bool>, deafened: Option<bool>| MembershipEvent::Backend {
        backend: PlaneEvent::Participants {
            participants: vec![PlaneParticipant {
                identity: "carol".into(),
                name: "Carol".into(),
                role: Some("listener".into()),
                muted: None,
                hand_raised: None,
                avatar_url: None,
                deafened,
                hard_muted,
            }],
        },
    };
    apply_membership_event(&mut state, &backend(Some(true), Some(true)), &saved);
    let carol = &call(&state).participants[0];
    assert!(carol.hard_muted && carol.deafened, "the forum says so, even of a listener: {carol:?}");
    apply_membership_event(&mut state, &backend(None, None), &saved);
    let carol = &call(&state).participants[0];
    assert!(carol.hard_muted && carol.deafened, "a list without the fields changes nothing: {carol:?}");
    apply_membership_event(&mut state, &backend(Some(false), Some(false)), &saved);
    let carol = &call(&state).participants[0];
    assert!(!carol.hard_muted && !carol.deafened, "restored and hearing again: {carol:?}");
}

#[test]
fn a_server_side_removal_is_reported_as_kicked_and_a_normal_leave_is_not_a_failure() {
    let mut state = in_call();
    let removed = SessionEvent::Disconnected {
        reason: "removed".into(),
        code: "participant_removed".into(),
        connection_lost: false,
    };
    apply_session_event(&mut state, &removed, &saved);
    assert!(matches!(call(&state).phase, CallPhase::Failed { code: ErrorCode::Kicked, .. }), "kicked by the server");
    let mut state = in_call();
    let left =
        SessionEvent::Disconnected { reason: "bye".into(), code: "client_initiated".into(), connection_lost: false };
    apply_session_event(&mut state, &left, &saved);
    assert_eq!(call(&state).phase, CallPhase::Joining, "our own leave is not a failure");
    let mut state = in_call();
    let lost = SessionEvent::Disconnected {
        reason: "the connection timed out".into(),
        code: "connection_timeout".into(),
        connection_lost: true,
    };
    apply_session_event(&mut state, &lost, &saved);
    assert_eq!(call(&state).phase, CallPhase::Reconnecting, "a lost connection is joined again, not failed");
}

#[test]
fn an_unencrypted_participant_in_an_encrypted_call_is_marked_until_allowed() {
    let mut state = in_call();
    let joined = SessionEvent::Joined {
        room: "lobby".into(),
        identity: "me".into(),
        participants: vec![
            Participant { identity: "keyless".into(), name: "Keyless".into(), can_publish: true },
            Participant { identity: "friend".into(), name: "Friend".into(), can_publish: true },
        ],
        encryption: CallEncryption::EndToEnd,
    };
    apply_session_event(&mut state, &joined, &saved);
    assert!(call(&state).encrypted, "the call says it is encrypted");
    let encryption = |state: &ClientState, who: &str| {
        call(state).participants.iter().find(|participant| participant.identity == who).map(|p| p.encryption)
    };
    let said = |identity: &str, state: &str| SessionEvent::ParticipantEncryption {
        identity: identity.into(),
        state: state.into(),
    };
    apply_session_event(&mut state, &said("friend", "ok"), &saved);
    apply_session_event(&mut state, &said("keyless", "not_encrypted"), &saved);
    assert!(!apply_session_event(&mut state, &said("keyless", "ok"), &saved), "ok does not hide unencrypted");
    assert_eq!(encryption(&state, "friend"), Some(Encryption::Ok));
    assert_eq!(encryption(&state, "keyless"), Some(Encryption::NotEncrypted));
    apply_session_event(&mut state, &SessionEvent::UnencryptedAllowed { identity: "keyless".into() }, &saved);
    assert_eq!(encryption(&state, "keyless"), Some(Encryption::AllowedUnencrypted));
    apply_session_event(&mut state, &said("keyless", "not_encrypted"), &saved);
    assert_eq!(encryption(&state, "keyless"), Some(Encryption::AllowedUnencrypted), "the choice stands");
    apply_session_event(&mut state, &said("friend", "decryption_failed"), &saved);
    assert_eq!(encryption(&state, "friend"), Some(Encryption::Failed));
}

#[test]
fn a_screen_share_marks_its_participant_live_until_it_ends() {
    let mut state = in_call();
    apply_session_event(
        &mut state,
        &SessionEvent::ParticipantJoined { identity: "bob".into(), name: "Bob".into(), can_publish: true },
        &saved,
    );
    let available = SessionEvent::ShareAvailable { identity: "bob".into(), sid: "TR_screen".into() };
    assert!(apply_session_event(&mut state, &available, &saved), "bob's share is news");
    assert!(call(&state).participants[0].sharing, "bob should be marked live");
    assert!(!apply_session_event(&mut state, &available, &saved), "the same share again is no change");
    let watched =
        SessionEvent::TrackSubscribed { identity: "bob".into(), sid: "TR_screen".into(), kind: MediaKind::Video };
    assert!(!apply_session_event(&mut state, &watched, &saved), "watching it changes nothing visible");
    let audio = SessionEvent::TrackSubscribed { identity: "bob".into(), sid: "TR_mic".into(), kind: MediaKind::Audio };
    assert!(!apply_session_event(&mut state, &audio, &saved), "a microphone is not a share");
    let ended = SessionEvent::ShareEnded { identity: "bob".into(), sid: "TR_screen".into() };
    assert!(apply_session_event(&mut state, &ended, &saved), "the end of bob's share is news");
    assert!(!call(&state).participants[0].sharing, "bob should no longer be marked live");
    let stranger = SessionEvent::ShareAvailable { identity: "carol".into(), sid: "TR_other".into() };
    assert!(!apply_session_event(&mut state, &stranger, &saved), "a share of someone not listed changes nothing");
}

#[test]
fn a_watched_share_closes_its_viewer_when_it_ends_or_its_sharer_leaves() {
    let mut state = in_call();
    for identity in ["bob", "carol"] {
        let joined =
            SessionEvent::ParticipantJoined { identity: identity.into(), name: String::new(), can_publish: true };
        apply_session_event(&mut state, &joined, &saved);
        let sid = format!("TR_{identity}");
        apply_session_event(&mut state, &SessionEvent::ShareAvailable { identity: identity.into(), sid }, &saved);
    }
    state.call.as_mut().expect("a call").watching = vec!["bob".into(), "carol".into()];
    let ended = SessionEvent::ShareEnded { identity: "bob".into(), sid: "TR_bob".into() };
    assert!(apply_session_event(&mut state, &ended, &saved));
    assert_eq!(call(&state).watching, ["carol"], "bob's viewer closes with his share");
    let left = SessionEvent::ParticipantLeft { identity: "carol".into(), reason: "client_initiated".into() };
    assert!(apply_session_event(&mut state, &left, &saved));
    assert!(call(&state).watching.is_empty(), "carol's viewer closes when she leaves");
}

#[test]
fn a_watched_share_shows_the_size_it_arrives_at_until_its_viewer_closes() {
    let mut state = in_call();
    let joined = SessionEvent::ParticipantJoined { identity: "bob".into(), name: String::new(), can_publish: true };
    apply_session_event(&mut state, &joined, &saved);
    let size = |state: &ClientState| call(state).participants[0].share_size;
    let started =
        |width, height| SessionEvent::WatchStarted { identity: "bob".into(), sid: "TR_bob".into(), width, height };
    assert!(!apply_session_event(&mut state, &started(1920, 1080), &saved), "not watched: no size");
    assert_eq!(size(&state), None);
    state.call.as_mut().expect("a call").watching = vec!["bob".into()];
    assert!(apply_session_event(&mut state, &started(1920, 1080), &saved));
    assert_eq!(size(&state), Some((1920, 1080)));
    let stats = |width, height| SessionEvent::WatchStats {
        identity: "bob".into(),
        sid: "TR_bob".into(),
        frames: 30,
        fps: 30.0,
        width,
        height,
        dropped: 0,
    };
    assert!(!apply_session_event(&mut state, &stats(1920, 1080), &saved), "the same size is no news");
    assert!(apply_session_event(&mut state, &stats(960, 540), &saved), "another layer is");
    assert_eq!(size(&state), Some((960, 540)));
    assert!(state.call.as_mut().expect("a call").stop_watching("bob"));
    assert_eq!(size(&state), None, "a closed viewer shows no size");
}

#[test]
fn traffic_counters_become_the_calls_bandwidth() {
    let mut state = in_call();
    let traffic = |received_bytes, sent_bytes| SessionEvent::Traffic { received_bytes, sent_bytes };
    assert!(!apply_session_event(&mut state, &traffic(1_000, 500), &saved), "one report is no rate yet");
    assert_eq!(call(&state).bandwidth, None);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(apply_session_event(&mut state, &traffic(51_000, 500), &saved));
    let bandwidth = call(&state).bandwidth.expect("a rate after two reports");
    // 50 kB in a little over 0.2 s: below 2 Mbit/s, well above 1; nothing sent.
    assert!((1_000..=2_000).contains(&bandwidth.received_kbps), "{bandwidth:?}");
    assert_eq!(bandwidth.sent_kbps, 0);
}
