//! Sound devices: listing and choosing them through cpal, and opening capture and playback
//! streams — through `libpulse` on a PulseAudio (or PipeWire-Pulse) server ([`pulse`]: cpal's
//! own PulseAudio client costs far more CPU at small periods), through cpal elsewhere.
//!
//! Streams ask for an explicit small buffer ([`REQUESTED_BUFFER_FRAMES`], 5 ms at 48 kHz;
//! backends default to far more) and report what the device granted. The cpal callbacks only
//! move samples between the device and a lock-free SPSC ring ([`rtrb`]): no allocation, no
//! lock, no logging, no FFI there. Overruns and underruns are counted in atomics and read by
//! the worker thread that owns the other end of the ring.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use crate::resample::{MonoConverter, StreamResampler};

#[cfg(target_os = "linux")]
mod pulse;

/// The buffer size streams ask for, in frames: 5 ms at 48 kHz. Measured with `cargo xtask bench
/// audio` (PulseAudio): 10 ms periods gave 105.6 ms mouth-to-ear (our device ends 27.5 ms of it),
/// 5 ms gave 92.5 ms (19.4 ms); 2.5 ms shortened the device ends to 10.7 ms but the whole path
/// not at all (93.8 ms), at a third more CPU, so 5 ms it is. (PulseAudio double-buffers
/// playback: a 5 ms period is a 10 ms target.) Frames stay 10 ms everywhere else.
pub const REQUESTED_BUFFER_FRAMES: u32 = 240;
/// How much audio a ring holds between a callback and its worker.
const RING_SECONDS: f32 = 0.5;

/// Capture or playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Input,
    Output,
}

/// A device as the user picks it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// Stable identifier (host + backend id); survives restarts, unlike list positions.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    pub direction: Direction,
    /// Whether this is the system default for its direction now.
    pub is_default: bool,
    pub default_sample_rate: u32,
    pub default_channels: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("no {direction} device {wanted:?}; available: {}", available.join(", "))]
    NotFound { direction: &'static str, wanted: String, available: Vec<String> },
    #[error("there is no {0} device on this system")]
    NoDefault(&'static str),
    #[error("the {direction} device {device:?} cannot be opened: {reason}")]
    Open { direction: &'static str, device: String, reason: String },
    #[error("the sound system cannot list devices: {0}")]
    Backend(String),
}

fn direction_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Input => "input",
        Direction::Output => "output",
    }
}

/// The process's connection for listing devices and checking them. Each `cpal::default_host()`
/// opens a new one (a PulseAudio client that outlives the `Host`): asking once a second for the
/// devices on a fresh one exhausted the server's 64 client slots within a minute. Streams still
/// open their own (rarely: at start and when a device changes).
fn host() -> &'static cpal::Host {
    static HOST: std::sync::OnceLock<cpal::Host> = std::sync::OnceLock::new();
    HOST.get_or_init(cpal::default_host)
}

/// Every input and output device, defaults marked. Any thread (not a real-time callback).
pub fn list_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    let host = host();
    let mut devices = Vec::new();
    for direction in [Direction::Input, Direction::Output] {
        let default_id = default_device(host, direction).and_then(|device| device.id().ok());
        let listed = match direction {
            Direction::Input => host.input_devices().map(|found| found.collect::<Vec<_>>()),
            Direction::Output => host.output_devices().map(|found| found.collect::<Vec<_>>()),
        }
        .map_err(|error| DeviceError::Backend(error.to_string()))?;
        for device in listed {
            if let Some(info) = describe(&device, direction, default_id.as_ref()) {
                devices.push(info);
            }
        }
    }
    Ok(devices)
}

fn default_device(host: &cpal::Host, direction: Direction) -> Option<cpal::Device> {
    match direction {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    }
}

fn describe(device: &cpal::Device, direction: Direction, default_id: Option<&cpal::DeviceId>) -> Option<DeviceInfo> {
    let id = device.id().ok()?;
    let name =
        device.description().map(|description| description.name().to_string()).unwrap_or_else(|_| id.to_string());
    let config = match direction {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    }
    .ok();
    Some(DeviceInfo {
        is_default: default_id == Some(&id),
        id: id.to_string(),
        name,
        direction,
        default_sample_rate: config.as_ref().map_or(0, |config| config.sample_rate()),
        default_channels: config.as_ref().map_or(0, |config| config.channels()),
    })
}

/// Finds a device by id (with or without the host prefix) or by name; `None` picks the system
/// default.
fn find_device(direction: Direction, wanted: Option<&str>) -> Result<cpal::Device, DeviceError> {
    find_device_on(host(), direction, wanted)
}

fn find_device_on(host: &cpal::Host, direction: Direction, wanted: Option<&str>) -> Result<cpal::Device, DeviceError> {
    let word = direction_word(direction);
    let Some(wanted) = wanted else {
        return default_device(host, direction).ok_or(DeviceError::NoDefault(word));
    };
    let listed = match direction {
        Direction::Input => host.input_devices().map(|found| found.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|found| found.collect::<Vec<_>>()),
    }
    .map_err(|error| DeviceError::Backend(error.to_string()))?;
    let mut available = Vec::new();
    for device in listed {
        let Some(info) = describe(&device, direction, None) else { continue };
        // The id with or without its host prefix (`pulseaudio:mic.monitor` or `mic.monitor`), or the name.
        let short_id = info.id.split_once(':').map(|(_, short)| short);
        if info.id == wanted || short_id == Some(wanted) || info.name == wanted {
            return Ok(device);
        }
        available.push(info.name);
    }
    Err(DeviceError::NotFound { direction: word, wanted: wanted.to_string(), available })
}

/// The output device `wanted` names (id or name), or the system default, on its own connection
/// to the sound system: cues play as a second stream beside the voice, and the PulseAudio client
/// fails to open two playback streams on one connection.
pub fn find_output_separately(wanted: Option<&str>) -> Result<(cpal::Host, cpal::Device), DeviceError> {
    let host = cpal::default_host();
    let device = find_device_on(&host, Direction::Output, wanted)?;
    Ok((host, device))
}

/// A device's human-readable name.
pub fn device_name(device: &cpal::Device) -> String {
    device.description().map(|description| description.name().to_string()).unwrap_or_else(|_| "?".to_string())
}

/// What a device granted for an open stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    pub device: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// The buffer the device granted, in frames (`None` if the backend does not say).
    pub buffer_frames: Option<u32>,
}

/// Counters the callbacks update and the worker reads.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Samples the ring had no room for (capture) or did not have (playback).
    pub dropped_samples: AtomicU64,
    /// Callbacks that hit a full (capture) or empty (playback) ring.
    pub glitches: AtomicU64,
    /// Stream errors reported by the backend (e.g. the device vanished).
    pub errors: AtomicU64,
    /// The worker thread that moves this stream's frames, woken by each callback: it waits
    /// parked rather than looking every millisecond.
    worker: std::sync::OnceLock<std::thread::Thread>,
}

/// An open input stream; samples (interleaved f32) arrive in [`CaptureStream::pop_into`].
pub struct CaptureStream {
    _stream: Backend,
    ring: rtrb::Consumer<f32>,
    pub info: StreamInfo,
    pub counters: Arc<StreamCounters>,
}

/// An open output stream; samples (interleaved f32) are queued with [`PlaybackStream::push`].
pub struct PlaybackStream {
    _stream: Backend,
    ring: rtrb::Producer<f32>,
    pub info: StreamInfo,
    pub counters: Arc<StreamCounters>,
}

/// Picks 48 kHz when the device supports it, otherwise its default rate; keeps its default
/// channel count (the worker downmixes/upmixes).
fn stream_config(device: &cpal::Device, direction: Direction) -> Result<cpal::StreamConfig, String> {
    let default = match direction {
        Direction::Input => device.default_input_config(),
        Direction::Output => device.default_output_config(),
    }
    .map_err(|error| error.to_string())?;
    let supports_48k = match direction {
        Direction::Input => device.supported_input_configs().map(|configs| configs.collect::<Vec<_>>()),
        Direction::Output => device.supported_output_configs().map(|configs| configs.collect::<Vec<_>>()),
    }
    .map(|configs| {
        configs.iter().any(|range| {
            range.channels() == default.channels()
                && range.min_sample_rate() <= 48_000
                && range.max_sample_rate() >= 48_000
        })
    })
    .unwrap_or(false);
    Ok(cpal::StreamConfig {
        channels: default.channels(),
        sample_rate: if supports_48k { 48_000 } else { default.sample_rate() },
        buffer_size: cpal::BufferSize::Fixed(REQUESTED_BUFFER_FRAMES),
    })
}

fn ring_capacity(config: &cpal::StreamConfig) -> usize {
    (config.sample_rate as f32 * config.channels as f32 * RING_SECONDS) as usize
}

/// What keeps an open stream running.
enum Backend {
    /// A cpal stream (Windows, macOS, Linux without a PulseAudio server).
    Cpal { _stream: cpal::Stream },
    /// A `libpulse` stream on its own thread (Linux with PulseAudio or PipeWire's server).
    #[cfg(target_os = "linux")]
    Pulse { _stream: pulse::PulseStream },
}

/// The end of a stream's ring that the device side takes.
trait DeviceEnd {
    #[cfg(target_os = "linux")]
    fn into_pulse(self) -> pulse::End;
}

impl DeviceEnd for rtrb::Producer<f32> {
    #[cfg(target_os = "linux")]
    fn into_pulse(self) -> pulse::End {
        pulse::End::Capture(self)
    }
}

impl DeviceEnd for rtrb::Consumer<f32> {
    #[cfg(target_os = "linux")]
    fn into_pulse(self) -> pulse::End {
        pulse::End::Playback(self)
    }
}

/// What every stream shares: finding the device, choosing the format, the ring between the
/// device's side and the worker's (`ring` splits it into the device's end and the worker's),
/// the counters, starting it, and reporting what was granted. On a PulseAudio server the stream
/// is `libpulse`'s ([`pulse`]); elsewhere `build` makes the cpal stream with its real-time
/// callback, on a connection of its own (cpal's PulseAudio client runs one stream per
/// direction per connection).
fn open_stream<Give: DeviceEnd, Keep>(
    direction: Direction,
    device: Option<&str>,
    ring: impl FnOnce(usize) -> (Give, Keep),
    build: impl FnOnce(
        &cpal::Device,
        cpal::StreamConfig,
        Give,
        Arc<StreamCounters>,
        Box<dyn FnMut(cpal::Error) + Send>,
    ) -> Result<cpal::Stream, cpal::Error>,
) -> Result<(Backend, Keep, StreamInfo, Arc<StreamCounters>), DeviceError> {
    #[cfg(target_os = "linux")]
    let on_pulse = host().id() == cpal::HostId::PulseAudio;
    #[cfg(not(target_os = "linux"))]
    let on_pulse = false;
    let chosen = if on_pulse {
        find_device_on(host(), direction, device)?
    } else {
        find_device_on(&cpal::default_host(), direction, device)?
    };
    let name = describe(&chosen, direction, None).map_or_else(|| "?".to_string(), |info| info.name);
    let open_error =
        |reason: String| DeviceError::Open { direction: direction_word(direction), device: name.clone(), reason };
    let config = stream_config(&chosen, direction).map_err(open_error)?;
    let counters = Arc::new(StreamCounters::default());
    let (give, keep) = ring(ring_capacity(&config));
    #[cfg(target_os = "linux")]
    if on_pulse {
        let server_name = chosen.id().map_err(|error| open_error(error.to_string()))?.id().to_string();
        let opened = pulse::open(pulse::Request {
            device: server_name,
            direction,
            rate: config.sample_rate,
            channels: config.channels,
            frames: REQUESTED_BUFFER_FRAMES,
            end: give.into_pulse(),
            counters: Arc::clone(&counters),
        })
        .map_err(open_error)?;
        let info = StreamInfo {
            device: name.clone(),
            sample_rate: config.sample_rate,
            channels: config.channels,
            buffer_frames: opened.buffer_frames,
        };
        return Ok((Backend::Pulse { _stream: opened }, keep, info, counters));
    }
    let error_counters = Arc::clone(&counters);
    let on_error = Box::new(move |_error: cpal::Error| {
        error_counters.errors.fetch_add(1, Ordering::Relaxed);
    });
    let stream =
        build(&chosen, config, give, Arc::clone(&counters), on_error).map_err(|error| open_error(error.to_string()))?;
    stream.play().map_err(|error| open_error(error.to_string()))?;
    let info = StreamInfo {
        device: name.clone(),
        sample_rate: config.sample_rate,
        channels: config.channels,
        buffer_frames: stream.buffer_size().ok(),
    };
    Ok((Backend::Cpal { _stream: stream }, keep, info, counters))
}

impl StreamCounters {
    /// Counts one callback that lost `samples` samples. Atomics only: callable from a callback.
    fn glitch(&self, samples: u64) {
        if samples > 0 {
            self.dropped_samples.fetch_add(samples, Ordering::Relaxed);
            self.glitches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wakes the worker thread, if one said it waits on this stream. From a callback: an
    /// atomic and at most one futex wake, no allocation and no lock.
    fn wake_worker(&self) {
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
    }

    /// Makes the calling thread the one [`StreamCounters::wake_worker`] wakes (the first to
    /// ask keeps it). Worker thread.
    fn wait_here(&self) {
        if self.worker.get().is_none() {
            let _ = self.worker.set(std::thread::current());
        }
    }
}

impl CaptureStream {
    /// Opens `device` (id or name; `None` = system default) for capture and starts it.
    pub fn open(device: Option<&str>) -> Result<CaptureStream, DeviceError> {
        let (stream, ring, info, counters) = open_stream(
            Direction::Input,
            device,
            rtrb::RingBuffer::new,
            |chosen, config, mut producer: rtrb::Producer<f32>, counters, on_error| {
                chosen.build_input_stream::<f32, _, _>(
                    config,
                    // Real-time thread: ring pushes and atomic counters only.
                    move |data: &[f32], _info| {
                        let dropped = data.iter().filter(|&&sample| producer.push(sample).is_err()).count();
                        counters.glitch(dropped as u64);
                        counters.wake_worker();
                    },
                    on_error,
                    Some(Duration::from_secs(5)),
                )
            },
        )?;
        Ok(CaptureStream { _stream: stream, ring, info, counters })
    }

    /// Moves every captured sample waiting now into `out` (appended). Worker thread.
    pub fn pop_into(&mut self, out: &mut Vec<f32>) -> usize {
        let available = self.ring.slots();
        out.reserve(available);
        for _ in 0..available {
            match self.ring.pop() {
                Ok(sample) => out.push(sample),
                Err(_) => break,
            }
        }
        available
    }
}

impl PlaybackStream {
    /// Opens `device` (id or name; `None` = system default) for playback and starts it.
    pub fn open(device: Option<&str>) -> Result<PlaybackStream, DeviceError> {
        let (stream, ring, info, counters) = open_stream(
            Direction::Output,
            device,
            |capacity| {
                let (producer, consumer) = rtrb::RingBuffer::new(capacity);
                (consumer, producer)
            },
            |chosen, config, mut consumer: rtrb::Consumer<f32>, counters, on_error| {
                chosen.build_output_stream::<f32, _, _>(
                    config,
                    // Real-time thread: ring pops and atomic counters only; the slice arrives silent.
                    move |data: &mut [f32], _info| {
                        let mut missing = 0u64;
                        for slot in data.iter_mut() {
                            match consumer.pop() {
                                Ok(sample) => *slot = sample,
                                Err(_) => missing += 1,
                            }
                        }
                        counters.glitch(missing);
                        counters.wake_worker();
                    },
                    on_error,
                    Some(Duration::from_secs(5)),
                )
            },
        )?;
        Ok(PlaybackStream { _stream: stream, ring, info, counters })
    }

    /// Queues interleaved samples; returns how many fit (the rest is dropped). Worker thread.
    pub fn push(&mut self, samples: &[f32]) -> usize {
        let mut written = 0;
        for &sample in samples {
            if self.ring.push(sample).is_err() {
                break;
            }
            written += 1;
        }
        written
    }

    /// Samples queued and not yet played.
    pub fn queued(&self) -> usize {
        self.ring.buffer().capacity() - self.ring.slots()
    }
}

/// The longest the device ends may buffer on our side before the oldest audio is dropped (input)
/// or a frame is skipped (output). Each millisecond here is a millisecond of mouth-to-ear delay:
/// `cargo xtask bench audio` went from 170 ms to 88 ms p50 when this went from 60 to 15 ms (and
/// the mixer's per-speaker queue from 60 to 40 ms); the device tests check that audio stays clean.
const MAX_DEVICE_QUEUE_MS: usize = 15;

/// How often an open stream checks that its device still exists (and, when following the
/// system default, that the default has not moved). Stall detection cannot replace this: a
/// PulseAudio sink may legitimately take its audio in blocks far apart.
const DEVICE_CHECK: Duration = Duration::from_secs(1);
/// How quickly a watch thread notices that its stream was closed.
const WATCH_STOP_POLL: Duration = Duration::from_millis(100);

/// What a stream's watch thread and its audio worker share.
struct WatchShared {
    stop: AtomicBool,
    /// Set by the watch thread when the device vanished or the default moved.
    lost: AtomicBool,
    /// The id of the device the stream has open now. Locked once a second by the watch thread
    /// and when the worker reopens: never contended on the audio path.
    opened_id: Mutex<Option<String>>,
}

/// Watches one open stream for loss and for the system default moving; decides when to reopen.
/// Asking the sound system takes a round trip, so it happens on a thread of its own
/// (`parley-device-watch`), never on the audio worker.
struct Watch {
    /// The device the user asked for; `None` follows the system default.
    wanted: Option<String>,
    direction: Direction,
    shared: Arc<WatchShared>,
    notice: Option<String>,
}

impl Watch {
    fn new(wanted: Option<&str>, direction: Direction) -> Watch {
        let shared = Arc::new(WatchShared {
            stop: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            opened_id: Mutex::new(current_id(direction, wanted)),
        });
        let watched = Arc::clone(&shared);
        let follow_default = wanted.is_none();
        let spawned = std::thread::Builder::new()
            .name("parley-device-watch".to_string())
            .spawn(move || watch_device(&watched, direction, follow_default));
        if let Err(error) = spawned {
            // Without the thread, a vanished device is still caught by the stream's own error
            // callback (counted in `StreamCounters::errors`); only a moved default goes unseen.
            tracing::warn!(%error, "cannot start the device watch thread");
        }
        Watch { wanted: wanted.map(str::to_string), direction, shared, notice: None }
    }

    /// Whether the stream should be reopened now: the backend reported an error, the device is
    /// gone, or (when following the default) the default moved. Atomics only: call per frame.
    fn needs_reopen(&self, counters: &StreamCounters) -> bool {
        counters.errors.load(Ordering::Relaxed) > 0 || self.shared.lost.load(Ordering::Relaxed)
    }

    /// Reopens with `open` on the wanted device, falling back to the system default when it is
    /// gone; records a notice for the user. Returns the new stream, or `None` to retry later.
    fn reopen<S>(
        &mut self,
        previous: &str,
        open: impl Fn(Option<&str>) -> Result<S, DeviceError>,
        name: impl Fn(&S) -> String,
    ) -> Option<S> {
        let reopened = match open(self.wanted.as_deref()) {
            Ok(stream) => Some((stream, self.wanted.clone())),
            Err(_) if self.wanted.is_some() => open(None).ok().map(|stream| (stream, None)),
            Err(_) => None,
        };
        let (stream, via) = reopened?;
        *lock_ignoring_poison(&self.shared.opened_id) = current_id(self.direction, via.as_deref());
        self.shared.lost.store(false, Ordering::Relaxed);
        let word = direction_word(self.direction);
        self.notice = Some(format!("{word} moved from {previous:?} to {:?}", name(&stream)));
        Some(stream)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain ids; a panic elsewhere cannot leave them half-written.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The watch thread: once per [`DEVICE_CHECK`], flags the stream as lost when its device is
/// gone or, when following the default, the default moved. Ends when the stream is dropped.
fn watch_device(shared: &WatchShared, direction: Direction, follow_default: bool) {
    let mut since_check = Duration::ZERO;
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(WATCH_STOP_POLL);
        since_check += WATCH_STOP_POLL;
        if since_check < DEVICE_CHECK || shared.lost.load(Ordering::Relaxed) {
            continue;
        }
        since_check = Duration::ZERO;
        let Some(opened) = lock_ignoring_poison(&shared.opened_id).clone() else { continue };
        let unplugged = current_id(direction, Some(&opened)).is_none();
        let default_moved = follow_default && current_id(direction, None).is_some_and(|default| default != opened);
        if unplugged || default_moved {
            shared.lost.store(true, Ordering::Relaxed);
        }
    }
}

/// The id of the device `wanted` names, or of the system default.
fn current_id(direction: Direction, wanted: Option<&str>) -> Option<String> {
    let device = find_device(direction, wanted).ok()?;
    device.id().ok().map(|id| id.to_string())
}

/// A capture device as a [`crate::stream::FrameSource`]: 48 kHz mono frames, downmixed from
/// whatever channel layout the device has. Called from the session's 10 ms tick, it takes what
/// the callback queued; a short device leaves silence, a long backlog is trimmed so latency
/// stays bounded. A device that vanishes (or, when following the default, a default that
/// moves) is replaced without interrupting the session.
pub struct DeviceInput {
    stream: CaptureStream,
    watch: Watch,
    /// From the device's channels and rate to 48 kHz mono.
    converter: MonoConverter,
    scratch: Vec<f32>,
    pending: std::collections::VecDeque<i16>,
}

impl DeviceInput {
    /// Opens the capture device (id or name; `None` = system default, followed if it changes).
    pub fn open(device: Option<&str>) -> Result<DeviceInput, DeviceError> {
        let stream = CaptureStream::open(device)?;
        let converter = MonoConverter::new(stream.info.channels, resampler_for(&stream.info, Direction::Input)?);
        Ok(DeviceInput {
            stream,
            watch: Watch::new(device, Direction::Input),
            converter,
            scratch: Vec::with_capacity(crate::FRAME_SAMPLES * 8),
            pending: std::collections::VecDeque::with_capacity(crate::FRAME_SAMPLES * 8),
        })
    }

    pub fn info(&self) -> &StreamInfo {
        &self.stream.info
    }
}

/// A converter between the device's rate and 48 kHz, or `None` when the device runs at 48 kHz.
fn resampler_for(info: &StreamInfo, direction: Direction) -> Result<Option<StreamResampler>, DeviceError> {
    if info.sample_rate == crate::SAMPLE_RATE {
        return Ok(None);
    }
    let (from, to) = match direction {
        Direction::Input => (info.sample_rate, crate::SAMPLE_RATE),
        Direction::Output => (crate::SAMPLE_RATE, info.sample_rate),
    };
    StreamResampler::new(from, to).map(Some).map_err(|reason| DeviceError::Open {
        direction: direction_word(direction),
        device: info.device.clone(),
        reason: format!("cannot convert {from} Hz to {to} Hz: {reason}"),
    })
}

impl DeviceInput {
    /// Moves what the callback queued into `pending`, as 48 kHz mono i16; reopens the device
    /// first when it is gone.
    fn pull(&mut self) {
        if self.watch.needs_reopen(&self.stream.counters) {
            let previous = self.stream.info.device.clone();
            let reopened = self.watch.reopen(&previous, CaptureStream::open, |stream| stream.info.device.clone());
            if let Some(stream) = reopened
                && let Ok(resampler) = resampler_for(&stream.info, Direction::Input)
            {
                self.converter = MonoConverter::new(stream.info.channels, resampler);
                self.stream = stream;
                self.pending.clear();
            }
        }
        self.scratch.clear();
        self.stream.pop_into(&mut self.scratch);
        self.converter.push(&self.scratch, &mut self.pending);
    }
}

impl crate::stream::FrameSource for DeviceInput {
    fn fill(&mut self, frame: &mut [i16]) -> bool {
        self.pull();
        let limit = MAX_DEVICE_QUEUE_MS * crate::SAMPLE_RATE as usize / 1000;
        let excess = self.pending.len().saturating_sub(limit);
        self.pending.drain(..excess);
        let count = self.pending.len().min(frame.len());
        for (slot, sample) in frame.iter_mut().zip(self.pending.drain(..count)) {
            *slot = sample;
        }
        frame[count..].fill(0);
        true
    }

    fn take_notice(&mut self) -> Option<String> {
        self.watch.notice.take()
    }

    fn clocked(&self) -> bool {
        true
    }

    fn ready(&mut self) -> bool {
        self.stream.counters.wait_here();
        self.pull();
        self.pending.len() >= crate::FRAME_SAMPLES
    }
}

/// A playback device as a [`crate::stream::FrameSink`]: 48 kHz mono frames copied to every
/// channel of the device; replaced like [`DeviceInput`] when it vanishes.
pub struct DeviceOutput {
    stream: PlaybackStream,
    /// Glitches of the streams this sink replaced (a vanished device's).
    earlier_glitches: u64,
    watch: Watch,
    /// Present when the device does not run at 48 kHz.
    resampler: Option<StreamResampler>,
    input: Vec<f32>,
    mono: Vec<f32>,
    scratch: Vec<f32>,
}

impl DeviceOutput {
    /// Opens the playback device (id or name; `None` = system default, followed if it changes).
    pub fn open(device: Option<&str>) -> Result<DeviceOutput, DeviceError> {
        let stream = PlaybackStream::open(device)?;
        let resampler = resampler_for(&stream.info, Direction::Output)?;
        Ok(DeviceOutput {
            stream,
            earlier_glitches: 0,
            watch: Watch::new(device, Direction::Output),
            resampler,
            input: Vec::with_capacity(crate::FRAME_SAMPLES),
            mono: Vec::with_capacity(crate::FRAME_SAMPLES * 2),
            scratch: Vec::with_capacity(crate::FRAME_SAMPLES * 8),
        })
    }

    pub fn info(&self) -> &StreamInfo {
        &self.stream.info
    }
}

impl crate::stream::FrameSink for DeviceOutput {
    fn write(&mut self, frame: &[i16]) -> Result<(), crate::wav::WavError> {
        if self.watch.needs_reopen(&self.stream.counters) {
            let previous = self.stream.info.device.clone();
            let reopened = self.watch.reopen(&previous, PlaybackStream::open, |stream| stream.info.device.clone());
            if let Some(stream) = reopened
                && let Ok(resampler) = resampler_for(&stream.info, Direction::Output)
            {
                self.earlier_glitches += self.stream.counters.glitches.load(Ordering::Relaxed);
                self.stream = stream;
                self.resampler = resampler;
            }
        }
        let channels = self.stream.info.channels.max(1) as usize;
        let limit = MAX_DEVICE_QUEUE_MS * self.stream.info.sample_rate as usize / 1000 * channels;
        if self.stream.queued() > limit {
            // The device is slower than our clock: skip a frame rather than let latency grow.
            return Ok(());
        }
        let as_float = frame.iter().map(|&sample| sample as f32 / i16::MAX as f32);
        self.mono.clear();
        match &mut self.resampler {
            Some(resampler) => {
                self.input.clear();
                self.input.extend(as_float);
                resampler.push(&self.input, &mut self.mono);
            }
            None => self.mono.extend(as_float),
        }
        self.scratch.clear();
        for &value in &self.mono {
            self.scratch.extend(std::iter::repeat_n(value, channels));
        }
        self.stream.push(&self.scratch);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), crate::wav::WavError> {
        Ok(())
    }

    fn take_notice(&mut self) -> Option<String> {
        self.watch.notice.take()
    }

    fn clocked(&self) -> bool {
        true
    }

    /// The device wants the next frame once less than one device buffer is queued: it then
    /// always has a buffer ready when its callback comes, and never much more (every queued
    /// millisecond is a millisecond of delay).
    fn wants_frame(&mut self) -> bool {
        self.stream.counters.wait_here();
        let channels = self.stream.info.channels.max(1) as usize;
        let buffer = self.stream.info.buffer_frames.unwrap_or(REQUESTED_BUFFER_FRAMES) as usize;
        self.stream.queued() < buffer * channels || self.watch.needs_reopen(&self.stream.counters)
    }

    fn glitches(&self) -> u64 {
        self.earlier_glitches + self.stream.counters.glitches.load(Ordering::Relaxed)
    }
}
