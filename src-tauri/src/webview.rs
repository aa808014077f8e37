//! Per-OS tuning of the window's web engine. Linux's WebKitGTK keeps memory the app has no use
//! for (see `linux`); WebView2 (Windows) and WKWebView (macOS) are left as they come.

#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
pub(crate) use linux::{prepare_process, tune};

/// Before anything else runs: what the engine can only be told through the process.
#[cfg(not(target_os = "linux"))]
pub(crate) fn prepare_process() {}

/// Once the window exists: settings of the window's engine.
#[cfg(not(target_os = "linux"))]
pub(crate) fn tune(_app: &tauri::AppHandle) {}
