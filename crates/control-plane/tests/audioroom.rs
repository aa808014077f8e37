//! The audioroom adapter against the Discourse + Audioroom contract server
//! (CONTROL_PLANES.md §1): every capability, every documented error, the MessageBus events and
//! the User-API-Key flow end to end.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_api::access_token::TokenVerifier;
use parley_contract_servers::audioroom::{self, Endpoint, Forced, Handle, NewRoom, SeenRequest, TestUser};
use parley_contract_servers::{LivekitKeys, Running};
use parley_control_plane::adapter::audioroom::user_api_key::{self, KeyRequest, LoopbackListener};
use parley_control_plane::adapter::audioroom::{AudioroomPlane, DEFAULT_HEARTBEAT, SECRET_NAMES, Secrets, Settings};
use parley_control_plane::{Capability, ControlPlane, JoinGrant, ModerationAction, PlaneError, PlaneEvent, Secret};
use serde_json::json;
use tokio::sync::mpsc;

const API_KEY: &str = "devkey";
const API_SECRET: &str = "a-livekit-secret-of-at-least-32-characters";
const CLIENT_ID: &str = "parley-test-client";

fn keys() -> LivekitKeys {
    LivekitKeys { url: "ws://127.0.0.1:7880".into(), api_key: API_KEY.into(), api_secret: API_SECRET.into() }
}

struct Forum {
    handle: Handle,
    url: String,
    _running: Running,
}

async fn forum() -> Forum {
    let (running, handle) = audioroom::start(keys()).await.expect("the contract server starts");
    Forum { url: running.url(), handle, _running: running }
}

fn settings(url: &str) -> Settings {
    Settings { url: url.into(), client_id: CLIENT_ID.into(), heartbeat_seconds: None }
}

fn plane_with_key(url: &str, key: &str) -> AudioroomPlane {
    AudioroomPlane::new(settings(url), Secrets { user_api_key: Some(Secret::new(key)) })
        .expect("valid settings")
        .with_poll_spacing(Duration::from_millis(20))
}

fn plane(forum: &Forum, user: &TestUser) -> AudioroomPlane {
    plane_with_key(&forum.url, &user.api_key)
}

/// The last request the server saw for `endpoint`.
fn last(handle: &Handle, endpoint: Endpoint) -> SeenRequest {
    handle.requests_to(endpoint).pop().unwrap_or_else(|| panic!("the server should have seen a {endpoint:?} request"))
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Waits for the first event `wanted` accepts, skipping others.
async fn wait_for(
    events: &mut mpsc::Receiver<PlaneEvent>,
    what: &str,
    wanted: impl Fn(&PlaneEvent) -> bool,
) -> PlaneEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if wanted(&event) => return event,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the event stream ended before {what}"),
            Err(_) => panic!("{what} should have arrived within 15 s"),
        }
    }
}

fn assert_code(error: &PlaneError, code: &str, words: &[&str]) {
    assert_eq!(error.code(), code, "error {error:?} should have code {code}");
    let message = error.to_string().to_lowercase();
    for word in words {
        assert!(message.contains(&word.to_lowercase()), "message {message:?} should mention {word:?}");
    }
}

#[test]
fn settings_are_checked_before_anything_is_sent() {
    let key = || Secrets { user_api_key: Some(Secret::new("k")) };
    let cases: Vec<(Settings, Secrets, &str)> = vec![
        (settings("forum.example.org"), key(), "not valid"),
        (settings("ftp://forum.example.org"), key(), "https://"),
        (settings("https://user:pw@forum.example.org"), key(), "without credentials"),
        (settings("https://forum.example.org"), Secrets::default(), "authorize parley"),
        (Settings { client_id: " ".into(), ..settings("https://forum.example.org") }, key(), "client id"),
        (Settings { heartbeat_seconds: Some(30), ..settings("https://forum.example.org") }, key(), "between 5 and 28"),
        (Settings { heartbeat_seconds: Some(2), ..settings("https://forum.example.org") }, key(), "between 5 and 28"),
    ];
    for (settings, secrets, words) in cases {
        let error =
            AudioroomPlane::new(settings.clone(), secrets).expect_err(&format!("{settings:?} should be refused"));
        assert_code(&error, "invalid_input", &[words]);
        assert!(!error.to_string().contains("pw"), "the URL password must not be echoed: {error}");
    }
    assert_eq!(SECRET_NAMES, ["user-api-key"]);
    let text = r#"{"url":"https://forum.example.org","client_id":"c"}"#;
    let parsed: Settings = serde_json::from_str(text).expect("heartbeat_seconds is optional");
    assert_eq!(parsed.heartbeat_seconds, None);
    assert_eq!(serde_json::to_string(&parsed).expect("serialises"), text, "absent heartbeat is not written");
    let unknown = serde_json::from_str::<Settings>(r#"{"url":"u","client_id":"c","api_key":"x"}"#);
    assert!(unknown.is_err(), "unknown fields (a key in the profile file) are refused");
}

#[tokio::test]
async fn list_rooms_sends_the_key_and_asks_for_json() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice A.", false);
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    forum.handle.add_room(NewRoom { max_participants: Some(8), ..NewRoom::stage("town-hall", "Town Hall") });
    forum.handle.add_room(NewRoom { public: false, ..NewRoom::open("staff", "Staff") });

    let rooms = plane(&forum, &alice).list_rooms().await.expect("listing rooms");

    let names: Vec<&str> = rooms.iter().map(|room| room.id.as_str()).collect();
    assert_eq!(names, ["lounge", "town-hall"], "rooms are named by slug; the private room is hidden");
    let stage = &rooms[1];
    assert!(stage.stage && !rooms[0].stage, "room types map to stage");
    assert_eq!(stage.max_participants, Some(8));
    assert_eq!(stage.participants, Some(0));
    assert_eq!(stage.description.as_deref(), Some("About Town Hall"));
    assert!(!stage.can_manage, "alice manages nothing");
    let request = last(&forum.handle, Endpoint::Rooms);
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/audioroom/rooms.json"));
    assert_eq!(request.header("user-api-key"), Some(alice.api_key.as_str()), "the key travels in User-Api-Key");
    assert_eq!(request.header("user-api-client-id"), Some(CLIENT_ID), "with its client id");
    assert!(request.header("accept").is_some_and(|accept| accept.contains("application/json")), "asks for JSON");
}

#[tokio::test]
async fn join_hands_out_a_livekit_token_for_the_user_id_and_the_slug() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice A.", false);
    let room = forum.handle.add_room(NewRoom::stage("town-hall", "Town Hall"));

    let grant = plane(&forum, &alice).join("town-hall").await.expect("joining");

    assert_eq!(grant.room_id, room.to_string(), "grants carry the numeric id the nested routes need");
    assert_eq!(grant.room_name, "Town Hall");
    assert_eq!(grant.url, "ws://127.0.0.1:7880");
    assert_eq!(grant.heartbeat_every, Some(DEFAULT_HEARTBEAT));
    assert_eq!(DEFAULT_HEARTBEAT, Duration::from_secs(20));
    assert_eq!(grant.role.as_deref(), Some("listener"), "the role comes from the token's metadata");
    let expires = grant.expires_at.expect("the token's exp is read");
    assert!(
        expires.abs_diff(now_seconds() + 600) < 60,
        "a 10-minute token (livekit-server-sdk 0.9.0's default), expires_at from exp ({expires})"
    );
    let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(&grant.token).expect("a valid LiveKit token");
    assert_eq!(claims.sub, alice.id.to_string(), "identity = Discourse user id");
    assert_eq!(claims.name, "alice");
    assert_eq!(claims.video.room, "town-hall", "LiveKit room = slug");
    assert!(!claims.video.room_admin, "audioroom never hands out roomAdmin");
    assert_eq!(claims.video.can_publish, Some(false), "stage listeners do not publish");
    let metadata: serde_json::Value = serde_json::from_str(&claims.metadata).expect("metadata is JSON");
    assert_eq!(metadata["role"], "listener");
    assert_eq!(metadata["username"], "alice");
    let request = last(&forum.handle, Endpoint::Join);
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/audioroom/rooms/town-hall/join"));
    assert_eq!(forum.handle.present(room), [alice.id], "the forum sees alice present");
}

#[tokio::test]
async fn the_heartbeat_interval_follows_the_profile() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let plane = AudioroomPlane::new(
        Settings { heartbeat_seconds: Some(12), ..settings(&forum.url) },
        Secrets { user_api_key: Some(Secret::new(&alice.api_key)) },
    )
    .expect("valid settings");
    let grant = plane.join("lounge").await.expect("joining");
    assert_eq!(grant.heartbeat_every, Some(Duration::from_secs(12)));
}

#[tokio::test]
async fn a_forum_without_livekit_says_so() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    forum.handle.set_livekit_configured(false);
    let error = plane(&forum, &alice).join("lounge").await.expect_err("no token, no join");
    assert_code(&error, "not_configured", &["LiveKit is not configured on this forum"]);
}

#[tokio::test]
async fn kicked_and_banned_users_cannot_join_or_heartbeat() {
    let forum = forum().await;
    let moderator = forum.handle.add_user("mod", "Mod", true);
    let bob = forum.handle.add_user("bob", "Bob", false);
    let room = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let moderator = plane(&forum, &moderator);
    let bob_plane = plane(&forum, &bob);
    let grant = moderator.join("lounge").await.expect("moderator joins");
    let bob_grant = bob_plane.join("lounge").await.expect("bob joins");

    moderator.moderate(&grant, ModerationAction::Kick, &bob.id.to_string()).await.expect("kicking bob");
    assert!(forum.handle.is_kicked(room, bob.id), "the forum marks bob kicked");
    let heartbeat = bob_plane.heartbeat(&bob_grant).await.expect_err("a kicked user's heartbeat fails");
    assert_code(&heartbeat, "kicked", &["removed"]);
    assert!(heartbeat.ends_session(), "a kick ends the session");
    let join = bob_plane.join("lounge").await.expect_err("kicked users cannot rejoin");
    assert_code(&join, "kicked", &["removed from this room", "kicked"]);

    moderator.moderate(&grant, ModerationAction::Ban, "bob").await.expect("banning bob by username");
    let banned = bob_plane.join("lounge").await.expect_err("banned users cannot join");
    assert_code(&banned, "banned", &["banned"]);
}

#[tokio::test]
async fn one_room_at_a_time_and_switching_leaves_the_other() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let lounge = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let hall = forum.handle.add_room(NewRoom::open("hall", "Hall"));
    let plane = plane(&forum, &alice);
    plane.join("lounge").await.expect("joining the lounge");

    let error = plane.join("hall").await.expect_err("a second room is refused");
    assert_eq!(error, PlaneError::InAnotherRoom { room_id: lounge.to_string(), room_name: Some("Lounge".into()) });
    assert_code(&error, "in_another_room", &["\"Lounge\"", "leave it"]);

    let grant = plane.join_switching("hall").await.expect("switching rooms in one step");
    assert_eq!(grant.room_id, hall.to_string());
    let leave = last(&forum.handle, Endpoint::Leave);
    assert_eq!(
        (leave.method.as_str(), leave.path.as_str()),
        ("DELETE", format!("/audioroom/rooms/{lounge}/leave").as_str())
    );
    assert!(forum.handle.present(lounge).is_empty(), "alice left the lounge");
    assert_eq!(forum.handle.present(hall), [alice.id], "and is in the hall");
}

#[tokio::test]
async fn full_rooms_refuse_joins() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let bob = forum.handle.add_user("bob", "Bob", false);
    let room = forum.handle.add_room(NewRoom { max_participants: Some(1), ..NewRoom::open("booth", "Booth") });
    forum.handle.set_present(room, bob.id);
    let error = plane(&forum, &alice).join("booth").await.expect_err("the booth is full");
    assert_code(&error, "room_full", &["full"]);
}

#[tokio::test]
async fn rate_limits_map_to_rate_limited_with_the_wait() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.set_rate_limit(2, 2880);
    let plane = plane(&forum, &alice);
    plane.list_rooms().await.expect("first request");
    plane.list_rooms().await.expect("second request");
    let error = plane.list_rooms().await.expect_err("the third request in a minute is over the limit");
    let PlaneError::RateLimited { retry_after: Some(wait) } = error else {
        panic!("rate limited with a wait: {error:?}")
    };
    assert!((1..=60).contains(&wait.as_secs()), "the wait comes from Retry-After: {wait:?}");
    assert!(error.is_transient());
    assert_code(&error, "rate_limited", &["try again in"]);
    let rejected = forum.handle.requests_to(Endpoint::Rooms);
    assert_eq!(rejected.len(), 3, "the adapter did not retry on its own");

    let forum = self::forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.fail_next(
        Endpoint::Rooms,
        Forced::json(429, json!({"errors": ["slow down"], "error_type": "rate_limit", "extras": {"wait_seconds": 17}})),
    );
    let error = self::plane(&forum, &alice).list_rooms().await.expect_err("forced 429");
    assert_eq!(error, PlaneError::RateLimited { retry_after: Some(Duration::from_secs(17)) }, "extras.wait_seconds");
}

#[tokio::test]
async fn heartbeats_keep_presence_alive_and_it_lapses_without() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let room = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    forum.handle.set_presence_ttl(Duration::from_millis(600));
    let plane = plane(&forum, &alice);
    let grant = plane.join("lounge").await.expect("joining");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        plane.heartbeat(&grant).await.expect("heartbeat");
    }
    assert_eq!(forum.handle.present(room), [alice.id], "heartbeats kept alice present past the TTL");
    assert_eq!(forum.handle.heartbeats(room, alice.id), 4);
    let beat = last(&forum.handle, Endpoint::Heartbeat);
    assert_eq!(
        (beat.method.as_str(), beat.path.as_str()),
        ("POST", format!("/audioroom/rooms/{room}/heartbeat").as_str())
    );
    assert_eq!(beat.params()["idle_state"], "active");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(forum.handle.present(room).is_empty(), "without heartbeats presence lapses after the TTL");
}

#[tokio::test]
async fn leaving_ends_presence_and_capabilities_forget_the_room() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let room = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let plane = plane(&forum, &alice);
    let grant = plane.join("lounge").await.expect("joining");
    assert!(plane.capabilities().moderation().is_empty(), "alice may not moderate the room she is in");
    plane.leave(&grant).await.expect("leaving");
    assert!(forum.handle.present(room).is_empty());
    assert!(plane.capabilities().can_moderate(ModerationAction::Kick), "outside a room: what the adapter can do");
    plane.join("lounge").await.expect("joining again");
    plane.leave_room("lounge").await.expect("leaving by slug");
    assert!(forum.handle.present(room).is_empty(), "leave_room takes a slug too");
}

#[tokio::test]
async fn participants_are_mapped_to_livekit_identities() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice Liddell", false);
    let bob = forum.handle.add_user("bob", "", false);
    let room = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    forum.handle.set_present(room, bob.id);
    let plane = plane(&forum, &alice);
    let grant = plane.join("lounge").await.expect("joining");
    plane.report_self_state(&grant, true, false).await.expect("reporting mute");

    let participants = plane.participants(&grant).await.expect("listing participants");

    assert_eq!(participants.len(), 2);
    let me = participants.iter().find(|p| p.identity == alice.id.to_string()).expect("alice listed by user id");
    assert_eq!(me.name, "Alice Liddell");
    assert_eq!(me.role.as_deref(), Some("participant"));
    assert_eq!(me.muted, Some(true), "self-reported mute is shown");
    assert_eq!(me.deafened, Some(false), "the reported deafen is shown");
    assert_eq!((me.hand_raised, me.hard_muted), (None, None), "keys the forum never wrote are unknown, not false");
    let avatar = me.avatar_url.as_deref().expect("an avatar URL");
    assert_eq!(avatar, format!("{}/user_avatar/forum/alice/96/{}_2.png", forum.url, alice.id), "absolute, sized");
    let other = participants.iter().find(|p| p.identity == bob.id.to_string()).expect("bob listed");
    assert_eq!(other.name, "bob", "a user without a name (null) is shown by username");
    assert_eq!(other.muted, None, "bob reported nothing");
    let request = last(&forum.handle, Endpoint::Participants);
    assert_eq!(request.path, format!("/audioroom/rooms/{room}/participants.json"));
}

#[tokio::test]
async fn hands_and_self_state_in_stage_and_open_rooms() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let stage = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let plane = plane(&forum, &alice);
    let grant = plane.join("stage").await.expect("joining the stage");
    assert!(plane.capabilities().supports(Capability::RaiseHand), "stage rooms offer hands");

    plane.set_hand(&grant, true).await.expect("raising a hand");
    assert_eq!(forum.handle.presence(stage, alice.id).expect("present").hand_raised, Some(true));
    assert_eq!(last(&forum.handle, Endpoint::RaiseHand).method, "POST");
    plane.set_hand(&grant, false).await.expect("lowering it");
    assert_eq!(forum.handle.presence(stage, alice.id).expect("present").hand_raised, Some(false));
    assert_eq!(last(&forum.handle, Endpoint::LowerHand).method, "DELETE");

    plane.report_self_state(&grant, true, true).await.expect("reporting mute and deafen");
    let params = last(&forum.handle, Endpoint::ToggleMute).params();
    assert_eq!((params["muted"].clone(), params["deafened"].clone()), (json!(true), json!(true)));
    let state = forum.handle.presence(stage, alice.id).expect("present");
    assert_eq!((state.muted, state.deafened), (Some(true), Some(true)), "the forum shows alice muted and deafened");
    let unmute = plane.report_self_state(&grant, false, false).await.expect_err("listeners cannot unmute on stage");
    assert_code(&unmute, "forbidden", &["listeners cannot unmute"]);

    let grant = plane.join_switching("lounge").await.expect("moving to the lounge");
    assert!(!plane.capabilities().supports(Capability::RaiseHand), "open rooms have no hands");
    let error = plane.set_hand(&grant, true).await.expect_err("no hands in open rooms");
    assert_code(&error, "rejected", &["not a stage room"]);
}

#[tokio::test]
async fn every_moderation_action_reaches_its_endpoint() {
    let forum = forum().await;
    forum.handle.set_rate_limit(1000, 100_000);
    let moderator = forum.handle.add_user("mod", "Mod", true);
    let bob = forum.handle.add_user("bob", "Bob", false);
    let room = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    let plane = plane(&forum, &moderator);
    let grant = plane.join("stage").await.expect("joining");
    // All the plugin has endpoints for: stopping a share needs RoomService.
    let plugin_actions: Vec<_> =
        ModerationAction::ALL.into_iter().filter(|action| *action != ModerationAction::StopShare).collect();
    assert_eq!(plane.capabilities().moderation(), plugin_actions, "a manager on stage may do it all");
    forum.handle.set_present(room, bob.id);
    let bob_id = bob.id.to_string();
    let bob_id = bob_id.as_str();

    let act = |action: ModerationAction, participant: &'static str| {
        let plane = &plane;
        let grant = &grant;
        async move {
            let participant = if participant == "id" { bob_id } else { participant };
            plane
                .moderate(grant, action, participant)
                .await
                .unwrap_or_else(|error| panic!("{action} on {participant} should work: {error}"));
        }
    };
    let expect = |endpoint: Endpoint, method: &str, path: &str, params: serde_json::Value| {
        let request = last(&forum.handle, endpoint);
        assert_eq!((request.method.as_str(), request.path.as_str()), (method, path), "{endpoint:?}");
        let seen = request.params();
        for (name, value) in params.as_object().expect("an object") {
            let got = seen.get(name).map(|got| got.to_string().trim_matches('"').to_string());
            assert_eq!(got, Some(value.to_string().trim_matches('"').to_string()), "{endpoint:?} param {name}");
        }
    };
    let at = |action: &str| format!("/audioroom/rooms/{room}/{action}");
    let presence = || forum.handle.presence(room, bob.id).expect("bob is present");

    // A remote mute is LiveKit's `MutePublishedTrack` on bob's audio track. Bob is present on the
    // forum but not connected to LiveKit here, so the forum refuses as the plugin does (422);
    // tests/cli/moderation.rs mutes a real speaker.
    for (action, who, muted) in [(ModerationAction::Mute, bob_id, true), (ModerationAction::Unmute, "bob", false)] {
        let error = plane.moderate(&grant, action, who).await.expect_err("bob has no audio track in LiveKit");
        assert_code(&error, "rejected", &["no audio track"]);
        expect(Endpoint::MuteParticipant, "POST", &at("mute_participant"), json!({"user_id": bob.id, "muted": muted}));
    }
    assert_eq!(presence().muted, None, "the forum records a remote mute only once LiveKit made it");
    let tried = forum.handle.livekit_calls();
    assert!(
        tried.iter().any(|call| call.method == "MutePublishedTrack" && call.identity.as_deref() == Some(bob_id)),
        "the forum asked LiveKit: {tried:?}"
    );
    let bob_listed = || async {
        let participants = plane.participants(&grant).await.expect("listing participants");
        participants.into_iter().find(|participant| participant.identity == bob_id).expect("bob listed")
    };
    act(ModerationAction::HardMute, "id").await;
    expect(Endpoint::HardMute, "POST", &at("hard_mute"), json!({"user_id": bob.id}));
    assert_eq!(presence().hard_muted, Some(true));
    assert_eq!(bob_listed().await.hard_muted, Some(true), "the participant list shows the hard mute");
    act(ModerationAction::Restore, "id").await;
    expect(Endpoint::HardUnmute, "POST", &at("hard_unmute"), json!({"user_id": bob.id}));
    assert_eq!(presence().hard_muted, Some(false));
    assert_eq!(bob_listed().await.hard_muted, Some(false), "and its end");

    act(ModerationAction::InviteToSpeak, "id").await;
    expect(Endpoint::CreateMembership, "POST", &at("memberships"), json!({"user_id": bob.id, "role": "speaker"}));
    assert_eq!(forum.handle.membership_role(room, bob.id), Some("speaker"));
    assert_eq!(presence().role.as_deref(), Some("speaker"), "the role applies live");
    act(ModerationAction::MoveToAudience, "@bob").await;
    expect(Endpoint::CreateMembership, "POST", &at("memberships"), json!({"username": "bob", "role": "participant"}));
    assert_eq!(presence().role.as_deref(), Some("participant"), "the forum writes the membership's name at once");
    assert_eq!(bob_listed().await.role.as_deref(), Some("listener"), "which on a stage Parley shows as a listener");
    assert!(forum.handle.requests_to(Endpoint::DeleteMembership).is_empty(), "demotion does not delete the membership");
    act(ModerationAction::MakeModerator, "id").await;
    expect(Endpoint::CreateMembership, "POST", &at("memberships"), json!({"user_id": bob.id, "role": "moderator"}));
    assert_eq!(presence().role.as_deref(), Some("moderator"));

    act(ModerationAction::Kick, "id").await;
    let kick = last(&forum.handle, Endpoint::Kick);
    assert_eq!((kick.method.as_str(), kick.path.as_str()), ("DELETE", at("kick").as_str()));
    assert_eq!(kick.query.as_deref(), Some(format!("user_id={}", bob.id).as_str()), "DELETE params in the query");
    assert!(forum.handle.is_kicked(room, bob.id) && forum.handle.presence(room, bob.id).is_none());
    act(ModerationAction::Unkick, "id").await;
    expect(Endpoint::Unkick, "POST", &at("unkick"), json!({"user_id": bob.id}));
    assert!(!forum.handle.is_kicked(room, bob.id));
    act(ModerationAction::Ban, "bob").await;
    expect(Endpoint::Ban, "POST", &at("ban"), json!({"user_id": bob.id}));
    assert!(forum.handle.is_banned(room, bob.id));
    let lookup = last(&forum.handle, Endpoint::User);
    assert_eq!(lookup.path, "/u/bob.json", "a username not in the room is looked up");
    act(ModerationAction::Unban, "bob").await;
    expect(Endpoint::Unban, "DELETE", &at("ban"), json!({"user_id": bob.id}));
    assert!(!forum.handle.is_banned(room, bob.id));

    let error = plane.moderate(&grant, ModerationAction::Kick, "nobody").await.expect_err("unknown user");
    assert_code(&error, "not_found", &["nobody"]);
    let error = plane.moderate(&grant, ModerationAction::Kick, &moderator.id.to_string()).await.expect_err("self");
    assert_code(&error, "rejected", &["yourself"]);
    let error = plane.moderate(&grant, ModerationAction::Mute, "bob").await.expect_err("bob left");
    assert_code(&error, "rejected", &["not in the room"]);
}

#[tokio::test]
async fn moderation_needs_the_manage_permission_and_is_only_offered_with_it() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let bob = forum.handle.add_user("bob", "Bob", false);
    let stage = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    forum.handle.add_room(NewRoom { creator: Some(alice.id), ..NewRoom::open("alices", "Alice's") });
    let plane = plane(&forum, &alice);

    let on_stage = plane.room_capabilities("stage").await.expect("capabilities of the stage");
    assert!(on_stage.moderation().is_empty(), "no moderation without can_manage");
    assert!(on_stage.supports(Capability::RaiseHand));
    let own = plane.room_capabilities("alices").await.expect("capabilities of her own room");
    assert!(own.can_moderate(ModerationAction::Kick), "creators manage their room");
    assert!(!own.can_moderate(ModerationAction::InviteToSpeak), "speaker changes are for stage rooms");
    assert_eq!(forum.handle.requests_to(Endpoint::Room).len(), 2, "one GET per unknown room");
    plane.room_capabilities("stage").await.expect("cached");
    assert_eq!(forum.handle.requests_to(Endpoint::Room).len(), 2, "room details are cached");

    let grant = plane.join("stage").await.expect("joining");
    forum.handle.set_present(stage, bob.id);
    let error = plane.moderate(&grant, ModerationAction::Kick, &bob.id.to_string()).await.expect_err("not a manager");
    assert_code(&error, "forbidden", &["not allowed"]);
    assert_eq!(
        forum.handle.requests_to(Endpoint::CurrentSession).len(),
        1,
        "the generic 403 is checked against the key once"
    );

    forum.handle.set_membership(stage, alice.id, "moderator");
    plane.moderate(&grant, ModerationAction::Kick, &bob.id.to_string()).await.expect("a moderator membership manages");
}

#[tokio::test]
async fn slugs_are_resolved_to_numeric_ids_once_for_memberships() {
    let forum = forum().await;
    forum.handle.set_rate_limit(1000, 100_000);
    let moderator = forum.handle.add_user("mod", "Mod", true);
    let bob = forum.handle.add_user("bob", "Bob", false);
    let room = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    let plane = plane(&forum, &moderator);
    // A grant that names the room by slug, as a session restored from a room link would.
    let grant = JoinGrant {
        room_id: "stage".into(),
        room_name: "Stage".into(),
        url: "ws://127.0.0.1:7880".into(),
        token: String::new(),
        e2ee_key: None,
        expires_at: None,
        heartbeat_every: None,
        role: None,
        notice: None,
    };
    plane.moderate(&grant, ModerationAction::InviteToSpeak, &bob.id.to_string()).await.expect("inviting bob");
    plane.moderate(&grant, ModerationAction::MakeModerator, &bob.id.to_string()).await.expect("promoting bob");
    let creates = forum.handle.requests_to(Endpoint::CreateMembership);
    assert!(
        creates.iter().all(|request| request.path == format!("/audioroom/rooms/{room}/memberships")),
        "memberships use the numeric id"
    );
    let shows = forum.handle.requests_to(Endpoint::Room);
    assert_eq!(shows.len(), 1, "the slug was resolved once");
    assert_eq!(shows[0].path, "/audioroom/rooms/stage.json");
    assert_eq!(forum.handle.membership_role(room, bob.id), Some("moderator"));
}

#[tokio::test]
async fn unknown_keys_are_unauthorized_and_read_only_keys_forbidden() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let stranger = plane_with_key(&forum.url, "not-a-key");
    let error = stranger.list_rooms().await.expect_err("an unknown key");
    assert_code(&error, "unauthorized", &["credentials", "user api key"]);
    let error = stranger.join("lounge").await.expect_err("an unknown key cannot join");
    assert_code(&error, "unauthorized", &["credentials"]);

    let read_only = forum.handle.add_key(alice.id, &["read"]);
    let reader = plane_with_key(&forum.url, &read_only);
    assert_eq!(reader.list_rooms().await.expect("read keys may GET").len(), 1);
    let error = reader.join("lounge").await.expect_err("read keys may not POST");
    assert_code(&error, "forbidden", &["not allowed"]);
    let user = reader.current_user().await.expect("who the key belongs to");
    assert_eq!((user.id, user.username.as_str()), (alice.id, "alice"));
}

#[tokio::test]
async fn html_garbage_server_errors_and_dead_servers() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let plane = plane(&forum, &alice);

    forum.handle.fail_next(Endpoint::Rooms, Forced::html(200));
    assert_code(&plane.list_rooms().await.expect_err("HTML"), "malformed_response", &["web page"]);
    forum.handle.fail_next(Endpoint::Join, Forced::raw(200, "{\"room\":"));
    assert_code(&plane.join("lounge").await.expect_err("cut JSON"), "malformed_response", &["unexpected JSON"]);
    forum.handle.fail_next(Endpoint::Join, Forced::json(200, json!({"room": {"name": "no id"}})));
    assert_code(&plane.join("lounge").await.expect_err("missing fields"), "malformed_response", &[]);
    forum.handle.fail_next(Endpoint::Join, Forced::html(502));
    assert_code(&plane.join("lounge").await.expect_err("a proxy error"), "server_error", &["502"]);
    forum.handle.fail_next(Endpoint::Rooms, Forced::json(500, json!({"errors": ["boom"]})));
    assert_code(&plane.list_rooms().await.expect_err("500"), "server_error", &["boom"]);
    let missing = plane.join("no-such-room").await.expect_err("unknown room");
    assert_code(&missing, "not_found", &["no-such-room"]);

    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("address").port()
    };
    let unreachable = plane_with_key(&format!("http://127.0.0.1:{dead}"), "k");
    assert_code(&unreachable.list_rooms().await.expect_err("nobody listens"), "unreachable", &["cannot reach"]);
}

#[tokio::test]
async fn the_forum_answers_plain_gets_with_its_html_shell() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let client = browser(true);
    let plain = client
        .get(format!("{}/audioroom/rooms", forum.url))
        .header("User-Api-Key", &alice.api_key)
        .send()
        .await
        .expect("an answer");
    assert_eq!(plain.status(), 200);
    assert!(plain.text().await.expect("body").starts_with("<!DOCTYPE html>"), "no .json, no Accept: the app shell");
    let json = client
        .get(format!("{}/audioroom/rooms", forum.url))
        .header("User-Api-Key", &alice.api_key)
        .header("Accept", "application/json")
        .send()
        .await
        .expect("an answer");
    assert!(json.json::<serde_json::Value>().await.expect("JSON")["rooms"].is_array(), "Accept: JSON works too");
    let anonymous = client.get(format!("{}/audioroom/rooms.json", forum.url)).send().await.expect("an answer");
    assert_eq!(anonymous.status(), 403);
    assert_eq!(anonymous.json::<serde_json::Value>().await.expect("JSON")["error_type"], "not_logged_in");
}

#[tokio::test]
async fn secrets_never_reach_messages_or_debug_output() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let secrets = Secrets { user_api_key: Some(Secret::new(&alice.api_key)) };
    let plane = AudioroomPlane::new(settings(&forum.url), secrets.clone()).expect("valid settings");
    let grant = plane.join("lounge").await.expect("joining");
    let mut shown = vec![format!("{plane:?}"), format!("{secrets:?}"), format!("{grant:?}")];
    forum
        .handle
        .fail_next(Endpoint::Rooms, Forced::json(403, json!({"errors": ["no"], "error_type": "invalid_access"})));
    shown.push(plane.list_rooms().await.expect_err("forbidden").to_string());
    forum.handle.fail_next(Endpoint::Heartbeat, Forced::html(500));
    shown.push(plane.heartbeat(&grant).await.expect_err("500").to_string());
    shown.push(plane_with_key("http://127.0.0.1:1", &alice.api_key).list_rooms().await.expect_err("dead").to_string());
    for text in shown {
        assert!(!text.contains(&alice.api_key), "the user API key leaked into {text:?}");
        assert!(!text.contains(&grant.token), "the LiveKit token leaked into {text:?}");
    }
}

#[tokio::test]
async fn room_events_arrive_through_the_message_bus() {
    let forum = forum().await;
    forum.handle.set_long_poll(Duration::from_secs(2));
    let alice = forum.handle.add_user("alice", "Alice", false);
    let bob = forum.handle.add_user("bob", "Bob", false);
    let moderator = forum.handle.add_user("mod", "Mod", true);
    let room = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    let alice_plane = std::sync::Arc::new(plane(&forum, &alice));
    let moderator_plane = plane(&forum, &moderator);
    let grant = alice_plane.join("stage").await.expect("alice joins");
    let moderator_grant = moderator_plane.join("stage").await.expect("the moderator joins");
    let (sender, mut events) = mpsc::channel(32);
    let watcher = {
        let (plane, grant) = (alice_plane.clone(), grant.clone());
        tokio::spawn(async move { plane.watch(&grant, sender).await })
    };
    // The first poll subscribes "from now"; wait for it so that what follows is news.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while forum.handle.requests_to(Endpoint::Poll).len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    forum.handle.set_present(room, bob.id);
    let event = wait_for(&mut events, "bob in the participants", |event| {
        matches!(event, PlaneEvent::Participants { participants } if participants.iter().any(|p| p.identity == bob.id.to_string()))
    })
    .await;
    let PlaneEvent::Participants { participants } = event else { unreachable!("matched above") };
    assert_eq!(participants.len(), 3, "alice, the moderator and bob: {participants:?}");

    moderator_plane
        .moderate(&moderator_grant, ModerationAction::InviteToSpeak, &alice.id.to_string())
        .await
        .expect("invite");
    let event =
        wait_for(&mut events, "alice's role change", |event| matches!(event, PlaneEvent::RoleChanged { .. })).await;
    assert_eq!(event, PlaneEvent::RoleChanged { identity: alice.id.to_string(), role: "speaker".into() });
    moderator_plane
        .moderate(&moderator_grant, ModerationAction::MoveToAudience, &alice.id.to_string())
        .await
        .expect("back to the audience");
    let event =
        wait_for(&mut events, "alice's second role change", |event| matches!(event, PlaneEvent::RoleChanged { .. }))
            .await;
    // The forum says `participant` (the membership's name); on a stage that is a listener.
    assert_eq!(event, PlaneEvent::RoleChanged { identity: alice.id.to_string(), role: "listener".into() });
    let listed = wait_for(&mut events, "alice listed in the audience", |event| {
        matches!(event, PlaneEvent::Participants { participants }
            if participants.iter().any(|p| p.identity == alice.id.to_string() && p.role.as_deref() == Some("listener")))
    })
    .await;
    assert!(matches!(listed, PlaneEvent::Participants { .. }));

    moderator_plane.moderate(&moderator_grant, ModerationAction::Kick, "alice").await.expect("kick");
    let event = wait_for(&mut events, "alice's removal", |event| matches!(event, PlaneEvent::Removed { .. })).await;
    assert!(matches!(event, PlaneEvent::Removed { reason } if reason.contains("moderator")));
    let ended = tokio::time::timeout(Duration::from_secs(5), watcher).await.expect("the watch ends after a kick");
    assert_eq!(ended.expect("no panic"), Ok(()));

    let polls = forum.handle.requests_to(Endpoint::Poll);
    let first = &polls[0];
    assert!(first.path.starts_with("/message-bus/") && first.path.ends_with("/poll"), "{}", first.path);
    assert_eq!(first.header("dont-chunk"), Some("true"), "one JSON array per answer");
    assert_eq!(first.header("user-api-key"), Some(alice.api_key.as_str()));
    assert!(first.query.is_none(), "long polls, not ?dlp=t");
    let channel = format!("/audioroom/rooms/{room}");
    let body = |request: &SeenRequest| serde_json::from_str::<serde_json::Value>(&request.body).expect("a JSON body");
    assert_eq!(body(first)[&channel], -1, "the first poll subscribes from now");
    assert_eq!(body(first)["__seq"], 0);
    let later = body(polls.last().expect("several polls"));
    assert!(later[&channel].as_i64().is_some_and(|id| id > 0), "later polls carry the last id: {later}");
    assert!(later["__seq"].as_u64().is_some_and(|seq| seq > 0), "and count up");
    assert!(polls.len() < 16, "events were batched, not polled for in a loop ({} polls)", polls.len());
}

#[tokio::test]
async fn event_failures_degrade_back_off_and_recover() {
    let forum = forum().await;
    forum.handle.set_long_poll(Duration::from_millis(500));
    let alice = forum.handle.add_user("alice", "Alice", false);
    let bob = forum.handle.add_user("bob", "Bob", false);
    let room = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let plane = std::sync::Arc::new(plane(&forum, &alice));
    let grant = plane.join("lounge").await.expect("joining");
    forum.handle.fail_next(Endpoint::Poll, Forced::html(502));
    let (sender, mut events) = mpsc::channel(32);
    let watcher = {
        let (plane, grant) = (plane.clone(), grant.clone());
        tokio::spawn(async move { plane.watch(&grant, sender).await })
    };
    let started = tokio::time::Instant::now();
    let event = wait_for(&mut events, "a degraded notice", |event| matches!(event, PlaneEvent::Degraded { .. })).await;
    let PlaneEvent::Degraded { message } = event else { unreachable!("matched above") };
    assert!(message.contains("interrupted") && message.contains("502"), "{message}");
    assert!(message.contains("retrying in 2 s"), "{message}");
    let polls = |count: usize| {
        let handle = forum.handle.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while handle.requests_to(Endpoint::Poll).len() < count && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    polls(2).await;
    assert!(started.elapsed() >= Duration::from_millis(1900), "the retry waited for the backoff");
    // The retry subscribes "from now"; once the next poll is out, what follows is news.
    polls(3).await;
    forum.handle.set_present(room, bob.id);
    wait_for(&mut events, "participants after recovery", |event| matches!(event, PlaneEvent::Participants { .. }))
        .await;

    drop(events);
    let ended =
        tokio::time::timeout(Duration::from_secs(5), watcher).await.expect("dropping the receiver ends the watch");
    assert_eq!(ended.expect("no panic"), Ok(()));
}

#[tokio::test]
async fn a_forbidden_event_channel_ends_the_watch_with_the_error() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let plane = plane(&forum, &alice);
    let grant = plane.join("lounge").await.expect("joining");
    forum
        .handle
        .fail_next(Endpoint::Poll, Forced::json(403, json!({"errors": ["no"], "error_type": "invalid_access"})));
    let (sender, _events) = mpsc::channel(8);
    let outcome = tokio::time::timeout(Duration::from_secs(5), plane.watch(&grant, sender)).await.expect("ends");
    assert_code(&outcome.expect_err("a 403 is not retried"), "forbidden", &[]);
}

#[tokio::test]
async fn a_token_refresh_joins_again_and_restores_what_the_join_wiped() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let room = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    let plane = plane(&forum, &alice);
    let grant = plane.join("stage").await.expect("joining");
    plane.report_self_state(&grant, true, true).await.expect("reporting mute and deafen");
    plane.set_hand(&grant, true).await.expect("raising a hand");
    let before = forum.handle.presence(room, alice.id).expect("present");

    let fresh = plane.refresh(&grant).await.expect("a fresh grant");

    assert_eq!(fresh.room_id, grant.room_id);
    let expires = fresh.expires_at.expect("the fresh token's exp");
    assert!(expires.abs_diff(now_seconds() + 600) < 60, "another 10 minutes ({expires})");
    assert_eq!(forum.handle.requests_to(Endpoint::Join).len(), 2, "the forum renews a token only by a join");
    assert_eq!(forum.handle.visits(room, alice.id), 2, "which the forum counts as a visit");
    let after = forum.handle.presence(room, alice.id).expect("still present");
    assert_ne!(after.session_id, before.session_id, "the join replaced the metadata");
    assert_eq!(
        (after.muted, after.deafened, after.hand_raised),
        (Some(true), Some(true), Some(true)),
        "others still see alice muted, deafened and with her hand up"
    );

    // Nothing reported since the last join: the refresh sends nothing more.
    let grant = plane.join_switching("stage").await.expect("joining afresh");
    let sent = forum.handle.requests().len();
    plane.refresh(&grant).await.expect("a fresh grant");
    assert_eq!(forum.handle.requests().len(), sent + 1, "only the join");
}

#[tokio::test]
async fn a_room_manager_is_offered_moderation_whatever_the_forums_role_string() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let staff = forum.handle.add_user("staff", "Staff", true);
    let lounge = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let stage = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    forum.handle.set_membership(lounge, alice.id, "moderator");

    let alice_plane = plane(&forum, &alice);
    let grant = alice_plane.join("lounge").await.expect("alice joins the lounge");
    let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(&grant.token).expect("a token");
    let metadata: serde_json::Value = serde_json::from_str(&claims.metadata).expect("JSON metadata");
    assert_eq!(metadata["role"], "participant", "an open room's moderator member is a participant to the forum");
    assert_eq!(grant.role.as_deref(), Some("moderator"), "Parley offers moderation by role: she manages the room");
    alice_plane.leave(&grant).await.expect("leaving");

    let staff_grant = plane(&forum, &staff).join("stage").await.expect("a site moderator joins the stage");
    assert_eq!(staff_grant.role.as_deref(), Some("moderator"), "a listener to LiveKit, but the room's moderator");
    let bob = forum.handle.add_user("bob", "Bob", false);
    let bob_grant = plane(&forum, &bob).join("lounge").await.expect("bob joins");
    assert_eq!(bob_grant.role.as_deref(), Some("participant"), "a plain user keeps the forum's role");
    assert!(forum.handle.present(stage).contains(&staff.id));
}

#[tokio::test]
async fn a_slug_the_forum_reads_as_an_id_is_named_by_its_id() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let lounge = forum.handle.add_room(NewRoom::open("lounge", "Lounge"));
    let up = forum.handle.add_room(NewRoom::open(&format!("{lounge}-up"), "One Up"));
    let plane = plane(&forum, &alice);

    let rooms = plane.list_rooms().await.expect("listing rooms");
    let names: Vec<&str> = rooms.iter().map(|room| room.id.as_str()).collect();
    let up_id = up.to_string();
    assert_eq!(names, ["lounge", up_id.as_str()], "the forum would take \"{lounge}-up\" for room {lounge}");
    let grant = plane.join(&format!("{lounge}-up")).await.expect("joining by the slug");
    assert_eq!(grant.room_id, up.to_string(), "the room asked for, not room {lounge}");
    assert_eq!(forum.handle.present(up), [alice.id]);
    assert!(forum.handle.present(lounge).is_empty());
}

#[tokio::test]
async fn invites_make_members_even_of_stage_rooms_but_not_of_private_ones() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let stage = forum.handle.add_room(NewRoom::stage("stage", "Stage"));
    let den = forum.handle.add_room(NewRoom { public: false, ..NewRoom::open("den", "Den") });
    let plane = plane(&forum, &alice);

    let opened =
        plane.open_invite(&format!("{}/audioroom/invite/{}", forum.url, forum.handle.invite_token(stage))).await;
    let opened = opened.expect("the stage's invite");
    assert_eq!((opened.id.as_str(), opened.stage), (stage.to_string().as_str(), true));
    assert_eq!(forum.handle.membership_role(stage, alice.id), Some("participant"), "a member at once, stage or not");

    let refused = plane.open_invite(&forum.handle.invite_token(den)).await.expect_err("a private room's invite");
    assert_code(&refused, "forbidden", &["private room", "ask a moderator"]);
    assert_eq!(forum.handle.membership_role(den, alice.id), None);
    let unknown = plane.open_invite("not-a-real-token").await.expect_err("an unknown invite");
    assert_code(&unknown, "not_found", &["invite"]);
}

// ---------------------------------------------------------------------------------------------
// User API keys (§1.6)

async fn key_request(auth_redirect: Option<String>) -> KeyRequest {
    tokio::task::spawn_blocking(move || KeyRequest::new(CLIENT_ID, auth_redirect.as_deref()))
        .await
        .expect("key generation does not panic")
        .expect("a key request")
}

/// A plain reqwest client standing in for the browser. reqwest is built without a bundled TLS
/// provider; creating the adapter's client first installs the process-wide one.
fn browser(follow_redirects: bool) -> reqwest::Client {
    parley_control_plane::http::Http::new().expect("installs the TLS provider");
    let policy =
        if follow_redirects { reqwest::redirect::Policy::default() } else { reqwest::redirect::Policy::none() };
    reqwest::Client::builder().redirect(policy).build().expect("a client")
}

#[tokio::test]
async fn the_user_api_key_flow_works_end_to_end_through_the_loopback_listener() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.set_approving_user(Some(alice.id));
    forum.handle.allow_auth_redirect("http://127.0.0.1:*/auth_redirect");
    assert_eq!(user_api_key::auth_api_version(&forum.url).await.expect("HEAD"), 4);

    let listener = LoopbackListener::bind(0).await.expect("a loopback listener");
    let redirect = listener.redirect_url().to_string();
    assert!(redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/auth_redirect"), "{redirect}");
    let request = key_request(Some(redirect.clone())).await;
    let authorize = request.authorize_url(&forum.url).expect("the approval URL");
    let waiting = tokio::spawn(async move {
        let key = request.receive(listener, Duration::from_secs(20)).await;
        (request, key)
    });

    // The browser: opens the approval page, gets redirected, follows to the listener.
    let browser = browser(false);
    let approval = browser.get(authorize.as_str()).send().await.expect("the approval page answers");
    assert_eq!(approval.status(), 302, "approved at once, redirected");
    let location = approval.headers()["location"].to_str().expect("a location").to_string();
    assert!(location.starts_with(&format!("{redirect}?payload=")), "{location}");
    let favicon = browser.get(redirect.replace("/auth_redirect", "/favicon.ico")).send().await.expect("an answer");
    assert_eq!(favicon.status(), 404, "other paths do not end the wait");
    // Any page or local program can reach the loopback port first: a payload that does not
    // decrypt must not end the wait either.
    let forged = browser.get(format!("{redirect}?payload=bm90LWEtcGF5bG9hZA%3D%3D")).send().await.expect("an answer");
    assert!(forged.status().is_success() || forged.status().is_client_error(), "answered: {}", forged.status());
    let landing = browser.get(&location).send().await.expect("the listener answers");
    assert_eq!(landing.status(), 200);
    assert!(landing.text().await.expect("a page").contains("authorized"));

    let (_request, key) = waiting.await.expect("no panic");
    let key = key.expect("the key decrypts");
    let issued = forum.handle.issued_keys();
    assert_eq!(issued.len(), 1);
    assert_eq!(key.expose(), issued[0].key, "the key the forum issued");
    assert_eq!(issued[0].client_id, CLIENT_ID);
    assert_eq!(issued[0].scopes, ["write"]);
    assert_eq!(issued[0].application_name, "Parley");
    let me = plane_with_key(&forum.url, key.expose()).current_user().await.expect("the new key works");
    assert_eq!(me.username, "alice");
}

#[tokio::test]
async fn pasted_payloads_decode_and_wrong_ones_are_refused_clearly() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    forum.handle.set_approving_user(Some(alice.id));
    let request = key_request(None).await;
    let authorize = request.authorize_url(&forum.url).expect("the approval URL");
    assert!(!authorize.query().unwrap_or_default().contains("auth_redirect"), "copy/paste flow: no redirect");
    let client = browser(true);
    let shown: serde_json::Value = client
        .get(authorize.as_str())
        .header("Accept", "application/json")
        .send()
        .await
        .expect("the approval page")
        .json()
        .await
        .expect("JSON with the payload");
    let payload = shown["payload"].as_str().expect("a payload").to_string();
    assert!(payload.trim_end().contains('\n'), "Base64 with line breaks, as Ruby writes it");
    let key = request.decode_payload(&format!("  {payload}  ")).expect("a pasted payload decodes");
    assert!(forum.handle.key_is_valid(key.expose()));

    // The same forum answer for a request with another nonce (a stale or forged answer).
    let mut forged = authorize.clone();
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(name, value)| (name.to_string(), if name == "nonce" { "other".to_string() } else { value.to_string() }))
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let other: serde_json::Value = client
        .get(forged.as_str())
        .header("Accept", "application/json")
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("JSON");
    let error = request.decode_payload(other["payload"].as_str().expect("payload")).expect_err("wrong nonce");
    assert_code(&error, "malformed_response", &["nonce", "start the authorization again"]);

    let someone_else = key_request(None).await;
    let error = someone_else.decode_payload(&payload).expect_err("encrypted for another key pair");
    assert_code(&error, "malformed_response", &["not encrypted for this request"]);
    let error = request.decode_payload("this is not base64 at all!").expect_err("garbage");
    assert_code(&error, "malformed_response", &["base64"]);
    let error = request.decode_payload("QUJD").expect_err("Base64 of garbage");
    assert_code(&error, "malformed_response", &["not encrypted for this request"]);
    assert_code(&request.decode_payload("   ").expect_err("empty"), "malformed_response", &["empty"]);
}

#[tokio::test]
async fn the_key_page_checks_its_parameters_and_redirects() {
    let forum = forum().await;
    let alice = forum.handle.add_user("alice", "Alice", false);
    let request = key_request(Some("http://127.0.0.1:9/auth_redirect".into())).await;
    let url = request.authorize_url(&forum.url).expect("the approval URL");
    let client = browser(false);

    let logged_out = client.get(url.as_str()).send().await.expect("an answer");
    assert_eq!((logged_out.status().as_u16(), logged_out.headers()["location"].to_str().ok()), (302, Some("/login")));
    forum.handle.set_approving_user(Some(alice.id));
    let refused = client.get(url.as_str()).send().await.expect("an answer");
    assert_eq!(refused.status(), 403, "the redirect is not in allowed_user_api_auth_redirects");
    let mut missing = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "nonce")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    missing.query_pairs_mut().clear().extend_pairs(pairs);
    let incomplete = client.get(missing.as_str()).send().await.expect("an answer");
    assert_eq!(incomplete.status(), 400);
    assert!(incomplete.text().await.expect("body").contains("nonce"), "names the missing parameter");
    let head = client.head(url.as_str()).send().await.expect("an answer");
    assert_eq!(head.headers()["auth-api-version"], "4");
    assert!(forum.handle.issued_keys().is_empty(), "no key was issued by refused requests");
}

#[tokio::test]
async fn the_loopback_listener_gives_up_with_a_clear_message() {
    let listener = LoopbackListener::bind(0).await.expect("a loopback listener");
    let redirect = listener.redirect_url().to_string();
    let error = listener.wait_for_payload(Duration::from_millis(300)).await.expect_err("nobody came");
    assert_code(&error, "invalid_input", &["no authorization arrived", &redirect, "allowed_user_api_auth_redirects"]);
}
