//! What Meet sends back, as the adapter reads it: the claims of its LiveKit tokens, the room,
//! lobby and waiting-list answers of its API, and LiveKit's `ListParticipants` answer (proto
//! JSON).

use std::collections::HashMap;

use serde::Deserialize;

use super::LobbyWaiter;
use crate::PlaneError;

/// What the adapter reads from Meet's LiveKit token (python livekit-api claims, unverified).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct MeetClaims {
    pub(super) exp: Option<u64>,
    pub(super) video: MeetVideo,
    /// Values are strings, except `room_role`, which is `null` without a role.
    pub(super) attributes: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct MeetVideo {
    pub(super) room: String,
    pub(super) room_admin: bool,
}

impl MeetClaims {
    /// Errors: [`PlaneError::Malformed`] when `token` is not a JWT with a JSON payload.
    pub(super) fn read(token: &str) -> Result<MeetClaims, PlaneError> {
        use base64::Engine;
        let malformed = || PlaneError::Malformed { detail: "Meet's LiveKit token is not a JWT".into() };
        let mut parts = token.split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| malformed())?;
        serde_json::from_slice(&bytes).map_err(|_| malformed())
    }
}

/// `RoomSerializer` (only what the adapter uses).
#[derive(Deserialize)]
pub(super) struct RoomAnswer {
    pub(super) id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) slug: Option<String>,
    pub(super) configuration: Option<serde_json::Value>,
    pub(super) livekit: Option<LivekitAccess>,
}

#[derive(Deserialize)]
pub(super) struct LivekitAccess {
    pub(super) url: String,
    pub(super) token: String,
}

#[derive(Deserialize)]
pub(super) struct EntryAnswer {
    pub(super) status: String,
    pub(super) livekit: Option<LivekitAccess>,
}

#[derive(Deserialize)]
pub(super) struct WaitingAnswer {
    pub(super) participants: Vec<LobbyWaiter>,
}

/// LiveKit's proto JSON: field names may come as proto names or lowerCamelCase, enums as names
/// or numbers, and default values may be left out.
#[derive(Deserialize)]
pub(super) struct ListParticipantsAnswer {
    #[serde(default)]
    pub(super) participants: Vec<ParticipantInfo>,
}

#[derive(Deserialize)]
pub(super) struct ParticipantInfo {
    #[serde(default)]
    pub(super) identity: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    tracks: Vec<TrackInfo>,
    #[serde(default)]
    pub(super) attributes: HashMap<String, String>,
}

#[derive(Deserialize)]
pub(super) struct TrackInfo {
    #[serde(default)]
    pub(super) sid: String,
    #[serde(rename = "type", default)]
    kind: serde_json::Value,
    #[serde(default)]
    source: serde_json::Value,
    #[serde(default)]
    pub(super) muted: bool,
}

impl ParticipantInfo {
    /// Tracks whose source is the microphone; when a server sends no sources at all, every audio
    /// track (older SDKs published without one).
    pub(super) fn microphone_tracks(&self) -> impl Iterator<Item = &TrackInfo> {
        let any_source = self.tracks.iter().any(|track| !track.source.is_null());
        self.tracks.iter().filter(move |track| {
            if any_source {
                enum_is(&track.source, "MICROPHONE", 2)
            } else {
                track.kind.is_null() || enum_is(&track.kind, "AUDIO", 0)
            }
        })
    }
}

fn enum_is(value: &serde_json::Value, name: &str, number: u64) -> bool {
    value.as_str() == Some(name) || value.as_u64() == Some(number)
}
