//! The other side of the call: `parley join --json` processes whose events are read as they
//! arrive, so a test can wait for one (a remote mute, a removal) while the call goes on.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parley_audio::SAMPLE_RATE;
use parley_devserver::DevServer;
use serde_json::Value;

/// A `parley` command with none of the caller's LiveKit settings leaking in.
pub fn parley() -> Command {
    let mut command = Command::new(parley_e2e::parley_binary());
    command
        .env_remove("LIVEKIT_TOKEN")
        .env_remove("LIVEKIT_URL")
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .env_remove("PARLEY_E2EE_KEY")
        .env_remove("PARLEY_LOG");
    command
}

/// A running `parley join --json`. Killed on drop if still running.
pub struct Peer {
    pub identity: String,
    pub recording: Option<PathBuf>,
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// What an ended peer reported.
pub struct Ended {
    pub identity: String,
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl Peer {
    /// Joins `room` on `server` as `identity` for at most `seconds`, with `extra` arguments
    /// (`--tone 440`, `--record` — the recording goes to `dir/<identity>.wav`).
    pub fn join(server: &DevServer, room: &str, identity: &str, dir: &Path, extra: &[&str], seconds: f64) -> Peer {
        Peer::join_with_env(server, room, identity, dir, extra, seconds, &[])
    }

    /// [`Peer::join`] with extra environment variables (`DISPLAY` for a screen share).
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
        let mut command = parley();
        command
            .args(["join", "--json", "--control-socket", "none", "--url", &server.url(), "--room", room])
            .args(["--identity", identity, "--duration", &seconds.to_string()])
            .env("LIVEKIT_API_KEY", server.api_key())
            .env("LIVEKIT_API_SECRET", server.api_secret())
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())));
        for argument in extra {
            command.arg(argument);
            if *argument == "--record" {
                command.arg(recording.as_ref().expect("a recording path for --record"));
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting parley join");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let collected = Arc::clone(&events);
        let stdout = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event: Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("parley's stdout line is not JSON: {line}"));
                collected.lock().expect("events lock").push(event);
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).map(|_| text).unwrap_or_default()
        });
        Peer { identity: identity.to_string(), recording, child, events, stdout: Some(stdout), stderr: Some(stderr) }
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events lock").clone()
    }

    /// Waits until an event satisfies `matches`; panics with `what` and the events after
    /// `timeout`.
    pub fn wait_for_event(&self, what: &str, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events().into_iter().find(|event| matches(event)) {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} within {} s; its events: {:?}",
                self.identity,
                timeout.as_secs(),
                self.events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to end by itself within `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("polling parley") {
                break status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} should have ended within {} s; its events: {:?}",
                    self.identity,
                    timeout.as_secs(),
                    self.events()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.collect(status)
    }

    /// Asks the process to leave (SIGTERM: a clean leave that finishes its recording) and waits.
    pub fn leave(self, timeout: Duration) -> Ended {
        let signalled = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(signalled.is_ok_and(|status| status.success()), "{} should take SIGTERM", self.identity);
        self.wait(timeout)
    }

    fn collect(mut self, status: ExitStatus) -> Ended {
        if let Some(reader) = self.stdout.take() {
            reader.join().expect("the stdout reader");
        }
        let stderr = self.stderr.take().map(|reader| reader.join().expect("the stderr reader")).unwrap_or_default();
        Ended { identity: self.identity.clone(), status, events: self.events(), stderr }
    }

    fn kill(&mut self) {
        if let Err(error) = self.child.kill() {
            eprintln!("{}: already gone: {error}", self.identity);
        }
        if let Err(error) = self.child.wait() {
            eprintln!("{}: could not reap: {error}", self.identity);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

impl Ended {
    /// Asserts a clean leave (exit 0, no panic).
    pub fn assert_clean(&self) -> &Ended {
        assert!(self.status.success(), "{} should exit 0, got {}; stderr: {}", self.identity, self.status, self.stderr);
        assert!(!self.stderr.contains("panicked"), "{} panicked: {}", self.identity, self.stderr);
        self
    }

    pub fn events_named(&self, name: &str) -> Vec<&Value> {
        self.events.iter().filter(|event| event["event"] == name).collect()
    }

    /// The recording (48 kHz mono) and the wall-clock ms at which its sample 0 was played out.
    pub fn recording(&self, path: &Path) -> (Vec<i16>, f64) {
        let samples = parley_audio::wav::read_mono_48k(path)
            .unwrap_or_else(|error| panic!("{}: its recording should be readable: {error}", self.identity));
        let started = self
            .events_named("playout_started")
            .first()
            .and_then(|event| event["unix_ns"].as_u64())
            .unwrap_or_else(|| panic!("{} should report playout_started: {:?}", self.identity, self.events));
        (samples, started as f64 / 1e6)
    }
}

/// The part of `samples` (sample 0 played at `start_ms`) between two wall-clock times (ms).
pub fn between(samples: &[i16], start_ms: f64, from_ms: f64, to_ms: f64) -> &[i16] {
    let index = |ms: f64| (((ms - start_ms) / 1000.0 * SAMPLE_RATE as f64).max(0.0) as usize).min(samples.len());
    &samples[index(from_ms)..index(to_ms)]
}

/// The wall clock in ms since the Unix epoch (what `unix_ms`/`unix_ns` in events count).
pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970").as_secs_f64()
        * 1000.0
}
