//! La Suite Meet's room API (`shared/CONTROL_PLANES.md` §2), Django REST Framework style, plus the
//! one LiveKit RoomService call a Meet client makes with an owner's `roomAdmin` token (§6).
//!
//! Mirrors suitenumerique/meet v1.27.0-18-ge5f0b1c2 (`e5f0b1c2`; Django 5.2.16, DRF 3.17.1,
//! livekit-api 1.2.0) with its production settings: `src/backend/core/api/viewsets.py`,
//! `serializers.py`, `permissions.py`, `authentication/livekit.py`, `services/lobby.py`,
//! `services/room_roles.py`, `services/participants_management.py`, `utils.py`.
//!
//! * Routing: `/api/v1.0/rooms/{id|slug}/` and `…/{action}/` (DRF router, trailing slash). A
//!   path that only lacks its slash is redirected (301, `APPEND_SLASH`, for every method as with
//!   `DEBUG=False`); unknown paths get Django's HTML 404. `{id|slug}`: a UUID looks up the id,
//!   anything else `slug = slugify(key)` (ASCII only here: Django's NFKD folding of accented
//!   letters is not reproduced).
//! * Each request runs DRF's order: authentication, the view's `has_permission`, 405 for a method
//!   the action lacks, then the handler, which looks the room up (404) and checks object
//!   permissions where the real handler does, and reads the body only when its serializer runs.
//! * Authentication. Session (the default, `SessionAuthenticationWith401`): the Django session
//!   cookie, named `sessionid` as in production ([`Handle::set_session_cookie_name`] for the
//!   `Development` settings' `meet_sessionid`); [`Handle::add_user`] makes sessions. A
//!   session-authenticated unsafe request must pass CSRF (an `Origin`, if sent, equal to the
//!   site's; a `csrftoken` cookie; an equal `X-CSRFToken`), else 403 `{"detail":"CSRF Failed: …"}`.
//!   Unauthenticated callers of session endpoints get 401 + `WWW-Authenticate: Session`.
//!   LiveKit token (`Authorization: Bearer`, verified as `TokenVerifier` does) is the only
//!   authenticator of `toggle-hand/` and `rename/`, and the first of `mute-participant/`: there
//!   a missing or bad token is a **403** (`"Authentication credentials were not provided."`,
//!   `"Invalid LiveKit token: <reason>"`), and CSRF never applies.
//! * Body: JSON needs `Content-Type: application/json` when there is a body (415 otherwise;
//!   multipart, which Meet also parses, is not modelled); bad JSON → 400 `JSON parse error - …`;
//!   serializer errors are DRF's per-field lists; `update-participant/` with `hidden`, `recorder`
//!   or `agent` raises `SuspiciousOperation` → Django's **HTML** 400.
//! * `GET rooms/{key}/?username=` (`RoomSerializer`): `{id, name, slug, configuration,
//!   access_level, pin_code}` (`pin_code` is `null` unless [`Handle::set_telephony`]), plus
//!   `accesses: [{id, user: {id, email, full_name, short_name, timezone, language,
//!   default_room_access_level, default_room_configuration}, resource, role}]` for owners and
//!   administrators (`user.id` is the account's UUID, not its `sub`), plus `livekit{url, room,
//!   token}` when the room is public, trusted and the caller signed in, or the caller has a role
//!   (else `pin_code` is removed). An unknown key answers 200 `{id: null, slug, is_administrable:
//!   false, access_level: "public", livekit{…, room: slug}}` (`ALLOW_UNREGISTERED_ROOMS`, on by
//!   default; [`Handle::set_allow_unregistered_rooms`]).
//! * Lobby: `POST request-entry/ {username}` (serializer, then room) sets the HttpOnly
//!   `lobbyParticipantId` cookie on every answer, registers a waiter that expires 3 s after its
//!   last poll (admins counted as notified, [`Handle::notifications`]), and answers `{status,
//!   username, id, color, livekit}`; `waiting-participants/` and `enter/` for owners and
//!   administrators.
//! * Tokens (`utils.generate_token`, python livekit-api 1.2.0, minted here the same way): room =
//!   room UUID, identity = `sub` (signed in, lobby included) or lobby id / random UUID, `name` =
//!   `username` or `"Anonymous"` / full name / e-mail / account UUID; grants `{roomAdmin, roomJoin,
//!   room, canPublish, canSubscribe, canPublishData, canPublishSources, canUpdateOwnMetadata:
//!   false}` with every default source for owners and administrators whatever the configuration;
//!   attributes `{color: "hsl(h, s%, l%)", room_role: <role> or JSON null, is_authenticated}`; 6 h.
//! * Management: `mute-participant/`, `update-participant/`, `remove-participant/`,
//!   `update-participant-role/`, `toggle-hand/`, `rename/` with the real permissions, checks,
//!   error bodies (`{"error": …}` from the handlers, `{"detail": …}` from DRF) and LiveKit effects:
//!   every `UpdateParticipant` also sets the metadata to `json.dumps(metadata)`, i.e. `"null"`
//!   when none is sent, and an attribute set to `""` is deleted. Meet asks LiveKit whether
//!   participants are in the meeting; here the LiveKit room is simulated by a roster the test
//!   fills ([`Handle::add_present`]), which `POST /twirp/livekit.RoomService/ListParticipants`
//!   also serves (JSON, `roomAdmin` checked). Tokens carry [`Handle::set_livekit_url`] (default:
//!   the keys' URL); point it at this server to let an adapter reach the simulated RoomService.
//!   A participant has an account when an account's `sub` equals their identity, as Meet looks
//!   it up.
//! * Not modelled: room create/update/delete, recordings, invitations, subtitles, the request-entry
//!   throttle (150/min), `OPTIONS`.
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
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::{LivekitKeys, Running, serve};

/// `LOBBY_WAITING_TIMEOUT`.
const WAITING_TIMEOUT: Duration = Duration::from_secs(3);
/// `LOBBY_ACCEPTED_TIMEOUT`.
const ACCEPTED_TIMEOUT: Duration = Duration::from_secs(21_600);
/// `LOBBY_DENIED_TIMEOUT`.
const DENIED_TIMEOUT: Duration = Duration::from_secs(5);
/// Python SDK `DEFAULT_TTL`.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 60 * 60);
/// `TokenVerifier`'s `DEFAULT_LEEWAY`.
const TOKEN_LEEWAY_SECS: u64 = 60;
/// `LIVEKIT_DEFAULT_SOURCES`.
const DEFAULT_SOURCES: [&str; 4] = ["camera", "microphone", "screen_share", "screen_share_audio"];
/// `PARTICIPANT_FORBIDDEN_PERMISSION_FIELDS`.
const FORBIDDEN_PERMISSION_FIELDS: [&str; 3] = ["hidden", "recorder", "agent"];
/// `ParticipantPermission`'s fields (pydantic, `extra = "forbid"`).
const PERMISSION_FIELDS: [&str; 9] = [
    "can_subscribe",
    "can_publish",
    "can_publish_data",
    "can_publish_sources",
    "hidden",
    "recorder",
    "can_update_metadata",
    "agent",
    "can_subscribe_metrics",
];
/// `ROOM_TELEPHONY_PIN_LENGTH`.
const PIN_LENGTH: u32 = 10;
const NO_CREDENTIALS: &str = "Authentication credentials were not provided.";
const NO_PERMISSION: &str = "You do not have permission to perform this action.";
const NEEDS_PRIVILEGES: &str = "You must have privileges on room to perform this action.";
const NEEDS_PRESENCE: &str = "You must be connected to the meeting to perform this action.";
const NO_ROOM: &str = "No Room matches the given query.";
const REQUIRED: &str = "This field is required.";
/// Django's `page_not_found` with `DEBUG=False`.
const NOT_FOUND_PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";
/// Django's `bad_request`, what a `SuspiciousOperation` turns into.
const BAD_REQUEST_PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Bad Request (400)</title>\n</head>\n<body>\n  <h1>Bad Request (400)</h1><p></p>\n</body>\n</html>\n";
/// The room actions this server routes (`@action` `url_path`s).
const ACTIONS: [&str; 9] = [
    "request-entry",
    "waiting-participants",
    "enter",
    "mute-participant",
    "update-participant",
    "remove-participant",
    "update-participant-role",
    "toggle-hand",
    "rename",
];

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
    pub tracks: Vec<Track>,
    /// LiveKit attributes; Meet writes `handRaisedAt` and `room_role` (an empty value deletes).
    pub attributes: BTreeMap<String, String>,
    /// LiveKit metadata; every `UpdateParticipant` Meet makes sets it (`"null"` when the request
    /// had none).
    pub metadata: String,
    /// The last permission object sent through `update-participant/`, as sent.
    pub permission: Option<Value>,
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

/// A Meet account (`User`).
#[derive(Debug, Clone)]
struct User {
    /// The database UUID, which `accesses[].user.id` shows.
    id: String,
    /// The OIDC subject, which is also the LiveKit identity.
    sub: String,
    email: Option<String>,
    full_name: Option<String>,
    short_name: Option<String>,
}

impl User {
    /// `str(user)`: `email or admin_email or str(id)` (accounts made here have no admin e-mail).
    fn display(&self) -> String {
        self.email.clone().unwrap_or_else(|| self.id.clone())
    }
}

/// A `ResourceAccess`.
#[derive(Debug, Clone)]
struct Access {
    id: String,
    sub: String,
    role: String,
}

#[derive(Debug, Clone)]
struct Room {
    id: String,
    slug: String,
    name: String,
    access_level: AccessLevel,
    configuration: Value,
    pin_code: Option<String>,
    /// Newest first (`ResourceAccess.Meta.ordering = ("-created_at",)`).
    accesses: Vec<Access>,
}

impl Room {
    fn role(&self, sub: Option<&str>) -> Option<String> {
        let sub = sub?;
        self.accesses.iter().find(|access| access.sub == sub).map(|access| access.role.clone())
    }

    fn is_admin(&self, sub: Option<&str>) -> bool {
        matches!(self.role(sub).as_deref(), Some("owner" | "administrator"))
    }

    fn is_public(&self) -> bool {
        self.access_level == AccessLevel::Public
    }

    /// `configuration.get("can_publish_sources")`, when it is a list of strings.
    fn configured_sources(&self) -> Option<Vec<String>> {
        serde_json::from_value(self.configuration.get("can_publish_sources")?.clone()).ok()
    }
}

#[derive(Debug, Clone)]
struct Waiter {
    username: String,
    color: String,
    status: &'static str,
    expires: Instant,
}

struct Site {
    livekit_url: String,
    session_cookie: String,
    allow_unregistered_rooms: bool,
    telephony: bool,
    users: Vec<User>,
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
    /// `RoomViewSet.get_object`'s lookup: a UUID is the id, anything else a slug to slugify.
    fn find_room(&self, key: &str) -> Option<Room> {
        match uuid::Uuid::parse_str(key) {
            Ok(id) => self.rooms.iter().find(|room| uuid::Uuid::parse_str(&room.id).ok() == Some(id)).cloned(),
            Err(_) => {
                let slug = slugify(key);
                self.rooms.iter().find(|room| room.slug == slug).cloned()
            }
        }
    }

    fn room_mut(&mut self, key: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|room| room.id == key || room.slug == key)
    }

    fn user(&self, sub: &str) -> Option<&User> {
        self.users.iter().find(|user| user.sub == sub)
    }

    fn ensure_user(&mut self, sub: &str) {
        if self.user(sub).is_none() {
            self.users.push(User {
                id: uuid::Uuid::new_v4().to_string(),
                sub: sub.to_string(),
                email: None,
                full_name: None,
                short_name: None,
            });
        }
    }

    fn purge_lobby(&mut self) {
        let now = Instant::now();
        let before = self.lobby.len();
        self.lobby.retain(|_, waiter| waiter.expires > now);
        let expired = before - self.lobby.len();
        self.expired_waiters += u32::try_from(expired).unwrap_or(u32::MAX);
    }

    fn in_meeting(&self, room: &str, identity: &str) -> bool {
        self.roster.get(room).is_some_and(|roster| roster.iter().any(|present| present.identity == identity))
    }

    fn present_mut(&mut self, room: &str, identity: &str) -> Option<&mut Present> {
        self.roster.get_mut(room)?.iter_mut().find(|present| present.identity == identity)
    }

    /// `ParticipantsManagement.update` → LiveKit `UpdateParticipant`: metadata always
    /// (`json.dumps(metadata)`), attributes merged (an empty value deletes), permission replaced,
    /// a non-empty name set. `false` when LiveKit does not know the participant.
    fn update_participant(
        &mut self,
        room: &str,
        identity: &str,
        metadata: Option<&Value>,
        attributes: &[(String, String)],
        permission: Option<Value>,
        name: Option<&str>,
    ) -> bool {
        let Some(present) = self.present_mut(room, identity) else { return false };
        present.metadata = python_json(metadata.unwrap_or(&Value::Null));
        for (key, value) in attributes {
            if value.is_empty() {
                present.attributes.remove(key);
            } else {
                present.attributes.insert(key.clone(), value.clone());
            }
        }
        if let Some(permission) = permission {
            present.permission = Some(permission);
        }
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            present.name = name.to_string();
        }
        true
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

    /// Signs `sub` in (creating the account on first use); returns the value of a fresh session
    /// cookie.
    pub fn add_user(&self, sub: &str) -> String {
        let session = uuid::Uuid::new_v4().simple().to_string();
        let mut site = self.lock();
        site.ensure_user(sub);
        site.sessions.insert(session.clone(), sub.to_string());
        session
    }

    /// Sets the account's e-mail and full name (both `null` until set).
    pub fn set_user_details(&self, sub: &str, email: Option<&str>, full_name: Option<&str>) {
        let mut site = self.lock();
        site.ensure_user(sub);
        if let Some(user) = site.users.iter_mut().find(|user| user.sub == sub) {
            user.email = email.map(String::from);
            user.full_name = full_name.map(String::from);
        }
    }

    /// Creates a room; returns its UUID. With [`Handle::set_telephony`] on, it gets a PIN.
    pub fn add_room(&self, slug: &str, name: &str, access_level: AccessLevel) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let mut site = self.lock();
        let pin_code = site.telephony.then(|| {
            let random = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or_default());
            format!("{:0width$}", random % 10u64.pow(PIN_LENGTH), width = PIN_LENGTH as usize)
        });
        site.rooms.push(Room {
            id: id.clone(),
            slug: slug.into(),
            name: name.into(),
            access_level,
            configuration: json!({}),
            pin_code,
            accesses: Vec::new(),
        });
        id
    }

    /// Gives `sub` a role (`owner`, `administrator`, `member`) in `room` (UUID or slug), creating
    /// the account if needed.
    pub fn set_role(&self, room: &str, sub: &str, role: &str) {
        let mut site = self.lock();
        site.ensure_user(sub);
        if let Some(found) = site.room_mut(room) {
            match found.accesses.iter_mut().find(|access| access.sub == sub) {
                Some(access) => access.role = role.into(),
                None => found
                    .accesses
                    .insert(0, Access { id: uuid::Uuid::new_v4().to_string(), sub: sub.into(), role: role.into() }),
            }
        }
    }

    /// Replaces `room`'s `configuration` (e.g. `{"everyone_can_mute": false}`).
    pub fn set_configuration(&self, room: &str, configuration: Value) {
        if let Some(found) = self.lock().room_mut(room) {
            found.configuration = configuration;
        }
    }

    /// `ALLOW_UNREGISTERED_ROOMS` (default `true`): whether an unknown room key still gets a token.
    pub fn set_allow_unregistered_rooms(&self, allow: bool) {
        self.lock().allow_unregistered_rooms = allow;
    }

    /// `ROOM_TELEPHONY_ENABLED` (default `false`): rooms added afterwards get a 10-digit PIN.
    pub fn set_telephony(&self, enabled: bool) {
        self.lock().telephony = enabled;
    }

    /// `SESSION_COOKIE_NAME`: `sessionid` (Django's default, production), or `meet_sessionid`
    /// as Meet's `Development` settings have it.
    pub fn set_session_cookie_name(&self, name: &str) {
        self.lock().session_cookie = name.to_string();
    }

    /// Puts a participant into the simulated LiveKit room of `room` (UUID). Tracks are `(sid,
    /// source)`.
    pub fn add_present(&self, room: &str, identity: &str, name: &str, tracks: &[(&str, &str)]) {
        let present = Present {
            identity: identity.into(),
            name: name.into(),
            tracks: tracks
                .iter()
                .map(|(sid, source)| Track { sid: (*sid).into(), source: (*source).into(), muted: false })
                .collect(),
            attributes: BTreeMap::new(),
            metadata: String::new(),
            permission: None,
        };
        self.lock().roster.entry(room.to_string()).or_default().push(present);
    }

    /// The simulated LiveKit room of `room` (UUID).
    pub fn present(&self, room: &str) -> Vec<Present> {
        self.lock().roster.get(room).cloned().unwrap_or_default()
    }

    /// `sub`'s role in `room` (UUID or slug).
    pub fn role(&self, room: &str, sub: &str) -> Option<String> {
        self.lock().room_mut(room).and_then(|found| found.role(Some(sub)))
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
    let site = Arc::new(Mutex::new(Site {
        livekit_url: keys.url.clone(),
        session_cookie: "sessionid".into(),
        allow_unregistered_rooms: true,
        telephony: false,
        users: Vec::new(),
        sessions: HashMap::new(),
        rooms: Vec::new(),
        lobby: HashMap::new(),
        roster: HashMap::new(),
        notifications: 0,
        expired_waiters: 0,
        requests: Vec::new(),
        fail_next: HashMap::new(),
    }));
    let shared = Shared { keys, site: site.clone() };
    let router = Router::new().fallback(dispatch).with_state(shared);
    Ok((serve(router).await?, Handle { site }))
}

#[derive(Clone)]
struct Shared {
    keys: LivekitKeys,
    site: Arc<Mutex<Site>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Site> {
        self.site.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one request carries.
struct Call {
    method: Method,
    host: String,
    headers: HeaderMap,
    cookies: HashMap<String, String>,
    query: HashMap<String, String>,
    body: Bytes,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn is_safe(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
    }

    /// `request.data` with Meet's parsers (`JSONParser`; multipart is not modelled): an empty
    /// body is `{}`, any other needs the JSON content type.
    fn data(&self) -> Result<Value, Response> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        let content_type = self.header("content-type").unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Unsupported media type \"{content_type}\" in request."),
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|error| detail(StatusCode::BAD_REQUEST, &format!("JSON parse error - {error}")))
    }
}

/// Which authentication classes a view runs, in order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authenticators {
    /// `SessionAuthenticationWith401` (the default).
    Session,
    /// `[LiveKitTokenAuthentication]`.
    Token,
    /// `[LiveKitTokenAuthentication, SessionAuthenticationWith401]` (mute).
    TokenThenSession,
}

/// The outcome of DRF's authentication.
enum Auth {
    Anonymous,
    /// Signed in through the session cookie.
    Session {
        sub: String,
    },
    /// A valid LiveKit token; `user` is the account whose `sub` is the token's identity, if any.
    Token {
        identity: String,
        room: String,
        user: Option<String>,
    },
}

/// A request in the middle of DRF's pipeline.
struct Ctx<'a> {
    shared: &'a Shared,
    call: &'a Call,
    auth: Auth,
    authenticators: Authenticators,
}

impl Ctx<'_> {
    /// `request.user.sub` when someone is signed in (session, or a token whose identity is an
    /// account).
    fn user(&self) -> Option<&str> {
        match &self.auth {
            Auth::Anonymous => None,
            Auth::Session { sub } => Some(sub),
            Auth::Token { user, .. } => user.as_deref(),
        }
    }

    fn authenticated(&self) -> bool {
        !matches!(self.auth, Auth::Anonymous)
    }

    /// `NotAuthenticated` / `AuthenticationFailed`: 401 with `WWW-Authenticate` when the first
    /// authenticator is the session one, else DRF turns it into 403.
    fn unauthenticated(&self, message: &str) -> Response {
        if self.authenticators == Authenticators::Session {
            let mut response = detail(StatusCode::UNAUTHORIZED, message);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Session"));
            response
        } else {
            detail(StatusCode::FORBIDDEN, message)
        }
    }

    /// `APIView.permission_denied`.
    fn denied(&self, message: Option<&str>) -> Response {
        if self.authenticated() {
            detail(StatusCode::FORBIDDEN, message.unwrap_or(NO_PERMISSION))
        } else {
            self.unauthenticated(NO_CREDENTIALS)
        }
    }

    /// `get_object`'s lookup (404 when unknown).
    fn room(&self, key: &str) -> Result<Room, Response> {
        self.shared.lock().find_room(key).ok_or_else(|| detail(StatusCode::NOT_FOUND, NO_ROOM))
    }

    fn account(&self, sub: &str) -> Option<User> {
        self.shared.lock().user(sub).cloned()
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
        ["api", "v1.0", "rooms", key, ""] if !key.is_empty() => "retrieve".to_string(),
        ["api", "v1.0", "rooms", key, action, ""] if !key.is_empty() && ACTIONS.contains(action) => {
            (*action).to_string()
        }
        ["twirp", "livekit.RoomService", method] => (*method).to_string(),
        _ => String::new(),
    };
    {
        let mut site = shared.lock();
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
    let call = Call {
        method: method.clone(),
        host: headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string(),
        cookies: parse_cookies(&headers),
        query: url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect(),
        headers,
        body,
    };
    let key = match segments.as_slice() {
        ["twirp", "livekit.RoomService", "ListParticipants"] if method == Method::POST => {
            return list_participants(&shared, &call);
        }
        ["api", "v1.0", "rooms", key, ..] if !action.is_empty() => percent_decode(key),
        _ => {
            // `CommonMiddleware`: a path that resolves once a slash is appended is redirected.
            let with_slash = format!("{path}/");
            let resolves = matches!(
                with_slash.trim_start_matches('/').split('/').collect::<Vec<_>>().as_slice(),
                ["api", "v1.0", "rooms", key, ""] if !key.is_empty()
            ) || matches!(
                with_slash.trim_start_matches('/').split('/').collect::<Vec<_>>().as_slice(),
                ["api", "v1.0", "rooms", key, action, ""] if !key.is_empty() && ACTIONS.contains(action)
            );
            if !path.ends_with('/') && resolves {
                let location = match uri.query() {
                    Some(query) => format!("{with_slash}?{query}"),
                    None => with_slash,
                };
                return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response();
            }
            return html(StatusCode::NOT_FOUND, NOT_FOUND_PAGE);
        }
    };
    let (authenticators, methods): (Authenticators, &[Method]) = match action.as_str() {
        "retrieve" | "waiting-participants" => (Authenticators::Session, &[Method::GET]),
        "mute-participant" => (Authenticators::TokenThenSession, &[Method::POST]),
        "toggle-hand" | "rename" => (Authenticators::Token, &[Method::POST]),
        _ => (Authenticators::Session, &[Method::POST]),
    };
    // `APIView.initial`: authentication, then the view's `has_permission`.
    let auth = match authenticate(&shared, &call, authenticators) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let ctx = Ctx { shared: &shared, call: &call, auth, authenticators };
    let needs_user = match action.as_str() {
        // `RoomPermissions`: anyone may read; writing needs a user.
        "retrieve" => !call.is_safe(),
        // No permission classes, `CanMuteParticipant`, `HasLiveKitRoomAccess`: object-level only.
        "request-entry" | "mute-participant" | "toggle-hand" | "rename" => false,
        // `HasPrivilegesOnRoom` (an `IsAuthenticated`).
        _ => true,
    };
    if needs_user && !ctx.authenticated() {
        return ctx.unauthenticated(NO_CREDENTIALS);
    }
    if !methods.contains(&method) {
        return detail(StatusCode::METHOD_NOT_ALLOWED, &format!("Method \"{method}\" not allowed."));
    }
    let result = match action.as_str() {
        "retrieve" => retrieve(&ctx, &key),
        "request-entry" => request_entry(&ctx, &key),
        "waiting-participants" => waiting(&ctx, &key),
        "enter" => enter(&ctx, &key),
        "mute-participant" => mute(&ctx, &key),
        "update-participant" => update_participant(&ctx, &key),
        "remove-participant" => remove_participant(&ctx, &key),
        "update-participant-role" => update_role(&ctx, &key),
        "toggle-hand" => toggle_hand(&ctx, &key),
        _ => rename(&ctx, &key),
    };
    result.unwrap_or_else(|response| response)
}

/// DRF's `Request._authenticate` over `authenticators`: the first that recognises the request
/// wins; an error from one of them ends the request.
fn authenticate(shared: &Shared, call: &Call, authenticators: Authenticators) -> Result<Auth, Response> {
    let as_failure = |message: String| {
        // The token authenticator has no `authenticate_header`, so DRF answers 403.
        detail(StatusCode::FORBIDDEN, &message)
    };
    if matches!(authenticators, Authenticators::Token | Authenticators::TokenThenSession)
        && let Some(authorization) = call.header("authorization")
    {
        let parts: Vec<&str> = authorization.split_whitespace().collect();
        let [scheme, token] = parts.as_slice() else {
            return Err(as_failure("Authorization header must be: Bearer <token>".into()));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(as_failure("Authorization header must be: Bearer <token>".into()));
        }
        let claims = verify_token(&shared.keys, token)
            .map_err(|reason| as_failure(format!("Invalid LiveKit token: {reason}")))?;
        let identity = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_string();
        if identity.is_empty() {
            return Err(as_failure("Invalid LiveKit token: Token missing user identity".into()));
        }
        let room = claims.pointer("/video/room").and_then(Value::as_str).unwrap_or_default().to_string();
        let user = shared.lock().user(&identity).map(|user| user.sub.clone());
        return Ok(Auth::Token { identity, room, user });
    }
    if matches!(authenticators, Authenticators::Session | Authenticators::TokenThenSession) {
        let site = shared.lock();
        let sub = call.cookies.get(&site.session_cookie).and_then(|session| site.sessions.get(session)).cloned();
        drop(site);
        if let Some(sub) = sub {
            // `SessionAuthentication.enforce_csrf`, for session-authenticated requests only.
            if !call.is_safe()
                && let Err(reason) = csrf(call)
            {
                return Err(detail(StatusCode::FORBIDDEN, &format!("CSRF Failed: {reason}")));
            }
            return Ok(Auth::Session { sub });
        }
    }
    Ok(Auth::Anonymous)
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

/// Django's `CsrfViewMiddleware` for a plain-HTTP site.
fn csrf(call: &Call) -> Result<(), String> {
    if let Some(origin) = call.header("origin")
        && origin != format!("http://{}", call.host)
    {
        return Err(format!("Origin checking failed - {origin} does not match any trusted origins."));
    }
    let cookie = call.cookies.get("csrftoken").ok_or("CSRF cookie not set.")?;
    let token = call.header("x-csrftoken").ok_or("CSRF token missing.")?;
    if token != cookie {
        return Err("CSRF token from the 'X-Csrftoken' HTTP header incorrect.".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Serializer fields, as DRF validates them.

/// Collected field errors; a 400 with them when any.
#[derive(Default)]
struct Errors(serde_json::Map<String, Value>);

impl Errors {
    fn add(&mut self, field: &str, message: &str) {
        self.0.insert(field.to_string(), json!([message]));
    }

    fn finish(self) -> Result<(), Response> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err((StatusCode::BAD_REQUEST, axum::Json(Value::Object(self.0))).into_response())
        }
    }
}

/// `Serializer.run_validation` on the top-level data: it must be a dictionary.
fn object(data: &Value) -> Result<&serde_json::Map<String, Value>, Response> {
    let found = match data {
        Value::Object(object) => return Ok(object),
        Value::Null => return Err(non_field("This field may not be null.")),
        other => python_type(other),
    };
    Err(non_field(&format!("Invalid data. Expected a dictionary, but got {found}.")))
}

fn non_field(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "non_field_errors": [message] }))).into_response()
}

fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// `CharField` options.
#[derive(Clone, Copy)]
struct Char {
    required: bool,
    allow_null: bool,
    allow_blank: bool,
    min_length: usize,
    max_length: Option<usize>,
}

const CHAR: Char = Char { required: true, allow_null: false, allow_blank: false, min_length: 0, max_length: None };

/// A `CharField`: `Ok(None)` when absent (not required) or null (allowed).
fn char_field(object: &serde_json::Map<String, Value>, name: &str, field: Char, errors: &mut Errors) -> Option<String> {
    let value = match object.get(name) {
        None => {
            if field.required {
                errors.add(name, REQUIRED);
            }
            return None;
        }
        Some(Value::Null) => {
            if !field.allow_null {
                errors.add(name, "This field may not be null.");
            }
            return None;
        }
        // `CharField.to_internal_value`: numbers become strings, booleans and containers fail.
        Some(Value::String(text)) => text.trim().to_string(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => {
            errors.add(name, "Not a valid string.");
            return None;
        }
    };
    if value.is_empty() && !field.allow_blank {
        errors.add(name, "This field may not be blank.");
        return None;
    }
    let length = value.chars().count();
    if let Some(max) = field.max_length
        && length > max
    {
        errors.add(name, &format!("Ensure this field has no more than {max} characters."));
        return None;
    }
    if length < field.min_length && !value.is_empty() {
        errors.add(name, &format!("Ensure this field has at least {} characters.", field.min_length));
        return None;
    }
    Some(value)
}

/// A required `BooleanField`, with DRF's accepted spellings.
fn bool_field(object: &serde_json::Map<String, Value>, name: &str, errors: &mut Errors) -> Option<bool> {
    let parsed = match object.get(name) {
        None => {
            errors.add(name, REQUIRED);
            return None;
        }
        Some(Value::Null) => {
            errors.add(name, "This field may not be null.");
            return None;
        }
        Some(Value::Bool(value)) => Some(*value),
        // DRF compares with `in TRUE_VALUES`, where `1 == 1.0`.
        Some(Value::Number(number)) => match number.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Some(Value::String(text)) => match text.as_str() {
            "t" | "T" | "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" | "1" => {
                Some(true)
            }
            "f" | "F" | "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" | "0" => {
                Some(false)
            }
            _ => None,
        },
        Some(_) => None,
    };
    if parsed.is_none() {
        errors.add(name, "Must be a valid boolean.");
    }
    parsed
}

/// A `DictField(required=False, allow_null=True)`.
fn dict_field<'a>(object: &'a serde_json::Map<String, Value>, name: &str, errors: &mut Errors) -> Option<&'a Value> {
    match object.get(name) {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => Some(value),
        Some(other) => {
            errors.add(name, &format!("Expected a dictionary of items but got type \"{}\".", python_type(other)));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers.

/// `RoomViewSet.retrieve`.
fn retrieve(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let username = ctx.call.query.get("username").map(String::as_str);
    let user = ctx.user();
    let Ok(room) = ctx.room(key) else {
        if !ctx.shared.lock().allow_unregistered_rooms {
            return Err(detail(StatusCode::NOT_FOUND, NO_ROOM));
        }
        let slug = slugify(key);
        let token = mint(ctx.shared, &slug, user, username, None, None, None, None);
        let livekit = json!({ "url": ctx.shared.lock().livekit_url, "room": slug, "token": token });
        return Ok(axum::Json(json!({
            "id": null, "slug": slug, "is_administrable": false, "access_level": "public", "livekit": livekit,
        }))
        .into_response());
    };
    let role = room.role(user);
    let mut body = json!({
        "id": room.id, "name": room.name, "slug": room.slug, "configuration": room.configuration,
        "access_level": room.access_level.as_str(), "pin_code": room.pin_code,
    });
    if room.is_admin(user) {
        let site = ctx.shared.lock();
        let accesses: Vec<Value> = room
            .accesses
            .iter()
            .filter_map(|access| {
                let account = site.user(&access.sub)?;
                Some(json!({
                    "id": access.id,
                    "user": {
                        "id": account.id, "email": account.email, "full_name": account.full_name,
                        "short_name": account.short_name, "timezone": "UTC", "language": "en-us",
                        "default_room_access_level": null, "default_room_configuration": {},
                    },
                    "resource": room.id,
                    "role": access.role,
                }))
            })
            .collect();
        body["accesses"] = Value::Array(accesses);
    }
    let should_access =
        (room.access_level == AccessLevel::Trusted && user.is_some()) || role.is_some() || room.is_public();
    if should_access {
        let token = mint(ctx.shared, &room.id, user, username, None, room.configured_sources(), role.as_deref(), None);
        body["livekit"] = json!({ "url": ctx.shared.lock().livekit_url, "room": room.id, "token": token });
    } else if let Some(fields) = body.as_object_mut() {
        fields.remove("pin_code");
    }
    Ok(axum::Json(body).into_response())
}

/// `RoomViewSet.request_entry` + `LobbyService.request_entry`.
fn request_entry(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let username = char_field(object(&data)?, "username", CHAR, &mut errors);
    errors.finish()?;
    let username = username.unwrap_or_default();
    let room = ctx.room(key)?;
    let participant_id =
        ctx.call.cookies.get("lobbyParticipantId").cloned().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let user = ctx.user();
    let role = room.role(user);
    let lobby_key = (room.id.clone(), participant_id.clone());
    let existing = {
        let mut site = ctx.shared.lock();
        site.purge_lobby();
        site.lobby.get(&lobby_key).cloned()
    };
    let bypass = room.is_public()
        || (room.access_level == AccessLevel::Trusted && user.is_some())
        || (room.access_level == AccessLevel::Restricted && user.is_some() && role.is_some());
    let token = |color: &str| {
        let token = mint(
            ctx.shared,
            &room.id,
            user,
            Some(&username),
            Some(color.to_string()),
            room.configured_sources(),
            role.as_deref(),
            Some(&participant_id),
        );
        json!({ "url": ctx.shared.lock().livekit_url, "room": room.id, "token": token })
    };
    let (participant, livekit) = if bypass {
        // The accepted participant is not stored: only an existing entry's copy is changed.
        let mut participant = existing.unwrap_or_else(|| Waiter {
            username: username.clone(),
            color: generate_color(&participant_id),
            status: "accepted",
            expires: Instant::now(),
        });
        participant.status = "accepted";
        let livekit = token(&participant.color);
        (participant, livekit)
    } else {
        match existing {
            None => {
                let waiter = Waiter {
                    username: username.clone(),
                    color: generate_color(&participant_id),
                    status: "waiting",
                    expires: Instant::now() + WAITING_TIMEOUT,
                };
                let mut site = ctx.shared.lock();
                site.notifications += 1;
                site.lobby.insert(lobby_key, waiter.clone());
                (waiter, Value::Null)
            }
            Some(waiter) if waiter.status == "waiting" => {
                if let Some(stored) = ctx.shared.lock().lobby.get_mut(&lobby_key) {
                    stored.expires = Instant::now() + WAITING_TIMEOUT;
                }
                (waiter, Value::Null)
            }
            Some(waiter) if waiter.status == "accepted" => {
                let livekit = token(&waiter.color);
                (waiter, livekit)
            }
            Some(waiter) => (waiter, Value::Null),
        }
    };
    let mut response = axum::Json(json!({
        "status": participant.status, "username": participant.username, "id": participant_id,
        "color": participant.color, "livekit": livekit,
    }))
    .into_response();
    // `prepare_response` sets the cookie on every answer.
    let cookie = format!("lobbyParticipantId={participant_id}; HttpOnly; Path=/; SameSite=Lax; Secure");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `HasPrivilegesOnRoom.has_object_permission`.
fn require_privileges(ctx: &Ctx<'_>, room: &Room) -> Result<(), Response> {
    if room.is_admin(ctx.user()) { Ok(()) } else { Err(ctx.denied(Some(NEEDS_PRIVILEGES))) }
}

/// `list_waiting_participants`.
fn waiting(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    if room.is_public() {
        return Ok(axum::Json(json!({ "participants": [] })).into_response());
    }
    let mut site = ctx.shared.lock();
    site.purge_lobby();
    let participants: Vec<Value> = site
        .lobby
        .iter()
        .filter(|((room_id, _), waiter)| *room_id == room.id && waiter.status == "waiting")
        .map(|((_, id), waiter)| json!({ "status": waiter.status, "username": waiter.username, "id": id, "color": waiter.color }))
        .collect();
    Ok(axum::Json(json!({ "participants": participants })).into_response())
}

/// `allow_participant_to_enter`: serializer, then the room and its object permission.
fn enter(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let participant_id = match fields.get("participant_id") {
        None => {
            errors.add("participant_id", REQUIRED);
            None
        }
        Some(Value::Null) => {
            errors.add("participant_id", "This field may not be null.");
            None
        }
        Some(value) => {
            let parsed = value.as_str().and_then(|text| uuid::Uuid::parse_str(text.trim()).ok());
            if parsed.is_none() {
                errors.add("participant_id", "Must be a valid UUID.");
            }
            parsed
        }
    };
    let allow = bool_field(fields, "allow_entry", &mut errors);
    errors.finish()?;
    let (Some(participant_id), Some(allow)) = (participant_id, allow) else {
        return Err(non_field("Invalid data."));
    };
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    if room.is_public() {
        return Err(message(StatusCode::NOT_FOUND, "Room has no lobby system."));
    }
    let mut site = ctx.shared.lock();
    site.purge_lobby();
    let Some(waiter) = site.lobby.get_mut(&(room.id.clone(), participant_id.to_string())) else {
        return Err(message(StatusCode::NOT_FOUND, "Participant not found."));
    };
    if allow {
        waiter.status = "accepted";
        waiter.expires = Instant::now() + ACCEPTED_TIMEOUT;
    } else {
        waiter.status = "denied";
        waiter.expires = Instant::now() + DENIED_TIMEOUT;
    }
    Ok(message(StatusCode::OK, "Participant was updated."))
}

/// `mute_participant`: room, `CanMuteParticipant`, serializer, the token caller's presence, then
/// LiveKit's `MutePublishedTrack`.
fn mute(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    let token = match &ctx.auth {
        Auth::Token { identity, room, .. } => Some((identity.clone(), room.clone())),
        _ => None,
    };
    let allowed = if token.is_none() && room.is_admin(ctx.user()) {
        true
    } else if room.configuration.get("everyone_can_mute").and_then(Value::as_bool) == Some(false) {
        false
    } else {
        token.as_ref().is_some_and(|(_, token_room)| *token_room == room.id)
    };
    if !allowed {
        return Err(ctx.denied(None));
    }
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let identity = char_field(fields, "participant_identity", CHAR, &mut errors);
    let track_sid = char_field(fields, "track_sid", Char { max_length: Some(255), ..CHAR }, &mut errors);
    errors.finish()?;
    let (Some(identity), Some(track_sid)) = (identity, track_sid) else {
        return Err(non_field("Invalid data."));
    };
    let mut site = ctx.shared.lock();
    if let Some((caller, _)) = &token
        && !site.in_meeting(&room.id, caller)
    {
        return Err(error(StatusCode::FORBIDDEN, "Could not verify caller presence"));
    }
    let track = site
        .present_mut(&room.id, &identity)
        .and_then(|present| present.tracks.iter_mut().find(|track| track.sid == track_sid));
    match track {
        Some(track) => {
            track.muted = true;
            Ok(status_success())
        }
        None => Err(error(StatusCode::NOT_FOUND, "Participant not found")),
    }
}

/// `update_participant`: room, privileges, `UpdateParticipantSerializer`, LiveKit.
fn update_participant(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let identity = char_field(fields, "participant_identity", CHAR, &mut errors);
    let metadata = dict_field(fields, "metadata", &mut errors);
    let attributes = dict_field(fields, "attributes", &mut errors);
    let permission = match fields.get("permission") {
        None | Some(Value::Null) => None,
        Some(permission) => match check_permission(permission) {
            Ok(()) => {
                // `validate_permission` raises `SuspiciousOperation`, which DRF does not handle:
                // Django's HTML 400, whatever the other fields' errors.
                if FORBIDDEN_PERMISSION_FIELDS.iter().any(|field| permission.get(*field).is_some_and(|v| !v.is_null()))
                {
                    return Err(html(StatusCode::BAD_REQUEST, BAD_REQUEST_PAGE));
                }
                Some(permission.clone())
            }
            Err(problem) => {
                errors.add("permission", &problem);
                None
            }
        },
    };
    let name = char_field(
        fields,
        "name",
        Char { required: false, allow_null: true, allow_blank: true, max_length: Some(255), ..CHAR },
        &mut errors,
    );
    errors.finish()?;
    let Some(identity) = identity else { return Err(non_field("Invalid data.")) };
    let given = metadata.is_some()
        || attributes.is_some()
        || permission.is_some()
        || name.as_deref().is_some_and(|n| !n.is_empty());
    if !given {
        return Err(non_field(
            "At least one of the following fields must be provided: metadata, attributes, permission, name.",
        ));
    }
    let attributes: Vec<(String, String)> = attributes
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.as_str().map_or_else(|| value.to_string(), String::from)))
        .collect();
    let updated =
        ctx.shared.lock().update_participant(&room.id, &identity, metadata, &attributes, permission, name.as_deref());
    if updated { Ok(status_success()) } else { Err(error(StatusCode::NOT_FOUND, "Participant not found")) }
}

/// pydantic's `ParticipantPermission` (`extra = "forbid"`), lax mode.
fn check_permission(permission: &Value) -> Result<(), String> {
    let Value::Object(fields) = permission else {
        return Err("Input should be a valid dictionary or instance of ParticipantPermission".into());
    };
    for (name, value) in fields {
        if !PERMISSION_FIELDS.contains(&name.as_str()) {
            return Err(format!("{name}: Extra inputs are not permitted"));
        }
        let valid = if name == "can_publish_sources" {
            value.as_array().is_some_and(|sources| {
                sources.iter().all(|source| source.as_str().is_some_and(|source| DEFAULT_SOURCES.contains(&source)))
            })
        } else {
            match value {
                Value::Null | Value::Bool(_) => true,
                Value::Number(number) => matches!(number.as_f64(), Some(value) if value == 0.0 || value == 1.0),
                Value::String(text) => matches!(
                    text.to_ascii_lowercase().as_str(),
                    "0" | "1" | "true" | "false" | "t" | "f" | "yes" | "no" | "y" | "n" | "on" | "off"
                ),
                _ => false,
            }
        };
        if !valid {
            return Err(format!("{name}: Input is not valid"));
        }
    }
    Ok(())
}

/// `remove_participant`: the lobby entry is cleared before LiveKit is asked.
fn remove_participant(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let identity = char_field(object(&data)?, "participant_identity", CHAR, &mut errors);
    errors.finish()?;
    let Some(identity) = identity else { return Err(non_field("Invalid data.")) };
    let mut site = ctx.shared.lock();
    site.lobby.remove(&(room.id.clone(), identity.clone()));
    let Some(roster) = site.roster.get_mut(&room.id) else {
        return Err(error(StatusCode::NOT_FOUND, "Participant not found"));
    };
    let before = roster.len();
    roster.retain(|present| present.identity != identity);
    if roster.len() == before {
        return Err(error(StatusCode::NOT_FOUND, "Participant not found"));
    }
    Ok(status_success())
}

/// `update_participant_role`: room, `HasPrivilegesOnRoom`, `IsPresentInMeeting`, serializer,
/// the self check, then `RoomRoleService`'s errors (`{"error": …}`).
fn update_role(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    let actor = ctx.user().unwrap_or_default().to_string();
    if !ctx.shared.lock().in_meeting(&room.id, &actor) {
        return Err(ctx.denied(Some(NEEDS_PRESENCE)));
    }
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let identity = char_field(fields, "participant_identity", CHAR, &mut errors);
    let role = match fields.get("role") {
        None => {
            errors.add("role", REQUIRED);
            None
        }
        Some(Value::String(role)) if role == "member" || role == "administrator" => Some(role.clone()),
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), String::from);
            errors.add("role", &format!("\"{shown}\" is not a valid choice."));
            None
        }
    };
    errors.finish()?;
    let (Some(identity), Some(role)) = (identity, role) else { return Err(non_field("Invalid data.")) };
    if identity == actor {
        return Err(error(StatusCode::FORBIDDEN, "You cannot change your own role."));
    }
    if !ctx.shared.lock().in_meeting(&room.id, &identity) {
        return Err(error(StatusCode::NOT_FOUND, "Participant is not connected to this meeting."));
    }
    if ctx.account(&identity).is_none() {
        return Err(error(
            StatusCode::NOT_FOUND,
            "This participant has no user account and cannot be assigned a role.",
        ));
    }
    let mut site = ctx.shared.lock();
    let Some(found) = site.rooms.iter_mut().find(|found| found.id == room.id) else {
        return Err(detail(StatusCode::NOT_FOUND, NO_ROOM));
    };
    match found.accesses.iter_mut().find(|access| access.sub == identity) {
        Some(access) if access.role == "owner" => {
            return Err(error(StatusCode::FORBIDDEN, "Room owners cannot be demoted."));
        }
        Some(access) => access.role = role.clone(),
        None => found
            .accesses
            .insert(0, Access { id: uuid::Uuid::new_v4().to_string(), sub: identity.clone(), role: role.clone() }),
    }
    let synced = site.update_participant(&room.id, &identity, None, &[("room_role".into(), role.clone())], None, None);
    Ok(axum::Json(json!({ "role": role, "livekit_synced": synced })).into_response())
}

/// `HasLiveKitRoomAccess`: the token's room is this room; the token's identity.
fn token_for(ctx: &Ctx<'_>, room: &Room) -> Result<String, Response> {
    match &ctx.auth {
        Auth::Token { identity, room: token_room, .. } if *token_room == room.id => Ok(identity.clone()),
        _ => Err(ctx.denied(None)),
    }
}

/// `toggle_hand`: `handRaisedAt` = an ISO 8601 time, or `""` (which LiveKit deletes).
fn toggle_hand(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    let identity = token_for(ctx, &room)?;
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let raised = bool_field(object(&data)?, "raised", &mut errors);
    errors.finish()?;
    let at = if raised == Some(true) { python_isoformat_now() } else { String::new() };
    let updated =
        ctx.shared.lock().update_participant(&room.id, &identity, None, &[("handRaisedAt".into(), at)], None, None);
    if updated { Ok(status_success()) } else { Err(error(StatusCode::NOT_FOUND, "Participant not found")) }
}

/// `rename`: `RenameParticipantSerializer` (1–255 characters, not blank).
fn rename(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    let identity = token_for(ctx, &room)?;
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let name = char_field(object(&data)?, "name", Char { min_length: 1, max_length: Some(255), ..CHAR }, &mut errors);
    errors.finish()?;
    let Some(name) = name else { return Err(non_field("Invalid data.")) };
    let updated = ctx.shared.lock().update_participant(&room.id, &identity, None, &[], None, Some(&name));
    if updated { Ok(status_success()) } else { Err(error(StatusCode::NOT_FOUND, "Participant not found")) }
}

/// LiveKit's `ListParticipants` over Twirp JSON, for the simulated room.
fn list_participants(shared: &Shared, call: &Call) -> Response {
    let denied = || {
        (StatusCode::UNAUTHORIZED, axum::Json(json!({ "code": "unauthenticated", "msg": "permissions denied" })))
            .into_response()
    };
    let Some(token) = call.header("authorization").and_then(|value| value.strip_prefix("Bearer ")) else {
        return denied();
    };
    let Ok(claims) = verify_token(&shared.keys, token) else { return denied() };
    let room = serde_json::from_slice::<Value>(&call.body)
        .ok()
        .and_then(|body| body.get("room").and_then(Value::as_str).map(String::from))
        .unwrap_or_default();
    let admin = claims.pointer("/video/roomAdmin").and_then(Value::as_bool) == Some(true);
    if !admin || claims.pointer("/video/room").and_then(Value::as_str) != Some(room.as_str()) {
        return denied();
    }
    let site = shared.lock();
    let participants: Vec<Value> = site
        .roster
        .get(&room)
        .into_iter()
        .flatten()
        .map(|present| {
            let tracks: Vec<Value> = present
                .tracks
                .iter()
                .map(|track| {
                    let kind =
                        if track.source == "CAMERA" || track.source == "SCREEN_SHARE" { "VIDEO" } else { "AUDIO" };
                    json!({ "sid": track.sid, "type": kind, "source": track.source, "muted": track.muted })
                })
                .collect();
            json!({
                "sid": format!("PA_{}", present.identity), "identity": present.identity, "name": present.name,
                "state": "ACTIVE", "tracks": tracks, "metadata": present.metadata, "attributes": present.attributes,
            })
        })
        .collect();
    axum::Json(json!({ "participants": participants })).into_response()
}

// ---------------------------------------------------------------------------------------------
// Tokens, as Meet's `utils.generate_token` and python livekit-api 1.2.0 make and check them.

/// `utils.generate_token`. `sources`: the room's `can_publish_sources` (owners and
/// administrators always get the defaults); `participant_id`: the lobby id anonymous callers
/// join as.
#[allow(clippy::too_many_arguments)]
fn mint(
    shared: &Shared,
    room: &str,
    user: Option<&str>,
    username: Option<&str>,
    color: Option<String>,
    sources: Option<Vec<String>>,
    role: Option<&str>,
    participant_id: Option<&str>,
) -> String {
    let admin = matches!(role, Some("owner" | "administrator"));
    let sources = match sources {
        Some(sources) if !admin => sources,
        _ => DEFAULT_SOURCES.map(String::from).to_vec(),
    };
    let account = user.and_then(|sub| shared.lock().user(sub).cloned());
    let (identity, default_name) = match &account {
        Some(account) => (account.sub.clone(), account.full_name.clone().unwrap_or_else(|| account.display())),
        None => (participant_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), String::from), "Anonymous".into()),
    };
    let color = color.unwrap_or_else(|| generate_color(&identity));
    let name = username.filter(|name| !name.is_empty()).map_or(default_name, String::from);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default();
    // `Claims.asdict` drops `None` and `""` from the dataclasses, but not from the plain
    // attributes dict: a missing role stays a JSON null.
    let payload = json!({
        "name": name,
        "video": {
            "roomAdmin": admin, "roomJoin": true, "room": room, "canPublish": !sources.is_empty(),
            "canSubscribe": true, "canPublishData": true, "canPublishSources": sources,
            "canUpdateOwnMetadata": false,
        },
        "attributes": {
            "color": color, "room_role": role,
            "is_authenticated": if account.is_some() { "true" } else { "false" },
        },
        "sub": identity,
        "iss": shared.keys.api_key,
        "nbf": now,
        "exp": now + TOKEN_TTL.as_secs(),
    });
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input =
        format!("{}.{}", encode(br#"{"alg":"HS256","typ":"JWT"}"#), encode(payload.to_string().as_bytes()));
    format!("{signing_input}.{}", encode(&hs256(&shared.keys.api_secret, signing_input.as_bytes())))
}

fn hs256(secret: &str, input: &[u8]) -> Vec<u8> {
    // Invariant: HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// `TokenVerifier.verify` (PyJWT `decode` with the issuer and a 60 s leeway): the claims, or
/// PyJWT's reason. Unlike `livekit-api`'s Rust verifier it accepts the `null` attribute values
/// Meet's own tokens carry.
fn verify_token(keys: &LivekitKeys, token: &str) -> Result<Value, String> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signing_input, signature) = token.rsplit_once('.').ok_or("Not enough segments")?;
    let (header, payload) = signing_input.split_once('.').ok_or("Not enough segments")?;
    let header: Value = engine
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("Invalid header padding")?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("The specified alg value is not allowed".into());
    }
    let payload: Value = engine
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(Value::is_object)
        .ok_or("Invalid payload padding")?;
    let signature = engine.decode(signature.trim_end_matches('=')).map_err(|_| "Invalid crypto padding")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(keys.api_secret.as_bytes()).map_err(|error| error.to_string())?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).map_err(|_| "Signature verification failed")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default();
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf.as_u64().ok_or("Not Before claim (nbf) must be an integer.")?;
        if nbf > now + TOKEN_LEEWAY_SECS {
            return Err("The token is not yet valid (nbf)".into());
        }
    }
    if let Some(exp) = payload.get("exp") {
        let exp = exp.as_u64().ok_or("Expiration Time claim (exp) must be an integer.")?;
        if exp + TOKEN_LEEWAY_SECS <= now {
            return Err("Signature has expired".into());
        }
    }
    match payload.get("iss").and_then(Value::as_str) {
        None => Err("Token is missing the \"iss\" claim".into()),
        Some(issuer) if issuer != keys.api_key => Err("Invalid issuer".into()),
        Some(_) => Ok(payload),
    }
}

/// `utils.generate_color`: CPython's `random` seeded with the low 16 bits of SHA-1(identity).
fn generate_color(identity: &str) -> String {
    let digest = Sha1::digest(identity.as_bytes());
    let seed = u32::from(digest[18]) << 8 | u32::from(digest[19]);
    let mut random = PythonRandom::seeded(seed);
    let hue = random.randint(0, 360);
    let saturation = random.randint(50, 75);
    let lightness = random.randint(25, 60);
    format!("hsl({hue}, {saturation}%, {lightness}%)")
}

/// CPython's Mersenne Twister (`random.seed(int)`, `getrandbits`, `randint`), enough for
/// [`generate_color`].
struct PythonRandom {
    state: [u32; 624],
    index: usize,
}

impl PythonRandom {
    /// `random.seed(n)` for `0 <= n < 2**32`: `init_by_array([n])`.
    fn seeded(seed: u32) -> PythonRandom {
        let mut state = [0u32; 624];
        state[0] = 19_650_218;
        for i in 1..624 {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624 {
            state[i] = (state[i] ^ (state[i - 1] ^ (state[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                state[0] = state[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            state[i] =
                (state[i] ^ (state[i - 1] ^ (state[i - 1] >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                state[0] = state[623];
                i = 1;
            }
        }
        state[0] = 0x8000_0000;
        PythonRandom { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    next ^= 0x9908_b0df;
                }
                self.state[k] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `randint(low, high)` = `low + _randbelow(high - low + 1)` (rejection sampling on
    /// `getrandbits(n.bit_length())`).
    fn randint(&mut self, low: u32, high: u32) -> u32 {
        let n = high - low + 1;
        let bits = 32 - n.leading_zeros();
        loop {
            let candidate = self.next_u32() >> (32 - bits);
            if candidate < n {
                return low + candidate;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small Python and Django behaviours.

/// Django's `slugify` (without `allow_unicode`), for ASCII: NFKD folding of other characters is
/// not reproduced, they are dropped.
fn slugify(value: &str) -> String {
    let lowered: String = value
        .chars()
        .filter(char::is_ascii)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || c.is_ascii_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut slug = String::new();
    let mut in_run = false;
    for c in lowered.chars() {
        if c == '-' || c.is_ascii_whitespace() {
            if !in_run {
                slug.push('-');
            }
            in_run = true;
        } else {
            slug.push(c);
            in_run = false;
        }
    }
    slug.trim_matches(|c| c == '-' || c == '_').to_string()
}

/// A URL path segment as Django hands it to the view (percent-decoded, `+` kept).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[i], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `json.dumps(value)`: `", "` and `": "` separators, non-ASCII escaped.
fn python_json(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("[{}]", items.iter().map(python_json).collect::<Vec<_>>().join(", ")),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(key, value)| format!("{}: {}", python_json(&Value::String(key.clone())), python_json(value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::String(text) => {
            let mut out = String::from("\"");
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || !c.is_ascii() => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        other => other.to_string(),
    }
}

/// `timezone.now().isoformat()`: `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00` (civil-from-days,
/// proleptic Gregorian).
fn python_isoformat_now() -> String {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = elapsed.as_secs();
    let micros = elapsed.subsec_micros();
    let days = i64::try_from(secs / 86_400).unwrap_or_default() + 719_468;
    let of_day = secs % 86_400;
    let (era, day_of_era) = (days.div_euclid(146_097), days.rem_euclid(146_097));
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let fraction = if micros == 0 { String::new() } else { format!(".{micros:06}") };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}+00:00",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "detail": text }))).into_response()
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

fn error(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "error": text }))).into_response()
}

fn status_success() -> Response {
    axum::Json(json!({ "status": "success" })).into_response()
}

fn html(status: StatusCode, page: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_match_cpython() {
        // Computed with CPython 3: `utils.generate_color(identity)`.
        for (identity, color) in [
            ("owner-sub", "hsl(143, 66%, 35%)"),
            ("3f2b6c1e-1111-4222-8333-444455556666", "hsl(160, 68%, 58%)"),
            ("", "hsl(55, 70%, 42%)"),
            ("guest-1", "hsl(285, 55%, 27%)"),
        ] {
            assert_eq!(generate_color(identity), color, "color of {identity:?}");
        }
    }

    #[test]
    fn python_helpers_match_python() {
        assert_eq!(python_json(&Value::Null), "null");
        assert_eq!(python_json(&json!({ "a": 1, "b": [1, "é"] })), r#"{"a": 1, "b": [1, "\u00e9"]}"#);
        assert_eq!(slugify("  Daily Stand-up!  "), "daily-stand-up");
        assert_eq!(slugify("a_b -- c"), "a_b-c");
        let now = python_isoformat_now();
        assert!(now.ends_with("+00:00") && now.as_bytes()[10] == b'T', "{now}");
    }

    fn keys() -> LivekitKeys {
        LivekitKeys { url: "ws://x".into(), api_key: "key".into(), api_secret: "secret-secret-secret-secret".into() }
    }

    #[test]
    fn tokens_carry_a_null_role_and_verify_like_pyjwt() {
        let shared = Shared {
            keys: keys(),
            site: Arc::new(Mutex::new(Site {
                livekit_url: String::new(),
                session_cookie: "sessionid".into(),
                allow_unregistered_rooms: true,
                telephony: false,
                users: Vec::new(),
                sessions: HashMap::new(),
                rooms: Vec::new(),
                lobby: HashMap::new(),
                roster: HashMap::new(),
                notifications: 0,
                expired_waiters: 0,
                requests: Vec::new(),
                fail_next: HashMap::new(),
            })),
        };
        let token = mint(&shared, "room", None, Some(""), None, Some(vec![]), None, Some("lobby-id"));
        let claims = verify_token(&shared.keys, &token).expect("own token verifies");
        assert_eq!(claims["attributes"]["room_role"], Value::Null, "no role is a JSON null");
        assert_eq!(claims["name"], "Anonymous");
        assert_eq!(claims["sub"], "lobby-id");
        assert_eq!(claims["video"]["canPublish"], false);
        assert_eq!(claims["video"]["roomAdmin"], false);
        let owner = mint(&shared, "room", None, None, None, Some(vec![]), Some("owner"), Some("x"));
        let owner = verify_token(&shared.keys, &owner).unwrap();
        assert_eq!(owner["video"]["canPublishSources"], json!(DEFAULT_SOURCES), "owners get every source");
        let other = LivekitKeys { api_secret: "another-secret-another-secret".into(), ..keys() };
        assert_eq!(verify_token(&other, &token).unwrap_err(), "Signature verification failed");
        let foreign = LivekitKeys { api_key: "other".into(), ..keys() };
        assert_eq!(verify_token(&foreign, &token).unwrap_err(), "Invalid issuer");
        assert_eq!(verify_token(&shared.keys, "abc").unwrap_err(), "Not enough segments");
    }
}
