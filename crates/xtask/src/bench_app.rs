//! `cargo xtask bench app`: the desktop app's memory, CPU and cold start, beside an empty Tauri
//! window built the same way (`crates/empty-app`: same Tauri, same features, no plugins) as the
//! baseline. Release builds of both run on a private X display (Xvfb, `GDK_BACKEND=x11`), sound
//! server, session bus + keyring and XDG directories. Table + JSON; never a test.
//!
//! * Cold start: spawn → the window mapped (`xdotool search --onlyvisible`) *and* the page's load
//!   finished (both apps print `page loaded` from Tauri's `PageLoadEvent::Finished`). The disk
//!   cache is not dropped (that needs root and slows every other job on the machine), so every
//!   trial after the first reads the binaries and WebKit from memory.
//! * Memory: RSS and PSS (`/proc/<pid>/smaps_rollup`) of every process of the app's tree — the
//!   app, `WebKitWebProcess`, `WebKitNetworkProcess` and WebKit's sandbox (`bwrap`,
//!   `xdg-dbus-proxy`). PSS splits shared pages between the processes that map them, so the
//!   tree's PSS is what the app costs the machine; RSS counts shared libraries in full.
//! * In a call: the app opens `parley://join/livekit/<room>` where a `parley crowd` of 10 tone
//!   speakers talks; memory as above and CPU (utime + stime) of the whole tree.
//! * WebKit: Parley turns WebKit's accelerated compositing off for itself (the empty app, like
//!   any Tauri app, keeps it). What that buys: Parley idle again with compositing forced on
//!   (`WEBKIT_DISABLE_COMPOSITING_MODE=0`), and, like for like, the empty app with it off. Parley
//!   also sets WebKit's cache model to `DocumentViewer` (wry leaves WebKitGTK's `WebBrowser`):
//!   Parley idle again with `PARLEY_WEBKIT_CACHE_MODEL=web-browser` says what that buys.
//! * Watching a screen share: the crowd leaves (on 2 cores a 1080p30 sharer beside it is
//!   starved), alice (the CLI) shares a 1920×1080 screen (a second Xvfb with the moving test
//!   pattern) at 1080p30, the app's tree is measured not watching, then it is told over its
//!   control socket to watch her (what a click on her Live mark does): its room view opens the
//!   viewer, which receives the layer that fits it. Memory and CPU against not watching; the
//!   sharer's own CPU is reported beside them.
//!   The CPU is read only once the viewer's first picture arrived, and the pictures a second it
//!   received during the window are reported beside it.
//! * Beside a browser: a Chromium tab running livekit-client (the browser peer of the tests) in
//!   the same kind of call — 10 tone speakers, its microphone open on the same silent sink —
//!   and the CPU of Chromium's processes over the same window: what Parley's tree costs as a
//!   fraction of what a browser tab costs, in the same run.
//! * Soak (`--soak-minutes`, the target is 10): the tree's PSS (and each process's) every 10 s in
//!   the call, while watching the share; growth is the median of the last third of the samples minus that of the first
//!   third (a first → last difference only measures the noise).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parley_devserver::browser_peer::{BrowserPeer, BrowserPeerOptions};
use parley_devserver::display::Xvfb;
use parley_devserver::keyring::TestKeyring;
use parley_devserver::pulse::{NullSink, PulseServer};
use parley_devserver::{DevServer, DevServerConfig};
use serde_json::json;

use crate::bench::{Bench, percentile, print_table, write_report};
use crate::bench_proc::{Running, TreeMemory, cpu_over_window};

/// Lets the app's join links join without a click (see `links.rs` in the app).
const LINKS_JOIN: &str = "PARLEY_LINKS_JOIN";
const COLD_START_TRIALS: usize = 5;
const COLD_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an app runs before its memory is read.
const SETTLE: Duration = Duration::from_secs(10);
const SPEAKERS: usize = 10;
const CPU_WINDOW: Duration = Duration::from_secs(20);
/// A WebKit process's memory swings by tens of MB within seconds (its garbage collector, the
/// compositor's buffers), so the soak samples often and compares medians, not two samples.
const SOAK_INTERVAL: Duration = Duration::from_secs(10);
const ROOM: &str = "bench-call";
const PROFILE: &str = "livekit";
/// Targets, in MB of the tree's PSS above the baseline's, and ms.
const IDLE_TARGET_MB: f64 = 40.0;
const CALL_TARGET_MB: f64 = 80.0;
const COLD_START_TARGET_MS: f64 = 1500.0;
/// Watching a 1080p30 share: PSS above the audio-only call, MB, and the CPU it adds, % of a core.
const WATCH_TARGET_MB: f64 = 80.0;
const WATCH_CPU_TARGET_PERCENT: f64 = 30.0;
/// "No growth" allows for allocator noise over the soak.
const SOAK_GROWTH_TARGET_MB: f64 = 5.0;

/// The two programs under test: the app, and the empty Tauri window it is measured against.
#[derive(Clone, Copy)]
enum Program {
    Parley,
    Empty,
}

impl Program {
    fn label(self) -> &'static str {
        match self {
            Program::Parley => "Parley",
            Program::Empty => "empty Tauri app",
        }
    }

    /// Its window's title, as an anchored regular expression for `xdotool search --name`.
    fn title_pattern(self) -> &'static str {
        match self {
            Program::Parley => "^Parley$",
            Program::Empty => "^Empty Tauri app$",
        }
    }
}

pub fn app(out: PathBuf, soak_minutes: f64, perf: bool) -> Result<()> {
    let root = crate::workspace_root();
    crate::app::build_ui(&root.join("ui"), &|line| println!("{line}"))?;
    crate::cargo(&["build", "--release", "--package", "parley-app", "--package", "parley-empty-app"])
        .context("building the apps")?;
    let release = crate::app::target_dir(&root).join("release");
    let parley_app = release.join(crate::app::exe("parley-app"));
    let empty_app = release.join(crate::app::exe("parley-empty-app"));
    let parley = crate::bench::release_parley()?;
    let server = DevServer::start(&DevServerConfig::default()).context("starting the LiveKit dev server")?;
    let desktop = Desktop::start()?;
    let _profile = crate::demo::add_profile(&parley, &server, PROFILE, &desktop.env)?;
    let bench = Bench { parley, server, dir: desktop.dir.path().to_path_buf(), env: desktop.pulse.env() };
    let binary = |program: Program| match program {
        Program::Parley => &parley_app,
        Program::Empty => &empty_app,
    };

    println!("bench app: cold start, {COLD_START_TRIALS} trials each…");
    let mut cold: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for trial in 0..COLD_START_TRIALS {
        for program in [Program::Empty, Program::Parley] {
            let milliseconds = desktop.cold_start(program, binary(program))?;
            println!("bench app:   {} trial {trial}: {milliseconds:.0} ms", program.label());
            cold.entry(program.label()).or_default().push(milliseconds);
        }
    }
    let cold_empty = cold.remove(Program::Empty.label()).unwrap_or_default();
    let cold_parley = cold.remove(Program::Parley.label()).unwrap_or_default();

    println!("bench app: idle memory after {} s…", SETTLE.as_secs());
    let idle_empty = desktop.idle_memory(binary(Program::Empty), &[])?;
    let idle_parley = desktop.idle_memory(binary(Program::Parley), &[])?;
    println!("bench app: idle memory with WebKit's compositing switched the other way…");
    let flat_empty = desktop.idle_memory(binary(Program::Empty), &[("WEBKIT_DISABLE_COMPOSITING_MODE", "1")])?;
    let composited_parley =
        desktop.idle_memory(binary(Program::Parley), &[("WEBKIT_DISABLE_COMPOSITING_MODE", "0")])?;
    println!("bench app: idle memory with WebKit's default cache model…");
    let browser_cache_parley =
        desktop.idle_memory(binary(Program::Parley), &[("PARLEY_WEBKIT_CACHE_MODEL", "web-browser")])?;

    println!("bench app: in a call with {SPEAKERS} speakers…");
    let profile_to = perf.then(|| out.with_extension("perf.txt"));
    let call = desktop.call(&bench, binary(Program::Parley), soak_minutes, profile_to.as_deref())?;

    println!("bench app: a browser tab (livekit-client in Chromium) in the same kind of call…");
    let tab_cpu_percent = desktop.browser_tab(&bench)?;
    let tab_cpu: f64 = tab_cpu_percent.values().sum();
    let call_cpu: f64 = call.cpu_percent.values().sum();

    let idle_delta = idle_parley.pss_mb() - idle_empty.pss_mb();
    let call_delta = call.memory.pss_mb() - idle_empty.pss_mb();
    let cold_p50 = percentile(&cold_parley, 50.0);
    let mut rows: Vec<(String, String, String)> = vec![
        (
            "cold start → window shown + page loaded, empty Tauri app, p50 / max".into(),
            format!("{:.0} / {:.0} ms", percentile(&cold_empty, 50.0), max(&cold_empty)),
            String::new(),
        ),
        (
            "cold start → window shown + page loaded, Parley, p50 / max".into(),
            format!("{cold_p50:.0} / {:.0} ms", max(&cold_parley)),
            verdict(cold_p50 <= COLD_START_TARGET_MS, "≤ 1500 ms"),
        ),
    ];
    for (name, memory) in [
        ("idle, empty Tauri app (baseline)", &idle_empty),
        ("idle, Parley", &idle_parley),
        ("in a call with 10 speakers, Parley", &call.memory),
    ] {
        memory.rows(name, &mut rows);
    }
    rows.push((
        "idle Δ PSS vs baseline".into(),
        format!("{idle_delta:+.1} MB"),
        verdict(idle_delta <= IDLE_TARGET_MB, "≤ 40 MB"),
    ));
    rows.push((
        "in a call Δ PSS vs baseline".into(),
        format!("{call_delta:+.1} MB"),
        verdict(call_delta <= CALL_TARGET_MB, "≤ 80 MB"),
    ));
    rows.push((
        format!("CPU in a call, whole tree, over {} s", CPU_WINDOW.as_secs()),
        format!("{:.1} % of a core", call.cpu_percent.values().sum::<f64>()),
        String::new(),
    ));
    for (name, percent) in &call.cpu_percent {
        rows.push((format!("  CPU · {name}"), format!("{percent:.1} %"), String::new()));
    }
    rows.push((
        format!("CPU of a browser tab in the same kind of call, over {} s", CPU_WINDOW.as_secs()),
        format!("{tab_cpu:.1} % of a core"),
        String::new(),
    ));
    for (name, percent) in &tab_cpu_percent {
        rows.push((format!("  CPU · {name}"), format!("{percent:.1} %"), String::new()));
    }
    rows.push((
        "Parley's tree ÷ the browser tab, CPU in the call".into(),
        format!("{:.2}×", call_cpu / tab_cpu),
        verdict(call_cpu <= 0.8 * tab_cpu, "≤ 0.8×"),
    ));
    let watching_delta = call.watching_memory.pss_mb() - call.unwatched_memory.pss_mb();
    call.unwatched_memory.rows("alice sharing 1080p30 in the room, not watched (crowd gone), Parley", &mut rows);
    call.watching_memory.rows("the same, watching her share, Parley", &mut rows);
    rows.push((
        "watching a 1080p30 share Δ PSS vs not watching it".into(),
        format!("{watching_delta:+.1} MB"),
        verdict(watching_delta <= WATCH_TARGET_MB, "≤ 80 MB"),
    ));
    let unwatched_cpu: f64 = call.unwatched_cpu_percent.values().sum();
    let watching_cpu: f64 = call.watching_cpu_percent.values().sum();
    let watching_cpu_added = watching_cpu - unwatched_cpu;
    rows.push((
        format!("CPU not watching → watching, whole tree, over {} s each", CPU_WINDOW.as_secs()),
        format!("{unwatched_cpu:.1} → {watching_cpu:.1} % of a core (viewer {watching_cpu_added:+.1} %)"),
        verdict(watching_cpu_added <= WATCH_CPU_TARGET_PERCENT, "viewer ≤ 30 % of a core"),
    ));
    for (name, percent) in &call.watching_cpu_percent {
        rows.push((format!("  CPU watching · {name}"), format!("{percent:.1} %"), String::new()));
    }
    rows.push((
        "  the sharer (alice, CLI) meanwhile".into(),
        format!("{:.1} % of a core", call.sharer_cpu_percent),
        String::new(),
    ));
    rows.push((
        "  pictures received meanwhile, p50 (min)".into(),
        format!(
            "{:.1} ({:.1}) fps at {}",
            percentile(&call.watched_fps, 50.0),
            call.watched_fps.iter().copied().fold(f64::INFINITY, f64::min),
            call.watched_size
        ),
        String::new(),
    ));
    rows.push(("  the viewer draws it at (device pixels)".into(), call.viewer_size.clone(), String::new()));
    rows.push((
        "  watching it once the screen is still, whole tree".into(),
        format!(
            "{:.1} % of a core (viewer +{:.1} %), {:.1} fps received",
            call.still_cpu_percent.values().sum::<f64>(),
            call.still_cpu_percent.values().sum::<f64>() - unwatched_cpu,
            percentile(&call.still_fps, 50.0)
        ),
        String::new(),
    ));
    rows.push((
        "WebKit: Parley idle with compositing forced on (=0)".into(),
        format!(
            "{:.1} MB: compositing off saves Parley {:.1} MB",
            composited_parley.pss_mb(),
            composited_parley.pss_mb() - idle_parley.pss_mb()
        ),
        String::new(),
    ));
    rows.push((
        "WebKit: Parley idle with WebKit's default cache model (web-browser)".into(),
        format!(
            "{:.1} MB: the document-viewer cache model saves Parley {:.1} MB",
            browser_cache_parley.pss_mb(),
            browser_cache_parley.pss_mb() - idle_parley.pss_mb()
        ),
        String::new(),
    ));
    rows.push((
        "WebKit: empty app idle with compositing off (=1), like for like".into(),
        format!(
            "{:.1} MB: Parley idle {:+.1} MB, in a call {:+.1} MB vs it",
            flat_empty.pss_mb(),
            idle_parley.pss_mb() - flat_empty.pss_mb(),
            call.memory.pss_mb() - flat_empty.pss_mb()
        ),
        String::new(),
    ));
    let soak = &call.soak_pss_mb;
    let growth = thirds(soak).map(|(first, last)| last - first);
    match (growth, thirds(soak)) {
        (Some(growth), Some((first, last))) => {
            rows.push((
                format!("soak in a call watching a share, {soak_minutes} min: tree PSS, median of first → last third"),
                format!(
                    "{first:.1} → {last:.1} MB ({growth:+.1} MB; samples {:.1}–{:.1})",
                    soak.iter().copied().fold(f64::INFINITY, f64::min),
                    max(soak)
                ),
                verdict(growth <= SOAK_GROWTH_TARGET_MB, "no growth over 10 min (≤ 5 MB)"),
            ));
            for (name, samples) in &call.soak_by_process {
                if let Some((first, last)) = thirds(samples) {
                    rows.push((format!("  soak · {name}"), format!("{first:.1} → {last:.1} MB"), String::new()));
                }
            }
        }
        _ => rows.push((
            "soak in a call".into(),
            "skipped (--soak-minutes 10 runs it)".into(),
            "no growth over 10 min".into(),
        )),
    }
    let borrowed: Vec<(&str, String, &str)> =
        rows.iter().map(|(name, value, target)| (name.as_str(), value.clone(), target.as_str())).collect();
    print_table(&borrowed);

    let stats = |samples: &[f64]| json!({ "samples": samples, "p50": percentile(samples, 50.0), "max": max(samples) });
    let report = json!({
        "suite": "app",
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "display": "Xvfb, GDK_BACKEND=x11 (no GPU: WebKit renders in software)",
        "cold_start_ms": {
            "oracle": "spawn → window mapped (xdotool --onlyvisible) and PageLoadEvent::Finished; page cache warm after the first trial",
            "empty": stats(&cold_empty),
            "parley": stats(&cold_parley),
            "target_p50": COLD_START_TARGET_MS,
        },
        "idle": { "empty": idle_empty.json(), "parley": idle_parley.json(), "delta_pss_mb": idle_delta, "target_delta_pss_mb": IDLE_TARGET_MB },
        "call": {
            "speakers": SPEAKERS,
            "parley": call.memory.json(),
            "delta_pss_mb": call_delta,
            "target_delta_pss_mb": CALL_TARGET_MB,
            "cpu_window_s": CPU_WINDOW.as_secs(),
            "cpu_percent": call.cpu_percent,
            "cpu_percent_total": call_cpu,
        },
        "browser_tab": {
            "what": "Debian's Chromium running livekit-client (tests/peers/browser), microphone open with a browser's default processing, in a call with the same 10 speakers; Chromium's processes (not the Node driver)",
            "cpu_percent": tab_cpu_percent,
            "cpu_percent_total": tab_cpu,
            "parley_to_tab_ratio": call_cpu / tab_cpu,
            "target_ratio": 0.8,
        },
        "watching": {
            "share": "the crowd leaves; alice (CLI) shares a 1920×1080 screen at 1080p30; the app's room view watches it (the layer that fits the viewer); against the same room not watching",
            "parley_not_watching": call.unwatched_memory.json(),
            "parley": call.watching_memory.json(),
            "delta_pss_mb_vs_not_watching": watching_delta,
            "cpu_percent_not_watching": call.unwatched_cpu_percent,
            "sharer_cpu_percent": call.sharer_cpu_percent,
            "target_delta_pss_mb": WATCH_TARGET_MB,
            "cpu_percent": call.watching_cpu_percent,
            "cpu_percent_total": watching_cpu,
            "cpu_percent_added": watching_cpu_added,
            "received_fps_during_cpu_window": call.watched_fps,
            "received_size": call.watched_size,
            "viewer_size": call.viewer_size,
            "still_cpu_percent": call.still_cpu_percent,
            "still_fps": call.still_fps,
            "target_cpu_percent": WATCH_CPU_TARGET_PERCENT,
        },
        "webkit": {
            "app_sets": "WEBKIT_DISABLE_COMPOSITING_MODE=1 for itself unless the user set it; cache model document-viewer (wry leaves web-browser)",
            "parley_with_compositing": composited_parley.json(),
            "parley_with_web_browser_cache_model": browser_cache_parley.json(),
            "empty_without_compositing": flat_empty.json(),
        },
        "soak": { "minutes": soak_minutes, "interval_s": SOAK_INTERVAL.as_secs(), "pss_mb": soak, "by_process_pss_mb": call.soak_by_process, "growth_mb": growth, "growth": "median of the last third minus median of the first third", "target_minutes": 10 },
    });
    write_report(&out, &report)?;
    println!("\nbench app: wrote {}", out.display());
    Ok(())
}

/// The medians of the first and the last third of `samples` (`None` under 3 samples).
fn thirds(samples: &[f64]) -> Option<(f64, f64)> {
    let third = samples.len() / 3;
    (third > 0).then(|| (percentile(&samples[..third], 50.0), percentile(&samples[samples.len() - third..], 50.0)))
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn verdict(pass: bool, target: &str) -> String {
    format!("{target}: {}", if pass { "pass" } else { "miss" })
}

/// A private desktop session: X display, sound server (a speaker and a microphone, both null
/// sinks), session bus with a keyring, and XDG directories — nothing the apps do reaches the
/// user's own, and every run starts from the same empty WebKit cache.
struct Desktop {
    _xvfb: Xvfb,
    pulse: PulseServer,
    _keyring: TestKeyring,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Desktop {
    fn start() -> Result<Desktop> {
        let xvfb = Xvfb::start().context("starting a virtual display (Xvfb)")?;
        let pulse = PulseServer::start(&[NullSink::new("speaker", 2), NullSink::new("microphone", 1)])?;
        pulse.pactl(&["set-default-source", "microphone.monitor"]).map_err(anyhow::Error::msg)?;
        let keyring = TestKeyring::start().context("starting a private keyring")?;
        let dir = tempfile::Builder::new().prefix("parley-bench-app-").tempdir().context("temp dir")?;
        let mut env: Vec<(String, String)> = vec![
            ("GDK_BACKEND".into(), "x11".into()),
            // The client's debug lines say how many pictures of a watched share arrive each second.
            ("PARLEY_LOG".into(), "info,parley_core::client=debug,livekit=off,pulseaudio=off".into()),
            ("NO_COLOR".into(), "1".into()),
            // Found before XDG_CACHE_HOME moves: the LiveKit FFI library lives under the user's.
            (parley_deps::DEPS_DIR_ENV.into(), parley_deps::Layout::discover().root().display().to_string()),
        ];
        for (key, name) in [
            ("PARLEY_CONFIG_DIR", "parley-config"),
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_RUNTIME_DIR", "runtime"),
        ] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
            env.push((key.into(), path.display().to_string()));
        }
        set_private(&dir.path().join("runtime"))?;
        env.extend(xvfb.env());
        env.extend(pulse.env());
        env.extend(keyring.env());
        Ok(Desktop { _xvfb: xvfb, pulse, _keyring: keyring, dir, env })
    }

    fn launch(&self, binary: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Result<Running> {
        let mut command = Command::new(binary);
        // Its own process group, so that stopping it reaches WebKit's processes too.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .args(args)
            .env_remove("WAYLAND_DISPLAY")
            .envs(self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let started = Instant::now();
        let stderr = child.stderr.take().context("the app's stderr")?;
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send((Instant::now(), strip_ansi(&line))).is_err() {
                    return;
                }
            }
        });
        Ok(Running { child, started, lines, log: Vec::new() })
    }

    /// One trial: spawn → window visible and page loaded, in ms. The app is stopped after.
    fn cold_start(&self, program: Program, binary: &Path) -> Result<f64> {
        let mut running = self.launch(binary, &[], &[])?;
        let mut loaded = None;
        let mut shown = None;
        while loaded.is_none() || shown.is_none() {
            if running.started.elapsed() > COLD_START_TIMEOUT {
                bail!(
                    "{} showed no loaded window within {} s (window {}, page {}); its log ends with:\n{}",
                    program.label(),
                    COLD_START_TIMEOUT.as_secs(),
                    if shown.is_some() { "shown" } else { "not shown" },
                    if loaded.is_some() { "loaded" } else { "not loaded" },
                    running.log_tail()
                );
            }
            if loaded.is_none() {
                loaded = running.poll(Duration::from_millis(20), |line| line.ends_with("page loaded"))?;
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
            if shown.is_none() && self.window_visible(program)? {
                shown = Some(Instant::now());
            }
        }
        let ready = loaded.max(shown).context("both marks are set")?;
        let milliseconds = ready.duration_since(running.started).as_secs_f64() * 1000.0;
        running.stop();
        Ok(milliseconds)
    }

    fn window_visible(&self, program: Program) -> Result<bool> {
        let status = Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", program.title_pattern()])
            .envs(self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running xdotool (Debian package xdotool; run `cargo xtask setup`)")?;
        Ok(status.success())
    }

    /// The tree's memory after the app has run idle for [`SETTLE`].
    fn idle_memory(&self, binary: &Path, extra_env: &[(&str, &str)]) -> Result<TreeMemory> {
        let mut running = self.launch(binary, &[], extra_env)?;
        running.wait_for(Duration::from_secs(30), |line| line.ends_with("page loaded"))?;
        std::thread::sleep(SETTLE);
        let memory = TreeMemory::read(running.child.id());
        running.stop();
        memory
    }

    /// The app in a call with [`SPEAKERS`] tone speakers: memory, CPU, and the soak's samples.
    /// `profile_to`: where to write `perf`'s view of the call (not written without it).
    fn call(&self, bench: &Bench, binary: &Path, soak_minutes: f64, profile_to: Option<&Path>) -> Result<Call> {
        let soak = Duration::from_secs_f64(soak_minutes.max(0.0) * 60.0);
        let lifetime = 90.0 + 2.0 * (SETTLE.as_secs_f64() + CPU_WINDOW.as_secs_f64()) + soak.as_secs_f64();
        let mut crowd = bench.crowd(ROOM, SPEAKERS, lifetime)?;
        std::thread::sleep(Duration::from_secs(3));
        let link = format!("parley://join/{PROFILE}/{ROOM}");
        // No window driver here to click the link's Join: the environment lets it join at once.
        let result = self.launch(binary, &[link.as_str()], &[(LINKS_JOIN, "1")]).and_then(|mut running| {
            running.wait_for(Duration::from_secs(30), |line| {
                let connected = line.contains("call state")
                    && (line.contains("phase=\"connected\"") || line.contains("phase=connected"))
                    && participants(line) >= SPEAKERS;
                // A failed join ends the wait too; the check below reports it.
                connected || line.contains("phase=\"failed")
            })?;
            if let Some(failed) = running.log.iter().find(|line| line.contains("phase=\"failed")) {
                bail!("the app did not join the call: {failed}");
            }
            std::thread::sleep(SETTLE);
            let pid = running.child.id();
            let cpu_percent = cpu_over_window(pid, CPU_WINDOW);
            let memory = TreeMemory::read(pid)?;
            if let Some(path) = profile_to {
                println!("bench app: sampling the app's processes with perf for {} s…", CPU_WINDOW.as_secs());
                crate::bench_proc::profile_into(pid, CPU_WINDOW, &self.dir.path().join("app.perf.data"), path)?;
            }

            println!("bench app: watching a 1080p30 screen share…");
            // The crowd leaves first: on 2 cores a 1080p30 sharer (≈ 86 % of a core, `bench
            // share`) beside 10 speakers, the server and the app got a few pictures a second,
            // and a viewer fed 3 fps looks cheap. The viewer's cost is measured against the
            // same room with the share not watched, so the crowd's absence cancels out.
            crate::bench_audio::stop(&mut crowd);
            let screen = Xvfb::start_sized(1920, 1080).context("starting the sharer's display")?;
            let pattern = crate::bench_audio::open_pattern(bench, &screen)?;
            let share = ["--share-screen", "0", "--share-quality", "1080p30"];
            let alice = bench.peer_with_env(ROOM, "alice", lifetime, &share, &screen.env())?;
            std::thread::sleep(SETTLE);
            let unwatched_cpu_percent = cpu_over_window(pid, CPU_WINDOW);
            let unwatched_memory = TreeMemory::read(pid)?;
            let socket = self.dir.path().join("runtime").join("parley").join("control.sock");
            let watch = Command::new(&bench.parley)
                .args(["ctl", "--socket"])
                .arg(&socket)
                .args(["watch", "alice"])
                .output()
                .context("parley ctl watch alice")?;
            if !watch.status.success() {
                bail!("the app would not watch alice's share: {}", String::from_utf8_lossy(&watch.stderr).trim());
            }
            // Measured only once pictures arrive, and the rate they arrived at is reported beside
            // the CPU: a share that did not flow would make watching look free.
            running
                .wait_for(Duration::from_secs(30), |line| line.contains("first picture of a watched screen share"))?;
            std::thread::sleep(SETTLE);
            running.poll(Duration::ZERO, |_| false)?;
            let before = running.log.len();
            let sharer_before = crate::bench_proc::cpu_seconds(alice.child.id());
            let watching_cpu_percent = cpu_over_window(pid, CPU_WINDOW);
            let sharer_cpu_percent =
                (crate::bench_proc::cpu_seconds(alice.child.id()) - sharer_before) * 100.0 / CPU_WINDOW.as_secs_f64();
            running.poll(Duration::from_millis(100), |_| false)?;
            let watched_fps = reported_fps(&running.log[before..]);
            if watched_fps.len() < CPU_WINDOW.as_secs() as usize / 2 || percentile(&watched_fps, 50.0) < 1.0 {
                bail!("the app's viewer received no steady pictures while its CPU was measured: {watched_fps:?}");
            }
            let watched_size = running.log[before..]
                .iter()
                .rev()
                .find(|line| line.contains("watched screen share"))
                .and_then(|line| Some(format!("{}×{}", field(line, "width")?, field(line, "height")?)))
                .unwrap_or_default();
            let viewer_size = running
                .log
                .iter()
                .rev()
                .find(|line| line.contains("viewer is drawn at a new size"))
                .and_then(|line| Some(format!("{}×{}", field(line, "width")?, field(line, "height")?)))
                .unwrap_or_default();
            let watching_memory = TreeMemory::read(pid)?;
            if let Some(path) = profile_to {
                println!("bench app: sampling the app's processes with perf while it watches…");
                let data = self.dir.path().join("watch.perf.data");
                crate::bench_proc::profile_into(pid, CPU_WINDOW, &data, &path.with_extension("watch.txt"))?;
            }
            let mut soak_pss_mb = Vec::new();
            let mut soak_by_process: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            if !soak.is_zero() {
                let started = Instant::now();
                loop {
                    let sample = TreeMemory::read(pid)?;
                    for process in &sample.processes {
                        soak_by_process.entry(process.name.clone()).or_default().push(process.pss_kb as f64 / 1024.0);
                    }
                    soak_pss_mb.push(sample.pss_mb());
                    println!(
                        "bench app:   soak {:.0} s: {:.1} MB PSS",
                        started.elapsed().as_secs_f64(),
                        soak_pss_mb[soak_pss_mb.len() - 1]
                    );
                    if started.elapsed() + SOAK_INTERVAL > soak + Duration::from_secs(1) {
                        break;
                    }
                    std::thread::sleep(SOAK_INTERVAL);
                }
            }
            // A screen that stops moving (a slide, a page being read) is the common case: the
            // pattern closes, the shared display stays black, and the viewer keeps watching.
            println!("bench app: watching the same share once its screen is still…");
            drop(pattern);
            std::thread::sleep(SETTLE);
            running.poll(Duration::ZERO, |_| false)?;
            let before = running.log.len();
            let still_cpu_percent = cpu_over_window(pid, CPU_WINDOW);
            running.poll(Duration::from_millis(100), |_| false)?;
            let still_fps = reported_fps(&running.log[before..]);
            running.stop();
            Ok(Call {
                still_cpu_percent,
                still_fps,
                memory,
                cpu_percent,
                unwatched_memory,
                unwatched_cpu_percent,
                sharer_cpu_percent,
                watching_memory,
                watching_cpu_percent,
                watched_fps,
                watched_size,
                viewer_size,
                soak_pss_mb,
                soak_by_process,
            })
        });
        crate::bench_audio::stop(&mut crowd);
        result
    }
}

impl Desktop {
    /// A Chromium tab running livekit-client in a call like the app's: its own room with
    /// [`SPEAKERS`] tone speakers, its microphone open (the same silent null sink as the app's,
    /// with a browser's default echo cancellation, noise suppression and gain control), playing
    /// to the same speaker. The CPU of Chromium's processes over [`CPU_WINDOW`] (the Node
    /// driver that started it is left out: it only waits).
    fn browser_tab(&self, bench: &Bench) -> Result<BTreeMap<String, f64>> {
        // Chromium lists no monitor sources as microphones: a remap of the monitor is one.
        self.pulse
            .pactl(&[
                "load-module",
                "module-remap-source",
                "source_name=browser_mic",
                "master=microphone.monitor",
                "source_properties=device.description=browser_mic",
            ])
            .map_err(anyhow::Error::msg)?;
        let room = "bench-browser";
        let seconds = 60.0 + SETTLE.as_secs_f64() + CPU_WINDOW.as_secs_f64();
        let mut crowd = bench.crowd(room, SPEAKERS, seconds + 20.0)?;
        std::thread::sleep(Duration::from_secs(3));
        let options = BrowserPeerOptions {
            microphone: Some("browser_mic".into()),
            processing: true,
            seconds,
            ..Default::default()
        };
        let mut env = self.env.clone();
        env.push(("PULSE_SINK".into(), "speaker".into()));
        let result = bench.browser(room, "browser-tab", options, &env).and_then(|mut tab| {
            if tab.wait_for("published", Duration::from_secs(40)).is_none() {
                bail!("the browser tab did not join and publish: {:?}", tab.events());
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let subscribed =
                |tab: &BrowserPeer| tab.events().iter().filter(|event| event["event"] == "subscribed").count();
            while subscribed(&tab) < SPEAKERS && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            if subscribed(&tab) < SPEAKERS {
                bail!("the browser tab hears {} of {SPEAKERS} speakers", subscribed(&tab));
            }
            std::thread::sleep(SETTLE);
            let mut cpu = cpu_over_window(tab.pid(), CPU_WINDOW);
            cpu.remove("node");
            Ok(cpu)
        });
        crate::bench_audio::stop(&mut crowd);
        result
    }
}

/// Makes a directory readable by its owner only (`XDG_RUNTIME_DIR` must be).
fn set_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The `participants=N` of a `call state` log line (0 when absent).
fn participants(line: &str) -> usize {
    field(line, "participants").and_then(|value| value.parse().ok()).unwrap_or(0)
}

/// The value of a `name=value` field of a log line.
/// The pictures a second the app's periodic "watched screen share" lines in `log` report.
fn reported_fps(log: &[String]) -> Vec<f64> {
    log.iter()
        .filter(|line| line.contains("watched screen share"))
        .filter_map(|line| field(line, "fps")?.parse().ok())
        .collect()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
}

/// `line` without terminal escape sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(character) = chars.next() {
        if character == '\u{1b}' {
            for code in chars.by_ref() {
                if code.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(character);
        }
    }
    out
}

struct Call {
    memory: TreeMemory,
    /// % of one core, by process name, over [`CPU_WINDOW`].
    cpu_percent: BTreeMap<String, f64>,
    /// The crowd gone and alice sharing 1080p30, not watched: the base for watching.
    unwatched_memory: TreeMemory,
    unwatched_cpu_percent: BTreeMap<String, f64>,
    /// alice's own CPU while the app watched her (% of a core): a starved sharer shows here.
    sharer_cpu_percent: f64,
    /// The same room while the app watches alice's share.
    watching_memory: TreeMemory,
    watching_cpu_percent: BTreeMap<String, f64>,
    /// The pictures a second the viewer received during that CPU window (one sample a second),
    /// and their size.
    watched_fps: Vec<f64>,
    watched_size: String,
    /// The size the app's viewer drew the share at (device pixels), as it told the core.
    viewer_size: String,
    /// The tree's CPU while watching the share once its screen stopped moving, and the pictures a
    /// second received meanwhile.
    still_cpu_percent: BTreeMap<String, f64>,
    still_fps: Vec<f64>,
    soak_pss_mb: Vec<f64>,
    /// The same samples per process name.
    soak_by_process: BTreeMap<String, Vec<f64>>,
}

#[cfg(test)]
mod tests {
    use super::{participants, strip_ansi, thirds};

    #[test]
    fn soak_growth_compares_the_medians_of_the_first_and_last_thirds() {
        // Noise spikes at either end do not move the medians; a steady climb does.
        let noisy = [300.0, 330.0, 301.0, 299.0, 298.0, 300.0, 299.0, 340.0, 301.0];
        assert_eq!(thirds(&noisy), Some((301.0, 301.0)));
        let climbing = [300.0, 301.0, 302.0, 303.0, 304.0, 305.0, 306.0, 307.0, 308.0];
        assert_eq!(thirds(&climbing), Some((301.0, 307.0)));
        assert_eq!(thirds(&[1.0, 2.0]), None);
    }

    #[test]
    fn call_state_lines_are_read_through_colours() {
        let line = strip_ansi(
            "\u{1b}[2m2025-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m call state \u{1b}[3mphase\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"connected\" \u{1b}[3mparticipants\u{1b}[0m\u{1b}[2m=\u{1b}[0m11",
        );
        assert!(line.contains("phase=\"connected\""), "escapes are gone: {line}");
        assert_eq!(participants(&line), 11, "the count is read from {line}");
        assert_eq!(participants("call state phase=\"idle\""), 0, "no count reads as none");
    }
}
