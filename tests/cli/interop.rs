//! Interop with a client we did not write: LiveKit's own Python SDK (installed by setup) and
//! `parley` hear each other in one room.

use std::process::{Command, Stdio};
use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{band_energy_fraction, tone_level_dbfs};
use parley_core::token::{TokenRequest, mint};
use serde_json::Value;

use crate::support::{audio_lock, join, scratch, server, wait};

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
