//! The playout loop (`parley-playout` thread): one mixed frame of every remote voice whenever
//! the sink is about to run out (a sound card), or every 10 ms (a file). Each frame is also
//! the echo canceller's far-end reference.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use parley_audio::mixer::Mixer;
use parley_audio::stream::FrameSink;
use parley_audio::{FRAME_SAMPLES, SAMPLE_RATE};
use tokio::sync::mpsc;

use super::SessionError;
use super::capture::SharedApm;
use super::event::{SessionEvent, StampedEvent, emit, unix_ns};
use super::pace::Pace;

/// Writes one mixed frame whenever the sink wants one, until `stop` is set, then closes the
/// sink. Runs on its own thread.
///
/// Errors: the sink failed to write or to close (a vanished device is replaced by the sink
/// itself, and reported as `DeviceChanged`).
pub(super) fn run(
    mut sink: Box<dyn FrameSink>,
    mixer: &Mutex<Mixer>,
    apm: Option<&SharedApm>,
    events: &mpsc::UnboundedSender<StampedEvent>,
    stop: &AtomicBool,
) -> Result<(), SessionError> {
    let mut frame = vec![0i16; FRAME_SAMPLES];
    let mut reference = vec![0i16; FRAME_SAMPLES];
    let clocked = sink.clocked();
    let mut pace = Pace::new();
    emit(events, SessionEvent::PlayoutStarted { unix_ns: unix_ns() });
    loop {
        if !pace.wait(clocked, stop, || sink.wants_frame()) {
            break;
        }
        {
            let mut mixer = mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            mixer.note_output_glitches(sink.glitches());
            mixer.mix(&mut frame);
        }
        if let Some(apm) = apm {
            // The reverse stream may be rewritten in place; what we play stays untouched.
            reference.copy_from_slice(&frame);
            let analysed = apm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).process_reverse_stream(
                &mut reference,
                SAMPLE_RATE,
                1,
            );
            if let Err(error) = analysed {
                emit(events, SessionEvent::Warning { message: format!("echo reference failed: {error}") });
            }
        }
        if let Err(error) = sink.write(&frame) {
            emit(events, SessionEvent::Warning { message: error.to_string() });
            return Err(error.into());
        }
        if let Some(message) = sink.take_notice() {
            emit(events, SessionEvent::DeviceChanged { message });
        }
    }
    sink.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use parley_audio::wav::WavError;

    use super::*;

    /// What the sink saw, shared with the test.
    #[derive(Default)]
    struct Seen {
        frames: Vec<Vec<i16>>,
        finished: bool,
    }

    /// A sink that keeps what it is given; optionally refuses the `fail_at`-th frame, and has a
    /// notice to give after the first frame.
    struct Keep {
        seen: Arc<Mutex<Seen>>,
        fail_at: Option<usize>,
        notice: Option<String>,
    }

    impl FrameSink for Keep {
        fn write(&mut self, frame: &[i16]) -> Result<(), WavError> {
            let mut seen = self.seen.lock().expect("no panics while locked");
            if self.fail_at == Some(seen.frames.len()) {
                return Err(WavError::Format { path: "heard.wav".into(), detail: "the disk is full".into() });
            }
            seen.frames.push(frame.to_vec());
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<(), WavError> {
            self.seen.lock().expect("no panics while locked").finished = true;
            Ok(())
        }

        fn take_notice(&mut self) -> Option<String> {
            self.notice.take()
        }

        /// Like a device that has missed one callback per frame written so far.
        fn glitches(&self) -> u64 {
            frames(&self.seen) as u64
        }
    }

    fn frames(seen: &Mutex<Seen>) -> usize {
        seen.lock().expect("no panics while locked").frames.len()
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what} within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn playout_writes_the_mix_at_each_voices_volume_and_closes_the_sink_when_stopped() {
        let mixer = Arc::new(Mutex::new(Mixer::new(40)));
        {
            let mut mixer = mixer.lock().expect("fresh");
            mixer.add_source("TR_a", "alice");
            mixer.set_gain("alice", 0.5);
            mixer.push("TR_a", &vec![8000; FRAME_SAMPLES * 2]);
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = Keep { seen: Arc::clone(&seen), fail_at: None, notice: Some("now on the headset".into()) };
        let (sender, mut events) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mixer, stop) = (Arc::clone(&mixer), Arc::clone(&stop));
            std::thread::spawn(move || run(Box::new(sink), &mixer, None, &sender, &stop))
        };
        wait_until("four frames are played", || frames(&seen) >= 4);
        stop.store(true, Ordering::Relaxed);
        thread.join().expect("no panic").expect("a sink that works ends cleanly");
        let noted = mixer.lock().expect("no panic").output_glitches();
        let seen = seen.lock().expect("no panics while locked");
        // Each mix notes the count before its own frame is written.
        assert_eq!(noted, seen.frames.len() as u64 - 1, "the mixer holds the sink's glitch count as of the last mix");
        assert!(seen.finished, "the sink is closed when playout stops");
        assert!(seen.frames[0].iter().all(|&sample| sample == 4000), "alice at 50 % is half as loud");
        assert!(seen.frames[1].iter().all(|&sample| sample == 4000), "her second frame follows");
        assert!(seen.frames[2].iter().all(|&sample| sample == 0), "then silence, not a repeat");
        let events: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).map(|stamped| stamped.event).collect();
        assert!(matches!(events[0], SessionEvent::PlayoutStarted { .. }), "{events:?}");
        assert!(
            events.contains(&SessionEvent::DeviceChanged { message: "now on the headset".into() }),
            "the sink's notice is told: {events:?}"
        );
    }

    #[test]
    fn a_sink_that_fails_ends_playout_with_the_error_told() {
        let mixer = Mutex::new(Mixer::new(40));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = Keep { seen: Arc::clone(&seen), fail_at: Some(2), notice: None };
        let (sender, mut events) = mpsc::unbounded_channel();
        let stop = AtomicBool::new(false);
        let outcome = run(Box::new(sink), &mixer, None, &sender, &stop);
        let error = outcome.expect_err("a failing sink ends playout");
        assert!(error.to_string().contains("the disk is full"), "the sink's error is kept: {error}");
        assert_eq!(frames(&seen), 2, "two frames were written before the failure");
        let events: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).map(|stamped| stamped.event).collect();
        assert!(
            events.iter().any(
                |event| matches!(event, SessionEvent::Warning { message } if message.contains("the disk is full"))
            ),
            "the failure is told: {events:?}"
        );
    }
}
