//! `prune-cache`: keeps CI's shared target directory from filling the disk.
//!
//! CI builds every run from a fresh clone into one target directory kept outside the clone.
//! Cargo rebuilds the workspace's own crates on each fresh clone (their sources are newer than
//! any earlier build) and, whenever the lock file, a feature or a flag changes, under new hashes:
//! the old artifacts are never read again, yet each run used to leave gigabytes of them behind
//! (test binaries with debug info are hundreds of megabytes each) until the disk was full.
//! Third-party artifacts are what the cache is for, so they stay, unless the directory is still
//! over its limit after pruning, in which case it is emptied and the run builds cold.
//!
//! No crate fits this: `cargo-sweep` is a separate tool to install, and prunes by time or by
//! toolchain, not by "the workspace's own crates", which is the one rule that is always right here.

use std::collections::HashSet;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// What pruning removed and what is left.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Pruned {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    pub(crate) left_bytes: u64,
    pub(crate) emptied: bool,
}

/// Prunes `target`: the workspace's own artifacts and all incremental state go, except what was
/// written after `keep_since` (this run's own build of xtask); if what is left is still over
/// `max_bytes`, everything goes.
pub(crate) fn prune(
    target: &Path,
    workspace_names: &HashSet<String>,
    keep_since: SystemTime,
    max_bytes: u64,
) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    if !target.is_dir() {
        return Ok(pruned);
    }
    for profile_dir in profile_dirs(target)? {
        for (kind, all) in [("deps", false), ("build", false), (".fingerprint", false), ("incremental", true)] {
            let dir = profile_dir.join(kind);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries {
                let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let recent = entry.metadata().and_then(|meta| meta.modified()).is_ok_and(|time| time >= keep_since);
                if recent {
                    continue;
                }
                if all || crate_of(&name).is_some_and(|krate| workspace_names.contains(&krate)) {
                    pruned.bytes += remove(&entry.path())?;
                    pruned.entries += 1;
                }
            }
        }
    }
    pruned.left_bytes = size_of(target);
    if pruned.left_bytes > max_bytes {
        pruned.bytes += remove(target)?;
        pruned.left_bytes = 0;
        pruned.emptied = true;
    }
    Ok(pruned)
}

/// The directories that hold one profile's artifacts: `debug`, `release`, and the same under each
/// cross target (`x86_64-pc-windows-gnu/debug`, …).
fn profile_dirs(target: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(target).with_context(|| format!("reading {}", target.display()))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.join(".fingerprint").is_dir() {
            dirs.push(path);
        } else {
            // A target triple's directory holds profiles of its own.
            dirs.extend(
                std::fs::read_dir(&path)?
                    .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                    .filter(|profile| profile.join(".fingerprint").is_dir()),
            );
        }
    }
    Ok(dirs)
}

/// The crate an artifact belongs to, normalised to underscores: `libparley_core-0123abcd.rlib`,
/// `parley_core-0123abcd.d`, `parley-core-0123abcd` (a build or fingerprint directory) and
/// `cli-0123abcd` (a test binary) all name theirs before the last `-`.
fn crate_of(name: &str) -> Option<String> {
    let (stem, extension) = name.split_once('.').unwrap_or((name, ""));
    let (krate, hash) = stem.rsplit_once('-')?;
    if hash.is_empty() || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // Libraries carry a `lib` prefix the crate's name does not have.
    let library = matches!(extension, "rlib" | "rmeta" | "so" | "a" | "dylib");
    let krate = if library { krate.strip_prefix("lib").unwrap_or(krate) } else { krate };
    Some(krate.replace('-', "_"))
}

/// The names of the workspace's packages and of their targets (libraries, binaries, tests,
/// benches, build scripts share these), normalised to underscores.
pub(crate) fn workspace_names(metadata: &serde_json::Value) -> HashSet<String> {
    let mut names = HashSet::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        if let Some(name) = package["name"].as_str() {
            names.insert(name.replace('-', "_"));
        }
        for target in package["targets"].as_array().into_iter().flatten() {
            if let Some(name) = target["name"].as_str() {
                names.insert(name.replace('-', "_"));
            }
        }
    }
    names
}

fn remove(path: &Path) -> Result<u64> {
    let bytes = size_of(path);
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    result.with_context(|| format!("removing {}", path.display()))?;
    Ok(bytes)
}

/// Bytes under `path` (a file's own size; symlinks are not followed).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.filter_map(|entry| entry.ok()).map(|entry| size_of(&entry.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names() -> HashSet<String> {
        ["parley_core", "parley", "cli", "xtask"].into_iter().map(String::from).collect()
    }

    #[test]
    fn artifacts_are_named_by_their_crate() {
        assert_eq!(crate_of("libparley_core-0123abcd.rlib").as_deref(), Some("parley_core"));
        assert_eq!(crate_of("parley_core-0123abcd.d").as_deref(), Some("parley_core"));
        assert_eq!(crate_of("parley-core-0123abcd").as_deref(), Some("parley_core"));
        assert_eq!(crate_of("cli-0123abcd").as_deref(), Some("cli"));
        assert_eq!(crate_of("libc-0123abcd.rlib").as_deref(), Some("c"));
        assert_eq!(crate_of("libc-0123abcd.d").as_deref(), Some("libc"));
        assert_eq!(crate_of("parley").as_deref(), None, "the uplifted binary has no hash");
        assert_eq!(crate_of("serde-json-notahash").as_deref(), None);
    }

    fn write(path: &Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![0u8; bytes]).unwrap();
    }

    #[test]
    fn the_workspaces_own_artifacts_and_incremental_state_go_and_third_party_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        let debug = target.join("debug");
        let windows = target.join("x86_64-pc-windows-gnu/debug");
        write(&debug.join("deps/libparley_core-00aa.rlib"), 100);
        write(&debug.join("deps/cli-00bb"), 100);
        write(&debug.join("deps/libserde-00cc.rlib"), 10);
        write(&debug.join("build/parley-core-00dd/output"), 10);
        write(&debug.join("build/ring-00ee/output"), 10);
        write(&debug.join(".fingerprint/parley-00ff/bin-parley"), 10);
        write(&debug.join(".fingerprint/tokio-0011/lib-tokio"), 10);
        write(&debug.join("incremental/tokio-0022/s-abc/x.o"), 50);
        write(&windows.join("deps/libparley_core-0033.rlib"), 100);
        write(&windows.join("deps/libwindows-0044.rlib"), 10);
        std::fs::create_dir_all(windows.join(".fingerprint")).unwrap();

        let pruned = prune(target, &names(), SystemTime::now() + Duration::from_secs(60), 1 << 20).unwrap();
        assert_eq!(pruned.entries, 6);
        assert_eq!(pruned.bytes, 100 + 100 + 10 + 10 + 50 + 100);
        assert!(!pruned.emptied);
        for gone in [
            "debug/deps/libparley_core-00aa.rlib",
            "debug/deps/cli-00bb",
            "debug/build/parley-core-00dd",
            "debug/.fingerprint/parley-00ff",
            "debug/incremental/tokio-0022",
            "x86_64-pc-windows-gnu/debug/deps/libparley_core-0033.rlib",
        ] {
            assert!(!target.join(gone).exists(), "{gone} should be gone");
        }
        for kept in [
            "debug/deps/libserde-00cc.rlib",
            "debug/build/ring-00ee/output",
            "debug/.fingerprint/tokio-0011/lib-tokio",
            "x86_64-pc-windows-gnu/debug/deps/libwindows-0044.rlib",
        ] {
            assert!(target.join(kept).exists(), "{kept} should stay");
        }
        assert_eq!(pruned.left_bytes, 40);
    }

    #[test]
    fn what_this_run_just_built_stays() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path();
        write(&target.join("debug/deps/xtask-00aa"), 10);
        std::fs::create_dir_all(target.join("debug/.fingerprint")).unwrap();
        let pruned = prune(target, &names(), SystemTime::now() - Duration::from_secs(60), 1 << 20).unwrap();
        assert_eq!(pruned.entries, 0);
        assert!(target.join("debug/deps/xtask-00aa").exists());
    }

    #[test]
    fn a_cache_still_over_its_limit_is_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        write(&target.join("debug/deps/libserde-00cc.rlib"), 1000);
        write(&target.join("debug/deps/libparley_core-00aa.rlib"), 10);
        std::fs::create_dir_all(target.join("debug/.fingerprint")).unwrap();
        let pruned = prune(&target, &names(), SystemTime::now() + Duration::from_secs(60), 500).unwrap();
        assert!(pruned.emptied);
        assert_eq!(pruned.bytes, 1010);
        assert!(!target.exists());
    }

    #[test]
    fn workspace_names_come_from_packages_and_their_targets() {
        let metadata = serde_json::json!({"packages": [
            {"name": "parley-cli", "targets": [{"name": "parley"}, {"name": "cli"}]},
            {"name": "xtask", "targets": [{"name": "xtask"}]},
        ]});
        let names = workspace_names(&metadata);
        assert_eq!(names, ["parley_cli", "parley", "cli", "xtask"].into_iter().map(String::from).collect());
    }
}
