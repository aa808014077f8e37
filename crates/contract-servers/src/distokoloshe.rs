//! A disTokoloshe server's API (`shared/CONTROL_PLANES.md` §5), Express-like: every error is
//! `{error}`, auth is an HS256 app JWT (7 days) from `Authorization: Bearer`, `?token=` or a
//! JSON body's `token`; 401 `Missing authorization token` / `Invalid or expired token`.
//!
//! Routes: `POST /api/auth/register|login`, `GET /api/auth/me`, `GET /api/rooms`,
//! `GET /api/rooms/members`, `POST /api/rooms/:id/join|sync`, `GET /api/events` (server-sent
//! events: `:ok`, then `event:`/`data:` blocks, `:ping` comments), `POST /api/events/ping|leave`,
//! `GET /api/health`. Join answers `{token, e2eeKey, room, wsUrl}` with a 2 h LiveKit token
//! (identity = user name, room = room name) and `e2eeKey = base64(HMAC-SHA256(secret, room
//! name))`; a jailed user gets 403 `{error, punishment: {expiresAt, jailRoomId}}`. More than 3
//! event streams per user → 429. Presence is per event-stream connection: when a user's last
//! stream closes, they leave their room after a grace period (15 s if they pinged in the last
//! 10 s, else 2 s).
//!
//! The JWT is HMAC-SHA256 written out here rather than with `jsonwebtoken`: that crate resolves
//! its crypto through a process-wide provider which livekit-api installs itself, and enabling
//! another backend beside it in the same binary is a conflict waiting to happen.
//!
//! `wsUrl`: the real server sends the relative `/livekit/`, which its nginx proxies to LiveKit.
//! A test has no such proxy, so [`Config::ws_url`] may be set to the LiveKit server's absolute
//! URL (the adapter uses absolute URLs as they are); the default is the real `/livekit/`.
//!
//! `start(keys, config) -> (Running, Handle)`.

// Helpers return the finished HTTP answer as their error, as axum handlers do; boxing it would
// only add noise to a test server.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::stream::{self, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::{LivekitKeys, Running, serve};

const JWT_LIFETIME_SECS: u64 = 7 * 24 * 60 * 60;
const LIVEKIT_TTL: Duration = Duration::from_secs(2 * 60 * 60);
const MAX_STREAMS_PER_USER: usize = 3;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `wsUrl` in join answers (`/livekit/` on the real server).
    pub ws_url: String,
    /// Interval of `:ping` comments on event streams (30 s on the real server).
    pub ping_every: Duration,
    /// `JWT_SECRET`.
    pub jwt_secret: String,
    /// `E2EE_SECRET`.
    pub e2ee_secret: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ws_url: "/livekit/".into(),
            ping_every: Duration::from_secs(30),
            jwt_secret: "contract-jwt-secret".into(),
            e2ee_secret: "contract-e2ee-secret".into(),
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
struct User {
    id: u64,
    username: String,
    display_name: String,
    password: String,
    last_room_id: Option<u64>,
}

#[derive(Debug, Clone)]
struct Room {
    id: u64,
    name: String,
    kind: String,
    created_by: Option<u64>,
    is_jail: bool,
    jail_source_room_id: Option<u64>,
}

impl Room {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "type": self.kind, "created_by": self.created_by,
            "created_at": "2024-01-01 00:00:00", "mode": "normal", "is_jail": self.is_jail,
            "jail_source_room_id": self.jail_source_room_id,
        })
    }
}

struct Subscriber {
    connection: u64,
    user_id: u64,
    sender: mpsc::UnboundedSender<(String, serde_json::Value)>,
}

#[derive(Default)]
struct Server {
    config: Config,
    /// Bumped by [`Handle::invalidate_tokens`]: every JWT signed before stops verifying.
    generation: u32,
    users: Vec<User>,
    rooms: Vec<Room>,
    /// user id → room id
    presence: HashMap<u64, u64>,
    subscribers: Vec<Subscriber>,
    next_connection: u64,
    last_ping: HashMap<u64, Instant>,
    /// user id → (expiresAt in ms since the epoch, jail room id)
    punishments: HashMap<u64, (u64, u64)>,
    pings: HashMap<String, u32>,
    leaves: HashMap<String, u32>,
    logins: u32,
    requests: Vec<Seen>,
    fail_next: HashMap<String, (u16, String)>,
}

impl Server {
    fn secret(&self) -> String {
        format!("{}#{}", self.config.jwt_secret, self.generation)
    }

    fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|user| user.id == id)
    }

    fn broadcast(&mut self, event: &str, data: serde_json::Value) {
        self.subscribers.retain(|subscriber| subscriber.sender.send((event.to_string(), data.clone())).is_ok());
    }

    fn send_to(&mut self, user_id: u64, event: &str, data: serde_json::Value) {
        for subscriber in self.subscribers.iter().filter(|subscriber| subscriber.user_id == user_id) {
            if subscriber.sender.send((event.to_string(), data.clone())).is_err() {
                tracing::debug!("event stream {} already closed", subscriber.connection);
            }
        }
    }

    /// Moves `user_id` into `room_id` (or out of every room), telling everyone.
    fn place(&mut self, user_id: u64, room_id: Option<u64>) {
        let Some(user) = self.user(user_id).cloned() else { return };
        if let Some(old) = self.presence.remove(&user_id) {
            if Some(old) == room_id {
                self.presence.insert(user_id, old);
                return;
            }
            self.broadcast(
                "user:room_leave",
                serde_json::json!({ "userId": user_id, "username": user.username, "roomId": old }),
            );
        }
        if let Some(room_id) = room_id {
            self.presence.insert(user_id, room_id);
            if let Some(user) = self.users.iter_mut().find(|user| user.id == user_id) {
                user.last_room_id = Some(room_id);
            }
            self.broadcast(
                "user:room_join",
                serde_json::json!({ "userId": user_id, "username": user.username, "displayName": user.display_name, "roomId": room_id }),
            );
        }
    }

    fn sign(&self, user: &User) -> String {
        let now = now_secs();
        let claims = serde_json::json!({
            "sub": user.id, "username": user.username, "display_name": user.display_name,
            "iat": now, "exp": now + JWT_LIFETIME_SECS,
        });
        sign_hs256(&self.secret(), &claims)
    }

    fn e2ee_key(&self, room_name: &str) -> String {
        e2ee_key(&self.config.e2ee_secret, room_name)
    }
}

/// Test-side control of the server.
#[derive(Clone)]
pub struct Handle {
    server: Arc<Mutex<Server>>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Server> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates an account; returns its id.
    pub fn add_user(&self, username: &str, password: &str, display_name: &str) -> u64 {
        let mut server = self.lock();
        let id = server.users.len() as u64 + 1;
        server.users.push(User {
            id,
            username: username.into(),
            display_name: display_name.into(),
            password: password.into(),
            last_room_id: None,
        });
        id
    }

    /// Creates a room (`voice` or `video`) owned by `created_by`; returns its id.
    pub fn add_room(&self, name: &str, kind: &str, created_by: Option<u64>) -> u64 {
        let mut server = self.lock();
        let id = server.rooms.len() as u64 + 1;
        server.rooms.push(Room {
            id,
            name: name.into(),
            kind: kind.into(),
            created_by,
            is_jail: false,
            jail_source_room_id: None,
        });
        id
    }

    /// A passed vote against `username`: jailed for `duration`, moved to the jail room,
    /// `punishment:started` to everyone (with `jailConnection` for the target only).
    pub fn punish(&self, username: &str, duration: Duration) {
        let mut server = self.lock();
        let Some(user) = server.users.iter().find(|user| user.username == username).cloned() else { return };
        let source = server.presence.get(&user.id).copied();
        let jail = match server.rooms.iter().find(|room| room.is_jail) {
            Some(room) => room.id,
            None => {
                let id = server.rooms.len() as u64 + 1;
                server.rooms.push(Room {
                    id,
                    name: "Jail".into(),
                    kind: "voice".into(),
                    created_by: None,
                    is_jail: true,
                    jail_source_room_id: source,
                });
                id
            }
        };
        let expires_at = now_millis() + duration.as_millis() as u64;
        server.punishments.insert(user.id, (expires_at, jail));
        server.place(user.id, Some(jail));
        let punishment = serde_json::json!({
            "id": server.punishments.len(), "targetUserId": user.id, "targetUsername": user.username,
            "roomId": source, "jailRoomId": jail, "expiresAt": expires_at,
        });
        let others: Vec<u64> =
            server.subscribers.iter().map(|subscriber| subscriber.user_id).filter(|id| *id != user.id).collect();
        for other in others {
            server.send_to(other, "punishment:started", serde_json::json!({ "punishment": punishment }));
        }
        let jail_name = "Jail";
        let jail_connection = serde_json::json!({
            "token": "", "e2eeKey": server.e2ee_key(jail_name), "room": { "id": jail, "name": jail_name }, "wsUrl": server.config.ws_url,
        });
        server.send_to(
            user.id,
            "punishment:started",
            serde_json::json!({ "punishment": punishment, "jailConnection": jail_connection }),
        );
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

    pub fn logins(&self) -> u32 {
        self.lock().logins
    }

    /// User names present in `room_id`.
    pub fn members(&self, room_id: u64) -> Vec<String> {
        let server = self.lock();
        let mut names: Vec<String> = server
            .presence
            .iter()
            .filter(|(_, room)| **room == room_id)
            .filter_map(|(user, _)| server.user(*user).map(|user| user.username.clone()))
            .collect();
        names.sort();
        names
    }

    /// Open event streams of `username`.
    pub fn streams(&self, username: &str) -> usize {
        let server = self.lock();
        let Some(id) = server.users.iter().find(|user| user.username == username).map(|user| user.id) else { return 0 };
        server
            .subscribers
            .iter()
            .filter(|subscriber| subscriber.user_id == id && !subscriber.sender.is_closed())
            .count()
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

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // Invariant: HMAC accepts keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

/// Starts the server with no users and no rooms.
pub async fn start(keys: LivekitKeys, config: Config) -> std::io::Result<(Running, Handle)> {
    let server = Arc::new(Mutex::new(Server { config, ..Server::default() }));
    let shared = Shared { keys, server: server.clone() };
    let router = Router::new().fallback(dispatch).with_state(shared);
    Ok((serve(router).await?, Handle { server }))
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
    if body.len() > 16 * 1024 {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request entity too large");
    }
    let json: serde_json::Value = if body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(json) => json,
            Err(_) => return error(StatusCode::BAD_REQUEST, "Invalid JSON"),
        }
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["api", "auth", "register"]) => register(&shared, &json),
        ("POST", ["api", "auth", "login"]) => login(&shared, &json),
        ("GET", ["api", "health"]) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        _ => {
            let user_id = match authenticate(&shared, &headers, query.as_deref(), &json) {
                Ok(id) => id,
                Err(response) => return response,
            };
            match (method.as_str(), segments.as_slice()) {
                ("GET", ["api", "auth", "me"]) => me(&shared, user_id),
                ("GET", ["api", "rooms"]) => rooms(&shared),
                ("GET", ["api", "rooms", "members"]) => members(&shared),
                ("POST", ["api", "rooms", id, "join"]) => join(&shared, user_id, id),
                ("POST", ["api", "rooms", id, "sync"]) => sync(&shared, user_id, id),
                ("GET", ["api", "events"]) => events(&shared, user_id),
                ("POST", ["api", "events", "ping"]) => ping(&shared, user_id),
                ("POST", ["api", "events", "leave"]) => leave(&shared, user_id),
                _ => error(StatusCode::NOT_FOUND, "Not found"),
            }
        }
    }
}

fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &serde_json::Value,
) -> Result<u64, Response> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(String::from);
    let from_query = query.and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(|token| token.replace("%2E", ".").replace("%2e", "."))
    });
    let from_body = body.get("token").and_then(serde_json::Value::as_str).map(String::from);
    let Some(token) = from_header.or(from_query).or(from_body) else {
        return Err(error(StatusCode::UNAUTHORIZED, "Missing authorization token"));
    };
    let server = shared.lock();
    verify_hs256(&server.secret(), &token)
        .and_then(|claims| claims.get("sub").and_then(serde_json::Value::as_u64))
        .filter(|id| server.user(*id).is_some())
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "Invalid or expired token"))
}

fn user_json(user: &User) -> serde_json::Value {
    serde_json::json!({ "id": user.id, "username": user.username, "display_name": user.display_name, "last_room_id": user.last_room_id })
}

fn register(shared: &Shared, body: &serde_json::Value) -> Response {
    let field = |name: &str| body.get(name).and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    let (username, display_name, password) = (field("username"), field("display_name"), field("password"));
    if username.len() < 3 || username.len() > 32 || !username.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return error(StatusCode::BAD_REQUEST, "Username must be 3-32 characters (letters, numbers, underscores)");
    }
    if display_name.is_empty() || display_name.chars().count() > 64 {
        return error(StatusCode::BAD_REQUEST, "Display name must be 1-64 characters");
    }
    let strong = password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| !c.is_ascii_alphabetic());
    if password.len() < 8 || password.len() > 128 || !strong {
        return error(
            StatusCode::BAD_REQUEST,
            "Password must be 8-128 characters with upper and lower case letters and a digit or symbol",
        );
    }
    let mut server = shared.lock();
    if server.users.iter().any(|user| user.username.eq_ignore_ascii_case(&username)) {
        return error(StatusCode::CONFLICT, "Username already taken");
    }
    let user = User { id: server.users.len() as u64 + 1, username, display_name, password, last_room_id: None };
    server.users.push(user.clone());
    let token = server.sign(&user);
    (StatusCode::CREATED, axum::Json(serde_json::json!({ "token": token, "user": user_json(&user) }))).into_response()
}

fn login(shared: &Shared, body: &serde_json::Value) -> Response {
    let (Some(username), Some(password)) = (
        body.get("username").and_then(serde_json::Value::as_str),
        body.get("password").and_then(serde_json::Value::as_str),
    ) else {
        return error(StatusCode::BAD_REQUEST, "Username and password are required");
    };
    let mut server = shared.lock();
    server.logins += 1;
    let Some(user) = server.users.iter().find(|user| user.username == username && user.password == password).cloned()
    else {
        return error(StatusCode::UNAUTHORIZED, "Invalid credentials");
    };
    let token = server.sign(&user);
    axum::Json(serde_json::json!({ "token": token, "user": user_json(&user) })).into_response()
}

fn me(shared: &Shared, user_id: u64) -> Response {
    match shared.lock().user(user_id) {
        Some(user) => {
            let mut json = user_json(user);
            json["created_at"] = serde_json::json!("2024-01-01 00:00:00");
            axum::Json(serde_json::json!({ "user": json })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "User not found"),
    }
}

fn rooms(shared: &Shared) -> Response {
    let rooms: Vec<serde_json::Value> = shared.lock().rooms.iter().map(Room::json).collect();
    axum::Json(serde_json::json!({ "rooms": rooms })).into_response()
}

fn members(shared: &Shared) -> Response {
    let server = shared.lock();
    let mut members: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (user_id, room_id) in &server.presence {
        if let Some(user) = server.user(*user_id) {
            members.entry(room_id.to_string()).or_default().push(serde_json::json!({
                "id": user.id, "username": user.username, "display_name": user.display_name,
            }));
        }
    }
    axum::Json(serde_json::json!({ "members": members })).into_response()
}

fn join(shared: &Shared, user_id: u64, id: &str) -> Response {
    let Ok(room_id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "Invalid room ID");
    };
    let mut server = shared.lock();
    let Some(room) = server.rooms.iter().find(|room| room.id == room_id).cloned() else {
        return error(StatusCode::NOT_FOUND, "Room not found");
    };
    if let Some((expires_at, jail)) = server.punishments.get(&user_id).copied()
        && expires_at > now_millis()
        && room.id != jail
    {
        let body = serde_json::json!({
            "error": "You are serving a punishment",
            "punishment": { "expiresAt": expires_at, "jailRoomId": jail },
        });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    let Some(user) = server.user(user_id).cloned() else {
        return error(StatusCode::NOT_FOUND, "User not found");
    };
    server.place(user_id, Some(room_id));
    let token = shared.keys.mint(&room.name, &user.username, &user.display_name, LIVEKIT_TTL, |grants| {
        grants.can_publish_data = None;
    });
    let body = serde_json::json!({
        "token": token,
        "e2eeKey": server.e2ee_key(&room.name),
        "room": { "id": room.id, "name": room.name, "type": room.kind, "mode": "normal", "is_jail": room.is_jail, "created_by": room.created_by },
        "wsUrl": server.config.ws_url,
    });
    axum::Json(body).into_response()
}

fn sync(shared: &Shared, user_id: u64, id: &str) -> Response {
    let Ok(room_id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "Invalid room ID");
    };
    let mut server = shared.lock();
    if !server.rooms.iter().any(|room| room.id == room_id) {
        return error(StatusCode::NOT_FOUND, "Room not found");
    }
    server.place(user_id, Some(room_id));
    axum::Json(serde_json::json!({ "synced": true })).into_response()
}

fn ping(shared: &Shared, user_id: u64) -> Response {
    let mut server = shared.lock();
    server.last_ping.insert(user_id, Instant::now());
    if let Some(name) = server.user(user_id).map(|user| user.username.clone()) {
        *server.pings.entry(name).or_default() += 1;
    }
    axum::Json(serde_json::json!({ "ok": true })).into_response()
}

fn leave(shared: &Shared, user_id: u64) -> Response {
    let mut server = shared.lock();
    if let Some(name) = server.user(user_id).map(|user| user.username.clone()) {
        *server.leaves.entry(name).or_default() += 1;
    }
    server.place(user_id, None);
    axum::Json(serde_json::json!({ "left": true })).into_response()
}

/// Removes the stream from the subscribers when the client goes; presence follows after the
/// grace period if it was the user's last stream.
struct StreamGuard {
    server: Arc<Mutex<Server>>,
    connection: u64,
    user_id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let grace = {
            let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
            server.subscribers.retain(|subscriber| subscriber.connection != self.connection);
            if server.subscribers.iter().any(|subscriber| subscriber.user_id == self.user_id) {
                return;
            }
            let pinged_recently =
                server.last_ping.get(&self.user_id).is_some_and(|at| at.elapsed() < Duration::from_secs(10));
            if pinged_recently { Duration::from_secs(15) } else { Duration::from_secs(2) }
        };
        let (server, user_id) = (self.server.clone(), self.user_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                let mut server = server.lock().unwrap_or_else(PoisonError::into_inner);
                if !server.subscribers.iter().any(|subscriber| subscriber.user_id == user_id) {
                    server.place(user_id, None);
                }
            });
        }
    }
}

fn events(shared: &Shared, user_id: u64) -> Response {
    let mut server = shared.lock();
    server.subscribers.retain(|subscriber| !subscriber.sender.is_closed());
    if server.subscribers.iter().filter(|subscriber| subscriber.user_id == user_id).count() >= MAX_STREAMS_PER_USER {
        return error(StatusCode::TOO_MANY_REQUESTS, "Too many connections");
    }
    let (sender, receiver) = mpsc::unbounded_channel();
    server.next_connection += 1;
    let connection = server.next_connection;
    server.subscribers.push(Subscriber { connection, user_id, sender });
    let ping_every = server.config.ping_every;
    let guard = StreamGuard { server: shared.server.clone(), connection, user_id };
    let opening = stream::once(async { Ok::<Event, std::convert::Infallible>(Event::default().comment("ok")) });
    let updates = stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
        let (kind, data) = receiver.recv().await?;
        Some((Ok(Event::default().event(kind).data(data.to_string())), (receiver, guard)))
    });
    Sse::new(opening.chain(updates)).keep_alive(KeepAlive::new().interval(ping_every).text("ping")).into_response()
}

fn sign_hs256(secret: &str, claims: &serde_json::Value) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input =
        format!("{}.{}", encode(br#"{"alg":"HS256","typ":"JWT"}"#), encode(claims.to_string().as_bytes()));
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", encode(&mac.finalize().into_bytes()))
}

fn verify_hs256(secret: &str, token: &str) -> Option<serde_json::Value> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).ok()?;
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature).ok()?;
    let payload = signing_input.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let exp = claims.get("exp").and_then(serde_json::Value::as_u64)?;
    (exp > now_secs()).then_some(claims)
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

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default()
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_verify_only_with_their_secret_and_before_expiry() {
        let claims = serde_json::json!({ "sub": 1, "exp": now_secs() + 60 });
        let token = sign_hs256("s1", &claims);
        assert_eq!(verify_hs256("s1", &token), Some(claims));
        assert_eq!(verify_hs256("s2", &token), None, "wrong secret");
        let expired = sign_hs256("s1", &serde_json::json!({ "sub": 1, "exp": 1 }));
        assert_eq!(verify_hs256("s1", &expired), None, "expired");
    }
}
