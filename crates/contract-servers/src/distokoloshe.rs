//! A disTokoloshe server's API, mirroring `oddsock/distokoloshe` at
//! `2cb343be7622076630ce65197361755fce964a7e` (desktop 2.2.2, `apps/server` 1.0.0: Express 4,
//! express-rate-limit 7.5, better-sqlite3): `shared/CONTROL_PLANES.md` §5.
//!
//! What it sends is what the real server sends, type for type: rows come from SQLite, so flags
//! are integers (`is_jail: 0|1`) and times are SQLite text (`"YYYY-MM-DD HH:MM:SS"`, UTC);
//! every error is `{error}`; a body that is not JSON, or over 16 KB, reaches Express's global
//! error handler (500 `Internal server error`); unknown paths get Express's HTML 404 without an
//! auth check.
//!
//! * [`accounts`]: `POST /api/auth/register` (5 an hour per address) and `/login` (20 per 15
//!   minutes per address, every attempt counts), both with `RateLimit-*` headers and
//!   `Retry-After` + 429 when over; the 7-day HS256 app JWT from `Authorization: Bearer`,
//!   `?token=` or a JSON body's `token`; 401 `Missing authorization token` / `Invalid or
//!   expired token`.
//! * [`presence`]: `GET /api/events` (server-sent events; at most 3 streams a user, 500 in all),
//!   `POST /api/events/ping|leave`, and the per-stream room membership that `/join`, `/sync` and
//!   `GET /api/rooms/members` use — a user with no open stream is in no room.
//! * Rooms: `GET /api/rooms` (sorted by name, jails included), `POST /api/rooms/:id/join`
//!   (`{token, e2eeKey, room, wsUrl}`: a 2 h LiveKit token, identity = user name, room = room
//!   name, `e2eeKey = base64(HMAC-SHA256(secret, room name))`), `POST /api/rooms/:id/sync`.
//! * Votes are not modelled; [`Handle::punish`] is a vote that passed: LiveKit's
//!   `RemoveParticipant` in the source room, the user moved to the room's jail (`Jail: <room>`,
//!   created on first use), and `punishment:started` — with the jail's connection — to everyone.
//!   `/join` of the source room then answers 403 with the punishment; other rooms stay open.
//!
//! Events carry `{user: {id, username, display_name}, roomId}` (`user:room_join`,
//! `user:room_leave`), `{user}` (`user:online`, `user:offline`), `{room}` (`room:deleted`).
//!
//! Rate limits key on the first `X-Forwarded-For` hop (the real server trusts one proxy), else on
//! the loopback address every test client shares. The JWT is HMAC-SHA256 written out here rather
//! than with `jsonwebtoken`: that crate resolves its crypto through a process-wide provider which
//! livekit-api installs itself, and a second backend beside it is a conflict waiting to happen.
//!
//! `wsUrl`: the real server sends the relative `/livekit/`, which its nginx proxies to LiveKit.
//! A test has no such proxy, so [`Config::ws_url`] may be set to the LiveKit server's absolute
//! URL (the adapter uses absolute URLs as they are).
//!
//! `start(keys, config) -> (Running, Handle)`.

// Helpers return the finished HTTP answer as their error, as axum handlers do; boxing it would
// only add noise to a test server.
#![allow(clippy::result_large_err)]

mod accounts;
mod presence;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::Mac as _;

use crate::{LivekitKeys, Running, serve};
use accounts::{JWT_LIFETIME_SECS, Limiter, User, hmac_sha256, now_secs, sqlite_time};
use presence::{Client, Pending};

const LIVEKIT_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// `express.json({limit: '16kb'})`.
const BODY_LIMIT: usize = 16 * 1024;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `wsUrl` in join answers (`/livekit/` on the real server).
    pub ws_url: String,
    /// Interval of `:ping` comments on event streams (30 s on the real server).
    pub ping_every: Duration,
    /// How long a user whose last stream closed keeps their room: 2 s, or 15 s
    /// ([`Config::grace_after_ping`]) after a ping within 10 s.
    pub grace: Duration,
    pub grace_after_ping: Duration,
    /// `JWT_SECRET`.
    pub jwt_secret: String,
    /// `E2EE_SECRET`.
    pub e2ee_secret: String,
    /// `authLimiter`: sign-ins per address per window.
    pub login_limit: (u32, Duration),
    /// `registerLimiter`.
    pub register_limit: (u32, Duration),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ws_url: "/livekit/".into(),
            ping_every: Duration::from_secs(30),
            grace: Duration::from_secs(2),
            grace_after_ping: Duration::from_secs(15),
            jwt_secret: "contract-jwt-secret".into(),
            e2ee_secret: "contract-e2ee-secret".into(),
            login_limit: (20, Duration::from_secs(15 * 60)),
            register_limit: (5, Duration::from_secs(60 * 60)),
        }
    }
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
    id: u64,
    name: String,
    kind: String,
    created_by: Option<u64>,
    created_at: u64,
    is_jail: bool,
    jail_source_room_id: Option<u64>,
}

impl Room {
    /// A `rooms` row as better-sqlite3 returns it: the flag is an integer, times are text.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "type": self.kind, "created_by": self.created_by,
            "created_at": sqlite_time(self.created_at), "mode": "normal", "is_jail": u8::from(self.is_jail),
            "jail_source_room_id": self.jail_source_room_id,
        })
    }
}

#[derive(Debug, Clone)]
struct Punishment {
    id: u64,
    target: u64,
    source_room: u64,
    jail_room: u64,
    duration_secs: u64,
    expires_at: u64,
}

struct Server {
    config: Config,
    /// Bumped by [`Handle::invalidate_tokens`]: every JWT signed before stops verifying.
    generation: u32,
    users: Vec<User>,
    rooms: Vec<Room>,
    clients: Vec<Client>,
    next_connection: u64,
    pending: HashMap<u64, Pending>,
    next_generation: u64,
    last_ping: HashMap<u64, Instant>,
    punishments: Vec<Punishment>,
    login_limit: Limiter,
    register_limit: Limiter,
    pings: HashMap<String, u32>,
    leaves: HashMap<String, u32>,
    logins: u32,
    requests: Vec<Seen>,
    fail_next: HashMap<String, (u16, String)>,
}

impl Server {
    fn new(config: Config) -> Server {
        let (login, login_window) = config.login_limit;
        let (register, register_window) = config.register_limit;
        Server {
            login_limit: Limiter::new(login, login_window, "Too many attempts, please try again later"),
            register_limit: Limiter::new(register, register_window, "Too many registrations, please try again later"),
            config,
            generation: 0,
            users: Vec::new(),
            rooms: Vec::new(),
            clients: Vec::new(),
            next_connection: 0,
            pending: HashMap::new(),
            next_generation: 0,
            last_ping: HashMap::new(),
            punishments: Vec::new(),
            pings: HashMap::new(),
            leaves: HashMap::new(),
            logins: 0,
            requests: Vec::new(),
            fail_next: HashMap::new(),
        }
    }

    fn secret(&self) -> String {
        format!("{}#{}", self.config.jwt_secret, self.generation)
    }

    fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|user| user.id == id)
    }

    fn new_user(&mut self, username: &str, display_name: &str, password: &str) -> User {
        let user = User {
            id: self.users.len() as u64 + 1,
            username: username.into(),
            display_name: display_name.into(),
            password: password.into(),
            last_room_id: None,
            created_at: now_secs(),
            last_seen: None,
        };
        self.users.push(user.clone());
        user
    }

    fn new_room(&mut self, name: &str, kind: &str, created_by: Option<u64>, jail_of: Option<u64>) -> u64 {
        let id = self.rooms.iter().map(|room| room.id).max().unwrap_or(0) + 1;
        self.rooms.push(Room {
            id,
            name: name.into(),
            kind: kind.into(),
            created_by,
            created_at: now_secs(),
            is_jail: jail_of.is_some(),
            jail_source_room_id: jail_of,
        });
        id
    }

    fn sign(&self, user: &User) -> String {
        let now = now_secs();
        let claims = serde_json::json!({
            "sub": user.id, "username": user.username, "display_name": user.display_name,
            "iat": now, "exp": now + JWT_LIFETIME_SECS,
        });
        accounts::sign_hs256(&self.secret(), &claims)
    }

    fn e2ee_key(&self, room_name: &str) -> String {
        e2ee_key(&self.config.e2ee_secret, room_name)
    }

    /// The active punishment that keeps `user_id` out of `room_id`.
    fn punishment(&self, user_id: u64, room_id: u64) -> Option<&Punishment> {
        self.punishments.iter().find(|punishment| {
            punishment.target == user_id && punishment.source_room == room_id && punishment.expires_at > now_secs()
        })
    }
}

/// Test-side control of the server.
#[derive(Clone)]
pub struct Handle {
    server: Arc<Mutex<Server>>,
    keys: LivekitKeys,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Server> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates an account; returns its id.
    pub fn add_user(&self, username: &str, password: &str, display_name: &str) -> u64 {
        self.lock().new_user(username, display_name, password).id
    }

    /// Creates a room (`voice` or `video`) owned by `created_by`; returns its id.
    pub fn add_room(&self, name: &str, kind: &str, created_by: Option<u64>) -> u64 {
        self.lock().new_room(name, kind, created_by, None)
    }

    /// Deletes a room, as its creator's `DELETE /api/rooms/:id` does: `room:deleted {room}`.
    pub fn delete_room(&self, id: u64) {
        let mut server = self.lock();
        let Some(index) = server.rooms.iter().position(|room| room.id == id) else { return };
        let room = server.rooms.remove(index);
        server.broadcast("room:deleted", serde_json::json!({ "room": room.json() }));
    }

    /// A passed vote against `username`, who must be in a room (as the vote requires): LiveKit's
    /// `RemoveParticipant` there, a move to the room's jail, then `punishment:started` to every
    /// stream, each with the same copy (the jail connection included).
    pub async fn punish(&self, username: &str, duration: Duration) {
        let source = {
            let mut server = self.lock();
            let Some(user) = server.users.iter().find(|user| user.username == username).cloned() else { return };
            let Some(source) =
                server.user_room(user.id).and_then(|id| server.rooms.iter().find(|room| room.id == id).cloned())
            else {
                return;
            };
            let jail_name = format!("Jail: {}", source.name);
            let jail = match server.rooms.iter().find(|room| room.jail_source_room_id == Some(source.id)) {
                Some(room) => room.id,
                None => server.new_room(&jail_name, &source.kind.clone(), None, Some(source.id)),
            };
            let punishment = Punishment {
                id: server.punishments.len() as u64 + 1,
                target: user.id,
                source_room: source.id,
                jail_room: jail,
                duration_secs: duration.as_secs(),
                expires_at: now_secs() + duration.as_secs(),
            };
            server.punishments.push(punishment.clone());
            (user, source, jail_name, punishment)
        };
        let (user, source, jail_name, punishment) = source;
        if let Err(error) = self.keys.remove_participant(&source.name, &user.username).await {
            // The real server logs and carries on (the user may not be connected to LiveKit).
            tracing::debug!("removing {} from LiveKit: {error}", user.username);
        }
        let mut server = self.lock();
        server.set_user_room(user.id, Some(punishment.jail_room));
        server.tell_about("user:room_leave", user.id, Some(source.id));
        server.tell_about("user:room_join", user.id, Some(punishment.jail_room));
        let token = self.keys.mint(&jail_name, &user.username, &user.display_name, LIVEKIT_TTL, |grants| {
            grants.can_publish_data = None;
        });
        let data = serde_json::json!({
            "punishment": {
                "id": punishment.id, "targetUserId": user.id, "targetUsername": user.username,
                "targetDisplayName": user.display_name, "sourceRoomId": source.id, "sourceRoomName": source.name,
                "jailRoomId": punishment.jail_room, "jailRoomName": jail_name,
                "durationSecs": punishment.duration_secs, "expiresAt": sqlite_time(punishment.expires_at),
            },
            "jailConnection": {
                "token": token, "e2eeKey": server.e2ee_key(&jail_name),
                "room": { "id": punishment.jail_room, "name": jail_name, "type": source.kind },
                "wsUrl": server.config.ws_url,
            },
        });
        server.broadcast("punishment:started", data);
    }

    /// Sends an arbitrary event to every open stream.
    pub fn broadcast(&self, event: &str, data: serde_json::Value) {
        self.lock().broadcast(event, data);
    }

    /// Makes every JWT issued so far invalid (as a `JWT_SECRET` rotation would).
    pub fn invalidate_tokens(&self) {
        self.lock().generation += 1;
    }

    /// The next request to exactly `path` gets `status` with `body` (JSON if it starts with `{`,
    /// HTML if with `<`, else plain text).
    pub fn fail_next(&self, path: &str, status: u16, body: &str) {
        self.lock().fail_next.insert(path.to_string(), (status, body.to_string()));
    }

    pub fn pings(&self, username: &str) -> u32 {
        self.lock().pings.get(username).copied().unwrap_or(0)
    }

    pub fn leaves(&self, username: &str) -> u32 {
        self.lock().leaves.get(username).copied().unwrap_or(0)
    }

    /// Sign-in attempts so far (refused ones too).
    pub fn logins(&self) -> u32 {
        self.lock().logins
    }

    /// User names the server lists in `room_id` (`GET /api/rooms/members`), sorted.
    pub fn members(&self, room_id: u64) -> Vec<String> {
        let members = self.lock().members();
        let mut names: Vec<String> = members
            .get(&room_id.to_string())
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|member| member["username"].as_str().map(String::from))
            .collect();
        names.sort();
        names
    }

    /// Open event streams of `username`.
    pub fn streams(&self, username: &str) -> usize {
        let server = self.lock();
        let Some(id) = server.users.iter().find(|user| user.username == username).map(|user| user.id) else { return 0 };
        server.clients.iter().filter(|client| client.user_id == id && !client.sender.is_closed()).count()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }

    /// The `e2eeKey` this server hands out for `room_name`.
    pub fn e2ee_key(&self, room_name: &str) -> String {
        self.lock().e2ee_key(room_name)
    }
}

/// `base64(HMAC-SHA256(secret, roomName))` (`apps/server/src/livekit.ts`).
pub fn e2ee_key(secret: &str, room_name: &str) -> String {
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(room_name.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Starts the server with no users and no rooms.
pub async fn start(keys: LivekitKeys, config: Config) -> std::io::Result<(Running, Handle)> {
    let server = Arc::new(Mutex::new(Server::new(config)));
    let shared = Shared { keys: keys.clone(), server: Arc::clone(&server) };
    let router = Router::new().fallback(dispatch).with_state(shared);
    Ok((serve(router).await?, Handle { server, keys }))
}

#[derive(Clone)]
struct Shared {
    keys: LivekitKeys,
    server: Arc<Mutex<Server>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Server> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
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
    let query = uri.query().map(String::from);
    {
        let mut server = shared.lock();
        server.requests.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if let Some((status, body)) = server.fail_next.remove(&path) {
            return raw(status, &body);
        }
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let known = matches!(
        (method.as_str(), segments.as_slice()),
        ("POST", ["api", "auth", "register" | "login"])
            | ("GET", ["api", "health" | "rooms" | "events"])
            | ("GET", ["api", "auth", "me"] | ["api", "rooms", "members"])
            | ("POST", ["api", "rooms", _, "join" | "sync"] | ["api", "events", "ping" | "leave"])
    );
    if !known {
        // Express's own 404: HTML, and no auth (`requireAuth` is per route).
        let page = format!("<!DOCTYPE html><html><body><pre>Cannot {method} {path}</pre></body></html>");
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    }
    // `express.json()` reads only JSON bodies; a broken or oversized one reaches the global error
    // handler, which answers 500 whatever the parser said.
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let json = if !is_json || body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else if body.len() > BODY_LIMIT {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
    } else {
        match serde_json::from_slice(&body) {
            Ok(json) => json,
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
        }
    };
    let address = headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|hop| hop.trim().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["api", "auth", "register"]) => return accounts::register(&mut shared.lock(), &address, &json),
        ("POST", ["api", "auth", "login"]) => return accounts::login(&mut shared.lock(), &address, &json),
        ("GET", ["api", "health"]) => return axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        _ => {}
    }
    let user_id = match accounts::authenticate(&shared.lock(), &headers, query.as_deref(), &json) {
        Ok(id) => id,
        Err(response) => return response,
    };
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api", "auth", "me"]) => me(&shared.lock(), user_id),
        ("GET", ["api", "rooms"]) => rooms(&shared.lock()),
        ("GET", ["api", "rooms", "members"]) => {
            axum::Json(serde_json::json!({ "members": shared.lock().members() })).into_response()
        }
        ("POST", ["api", "rooms", id, "join"]) => join(&shared, user_id, id),
        ("POST", ["api", "rooms", id, "sync"]) => sync(&mut shared.lock(), user_id, id),
        ("GET", ["api", "events"]) => presence::open(&shared.server, user_id),
        ("POST", ["api", "events", "ping"]) => presence::ping(&mut shared.lock(), user_id),
        ("POST", ["api", "events", "leave"]) => shared.lock().leave(user_id),
        _ => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

fn me(server: &Server, user_id: u64) -> Response {
    match server.user(user_id) {
        Some(user) => {
            let mut json = user.json();
            json["created_at"] = serde_json::json!(sqlite_time(user.created_at));
            axum::Json(serde_json::json!({ "user": json })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "User not found"),
    }
}

/// `SELECT * FROM rooms ORDER BY name`.
fn rooms(server: &Server) -> Response {
    let mut rooms: Vec<&Room> = server.rooms.iter().collect();
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    let rooms: Vec<serde_json::Value> = rooms.into_iter().map(Room::json).collect();
    axum::Json(serde_json::json!({ "rooms": rooms })).into_response()
}

/// `parseInt(id, 10)`: leading digits count ("12abc" is 12).
fn room_id(id: &str) -> Option<u64> {
    let digits: String = id.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The checks `/join` and `/sync` share: the id, the room, a punishment from it.
fn checked_room(server: &Server, user_id: u64, id: &str, detailed: bool) -> Result<Room, Response> {
    let Some(room_id) = room_id(id) else {
        return Err(error(StatusCode::BAD_REQUEST, "Invalid room ID"));
    };
    let Some(room) = server.rooms.iter().find(|room| room.id == room_id).cloned() else {
        return Err(error(StatusCode::NOT_FOUND, "Room not found"));
    };
    if let Some(punishment) = server.punishment(user_id, room_id) {
        let mut body = serde_json::json!({ "error": "You are currently punished from this room" });
        if detailed {
            body["punishment"] = serde_json::json!({
                "expiresAt": sqlite_time(punishment.expires_at), "jailRoomId": punishment.jail_room,
            });
        }
        return Err((StatusCode::FORBIDDEN, axum::Json(body)).into_response());
    }
    Ok(room)
}

fn join(shared: &Shared, user_id: u64, id: &str) -> Response {
    let mut server = shared.lock();
    let room = match checked_room(&server, user_id, id, true) {
        Ok(room) => room,
        Err(refused) => return refused,
    };
    // The name comes from the token, not the database (the real server does the same).
    let Some(user) = server.user(user_id).cloned() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Failed to join room");
    };
    if let Some(stored) = server.users.iter_mut().find(|stored| stored.id == user_id) {
        stored.last_room_id = Some(room.id);
    }
    if let Some(previous) = server.user_room(user_id).filter(|previous| *previous != room.id) {
        server.set_user_room(user_id, None);
        server.tell_about("user:room_leave", user_id, Some(previous));
    }
    server.set_user_room(user_id, Some(room.id));
    server.tell_about("user:room_join", user_id, Some(room.id));
    let token = shared.keys.mint(&room.name, &user.username, &user.display_name, LIVEKIT_TTL, |grants| {
        grants.can_publish_data = None;
    });
    let body = serde_json::json!({
        "token": token,
        "e2eeKey": server.e2ee_key(&room.name),
        "room": {
            "id": room.id, "name": room.name, "type": room.kind, "mode": "normal",
            "is_jail": u8::from(room.is_jail), "created_by": room.created_by,
        },
        "wsUrl": server.config.ws_url,
    });
    axum::Json(body).into_response()
}

/// `/sync`: puts the room back on the user's (newly opened) streams; no token, no `last_room_id`.
fn sync(server: &mut Server, user_id: u64, id: &str) -> Response {
    let room = match checked_room(server, user_id, id, false) {
        Ok(room) => room,
        Err(refused) => return refused,
    };
    let previous = server.user_room(user_id);
    if let Some(previous) = previous.filter(|previous| *previous != room.id) {
        server.set_user_room(user_id, None);
        server.tell_about("user:room_leave", user_id, Some(previous));
    }
    server.set_user_room(user_id, Some(room.id));
    if previous != Some(room.id) {
        server.tell_about("user:room_join", user_id, Some(room.id));
    }
    axum::Json(serde_json::json!({ "synced": true })).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn raw(status: u16, body: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match body.trim_start().chars().next() {
        Some('{' | '[') => "application/json; charset=utf-8",
        Some('<') => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    (status, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}
