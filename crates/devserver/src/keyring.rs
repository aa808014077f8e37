//! A private OS keyring for tests: its own D-Bus session bus and an unlocked GNOME Keyring
//! (a Secret Service, what the `keyring` crate talks to on Linux) on it, with every file in a
//! temporary directory, so that tests never touch the user's keyring or session bus.
//!
//! [`TestKeyring::start`] runs `dbus-daemon --nofork --print-address` with a config of its own
//! (a socket in the temporary directory, no service activation: nothing else can start on it)
//! and `gnome-keyring-daemon --foreground --unlock --components=secrets` fed a password on
//! stdin, with `HOME` and the XDG directories pointing into the temporary directory. It waits
//! until `org.freedesktop.secrets` is owned. [`TestKeyring::env`] gives what a child process
//! needs to use it. Dropping it kills both daemons. Linux only (the packages come from
//! `cargo xtask setup`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password the test keyring is created and unlocked with.
const PASSWORD: &str = "parley-test-keyring";

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{tool} is not installed ({package}); run `cargo xtask setup`")]
    Missing { tool: &'static str, package: &'static str },
    #[error("cannot prepare the keyring's files: {0}")]
    Files(std::io::Error),
    #[error("cannot start {tool}: {error}")]
    Spawn { tool: &'static str, error: std::io::Error },
    #[error("dbus-daemon did not print its address; its log ends with:\n{log}")]
    NoAddress { log: String },
    #[error("gnome-keyring-daemon did not offer the Secret Service within {seconds} s; its log ends with:\n{log}")]
    Timeout { seconds: u64, log: String },
}

/// A running private bus and keyring. Stopped on drop.
pub struct TestKeyring {
    address: String,
    bus: Option<Child>,
    daemon: Option<Child>,
    dir: tempfile::TempDir,
}

impl TestKeyring {
    /// Starts the bus and the keyring and waits until the keyring answers. Blocking.
    pub fn start() -> Result<TestKeyring, KeyringError> {
        let dbus = find("dbus-daemon", "dbus-daemon")?;
        let keyring = find("gnome-keyring-daemon", "gnome-keyring")?;
        find("dbus-send", "dbus-bin")?;
        let dir = tempfile::Builder::new().prefix("parley-keyring-").tempdir().map_err(KeyringError::Files)?;
        for sub in ["data", "config", "cache", "runtime"] {
            create_private(&dir.path().join(sub))?;
        }
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&dir.path().join("bus"))).map_err(KeyringError::Files)?;
        let bus_log = std::fs::File::create(dir.path().join("bus.log")).map_err(KeyringError::Files)?;
        let mut bus = Command::new(dbus)
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(bus_log)
            .spawn()
            .map_err(|error| KeyringError::Spawn { tool: "dbus-daemon", error })?;
        let mut line = String::new();
        let read = bus.stdout.take().map(|stdout| BufReader::new(stdout).read_line(&mut line));
        let address = line.trim().to_string();
        let mut keyring_fixture = TestKeyring { address, bus: Some(bus), daemon: None, dir };
        if !matches!(read, Some(Ok(_))) || keyring_fixture.address.is_empty() {
            return Err(KeyringError::NoAddress { log: keyring_fixture.log("bus.log") });
        }
        let daemon_log =
            std::fs::File::create(keyring_fixture.dir.path().join("keyring.log")).map_err(KeyringError::Files)?;
        let daemon_err = daemon_log.try_clone().map_err(KeyringError::Files)?;
        let root = keyring_fixture.dir.path().to_path_buf();
        let mut daemon = Command::new(keyring)
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &keyring_fixture.address)
            .env("HOME", &root)
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_CACHE_HOME", root.join("cache"))
            .env("XDG_RUNTIME_DIR", root.join("runtime"))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::piped())
            .stdout(daemon_log)
            .stderr(daemon_err)
            .spawn()
            .map_err(|error| KeyringError::Spawn { tool: "gnome-keyring-daemon", error })?;
        // The daemon reads the unlock password until end of input: write it and close stdin.
        if let Some(mut stdin) = daemon.stdin.take()
            && let Err(error) = stdin.write_all(PASSWORD.as_bytes())
        {
            tracing::warn!(%error, "could not give gnome-keyring-daemon its password");
        }
        keyring_fixture.daemon = Some(daemon);
        keyring_fixture.wait_ready(Duration::from_secs(10))?;
        Ok(keyring_fixture)
    }

    /// The private bus's address.
    pub fn bus_address(&self) -> &str {
        &self.address
    }

    /// The environment a child process needs to use this keyring (and not the user's).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone())]
    }

    /// The directory that holds the keyring's files (`data/keyrings/*.keyring`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), KeyringError> {
        let deadline = Instant::now() + timeout;
        loop {
            let probe = Command::new("dbus-send")
                .arg(format!("--bus={}", self.address))
                .args([
                    "--dest=org.freedesktop.DBus",
                    "--print-reply",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output();
            if let Ok(output) = probe
                && String::from_utf8_lossy(&output.stdout).contains("boolean true")
            {
                return Ok(());
            }
            let exited = self.daemon.as_mut().is_some_and(|daemon| matches!(daemon.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                return Err(KeyringError::Timeout { seconds: timeout.as_secs(), log: self.log("keyring.log") });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for TestKeyring {
    fn drop(&mut self) {
        for mut child in [self.daemon.take(), self.bus.take()].into_iter().flatten() {
            if let Err(error) = child.kill() {
                tracing::debug!(%error, "a keyring daemon was already gone");
            }
            if let Err(error) = child.wait() {
                tracing::warn!(%error, "could not reap a keyring daemon");
            }
        }
    }
}

/// A session bus that only listens on `socket` and starts no services.
fn bus_config(socket: &Path) -> String {
    format!(
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n \
         \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
         <busconfig>\n  \
           <type>session</type>\n  \
           <listen>unix:path={}</listen>\n  \
           <auth>EXTERNAL</auth>\n  \
           <policy context=\"default\">\n    \
             <allow send_destination=\"*\" eavesdrop=\"true\"/>\n    \
             <allow eavesdrop=\"true\"/>\n    \
             <allow own=\"*\"/>\n  \
           </policy>\n\
         </busconfig>\n",
        socket.display()
    )
}

fn find(tool: &'static str, package: &'static str) -> Result<PathBuf, KeyringError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or(KeyringError::Missing { tool, package })
}

fn create_private(dir: &Path) -> Result<(), KeyringError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(KeyringError::Files)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(KeyringError::Files)
    }
}
