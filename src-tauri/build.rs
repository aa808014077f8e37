//! Declares the app's commands to Tauri, so that each needs an explicit `allow-<command>` grant
//! in `capabilities/` (STYLE.md 17): a command missing from the capability file is refused.

include!("src/command_list.rs");

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .unwrap_or_else(|error| panic!("tauri build step failed: {error:#}"));
}
