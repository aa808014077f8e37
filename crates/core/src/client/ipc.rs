//! The contract with the web front end: command names with their argument and result types,
//! event names with their payloads, and the TypeScript generated from them into
//! `ui/src/lib/generated/` (STYLE.md 14). The desktop shell registers exactly these commands;
//! the UI imports only the generated files.
//!
//! Argument names are camelCase, as Tauri maps a command's snake_case parameters. Every command
//! fails with a [`ClientError`] (`{code, message}`).

use serde::Serialize;
use ts_rs::TS;

use super::directory::Backend;
use super::directory::{AudioDevice, BackendFeatures, BackendForm, ProfileInput, ProfileSummary, RoomEntry};
use super::error::{ClientError, ErrorCode};
use super::settings::{AppSettings, Shortcuts, TransmitChoice};
use super::sharing::{LocalShare, ShareRect, ShareSound, ShareTarget};
use super::state::{
    Bandwidth, CallPhase, CallState, ClientState, ConnectionQuality, Encryption, Levels, LinkedRoom, LocalState,
    ModerationAction, ModerationOption, ParticipantState,
};
use super::{DiscourseAuthStarted, Notice};

/// The event carrying each [`Notice`].
pub const NOTICE_POSTED: &str = "notice-posted";
/// The event carrying a `parley://` URL the shell does not handle itself (anything but
/// `parley://join/<profile>/<room>`), e.g. the return of a browser sign-in flow.
pub const DEEP_LINK_OPENED: &str = "deep-link-opened";

/// A numbered [`ClientState`] snapshot, the answer of `next_state`.
///
/// The window pulls snapshots instead of being sent each as an event: Tauri delivers an event
/// by evaluating a script that holds its payload, and WebKitGTK keeps memory for the source of
/// every script it evaluates, so ten snapshots a second grew the web process for as long as a
/// call lasted. A command's answer is the body of a fetch, which WebKit frees.
///
/// In a call the state changes ten times a second, nearly always in its audio levels alone.
/// Then `state` is left out and only `levels` comes: a few numbers instead of every
/// participant, and the window redraws the meters, not the tiles (each update's work is what
/// the web process's allocator holds on to).
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct StateUpdate {
    /// Changes with every snapshot (wrapping, never 0); pass it back to wait for the next one.
    pub revision: u32,
    /// The whole snapshot, or `null` when the one at the revision the window passed differs
    /// from it in levels only.
    pub state: Option<ClientState>,
    /// This snapshot's levels, in the order of the participants of the last whole `state`.
    pub levels: Levels,
}

/// What the updater found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    /// A newer signed release exists.
    pub available: bool,
    pub current_version: String,
    pub version: Option<String>,
    pub notes: Option<String>,
}

/// Whether global shortcuts work in this session, for the settings screen to say so plainly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ShortcutSupport {
    /// Key grabs work (X11, Windows, macOS).
    pub global_shortcuts: bool,
    /// What to do instead when they do not (Wayland): bind `parley ctl ptt-start` etc.
    pub message: Option<String>,
    /// The shortcuts that could not be registered, with why.
    pub failed: Vec<String>,
}

/// One command: its name, its arguments (camelCase name, TypeScript type) and result type.
pub struct CommandSpec {
    pub name: &'static str,
    pub args: Vec<(&'static str, String)>,
    pub result: String,
}

fn command(name: &'static str, args: Vec<(&'static str, String)>, result: String) -> CommandSpec {
    CommandSpec { name, args, result }
}

fn ts<T: TS>() -> String {
    T::name()
}

/// Every command the desktop shell offers the UI, in the order the README lists them.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        command("get_state", vec![], ts::<ClientState>()),
        command("next_state", vec![("after", ts::<u32>())], ts::<StateUpdate>()),
        command("get_settings", vec![], ts::<AppSettings>()),
        command("update_settings", vec![("settings", ts::<AppSettings>())], ts::<AppSettings>()),
        command("list_backends", vec![], ts::<Vec<BackendForm>>()),
        command("list_profiles", vec![], ts::<Vec<ProfileSummary>>()),
        command("add_profile", vec![("profile", ts::<ProfileInput>())], ts::<ProfileSummary>()),
        command(
            "begin_discourse_auth",
            vec![("profile", ts::<String>()), ("url", ts::<String>())],
            ts::<DiscourseAuthStarted>(),
        ),
        command("complete_discourse_auth", vec![("profile", ts::<String>()), ("payload", ts::<String>())], ts::<()>()),
        command("remove_profile", vec![("name", ts::<String>())], ts::<()>()),
        command("list_rooms", vec![("profile", ts::<String>())], ts::<Vec<RoomEntry>>()),
        command("get_backend_features", vec![("profile", ts::<String>())], ts::<BackendFeatures>()),
        command("list_devices", vec![], ts::<Vec<AudioDevice>>()),
        command("start_mic_test", vec![], ts::<()>()),
        command("stop_mic_test", vec![], ts::<()>()),
        command(
            "join_room",
            vec![("profile", ts::<String>()), ("room", ts::<String>()), ("switchRooms", ts::<bool>())],
            ts::<()>(),
        ),
        command("leave_room", vec![], ts::<()>()),
        command("set_muted", vec![("muted", ts::<bool>())], ts::<()>()),
        command("toggle_mute", vec![], ts::<()>()),
        command("set_deafened", vec![("deafened", ts::<bool>())], ts::<()>()),
        command("toggle_deafen", vec![], ts::<()>()),
        command("push_to_talk", vec![("pressed", ts::<bool>())], ts::<()>()),
        command("set_volume", vec![("identity", ts::<String>()), ("percent", ts::<u32>())], ts::<()>()),
        command("set_local_mute", vec![("identity", ts::<String>()), ("muted", ts::<bool>())], ts::<()>()),
        command("allow_unencrypted", vec![("identity", ts::<String>())], ts::<()>()),
        command("list_share_targets", vec![], ts::<Vec<ShareTarget>>()),
        command("list_share_sounds", vec![], ts::<Vec<ShareSound>>()),
        command(
            "start_share",
            vec![
                ("target", ts::<String>()),
                ("quality", ts::<String>()),
                ("priority", ts::<String>()),
                ("sound", ts::<Option<String>>()),
            ],
            ts::<()>(),
        ),
        command("stop_share", vec![], ts::<()>()),
        command("watch_share", vec![("identity", ts::<String>())], ts::<()>()),
        command("pop_out_share", vec![("identity", ts::<String>())], ts::<()>()),
        command("unwatch_share", vec![("identity", ts::<String>())], ts::<()>()),
        command(
            "fit_share",
            vec![("identity", ts::<String>()), ("width", ts::<u32>()), ("height", ts::<u32>())],
            ts::<()>(),
        ),
        command("place_share", vec![("identity", ts::<String>()), ("rect", ts::<Option<ShareRect>>())], ts::<()>()),
        command("dismiss_link", vec![], ts::<()>()),
        command(
            "moderate_participant",
            vec![("identity", ts::<String>()), ("action", ts::<ModerationAction>())],
            ts::<()>(),
        ),
        command("set_hand_raised", vec![("raised", ts::<bool>())], ts::<()>()),
        command("get_shortcut_support", vec![], ts::<ShortcutSupport>()),
        command("check_for_updates", vec![], ts::<UpdateStatus>()),
        command("install_update", vec![], ts::<()>()),
    ]
}

/// The names of [`commands`], for the shell's allow-list check.
pub fn command_names() -> Vec<&'static str> {
    commands().into_iter().map(|command| command.name).collect()
}

const HEADER: &str = "// Generated by parley-core (crates/core/src/client/ipc.rs); do not edit.\n\
// Regenerate: PARLEY_WRITE_BINDINGS=1 cargo test -p parley-core generated_typescript\n\n";

fn declaration<T: TS>() -> String {
    let docs = T::docs().unwrap_or_default();
    format!("{docs}export {}\n", T::decl())
}

/// `bindings.ts`: every type that crosses IPC.
pub fn bindings_ts() -> String {
    let declarations = [
        declaration::<ClientState>(),
        declaration::<StateUpdate>(),
        declaration::<Levels>(),
        declaration::<LocalState>(),
        declaration::<LinkedRoom>(),
        declaration::<CallState>(),
        declaration::<CallPhase>(),
        declaration::<Bandwidth>(),
        declaration::<LocalShare>(),
        declaration::<ShareTarget>(),
        declaration::<ShareSound>(),
        declaration::<ShareRect>(),
        declaration::<ParticipantState>(),
        declaration::<Encryption>(),
        declaration::<ConnectionQuality>(),
        declaration::<ModerationAction>(),
        declaration::<ModerationOption>(),
        declaration::<Notice>(),
        declaration::<ErrorCode>(),
        declaration::<ClientError>(),
        declaration::<AppSettings>(),
        declaration::<Shortcuts>(),
        declaration::<TransmitChoice>(),
        declaration::<Backend>(),
        declaration::<BackendForm>(),
        declaration::<BackendFeatures>(),
        declaration::<ProfileSummary>(),
        declaration::<ProfileInput>(),
        declaration::<DiscourseAuthStarted>(),
        declaration::<RoomEntry>(),
        declaration::<AudioDevice>(),
        declaration::<UpdateStatus>(),
        declaration::<ShortcutSupport>(),
        declaration::<serde_json::Value>(),
    ];
    format!("{HEADER}{}", declarations.join("\n"))
}

/// `commands.ts`: the command and event tables, with no runtime dependency, for the UI's one
/// typed backend interface to build on.
pub fn commands_ts() -> String {
    let mut text = String::from(HEADER);
    text.push_str("import type * as T from \"./bindings\";\n\n");
    text.push_str(
        "/** Every command: its arguments (as `invoke` takes them) and its result. */\nexport interface Commands {\n",
    );
    for command in commands() {
        let args: Vec<String> = command.args.iter().map(|(name, ty)| format!("{name}: {}", qualify(ty))).collect();
        let args =
            if args.is_empty() { "Record<string, never>".to_string() } else { format!("{{ {} }}", args.join("; ")) };
        text.push_str(&format!("  {}: {{ args: {args}; result: {} }};\n", command.name, qualify(&command.result)));
    }
    text.push_str("}\n\nexport type CommandName = keyof Commands;\n\n");
    text.push_str("export const COMMAND_NAMES: readonly CommandName[] = [\n");
    for command in commands() {
        text.push_str(&format!("  \"{}\",\n", command.name));
    }
    text.push_str("];\n\n/** Every event the backend emits and its payload. */\nexport interface Events {\n");
    text.push_str(&format!("  \"{NOTICE_POSTED}\": T.Notice;\n  \"{DEEP_LINK_OPENED}\": string;\n}}\n\n"));
    text.push_str(&format!(
        "export const EVENT_NAMES = {{\n  noticePosted: \"{NOTICE_POSTED}\",\n  \
         deepLinkOpened: \"{DEEP_LINK_OPENED}\",\n}} as const;\n\n"
    ));
    text.push_str("/** How every command fails. */\nexport type CommandError = T.ClientError;\n");
    text
}

/// Prefixes the generated type names in `ty` with `T.` (the bindings import).
fn qualify(ty: &str) -> String {
    let builtins = ["string", "number", "boolean", "null", "Array", "Record", "never", "bigint", "undefined"];
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            if word.chars().next().is_some_and(char::is_uppercase) && !builtins.contains(&word.as_str()) {
                out.push_str("T.");
            }
            out.push_str(word);
            word.clear();
        }
    };
    for character in ty.chars() {
        if character.is_alphanumeric() || character == '_' {
            word.push(character);
        } else {
            flush(&mut word, &mut out);
            out.push(character);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The generated files, by name.
pub fn generated_files() -> Vec<(&'static str, String)> {
    vec![("bindings.ts", bindings_ts()), ("commands.ts", commands_ts())]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn generated_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/lib/generated")
    }

    /// CI runs this: the committed TypeScript must be what the Rust types generate. With
    /// `PARLEY_WRITE_BINDINGS=1` it rewrites the files instead.
    #[test]
    fn generated_typescript_matches_the_committed_files() {
        let dir = generated_dir();
        let write = std::env::var_os("PARLEY_WRITE_BINDINGS").is_some_and(|value| value == "1");
        for (name, text) in generated_files() {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).expect("creating ui/src/lib/generated");
                std::fs::write(&path, &text).expect("writing a generated file");
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "{} is out of date with the Rust types; run PARLEY_WRITE_BINDINGS=1 cargo test -p parley-core \
                 generated_typescript and commit the result",
                path.display()
            );
        }
    }

    #[test]
    fn command_names_are_unique_snake_case_verbs() {
        let names = command_names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "command names should be unique: {names:?}");
        assert!(
            names.iter().all(|name| name.contains('_') && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
            "commands are verb_noun: {names:?}"
        );
    }

    #[test]
    fn qualify_prefixes_only_generated_types() {
        assert_eq!(qualify("Array<RoomEntry>"), "Array<T.RoomEntry>", "generated names get the import prefix");
        assert_eq!(qualify("string | null"), "string | null", "builtins stay as they are");
    }
}
