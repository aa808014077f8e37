//! Parley's own types for what happens in a room; no protobuf type leaves this crate.

use std::collections::HashMap;

use crate::proto;
use crate::track::{RemoteAudioTrack, RemoteVideoTrack, TrackPublication, TrackSource};

/// A participant as the room sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub sid: String,
    pub identity: String,
    pub name: String,
    pub metadata: String,
    pub attributes: HashMap<String, String>,
    pub permission: Option<Permission>,
}

/// What a participant may do, as granted by its token or a moderator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub can_subscribe: bool,
    pub can_publish: bool,
    pub can_publish_data: bool,
    /// The sources it may publish; empty means every source.
    pub can_publish_sources: Vec<TrackSource>,
}

impl Permission {
    /// Whether a track from `source` may be published: LiveKit's own rule (`can_publish`, and
    /// `source` listed unless the list is empty).
    pub fn allows_publishing(&self, source: TrackSource) -> bool {
        self.can_publish && (self.can_publish_sources.is_empty() || self.can_publish_sources.contains(&source))
    }

    /// Why a track from `source` may not be published, for people; `None` when it may.
    pub(crate) fn refusal(&self, source: TrackSource) -> Option<String> {
        if self.allows_publishing(source) {
            return None;
        }
        if !self.can_publish {
            return Some("the server does not allow this participant to publish".into());
        }
        let allowed: Vec<&str> = self.can_publish_sources.iter().map(|source| source.code()).collect();
        Some(format!(
            "the access token does not allow publishing {} (it allows: {})",
            source.code(),
            allowed.join(", ")
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionQuality {
    Excellent,
    Good,
    Poor,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    Reconnecting,
    Disconnected,
}

/// How end-to-end encryption fares for one participant's media, as the engine's frame
/// cryptors report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionState {
    New,
    Ok,
    EncryptionFailed,
    DecryptionFailed,
    MissingKey,
    KeyRatcheted,
    InternalError,
}

impl EncryptionState {
    pub(crate) fn from_proto(state: i32) -> EncryptionState {
        match proto::EncryptionState::try_from(state) {
            Ok(proto::EncryptionState::New) => EncryptionState::New,
            Ok(proto::EncryptionState::Ok) => EncryptionState::Ok,
            Ok(proto::EncryptionState::EncryptionFailed) => EncryptionState::EncryptionFailed,
            Ok(proto::EncryptionState::DecryptionFailed) => EncryptionState::DecryptionFailed,
            Ok(proto::EncryptionState::MissingKey) => EncryptionState::MissingKey,
            Ok(proto::EncryptionState::KeyRatcheted) => EncryptionState::KeyRatcheted,
            _ => EncryptionState::InternalError,
        }
    }

    /// A stable snake_case name (JSON output, the UI).
    pub fn code(self) -> &'static str {
        match self {
            EncryptionState::New => "new",
            EncryptionState::Ok => "ok",
            EncryptionState::EncryptionFailed => "encryption_failed",
            EncryptionState::DecryptionFailed => "decryption_failed",
            EncryptionState::MissingKey => "missing_key",
            EncryptionState::KeyRatcheted => "key_ratcheted",
            EncryptionState::InternalError => "internal_error",
        }
    }
}

/// Why a participant (or we) left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    ClientInitiated,
    DuplicateIdentity,
    ServerShutdown,
    ParticipantRemoved,
    RoomDeleted,
    StateMismatch,
    JoinFailure,
    Migration,
    SignalClose,
    RoomClosed,
    ConnectionTimeout,
    MediaFailure,
    Unknown,
}

impl DisconnectReason {
    /// A short sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            DisconnectReason::ClientInitiated => "left the room",
            DisconnectReason::DuplicateIdentity => "the same identity joined from elsewhere",
            DisconnectReason::ServerShutdown => "the server shut down",
            DisconnectReason::ParticipantRemoved => "removed from the room by a moderator",
            DisconnectReason::RoomDeleted => "the room was deleted",
            DisconnectReason::StateMismatch => "the server lost track of this session",
            DisconnectReason::JoinFailure => "joining failed",
            DisconnectReason::Migration => "moved to another server",
            DisconnectReason::SignalClose => "the connection to the server closed",
            DisconnectReason::RoomClosed => "the room was closed",
            DisconnectReason::ConnectionTimeout => "the connection timed out",
            DisconnectReason::MediaFailure => "the media connection failed",
            DisconnectReason::Unknown => "the connection to the server was lost",
        }
    }

    /// Whether the connection was lost (the server or the network went away and the engine gave
    /// up reconnecting), rather than the room ending for us (we left, were removed or replaced,
    /// or the room was deleted or closed): only a lost connection is worth joining again.
    pub fn is_connection_lost(self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientInitiated
                | DisconnectReason::DuplicateIdentity
                | DisconnectReason::ParticipantRemoved
                | DisconnectReason::RoomDeleted
                | DisconnectReason::RoomClosed
        )
    }

    /// A stable snake_case name (JSON output, logs).
    pub fn code(self) -> &'static str {
        match self {
            DisconnectReason::ClientInitiated => "client_initiated",
            DisconnectReason::DuplicateIdentity => "duplicate_identity",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::ParticipantRemoved => "participant_removed",
            DisconnectReason::RoomDeleted => "room_deleted",
            DisconnectReason::StateMismatch => "state_mismatch",
            DisconnectReason::JoinFailure => "join_failure",
            DisconnectReason::Migration => "migration",
            DisconnectReason::SignalClose => "signal_close",
            DisconnectReason::RoomClosed => "room_closed",
            DisconnectReason::ConnectionTimeout => "connection_timeout",
            DisconnectReason::MediaFailure => "media_failure",
            DisconnectReason::Unknown => "unknown",
        }
    }
}

/// Everything a [`crate::Room`] reports, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoomEvent {
    ParticipantConnected(ParticipantInfo),
    ParticipantDisconnected {
        identity: String,
        reason: DisconnectReason,
    },
    TrackPublished {
        identity: String,
        publication: TrackPublication,
    },
    TrackUnpublished {
        identity: String,
        sid: String,
    },
    /// A remote audio track is ready to be played: open an [`crate::AudioStream`] on it.
    AudioTrackSubscribed {
        identity: String,
        track: RemoteAudioTrack,
    },
    /// A remote video track (a screen share or a camera: see its `source`) is ready to be
    /// watched: open a [`crate::VideoStream`] on it.
    VideoTrackSubscribed {
        identity: String,
        track: RemoteVideoTrack,
    },
    /// A remote track of a kind the engine did not name was subscribed.
    TrackSubscribed {
        identity: String,
        sid: String,
    },
    TrackUnsubscribed {
        identity: String,
        sid: String,
    },
    TrackSubscriptionFailed {
        identity: String,
        sid: String,
        error: String,
    },
    TrackMuted {
        identity: String,
        sid: String,
    },
    TrackUnmuted {
        identity: String,
        sid: String,
    },
    LocalTrackPublished {
        sid: String,
    },
    LocalTrackUnpublished {
        sid: String,
    },
    /// Identities currently speaking, loudest first (the local participant included).
    ActiveSpeakersChanged(Vec<String>),
    ConnectionQualityChanged {
        identity: String,
        quality: ConnectionQuality,
    },
    ConnectionStateChanged(ConnectionState),
    Reconnecting,
    Reconnected,
    /// End-to-end encryption changed state for a participant's media (ours included).
    EncryptionStateChanged {
        identity: String,
        state: EncryptionState,
    },
    /// The room is gone for us; no further events follow.
    Disconnected {
        reason: DisconnectReason,
    },
    RoomMetadataChanged(String),
    ParticipantMetadataChanged {
        identity: String,
        metadata: String,
    },
    ParticipantNameChanged {
        identity: String,
        name: String,
    },
    /// `changed` holds only the keys that changed; an empty value means the key was removed.
    ParticipantAttributesChanged {
        identity: String,
        changed: HashMap<String, String>,
    },
    ParticipantPermissionChanged {
        identity: String,
        permission: Option<Permission>,
    },
    DataReceived {
        identity: String,
        topic: Option<String>,
        data: Vec<u8>,
        reliable: bool,
    },
    /// The server issued a fresh token for this session (used on reconnection).
    TokenRefreshed,
}

impl From<&proto::ParticipantInfo> for ParticipantInfo {
    fn from(info: &proto::ParticipantInfo) -> ParticipantInfo {
        ParticipantInfo {
            sid: info.sid.clone(),
            identity: info.identity.clone(),
            name: info.name.clone(),
            metadata: info.metadata.clone(),
            attributes: info.attributes.clone(),
            permission: info.permission.as_ref().map(Permission::from),
        }
    }
}

impl From<&proto::ParticipantPermission> for Permission {
    fn from(permission: &proto::ParticipantPermission) -> Permission {
        Permission {
            can_subscribe: permission.can_subscribe,
            can_publish: permission.can_publish,
            can_publish_data: permission.can_publish_data,
            can_publish_sources: permission
                .can_publish_sources
                .iter()
                .map(|source| TrackSource::from_proto(*source))
                .collect(),
        }
    }
}

impl ConnectionQuality {
    pub(crate) fn from_proto(quality: i32) -> ConnectionQuality {
        match proto::ConnectionQuality::try_from(quality) {
            Ok(proto::ConnectionQuality::QualityExcellent) => ConnectionQuality::Excellent,
            Ok(proto::ConnectionQuality::QualityGood) => ConnectionQuality::Good,
            Ok(proto::ConnectionQuality::QualityPoor) => ConnectionQuality::Poor,
            _ => ConnectionQuality::Lost,
        }
    }
}

impl ConnectionState {
    pub(crate) fn from_proto(state: i32) -> ConnectionState {
        match proto::ConnectionState::try_from(state) {
            Ok(proto::ConnectionState::ConnConnected) => ConnectionState::Connected,
            Ok(proto::ConnectionState::ConnReconnecting) => ConnectionState::Reconnecting,
            _ => ConnectionState::Disconnected,
        }
    }
}

impl DisconnectReason {
    pub(crate) fn from_proto(reason: i32) -> DisconnectReason {
        use proto::DisconnectReason as P;
        match P::try_from(reason) {
            Ok(P::ClientInitiated) => DisconnectReason::ClientInitiated,
            Ok(P::DuplicateIdentity) => DisconnectReason::DuplicateIdentity,
            Ok(P::ServerShutdown) => DisconnectReason::ServerShutdown,
            Ok(P::ParticipantRemoved) => DisconnectReason::ParticipantRemoved,
            Ok(P::RoomDeleted) => DisconnectReason::RoomDeleted,
            Ok(P::StateMismatch) => DisconnectReason::StateMismatch,
            Ok(P::JoinFailure) => DisconnectReason::JoinFailure,
            Ok(P::Migration) => DisconnectReason::Migration,
            Ok(P::SignalClose) => DisconnectReason::SignalClose,
            Ok(P::RoomClosed) => DisconnectReason::RoomClosed,
            Ok(P::ConnectionTimeout) => DisconnectReason::ConnectionTimeout,
            Ok(P::MediaFailure) => DisconnectReason::MediaFailure,
            _ => DisconnectReason::Unknown,
        }
    }
}

pub(crate) fn attributes_map(entries: &[proto::AttributesEntry]) -> HashMap<String, String> {
    entries.iter().map(|entry| (entry.key.clone(), entry.value.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_source_is_named_with_the_sources_allowed() {
        let permission = Permission {
            can_subscribe: true,
            can_publish: true,
            can_publish_data: true,
            can_publish_sources: vec![TrackSource::Microphone],
        };
        assert_eq!(permission.refusal(TrackSource::Microphone), None);
        assert_eq!(
            permission.refusal(TrackSource::ScreenShare).as_deref(),
            Some("the access token does not allow publishing screen_share (it allows: microphone)")
        );
        let none = Permission { can_publish: false, ..permission };
        assert_eq!(
            none.refusal(TrackSource::Microphone).as_deref(),
            Some("the server does not allow this participant to publish")
        );
    }
}
