//! Tracks as Parley sees them: their kind and source, a publication, and subscribed remote
//! audio and video tracks (the handles streams are opened on). A leaf of the crate: rooms,
//! events and streams all speak of tracks, tracks speak of none of them.

use std::sync::Arc;

use crate::engine::OwnedHandle;
use crate::proto;

/// A published track, remote or local.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackPublication {
    pub sid: String,
    pub name: String,
    pub kind: TrackKind,
    pub source: TrackSource,
    pub muted: bool,
    /// Published end-to-end encrypted (the publisher said so to the server).
    pub encrypted: bool,
    /// A video track's published resolution (0 × 0 for audio, or when not yet known).
    pub width: u32,
    pub height: u32,
    /// A video track published in several qualities (simulcast layers).
    pub simulcasted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Audio,
    Video,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackSource {
    Microphone,
    Camera,
    ScreenShare,
    ScreenShareAudio,
    Unknown,
}

/// A subscribed remote video track; open a [`crate::VideoStream`] on it to receive frames.
#[derive(Clone)]
pub struct RemoteVideoTrack {
    pub(crate) handle: Arc<OwnedHandle>,
    pub sid: String,
    pub name: String,
    pub participant_identity: String,
    /// What the publisher says it is: [`TrackSource::ScreenShare`] or [`TrackSource::Camera`]
    /// (or [`TrackSource::Unknown`] when its publication was not announced first).
    pub source: TrackSource,
    /// Its publication is end-to-end encrypted.
    pub encrypted: bool,
}

impl std::fmt::Debug for RemoteVideoTrack {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RemoteVideoTrack")
            .field("sid", &self.sid)
            .field("participant_identity", &self.participant_identity)
            .field("source", &self.source)
            .finish()
    }
}

/// A subscribed remote audio track; open an [`crate::AudioStream`] on it to receive frames.
#[derive(Clone)]
pub struct RemoteAudioTrack {
    pub(crate) handle: Arc<OwnedHandle>,
    pub sid: String,
    pub name: String,
    pub participant_identity: String,
    /// What the publisher says it is: [`TrackSource::Microphone`] or
    /// [`TrackSource::ScreenShareAudio`] (a screen share's sound), or [`TrackSource::Unknown`].
    pub source: TrackSource,
    /// Its publication is end-to-end encrypted.
    pub encrypted: bool,
}

impl std::fmt::Debug for RemoteAudioTrack {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RemoteAudioTrack")
            .field("sid", &self.sid)
            .field("participant_identity", &self.participant_identity)
            .finish()
    }
}

impl From<&proto::TrackPublicationInfo> for TrackPublication {
    fn from(info: &proto::TrackPublicationInfo) -> TrackPublication {
        TrackPublication {
            sid: info.sid.clone(),
            name: info.name.clone(),
            kind: TrackKind::from_proto(info.kind),
            source: TrackSource::from_proto(info.source),
            muted: info.muted,
            encrypted: proto::EncryptionType::try_from(info.encryption_type)
                .is_ok_and(|kind| kind != proto::EncryptionType::None),
            width: info.width,
            height: info.height,
            simulcasted: info.simulcasted,
        }
    }
}

impl TrackKind {
    pub(crate) fn from_proto(kind: i32) -> TrackKind {
        match proto::TrackKind::try_from(kind) {
            Ok(proto::TrackKind::KindAudio) => TrackKind::Audio,
            Ok(proto::TrackKind::KindVideo) => TrackKind::Video,
            _ => TrackKind::Unknown,
        }
    }
}

impl TrackSource {
    pub(crate) fn from_proto(source: i32) -> TrackSource {
        match proto::TrackSource::try_from(source) {
            Ok(proto::TrackSource::SourceMicrophone) => TrackSource::Microphone,
            Ok(proto::TrackSource::SourceCamera) => TrackSource::Camera,
            Ok(proto::TrackSource::SourceScreenshare) => TrackSource::ScreenShare,
            Ok(proto::TrackSource::SourceScreenshareAudio) => TrackSource::ScreenShareAudio,
            _ => TrackSource::Unknown,
        }
    }

    /// LiveKit's name for the source (as in a token's `canPublishSources`).
    pub fn code(self) -> &'static str {
        match self {
            TrackSource::Microphone => "microphone",
            TrackSource::Camera => "camera",
            TrackSource::ScreenShare => "screen_share",
            TrackSource::ScreenShareAudio => "screen_share_audio",
            TrackSource::Unknown => "unknown",
        }
    }

    pub(crate) fn to_proto(self) -> proto::TrackSource {
        match self {
            TrackSource::Microphone => proto::TrackSource::SourceMicrophone,
            TrackSource::Camera => proto::TrackSource::SourceCamera,
            TrackSource::ScreenShare => proto::TrackSource::SourceScreenshare,
            TrackSource::ScreenShareAudio => proto::TrackSource::SourceScreenshareAudio,
            TrackSource::Unknown => proto::TrackSource::SourceUnknown,
        }
    }
}
