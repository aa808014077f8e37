//! A screen share's sound: one application's sound ([`parley_audio::app_sound`]: a PulseAudio
//! sink input, WASAPI process loopback, ScreenCaptureKit) published beside the picture as the
//! `screen_share_audio` track.
//! Never Parley's own playout: this process's sound cannot be chosen, so
//! the room never hears itself back.
//!
//! The recording's thread hands 10 ms frames to a bounded queue (a stalled engine
//! drops frames rather than grow it); a task feeds them to the engine's audio source and
//! checks every [`GONE_CHECK`] that the application still plays. When it stopped (the player
//! quit), the sound is unpublished with a warning and the picture goes on.

use std::time::Duration;

use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::event::{SessionEvent, StampedEvent, emit};

/// How often the task checks that the shared application still plays.
const GONE_CHECK: Duration = Duration::from_secs(2);
/// Frames queued between the sound server and the engine (half a second).
const QUEUE_FRAMES: usize = 50;
/// Opus for program sound (music, a game), not speech: a higher rate, no DTX or RED.
const MAX_BITRATE: u64 = 96_000;

/// The published sound of a share.
pub(super) struct ShareAudio {
    pub(super) sid: String,
    task: tokio::task::JoinHandle<()>,
}

impl ShareAudio {
    /// Stops the feed (the recording ends with the task) and returns the publication to
    /// unpublish, unless the task already did (the application stopped).
    pub(super) fn stop(&self) -> Option<String> {
        let finished = self.task.is_finished();
        self.task.abort();
        (!finished).then(|| self.sid.clone())
    }
}

/// Publishes the sound of the application `pattern` names (see
/// [`parley_audio::app_sound::choose`]); returns it with the application's name. Call from a
/// tokio runtime.
pub(super) async fn start(
    engine: &'static ffi::Engine,
    participant: &ffi::LocalParticipant,
    pattern: &str,
    events: mpsc::UnboundedSender<StampedEvent>,
) -> Result<(ShareAudio, String), String> {
    use parley_audio::app_sound;
    let wanted = pattern.to_string();
    let sound = tokio::task::spawn_blocking(move || app_sound::find(&wanted))
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;
    let source = ffi::AudioSource::new(engine, parley_audio::SAMPLE_RATE, 1).map_err(|error| error.to_string())?;
    let track = ffi::LocalAudioTrack::new("screen-audio", &source).map_err(|error| error.to_string())?;
    let options = ffi::PublishOptions {
        source: ffi::TrackSource::ScreenShareAudio,
        dtx: false,
        red: false,
        max_bitrate: Some(MAX_BITRATE),
    };
    let publication = participant.publish_audio_track(&track, &options).await.map_err(|error| error.to_string())?;
    let (sender, mut frames) = mpsc::channel::<Vec<i16>>(QUEUE_FRAMES);
    let recorded = sound.clone();
    let recording = tokio::task::spawn_blocking(move || {
        app_sound::record(&recorded, move |frame| {
            // Full: the engine is behind; this frame is dropped rather than queued.
            let _ = sender.try_send(frame.to_vec());
        })
    })
    .await
    .map_err(|error| error.to_string())?;
    let recording = match recording {
        Ok(recording) => recording,
        Err(error) => {
            if let Err(unpublished) = participant.unpublish_track(&publication.sid).await {
                tracing::debug!(%unpublished, "unpublishing a sound that could not be recorded");
            }
            return Err(error.to_string());
        }
    };
    let name = sound.to_string();
    let (participant, sid) = (participant.clone(), publication.sid.clone());
    let published = sid.clone();
    let app = name.clone();
    let task = tokio::spawn(async move {
        // Both live as long as the feed: the publication's track and the recording.
        let _kept = (track, publication, recording);
        let mut check = tokio::time::interval(GONE_CHECK);
        check.tick().await;
        loop {
            tokio::select! {
                frame = frames.recv() => {
                    let Some(frame) = frame else { break };
                    if let Err(error) = source.capture_frame(frame).await {
                        tracing::debug!(%error, "a frame of the shared sound was not sent");
                    }
                }
                _ = check.tick() => {
                    let index = sound.index;
                    let plays = tokio::task::spawn_blocking(move || app_sound::exists(index)).await;
                    if matches!(plays, Ok(Ok(false))) {
                        break;
                    }
                }
            }
        }
        emit(&events, SessionEvent::ShareSoundEnded { app });
        if let Err(error) = participant.unpublish_track(&sid).await {
            tracing::debug!(%error, "unpublishing the shared sound");
        }
    });
    Ok((ShareAudio { sid: published, task }, name))
}
