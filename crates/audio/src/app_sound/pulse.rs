//! Linux: the playback streams of the sound server (PulseAudio's sink inputs; PipeWire's
//! `pipewire-pulse` serves the same protocol) and a recording of one of them alone.
//!
//! PulseAudio can record a single playback stream: a record stream on the monitor of the sink
//! that stream plays to, with `direct_on_input` naming the stream, receives only its sound (what
//! `parec --monitor-stream` does). So sharing a game's or a video's sound never carries anything
//! else that plays (and never Parley's own playout, which the facade refuses).
//!
//! Listing is one request on a short connection of its own; recording uses the `pulseaudio`
//! crate's client (its own I/O thread), whose callback hands 10 ms frames over.

use std::ffi::CString;
use std::io::BufReader;
use std::os::unix::net::UnixStream;

use pulseaudio::protocol;

use super::{AppSound, AppSoundError, OnFrame};
use crate::{FRAME_SAMPLES, SAMPLE_RATE};

fn server_error(error: impl std::fmt::Display) -> AppSoundError {
    AppSoundError::Server(error.to_string())
}

fn text(props: &protocol::Props, prop: protocol::Prop) -> Option<String> {
    let bytes = props.get(prop)?;
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Every sink input, ours included; an application's [`AppSound::index`] is its stream's.
pub(super) fn sounds() -> Result<Vec<AppSound>, AppSoundError> {
    let path = pulseaudio::socket_path_from_env().ok_or(AppSoundError::NoServer)?;
    let socket = UnixStream::connect(&path).map_err(|_| AppSoundError::NoServer)?;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(server_error)?;
    let mut socket = BufReader::new(socket);
    let cookie = pulseaudio::cookie_path_from_env().and_then(|path| std::fs::read(path).ok()).unwrap_or_default();
    let auth =
        protocol::AuthParams { version: protocol::MAX_VERSION, supports_shm: false, supports_memfd: false, cookie };
    protocol::write_command_message(socket.get_mut(), 0, &protocol::Command::Auth(auth), protocol::MAX_VERSION)
        .map_err(server_error)?;
    let (_, reply) = protocol::read_reply_message::<protocol::AuthReply>(&mut socket, protocol::MAX_VERSION)
        .map_err(server_error)?;
    let version = protocol::MAX_VERSION.min(reply.version);
    let mut props = protocol::Props::new();
    props.set(protocol::Prop::ApplicationName, c"Parley (listing sounds)");
    protocol::write_command_message(socket.get_mut(), 1, &protocol::Command::SetClientName(props), version)
        .map_err(server_error)?;
    protocol::read_reply_message::<protocol::SetClientNameReply>(&mut socket, version).map_err(server_error)?;
    protocol::write_command_message(socket.get_mut(), 2, &protocol::Command::GetSinkInputInfoList, version)
        .map_err(server_error)?;
    let (_, inputs) =
        protocol::read_reply_message::<protocol::SinkInputInfoList>(&mut socket, version).map_err(server_error)?;
    Ok(inputs
        .into_iter()
        .map(|input| AppSound {
            index: input.index,
            app: text(&input.props, protocol::Prop::ApplicationName)
                .unwrap_or_else(|| input.name.to_string_lossy().into_owned()),
            title: text(&input.props, protocol::Prop::MediaName).unwrap_or_default(),
            pid: text(&input.props, protocol::Prop::ApplicationProcessId).and_then(|pid| pid.trim().parse().ok()),
            sink: input.sink_index,
        })
        .collect())
}

/// A recording of one application's sound, running until dropped.
pub(super) struct Recording {
    // Held: dropping the client closes the connection and with it the stream.
    _client: pulseaudio::Client,
    _stream: pulseaudio::RecordStream,
}

/// Records `sound` alone; `on_frame` runs on the sound server client's I/O thread.
pub(super) fn record(sound: &AppSound, mut on_frame: OnFrame) -> Result<Recording, AppSoundError> {
    let client = pulseaudio::Client::from_env(c"Parley (screen-share sound)").map_err(|error| match error {
        pulseaudio::ClientError::ServerUnavailable => AppSoundError::NoServer,
        error => server_error(error),
    })?;
    let runtime = block_on(client.sink_info(sound.sink)).map_err(server_error)?;
    let monitor = runtime.monitor_source_index.ok_or_else(|| server_error("the sink has no monitor"))?;
    let mut props = protocol::Props::new();
    props.set(protocol::Prop::MediaName, CString::new(format!("sound of {}", sound.app)).unwrap_or_default());
    let params = protocol::RecordStreamParams {
        sample_spec: protocol::SampleSpec {
            format: protocol::SampleFormat::S16Le,
            channels: 1,
            sample_rate: SAMPLE_RATE,
        },
        channel_map: protocol::ChannelMap::mono(),
        source_index: Some(monitor),
        direct_on_input_index: Some(sound.index),
        buffer_attr: protocol::stream::BufferAttr {
            max_length: u32::MAX,
            fragment_size: (FRAME_SAMPLES * 2) as u32,
            ..Default::default()
        },
        flags: protocol::stream::StreamFlags { adjust_latency: true, ..Default::default() },
        props,
        ..Default::default()
    };
    let mut pending: Vec<i16> = Vec::with_capacity(FRAME_SAMPLES * 4);
    let mut odd_byte: Option<u8> = None;
    let sink = move |bytes: &[u8]| {
        let mut bytes = bytes;
        if let Some(low) = odd_byte.take()
            && let Some((&high, rest)) = bytes.split_first()
        {
            pending.push(i16::from_le_bytes([low, high]));
            bytes = rest;
        }
        let mut pairs = bytes.chunks_exact(2);
        pending.extend(pairs.by_ref().map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
        odd_byte = pairs.remainder().first().copied();
        let whole = pending.len() / FRAME_SAMPLES * FRAME_SAMPLES;
        for frame in pending[..whole].chunks_exact(FRAME_SAMPLES) {
            on_frame(frame);
        }
        pending.drain(..whole);
    };
    let stream = block_on(client.create_record_stream(params, sink)).map_err(server_error)?;
    Ok(Recording { _client: client, _stream: stream })
}

/// Runs one of the client's futures to completion on this thread (they are driven by the
/// client's own I/O thread and only wait for its answer).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}
