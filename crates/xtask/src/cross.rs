//! Windows and macOS, checked from this Linux machine (DESIGN §9): clippy `-D warnings` for
//! both, the Windows build's unit tests under Wine, and actionlint over the workflows that build
//! and test natively on real Windows and macOS runners. `parley.exe` in a real call is an
//! end-to-end test of the CLI suite (`tests/cli/windows.rs`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use parley_deps::{Layout, pinned};
use parley_devserver::wine::WinePrefix;

/// The Windows target checked and run here (mingw links it; Wine runs it). Releases build
/// `x86_64-pc-windows-msvc` on a Windows runner.
pub const WINDOWS: &str = "x86_64-pc-windows-gnu";
/// The macOS target checked here (no Apple SDK: check and clippy only, never a link).
pub const MACOS: &str = "aarch64-apple-darwin";

/// Workspace crates clippy cannot check for macOS without Apple's SDK, and why.
pub const MACOS_UNCHECKED: &[(&str, &str)] = &[(
    "parley-app",
    "tauri-plugin-notification -> notify-rust -> mac-notification-sys compiles Objective-C against \
     Cocoa.h, which only the Apple SDK has",
)];

/// Windows unit tests that cannot run under Wine here, and why: the Client's two real-server
/// tests start the Linux LiveKit server binary, which a Windows process cannot
/// (`tests/cli/windows.rs` puts parley.exe in a real call instead).
const WINE_SKIPPED: &[(&str, &str)] = &[
    ("client::tests::two_clients_meet_set_volumes_mute_and_kick_through_a_real_server", "starts a LiveKit server"),
    ("client::tests::a_saved_volume_applies_when_the_participant_arrives", "starts a LiveKit server"),
];

/// What `cargo xtask setup` adds on Linux for the cross checks (the apt packages are in
/// `setup::APT_PACKAGES`): the Rust targets, actionlint, and the Windows FFI library.
pub fn setup(layout: &Layout, say: &dyn Fn(String)) -> Result<()> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    add_rust_targets(say)?;
    install_actionlint(layout, say)?;
    let kind = parley_deps::ffi_library_for_target(WINDOWS).context("a pinned Windows FFI library")?;
    crate::setup::install_library_from_wheel(layout, kind, &layout.ffi_library_of(kind), say)?;
    Ok(())
}

/// The cross checks of `cargo xtask test`.
pub fn check() -> Result<()> {
    let layout = Layout::discover();
    crate::cargo(&["clippy", "--workspace", "--all-targets", "--target", WINDOWS, "--", "-D", "warnings"])
        .context("clippy for Windows")?;
    clippy_macos().context("clippy for macOS")?;
    actionlint(&layout).context("actionlint over .github/workflows")?;
    windows_unit_tests(&layout).context("the Windows unit tests under Wine")?;
    Ok(())
}

fn add_rust_targets(say: &dyn Fn(String)) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup (the cross checks need the rustup toolchain manager)")?;
    let installed = String::from_utf8_lossy(&installed.stdout).into_owned();
    let missing: Vec<&str> =
        [WINDOWS, MACOS].into_iter().filter(|target| !installed.lines().any(|line| line == *target)).collect();
    if missing.is_empty() {
        say(format!("setup: Rust targets {WINDOWS} and {MACOS} present"));
        return Ok(());
    }
    say(format!("setup: adding Rust targets {}", missing.join(", ")));
    crate::setup::run_command(Command::new("rustup").args(["target", "add"]).args(&missing))
        .with_context(|| format!("rustup target add {}", missing.join(" ")))
}

fn install_actionlint(layout: &Layout, say: &dyn Fn(String)) -> Result<()> {
    let pin = &pinned().actionlint;
    let binary = layout.actionlint();
    if binary.is_file() {
        say(format!("setup: actionlint {} present: {}", pin.version, binary.display()));
        return Ok(());
    }
    say(format!("setup: building actionlint {} with go install", pin.version));
    crate::setup::go_install(pin, &binary)?;
    say(format!("setup: installed actionlint {} at {}", pin.version, binary.display()));
    Ok(())
}

/// Clippy for macOS on Linux. Rust needs no SDK to check; the C and Swift that build scripts compile do.
/// ring's is freestanding and compiles with clang given its no-libc switch and the one Apple
/// header it includes (`apple-check/`); the crates in [`MACOS_UNCHECKED`] cannot be checked.
fn clippy_macos() -> Result<()> {
    let shim = crate::workspace_root().join("crates/xtask/apple-check");
    let flags = format!("-ffreestanding -nostdlibinc -DRING_CORE_NOSTDLIBINC=1 -I{}", shim.display());
    let mut args = vec!["clippy", "--workspace", "--all-targets", "--target", MACOS];
    for (name, why) in MACOS_UNCHECKED {
        println!("xtask: not checked for macOS: {name} ({why})");
        args.extend(["--exclude", name]);
    }
    args.extend(["--", "-D", "warnings"]);
    let env = [
        ("CC_aarch64_apple_darwin".to_string(), "clang".to_string()),
        ("CFLAGS_aarch64_apple_darwin".into(), flags),
        // screencapturekit (and its apple-cf, apple-metal) compile a Swift bridge with Xcode's
        // `swift build`; under DOCS_RS their build scripts skip it, as on docs.rs, and their Rust
        // (all this check reads) compiles as on a Mac.
        ("DOCS_RS".into(), "1".into()),
    ];
    crate::cargo_with_env(&args, &env)
}

fn actionlint(layout: &Layout) -> Result<()> {
    let workflows = crate::workspace_root().join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&workflows)
        .with_context(|| format!("reading {}", workflows.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no workflows", workflows.display());
    }
    crate::setup::run_command(
        Command::new(layout.actionlint())
            .args(["-no-color", "-shellcheck", "shellcheck"])
            .args(&files)
            .current_dir(crate::workspace_root()),
    )?;
    println!("xtask: actionlint (with shellcheck): {} workflows clean", files.len());
    Ok(())
}

/// The unit tests of the portable crates, built for Windows and run by Wine in a prefix of the
/// layout's (made on first use; the control socket's named-pipe tests are among them).
fn windows_unit_tests(layout: &Layout) -> Result<()> {
    let prefix = WinePrefix::create(&layout.root().join("wine-prefix")).context("the Wine prefix")?;
    let mut args = vec!["test", "--target", WINDOWS, "--lib"];
    for package in ["parley-deps", "parley-audio", "parley-capture", "parley-control-plane", "parley-core"] {
        args.extend(["-p", package]);
    }
    args.extend(["--", "--test-threads=1"]);
    for (filter, why) in WINE_SKIPPED {
        println!("xtask: not run under Wine: {filter} ({why})");
        args.extend(["--skip", filter]);
    }
    let runner = format!("CARGO_TARGET_{}_RUNNER", WINDOWS.to_uppercase().replace('-', "_"));
    let mut env = prefix.env();
    env.push((runner, "wine".into()));
    let result = crate::cargo_with_env(&args, &env);
    prefix.shut_down();
    result
}
