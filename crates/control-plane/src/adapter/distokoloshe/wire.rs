//! The server's answers as its Express API sends them (SQLite rows: 0/1 flags, text times).

use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct AuthAnswer {
    pub(super) token: String,
    pub(super) user: Option<UserInfo>,
}

#[derive(Deserialize)]
pub(super) struct UserInfo {
    pub(super) id: serde_json::Value,
}

#[derive(Deserialize)]
pub(super) struct RoomsAnswer {
    pub(super) rooms: Vec<RoomInfo>,
}

#[derive(Deserialize)]
pub(super) struct RoomInfo {
    pub(super) id: serde_json::Value,
    pub(super) name: String,
    #[serde(default)]
    pub(super) created_by: Option<serde_json::Value>,
    /// SQLite's `0`/`1` on the real server; a boolean from servers that convert it.
    #[serde(default, deserialize_with = "flag")]
    pub(super) is_jail: Option<bool>,
}

/// A flag column: SQLite has no booleans, so the real server sends the integer `0`/`1`; accept a
/// JSON boolean too.
pub(super) fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(value)) => Ok(Some(value)),
        Some(serde_json::Value::Number(number)) => Ok(Some(number.as_f64().is_some_and(|value| value != 0.0))),
        Some(other) => Err(serde::de::Error::custom(format!("expected 0, 1 or a boolean, got {other}"))),
    }
}

#[derive(Deserialize)]
pub(super) struct MembersAnswer {
    pub(super) members: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct Member {
    pub(super) username: String,
    #[serde(default)]
    pub(super) display_name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct JoinAnswer {
    pub(super) token: String,
    #[serde(rename = "e2eeKey", default)]
    pub(super) e2ee_key: Option<String>,
    #[serde(default)]
    pub(super) room: Option<JoinedRoom>,
    #[serde(rename = "wsUrl")]
    pub(super) ws_url: String,
}

#[derive(Deserialize)]
pub(super) struct JoinedRoom {
    pub(super) id: serde_json::Value,
    pub(super) name: String,
}
