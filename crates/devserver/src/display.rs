//! A private X display and a WebDriver server for the desktop app's tests.
//!
//! [`Xvfb`] runs a virtual X server on a display number it picks itself (`-displayfd`: no race
//! with other tests for a free number), listening on its Unix socket only. [`TauriDriver`] runs
//! `tauri-driver` (installed by `cargo xtask setup` into [`parley_deps::Layout::tauri_driver`],
//! or [`TAURI_DRIVER_ENV`]) on free loopback ports, with `WebKitWebDriver` as its native driver
//! and an environment of the caller's choosing: the app a session starts inherits it (display,
//! session bus, sound server, config directory). Both are killed on drop.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::webdriver::WebDriver;

/// Overrides where `tauri-driver` is found.
pub const TAURI_DRIVER_ENV: &str = "PARLEY_TAURI_DRIVER";

/// How long the X server and tauri-driver may take to come up. A bound, not a measure: on a
/// loaded 2-core machine WebKitWebDriver once took longer than 15 s.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("{tool} is not installed ({hint})")]
    Missing { tool: String, hint: String },
    #[error("cannot prepare files: {0}")]
    Files(std::io::Error),
    #[error("cannot start {tool}: {error}")]
    Spawn { tool: &'static str, error: std::io::Error },
    #[error("Xvfb did not report a display number; its log ends with:\n{log}")]
    NoDisplay { log: String },
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
    #[error("tauri-driver did not answer within {seconds} s; its log ends with:\n{log}")]
    DriverTimeout { seconds: u64, log: String },
}

/// A running `Xvfb`. Killed on drop.
pub struct Xvfb {
    child: Option<Child>,
    number: u32,
    dir: tempfile::TempDir,
}

impl Xvfb {
    /// Starts `Xvfb` with one 1280×800 screen and waits until it reports its display number
    /// (it does so once it accepts clients). Blocking.
    ///
    /// Errors: Xvfb missing (`apt install xvfb`, `cargo xtask setup`), or it failed to start.
    pub fn start() -> Result<Xvfb, DisplayError> {
        Xvfb::start_sized(1280, 800)
    }

    /// [`Xvfb::start`] with a `width` × `height` screen.
    pub fn start_sized(width: u32, height: u32) -> Result<Xvfb, DisplayError> {
        let binary = find_on_path("Xvfb").ok_or_else(|| DisplayError::Missing {
            tool: "Xvfb".into(),
            hint: "Debian package xvfb; run `cargo xtask setup`".into(),
        })?;
        let dir = tempfile::Builder::new().prefix("parley-xvfb-").tempdir().map_err(DisplayError::Files)?;
        let log = std::fs::File::create(dir.path().join("xvfb.log")).map_err(DisplayError::Files)?;
        // `-displayfd 1`: Xvfb picks a free display and writes its number to our pipe when ready.
        let mut child = Command::new(binary)
            .args(["-displayfd", "1", "-screen", "0", &format!("{width}x{height}x24"), "-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|error| DisplayError::Spawn { tool: "Xvfb", error })?;
        let stdout = child.stdout.take();
        let mut xvfb = Xvfb { child: Some(child), number: 0, dir };
        let mut line = String::new();
        // The read ends when Xvfb writes its number or exits; a hung Xvfb is not expected (it
        // either binds a display or fails), so no timeout thread.
        let read = stdout.map(|stdout| BufReader::new(stdout).read_line(&mut line));
        match (read, line.trim().parse::<u32>()) {
            (Some(Ok(_)), Ok(number)) => {
                xvfb.number = number;
                tracing::debug!(display = %xvfb.name(), "Xvfb ready");
                Ok(xvfb)
            }
            _ => Err(DisplayError::NoDisplay { log: tail(&xvfb.dir.path().join("xvfb.log"), 20) }),
        }
    }

    /// The `DISPLAY` value (`:N`).
    pub fn name(&self) -> String {
        format!(":{}", self.number)
    }

    /// What a child process needs to draw on this display.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("DISPLAY".into(), self.name())]
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        stop(self.child.take(), "Xvfb");
    }
}

/// A running `tauri-driver` on free loopback ports. Killed on drop (with the app it started).
pub struct TauriDriver {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TauriDriver {
    /// The tauri-driver binary: [`TAURI_DRIVER_ENV`], else the one setup installed.
    pub fn binary() -> PathBuf {
        std::env::var_os(TAURI_DRIVER_ENV)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| parley_deps::Layout::discover().tauri_driver())
    }

    /// Starts tauri-driver with exactly `env` added to this process's environment, and waits
    /// until it answers. Its output (and the app's, which it passes through) goes to a log file
    /// ([`TauriDriver::log_tail`]).
    ///
    /// Errors: tauri-driver or WebKitWebDriver missing, or tauri-driver not answering.
    pub fn start(env: &[(String, String)]) -> Result<TauriDriver, DisplayError> {
        let binary = TauriDriver::binary();
        if !binary.is_file() {
            return Err(DisplayError::Missing {
                tool: format!("tauri-driver ({})", binary.display()),
                hint: format!("run `cargo xtask setup`, or set {TAURI_DRIVER_ENV}"),
            });
        }
        let native = find_on_path("WebKitWebDriver").ok_or_else(|| DisplayError::Missing {
            tool: "WebKitWebDriver".into(),
            hint: "Debian package webkit2gtk-driver; run `cargo xtask setup`".into(),
        })?;
        let dir = tempfile::Builder::new().prefix("parley-tauri-driver-").tempdir().map_err(DisplayError::Files)?;
        let log = dir.path().join("tauri-driver.log");
        let port = free_port()?;
        let native_port = free_port()?;
        let out = std::fs::File::create(&log).map_err(DisplayError::Files)?;
        let err = out.try_clone().map_err(DisplayError::Files)?;
        let mut command = Command::new(&binary);
        // Its own process group: WebKitWebDriver and the app run under it, and dropping the
        // driver must stop them too (killing tauri-driver alone would leave them running).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .args(["--port", &port.to_string(), "--native-port", &native_port.to_string()])
            .args(["--native-host", "127.0.0.1"])
            .arg("--native-driver")
            .arg(&native)
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|error| DisplayError::Spawn { tool: "tauri-driver", error })?;
        let mut driver = TauriDriver { child: Some(child), port, log, _dir: dir };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let webdriver = driver.webdriver();
        loop {
            if webdriver.get("/status").is_ok() {
                return Ok(driver);
            }
            let exited = driver.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                return Err(DisplayError::DriverTimeout {
                    seconds: STARTUP_TIMEOUT.as_secs(),
                    log: driver.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client for this driver.
    pub fn webdriver(&self) -> WebDriver {
        WebDriver::new(self.port)
    }

    /// The last `lines` lines of what tauri-driver, WebKitWebDriver and the app printed.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The whole log file's path (kept until the driver is dropped).
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for TauriDriver {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(child) = &self.child {
            // The group's id is tauri-driver's pid (process_group(0) above); `kill` rather than a
            // libc call: unsafe code lives only in the FFI crate.
            let group = format!("-{}", child.id());
            match Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status() {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::debug!(%status, "the tauri-driver process group was already gone"),
                Err(error) => tracing::warn!(%error, "could not stop the tauri-driver process group"),
            }
        }
        stop(self.child.take(), "tauri-driver");
    }
}

fn stop(child: Option<Child>, name: &str) {
    let Some(mut child) = child else { return };
    if let Err(error) = child.kill() {
        tracing::debug!(%error, name, "already gone");
    }
    if let Err(error) = child.wait() {
        tracing::warn!(%error, name, "could not reap");
    }
}

fn free_port() -> Result<u16, DisplayError> {
    crate::free_tcp_port().map_err(|error| match error {
        crate::DevServerError::NoPort(error) => DisplayError::NoPort(error),
        other => DisplayError::NoPort(std::io::Error::other(other.to_string())),
    })
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|candidate| candidate.is_file())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
