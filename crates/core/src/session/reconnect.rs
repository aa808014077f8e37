//! Joining the room again after the connection was lost for good (the engine gave up its own
//! reconnection), with a fresh token, in the same session: the sound devices, the mixer with its
//! volumes and mutes, the capture thread and the meter go on; the room, its follower and the
//! microphone's publication are new.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;

use super::event::{CallEncryption, Participant, SessionEvent, SessionState, can_publish_microphone, emit};
use super::publisher::{PublishCommand, Publisher, lock_track};
use super::{LEAVE_STEP_LIMIT, Session, SessionError};

impl Session {
    /// Connects to the room at `url` with `token` (a fresh grant for the same room) in place of
    /// the room that was lost, and publishes the microphone again where the new token allows
    /// it. Reports `StateChanged(Reconnecting)`, then as a join does: `StateChanged(Connected)`,
    /// `Joined`, `PublishPermission`. Call from a tokio runtime.
    ///
    /// Errors: connect failures ([`ffi::Error::Connect`]); the session stays as it was, and may
    /// be asked again.
    pub async fn reconnect(&mut self, url: &str, token: &str) -> Result<(), SessionError> {
        emit(&self.events, SessionEvent::StateChanged { state: SessionState::Reconnecting });
        let (room, room_events) = ffi::Room::connect(self.engine, url, token, &self.options).await?;
        self.follower.abort();
        let lost = std::mem::replace(&mut self.room, room);
        // The lost room is gone on the server already; this only releases the engine's side.
        if tokio::time::timeout(LEAVE_STEP_LIMIT, lost.disconnect()).await.is_err() {
            tracing::debug!("releasing the lost room timed out");
        }
        emit(&self.events, SessionEvent::StateChanged { state: SessionState::Connected });
        let participants: Vec<Participant> =
            self.room.remote_participants().into_iter().map(Participant::from_info).collect();
        let publishers =
            participants.iter().map(|participant| (participant.identity.clone(), participant.can_publish)).collect();
        emit(
            &self.events,
            SessionEvent::Joined {
                room: self.room.name().to_string(),
                identity: self.room.local_participant().identity().to_string(),
                participants,
                encryption: CallEncryption::with_key(self.options.e2ee_shared_key.as_deref()),
            },
        );
        let can_publish = can_publish_microphone(self.room.local_permission().as_ref());
        self.may_publish.store(can_publish, Ordering::Relaxed);
        emit(&self.events, SessionEvent::PublishPermission { can_publish });
        let publisher = match &mut self.microphone {
            Some(microphone) => {
                // The old publication went with the old room: nothing is sent until the new
                // one exists.
                microphone.publisher.abort();
                microphone.publishing.store(false, Ordering::Relaxed);
                lock_track(&microphone.track).publication = None;
                let (commands, receiver) = mpsc::unbounded_channel();
                let publisher = Publisher {
                    participant: self.room.local_participant().clone(),
                    source: Arc::clone(&microphone.source),
                    options: microphone.options.clone(),
                    track: Arc::clone(&microphone.track),
                    publishing: Arc::clone(&microphone.publishing),
                    muted: Arc::clone(&self.muted),
                    events: self.events.clone(),
                };
                microphone.publisher = tokio::spawn(publisher.run(receiver));
                if can_publish && commands.send(PublishCommand::Allowed(true)).is_err() {
                    tracing::debug!("the new publisher ended at once");
                }
                Some(commands)
            }
            None => None,
        };
        self.follower = self.follow(room_events, publishers, publisher);
        Ok(())
    }
}
