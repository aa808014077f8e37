//! Moderation with effect, checked by a second real client: a recorder in the same LiveKit room
//! hears (or stops hearing) the moderated participant's tone. Revoking publish silences a
//! speaker and a new grant makes them heard again without reconnecting (a `livekit` profile
//! through RoomService, and an Audioroom stage room through its contract server, which calls the
//! real LiveKit server as the plugin does); a kick or ban ends the call and keeps the user out
//! until a moderator lifts it.
//!
//! Levels are measured on the recorder's recording, in windows placed by wall-clock time once the
//! recorder's live level reports showed the change; the windows' levels are printed.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{band_energy_fraction, rms_dbfs, tone_level_dbfs};
use parley_contract_servers::audioroom::{self, NewRoom, TestUser};
use parley_devserver::DevServer;
use serde_json::Value;

use crate::profiles::{Home, TIMEOUT, assert_success, contract_runtime, keys_of, text};
use crate::support::{Finished, audio_lock, hung, now_ms, parley, scratch, server, wait_or_kill};

/// How long a change may take to reach the recorder's ears before the test fails.
const CHANGE_DEADLINE: Duration = Duration::from_secs(20);
/// How long each state is held so that the recording has a window of it to measure.
const HOLD: Duration = Duration::from_millis(2500);
/// Exit codes from the README's table.
const EXIT_REMOVED: i32 = 10;
const EXIT_BANNED: i32 = 11;
/// Level reports (every 100 ms) in a row that make a state steady.
const STEADY_LOUD: usize = 5;
const STEADY_SILENT: usize = 10;
/// A −12 dBFS tone reported at or above this is heard; at or below [`SILENT_DBFS`] it is not.
const HEARD_DBFS: f32 = -30.0;
const SILENT_DBFS: f32 = -60.0;

/// A `parley join --json` process whose events can be read while it runs.
struct LivePeer {
    name: String,
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    recording: Option<PathBuf>,
}

impl LivePeer {
    fn spawn(name: &str, mut command: Command, recording: Option<PathBuf>) -> LivePeer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {name}: {error}"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let stdout = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| panic!("stdout line is not JSON: {line}"));
                sink.lock().unwrap_or_else(PoisonError::into_inner).push(event);
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).map(|_| text).unwrap_or_default()
        });
        LivePeer { name: name.to_string(), child, events, stdout: Some(stdout), stderr: Some(stderr), recording }
    }

    /// A recorder joined straight to LiveKit (a token minted with the server's keys): records
    /// the room and reports levels every 100 ms.
    fn recorder(server: &DevServer, room: &str, dir: &Path) -> LivePeer {
        let recording = dir.join("recorder.wav");
        let mut command = parley();
        command
            .args(["join", "--json", "--levels", "--control-socket", "none", "--url", &server.url()])
            .args(["--room", room, "--identity", "recorder", "--duration", "180", "--record"])
            .arg(&recording)
            .env("LIVEKIT_API_KEY", server.api_key())
            .env("LIVEKIT_API_SECRET", server.api_secret());
        LivePeer::spawn("recorder", command, Some(recording))
    }

    /// `parley join --profile <profile> --room <room> <extra>` for up to three minutes.
    fn profile(home: &Home, profile: &str, room: &str, extra: &[&str]) -> LivePeer {
        let mut command = home.command();
        command
            .args(["join", "--json", "--control-socket", "none", "--profile", profile, "--room", room])
            .args(["--duration", "180"])
            .args(extra);
        LivePeer::spawn(profile, command, None)
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until `found` finds something in the events so far; fails after `deadline`.
    fn wait_for<T>(&self, what: &str, deadline: Duration, found: impl Fn(&[Value]) -> Option<T>) -> T {
        let until = Instant::now() + deadline;
        loop {
            if let Some(value) = found(&self.events()) {
                return value;
            }
            let tail: Vec<Value> = self.events().into_iter().rev().take(5).collect();
            assert!(Instant::now() < until, "{}: {what} within {deadline:?}; latest events: {tail:?}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `identity`'s level, as this peer plays it, has been loud (`heard`) or silent
    /// for a steady run of reports; returns the wall-clock time (ms) the run started.
    fn wait_for_level(&self, identity: &str, heard: bool, what: &str) -> f64 {
        let (count, wanted): (usize, fn(f32) -> bool) = if heard {
            (STEADY_LOUD, |level| level >= HEARD_DBFS)
        } else {
            (STEADY_SILENT, |level| level <= SILENT_DBFS)
        };
        self.wait_for(what, CHANGE_DEADLINE, |events| {
            let levels: Vec<&Value> = events.iter().filter(|event| event["event"] == "levels").collect();
            let recent = levels.get(levels.len().checked_sub(count)?..)?;
            recent.iter().all(|event| wanted(level_of(event, identity))).then(|| recent[0]["unix_ms"].as_f64())?
        })
    }

    /// Interrupts the process (Ctrl-C: a clean leave) and collects what it reported.
    fn stop(self) -> Finished {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
        assert!(signalled.success(), "{}: SIGINT could not be delivered", self.name);
        self.finish()
    }

    /// Waits for the process to end by itself and collects what it reported.
    fn finish(mut self) -> Finished {
        let status = wait_or_kill(&mut self.child, TIMEOUT);
        self.stdout.take().expect("stdout reader").join().expect("stdout thread");
        let stderr = self.stderr.take().expect("stderr reader").join().expect("stderr thread");
        let status = status.unwrap_or_else(|_| hung(&self.name, TIMEOUT, &self.events(), &stderr));
        let recording = self.recording.as_ref().map(|path| {
            parley_audio::wav::read_mono_48k(path).unwrap_or_else(|error| panic!("{}: recording: {error}", self.name))
        });
        Finished { identity: self.name.clone(), status, events: self.events(), stderr, recording }
    }
}

/// `identity`'s playback level in one `levels` report; absent (not subscribed) is silence.
fn level_of(event: &Value, identity: &str) -> f32 {
    event["participants"][identity].as_f64().map_or(-100.0, |level| level as f32)
}

/// The recording's level in one window: the tone's peak level and the overall RMS (dBFS), and
/// the tone's share of the energy. (`tone_level_dbfs` already measures in short windows, so the
/// receiver's skipped milliseconds do not read as a quieter tone.)
struct Window {
    tone_dbfs: f32,
    rms_dbfs: f32,
    share: f32,
}

fn measure(recorder: &Finished, from_ms: f64, to_ms: f64, frequency: f32, what: &str) -> Window {
    let samples = recorder.recording_between(from_ms, to_ms);
    assert!(samples.len() >= SAMPLE_RATE as usize, "{what}: need ≥ 1 s of recording, got {} samples", samples.len());
    let window = Window {
        tone_dbfs: tone_level_dbfs(samples, SAMPLE_RATE, frequency).max(-120.0),
        rms_dbfs: rms_dbfs(samples).max(-120.0),
        share: band_energy_fraction(samples, SAMPLE_RATE, frequency, 25.0),
    };
    eprintln!(
        "{what}: {frequency} Hz at {:.1} dBFS, RMS {:.1} dBFS, {:.0} % of the energy, over {:.1} s",
        window.tone_dbfs,
        window.rms_dbfs,
        window.share * 100.0,
        samples.len() as f64 / SAMPLE_RATE as f64
    );
    window
}

/// The tone is heard at the CLI's default level (−12 dBFS peak, ± 6 dB) as most of the energy.
fn assert_heard(window: &Window, what: &str) {
    assert!(
        (window.tone_dbfs + 12.0).abs() <= 6.0 && window.share >= 0.9,
        "{what}: the tone should arrive at −12 ± 6 dBFS with ≥ 90 % of the energy, got {:.1} dBFS and {:.2}",
        window.tone_dbfs,
        window.share
    );
}

/// The changes of `identity`'s right to publish that `observer` saw, in order.
fn others_permissions(observer: &Finished, identity: &str) -> Vec<bool> {
    observer
        .events_named("participant_permission")
        .into_iter()
        .filter(|event| event["identity"] == identity)
        .filter_map(|event| event["can_publish"].as_bool())
        .collect()
}

/// Nothing of the tone (or anything else) reaches the recorder.
fn assert_silent(window: &Window, what: &str) {
    assert!(
        window.tone_dbfs <= SILENT_DBFS && window.rms_dbfs <= SILENT_DBFS,
        "{what}: nothing should be heard (≤ {SILENT_DBFS} dBFS), got the tone at {:.1} dBFS, RMS {:.1} dBFS",
        window.tone_dbfs,
        window.rms_dbfs
    );
}

/// `parley mod --profile <profile> --room <room> <action> <who>`, which must succeed.
pub(crate) fn moderate(home: &Home, profile: &str, room: &str, action: &str, who: &str) {
    let output =
        home.command().args(["mod", "--profile", profile, "--room", room, action, who]).output().expect("parley mod");
    assert_success(&output, &format!("mod {action} {who}"));
}

/// The speaker's own account: one join, never a reconnection, and the permission changes it saw.
fn assert_never_reconnected(speaker: &Finished, permissions: &[bool]) {
    let joined = speaker.events_named("joined").len();
    assert_eq!(joined, 1, "{} joins once and is never rejoined: {:?}", speaker.identity, speaker.events);
    let reconnections = speaker
        .events
        .iter()
        .filter(|event| event["event"] == "reconnecting" || event["state"] == "reconnecting")
        .count();
    assert_eq!(reconnections, 0, "{} never reconnects: {:?}", speaker.identity, speaker.events);
    let seen: Vec<bool> = speaker
        .events_named("publish_permission")
        .iter()
        .map(|event| event["can_publish"].as_bool().expect("can_publish"))
        .collect();
    assert_eq!(seen, permissions, "{} reports each change of its permission to publish", speaker.identity);
}

#[test]
fn move_to_audience_silences_a_livekit_speaker_and_invite_to_speak_brings_them_back_without_reconnecting() {
    let _serial = audio_lock();
    let started = Instant::now();
    let server = server();
    let home = Home::new();
    let dir = scratch();
    home.add_livekit("admin", &server, "moderator", server.api_secret());
    let recorder = LivePeer::recorder(&server, "hall", dir.path());
    let mut bob = parley();
    bob.args(["join", "--json", "--control-socket", "none", "--url", &server.url(), "--room", "hall"])
        .args(["--identity", "bob", "--tone", "330", "--duration", "180"])
        .env("LIVEKIT_API_KEY", server.api_key())
        .env("LIVEKIT_API_SECRET", server.api_secret());
    let bob = LivePeer::spawn("bob", bob, None);

    let heard = recorder.wait_for_level("bob", true, "hearing bob");
    std::thread::sleep(HOLD);
    let revoked = now_ms();
    moderate(&home, "admin", "hall", "move-to-audience", "bob");
    let silent = recorder.wait_for_level("bob", false, "bob falling silent after move-to-audience");
    std::thread::sleep(HOLD);
    let granted = now_ms();
    moderate(&home, "admin", "hall", "invite-to-speak", "bob");
    let again = recorder.wait_for_level("bob", true, "hearing bob again after invite-to-speak");
    std::thread::sleep(HOLD);
    let ended = now_ms();

    let bob = bob.stop();
    let recorder = recorder.stop();
    bob.assert_clean();
    recorder.assert_clean();
    assert_heard(&measure(&recorder, heard + 200.0, revoked, 330.0, "before move-to-audience"), "bob speaking");
    assert_silent(&measure(&recorder, silent + 200.0, granted, 330.0, "in the audience"), "bob in the audience");
    assert_heard(&measure(&recorder, again + 200.0, ended, 330.0, "invited to speak"), "bob invited to speak");
    assert_never_reconnected(&bob, &[true, false, true]);
    assert_eq!(bob.events_named("publishing_started").len(), 2, "bob published at join and after the grant");
    assert_eq!(bob.events_named("publishing_stopped").len(), 1, "bob's track was withdrawn once");
    assert_eq!(others_permissions(&recorder, "bob"), [false, true], "the recorder saw bob lose and regain the right");
    eprintln!("livekit move-to-audience / invite-to-speak: {:.1} s", started.elapsed().as_secs_f64());
}

/// A forum with a LiveKit server behind it: the two users' profiles (`listener` a plain user,
/// `host` allowed to manage rooms) and the room.
struct Forum {
    home: Home,
    handle: audioroom::Handle,
    listener: TestUser,
    room: u64,
    _forum: parley_contract_servers::Running,
    _runtime: tokio::runtime::Runtime,
}

impl Forum {
    fn start(server: &DevServer, room: NewRoom) -> Forum {
        let home = Home::new();
        let runtime = contract_runtime();
        let (forum, handle) = runtime.block_on(audioroom::start(keys_of(server))).expect("forum");
        let listener = handle.add_user("ear", "Ear", false);
        let host = handle.add_user("host", "Host", true);
        let room = handle.add_room(room);
        for (name, user) in [("ear", &listener), ("host", &host)] {
            let added = home.add(
                &[name, "--backend", "audioroom", "--url", &forum.url(), "--client-id", &format!("parley-{name}")],
                &format!("{}\n", user.api_key),
            );
            assert_success(&added, "profile add audioroom");
        }
        Forum { home, handle, listener, room, _forum: forum, _runtime: runtime }
    }

    fn room(&self) -> String {
        self.room.to_string()
    }

    /// The listener's LiveKit identity (the forum's user id).
    fn identity(&self) -> String {
        self.listener.id.to_string()
    }

    fn moderate(&self, action: &str) {
        moderate(&self.home, "host", &self.room(), action, "ear");
    }

    /// A short `parley join --profile ear` that runs to its end.
    fn join_briefly(&self) -> Output {
        self.home
            .command()
            .args(["join", "--json", "--control-socket", "none", "--profile", "ear", "--room", &self.room()])
            .args(["--tone", "440", "--duration", "3"])
            .stdin(Stdio::null())
            .output()
            .expect("parley join --profile ear")
    }
}

#[test]
fn a_stage_listener_is_heard_only_while_invited_to_speak_and_never_reconnects() {
    let _serial = audio_lock();
    let started = Instant::now();
    let server = server();
    let dir = scratch();
    let forum = Forum::start(&server, NewRoom::stage("stage", "The Stage"));
    let ear = forum.identity();
    let recorder = LivePeer::recorder(&server, "stage", dir.path());
    // In the room first, so that the listener's arrival (and its rights) is an event it sees.
    recorder.wait_for("joining", CHANGE_DEADLINE, |events| {
        events.iter().any(|event| event["event"] == "joined").then_some(())
    });
    let listener = LivePeer::profile(&forum.home, "ear", &forum.room(), &["--tone", "550"]);

    listener.wait_for("joining as a listener", CHANGE_DEADLINE, |events| {
        let joined = events.iter().any(|event| event["event"] == "joined");
        let listening =
            events.iter().any(|event| event["event"] == "publish_permission" && event["can_publish"] == false);
        (joined && listening).then_some(())
    });
    let present = recorder.wait_for("the listener in the room", CHANGE_DEADLINE, |events| {
        events
            .iter()
            .find(|event| event["event"] == "participant_joined" && event["identity"] == ear.as_str())
            .and_then(|event| event["unix_ms"].as_f64())
    });
    std::thread::sleep(HOLD);
    let invited = now_ms();
    let unpublished =
        recorder.events().iter().all(|event| event["identity"] != ear.as_str() || event["event"] != "track_subscribed");
    assert!(unpublished, "a listener publishes no track: {:?}", recorder.events());
    forum.moderate("invite-to-speak");
    let heard = recorder.wait_for_level(&ear, true, "hearing the listener invited to speak");
    std::thread::sleep(HOLD);
    let moved = now_ms();
    forum.moderate("move-to-audience");
    let silent = recorder.wait_for_level(&ear, false, "the speaker falling silent in the audience");
    std::thread::sleep(HOLD);
    let ended = now_ms();

    let listener = listener.stop();
    let recorder = recorder.stop();
    listener.assert_clean();
    recorder.assert_clean();
    assert_silent(&measure(&recorder, present + 200.0, invited, 550.0, "stage listener"), "a listener with a tone");
    assert_heard(&measure(&recorder, heard + 200.0, moved, 550.0, "invited to speak"), "the invited speaker");
    assert_silent(&measure(&recorder, silent + 200.0, ended, 550.0, "moved to the audience"), "back in the audience");
    assert_never_reconnected(&listener, &[false, true, false]);
    assert_eq!(listener.events_named("publishing_started").len(), 1, "published only once invited");
    let arrived = recorder
        .events_named("participant_joined")
        .into_iter()
        .find(|event| event["identity"] == ear.as_str())
        .map(|event| event["can_publish"].clone());
    assert_eq!(arrived, Some(serde_json::json!(false)), "the listener arrived without the right to publish");
    assert_eq!(others_permissions(&recorder, &ear), [true, false], "then the recorder saw it granted and revoked");
    let updates = forum.handle.livekit_updates();
    let permissions: Vec<bool> =
        updates.iter().filter_map(|update| update.permission.map(|rights| rights.can_publish)).collect();
    assert_eq!(permissions, [true, false], "the forum granted, then revoked, publishing in LiveKit: {updates:?}");
    assert!(updates.iter().all(|update| update.outcome.is_ok()), "LiveKit accepted every update: {updates:?}");
    eprintln!("audioroom stage invite / move to audience: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_forum_moderator_mutes_a_speakers_track_in_livekit_and_they_fall_silent() {
    let _serial = audio_lock();
    let started = Instant::now();
    let server = server();
    let dir = scratch();
    let forum = Forum::start(&server, NewRoom::open("porch", "The Porch"));
    let ear = forum.identity();
    let recorder = LivePeer::recorder(&server, "porch", dir.path());
    let speaker = LivePeer::profile(&forum.home, "ear", &forum.room(), &["--tone", "440"]);

    let heard = recorder.wait_for_level(&ear, true, "hearing ear before the mute");
    std::thread::sleep(HOLD);
    let muting = now_ms();
    forum.moderate("mute");
    let silent = recorder.wait_for_level(&ear, false, "ear falling silent after the forum's mute");
    std::thread::sleep(HOLD);
    let ended = now_ms();

    let speaker = speaker.stop();
    let recorder = recorder.stop();
    speaker.assert_clean();
    recorder.assert_clean();
    assert_heard(&measure(&recorder, heard + 200.0, muting, 440.0, "before the mute"), "ear speaking");
    assert_silent(&measure(&recorder, silent + 200.0, ended, 440.0, "muted by the forum"), "ear muted");
    let own = speaker.events_named("track_muted").into_iter().find(|event| event["identity"] == ear.as_str());
    assert!(own.is_some(), "ear reports its track muted by the server: {:?}", speaker.events);
    let calls = forum.handle.livekit_calls();
    let muted =
        calls.iter().find(|call| call.method == "MutePublishedTrack" && call.identity.as_deref() == Some(ear.as_str()));
    assert!(muted.is_some_and(|call| call.outcome.is_ok()), "the forum muted ear's audio track in LiveKit: {calls:?}");
    eprintln!("audioroom remote mute: {:.1} s", started.elapsed().as_secs_f64());
}

/// Waits for `peer` to be removed by a moderator and checks how its call ended.
fn assert_removed(peer: LivePeer, code: i32, what: &str) {
    let finished = peer.finish();
    assert_eq!(
        finished.status.code(),
        Some(code),
        "{what}: the call ends with code {code}; stderr: {}",
        finished.stderr
    );
    assert!(finished.stderr.contains("removed from the room"), "{what}: says why: {}", finished.stderr);
}

/// A join refused with `code`; its one-line message must mention `words`.
fn assert_refused(output: &Output, code: i32, words: &[&str], what: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{what}: refused with code {code}; stderr: {stderr}");
    assert!(words.iter().all(|word| stderr.contains(word)), "{what}: the message mentions {words:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
    assert!(!text(&output.stdout).contains("\"joined\""), "{what}: never joined the room");
}

fn assert_joins(output: &Output, what: &str) {
    assert_success(output, what);
    assert!(text(&output.stdout).contains("\"event\":\"joined\""), "{what}: joined: {}", text(&output.stdout));
}

#[test]
fn a_kicked_or_banned_user_leaves_and_cannot_rejoin_until_a_moderator_lifts_it() {
    let _serial = audio_lock();
    let started = Instant::now();
    let server = server();
    let dir = scratch();
    let forum = Forum::start(&server, NewRoom::open("porch", "The Porch"));
    let ear = forum.identity();
    let recorder = LivePeer::recorder(&server, "porch", dir.path());

    let call = LivePeer::profile(&forum.home, "ear", &forum.room(), &["--tone", "440"]);
    recorder.wait_for_level(&ear, true, "hearing ear before the kick");
    forum.moderate("kick");
    assert_removed(call, EXIT_REMOVED, "kicked during the call");
    recorder.wait_for_level(&ear, false, "ear gone after the kick");
    assert!(forum.handle.is_kicked(forum.room, forum.listener.id), "the forum holds the kick");
    assert_refused(
        &forum.join_briefly(),
        EXIT_REMOVED,
        &["removed from this room", "kicked"],
        "rejoining while kicked",
    );
    forum.moderate("unkick");
    assert!(!forum.handle.is_kicked(forum.room, forum.listener.id), "the kick is lifted");
    assert_joins(&forum.join_briefly(), "rejoining after unkick");

    let call = LivePeer::profile(&forum.home, "ear", &forum.room(), &["--tone", "440"]);
    recorder.wait_for_level(&ear, true, "hearing ear before the ban");
    forum.moderate("ban");
    // The forum tells a banned user the same `kicked` event as a kicked one, and LiveKit drops
    // them too. When the event comes first the call ends as removed; when LiveKit's removal
    // comes first the client asks the forum to join again and hears it is banned. Either way
    // the call ends and the user is told.
    let finished = call.finish();
    let (code, stderr) = (finished.status.code(), &finished.stderr);
    match code {
        Some(EXIT_REMOVED) => assert!(stderr.contains("removed from the room"), "banned during the call: {stderr}"),
        Some(EXIT_BANNED) => assert!(stderr.contains("banned"), "banned during the call: {stderr}"),
        _ => panic!(
            "banned during the call: ends as removed ({EXIT_REMOVED}) or banned ({EXIT_BANNED}), got {code:?}: {stderr}"
        ),
    }
    recorder.wait_for_level(&ear, false, "ear gone after the ban");
    assert!(forum.handle.is_banned(forum.room, forum.listener.id), "the forum holds the ban");
    assert_refused(&forum.join_briefly(), EXIT_BANNED, &["banned"], "rejoining while banned");
    forum.moderate("unban");
    assert_joins(&forum.join_briefly(), "rejoining after unban");

    recorder.stop().assert_clean();
    eprintln!("audioroom kick / ban: {:.1} s", started.elapsed().as_secs_f64());
}
