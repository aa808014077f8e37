//! Signed updates end to end, for `cargo xtask bundle`: the updater as a user meets it, with a
//! key the check makes for itself (nothing secret is committed; a release uses the project's key
//! from `TAURI_SIGNING_PRIVATE_KEY` and the public key in `tauri.conf.json`).
//!
//! * [`UpdateKey`] — a fresh minisign key pair from `tauri signer generate`;
//! * [`UpdateSite`] — a local HTTP server (Python's `http.server`) standing in for the GitHub
//!   release: `latest.json` and the packages it names;
//! * [`overlay`] — the Tauri config that points a build's updater at that site and key;
//! * [`check`] — the installed app (an older deb) finds the newer version in Settings, refuses a
//!   tampered package with a clear message and keeps its version, then installs the genuine one
//!   (the plugin verifies its signature and runs `dpkg -i` through pkexec or sudo) and relaunches
//!   as the new version.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parley_devserver::display::{TauriDriver, Xvfb};
use parley_devserver::keyring::TestKeyring;
use parley_devserver::pulse::{NullSink, PulseServer};
use parley_devserver::webdriver::Session;

use crate::bundle::INSTALLED_APP;

/// How long a download, verification and `dpkg -i` may take before the relaunch.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(180);

/// A minisign key pair made by the Tauri CLI for this check only.
pub struct UpdateKey {
    dir: tempfile::TempDir,
    public: String,
}

impl UpdateKey {
    pub fn generate(root: &Path) -> Result<UpdateKey> {
        let dir = tempfile::Builder::new().prefix("parley-update-key-").tempdir().context("temp dir")?;
        let private = dir.path().join("updater.key");
        let mut generate = Command::new("npx");
        generate.args(["--prefix", "ui", "tauri", "signer", "generate", "--ci", "--password", ""]);
        generate.arg("--write-keys").arg(&private).current_dir(root).stdout(Stdio::null());
        crate::setup::run_command(&mut generate).context("tauri signer generate")?;
        let public_file = dir.path().join("updater.key.pub");
        let public = std::fs::read_to_string(&public_file)
            .with_context(|| format!("reading {}", public_file.display()))?
            .trim()
            .to_string();
        Ok(UpdateKey { dir, public })
    }

    /// What `tauri build` needs in its environment to sign the updater artifacts.
    pub fn signing_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TAURI_SIGNING_PRIVATE_KEY", self.dir.path().join("updater.key").display().to_string()),
            ("TAURI_SIGNING_PRIVATE_KEY_PASSWORD", String::new()),
        ]
    }
}

/// The Tauri config overlay that makes a build trust `key` and look for updates on `site`
/// (plain HTTP, which only this loopback site may use).
pub fn overlay(key: &UpdateKey, site: &UpdateSite) -> String {
    serde_json::json!({
        "plugins": { "updater": {
            "pubkey": key.public,
            "endpoints": [site.endpoint()],
            "dangerousInsecureTransportProtocol": true,
        }}
    })
    .to_string()
}

/// A release site on loopback: whatever [`UpdateSite::publish`] put there last.
pub struct UpdateSite {
    dir: tempfile::TempDir,
    port: u16,
    server: Child,
}

impl UpdateSite {
    pub fn start() -> Result<UpdateSite> {
        let dir = tempfile::Builder::new().prefix("parley-update-site-").tempdir().context("temp dir")?;
        let port = parley_devserver::free_tcp_port().context("a free port for the update site")?;
        let server = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3 -m http.server")?;
        let site = UpdateSite { dir, port, server };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the update site did not listen on port {port} within 15 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(site)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/latest.json", self.port)
    }

    /// Offers `version` as the newest release: `package` (the deb's bytes, genuine or not) under
    /// its release name, with `signature` (the `.sig` the build wrote) in `latest.json`.
    pub fn publish(&self, version: &str, package: &[u8], signature: &str) -> Result<()> {
        let name = format!("parley_{version}_amd64.deb");
        std::fs::write(self.dir.path().join(&name), package).context("writing the offered package")?;
        let manifest = serde_json::json!({
            "version": version,
            "notes": format!("Parley {version}, published by cargo xtask bundle"),
            "pub_date": "2026-12-01T00:00:00Z",
            "platforms": { "linux-x86_64-deb": {
                "signature": signature.trim(),
                "url": format!("http://127.0.0.1:{}/{name}", self.port),
            }}
        });
        std::fs::write(self.dir.path().join("latest.json"), manifest.to_string()).context("writing latest.json")
    }
}

impl Drop for UpdateSite {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The version after `version` (its last number plus one).
pub fn next_version(version: &str) -> Result<String> {
    let (head, last) = version.rsplit_once('.').context("a version like 0.1.0")?;
    let last: u64 = last.parse().with_context(|| format!("the version {version:?} does not end in a number"))?;
    Ok(format!("{head}.{}", last + 1))
}

/// The installed package's version, as dpkg knows it.
fn installed_version() -> Result<String> {
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Version}", "parley"])
        .output()
        .context("dpkg-query")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The deb `installed` (version `old`) is installed; `new_deb` is version `new`, `signature` its
/// `.sig`. The app updates itself from `site` as a user would: through Settings.
pub fn check(site: &UpdateSite, old: &str, new: &str, new_deb: &Path, signature: &str) -> Result<()> {
    let genuine = std::fs::read(new_deb).with_context(|| format!("reading {}", new_deb.display()))?;
    // One byte changed inside the package: still a deb, no longer what was signed.
    let mut tampered = genuine.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x5a;
    site.publish(new, &tampered, signature)?;
    // The plugin installs a deb with pkexec, or sudo when no polkit agent answers.
    crate::setup::apt_get(&["install", "-y", "--no-install-recommends", "sudo"]).context("installing sudo")?;

    let xvfb = Xvfb::start().context("starting a virtual display")?;
    let pulse = PulseServer::start(&[NullSink::new("speaker", 2), NullSink::new("microphone", 1)])?;
    let keyring = TestKeyring::start().context("starting a private keyring")?;
    let config = tempfile::Builder::new().prefix("parley-update-config-").tempdir().context("temp dir")?;
    let mut env: Vec<(String, String)> = vec![("PARLEY_CONFIG_DIR".into(), config.path().display().to_string())];
    env.extend(xvfb.env());
    env.extend(pulse.env());
    env.extend(keyring.env());
    let driver = TauriDriver::start(&env).context("starting tauri-driver")?;
    let session = driver
        .webdriver()
        .new_session(serde_json::json!({ "tauri:options": { "application": INSTALLED_APP } }))
        .with_context(|| format!("starting the installed app; its log ends with:\n{}", driver.log_tail(30)))?;
    let log = || driver.log_tail(30);
    let with_log = |error: anyhow::Error| anyhow::anyhow!("{error:#}; the app's log ends with:\n{}", log());

    // The first-run screen (no server yet) links to Settings, as the sidebar does later.
    click(&session, "button", Some("Settings")).map_err(with_log)?;
    let offered = check_for_updates(&session).map_err(with_log)?;
    let wanted = format!("Version {new} is available (you have {old})");
    if !offered.contains(&wanted) {
        bail!("Settings did not offer {new}: it says {offered:?}; the app's log ends with:\n{}", log());
    }
    println!("bundle: the installed {old} found {new} on the update site");

    click(&session, "button.primary", Some("Install and restart")).map_err(with_log)?;
    let refusal = session.wait_for(
        "const alert = document.querySelector('[role=dialog] p.error[role=alert]'); return alert && alert.textContent;",
        vec![],
        Duration::from_secs(60),
    )?;
    let refusal = refusal.as_str().unwrap_or_default().to_string();
    if !refusal.contains("signature does not match") || !refusal.contains("stays installed") {
        bail!("a tampered package was not refused clearly: {refusal:?}; the app's log ends with:\n{}", log());
    }
    let still = installed_version()?;
    if still != old {
        bail!("after refusing a tampered package, dpkg says version {still:?} is installed, not {old}");
    }
    println!("bundle: a tampered {new} was refused (\"{refusal}\") and {old} stays installed");

    site.publish(new, &genuine, signature)?;
    check_for_updates(&session).map_err(with_log)?;
    click(&session, "button.primary", Some("Install and restart")).map_err(with_log)?;
    // The window goes away with the old process; the new one writes its version as it starts.
    let relaunched = format!("Parley {new} starting");
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    loop {
        let whole = std::fs::read_to_string(driver.log_path()).unwrap_or_default();
        if whole.contains(&relaunched)
            && whole.split(&relaunched).nth(1).is_some_and(|after| after.contains("page loaded"))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the app did not relaunch as {new} within {} s; its log ends with:\n{}",
                INSTALL_TIMEOUT.as_secs(),
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let now = installed_version()?;
    if now != new {
        bail!("the update relaunched the app, but dpkg says version {now:?} is installed, not {new}");
    }
    println!("bundle: the genuine {new} was verified, installed by dpkg, and the app relaunched as {new}");
    // The relaunched app is in the driver's process group: dropping the driver ends it.
    drop(session);
    Ok(())
}

/// Clicks "Check for updates" and returns the status line once it says something.
fn check_for_updates(session: &Session) -> Result<String> {
    click(session, "button", Some("Check for updates"))?;
    let status = session.wait_for(
        "const status = document.querySelector('[role=dialog] span[role=status]'); \
         return status && status.textContent.trim().length > 0 && status.textContent.trim();",
        vec![],
        Duration::from_secs(30),
    )?;
    Ok(status.as_str().unwrap_or_default().to_string())
}

/// Clicks the first element matching `css` (and, if given, with exactly the text `text`) once it
/// is there and enabled.
fn click(session: &Session, css: &str, text: Option<&str>) -> Result<()> {
    let found = session.wait_for(
        "const [css, text] = arguments; \
         return [...document.querySelectorAll(css)] \
           .find(el => !el.disabled && (text === null || el.textContent.trim() === text)) || null;",
        vec![css.into(), text.map_or(serde_json::Value::Null, Into::into)],
        Duration::from_secs(30),
    )?;
    let element = session.element_from(&found).with_context(|| {
        format!("no enabled {css} {} in the window", text.map(|t| format!("{t:?}")).unwrap_or_default())
    })?;
    session.click(&element)?;
    Ok(())
}

/// The `.sig` the bundler wrote beside `package`.
pub fn signature_of(package: &Path) -> Result<String> {
    let mut name = package.as_os_str().to_owned();
    name.push(".sig");
    let path = PathBuf::from(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {} (the updater signature)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_version_bumps_the_last_number() {
        assert_eq!(next_version("0.1.0").expect("next"), "0.1.1");
        assert_eq!(next_version("1.9.9").expect("next"), "1.9.10");
        assert!(next_version("1").is_err());
    }
}
