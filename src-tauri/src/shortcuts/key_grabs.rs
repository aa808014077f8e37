//! Windows and macOS: the OS lets an app grab keys globally, so the key grabs are all there is.

use tauri::{AppHandle, Runtime};

use super::{Action, Registered};

pub(super) fn key_grabs_work() -> bool {
    true
}

/// Nothing binds keys besides the grabs.
#[derive(Default)]
pub(super) struct Fallback;

pub(super) fn bind_fallback<R: Runtime>(
    _app: &AppHandle<R>,
    _registered: &mut Registered,
    _works: bool,
    _wanted: Vec<(Action, String)>,
) {
}
