//! La Suite Meet's room API (`shared/CONTROL_PLANES.md` §2), Django REST Framework style, plus the
//! one LiveKit RoomService call a Meet client makes with an owner's `roomAdmin` token (§6).
//!
//! * Paths under `/api/v1.0/rooms/{id|slug}/…/` end with a slash (DRF router); without it a GET
//!   is redirected (301, Django's `APPEND_SLASH`) and anything else is a 404 page.
//! * Session auth: `Cookie: meet_sessionid=<id>` ([`Handle::add_user`] makes sessions); an
//!   endpoint that needs a user answers 401 `{"detail":"Authentication credentials were not
//!   provided."}` (`SessionAuthenticationWith401`). Session-authenticated unsafe requests pass
//!   Django's CSRF check: an `Origin` (if sent) equal to the site's, a `csrftoken` cookie and an
//!   equal `X-CSRFToken` header, else 403 `{"detail":"CSRF Failed: …"}`.
//! * Token auth: `Authorization: Bearer <LiveKit token>` verified with the LiveKit keys, whose
//!   `video.room` must be the room's UUID.
//! * Join: `GET rooms/{id}/?username=` → the room, with `livekit{url, room, token}` when it is
//!   public, trusted and the user signed in, or the user has a role. Otherwise the lobby:
//!   `POST request-entry/ {username}` sets the HttpOnly `lobbyParticipantId` cookie, registers a
//!   waiter that expires 3 s after its last poll, and answers `waiting` / `accepted` (+ livekit,
//!   identity = lobby id) / `denied`. Admins see `waiting-participants/` and decide with `enter/`.
//! * Tokens: room = room UUID, identity = `sub` (signed in) or lobby id / random UUID, `roomAdmin`
//!   for owners and administrators, `canPublishSources` from the configuration, attributes
//!   `{color, room_role, is_authenticated}`, 6 h.
//! * Management: `mute-participant/`, `update-participant/`, `remove-participant/`,
//!   `update-participant-role/`, `toggle-hand/`, `rename/` with §2.4's permissions and errors.
//!   Meet asks LiveKit whether participants are in the meeting; here the LiveKit room is
//!   simulated by a roster the test fills ([`Handle::add_present`]), which
//!   `POST /twirp/livekit.RoomService/ListParticipants` also serves (JSON, `roomAdmin` checked).
//!   Tokens carry [`Handle::set_livekit_url`] (default: the keys' URL); point it at this server
//!   to let an adapter reach the simulated RoomService.
//!
//! `start(keys) -> (Running, Handle)`.

// Helpers return the finished HTTP answer as their error, as axum handlers do; boxing it would
// only add noise to a test server.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use livekit_api::access_token::{AccessToken, Claims, TokenVerifier, VideoGrants};

use crate::{LivekitKeys, Running, serve};

/// `LOBBY_WAITING_TIMEOUT`.
const WAITING_TIMEOUT: Duration = Duration::from_secs(3);
/// `LOBBY_ACCEPTED_TIMEOUT`.
const ACCEPTED_TIMEOUT: Duration = Duration::from_secs(21_600);
/// `LOBBY_DENIED_TIMEOUT`.
const DENIED_TIMEOUT: Duration = Duration::from_secs(5);
/// Python SDK default token validity.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 60 * 60);
const DEFAULT_SOURCES: [&str; 4] = ["camera", "microphone", "screen_share", "screen_share_audio"];
const FORBIDDEN_PERMISSION_FIELDS: [&str; 3] = ["hidden", "recorder", "agent"];
const NO_CREDENTIALS: &str = "Authentication credentials were not provided.";
const NO_PERMISSION: &str = "You do not have permission to perform this action.";

/// `Room.access_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLevel {
    Public,
    Trusted,
    Restricted,
}

impl AccessLevel {
    fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Public => "public",
            AccessLevel::Trusted => "trusted",
            AccessLevel::Restricted => "restricted",
        }
    }
}

/// A track in the simulated LiveKit room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub sid: String,
    /// `MICROPHONE`, `CAMERA`, …
    pub source: String,
    pub muted: bool,
}

/// A participant of the simulated LiveKit room.
#[derive(Debug, Clone, PartialEq)]
pub struct Present {
    pub identity: String,
    pub name: String,
    /// The Meet account (`sub`) behind the identity; `None` for guests.
    pub user_sub: Option<String>,
    pub tracks: Vec<Track>,
    pub attributes: BTreeMap<String, String>,
    /// The last permission object set through `update-participant/`.
    pub permission: Option<serde_json::Value>,
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lowercase header names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

#[derive(Debug, Clone)]
struct Room {
    id: String,
    slug: String,
    name: String,
    access_level: AccessLevel,
    configuration: serde_json::Value,
    /// sub → owner | administrator | member
    accesses: HashMap<String, String>,
}

impl Room {
    fn sources(&self) -> Vec<String> {
        self.configuration
            .get("can_publish_sources")
            .and_then(|sources| serde_json::from_value(sources.clone()).ok())
            .unwrap_or_else(|| DEFAULT_SOURCES.map(String::from).to_vec())
    }

    fn is_admin(&self, sub: Option<&str>) -> bool {
        sub.and_then(|sub| self.accesses.get(sub)).is_some_and(|role| role == "owner" || role == "administrator")
    }
}

#[derive(Debug, Clone)]
struct Waiter {
    username: String,
    color: String,
    status: &'static str,
    expires: Instant,
}

#[derive(Default)]
struct Site {
    livekit_url: String,
    /// session id → sub
    sessions: HashMap<String, String>,
    rooms: Vec<Room>,
    /// (room id, lobby participant id) → waiter
    lobby: HashMap<(String, String), Waiter>,
    /// room id → participants
    roster: HashMap<String, Vec<Present>>,
    notifications: u32,
    expired_waiters: u32,
    requests: Vec<Seen>,
    fail_next: HashMap<String, (u16, String)>,
}

impl Site {
    fn room(&self, key: &str) -> Option<Room> {
        self.rooms.iter().find(|room| room.id == key || room.slug == key).cloned()
    }

    fn purge_lobby(&mut self) {
        let now = Instant::now();
        let before = self.lobby.len();
        self.lobby.retain(|_, waiter| waiter.expires > now);
        let expired = before - self.lobby.len();
        self.expired_waiters += u32::try_from(expired).unwrap_or(u32::MAX);
    }

    fn present_mut(&mut self, room: &str, identity: &str) -> Option<&mut Present> {
        self.roster.get_mut(room)?.iter_mut().find(|present| present.identity == identity)
    }
}

/// Test-side control of the site.
#[derive(Clone)]
pub struct Handle {
    site: Arc<Mutex<Site>>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Site> {
        self.site.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signs `sub` in; returns the value of its `meet_sessionid` cookie.
    pub fn add_user(&self, sub: &str) -> String {
        let session = uuid::Uuid::new_v4().simple().to_string();
        self.lock().sessions.insert(session.clone(), sub.to_string());
        session
    }

    /// Creates a room; returns its UUID.
    pub fn add_room(&self, slug: &str, name: &str, access_level: AccessLevel) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().rooms.push(Room {
            id: id.clone(),
            slug: slug.into(),
            name: name.into(),
            access_level,
            configuration: serde_json::json!({}),
            accesses: HashMap::new(),
        });
        id
    }

    /// Gives `sub` a role (`owner`, `administrator`, `member`) in `room` (UUID or slug).
    pub fn set_role(&self, room: &str, sub: &str, role: &str) {
        let mut site = self.lock();
        if let Some(found) = site.rooms.iter_mut().find(|found| found.id == room || found.slug == room) {
            found.accesses.insert(sub.into(), role.into());
        }
    }

    /// Replaces `room`'s `configuration` (e.g. `{"everyone_can_mute": false}`).
    pub fn set_configuration(&self, room: &str, configuration: serde_json::Value) {
        let mut site = self.lock();
        if let Some(found) = site.rooms.iter_mut().find(|found| found.id == room || found.slug == room) {
            found.configuration = configuration;
        }
    }

    /// Puts a participant into the simulated LiveKit room of `room` (UUID).
    pub fn add_present(&self, room: &str, identity: &str, name: &str, user_sub: Option<&str>, tracks: &[(&str, &str)]) {
        let present = Present {
            identity: identity.into(),
            name: name.into(),
            user_sub: user_sub.map(String::from),
            tracks: tracks
                .iter()
                .map(|(sid, source)| Track { sid: (*sid).into(), source: (*source).into(), muted: false })
                .collect(),
            attributes: BTreeMap::new(),
            permission: None,
        };
        self.lock().roster.entry(room.to_string()).or_default().push(present);
    }

    /// The simulated LiveKit room of `room` (UUID).
    pub fn present(&self, room: &str) -> Vec<Present> {
        self.lock().roster.get(room).cloned().unwrap_or_default()
    }

    /// `sub`'s role in `room`.
    pub fn role(&self, room: &str, sub: &str) -> Option<String> {
        self.lock().room(room).and_then(|found| found.accesses.get(sub).cloned())
    }

    /// The URL put into `livekit.url`.
    pub fn set_livekit_url(&self, url: &str) {
        self.lock().livekit_url = url.to_string();
    }

    /// The next request whose path ends with `action/` (`request-entry`, `mute-participant`, …;
    /// the room itself is `retrieve`) gets `status` with `body` (JSON if it starts with `{`, HTML
    /// if with `<`, else plain text).
    pub fn fail_next(&self, action: &str, status: u16, body: &str) {
        self.lock().fail_next.insert(action.to_string(), (status, body.to_string()));
    }

    /// How many new waiters triggered the admins' `participantWaiting` notification.
    pub fn notifications(&self) -> u32 {
        self.lock().notifications
    }

    /// How many waiters were forgotten because they stopped polling.
    pub fn expired_waiters(&self) -> u32 {
        let mut site = self.lock();
        site.purge_lobby();
        site.expired_waiters
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }
}

/// Starts the site with no rooms and no users.
pub async fn start(keys: LivekitKeys) -> std::io::Result<(Running, Handle)> {
    let site = Arc::new(Mutex::new(Site { livekit_url: keys.url.clone(), ..Site::default() }));
    let shared = Shared { keys, site: site.clone() };
    let router = Router::new().fallback(dispatch).with_state(shared);
    Ok((serve(router).await?, Handle { site }))
}

#[derive(Clone)]
struct Shared {
    keys: LivekitKeys,
    site: Arc<Mutex<Site>>,
}

/// What one request carries, parsed once.
struct Call {
    host: String,
    headers: HeaderMap,
    cookies: HashMap<String, String>,
    query: HashMap<String, String>,
    body: serde_json::Value,
}

impl Call {
    fn bearer(&self) -> Option<&str> {
        self.headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
    }

    fn str_field(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(serde_json::Value::as_str)
    }
}

async fn dispatch(
    State(shared): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let action = match segments.as_slice() {
        ["api", "v1.0", "rooms", _, ""] => "retrieve".to_string(),
        ["api", "v1.0", "rooms", _, action, ""] => (*action).to_string(),
        ["twirp", "livekit.RoomService", method] => (*method).to_string(),
        _ => String::new(),
    };
    {
        let mut site = lock(&shared.site);
        site.requests.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().map(String::from),
            headers: headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if let Some((status, body)) = site.fail_next.remove(&action) {
            return raw(status, &body);
        }
    }
    if path.starts_with("/api/") && !path.ends_with('/') {
        if method == Method::GET {
            let location = match uri.query() {
                Some(query) => format!("{path}/?{query}"),
                None => format!("{path}/"),
            };
            return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response();
        }
        return raw(
            404,
            "<!doctype html><html><head><title>Not Found</title></head><body><h1>Not Found</h1></body></html>",
        );
    }
    let body = if body.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(json) => json,
            Err(_) => return detail(StatusCode::BAD_REQUEST, "JSON parse error"),
        }
    };
    let call = Call {
        host: headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string(),
        cookies: parse_cookies(&headers),
        query: uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_string(), value.replace('+', " ")))
            .collect(),
        headers,
        body,
    };
    match segments.as_slice() {
        ["twirp", "livekit.RoomService", "ListParticipants"] if method == Method::POST => {
            list_participants(&shared, &call)
        }
        ["api", "v1.0", "rooms", room, ..] => {
            let Some(room) = lock(&shared.site).room(room) else {
                return detail(StatusCode::NOT_FOUND, "No Room matches the given query.");
            };
            // DRF's SessionAuthentication: a signed-in user's unsafe requests must pass CSRF.
            let user = session_user(&shared, &call);
            if user.is_some()
                && method != Method::GET
                && let Err(reason) = csrf(&call)
            {
                return detail(StatusCode::FORBIDDEN, &format!("CSRF Failed: {reason}"));
            }
            match (method.as_str(), action.as_str()) {
                ("GET", "retrieve") => retrieve(&shared, &call, &room, user.as_deref()),
                ("POST", "request-entry") => request_entry(&shared, &call, &room, user.as_deref()),
                ("GET", "waiting-participants") => waiting(&shared, &room, user.as_deref()),
                ("POST", "enter") => enter(&shared, &call, &room, user.as_deref()),
                ("POST", "mute-participant") => mute(&shared, &call, &room, user.as_deref()),
                ("POST", "update-participant") => update_participant(&shared, &call, &room, user.as_deref()),
                ("POST", "remove-participant") => remove_participant(&shared, &call, &room, user.as_deref()),
                ("POST", "update-participant-role") => update_role(&shared, &call, &room, user.as_deref()),
                ("POST", "toggle-hand") => toggle_hand(&shared, &call, &room),
                ("POST", "rename") => rename(&shared, &call, &room),
                (
                    _,
                    "retrieve"
                    | "request-entry"
                    | "waiting-participants"
                    | "enter"
                    | "mute-participant"
                    | "update-participant"
                    | "remove-participant"
                    | "update-participant-role"
                    | "toggle-hand"
                    | "rename",
                ) => detail(StatusCode::METHOD_NOT_ALLOWED, &format!("Method \"{method}\" not allowed.")),
                _ => detail(StatusCode::NOT_FOUND, "Not found."),
            }
        }
        _ => detail(StatusCode::NOT_FOUND, "Not found."),
    }
}

fn lock(site: &Arc<Mutex<Site>>) -> MutexGuard<'_, Site> {
    site.lock().unwrap_or_else(PoisonError::into_inner)
}

fn parse_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

fn session_user(shared: &Shared, call: &Call) -> Option<String> {
    let session = call.cookies.get("meet_sessionid")?;
    lock(&shared.site).sessions.get(session).cloned()
}

/// Django's `CsrfViewMiddleware` for a plain-HTTP site.
fn csrf(call: &Call) -> Result<(), String> {
    if let Some(origin) = call.headers.get(header::ORIGIN).and_then(|value| value.to_str().ok())
        && origin != format!("http://{}", call.host)
    {
        return Err(format!("Origin checking failed - {origin} does not match any trusted origins."));
    }
    let cookie = call.cookies.get("csrftoken").ok_or("CSRF cookie not set.")?;
    let token = call.headers.get("x-csrftoken").and_then(|value| value.to_str().ok()).ok_or("CSRF token missing.")?;
    if token != cookie {
        return Err("CSRF token from the 'X-Csrftoken' HTTP header incorrect.".into());
    }
    Ok(())
}

/// The claims of a valid LiveKit token for `room`, or the DRF answer.
fn token_claims(shared: &Shared, call: &Call, room: &Room) -> Result<Claims, Response> {
    let token = call.bearer().ok_or_else(|| detail(StatusCode::UNAUTHORIZED, NO_CREDENTIALS))?;
    let claims = TokenVerifier::with_api_key(&shared.keys.api_key, &shared.keys.api_secret)
        .verify(token)
        .map_err(|_| detail(StatusCode::UNAUTHORIZED, "Invalid token."))?;
    if claims.video.room != room.id {
        return Err(detail(StatusCode::FORBIDDEN, NO_PERMISSION));
    }
    Ok(claims)
}

fn require_admin(room: &Room, user: Option<&str>) -> Result<(), Response> {
    match user {
        None => Err(detail(StatusCode::UNAUTHORIZED, NO_CREDENTIALS)),
        Some(_) if !room.is_admin(user) => Err(detail(StatusCode::FORBIDDEN, NO_PERMISSION)),
        Some(_) => Ok(()),
    }
}

fn mint(
    shared: &Shared,
    room: &Room,
    identity: &str,
    name: &str,
    user: Option<&str>,
) -> Result<serde_json::Value, Response> {
    let role = user.and_then(|sub| room.accesses.get(sub)).cloned();
    let admin = matches!(role.as_deref(), Some("owner" | "administrator"));
    let sources = room.sources();
    let grants = VideoGrants {
        room: room.id.clone(),
        room_join: true,
        room_admin: admin,
        can_update_own_metadata: Some(false),
        can_publish: Some(!sources.is_empty()),
        can_publish_sources: sources,
        can_subscribe: Some(true),
        ..VideoGrants::default()
    };
    let colors = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4"];
    let color = colors[identity.bytes().map(usize::from).sum::<usize>() % colors.len()];
    let token = AccessToken::with_api_key(&shared.keys.api_key, &shared.keys.api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_grants(grants)
        .with_attributes([
            ("color", color.to_string()),
            ("room_role", role.unwrap_or_default()),
            ("is_authenticated", user.is_some().to_string()),
        ])
        .with_ttl(TOKEN_TTL)
        .to_jwt()
        .map_err(|error| detail(StatusCode::INTERNAL_SERVER_ERROR, &format!("token: {error}")))?;
    let url = lock(&shared.site).livekit_url.clone();
    Ok(serde_json::json!({ "url": url, "room": room.id, "token": token }))
}

fn direct_access(room: &Room, user: Option<&str>) -> bool {
    match room.access_level {
        AccessLevel::Public => true,
        AccessLevel::Trusted => user.is_some(),
        AccessLevel::Restricted => user.is_some_and(|sub| room.accesses.contains_key(sub)),
    }
}

fn retrieve(shared: &Shared, call: &Call, room: &Room, user: Option<&str>) -> Response {
    let username = call.query.get("username").cloned().unwrap_or_default();
    let mut body = serde_json::json!({
        "id": room.id, "name": room.name, "slug": room.slug, "configuration": room.configuration,
        "access_level": room.access_level.as_str(), "is_administrable": room.is_admin(user),
    });
    if room.is_admin(user) {
        body["accesses"] = serde_json::json!(
            room.accesses
                .iter()
                .map(|(sub, role)| serde_json::json!({ "user": sub, "role": role }))
                .collect::<Vec<_>>()
        );
    }
    if direct_access(room, user) || user.is_some_and(|sub| room.accesses.contains_key(sub)) {
        let identity = user.map(String::from).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        match mint(shared, room, &identity, &username, user) {
            Ok(livekit) => body["livekit"] = livekit,
            Err(response) => return response,
        }
        body["pin_code"] = serde_json::json!("123456");
    }
    axum::Json(body).into_response()
}

fn request_entry(shared: &Shared, call: &Call, room: &Room, user: Option<&str>) -> Response {
    let Some(username) = call.str_field("username").filter(|name| !name.trim().is_empty()) else {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "username": ["This field is required."] })))
            .into_response();
    };
    let (participant_id, new_cookie) = match call.cookies.get("lobbyParticipantId") {
        Some(id) => (id.clone(), false),
        None => (uuid::Uuid::new_v4().to_string(), true),
    };
    let mut answer = serde_json::json!({ "status": "waiting", "username": username, "id": participant_id, "color": "#4363d8", "livekit": null });
    if direct_access(room, user) {
        let identity = user.map(String::from).unwrap_or_else(|| participant_id.clone());
        match mint(shared, room, &identity, username, user) {
            Ok(livekit) => {
                answer["status"] = "accepted".into();
                answer["livekit"] = livekit;
            }
            Err(response) => return response,
        }
    } else {
        let key = (room.id.clone(), participant_id.clone());
        let status = {
            let mut site = lock(&shared.site);
            site.purge_lobby();
            match site.lobby.get_mut(&key) {
                Some(waiter) if waiter.status == "waiting" => {
                    waiter.expires = Instant::now() + WAITING_TIMEOUT;
                    "waiting"
                }
                Some(waiter) => waiter.status,
                None => {
                    site.lobby.insert(
                        key,
                        Waiter {
                            username: username.to_string(),
                            color: "#4363d8".into(),
                            status: "waiting",
                            expires: Instant::now() + WAITING_TIMEOUT,
                        },
                    );
                    site.notifications += 1;
                    "waiting"
                }
            }
        };
        answer["status"] = status.into();
        if status == "accepted" {
            match mint(shared, room, &participant_id, username, None) {
                Ok(livekit) => answer["livekit"] = livekit,
                Err(response) => return response,
            }
        }
    }
    let mut response = axum::Json(answer).into_response();
    if new_cookie {
        let cookie = format!("lobbyParticipantId={participant_id}; HttpOnly; Secure; SameSite=Lax; Path=/");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn waiting(shared: &Shared, room: &Room, user: Option<&str>) -> Response {
    if let Err(response) = require_admin(room, user) {
        return response;
    }
    let mut site = lock(&shared.site);
    site.purge_lobby();
    let participants: Vec<serde_json::Value> = if room.access_level == AccessLevel::Public {
        Vec::new()
    } else {
        site.lobby
            .iter()
            .filter(|((room_id, _), waiter)| *room_id == room.id && waiter.status == "waiting")
            .map(|((_, id), waiter)| serde_json::json!({ "status": waiter.status, "username": waiter.username, "id": id, "color": waiter.color }))
            .collect()
    };
    axum::Json(serde_json::json!({ "participants": participants })).into_response()
}

fn enter(shared: &Shared, call: &Call, room: &Room, user: Option<&str>) -> Response {
    if let Err(response) = require_admin(room, user) {
        return response;
    }
    let (Some(participant_id), Some(allow)) =
        (call.str_field("participant_id"), call.body.get("allow_entry").and_then(serde_json::Value::as_bool))
    else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "participant_id": ["This field is required."] })),
        )
            .into_response();
    };
    if room.access_level == AccessLevel::Public {
        return message(StatusCode::NOT_FOUND, "Room has no lobby system.");
    }
    let mut site = lock(&shared.site);
    site.purge_lobby();
    let Some(waiter) = site.lobby.get_mut(&(room.id.clone(), participant_id.to_string())) else {
        return message(StatusCode::NOT_FOUND, "Participant not found.");
    };
    if allow {
        waiter.status = "accepted";
        waiter.expires = Instant::now() + ACCEPTED_TIMEOUT;
    } else {
        waiter.status = "denied";
        waiter.expires = Instant::now() + DENIED_TIMEOUT;
    }
    message(StatusCode::OK, "Participant was updated.")
}

fn mute(shared: &Shared, call: &Call, room: &Room, user: Option<&str>) -> Response {
    if user.is_none() || !room.is_admin(user) {
        if call.bearer().is_none() && user.is_none() {
            return detail(StatusCode::UNAUTHORIZED, NO_CREDENTIALS);
        }
        if room.configuration.get("everyone_can_mute").and_then(serde_json::Value::as_bool) == Some(false)
            || call.bearer().is_none()
        {
            return detail(StatusCode::FORBIDDEN, NO_PERMISSION);
        }
        let claims = match token_claims(shared, call, room) {
            Ok(claims) => claims,
            Err(response) => return response,
        };
        let present = lock(&shared.site)
            .roster
            .get(&room.id)
            .is_some_and(|roster| roster.iter().any(|p| p.identity == claims.sub));
        if !present {
            return error(StatusCode::FORBIDDEN, "Could not verify caller presence");
        }
    }
    let (Some(identity), Some(track_sid)) = (call.str_field("participant_identity"), call.str_field("track_sid"))
    else {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "track_sid": ["This field is required."] })))
            .into_response();
    };
    let mut site = lock(&shared.site);
    let track = site
        .present_mut(&room.id, identity)
        .and_then(|present| present.tracks.iter_mut().find(|track| track.sid == track_sid));
    match track {
        Some(track) => {
            track.muted = true;
            status_success()
        }
        None => error(StatusCode::NOT_FOUND, "Participant not found"),
    }
}

fn update_participant(shared: &Shared, call: &Call, room: &Room, user: Option<&str>) -> Response {
    if let Err(response) = require_admin(room, user) {
        return response;
    }
    let Some(identity) = call.str_field("participant_identity") else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "participant_identity": ["This field is required."] })),
        )
            .into_response();
    };
    if !["metadata", "attributes", "permission", "name"].iter().any(|field| call.body.get(*field).is_some()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "non_field_errors": ["At least one of the following fields must be provided: metadata, attributes, permission, name."] })),
        )
            .into_response();
    }
    let permission = call.body.get("permission").cloned();
    if let Some(permission) = &permission {
        let forbidden: Vec<&str> =
            FORBIDDEN_PERMISSION_FIELDS.iter().copied().filter(|field| permission.get(*field).is_some()).collect();
        if !forbidden.is_empty() || !permission.is_object() {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({ "permission": [format!("Forbidden permission fields: {}", forbidden.join(", "))] })),
            )
                .into_response();
        }
    }
    let mut site = lock(&shared.site);
    let Some(present) = site.present_mut(&room.id, identity) else {
        return error(StatusCode::NOT_FOUND, "Participant not found");
    };
    if let Some(permission) = permission {
        // LiveKit replaces the permission object as a whole.
        present.permission = Some(permission);
    }
    if let Some(name) = call.str_field("name") {
        present.name = name.to_string();
    }
    status_success()
}

fn remove_participant(shared: &Shared, call: &Call, room: &Room, user: Option<&str>) -> Response {
    if let Err(response) = require_admin(room, user) {
        return response;
    }
    let Some(identity) = call.str_field("participant_identity") else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "participant_identity": ["This field is required."] })),
        )
            .into_response();
    };
    let mut site = lock(&shared.site);
    let Some(roster) = site.roster.get_mut(&room.id) else {
        return error(StatusCode::NOT_FOUND, "Participant not found");
    };
    let before = roster.len();
    roster.retain(|present| present.identity != identity);
    if roster.len() == before {
        return error(StatusCode::NOT_FOUND, "Participant not found");
    }
    site.lobby.remove(&(room.id.clone(), identity.to_string()));
    status_success()
}

fn update_role(shared: &Shared, call: &Call, room: &Room, user: Option<&str>) -> Response {
    if let Err(response) = require_admin(room, user) {
        return response;
    }
    let (Some(identity), Some(role)) = (call.str_field("participant_identity"), call.str_field("role")) else {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "role": ["This field is required."] })))
            .into_response();
    };
    if role != "member" && role != "administrator" {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "role": [format!("\"{role}\" is not a valid choice.")] })),
        )
            .into_response();
    }
    let mut site = lock(&shared.site);
    let roster = site.roster.get(&room.id).cloned().unwrap_or_default();
    if !roster.iter().any(|present| present.user_sub.as_deref() == user) {
        return detail(StatusCode::FORBIDDEN, "You must be present in the meeting to perform this action.");
    }
    let Some(target_sub) =
        roster.iter().find(|present| present.identity == identity).and_then(|present| present.user_sub.clone())
    else {
        return detail(StatusCode::NOT_FOUND, "Participant not found in the meeting or has no account.");
    };
    if Some(target_sub.as_str()) == user {
        return detail(StatusCode::FORBIDDEN, "You cannot change your own role.");
    }
    if room.accesses.get(&target_sub).is_some_and(|current| current == "owner") {
        return detail(StatusCode::FORBIDDEN, "The owner's role cannot be changed.");
    }
    if let Some(found) = site.rooms.iter_mut().find(|found| found.id == room.id) {
        found.accesses.insert(target_sub, role.to_string());
    }
    if let Some(present) = site.present_mut(&room.id, identity) {
        present.attributes.insert("room_role".into(), role.into());
    }
    axum::Json(serde_json::json!({ "role": role, "livekit_synced": true })).into_response()
}

fn toggle_hand(shared: &Shared, call: &Call, room: &Room) -> Response {
    let claims = match token_claims(shared, call, room) {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let Some(raised) = call.body.get("raised").and_then(serde_json::Value::as_bool) else {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "raised": ["This field is required."] })))
            .into_response();
    };
    let mut site = lock(&shared.site);
    let Some(present) = site.present_mut(&room.id, &claims.sub) else {
        return error(StatusCode::NOT_FOUND, "Participant not found");
    };
    let at = if raised { iso_now() } else { String::new() };
    present.attributes.insert("handRaisedAt".into(), at);
    status_success()
}

fn rename(shared: &Shared, call: &Call, room: &Room) -> Response {
    let claims = match token_claims(shared, call, room) {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let Some(name) = call.str_field("name").filter(|name| !name.is_empty() && name.chars().count() <= 255) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "name": ["Ensure this field has 1 to 255 characters."] })),
        )
            .into_response();
    };
    let mut site = lock(&shared.site);
    let Some(present) = site.present_mut(&room.id, &claims.sub) else {
        return error(StatusCode::NOT_FOUND, "Participant not found");
    };
    present.name = name.to_string();
    status_success()
}

/// LiveKit's `ListParticipants` over Twirp JSON, for the simulated room.
fn list_participants(shared: &Shared, call: &Call) -> Response {
    let denied = || {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "code": "unauthenticated", "msg": "permissions denied" })),
        )
            .into_response()
    };
    let Some(token) = call.bearer() else { return denied() };
    let Ok(claims) = TokenVerifier::with_api_key(&shared.keys.api_key, &shared.keys.api_secret).verify(token) else {
        return denied();
    };
    let room = call.str_field("room").unwrap_or_default();
    if !claims.video.room_admin || claims.video.room != room {
        return denied();
    }
    let site = lock(&shared.site);
    let participants: Vec<serde_json::Value> = site
        .roster
        .get(room)
        .into_iter()
        .flatten()
        .map(|present| {
            let tracks: Vec<serde_json::Value> = present
                .tracks
                .iter()
                .map(|track| {
                    let kind =
                        if track.source == "CAMERA" || track.source == "SCREEN_SHARE" { "VIDEO" } else { "AUDIO" };
                    serde_json::json!({ "sid": track.sid, "type": kind, "source": track.source, "muted": track.muted })
                })
                .collect();
            serde_json::json!({
                "sid": format!("PA_{}", present.identity), "identity": present.identity, "name": present.name,
                "state": "ACTIVE", "tracks": tracks, "attributes": present.attributes,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "participants": participants })).into_response()
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "detail": text }))).into_response()
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text }))).into_response()
}

fn error(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": text }))).into_response()
}

fn status_success() -> Response {
    axum::Json(serde_json::json!({ "status": "success" })).into_response()
}

fn raw(status: u16, body: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match body.trim_start().chars().next() {
        Some('{' | '[') => "application/json",
        Some('<') => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    (status, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

/// `handRaisedAt`: an ISO 8601 UTC timestamp (civil-from-days, proleptic Gregorian).
fn iso_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default();
    let days = i64::try_from(secs / 86_400).unwrap_or_default() + 719_468;
    let of_day = secs % 86_400;
    let (era, day_of_era) = (days.div_euclid(146_097), days.rem_euclid(146_097));
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}
