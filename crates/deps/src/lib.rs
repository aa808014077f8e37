//! Pinned third-party artifacts: what they are and where they live on this machine.
//!
//! `pinned.toml` at the workspace root names every artifact that Parley fetches outside Cargo
//! and npm (the LiveKit FFI library, the LiveKit server, the Python test peer's packages). [`pinned()`] parses it (it is
//! compiled in, so a binary always agrees with the setup that built it), and [`Layout`] says
//! where `cargo xtask setup` installs each artifact. Everything that needs one of these paths
//! — the FFI loader, the dev server, the setup command itself — asks this crate, so a location
//! is written down in exactly one place.
//!
//! The root directory is `$PARLEY_DEPS_DIR` when set, else `<user cache dir>/parley/deps`. It
//! lives outside the source tree on purpose: CI runs on fresh clones and must reuse the work of
//! earlier runs on the same machine.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

/// Environment variable that overrides the root of the installed artifacts.
pub const DEPS_DIR_ENV: &str = "PARLEY_DEPS_DIR";

const PINNED_TOML: &str = include_str!("../../../pinned.toml");

/// The contents of `pinned.toml`.
#[derive(Debug, Deserialize)]
pub struct Pinned {
    pub livekit_ffi: LiveKitFfiPin,
    pub livekit_server: GoPackagePin,
    pub python_peer: PythonPeerPin,
    pub actionlint: GoPackagePin,
}

/// The Python environment of the independent test peer (LiveKit's Python SDK).
#[derive(Debug, Deserialize)]
pub struct PythonPeerPin {
    /// Exact `name==version` requirements.
    pub requirements: Vec<String>,
}

/// The `livekit` wheel that carries `liblivekit_ffi` and its protobuf descriptors.
#[derive(Debug, Deserialize)]
pub struct LiveKitFfiPin {
    /// PyPI project name.
    pub wheel: String,
    pub version: String,
    /// Platform tag (`manylinux_2_28_x86_64`, …) → sha256 of the wheel file.
    pub wheels: std::collections::BTreeMap<String, String>,
}

/// A Go program built with `go install <package>@<version>`.
#[derive(Debug, Deserialize)]
pub struct GoPackagePin {
    pub package: String,
    pub version: String,
}

/// The pinned versions compiled into this binary.
pub fn pinned() -> &'static Pinned {
    static PINNED: OnceLock<Pinned> = OnceLock::new();
    PINNED.get_or_init(|| {
        // Invariant: pinned.toml is compiled in and checked by this crate's tests.
        toml::from_str(PINNED_TOML).expect("pinned.toml is valid")
    })
}

impl LiveKitFfiPin {
    /// Wheel file name for a platform tag, as PyPI names it.
    pub fn wheel_file(&self, platform_tag: &str) -> String {
        format!("{}-{}-py3-none-{platform_tag}.whl", self.wheel, self.version)
    }
}

/// The wheel platform tag for the machine this binary was built for, if LiveKit ships one.
pub fn host_wheel_platform() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some("manylinux_2_28_x86_64"),
        ("linux", "aarch64") => Some("manylinux_2_28_aarch64"),
        ("macos", "aarch64") => Some("macosx_11_0_arm64"),
        ("macos", "x86_64") => Some("macosx_10_15_x86_64"),
        ("windows", "x86_64") => Some("win_amd64"),
        _ => None,
    }
}

/// The FFI library LiveKit ships for a Rust target triple: the wheel's platform tag and the
/// library's file name there. `None` for a target LiveKit publishes no library for.
pub fn ffi_library_for_target(triple: &str) -> Option<FfiLibraryKind> {
    let (wheel_platform, file_name) = match triple {
        "x86_64-unknown-linux-gnu" => ("manylinux_2_28_x86_64", "liblivekit_ffi.so"),
        "aarch64-unknown-linux-gnu" => ("manylinux_2_28_aarch64", "liblivekit_ffi.so"),
        "x86_64-pc-windows-msvc" | "x86_64-pc-windows-gnu" => ("win_amd64", "livekit_ffi.dll"),
        "aarch64-apple-darwin" => ("macosx_11_0_arm64", "liblivekit_ffi.dylib"),
        "x86_64-apple-darwin" => ("macosx_10_15_x86_64", "liblivekit_ffi.dylib"),
        _ => return None,
    };
    Some(FfiLibraryKind { wheel_platform, file_name })
}

/// Which wheel carries a target's FFI library, and under what file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfiLibraryKind {
    pub wheel_platform: &'static str,
    pub file_name: &'static str,
}

/// Directories, relative to the executable's (`""`: its own), where a bundle keeps the FFI
/// library: beside it (Windows installers, a plain build), in `resources/`, and on macOS in the
/// app bundle's `Contents/Frameworks` (signed with the app).
pub fn bundled_library_dirs() -> &'static [&'static str] {
    if cfg!(target_os = "macos") { &["", "resources", "../Frameworks"] } else { &["", "resources"] }
}

/// File name of the FFI library on this platform.
pub fn ffi_library_file_name() -> &'static str {
    if cfg!(target_os = "windows") {
        "livekit_ffi.dll"
    } else if cfg!(target_os = "macos") {
        "liblivekit_ffi.dylib"
    } else {
        "liblivekit_ffi.so"
    }
}

/// Where each installed artifact lives under one root directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout rooted at `$PARLEY_DEPS_DIR`, or the user cache directory by default.
    pub fn discover() -> Layout {
        let root = std::env::var_os(DEPS_DIR_ENV)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(default_root);
        Layout { root }
    }

    /// A layout rooted at an explicit directory (tests, custom installs).
    pub fn at(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Downloaded wheels, kept so that reruns need no network.
    pub fn wheel_cache(&self) -> PathBuf {
        self.root.join("wheels")
    }

    /// The FFI library extracted from the pinned wheel.
    pub fn ffi_library(&self) -> PathBuf {
        self.root.join("livekit-ffi").join(&pinned().livekit_ffi.version).join(ffi_library_file_name())
    }

    /// The FFI library of another target (e.g. the Windows DLL a cross-built `parley.exe` runs
    /// with under Wine), extracted from that target's pinned wheel.
    pub fn ffi_library_of(&self, kind: FfiLibraryKind) -> PathBuf {
        let version = &pinned().livekit_ffi.version;
        self.root.join("livekit-ffi").join(version).join(kind.wheel_platform).join(kind.file_name)
    }

    /// The virtual environment of the Python test peer.
    pub fn python_peer_env(&self) -> PathBuf {
        self.root.join("python-peer")
    }

    /// The interpreter of [`Layout::python_peer_env`].
    pub fn python_peer_interpreter(&self) -> PathBuf {
        if cfg!(windows) {
            self.python_peer_env().join("Scripts").join("python.exe")
        } else {
            self.python_peer_env().join("bin").join("python")
        }
    }

    /// Programs installed with `cargo install --root` (`<tools>/bin/…`): tauri-driver.
    pub fn tools_dir(&self) -> PathBuf {
        self.root.join("tools")
    }

    /// `tauri-driver`, the WebDriver intermediary the desktop app's end-to-end tests drive it
    /// through (`cargo install --locked tauri-driver --root <tools>`).
    pub fn tauri_driver(&self) -> PathBuf {
        self.tools_dir().join("bin").join(format!("tauri-driver{}", std::env::consts::EXE_SUFFIX))
    }

    /// The pinned actionlint, which lints the GitHub workflows.
    pub fn actionlint(&self) -> PathBuf {
        let version = &pinned().actionlint.version;
        self.root.join("bin").join(format!("actionlint-{version}{}", std::env::consts::EXE_SUFFIX))
    }

    /// The pinned LiveKit server binary.
    pub fn livekit_server(&self) -> PathBuf {
        self.root.join("bin").join(format!(
            "livekit-server-{}{}",
            pinned().livekit_server.version,
            std::env::consts::EXE_SUFFIX
        ))
    }
}

/// `<user cache dir>/parley/deps`: `$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches`
/// on macOS, `%LOCALAPPDATA%` on Windows (the `dirs` crate's rules); the temp dir for a user
/// without a home.
fn default_root() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("parley").join("deps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_file_parses_and_has_a_hash_for_this_host() {
        let pinned = pinned();
        assert!(!pinned.livekit_ffi.version.is_empty(), "wheel version must be pinned");
        if let Some(tag) = host_wheel_platform() {
            let hash = pinned.livekit_ffi.wheels.get(tag);
            assert!(hash.is_some_and(|h| h.len() == 64), "pinned.toml must carry a sha256 for {tag}");
        }
        assert!(pinned.livekit_server.version.starts_with('v'));
        assert!(pinned.actionlint.version.starts_with('v'));
    }

    #[test]
    fn every_release_target_has_a_pinned_wheel() {
        for triple in
            ["x86_64-unknown-linux-gnu", "x86_64-pc-windows-msvc", "aarch64-apple-darwin", "x86_64-apple-darwin"]
        {
            let kind = ffi_library_for_target(triple).unwrap_or_else(|| panic!("{triple} has an FFI library"));
            let hash = pinned().livekit_ffi.wheels.get(kind.wheel_platform);
            assert!(hash.is_some_and(|h| h.len() == 64), "pinned.toml must carry a sha256 for {triple}");
        }
        assert_eq!(ffi_library_for_target("riscv64gc-unknown-linux-gnu"), None);
        let windows = ffi_library_for_target("x86_64-pc-windows-gnu").expect("windows");
        assert!(Layout::at("/x").ffi_library_of(windows).ends_with("win_amd64/livekit_ffi.dll"));
    }

    #[test]
    fn layout_paths_are_under_the_root_and_versioned() {
        let layout = Layout::at("/x");
        assert!(layout.ffi_library().starts_with("/x/livekit-ffi"));
        assert!(layout.ffi_library().to_string_lossy().contains(&pinned().livekit_ffi.version));
        assert!(layout.livekit_server().to_string_lossy().contains(&pinned().livekit_server.version));
        assert!(layout.tauri_driver().starts_with("/x/tools/bin"), "cargo install --root puts programs in bin/");
    }
}
