//! The NIP-29 adapter against the relay contract server (pyramid @ d15b6d9, CONTROL_PLANES.md
//! §4), which creates rooms on a real LiveKit server (`parley-devserver`) before minting.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use livekit_api::access_token::TokenVerifier;
use livekit_api::services::room::RoomClient;
use parley_contract_servers::nip29::{self, Group, Handle};
use parley_contract_servers::{LivekitKeys, Running};
use parley_control_plane::adapter::nip29::{Nip29Plane, Secrets, Settings, pubkey_of_identity};
use parley_control_plane::{Capability, ControlPlane, Secret};
use parley_devserver::{DevServer, DevServerConfig};

const SECRET_HEX: &str = "7f4c11a9742721d66e40e321ca50b682c27f7422190c14a187525e69e604836a";

fn livekit() -> DevServer {
    DevServer::start(&DevServerConfig::default()).unwrap_or_else(|error| panic!("LiveKit dev server: {error}"))
}

fn keys(server: &DevServer) -> LivekitKeys {
    LivekitKeys { url: server.url(), api_key: server.api_key().into(), api_secret: server.api_secret().into() }
}

/// Keys of a LiveKit server that is down: nothing listens on the port.
fn dead_keys() -> LivekitKeys {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("free port").port();
    LivekitKeys {
        url: format!("ws://127.0.0.1:{port}"),
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

async fn relay(keys: LivekitKeys) -> (Running, Handle) {
    nip29::start(keys).await.expect("relay starts")
}

fn public(livekit: bool) -> Group {
    Group { livekit, ..Group::default() }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn tags_of(handle: &Handle) -> Vec<serde_json::Value> {
    let requests = handle.requests();
    let event = requests.last().and_then(|request| request.auth_event.clone()).expect("a decodable auth event");
    event["tags"].as_array().cloned().expect("tags")
}

#[tokio::test]
async fn probe_tells_whether_the_relay_has_livekit() {
    let (running, handle) = relay(dead_keys()).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    plane.probe().await.expect("a relay with LiveKit answers 204");
    handle.set_livekit_configured(false);
    let error = plane.probe().await.expect_err("404 means no LiveKit");
    assert_eq!(error.code(), "not_found");
    assert!(error.to_string().contains("this relay has no LiveKit spaces"), "{error}");
}

#[tokio::test]
async fn probe_on_a_relay_that_is_not_set_up_is_not_support() {
    // pyramid before its setup redirects every path to `/setup/domain`, a 200 HTML page.
    let (running, handle) = relay(dead_keys()).await;
    handle.set_needs_setup(true);
    let error = plane(&running.url(), None, SECRET_HEX).probe().await.expect_err("a redirect is not a 204");
    assert_eq!(error.code(), "not_found", "{error}");
    assert!(error.to_string().contains("redirect"), "the message should say the relay redirected: {error}");
    let paths: Vec<String> = handle.requests().into_iter().map(|request| request.path).collect();
    assert_eq!(paths, vec!["/.well-known/nip29/livekit"], "the probe must not follow the redirect to the setup page");
}

#[tokio::test]
async fn a_member_joins_with_a_signed_request_and_a_token_for_the_group() {
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let plane = plane(&running.url().replace("http://", "ws://"), None, SECRET_HEX);
    handle.add_group("lounge", Group { private: true, livekit: true, ..Group::default() });
    handle.add_member("lounge", plane.public_key());
    assert_eq!(plane.capabilities().0.into_iter().collect::<Vec<_>>(), vec![Capability::Join]);

    let grant = plane.join("lounge").await.expect("members get a token");
    assert_eq!(grant.url, server.url());
    assert_eq!(grant.room_id, "lounge");
    assert_eq!(grant.role.as_deref(), Some("member"));
    assert_eq!(grant.notice, None, "a member's join needs no explanation");
    let claims =
        TokenVerifier::with_api_key(server.api_key(), server.api_secret()).verify(&grant.token).expect("real token");
    assert_eq!(claims.video.room, "lounge", "room = group id");
    assert_eq!(pubkey_of_identity(&claims.sub), Some(plane.public_key()), "identity starts with the pubkey");
    assert_eq!(claims.sub.len(), 64 + 1 + 3, "pubkey:3-char suffix (Go's RandomString(2))");
    let expires = grant.expires_at.expect("exp read from the token");
    assert!(expires > now() + 5 * 3600 && expires <= now() + 6 * 3600 + 5, "6 h token, got {expires}");

    let rooms = RoomClient::with_api_key(&server.http_url(), server.api_key(), server.api_secret())
        .list_rooms(Vec::new())
        .await
        .expect("LiveKit lists rooms");
    assert!(rooms.iter().any(|room| room.name == "lounge"), "the relay created the LiveKit room first: {rooms:?}");

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
    // pyramid checks neither; Parley still sends what NIP-98 asks for.
    assert!(tags.contains(&serde_json::json!(["method", "GET"])), "method tag: {tags:?}");
    assert!(now().abs_diff(event["created_at"].as_u64().unwrap()) <= 5, "fresh created_at");
}

#[tokio::test]
async fn the_default_group_and_nsec_keys_work() {
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let bytes = hex::decode(SECRET_HEX).unwrap();
    let nsec = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("nsec").unwrap(), &bytes).unwrap();
    let from_nsec = plane(&running.url(), Some("stage"), &nsec);
    let from_hex = plane(&running.url(), None, SECRET_HEX);
    assert_eq!(from_nsec.public_key(), from_hex.public_key(), "nsec and hex name the same key");
    handle.add_group("stage", Group { private: true, livekit: true, ..Group::default() });
    handle.add_member("stage", from_nsec.public_key());
    let grant = from_nsec.join("").await.expect("empty room means the default group");
    assert_eq!(grant.room_id, "stage");
}

#[tokio::test]
async fn non_members_listen_in_public_groups_and_are_told_why() {
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    // Neither `restricted` nor `closed` keeps a non-member out: only `private` does.
    handle.add_group("open", public(true));
    handle.add_group("members-only", Group { restricted: true, livekit: true, ..Group::default() });
    handle.add_group("invite-only", Group { closed: true, livekit: true, ..Group::default() });
    for group in ["open", "members-only", "invite-only"] {
        let grant = plane.join(group).await.unwrap_or_else(|error| panic!("{group}: listeners are let in: {error}"));
        assert_eq!(grant.role.as_deref(), Some("listener"), "{group}");
        assert!(handle.issued().last().unwrap().read_only, "{group}: the relay issued a read-only token");
        let notice = grant.notice.unwrap_or_else(|| panic!("{group}: a listener join must say why"));
        assert!(
            notice.contains(&format!("not a member of group {group}")) && notice.contains("listener"),
            "{group}: the notice should say the user is no member and joins as a listener: {notice}"
        );
    }
}

#[tokio::test]
async fn private_groups_refuse_non_members_with_the_relays_message() {
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("secret", Group { private: true, livekit: true, ..Group::default() });
    // Membership is checked before the `livekit` flag.
    handle.add_group("secret-text", Group { private: true, ..Group::default() });
    handle.add_group("text-only", public(false));

    for group in ["secret", "secret-text"] {
        let refused = plane.join(group).await.expect_err("a private group refuses non-members");
        assert_eq!(refused.code(), "forbidden", "{group}: {refused}");
        let shown = refused.to_string();
        assert!(shown.contains("not allowed to access livekit for this group"), "{group}: the relay's words: {shown}");
        assert!(shown.contains(&format!("not a member of group {group}")), "{group}: and why: {shown}");
    }

    let text_only = plane.join("text-only").await.expect_err("no AV");
    assert_eq!(text_only.code(), "forbidden");
    assert!(text_only.to_string().contains("livekit not enabled"), "{text_only}");
}

#[tokio::test]
async fn relay_members_speak_in_unrestricted_groups_only() {
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_relay_member(plane.public_key());
    handle.add_group("open", public(true));
    handle.add_group("members-only", Group { restricted: true, livekit: true, ..Group::default() });
    handle.add_group("private", Group { private: true, livekit: true, ..Group::default() });

    assert_eq!(plane.join("open").await.expect("open").role.as_deref(), Some("member"));
    assert_eq!(plane.join("private").await.expect("private").role.as_deref(), Some("member"));
    let restricted = plane.join("members-only").await.expect("a restricted group lets relay members listen");
    assert_eq!(restricted.role.as_deref(), Some("listener"), "restricted: relay membership does not count");
    handle.add_member("members-only", plane.public_key());
    assert_eq!(plane.join("members-only").await.expect("member").role.as_deref(), Some("member"));
}

#[tokio::test]
async fn unknown_groups_are_not_found_before_any_auth_check() {
    let (running, handle) = relay(dead_keys()).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    let unknown = plane.join("nowhere").await.expect_err("unknown group");
    assert_eq!(unknown.code(), "not_found");
    assert!(unknown.to_string().contains("nowhere"), "{unknown}");

    handle.set_livekit_configured(false);
    let no_livekit = plane.join("nowhere").await.expect_err("a relay without LiveKit");
    assert_eq!(no_livekit.code(), "not_found");
    assert!(no_livekit.to_string().contains("no LiveKit spaces"), "a 404 from a relay without LiveKit: {no_livekit}");

    let client = reqwest::Client::new();
    let url = format!("{}/.well-known/nip29/livekit/nowhere", running.url());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.text().await.unwrap()),
        (404, "404 page not found\n".to_string()),
        "pyramid looks the group up before it reads the Authorization header"
    );
}

#[tokio::test]
async fn group_ids_are_signed_as_the_relay_rebuilds_them() {
    // pyramid rebuilds `u` from the decoded path value: `a b`, not `a%20b`.
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    for (group, path) in [
        ("a b", "/.well-known/nip29/livekit/a%20b"),
        ("a/b", "/.well-known/nip29/livekit/a%2Fb"),
        ("café", "/.well-known/nip29/livekit/caf%C3%A9"),
        ("q?x#y", "/.well-known/nip29/livekit/q%3Fx%23y"),
    ] {
        handle.add_group(group, public(true));
        handle.add_member(group, plane.public_key());
        let grant = plane.join(group).await.unwrap_or_else(|error| panic!("{group:?}: {error}"));
        assert_eq!(grant.room_id, group);
        assert_eq!(handle.requests().last().unwrap().path, path, "{group:?}: the request path is percent-encoded");
        let u = format!("{}/.well-known/nip29/livekit/{group}", running.url());
        assert!(tags_of(&handle).contains(&serde_json::json!(["u", u])), "{group:?}: u carries the raw id");
    }
}

#[tokio::test]
async fn a_plain_ws_relay_on_the_lan_gets_the_https_u_pyramid_expects() {
    // 127.0.0.2 is no "localhost" to pyramid's scheme rule, like a LAN address.
    let server = livekit();
    let (running, handle) = nip29::start_on(keys(&server), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).await.unwrap();
    let plane = plane(&running.url().replace("http://", "ws://"), None, SECRET_HEX);
    handle.add_group("lan", public(true));
    handle.add_member("lan", plane.public_key());
    let grant = plane.join("lan").await.expect("the relay's https:// u is signed");
    assert_eq!(grant.role.as_deref(), Some("member"));
    let u = format!("https://{}/.well-known/nip29/livekit/lan", handle.domain());
    assert!(tags_of(&handle).contains(&serde_json::json!(["u", u])), "{:?}", tags_of(&handle));
}

#[tokio::test]
async fn a_relay_address_that_is_not_the_relays_own_is_explained() {
    let (running, handle) = relay(dead_keys()).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", public(true));
    // The relay knows itself as relay.example; the profile reaches it by IP.
    handle.set_domain("relay.example");
    let error = plane.join("g").await.expect_err("u does not match");
    let shown = error.to_string();
    assert!(shown.contains("invalid u tag"), "the relay's words: {shown}");
    assert!(shown.contains("canonical"), "the message should ask for the relay's canonical address: {shown}");
}

#[tokio::test]
async fn the_older_url_token_shape_is_accepted() {
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", public(true));
    handle.set_legacy_shape(true);
    let grant = plane.join("g").await.expect("{url, token} is fine too");
    assert_eq!(grant.url, server.url());
    assert!(!grant.token.is_empty());
}

#[tokio::test]
async fn the_relay_checks_signature_url_and_header_but_not_method_or_age() {
    let server = livekit();
    let (running, handle) = relay(keys(&server)).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", public(true));
    let url = format!("{}/.well-known/nip29/livekit/g", running.url());
    let client = reqwest::Client::new();
    let status_and_text =
        |response: reqwest::Response| async move { (response.status().as_u16(), response.text().await.unwrap()) };

    let missing = status_and_text(client.get(&url).send().await.unwrap()).await;
    assert_eq!(missing, (401, "authorization header required\n".to_string()));

    let other_url = plane.authorization("GET", &format!("{}/.well-known/nip29/livekit/other", running.url())).unwrap();
    let wrong_u = status_and_text(client.get(&url).header("authorization", other_url).send().await.unwrap()).await;
    assert_eq!(wrong_u, (401, "invalid u tag\n".to_string()));

    let post = status_and_text(client.post(&url).send().await.unwrap()).await;
    assert_eq!(post, (405, "method not allowed\n".to_string()));

    // pyramid ignores the method tag and created_at: a POST-tagged, hour-old event passes.
    let good = plane.authorization("GET", &url).unwrap();
    let decode = |header: &str| -> serde_json::Value {
        let json = base64::engine::general_purpose::STANDARD.decode(header.trim_start_matches("Nostr ")).unwrap();
        serde_json::from_slice(&json).unwrap()
    };
    let mut stale = decode(&plane.authorization("POST", &url).unwrap());
    stale["created_at"] = serde_json::json!(now() - 3600);
    let resigned = resign(&stale);
    let old = client.get(&url).header("authorization", resigned).send().await.unwrap();
    assert_eq!(old.status().as_u16(), 200, "no method or created_at check: {}", old.text().await.unwrap());

    // Flip one character of the signature.
    let mut event = decode(&good);
    let sig = event["sig"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    event["sig"] = serde_json::Value::String(flipped);
    let forged = format!("Nostr {}", base64::engine::general_purpose::STANDARD.encode(event.to_string()));
    let bad_sig = status_and_text(client.get(&url).header("authorization", forged).send().await.unwrap()).await;
    assert_eq!(bad_sig, (401, "invalid event signature\n".to_string()));

    let accepted = client.get(&url).header("authorization", good).send().await.unwrap();
    assert_eq!(accepted.status().as_u16(), 200, "the untampered header passes");
    let body = accepted.text().await.unwrap();
    assert!(body.starts_with("{\"server_url\":") && body.ends_with("}\n"), "Go's json.Encoder body: {body:?}");
}

/// Signs `event` (with its changed fields) again with [`SECRET_HEX`], as a client with a slow
/// clock or a replayed header would send it.
fn resign(event: &serde_json::Value) -> String {
    use k256::schnorr::SigningKey;
    use sha2::{Digest, Sha256};
    let key = SigningKey::from_bytes(&hex::decode(SECRET_HEX).unwrap()).unwrap();
    let canonical =
        serde_json::json!([0, event["pubkey"], event["created_at"], event["kind"], event["tags"], event["content"]]);
    let id: [u8; 32] = Sha256::digest(canonical.to_string().as_bytes()).into();
    let signature = key.sign_prehash_with_aux_rand(&id, &[7u8; 32]).unwrap();
    let mut event = event.clone();
    event["id"] = serde_json::json!(hex::encode(id));
    event["sig"] = serde_json::json!(hex::encode(signature.to_bytes()));
    format!("Nostr {}", base64::engine::general_purpose::STANDARD.encode(event.to_string()))
}

#[tokio::test]
async fn a_relay_whose_livekit_is_down_says_its_voice_server_is_unreachable() {
    let (running, handle) = relay(dead_keys()).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", public(true));
    let error = plane.join("g").await.expect_err("the relay cannot create the room");
    assert_eq!(error.code(), "server_error", "{error}");
    let shown = error.to_string();
    assert!(shown.contains("voice server") && shown.contains("unreachable"), "say what is down: {shown}");
    assert!(shown.contains("connection refused"), "and keep the relay's reason: {shown}");
    assert!(handle.issued().is_empty(), "no token without a room");

    // A relay without LiveKit settings fails the same way at room creation.
    handle.set_livekit_configured(false);
    let unconfigured = plane.join("g").await.expect_err("no LiveKit URL");
    assert!(unconfigured.to_string().contains("voice server"), "{unconfigured}");
}

#[tokio::test]
async fn error_statuses_map_to_plane_errors() {
    let (running, handle) = relay(dead_keys()).await;
    let plane = plane(&running.url(), None, SECRET_HEX);
    handle.add_group("g", public(true));
    let cases: [(u16, &str, &str, &str); 7] = [
        (401, "invalid event kind\n", "unauthorized", "invalid event kind"),
        (429, "slow down", "rate_limited", "rate limiting"),
        (
            500,
            "failed to ensure livekit room: failed to create room: 401 Unauthorized\n",
            "server_error",
            "voice server",
        ),
        (502, "<html>Bad Gateway</html>", "server_error", "HTTP 502"),
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
    let (running, _handle) = relay(dead_keys()).await;
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
