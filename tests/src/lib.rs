//! The rig the end-to-end suites share (`tests/cli`, the `parley` CLI's; `tests/app`, the desktop
//! app's): the binaries under test, built for the run.
//!
//! The suites live in this crate of their own because they cross crates: they drive the CLI and
//! the app as a user does, against a real LiveKit server, real sound devices in a private
//! PulseAudio and a real window. Cargo gives a test the path of a binary only from its own package
//! (`CARGO_BIN_EXE_…`), so [`binary`] builds the one it needs with the cargo that runs the tests.

mod pattern_window;
mod screencast_feed;

pub use pattern_window::PatternWindow;
pub use screencast_feed::ScreenCastFeed;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// A binary of the workspace (`package`, `name`), built once per test run into the same target
/// directory and profile as the running test, and checked to exist. `PARLEY_BIN_<NAME>` (upper
/// case, `-` as `_`: `PARLEY_BIN_PARLEY_APP`) overrides it with a binary of your choice. Any
/// thread; the first call for a binary builds it.
///
/// Panics (fails the test) when the build fails or the binary is not where cargo puts it.
pub fn binary(package: &str, name: &str) -> PathBuf {
    binary_for(package, name, None)
}

/// [`binary`] built for another Rust target (`Some("x86_64-pc-windows-gnu")`), into
/// `<target dir>/<triple>/<profile>/`; `PARLEY_BIN_<NAME>_<TRIPLE>` overrides it.
pub fn binary_for(package: &str, name: &str, triple: Option<&str>) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    // Held across the build: two tests asking at once wait for one build.
    let mut built = built.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = format!("{name}@{}", triple.unwrap_or("host"));
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let mut variable = format!("PARLEY_BIN_{}", name.to_uppercase().replace('-', "_"));
    if let Some(triple) = triple {
        variable.push_str(&format!("_{}", triple.to_uppercase().replace('-', "_")));
    }
    let path = match std::env::var_os(&variable).filter(|value| !value.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{variable}={} should be the {name} binary", path.display());
            path
        }
        None => build(package, name, triple),
    };
    built.insert(key, path.clone());
    path
}

fn build(package: &str, name: &str, triple: Option<&str>) -> PathBuf {
    // This test runs as <target>/<profile dir>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test binary lives in <profile>/deps");
    let target = profile_dir.parent().expect("the profile directory lives in the target directory");
    let profile = profile_dir.file_name().and_then(|name| name.to_str()).expect("a profile directory name");
    let cargo = std::env::var("CARGO").ok().or_else(|| option_env!("CARGO").map(String::from));
    let mut command = Command::new(cargo.unwrap_or_else(|| "cargo".into()));
    command
        .args(["build", "--quiet", "--package", package, "--bin", name, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    // Cargo gives this test the variables it gives a crate (`CARGO_PKG_NAME`, `OUT_DIR`, …);
    // build scripts that watch them (ring's) would see them change and rerun, and the next
    // `cargo test` would rebuild half the tree again.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_for_crates = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_TARGET_TMPDIR"]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        if set_for_crates || key == "OUT_DIR" || key == "CARGO_PRIMARY_PACKAGE" || key == "CARGO_RUSTC_CURRENT_DIR" {
            command.env_remove(key.as_ref());
        }
    }
    // Cargo's `dev` (and `test`) profiles build into `debug/`; any other into its own name.
    if profile != "debug" {
        command.args(["--profile", profile]);
    }
    if let Some(triple) = triple {
        command.args(["--target", triple]);
    }
    let started = std::time::Instant::now();
    let status = command.status().unwrap_or_else(|error| panic!("running cargo build for {name}: {error}"));
    eprintln!("built {name} in {:.1} s", started.elapsed().as_secs_f64());
    assert!(status.success(), "building {name} (package {package}) should succeed ({status})");
    let binary = match triple {
        Some(triple) => {
            let suffix = if triple.contains("windows") { ".exe" } else { "" };
            target.join(triple).join(profile).join(format!("{name}{suffix}"))
        }
        None => profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)),
    };
    assert!(binary.is_file(), "cargo built {package}, so {} should exist", binary.display());
    binary
}

/// The `parley` CLI.
pub fn parley_binary() -> PathBuf {
    binary("parley-cli", "parley")
}

/// The Rust target of the Windows build the rig runs under Wine.
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

/// `parley.exe`, cross-built for Windows (mingw), to run under Wine.
pub fn windows_parley_binary() -> PathBuf {
    binary_for("parley-cli", "parley", Some(WINDOWS_TARGET))
}

/// The desktop app.
pub fn app_binary() -> PathBuf {
    binary("parley-app", "parley-app")
}

/// Where suites leave what a person should look at afterwards (screenshots): `<target>/<dir>`.
pub fn artifacts_dir(dir: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe.ancestors().nth(3).expect("the test binary lives in <target>/<profile>/deps");
    target.join(dir)
}
