//! A private PulseAudio daemon with null sinks: real sound devices for the audio tests.
//!
//! The daemon runs with its own runtime directory and socket, so it neither needs nor touches
//! a desktop session; clients reach it through `PULSE_SERVER` (see [`PulseServer::env`]). A
//! null sink plays into nothing but has a `.monitor` source: a test plays a tone into one sink
//! (a client's "microphone" is that sink's monitor) and records another sink's monitor (what a
//! client played to its "speakers").

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DevServerError;

/// A null sink to create at start.
#[derive(Debug, Clone)]
pub struct NullSink {
    pub name: String,
    pub channels: u16,
}

impl NullSink {
    pub fn new(name: &str, channels: u16) -> NullSink {
        NullSink { name: name.to_string(), channels }
    }
}

/// A running PulseAudio daemon. Stopped on drop.
pub struct PulseServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PulseServer {
    /// Starts `pulseaudio` with `sinks` (48 kHz) and waits until `pactl` reaches it. The first
    /// sink is the default sink and its monitor the default source.
    pub fn start(sinks: &[NullSink]) -> Result<PulseServer, DevServerError> {
        let dir = tempfile::Builder::new().prefix("parley-pulse-").tempdir().map_err(DevServerError::Files)?;
        let runtime = dir.path().join("runtime");
        std::fs::create_dir_all(&runtime).map_err(DevServerError::Files)?;
        let socket = dir.path().join("native");
        let mut script =
            format!("load-module module-native-protocol-unix socket={} auth-anonymous=1\n", socket.display());
        for sink in sinks {
            script.push_str(&format!(
                "load-module module-null-sink sink_name={0} rate=48000 channels={1} sink_properties=device.description={0}\n",
                sink.name, sink.channels
            ));
        }
        if let Some(first) = sinks.first() {
            script.push_str(&format!("set-default-sink {0}\nset-default-source {0}.monitor\n", first.name));
        }
        let script_path = dir.path().join("default.pa");
        std::fs::write(&script_path, script).map_err(DevServerError::Files)?;
        let log = std::fs::File::create(dir.path().join("pulseaudio.log")).map_err(DevServerError::Files)?;
        let child = Command::new("pulseaudio")
            .args(["--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no", "--log-target=stderr"])
            .arg("-F")
            .arg(&script_path)
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| DevServerError::Spawn { binary: PathBuf::from("pulseaudio"), error })?;
        let mut server = PulseServer { child: Some(child), dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.pactl(&["info"]).is_ok() {
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(DevServerError::Exited { status: status.to_string(), log: server.log() });
            }
            if Instant::now() > deadline {
                return Err(DevServerError::Timeout { url: server.address(), seconds: 10, log: server.log() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `PULSE_SERVER` value that reaches this daemon.
    pub fn address(&self) -> String {
        format!("unix:{}", self.dir.path().join("native").display())
    }

    /// Environment variables a client process needs to use this daemon.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("PULSE_SERVER".into(), self.address())]
    }

    /// Runs `pactl` against this daemon and returns its output.
    pub fn pactl(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("pactl")
            .args(args)
            .env("PULSE_SERVER", self.address())
            .output()
            .map_err(|error| format!("pactl: {error}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The index of the null-sink module named `sink`, for unloading it (a device vanishing).
    pub fn sink_module(&self, sink: &str) -> Option<u32> {
        let modules = self.pactl(&["list", "short", "modules"]).ok()?;
        modules
            .lines()
            .find(|line| line.contains("module-null-sink") && line.contains(&format!("sink_name={sink} ")))
            .and_then(|line| line.split_whitespace().next()?.parse().ok())
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pulseaudio.log")).unwrap_or_default()
    }
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                tracing::debug!(%error, "pulseaudio already gone");
            }
            if let Err(error) = child.wait() {
                tracing::debug!(%error, "could not reap pulseaudio");
            }
        }
    }
}
