//! A Matrix homeserver's OpenID surface and element-hq/lk-jwt-service
//! (`shared/CONTROL_PLANES.md` §3), as two servers sharing one state.
//!
//! Mirrors element-hq/lk-jwt-service v0.5.0-16-ga375b13 (`a375b130`, `handler.go`,
//! `requests.go`, `helper.go`); the homeserver side follows Synapse's `rest/client/openid.py`.
//!
//! Homeserver (`LkJwt::homeserver`):
//! * `GET /.well-known/matrix/client` → `m.homeserver` and `org.matrix.msc4143.rtc_foci` with
//!   the service URL (`<service>/livekit/jwt`, the usual reverse-proxy mount);
//! * `POST /_matrix/client/v3/user/{userId}/openid/request_token` with `Authorization: Bearer
//!   <access token>` → `{access_token, token_type: "Bearer", matrix_server_name, expires_in:
//!   3600}`; 401 `M_MISSING_TOKEN` / `M_UNKNOWN_TOKEN`, then 403 `M_FORBIDDEN` for another user's
//!   id, then 400 `M_NOT_JSON` for a body that is not JSON;
//! * `GET /_matrix/federation/v1/openid/userinfo?access_token=` → `{sub}` (the service checks
//!   tokens in-process through the shared state, as if it had called this).
//!
//! Service (`LkJwt::service`, under `/livekit/jwt`), in the real order:
//! * every response of `/get_token`, `/sfu/get` and `/delegate_delayed_leave` carries
//!   `corsJSON`'s four headers; `OPTIONS` → 200 empty; any other method but `POST` → 405 empty;
//! * the body is decoded as Go's `encoding/json` does with `DisallowUnknownFields`: one value
//!   (trailing bytes ignored), field names matched case-insensitively, `null` and missing fields
//!   left at Go's zero value (`""`, `0`), integers signed; anything else → 400 `M_NOT_JSON`
//!   "Error reading request";
//! * `Validate()` (400 `M_BAD_JSON`, texts from `requests.go`): `room_id`/`slot_id`, then
//!   `member`, then `openid_token`, then a half-given `delay_id`/`delay_timeout` pair; the legacy
//!   `/sfu/get` checks `room`, then the OpenID token, then the pair (`device_id` is not checked);
//! * the OpenID token is looked up on its `matrix_server_name` (401 `M_UNAUTHORIZED` "The request
//!   could not be authorised." for any failure, and for `claimed_user_id` ≠ the token's owner);
//!   `token_type` and `expires_in` are not looked at;
//! * delegation (`delay_id` given) for a homeserver not in [`Handle::set_full_access`] → 400
//!   `M_BAD_JSON`; for a full-access one the homeserver's client-server API must resolve (400
//!   "Unable to resolve client-server API"); full-access requests make LiveKit create the room
//!   (`CreateRoom`, empty timeout 300 s, departure timeout 20 s; 500 "Unable to create room on
//!   SFU" if LiveKit fails — see [`Handle::set_create_rooms`]);
//! * success: `{"url","jwt"}` + newline; identities and room names are unpadded standard base64
//!   of SHA-256 over Go's `json.Marshal` of the string arrays in `helper.go` (legacy: identity
//!   `mxid:device`, slot `m.call#ROOM`);
//! * `POST /delegate_delayed_leave`: the same body with a mandatory delay pair (a positive
//!   `delay_timeout`), 403 `M_FORBIDDEN` for a homeserver without full access, → `{}`. The delegation is
//!   recorded ([`Handle::delegations`]); the job that later restarts and sends the delayed event
//!   on the homeserver is not simulated;
//! * `GET|HEAD /healthz` → 200, other methods 405; unknown paths → Go's `404 page not found`.
//!   `/sfu_webhook` (LiveKit → service) is not served.
//!
//! Tokens: 1 h, `{roomJoin, canPublish, canSubscribe, canUpdateOwnMetadata}` (`roomCreate: false`
//! is left out as Go's `omitempty` does), no name, no `roomAdmin`.
//! [`Handle::set_get_token_enabled`]`(false)` makes `/get_token` 404 like a pre-Matrix-2.0
//! deployment.
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
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{LivekitKeys, Running, serve};

/// `getJoinToken`'s validity.
const TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Where deployments usually mount the service.
const SERVICE_PREFIX: &str = "/livekit/jwt";
/// `CreateLiveKitRoom`: keep a room nobody joined for five minutes, and a left one for 20 s.
const EMPTY_TIMEOUT_SECS: u32 = 5 * 60;
const DEPARTURE_TIMEOUT_SECS: u32 = 20;
/// Synapse's `EXPIRES_MS` / 1000.
const OPENID_EXPIRES_IN: u64 = 3600;
const UNAUTHORISED: &str = "The request could not be authorised.";
const NOT_FULL_ACCESS: &str = "Delegation of delayed events is only supported for full access users";

/// Which endpoint a forced failure or a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    WellKnown,
    OpenId,
    GetToken,
    SfuGet,
    DelegateDelayedLeave,
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

/// A delayed leave event the service took over (from a token request or
/// `/delegate_delayed_leave`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub server_name: String,
    pub delay_id: String,
    /// Milliseconds, as sent.
    pub delay_timeout: i64,
    /// The LiveKit room and identity the service watches.
    pub room: String,
    pub identity: String,
}

struct OpenIdGrant {
    user_id: String,
    expires: Instant,
}

struct Hub {
    server_name: String,
    service_url: String,
    homeserver_url: String,
    /// access token → user id
    users: HashMap<String, String>,
    openid: HashMap<String, OpenIdGrant>,
    get_token_enabled: bool,
    /// `LIVEKIT_FULL_ACCESS_HOMESERVERS`.
    full_access: Vec<String>,
    create_rooms: bool,
    well_known_override: Option<serde_json::Value>,
    requests: Vec<Seen>,
    issued: Vec<Issued>,
    delegations: Vec<Delegation>,
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

    /// `LIVEKIT_FULL_ACCESS_HOMESERVERS` (`["*"]` alone means every server). The service refuses
    /// to start without it, and a deployment lists its own homeserver, so the default is
    /// `[server_name]`.
    pub fn set_full_access(&self, servers: &[&str]) {
        self.lock().full_access = servers.iter().map(|server| server.to_string()).collect();
    }

    /// Whether full-access requests really call LiveKit's `CreateRoom` (default `true`). Tests
    /// whose keys point at no LiveKit server turn it off; the real service would then answer 500.
    pub fn set_create_rooms(&self, create: bool) {
        self.lock().create_rooms = create;
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

    pub fn delegations(&self) -> Vec<Delegation> {
        self.lock().delegations.clone()
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
/// mints tokens with `keys`; `/get_token` is enabled, `server_name` has full access, and no user
/// exists yet.
pub async fn start(keys: LivekitKeys, server_name: &str) -> std::io::Result<LkJwt> {
    let hub = Arc::new(Mutex::new(Hub {
        server_name: server_name.to_string(),
        service_url: String::new(),
        homeserver_url: String::new(),
        users: HashMap::new(),
        openid: HashMap::new(),
        get_token_enabled: true,
        full_access: vec![server_name.to_string()],
        create_rooms: true,
        well_known_override: None,
        requests: Vec::new(),
        issued: Vec::new(),
        delegations: Vec::new(),
        fail_next: HashMap::new(),
    }));
    let shared = Shared { keys, hub: hub.clone() };
    let service_routes = Router::new()
        .route("/get_token", any(get_token))
        .route("/sfu/get", any(sfu_get))
        .route("/delegate_delayed_leave", any(delegate_delayed_leave))
        .route("/healthz", any(healthz))
        .fallback(go_not_found)
        .with_state(shared.clone());
    let service = serve(Router::new().nest(SERVICE_PREFIX, service_routes).fallback(go_not_found)).await?;
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

/// The well-known document: the override, or the default advertising both servers.
fn well_known_document(hub: &Hub) -> serde_json::Value {
    hub.well_known_override.clone().unwrap_or_else(|| {
        serde_json::json!({
            "m.homeserver": { "base_url": hub.homeserver_url },
            "org.matrix.msc4143.rtc_foci": [
                { "type": "nextgen_new_foci_type", "props_for_nextgen_foci": "val" },
                { "type": "livekit", "livekit_service_url": hub.service_url },
            ],
        })
    })
}

async fn well_known(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::WellKnown, "GET", &uri, &headers, b"") {
        return forced;
    }
    let document = well_known_document(&shared.lock());
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
        return matrix(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing access token.");
    };
    let mut hub = shared.lock();
    let Some(owner) = hub.users.get(token).cloned() else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed.", "soft_logout": false,
            })),
        )
            .into_response();
    };
    if owner != user_id {
        return matrix(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Cannot request tokens for other users.");
    }
    // `parse_json_object_from_request`: the body must be a JSON object, its contents are ignored.
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return matrix(StatusCode::BAD_REQUEST, "M_BAD_JSON", "Content must be a JSON object."),
        Err(_) => return matrix(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Content not JSON."),
    }
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    hub.openid.insert(
        access_token.clone(),
        OpenIdGrant { user_id: owner, expires: Instant::now() + Duration::from_secs(OPENID_EXPIRES_IN) },
    );
    axum::Json(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "matrix_server_name": hub.server_name,
        "expires_in": OPENID_EXPIRES_IN,
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

// ---- The service's request types (`requests.go`), decoded the way Go's encoding/json does. ----

/// A field of a Go struct: its JSON name, and its own fields when it is a struct.
struct GoField {
    name: &'static str,
    nested: Option<&'static [GoField]>,
}

const fn leaf(name: &'static str) -> GoField {
    GoField { name, nested: None }
}

const OPENID_FIELDS: &[GoField] =
    &[leaf("access_token"), leaf("token_type"), leaf("matrix_server_name"), leaf("expires_in")];
const MEMBER_FIELDS: &[GoField] = &[leaf("id"), leaf("claimed_user_id"), leaf("claimed_device_id")];
/// `SFURequest` and `DelegateDelayedLeaveRequest` have the same fields.
const SFU_FIELDS: &[GoField] = &[
    leaf("room_id"),
    leaf("slot_id"),
    GoField { name: "openid_token", nested: Some(OPENID_FIELDS) },
    GoField { name: "member", nested: Some(MEMBER_FIELDS) },
    leaf("delay_id"),
    leaf("delay_timeout"),
    leaf("delay_cs_api_url"),
];
const LEGACY_FIELDS: &[GoField] = &[
    leaf("room"),
    GoField { name: "openid_token", nested: Some(OPENID_FIELDS) },
    leaf("device_id"),
    leaf("delay_id"),
    leaf("delay_timeout"),
    leaf("delay_cs_api_url"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenIdToken {
    access_token: String,
    // Decoded (a wrong type is an error) but never looked at, as in the service.
    #[allow(dead_code)]
    token_type: String,
    matrix_server_name: String,
    #[allow(dead_code)]
    expires_in: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Member {
    id: String,
    claimed_user_id: String,
    claimed_device_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SfuRequest {
    room_id: String,
    slot_id: String,
    openid_token: OpenIdToken,
    member: Member,
    delay_id: String,
    delay_timeout: i64,
    /// Deprecated and ignored by the service.
    #[allow(dead_code)]
    delay_cs_api_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LegacySfuRequest {
    room: String,
    openid_token: OpenIdToken,
    device_id: String,
    delay_id: String,
    delay_timeout: i64,
    #[allow(dead_code)]
    delay_cs_api_url: String,
}

/// `json.NewDecoder(body)` + `DisallowUnknownFields()` + `Decode(&request)`: reads the first
/// JSON value only, matches field names exactly or else case-insensitively, rejects unknown
/// fields, leaves `null` and missing fields at their zero value, and fails on a wrong type.
fn go_decode<T: DeserializeOwned + Default>(body: &[u8], fields: &[GoField]) -> Result<T, ()> {
    let value = serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .next()
        .ok_or(())?
        .map_err(|_| ())?;
    if value.is_null() {
        // A top-level `null` decodes into nothing and leaves the struct as it was.
        return Ok(T::default());
    }
    serde_json::from_value(go_fields(value, fields)?).map_err(|_| ())
}

/// One struct level of [`go_decode`]: each key mapped onto its field's canonical name.
fn go_fields(value: serde_json::Value, fields: &[GoField]) -> Result<serde_json::Value, ()> {
    let serde_json::Value::Object(object) = value else { return Err(()) };
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        let field = fields
            .iter()
            .find(|field| field.name == key)
            .or_else(|| fields.iter().find(|field| field.name.eq_ignore_ascii_case(&key)))
            .ok_or(())?;
        if value.is_null() {
            continue;
        }
        let value = match field.nested {
            Some(nested) => go_fields(value, nested)?,
            None => value,
        };
        out.insert(field.name.to_string(), value);
    }
    Ok(serde_json::Value::Object(out))
}

fn bad_json(error: &str) -> Response {
    matrix(StatusCode::BAD_REQUEST, "M_BAD_JSON", error)
}

/// The delay pair of `requests.go`: both or neither (a non-positive timeout counts as absent).
fn check_delay_pair(delay_id: &str, delay_timeout: i64) -> Result<(), Response> {
    let all = !delay_id.is_empty() && delay_timeout > 0;
    let any = !delay_id.is_empty() || delay_timeout > 0;
    if any && !all { Err(bad_json("The request body is missing `delay_id` or `delay_timeout`")) } else { Ok(()) }
}

impl SfuRequest {
    fn validate(&self) -> Result<(), Response> {
        if self.room_id.is_empty() || self.slot_id.is_empty() {
            return Err(bad_json("The request body is missing `room_id` or `slot_id`"));
        }
        if self.member.id.is_empty()
            || self.member.claimed_user_id.is_empty()
            || self.member.claimed_device_id.is_empty()
        {
            return Err(bad_json(
                "The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`",
            ));
        }
        if self.openid_token.access_token.is_empty() || self.openid_token.matrix_server_name.is_empty() {
            return Err(bad_json(
                "The request body `openid_token` is missing a `access_token` or `matrix_server_name`",
            ));
        }
        check_delay_pair(&self.delay_id, self.delay_timeout)
    }

    /// `DelegateDelayedLeaveRequest.Validate`: its own texts, and the pair is mandatory.
    fn validate_delegation(&self) -> Result<(), Response> {
        if self.room_id.is_empty() || self.slot_id.is_empty() {
            return Err(bad_json("The request body is missing `room_id` or `slot_id`"));
        }
        if self.member.id.is_empty()
            || self.member.claimed_user_id.is_empty()
            || self.member.claimed_device_id.is_empty()
        {
            return Err(bad_json(
                "The request body `member` is missing `id`, `claimed_user_id` or `claimed_device_id`",
            ));
        }
        if self.openid_token.access_token.is_empty() || self.openid_token.matrix_server_name.is_empty() {
            return Err(bad_json("The request body `openid_token` is missing `access_token` or `matrix_server_name`"));
        }
        if self.delay_id.is_empty() || self.delay_timeout <= 0 {
            return Err(bad_json("The request body is missing `delay_id` or `delay_timeout`"));
        }
        Ok(())
    }
}

impl LegacySfuRequest {
    fn validate(&self) -> Result<(), Response> {
        if self.room.is_empty() {
            return Err(bad_json("Missing room parameter"));
        }
        if self.openid_token.access_token.is_empty() || self.openid_token.matrix_server_name.is_empty() {
            return Err(bad_json("Missing OpenID token parameters"));
        }
        check_delay_pair(&self.delay_id, self.delay_timeout)
    }
}

/// What `corsJSON` answers before the handler runs: 200 to a preflight; and the handlers' own
/// 405 (empty) to anything but `POST`. `None` for a `POST`.
fn not_a_post(method: &Method) -> Option<Response> {
    if method == Method::OPTIONS {
        Some(StatusCode::OK.into_response())
    } else if method != Method::POST {
        Some(StatusCode::METHOD_NOT_ALLOWED.into_response())
    } else {
        None
    }
}

async fn get_token(
    State(shared): State<Shared>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::GetToken, method.as_str(), &uri, &headers, &body) {
        return forced;
    }
    if !shared.lock().get_token_enabled {
        return go_not_found().await;
    }
    if let Some(response) = not_a_post(&method) {
        return with_cors_json(response);
    }
    let response = async {
        let request = go_decode::<SfuRequest>(&body, SFU_FIELDS).map_err(|()| not_json())?;
        request.validate()?;
        let subject = shared.verify_openid(&request.openid_token, &request.member.claimed_user_id)?;
        let identity = hashed(&[&subject, &request.member.claimed_device_id, &request.member.id]);
        let room = hashed(&[&request.room_id, &request.slot_id]);
        let delay = (!request.delay_id.is_empty()).then_some((request.delay_id.as_str(), request.delay_timeout));
        shared.process(&request.openid_token.matrix_server_name, identity, room, delay, false).await
    }
    .await;
    with_cors_json(response.unwrap_or_else(|response| response))
}

async fn sfu_get(
    State(shared): State<Shared>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::SfuGet, method.as_str(), &uri, &headers, &body) {
        return forced;
    }
    if let Some(response) = not_a_post(&method) {
        return with_cors_json(response);
    }
    let response = async {
        let request = go_decode::<LegacySfuRequest>(&body, LEGACY_FIELDS).map_err(|()| not_json())?;
        request.validate()?;
        // The legacy endpoint claims no user: only the lookup itself is checked.
        let subject = shared.verify_openid(&request.openid_token, "")?;
        // `device_id` is not validated: an empty one gives the identity `@user:server:`.
        let identity = format!("{subject}:{}", request.device_id);
        let room = hashed(&[&request.room, "m.call#ROOM"]);
        let delay = (!request.delay_id.is_empty()).then_some((request.delay_id.as_str(), request.delay_timeout));
        shared.process(&request.openid_token.matrix_server_name, identity, room, delay, true).await
    }
    .await;
    with_cors_json(response.unwrap_or_else(|response| response))
}

async fn delegate_delayed_leave(
    State(shared): State<Shared>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::DelegateDelayedLeave, method.as_str(), &uri, &headers, &body) {
        return forced;
    }
    if let Some(response) = not_a_post(&method) {
        return with_cors_json(response);
    }
    let response = (|| {
        let request = go_decode::<SfuRequest>(&body, SFU_FIELDS).map_err(|()| not_json())?;
        request.validate_delegation()?;
        let subject = shared.verify_openid(&request.openid_token, &request.member.claimed_user_id)?;
        let server_name = &request.openid_token.matrix_server_name;
        if !shared.full_access(server_name) {
            return Err(matrix(StatusCode::FORBIDDEN, "M_FORBIDDEN", NOT_FULL_ACCESS));
        }
        let identity = hashed(&[&subject, &request.member.claimed_device_id, &request.member.id]);
        let room = hashed(&[&request.room_id, &request.slot_id]);
        shared.resolve_cs_api(server_name)?;
        shared.lock().delegations.push(Delegation {
            server_name: server_name.clone(),
            delay_id: request.delay_id.clone(),
            delay_timeout: request.delay_timeout,
            room,
            identity,
        });
        Ok(go_json(StatusCode::OK, &serde_json::json!({})))
    })();
    with_cors_json(response.unwrap_or_else(|response| response))
}

impl Shared {
    fn full_access(&self, server_name: &str) -> bool {
        let hub = self.lock();
        (hub.full_access.len() == 1 && hub.full_access[0] == "*")
            || hub.full_access.iter().any(|server| server == server_name)
    }

    /// `exchangeOpenIdUserInfo` (the federation `userinfo` lookup on `matrix_server_name`) and
    /// the claimed-user check, both 401 on failure.
    fn verify_openid(&self, openid: &OpenIdToken, claimed_user_id: &str) -> Result<String, Response> {
        let refuse = || matrix(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", UNAUTHORISED);
        let hub = self.lock();
        // Only this homeserver answers federation lookups; any other name fails to resolve.
        if openid.matrix_server_name != hub.server_name {
            return Err(refuse());
        }
        let subject = match hub.openid.get(&openid.access_token) {
            Some(grant) if grant.expires > Instant::now() => grant.user_id.clone(),
            _ => return Err(refuse()),
        };
        if !claimed_user_id.is_empty() && claimed_user_id != subject {
            return Err(refuse());
        }
        Ok(subject)
    }

    /// `resolveCsApiUrl`: `.well-known/matrix/client` of the server name must give a base URL.
    fn resolve_cs_api(&self, server_name: &str) -> Result<String, Response> {
        let hub = self.lock();
        let url = (server_name == hub.server_name)
            .then(|| well_known_document(&hub))
            .and_then(|document| document.pointer("/m.homeserver/base_url")?.as_str().map(String::from))
            .filter(|url| !url.is_empty());
        url.ok_or_else(|| bad_json("Unable to resolve client-server API"))
    }

    /// The tail of `processSFURequest` / `processLegacySFURequest`, from the delegation check on.
    async fn process(
        &self,
        server_name: &str,
        identity: String,
        room: String,
        delay: Option<(&str, i64)>,
        legacy: bool,
    ) -> Result<Response, Response> {
        let full_access = self.full_access(server_name);
        if delay.is_some() && !full_access {
            return Err(bad_json(NOT_FULL_ACCESS));
        }
        let jwt = self.keys.mint(&room, &identity, "", TOKEN_TTL, |grants| {
            grants.room_create = false;
            grants.can_publish_data = None;
            grants.can_update_own_metadata = Some(true);
        });
        if full_access {
            if delay.is_some() {
                self.resolve_cs_api(server_name)?;
            }
            if self.lock().create_rooms {
                self.create_room(&room).await?;
            }
            if let Some((delay_id, delay_timeout)) = delay {
                self.lock().delegations.push(Delegation {
                    server_name: server_name.to_string(),
                    delay_id: delay_id.to_string(),
                    delay_timeout,
                    room: room.clone(),
                    identity: identity.clone(),
                });
            }
        }
        self.lock().issued.push(Issued { identity, room, legacy });
        Ok(go_json(StatusCode::OK, &SfuResponse { url: &self.keys.url, jwt: &jwt }))
    }

    /// `CreateLiveKitRoom` on the keys' LiveKit server.
    async fn create_room(&self, room: &str) -> Result<(), Response> {
        let client = RoomClient::with_api_key(&self.keys.url, &self.keys.api_key, &self.keys.api_secret);
        let options = CreateRoomOptions {
            empty_timeout: EMPTY_TIMEOUT_SECS,
            departure_timeout: DEPARTURE_TIMEOUT_SECS,
            ..CreateRoomOptions::default()
        };
        match client.create_room(room, options).await {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!("lk-jwt contract server: CreateRoom {room} failed: {error}");
                Err(matrix(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Unable to create room on SFU"))
            }
        }
    }
}

/// `SFUResponse`, in Go's field order.
#[derive(Serialize)]
struct SfuResponse<'a> {
    url: &'a str,
    jwt: &'a str,
}

/// `gomatrix.RespError`, in Go's field order.
#[derive(Serialize)]
struct RespError<'a> {
    errcode: &'a str,
    error: &'a str,
}

async fn healthz(method: Method) -> StatusCode {
    if method == Method::GET || method == Method::HEAD { StatusCode::OK } else { StatusCode::METHOD_NOT_ALLOWED }
}

/// Go's `http.NotFound`.
async fn go_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        "404 page not found\n",
    )
        .into_response()
}

fn with_cors_json(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token"),
    );
    response
}

/// `json.NewEncoder(w).Encode(value)`: compact JSON and a newline.
fn go_json(status: StatusCode, value: &impl Serialize) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn not_json() -> Response {
    matrix(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Error reading request")
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

/// A Matrix error: `writeMatrixError` on the service, Synapse's `{errcode, error}` on the
/// homeserver.
fn matrix(status: StatusCode, errcode: &str, error: &str) -> Response {
    go_json(status, &RespError { errcode, error })
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

    #[test]
    fn go_decoding_matches_encoding_json() {
        let decode = |body: &str| go_decode::<SfuRequest>(body.as_bytes(), SFU_FIELDS);
        let request = decode(r#"{"ROOM_ID":"!r:s","Slot_Id":"m.call#","delay_timeout":-5} trailing"#)
            .expect("case-insensitive names, trailing bytes ignored");
        assert_eq!(
            (request.room_id.as_str(), request.slot_id.as_str(), request.delay_timeout),
            ("!r:s", "m.call#", -5)
        );
        let request = decode(r#"{"room_id":null,"member":null,"openid_token":{"expires_in":-1}}"#).expect("nulls");
        assert!(request.room_id.is_empty() && request.member.id.is_empty(), "null leaves the zero value");
        assert!(decode("null").is_ok(), "a top-level null decodes into nothing");
        assert!(decode(r#"{"delay_cs_api_url":"https://x"}"#).is_ok(), "the deprecated field is known");
        for bad in ["", "  ", "[]", r#"{"extra":1}"#, r#"{"member":{"extra":1}}"#, r#"{"room_id":5}"#] {
            assert!(decode(bad).is_err(), "{bad:?} must fail to decode");
        }
        for bad in [r#"{"delay_timeout":1.5}"#, r#"{"delay_timeout":"1"}"#, r#"{"delay_timeout":9223372036854775808}"#]
        {
            assert!(decode(bad).is_err(), "{bad:?} is not a Go int");
        }
    }
}
