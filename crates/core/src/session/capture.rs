//! The capture loop (`parley-capture` thread): each 10 ms frame of the input, as it arrives,
//! goes through echo cancellation, the level meter and the transmit gate, and — while the
//! track is published — to the engine's audio source.
//!
//! The loop knows its ends only as a [`FrameSource`] and an [`Outlet`], so tests drive it with
//! a clip and a recorder; the session gives it a device or a file and the engine.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use parley_audio::analysis::rms_dbfs;
use parley_audio::cue::{Cue, CuePlayer};
use parley_audio::gate::{TransmitGate, TransmitMode};
use parley_audio::stream::FrameSource;
use parley_audio::{FRAME_SAMPLES, SAMPLE_RATE};
use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::event::{SessionEvent, StampedEvent, emit, unix_ns};
use super::meter::SILENCE_DBFS;
use super::pace::Pace;

/// Speaking into a muted microphone louder than this earns a "you are muted" cue…
const SPEAKING_DBFS: f32 = -40.0;
/// …at most once per this many 10 ms frames (5 s).
const MUTED_REMINDER_FRAMES: u64 = 500;

/// The audio processing module shared by the microphone (near end) and playout (far end).
pub(super) type SharedApm = Arc<Mutex<ffi::Apm>>;

/// What the capture loop's gate is told; polled once per frame.
pub(super) enum GateCommand {
    Press,
    Release,
}

/// Where transmitted frames go.
pub(super) trait Outlet: Send {
    /// Sends one frame. The buffer comes back once the receiver no longer reads it.
    fn send(&mut self, frame: Vec<i16>) -> Result<Vec<i16>, String>;
}

/// The engine's audio source, fed from the capture thread.
pub(super) struct EngineOutlet {
    pub(super) source: Arc<ffi::AudioSource>,
    pub(super) runtime: tokio::runtime::Handle,
}

impl Outlet for EngineOutlet {
    fn send(&mut self, frame: Vec<i16>) -> Result<Vec<i16>, String> {
        // The engine answers once it has taken the frame (its queue is zero-length, so this is
        // quick); the buffer stays ours until then.
        self.runtime.block_on(self.source.capture_frame(frame)).map_err(|error| error.to_string())
    }
}

/// What the capture loop needs: the input, its processing and its gate.
pub(super) struct MicrophoneSetup {
    pub(super) input: Box<dyn FrameSource>,
    pub(super) apm: Option<SharedApm>,
    pub(super) gate: TransmitGate,
    pub(super) muted: Arc<AtomicBool>,
    pub(super) cues: Option<CuePlayer>,
    /// The last frame's level (f32 bits), for the meter.
    pub(super) level: Arc<AtomicU32>,
    /// Whether frames go to the engine: true while the track is published. A listener's
    /// capture keeps running (meter, gate, a warm pipeline) but sends nothing.
    pub(super) publishing: Arc<AtomicBool>,
}

/// Sends each 10 ms frame of the input as it arrives. Each frame: input → APM (echo
/// cancellation etc.) → level → transmit gate → `outlet` (while published). Ends when `stop`
/// is set, or when the outlet fails. `sid` is the publication at start, if the track was
/// published at once. Runs on its own thread.
pub(super) fn run(
    setup: MicrophoneSetup,
    commands: &std::sync::mpsc::Receiver<GateCommand>,
    mut outlet: impl Outlet,
    events: &mpsc::UnboundedSender<StampedEvent>,
    sid: Option<String>,
    stop: &AtomicBool,
) {
    let MicrophoneSetup { mut input, apm, mut gate, muted, cues, level: meter_level, publishing } = setup;
    let push_to_talk = matches!(gate.mode(), TransmitMode::PushToTalk { .. });
    let mut frames = 0u64;
    let mut reminded_at: Option<u64> = None;
    let mut frame = vec![0i16; FRAME_SAMPLES];
    let mut ended = false;
    let mut transmitting = None;
    let clocked = input.clocked();
    let mut pace = Pace::new();
    if let Some(sid) = sid {
        emit(events, SessionEvent::PublishingStarted { sid, unix_ns: unix_ns() });
    }
    loop {
        if !pace.wait(clocked, stop, || input.ready()) {
            return;
        }
        if !input.fill(&mut frame) && !ended {
            ended = true;
            emit(events, SessionEvent::InputEnded);
        }
        if let Some(message) = input.take_notice() {
            emit(events, SessionEvent::DeviceChanged { message });
        }
        if let Some(apm) = &apm {
            let processed =
                apm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).process_stream(&mut frame, SAMPLE_RATE, 1);
            if let Err(error) = processed {
                emit(events, SessionEvent::Warning { message: format!("audio processing failed: {error}") });
            }
        }
        while let Ok(command) = commands.try_recv() {
            match command {
                GateCommand::Press => gate.press(),
                GateCommand::Release => gate.release(),
            }
        }
        let level = rms_dbfs(&frame);
        meter_level.store(level.max(SILENCE_DBFS).to_bits(), Ordering::Relaxed);
        let open = gate.process(&mut frame, level);
        frames += 1;
        if transmitting != Some(open) {
            if push_to_talk
                && transmitting.is_some()
                && let Some(cues) = &cues
            {
                cues.play(if open { Cue::PttOn } else { Cue::PttOff });
            }
            transmitting = Some(open);
            emit(events, SessionEvent::TransmitChanged { on: open });
        }
        if muted.load(Ordering::Relaxed)
            && open
            && level >= SPEAKING_DBFS
            && reminded_at.is_none_or(|at| frames - at >= MUTED_REMINDER_FRAMES)
            && let Some(cues) = &cues
        {
            reminded_at = Some(frames);
            cues.play(Cue::YouAreMuted);
        }
        if !publishing.load(Ordering::Relaxed) {
            // Not published (a listener, or publishing revoked): nothing leaves this machine.
            continue;
        }
        frame = match outlet.send(frame) {
            Ok(returned) => returned,
            Err(error) => {
                emit(events, SessionEvent::Warning { message: format!("sending audio failed: {error}") });
                return;
            }
        };
        frame.resize(FRAME_SAMPLES, 0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

    use parley_audio::signal::Tone;
    use parley_audio::stream::Clip;

    use super::*;

    /// Collects what would reach the engine; fails after `fail_after` frames when set.
    struct Collect {
        frames: Arc<Mutex<Vec<Vec<i16>>>>,
        fail_after: Option<usize>,
    }

    impl Outlet for Collect {
        fn send(&mut self, frame: Vec<i16>) -> Result<Vec<i16>, String> {
            let mut frames = self.frames.lock().expect("the test holds no lock across a panic");
            if self.fail_after.is_some_and(|limit| frames.len() >= limit) {
                return Err("the source is gone".to_string());
            }
            frames.push(frame.clone());
            Ok(frame)
        }
    }

    struct Rig {
        publishing: Arc<AtomicBool>,
        level: Arc<AtomicU32>,
        gate: SyncSender<GateCommand>,
        stop: Arc<AtomicBool>,
        sent: Arc<Mutex<Vec<Vec<i16>>>>,
        events: mpsc::UnboundedReceiver<StampedEvent>,
        thread: std::thread::JoinHandle<()>,
    }

    fn start(input: Box<dyn FrameSource>, mode: TransmitMode, publishing: bool, fail_after: Option<usize>) -> Rig {
        let publishing = Arc::new(AtomicBool::new(publishing));
        let level = Arc::new(AtomicU32::new(SILENCE_DBFS.to_bits()));
        let setup = MicrophoneSetup {
            input,
            apm: None,
            gate: TransmitGate::new(mode),
            muted: Arc::new(AtomicBool::new(false)),
            cues: None,
            level: Arc::clone(&level),
            publishing: Arc::clone(&publishing),
        };
        let (gate, commands): (SyncSender<GateCommand>, Receiver<GateCommand>) = sync_channel(8);
        let (sender, events) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let outlet = Collect { frames: Arc::clone(&sent), fail_after };
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            run(setup, &commands, outlet, &sender, Some("TR_mic".to_string()), &thread_stop);
        });
        Rig { publishing, level, gate, stop, sent, events, thread }
    }

    impl Rig {
        fn sent(&self) -> Vec<Vec<i16>> {
            self.sent.lock().expect("the loop holds no lock across a panic").clone()
        }

        fn wait_for_frames(&self, count: usize) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while self.sent().len() < count {
                assert!(std::time::Instant::now() < deadline, "{count} frames should have been sent within 10 s");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }

        fn finish(self) -> Vec<SessionEvent> {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.join().expect("the capture loop does not panic");
            let mut events = self.events;
            let mut seen = Vec::new();
            while let Ok(stamped) = events.try_recv() {
                seen.push(stamped.event);
            }
            seen
        }
    }

    fn tone(hz: f64, dbfs: f64) -> Box<dyn FrameSource> {
        Box::new(Tone::new(hz, dbfs))
    }

    #[test]
    fn an_open_microphone_sends_every_frame_of_the_input_and_meters_it() {
        let rig = start(tone(440.0, -12.0), TransmitMode::OpenMic, true, None);
        rig.wait_for_frames(5);
        let sent = rig.sent();
        let level = f32::from_bits(rig.level.load(Ordering::Relaxed));
        let events = rig.finish();
        let mut expected = Tone::new(440.0, -12.0);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        for (index, got) in sent.iter().take(5).enumerate() {
            expected.fill(&mut frame);
            assert_eq!(got, &frame, "frame {index} should be the input, untouched");
        }
        // A sine at −12 dBFS peak has an RMS 3 dB lower.
        assert!((level - -15.0).abs() < 0.5, "the meter should read the tone's RMS (−15 dBFS), read {level}");
        assert!(matches!(&events[0], SessionEvent::PublishingStarted { sid, .. } if sid == "TR_mic"), "{events:?}");
        assert!(events.contains(&SessionEvent::TransmitChanged { on: true }), "an open mic transmits: {events:?}");
    }

    #[test]
    fn a_listener_meters_its_microphone_but_sends_nothing_until_published() {
        let rig = start(tone(440.0, -12.0), TransmitMode::OpenMic, false, None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while f32::from_bits(rig.level.load(Ordering::Relaxed)) <= SILENCE_DBFS {
            assert!(std::time::Instant::now() < deadline, "the meter should move while not published");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(rig.sent().is_empty(), "nothing leaves the machine while not published");
        rig.publishing.store(true, Ordering::Relaxed);
        rig.wait_for_frames(3);
        rig.finish();
    }

    #[test]
    fn push_to_talk_sends_silence_until_pressed_then_the_voice() {
        let rig = start(
            tone(440.0, -12.0),
            TransmitMode::PushToTalk { release_delay_ms: 0, double_tap_lock: false },
            true,
            None,
        );
        rig.wait_for_frames(3);
        assert!(rig.sent().iter().all(|frame| frame.iter().all(|&sample| sample == 0)), "released: silence only");
        rig.gate.send(GateCommand::Press).expect("the loop listens");
        let before = rig.sent().len();
        rig.wait_for_frames(before + 10);
        let voiced = rig.sent()[before..].iter().filter(|frame| frame.iter().any(|&sample| sample != 0)).count();
        assert!(voiced >= 8, "pressed: the voice goes out ({voiced} of 10 frames voiced)");
        let events = rig.finish();
        let changes: Vec<_> =
            events.iter().filter(|event| matches!(event, SessionEvent::TransmitChanged { .. })).collect();
        assert_eq!(
            changes,
            [&SessionEvent::TransmitChanged { on: false }, &SessionEvent::TransmitChanged { on: true }],
            "the gate's changes are reported once each"
        );
    }

    #[test]
    fn a_clip_that_ends_is_reported_once_and_followed_by_silence() {
        let clip = Clip::new(vec![1000; FRAME_SAMPLES * 2]);
        let rig = start(Box::new(clip), TransmitMode::OpenMic, true, None);
        rig.wait_for_frames(6);
        let sent = rig.sent();
        let events = rig.finish();
        assert!(sent[..2].iter().all(|frame| frame.iter().all(|&sample| sample == 1000)), "the clip is sent");
        assert!(sent[3..6].iter().all(|frame| frame.iter().all(|&sample| sample == 0)), "then silence");
        let ended = events.iter().filter(|event| **event == SessionEvent::InputEnded).count();
        assert_eq!(ended, 1, "the end is reported once: {events:?}");
    }

    #[test]
    fn an_outlet_that_fails_ends_the_loop_with_a_warning() {
        let rig = start(tone(440.0, -12.0), TransmitMode::OpenMic, true, Some(2));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !rig.thread.is_finished() {
            assert!(std::time::Instant::now() < deadline, "the loop should end when sending fails");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let events = rig.finish();
        assert!(
            events.contains(&SessionEvent::Warning { message: "sending audio failed: the source is gone".into() }),
            "the failure is told: {events:?}"
        );
    }
}
