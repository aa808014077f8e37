//! The disTokoloshe adapter against its contract server (CONTROL_PLANES.md §5).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_api::access_token::TokenVerifier;
use parley_contract_servers::distokoloshe::{self, Config, Handle};
use parley_contract_servers::{LivekitKeys, Running};
use parley_control_plane::adapter::distokoloshe::{DistokoloshePlane, HEARTBEAT_EVERY, Secrets, Settings, register};
use parley_control_plane::profile::{Account, BackendSettings, CredentialCheck, Profile, ProfileStore, add_checked};
use parley_control_plane::secret_store::{MemoryStore, SecretStore};
use parley_control_plane::{Capability, ControlPlane, JoinGrant, PlaneError, PlaneEvent, Secret};
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

/// The adapter's event watch on `grant`, as a call runs it; its events arrive on the receiver.
fn watch(
    plane: &Arc<DistokoloshePlane>,
    grant: &JoinGrant,
) -> (tokio::task::JoinHandle<Result<(), PlaneError>>, mpsc::Receiver<PlaneEvent>) {
    let (sender, receiver) = mpsc::channel(64);
    let (plane, grant) = (Arc::clone(plane), grant.clone());
    (tokio::spawn(async move { plane.watch(&grant, sender).await }), receiver)
}

/// Waits up to 5 s for `check` to hold.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} within 5 s");
}

/// The next event the watch reports that `pick` takes, within 5 s.
async fn next<T>(receiver: &mut mpsc::Receiver<PlaneEvent>, mut pick: impl FnMut(PlaneEvent) -> Option<T>) -> T {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .expect("an event within 5 s")
            .expect("the watch is running");
        if let Some(picked) = pick(event) {
            return picked;
        }
    }
}

#[tokio::test]
async fn sign_in_list_rooms_and_join_with_the_e2ee_passphrase() {
    let (running, handle) = server(Config::default()).await;
    let alice = handle.add_user("alice", PASSWORD, "Alice A.");
    let lounge = handle.add_room("Lounge", "voice", Some(alice));
    handle.add_room("Gaming", "video", None);
    let plane = Arc::new(plane(&running.url(), "alice", Some(PASSWORD), None));
    assert!(plane.capabilities().supports(Capability::Heartbeat) && plane.capabilities().supports(Capability::Events));

    let rooms = plane.list_rooms().await.expect("rooms");
    assert_eq!(rooms.iter().map(|room| room.name.as_str()).collect::<Vec<_>>(), ["Gaming", "Lounge"], "by name");
    assert!(rooms[1].can_manage && !rooms[0].can_manage, "alice created the lounge only");
    assert_eq!(rooms[1].participants, Some(0));
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

    let join = handle.requests().into_iter().find(|seen| seen.path.ends_with("/join")).unwrap();
    assert_eq!(join.method, "POST");
    assert_eq!(join.path, format!("/api/rooms/{lounge}/join"));
    assert!(join.headers["authorization"].starts_with("Bearer "), "app JWT as bearer");
}

/// Regression: the server records room membership only on event streams open when the room is
/// set; Parley posted `/join` before opening its stream and was never listed (the web client
/// showed nobody). The stream now stamps the room with `/sync` as it opens.
#[tokio::test]
async fn the_servers_member_list_shows_a_parley_user_while_the_call_lasts() {
    let (running, handle) = server(Config { grace: Duration::from_millis(100), ..Config::default() }).await;
    handle.add_user("alice", PASSWORD, "Alice A.");
    let lounge = handle.add_room("Lounge", "voice", None);
    let plane = Arc::new(plane(&running.url(), "alice", Some(PASSWORD), None));
    let grant = plane.join("Lounge").await.expect("join");
    assert!(handle.members(lounge).is_empty(), "like the real server: no stream, no membership");
    let (watcher, _events) = watch(&plane, &grant);
    until("the server lists alice in the lounge", || handle.members(lounge) == ["alice"]).await;
    let sync = handle.requests().into_iter().find(|seen| seen.path.ends_with("/sync")).expect("a /sync");
    assert_eq!(sync.path, format!("/api/rooms/{lounge}/sync"));
    let rooms = plane.list_rooms().await.unwrap();
    assert_eq!(rooms[0].participants, Some(1), "the room list counts her");
    let participants = plane.participants(&grant).await.unwrap();
    assert_eq!(participants.len(), 1);
    assert_eq!((participants[0].identity.as_str(), participants[0].name.as_str()), ("alice", "Alice A."));

    plane.leave(&grant).await.expect("leave");
    assert!(handle.members(lounge).is_empty(), "leaving takes her off the list at once");
    watcher.abort();
}

/// Regression: the real server sends SQLite's `is_jail` as `0`/`1`; Parley wanted a boolean and
/// could neither list rooms nor join one by name.
#[tokio::test]
async fn rooms_list_with_the_servers_integer_flags_and_jails_are_marked() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("alice", PASSWORD, "Alice");
    handle.add_user("mallory", PASSWORD, "Mallory");
    handle.add_room("General", "voice", None);
    let plane = Arc::new(plane(&running.url(), "mallory", Some(PASSWORD), None));
    let grant = plane.join("General").await.expect("join by name");
    let (_watcher, _events) = watch(&plane, &grant);
    until("mallory is in General", || handle.members(1) == ["mallory"]).await;
    handle.punish("mallory", Duration::from_secs(300)).await;

    let alice = self::plane(&running.url(), "alice", Some(PASSWORD), None);
    let rooms = alice.list_rooms().await.expect("rooms with integer flags");
    let names: Vec<(&str, Option<&str>)> =
        rooms.iter().map(|room| (room.name.as_str(), room.description.as_deref())).collect();
    assert_eq!(names, [("General", None), ("Jail: General", Some("jail"))]);
    alice.join("General").await.expect("join by name");
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
    let plane = Arc::new(plane(&running.url(), "carol", Some(PASSWORD), None));
    let grant = plane.join("Lounge").await.unwrap();
    let (watcher, _events) = watch(&plane, &grant);
    until("carol is listed", || handle.members(room) == ["carol"]).await;
    plane.heartbeat(&grant).await.expect("ping");
    plane.heartbeat(&grant).await.expect("ping");
    assert_eq!(handle.pings("carol"), 2);
    plane.leave(&grant).await.expect("leave");
    assert_eq!(handle.leaves("carol"), 1);
    assert!(handle.members(room).is_empty(), "leave removes presence");
    let ping = handle.requests().into_iter().find(|seen| seen.path == "/api/events/ping").unwrap();
    assert_eq!(ping.method, "POST");
    watcher.abort();
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
    handle.add_room("Studio", "voice", None);
    let plane = Arc::new(plane(&running.url(), "eve", Some(PASSWORD), None));
    let grant = plane.join("Lounge").await.unwrap();
    let (_watcher, _events) = watch(&plane, &grant);
    until("eve is listed", || handle.members(1) == ["eve"]).await;
    handle.punish("eve", Duration::from_secs(300)).await;
    let error = plane.join("Lounge").await.expect_err("jailed");
    assert_eq!(error.code(), "kicked");
    let text = error.to_string();
    // The server's SQLite time, with its zone said.
    assert!(text.contains("voted you out until 20") && text.ends_with("UTC"), "{text}");
    assert!(error.ends_session());
    plane.join("Studio").await.expect("only the room that voted her out is closed to her");
}

#[tokio::test]
async fn events_bring_member_changes_and_the_punishment() {
    let (running, handle) = server(Config { ping_every: Duration::from_millis(200), ..Config::default() }).await;
    handle.add_user("frank", PASSWORD, "Frank");
    handle.add_user("grace", PASSWORD, "Grace");
    handle.add_room("Lounge", "voice", None);
    let frank = Arc::new(plane(&running.url(), "frank", Some(PASSWORD), None));
    let grant = frank.join("Lounge").await.unwrap();
    let (watcher, mut receiver) = watch(&frank, &grant);
    until("the adapter opened one event stream", || handle.streams("frank") == 1).await;
    let stream = handle.requests().into_iter().find(|seen| seen.path == "/api/events").unwrap();
    assert!(stream.query.as_deref().unwrap_or_default().starts_with("token="), "SSE auth via ?token=");
    until("frank is listed", || handle.members(1) == ["frank"]).await;

    let grace = Arc::new(plane(&running.url(), "grace", Some(PASSWORD), None));
    let grace_grant = grace.join("Lounge").await.unwrap();
    let (_grace_watch, _grace_events) = watch(&grace, &grace_grant);
    let names = next(&mut receiver, |event| match event {
        PlaneEvent::Participants { participants } => {
            let mut names: Vec<String> = participants.into_iter().map(|participant| participant.identity).collect();
            names.sort();
            (names.len() == 2).then_some(names)
        }
        _ => None,
    })
    .await;
    assert_eq!(names, ["frank", "grace"]);

    // The server sends every stream the same punishment (the jail's connection included):
    // grace's is not frank's.
    handle.punish("grace", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watcher.is_finished(), "someone else's punishment does not remove frank");

    handle.punish("frank", Duration::from_secs(60)).await;
    let removed = next(&mut receiver, |event| match event {
        PlaneEvent::Removed { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert!(removed.contains("voted you out until") && removed.ends_with("UTC"), "{removed}");
    let ended = tokio::time::timeout(Duration::from_secs(5), watcher).await.expect("watch ends").expect("no panic");
    assert!(ended.is_ok(), "removal ends the watch cleanly: {ended:?}");
}

#[tokio::test]
async fn a_deleted_room_ends_the_call() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("ivan", PASSWORD, "Ivan");
    let room = handle.add_room("Pop-up", "voice", None);
    let plane = Arc::new(plane(&running.url(), "ivan", Some(PASSWORD), None));
    let grant = plane.join("Pop-up").await.unwrap();
    let (_watcher, mut receiver) = watch(&plane, &grant);
    until("ivan is listed", || handle.members(room) == ["ivan"]).await;
    handle.delete_room(room);
    let reason = next(&mut receiver, |event| match event {
        PlaneEvent::Removed { reason } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, "the room was deleted");
}

/// Regression: the sign-in token was never kept, every command signed in again, and after 20
/// commands in 15 minutes the server locked the user out.
#[tokio::test]
async fn the_sign_in_is_kept_and_reused_so_commands_do_not_burn_the_login_limit() {
    let config = Config { login_limit: (3, Duration::from_secs(900)), ..Config::default() };
    let (running, handle) = server(config).await;
    handle.add_user("judy", PASSWORD, "Judy");
    handle.add_room("Lounge", "voice", None);
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let profiles_dir = tempfile::tempdir().expect("temp dir");
    let profiles = ProfileStore::in_dir(profiles_dir.path());
    let profile = Profile {
        name: "home".into(),
        settings: BackendSettings::Distokoloshe(Settings { url: running.url(), username: "judy".into() }),
        insecure: false,
    };
    let secrets = [("password".to_string(), Secret::new(PASSWORD))].into_iter().collect();
    let check = add_checked(&profiles, &profile, &secrets, Arc::clone(&store), false, Account::Existing).await;
    assert_eq!(check.expect("saved"), CredentialCheck::Accepted, "the password was checked with the server");
    assert_eq!(handle.logins(), 1);
    assert!(store.get("home", "app-jwt").unwrap().is_some(), "the sign-in token went to the keyring");

    // Ten commands, each opening the profile afresh, as `parley rooms` would.
    for _ in 0..10 {
        let plane = parley_control_plane::profile::open_plane(&profiles.get("home").unwrap(), Arc::clone(&store))
            .expect("opens");
        plane.list_rooms().await.expect("rooms with the kept token");
    }
    assert_eq!(handle.logins(), 1, "no command signed in again");

    // A refused token (the server's secret rotated): one sign-in, and the new token is kept.
    handle.invalidate_tokens();
    let plane = parley_control_plane::profile::open_plane(&profiles.get("home").unwrap(), Arc::clone(&store)).unwrap();
    plane.list_rooms().await.expect("signed in again once");
    assert_eq!(handle.logins(), 2);
    let plane = parley_control_plane::profile::open_plane(&profiles.get("home").unwrap(), Arc::clone(&store)).unwrap();
    plane.list_rooms().await.expect("the renewed token is reused");
    assert_eq!(handle.logins(), 2, "the renewed token was kept");
}

#[tokio::test]
async fn saving_a_profile_checks_the_password_and_can_create_the_account() {
    let (running, handle) = server(Config::default()).await;
    handle.add_user("kim", PASSWORD, "Kim");
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().expect("temp dir");
    let profiles = ProfileStore::in_dir(dir.path());
    let profile = |name: &str, user: &str, url: &str| Profile {
        name: name.into(),
        settings: BackendSettings::Distokoloshe(Settings { url: url.into(), username: user.into() }),
        insecure: false,
    };
    let password = |text: &str| [("password".to_string(), Secret::new(text))].into_iter().collect();

    let wrong = add_checked(
        &profiles,
        &profile("wrong", "kim", &running.url()),
        &password("Not-Her-Password-1"),
        Arc::clone(&store),
        false,
        Account::Existing,
    )
    .await
    .expect_err("a wrong password is refused");
    assert_eq!(wrong.code(), "unauthorized");
    assert!(wrong.to_string().contains("Invalid credentials"), "{wrong}");
    assert!(profiles.list().unwrap().is_empty(), "nothing is saved");
    assert!(store.get("wrong", "password").unwrap().is_none(), "not even the password");

    let logins = handle.logins();
    let created = add_checked(
        &profiles,
        &profile("new", "newcomer", &running.url()),
        &password(PASSWORD),
        Arc::clone(&store),
        false,
        Account::Register { display_name: "New Comer" },
    )
    .await
    .expect("registered");
    assert_eq!(created, CredentialCheck::Accepted);
    assert!(store.get("new", "app-jwt").unwrap().is_some(), "registering signed in");
    assert_eq!(handle.logins(), logins, "the registration's token is the sign-in: no login follows");

    let weak = add_checked(
        &profiles,
        &profile("weak", "weakling", &running.url()),
        &password("password"),
        Arc::clone(&store),
        false,
        Account::Register { display_name: "Weak" },
    )
    .await
    .expect_err("the server's password rules apply");
    assert!(
        weak.to_string().contains("Password must be 8-128 characters")
            || weak.to_string().contains("Password must include"),
        "{weak}"
    );

    let (down, _) = server(Config::default()).await;
    let url = down.url();
    down.stop().await;
    let unchecked =
        add_checked(&profiles, &profile("later", "kim", &url), &password(PASSWORD), store, false, Account::Existing)
            .await
            .expect("saved while the server is down");
    assert!(
        matches!(&unchecked, CredentialCheck::Unchecked { reason } if reason.contains("reach")),
        "says it could not check: {unchecked:?}"
    );
    assert!(profiles.get("later").is_ok());
}

#[tokio::test]
async fn sign_ins_over_the_servers_limit_say_when_to_try_again() {
    let config = Config { login_limit: (2, Duration::from_secs(900)), ..Config::default() };
    let (running, handle) = server(config).await;
    handle.add_user("leo", PASSWORD, "Leo");
    for _ in 0..2 {
        plane(&running.url(), "leo", Some(PASSWORD), None).list_rooms().await.expect("within the limit");
    }
    let error = plane(&running.url(), "leo", Some(PASSWORD), None).list_rooms().await.expect_err("over the limit");
    assert_eq!(error.code(), "rate_limited");
    assert!(error.to_string().contains("try again in"), "{error}");
    let login = handle.requests().into_iter().rev().find(|seen| seen.path == "/api/auth/login").unwrap();
    assert_eq!(login.method, "POST");
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
    assert!(weak.to_string().contains("Password must include uppercase, lowercase, and a number or symbol"), "{weak}");
    let taken = register(&running.url(), "TAKEN", "T", &Secret::new(PASSWORD)).await.expect_err("taken, in any case");
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
