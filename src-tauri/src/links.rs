//! Ways into a running app from outside the window: `parley://` deep links (invite links,
//! browser sign-in returns), arguments a second launch forwards through single-instance, and the
//! `parley ctl` control socket (the same protocol `parley join` answers).
//!
//! `parley://join/<profile>/<room>` shows that room and waits for a click on Join; any other `parley://` URL goes to the UI
//! (`deep-link-opened`). Arguments: URLs as above, or `ctl <command…>` (`ctl ptt-start`).

use parley_core::Control;
use parley_core::client::Client;
use parley_core::client::ipc::DEEP_LINK_OPENED;
use parley_core::control_socket::{ControlSocket, default_socket};
use tauri::{AppHandle, Emitter as _, Manager as _, Runtime};
use tauri_plugin_deep_link::DeepLinkExt as _;

use crate::MAIN_WINDOW;

/// Shows, unminimises and focuses the main window.
pub fn show_main_window<R: Runtime>(app: &AppHandle<R>) {
    let Some(window) = app.get_webview_window(MAIN_WINDOW) else { return };
    let shown = window.show().and_then(|()| window.unminimize()).and_then(|()| window.set_focus());
    if let Err(error) = shown {
        tracing::warn!(%error, "showing the window failed");
    }
}

/// Hides a visible window, shows a hidden one (the tray's Show/Hide).
pub fn toggle_main_window<R: Runtime>(app: &AppHandle<R>) {
    let Some(window) = app.get_webview_window(MAIN_WINDOW) else { return };
    match window.is_visible() {
        Ok(true) => {
            if let Err(error) = window.hide() {
                tracing::warn!(%error, "hiding the window failed");
            }
        }
        _ => show_main_window(app),
    }
}

/// Acts on this launch's command-line arguments: `ctl <command…>`, or `parley://` links.
pub fn handle_args<'a, R: Runtime>(app: &AppHandle<R>, args: impl Iterator<Item = &'a str>) {
    let args: Vec<&str> = args.collect();
    if !handle_ctl(app, &args) {
        for arg in args.into_iter().filter(|arg| arg.starts_with("parley://")) {
            open_link(app, arg);
        }
    }
}

/// Acts on a second launch's arguments. Only `ctl <command…>`: its `parley://` links reach us
/// through the deep-link plugin, to which single-instance hands them; taking them here too
/// would open each link twice.
pub fn handle_forwarded_args<'a, R: Runtime>(app: &AppHandle<R>, args: impl Iterator<Item = &'a str>) {
    let args: Vec<&str> = args.collect();
    handle_ctl(app, &args);
}

/// `ctl <command…>`: applies the command; whether the arguments were one.
fn handle_ctl<R: Runtime>(app: &AppHandle<R>, args: &[&str]) -> bool {
    let Some(("ctl", command)) = args.split_first().map(|(first, rest)| (*first, rest)) else { return false };
    match command.join(" ").parse::<Control>() {
        Ok(control) => apply_control(app, control),
        Err(error) => tracing::warn!(%error, "a forwarded ctl command was not understood"),
    }
    true
}

fn apply_control<R: Runtime>(app: &AppHandle<R>, control: Control) {
    let client = app.state::<Client>().inner().clone();
    tauri::async_runtime::spawn(async move {
        if let Err(error) = client.apply_control(&control).await {
            tracing::warn!(%control, %error, "a forwarded command failed");
        }
    });
}

/// Follows deep links the OS hands to this instance.
pub fn listen_for_deep_links<R: Runtime>(app: &AppHandle<R>) {
    let handle = app.clone();
    app.deep_link().on_open_url(move |event| {
        for url in event.urls() {
            open_link(&handle, url.as_str());
        }
    });
}

/// `parley://join/<profile>/<room>` shows that room and waits for the user's click on Join
/// (any web page can open a link: it must not open the microphone); anything else is the UI's
/// to handle.
pub fn open_link<R: Runtime>(app: &AppHandle<R>, url: &str) {
    show_main_window(app);
    match join_target(url) {
        Some((profile, room)) if links_join_at_once() => {
            tracing::info!(profile, room, "joining from a link (PARLEY_LINKS_JOIN=1)");
            let client = app.state::<Client>().inner().clone();
            tauri::async_runtime::spawn(async move {
                if let Err(error) = client.join_room(&profile, &room, false).await {
                    tracing::warn!(%error, "joining from a link failed");
                }
            });
        }
        Some((profile, room)) => {
            tracing::info!(profile, room, "a link asks to join a room; waiting for the user");
            app.state::<Client>().open_link(&profile, &room);
        }
        None => {
            if let Err(error) = app.emit_to(MAIN_WINDOW, DEEP_LINK_OPENED, url) {
                tracing::warn!(%error, "the window did not take a deep link");
            }
        }
    }
}

/// `PARLEY_LINKS_JOIN=1`: links join without asking, for benchmarks and scripts that start the
/// app themselves. An environment variable only the user's own session sets — unlike a link,
/// which any web page can open.
fn links_join_at_once() -> bool {
    std::env::var_os("PARLEY_LINKS_JOIN").is_some_and(|value| value == "1")
}

/// The profile and room of `parley://join/<profile>/<room>` (room percent-decoded).
fn join_target(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("parley://join/")?;
    let rest = rest.split(['?', '#']).next()?;
    let (profile, room) = rest.split_once('/')?;
    let room = percent_decode(room.trim_end_matches('/'))?;
    (!profile.is_empty() && !room.is_empty()).then(|| (profile.to_string(), room))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Listens on the `parley ctl` socket and applies its commands to the client. A `parley join`
/// already listening keeps its socket (logged); the app then takes commands through
/// `parley-app ctl …` instead.
pub fn start_control_socket(_app: &AppHandle, client: &Client) {
    let client = client.clone();
    tauri::async_runtime::spawn(async move {
        let (requests, mut received) = tokio::sync::mpsc::channel(32);
        let path = default_socket();
        let socket = match ControlSocket::listen(&path, requests).await {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(%error, "no control socket; `parley ctl` will not reach the app");
                return;
            }
        };
        tracing::info!(path = %socket.path().display(), "control socket");
        while let Some(request) = received.recv().await {
            let result = client.apply_control(&request.control).await.map_err(|error| error.message);
            if request.reply.send(result).is_err() {
                tracing::debug!("a ctl client left before the answer");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::join_target;

    #[test]
    fn join_links_name_a_profile_and_a_room() {
        assert_eq!(join_target("parley://join/local/demo"), Some(("local".into(), "demo".into())), "a plain join link");
        assert_eq!(
            join_target("parley://join/home/Team%20Room/?from=invite"),
            Some(("home".into(), "Team Room".into())),
            "the room is percent-decoded; the query is ignored"
        );
        assert_eq!(join_target("parley://auth?payload=x"), None, "other links are the UI's");
        assert_eq!(join_target("parley://join/home/"), None, "a room is required");
        assert_eq!(join_target("parley://join/home/%zz"), None, "a broken escape is refused");
    }
}
