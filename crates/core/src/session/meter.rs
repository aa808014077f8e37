//! The level meter (a tokio task): every 100 ms, our microphone's level and each remote
//! participant's playback peak, for meters and speaking rings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_audio::mixer::Mixer;
use tokio::sync::mpsc;

use super::event::{SessionEvent, StampedEvent, emit};

/// The level meters show for silence, in dBFS.
pub const SILENCE_DBFS: f32 = -100.0;

/// How often levels are reported.
const INTERVAL: Duration = Duration::from_millis(100);

/// Reports [`SessionEvent::Levels`] every 100 ms until aborted: `input_level` (f32 bits, kept by
/// the capture loop) and, per participant, the loudest of their sources in the mixer.
pub(super) async fn run(
    mixer: Arc<Mutex<Mixer>>,
    input_level: Arc<AtomicU32>,
    events: mpsc::UnboundedSender<StampedEvent>,
) {
    let mut ticker = tokio::time::interval(INTERVAL);
    loop {
        ticker.tick().await;
        let participants = participant_levels(&mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let input_dbfs = f32::from_bits(input_level.load(Ordering::Relaxed));
        emit(&events, SessionEvent::Levels { input_dbfs, participants });
    }
}

/// Each participant's loudest source at the last mix, in dBFS, never below [`SILENCE_DBFS`].
fn participant_levels(mixer: &Mixer) -> BTreeMap<String, f32> {
    let mut participants = BTreeMap::new();
    for (_, identity, stats) in mixer.stats() {
        let level =
            if stats.level > 0.0 { parley_audio::linear_to_db(stats.level).max(SILENCE_DBFS) } else { SILENCE_DBFS };
        let entry = participants.entry(identity.to_string()).or_insert(SILENCE_DBFS);
        *entry = f32::max(*entry, level);
    }
    participants
}

#[cfg(test)]
mod tests {
    use parley_audio::FRAME_SAMPLES;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_meter_reports_the_microphone_and_each_participants_loudest_source() {
        let mixer = Arc::new(Mutex::new(Mixer::new(40)));
        {
            let mut mixer = mixer.lock().expect("fresh");
            mixer.add_source("TR_mic", "alice");
            mixer.add_source("TR_screen_audio", "alice");
            mixer.add_source("TR_bob", "bob");
            mixer.add_source("TR_carol", "carol");
            // Half scale is −6 dBFS; a tenth is −20.
            mixer.push("TR_mic", &vec![i16::MAX / 10; FRAME_SAMPLES]);
            mixer.push("TR_screen_audio", &vec![i16::MAX / 2; FRAME_SAMPLES]);
            mixer.push("TR_bob", &vec![i16::MAX / 10; FRAME_SAMPLES]);
            mixer.mix(&mut [0i16; FRAME_SAMPLES]);
        }
        let input = Arc::new(AtomicU32::new((-23.5f32).to_bits()));
        let (sender, mut events) = mpsc::unbounded_channel();
        let meter = tokio::spawn(run(Arc::clone(&mixer), input, sender));
        let first = events.recv().await.expect("the meter reports at once");
        tokio::time::advance(INTERVAL).await;
        let second = events.recv().await.expect("and again 100 ms later");
        meter.abort();
        assert!(second.at >= first.at, "reports come in order");
        let SessionEvent::Levels { input_dbfs, participants } = first.event else {
            panic!("the meter reports levels, got {:?}", first.event)
        };
        assert_eq!(input_dbfs, -23.5, "the microphone's level is passed on as the capture loop left it");
        let near = |level: f32, expected: f32| (level - expected).abs() < 0.1;
        assert!(near(participants["alice"], -6.0), "alice's loudest source counts: {participants:?}");
        assert!(near(participants["bob"], -20.0), "bob at a tenth of full scale: {participants:?}");
        assert_eq!(participants["carol"], SILENCE_DBFS, "carol, silent, reads silence: {participants:?}");
    }
}
