//! One application's sound, for screen share: the playback streams of the sound server
//! (PulseAudio's sink inputs; PipeWire's `pipewire-pulse` serves the same protocol) and a
//! recording of one of them alone.
//!
//! PulseAudio can record a single playback stream: a record stream on the monitor of the sink
//! that stream plays to, with `direct_on_input` naming the stream, receives only its sound (what
//! `parec --monitor-stream` does). So sharing a game's or a video's sound never carries anything
//! else that plays, and never Parley's own playout: streams of this process are not listed, and
//! asking for one is refused.
//!
//! Listing is one request on a short connection of its own; recording uses the `pulseaudio`
//! crate's client (its own I/O thread), whose callback hands 10 ms frames over.

use std::ffi::CString;
use std::io::BufReader;
use std::os::unix::net::UnixStream;

use pulseaudio::protocol;

use crate::{FRAME_SAMPLES, SAMPLE_RATE};

#[derive(Debug, thiserror::Error)]
pub enum AppSoundError {
    #[error("no sound server to reach (PulseAudio or PipeWire's pulse server)")]
    NoServer,
    #[error("the sound server failed: {0}")]
    Server(String),
    #[error("no application playing sound matches {0:?}")]
    NotFound(String),
    #[error("{0:?} matches Parley's own sound, which is never shared")]
    OwnSound(String),
    #[error("{pattern:?} matches several applications playing sound: {names}")]
    Ambiguous { pattern: String, names: String },
}

/// An application's playback stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSound {
    /// The sink input's index.
    pub index: u32,
    /// The application's name (`application.name`).
    pub app: String,
    /// What it plays (`media.name`), when it says.
    pub title: String,
    /// Its process (`application.process.id`), when it says.
    pub pid: Option<u32>,
    /// The sink it plays to.
    pub sink: u32,
}

impl std::fmt::Display for AppSound {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.title.is_empty() || self.title == self.app {
            write!(formatter, "{}", self.app)
        } else {
            write!(formatter, "{} ({})", self.app, self.title)
        }
    }
}

fn server_error(error: impl std::fmt::Display) -> AppSoundError {
    AppSoundError::Server(error.to_string())
}

fn text(props: &protocol::Props, prop: protocol::Prop) -> Option<String> {
    let bytes = props.get(prop)?;
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Every application's playback stream but this process's own, in the server's order.
pub fn list() -> Result<Vec<AppSound>, AppSoundError> {
    let streams = sink_inputs()?;
    Ok(streams.into_iter().filter(|sound| sound.pid != Some(std::process::id())).collect())
}

/// Every sink input, ours included.
fn sink_inputs() -> Result<Vec<AppSound>, AppSoundError> {
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

/// The one stream `pattern` names among `sounds` (all of them, ours included): `#<index>`, a
/// process id, or part of the application's name or title (case-insensitive).
pub fn choose(sounds: &[AppSound], pattern: &str, own_pid: u32) -> Result<AppSound, AppSoundError> {
    let wanted = pattern.trim();
    let lower = wanted.to_lowercase();
    let matches = |sound: &&AppSound| match wanted.strip_prefix('#').map(str::parse::<u32>) {
        Some(Ok(index)) => sound.index == index,
        _ => match wanted.parse::<u32>() {
            Ok(pid) => sound.pid == Some(pid),
            Err(_) => sound.app.to_lowercase().contains(&lower) || sound.title.to_lowercase().contains(&lower),
        },
    };
    let found: Vec<&AppSound> = sounds.iter().filter(matches).collect();
    let others: Vec<&AppSound> = found.iter().copied().filter(|sound| sound.pid != Some(own_pid)).collect();
    match (others.as_slice(), found.is_empty()) {
        ([one], _) => Ok((*one).clone()),
        ([], true) => Err(AppSoundError::NotFound(wanted.into())),
        ([], false) => Err(AppSoundError::OwnSound(wanted.into())),
        (several, _) => Err(AppSoundError::Ambiguous {
            pattern: wanted.into(),
            names: several.iter().map(|sound| format!("#{} {sound}", sound.index)).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Finds the stream `pattern` names (see [`choose`]) on the sound server.
pub fn find(pattern: &str) -> Result<AppSound, AppSoundError> {
    choose(&sink_inputs()?, pattern, std::process::id())
}

/// Whether sink input `index` still plays.
pub fn exists(index: u32) -> Result<bool, AppSoundError> {
    Ok(sink_inputs()?.iter().any(|sound| sound.index == index))
}

/// A recording of one application's sound, 48 kHz mono, running until dropped.
pub struct AppSoundRecording {
    // Held: dropping the client closes the connection and with it the stream.
    _client: pulseaudio::Client,
    _stream: pulseaudio::RecordStream,
}

/// Records `sound` alone and calls `on_frame` with each 10 ms frame ([`FRAME_SAMPLES`] samples)
/// on the sound server client's I/O thread (not a real-time audio thread: it may block briefly).
pub fn record(
    sound: &AppSound,
    mut on_frame: impl FnMut(&[i16]) + Send + 'static,
) -> Result<AppSoundRecording, AppSoundError> {
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
    Ok(AppSoundRecording { _client: client, _stream: stream })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sound(index: u32, app: &str, pid: u32) -> AppSound {
        AppSound { index, app: app.into(), title: String::new(), pid: Some(pid), sink: 0 }
    }

    #[test]
    fn a_pattern_names_one_application_and_never_our_own_sound() {
        let sounds = [sound(3, "Tone Player", 100), sound(4, "parley", 200), sound(5, "Firefox", 300)];
        assert_eq!(choose(&sounds, "tone", 200).expect("by name").index, 3);
        assert_eq!(choose(&sounds, "#5", 200).expect("by index").app, "Firefox");
        assert_eq!(choose(&sounds, "300", 200).expect("by process").index, 5);
        assert!(matches!(choose(&sounds, "parley", 200), Err(AppSoundError::OwnSound(_))));
        assert!(matches!(choose(&sounds, "#4", 200), Err(AppSoundError::OwnSound(_))));
        assert!(matches!(choose(&sounds, "spotify", 200), Err(AppSoundError::NotFound(_))));
        // Another Parley (another process) is another application.
        assert_eq!(choose(&sounds, "parley", 999).expect("someone else's").index, 4);
        let twice = [sound(3, "Player one", 1), sound(6, "Player two", 2)];
        assert!(matches!(choose(&twice, "player", 9), Err(AppSoundError::Ambiguous { .. })));
    }
}
