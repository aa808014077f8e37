//! The disTokoloshe adapter against its contract server (CONTROL_PLANES.md §5).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_api::access_token::TokenVerifier;
use parley_contract_servers::distokoloshe::{self, Config, Handle};
use parley_contract_servers::{LivekitKeys, Running};
use parley_control_plane::adapter::distokoloshe::{DistokoloshePlane, HEARTBEAT_EVERY, Secrets, Settings, register};
use parley_control_plane::{Capability, ControlPlane, PlaneEvent, Secret};
use tokio::sync::mpsc;

const PASSWORD: &str = "Correct-Horse-9";

fn keys() -> LivekitKeys {
    LivekitKeys {
        url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: "a-test-secret-that-is-long-enough-123".into(),
    }
}

async fn server(config: Config) -> (Running, Handle) {
    distokoloshe::start(keys(), config).await.expect("server starts")
}

fn plane(url: &str, username: &str, password: Option<&str>, jwt: Option<&str>) -> DistokoloshePlane {
    DistokoloshePlane::new(
        Settings { url: url.into(), username: username.into() },
        Secrets { password: password.map(Secret::new), app_jwt: jwt.map(Secret::new) },
    )
    .expect("valid settings")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn sign_in_list_rooms_and_join_with_the_e2ee_passphrase() {
    let (running, handle) = server(Config::default()).await;
    let alice = handle.add_user("alice", PASSWORD, "Alice A.");
    let lounge = handle.add_room("Lounge", "voice", Some(alice));
    handle.add_room("Gaming", "video", None);
    let plane = plane(&running.url(), "alice", Some(PASSWORD), None);
    assert!(plane.capabilities().supports(Capability::Heartbeat) && plane.capabilities().supports(Capability::Events));

    let rooms = plane.list_rooms().await.expect("rooms");
    assert_eq!(rooms.iter().map(|room| room.name.as_str()).collect::<Vec<_>>(), ["Lounge", "Gaming"]);
    assert!(rooms[0].can_manage && !rooms[1].can_manage, "alice created the lounge only");
    assert_eq!(rooms[0].participants, Some(0));
    assert!(plane.app_jwt().is_some(), "the sign-in JWT is kept for the keyring");

    let grant = plane.join("lounge").await.expect("join by name");
    assert_eq!(grant.room_id, lounge.to_string());
    assert_eq!(grant.room_name, "Lounge");
    let port = running.address.port();
    assert_eq!(grant.url, format!("ws://127.0.0.1:{port}/livekit/"), "relative wsUrl hangs off the server host");
    assert_eq!(grant.e2ee_key.as_deref(), Some(handle.e2ee_key("Lounge").as_str()));
    assert_eq!(grant.heartbeat_every, Some(HEARTBEAT_EVERY));
    assert_eq!(HEARTBEAT_EVERY, Duration::from_secs(8));
    let claims =
        TokenVerifier::with_api_key(&keys().api_key, &keys().api_secret).verify(&grant.token).expect("real token");
    assert_eq!(claims.sub, "alice", "identity = user name");
    assert_eq!(claims.video.room, "Lounge", "room = room name");
    let expires = grant.expires_at.unwrap();
    assert!(expires > now() + 7000 && expires <= now() + 7205, "2 h token: {expires}");
    assert!(!format!("{grant:?}").contains(grant.e2ee_key.as_deref().unwrap()), "Debug hides the passphrase");

    let rooms = plane.list_rooms().await.unwrap();
    assert_eq!(rooms[0].participants, Some(1), "members count after joining");
    let participants = plane.participants(&grant).await.unwrap();
    assert_eq!(participants.len(), 1);
    assert_eq!((participants[0].identity.as_str(), participants[0].name.as_str()), ("alice", "Alice A."));

    let join = handle.requests().into_iter().find(|seen| seen.path.ends_with("/join")).unwrap();
    assert_eq!(join.method, "POST");
    assert_eq!(join.path, format!("/api/rooms/{lounge}/join"));
    assert!(join.headers["authorization"].starts_with("Bearer "), "app JWT as bearer");
}

#[tokio::test]
async fn an_absolute_ws_url_is_used_as_it_is() {
    let (running, handle) = server(Config { ws_url: keys().url, ..Config::default() }).await;
    handle.add_user("bob", PASSWORD, "Bob");
    let room = handle.add_room("Studio", "voice", None);
    let grant = plane(&running.url(), "bob", Some(PASSWORD), None).join(&room.to_string()).await.expect("join by id");
    assert_eq!(grant.url, "ws://127.0.0.1:7880");
}

#[tokio::test]
async fn heartbeats_and_leave_reach_the_server() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("carol", PASSWORD, "Carol");
    let room = handle.add_room("Lounge", "voice", None);
    let plane = plane(&running.url(), "carol", Some(PASSWORD), None);
    let grant = plane.join("Lounge").await.unwrap();
    assert_eq!(handle.members(room), ["carol"]);
    plane.heartbeat(&grant).await.expect("ping");
    plane.heartbeat(&grant).await.expect("ping");
    assert_eq!(handle.pings("carol"), 2);
    plane.leave(&grant).await.expect("leave");
    assert_eq!(handle.leaves("carol"), 1);
    assert!(handle.members(room).is_empty(), "leave removes presence");
    let ping = handle.requests().into_iter().find(|seen| seen.path == "/api/events/ping").unwrap();
    assert_eq!(ping.method, "POST");
}

#[tokio::test]
async fn an_expired_sign_in_is_renewed_once_with_the_password() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("dave", PASSWORD, "Dave");
    handle.add_room("Lounge", "voice", None);
    let plane = plane(&running.url(), "dave", Some(PASSWORD), None);
    let grant = plane.join("Lounge").await.unwrap();
    let first_jwt = plane.app_jwt().unwrap();
    assert_eq!(handle.logins(), 1);
    handle.invalidate_tokens();
    plane.heartbeat(&grant).await.expect("re-login then ping");
    assert_eq!(handle.logins(), 2, "one new sign-in");
    assert_ne!(plane.app_jwt().unwrap(), first_jwt, "the new JWT replaces the old one");

    // Without a password the refused JWT ends in `unauthorized`, without echoing the JWT.
    let cached = first_jwt.expose().to_string();
    let jwt_only = self::plane(&running.url(), "dave", None, Some(&cached));
    let error = jwt_only.heartbeat(&grant).await.expect_err("stale JWT, no password");
    assert_eq!(error.code(), "unauthorized");
    assert!(error.to_string().contains("Invalid or expired token"), "{error}");
    assert!(!error.to_string().contains(&cached), "{error}");
}

#[tokio::test]
async fn a_jailed_user_is_told_until_when() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("eve", PASSWORD, "Eve");
    handle.add_room("Lounge", "voice", None);
    let plane = plane(&running.url(), "eve", Some(PASSWORD), None);
    plane.join("Lounge").await.unwrap();
    handle.punish("eve", Duration::from_secs(300));
    let error = plane.join("Lounge").await.expect_err("jailed");
    assert_eq!(error.code(), "kicked");
    let text = error.to_string();
    assert!(text.contains("voted you out until 20") && text.ends_with("UTC"), "{text}");
    assert!(error.ends_session());
}

#[tokio::test]
async fn events_bring_member_changes_and_the_punishment() {
    let (running, handle) = server(Config { ping_every: Duration::from_millis(200), ..Config::default() }).await;
    handle.add_user("frank", PASSWORD, "Frank");
    handle.add_user("grace", PASSWORD, "Grace");
    handle.add_room("Lounge", "voice", None);
    let frank = Arc::new(plane(&running.url(), "frank", Some(PASSWORD), None));
    let grant = frank.join("Lounge").await.unwrap();
    let (sender, mut receiver) = mpsc::channel(16);
    let watcher = {
        let (frank, grant) = (frank.clone(), grant.clone());
        tokio::spawn(async move { frank.watch(&grant, sender).await })
    };
    for _ in 0..100 {
        if handle.streams("frank") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(handle.streams("frank"), 1, "the adapter opened one event stream");
    let stream = handle.requests().into_iter().find(|seen| seen.path == "/api/events").unwrap();
    assert!(stream.query.as_deref().unwrap_or_default().starts_with("token="), "SSE auth via ?token=");

    plane(&running.url(), "grace", Some(PASSWORD), None).join("Lounge").await.unwrap();
    let event =
        tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await.expect("an event in time").expect("open");
    match event {
        PlaneEvent::Participants { participants } => {
            let mut names: Vec<String> = participants.into_iter().map(|participant| participant.identity).collect();
            names.sort();
            assert_eq!(names, ["frank", "grace"]);
        }
        other => panic!("expected the member list, got {other:?}"),
    }

    handle.punish("frank", Duration::from_secs(60));
    let removed = loop {
        let event =
            tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await.expect("in time").expect("open");
        if let PlaneEvent::Removed { reason } = event {
            break reason;
        }
    };
    assert!(removed.contains("voted you out until"), "{removed}");
    let ended = tokio::time::timeout(Duration::from_secs(5), watcher).await.expect("watch ends").expect("no panic");
    assert!(ended.is_ok(), "removal ends the watch cleanly: {ended:?}");
}

#[tokio::test]
async fn error_statuses_map_to_plane_errors() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("hank", PASSWORD, "Hank");
    let room = handle.add_room("Lounge", "voice", None);

    let wrong = plane(&running.url(), "hank", Some("Wrong-Password-1"), None);
    let error = wrong.list_rooms().await.expect_err("bad password");
    assert_eq!(error.code(), "unauthorized");
    assert!(error.to_string().contains("Invalid credentials"), "{error}");
    assert!(!error.to_string().contains("Wrong-Password-1"), "{error}");

    let plane = plane(&running.url(), "hank", Some(PASSWORD), None);
    let missing = plane.join("999").await.expect_err("no such room");
    assert_eq!(missing.code(), "not_found");
    assert!(missing.to_string().contains("999"), "{missing}");
    let unnamed = plane.join("Nowhere").await.expect_err("no such name");
    assert_eq!(unnamed.code(), "not_found");

    let join = format!("/api/rooms/{room}/join");
    let cases: [(&str, u16, &str, &str, &str); 6] = [
        (join.as_str(), 500, r#"{"error":"Failed to generate token"}"#, "server_error", "Failed to generate token"),
        (join.as_str(), 403, r#"{"error":"Room is locked"}"#, "forbidden", "Room is locked"),
        (join.as_str(), 400, r#"{"error":"Invalid room ID"}"#, "rejected", "Invalid room ID"),
        (join.as_str(), 200, "<!doctype html><title>nginx</title>", "malformed_response", "web page"),
        (join.as_str(), 200, r#"{"token":"#, "malformed_response", "unexpected JSON"),
        ("/api/rooms", 429, r#"{"error":"Too many requests"}"#, "rate_limited", "rate limiting"),
    ];
    for (path, status, body, code, words) in cases {
        handle.fail_next(path, status, body);
        let error = if path == "/api/rooms" {
            plane.list_rooms().await.map(|_| ())
        } else {
            plane.join(&room.to_string()).await.map(|_| ())
        }
        .expect_err("forced failure");
        assert_eq!(error.code(), code, "{path} {status}: {error}");
        assert!(error.to_string().contains(words), "{path} {status}: {error}");
    }
}

#[tokio::test]
async fn registration_follows_the_server_rules() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("taken", PASSWORD, "Taken");
    let jwt = register(&running.url(), "newbie", "New Bie", &Secret::new(PASSWORD)).await.expect("registered");
    assert!(!jwt.expose().is_empty());
    let plane = plane(&running.url(), "newbie", None, Some(jwt.expose()));
    plane.list_rooms().await.expect("the registration JWT works");

    let weak = register(&running.url(), "other", "Other", &Secret::new("password")).await.expect_err("weak password");
    assert_eq!(weak.code(), "rejected");
    assert!(weak.to_string().contains("Password must be"), "{weak}");
    let taken = register(&running.url(), "taken", "T", &Secret::new(PASSWORD)).await.expect_err("taken");
    assert_eq!(
        taken,
        parley_control_plane::PlaneError::Rejected { status: 409, message: "Username already taken".into() }
    );
}

#[tokio::test]
async fn a_dead_server_is_unreachable_and_secrets_stay_hidden() {
    let (running, _handle) = server(Config::default()).await;
    let url = running.url();
    running.stop().await;
    let plane = plane(&url, "ivy", Some(PASSWORD), Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.c2lnbmF0dXJl"));
    let error = plane.list_rooms().await.expect_err("nobody listens");
    assert_eq!(error.code(), "unreachable");
    let debug = format!("{plane:?}");
    assert!(!debug.contains(PASSWORD) && !debug.contains("c2lnbmF0dXJl"), "Debug leaks a secret: {debug}");
    assert!(!error.to_string().contains(PASSWORD));
}
