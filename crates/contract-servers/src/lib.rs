//! In-process HTTP servers implementing the wire contracts of the control planes we cannot run
//! on a test machine (Discourse + Audioroom, La Suite Meet, lk-jwt-service, NIP-29 relays,
//! disTokoloshe, token endpoints), as `shared/CONTROL_PLANES.md` documents them.
//!
//! They check what the real servers check (auth headers, methods, `.json` suffixes, body
//! shapes) and answer with the real status codes and error bodies, so an adapter that passes
//! against them speaks the real contract (DESIGN.md §10).
//!
//! The version of the real project each one mirrors (its module doc says how, field by field):
//! * [`audioroom`]: `dpnmw/audioroom@067cfbb` (0.1.0) with livekit-server-sdk 0.9.0, on
//!   Discourse core (Rails 8) and `discourse/message_bus` 4.5.2.
//! * [`meet`]: `suitenumerique/meet` v1.27.0-18-ge5f0b1c2 (production settings).
//! * [`lk_jwt`]: `element-hq/lk-jwt-service` v0.5.0-16-ga375b13 (`a375b130`).
//! * [`nip29`]: the reference relay, `fiatjaf/pyramid@d15b6d9`.
//! * [`distokoloshe`]: `oddsock/distokoloshe@2cb343b` (its Express API and SQLite rows).
//! * [`token_endpoint`]: no project: the generic contract of `shared/CONTROL_PLANES.md`.
//!
//! Join endpoints mint real LiveKit tokens with the keys of a real LiveKit server
//! ([`LivekitKeys`]), so end-to-end tests really join.
//!
//! [`untrusted_tls`] serves TLS with a self-signed certificate, for certificate errors.
//!
//! [`portal`] and [`screencast`] are the odd ones out: not HTTP but the desktop's GlobalShortcuts
//! and ScreenCast portals on a D-Bus session bus, for the app's Wayland shortcuts and Wayland
//! screen share.
//!
//! Every HTTP server binds `127.0.0.1:0` and returns a [`Running`] handle: its base URL, and shutdown
//! on drop.
//!
//! Where a backend drives LiveKit itself (Audioroom's `CreateRoom` on join, `UpdateParticipant`
//! on invite to speak and hard mute, `MutePublishedTrack` on remote mute), the server makes the
//! same RoomService call on the same LiveKit server ([`LivekitKeys::update_participant`],
//! [`LivekitKeys::create_room`], [`LivekitKeys::mute_audio_track`]), so that the effect on a
//! real client can be tested.

pub mod audioroom;
pub mod distokoloshe;
pub mod lk_jwt;
pub mod meet;
pub mod nip29;
pub mod portal;
#[cfg(unix)]
pub mod screencast;
pub mod token_endpoint;
pub mod untrusted_tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_protocol as proto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The LiveKit server contract servers mint tokens for.
#[derive(Debug, Clone)]
pub struct LivekitKeys {
    /// `ws://127.0.0.1:<port>`
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
}

impl LivekitKeys {
    /// Mints a join token for `identity` in `room` with `grants` on top of `roomJoin`.
    pub fn mint(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        ttl: Duration,
        adjust: impl FnOnce(&mut VideoGrants),
    ) -> String {
        let mut grants = VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..Default::default()
        };
        adjust(&mut grants);
        AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_identity(identity)
            .with_name(name)
            .with_grants(grants)
            .with_ttl(ttl)
            .to_jwt()
            // Invariant: minting only fails for an empty key or secret, which tests never pass.
            .expect("minting a LiveKit token with test keys")
    }

    /// RoomService `UpdateParticipant` on this LiveKit server, as a backend's server does it:
    /// `metadata` when given, and `permission` — which LiveKit substitutes for the participant's
    /// whole permission (CONTROL_PLANES.md §6.2), so it is sent whole: `canSubscribe` true, plus
    /// the given publish rights. Any tokio task.
    ///
    /// LiveKit's own client (`livekit-api`'s `RoomClient`) makes the call rather than the
    /// control-plane crate's RoomService client: the control plane depends on these servers for
    /// its tests, and a contract server must not share the client code it is testing.
    ///
    /// Errors: LiveKit's answer (an unknown participant is `not_found`) or the transport's, as
    /// text, for the caller to log as the real backends do.
    pub async fn update_participant(
        &self,
        room: &str,
        identity: &str,
        metadata: Option<&str>,
        permission: Option<PublishRights>,
    ) -> Result<(), String> {
        let client = RoomClient::with_api_key(&self.url, &self.api_key, &self.api_secret);
        let options = UpdateParticipantOptions {
            // An empty metadata leaves it unchanged (the server only applies a non-empty one).
            metadata: metadata.unwrap_or_default().to_string(),
            permission: permission.map(|rights| proto::ParticipantPermission {
                can_subscribe: true,
                can_publish: rights.can_publish,
                can_publish_data: rights.can_publish_data,
                ..Default::default()
            }),
            ..Default::default()
        };
        let call = client.update_participant(room, identity, options);
        within_deadline(call).await?.map(drop).map_err(|error| error.to_string())
    }

    /// RoomService `CreateRoom`, as a backend makes sure its room exists with its timeouts
    /// (LiveKit answers with the existing room when there is one). Any tokio task.
    ///
    /// Errors: LiveKit's answer or the transport's, as text.
    pub async fn create_room(
        &self,
        room: &str,
        empty_timeout: u32,
        departure_timeout: u32,
        max_participants: u32,
    ) -> Result<(), String> {
        let client = RoomClient::with_api_key(&self.url, &self.api_key, &self.api_secret);
        let options = CreateRoomOptions { empty_timeout, departure_timeout, max_participants, ..Default::default() };
        within_deadline(client.create_room(room, options)).await?.map(drop).map_err(|error| error.to_string())
    }

    /// RoomService `GetParticipant`, then `MutePublishedTrack` on the participant's first audio
    /// track: a real server-side (un)mute, seen by everyone as `TrackMuted`/`TrackUnmuted`. Any
    /// tokio task.
    ///
    /// Returns `Ok(false)` when the participant publishes no audio track. Errors: LiveKit's
    /// answer (an unknown participant is `not_found`; unmuting needs `enable_remote_unmute`) or
    /// the transport's, as text.
    pub async fn mute_audio_track(&self, room: &str, identity: &str, muted: bool) -> Result<bool, String> {
        let client = RoomClient::with_api_key(&self.url, &self.api_key, &self.api_secret);
        let participant =
            within_deadline(client.get_participant(room, identity)).await?.map_err(|error| error.to_string())?;
        let audio = participant.tracks.iter().find(|track| track.r#type == proto::TrackType::Audio as i32);
        let Some(audio) = audio else { return Ok(false) };
        let call = client.mute_published_track(room, identity, &audio.sid, muted);
        within_deadline(call).await?.map(|_| true).map_err(|error| error.to_string())
    }
}

/// How long a backend waits for LiveKit's RoomService before giving up on a call.
const ROOM_SERVICE_DEADLINE: Duration = Duration::from_secs(5);

/// Runs a RoomService call, failing when LiveKit does not answer in time (the real backends'
/// HTTP clients time out too; a test must not hang on a LiveKit that never answers).
async fn within_deadline<T>(call: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(ROOM_SERVICE_DEADLINE, call).await.map_err(|_| "LiveKit did not answer in time".to_string())
}

impl LivekitKeys {
    /// RoomService `RemoveParticipant` on this LiveKit server, as a backend's server does it when
    /// it evicts someone. Any tokio task.
    ///
    /// Errors: LiveKit's answer or the transport's, as text, for the caller to log.
    pub async fn remove_participant(&self, room: &str, identity: &str) -> Result<(), String> {
        let client = RoomClient::with_api_key(&self.url, &self.api_key, &self.api_secret);
        client.remove_participant(room, identity).await.map_err(|error| error.to_string())
    }
}

/// The publish rights in a permission a backend sends LiveKit (subscribing is always allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRights {
    pub can_publish: bool,
    pub can_publish_data: bool,
}

/// A server running on a tokio task; dropping it shuts the server down.
#[derive(Debug)]
pub struct Running {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops accepting and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The task may already be gone (it ends with the runtime); nothing to stop then.
            shutdown.send(()).ok();
        }
        if let Err(error) = (&mut self.task).await {
            tracing::warn!("contract server task ended badly: {error}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
    }
}

/// Serves `router` on a fresh loopback port. Call from inside a tokio runtime.
pub async fn serve(router: axum::Router) -> std::io::Result<Running> {
    serve_on(router, IpAddr::V4(Ipv4Addr::LOCALHOST)).await
}

/// Serves `router` on a fresh port of `ip` (another loopback address, e.g. 127.0.0.2, plays a
/// host that is not "localhost" to the server). Call from inside a tokio runtime.
pub async fn serve_on(router: axum::Router, ip: IpAddr) -> std::io::Result<Running> {
    let listener = TcpListener::bind((ip, 0)).await?;
    let address = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            stopped.await.ok();
        });
        if let Err(error) = server.await {
            tracing::warn!("contract server failed: {error}");
        }
    });
    Ok(Running { address, shutdown: Some(shutdown), task })
}
