//! Tauri's build step (config, icons, the embedded `dist/`); no commands, no capabilities.

fn main() {
    tauri_build::build();
}
