//! Linux: key grabs work on X11 but not in a Wayland session (X11 apps under XWayland only see
//! keys while one of their windows has focus), so there the keys are bound through the
//! desktop's GlobalShortcuts portal ([`super::portal`]).

use parley_core::client::ipc::ShortcutSupport;
use tauri::{AppHandle, Manager as _, Runtime};
use tauri_plugin_global_shortcut::GlobalShortcutExt as _;

use super::{Action, Registered, ShortcutState, perform, portal};

/// Whether the session lets an app grab keys globally: not under Wayland.
pub(super) fn key_grabs_work() -> bool {
    let wayland = std::env::var("XDG_SESSION_TYPE").is_ok_and(|kind| kind == "wayland")
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|display| !display.is_empty());
    !wayland
}

/// The portal session that binds the keys on Wayland, and which `apply` started it: a report
/// from an older binding (the settings changed meanwhile) is ignored.
#[derive(Default)]
pub(super) struct Fallback {
    portal: Option<portal::Binding>,
    generation: u64,
}

/// Ends the previous portal session and, where key grabs do not `work`, asks the portal to bind
/// `wanted` (action, accelerator) in a new one; its answer replaces what the settings screen
/// shows.
pub(super) fn bind_fallback<R: Runtime>(
    app: &AppHandle<R>,
    registered: &mut Registered,
    works: bool,
    wanted: Vec<(Action, String)>,
) {
    // Dropping the previous binding closes its portal session.
    registered.fallback.portal = None;
    registered.fallback.generation += 1;
    if works {
        return;
    }
    let generation = registered.fallback.generation;
    registered.support = Some(ShortcutSupport {
        global_shortcuts: false,
        message: Some("Asking your desktop's shortcuts portal to bind the keys…".into()),
        failed: Vec::new(),
    });
    let report = move |app: &AppHandle<R>, support: ShortcutSupport| {
        let state = app.state::<ShortcutState>();
        let mut registered = state.lock();
        if registered.fallback.generation != generation {
            return;
        }
        if support.global_shortcuts {
            // The portal delivers the keys now; the grabs (which see keys only while an X window
            // of ours has focus) would deliver them twice and undo a toggle.
            if let Err(error) = app.global_shortcut().unregister_all() {
                tracing::warn!(%error, "could not release the key grabs the portal replaces");
            }
            registered.bindings.clear();
        }
        registered.support = Some(support);
    };
    registered.fallback.portal = Some(portal::bind(app, wanted, report, perform));
}
