//! Screen share through the CLI, end to end: under a private Xvfb, `parley-pattern-window`
//! draws the test pattern; alice shares that window (`--share-screen <id>`) through the real
//! LiveKit server and bob watches (`--watch alice --save-frames DIR`). What bob saved is read
//! back: the size, the bar colours, the marker moving and the counter advancing; his watch
//! statistics give the frame rate. Carol, in the same room watching nobody, is told of the share
//! and receives no video. A share the token forbids, a shared window that closes and a display
//! that goes away each fail clearly while alice's tone keeps reaching bob; a viewer of someone
//! who leaves closes and the call goes on. With the upload capped, a `detail` share keeps its
//! resolution and a `motion` share its frame rate. One application's sound goes with a share
//! (`--share-audio`): a watcher hears it and nothing else that plays, someone who does not watch
//! does not, and when the application quits the picture goes on. (Wayland's portal path:
//! `wayland.rs`.)

use std::path::Path;
use std::process::Child;

use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, VideoGrants};
use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{first_onset, tone_gain_dbfs, tone_level_dbfs};
use parley_audio::signal::Tone;
use parley_capture::pattern;
use parley_devserver::DevServer;
use parley_devserver::display::Xvfb;
use parley_devserver::pulse::PulseServer;
use parley_e2e::PatternWindow;

use crate::moderation::moderate;
use crate::profiles::Home;
use crate::support::{Finished, Peer, audio_lock, join, join_with_env, now_ms, parley, scratch, server};

const TIMEOUT: Duration = Duration::from_secs(40);
/// How far a received bar's colour may stray from the drawn one, per channel (VP8 at 1.7 Mb/s).
const COLOUR_TOLERANCE: i32 = 40;

/// One saved picture, decoded to RGBA.
pub struct Saved {
    pub index: u64,
    /// When the viewer received it (Unix ms, the PNG's `Received` chunk).
    pub received_ms: f64,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// The pictures `parley join --save-frames DIR` saved, in order.
pub fn saved_frames(dir: &Path) -> Vec<Saved> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("the frames directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "png"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let index = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .and_then(|stem| stem.strip_prefix("frame-"))
                .and_then(|number| number.parse().ok())
                .unwrap_or_else(|| panic!("unexpected file {}", path.display()));
            let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).expect("open a png")));
            let mut reader = decoder.read_info().expect("a png header");
            let received_ms = reader
                .info()
                .uncompressed_latin1_text
                .iter()
                .find(|chunk| chunk.keyword == "Received")
                .and_then(|chunk| chunk.text.parse().ok())
                .unwrap_or_else(|| panic!("{} should say when it was received", path.display()));
            let mut rgba = vec![0; reader.output_buffer_size().expect("a png size")];
            let info = reader.next_frame(&mut rgba).expect("png pixels");
            assert_eq!(info.color_type, png::ColorType::Rgba, "{} should be RGBA", path.display());
            rgba.truncate(info.buffer_size());
            Saved { index, received_ms, width: info.width, height: info.height, rgba }
        })
        .collect()
}

fn pixel(frame: &Saved, x: u32, y: u32) -> [u8; 3] {
    let at = ((y * frame.width + x) * 4) as usize;
    [frame.rgba[at], frame.rgba[at + 1], frame.rgba[at + 2]]
}

/// Asserts that `got` (the colour in the middle of each eighth of a picture, halfway down the
/// bars) are the pattern's bars, within what video compression changes.
pub fn assert_bars(what: &str, got: &[[u8; 3]]) {
    assert_eq!(got.len(), pattern::BARS.len(), "{what}: eight bars");
    for (bar, (got, expected)) in got.iter().zip(pattern::BARS).enumerate() {
        let off = got.iter().zip(expected).map(|(&got, want)| (i32::from(got) - i32::from(want)).abs()).max();
        assert!(
            off.is_some_and(|off| off <= COLOUR_TOLERANCE),
            "{what}: bar {bar} should be {expected:?}, got {got:?}"
        );
    }
}

/// The colour in the middle of each of `frame`'s eight bars.
pub fn bars_of(frame: &Saved) -> Vec<[u8; 3]> {
    let bar_width = frame.width / 8;
    let row = frame.height * pattern::BARS_HEIGHT / pattern::HEIGHT / 2;
    (0..8).map(|bar| pixel(frame, bar * bar_width + bar_width / 2, row)).collect()
}

/// The mean rate over the watch statistics between 1 s after the first and the last.
fn received_fps(bob: &Finished) -> f64 {
    let stats = bob.events_named("watch_stats");
    assert!(stats.len() >= 4, "bob should report watch statistics every second: {:?}", bob.events);
    let point = |event: &serde_json::Value| {
        (event["unix_ms"].as_f64().expect("unix_ms"), event["frames"].as_f64().expect("frames"))
    };
    let (start_ms, start_frames) = point(stats[1]);
    let (end_ms, end_frames) = point(stats[stats.len() - 1]);
    (end_frames - start_frames) / ((end_ms - start_ms) / 1000.0)
}

#[test]
fn a_shared_window_reaches_a_watcher_with_its_pattern_at_full_rate() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let frames = dir.path().join("frames");
    let frames_arg = frames.to_str().expect("a UTF-8 path").to_string();
    let joined_ms = now_ms();
    let bob = join(
        &server,
        "share",
        "bob",
        dir.path(),
        &["--watch", "alice", "--save-frames", &frames_arg, "--save-every", "15"],
        10.0,
    );
    // Carol is in the room and watches nobody: she is told of the share and receives no video.
    let carol = join(&server, "share", "carol", dir.path(), &[], 10.0);
    let id = window.id.to_string();
    let alice = join_with_env(
        &server,
        "share",
        "alice",
        dir.path(),
        &["--share-screen", &id, "--share-quality", "720p30"],
        9.0,
        &display.env(),
    );
    // libwebrtc raises its video threads to real-time priority where it may (here, as root):
    // Parley moves them, and its own share and viewer threads, below the voice path.
    bob.wait_for_event("bob's second second of pictures", TIMEOUT, |event| {
        event["event"] == "watch_stats" && event["frames"].as_u64().is_some_and(|frames| frames > 30)
    });
    std::thread::sleep(Duration::from_millis(1200));
    let sender = parley_livekit_ffi::video_threads(&alice.pid().to_string());
    let viewer = parley_livekit_ffi::video_threads(&bob.pid().to_string());
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    let carol = carol.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();
    carol.assert_clean();
    for (who, threads, expected) in
        [("alice", &sender, ["VideoEncoderQue", "parley-share"]), ("bob", &viewer, ["VideoDecoderQue", "parley-watch"])]
    {
        for name in expected {
            assert!(threads.iter().any(|thread| thread.name == name), "{who} runs a {name} thread: {threads:?}");
        }
        assert!(
            threads.iter().all(|thread| (thread.policy, thread.nice) == (0, parley_livekit_ffi::VIDEO_THREAD_NICE)),
            "{who}'s video threads run as ordinary threads at nice {}, below the voice path: {threads:?}",
            parley_livekit_ffi::VIDEO_THREAD_NICE
        );
    }

    let started = alice.events_named("share_started");
    let started = started.first().unwrap_or_else(|| panic!("alice should share: {:?}", alice.events));
    assert_eq!((started["width"].as_u64(), started["height"].as_u64()), (Some(1280), Some(720)));
    let costs: Vec<f64> =
        alice.events_named("share_stats").iter().filter_map(|event| event["capture_ms"].as_f64()).collect();
    eprintln!("alice capture+scale ms per frame: {costs:?}");
    eprintln!(
        "alice send ms per frame: {:?}",
        alice.events_named("share_stats").iter().filter_map(|event| event["send_ms"].as_f64()).collect::<Vec<_>>()
    );

    let watched = bob.events_named("watch_started");
    let watched = watched.first().unwrap_or_else(|| panic!("bob should see alice's share: {:?}", bob.events));
    let stats = bob.events_named("watch_stats");
    let last = stats.last().unwrap_or_else(|| panic!("bob should report watch statistics: {:?}", bob.events));
    eprintln!(
        "bob's first picture {}x{}, last {}x{}",
        watched["width"], watched["height"], last["width"], last["height"]
    );
    // The first pictures may come from a smaller simulcast layer; a watcher asks for the full one.
    assert_eq!((last["width"].as_u64(), last["height"].as_u64()), (Some(1280), Some(720)), "bob watches full size");
    let declined = carol.events_named("share_available");
    assert!(
        declined.iter().any(|event| event["identity"] == "alice"),
        "carol should be told that alice shares: {:?}",
        carol.events
    );
    assert!(
        carol.events_named("track_subscribed").iter().all(|event| event["kind"] != "video")
            && carol.events_named("watch_started").is_empty(),
        "carol watches nobody and should receive no video: {:?}",
        carol.events
    );
    let fps = received_fps(&bob);
    eprintln!("bob received {fps:.1} fps");
    assert!(fps >= 25.0, "bob should receive ≥ 25 fps, got {fps:.1}");

    let saved = saved_frames(&frames);
    assert!(saved.len() >= 8, "bob should save a picture every 15 received, got {}", saved.len());
    // The first pictures of a stream can be blurry while the encoder ramps up.
    let stamps: Vec<f64> = saved.iter().map(|frame| frame.received_ms).collect();
    assert!(
        stamps.windows(2).all(|pair| pair[0] < pair[1]) && stamps[0] > joined_ms && stamps[stamps.len() - 1] < now_ms(),
        "each saved picture says when, during the call, it was received: {stamps:?}"
    );
    let steady = &saved[2..];
    let mut counters = Vec::new();
    let mut markers = Vec::new();
    for frame in steady {
        assert_eq!((frame.width, frame.height), (1280, 720), "frame {}", frame.index);
        assert_bars(&format!("frame {}", frame.index), &bars_of(frame));
        counters.push(pattern::read_counter(&frame.rgba, frame.width));
        markers.push(pattern::find_marker(&frame.rgba, frame.width));
    }
    eprintln!("counters {counters:?}, markers {markers:?}");
    assert!(counters.windows(2).all(|pair| pair[1] > pair[0]), "the counter should advance: {counters:?}");
    // Fifteen received frames apart at ~30 fps is ~15 drawn frames: allow for drops, not stalls.
    for pair in counters.windows(2) {
        assert!(pair[1] - pair[0] <= 40, "the counter should not jump (a stall): {counters:?}");
    }
    let found: Vec<u32> = markers.iter().flatten().copied().collect();
    assert!(found.len() >= steady.len() - 1, "the marker should be visible: {markers:?}");
    assert!(found.windows(2).all(|pair| pair[0] != pair[1]), "the marker should move: {markers:?}");
}

/// The size and rate bob's last `count` watch statistics agree on: (width, height, mean fps).
fn steady_watch(bob: &Finished, count: usize) -> (u64, u64, f64) {
    let stats = bob.events_named("watch_stats");
    assert!(stats.len() >= count + 3, "bob should report watch statistics every second: {:?}", bob.events);
    let last = &stats[stats.len() - count..];
    let size =
        |event: &serde_json::Value| (event["width"].as_u64().unwrap_or(0), event["height"].as_u64().unwrap_or(0));
    let widths: Vec<(u64, u64)> = last.iter().map(|event| size(event)).collect();
    let fps: Vec<f64> = last.iter().filter_map(|event| event["fps"].as_f64()).collect();
    eprintln!("bob's last watch statistics: sizes {widths:?}, fps {fps:?}");
    let (width, height) = widths[widths.len() - 1];
    (width, height, fps.iter().sum::<f64>() / fps.len() as f64)
}

#[test]
fn short_of_bandwidth_a_detail_share_keeps_its_resolution_and_a_motion_share_its_frame_rate() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let id = window.id.to_string();
    // An upload capped at 100 kbit/s: far too little for the moving pattern at 720p30.
    let mut measured = Vec::new();
    for priority in ["detail", "motion"] {
        let room = format!("short-{priority}");
        let bob = join(&server, &room, "bob", dir.path(), &["--watch", "alice"], 16.0);
        let alice = join_with_env(
            &server,
            &room,
            "alice",
            dir.path(),
            &["--share-screen", &id, "--share-priority", priority, "--share-max-bitrate", "100"],
            14.0,
            &display.env(),
        );
        let alice = alice.finish(TIMEOUT);
        let bob = bob.finish(TIMEOUT);
        alice.assert_clean();
        bob.assert_clean();
        let started = alice.events_named("share_started");
        assert_eq!(started.first().map(|event| event["priority"].clone()), Some(priority.into()), "{:?}", alice.events);
        measured.push(steady_watch(&bob, 5));
    }
    let (detail, motion) = (measured[0], measured[1]);
    assert_eq!((detail.0, detail.1), (1280, 720), "a detail share keeps its resolution: {detail:?}");
    assert!(detail.2 < 20.0, "…and drops frames to fit 100 kbit/s: {detail:?}");
    assert!(motion.0 < 1280 && motion.1 < 720, "a motion share lowers its resolution: {motion:?}");
    assert!(motion.2 >= 20.0, "…and keeps its frame rate: {motion:?}");
}

fn token_without_screen_share(server: &DevServer, room: &str, identity: &str) -> String {
    AccessToken::with_api_key(server.api_key(), server.api_secret())
        .with_identity(identity)
        .with_grants(VideoGrants {
            room_join: true,
            room: room.into(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_sources: vec!["microphone".into()],
            ..Default::default()
        })
        .to_jwt()
        .expect("mint a token")
}

#[test]
fn a_share_the_token_forbids_fails_clearly_and_audio_goes_on() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let bob = join(&server, "no-share", "bob", dir.path(), &["--record"], 6.0);
    let mut command = parley();
    command
        .args(["join", "--json", "--control-socket", "none", "--url", &server.url(), "--room", "no-share"])
        .args(["--token", &token_without_screen_share(&server, "no-share", "alice")])
        .args(["--tone", "440", "--duration", "5", "--share-screen", &window.id.to_string()])
        .envs(display.env());
    let alice = Peer::spawn(&mut command, "alice", None, dir.path().join("unused.sock"));
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    let failed = alice.events_named("share_failed");
    let failed = failed.first().unwrap_or_else(|| panic!("alice's share should fail: {:?}", alice.events));
    assert_eq!(failed["code"], "not_allowed", "{failed}");
    assert!(failed["reason"].as_str().is_some_and(|reason| reason.contains("not allowed")), "{failed}");
    assert!(alice.events_named("share_started").is_empty());

    let samples = bob.recording.as_deref().expect("bob's recording");
    let onset = first_onset(samples, -30.0, 480).unwrap_or_else(|| panic!("bob heard nothing of alice"));
    let steady = &samples[(onset + SAMPLE_RATE as usize / 2).min(samples.len())..];
    assert!(steady.len() >= SAMPLE_RATE as usize, "bob should hear at least 1 s of alice's tone");
    let level = tone_level_dbfs(steady, SAMPLE_RATE, 440.0);
    assert!((level + 12.0).abs() <= 6.0, "alice's tone should reach bob at −12 ± 6 dBFS, got {level:.1}");
}

#[test]
fn closing_the_shared_window_ends_the_share_clearly_and_audio_goes_on() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let bob = join(&server, "closing", "bob", dir.path(), &["--record"], 10.0);
    let id = window.id.to_string();
    let alice = join_with_env(
        &server,
        "closing",
        "alice",
        dir.path(),
        &["--tone", "440", "--share-screen", &id],
        9.0,
        &display.env(),
    );
    alice.wait_for_event("alice should start sharing", TIMEOUT, |event| event["event"] == "share_started");
    std::thread::sleep(Duration::from_secs(1));
    drop(window);
    let failed = alice.wait_for_event("the share should end when its window closes", TIMEOUT, |event| {
        event["event"] == "share_failed"
    });
    assert_eq!(failed["code"], "target_gone", "{failed}");
    let failed_ms = failed["unix_ms"].as_f64().expect("unix_ms");
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    // The call goes on: bob hears alice's tone for a second after her share ended.
    assert_tone_after(&bob, failed_ms, 1.0, "after the share ended");
}

/// Asserts that bob heard alice's 440 Hz tone at −12 ± 6 dBFS (its level as it plays) for
/// `seconds` from half a second after `from_ms`: the call went on.
pub fn assert_tone_after(bob: &Finished, from_ms: f64, seconds: f64, what: &str) {
    assert_tone_of_after("alice", bob, from_ms, seconds, what);
}

/// [`assert_tone_after`] for a 440 Hz tone from `speaker`.
fn assert_tone_of_after(speaker: &str, bob: &Finished, from_ms: f64, seconds: f64, what: &str) {
    let after = bob.recording_between(from_ms + 500.0, from_ms + 500.0 + seconds * 1000.0);
    assert!(after.len() as f64 >= f64::from(SAMPLE_RATE) * seconds * 0.9, "bob should record {what}");
    let level = tone_gain_dbfs(after, SAMPLE_RATE, 440.0);
    assert!((level + 12.0).abs() <= 6.0, "{speaker}'s tone should reach bob {what}, got {level:.1} dBFS");
}

#[test]
fn a_display_that_goes_away_ends_the_share_clearly_and_audio_goes_on() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let bob = join(&server, "display-gone", "bob", dir.path(), &["--record", "--watch", "alice"], 10.0);
    let alice = join_with_env(
        &server,
        "display-gone",
        "alice",
        dir.path(),
        &["--tone", "440", "--share-screen", "0"],
        9.0,
        &display.env(),
    );
    bob.wait_for_event("bob should watch alice's screen", TIMEOUT, |event| event["event"] == "watch_started");
    // The X server ends (a session logging out, a crashed Xvfb).
    drop(display);
    let failed = alice.wait_for_event("the share should end when its display goes away", TIMEOUT, |event| {
        event["event"] == "share_failed"
    });
    assert_eq!(failed["code"], "no_display", "{failed}");
    assert!(failed["reason"].as_str().is_some_and(|reason| reason.contains("X server")), "{failed}");
    let failed_ms = failed["unix_ms"].as_f64().expect("unix_ms");
    bob.wait_for_event("bob's viewer should close", TIMEOUT, |event| {
        event["event"] == "watch_ended" && event["identity"] == "alice"
    });
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    assert_tone_after(&bob, failed_ms, 1.0, "after her display went away");
}

#[test]
fn a_viewer_of_someone_who_leaves_closes_and_the_call_goes_on() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let bob = join(&server, "leaver", "bob", dir.path(), &["--record", "--watch", "alice"], 120.0);
    let carol = join(&server, "leaver", "carol", dir.path(), &["--tone", "440"], 120.0);
    let id = window.id.to_string();
    let alice = join_with_env(&server, "leaver", "alice", dir.path(), &["--share-screen", &id], 120.0, &display.env());
    bob.wait_for_event("bob should watch alice's share", TIMEOUT, |event| event["event"] == "watch_started");
    // Alice quits Parley while sharing.
    alice.terminate();
    let alice = alice.finish(TIMEOUT);
    let ended = bob.wait_for_event("bob's viewer should close when alice leaves", TIMEOUT, |event| {
        event["event"] == "watch_ended" && event["identity"] == "alice"
    });
    bob.wait_for_event("bob should see alice leave", TIMEOUT, |event| {
        event["event"] == "participant_left" && event["identity"] == "alice"
    });
    let ended_ms = ended["unix_ms"].as_f64().expect("unix_ms");
    std::thread::sleep(Duration::from_secs(3));
    bob.terminate();
    carol.terminate();
    let bob = bob.finish(TIMEOUT);
    let carol = carol.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();
    carol.assert_clean();

    assert_tone_of_after("carol", &bob, ended_ms, 2.0, "after alice left");
}

/// The peer's receive rate (bytes/s) over `window` from now, read from its `traffic` events.
fn receive_rate(peer: &Peer, window: Duration) -> f64 {
    let traffic_after = |since: f64| {
        let event = peer.wait_for_event("a traffic report", TIMEOUT, |event| {
            event["event"] == "traffic" && event["unix_ms"].as_f64().is_some_and(|ms| ms >= since)
        });
        (event["unix_ms"].as_f64().expect("unix_ms"), event["received_bytes"].as_f64().expect("received_bytes"))
    };
    let (start_ms, start_bytes) = traffic_after(now_ms());
    std::thread::sleep(window);
    let (end_ms, end_bytes) = traffic_after(now_ms());
    (end_bytes - start_bytes) * 1000.0 / (end_ms - start_ms)
}

#[test]
fn a_share_watched_while_in_the_call_flows_only_while_watched_and_audio_goes_on() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let mut bob = join(&server, "later", "bob", dir.path(), &["--record", "--stats", "0.5"], 120.0);
    let id = window.id.to_string();
    let alice = join_with_env(
        &server,
        "later",
        "alice",
        dir.path(),
        &["--tone", "440", "--share-screen", &id, "--share-quality", "720p30"],
        120.0,
        &display.env(),
    );
    bob.wait_for_event("bob should be told alice shares", TIMEOUT, |event| {
        event["event"] == "share_available" && event["identity"] == "alice"
    });
    let window = Duration::from_secs(3);
    let declined = receive_rate(&bob, window);

    bob.command("watch alice");
    bob.wait_for_event("bob's watch should start", TIMEOUT, |event| event["event"] == "watch_started");
    // The server starts a new subscriber on a low layer and climbs as its estimate of bob's
    // bandwidth grows: measure once the 720p layer arrives.
    bob.wait_for_event("bob should get alice's share at 720p", TIMEOUT, |event| {
        event["event"] == "watch_stats" && event["width"].as_u64().is_some_and(|width| width >= 1280)
    });
    let watched = receive_rate(&bob, window);

    bob.command("unwatch alice");
    let ended = bob.wait_for_event("bob's watch should end", TIMEOUT, |event| event["event"] == "watch_ended");
    let ended_ms = ended["unix_ms"].as_f64().expect("unix_ms");
    std::thread::sleep(Duration::from_secs(1));
    let unwatched = receive_rate(&bob, window);
    eprintln!("bob's receive rate: declined {declined:.0} B/s, watched {watched:.0} B/s, unwatched {unwatched:.0} B/s");

    alice.terminate();
    bob.terminate();
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();
    // Audio alone (with its redundancy and RTCP) is about 13 kB/s here; alice's mostly still
    // pattern adds about 40 kB/s at 720p30.
    let video = watched - declined;
    assert!(
        video >= 20_000.0,
        "the server should send alice's share while bob watches: {declined:.0} B/s before, {watched:.0} B/s while watching"
    );
    assert!(
        unwatched <= declined + video / 4.0,
        "the server should stop sending the share once bob unwatches: declined {declined:.0}, watched {watched:.0}, \
         unwatched {unwatched:.0} B/s"
    );
    let stats = bob.events_named("watch_stats");
    assert!(
        stats.iter().any(|event| event["fps"].as_f64().is_some_and(|fps| fps >= 20.0)),
        "bob should receive alice's share at full rate while watching: {stats:?}"
    );
    let late: Vec<_> =
        stats.iter().filter(|event| event["unix_ms"].as_f64().is_some_and(|ms| ms > ended_ms + 1500.0)).collect();
    assert!(late.is_empty(), "no pictures should arrive after unwatching: {late:?}");
    let shares = bob.events_named("share_available");
    assert!(shares.len() >= 2, "after unwatching, alice's share should be on offer again: {shares:?}");

    // The call went on throughout: alice's tone reached bob while he watched and after.
    assert_tone_after(&bob, ended_ms, 4.0, "after the watch");
}

#[test]
fn a_moderator_stops_a_share_the_sharer_says_so_and_the_call_goes_on() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let home = Home::new();
    home.add_livekit("admin", &server, "moderator", server.api_secret());
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let bob = join(&server, "stop", "bob", dir.path(), &["--watch", "alice", "--record"], 120.0);
    let id = window.id.to_string();
    let alice = join_with_env(
        &server,
        "stop",
        "alice",
        dir.path(),
        &["--tone", "440", "--share-screen", &id, "--share-quality", "720p30"],
        120.0,
        &display.env(),
    );
    bob.wait_for_event("bob should watch alice's share", TIMEOUT, |event| event["event"] == "watch_started");

    moderate(&home, "admin", "stop", "stop-share", "alice");
    alice.wait_for_event("alice should say a moderator stopped her share", TIMEOUT, |event| {
        event["event"] == "warning" && event["message"].as_str().is_some_and(|text| text.contains("moderator stopped"))
    });
    alice.wait_for_event("alice's share should stop", TIMEOUT, |event| event["event"] == "share_stopped");
    let ended = bob.wait_for_event("bob should see the share end", TIMEOUT, |event| {
        event["event"] == "share_ended" && event["identity"] == "alice"
    });
    let ended_ms = ended["unix_ms"].as_f64().expect("unix_ms");
    std::thread::sleep(Duration::from_secs(4));
    alice.terminate();
    bob.terminate();
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    // Her voice went on after her share was stopped.
    assert_tone_after(&bob, ended_ms, 2.5, "after her share was stopped");
}

/// An application playing a `frequency` Hz tone (−12 dBFS) on `sink` for `seconds`, named
/// `app` on the sound server (`pacat --client-name`).
fn play_as(pulse: &PulseServer, sink: &str, app: &str, frequency: f64, seconds: usize) -> Child {
    let mut tone = Tone::new(frequency, -12.0);
    let mut samples = vec![0i16; SAMPLE_RATE as usize * seconds];
    tone.fill(&mut samples);
    crate::devices::speak_as(pulse, sink, app, &samples)
}

#[test]
fn a_shared_applications_sound_reaches_watchers_alone_and_its_end_leaves_the_picture() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    // Two applications play on the desktop's speaker: the one alice shares, and another.
    let pulse = crate::devices::pulse(&[("speaker", 1)]);
    let mut player = play_as(&pulse, "speaker", "Tone Player", 660.0, 60);
    let mut other = play_as(&pulse, "speaker", "Noise Maker", 1000.0, 60);
    let mut env = display.env();
    env.extend(pulse.env());
    let deadline = Instant::now() + TIMEOUT;
    let listed = loop {
        let output = parley().args(["share-targets", "--json"]).envs(env.clone()).output().expect("share-targets");
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("share-targets prints JSON");
        let sounds: Vec<serde_json::Value> =
            listed.as_array().into_iter().flatten().filter(|target| target["kind"] == "sound").cloned().collect();
        if sounds.len() >= 2 || Instant::now() > deadline {
            break sounds;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        listed.iter().any(|sound| sound["name"].as_str().is_some_and(|name| name.contains("Tone Player"))),
        "share-targets lists the applications playing sound: {listed:?}"
    );

    let bob = join(&server, "sound", "bob", dir.path(), &["--watch", "alice", "--record"], 120.0);
    // Carol watches nobody: she hears alice's voice, not her share's sound.
    let carol = join(&server, "sound", "carol", dir.path(), &["--record"], 120.0);
    let id = window.id.to_string();
    let alice = join_with_env(
        &server,
        "sound",
        "alice",
        dir.path(),
        &["--tone", "440", "--share-screen", &id, "--share-audio", "tone player"],
        120.0,
        &env,
    );
    let started = alice.wait_for_event("alice should share", TIMEOUT, |event| event["event"] == "share_started");
    assert!(
        started["audio"].as_str().is_some_and(|audio| audio.contains("Tone Player")),
        "alice shares the player's sound: {started}"
    );
    bob.wait_for_event("bob should watch alice's share", TIMEOUT, |event| event["event"] == "watch_started");
    std::thread::sleep(Duration::from_secs(6));
    let heard_from = now_ms() - 4000.0;
    // The player quits: alice says so, and her picture and voice go on.
    let _ = player.kill();
    let _ = player.wait();
    let ended = alice.wait_for_event("alice should say the shared sound ended", TIMEOUT, |event| {
        event["event"] == "share_sound_ended" && event["app"].as_str().is_some_and(|app| app.contains("Tone Player"))
    });
    let ended_ms = ended["unix_ms"].as_f64().expect("unix_ms");
    std::thread::sleep(Duration::from_secs(4));
    alice.terminate();
    bob.terminate();
    carol.terminate();
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    let carol = carol.finish(TIMEOUT);
    let _ = other.kill();
    let _ = other.wait();
    alice.assert_clean();
    bob.assert_clean();
    carol.assert_clean();

    let level = |peer: &Finished, from: f64, to: f64, frequency: f32| {
        tone_gain_dbfs(peer.recording_between(from, to), SAMPLE_RATE, frequency)
    };
    let (bob_voice, bob_sound, bob_other) = (
        level(&bob, heard_from, heard_from + 3000.0, 440.0),
        level(&bob, heard_from, heard_from + 3000.0, 660.0),
        level(&bob, heard_from, heard_from + 3000.0, 1000.0),
    );
    let (carol_voice, carol_sound) =
        (level(&carol, heard_from, heard_from + 3000.0, 440.0), level(&carol, heard_from, heard_from + 3000.0, 660.0));
    eprintln!(
        "bob hears voice {bob_voice:.1}, share sound {bob_sound:.1}, other app {bob_other:.1} dBFS; carol voice \
         {carol_voice:.1}, share sound {carol_sound:.1} dBFS"
    );
    assert!((bob_sound + 12.0).abs() <= 6.0, "bob, watching, hears the shared player at −12 ± 6 dBFS: {bob_sound:.1}");
    assert!(bob_other < -40.0, "only the shared application's sound is sent, not the other's: {bob_other:.1}");
    assert!((bob_voice + 12.0).abs() <= 6.0, "bob hears alice's voice beside it: {bob_voice:.1}");
    assert!(carol_sound < -40.0, "carol watches nobody and hears no share sound: {carol_sound:.1}");
    assert!((carol_voice + 12.0).abs() <= 6.0, "carol hears alice's voice: {carol_voice:.1}");
    let after = level(&bob, ended_ms + 1000.0, ended_ms + 3000.0, 660.0);
    assert!(after < -40.0, "the sound ends with the player: {after:.1}");
    assert_tone_after(&bob, ended_ms, 2.0, "after the shared sound ended");
    let stats_after = alice
        .events_named("share_stats")
        .iter()
        .filter(|event| event["unix_ms"].as_f64() > Some(ended_ms + 1000.0))
        .count();
    assert!(stats_after >= 2, "the picture goes on after the sound ended: {:?}", alice.events_named("share_stats"));
    assert!(alice.events_named("share_failed").is_empty(), "{:?}", alice.events);
}
