//! Screen-share pictures the shell paints itself, where it can: over the viewer's place in the
//! page rather than through the web engine. Linux only (see `linux`): WebKitGTK showing each
//! picture cost about 20 % of a core more than painting it (`cargo xtask bench app`). Elsewhere
//! the viewer loads JPEGs from the `parley-frame` scheme (`frames`), and these are no-ops.

#[cfg(not(target_os = "linux"))]
use parley_core::client::{ClientError, ShareRect};

#[cfg(target_os = "linux")]
mod linux;

/// The global each page reads to know whether the shell paints watched shares itself (set
/// before the page's own scripts run; the web engine's user agent says nothing reliable about
/// the OS: WebKitGTK's names a Mac).
const PAINTS_GLOBAL: &str = "__PARLEY_PAINTS_SHARES__";

/// Tells every window's page whether pictures are painted by the shell.
pub(crate) fn plugin<R: tauri::Runtime>() -> tauri::plugin::TauriPlugin<R> {
    tauri::plugin::Builder::new("parley-surface")
        .js_init_script(format!("window.{PAINTS_GLOBAL} = {};", cfg!(target_os = "linux")))
        .build()
}

#[cfg(target_os = "linux")]
pub(crate) use linux::{forget, install, place};

/// Paints nothing: the viewer shows the scheme's pictures.
#[cfg(not(target_os = "linux"))]
pub(crate) fn install(_app: &tauri::AppHandle) {}

/// Nothing to place: the viewer shows the scheme's pictures.
#[cfg(not(target_os = "linux"))]
pub(crate) fn place<R: tauri::Runtime>(
    _window: &tauri::WebviewWindow<R>,
    _identity: &str,
    _rect: Option<ShareRect>,
) -> Result<(), ClientError> {
    Ok(())
}

/// Nothing was placed in any window.
#[cfg(not(target_os = "linux"))]
pub(crate) fn forget(_label: &str) {}
