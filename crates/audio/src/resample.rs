//! Streaming sample-rate conversion between a device's rate and Parley's 48 kHz (rubato).

use rubato::Resampler as _;
use rubato::audioadapter_buffers::direct::InterleavedSlice;

/// Converts a mono stream from one fixed rate to another, chunk by chunk, keeping what does not
/// fill a chunk for the next call. Worker thread only (it may allocate while warming up).
pub struct StreamResampler {
    resampler: rubato::Async<f32>,
    chunk: usize,
    pending: Vec<f32>,
    output: Vec<f32>,
}

impl StreamResampler {
    /// A converter from `from` Hz to `to` Hz, working in 10 ms input chunks.
    pub fn new(from: u32, to: u32) -> Result<StreamResampler, String> {
        let chunk = (from / 100).max(1) as usize;
        let resampler = rubato::Async::<f32>::new_poly(
            to as f64 / from as f64,
            1.1,
            rubato::PolynomialDegree::Cubic,
            chunk,
            1,
            rubato::FixedAsync::Input,
        )
        .map_err(|error| error.to_string())?;
        let output = vec![0.0; resampler.output_frames_max()];
        Ok(StreamResampler { resampler, chunk, pending: Vec::with_capacity(chunk * 4), output })
    }

    /// Converts `samples`, appending whatever complete chunks yield to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut impl Extend<f32>) {
        self.pending.extend_from_slice(samples);
        let mut start = 0;
        let capacity = self.output.len();
        while self.pending.len() - start >= self.chunk {
            let input = &self.pending[start..start + self.chunk];
            let (Ok(buffer_in), Ok(mut buffer_out)) =
                (InterleavedSlice::new(input, 1, self.chunk), InterleavedSlice::new_mut(&mut self.output, 1, capacity))
            else {
                break;
            };
            match self.resampler.process_into_buffer(&buffer_in, &mut buffer_out, None) {
                Ok((consumed, produced)) => {
                    out.extend(self.output[..produced].iter().copied());
                    start += consumed.max(1);
                }
                Err(error) => {
                    tracing::warn!(%error, "resampling failed; dropping a chunk");
                    start += self.chunk;
                }
            }
        }
        self.pending.drain(..start);
    }
}

/// Turns interleaved float samples of any channel count, at the rate its resampler converts
/// from (or 48 kHz without one), into 48 kHz mono i16: downmixed by averaging, converted, and
/// clamped. What a capture device and an application's recording both need.
pub struct MonoConverter {
    channels: usize,
    resampler: Option<StreamResampler>,
    mono: Vec<f32>,
    converted: Vec<f32>,
}

impl MonoConverter {
    /// `resampler` converts the source's rate to 48 kHz; `None` when the source runs at 48 kHz.
    pub fn new(channels: u16, resampler: Option<StreamResampler>) -> MonoConverter {
        MonoConverter {
            channels: usize::from(channels.max(1)),
            resampler,
            mono: Vec::with_capacity(crate::FRAME_SAMPLES * 8),
            converted: Vec::with_capacity(crate::FRAME_SAMPLES * 8),
        }
    }

    /// Converts `interleaved`, appending what is ready to `out` (a resampler keeps a partial
    /// chunk for the next call). Worker thread: it reuses its buffers.
    pub fn push(&mut self, interleaved: &[f32], out: &mut impl Extend<i16>) {
        let channels = self.channels;
        self.mono.clear();
        self.mono.extend(interleaved.chunks_exact(channels).map(|group| group.iter().sum::<f32>() / channels as f32));
        let to_i16 = |value: f32| (value.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16;
        match &mut self.resampler {
            Some(resampler) => {
                self.converted.clear();
                resampler.push(&self.mono, &mut self.converted);
                out.extend(self.converted.iter().copied().map(to_i16));
            }
            None => out.extend(self.mono.iter().copied().map(to_i16)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dominant_frequency, tone_level_dbfs};

    #[test]
    fn a_44k_tone_becomes_a_48k_tone_of_the_same_pitch_and_level() {
        let mut converter = StreamResampler::new(44_100, 48_000).expect("converter");
        let tone: Vec<f32> = (0..44_100 * 2)
            .map(|index| (index as f32 * std::f32::consts::TAU * 1000.0 / 44_100.0).sin() * 0.25)
            .collect();
        let mut out = Vec::new();
        for piece in tone.chunks(333) {
            converter.push(piece, &mut out); // uneven pieces, as device callbacks deliver them
        }
        assert!((out.len() as i64 - 96_000).abs() < 1000, "2 s at 48 kHz, got {}", out.len());
        let samples: Vec<i16> = out[4800..].iter().map(|&value| (value * i16::MAX as f32) as i16).collect();
        let pitch = dominant_frequency(&samples, 48_000);
        assert!((pitch - 1000.0).abs() < 3.0, "the pitch is kept, got {pitch}");
        let level = tone_level_dbfs(&samples, 48_000, 1000.0);
        assert!((level + 12.0).abs() < 0.5, "the level is kept (−12 dBFS), got {level}");
    }
}
