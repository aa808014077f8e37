//! Errors this crate returns.

use std::fmt;
use std::path::PathBuf;

/// The library could not be loaded. Lists every path tried, and why each failed.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    pub tried: Vec<(PathBuf, String)>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "cannot load the LiveKit FFI library (tried ")?;
        for (index, (path, reason)) in self.tried.iter().enumerate() {
            if index > 0 {
                write!(formatter, "; ")?;
            }
            write!(formatter, "{}: {reason}", path.display())?;
        }
        write!(
            formatter,
            "); run `cargo xtask setup` to install it, or set {} to the library file",
            crate::library::LIBRARY_PATH_ENV
        )
    }
}

/// Why joining a room failed, classified from the server's and the engine's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The token was refused (bad signature, expired, wrong key, not a token).
    Unauthorized,
    /// The token is valid but does not allow this (e.g. another room).
    Forbidden,
    /// Nothing answered at the URL, or the network failed.
    Unreachable,
    /// The URL is not a LiveKit URL we can use.
    InvalidUrl,
    /// The server answered but the media connection could not be set up in time.
    Timeout,
    Other,
}

/// Errors from the engine and the objects it manages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Joining failed; `message` is the engine's explanation with secrets removed.
    #[error("{message}")]
    Connect { kind: ConnectFailure, message: String },
    /// The engine reported a failure for a request.
    #[error("LiveKit engine: {0}")]
    Engine(String),
    /// The engine answered with something this crate did not expect.
    #[error("unexpected answer from the LiveKit engine: {0}")]
    Protocol(String),
    /// The server's grant does not allow this (e.g. publishing a source the token leaves out).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The caller passed something the engine cannot take (e.g. a frame that is not 10 ms).
    #[error("{0}")]
    InvalidArgument(String),
}
