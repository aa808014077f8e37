//! `cargo xtask setup`: installs everything outside Cargo that the workspace needs, as pinned in
//! `pinned.toml`, into the [`parley_deps::Layout`] directory. Each step checks first and does
//! nothing when its artifact is present and verified, so a rerun takes seconds.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use parley_deps::{FfiLibraryKind, GoPackagePin, Layout, pinned};
use sha2::{Digest, Sha256};

/// Where the wheel keeps the FFI library.
const WHEEL_LIBRARY_DIR: &str = "livekit/rtc/resources/";

pub fn run(print_env: bool) -> Result<()> {
    let layout = Layout::discover();
    let say = |line: String| {
        if !print_env {
            println!("{line}");
        }
    };
    say(format!("setup: artifacts in {} (set {} to move them)", layout.root().display(), parley_deps::DEPS_DIR_ENV));
    check_tools(&say)?;
    install_system_packages(&say)?;
    crate::app::build_ui(&crate::workspace_root().join("ui"), &say)?;
    let library = install_ffi_library(&layout, &say)?;
    let server = install_livekit_server(&layout, &say)?;
    let peer = install_python_peer(&layout, &say)?;
    install_browser_peer(&say)?;
    let driver = install_tauri_driver(&layout, &say)?;
    crate::cross::setup(&layout, &say)?;
    report_lk_cli(&say);
    if print_env {
        println!("{}={}", parley_deps::DEPS_DIR_ENV, layout.root().display());
        println!("LIVEKIT_LIB_PATH={}", library.display());
        println!("PARLEY_LIVEKIT_SERVER={}", server.display());
        println!("PARLEY_PYTHON_PEER={}", peer.display());
        println!("{}={}", parley_devserver::display::TAURI_DRIVER_ENV, driver.display());
    } else {
        println!("setup: done");
    }
    Ok(())
}

/// Downloads (or reuses) the pinned wheel, verifies it, and extracts the library.
fn install_ffi_library(layout: &Layout, say: &dyn Fn(String)) -> Result<PathBuf> {
    let tag = parley_deps::host_wheel_platform().context("LiveKit publishes no FFI library for this platform")?;
    let kind = FfiLibraryKind { wheel_platform: tag, file_name: parley_deps::ffi_library_file_name() };
    let library = layout.ffi_library();
    if let Some(wheel) = install_library_from_wheel(layout, kind, &library, say)? {
        check_descriptors(&wheel)?;
    }
    Ok(library)
}

/// Puts the FFI library of the pinned wheel for `kind` at `library`, unless a stamp beside it
/// says it came from that very wheel. Returns the wheel when it extracted anything.
pub(crate) fn install_library_from_wheel(
    layout: &Layout,
    kind: FfiLibraryKind,
    library: &Path,
    say: &dyn Fn(String),
) -> Result<Option<PathBuf>> {
    let pin = &pinned().livekit_ffi;
    let tag = kind.wheel_platform;
    let expected = pin.wheels.get(tag).with_context(|| format!("pinned.toml has no sha256 for platform {tag}"))?;
    let stamp = library.with_extension("wheel-sha256");
    if library.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|recorded| recorded.trim() == expected) {
        say(format!("setup: LiveKit FFI library {} ({tag}) present: {}", pin.version, library.display()));
        return Ok(None);
    }
    let wheel = fetch_wheel(layout, tag, expected, say)?;
    let name = format!("{WHEEL_LIBRARY_DIR}{}", kind.file_name);
    let file = std::fs::File::open(&wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("reading {}", wheel.display()))?;
    let mut entry = archive.by_name(&name).with_context(|| format!("{} has no {name}", wheel.display()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).with_context(|| format!("extracting {name}"))?;
    let parent = library.parent().context("library path has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let partial = library.with_extension("partial");
    std::fs::write(&partial, &bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, library).with_context(|| format!("installing {}", library.display()))?;
    std::fs::write(&stamp, expected).with_context(|| format!("writing {}", stamp.display()))?;
    say(format!("setup: installed LiveKit FFI library {} ({tag}) at {}", pin.version, library.display()));
    Ok(Some(wheel))
}

/// The pinned wheel in the cache, downloaded with pip when missing; always hash-checked.
fn fetch_wheel(layout: &Layout, tag: &str, expected: &str, say: &dyn Fn(String)) -> Result<PathBuf> {
    let pin = &pinned().livekit_ffi;
    let cache = layout.wheel_cache();
    let wheel = cache.join(pin.wheel_file(tag));
    if wheel.is_file() && sha256_file(&wheel)? == expected {
        return Ok(wheel);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    say(format!("setup: downloading {} with pip", pin.wheel_file(tag)));
    let requirement = format!("{}=={}", pin.wheel, pin.version);
    run_command(
        Command::new(python())
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:", "--platform", tag])
            .arg("--dest")
            .arg(&cache)
            .arg(&requirement),
    )
    .with_context(|| format!("pip download {requirement}"))?;
    let actual = sha256_file(&wheel)?;
    if actual != expected {
        let corrupt = wheel.with_extension("mismatch");
        std::fs::rename(&wheel, &corrupt).with_context(|| format!("moving aside {}", wheel.display()))?;
        bail!(
            "{} has sha256 {actual}, but pinned.toml expects {expected}; moved it to {}",
            wheel.display(),
            corrupt.display()
        );
    }
    Ok(wheel)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Debian packages the workspace needs, and why. Checked with dpkg; installed with apt-get
/// only when one is missing.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("libasound2-dev", "cpal's ALSA backend links libasound when the workspace builds"),
    ("libpulse-dev", "the sound device streams link libpulse, the system's PulseAudio client"),
    ("pkg-config", "finds libasound for that build"),
    ("pulseaudio", "the sound server the audio tests run with null sinks"),
    ("pulseaudio-utils", "pactl/parec/paplay, used by the audio tests"),
    ("dbus-daemon", "a private session bus for the keyring tests (profile secrets)"),
    ("dbus-bin", "dbus-send, which checks that the test keyring is up"),
    ("gnome-keyring", "the Secret Service the keyring tests store profile secrets in"),
    ("libwebkit2gtk-4.1-dev", "the desktop app's webview (Tauri 2 on Linux)"),
    ("libayatana-appindicator3-dev", "the desktop app's tray icon"),
    ("librsvg2-dev", "GTK's icon loading for the desktop app"),
    ("libxdo-dev", "the desktop app's native menus (muda)"),
    ("xvfb", "a virtual display the desktop app's tests run on"),
    ("xdotool", "presses the push-to-talk key in the desktop app's tests"),
    ("webkit2gtk-driver", "WebKitWebDriver, which drives the desktop app's webview in its tests"),
    ("gcc-mingw-w64-x86-64", "links the Windows build (parley.exe) and the stand-in DLL Wine lacks"),
    ("wine", "runs the Windows build's tests and parley.exe in a call"),
    ("wine64", "Wine for 64-bit programs"),
    ("clang", "compiles ring's C for the macOS clippy check (gcc has no Apple target)"),
    ("shellcheck", "lints the workflows' shell steps (through actionlint)"),
    ("libpipewire-0.3-dev", "the Wayland screen share reads the ScreenCast portal's PipeWire stream"),
    ("libclang-dev", "bindgen generates the PipeWire bindings from its headers at build time"),
    ("pipewire", "a private PipeWire daemon carrying the Wayland screen-share test's screen-cast stream"),
    ("pipewire-bin", "pw-dump, which checks that the private PipeWire daemon is up"),
    ("wireplumber", "the session manager that links the share's stream to its source"),
    ("chromium", "the browser peer (livekit-client) of the interop tests and the latency bench"),
    ("linux-perf", "`bench app --perf` samples where the app's time goes"),
];

fn install_system_packages(say: &dyn Fn(String)) -> Result<()> {
    if !cfg!(target_os = "linux") || !Path::new("/usr/bin/dpkg-query").exists() {
        say("setup: not a Debian-family system; install libasound2-dev, libpulse-dev and PulseAudio by hand".into());
        return Ok(());
    }
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            let status = Command::new("dpkg-query").args(["-W", "-f=${Status}", name]).output();
            !status.is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        say("setup: system packages present".into());
        return Ok(());
    }
    say(format!("setup: installing {} with apt-get", missing.join(", ")));
    apt_get(&["update", "-qq"]).context("apt-get update (as root, or with passwordless sudo)")?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install).with_context(|| format!("apt-get install {}", missing.join(" ")))
}

/// Runs apt-get with `args`, as root or through passwordless sudo.
pub(crate) fn apt_get<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<()> {
    let root = Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.starts_with(b"0\n"));
    let mut command = if root { Command::new("apt-get") } else { Command::new("sudo") };
    if !root {
        command.args(["-n", "apt-get"]);
    }
    run_command(command.args(args).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The tools setup itself needs.
fn check_tools(say: &dyn Fn(String)) -> Result<()> {
    let pip = Command::new(python()).args(["-m", "pip", "--version"]).output();
    if !pip.is_ok_and(|output| output.status.success()) {
        bail!("setup needs Python 3 with pip (`{} -m pip` failed)", python());
    }
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|output| output.status.success()) {
        bail!("setup needs Go to build the LiveKit server (`go version` failed)");
    }
    say("setup: python3 with pip and go are present".into());
    Ok(())
}

fn python() -> &'static str {
    if Command::new("python3").arg("--version").output().is_ok() { "python3" } else { "python" }
}

fn committed_descriptors() -> PathBuf {
    crate::workspace_root().join("crates/livekit-ffi/proto/livekit_ffi.binpb")
}

fn extract_descriptors(wheel: &Path, out: &Path) -> Result<()> {
    let script = crate::workspace_root().join("crates/xtask/src/extract_descriptors.py");
    run_command(Command::new(python()).arg(&script).arg(wheel).arg(out)).context("extracting protobuf descriptors")
}

/// The committed descriptors must be exactly those of the pinned wheel: the generated Rust types
/// then match the library byte for byte.
fn check_descriptors(wheel: &Path) -> Result<()> {
    let fresh = tempfile::NamedTempFile::new().context("temp file")?;
    extract_descriptors(wheel, fresh.path())?;
    let fresh_bytes = std::fs::read(fresh.path()).context("reading extracted descriptors")?;
    let committed = std::fs::read(committed_descriptors()).context("reading committed descriptors")?;
    if fresh_bytes != committed {
        bail!(
            "{} does not match the pinned wheel; run `cargo xtask gen-proto` and commit the result",
            committed_descriptors().display()
        );
    }
    Ok(())
}

/// `cargo xtask gen-proto`.
pub fn generate_proto() -> Result<()> {
    let layout = Layout::discover();
    let pin = &pinned().livekit_ffi;
    let tag = parley_deps::host_wheel_platform().context("no wheel for this platform")?;
    let expected = pin.wheels.get(tag).with_context(|| format!("pinned.toml has no sha256 for {tag}"))?;
    let wheel = fetch_wheel(&layout, tag, expected, &|line| println!("{line}"))?;
    extract_descriptors(&wheel, &committed_descriptors())?;
    println!("gen-proto: wrote {}", committed_descriptors().display());
    Ok(())
}

/// Builds the pinned LiveKit server with `go install` unless it is already there.
fn install_livekit_server(layout: &Layout, say: &dyn Fn(String)) -> Result<PathBuf> {
    let pin = &pinned().livekit_server;
    let binary = layout.livekit_server();
    if binary.is_file() {
        say(format!("setup: LiveKit server {} present: {}", pin.version, binary.display()));
        return Ok(binary);
    }
    say(format!("setup: building LiveKit server {} with go install (a few minutes the first time)", pin.version));
    go_install(pin, &binary)?;
    say(format!("setup: installed LiveKit server {} at {}", pin.version, binary.display()));
    Ok(binary)
}

/// Builds the pinned Go command `pin` (without cgo) and installs it as `binary`.
pub(crate) fn go_install(pin: &GoPackagePin, binary: &Path) -> Result<()> {
    let staging = tempfile::tempdir().context("temp dir")?;
    run_command(
        Command::new("go")
            .arg("install")
            .arg(format!("{}@{}", pin.package, pin.version))
            .env("GOBIN", staging.path())
            .env("CGO_ENABLED", "0"),
    )
    .with_context(|| format!("go install {}@{} (is Go installed?)", pin.package, pin.version))?;
    let name = pin.package.rsplit('/').next().unwrap_or(&pin.package);
    let built = staging.path().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let parent = binary.parent().context("the install path has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    std::fs::copy(&built, binary).with_context(|| format!("installing {}", binary.display()))?;
    Ok(())
}

/// A virtual environment with LiveKit's Python SDK for the interop tests, reinstalled only when
/// the pinned requirements change. pip reuses the wheel cache, so no wheel is fetched twice.
fn install_python_peer(layout: &Layout, say: &dyn Fn(String)) -> Result<PathBuf> {
    let requirements = &pinned().python_peer.requirements;
    let interpreter = layout.python_peer_interpreter();
    let stamp = layout.python_peer_env().join("parley-requirements.txt");
    let wanted = requirements.join("\n");
    if interpreter.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|recorded| recorded == wanted) {
        say(format!("setup: Python test peer present: {}", interpreter.display()));
        return Ok(interpreter);
    }
    say(format!("setup: creating the Python test peer ({})", requirements.join(" ")));
    let env = layout.python_peer_env();
    if env.exists() {
        std::fs::remove_dir_all(&env).with_context(|| format!("removing the old {}", env.display()))?;
    }
    run_command(Command::new(python()).args(["-m", "venv"]).arg(&env)).context("python3 -m venv")?;
    run_command(
        Command::new(&interpreter)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--find-links"])
            .arg(layout.wheel_cache())
            .args(requirements),
    )
    .context("installing the Python test peer's packages")?;
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    say(format!("setup: installed the Python test peer at {}", interpreter.display()));
    Ok(interpreter)
}

/// The browser peer's npm packages (livekit-client, playwright-core) in `tests/peers/browser`,
/// installed from its lock file when it changed; Chromium itself is a Debian package.
fn install_browser_peer(say: &dyn Fn(String)) -> Result<()> {
    let dir = parley_devserver::browser_peer::peer_dir();
    if crate::app::npm_install(&dir)? {
        say(format!("setup: installed the browser peer's npm packages in {}", dir.display()));
    } else {
        say("setup: browser peer's npm packages present".into());
    }
    Ok(())
}

/// tauri-driver (the WebDriver intermediary of the desktop app's end-to-end tests), installed
/// with `cargo install` into the layout's tools directory unless it is already there. Its output
/// goes to stderr, so that `--print-env` prints only its `KEY=value` lines on stdout.
fn install_tauri_driver(layout: &Layout, say: &dyn Fn(String)) -> Result<PathBuf> {
    let driver = layout.tauri_driver();
    if driver.is_file() {
        say(format!("setup: tauri-driver present: {}", driver.display()));
        return Ok(driver);
    }
    say("setup: installing tauri-driver 2 with cargo install (a minute or two the first time)".into());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_command(
        Command::new(cargo)
            .args(["install", "--locked", "--quiet", "tauri-driver", "--version", "^2", "--root"])
            .arg(layout.tools_dir())
            .stdout(std::io::stderr()),
    )
    .context("cargo install tauri-driver")?;
    if !driver.is_file() {
        bail!("cargo install tauri-driver succeeded but {} is missing", driver.display());
    }
    say(format!("setup: installed tauri-driver at {}", driver.display()));
    Ok(driver)
}

/// LiveKit's `lk` CLI (for `lk load-test`) is not served by the Go module proxy this project can
/// reach (every version answers 403), so it cannot be installed here; the benchmarks start
/// their remote speakers with `parley join --tone` instead.
fn report_lk_cli(say: &dyn Fn(String)) {
    say("setup: lk CLI not installed: the Go module proxy refuses github.com/livekit/livekit-cli (403); benchmarks use parley peers".into());
}

pub(crate) fn run_command(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("starting {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", command.get_program());
    }
    Ok(())
}
