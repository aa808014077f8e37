//! `cargo xtask stage-ffi --target <triple>`: puts the LiveKit FFI library of a release target
//! (from its pinned, sha256-checked wheel) into `src-tauri/ffi/`, and writes the Tauri config
//! overlay `src-tauri/ffi/bundle.conf.json` that makes the installers carry it:
//!
//! * Linux and Windows: a resource at the root of the app's resource directory (beside the
//!   `.exe` on Windows, `/usr/lib/Parley/` in the deb, inside the AppImage), where the app looks
//!   first (`LibrarySearch::extra_dirs`);
//! * macOS: a framework in `Parley.app/Contents/Frameworks` (signed with the app; the engine finds
//!   it at `../Frameworks` from the executable). `universal-apple-darwin` joins the arm64 and
//!   x86_64 libraries with `lipo`, which only a Mac has.
//!
//! The release workflow runs it before `tauri build --config src-tauri/ffi/bundle.conf.json`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use parley_deps::{FfiLibraryKind, Layout};

/// The universal macOS target of Tauri (both architectures in one bundle).
const UNIVERSAL_MACOS: &str = "universal-apple-darwin";

pub fn stage_ffi(target: &str) -> Result<PathBuf> {
    let layout = Layout::discover();
    let say = |line: String| println!("{line}");
    let staging = crate::workspace_root().join("src-tauri/ffi");
    // Only this target's library: a stale one of another target must not ride along.
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("emptying {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let (file_name, macos) = if target == UNIVERSAL_MACOS {
        let mut parts = Vec::new();
        for arch in ["aarch64-apple-darwin", "x86_64-apple-darwin"] {
            let kind = kind_of(arch)?;
            let library = layout.ffi_library_of(kind);
            crate::setup::install_library_from_wheel(&layout, kind, &library, &say)?;
            parts.push(library);
        }
        let file_name = kind_of("aarch64-apple-darwin")?.file_name;
        crate::setup::run_command(
            Command::new("lipo").arg("-create").args(&parts).arg("-output").arg(staging.join(file_name)),
        )
        .context("lipo (joining the two macOS libraries needs a Mac)")?;
        (file_name, true)
    } else {
        let kind = kind_of(target)?;
        let library = layout.ffi_library_of(kind);
        crate::setup::install_library_from_wheel(&layout, kind, &library, &say)?;
        let staged = staging.join(kind.file_name);
        std::fs::copy(&library, &staged)
            .with_context(|| format!("copying {} to {}", library.display(), staged.display()))?;
        (kind.file_name, target.contains("apple"))
    };
    let overlay = staging.join("bundle.conf.json");
    std::fs::write(&overlay, bundle_overlay(file_name, macos))
        .with_context(|| format!("writing {}", overlay.display()))?;
    println!("stage-ffi: {} and {} ready for {target}", staging.join(file_name).display(), overlay.display());
    Ok(overlay)
}

fn kind_of(target: &str) -> Result<FfiLibraryKind> {
    match parley_deps::ffi_library_for_target(target) {
        Some(kind) => Ok(kind),
        None => bail!("LiveKit publishes no FFI library for {target}"),
    }
}

/// The Tauri config overlay (paths relative to `src-tauri/`, where the config lives).
fn bundle_overlay(file_name: &str, macos: bool) -> String {
    let source = format!("ffi/{file_name}");
    let bundle = if macos {
        serde_json::json!({ "macOS": { "frameworks": [source] } })
    } else {
        serde_json::json!({ "resources": { source: file_name } })
    };
    serde_json::to_string_pretty(&serde_json::json!({ "bundle": bundle })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_puts_the_library_in_resources_or_frameworks() {
        let linux: serde_json::Value = serde_json::from_str(&bundle_overlay("liblivekit_ffi.so", false)).expect("json");
        assert_eq!(linux["bundle"]["resources"]["ffi/liblivekit_ffi.so"], "liblivekit_ffi.so");
        let mac: serde_json::Value = serde_json::from_str(&bundle_overlay("liblivekit_ffi.dylib", true)).expect("json");
        assert_eq!(mac["bundle"]["macOS"]["frameworks"][0], "ffi/liblivekit_ffi.dylib");
    }
}
