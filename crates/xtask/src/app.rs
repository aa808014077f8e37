//! `cargo xtask app`: builds the desktop app — the web front end (`ui/`, npm) and then the Tauri
//! shell (`src-tauri/`, which embeds `ui/dist`) — and, with `smoke`, starts it through WebDriver
//! (tauri-driver + WebKitWebDriver) and saves a screenshot.
//!
//! The smoke run needs a display and a session bus: run it as
//! `dbus-run-session -- xvfb-run -a cargo xtask app --smoke` (ENVIRONMENT.md, Tauri v2).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where smoke screenshots go.
const ARTIFACTS: &str = "target/app-smoke";

/// Builds the UI and the app; with `smoke`, runs the WebDriver smoke test. Returns the binary.
pub fn run(release: bool, smoke: bool) -> Result<PathBuf> {
    let root = crate::workspace_root();
    let started = Instant::now();
    build_ui(&root.join("ui"), &|line| println!("{line}"))?;
    let ui_seconds = started.elapsed().as_secs_f64();
    let mut args = vec!["build", "--package", "parley-app"];
    if release {
        args.push("--release");
    }
    crate::cargo(&args).context("building the app")?;
    let binary = target_dir(&root).join(if release { "release" } else { "debug" }).join(exe("parley-app"));
    if !binary.is_file() {
        bail!("built parley-app but cannot find it at {}", binary.display());
    }
    println!("app: built {} (ui {ui_seconds:.1} s, total {:.1} s)", binary.display(), started.elapsed().as_secs_f64());
    if smoke {
        smoke_test(&binary, &root.join(ARTIFACTS))?;
    }
    Ok(binary)
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// `npm ci` when the dependencies are missing or older than the lock file, then `npm run build`
/// (the app embeds `ui/dist`, so it must exist before the workspace compiles).
pub fn build_ui(ui: &Path, say: &dyn Fn(String)) -> Result<()> {
    let lock = ui.join("package-lock.json");
    let installed = ui.join("node_modules/.package-lock.json");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    if modified(&installed).is_none() || modified(&installed) < modified(&lock) {
        say("setup: installing the UI's npm packages (npm ci)".into());
        npm(ui, &["ci", "--no-audit", "--no-fund"])?;
    }
    npm(ui, &["run", "--silent", "build"])?;
    say("setup: built the UI into ui/dist".into());
    Ok(())
}

/// Runs npm in `dir`; its output goes to stderr, so that `setup --print-env` prints only its
/// `KEY=value` lines on stdout.
pub fn npm(dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("npm")
        .args(args)
        .stdout(std::io::stderr())
        .current_dir(dir)
        .status()
        .with_context(|| format!("running npm {} (is Node.js installed?)", args.join(" ")))?;
    if !status.success() {
        bail!("npm {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Starts tauri-driver, opens a W3C session on the app, waits for the page to render, saves a
/// screenshot and ends the session.
fn smoke_test(binary: &Path, artifacts: &Path) -> Result<()> {
    if std::env::var_os("DISPLAY").is_none() {
        bail!("no DISPLAY: run `dbus-run-session -- xvfb-run -a cargo xtask app --smoke`");
    }
    std::fs::create_dir_all(artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
    let port = free_port()?;
    let native_port = free_port()?;
    let driver = Command::new("tauri-driver")
        .args(["--port", &port.to_string(), "--native-port", &native_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting tauri-driver (cargo install --locked tauri-driver --version '^2'; apt webkit2gtk-driver)")?;
    let driver = Stopped(driver);
    let webdriver = WebDriver { port };
    webdriver.wait_ready(Duration::from_secs(10))?;
    let started = Instant::now();
    let capabilities = serde_json::json!({
        "capabilities": { "alwaysMatch": { "tauri:options": { "application": binary } } }
    });
    let session = webdriver.post("/session", &capabilities).context("starting the app through WebDriver")?;
    let id = session["value"]["sessionId"].as_str().context("WebDriver answered without a session id")?.to_string();
    println!("app: session {id} started in {:.2} s", started.elapsed().as_secs_f64());
    let result = inspect(&webdriver, &id, artifacts);
    if let Err(error) = webdriver.delete(&format!("/session/{id}")) {
        eprintln!("app: warning: ending the WebDriver session failed: {error:#}");
    }
    drop(driver);
    result
}

fn inspect(webdriver: &WebDriver, id: &str, artifacts: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let script =
        serde_json::json!({ "script": "return document.body ? document.body.innerText.length : 0", "args": [] });
    let text_length = loop {
        let answer = webdriver.post(&format!("/session/{id}/execute/sync"), &script)?;
        let length = answer["value"].as_u64().unwrap_or(0);
        if length > 0 || Instant::now() > deadline {
            break length;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let title = webdriver.get(&format!("/session/{id}/title"))?;
    let shot = webdriver.get(&format!("/session/{id}/screenshot"))?;
    let png = decode_base64(shot["value"].as_str().context("a screenshot in the answer")?)?;
    let path = artifacts.join("main.png");
    std::fs::write(&path, &png).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "app: window title {:?}, {text_length} characters of text, screenshot {} ({} bytes)",
        title["value"].as_str().unwrap_or(""),
        path.display(),
        png.len()
    );
    if text_length == 0 {
        bail!("the window showed no text within 15 s (screenshot: {})", path.display());
    }
    Ok(())
}

/// Kills the child (tauri-driver) on drop.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Err(error) = self.0.kill() {
            eprintln!("app: warning: stopping tauri-driver failed: {error}");
        }
        if let Err(error) = self.0.wait() {
            eprintln!("app: warning: waiting for tauri-driver failed: {error}");
        }
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("reading the free port")?.port())
}

/// The few WebDriver calls the smoke test needs, over plain HTTP/1.1 on loopback.
struct WebDriver {
    port: u16,
}

impl WebDriver {
    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.get("/status").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("tauri-driver did not answer on port {} within {} s", self.port, timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str) -> Result<serde_json::Value> {
        self.request("GET", path, None)
    }

    fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        self.request("POST", path, Some(body))
    }

    fn delete(&self, path: &str) -> Result<serde_json::Value> {
        self.request("DELETE", path, None)
    }

    fn request(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<serde_json::Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).context("connecting to tauri-driver")?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).context("setting a read timeout")?;
        let body = body.map(serde_json::Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream.write_all(request.as_bytes()).context("sending a WebDriver request")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).context("reading a WebDriver answer")?;
        let text = String::from_utf8_lossy(&response);
        let (head, payload) = text.split_once("\r\n\r\n").context("a WebDriver answer without a body")?;
        let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(payload)
        } else {
            payload.to_string()
        };
        let status_ok = head.split_whitespace().nth(1).is_some_and(|code| code.starts_with('2'));
        let value: serde_json::Value = serde_json::from_str(payload.trim()).with_context(|| {
            format!(
                "WebDriver answered {method} {path} with non-JSON: {}",
                payload.chars().take(200).collect::<String>()
            )
        })?;
        if !status_ok {
            bail!("WebDriver {method} {path} failed: {}", value["value"]["message"].as_str().unwrap_or(&payload));
        }
        Ok(value)
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn decode_base64(text: &str) -> Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes().filter(|byte| !byte.is_ascii_whitespace() && *byte != b'=') {
        let value =
            ALPHABET.iter().position(|candidate| *candidate == byte).context("a screenshot that is not base64")?;
        buffer = (buffer << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{dechunk, decode_base64};

    #[test]
    fn base64_and_chunked_bodies_decode() {
        assert_eq!(decode_base64("UGFybGV5").expect("valid base64"), b"Parley", "no padding");
        assert_eq!(decode_base64("UGFybA==").expect("valid base64"), b"Parl", "with padding");
        assert_eq!(dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), "{\"a\":1}", "chunks are joined");
    }
}
