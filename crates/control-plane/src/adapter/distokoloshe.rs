//! disTokoloshe servers (`shared/CONTROL_PLANES.md` §5): an Express API under `/api`.
//!
//! * Auth: `POST /api/auth/login` gives a 7-day HS256 app JWT, sent as `Authorization: Bearer`
//!   (and as `?token=` for the event stream). The JWT is cached in the keyring; when the server
//!   answers 401 and a password is stored, the adapter signs in again once and retries.
//!   [`DistokoloshePlane::app_jwt`] hands the current JWT to the profile layer to store.
//! * Rooms: `GET /api/rooms`, with counts from `GET /api/rooms/members`.
//! * Join: `POST /api/rooms/:id/join` → LiveKit token, E2EE passphrase (`e2eeKey`, passed through
//!   as [`JoinGrant::e2ee_key`] for LiveKit's shared-key E2EE) and `wsUrl`. The real server sends
//!   the relative `/livekit/` (its nginx proxies that path to LiveKit), which becomes
//!   `ws(s)://<server host>/livekit/`; an absolute `wsUrl` is used as it is. A 403 with a
//!   `punishment` means the user was voted out: [`PlaneError::Kicked`] says until when.
//! * Presence: the server tracks room membership per event-stream connection; the client pings
//!   `POST /api/events/ping` every 8 s ([`HEARTBEAT_EVERY`]) and says `POST /api/events/leave`.
//! * Events: `GET /api/events?token=` (server-sent events). Joins and leaves in the room become
//!   [`PlaneEvent::Participants`]; a punishment of this user or the deletion of the room becomes
//!   [`PlaneEvent::Removed`].
//!
//! Moderation on disTokoloshe is by vote (`/api/votes`), which the moderation menu's direct
//! actions do not model; the adapter offers none.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use reqwest::{Method, RequestBuilder, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::adapter::livekit::token::TokenClaims;
use crate::http::{Failure, Http, decode_json};
use crate::plane::{
    BackendKind, Capabilities, Capability, ControlPlane, JoinGrant, PlaneEvent, PlaneParticipant, RoomSummary,
};
use crate::secret_store::SecretKeeper;
use crate::{PlaneError, Secret};

mod sse;
mod wire;

use sse::{MAX_PENDING_EVENT, SseParser};
use wire::{AuthAnswer, JoinAnswer, Member, MembersAnswer, RoomInfo, RoomsAnswer};

/// The web client's ping interval (`useEvents.ts`); the server's grace period after a missed ping
/// is 15 s, so one lost ping does not drop the user.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(8);
/// The server comments `:ping` every 30 s; silence for longer than this means a dead stream.
const STREAM_IDLE_LIMIT: Duration = Duration::from_secs(75);
/// Longest wait between event-stream reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A cached JWT this close to its expiry is replaced by signing in again.
const JWT_EXPIRY_MARGIN_SECS: u64 = 60;

/// Non-secret settings, stored in the profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The server's base URL, e.g. `https://voice.example.org`.
    pub url: String,
    pub username: String,
}

/// Secrets, kept in the OS keyring.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Lets the adapter sign in again when the app JWT expires.
    pub password: Option<Secret>,
    /// The cached 7-day app JWT.
    pub app_jwt: Option<Secret>,
}

/// Keyring entry names of [`Secrets`].
pub const SECRET_NAMES: &[&str] = &["password", "app-jwt"];

/// A disTokoloshe server.
#[derive(Debug)]
pub struct DistokoloshePlane {
    http: Http,
    base: String,
    username: String,
    password: Option<Secret>,
    session: Mutex<Option<AppSession>>,
    /// Where a new sign-in token goes, so that the next command reuses it (the server allows 20
    /// sign-ins per 15 minutes per address; one per command would lock the user out).
    keeper: Option<SecretKeeper>,
}

#[derive(Debug, Clone)]
struct AppSession {
    jwt: Secret,
    user_id: Option<String>,
}

impl DistokoloshePlane {
    /// Checks the settings; sends nothing.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a malformed URL, an empty user name, or neither a
    /// password nor a JWT.
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, PlaneError> {
        let base = base_url(&settings.url)?;
        if settings.username.trim().is_empty() {
            return Err(PlaneError::InvalidInput { message: "the disTokoloshe user name is empty".into() });
        }
        let password = secrets.password.filter(|password| !password.is_empty());
        let jwt = secrets.app_jwt.filter(|jwt| !jwt.is_empty());
        if password.is_none() && jwt.is_none() {
            return Err(PlaneError::InvalidInput {
                message: "a disTokoloshe profile needs the password (or a saved sign-in token)".into(),
            });
        }
        let session = jwt.map(|jwt| AppSession { user_id: jwt_claim(&jwt, "sub"), jwt });
        Ok(DistokoloshePlane {
            http: Http::new()?.for_server(&base),
            base,
            username: settings.username,
            password,
            session: Mutex::new(session),
            keeper: None,
        })
    }

    /// Keeps each new sign-in token with `keeper` (the profile's keyring entry `app-jwt`).
    pub fn keeping_secrets(mut self, keeper: SecretKeeper) -> Self {
        self.keeper = Some(keeper);
        self
    }

    /// The current app JWT (after a sign-in, the new one), for the profile layer to keep in the
    /// keyring. `None` before the first sign-in when none was cached.
    pub fn app_jwt(&self) -> Option<Secret> {
        self.session.lock().ok().and_then(|session| session.as_ref().map(|session| session.jwt.clone()))
    }

    /// Signs in with the stored password (`POST /api/auth/login`) and keeps the JWT.
    ///
    /// Errors: [`PlaneError::Unauthorized`] for wrong credentials or no stored password,
    /// [`PlaneError::RateLimited`] after 20 attempts in 15 minutes.
    pub async fn login(&self) -> Result<Secret, PlaneError> {
        let password = self.password.as_ref().ok_or_else(|| PlaneError::Unauthorized {
            message: format!("the saved sign-in for {} expired and no password is stored", self.username),
        })?;
        let request = self
            .http
            .request(Method::POST, &self.url("/api/auth/login"))
            .json(&serde_json::json!({ "username": self.username, "password": password.expose() }));
        let answer: AuthAnswer = self.http.json(request).await?;
        let session =
            AppSession { jwt: Secret::new(answer.token), user_id: answer.user.map(|user| id_string(&user.id)) };
        let jwt = session.jwt.clone();
        self.store(Some(session));
        if let Some(keeper) = &self.keeper {
            keeper.keep("app-jwt", jwt.clone()).await;
        }
        Ok(jwt)
    }

    fn store(&self, session: Option<AppSession>) {
        match self.session.lock() {
            Ok(mut slot) => *slot = session,
            Err(_) => tracing::warn!("disTokoloshe session lock poisoned; the new sign-in is not kept"),
        }
    }

    /// A JWT that is not about to expire: the cached one, or a fresh sign-in.
    async fn jwt(&self) -> Result<(Secret, bool), PlaneError> {
        let cached = self.session.lock().ok().and_then(|session| session.clone());
        if let Some(session) = cached {
            let fresh_enough = jwt_claim(&session.jwt, "exp")
                .and_then(|exp| exp.parse::<u64>().ok())
                .is_none_or(|exp| exp > now_secs() + JWT_EXPIRY_MARGIN_SECS);
            if fresh_enough || self.password.is_none() {
                return Ok((session.jwt, false));
            }
        }
        Ok((self.login().await?, true))
    }

    fn user_id(&self) -> Option<String> {
        self.session.lock().ok().and_then(|session| session.as_ref().and_then(|session| session.user_id.clone()))
    }

    /// Sends an authenticated request; on 401 signs in again once (when a password is stored and
    /// the JWT was not just issued) and resends.
    async fn send_authed(&self, build: impl Fn(&str) -> RequestBuilder) -> Result<Response, SendError> {
        let (jwt, fresh) = self.jwt().await.map_err(SendError::Early)?;
        match self.http.send(build(jwt.expose())).await {
            Err(failure)
                if failure.status.map(|status| status.as_u16()) == Some(401) && !fresh && self.password.is_some() =>
            {
                tracing::debug!("disTokoloshe refused the saved sign-in; signing in again");
                self.store(None);
                let jwt = self.login().await.map_err(SendError::Early)?;
                self.http.send(build(jwt.expose())).await.map_err(SendError::Http)
            }
            other => other.map_err(SendError::Http),
        }
    }

    async fn json_authed<T: serde::de::DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, PlaneError> {
        let url = self.url(path);
        let response = self
            .send_authed(|jwt| self.http.request(method.clone(), &url).bearer_auth(jwt))
            .await
            .map_err(into_error)?;
        decode_json(response).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn rooms(&self) -> Result<Vec<RoomInfo>, PlaneError> {
        let answer: RoomsAnswer = self.json_authed(Method::GET, "/api/rooms").await?;
        Ok(answer.rooms)
    }

    async fn members(&self) -> Result<serde_json::Map<String, serde_json::Value>, PlaneError> {
        let answer: MembersAnswer = self.json_authed(Method::GET, "/api/rooms/members").await?;
        Ok(answer.members)
    }

    async fn room_participants(&self, room_id: &str) -> Result<Vec<PlaneParticipant>, PlaneError> {
        let members = self.members().await?;
        let list = members.get(room_id).cloned().unwrap_or(serde_json::Value::Array(Vec::new()));
        let members: Vec<Member> = serde_json::from_value(list)
            .map_err(|error| PlaneError::Malformed { detail: format!("room members list: {error}") })?;
        Ok(members
            .into_iter()
            .map(|member| PlaneParticipant {
                name: member.display_name.filter(|name| !name.is_empty()).unwrap_or_else(|| member.username.clone()),
                identity: member.username,
                role: None,
                muted: None,
                hand_raised: None,
                avatar_url: None,
                deafened: None,
                hard_muted: None,
            })
            .collect())
    }

    /// The room id for `room`: itself when numeric, else the id of the room with that name.
    async fn room_id(&self, room: &str) -> Result<String, PlaneError> {
        let room = room.trim();
        if room.is_empty() {
            return Err(PlaneError::InvalidInput { message: "name the room to join (its id or name)".into() });
        }
        if room.bytes().all(|byte| byte.is_ascii_digit()) {
            return Ok(room.to_string());
        }
        self.rooms()
            .await?
            .into_iter()
            .find(|info| info.name.eq_ignore_ascii_case(room))
            .map(|info| id_string(&info.id))
            .ok_or_else(|| PlaneError::NotFound { what: format!("room {room:?}"), message: String::new() })
    }

    /// Reads one event-stream connection until it ends. `Ok(true)` when the user was removed (the
    /// watch is over), `Ok(false)` when the stream dropped and should be reopened.
    async fn follow_stream(
        &self,
        mut response: Response,
        grant: &JoinGrant,
        events: &mpsc::Sender<PlaneEvent>,
    ) -> Result<bool, PlaneError> {
        let mut parser = SseParser::default();
        loop {
            let chunk = match tokio::time::timeout(STREAM_IDLE_LIMIT, response.chunk()).await {
                Err(_) => {
                    tracing::debug!("disTokoloshe event stream silent for too long; reconnecting");
                    return Ok(false);
                }
                Ok(Err(error)) => {
                    tracing::debug!("disTokoloshe event stream failed: {error}");
                    return Ok(false);
                }
                Ok(Ok(None)) => return Ok(false),
                Ok(Ok(Some(chunk))) => chunk,
            };
            let Ok(parsed) = parser.push(&chunk) else {
                tracing::warn!("disTokoloshe sent an event over {MAX_PENDING_EVENT} bytes; reopening the stream");
                return Ok(false);
            };
            for (kind, data) in parsed {
                if let Some(event) = self.translate(&kind, &data, grant).await {
                    let removed = matches!(event, PlaneEvent::Removed { .. });
                    if events.send(event).await.is_err() {
                        return Ok(true);
                    }
                    if removed {
                        return Ok(true);
                    }
                }
            }
            if events.is_closed() {
                return Ok(true);
            }
        }
    }

    async fn translate(&self, kind: &str, data: &str, grant: &JoinGrant) -> Option<PlaneEvent> {
        let data: serde_json::Value = serde_json::from_str(data).unwrap_or(serde_json::Value::Null);
        let in_my_room = |value: &serde_json::Value| {
            ["roomId", "room_id"]
                .iter()
                .find_map(|key| value.get(*key))
                .is_none_or(|room| id_string(room) == grant.room_id)
        };
        match kind {
            "user:room_join" | "user:room_leave" if in_my_room(&data) => {
                match self.room_participants(&grant.room_id).await {
                    Ok(participants) => Some(PlaneEvent::Participants { participants }),
                    Err(error) => {
                        Some(PlaneEvent::Degraded { message: format!("cannot refresh the member list: {error}") })
                    }
                }
            }
            "punishment:started" if self.targets_me(&data) => {
                let punishment = data.get("punishment").unwrap_or(&data);
                let until = punishment.get("expiresAt").map(describe_time);
                Some(PlaneEvent::Removed {
                    reason: match until {
                        Some(until) => format!("the room voted you out until {until}"),
                        None => "the room voted you out".to_string(),
                    },
                })
            }
            "room:deleted" if data.pointer("/room/id").is_some_and(|id| id_string(id) == grant.room_id) => {
                Some(PlaneEvent::Removed { reason: "the room was deleted".into() })
            }
            _ => None,
        }
    }

    /// Whether a `punishment:started` event is about this user. The server sends every stream
    /// the same copy (the jail's connection included), so only the target fields say whom it is
    /// about: the user id of our sign-in, or our user name.
    fn targets_me(&self, data: &serde_json::Value) -> bool {
        let Some(punishment) = data.get("punishment") else { return false };
        let my_id = self.user_id();
        let by_id = punishment.get("targetUserId").is_some_and(|id| my_id.as_deref() == Some(id_string(id).as_str()));
        let by_name = punishment
            .get("targetUsername")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|name| name.eq_ignore_ascii_case(&self.username));
        by_id || by_name
    }
}

#[async_trait]
impl ControlPlane for DistokoloshePlane {
    fn kind(&self) -> BackendKind {
        BackendKind::Distokoloshe
    }

    /// Signs in with the password (and keeps the token), or checks a saved token with
    /// `GET /api/auth/me` when no password is stored.
    async fn check_credentials(&self) -> Result<bool, PlaneError> {
        if self.password.is_some() {
            self.login().await?;
        } else {
            let _: serde_json::Value = self.json_authed(Method::GET, "/api/auth/me").await?;
        }
        Ok(true)
    }

    /// `POST /api/auth/register` with the saved user name and password; the answer's token is
    /// the sign-in (no login follows).
    async fn register(&self, display_name: &str) -> Result<(), PlaneError> {
        let password = self.password.as_ref().ok_or_else(|| PlaneError::InvalidInput {
            message: "creating a disTokoloshe account needs a password".into(),
        })?;
        let jwt = register(&self.base, &self.username, display_name, password).await?;
        let session = AppSession { user_id: jwt_claim(&jwt, "sub"), jwt: jwt.clone() };
        self.store(Some(session));
        if let Some(keeper) = &self.keeper {
            keeper.keep("app-jwt", jwt).await;
        }
        Ok(())
    }

    fn obtained_secrets(&self) -> Vec<(&'static str, Secret)> {
        self.app_jwt().map(|jwt| vec![("app-jwt", jwt)]).unwrap_or_default()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new([
            Capability::ListRooms,
            Capability::Join,
            Capability::Heartbeat,
            Capability::Leave,
            Capability::ListParticipants,
            Capability::Events,
        ])
    }

    async fn list_rooms(&self) -> Result<Vec<RoomSummary>, PlaneError> {
        let rooms = self.rooms().await?;
        let members = self.members().await?;
        let me = self.user_id();
        Ok(rooms
            .into_iter()
            .map(|room| {
                let id = id_string(&room.id);
                let count = members.get(&id).and_then(serde_json::Value::as_array).map(Vec::len).unwrap_or(0);
                RoomSummary {
                    description: room.is_jail.unwrap_or(false).then(|| "jail".to_string()),
                    can_manage: me.is_some() && room.created_by.as_ref().map(id_string) == me,
                    participants: Some(u32::try_from(count).unwrap_or(u32::MAX)),
                    id,
                    name: room.name,
                    stage: false,
                    max_participants: None,
                }
            })
            .collect())
    }

    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        let room_id = self.room_id(room).await?;
        let url = self.url(&format!("/api/rooms/{room_id}/join"));
        let response = self
            .send_authed(|jwt| self.http.request(Method::POST, &url).bearer_auth(jwt))
            .await
            .map_err(|failure| join_error(failure, room))?;
        let answer: JoinAnswer = decode_json(response).await?;
        let claims = TokenClaims::read(&answer.token)?;
        Ok(JoinGrant {
            room_id: answer.room.as_ref().map(|info| id_string(&info.id)).unwrap_or(room_id),
            room_name: answer.room.map(|info| info.name).unwrap_or_else(|| room.to_string()),
            url: livekit_url(&self.base, &answer.ws_url)?,
            token: answer.token,
            e2ee_key: answer.e2ee_key.filter(|key| !key.is_empty()),
            expires_at: claims.expires_at,
            heartbeat_every: Some(HEARTBEAT_EVERY),
            role: None,
            notice: None,
        })
    }

    async fn heartbeat(&self, _grant: &JoinGrant) -> Result<(), PlaneError> {
        let _: serde_json::Value = self.json_authed(Method::POST, "/api/events/ping").await?;
        Ok(())
    }

    async fn leave(&self, _grant: &JoinGrant) -> Result<(), PlaneError> {
        let _: serde_json::Value = self.json_authed(Method::POST, "/api/events/leave").await?;
        Ok(())
    }

    async fn participants(&self, grant: &JoinGrant) -> Result<Vec<PlaneParticipant>, PlaneError> {
        self.room_participants(&grant.room_id).await
    }

    /// Follows `GET /api/events?token=` until the receiver is dropped or the user is removed,
    /// reconnecting with backoff (and re-syncing the room, as the web client does) when the
    /// stream drops. Fails only when the server refuses the credentials.
    async fn watch(&self, grant: &JoinGrant, events: mpsc::Sender<PlaneEvent>) -> Result<(), PlaneError> {
        let mut backoff = Duration::from_secs(1);
        let mut reconnecting = false;
        loop {
            if events.is_closed() {
                return Ok(());
            }
            let url = self.url("/api/events");
            let opened = self
                .send_authed(|jwt| {
                    self.http
                        .request(Method::GET, &url)
                        .query(&[("token", jwt)])
                        .header(reqwest::header::ACCEPT, "text/event-stream")
                        // The stream lives as long as the call; idleness is checked per chunk.
                        .timeout(Duration::from_secs(24 * 60 * 60))
                })
                .await;
            match opened {
                Ok(response) => {
                    backoff = Duration::from_secs(1);
                    // The server keeps room membership on the event streams open when `/join`
                    // arrives; this stream opened after it (or reopened), so it holds no room
                    // until `/sync` stamps it. Without this the server's member list, votes and
                    // the web client's "left" never see us.
                    let sync = format!("/api/rooms/{}/sync", grant.room_id);
                    if let Err(error) = self.json_authed::<serde_json::Value>(Method::POST, &sync).await {
                        if error.ends_session() {
                            return Err(error);
                        }
                        tracing::warn!("putting the room on the event stream failed: {error}");
                    }
                    if reconnecting
                        && let Ok(participants) = self.room_participants(&grant.room_id).await
                        && events.send(PlaneEvent::Participants { participants }).await.is_err()
                    {
                        return Ok(());
                    }
                    if self.follow_stream(response, grant, &events).await? {
                        return Ok(());
                    }
                }
                Err(failure) => {
                    let error = into_error(failure);
                    if matches!(error, PlaneError::Unauthorized { .. } | PlaneError::Forbidden { .. }) {
                        return Err(error);
                    }
                    tracing::debug!("disTokoloshe event stream refused: {error}");
                }
            }
            reconnecting = true;
            let message = "the live member list is reconnecting".to_string();
            if events.send(PlaneEvent::Degraded { message }).await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Creates an account (`POST /api/auth/register`) and returns its app JWT.
///
/// Errors: [`PlaneError::Rejected`] for a user name or password the server's rules refuse (400)
/// or a taken user name (409), [`PlaneError::RateLimited`] after 5 registrations an hour.
pub async fn register(url: &str, username: &str, display_name: &str, password: &Secret) -> Result<Secret, PlaneError> {
    let http = Http::new()?;
    let base = base_url(url)?;
    let request = http.request(Method::POST, &format!("{base}/api/auth/register")).json(&serde_json::json!({
        "username": username,
        "display_name": display_name,
        "password": password.expose(),
    }));
    let answer: AuthAnswer = http.json(request).await?;
    Ok(Secret::new(answer.token))
}

fn join_error(error: SendError, room: &str) -> PlaneError {
    let failure = match error {
        SendError::Early(error) => return error,
        SendError::Http(failure) => failure,
    };
    match failure.status.map(|status| status.as_u16()) {
        Some(403) => match failure.body.as_ref().and_then(|body| body.get("punishment")) {
            Some(punishment) => PlaneError::Kicked {
                message: match punishment.get("expiresAt") {
                    Some(until) => format!("the room voted you out until {}", describe_time(until)),
                    None => "the room voted you out".into(),
                },
            },
            None => PlaneError::Forbidden { message: failure.message },
        },
        Some(404) => PlaneError::NotFound { what: format!("room {room:?}"), message: failure.message },
        _ => failure.into_error(),
    }
}

/// A failed authenticated request: refused before sending (no password, sign-in refused) or
/// answered with an error status the caller may refine.
enum SendError {
    Early(PlaneError),
    Http(Failure),
}

fn into_error(error: SendError) -> PlaneError {
    match error {
        SendError::Early(error) => error,
        SendError::Http(failure) => failure.into_error(),
    }
}

/// `expiresAt` as users read it. The real server sends SQLite's UTC text (`2026-07-16
/// 22:35:00`), which gets its zone; other strings are shown as sent, epoch numbers (ms or s) as
/// UTC time.
fn describe_time(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) if is_sqlite_time(text) => format!("{} UTC", &text[..16]),
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => match number.as_u64() {
            Some(ms) if ms > 100_000_000_000 => format_utc(ms / 1000),
            Some(secs) => format_utc(secs),
            None => number.to_string(),
        },
        other => other.to_string(),
    }
}

/// `YYYY-MM-DD HH:MM:SS`: what SQLite's `datetime()` writes.
fn is_sqlite_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 19
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            10 => *byte == b' ',
            13 | 16 => *byte == b':',
            _ => byte.is_ascii_digit(),
        })
}

/// `YYYY-MM-DD HH:MM UTC` (civil-from-days, proleptic Gregorian).
fn format_utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or_default();
    let of_day = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", of_day / 3600, of_day % 3600 / 60)
}

/// The LiveKit URL from `wsUrl`: relative paths hang off the server's own host with the
/// websocket scheme (`http://h:p` + `/livekit/` → `ws://h:p/livekit/`).
fn livekit_url(base: &str, ws_url: &str) -> Result<String, PlaneError> {
    let ws_url = ws_url.trim();
    for (from, to) in [("https://", "wss://"), ("http://", "ws://"), ("wss://", "wss://"), ("ws://", "ws://")] {
        if let Some(rest) = ws_url.strip_prefix(from) {
            return Ok(format!("{to}{rest}"));
        }
    }
    let origin = reqwest::Url::parse(base)
        .map_err(|error| PlaneError::InvalidInput { message: format!("bad server URL: {error}") })?;
    let scheme = if origin.scheme() == "https" { "wss" } else { "ws" };
    let mut url = format!("{scheme}://{}", origin.host_str().unwrap_or_default());
    if let Some(port) = origin.port() {
        url.push_str(&format!(":{port}"));
    }
    if !ws_url.starts_with('/') {
        url.push('/');
    }
    url.push_str(ws_url);
    Ok(url)
}

fn base_url(url: &str) -> Result<String, PlaneError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|error| PlaneError::InvalidInput {
        message: format!("the server URL {url:?} is not valid: {error}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(PlaneError::InvalidInput {
            message: format!("the server URL {url:?} must start with https:// or http://"),
        });
    }
    Ok(trimmed.to_string())
}

/// A claim of the (unverified) app JWT, as text; only used to pick the user id and to skip a
/// request that would surely fail with an expired token.
fn jwt_claim(jwt: &Secret, claim: &str) -> Option<String> {
    let payload = jwt.expose().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json.get(claim).map(id_string)
}

/// Ids arrive as numbers or strings depending on the database driver; compare them as text.
fn id_string(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::sse::Oversized;
    use super::*;

    #[test]
    fn relative_ws_urls_hang_off_the_server_host() {
        assert_eq!(livekit_url("http://127.0.0.1:3000", "/livekit/").unwrap(), "ws://127.0.0.1:3000/livekit/");
        assert_eq!(livekit_url("https://voice.example.org", "/livekit/").unwrap(), "wss://voice.example.org/livekit/");
        assert_eq!(livekit_url("https://voice.example.org", "https://lk.example.org").unwrap(), "wss://lk.example.org");
        assert_eq!(livekit_url("http://h", "ws://127.0.0.1:7880").unwrap(), "ws://127.0.0.1:7880");
    }

    #[test]
    fn sse_blocks_split_across_chunks() {
        let mut parser = SseParser::default();
        assert_eq!(parser.push(b":ok\n\nevent: user:room_join\nda"), Ok(vec![]));
        let events = parser.push(b"ta: {\"roomId\":1}\r\n\r").expect("small");
        assert!(events.is_empty(), "the blank line is not complete yet: {events:?}");
        let events = parser.push(b"\n:ping\n\n").expect("small");
        assert_eq!(events, vec![("user:room_join".to_string(), "{\"roomId\":1}".to_string())]);
    }

    #[test]
    fn an_event_that_never_ends_is_refused_instead_of_growing() {
        let mut parser = SseParser::default();
        let line = vec![b'x'; 1024];
        let mut outcome = Ok(vec![]);
        for _ in 0..65 {
            outcome = parser.push(&line);
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome, Err(Oversized), "64 KiB without an event's end is refused");
        // Events that end in time never add up, however many arrive.
        let mut parser = SseParser::default();
        for _ in 0..10_000 {
            let events = parser.push(b"data: 1\n").expect("each event ends in time");
            assert!(events.is_empty());
            let events = parser.push(b"\n").expect("small");
            assert_eq!(events.len(), 1);
        }
        assert!(parser.buffer.is_empty(), "nothing is kept of finished events");
    }

    #[test]
    fn epoch_times_read_as_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_709_210_096), "2024-02-29 12:34 UTC");
        assert_eq!(describe_time(&serde_json::json!(1_709_210_096_000u64)), "2024-02-29 12:34 UTC");
        assert_eq!(describe_time(&serde_json::json!("2024-02-29 12:34:56")), "2024-02-29 12:34 UTC", "SQLite text");
        assert_eq!(describe_time(&serde_json::json!("tomorrow")), "tomorrow");
    }
}
