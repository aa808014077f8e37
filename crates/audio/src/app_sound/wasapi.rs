//! Windows: the processes with an audio session on any playback device, and WASAPI process
//! loopback (Windows 10 2004+) of one of them: the sound of that process and its children,
//! whatever device they play to, and nothing else.
//!
//! An application's [`AppSound::index`] is its process id. Its name is the session's display
//! name when the application set one, else the executable the session identifier names (what
//! the volume mixer shows). COM runs in the multi-threaded apartment on the calling thread
//! (listing) and on the recording's own thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wasapi::{AudioClient, DeviceEnumerator, Direction, SampleType, SessionState, StreamMode, WaveFormat};

use super::{AppSound, AppSoundError, Framer, OnFrame};

/// The format asked of the loopback client (it converts whatever the process plays).
const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
/// How long the recording thread waits for a buffer before it checks whether to stop: a process
/// that plays nothing hands over no buffers at all.
const WAIT_MS: u32 = 100;

fn failed(what: &str, error: wasapi::WasapiError) -> AppSoundError {
    AppSoundError::Server(format!("{what}: {error}"))
}

/// Joins COM's multi-threaded apartment on this thread (harmless when it already has).
fn enter_com() {
    // An error here means the thread is in another apartment already, which WASAPI accepts.
    let _ = wasapi::initialize_mta();
}

pub(super) fn sounds() -> Result<Vec<AppSound>, AppSoundError> {
    enter_com();
    let enumerator = DeviceEnumerator::new().map_err(|error| failed("the audio devices", error))?;
    let devices =
        enumerator.get_device_collection(&Direction::Render).map_err(|error| failed("the playback devices", error))?;
    let mut found: Vec<AppSound> = Vec::new();
    for device in &devices {
        let Ok(device) = device else { continue };
        let Ok(sessions) = device.get_iaudiosessionmanager().and_then(|manager| manager.get_audiosessionenumerator())
        else {
            continue;
        };
        for index in 0..sessions.get_count().unwrap_or(0) {
            let Ok(session) = sessions.get_session(index) else { continue };
            let (Ok(pid), Ok(state)) = (session.get_process_id(), session.get_state()) else { continue };
            // Process 0 is the system sounds' session; an expired session has no stream left.
            if pid == 0 || state == SessionState::Expired || found.iter().any(|sound| sound.index == pid) {
                continue;
            }
            let identifier = session.get_session_identifier().unwrap_or_default();
            let title = session.get_display_name().unwrap_or_default();
            let title = if title.starts_with('@') { String::new() } else { title };
            let app = executable_of(&identifier).unwrap_or_else(|| format!("process {pid}"));
            found.push(AppSound { index: pid, app, title, pid: Some(pid), sink: 0 });
        }
    }
    Ok(found)
}

/// The executable a session identifier names, without its folder and `.exe`:
/// `{0.0.0.00000000}.{…}|\Device\HarddiskVolume3\Program Files\Mozilla Firefox\firefox.exe%b{…}`
/// gives `firefox`.
fn executable_of(identifier: &str) -> Option<String> {
    let path = identifier.split_once('|')?.1;
    let path = path.split_once("%b").map_or(path, |(path, _)| path);
    let file = path.rsplit(['\\', '/']).next()?;
    let name = file.strip_suffix(".exe").or_else(|| file.strip_suffix(".EXE")).unwrap_or(file);
    (!name.is_empty()).then(|| name.to_string())
}

/// The recording thread, stopped and joined on drop.
pub(super) struct Recording {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(super) fn record(sound: &AppSound, on_frame: OnFrame) -> Result<Recording, AppSoundError> {
    let pid = sound.pid.unwrap_or(sound.index);
    let stop = Arc::new(AtomicBool::new(false));
    let (started, outcome) = std::sync::mpsc::channel();
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("parley-app-sound".into())
        .spawn(move || {
            enter_com();
            match open_loopback(pid) {
                Ok(loopback) => {
                    let _ = started.send(Ok(()));
                    pump(&loopback, on_frame, &stopping);
                    let _ = loopback.client.stop_stream();
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                }
            }
        })
        .map_err(|error| AppSoundError::Server(format!("cannot start the recording thread: {error}")))?;
    let recording = Recording { stop, thread: Some(thread) };
    match outcome.recv() {
        Ok(Ok(())) => Ok(recording),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(AppSoundError::Server("the recording thread ended before it started".into())),
    }
}

/// A started process-loopback client for `pid`.
struct Loopback {
    client: AudioClient,
    capture: wasapi::AudioCaptureClient,
    /// Signalled each time a buffer is ready.
    event: wasapi::Handle,
}

/// Opens and starts the loopback of `pid` (the event handle is set before the start, as WASAPI
/// requires).
fn open_loopback(pid: u32) -> Result<Loopback, AppSoundError> {
    let mut client = AudioClient::new_application_loopback_client(pid, true).map_err(|error| {
        AppSoundError::Unsupported(format!(
            "Windows refused to record process {pid} alone ({error}); it needs Windows 10 version 2004 or later"
        ))
    })?;
    let format = WaveFormat::new(32, 32, &SampleType::Float, RATE as usize, usize::from(CHANNELS), None);
    let mode = StreamMode::EventsShared { autoconvert: true, buffer_duration_hns: 0 };
    client
        .initialize_client(&format, &Direction::Capture, &mode)
        .map_err(|error| failed("starting the loopback recording", error))?;
    let event = client.set_get_eventhandle().map_err(|error| failed("the loopback's event", error))?;
    let capture = client.get_audiocaptureclient().map_err(|error| failed("the loopback's capture end", error))?;
    client.start_stream().map_err(|error| failed("starting the loopback recording", error))?;
    Ok(Loopback { client, capture, event })
}

/// Moves what the loopback captured into `on_frame`, until `stop` or an error.
fn pump(loopback: &Loopback, mut on_frame: OnFrame, stop: &AtomicBool) {
    let Ok(mut framer) = Framer::new(RATE, CHANNELS) else { return };
    let mut bytes: VecDeque<u8> = VecDeque::with_capacity(RATE as usize);
    let mut samples: Vec<f32> = Vec::with_capacity(RATE as usize / 10);
    while !stop.load(Ordering::Relaxed) {
        // A timeout only means the process played nothing meanwhile.
        if loopback.event.wait_for_event(WAIT_MS).is_err() {
            continue;
        }
        if loopback.capture.read_from_device_to_deque(&mut bytes).is_err() {
            return;
        }
        samples.clear();
        let whole = bytes.len() / 4 * 4;
        let mut drained = bytes.drain(..whole);
        while let (Some(a), Some(b), Some(c), Some(d)) =
            (drained.next(), drained.next(), drained.next(), drained.next())
        {
            samples.push(f32::from_le_bytes([a, b, c, d]));
        }
        drop(drained);
        framer.push(&samples, &mut |frame| on_frame(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_identifier_names_its_executable() {
        let id = r"{0.0.0.00000000}.{5b9b4a1c-1111-2222-3333-444455556666}|\Device\HarddiskVolume3\Program Files\Mozilla Firefox\firefox.exe%b{00000000-0000-0000-0000-000000000000}";
        assert_eq!(executable_of(id).as_deref(), Some("firefox"));
        assert_eq!(executable_of(r"x|C:\Games\Game.EXE").as_deref(), Some("Game"));
        assert_eq!(executable_of("no bar here"), None);
    }
}
