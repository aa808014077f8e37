//! Saved profiles end to end: `parley profile add` (secret through stdin into a private real
//! keyring), `parley rooms`, `parley join --profile` hearing a tone peer through a real LiveKit
//! server, `parley mod` muting and kicking a real peer, the token-endpoint backend through its
//! contract server, and the failures a user meets (wrong secret, no keyring).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{band_energy_fraction, tone_level_dbfs};
use parley_devserver::DevServer;
use parley_devserver::keyring::TestKeyring;
use serde_json::Value;

use crate::support::{Peer, audio_lock, join, parley, scratch, server};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);
/// Exit codes from the README's table.
const EXIT_UNAUTHORIZED: i32 = 4;
const EXIT_DISCONNECTED: i32 = 6;
const EXIT_KEYRING: i32 = 22;

/// A private keyring and config directory that `parley` processes use instead of the user's.
pub(crate) struct Home {
    keyring: TestKeyring,
    config: tempfile::TempDir,
}

impl Home {
    pub(crate) fn new() -> Home {
        let keyring = TestKeyring::start().unwrap_or_else(|error| panic!("test keyring: {error}"));
        Home { keyring, config: scratch() }
    }

    pub(crate) fn command(&self) -> Command {
        let mut command = parley();
        command.env("PARLEY_CONFIG_DIR", self.config.path()).envs(self.keyring.env());
        command
    }

    fn profile_file(&self) -> PathBuf {
        self.config.path().join("profiles.toml")
    }

    /// `parley profile add <args>` with `stdin` as the secret input.
    pub(crate) fn add(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(self.command().args(["profile", "add"]).args(args).arg("--secret-stdin"), stdin)
    }

    /// Adds a `livekit` profile for `server` joining as `identity`, with `secret`.
    pub(crate) fn add_livekit(&self, name: &str, server: &DevServer, identity: &str, secret: &str) {
        let output = self.add(
            &[
                name,
                "--backend",
                "livekit",
                "--url",
                &server.url(),
                "--api-key",
                server.api_key(),
                "--identity",
                identity,
            ],
            &format!("{secret}\n"),
        );
        assert_success(&output, "profile add");
    }
}

fn run_with_stdin(command: &mut Command, stdin: &str) -> Output {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn parley");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("parley output")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

pub(crate) fn assert_success(output: &Output, what: &str) {
    assert!(output.status.success(), "{what} should succeed, got {}; stderr: {}", output.status, text(&output.stderr));
}

fn assert_no_secret(output: &Output, secret: &str, what: &str) {
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!all.contains(secret), "{what}: the secret must not appear in any output:\n{all}");
}

/// Runs `parley join --profile … --record <file> --json` to its end and returns its JSON events,
/// its recording and its output.
fn join_profile(home: &Home, profile: &str, room: &str, dir: &Path, seconds: f64) -> (Vec<Value>, Vec<i16>, Output) {
    let recording = dir.join(format!("{profile}.wav"));
    let output = home
        .command()
        .args(["join", "--json", "--control-socket", "none", "--profile", profile, "--room", room])
        .arg("--record")
        .arg(&recording)
        .args(["--duration", &seconds.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("parley join --profile");
    let events = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("stdout line is not JSON: {line}")))
        .collect();
    let samples = if output.status.success() {
        parley_audio::wav::read_mono_48k(&recording).unwrap_or_else(|error| panic!("recording: {error}"))
    } else {
        Vec::new()
    };
    (events, samples, output)
}

/// Asserts that the end of `samples` (after 2 s of settling) carries `frequency` at the CLI's
/// default tone level, −12 ± 6 dBFS, as most of its energy.
fn assert_hears(samples: &[i16], frequency: f32, what: &str) {
    let settle = 2 * SAMPLE_RATE as usize;
    let end = samples.len().saturating_sub(SAMPLE_RATE as usize * 3 / 10);
    assert!(end > settle + SAMPLE_RATE as usize, "{what}: need > 3 s of recording, got {} samples", samples.len());
    let heard = &samples[settle..end];
    let level = tone_level_dbfs(heard, SAMPLE_RATE, frequency);
    assert!((level + 12.0).abs() <= 6.0, "{what}: {frequency} Hz should arrive at −12 ± 6 dBFS, got {level:.1}");
    let share = band_energy_fraction(heard, SAMPLE_RATE, frequency, 25.0);
    assert!(share >= 0.9, "{what}: {frequency} Hz should carry ≥ 90 % of the energy, got {share:.3}");
}

#[test]
fn a_livekit_profile_keeps_its_secret_in_the_keyring_lists_rooms_and_hears_a_peer() {
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    home.add_livekit("home", &server, "listener", server.api_secret());

    let file = std::fs::read_to_string(home.profile_file()).expect("the profile file");
    assert!(!file.contains(server.api_secret()), "the profile file must not contain the API secret:\n{file}");
    assert!(file.contains(server.api_key()) && file.contains("backend = \"livekit\""), "settings saved:\n{file}");
    let shown = home.command().args(["profile", "show", "home", "--json"]).output().expect("show");
    assert_success(&shown, "profile show");
    assert_no_secret(&shown, server.api_secret(), "profile show");
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["secrets_stored"], serde_json::json!(["api-secret"]), "the keyring holds the secret: {shown}");

    let speaker = join(&server, "kitchen", "speaker", dir.path(), &["--tone", "440"], 9.0);
    std::thread::sleep(Duration::from_millis(1500));
    let rooms = home.command().args(["rooms", "--profile", "home", "--json"]).output().expect("rooms");
    assert_success(&rooms, "rooms");
    let rooms: Value = serde_json::from_slice(&rooms.stdout).expect("JSON rooms");
    let kitchen = rooms.as_array().and_then(|all| all.iter().find(|room| room["id"] == "kitchen"));
    // The server updates its participant counts lazily; that the room is listed with a count is
    // what `rooms` promises.
    let kitchen = kitchen.unwrap_or_else(|| panic!("the speaker's room is listed: {rooms}"));
    assert!(kitchen["participants"].is_u64(), "with a participant count: {kitchen}");

    let (events, samples, output) = join_profile(&home, "home", "kitchen", dir.path(), 5.0);
    assert_success(&output, "join --profile");
    assert_no_secret(&output, server.api_secret(), "join --profile");
    let joined = events.iter().find(|event| event["event"] == "joined").expect("a joined event");
    assert_eq!((joined["room"].as_str(), joined["identity"].as_str()), (Some("kitchen"), Some("listener")));
    assert_hears(&samples, 440.0, "the profile's listener hears the speaker");
    speaker.finish(TIMEOUT).assert_clean();

    let removed = home.command().args(["profile", "remove", "home"]).output().expect("remove");
    assert_success(&removed, "profile remove");
    let show = home.command().args(["profile", "show", "home"]).output().expect("show");
    assert_eq!(show.status.code(), Some(12), "a removed profile is not found: {}", text(&show.stderr));
}

#[test]
fn parley_mod_mutes_then_kicks_a_real_peer() {
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    home.add_livekit("admin", &server, "moderator", server.api_secret());
    let bob = join(&server, "hall", "bob", dir.path(), &["--tone", "330"], 30.0);
    std::thread::sleep(Duration::from_millis(3000));

    let muted =
        home.command().args(["mod", "--profile", "admin", "--room", "hall", "mute", "bob"]).output().expect("mod");
    assert_success(&muted, "mod mute");
    assert_no_secret(&muted, server.api_secret(), "mod mute");
    std::thread::sleep(Duration::from_millis(1500));
    let banned =
        home.command().args(["mod", "--profile", "admin", "--room", "hall", "ban", "bob"]).output().expect("mod");
    assert_eq!(banned.status.code(), Some(21), "ban is unsupported: {}", text(&banned.stderr));
    let message = text(&banned.stderr);
    assert!(message.contains("cannot ban") && message.contains("kick"), "lists what the backend can do: {message}");
    let kicked =
        home.command().args(["mod", "--profile", "admin", "--room", "hall", "kick", "bob"]).output().expect("mod");
    assert_success(&kicked, "mod kick");

    let bob = bob.finish(TIMEOUT);
    let own_mute = bob.events_named("track_muted").into_iter().find(|event| event["identity"] == "bob");
    assert!(own_mute.is_some(), "bob reports his track muted by the moderator: {:?}", bob.events);
    assert_eq!(bob.status.code(), Some(EXIT_DISCONNECTED), "bob is disconnected; stderr: {}", bob.stderr);
    assert!(bob.stderr.contains("disconnected from the room"), "{}", bob.stderr);
    let gone =
        home.command().args(["mod", "--profile", "admin", "--room", "hall", "kick", "bob"]).output().expect("mod");
    assert_eq!(gone.status.code(), Some(12), "bob is no longer there: {}", text(&gone.stderr));
}

#[test]
fn a_token_endpoint_profile_joins_through_its_server_and_hears_a_peer() {
    use parley_contract_servers::{LivekitKeys, token_endpoint};
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let keys =
        LivekitKeys { url: server.url(), api_key: server.api_key().into(), api_secret: server.api_secret().into() };
    let header = "Bearer app-token-for-the-endpoint";
    let config = token_endpoint::Config {
        header: Some(("authorization".into(), header.into())),
        ..token_endpoint::Config::default()
    };
    let (endpoint, handle) = runtime.block_on(token_endpoint::start(keys, config)).expect("token endpoint");
    let template = format!("{}/api/livekit?room={{room}}&username={{identity}}", endpoint.url());
    let added = home.add(
        &[
            "app",
            "--backend",
            "token-endpoint",
            "--url",
            &template,
            "--header-name",
            "Authorization",
            "--identity",
            "ear",
        ],
        &format!("header-value={header}\n"),
    );
    assert_success(&added, "profile add token-endpoint");
    let file = std::fs::read_to_string(home.profile_file()).expect("file");
    assert!(!file.contains("app-token-for-the-endpoint"), "the header value stays out of the file:\n{file}");

    let speaker = join(&server, "studio", "speaker", dir.path(), &["--tone", "660"], 9.0);
    std::thread::sleep(Duration::from_millis(1000));
    let (events, samples, output) = join_profile(&home, "app", "studio", dir.path(), 5.0);
    assert_success(&output, "join through the token endpoint");
    assert_no_secret(&output, "app-token-for-the-endpoint", "join --profile app");
    assert!(events.iter().any(|event| event["event"] == "joined" && event["identity"] == "ear"), "{events:?}");
    assert_hears(&samples, 660.0, "the token-endpoint listener hears the speaker");
    speaker.finish(TIMEOUT).assert_clean();
    let requests = handle.requests();
    assert_eq!(requests.len(), 1, "one token request");
    assert_eq!(requests[0].headers.get("authorization").map(String::as_str), Some(header));
    assert_eq!(requests[0].query.as_deref(), Some("room=studio&username=ear"));
}

#[test]
fn a_wrong_secret_fails_with_the_unauthorized_code_and_never_shows_it() {
    let server = server();
    let home = Home::new();
    let wrong = "a-wrong-api-secret-that-is-long-enough";
    home.add_livekit("bad", &server, "someone", wrong);
    let rooms = home.command().args(["rooms", "--profile", "bad"]).output().expect("rooms");
    assert_eq!(rooms.status.code(), Some(EXIT_UNAUTHORIZED), "stderr: {}", text(&rooms.stderr));
    let message = text(&rooms.stderr);
    assert!(message.starts_with("parley: error: listing rooms:"), "{message}");
    assert!(message.contains("credentials"), "says what is wrong: {message}");
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert_no_secret(&rooms, wrong, "rooms with a wrong secret");

    let joined = home
        .command()
        .args(["join", "--profile", "bad", "--room", "x", "--duration", "2", "--control-socket", "none"])
        .stdin(Stdio::null())
        .output()
        .expect("join");
    assert_eq!(joined.status.code(), Some(EXIT_UNAUTHORIZED), "the server refuses the token: {}", text(&joined.stderr));
    assert_no_secret(&joined, wrong, "join with a wrong secret");
}

#[test]
fn without_a_keyring_saving_a_profile_says_what_to_do() {
    let server = server();
    let config = scratch();
    let secret = "secret-that-has-nowhere-to-go-0123456789";
    let mut command = parley();
    command
        .env("PARLEY_CONFIG_DIR", config.path())
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}", config.path().join("no-bus").display()));
    let output = run_with_stdin(
        command.args(["profile", "add", "home", "--backend", "livekit", "--url", &server.url()]).args([
            "--api-key",
            server.api_key(),
            "--identity",
            "me",
            "--secret-stdin",
        ]),
        secret,
    );
    assert_eq!(output.status.code(), Some(EXIT_KEYRING), "stderr: {}", text(&output.stderr));
    let message = text(&output.stderr);
    assert!(message.contains("keyring") && message.contains("Secret Service"), "says what to start: {message}");
    assert_no_secret(&output, secret, "profile add without a keyring");
    assert!(!config.path().join("profiles.toml").exists(), "no profile is saved without its secret");
}

/// A multi-thread runtime the in-process contract servers run on while the test thread waits for
/// `parley` processes.
pub(crate) fn contract_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

pub(crate) fn keys_of(server: &DevServer) -> parley_contract_servers::LivekitKeys {
    parley_contract_servers::LivekitKeys {
        url: server.url(),
        api_key: server.api_key().into(),
        api_secret: server.api_secret().into(),
    }
}

#[test]
fn a_distokoloshe_profile_joins_with_its_e2ee_key_and_hears_a_peer() {
    use parley_contract_servers::distokoloshe;
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    let runtime = contract_runtime();
    // No nginx here to proxy the real `/livekit/`: the join answer points at LiveKit directly.
    let config = distokoloshe::Config { ws_url: server.url(), ..distokoloshe::Config::default() };
    let (api, handle) = runtime.block_on(distokoloshe::start(keys_of(&server), config)).expect("disTokoloshe");
    handle.add_user("ear", "Ear-password-123", "Ear");
    let lobby = handle.add_room("lobby", "voice", None);

    // A wrong password is refused when the profile is saved, not at the first join.
    let refused = home.add(
        &["dk", "--backend", "distokoloshe", "--url", &api.url(), "--username", "ear"],
        "password=not-her-password\n",
    );
    assert_eq!(refused.status.code(), Some(4), "refused credentials: {}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("Invalid credentials"), "{}", text(&refused.stderr));
    assert_no_secret(&refused, "not-her-password", "profile add with a wrong password");
    let listed = home.command().args(["profile", "list"]).output().expect("profile list");
    assert!(!text(&listed.stdout).contains("dk"), "nothing was saved: {}", text(&listed.stdout));

    let added = home.add(
        &["dk", "--backend", "distokoloshe", "--url", &api.url(), "--username", "ear"],
        "password=Ear-password-123\n",
    );
    assert_success(&added, "profile add distokoloshe");
    assert!(text(&added.stdout).contains("accepted the credentials"), "{}", text(&added.stdout));
    let shown = home.command().args(["profile", "show", "dk"]).output().expect("profile show");
    assert!(text(&shown.stdout).contains("app-jwt"), "the sign-in token is kept: {}", text(&shown.stdout));
    let logins = handle.logins();

    // Everyone in a disTokoloshe room encrypts with the key the server derives for it.
    let key = handle.e2ee_key("lobby");
    let speaker = join(&server, "lobby", "speaker", dir.path(), &["--tone", "550", "--e2ee-key", &key], 11.0);
    std::thread::sleep(Duration::from_millis(1000));
    let recording = dir.path().join("dk.wav");
    let listener = spawn_profile_join(&home, "dk", "lobby", &recording, 7.0);
    // The server's own member list (what its web client shows) has the Parley user in the call.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handle.members(lobby) != ["ear"] {
        assert!(std::time::Instant::now() < deadline, "the server should list ear in the lobby during the call");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (output, samples) = finish_profile_join(listener, &recording);
    assert_no_secret(&output, "Ear-password-123", "join --profile dk");
    let events: Vec<Value> = text(&output.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(events.iter().any(|event| event["event"] == "joined" && event["identity"] == "ear"), "{events:?}");
    assert_hears(&samples, 550.0, "the disTokoloshe listener decrypts and hears the speaker");
    speaker.finish(TIMEOUT).assert_clean();
    assert!(handle.leaves("ear") >= 1, "leaving told the server");
    assert_eq!(handle.logins(), logins, "the join reused the kept sign-in instead of signing in again");

    // A new account straight from the CLI.
    let created = home.add(
        &["fresh", "--backend", "distokoloshe", "--url", &api.url(), "--username", "newcomer", "--register"],
        "password=Newcomer-pass-42\n",
    );
    assert_success(&created, "profile add --register");
    assert!(text(&created.stdout).contains("created the account"), "{}", text(&created.stdout));
    let rooms = home.command().args(["rooms", "--profile", "fresh"]).output().expect("rooms");
    assert_success(&rooms, "rooms with the new account");
    assert!(text(&rooms.stdout).contains("lobby"), "{}", text(&rooms.stdout));
}

#[test]
fn an_audioroom_profile_hears_a_peer_and_ends_with_the_removed_code_when_kicked() {
    use parley_contract_servers::audioroom::{self, NewRoom};
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    let runtime = contract_runtime();
    let (forum, handle) = runtime.block_on(audioroom::start(keys_of(&server))).expect("forum");
    let ear = handle.add_user("ear", "Ear", false);
    let host = handle.add_user("host", "Host", true);
    let room = handle.add_room(NewRoom::open("porch", "The Porch"));
    for (name, user) in [("ear", &ear), ("host", &host)] {
        let added = home.add(
            &[
                name,
                "--backend",
                "audioroom",
                "--url",
                &forum.url(),
                "--client-id",
                &format!("parley-{name}"),
                "--heartbeat-seconds",
                "5",
            ],
            &format!("{}\n", user.api_key),
        );
        assert_success(&added, "profile add audioroom");
    }

    let speaker = join(&server, "porch", "speaker", dir.path(), &["--tone", "770"], 14.0);
    std::thread::sleep(Duration::from_millis(1000));
    let recording = dir.path().join("ear.wav");
    let mut listener = home
        .command()
        .args(["join", "--json", "--control-socket", "none", "--profile", "ear", "--room", &room.to_string()])
        .arg("--record")
        .arg(&recording)
        .args(["--duration", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parley join --profile ear");
    std::thread::sleep(Duration::from_millis(7000));
    assert!(handle.heartbeats(room, ear.id) >= 1, "the membership loop sends heartbeats");
    let kicked = home
        .command()
        .args(["mod", "--profile", "host", "--room", &room.to_string(), "kick", "ear"])
        .output()
        .expect("mod");
    assert_success(&kicked, "mod kick through audioroom");
    assert!(handle.is_kicked(room, ear.id), "the forum recorded the kick");
    let status = crate::support::wait(&mut listener, TIMEOUT);
    let output = listener.wait_with_output().expect("output");
    let stderr = text(&output.stderr);
    assert_eq!(status.code(), Some(10), "a kick ends the call with the removed code; stderr: {stderr}");
    assert!(stderr.contains("removed from the room"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains(&ear.api_key), "the user API key never shows");
    let samples = parley_audio::wav::read_mono_48k(&recording).expect("recording");
    assert_hears(&samples, 770.0, "the audioroom listener heard the speaker before the kick");
    speaker.finish(TIMEOUT).assert_clean();
}

/// Starts `parley join --profile <profile> --room <room> --record …` for `seconds` without
/// waiting; [`finish_profile_join`] collects it.
fn spawn_profile_join(home: &Home, profile: &str, room: &str, recording: &Path, seconds: f64) -> std::process::Child {
    home.command()
        .args(["join", "--json", "--control-socket", "none", "--profile", profile, "--room", room])
        .arg("--record")
        .arg(recording)
        .args(["--duration", &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parley join --profile")
}

fn finish_profile_join(mut child: std::process::Child, recording: &Path) -> (Output, Vec<i16>) {
    crate::support::wait(&mut child, TIMEOUT);
    let output = child.wait_with_output().expect("output");
    assert_success(&output, "join --profile");
    (output, parley_audio::wav::read_mono_48k(recording).expect("recording"))
}

/// Waits until `issued` reports a token, and returns its LiveKit room.
fn issued_room(issued: impl Fn() -> Option<String>) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(room) = issued() {
            return room;
        }
        assert!(std::time::Instant::now() < deadline, "the backend issued no token within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_lk_jwt_profile_joins_the_hashed_room_and_hears_a_peer() {
    use parley_contract_servers::lk_jwt;
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    let runtime = contract_runtime();
    let matrix = runtime.block_on(lk_jwt::start(keys_of(&server), "example.org")).expect("homeserver and service");
    matrix.handle.add_user("@ear:example.org", "matrix-access-token-of-ear");
    let added = home.add(
        &[
            "mx",
            "--backend",
            "lk-jwt",
            "--url",
            &matrix.homeserver.url(),
            "--user-id",
            "@ear:example.org",
            "--device-id",
            "PARLEYTEST",
        ],
        "matrix-access-token-of-ear\n",
    );
    assert_success(&added, "profile add lk-jwt");

    let recording = dir.path().join("mx.wav");
    let listener = spawn_profile_join(&home, "mx", "!call:example.org", &recording, 9.0);
    // MatrixRTC rooms are hashes of the Matrix room: join the speaker where the service sent us.
    let room = issued_room(|| matrix.handle.issued().first().map(|issued| issued.room.clone()));
    let speaker = join(&server, &room, "speaker", dir.path(), &["--tone", "495"], 8.0);
    let (output, samples) = finish_profile_join(listener, &recording);
    assert_no_secret(&output, "matrix-access-token-of-ear", "join --profile mx");
    assert_hears(&samples, 495.0, "the Matrix listener hears the speaker");
    speaker.finish(TIMEOUT).assert_clean();
}

#[test]
fn a_nip29_profile_listens_in_a_public_group_and_hears_a_peer() {
    use parley_contract_servers::nip29;
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    let runtime = contract_runtime();
    let (relay, handle) = runtime.block_on(nip29::start(keys_of(&server))).expect("relay");
    handle.add_group("campfire", nip29::Group { livekit: true, ..nip29::Group::default() });
    let nostr_key = "7f7ff03d123792d6ac594bfa67bf6d0c0ab55b6b1fdb6249303fe861f1ccba9a";
    let added = home.add(&["nostr", "--backend", "nip29", "--url", &relay.url()], &format!("{nostr_key}\n"));
    assert_success(&added, "profile add nip29");
    let file = std::fs::read_to_string(home.profile_file()).expect("file");
    assert!(!file.contains(nostr_key), "the Nostr key stays out of the file:\n{file}");

    let speaker = join(&server, "campfire", "speaker", dir.path(), &["--tone", "605"], 9.0);
    std::thread::sleep(Duration::from_millis(1000));
    let (events, samples, output) = join_profile(&home, "nostr", "campfire", dir.path(), 5.0);
    assert_success(&output, "join through the relay");
    assert_no_secret(&output, nostr_key, "join --profile nostr");
    assert!(events.iter().any(|event| event["event"] == "joined"), "{events:?}");
    // Not a member of the public group: the relay hands out a listen-only token, and the user
    // is told why rather than left to wonder why the microphone stays off.
    assert!(
        events.iter().any(|event| event["event"] == "warning"
            && event["message"].as_str().is_some_and(
                |message| message.contains("not a member of group campfire") && message.contains("listener")
            )),
        "a warning event should say why this join only listens: {events:?}"
    );
    assert_hears(&samples, 605.0, "the Nostr listener hears the speaker");
    speaker.finish(TIMEOUT).assert_clean();
    assert_eq!(handle.issued().len(), 1, "one token was issued");
    assert!(handle.issued()[0].read_only, "the relay issued a listen-only token");
}

#[test]
fn a_nip29_profile_says_why_a_private_group_or_a_relay_without_voice_server_refuses() {
    use parley_contract_servers::nip29;
    let server = server();
    let home = Home::new();
    let runtime = contract_runtime();
    let (relay, handle) = runtime.block_on(nip29::start(keys_of(&server))).expect("relay");
    handle.add_group("secret", nip29::Group { private: true, livekit: true, ..nip29::Group::default() });
    // The same relay setup, but its LiveKit is gone: nothing listens where it points.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").and_then(|socket| socket.local_addr()).expect("port");
    let dead_keys = parley_contract_servers::LivekitKeys { url: format!("ws://{dead}"), ..keys_of(&server) };
    let (down, down_handle) = runtime.block_on(nip29::start(dead_keys)).expect("relay without LiveKit");
    down_handle.add_group("campfire", nip29::Group { livekit: true, ..nip29::Group::default() });
    let nostr_key = "7f7ff03d123792d6ac594bfa67bf6d0c0ab55b6b1fdb6249303fe861f1ccba9a";
    for (name, url) in [("private", relay.url()), ("down", down.url())] {
        let added = home.add(&[name, "--backend", "nip29", "--url", &url], &format!("{nostr_key}\n"));
        assert_success(&added, "profile add nip29");
    }
    let join = |profile: &str, room: &str| {
        home.command()
            .args(["join", "--profile", profile, "--room", room, "--duration", "2", "--control-socket", "none"])
            .stdin(Stdio::null())
            .output()
            .expect("join")
    };

    let refused = join("private", "secret");
    let message = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(9), "a private group refuses a non-member (forbidden): {message}");
    assert!(
        message.contains("not a member of group secret") && message.contains("not allowed to access livekit"),
        "say why, in the relay's words too: {message}"
    );

    let unreachable = join("down", "campfire");
    let message = text(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(18), "the relay answers 500 (server error): {message}");
    assert!(
        message.contains("voice server") && message.contains("unreachable"),
        "say that the relay's voice server is down, not the relay: {message}"
    );
    assert_no_secret(&unreachable, nostr_key, "join through a relay whose LiveKit is down");
}

#[test]
fn a_meet_profile_joins_by_slug_and_hears_a_peer() {
    use parley_contract_servers::meet::{self, AccessLevel};
    let _serial = audio_lock();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    let runtime = contract_runtime();
    let (site, handle) = runtime.block_on(meet::start(keys_of(&server))).expect("Meet");
    let session = handle.add_user("ear-sub");
    // Meet names the LiveKit room after the room's id, not its slug.
    let room_id = handle.add_room("standup", "Standup", AccessLevel::Public);
    let added = home.add(
        &["meet", "--backend", "meet", "--url", &site.url(), "--display-name", "Ear"],
        &format!("session-cookie={session}\n"),
    );
    assert_success(&added, "profile add meet");
    let file = std::fs::read_to_string(home.profile_file()).expect("file");
    assert!(!file.contains(&session), "the session cookie stays out of the file:\n{file}");

    let speaker = join(&server, &room_id, "speaker", dir.path(), &["--tone", "715"], 9.0);
    std::thread::sleep(Duration::from_millis(1000));
    let (events, samples, output) = join_profile(&home, "meet", "standup", dir.path(), 5.0);
    assert_success(&output, "join through Meet");
    assert_no_secret(&output, &session, "join --profile meet");
    assert!(events.iter().any(|event| event["event"] == "joined" && event["room"] == room_id.as_str()), "{events:?}");
    assert_hears(&samples, 715.0, "the Meet listener hears the speaker");
    speaker.finish(TIMEOUT).assert_clean();
}

/// "The browser": one plain HTTP/1.0 GET; returns the status code and the `Location` header.
#[test]
fn an_audioroom_user_api_key_is_obtained_through_the_browser_and_stored_in_the_keyring() {
    use parley_contract_servers::audioroom::{self, NewRoom};
    use std::io::BufRead as _;
    let server = server();
    let home = Home::new();
    let runtime = contract_runtime();
    let (forum, handle) = runtime.block_on(audioroom::start(keys_of(&server))).expect("forum");
    let user = handle.add_user("alice", "Alice", false);
    handle.add_room(NewRoom::open("porch", "The Porch"));
    handle.set_approving_user(Some(user.id));
    handle.allow_auth_redirect("http://127.0.0.1:*");
    let added = home.add(&["forum", "--backend", "audioroom", "--url", &forum.url()], "");
    assert_success(&added, "profile add audioroom without a key");
    let before = home.command().args(["rooms", "--profile", "forum"]).output().expect("rooms");
    assert!(!before.status.success(), "without a key the forum refuses");

    let mut authorize = home
        .command()
        .args(["profile", "authorize", "forum", "--no-browser", "--timeout-secs", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parley profile authorize");
    let mut lines = std::io::BufReader::new(authorize.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first line").expect("text");
    let url =
        first.strip_prefix("approve Parley on the forum: ").unwrap_or_else(|| panic!("the URL is printed: {first}"));
    assert!(url.contains("/user-api-key/new?") && url.contains("scopes=write"), "{url}");
    let (status, location) = parley_devserver::browser::get(url);
    assert_eq!(status, 302, "the forum approves and redirects");
    let location = location.expect("a redirect");
    assert!(location.starts_with("http://127.0.0.1:") && location.contains("payload="), "{location}");
    let (landed, _) = parley_devserver::browser::get(&location);
    assert_eq!(landed, 200, "parley's loopback listener answers the browser");
    let status = crate::support::wait(&mut authorize, TIMEOUT);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "authorize succeeds: {rest:?}");
    assert!(rest.iter().any(|line| line.contains("stored a user API key")), "{rest:?}");

    let issued = handle.issued_keys();
    assert_eq!(issued.len(), 1, "the forum issued one key");
    let file = std::fs::read_to_string(home.profile_file()).expect("profile file");
    assert!(!file.contains(&issued[0].key), "the key is not in the profile file");
    let rooms = home.command().args(["rooms", "--profile", "forum"]).output().expect("rooms");
    assert_success(&rooms, "rooms with the obtained key");
    assert!(text(&rooms.stdout).contains("The Porch"), "{}", text(&rooms.stdout));
    assert_no_secret(&rooms, &issued[0].key, "rooms");
}

#[test]
fn an_invite_link_makes_a_member_and_switch_leaves_the_other_room_in_one_step() {
    use parley_contract_servers::audioroom::{self, Endpoint, NewRoom};
    let server = server();
    let home = Home::new();
    let runtime = contract_runtime();
    let (forum, handle) = runtime.block_on(audioroom::start(keys_of(&server))).expect("forum");
    let user = handle.add_user("alice", "Alice", false);
    let porch = handle.add_room(NewRoom::open("porch", "The Porch"));
    // The plugin honours an invite only for a room the user may already join (a private room's
    // link lets no outsider in), and then makes them a member.
    let den = handle.add_room(NewRoom::open("den", "The Den"));
    let added = home.add(&["alice", "--backend", "audioroom", "--url", &forum.url()], &format!("{}\n", user.api_key));
    assert_success(&added, "profile add audioroom");
    let invite = format!("{}/audioroom/invite/{}", forum.url(), handle.invite_token(den));
    handle.set_present(porch, user.id);
    let join = |extra: &[&str]| {
        home.command()
            .args(["join", "--json", "--control-socket", "none", "--profile", "alice", "--invite", &invite])
            .args(extra)
            .args(["--duration", "1"])
            .stdin(Stdio::null())
            .output()
            .expect("parley join --invite")
    };

    let refused = join(&[]);
    assert_eq!(refused.status.code(), Some(13), "already in another room: {}", text(&refused.stderr));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("already in another room") && stderr.contains("The Porch") && stderr.contains("--switch"),
        "{stderr}"
    );
    assert_eq!(handle.membership_role(den, user.id), Some("participant"), "opening the invite made alice a member");

    let switched = join(&["--switch"]);
    assert_success(&switched, "join --invite --switch");
    assert!(text(&switched.stderr).contains("left The Porch"), "{}", text(&switched.stderr));
    let events: Vec<Value> =
        text(&switched.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(events.iter().any(|event| event["event"] == "joined" && event["room"] == "den"), "{events:?}");
    let leaves: Vec<String> = handle.requests_to(Endpoint::Leave).into_iter().map(|request| request.path).collect();
    assert_eq!(
        leaves,
        vec![format!("/audioroom/rooms/{porch}/leave"), format!("/audioroom/rooms/{den}/leave")],
        "the other room was left first, then the joined one on exit"
    );
    assert_no_secret(&switched, &user.api_key, "join --invite");
}

/// When the server goes away for longer than the engine keeps reconnecting, a call through a
/// profile asks its backend for a fresh join and goes on in the same process: what it says is
/// heard again once the server is back.
#[test]
fn a_profile_call_joins_again_after_the_server_comes_back_and_is_heard() {
    let _serial = audio_lock();
    let mut server = server();
    let home = Home::new();
    let dir = scratch();
    home.add_livekit("home", &server, "alice", server.api_secret());
    let mut command = home.command();
    command.args(["join", "--json", "--control-socket", "none", "--profile", "home", "--room", "lobby"]).args([
        "--tone",
        "440",
        "--duration",
        "180",
    ]);
    let alice = Peer::spawn(&mut command, "alice", None, dir.path().join("alice.sock"));
    alice.wait_for_event("joins", Duration::from_secs(20), |event| event["event"] == "joined");
    server.stop();
    let lost = alice.wait_for_event("loses the connection for good", Duration::from_secs(120), |event| {
        event["event"] == "disconnected"
    });
    assert_eq!(lost["connection_lost"], true, "{lost}");
    server.restart().unwrap_or_else(|error| panic!("the server starts again: {error}"));
    alice.wait_for_event("joins again", Duration::from_secs(40), |event| {
        event["event"] == "joined" && event["t_ms"].as_f64() > lost["t_ms"].as_f64()
    });
    let bob = join(&server, "lobby", "bob", dir.path(), &["--record"], 6.0).finish(TIMEOUT);
    bob.assert_clean();
    assert_hears(bob.recording.as_deref().expect("recording"), 440.0, "bob hears alice after her rejoin");
    alice.terminate();
    let alice = alice.finish(TIMEOUT);
    assert!(alice.status.success(), "alice leaves cleanly after the rejoin; stderr: {}", alice.stderr);
}
