//! Capture on Windows through Windows.Graphics.Capture (Windows 10 1903+), with the
//! `windows-capture` crate: every monitor, and every top-level window with a title (Parley's own
//! excepted). The system draws its yellow capture border around what is shared, so the user
//! always sees it.
//!
//! Windows.Graphics.Capture pushes frames from its own thread (a Direct3D texture each time the
//! picture changes); the handler copies each one, BGRA with rows packed, into the latest picture
//! that [`Capturer::capture`] hands on. A window that closes ends the capture
//! ([`CaptureError::TargetGone`]).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use windows_capture::capture::{Context, GraphicsCaptureApiHandler};
use windows_capture::frame::Frame as CapturedFrame;
use windows_capture::graphics_capture_api::InternalCaptureControl;
use windows_capture::monitor::Monitor;
use windows_capture::settings::{
    ColorFormat, CursorCaptureSettings, DirtyRegionSettings, DrawBorderSettings, MinimumUpdateIntervalSettings,
    SecondaryWindowSettings, Settings,
};
use windows_capture::window::Window;

use crate::{CaptureError, Capturer, Frame, Target, TargetKind};

/// The fastest the system is asked to deliver (60 fps covers every share quality).
const MIN_INTERVAL: Duration = Duration::from_micros(16_666);
/// How long [`Capturer::capture`] waits for the first picture (the system shows it within a
/// frame or two; a window that never draws is unavailable).
const FIRST_PICTURE: Duration = Duration::from_secs(2);

pub(crate) fn desktop_picks() -> bool {
    false
}

fn unavailable(target: &str, reason: impl std::fmt::Display) -> CaptureError {
    CaptureError::Unavailable { target: target.to_string(), reason: reason.to_string() }
}

/// The capture thread panicked while holding the latest picture.
fn lost(target: &str) -> CaptureError {
    unavailable(target, "the capture's state was lost")
}

pub(crate) fn list_targets() -> Result<Vec<Target>, CaptureError> {
    let monitors = Monitor::enumerate().map_err(|error| CaptureError::NoDisplay(error.to_string()))?;
    let mut targets = Vec::new();
    for (position, monitor) in monitors.iter().enumerate() {
        let (Ok(width), Ok(height)) = (monitor.width(), monitor.height()) else { continue };
        let name = monitor.name().or_else(|_| monitor.device_string()).unwrap_or_default();
        targets.push(Target {
            kind: TargetKind::Screen,
            id: position as u64,
            name: if name.is_empty() { format!("screen {position}") } else { format!("screen {position} ({name})") },
            width,
            height,
        });
    }
    let own = std::process::id();
    let windows = Window::enumerate().map_err(|error| CaptureError::NoDisplay(error.to_string()))?;
    for window in windows {
        if window.process_id().ok() == Some(own) {
            continue;
        }
        let Ok(title) = window.title() else { continue };
        let (Ok(width), Ok(height)) = (window.width(), window.height()) else { continue };
        if title.trim().is_empty() || width <= 0 || height <= 0 {
            continue;
        }
        targets.push(Target {
            kind: TargetKind::Window,
            id: window.as_raw_hwnd() as usize as u64,
            name: title,
            width: width.unsigned_abs(),
            height: height.unsigned_abs(),
        });
    }
    Ok(targets)
}

pub(crate) fn open(target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    let shared = Arc::new(Shared::default());
    let what = target.to_string();
    let started = match target.kind {
        TargetKind::Screen => {
            let monitor = Monitor::enumerate()
                .map_err(|error| CaptureError::NoDisplay(error.to_string()))?
                .get(target.id as usize)
                .copied()
                .ok_or_else(|| CaptureError::TargetGone(what.clone()))?;
            Handler::start_free_threaded(settings(monitor, shared.clone()))
        }
        TargetKind::Window => {
            let window = Window::from_raw_hwnd(target.id as usize as *mut std::ffi::c_void);
            if !window.is_valid() {
                return Err(CaptureError::TargetGone(what));
            }
            Handler::start_free_threaded(settings(window, shared.clone()))
        }
    };
    let control = started.map_err(|error| unavailable(&what, error))?;
    Ok(Box::new(WgcCapturer { shared, target: what, size: (target.width, target.height), control: Some(control) }))
}

fn settings<T: TryInto<windows_capture::settings::GraphicsCaptureItemType>>(
    item: T,
    shared: Arc<Shared>,
) -> Settings<Arc<Shared>, T> {
    Settings::new(
        item,
        CursorCaptureSettings::WithCursor,
        DrawBorderSettings::Default,
        SecondaryWindowSettings::Default,
        MinimumUpdateIntervalSettings::Custom(MIN_INTERVAL),
        DirtyRegionSettings::Default,
        ColorFormat::Bgra8,
        shared,
    )
}

/// What the capture thread and the capturer share.
#[derive(Default)]
struct Shared {
    latest: Mutex<Latest>,
    arrived: Condvar,
}

#[derive(Default)]
struct Latest {
    frame: Frame,
    /// The window closed (or the capture failed): no picture will come again.
    closed: bool,
}

/// Runs on Windows.Graphics.Capture's thread.
struct Handler {
    shared: Arc<Shared>,
    /// The texture's rows without padding, reused.
    packed: Vec<u8>,
}

impl GraphicsCaptureApiHandler for Handler {
    type Flags = Arc<Shared>;
    type Error = String;

    fn new(context: Context<Self::Flags>) -> Result<Self, Self::Error> {
        Ok(Handler { shared: context.flags, packed: Vec::new() })
    }

    fn on_frame_arrived(&mut self, frame: &mut CapturedFrame, _: InternalCaptureControl) -> Result<(), Self::Error> {
        let buffer = frame.buffer().map_err(|error| error.to_string())?;
        let (width, height) = (buffer.width(), buffer.height());
        let pixels = buffer.as_nopadding_buffer(&mut self.packed);
        let Ok(mut latest) = self.shared.latest.lock() else { return Err("the capture's state was lost".into()) };
        latest.frame.resize(width, height);
        let length = latest.frame.data.len().min(pixels.len());
        latest.frame.data[..length].copy_from_slice(&pixels[..length]);
        drop(latest);
        self.shared.arrived.notify_all();
        Ok(())
    }

    fn on_closed(&mut self) -> Result<(), Self::Error> {
        if let Ok(mut latest) = self.shared.latest.lock() {
            latest.closed = true;
        }
        self.shared.arrived.notify_all();
        Ok(())
    }
}

struct WgcCapturer {
    shared: Arc<Shared>,
    target: String,
    size: (u32, u32),
    control: Option<windows_capture::capture::CaptureControl<Handler, String>>,
}

impl Capturer for WgcCapturer {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn capture(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let mut latest = self.shared.latest.lock().map_err(|_| lost(&self.target))?;
        if latest.frame.width == 0 && !latest.closed {
            let waited = self
                .shared
                .arrived
                .wait_timeout_while(latest, FIRST_PICTURE, |latest| latest.frame.width == 0 && !latest.closed)
                .map_err(|_| lost(&self.target))?;
            latest = waited.0;
        }
        let finished = self.control.as_ref().is_some_and(|control| control.is_finished());
        if latest.closed || finished {
            return Err(CaptureError::TargetGone(self.target.clone()));
        }
        if latest.frame.width == 0 {
            return Err(unavailable(&self.target, "Windows sent no picture of it (is it minimised?)"));
        }
        // Without a new picture the last one is sent again: the system only sends changes.
        frame.resize(latest.frame.width, latest.frame.height);
        frame.data.copy_from_slice(&latest.frame.data);
        self.size = (latest.frame.width, latest.frame.height);
        Ok(())
    }
}

impl Drop for WgcCapturer {
    fn drop(&mut self) {
        if let Some(control) = self.control.take() {
            // Already finished (the window closed) or stopped now; either way nothing to add.
            let _ = control.stop();
        }
    }
}
