//! Cleartext and certificates (issue 18 #2):
//! * a profile whose server is `http://`/`ws://` on another machine is refused unless it says
//!   `insecure`, and nothing is saved; loopback needs no flag;
//! * a grant that sends the call to `ws://` on another machine is refused before anyone
//!   connects with its token, unless the profile is insecure;
//! * a client built for an `https://` backend never follows it to `http://` elsewhere;
//! * a server whose certificate nobody trusts gets "not trusted", not "connection failed".
//!
//! `192.0.2.10` (TEST-NET-1) stands for another machine: every refusal here happens before a
//! connection, so nothing is ever sent there.

use std::collections::BTreeMap;
use std::sync::Arc;

use parley_contract_servers::LivekitKeys;
use parley_contract_servers::token_endpoint::{self, Config};
use parley_contract_servers::untrusted_tls::UntrustedTls;
use parley_control_plane::adapter::token_endpoint::{RequestMethod, Secrets, Settings, TokenEndpointPlane};
use parley_control_plane::http::Http;
use parley_control_plane::profile::{BackendSettings, Profile, ProfileStore, open_plane};
use parley_control_plane::secret_store::MemoryStore;
use parley_control_plane::{ControlPlane, Secret};

fn settings(url_template: &str) -> Settings {
    Settings {
        url_template: url_template.into(),
        method: RequestMethod::Get,
        body_template: None,
        header_name: Some("Authorization".into()),
        token_pointer: "/token".into(),
        url_pointer: "/url".into(),
        livekit_url: None,
        identity: "alice".into(),
        display_name: None,
    }
}

fn profile(url_template: &str, insecure: bool) -> Profile {
    Profile { name: "community".into(), settings: BackendSettings::TokenEndpoint(settings(url_template)), insecure }
}

fn header() -> BTreeMap<String, Secret> {
    BTreeMap::from([("header-value".to_string(), Secret::new("Bearer app-token"))])
}

#[test]
fn a_cleartext_server_elsewhere_is_saved_only_when_the_profile_says_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profiles = ProfileStore::in_dir(dir.path());
    let store = MemoryStore::new();
    let remote = "http://192.0.2.10:8080/api/livekit?room={room}&username={identity}";

    let error = profiles.add(&profile(remote, false), &header(), &store, false).expect_err("cleartext refused");
    assert_eq!(error.code(), "invalid_input");
    let message = error.to_string();
    assert!(message.contains("http://192.0.2.10:8080 is unencrypted"), "names the server: {message}");
    assert!(message.contains("--insecure") && message.contains("https://"), "says what to do: {message}");
    assert!(!message.contains("username"), "no path or query in the message: {message}");
    assert!(profiles.list().expect("list").is_empty(), "nothing saved");
    assert!(store.users().is_empty(), "no secret stored: {:?}", store.users());

    profiles.add(&profile(remote, true), &header(), &store, false).expect("saved when insecure");
    let saved = profiles.get("community").expect("get");
    assert!(saved.insecure, "the flag is kept");
    let text = std::fs::read_to_string(profiles.path()).expect("file");
    assert!(text.contains("insecure = true"), "in the file: {text}");

    let local = profile("http://127.0.0.1:8080/api/livekit?room={room}", false);
    let local = Profile { name: "local".into(), ..local };
    profiles.add(&local, &header(), &store, false).expect("loopback needs no flag");
    assert!(!profiles.get("local").expect("get").insecure);
    let text = std::fs::read_to_string(profiles.path()).expect("file");
    assert_eq!(text.matches("insecure").count(), 1, "the flag is written only when set: {text}");
}

#[tokio::test]
async fn a_grant_to_cleartext_livekit_elsewhere_is_refused_unless_insecure() {
    let keys = LivekitKeys {
        url: "ws://192.0.2.10:7880".into(),
        api_key: "devkey".into(),
        api_secret: "contract-test-secret-that-is-long-enough".into(),
    };
    let (server, handle) = token_endpoint::start(keys, Config::default()).await.expect("token endpoint");
    let template = format!("{}/api/livekit?room={{room}}&username={{identity}}", server.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let profiles = ProfileStore::in_dir(dir.path());
    let store = Arc::new(MemoryStore::new());
    for insecure in [false, true] {
        profiles.add(&profile(&template, insecure), &header(), store.as_ref(), true).expect("save");
        let plane = open_plane(&profiles.get("community").expect("get"), store.clone()).expect("open");
        let joined = plane.join("lounge").await;
        if insecure {
            assert_eq!(joined.expect("an insecure profile accepts it").url, "ws://192.0.2.10:7880");
        } else {
            let message = joined.expect_err("refused").to_string();
            assert!(
                message.contains("ws://192.0.2.10:7880 is unencrypted") && message.contains("--insecure"),
                "{message}"
            );
            assert!(!message.contains("Bearer"), "{message}");
        }
    }
    assert_eq!(handle.requests().len(), 2, "the backend was asked both times");
}

#[tokio::test]
async fn a_client_for_an_encrypted_backend_is_not_led_to_cleartext_elsewhere() {
    let http = Http::new().expect("client").for_server("https://chat.example.org");
    let started = std::time::Instant::now();
    let failure = http
        .send(http.request(reqwest::Method::GET, "http://192.0.2.10/.well-known/service?token=abc"))
        .await
        .expect_err("refused");
    let message = failure.into_error().to_string();
    assert!(message.contains("does not downgrade"), "{message}");
    assert!(message.contains("http://192.0.2.10/.well-known/service") && !message.contains("abc"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "refused without trying to connect");

    // Loopback stays allowed: the request reaches the local server.
    let keys = LivekitKeys {
        url: "ws://127.0.0.1:9".into(),
        api_key: "devkey".into(),
        api_secret: "contract-test-secret-that-is-long-enough".into(),
    };
    let (server, handle) = token_endpoint::start(keys, Config::default()).await.expect("token endpoint");
    let url = format!("{}/api/livekit?room=lounge&username=alice", server.url());
    // The contract server answers 401 without the header; what matters is that it was asked.
    drop(http.send(http.request(reqwest::Method::GET, &url)).await);
    assert_eq!(handle.requests().len(), 1, "the loopback request was sent");
}

#[tokio::test]
async fn an_untrusted_certificate_is_reported_as_not_trusted() {
    let tls = UntrustedTls::start();
    let template = format!("https://{}/api/livekit?room={{room}}&username={{identity}}", tls.address());
    let plane =
        TokenEndpointPlane::new(settings(&template), Secrets { header_value: Some(Secret::new("Bearer app-token")) })
            .expect("plane");
    let error = plane.join("lounge").await.expect_err("the certificate is refused");
    assert_eq!(error.code(), "unreachable");
    let message = error.to_string();
    assert!(message.contains("certificate is not trusted"), "{message}");
    assert!(message.contains("self-signed"), "says why: {message}");
    assert!(!message.contains("connection failed"), "{message}");
    assert!(message.contains(&format!("https://{}/api/livekit", tls.address())), "names the server: {message}");
}
