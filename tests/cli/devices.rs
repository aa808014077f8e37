//! Real sound devices: a private PulseAudio daemon with null sinks, driven through cpal.

use std::process::{Command, Stdio};
use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{
    dominant_frequency, first_onset, last_offset, rms_dbfs, tone_gain_dbfs, tone_level_dbfs, typical_band_fraction,
};
use parley_audio::signal::Tone;
use parley_core::token::{TokenRequest, mint};
use parley_devserver::pulse::{NullSink, PulseServer};
use serde_json::Value;

use crate::support::{audio_lock, join_with_env, now_ms, parley, scratch, server, wait};

pub(crate) fn pulse(sinks: &[(&str, u16)]) -> PulseServer {
    let sinks: Vec<NullSink> = sinks.iter().map(|(name, channels)| NullSink::new(name, *channels)).collect();
    PulseServer::start(&sinks).unwrap_or_else(|error| panic!("PulseAudio (run `cargo xtask setup`): {error}"))
}

#[test]
fn devices_are_listed_with_stable_ids_and_defaults() {
    let pulse = pulse(&[("speaker_a", 2), ("mic_a", 1)]);
    let output = parley().args(["devices", "--json"]).envs(pulse.env()).output().expect("run devices");
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let devices: Vec<Value> = serde_json::from_slice(&output.stdout).expect("a JSON array");
    let find = |id: &str| {
        devices.iter().find(|device| device["id"] == id).unwrap_or_else(|| panic!("{id} missing from {devices:?}"))
    };
    let speaker = find("pulseaudio:speaker_a");
    assert_eq!(speaker["direction"], "output");
    assert_eq!(speaker["is_default"], true, "the first sink is the default output");
    assert_eq!(speaker["default_channels"], 2);
    let mic = find("pulseaudio:speaker_a.monitor");
    assert_eq!(mic["direction"], "input");
    assert_eq!(find("pulseaudio:mic_a.monitor")["is_default"], false);
}

#[test]
fn a_missing_device_is_named_with_the_available_ones() {
    let pulse = pulse(&[("speaker_a", 2)]);
    let request = TokenRequest {
        room: "lobby".into(),
        identity: "alice".into(),
        name: None,
        admin: false,
        ttl: Duration::from_secs(600),
    };
    let token = mint("APIkey", "secret-secret-secret-secret-secret-secret", &request).expect("mint");
    let output = parley()
        .args(["join", "--url", "ws://127.0.0.1:9", "--input-device", "no-such-mic"])
        .env("LIVEKIT_TOKEN", &token)
        .envs(pulse.env())
        .output()
        .expect("run join");
    assert_eq!(output.status.code(), Some(8), "a device error has its own exit code");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("no input device \"no-such-mic\""), "{stderr}");
    assert!(stderr.contains("Monitor of speaker_a"), "the available devices are listed: {stderr}");
}

/// Plays `samples` (48 kHz mono) into a sink with `pacat`, as a person speaking into a microphone.
pub(crate) fn speak_into(pulse: &PulseServer, sink: &str, samples: &[i16]) -> std::process::Child {
    speak_as(pulse, sink, "pacat", samples)
}

/// [`speak_into`] as an application named `app` (its playback stream's client name).
pub(crate) fn speak_as(pulse: &PulseServer, sink: &str, app: &str, samples: &[i16]) -> std::process::Child {
    let mut child = Command::new("pacat")
        .args(["--playback", "--device", sink, "--rate=48000", "--channels=1", "--format=s16le", "--latency-msec=20"])
        .arg(format!("--client-name={app}"))
        .envs(pulse.env())
        .stdin(Stdio::piped())
        .spawn()
        .expect("pacat");
    let mut stdin = child.stdin.take().expect("stdin");
    let bytes: Vec<u8> = samples.iter().flat_map(|sample| sample.to_le_bytes()).collect();
    std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
    child
}

/// `parec` recording a sink's monitor (48 kHz mono); its output is drained as it arrives.
pub(crate) struct Ear {
    child: std::process::Child,
    /// The bytes, and the wall-clock ms at which the first sample was recorded.
    reader: std::thread::JoinHandle<(Vec<u8>, f64)>,
}

pub(crate) fn record_monitor(pulse: &PulseServer, sink: &str) -> Ear {
    let mut child = Command::new("parec")
        .args([
            "--device",
            &format!("{sink}.monitor"),
            "--rate=48000",
            "--channels=1",
            "--format=s16le",
            "--latency-msec=20",
        ])
        .envs(pulse.env())
        .stdout(Stdio::piped())
        .spawn()
        .expect("parec");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut first_sample_ms = 0.0;
        while let Ok(read) = std::io::Read::read(&mut stdout, &mut chunk) {
            if read == 0 {
                break;
            }
            if bytes.is_empty() {
                // The first chunk left PulseAudio about its own duration after its first sample.
                first_sample_ms = now_ms() - (read / 2) as f64 * 1000.0 / SAMPLE_RATE as f64;
            }
            bytes.extend_from_slice(&chunk[..read]);
        }
        (bytes, first_sample_ms)
    });
    Ear { child, reader }
}

pub(crate) fn samples_of(ear: Ear) -> Vec<i16> {
    samples_and_start(ear).0
}

/// The recording and the wall-clock ms of its first sample.
pub(crate) fn samples_and_start(mut ear: Ear) -> (Vec<i16>, f64) {
    ear.child.kill().expect("stop parec");
    wait(&mut ear.child, Duration::from_secs(5));
    let (bytes, started) = ear.reader.join().expect("parec reader");
    (bytes.chunks_exact(2).map(|pair| i16::from_le_bytes([pair[0], pair[1]])).collect(), started)
}

/// Ends a two-peer call through real devices: both peers finish cleanly, the voice stops, and
/// what the speaker's monitor recorded comes back.
fn end_call(
    alice: crate::support::Peer,
    bob: crate::support::Peer,
    ear: Ear,
    mut mouth: std::process::Child,
) -> (crate::support::Finished, crate::support::Finished, Vec<i16>) {
    let bob = bob.finish(Duration::from_secs(40));
    let alice = alice.finish(Duration::from_secs(40));
    let heard = samples_of(ear);
    mouth.kill().expect("stop pacat");
    wait(&mut mouth, Duration::from_secs(5));
    alice.assert_clean();
    bob.assert_clean();
    (alice, bob, heard)
}

#[test]
fn a_voice_from_one_microphone_device_reaches_the_other_speaker_device() {
    let _serial = audio_lock();
    // Built before the voice starts: a first build would take longer than the voice lasts.
    parley_e2e::parley_binary();
    let pulse = pulse(&[("speaker_b", 2), ("mic_a", 1)]);
    let server = server();
    let dir = scratch();
    let mut voice = vec![0i16; SAMPLE_RATE as usize * 12];
    Tone::new(880.0, -12.0).fill(&mut voice);
    let mouth = speak_into(&pulse, "mic_a", &voice);
    let ear = record_monitor(&pulse, "speaker_b");
    let env = pulse.env();
    let alice =
        join_with_env(&server, "devices", "alice", dir.path(), &["--input-device", "mic_a.monitor"], 10.0, &env);
    let bob = join_with_env(
        &server,
        "devices",
        "bob",
        dir.path(),
        &["--output-device", "speaker_b", "--cues", "none"],
        8.0,
        &env,
    );
    let (_, _, heard) = end_call(alice, bob, ear, mouth);

    assert!(heard.len() > 4 * SAMPLE_RATE as usize, "parec recorded {} samples", heard.len());
    // parec runs longer than bob, and a slow join leaves less of bob's call: take up to 2 s
    // from half a second after the sound arrived, ending before it stops.
    let onset = first_onset(&heard, -30.0, 480).expect("bob's speaker stayed silent");
    let end = last_offset(&heard, -30.0, 480).expect("sound ends") - SAMPLE_RATE as usize / 10;
    let from = onset + SAMPLE_RATE as usize / 2;
    assert!(end >= from + SAMPLE_RATE as usize, "bob heard alice for {} ms only", (end - onset) / 48);
    let steady = &heard[from..(from + 2 * SAMPLE_RATE as usize).min(end)];
    // The tone as it plays (a playout gap on a loaded machine is not a wrong level), and over
    // the whole stretch with gaps counted (it must not be mostly gaps).
    let level = tone_gain_dbfs(steady, SAMPLE_RATE, 880.0);
    let with_gaps = tone_level_dbfs(steady, SAMPLE_RATE, 880.0);
    assert!(
        (level + 12.0).abs() <= 6.0,
        "bob's speaker plays alice's 880 Hz at −12 ± 6 dBFS, got {level:.1} over {} ms",
        steady.len() / 48
    );
    assert!(with_gaps >= level - 6.0, "bob should hear the tone most of the time: {with_gaps:.1} vs {level:.1} dBFS");
    let share = typical_band_fraction(steady, SAMPLE_RATE, 880.0, 50.0);
    assert!(share > 0.9, "and mostly that tone, got {share:.3}");
}

/// `bench audio`'s comparison mode: the engine's own device module records alice's microphone
/// and plays on bob's speaker: the default devices, which PulseAudio's environment variables
/// choose (the server's own defaults are elsewhere).
#[test]
fn the_engines_own_devices_carry_a_voice_when_asked_to() {
    let _serial = audio_lock();
    // Built before the voice starts: a first build would take longer than the voice lasts.
    parley_e2e::parley_binary();
    let pulse = pulse(&[("spare", 1), ("speaker_b", 2), ("mic_a", 1)]);
    let server = server();
    let dir = scratch();
    // Chirps, not a steady tone: the engine's noise suppression takes a steady tone for noise.
    let mut voice = vec![0i16; SAMPLE_RATE as usize * 12];
    for second in 0..12 {
        let at = second * SAMPLE_RATE as usize;
        Tone::new(660.0 + 110.0 * (second % 3) as f64, -12.0).fill(&mut voice[at..at + SAMPLE_RATE as usize / 2]);
    }
    // The module lists no monitor sources as microphones: a remap of the monitor is one.
    let remap = "module-remap-source source_name=mic_in master=mic_a.monitor";
    pulse.pactl(&std::iter::once("load-module").chain(remap.split(' ')).collect::<Vec<_>>()).expect("remap");
    let mouth = speak_into(&pulse, "mic_a", &voice);
    let ear = record_monitor(&pulse, "speaker_b");
    let with = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut env = pulse.env();
        env.extend(pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())));
        env
    };
    let alice_env = with(&[("PULSE_SOURCE", "mic_in"), ("PULSE_SINK", "spare")]);
    let alice =
        join_with_env(&server, "platform", "alice", dir.path(), &["--platform-audio", "talk"], 10.0, &alice_env);
    let bob_env = with(&[("PULSE_SINK", "speaker_b")]);
    let bob = join_with_env(&server, "platform", "bob", dir.path(), &["--platform-audio", "listen"], 8.0, &bob_env);
    let (alice, bob, heard) = end_call(alice, bob, ear, mouth);
    let directions = |finished: &crate::support::Finished| -> Vec<String> {
        let events = finished.events_named("device_opened");
        events.iter().map(|event| event["direction"].as_str().unwrap_or_default().to_string()).collect()
    };
    assert_eq!(directions(&alice), ["output", "input"], "alice's module plays and records");
    assert_eq!(directions(&bob), ["output"], "bob's module only plays");

    let peak = heard.iter().map(|sample| sample.unsigned_abs()).max().unwrap_or(0);
    let onset = first_onset(&heard, -40.0, 480).unwrap_or_else(|| {
        panic!("bob's speaker stayed silent: peak {peak}, alice's activity {:?}", alice.events_named("active_speakers"))
    });
    let burst = &heard[onset + 2400..(onset + 2400 + SAMPLE_RATE as usize / 4).min(heard.len())];
    let frequency = dominant_frequency(burst, SAMPLE_RATE);
    assert!(
        [660.0, 770.0, 880.0].iter().any(|expected| (frequency - expected).abs() < 20.0),
        "bob hears one of alice's chirps, got {frequency:.0} Hz at {:.1} dBFS",
        rms_dbfs(burst)
    );
}

#[test]
fn the_microphone_test_plays_the_microphone_on_the_speaker_and_reports_its_peak() {
    let _serial = audio_lock();
    let pulse = pulse(&[("speaker_a", 2), ("mic_a", 1)]);
    let mut voice = vec![0i16; SAMPLE_RATE as usize * 8];
    Tone::new(660.0, -20.0).fill(&mut voice);
    let mut mouth = speak_into(&pulse, "mic_a", &voice);
    let ear = record_monitor(&pulse, "speaker_a");
    let output = parley()
        .args(["mic-test", "--input-device", "mic_a.monitor", "--output-device", "speaker_a", "--seconds", "4"])
        .envs(pulse.env())
        .output()
        .expect("run mic-test");
    let heard = samples_of(ear);
    mouth.kill().expect("stop pacat");
    wait(&mut mouth, Duration::from_secs(5));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "exit {:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));

    let onset = first_onset(&heard, -40.0, 480).expect("the speaker stayed silent");
    let steady = &heard[onset + SAMPLE_RATE as usize / 2..(onset + 2 * SAMPLE_RATE as usize).min(heard.len())];
    // As the tone plays: a loaded CI machine once left gaps that read 2.5 dB low over the stretch.
    let level = tone_gain_dbfs(steady, SAMPLE_RATE, 660.0);
    let with_gaps = tone_level_dbfs(steady, SAMPLE_RATE, 660.0);
    assert!((level + 20.0).abs() <= 1.5, "the speaker plays the microphone's −20 dBFS tone unchanged, got {level:.1}");
    assert!(with_gaps >= level - 6.0, "the speaker should play it most of the time: {with_gaps:.1} vs {level:.1} dBFS");
    let share = typical_band_fraction(steady, SAMPLE_RATE, 660.0, 50.0);
    assert!(share > 0.95, "and only that tone, got {share:.3}");
    let peaks: Vec<f32> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("input peak ")?.strip_suffix(" dBFS")?.parse().ok())
        .collect();
    assert!(peaks.len() >= 3, "a peak each second: {stdout}");
    // `Tone`'s level is its amplitude, so its peak reads the same.
    let last = peaks[peaks.len() - 1];
    assert!((last + 20.0).abs() <= 1.5, "the printed peak follows the input: {stdout}");
}

#[test]
fn the_microphone_test_names_a_missing_device() {
    let pulse = pulse(&[("speaker_a", 2)]);
    let output = parley()
        .args(["mic-test", "--input-device", "no-such-mic", "--seconds", "1"])
        .envs(pulse.env())
        .output()
        .expect("run mic-test");
    assert_eq!(output.status.code(), Some(8), "a device error has its own exit code");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no input device \"no-such-mic\""), "{stderr}");
}

/// One round of the echo test: bob's speaker feeds straight back into his microphone (a null
/// sink and its own monitor); returns how loud alice hears her own tone come back from him.
fn echo_returned_to_alice(echo_cancellation: bool) -> f32 {
    let pulse = pulse(&[("room_b", 1)]);
    let server = server();
    let dir = scratch();
    let env = pulse.env();
    let mut bob_args =
        vec!["--input-device", "room_b.monitor", "--output-device", "room_b", "--no-ns", "--no-agc", "--cues", "none"];
    if !echo_cancellation {
        bob_args.push("--no-aec");
    }
    let alice = join_with_env(&server, "echo", "alice", dir.path(), &["--tone", "440", "--record"], 14.0, &env);
    std::thread::sleep(Duration::from_millis(500));
    let bob = join_with_env(&server, "echo", "bob", dir.path(), &bob_args, 12.0, &env);
    let bob = bob.finish(Duration::from_secs(40));
    let alice = alice.finish(Duration::from_secs(40));
    alice.assert_clean();
    bob.assert_clean();
    // The last 6 s of bob's stay: the echo canceller has had time to converge.
    let until = bob.last_unix_ms() - 500.0;
    tone_level_dbfs(alice.recording_between(until - 6000.0, until), SAMPLE_RATE, 440.0)
}

#[test]
fn echo_cancellation_removes_what_the_speaker_plays_back_into_the_microphone() {
    let _serial = audio_lock();
    let without = echo_returned_to_alice(false);
    let with = echo_returned_to_alice(true);
    eprintln!("echo returned to alice: {without:.1} dBFS without echo cancellation, {with:.1} dBFS with it");
    assert!(
        without > -30.0,
        "without echo cancellation alice hears herself back (the test's echo path works): {without:.1} dBFS"
    );
    assert!(without - with >= 20.0, "echo cancellation takes ≥ 20 dB off the echo: {without:.1} → {with:.1} dBFS");
}

#[test]
fn playback_moves_to_the_fallback_device_when_the_speaker_vanishes() {
    let _serial = audio_lock();
    let pulse = pulse(&[("speaker_b", 2), ("backup_b", 2)]);
    let server = server();
    let dir = scratch();
    let env = pulse.env();
    let alice = join_with_env(&server, "unplug", "alice", dir.path(), &["--tone", "440"], 14.0, &env);
    let bob = join_with_env(&server, "unplug", "bob", dir.path(), &["--output-device", "speaker_b"], 12.0, &env);
    let backup = record_monitor(&pulse, "backup_b");
    std::thread::sleep(Duration::from_secs(4));
    let module = pulse.sink_module("speaker_b").expect("speaker_b's module");
    pulse.pactl(&["unload-module", &module.to_string()]).expect("unplug speaker_b");
    let unplugged = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let heard = samples_of(backup);
    let recorded_after_unplug = unplugged.elapsed();
    let bob = bob.finish(Duration::from_secs(40));
    alice.finish(Duration::from_secs(40)).assert_clean();
    bob.assert_clean();

    let changed = bob.events_named("device_changed");
    assert_eq!(changed.len(), 1, "bob reports one device change: {:?}", bob.events);
    assert!(changed[0]["message"].as_str().is_some_and(|message| message.contains("backup_b")), "{:?}", changed[0]);
    assert!(
        bob.events_named("disconnected").iter().all(|event| event["code"] == "client_initiated"),
        "bob stayed in the room"
    );
    // parec on backup_b ran for the last `recorded_after_unplug` of its recording.
    let after_unplug =
        &heard[heard.len().saturating_sub((recorded_after_unplug.as_secs_f64() * SAMPLE_RATE as f64) as usize)..];
    let onset = first_onset(after_unplug, -30.0, 480).expect("bob's audio never reached the fallback device");
    let moved_after = onset as f64 / SAMPLE_RATE as f64;
    assert!(moved_after <= 2.0, "playback moved within 2 s of the unplug, took {moved_after:.2} s");
    let tail = &after_unplug[onset..];
    let level = tone_level_dbfs(&tail[tail.len() / 2..], SAMPLE_RATE, 440.0);
    assert!((level + 12.0).abs() <= 6.0, "the fallback plays alice at −12 ± 6 dBFS, got {level:.1}");
}

#[test]
fn cues_confirm_joining_and_muting_on_the_output_device_and_can_be_turned_off() {
    let _serial = audio_lock();
    let pulse = pulse(&[("speaker_c", 1)]);
    let server = server();
    let dir = scratch();
    let env = pulse.env();
    let ear = record_monitor(&pulse, "speaker_c");
    std::thread::sleep(Duration::from_millis(300));
    let mut carol = join_with_env(&server, "cues", "carol", dir.path(), &["--output-device", "speaker_c"], 7.0, &env);
    std::thread::sleep(Duration::from_millis(2000));
    carol.command("mute");
    // The cue stream is open around cues only: beside the voice's while a cue plays, gone once
    // quiet (an open stream plays silence, which costs CPU all call long).
    let streams = || pulse.pactl(&["list", "short", "sink-inputs"]).expect("pactl").lines().count();
    std::thread::sleep(Duration::from_millis(300));
    let while_cueing = streams();
    std::thread::sleep(parley_audio::cue::IDLE_CLOSE + Duration::from_millis(1500));
    let quiet = streams();
    assert_eq!(while_cueing, 2, "the voice's playback stream and the cue stream");
    assert_eq!(quiet, 1, "the cue stream closes once quiet; the voice's stays");
    let carol = carol.finish(Duration::from_secs(30));
    carol.assert_clean();
    std::thread::sleep(Duration::from_millis(300));
    let heard = samples_of(ear);

    let notes = |from: usize| -> (f32, f32) {
        let first = dominant_frequency(&heard[from + 480..from + 2880], SAMPLE_RATE);
        let second = dominant_frequency(&heard[from + 5280..from + 7680], SAMPLE_RATE);
        (first, second)
    };
    let joined = first_onset(&heard, -30.0, 240).expect("the joined cue played");
    let (first, second) = notes(joined);
    assert!(
        (first - 660.0).abs() < 20.0 && (second - 880.0).abs() < 20.0,
        "joined cue rises 660 → 880 Hz, got {first:.0} → {second:.0}"
    );
    let after_join = joined + SAMPLE_RATE as usize / 4; // the joined cue lasts 210 ms
    let muted = after_join + first_onset(&heard[after_join..], -30.0, 240).expect("the muted cue played");
    let (first, second) = (
        dominant_frequency(&heard[muted + 240..muted + 2640], SAMPLE_RATE),
        dominant_frequency(&heard[muted + 3120..muted + 6960], SAMPLE_RATE),
    );
    assert!(
        (first - 520.0).abs() < 20.0 && (second - 390.0).abs() < 20.0,
        "muted cue falls 520 → 390 Hz, got {first:.0} → {second:.0}"
    );

    let silent_ear = record_monitor(&pulse, "speaker_c");
    let quiet = join_with_env(
        &server,
        "cues",
        "dave",
        dir.path(),
        &["--output-device", "speaker_c", "--cues", "none"],
        2.0,
        &env,
    );
    quiet.finish(Duration::from_secs(30)).assert_clean();
    let silence = samples_of(silent_ear);
    assert!(rms_dbfs(&silence) < -60.0, "with --cues none nothing plays, got {:.1} dBFS", rms_dbfs(&silence));
}

/// Regression: each check of the default device opened a new PulseAudio client and never closed
/// it; after a minute the server refused every connection (its limit is 64).
#[test]
fn watching_the_device_does_not_leak_sound_server_connections() {
    let _serial = audio_lock();
    let pulse = pulse(&[("speaker_d", 2)]);
    let server = server();
    let dir = scratch();
    let env = pulse.env();
    let clients = || pulse.pactl(&["list", "short", "clients"]).expect("pactl").lines().count();
    let alice = join_with_env(&server, "leak", "alice", dir.path(), &["--tone", "440"], 16.0, &env);
    let dave = join_with_env(
        &server,
        "leak",
        "dave",
        dir.path(),
        &["--output-device", "speaker_d", "--cues", "none"],
        14.0,
        &env,
    );
    std::thread::sleep(Duration::from_secs(3));
    let early = clients();
    std::thread::sleep(Duration::from_secs(9));
    let late = clients();
    dave.finish(Duration::from_secs(30)).assert_clean();
    alice.finish(Duration::from_secs(30)).assert_clean();
    assert!(late <= early, "the client count must not grow while the device is watched: {early} → {late}");
}
