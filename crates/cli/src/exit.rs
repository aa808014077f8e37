//! How `parley` fails: [`ExitKind`], the exit codes scripts tell failures apart by (README:
//! exit codes), and [`Failure`], an error with its exit code, which `main` prints on one line.
//!
//! One mapping: core classifies control-plane and session errors into its [`ErrorCode`] (the
//! `From` impls into [`ClientError`], the same the desktop app shows), and `From<ErrorCode> for
//! ExitKind` alone turns a code into an exit code ([`classify`], [`fail_as`]). The CLI's own
//! steps that core does not see (reading a file, opening a device, loading the engine, checking
//! a token, reaching a control socket) name their [`ExitKind`] directly.

use parley_core::client::{ClientError, ErrorCode};

/// Exit codes, so scripts can tell failures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Anything not listed below.
    Failure = 1,
    /// The LiveKit FFI library could not be loaded.
    Engine = 3,
    /// The server refused the token (bad, expired, wrong key, wrong room).
    Unauthorized = 4,
    /// The server could not be reached, or the URL is not usable.
    Unreachable = 5,
    /// The room ended for us: removed, room deleted, server gone.
    Disconnected = 6,
    /// An input or output file could not be used.
    File = 7,
    /// A sound device could not be found or opened.
    Device = 8,
    /// Control plane: authenticated, but not allowed.
    Forbidden = 9,
    /// Control plane: a moderator removed (kicked) us, at join or during the call.
    Removed = 10,
    /// Control plane: banned from the room.
    Banned = 11,
    /// Control plane: the room, participant or profile does not exist.
    NotFound = 12,
    /// Control plane: already in another room on a one-room-at-a-time backend.
    InAnotherRoom = 13,
    RoomFull = 14,
    RateLimited = 15,
    /// Control plane: the server rejected the request's content.
    Rejected = 16,
    /// Control plane: the lobby refused entry.
    EntryDenied = 17,
    /// Control plane: the server failed (5xx).
    ServerError = 18,
    /// Control plane: the server's answer was not understood.
    Malformed = 19,
    /// The profile or its flags are wrong.
    InvalidProfile = 20,
    /// The backend cannot do this.
    Unsupported = 21,
    /// The OS keyring is missing, locked or failed.
    Keyring = 22,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub kind: ExitKind,
    pub error: anyhow::Error,
}

pub fn fail(kind: ExitKind, error: impl Into<anyhow::Error>) -> Failure {
    Failure { kind, error: error.into() }
}

/// A control-plane or session error, classified by core and given the exit code of its
/// [`ErrorCode`]; `context` says what we were doing. The message is the error's own.
pub fn classify(error: impl Into<ClientError>, context: &'static str) -> Failure {
    let error = error.into();
    fail(ExitKind::from(error.code), anyhow::Error::new(error).context(context))
}

/// A failure the CLI finds itself, with the exit code of the core `code` it amounts to.
pub fn fail_as(code: ErrorCode, error: impl Into<anyhow::Error>) -> Failure {
    fail(ExitKind::from(code), error)
}

impl From<ErrorCode> for ExitKind {
    /// The one table from core's codes to exit codes. Exhaustive on purpose: a new code is a
    /// decision here, not a silent `1`.
    fn from(code: ErrorCode) -> ExitKind {
        match code {
            ErrorCode::Unauthorized => ExitKind::Unauthorized,
            ErrorCode::Forbidden => ExitKind::Forbidden,
            ErrorCode::Kicked => ExitKind::Removed,
            ErrorCode::Banned => ExitKind::Banned,
            ErrorCode::NotFound => ExitKind::NotFound,
            ErrorCode::InAnotherRoom => ExitKind::InAnotherRoom,
            ErrorCode::RoomFull => ExitKind::RoomFull,
            ErrorCode::RateLimited => ExitKind::RateLimited,
            ErrorCode::Rejected => ExitKind::Rejected,
            ErrorCode::EntryDenied => ExitKind::EntryDenied,
            ErrorCode::ServerError => ExitKind::ServerError,
            ErrorCode::MalformedResponse => ExitKind::Malformed,
            // README: 5 is "unreachable or the URL unusable"; a join that does not complete in
            // time is the same to a script.
            ErrorCode::Unreachable | ErrorCode::Timeout => ExitKind::Unreachable,
            ErrorCode::InvalidInput => ExitKind::InvalidProfile,
            ErrorCode::Unsupported => ExitKind::Unsupported,
            ErrorCode::Keyring => ExitKind::Keyring,
            ErrorCode::Engine => ExitKind::Engine,
            ErrorCode::Device => ExitKind::Device,
            ErrorCode::RoomClosed | ErrorCode::Disconnected => ExitKind::Disconnected,
            // The README's table of control-plane codes has no row for a backend that is not
            // set up for voice: it is "other failure", as the CLI always exited.
            ErrorCode::NotConfigured => ExitKind::Failure,
            ErrorCode::NotInCall | ErrorCode::Settings | ErrorCode::Update | ErrorCode::Internal => ExitKind::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use parley_control_plane::PlaneError;
    use parley_core::SessionError;
    use parley_livekit_ffi::{ConnectFailure, Error as EngineError};

    use super::*;

    fn exit_code(failure: &Failure) -> u8 {
        failure.kind as u8
    }

    /// README: exit codes, the table of control-plane codes (and 4, 5 and 1 for the rest).
    #[test]
    fn control_plane_errors_exit_with_the_readme_codes() {
        let text = || "why".to_string();
        let cases = [
            (PlaneError::Unauthorized { message: text() }, 4),
            (PlaneError::Unreachable { url: "https://forum.example".into(), detail: text() }, 5),
            (PlaneError::Forbidden { message: text() }, 9),
            (PlaneError::Kicked { message: text() }, 10),
            (PlaneError::Banned { message: text() }, 11),
            (PlaneError::NotFound { what: "room r".into(), message: text() }, 12),
            (PlaneError::InAnotherRoom { room_id: "7".into(), room_name: None }, 13),
            (PlaneError::RoomFull { message: text() }, 14),
            (PlaneError::RateLimited { retry_after: Some(Duration::from_secs(3)) }, 15),
            (PlaneError::Rejected { status: 422, message: text() }, 16),
            (PlaneError::EntryDenied { message: text() }, 17),
            (PlaneError::Server { status: 502, message: text() }, 18),
            (PlaneError::Malformed { detail: text() }, 19),
            (PlaneError::InvalidInput { message: text() }, 20),
            (PlaneError::Unsupported { backend: "livekit", action: "ban" }, 21),
            (PlaneError::Keyring { message: text() }, 22),
            (PlaneError::NotConfigured { message: text() }, 1),
        ];
        for (error, code) in cases {
            let shown = error.to_string();
            let failure = classify(error, "asking the server");
            assert_eq!(exit_code(&failure), code, "{shown:?} should exit with {code}");
        }
    }

    #[test]
    fn connect_failures_exit_as_refused_or_unreachable() {
        let cases = [
            (ConnectFailure::Unauthorized, 4),
            (ConnectFailure::Forbidden, 4),
            (ConnectFailure::Unreachable, 5),
            (ConnectFailure::InvalidUrl, 5),
            (ConnectFailure::Timeout, 5),
            (ConnectFailure::Other, 1),
        ];
        for (kind, code) in cases {
            let error = SessionError::Engine(EngineError::Connect { kind, message: "no".into() });
            let failure = classify(error, "joining the room");
            assert_eq!(exit_code(&failure), code, "{kind:?} should exit with {code}");
        }
    }

    #[test]
    fn the_message_is_the_context_then_the_errors_own_sentence() {
        let error = PlaneError::Forbidden { message: "moderators only".into() };
        let shown = error.to_string();
        let failure = classify(error, "moderating");
        let chain: Vec<String> = failure.error.chain().map(ToString::to_string).collect();
        assert_eq!(chain, ["moderating".to_string(), shown], "one context, then the control plane's sentence");
    }
}
