//! The engine's own sound devices ("platform audio"): libwebrtc's audio device module captures
//! the microphone (through the engine's own echo cancellation, noise suppression and gain
//! control) and plays every remote voice itself, mixed inside the engine.
//!
//! Parley's calls do not use it: our own device ends, mixer and processing are what give
//! per-user volume, cues on the same device, push-to-talk without a gap, and device hot-plug.
//! `cargo xtask bench audio` compares the two on the same probe (`parley join
//! --platform-audio`), which is what this module is for. The engine keeps one device module
//! for the whole process; every [`PlatformAudio`] shares it, and it stops with the last one.
//!
//! It records and plays on the system's default devices. The engine can also select devices,
//! but on PulseAudio (FFI 1.2.1) it lists them with ids of the form `index:N`, and selecting
//! one still recorded the server's default source here (`bench audio`'s probe heard nothing).
//! So the devices are chosen the way PulseAudio lets any client's defaults be chosen:
//! `PULSE_SOURCE` and `PULSE_SINK` in the process's environment.

use crate::engine::{Engine, OwnedHandle};
use crate::error::Error;
use crate::proto;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;

/// The engine's device module, recording and playing. Dropping it releases our hold on it.
pub struct PlatformAudio {
    handle: OwnedHandle,
}

impl PlatformAudio {
    /// Starts (or joins) the engine's device module. Any thread.
    ///
    /// Errors: [`Error::Engine`] when it cannot start (no sound server, no devices).
    pub fn new(engine: &'static Engine) -> Result<PlatformAudio, Error> {
        let response = engine.request(RequestMessage::NewPlatformAudio(proto::NewPlatformAudioRequest {}))?;
        let ResponseMessage::NewPlatformAudio(response) = response else {
            return Err(Error::Protocol("new-platform-audio answered with another response".into()));
        };
        match response.message {
            Some(proto::new_platform_audio_response::Message::PlatformAudio(owned)) => {
                Ok(PlatformAudio { handle: engine.own(owned.handle.id) })
            }
            Some(proto::new_platform_audio_response::Message::Error(error)) => {
                Err(Error::Engine(format!("the platform sound devices: {error}")))
            }
            None => Err(Error::Protocol("new-platform-audio answered with nothing".into())),
        }
    }

    pub(crate) fn handle_id(&self) -> u64 {
        self.handle.id()
    }

    /// Starts recording (a published platform source sends nothing until then).
    pub fn start_recording(&self) -> Result<(), Error> {
        let request = proto::StartRecordingRequest { platform_audio_handle: self.handle.id() };
        match self.handle.engine().request(RequestMessage::StartRecording(request))? {
            ResponseMessage::StartRecording(response) => match response.error {
                None => Ok(()),
                Some(error) => Err(Error::Engine(format!("recording from the default microphone: {error}"))),
            },
            _ => Err(Error::Protocol("start-recording answered with another response".into())),
        }
    }
}
