//! Parley clients hear each other through a real LiveKit server: checked by spectrum and level.

use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{band_energy_fraction, first_onset, tone_level_dbfs};

use crate::support::{Finished, audio_lock, join, scratch, server};

/// Level the peers send their tones at (the CLI default).
const SENT_DBFS: f32 = -12.0;
const TIMEOUT: Duration = Duration::from_secs(40);

/// Asserts that `samples` carry `frequency` at a level within 6 dB of what was sent.
fn assert_tone_present(samples: &[i16], frequency: f32, what: &str) {
    assert!(samples.len() >= SAMPLE_RATE as usize, "{what}: need at least 1 s of audio, got {} samples", samples.len());
    let level = tone_level_dbfs(samples, SAMPLE_RATE, frequency);
    assert!(
        (level - SENT_DBFS).abs() <= 6.0,
        "{what}: {frequency} Hz should arrive at {SENT_DBFS} ± 6 dBFS, got {level:.1}"
    );
}

/// Asserts that `frequency` carries at least `share` of the energy of `samples`.
fn assert_dominated_by(samples: &[i16], frequency: f32, share: f32, what: &str) {
    let fraction = band_energy_fraction(samples, SAMPLE_RATE, frequency, 25.0);
    assert!(fraction >= share, "{what}: {frequency} Hz should carry ≥ {share} of the energy, got {fraction:.3}");
}

/// Time (wall clock, ms) at which the recording first reaches −30 dBFS.
fn arrival_ms(peer: &Finished) -> f64 {
    let samples = peer.recording.as_deref().expect("recording");
    let onset = first_onset(samples, -30.0, 480)
        .unwrap_or_else(|| panic!("{} recorded only silence ({} samples)", peer.identity, samples.len()));
    peer.playout_start_ms() + onset as f64 * 1000.0 / SAMPLE_RATE as f64
}

/// The steady part of a recording: from 0.5 s after the sound arrived to 0.3 s before the end.
fn steady(peer: &Finished) -> &[i16] {
    let samples = peer.recording.as_deref().expect("recording");
    let from = arrival_ms(peer) + 500.0;
    let to = peer.playout_start_ms() + samples.len() as f64 * 1000.0 / SAMPLE_RATE as f64 - 300.0;
    peer.recording_between(from, to)
}

#[test]
fn two_clients_hear_each_others_tone() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let alice = join(&server, "duet", "alice", dir.path(), &["--tone", "440", "--record"], 6.0);
    let bob = join(&server, "duet", "bob", dir.path(), &["--tone", "880", "--record"], 6.0);
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();

    assert_dominated_by(steady(&alice), 880.0, 0.9, "alice hears bob");
    assert_tone_present(steady(&alice), 880.0, "alice hears bob");
    assert_dominated_by(steady(&bob), 440.0, 0.9, "bob hears alice");
    assert_tone_present(steady(&bob), 440.0, "bob hears alice");
    assert!(
        band_energy_fraction(steady(&alice), SAMPLE_RATE, 440.0, 25.0) < 0.02,
        "alice must not hear her own tone back"
    );

    let both_joined = alice.first_unix_ms("joined").max(bob.first_unix_ms("joined"));
    for peer in [&alice, &bob] {
        let delay = arrival_ms(peer) - both_joined;
        assert!(
            delay <= 3000.0,
            "{}: audio should arrive within 3 s of both joining, took {delay:.0} ms",
            peer.identity
        );
    }
}

#[test]
fn a_third_client_hears_both_tones_mixed() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let alice = join(&server, "trio", "alice", dir.path(), &["--tone", "440"], 7.0);
    let bob = join(&server, "trio", "bob", dir.path(), &["--tone", "880"], 7.0);
    let carol = join(&server, "trio", "carol", dir.path(), &["--record"], 6.0);
    let carol = carol.finish(TIMEOUT);
    alice.finish(TIMEOUT).assert_clean();
    bob.finish(TIMEOUT).assert_clean();
    carol.assert_clean();

    let heard = steady(&carol);
    assert_tone_present(heard, 440.0, "carol hears alice");
    assert_tone_present(heard, 880.0, "carol hears bob");
    let both =
        band_energy_fraction(heard, SAMPLE_RATE, 440.0, 25.0) + band_energy_fraction(heard, SAMPLE_RATE, 880.0, 25.0);
    assert!(both >= 0.9, "the two tones should be ≥ 90 % of what carol hears, got {both:.3}");
    let participants = carol.events_named("participant_joined").len()
        + carol.events_named("joined")[0]["participants"].as_array().map_or(0, Vec::len);
    assert_eq!(participants, 2, "carol should see alice and bob: {:?}", carol.events);
}

#[test]
fn a_client_that_leaves_is_reported_and_heard_again_after_rejoining() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let alice = join(&server, "revolving", "alice", dir.path(), &["--tone", "440", "--record"], 13.0);
    std::thread::sleep(Duration::from_millis(500));
    let first = join(&server, "revolving", "bob", dir.path(), &["--tone", "880"], 3.0).finish(TIMEOUT);
    first.assert_clean();
    std::thread::sleep(Duration::from_millis(1500));
    let second = join(&server, "revolving", "bob", dir.path(), &["--tone", "880"], 4.0).finish(TIMEOUT);
    second.assert_clean();
    let alice = alice.finish(TIMEOUT);
    alice.assert_clean();

    let left: Vec<_> =
        alice.events_named("participant_left").into_iter().filter(|event| event["identity"] == "bob").collect();
    assert_eq!(left.len(), 2, "alice should see bob leave twice: {:?}", alice.events);
    let first_left = left[0]["unix_ms"].as_f64().expect("unix_ms");
    let joined: Vec<_> =
        alice.events_named("participant_joined").into_iter().filter(|event| event["identity"] == "bob").collect();
    assert_eq!(joined.len(), 2, "alice should see bob join twice: {:?}", alice.events);
    assert!(joined[1]["unix_ms"].as_f64().expect("unix_ms") > first_left, "the rejoin comes after the leave");

    let rejoined_from = second.first_unix_ms("publishing_started") + 1000.0;
    let rejoined_to = second.last_unix_ms() - 300.0;
    let after_rejoin = alice.recording_between(rejoined_from, rejoined_to);
    assert_tone_present(after_rejoin, 880.0, "alice hears bob after he rejoined");
    let gap = alice.recording_between(first_left + 300.0, second.first_unix_ms("joined"));
    assert!(tone_level_dbfs(gap, SAMPLE_RATE, 880.0) < -50.0, "while bob is away alice hears nothing of him");
}

#[test]
fn encrypted_audio_is_heard_only_with_the_shared_passphrase() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let alice = join(&server, "secret", "alice", dir.path(), &["--tone", "660", "--e2ee-key", "correct horse"], 7.0);
    let bob = join(&server, "secret", "bob", dir.path(), &["--record", "--e2ee-key", "correct horse"], 6.0);
    let eve = join(&server, "secret", "eve", dir.path(), &["--record", "--e2ee-key", "wrong guess"], 6.0);
    let bob = bob.finish(TIMEOUT);
    let eve = eve.finish(TIMEOUT);
    alice.finish(TIMEOUT).assert_clean();
    bob.assert_clean();
    eve.assert_clean();

    assert_tone_present(steady(&bob), 660.0, "bob has the passphrase and hears alice");
    let eve_heard = eve.recording.as_deref().expect("eve's recording");
    let eve_level = tone_level_dbfs(&eve_heard[eve_heard.len() / 2..], SAMPLE_RATE, 660.0);
    assert!(eve_level < -40.0, "eve has the wrong passphrase and must not hear the tone, got {eve_level:.1} dBFS");
}

#[test]
fn an_unencrypted_speaker_is_held_back_in_an_encrypted_call_until_the_listener_allows_it() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    // Alice has no key: her audio arrives as plain Opus, which livekit-client would play.
    let alice = join(&server, "keyed", "alice", dir.path(), &["--tone", "520"], 11.0);
    let mut bob = join(&server, "keyed", "bob", dir.path(), &["--record", "--e2ee-key", "correct horse"], 9.0);
    let flagged = bob.wait_for_event("alice flagged as not encrypted", TIMEOUT, |event| {
        event["event"] == "participant_encryption" && event["identity"] == "alice"
    });
    assert_eq!(flagged["state"], "not_encrypted", "{flagged}");
    std::thread::sleep(Duration::from_millis(2500));
    let allowed_at = bob.command("allow-unencrypted alice");
    bob.wait_for_event("the choice acknowledged", TIMEOUT, |event| {
        event["event"] == "unencrypted_allowed" && event["identity"] == "alice"
    });
    let bob = bob.finish(TIMEOUT);
    alice.finish(TIMEOUT).assert_clean();
    bob.assert_clean();

    assert_eq!(bob.events_named("joined")[0]["encryption"], "end_to_end", "bob's call is encrypted: {:?}", bob.events);
    let flagged_at = flagged["unix_ms"].as_f64().expect("unix_ms");
    let held_back = bob.recording_between(flagged_at + 300.0, allowed_at);
    let level = tone_level_dbfs(held_back, SAMPLE_RATE, 520.0);
    assert!(level < -50.0, "alice's unencrypted audio is not played before bob allows it, got {level:.1} dBFS");
    let played = bob.recording_between(allowed_at + 700.0, bob.last_unix_ms() - 300.0);
    assert_tone_present(played, 520.0, "bob hears alice once he allowed her unencrypted audio");
}

#[test]
fn receive_statistics_show_the_jitter_buffer_and_a_clean_loopback_link() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let alice = join(&server, "stats", "alice", dir.path(), &["--tone", "440"], 7.0);
    let bob = join(&server, "stats", "bob", dir.path(), &["--record", "--stats", "1"], 6.0);
    let bob = bob.finish(TIMEOUT);
    alice.finish(TIMEOUT).assert_clean();
    bob.assert_clean();
    let reports = bob.events_named("receive_stats");
    assert!(reports.len() >= 3, "a report each second for 6 s: {:?}", bob.events);
    for report in &reports[1..] {
        assert_eq!(report["identity"], "alice", "{report}");
        let jitter_buffer = report["jitter_buffer_ms"].as_f64().expect("the jitter buffer emitted audio");
        let target = report["jitter_buffer_target_ms"].as_f64().expect("a target");
        // WebRTC's buffer holds at least part of a 20 ms packet, and on loopback far less than 200 ms.
        assert!((5.0..200.0).contains(&jitter_buffer), "jitter buffer {jitter_buffer} ms: {report}");
        assert!((0.0..200.0).contains(&target), "target {target} ms: {report}");
        assert_eq!(report["packets_lost"], 0, "nothing is lost on loopback: {report}");
        assert!(report["concealed_percent"].as_f64().expect("concealment") < 5.0, "{report}");
        let queue = report["mixer_queue_ms"].as_f64().expect("our mixer took part");
        assert!((0.0..=40.0).contains(&queue), "our mixer queue stays within its 40 ms bound: {report}");
        // A second is 100 mixes; a steady voice on loopback finds its queue short rarely if ever.
        let short = report["mixer_underruns"].as_u64().expect("the mixer's underruns are counted");
        assert!(short < 20, "alice's queue ran short in {short} of 100 mixes: {report}");
        // A file is written on our own clock: no device to miss a callback.
        assert_eq!(report["output_glitches"], 0, "{report}");
    }
}
