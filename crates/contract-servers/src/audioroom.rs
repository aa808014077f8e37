//! A Discourse forum with the Audioroom plugin, as CONTROL_PLANES.md §1.1–1.6 documents it.
//!
//! Start it with [`start`]`(keys) -> (Running, Handle)`; set it up and inspect it through the
//! [`Handle`]: users and their user API keys ([`Handle::add_user`]), rooms ([`Handle::add_room`]),
//! memberships, presence, forced failures ([`Handle::fail_next`]), and what it saw
//! ([`Handle::requests`], [`Handle::heartbeats`], …).
//!
//! What it enforces, like the real forum:
//! * `User-Api-Key` on every request but the key-issuing page: missing → 403 `not_logged_in`,
//!   unknown → 403 `invalid_access` (what core's `DefaultCurrentUserProvider` raises, §1.5);
//!   a key without the `write` scope may only GET (and poll MessageBus with `message_bus`).
//! * GETs without `.json` and without `Accept: application/json` get the HTML app shell (200),
//!   as Discourse's `check_xhr` renders for them.
//! * Per-key rate limits (20 a minute, 2880 a day by default; [`Handle::set_rate_limit`]): 429
//!   with `Retry-After`, `Discourse-Rate-Limit-Error-Code` and `extras.wait_seconds`.
//! * Guardian rules: joining needs a public room, a membership or the manage permission;
//!   moderation needs manage (a "manager" user, the room's creator, or a `moderator` membership),
//!   else 403 `invalid_access`.
//! * One room per user (409 with `conflicting_room_id/_name`), `max_participants` (422),
//!   kicked (300 s) and banned users (403 `{error}`), presence that lapses without heartbeat
//!   (TTL 30 s, [`Handle::set_presence_ttl`]).
//! * MessageBus (`POST /message-bus/<client>/poll`): per-channel message ids, `/__status`, long
//!   polls (25 s, [`Handle::set_long_poll`]) or `?dlp=t`, chunked framing unless `Dont-Chunk`,
//!   `kicked` sent only to the kicked user.
//! * `/user-api-key/new` ([`user_api_key`]): approves at once as [`Handle::set_approving_user`]
//!   and redirects with the encrypted payload.
//!
//! Join tokens are real LiveKit tokens for `keys`: identity = Discourse user id, name = username,
//! room = slug, metadata `{username,name,avatar_template,role}`, no `roomAdmin`, 4 h TTL (§1.3);
//! a stage room's listener gets `canPublish: false`.
//!
//! Like the plugin's `RoomServiceClient`, the forum then drives that LiveKit server: a
//! membership created for a present user (invite to speak, move to the audience, make moderator)
//! updates the participant's metadata and, in stage rooms, its permission; `hard_mute` and
//! `hard_unmute` update the permission. Each permission is sent whole (`canSubscribe: true`,
//! `canPublish`, `canPublishData`), after the forum's state changed and before it answers; a
//! failed call is logged and recorded ([`Handle::livekit_updates`]), never an HTTP error, as the
//! plugin rescues it.
//!
//! Layout: `state` holds the forum's data and the rules read from it (Guardian's manage and
//! join, the join-time role, presence's TTL, rate limits); `routes` maps each endpoint to its
//! handler, `moderation` holds the handlers that need the manage permission; `layers` holds what
//! runs around the routes (the `.json` suffix, recording, forced failures, `check_xhr`, the
//! `User-Api-Key`, rate limits); `params` reads Rails-style params; `responses` renders the
//! serializers' JSON shapes and Discourse's error bodies; `bus` is MessageBus and
//! [`user_api_key`] the key-issuing page.

mod bus;
mod layers;
mod moderation;
mod params;
mod responses;
mod routes;
mod state;
pub mod user_api_key;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{LivekitKeys, PublishRights, Running, serve};
use state::{ApiKey, Forum, MembershipRole, Room, Shared, User};

/// `max_user_api_reqs_per_minute` / `_per_day` defaults (`config/discourse_defaults.conf`).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 20;
pub const DEFAULT_REQUESTS_PER_DAY: u32 = 2880;
/// `audioroom_participant_ttl_seconds`.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(30);
/// MessageBus's long-poll duration.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(25);

/// Every endpoint, for forcing failures and filtering what was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Rooms,
    Room,
    Join,
    Heartbeat,
    Leave,
    Participants,
    ToggleMute,
    RaiseHand,
    LowerHand,
    MuteParticipant,
    HardMute,
    HardUnmute,
    Kick,
    Unkick,
    Ban,
    Unban,
    Memberships,
    CreateMembership,
    UpdateMembership,
    DeleteMembership,
    Poll,
    Invite,
    CurrentSession,
    User,
    UserApiKeyNew,
}

/// A canned answer for the next call of an endpoint.
#[derive(Debug, Clone)]
pub struct Forced {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// `Retry-After` seconds.
    pub retry_after: Option<u64>,
}

impl Forced {
    pub fn json(status: u16, body: Value) -> Forced {
        Forced { status, content_type: "application/json; charset=utf-8", body: body.to_string(), retry_after: None }
    }

    /// Discourse's HTML error page (what a proxy or a misrouted URL gives).
    pub fn html(status: u16) -> Forced {
        Forced {
            status,
            content_type: "text/html; charset=utf-8",
            body: "<!DOCTYPE html><html><head><title>Oops</title></head><body>Oops</body></html>".into(),
            retry_after: None,
        }
    }

    /// Any body, sent as `application/json` (for malformed JSON).
    pub fn raw(status: u16, body: &str) -> Forced {
        Forced { status, content_type: "application/json; charset=utf-8", body: body.into(), retry_after: None }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Forced {
        self.retry_after = Some(seconds);
        self
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub endpoint: Option<Endpoint>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// Query and body parameters merged, as Rails' `params`.
    pub fn params(&self) -> HashMap<String, Value> {
        params::parse(self.query.as_deref(), self.header("content-type"), self.body.as_bytes())
    }
}

/// A forum user created by [`Handle::add_user`].
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: u64,
    pub username: String,
    /// A `write`-scoped user API key.
    pub api_key: String,
}

/// A room to create with [`Handle::add_room`].
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub slug: String,
    pub name: String,
    pub stage: bool,
    pub public: bool,
    pub max_participants: Option<u32>,
    pub creator: Option<u64>,
}

impl NewRoom {
    pub fn open(slug: &str, name: &str) -> NewRoom {
        NewRoom {
            slug: slug.into(),
            name: name.into(),
            stage: false,
            public: true,
            max_participants: None,
            creator: None,
        }
    }

    pub fn stage(slug: &str, name: &str) -> NewRoom {
        NewRoom { stage: true, ..NewRoom::open(slug, name) }
    }
}

/// A present participant's state, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    pub role: String,
    pub muted: bool,
    pub deafened: bool,
    pub hand_raised: bool,
    pub hard_muted: bool,
    pub idle_state: String,
    last_seen: Instant,
}

/// A RoomService `UpdateParticipant` the forum made, and how LiveKit answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivekitUpdate {
    /// The LiveKit room: the forum room's slug.
    pub room: String,
    /// The LiveKit identity: the user id.
    pub identity: String,
    /// The metadata sent (JSON text), if any.
    pub metadata: Option<String>,
    /// The permission sent, if any (with `canSubscribe: true`).
    pub permission: Option<PublishRights>,
    /// `Err` with LiveKit's (or the transport's) answer when the call failed.
    pub outcome: Result<(), String>,
}

/// A key issued through `/user-api-key/new`.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: String,
    pub user_id: u64,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub application_name: String,
}

/// Set-up and inspection of a running server. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("audioroom::Handle").finish_non_exhaustive()
    }
}

/// Starts an empty forum on a loopback port: no users, no rooms, LiveKit configured with `keys`.
pub async fn start(keys: LivekitKeys) -> std::io::Result<(Running, Handle)> {
    let shared = Arc::new(Shared::new(keys));
    let running = serve(routes::router(Arc::clone(&shared))).await?;
    Ok((running, Handle { shared }))
}

impl Handle {
    fn state(&self) -> MutexGuard<'_, Forum> {
        self.shared.lock()
    }

    /// A user with a `write` key. `manager`: in `audioroom_create_room_allowed_groups`, so
    /// allowed to manage every room.
    pub fn add_user(&self, username: &str, name: &str, manager: bool) -> TestUser {
        let mut state = self.state();
        let id = state.take_id();
        state.users.insert(id, User { id, username: username.into(), name: name.into(), manager });
        let api_key = format!("key-{username}-{}", random_hex(8));
        state.api_keys.insert(api_key.clone(), ApiKey { user_id: id, scopes: vec!["write".into()], client_id: None });
        TestUser { id, username: username.into(), api_key }
    }

    /// Another key for `user` with the given scopes (e.g. `["read"]`).
    pub fn add_key(&self, user: u64, scopes: &[&str]) -> String {
        let key = format!("key-{user}-{}", random_hex(8));
        let scopes = scopes.iter().map(|scope| scope.to_string()).collect();
        self.state().api_keys.insert(key.clone(), ApiKey { user_id: user, scopes, client_id: None });
        key
    }

    pub fn add_room(&self, room: NewRoom) -> u64 {
        let mut state = self.state();
        let id = state.take_id();
        state.rooms.insert(
            id,
            Room {
                id,
                slug: room.slug,
                name: room.name,
                stage: room.stage,
                public: room.public,
                max_participants: room.max_participants,
                creator: room.creator,
            },
        );
        id
    }

    /// An invite link token for `room` (the model's `invite_token`).
    pub fn invite_token(&self, room: u64) -> String {
        let mut state = self.state();
        if let Some((token, _)) = state.invites.iter().find(|(_, invited)| **invited == room) {
            return token.clone();
        }
        let token = format!("inv{room}x{:08x}", (room.wrapping_mul(2_654_435_761)) as u32);
        state.invites.insert(token.clone(), room);
        token
    }

    /// Creates or changes `user`'s membership (`participant`, `speaker`, `moderator`).
    pub fn set_membership(&self, room: u64, user: u64, role: &str) {
        let role = MembershipRole::parse(role).unwrap_or(MembershipRole::Participant);
        self.state().upsert_membership(room, user, role);
    }

    /// Makes `user` present in `room` as if they had joined (another client in the room).
    pub fn set_present(&self, room: u64, user: u64) {
        let mut state = self.state();
        let role = state.join_role(room, user);
        state.presence.entry(room).or_default().insert(user, Presence::new(role));
        state.publish_participants(room);
        drop(state);
        self.shared.published.notify_waiters();
    }

    /// Without LiveKit credentials the forum answers joins with `livekit_token: null`.
    pub fn set_livekit_configured(&self, configured: bool) {
        self.state().livekit_configured = configured;
    }

    pub fn set_rate_limit(&self, per_minute: u32, per_day: u32) {
        let mut state = self.state();
        state.per_minute = per_minute;
        state.per_day = per_day;
    }

    pub fn set_presence_ttl(&self, ttl: Duration) {
        self.state().presence_ttl = ttl;
    }

    pub fn set_long_poll(&self, duration: Duration) {
        self.state().long_poll = duration;
    }

    /// The user logged in in "the browser" that `/user-api-key/new` approves for; `None`
    /// redirects to `/login`.
    pub fn set_approving_user(&self, user: Option<u64>) {
        self.state().approving_user = user;
    }

    /// Adds a pattern to `allowed_user_api_auth_redirects` (`*` matches anything).
    pub fn allow_auth_redirect(&self, pattern: &str) {
        self.state().allowed_redirects.push(pattern.into());
    }

    /// Answers the next call of `endpoint` with `forced` instead of the contract's behaviour.
    pub fn fail_next(&self, endpoint: Endpoint, forced: Forced) {
        self.state().forced.entry(endpoint).or_default().push_back(forced);
    }

    /// Publishes raw `data` on the room's MessageBus channel (to everyone).
    pub fn publish(&self, room: u64, data: Value) {
        self.state().bus.publish(&format!("/audioroom/rooms/{room}"), data, None);
        self.shared.published.notify_waiters();
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state().requests.clone()
    }

    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<SeenRequest> {
        self.state().requests.iter().filter(|request| request.endpoint == Some(endpoint)).cloned().collect()
    }

    pub fn heartbeats(&self, room: u64, user: u64) -> u32 {
        self.state().heartbeats.get(&(room, user)).copied().unwrap_or(0)
    }

    /// Who is present now (lapsed presence removed).
    pub fn present(&self, room: u64) -> Vec<u64> {
        let mut state = self.state();
        state.prune(Instant::now());
        state.presence.get(&room).map(|present| present.keys().copied().collect()).unwrap_or_default()
    }

    pub fn presence(&self, room: u64, user: u64) -> Option<Presence> {
        let mut state = self.state();
        state.prune(Instant::now());
        state.presence.get(&room).and_then(|present| present.get(&user)).cloned()
    }

    pub fn is_kicked(&self, room: u64, user: u64) -> bool {
        self.state().is_kicked(room, user, Instant::now())
    }

    pub fn is_banned(&self, room: u64, user: u64) -> bool {
        self.state().banned.contains(&(room, user))
    }

    /// `participant`, `speaker` or `moderator`.
    pub fn membership_role(&self, room: u64, user: u64) -> Option<&'static str> {
        self.state().membership(room, user).map(|membership| membership.role.name())
    }

    pub fn issued_keys(&self) -> Vec<IssuedKey> {
        self.state().issued.clone()
    }

    /// The RoomService `UpdateParticipant` calls made so far, in order, with LiveKit's answers.
    pub fn livekit_updates(&self) -> Vec<LivekitUpdate> {
        self.state().livekit_updates.clone()
    }

    /// Whether `key` is a key the forum currently accepts.
    pub fn key_is_valid(&self, key: &str) -> bool {
        self.state().api_keys.contains_key(key)
    }
}

/// `bytes` random bytes as hex (keys, ids).
pub(crate) fn random_hex(bytes: usize) -> String {
    use rsa::rand_core::{OsRng, RngCore};
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}
