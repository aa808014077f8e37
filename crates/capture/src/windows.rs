//! Capture on windows: not implemented yet (planned: Windows.Graphics.Capture). Everything says
//! so clearly, so that the crate (and the app) build and run there without sharing.

use crate::{CaptureError, Capturer, Target};

fn unsupported() -> CaptureError {
    CaptureError::Unsupported(std::env::consts::OS.to_string())
}

pub(crate) fn desktop_picks() -> bool {
    false
}

pub(crate) fn list_targets() -> Result<Vec<Target>, CaptureError> {
    Err(unsupported())
}

pub(crate) fn open(_target: &Target) -> Result<Box<dyn Capturer>, CaptureError> {
    Err(unsupported())
}
