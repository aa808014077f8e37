//! Parley's Windows build in a real call: `parley.exe` (cross-built with mingw) runs under Wine in
//! a prefix this test creates, joins the real LiveKit server beside a native Linux `parley`, and
//! talks and listens through WASAPI devices, which Wine gives it on the test's private PulseAudio.

use std::path::Path;
use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{first_onset, last_offset, tone_gain_dbfs, typical_band_fraction};
use parley_audio::signal::Tone;
use parley_devserver::wine::WinePrefix;

use crate::devices::{pulse, record_monitor, samples_of, speak_into};
use crate::support::{Peer, audio_lock, join, scratch, server, wait};

/// Wine's start, the FFI's and a debug build's: generous, and still a hard stop for a hang.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `path` as a Windows program under Wine names it: Wine maps the Unix root to drive Z:.
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The steady middle of a recording: from half a second after the sound arrived to 0.1 s before
/// it stopped, at most `seconds` long. Fails the test when `what` heard only silence.
fn steady<'a>(samples: &'a [i16], seconds: usize, what: &str) -> &'a [i16] {
    let onset = first_onset(samples, -30.0, 480).unwrap_or_else(|| panic!("{what}: only silence arrived"));
    let end = last_offset(samples, -30.0, 480).expect("sound ends") - SAMPLE_RATE as usize / 10;
    let from = onset + SAMPLE_RATE as usize / 2;
    assert!(end >= from + SAMPLE_RATE as usize, "{what}: the tone lasted {} ms only", (end - onset) / 48);
    &samples[from..(from + seconds * SAMPLE_RATE as usize).min(end)]
}

/// Asserts `samples` carry `frequency` at −12 ± 6 dBFS and mostly that.
fn assert_tone(samples: &[i16], frequency: f32, what: &str) {
    let level = tone_gain_dbfs(samples, SAMPLE_RATE, frequency);
    assert!((level + 12.0).abs() <= 6.0, "{what}: {frequency} Hz should arrive at −12 ± 6 dBFS, got {level:.1}");
    let share = typical_band_fraction(samples, SAMPLE_RATE, frequency, 50.0);
    assert!(share > 0.9, "{what}: {frequency} Hz should be most of what arrives, got {share:.3}");
}

#[test]
fn parley_exe_under_wine_talks_and_listens_through_wasapi_with_a_native_parley() {
    let _serial = audio_lock();
    // Both builds before the call: a build during it would outlast parley.exe's stay.
    let exe = parley_e2e::windows_parley_binary();
    parley_e2e::parley_binary();
    let kind = parley_deps::ffi_library_for_target(parley_e2e::WINDOWS_TARGET).expect("a Windows FFI library");
    let dll = parley_deps::Layout::discover().ffi_library_of(kind);
    assert!(dll.is_file(), "{} should exist (run `cargo xtask setup`)", dll.display());
    let dir = scratch();
    let prefix = WinePrefix::create(&dir.path().join("wine-prefix"))
        .unwrap_or_else(|error| panic!("a Wine prefix (run `cargo xtask setup`): {error}"));
    let pulse = pulse(&[("speaker_w", 2), ("mic_w", 1)]);
    let server = server();

    // The Windows side's microphone hears 660 Hz; what its speaker plays is recorded.
    let mut voice = vec![0i16; SAMPLE_RATE as usize * 30];
    Tone::new(660.0, -12.0).fill(&mut voice);
    let mut mouth = speak_into(&pulse, "mic_w", &voice);
    let ear = record_monitor(&pulse, "speaker_w");

    let mut command = prefix.wine(&exe);
    command
        .args(["join", "--json", "--url", &server.url(), "--room", "crossing", "--identity", "windows"])
        .args(["--duration", "12", "--input-device", "Monitor of mic_w", "--output-device", "speaker_w"])
        // A steady tone is what noise suppression learns as noise and gain control chases: heard
        // through both, it arrived at −3.5 dBFS, then sank to −25 within 3 s (and stayed there
        // when the Linux peer joined late), so the level this test reads came down to timing.
        // Echo cancellation and the high-pass filter stay on.
        .args(["--cues", "none", "--no-ns", "--no-agc"])
        .env("LIVEKIT_API_KEY", server.api_key())
        .env("LIVEKIT_API_SECRET", server.api_secret())
        .env("LIVEKIT_LIB_PATH", windows_path(&dll))
        .env_remove("LIVEKIT_TOKEN")
        .env_remove("LIVEKIT_URL")
        .envs(pulse.env());
    let windows = Peer::spawn(&mut command, "windows", None, dir.path().join("unused.sock"));
    windows.wait_for_event("joined the room", TIMEOUT, |event| event["event"] == "joined");
    let linux = join(&server, "crossing", "linux", dir.path(), &["--tone", "880", "--record"], 8.0);
    let linux = linux.finish(TIMEOUT);
    let windows = windows.finish(TIMEOUT);
    prefix.shut_down();
    let heard_on_windows = samples_of(ear);
    mouth.kill().expect("stop pacat");
    wait(&mut mouth, Duration::from_secs(5));

    linux.assert_clean();
    windows.assert_clean();
    assert!(!windows.stderr.contains("Unhandled"), "parley.exe must not crash under Wine: {}", windows.stderr);
    assert!(
        windows.events_named("participant_joined").iter().any(|event| event["identity"] == "linux"),
        "parley.exe should see the Linux peer join: {:?}",
        windows.events
    );
    assert!(
        linux.events_named("joined")[0]["participants"]
            .as_array()
            .is_some_and(|present| present.iter().any(|participant| participant["identity"] == "windows")),
        "the Linux peer should find parley.exe in the room: {:?}",
        linux.events
    );
    let from_windows = linux.recording.as_deref().expect("the Linux peer's recording");
    assert_tone(steady(from_windows, 3, "the Linux peer"), 660.0, "Linux hears the Windows microphone");
    assert_tone(steady(&heard_on_windows, 3, "the Windows speaker"), 880.0, "Windows plays the Linux tone");
}
