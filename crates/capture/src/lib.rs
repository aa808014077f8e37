//! Screen and window capture behind one trait, for screen sharing.
//!
//! * [`Target`] — a screen or a window that can be captured, listed by [`list_targets`] and
//!   chosen from a user's words by [`find_target`];
//! * [`Capturer`] — opened on a target by [`open`], it fills a reused [`Frame`] (BGRA, rows
//!   packed) with the target's current picture, synchronously: call it from a capture thread;
//! * [`Quality`] and [`scale`] — the share qualities (720p30 … source) and the downscale that
//!   fits a picture into one, keeping its aspect and never enlarging it;
//! * [`pattern`] — the test pattern `parley-pattern-window` draws, and how tests read it back.
//!
//! The platform code lives in one module per OS behind this facade (STYLE.md 4): `linux`
//! (X11 through `x11rb`; on Wayland the ScreenCast portal and PipeWire, where the desktop's
//! dialog picks the screen or window), `windows` (Windows.Graphics.Capture) and `macos`
//! (ScreenCaptureKit).

pub mod pattern;
mod quality;
pub mod scale;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as platform;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod windows;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
use windows as platform;

pub use quality::{Priority, Quality};

/// Why capture failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// No display to capture from (no `DISPLAY`, or the X server cannot be reached or went away).
    #[error("no display to capture: {0}")]
    NoDisplay(String),
    /// The target went away while being captured (a shared window was closed).
    #[error("the shared {0} is gone")]
    TargetGone(String),
    /// The target cannot be captured right now (a window unmapped or off screen).
    #[error("cannot capture the {target}: {reason}")]
    Unavailable { target: String, reason: String },
    /// No target matches what the user asked for.
    #[error("no screen or window matches {0:?} (see `parley share-targets`)")]
    NotFound(String),
    /// The user or the desktop declined (the portal's dialog was cancelled, permission refused).
    #[error("the screen share was not allowed: {0}")]
    Refused(String),
    /// Capture is not implemented on this platform or display.
    #[error("screen capture is not supported yet on this platform ({0})")]
    Unsupported(String),
}

/// Whether a [`Target`] is a whole screen or one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Screen,
    Window,
}

impl TargetKind {
    pub fn code(self) -> &'static str {
        match self {
            TargetKind::Screen => "screen",
            TargetKind::Window => "window",
        }
    }
}

/// A screen or window that can be captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    /// A screen's index, or a window's id (on X11 the window XID).
    pub id: u64,
    pub name: String,
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for Target {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.width == 0 {
            // A choice the desktop's dialog makes: no size to tell yet.
            return write!(formatter, "{}", self.name);
        }
        match self.kind {
            TargetKind::Screen => write!(formatter, "screen {} ({}x{})", self.id, self.width, self.height),
            TargetKind::Window => {
                write!(formatter, "window {:#x} {:?} ({}x{})", self.id, self.name, self.width, self.height)
            }
        }
    }
}

/// One captured picture: BGRA (alpha unspecified), rows packed (`data.len() == width × height × 4`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Frame {
    /// Sets the size, reusing the allocation (it grows only when the picture does).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.data.resize(width as usize * height as usize * 4, 0);
    }
}

/// A source of pictures of one target.
pub trait Capturer: Send {
    /// The target's size now (a window may be resized while shared).
    fn size(&self) -> (u32, u32);

    /// Writes the target's current picture into `frame`, resizing it if the target's size
    /// changed. Synchronous (a round trip to the display server): call it from a capture thread.
    ///
    /// Errors: [`CaptureError::TargetGone`] when the window was closed,
    /// [`CaptureError::NoDisplay`] when the display went away, [`CaptureError::Unavailable`].
    fn capture(&mut self, frame: &mut Frame) -> Result<(), CaptureError>;
}

/// The screens and the named top-level windows there are to capture.
///
/// Errors: [`CaptureError::NoDisplay`], [`CaptureError::Unsupported`].
pub fn list_targets() -> Result<Vec<Target>, CaptureError> {
    platform::list_targets()
}

/// Whether the desktop, not Parley, picks what is shared (Wayland's portal dialog): the targets
/// are then only "a screen" and "a window", without sizes or thumbnails, and opening one asks
/// the user.
pub fn desktop_picks() -> bool {
    platform::desktop_picks()
}

/// Opens a capturer on `target`.
///
/// Errors: as [`list_targets`]; [`CaptureError::TargetGone`] for a window that no longer exists.
pub fn open(target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    platform::open(target)
}

/// Finds the target a user means: a screen index (`0`), a window id (`0x1a00007` or decimal),
/// or else a case-insensitive part of a window's name. Where the desktop picks
/// ([`desktop_picks`]), `screen` or a number means "a screen" and anything else "a window";
/// the desktop's dialog then asks which.
///
/// Errors: [`CaptureError::NotFound`]; as [`list_targets`].
pub fn find_target(wanted: &str) -> Result<Target, CaptureError> {
    let targets = list_targets()?;
    if desktop_picks() {
        let wanted = wanted.trim();
        let screen = wanted.eq_ignore_ascii_case("screen") || wanted.parse::<u64>().is_ok();
        let kind = if screen { TargetKind::Screen } else { TargetKind::Window };
        return targets
            .into_iter()
            .find(|target| target.kind == kind)
            .ok_or_else(|| CaptureError::NotFound(wanted.into()));
    }
    choose(&targets, wanted)
}

fn choose(targets: &[Target], wanted: &str) -> Result<Target, CaptureError> {
    let wanted = wanted.trim();
    let number = match wanted.strip_prefix("0x").or_else(|| wanted.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => wanted.parse::<u64>().ok(),
    };
    if let Some(number) = number {
        // Small numbers are screen indices; window ids are never that small on X11.
        let screen = targets.iter().find(|target| target.kind == TargetKind::Screen && target.id == number);
        let window = targets.iter().find(|target| target.kind == TargetKind::Window && target.id == number);
        if let Some(found) = screen.or(window) {
            return Ok(found.clone());
        }
    }
    let lowered = wanted.to_lowercase();
    targets
        .iter()
        .find(|target| target.kind == TargetKind::Window && target.name.to_lowercase().contains(&lowered))
        .cloned()
        .ok_or_else(|| CaptureError::NotFound(wanted.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: TargetKind, id: u64, name: &str) -> Target {
        Target { kind, id, name: name.into(), width: 10, height: 10 }
    }

    #[test]
    fn a_target_is_found_by_index_id_or_name() {
        let targets = [
            target(TargetKind::Screen, 0, "screen 0"),
            target(TargetKind::Window, 0x200001, "Terminal"),
            target(TargetKind::Window, 0x400002, "Parley Pattern"),
        ];
        assert_eq!(choose(&targets, "0").expect("screen").kind, TargetKind::Screen);
        assert_eq!(choose(&targets, "0x400002").expect("hex id").name, "Parley Pattern");
        assert_eq!(choose(&targets, &0x200001.to_string()).expect("decimal id").name, "Terminal");
        assert_eq!(choose(&targets, "pattern").expect("name").id, 0x400002);
        assert!(matches!(choose(&targets, "browser"), Err(CaptureError::NotFound(_))));
    }
}
