//! The playback mixer: one bounded queue per remote track, per-user gain and mute, master
//! volume and deafen, then a soft limiter.
//!
//! Queues are bounded: when frames arrive faster than they are played (a burst after a network
//! hiccup, two clocks drifting) the oldest samples are dropped, so latency never grows beyond
//! `max_queue_ms`. A queue that never runs low is a standing delay: frames arrive on the
//! engine's clock and leave on the sound card's, and whatever phase the two start with stays in
//! the queue. Every [`TRIM_WINDOW_MIXES`] mixes, a queue whose lowest level stayed above one frame
//! is trimmed down to half a frame ([`Mixer::mix`] counts it in `trimmed_samples`).
//! [`Mixer::mix`] takes exactly one output frame from each queue and allocates
//! nothing once the sources exist; it is meant for an audio worker thread.

use std::collections::{HashMap, VecDeque};

/// Statistics of one source, for diagnostics and speaking indicators.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SourceStats {
    /// Peak of the last mixed frame, after gain, 0.0–1.0.
    pub level: f32,
    /// Samples dropped because the queue was full (latency capped).
    pub dropped_samples: u64,
    /// Mixed frames for which the source had fewer samples than needed.
    pub underruns: u64,
    /// Samples waiting now.
    pub queued_samples: usize,
    /// Samples skipped to remove a standing delay.
    pub trimmed_samples: u64,
    /// Mixes this source took part in, and the sum of what was left in its queue after each:
    /// their ratio is the queue's mean standing delay (in samples) over an interval.
    pub mixes: u64,
    pub queued_after_mixes: u64,
}

impl SourceStats {
    /// The queue's mean standing delay between `earlier` and `self`, ms (`None` without mixes).
    pub fn mean_queue_ms_since(&self, earlier: &SourceStats) -> Option<f64> {
        let mixes = self.mixes.saturating_sub(earlier.mixes);
        let queued = self.queued_after_mixes.saturating_sub(earlier.queued_after_mixes);
        (mixes > 0).then(|| queued as f64 * 1000.0 / mixes as f64 / f64::from(crate::SAMPLE_RATE))
    }
}

/// How many mixes (10 ms each) a queue's lowest level is watched before a standing delay is
/// trimmed: long enough to see the engine's and the device's frames interleave many times.
pub const TRIM_WINDOW_MIXES: u32 = 50;
/// A queue whose lowest level over a window stayed above this many samples holds a standing
/// delay…
const TRIM_ABOVE: usize = crate::FRAME_SAMPLES;
/// …and is trimmed so that its lowest level becomes this (a 5 ms cushion against jitter).
const TRIM_CUSHION: usize = crate::FRAME_SAMPLES / 2;

struct Source {
    identity: String,
    queue: VecDeque<i16>,
    stats: SourceStats,
    /// The lowest queue level (after taking a frame) in the current window.
    lowest: usize,
}

/// Mixes remote audio. Keys are track ids; gains and local mutes apply per participant identity.
pub struct Mixer {
    sources: HashMap<String, Source>,
    gains: HashMap<String, f32>,
    muted: HashMap<String, bool>,
    /// Participants whose audio arrives unencrypted in an encrypted call: `false` until the user
    /// chooses to hear them anyway.
    unencrypted: HashMap<String, bool>,
    master_gain: f32,
    deafened: bool,
    max_queue_samples: usize,
    scratch: Vec<f32>,
    mixes_in_window: u32,
    /// What the output device last said of its gaps ([`Mixer::note_output_glitches`]).
    output_glitches: u64,
}

/// Above this level (0.0–1.0) the limiter starts bending the signal; below it, gain is exact.
pub const LIMITER_KNEE: f32 = 0.8;

impl Mixer {
    /// A mixer whose queues hold at most `max_queue_ms` of 48 kHz audio each.
    pub fn new(max_queue_ms: u32) -> Mixer {
        Mixer {
            sources: HashMap::new(),
            gains: HashMap::new(),
            muted: HashMap::new(),
            unencrypted: HashMap::new(),
            master_gain: 1.0,
            deafened: false,
            max_queue_samples: (max_queue_ms as usize * crate::SAMPLE_RATE as usize) / 1000,
            scratch: Vec::with_capacity(crate::FRAME_SAMPLES),
            mixes_in_window: 0,
            output_glitches: 0,
        }
    }

    /// Records the output device's glitch count (see `FrameSink::glitches`), so that whoever
    /// reads the mixer's statistics sees it too. The playout loop calls it with each mix.
    pub fn note_output_glitches(&mut self, glitches: u64) {
        self.output_glitches = glitches;
    }

    /// The output device's glitches since playout began, as last noted.
    pub fn output_glitches(&self) -> u64 {
        self.output_glitches
    }

    /// Adds a source (a remote track) belonging to participant `identity`.
    pub fn add_source(&mut self, key: &str, identity: &str) {
        self.sources.insert(
            key.to_string(),
            Source {
                identity: identity.to_string(),
                queue: VecDeque::with_capacity(self.max_queue_samples + crate::FRAME_SAMPLES),
                stats: SourceStats::default(),
                lowest: usize::MAX,
            },
        );
    }

    pub fn remove_source(&mut self, key: &str) {
        self.sources.remove(key);
    }

    /// One source's statistics.
    pub fn source_stats(&self, key: &str) -> Option<SourceStats> {
        self.sources.get(key).map(|source| source.stats)
    }

    pub fn has_source(&self, key: &str) -> bool {
        self.sources.contains_key(key)
    }

    /// Queues decoded samples of a source; drops the oldest beyond the queue bound.
    pub fn push(&mut self, key: &str, samples: &[i16]) {
        let Some(source) = self.sources.get_mut(key) else { return };
        source.queue.extend(samples.iter().copied());
        let excess = source.queue.len().saturating_sub(self.max_queue_samples);
        if excess > 0 {
            source.queue.drain(..excess);
            source.stats.dropped_samples += excess as u64;
        }
        source.stats.queued_samples = source.queue.len();
    }

    /// Per-participant volume, 0–200 % (1.0 = unchanged).
    pub fn set_gain(&mut self, identity: &str, gain: f32) {
        self.gains.insert(identity.to_string(), gain.clamp(0.0, 2.0));
    }

    pub fn gain(&self, identity: &str) -> f32 {
        self.gains.get(identity).copied().unwrap_or(1.0)
    }

    /// Silences one participant for us only.
    pub fn set_local_mute(&mut self, identity: &str, muted: bool) {
        self.muted.insert(identity.to_string(), muted);
    }

    /// Holds back `identity`'s audio: it arrives unencrypted in an encrypted call. A choice to
    /// hear them anyway ([`Mixer::allow_unencrypted`]) stands.
    pub fn hold_back_unencrypted(&mut self, identity: &str) {
        self.unencrypted.entry(identity.to_string()).or_insert(false);
    }

    /// Plays `identity`'s unencrypted audio after all (the user chose to).
    pub fn allow_unencrypted(&mut self, identity: &str) {
        self.unencrypted.insert(identity.to_string(), true);
    }

    /// Whether `identity`'s audio is held back as unencrypted.
    pub fn is_held_back(&self, identity: &str) -> bool {
        self.unencrypted.get(identity) == Some(&false)
    }

    /// Output volume for everything, 0–200 %.
    pub fn set_master_gain(&mut self, gain: f32) {
        self.master_gain = gain.clamp(0.0, 2.0);
    }

    /// Deafened: nothing is played (queues keep draining so undeafening is instant and current).
    pub fn set_deafened(&mut self, deafened: bool) {
        self.deafened = deafened;
    }

    /// Mixes one frame into `out` (replacing its contents) and returns the output peak, 0.0–1.0.
    pub fn mix(&mut self, out: &mut [i16]) -> f32 {
        self.scratch.clear();
        self.scratch.resize(out.len(), 0.0);
        for source in self.sources.values_mut() {
            let muted = self.muted.get(&source.identity).copied().unwrap_or(false)
                || self.unencrypted.get(&source.identity) == Some(&false);
            let gain = if muted { 0.0 } else { self.gains.get(&source.identity).copied().unwrap_or(1.0) };
            let available = source.queue.len().min(out.len());
            if available < out.len() {
                source.stats.underruns += 1;
            }
            let mut peak = 0.0f32;
            for (mixed, sample) in self.scratch.iter_mut().zip(source.queue.drain(..available)) {
                let value = sample as f32 / i16::MAX as f32 * gain;
                peak = peak.max(value.abs());
                *mixed += value;
            }
            source.stats.level = peak;
            source.lowest = source.lowest.min(source.queue.len());
            source.stats.queued_samples = source.queue.len();
            source.stats.mixes += 1;
            source.stats.queued_after_mixes += source.queue.len() as u64;
        }
        self.mixes_in_window += 1;
        if self.mixes_in_window >= TRIM_WINDOW_MIXES {
            self.mixes_in_window = 0;
            for source in self.sources.values_mut() {
                if source.lowest != usize::MAX && source.lowest > TRIM_ABOVE {
                    let excess = source.lowest - TRIM_CUSHION;
                    source.queue.drain(..excess);
                    source.stats.trimmed_samples += excess as u64;
                    source.stats.queued_samples = source.queue.len();
                }
                source.lowest = usize::MAX;
            }
        }
        let master = if self.deafened { 0.0 } else { self.master_gain };
        let mut peak = 0.0f32;
        for (sample, &mixed) in out.iter_mut().zip(self.scratch.iter()) {
            let limited = soft_limit(mixed * master);
            peak = peak.max(limited.abs());
            *sample = (limited * i16::MAX as f32).round() as i16;
        }
        peak
    }

    /// Statistics per source key.
    pub fn stats(&self) -> impl Iterator<Item = (&str, &str, SourceStats)> {
        self.sources.iter().map(|(key, source)| (key.as_str(), source.identity.as_str(), source.stats))
    }
}

/// Exact below [`LIMITER_KNEE`], then a tanh curve that approaches but never exceeds full scale.
pub fn soft_limit(value: f32) -> f32 {
    let magnitude = value.abs();
    if magnitude <= LIMITER_KNEE {
        return value;
    }
    let room = 1.0 - LIMITER_KNEE;
    let bent = LIMITER_KNEE + room * ((magnitude - LIMITER_KNEE) / room).tanh();
    bent.copysign(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FRAME_SAMPLES;

    fn frame(value: i16) -> Vec<i16> {
        vec![value; FRAME_SAMPLES]
    }

    #[test]
    fn the_mean_standing_delay_counts_what_stays_queued_after_each_mix() {
        let mut mixer = Mixer::new(100);
        mixer.add_source("a", "alice");
        let start = mixer.source_stats("a").expect("source");
        assert_eq!(start.mean_queue_ms_since(&start), None, "no mixes, no mean");
        let mut out = frame(0);
        // 15 ms queued, then one frame in per frame out: 5 ms stays behind after every mix.
        mixer.push("a", &frame(1)[..FRAME_SAMPLES / 2]);
        for _ in 0..4 {
            mixer.push("a", &frame(1));
            mixer.mix(&mut out);
        }
        let after = mixer.source_stats("a").expect("source");
        assert_eq!(after.mean_queue_ms_since(&start), Some(5.0));
        assert_eq!(mixer.source_stats("nobody"), None);
    }

    #[test]
    fn two_sources_are_summed_with_their_gains() {
        let mut mixer = Mixer::new(100);
        mixer.add_source("a", "alice");
        mixer.add_source("b", "bob");
        mixer.push("a", &frame(1000));
        mixer.push("b", &frame(2000));
        mixer.set_gain("bob", 0.5);
        let mut out = frame(0);
        mixer.mix(&mut out);
        assert!(out.iter().all(|&sample| sample == 2000), "1000 + 0.5 × 2000 = 2000, got {}", out[0]);
    }

    #[test]
    fn local_mute_and_deafen_silence_the_output() {
        let mut mixer = Mixer::new(100);
        mixer.add_source("a", "alice");
        mixer.push("a", &frame(1000));
        mixer.set_local_mute("alice", true);
        let mut out = frame(7);
        mixer.mix(&mut out);
        assert!(out.iter().all(|&sample| sample == 0), "a locally muted participant is silent");
        mixer.set_local_mute("alice", false);
        mixer.set_deafened(true);
        mixer.push("a", &frame(1000));
        mixer.mix(&mut out);
        assert!(out.iter().all(|&sample| sample == 0), "deafened means silence");
    }

    #[test]
    fn unencrypted_audio_is_held_back_until_allowed() {
        let mut mixer = Mixer::new(40);
        mixer.add_source("TR_a", "alice");
        mixer.hold_back_unencrypted("alice");
        assert!(mixer.is_held_back("alice"));
        mixer.push("TR_a", &frame(8000));
        let mut out = frame(1);
        assert_eq!(mixer.mix(&mut out), 0.0, "held back: nothing is played");
        assert!(out.iter().all(|&sample| sample == 0));
        mixer.allow_unencrypted("alice");
        mixer.hold_back_unencrypted("alice");
        assert!(!mixer.is_held_back("alice"), "a choice to hear them stands");
        mixer.push("TR_a", &frame(8000));
        mixer.mix(&mut out);
        assert!(out.iter().all(|&sample| sample == 8000), "allowed: played as is");
    }

    #[test]
    fn queues_are_bounded_and_drop_the_oldest() {
        let mut mixer = Mixer::new(20); // two frames
        mixer.add_source("a", "alice");
        for value in 1..=5 {
            mixer.push("a", &frame(value));
        }
        let mut out = frame(0);
        mixer.mix(&mut out);
        assert_eq!(out[0], 4, "after 5 pushes into a 2-frame queue the oldest kept frame is the 4th");
        let stats = mixer.stats().next().expect("one source").2;
        assert_eq!(stats.dropped_samples, 3 * FRAME_SAMPLES as u64, "three frames dropped");
    }

    #[test]
    fn a_standing_delay_is_trimmed_to_a_small_cushion() {
        let mut mixer = Mixer::new(100);
        mixer.add_source("a", "alice");
        // Three frames ahead, then one frame in per frame out: a constant 30 ms delay.
        for _ in 0..3 {
            mixer.push("a", &frame(1));
        }
        let mut out = frame(0);
        for _ in 0..TRIM_WINDOW_MIXES {
            mixer.push("a", &frame(1));
            mixer.mix(&mut out);
        }
        let stats = mixer.stats().next().expect("one source").2;
        assert_eq!(stats.queued_samples, TRIM_CUSHION, "the standing 30 ms shrank to the 5 ms cushion");
        assert_eq!(stats.trimmed_samples, (3 * FRAME_SAMPLES - TRIM_CUSHION) as u64);
        assert_eq!(stats.underruns, 0);
        // A queue that runs low within the window is left alone.
        let mut mixer = Mixer::new(100);
        mixer.add_source("a", "alice");
        for round in 0..TRIM_WINDOW_MIXES {
            mixer.push("a", &frame(1));
            if round % 10 == 0 {
                mixer.push("a", &frame(1));
            }
            mixer.mix(&mut out);
        }
        let stats = mixer.stats().next().expect("one source").2;
        assert_eq!(stats.trimmed_samples, 0, "a queue that touched one frame or less holds no standing delay");
    }

    #[test]
    fn an_empty_queue_is_an_underrun_and_plays_silence() {
        let mut mixer = Mixer::new(100);
        mixer.add_source("a", "alice");
        let mut out = frame(9);
        mixer.mix(&mut out);
        assert!(out.iter().all(|&sample| sample == 0));
        assert_eq!(mixer.stats().next().expect("source").2.underruns, 1);
    }

    #[test]
    fn the_limiter_is_exact_below_the_knee_and_bounded_above() {
        assert_eq!(soft_limit(0.5), 0.5);
        assert!(soft_limit(3.0) <= 1.0 && soft_limit(3.0) > 0.95);
        assert!(soft_limit(-3.0) >= -1.0);
    }
}
