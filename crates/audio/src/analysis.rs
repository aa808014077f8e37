//! Measuring audio: the oracles behind Parley's audio tests and benchmarks.
//!
//! Each function states what it measures; all take 16-bit samples. The tests of this module show
//! each oracle rejecting the wrong signal as well as accepting the right one.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// Power spectrum (Hann-windowed), one bin per `rate / n` Hz up to Nyquist.
pub fn power_spectrum(samples: &[i16]) -> Vec<f32> {
    let n = samples.len();
    if n < 2 {
        return Vec::new();
    }
    let mut buffer: Vec<Complex<f32>> = samples
        .iter()
        .enumerate()
        .map(|(index, &sample)| {
            let window = 0.5 - 0.5 * (std::f32::consts::TAU * index as f32 / (n - 1) as f32).cos();
            Complex::new(sample as f32 / i16::MAX as f32 * window, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buffer);
    buffer[..n / 2].iter().map(|value| value.norm_sqr()).collect()
}

/// The frequency with the most energy, in Hz (0.0 for silence).
pub fn dominant_frequency(samples: &[i16], rate: u32) -> f32 {
    let spectrum = power_spectrum(samples);
    let Some((bin, _)) = spectrum.iter().enumerate().skip(1).max_by(|a, b| a.1.total_cmp(b.1)) else {
        return 0.0;
    };
    if spectrum[bin] == 0.0 {
        return 0.0;
    }
    // Parabolic interpolation between neighbouring bins for sub-bin accuracy.
    let offset = if bin + 1 < spectrum.len() {
        let (left, centre, right) = (spectrum[bin - 1].sqrt(), spectrum[bin].sqrt(), spectrum[bin + 1].sqrt());
        let denominator = left - 2.0 * centre + right;
        if denominator.abs() > f32::EPSILON { 0.5 * (left - right) / denominator } else { 0.0 }
    } else {
        0.0
    };
    (bin as f32 + offset) * rate as f32 / samples.len() as f32
}

/// The share (0.0–1.0) of the signal's energy within `half_width` Hz of `frequency`.
pub fn band_energy_fraction(samples: &[i16], rate: u32, frequency: f32, half_width: f32) -> f32 {
    let spectrum = power_spectrum(samples);
    let total: f32 = spectrum.iter().skip(1).sum();
    if total == 0.0 {
        return 0.0;
    }
    let bin_hz = rate as f32 / samples.len() as f32;
    let band: f32 = spectrum
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(bin, _)| (*bin as f32 * bin_hz - frequency).abs() <= half_width)
        .map(|(_, power)| power)
        .sum();
    band / total
}

/// The typical share of the energy within `half_width` Hz of `frequency`: the median over 50 ms
/// windows of [`band_energy_fraction`].
///
/// A received tone on a loaded machine has the odd glitch (a playout gap, a jitter-buffer
/// splice) whose click spreads energy over the whole spectrum; over a whole stretch a few such
/// windows pull the share under what the path plays the rest of the time. The median asks what
/// the path plays, and still fails a path that adds another sound, noise or distortion
/// throughout. Silence reads 0.
pub fn typical_band_fraction(samples: &[i16], rate: u32, frequency: f32, half_width: f32) -> f32 {
    let window = (rate as usize / 20).max(2);
    let mut fractions: Vec<f32> =
        samples.chunks_exact(window).map(|block| band_energy_fraction(block, rate, frequency, half_width)).collect();
    if fractions.is_empty() {
        return band_energy_fraction(samples, rate, frequency, half_width);
    }
    fractions.sort_by(f32::total_cmp);
    fractions[fractions.len() / 2]
}

/// The peak amplitude, in dBFS, of the sinusoid at `frequency`.
///
/// Measured as a single-bin DFT over 50 ms windows, averaged as power across windows. One
/// coherent DFT over the whole signal would be exact for a perfectly steady tone, but a real
/// path is not: the receiver's jitter buffer stretches and shortens audio, and each such step
/// shifts the tone's phase, so a whole-signal DFT partly cancels itself and reads several dB
/// low. Per-window amplitudes are immune to phase steps, while the power average still counts
/// every gap or leak (a segment that is silent half the time reads 3 dB low, not as "loud").
pub fn tone_level_dbfs(samples: &[i16], rate: u32, frequency: f32) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let window = (rate as usize / 20).max(1);
    if samples.len() < 2 * window {
        return crate::linear_to_db(coherent_amplitude(samples, rate, frequency) as f32);
    }
    let windows: Vec<f64> =
        samples.chunks_exact(window).map(|block| coherent_amplitude(block, rate, frequency).powi(2)).collect();
    let power = windows.iter().sum::<f64>() / windows.len() as f64;
    crate::linear_to_db(power.sqrt() as f32)
}

/// The peak amplitude, in dBFS, of the tone near `frequency` where it sounds cleanly: the upper
/// quartile of its per-50 ms levels, each the window's RMS times the share of its energy within
/// ±50 Hz of `frequency`.
///
/// Where [`tone_level_dbfs`] answers "how loud was the tone over the whole stretch", this answers
/// "how loud is the tone", for tests that compare gains. On a loaded machine the received tone
/// has playout gaps and the jitter buffer stretches it (it wanders a few hertz, which a
/// single-bin DFT reads as several dB quieter); both only ever lower a window's reading, so the
/// upper quartile reads through them. Silence reads as negative infinity.
pub fn tone_gain_dbfs(samples: &[i16], rate: u32, frequency: f32) -> f32 {
    let window = (rate as usize / 20).max(2);
    let mut levels: Vec<f32> = samples
        .chunks_exact(window)
        .map(|block| rms_dbfs(block) + 10.0 * band_energy_fraction(block, rate, frequency, 50.0).log10())
        .map(|level| if level.is_nan() { f32::NEG_INFINITY } else { level })
        .collect();
    if levels.is_empty() {
        return f32::NEG_INFINITY;
    }
    levels.sort_by(f32::total_cmp);
    // A sinusoid's peak is √2 (3.01 dB) above its RMS.
    levels[levels.len() * 3 / 4] + 3.01
}

/// Amplitude of the sinusoid at `frequency` by a single-bin DFT over all of `samples`.
fn coherent_amplitude(samples: &[i16], rate: u32, frequency: f32) -> f64 {
    let step = std::f64::consts::TAU * frequency as f64 / rate as f64;
    let (mut real, mut imaginary) = (0.0f64, 0.0f64);
    for (index, &sample) in samples.iter().enumerate() {
        let value = sample as f64 / i16::MAX as f64;
        let phase = step * index as f64;
        real += value * phase.cos();
        imaginary -= value * phase.sin();
    }
    2.0 * (real * real + imaginary * imaginary).sqrt() / samples.len() as f64
}

/// RMS level in dBFS (a full-scale sine is −3 dBFS).
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&sample| (sample as f64 / i16::MAX as f64).powi(2)).sum();
    crate::linear_to_db((sum / samples.len() as f64).sqrt() as f32)
}

/// Index of the first `window`-sample block whose RMS reaches `threshold_dbfs`.
pub fn first_onset(samples: &[i16], threshold_dbfs: f32, window: usize) -> Option<usize> {
    let window = window.max(1);
    samples.chunks(window).position(|block| rms_dbfs(block) >= threshold_dbfs).map(|block| block * window)
}

/// Index just past the last `window`-sample block whose RMS reaches `threshold_dbfs`: where
/// sound ends.
pub fn last_offset(samples: &[i16], threshold_dbfs: f32, window: usize) -> Option<usize> {
    let window = window.max(1);
    let last = samples.chunks(window).rposition(|block| rms_dbfs(block) >= threshold_dbfs)?;
    Some(((last + 1) * window).min(samples.len()))
}

/// Where `reference` best matches inside `recording`: the lag (in samples) at which it starts,
/// and the normalised correlation there (1.0 = identical shape). FFT-based, O(n log n).
pub fn find_reference(reference: &[i16], recording: &[i16]) -> Option<(usize, f32)> {
    if reference.is_empty() || recording.len() < reference.len() {
        return None;
    }
    let size = (recording.len() + reference.len()).next_power_of_two();
    let mut planner = FftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let to_complex = |samples: &[i16]| {
        let mut buffer: Vec<Complex<f32>> =
            samples.iter().map(|&sample| Complex::new(sample as f32 / i16::MAX as f32, 0.0)).collect();
        buffer.resize(size, Complex::new(0.0, 0.0));
        buffer
    };
    let mut rec = to_complex(recording);
    let mut refr = to_complex(reference);
    forward.process(&mut rec);
    forward.process(&mut refr);
    for (a, b) in rec.iter_mut().zip(refr.iter()) {
        *a *= b.conj();
    }
    inverse.process(&mut rec);
    let last_lag = recording.len() - reference.len();
    let (lag, peak) = rec[..=last_lag]
        .iter()
        .enumerate()
        .map(|(lag, value)| (lag, value.re / size as f32))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let reference_energy: f32 = reference.iter().map(|&s| (s as f32 / i16::MAX as f32).powi(2)).sum();
    let window_energy: f32 =
        recording[lag..lag + reference.len()].iter().map(|&s| (s as f32 / i16::MAX as f32).powi(2)).sum();
    let norm = (reference_energy * window_energy).sqrt();
    Some((lag, if norm > 0.0 { peak / norm } else { 0.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Tone, chirp};

    fn tone(frequency: f64, dbfs: f64, seconds: f64) -> Vec<i16> {
        let mut samples = vec![0i16; (48_000.0 * seconds) as usize];
        Tone::new(frequency, dbfs).fill(&mut samples);
        samples
    }

    #[test]
    fn band_fraction_accepts_the_tone_and_rejects_another() {
        let signal = tone(880.0, -10.0, 1.0);
        assert!(band_energy_fraction(&signal, 48_000, 880.0, 20.0) > 0.95);
        assert!(band_energy_fraction(&signal, 48_000, 440.0, 20.0) < 0.01, "a 440 Hz oracle rejects 880 Hz");
        assert_eq!(band_energy_fraction(&[0; 4800], 48_000, 440.0, 20.0), 0.0, "silence has no tone");
    }

    #[test]
    fn tone_gain_reads_the_tone_through_gaps_where_the_level_counts_them() {
        let mut signal = tone(440.0, -18.0, 2.0);
        // A third of the stretch lost to playout gaps, in 100 ms holes.
        for (index, block) in signal.chunks_mut(4_800).enumerate() {
            if index % 3 == 1 {
                block.fill(0);
            }
        }
        let gain = tone_gain_dbfs(&signal, 48_000, 440.0);
        let level = tone_level_dbfs(&signal, 48_000, 440.0);
        assert!((gain + 18.0).abs() < 0.3, "the tone sounds at −18 dBFS, got {gain}");
        assert!(level < -19.0, "the level counts the gaps, got {level}");
        assert!(tone_gain_dbfs(&tone(880.0, -6.0, 1.0), 48_000, 440.0) < -60.0, "no 440 Hz in an 880 Hz tone");
        let half = tone(440.0, -24.0, 1.0);
        assert!((tone_gain_dbfs(&half, 48_000, 440.0) + 24.0).abs() < 0.3, "a quieter tone reads quieter");
        let stretched = tone(446.0, -18.0, 1.0);
        let gain = tone_gain_dbfs(&stretched, 48_000, 440.0);
        assert!((gain + 18.0).abs() < 0.3, "a tone stretched to 446 Hz still sounds at −18 dBFS, got {gain}");
        assert_eq!(tone_gain_dbfs(&[0; 4800], 48_000, 440.0), f32::NEG_INFINITY, "silence");
    }

    #[test]
    fn typical_band_fraction_reads_through_a_few_clicks_but_not_a_second_sound() {
        let mut signal = tone(440.0, -12.0, 2.0);
        // Three clicks (a full-scale step lasting 2 ms), as playout gaps and splices make.
        for start in [12_000usize, 48_000, 80_000] {
            signal[start..start + 96].fill(i16::MAX / 2);
        }
        let whole = band_energy_fraction(&signal, 48_000, 440.0, 25.0);
        let typical = typical_band_fraction(&signal, 48_000, 440.0, 50.0);
        assert!(typical > 0.95, "the tone is what plays, got {typical}");
        assert!(whole < typical, "the clicks weigh on the whole stretch ({whole} vs {typical})");
        let mut mixed = tone(440.0, -12.0, 1.0);
        for (a, b) in mixed.iter_mut().zip(tone(1300.0, -12.0, 1.0)) {
            *a = a.saturating_add(b);
        }
        let shared = typical_band_fraction(&mixed, 48_000, 440.0, 50.0);
        assert!((0.4..0.6).contains(&shared), "a second tone as loud takes half, got {shared}");
        assert_eq!(typical_band_fraction(&[0; 9600], 48_000, 440.0, 50.0), 0.0, "silence");
    }

    #[test]
    fn tone_level_ignores_other_frequencies() {
        let mut signal = tone(440.0, -20.0, 1.0);
        let other = tone(1300.0, -6.0, 1.0);
        for (a, b) in signal.iter_mut().zip(other) {
            *a = a.saturating_add(b);
        }
        let level = tone_level_dbfs(&signal, 48_000, 440.0);
        assert!((level + 20.0).abs() < 0.3, "the 440 Hz part is −20 dBFS, got {level}");
        assert!(tone_level_dbfs(&tone(880.0, -6.0, 1.0), 48_000, 440.0) < -60.0, "no 440 Hz in an 880 Hz tone");
    }

    #[test]
    fn tone_level_survives_the_phase_steps_of_a_jitter_buffer_but_counts_gaps() {
        // Every 300 ms the receiver drops 1.1 ms (half a cycle at 440 Hz): the phase flips.
        let steady = tone(440.0, -12.0, 2.0);
        let stretched: Vec<i16> =
            steady.chunks(14_400).flat_map(|block| block[..block.len().min(14_400 - 53)].to_vec()).collect();
        let level = tone_level_dbfs(&stretched, 48_000, 440.0);
        assert!((level + 12.0).abs() < 0.5, "phase steps do not lower the level, got {level}");
        let mut gappy = steady.clone();
        gappy[48_000..].fill(0);
        let level = tone_level_dbfs(&gappy, 48_000, 440.0);
        assert!((level + 15.0).abs() < 0.3, "silent half the time reads 3 dB low, got {level}");
    }

    #[test]
    fn reference_is_found_at_its_delay_and_noise_is_not_a_match() {
        let reference = chirp(300.0, 3000.0, 0.3, -6.0);
        let mut recording = vec![0i16; 48_000];
        recording[12_345..12_345 + reference.len()].copy_from_slice(&reference);
        let (lag, score) = find_reference(&reference, &recording).expect("found");
        assert_eq!(lag, 12_345, "the chirp starts at sample 12345");
        assert!(score > 0.99, "an exact copy correlates fully, got {score}");
        let unrelated = tone(1000.0, -6.0, 1.0);
        let (_, score) = find_reference(&reference, &unrelated).expect("computed");
        assert!(score < 0.3, "a steady tone is not the chirp, score {score}");
    }

    #[test]
    fn onset_is_where_sound_starts() {
        let mut samples = vec![0i16; 9600];
        let burst = tone(500.0, -10.0, 0.1);
        samples[4800..].copy_from_slice(&burst[..4800]);
        assert_eq!(first_onset(&samples, -30.0, 480), Some(4800));
        assert_eq!(first_onset(&vec![0i16; 9600], -30.0, 480), None, "silence has no onset");
    }

    #[test]
    fn offset_is_where_sound_ends() {
        let mut samples = vec![0i16; 9600];
        let burst = tone(500.0, -10.0, 0.1);
        samples[960..5760].copy_from_slice(&burst[..4800]);
        assert_eq!(last_offset(&samples, -30.0, 480), Some(5760));
        assert_eq!(last_offset(&vec![0i16; 9600], -30.0, 480), None, "silence has no end");
    }
}
