//! A Discourse forum with the Audioroom plugin. Mirrors `dpnmw/audioroom@067cfbb` (plugin.rb
//! `version: 0.1.0`, 2026-03-15) with its pinned `livekit-server-sdk` 0.9.0, on Discourse core
//! (Rails 8) and `discourse/message_bus` 4.5.2, read from their source. Where
//! CONTROL_PLANES.md §1 and that source disagree, this follows the source.
//!
//! Start it with [`start`]`(keys) -> (Running, Handle)`; set it up and inspect it through the
//! [`Handle`]: users and their user API keys ([`Handle::add_user`]), rooms ([`Handle::add_room`]),
//! memberships, presence, forced failures ([`Handle::fail_next`]), and what it saw
//! ([`Handle::requests`], [`Handle::heartbeats`], [`Handle::livekit_calls`], …).
//!
//! What it does, like the real forum:
//! * **Auth** (core's `DefaultCurrentUserProvider`): `User-Api-Key`, in its order — an unknown
//!   key 403 `invalid_access`; the per-key limits (20 a minute, 2880 a day by default,
//!   [`Handle::set_rate_limit`]) 429 with `Retry-After`, `Discourse-Rate-Limit-Error-Code`
//!   (`user_api_key_limiter_60_secs` / `_1_day`) and `extras {wait_seconds, time_left}`; then the
//!   scopes (`read` only GETs) 403. No key: a GET is anonymous (403 `not_logged_in` from the
//!   plugin), any other method fails CSRF (`["BAD CSRF"]`, text).
//! * **Formats**: GETs that are neither `.json` nor asking for JSON (Rails' reading of `Accept`,
//!   `?format=`, `X-Requested-With`) get the HTML app shell (`check_xhr`); core errors are HTML
//!   pages for requests that do not take JSON. A missing room is Rails' own
//!   `{"status":404,"error":"Not Found"}`; a missing param `{"errors":[…]}` without `error_type`.
//! * **Guardian**: joining needs a public room, a membership or the manage permission; managing
//!   needs a "manager" user ([`Handle::add_user`]), the creator or a `moderator` membership;
//!   unmuting on a stage needs an admin or a speaking membership. Every room has a creator (the
//!   system user, id `-1`, unless [`NewRoom::creator`] says) with a `moderator` membership.
//! * **Presence** is the plugin's Redis: one participants set and one metadata hash per room,
//!   each expiring as a whole `audioroom_participant_ttl_seconds` (30 s,
//!   [`Handle::set_presence_ttl`]) after the room's last join or heartbeat — one user who stops
//!   beating stays listed while others beat. The metadata holds only the keys written: a join
//!   writes `{role, session_id}` (replacing what was there), `toggle_mute` `is_muted` /
//!   `is_deafened`, hands `hand_raised`, `hard_mute` `hard_muted`, heartbeats `idle_state`.
//! * **Roles**: at join the creator is `moderator`; on a stage a speaking membership names
//!   itself and anyone else is a `listener`; in an open room everyone else is a `participant`.
//!   A membership change for a present user writes the membership's name (`participant`, even
//!   on a stage) and sends LiveKit the broadcast role (`listener` there).
//! * **Join** (403 banned / kicked, 409 in another room, 422 full), `CreateRoom` in LiveKit, and
//!   a token minted as livekit-server-sdk 0.9.0 does: 600 s TTL, `nbf` 5 s back, identity =
//!   user id, name = username, room = slug, metadata `{username,name,avatar_template,role}`, no
//!   `roomAdmin`; `null` when LiveKit is not configured ([`Handle::set_livekit_configured`]).
//! * **Moderation** drives LiveKit like the plugin's `RoomServiceClient`: `mute_participant`
//!   mutes the audio track (`GetParticipant` + `MutePublishedTrack`, 422 when that fails);
//!   `hard_mute`, `hard_unmute` and membership changes for present users `UpdateParticipant`,
//!   each permission whole, failures logged and recorded ([`Handle::livekit_updates`]), never
//!   an HTTP error. Kick (300 s) and ban tell only the removed user (`kicked`) and do not evict.
//! * **Invite links** make the visitor a `participant` member of any room they may join and
//!   always answer `requires_confirmation: false` (the plugin's stage check never matches).
//! * **MessageBus** ([`bus`]): per-channel ids, `/__status`, addressed messages (`participants`
//!   to trust level 0 or the members of a private room, `role_change` to those present,
//!   `kicked` to one user), anonymous polls for bad or limited keys, long polls (25 s,
//!   [`Handle::set_long_poll`]), `?dlp=t`, chunked streaming unless `Dont-Chunk`.
//! * `/user-api-key/new` ([`user_api_key`]) approves at once as [`Handle::set_approving_user`]
//!   and redirects with the encrypted payload (a test shortcut for the approval page).
//!
//! Not modelled: room CRUD, follows, livestreams, contacts, the admin routes; the LiveKit
//! webhook is simulated by [`Handle::livekit_participant_left`] / `…_joined`; the
//! once-a-minute `publish_room_participants` job does not run.
//!
//! Layout: `state` holds the forum's data and the rules read from it (Guardian, the join-time
//! role, Redis expiry, rate limits); `routes` maps each endpoint to its handler, `moderation`
//! holds the handlers that need the manage permission; `layers` holds what runs around the
//! routes (the `.json` suffix, recording, forced failures, format negotiation, the
//! `User-Api-Key`, `check_xhr`); `params` reads Rails-style params; `responses` renders the
//! serializers' JSON shapes and the error bodies; `bus` is MessageBus and [`user_api_key`] the
//! key-issuing page.

mod bus;
mod layers;
mod moderation;
mod params;
mod responses;
mod routes;
mod state;
#[cfg(test)]
mod tests;
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
    /// The creator (who gets a `moderator` membership); `None` is the system user (id `-1`),
    /// as for the room the plugin seeds.
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

/// A present participant's metadata, for assertions: each field is `None` until a request wrote
/// that key (or when it holds `null`), as in the plugin's Redis hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Presence {
    pub role: Option<String>,
    pub session_id: Option<u64>,
    pub muted: Option<bool>,
    pub deafened: Option<bool>,
    pub hand_raised: Option<bool>,
    pub hard_muted: Option<bool>,
    pub idle_state: Option<String>,
    pub skip_status: Option<bool>,
    /// Every key, as the participants list merges it.
    pub metadata: serde_json::Map<String, Value>,
}

impl Presence {
    fn from_metadata(metadata: serde_json::Map<String, Value>) -> Presence {
        let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_string);
        let flag = |key: &str| metadata.get(key).and_then(Value::as_bool);
        Presence {
            role: text("role"),
            session_id: metadata.get("session_id").and_then(Value::as_u64),
            muted: flag("is_muted"),
            deafened: flag("is_deafened"),
            hand_raised: flag("hand_raised"),
            hard_muted: flag("hard_muted"),
            idle_state: text("idle_state"),
            skip_status: flag("skip_status"),
            metadata,
        }
    }
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

/// Another RoomService call the forum made (`CreateRoom` on join, `MutePublishedTrack` — after
/// its `GetParticipant` — for `mute_participant`), and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivekitCall {
    pub method: &'static str,
    /// The LiveKit room: the forum room's slug.
    pub room: String,
    /// The LiveKit identity, for calls about a participant.
    pub identity: Option<String>,
    /// `Err` with what went wrong (LiveKit's answer, no audio track, the transport).
    pub outcome: Result<(), String>,
}

impl LivekitCall {
    fn new(method: &'static str, room: &Room, identity: Option<i64>, outcome: Result<(), String>) -> LivekitCall {
        LivekitCall { method, room: room.slug.clone(), identity: identity.map(|id| id.to_string()), outcome }
    }
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

/// Starts an empty forum on a loopback port: only the system user, no rooms, LiveKit
/// configured with `keys`.
pub async fn start(keys: LivekitKeys) -> std::io::Result<(Running, Handle)> {
    let shared = Arc::new(Shared::new(keys));
    let running = serve(routes::router(Arc::clone(&shared))).await?;
    Ok((running, Handle { shared }))
}

/// A forum user id from a [`TestUser::id`] (users the tests make are positive).
fn user_id(user: u64) -> i64 {
    i64::try_from(user).unwrap_or(i64::MAX)
}

impl Handle {
    fn state(&self) -> MutexGuard<'_, Forum> {
        self.shared.lock()
    }

    /// Runs `change` on the forum the way a request does, waking held MessageBus polls after.
    fn change<T>(&self, change: impl FnOnce(&mut Forum) -> T) -> T {
        self.shared.change(change)
    }

    /// A user with a `write` key. `name` empty: a user who never gave one (`name: null`).
    /// `manager`: in `audioroom_create_room_allowed_groups`, so allowed to manage every room.
    pub fn add_user(&self, username: &str, name: &str, manager: bool) -> TestUser {
        let mut state = self.state();
        let id = state.next_user_id();
        let name = Some(name.to_string()).filter(|name| !name.is_empty());
        state.users.insert(id, User { id, username: username.into(), name, manager, admin: false });
        let api_key = format!("key-{username}-{}", random_hex(8));
        state.api_keys.insert(api_key.clone(), ApiKey { user_id: id, scopes: vec!["write".into()], client_id: None });
        TestUser { id: u64::try_from(id).unwrap_or_default(), username: username.into(), api_key }
    }

    /// Makes `user` a site admin (and so a manager): admins may also speak on every stage.
    pub fn make_admin(&self, user: u64) {
        if let Some(found) = self.state().users.get_mut(&user_id(user)) {
            found.admin = true;
            found.manager = true;
        }
    }

    /// Another key for `user` with the given scopes (e.g. `["read"]`).
    pub fn add_key(&self, user: u64, scopes: &[&str]) -> String {
        let key = format!("key-{user}-{}", random_hex(8));
        let scopes = scopes.iter().map(|scope| scope.to_string()).collect();
        self.state().api_keys.insert(key.clone(), ApiKey { user_id: user_id(user), scopes, client_id: None });
        key
    }

    /// Creates the room and, as the model's `after_commit`, its creator's `moderator`
    /// membership.
    pub fn add_room(&self, room: NewRoom) -> u64 {
        let mut state = self.state();
        let id = state.next_room_id();
        let creator = room.creator.map(user_id).unwrap_or(state::SYSTEM_USER_ID);
        let invite_token = invite_token();
        state.rooms.insert(
            id,
            Room {
                id,
                slug: room.slug,
                name: room.name,
                stage: room.stage,
                public: room.public,
                max_participants: room.max_participants,
                creator,
                invite_token,
            },
        );
        state.ensure_membership(id, creator, MembershipRole::Moderator);
        id
    }

    /// The room's invite link token (the model's `invite_token`).
    pub fn invite_token(&self, room: u64) -> String {
        self.state().rooms.get(&room).map(|room| room.invite_token.clone()).unwrap_or_default()
    }

    /// Creates or changes `user`'s membership (`participant`, `speaker`, `moderator`; anything
    /// else is `participant`), without the live update an API call makes.
    pub fn set_membership(&self, room: u64, user: u64, role: &str) {
        let role = MembershipRole::value(Some(&Value::String(role.into())));
        self.state().upsert_membership(room, user_id(user), role);
    }

    /// Makes `user` present in `room` as a join would (another client in the room): tracked,
    /// a session, `{role, session_id}` metadata, and the participants published.
    pub fn set_present(&self, room: u64, user: u64) {
        let user = user_id(user);
        self.change(|forum| {
            let Some(found) = forum.rooms.get(&room).cloned() else { return };
            let now = Instant::now();
            forum.track(room, user, now);
            let role = forum.join_role(&found, user);
            let session = forum.open_session(room, user);
            let mut metadata = serde_json::Map::new();
            metadata.insert("role".into(), Value::from(role));
            metadata.insert("session_id".into(), Value::from(session));
            forum.set_metadata(room, user, metadata, now);
            forum.publish_participants(room);
        });
    }

    /// What the plugin's webhook does on LiveKit's `participant_left`: the session closes, the
    /// user leaves the participants set, and the room hears of it. A crashed client is only
    /// removed this way (or when the whole room's presence expires).
    pub fn livekit_participant_left(&self, room: u64, user: u64) {
        let user = user_id(user);
        self.change(|forum| {
            if forum.is_tracked(room, user) {
                forum.close_session_for(room, user);
                forum.untrack(room, user);
                forum.publish_participants(room);
            }
        });
    }

    /// What the plugin's webhook does on LiveKit's `participant_joined`: the user is tracked
    /// again (with whatever metadata is left) and the room hears of it.
    pub fn livekit_participant_joined(&self, room: u64, user: u64) {
        let user = user_id(user);
        self.change(|forum| {
            forum.track(room, user, Instant::now());
            forum.publish_participants(room);
        });
    }

    /// Without LiveKit credentials the forum answers joins with `livekit_token: null` and makes
    /// no RoomService call (`mute_participant` then answers 422).
    pub fn set_livekit_configured(&self, configured: bool) {
        self.state().livekit_configured = configured;
    }

    pub fn set_rate_limit(&self, per_minute: u32, per_day: u32) {
        let mut state = self.state();
        state.per_minute = per_minute;
        state.per_day = per_day;
    }

    /// `audioroom_participant_ttl_seconds`, applied from the next join or heartbeat on.
    pub fn set_presence_ttl(&self, ttl: Duration) {
        self.state().presence_ttl = ttl;
    }

    pub fn set_long_poll(&self, duration: Duration) {
        self.state().long_poll = duration;
    }

    /// The user logged in in "the browser" that `/user-api-key/new` approves for; `None`
    /// redirects to `/login`.
    pub fn set_approving_user(&self, user: Option<u64>) {
        self.state().approving_user = user.map(user_id);
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
        self.change(|forum| forum.bus.publish(&format!("/audioroom/rooms/{room}"), data, bus::Audience::Everyone));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state().requests.clone()
    }

    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<SeenRequest> {
        self.state().requests.iter().filter(|request| request.endpoint == Some(endpoint)).cloned().collect()
    }

    /// Heartbeats the forum accepted from `user` in `room`.
    pub fn heartbeats(&self, room: u64, user: u64) -> u32 {
        self.state().heartbeats.get(&(room, user_id(user))).copied().unwrap_or(0)
    }

    /// Who is in the room's participants set now (an expired set is empty).
    pub fn present(&self, room: u64) -> Vec<u64> {
        let mut state = self.state();
        state.prune(Instant::now());
        state.tracked_users(room).into_iter().filter_map(|id| u64::try_from(id).ok()).collect()
    }

    /// `user`'s metadata while they are in the participants set.
    pub fn presence(&self, room: u64, user: u64) -> Option<Presence> {
        let user = user_id(user);
        let mut state = self.state();
        state.prune(Instant::now());
        state.is_tracked(room, user).then(|| Presence::from_metadata(state.metadata(room, user)))
    }

    pub fn is_kicked(&self, room: u64, user: u64) -> bool {
        self.state().is_kicked(room, user_id(user), Instant::now())
    }

    pub fn is_banned(&self, room: u64, user: u64) -> bool {
        self.state().banned.contains(&(room, user_id(user)))
    }

    /// `participant`, `speaker` or `moderator`.
    pub fn membership_role(&self, room: u64, user: u64) -> Option<&'static str> {
        self.state().membership(room, user_id(user)).map(|membership| membership.role.name())
    }

    /// Sessions `user` opened in `room` (`visit_count`): one per join.
    pub fn visits(&self, room: u64, user: u64) -> usize {
        self.state().visit_count(room, user_id(user))
    }

    pub fn issued_keys(&self) -> Vec<IssuedKey> {
        self.state().issued.clone()
    }

    /// The RoomService `UpdateParticipant` calls made so far, in order, with LiveKit's answers.
    pub fn livekit_updates(&self) -> Vec<LivekitUpdate> {
        self.state().livekit_updates.clone()
    }

    /// The other RoomService calls made so far (`CreateRoom`, `MutePublishedTrack`), in order.
    pub fn livekit_calls(&self) -> Vec<LivekitCall> {
        self.state().livekit_calls.clone()
    }

    /// Whether `key` is a key the forum currently accepts.
    pub fn key_is_valid(&self, key: &str) -> bool {
        self.state().api_keys.contains_key(key)
    }
}

/// `SecureRandom.urlsafe_base64(12)`: 16 URL-safe characters.
fn invite_token() -> String {
    use base64::Engine as _;
    use rsa::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `bytes` random bytes as hex (keys, ids).
pub(crate) fn random_hex(bytes: usize) -> String {
    use rsa::rand_core::{OsRng, RngCore};
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}
