//! Parley's desktop shell: a thin Tauri 2 layer over [`parley_core::client::Client`].
//!
//! Everything the app does is a `Client` method; this crate only wires it to the desktop:
//!
//! * [`commands`] — one `#[tauri::command]` per entry of `command_list::COMMANDS`, each a few
//!   lines that call the client and return its `{code, message}` error as is;
//! * [`bridge`] — forwards every state snapshot and notice to the window (and the tray), posts
//!   desktop notifications, logs call transitions;
//! * [`tray`] — the tray icon and its menu (Mute ✓, Deafen ✓, Disconnect, Show/Hide, Quit);
//! * [`shortcuts`] — global push-to-talk / toggle mute / toggle deafen from the settings;
//! * [`links`] — `parley://` deep links, arguments forwarded by a second launch, and the
//!   `parley ctl` control socket;
//! * [`updates`] — the signed updater.
//!
//! Plugins: single-instance (+ deep-link), window-state, global-shortcut, updater,
//! notification, autostart. The webview gets only `capabilities/main-window.json`.

mod bridge;
#[cfg(test)]
mod command_list;
mod commands;
mod links;
#[cfg(target_os = "linux")]
mod portal;
mod shortcuts;
mod tray;
mod updates;

use std::process::ExitCode;

use anyhow::Context as _;
use parley_core::LibrarySearch;
use parley_core::client::{Client, ClientConfig};
use tauri::webview::PageLoadEvent;
use tauri::{Manager as _, RunEvent, WindowEvent};

/// The one window's label (capabilities and events name it).
pub const MAIN_WINDOW: &str = "main";

/// Builds and runs the app until Quit. Returns the process exit code.
pub fn run() -> ExitCode {
    #[cfg(target_os = "linux")]
    software_compositing();
    init_logging();
    match run_app() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("parley-app: error: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// WebKitGTK's switch for accelerated compositing; `0` keeps compositing on.
#[cfg(target_os = "linux")]
pub const COMPOSITING_SWITCH: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Runs the app with WebKitGTK's accelerated compositing off, unless the user set the switch.
///
/// `cargo xtask bench app` measured what it costs: with compositing on, each WebKit window keeps
/// ~70 MB of extra memory (PSS: 297.8 → 225.4 MB for Parley idle, 263.8 → 196.3 MB for an empty
/// Tauri window) and Parley's flat UI draws nothing that needs it. WebKitGTK reads the switch
/// only from the environment, Rust makes changing our own environment `unsafe` (and `unsafe`
/// stays in `crates/livekit-ffi`), so the app re-executes itself once with it set: `exec` keeps
/// the process id and the arguments, and costs one more start of the dynamic loader. If the
/// re-execution fails the app simply runs as it is.
#[cfg(target_os = "linux")]
fn software_compositing() {
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
#[cfg(target_os = "linux")]
pub const CACHE_MODEL_SWITCH: &str = "PARLEY_WEBKIT_CACHE_MODEL";

/// Sets WebKit's cache model for the window to `DocumentViewer`: no memory cache of decoded
/// resources and no back/forward page cache. WebKitGTK's default, `WebBrowser`, sizes those
/// caches for browsing many pages; Parley shows one page built into the app, and a cache only
/// holds on to memory there (`cargo xtask bench app` reports the difference).
#[cfg(target_os = "linux")]
fn set_cache_model(app: &tauri::AppHandle) {
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

fn init_logging() {
    // `PARLEY_LOG=debug` for more; the engine's own chatter stays off by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,livekit=off,pulseaudio=off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn run_app() -> anyhow::Result<()> {
    let app = tauri::Builder::default()
        // First: a second launch must be caught before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            links::show_main_window(app);
            links::handle_args(app, argv.iter().skip(1).map(String::as_str));
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(
            tauri_plugin_window_state::Builder::default()
                // Start-minimised decides visibility, not the last session.
                .with_state_flags(
                    tauri_plugin_window_state::StateFlags::all() - tauri_plugin_window_state::StateFlags::VISIBLE,
                )
                .build(),
        )
        .plugin(shortcuts::plugin())
        .plugin(tauri_plugin_updater::Builder::new().build())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(tauri_plugin_autostart::MacosLauncher::LaunchAgent, None))
        .invoke_handler(tauri::generate_handler![
            commands::get_state,
            commands::next_state,
            commands::get_settings,
            commands::update_settings,
            commands::list_backends,
            commands::list_profiles,
            commands::add_profile,
            commands::begin_discourse_auth,
            commands::complete_discourse_auth,
            commands::remove_profile,
            commands::list_rooms,
            commands::get_backend_features,
            commands::list_devices,
            commands::start_mic_test,
            commands::stop_mic_test,
            commands::join_room,
            commands::leave_room,
            commands::set_muted,
            commands::toggle_mute,
            commands::set_deafened,
            commands::toggle_deafen,
            commands::push_to_talk,
            commands::set_volume,
            commands::set_local_mute,
            commands::moderate_participant,
            commands::set_hand_raised,
            commands::get_shortcut_support,
            updates::check_for_updates,
            updates::install_update,
        ])
        .setup(|app| {
            setup(app.handle())?;
            Ok(())
        })
        .on_page_load(|_webview, payload| {
            // `cargo xtask bench app` times cold start to this line (and the window mapped).
            if matches!(payload.event(), PageLoadEvent::Finished) {
                tracing::info!("page loaded");
            }
        })
        .on_window_event(|window, event| {
            // Closing the window keeps the call and the tray; Quit is in the tray menu.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                if let Err(error) = window.hide() {
                    tracing::warn!(%error, "hiding the window failed");
                }
            }
        })
        .build(tauri::generate_context!())
        .context("building the app")?;
    app.run(|_app, event| {
        if let RunEvent::Exit = event {
            tracing::info!("parley exits");
        }
    });
    Ok(())
}

fn setup(app: &tauri::AppHandle) -> anyhow::Result<()> {
    let mut library = LibrarySearch::default();
    // A bundled app carries the LiveKit FFI library among its resources.
    if let Ok(resources) = app.path().resource_dir() {
        library.extra_dirs.push(resources);
    }
    let client = Client::new(ClientConfig::system(library).context("finding the configuration directory")?);
    let settings = client.settings();
    app.manage(client.clone());
    app.manage(shortcuts::ShortcutState::default());
    #[cfg(target_os = "linux")]
    set_cache_model(app);
    tray::build(app).context("creating the tray icon")?;
    shortcuts::apply(app, &settings.shortcuts);
    bridge::start(app, &client);
    links::start_control_socket(app, &client);
    links::listen_for_deep_links(app);
    links::handle_args(app, std::env::args().skip(1).collect::<Vec<_>>().iter().map(String::as_str));
    if !settings.start_minimized {
        links::show_main_window(app);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::command_list::COMMANDS;

    #[test]
    fn the_registered_commands_are_the_core_contract() {
        let core = parley_core::client::ipc::command_names();
        assert_eq!(COMMANDS, core.as_slice(), "src/command_list.rs must list exactly the core's IPC commands");
    }

    #[test]
    fn the_capability_file_grants_exactly_the_commands_and_event_listening() {
        let text = include_str!("../capabilities/main-window.json");
        let capability: serde_json::Value = serde_json::from_str(text).expect("the capability file is JSON");
        let granted: Vec<&str> = capability["permissions"]
            .as_array()
            .expect("a permissions list")
            .iter()
            .map(|permission| permission.as_str().expect("plain permission names"))
            .collect();
        let mut expected = vec!["core:event:allow-listen", "core:event:allow-unlisten"];
        let commands: Vec<String> = COMMANDS.iter().map(|name| format!("allow-{}", name.replace('_', "-"))).collect();
        expected.extend(commands.iter().map(String::as_str));
        assert_eq!(granted, expected, "the webview may call only the app's commands (no fs, http, shell, shortcuts)");
        assert_eq!(capability["windows"], serde_json::json!(["main"]), "one window, named explicitly");
    }

    #[test]
    fn the_csp_allows_no_remote_content() {
        let config: serde_json::Value =
            serde_json::from_str(include_str!("../tauri.conf.json")).expect("tauri.conf.json is JSON");
        let csp = config["app"]["security"]["csp"].as_object().expect("a CSP object");
        for (directive, sources) in csp {
            let sources = sources.as_str().expect("CSP sources are strings");
            // Tauri's own IPC endpoint on Windows is the one http origin, and it never leaves the app.
            let sources = sources.replace("http://ipc.localhost", "");
            assert!(
                !sources.contains("http:") && !sources.contains("https:") && !sources.contains('*'),
                "{directive} must not allow remote or wildcard sources: {sources}"
            );
            assert!(!sources.contains("unsafe-eval") && !sources.contains("unsafe-inline"), "{directive}: no unsafe-*");
        }
        let endpoints = config["plugins"]["updater"]["endpoints"].as_array().expect("updater endpoints");
        assert!(
            endpoints.iter().all(|endpoint| endpoint.as_str().is_some_and(|url| url.starts_with("https://"))),
            "updates come over https only"
        );
        assert!(config["plugins"]["updater"]["pubkey"].as_str().is_some_and(|key| !key.is_empty()), "a public key");
    }
}
