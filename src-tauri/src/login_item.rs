//! Launch at login (the autostart plugin: a LaunchAgent on macOS, the registry's Run key on
//! Windows, an XDG autostart entry on Linux).

use tauri::{AppHandle, Runtime};
use tauri_plugin_autostart::ManagerExt as _;

/// Turns the login item on or off; failures are logged (the setting stays saved).
pub fn apply<R: Runtime>(app: &AppHandle<R>, enabled: bool) {
    let launcher = app.autolaunch();
    let result = if enabled { launcher.enable() } else { launcher.disable() };
    if let Err(error) = result {
        tracing::warn!(%error, enabled, "could not change the login item");
    }
}
