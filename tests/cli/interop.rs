//! Interop with a client we did not write: LiveKit's own Python SDK (installed by setup) and
//! `parley` hear each other in one room.

use std::process::{Command, Stdio};
use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{band_energy_fraction, tone_level_dbfs};
use parley_core::token::{TokenRequest, mint};
use serde_json::Value;

use parley_capture::pattern;
use parley_devserver::display::Xvfb;
use parley_e2e::PatternWindow;

use crate::share::{assert_bars, bars_of, saved_frames};
use crate::support::{audio_lock, join, join_with_env, scratch, server, wait};

#[test]
fn parley_and_the_livekit_python_sdk_hear_each_other() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let layout = parley_deps::Layout::discover();
    let python = layout.python_peer_interpreter();
    assert!(python.is_file(), "the Python peer is missing at {}: run `cargo xtask setup`", python.display());
    let request = TokenRequest {
        room: "interop".into(),
        identity: "snake".into(),
        name: None,
        admin: false,
        ttl: Duration::from_secs(600),
    };
    let token = mint(server.api_key(), server.api_secret(), &request).expect("mint");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/python_peer.py");
    let mut snake = Command::new(&python)
        .args([script, "--url", &server.url(), "--token", &token, "--tone", "500", "--seconds", "7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python peer");
    std::thread::sleep(Duration::from_millis(500));
    let crab = join(&server, "interop", "crab", dir.path(), &["--tone", "700", "--record"], 6.0)
        .finish(Duration::from_secs(40));
    crab.assert_clean();
    let status = wait(&mut snake, Duration::from_secs(40));
    let output = snake.wait_with_output().expect("python output");
    assert!(status.success(), "the Python peer failed: {}", String::from_utf8_lossy(&output.stderr));

    let recorded = crab.recording.as_deref().expect("recording");
    let last_two_seconds = &recorded[recorded.len() - 2 * SAMPLE_RATE as usize..];
    let level = tone_level_dbfs(last_two_seconds, SAMPLE_RATE, 500.0);
    assert!((level + 12.0).abs() <= 6.0, "parley hears the Python peer's 500 Hz at −12 ± 6 dBFS, got {level:.1}");
    assert!(band_energy_fraction(last_two_seconds, SAMPLE_RATE, 500.0, 25.0) > 0.9, "and mostly that tone");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let heard: Vec<Value> = stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let crab_heard = heard
        .iter()
        .find(|event| event["event"] == "heard" && event["identity"] == "crab")
        .unwrap_or_else(|| panic!("the Python peer reported nothing about crab: {stdout}"));
    let dominant = crab_heard["dominant_hz"].as_f64().expect("dominant_hz");
    let rms = crab_heard["rms_dbfs"].as_f64().expect("rms_dbfs");
    assert!((dominant - 700.0).abs() < 5.0, "the Python peer hears parley's 700 Hz, got {dominant:.1} Hz");
    // A −12 dBFS peak sine has an RMS of −15 dBFS.
    assert!((rms + 15.0).abs() <= 6.0, "at −15 ± 6 dBFS RMS, got {rms:.1}");
}

#[test]
fn parley_and_the_livekit_python_sdk_see_each_others_screen_share() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let window = PatternWindow::open(&display.env());
    let python = parley_deps::Layout::discover().python_peer_interpreter();
    let request = TokenRequest {
        room: "interop-video".into(),
        identity: "snake".into(),
        name: None,
        admin: false,
        ttl: Duration::from_secs(600),
    };
    let token = mint(server.api_key(), server.api_secret(), &request).expect("mint");
    let bars: Vec<String> = pattern::BARS.iter().map(|[r, g, b]| format!("{r},{g},{b}")).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/python_peer.py");
    // Built before the Python peer starts: crab must join while snake still shares.
    parley_e2e::parley_binary();
    let mut snake = Command::new(&python)
        .args([script, "--url", &server.url(), "--token", &token, "--share-bars", &bars.join(";"), "--watch"])
        .args(["--seconds", "14"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python peer");
    // Its lines as they come: crab joins once snake shares (starting Python can take seconds).
    let (lines, said) = std::sync::mpsc::channel::<String>();
    let stdout = snake.stdout.take().expect("the Python peer's stdout");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut early = Vec::new();
    while !early.iter().any(|line: &String| line.contains("\"sharing\"")) {
        let line = said.recv_timeout(Duration::from_secs(30)).expect("the Python peer should start sharing");
        early.push(line);
    }
    let frames = dir.path().join("frames");
    let frames_arg = frames.to_str().expect("a UTF-8 path").to_string();
    let id = window.id.to_string();
    let crab = join_with_env(
        &server,
        "interop-video",
        "crab",
        dir.path(),
        &[
            "--share-screen",
            &id,
            "--share-quality",
            "720p30",
            "--watch",
            "snake",
            "--save-frames",
            &frames_arg,
            "--save-every",
            "30",
        ],
        8.0,
        &display.env(),
    )
    .finish(Duration::from_secs(40));
    crab.assert_clean();
    let status = wait(&mut snake, Duration::from_secs(40));
    let output = snake.wait_with_output().expect("python output");
    assert!(status.success(), "the Python peer failed: {}", String::from_utf8_lossy(&output.stderr));
    reader.join().expect("the Python peer's reader");
    let stdout = early.into_iter().chain(said.try_iter()).collect::<Vec<_>>().join("\n");

    // Parley received the Python SDK's share: full size, its bars' colours.
    // (The first pictures may come from a smaller simulcast layer, until the full-size one flows.)
    let stats = crab.events_named("watch_stats");
    assert!(
        stats.iter().any(|event| event["identity"] == "snake" && event["width"] == 1280 && event["height"] == 720),
        "crab should receive snake's share at 1280x720: {stats:?}; crab saw {:?}",
        crab.events.iter().map(|event| event["event"].as_str().unwrap_or_default()).collect::<Vec<_>>()
    );
    let saved = saved_frames(&frames);
    let last = saved.iter().rev().find(|frame| frame.width == 1280).expect("a full-size picture from snake");
    assert_bars("parley's picture of snake's share", &bars_of(last));

    // The Python SDK received Parley's share: full size, the pattern window's bars.
    let watched = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "watched" && event["identity"] == "crab")
        .unwrap_or_else(|| panic!("the Python peer reported no picture of crab's share: {stdout}"));
    assert_eq!((watched["width"].as_u64(), watched["height"].as_u64()), (Some(1280), Some(720)), "{watched}");
    assert!(watched["frames"].as_u64().is_some_and(|frames| frames >= 60), "snake should get crab's share: {watched}");
    let got: Vec<[u8; 3]> = watched["bars"]
        .as_array()
        .expect("bars")
        .iter()
        .map(|bar| {
            let channel =
                |index: usize| bar[index].as_u64().and_then(|value| u8::try_from(value).ok()).expect("a channel");
            [channel(0), channel(1), channel(2)]
        })
        .collect();
    assert_bars("the Python SDK's picture of crab's share", &got);
}
