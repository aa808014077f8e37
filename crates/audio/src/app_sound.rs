//! One application's sound, for screen share: the applications playing sound now, and a
//! recording of one of them alone, as 48 kHz mono 10 ms frames.
//!
//! Sharing a game's or a video's sound never carries anything else that plays, and never
//! Parley's own playout (the room would hear itself back): this process's sound is not listed,
//! and asking for it is refused ([`choose`]). Each OS records one application its own way,
//! behind this facade (STYLE.md 4):
//!
//! * Linux — `pulse`: a PulseAudio record stream on the monitor of the sink the application
//!   plays to, `direct_on_input` its stream (PipeWire's pulse server does the same);
//! * Windows — `wasapi`: WASAPI process loopback (Windows 10 2004+), the process and its
//!   children, whatever device they play to;
//! * macOS — `sck`: ScreenCaptureKit's audio of a filter that holds only that application
//!   (macOS 13+, with the Screen Recording permission).

use crate::resample::{MonoConverter, StreamResampler};

#[cfg(target_os = "macos")]
#[path = "app_sound/sck.rs"]
mod platform;
#[cfg(target_os = "linux")]
#[path = "app_sound/pulse.rs"]
mod platform;
#[cfg(windows)]
#[path = "app_sound/wasapi.rs"]
mod platform;

/// Where no module above applies, there is nothing to list or record.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod platform {
    use super::{AppSound, AppSoundError, OnFrame};

    pub(super) struct Recording;

    pub(super) fn sounds() -> Result<Vec<AppSound>, AppSoundError> {
        Err(AppSoundError::Unsupported(std::env::consts::OS.into()))
    }

    pub(super) fn record(_: &AppSound, _: OnFrame) -> Result<Recording, AppSoundError> {
        Err(AppSoundError::Unsupported(std::env::consts::OS.into()))
    }
}

/// What a platform's recording calls with each 48 kHz mono 10 ms frame.
type OnFrame = Box<dyn FnMut(&[i16]) + Send>;

#[derive(Debug, thiserror::Error)]
pub enum AppSoundError {
    #[error("no sound server to reach (PulseAudio or PipeWire's pulse server)")]
    NoServer,
    #[error("the sound server failed: {0}")]
    Server(String),
    /// The system refused (macOS: no Screen Recording permission).
    #[error("{0}")]
    Refused(String),
    /// This system cannot record one application's sound (too old a Windows or macOS).
    #[error("sharing an application's sound is not supported here: {0}")]
    Unsupported(String),
    #[error("no application playing sound matches {0:?}")]
    NotFound(String),
    #[error("{0:?} matches Parley's own sound, which is never shared")]
    OwnSound(String),
    #[error("{pattern:?} matches several applications playing sound: {names}")]
    Ambiguous { pattern: String, names: String },
}

/// An application playing sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSound {
    /// What `#<index>` names: on Linux the stream (sink input) index, elsewhere the process id.
    pub index: u32,
    /// The application's name.
    pub app: String,
    /// What it plays (Linux: `media.name`; Windows: the session's name), when it says.
    pub title: String,
    /// Its process, when known.
    pub pid: Option<u32>,
    /// Linux: the sink it plays to (recorded through that sink's monitor); 0 elsewhere.
    pub sink: u32,
}

impl std::fmt::Display for AppSound {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.title.is_empty() || self.title == self.app {
            write!(formatter, "{}", self.app)
        } else {
            write!(formatter, "{} ({})", self.app, self.title)
        }
    }
}

/// Every application playing sound but this process, in the system's order.
pub fn list() -> Result<Vec<AppSound>, AppSoundError> {
    let own = std::process::id();
    Ok(platform::sounds()?.into_iter().filter(|sound| sound.pid != Some(own)).collect())
}

/// The one application `pattern` names among `sounds` (all of them, ours included):
/// `#<index>`, a process id, or part of the application's name or title (case-insensitive).
pub fn choose(sounds: &[AppSound], pattern: &str, own_pid: u32) -> Result<AppSound, AppSoundError> {
    let wanted = pattern.trim();
    let lower = wanted.to_lowercase();
    let matches = |sound: &&AppSound| match wanted.strip_prefix('#').map(str::parse::<u32>) {
        Some(Ok(index)) => sound.index == index,
        _ => match wanted.parse::<u32>() {
            Ok(pid) => sound.pid == Some(pid),
            Err(_) => sound.app.to_lowercase().contains(&lower) || sound.title.to_lowercase().contains(&lower),
        },
    };
    let found: Vec<&AppSound> = sounds.iter().filter(matches).collect();
    let others: Vec<&AppSound> = found.iter().copied().filter(|sound| sound.pid != Some(own_pid)).collect();
    match (others.as_slice(), found.is_empty()) {
        ([one], _) => Ok((*one).clone()),
        ([], true) => Err(AppSoundError::NotFound(wanted.into())),
        ([], false) => Err(AppSoundError::OwnSound(wanted.into())),
        (several, _) => Err(AppSoundError::Ambiguous {
            pattern: wanted.into(),
            names: several.iter().map(|sound| format!("#{} {sound}", sound.index)).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Finds the application `pattern` names (see [`choose`]).
pub fn find(pattern: &str) -> Result<AppSound, AppSoundError> {
    choose(&platform::sounds()?, pattern, std::process::id())
}

/// Whether the application `index` names still plays sound.
pub fn exists(index: u32) -> Result<bool, AppSoundError> {
    Ok(platform::sounds()?.iter().any(|sound| sound.index == index))
}

/// A recording of one application's sound, running until dropped.
pub struct AppSoundRecording {
    _recording: platform::Recording,
}

/// Records `sound` alone and calls `on_frame` with each 10 ms frame ([`crate::FRAME_SAMPLES`]
/// samples, 48 kHz mono) on a thread of the recording's own (not a real-time audio thread: it
/// may block briefly). Refuses this process's own sound.
pub fn record(
    sound: &AppSound,
    on_frame: impl FnMut(&[i16]) + Send + 'static,
) -> Result<AppSoundRecording, AppSoundError> {
    if sound.pid == Some(std::process::id()) {
        return Err(AppSoundError::OwnSound(sound.app.clone()));
    }
    Ok(AppSoundRecording { _recording: platform::record(sound, Box::new(on_frame))? })
}

/// Cuts interleaved float samples at any rate and channel count into 48 kHz mono 10 ms frames:
/// for the platforms whose recordings hand over float blocks of their own size (Windows, macOS;
/// Linux's sound server converts for us). Converts with [`MonoConverter`] and keeps the
/// remainder for the next block.
#[cfg_attr(target_os = "linux", allow(dead_code, reason = "used by the Windows and macOS recordings"))]
pub(crate) struct Framer {
    converter: MonoConverter,
    pending: Vec<i16>,
}

#[cfg_attr(target_os = "linux", allow(dead_code, reason = "used by the Windows and macOS recordings"))]
impl Framer {
    /// Errors: a rate the resampler cannot convert.
    pub(crate) fn new(rate: u32, channels: u16) -> Result<Framer, AppSoundError> {
        let resampler = match rate {
            crate::SAMPLE_RATE => None,
            rate => Some(
                StreamResampler::new(rate, crate::SAMPLE_RATE)
                    .map_err(|error| AppSoundError::Server(format!("cannot convert {rate} Hz: {error}")))?,
            ),
        };
        Ok(Framer {
            converter: MonoConverter::new(channels, resampler),
            pending: Vec::with_capacity(crate::FRAME_SAMPLES * 8),
        })
    }

    /// Adds interleaved samples; calls `on_frame` for each whole frame now available.
    pub(crate) fn push(&mut self, interleaved: &[f32], on_frame: &mut dyn FnMut(&[i16])) {
        self.converter.push(interleaved, &mut self.pending);
        let whole = self.pending.len() / crate::FRAME_SAMPLES * crate::FRAME_SAMPLES;
        for frame in self.pending[..whole].chunks_exact(crate::FRAME_SAMPLES) {
            on_frame(frame);
        }
        self.pending.drain(..whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sound(index: u32, app: &str, pid: u32) -> AppSound {
        AppSound { index, app: app.into(), title: String::new(), pid: Some(pid), sink: 0 }
    }

    #[test]
    fn a_pattern_names_one_application_and_never_our_own_sound() {
        let sounds = [sound(3, "Tone Player", 100), sound(4, "parley", 200), sound(5, "Firefox", 300)];
        assert_eq!(choose(&sounds, "tone", 200).expect("by name").index, 3);
        assert_eq!(choose(&sounds, "#5", 200).expect("by index").app, "Firefox");
        assert_eq!(choose(&sounds, "300", 200).expect("by process").index, 5);
        assert!(matches!(choose(&sounds, "parley", 200), Err(AppSoundError::OwnSound(_))));
        assert!(matches!(choose(&sounds, "#4", 200), Err(AppSoundError::OwnSound(_))));
        assert!(matches!(choose(&sounds, "spotify", 200), Err(AppSoundError::NotFound(_))));
        // Another Parley (another process) is another application.
        assert_eq!(choose(&sounds, "parley", 999).expect("someone else's").index, 4);
        let twice = [sound(3, "Player one", 1), sound(6, "Player two", 2)];
        assert!(matches!(choose(&twice, "player", 9), Err(AppSoundError::Ambiguous { .. })));
    }

    #[test]
    fn our_own_sound_is_never_recorded() {
        let own = sound(1, "parley", std::process::id());
        assert!(matches!(record(&own, |_| {}), Err(AppSoundError::OwnSound(_))));
    }

    #[test]
    fn the_framer_turns_stereo_44_1_khz_blocks_into_mono_48_khz_frames_of_the_same_tone() {
        let mut framer = Framer::new(44_100, 2).expect("a rate it converts");
        let mut frames: Vec<i16> = Vec::new();
        let mut phase = 0.0f32;
        // One second in uneven blocks (as a device hands them over), left and right equal.
        for block in [441usize, 1000, 17, 2942].iter().cycle().take(40) {
            let mut interleaved = Vec::with_capacity(block * 2);
            for _ in 0..*block {
                let value = 0.5 * (phase * std::f32::consts::TAU).sin();
                phase = (phase + 1000.0 / 44_100.0).fract();
                interleaved.extend([value, value]);
            }
            framer.push(&interleaved, &mut |frame| {
                assert_eq!(frame.len(), crate::FRAME_SAMPLES);
                frames.extend_from_slice(frame);
            });
        }
        let pushed_seconds = [441usize, 1000, 17, 2942].iter().sum::<usize>() as f32 * 10.0 / 44_100.0;
        let got_seconds = frames.len() as f32 / crate::SAMPLE_RATE as f32;
        assert!((got_seconds - pushed_seconds).abs() < 0.05, "{got_seconds} s out of {pushed_seconds} s in");
        let samples = &frames[4800..];
        let dominant = crate::analysis::dominant_frequency(samples, crate::SAMPLE_RATE);
        assert!((dominant - 1000.0).abs() < 10.0, "dominant {dominant} Hz");
        let level = crate::analysis::rms_dbfs(samples);
        assert!((level - (-9.0)).abs() < 1.0, "level {level} dBFS (a 0.5 sine is −9 dBFS)");
    }
}
