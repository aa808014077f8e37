//! WebRTC audio processing (echo cancellation, noise suppression, gain control, high-pass).

use crate::engine::{Engine, OwnedHandle};
use crate::error::Error;
use crate::proto;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;

/// Which processing stages run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApmConfig {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain_control: bool,
    pub high_pass_filter: bool,
}

impl Default for ApmConfig {
    fn default() -> ApmConfig {
        ApmConfig { echo_cancellation: true, noise_suppression: true, auto_gain_control: true, high_pass_filter: true }
    }
}

/// One audio processing module. Frames are 10 ms, i16, processed in place. Use it from one
/// worker thread (never a real-time callback: each call crosses the FFI).
pub struct Apm {
    handle: OwnedHandle,
}

impl Apm {
    pub fn new(engine: &'static Engine, config: ApmConfig) -> Result<Apm, Error> {
        let response = engine.request(RequestMessage::NewApm(proto::NewApmRequest {
            echo_canceller_enabled: config.echo_cancellation,
            gain_controller_enabled: config.auto_gain_control,
            high_pass_filter_enabled: config.high_pass_filter,
            noise_suppression_enabled: config.noise_suppression,
        }))?;
        let ResponseMessage::NewApm(response) = response else {
            return Err(Error::Protocol("new-apm answered with another response".into()));
        };
        Ok(Apm { handle: engine.own(response.apm.handle.id) })
    }

    /// Processes a captured (near-end) frame in place.
    pub fn process_stream(&mut self, frame: &mut [i16], sample_rate: u32, channels: u32) -> Result<(), Error> {
        check_frame(frame, sample_rate, channels)?;
        let response =
            self.handle.engine().request(RequestMessage::ApmProcessStream(proto::ApmProcessStreamRequest {
                apm_handle: self.handle.id(),
                data_ptr: frame.as_mut_ptr() as u64,
                size: std::mem::size_of_val(frame) as u32,
                sample_rate,
                num_channels: channels,
            }))?;
        match response {
            ResponseMessage::ApmProcessStream(proto::ApmProcessStreamResponse { error: Some(error) }) => {
                Err(Error::Engine(format!("audio processing failed: {error}")))
            }
            ResponseMessage::ApmProcessStream(_) => Ok(()),
            _ => Err(Error::Protocol("apm answered with another response".into())),
        }
    }

    /// Feeds a frame about to be played (far end), the echo canceller's reference.
    pub fn process_reverse_stream(&mut self, frame: &mut [i16], sample_rate: u32, channels: u32) -> Result<(), Error> {
        check_frame(frame, sample_rate, channels)?;
        let response = self.handle.engine().request(RequestMessage::ApmProcessReverseStream(
            proto::ApmProcessReverseStreamRequest {
                apm_handle: self.handle.id(),
                data_ptr: frame.as_mut_ptr() as u64,
                size: std::mem::size_of_val(frame) as u32,
                sample_rate,
                num_channels: channels,
            },
        ))?;
        match response {
            ResponseMessage::ApmProcessReverseStream(proto::ApmProcessReverseStreamResponse { error: Some(error) }) => {
                Err(Error::Engine(format!("audio processing failed: {error}")))
            }
            ResponseMessage::ApmProcessReverseStream(_) => Ok(()),
            _ => Err(Error::Protocol("apm answered with another response".into())),
        }
    }

    /// Tells the echo canceller how long audio takes from `process_reverse_stream` to the
    /// speaker and back through the microphone to `process_stream`.
    pub fn set_stream_delay_ms(&mut self, delay_ms: i32) -> Result<(), Error> {
        let response =
            self.handle.engine().request(RequestMessage::ApmSetStreamDelay(proto::ApmSetStreamDelayRequest {
                apm_handle: self.handle.id(),
                delay_ms,
            }))?;
        match response {
            ResponseMessage::ApmSetStreamDelay(proto::ApmSetStreamDelayResponse { error: Some(error) }) => {
                Err(Error::Engine(format!("setting the echo delay failed: {error}")))
            }
            ResponseMessage::ApmSetStreamDelay(_) => Ok(()),
            _ => Err(Error::Protocol("apm answered with another response".into())),
        }
    }
}

fn check_frame(frame: &[i16], sample_rate: u32, channels: u32) -> Result<(), Error> {
    let expected = crate::audio::samples_per_10ms(sample_rate) * channels as usize;
    if frame.len() != expected {
        return Err(Error::InvalidArgument(format!(
            "audio processing takes 10 ms frames ({expected} samples), got {}",
            frame.len()
        )));
    }
    Ok(())
}
