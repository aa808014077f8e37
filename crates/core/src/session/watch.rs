//! Watching someone's screen share: their screen-share track's decoded pictures go to a
//! [`VideoSink`] of the front end's.
//!
//! A receive task (tokio) reads the track's [`ffi::VideoStream`] and passes each picture to the
//! `parley-watch` thread, which calls the sink; between them a small pool of picture buffers
//! circulates (allocated on the first frames, reused after). When the sink is still busy with
//! every buffer, the new picture is dropped and counted: a slow sink (saving PNGs) never holds
//! back the engine's event thread, the receive task, or audio.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::event::{SessionEvent, StampedEvent, emit};

/// Pictures in flight between the receive task and the sink.
const POOL_FRAMES: usize = 3;
/// How often [`SessionEvent::WatchStats`] reports.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Where watched pictures go. Called on the `parley-watch` thread, one picture at a time.
pub trait VideoSink: Send + 'static {
    /// `index` counts the pictures received from `identity` (dropped ones included), from 0.
    fn frame(&mut self, identity: &str, index: u64, frame: &ffi::ReceivedVideoFrame);
}

/// Whose screen share to watch and where its pictures go.
pub struct WatchRequest {
    pub identity: String,
    pub sink: Box<dyn VideoSink>,
    /// Hand the sink every `every`th picture only (at least 1; the others are counted only).
    pub every: u64,
}

/// One picture on its way to the sink.
struct Delivery {
    identity: String,
    index: u64,
    frame: ffi::ReceivedVideoFrame,
}

/// The watch side the follower holds: which identity, and the sink thread's two channels.
/// Clones share the thread, which ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Watcher {
    pub(super) identity: String,
    every: u64,
    to_sink: SyncSender<Delivery>,
    /// Buffers the sink is done with; shared by successive receive tasks (a resubscription).
    free: Arc<Mutex<Receiver<ffi::ReceivedVideoFrame>>>,
    events: mpsc::UnboundedSender<StampedEvent>,
}

impl Watcher {
    /// Starts the `parley-watch` thread for `request`; it ends when the watcher (every clone,
    /// and every receive task) is dropped.
    pub(super) fn start(
        request: WatchRequest,
        events: mpsc::UnboundedSender<StampedEvent>,
    ) -> Result<Watcher, std::io::Error> {
        let (to_sink, deliveries) = sync_channel::<Delivery>(POOL_FRAMES);
        let (to_pool, free) = sync_channel(POOL_FRAMES);
        for _ in 0..POOL_FRAMES {
            // The channel holds exactly POOL_FRAMES: these sends cannot fail.
            to_pool.try_send(ffi::ReceivedVideoFrame::default()).ok();
        }
        let mut sink = request.sink;
        std::thread::Builder::new().name("parley-watch".into()).spawn(move || {
            for delivery in deliveries {
                sink.frame(&delivery.identity, delivery.index, &delivery.frame);
                if to_pool.send(delivery.frame).is_err() {
                    break;
                }
            }
        })?;
        Ok(Watcher {
            identity: request.identity,
            every: request.every.max(1),
            to_sink,
            free: Arc::new(Mutex::new(free)),
            events,
        })
    }

    /// Whether a subscribed video track is the one to watch.
    pub(super) fn wants(&self, identity: &str, track: &ffi::RemoteVideoTrack) -> bool {
        identity == self.identity && matches!(track.source, ffi::TrackSource::ScreenShare | ffi::TrackSource::Unknown)
    }

    /// Starts the receive task for `track`.
    pub(super) fn watch(&self, track: &ffi::RemoteVideoTrack) -> Result<tokio::task::JoinHandle<()>, ffi::Error> {
        let stream = ffi::VideoStream::new(track)?;
        let receive = Receive {
            identity: self.identity.clone(),
            sid: track.sid.clone(),
            every: self.every,
            to_sink: self.to_sink.clone(),
            free: Arc::clone(&self.free),
            events: self.events.clone(),
        };
        Ok(tokio::spawn(receive.run(stream)))
    }
}

struct Receive {
    identity: String,
    sid: String,
    every: u64,
    to_sink: SyncSender<Delivery>,
    free: Arc<Mutex<Receiver<ffi::ReceivedVideoFrame>>>,
    events: mpsc::UnboundedSender<StampedEvent>,
}

impl Receive {
    async fn run(self, mut stream: ffi::VideoStream) {
        let mut scratch = ffi::ReceivedVideoFrame::default();
        let (mut index, mut dropped) = (0u64, 0u64);
        let (mut since, mut frames_since) = (Instant::now(), 0u32);
        while stream.next_frame_into(&mut scratch).await {
            let (width, height) = (scratch.width, scratch.height);
            if index == 0 {
                let (identity, sid) = (self.identity.clone(), self.sid.clone());
                emit(&self.events, SessionEvent::WatchStarted { identity, sid, width, height });
            }
            let wanted = index % self.every == 0;
            let spare = wanted.then(|| self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).try_recv());
            match spare {
                None => {}
                Some(Ok(spare)) => {
                    let frame = std::mem::replace(&mut scratch, spare);
                    let delivery = Delivery { identity: self.identity.clone(), index, frame };
                    match self.to_sink.try_send(delivery) {
                        Ok(()) => {}
                        // Never full: as many slots as buffers. A sink thread gone ends the watch.
                        Err(TrySendError::Full(_)) => dropped += 1,
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
                Some(Err(_)) => dropped += 1,
            }
            index += 1;
            frames_since += 1;
            let elapsed = since.elapsed();
            if elapsed >= STATS_EVERY {
                let fps = f64::from(frames_since) / elapsed.as_secs_f64();
                emit(
                    &self.events,
                    SessionEvent::WatchStats {
                        identity: self.identity.clone(),
                        sid: self.sid.clone(),
                        frames: index,
                        fps: (fps * 10.0).round() / 10.0,
                        width,
                        height,
                        dropped: dropped + stream.dropped_frames(),
                    },
                );
                (since, frames_since) = (Instant::now(), 0);
            }
        }
        emit(&self.events, SessionEvent::WatchEnded { identity: self.identity, sid: self.sid });
    }
}
