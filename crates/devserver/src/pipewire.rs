//! A private PipeWire for the Wayland screen-share tests: its own daemon and session manager in
//! a temporary runtime directory, and pictures fed into it as a desktop's screen-cast stream.
//!
//! [`PipeWire::start`] runs `pipewire` with a minimal configuration of its own (the native
//! protocol, client nodes, a dummy driver; no D-Bus, realtime kit, ALSA or Bluetooth) and
//! `wireplumber` with only its stream-linking policy (a desktop's session manager is what links
//! a portal client's stream to the granted node; without one a stream never starts), both with
//! `XDG_RUNTIME_DIR` in the temporary directory, so nothing of the machine's own audio or
//! video is touched. A test runs its screen-cast stream's producer with [`PipeWire::env`] and
//! [`PipeWire::wait_for_video_source`] finds its node. Dropping it stops both daemons. Linux
//! only (the Debian packages come from `cargo xtask setup`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the daemons and a feed may take to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum PipeWireError {
    #[error("{tool} is not installed ({package}); run `cargo xtask setup`")]
    Missing { tool: &'static str, package: &'static str },
    #[error("cannot prepare PipeWire's files: {0}")]
    Files(std::io::Error),
    #[error("cannot start {tool}: {error}")]
    Spawn { tool: &'static str, error: std::io::Error },
    #[error("{what} did not come up within {seconds} s; its log ends with:\n{log}")]
    Timeout { what: String, seconds: u64, log: String },
}

/// The daemon's configuration: only what video streams between clients need.
const DAEMON_CONFIG: &str = r#"
context.properties = {
    core.daemon = true
    core.name = pipewire-0
    support.dbus = false
    log.level = 2
}
context.spa-libs = {
    support.* = support/libspa-support
}
context.modules = [
    { name = libpipewire-module-protocol-native }
    { name = libpipewire-module-metadata }
    { name = libpipewire-module-spa-node-factory }
    { name = libpipewire-module-client-node }
    { name = libpipewire-module-client-device }
    { name = libpipewire-module-access }
    { name = libpipewire-module-adapter }
    { name = libpipewire-module-link-factory }
    { name = libpipewire-module-session-manager }
]
context.objects = [
    { factory = spa-node-factory
        args = {
            factory.name = support.node.driver
            node.name = Dummy-Driver
            node.group = pipewire.dummy
            priority.driver = 20000
        }
    }
]
"#;

/// WirePlumber 0.4 with only the linking policy: no D-Bus, ALSA, Bluetooth, cameras or logind.
const SESSION_MANAGER_CONFIG: &str = r#"
context.properties = {
    log.level = 2
    wireplumber.script-engine = lua-scripting
    support.dbus = false
}
context.spa-libs = {
    support.* = support/libspa-support
}
context.modules = [
    { name = libpipewire-module-protocol-native }
    { name = libpipewire-module-client-node }
    { name = libpipewire-module-client-device }
    { name = libpipewire-module-adapter }
    { name = libpipewire-module-metadata }
    { name = libpipewire-module-session-manager }
]
wireplumber.components = [
    { name = libwireplumber-module-lua-scripting, type = module }
    { name = libwireplumber-module-metadata, type = module }
    { name = libwireplumber-module-default-nodes-api, type = module }
    { name = libwireplumber-module-si-node, type = module }
    { name = libwireplumber-module-si-audio-adapter, type = module }
    { name = libwireplumber-module-si-standard-link, type = module }
    { name = libwireplumber-module-si-audio-endpoint, type = module }
    { name = create-item.lua, type = script/lua }
    { name = policy-node.lua, type = script/lua }
]
"#;

/// A running private PipeWire. Stopped on drop.
pub struct PipeWire {
    dir: tempfile::TempDir,
    /// The session manager, then the daemon: stopped in that order.
    children: Vec<Child>,
}

impl PipeWire {
    /// Starts the daemon and the session manager and waits until both are connected. Blocking.
    pub fn start() -> Result<PipeWire, PipeWireError> {
        let daemon = find("pipewire", "pipewire-bin")?;
        let session_manager = find("wireplumber", "wireplumber")?;
        find("pw-dump", "pipewire-bin")?;
        let dir = tempfile::Builder::new().prefix("parley-pipewire-").tempdir().map_err(PipeWireError::Files)?;
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).map_err(PipeWireError::Files)?;
        for (name, text) in [("pipewire.conf", DAEMON_CONFIG), ("wireplumber.conf", SESSION_MANAGER_CONFIG)] {
            std::fs::write(dir.path().join(name), text).map_err(PipeWireError::Files)?;
        }
        let mut pipewire = PipeWire { dir, children: Vec::new() };
        let config = pipewire.dir.path().join("pipewire.conf");
        pipewire.spawn("pipewire", &daemon, &["-c".as_ref(), config.as_os_str()], "pipewire.log")?;
        let socket = pipewire.socket();
        pipewire.wait("the PipeWire daemon", "pipewire.log", || socket.exists())?;
        let config = pipewire.dir.path().join("wireplumber.conf");
        pipewire.spawn("wireplumber", &session_manager, &["-c".as_ref(), config.as_os_str()], "wireplumber.log")?;
        let runtime = pipewire.runtime();
        pipewire.wait("WirePlumber", "wireplumber.log", || {
            clients(&runtime).iter().any(|name| name.contains("WirePlumber"))
        })?;
        Ok(pipewire)
    }

    /// The daemon's socket, which a portal hands to apps as their PipeWire remote.
    pub fn socket(&self) -> PathBuf {
        self.runtime().join("pipewire-0")
    }

    /// The environment a client of this daemon runs with (a stream's producer, such as
    /// `parley-screencast-feed`).
    pub fn env(&self) -> Vec<(String, String)> {
        let runtime = self.runtime().to_string_lossy().into_owned();
        vec![("XDG_RUNTIME_DIR".into(), runtime.clone()), ("PIPEWIRE_RUNTIME_DIR".into(), runtime)]
    }

    /// The id of the `Video/Source` node called `name`, once it exists (a feed started with
    /// [`PipeWire::env`]); a timeout says what the daemon logged.
    pub fn wait_for_video_source(&mut self, name: &str) -> Result<u32, PipeWireError> {
        let runtime = self.runtime();
        let mut node = None;
        self.wait(&format!("the video source {name}"), "pipewire.log", || {
            node = video_source(&runtime, name);
            node.is_some()
        })?;
        Ok(node.unwrap_or_default())
    }

    fn runtime(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    fn command(&self, program: &Path, arguments: &[&OsStr], log: &str) -> Result<Command, PipeWireError> {
        let log = std::fs::File::create(self.dir.path().join(log)).map_err(PipeWireError::Files)?;
        let err = log.try_clone().map_err(PipeWireError::Files)?;
        let mut command = Command::new(program);
        command
            .args(arguments)
            .env("XDG_RUNTIME_DIR", self.dir.path().join("runtime"))
            .env("PIPEWIRE_RUNTIME_DIR", self.dir.path().join("runtime"))
            .env_remove("PIPEWIRE_REMOTE")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        Ok(command)
    }

    fn spawn(
        &mut self,
        tool: &'static str,
        program: &Path,
        arguments: &[&OsStr],
        log: &str,
    ) -> Result<(), PipeWireError> {
        let child =
            self.command(program, arguments, log)?.spawn().map_err(|error| PipeWireError::Spawn { tool, error })?;
        self.children.insert(0, child);
        Ok(())
    }

    fn wait(&mut self, what: &str, log: &str, mut ready: impl FnMut() -> bool) -> Result<(), PipeWireError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            let exited = self.children.first_mut().is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                return Err(PipeWireError::Timeout { what: what.into(), seconds: STARTUP_TIMEOUT.as_secs(), log });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The objects `pw-dump` lists for the daemon in `runtime` (empty when it fails).
fn objects(runtime: &Path) -> Vec<serde_json::Value> {
    let dump = Command::new("pw-dump")
        .env("XDG_RUNTIME_DIR", runtime)
        .env("PIPEWIRE_RUNTIME_DIR", runtime)
        .env_remove("PIPEWIRE_REMOTE")
        .stderr(Stdio::null())
        .output();
    let Ok(output) = dump else { return Vec::new() };
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default()
}

fn props(object: &serde_json::Value) -> &serde_json::Value {
    &object["info"]["props"]
}

/// The names of the connected clients.
fn clients(runtime: &Path) -> Vec<String> {
    objects(runtime)
        .iter()
        .filter(|object| object["type"] == "PipeWire:Interface:Client")
        .filter_map(|object| props(object)["application.name"].as_str().map(str::to_string))
        .collect()
}

/// The id of the `Video/Source` node called `name`.
fn video_source(runtime: &Path, name: &str) -> Option<u32> {
    objects(runtime)
        .iter()
        .find(|object| {
            object["type"] == "PipeWire:Interface:Node"
                && props(object)["node.name"] == name
                && props(object)["media.class"] == "Video/Source"
        })
        .and_then(|object| object["id"].as_u64())
        .and_then(|id| u32::try_from(id).ok())
}

fn find(tool: &'static str, package: &'static str) -> Result<PathBuf, PipeWireError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or(PipeWireError::Missing { tool, package })
}

impl Drop for PipeWire {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
