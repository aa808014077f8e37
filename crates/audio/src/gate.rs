//! The transmit gate: decides, frame by frame, whether the microphone is sent.
//!
//! Push-to-talk gates frames here, with the track kept published and unmuted, as Mumble does:
//! toggling the LiveKit track mute would make the server drop packets until the unmute message
//! arrives on the signalling socket, clipping the first syllable (DESIGN.md §3). Time is counted
//! in 10 ms frames, so the gate is deterministic and testable without clocks.

use serde::{Deserialize, Serialize};

/// How the microphone decides to transmit.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum TransmitMode {
    /// Always transmit.
    #[default]
    OpenMic,
    /// Transmit while the input is louder than `threshold_dbfs`; stop once it has been below
    /// `threshold_dbfs − hysteresis_db` for `hold_ms`.
    VoiceActivity { threshold_dbfs: f32, hysteresis_db: f32, hold_ms: u32 },
    /// Transmit while the key is held, and `release_delay_ms` after it is released (0–2000).
    /// With `double_tap_lock`, two presses within 300 ms keep it open until the next press.
    PushToTalk { release_delay_ms: u32, double_tap_lock: bool },
}

/// Two presses closer than this are a double tap.
const DOUBLE_TAP_FRAMES: u64 = 30;
/// The longest release delay users may set.
pub const MAX_RELEASE_DELAY_MS: u32 = 2000;

/// The gate's state; owned by the audio worker.
#[derive(Debug, Clone)]
pub struct TransmitGate {
    mode: TransmitMode,
    frame: u64,
    key_down: bool,
    locked: bool,
    last_press: Option<u64>,
    open_until: u64,
    open: bool,
}

impl TransmitGate {
    pub fn new(mode: TransmitMode) -> TransmitGate {
        TransmitGate { mode, frame: 0, key_down: false, locked: false, last_press: None, open_until: 0, open: false }
    }

    pub fn mode(&self) -> TransmitMode {
        self.mode
    }

    /// Changes mode; a held key or a lock is forgotten.
    pub fn set_mode(&mut self, mode: TransmitMode) {
        *self = TransmitGate { frame: self.frame, ..TransmitGate::new(mode) };
    }

    /// The push-to-talk key went down.
    pub fn press(&mut self) {
        if self.key_down {
            return; // key repeat
        }
        self.key_down = true;
        let double_tap_lock = matches!(self.mode, TransmitMode::PushToTalk { double_tap_lock: true, .. });
        if self.locked {
            self.locked = false; // any press ends a lock
            self.last_press = None;
            return;
        }
        if double_tap_lock && self.last_press.is_some_and(|last| self.frame - last <= DOUBLE_TAP_FRAMES) {
            self.locked = true;
        }
        self.last_press = Some(self.frame);
    }

    /// The push-to-talk key came up.
    pub fn release(&mut self) {
        if !self.key_down {
            return;
        }
        self.key_down = false;
        if let TransmitMode::PushToTalk { release_delay_ms, .. } = self.mode {
            let delay = release_delay_ms.min(MAX_RELEASE_DELAY_MS) as u64 / 10;
            self.open_until = self.frame + delay;
        }
    }

    /// Whether push-to-talk is locked open by a double tap.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Decides one 10 ms frame whose level is `level_dbfs`; silences it when closed. Returns
    /// whether the frame is transmitted.
    pub fn process(&mut self, frame: &mut [i16], level_dbfs: f32) -> bool {
        self.frame += 1;
        self.open = match self.mode {
            TransmitMode::OpenMic => true,
            TransmitMode::PushToTalk { .. } => self.key_down || self.locked || self.frame <= self.open_until,
            TransmitMode::VoiceActivity { threshold_dbfs, hysteresis_db, hold_ms } => {
                // Opening needs the full threshold; staying open only the lower, hysteresis one.
                let voiced =
                    level_dbfs >= threshold_dbfs || (self.open && level_dbfs >= threshold_dbfs - hysteresis_db);
                if voiced {
                    self.open_until = self.frame + hold_ms as u64 / 10;
                }
                voiced || self.frame <= self.open_until
            }
        };
        if !self.open {
            frame.fill(0);
        }
        self.open
    }

    /// Whether the last frame was transmitted.
    pub fn is_open(&self) -> bool {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(gate: &mut TransmitGate, frames: usize, level: f32) -> Vec<bool> {
        (0..frames).map(|_| gate.process(&mut [1i16; 4], level)).collect()
    }

    #[test]
    fn open_mic_always_transmits() {
        let mut gate = TransmitGate::new(TransmitMode::OpenMic);
        assert!(run(&mut gate, 5, -90.0).iter().all(|&open| open));
    }

    #[test]
    fn push_to_talk_opens_while_held_and_for_the_release_delay() {
        let mut gate = TransmitGate::new(TransmitMode::PushToTalk { release_delay_ms: 50, double_tap_lock: false });
        assert!(run(&mut gate, 3, -10.0).iter().all(|&open| !open), "closed before the key");
        gate.press();
        assert!(run(&mut gate, 10, -10.0).iter().all(|&open| open), "open while held");
        gate.release();
        assert_eq!(
            run(&mut gate, 8, -10.0),
            [true, true, true, true, true, false, false, false],
            "50 ms after release"
        );
        let mut frame = [5i16; 4];
        assert!(!gate.process(&mut frame, -10.0));
        assert_eq!(frame, [0; 4], "a closed gate sends silence");
    }

    #[test]
    fn a_double_tap_locks_push_to_talk_until_the_next_press() {
        let mut gate = TransmitGate::new(TransmitMode::PushToTalk { release_delay_ms: 0, double_tap_lock: true });
        gate.press();
        run(&mut gate, 5, -10.0);
        gate.release();
        run(&mut gate, 5, -10.0);
        gate.press();
        gate.release();
        assert!(gate.locked(), "two presses within 300 ms lock");
        assert!(run(&mut gate, 100, -10.0).iter().all(|&open| open), "locked open");
        gate.press();
        gate.release();
        assert!(!gate.locked());
        assert!(!run(&mut gate, 2, -10.0)[1], "the next press unlocks");
    }

    #[test]
    fn slow_presses_do_not_lock() {
        let mut gate = TransmitGate::new(TransmitMode::PushToTalk { release_delay_ms: 0, double_tap_lock: true });
        gate.press();
        gate.release();
        run(&mut gate, 40, -10.0);
        gate.press();
        gate.release();
        assert!(!gate.locked(), "presses 400 ms apart are not a double tap");
    }

    #[test]
    fn voice_activity_uses_threshold_hysteresis_and_hold() {
        let mode = TransmitMode::VoiceActivity { threshold_dbfs: -40.0, hysteresis_db: 6.0, hold_ms: 30 };
        let mut gate = TransmitGate::new(mode);
        assert!(run(&mut gate, 5, -60.0).iter().all(|&open| !open), "quiet input is not sent");
        assert!(run(&mut gate, 2, -30.0).iter().all(|&open| open), "speech opens the gate");
        assert!(run(&mut gate, 10, -43.0).iter().all(|&open| open), "within the hysteresis it stays open");
        assert_eq!(run(&mut gate, 5, -60.0), [true, true, true, false, false], "then the 30 ms hold runs out");
        assert!(!run(&mut gate, 1, -43.0)[0], "reopening needs the full threshold");
    }
}
