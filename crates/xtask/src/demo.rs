//! `cargo xtask demo`: the newcomer's first run.
//!
//! * By default: a local LiveKit server, a `parley` bot that speaks in room "demo", and the
//!   desktop app opened on a self-hosted profile (`demo`) and joined to that room — see [`app`].
//! * `--cli`: two `parley` clients that hear each other, measured — see [`run`]. Alice sends a
//!   440 Hz tone, Bob an 880 Hz tone; each records what it hears, and the demo ends by
//!   measuring the recordings, so a newcomer sees, in numbers, that audio crossed a real server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{band_energy_fraction, dominant_frequency, tone_level_dbfs};
use parley_devserver::display::{TauriDriver, Xvfb};
use parley_devserver::keyring::TestKeyring;
use parley_devserver::pulse::{NullSink, PulseServer};
use parley_devserver::{DevServer, DevServerConfig};

/// The two-client demo (`--cli`).
pub fn run(seconds: f64) -> Result<()> {
    let parley = crate::parley_binary()?;
    let server = DevServer::start(&DevServerConfig::default()).context("starting the LiveKit dev server")?;
    println!("demo: LiveKit server running at {} (log: {})", server.url(), server.log_path().display());
    let dir = tempfile::Builder::new().prefix("parley-demo-").tempdir().context("temp dir")?;
    let spawn = |identity: &str, tone: &str| -> Result<Child> {
        println!("demo: {identity} joins room \"demo\" and says a {tone} Hz tone");
        Command::new(&parley)
            .args(["join", "--url", &server.url(), "--room", "demo", "--identity", identity])
            .args(["--tone", tone, "--duration", &seconds.to_string()])
            .arg("--record")
            .arg(dir.path().join(format!("{identity}.wav")))
            .env("LIVEKIT_API_KEY", server.api_key())
            .env("LIVEKIT_API_SECRET", server.api_secret())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", parley.display()))
    };
    let mut alice = spawn("alice", "440")?;
    std::thread::sleep(Duration::from_millis(300));
    let mut bob = spawn("bob", "880")?;
    for (name, child) in [("alice", &mut alice), ("bob", &mut bob)] {
        let status = child.wait().with_context(|| format!("waiting for {name}"))?;
        if !status.success() {
            bail!("{name}'s client failed ({status}); server log: {}", server.log_path().display());
        }
    }
    println!();
    for (listener, speaker, frequency) in [("alice", "bob", 880.0), ("bob", "alice", 440.0)] {
        let samples = parley_audio::wav::read_mono_48k(&dir.path().join(format!("{listener}.wav")))?;
        let tail = &samples[samples.len().saturating_sub(3 * SAMPLE_RATE as usize)..];
        let heard = dominant_frequency(tail, SAMPLE_RATE);
        let level = tone_level_dbfs(tail, SAMPLE_RATE, frequency);
        let share = band_energy_fraction(tail, SAMPLE_RATE, frequency, 25.0) * 100.0;
        println!(
            "demo: {listener} heard {speaker}: dominant {heard:.0} Hz (sent {frequency:.0} Hz) at {level:.1} dBFS (sent −12.0), {share:.0} % of the energy"
        );
        if share < 90.0 {
            bail!("{listener} did not clearly hear {speaker}");
        }
    }
    println!(
        "demo: both clients heard each other through the LiveKit server. Recordings were in {}",
        dir.path().display()
    );
    Ok(())
}

/// Where the desktop demo's screenshot goes unless `--screenshot` says otherwise.
const DEFAULT_SCREENSHOT: &str = "target/demo/parley.png";
/// The bot's voice: a short A-major arpeggio, then a pause, repeated — the speaking ring
/// lights up and goes out.
const BOT_NOTES: [f64; 3] = [440.0, 554.37, 659.25];

/// The desktop demo. With a display (`DISPLAY` or `WAYLAND_DISPLAY`), the app opens on it and
/// the demo lasts until you quit the app (tray → Quit) or press Ctrl-C. Without one (a server,
/// CI), the app runs on a private X server and sound server for `seconds`: the demo checks that
/// the bot is listed and heard, and saves a screenshot (`screenshot`, default
/// `target/demo/parley.png`).
pub fn app(seconds: f64, screenshot: Option<PathBuf>) -> Result<()> {
    let app = crate::app::run(false, false)?;
    app_from(&app, seconds, screenshot, &[])
}

/// The app demo with the app binary `app` (e.g. one a package installed), which runs with
/// `app_env` besides the demo's own environment.
pub fn app_from(
    app: &std::path::Path,
    seconds: f64,
    screenshot: Option<PathBuf>,
    app_env: &[(String, String)],
) -> Result<()> {
    let parley = crate::parley_binary()?;
    let server = DevServer::start(&DevServerConfig::default()).context("starting the LiveKit dev server")?;
    println!("demo: LiveKit server running at {} (log: {})", server.url(), server.log_path().display());
    let dir = tempfile::Builder::new().prefix("parley-demo-").tempdir().context("temp dir")?;
    let config = dir.path().join("config");
    let headless = std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none();

    // Headless: a private X server, sound server (the app's speaker is a null sink the demo
    // listens to) and keyring. On a desktop: the user's own, unless no session bus is running.
    let xvfb = headless.then(Xvfb::start).transpose().context("starting a virtual display (Xvfb)")?;
    let pulse = match headless {
        true => Some(PulseServer::start(&[NullSink::new("speaker", 2), NullSink::new("microphone", 1)])?),
        false => None,
    };
    if let Some(pulse) = &pulse {
        pulse.pactl(&["set-default-source", "microphone.monitor"]).map_err(anyhow::Error::msg)?;
    }
    let keyring = match headless || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        true => Some(TestKeyring::start().context("starting a private keyring")?),
        false => None,
    };
    let mut env: Vec<(String, String)> = vec![("PARLEY_CONFIG_DIR".into(), config.display().to_string())];
    env.extend(xvfb.iter().flat_map(Xvfb::env));
    env.extend(pulse.iter().flat_map(PulseServer::env));
    env.extend(keyring.iter().flat_map(TestKeyring::env));

    // The self-hosted profile: the dev server's key in profiles.toml, its secret in the keyring.
    let _remove = add_profile(&parley, &server, "demo", &env)?;
    println!("demo: saved profile \"demo\" in {} (its secret in the keyring)", config.display());

    let voice = dir.path().join("bot.wav");
    parley_audio::wav::write_mono_48k(&voice, &bot_voice(seconds.max(120.0)))?;
    let bot = Command::new(&parley)
        .args(["join", "--url", &server.url(), "--room", "demo", "--identity", "bot", "--name", "Parley bot"])
        .arg("--play")
        .arg(&voice)
        .args(["--control-socket", "none"])
        .env("LIVEKIT_API_KEY", server.api_key())
        .env("LIVEKIT_API_SECRET", server.api_secret())
        .envs(pulse.iter().flat_map(PulseServer::env))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting the bot")?;
    let _bot = Stopped(bot);
    println!("demo: \"Parley bot\" speaks in room \"demo\"");

    let link = "parley://join/demo/demo";
    if !headless {
        println!(
            "demo: opening the app on room \"demo\": click Join (a link never joins by itself); quit it from the \
             tray (Parley → Quit) to end the demo"
        );
        let status = Command::new(app)
            .arg(link)
            .envs(env.iter().chain(app_env).map(|(key, value)| (key, value)))
            .status()
            .with_context(|| format!("starting {}", app.display()))?;
        println!("demo: the app exited ({status})");
        return Ok(());
    }

    // WebKitWebDriver's screenshot never finishes without WebKit's compositing, which the app
    // turns off for itself unless told otherwise.
    env.push(("WEBKIT_DISABLE_COMPOSITING_MODE".into(), "0".into()));
    env.extend(app_env.iter().cloned());
    let driver = TauriDriver::start(&env).context("starting tauri-driver")?;
    let session = driver
        .webdriver()
        .new_session(serde_json::json!({ "tauri:options": { "application": app, "args": [link] } }))
        .with_context(|| format!("starting the app through WebDriver; its log ends with:\n{}", driver.log_tail(30)))?;
    // The link opens a dialog; joining takes the user's click, as it would on a desktop.
    let join = session.wait_for(
        "return document.querySelector('[role=alertdialog] button.link-join');",
        vec![],
        Duration::from_secs(30),
    )?;
    let join = session.element_from(&join).with_context(|| {
        format!("the link's dialog did not show a Join button; its log ends with:\n{}", driver.log_tail(30))
    })?;
    session.click(&join)?;
    let listed = session.wait_for(
        "return [...document.querySelectorAll('.tile .name')].some(name => name.textContent.includes('Parley bot'))",
        vec![],
        Duration::from_secs(30),
    )?;
    if listed != serde_json::Value::Bool(true) {
        bail!("the app did not list the bot within 30 s; its log ends with:\n{}", driver.log_tail(30));
    }
    println!("demo: the app joined room \"demo\" and lists \"Parley bot\"");
    let speaking = session.wait_for(
        "return document.querySelector('[data-testid=speaking-ring][data-speaking=true]') !== null",
        vec![],
        Duration::from_secs(10),
    )?;
    let shot = screenshot.unwrap_or_else(|| crate::workspace_root().join(DEFAULT_SCREENSHOT));
    session.save_screenshot(&shot)?;
    println!("demo: screenshot of the app saved to {}", shot.display());

    let pulse = pulse.as_ref().context("a headless demo has its own sound server")?;
    let recording = dir.path().join("speaker.wav");
    let record_seconds = (seconds - 2.0).clamp(2.0, 10.0);
    record(pulse, "speaker.monitor", &recording, record_seconds)?;
    let samples = parley_audio::wav::read_mono_48k(&recording)?;
    let heard: Vec<(f64, f32)> = BOT_NOTES
        .iter()
        .map(|note| (*note, band_energy_fraction(&samples, SAMPLE_RATE, *note as f32, 15.0) * 100.0))
        .collect();
    let level = parley_audio::analysis::rms_dbfs(&samples);
    println!(
        "demo: the app played the bot on its speaker at {level:.1} dBFS; energy at the bot's notes: {}",
        heard.iter().map(|(note, share)| format!("{note:.0} Hz {share:.0} %")).collect::<Vec<_>>().join(", ")
    );
    session.end()?;
    if speaking != serde_json::Value::Bool(true) {
        bail!("the bot's speaking ring never lit up");
    }
    if heard.iter().map(|(_, share)| share).sum::<f32>() < 50.0 {
        bail!("the app's speaker did not play the bot's voice");
    }
    println!("demo: done — run it on a desktop to use the app yourself");
    Ok(())
}

/// The bot's voice: each of [`BOT_NOTES`] for 250 ms, then 1.25 s of silence, for `seconds`.
fn bot_voice(seconds: f64) -> Vec<i16> {
    let note = SAMPLE_RATE as usize / 4;
    let pause = SAMPLE_RATE as usize * 5 / 4;
    let total = (seconds * f64::from(SAMPLE_RATE)) as usize;
    let mut samples = Vec::with_capacity(total + SAMPLE_RATE as usize * 2);
    while samples.len() < total {
        for frequency in BOT_NOTES {
            let mut tone = parley_audio::signal::Tone::new(frequency, -18.0);
            let mut chunk = vec![0i16; note];
            tone.fill(&mut chunk);
            samples.extend_from_slice(&chunk);
        }
        samples.resize(samples.len() + pause, 0);
    }
    samples
}

/// Records `source` of `pulse` for `seconds` into a WAV file with `parec`.
fn record(pulse: &PulseServer, source: &str, path: &std::path::Path, seconds: f64) -> Result<()> {
    let mut parec = Command::new("parec")
        .args(["--device", source, "--rate=48000", "--channels=1", "--format=s16le", "--file-format=wav"])
        .arg(path)
        .envs(pulse.env())
        .spawn()
        .context("starting parec (Debian package pulseaudio-utils)")?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    // parec finishes the WAV header when interrupted.
    let interrupted = Command::new("kill").args(["-INT", &parec.id().to_string()]).status();
    if !interrupted.is_ok_and(|status| status.success()) {
        parec.kill().context("stopping parec")?;
    }
    parec.wait().context("waiting for parec")?;
    Ok(())
}

/// A child process killed on drop.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Adds a self-hosted LiveKit profile `name` for `server` (its API key in `profiles.toml`, its
/// secret in the keyring; identity `you`) with `parley profile add`, in the environment `env`
/// (config directory, session bus). The profile is removed when the returned guard drops.
pub(crate) fn add_profile(
    parley: &std::path::Path,
    server: &DevServer,
    name: &str,
    env: &[(String, String)],
) -> Result<RemoveProfile> {
    let mut add = Command::new(parley);
    add.args(["profile", "add", name, "--backend", "livekit", "--url", &server.url()])
        .args(["--api-key", server.api_key(), "--identity", "you", "--secret-stdin"])
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::piped());
    let mut adding = add.spawn().context("running parley profile add")?;
    if let Some(mut stdin) = adding.stdin.take() {
        use std::io::Write as _;
        writeln!(stdin, "{}", server.api_secret()).context("giving parley the API secret")?;
    }
    if !adding.wait().context("waiting for parley profile add")?.success() {
        bail!("parley profile add failed (see above)");
    }
    Ok(RemoveProfile { parley: parley.to_path_buf(), name: name.into(), env: env.to_vec() })
}

/// Removes a profile (and its keyring secret) when dropped.
pub(crate) struct RemoveProfile {
    parley: PathBuf,
    name: String,
    env: Vec<(String, String)>,
}

impl Drop for RemoveProfile {
    fn drop(&mut self) {
        let removed = Command::new(&self.parley)
            .args(["profile", "remove", &self.name])
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .status();
        if !removed.is_ok_and(|status| status.success()) {
            eprintln!("warning: could not remove profile {:?}'s secret from the keyring", self.name);
        }
    }
}
