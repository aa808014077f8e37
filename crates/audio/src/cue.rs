//! Short sounds that confirm what happened: joining, leaving, someone arriving, mute, deafen,
//! push-to-talk, and "you are muted" when speaking into a muted microphone.
//!
//! The sounds are generated (short tone sequences with soft edges), so the repository ships no
//! audio files. They play through rodio on the chosen output device, on a thread of their own:
//! a cue never waits for, or delays, the voice path.
//!
//! The output stream is open only around cues: opened with the player (which checks the
//! device), closed after [`IDLE_CLOSE`] without one, opened again for the next. An open rodio
//! stream plays silence all the time, and through cpal's PulseAudio client that cost a call
//! about 3 % of a core (`cargo xtask bench app --perf`: its `memset`) for sounds that play a
//! few times a minute.

use std::collections::HashSet;
use std::num::NonZero;
use std::str::FromStr;

use crate::SAMPLE_RATE;

/// How long the cue stream stays open after the last cue started (cues last under 0.5 s).
pub const IDLE_CLOSE: std::time::Duration = std::time::Duration::from_secs(2);

/// Every cue Parley plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cue {
    Joined,
    Left,
    ParticipantJoined,
    ParticipantLeft,
    Muted,
    Unmuted,
    Deafened,
    Undeafened,
    PttOn,
    PttOff,
    YouAreMuted,
}

impl Cue {
    pub const ALL: [Cue; 11] = [
        Cue::Joined,
        Cue::Left,
        Cue::ParticipantJoined,
        Cue::ParticipantLeft,
        Cue::Muted,
        Cue::Unmuted,
        Cue::Deafened,
        Cue::Undeafened,
        Cue::PttOn,
        Cue::PttOff,
        Cue::YouAreMuted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cue::Joined => "joined",
            Cue::Left => "left",
            Cue::ParticipantJoined => "participant-joined",
            Cue::ParticipantLeft => "participant-left",
            Cue::Muted => "muted",
            Cue::Unmuted => "unmuted",
            Cue::Deafened => "deafened",
            Cue::Undeafened => "undeafened",
            Cue::PttOn => "ptt-on",
            Cue::PttOff => "ptt-off",
            Cue::YouAreMuted => "you-are-muted",
        }
    }

    /// The notes: (frequency Hz, milliseconds); 0 Hz is a pause.
    fn notes(self) -> &'static [(f32, u32)] {
        match self {
            Cue::Joined => &[(660.0, 90), (880.0, 120)],
            Cue::Left => &[(880.0, 90), (660.0, 120)],
            Cue::ParticipantJoined => &[(990.0, 70), (1320.0, 90)],
            Cue::ParticipantLeft => &[(1320.0, 70), (990.0, 90)],
            Cue::Muted => &[(520.0, 60), (390.0, 90)],
            Cue::Unmuted => &[(390.0, 60), (520.0, 90)],
            Cue::Deafened => &[(330.0, 70), (0.0, 40), (330.0, 70)],
            Cue::Undeafened => &[(440.0, 70), (0.0, 40), (440.0, 70)],
            Cue::PttOn => &[(1200.0, 35)],
            Cue::PttOff => &[(900.0, 35)],
            Cue::YouAreMuted => &[(300.0, 80), (0.0, 60), (300.0, 80), (0.0, 60), (300.0, 80)],
        }
    }

    /// The cue as 48 kHz mono samples in −1…1, at about −14 dBFS with 5 ms fades.
    pub fn samples(self) -> Vec<f32> {
        let amplitude = 0.2;
        let fade = (SAMPLE_RATE / 200) as usize;
        let mut samples = Vec::new();
        for &(frequency, milliseconds) in self.notes() {
            let count = (SAMPLE_RATE * milliseconds / 1000) as usize;
            for index in 0..count {
                let edge = index.min(count - 1 - index);
                let envelope = if edge < fade { edge as f32 / fade as f32 } else { 1.0 };
                let phase = std::f32::consts::TAU * frequency * index as f32 / SAMPLE_RATE as f32;
                samples.push(if frequency > 0.0 { phase.sin() * amplitude * envelope } else { 0.0 });
            }
        }
        samples
    }
}

impl FromStr for Cue {
    type Err = String;

    fn from_str(name: &str) -> Result<Cue, String> {
        Cue::ALL.into_iter().find(|cue| cue.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Cue::ALL.iter().map(|cue| cue.name()).collect();
            format!("unknown cue {name:?}; cues: {}", names.join(", "))
        })
    }
}

/// Plays cues on one output device from a thread of its own. Cheap to clone; any thread.
#[derive(Clone)]
pub struct CuePlayer {
    enabled: HashSet<Cue>,
    requests: std::sync::mpsc::SyncSender<Cue>,
}

impl CuePlayer {
    /// Opens `device` (id or name; `None` = system default) for cues and plays `enabled` ones.
    pub fn open(device: Option<&str>, enabled: HashSet<Cue>) -> Result<CuePlayer, crate::device::DeviceError> {
        let (host, cpal_device) = crate::device::find_output_separately(device)?;
        let name = crate::device::device_name(&cpal_device);
        let open_error =
            |reason: String| crate::device::DeviceError::Open { direction: "output", device: name.clone(), reason };
        let (requests, received) = std::sync::mpsc::sync_channel::<Cue>(16);
        let (ready, opened) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        std::thread::Builder::new()
            .name("cues".into())
            .spawn(move || {
                // The connection lives as long as the cue thread.
                let _host = host;
                let open = || -> Result<rodio::MixerDeviceSink, String> {
                    let builder = rodio::DeviceSinkBuilder::from_device(cpal_device.clone());
                    let mut sink =
                        builder.and_then(|builder| builder.open_stream()).map_err(|error| error.to_string())?;
                    sink.log_on_drop(false);
                    Ok(sink)
                };
                let mut sink = match open() {
                    Ok(sink) => Some(sink),
                    Err(error) => {
                        // The opener waits for this answer; if it is gone there is nobody to tell.
                        drop(ready.send(Err(error)));
                        return;
                    }
                };
                if ready.send(Ok(())).is_err() {
                    return;
                }
                let channels = NonZero::new(1u16).expect("1 is not zero");
                let rate = NonZero::new(SAMPLE_RATE).expect("48000 is not zero");
                loop {
                    let request = match sink {
                        Some(_) => received.recv_timeout(IDLE_CLOSE),
                        None => received.recv().map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
                    };
                    match request {
                        Ok(cue) => {
                            if sink.is_none() {
                                sink = open()
                                    .inspect_err(|error| tracing::debug!(%error, "cannot open the cue stream"))
                                    .ok();
                            }
                            if let Some(sink) = &sink {
                                sink.mixer().add(rodio::buffer::SamplesBuffer::new(channels, rate, cue.samples()));
                            }
                        }
                        // Quiet for a while: the stream closes until the next cue.
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => sink = None,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .map_err(|error| open_error(error.to_string()))?;
        match opened.recv() {
            Ok(Ok(())) => Ok(CuePlayer { enabled, requests }),
            Ok(Err(reason)) => Err(open_error(reason)),
            Err(_) => Err(open_error("the cue thread stopped".into())),
        }
    }

    /// Plays `cue` if it is enabled. Never blocks: when cues pile up, the extra one is skipped.
    /// Returns how long the cue lasts (zero when it does not play).
    pub fn play(&self, cue: Cue) -> std::time::Duration {
        if !self.enabled.contains(&cue) {
            return std::time::Duration::ZERO;
        }
        if self.requests.try_send(cue).is_err() {
            tracing::debug!(cue = cue.name(), "cue skipped: the cue thread is busy or gone");
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_millis(cue.notes().iter().map(|&(_, milliseconds)| milliseconds as u64).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::dominant_frequency;

    fn as_i16(samples: &[f32]) -> Vec<i16> {
        samples.iter().map(|&value| (value * i16::MAX as f32) as i16).collect()
    }

    #[test]
    fn each_cue_sounds_its_notes() {
        let joined = as_i16(&Cue::Joined.samples());
        let first = dominant_frequency(&joined[..4320], SAMPLE_RATE);
        let second = dominant_frequency(&joined[4320..], SAMPLE_RATE);
        assert!((first - 660.0).abs() < 15.0 && (second - 880.0).abs() < 15.0, "joined rises: {first} → {second}");
        let left = as_i16(&Cue::Left.samples());
        assert!(
            dominant_frequency(&left[..4320], SAMPLE_RATE) > dominant_frequency(&left[4320..], SAMPLE_RATE),
            "left falls"
        );
        for cue in Cue::ALL {
            let samples = cue.samples();
            assert!(!samples.is_empty() && samples.len() < SAMPLE_RATE as usize / 2, "{cue:?} is short");
            assert!(samples.iter().all(|value| value.abs() <= 0.2), "{cue:?} is not loud");
        }
    }

    #[test]
    fn cue_names_parse_back() {
        for cue in Cue::ALL {
            assert_eq!(cue.name().parse::<Cue>(), Ok(cue));
        }
        assert!("boom".parse::<Cue>().expect_err("unknown").contains("joined"));
    }
}
