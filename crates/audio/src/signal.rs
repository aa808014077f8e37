//! Test and demo signals, generated in 10 ms frames.

use std::f64::consts::TAU;

use crate::SAMPLE_RATE;

/// A continuous sine tone; each call to [`Tone::fill`] continues where the last one ended.
#[derive(Debug, Clone)]
pub struct Tone {
    frequency: f64,
    amplitude: f64,
    phase: f64,
}

impl Tone {
    /// A tone at `frequency` Hz with peak `amplitude_dbfs` (0 dBFS = full scale).
    pub fn new(frequency: f64, amplitude_dbfs: f64) -> Tone {
        Tone { frequency, amplitude: 10f64.powf(amplitude_dbfs / 20.0) * i16::MAX as f64, phase: 0.0 }
    }

    /// Overwrites `frame` with the next samples of the tone at [`SAMPLE_RATE`].
    pub fn fill(&mut self, frame: &mut [i16]) {
        let step = TAU * self.frequency / SAMPLE_RATE as f64;
        for sample in frame.iter_mut() {
            *sample = (self.phase.sin() * self.amplitude).round() as i16;
            self.phase = (self.phase + step) % TAU;
        }
    }
}

/// A linear chirp from `start_hz` to `end_hz` over `seconds`, with short fades so it starts and
/// ends without clicks. Its autocorrelation has one sharp peak: ideal for measuring delay.
pub fn chirp(start_hz: f64, end_hz: f64, seconds: f64, amplitude_dbfs: f64) -> Vec<i16> {
    let rate = SAMPLE_RATE as f64;
    let count = (seconds * rate) as usize;
    let amplitude = 10f64.powf(amplitude_dbfs / 20.0) * i16::MAX as f64;
    let sweep = (end_hz - start_hz) / seconds;
    let fade = (0.005 * rate) as usize;
    (0..count)
        .map(|index| {
            let time = index as f64 / rate;
            let phase = TAU * (start_hz * time + 0.5 * sweep * time * time);
            let edge = index.min(count - 1 - index);
            let envelope = if edge < fade { edge as f64 / fade as f64 } else { 1.0 };
            (phase.sin() * amplitude * envelope).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis;

    #[test]
    fn tone_has_the_asked_frequency_and_level() {
        let mut tone = Tone::new(440.0, -12.0);
        let mut samples = vec![0i16; SAMPLE_RATE as usize];
        for frame in samples.chunks_mut(480) {
            tone.fill(frame);
        }
        let peak = analysis::dominant_frequency(&samples, SAMPLE_RATE);
        assert!((peak - 440.0).abs() < 2.0, "dominant frequency should be 440 Hz, got {peak}");
        let level = analysis::tone_level_dbfs(&samples, SAMPLE_RATE, 440.0);
        assert!((level - -12.0).abs() < 0.5, "tone level should be -12 dBFS, got {level}");
    }

    #[test]
    fn chirp_has_the_asked_length() {
        let signal = chirp(200.0, 4000.0, 0.5, -6.0);
        assert_eq!(signal.len(), 24_000, "0.5 s at 48 kHz");
        assert_eq!(signal[0], 0, "the fade-in starts from silence");
    }
}
