//! `cargo xtask demo`: a local LiveKit server and two `parley` clients that hear each other.
//!
//! Alice sends a 440 Hz tone, Bob an 880 Hz tone; each records what it hears, and the demo
//! ends by measuring the recordings, so a newcomer sees, in numbers, that audio crossed a real
//! server. (The desktop app takes this command over once it exists.)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{band_energy_fraction, dominant_frequency, tone_level_dbfs};
use parley_devserver::{DevServer, DevServerConfig};

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
