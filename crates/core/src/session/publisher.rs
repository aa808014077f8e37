//! The publisher task: publishes the microphone when the server grants publishing and
//! withdraws it when the grant is revoked (a moderator's invite to speak, a move to the
//! audience, a hard mute), one command at a time, without reconnecting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::SessionError;
use super::event::{SessionEvent, StampedEvent, emit, unix_ns};

/// The microphone track and its publication (when published), shared by the session (mute,
/// leave) and the publisher task. Held only for short sections that never await.
pub(super) type SharedTrack = Arc<Mutex<MicrophoneTrack>>;

pub(super) struct MicrophoneTrack {
    pub(super) track: Arc<ffi::LocalAudioTrack>,
    pub(super) publication: Option<ffi::LocalTrackPublication>,
}

/// What the room follower tells the publisher task.
#[derive(Debug)]
pub(super) enum PublishCommand {
    /// The server now allows (or forbids) publishing the microphone.
    Allowed(bool),
    /// The engine reports this local publication gone.
    Unpublished(String),
}

pub(super) fn lock_track(shared: &Mutex<MicrophoneTrack>) -> std::sync::MutexGuard<'_, MicrophoneTrack> {
    // Plain values and handles: a panic elsewhere cannot leave them half-updated.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Publishes the microphone when the server grants publishing and withdraws it when the grant
/// is revoked, one command at a time (a tokio task owned by the session's microphone).
pub(super) struct Publisher {
    pub(super) participant: ffi::LocalParticipant,
    pub(super) source: Arc<ffi::AudioSource>,
    pub(super) options: ffi::PublishOptions,
    pub(super) track: SharedTrack,
    /// Tells the capture thread whether to send frames.
    pub(super) publishing: Arc<AtomicBool>,
    pub(super) muted: Arc<AtomicBool>,
    pub(super) events: mpsc::UnboundedSender<StampedEvent>,
}

impl Publisher {
    pub(super) async fn run(self, mut commands: mpsc::UnboundedReceiver<PublishCommand>) {
        while let Some(command) = commands.recv().await {
            match command {
                PublishCommand::Allowed(true) => self.publish().await,
                PublishCommand::Allowed(false) => self.withdraw().await,
                PublishCommand::Unpublished(sid) => self.forget(&sid),
            }
        }
    }

    /// Publishes the track unless it is published. The engine may have ended the track when the
    /// server unpublished it; a new track on the same source then takes its place.
    async fn publish(&self) {
        let track = {
            let shared = lock_track(&self.track);
            if shared.publication.is_some() {
                return;
            }
            Arc::clone(&shared.track)
        };
        let published = match self.participant.publish_audio_track(&track, &self.options).await {
            Ok(publication) => Ok(publication),
            Err(first) => {
                tracing::debug!(error = %first, "publishing the microphone track again failed; trying a new track");
                self.publish_new_track().await
            }
        };
        match published {
            Ok(publication) => {
                let sid = publication.sid.clone();
                lock_track(&self.track).publication = Some(publication);
                self.publishing.store(true, Ordering::Relaxed);
                emit(&self.events, SessionEvent::PublishingStarted { sid, unix_ns: unix_ns() });
            }
            Err(error) => emit(
                &self.events,
                SessionEvent::Warning {
                    message: format!("cannot publish the microphone after being allowed to: {error}"),
                },
            ),
        }
    }

    async fn publish_new_track(&self) -> Result<ffi::LocalTrackPublication, SessionError> {
        let track = Arc::new(ffi::LocalAudioTrack::new("microphone", &self.source)?);
        {
            // Under the lock: `Session::set_muted` mutes whichever track is current.
            let mut shared = lock_track(&self.track);
            track.set_muted(self.muted.load(Ordering::Relaxed))?;
            shared.track = Arc::clone(&track);
        }
        Ok(self.participant.publish_audio_track(&track, &self.options).await?)
    }

    /// Stops sending and unpublishes the track, keeping it for the next grant. The server has
    /// already withdrawn it, but the engine does not count that as an unpublication: without
    /// this, the next grant would give one track two publications, and the engine aborts the
    /// process when it releases them (seen with the pinned library).
    async fn withdraw(&self) {
        self.publishing.store(false, Ordering::Relaxed);
        let Some(publication) = lock_track(&self.track).publication.take() else { return };
        if let Err(error) = self.participant.unpublish_track_keeping(&publication.sid).await {
            tracing::debug!(%error, "unpublishing after the permission was revoked failed");
        }
        emit(&self.events, SessionEvent::PublishingStopped { sid: publication.sid });
    }

    /// The engine reports our track unpublished. After our own unpublication (leaving, a
    /// revocation) the publication is already gone; otherwise the engine dropped it on its own:
    /// stop sending, and a later grant publishes again.
    fn forget(&self, sid: &str) {
        let mut shared = lock_track(&self.track);
        if shared.publication.as_ref().is_some_and(|publication| publication.sid == sid) {
            shared.publication = None;
            self.publishing.store(false, Ordering::Relaxed);
            emit(&self.events, SessionEvent::PublishingStopped { sid: sid.to_string() });
        }
    }
}
