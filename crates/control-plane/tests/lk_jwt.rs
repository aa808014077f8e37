//! The lk-jwt adapter against the homeserver + lk-jwt-service contract servers (CONTROL_PLANES.md §3).

use std::time::{SystemTime, UNIX_EPOCH};

use livekit_api::access_token::TokenVerifier;
use parley_contract_servers::LivekitKeys;
use parley_contract_servers::lk_jwt::{self, Endpoint, LkJwt, hashed};
use parley_control_plane::adapter::lk_jwt::{LkJwtPlane, Secrets, Settings};
use parley_control_plane::{Capability, ControlPlane, Secret};

const USER: &str = "@alice:example.org";
const DEVICE: &str = "PARLEYDEV";
const ROOM: &str = "!call:example.org";
const ACCESS_TOKEN: &str = "syt_YWxpY2U_secretsecret_0xyz";

fn keys() -> LivekitKeys {
    LivekitKeys {
        url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: "a-test-secret-that-is-long-enough-123".into(),
    }
}

async fn servers() -> LkJwt {
    let servers = lk_jwt::start(keys(), "example.org").await.expect("servers start");
    servers.handle.add_user(USER, ACCESS_TOKEN);
    servers
}

fn settings(homeserver: &str) -> Settings {
    Settings {
        homeserver_url: homeserver.into(),
        user_id: USER.into(),
        device_id: DEVICE.into(),
        room_id: Some(ROOM.into()),
        service_url: None,
    }
}

fn plane(settings: Settings, token: &str) -> LkJwtPlane {
    LkJwtPlane::new(settings, Secrets { access_token: Some(Secret::new(token)) }).expect("valid settings")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn discovery_openid_and_get_token_give_a_one_hour_grant() {
    let servers = servers().await;
    let plane = plane(settings(&servers.homeserver.url()), ACCESS_TOKEN);
    assert_eq!(plane.capabilities().0.into_iter().collect::<Vec<_>>(), vec![Capability::Join]);

    let grant = plane.join("").await.expect("the default room joins");
    assert_eq!(grant.url, "ws://127.0.0.1:7880");
    assert_eq!(grant.room_id, ROOM);
    let expires = grant.expires_at.expect("expiry known");
    assert!(expires > now() + 3500 && expires <= now() + 3605, "1 h token, got {expires}");
    let claims =
        TokenVerifier::with_api_key(&keys().api_key, &keys().api_secret).verify(&grant.token).expect("real token");
    assert_eq!(claims.sub, hashed(&[USER, DEVICE, DEVICE]), "identity = hash of [mxid, device, member id]");
    assert_eq!(claims.video.room, hashed(&[ROOM, "m.call#"]), "room = hash of [room id, slot]");
    assert!(!claims.video.room_admin, "no roomAdmin from this service");

    let requests = servers.handle.requests();
    let endpoints: Vec<Endpoint> = requests.iter().map(|seen| seen.endpoint).collect();
    assert_eq!(endpoints, [Endpoint::WellKnown, Endpoint::OpenId, Endpoint::GetToken]);
    let openid = &requests[1];
    assert_eq!(openid.path, "/_matrix/client/v3/user/@alice:example.org/openid/request_token");
    assert_eq!(openid.headers["authorization"], format!("Bearer {ACCESS_TOKEN}"));
    assert_eq!(openid.body, "{}");
    let get_token = &requests[2];
    assert_eq!(get_token.path, "/livekit/jwt/get_token");
    let body: serde_json::Value = serde_json::from_str(&get_token.body).unwrap();
    let openid_token = &body["openid_token"];
    assert_eq!(
        body,
        serde_json::json!({
            "room_id": ROOM,
            "slot_id": "m.call#",
            "openid_token": openid_token,
            "member": { "id": DEVICE, "claimed_user_id": USER, "claimed_device_id": DEVICE },
        }),
        "exactly the SFURequest fields"
    );
    assert_eq!(openid_token["matrix_server_name"], "example.org");
    assert_eq!(openid_token["token_type"], "Bearer");
    assert_eq!(openid_token.as_object().unwrap().len(), 4, "openid_token fields: {openid_token}");
}

#[tokio::test]
async fn a_configured_service_url_skips_discovery_and_refresh_runs_the_flow_again() {
    let servers = servers().await;
    let mut settings = settings(&servers.homeserver.url());
    settings.service_url = Some(servers.handle.service_url());
    let plane = plane(settings, ACCESS_TOKEN);
    let grant = plane.join(ROOM).await.expect("join");
    let refreshed = plane.refresh(&grant).await.expect("refresh");
    assert_eq!(refreshed.room_id, ROOM);
    let endpoints: Vec<Endpoint> = servers.handle.requests().iter().map(|seen| seen.endpoint).collect();
    assert_eq!(endpoints, [Endpoint::OpenId, Endpoint::GetToken, Endpoint::OpenId, Endpoint::GetToken]);
}

#[tokio::test]
async fn an_older_service_without_get_token_is_asked_through_sfu_get() {
    let servers = servers().await;
    servers.handle.set_get_token_enabled(false);
    let plane = plane(settings(&servers.homeserver.url()), ACCESS_TOKEN);
    let grant = plane.join(ROOM).await.expect("legacy endpoint works");
    let claims = TokenVerifier::with_api_key(&keys().api_key, &keys().api_secret).verify(&grant.token).unwrap();
    assert_eq!(claims.sub, format!("{USER}:{DEVICE}"));
    assert_eq!(claims.video.room, hashed(&[ROOM, "m.call#ROOM"]));
    let requests = servers.handle.requests();
    let legacy = requests.last().unwrap();
    assert_eq!(legacy.endpoint, Endpoint::SfuGet);
    assert_eq!(legacy.path, "/livekit/jwt/sfu/get");
    let body: serde_json::Value = serde_json::from_str(&legacy.body).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["device_id", "openid_token", "room"], "LegacySFURequest fields");
    assert!(servers.handle.issued().last().unwrap().legacy);
}

#[tokio::test]
async fn the_service_rejects_unknown_fields_and_foreign_tokens() {
    let servers = servers().await;
    let client = reqwest::Client::new();
    let url = format!("{}/get_token", servers.handle.service_url());
    let unknown = client.post(&url).json(&serde_json::json!({ "room_id": ROOM, "extra": 1 })).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["errcode"], "M_NOT_JSON");
    let forged = serde_json::json!({
        "room_id": ROOM, "slot_id": "m.call#",
        "openid_token": { "access_token": "made-up", "token_type": "Bearer", "matrix_server_name": "example.org", "expires_in": 3600 },
        "member": { "id": "m", "claimed_user_id": USER, "claimed_device_id": DEVICE },
    });
    let refused = client.post(&url).json(&forged).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["errcode"], "M_UNAUTHORIZED");
    let health = client.get(format!("{}/healthz", servers.handle.service_url())).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn a_wrong_access_token_is_unauthorized_and_never_printed() {
    let servers = servers().await;
    let wrong = "syt_wrong_token_value_42";
    let plane = plane(settings(&servers.homeserver.url()), wrong);
    let error = plane.join(ROOM).await.expect_err("unknown access token");
    assert_eq!(error.code(), "unauthorized");
    assert!(error.to_string().contains("Unknown access token"), "{error}");
    assert!(!error.to_string().contains(wrong), "the token leaks into the message: {error}");
    assert!(!format!("{plane:?}").contains(wrong), "Debug leaks the token: {plane:?}");
    assert!(format!("{plane:?}").contains("[redacted]"));
}

#[tokio::test]
async fn matrix_error_codes_map_to_plane_errors() {
    let servers = servers().await;
    let plane = plane(settings(&servers.homeserver.url()), ACCESS_TOKEN);
    let cases: [(Endpoint, u16, &str, &str, &str); 9] = [
        (
            Endpoint::GetToken,
            401,
            r#"{"errcode":"M_UNAUTHORIZED","error":"The request could not be authorised."}"#,
            "unauthorized",
            "could not be authorised",
        ),
        (
            Endpoint::GetToken,
            403,
            r#"{"errcode":"M_FORBIDDEN","error":"not full access"}"#,
            "forbidden",
            "not full access",
        ),
        (Endpoint::GetToken, 400, r#"{"errcode":"M_BAD_JSON","error":"missing member"}"#, "rejected", "missing member"),
        (
            Endpoint::GetToken,
            400,
            r#"{"errcode":"M_NOT_JSON","error":"Error decoding JSON"}"#,
            "rejected",
            "Error decoding JSON",
        ),
        (
            Endpoint::GetToken,
            500,
            r#"{"errcode":"M_UNKNOWN","error":"Unable to create room on SFU"}"#,
            "server_error",
            "HTTP 500",
        ),
        (
            Endpoint::GetToken,
            503,
            r#"{"errcode":"M_UNKNOWN","error":"shutting down"}"#,
            "server_error",
            "shutting down",
        ),
        (
            Endpoint::OpenId,
            429,
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}"#,
            "rate_limited",
            "2 s",
        ),
        (Endpoint::GetToken, 200, "<html><body>proxy login</body></html>", "malformed_response", "web page"),
        (Endpoint::GetToken, 200, r#"{"url":"ws://x""#, "malformed_response", "unexpected JSON"),
    ];
    for (endpoint, status, body, code, words) in cases {
        servers.handle.fail_next(endpoint, status, body);
        let error = plane.join(ROOM).await.expect_err("forced failure");
        assert_eq!(error.code(), code, "{endpoint:?} {status} {body}: {error}");
        assert!(error.to_string().contains(words), "{endpoint:?} {status}: {error}");
    }
}

#[tokio::test]
async fn a_homeserver_without_a_livekit_focus_says_so() {
    let servers = servers().await;
    servers.handle.set_well_known(serde_json::json!({ "m.homeserver": { "base_url": servers.homeserver.url() } }));
    let error = plane(settings(&servers.homeserver.url()), ACCESS_TOKEN).join(ROOM).await.expect_err("no focus");
    assert_eq!(error.code(), "not_found");
    assert!(error.to_string().contains("no livekit focus"), "{error}");
}

#[tokio::test]
async fn a_dead_homeserver_is_unreachable_and_bad_rooms_are_refused_early() {
    let servers = servers().await;
    let url = servers.homeserver.url();
    servers.homeserver.stop().await;
    let plane = plane(settings(&url), ACCESS_TOKEN);
    assert_eq!(plane.join(ROOM).await.expect_err("dead").code(), "unreachable");
    let alias = plane.join("#call:example.org").await.expect_err("aliases are not room ids");
    assert_eq!(alias.code(), "invalid_input");
    assert!(alias.to_string().contains("!opaque:server"), "{alias}");
}
