//! The tray icon and its menu. Linux tray icons get no click events, so every action is a menu
//! item: Mute ✓, Deafen ✓, Stop sharing, Disconnect, Show/Hide, Quit. The icon shows idle,
//! connected, muted, deafened or talking; the tooltip names the room (where the platform shows
//! tooltips) and, like the window's title, says when we share our screen.

use std::sync::Mutex;

use parley_core::client::{CallPhase, Client, ClientState};
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager as _, Wry};

use crate::links;

pub const MENU_MUTE: &str = "mute";
pub const MENU_DEAFEN: &str = "deafen";
pub const MENU_DISCONNECT: &str = "disconnect";
pub const MENU_STOP_SHARING: &str = "stop-sharing";
pub const MENU_SHOW_HIDE: &str = "show-hide";
pub const MENU_QUIT: &str = "quit";

/// Our microphone level above which the icon shows "talking", dBFS.
const TALKING_DBFS: f32 = -45.0;

/// What the icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Idle,
    Connected,
    Muted,
    Deafened,
    Talking,
}

impl Look {
    pub fn of(state: &ClientState) -> Look {
        let connected = state.call.as_ref().is_some_and(|call| call.phase == CallPhase::Connected);
        let local = &state.local;
        match () {
            _ if !connected => Look::Idle,
            _ if local.deafened => Look::Deafened,
            _ if local.muted => Look::Muted,
            _ if local.transmitting && local.input_level_dbfs > TALKING_DBFS => Look::Talking,
            _ => Look::Connected,
        }
    }

    fn icon(self) -> &'static [u8] {
        match self {
            Look::Idle => include_bytes!("../../icons/tray-idle.png"),
            Look::Connected => include_bytes!("../../icons/tray-connected.png"),
            Look::Muted => include_bytes!("../../icons/tray-muted.png"),
            Look::Deafened => include_bytes!("../../icons/tray-deafened.png"),
            Look::Talking => include_bytes!("../../icons/tray-talking.png"),
        }
    }
}

/// Everything the tray shows; redrawn only when it changes (the state changes 10 times a
/// second in a call).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    look: Look,
    tooltip: String,
    muted: bool,
    deafened: bool,
    in_call: bool,
    sharing: bool,
}

/// The tray and its menu items, kept to update them.
pub struct Tray {
    icon: TrayIcon,
    mute: CheckMenuItem<Wry>,
    deafen: CheckMenuItem<Wry>,
    disconnect: MenuItem<Wry>,
    stop_sharing: MenuItem<Wry>,
    shown: Mutex<Option<Shown>>,
}

/// Creates the tray and manages it as app state.
///
/// Errors: the platform's tray or menu errors.
pub fn build(app: &AppHandle) -> tauri::Result<()> {
    let mute = CheckMenuItem::with_id(app, MENU_MUTE, "Mute", true, false, None::<&str>)?;
    let deafen = CheckMenuItem::with_id(app, MENU_DEAFEN, "Deafen", true, false, None::<&str>)?;
    let disconnect = MenuItem::with_id(app, MENU_DISCONNECT, "Disconnect", false, None::<&str>)?;
    let stop_sharing = MenuItem::with_id(app, MENU_STOP_SHARING, "Stop sharing", false, None::<&str>)?;
    let show_hide = MenuItem::with_id(app, MENU_SHOW_HIDE, "Show/Hide", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, MENU_QUIT, "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&mute, &deafen, &stop_sharing, &disconnect, &separator, &show_hide, &quit])?;
    let icon = TrayIconBuilder::with_id("parley")
        .icon(Image::from_bytes(Look::Idle.icon())?)
        .tooltip("Parley")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| on_menu(app, event.id.as_ref()))
        .build(app)?;
    app.manage(Tray { icon, mute, deafen, disconnect, stop_sharing, shown: Mutex::new(None) });
    Ok(())
}

/// Redraws the tray for `state` when what it shows changed.
pub fn show(app: &AppHandle, state: &ClientState) {
    let Some(tray) = app.try_state::<Tray>() else { return };
    let shown = Shown {
        look: Look::of(state),
        tooltip: tooltip(state),
        muted: state.local.muted,
        deafened: state.local.deafened,
        in_call: state.call.is_some(),
        sharing: state.call.as_ref().is_some_and(|call| call.sharing.is_some()),
    };
    let mut last = tray.shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.as_ref() == Some(&shown) {
        return;
    }
    let redrawn = Image::from_bytes(shown.look.icon())
        .and_then(|image| tray.icon.set_icon(Some(image)))
        .and_then(|()| tray.icon.set_tooltip(Some(&shown.tooltip)))
        .and_then(|()| tray.mute.set_checked(shown.muted))
        .and_then(|()| tray.deafen.set_checked(shown.deafened))
        .and_then(|()| tray.disconnect.set_enabled(shown.in_call))
        .and_then(|()| tray.stop_sharing.set_enabled(shown.sharing))
        .and_then(|()| match app.get_webview_window(crate::MAIN_WINDOW) {
            Some(window) if last.as_ref().is_none_or(|last| last.sharing != shown.sharing) => {
                window.set_title(if shown.sharing { "Parley — sharing your screen" } else { "Parley" })
            }
            _ => Ok(()),
        });
    match redrawn {
        Ok(()) => *last = Some(shown),
        Err(error) => tracing::warn!(%error, "updating the tray failed"),
    }
}

fn on_menu(app: &AppHandle, id: &str) {
    tracing::info!(item = id, "tray menu");
    let client = app.state::<Client>().inner().clone();
    match id {
        MENU_SHOW_HIDE => links::toggle_main_window(app),
        MENU_QUIT => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                // Leaving first lets the backend and the others see us go.
                client.shutdown().await;
                app.exit(0);
            });
        }
        MENU_MUTE | MENU_DEAFEN | MENU_DISCONNECT | MENU_STOP_SHARING => {
            let id = id.to_string();
            tauri::async_runtime::spawn(async move {
                let result = match id.as_str() {
                    MENU_MUTE => client.toggle_mute().await,
                    MENU_DEAFEN => client.toggle_deafen().await,
                    MENU_STOP_SHARING => client.stop_share().await,
                    _ => client.leave_room().await,
                };
                if let Err(error) = result {
                    tracing::warn!(item = %id, %error, "a tray action failed");
                }
            });
        }
        other => tracing::debug!(item = other, "unknown tray menu item"),
    }
}

/// The tray's tooltip: the room, whether the call is end-to-end encrypted, and whether we share
/// our screen.
fn tooltip(state: &ClientState) -> String {
    let Some(call) = &state.call else { return "Parley".to_string() };
    let encrypted = if call.encrypted { " (end-to-end encrypted)" } else { "" };
    let sharing = if call.sharing.is_some() { " — sharing your screen" } else { "" };
    format!("Parley — {}{encrypted}{sharing}", call.room_name)
}

#[cfg(test)]
mod tests {
    use parley_core::client::{CallState, ClientState};

    use super::*;

    fn connected() -> ClientState {
        let mut call = CallState::joining("home", "lobby");
        call.phase = CallPhase::Connected;
        ClientState { call: Some(call), ..ClientState::default() }
    }

    #[test]
    fn the_icon_follows_the_call_and_local_state() {
        assert_eq!(Look::of(&ClientState::default()), Look::Idle, "no call is idle");
        let mut state = connected();
        assert_eq!(Look::of(&state), Look::Connected, "a quiet call is connected");
        state.local.transmitting = true;
        state.local.input_level_dbfs = -20.0;
        assert_eq!(Look::of(&state), Look::Talking, "a loud open gate is talking");
        state.local.muted = true;
        assert_eq!(Look::of(&state), Look::Muted, "muted wins over talking");
        state.local.deafened = true;
        assert_eq!(Look::of(&state), Look::Deafened, "deafened wins over muted");
    }

    #[test]
    fn the_tooltip_says_when_the_call_is_encrypted() {
        assert_eq!(tooltip(&ClientState::default()), "Parley");
        let mut state = connected();
        assert_eq!(tooltip(&state), "Parley — lobby");
        if let Some(call) = state.call.as_mut() {
            call.encrypted = true;
        }
        assert_eq!(tooltip(&state), "Parley — lobby (end-to-end encrypted)");
        if let Some(call) = state.call.as_mut() {
            call.sharing = Some(parley_core::client::LocalShare {
                target: "screen 0 (1920x1080)".into(),
                quality: "720p30".into(),
                priority: "detail".into(),
                width: 1280,
                height: 720,
                sound: None,
            });
        }
        assert_eq!(tooltip(&state), "Parley — lobby (end-to-end encrypted) — sharing your screen");
    }
}
