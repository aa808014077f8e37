//! The browser peer: Debian's Chromium running LiveKit's JS SDK (`livekit-client`), driven by
//! `tests/peers/browser/peer.mjs` through playwright-core. It is what most people use instead of
//! Parley (a browser tab or an Electron app), so the interop tests and `bench audio` run it beside
//! `parley` on the same server and the same PulseAudio.
//!
//! `cargo xtask setup` installs Chromium (apt) and the npm packages; a missing part is an error
//! that says so, never a skipped test.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where Chromium is unless `PARLEY_CHROMIUM` says otherwise (Debian's `chromium` package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The peer's directory in the source tree (`tests/peers/browser`).
pub fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/browser")
}

/// What the browser peer does in the room.
#[derive(Debug, Clone, Default)]
pub struct BrowserPeerOptions {
    pub url: String,
    pub token: String,
    /// Publish a −12 dBFS sine of this frequency (WebAudio), not a microphone.
    pub tone: Option<f64>,
    /// Publish the microphone whose PulseAudio description is this (e.g. a remap source made
    /// with `source_properties=device.description=NAME`). Chromium's own "default" microphone
    /// is the server's configured default source, whatever `PULSE_SOURCE` says, so the rig
    /// always names one.
    pub microphone: Option<String>,
    /// Report the level of this frequency in what each remote voice sends.
    pub listen: Option<f64>,
    /// End-to-end encryption with this shared passphrase (PBKDF2, as Parley's `--e2ee-key`).
    pub e2ee_key: Option<String>,
    /// Chromium's echo cancellation, noise suppression and gain control on the microphone (what a
    /// browser does by default); off, the microphone is passed as it is.
    pub processing: bool,
    /// How long to stay in the room.
    pub seconds: f64,
}

/// A running browser peer whose JSON events are collected as they arrive.
pub struct BrowserPeer {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished browser peer reported.
#[derive(Debug)]
pub struct BrowserFinished {
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl BrowserFinished {
    /// The last `heard` report about `identity`.
    pub fn last_heard(&self, identity: &str) -> Option<&Value> {
        self.events.iter().rev().find(|event| event["event"] == "heard" && event["identity"] == identity)
    }
}

impl BrowserPeer {
    /// Starts the peer with `env` (it needs `DISPLAY`, and `PULSE_SERVER` for its sound; its
    /// playback follows `PULSE_SINK`).
    pub fn start(options: &BrowserPeerOptions, env: &[(String, String)]) -> Result<BrowserPeer, String> {
        let dir = peer_dir();
        let chromium = std::env::var_os("PARLEY_CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
        if !chromium.is_file() {
            return Err(format!("Chromium is missing at {}: run `cargo xtask setup`", chromium.display()));
        }
        if !dir.join("node_modules/livekit-client").is_dir() || !dir.join("node_modules/playwright-core").is_dir() {
            return Err(format!(
                "the browser peer's npm packages are missing in {}: run `cargo xtask setup`",
                dir.display()
            ));
        }
        let mut command = Command::new("node");
        command
            .arg(dir.join("peer.mjs"))
            .args(["--url", &options.url, "--token", &options.token, "--seconds", &options.seconds.to_string()])
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .env("PARLEY_CHROMIUM", &chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(hz) = options.tone {
            command.args(["--tone", &hz.to_string()]);
        }
        if let Some(device) = &options.microphone {
            command.args(["--mic", "--input-device", device]);
        }
        if let Some(hz) = options.listen {
            command.args(["--listen", &hz.to_string()]);
        }
        if let Some(key) = &options.e2ee_key {
            command.args(["--e2ee-key", key]);
        }
        if options.processing {
            command.arg("--processing");
        }
        let mut child = command.spawn().map_err(|error| format!("starting node (the browser peer): {error}"))?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().map(|stdout| {
            let events = Arc::clone(&events);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(event) = serde_json::from_str::<Value>(&line) {
                        events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(event);
                    }
                }
            })
        });
        let stderr = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            })
        });
        Ok(BrowserPeer { child, events, stdout, stderr })
    }

    /// The Node driver's process id; Chromium's processes are its descendants.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Waits until an event named `name` arrives (`Some`), the peer exits or `timeout` passes.
    pub fn wait_for(&mut self, name: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(event) = self.events().into_iter().find(|event| event["event"] == name) {
                return Some(event);
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits for the peer to leave on its own (its `seconds` are up), killing it after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> BrowserFinished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().expect("wait for the browser peer");
                }
            }
        };
        if let Some(stdout) = self.stdout.take() {
            let _ = stdout.join();
        }
        let stderr = self.stderr.take().and_then(|stderr| stderr.join().ok()).unwrap_or_default();
        BrowserFinished { status, events: self.events(), stderr }
    }
}

impl Drop for BrowserPeer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
