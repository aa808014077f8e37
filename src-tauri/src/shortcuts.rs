//! Global shortcuts from the settings (STYLE.md 18: registered in Rust; the webview has no
//! shortcut permission). Push-to-talk follows the key's real `Pressed`/`Released`; toggles act
//! on `Pressed`.
//!
//! Key grabs (the global-shortcut plugin) work on X11, Windows and macOS. What else a platform
//! needs lives in its child module behind the same three items (`key_grabs_work`, `Fallback`,
//! `bind_fallback`): `linux` binds the keys through the desktop's GlobalShortcuts portal
//! (`portal`) where key grabs cannot work (a Wayland session), and where that is missing too the
//! settings screen says so and points to `parley ctl`, which any compositor can bind;
//! `key_grabs` (Windows, macOS) needs nothing more.

#[cfg(not(target_os = "linux"))]
mod key_grabs;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod portal;

#[cfg(not(target_os = "linux"))]
use key_grabs as platform;
#[cfg(target_os = "linux")]
use linux as platform;

use std::sync::Mutex;

use parley_core::client::ipc::ShortcutSupport;
use parley_core::client::{Client, Shortcuts};
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Manager as _, Runtime};
use tauri_plugin_global_shortcut::{GlobalShortcutExt as _, Shortcut, ShortcutEvent, ShortcutState as KeyState};

/// What a registered shortcut does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PushToTalk,
    ToggleMute,
    ToggleDeafen,
}

/// The registered shortcuts and what the settings screen should say about them.
#[derive(Default)]
pub struct ShortcutState {
    inner: Mutex<Registered>,
}

#[derive(Default)]
struct Registered {
    bindings: Vec<(Shortcut, Action)>,
    support: Option<ShortcutSupport>,
    /// What binds the keys where key grabs cannot (the portal session on Wayland).
    #[cfg_attr(not(target_os = "linux"), expect(dead_code, reason = "Windows and macOS need no fallback"))]
    fallback: platform::Fallback,
}

impl ShortcutState {
    pub fn support(&self) -> ShortcutSupport {
        self.lock().support.clone().unwrap_or_else(|| ShortcutSupport {
            global_shortcuts: platform::key_grabs_work(),
            message: None,
            failed: Vec::new(),
        })
    }

    fn action(&self, shortcut: &Shortcut) -> Option<Action> {
        self.lock().bindings.iter().find(|(bound, _)| bound == shortcut).map(|(_, action)| *action)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registered> {
        // Every write replaces whole values; a panic elsewhere cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The global-shortcut plugin, dispatching every key event to [`on_shortcut`].
pub fn plugin<R: Runtime>() -> TauriPlugin<R> {
    tauri_plugin_global_shortcut::Builder::new().with_handler(on_shortcut).build()
}

fn on_shortcut<R: Runtime>(app: &AppHandle<R>, shortcut: &Shortcut, event: ShortcutEvent) {
    let Some(action) = app.state::<ShortcutState>().action(shortcut) else { return };
    perform(app, action, event.state() == KeyState::Pressed);
}

/// Carries out `action` for a key going down (`pressed`) or up: push-to-talk follows both,
/// the toggles act on the way down.
fn perform<R: Runtime>(app: &AppHandle<R>, action: Action, pressed: bool) {
    if action != Action::PushToTalk && !pressed {
        return;
    }
    let client = app.state::<Client>().inner().clone();
    tauri::async_runtime::spawn(async move {
        let result = match action {
            Action::PushToTalk => client.push_to_talk(pressed).await,
            Action::ToggleMute => client.toggle_mute().await,
            Action::ToggleDeafen => client.toggle_deafen().await,
        };
        if let Err(error) = result {
            tracing::warn!(?action, %error, "a shortcut's command failed");
        }
    });
}

/// Replaces the registered shortcuts with `shortcuts`; what fails is reported through
/// [`ShortcutState::support`], never fatal.
pub fn apply<R: Runtime>(app: &AppHandle<R>, shortcuts: &Shortcuts) {
    let manager = app.global_shortcut();
    if let Err(error) = manager.unregister_all() {
        tracing::warn!(%error, "could not release the previous shortcuts");
    }
    let wanted = [
        (&shortcuts.push_to_talk, Action::PushToTalk),
        (&shortcuts.toggle_mute, Action::ToggleMute),
        (&shortcuts.toggle_deafen, Action::ToggleDeafen),
    ];
    let mut bindings = Vec::new();
    let mut failed = Vec::new();
    for (accelerator, action) in wanted {
        let Some(accelerator) = accelerator.as_deref().filter(|text| !text.is_empty()) else { continue };
        let registered = accelerator
            .parse::<Shortcut>()
            .map_err(|error| error.to_string())
            .and_then(|shortcut| manager.register(shortcut).map(|()| shortcut).map_err(|error| error.to_string()));
        match registered {
            Ok(shortcut) => bindings.push((shortcut, action)),
            Err(error) => failed.push(format!("{accelerator}: {error}")),
        }
    }
    let works = platform::key_grabs_work();
    tracing::info!(registered = bindings.len(), failed = failed.len(), "global shortcuts");
    let state = app.state::<ShortcutState>();
    let mut registered = state.lock();
    registered.bindings = bindings;
    registered.support = Some(ShortcutSupport { global_shortcuts: works && failed.is_empty(), message: None, failed });
    let wanted = wanted
        .into_iter()
        .filter_map(|(accelerator, action)| {
            accelerator.as_deref().filter(|text| !text.is_empty()).map(|text| (action, text.to_string()))
        })
        .collect();
    platform::bind_fallback(app, &mut registered, works, wanted);
}
