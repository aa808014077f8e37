//! The one error set every control plane maps its failures to.
//!
//! `Display` is the sentence a user sees (CLI and UI); [`PlaneError::code`] is the closed set of
//! codes programs branch on (IPC `{code, message}`, CLI exit codes). Messages quote what the
//! server said when it said something useful, but never a credential: adapters only ever put
//! server-provided error text or our own words into these variants.

use std::time::Duration;

/// A control-plane failure. `message` fields hold the server's own explanation when it gave one
/// (already trimmed and shortened), otherwise an empty string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaneError {
    /// 401, or a 403 that means "who are you?": the credentials are missing, wrong or expired.
    #[error("the server did not accept your credentials{}; sign in again or check the profile's key", detail(.message))]
    Unauthorized { message: String },
    /// Authenticated, but this user may not do this.
    #[error("not allowed{}", detail(.message))]
    Forbidden { message: String },
    /// A moderator removed the user from this room; rejoining is refused for now.
    #[error("you were removed from this room by a moderator{}", detail(.message))]
    Kicked { message: String },
    /// The user is banned from this room.
    #[error("you are banned from this room{}", detail(.message))]
    Banned { message: String },
    /// The room, participant or endpoint does not exist.
    #[error("{what} was not found{}", detail(.message))]
    NotFound { what: String, message: String },
    /// The backend allows one room at a time and the user is in another; leaving that one first
    /// (see `ControlPlane::leave_room`) makes the join possible.
    #[error("you are already in another room ({}); leave it to join this one", room_label(.room_id, .room_name))]
    InAnotherRoom { room_id: String, room_name: Option<String> },
    /// The room has reached its participant limit.
    #[error("the room is full{}", detail(.message))]
    RoomFull { message: String },
    /// Too many requests; the server asked us to wait.
    #[error("the server is rate limiting requests{}", retry_detail(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// The request was well-formed HTTP but the server rejected its content (400, 422).
    #[error("the server rejected the request{}", detail(.message))]
    Rejected { status: u16, message: String },
    /// The lobby / waiting room said no.
    #[error("a moderator declined your request to enter{}", detail(.message))]
    EntryDenied { message: String },
    /// 5xx.
    #[error("the server failed (HTTP {status}){}; try again later", detail(.message))]
    Server { status: u16, message: String },
    /// The backend is up but not set up for voice (e.g. a forum without LiveKit credentials).
    #[error("the server is not set up for voice calls: {message}")]
    NotConfigured { message: String },
    /// The answer was not what the contract promises: HTML where JSON was expected, missing
    /// fields, garbage.
    #[error("the server's answer was not understood: {detail}")]
    Malformed { detail: String },
    /// No answer: DNS, refused connection, TLS, timeout.
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The profile or the arguments are wrong before anything was sent.
    #[error("{message}")]
    InvalidInput { message: String },
    /// This backend (or this user's role on it) does not offer the action.
    #[error("{backend} does not support {action}")]
    Unsupported { backend: &'static str, action: &'static str },
    /// The OS keyring could not store or return a secret.
    #[error("the system keyring failed: {message}")]
    Keyring { message: String },
}

impl PlaneError {
    /// The stable machine-readable code of this error (IPC, JSON output, tests).
    pub fn code(&self) -> &'static str {
        match self {
            PlaneError::Unauthorized { .. } => "unauthorized",
            PlaneError::Forbidden { .. } => "forbidden",
            PlaneError::Kicked { .. } => "kicked",
            PlaneError::Banned { .. } => "banned",
            PlaneError::NotFound { .. } => "not_found",
            PlaneError::InAnotherRoom { .. } => "in_another_room",
            PlaneError::RoomFull { .. } => "room_full",
            PlaneError::RateLimited { .. } => "rate_limited",
            PlaneError::Rejected { .. } => "rejected",
            PlaneError::EntryDenied { .. } => "entry_denied",
            PlaneError::Server { .. } => "server_error",
            PlaneError::NotConfigured { .. } => "not_configured",
            PlaneError::Malformed { .. } => "malformed_response",
            PlaneError::Unreachable { .. } => "unreachable",
            PlaneError::InvalidInput { .. } => "invalid_input",
            PlaneError::Unsupported { .. } => "unsupported",
            PlaneError::Keyring { .. } => "keyring",
        }
    }

    /// Whether retrying the same request later can succeed (heartbeats and refreshes back off and
    /// retry these; everything else ends the attempt).
    pub fn is_transient(&self) -> bool {
        matches!(self, PlaneError::RateLimited { .. } | PlaneError::Server { .. } | PlaneError::Unreachable { .. })
    }

    /// Whether this error means the user must leave the room and may not come back for now.
    pub fn ends_session(&self) -> bool {
        matches!(self, PlaneError::Kicked { .. } | PlaneError::Banned { .. })
    }
}

fn detail(message: &str) -> String {
    if message.is_empty() { String::new() } else { format!(": {message}") }
}

fn retry_detail(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!("; try again in {} s", wait.as_secs().max(1)),
        None => "; try again in a moment".to_string(),
    }
}

fn room_label(room_id: &str, room_name: &Option<String>) -> String {
    match room_name {
        Some(name) if !name.is_empty() => format!("{name:?}, id {room_id}"),
        _ => format!("id {room_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_sentences_and_codes_are_stable() {
        let error = PlaneError::InAnotherRoom { room_id: "7".into(), room_name: Some("Lounge".into()) };
        assert_eq!(error.to_string(), "you are already in another room (\"Lounge\", id 7); leave it to join this one");
        assert_eq!(error.code(), "in_another_room");
        let limited = PlaneError::RateLimited { retry_after: Some(Duration::from_secs(12)) };
        assert_eq!(limited.to_string(), "the server is rate limiting requests; try again in 12 s");
        assert!(limited.is_transient());
        assert!(PlaneError::Kicked { message: String::new() }.ends_session());
    }
}
