//! The processes of an app's tree, for `bench app`: a started app and its log ([`Running`]),
//! listing its processes from `/proc`, their names, CPU over a window, RSS and PSS, where
//! their time goes (`perf`), and signalling them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::clock_ticks_per_second;

/// The CPU of each process of `root`'s tree over `window` from now, in % of one core, by
/// process name.
pub fn cpu_over_window(root: u32, window: Duration) -> BTreeMap<String, f64> {
    let before = tree_ticks(root);
    std::thread::sleep(window);
    let after = tree_ticks(root);
    let mut cpu_percent = BTreeMap::new();
    for (process, (name, ticks)) in &after {
        let earlier = before.get(process).map_or(0, |(_, ticks)| *ticks);
        *cpu_percent.entry(name.clone()).or_insert(0.0) +=
            ticks.saturating_sub(earlier) as f64 / clock_ticks_per_second() / window.as_secs_f64() * 100.0;
    }
    cpu_percent
}

/// The CPU time `root`'s tree has used so far, in seconds (processes that exited drop out).
pub fn cpu_seconds(root: u32) -> f64 {
    tree_ticks(root).values().map(|(_, ticks)| *ticks as f64).sum::<f64>() / clock_ticks_per_second()
}

/// Sends `signal` to `target` (a pid, or `-pgid` for a group). `kill` fails for a process that
/// exited since it was listed — the outcome wanted — so only failing to run `kill` is reported.
pub fn signal(signal: &str, target: &str) {
    let sent = Command::new("kill").args([signal, "--", target]).stderr(Stdio::null()).status();
    if let Err(error) = sent {
        eprintln!("bench app: warning: cannot run kill: {error}");
    }
}

/// Alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// `root` and all its descendants (root first), from the parent ids in `/proc/*/stat`.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let parent =
                stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if let Some(parent) = parent {
                parents.push((pid, parent));
            }
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(parents.iter().filter(|(_, of)| *of == parent).map(|(pid, _)| *pid));
        index += 1;
    }
    tree
}

/// A process's name: its executable's file name (`comm` cuts names at 15 characters).
pub fn process_name(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|cmdline| {
            let first = cmdline.split(|byte| *byte == 0).next()?.to_vec();
            let path = PathBuf::from(String::from_utf8_lossy(&first).into_owned());
            Some(path.file_name()?.to_string_lossy().into_owned())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("pid {pid}"))
}

/// utime + stime (clock ticks) of each live process of the tree, with its name.
pub fn tree_ticks(root: u32) -> BTreeMap<u32, (String, u64)> {
    process_tree(root)
        .into_iter()
        .filter_map(|pid| {
            let (ticks, _) = crate::bench::process_usage(pid).ok()?;
            Some((pid, (process_name(pid), ticks)))
        })
        .collect()
}

pub struct ProcessMemory {
    pub pid: u32,
    pub name: String,
    pub rss_kb: u64,
    pub pss_kb: u64,
}

/// RSS and PSS of each process of an app's tree.
pub struct TreeMemory {
    pub processes: Vec<ProcessMemory>,
}

impl TreeMemory {
    pub fn read(root: u32) -> Result<TreeMemory> {
        let processes: Vec<ProcessMemory> = process_tree(root)
            .into_iter()
            .filter_map(|pid| {
                // A process may end between listing and reading; it then holds no memory.
                let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
                let field = |name: &str| {
                    rollup
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
                };
                Some(ProcessMemory { pid, name: process_name(pid), rss_kb: field("Rss:")?, pss_kb: field("Pss:")? })
            })
            .collect();
        if processes.is_empty() {
            bail!(
                "cannot read the memory of process {root} (is it running, and is /proc/<pid>/smaps_rollup readable?)"
            );
        }
        Ok(TreeMemory { processes })
    }

    pub fn pss_mb(&self) -> f64 {
        self.processes.iter().map(|process| process.pss_kb).sum::<u64>() as f64 / 1024.0
    }

    pub fn rss_mb(&self) -> f64 {
        self.processes.iter().map(|process| process.rss_kb).sum::<u64>() as f64 / 1024.0
    }

    /// A total row, then one row per process (kernel-side helpers with no memory left out).
    pub fn rows(&self, name: &str, rows: &mut Vec<(String, String, String)>) {
        rows.push((
            format!("{name}: PSS (RSS), {} processes", self.processes.len()),
            format!("{:.1} MB ({:.1} MB)", self.pss_mb(), self.rss_mb()),
            String::new(),
        ));
        for process in self.processes.iter().filter(|process| process.rss_kb > 0) {
            rows.push((
                format!("  · {} ({})", process.name, process.pid),
                format!("{:.1} MB ({:.1} MB)", process.pss_kb as f64 / 1024.0, process.rss_kb as f64 / 1024.0),
                String::new(),
            ));
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "pss_mb": self.pss_mb(),
            "rss_mb": self.rss_mb(),
            "processes": self.processes.iter().map(|process| json!({
                "pid": process.pid,
                "name": process.name,
                "rss_kb": process.rss_kb,
                "pss_kb": process.pss_kb,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Samples every process of `root`'s tree with `perf record` (499 Hz) for `window`, and returns
/// `perf report`'s share of the samples by thread and library, then by thread and function
/// (rows under 1 % left out), then who calls the functions above 3 % (call chains unwound from
/// the stack copies perf takes: release builds keep no frame pointers).
pub fn profile(root: u32, window: Duration, data: &Path) -> Result<String> {
    let pids: Vec<String> = process_tree(root).iter().map(u32::to_string).collect();
    let recorded = Command::new("perf")
        .args(["record", "-F", "199", "--call-graph", "dwarf,16384", "-o"])
        .arg(data)
        .args(["-p", &pids.join(","), "--", "sleep", &window.as_secs().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("perf (Debian's linux-perf; `cargo xtask setup` installs it)")?;
    if !recorded.success() {
        bail!("perf record failed ({recorded}); kernel.perf_event_paranoid may forbid it");
    }
    let mut text = String::new();
    let views: [(&str, &[&str], usize); 4] = [
        ("by thread and library", &["--sort", "comm,dso", "--percent-limit", "1", "-g", "none"], 40),
        ("by thread and function", &["--sort", "comm,sym", "--percent-limit", "1", "-g", "none"], 40),
        // WebKit's web process spreads its time thin (much of it in the kernel): its own view.
        (
            "in WebKit's web process, by function",
            &["--comms", "WebKitWebProces", "--sort", "dso,sym", "--percent-limit", "0.2", "-g", "none"],
            30,
        ),
        (
            "callers of the functions above 3 %",
            &["--sort", "comm,sym", "--percent-limit", "3", "-g", "caller,0.5,callee"],
            150,
        ),
    ];
    for (title, args, lines) in views {
        let report = Command::new("perf")
            .args(["report", "--stdio", "--no-children"])
            .args(args)
            .arg("-i")
            .arg(data)
            .output()
            .context("perf report")?;
        text.push_str(&format!("perf: share of the samples {title}\n"));
        let kept = String::from_utf8_lossy(&report.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .take(lines)
            .fold(String::new(), |kept, line| kept + line.trim_end() + "\n");
        text.push_str(&kept);
    }
    Ok(text)
}

/// [`profile`], printed and written to `path` (its folder made if missing).
pub fn profile_into(root: u32, window: Duration, data: &Path, path: &Path) -> Result<()> {
    let text = profile(root, window, data)?;
    println!("{text}");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    println!("bench app: wrote {}", path.display());
    Ok(())
}
/// A started app, its stderr lines arriving on `lines`. Stopped (with its whole tree) on drop.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) started: Instant,
    pub(crate) lines: Receiver<(Instant, String)>,
    pub(crate) log: Vec<String>,
}

impl Running {
    /// Waits up to `timeout` for a line matching `matches`; returns when it arrived.
    pub(crate) fn poll(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> Result<Option<Instant>> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok((at, line)) => {
                    let found = matches(&line);
                    self.log.push(line);
                    if found {
                        return Ok(Some(at));
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().context("waiting for the app")?;
                    bail!("the app exited ({status}); its log ends with:\n{}", self.log_tail());
                }
            }
        }
    }

    pub(crate) fn wait_for(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> Result<Instant> {
        match self.poll(timeout, matches)? {
            Some(at) => Ok(at),
            None => bail!(
                "the app did not log what was awaited within {} s; its log ends with:\n{}",
                timeout.as_secs(),
                self.log_tail()
            ),
        }
    }

    pub(crate) fn log_tail(&self) -> String {
        self.log[self.log.len().saturating_sub(20)..].join("\n")
    }

    /// Ends the app and every process it started (SIGTERM to its group, then SIGKILL to
    /// whatever of its tree is left), and waits until they are gone.
    pub(crate) fn stop(&mut self) {
        if self.child.try_wait().is_ok_and(|status| status.is_some()) {
            return;
        }
        let pid = self.child.id();
        let tree = process_tree(pid);
        signal("-TERM", &format!("-{pid}"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && tree.iter().any(|process| alive(*process)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for process in tree.iter().filter(|process| alive(**process)) {
            signal("-KILL", &process.to_string());
        }
        if let Err(error) = self.child.wait() {
            eprintln!("bench app: warning: waiting for the app failed: {error}");
        }
        // Let the killed processes be reaped by their parents before the next launch.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && tree.iter().any(|process| alive(*process)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
