//! The `livekit` adapter and [`RoomAdmin`] against a real LiveKit server (`parley-devserver`):
//! rooms, tokens, RoomService errors. Moderating participants who really publish audio is
//! covered end to end in `tests/cli/profiles.rs`.

use livekit_api::access_token::TokenVerifier;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use parley_control_plane::adapter::livekit::token::{TokenRequest, mint, now_unix};
use parley_control_plane::adapter::livekit::{LivekitPlane, RoomAdmin, Secrets, Settings};
use parley_control_plane::{Capability, ControlPlane, ModerationAction, PlaneError, Secret};
use parley_devserver::{DevServer, DevServerConfig};

fn server() -> DevServer {
    DevServer::start(&DevServerConfig::default()).unwrap_or_else(|error| panic!("LiveKit dev server: {error}"))
}

fn plane(server: &DevServer, secret: &str) -> LivekitPlane {
    let settings = Settings {
        url: server.url(),
        api_key: server.api_key().into(),
        identity: "moderator".into(),
        display_name: Some("The Moderator".into()),
    };
    LivekitPlane::new(settings, Secrets { api_secret: Some(Secret::new(secret)) }).expect("plane")
}

fn assert_no_secret(error: &PlaneError, secret: &str) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(secret), "an error must not show the API secret: {shown}");
}

async fn create_room(server: &DevServer, name: &str) {
    RoomClient::with_api_key(&server.http_url(), server.api_key(), server.api_secret())
        .create_room(name, CreateRoomOptions { max_participants: 12, ..Default::default() })
        .await
        .expect("create a room");
}

#[tokio::test]
async fn lists_the_servers_rooms_with_counts() {
    let server = server();
    create_room(&server, "lounge").await;
    create_room(&server, "attic").await;
    let rooms = plane(&server, server.api_secret()).list_rooms().await.expect("rooms");
    let names: Vec<&str> = rooms.iter().map(|room| room.name.as_str()).collect();
    assert_eq!(names, vec!["attic", "lounge"], "both rooms, sorted");
    assert_eq!(rooms[1].id, "lounge", "the id joins the room");
    assert_eq!(rooms[1].participants, Some(0));
    assert_eq!(rooms[1].max_participants, Some(12));
}

#[tokio::test]
async fn join_mints_a_token_the_server_verifies() {
    let server = server();
    let plane = plane(&server, server.api_secret());
    let grant = plane.join("lounge").await.expect("join");
    assert_eq!(grant.url, server.url());
    let claims =
        TokenVerifier::with_api_key(server.api_key(), server.api_secret()).verify(&grant.token).expect("valid");
    assert_eq!((claims.sub.as_str(), claims.name.as_str()), ("moderator", "The Moderator"));
    assert_eq!(claims.video.room, "lounge");
    assert!(claims.video.room_join && !claims.video.room_admin, "a join token, not an admin token");
    let expires = grant.expires_at.expect("expiry");
    assert!(expires.abs_diff(now_unix() + 6 * 3600) <= 5, "valid for six hours");
    assert!(!format!("{grant:?} {plane:?}").contains(server.api_secret()), "Debug output hides secrets");
    let capabilities = plane.capabilities();
    assert!(capabilities.supports(Capability::ListRooms) && capabilities.can_moderate(ModerationAction::HardMute));
    assert!(
        !capabilities.can_moderate(ModerationAction::Ban)
            && !capabilities.can_moderate(ModerationAction::MakeModerator)
    );
}

#[tokio::test]
async fn participants_of_an_empty_room_and_unknown_people_are_reported_plainly() {
    let server = server();
    create_room(&server, "lounge").await;
    let plane = plane(&server, server.api_secret());
    let grant = plane.join("lounge").await.expect("join");
    assert!(plane.participants(&grant).await.expect("participants").is_empty(), "nobody is in the room yet");
    for action in [ModerationAction::Kick, ModerationAction::Mute, ModerationAction::HardMute] {
        let error = plane.moderate(&grant, action, "ghost").await.expect_err("nobody called ghost");
        assert_eq!(error.code(), "not_found", "{action} on a stranger: {error}");
        assert!(error.to_string().contains("ghost"), "the message names who: {error}");
    }
    let error = plane.moderate(&grant, ModerationAction::Ban, "ghost").await.expect_err("no bans in LiveKit");
    assert_eq!(error.to_string(), "livekit does not support ban");
}

#[tokio::test]
async fn a_wrong_secret_is_unauthorized_and_never_shown() {
    let server = server();
    let wrong = "a-wrong-secret-that-is-long-enough-to-sign";
    let error = plane(&server, wrong).list_rooms().await.expect_err("refused");
    assert_eq!(error.code(), "unauthorized", "{error}");
    assert!(error.to_string().contains("credentials"), "{error}");
    assert_no_secret(&error, wrong);
    assert_no_secret(&error, server.api_secret());
}

#[tokio::test]
async fn a_dead_server_is_unreachable() {
    let mut server = server();
    let plane = plane(&server, server.api_secret());
    server.stop();
    let error = plane.list_rooms().await.expect_err("nobody listens");
    assert_eq!(error.code(), "unreachable", "{error}");
    assert!(error.to_string().contains(&format!("http://127.0.0.1:{}", server.port())), "{error}");
}

#[tokio::test]
async fn room_admin_from_a_participant_token_moderates_only_its_room() {
    let server = server();
    create_room(&server, "lounge").await;
    let token = |room: &str, admin: bool| {
        let request = TokenRequest {
            room: room.into(),
            identity: "host".into(),
            name: None,
            admin,
            ttl: std::time::Duration::from_secs(600),
        };
        mint(server.api_key(), server.api_secret(), &request).expect("mint")
    };
    let refused = RoomAdmin::from_token(&server.url(), &token("lounge", false)).expect_err("no roomAdmin");
    assert_eq!(refused.code(), "forbidden", "{refused}");
    assert!(refused.to_string().contains("roomAdmin"), "{refused}");

    let admin = RoomAdmin::from_token(&server.url(), &token("lounge", true)).expect("admin");
    assert_eq!(admin.room(), "lounge");
    assert!(admin.participants().await.expect("the server accepts the participant token").is_empty());
    let error = admin.moderate(ModerationAction::Kick, "ghost").await.expect_err("nobody there");
    assert_eq!(error.code(), "not_found", "authorised, the server looked: {error}");
}

#[test]
fn settings_are_checked_before_anything_is_sent() {
    let settings = Settings {
        url: "http://127.0.0.1:7880".into(),
        api_key: "key".into(),
        identity: "me".into(),
        display_name: None,
    };
    let secrets = || Secrets { api_secret: Some(Secret::new("secret")) };
    let error = LivekitPlane::new(settings.clone(), secrets()).expect_err("http is not a signalling URL");
    assert!(error.to_string().contains("ws://"), "{error}");
    let good = Settings { url: "ws://127.0.0.1:7880".into(), ..settings };
    let missing = LivekitPlane::new(good.clone(), Secrets::default()).expect_err("no secret");
    assert!(missing.to_string().contains("keyring"), "{missing}");
    let no_identity = Settings { identity: " ".into(), ..good };
    assert_eq!(LivekitPlane::new(no_identity, secrets()).unwrap_err().code(), "invalid_input");
}
