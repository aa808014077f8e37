//! Capture on Linux: X11 today ([`x11`]); the Wayland ScreenCast portal is still to come, so
//! a Wayland session without `DISPLAY` (XWayland) is told so.

mod x11;

use crate::{CaptureError, Capturer, Target};

pub(crate) fn list_targets() -> Result<Vec<Target>, CaptureError> {
    x11::list_targets()
}

pub(crate) fn open(target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    x11::open(target)
}
