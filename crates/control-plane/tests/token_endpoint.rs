//! The token-endpoint adapter against its contract server (`contract-servers::token_endpoint`):
//! the request it sends, the grant it builds, and every failure's error.

use livekit_api::access_token::TokenVerifier;
use parley_contract_servers::LivekitKeys;
use parley_contract_servers::token_endpoint::{self, Config};
use parley_control_plane::adapter::token_endpoint::{RequestMethod, Secrets, Settings, TokenEndpointPlane};
use parley_control_plane::{Capability, ControlPlane, ModerationAction, PlaneError, Secret};
use reqwest::Method;

const API_SECRET: &str = "contract-test-secret-that-is-long-enough";
const HEADER_VALUE: &str = "Bearer very-secret-app-token";

fn keys() -> LivekitKeys {
    // Port 9 (discard) on loopback: nothing listens, so RoomService calls fail as unreachable.
    LivekitKeys { url: "ws://127.0.0.1:9".into(), api_key: "devkey".into(), api_secret: API_SECRET.into() }
}

fn settings(base: &str) -> Settings {
    Settings {
        url_template: format!("{base}/api/livekit?room={{room}}&username={{identity}}&name={{name}}"),
        method: RequestMethod::Get,
        body_template: None,
        header_name: Some("Authorization".into()),
        token_pointer: "/token".into(),
        url_pointer: "/url".into(),
        livekit_url: None,
        identity: "alice".into(),
        display_name: Some("Alice A.".into()),
    }
}

fn secrets() -> Secrets {
    Secrets { header_value: Some(Secret::new(HEADER_VALUE)) }
}

fn guarded() -> Config {
    Config { header: Some(("authorization".into(), HEADER_VALUE.into())), ..Config::default() }
}

/// Asserts that nothing secret leaks through an error's message or Debug form.
fn assert_no_secret(error: &PlaneError) {
    let shown = format!("{error} {error:?}");
    for secret in [HEADER_VALUE, "very-secret-app-token", API_SECRET] {
        assert!(!shown.contains(secret), "an error must not show a secret: {shown}");
    }
}

#[tokio::test]
async fn get_sends_the_header_and_encoded_placeholders_and_builds_a_verified_grant() {
    let (server, handle) = token_endpoint::start(keys(), guarded()).await.expect("server");
    let plane = TokenEndpointPlane::new(settings(&server.url()), secrets()).expect("plane");
    let grant = plane.join("lounge one").await.expect("join");

    let requests = handle.requests();
    assert_eq!(requests.len(), 1, "one request per join");
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/api/livekit");
    assert_eq!(
        requests[0].query.as_deref(),
        Some("room=lounge%20one&username=alice&name=Alice%20A."),
        "placeholders are percent-encoded"
    );
    assert_eq!(requests[0].headers.get("authorization").map(String::as_str), Some(HEADER_VALUE));

    assert_eq!(grant.url, "ws://127.0.0.1:9", "the URL from the answer");
    assert_eq!((grant.room_id.as_str(), grant.room_name.as_str()), ("lounge one", "lounge one"));
    let claims = TokenVerifier::with_api_key("devkey", API_SECRET).verify(&grant.token).expect("a real token");
    assert_eq!((claims.sub.as_str(), claims.video.room.as_str()), ("alice", "lounge one"));
    let expires = grant.expires_at.expect("expiry from the token");
    assert_eq!(expires, claims.exp as u64, "expires_at is the token's exp");
    assert!(!format!("{grant:?} {plane:?}").contains("very-secret"), "Debug output hides the header value");
    assert_eq!(plane.capabilities().0.into_iter().collect::<Vec<_>>(), vec![Capability::Join]);
}

#[tokio::test]
async fn post_sends_the_filled_body_template_as_json() {
    let config = Config { method: Method::POST, ..guarded() };
    let (server, handle) = token_endpoint::start(keys(), config).await.expect("server");
    let mut settings = settings(&server.url());
    settings.url_template = format!("{}/api/livekit", server.url());
    settings.method = RequestMethod::Post;
    settings.body_template = Some(r#"{"room":"{room}","username":"{identity}","name":"{name}"}"#.into());
    let plane = TokenEndpointPlane::new(settings, secrets()).expect("plane");
    let grant = plane.join("say \"hi\"").await.expect("join");
    let requests = handle.requests();
    assert_eq!(requests[0].method, "POST");
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).expect("a JSON body");
    assert_eq!(body, serde_json::json!({"room": "say \"hi\"", "username": "alice", "name": "Alice A."}));
    assert_eq!(requests[0].headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(grant.room_name, "say \"hi\"");
}

#[tokio::test]
async fn nested_pointers_and_a_relative_url_resolve_against_the_endpoint() {
    let config = Config {
        token_pointer: "/data/jwt".into(),
        url_pointer: Some("/data/ws".into()),
        url: Some("/livekit/".into()),
        ..guarded()
    };
    let (server, _handle) = token_endpoint::start(keys(), config).await.expect("server");
    let mut settings = settings(&server.url());
    settings.token_pointer = "/data/jwt".into();
    settings.url_pointer = "/data/ws".into();
    let grant = TokenEndpointPlane::new(settings, secrets()).expect("plane").join("r").await.expect("join");
    assert_eq!(grant.url, format!("ws://{}/livekit/", server.address), "relative URL on the endpoint's host, ws://");
}

#[tokio::test]
async fn an_answer_without_url_uses_the_profiles_livekit_url_or_says_what_is_missing() {
    let config = Config { url_pointer: None, ..guarded() };
    let (server, _handle) = token_endpoint::start(keys(), config).await.expect("server");
    let error =
        TokenEndpointPlane::new(settings(&server.url()), secrets()).expect("plane").join("r").await.unwrap_err();
    assert_eq!(error.code(), "malformed_response", "{error}");
    assert!(error.to_string().contains("--livekit-url"), "the message says how to fix it: {error}");

    let mut with_url = settings(&server.url());
    with_url.livekit_url = Some("wss://lk.example.org".into());
    let grant = TokenEndpointPlane::new(with_url, secrets()).expect("plane").join("r").await.expect("join");
    assert_eq!(grant.url, "wss://lk.example.org");
}

#[tokio::test]
async fn a_missing_or_wrong_header_is_unauthorized() {
    let (server, handle) = token_endpoint::start(keys(), guarded()).await.expect("server");
    let wrong = Secrets { header_value: Some(Secret::new("Bearer wrong-guess")) };
    let error = TokenEndpointPlane::new(settings(&server.url()), wrong).expect("plane").join("r").await.unwrap_err();
    assert_eq!(error.code(), "unauthorized", "{error}");
    assert!(error.to_string().contains("credentials"), "{error}");
    assert!(!format!("{error} {error:?}").contains("wrong-guess"), "the wrong value is not echoed");
    let mut open = settings(&server.url());
    open.header_name = None;
    let error =
        TokenEndpointPlane::new(open, Secrets::default()).expect("plane").join("r").await.expect_err("no header");
    assert_eq!(error.code(), "unauthorized");
    assert!(!handle.requests()[1].headers.contains_key("authorization"), "no header was sent without one configured");
}

#[tokio::test]
async fn every_error_status_maps_to_its_error() {
    let (server, handle) = token_endpoint::start(keys(), guarded()).await.expect("server");
    let plane = TokenEndpointPlane::new(settings(&server.url()), secrets()).expect("plane");
    let cases: [(u16, &str, &str, &str); 8] = [
        (400, r#"{"error":"room and username are required"}"#, "rejected", "room and username are required"),
        (401, r#"{"error":"token expired"}"#, "unauthorized", "token expired"),
        (403, r#"{"error":"not a member"}"#, "forbidden", "not a member"),
        (404, r#"{"error":"no such route"}"#, "not_found", "/api/livekit"),
        (429, r#"{"error":"slow down"}"#, "rate_limited", "rate limiting"),
        (500, r#"{"error":"database down"}"#, "server_error", "HTTP 500"),
        (502, "<html><body>Bad gateway</body></html>", "server_error", "HTTP 502"),
        (503, r#"{"message":"maintenance"}"#, "server_error", "maintenance"),
    ];
    for (status, body, code, words) in cases {
        handle.fail_next(status, body);
        let error = plane.join("r").await.expect_err("a failure");
        assert_eq!(error.code(), code, "HTTP {status} should be {code}: {error}");
        assert!(error.to_string().contains(words), "HTTP {status}: the message should mention {words:?}: {error}");
        assert_no_secret(&error);
    }
}

#[tokio::test]
async fn html_garbage_and_non_tokens_are_malformed() {
    let (server, handle) = token_endpoint::start(keys(), guarded()).await.expect("server");
    let plane = TokenEndpointPlane::new(settings(&server.url()), secrets()).expect("plane");
    let answers = [
        ("<!DOCTYPE html><html>Sign in</html>", "web page"),
        ("{\"token\":", "unexpected JSON"),
        (r#"{"url":"ws://x"}"#, "without a token at /token"),
        (r#"{"token":"not-a-jwt","url":"ws://x"}"#, "not a LiveKit access token"),
    ];
    for (answer, words) in answers {
        handle.answer_next(answer);
        let error = plane.join("r").await.expect_err("malformed");
        assert_eq!(error.code(), "malformed_response", "{answer}: {error}");
        assert!(error.to_string().contains(words), "{answer}: the message should say {words:?}: {error}");
        assert_no_secret(&error);
    }
}

#[tokio::test]
async fn a_dead_port_is_unreachable() {
    let (server, _handle) = token_endpoint::start(keys(), guarded()).await.expect("server");
    let url = server.url();
    server.stop().await;
    let error = TokenEndpointPlane::new(settings(&url), secrets()).expect("plane").join("r").await.unwrap_err();
    assert_eq!(error.code(), "unreachable", "{error}");
    assert!(error.to_string().contains("127.0.0.1"), "names the server: {error}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn a_room_admin_token_enables_room_service_moderation() {
    let config = Config { admin: true, ..guarded() };
    let (server, _handle) = token_endpoint::start(keys(), config).await.expect("server");
    let plane = TokenEndpointPlane::new(settings(&server.url()), secrets()).expect("plane");
    assert!(!plane.capabilities().can_moderate(ModerationAction::Kick), "nothing before a token was seen");
    let grant = plane.join("r").await.expect("join");
    let capabilities = plane.capabilities();
    assert!(capabilities.can_moderate(ModerationAction::Kick) && capabilities.can_moderate(ModerationAction::Mute));
    assert!(!capabilities.can_moderate(ModerationAction::Ban), "RoomService cannot ban");
    // The keys point at a closed port: the attempt reaching RoomService proves the path is taken.
    let error = plane.moderate(&grant, ModerationAction::Kick, "bob").await.expect_err("no LiveKit server");
    assert_eq!(error.code(), "unreachable", "{error}");
    assert!(error.to_string().contains("http://127.0.0.1:9"), "RoomService on the ws URL's http twin: {error}");
    let error = plane.moderate(&grant, ModerationAction::Ban, "bob").await.expect_err("unsupported");
    assert_eq!(error.code(), "unsupported");
}

#[tokio::test]
async fn without_room_admin_moderation_is_unsupported() {
    let (server, _handle) = token_endpoint::start(keys(), guarded()).await.expect("server");
    let plane = TokenEndpointPlane::new(settings(&server.url()), secrets()).expect("plane");
    let grant = plane.join("r").await.expect("join");
    let error = plane.moderate(&grant, ModerationAction::Mute, "bob").await.expect_err("unsupported");
    assert_eq!(error.code(), "unsupported", "{error}");
    assert_eq!(error.to_string(), "token-endpoint does not support mute");
}

#[test]
fn bad_settings_are_refused_before_anything_is_sent() {
    let mut bad = settings("http://127.0.0.1:1");
    bad.url_template = "ftp://x/{room}".into();
    assert_eq!(TokenEndpointPlane::new(bad, secrets()).unwrap_err().code(), "invalid_input");
    let missing = TokenEndpointPlane::new(settings("http://127.0.0.1:1"), Secrets::default()).unwrap_err();
    assert!(missing.to_string().contains("keyring"), "a named header without its value: {missing}");
    let mut body_with_get = settings("http://127.0.0.1:1");
    body_with_get.body_template = Some("{}".into());
    assert_eq!(TokenEndpointPlane::new(body_with_get, secrets()).unwrap_err().code(), "invalid_input");
    let mut pointer = settings("http://127.0.0.1:1");
    pointer.token_pointer = "token".into();
    assert!(TokenEndpointPlane::new(pointer, secrets()).unwrap_err().to_string().contains("JSON pointer"));
}
