//! Discourse forums with the Audioroom plugin (`dpnmw/audioroom`), CONTROL_PLANES.md §1.1–1.6,
//! checked against `dpnmw/audioroom@067cfbb` (livekit-server-sdk 0.9.0, MessageBus 4.5.2) where
//! that page is out of date.
//!
//! * Auth: a Discourse **User API Key** (scope `write`) in `User-Api-Key`, with the key's
//!   `User-Api-Client-Id`, on every request. [`user_api_key`] obtains one (§1.6).
//! * Rooms: `/audioroom/rooms/:id/...` accepts the numeric id or the slug; the nested
//!   `memberships` routes and the MessageBus channel need the numeric id, which the adapter learns
//!   from `join`, `list_rooms` or `GET /audioroom/rooms/:id.json` and caches. Grants carry the
//!   numeric id as `room_id`. A slug that starts with digits is named by the room's id, as the
//!   forum would read it as one. GETs use the `.json` suffix (Discourse's `check_xhr` answers
//!   other GETs with its HTML app shell).
//! * Joining returns LiveKit credentials minted by the forum (identity = Discourse user id, room =
//!   slug, no `roomAdmin`): all moderation goes through the forum's endpoints. Tokens last 10
//!   minutes; [`ControlPlane::refresh`] joins again (the forum's only way to renew one) and
//!   re-reports the mute, deafen and raised hand that a join wipes from the forum's presence.
//! * One room at a time: a join while present elsewhere fails with
//!   [`PlaneError::InAnotherRoom`]; [`AudioroomPlane::join_switching`] leaves the other room and
//!   joins in one step, as the web client does. The forum's presence of a room expires only
//!   when nobody in it beats for 30 s, so the adapter always leaves a room it is done with.
//! * Roles: the forum's role strings say who may publish (a room's creator is `moderator`; on a
//!   stage a speaking member names their role and everyone else is a `listener`, or a
//!   `participant` after a membership change; in an open room everyone else is a `participant`).
//!   The adapter shows a stage `participant` as a `listener`, and reports a grant's role as
//!   `moderator` when the forum says the user may manage the room (`can_manage`), which is what
//!   moderation hangs on.
//! * Capabilities depend on the room: moderation only where the forum says `can_manage`, hands and
//!   speaker invitations only in stage rooms. [`AudioroomPlane::room_capabilities`] answers for
//!   any room; [`ControlPlane::capabilities`] answers for the room last joined (everything the
//!   adapter can do before any join). A remote mute is LiveKit's own track mute, which the forum
//!   refuses (422) for someone not publishing audio.
//! * Events come from Discourse's MessageBus ([`message_bus`]).
//!
//! **Request budget.** Discourse limits every user API key to `max_user_api_reqs_per_minute = 20`
//! and `max_user_api_reqs_per_day = 2880` (§1.6 item 7), and every heartbeat and every MessageBus
//! poll counts. See [`DEFAULT_HEARTBEAT`] and [`message_bus`] for how the adapter stays inside it.

mod answers;
pub mod message_bus;
pub mod user_api_key;
mod wire;

use answers::{
    capabilities_for, grant_role, invalid, invite_token, livekit_url, map_failure, moderation_target, parley_role,
    parse_forum_url, reads_as_id, room_argument, room_name,
};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use url::Url;

use crate::adapter::livekit::token::TokenClaims;
use crate::http::{Failure, Http, decode_json};
use crate::{
    BackendKind, Capabilities, ControlPlane, JoinGrant, ModerationAction, PlaneError, PlaneEvent, PlaneParticipant,
    RoomSummary, Secret,
};

/// How often the session heartbeats when the profile does not say.
///
/// Presence expires after `audioroom_participant_ttl_seconds` = 30 s without a heartbeat. The web
/// client beats every 10 s, but it authenticates with a cookie, which Discourse does not count;
/// a user API key is limited to 2880 requests a day (2 a minute on average). At 10 s the
/// heartbeat alone (8640 a day) would exhaust that in 8 h. At 20 s it costs 3 a minute; with a
/// MessageBus long poll about every 25 s (2.4 a minute) a session spends about 5.4 requests a
/// minute, so a key lasts 2880 / 5.4 ≈ 533 min ≈ 8.9 h in a room per day on default limits, and
/// stays far below the 20-a-minute limit. 20 s still leaves 10 s, two tries' worth of a slow
/// forum, before presence lapses. Forums whose admin raised `DISCOURSE_MAX_USER_API_REQS_PER_DAY`
/// can shorten it with `heartbeat_seconds`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(20);
/// Shortest and longest heartbeat a profile may ask for: below 5 s only burns the request budget;
/// at or above the 30 s presence TTL the user would drop out of the room between beats.
const HEARTBEAT_RANGE_SECONDS: std::ops::RangeInclusive<u32> = 5..=28;

/// The keyring entry names of this backend's secrets.
pub const SECRET_NAMES: &[&str] = &["user-api-key"];

/// Non-secret settings, stored in the profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The forum's base URL (`https://forum.example.org`, or with its subfolder).
    pub url: String,
    /// The stable client id the user API key was created for ([`user_api_key::new_client_id`]).
    pub client_id: String,
    /// Heartbeat interval in seconds (5–28); [`DEFAULT_HEARTBEAT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds: Option<u32>,
}

/// Secrets, stored only in the OS keyring.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The Discourse user API key (`user-api-key` in the keyring).
    pub user_api_key: Option<Secret>,
}

/// What the forum told us about a room, as seen by the current user.
#[derive(Debug, Clone, PartialEq)]
struct RoomInfo {
    id: u64,
    slug: String,
    name: String,
    stage: bool,
    can_manage: bool,
}

impl RoomInfo {
    fn from_wire(room: &wire::Room) -> RoomInfo {
        RoomInfo {
            id: room.id,
            slug: room.slug.clone().unwrap_or_default(),
            name: room.name.clone(),
            stage: room.is_stage(),
            can_manage: room.can_manage,
        }
    }
}

#[derive(Debug, Default)]
struct RoomCache {
    /// Keyed by every name the room is known by: numeric id, slug, and what the caller typed.
    rooms: HashMap<String, RoomInfo>,
    /// The room last joined, whose role [`ControlPlane::capabilities`] reports.
    current: Option<u64>,
    /// What the user last told each room about themselves, keyed by the grant's room id: a join
    /// replaces the forum's presence metadata, so a token refresh (which joins again) restores it.
    reported: HashMap<String, Reported>,
}

/// The self-reported state a join wipes from the forum's presence metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reported {
    /// The last `toggle_mute` sent: `(muted, deafened)`.
    muted_deafened: Option<(bool, bool)>,
    hand_raised: bool,
}

/// The Discourse user a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForumUser {
    /// Also the LiveKit identity the forum mints tokens for.
    pub id: u64,
    pub username: String,
    pub name: Option<String>,
}

/// Who a moderation call is about.
enum Target {
    UserId(u64),
    Username(String),
}

/// Which request failed, for mapping statuses that mean different things per endpoint.
#[derive(Debug, Clone, Copy)]
enum Call<'a> {
    Session,
    Rooms,
    Room(&'a str),
    Join(&'a str),
    Heartbeat(&'a str),
    /// `toggle_mute`, and whether it asked to unmute.
    SelfState {
        room: &'a str,
        unmuting: bool,
    },
    Moderate(&'a str),
    User(&'a str),
    Poll(&'a str),
    Invite,
}

impl Call<'_> {
    /// What was not found, for a 404.
    fn subject(self) -> String {
        match self {
            Call::Session => "the signed-in user".to_string(),
            Call::Rooms => "the forum's voice rooms (is the Audioroom plugin installed?)".to_string(),
            Call::Room(room)
            | Call::Join(room)
            | Call::Heartbeat(room)
            | Call::Poll(room)
            | Call::SelfState { room, .. } => format!("room {room:?}"),
            Call::Moderate(participant) => format!("participant {participant:?} or the room"),
            Call::User(username) => format!("user {username:?}"),
            Call::Invite => "the invite (the link is wrong, or the room's invite was renewed)".to_string(),
        }
    }
}

/// A Discourse forum with the Audioroom plugin.
#[derive(Debug)]
pub struct AudioroomPlane {
    /// The forum base URL; its path (a subfolder install) is kept.
    base: Url,
    client_id: HeaderValue,
    /// The user API key as a header value marked sensitive (hyper never logs it).
    user_api_key: HeaderValue,
    heartbeat_every: Duration,
    /// Smallest spacing between MessageBus polls once the burst allowance is spent.
    poll_spacing: Duration,
    http: Http,
    /// Never held across an `.await`.
    cache: Mutex<RoomCache>,
}

impl AudioroomPlane {
    /// Checks the profile and prepares the client; sends nothing.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a bad URL, client id or heartbeat, or a missing
    /// user API key (authorize Parley on the forum first, [`user_api_key`]).
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, PlaneError> {
        let base = parse_forum_url(&settings.url)?;
        let client_id = settings.client_id.trim();
        if client_id.is_empty() {
            return Err(invalid("the profile has no client id; authorize Parley on the forum again"));
        }
        let client_id = HeaderValue::from_str(client_id)
            .map_err(|_| invalid("the profile's client id contains characters an HTTP header cannot carry"))?;
        let key = secrets.user_api_key.filter(|key| !key.expose().trim().is_empty()).ok_or_else(|| {
            invalid(&format!("no user API key for {}; authorize Parley on the forum first", settings.url.trim()))
        })?;
        let mut user_api_key = HeaderValue::from_str(key.expose().trim())
            .map_err(|_| invalid("the stored user API key is not a valid header value; authorize Parley again"))?;
        user_api_key.set_sensitive(true);
        let heartbeat_every = match settings.heartbeat_seconds {
            None => DEFAULT_HEARTBEAT,
            Some(seconds) if HEARTBEAT_RANGE_SECONDS.contains(&seconds) => Duration::from_secs(u64::from(seconds)),
            Some(seconds) => {
                return Err(invalid(&format!(
                    "heartbeat_seconds must be between {} and {} (presence expires after 30 s), not {seconds}",
                    HEARTBEAT_RANGE_SECONDS.start(),
                    HEARTBEAT_RANGE_SECONDS.end()
                )));
            }
        };
        let http = Http::new()?.for_server(base.as_str());
        Ok(AudioroomPlane {
            base,
            client_id,
            user_api_key,
            heartbeat_every,
            poll_spacing: message_bus::DEFAULT_POLL_SPACING,
            http,
            cache: Mutex::new(RoomCache::default()),
        })
    }

    /// Sets the smallest spacing between MessageBus polls once the short burst allowance is spent
    /// (default [`message_bus::DEFAULT_POLL_SPACING`]); tests shorten it.
    pub fn with_poll_spacing(mut self, spacing: Duration) -> Self {
        self.poll_spacing = spacing;
        self
    }

    /// Who the key belongs to (`GET /session/current.json`); a cheap check after authorizing.
    ///
    /// Errors: [`PlaneError::Unauthorized`] for an unknown or revoked key; transport errors.
    pub async fn current_user(&self) -> Result<ForumUser, PlaneError> {
        let url = self.endpoint(&["session", "current.json"])?;
        let response = self.send(Method::GET, url, Body::None, Call::Session).await?;
        let session: wire::CurrentSession = decode_json(response).await?;
        let user = session.current_user;
        Ok(ForumUser { id: user.id, username: user.username, name: user.name.filter(|name| !name.is_empty()) })
    }

    /// Joins `room`; if the forum says the user is in another room, leaves that one and joins
    /// again (what the web client does on 409). One call from the user's point of view.
    ///
    /// Errors: as [`ControlPlane::join`], except `InAnotherRoom` on the first try.
    pub async fn join_switching(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        match self.join(room).await {
            Err(PlaneError::InAnotherRoom { room_id, room_name }) => {
                tracing::info!(other_room = %room_id, ?room_name, "leaving the other room to join {room}");
                self.leave_room(&room_id).await?;
                self.join(room).await
            }
            outcome => outcome,
        }
    }

    /// What the current user can do in `room` (id or slug): moderation only where the forum
    /// reports `can_manage`, raising hands and speaker changes only in stage rooms. Uses what
    /// `join`/`list_rooms` learnt, else asks the forum (`GET /audioroom/rooms/:id.json`).
    pub async fn room_capabilities(&self, room: &str) -> Result<Capabilities, PlaneError> {
        let info = self.room_info(room).await?;
        Ok(capabilities_for(info.stage, info.can_manage))
    }

    /// `base` + `segments`, each percent-encoded as one path segment.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, PlaneError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| invalid("the forum URL cannot have a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn room_endpoint(&self, room: &str, rest: &[&str]) -> Result<Url, PlaneError> {
        let mut segments = vec!["audioroom", "rooms", room];
        segments.extend_from_slice(rest);
        self.endpoint(&segments)
    }

    fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        self.http
            .request(method, url.as_str())
            .header("User-Api-Key", self.user_api_key.clone())
            .header("User-Api-Client-Id", self.client_id.clone())
            .header(ACCEPT, "application/json")
    }

    async fn send(&self, method: Method, url: Url, body: Body, call: Call<'_>) -> Result<Response, PlaneError> {
        let request = body.apply(self.request(method, &url));
        self.send_request(request, call).await
    }

    async fn send_request(&self, request: RequestBuilder, call: Call<'_>) -> Result<Response, PlaneError> {
        match self.http.send(request).await {
            Ok(response) => Ok(response),
            Err(failure) => Err(self.explain(failure, call).await),
        }
    }

    /// Maps a failure; for Discourse's generic 403 `invalid_access` (the same answer for "this
    /// user may not" and "this key is unknown", and in the forum's language) asks the forum who
    /// the key belongs to, to tell the two apart. Costs a request only on this error path.
    async fn explain(&self, failure: Failure, call: Call<'_>) -> PlaneError {
        let access_denied = failure.status.map(|status| status.as_u16()) == Some(403)
            && failure.body_str("error_type").as_deref() == Some("invalid_access");
        let error = map_failure(failure, call);
        if access_denied && self.key_is_rejected().await {
            return PlaneError::Unauthorized {
                message: "the forum does not accept this user API key (revoked, expired or never issued)".into(),
            };
        }
        error
    }

    async fn key_is_rejected(&self) -> bool {
        let Ok(url) = self.endpoint(&["session", "current.json"]) else { return false };
        match self.http.send(self.request(Method::GET, &url)).await {
            Ok(_) => false,
            Err(failure) => matches!(failure.status.map(|status| status.as_u16()), Some(401 | 403)),
        }
    }

    fn remember(&self, names: &[&str], info: &RoomInfo, current: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for name in names.iter().copied().chain([info.slug.as_str()]) {
            if !name.is_empty() {
                cache.rooms.insert(name.to_string(), info.clone());
            }
        }
        cache.rooms.insert(info.id.to_string(), info.clone());
        if current {
            cache.current = Some(info.id);
        }
    }

    fn cached(&self, room: &str) -> Option<RoomInfo> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).rooms.get(room).cloned()
    }

    fn forget_current(&self, room: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = cache.rooms.get(room).map(|info| info.id).or_else(|| room.parse().ok());
        if left.is_some() && cache.current == left {
            cache.current = None;
        }
    }

    /// The room as the forum describes it to this user (cached, else `GET /audioroom/rooms/:id.json`).
    async fn room_info(&self, room: &str) -> Result<RoomInfo, PlaneError> {
        let room = room_argument(room)?;
        if let Some(info) = self.cached(room) {
            return Ok(info);
        }
        let url = self.room_endpoint(&format!("{room}.json"), &[])?;
        let response = self.send(Method::GET, url, Body::None, Call::Room(room)).await?;
        let show: wire::RoomShow = decode_json(response).await?;
        let info = RoomInfo::from_wire(&show.room);
        self.remember(&[room], &info, false);
        Ok(info)
    }

    /// The numeric id the nested routes and MessageBus need; a slug is resolved once and cached.
    async fn room_id(&self, room: &str) -> Result<u64, PlaneError> {
        let room = room_argument(room)?;
        // `load_room` tries `find_by(id:)` first too, so an all-digit name means the same to both.
        if let Ok(id) = room.parse::<u64>() {
            return Ok(id);
        }
        Ok(self.room_info(room).await?.id)
    }

    async fn room_participants(&self, room: &str) -> Result<Vec<wire::Participant>, PlaneError> {
        let url = self.room_endpoint(room, &["participants.json"])?;
        let response = self.send(Method::GET, url, Body::None, Call::Room(room)).await?;
        let answer: wire::ParticipantsAnswer = decode_json(response).await?;
        Ok(answer.participants)
    }

    /// The Discourse user id for a moderation target: a LiveKit identity (= user id) as is; a
    /// username (or `@username`) from the room's participants, else from `GET /u/:username.json`
    /// (unbanning someone who is not in the room).
    async fn user_id(&self, room: &str, target: Target) -> Result<u64, PlaneError> {
        let username = match target {
            Target::UserId(id) => return Ok(id),
            Target::Username(username) => username,
        };
        let present = self.room_participants(room).await?;
        if let Some(participant) = present.iter().find(|p| p.username.eq_ignore_ascii_case(&username)) {
            return Ok(participant.id);
        }
        let url = self.endpoint(&["u", &format!("{username}.json")])?;
        let response = self.send(Method::GET, url, Body::None, Call::User(&username)).await?;
        let show: wire::UserShow = decode_json(response).await?;
        Ok(show.user.id)
    }

    /// A participant as Parley shows it; avatar templates become absolute 96 px URLs, and roles
    /// Parley's names for them ([`parley_role`]) in a room that is a stage or not.
    fn participant(&self, participant: wire::Participant, stage: bool) -> PlaneParticipant {
        let avatar_url = participant
            .avatar_template
            .filter(|template| !template.is_empty())
            .and_then(|template| self.base.join(&template.replace("{size}", "96")).ok())
            .map(String::from);
        PlaneParticipant {
            identity: participant.id.to_string(),
            name: participant.name.filter(|name| !name.trim().is_empty()).unwrap_or(participant.username),
            role: participant.role.map(|role| parley_role(stage, role)),
            muted: participant.is_muted,
            hand_raised: participant.hand_raised,
            avatar_url,
            deafened: participant.is_deafened,
            hard_muted: participant.hard_muted,
        }
    }

    fn cache_mut(&self) -> std::sync::MutexGuard<'_, RoomCache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `POST …/join` and the grant it gives. A slug the forum would read as a room id (it starts
    /// with digits: `load_room` tries `find_by(id:)` first, which casts `"3-lounge"` to 3) goes
    /// by the room's id when the adapter knows it.
    async fn join_room(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        let room = room_argument(room)?;
        let target = match self.cached(room) {
            Some(info) if info.slug == room && reads_as_id(room) => info.id.to_string(),
            _ => room.to_string(),
        };
        let url = self.room_endpoint(&target, &["join"])?;
        let response = self.send(Method::POST, url, Body::None, Call::Join(room)).await?;
        let answer: wire::JoinAnswer = decode_json(response).await?;
        let info = RoomInfo::from_wire(&answer.room);
        self.remember(&[room], &info, true);
        let token = answer
            .livekit_token
            .map(|token| token.expose().trim().to_string())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| PlaneError::NotConfigured {
                message: "LiveKit is not configured on this forum (its admin must set the LiveKit API key and secret)"
                    .into(),
            })?;
        let url = livekit_url(answer.livekit_url.as_deref())?;
        // LiveKit is the judge of the token: one we cannot read only costs us its expiry and role.
        let claims = TokenClaims::read(&token).ok();
        let role = claims.as_ref().and_then(|claims| wire::role_in_metadata(&claims.metadata));
        Ok(JoinGrant {
            room_id: info.id.to_string(),
            room_name: info.name,
            url,
            token,
            e2ee_key: None,
            expires_at: claims.as_ref().and_then(|claims| claims.expires_at),
            heartbeat_every: Some(self.heartbeat_every),
            role: grant_role(role, info.can_manage),
            notice: None,
        })
    }

    async fn send_self_state(&self, room: &str, muted: bool, deafened: bool) -> Result<(), PlaneError> {
        let body = Body::Json(json!({ "muted": muted, "deafened": deafened }));
        let call = Call::SelfState { room, unmuting: !muted };
        self.room_action(Method::POST, room, "toggle_mute", body, call).await
    }

    /// `POST`/`DELETE` on a room action that answers 204 or `{success:"OK"}`.
    async fn room_action(
        &self,
        method: Method,
        room: &str,
        action: &str,
        body: Body,
        call: Call<'_>,
    ) -> Result<(), PlaneError> {
        let url = self.room_endpoint(room, &[action])?;
        self.send(method, url, body, call).await.map(drop)
    }
}

/// What goes with a request: nothing, a JSON body (POST/PUT), or query parameters (DELETE,
/// whose bodies some proxies drop; Rails merges both into `params`).
enum Body {
    None,
    Json(serde_json::Value),
    Query(Vec<(&'static str, String)>),
}

impl Body {
    fn apply(self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Body::None => request,
            Body::Json(json) => request.json(&json),
            Body::Query(pairs) => request.query(&pairs),
        }
    }
}

#[async_trait]
impl ControlPlane for AudioroomPlane {
    fn kind(&self) -> BackendKind {
        BackendKind::Audioroom
    }

    /// For the room last joined, what this user may do there; before any join, everything the
    /// adapter can do (see [`AudioroomPlane::room_capabilities`] for a given room).
    fn capabilities(&self) -> Capabilities {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.current.and_then(|id| cache.rooms.get(&id.to_string())) {
            Some(room) => capabilities_for(room.stage, room.can_manage),
            None => capabilities_for(true, true),
        }
    }

    async fn list_rooms(&self) -> Result<Vec<RoomSummary>, PlaneError> {
        let url = self.endpoint(&["audioroom", "rooms.json"])?;
        let response = self.send(Method::GET, url, Body::None, Call::Rooms).await?;
        let index: wire::RoomsIndex = decode_json(response).await?;
        Ok(index
            .rooms
            .into_iter()
            .map(|room| {
                let info = RoomInfo::from_wire(&room);
                self.remember(&[], &info, false);
                let description = room
                    .description_excerpt
                    .or(room.description)
                    .map(|text| text.trim().to_string())
                    .filter(|text| !text.is_empty());
                RoomSummary {
                    id: room_name(&info),
                    name: room.name.clone(),
                    description,
                    stage: info.stage,
                    participants: room.active_participants.as_ref().map(|list| list.len() as u32),
                    max_participants: room.max_participants.filter(|max| *max > 0),
                    can_manage: info.can_manage,
                }
            })
            .collect())
    }

    /// `POST /audioroom/rooms/:id/join`. The forum's tokens last 10 minutes
    /// (livekit-server-sdk 0.9.0's default); the session renews them through
    /// [`ControlPlane::refresh`].
    ///
    /// Errors: `Kicked`/`Banned` (403), `InAnotherRoom` (409), `RoomFull` (422), `RateLimited`
    /// (429), `NotConfigured` when the forum has no LiveKit credentials, `NotFound`, transport.
    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        let grant = self.join_room(room).await?;
        self.cache_mut().reported.remove(&grant.room_id);
        Ok(grant)
    }

    /// Joins again for a fresh token — the forum has no other way to renew one — then tells the
    /// forum again what the join wiped: a join replaces the user's presence metadata with
    /// `{role, session_id}`, so the self-reported mute, deafen and raised hand would vanish for
    /// everyone else. Restoring is best effort: a failure is logged, the fresh grant stands.
    ///
    /// Errors: as [`ControlPlane::join`].
    async fn refresh(&self, grant: &JoinGrant) -> Result<JoinGrant, PlaneError> {
        let fresh = self.join_room(&grant.room_id).await?;
        let reported = self.cache_mut().reported.get(&fresh.room_id).copied().unwrap_or_default();
        let room = fresh.room_id.as_str();
        if let Some((muted, deafened)) = reported.muted_deafened
            && let Err(error) = self.send_self_state(room, muted, deafened).await
        {
            tracing::warn!(code = error.code(), "restoring the reported mute after a token refresh: {error}");
        }
        if reported.hand_raised
            && let Err(error) = self.room_action(Method::POST, room, "raise_hand", Body::None, Call::Room(room)).await
        {
            tracing::warn!(code = error.code(), "raising the hand again after a token refresh: {error}");
        }
        Ok(fresh)
    }

    /// `POST …/heartbeat` with `idle_state=active`; the forum answers 204.
    ///
    /// Errors: `Kicked`/`Banned` (403) end the session; `RateLimited`, `Server`, `Unreachable`
    /// are worth retrying.
    async fn heartbeat(&self, grant: &JoinGrant) -> Result<(), PlaneError> {
        let room = room_argument(&grant.room_id)?;
        let body = Body::Json(json!({ "idle_state": "active" }));
        self.room_action(Method::POST, room, "heartbeat", body, Call::Heartbeat(room)).await
    }

    async fn leave(&self, grant: &JoinGrant) -> Result<(), PlaneError> {
        self.leave_room(&grant.room_id).await
    }

    /// `DELETE /audioroom/rooms/:id/leave` (id or slug).
    async fn leave_room(&self, room_id: &str) -> Result<(), PlaneError> {
        let room = room_argument(room_id)?;
        self.room_action(Method::DELETE, room, "leave", Body::None, Call::Room(room)).await?;
        self.forget_current(room);
        Ok(())
    }

    /// `GET /audioroom/invite/:token.json`: makes the user a `participant` member of the room
    /// right away, stage rooms included (`requires_confirmation` is always `false` at
    /// dpnmw/audioroom@067cfbb, whatever CONTROL_PLANES.md §1.2 says); joining is the next step.
    /// The forum only honours the link for a room the user may already join: a private room's
    /// link does not let a non-member in.
    ///
    /// Errors: `NotFound` for an unknown token, `Forbidden` for a room the user may not join.
    async fn open_invite(&self, invite: &str) -> Result<RoomSummary, PlaneError> {
        let token = invite_token(invite)?;
        let url = self.endpoint(&["audioroom", "invite", &format!("{token}.json")])?;
        let response = self.send(Method::GET, url, Body::None, Call::Invite).await?;
        let opened: wire::Invite = decode_json(response).await?;
        let info = RoomInfo::from_wire(&opened.room);
        self.remember(&[], &info, false);
        Ok(RoomSummary {
            id: info.id.to_string(),
            name: opened.room.name.clone(),
            description: opened.room.description_excerpt.clone().or(opened.room.description.clone()),
            stage: info.stage,
            participants: opened.room.active_participants.as_ref().map(|list| list.len() as u32),
            max_participants: opened.room.max_participants.filter(|max| *max > 0),
            can_manage: info.can_manage,
        })
    }

    async fn participants(&self, grant: &JoinGrant) -> Result<Vec<PlaneParticipant>, PlaneError> {
        let room = room_argument(&grant.room_id)?;
        let stage = self.room_info(room).await?.stage;
        let participants = self.room_participants(room).await?;
        Ok(participants.into_iter().map(|participant| self.participant(participant, stage)).collect())
    }

    /// `POST`/`DELETE …/raise_hand`. The forum refuses (422) outside stage rooms and for speakers.
    async fn set_hand(&self, grant: &JoinGrant, raised: bool) -> Result<(), PlaneError> {
        let room = room_argument(&grant.room_id)?;
        let method = if raised { Method::POST } else { Method::DELETE };
        self.room_action(method, room, "raise_hand", Body::None, Call::Room(room)).await?;
        self.cache_mut().reported.entry(grant.room_id.clone()).or_default().hand_raised = raised;
        Ok(())
    }

    /// `POST …/toggle_mute {muted, deafened}`: what others see; it changes nothing in LiveKit.
    ///
    /// Errors: `Forbidden` for a stage listener's unmute (only speakers may).
    async fn report_self_state(&self, grant: &JoinGrant, muted: bool, deafened: bool) -> Result<(), PlaneError> {
        let room = room_argument(&grant.room_id)?;
        self.send_self_state(room, muted, deafened).await?;
        self.cache_mut().reported.entry(grant.room_id.clone()).or_default().muted_deafened = Some((muted, deafened));
        Ok(())
    }

    /// `participant` is a LiveKit identity (the Discourse user id) or a username (`@name` forces
    /// the username reading for all-digit usernames). Membership changes take usernames as they
    /// are; the other actions need the user id, which costs one or two lookups (participants, then
    /// `/u/:username.json`) against the key's request budget, so front ends pass identities.
    ///
    /// Errors: `Forbidden` without the manage permission, `Rejected` (400 kicking oneself or the
    /// creator, 422 target not in the room), `NotFound` for an unknown user.
    async fn moderate(&self, grant: &JoinGrant, action: ModerationAction, participant: &str) -> Result<(), PlaneError> {
        let room = room_argument(&grant.room_id)?;
        let target = moderation_target(participant)?;
        let call = Call::Moderate(participant);
        let role = match action {
            ModerationAction::InviteToSpeak => Some("speaker"),
            // A membership with role `participant` is what makes a speaker a listener again:
            // `POST memberships` rewrites the presence metadata, publishes `role_change` and
            // revokes `canPublish` in LiveKit at once (§1.2). Deleting the membership would only
            // take effect at the next join, and in a private room would lock the user out.
            ModerationAction::MoveToAudience => Some("participant"),
            ModerationAction::MakeModerator => Some("moderator"),
            _ => None,
        };
        if let Some(role) = role {
            // `POST` creates or replaces the membership and applies the role live. `PUT …/:id`
            // applies it live too, but needs the membership's id, which only the manage-only
            // memberships list gives: one more request for nothing.
            let room_id = self.room_id(room).await?;
            let mut body = json!({ "role": role });
            match target {
                Target::UserId(id) => body["user_id"] = json!(id),
                Target::Username(name) => body["username"] = json!(name),
            }
            let url = self.room_endpoint(&room_id.to_string(), &["memberships"])?;
            return self.send(Method::POST, url, Body::Json(body), call).await.map(drop);
        }
        let user_id = self.user_id(room, target).await?;
        let (method, path, body) = match action {
            ModerationAction::Mute | ModerationAction::Unmute => (
                Method::POST,
                "mute_participant",
                Body::Json(json!({ "user_id": user_id, "muted": action == ModerationAction::Mute })),
            ),
            ModerationAction::HardMute => (Method::POST, "hard_mute", Body::Json(json!({ "user_id": user_id }))),
            ModerationAction::Restore => (Method::POST, "hard_unmute", Body::Json(json!({ "user_id": user_id }))),
            ModerationAction::Kick => (Method::DELETE, "kick", Body::Query(vec![("user_id", user_id.to_string())])),
            ModerationAction::Unkick => (Method::POST, "unkick", Body::Json(json!({ "user_id": user_id }))),
            ModerationAction::Ban => (Method::POST, "ban", Body::Json(json!({ "user_id": user_id }))),
            ModerationAction::Unban => (Method::DELETE, "ban", Body::Query(vec![("user_id", user_id.to_string())])),
            ModerationAction::InviteToSpeak | ModerationAction::MoveToAudience | ModerationAction::MakeModerator => {
                // Handled above through memberships; kept exhaustive so a new action is a
                // compile error here rather than a silent no-op.
                return Err(self.unsupported("this moderation action"));
            }
            // The plugin has no endpoint for it (a RoomService admin token would).
            ModerationAction::StopShare => return Err(self.unsupported("stopping a screen share")),
        };
        self.room_action(method, room, path, body, call).await
    }

    /// Long-polls the forum's MessageBus for the room's channel; see [`message_bus`].
    async fn watch(&self, grant: &JoinGrant, events: mpsc::Sender<PlaneEvent>) -> Result<(), PlaneError> {
        message_bus::watch(self, grant, events).await
    }
}
