//! The La Suite Meet adapter against its contract server (CONTROL_PLANES.md §2, §6).

use std::sync::Arc;
use std::time::Duration;

use livekit_api::access_token::TokenVerifier;
use parley_contract_servers::meet::{self, AccessLevel, Handle};
use parley_contract_servers::{LivekitKeys, Running};
use parley_control_plane::adapter::meet::{LobbyStatus, MeetPlane, Secrets, Settings};
use parley_control_plane::{Capability, ControlPlane, ModerationAction, Secret};

const CSRF: &str = "csrf-token-value-1234567890";

fn keys() -> LivekitKeys {
    LivekitKeys {
        url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: "a-test-secret-that-is-long-enough-123".into(),
    }
}

async fn site() -> (Running, Handle) {
    meet::start(keys()).await.expect("site starts")
}

fn plane_with(url: &str, name: &str, session: Option<&str>, csrf: Option<&str>, wait_ms: u64) -> MeetPlane {
    MeetPlane::new(
        Settings { url: url.into(), display_name: name.into(), lobby_poll_ms: 100, lobby_wait_ms: wait_ms },
        Secrets { session_cookie: session.map(Secret::new), csrf_token: csrf.map(Secret::new) },
    )
    .expect("valid settings")
}

fn guest(url: &str) -> MeetPlane {
    plane_with(url, "Guest Gus", None, None, 10_000)
}

fn verifier() -> TokenVerifier {
    TokenVerifier::with_api_key(&keys().api_key, &keys().api_secret)
}

/// A restricted room with a signed-in owner (session + CSRF) whose simulated LiveKit room holds
/// the owner and a guest with a microphone.
async fn owner_setup() -> (Running, Handle, String, MeetPlane) {
    let (running, handle) = site().await;
    handle.set_livekit_url(&running.url().replace("http://", "ws://"));
    let room = handle.add_room("standup", "Daily standup", AccessLevel::Restricted);
    let session = handle.add_user("owner-sub");
    handle.set_role(&room, "owner-sub", "owner");
    handle.add_present(&room, "owner-sub", "Olga", Some("owner-sub"), &[("TR_owner_mic", "MICROPHONE")]);
    handle.add_present(&room, "guest-1", "Gus", None, &[("TR_cam", "CAMERA"), ("TR_mic", "MICROPHONE")]);
    handle.add_present(&room, "member-1", "Mia", Some("member-sub"), &[]);
    let owner = plane_with(&running.url(), "Olga", Some(&session), Some(CSRF), 10_000);
    (running, handle, room, owner)
}

#[tokio::test]
async fn a_guest_joins_a_public_room_directly() {
    let (running, handle) = site().await;
    let room = handle.add_room("lobby-free", "Open room", AccessLevel::Public);
    let plane = guest(&running.url());
    let grant = plane.join("lobby-free").await.expect("public rooms admit everyone");
    assert_eq!(grant.room_id, room, "the slug resolves to the room UUID");
    assert_eq!(grant.room_name, "Open room");
    assert_eq!(grant.url, "ws://127.0.0.1:7880");
    let claims = verifier().verify(&grant.token).expect("real token");
    assert_eq!(claims.video.room, room, "LiveKit room = room UUID");
    assert_eq!(claims.name, "Guest Gus");
    assert!(!claims.video.room_admin);
    assert_eq!(claims.attributes.get("is_authenticated").map(String::as_str), Some("false"));
    let capabilities = plane.capabilities();
    assert!(capabilities.supports(Capability::Join) && capabilities.supports(Capability::RaiseHand));
    assert_eq!(capabilities.moderation(), [ModerationAction::Mute], "without a session only token-mute");
    let request = handle.requests().into_iter().next().unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/api/v1.0/rooms/lobby-free/"));
    assert_eq!(request.query.as_deref(), Some("username=Guest+Gus"));
}

#[tokio::test]
async fn an_owner_gets_a_room_admin_token_and_the_participant_list() {
    let (_running, handle, room, owner) = owner_setup().await;
    let grant = owner.join(&room).await.expect("owners enter restricted rooms");
    let claims = verifier().verify(&grant.token).unwrap();
    assert!(claims.video.room_admin, "owners get roomAdmin");
    assert_eq!(grant.role.as_deref(), Some("owner"));
    let moderation = owner.capabilities().moderation();
    for action in [
        ModerationAction::Mute,
        ModerationAction::HardMute,
        ModerationAction::Restore,
        ModerationAction::Kick,
        ModerationAction::MakeModerator,
    ] {
        assert!(moderation.contains(&action), "owner can {action}: {moderation:?}");
    }
    assert!(owner.capabilities().supports(Capability::ListParticipants));

    let participants = owner.participants(&grant).await.expect("RoomService list with the roomAdmin token");
    let gus = participants.iter().find(|participant| participant.identity == "guest-1").expect("guest listed");
    assert_eq!((gus.name.as_str(), gus.muted, gus.hand_raised), ("Gus", Some(false), Some(false)));
    let twirp =
        handle.requests().into_iter().find(|seen| seen.path == "/twirp/livekit.RoomService/ListParticipants").unwrap();
    assert_eq!(twirp.headers["authorization"], format!("Bearer {}", grant.token));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&twirp.body).unwrap(), serde_json::json!({ "room": room }));
}

#[tokio::test]
async fn owners_moderate_with_session_csrf_and_whole_permission_objects() {
    let (running, handle, room, owner) = owner_setup().await;
    let grant = owner.join(&room).await.unwrap();

    owner.moderate(&grant, ModerationAction::Mute, "guest-1").await.expect("mute resolves the microphone track");
    let gus = handle.present(&room).into_iter().find(|present| present.identity == "guest-1").unwrap();
    assert!(gus.tracks.iter().any(|track| track.sid == "TR_mic" && track.muted), "microphone muted");
    assert!(gus.tracks.iter().any(|track| track.sid == "TR_cam" && !track.muted), "camera untouched");
    let mute = handle.requests().into_iter().find(|seen| seen.path.ends_with("/mute-participant/")).unwrap();
    assert_eq!(mute.headers["x-csrftoken"], CSRF);
    assert_eq!(mute.headers["origin"], running.url());
    assert_eq!(mute.headers["referer"], format!("{}/", running.url()));
    assert!(
        mute.headers["cookie"].contains("meet_sessionid=")
            && mute.headers["cookie"].contains(&format!("csrftoken={CSRF}"))
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&mute.body).unwrap(),
        serde_json::json!({ "participant_identity": "guest-1", "track_sid": "TR_mic" })
    );

    owner.moderate(&grant, ModerationAction::HardMute, "guest-1").await.expect("hard mute");
    let permission =
        handle.present(&room).into_iter().find(|present| present.identity == "guest-1").unwrap().permission.unwrap();
    assert_eq!(
        permission,
        serde_json::json!({ "can_subscribe": true, "can_publish": false, "can_publish_data": true, "can_publish_sources": [],
                            "can_update_metadata": false, "can_subscribe_metrics": false }),
        "every permission field is sent"
    );
    owner.moderate(&grant, ModerationAction::Restore, "guest-1").await.expect("restore");
    let permission =
        handle.present(&room).into_iter().find(|present| present.identity == "guest-1").unwrap().permission.unwrap();
    assert_eq!(permission["can_publish"], true);
    assert_eq!(
        permission["can_publish_sources"],
        serde_json::json!(["camera", "microphone", "screen_share", "screen_share_audio"])
    );

    owner.moderate(&grant, ModerationAction::MakeModerator, "member-1").await.expect("promote");
    assert_eq!(handle.role(&room, "member-sub").as_deref(), Some("administrator"));

    owner.moderate(&grant, ModerationAction::Kick, "guest-1").await.expect("kick");
    assert!(!handle.present(&room).iter().any(|present| present.identity == "guest-1"), "removed from the room");
    let again = owner.moderate(&grant, ModerationAction::Kick, "guest-1").await.expect_err("already gone");
    assert_eq!(again.code(), "not_found");
    assert!(again.to_string().contains("Participant not found"), "{again}");

    let ban = owner.moderate(&grant, ModerationAction::Ban, "member-1").await.expect_err("Meet has no bans");
    assert_eq!(ban.code(), "unsupported");
}

#[tokio::test]
async fn the_lobby_is_polled_with_its_cookie_until_an_admin_admits() {
    let (running, handle, room, owner) = owner_setup().await;
    let guest = Arc::new(guest(&running.url()));
    let mut status = guest.lobby_status();
    let joining = {
        let (guest, room) = (guest.clone(), room.clone());
        tokio::spawn(async move { guest.join(&room).await })
    };
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|status| matches!(status, LobbyStatus::Waiting { .. })),
    )
    .await
    .expect("waiting shows in time")
    .expect("status channel open");

    let waiting = owner.waiting_participants(&room).await.expect("the owner sees the lobby");
    assert_eq!(waiting.len(), 1, "one waiter: {waiting:?}");
    assert_eq!(waiting[0].username, "Guest Gus");
    tokio::time::sleep(Duration::from_millis(350)).await;
    owner.admit(&room, &waiting[0].id, true).await.expect("admit");

    let grant =
        tokio::time::timeout(Duration::from_secs(5), joining).await.expect("admitted in time").unwrap().expect("grant");
    let claims = verifier().verify(&grant.token).unwrap();
    assert_eq!(claims.sub, waiting[0].id, "identity = lobby participant id");
    assert_eq!(*guest.lobby_status().borrow(), LobbyStatus::Admitted { room: room.clone() });
    assert_eq!(handle.notifications(), 1, "the cookie kept one waiter, not one per poll");
    let polls: Vec<_> = handle.requests().into_iter().filter(|seen| seen.path.ends_with("/request-entry/")).collect();
    assert!(polls.len() >= 3, "polled repeatedly: {}", polls.len());
    assert!(polls.iter().skip(1).all(|seen| {
        seen.headers
            .get("cookie")
            .is_some_and(|cookie| cookie.contains(&format!("lobbyParticipantId={}", waiting[0].id)))
    }));
}

#[tokio::test]
async fn a_declined_or_unanswered_guest_gets_a_clear_error() {
    let (running, handle, room, owner) = owner_setup().await;
    let guest = Arc::new(guest(&running.url()));
    let joining = {
        let (guest, room) = (guest.clone(), room.clone());
        tokio::spawn(async move { guest.join(&room).await })
    };
    let mut waiting = Vec::new();
    for _ in 0..50 {
        waiting = owner.waiting_participants(&room).await.unwrap();
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner.admit(&room, &waiting[0].id, false).await.expect("deny");
    let error = tokio::time::timeout(Duration::from_secs(5), joining).await.unwrap().unwrap().expect_err("denied");
    assert_eq!(error.code(), "entry_denied");
    assert!(error.to_string().contains("declined"), "{error}");

    let impatient = plane_with(&running.url(), "Ivan", None, None, 400);
    let error = impatient.join(&room).await.expect_err("nobody answers");
    assert_eq!(error.code(), "forbidden");
    assert!(error.to_string().contains("nobody admitted you"), "{error}");
    assert_eq!(*impatient.lobby_status().borrow(), LobbyStatus::GaveUp { room });
    assert!(handle.notifications() >= 2, "both guests reached the lobby");
}

#[tokio::test]
async fn waiters_that_stop_polling_expire_after_three_seconds() {
    let (running, handle) = site().await;
    let room = handle.add_room("closed", "Closed", AccessLevel::Restricted);
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1.0/rooms/{room}/request-entry/", running.url());
    let first = client.post(&url).json(&serde_json::json!({ "username": "Once" })).send().await.unwrap();
    let cookie = first.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.starts_with("lobbyParticipantId=") && cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(first.json::<serde_json::Value>().await.unwrap()["status"], "waiting");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(handle.expired_waiters(), 1, "the waiter was forgotten");
}

#[tokio::test]
async fn token_auth_raises_hands_renames_and_mutes_named_tracks() {
    let (running, handle) = site().await;
    handle.set_livekit_url(&running.url().replace("http://", "ws://"));
    let room = handle.add_room("open", "Open", AccessLevel::Public);
    let plane = guest(&running.url());
    let grant = plane.join("open").await.unwrap();
    let identity = verifier().verify(&grant.token).unwrap().sub;
    handle.add_present(&room, &identity, "Guest Gus", None, &[]);
    handle.add_present(&room, "noisy", "Noisy", None, &[("TR_noisy", "MICROPHONE")]);

    plane.set_hand(&grant, true).await.expect("raise hand");
    let me = handle.present(&room).into_iter().find(|present| present.identity == identity).unwrap();
    assert!(me.attributes["handRaisedAt"].starts_with("20"), "ISO timestamp: {:?}", me.attributes);
    let toggle = handle.requests().into_iter().find(|seen| seen.path.ends_with("/toggle-hand/")).unwrap();
    assert_eq!(toggle.headers["authorization"], format!("Bearer {}", grant.token));
    assert!(!toggle.headers.contains_key("cookie"), "token calls carry no session");
    plane.set_hand(&grant, false).await.unwrap();
    plane.rename(&grant, "Gus the Guest").await.expect("rename");
    let me = handle.present(&room).into_iter().find(|present| present.identity == identity).unwrap();
    assert_eq!((me.name.as_str(), me.attributes["handRaisedAt"].as_str()), ("Gus the Guest", ""));

    let resolve =
        plane.moderate(&grant, ModerationAction::Mute, "noisy").await.expect_err("no roomAdmin to list tracks");
    assert_eq!(resolve.code(), "forbidden");
    assert!(resolve.to_string().contains("<identity>/<track SID>"), "{resolve}");
    plane.moderate(&grant, ModerationAction::Mute, "noisy/TR_noisy").await.expect("everyone can mute a named track");
    assert!(handle.present(&room).iter().any(|present| present.identity == "noisy" && present.tracks[0].muted));

    handle.set_configuration(&room, serde_json::json!({ "everyone_can_mute": false }));
    let refused = plane.moderate(&grant, ModerationAction::Mute, "noisy/TR_noisy").await.expect_err("not in this room");
    assert_eq!(refused.code(), "forbidden");
    let kick = plane.moderate(&grant, ModerationAction::Kick, "noisy").await.expect_err("no session");
    assert_eq!(kick.code(), "invalid_input");
    assert!(kick.to_string().contains("meet_sessionid"), "{kick}");
}

#[tokio::test]
async fn session_and_csrf_failures_read_well() {
    let (running, handle, room, _owner) = owner_setup().await;
    let owner_session = handle.add_user("owner-sub");
    let owner = plane_with(&running.url(), "Olga", Some(&owner_session), Some(CSRF), 10_000);
    let grant = owner.join(&room).await.expect("owner joins");
    // The adapter sends cookie and header from one secret, so the server's check is shown with a
    // raw request, and the adapter's mapping of its answer with a forced one.
    let csrf_error = {
        let client = reqwest::Client::new();
        let response = client
            .post(format!("{}/api/v1.0/rooms/{room}/remove-participant/", running.url()))
            .header("cookie", format!("meet_sessionid={owner_session}; csrftoken=a"))
            .header("x-csrftoken", "b")
            .json(&serde_json::json!({ "participant_identity": "guest-1" }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(csrf_error.0, 403);
    assert!(csrf_error.1["detail"].as_str().unwrap().starts_with("CSRF Failed"), "{:?}", csrf_error.1);
    handle.fail_next("remove-participant", 403, r#"{"detail":"CSRF Failed: CSRF token missing."}"#);
    let error = owner.moderate(&grant, ModerationAction::Kick, "guest-1").await.expect_err("CSRF refused");
    assert_eq!(error.code(), "unauthorized");
    assert!(error.to_string().contains("CSRF Failed") && error.to_string().contains("csrftoken"), "{error}");

    let stranger = plane_with(&running.url(), "Sam", Some("expired-session"), Some(CSRF), 10_000);
    let error = stranger.waiting_participants(&room).await.expect_err("unknown session = anonymous");
    assert_eq!(error.code(), "unauthorized");
    assert!(error.to_string().contains("Authentication credentials were not provided"), "{error}");

    let member_session = handle.add_user("member-sub");
    handle.set_role(&room, "member-sub", "member");
    let member = plane_with(&running.url(), "Mia", Some(&member_session), Some(CSRF), 10_000);
    let member_grant = member.join(&room).await.expect("members enter");
    assert!(!member.capabilities().can_moderate(ModerationAction::Kick), "a non-admin token hides admin actions");
    let error =
        member.moderate(&member_grant, ModerationAction::Kick, "guest-1").await.expect_err("members cannot kick");
    assert_eq!(error.code(), "forbidden");
    assert!(error.to_string().contains("permission"), "{error}");
}

#[tokio::test]
async fn unknown_rooms_forced_errors_and_dead_servers_map_to_plane_errors() {
    let (running, handle) = site().await;
    handle.add_room("open", "Open", AccessLevel::Public);
    let plane = guest(&running.url());
    let missing = plane.join("nope").await.expect_err("unknown room");
    assert_eq!(missing.code(), "not_found");
    assert!(missing.to_string().contains("No Room matches"), "{missing}");
    let cases: [(u16, &str, &str, &str); 5] = [
        (500, "<html><body>Server Error (500)</body></html>", "server_error", "HTTP 500"),
        (429, r#"{"detail":"Request was throttled."}"#, "rate_limited", "rate limiting"),
        (502, "Bad Gateway", "server_error", "Bad Gateway"),
        (200, "<!DOCTYPE html><html>SPA</html>", "malformed_response", "web page"),
        (200, r#"{"id":"#, "malformed_response", "unexpected JSON"),
    ];
    for (status, body, code, words) in cases {
        handle.fail_next("retrieve", status, body);
        let error = plane.join("open").await.expect_err("forced failure");
        assert_eq!(error.code(), code, "{status} {body}: {error}");
        assert!(error.to_string().contains(words), "{status}: {error}");
    }

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = client.get(format!("{}/api/v1.0/rooms/open?username=x", running.url())).send().await.unwrap();
    assert_eq!(redirect.status().as_u16(), 301, "APPEND_SLASH redirects GETs");
    let post = client.post(format!("{}/api/v1.0/rooms/open/rename", running.url())).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 404, "a POST without the slash fails");

    let url = running.url();
    running.stop().await;
    assert_eq!(guest(&url).join("open").await.expect_err("dead").code(), "unreachable");
}

#[tokio::test]
async fn cookies_never_show() {
    let session = "sessionvalue-abcdef-123456";
    let plane = plane_with("https://meet.example", "Olga", Some(session), Some(CSRF), 10_000);
    let debug = format!("{plane:?}");
    assert!(!debug.contains(session) && !debug.contains(CSRF), "Debug leaks a cookie: {debug}");
    let grant = parley_control_plane::JoinGrant {
        room_id: String::new(),
        room_name: String::new(),
        url: "ws://x".into(),
        token: "t".into(),
        e2ee_key: None,
        expires_at: None,
        heartbeat_every: None,
        role: None,
        notice: None,
    };
    let error = plane.moderate(&grant, ModerationAction::Kick, "someone").await.expect_err("no room");
    assert!(!error.to_string().contains(session), "{error}");
}
