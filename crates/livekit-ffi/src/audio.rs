//! Audio in and out of the engine: sources we feed, tracks we publish, streams we receive.
//!
//! Frames are i16, interleaved, exactly 10 ms long (DESIGN.md §3).

use crate::engine::{Engine, KeepAlive, OwnedHandle};
use crate::error::Error;
use crate::platform::PlatformAudio;
use crate::proto;
use crate::proto::ffi_event::Message as EventMessage;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;
use crate::track::RemoteAudioTrack;

/// Samples per channel in one 10 ms frame at `sample_rate`.
pub fn samples_per_10ms(sample_rate: u32) -> usize {
    (sample_rate / 100) as usize
}

/// The rate a platform source reports (the engine's device module runs at 48 kHz).
const SAMPLE_RATE_PLATFORM: u32 = 48_000;

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
        // Parley runs its own audio processing (APM) before the source.
        let processing = false;
        let request =
            AudioSource::request(proto::AudioSourceType::AudioSourceNative, processing, sample_rate, channels);
        let request = proto::NewAudioSourceRequest { queue_size_ms: Some(0), ..request };
        AudioSource::create(engine, request, sample_rate, channels)
    }

    /// A source the engine's own device module feeds from the microphone it records
    /// ([`PlatformAudio`]), through the engine's echo cancellation, noise suppression and gain
    /// control; [`AudioSource::capture_frame`] is not for it. Any thread.
    pub fn platform(engine: &'static Engine, platform: &PlatformAudio) -> Result<AudioSource, Error> {
        let request = AudioSource::request(proto::AudioSourceType::AudioSourcePlatform, true, SAMPLE_RATE_PLATFORM, 1);
        let request = proto::NewAudioSourceRequest { platform_audio_handle: Some(platform.handle_id()), ..request };
        AudioSource::create(engine, request, SAMPLE_RATE_PLATFORM, 1)
    }

    /// A new-source request of `kind` with the engine's processing on or off.
    fn request(
        kind: proto::AudioSourceType,
        processing: bool,
        sample_rate: u32,
        channels: u32,
    ) -> proto::NewAudioSourceRequest {
        proto::NewAudioSourceRequest {
            r#type: kind as i32,
            options: Some(proto::AudioSourceOptions {
                echo_cancellation: processing,
                noise_suppression: processing,
                auto_gain_control: processing,
                prefer_hardware: None,
            }),
            sample_rate: Some(sample_rate),
            num_channels: Some(channels),
            queue_size_ms: None,
            platform_audio_handle: None,
        }
    }

    fn create(
        engine: &'static Engine,
        request: proto::NewAudioSourceRequest,
        sample_rate: u32,
        channels: u32,
    ) -> Result<AudioSource, Error> {
        let ResponseMessage::NewAudioSource(response) = engine.request(RequestMessage::NewAudioSource(request))? else {
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

/// What WebRTC's receiver did so far with one remote audio track, counted since the track was
/// subscribed (as `RTCInboundRtpStreamStats` counts it). Difference two snapshots with
/// [`ReceiveStats::since`] to see one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceiveStats {
    /// Sum over emitted samples of the time each spent in the jitter buffer, seconds.
    pub jitter_buffer_delay_s: f64,
    /// Sum over emitted samples of the jitter buffer's target delay at the time, seconds.
    pub jitter_buffer_target_delay_s: f64,
    /// Samples that left the jitter buffer.
    pub jitter_buffer_emitted: u64,
    /// Samples played out, and how many of them were concealment (made up for missing audio).
    pub samples_received: u64,
    pub concealed_samples: u64,
    pub packets_received: u64,
    pub packets_lost: i64,
}

/// One interval between two [`ReceiveStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceiveInterval {
    /// The mean time a sample spent in the jitter buffer, ms (`None` when nothing was emitted).
    pub jitter_buffer_ms: Option<f64>,
    /// The mean target delay the jitter buffer aimed for, ms.
    pub jitter_buffer_target_ms: Option<f64>,
    /// Share of the samples played that were concealment, percent.
    pub concealed_percent: f64,
    pub packets_lost: i64,
}

impl ReceiveStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &ReceiveStats) -> ReceiveInterval {
        let emitted = self.jitter_buffer_emitted.saturating_sub(earlier.jitter_buffer_emitted);
        let mean_ms = |now: f64, then: f64| (emitted > 0).then(|| (now - then) * 1000.0 / emitted as f64);
        let samples = self.samples_received.saturating_sub(earlier.samples_received);
        let concealed = self.concealed_samples.saturating_sub(earlier.concealed_samples);
        ReceiveInterval {
            jitter_buffer_ms: mean_ms(self.jitter_buffer_delay_s, earlier.jitter_buffer_delay_s),
            jitter_buffer_target_ms: mean_ms(self.jitter_buffer_target_delay_s, earlier.jitter_buffer_target_delay_s),
            concealed_percent: if samples == 0 { 0.0 } else { concealed as f64 * 100.0 / samples as f64 },
            packets_lost: self.packets_lost - earlier.packets_lost,
        }
    }
}

impl RemoteAudioTrack {
    /// The receiver's statistics for this track now; `None` before the first packet arrived.
    pub async fn receive_stats(&self) -> Result<Option<ReceiveStats>, Error> {
        let track_handle = self.handle.id();
        let (event, _) = self
            .handle
            .engine()
            .request_async(
                |async_id| {
                    RequestMessage::GetStats(proto::GetStatsRequest { track_handle, request_async_id: Some(async_id) })
                },
                None,
            )
            .await?;
        let EventMessage::GetStats(callback) = event else {
            return Err(Error::Protocol("get-stats answered with another callback".into()));
        };
        if let Some(error) = callback.error {
            return Err(Error::Engine(format!("reading the receiver's statistics failed: {error}")));
        }
        Ok(callback.stats.into_iter().find_map(|stats| match stats.stats {
            Some(proto::rtc_stats::Stats::InboundRtp(inbound)) => Some(ReceiveStats {
                jitter_buffer_delay_s: inbound.inbound.jitter_buffer_delay,
                jitter_buffer_target_delay_s: inbound.inbound.jitter_buffer_target_delay,
                jitter_buffer_emitted: inbound.inbound.jitter_buffer_emitted_count,
                samples_received: inbound.inbound.total_samples_received,
                concealed_samples: inbound.inbound.concealed_samples,
                packets_received: inbound.received.packets_received,
                packets_lost: inbound.received.packets_lost,
            }),
            _ => None,
        }))
    }
}

/// Information about a received frame; the samples are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub sample_rate: u32,
    pub channels: u32,
    pub samples_per_channel: u32,
}

/// What an [`AudioStream`]'s sink is handed.
#[derive(Debug)]
pub enum StreamFrame<'a> {
    /// One 10 ms frame: interleaved samples and what they are.
    Audio { samples: &'a [i16], info: FrameInfo },
    /// The track ended; nothing follows.
    Ended,
}

/// Where an [`AudioStream`]'s frames go. It runs on the `livekit-ffi-events` thread, which also
/// carries every other callback of the engine: it must return quickly and never wait (copy the
/// samples somewhere, e.g. into a mixer's queue) and must not drop streams or call the engine.
pub type AudioSink = Box<dyn FnMut(StreamFrame<'_>) + Send>;

/// Decoded audio of one remote track, converted by the engine to the rate and channel count
/// asked for, in 10 ms frames, handed to a sink as they arrive. Dropping it stops the frames.
///
/// Frames are handed over on the engine's event thread rather than through a channel to a task:
/// with 10 speakers that is a thousand frames a second, and each hop to another thread costs a
/// wake-up of it (futex, scheduler) that showed up in a call's profile.
pub struct AudioStream {
    handle: OwnedHandle,
}

impl AudioStream {
    /// Opens a stream on `track` whose frames go to `sink`. Any thread.
    pub fn new(
        track: &RemoteAudioTrack,
        sample_rate: u32,
        channels: u32,
        sink: impl FnMut(StreamFrame<'_>) + Send + 'static,
    ) -> Result<AudioStream, Error> {
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
        engine.register_stream(handle.id(), Box::new(sink));
        Ok(AudioStream { handle })
    }
}

impl Drop for AudioStream {
    fn drop(&mut self) {
        self.handle.engine().close_route(self.handle.id());
    }
}

/// Hands one audio-stream event to `sink`, copying a frame's samples into `scratch` first (the
/// engine's buffer is released once the sink returns). Returns whether the stream ended.
pub(crate) fn deliver(
    engine: &Engine,
    event: proto::AudioStreamEvent,
    sink: &mut AudioSink,
    scratch: &mut Vec<i16>,
) -> bool {
    match event.message {
        Some(proto::audio_stream_event::Message::FrameReceived(received)) => {
            let info = received.frame.info;
            let len = info.samples_per_channel as usize * info.num_channels as usize;
            crate::native::copy_samples(info.data_ptr, len, scratch);
            engine.drop_handle(received.frame.handle.id);
            sink(StreamFrame::Audio {
                samples: scratch,
                info: FrameInfo {
                    sample_rate: info.sample_rate,
                    channels: info.num_channels,
                    samples_per_channel: info.samples_per_channel,
                },
            });
            false
        }
        Some(proto::audio_stream_event::Message::Eos(_)) => {
            sink(StreamFrame::Ended);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_is_the_difference_of_two_snapshots() {
        let earlier = ReceiveStats {
            jitter_buffer_delay_s: 10.0,
            jitter_buffer_target_delay_s: 5.0,
            jitter_buffer_emitted: 100_000,
            samples_received: 100_000,
            concealed_samples: 1_000,
            packets_received: 500,
            packets_lost: 2,
        };
        let later = ReceiveStats {
            // 48 000 more samples, each 30 ms in the buffer, aiming at 20 ms.
            jitter_buffer_delay_s: 10.0 + 48_000.0 * 0.030,
            jitter_buffer_target_delay_s: 5.0 + 48_000.0 * 0.020,
            jitter_buffer_emitted: 148_000,
            samples_received: 148_000,
            concealed_samples: 1_480,
            packets_received: 550,
            packets_lost: 3,
        };
        let interval = later.since(&earlier);
        assert!((interval.jitter_buffer_ms.expect("emitted") - 30.0).abs() < 1e-9);
        assert!((interval.jitter_buffer_target_ms.expect("emitted") - 20.0).abs() < 1e-9);
        assert!((interval.concealed_percent - 1.0).abs() < 1e-9);
        assert_eq!(interval.packets_lost, 1);
        assert_eq!(later.since(&later).jitter_buffer_ms, None, "nothing emitted, no mean");
    }
}
