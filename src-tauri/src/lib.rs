//! Parley's desktop shell: a thin Tauri 2 layer over [`parley_core::client::Client`].
//!
//! Everything the app does is a `Client` method; this crate only wires it to the desktop:
//!
//! * [`commands`] — one `#[tauri::command]` per entry of `command_list::COMMANDS`, each a few
//!   lines that call the client and return its `{code, message}` error as is;
//! * [`bridge`] — forwards every state snapshot and notice to the window (and the tray), posts
//!   desktop notifications, logs call transitions;
//! * [`tray`] — the tray icon and its menu (Mute ✓, Deafen ✓, Disconnect, Show/Hide, Quit);
//! * [`shortcuts`] — global push-to-talk / toggle mute / toggle deafen from the settings (key
//!   grabs, or the desktop's portal on Wayland);
//! * [`login_item`] — launch at login;
//! * [`webview`] — per-OS tuning of the window's web engine (WebKitGTK's memory settings);
//! * [`links`] — `parley://` deep links, arguments forwarded by a second launch, and the
//!   `parley ctl` control socket;
//! * [`updates`] — the signed updater;
//! * [`frames`] — the `parley-frame` URI scheme that feeds the screen-share viewers;
//! * [`surface`] — screen-share pictures the shell paints itself over the viewer (Linux);
//! * [`popout`] — screen shares in windows of their own (`share-*`, which get only
//!   `capabilities/share-window.json`).
//!
//! Plugins: single-instance (+ deep-link), window-state, global-shortcut, updater,
//! notification, autostart. The main webview gets only `capabilities/main-window.json`.

mod bridge;
#[cfg(test)]
mod command_list;
mod commands;
mod frames;
mod links;
mod login_item;
mod popout;
mod shortcuts;
mod surface;
mod tray;
mod updates;
mod webview;

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
    webview::prepare_process();
    init_logging();
    match run_app() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("parley-app: error: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    // `PARLEY_LOG=debug` for more; the engine's own chatter stays off by default, and so do the
    // D-Bus library's spans (it opens one per message at info).
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,livekit=off,pulseaudio=off,zbus=warn"));
    // A line as each command's span opens: what the window asked for, in order (`commands`).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colours only for a terminal: a log file (a bug report) gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .init();
}

fn run_app() -> anyhow::Result<()> {
    let app = tauri::Builder::default()
        // First: a second launch must be caught before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            links::show_main_window(app);
            links::handle_forwarded_args(app, argv.iter().skip(1).map(String::as_str));
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
        .plugin(surface::plugin())
        .plugin(tauri_plugin_updater::Builder::new().build())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(tauri_plugin_autostart::MacosLauncher::LaunchAgent, None))
        .register_asynchronous_uri_scheme_protocol(frames::SCHEME, frames::handle)
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
            commands::allow_unencrypted,
            commands::list_share_targets,
            commands::list_share_sounds,
            commands::start_share,
            commands::stop_share,
            commands::watch_share,
            commands::pop_out_share,
            commands::unwatch_share,
            commands::fit_share,
            commands::place_share,
            commands::dismiss_link,
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
        .on_window_event(|window, event| match event {
            // Closing the main window keeps the call and the tray; Quit is in the tray menu.
            WindowEvent::CloseRequested { api, .. } if window.label() == MAIN_WINDOW => {
                api.prevent_close();
                if let Err(error) = window.hide() {
                    tracing::warn!(%error, "hiding the window failed");
                }
            }
            // A share's own window closed: its viewer goes back to the room view.
            WindowEvent::Destroyed => {
                surface::forget(window.label());
                popout::closed(window.state::<Client>().inner(), window.label());
            }
            _ => {}
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
    // The first line of a bug report's log, and how `cargo xtask bundle` sees which version an
    // update relaunched.
    tracing::info!("Parley {} starting", app.package_info().version);
    let mut library = LibrarySearch::default();
    // A bundled app carries the LiveKit FFI library among its resources.
    if let Ok(resources) = app.path().resource_dir() {
        library.extra_dirs.push(resources);
    }
    let client = Client::new(ClientConfig::system(library).context("finding the configuration directory")?);
    let settings = client.settings();
    app.manage(client.clone());
    app.manage(shortcuts::ShortcutState::default());
    webview::tune(app);
    surface::install(app);
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
    fn a_share_window_may_only_follow_the_state_fit_and_stop_watching() {
        let capability: serde_json::Value = serde_json::from_str(include_str!("../capabilities/share-window.json"))
            .expect("the capability file is JSON");
        assert_eq!(capability["windows"], serde_json::json!([format!("{}*", crate::popout::LABEL_PREFIX)]));
        let granted: Vec<&str> =
            capability["permissions"].as_array().expect("permissions").iter().filter_map(|p| p.as_str()).collect();
        assert_eq!(
            granted,
            ["allow-get-state", "allow-next-state", "allow-fit-share", "allow-place-share", "allow-unwatch-share"]
        );
        for permission in granted {
            let command = permission.trim_start_matches("allow-").replace('-', "_");
            assert!(COMMANDS.contains(&command.as_str()), "{permission} names one of the app's commands");
        }
        let config: serde_json::Value =
            serde_json::from_str(include_str!("../tauri.conf.json")).expect("tauri.conf.json is JSON");
        assert_eq!(config["app"]["security"]["capabilities"], serde_json::json!(["main-window", "share-window"]));
    }

    #[test]
    fn the_csp_allows_no_remote_content() {
        let config: serde_json::Value =
            serde_json::from_str(include_str!("../tauri.conf.json")).expect("tauri.conf.json is JSON");
        let csp = config["app"]["security"]["csp"].as_object().expect("a CSP object");
        for (directive, sources) in csp {
            let sources = sources.as_str().expect("CSP sources are strings");
            // Tauri's own IPC endpoint and our frame scheme are Windows's http origins; they never
            // leave the app.
            let sources = sources.replace("http://ipc.localhost", "").replace("http://parley-frame.localhost", "");
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
        // The endpoint's answer is not signed, only the artifact: without this an older signed
        // build could be offered under a newer version number (a downgrade).
        assert_eq!(config["plugins"]["updater"]["requireSignedVersion"], true, "the signed version must match");
        assert_ne!(config["plugins"]["updater"]["allowDowngrades"], true, "no downgrades");
    }
}
