//! Capture on macOS through ScreenCaptureKit (the `screencapturekit` crate): every display, and
//! every on-screen window with a title (Parley's own excepted). Without the Screen Recording
//! permission nothing is shared ([`CaptureError::Refused`]), never a black picture.
//!
//! A stream runs per capturer. Its handler, on ScreenCaptureKit's queue, only keeps the newest
//! complete sample (retained, not copied); [`Capturer::capture`] draws that sample into packed
//! BGRA rows through Core Graphics (`cg_image`, then `CGImageExt::bgra_data_into`, which also
//! drops the row padding): the crate's only way to read pixels without `unsafe`. `CGImageExt`
//! sits behind the crate's `macos_14_0` feature, which gates Rust items only; the calls work on
//! every macOS with ScreenCaptureKit.
//!
//! ScreenCaptureKit measures in points; pictures are asked for in pixels (points × the point-to-
//! pixel scale macOS 14 reports; macOS 13 says 1, so a Retina screen is shared at point size).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use screencapturekit::cg::CGRect;
use screencapturekit::cm::{CMSampleBuffer, CMSampleBufferExt, CMSampleBufferSCExt, CMTime, SCFrameStatus};
use screencapturekit::error::{SCError, SCStreamErrorCode};
use screencapturekit::screenshot_manager::CGImageExt;
use screencapturekit::shareable_content::{SCDisplay, SCShareableContent};
use screencapturekit::stream::ErrorHandler;
use screencapturekit::stream::configuration::{PixelFormat, SCStreamConfiguration};
use screencapturekit::stream::content_filter::SCContentFilter;
use screencapturekit::stream::output_trait::SCStreamOutputTrait;
use screencapturekit::stream::output_type::SCStreamOutputType;
use screencapturekit::stream::sc_stream::SCStream;

use crate::{CaptureError, Capturer, Frame, Target, TargetKind};

/// What the user is told when macOS has not granted the Screen Recording permission.
const NOT_ALLOWED: &str =
    "macOS has not allowed Parley to record the screen: System Settings → Privacy & Security → Screen Recording";
/// The fastest the system is asked to deliver (60 fps covers every share quality).
const FRAMES_PER_SECOND: i32 = 60;
/// Pictures ScreenCaptureKit keeps in flight. The capturer holds up to two (the newest, and the
/// one it last copied, sent again while nothing changes); one more leaves the system a surface
/// to draw the next picture into.
const QUEUE_DEPTH: u32 = 4;
/// How long [`Capturer::capture`] waits for the first picture.
const FIRST_PICTURE: Duration = Duration::from_secs(1);
/// Without a new picture for this long, a shared window is looked up again: ScreenCaptureKit
/// simply goes quiet when a window closes.
const LIVENESS: Duration = Duration::from_secs(1);

pub(crate) fn desktop_picks() -> bool {
    false
}

/// Whether ScreenCaptureKit failed because the Screen Recording permission is missing (the
/// user declined the TCC prompt, or never answered it).
fn is_refusal(error: &SCError) -> bool {
    // Errors that cross the crate's Swift bridge as text keep macOS's own wording.
    let message = error.to_string().to_lowercase();
    matches!(error, SCError::PermissionDenied(_))
        || error.stream_error_code() == Some(SCStreamErrorCode::UserDeclined)
        || ["declined", "tcc", "not authorized", "not permitted", "permission"]
            .iter()
            .any(|word| message.contains(word))
}

fn failure(target: &str, error: &SCError) -> CaptureError {
    if is_refusal(error) { CaptureError::Refused(NOT_ALLOWED.into()) } else { unavailable(target, error) }
}

fn unavailable(target: &str, reason: impl std::fmt::Display) -> CaptureError {
    CaptureError::Unavailable { target: target.to_string(), reason: reason.to_string() }
}

/// The displays, windows and applications there are now (the desktop's own windows left out).
fn shareable(target: &str, on_screen_only: bool) -> Result<SCShareableContent, CaptureError> {
    // A process without a window (the CLI) must bring CoreGraphics up before ScreenCaptureKit's
    // window filters use it, or it aborts (CGS_REQUIRE_INIT); asking for the main display does.
    static CORE_GRAPHICS: std::sync::Once = std::sync::Once::new();
    CORE_GRAPHICS.call_once(|| {
        let _main = apple_cf::cg::Display::main();
    });
    let options = SCShareableContent::create().with_exclude_desktop_windows(true);
    options.with_on_screen_windows_only(on_screen_only).get().map_err(|error| failure(target, &error))
}

/// Points to whole pixels.
fn pixels(points: f64, scale: f64) -> u32 {
    (points * scale).round().max(0.0) as u32
}

/// The point-to-pixel scale of what `filter` captures (1 where macOS does not say).
fn scale_of(filter: &SCContentFilter) -> f64 {
    let scale = f64::from(filter.point_pixel_scale());
    if scale.is_finite() && scale >= 1.0 { scale } else { 1.0 }
}

fn display_filter(display: &SCDisplay) -> Result<SCContentFilter, SCError> {
    SCContentFilter::create().with_display(display).with_excluding_windows(&[]).build()
}

pub(crate) fn list_targets() -> Result<Vec<Target>, CaptureError> {
    const WHAT: &str = "screens and windows";
    let content = shareable(WHAT, true)?;
    let mut targets = Vec::new();
    // Each display's frame (points, in the global space windows share) and scale.
    let mut screens: Vec<(CGRect, f64)> = Vec::new();
    for (index, display) in content.displays().iter().enumerate() {
        let scale = display_filter(display).map_or(1.0, |filter| scale_of(&filter));
        screens.push((display.frame(), scale));
        targets.push(Target {
            kind: TargetKind::Screen,
            id: index as u64,
            name: format!("screen {index}"),
            width: pixels(f64::from(display.width()), scale),
            height: pixels(f64::from(display.height()), scale),
        });
    }
    if screens.is_empty() {
        return Err(CaptureError::NoDisplay("macOS lists no display to capture".into()));
    }
    // One batched call for every window's title, frame and owner.
    let snapshot = content.snapshot().ok_or_else(|| unavailable(WHAT, "macOS listed more windows than fit"))?;
    let own = std::process::id();
    for window in &snapshot.windows {
        let owner = window.owning_app_index.and_then(|index| snapshot.applications.get(index));
        let title = window.title.as_deref().unwrap_or("").trim();
        // Layer 0 holds documents' windows; menus, the Dock and overlays sit on other layers.
        if !window.is_on_screen || window.window_layer != 0 || title.is_empty() {
            continue;
        }
        if owner.is_some_and(|app| u32::try_from(app.process_id) == Ok(own)) {
            continue;
        }
        let screen = screens.iter().find(|(frame, _)| frame.contains_point(window.frame.center()));
        let scale = screen.or(screens.first()).map_or(1.0, |(_, scale)| *scale);
        let (width, height) = (pixels(window.frame.size.width, scale), pixels(window.frame.size.height, scale));
        if width < 2 || height < 2 {
            continue;
        }
        let app = owner.map_or("", |app| app.application_name.trim());
        let name = if app.is_empty() || app == title { title.to_string() } else { format!("{app} — {title}") };
        targets.push(Target { kind: TargetKind::Window, id: u64::from(window.window_id), name, width, height });
    }
    Ok(targets)
}

pub(crate) fn open(target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    let what = target.to_string();
    let content = shareable(&what, false)?;
    let (filter, points, window) = match target.kind {
        TargetKind::Screen => {
            let displays = content.displays();
            let display = displays.get(target.id as usize).ok_or_else(|| CaptureError::TargetGone(what.clone()))?;
            let filter = display_filter(display).map_err(|error| failure(&what, &error))?;
            (filter, (f64::from(display.width()), f64::from(display.height())), None)
        }
        TargetKind::Window => {
            let id = u32::try_from(target.id).map_err(|_| CaptureError::NotFound(what.clone()))?;
            let windows = content.windows();
            let window = windows.iter().find(|window| window.window_id() == id);
            let window = window.ok_or_else(|| CaptureError::TargetGone(what.clone()))?;
            let filter =
                SCContentFilter::create().with_window(window).build().map_err(|error| failure(&what, &error))?;
            let size = window.frame().size;
            (filter, (size.width, size.height), Some(id))
        }
    };
    let scale = scale_of(&filter);
    let (mut width, mut height) = (pixels(points.0, scale), pixels(points.1, scale));
    if width < 2 || height < 2 {
        (width, height) = (target.width, target.height);
    }
    let configuration = SCStreamConfiguration::new()
        .with_width(width)
        .with_height(height)
        .with_pixel_format(PixelFormat::BGRA)
        .with_minimum_frame_interval(&CMTime::new(1, FRAMES_PER_SECOND))
        .with_shows_cursor(true)
        .with_queue_depth(QUEUE_DEPTH)
        // A window resized while shared is drawn into the size it started with.
        .with_scales_to_fit(true);

    let shared = Arc::new(Shared::default());
    let on_error = shared.clone();
    let delegate = ErrorHandler::new(move |error| on_error.end(error));
    let mut stream =
        SCStream::new_with_delegate(&filter, &configuration, delegate).map_err(|error| failure(&what, &error))?;
    stream
        .add_output_handler(Pictures { shared: shared.clone() }, SCStreamOutputType::Screen)
        .map_err(|error| failure(&what, &error))?;
    stream.start_capture().map_err(|error| failure(&what, &error))?;
    Ok(Box::new(SckCapturer {
        stream,
        shared,
        target: what,
        window,
        size: (width, height),
        current: None,
        checked: Instant::now(),
        delivered: false,
    }))
}

/// What the stream's handlers and the capturer share.
#[derive(Default)]
struct Shared {
    latest: Mutex<Latest>,
    arrived: Condvar,
}

#[derive(Default)]
struct Latest {
    /// The newest complete picture not yet taken by the capturer.
    sample: Option<CMSampleBuffer>,
    /// Why the stream ended, if it did: no picture will come again.
    ended: Option<SCError>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Latest> {
        // The slot holds whole values only; a panic elsewhere cannot leave it half-written.
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn end(&self, error: SCError) {
        self.lock().ended.get_or_insert(error);
        self.arrived.notify_all();
    }
}

/// The stream's output handler, on ScreenCaptureKit's queue: keeps the newest complete sample.
struct Pictures {
    shared: Arc<Shared>,
}

impl SCStreamOutputTrait for Pictures {
    fn did_output_sample_buffer(&self, sample: CMSampleBuffer, of_type: SCStreamOutputType) {
        if of_type != SCStreamOutputType::Screen {
            return;
        }
        match sample.frame_status() {
            // Idle, blank and suspended samples carry no new picture.
            Some(SCFrameStatus::Complete | SCFrameStatus::Started) | None => {}
            Some(SCFrameStatus::Stopped) => {
                self.shared.end(SCError::StreamError("macOS stopped the capture".into()));
                return;
            }
            Some(_) => return,
        }
        if sample.pixel_buffer().is_none() {
            return;
        }
        let replaced = self.shared.lock().sample.replace(sample);
        self.shared.arrived.notify_all();
        // Released outside the lock (a retained sample hands its surface back to the system).
        drop(replaced);
    }
}

struct SckCapturer {
    stream: SCStream,
    shared: Arc<Shared>,
    /// What errors call the target (`window 0x1f2 "Safari — Parley"`).
    target: String,
    /// The shared window's id, looked up again when the stream goes quiet.
    window: Option<u32>,
    size: (u32, u32),
    /// The picture copied last, sent again while nothing changes (the system sends changes only).
    current: Option<CMSampleBuffer>,
    /// When a picture last arrived or the window was last found.
    checked: Instant,
    /// Whether a picture was drawn into a caller's frame yet.
    delivered: bool,
}

impl SckCapturer {
    fn ended(&self, error: &SCError) -> CaptureError {
        if is_refusal(error) {
            CaptureError::Refused(NOT_ALLOWED.into())
        } else if error.stream_error_code() == Some(SCStreamErrorCode::UserStopped) {
            CaptureError::Refused("it was stopped from the screen-sharing menu in the macOS menu bar".into())
        } else {
            CaptureError::TargetGone(self.target.clone())
        }
    }

    /// Errors unless the shared window still exists (checked at most once per [`LIVENESS`]).
    fn check_window(&mut self) -> Result<(), CaptureError> {
        let Some(id) = self.window else { return Ok(()) };
        if self.checked.elapsed() < LIVENESS {
            return Ok(());
        }
        let content = shareable(&self.target, false)?;
        if !content.windows().iter().any(|window| window.window_id() == id) {
            return Err(CaptureError::TargetGone(self.target.clone()));
        }
        self.checked = Instant::now();
        Ok(())
    }
}

impl Capturer for SckCapturer {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn capture(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let mut latest = self.shared.lock();
        if self.current.is_none() && latest.sample.is_none() && latest.ended.is_none() {
            latest = self
                .shared
                .arrived
                .wait_timeout_while(latest, FIRST_PICTURE, |latest| latest.sample.is_none() && latest.ended.is_none())
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if let Some(error) = latest.ended.clone() {
            drop(latest);
            return Err(self.ended(&error));
        }
        let fresh = latest.sample.take();
        drop(latest);
        match fresh {
            Some(sample) => {
                self.current = Some(sample);
                self.checked = Instant::now();
            }
            None => self.check_window()?,
        }
        let Some(sample) = &self.current else {
            return Err(unavailable(&self.target, "macOS sent no picture of it (is it minimised?)"));
        };
        let previous = self.delivered && (frame.width, frame.height) == self.size;
        match draw(sample, frame) {
            Ok(()) => (self.delivered, self.size) = (true, (frame.width, frame.height)),
            // A picture macOS cannot convert leaves the previous one rather than end the share.
            Err(_) if previous && (frame.width, frame.height) == self.size => {}
            Err(reason) => return Err(unavailable(&self.target, reason)),
        }
        Ok(())
    }
}

/// Draws `sample` into `frame` with rows packed (width × 4 bytes), whatever the pixel buffer's
/// row padding.
fn draw(sample: &CMSampleBuffer, frame: &mut Frame) -> Result<(), String> {
    let image = sample.cg_image().map_err(|status| format!("macOS could not read the picture (status {status})"))?;
    let (Ok(width), Ok(height)) = (u32::try_from(image.width()), u32::try_from(image.height())) else {
        return Err("the picture is too large".into());
    };
    frame.resize(width, height);
    image.bgra_data_into(&mut frame.data).map(drop).map_err(|error| error.to_string())
}

impl Drop for SckCapturer {
    fn drop(&mut self) {
        // An error means the stream had already stopped (it ended, or never ran): nothing to undo.
        let _ = self.stream.stop_capture();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_permission_is_told_apart_from_other_failures() {
        let declined = "Stream error: The user declined TCCs for application, window, display capture";
        assert!(is_refusal(&SCError::CaptureStartFailed(declined.into())), "macOS's TCC wording is a refusal");
        assert!(is_refusal(&SCStreamErrorCode::UserDeclined.into()), "the user-declined code is a refusal");
        assert!(!is_refusal(&SCStreamErrorCode::UserStopped.into()), "stopping from the menu bar is not a refusal");
        assert!(!is_refusal(&SCError::StreamError("the display was removed".into())), "a lost display is no refusal");
        assert_eq!(pixels(1512.0, 2.0), 3024, "points times the scale are pixels");
    }
}
