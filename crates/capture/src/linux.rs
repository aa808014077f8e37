//! Capture on Linux: X11 ([`x11`]), or on Wayland the ScreenCast portal and PipeWire
//! ([`portal`]), where the desktop's dialog picks the screen or window.

#[cfg(feature = "wayland")]
mod portal;
mod x11;

use crate::{CaptureError, Capturer, Target};

/// Without the `wayland` feature (tools that only draw the test pattern) X11 is the only way.
#[cfg(not(feature = "wayland"))]
mod portal {
    use crate::{CaptureError, Capturer, Target};

    pub(super) fn active() -> bool {
        false
    }

    pub(super) fn list_targets() -> Vec<Target> {
        Vec::new()
    }

    pub(super) fn open(_target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
        Err(CaptureError::Unsupported("this build has no Wayland capture".into()))
    }
}

pub(crate) fn desktop_picks() -> bool {
    portal::active()
}

pub(crate) fn list_targets() -> Result<Vec<Target>, CaptureError> {
    if portal::active() { Ok(portal::list_targets()) } else { x11::list_targets() }
}

pub(crate) fn open(target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    if portal::active() { portal::open(target) } else { x11::open(target) }
}
