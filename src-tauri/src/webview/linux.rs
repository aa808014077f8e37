//! WebKitGTK: accelerated compositing off and the document-viewer cache model, each measured by
//! `cargo xtask bench app`.

use tauri::Manager as _;

use crate::MAIN_WINDOW;

/// WebKitGTK's switch for accelerated compositing; `0` keeps compositing on.
const COMPOSITING_SWITCH: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Runs the app with WebKitGTK's accelerated compositing off, unless the user set the switch.
///
/// `cargo xtask bench app` measured what it costs: with compositing on, each WebKit window keeps
/// ~70 MB of extra memory (PSS: 297.8 → 225.4 MB for Parley idle, 263.8 → 196.3 MB for an empty
/// Tauri window) and Parley's flat UI draws nothing that needs it. WebKitGTK reads the switch
/// only from the environment, Rust makes changing our own environment `unsafe` (and `unsafe`
/// stays in `crates/livekit-ffi`), so the app re-executes itself once with it set: `exec` keeps
/// the process id and the arguments, and costs one more start of the dynamic loader. If the
/// re-execution fails the app simply runs as it is.
pub(crate) fn prepare_process() {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os(COMPOSITING_SWITCH).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).env(COMPOSITING_SWITCH, "1").exec();
    eprintln!("parley-app: running with WebKit compositing on: cannot re-execute: {error}");
}

/// Asks for WebKit's cache model (`document-viewer`, `web-browser`, `document-browser`); the
/// default is `document-viewer`. For `cargo xtask bench app`, which measures what it buys.
const CACHE_MODEL_SWITCH: &str = "PARLEY_WEBKIT_CACHE_MODEL";

/// Sets WebKit's cache model for the window to `DocumentViewer`: no memory cache of decoded
/// resources and no back/forward page cache. WebKitGTK's default, `WebBrowser`, sizes those
/// caches for browsing many pages; Parley shows one page built into the app, and a cache only
/// holds on to memory there (`cargo xtask bench app` reports the difference).
pub(crate) fn tune(app: &tauri::AppHandle) {
    use webkit2gtk::{CacheModel, WebContextExt as _, WebViewExt as _};
    let model = match std::env::var(CACHE_MODEL_SWITCH).as_deref() {
        Ok("web-browser") => CacheModel::WebBrowser,
        Ok("document-browser") => CacheModel::DocumentBrowser,
        _ => CacheModel::DocumentViewer,
    };
    let Some(window) = app.get_webview_window(MAIN_WINDOW) else { return };
    let set = window.with_webview(move |webview| {
        if let Some(context) = webview.inner().context() {
            context.set_cache_model(model);
        }
    });
    if let Err(error) = set {
        tracing::warn!(%error, "WebKit's cache model stays at its default");
    }
}
