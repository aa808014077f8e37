//! The process-wide engine: loads the library, sends requests, routes callbacks.
//!
//! Callbacks arrive on the library's threads; [`native`] copies them into a channel and the
//! `livekit-ffi-events` thread decodes and routes each one:
//! * async completions (`request_async_id` chosen by us) → the waiting request's oneshot;
//! * room events → the owning [`crate::Room`]'s task, by room handle;
//! * audio-stream frames → the owning [`crate::AudioStream`]'s sink, by stream handle, called
//!   right here (a thousand frames a second with 10 speakers: no hop to another thread);
//! * video-stream frames → the owning [`crate::VideoStream`], by stream handle, through a
//!   bounded queue: a frame that finds the queue full is released here and counted, so a slow
//!   viewer never holds this thread (nor the audio behind it) back;
//! * logs → `tracing` (target `livekit`), panics → error log and every waiter fails.
//!
//! Events for a handle nobody has registered yet are held briefly ("orphans") and handed over
//! at registration; events for handles already closed have their owned handles released here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::audio::AudioSink;
use crate::error::{Error, LoadError};
use crate::library::LibrarySearch;
use crate::native::Native;
use crate::proto;
use crate::proto::ffi_event::Message as EventMessage;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;

/// Most events held for one handle before anybody registered it.
const ORPHAN_LIMIT: usize = 256;
/// Most video frames held for one stream before it is registered (each holds a whole picture).
const VIDEO_ORPHAN_LIMIT: usize = 2;

/// The loaded engine. One per process; see [`Engine::start`].
pub struct Engine {
    native: Native,
    router: Arc<Router>,
    next_async_id: AtomicU64,
    handles_released: AtomicU64,
    handles_unknown: AtomicU64,
}

/// Counts of handle releases, to check that every handle is released exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleStats {
    /// Handles the library accepted back.
    pub released: u64,
    /// Releases the library did not recognise: a double release or a stray id (a bug).
    pub unknown: u64,
}

static ENGINE: OnceLock<Engine> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

impl Engine {
    /// Loads and initialises the library, once per process; later calls return the same engine
    /// whatever `search` says. Any thread may call it.
    ///
    /// Errors: [`LoadError`] naming every path tried and why each failed.
    pub fn start(search: &LibrarySearch) -> Result<&'static Engine, LoadError> {
        if let Some(engine) = ENGINE.get() {
            return Ok(engine);
        }
        let _serialised = START.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(engine) = ENGINE.get() {
            return Ok(engine);
        }
        let mut tried = Vec::new();
        let mut loaded = None;
        for candidate in search.candidates() {
            if !candidate.exists() {
                tried.push((candidate, "not found".to_string()));
                continue;
            }
            match Native::load(&candidate) {
                Ok(native) => {
                    loaded = Some(native);
                    break;
                }
                Err(reason) => tried.push((candidate, reason)),
            }
        }
        let native = loaded.ok_or(LoadError { tried })?;
        let (sink, events) = std::sync::mpsc::channel();
        let router = Arc::new(Router::default());
        let dispatcher = Arc::clone(&router);
        std::thread::Builder::new()
            .name("livekit-ffi-events".into())
            .spawn(move || dispatch(events, &dispatcher))
            .map_err(|error| LoadError {
                tried: vec![(native.path().to_path_buf(), format!("cannot start event thread: {error}"))],
            })?;
        native
            .initialize(sink, env!("CARGO_PKG_VERSION"))
            .map_err(|reason| LoadError { tried: vec![(native.path().to_path_buf(), reason)] })?;
        tracing::debug!(path = %native.path().display(), "LiveKit FFI library loaded");
        let engine = Engine {
            native,
            router,
            next_async_id: AtomicU64::new(1),
            handles_released: AtomicU64::new(0),
            handles_unknown: AtomicU64::new(0),
        };
        Ok(ENGINE.get_or_init(|| engine))
    }

    /// The engine if [`Engine::start`] succeeded earlier in this process.
    pub fn get() -> Option<&'static Engine> {
        ENGINE.get()
    }

    /// The library file in use.
    pub fn library_path(&self) -> &Path {
        self.native.path()
    }

    /// Shuts the library's runtime down (disconnecting every room). Call once, at exit; every
    /// later request fails. Any thread.
    pub fn shutdown(&self) {
        self.native.dispose();
        self.router.fail_all();
    }

    /// Sends a synchronous request and returns its response.
    pub(crate) fn request(&self, message: RequestMessage) -> Result<ResponseMessage, Error> {
        if self.router.panicked.load(Ordering::Acquire) {
            return Err(Error::Engine("the LiveKit engine panicked earlier".into()));
        }
        let bytes = proto::FfiRequest { message: Some(message) }.encode_to_vec();
        let response = self.native.request(&bytes).map_err(Error::Engine)?;
        proto::FfiResponse::decode(response.as_slice())
            .map_err(|error| Error::Protocol(format!("undecodable response: {error}")))?
            .message
            .ok_or_else(|| Error::Protocol("empty response".into()))
    }

    /// Sends a request that completes through a callback, and waits for that callback.
    ///
    /// `build` receives the async id to put in `request_async_id`. `keep_alive` is memory the
    /// library reads after the synchronous part returns (a frame being captured); it is held
    /// until the callback arrives even if this future is dropped, and handed back with it.
    pub(crate) async fn request_async(
        &self,
        build: impl FnOnce(u64) -> RequestMessage,
        keep_alive: Option<KeepAlive>,
    ) -> Result<(EventMessage, Option<KeepAlive>), Error> {
        let async_id = self.next_async_id.fetch_add(1, Ordering::Relaxed);
        let (reply, completion) = oneshot::channel();
        self.router.lock().pending.insert(async_id, Pending { reply, keep_alive });
        if let Err(error) = self.request(build(async_id)) {
            self.router.lock().pending.remove(&async_id);
            return Err(error);
        }
        completion.await.map_err(|_| Error::Engine("the LiveKit engine stopped before answering".into()))
    }

    pub(crate) fn drop_handle(&self, id: u64) {
        if self.native.drop_handle(id) {
            self.handles_released.fetch_add(1, Ordering::Relaxed);
        } else {
            self.handles_unknown.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(handle = id, "LiveKit engine did not know a handle we released");
        }
    }

    /// How many handles were released, and how many releases the library did not recognise.
    pub fn handle_stats(&self) -> HandleStats {
        HandleStats {
            released: self.handles_released.load(Ordering::Relaxed),
            unknown: self.handles_unknown.load(Ordering::Relaxed),
        }
    }

    /// Routes room events for `room` to `sender` (including any that arrived already).
    pub(crate) fn register_room(&self, room: u64, sender: mpsc::UnboundedSender<proto::RoomEvent>) {
        let mut routes = self.router.lock();
        for orphan in routes.orphans.remove(&room).unwrap_or_default() {
            if let Orphan::Room(event) = orphan
                && let Err(unsent) = sender.send(*event)
            {
                release_room_event(unsent.0);
            }
        }
        routes.rooms.insert(room, sender);
    }

    /// Hands the audio frames of `stream` to `sink` on the event thread, starting with any that
    /// arrived already.
    pub(crate) fn register_stream(&self, stream: u64, sink: AudioSink) {
        let route = Arc::new(Mutex::new(StreamRoute { sink, scratch: Vec::new(), closed: false }));
        // Held until the early frames are in: a frame the event thread routes meanwhile waits
        // for them, so the sink sees every frame in order.
        let mut early = lock_route(&route);
        let mut routes = self.router.lock();
        let orphans = routes.orphans.remove(&stream).unwrap_or_default();
        routes.streams.insert(stream, Arc::clone(&route));
        drop(routes);
        for orphan in orphans {
            if let Orphan::Stream(event) = orphan
                && early.deliver(self, event)
            {
                self.router.lock().streams.remove(&stream);
            }
        }
    }

    /// Routes the frames of video stream `stream` to `route` (including any that arrived
    /// already). An end of stream already received closes the route at once.
    pub(crate) fn register_video_stream(&self, stream: u64, route: VideoRoute) {
        let mut routes = self.router.lock();
        let mut ended = false;
        let mut unsent = Vec::new();
        for orphan in routes.orphans.remove(&stream).unwrap_or_default() {
            match orphan {
                Orphan::Video(proto::VideoStreamEvent {
                    message: Some(proto::video_stream_event::Message::FrameReceived(frame)),
                    ..
                }) => {
                    if let Some(frame) = route.offer(frame) {
                        unsent.push(frame);
                    }
                }
                Orphan::Video(proto::VideoStreamEvent {
                    message: Some(proto::video_stream_event::Message::Eos(_)),
                    ..
                }) => ended = true,
                _ => {}
            }
        }
        if !ended {
            routes.video_streams.insert(stream, route);
        }
        drop(routes);
        for frame in unsent {
            self.drop_handle(frame.buffer.handle.id);
        }
    }

    /// Stops routing for a room or stream handle; later events for it are discarded.
    ///
    /// An audio stream's sink is not called once this returns (a frame being handed to it is
    /// waited for), so it must not be called from the sink, nor while holding a lock the sink
    /// takes.
    pub(crate) fn close_route(&self, handle: u64) {
        let mut routes = self.router.lock();
        routes.rooms.remove(&handle);
        let stream = routes.streams.remove(&handle);
        routes.video_streams.remove(&handle);
        routes.closed.insert(handle);
        let orphans = routes.orphans.remove(&handle);
        drop(routes);
        if let Some(stream) = stream {
            lock_route(&stream).closed = true;
        }
        for orphan in orphans.into_iter().flatten() {
            release_orphan(orphan);
        }
    }

    /// Wraps a handle id the library gave us so it is released exactly once.
    pub(crate) fn own(&'static self, id: u64) -> OwnedHandle {
        OwnedHandle::new(self, id)
    }
}

/// Memory that must outlive an asynchronous request.
pub(crate) enum KeepAlive {
    Samples(Vec<i16>),
    Bytes(#[allow(dead_code)] Vec<u8>), // reason: only held so the library can read it
}

struct Pending {
    reply: oneshot::Sender<(EventMessage, Option<KeepAlive>)>,
    keep_alive: Option<KeepAlive>,
}

/// Where one video stream's frames go: a bounded queue, and the count of frames that found it
/// full.
pub(crate) struct VideoRoute {
    pub(crate) sender: mpsc::Sender<proto::VideoFrameReceived>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl VideoRoute {
    /// Queues `frame` without waiting. Returns it when it could not be queued (the queue is full,
    /// which is counted, or closed): the caller releases its buffer outside the router's lock.
    fn offer(&self, frame: proto::VideoFrameReceived) -> Option<proto::VideoFrameReceived> {
        match self.sender.try_send(frame) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(frame)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Some(frame)
            }
            Err(mpsc::error::TrySendError::Closed(frame)) => Some(frame),
        }
    }
}

/// An audio stream's sink and the buffer its frames are copied into.
struct StreamRoute {
    sink: AudioSink,
    scratch: Vec<i16>,
    /// Set by [`Engine::close_route`]: a frame routed before then is released, not handed over.
    closed: bool,
}

impl StreamRoute {
    /// Hands `event` to the sink (or releases it if the stream was closed); true at its end.
    fn deliver(&mut self, engine: &Engine, event: proto::AudioStreamEvent) -> bool {
        if self.closed {
            release_stream_event(event);
            return false;
        }
        crate::audio::deliver(engine, event, &mut self.sink, &mut self.scratch)
    }
}

/// Locks a stream's route. A sink that panicked leaves nothing half-done that matters here.
fn lock_route(route: &Mutex<StreamRoute>) -> std::sync::MutexGuard<'_, StreamRoute> {
    route.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Orphan {
    Room(Box<proto::RoomEvent>),
    Stream(proto::AudioStreamEvent),
    Video(proto::VideoStreamEvent),
}

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, Pending>,
    rooms: HashMap<u64, mpsc::UnboundedSender<proto::RoomEvent>>,
    streams: HashMap<u64, Arc<Mutex<StreamRoute>>>,
    video_streams: HashMap<u64, VideoRoute>,
    orphans: HashMap<u64, VecDeque<Orphan>>,
    closed: HashSet<u64>,
}

#[derive(Default)]
struct Router {
    routes: Mutex<Routes>,
    panicked: AtomicBool,
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A panic while holding this lock cannot leave the maps inconsistent (each operation is
        // a single insert/remove), so a poisoned lock is still safe to use.
        self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails every waiter: their oneshots are dropped and they see "engine stopped".
    fn fail_all(&self) {
        let mut routes = self.lock();
        routes.pending.clear();
        routes.rooms.clear();
        routes.streams.clear();
        routes.video_streams.clear();
    }
}

/// The `livekit-ffi-events` thread.
fn dispatch(events: std::sync::mpsc::Receiver<Vec<u8>>, router: &Router) {
    while let Ok(bytes) = events.recv() {
        let event = match proto::FfiEvent::decode(bytes.as_slice()) {
            Ok(proto::FfiEvent { message: Some(message) }) => message,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "undecodable event from the LiveKit engine");
                continue;
            }
        };
        match event {
            EventMessage::Logs(batch) => forward_logs(batch),
            EventMessage::Panic(panic) => {
                tracing::error!(message = %panic.message, "the LiveKit engine panicked");
                router.panicked.store(true, Ordering::Release);
                router.fail_all();
            }
            EventMessage::RoomEvent(event) => {
                let handle = event.room_handle;
                let mut routes = router.lock();
                if let Some(sender) = routes.rooms.get(&handle) {
                    if let Err(unsent) = sender.send(event) {
                        routes.rooms.remove(&handle);
                        drop(routes);
                        release_room_event(unsent.0);
                    }
                } else if routes.closed.contains(&handle) {
                    drop(routes);
                    release_room_event(event);
                } else {
                    hold_orphan(routes, handle, Orphan::Room(Box::new(event)), ORPHAN_LIMIT);
                }
            }
            EventMessage::AudioStreamEvent(event) => route_audio(router, event),
            EventMessage::VideoStreamEvent(event) => route_video(router, event),
            other => match async_id(&other) {
                Some(id) => {
                    let pending = router.lock().pending.remove(&id);
                    match pending {
                        // The waiter may have given up (dropped future); nothing to do then
                        // beyond letting the kept memory go, which dropping does.
                        Some(Pending { reply, keep_alive }) => drop(reply.send((other, keep_alive))),
                        None => tracing::debug!(async_id = id, "completion nobody waits for"),
                    }
                }
                None => tracing::trace!("unhandled LiveKit engine event"),
            },
        }
    }
}

/// Hands an audio-stream event to its stream's sink, here on the event thread.
fn route_audio(router: &Router, event: proto::AudioStreamEvent) {
    let handle = event.stream_handle;
    let routes = router.lock();
    if let Some(route) = routes.streams.get(&handle).map(Arc::clone) {
        drop(routes);
        let Some(engine) = Engine::get() else { return };
        if lock_route(&route).deliver(engine, event) {
            router.lock().streams.remove(&handle);
        }
    } else if routes.closed.contains(&handle) {
        drop(routes);
        release_stream_event(event);
    } else {
        hold_orphan(routes, handle, Orphan::Stream(event), ORPHAN_LIMIT);
    }
}

/// Hands a video-stream event to its stream without ever waiting: a frame the stream's queue
/// cannot take is released (and counted); the end of the stream closes the queue, so the
/// stream sees it after the frames already queued.
fn route_video(router: &Router, event: proto::VideoStreamEvent) {
    let handle = event.stream_handle;
    let mut routes = router.lock();
    if routes.closed.contains(&handle) {
        drop(routes);
        release_video_event(event);
        return;
    }
    let Some(route) = routes.video_streams.get(&handle) else {
        hold_orphan(routes, handle, Orphan::Video(event), VIDEO_ORPHAN_LIMIT);
        return;
    };
    match event.message {
        Some(proto::video_stream_event::Message::FrameReceived(frame)) => {
            let unsent = route.offer(frame);
            if route.sender.is_closed() {
                routes.video_streams.remove(&handle);
            }
            drop(routes);
            if let (Some(frame), Some(engine)) = (unsent, Engine::get()) {
                engine.drop_handle(frame.buffer.handle.id);
            }
        }
        Some(proto::video_stream_event::Message::Eos(_)) => {
            routes.video_streams.remove(&handle);
        }
        None => {}
    }
}

fn hold_orphan(mut routes: std::sync::MutexGuard<'_, Routes>, handle: u64, orphan: Orphan, limit: usize) {
    let queue = routes.orphans.entry(handle).or_default();
    queue.push_back(orphan);
    let overflow = (queue.len() > limit).then(|| queue.pop_front()).flatten();
    drop(routes);
    if let Some(orphan) = overflow {
        release_orphan(orphan);
    }
}

/// Releases the handles a discarded event carries (release_* find the engine themselves).
fn release_orphan(orphan: Orphan) {
    match orphan {
        Orphan::Room(event) => release_room_event(*event),
        Orphan::Stream(event) => release_stream_event(event),
        Orphan::Video(event) => release_video_event(event),
    }
}

/// Releases the handles a discarded room event carries.
fn release_room_event(event: proto::RoomEvent) {
    use proto::room_event::Message as M;
    let Some(engine) = Engine::get() else { return };
    let id = match event.message {
        Some(M::ParticipantConnected(connected)) => connected.info.handle.id,
        Some(M::TrackPublished(published)) => published.publication.handle.id,
        Some(M::TrackSubscribed(subscribed)) => subscribed.track.handle.id,
        Some(M::DataPacketReceived(packet)) => match packet.value {
            Some(proto::data_packet_received::Value::User(user)) => user.data.handle.id,
            _ => 0,
        },
        _ => 0,
    };
    if id != 0 {
        engine.drop_handle(id);
    }
}

fn release_stream_event(event: proto::AudioStreamEvent) {
    if let (Some(proto::audio_stream_event::Message::FrameReceived(frame)), Some(engine)) =
        (event.message, Engine::get())
    {
        engine.drop_handle(frame.frame.handle.id);
    }
}

fn release_video_event(event: proto::VideoStreamEvent) {
    if let (Some(proto::video_stream_event::Message::FrameReceived(frame)), Some(engine)) =
        (event.message, Engine::get())
    {
        engine.drop_handle(frame.buffer.handle.id);
    }
}

/// The async id of a completion callback, for the requests this crate makes.
fn async_id(message: &EventMessage) -> Option<u64> {
    Some(match message {
        EventMessage::Connect(callback) => callback.async_id,
        EventMessage::Disconnect(callback) => callback.async_id,
        EventMessage::Dispose(callback) => callback.async_id,
        EventMessage::PublishTrack(callback) => callback.async_id,
        EventMessage::UnpublishTrack(callback) => callback.async_id,
        EventMessage::PublishData(callback) => callback.async_id,
        EventMessage::CaptureAudioFrame(callback) => callback.async_id,
        EventMessage::SetLocalMetadata(callback) => callback.async_id,
        EventMessage::SetLocalName(callback) => callback.async_id,
        EventMessage::SetLocalAttributes(callback) => callback.async_id,
        EventMessage::GetStats(callback) => callback.async_id,
        EventMessage::GetSessionStats(callback) => callback.async_id,
        _ => return None,
    })
}

/// The engine's own logs, into `tracing` under target `livekit`. Debug and trace records are
/// dropped unless `LIVEKIT_FFI_DEBUG=1`: libwebrtc is very chatty.
fn forward_logs(batch: proto::LogBatch) {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    let verbose = *VERBOSE.get_or_init(|| std::env::var("LIVEKIT_FFI_DEBUG").is_ok_and(|value| value == "1"));
    for record in &batch.records {
        let Some((level, message)) = log_line(record, verbose) else { continue };
        match level {
            tracing::Level::ERROR => tracing::error!(target: "livekit", source = %record.target, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "livekit", source = %record.target, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "livekit", source = %record.target, "{message}"),
            _ => tracing::debug!(target: "livekit", source = %record.target, "{message}"),
        }
    }
}

/// The level and text an engine log record is forwarded with, if at all (debug and trace only
/// when `verbose`). The engine logs URLs with their `access_token=` query and echoes server
/// answers: the text is redacted like every other line we print.
fn log_line(record: &proto::LogRecord, verbose: bool) -> Option<(tracing::Level, String)> {
    let level = match proto::LogLevel::try_from(record.level).unwrap_or(proto::LogLevel::LogInfo) {
        proto::LogLevel::LogError => tracing::Level::ERROR,
        proto::LogLevel::LogWarn => tracing::Level::WARN,
        proto::LogLevel::LogInfo => tracing::Level::INFO,
        proto::LogLevel::LogDebug | proto::LogLevel::LogTrace if verbose => tracing::Level::DEBUG,
        proto::LogLevel::LogDebug | proto::LogLevel::LogTrace => return None,
    };
    Some((level, crate::redact::redact(&record.message).into_owned()))
}

/// A handle the library gave us; released with `livekit_ffi_drop_handle` exactly once, on drop.
pub(crate) struct OwnedHandle {
    engine: &'static Engine,
    id: u64,
}

impl OwnedHandle {
    pub(crate) fn new(engine: &'static Engine, id: u64) -> OwnedHandle {
        OwnedHandle { engine, id }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn engine(&self) -> &'static Engine {
        self.engine
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        tracing::trace!(handle = self.id, "releasing handle");
        self.engine.drop_handle(self.id);
    }
}

impl std::fmt::Debug for OwnedHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "OwnedHandle({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: proto::LogLevel, message: &str) -> proto::LogRecord {
        proto::LogRecord { level: level as i32, message: message.into(), ..Default::default() }
    }

    #[test]
    fn engine_log_lines_are_redacted_and_debug_is_forwarded_only_when_verbose() {
        let leaky = "connecting to ws://127.0.0.1:7880/rtc?access_token=eyJhbGciOi.eyJzdWIi.c2ln&auto_subscribe=1";
        let (level, line) = log_line(&record(proto::LogLevel::LogInfo, leaky), false).expect("info is forwarded");
        assert_eq!(level, tracing::Level::INFO);
        assert!(!line.contains("eyJ"), "no token in a forwarded line: {line}");
        assert!(line.contains("[redacted]") && line.contains("auto_subscribe=1"), "{line}");
        assert!(log_line(&record(proto::LogLevel::LogDebug, "detail"), false).is_none(), "debug is quiet by default");
        let verbose = log_line(&record(proto::LogLevel::LogTrace, "detail"), true);
        assert_eq!(verbose, Some((tracing::Level::DEBUG, "detail".to_string())));
    }
}
