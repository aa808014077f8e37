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
//! Layout: `state` holds the site's data (accounts, rooms and their accesses, the lobby, the
//! simulated LiveKit rooms, what was seen) and `Shared`, what every request holds; `routes` runs
//! DRF's pipeline (routing, authentication, CSRF, permissions) and hands each action to its
//! handler; `entry` holds the handlers that let people in (the room, the lobby) and
//! `participants` those that manage people in the meeting, plus LiveKit's `ListParticipants`;
//! `fields` validates serializer fields as DRF does; `tokens` mints and verifies LiveKit tokens;
//! `python` reproduces small Python and Django behaviours; `responses` renders the answers.
//!
//! `start(keys) -> (Running, Handle)`.

// Helpers return the finished HTTP answer as their error, as axum handlers do; boxing it would
// only add noise to a test server.
#![allow(clippy::result_large_err)]

mod entry;
mod fields;
mod participants;
mod python;
mod responses;
mod routes;
mod state;
#[cfg(test)]
mod tests;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use serde_json::{Value, json};

use crate::{LivekitKeys, Running, serve};
use routes::dispatch;
use state::{Access, Room, Shared, Site};

/// `ROOM_TELEPHONY_PIN_LENGTH`.
const PIN_LENGTH: u32 = 10;

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
