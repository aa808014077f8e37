//! Capture and playback streams on PulseAudio (and PipeWire's PulseAudio server) through the
//! system's own client library, `libpulse`, bound by `libpulse-binding`.
//!
//! Why not cpal's PulseAudio host, which lists the devices: its pure-Rust client zeroes a 1 MiB
//! read buffer before every read of the socket, at least twice on each wake-up, and a 5 ms
//! stream wakes up 200 times a second. `cargo xtask bench app --perf` found 15 % of the app's
//! samples in that `memset` in a 10-speaker call. `libpulse` moves the audio through shared
//! memory and reads the socket into small buffers.
//!
//! Each stream runs a standard main loop on a thread of its own (`parley-pulse-in` /
//! `parley-pulse-out`): the library's objects never leave it, and the thread only moves samples
//! between the server's buffers and the SPSC ring, as a cpal callback would: no allocation, no
//! lock, no logging, no FFI of ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use libpulse_binding as pulse;
use pulse::context::{Context, FlagSet as ContextFlags, State as ContextState};
use pulse::def::BufferAttr;
use pulse::mainloop::standard::Mainloop;
use pulse::sample::{Format, Spec};
use pulse::stream::{FlagSet as StreamFlags, PeekResult, SeekMode, State as StreamState, Stream};
use pulse::time::MicroSeconds;

use super::{Direction, StreamCounters};

/// How long opening may take (connecting, then the stream becoming ready), as cpal's timeout.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a capture stream's open waits for its first audio (see [`first_audio`]).
const FIRST_AUDIO_WAIT: Duration = Duration::from_secs(3);
/// The longest the loop blocks without looking at its stop flag.
const STOP_POLL: MicroSeconds = MicroSeconds(100_000);
const BYTES_PER_SAMPLE: usize = std::mem::size_of::<f32>();

/// What the loop moves samples to or from.
pub(super) enum End {
    /// Capture: the ring's producer.
    Capture(rtrb::Producer<f32>),
    /// Playback: the ring's consumer.
    Playback(rtrb::Consumer<f32>),
}

/// An open stream: its thread runs until this is dropped (or the stream fails, which the
/// counters' `errors` tells the worker).
pub(super) struct PulseStream {
    stop: Arc<AtomicBool>,
    /// The buffer the server granted, in frames: the capture fragment or the playback request.
    pub(super) buffer_frames: Option<u32>,
}

impl Drop for PulseStream {
    fn drop(&mut self) {
        // Not joined: a server that stopped answering must not hang whoever closes the stream;
        // the thread sees the flag within `STOP_POLL` and disconnects.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The stream's shape and the ring end; `frames` is the period (5 ms of frames).
pub(super) struct Request {
    pub(super) device: String,
    pub(super) direction: Direction,
    pub(super) rate: u32,
    pub(super) channels: u16,
    pub(super) frames: u32,
    pub(super) end: End,
    pub(super) counters: Arc<StreamCounters>,
}

/// Opens the stream on its thread and waits for the server to say it is running.
pub(super) fn open(request: Request) -> Result<PulseStream, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready, opened) = std::sync::mpsc::sync_channel(1);
    let thread_stop = Arc::clone(&stop);
    let name = match request.direction {
        Direction::Input => "parley-pulse-in",
        Direction::Output => "parley-pulse-out",
    };
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || run(request, &thread_stop, &ready))
        .map_err(|error| format!("cannot start the sound thread: {error}"))?;
    answer(&opened, &stop).map(|buffer_frames| PulseStream { stop, buffer_frames })
}

fn answer(opened: &Receiver<Result<Option<u32>, String>>, stop: &AtomicBool) -> Result<Option<u32>, String> {
    match opened.recv_timeout(OPEN_TIMEOUT + FIRST_AUDIO_WAIT) {
        Ok(answer) => answer,
        Err(RecvTimeoutError::Timeout) => {
            stop.store(true, Ordering::Relaxed);
            Err(format!(
                "the sound server did not open the stream within {} s",
                (OPEN_TIMEOUT + FIRST_AUDIO_WAIT).as_secs()
            ))
        }
        Err(RecvTimeoutError::Disconnected) => Err("the sound thread ended before the stream opened".to_string()),
    }
}

/// The thread: connect, open, then move samples until stopped or failed.
fn run(request: Request, stop: &AtomicBool, ready: &SyncSender<Result<Option<u32>, String>>) {
    let Request { device, direction, rate, channels, frames, mut end, counters } = request;
    let opened = connect(&device, direction, rate, channels, frames, stop);
    let (mut mainloop, _context, mut stream) = match opened {
        Ok(parts) => parts,
        Err(reason) => {
            // The opener may have given up waiting; then nobody is left to tell.
            drop(ready.send(Err(reason)));
            return;
        }
    };
    let frame_bytes = usize::from(channels) * BYTES_PER_SAMPLE;
    let granted = stream.get_buffer_attr().map(|attr| match direction {
        Direction::Input => attr.fragsize,
        Direction::Output => attr.minreq,
    });
    let buffer_frames = granted.map(|bytes| bytes / frame_bytes as u32);
    if direction == Direction::Input && !first_audio(&mut mainloop, &stream, stop) {
        drop(ready.send(Err("the sound server's connection failed".to_string())));
        return;
    }
    if ready.send(Ok(buffer_frames)).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match &mut end {
            End::Capture(producer) => take_captured(&mut stream, producer, &counters),
            End::Playback(consumer) => give_playback(&mut stream, consumer, frame_bytes, &counters),
        }
        if turn(&mut mainloop).is_err() || stream.get_state() != StreamState::Ready {
            // The server went away or dropped the stream: the worker reopens.
            counters.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    // Closing anyway: a failure to say goodbye to the server changes nothing.
    let _ = stream.disconnect();
}

type Parts = (Mainloop, Context, Stream);

fn connect(
    device: &str,
    direction: Direction,
    rate: u32,
    channels: u16,
    frames: u32,
    stop: &AtomicBool,
) -> Result<Parts, String> {
    let mut mainloop = Mainloop::new().ok_or("cannot create a PulseAudio main loop")?;
    let mut context = Context::new(&mainloop, "Parley").ok_or("cannot create a PulseAudio context")?;
    context
        .connect(None, ContextFlags::NOAUTOSPAWN, None)
        .map_err(|error| format!("cannot reach the sound server: {error}"))?;
    settle(&mut mainloop, stop, || match context.get_state() {
        ContextState::Ready => Some(Ok(())),
        ContextState::Failed | ContextState::Terminated => {
            Some(Err(format!("cannot reach the sound server: {}", context.errno())))
        }
        _ => None,
    })?;
    let channel_count = u8::try_from(channels).map_err(|_| format!("{channels} channels are too many"))?;
    let spec = Spec { format: Format::FLOAT32NE, rate, channels: channel_count };
    if !spec.is_valid() {
        return Err(format!("the sound server cannot take {rate} Hz with {channels} channels"));
    }
    let stream_name = match direction {
        Direction::Input => "Parley microphone",
        Direction::Output => "Parley voices",
    };
    let mut stream = Stream::new(&mut context, stream_name, &spec, None).ok_or("cannot create a stream")?;
    let bytes = frames * u32::from(channels) * BYTES_PER_SAMPLE as u32;
    // As cpal's host asked: capture in fragments of one period; playback double-buffered (a
    // target of two periods, a request per period). `ADJUST_LATENCY` makes the server set the
    // device's own latency from these.
    let flags = StreamFlags::ADJUST_LATENCY | StreamFlags::START_CORKED;
    let connected = match direction {
        Direction::Input => {
            let attr = BufferAttr {
                maxlength: u32::MAX,
                tlength: u32::MAX,
                prebuf: u32::MAX,
                minreq: u32::MAX,
                fragsize: bytes,
            };
            stream.connect_record(Some(device), Some(&attr), flags)
        }
        Direction::Output => {
            let attr = BufferAttr {
                maxlength: 2 * bytes,
                tlength: 2 * bytes,
                prebuf: u32::MAX,
                minreq: bytes,
                fragsize: u32::MAX,
            };
            stream.connect_playback(Some(device), Some(&attr), flags, None, None)
        }
    };
    connected.map_err(|error| format!("the sound server refused the stream: {error}"))?;
    settle(&mut mainloop, stop, || match stream.get_state() {
        StreamState::Ready => Some(Ok(())),
        StreamState::Failed | StreamState::Terminated => {
            Some(Err(format!("the sound server refused the stream: {}", context.errno())))
        }
        _ => None,
    })?;
    // Started corked and uncorked once ready, as cpal's host does (the server then applies the
    // stream's state and latency in one step).
    drop(stream.uncork(None));
    Ok((mainloop, context, stream))
}

/// Capture is open once its first audio is there (as with cpal's host), at most
/// [`FIRST_AUDIO_WAIT`]: a monitor of a sink that sleeps in long blocks (an idle null sink
/// renders 2 s at a time) sends nothing until the block ends, and a caller that starts its
/// clock at open would lose that much. False when the connection failed meanwhile.
fn first_audio(mainloop: &mut Mainloop, stream: &Stream, stop: &AtomicBool) -> bool {
    let started = std::time::Instant::now();
    while stream.readable_size().unwrap_or(0) == 0 && started.elapsed() < FIRST_AUDIO_WAIT {
        if stop.load(Ordering::Relaxed) || turn(mainloop).is_err() || stream.get_state() != StreamState::Ready {
            return false;
        }
    }
    true
}

/// Turns the loop until `state` says the object is ready (`Some(Ok)`) or failed (`Some(Err)`).
fn settle(
    mainloop: &mut Mainloop,
    stop: &AtomicBool,
    mut state: impl FnMut() -> Option<Result<(), String>>,
) -> Result<(), String> {
    loop {
        if let Some(outcome) = state() {
            return outcome;
        }
        wait(mainloop, stop)?;
    }
}

/// One turn of the loop while opening; gives up when the opener did.
fn wait(mainloop: &mut Mainloop, stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::Relaxed) {
        return Err("gave up opening the stream".to_string());
    }
    turn(mainloop).map_err(|()| "the sound server's connection failed".to_string())
}

/// Waits for the server (at most [`STOP_POLL`]) and handles what it sent.
fn turn(mainloop: &mut Mainloop) -> Result<(), ()> {
    mainloop.prepare(Some(STOP_POLL)).map_err(drop)?;
    mainloop.poll().map_err(drop)?;
    mainloop.dispatch().map_err(drop)?;
    Ok(())
}

/// Capture: everything the server delivered goes into the ring; what does not fit is counted.
fn take_captured(stream: &mut Stream, producer: &mut rtrb::Producer<f32>, counters: &StreamCounters) {
    loop {
        match stream.peek() {
            Ok(PeekResult::Data(bytes)) => {
                let mut dropped = 0u64;
                for chunk in bytes.chunks_exact(BYTES_PER_SAMPLE) {
                    let sample = f32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    if producer.push(sample).is_err() {
                        dropped += 1;
                    }
                }
                counters.glitch(dropped);
                counters.wake_worker();
            }
            // A gap in the server's buffer: nothing to copy, but it must be dropped too.
            Ok(PeekResult::Hole(_)) => {}
            Ok(PeekResult::Empty) | Err(_) => return,
        }
        if stream.discard().is_err() {
            return;
        }
    }
}

/// Playback: each request is filled whole, from the ring and then with silence (counted), so
/// the server never runs short because of us.
fn give_playback(
    stream: &mut Stream,
    consumer: &mut rtrb::Consumer<f32>,
    frame_bytes: usize,
    counters: &StreamCounters,
) {
    while let Some(wanted) = stream.writable_size() {
        let wanted = wanted - wanted % frame_bytes;
        if wanted == 0 {
            return;
        }
        // The server's own memory (shared with it): written in place, not copied.
        let Ok(Some(buffer)) = stream.begin_write(Some(wanted)) else { return };
        let usable = buffer.len() - buffer.len() % frame_bytes;
        if usable == 0 {
            let _ = stream.cancel_write();
            return;
        }
        let mut missing = 0u64;
        for slot in buffer[..usable].chunks_exact_mut(BYTES_PER_SAMPLE) {
            let sample = consumer.pop().unwrap_or_else(|_| {
                missing += 1;
                0.0
            });
            slot.copy_from_slice(&sample.to_ne_bytes());
        }
        counters.glitch(missing);
        if stream.write(&buffer[..usable], None, 0, SeekMode::Relative).is_err() {
            return;
        }
        counters.wake_worker();
    }
}
