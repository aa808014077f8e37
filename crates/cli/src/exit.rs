//! How `parley` fails: [`ExitKind`], the exit codes scripts tell failures apart by (README:
//! exit codes), and [`Failure`], an error with its exit code, which `main` prints on one line.

/// Exit codes, so scripts can tell failures apart.
#[derive(Debug, Clone, Copy)]
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
