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

mod bus;
pub mod user_api_key;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{LivekitKeys, PublishRights, Running, serve};

/// `max_user_api_reqs_per_minute` / `_per_day` defaults (`config/discourse_defaults.conf`).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 20;
pub const DEFAULT_REQUESTS_PER_DAY: u32 = 2880;
/// `audioroom_participant_ttl_seconds`.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(30);
/// MessageBus's long-poll duration.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(25);
/// How long a kick keeps a user out (Redis key TTL).
const KICK_DURATION: Duration = Duration::from_secs(300);
/// The Ruby SDK's default token TTL (§1.3).
const TOKEN_TTL: Duration = Duration::from_secs(14_400);
const INVALID_ACCESS: &str = "You are not permitted to view the requested resource.";
const NOT_LOGGED_IN: &str = "You need to be logged in to do that.";
const NOT_FOUND: &str = "The requested URL or resource could not be found.";

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
        parse_params(self.query.as_deref(), self.header("content-type"), self.body.as_bytes())
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

#[derive(Debug, Clone)]
struct User {
    id: u64,
    username: String,
    name: String,
    /// In `audioroom_create_room_allowed_groups`: manages every room.
    manager: bool,
}

#[derive(Debug, Clone)]
struct Room {
    id: u64,
    slug: String,
    name: String,
    stage: bool,
    public: bool,
    max_participants: Option<u32>,
    creator: Option<u64>,
}

#[derive(Debug, Clone)]
struct Membership {
    id: u64,
    room_id: u64,
    user_id: u64,
    role: MembershipRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MembershipRole {
    Participant,
    Moderator,
    Speaker,
}

impl MembershipRole {
    fn parse(text: &str) -> Option<MembershipRole> {
        match text {
            "participant" | "0" => Some(MembershipRole::Participant),
            "moderator" | "1" => Some(MembershipRole::Moderator),
            "speaker" | "2" => Some(MembershipRole::Speaker),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MembershipRole::Participant => "participant",
            MembershipRole::Moderator => "moderator",
            MembershipRole::Speaker => "speaker",
        }
    }

    /// The integer enum value the serializer sends as `role`.
    fn number(self) -> u8 {
        match self {
            MembershipRole::Participant => 0,
            MembershipRole::Moderator => 1,
            MembershipRole::Speaker => 2,
        }
    }
}

#[derive(Debug, Clone)]
struct ApiKey {
    user_id: u64,
    scopes: Vec<String>,
    client_id: Option<String>,
}

struct Shared {
    state: Mutex<ServerState>,
    /// Wakes held MessageBus polls when something is published.
    published: Notify,
    keys: LivekitKeys,
}

struct ServerState {
    next_id: u64,
    users: BTreeMap<u64, User>,
    api_keys: HashMap<String, ApiKey>,
    rooms: BTreeMap<u64, Room>,
    memberships: Vec<Membership>,
    presence: HashMap<u64, BTreeMap<u64, Presence>>,
    kicked: HashMap<(u64, u64), Instant>,
    banned: HashSet<(u64, u64)>,
    heartbeats: HashMap<(u64, u64), u32>,
    livekit_configured: bool,
    presence_ttl: Duration,
    long_poll: Duration,
    per_minute: u32,
    per_day: u32,
    usage: HashMap<String, VecDeque<Instant>>,
    forced: HashMap<Endpoint, VecDeque<Forced>>,
    requests: Vec<SeenRequest>,
    bus: bus::Bus,
    approving_user: Option<u64>,
    allowed_redirects: Vec<String>,
    issued: Vec<IssuedKey>,
    /// Invite token → room id.
    invites: HashMap<String, u64>,
    livekit_updates: Vec<LivekitUpdate>,
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
    let shared = Arc::new(Shared {
        state: Mutex::new(ServerState {
            next_id: 1,
            users: BTreeMap::new(),
            api_keys: HashMap::new(),
            rooms: BTreeMap::new(),
            memberships: Vec::new(),
            presence: HashMap::new(),
            kicked: HashMap::new(),
            banned: HashSet::new(),
            heartbeats: HashMap::new(),
            livekit_configured: true,
            presence_ttl: DEFAULT_PRESENCE_TTL,
            long_poll: DEFAULT_LONG_POLL,
            per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            per_day: DEFAULT_REQUESTS_PER_DAY,
            usage: HashMap::new(),
            forced: HashMap::new(),
            requests: Vec::new(),
            bus: bus::Bus::default(),
            approving_user: None,
            allowed_redirects: vec!["discourse://auth_redirect".into()],
            issued: Vec::new(),
            invites: HashMap::new(),
            livekit_updates: Vec::new(),
        }),
        published: Notify::new(),
        keys,
    });
    let router = axum::Router::new().fallback(dispatch).with_state(shared.clone());
    let running = serve(router).await?;
    Ok((running, Handle { shared }))
}

impl Handle {
    fn state(&self) -> MutexGuard<'_, ServerState> {
        lock(&self.shared)
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

fn lock(shared: &Shared) -> MutexGuard<'_, ServerState> {
    // A panicking handler leaves consistent-enough test state; keep serving.
    shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LivekitUpdate {
    /// An update of `user` in `room`'s LiveKit room that changes nothing yet.
    fn new(room: &Room, user: u64) -> LivekitUpdate {
        LivekitUpdate {
            room: room.slug.clone(),
            identity: user.to_string(),
            metadata: None,
            permission: None,
            outcome: Ok(()),
        }
    }

    fn permission(room: &Room, user: u64, rights: PublishRights) -> LivekitUpdate {
        LivekitUpdate { permission: Some(rights), ..LivekitUpdate::new(room, user) }
    }
}

impl Presence {
    fn new(role: String) -> Presence {
        Presence {
            role,
            muted: false,
            deafened: false,
            hand_raised: false,
            hard_muted: false,
            idle_state: "active".into(),
            last_seen: Instant::now(),
        }
    }
}

impl ServerState {
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn find_room(&self, id_or_slug: &str) -> Option<Room> {
        // `load_room`: `find_by(id:) || find_by!(slug:)`.
        let by_id = id_or_slug.parse::<u64>().ok().and_then(|id| self.rooms.get(&id));
        by_id.or_else(|| self.rooms.values().find(|room| room.slug == id_or_slug)).cloned()
    }

    fn membership(&self, room: u64, user: u64) -> Option<&Membership> {
        self.memberships.iter().find(|membership| membership.room_id == room && membership.user_id == user)
    }

    fn upsert_membership(&mut self, room: u64, user: u64, role: MembershipRole) -> Membership {
        if let Some(existing) =
            self.memberships.iter_mut().find(|membership| membership.room_id == room && membership.user_id == user)
        {
            existing.role = role;
            return existing.clone();
        }
        let membership = Membership { id: self.take_id(), room_id: room, user_id: user, role };
        self.memberships.push(membership.clone());
        membership
    }

    fn can_manage(&self, room: &Room, user: &User) -> bool {
        user.manager
            || room.creator == Some(user.id)
            || self.membership(room.id, user.id).is_some_and(|membership| membership.role == MembershipRole::Moderator)
    }

    fn can_join(&self, room: &Room, user: &User) -> bool {
        room.public || self.membership(room.id, user.id).is_some() || self.can_manage(room, user)
    }

    fn is_kicked(&self, room: u64, user: u64, now: Instant) -> bool {
        self.kicked.get(&(room, user)).is_some_and(|until| *until > now)
    }

    /// The participant role at join time (§1.2 "Participant").
    fn join_role(&self, room_id: u64, user: u64) -> String {
        let Some(room) = self.rooms.get(&room_id) else { return "participant".into() };
        let membership = self.membership(room_id, user).map(|membership| membership.role);
        if room.creator == Some(user) || membership == Some(MembershipRole::Moderator) {
            return "moderator".into();
        }
        presence_role(room.stage, membership.unwrap_or(MembershipRole::Participant)).into()
    }

    /// Drops presence older than the TTL and tells each affected room.
    fn prune(&mut self, now: Instant) {
        let ttl = self.presence_ttl;
        let mut changed = Vec::new();
        for (room, present) in &mut self.presence {
            let before = present.len();
            present.retain(|_, presence| now.duration_since(presence.last_seen) < ttl);
            if present.len() != before {
                changed.push(*room);
            }
        }
        for room in changed {
            self.publish_participants(room);
        }
    }

    fn present_in_other_room(&self, user: u64, room: u64) -> Option<Room> {
        self.presence
            .iter()
            .filter(|(other, present)| **other != room && present.contains_key(&user))
            .find_map(|(other, _)| self.rooms.get(other).cloned())
    }

    fn participants_json(&self, room: u64) -> Vec<Value> {
        let Some(present) = self.presence.get(&room) else { return Vec::new() };
        present
            .iter()
            .filter_map(|(user, presence)| {
                let user = self.users.get(user)?;
                let mut json = basic_user(user);
                json["role"] = json!(presence.role);
                json["is_muted"] = json!(presence.muted);
                json["is_deafened"] = json!(presence.deafened);
                json["hand_raised"] = json!(presence.hand_raised);
                json["hard_muted"] = json!(presence.hard_muted);
                json["idle_state"] = json!(presence.idle_state);
                Some(json)
            })
            .collect()
    }

    fn publish_participants(&mut self, room: u64) {
        let participants = self.participants_json(room);
        let data = json!({ "type": "participants", "room_id": room, "participants": participants });
        self.bus.publish(&format!("/audioroom/rooms/{room}"), data, None);
    }

    fn membership_json(&self, membership: &Membership) -> Value {
        let user = self.users.get(&membership.user_id).map(basic_user).unwrap_or(Value::Null);
        json!({
            "id": membership.id,
            "room_id": membership.room_id,
            "user_id": membership.user_id,
            "role": membership.role.number(),
            "role_name": membership.role.name(),
            "created_at": "2025-01-01T00:00:00.000Z",
            "updated_at": "2025-01-01T00:00:00.000Z",
            "user": user,
        })
    }

    fn room_json(&self, room: &Room, viewer: &User) -> Value {
        let participants = self.participants_json(room.id);
        let membership = self.membership(room.id, viewer.id).map(|membership| self.membership_json(membership));
        let member_count = self.memberships.iter().filter(|membership| membership.room_id == room.id).count();
        json!({
            "id": room.id,
            "name": room.name,
            "slug": room.slug,
            "description": format!("About {}", room.name),
            "cooked_description": format!("<p>About {}</p>", room.name),
            "description_excerpt": format!("About {}", room.name),
            "public": room.public,
            "room_type": if room.stage { "stage" } else { "open" },
            "max_participants": room.max_participants,
            "created_at": "2025-01-01T00:00:00.000Z",
            "updated_at": "2025-01-01T00:00:00.000Z",
            "member_count": member_count,
            "active_participants": participants,
            "creator_id": room.creator,
            "can_manage": self.can_manage(room, viewer),
            "live": false,
            "broadcast_layout": "speaker",
            "schedule": null,
            "next_session_at": null,
            "topic_id": null,
            "topic_url": null,
            "is_following": false,
            "broadcast_background": null,
            "broadcast_watermark": null,
            "has_youtube_stream_key": false,
            "archived": false,
            "membership": membership,
        })
    }

    /// Counts a request against the key's limits; `Err(wait, code)` when over.
    fn rate_limit(&mut self, key: &str, now: Instant) -> Result<(), (u64, &'static str)> {
        let (per_minute, per_day) = (self.per_minute, self.per_day);
        let usage = self.usage.entry(key.to_string()).or_default();
        while usage.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(86_400)) {
            usage.pop_front();
        }
        let minute = Duration::from_secs(60);
        let last_minute: Vec<&Instant> = usage.iter().filter(|at| now.duration_since(**at) < minute).collect();
        if last_minute.len() >= per_minute as usize {
            let oldest = last_minute.first().map(|at| now.duration_since(**at)).unwrap_or_default();
            return Err((minute.saturating_sub(oldest).as_secs().max(1), "user_api_min"));
        }
        if usage.len() >= per_day as usize {
            let oldest = usage.front().map(|at| now.duration_since(*at)).unwrap_or_default();
            return Err((Duration::from_secs(86_400).saturating_sub(oldest).as_secs().max(1), "user_api_day"));
        }
        usage.push_back(now);
        Ok(())
    }
}

fn presence_role(stage: bool, membership: MembershipRole) -> &'static str {
    match (stage, membership) {
        (_, MembershipRole::Moderator) => "moderator",
        (true, MembershipRole::Speaker) => "speaker",
        (true, MembershipRole::Participant) => "listener",
        (false, _) => "participant",
    }
}

fn basic_user(user: &User) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "avatar_template": format!("/user_avatar/forum/{}/{{size}}/{}_2.png", user.username.to_lowercase(), user.id),
    })
}

/// `bytes` random bytes as hex (keys, ids).
pub(crate) fn random_hex(bytes: usize) -> String {
    use rsa::rand_core::{OsRng, RngCore};
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

/// Discourse core's `render_json_error` shape.
fn discourse_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    json_response(status, json!({ "errors": [message], "error_type": error_type }))
}

/// The plugin's own `{error}` shape.
fn plugin_error(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "error": message }))
}

fn invalid_access() -> Response {
    discourse_error(StatusCode::FORBIDDEN, "invalid_access", INVALID_ACCESS)
}

fn not_found() -> Response {
    discourse_error(StatusCode::NOT_FOUND, "not_found", NOT_FOUND)
}

fn param_missing(name: &str) -> Response {
    discourse_error(
        StatusCode::BAD_REQUEST,
        "invalid_parameters",
        &format!("param is missing or the value is empty: {name}"),
    )
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn success_ok() -> Response {
    json_response(StatusCode::OK, json!({ "success": "OK" }))
}

/// What `check_xhr` renders for a GET that is neither `.json` nor XHR: the Ember app shell.
fn html_shell() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html>\n<html lang=\"en\"><head><title>Forum</title></head><body><noscript>JavaScript required</noscript></body></html>",
    )
        .into_response()
}

fn forced_response(forced: Forced) -> Response {
    let status = StatusCode::from_u16(forced.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, forced.body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(forced.content_type));
    if let Some(seconds) = forced.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn rate_limited(wait_seconds: u64, code: &str) -> Response {
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "errors": [format!("You’ve performed this action too many times. Please wait {wait_seconds} seconds before trying again.")],
            "error_type": "rate_limit",
            "extras": { "wait_seconds": wait_seconds, "time_left": format!("{wait_seconds} seconds") },
        }),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_seconds));
    if let Ok(code) = HeaderValue::from_str(code) {
        response.headers_mut().insert("Discourse-Rate-Limit-Error-Code", code);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Routing

/// A parsed route: the endpoint and the `:id` / `:room_id` and member id it names.
struct Route {
    endpoint: Endpoint,
    room: Option<String>,
    member: Option<String>,
    /// The path ended in `.json`.
    json_suffix: bool,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let json_suffix = path.ends_with(".json");
    let strip = |segment: &str| segment.strip_suffix(".json").unwrap_or(segment).to_string();
    let plain = |endpoint| Some(Route { endpoint, room: None, member: None, json_suffix });
    let room = |endpoint, room: &str| Some(Route { endpoint, room: Some(strip(room)), member: None, json_suffix });
    match (method.as_str(), segments.as_slice()) {
        ("GET" | "HEAD", ["user-api-key", "new"]) => plain(Endpoint::UserApiKeyNew),
        ("GET", ["session", "current" | "current.json"]) => plain(Endpoint::CurrentSession),
        ("GET", ["u", username]) => {
            Some(Route { endpoint: Endpoint::User, room: None, member: Some(strip(username)), json_suffix })
        }
        ("POST", ["message-bus", _, "poll"]) => plain(Endpoint::Poll),
        ("GET", ["audioroom", "rooms" | "rooms.json"]) => plain(Endpoint::Rooms),
        ("GET", ["audioroom", "invite", token]) => {
            Some(Route { endpoint: Endpoint::Invite, room: None, member: Some(strip(token)), json_suffix })
        }
        ("GET", ["audioroom", "rooms", id]) => room(Endpoint::Room, id),
        ("POST", ["audioroom", "rooms", id, "join"]) => room(Endpoint::Join, id),
        ("POST", ["audioroom", "rooms", id, "heartbeat"]) => room(Endpoint::Heartbeat, id),
        ("DELETE", ["audioroom", "rooms", id, "leave"]) => room(Endpoint::Leave, id),
        ("GET", ["audioroom", "rooms", id, "participants" | "participants.json"]) => room(Endpoint::Participants, id),
        ("POST", ["audioroom", "rooms", id, "toggle_mute"]) => room(Endpoint::ToggleMute, id),
        ("POST", ["audioroom", "rooms", id, "raise_hand"]) => room(Endpoint::RaiseHand, id),
        ("DELETE", ["audioroom", "rooms", id, "raise_hand"]) => room(Endpoint::LowerHand, id),
        ("POST", ["audioroom", "rooms", id, "mute_participant"]) => room(Endpoint::MuteParticipant, id),
        ("POST", ["audioroom", "rooms", id, "hard_mute"]) => room(Endpoint::HardMute, id),
        ("POST", ["audioroom", "rooms", id, "hard_unmute"]) => room(Endpoint::HardUnmute, id),
        ("DELETE", ["audioroom", "rooms", id, "kick"]) => room(Endpoint::Kick, id),
        ("POST", ["audioroom", "rooms", id, "unkick"]) => room(Endpoint::Unkick, id),
        ("POST", ["audioroom", "rooms", id, "ban"]) => room(Endpoint::Ban, id),
        ("DELETE", ["audioroom", "rooms", id, "ban"]) => room(Endpoint::Unban, id),
        ("GET", ["audioroom", "rooms", id, "memberships" | "memberships.json"]) => room(Endpoint::Memberships, id),
        ("POST", ["audioroom", "rooms", id, "memberships"]) => room(Endpoint::CreateMembership, id),
        ("PUT" | "PATCH", ["audioroom", "rooms", id, "memberships", member]) => Some(Route {
            endpoint: Endpoint::UpdateMembership,
            room: Some(id.to_string()),
            member: Some(member.to_string()),
            json_suffix,
        }),
        ("DELETE", ["audioroom", "rooms", id, "memberships", member]) => Some(Route {
            endpoint: Endpoint::DeleteMembership,
            room: Some(id.to_string()),
            member: Some(member.to_string()),
            json_suffix,
        }),
        _ => None,
    }
}

/// Rails' `params`: query string merged with a form or JSON body.
fn parse_params(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> HashMap<String, Value> {
    let mut params: HashMap<String, Value> = HashMap::new();
    let form = |bytes: &[u8], params: &mut HashMap<String, Value>| {
        for (name, value) in url::form_urlencoded::parse(bytes) {
            params.insert(name.into_owned(), Value::String(value.into_owned()));
        }
    };
    if let Some(query) = query {
        form(query.as_bytes(), &mut params);
    }
    let content_type = content_type.unwrap_or_default();
    if content_type.contains("application/json") {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) {
            params.extend(object);
        }
    } else if content_type.contains("application/x-www-form-urlencoded") {
        form(body, &mut params);
    }
    params
}

fn param_u64(params: &HashMap<String, Value>, name: &str) -> Option<u64> {
    match params.get(name)? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn param_str(params: &HashMap<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Rails' boolean casting of a param.
fn param_bool(params: &HashMap<String, Value>, name: &str) -> Option<bool> {
    match params.get(name)? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.as_str() {
            "true" | "1" | "t" => Some(true),
            "false" | "0" | "f" => Some(false),
            _ => None,
        },
        Value::Number(number) => number.as_u64().map(|value| value != 0),
        _ => None,
    }
}

fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
        || headers.get("X-Requested-With").is_some()
}

async fn dispatch(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let route = route(&method, &path);
    let endpoint = route.as_ref().map(|route| route.endpoint);
    let seen = SeenRequest {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        endpoint,
    };
    let params = seen.params();
    {
        let mut state = lock(&shared);
        state.requests.push(seen);
        if let Some(forced) = endpoint.and_then(|endpoint| state.forced.get_mut(&endpoint)?.pop_front()) {
            return forced_response(forced);
        }
    }
    let Some(route) = route else { return not_found() };
    if route.endpoint == Endpoint::UserApiKeyNew {
        return user_api_key::new_key(&shared, &method, &params, &headers);
    }
    if method == Method::GET && !route.json_suffix && !accepts_json(&headers) {
        return html_shell();
    }
    let user = match authenticate(&shared, &headers, &method, route.endpoint) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    if route.endpoint == Endpoint::Poll {
        let dlp = query.as_deref().is_some_and(|query| query.split('&').any(|pair| pair == "dlp=t"));
        let chunked = headers.get("Dont-Chunk").is_none();
        return bus::poll(&shared, &user, &params, dlp, chunked).await;
    }
    let mut updates = Vec::new();
    let response = {
        let mut state = lock(&shared);
        state.prune(Instant::now());
        handle(&mut state, &shared.keys, &user, &route, &params, &mut updates)
    };
    // Anything may have published (participants, role changes, kicks).
    shared.published.notify_waiters();
    // The plugin calls LiveKit inside the request, after its own state changed, and answers
    // whatever LiveKit said.
    for mut update in updates {
        let outcome = shared
            .keys
            .update_participant(&update.room, &update.identity, update.metadata.as_deref(), update.permission)
            .await;
        if let Err(error) = &outcome {
            tracing::warn!(room = %update.room, identity = %update.identity, %error, "LiveKit UpdateParticipant failed");
        }
        update.outcome = outcome;
        lock(&shared).livekit_updates.push(update);
    }
    response
}

/// Finds the key's user and counts the request against the key's limits.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    method: &Method,
    endpoint: Endpoint,
) -> Result<User, Box<Response>> {
    let Some(key) = headers.get("User-Api-Key").and_then(|value| value.to_str().ok()).map(str::trim) else {
        return Err(Box::new(discourse_error(StatusCode::FORBIDDEN, "not_logged_in", NOT_LOGGED_IN)));
    };
    let mut state = lock(shared);
    let Some(api_key) = state.api_keys.get(key).cloned() else { return Err(Box::new(invalid_access())) };
    // `UserApiKeyScope`: `read` allows GETs, `message_bus` allows polling, `write` everything.
    let allowed = api_key.scopes.iter().any(|scope| match scope.as_str() {
        "write" => true,
        "read" => *method == Method::GET,
        "message_bus" => endpoint == Endpoint::Poll,
        _ => false,
    });
    if !allowed {
        return Err(Box::new(invalid_access()));
    }
    if let Err((wait, code)) = state.rate_limit(key, Instant::now()) {
        return Err(Box::new(rate_limited(wait, code)));
    }
    state.users.get(&api_key.user_id).cloned().ok_or_else(|| Box::new(invalid_access()))
}

/// Answers one request from the forum's state. RoomService calls the answer implies are added
/// to `updates`, for the caller to make once the state lock is released.
fn handle(
    state: &mut ServerState,
    keys: &LivekitKeys,
    user: &User,
    route: &Route,
    params: &HashMap<String, Value>,
    updates: &mut Vec<LivekitUpdate>,
) -> Response {
    match route.endpoint {
        Endpoint::CurrentSession => {
            return json_response(StatusCode::OK, json!({ "current_user": basic_user(user) }));
        }
        Endpoint::User => {
            let username = route.member.clone().unwrap_or_default();
            return match state.users.values().find(|other| other.username.eq_ignore_ascii_case(&username)) {
                Some(other) => json_response(StatusCode::OK, json!({ "user": basic_user(other) })),
                None => not_found(),
            };
        }
        Endpoint::Invite => {
            // `room_invite#show`: open rooms make the visitor a participant member at once;
            // stage rooms ask the client to confirm by joining.
            let token = route.member.clone().unwrap_or_default();
            let Some(room) = state.invites.get(&token).and_then(|id| state.rooms.get(id)).cloned() else {
                return not_found();
            };
            if !room.stage && state.membership(room.id, user.id).is_none() {
                state.upsert_membership(room.id, user.id, MembershipRole::Participant);
            }
            let room_json = state.room_json(&room, user);
            return json_response(StatusCode::OK, json!({ "room": room_json, "requires_confirmation": room.stage }));
        }
        Endpoint::Rooms => {
            let rooms: Vec<Value> = state
                .rooms
                .values()
                .filter(|room| state.can_join(room, user) || state.can_manage(room, user))
                .map(|room| state.room_json(room, user))
                .collect();
            return json_response(StatusCode::OK, json!({ "rooms": rooms, "can_create_room": user.manager }));
        }
        _ => {}
    }
    let Some(room) = route.room.as_deref().and_then(|room| state.find_room(room)) else { return not_found() };
    let now = Instant::now();
    match route.endpoint {
        Endpoint::Room => {
            if !state.can_join(&room, user) {
                return invalid_access();
            }
            let mut room_json = state.room_json(&room, user);
            room_json["visit_count"] = json!(0);
            json_response(StatusCode::OK, json!({ "room": room_json }))
        }
        Endpoint::Join => join(state, keys, user, &room, now),
        Endpoint::Heartbeat => {
            if state.banned.contains(&(room.id, user.id)) || state.is_kicked(room.id, user.id, now) {
                return plugin_error(StatusCode::FORBIDDEN, "You are not allowed to be in this room.");
            }
            *state.heartbeats.entry((room.id, user.id)).or_default() += 1;
            let idle_state = param_str(params, "idle_state").unwrap_or_else(|| "active".into());
            let role = state.join_role(room.id, user.id);
            let present = state.presence.entry(room.id).or_default();
            let fresh = !present.contains_key(&user.id);
            let presence = present.entry(user.id).or_insert_with(|| Presence::new(role));
            presence.last_seen = now;
            presence.idle_state = idle_state;
            if fresh {
                state.publish_participants(room.id);
            }
            no_content()
        }
        Endpoint::Leave => {
            if state.presence.get_mut(&room.id).and_then(|present| present.remove(&user.id)).is_some() {
                state.publish_participants(room.id);
            }
            no_content()
        }
        Endpoint::Participants => {
            if !state.can_join(&room, user) {
                return invalid_access();
            }
            json_response(StatusCode::OK, json!({ "participants": state.participants_json(room.id) }))
        }
        Endpoint::ToggleMute => {
            let muted = param_bool(params, "muted");
            let deafened = param_bool(params, "deafened");
            let Some(presence) = state.presence.get_mut(&room.id).and_then(|present| present.get_mut(&user.id)) else {
                return plugin_error(StatusCode::UNPROCESSABLE_ENTITY, "You are not in this room.");
            };
            if room.stage && presence.role == "listener" && muted == Some(false) {
                return plugin_error(StatusCode::FORBIDDEN, "Listeners cannot unmute in a stage room.");
            }
            if let Some(muted) = muted {
                presence.muted = muted;
            }
            if let Some(deafened) = deafened {
                presence.deafened = deafened;
            }
            state.publish_participants(room.id);
            no_content()
        }
        Endpoint::RaiseHand | Endpoint::LowerHand => {
            let raise = route.endpoint == Endpoint::RaiseHand;
            if raise && !room.stage {
                return plugin_error(StatusCode::UNPROCESSABLE_ENTITY, "Not a stage room");
            }
            let Some(presence) = state.presence.get_mut(&room.id).and_then(|present| present.get_mut(&user.id)) else {
                return plugin_error(StatusCode::UNPROCESSABLE_ENTITY, "You are not in this room.");
            };
            if raise && presence.role != "listener" {
                return plugin_error(StatusCode::UNPROCESSABLE_ENTITY, "Speakers cannot raise their hand.");
            }
            presence.hand_raised = raise;
            state.publish_participants(room.id);
            no_content()
        }
        _ => moderate(state, user, &room, route, params, now, updates),
    }
}

fn join(state: &mut ServerState, keys: &LivekitKeys, user: &User, room: &Room, now: Instant) -> Response {
    if !state.can_join(room, user) {
        return invalid_access();
    }
    if state.banned.contains(&(room.id, user.id)) {
        return plugin_error(StatusCode::FORBIDDEN, "You are banned from this room.");
    }
    if state.is_kicked(room.id, user.id, now) {
        return plugin_error(StatusCode::FORBIDDEN, "You have been kicked from this room. Please try again later.");
    }
    if let Some(other) = state.present_in_other_room(user.id, room.id) {
        return json_response(
            StatusCode::CONFLICT,
            json!({
                "error": "You are already in another room. Leave it first.",
                "conflicting_room_id": other.id,
                "conflicting_room_name": other.name,
            }),
        );
    }
    let present = state.presence.get(&room.id).map(|present| present.len()).unwrap_or(0);
    let already = state.presence.get(&room.id).is_some_and(|present| present.contains_key(&user.id));
    let full = room.max_participants.filter(|max| *max > 0).is_some_and(|max| present >= max as usize);
    if full && !already {
        return plugin_error(StatusCode::UNPROCESSABLE_ENTITY, "This room is full.");
    }
    let role = state.join_role(room.id, user.id);
    let entry =
        state.presence.entry(room.id).or_default().entry(user.id).or_insert_with(|| Presence::new(role.clone()));
    entry.last_seen = now;
    state.publish_participants(room.id);
    let token = if state.livekit_configured {
        match mint(keys, user, room, &role) {
            Ok(token) => Value::String(token),
            Err(message) => return plugin_error(StatusCode::INTERNAL_SERVER_ERROR, &message),
        }
    } else {
        Value::Null
    };
    json_response(
        StatusCode::OK,
        json!({ "room": state.room_json(room, user), "livekit_token": token, "livekit_url": keys.url }),
    )
}

/// `generate_livekit_token` (§1.3).
fn mint(keys: &LivekitKeys, user: &User, room: &Room, role: &str) -> Result<String, String> {
    let speaks = matches!(role, "moderator" | "speaker");
    let metadata = json!({
        "username": user.username,
        "name": user.name,
        "avatar_template": basic_user(user)["avatar_template"],
        "role": role,
    });
    let grants = VideoGrants {
        room_join: true,
        room: room.slug.clone(),
        can_publish: Some(if room.stage { speaks } else { true }),
        can_subscribe: Some(true),
        can_publish_data: Some(speaks),
        ..Default::default()
    };
    AccessToken::with_api_key(&keys.api_key, &keys.api_secret)
        .with_identity(&user.id.to_string())
        .with_name(&user.username)
        .with_metadata(&metadata.to_string())
        .with_grants(grants)
        .with_ttl(TOKEN_TTL)
        .to_jwt()
        .map_err(|error| format!("minting the LiveKit token failed: {error}"))
}

/// The manage-permission endpoints.
fn moderate(
    state: &mut ServerState,
    user: &User,
    room: &Room,
    route: &Route,
    params: &HashMap<String, Value>,
    now: Instant,
    updates: &mut Vec<LivekitUpdate>,
) -> Response {
    if !state.can_manage(room, user) {
        return invalid_access();
    }
    match route.endpoint {
        Endpoint::Memberships => {
            let memberships: Vec<Value> = state
                .memberships
                .iter()
                .filter(|membership| membership.room_id == room.id)
                .map(|membership| state.membership_json(membership))
                .collect();
            return json_response(StatusCode::OK, json!({ "memberships": memberships }));
        }
        Endpoint::CreateMembership => return create_membership(state, room, params, updates),
        Endpoint::UpdateMembership | Endpoint::DeleteMembership => {
            let Some(index) = route.member.as_deref().and_then(|member| member.parse::<u64>().ok()).and_then(|id| {
                state.memberships.iter().position(|membership| membership.id == id && membership.room_id == room.id)
            }) else {
                return not_found();
            };
            if route.endpoint == Endpoint::DeleteMembership {
                state.memberships.remove(index);
                return no_content();
            }
            let Some(role) = param_str(params, "role").and_then(|role| MembershipRole::parse(&role)) else {
                return param_missing("role");
            };
            state.memberships[index].role = role;
            let membership = state.memberships[index].clone();
            return json_response(StatusCode::OK, json!({ "membership": state.membership_json(&membership) }));
        }
        _ => {}
    }
    let Some(target) = param_u64(params, "user_id") else { return param_missing("user_id") };
    if !state.users.contains_key(&target) {
        return not_found();
    }
    match route.endpoint {
        Endpoint::MuteParticipant => {
            let Some(muted) = param_bool(params, "muted") else { return param_missing("muted") };
            let Some(presence) = state.presence.get_mut(&room.id).and_then(|present| present.get_mut(&target)) else {
                return plugin_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Participant is not in the room or has no audio track.",
                );
            };
            presence.muted = muted;
            state.publish_participants(room.id);
            no_content()
        }
        Endpoint::HardMute | Endpoint::HardUnmute => {
            let Some(presence) = state.presence.get_mut(&room.id).and_then(|present| present.get_mut(&target)) else {
                return plugin_error(StatusCode::UNPROCESSABLE_ENTITY, "Participant is not in the room.");
            };
            let muted = route.endpoint == Endpoint::HardMute;
            presence.hard_muted = muted;
            state.publish_participants(room.id);
            // `hard_mute`/`hard_unmute` set both publish rights, in every room type.
            let rights = PublishRights { can_publish: !muted, can_publish_data: !muted };
            updates.push(LivekitUpdate::permission(room, target, rights));
            success_ok()
        }
        Endpoint::Kick | Endpoint::Ban => {
            if target == user.id || room.creator == Some(target) {
                return discourse_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameters",
                    "You cannot remove yourself or the room's creator.",
                );
            }
            if route.endpoint == Endpoint::Kick {
                state.kicked.insert((room.id, target), now + KICK_DURATION);
            } else {
                state.banned.insert((room.id, target));
            }
            if let Some(present) = state.presence.get_mut(&room.id) {
                present.remove(&target);
            }
            let channel = format!("/audioroom/rooms/{}", room.id);
            state.bus.publish(&channel, json!({ "type": "kicked", "room_id": room.id }), Some(vec![target]));
            state.publish_participants(room.id);
            no_content()
        }
        Endpoint::Unkick => {
            state.kicked.remove(&(room.id, target));
            success_ok()
        }
        Endpoint::Unban => {
            state.banned.remove(&(room.id, target));
            success_ok()
        }
        _ => not_found(),
    }
}

/// `POST memberships`: creates or replaces the membership and, for a present user, applies the
/// role live (metadata, `hand_raised: false`, `role_change` event).
fn create_membership(
    state: &mut ServerState,
    room: &Room,
    params: &HashMap<String, Value>,
    updates: &mut Vec<LivekitUpdate>,
) -> Response {
    let target = match (param_u64(params, "user_id"), param_str(params, "username")) {
        (Some(id), _) => state.users.get(&id).cloned(),
        (None, Some(username)) => {
            state.users.values().find(|user| user.username.eq_ignore_ascii_case(&username)).cloned()
        }
        (None, None) => return param_missing("user_id"),
    };
    let Some(target) = target else { return not_found() };
    let Some(role) = param_str(params, "role").and_then(|role| MembershipRole::parse(&role)) else {
        return discourse_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameters",
            "role must be participant, speaker or moderator",
        );
    };
    let membership = state.upsert_membership(room.id, target.id, role);
    let live_role = if room.creator == Some(target.id) { "moderator" } else { presence_role(room.stage, role) };
    if let Some(presence) = state.presence.get_mut(&room.id).and_then(|present| present.get_mut(&target.id)) {
        presence.role = live_role.to_string();
        presence.hand_raised = false;
        let channel = format!("/audioroom/rooms/{}", room.id);
        state.bus.publish(
            &channel,
            json!({ "type": "role_change", "room_id": room.id, "user_id": target.id, "role": live_role }),
            None,
        );
        state.publish_participants(room.id);
        // `sync_livekit_participant_metadata`: the metadata everywhere; the permission in stage
        // rooms, from the membership's role (a creator's too), so that a promoted listener
        // speaks and a demoted speaker falls silent without reconnecting.
        let metadata = json!({
            "username": target.username,
            "name": target.name,
            "avatar_template": basic_user(&target)["avatar_template"],
            "role": live_role,
        });
        updates.push(LivekitUpdate { metadata: Some(metadata.to_string()), ..LivekitUpdate::new(room, target.id) });
        if room.stage {
            let speaks = matches!(role, MembershipRole::Moderator | MembershipRole::Speaker);
            let rights = PublishRights { can_publish: speaks, can_publish_data: speaks };
            updates.push(LivekitUpdate::permission(room, target.id, rights));
        }
    }
    json_response(StatusCode::OK, json!({ "membership": state.membership_json(&membership) }))
}

#[cfg(test)]
mod tests {
    use livekit_api::access_token::TokenVerifier;
    use livekit_protocol as proto;
    use prost::Message as _;

    use super::*;

    const API_KEY: &str = "devkey";
    const API_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    /// What the stand-in LiveKit received: the path, the bearer token and the request.
    type Seen = Arc<Mutex<Vec<(String, String, proto::UpdateParticipantRequest)>>>;

    /// A stand-in for LiveKit's RoomService that records each `UpdateParticipant` and answers
    /// like the real one (a protobuf `ParticipantInfo`).
    async fn fake_livekit() -> (Running, Seen) {
        let seen: Seen = Arc::default();
        let recorded = Arc::clone(&seen);
        let router = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let recorded = Arc::clone(&recorded);
            async move {
                let request =
                    proto::UpdateParticipantRequest::decode(body).expect("a protobuf UpdateParticipantRequest");
                let bearer = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_string();
                recorded.lock().expect("lock").push((uri.path().to_string(), bearer, request));
                let answer = proto::ParticipantInfo::default().encode_to_vec();
                ([(header::CONTENT_TYPE, "application/protobuf")], answer)
            }
        });
        (serve(router).await.expect("the stand-in LiveKit starts"), seen)
    }

    fn keys(url: String) -> LivekitKeys {
        LivekitKeys { url, api_key: API_KEY.into(), api_secret: API_SECRET.into() }
    }

    /// Sends one request through the forum's own dispatcher as `key`.
    async fn call(handle: &Handle, key: &str, method: Method, path: &str, body: Value) -> StatusCode {
        let mut headers = HeaderMap::new();
        headers.insert("User-Api-Key", HeaderValue::from_str(key).expect("header"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let uri: Uri = path.parse().expect("uri");
        let body = Bytes::from(body.to_string());
        dispatch(AxumState(Arc::clone(&handle.shared)), method, uri, headers, body).await.status()
    }

    fn permission(request: &proto::UpdateParticipantRequest) -> Option<(bool, bool, bool)> {
        request
            .permission
            .as_ref()
            .map(|permission| (permission.can_subscribe, permission.can_publish, permission.can_publish_data))
    }

    #[tokio::test]
    async fn invite_to_speak_and_hard_mute_update_the_whole_permission_in_livekit() {
        let (livekit, seen) = fake_livekit().await;
        let (_forum, handle) = start(keys(format!("ws://{}", livekit.address))).await.expect("forum");
        let host = handle.add_user("host", "Host", true);
        let ear = handle.add_user("ear", "Ear", false);
        let stage = handle.add_room(NewRoom::stage("stage", "The Stage"));
        handle.set_present(stage, ear.id);
        let memberships = format!("/audioroom/rooms/{stage}/memberships");

        let invited =
            call(&handle, &host.api_key, Method::POST, &memberships, json!({"username": "ear", "role": "speaker"}));
        assert_eq!(invited.await, StatusCode::OK, "inviting ear to speak succeeds");
        {
            let seen = seen.lock().expect("lock");
            assert_eq!(seen.len(), 2, "the metadata, then the permission: {seen:?}");
            for (path, bearer, request) in seen.iter() {
                assert_eq!(path, "/twirp/livekit.RoomService/UpdateParticipant");
                assert_eq!((request.room.as_str(), request.identity.clone()), ("stage", ear.id.to_string()));
                let claims =
                    TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(bearer).expect("signed with the keys");
                assert!(claims.video.room_admin && claims.video.room == "stage", "a roomAdmin token for the room");
            }
            let metadata: Value = serde_json::from_str(&seen[0].2.metadata).expect("JSON metadata");
            assert_eq!(metadata["role"], "speaker", "the metadata carries the new role: {metadata}");
            assert_eq!(permission(&seen[0].2), None, "the metadata call leaves the permission alone");
            assert_eq!(permission(&seen[1].2), Some((true, true, true)), "subscribe, publish and data, whole");
        }

        let demoted =
            call(&handle, &host.api_key, Method::POST, &memberships, json!({"user_id": ear.id, "role": "participant"}));
        assert_eq!(demoted.await, StatusCode::OK);
        assert_eq!(permission(&seen.lock().expect("lock")[3].2), Some((true, false, false)), "back to the audience");

        let hard_mute = format!("/audioroom/rooms/{stage}/hard_mute");
        assert_eq!(
            call(&handle, &host.api_key, Method::POST, &hard_mute, json!({"user_id": ear.id})).await,
            StatusCode::OK
        );
        let hard_unmute = format!("/audioroom/rooms/{stage}/hard_unmute");
        assert_eq!(
            call(&handle, &host.api_key, Method::POST, &hard_unmute, json!({"user_id": ear.id})).await,
            StatusCode::OK
        );
        let seen = seen.lock().expect("lock");
        assert_eq!(
            permission(&seen[4].2),
            Some((true, false, false)),
            "hard mute revokes publishing, keeps subscribing"
        );
        assert_eq!(permission(&seen[5].2), Some((true, true, true)), "hard unmute restores it");
        let updates = handle.livekit_updates();
        assert_eq!(updates.len(), 6, "every call is recorded: {updates:?}");
        assert!(updates.iter().all(|update| update.outcome.is_ok()), "LiveKit accepted each: {updates:?}");
    }

    #[tokio::test]
    async fn open_rooms_change_only_metadata_and_a_livekit_failure_is_logged_not_returned() {
        let (livekit, seen) = fake_livekit().await;
        let (_forum, handle) = start(keys(format!("ws://{}", livekit.address))).await.expect("forum");
        let host = handle.add_user("host", "Host", true);
        let ear = handle.add_user("ear", "Ear", false);
        let porch = handle.add_room(NewRoom::open("porch", "The Porch"));
        handle.set_present(porch, ear.id);
        let memberships = format!("/audioroom/rooms/{porch}/memberships");
        let made =
            call(&handle, &host.api_key, Method::POST, &memberships, json!({"username": "ear", "role": "moderator"}));
        assert_eq!(made.await, StatusCode::OK);
        let calls: Vec<_> = seen.lock().expect("lock").iter().map(|(_, _, request)| permission(request)).collect();
        assert_eq!(calls, vec![None], "an open room's membership change sends metadata only");

        // Nothing listens on a port freed just now: the forum still answers, and records the failure.
        let closed =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("port");
        let (_forum, handle) = start(keys(format!("ws://{closed}"))).await.expect("forum");
        let host = handle.add_user("host", "Host", true);
        let ear = handle.add_user("ear", "Ear", false);
        let stage = handle.add_room(NewRoom::stage("stage", "The Stage"));
        handle.set_present(stage, ear.id);
        let hard_mute = format!("/audioroom/rooms/{stage}/hard_mute");
        assert_eq!(
            call(&handle, &host.api_key, Method::POST, &hard_mute, json!({"user_id": ear.id})).await,
            StatusCode::OK
        );
        let updates = handle.livekit_updates();
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert!(updates[0].outcome.is_err(), "the unreachable LiveKit is recorded as a failure: {updates:?}");
        assert!(
            handle.presence(stage, ear.id).is_some_and(|presence| presence.hard_muted),
            "the forum's state changed"
        );
    }
}
