//! WAV files in and out, always as 48 kHz mono i16.

use std::path::{Path, PathBuf};

use rubato::Resampler as _;

use crate::SAMPLE_RATE;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: hound::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: hound::Error },
    #[error("{path}: unsupported WAV format ({detail}); use PCM 8/16/24/32-bit or 32-bit float")]
    Format { path: PathBuf, detail: String },
    #[error("{path}: cannot resample {from} Hz to {SAMPLE_RATE} Hz: {detail}")]
    Resample { path: PathBuf, from: u32, detail: String },
}

/// Reads a WAV file as 48 kHz mono i16: channels are averaged, other rates resampled.
pub fn read_mono_48k(path: &Path) -> Result<Vec<i16>, WavError> {
    let reader = hound::WavReader::open(path).map_err(|source| WavError::Read { path: path.into(), source })?;
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|source| WavError::Read { path: path.into(), source })?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = (1i64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|sample| sample.map(|value| value as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(|source| WavError::Read { path: path.into(), source })?
        }
        (format, bits) => {
            return Err(WavError::Format { path: path.into(), detail: format!("{format:?} {bits}-bit") });
        }
    };
    let mono: Vec<f32> = samples.chunks(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect();
    let mono = if spec.sample_rate == SAMPLE_RATE || mono.is_empty() {
        mono
    } else {
        resample(&mono, spec.sample_rate).map_err(|detail| WavError::Resample {
            path: path.into(),
            from: spec.sample_rate,
            detail,
        })?
    };
    Ok(mono.iter().map(|&value| (value.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16).collect())
}

fn resample(mono: &[f32], from: u32) -> Result<Vec<f32>, String> {
    let mut resampler = rubato::Fft::<f32>::new(from as usize, SAMPLE_RATE as usize, 1024, 1, rubato::FixedSync::Both)
        .map_err(|error| error.to_string())?;
    let input = rubato::audioadapter_buffers::direct::InterleavedSlice::new(mono, 1, mono.len())
        .map_err(|error| error.to_string())?;
    let output = resampler.process_all(&input, mono.len(), None).map_err(|error| error.to_string())?;
    Ok(output.take_data())
}

/// Writes 48 kHz mono i16 samples to a WAV file.
pub fn write_mono_48k(path: &Path, samples: &[i16]) -> Result<(), WavError> {
    let mut writer = Recorder::create(path)?;
    writer.append(samples)?;
    writer.finish()
}

/// A WAV file being written frame by frame (48 kHz, mono, 16-bit).
pub struct Recorder {
    path: PathBuf,
    writer: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Recorder, WavError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer =
            hound::WavWriter::create(path, spec).map_err(|source| WavError::Write { path: path.into(), source })?;
        Ok(Recorder { path: path.into(), writer })
    }

    pub fn append(&mut self, samples: &[i16]) -> Result<(), WavError> {
        for &sample in samples {
            self.writer.write_sample(sample).map_err(|source| WavError::Write { path: self.path.clone(), source })?;
        }
        Ok(())
    }

    /// Flushes and closes the file, fixing up the header.
    pub fn finish(self) -> Result<(), WavError> {
        let path = self.path;
        self.writer.finalize().map_err(|source| WavError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis;

    #[test]
    fn a_44k_stereo_file_is_read_as_48k_mono_with_the_same_tone() {
        let dir = std::env::temp_dir().join(format!("parley-wav-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("stereo44.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).expect("create");
        for index in 0..44_100 {
            let value = ((index as f64 * std::f64::consts::TAU * 1000.0 / 44_100.0).sin() * 16_000.0) as i16;
            writer.write_sample(value).expect("left");
            writer.write_sample(value).expect("right");
        }
        writer.finalize().expect("finalize");
        let samples = read_mono_48k(&path).expect("read");
        assert!((samples.len() as i64 - 48_000).abs() < 100, "1 s at 48 kHz, got {}", samples.len());
        let peak = analysis::dominant_frequency(&samples, SAMPLE_RATE);
        assert!((peak - 1000.0).abs() < 3.0, "the tone must stay at 1 kHz, got {peak}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let error = read_mono_48k(Path::new("/nonexistent/x.wav")).expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/x.wav"), "{error}");
    }
}
