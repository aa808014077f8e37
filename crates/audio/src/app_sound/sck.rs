//! macOS: the running applications ScreenCaptureKit lists, and its audio of one of them alone
//! (macOS 13+, with the Screen Recording permission, which covers system audio too).
//!
//! An application's [`AppSound::index`] is its process id. macOS does not say which
//! applications play sound, so the list holds those a user knows: the ones with a document
//! window, shown or not (menu-bar agents and helpers have none).
//!
//! A recording is a ScreenCaptureKit stream whose filter holds only that application. The
//! system delivers 32-bit float sound, usually one buffer per channel, on its own queue; the
//! handler mixes each block down to mono and cuts it into Parley's frames with [`Framer`].
//! ScreenCaptureKit always streams pictures as well: a 2 × 2 one, once a second, with no handler.

use std::sync::{Mutex, PoisonError};

use screencapturekit::cm::{AudioBufferList, CMSampleBuffer};
use screencapturekit::error::{SCError, SCStreamErrorCode};
use screencapturekit::shareable_content::SCShareableContent;
use screencapturekit::stream::configuration::SCStreamConfiguration;
use screencapturekit::stream::content_filter::SCContentFilter;
use screencapturekit::stream::output_trait::SCStreamOutputTrait;
use screencapturekit::stream::output_type::SCStreamOutputType;
use screencapturekit::stream::sc_stream::SCStream;

use super::{AppSound, AppSoundError, Framer, OnFrame};

/// What the user is told when macOS has not granted the Screen Recording permission.
const NOT_ALLOWED: &str = "macOS has not allowed Parley to record other applications' sound: \
     System Settings → Privacy & Security → Screen Recording";
/// The format asked of ScreenCaptureKit (the handler follows whatever it actually sends).
const RATE: i32 = 48_000;
const CHANNELS: i32 = 2;

/// Whether ScreenCaptureKit failed because the Screen Recording permission is missing.
fn is_refusal(error: &SCError) -> bool {
    // Errors that cross the crate's Swift bridge as text keep macOS's own wording.
    let message = error.to_string().to_lowercase();
    matches!(error, SCError::PermissionDenied(_))
        || error.stream_error_code() == Some(SCStreamErrorCode::UserDeclined)
        || ["declined", "tcc", "not authorized", "not permitted", "permission"]
            .iter()
            .any(|word| message.contains(word))
}

fn failed(what: &str, error: &SCError) -> AppSoundError {
    if is_refusal(error) {
        AppSoundError::Refused(NOT_ALLOWED.into())
    } else {
        AppSoundError::Server(format!("{what}: {error}"))
    }
}

fn shareable() -> Result<SCShareableContent, AppSoundError> {
    SCShareableContent::get().map_err(|error| failed("listing the applications", &error))
}

pub(super) fn sounds() -> Result<Vec<AppSound>, AppSoundError> {
    let content = shareable()?;
    // One batched call for every application and window.
    let snapshot =
        content.snapshot().ok_or_else(|| AppSoundError::Server("macOS listed more applications than fit".into()))?;
    let mut with_window = vec![false; snapshot.applications.len()];
    for window in &snapshot.windows {
        // Layer 0 holds documents' windows; menus, the Dock and overlays sit on other layers.
        if window.window_layer == 0
            && let Some(owner) = window.owning_app_index.and_then(|index| with_window.get_mut(index))
        {
            *owner = true;
        }
    }
    let own = std::process::id();
    let mut found: Vec<AppSound> = Vec::new();
    for (app, shown) in snapshot.applications.iter().zip(with_window) {
        let Ok(pid) = u32::try_from(app.process_id) else { continue };
        // This process is listed too: the facade recognises it and refuses it by name.
        if !(shown || pid == own) || found.iter().any(|sound| sound.index == pid) {
            continue;
        }
        let name = [app.application_name.trim(), app.bundle_identifier.trim()]
            .into_iter()
            .find(|name| !name.is_empty())
            .map_or_else(|| format!("process {pid}"), str::to_string);
        found.push(AppSound { index: pid, app: name, title: String::new(), pid: Some(pid), sink: 0 });
    }
    Ok(found)
}

/// The application's stream, stopped on drop.
pub(super) struct Recording {
    stream: SCStream,
}

impl Drop for Recording {
    fn drop(&mut self) {
        // An error means the stream had already stopped (it failed, or never ran): nothing to undo.
        let _ = self.stream.stop_capture();
    }
}

pub(super) fn record(sound: &AppSound, on_frame: OnFrame) -> Result<Recording, AppSoundError> {
    let pid = sound.pid.unwrap_or(sound.index);
    let content = shareable()?;
    let applications = content.applications();
    let app = applications
        .iter()
        .find(|app| u32::try_from(app.process_id()) == Ok(pid))
        .ok_or_else(|| AppSoundError::NotFound(sound.app.clone()))?;
    // A filter is always a display's; the sound it carries is the included applications' alone.
    let displays = content.displays();
    let display = displays.first().ok_or_else(|| {
        AppSoundError::Server("macOS lists no display, which ScreenCaptureKit needs for sound".into())
    })?;
    let recording = format!("recording {}", sound.app);
    let filter = SCContentFilter::create()
        .with_display(display)
        .with_including_applications(&[app], &[])
        .build()
        .map_err(|error| failed(&recording, &error))?;
    let configuration = SCStreamConfiguration::new()
        .with_captures_audio(true)
        .with_excludes_current_process_audio(true)
        .with_sample_rate(RATE)
        .with_channel_count(CHANNELS)
        .with_width(2)
        .with_height(2)
        .with_fps(1);
    // Before macOS 13 the setting does not exist and reads back false.
    if !configuration.captures_audio() {
        return Err(AppSoundError::Unsupported("ScreenCaptureKit records sound from macOS 13 on".into()));
    }
    let mut stream = SCStream::new(&filter, &configuration).map_err(|error| failed(&recording, &error))?;
    let handler = Sound {
        state: Mutex::new(SoundState { on_frame, framer: None, mono: Vec::with_capacity(RATE as usize / 10) }),
    };
    stream.add_output_handler(handler, SCStreamOutputType::Audio).map_err(|error| failed(&recording, &error))?;
    stream.start_capture().map_err(|error| failed(&recording, &error))?;
    Ok(Recording { stream })
}

/// The stream's audio handler, on ScreenCaptureKit's queue.
struct Sound {
    /// Only ScreenCaptureKit's audio queue locks it; the mutex is there because handlers must
    /// be `Sync`.
    state: Mutex<SoundState>,
}

struct SoundState {
    on_frame: OnFrame,
    /// The framer and the rate it was made for (made on the first block, remade if it changes).
    framer: Option<(u32, Framer)>,
    /// The block mixed down to mono, reused.
    mono: Vec<f32>,
}

impl SCStreamOutputTrait for Sound {
    fn did_output_sample_buffer(&self, sample: CMSampleBuffer, of_type: SCStreamOutputType) {
        if of_type != SCStreamOutputType::Audio {
            return;
        }
        let format = sample.format_description();
        if format.as_ref().is_some_and(|format| !format.audio_is_float() || format.audio_bits_per_channel() != Some(32))
        {
            return;
        }
        let rate = format.and_then(|format| format.audio_sample_rate()).map_or(RATE as u32, |rate| rate.round() as u32);
        let Ok(buffers) = sample.audio_buffer_list() else { return };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let SoundState { on_frame, framer, mono } = &mut *state;
        if framer.as_ref().is_none_or(|(made_for, _)| *made_for != rate) {
            // A rate the resampler cannot convert leaves nothing to send.
            let Ok(made) = Framer::new(rate, 1) else { return };
            *framer = Some((rate, made));
        }
        mix_down(&buffers, mono);
        if let Some((_, framer)) = framer {
            framer.push(mono, &mut |frame| on_frame(frame));
        }
    }
}

/// Averages every channel of `buffers` into `mono`: one buffer per channel (ScreenCaptureKit's
/// usual layout) or channels interleaved in one buffer, native-endian 32-bit floats.
fn mix_down(buffers: &AudioBufferList, mono: &mut Vec<f32>) {
    let channels_of = |buffer: &screencapturekit::cm::AudioBuffer| buffer.number_channels.max(1) as usize;
    let length = buffers.iter().map(|buffer| buffer.data().len() / (4 * channels_of(buffer))).min().unwrap_or(0);
    mono.clear();
    mono.resize(length, 0.0);
    let mut channels = 0;
    for buffer in buffers {
        let width = channels_of(buffer);
        channels += width;
        for (sum, group) in mono.iter_mut().zip(buffer.data().chunks_exact(4 * width)) {
            *sum += group.chunks_exact(4).map(float).sum::<f32>();
        }
    }
    if channels > 1 {
        let scale = 1.0 / channels as f32;
        mono.iter_mut().for_each(|value| *value *= scale);
    }
}

fn float(bytes: &[u8]) -> f32 {
    match *bytes {
        [a, b, c, d] => f32::from_ne_bytes([a, b, c, d]),
        _ => 0.0,
    }
}
