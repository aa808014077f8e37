//! Sharing a screen or a window: the `parley-share` thread captures the target, scales the
//! picture to the share quality and hands it to the engine's video source, paced at the
//! quality's frame rate.
//!
//! The thread is the share's only real-time work and is separate from the audio threads: a slow
//! capture only lowers the share's frame rate. Buffers are allocated on the first frame (and
//! again only when a shared window is resized). When capture fails (the window closed, the
//! display went away) the thread reports [`SessionEvent::ShareFailed`], unpublishes the track
//! on the runtime and ends; the audio goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parley_capture::{CaptureError, Capturer, Frame, Quality, scale::scale_bgra};
use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::event::{SessionEvent, StampedEvent, emit};

/// How often [`SessionEvent::ShareStats`] reports.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// The top encoding for a share of `width` × `height` at `quality`: about 1.7 Mb/s for 720p30,
/// 3 Mb/s for 1080p30, 5 Mb/s for 1080p60, and for `source` the 1080p30 rate scaled by pixel
/// count (at least the 720p rate, at most 8 Mb/s).
pub fn encoding(quality: Quality, width: u32, height: u32) -> ffi::VideoEncoding {
    let max_bitrate = match quality {
        Quality::P720Fps30 => 1_700_000,
        Quality::P1080Fps30 => 3_000_000,
        Quality::P1080Fps60 => 5_000_000,
        Quality::Source => {
            let pixels = u64::from(width) * u64::from(height);
            (pixels * 3_000_000 / (1920 * 1080)).clamp(1_700_000, 8_000_000)
        }
    };
    ffi::VideoEncoding { max_bitrate, max_framerate: f64::from(quality.fps()) }
}

/// A machine-readable reason for a failed share, for front ends to branch on.
pub fn failure_code(error: &super::SessionError) -> &'static str {
    match error {
        super::SessionError::Capture(CaptureError::TargetGone(_)) => "target_gone",
        super::SessionError::Capture(CaptureError::NoDisplay(_)) => "no_display",
        super::SessionError::Capture(CaptureError::NotFound(_)) => "not_found",
        super::SessionError::Capture(CaptureError::Unsupported(_)) => "unsupported",
        super::SessionError::Capture(_) => "unavailable",
        super::SessionError::Engine(ffi::Error::NotAllowed(_)) => "not_allowed",
        _ => "engine",
    }
}

/// What the share thread needs.
pub(super) struct ShareLoop {
    pub(super) capturer: Box<dyn Capturer>,
    pub(super) source: Arc<ffi::VideoSource>,
    pub(super) quality: Quality,
    /// The first picture, captured while starting (it gave the source its size).
    pub(super) first: Frame,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) events: mpsc::UnboundedSender<StampedEvent>,
    /// Unpublishes the track after a failure (on the runtime).
    pub(super) unpublish: Box<dyn FnOnce() + Send>,
}

/// Runs the share until `stop` or a failure.
pub(super) fn run(share: ShareLoop) {
    let ShareLoop { mut capturer, source, quality, first: mut captured, stop, events, unpublish } = share;
    let period = Duration::from_secs(1) / quality.fps();
    let started = Instant::now();
    let mut picture: Option<ffi::VideoFrame> = None;
    let mut next = started;
    let mut stats = Stats::new();
    let mut have_frame = true;
    let failure = loop {
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        let begun = Instant::now();
        if !have_frame && let Err(error) = capturer.capture(&mut captured) {
            break Some(super::SessionError::Capture(error));
        }
        have_frame = false;
        let (width, height) = quality.fit(captured.width, captured.height);
        let fits = picture.as_ref().is_some_and(|picture| (picture.width(), picture.height()) == (width, height));
        if !fits {
            match ffi::VideoFrame::new(ffi::PixelFormat::Bgra, width, height) {
                Ok(fresh) => picture = Some(fresh),
                Err(error) => break Some(error.into()),
            }
        }
        let Some(frame) = picture.as_mut() else { break None };
        scale_bgra(&captured.data, captured.width, captured.height, frame.data_mut(), width, height);
        let captured_at = Instant::now();
        let timestamp_us = begun.duration_since(started).as_micros() as i64;
        if let Err(error) = source.capture(frame, timestamp_us) {
            break Some(error.into());
        }
        stats.add(captured_at - begun, captured_at.elapsed());
        if let Some(event) = stats.report(width, height) {
            emit(&events, event);
        }
        next += period;
        let now = Instant::now();
        if now > next + period {
            // Fell behind (a slow capture): skip the missed frames rather than burst.
            next = now;
        }
        std::thread::sleep(next.saturating_duration_since(now));
    };
    if let Some(error) = failure {
        tracing::warn!(%error, "screen share failed");
        emit(&events, SessionEvent::ShareFailed { code: failure_code(&error).into(), reason: error.to_string() });
        unpublish();
    }
}

/// Frames and time spent over the current interval.
struct Stats {
    since: Instant,
    frames: u32,
    capture: Duration,
    send: Duration,
}

impl Stats {
    fn new() -> Stats {
        Stats { since: Instant::now(), frames: 0, capture: Duration::ZERO, send: Duration::ZERO }
    }

    fn add(&mut self, capture: Duration, send: Duration) {
        self.frames += 1;
        self.capture += capture;
        self.send += send;
    }

    fn report(&mut self, width: u32, height: u32) -> Option<SessionEvent> {
        let elapsed = self.since.elapsed();
        if elapsed < STATS_EVERY || self.frames == 0 {
            return None;
        }
        let per_frame = |total: Duration| total.as_secs_f64() * 1000.0 / f64::from(self.frames);
        let event = SessionEvent::ShareStats {
            fps: (f64::from(self.frames) / elapsed.as_secs_f64() * 10.0).round() / 10.0,
            width,
            height,
            capture_ms: (per_frame(self.capture) * 100.0).round() / 100.0,
            send_ms: (per_frame(self.send) * 100.0).round() / 100.0,
        };
        *self = Stats::new();
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_the_quality() {
        assert_eq!(encoding(Quality::P720Fps30, 1280, 720).max_bitrate, 1_700_000);
        assert_eq!(encoding(Quality::P1080Fps60, 1920, 1080).max_framerate, 60.0);
        assert_eq!(encoding(Quality::Source, 1920, 1080).max_bitrate, 3_000_000);
        assert_eq!(encoding(Quality::Source, 640, 480).max_bitrate, 1_700_000);
        assert_eq!(encoding(Quality::Source, 5120, 2880).max_bitrate, 8_000_000);
    }
}
