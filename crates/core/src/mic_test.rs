//! The microphone test: what the microphone hears, straight to the speaker, outside a call.
//!
//! The app's settings run it so a user can hear themselves and watch the meter; `parley
//! mic-test` runs the same loop, which also makes it the device-only baseline of `cargo xtask
//! bench audio` (the same device ends a call uses, without the engine between them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parley_audio::stream::{FrameSink, FrameSource};

/// How long the loop waits for an input that had no frame ready before it looks anyway; the
/// device's callbacks wake it as soon as audio arrives (as the call's workers are woken).
const INPUT_WAIT: Duration = Duration::from_millis(20);

/// Frames per level report: 100 ms.
const FRAMES_PER_REPORT: u32 = 10;

/// Plays each 10 ms input frame on the output until `stop` is set or the input ends; calls
/// `on_level` with the input's peak in dBFS every 100 ms. Returns why it ended: `Ok` when
/// stopped or when the input ended, `Err` with a message when the output failed.
pub fn play_back(
    mut input: Box<dyn FrameSource>,
    mut output: Box<dyn FrameSink>,
    stop: &AtomicBool,
    mut on_level: impl FnMut(f32),
) -> Result<(), String> {
    let mut frame = [0i16; parley_audio::FRAME_SAMPLES];
    let (mut peak, mut frames) = (0i16, 0u32);
    let mut outcome = Ok(());
    while !stop.load(Ordering::Relaxed) {
        if input.clocked() {
            if !input.ready() {
                std::thread::park_timeout(INPUT_WAIT);
                continue;
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !input.fill(&mut frame) {
            break;
        }
        if let Err(error) = output.write(&frame) {
            outcome = Err(format!("the microphone test cannot play: {error}"));
            break;
        }
        peak = frame.iter().fold(peak, |peak, sample| peak.max(sample.saturating_abs()));
        frames += 1;
        if frames == FRAMES_PER_REPORT {
            on_level(parley_audio::linear_to_db(f32::from(peak) / f32::from(i16::MAX)));
            (peak, frames) = (0, 0);
        }
    }
    if let Err(error) = output.finish() {
        tracing::debug!(%error, "closing the microphone test's output");
    }
    outcome
}
