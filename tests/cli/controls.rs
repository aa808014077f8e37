//! What a listener controls (volume, local mute, deafen) and how a speaker transmits
//! (push-to-talk, voice activity), checked by what actually arrives.

use std::process::Command;
use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{first_onset, rms_dbfs, tone_level_dbfs};
use parley_audio::signal::Tone;

use crate::devices::{pulse, record_monitor, samples_and_start};
use crate::support::{Finished, audio_lock, join, join_with_env, now_ms, parley, scratch, server};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The level of `frequency` in the listener's recording between two wall-clock times.
fn level_between(listener: &Finished, frequency: f32, from_ms: f64, to_ms: f64) -> f32 {
    tone_level_dbfs(listener.recording_between(from_ms, to_ms), SAMPLE_RATE, frequency)
}

/// Wall-clock time of the first event named `name` with `field == value`.
fn event_time(peer: &Finished, name: &str, field: &str, value: &serde_json::Value) -> f64 {
    peer.events_named(name)
        .into_iter()
        .find(|event| &event[field] == value)
        .and_then(|event| event["unix_ms"].as_f64())
        .unwrap_or_else(|| panic!("{} reported no {name} with {field} = {value}: {:?}", peer.identity, peer.events))
}

#[test]
fn volume_local_mute_and_deafen_change_what_comes_out_of_the_speaker() {
    let _serial = audio_lock();
    let pulse = pulse(&[("speaker_b", 2)]);
    let server = server();
    let dir = scratch();
    let env = pulse.env();
    let alice = join(&server, "mixing", "alice", dir.path(), &["--tone", "440"], 16.0);
    let ear = record_monitor(&pulse, "speaker_b");
    let mut bob = join_with_env(
        &server,
        "mixing",
        "bob",
        dir.path(),
        &["--output-device", "speaker_b", "--cues", "none"],
        14.0,
        &env,
    );
    std::thread::sleep(Duration::from_millis(4000));
    let half = bob.command("volume alice 50");
    std::thread::sleep(Duration::from_millis(2000));
    let double = bob.command("volume alice 200");
    std::thread::sleep(Duration::from_millis(2000));
    let muted = bob.command("local-mute alice");
    std::thread::sleep(Duration::from_millis(2000));
    bob.command("local-unmute alice");
    let deafened = bob.command("deafen");
    std::thread::sleep(Duration::from_millis(2000));
    let end = now_ms();
    let (heard, ear_started) = samples_and_start(ear);
    let bob = bob.finish(TIMEOUT);
    alice.finish(TIMEOUT).assert_clean();
    bob.assert_clean();

    // 400 ms margins absorb the path's latency.
    let segment = |from_ms: f64, to_ms: f64| {
        let index = |ms: f64| (((ms - ear_started) / 1000.0 * SAMPLE_RATE as f64).max(0.0) as usize).min(heard.len());
        &heard[index(from_ms + 400.0)..index(to_ms - 100.0)]
    };
    // A new stream on a null sink takes 0.5–2 s to start: measure "normal" from when the tone
    // actually began, not from a fixed time.
    let onset = first_onset(&heard, -30.0, 480).expect("alice's tone reached bob's speaker") as f64 * 1000.0
        / SAMPLE_RATE as f64
        + ear_started;
    assert!(half - onset >= 800.0, "the tone began at least 800 ms before the volume change ({:.0} ms)", half - onset);
    let normal = tone_level_dbfs(segment(f64::max(half - 1800.0, onset - 200.0), half), SAMPLE_RATE, 440.0);
    let quiet = tone_level_dbfs(segment(half, double), SAMPLE_RATE, 440.0);
    let loud = tone_level_dbfs(segment(double, muted), SAMPLE_RATE, 440.0);
    assert!((normal + 12.0).abs() <= 6.0, "at 100 % the speaker plays −12 ± 6 dBFS, got {normal:.1}");
    assert!((quiet - normal + 6.0).abs() <= 1.5, "50 % is −6 ± 1.5 dB at the speaker: {normal:.1} → {quiet:.1}");
    assert!((loud - normal - 6.0).abs() <= 1.5, "200 % is +6 ± 1.5 dB at the speaker: {normal:.1} → {loud:.1}");
    let silenced = rms_dbfs(segment(muted, deafened));
    assert!(silenced < -60.0, "local mute silences alice at the speaker, got {silenced:.1} dBFS");
    let deaf = rms_dbfs(segment(deafened, end));
    assert!(deaf < -60.0, "deafened, the speaker is silent, got {deaf:.1} dBFS");
    assert_eq!(bob.events_named("volume_changed").len(), 2, "both volume changes were reported");
    assert_eq!(bob.events_named("deafen_changed")[0]["deafened"], true);
    let opened = bob.events_named("device_opened");
    assert_eq!(opened.len(), 1, "the output device is reported once: {:?}", bob.events);
    assert_eq!(opened[0]["sample_rate"], 48000);
    assert!(
        opened[0]["buffer_frames"].as_u64().is_some_and(|frames| frames <= 960),
        "a small buffer was granted: {}",
        opened[0]
    );
}

#[test]
fn push_to_talk_sends_only_while_held_and_for_the_release_delay() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let mut alice = join(
        &server,
        "walkie",
        "alice",
        dir.path(),
        &["--tone", "660", "--mode", "ptt", "--ptt-release-ms", "400"],
        11.0,
    );
    let bob = join(&server, "walkie", "bob", dir.path(), &["--record"], 10.0);
    std::thread::sleep(Duration::from_millis(3500));
    // Press through the control socket (as a compositor key binding would), release on stdin.
    let pressed_at = now_ms();
    let pressed = parley().args(["ctl", "--socket"]).arg(&alice.socket).arg("ptt-start").output().expect("parley ctl");
    assert!(pressed.status.success(), "ctl ptt-start: {}", String::from_utf8_lossy(&pressed.stderr));
    assert_eq!(String::from_utf8_lossy(&pressed.stdout).trim(), "ok");
    std::thread::sleep(Duration::from_millis(2500));
    let released_at = alice.command("ptt-stop");
    std::thread::sleep(Duration::from_millis(2500));
    let bob = bob.finish(TIMEOUT);
    let alice = alice.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    let on = event_time(&alice, "transmit_changed", "on", &true.into());
    let transmits: Vec<_> = alice.events_named("transmit_changed");
    let off = transmits
        .iter()
        .filter(|event| event["on"] == false)
        .filter_map(|event| event["unix_ms"].as_f64())
        .find(|&at| at > on)
        .expect("the gate closed after the release");
    assert!(on >= pressed_at - 50.0, "the gate opened only after the press");
    let delay = off - released_at;
    assert!((300.0..1500.0).contains(&delay), "the gate closes ~400 ms after release, took {delay:.0} ms");

    let before = level_between(&bob, 660.0, bob.first_unix_ms("joined") + 500.0, pressed_at);
    assert!(before < -60.0, "nothing is heard before ptt-start, got {before:.1} dBFS");
    let during = level_between(&bob, 660.0, on + 600.0, released_at);
    assert!((during + 12.0).abs() <= 6.0, "the tone is heard while held, got {during:.1} dBFS");
    let after = level_between(&bob, 660.0, off + 600.0, bob.last_unix_ms() - 300.0);
    assert!(after < -60.0, "nothing after the release delay, got {after:.1} dBFS");
}

#[test]
fn voice_activity_sends_speech_but_not_background_noise() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    // 4 s of quiet noise (about −56 dBFS RMS), then 4 s of a tone at −12 dBFS.
    let mut clip = Vec::with_capacity(SAMPLE_RATE as usize * 8);
    let mut seed = 1u32;
    for _ in 0..SAMPLE_RATE * 4 {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        clip.push(((seed >> 16) as i16) / 512);
    }
    let mut tone = vec![0i16; SAMPLE_RATE as usize * 4];
    Tone::new(520.0, -12.0).fill(&mut tone);
    clip.extend_from_slice(&tone);
    let clip_path = dir.path().join("speech.wav");
    parley_audio::wav::write_mono_48k(&clip_path, &clip).expect("write clip");
    let bob = join(&server, "vox", "bob", dir.path(), &["--record"], 11.0);
    std::thread::sleep(Duration::from_millis(1000));
    let clip_arg = clip_path.to_string_lossy().to_string();
    let alice = join(
        &server,
        "vox",
        "alice",
        dir.path(),
        &["--play", &clip_arg, "--mode", "vad", "--vad-threshold", "-40"],
        9.0,
    );
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    let started = alice.first_unix_ms("publishing_started");
    let noise = rms_dbfs(bob.recording_between(started + 500.0, started + 3800.0));
    assert!(noise < -60.0, "background noise below the threshold is not sent, bob got {noise:.1} dBFS");
    let speech = level_between(&bob, 520.0, started + 4800.0, started + 7500.0);
    assert!((speech + 12.0).abs() <= 6.0, "speech above the threshold is sent, bob got {speech:.1} dBFS");
    let opened = event_time(&alice, "transmit_changed", "on", &true.into());
    assert!(opened - started > 3500.0, "the gate opened for the speech, not the noise ({:.0} ms)", opened - started);
}

#[test]
fn ctl_without_a_running_session_says_so() {
    let output = parley().args(["ctl", "--socket", "/nonexistent/parley.sock", "ptt-start"]).output().expect("run ctl");
    assert_eq!(output.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no running parley listens on /nonexistent/parley.sock"), "{stderr}");
    let bad = Command::new(parley_e2e::parley_binary()).args(["ctl", "shout"]).output().expect("run ctl");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown command"), "a bad command is explained");
}

#[test]
fn the_mute_button_mutes_the_track_so_others_see_it_and_hear_nothing() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let mut alice = join(&server, "hush", "alice", dir.path(), &["--tone", "330"], 9.0);
    let bob = join(&server, "hush", "bob", dir.path(), &["--record"], 8.0);
    std::thread::sleep(Duration::from_millis(3000));
    let muted_at = alice.command("mute");
    std::thread::sleep(Duration::from_millis(2500));
    let unmuted_at = alice.command("unmute");
    std::thread::sleep(Duration::from_millis(2000));
    let bob = bob.finish(TIMEOUT);
    let alice = alice.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    let seen = bob.events_named("track_muted");
    assert_eq!(seen.len(), 1, "bob sees alice's track muted once: {:?}", bob.events);
    assert_eq!(seen[0]["identity"], "alice");
    assert_eq!(bob.events_named("track_unmuted").len(), 1, "and unmuted again");
    let during = level_between(&bob, 330.0, muted_at + 500.0, unmuted_at);
    assert!(during < -60.0, "a muted track is silent for bob, got {during:.1} dBFS");
    let after = level_between(&bob, 330.0, unmuted_at + 700.0, bob.last_unix_ms() - 300.0);
    assert!((after + 12.0).abs() <= 6.0, "unmuted, alice is heard again, got {after:.1} dBFS");
}

#[test]
fn levels_report_the_microphone_and_each_speaker_for_meters_and_speaking_rings() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let alice = join(&server, "meters", "alice", dir.path(), &["--tone", "440", "--levels"], 5.0);
    let bob = join(&server, "meters", "bob", dir.path(), &["--record", "--levels"], 4.5);
    let bob = bob.finish(TIMEOUT);
    let alice = alice.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    let alice_levels = alice.events_named("levels");
    assert!(alice_levels.len() >= 30, "about ten reports a second, got {}", alice_levels.len());
    let input = alice_levels.last().and_then(|event| event["input_dbfs"].as_f64()).expect("input_dbfs");
    assert!((input + 15.0).abs() <= 1.0, "a −12 dBFS peak tone meters at −15 dBFS RMS, got {input:.1}");
    let heard: Vec<f64> =
        bob.events_named("levels").iter().filter_map(|event| event["participants"]["alice"].as_f64()).collect();
    let loudest = heard.iter().copied().fold(f64::MIN, f64::max);
    assert!((loudest + 12.0).abs() <= 3.0, "bob's meter shows alice's −12 dBFS peaks, got {loudest:.1}");
    let quiet = bob.events_named("levels")[0]["participants"].as_object().map_or(0, |participants| participants.len());
    assert_eq!(quiet, 0, "before anyone is heard, no participant is metered");
}
