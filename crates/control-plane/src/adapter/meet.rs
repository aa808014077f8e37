//! La Suite Meet (`shared/CONTROL_PLANES.md` §2): Django REST Framework under `/api/v1.0/`, every
//! route with a trailing slash.
//!
//! * Join: `GET rooms/{id|slug}/?username=<display name>` answers with `livekit{url, room, token}`
//!   when the user may enter directly. Otherwise the room has a lobby: `POST rooms/{id}/request-entry/`
//!   is repeated every `lobby_poll_ms` (the server forgets a waiter after 3 s without a call, so
//!   the interval must stay below that) until a moderator admits (`accepted` + `livekit`) or
//!   declines (`denied` → [`PlaneError::EntryDenied`]), for at most `lobby_wait_ms` (10 minutes,
//!   like the web client). [`MeetPlane::lobby_status`] is a `tokio::sync::watch` of the wait, so a
//!   front end can show "waiting for a moderator" while `join` is pending.
//! * Cookies: the server identifies a lobby waiter by its `lobbyParticipantId` cookie. The adapter
//!   keeps its own small jar (not reqwest's) because it must merge that cookie with the session
//!   cookies from the keyring in one `Cookie` header, and because the server marks it `Secure`,
//!   which a browser-grade jar would drop on a plain-HTTP test server.
//! * Owners and administrators sign in through OIDC in a browser; the profile keeps the resulting
//!   session cookie (and `csrftoken`). Production Meet uses Django's default cookie name,
//!   `sessionid`; a secret of the form `name=value` names another (`meet_sessionid` in Meet's
//!   Development settings). Requests authenticated by session cookie carry
//!   `X-CSRFToken`, `Origin` and `Referer` as Django's CSRF check wants. With it: kick
//!   (`remove-participant/`), hard mute / restore (`update-participant/` with a whole permission
//!   object: LiveKit replaces the participant's permission with exactly what is sent), make
//!   moderator (`update-participant-role/`), the lobby ([`MeetPlane::waiting_participants`],
//!   [`MeetPlane::admit`]).
//! * With the LiveKit token only (`Authorization: Bearer`): raise hand (`toggle-hand/`),
//!   [`MeetPlane::rename`], and mute when the room lets everyone mute. Meet lets a session mute
//!   only for owners and administrators, and skips that path when a token is sent, so the
//!   adapter mutes with the session when the grant is a `roomAdmin` one and with the token
//!   otherwise. Meet answers a missing or refused token with 403 (`Authentication credentials
//!   were not provided.`, `Invalid LiveKit token: …`), which the adapter reports as
//!   [`PlaneError::Unauthorized`].
//! * Tokens are read without `livekit-api`'s `Claims`: Meet's carry `"room_role": null` for
//!   callers without a role, which that type (attributes are strings) refuses.
//!
//! Participants are named by LiveKit identity (`user.sub`, or the lobby id of a guest). Muting
//! needs the SID of their microphone track, which Meet's API never lists and this adapter cannot
//! see in the LiveKit room; it asks LiveKit's RoomService (`ListParticipants`, §6) with the
//! grant's token, which works because Meet gives owners and administrators `roomAdmin` tokens.
//! Callers without such a token (everyone-can-mute rooms) name the track themselves as
//! `<identity>/<track SID>` (SIDs start with `TR_`, which no Meet identity ends with).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{COOKIE, ORIGIN, REFERER, SET_COOKIE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::http::{Failure, Http, decode_json};
use crate::plane::{
    BackendKind, Capabilities, Capability, ControlPlane, JoinGrant, ModerationAction, PlaneParticipant,
};
use crate::transport;
use crate::{PlaneError, Secret};

mod wire;

use wire::{
    EntryAnswer, ListParticipantsAnswer, LivekitAccess, MeetClaims, ParticipantInfo, RoomAnswer, TrackInfo,
    WaitingAnswer,
};

/// Django's default `SESSION_COOKIE_NAME`, which production Meet keeps.
const SESSION_COOKIE: &str = "sessionid";
/// The server forgets a waiter after `LOBBY_WAITING_TIMEOUT` = 3 s without a poll.
const LOBBY_EXPIRY: Duration = Duration::from_secs(3);
/// `LIVEKIT_DEFAULT_SOURCES`: what a participant may publish unless the room configures less.
const DEFAULT_SOURCES: [&str; 4] = ["camera", "microphone", "screen_share", "screen_share_audio"];
/// Consecutive failed lobby polls tolerated before giving up (a poll lost to a blip must not
/// end a ten-minute wait, but a dead server must).
const LOBBY_POLL_FAILURES: u32 = 2;

fn default_poll_ms() -> u64 {
    1000
}

fn default_wait_ms() -> u64 {
    10 * 60 * 1000
}

/// Non-secret settings, stored in the profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The Meet site, e.g. `https://meet.example.org`.
    pub url: String,
    /// The name other participants see.
    pub display_name: String,
    /// Lobby poll interval; must stay below the server's 3 s waiter expiry.
    #[serde(default = "default_poll_ms")]
    pub lobby_poll_ms: u64,
    /// How long to wait in the lobby before giving up.
    #[serde(default = "default_wait_ms")]
    pub lobby_wait_ms: u64,
}

/// Secrets, kept in the OS keyring.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The Django session cookie of a signed-in user: its value (sent as `sessionid`), or
    /// `name=value` for a deployment that renames it; owners and
    /// administrators need it to moderate.
    pub session_cookie: Option<Secret>,
    /// The `csrftoken` cookie that goes with the session.
    pub csrf_token: Option<Secret>,
}

/// Keyring entry names of [`Secrets`].
pub const SECRET_NAMES: &[&str] = &["session-cookie", "csrf-token"];

/// Where a lobby wait stands (see [`MeetPlane::lobby_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LobbyStatus {
    /// No lobby wait in progress.
    Idle,
    /// Waiting for a moderator to admit the user into `room`.
    Waiting {
        room: String,
    },
    Admitted {
        room: String,
    },
    Denied {
        room: String,
    },
    /// Nobody answered within `lobby_wait_ms`.
    GaveUp {
        room: String,
    },
}

/// Someone waiting in a room's lobby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbyWaiter {
    /// What [`MeetPlane::admit`] takes.
    pub id: String,
    pub username: String,
    pub status: String,
    #[serde(default)]
    pub color: Option<String>,
}

/// A La Suite Meet site.
#[derive(Debug)]
pub struct MeetPlane {
    http: Http,
    base: String,
    settings: Settings,
    session_cookie: Option<Secret>,
    csrf_token: Option<Secret>,
    /// Cookies the server set (the lobby id), sent back on every request.
    jar: Mutex<BTreeMap<String, String>>,
    lobby: watch::Sender<LobbyStatus>,
    /// Whether the last grant's token carried `roomAdmin`; `None` before the first join.
    admin: Mutex<Option<bool>>,
    /// Per room id: what the room lets participants publish (`configuration.can_publish_sources`).
    sources: Mutex<HashMap<String, Vec<String>>>,
}

impl MeetPlane {
    /// Checks the settings; sends nothing.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a malformed URL, an empty display name, or a lobby
    /// poll interval of 3 s or more.
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, PlaneError> {
        let trimmed = settings.url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed).map_err(|error| PlaneError::InvalidInput {
            message: format!("the Meet URL {:?} is not valid: {error}", settings.url),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(PlaneError::InvalidInput {
                message: format!("the Meet URL {:?} must start with https:// or http://", settings.url),
            });
        }
        if settings.display_name.trim().is_empty() {
            return Err(PlaneError::InvalidInput { message: "the display name for Meet is empty".into() });
        }
        if settings.lobby_poll_ms == 0 || Duration::from_millis(settings.lobby_poll_ms) >= LOBBY_EXPIRY {
            return Err(PlaneError::InvalidInput {
                message: format!(
                    "lobby_poll_ms must be between 1 and 2999: Meet forgets a waiter after 3 s without a poll (got {})",
                    settings.lobby_poll_ms
                ),
            });
        }
        let (lobby, _) = watch::channel(LobbyStatus::Idle);
        Ok(MeetPlane {
            http: Http::new()?.for_server(trimmed),
            base: trimmed.to_string(),
            session_cookie: secrets.session_cookie.filter(|cookie| !cookie.is_empty()),
            csrf_token: secrets.csrf_token.filter(|token| !token.is_empty()),
            settings,
            jar: Mutex::new(BTreeMap::new()),
            lobby,
            admin: Mutex::new(None),
            sources: Mutex::new(HashMap::new()),
        })
    }

    /// The state of the current (or last) lobby wait. Any thread may hold the receiver.
    pub fn lobby_status(&self) -> watch::Receiver<LobbyStatus> {
        self.lobby.subscribe()
    }

    /// The people waiting in `room`'s lobby (session of an owner or administrator).
    ///
    /// Errors: [`PlaneError::InvalidInput`] without a session cookie; 401/403/404 as usual.
    pub async fn waiting_participants(&self, room: &str) -> Result<Vec<LobbyWaiter>, PlaneError> {
        self.require_session("seeing the lobby")?;
        let url = self.room_url(room, Some("waiting-participants"))?;
        let response = self.send(self.session_request(Method::GET, &url), &format!("room {room:?}")).await?;
        let answer: WaitingAnswer = decode_json(response).await?;
        Ok(answer.participants)
    }

    /// Admits (`allow`) or turns away a lobby waiter (`POST rooms/{id}/enter/`).
    ///
    /// Errors: [`PlaneError::NotFound`] when the waiter is gone or the room has no lobby.
    pub async fn admit(&self, room: &str, participant_id: &str, allow: bool) -> Result<(), PlaneError> {
        self.require_session("admitting people from the lobby")?;
        let url = self.room_url(room, Some("enter"))?;
        let request = self
            .session_request(Method::POST, &url)
            .json(&serde_json::json!({ "participant_id": participant_id, "allow_entry": allow }));
        self.send(request, &format!("lobby participant {participant_id:?}")).await?;
        Ok(())
    }

    /// Changes the user's own display name in the meeting (`rename/`, LiveKit token auth).
    pub async fn rename(&self, grant: &JoinGrant, name: &str) -> Result<(), PlaneError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(PlaneError::InvalidInput { message: "a name must have 1 to 255 characters".into() });
        }
        let url = self.room_url(&grant.room_id, Some("rename"))?;
        let request =
            self.http.request(Method::POST, &url).bearer_auth(&grant.token).json(&serde_json::json!({ "name": name }));
        self.send(request, &format!("room {:?}", grant.room_id)).await?;
        Ok(())
    }

    fn room_url(&self, room: &str, action: Option<&str>) -> Result<String, PlaneError> {
        let room = room.trim();
        if room.is_empty() {
            return Err(PlaneError::InvalidInput { message: "name the Meet room (its id or slug)".into() });
        }
        let mut url = reqwest::Url::parse(&format!("{}/api/v1.0/rooms/", self.base))
            .map_err(|error| PlaneError::InvalidInput { message: format!("bad Meet URL: {error}") })?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| PlaneError::InvalidInput { message: "the Meet URL cannot take a path".into() })?;
            segments.pop_if_empty().push(room);
            if let Some(action) = action {
                segments.push(action);
            }
            // DRF's router wants the trailing slash; without it Django redirects GETs and fails POSTs.
            segments.push("");
        }
        Ok(url.to_string())
    }

    fn require_session(&self, what: &str) -> Result<(), PlaneError> {
        if self.session_cookie.is_some() {
            Ok(())
        } else {
            Err(PlaneError::InvalidInput {
                message: format!(
                    "{what} on La Suite Meet needs a signed-in owner or administrator: add the session cookie (sessionid) to the profile"
                ),
            })
        }
    }

    /// A request carrying the session (when configured), the CSRF headers Django wants for
    /// unsafe methods, and the jar's cookies.
    fn session_request(&self, method: Method, url: &str) -> RequestBuilder {
        let mut cookies: Vec<String> = Vec::new();
        if let Some(session) = &self.session_cookie {
            let (name, value) = session_cookie(session.expose());
            cookies.push(format!("{name}={value}"));
        }
        if let Some(csrf) = &self.csrf_token {
            cookies.push(format!("csrftoken={}", csrf.expose()));
        }
        if let Ok(jar) = self.jar.lock() {
            cookies.extend(jar.iter().map(|(name, value)| format!("{name}={value}")));
        }
        let unsafe_method = method != Method::GET && method != Method::HEAD;
        let mut request = self.http.request(method, url);
        if !cookies.is_empty() {
            request = request.header(COOKIE, cookies.join("; "));
        }
        if unsafe_method {
            request = request.header(ORIGIN, self.origin()).header(REFERER, format!("{}/", self.base));
            if let Some(csrf) = &self.csrf_token {
                request = request.header("X-CSRFToken", csrf.expose());
            }
        }
        request
    }

    /// A mute request: with the session for an owner or administrator (the only callers Meet's
    /// `CanMuteParticipant` lets through a session, and only when no token is sent), else with
    /// the grant's LiveKit token (`everyone_can_mute`).
    fn mute_request(&self, grant: &JoinGrant, url: &str) -> RequestBuilder {
        let admin = MeetClaims::read(&grant.token).is_ok_and(|claims| claims.video.room_admin);
        if admin && self.session_cookie.is_some() {
            self.session_request(Method::POST, url)
        } else {
            self.http.request(Method::POST, url).bearer_auth(&grant.token)
        }
    }

    fn origin(&self) -> String {
        match reqwest::Url::parse(&self.base) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => self.base.clone(),
        }
    }

    async fn send(&self, request: RequestBuilder, what: &str) -> Result<Response, PlaneError> {
        match self.http.send(request).await {
            Ok(response) => {
                self.keep_cookies(&response);
                Ok(response)
            }
            Err(failure) => Err(meet_error(failure, what)),
        }
    }

    fn keep_cookies(&self, response: &Response) {
        let Ok(mut jar) = self.jar.lock() else {
            tracing::warn!("Meet cookie jar lock poisoned; not keeping cookies");
            return;
        };
        for header in response.headers().get_all(SET_COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else { continue };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            // The session and CSRF cookies come from the keyring; the server may not replace them.
            let session_name = self.session_cookie.as_ref().map(|session| session_cookie(session.expose()).0);
            if name == session_name.unwrap_or(SESSION_COOKIE) || name == "csrftoken" {
                continue;
            }
            let expired = parts.any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0"));
            if value.is_empty() || expired {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn grant(&self, room: &RoomAnswer, livekit: &LivekitAccess, asked: &str) -> Result<JoinGrant, PlaneError> {
        let claims = MeetClaims::read(&livekit.token)?;
        let admin = claims.video.room_admin;
        if let Ok(mut slot) = self.admin.lock() {
            *slot = Some(admin);
        }
        let room_id = room.id.clone().or_else(|| room.slug.clone()).unwrap_or_else(|| asked.to_string());
        if let Some(sources) = room
            .configuration
            .as_ref()
            .and_then(|configuration| configuration.get("can_publish_sources"))
            .and_then(|sources| serde_json::from_value::<Vec<String>>(sources.clone()).ok())
            && let Ok(mut known) = self.sources.lock()
        {
            known.insert(room_id.clone(), sources);
        }
        let role = claims
            .attributes
            .get("room_role")
            .and_then(serde_json::Value::as_str)
            .filter(|role| !role.is_empty())
            .map(String::from)
            .or_else(|| admin.then(|| "administrator".to_string()));
        Ok(JoinGrant {
            room_name: room.name.clone().or_else(|| room.slug.clone()).unwrap_or_else(|| room_id.clone()),
            room_id,
            url: transport::websocket_url(&livekit.url, "Meet's")?,
            token: livekit.token.clone(),
            e2ee_key: None,
            expires_at: claims.exp.filter(|exp| *exp > 0),
            heartbeat_every: None,
            role,
            notice: None,
        })
    }

    /// Polls `request-entry/` until a moderator decides or the wait runs out.
    async fn wait_in_lobby(&self, room: &RoomAnswer, asked: &str) -> Result<JoinGrant, PlaneError> {
        let room_id = room.id.clone().unwrap_or_else(|| asked.to_string());
        let url = self.room_url(&room_id, Some("request-entry"))?;
        let what = format!("room {asked:?}");
        let poll = Duration::from_millis(self.settings.lobby_poll_ms);
        let deadline = Instant::now() + Duration::from_millis(self.settings.lobby_wait_ms);
        let mut failures = 0;
        loop {
            let request = self
                .session_request(Method::POST, &url)
                .json(&serde_json::json!({ "username": self.settings.display_name }));
            match self.send(request, &what).await {
                Ok(response) => {
                    failures = 0;
                    let entry: EntryAnswer = decode_json(response).await?;
                    match entry.status.as_str() {
                        "accepted" => {
                            let livekit = entry.livekit.ok_or_else(|| PlaneError::Malformed {
                                detail: "Meet accepted the lobby request but sent no LiveKit token".into(),
                            })?;
                            self.lobby.send_replace(LobbyStatus::Admitted { room: room_id.clone() });
                            return self.grant(room, &livekit, asked);
                        }
                        "denied" => {
                            self.lobby.send_replace(LobbyStatus::Denied { room: room_id });
                            return Err(PlaneError::EntryDenied { message: String::new() });
                        }
                        // `unknown`: the server forgot us (expired); the next call registers again.
                        _ => {
                            self.lobby.send_if_modified(|status| {
                                let waiting = LobbyStatus::Waiting { room: room_id.clone() };
                                let changed = *status != waiting;
                                *status = waiting;
                                changed
                            });
                        }
                    }
                }
                Err(error) if error.is_transient() && failures < LOBBY_POLL_FAILURES => {
                    failures += 1;
                    tracing::debug!("lobby poll failed ({error}); polling again");
                }
                Err(error) => {
                    self.lobby.send_replace(LobbyStatus::Idle);
                    return Err(error);
                }
            }
            if Instant::now() + poll >= deadline {
                self.lobby.send_replace(LobbyStatus::GaveUp { room: room_id });
                let minutes = self.settings.lobby_wait_ms.div_ceil(60_000);
                return Err(PlaneError::Forbidden {
                    message: format!(
                        "nobody admitted you from the waiting room within {minutes} minute{}; try again later",
                        if minutes == 1 { "" } else { "s" }
                    ),
                });
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The room's participants as LiveKit's RoomService lists them (needs a `roomAdmin` token).
    async fn livekit_participants(&self, grant: &JoinGrant) -> Result<Vec<ParticipantInfo>, PlaneError> {
        let claims = MeetClaims::read(&grant.token)?;
        let base = http_url(&grant.url)?;
        let url = format!("{}/twirp/livekit.RoomService/ListParticipants", base.trim_end_matches('/'));
        let request = self
            .http
            .request(Method::POST, &url)
            .bearer_auth(&grant.token)
            .json(&serde_json::json!({ "room": claims.video.room }));
        let response = match self.http.send(request).await {
            Ok(response) => response,
            Err(failure) if matches!(failure.status, Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                return Err(PlaneError::Forbidden {
                    message: "only the room's owners and administrators can list its LiveKit participants; to mute, name the track as <identity>/<track SID>".into(),
                });
            }
            Err(failure) => return Err(failure.into_error()),
        };
        let answer: ListParticipantsAnswer = decode_json(response).await?;
        Ok(answer.participants)
    }

    async fn mute(&self, grant: &JoinGrant, participant: &str) -> Result<(), PlaneError> {
        let (identity, tracks) = match participant.rsplit_once('/') {
            Some((identity, track)) if track.starts_with("TR_") && !identity.is_empty() => {
                (identity.to_string(), vec![track.to_string()])
            }
            _ => {
                let everyone = self.livekit_participants(grant).await?;
                let target = everyone.into_iter().find(|info| info.identity == participant).ok_or_else(|| {
                    PlaneError::NotFound {
                        what: format!("participant {participant:?}"),
                        message: "not in the meeting".into(),
                    }
                })?;
                let tracks: Vec<String> =
                    target.microphone_tracks().filter(|track| !track.muted).map(|track| track.sid.clone()).collect();
                if tracks.is_empty() {
                    // Already muted or not publishing a microphone: nothing to do.
                    return Ok(());
                }
                (target.identity, tracks)
            }
        };
        let url = self.room_url(&grant.room_id, Some("mute-participant"))?;
        for track in tracks {
            let request = self
                .mute_request(grant, &url)
                .json(&serde_json::json!({ "participant_identity": identity, "track_sid": track }));
            self.send(request, &format!("participant {identity:?}")).await?;
        }
        Ok(())
    }

    /// `update-participant/` with a whole permission object (LiveKit replaces, never merges).
    async fn set_publishing(&self, grant: &JoinGrant, identity: &str, allowed: bool) -> Result<(), PlaneError> {
        let sources: Vec<String> = if allowed {
            self.sources
                .lock()
                .ok()
                .and_then(|known| known.get(&grant.room_id).cloned())
                .unwrap_or_else(|| DEFAULT_SOURCES.map(String::from).to_vec())
        } else {
            Vec::new()
        };
        let body = serde_json::json!({
            "participant_identity": identity,
            "permission": {
                "can_subscribe": true,
                "can_publish": allowed && !sources.is_empty(),
                "can_publish_data": true,
                "can_publish_sources": sources,
                // Meet's own tokens never let participants change their metadata.
                "can_update_metadata": false,
                "can_subscribe_metrics": false,
            },
        });
        self.session_post(grant, "update-participant", identity, body).await
    }

    async fn session_post(
        &self,
        grant: &JoinGrant,
        action: &str,
        identity: &str,
        body: serde_json::Value,
    ) -> Result<(), PlaneError> {
        let url = self.room_url(&grant.room_id, Some(action))?;
        self.send(self.session_request(Method::POST, &url).json(&body), &format!("participant {identity:?}")).await?;
        Ok(())
    }

    fn is_admin(&self) -> Option<bool> {
        self.admin.lock().ok().and_then(|admin| *admin)
    }
}

#[async_trait]
impl ControlPlane for MeetPlane {
    fn kind(&self) -> BackendKind {
        BackendKind::Meet
    }

    /// Always: join, raise hand, mute (rooms let everyone mute by default). With a session
    /// cookie, unless the last token showed the user is no owner or administrator: kick, hard
    /// mute, restore, make moderator. With a `roomAdmin` token: the participant list.
    fn capabilities(&self) -> Capabilities {
        let mut capabilities =
            vec![Capability::Join, Capability::RaiseHand, Capability::Moderate(ModerationAction::Mute)];
        let admin = self.is_admin();
        if admin == Some(true) {
            capabilities.push(Capability::ListParticipants);
        }
        if self.session_cookie.is_some() && admin != Some(false) {
            capabilities.extend(
                [
                    ModerationAction::Kick,
                    ModerationAction::HardMute,
                    ModerationAction::Restore,
                    ModerationAction::MakeModerator,
                ]
                .map(Capability::Moderate),
            );
        }
        Capabilities::new(capabilities)
    }

    /// Retrieves the room; waits in its lobby when the room does not let the user straight in.
    /// Errors: [`PlaneError::EntryDenied`] when a moderator declines, [`PlaneError::Forbidden`]
    /// when nobody answers in time, [`PlaneError::NotFound`] for an unknown room.
    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        let url = self.room_url(room, None)?;
        let request =
            self.session_request(Method::GET, &url).query(&[("username", self.settings.display_name.as_str())]);
        let response = self.send(request, &format!("room {:?}", room.trim())).await?;
        let answer: RoomAnswer = decode_json(response).await?;
        match &answer.livekit {
            Some(livekit) => self.grant(&answer, livekit, room.trim()),
            None => self.wait_in_lobby(&answer, room.trim()).await,
        }
    }

    async fn participants(&self, grant: &JoinGrant) -> Result<Vec<PlaneParticipant>, PlaneError> {
        Ok(self
            .livekit_participants(grant)
            .await?
            .into_iter()
            .map(|info| {
                let microphones: Vec<&TrackInfo> = info.microphone_tracks().collect();
                PlaneParticipant {
                    muted: (!microphones.is_empty()).then(|| microphones.iter().all(|track| track.muted)),
                    hand_raised: Some(info.attributes.get("handRaisedAt").is_some_and(|at| !at.is_empty())),
                    role: info.attributes.get("room_role").filter(|role| !role.is_empty()).cloned(),
                    name: if info.name.is_empty() { info.identity.clone() } else { info.name.clone() },
                    identity: info.identity,
                    avatar_url: None,
                    deafened: None,
                    hard_muted: None,
                }
            })
            .collect())
    }

    async fn set_hand(&self, grant: &JoinGrant, raised: bool) -> Result<(), PlaneError> {
        let url = self.room_url(&grant.room_id, Some("toggle-hand"))?;
        let request = self
            .http
            .request(Method::POST, &url)
            .bearer_auth(&grant.token)
            .json(&serde_json::json!({ "raised": raised }));
        self.send(request, &format!("room {:?}", grant.room_id)).await?;
        Ok(())
    }

    async fn moderate(&self, grant: &JoinGrant, action: ModerationAction, participant: &str) -> Result<(), PlaneError> {
        let identity = participant.trim();
        if identity.is_empty() {
            return Err(PlaneError::InvalidInput { message: "name the participant (their LiveKit identity)".into() });
        }
        match action {
            ModerationAction::Mute => self.mute(grant, identity).await,
            ModerationAction::HardMute => {
                self.require_session("hard-muting")?;
                self.set_publishing(grant, identity, false).await
            }
            ModerationAction::Restore => {
                self.require_session("restoring a participant's microphone")?;
                self.set_publishing(grant, identity, true).await
            }
            ModerationAction::Kick => {
                self.require_session("removing a participant")?;
                self.session_post(
                    grant,
                    "remove-participant",
                    identity,
                    serde_json::json!({ "participant_identity": identity }),
                )
                .await
            }
            ModerationAction::MakeModerator => {
                self.require_session("making someone a moderator")?;
                let body = serde_json::json!({ "participant_identity": identity, "role": "administrator" });
                self.session_post(grant, "update-participant-role", identity, body).await
            }
            other => Err(PlaneError::Unsupported { backend: BackendKind::Meet.as_str(), action: other.as_str() }),
        }
    }
}

/// The session secret as a cookie: `name=value` as given, or a bare value under
/// [`SESSION_COOKIE`] (Django session keys never contain `=`).
fn session_cookie(secret: &str) -> (&str, &str) {
    match secret.trim().split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => (name.trim(), value.trim()),
        _ => (SESSION_COOKIE, secret.trim()),
    }
}

fn meet_error(failure: Failure, what: &str) -> PlaneError {
    let message = failure.message.clone();
    // The LiveKit-token authenticator has no `WWW-Authenticate`, so DRF turns its "who are you"
    // answers into 403s; they are still authentication failures.
    let token_refused =
        ["Authentication credentials were not provided.", "Invalid LiveKit token", "Authorization header must be"]
            .iter()
            .any(|start| message.starts_with(start));
    match failure.status.map(|status| status.as_u16()) {
        Some(401) => PlaneError::Unauthorized { message },
        Some(403) if token_refused => PlaneError::Unauthorized { message },
        Some(403) if message.starts_with("CSRF Failed") => PlaneError::Unauthorized {
            message: format!("{message} (copy the csrftoken cookie again together with the session cookie)"),
        },
        Some(403) => PlaneError::Forbidden { message },
        Some(404) => PlaneError::NotFound { what: what.to_string(), message },
        _ => failure.into_error(),
    }
}

/// RoomService lives on the signalling host over HTTP(S).
fn http_url(url: &str) -> Result<String, PlaneError> {
    if let Some(rest) = url.strip_prefix("wss://") {
        Ok(format!("https://{rest}"))
    } else if let Some(rest) = url.strip_prefix("ws://") {
        Ok(format!("http://{rest}"))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(url.to_string())
    } else {
        Err(PlaneError::InvalidInput { message: format!("the LiveKit URL {url:?} is not a ws(s) URL") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microphone_tracks_accept_names_numbers_and_missing_sources() {
        let named: ParticipantInfo = serde_json::from_str(
            r#"{"identity":"a","tracks":[{"sid":"TR_cam","type":"VIDEO","source":"CAMERA"},{"sid":"TR_mic","source":"MICROPHONE"}]}"#,
        )
        .unwrap();
        assert_eq!(named.microphone_tracks().map(|track| track.sid.as_str()).collect::<Vec<_>>(), ["TR_mic"]);
        let numbered: ParticipantInfo = serde_json::from_str(
            r#"{"identity":"a","tracks":[{"sid":"TR_1","type":1,"source":1},{"sid":"TR_2","source":2}]}"#,
        )
        .unwrap();
        assert_eq!(numbered.microphone_tracks().map(|track| track.sid.as_str()).collect::<Vec<_>>(), ["TR_2"]);
        let bare: ParticipantInfo =
            serde_json::from_str(r#"{"identity":"a","tracks":[{"sid":"TR_a"},{"sid":"TR_v","type":"VIDEO"}]}"#)
                .unwrap();
        assert_eq!(bare.microphone_tracks().map(|track| track.sid.as_str()).collect::<Vec<_>>(), ["TR_a"]);
    }

    #[test]
    fn poll_interval_must_beat_the_lobby_expiry() {
        let settings = Settings {
            url: "https://meet.example".into(),
            display_name: "Ann".into(),
            lobby_poll_ms: 3000,
            lobby_wait_ms: default_wait_ms(),
        };
        let error = MeetPlane::new(settings, Secrets::default()).unwrap_err();
        assert_eq!(error.code(), "invalid_input");
        assert!(error.to_string().contains("3 s"), "{error}");
    }
}
