//! The one error shape every front end receives: a closed [`ErrorCode`] the UI branches on and a
//! sentence it shows (STYLE.md 9). Messages are built from our own words and the server's
//! explanations, never from a credential.

use parley_control_plane::PlaneError;
use parley_livekit_ffi::{ConnectFailure, Error as EngineError};
use serde::Serialize;
use ts_rs::TS;

use crate::SessionError;

/// What went wrong, as programs see it. The set is closed: adding a code is an IPC change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The server did not accept the credentials (control plane or LiveKit token).
    Unauthorized,
    /// Authenticated but not allowed.
    Forbidden,
    /// A moderator removed us from the room.
    Kicked,
    /// We are banned from the room.
    Banned,
    /// The room, participant or profile does not exist.
    NotFound,
    /// One room at a time and we are in another: joining with `switch_rooms` leaves it first.
    InAnotherRoom,
    RoomFull,
    RateLimited,
    /// The server rejected the request's content.
    Rejected,
    /// The lobby said no.
    EntryDenied,
    /// The server failed (5xx).
    ServerError,
    /// The backend is not set up for voice.
    NotConfigured,
    /// The server's answer was not understood.
    MalformedResponse,
    /// The server could not be reached (control plane or LiveKit).
    Unreachable,
    /// The arguments or the profile are wrong (bad name, missing field, out-of-range value).
    InvalidInput,
    /// The backend, or our role on it, does not offer this.
    Unsupported,
    /// The OS keyring is missing, locked or failed.
    Keyring,
    /// The LiveKit engine library could not be loaded.
    Engine,
    /// A sound device could not be listed or opened.
    Device,
    /// Joining took too long.
    Timeout,
    /// The room was closed or deleted while we were in it.
    RoomClosed,
    /// The connection to the room ended (server shut down, network lost for good).
    Disconnected,
    /// The command needs a call and there is none.
    NotInCall,
    /// The settings file could not be read or written.
    Settings,
    /// Checking for, downloading or verifying an update failed (an unsigned update is refused).
    Update,
    /// Anything else; the message says what.
    Internal,
}

/// A failed command: `{code, message}` across IPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
}

impl ClientError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError { code, message: message.into() }
    }

    pub(crate) fn not_in_call() -> ClientError {
        ClientError::new(ErrorCode::NotInCall, "you are not in a call")
    }

    pub(crate) fn internal(message: impl Into<String>) -> ClientError {
        ClientError::new(ErrorCode::Internal, message)
    }
}

impl From<PlaneError> for ClientError {
    fn from(error: PlaneError) -> ClientError {
        let code = match &error {
            PlaneError::Unauthorized { .. } => ErrorCode::Unauthorized,
            PlaneError::Forbidden { .. } => ErrorCode::Forbidden,
            PlaneError::Kicked { .. } => ErrorCode::Kicked,
            PlaneError::Banned { .. } => ErrorCode::Banned,
            PlaneError::NotFound { .. } => ErrorCode::NotFound,
            PlaneError::InAnotherRoom { .. } => ErrorCode::InAnotherRoom,
            PlaneError::RoomFull { .. } => ErrorCode::RoomFull,
            PlaneError::RateLimited { .. } => ErrorCode::RateLimited,
            PlaneError::Rejected { .. } => ErrorCode::Rejected,
            PlaneError::EntryDenied { .. } => ErrorCode::EntryDenied,
            PlaneError::Server { .. } => ErrorCode::ServerError,
            PlaneError::NotConfigured { .. } => ErrorCode::NotConfigured,
            PlaneError::Malformed { .. } => ErrorCode::MalformedResponse,
            PlaneError::Unreachable { .. } => ErrorCode::Unreachable,
            PlaneError::InvalidInput { .. } => ErrorCode::InvalidInput,
            PlaneError::Unsupported { .. } => ErrorCode::Unsupported,
            PlaneError::Keyring { .. } => ErrorCode::Keyring,
            // `PlaneError` is non-exhaustive: a new variant shows its own sentence until it gets
            // a code of its own.
            _ => ErrorCode::Internal,
        };
        ClientError::new(code, error.to_string())
    }
}

impl From<SessionError> for ClientError {
    fn from(error: SessionError) -> ClientError {
        let code = match &error {
            SessionError::Engine(EngineError::Connect { kind, .. }) => match kind {
                ConnectFailure::Unauthorized | ConnectFailure::Forbidden => ErrorCode::Unauthorized,
                ConnectFailure::Timeout => ErrorCode::Timeout,
                ConnectFailure::Unreachable | ConnectFailure::InvalidUrl => ErrorCode::Unreachable,
                _ => ErrorCode::Internal,
            },
            SessionError::Token(_) => ErrorCode::Unauthorized,
            SessionError::Output(_) | SessionError::Audio(_) => ErrorCode::Device,
            SessionError::Engine(EngineError::NotAllowed(_)) => ErrorCode::Forbidden,
            SessionError::Engine(_) => ErrorCode::Engine,
            SessionError::LeaveTimedOut(_) => ErrorCode::Timeout,
            SessionError::Capture(parley_capture::CaptureError::NotFound(_)) => ErrorCode::NotFound,
            SessionError::Capture(parley_capture::CaptureError::Unsupported(_)) => ErrorCode::Unsupported,
            SessionError::Capture(_) => ErrorCode::Device,
            SessionError::AlreadySharing | SessionError::NoViewer => ErrorCode::InvalidInput,
        };
        ClientError::new(code, parley_livekit_ffi::redact(&error.to_string()))
    }
}

impl From<parley_audio::device::DeviceError> for ClientError {
    fn from(error: parley_audio::device::DeviceError) -> ClientError {
        ClientError::new(ErrorCode::Device, error.to_string())
    }
}

impl From<parley_livekit_ffi::LoadError> for ClientError {
    fn from(error: parley_livekit_ffi::LoadError) -> ClientError {
        ClientError::new(ErrorCode::Engine, error.to_string())
    }
}
