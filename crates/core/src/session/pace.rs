//! The pace of one audio worker thread: a sound card's clock, or a 10 ms clock of our own for
//! files and tones. Driving each end from the device's clock rather than a timer of ours is
//! what keeps the queues between two clocks — and so mouth-to-ear latency — short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a worker thread waits for its device before it looks anyway. The device's
/// callbacks wake it (each one: a capture fragment arrived, a playback request was served), so
/// this only bounds the wait should a wake-up go astray. It used to look every millisecond:
/// 1 000 wake-ups a second per thread, a few percent of a core in `perf` for nothing.
const DEVICE_WAIT: Duration = Duration::from_millis(20);

/// One frame of our own clock.
const FRAME: Duration = Duration::from_millis(10);

pub(super) struct Pace {
    start: Instant,
    frames: u32,
}

impl Pace {
    pub(super) fn new() -> Pace {
        Pace { start: Instant::now(), frames: 0 }
    }

    /// Waits until `ready` says the device is ready (clocked ends) or until the next 10 ms
    /// boundary of our own clock (other ends; late frames are caught up, so frame `n` always
    /// belongs to `start + n × 10 ms`). Returns false when `stop` was set meanwhile.
    pub(super) fn wait(&mut self, clocked: bool, stop: &AtomicBool, mut ready: impl FnMut() -> bool) -> bool {
        if clocked {
            while !ready() {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                // An unpark that came before this park is not lost: it returns at once.
                std::thread::park_timeout(DEVICE_WAIT);
            }
        } else {
            let due = self.start + FRAME * self.frames;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.frames = self.frames.wrapping_add(1);
        !stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_clock_catches_up_late_frames_instead_of_drifting() {
        let stop = AtomicBool::new(false);
        let mut pace = Pace::new();
        let started = Instant::now();
        // A worker that falls 50 ms behind (a slow frame) gets the next frames at once until it
        // is back on the clock, so 20 frames still take about 200 ms, not 250.
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..20 {
            assert!(pace.wait(false, &stop, || unreachable!("an unclocked end is not asked")));
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(190), "frame 19 belongs to 190 ms; took {elapsed:?}");
        assert!(elapsed < Duration::from_millis(1_000), "late frames are caught up, not added; took {elapsed:?}");
    }

    #[test]
    fn a_clocked_end_waits_for_its_device_and_stops_when_told() {
        let stop = AtomicBool::new(false);
        let mut pace = Pace::new();
        let mut asked = 0;
        assert!(pace.wait(true, &stop, || {
            asked += 1;
            asked == 3
        }));
        assert_eq!(asked, 3, "the device is asked until it is ready");
        stop.store(true, Ordering::Relaxed);
        assert!(!pace.wait(true, &stop, || false), "a device that never gets ready does not hold up stopping");
        assert!(!pace.wait(true, &stop, || true), "a ready device after stop still reports stop");
    }
}
