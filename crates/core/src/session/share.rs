//! Sharing a screen or a window: the `parley-share` thread captures the target, scales the
//! picture to the share quality and hands it to the engine's video source, paced at the
//! quality's frame rate.
//!
//! The thread is the share's only real-time work and is separate from the audio threads: a slow
//! capture only lowers the share's frame rate. Buffers are allocated on the first frame (and
//! again only when a shared window is resized). When capture fails (the window closed, the
//! display went away) the thread reports [`SessionEvent::ShareFailed`], unpublishes the track
//! on the runtime and ends; the audio goes on.
//!
//! The [`Session`] methods that start and stop it live here too (a moderator's mute of the
//! share ends it: [`Session::on_share_muted`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parley_capture::{CaptureError, Capturer, Frame, Priority, Quality, scale::scale_bgra};
use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::event::{SessionEvent, StampedEvent, emit};
use super::share_audio::{self, ShareAudio};
use super::{Session, SessionError, leave_step};

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

/// How a share is sent: its quality, what it keeps when bandwidth is short, and an optional
/// cap on its upload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareSettings {
    pub quality: Quality,
    pub priority: Priority,
    /// At most this many bits per second (the top layer's bound), below what the quality sets.
    pub max_bitrate: Option<u64>,
    /// The application whose sound goes with the picture, as
    /// [`parley_audio::app_sound::choose`] takes it (part of its name, `#<stream>`, a process).
    pub audio: Option<String>,
}

impl ShareSettings {
    /// The publish options for a share sent at `width` × `height`.
    ///
    /// Measured on loopback with the top layer capped at 100 kbit/s (a 720p30 pattern):
    /// * `detail`: a screen source, resolution kept, with simulcast (viewers with a small
    ///   viewer take a smaller layer): 1280x720 arrived at 8–11 fps;
    /// * `motion`: a camera-like source, frame rate kept, one layer: the encoder lowers the
    ///   resolution itself (480x264–640x360 arrived at 23–30 fps). With simulcast the engine
    ///   does not rescale a layer (it dropped frames at 1280x720, 8–11 fps, whatever the
    ///   preference), so a motion share sends one layer; viewers then all get the same size.
    pub fn publish(&self, width: u32, height: u32) -> ffi::VideoPublishOptions {
        let mut encoding = encoding(self.quality, width, height);
        if let Some(cap) = self.max_bitrate {
            encoding.max_bitrate = encoding.max_bitrate.min(cap);
        }
        ffi::VideoPublishOptions {
            encoding: Some(encoding),
            simulcast: self.priority == Priority::Detail,
            degradation: Some(match self.priority {
                Priority::Detail => ffi::Degradation::MaintainResolution,
                Priority::Motion => ffi::Degradation::MaintainFramerate,
            }),
            ..ffi::VideoPublishOptions::default()
        }
    }
}

/// What the engine is told a share carries (it tunes the encoder to it).
fn content(priority: Priority) -> ffi::VideoContent {
    match priority {
        Priority::Detail => ffi::VideoContent::Screen,
        Priority::Motion => ffi::VideoContent::Camera,
    }
}

/// A machine-readable reason for a failed share, for front ends to branch on.
pub fn failure_code(error: &super::SessionError) -> &'static str {
    match error {
        super::SessionError::Capture(CaptureError::TargetGone(_)) => "target_gone",
        super::SessionError::Capture(CaptureError::NoDisplay(_)) => "no_display",
        super::SessionError::Capture(CaptureError::NotFound(_)) => "not_found",
        super::SessionError::Capture(CaptureError::Unsupported(_)) => "unsupported",
        super::SessionError::Capture(CaptureError::Refused(_)) => "refused",
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
        // The encoder's thread starts with the first pictures: catch it within a frame or two
        // (every frame of the first second), then once a second, and keep it and this one below
        // the voice path. Real-time video threads for even a second leave the listeners' jitter
        // buffers seconds to shrink back.
        let reported = stats.report(width, height);
        if reported.is_some() || begun.duration_since(started) < Duration::from_secs(1) {
            ffi::calm_video_threads();
        }
        if let Some(event) = reported {
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

/// A running screen share: its thread and its publication.
pub(super) struct Share {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    sid: String,
    /// Kept alive while published; the thread holds the source.
    _track: ffi::LocalVideoTrack,
    /// Its sound, when it has one.
    audio: Option<Arc<ShareAudio>>,
}

impl Session {
    /// Shares `target` at `quality`: captures its first picture, publishes a screen-share track
    /// sized for it, and starts the `parley-share` thread ([`share`]). Reports
    /// [`SessionEvent::ShareStarted`], or [`SessionEvent::ShareFailed`] as well as the error.
    /// Later failures (the window closed) end the share with `ShareFailed`. Call from a tokio
    /// runtime.
    ///
    /// Errors: [`SessionError::Capture`] (no display, no such target), engine errors
    /// ([`ffi::Error::NotAllowed`] when the token does not allow screen share),
    /// [`SessionError::AlreadySharing`].
    pub async fn start_share(
        &mut self,
        target: &parley_capture::Target,
        settings: ShareSettings,
    ) -> Result<(), SessionError> {
        let started = self.begin_share(target, settings).await;
        if let Err(error) = &started {
            emit(
                &self.events,
                SessionEvent::ShareFailed { code: failure_code(error).into(), reason: error.to_string() },
            );
        }
        started
    }

    async fn begin_share(
        &mut self,
        target: &parley_capture::Target,
        settings: ShareSettings,
    ) -> Result<(), SessionError> {
        let quality = settings.quality;
        if self.share.as_ref().is_some_and(|share| !share.thread.is_finished()) {
            return Err(SessionError::AlreadySharing);
        }
        if let Some(ended) = self.share.take() {
            self.end_share(ended).await;
        }
        // Opening and the first capture are display round trips: off the runtime's threads.
        let opening = target.clone();
        let (capturer, first) = tokio::task::spawn_blocking(move || {
            let mut capturer = parley_capture::open(&opening)?;
            let mut first = parley_capture::Frame::default();
            capturer.capture(&mut first)?;
            Ok::<_, parley_capture::CaptureError>((capturer, first))
        })
        .await
        .map_err(|error| SessionError::Audio(format!("the capture opener failed: {error}")))??;
        let (width, height) = quality.fit(first.width, first.height);
        let source = Arc::new(ffi::VideoSource::new(self.engine, width, height, content(settings.priority))?);
        let track = ffi::LocalVideoTrack::new("screen", &source)?;
        let publication =
            self.room.local_participant().publish_video_track(&track, &settings.publish(width, height)).await?;
        let (audio, audio_name) = match &settings.audio {
            Some(pattern) => {
                let participant = self.room.local_participant();
                match share_audio::start(self.engine, participant, pattern, self.events.clone()).await {
                    Ok((audio, name)) => (Some(Arc::new(audio)), Some(name)),
                    Err(reason) => {
                        let message = format!(
                            "the screen share goes on without sound: cannot share the sound of {pattern}: {reason}"
                        );
                        emit(&self.events, SessionEvent::Warning { message });
                        (None, None)
                    }
                }
            }
            None => (None, None),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (participant, sid, runtime) =
            (self.room.local_participant().clone(), publication.sid.clone(), tokio::runtime::Handle::current());
        let failed_audio = audio.clone();
        let unpublish = Box::new(move || {
            runtime.spawn(async move {
                let sound = failed_audio.and_then(|audio| audio.stop());
                for sid in std::iter::once(sid).chain(sound) {
                    if let Err(error) = participant.unpublish_track(&sid).await {
                        tracing::debug!(%error, "unpublishing a failed share");
                    }
                }
            });
        });
        let share_loop = ShareLoop {
            capturer,
            source,
            quality,
            first,
            stop: Arc::clone(&stop),
            events: self.events.clone(),
            unpublish,
        };
        let thread = std::thread::Builder::new()
            .name("parley-share".to_string())
            .spawn(move || run(share_loop))
            .map_err(|error| SessionError::Audio(format!("cannot start the share thread: {error}")))?;
        emit(
            &self.events,
            SessionEvent::ShareStarted {
                sid: publication.sid.clone(),
                target: target.to_string(),
                quality: quality.code().into(),
                priority: settings.priority.code().into(),
                width,
                height,
                fps: quality.fps(),
                audio: audio_name,
            },
        );
        self.share = Some(Share { stop, thread, sid: publication.sid, _track: track, audio });
        Ok(())
    }

    /// Stops our screen share, if any: ends the thread and unpublishes the track
    /// ([`SessionEvent::ShareStopped`]).
    pub async fn stop_share(&mut self) {
        if let Some(share) = self.share.take() {
            self.end_share(share).await;
        }
    }

    /// Ends our screen share when `event` says the server muted it (a moderator stopped it):
    /// a muted share would go on capturing and sending nothing. Front ends pass each event
    /// here; returns whether it ended the share.
    pub async fn on_share_muted(&mut self, event: &SessionEvent) -> bool {
        let SessionEvent::TrackMuted { identity, sid } = event else { return false };
        let ours = identity == self.room.local_participant().identity();
        let Some(share) = self.share.take_if(|share| ours && share.sid == *sid) else { return false };
        self.end_share(share).await;
        emit(&self.events, SessionEvent::Warning { message: "a moderator stopped your screen share".into() });
        true
    }

    /// Whether the server lets us share a screen (the token's `canPublishSources`, or a
    /// moderator's change).
    pub fn can_share(&self) -> bool {
        self.room
            .local_permission()
            .is_none_or(|permission| permission.allows_publishing(ffi::TrackSource::ScreenShare))
    }

    /// Whether our screen share is running (false once it failed).
    pub fn is_sharing(&self) -> bool {
        self.share.as_ref().is_some_and(|share| !share.thread.is_finished())
    }

    async fn end_share(&self, share: Share) {
        share.stop.store(true, Ordering::Relaxed);
        let thread = share.thread;
        // The thread ends within a frame; it holds the source, so wait before unpublishing.
        match leave_step("stopping the screen share", tokio::task::spawn_blocking(move || thread.join().is_ok())).await
        {
            Ok(Ok(true)) => {}
            Err(_) => {}
            Ok(_) => tracing::warn!("the share thread ended abnormally"),
        }
        let sound = share.audio.as_ref().and_then(|audio| audio.stop());
        for sid in std::iter::once(share.sid.clone()).chain(sound) {
            match leave_step("unpublishing the screen share", self.room.local_participant().unpublish_track(&sid)).await
            {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "unpublishing the share (a failed share is unpublished already)")
                }
            }
        }
        emit(&self.events, SessionEvent::ShareStopped { sid: share.sid });
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

    #[test]
    fn detail_keeps_the_resolution_and_layers_motion_the_frame_rate() {
        let detail = ShareSettings::default().publish(1280, 720);
        assert_eq!(detail.degradation, Some(ffi::Degradation::MaintainResolution));
        assert!(detail.simulcast, "viewers of a detail share can take a smaller layer");
        assert_eq!(content(Priority::Detail), ffi::VideoContent::Screen);
        let motion = ShareSettings { priority: Priority::Motion, ..ShareSettings::default() }.publish(1280, 720);
        assert_eq!(motion.degradation, Some(ffi::Degradation::MaintainFramerate));
        assert!(!motion.simulcast, "the engine rescales only a single layer");
        assert_eq!(content(Priority::Motion), ffi::VideoContent::Camera);
        let capped = ShareSettings { max_bitrate: Some(100_000), ..ShareSettings::default() }.publish(1280, 720);
        assert_eq!(capped.encoding.map(|encoding| encoding.max_bitrate), Some(100_000));
        let loose = ShareSettings { max_bitrate: Some(9_000_000), ..ShareSettings::default() }.publish(1280, 720);
        assert_eq!(loose.encoding.map(|encoding| encoding.max_bitrate), Some(1_700_000), "a cap never raises");
    }
}
