//! The JSON the Audioroom plugin and Discourse core send (CONTROL_PLANES.md §1.2 "Object
//! shapes", §1.3 token claims, §1.4 MessageBus messages).
//!
//! Every field the adapter does not need is left out and every optional one defaults, so that a
//! newer plugin adding or dropping a field does not break decoding.

use serde::Deserialize;

use crate::Secret;

/// `Room` from `room_serializer.rb`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Room {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub description_excerpt: Option<String>,
    /// `"open"` or `"stage"`.
    #[serde(default)]
    pub room_type: Option<String>,
    #[serde(default)]
    pub max_participants: Option<u32>,
    #[serde(default)]
    pub active_participants: Option<Vec<Participant>>,
    #[serde(default)]
    pub can_manage: bool,
}

impl Room {
    pub fn is_stage(&self) -> bool {
        self.room_type.as_deref() == Some("stage")
    }
}

/// `BasicUserSerializer` merged with the presence metadata kept in Redis.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Participant {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub avatar_template: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub is_muted: Option<bool>,
    #[serde(default)]
    pub hand_raised: Option<bool>,
    #[serde(default)]
    pub is_deafened: Option<bool>,
    #[serde(default)]
    pub hard_muted: Option<bool>,
}

/// `GET /audioroom/invite/:token.json`.
#[derive(Debug, Deserialize)]
pub(super) struct Invite {
    pub room: Room,
}

#[derive(Debug, Deserialize)]
pub(super) struct RoomsIndex {
    pub rooms: Vec<Room>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RoomShow {
    pub room: Room,
}

/// `POST /audioroom/rooms/:id/join`.
#[derive(Debug, Deserialize)]
pub(super) struct JoinAnswer {
    pub room: Room,
    /// `null` when the forum has no LiveKit API key and secret. A [`Secret`]: this answer's
    /// `Debug` must not show it.
    #[serde(default)]
    pub livekit_token: Option<Secret>,
    #[serde(default)]
    pub livekit_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ParticipantsAnswer {
    pub participants: Vec<Participant>,
}

/// `GET /u/:username.json` and `GET /session/current.json` carry a `BasicUser`.
#[derive(Debug, Deserialize)]
pub(super) struct BasicUser {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct UserShow {
    pub user: BasicUser,
}

#[derive(Debug, Deserialize)]
pub(super) struct CurrentSession {
    pub current_user: BasicUser,
}

/// One message of a MessageBus poll answer.
#[derive(Debug, Deserialize)]
pub(super) struct BusMessage {
    pub message_id: i64,
    pub channel: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// What the plugin publishes on `/audioroom/rooms/<id>` (`room_broadcaster.rb`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum RoomMessage {
    Participants {
        participants: Vec<Participant>,
    },
    RoleChange {
        user_id: serde_json::Value,
        role: String,
    },
    Kicked,
    /// Anything a newer plugin adds; ignored.
    #[serde(other)]
    Other,
}

/// The `role` in the metadata of the LiveKit token the forum mints (`{username,name,
/// avatar_template,role}`, §1.3): "moderator", "speaker", "listener", "participant".
pub(super) fn role_in_metadata(metadata: &str) -> Option<String> {
    let metadata: serde_json::Value = serde_json::from_str(metadata).ok()?;
    metadata.get("role")?.as_str().map(str::to_string)
}
