//! Profiles: the file (`profiles.toml`: atomic, private, never overwritten when corrupt), the
//! secrets in a [`SecretStore`], and building each profile's adapter.

use std::collections::BTreeMap;

use parley_control_plane::adapter::{livekit, token_endpoint};
use parley_control_plane::profile::{BackendSettings, Profile, ProfileStore, open_plane, stored_secrets};
use parley_control_plane::secret_store::{MemoryStore, SecretStore};
use parley_control_plane::{BackendKind, Capability, Secret};

const API_SECRET: &str = "profile-test-api-secret-long-enough";

fn livekit_profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        settings: BackendSettings::Livekit(livekit::Settings {
            url: "wss://lk.example.org".into(),
            api_key: "APIpublic".into(),
            identity: "alice".into(),
            display_name: None,
        }),
        insecure: false,
    }
}

fn token_profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        settings: BackendSettings::TokenEndpoint(token_endpoint::Settings {
            url_template: "https://app.example.org/api/livekit?room={room}&username={identity}".into(),
            method: token_endpoint::RequestMethod::Get,
            body_template: None,
            header_name: Some("Authorization".into()),
            token_pointer: "/token".into(),
            url_pointer: "/url".into(),
            livekit_url: None,
            identity: "alice".into(),
            display_name: None,
        }),
        insecure: false,
    }
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(name, value)| (name.to_string(), Secret::new(*value))).collect()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("parley-profiles-").tempdir().expect("temp dir")
}

#[test]
fn a_saved_profile_round_trips_and_its_secret_lives_only_in_the_store() {
    let dir = scratch();
    let store = ProfileStore::in_dir(dir.path().join("parley"));
    let keyring = MemoryStore::new();
    store.add(&livekit_profile("home"), &secrets(&[("api-secret", API_SECRET)]), &keyring, false).expect("add");

    let text = std::fs::read_to_string(store.path()).expect("the file exists");
    assert!(!text.contains(API_SECRET), "the profile file must not hold the secret:\n{text}");
    assert!(text.contains("backend = \"livekit\"") && text.contains("APIpublic"), "tagged settings:\n{text}");
    assert_eq!(keyring.users(), vec!["home/api-secret".to_string()], "secret under <profile>/<name>");
    assert_eq!(store.get("home").expect("get"), livekit_profile("home"));
    assert_eq!(store.list().expect("list"), vec![livekit_profile("home")]);
    assert_eq!(stored_secrets(&livekit_profile("home"), &keyring).expect("stored"), vec!["api-secret"]);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(store.path()).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the owner may read the profile file");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("parley"))
        .expect("dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(leftovers, vec!["profiles.toml".to_string()], "no temporary file is left behind");

    let plane = open_plane(&store.get("home").expect("get"), std::sync::Arc::new(keyring)).expect("open");
    assert_eq!(plane.kind(), BackendKind::Livekit);
    assert!(plane.capabilities().supports(Capability::ListRooms));
}

#[test]
fn removing_a_profile_removes_its_secrets() {
    let dir = scratch();
    let store = ProfileStore::in_dir(dir.path());
    let keyring = MemoryStore::new();
    store.add(&livekit_profile("home"), &secrets(&[("api-secret", API_SECRET)]), &keyring, false).expect("add");
    store
        .add(&token_profile("work"), &secrets(&[("header-value", "Bearer abc")]), &keyring, false)
        .expect("add another");
    let removed = store.remove("home", &keyring).expect("remove");
    assert_eq!(removed.name, "home");
    assert_eq!(keyring.users(), vec!["work/header-value".to_string()], "only the other profile's secret stays");
    assert_eq!(store.list().expect("list").len(), 1);
    let error = store.remove("home", &keyring).expect_err("gone");
    assert_eq!(error.code(), "not_found", "{error}");
    assert!(error.to_string().contains("profile \"home\""), "{error}");
}

#[test]
fn a_corrupt_file_is_reported_and_left_alone() {
    let dir = scratch();
    let store = ProfileStore::in_dir(dir.path());
    let corrupt = "[profiles.home\nbackend = ";
    std::fs::write(store.path(), corrupt).expect("write");
    let keyring = MemoryStore::new();
    let error = store.list().expect_err("corrupt");
    assert_eq!(error.code(), "invalid_input");
    let message = error.to_string();
    assert!(message.contains("profiles.toml") && message.contains("not a valid profile file"), "{message}");
    let added = store.add(&livekit_profile("home"), &secrets(&[("api-secret", API_SECRET)]), &keyring, false);
    assert!(added.is_err(), "adding to a corrupt file must fail");
    assert_eq!(std::fs::read_to_string(store.path()).expect("read"), corrupt, "the file is not overwritten");
    assert!(keyring.users().is_empty(), "no secret is stored for a profile that was not saved");
}

#[test]
fn unknown_fields_and_backends_in_the_file_are_errors() {
    let dir = scratch();
    let store = ProfileStore::in_dir(dir.path());
    std::fs::write(
        store.path(),
        "[profiles.home]\nbackend = \"livekit\"\nurl = \"ws://x\"\napi_key = \"k\"\nidentity = \"a\"\napi_secret = \"oops\"\n",
    )
    .expect("write");
    let error = store.get("home").expect_err("unknown field");
    assert!(error.to_string().contains("api_secret"), "names the unexpected field: {error}");
    std::fs::write(store.path(), "[profiles.home]\nbackend = \"mumble\"\n").expect("write");
    assert_eq!(store.list().expect_err("unknown backend").code(), "invalid_input");
}

#[test]
fn an_existing_profile_is_replaced_only_when_asked_and_stale_secrets_go() {
    let dir = scratch();
    let store = ProfileStore::in_dir(dir.path());
    let keyring = MemoryStore::new();
    store.add(&token_profile("work"), &secrets(&[("header-value", "Bearer abc")]), &keyring, false).expect("add");
    let again = store.add(&livekit_profile("work"), &secrets(&[("api-secret", API_SECRET)]), &keyring, false);
    let error = again.expect_err("exists");
    assert!(error.to_string().contains("exists already"), "{error}");
    store.add(&livekit_profile("work"), &secrets(&[("api-secret", API_SECRET)]), &keyring, true).expect("replace");
    assert_eq!(store.get("work").expect("get").kind(), BackendKind::Livekit);
    assert_eq!(keyring.users(), vec!["work/api-secret".to_string()], "the old backend's secret was deleted");
}

#[test]
fn bad_names_unknown_secrets_and_missing_secrets_are_refused() {
    let dir = scratch();
    let store = ProfileStore::in_dir(dir.path());
    let keyring = MemoryStore::new();
    let good = secrets(&[("api-secret", API_SECRET)]);
    for name in ["", "a/b", ".hidden", "spaces here"] {
        let error = store.add(&livekit_profile(name), &good, &keyring, false).expect_err("bad name");
        assert_eq!(error.code(), "invalid_input", "{name:?}: {error}");
    }
    let error = store
        .add(&livekit_profile("home"), &secrets(&[("password", "x")]), &keyring, false)
        .expect_err("unknown secret");
    assert!(error.to_string().contains("api-secret"), "lists the secrets this backend takes: {error}");
    let error = store.add(&livekit_profile("home"), &BTreeMap::new(), &keyring, false).expect_err("no secret");
    assert!(error.to_string().contains("API secret"), "{error}");
    assert!(!store.path().exists(), "nothing was written");
}

#[test]
fn settings_from_flags_use_backend_defaults_and_name_missing_flags() {
    let mut fields = serde_json::Map::new();
    fields.insert("url_template".into(), "https://x/{room}".into());
    fields.insert("identity".into(), "me".into());
    let settings = BackendSettings::from_fields(BackendKind::TokenEndpoint, fields).expect("settings");
    let BackendSettings::TokenEndpoint(settings) = settings else { panic!("token-endpoint settings") };
    assert_eq!((settings.token_pointer.as_str(), settings.url_pointer.as_str()), ("/token", "/url"));

    let mut missing = serde_json::Map::new();
    missing.insert("url".into(), "ws://x".into());
    let error = BackendSettings::from_fields(BackendKind::Livekit, missing.clone()).expect_err("no api key");
    assert!(error.to_string().contains("missing --api-key"), "{error}");
    missing.insert("group".into(), "g".into());
    missing.insert("api_key".into(), "k".into());
    missing.insert("identity".into(), "me".into());
    let error = BackendSettings::from_fields(BackendKind::Livekit, missing).expect_err("a nip29 flag");
    assert!(error.to_string().contains("--group does not apply"), "{error}");
}

#[test]
fn memory_and_real_stores_share_one_interface() {
    fn round_trip(store: &dyn SecretStore) {
        store.set("p", "n", &Secret::new("v")).expect("set");
        assert_eq!(store.get("p", "n").expect("get").map(|value| value.expose().to_string()), Some("v".into()));
        store.delete("p", "n").expect("delete");
        assert!(store.get("p", "n").expect("get").is_none());
    }
    round_trip(&MemoryStore::new());
}
