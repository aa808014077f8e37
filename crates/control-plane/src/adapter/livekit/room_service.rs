//! LiveKit's RoomService (CONTROL_PLANES.md §6): moderation of one room with either the API key
//! and secret (the `livekit` adapter) or a participant token carrying `roomAdmin` (any backend
//! that hands those out: Meet owners, token endpoints configured for it).
//!
//! §6.2: a `roomAdmin` token may call ListParticipants, GetParticipant, RemoveParticipant,
//! MutePublishedTrack and UpdateParticipant for its own `video.room` only. UpdateParticipant's
//! `permission` *replaces* the participant's whole permission, so hard mute and restore copy the
//! current permission and change `can_publish` alone.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol as proto;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::adapter::livekit::token::TokenClaims;
use crate::http::{Failure, Http, decode_json};
use crate::plane::{JoinGrant, ModerationAction, PlaneParticipant};
use crate::{PlaneError, Secret};

/// How long the per-request tokens signed with the API secret live.
const REQUEST_TOKEN_TTL: Duration = Duration::from_secs(600);

/// How RoomService requests are authorised.
#[derive(Debug, Clone)]
enum Credentials {
    /// Sign a short-lived token per request with exactly the grant it needs.
    Keys { api_key: String, api_secret: Secret },
    /// A participant token with `roomAdmin`, sent as is.
    Token(Secret),
}

/// Twirp over HTTP with JSON bodies (§6.1: `POST {http-url}/twirp/livekit.RoomService/<Method>`),
/// on the shared [`Http`] client so that errors map like every other control-plane request.
///
/// livekit-api's `RoomClient` speaks the same protocol, but it cannot report the status of
/// LiveKit's plain-text 401s (it fails decoding them as JSON) and those bodies echo the token,
/// so Parley sends the requests itself.
#[derive(Debug, Clone)]
pub(crate) struct RoomService {
    http: Http,
    /// `http(s)://host[:port]`.
    server: String,
    credentials: Credentials,
}

impl RoomService {
    /// A client signing with the API key and secret. `url` may be ws(s):// or http(s)://.
    pub(crate) fn with_keys(url: &str, api_key: &str, api_secret: &Secret) -> Result<RoomService, PlaneError> {
        Ok(RoomService {
            http: Http::new()?,
            server: http_base(url)?,
            credentials: Credentials::Keys { api_key: api_key.to_string(), api_secret: api_secret.clone() },
        })
    }

    fn with_token(url: &str, token: &str) -> Result<RoomService, PlaneError> {
        Ok(RoomService {
            http: Http::new()?,
            server: http_base(url)?,
            credentials: Credentials::Token(Secret::new(token)),
        })
    }

    /// Calls `method` with `request`; `grants` are what a signed token needs for it. `what` names
    /// the object of the request for not-found errors.
    async fn call<Request: Serialize, Answer: DeserializeOwned>(
        &self,
        method: &str,
        request: &Request,
        grants: VideoGrants,
        what: &str,
    ) -> Result<Answer, PlaneError> {
        let bearer = match &self.credentials {
            Credentials::Token(token) => token.clone(),
            Credentials::Keys { api_key, api_secret } => Secret::new(
                AccessToken::with_api_key(api_key, api_secret.expose())
                    .with_grants(grants)
                    .with_ttl(REQUEST_TOKEN_TTL)
                    .to_jwt()
                    .map_err(|error| PlaneError::InvalidInput {
                        message: format!("cannot sign the RoomService request: {error}"),
                    })?,
            ),
        };
        let url = format!("{}/twirp/livekit.RoomService/{method}", self.server);
        let request = self
            .http
            .request(reqwest::Method::POST, &url)
            .bearer_auth(bearer.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(request);
        match self.http.send(request).await {
            Ok(response) => decode_json(response).await,
            Err(failure) => Err(service_error(failure, what)),
        }
    }

    pub(crate) async fn list_rooms(&self) -> Result<Vec<proto::Room>, PlaneError> {
        let grants = VideoGrants { room_list: true, ..Default::default() };
        let answer: proto::ListRoomsResponse =
            self.call("ListRooms", &proto::ListRoomsRequest::default(), grants, "the room list").await?;
        Ok(answer.rooms)
    }
}

/// The grant a signed per-request token needs for admin calls on `room`.
fn admin_grants(room: &str) -> VideoGrants {
    VideoGrants { room_admin: true, room: room.to_string(), ..Default::default() }
}

/// RoomService moderation of one room.
#[derive(Debug)]
pub struct RoomAdmin {
    service: RoomService,
    room: String,
}

impl RoomAdmin {
    /// What RoomService can do to another participant. Unkick, ban and unban have no LiveKit
    /// equivalent (the server keeps no ban list), making a moderator is a backend matter.
    pub const ACTIONS: [ModerationAction; 8] = [
        ModerationAction::Mute,
        ModerationAction::Unmute,
        ModerationAction::HardMute,
        ModerationAction::Restore,
        ModerationAction::Kick,
        ModerationAction::InviteToSpeak,
        ModerationAction::MoveToAudience,
        ModerationAction::StopShare,
    ];

    /// Moderation of `room` signed with the server's API key and secret. `url` is the signalling
    /// URL (`ws://`/`wss://`, mapped to `http://`/`https://`).
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a URL that is not ws/wss/http/https.
    pub fn with_api_key(url: &str, api_key: &str, api_secret: &Secret, room: &str) -> Result<RoomAdmin, PlaneError> {
        Ok(RoomAdmin { service: RoomService::with_keys(url, api_key, api_secret)?, room: room.to_string() })
    }

    /// Moderation with a participant token that carries `roomAdmin`, for the token's room.
    ///
    /// Errors: [`PlaneError::Forbidden`] when the token has no `roomAdmin`;
    /// [`PlaneError::Malformed`] when it is not a LiveKit token; [`PlaneError::InvalidInput`]
    /// for an unusable URL.
    pub fn from_token(url: &str, token: &str) -> Result<RoomAdmin, PlaneError> {
        let claims = TokenClaims::read(token)?;
        if !claims.admin || claims.room.is_empty() {
            return Err(PlaneError::Forbidden {
                message: "your token for this room does not allow moderation (no roomAdmin grant)".into(),
            });
        }
        Ok(RoomAdmin { service: RoomService::with_token(url, token)?, room: claims.room })
    }

    /// RoomService moderation for `grant` when its token carries `roomAdmin`; `None` otherwise.
    pub fn for_grant(grant: &JoinGrant) -> Option<RoomAdmin> {
        if !RoomAdmin::grant_is_admin(grant) {
            return None;
        }
        RoomAdmin::from_token(&grant.url, &grant.token).ok()
    }

    /// Whether `grant`'s token allows RoomService moderation.
    pub fn grant_is_admin(grant: &JoinGrant) -> bool {
        TokenClaims::read(&grant.token).is_ok_and(|claims| claims.admin && !claims.room.is_empty())
    }

    /// The room this moderates.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Everyone in the room. Any tokio task.
    ///
    /// Errors: the RoomService mapping (see [`service_error`]).
    pub async fn participants(&self) -> Result<Vec<PlaneParticipant>, PlaneError> {
        let request = proto::ListParticipantsRequest { room: self.room.clone() };
        let answer: proto::ListParticipantsResponse = self
            .service
            .call("ListParticipants", &request, admin_grants(&self.room), &format!("room {:?}", self.room))
            .await?;
        Ok(answer.participants.iter().map(plane_participant).collect())
    }

    /// Applies `action` to the participant with LiveKit identity `identity`. Any tokio task.
    ///
    /// Errors: [`PlaneError::Unsupported`] for actions outside [`RoomAdmin::ACTIONS`];
    /// [`PlaneError::NotFound`] for an unknown participant or one without a microphone track;
    /// [`PlaneError::Rejected`] when the server does not allow remote unmute; otherwise the
    /// RoomService mapping.
    pub async fn moderate(&self, action: ModerationAction, identity: &str) -> Result<(), PlaneError> {
        let who = format!("participant {identity:?}");
        match action {
            ModerationAction::Mute | ModerationAction::Unmute | ModerationAction::StopShare => {
                let participant = self.participant(identity).await?;
                let (track, what) = if action == ModerationAction::StopShare {
                    (screen_share_track(&participant), "a screen share")
                } else {
                    (microphone_track(&participant), "a microphone track")
                };
                let track = track.ok_or_else(|| PlaneError::NotFound {
                    what: format!("{what} of {identity:?}"),
                    message: String::new(),
                })?;
                let request = proto::MuteRoomTrackRequest {
                    room: self.room.clone(),
                    identity: identity.to_string(),
                    track_sid: track.sid.clone(),
                    muted: action != ModerationAction::Unmute,
                };
                let _track: proto::MuteRoomTrackResponse =
                    self.service.call("MutePublishedTrack", &request, admin_grants(&self.room), &who).await?;
                Ok(())
            }
            ModerationAction::HardMute | ModerationAction::MoveToAudience => {
                self.set_can_publish(identity, false).await
            }
            ModerationAction::Restore | ModerationAction::InviteToSpeak => self.set_can_publish(identity, true).await,
            ModerationAction::Kick => {
                let request = proto::RoomParticipantIdentity {
                    room: self.room.clone(),
                    identity: identity.to_string(),
                    ..Default::default()
                };
                let _removed: proto::RemoveParticipantResponse =
                    self.service.call("RemoveParticipant", &request, admin_grants(&self.room), &who).await?;
                Ok(())
            }
            ModerationAction::Unkick
            | ModerationAction::Ban
            | ModerationAction::Unban
            | ModerationAction::MakeModerator => {
                Err(PlaneError::Unsupported { backend: "LiveKit RoomService", action: action.as_str() })
            }
        }
    }

    async fn participant(&self, identity: &str) -> Result<proto::ParticipantInfo, PlaneError> {
        let request = proto::RoomParticipantIdentity {
            room: self.room.clone(),
            identity: identity.to_string(),
            ..Default::default()
        };
        self.service
            .call("GetParticipant", &request, admin_grants(&self.room), &format!("participant {identity:?}"))
            .await
    }

    async fn set_can_publish(&self, identity: &str, allowed: bool) -> Result<(), PlaneError> {
        let participant = self.participant(identity).await?;
        // The new permission replaces the old one whole (§6.2): start from what they have so that
        // subscribing, data and metadata rights survive a hard mute.
        let mut permission = participant.permission.clone().unwrap_or_else(default_permission);
        permission.can_publish = allowed;
        let request = proto::UpdateParticipantRequest {
            room: self.room.clone(),
            identity: identity.to_string(),
            permission: Some(permission),
            ..Default::default()
        };
        let _updated: proto::ParticipantInfo = self
            .service
            .call("UpdateParticipant", &request, admin_grants(&self.room), &format!("participant {identity:?}"))
            .await?;
        Ok(())
    }
}

/// The permission LiveKit gives a token that sets none explicitly (§6.4: all publish and
/// subscribe rights).
fn default_permission() -> proto::ParticipantPermission {
    proto::ParticipantPermission {
        can_subscribe: true,
        can_publish: true,
        can_publish_data: true,
        ..Default::default()
    }
}

/// The participant's screen-share video track, if they share.
fn screen_share_track(participant: &proto::ParticipantInfo) -> Option<&proto::TrackInfo> {
    participant.tracks.iter().find(|track| track.source == proto::TrackSource::ScreenShare as i32)
}

fn microphone_track(participant: &proto::ParticipantInfo) -> Option<&proto::TrackInfo> {
    let audio = |track: &&proto::TrackInfo| track.r#type == proto::TrackType::Audio as i32;
    participant
        .tracks
        .iter()
        .filter(audio)
        .find(|track| track.source == proto::TrackSource::Microphone as i32)
        .or_else(|| participant.tracks.iter().find(audio))
}

fn plane_participant(info: &proto::ParticipantInfo) -> PlaneParticipant {
    let can_publish = info.permission.as_ref().is_none_or(|permission| permission.can_publish);
    PlaneParticipant {
        identity: info.identity.clone(),
        name: if info.name.is_empty() { info.identity.clone() } else { info.name.clone() },
        role: Some(if can_publish { "speaker" } else { "listener" }.to_string()),
        muted: microphone_track(info).map(|track| track.muted),
        hand_raised: None,
        avatar_url: None,
        deafened: None,
        hard_muted: None,
    }
}

/// `ws://` → `http://`, `wss://` → `https://`; http(s) stays; the path is dropped (RoomService
/// lives at the server root, §6.1).
pub fn http_base(url: &str) -> Result<String, PlaneError> {
    let parsed = url::Url::parse(url)
        .map_err(|error| PlaneError::InvalidInput { message: format!("{url:?} is not a LiveKit URL: {error}") })?;
    let scheme = match parsed.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => {
            return Err(PlaneError::InvalidInput {
                message: format!("a LiveKit URL starts with ws://, wss://, http:// or https://, not {other}://"),
            });
        }
    };
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| PlaneError::InvalidInput { message: format!("{url:?} has no host") })?;
    Ok(match parsed.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Maps a failed RoomService request to a [`PlaneError`]. `what` names the object of the
/// request (for not-found). Only Twirp's JSON error bodies are quoted: LiveKit's plain-text 401s
/// echo the token that was refused.
fn service_error(failure: Failure, what: &str) -> PlaneError {
    let twirp_code = failure.body_str("code");
    match (failure.status, twirp_code) {
        (Some(_), Some(code)) => twirp_error(&code, &failure.body_str("msg").unwrap_or_default(), what),
        (Some(status), None) if status.as_u16() == 401 => PlaneError::Unauthorized {
            message:
                "the LiveKit server refused the request's signature (wrong API key or secret, or an expired token)"
                    .into(),
        },
        (Some(_), None) => {
            let mut failure = failure;
            failure.message.clear();
            failure.into_error()
        }
        (None, _) => failure.into_error(),
    }
}

/// Twirp error codes (§6.2) → [`PlaneError`].
fn twirp_error(code: &str, message: &str, what: &str) -> PlaneError {
    let message = message.trim().to_string();
    match code {
        // `EnsureAdminPermission` failures arrive as `unauthenticated` / "permissions denied": the
        // token is valid but not an admin of this room.
        "unauthenticated" if message.contains("permissions denied") => {
            PlaneError::Forbidden { message: "your credentials do not allow moderating this room".into() }
        }
        "unauthenticated" => PlaneError::Unauthorized { message },
        "permission_denied" => PlaneError::Forbidden { message },
        "not_found" => PlaneError::NotFound { what: what.to_string(), message },
        "failed_precondition" if message.contains("remote unmute") => PlaneError::Rejected {
            status: 412,
            message: "this LiveKit server does not allow unmuting others (its config needs \
                      room.enable_remote_unmute: true); ask them to unmute themselves"
                .into(),
        },
        "failed_precondition" => PlaneError::Rejected { status: 412, message },
        "invalid_argument" | "malformed" | "out_of_range" | "bad_route" => {
            PlaneError::Rejected { status: 400, message }
        }
        "already_exists" | "aborted" => PlaneError::Rejected { status: 409, message },
        "resource_exhausted" => PlaneError::RateLimited { retry_after: None },
        "unavailable" => PlaneError::Server { status: 503, message },
        "deadline_exceeded" => PlaneError::Server { status: 504, message },
        "unimplemented" => PlaneError::Server { status: 501, message },
        _ => PlaneError::Server { status: 500, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalling_urls_map_to_the_http_base() {
        assert_eq!(http_base("ws://127.0.0.1:7880").unwrap(), "http://127.0.0.1:7880");
        assert_eq!(http_base("wss://lk.example.org/rtc").unwrap(), "https://lk.example.org");
        assert_eq!(http_base("ftp://x").unwrap_err().code(), "invalid_input");
    }

    #[test]
    fn twirp_codes_map_to_the_error_set() {
        let denied = twirp_error("unauthenticated", "permissions denied", "room");
        assert_eq!(denied.code(), "forbidden", "{denied}");
        assert_eq!(twirp_error("unauthenticated", "invalid token", "room").code(), "unauthorized");
        let missing = twirp_error("not_found", "participant does not exist", "participant \"bob\"");
        assert_eq!(missing.code(), "not_found");
        assert!(missing.to_string().contains("bob"), "{missing}");
        let unmute = twirp_error("failed_precondition", "remote unmute not enabled", "x");
        assert!(unmute.to_string().contains("enable_remote_unmute"), "{unmute}");
        assert_eq!(twirp_error("internal", "boom", "x").code(), "server_error");
    }
}
