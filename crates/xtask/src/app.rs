//! `cargo xtask app`: builds the desktop app — the web front end (`ui/`, npm) and then the Tauri
//! shell (`src-tauri/`, which embeds `ui/dist`) — and, with `smoke`, starts it through WebDriver
//! (tauri-driver + WebKitWebDriver) and saves a screenshot.
//!
//! The smoke run starts its own virtual display ([`parley_devserver::display`]) but needs a
//! session bus: run it as `dbus-run-session -- cargo xtask app --smoke` (ENVIRONMENT.md, Tauri v2).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parley_devserver::display::{TauriDriver, Xvfb};
use parley_devserver::webdriver::Session;

/// Where smoke screenshots go, under the target directory.
const ARTIFACTS: &str = "app-smoke";

/// Builds the UI and the app; with `smoke`, runs the WebDriver smoke test. Returns the binary.
pub fn run(release: bool, smoke: bool) -> Result<PathBuf> {
    let root = crate::workspace_root();
    let started = Instant::now();
    build_ui(&root.join("ui"), &|line| println!("{line}"))?;
    let ui_seconds = started.elapsed().as_secs_f64();
    let mut args = vec!["build", "--package", "parley-app"];
    if release {
        args.push("--release");
    }
    crate::cargo(&args).context("building the app")?;
    let binary = target_dir(&root).join(if release { "release" } else { "debug" }).join(exe("parley-app"));
    if !binary.is_file() {
        bail!("built parley-app but cannot find it at {}", binary.display());
    }
    println!("app: built {} (ui {ui_seconds:.1} s, total {:.1} s)", binary.display(), started.elapsed().as_secs_f64());
    if smoke {
        smoke_test(&binary, &target_dir(&root).join(ARTIFACTS))?;
    }
    Ok(binary)
}

pub(crate) fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// `npm ci` when the dependencies are missing or older than the lock file, then `npm run build`
/// (the app embeds `ui/dist`, so it must exist before the workspace compiles).
pub fn build_ui(ui: &Path, say: &dyn Fn(String)) -> Result<()> {
    if npm_install(ui)? {
        say("setup: installed the UI's npm packages (npm ci)".into());
    }
    npm(ui, &["run", "--silent", "build"])?;
    say("setup: built the UI into ui/dist".into());
    Ok(())
}

/// `npm ci` in `dir` unless its `node_modules` was installed from the current lock file.
/// Returns whether it installed.
pub fn npm_install(dir: &Path) -> Result<bool> {
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    if modified(&installed).is_some() && modified(&installed) >= modified(&lock) {
        return Ok(false);
    }
    npm(dir, &["ci", "--no-audit", "--no-fund"])?;
    Ok(true)
}

/// Runs npm in `dir`; its output goes to stderr, so that `setup --print-env` prints only its
/// `KEY=value` lines on stdout.
pub fn npm(dir: &Path, args: &[&str]) -> Result<()> {
    // On Windows npm is a script, `npm.cmd`, which Command finds only by its full name.
    let status = Command::new(if cfg!(windows) { "npm.cmd" } else { "npm" })
        .args(args)
        .stdout(std::io::stderr())
        .current_dir(dir)
        .status()
        .with_context(|| format!("running npm {} (is Node.js installed?)", args.join(" ")))?;
    if !status.success() {
        bail!("npm {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Starts a private X display and tauri-driver, opens a W3C session on the app, waits for the
/// page to render, saves a screenshot and ends the session.
fn smoke_test(binary: &Path, artifacts: &Path) -> Result<()> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        bail!("no session bus: run `dbus-run-session -- cargo xtask app --smoke`");
    }
    let display = Xvfb::start().context("starting a virtual display")?;
    let driver = TauriDriver::start(&display.env()).context("starting tauri-driver")?;
    let started = Instant::now();
    let session = driver
        .webdriver()
        .new_session(serde_json::json!({ "tauri:options": { "application": binary } }))
        .with_context(|| format!("starting the app through WebDriver; the log ends with:\n{}", driver.log_tail(20)))?;
    println!("app: session {} started in {:.2} s", session.id(), started.elapsed().as_secs_f64());
    let result = inspect(&session, artifacts);
    if let Err(error) = session.end() {
        eprintln!("app: warning: ending the WebDriver session failed: {error}");
    }
    result
}

fn inspect(session: &Session, artifacts: &Path) -> Result<()> {
    let text_length = session.wait_for(
        "const length = document.body ? document.body.innerText.length : 0; return length > 0 ? length : null;",
        Vec::new(),
        Duration::from_secs(15),
    )?;
    let text_length = text_length.as_u64().unwrap_or(0);
    let title = session.title()?;
    let path = artifacts.join("main.png");
    let bytes = session.save_screenshot(&path)?;
    println!(
        "app: window title {title:?}, {text_length} characters of text, screenshot {} ({bytes} bytes)",
        path.display()
    );
    if text_length == 0 {
        bail!("the window showed no text within 15 s (screenshot: {})", path.display());
    }
    Ok(())
}
