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
    // The keys point at no LiveKit server, so the full-access `CreateRoom` would fail (500).
    servers.handle.set_create_rooms(false);
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
    assert_eq!(
        unknown.text().await.unwrap(),
        "{\"errcode\":\"M_NOT_JSON\",\"error\":\"Error reading request\"}\n",
        "writeMatrixError's exact bytes"
    );
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
    assert!(error.to_string().contains("Invalid access token passed."), "Synapse's text: {error}");
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

/// The real service's `requests.go` and `handler.go`, checked on the wire.
#[tokio::test]
async fn the_service_decodes_and_validates_as_go_does() {
    let servers = servers().await;
    let client = reqwest::Client::new();
    let url = format!("{}/get_token", servers.handle.service_url());
    let openid = async {
        let answer: serde_json::Value = client
            .post(format!("{}/_matrix/client/v3/user/{USER}/openid/request_token", servers.homeserver.url()))
            .bearer_auth(ACCESS_TOKEN)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer
    }
    .await;
    assert_eq!(openid["expires_in"], 3600, "an integer, as Synapse sends it");
    let body = |extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "room_id": ROOM, "slot_id": "m.call#", "openid_token": openid.clone(),
            "member": { "id": DEVICE, "claimed_user_id": USER, "claimed_device_id": DEVICE },
        });
        for (key, value) in extra.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body
    };
    let send = |body: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let response =
                client.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
            let status = response.status().as_u16();
            let cors = response.headers().get("access-control-allow-headers").map(|v| v.to_str().unwrap().to_string());
            (status, cors, response.text().await.unwrap())
        }
    };
    let error = |errcode: &str, error: &str| format!("{{\"errcode\":\"{errcode}\",\"error\":\"{error}\"}}\n");

    // Accepted by the real service: the deprecated `delay_cs_api_url`, a token type and expiry it
    // never looks at, a negative integer, upper-case names and trailing bytes.
    let mut odd_token = openid.clone();
    odd_token["token_type"] = "mac".into();
    odd_token["expires_in"] = (-1).into();
    for accepted in [
        body(serde_json::json!({ "delay_cs_api_url": "https://matrix.example.org" })).to_string(),
        body(serde_json::json!({ "openid_token": odd_token })).to_string(),
        body(serde_json::json!({})).to_string().replace("\"room_id\"", "\"ROOM_ID\"") + " trailing",
    ] {
        let (status, cors, text) = send(accepted.clone()).await;
        assert_eq!(status, 200, "{accepted}: {text}");
        assert!(text.starts_with("{\"url\":") && text.ends_with("}\n"), "Go's SFUResponse: {text}");
        assert_eq!(cors.as_deref(), Some("Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token"));
    }

    // Validate() in the real order.
    let bad = |text: &str| error("M_BAD_JSON", text);
    let cases = [
        (
            serde_json::json!({ "room_id": null, "member": null }),
            bad("The request body is missing `room_id` or `slot_id`"),
        ),
        (
            serde_json::json!({ "member": { "id": DEVICE }, "openid_token": null }),
            bad("The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`"),
        ),
        (
            serde_json::json!({ "openid_token": { "access_token": "x" } }),
            bad("The request body `openid_token` is missing a `access_token` or `matrix_server_name`"),
        ),
        (serde_json::json!({ "delay_id": "d1" }), bad("The request body is missing `delay_id` or `delay_timeout`")),
        (
            serde_json::json!({ "delay_id": "d1", "delay_timeout": -5 }),
            bad("The request body is missing `delay_id` or `delay_timeout`"),
        ),
        (serde_json::json!({ "delay_timeout": 1.5 }), error("M_NOT_JSON", "Error reading request")),
    ];
    for (extra, expected) in cases {
        let (status, _, text) = send(body(extra.clone()).to_string()).await;
        assert_eq!((status, text), (400, expected), "{extra}");
    }
    let (status, _, text) = send("null".into()).await;
    assert_eq!(
        (status, text),
        (400, bad("The request body is missing `room_id` or `slot_id`")),
        "null decodes to zero"
    );
    let stranger = body(
        serde_json::json!({ "member": { "id": "m", "claimed_user_id": "@bob:example.org", "claimed_device_id": "D" } }),
    );
    let (status, _, text) = send(stranger.to_string()).await;
    assert_eq!((status, text), (401, error("M_UNAUTHORIZED", "The request could not be authorised.")));

    let (status, cors, text) = {
        let response = client.get(&url).send().await.unwrap();
        let status = response.status().as_u16();
        let cors = response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string());
        (status, cors, response.text().await.unwrap())
    };
    assert_eq!((status, cors.as_deref(), text.as_str()), (405, Some("*"), ""), "405 with the CORS headers, no body");
}

#[tokio::test]
async fn delayed_leave_delegation_follows_the_full_access_list() {
    let servers = servers().await;
    let client = reqwest::Client::new();
    let openid: serde_json::Value = client
        .post(format!("{}/_matrix/client/v3/user/{USER}/openid/request_token", servers.homeserver.url()))
        .bearer_auth(ACCESS_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = serde_json::json!({
        "room_id": ROOM, "slot_id": "m.call#", "openid_token": openid,
        "member": { "id": DEVICE, "claimed_user_id": USER, "claimed_device_id": DEVICE },
        "delay_id": "syd_delay", "delay_timeout": 10_000,
    });
    let post = |path: &str| client.post(format!("{}/{path}", servers.handle.service_url())).json(&body).send();

    let token = post("get_token").await.unwrap();
    assert_eq!(token.status().as_u16(), 200, "the homeserver has full access by default");
    let delegate = post("delegate_delayed_leave").await.unwrap();
    assert_eq!((delegate.status().as_u16(), delegate.text().await.unwrap().as_str()), (200, "{}\n"));
    let delegations = servers.handle.delegations();
    assert_eq!(delegations.len(), 2, "{delegations:?}");
    assert_eq!(delegations[1].identity, hashed(&[USER, DEVICE, DEVICE]));
    assert_eq!((delegations[1].delay_id.as_str(), delegations[1].delay_timeout), ("syd_delay", 10_000));

    servers.handle.set_full_access(&["other.example"]);
    let restricted = post("get_token").await.unwrap();
    assert_eq!(restricted.status().as_u16(), 400);
    assert_eq!(
        restricted.json::<serde_json::Value>().await.unwrap()["error"],
        "Delegation of delayed events is only supported for full access users"
    );
    let forbidden = post("delegate_delayed_leave").await.unwrap();
    assert_eq!(forbidden.status().as_u16(), 403);
    assert_eq!(forbidden.json::<serde_json::Value>().await.unwrap()["errcode"], "M_FORBIDDEN");
    let plain = plane(settings(&servers.homeserver.url()), ACCESS_TOKEN);
    plain.join(ROOM).await.expect("a restricted homeserver still gets tokens without delegation");
}

#[tokio::test]
async fn the_legacy_endpoint_does_not_check_the_device() {
    let servers = servers().await;
    let client = reqwest::Client::new();
    let openid: serde_json::Value = client
        .post(format!("{}/_matrix/client/v3/user/{USER}/openid/request_token", servers.homeserver.url()))
        .bearer_auth(ACCESS_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{}/sfu/get", servers.handle.service_url());
    let missing = client.post(&url).json(&serde_json::json!({ "openid_token": openid })).send().await.unwrap();
    assert_eq!(missing.json::<serde_json::Value>().await.unwrap()["error"], "Missing room parameter");
    let answer =
        client.post(&url).json(&serde_json::json!({ "room": ROOM, "openid_token": openid })).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(servers.handle.issued().last().unwrap().identity, format!("{USER}:"), "identity = mxid + ':' + \"\"");
}
