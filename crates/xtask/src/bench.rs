//! `cargo xtask bench engine`: measurements through the real LiveKit server, with release builds
//! of `parley`. Prints a table and writes JSON. Nothing here is a pass/fail test; targets are
//! shown beside the numbers.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::find_reference;
use parley_audio::signal::chirp;
use parley_devserver::browser_peer::{BrowserPeer, BrowserPeerOptions};
use parley_devserver::{DevServer, DevServerConfig};
use serde_json::{Value, json};

const JOIN_TRIALS: usize = 10;
const CHIRPS: usize = 12;
const CHIRP_SECONDS: f64 = 0.3;
/// CPU is sampled over this window of a receiver's life (seconds after it started).
const CPU_WINDOW: (f64, f64) = (4.0, 14.0);

/// The release `parley`, built first.
pub(crate) fn release_parley() -> Result<PathBuf> {
    crate::cargo(&["build", "--quiet", "--release", "--package", "parley-cli"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    Ok(target.join("release").join(format!("parley{}", std::env::consts::EXE_SUFFIX)))
}

pub fn engine(out: PathBuf) -> Result<()> {
    let parley = release_parley()?;
    let server = DevServer::start(&DevServerConfig::default()).context("starting the LiveKit dev server")?;
    let scratch = tempfile::Builder::new().prefix("parley-bench-").tempdir().context("temp dir")?;
    let bench = Bench { parley, server, dir: scratch.path().to_path_buf(), env: Vec::new() };

    println!("bench engine: join time ({JOIN_TRIALS} trials)…");
    let join_ms = bench.join_times()?;
    println!("bench engine: one-way latency ({CHIRPS} chirps)…");
    let latency_ms = bench.latencies()?;
    println!("bench engine: receiver CPU and memory with 1 and 10 remote speakers…");
    let one = bench.receiver_load(1)?;
    let ten = bench.receiver_load(10)?;
    let per_speaker = (ten.cpu_percent - one.cpu_percent) / 9.0;

    let rows = [
        (
            "join time p50 (process start → first remote audio)",
            format!("{:.0} ms", percentile(&join_ms, 50.0)),
            "≤ 500 ms",
        ),
        ("join time p95", format!("{:.0} ms", percentile(&join_ms, 95.0)), ""),
        (
            "one-way latency p50 (sender → receiver, chirp xcorr)",
            format!("{:.1} ms", percentile(&latency_ms, 50.0)),
            "",
        ),
        ("one-way latency p95", format!("{:.1} ms", percentile(&latency_ms, 95.0)), ""),
        ("receiver CPU, 1 remote speaker", format!("{:.2} % of a core", one.cpu_percent), ""),
        ("receiver CPU, 10 remote speakers", format!("{:.2} % of a core", ten.cpu_percent), ""),
        ("receiver CPU per remote speaker", format!("{per_speaker:.2} % of a core"), "≤ 0.5 %"),
        ("receiver peak RSS, 1 remote speaker", format!("{:.1} MB", one.peak_rss_mb), "≤ 60 MB"),
        ("receiver peak RSS, 10 remote speakers", format!("{:.1} MB", ten.peak_rss_mb), "≤ 60 MB"),
    ];
    print_table(&rows);
    let report = json!({
        "suite": "engine",
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "join_ms": { "samples": join_ms, "p50": percentile(&join_ms, 50.0), "p95": percentile(&join_ms, 95.0), "target_p50": 500 },
        "latency_ms": { "samples": latency_ms, "p50": percentile(&latency_ms, 50.0), "p95": percentile(&latency_ms, 95.0) },
        "receiver": {
            "one_speaker": { "cpu_percent": one.cpu_percent, "peak_rss_mb": one.peak_rss_mb },
            "ten_speakers": { "cpu_percent": ten.cpu_percent, "peak_rss_mb": ten.peak_rss_mb },
            "cpu_percent_per_speaker": per_speaker,
            "target_cpu_percent_per_speaker": 0.5,
            "target_peak_rss_mb": 60,
        },
    });
    write_report(&out, &report)?;
    println!("\nbench engine: wrote {}", out.display());
    Ok(())
}

pub(crate) fn write_report(out: &std::path::Path, report: &Value) -> Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(report)?).with_context(|| format!("writing {}", out.display()))
}

pub(crate) fn print_table(rows: &[(&str, String, &str)]) {
    println!();
    println!("| measurement | value | target |");
    println!("|---|---|---|");
    for (name, value, target) in rows {
        println!("| {name} | {value} | {target} |");
    }
}

pub(crate) struct Bench {
    pub(crate) parley: PathBuf,
    pub(crate) server: DevServer,
    pub(crate) dir: PathBuf,
    /// Extra environment for every client (e.g. `PULSE_SERVER`).
    pub(crate) env: Vec<(String, String)>,
}

pub(crate) struct Load {
    pub(crate) cpu_percent: f64,
    pub(crate) peak_rss_mb: f64,
}

/// A running `parley join --json` with its events collected.
pub(crate) struct Peer {
    pub(crate) child: Child,
    stdin: Option<std::process::ChildStdin>,
    events: Option<JoinHandle<Vec<Value>>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A benchmark that fails part-way must not leave clients talking in the background.
        if matches!(self.child.try_wait(), Ok(None)) && self.child.kill().is_ok() {
            drop(self.child.wait());
        }
    }
}

impl Peer {
    /// Sends a control command on stdin; returns the wall-clock ms it was sent at.
    pub(crate) fn command(&mut self, line: &str) -> Result<f64> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().context("stdin")?;
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).context("sending a command")?;
        Ok(now_ms())
    }

    pub(crate) fn finish(mut self) -> Result<Vec<Value>> {
        let status = self.child.wait().context("waiting for parley")?;
        let events = self.events.take().map(|reader| reader.join().unwrap_or_default()).unwrap_or_default();
        if !status.success() {
            bail!("a benchmark client failed ({status}); events: {events:?}");
        }
        Ok(events)
    }
}

impl Bench {
    pub(crate) fn peer(&self, room: &str, identity: &str, seconds: f64, extra: &[&str]) -> Result<Peer> {
        self.peer_with_env(room, identity, seconds, extra, &[])
    }

    /// [`Bench::peer`] with `env` added to the bench's environment.
    pub(crate) fn peer_with_env(
        &self,
        room: &str,
        identity: &str,
        seconds: f64,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Result<Peer> {
        let mut child = Command::new(&self.parley)
            .args(["join", "--json", "--control-socket", "none", "--url", &self.server.url()])
            .args(["--room", room, "--identity", identity, "--duration", &seconds.to_string()])
            .args(extra)
            .env("LIVEKIT_API_KEY", self.server.api_key())
            .env("LIVEKIT_API_SECRET", self.server.api_secret())
            .envs(self.env.iter().chain(env).map(|(key, value)| (key.as_str(), value.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.parley.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("stdout")?;
        let events = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| serde_json::from_str(&line).ok())
                .collect()
        });
        Ok(Peer { child, stdin, events: Some(events) })
    }

    /// Process start → first audible remote frame, for a listener joining a room where one
    /// speaker is already talking.
    fn join_times(&self) -> Result<Vec<f64>> {
        let speaker = self.peer("join-bench", "speaker", 8.0 + JOIN_TRIALS as f64 * 2.5, &["--tone", "440"])?;
        std::thread::sleep(Duration::from_secs(2));
        let mut times = Vec::new();
        for trial in 0..JOIN_TRIALS {
            let recording = self.dir.join(format!("listener-{trial}.wav"));
            let listener =
                self.peer("join-bench", &format!("listener-{trial}"), 1.5, &["--record", &recording.to_string_lossy()]);
            let events = listener?.finish()?;
            let first = events
                .iter()
                .find(|event| event["event"] == "first_audio")
                .and_then(|event| event["t_ms"].as_f64())
                .with_context(|| format!("trial {trial}: no first_audio event"))?;
            times.push(first);
        }
        speaker.finish()?;
        Ok(times)
    }

    /// One-way latency: a file of chirps is sent in real time; the receiver's recording is
    /// cross-correlated with the chirp. Both processes stamp their 10 ms frame clocks with the
    /// same wall clock, so sent and received times are comparable.
    fn latencies(&self) -> Result<Vec<f64>> {
        let probe = chirp(300.0, 3000.0, CHIRP_SECONDS, -6.0);
        let spacing = SAMPLE_RATE as usize;
        let mut clip = vec![0i16; spacing * (CHIRPS + 2)];
        let offsets: Vec<usize> = (1..=CHIRPS).map(|index| index * spacing).collect();
        for &offset in &offsets {
            clip[offset..offset + probe.len()].copy_from_slice(&probe);
        }
        let clip_path = self.dir.join("chirps.wav");
        parley_audio::wav::write_mono_48k(&clip_path, &clip)?;
        let recording = self.dir.join("latency.wav");
        let seconds = CHIRPS as f64 + 4.0;
        let receiver =
            self.peer("latency-bench", "receiver", seconds + 1.0, &["--record", &recording.to_string_lossy()])?;
        std::thread::sleep(Duration::from_millis(1500));
        let sender = self.peer("latency-bench", "sender", seconds, &["--play", &clip_path.to_string_lossy()])?;
        let sent_events = sender.finish()?;
        let received_events = receiver.finish()?;
        let sent_start = unix_ns(&sent_events, "publishing_started")?;
        let played_start = unix_ns(&received_events, "playout_started")?;
        let recorded = parley_audio::wav::read_mono_48k(&recording)?;
        let mut latencies = Vec::new();
        for &offset in &offsets {
            let sent_ms = sent_start / 1e6 + offset as f64 * 1000.0 / SAMPLE_RATE as f64;
            let expected = ((sent_ms - played_start / 1e6) / 1000.0 * SAMPLE_RATE as f64) as i64;
            let from = (expected - 4800).max(0) as usize;
            let to = ((expected + 48_000) as usize).min(recorded.len());
            if to <= from + probe.len() {
                continue;
            }
            let found = find_reference(&probe, &recorded[from..to]);
            // Opus reshapes the waveform (phase), so even a clean arrival correlates at ~0.4;
            // a wrong match scores far lower (see analysis tests), and the lag is what counts.
            if let Some((lag, score)) = found
                && score > 0.2
            {
                let received_ms = played_start / 1e6 + (from + lag) as f64 * 1000.0 / SAMPLE_RATE as f64;
                latencies.push(received_ms - sent_ms);
            }
        }
        if latencies.len() < CHIRPS / 2 {
            bail!("only {} of {CHIRPS} chirps were found in the recording", latencies.len());
        }
        Ok(latencies)
    }

    /// A browser peer (LiveKit's JS SDK in Chromium) in `room` as `identity`, with the bench's
    /// environment and `env` (its display, its PulseAudio devices). `options` says what it sends;
    /// its URL and token are filled in here.
    pub(crate) fn browser(
        &self,
        room: &str,
        identity: &str,
        mut options: BrowserPeerOptions,
        env: &[(String, String)],
    ) -> Result<BrowserPeer> {
        let token = Command::new(&self.parley)
            .args(["token", "--room", room, "--identity", identity, "--ttl", "3600"])
            .env("LIVEKIT_API_KEY", self.server.api_key())
            .env("LIVEKIT_API_SECRET", self.server.api_secret())
            .output()
            .context("parley token")?;
        if !token.status.success() {
            bail!("parley token failed: {}", String::from_utf8_lossy(&token.stderr));
        }
        options.url = self.server.url();
        options.token = String::from_utf8(token.stdout).context("the token")?.trim().to_string();
        let env: Vec<(String, String)> = self.env.iter().chain(env).cloned().collect();
        BrowserPeer::start(&options, &env).map_err(|error| anyhow::anyhow!(error))
    }

    /// A `parley crowd` of `count` speakers in `room` for `seconds`.
    pub(crate) fn crowd(&self, room: &str, count: usize, seconds: f64) -> Result<Child> {
        Command::new(&self.parley)
            .args(["crowd", "--url", &self.server.url(), "--room", room, "--count", &count.to_string()])
            .args(["--duration", &seconds.to_string()])
            .env("LIVEKIT_API_KEY", self.server.api_key())
            .env("LIVEKIT_API_SECRET", self.server.api_secret())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting a crowd of {count}"))
    }

    /// CPU (over `window` seconds of its life) and peak memory of a listening client.
    pub(crate) fn measure(&self, receiver: Peer, window: (f64, f64)) -> Result<Load> {
        let pid = receiver.child.id();
        let started = Instant::now();
        sleep_until(started, window.0);
        let (ticks_before, _) = process_usage(pid)?;
        sleep_until(started, window.1);
        let (ticks_after, peak_rss_kb) = process_usage(pid)?;
        receiver.finish()?;
        Ok(Load {
            cpu_percent: (ticks_after - ticks_before) as f64 / clock_ticks_per_second() / (window.1 - window.0) * 100.0,
            peak_rss_mb: peak_rss_kb as f64 / 1024.0,
        })
    }

    /// CPU and peak memory of a recording receiver with `speakers` remote tones.
    fn receiver_load(&self, speakers: usize) -> Result<Load> {
        let room = format!("load-{speakers}");
        let lifetime = CPU_WINDOW.1 + 6.0;
        let talkers: Vec<Peer> = (0..speakers)
            .map(|index| {
                let tone = (300 + 97 * index).to_string();
                self.peer(&room, &format!("speaker-{index}"), lifetime + 4.0, &["--tone", &tone])
            })
            .collect::<Result<_>>()?;
        std::thread::sleep(Duration::from_secs(3));
        let recording = self.dir.join(format!("load-{speakers}.wav"));
        let receiver = self.peer(&room, "receiver", lifetime, &["--record", &recording.to_string_lossy()])?;
        let load = self.measure(receiver, CPU_WINDOW)?;
        for talker in talkers {
            talker.finish()?;
        }
        Ok(load)
    }
}

pub(crate) fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

pub(crate) fn sleep_until(started: Instant, seconds: f64) {
    let target = Duration::from_secs_f64(seconds);
    if let Some(remaining) = target.checked_sub(started.elapsed()) {
        std::thread::sleep(remaining);
    }
}

pub(crate) fn unix_ns(events: &[Value], name: &str) -> Result<f64> {
    events
        .iter()
        .find(|event| event["event"] == name)
        .and_then(|event| event["unix_ns"].as_f64())
        .with_context(|| format!("no {name} event"))
}

/// (utime + stime in clock ticks, VmHWM in kB) of a process, from /proc.
pub(crate) fn process_usage(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/<pid>/stat")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest).context("parsing /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("parsing VmHWM")?;
    Ok((ticks, peak))
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub(crate) fn percentile(values: &[f64], percent: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (percent / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
