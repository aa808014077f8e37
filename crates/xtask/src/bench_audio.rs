//! `cargo xtask bench audio`: measurements through real sound devices (a private PulseAudio)
//! and the real server, with release builds. Table + JSON; never a test.
//!
//! One clock for mouth-to-ear latency: a stereo null sink `probe` carries, on its left channel,
//! what alice's microphone receives (we play chirps into it) and, on its right channel, what
//! bob's speaker plays. PulseAudio's remap modules expose those channels as alice's mono input
//! and bob's mono output, and one `parec` of `probe.monitor` records both, sample-aligned.
//!
//! The same chirps are measured again while alice shares a 1920×1080 screen at 1080p30 (a
//! private Xvfb with the moving test pattern on it) and bob watches it: what screen share costs
//! the voice path on this machine.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{find_reference, first_onset, rms_dbfs};
use parley_audio::signal::chirp;
use parley_devserver::browser_peer::{BrowserPeer, BrowserPeerOptions};
use parley_devserver::display::Xvfb;
use parley_devserver::pulse::{NullSink, PulseServer};
use parley_devserver::{DevServer, DevServerConfig};
use serde_json::{Value, json};

use crate::bench::{Bench, Load, percentile, print_table, unix_ns, write_report};

const CHIRPS: usize = 24;
const PTT_TRIALS: usize = 10;

pub fn audio(out: PathBuf, soak_minutes: f64) -> Result<()> {
    let parley = crate::bench::release_parley()?;
    let server = DevServer::start(&DevServerConfig::default()).context("starting the LiveKit dev server")?;
    let pulse = PulseServer::start(&[NullSink::new("probe", 2), NullSink::new("spare", 1)])
        .map_err(|error| anyhow::anyhow!("starting PulseAudio: {error}"))?;
    for module in [
        "module-remap-sink sink_name=mouth master=probe channels=1 master_channel_map=front-left channel_map=mono",
        "module-remap-sink sink_name=ear_b master=probe channels=1 master_channel_map=front-right channel_map=mono",
        // Named: the browser peer picks its microphone by description.
        "module-remap-source source_name=mic_a master=probe.monitor channels=1 master_channel_map=front-left channel_map=mono source_properties=device.description=mic_a",
    ] {
        let mut args = vec!["load-module"];
        args.extend(module.split(' '));
        pulse.pactl(&args).map_err(|error| anyhow::anyhow!("pactl load-module: {error}"))?;
    }
    let scratch = tempfile::Builder::new().prefix("parley-bench-audio-").tempdir().context("temp dir")?;
    let bench = Bench { parley, server, dir: scratch.path().to_path_buf(), env: pulse.env() };

    println!("bench audio: mouth-to-ear latency ({CHIRPS} chirps, microphone → LiveKit → speaker)…");
    let call = mouth_to_ear(&bench, &pulse)?;
    let mouth_to_ear = call.latencies.clone();
    println!("bench audio: the same chirps with a browser (livekit-client in Chromium) at one or both ends…");
    let browsers = Xvfb::start().context("starting Xvfb for the browser peers")?;
    let mut pairs = Vec::new();
    for (alice, bob) in [
        (Client::Browser, Client::Browser),
        (Client::Parley, Client::Browser),
        (Client::Browser, Client::Parley),
        (Client::Platform, Client::Platform),
        (Client::Platform, Client::Parley),
        (Client::Parley, Client::Platform),
    ] {
        let room = format!("m2e-{}-{}", alice.name(), bob.name());
        let carrier = Carrier::Pair { alice, bob, display: browsers.env() };
        let latencies = chirp_trials(&bench, &pulse, &room, carrier)?.latencies;
        println!("bench audio:   {} → {}: p50 {:.1} ms", alice.name(), bob.name(), percentile(&latencies, 50.0));
        pairs.push((alice, bob, latencies));
    }
    drop(browsers);
    println!("bench audio: the same chirps through our device ends alone (`parley mic-test`), then PulseAudio alone…");
    let device_ends = chirp_trials(&bench, &pulse, "m2e-devices", Carrier::DeviceEnds)?.latencies;
    let sound_server = chirp_trials(&bench, &pulse, "m2e-pulse", Carrier::SoundServer)?.latencies;
    let jitter_buffer = call.mean_stat("jitter_buffer_ms");
    let jitter_target = call.mean_stat("jitter_buffer_target_ms");
    let mixer_queue = call.mean_stat("mixer_queue_ms");
    println!("bench audio: the same chirps while alice shares her screen at 1080p30 and bob watches…");
    let display = Xvfb::start_sized(1920, 1080).context("starting Xvfb")?;
    let pattern = open_pattern(&bench, &display)?;
    let sharing = chirp_trials(&bench, &pulse, "m2e-sharing", Carrier::CallSharing(display.env()));
    drop(pattern);
    let sharing = sharing?.latencies;

    println!("bench audio: push-to-talk press → first audible sample ({PTT_TRIALS} presses), DTX on, then off…");
    let ptt = push_to_talk(&bench, "ptt", &[])?;
    let ptt_no_dtx = push_to_talk(&bench, "ptt-no-dtx", &[("PARLEY_MIC_DTX".into(), "off".into())])?;
    let (press_to_ear, open_mic) = (&ptt.press_to_ear, &ptt.open_mic);
    println!("bench audio: listener CPU and memory with 1, 10 and 50 remote speakers…");
    let loads: Vec<(usize, Load)> = [1, 10, 50]
        .into_iter()
        .map(|speakers| Ok((speakers, listener_load(&bench, speakers, false)?)))
        .collect::<Result<_>>()?;
    println!("bench audio: the same 10-speaker listener with the engine's own devices…");
    let platform_load = listener_load(&bench, 10, true)?;
    let soak = if soak_minutes > 0.0 {
        println!("bench audio: {soak_minutes} minute soak with 10 speakers…");
        let mut result = soak(&bench, soak_minutes)?;
        result.mouth_to_ear_after = chirp_trials(&bench, &pulse, "m2e-after", Carrier::Call)?.latencies;
        Some(result)
    } else {
        None
    };

    let per_speaker = (loads[2].1.cpu_percent - loads[0].1.cpu_percent) / 49.0;
    let ptt_added: Vec<f64> = press_to_ear.iter().map(|delay| delay - percentile(open_mic, 50.0)).collect();
    let mut rows = vec![
        ("mouth-to-ear p50", format!("{:.1} ms", percentile(&mouth_to_ear, 50.0)), "≤ 80 ms"),
        ("mouth-to-ear p95", format!("{:.1} ms", percentile(&mouth_to_ear, 95.0)), "≤ 100 ms"),
    ];
    for (alice, bob, latencies) in &pairs {
        rows.push((
            match (alice, bob) {
                (Client::Browser, Client::Browser) => "mouth-to-ear p50 / p95, browser → browser",
                (Client::Parley, Client::Browser) => "mouth-to-ear p50 / p95, parley → browser",
                (Client::Platform, Client::Platform) => "mouth-to-ear p50 / p95, the engine's own devices at both ends",
                (Client::Platform, _) => "mouth-to-ear p50 / p95, the engine's own devices → parley",
                (Client::Parley, Client::Platform) => "mouth-to-ear p50 / p95, parley → the engine's own devices",
                _ => "mouth-to-ear p50 / p95, browser → parley",
            },
            format!("{:.1} / {:.1} ms", percentile(latencies, 50.0), percentile(latencies, 95.0)),
            "",
        ));
    }
    let browser_pair = percentile(&pairs[0].2, 50.0);
    let ratio = percentile(&mouth_to_ear, 50.0) / browser_pair;
    rows.push(("parley → parley ÷ browser → browser, p50", format!("{ratio:.2}×"), "≤ 0.75×"));
    let platform_pair = percentile(&pairs[3].2, 50.0);
    rows.push((
        "parley → parley ÷ the engine's own devices, p50",
        format!("{:.2}×", percentile(&mouth_to_ear, 50.0) / platform_pair),
        "",
    ));
    rows.extend([
        (
            "  of which PulseAudio alone (module-loopback), p50",
            format!("{:.1} ms", percentile(&sound_server, 50.0)),
            "",
        ),
        (
            "  of which our device ends (parley mic-test, no engine), p50",
            format!("{:.1} ms", percentile(&device_ends, 50.0) - percentile(&sound_server, 50.0)),
            "",
        ),
        (
            "  of which the engine and the mixer (the rest), p50",
            format!("{:.1} ms", percentile(&mouth_to_ear, 50.0) - percentile(&device_ends, 50.0)),
            "",
        ),
        (
            "    in it: bob's jitter buffer, mean (its target)",
            format!("{} ({})", ms(jitter_buffer), ms(jitter_target)),
            "",
        ),
        ("    in it: bob's mixer queue, mean standing delay", ms(mixer_queue), ""),
        ("mouth-to-ear p50 while sharing 1080p30", format!("{:.1} ms", percentile(&sharing, 50.0)), ""),
        (
            "  sharing adds, p50",
            format!("{:+.1} ms", percentile(&sharing, 50.0) - percentile(&mouth_to_ear, 50.0)),
            "≤ 10 ms",
        ),
        ("PTT press → first audible at B, p50", format!("{:.1} ms", percentile(press_to_ear, 50.0)), ""),
        ("open-mic sender → B (same path), p50", format!("{:.1} ms", percentile(open_mic, 50.0)), ""),
        (
            "PTT adds, p50 / p95",
            format!("{:.1} / {:.1} ms", percentile(&ptt_added, 50.0), percentile(&ptt_added, 95.0)),
            "≤ 30 ms",
        ),
        (
            "PTT press → first audible, p50, DTX on / off",
            format!("{:.1} / {:.1} ms", percentile(press_to_ear, 50.0), percentile(&ptt_no_dtx.press_to_ear, 50.0)),
            "",
        ),
        (
            "  first 60 ms below steady, p50, DTX on / off",
            format!(
                "{:.1} / {:.1} dB",
                percentile(&ptt.onset_deficit_db, 50.0),
                percentile(&ptt_no_dtx.onset_deficit_db, 50.0)
            ),
            "",
        ),
    ]);
    for (speakers, load) in &loads {
        rows.push((
            match speakers {
                1 => "listener CPU / peak RSS, 1 speaker",
                10 => "listener CPU / peak RSS, 10 speakers",
                _ => "listener CPU / peak RSS, 50 speakers",
            },
            format!("{:.1} % / {:.1} MB", load.cpu_percent, load.peak_rss_mb),
            "",
        ));
    }
    rows.push((
        "listener CPU / peak RSS, 10 speakers, the engine's own devices",
        format!("{:.1} % / {:.1} MB", platform_load.cpu_percent, platform_load.peak_rss_mb),
        "",
    ));
    rows.push(("listener CPU per remote speaker", format!("{per_speaker:.2} % of a core"), "≤ 0.5 %"));
    if let Some(soak) = &soak {
        rows.push((
            "soak: RSS first → last sample",
            format!(
                "{:.1} → {:.1} MB over {:.0} min",
                soak.rss_mb.first().unwrap_or(&0.0),
                soak.rss_mb.last().unwrap_or(&0.0),
                soak_minutes
            ),
            "no growth",
        ));
        rows.push((
            "soak: speaker-queue underruns / output gaps / concealed",
            format!("{} / {} / {:.2} %", soak.mixer_underruns, soak.output_glitches, soak.concealed_percent),
            "no more than before",
        ));
        rows.push((
            "soak: mouth-to-ear p50 after",
            format!("{:.1} ms", percentile(&soak.mouth_to_ear_after, 50.0)),
            "no growth",
        ));
    }
    print_table(&rows);
    let report = json!({
        "suite": "audio",
        "mouth_to_ear_ms": { "samples": mouth_to_ear, "p50": percentile(&mouth_to_ear, 50.0), "p95": percentile(&mouth_to_ear, 95.0), "target_p50": 80, "target_p95": 100 },
        "stages_p50_ms": { "sound_server": percentile(&sound_server, 50.0), "device_ends_total": percentile(&device_ends, 50.0), "sound_server_samples": sound_server, "device_ends_samples": device_ends, "jitter_buffer_mean": jitter_buffer, "jitter_buffer_target_mean": jitter_target, "mixer_queue_mean": mixer_queue },
        "pairs": pairs.iter().map(|(alice, bob, latencies)| json!({ "from": alice.name(), "to": bob.name(), "samples": latencies, "p50": percentile(latencies, 50.0), "p95": percentile(latencies, 95.0) })).collect::<Vec<_>>(),
        "parley_to_browser_pair_ratio_p50": { "value": ratio, "target": 0.75 },
        "parley_to_platform_pair_ratio_p50": percentile(&mouth_to_ear, 50.0) / platform_pair,
        "platform_listener_10": { "cpu_percent": platform_load.cpu_percent, "peak_rss_mb": platform_load.peak_rss_mb },
        "mouth_to_ear_sharing_1080p30_ms": { "samples": sharing, "p50": percentile(&sharing, 50.0), "p95": percentile(&sharing, 95.0), "added_p50": percentile(&sharing, 50.0) - percentile(&mouth_to_ear, 50.0), "target_added_p50": 10 },
        "ptt_press_to_ear_ms": { "samples": press_to_ear, "p50": percentile(press_to_ear, 50.0) },
        "open_mic_ms": { "samples": open_mic, "p50": percentile(open_mic, 50.0) },
        "ptt_dtx": [
            { "dtx": true, "press_to_ear_ms": ptt.press_to_ear, "onset_deficit_db": ptt.onset_deficit_db },
            { "dtx": false, "press_to_ear_ms": ptt_no_dtx.press_to_ear, "onset_deficit_db": ptt_no_dtx.onset_deficit_db },
        ],
        "ptt_added_ms": { "p50": percentile(&ptt_added, 50.0), "p95": percentile(&ptt_added, 95.0), "target": 30 },
        "listener": loads.iter().map(|(speakers, load)| json!({ "speakers": speakers, "cpu_percent": load.cpu_percent, "peak_rss_mb": load.peak_rss_mb })).collect::<Vec<_>>(),
        "cpu_percent_per_speaker": per_speaker,
        "soak": soak.as_ref().map(|soak| json!({ "minutes": soak_minutes, "rss_mb": soak.rss_mb, "mouth_to_ear_after_ms": soak.mouth_to_ear_after, "mixer_underruns": soak.mixer_underruns, "output_glitches": soak.output_glitches, "concealed_percent_mean": soak.concealed_percent })),
    });
    write_report(&out, &report)?;
    println!("\nbench audio: wrote {}", out.display());
    Ok(())
}

/// `parec` of `probe.monitor` (stereo, 48 kHz), drained as it arrives.
struct Probe {
    child: Child,
    reader: std::thread::JoinHandle<Vec<u8>>,
}

fn record_probe(pulse: &PulseServer) -> Result<Probe> {
    let mut child = Command::new("parec")
        .args(["--device", "probe.monitor", "--rate=48000", "--channels=2", "--format=s16le", "--latency-msec=10"])
        .envs(pulse.env())
        .stdout(Stdio::piped())
        .spawn()
        .context("parec (run `cargo xtask setup`)")?;
    let mut stdout = child.stdout.take().context("parec stdout")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes).unwrap_or_default()
    });
    Ok(Probe { child, reader })
}

impl Probe {
    /// Stops recording; returns (left, right).
    fn finish(mut self) -> Result<(Vec<i16>, Vec<i16>)> {
        self.child.kill().context("stopping parec")?;
        self.child.wait().context("reaping parec")?;
        let bytes = self.reader.join().map_err(|_| anyhow::anyhow!("parec reader panicked"))?;
        let samples: Vec<i16> = bytes.chunks_exact(2).map(|pair| i16::from_le_bytes([pair[0], pair[1]])).collect();
        let left = samples.iter().step_by(2).copied().collect();
        let right = samples.iter().skip(1).step_by(2).copied().collect();
        Ok((left, right))
    }
}

/// What carries audio from alice's microphone (`mic_a`) to bob's speaker (`ear_b`) during one
/// series of chirps. The call is what we measure; the other two are baselines that split its
/// latency into stages: PulseAudio's own plumbing, and our device ends without the engine.
enum Carrier {
    /// Alice and bob in a LiveKit room: the whole path.
    Call,
    /// `parley mic-test`: the device ends a call uses (capture, queues, playback), no engine.
    DeviceEnds,
    /// PulseAudio's `module-loopback` at its lowest latency: the sound server alone.
    SoundServer,
    /// A call in which alice also shares the screen of the display `env` names at 1080p30 and
    /// bob watches it.
    CallSharing(Vec<(String, String)>),
    /// A call between `alice` and `bob`, either of them a browser (livekit-client in Chromium,
    /// headful on the display `display` names, its sound through the same probe).
    Pair { alice: Client, bob: Client, display: Vec<(String, String)> },
}

/// Who is at one end of a [`Carrier::Pair`] call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Parley,
    Browser,
    /// Parley with the engine's own device module recording and playing (`--platform-audio`).
    Platform,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Parley => "parley",
            Client::Browser => "browser",
            Client::Platform => "platform",
        }
    }
}

/// One end of a [`Carrier::Pair`] call, running.
enum End {
    Parley(crate::bench::Peer),
    Browser(BrowserPeer),
}

impl End {
    fn start(
        bench: &Bench,
        client: Client,
        room: &str,
        identity: &str,
        seconds: f64,
        display: &[(String, String)],
    ) -> Result<End> {
        let speaker = identity == "alice";
        Ok(match client {
            Client::Parley => {
                let device = if speaker { ["--input-device", "mic_a"] } else { ["--output-device", "ear_b"] };
                End::Parley(bench.peer(room, identity, seconds, &[device[0], device[1], "--cues", "none"])?)
            }
            Client::Platform => {
                // The engine's module takes the default devices, which PulseAudio's environment
                // variables choose; alice's module plays too, where nobody listens.
                let (mode, env) = if speaker {
                    ("talk", [("PULSE_SOURCE", "mic_a"), ("PULSE_SINK", "spare")])
                } else {
                    ("listen", [("PULSE_SOURCE", "spare.monitor"), ("PULSE_SINK", "ear_b")])
                };
                let env: Vec<(String, String)> =
                    env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
                End::Parley(bench.peer_with_env(room, identity, seconds, &["--platform-audio", mode], &env)?)
            }
            Client::Browser => {
                // A browser's defaults: its echo cancellation, noise suppression and gain control
                // on, as Parley's are. Chromium plays to PULSE_SINK; its microphone is picked by
                // name.
                let options = BrowserPeerOptions {
                    microphone: speaker.then(|| "mic_a".to_string()),
                    processing: true,
                    seconds,
                    ..Default::default()
                };
                let mut env = display.to_vec();
                env.push(("PULSE_SINK".into(), if speaker { "spare" } else { "ear_b" }.into()));
                End::Browser(bench.browser(room, identity, options, &env)?)
            }
        })
    }

    /// Waits until a browser end is in the call (alice publishing, bob hearing alice).
    fn wait_ready(&mut self, event: &str) -> Result<()> {
        if let End::Browser(browser) = self
            && browser.wait_for(event, Duration::from_secs(40)).is_none()
        {
            bail!("the browser peer never reported {event}: {:?}", browser.events());
        }
        Ok(())
    }

    fn finish(self, seconds: f64) -> Result<()> {
        match self {
            End::Parley(peer) => peer.finish().map(drop),
            End::Browser(browser) => {
                let finished = browser.finish(Duration::from_secs_f64(seconds + 30.0));
                if !finished.status.success() {
                    bail!("the browser peer failed: {:?}\n{}", finished.events, finished.stderr);
                }
                Ok(())
            }
        }
    }
}

/// The moving test pattern on `display`, so the shared screen changes every frame as a video
/// or a game would. Killed on drop.
pub(crate) struct PatternWindow(Child);

impl Drop for PatternWindow {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

pub(crate) fn open_pattern(bench: &Bench, display: &Xvfb) -> Result<PatternWindow> {
    crate::cargo(&["build", "--quiet", "--release", "--package", "parley-capture", "--bin", "parley-pattern-window"])?;
    let binary = bench.parley.with_file_name(format!("parley-pattern-window{}", std::env::consts::EXE_SUFFIX));
    let child = Command::new(&binary)
        .envs(display.env())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(PatternWindow(child))
}

/// Plays `CHIRPS` chirps into alice's microphone and finds each in bob's speaker output.
fn mouth_to_ear(bench: &Bench, pulse: &PulseServer) -> Result<Trials> {
    chirp_trials(bench, pulse, "m2e", Carrier::Call)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "not reported".to_string(), |value| format!("{value:.1} ms"))
}

/// Starts `carrier`; returns how to stop it once the chirps are through.
fn start_carrier(
    bench: &Bench,
    pulse: &PulseServer,
    room: &str,
    seconds: f64,
    carrier: Carrier,
) -> Result<Box<dyn FnOnce() -> Result<Vec<Value>>>> {
    match carrier {
        Carrier::Call => {
            let bob_args = ["--output-device", "ear_b", "--cues", "none", "--stats", "2"];
            let bob = bench.peer(room, "bob", seconds + 1.0, &bob_args)?;
            let alice = bench.peer(room, "alice", seconds, &["--input-device", "mic_a", "--cues", "none"])?;
            Ok(Box::new(move || {
                alice.finish()?;
                bob.finish()
            }))
        }
        Carrier::CallSharing(display) => {
            let bob_args = ["--output-device", "ear_b", "--cues", "none", "--watch", "alice"];
            let bob = bench.peer(room, "bob", seconds + 1.0, &bob_args)?;
            let alice_args =
                ["--input-device", "mic_a", "--cues", "none", "--share-screen", "0", "--share-quality", "1080p30"];
            let alice = bench.peer_with_env(room, "alice", seconds, &alice_args, &display)?;
            Ok(Box::new(move || {
                let alice = alice.finish()?;
                if !alice.iter().any(|event| event["event"] == "share_started") {
                    bail!("alice's share did not start: {alice:?}");
                }
                let bob = bob.finish()?;
                if !bob.iter().any(|event| event["event"] == "watch_started") {
                    bail!("bob did not watch alice's share: {bob:?}");
                }
                Ok(bob)
            }))
        }
        Carrier::Pair { alice, bob, display } => {
            let mut bob = End::start(bench, bob, room, "bob", seconds + 1.0, &display)?;
            bob.wait_ready("connected")?;
            let mut alice = End::start(bench, alice, room, "alice", seconds, &display)?;
            alice.wait_ready("published")?;
            bob.wait_ready("subscribed")?;
            Ok(Box::new(move || {
                alice.finish(seconds)?;
                bob.finish(seconds + 1.0)?;
                Ok(Vec::new())
            }))
        }
        Carrier::DeviceEnds => {
            let mut child = Command::new(&bench.parley)
                .args(["mic-test", "--input-device", "mic_a", "--output-device", "ear_b"])
                .envs(pulse.env())
                .stdout(Stdio::null())
                .spawn()
                .context("parley mic-test")?;
            Ok(Box::new(move || {
                stop(&mut child);
                Ok(Vec::new())
            }))
        }
        Carrier::SoundServer => {
            let index = pulse
                .pactl(&["load-module", "module-loopback", "source=mic_a", "sink=ear_b", "latency_msec=1"])
                .map_err(|error| anyhow::anyhow!("pactl load-module module-loopback: {error}"))?;
            let pulse_env = pulse.env();
            Ok(Box::new(move || {
                let status = Command::new("pactl").args(["unload-module", index.trim()]).envs(pulse_env).status()?;
                if !status.success() {
                    bail!("pactl unload-module failed ({status})");
                }
                Ok(Vec::new())
            }))
        }
    }
}

/// The chirps' delays from alice's microphone to bob's speaker, ms, and what bob's receiver
/// reported meanwhile (`receive_stats` events; none for the baselines).
struct Trials {
    latencies: Vec<f64>,
    receiver: Vec<Value>,
}

impl Trials {
    /// The mean of one `receive_stats` field over the run, skipping the first report (the jitter
    /// buffer starts high and settles within its first seconds).
    fn mean_stat(&self, field: &str) -> Option<f64> {
        let values: Vec<f64> = self
            .receiver
            .iter()
            .filter(|event| event["event"] == "receive_stats")
            .skip(1)
            .filter_map(|event| event[field].as_f64())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }
}

fn chirp_trials(bench: &Bench, pulse: &PulseServer, room: &str, carrier: Carrier) -> Result<Trials> {
    let probe_signal = chirp(300.0, 3000.0, 0.3, -6.0);
    let mut clip = vec![0i16; SAMPLE_RATE as usize * (CHIRPS + 1)];
    for index in 0..CHIRPS {
        let at = (index + 1) * SAMPLE_RATE as usize;
        clip[at..at + probe_signal.len()].copy_from_slice(&probe_signal);
    }
    let clip_path = bench.dir.join(format!("{room}-chirps.wav"));
    parley_audio::wav::write_mono_48k(&clip_path, &clip)?;
    let seconds = CHIRPS as f64 + 6.0;
    let finish = start_carrier(bench, pulse, room, seconds, carrier)?;
    std::thread::sleep(Duration::from_secs(3));
    let probe = record_probe(pulse)?;
    let played = Command::new("paplay")
        .args(["--device", "mouth"])
        .arg(&clip_path)
        .envs(pulse.env())
        .status()
        .context("paplay")?;
    if !played.success() {
        bail!("paplay failed ({played})");
    }
    std::thread::sleep(Duration::from_millis(800));
    let (left, right) = probe.finish()?;

    let receiver = finish()?;
    let mut latencies = Vec::new();
    let mut from = 0;
    while let Some(onset) = first_onset(&left[from..], -30.0, 48) {
        let start = from + onset.saturating_sub(480);
        let end = (start + probe_signal.len() + 960).min(left.len());
        let Some((lag_in, _)) = find_reference(&probe_signal, &left[start..end]) else { break };
        let sent = start + lag_in;
        // Chirps are 1 s apart and 0.3 s long: a 0.9 s window finds delays up to 0.6 s and never
        // the next chirp.
        let window_end = (sent + SAMPLE_RATE as usize * 9 / 10).min(right.len());
        if window_end > sent + probe_signal.len()
            && let Some((lag_out, score)) = find_reference(&probe_signal, &right[sent..window_end])
            && score > 0.2
        {
            latencies.push(lag_out as f64 * 1000.0 / SAMPLE_RATE as f64);
        }
        from = sent + SAMPLE_RATE as usize / 2;
        if from >= left.len() {
            break;
        }
    }
    if latencies.len() < CHIRPS / 2 {
        let said: Vec<_> = receiver
            .iter()
            .filter(|event| {
                !matches!(event["event"].as_str(), Some("receive_stats" | "watch_stats" | "active_speakers"))
            })
            .collect();
        bail!("only {} of {CHIRPS} chirps came out of bob's speaker; bob said: {said:?}", latencies.len());
    }
    Ok(Trials { latencies, receiver })
}

/// What the push-to-talk trials measured.
struct PushToTalk {
    /// Press → first audible sample at bob, ms.
    press_to_ear: Vec<f64>,
    /// The gate's opening → first audible sample at bob (the open-mic path), ms.
    open_mic: Vec<f64>,
    /// How far the first 60 ms after each onset stay below the same press's steady level (200 to
    /// 400 ms in), dB: a clipped or faded-in first syllable shows here.
    onset_deficit_db: Vec<f64>,
}

/// Push-to-talk presses of a tone, heard at bob; `env` is added to alice's environment (the DTX
/// comparison).
fn push_to_talk(bench: &Bench, room: &str, env: &[(String, String)]) -> Result<PushToTalk> {
    let recording = bench.dir.join(format!("{room}.wav"));
    let trial_seconds = 2.0;
    let seconds = 4.0 + PTT_TRIALS as f64 * trial_seconds;
    let bob = bench.peer(room, "bob", seconds + 1.0, &["--record", &recording.to_string_lossy()])?;
    let args = ["--tone", "1000", "--mode", "ptt", "--ptt-release-ms", "0"];
    let mut alice = bench.peer_with_env(room, "alice", seconds, &args, env)?;
    std::thread::sleep(Duration::from_secs(3));
    let mut presses = Vec::new();
    for _ in 0..PTT_TRIALS {
        presses.push(alice.command("ptt-start")?);
        std::thread::sleep(Duration::from_secs_f64(trial_seconds / 2.0));
        alice.command("ptt-stop")?;
        std::thread::sleep(Duration::from_secs_f64(trial_seconds / 2.0));
    }
    let alice_events = alice.finish()?;
    let bob_events = bob.finish()?;
    let played_start = unix_ns(&bob_events, "playout_started")? / 1e6;
    let samples = parley_audio::wav::read_mono_48k(&recording)?;
    let index_of = |ms: f64| (((ms - played_start) / 1000.0 * SAMPLE_RATE as f64).max(0.0) as usize).min(samples.len());
    // Milliseconds from `at` (wall clock) to the first audible sample within 800 ms after it.
    let heard_after = |at: f64| {
        first_onset(&samples[index_of(at)..index_of(at + 800.0)], -40.0, 48)
            .map(|onset| onset as f64 * 1000.0 / SAMPLE_RATE as f64)
    };
    let press_to_ear: Vec<f64> = presses.iter().filter_map(|&pressed| heard_after(pressed)).collect();
    let onset_deficit_db: Vec<f64> = presses
        .iter()
        .filter_map(|&pressed| {
            let onset = index_of(pressed) + (heard_after(pressed)? / 1000.0 * SAMPLE_RATE as f64) as usize;
            let at = |ms: usize| (onset + ms * SAMPLE_RATE as usize / 1000).min(samples.len());
            let first = rms_dbfs(&samples[onset..at(60)]);
            let steady = rms_dbfs(&samples[at(200)..at(400)]);
            (first.is_finite() && steady.is_finite()).then(|| f64::from(steady - first))
        })
        .collect();
    // The gate opens on the first frame after the press; from then on the path is an open mic's.
    let opened: Vec<f64> = alice_events
        .iter()
        .filter(|event| event["event"] == "transmit_changed" && event["on"] == true)
        .filter_map(|event| event["unix_ms"].as_f64())
        .collect();
    let open_mic: Vec<f64> = opened.iter().filter_map(|&at| heard_after(at)).collect();
    if press_to_ear.len() < PTT_TRIALS / 2 || open_mic.is_empty() {
        bail!("push-to-talk: only {} of {PTT_TRIALS} presses were heard", press_to_ear.len());
    }
    Ok(PushToTalk { press_to_ear, open_mic, onset_deficit_db })
}

/// A listener playing to a real device, with `speakers` remote tones.
/// A listener playing `speakers` remote speakers on `spare`: through our device ends, or the
/// engine's own (`platform`).
fn listener_load(bench: &Bench, speakers: usize, platform: bool) -> Result<Load> {
    let room = format!("crowd-{speakers}{}", if platform { "-platform" } else { "" });
    let mut crowd = bench.crowd(&room, speakers, 30.0)?;
    std::thread::sleep(Duration::from_secs(3 + speakers as u64 / 10));
    let listener = if platform {
        let env = [("PULSE_SINK".to_string(), "spare".to_string())];
        bench.peer_with_env(&room, "listener", 16.0, &["--platform-audio", "listen"], &env)?
    } else {
        bench.peer(&room, "listener", 16.0, &["--output-device", "spare", "--cues", "none"])?
    };
    let load = bench.measure(listener, (4.0, 14.0));
    stop(&mut crowd);
    load
}

struct Soak {
    rss_mb: Vec<f64>,
    mouth_to_ear_after: Vec<f64>,
    /// Mixes that found a speaker's queue short, summed over the speakers and the soak.
    mixer_underruns: u64,
    /// The output device's callbacks that found nothing to play, over the soak.
    output_glitches: u64,
    /// The engine's concealment (audio made up for late or lost packets), mean over the reports.
    concealed_percent: f64,
}

/// A listener with 10 speakers for `minutes`, RSS sampled every 30 s; then the mouth-to-ear
/// trials again to see whether latency grew.
fn soak(bench: &Bench, minutes: f64) -> Result<Soak> {
    let seconds = minutes * 60.0;
    let mut crowd = bench.crowd("soak", 10, seconds + 20.0)?;
    std::thread::sleep(Duration::from_secs(4));
    let args = ["--output-device", "spare", "--cues", "none", "--stats", "5"];
    let listener = bench.peer("soak", "listener", seconds + 5.0, &args)?;
    let pid = listener.child.id();
    let started = Instant::now();
    let mut rss_mb = Vec::new();
    while started.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(
            Duration::from_secs(30).min(Duration::from_secs_f64((seconds - started.elapsed().as_secs_f64()).max(0.1))),
        );
        if let Ok(rss) = current_rss_kb(pid) {
            rss_mb.push(rss as f64 / 1024.0);
        }
    }
    let events = listener.finish()?;
    stop(&mut crowd);
    let reports: Vec<&Value> = events.iter().filter(|event| event["event"] == "receive_stats").collect();
    if reports.is_empty() {
        bail!("the soak's listener reported no receive statistics");
    }
    let count = |field: &'static str| reports.iter().filter_map(move |event| event[field].as_u64());
    let concealed: Vec<f64> = reports.iter().filter_map(|event| event["concealed_percent"].as_f64()).collect();
    Ok(Soak {
        rss_mb,
        mouth_to_ear_after: Vec::new(),
        mixer_underruns: count("mixer_underruns").sum(),
        output_glitches: count("output_glitches").max().unwrap_or(0),
        concealed_percent: concealed.iter().sum::<f64>() / concealed.len().max(1) as f64,
    })
}

fn current_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("parsing VmRSS")
}

pub(crate) fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        drop(Command::new("kill").args(["-TERM", &child.id().to_string()]).status());
    }
    drop(child.wait());
}
