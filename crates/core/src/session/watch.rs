//! Watching someone's screen share: their screen-share track's decoded pictures go to a
//! [`VideoSink`] of the front end's.
//!
//! A receive task (tokio) reads the track's [`ffi::VideoStream`] and passes each picture to the
//! `parley-watch` thread, which calls the sink; between them a small pool of picture buffers
//! circulates (allocated on the first frames, reused after). When the sink is still busy with
//! every buffer, the new picture is dropped and counted: a slow sink (saving PNGs) never holds
//! back the engine's event thread, the receive task, or audio.
//!
//! [`Viewing`] is the room follower's side of it: everyone's shares, which of them are watched
//! (several at once, started and stopped while in the call), and their receive tasks. A share
//! nobody watches is declined (unsubscribed), so it costs neither bandwidth nor decoding.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::event::{MediaKind, SessionEvent, StampedEvent, emit};

/// Pictures in flight between the receive task and the sink.
const POOL_FRAMES: usize = 3;
/// How often [`SessionEvent::WatchStats`] reports.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// The widest (and tallest) viewer that may take a share's smaller layer, in pixels. LiveKit's
/// SDKs (ours, the browser's, Python's) publish a screen share's second layer at half its size
/// and 3 frames a second — a preview's rate. Fitting any viewer smaller than the share to that
/// layer gave the room view's viewer of a 1080p share 3 fps (`cargo xtask bench app`), so a
/// viewer larger than this is for watching and asks for the full layer; a thumbnail-sized one
/// takes the layer that fits it.
const PREVIEW_MAX: (u32, u32) = (480, 270);

/// Pictures smaller than this on both sides are the engine's end-of-track placeholder (an 8×8
/// black picture it hands over as a track ends), not the share: no sink gets them, and the
/// statistics do not count them.
const PLACEHOLDER_SIDE: u32 = 16;

/// How long after we publish a track the watched shares are checked for a freeze (see
/// [`Viewing::published_locally`]), and how long without a picture counts as frozen then.
const FREEZE_CHECK_AFTER: Duration = Duration::from_secs(2);
const FROZEN_AFTER: Duration = Duration::from_millis(1500);

/// Whether a received `width` × `height` picture is the engine's end-of-track placeholder.
fn is_placeholder(width: u32, height: u32) -> bool {
    width < PLACEHOLDER_SIDE && height < PLACEHOLDER_SIDE
}

/// Whether a viewer of `width` × `height` pixels is a preview (see [`PREVIEW_MAX`]).
fn is_preview(width: u32, height: u32) -> bool {
    width <= PREVIEW_MAX.0 && height <= PREVIEW_MAX.1
}

/// Where watched pictures go. Called on the `parley-watch` thread, one picture at a time.
pub trait VideoSink: Send + 'static {
    /// The format the sink takes its pictures in: RGBA, or I420 straight from the decoder.
    fn format(&self) -> ffi::PixelFormat {
        ffi::PixelFormat::Rgba
    }

    /// `index` counts the pictures received from `identity` (dropped ones included), from 0.
    fn frame(&mut self, identity: &str, index: u64, frame: &ffi::ReceivedVideoFrame);
}

/// Makes the sink for a share watched while in the call, given whose share it is.
pub type ViewerFactory = Arc<dyn Fn(&str) -> Box<dyn VideoSink> + Send + Sync>;

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
    format: ffi::PixelFormat,
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
        let format = sink.format();
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
            format,
            to_sink,
            free: Arc::new(Mutex::new(free)),
            events,
        })
    }

    /// Starts the receive task for `track`; it stamps each picture into `seen`.
    fn watch(&self, track: &ffi::RemoteVideoTrack, seen: Seen) -> Result<JoinHandle<()>, ffi::Error> {
        let stream = ffi::VideoStream::with_format(track, ffi::VideoStream::DEFAULT_QUEUE_FRAMES, self.format)?;
        let receive = Receive {
            identity: self.identity.clone(),
            sid: track.sid.clone(),
            every: self.every,
            to_sink: self.to_sink.clone(),
            free: Arc::clone(&self.free),
            events: self.events.clone(),
            seen,
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
    /// When the last picture came, read by [`Viewing`] to tell a frozen share.
    seen: Seen,
}

/// When a watch's last picture arrived, shared by its receive task and [`Viewing`]: milliseconds
/// from the watch's start (the start itself before the first picture).
#[derive(Clone)]
struct Seen {
    since: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Seen {
    fn new() -> Seen {
        Seen { since: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }

    fn picture(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last picture (or the watch's start, before the first one).
    fn silent_for(&self) -> Duration {
        self.since.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Receive {
    async fn run(self, mut stream: ffi::VideoStream) {
        let mut scratch = ffi::ReceivedVideoFrame::default();
        let (mut index, mut dropped) = (0u64, 0u64);
        let (mut since, mut frames_since) = (Instant::now(), 0u32);
        while stream.next_frame_into(&mut scratch).await {
            let (width, height) = (scratch.width, scratch.height);
            if is_placeholder(width, height) {
                continue;
            }
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
            self.seen.picture();
            frames_since += 1;
            let elapsed = since.elapsed();
            // The decoder's threads start with the first pictures: catch them during the first
            // thirty, then once a second, and keep them below the voice path.
            if index <= 30 || elapsed >= STATS_EVERY {
                ffi::calm_video_threads();
            }
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
        // The stream ended by itself (the track ended before the follower heard of it); a task
        // the follower stops is reported by the follower.
        emit(&self.events, SessionEvent::WatchEnded { identity: self.identity, sid: self.sid });
    }
}

/// What the session asks of the room follower about watching.
pub(super) enum ViewCommand {
    /// Watch this participant's share (now, or when they share).
    Watch(Watcher),
    /// Stop watching this participant's share: its video is declined again.
    Unwatch(String),
    /// The viewer shows this participant's share at about this size: receive the layer that
    /// fits (adaptive stream).
    Fit { identity: String, width: u32, height: u32 },
}

/// A watched share's receive task.
struct Stream {
    identity: String,
    task: JoinHandle<()>,
    seen: Seen,
}

/// The follower's side of screen shares.
pub(super) struct Viewing {
    /// Whose shares are watched (by identity), and where their pictures go.
    watchers: HashMap<String, Watcher>,
    /// Everyone's screen shares (track sid → identity), watched or not, to tell when one ends.
    shares: HashMap<String, String>,
    /// Shares we unsubscribed from because nobody watches them (their unsubscription is not
    /// news), until they are watched.
    declined: HashSet<String>,
    /// The receive tasks of watched shares, by track sid.
    streams: HashMap<String, Stream>,
    /// When to check the watched shares for a freeze caused by our own publication.
    freeze_check: Option<Instant>,
    /// Frozen shares we unsubscribed from, to subscribe to them again once that is done.
    reviving: HashSet<String>,
    /// Everyone's screen-share sounds (track sid → identity): heard only while their share is
    /// watched, like the picture.
    sounds: HashMap<String, String>,
    /// Sounds we unsubscribed from (or never played) because nobody watches their share.
    sounds_declined: HashSet<String>,
    subscriptions: ffi::Subscriptions,
    events: mpsc::UnboundedSender<StampedEvent>,
}

impl Viewing {
    pub(super) fn new(
        watchers: HashMap<String, Watcher>,
        subscriptions: ffi::Subscriptions,
        events: mpsc::UnboundedSender<StampedEvent>,
    ) -> Viewing {
        Viewing {
            watchers,
            shares: HashMap::new(),
            declined: HashSet::new(),
            streams: HashMap::new(),
            freeze_check: None,
            reviving: HashSet::new(),
            sounds: HashMap::new(),
            sounds_declined: HashSet::new(),
            subscriptions,
            events,
        }
    }

    /// A remote video track was subscribed: watched, or declined and reported as available.
    pub(super) fn subscribed(&mut self, identity: String, track: ffi::RemoteVideoTrack) -> SessionEvent {
        self.shares.insert(track.sid.clone(), identity.clone());
        let is_share = matches!(track.source, ffi::TrackSource::ScreenShare | ffi::TrackSource::Unknown);
        let Some(watcher) = self.watchers.get(&identity).filter(|_| is_share) else {
            // Video costs bandwidth and decoding: receive it only while watched.
            self.decline(&identity, &track.sid);
            return SessionEvent::ShareAvailable { identity, sid: track.sid };
        };
        // A simulcast receiver starts on whichever layer the server picks (often the smallest);
        // a watched share is shown full size until the viewer says how large it is.
        if let Err(error) = self.subscriptions.set_video_quality(&identity, &track.sid, ffi::VideoQuality::High) {
            tracing::warn!(%error, %identity, "could not ask for the full-size layer");
        }
        self.reviving.remove(&track.sid);
        let seen = Seen::new();
        match watcher.watch(&track, seen.clone()) {
            Ok(task) => {
                let stream = Stream { identity: identity.clone(), task, seen };
                if let Some(previous) = self.streams.insert(track.sid.clone(), stream) {
                    previous.task.abort();
                }
            }
            Err(error) => emit(
                &self.events,
                SessionEvent::Warning { message: format!("cannot watch {identity}'s screen: {error}") },
            ),
        }
        SessionEvent::TrackSubscribed { identity, sid: track.sid, kind: MediaKind::Video }
    }

    /// A screen share's sound was subscribed: whether to play it (its share is watched). One
    /// nobody watches is declined, quietly, until its share is watched.
    pub(super) fn sound_subscribed(&mut self, identity: &str, sid: &str) -> bool {
        self.sounds.insert(sid.to_string(), identity.to_string());
        if self.watchers.contains_key(identity) {
            self.sounds_declined.remove(sid);
            return true;
        }
        match self.subscriptions.set_subscribed(identity, sid, false) {
            Ok(()) => {
                self.declined.insert(sid.to_string());
                self.sounds_declined.insert(sid.to_string());
            }
            Err(error) => tracing::warn!(%error, %identity, "could not decline an unwatched share's sound"),
        }
        false
    }

    fn sounds_of<'a>(&'a self, identity: &'a str) -> impl Iterator<Item = String> + 'a {
        self.sounds.iter().filter(move |(_, owner)| owner.as_str() == identity).map(|(sid, _)| sid.clone())
    }

    fn decline(&mut self, identity: &str, sid: &str) {
        match self.subscriptions.set_subscribed(identity, sid, false) {
            Ok(()) => {
                self.declined.insert(sid.to_string());
            }
            Err(error) => tracing::warn!(%error, %identity, "could not decline an unwatched video"),
        }
    }

    /// Whether the unsubscription of `sid` is one we asked for (not news). Ends its watch.
    /// A declined share stays declined until it is watched (or ends); a frozen one we
    /// unsubscribed from is subscribed to again, its watch going on as the new track arrives.
    pub(super) fn unsubscribed(&mut self, sid: &str) -> bool {
        if self.reviving.contains(sid)
            && let Some(identity) = self.shares.get(sid).cloned()
        {
            if let Some(stream) = self.streams.remove(sid) {
                stream.task.abort();
            }
            if let Err(error) = self.subscriptions.set_subscribed(&identity, sid, true) {
                self.reviving.remove(sid);
                emit(
                    &self.events,
                    SessionEvent::Warning { message: format!("cannot watch {identity}'s screen: {error}") },
                );
                emit(&self.events, SessionEvent::WatchEnded { identity, sid: sid.to_string() });
            }
            return true;
        }
        self.stop_stream(sid);
        self.declined.contains(sid)
    }

    /// We published a track. The engine joins with one peer connection for both directions,
    /// and publishing video renegotiates it: the engine rewrites the encoder's start bitrate
    /// into every VP8 line of its offer, the receiving ones too, so libwebrtc rebuilds the
    /// receive stream of each share we watch, and a packet arriving in that gap leaves the
    /// rebuilt stream with no sink (its log: "VideoReceiveStreamInterface not connected to a
    /// VideoSink"). The share then froze for good, in about one share start in four while
    /// watching (the Python interop test: 2 of 8 runs). Two peer connections avoid the
    /// rebuild, but with them the engine never hands over a share subscribed to again after
    /// being declined, which is how every viewer starts. So a watched share that receives no
    /// picture for [`FROZEN_AFTER`] when checked [`FREEZE_CHECK_AFTER`] after our publication (its
    /// stream may be rebuilt before or after the engine reports the publication) is subscribed
    /// to again.
    pub(super) fn published_locally(&mut self) {
        tracing::debug!(watched = self.streams.len(), "we published a track: watched shares are checked for a freeze");
        self.freeze_check = Some(Instant::now() + FREEZE_CHECK_AFTER);
    }

    /// When the pending check for frozen shares is due.
    pub(super) fn freeze_check_due(&self) -> Option<Instant> {
        self.freeze_check
    }

    /// Subscribes again to each watched share that has received nothing for [`FROZEN_AFTER`].
    pub(super) fn revive_frozen(&mut self) {
        self.freeze_check = None;
        let frozen: Vec<(String, String)> = self
            .streams
            .iter()
            .filter(|(sid, stream)| stream.seen.silent_for() >= FROZEN_AFTER && !self.reviving.contains(*sid))
            .map(|(sid, stream)| (sid.clone(), stream.identity.clone()))
            .collect();
        for (sid, identity) in frozen {
            tracing::warn!(%identity, %sid, "a watched share froze when we published; subscribing to it again");
            match self.subscriptions.set_subscribed(&identity, &sid, false) {
                Ok(()) => {
                    self.reviving.insert(sid);
                }
                Err(error) => tracing::warn!(%error, %identity, "could not subscribe to a frozen share again"),
            }
        }
    }

    /// A track was unpublished: a share that ended is news.
    pub(super) fn unpublished(&mut self, sid: &str) -> Option<SessionEvent> {
        self.declined.remove(sid);
        self.reviving.remove(sid);
        self.sounds.remove(sid);
        self.sounds_declined.remove(sid);
        self.stop_stream(sid);
        let identity = self.shares.remove(sid)?;
        Some(SessionEvent::ShareEnded { identity, sid: sid.to_string() })
    }

    /// The room is gone, and with it every stream (a reconnection subscribes anew).
    pub(super) fn disconnected(&mut self) {
        let sids: Vec<String> = self.streams.keys().cloned().collect();
        for sid in sids {
            self.stop_stream(&sid);
        }
        self.shares.clear();
        self.declined.clear();
        self.reviving.clear();
        self.freeze_check = None;
        self.sounds.clear();
        self.sounds_declined.clear();
    }

    /// Ends the receive task of `sid`, if any, with [`SessionEvent::WatchEnded`].
    fn stop_stream(&mut self, sid: &str) {
        if let Some(Stream { identity, task, .. }) = self.streams.remove(sid)
            && !task.is_finished()
        {
            task.abort();
            emit(&self.events, SessionEvent::WatchEnded { identity, sid: sid.to_string() });
        }
    }

    fn shares_of<'a>(&'a self, identity: &'a str) -> impl Iterator<Item = String> + 'a {
        self.shares.iter().filter(move |(_, owner)| owner.as_str() == identity).map(|(sid, _)| sid.clone())
    }

    pub(super) fn apply(&mut self, command: ViewCommand) {
        match command {
            ViewCommand::Watch(watcher) => {
                let identity = watcher.identity.clone();
                self.watchers.insert(identity.clone(), watcher);
                let declined: Vec<String> = self
                    .shares_of(&identity)
                    .filter(|sid| self.declined.contains(sid))
                    .chain(self.sounds_of(&identity).filter(|sid| self.sounds_declined.contains(sid)))
                    .collect();
                for sid in declined {
                    // The subscription arrives as VideoTrackSubscribed, which starts the watch.
                    match self.subscriptions.set_subscribed(&identity, &sid, true) {
                        Ok(()) => {
                            self.declined.remove(&sid);
                            self.sounds_declined.remove(&sid);
                        }
                        Err(error) => emit(
                            &self.events,
                            SessionEvent::Warning { message: format!("cannot watch {identity}'s screen: {error}") },
                        ),
                    }
                }
            }
            ViewCommand::Unwatch(identity) => {
                if self.watchers.remove(&identity).is_none() {
                    return;
                }
                // Its sound stops too: the unsubscription ends its playback like any track's.
                let sounds: Vec<String> =
                    self.sounds_of(&identity).filter(|sid| !self.sounds_declined.contains(sid)).collect();
                for sid in sounds {
                    match self.subscriptions.set_subscribed(&identity, &sid, false) {
                        Ok(()) => {
                            self.sounds_declined.insert(sid);
                        }
                        Err(error) => tracing::warn!(%error, %identity, "could not stop an unwatched share's sound"),
                    }
                }
                let sids: Vec<String> = self.shares_of(&identity).collect();
                for sid in sids {
                    self.reviving.remove(&sid);
                    let watched = self.streams.contains_key(&sid);
                    self.stop_stream(&sid);
                    if watched || !self.declined.contains(&sid) {
                        self.decline(&identity, &sid);
                        // On offer again, as when it started.
                        emit(&self.events, SessionEvent::ShareAvailable { identity: identity.clone(), sid });
                    }
                }
            }
            ViewCommand::Fit { identity, width, height } => {
                let sids: Vec<String> =
                    self.shares_of(&identity).filter(|sid| self.streams.contains_key(sid)).collect();
                let preview = is_preview(width, height);
                tracing::debug!(%identity, width, height, preview, "fitting a watched share to its viewer");
                for sid in sids {
                    let asked = if preview {
                        self.subscriptions.set_video_dimensions(&identity, &sid, width, height)
                    } else {
                        self.subscriptions.set_video_quality(&identity, &sid, ffi::VideoQuality::High)
                    };
                    if let Err(error) = asked {
                        tracing::debug!(%error, %identity, "could not ask for a layer to fit the viewer");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Seen, is_placeholder, is_preview};

    #[test]
    fn a_watch_is_silent_from_its_start_until_a_picture_arrives() {
        let seen = Seen::new();
        std::thread::sleep(Duration::from_millis(200));
        assert!(seen.silent_for() >= Duration::from_millis(200));
        seen.picture();
        assert!(seen.silent_for() < Duration::from_millis(150), "{:?}", seen.silent_for());
    }

    #[test]
    fn only_the_engines_tiny_end_of_track_picture_is_a_placeholder() {
        assert!(is_placeholder(8, 8));
        assert!(!is_placeholder(16, 8), "a thin picture is still a picture");
        assert!(!is_placeholder(320, 180));
    }

    #[test]
    fn only_a_thumbnail_sized_viewer_takes_a_shares_preview_layer() {
        assert!(is_preview(320, 180));
        assert!(is_preview(480, 270));
        // The room view's viewer and anything larger watch the full layer.
        assert!(!is_preview(481, 270));
        assert!(!is_preview(480, 271));
        assert!(!is_preview(960, 540));
    }
}
