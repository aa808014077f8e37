// The commands the shell registers and the webview may call. Included by build.rs (which turns
// each into an `allow-<name>` permission the capability file must grant) and by the crate (whose
// test checks it against `parley_core::client::ipc::commands()` and the capability file).
// Kept a plain list because build scripts cannot depend on parley-core cheaply.

/// Every command, in `parley_core::client::ipc::commands()` order.
pub const COMMANDS: &[&str] = &[
    "get_state",
    "next_state",
    "get_settings",
    "update_settings",
    "list_backends",
    "list_profiles",
    "add_profile",
    "begin_discourse_auth",
    "complete_discourse_auth",
    "remove_profile",
    "list_rooms",
    "get_backend_features",
    "list_devices",
    "start_mic_test",
    "stop_mic_test",
    "join_room",
    "leave_room",
    "set_muted",
    "toggle_mute",
    "set_deafened",
    "toggle_deafen",
    "push_to_talk",
    "set_volume",
    "set_local_mute",
    "allow_unencrypted",
    "watch_share",
    "unwatch_share",
    "fit_share",
    "dismiss_link",
    "moderate_participant",
    "set_hand_raised",
    "get_shortcut_support",
    "check_for_updates",
    "install_update",
];
