//! A call whose sound the engine's own device module records and plays (`parley join
//! --platform-audio`), for `cargo xtask bench audio`'s comparison with our own device ends.
//!
//! It is a measuring mode, not a way to use Parley: the engine mixes every remote voice itself
//! (no per-user volume, no deafen, no cues in the same stream), records with its own echo
//! cancellation, and has no push-to-talk or mute of ours. It uses the system's default devices
//! (on Linux, `PULSE_SOURCE` and `PULSE_SINK` choose them; see `parley_livekit_ffi`'s
//! `platform` module for why). The microphone is published when the token allows it at join
//! time.

use std::sync::Arc;

use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::SessionError;
use super::event::{SessionEvent, StampedEvent, emit};

/// What the engine's module does besides playing the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformAudioMode {
    /// Play the others only.
    Listen,
    /// Also record the default microphone and publish it.
    Talk,
}

/// The module and the microphone track it feeds, held for the call.
pub(super) struct PlatformCall {
    audio: ffi::PlatformAudio,
    mode: PlatformAudioMode,
    _source: Option<Arc<ffi::AudioSource>>,
    _track: Option<Arc<ffi::LocalAudioTrack>>,
}

/// Starts the engine's device module: before the room is joined, as the engine wants (the
/// call's connection does not use a module started later).
pub(super) fn prepare(engine: &'static ffi::Engine, mode: PlatformAudioMode) -> Result<PlatformCall, SessionError> {
    Ok(PlatformCall { audio: ffi::PlatformAudio::new(engine)?, mode, _source: None, _track: None })
}

impl PlatformCall {
    /// In the room: reports the devices and, in [`PlatformAudioMode::Talk`] when
    /// `can_publish`, publishes the module's microphone with `publish`.
    pub(super) async fn publish(
        &mut self,
        engine: &'static ffi::Engine,
        room: &ffi::Room,
        publish: &ffi::PublishOptions,
        can_publish: bool,
        events: &mpsc::UnboundedSender<StampedEvent>,
    ) -> Result<(), SessionError> {
        let directions: &[&str] = match self.mode {
            PlatformAudioMode::Listen => &["output"],
            PlatformAudioMode::Talk => &["output", "input"],
        };
        for direction in directions {
            let event = SessionEvent::DeviceOpened {
                direction: direction.to_string(),
                device: "the default device (the engine's device module)".into(),
                sample_rate: 48_000,
                channels: 1,
                buffer_frames: None,
            };
            emit(events, event);
        }
        if self.mode == PlatformAudioMode::Talk && can_publish {
            let source = Arc::new(ffi::AudioSource::platform(engine, &self.audio)?);
            let track = Arc::new(ffi::LocalAudioTrack::new("microphone", &source)?);
            room.local_participant().publish_audio_track(&track, publish).await?;
            self.audio.start_recording()?;
            (self._source, self._track) = (Some(source), Some(track));
        }
        Ok(())
    }
}
