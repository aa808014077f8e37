//! `cargo xtask <command>`: the project's own tasks.
//!
//! * `setup` — installs what the workspace needs outside Cargo (idempotent; seconds when done);
//! * `demo` — the newcomer's first run: a local LiveKit server, a bot speaking in a room, and the
//!   desktop app joined to it (`--cli`: two CLI clients that hear each other);
//! * `test` — setup, then formatting, lints and every test (Rust and the UI's), and on Linux the
//!   Windows and macOS cross checks (clippy for both, Windows unit tests under Wine, actionlint);
//! * `bench engine|audio|app` — measurements through the real server and real sound devices, and
//!   of the desktop app against an empty Tauri window (table + JSON, never a test);
//! * `app` — builds the desktop app (UI, then the Tauri shell); `--smoke` starts it through
//!   WebDriver and saves a screenshot;
//! * `gen-proto` — regenerates the FFI protobuf descriptors from the pinned wheel;
//! * `stage-ffi --target T` — stages a release target's FFI library for the installers;
//! * `bundle` — builds the Linux packages and checks them installed;
//! * `prune-cache` — CI's first step: removes what earlier runs left in the shared target dir.

mod app;
mod bench;
mod bench_app;
mod bench_audio;
mod bench_proc;
mod bench_share;
mod bundle;
mod cache;
mod cross;
mod demo;
mod setup;
mod updates;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install system packages, the LiveKit FFI library and the LiveKit server (idempotent).
    Setup {
        /// Print `KEY=value` lines for the installed artifacts and nothing else.
        #[arg(long)]
        print_env: bool,
    },
    /// Set up, start a local LiveKit server with a bot speaking, and open the app joined to it.
    Demo {
        /// `--cli`: how long the two clients talk; headless app demo: how long it runs. Seconds.
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
        /// Two `parley` CLI clients instead of the app.
        #[arg(long)]
        cli: bool,
        /// Where a headless run saves its screenshot (default target/demo/parley.png).
        #[arg(long)]
        screenshot: Option<PathBuf>,
    },
    /// Set up and run every check: fmt, clippy, all tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_args: Vec<String>,
    },
    /// Measure (not test) through the real server.
    Bench {
        /// What to measure: `engine`, `audio`, `app` or `share`.
        suite: String,
        /// Where to write the JSON report (default: bench-results/<suite>.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Minutes of the no-growth soak (0 skips it). `audio`: default 10; `app`: default 0 (its
        /// target is 10 minutes in a call).
        #[arg(long)]
        soak_minutes: Option<f64>,
        /// `app`: also sample the app's process tree with `perf` in the 10-speaker call and while it
        /// watches a share, and print where its time goes, by thread and library, then by function.
        #[arg(long)]
        perf: bool,
    },
    /// Build the desktop app: the UI (npm), then the Tauri shell that embeds it.
    App {
        /// Build optimised (what users run; slower to build).
        #[arg(long)]
        release: bool,
        /// Then start it through WebDriver and save a screenshot (needs DISPLAY and a session bus:
        /// `dbus-run-session -- xvfb-run -a cargo xtask app --smoke`).
        #[arg(long)]
        smoke: bool,
    },
    /// Regenerate crates/livekit-ffi/proto/livekit_ffi.binpb from the pinned wheel.
    GenProto,
    /// Build the Linux packages (deb, rpm) and check them: contents, install, the installed
    /// app joining a room, its signed update (a tampered one refused), removal (needs root or
    /// passwordless sudo).
    Bundle {
        /// Package the optimised build (what releases ship; slower to build).
        #[arg(long)]
        release: bool,
    },
    /// Remove the workspace's own build artifacts (and incremental state) from the target
    /// directory, where earlier builds left them; empty it if it is still over `--max-gb`. CI runs
    /// this first: its target directory outlives each clone.
    PruneCache {
        /// Empty the target directory if what is left is larger than this many gigabytes.
        #[arg(long, default_value_t = 30.0)]
        max_gb: f64,
    },
    /// Put a release target's FFI library and the Tauri config overlay that bundles it into
    /// src-tauri/ffi/ (the release workflow runs it before `tauri build`).
    StageFfi {
        /// A Rust target triple, or `universal-apple-darwin` (needs `lipo`, i.e. a Mac).
        #[arg(long)]
        target: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Task::Setup { print_env } => setup::run(print_env),
        Task::Demo { seconds, cli, screenshot } => {
            setup::run(false)?;
            if cli { demo::run(seconds) } else { demo::app(seconds, screenshot) }
        }
        Task::Test { cargo_args } => {
            setup::run(false)?;
            test(&cargo_args)
        }
        Task::Bench { suite, out, soak_minutes, perf } => {
            setup::run(false)?;
            let out = out.unwrap_or_else(|| workspace_root().join(format!("bench-results/{suite}.json")));
            match suite.as_str() {
                "engine" => bench::engine(out),
                "audio" => bench_audio::audio(out, soak_minutes.unwrap_or(10.0)),
                "app" => bench_app::app(out, soak_minutes.unwrap_or(0.0), perf),
                "share" => bench_share::share(out),
                other => bail!("unknown benchmark suite {other:?}; available: engine, audio, app, share"),
            }
        }
        Task::App { release, smoke } => {
            setup::run(false)?;
            app::run(release, smoke).map(|_| ())
        }
        Task::GenProto => setup::generate_proto(),
        Task::Bundle { release } => {
            setup::run(false)?;
            bundle::bundle(release)
        }
        Task::StageFfi { target } => bundle::stage_ffi(&target).map(|_| ()),
        Task::PruneCache { max_gb } => prune_cache(max_gb),
    }
}

fn test(cargo_args: &[String]) -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"]).context("formatting (run `cargo fmt --all`)")?;
    // The UI's own checks: svelte-check (types), eslint, and its component tests (Vitest).
    let ui = workspace_root().join("ui");
    app::npm(&ui, &["run", "--silent", "check"]).context("the UI's typecheck (cd ui && npm run check)")?;
    app::npm(&ui, &["run", "--silent", "lint"]).context("the UI's lint (cd ui && npm run lint)")?;
    app::npm(&ui, &["run", "--silent", "test"]).context("the UI's tests (cd ui && npm test)")?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).context("clippy")?;
    if cfg!(target_os = "linux") {
        // Windows and macOS from here: clippy for both, Windows unit tests under Wine, actionlint.
        cross::check()?;
    }
    let mut args = vec!["test", "--workspace"];
    args.extend(cargo_args.iter().map(String::as_str));
    if !cargo_args.iter().any(|arg| arg == "--") {
        // One test at a time: the end-to-end tests run real-time clients, servers and sound
        // devices, and two cores shared with another test's processes make their timing noisy.
        args.extend(["--", "--test-threads=1"]);
    }
    let (passed, failed) = cargo_test(&args)?;
    // One closing line over every test binary (cargo's own last line is the doc-tests' count).
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    Ok(())
}

fn prune_cache(max_gb: f64) -> Result<()> {
    let metadata = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !metadata.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&metadata.stderr).trim());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).context("reading cargo metadata")?;
    let target =
        PathBuf::from(metadata["target_directory"].as_str().context("cargo metadata has no target_directory")?);
    let gb = |bytes: u64| bytes as f64 / 1e9;
    // What this run built before it got here (xtask and its workspace dependencies) stays.
    let keep_since = std::time::SystemTime::now() - std::time::Duration::from_secs(15 * 60);
    let pruned = cache::prune(&target, &cache::workspace_names(&metadata), keep_since, (max_gb * 1e9) as u64)?;
    println!(
        "prune-cache: {}: removed {} entries ({:.1} GB), {:.1} GB left{}",
        target.display(),
        pruned.entries,
        gb(pruned.bytes),
        gb(pruned.left_bytes),
        if pruned.emptied { format!(" (it was over {max_gb} GB: emptied, this build is cold)") } else { String::new() }
    );
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up the `test result:` lines.
fn cargo_test(args: &[&str]) -> Result<(u64, u64)> {
    use std::io::BufRead;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(summary) = line.strip_prefix("test result: ") {
            passed += count_before(summary, " passed");
            failed += count_before(summary, " failed");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed ({status})");
    }
    Ok((passed, failed))
}

/// The number just before `label` in a `test result:` line (`ok. 3 passed; 0 failed; …`).
fn count_before(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label.trim_start())
        })
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs cargo in the workspace root, inheriting output.
pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with extra environment variables.
pub(crate) fn cargo_with_env(args: &[&str], env: &[(String, String)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// The `parley` binary, built first (debug profile, the workspace's target directory).
pub(crate) fn parley_binary() -> Result<PathBuf> {
    cargo(&["build", "--quiet", "--package", "parley-cli"])?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let binary = target.join("debug").join(format!("parley{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        bail!("built parley but cannot find it at {}", binary.display());
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn test_result_lines_are_counted() {
        let line = "ok. 13 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 40.69s";
        assert_eq!(count_before(line, " passed"), 13);
        assert_eq!(count_before(line, " failed"), 2);
        assert_eq!(count_before("FAILED. 3 passed; 1 failed; 0 ignored", " failed"), 1);
    }
}
