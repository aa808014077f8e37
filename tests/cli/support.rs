//! Shared fixtures: the dev server, spawning `parley join`, and reading what it reported.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parley_audio::SAMPLE_RATE;
use parley_devserver::{DevServer, DevServerConfig};
use serde_json::Value;

/// Real-time audio tests take this so they never run concurrently.
pub fn audio_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh LiveKit server on loopback. Panics (fails the test) when setup has not been run.
pub fn server() -> DevServer {
    DevServer::start(&DevServerConfig::default()).unwrap_or_else(|error| panic!("LiveKit dev server: {error}"))
}

pub fn parley() -> Command {
    let mut command = Command::new(parley_e2e::parley_binary());
    command
        .env_remove("LIVEKIT_TOKEN")
        .env_remove("LIVEKIT_URL")
        .env_remove("PARLEY_E2EE_KEY")
        .env_remove("LIVEKIT_LIB_PATH")
        .env_remove("PARLEY_LOG");
    command
}

/// A scratch directory for recordings, removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("parley-e2e-").tempdir().expect("temp dir")
}

/// A `parley join --json` process whose events are collected as they arrive.
pub struct Peer {
    pub identity: String,
    pub recording: Option<PathBuf>,
    /// This peer's control socket (for `parley ctl --socket`).
    pub socket: PathBuf,
    stdin: Option<std::process::ChildStdin>,
    child: Child,
    /// The events so far, as they arrive.
    events: Arc<Mutex<Vec<Value>>>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished peer reported.
pub struct Finished {
    pub identity: String,
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: String,
    pub recording: Option<Vec<i16>>,
}

/// Joins `room` on `server` as `identity` with extra arguments (e.g. `--tone 440`).
pub fn join(server: &DevServer, room: &str, identity: &str, dir: &Path, extra: &[&str], seconds: f64) -> Peer {
    join_with_env(server, room, identity, dir, extra, seconds, &[])
}

/// [`join`] with extra environment variables (e.g. `PULSE_SERVER`).
pub fn join_with_env(
    server: &DevServer,
    room: &str,
    identity: &str,
    dir: &Path,
    extra: &[&str],
    seconds: f64,
    env: &[(String, String)],
) -> Peer {
    let recording = extra.contains(&"--record").then(|| dir.join(format!("{identity}.wav")));
    let socket = dir.join(format!("{identity}.sock"));
    let mut command = parley();
    command.arg("join").arg("--control-socket").arg(&socket);
    command
        .args(["--json", "--url", &server.url(), "--room", room, "--identity", identity])
        .args(["--duration", &seconds.to_string()])
        .env("LIVEKIT_API_KEY", server.api_key())
        .env("LIVEKIT_API_SECRET", server.api_secret())
        .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())));
    for argument in extra {
        command.arg(argument);
        if *argument == "--record" {
            command.arg(recording.as_ref().expect("recording path"));
        }
    }
    Peer::spawn(&mut command, identity, recording, socket)
}

impl Peer {
    /// Starts `command` (a `parley join --json …`) and collects its events as they arrive.
    pub fn spawn(command: &mut Command, identity: &str, recording: Option<PathBuf>, socket: PathBuf) -> Peer {
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn parley");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let events = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&events);
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| panic!("stdout line is not JSON: {line}"));
                collected.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(event);
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let mut reader = stderr;
            reader.read_to_string(&mut text).map(|_| text).unwrap_or_default()
        });
        Peer {
            identity: identity.to_string(),
            recording,
            socket,
            stdin,
            child,
            events,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// The process id of this `parley`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until an event satisfying `matches` arrived (any time so far) and returns it; fails
    /// the test naming `what` after `timeout`.
    pub fn wait_for_event(&self, what: &str, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .events
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .find(|event| matches(event))
                .cloned();
            if let Some(event) = found {
                return event;
            }
            if Instant::now() >= deadline {
                let events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let last: Vec<String> = events.iter().rev().take(12).rev().map(Value::to_string).collect();
                panic!(
                    "{}: {what} within {} s; its last events:\n{}",
                    self.identity,
                    timeout.as_secs(),
                    last.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the process to leave (SIGTERM: a clean leave that finishes its recording).
    pub fn terminate(&self) {
        let signalled = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(signalled.is_ok_and(|status| status.success()), "{} should take SIGTERM", self.identity);
    }

    /// Sends one control command on the peer's stdin; returns the wall-clock time (ms) it was sent.
    pub fn command(&mut self, line: &str) -> f64 {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("write a command");
        now_ms()
    }

    /// Waits for the process (killing it after `timeout`) and collects what it reported.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let status = wait_or_kill(&mut self.child, timeout);
        self.stdout.take().expect("stdout reader").join().expect("stdout thread");
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let stderr = self.stderr.take().expect("stderr reader").join().expect("stderr thread");
        let status = status.unwrap_or_else(|_| hung(&self.identity, timeout, &events, &stderr));
        let recording = self.recording.as_ref().map(|path| {
            parley_audio::wav::read_mono_48k(path)
                .unwrap_or_else(|error| panic!("{}: recording: {error}", self.identity))
        });
        Finished { identity: self.identity.clone(), status, events, stderr, recording }
    }
}

/// The wall clock in ms since the Unix epoch (what `unix_ms` in events is).
pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64() * 1000.0
}

/// Waits for a child, killing it after `timeout`.
pub fn wait(child: &mut Child, timeout: Duration) -> ExitStatus {
    wait_or_kill(child, timeout).unwrap_or_else(|_| panic!("parley did not finish within {timeout:?}"))
}

/// Waits for a child; after `timeout` kills it and gives `Err` with the killed one's status, so
/// that the caller can show what it printed before failing.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> Result<ExitStatus, ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill().expect("kill a hung parley");
            return Err(child.wait().expect("wait for a killed parley"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails a test for a process that had to be killed, with what it printed last.
pub fn hung(identity: &str, timeout: Duration, events: &[serde_json::Value], stderr: &str) -> ! {
    let last: Vec<&serde_json::Value> = events.iter().rev().take(5).collect();
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    panic!(
        "{identity}: parley did not finish within {timeout:?}; last events (newest first): {last:?}; stderr:\n{}",
        tail.join("\n")
    )
}

impl Finished {
    /// Asserts a clean exit, showing stderr otherwise.
    pub fn assert_clean(&self) -> &Finished {
        assert!(self.status.success(), "{} should exit 0, got {}; stderr: {}", self.identity, self.status, self.stderr);
        assert!(!self.stderr.contains("panicked"), "{} panicked: {}", self.identity, self.stderr);
        self
    }

    /// Events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<&Value> {
        self.events.iter().filter(|event| event["event"] == name).collect()
    }

    /// Wall-clock time (ms) of the first event named `name`.
    pub fn first_unix_ms(&self, name: &str) -> f64 {
        self.events_named(name)
            .first()
            .and_then(|event| event["unix_ms"].as_f64())
            .unwrap_or_else(|| panic!("{} reported no {name} event: {:?}", self.identity, self.events))
    }

    /// Wall-clock time (ms) of the last event (the session ending).
    pub fn last_unix_ms(&self) -> f64 {
        self.events.last().and_then(|event| event["unix_ms"].as_f64()).expect("at least one event")
    }

    /// Wall-clock time (ms) at which sample 0 of the recording was played out.
    pub fn playout_start_ms(&self) -> f64 {
        let event = self.events_named("playout_started");
        let ns = event.first().and_then(|event| event["unix_ns"].as_u64()).expect("playout_started with unix_ns");
        ns as f64 / 1e6
    }

    /// The recording between two wall-clock times (ms).
    pub fn recording_between(&self, from_ms: f64, to_ms: f64) -> &[i16] {
        let samples = self.recording.as_deref().expect("a recording");
        let start = self.playout_start_ms();
        let index = |ms: f64| (((ms - start) / 1000.0 * SAMPLE_RATE as f64).max(0.0) as usize).min(samples.len());
        &samples[index(from_ms)..index(to_ms)]
    }
}
