//! Audio in and out of the engine: sources we feed, tracks we publish, streams we receive.
//!
//! Frames are i16, interleaved, exactly 10 ms long (DESIGN.md §3).

use tokio::sync::mpsc;

use crate::engine::{Engine, KeepAlive};
use crate::error::Error;
use crate::handle::OwnedHandle;
use crate::proto;
use crate::proto::ffi_event::Message as EventMessage;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;
use crate::room::RemoteAudioTrack;

/// Samples per channel in one 10 ms frame at `sample_rate`.
pub fn samples_per_10ms(sample_rate: u32) -> usize {
    (sample_rate / 100) as usize
}

/// Where the microphone's frames enter the engine.
///
/// Created with `queue_size_ms = 0`: every frame goes straight to the encoder, so the source adds
/// no buffering of its own; the caller must therefore deliver frames in real time.
pub struct AudioSource {
    handle: OwnedHandle,
    sample_rate: u32,
    channels: u32,
}

impl AudioSource {
    /// A source for `channels` interleaved channels at `sample_rate`. Any thread.
    pub fn new(engine: &'static Engine, sample_rate: u32, channels: u32) -> Result<AudioSource, Error> {
        if !sample_rate.is_multiple_of(100) || !(1..=2).contains(&channels) {
            return Err(Error::InvalidArgument(format!(
                "unsupported audio format: {sample_rate} Hz × {channels} channels"
            )));
        }
        let response = engine.request(RequestMessage::NewAudioSource(proto::NewAudioSourceRequest {
            r#type: proto::AudioSourceType::AudioSourceNative as i32,
            // Parley runs its own audio processing (APM) before the source.
            options: Some(proto::AudioSourceOptions {
                echo_cancellation: false,
                noise_suppression: false,
                auto_gain_control: false,
                prefer_hardware: None,
            }),
            sample_rate: Some(sample_rate),
            num_channels: Some(channels),
            queue_size_ms: Some(0),
            platform_audio_handle: None,
        }))?;
        let ResponseMessage::NewAudioSource(response) = response else {
            return Err(Error::Protocol("new-audio-source answered with another response".into()));
        };
        Ok(AudioSource { handle: engine.own(response.source.handle.id), sample_rate, channels })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn channels(&self) -> u32 {
        self.channels
    }

    /// Sends one 10 ms frame. The buffer is handed back once the engine is done with it, so the
    /// caller can reuse its allocation. Call from a tokio runtime, at real-time pace.
    ///
    /// Errors: [`Error::InvalidArgument`] if the frame is not exactly 10 ms; engine errors.
    pub async fn capture_frame(&self, frame: Vec<i16>) -> Result<Vec<i16>, Error> {
        let expected = samples_per_10ms(self.sample_rate) * self.channels as usize;
        if frame.len() != expected {
            return Err(Error::InvalidArgument(format!(
                "an audio frame must be 10 ms ({expected} samples), got {}",
                frame.len()
            )));
        }
        let buffer = proto::AudioFrameBufferInfo {
            data_ptr: frame.as_ptr() as u64,
            num_channels: self.channels,
            sample_rate: self.sample_rate,
            samples_per_channel: samples_per_10ms(self.sample_rate) as u32,
        };
        let source_handle = self.handle.id();
        let (event, kept) = self
            .handle
            .engine()
            .request_async(
                |async_id| {
                    RequestMessage::CaptureAudioFrame(proto::CaptureAudioFrameRequest {
                        source_handle,
                        buffer,
                        request_async_id: Some(async_id),
                    })
                },
                Some(KeepAlive::Samples(frame)),
            )
            .await?;
        match event {
            EventMessage::CaptureAudioFrame(proto::CaptureAudioFrameCallback { error: Some(error), .. }) => {
                Err(Error::Engine(format!("capturing audio failed: {error}")))
            }
            EventMessage::CaptureAudioFrame(_) => match kept {
                Some(KeepAlive::Samples(frame)) => Ok(frame),
                _ => Ok(Vec::with_capacity(expected)),
            },
            _ => Err(Error::Protocol("capture answered with another callback".into())),
        }
    }

    /// Drops whatever the engine has queued from this source.
    pub fn clear(&self) -> Result<(), Error> {
        self.handle
            .engine()
            .request(RequestMessage::ClearAudioBuffer(proto::ClearAudioBufferRequest {
                source_handle: self.handle.id(),
            }))
            .map(|_| ())
    }
}

/// A local audio track fed by an [`AudioSource`]; publish it with
/// [`crate::LocalParticipant::publish_audio_track`].
pub struct LocalAudioTrack {
    handle: OwnedHandle,
    pub sid: String,
}

impl LocalAudioTrack {
    pub fn new(name: &str, source: &AudioSource) -> Result<LocalAudioTrack, Error> {
        let engine = source.handle.engine();
        let response = engine.request(RequestMessage::CreateAudioTrack(proto::CreateAudioTrackRequest {
            name: name.to_string(),
            source_handle: source.handle.id(),
        }))?;
        let ResponseMessage::CreateAudioTrack(response) = response else {
            return Err(Error::Protocol("create-audio-track answered with another response".into()));
        };
        Ok(LocalAudioTrack { handle: engine.own(response.track.handle.id), sid: response.track.info.sid })
    }

    pub(crate) fn handle_id(&self) -> u64 {
        self.handle.id()
    }

    /// Mutes or unmutes the track: others see the state change, and the engine sends silence.
    /// This is the explicit mute button, not push-to-talk (DESIGN.md §3).
    pub fn set_muted(&self, muted: bool) -> Result<bool, Error> {
        let response = self.handle.engine().request(RequestMessage::LocalTrackMute(proto::LocalTrackMuteRequest {
            track_handle: self.handle.id(),
            mute: muted,
        }))?;
        match response {
            ResponseMessage::LocalTrackMute(response) => Ok(response.muted),
            _ => Err(Error::Protocol("track-mute answered with another response".into())),
        }
    }
}

/// Information about a received frame; the samples are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub sample_rate: u32,
    pub channels: u32,
    pub samples_per_channel: u32,
}

/// Decoded audio of one remote track, converted by the engine to the rate and channel count
/// asked for, in 10 ms frames.
pub struct AudioStream {
    handle: OwnedHandle,
    frames: mpsc::UnboundedReceiver<proto::AudioStreamEvent>,
}

impl AudioStream {
    /// Opens a stream on `track`. Any thread with a tokio runtime.
    pub fn new(track: &RemoteAudioTrack, sample_rate: u32, channels: u32) -> Result<AudioStream, Error> {
        let engine = track.handle.engine();
        let response = engine.request(RequestMessage::NewAudioStream(proto::NewAudioStreamRequest {
            track_handle: track.handle.id(),
            r#type: proto::AudioStreamType::AudioStreamNative as i32,
            sample_rate: Some(sample_rate),
            num_channels: Some(channels),
            frame_size_ms: Some(10),
            ..Default::default()
        }))?;
        let ResponseMessage::NewAudioStream(response) = response else {
            return Err(Error::Protocol("new-audio-stream answered with another response".into()));
        };
        let handle = engine.own(response.stream.handle.id);
        let (sender, frames) = mpsc::unbounded_channel();
        engine.register_stream(handle.id(), sender);
        Ok(AudioStream { handle, frames })
    }

    /// Waits for the next frame and copies its samples into `samples` (replacing the contents).
    /// Returns `None` when the track ended.
    pub async fn next_frame(&mut self, samples: &mut Vec<i16>) -> Option<FrameInfo> {
        loop {
            let event = self.frames.recv().await?;
            match event.message {
                Some(proto::audio_stream_event::Message::FrameReceived(received)) => {
                    let owner = self.handle.engine().own(received.frame.handle.id);
                    let info = received.frame.info;
                    let len = info.samples_per_channel as usize * info.num_channels as usize;
                    crate::native::copy_samples(info.data_ptr, len, samples);
                    drop(owner);
                    return Some(FrameInfo {
                        sample_rate: info.sample_rate,
                        channels: info.num_channels,
                        samples_per_channel: info.samples_per_channel,
                    });
                }
                Some(proto::audio_stream_event::Message::Eos(_)) => return None,
                None => continue,
            }
        }
    }
}

impl Drop for AudioStream {
    fn drop(&mut self) {
        self.handle.engine().close_route(self.handle.id());
        // Release frames already queued to us.
        while let Ok(event) = self.frames.try_recv() {
            if let Some(proto::audio_stream_event::Message::FrameReceived(received)) = event.message {
                self.handle.engine().drop_handle(received.frame.handle.id);
            }
        }
    }
}
