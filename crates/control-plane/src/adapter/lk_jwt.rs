//! Matrix / Element Call's MatrixRTC authorisation service, element-hq/lk-jwt-service
//! (`shared/CONTROL_PLANES.md` §3).
//!
//! A join is three requests:
//! 1. the service URL: `settings.service_url`, or discovered once from the homeserver's
//!    `/.well-known/matrix/client` (`org.matrix.msc4143.rtc_foci`, the entry of `type: livekit`);
//! 2. a Matrix OpenID token: `POST /_matrix/client/v3/user/{userId}/openid/request_token` with the
//!    user's access token;
//! 3. the LiveKit token: `POST {service}/get_token` (strict JSON: the service rejects unknown
//!    fields), falling back to the pre-Matrix-2.0 `POST {service}/sfu/get` when the service
//!    answers 404 or 405 (older deployments).
//!
//! The service's tokens last one hour and carry no `roomAdmin`, so there is no moderation and no
//! heartbeat here. The grant's `expires_at` is the JWT's `exp` (or one hour from now); the
//! session should call `refresh`, which runs the three steps again, [`REFRESH_MARGIN`] before it.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::adapter::livekit::token::TokenClaims;
use crate::http::{Failure, Http, decode_json};
use crate::plane::{BackendKind, Capabilities, Capability, ControlPlane, JoinGrant};
use crate::transport;
use crate::{PlaneError, Secret};

/// MatrixRTC slot of a room call (`m.call#` + empty application-specific part).
pub const SLOT_ID: &str = "m.call#";
/// How long before `expires_at` a session should refresh: the service's tokens live 1 h and the
/// three-request flow takes seconds, so five minutes leaves room for a few retries.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The service's token lifetime (`getJoinToken`), used when the JWT has no readable `exp`.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Non-secret settings, stored in the profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The homeserver's client-server API base, e.g. `https://matrix.example.org`.
    pub homeserver_url: String,
    /// The user's Matrix ID, `@alice:example.org`.
    pub user_id: String,
    /// The Matrix device this client signs in as.
    pub device_id: String,
    /// The Matrix room joined when `join` is given an empty room (`!room:example.org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// The lk-jwt-service base URL; discovered from `.well-known/matrix/client` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
}

/// Secrets, kept in the OS keyring.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The Matrix access token of the user's device.
    pub access_token: Option<Secret>,
}

/// Keyring entry names of [`Secrets`].
pub const SECRET_NAMES: &[&str] = &["matrix-access-token"];

/// A Matrix homeserver with a MatrixRTC LiveKit focus.
#[derive(Debug)]
pub struct LkJwtPlane {
    http: Http,
    homeserver: String,
    settings: Settings,
    access_token: Secret,
    /// The service URL, once configured or discovered.
    service: Mutex<Option<String>>,
}

impl LkJwtPlane {
    /// Checks the settings; sends nothing.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a malformed URL, user id or room id, or a missing
    /// access token.
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, PlaneError> {
        let homeserver = base_url(&settings.homeserver_url, "homeserver URL")?;
        if !settings.user_id.starts_with('@') || !settings.user_id.contains(':') {
            return Err(PlaneError::InvalidInput {
                message: format!("the Matrix user id {:?} must look like @name:server", settings.user_id),
            });
        }
        if settings.device_id.trim().is_empty() {
            return Err(PlaneError::InvalidInput { message: "the Matrix device id is empty".into() });
        }
        if let Some(room) = &settings.room_id {
            check_room_id(room)?;
        }
        let service = match &settings.service_url {
            Some(url) => Some(base_url(url, "lk-jwt-service URL")?),
            None => None,
        };
        let access_token =
            secrets.access_token.filter(|token| !token.is_empty()).ok_or_else(|| PlaneError::InvalidInput {
                message: "a Matrix access token is needed to ask the homeserver for an OpenID token".into(),
            })?;
        Ok(LkJwtPlane {
            http: Http::new()?.for_server(&homeserver),
            homeserver,
            settings,
            access_token,
            service: Mutex::new(service),
        })
    }

    /// The lk-jwt-service base URL: configured, cached, or read from the homeserver's
    /// `.well-known/matrix/client`.
    ///
    /// Errors: [`PlaneError::NotFound`] when the homeserver advertises no LiveKit focus.
    pub async fn service_url(&self) -> Result<String, PlaneError> {
        if let Some(url) = self.cached_service() {
            return Ok(url);
        }
        let url = format!("{}/.well-known/matrix/client", self.homeserver);
        let well_known: serde_json::Value = self.http.json(self.http.request(Method::GET, &url)).await?;
        let service = well_known
            .get("org.matrix.msc4143.rtc_foci")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter(|focus| focus.get("type").and_then(serde_json::Value::as_str) == Some("livekit"))
            .find_map(|focus| focus.get("livekit_service_url").and_then(serde_json::Value::as_str))
            .ok_or_else(|| PlaneError::NotFound {
                what: "a MatrixRTC LiveKit service".into(),
                message:
                    "the homeserver's .well-known/matrix/client lists no livekit focus; set service_url in the profile"
                        .into(),
            })?;
        let service = base_url(service, "livekit_service_url").map_err(|_| PlaneError::Malformed {
            detail: format!("the advertised livekit_service_url {service:?} is not a URL"),
        })?;
        match self.service.lock() {
            Ok(mut cached) => *cached = Some(service.clone()),
            Err(_) => tracing::warn!("lk-jwt service cache lock poisoned; not caching"),
        }
        Ok(service)
    }

    fn cached_service(&self) -> Option<String> {
        self.service.lock().ok().and_then(|cached| cached.clone())
    }

    async fn openid_token(&self) -> Result<OpenIdToken, PlaneError> {
        let mut url = reqwest::Url::parse(&format!("{}/_matrix/client/v3/user/", self.homeserver))
            .map_err(|error| PlaneError::InvalidInput { message: format!("bad homeserver URL: {error}") })?;
        url.path_segments_mut()
            .map_err(|()| PlaneError::InvalidInput { message: "the homeserver URL cannot take a path".into() })?
            .pop_if_empty()
            .extend([self.settings.user_id.as_str(), "openid", "request_token"]);
        let request = self
            .http
            .request(Method::POST, url.as_str())
            .bearer_auth(self.access_token.expose())
            .json(&serde_json::json!({}));
        let response = self.http.send(request).await.map_err(matrix_error)?;
        decode_json(response).await
    }

    async fn sfu_token(&self, service: &str, room_id: &str, openid: &OpenIdToken) -> Result<ServiceAnswer, PlaneError> {
        let body = TokenRequest {
            room_id,
            slot_id: SLOT_ID,
            openid_token: openid,
            member: Member {
                id: &self.settings.device_id,
                claimed_user_id: &self.settings.user_id,
                claimed_device_id: &self.settings.device_id,
            },
        };
        let request = self.http.request(Method::POST, &format!("{service}/get_token")).json(&body);
        match self.http.send(request).await {
            Ok(response) => decode_json(response).await,
            Err(failure) if matches!(failure.status.map(|status| status.as_u16()), Some(404 | 405)) => {
                tracing::debug!("lk-jwt-service has no /get_token; using the legacy /sfu/get");
                let legacy = LegacyRequest { room: room_id, openid_token: openid, device_id: &self.settings.device_id };
                let request = self.http.request(Method::POST, &format!("{service}/sfu/get")).json(&legacy);
                let response = self.http.send(request).await.map_err(matrix_error)?;
                decode_json(response).await
            }
            Err(failure) => Err(matrix_error(failure)),
        }
    }

    fn room<'a>(&'a self, room: &'a str) -> Result<&'a str, PlaneError> {
        let room = room.trim();
        if room.is_empty() {
            return self.settings.room_id.as_deref().ok_or_else(|| PlaneError::InvalidInput {
                message: "name the Matrix room to join (!room:server), or set a default room in the profile".into(),
            });
        }
        check_room_id(room)?;
        Ok(room)
    }
}

#[async_trait]
impl ControlPlane for LkJwtPlane {
    fn kind(&self) -> BackendKind {
        BackendKind::LkJwt
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new([Capability::Join])
    }

    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        let room_id = self.room(room)?;
        // Discovery first: without a LiveKit focus there is no point in minting an OpenID token.
        let service = self.service_url().await?;
        let openid = self.openid_token().await?;
        let answer = self.sfu_token(&service, room_id, &openid).await?;
        if answer.jwt.is_empty() || answer.url.is_empty() {
            return Err(PlaneError::Malformed { detail: "lk-jwt-service answered without url or jwt".into() });
        }
        let expires_at = TokenClaims::read(&answer.jwt)
            .ok()
            .and_then(|claims| claims.expires_at)
            .unwrap_or_else(|| now_secs() + TOKEN_LIFETIME.as_secs());
        Ok(JoinGrant {
            room_id: room_id.to_string(),
            room_name: room_id.to_string(),
            url: transport::websocket_url(&answer.url, "lk-jwt-service's")?,
            token: answer.jwt,
            e2ee_key: None,
            expires_at: Some(expires_at),
            heartbeat_every: None,
            role: None,
            notice: None,
        })
    }
}

/// The OpenID token from the homeserver, sent on to the service unchanged.
#[derive(Deserialize, Serialize)]
struct OpenIdToken {
    access_token: String,
    token_type: String,
    matrix_server_name: String,
    expires_in: u64,
}

impl std::fmt::Debug for OpenIdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenIdToken").field("matrix_server_name", &self.matrix_server_name).finish_non_exhaustive()
    }
}

/// `SFURequest` (`requests.go`): exactly these fields, the service disallows unknown ones.
#[derive(Serialize)]
struct TokenRequest<'a> {
    room_id: &'a str,
    slot_id: &'a str,
    openid_token: &'a OpenIdToken,
    member: Member<'a>,
}

#[derive(Serialize)]
struct Member<'a> {
    id: &'a str,
    claimed_user_id: &'a str,
    claimed_device_id: &'a str,
}

/// `LegacySFURequest`.
#[derive(Serialize)]
struct LegacyRequest<'a> {
    room: &'a str,
    openid_token: &'a OpenIdToken,
    device_id: &'a str,
}

/// `SFUResponse`.
#[derive(Deserialize)]
struct ServiceAnswer {
    url: String,
    jwt: String,
}

/// Matrix errors are `{errcode, error}`; the code says more than the status.
fn matrix_error(failure: Failure) -> PlaneError {
    let message = failure.message.clone();
    let errcode = failure.body_str("errcode").unwrap_or_default();
    match errcode.as_str() {
        "M_UNAUTHORIZED" | "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" => PlaneError::Unauthorized { message },
        "M_FORBIDDEN" => PlaneError::Forbidden { message },
        "M_BAD_JSON" | "M_NOT_JSON" | "M_INVALID_PARAM" | "M_MISSING_PARAM" => {
            PlaneError::Rejected { status: failure.status.map_or(400, |status| status.as_u16()), message }
        }
        "M_LIMIT_EXCEEDED" => PlaneError::RateLimited {
            retry_after: failure.retry_after.or_else(|| {
                failure
                    .body
                    .as_ref()
                    .and_then(|body| body.get("retry_after_ms"))
                    .and_then(serde_json::Value::as_u64)
                    .map(Duration::from_millis)
            }),
        },
        _ => failure.into_error(),
    }
}

fn check_room_id(room: &str) -> Result<(), PlaneError> {
    if room.starts_with('!') && room.contains(':') {
        Ok(())
    } else {
        Err(PlaneError::InvalidInput {
            message: format!("{room:?} is not a Matrix room id; it must look like !opaque:server (not an #alias)"),
        })
    }
}

fn base_url(url: &str, what: &str) -> Result<String, PlaneError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .map_err(|error| PlaneError::InvalidInput { message: format!("the {what} {url:?} is not valid: {error}") })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(PlaneError::InvalidInput {
            message: format!("the {what} {url:?} must start with https:// or http://"),
        });
    }
    Ok(trimmed.to_string())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default()
}
