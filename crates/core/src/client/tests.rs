//! The command layer: profiles and secrets, settings, offline toggles, and real calls through
//! the pinned LiveKit server (`parley_devserver`), two clients in one process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parley_audio::signal::Tone;
use parley_control_plane::secret_store::{MemoryStore, SecretStore};
use parley_devserver::{DevServer, DevServerConfig};
use tokio::sync::watch;

use super::*;

/// Tones instead of sound devices: a call that needs no audio hardware.
struct ToneEnds(f64);

impl AudioEnds for ToneEnds {
    fn open(&self, _settings: &AppSettings) -> Result<OpenedAudio, ClientError> {
        Ok(OpenedAudio {
            input: Some(Box::new(Tone::new(self.0, -20.0))),
            output: None,
            cues: None,
            processing: None,
            device_info: Vec::new(),
        })
    }
}

struct Fixture {
    client: Client,
    secrets: Arc<MemoryStore>,
    dir: tempfile::TempDir,
}

fn fixture(frequency: f64) -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary config directory");
    let secrets = Arc::new(MemoryStore::new());
    let client = Client::new(ClientConfig {
        config_dir: dir.path().to_path_buf(),
        secrets: Arc::clone(&secrets) as Arc<dyn SecretStore>,
        audio: Arc::new(ToneEnds(frequency)),
        library: LibrarySearch::default(),
    });
    Fixture { client, secrets, dir }
}

fn livekit_profile(name: &str, url: &str, api_key: &str, api_secret: &str, identity: &str) -> ProfileInput {
    ProfileInput {
        name: name.into(),
        backend: Backend::Livekit,
        fields: BTreeMap::from([
            ("url".to_string(), serde_json::json!(url)),
            ("api_key".to_string(), serde_json::json!(api_key)),
            ("identity".to_string(), serde_json::json!(identity)),
        ]),
        secrets: BTreeMap::from([("api-secret".to_string(), api_secret.to_string())]),
        replace: false,
        register: false,
        insecure: false,
    }
}

/// Waits until the state satisfies `holds`, or fails naming `what`.
async fn wait_for(
    states: &mut watch::Receiver<ClientState>,
    what: &str,
    holds: impl Fn(&ClientState) -> bool,
) -> ClientState {
    let waited = tokio::time::timeout(Duration::from_secs(15), states.wait_for(|state| holds(state)))
        .await
        .map(|found| found.map(|state| state.clone()));
    match waited {
        Ok(Ok(state)) => state,
        _ => panic!("{what} should have happened within 15 s; last state: {:?}", states.borrow()),
    }
}

fn phase(state: &ClientState) -> Option<&CallPhase> {
    state.call.as_ref().map(|call| &call.phase)
}

#[tokio::test]
async fn profile_secrets_go_to_the_keyring_and_never_into_listings() {
    let Fixture { client, secrets, dir } = fixture(440.0);
    let summary = client
        .add_profile(livekit_profile("home", "ws://127.0.0.1:7880", "APIkey", "s3cret-value", "alice"))
        .await
        .expect("adding a livekit profile");
    assert_eq!(summary.backend, Backend::Livekit, "the summary should name the backend");
    assert_eq!(secrets.users(), vec!["home/api-secret".to_string()], "the secret should be in the keyring");
    let listed = client.list_profiles().await.expect("listing profiles");
    let shown = serde_json::to_string(&listed).expect("profiles serialise");
    assert!(!shown.contains("s3cret-value"), "a listing must not carry the secret: {shown}");
    let file = std::fs::read_to_string(dir.path().join("profiles.toml")).expect("the profile file");
    assert!(!file.contains("s3cret-value"), "the profile file must not carry the secret: {file}");
    assert_eq!(listed[0].fields.get("identity"), Some(&serde_json::json!("alice")), "non-secret fields are listed");

    let again = client.add_profile(livekit_profile("home", "ws://x", "k", "s", "bob")).await;
    assert_eq!(again.map_err(|error| error.code).err(), Some(ErrorCode::InvalidInput), "a duplicate needs replace");

    client.remove_profile("home").await.expect("removing the profile");
    assert!(secrets.users().is_empty(), "removing a profile removes its secret");
    let missing = client.remove_profile("home").await.expect_err("removing twice fails");
    assert_eq!(missing.code, ErrorCode::NotFound, "a missing profile is not_found: {missing}");
}

#[tokio::test]
async fn a_profile_missing_a_field_is_refused_before_anything_is_stored() {
    let Fixture { client, secrets, .. } = fixture(440.0);
    let mut input = livekit_profile("home", "ws://127.0.0.1:7880", "APIkey", "secret", "alice");
    input.fields.remove("api_key");
    let error = client.add_profile(input).await.expect_err("a profile without an API key is refused");
    assert_eq!(error.code, ErrorCode::InvalidInput, "a missing field is invalid_input: {error}");
    assert!(secrets.users().is_empty(), "nothing is stored for a refused profile");
}

#[tokio::test]
async fn settings_are_validated_saved_and_read_back() {
    let Fixture { client, dir, .. } = fixture(440.0);
    let mut settings = client.settings();
    settings.transmit_mode = TransmitChoice::PushToTalk;
    settings.ptt_release_delay_ms = 350;
    client.update_settings(settings.clone()).await.expect("saving settings");
    assert_eq!(client.state().local.transmit_mode, TransmitChoice::PushToTalk, "the state shows the new mode");
    let reopened = fixture_in(dir.path());
    assert_eq!(reopened.settings(), settings, "a new client reads the saved settings");
    settings.ptt_release_delay_ms = 5000;
    let refused = client.update_settings(settings).await.expect_err("5 s release delay is refused");
    assert_eq!(refused.code, ErrorCode::InvalidInput, "out of range is invalid_input: {refused}");
}

fn fixture_in(dir: &std::path::Path) -> Client {
    Client::new(ClientConfig {
        config_dir: dir.to_path_buf(),
        secrets: Arc::new(MemoryStore::new()),
        audio: Arc::new(ToneEnds(440.0)),
        library: LibrarySearch::default(),
    })
}

#[tokio::test]
async fn a_broken_settings_file_is_never_overwritten() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("settings.toml"), "cues = [").expect("writing a broken file");
    let client = fixture_in(dir.path());
    assert_eq!(client.settings(), AppSettings::default(), "a broken file means defaults in memory");
    let refused = client.update_settings(AppSettings::default()).await.expect_err("saving over it is refused");
    assert_eq!(refused.code, ErrorCode::Settings, "the refusal is a settings error: {refused}");
    let text = std::fs::read_to_string(dir.path().join("settings.toml")).expect("the file");
    assert_eq!(text, "cues = [", "the user's file is untouched");
}

#[tokio::test]
async fn mute_and_deafen_outside_a_call_are_remembered_and_call_commands_need_a_call() {
    let Fixture { client, .. } = fixture(440.0);
    client.toggle_mute().await.expect("muting outside a call");
    client.set_deafened(true).await.expect("deafening outside a call");
    client.push_to_talk(true).await.expect("push-to-talk outside a call");
    let local = client.state().local;
    assert!(local.muted && local.deafened && local.ptt_held, "the local state remembers: {local:?}");
    let volume = client.set_volume("bob", 50).await.expect_err("a volume needs a call");
    assert_eq!(volume.code, ErrorCode::NotInCall, "volume outside a call: {volume}");
    let too_loud = client.set_volume("bob", 250).await.expect_err("250 % is refused");
    assert_eq!(too_loud.code, ErrorCode::InvalidInput, "250 % is invalid_input: {too_loud}");
    let moderation = client.moderate("bob", ModerationAction::Kick).await.expect_err("kicking needs a call");
    assert_eq!(moderation.code, ErrorCode::Unsupported, "nothing is offered outside a call: {moderation}");
    client.leave_room().await.expect("leaving with no call is fine");
}

#[tokio::test]
async fn joining_through_an_unknown_profile_fails_with_not_found_in_the_state() {
    let Fixture { client, .. } = fixture(440.0);
    let error = client.join_room("nowhere", "lobby", false).await.expect_err("no such profile");
    assert_eq!(error.code, ErrorCode::NotFound, "an unknown profile is not_found: {error}");
    assert!(
        matches!(phase(&client.state()), Some(CallPhase::Failed { code: ErrorCode::NotFound, .. })),
        "the failure stays in the state for the UI: {:?}",
        client.state()
    );
    client.leave_room().await.expect("clearing the failed call");
    assert!(client.state().call.is_none(), "leaving clears a failed call");
}

fn start_server() -> DevServer {
    DevServer::start(&DevServerConfig::default()).unwrap_or_else(|error| panic!("the LiveKit dev server: {error}"))
}

/// Two clients, real server: each sees the other, volumes persist, muting is seen by the other
/// side, and a moderator's kick ends the other's call with `kicked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_meet_set_volumes_mute_and_kick_through_a_real_server() {
    let server = start_server();
    let alice = fixture(440.0);
    let bob = fixture(660.0);
    for (fixture, identity) in [(&alice, "alice"), (&bob, "bob")] {
        fixture
            .client
            .add_profile(livekit_profile("local", &server.url(), server.api_key(), server.api_secret(), identity))
            .await
            .expect("adding the local profile");
    }
    let mut alice_states = alice.client.subscribe();
    let mut bob_states = bob.client.subscribe();

    alice.client.join_room("local", "lobby", false).await.expect("alice joins");
    // The session reports the connection a moment before the room's roster (with our identity).
    let state = wait_for(&mut alice_states, "alice connected and joined", |state| {
        phase(state) == Some(&CallPhase::Connected) && state.call.as_ref().is_some_and(|call| call.identity.is_some())
    })
    .await;
    let call = state.call.as_ref().expect("alice's call");
    assert_eq!(call.identity.as_deref(), Some("alice"), "alice's identity comes from her profile");
    let offered: Vec<ModerationAction> = call.moderation.iter().map(|option| option.action).collect();
    assert!(offered.contains(&ModerationAction::Kick), "a self-hosted key may kick: {offered:?}");
    assert!(
        call.moderation.iter().any(|option| option.action == ModerationAction::Kick && option.destructive),
        "kicking must be confirmed"
    );

    bob.client.join_room("local", "lobby", false).await.expect("bob joins");
    wait_for(&mut alice_states, "alice sees bob", |state| {
        state.call.as_ref().is_some_and(|call| call.participants.iter().any(|p| p.identity == "bob"))
    })
    .await;
    wait_for(&mut alice_states, "bob's voice reaches alice as speaking", |state| {
        state.call.as_ref().is_some_and(|call| call.participants.iter().any(|p| p.identity == "bob" && p.speaking))
    })
    .await;

    alice.client.set_volume("bob", 50).await.expect("alice turns bob down");
    wait_for(&mut alice_states, "bob at 50 %", |state| {
        state.call.as_ref().is_some_and(|call| call.participants.iter().any(|p| p.identity == "bob" && p.volume == 50))
    })
    .await;
    let saved = std::fs::read_to_string(alice.dir.path().join("settings.toml")).expect("alice's settings file");
    assert!(
        saved.contains("[volumes.local]") && saved.contains("bob = 50"),
        "the volume is saved per profile: {saved}"
    );

    bob.client.set_muted(true).await.expect("bob mutes");
    wait_for(&mut alice_states, "alice sees bob muted", |state| {
        state.call.as_ref().is_some_and(|call| call.participants.iter().any(|p| p.identity == "bob" && p.muted))
    })
    .await;
    assert!(bob.client.state().local.muted, "bob's own state shows him muted");

    let mut bob_notices = bob.client.notices();
    alice.client.moderate("bob", ModerationAction::Kick).await.expect("alice kicks bob");
    let state = wait_for(&mut bob_states, "bob's call fails as kicked", |state| {
        matches!(phase(state), Some(CallPhase::Failed { code: ErrorCode::Kicked, .. }))
    })
    .await;
    assert!(state.call.is_some(), "the failed call stays for the dialog");
    let notice = tokio::time::timeout(Duration::from_secs(5), bob_notices.recv()).await;
    assert!(
        matches!(notice, Ok(Ok(Notice::CallEnded { code: ErrorCode::Kicked, .. }))),
        "bob is told once that he was kicked: {notice:?}"
    );
    wait_for(&mut alice_states, "bob gone from alice's list", |state| {
        state.call.as_ref().is_some_and(|call| call.participants.is_empty())
    })
    .await;

    alice.client.leave_room().await.expect("alice leaves");
    assert!(alice.client.state().call.is_none(), "leaving clears the call");
    bob.client.leave_room().await.expect("bob clears his failed call");
    let rooms = alice.client.list_rooms("local").await.expect("listing rooms on the local server");
    assert!(rooms.iter().all(|room| room.participants.unwrap_or(0) == 0), "nobody is left in a room: {rooms:?}");
}

/// A rejoin applies the saved volume to a participant as they arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_volume_applies_when_the_participant_arrives() {
    let server = start_server();
    let alice = fixture(440.0);
    let bob = fixture(660.0);
    for (fixture, identity) in [(&alice, "alice"), (&bob, "bob")] {
        fixture
            .client
            .add_profile(livekit_profile("local", &server.url(), server.api_key(), server.api_secret(), identity))
            .await
            .expect("adding the local profile");
    }
    let mut file = alice.client.lock_settings().clone();
    file.set_volume("local", "bob", 30);
    *alice.client.lock_settings() = file;
    let mut alice_states = alice.client.subscribe();
    alice.client.join_room("local", "room-2", false).await.expect("alice joins");
    bob.client.join_room("local", "room-2", false).await.expect("bob joins");
    wait_for(&mut alice_states, "bob arrives at his saved 30 %", |state| {
        state.call.as_ref().is_some_and(|call| call.participants.iter().any(|p| p.identity == "bob" && p.volume == 30))
    })
    .await;
    alice.client.shutdown().await;
    bob.client.shutdown().await;
}

/// A speaker that keeps what it is given.
struct Recorder(Arc<std::sync::Mutex<Vec<i16>>>);

impl FrameSink for Recorder {
    fn write(&mut self, frame: &[i16]) -> Result<(), parley_audio::wav::WavError> {
        self.0.lock().expect("recording").extend_from_slice(frame);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), parley_audio::wav::WavError> {
        Ok(())
    }
}

/// A 440 Hz tone at −20 dBFS as the microphone, a [`Recorder`] as the speaker.
struct LoopbackEnds(Arc<std::sync::Mutex<Vec<i16>>>);

impl AudioEnds for LoopbackEnds {
    fn open(&self, _settings: &AppSettings) -> Result<OpenedAudio, ClientError> {
        Ok(OpenedAudio {
            input: Some(Box::new(Tone::new(440.0, -20.0))),
            output: Some(Box::new(Recorder(Arc::clone(&self.0)))),
            cues: None,
            processing: None,
            device_info: Vec::new(),
        })
    }
}

#[tokio::test]
async fn the_mic_test_plays_the_microphone_back_and_drives_the_meter_until_stopped() {
    let dir = tempfile::tempdir().expect("a temporary config directory");
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = Client::new(ClientConfig {
        config_dir: dir.path().to_path_buf(),
        secrets: Arc::new(MemoryStore::new()),
        audio: Arc::new(LoopbackEnds(Arc::clone(&heard))),
        library: LibrarySearch::default(),
    });
    let mut states = client.subscribe();
    client.start_mic_test().await.expect("the test starts");
    let metered =
        wait_for(&mut states, "the meter shows the microphone", |state| state.local.input_level_dbfs > -30.0).await;
    let level = metered.local.input_level_dbfs;
    assert!((level + 20.0).abs() < 1.0, "the meter reads the −20 dBFS tone's peak, got {level:.1}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.stop_mic_test().await;
    assert_eq!(client.state().local.input_level_dbfs, state::SILENCE_DBFS, "the meter rests once stopped");
    let played = heard.lock().expect("recording").clone();
    assert!(played.len() >= 4800, "at least 100 ms played back, got {} samples", played.len());
    let tone = parley_audio::analysis::tone_level_dbfs(&played, 48_000, 440.0);
    assert!((tone + 20.0).abs() < 1.0, "the speaker plays the microphone's 440 Hz at −20 dBFS, got {tone:.1}");
    let after = heard.lock().expect("recording").len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(heard.lock().expect("recording").len(), after, "nothing plays once stopped");
}
