//! Rooms: connect, follow what happens, publish, disconnect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audio::LocalAudioTrack;
use crate::engine::{Engine, KeepAlive, OwnedHandle};
use crate::error::{ConnectFailure, Error};
use crate::event::{
    ConnectionQuality, ConnectionState, DisconnectReason, EncryptionState, ParticipantInfo, Permission, RoomEvent,
    attributes_map,
};
use crate::proto;
use crate::proto::ffi_event::Message as EventMessage;
use crate::proto::ffi_request::Message as RequestMessage;
use crate::proto::ffi_response::Message as ResponseMessage;
use crate::redact::redact;
use crate::track::{RemoteAudioTrack, RemoteVideoTrack, TrackKind, TrackPublication, TrackSource};

/// How to join a room. Its `Debug` does not show the encryption key.
#[derive(Clone)]
pub struct RoomOptions {
    /// Subscribe to every remote track as it is published.
    pub auto_subscribe: bool,
    /// Adaptive stream: the engine asks the server for video only as large as it is shown and
    /// pauses video nobody watches. Off by default: Parley tells the server itself
    /// ([`crate::Subscriptions::set_video_dimensions`], [`crate::Subscriptions::set_track_enabled`]).
    pub adaptive_stream: bool,
    pub dynacast: bool,
    /// End-to-end encryption with one key shared by every participant.
    pub e2ee_shared_key: Option<Vec<u8>>,
    /// Give up joining after this long.
    pub connect_timeout: Duration,
    /// How many times the engine retries the initial join.
    pub join_retries: u32,
}

impl std::fmt::Debug for RoomOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RoomOptions")
            .field("auto_subscribe", &self.auto_subscribe)
            .field("adaptive_stream", &self.adaptive_stream)
            .field("dynacast", &self.dynacast)
            .field("e2ee_shared_key", &self.e2ee_shared_key.as_ref().map(|_| "[redacted]"))
            .field("connect_timeout", &self.connect_timeout)
            .field("join_retries", &self.join_retries)
            .finish()
    }
}

impl Default for RoomOptions {
    fn default() -> RoomOptions {
        RoomOptions {
            auto_subscribe: true,
            adaptive_stream: false,
            dynacast: false,
            e2ee_shared_key: None,
            connect_timeout: Duration::from_secs(8),
            join_retries: 1,
        }
    }
}

/// Options for publishing a local track.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub source: TrackSource,
    /// Opus discontinuous transmission: send almost nothing during silence.
    pub dtx: bool,
    /// Redundant audio encoding: each packet also carries the previous one (loss resilience).
    pub red: bool,
    /// Target Opus bitrate in bits per second; `None` lets the engine choose.
    pub max_bitrate: Option<u64>,
}

impl Default for PublishOptions {
    fn default() -> PublishOptions {
        PublishOptions { source: TrackSource::Microphone, dtx: true, red: true, max_bitrate: None }
    }
}

/// A track this participant published.
#[derive(Debug)]
pub struct LocalTrackPublication {
    _handle: OwnedHandle,
    pub sid: String,
}

struct RemoteParticipant {
    _handle: OwnedHandle,
    info: ParticipantInfo,
    publications: HashMap<String, (OwnedHandle, TrackPublication)>,
    tracks: HashMap<String, Arc<OwnedHandle>>,
}

#[derive(Default)]
pub(crate) struct RoomState {
    remotes: HashMap<String, RemoteParticipant>,
    connection: Option<ConnectionState>,
    local_identity: String,
    /// What the server lets us do now: the token's grant, then whatever a moderator set.
    local_permission: Option<Permission>,
}

impl RoomState {
    /// The engine's handle of `identity`'s publication `sid`, while the room knows it.
    pub(crate) fn publication_handle(&self, identity: &str, sid: &str) -> Result<(&'static Engine, u64), Error> {
        self.remotes
            .get(identity)
            .and_then(|remote| remote.publications.get(sid))
            .map(|(handle, _)| (handle.engine(), handle.id()))
            .ok_or_else(|| Error::InvalidArgument(format!("{identity} has no published track {sid}")))
    }
}

/// A joined room. Dropping it without [`Room::disconnect`] still leaves the room (the engine
/// does so when the room handle is released).
pub struct Room {
    handle: Arc<OwnedHandle>,
    name: String,
    sid: Option<String>,
    local: LocalParticipant,
    state: Arc<Mutex<RoomState>>,
    task: tokio::task::JoinHandle<()>,
}

/// The participant we are in a room. Cheap to clone: clones act on the same participant (so a
/// task can publish while the room is used elsewhere) until the room is disconnected.
#[derive(Clone)]
pub struct LocalParticipant {
    handle: Arc<OwnedHandle>,
    info: ParticipantInfo,
    /// The room's model, for the permission the server gives us now.
    state: Arc<Mutex<RoomState>>,
}

impl Room {
    /// Joins the room at `url` (`ws://` or `wss://`) with `token`. Returns the room and its
    /// event stream. Call from a tokio runtime.
    ///
    /// Errors: [`Error::Connect`] with a classified reason and a redacted message; engine errors.
    pub async fn connect(
        engine: &'static Engine,
        url: &str,
        token: &str,
        options: &RoomOptions,
    ) -> Result<(Room, mpsc::UnboundedReceiver<RoomEvent>), Error> {
        validate_url(url)?;
        let request_options = proto::RoomOptions {
            auto_subscribe: Some(options.auto_subscribe),
            adaptive_stream: Some(options.adaptive_stream),
            dynacast: Some(options.dynacast),
            join_retries: Some(options.join_retries),
            connect_timeout_ms: Some(options.connect_timeout.as_millis() as u64),
            encryption: options.e2ee_shared_key.as_ref().map(|key| proto::E2eeOptions {
                encryption_type: proto::EncryptionType::Gcm as i32,
                // LiveKit's defaults (its JS and Python SDKs use the same), so that a shared
                // passphrase interoperates with web clients. A zero key-ring size leaves no slot
                // for the key: every frame then fails to decrypt.
                key_provider_options: proto::KeyProviderOptions {
                    shared_key: Some(key.clone()),
                    ratchet_salt: b"LKFrameEncryptionKey".to_vec(),
                    ratchet_window_size: 16,
                    failure_tolerance: -1,
                    key_ring_size: 16,
                    key_derivation_function: proto::KeyDerivationFunction::Pbkdf2 as i32,
                },
            }),
            // No ICE servers of our own: the server's list (none on a loopback dev server) is
            // all that is used, so nothing reaches for a public STUN server.
            rtc_config: Some(proto::RtcConfig { ice_servers: Vec::new(), ..Default::default() }),
            ..Default::default()
        };
        let (event, _) = engine
            .request_async(
                |async_id| {
                    RequestMessage::Connect(proto::ConnectRequest {
                        url: url.to_string(),
                        token: token.to_string(),
                        options: request_options,
                        request_async_id: Some(async_id),
                    })
                },
                None,
            )
            .await?;
        let EventMessage::Connect(callback) = event else {
            return Err(Error::Protocol("connect answered with another callback".into()));
        };
        let result = match callback.message {
            Some(proto::connect_callback::Message::Result(result)) => result,
            Some(proto::connect_callback::Message::Error(message)) => return Err(classify_connect_error(&message)),
            None => return Err(Error::Protocol("connect callback without result".into())),
        };
        let room_handle = Arc::new(engine.own(result.room.handle.id));
        let local_handle = Arc::new(engine.own(result.local_participant.handle.id));
        let local_info = ParticipantInfo::from(&result.local_participant.info);
        let mut state = RoomState {
            connection: Some(ConnectionState::Connected),
            local_identity: local_info.identity.clone(),
            local_permission: local_info.permission.clone(),
            ..Default::default()
        };
        for entry in result.participants {
            let info = ParticipantInfo::from(&entry.participant.info);
            let publications = entry
                .publications
                .into_iter()
                .map(|publication| {
                    let public = TrackPublication::from(&publication.info);
                    (public.sid.clone(), (engine.own(publication.handle.id), public))
                })
                .collect();
            state.remotes.insert(
                info.identity.clone(),
                RemoteParticipant {
                    _handle: engine.own(entry.participant.handle.id),
                    info,
                    publications,
                    tracks: HashMap::new(),
                },
            );
        }
        let state = Arc::new(Mutex::new(state));
        let local = LocalParticipant { handle: local_handle, info: local_info, state: Arc::clone(&state) };
        let (raw_sender, raw_events) = mpsc::unbounded_channel();
        engine.register_room(room_handle.id(), raw_sender);
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(follow_room(engine, raw_events, sender, Arc::clone(&state), room_handle.id()));
        // The engine holds room events back until we say we can take them (Python SDK does the same).
        match engine.request(RequestMessage::ReadyForRoomEvent(proto::ReadyForRoomEventRequest {
            room_handle: room_handle.id(),
        }))? {
            ResponseMessage::ReadyForRoomEvent(_) => {}
            _ => return Err(Error::Protocol("ready-for-room-event answered with another response".into())),
        }
        let room =
            Room { handle: room_handle, name: result.room.info.name, sid: result.room.info.sid, local, state, task };
        Ok((room, events))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    pub fn local_participant(&self) -> &LocalParticipant {
        &self.local
    }

    /// The remote participants present now.
    pub fn remote_participants(&self) -> Vec<ParticipantInfo> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.remotes.values().map(|remote| remote.info.clone()).collect()
    }

    /// The remote tracks published now, by participant identity.
    pub fn remote_publications(&self) -> HashMap<String, Vec<TrackPublication>> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .remotes
            .iter()
            .map(|(identity, remote)| {
                (identity.clone(), remote.publications.values().map(|(_, publication)| publication.clone()).collect())
            })
            .collect()
    }

    /// What the server lets us do now: the token's grant at first, then each change a moderator
    /// made (`UpdateParticipant`), as [`RoomEvent::ParticipantPermissionChanged`] reports it.
    /// `None` when the server sent none (LiveKit then grants everything). Any thread.
    pub fn local_permission(&self) -> Option<Permission> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.local_permission.clone()
    }

    /// The room's shared state, for [`crate::Subscriptions`].
    pub(crate) fn handle(&self) -> &Arc<OwnedHandle> {
        &self.handle
    }

    pub(crate) fn state(&self) -> Arc<Mutex<RoomState>> {
        Arc::clone(&self.state)
    }

    /// The last connection state the engine reported.
    pub fn connection_state(&self) -> ConnectionState {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.connection.unwrap_or(ConnectionState::Disconnected)
    }

    /// Leaves the room and waits for the engine to confirm.
    pub async fn disconnect(self) -> Result<(), Error> {
        let engine = self.handle.engine();
        let room_handle = self.handle.id();
        let (event, _) = engine
            .request_async(
                |async_id| {
                    RequestMessage::Disconnect(proto::DisconnectRequest {
                        room_handle,
                        request_async_id: Some(async_id),
                        reason: Some(proto::DisconnectReason::ClientInitiated as i32),
                    })
                },
                None,
            )
            .await?;
        match event {
            EventMessage::Disconnect(_) => Ok(()),
            _ => Err(Error::Protocol("disconnect answered with another callback".into())),
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.task.abort();
        self.handle.engine().close_route(self.handle.id());
    }
}

impl LocalParticipant {
    pub fn identity(&self) -> &str {
        &self.info.identity
    }

    pub fn info(&self) -> &ParticipantInfo {
        &self.info
    }

    /// Publishes a local audio track.
    pub async fn publish_audio_track(
        &self,
        track: &LocalAudioTrack,
        options: &PublishOptions,
    ) -> Result<LocalTrackPublication, Error> {
        let publish = proto::TrackPublishOptions {
            dtx: Some(options.dtx),
            red: Some(options.red),
            source: Some(options.source.to_proto() as i32),
            audio_encoding: options.max_bitrate.map(|max_bitrate| proto::AudioEncoding { max_bitrate }),
            ..Default::default()
        };
        self.publish(track.handle_id(), options.source, publish).await
    }

    /// Publishes the local track `track_handle` (audio or video) from `source` with `options`.
    ///
    /// Errors: [`Error::NotAllowed`] at once when the server's current grant leaves `source`
    /// out (the server would ignore the request, and the engine give up after 10 s).
    pub(crate) async fn publish(
        &self,
        track_handle: u64,
        source: TrackSource,
        options: proto::TrackPublishOptions,
    ) -> Result<LocalTrackPublication, Error> {
        let permission = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).local_permission.clone();
        if let Some(refusal) = permission.and_then(|permission| permission.refusal(source)) {
            return Err(Error::NotAllowed(refusal));
        }
        let engine = self.handle.engine();
        let participant = self.handle.id();
        let (event, _) = engine
            .request_async(
                |async_id| {
                    RequestMessage::PublishTrack(proto::PublishTrackRequest {
                        local_participant_handle: participant,
                        track_handle,
                        options,
                        request_async_id: Some(async_id),
                    })
                },
                None,
            )
            .await?;
        let EventMessage::PublishTrack(callback) = event else {
            return Err(Error::Protocol("publish answered with another callback".into()));
        };
        match callback.message {
            Some(proto::publish_track_callback::Message::Publication(publication)) => {
                Ok(LocalTrackPublication { _handle: engine.own(publication.handle.id), sid: publication.info.sid })
            }
            Some(proto::publish_track_callback::Message::Error(message)) => {
                Err(Error::Engine(format!("publishing failed: {}", redact(&message))))
            }
            None => Err(Error::Protocol("publish callback without result".into())),
        }
    }

    /// Stops publishing a track and ends it.
    pub async fn unpublish_track(&self, sid: &str) -> Result<(), Error> {
        self.unpublish(sid, true).await
    }

    /// Stops publishing a track but keeps it (and its source) usable, so that
    /// [`LocalParticipant::publish_audio_track`] can publish it again later. Also needed when
    /// the server withdrew the track (a revoked `canPublish`): the engine does not count that
    /// as an unpublication, and publishing the track again without this gives it two
    /// publications, which abort the engine when released. Call from a tokio runtime.
    ///
    /// Errors: engine errors (an unknown `sid`).
    pub async fn unpublish_track_keeping(&self, sid: &str) -> Result<(), Error> {
        self.unpublish(sid, false).await
    }

    async fn unpublish(&self, sid: &str, stop_on_unpublish: bool) -> Result<(), Error> {
        let engine = self.handle.engine();
        let participant = self.handle.id();
        let (event, _) = engine
            .request_async(
                |async_id| {
                    RequestMessage::UnpublishTrack(proto::UnpublishTrackRequest {
                        local_participant_handle: participant,
                        track_sid: sid.to_string(),
                        stop_on_unpublish,
                        request_async_id: Some(async_id),
                    })
                },
                None,
            )
            .await?;
        match event {
            EventMessage::UnpublishTrack(proto::UnpublishTrackCallback { error: Some(error), .. }) => {
                Err(Error::Engine(format!("unpublishing failed: {error}")))
            }
            EventMessage::UnpublishTrack(_) => Ok(()),
            _ => Err(Error::Protocol("unpublish answered with another callback".into())),
        }
    }

    /// Sets (or, with an empty value, removes) participant attributes others can see.
    pub async fn set_attributes(&self, attributes: &HashMap<String, String>) -> Result<(), Error> {
        let engine = self.handle.engine();
        let participant = self.handle.id();
        let entries: Vec<proto::AttributesEntry> = attributes
            .iter()
            .map(|(key, value)| proto::AttributesEntry { key: key.clone(), value: value.clone() })
            .collect();
        let (event, _) = engine
            .request_async(
                |async_id| {
                    RequestMessage::SetLocalAttributes(proto::SetLocalAttributesRequest {
                        local_participant_handle: participant,
                        attributes: entries,
                        request_async_id: Some(async_id),
                    })
                },
                None,
            )
            .await?;
        match event {
            EventMessage::SetLocalAttributes(proto::SetLocalAttributesCallback { error: Some(error), .. }) => {
                Err(Error::Engine(format!("setting attributes failed: {error}")))
            }
            EventMessage::SetLocalAttributes(_) => Ok(()),
            _ => Err(Error::Protocol("set-attributes answered with another callback".into())),
        }
    }

    /// Sends data to everyone (or to `destinations`) in the room.
    pub async fn publish_data(
        &self,
        data: Vec<u8>,
        reliable: bool,
        topic: Option<&str>,
        destinations: &[String],
    ) -> Result<(), Error> {
        let engine = self.handle.engine();
        let participant = self.handle.id();
        let (data_ptr, data_len) = (data.as_ptr() as u64, data.len() as u64);
        let (event, _) = engine
            .request_async(
                |async_id| {
                    #[allow(deprecated)] // reason: prost requires naming the deprecated field
                    RequestMessage::PublishData(proto::PublishDataRequest {
                        local_participant_handle: participant,
                        data_ptr,
                        data_len,
                        reliable,
                        destination_sids: Vec::new(),
                        topic: topic.map(str::to_string),
                        destination_identities: destinations.to_vec(),
                        request_async_id: Some(async_id),
                    })
                },
                Some(KeepAlive::Bytes(data)),
            )
            .await?;
        match event {
            EventMessage::PublishData(proto::PublishDataCallback { error: Some(error), .. }) => {
                Err(Error::Engine(format!("sending data failed: {error}")))
            }
            EventMessage::PublishData(_) => Ok(()),
            _ => Err(Error::Protocol("publish-data answered with another callback".into())),
        }
    }
}

/// Maps raw engine events to [`RoomEvent`]s and keeps the participant model (and the handles it
/// owns) current. Runs as a tokio task per room.
async fn follow_room(
    engine: &'static Engine,
    mut raw: mpsc::UnboundedReceiver<proto::RoomEvent>,
    sender: mpsc::UnboundedSender<RoomEvent>,
    state: Arc<Mutex<RoomState>>,
    room_handle: u64,
) {
    while let Some(event) = raw.recv().await {
        let Some(message) = event.message else { continue };
        let mapped = {
            let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            apply(engine, &mut state, message)
        };
        let last = matches!(mapped, Some(RoomEvent::Disconnected { .. }));
        if let Some(mapped) = mapped {
            // The receiver may be gone (front end shut down); the model is still kept current.
            if sender.send(mapped).is_err() {
                tracing::trace!("room event dropped: nobody listens");
            }
        }
        if last {
            break;
        }
    }
    engine.close_route(room_handle);
}

fn apply(engine: &'static Engine, state: &mut RoomState, message: proto::room_event::Message) -> Option<RoomEvent> {
    use proto::room_event::Message as M;
    Some(match message {
        M::ParticipantConnected(connected) => {
            let info = ParticipantInfo::from(&connected.info.info);
            state.remotes.insert(
                info.identity.clone(),
                RemoteParticipant {
                    _handle: engine.own(connected.info.handle.id),
                    info: info.clone(),
                    publications: HashMap::new(),
                    tracks: HashMap::new(),
                },
            );
            RoomEvent::ParticipantConnected(info)
        }
        M::ParticipantDisconnected(disconnected) => {
            state.remotes.remove(&disconnected.participant_identity);
            RoomEvent::ParticipantDisconnected {
                identity: disconnected.participant_identity,
                reason: DisconnectReason::from_proto(disconnected.disconnect_reason),
            }
        }
        M::TrackPublished(published) => {
            let publication = TrackPublication::from(&published.publication.info);
            let handle = engine.own(published.publication.handle.id);
            if let Some(remote) = state.remotes.get_mut(&published.participant_identity) {
                remote.publications.insert(publication.sid.clone(), (handle, publication.clone()));
            }
            RoomEvent::TrackPublished { identity: published.participant_identity, publication }
        }
        M::TrackUnpublished(unpublished) => {
            if let Some(remote) = state.remotes.get_mut(&unpublished.participant_identity) {
                remote.publications.remove(&unpublished.publication_sid);
            }
            RoomEvent::TrackUnpublished { identity: unpublished.participant_identity, sid: unpublished.publication_sid }
        }
        M::TrackSubscribed(subscribed) => {
            let handle = Arc::new(engine.own(subscribed.track.handle.id));
            let info = subscribed.track.info;
            if let Some(remote) = state.remotes.get_mut(&subscribed.participant_identity) {
                remote.tracks.insert(info.sid.clone(), Arc::clone(&handle));
            }
            // The publication (announced before any subscription) says how it was published.
            let publication = state
                .remotes
                .get(&subscribed.participant_identity)
                .and_then(|remote| remote.publications.get(&info.sid))
                .map(|(_, publication)| publication);
            let encrypted = publication.is_some_and(|publication| publication.encrypted);
            let source = publication.map_or(TrackSource::Unknown, |publication| publication.source);
            let identity = subscribed.participant_identity;
            match TrackKind::from_proto(info.kind) {
                TrackKind::Audio => RoomEvent::AudioTrackSubscribed {
                    identity: identity.clone(),
                    track: RemoteAudioTrack {
                        handle,
                        sid: info.sid,
                        name: info.name,
                        participant_identity: identity,
                        source,
                        encrypted,
                    },
                },
                TrackKind::Video => RoomEvent::VideoTrackSubscribed {
                    identity: identity.clone(),
                    track: RemoteVideoTrack {
                        handle,
                        sid: info.sid,
                        name: info.name,
                        participant_identity: identity,
                        source,
                        encrypted,
                    },
                },
                TrackKind::Unknown => RoomEvent::TrackSubscribed { identity, sid: info.sid },
            }
        }
        M::TrackUnsubscribed(unsubscribed) => {
            if let Some(remote) = state.remotes.get_mut(&unsubscribed.participant_identity) {
                remote.tracks.remove(&unsubscribed.track_sid);
            }
            RoomEvent::TrackUnsubscribed { identity: unsubscribed.participant_identity, sid: unsubscribed.track_sid }
        }
        M::TrackSubscriptionFailed(failed) => RoomEvent::TrackSubscriptionFailed {
            identity: failed.participant_identity,
            sid: failed.track_sid,
            error: failed.error,
        },
        M::TrackMuted(muted) => {
            set_muted(state, &muted.participant_identity, &muted.track_sid, true);
            RoomEvent::TrackMuted { identity: muted.participant_identity, sid: muted.track_sid }
        }
        M::TrackUnmuted(unmuted) => {
            set_muted(state, &unmuted.participant_identity, &unmuted.track_sid, false);
            RoomEvent::TrackUnmuted { identity: unmuted.participant_identity, sid: unmuted.track_sid }
        }
        M::LocalTrackPublished(published) => RoomEvent::LocalTrackPublished { sid: published.track_sid },
        M::LocalTrackUnpublished(unpublished) => RoomEvent::LocalTrackUnpublished { sid: unpublished.publication_sid },
        M::ActiveSpeakersChanged(speakers) => RoomEvent::ActiveSpeakersChanged(speakers.participant_identities),
        M::ConnectionQualityChanged(changed) => RoomEvent::ConnectionQualityChanged {
            identity: changed.participant_identity,
            quality: ConnectionQuality::from_proto(changed.quality),
        },
        M::ConnectionStateChanged(changed) => {
            let connection = ConnectionState::from_proto(changed.state);
            state.connection = Some(connection);
            RoomEvent::ConnectionStateChanged(connection)
        }
        M::Reconnecting(_) => {
            state.connection = Some(ConnectionState::Reconnecting);
            RoomEvent::Reconnecting
        }
        M::Reconnected(_) => {
            state.connection = Some(ConnectionState::Connected);
            RoomEvent::Reconnected
        }
        M::Disconnected(disconnected) => {
            state.connection = Some(ConnectionState::Disconnected);
            state.remotes.clear();
            RoomEvent::Disconnected { reason: DisconnectReason::from_proto(disconnected.reason) }
        }
        M::RoomMetadataChanged(changed) => RoomEvent::RoomMetadataChanged(changed.metadata),
        M::ParticipantMetadataChanged(changed) => {
            if let Some(remote) = state.remotes.get_mut(&changed.participant_identity) {
                remote.info.metadata = changed.metadata.clone();
            }
            RoomEvent::ParticipantMetadataChanged { identity: changed.participant_identity, metadata: changed.metadata }
        }
        M::ParticipantNameChanged(changed) => {
            if let Some(remote) = state.remotes.get_mut(&changed.participant_identity) {
                remote.info.name = changed.name.clone();
            }
            RoomEvent::ParticipantNameChanged { identity: changed.participant_identity, name: changed.name }
        }
        M::ParticipantAttributesChanged(changed) => {
            if let Some(remote) = state.remotes.get_mut(&changed.participant_identity) {
                remote.info.attributes = attributes_map(&changed.attributes);
            }
            RoomEvent::ParticipantAttributesChanged {
                identity: changed.participant_identity,
                changed: attributes_map(&changed.changed_attributes),
            }
        }
        M::ParticipantPermissionChanged(changed) => {
            let permission = changed.permission.as_ref().map(Permission::from);
            if changed.participant_identity == state.local_identity {
                state.local_permission = permission.clone();
            } else if let Some(remote) = state.remotes.get_mut(&changed.participant_identity) {
                remote.info.permission = permission.clone();
            }
            RoomEvent::ParticipantPermissionChanged { identity: changed.participant_identity, permission }
        }
        M::DataPacketReceived(packet) => match packet.value {
            Some(proto::data_packet_received::Value::User(user)) => {
                let owner = engine.own(user.data.handle.id);
                let data = crate::native::copy_bytes(user.data.data.data_ptr, user.data.data.data_len as usize);
                drop(owner);
                RoomEvent::DataReceived {
                    identity: packet.participant_identity,
                    topic: user.topic,
                    data,
                    reliable: packet.kind == proto::DataPacketKind::KindReliable as i32,
                }
            }
            _ => return None,
        },
        M::TokenRefreshed(_) => RoomEvent::TokenRefreshed,
        M::E2eeStateChanged(changed) => RoomEvent::EncryptionStateChanged {
            identity: changed.participant_identity,
            state: EncryptionState::from_proto(changed.state),
        },
        _ => return None,
    })
}

fn set_muted(state: &mut RoomState, identity: &str, sid: &str, muted: bool) {
    if let Some((_, publication)) = state.remotes.get_mut(identity).and_then(|remote| remote.publications.get_mut(sid))
    {
        publication.muted = muted;
    }
}

fn validate_url(url: &str) -> Result<(), Error> {
    let valid_scheme = ["ws://", "wss://", "http://", "https://"].iter().any(|scheme| url.starts_with(scheme));
    let host = url.split("://").nth(1).unwrap_or("");
    if !valid_scheme || host.is_empty() || host.starts_with('/') || url.contains(char::is_whitespace) {
        return Err(Error::Connect {
            kind: ConnectFailure::InvalidUrl,
            message: format!("invalid LiveKit URL {url:?}: expected ws://host:port or wss://host"),
        });
    }
    Ok(())
}

/// Turns the engine's connect error into a classified, redacted error.
fn classify_connect_error(message: &str) -> Error {
    let clean = redact(message).into_owned();
    let lower = clean.to_ascii_lowercase();
    let (kind, summary) = if lower.contains("401")
        || lower.contains("unauthorized")
        || lower.contains("invalid token")
        || lower.contains("token is expired")
        || lower.contains("invalid api key")
        || lower.contains("signature")
    {
        (ConnectFailure::Unauthorized, "the server refused the access token")
    } else if lower.contains("403") || lower.contains("forbidden") || lower.contains("permission") {
        (ConnectFailure::Forbidden, "the access token does not allow joining this room")
    } else if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("invalidcertificate") {
        // A TLS failure is "unreachable" to callers, but the user must learn why.
        (ConnectFailure::Unreachable, "the LiveKit server's certificate is not trusted")
    } else if lower.contains("connection refused")
        || lower.contains("dns")
        || lower.contains("resolve")
        || lower.contains("unreachable")
        || lower.contains("io error")
    {
        (ConnectFailure::Unreachable, "cannot reach the LiveKit server")
    } else if lower.contains("timeout") || lower.contains("timed out") {
        (ConnectFailure::Timeout, "timed out joining the room")
    } else {
        (ConnectFailure::Other, "could not join the room")
    };
    Error::Connect { kind, message: format!("{summary}: {clean}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_options_never_show_the_encryption_key() {
        let options = RoomOptions { e2ee_shared_key: Some(b"correct horse".to_vec()), ..RoomOptions::default() };
        let shown = format!("{options:?}");
        assert!(shown.contains("e2ee_shared_key: Some(\"[redacted]\")"), "{shown}");
        assert!(!shown.contains("99, 111"), "not even as bytes: {shown}");
    }

    #[test]
    fn malformed_urls_are_rejected_before_the_engine_sees_them() {
        for url in ["", "localhost:7880", "ws://", "ftp://host", "ws:// host", "ws:///path"] {
            let error = validate_url(url).expect_err(url);
            assert!(matches!(error, Error::Connect { kind: ConnectFailure::InvalidUrl, .. }), "{url}: {error}");
        }
        validate_url("ws://127.0.0.1:7880").expect("a loopback ws URL is valid");
        validate_url("wss://example.org").expect("a wss URL is valid");
    }

    #[test]
    fn connect_errors_are_classified_and_redacted() {
        let error = classify_connect_error("failed to connect: 401 Unauthorized ws://h/rtc?access_token=eyJa.b.c");
        let text = error.to_string();
        assert!(matches!(error, Error::Connect { kind: ConnectFailure::Unauthorized, .. }), "{text}");
        assert!(!text.contains("eyJ"), "the token must not appear: {text}");
        let refused = classify_connect_error("io error: Connection refused (os error 111)");
        assert!(matches!(refused, Error::Connect { kind: ConnectFailure::Unreachable, .. }));
    }
}
