//! The room follower (a tokio task): turns the engine's room events into session events, keeps
//! track of who may publish, tells the publisher task when our own permission changes, and
//! wires each subscribed remote audio track into the mixer (its frames go straight from the
//! engine's event thread into the track's queue; a task of its own keeps the stream open and
//! reports its statistics), and a watched screen share into its sink ([`super::watch`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_audio::SAMPLE_RATE;
use parley_audio::cue::{Cue, CuePlayer};
use parley_audio::mixer::Mixer;
use parley_livekit_ffi as ffi;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::event::{MediaKind, Participant, SessionEvent, SessionState, StampedEvent, can_publish_microphone, emit};
use super::publisher::PublishCommand;
use super::watch::{ViewCommand, Viewing, Watcher};

/// A frame whose peak is below this (about −60 dBFS) counts as silence for `FirstAudio`.
const AUDIBLE_PEAK: i16 = 33;

/// What the room follower needs to follow our own permission to publish.
pub(super) struct LocalPublishing {
    pub(super) identity: String,
    /// The current permission, shared with [`Session::can_publish`].
    pub(super) may_publish: Arc<AtomicBool>,
    /// The publisher task, when there is a microphone to publish.
    pub(super) publisher: Option<mpsc::UnboundedSender<PublishCommand>>,
}

impl LocalPublishing {
    fn tell(&self, command: PublishCommand) {
        if let Some(publisher) = &self.publisher
            && publisher.send(command).is_err()
        {
            tracing::debug!("the publisher task has ended (leaving)");
        }
    }
}

/// How the follower plays what it hears.
#[derive(Default)]
pub(super) struct Playback {
    /// The mixer, when the session plays remote audio.
    pub(super) mixer: Option<Arc<Mutex<Mixer>>>,
    /// Join/leave cues.
    pub(super) cues: Option<CuePlayer>,
    /// How often each receive task reports its statistics.
    pub(super) report_stats: Option<Duration>,
    /// We joined with a key: tracks published without encryption are held back.
    pub(super) encrypted: bool,
    /// Whose screen shares to watch, and where their pictures go.
    pub(super) watchers: HashMap<String, Watcher>,
    /// What we receive of others' tracks: video nobody watches is unsubscribed, a watched share
    /// asks for the layer that fits its viewer.
    pub(super) subscriptions: ffi::Subscriptions,
}

/// Turns room events into session events and wires subscribed audio into the mixer.
///
/// `publishers` holds who may publish their microphone, as last reported: the server repeats
/// permission updates for rights we do not show (data, metadata), and those are not news.
pub(super) async fn run(
    mut room_events: mpsc::UnboundedReceiver<ffi::RoomEvent>,
    mut view_commands: mpsc::UnboundedReceiver<ViewCommand>,
    events: mpsc::UnboundedSender<StampedEvent>,
    playback: Playback,
    local: LocalPublishing,
    mut publishers: HashMap<String, bool>,
) {
    let Playback { mixer, cues, report_stats, encrypted, watchers, subscriptions } = playback;
    let cue = |cue: Cue| {
        if let Some(cues) = &cues {
            cues.play(cue);
        }
    };
    let mut streams: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut viewing = Viewing::new(watchers, subscriptions, events.clone());
    loop {
        let freeze_check = viewing.freeze_check_due();
        let event = tokio::select! {
            event = room_events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some(command) = view_commands.recv() => {
                viewing.apply(command);
                continue;
            }
            () = tokio::time::sleep_until(freeze_check.unwrap_or_else(Instant::now).into()), if freeze_check.is_some() => {
                viewing.revive_frozen();
                continue;
            }
        };
        let mapped = match event {
            ffi::RoomEvent::ParticipantConnected(info) => {
                cue(Cue::ParticipantJoined);
                let joined = Participant::from_info(info);
                publishers.insert(joined.identity.clone(), joined.can_publish);
                Some(SessionEvent::ParticipantJoined {
                    identity: joined.identity,
                    name: joined.name,
                    can_publish: joined.can_publish,
                })
            }
            ffi::RoomEvent::ParticipantDisconnected { identity, reason } => {
                cue(Cue::ParticipantLeft);
                publishers.remove(&identity);
                Some(SessionEvent::ParticipantLeft { identity, reason: reason.code().to_string() })
            }
            ffi::RoomEvent::AudioTrackSubscribed { identity, track }
                if track.source == ffi::TrackSource::ScreenShareAudio
                    && !viewing.sound_subscribed(&identity, &track.sid) =>
            {
                None
            }
            ffi::RoomEvent::AudioTrackSubscribed { identity, track } => {
                if encrypted && !track.encrypted {
                    // livekit-client plays such audio without a word; a keyless (or a
                    // malicious) participant is not heard in an encrypted call unless the user
                    // chooses to.
                    if let Some(mixer) = &mixer {
                        mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).hold_back_unencrypted(&identity);
                    }
                    emit(
                        &events,
                        SessionEvent::ParticipantEncryption {
                            identity: identity.clone(),
                            state: "not_encrypted".into(),
                        },
                    );
                }
                if let Some(mixer) = &mixer {
                    mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).add_source(&track.sid, &identity);
                    let (ended_sender, ended) = oneshot::channel();
                    let sink = feed(&track, Arc::clone(mixer), events.clone(), ended_sender);
                    match ffi::AudioStream::new(&track, SAMPLE_RATE, 1, sink) {
                        Ok(stream) => {
                            let task = tokio::spawn(receive(
                                stream,
                                ended,
                                track.clone(),
                                Arc::clone(mixer),
                                events.clone(),
                                report_stats,
                            ));
                            if let Some(previous) = streams.insert(track.sid.clone(), task) {
                                previous.abort();
                            }
                        }
                        Err(error) => {
                            mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_source(&track.sid);
                            emit(
                                &events,
                                SessionEvent::Warning { message: format!("cannot play {identity}'s audio: {error}") },
                            )
                        }
                    }
                }
                Some(SessionEvent::TrackSubscribed { identity, sid: track.sid, kind: MediaKind::Audio })
            }
            ffi::RoomEvent::VideoTrackSubscribed { identity, track } => Some(viewing.subscribed(identity, track)),
            ffi::RoomEvent::TrackUnsubscribed { sid, .. } if viewing.unsubscribed(&sid) => None,
            ffi::RoomEvent::TrackUnpublished { sid, .. } => viewing.unpublished(&sid),
            ffi::RoomEvent::TrackUnsubscribed { identity, sid } => {
                if let Some(task) = streams.remove(&sid) {
                    task.abort();
                }
                if let Some(mixer) = &mixer {
                    mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_source(&sid);
                }
                Some(SessionEvent::TrackUnsubscribed { identity, sid })
            }
            ffi::RoomEvent::ParticipantPermissionChanged { identity, permission: Some(permission) }
                if identity == local.identity =>
            {
                let allowed = permission.allows_publishing(ffi::TrackSource::Microphone);
                // The server also reports changes of rights we do not follow (data, metadata).
                (local.may_publish.swap(allowed, Ordering::Relaxed) != allowed).then(|| {
                    local.tell(PublishCommand::Allowed(allowed));
                    SessionEvent::PublishPermission { can_publish: allowed }
                })
            }
            ffi::RoomEvent::ParticipantPermissionChanged { identity, permission } => {
                let allowed = can_publish_microphone(permission.as_ref());
                (publishers.insert(identity.clone(), allowed) != Some(allowed))
                    .then_some(SessionEvent::ParticipantPermission { identity, can_publish: allowed })
            }
            ffi::RoomEvent::LocalTrackPublished { .. } => {
                viewing.published_locally();
                None
            }
            ffi::RoomEvent::LocalTrackUnpublished { sid } => {
                local.tell(PublishCommand::Unpublished(sid));
                None
            }
            ffi::RoomEvent::EncryptionStateChanged { identity, state } => {
                Some(SessionEvent::ParticipantEncryption { identity, state: state.code().to_string() })
            }
            ffi::RoomEvent::TrackMuted { identity, sid } => Some(SessionEvent::TrackMuted { identity, sid }),
            ffi::RoomEvent::TrackUnmuted { identity, sid } => Some(SessionEvent::TrackUnmuted { identity, sid }),
            ffi::RoomEvent::ActiveSpeakersChanged(identities) => Some(SessionEvent::ActiveSpeakers { identities }),
            ffi::RoomEvent::ConnectionQualityChanged { identity, quality } => {
                Some(SessionEvent::ConnectionQuality { identity, quality: format!("{quality:?}").to_lowercase() })
            }
            ffi::RoomEvent::Reconnecting => {
                emit(&events, SessionEvent::StateChanged { state: SessionState::Reconnecting });
                Some(SessionEvent::Reconnecting)
            }
            ffi::RoomEvent::Reconnected => {
                emit(&events, SessionEvent::StateChanged { state: SessionState::Connected });
                Some(SessionEvent::Reconnected)
            }
            ffi::RoomEvent::Disconnected { reason } => {
                // The room is gone: so are its tracks' queues in the mixer (a reconnection
                // subscribes to new tracks).
                viewing.disconnected();
                for (sid, task) in streams.drain() {
                    task.abort();
                    if let Some(mixer) = &mixer {
                        mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_source(&sid);
                    }
                }
                Some(SessionEvent::Disconnected {
                    reason: reason.describe().to_string(),
                    code: reason.code().to_string(),
                    connection_lost: reason.is_connection_lost(),
                })
            }
            _ => None,
        };
        if let Some(mapped) = mapped {
            emit(&events, mapped);
        }
    }
}

/// The sink of one remote track's stream: each frame into the track's queue in the mixer, and
/// `FirstAudio` once it is heard. It runs on the engine's event thread (see
/// [`ffi::AudioSink`]): a copy into the queue under the mixer's lock, nothing that waits longer.
fn feed(
    track: &ffi::RemoteAudioTrack,
    mixer: Arc<Mutex<Mixer>>,
    events: mpsc::UnboundedSender<StampedEvent>,
    ended: oneshot::Sender<()>,
) -> impl FnMut(ffi::StreamFrame<'_>) + Send + 'static {
    let (sid, identity) = (track.sid.clone(), track.participant_identity.clone());
    let mut heard = false;
    let mut ended = Some(ended);
    move |frame| match frame {
        ffi::StreamFrame::Audio { samples, .. } => {
            if !heard && samples.iter().any(|sample| sample.unsigned_abs() > AUDIBLE_PEAK as u16) {
                heard = true;
                emit(&events, SessionEvent::FirstAudio { identity: identity.clone(), sid: sid.clone() });
            }
            mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(&sid, samples);
        }
        ffi::StreamFrame::Ended => {
            if let Some(ended) = ended.take() {
                // The receive task may be gone already; then nobody needs telling.
                let _ = ended.send(());
            }
        }
    }
}

/// Keeps one remote track's stream open until the track ends (its frames go straight to the
/// mixer, see [`feed`]); every `report_stats`, reports how the track fares in the receiver.
async fn receive(
    stream: ffi::AudioStream,
    mut ended: oneshot::Receiver<()>,
    track: ffi::RemoteAudioTrack,
    mixer: Arc<Mutex<Mixer>>,
    events: mpsc::UnboundedSender<StampedEvent>,
    report_stats: Option<Duration>,
) {
    let (sid, identity) = (track.sid.clone(), track.participant_identity.clone());
    // Without statistics the timer never fires: one day is as good as never for a call.
    let mut ticker = tokio::time::interval(report_stats.unwrap_or(Duration::from_secs(86_400)));
    ticker.tick().await;
    let mut previous = (ffi::ReceiveStats::default(), parley_audio::mixer::SourceStats::default());
    loop {
        tokio::select! {
            // The end of the track, or the stream gone with its sink: either way, done.
            _ = &mut ended => break,
            _ = ticker.tick(), if report_stats.is_some() => {
                let Ok(Some(now)) = track.receive_stats().await else { continue };
                let interval = now.since(&previous.0);
                let (queue, output_glitches) = {
                    let mixer = mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    (mixer.source_stats(&sid).unwrap_or_default(), mixer.output_glitches())
                };
                let mixer_underruns = queue.underruns.saturating_sub(previous.1.underruns);
                let mixer_queue_ms = queue.mean_queue_ms_since(&previous.1);
                previous = (now, queue);
                emit(
                    &events,
                    SessionEvent::ReceiveStats {
                        identity: identity.clone(),
                        sid: sid.clone(),
                        jitter_buffer_ms: interval.jitter_buffer_ms,
                        jitter_buffer_target_ms: interval.jitter_buffer_target_ms,
                        concealed_percent: interval.concealed_percent,
                        packets_lost: interval.packets_lost,
                        mixer_queue_ms,
                        mixer_underruns,
                        output_glitches,
                    },
                );
            }
        }
    }
    drop(stream);
    mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_source(&sid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(identity: &str, can_publish: bool) -> ffi::ParticipantInfo {
        ffi::ParticipantInfo {
            sid: format!("PA_{identity}"),
            identity: identity.to_string(),
            name: identity.to_uppercase(),
            metadata: String::new(),
            attributes: HashMap::new(),
            permission: Some(permission(can_publish)),
        }
    }

    fn permission(can_publish: bool) -> ffi::Permission {
        ffi::Permission {
            can_subscribe: true,
            can_publish,
            can_publish_data: false,
            can_publish_sources: vec![ffi::TrackSource::Microphone],
        }
    }

    /// Feeds `room_events` through the follower and returns what it reported, and what it told
    /// the publisher task.
    async fn follow(room_events: Vec<ffi::RoomEvent>, publishers: &[(&str, bool)]) -> (Vec<SessionEvent>, Vec<String>) {
        let (room_sender, room_receiver) = mpsc::unbounded_channel();
        let (sender, mut events) = mpsc::unbounded_channel();
        let (publisher, mut commands) = mpsc::unbounded_channel();
        let local = LocalPublishing {
            identity: "me".to_string(),
            may_publish: Arc::new(AtomicBool::new(false)),
            publisher: Some(publisher),
        };
        let known = publishers.iter().map(|(identity, allowed)| (identity.to_string(), *allowed)).collect();
        for event in room_events {
            room_sender.send(event).expect("the follower listens");
        }
        drop(room_sender);
        let playback = Playback { encrypted: true, ..Playback::default() };
        let (_view, view_commands) = mpsc::unbounded_channel();
        run(room_receiver, view_commands, sender, playback, local, known).await;
        let reported = std::iter::from_fn(|| events.try_recv().ok()).map(|stamped| stamped.event).collect();
        let told = std::iter::from_fn(|| commands.try_recv().ok()).map(|command| format!("{command:?}")).collect();
        (reported, told)
    }

    #[tokio::test]
    async fn room_events_become_session_events_in_order() {
        let (reported, _) = follow(
            vec![
                ffi::RoomEvent::ParticipantConnected(info("bob", true)),
                ffi::RoomEvent::TrackMuted { identity: "bob".into(), sid: "TR_b".into() },
                ffi::RoomEvent::ActiveSpeakersChanged(vec!["bob".into()]),
                ffi::RoomEvent::ConnectionQualityChanged {
                    identity: "bob".into(),
                    quality: ffi::ConnectionQuality::Poor,
                },
                ffi::RoomEvent::Reconnecting,
                ffi::RoomEvent::Reconnected,
                ffi::RoomEvent::ParticipantDisconnected {
                    identity: "bob".into(),
                    reason: ffi::DisconnectReason::ParticipantRemoved,
                },
                ffi::RoomEvent::RoomMetadataChanged("ignored".into()),
                ffi::RoomEvent::Disconnected { reason: ffi::DisconnectReason::ServerShutdown },
            ],
            &[],
        )
        .await;
        assert_eq!(
            reported,
            vec![
                SessionEvent::ParticipantJoined { identity: "bob".into(), name: "BOB".into(), can_publish: true },
                SessionEvent::TrackMuted { identity: "bob".into(), sid: "TR_b".into() },
                SessionEvent::ActiveSpeakers { identities: vec!["bob".into()] },
                SessionEvent::ConnectionQuality { identity: "bob".into(), quality: "poor".into() },
                SessionEvent::StateChanged { state: SessionState::Reconnecting },
                SessionEvent::Reconnecting,
                SessionEvent::StateChanged { state: SessionState::Connected },
                SessionEvent::Reconnected,
                SessionEvent::ParticipantLeft { identity: "bob".into(), reason: "participant_removed".into() },
                SessionEvent::Disconnected {
                    reason: "the server shut down".into(),
                    code: "server_shutdown".into(),
                    connection_lost: true
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_permission_change_is_news_only_when_publishing_changes() {
        let (reported, told) = follow(
            vec![
                // Others: bob known as a speaker; a repeat is not news, a hard mute is.
                ffi::RoomEvent::ParticipantPermissionChanged {
                    identity: "bob".into(),
                    permission: Some(permission(true)),
                },
                ffi::RoomEvent::ParticipantPermissionChanged {
                    identity: "bob".into(),
                    permission: Some(permission(false)),
                },
                // Us: invited to speak, the same grant again (data rights changed), then moved back.
                ffi::RoomEvent::ParticipantPermissionChanged {
                    identity: "me".into(),
                    permission: Some(permission(true)),
                },
                ffi::RoomEvent::ParticipantPermissionChanged {
                    identity: "me".into(),
                    permission: Some(permission(true)),
                },
                ffi::RoomEvent::ParticipantPermissionChanged {
                    identity: "me".into(),
                    permission: Some(permission(false)),
                },
                ffi::RoomEvent::LocalTrackUnpublished { sid: "TR_mine".into() },
            ],
            &[("bob", true)],
        )
        .await;
        assert_eq!(
            reported,
            vec![
                SessionEvent::ParticipantPermission { identity: "bob".into(), can_publish: false },
                SessionEvent::PublishPermission { can_publish: true },
                SessionEvent::PublishPermission { can_publish: false },
            ]
        );
        assert_eq!(
            told,
            ["Allowed(true)", "Allowed(false)", "Unpublished(\"TR_mine\")"],
            "the publisher is told each change"
        );
    }
}
