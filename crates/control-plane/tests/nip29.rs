//! The NIP-29 adapter against the relay contract server (CONTROL_PLANES.md §4).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use livekit_api::access_token::TokenVerifier;
use parley_contract_servers::LivekitKeys;
use parley_contract_servers::nip29::{self, Group, Handle};
use parley_control_plane::adapter::nip29::{Nip29Plane, Secrets, Settings, pubkey_of_identity};
use parley_control_plane::{Capability, ControlPlane, Secret};

const SECRET_HEX: &str = "7f4c11a9742721d66e40e321ca50b682c27f7422190c14a187525e69e604836a";

fn keys() -> LivekitKeys {
    LivekitKeys {
        url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: "a-test-secret-that-is-long-enough-123".into(),
    }
}

fn plane(relay_url: &str, group: Option<&str>, key: &str) -> Nip29Plane {
    Nip29Plane::new(
        Settings { relay_url: relay_url.into(), group: group.map(String::from) },
        Secrets { nostr_key: Some(Secret::new(key)) },
    )
    .expect("valid settings")
}

async fn relay() -> (parley_contract_servers::Running, Handle) {
    nip29::start(keys()).await.expect("relay starts")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn probe_tells_whether_the_relay_has_livekit() {
    let (running, handle) = relay().await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    plane.probe().await.expect("a relay with LiveKit answers 204");
    handle.set_livekit_configured(false);
    let error = plane.probe().await.expect_err("404 means no LiveKit");
    assert_eq!(error.code(), "not_found");
    assert!(error.to_string().contains("this relay has no LiveKit spaces"), "{error}");
}

#[tokio::test]
async fn a_member_joins_with_a_signed_request_and_a_token_for_the_group() {
    let (running, handle) = relay().await;
    let plane = plane(&running.url().replace("http://", "ws://"), None, SECRET_HEX);
    handle.add_group("lounge", Group { public: false, livekit: true });
    handle.add_member("lounge", plane.public_key());
    assert_eq!(plane.capabilities().0.into_iter().collect::<Vec<_>>(), vec![Capability::Join]);

    let grant = plane.join("lounge").await.expect("members get a token");
    assert_eq!(grant.url, "ws://127.0.0.1:7880");
    assert_eq!(grant.room_id, "lounge");
    assert_eq!(grant.role.as_deref(), Some("member"));
    let claims =
        TokenVerifier::with_api_key(&keys().api_key, &keys().api_secret).verify(&grant.token).expect("real token");
    assert_eq!(claims.video.room, "lounge", "room = group id");
    assert_eq!(pubkey_of_identity(&claims.sub), Some(plane.public_key()), "identity starts with the pubkey");
    assert_eq!(claims.sub.len(), 64 + 1 + 16, "pubkey:16-char suffix");
    let expires = grant.expires_at.expect("exp read from the token");
    assert!(expires > now() + 5 * 3600 && expires <= now() + 6 * 3600 + 5, "6 h token, got {expires}");

    let requests = handle.requests();
    let request = requests.last().expect("one request");
    assert_eq!(request.path, "/.well-known/nip29/livekit/lounge");
    assert!(request.headers["authorization"].starts_with("Nostr "), "NIP-98 header");
    let event = request.auth_event.as_ref().expect("decodable event");
    assert_eq!(event["kind"], 27235);
    assert_eq!(event["pubkey"], plane.public_key());
    let tags = event["tags"].as_array().unwrap();
    let expected_u = format!("{}/.well-known/nip29/livekit/lounge", running.url());
    assert!(tags.contains(&serde_json::json!(["u", expected_u])), "u tag is the exact URL: {tags:?}");
    assert!(tags.contains(&serde_json::json!(["method", "GET"])), "method tag: {tags:?}");
    assert!(now().abs_diff(event["created_at"].as_u64().unwrap()) <= 5, "fresh created_at");
}

#[tokio::test]
async fn the_default_group_and_nsec_keys_work() {
    let (running, handle) = relay().await;
    let bytes = hex::decode(SECRET_HEX).unwrap();
    let nsec = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("nsec").unwrap(), &bytes).unwrap();
    let from_nsec = plane(&running.url(), Some("stage"), &nsec);
    let from_hex = plane(&running.url(), None, SECRET_HEX);
    assert_eq!(from_nsec.public_key(), from_hex.public_key(), "nsec and hex name the same key");
    handle.add_group("stage", Group { public: false, livekit: true });
    handle.add_member("stage", from_nsec.public_key());
    let grant = from_nsec.join("").await.expect("empty room means the default group");
    assert_eq!(grant.room_id, "stage");
}

#[tokio::test]
async fn non_members_listen_in_public_groups_and_are_refused_elsewhere() {
    let (running, handle) = relay().await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("open", Group { public: true, livekit: true });
    handle.add_group("closed", Group { public: false, livekit: true });
    handle.add_group("text-only", Group { public: true, livekit: false });

    let grant = plane.join("open").await.expect("public groups admit listeners");
    assert_eq!(grant.role.as_deref(), Some("listener"));
    assert!(handle.issued().last().unwrap().read_only, "the relay issued a read-only token");

    let closed = plane.join("closed").await.expect_err("private group");
    assert_eq!(closed.code(), "forbidden");
    assert!(closed.to_string().contains("not allowed to access livekit for this group"), "{closed}");

    let text_only = plane.join("text-only").await.expect_err("no AV");
    assert_eq!(text_only.code(), "forbidden");
    assert!(text_only.to_string().contains("livekit not enabled"), "{text_only}");

    let unknown = plane.join("nowhere").await.expect_err("unknown group");
    assert_eq!(unknown.code(), "not_found");
    assert!(unknown.to_string().contains("nowhere"), "{unknown}");
}

#[tokio::test]
async fn the_older_url_token_shape_is_accepted() {
    let (running, handle) = relay().await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", Group { public: true, livekit: true });
    handle.set_legacy_shape(true);
    let grant = plane.join("g").await.expect("{url, token} is fine too");
    assert_eq!(grant.url, "ws://127.0.0.1:7880");
    assert!(!grant.token.is_empty());
}

#[tokio::test]
async fn the_relay_checks_signature_url_method_and_header() {
    let (running, handle) = relay().await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", Group { public: true, livekit: true });
    let url = format!("{}/.well-known/nip29/livekit/g", running.url());
    let client = reqwest::Client::new();
    let status_and_text =
        |response: reqwest::Response| async move { (response.status().as_u16(), response.text().await.unwrap()) };

    let missing = status_and_text(client.get(&url).send().await.unwrap()).await;
    assert_eq!(missing, (401, "authorization header required\n".to_string()));

    let other_url = plane.authorization("GET", &format!("{}/.well-known/nip29/livekit/other", running.url())).unwrap();
    let wrong_u = status_and_text(client.get(&url).header("authorization", other_url).send().await.unwrap()).await;
    assert_eq!(wrong_u, (401, "invalid u tag\n".to_string()));

    let post = plane.authorization("POST", &url).unwrap();
    let wrong_method = status_and_text(client.get(&url).header("authorization", post).send().await.unwrap()).await;
    assert_eq!(wrong_method, (401, "invalid method tag\n".to_string()));

    // Flip one character of the signature: the id still matches, the signature does not.
    let good = plane.authorization("GET", &url).unwrap();
    let json = base64::engine::general_purpose::STANDARD.decode(good.trim_start_matches("Nostr ")).unwrap();
    let mut event: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let sig = event["sig"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    event["sig"] = serde_json::Value::String(flipped);
    let forged = format!("Nostr {}", base64::engine::general_purpose::STANDARD.encode(event.to_string()));
    let bad_sig = status_and_text(client.get(&url).header("authorization", forged).send().await.unwrap()).await;
    assert_eq!(bad_sig, (401, "invalid event signature\n".to_string()));

    let accepted = client.get(&url).header("authorization", good).send().await.unwrap();
    assert_eq!(accepted.status().as_u16(), 200, "the untampered header passes");
}

#[tokio::test]
async fn error_statuses_map_to_plane_errors() {
    let (running, handle) = relay().await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", Group { public: true, livekit: true });
    let cases: [(u16, &str, &str, &str); 6] = [
        (401, "invalid event kind\n", "unauthorized", "invalid event kind"),
        (429, "slow down", "rate_limited", "rate limiting"),
        (500, "failed to create room\n", "server_error", "failed to create room"),
        (200, "<!DOCTYPE html><html><body>relay</body></html>", "malformed_response", "web page"),
        (200, "{\"server_url\":", "malformed_response", "unexpected JSON"),
        (200, "{\"ok\":true}", "malformed_response", "no LiveKit URL and token"),
    ];
    for (status, body, code, words) in cases {
        handle.fail_next(status, body);
        let error = plane.join("g").await.expect_err("forced failure");
        assert_eq!(error.code(), code, "status {status} body {body:?}: {error}");
        assert!(error.to_string().contains(words), "status {status}: {error}");
    }
}

#[tokio::test]
async fn a_dead_relay_is_unreachable() {
    let (running, _handle) = relay().await;
    let url = running.url();
    running.stop().await;
    let error = plane(&url, None, SECRET_HEX).join("g").await.expect_err("nobody listens");
    assert_eq!(error.code(), "unreachable");
}

#[tokio::test]
async fn the_secret_key_never_shows() {
    let plane = plane("wss://relay.example", None, SECRET_HEX);
    let debug = format!("{plane:?}");
    assert!(!debug.contains(SECRET_HEX), "Debug leaks the key: {debug}");
    assert!(debug.contains("[redacted]"));

    let bad = format!("{}zz", &SECRET_HEX[..62]);
    let error = Nip29Plane::new(
        Settings { relay_url: "wss://relay.example".into(), group: None },
        Secrets { nostr_key: Some(Secret::new(bad.clone())) },
    )
    .expect_err("not hex");
    assert_eq!(error.code(), "invalid_input");
    assert!(!error.to_string().contains(&bad[..20]), "error echoes the key: {error}");

    let missing =
        Nip29Plane::new(Settings { relay_url: "wss://relay.example".into(), group: None }, Secrets::default())
            .expect_err("a key is required");
    assert!(missing.to_string().contains("Nostr secret key"), "{missing}");
    let public = Nip29Plane::new(
        Settings { relay_url: "wss://relay.example".into(), group: None },
        Secrets { nostr_key: Some(Secret::new("npub1abc")) },
    )
    .expect_err("npub is not a secret key");
    assert!(public.to_string().contains("npub"), "{public}");
}
