//! Audio for Parley, independent of LiveKit and of sound devices.
//!
//! Parley's audio is 48 kHz, mono, i16, in 10 ms frames of [`FRAME_SAMPLES`] samples
//! (DESIGN.md §3). This crate holds what every front end and test shares:
//!
//! * [`app_sound`] (feature `devices`) — one application's sound for screen share (PulseAudio,
//!   WASAPI process loopback, ScreenCaptureKit): listing them and recording one alone;
//! * [`cue`] (feature `devices`) — generated confirmation sounds (join, leave, mute, PTT, …) played with rodio;
//! * [`device`] (feature `devices`) — sound devices through cpal: listing, capture and playback streams whose
//!   real-time callbacks only touch lock-free rings;
//! * [`gate`] — the transmit gate: open mic, voice activity, push-to-talk with release delay;
//! * [`signal`] — sine tones and chirps, generated frame by frame;
//! * [`wav`] — reading any PCM WAV as 48 kHz mono (resampled with rubato) and recording;
//! * [`resample`] — streaming conversion between a device's rate and 48 kHz;
//! * [`mixer`] — per-participant bounded queues mixed with per-user gain into one output;
//! * [`stream`] — the [`stream::FrameSource`] / [`stream::FrameSink`] seams a session is fed by;
//! * [`analysis`] — spectra, levels, onsets and cross-correlation: the oracles of the tests and
//!   benchmarks.

pub mod analysis;
#[cfg(feature = "devices")]
pub mod app_sound;
#[cfg(feature = "devices")]
pub mod cue;
#[cfg(feature = "devices")]
pub mod device;
pub mod gate;
pub mod mixer;
pub mod resample;
pub mod signal;
pub mod stream;
pub mod wav;

/// Parley's internal sample rate.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 10 ms mono frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE / 100) as usize;

/// Converts a level in dBFS to a linear amplitude (full scale = 1.0).
pub fn db_to_linear(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Converts a linear amplitude (full scale = 1.0) to dBFS; silence gives `-inf`.
pub fn linear_to_db(linear: f32) -> f32 {
    20.0 * linear.log10()
}
