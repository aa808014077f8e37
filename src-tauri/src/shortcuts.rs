//! Global shortcuts from the settings (STYLE.md 18: registered in Rust; the webview has no
//! shortcut permission). Push-to-talk follows the key's real `Pressed`/`Released`; toggles act
//! on `Pressed`. Where key grabs cannot work (a Wayland session) the desktop's GlobalShortcuts
//! portal binds them instead (`portal.rs`); where that is missing too, the settings screen says
//! so and points to `parley ctl`, which any compositor can bind.

use std::sync::Mutex;

use parley_core::client::ipc::ShortcutSupport;
use parley_core::client::{Client, Shortcuts};
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Manager as _, Runtime};
use tauri_plugin_autostart::ManagerExt as _;
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
    /// The portal session that binds them on Wayland, and which `apply` started it: a report
    /// from an older binding (settings changed meanwhile) is ignored.
    #[cfg(target_os = "linux")]
    portal: Option<crate::portal::Binding>,
    #[cfg(target_os = "linux")]
    generation: u64,
}

impl ShortcutState {
    pub fn support(&self) -> ShortcutSupport {
        self.lock().support.clone().unwrap_or_else(|| ShortcutSupport {
            global_shortcuts: key_grabs_work(),
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
    let works = key_grabs_work();
    tracing::info!(registered = bindings.len(), failed = failed.len(), "global shortcuts");
    let state = app.state::<ShortcutState>();
    let mut registered = state.lock();
    registered.bindings = bindings;
    registered.support = Some(ShortcutSupport { global_shortcuts: works && failed.is_empty(), message: None, failed });
    #[cfg(target_os = "linux")]
    {
        // Dropping the previous binding closes its portal session.
        registered.portal = None;
        registered.generation += 1;
        let generation = registered.generation;
        if !works {
            registered.support = Some(ShortcutSupport {
                global_shortcuts: false,
                message: Some("Asking your desktop's shortcuts portal to bind the keys…".into()),
                failed: Vec::new(),
            });
            let wanted = wanted
                .into_iter()
                .filter_map(|(accelerator, action)| {
                    accelerator.as_deref().filter(|text| !text.is_empty()).map(|text| (action, text.to_string()))
                })
                .collect();
            let report = move |app: &AppHandle<R>, support: ShortcutSupport| {
                let state = app.state::<ShortcutState>();
                let mut registered = state.lock();
                if registered.generation != generation {
                    return;
                }
                if support.global_shortcuts {
                    // The portal delivers the keys now; the grabs (which see keys only while an
                    // X window of ours has focus) would deliver them twice and undo a toggle.
                    if let Err(error) = app.global_shortcut().unregister_all() {
                        tracing::warn!(%error, "could not release the key grabs the portal replaces");
                    }
                    registered.bindings.clear();
                }
                registered.support = Some(support);
            };
            registered.portal = Some(crate::portal::bind(app, wanted, report, perform));
        }
    }
}

/// Turns the login item on or off; failures are logged (the setting stays saved).
pub fn apply_launch_at_login<R: Runtime>(app: &AppHandle<R>, enabled: bool) {
    let launcher = app.autolaunch();
    let result = if enabled { launcher.enable() } else { launcher.disable() };
    if let Err(error) = result {
        tracing::warn!(%error, enabled, "could not change the login item");
    }
}

/// X11, Windows and macOS let an app grab keys globally; a Wayland session does not (X11 apps
/// under XWayland only see keys while one of their windows has focus).
#[cfg(target_os = "linux")]
fn key_grabs_work() -> bool {
    let wayland = std::env::var("XDG_SESSION_TYPE").is_ok_and(|kind| kind == "wayland")
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|display| !display.is_empty());
    !wayland
}

#[cfg(not(target_os = "linux"))]
fn key_grabs_work() -> bool {
    true
}
