//! Control planes: where a Parley profile gets its rooms, join tokens and moderation.
//!
//! Every community backend (DESIGN.md §4, contracts in `shared/CONTROL_PLANES.md`) is one
//! adapter behind the [`ControlPlane`] trait. An adapter declares its [`Capabilities`]; front ends
//! offer an action only when the adapter supports it. Every failure is one [`PlaneError`], whose
//! `Display` is the message a user sees and whose [`PlaneError::code`] is what programs branch on.
//!
//! Modules:
//! * [`plane`] — the trait, capabilities, join grants, rooms, participants, moderation actions,
//!   events pushed by a backend (kicked, role changed, …).
//! * [`error`] — the typed error set and its user-facing messages.
//! * [`http`] — the one HTTP client every adapter uses: timeouts, status → error mapping, JSON
//!   decoding that recognises HTML error pages, `Retry-After`.
//! * [`secret`] — [`Secret`], a credential that never prints itself.
//! * [`adapter`] — one module per backend.
//! * [`profile`] — saved server profiles (`profiles.toml`) and [`profile::open_plane`], which
//!   builds a profile's adapter.
//! * [`secret_store`] — where profile secrets live: the OS keyring, or memory in tests.
//! * [`transport`] — which addresses may be unencrypted (loopback, or an `insecure` profile),
//!   and the guard that checks every grant's LiveKit address.
//!
//! Adapters know no audio and no LiveKit engine: they hand out [`JoinGrant`]s (URL + token) and
//! talk HTTP. The session in `parley-core` drives heartbeats, refreshes and leave.

pub mod adapter;
pub mod error;
pub mod http;
pub mod plane;
pub mod profile;
pub mod secret;
pub mod secret_store;
pub mod transport;

pub use error::PlaneError;
pub use plane::{
    BackendKind, Capabilities, Capability, ControlPlane, JoinGrant, ModerationAction, PlaneEvent, PlaneParticipant,
    RoomSummary,
};
pub use secret::Secret;
