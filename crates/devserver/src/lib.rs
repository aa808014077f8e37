//! Local servers for the demo, the tests and the benchmarks: a LiveKit server on loopback
//! ([`DevServer`]), a private PulseAudio daemon with null sinks ([`pulse::PulseServer`]), a
//! private keyring on a private D-Bus session bus ([`keyring::TestKeyring`]), and for the desktop
//! app a virtual X display and tauri-driver ([`display::Xvfb`], [`display::TauriDriver`]) with a
//! small blocking WebDriver client ([`webdriver::WebDriver`]), and a Wine prefix that runs
//! Parley's Windows build ([`wine::WinePrefix`]).
//!
//! [`DevServer::start`] runs the pinned `livekit-server` binary (installed by `cargo xtask
//! setup`, found through [`parley_deps::Layout`]) with freshly generated keys, on free ports of
//! 127.0.0.1 only, and waits until it answers. Nothing it does reaches beyond this machine:
//! `use_external_ip: false`, `node_ip: 127.0.0.1`, and a STUN entry on a closed loopback port
//! so that neither the server nor its clients fall back to public STUN servers (the server
//! hands clients Google's STUN servers when none are configured). Dropping the [`DevServer`]
//! stops the process.

pub mod browser;
pub mod browser_peer;
pub mod display;
pub mod keyring;
pub mod pipewire;
pub mod pulse;
pub mod webdriver;
pub mod wine;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct DevServerConfig {
    /// Signalling/HTTP port; `None` picks a free one.
    pub port: Option<u16>,
    /// The server binary; `None` uses the pinned one from setup.
    pub binary: Option<PathBuf>,
    /// Server log level (`debug`, `info`, `warn`, `error`).
    pub log_level: String,
    /// How long to wait for the server to answer.
    pub startup_timeout: Duration,
}

impl Default for DevServerConfig {
    fn default() -> DevServerConfig {
        DevServerConfig { port: None, binary: None, log_level: "info".into(), startup_timeout: Duration::from_secs(20) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevServerError {
    #[error("LiveKit server binary not found at {0}; run `cargo xtask setup`")]
    MissingBinary(PathBuf),
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
    #[error("cannot prepare the server's files: {0}")]
    Files(std::io::Error),
    #[error("cannot generate keys: {0}")]
    Random(String),
    #[error("cannot start {binary}: {error}")]
    Spawn { binary: PathBuf, error: std::io::Error },
    #[error("the LiveKit server exited during startup ({status}); its log ends with:\n{log}")]
    Exited { status: String, log: String },
    #[error("the LiveKit server did not answer on {url} within {seconds} s; its log ends with:\n{log}")]
    Timeout { url: String, seconds: u64, log: String },
}

/// A running server. Stopped on drop.
pub struct DevServer {
    child: Option<Child>,
    port: u16,
    api_key: String,
    api_secret: String,
    dir: tempfile::TempDir,
    binary: PathBuf,
    config_path: PathBuf,
}

impl DevServer {
    /// Starts the server and waits until it answers HTTP. Blocking; call from any thread.
    pub fn start(config: &DevServerConfig) -> Result<DevServer, DevServerError> {
        // Free ports are found by binding and releasing them, so another process (a parallel
        // test) can take one before the server binds it; such a start is retried on new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match DevServer::start_once(config) {
                Err(DevServerError::Exited { log, .. }) if attempt < 4 && log.contains("address already in use") => {
                    tracing::debug!("a port was taken before the LiveKit server bound it; retrying");
                }
                result => return result,
            }
        }
    }

    fn start_once(config: &DevServerConfig) -> Result<DevServer, DevServerError> {
        let binary = config.binary.clone().unwrap_or_else(|| parley_deps::Layout::discover().livekit_server());
        if !binary.is_file() {
            return Err(DevServerError::MissingBinary(binary));
        }
        let port = match config.port {
            Some(port) => port,
            None => free_tcp_port()?,
        };
        let tcp_port = free_tcp_port()?;
        let udp_port = free_udp_port()?;
        let stun_port = free_udp_port()?;
        let api_key = format!("API{}", random_hex(6)?);
        let api_secret = random_hex(24)?;
        let dir = tempfile::Builder::new().prefix("parley-livekit-").tempdir().map_err(DevServerError::Files)?;
        let config_path = dir.path().join("livekit.yaml");
        let yaml = format!(
            "port: {port}\n\
             bind_addresses: [\"127.0.0.1\"]\n\
             rtc:\n  \
               tcp_port: {tcp_port}\n  \
               udp_port: {udp_port}\n  \
               use_external_ip: false\n  \
               node_ip: 127.0.0.1\n  \
               enable_loopback_candidate: true\n  \
               stun_servers: [\"127.0.0.1:{stun_port}\"]\n\
             room:\n  \
               enable_remote_unmute: true\n  \
               empty_timeout: 300\n\
             keys:\n  \
               {api_key}: {api_secret}\n\
             logging:\n  \
               level: {level}\n",
            level = config.log_level,
        );
        std::fs::write(&config_path, yaml).map_err(DevServerError::Files)?;
        let mut server = DevServer { child: None, port, api_key, api_secret, dir, binary, config_path };
        server.spawn()?;
        server.wait_ready(config.startup_timeout)?;
        tracing::info!(url = %server.url(), "LiveKit dev server ready");
        Ok(server)
    }

    /// Starts the server process on this server's config file, logging to `livekit.log`
    /// (appended: a restart keeps the earlier log).
    fn spawn(&mut self) -> Result<(), DevServerError> {
        let log_path = self.dir.path().join("livekit.log");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(DevServerError::Files)?;
        let log_err = log.try_clone().map_err(DevServerError::Files)?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--node-ip")
            .arg("127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|error| DevServerError::Spawn { binary: self.binary.clone(), error })?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the server again after [`DevServer::stop`], on the same ports and keys (a server
    /// restart as clients see it: the same URL answers again, with every room gone). Blocking.
    ///
    /// Errors: as [`DevServer::start`].
    pub fn restart(&mut self) -> Result<(), DevServerError> {
        self.stop();
        self.spawn()?;
        self.wait_ready(DevServerConfig::default().startup_timeout)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), DevServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(DevServerError::Exited { status: status.to_string(), log: self.log_tail(40) });
            }
            if http_ok(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DevServerError::Timeout {
                    url: self.url(),
                    seconds: timeout.as_secs(),
                    log: self.log_tail(40),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The signalling URL clients join with.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The HTTP base URL (RoomService).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The API secret. Treat it as a secret: never log it.
    pub fn api_secret(&self) -> &str {
        &self.api_secret
    }

    /// The server's log file (kept until the server is dropped).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("livekit.log")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// The process id, for measurements.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server: a polite signal first where the platform has one, then a kill.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        terminate(&child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(error) = child.kill() {
            tracing::warn!(%error, "could not kill the LiveKit server");
        }
        if let Err(error) = child.wait() {
            tracing::warn!(%error, "could not reap the LiveKit server");
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(unix)]
fn terminate(child: &Child) {
    // `kill -TERM` rather than a libc call: unsafe code lives only in the FFI crate.
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    if let Err(error) = status {
        tracing::debug!(%error, "kill -TERM failed; will kill hard");
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {}

fn http_ok(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else { return false };
    if stream.set_read_timeout(Some(Duration::from_millis(500))).is_err() {
        return false;
    }
    if stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut response = [0u8; 16];
    matches!(stream.read(&mut response), Ok(n) if n >= 12 && response.starts_with(b"HTTP/1.") && &response[9..12] == b"200")
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_tcp_port() -> Result<u16, DevServerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(DevServerError::NoPort)?;
    listener.local_addr().map(|address| address.port()).map_err(DevServerError::NoPort)
}

fn free_udp_port() -> Result<u16, DevServerError> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(DevServerError::NoPort)?;
    socket.local_addr().map(|address| address.port()).map_err(DevServerError::NoPort)
}

fn random_hex(bytes: usize) -> Result<String, DevServerError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|error| DevServerError::Random(error.to_string()))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
