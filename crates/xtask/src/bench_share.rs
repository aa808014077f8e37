//! `cargo xtask bench share`: screen share through the real LiveKit server with release builds
//! of `parley` and `parley-pattern-window`, on a private 1920×1080 Xvfb. Table + JSON; never a
//! test.
//!
//! * Glass to glass: the pattern window draws a frame counter and logs when each frame reached
//!   the X server (`--log`); the sharer captures, scales, encodes and sends it; the viewer
//!   (`parley join --watch … --save-frames`) stamps each picture as it is handed over (the PNG's
//!   `Received` chunk). Reading the counter back from each saved picture gives drawn → received
//!   for that picture, at 720p30 (the pattern window shared) and at 1080p30 (the whole screen,
//!   the pattern in its corner). The CLI viewer shows nothing, so this is glass to the viewer's
//!   hand: the app adds its JPEG encode (7–14 ms, README) and the webview's paint.
//! * Sender CPU: the sharer's utime + stime over the steady part of each share (capture +
//!   convert + encode + send; the CLI sends no audio here).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parley_capture::pattern;
use parley_devserver::display::Xvfb;
use parley_devserver::{DevServer, DevServerConfig};
use serde_json::{Value, json};

use crate::bench::{Bench, clock_ticks_per_second, percentile, print_table, process_usage, sleep_until, write_report};

/// How long each share runs, and the part of it measured (seconds from the sharer's start).
const SHARE_SECONDS: f64 = 24.0;
const STEADY: (f64, f64) = (6.0, 20.0);
/// The viewer saves every this many pictures (PNG encoding every one would fall behind and
/// delay the stamps).
const SAVE_EVERY: &str = "3";
const GLASS_P50_TARGET_MS: f64 = 150.0;
const GLASS_P95_TARGET_MS: f64 = 250.0;

/// One share measured.
struct ShareRun {
    label: &'static str,
    latencies_ms: Vec<f64>,
    sender_cpu_percent: f64,
    received: (u64, u64),
}

/// The pattern window, with the times its frames were drawn.
struct Pattern {
    child: Child,
    id: u64,
    drawn: std::sync::mpsc::Receiver<(u32, f64)>,
}

impl Drop for Pattern {
    fn drop(&mut self) {
        if self.child.kill().is_ok() {
            drop(self.child.wait());
        }
    }
}

impl Pattern {
    fn open(binary: &Path, env: &[(String, String)]) -> Result<Pattern> {
        let mut child = Command::new(binary)
            .arg("--log")
            .envs(env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let first = lines.next().context("the pattern window printed nothing")??;
        let id = serde_json::from_str::<Value>(&first)?["window"].as_u64().context("the pattern window's id")?;
        let (sender, drawn) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
                if let (Some(counter), Some(ms)) = (event["drawn"].as_u64(), event["unix_ms"].as_f64())
                    && sender.send((counter as u32, ms)).is_err()
                {
                    return;
                }
            }
        });
        Ok(Pattern { child, id, drawn })
    }

    /// When each counter value was last drawn, of those logged so far.
    fn drawn_times(&self) -> HashMap<u32, f64> {
        self.drawn.try_iter().collect()
    }
}

pub fn share(out: PathBuf) -> Result<()> {
    let parley = crate::bench::release_parley()?;
    crate::cargo(&["build", "--quiet", "--release", "--package", "parley-capture", "--bin", "parley-pattern-window"])?;
    let pattern_binary = parley.with_file_name(format!("parley-pattern-window{}", std::env::consts::EXE_SUFFIX));
    let display = Xvfb::start_sized(1920, 1080).context("starting Xvfb")?;
    let server = DevServer::start(&DevServerConfig::default()).context("starting the LiveKit dev server")?;
    let scratch = tempfile::Builder::new().prefix("parley-bench-share-").tempdir().context("temp dir")?;
    let bench = Bench { parley, server, dir: scratch.path().to_path_buf(), env: display.env() };
    let pattern = Pattern::open(&pattern_binary, &display.env())?;

    let mut runs = Vec::new();
    for (label, target, quality) in
        [("720p30 (a window)", pattern.id.to_string(), "720p30"), ("1080p30 (a screen)", "0".to_string(), "1080p30")]
    {
        println!("bench share: {label}…");
        runs.push(measure(&bench, &pattern, label, &target, quality)?);
    }

    let mut rows = Vec::new();
    for run in &runs {
        rows.push((
            run.label,
            format!(
                "glass→viewer p50 {:.0} ms, p95 {:.0} ms ({} pictures at {}x{}); sender CPU {:.0} % of a core",
                percentile(&run.latencies_ms, 50.0),
                percentile(&run.latencies_ms, 95.0),
                run.latencies_ms.len(),
                run.received.0,
                run.received.1,
                run.sender_cpu_percent
            ),
            if run.label.starts_with("720") { "p50 ≤ 150, p95 ≤ 250 ms; CPU ≤ 40 %" } else { "CPU ≤ 100 %" },
        ));
    }
    print_table(&rows);
    let report = json!({
        "suite": "share",
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "shares": runs.iter().map(|run| json!({
            "label": run.label,
            "received_size": [run.received.0, run.received.1],
            "glass_to_viewer_ms": {
                "samples": run.latencies_ms,
                "p50": percentile(&run.latencies_ms, 50.0),
                "p95": percentile(&run.latencies_ms, 95.0),
                "target_p50": GLASS_P50_TARGET_MS,
                "target_p95": GLASS_P95_TARGET_MS,
            },
            "sender_cpu_percent": run.sender_cpu_percent,
        })).collect::<Vec<_>>(),
    });
    write_report(&out, &report)?;
    println!("\nbench share: wrote {}", out.display());
    Ok(())
}

fn measure(bench: &Bench, pattern: &Pattern, label: &'static str, target: &str, quality: &str) -> Result<ShareRun> {
    let room = format!("share-{quality}");
    let frames = bench.dir.join(&room);
    let frames_arg = frames.to_string_lossy().to_string();
    let viewer = bench.peer(
        &room,
        "viewer",
        SHARE_SECONDS + 2.0,
        &["--watch", "sharer", "--save-frames", &frames_arg, "--save-every", SAVE_EVERY],
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let sharer = bench.peer(&room, "sharer", SHARE_SECONDS, &["--share-screen", target, "--share-quality", quality])?;
    let started = Instant::now();
    let pid = sharer.child.id();
    sleep_until(started, STEADY.0);
    let (ticks_before, _) = process_usage(pid)?;
    let steady_from_ms = crate::bench::now_ms();
    sleep_until(started, STEADY.1);
    let (ticks_after, _) = process_usage(pid)?;
    let steady_to_ms = crate::bench::now_ms();
    let sender_cpu_percent =
        (ticks_after - ticks_before) as f64 / clock_ticks_per_second() / (STEADY.1 - STEADY.0) * 100.0;
    sharer.finish()?;
    viewer.finish()?;
    let drawn = pattern.drawn_times();

    let mut latencies_ms = Vec::new();
    let mut received = (0, 0);
    for (path, received_ms) in saved(&frames)? {
        if received_ms < steady_from_ms || received_ms > steady_to_ms {
            continue;
        }
        let (width, rgba) = decode(&path)?;
        received = (u64::from(width), (rgba.len() / 4 / width as usize) as u64);
        let counter = pattern::read_counter(&rgba, width);
        // A counter value is drawn once every 36 minutes: its time is the one just before.
        if let Some(drawn_ms) = drawn.get(&counter)
            && *drawn_ms <= received_ms
        {
            latencies_ms.push(received_ms - drawn_ms);
        }
    }
    if latencies_ms.len() < 20 {
        bail!("{label}: only {} pictures could be timed (is the pattern readable?)", latencies_ms.len());
    }
    Ok(ShareRun { label, latencies_ms, sender_cpu_percent, received })
}

/// The saved pictures and when each was received (its `Received` text chunk).
fn saved(dir: &Path) -> Result<Vec<(PathBuf, f64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|extension| extension != "png") {
            continue;
        }
        let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(&path)?));
        let reader = decoder.read_info().with_context(|| format!("reading {}", path.display()))?;
        let received = reader
            .info()
            .uncompressed_latin1_text
            .iter()
            .find(|chunk| chunk.keyword == "Received")
            .and_then(|chunk| chunk.text.parse::<f64>().ok())
            .with_context(|| format!("{} has no Received time", path.display()))?;
        found.push((path, received));
    }
    found.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(found)
}

/// A saved picture's width and RGBA pixels.
fn decode(path: &Path) -> Result<(u32, Vec<u8>)> {
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(path)?));
    let mut reader = decoder.read_info().with_context(|| format!("reading {}", path.display()))?;
    let mut rgba = vec![0; reader.output_buffer_size().context("a PNG size")?];
    let info = reader.next_frame(&mut rgba).with_context(|| format!("decoding {}", path.display()))?;
    rgba.truncate(info.buffer_size());
    Ok((info.width, rgba))
}
