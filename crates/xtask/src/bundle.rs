//! `cargo xtask stage-ffi --target <triple>`: puts the LiveKit FFI library of a release target
//! (from its pinned, sha256-checked wheel) into `src-tauri/ffi/`, and writes the Tauri config
//! overlay `src-tauri/ffi/bundle.conf.json` that makes the installers carry it:
//!
//! * Linux and Windows: a resource at the root of the app's resource directory (beside the
//!   `.exe` on Windows, `/usr/lib/Parley/` in the deb, inside the AppImage), where the app looks
//!   first (`LibrarySearch::extra_dirs`);
//! * macOS: a framework in `Parley.app/Contents/Frameworks` (signed with the app; the engine finds
//!   it at `../Frameworks` from the executable). `universal-apple-darwin` joins the arm64 and
//!   x86_64 libraries with `lipo`, which only a Mac has.
//!
//! The release workflow runs it before `tauri build --config src-tauri/ffi/bundle.conf.json`.
//!
//! `cargo xtask bundle` (Linux) builds the deb and rpm that way and checks them as a user would
//! meet them: the deb holds the app, its FFI library and a `parley://` handler; it installs with
//! `apt-get install ./….deb`; the installed app starts under Xvfb and joins a room with only the
//! installed files (the demo's headless run, with setup's FFI library out of reach) and plays
//! what the room says; it updates itself to a newer signed build from a loopback release site,
//! refusing a tampered one first (see [`crate::updates`]); and `apt-get remove` leaves none of
//! its files behind. The AppImage is built only by the release workflow: its bundler downloads
//! linuxdeploy from GitHub, which this machine cannot reach.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use parley_deps::{FfiLibraryKind, Layout};

use crate::updates;

/// The universal macOS target of Tauri (both architectures in one bundle).
const UNIVERSAL_MACOS: &str = "universal-apple-darwin";

pub fn stage_ffi(target: &str) -> Result<PathBuf> {
    let layout = Layout::discover();
    let say = |line: String| println!("{line}");
    let staging = crate::workspace_root().join("src-tauri/ffi");
    // Only this target's library: a stale one of another target must not ride along.
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("emptying {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let (file_name, macos) = if target == UNIVERSAL_MACOS {
        let mut parts = Vec::new();
        for arch in ["aarch64-apple-darwin", "x86_64-apple-darwin"] {
            let kind = kind_of(arch)?;
            let library = layout.ffi_library_of(kind);
            crate::setup::install_library_from_wheel(&layout, kind, &library, &say)?;
            parts.push(library);
        }
        let file_name = kind_of("aarch64-apple-darwin")?.file_name;
        crate::setup::run_command(
            Command::new("lipo").arg("-create").args(&parts).arg("-output").arg(staging.join(file_name)),
        )
        .context("lipo (joining the two macOS libraries needs a Mac)")?;
        (file_name, true)
    } else {
        let kind = kind_of(target)?;
        let library = layout.ffi_library_of(kind);
        crate::setup::install_library_from_wheel(&layout, kind, &library, &say)?;
        let staged = staging.join(kind.file_name);
        std::fs::copy(&library, &staged)
            .with_context(|| format!("copying {} to {}", library.display(), staged.display()))?;
        (kind.file_name, target.contains("apple"))
    };
    let overlay = staging.join("bundle.conf.json");
    std::fs::write(&overlay, bundle_overlay(file_name, macos))
        .with_context(|| format!("writing {}", overlay.display()))?;
    println!("stage-ffi: {} and {} ready for {target}", staging.join(file_name).display(), overlay.display());
    Ok(overlay)
}

/// The installed app, as the deb puts it.
pub(crate) const INSTALLED_APP: &str = "/usr/bin/parley-app";
/// Where the deb puts the app's resources (Tauri: `/usr/lib/<productName>`).
const INSTALLED_LIBRARY: &str = "/usr/lib/Parley/liblivekit_ffi.so";

/// `cargo xtask bundle`: builds, inspects, installs, runs and removes the Linux packages.
pub fn bundle(release: bool) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("cargo xtask bundle builds the Linux packages; Windows and macOS installers come from release.yml");
    }
    let root = crate::workspace_root();
    let overlay = stage_ffi("x86_64-unknown-linux-gnu")?;
    let bundles = crate::app::target_dir(&root).join(if release { "release" } else { "debug" }).join("bundle");
    // The packages trust a key made for this check and look for updates on a loopback site.
    let key = updates::UpdateKey::generate(&root)?;
    let site = updates::UpdateSite::start()?;
    let updater = updates::overlay(&key, &site);
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("src-tauri/tauri.conf.json"))
            .context("reading src-tauri/tauri.conf.json")?,
    )
    .context("parsing src-tauri/tauri.conf.json")?;
    let old = conf["version"].as_str().context("tauri.conf.json has no version")?.to_string();
    let new = updates::next_version(&old)?;

    // The newer release first, signed as release.yml signs (TAURI_SIGNING_PRIVATE_KEY); kept
    // aside, since the next build writes into the same folder.
    let newer = serde_json::json!({ "version": new, "bundle": { "createUpdaterArtifacts": true } }).to_string();
    let mut tauri = tauri_build(&root, &overlay, &updater, &newer, release, &bundles)?;
    tauri.args(["--bundles", "deb"]).envs(key.signing_env());
    crate::setup::run_command(&mut tauri).context("tauri build of the newer version (deb)")?;
    let kept = tempfile::Builder::new().prefix("parley-newer-").tempdir().context("temp dir")?;
    let built = only_file(&bundles.join("deb"), "deb")?;
    let new_deb = kept.path().join(built.file_name().context("a file name")?);
    std::fs::copy(&built, &new_deb).context("keeping the newer deb")?;
    let signature = updates::signature_of(&built)?;

    let current = r#"{"bundle":{"createUpdaterArtifacts":false}}"#;
    let mut tauri = tauri_build(&root, &overlay, &updater, current, release, &bundles)?;
    tauri.args(["--bundles", "deb,rpm"]);
    crate::setup::run_command(&mut tauri).context("tauri build (deb, rpm)")?;
    let deb = only_file(&bundles.join("deb"), "deb")?;
    let rpm = only_file(&bundles.join("rpm"), "rpm")?;
    check_deb_contents(&deb)?;
    println!("bundle: {} holds the app, its FFI library and the parley:// handler", deb.display());
    let rpm_size = std::fs::metadata(&rpm).with_context(|| format!("reading {}", rpm.display()))?.len();
    println!("bundle: {} ({:.1} MB)", rpm.display(), rpm_size as f64 / 1e6);

    crate::setup::apt_get(&[
        std::ffi::OsStr::new("install"),
        "-y".as_ref(),
        "--no-install-recommends".as_ref(),
        deb.as_os_str(),
    ])
    .context("apt-get install of the deb")?;
    let ran = (|| {
        for path in [INSTALLED_APP, INSTALLED_LIBRARY] {
            if !Path::new(path).is_file() {
                bail!("the installed package has no {path}");
            }
        }
        // Setup's FFI library out of reach: the app must load the one the package installed.
        let env = [("PARLEY_DEPS_DIR".to_string(), "/nonexistent/parley-deps".to_string())];
        crate::demo::app_from(Path::new(INSTALLED_APP), 8.0, None, &env)?;
        updates::check(&site, &old, &new, &new_deb, &signature)
    })();
    crate::setup::apt_get(&["remove", "-y", "parley"]).context("apt-get remove parley")?;
    ran.context("the installed app")?;
    for path in [INSTALLED_APP, INSTALLED_LIBRARY] {
        if Path::new(path).exists() {
            bail!("apt-get remove left {path} behind");
        }
    }
    println!("bundle: the deb installs, its app joins a room from the installed files, and it removes cleanly");
    Ok(())
}

/// `tauri build` (the caller picks `--bundles`) with the FFI library, the updater's test key and
/// site, and `extra` (a config overlay); the bundle folder emptied first.
fn tauri_build(root: &Path, ffi: &Path, updater: &str, extra: &str, release: bool, bundles: &Path) -> Result<Command> {
    if bundles.exists() {
        std::fs::remove_dir_all(bundles).with_context(|| format!("emptying {}", bundles.display()))?;
    }
    let mut tauri = Command::new("npx");
    tauri.args(["--prefix", "ui", "tauri", "build", "--ci", "--config"]).arg(ffi);
    tauri.args(["--config", updater, "--config", extra]).current_dir(root);
    if !release {
        tauri.arg("--debug");
    }
    Ok(tauri)
}

/// The one `*.ext` file in `dir`.
fn only_file(dir: &Path, ext: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|found| found == ext))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        count => bail!("{} holds {count} .{ext} files; expected one", dir.display()),
    }
}

/// The deb must carry the app, the FFI library in its resources and a desktop entry that
/// handles `parley://` links.
fn check_deb_contents(deb: &Path) -> Result<()> {
    let listing = Command::new("dpkg-deb").arg("--contents").arg(deb).output().context("dpkg-deb --contents")?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    for wanted in [INSTALLED_APP, INSTALLED_LIBRARY] {
        // dpkg-deb lists `usr/bin/…` (older versions `./usr/bin/…`) last on each line.
        let listed = |line: &str| {
            line.split_whitespace()
                .last()
                .is_some_and(|path| path.trim_start_matches('.').trim_start_matches('/') == &wanted[1..])
        };
        if !listing.lines().any(listed) {
            bail!("{} does not contain {wanted}:\n{listing}", deb.display());
        }
    }
    let extracted = tempfile::tempdir().context("temp dir")?;
    crate::setup::run_command(Command::new("dpkg-deb").arg("--extract").arg(deb).arg(extracted.path()))?;
    let desktop = extracted.path().join("usr/share/applications/Parley.desktop");
    let entry = std::fs::read_to_string(&desktop).with_context(|| format!("reading {}", desktop.display()))?;
    // The link reaches the app only as the `%u` of its command line.
    let exec = entry.lines().find_map(|line| line.strip_prefix("Exec=")).unwrap_or_default();
    if !entry.contains("MimeType=x-scheme-handler/parley") || !exec.ends_with(" %u") {
        bail!("{} does not hand parley:// links to the app:\n{entry}", desktop.display());
    }
    Ok(())
}

fn kind_of(target: &str) -> Result<FfiLibraryKind> {
    match parley_deps::ffi_library_for_target(target) {
        Some(kind) => Ok(kind),
        None => bail!("LiveKit publishes no FFI library for {target}"),
    }
}

/// The Tauri config overlay (paths relative to `src-tauri/`, where the config lives).
fn bundle_overlay(file_name: &str, macos: bool) -> String {
    let source = format!("ffi/{file_name}");
    let bundle = if macos {
        serde_json::json!({ "macOS": { "frameworks": [source] } })
    } else {
        serde_json::json!({ "resources": { source: file_name } })
    };
    serde_json::to_string_pretty(&serde_json::json!({ "bundle": bundle })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_puts_the_library_in_resources_or_frameworks() {
        let linux: serde_json::Value = serde_json::from_str(&bundle_overlay("liblivekit_ffi.so", false)).expect("json");
        assert_eq!(linux["bundle"]["resources"]["ffi/liblivekit_ffi.so"], "liblivekit_ffi.so");
        let mac: serde_json::Value = serde_json::from_str(&bundle_overlay("liblivekit_ffi.dylib", true)).expect("json");
        assert_eq!(mac["bundle"]["macOS"]["frameworks"][0], "ffi/liblivekit_ffi.dylib");
    }
}
