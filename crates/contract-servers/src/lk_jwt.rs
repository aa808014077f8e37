//! A Matrix homeserver's OpenID surface and element-hq/lk-jwt-service
//! (`shared/CONTROL_PLANES.md` §3), as two servers sharing one state.
//!
//! Homeserver (`LkJwt::homeserver`):
//! * `GET /.well-known/matrix/client` → `m.homeserver` and `org.matrix.msc4143.rtc_foci` with
//!   the service URL (`<service>/livekit/jwt`, the usual reverse-proxy mount);
//! * `POST /_matrix/client/v3/user/{userId}/openid/request_token` with `Authorization: Bearer
//!   <access token>` → `{access_token, token_type, matrix_server_name, expires_in: 3600}`;
//!   401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`, 403 `M_FORBIDDEN` for another user's id;
//! * `GET /_matrix/federation/v1/openid/userinfo?access_token=` → `{sub}` (the service checks
//!   tokens in-process through the shared state, as if it had called this).
//!
//! Service (`LkJwt::service`, under `/livekit/jwt`):
//! * `POST /get_token` (`SFURequest`, unknown fields rejected) and legacy `POST /sfu/get`
//!   (`LegacySFURequest`) → `{url, jwt}`; identities and room names are unpadded standard base64
//!   of SHA-256 over Go's `json.Marshal` of the string arrays in `helper.go`;
//! * `GET|HEAD /healthz`; `OPTIONS` → 200 with CORS; other methods → 405;
//! * errors `{errcode, error}`: 400 `M_NOT_JSON` (undecodable body, unknown field), 400
//!   `M_BAD_JSON` (missing field), 401 `M_UNAUTHORIZED` (bad OpenID token, claimed user ≠ token
//!   owner).
//!
//! Tokens: 1 h, `{roomJoin, roomCreate: false, canPublish, canSubscribe, canUpdateOwnMetadata}`,
//! no `roomAdmin`. [`Handle::set_get_token_enabled`]`(false)` makes `/get_token` 404 like a
//! pre-Matrix-2.0 deployment.
//!
//! `start(keys, server_name) -> LkJwt { homeserver, service, handle }`.

// Helpers return the finished HTTP answer as their error, as axum handlers do; boxing it would
// only add noise to a test server.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{LivekitKeys, Running, serve};

/// `getJoinToken`'s validity.
const TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Where deployments usually mount the service.
const SERVICE_PREFIX: &str = "/livekit/jwt";

/// Which endpoint a forced failure or a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    WellKnown,
    OpenId,
    GetToken,
    SfuGet,
}

/// A request as one of the two servers saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub endpoint: Endpoint,
    pub method: String,
    pub path: String,
    /// Lowercase header names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// A LiveKit token the service handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub identity: String,
    pub room: String,
    pub legacy: bool,
}

struct OpenIdGrant {
    user_id: String,
    expires: Instant,
}

#[derive(Default)]
struct Hub {
    server_name: String,
    service_url: String,
    homeserver_url: String,
    /// access token → user id
    users: HashMap<String, String>,
    openid: HashMap<String, OpenIdGrant>,
    get_token_enabled: bool,
    well_known_override: Option<serde_json::Value>,
    requests: Vec<Seen>,
    issued: Vec<Issued>,
    fail_next: HashMap<Endpoint, (u16, String)>,
}

/// Test-side control of both servers.
#[derive(Clone)]
pub struct Handle {
    hub: Arc<Mutex<Hub>>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a device's access token for `user_id` (`@name:server`).
    pub fn add_user(&self, user_id: &str, access_token: &str) {
        self.lock().users.insert(access_token.to_string(), user_id.to_string());
    }

    /// `false`: `/get_token` answers 404, as services older than Matrix 2.0 do.
    pub fn set_get_token_enabled(&self, enabled: bool) {
        self.lock().get_token_enabled = enabled;
    }

    /// Replaces the `.well-known/matrix/client` document.
    pub fn set_well_known(&self, document: serde_json::Value) {
        self.lock().well_known_override = Some(document);
    }

    /// The next request to `endpoint` gets `status` with `body` (JSON if it starts with `{`,
    /// HTML if with `<`, else plain text).
    pub fn fail_next(&self, endpoint: Endpoint, status: u16, body: &str) {
        self.lock().fail_next.insert(endpoint, (status, body.to_string()));
    }

    /// Forgets every OpenID token handed out (the service then refuses them).
    pub fn expire_openid_tokens(&self) {
        self.lock().openid.clear();
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.lock().issued.clone()
    }

    /// The service's base URL as advertised (`http://127.0.0.1:<port>/livekit/jwt`).
    pub fn service_url(&self) -> String {
        self.lock().service_url.clone()
    }
}

/// Both servers and their handle.
pub struct LkJwt {
    pub homeserver: Running,
    pub service: Running,
    pub handle: Handle,
}

/// Starts a homeserver for `server_name` (the part after `:` in user ids) and a service that
/// mints tokens with `keys`; `/get_token` is enabled and no user exists yet.
pub async fn start(keys: LivekitKeys, server_name: &str) -> std::io::Result<LkJwt> {
    let hub =
        Arc::new(Mutex::new(Hub { server_name: server_name.to_string(), get_token_enabled: true, ..Hub::default() }));
    let shared = Shared { keys, hub: hub.clone() };
    let service_routes = Router::new()
        .route("/get_token", post(get_token).options(preflight))
        .route("/sfu/get", post(sfu_get).options(preflight))
        .route("/healthz", get(healthz).head(healthz))
        .with_state(shared.clone());
    let service = serve(Router::new().nest(SERVICE_PREFIX, service_routes)).await?;
    let homeserver = serve(
        Router::new()
            .route("/.well-known/matrix/client", get(well_known))
            .route("/_matrix/client/v3/user/{user_id}/openid/request_token", post(request_openid))
            .route("/_matrix/federation/v1/openid/userinfo", get(userinfo))
            .with_state(shared),
    )
    .await?;
    {
        let mut state = hub.lock().unwrap_or_else(PoisonError::into_inner);
        state.service_url = format!("{}{SERVICE_PREFIX}", service.url());
        state.homeserver_url = homeserver.url();
    }
    Ok(LkJwt { homeserver, service, handle: Handle { hub } })
}

#[derive(Clone)]
struct Shared {
    keys: LivekitKeys,
    hub: Arc<Mutex<Hub>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs the request and takes a forced failure for `endpoint`, if any.
    fn arrive(
        &self,
        endpoint: Endpoint,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Response> {
        let mut hub = self.lock();
        hub.requests.push(Seen {
            endpoint,
            method: method.to_string(),
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
        hub.fail_next.remove(&endpoint).map(|(status, body)| raw(status, &body))
    }
}

async fn well_known(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::WellKnown, "GET", &uri, &headers, b"") {
        return forced;
    }
    let hub = shared.lock();
    let document = hub.well_known_override.clone().unwrap_or_else(|| {
        serde_json::json!({
            "m.homeserver": { "base_url": hub.homeserver_url },
            "org.matrix.msc4143.rtc_foci": [
                { "type": "nextgen_new_foci_type", "props_for_nextgen_foci": "val" },
                { "type": "livekit", "livekit_service_url": hub.service_url },
            ],
        })
    });
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], axum::Json(document)).into_response()
}

async fn request_openid(
    State(shared): State<Shared>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::OpenId, "POST", &uri, &headers, &body) {
        return forced;
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return matrix(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing access token");
    };
    let mut hub = shared.lock();
    let Some(owner) = hub.users.get(token).cloned() else {
        return matrix(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Unknown access token");
    };
    if owner != user_id {
        return matrix(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Cannot request tokens for other users");
    }
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return matrix(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Content not JSON.");
    }
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    hub.openid.insert(
        access_token.clone(),
        OpenIdGrant { user_id: owner, expires: Instant::now() + Duration::from_secs(3600) },
    );
    axum::Json(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "matrix_server_name": hub.server_name,
        "expires_in": 3600,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct UserinfoQuery {
    access_token: Option<String>,
}

async fn userinfo(State(shared): State<Shared>, Query(query): Query<UserinfoQuery>) -> Response {
    let hub = shared.lock();
    match query.access_token.as_deref().and_then(|token| hub.openid.get(token)) {
        Some(grant) if grant.expires > Instant::now() => {
            axum::Json(serde_json::json!({ "sub": grant.user_id })).into_response()
        }
        _ => matrix(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Access Token unknown or expired"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenIdToken {
    access_token: Option<String>,
    token_type: Option<String>,
    matrix_server_name: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    id: Option<String>,
    claimed_user_id: Option<String>,
    claimed_device_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SfuRequest {
    room_id: Option<String>,
    slot_id: Option<String>,
    openid_token: Option<OpenIdToken>,
    member: Option<MemberBody>,
    delay_id: Option<String>,
    delay_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacySfuRequest {
    room: Option<String>,
    openid_token: Option<OpenIdToken>,
    device_id: Option<String>,
    delay_id: Option<String>,
    delay_timeout: Option<u64>,
}

async fn get_token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::GetToken, "POST", &uri, &headers, &body) {
        return forced;
    }
    if !shared.lock().get_token_enabled {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let Ok(request) = serde_json::from_slice::<SfuRequest>(&body) else {
        return matrix(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Error decoding JSON");
    };
    // Deprecated fields are accepted and ignored here, as the service does without delegation.
    let _deprecated = (request.delay_id, request.delay_timeout);
    let (Some(room_id), Some(slot_id), Some(openid), Some(member)) =
        (request.room_id, request.slot_id, request.openid_token, request.member)
    else {
        return matrix(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            "The request body is missing `room_id`, `slot_id`, `openid_token` or `member`",
        );
    };
    let (Some(member_id), Some(claimed_user), Some(claimed_device)) =
        (member.id, member.claimed_user_id, member.claimed_device_id)
    else {
        return matrix(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            "The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`",
        );
    };
    if room_id.is_empty() || slot_id.is_empty() {
        return matrix(StatusCode::BAD_REQUEST, "M_BAD_JSON", "The request body `room_id` or `slot_id` is empty");
    }
    let subject = match shared.validate(&openid) {
        Ok(subject) => subject,
        Err(response) => return response,
    };
    if subject != claimed_user {
        return matrix(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", "The request could not be authorised.");
    }
    let identity = hashed(&[&subject, &claimed_device, &member_id]);
    let room = hashed(&[&room_id, &slot_id]);
    shared.issue(identity, room, false)
}

async fn sfu_get(
    State(shared): State<Shared>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::SfuGet, "POST", &uri, &headers, &body) {
        return forced;
    }
    let Ok(request) = serde_json::from_slice::<LegacySfuRequest>(&body) else {
        return matrix(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Error decoding JSON");
    };
    let _deprecated = (request.delay_id, request.delay_timeout);
    let (Some(room), Some(openid), Some(device_id)) = (request.room, request.openid_token, request.device_id) else {
        return matrix(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            "The request body is missing `room`, `openid_token` or `device_id`",
        );
    };
    if room.is_empty() || device_id.is_empty() {
        return matrix(StatusCode::BAD_REQUEST, "M_BAD_JSON", "The request body `room` or `device_id` is empty");
    }
    let subject = match shared.validate(&openid) {
        Ok(subject) => subject,
        Err(response) => return response,
    };
    let identity = format!("{subject}:{device_id}");
    let room = hashed(&[&room, "m.call#ROOM"]);
    shared.issue(identity, room, true)
}

impl Shared {
    /// The OpenID check the service does through the federation `userinfo` call.
    fn validate(&self, openid: &OpenIdToken) -> Result<String, Response> {
        let refuse = || matrix(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", "The request could not be authorised.");
        let hub = self.lock();
        let (Some(token), Some(server_name)) = (&openid.access_token, &openid.matrix_server_name) else {
            return Err(matrix(StatusCode::BAD_REQUEST, "M_BAD_JSON", "The request body `openid_token` is incomplete"));
        };
        if openid.token_type.as_deref().is_some_and(|kind| kind != "Bearer") || openid.expires_in == Some(0) {
            return Err(refuse());
        }
        if *server_name != hub.server_name {
            return Err(refuse());
        }
        match hub.openid.get(token) {
            Some(grant) if grant.expires > Instant::now() => Ok(grant.user_id.clone()),
            _ => Err(refuse()),
        }
    }

    fn issue(&self, identity: String, room: String, legacy: bool) -> Response {
        let jwt = self.keys.mint(&room, &identity, "", TOKEN_TTL, |grants| {
            grants.room_create = false;
            grants.can_publish_data = None;
            grants.can_update_own_metadata = Some(true);
        });
        self.lock().issued.push(Issued { identity, room, legacy });
        cors(axum::Json(serde_json::json!({ "url": self.keys.url, "jwt": jwt })).into_response())
    }
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

async fn preflight(method: Method) -> Response {
    let mut response = StatusCode::OK.into_response();
    if method == Method::OPTIONS {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, header::HeaderValue::from_static("POST"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::HeaderValue::from_static(
                "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization",
            ),
        );
    }
    cors(response)
}

fn cors(mut response: Response) -> Response {
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, header::HeaderValue::from_static("*"));
    response
}

/// `unpaddedBase64(sha256(json.Marshal([]string{…})))` from `helper.go`.
pub fn hashed(parts: &[&str]) -> String {
    let digest = Sha256::digest(go_json_array(parts).as_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
}

/// Go's `json.Marshal` of a string slice: compact, and HTML-safe (`<`, `>`, `&`, U+2028 and
/// U+2029 escaped), which serde_json is not.
fn go_json_array(parts: &[&str]) -> String {
    let quoted: Vec<String> = parts
        .iter()
        .map(|part| {
            serde_json::Value::String((*part).to_string())
                .to_string()
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026")
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029")
        })
        .collect();
    format!("[{}]", quoted.join(","))
}

fn matrix(status: StatusCode, errcode: &str, error: &str) -> Response {
    cors((status, axum::Json(serde_json::json!({ "errcode": errcode, "error": error }))).into_response())
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
    fn go_json_escapes_html_characters() {
        assert_eq!(go_json_array(&["!a:b", "m.call#"]), r#"["!a:b","m.call#"]"#);
        assert_eq!(go_json_array(&["<&>"]), r#"["\u003c\u0026\u003e"]"#);
    }
}
