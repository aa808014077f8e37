//! The Parley session, shared by every front end (the `parley` CLI today, the desktop app next).
//!
//! * [`session::Session`] — joins a LiveKit room through the engine, publishes a
//!   [`parley_audio::stream::FrameSource`] as the microphone, mixes every remote voice into a
//!   [`parley_audio::stream::FrameSink`], and reports one ordered stream of
//!   [`session::SessionEvent`]s;
//! * [`control`] — the one-line commands (`ptt-start`, `volume alice 50`, …) every front end
//!   sends to a running session;
//! * [`membership`] — the backend side of a joined room: heartbeats, token refresh, backend
//!   events, removal, and moderation through the adapter or RoomService;
//! * [`client`] — the app-facing API: one [`client::Client`] owning profiles, keyring, settings
//!   and at most one call, publishing [`client::ClientState`] snapshots; the IPC types and their
//!   generated TypeScript;
//! * [`mic_test`] — the microphone played straight back on the speaker, outside a call;
//! * [`control_socket`] — the local socket `parley ctl` talks to, for the CLI and the app;
//! * [`token`] — minting LiveKit tokens from an API key and secret, and early checks of a
//!   token's room and expiry.
//!
//! `core` knows no UI toolkit; everything a front end can do is first a function here.

pub mod client;
pub mod control;
pub mod control_socket;
pub mod membership;
pub mod mic_test;
pub mod session;
pub mod token;

pub use control::Control;
/// Screen and window capture (targets, qualities), for front ends that offer sharing.
pub use parley_capture as capture;
pub use parley_livekit_ffi::{Engine, LibrarySearch, RoomOptions};
pub use session::{
    JoinRequest, Participant, PlatformAudioMode, Session, SessionError, SessionEvent, SessionState, ShareSettings,
    StampedEvent, VideoSink, WatchRequest,
};
