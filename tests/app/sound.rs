//! Sound at the app's devices, through the test's private PulseAudio: an [`Ear`] records what
//! the app plays on a sink (its monitor, with `parec`) and can be read while it records; a
//! [`Mouth`] plays a sine into a sink whose monitor is the app's microphone (`pacat`).

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{dominant_frequency, tone_gain_dbfs, tone_level_dbfs, typical_band_fraction};
use parley_devserver::pulse::PulseServer;

/// Samples per second, as a `usize` for slicing.
const RATE: usize = SAMPLE_RATE as usize;

/// `parec` on `<sink>.monitor` (48 kHz mono s16), drained into memory as it arrives. Stopped on
/// drop.
pub struct Ear {
    child: Child,
    samples: Arc<Mutex<Vec<i16>>>,
}

impl Ear {
    pub fn on(pulse: &PulseServer, sink: &str) -> Ear {
        let mut child = Command::new("parec")
            .arg(format!("--device={sink}.monitor"))
            .args(["--rate=48000", "--channels=1", "--format=s16le", "--latency-msec=20"])
            .envs(pulse.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting parec (pulseaudio-utils; run `cargo xtask setup`)");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink_samples = Arc::clone(&samples);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4800];
            let mut odd: Option<u8> = None;
            while let Ok(read) = stdout.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                let mut bytes: Vec<u8> = odd.take().into_iter().collect();
                bytes.extend_from_slice(&chunk[..read]);
                if bytes.len() % 2 == 1 {
                    odd = bytes.pop();
                }
                let decoded = bytes.chunks_exact(2).map(|pair| i16::from_le_bytes([pair[0], pair[1]]));
                sink_samples.lock().expect("samples lock").extend(decoded);
            }
        });
        Ear { child, samples }
    }

    /// How many samples were recorded so far.
    pub fn sample_count(&self) -> usize {
        self.samples.lock().expect("samples lock").len()
    }

    /// The last `seconds` of the recording (less if it is shorter).
    pub fn last(&self, seconds: f64) -> Vec<i16> {
        let samples = self.samples.lock().expect("samples lock");
        let count = ((seconds * RATE as f64) as usize).min(samples.len());
        samples[samples.len() - count..].to_vec()
    }

    /// The recording from sample `from` on.
    pub fn since(&self, from: usize) -> Vec<i16> {
        let samples = self.samples.lock().expect("samples lock");
        samples[from.min(samples.len())..].to_vec()
    }

    /// Waits until the last second of the recording carries `frequency` at `min_dbfs` or louder
    /// (the sound arrived). Returns how long that took; panics with `what` after `timeout`.
    pub fn wait_for_tone(&self, frequency: f32, min_dbfs: f32, timeout: Duration, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let last = self.last(1.0);
            let level = if last.len() == RATE { tone_level_dbfs(&last, SAMPLE_RATE, frequency) } else { -200.0 };
            if level >= min_dbfs {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{what}: {frequency} Hz should arrive at ≥ {min_dbfs} dBFS within {} s (last second: {level:.1} dBFS)",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits `seconds` more and returns what was recorded in them.
    pub fn listen(&self, seconds: f64) -> Vec<i16> {
        let from = self.sample_count();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let heard = self.since(from);
        assert!(
            heard.len() as f64 >= seconds * RATE as f64 * 0.9,
            "parec should record {seconds} s in {seconds} s, got {} samples",
            heard.len()
        );
        heard
    }
}

impl Drop for Ear {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            eprintln!("parec already gone: {error}");
        }
        if let Err(error) = self.child.wait() {
            eprintln!("could not reap parec: {error}");
        }
    }
}

/// What a steady tone measured: its dominant frequency, its level and its share of the energy.
#[derive(Debug, Clone, Copy)]
pub struct ToneReading {
    pub frequency_hz: f32,
    pub level_dbfs: f32,
    /// The typical share of the energy near the tone (median of 50 ms windows, ±50 Hz).
    pub share: f32,
}

pub fn read_tone(samples: &[i16], expected_hz: f32) -> ToneReading {
    ToneReading {
        frequency_hz: dominant_frequency(samples, SAMPLE_RATE),
        level_dbfs: tone_level_dbfs(samples, SAMPLE_RATE, expected_hz),
        share: typical_band_fraction(samples, SAMPLE_RATE, expected_hz, 50.0),
    }
}

/// The tone's level while it sounds (see [`tone_gain_dbfs`]): for comparing gains, where a
/// playout gap on a loaded machine must not read as a quieter tone.
pub fn tone_gain(samples: &[i16], expected_hz: f32) -> f32 {
    tone_gain_dbfs(samples, SAMPLE_RATE, expected_hz)
}

/// `pacat` playing a steady sine into a sink, as a person holding a note into a microphone.
/// The sine is computed here, independent of Parley's own tone generator. Stopped on drop.
pub struct Mouth {
    child: Child,
}

impl Mouth {
    /// Plays `frequency` Hz at `peak_dbfs` into `sink` for `seconds`.
    pub fn sing(pulse: &PulseServer, sink: &str, frequency: f64, peak_dbfs: f64, seconds: f64) -> Mouth {
        Mouth::sing_as(pulse, sink, "pacat", frequency, peak_dbfs, seconds)
    }

    /// [`Mouth::sing`] as an application named `app` (its playback stream's client name), as a
    /// game or a video player on the desktop.
    pub fn sing_as(pulse: &PulseServer, sink: &str, app: &str, frequency: f64, peak_dbfs: f64, seconds: f64) -> Mouth {
        let mut child = Command::new("pacat")
            .arg("--playback")
            .arg(format!("--device={sink}"))
            .arg(format!("--client-name={app}"))
            .args(["--rate=48000", "--channels=1", "--format=s16le", "--latency-msec=20"])
            .envs(pulse.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting pacat (pulseaudio-utils; run `cargo xtask setup`)");
        let amplitude = 10f64.powf(peak_dbfs / 20.0) * f64::from(i16::MAX);
        let count = (seconds * RATE as f64) as usize;
        let bytes: Vec<u8> = (0..count)
            .map(|index| (amplitude * (std::f64::consts::TAU * frequency * index as f64 / RATE as f64).sin()) as i16)
            .flat_map(i16::to_le_bytes)
            .collect();
        let mut stdin = child.stdin.take().expect("piped stdin");
        // pacat takes the samples at the sink's pace; a broken pipe only means it was stopped.
        std::thread::spawn(move || {
            if let Err(error) = stdin.write_all(&bytes)
                && error.kind() != std::io::ErrorKind::BrokenPipe
            {
                eprintln!("pacat stopped taking samples: {error}");
            }
        });
        Mouth { child }
    }
}

impl Drop for Mouth {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            eprintln!("pacat already gone: {error}");
        }
        if let Err(error) = self.child.wait() {
            eprintln!("could not reap pacat: {error}");
        }
    }
}
