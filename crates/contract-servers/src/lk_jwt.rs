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
//! Layout: this file holds the shared state, the [`Handle`] and [`start`]; `homeserver` serves
//! the homeserver's endpoints; `service` the service's, and what it does with a request once
//! decoded (OpenID check, delegation, `CreateRoom`, minting); `requests` decodes and validates its
//! request bodies as Go does; `responses` renders Go's and Matrix's answers.
//!
//! `start(keys, server_name) -> LkJwt { homeserver, service, handle }`.

// Helpers return the finished HTTP answer as their error, as axum handlers do; boxing it would
// only add noise to a test server.
#![allow(clippy::result_large_err)]

mod homeserver;
mod requests;
mod responses;
mod service;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::{any, get, post};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::{LivekitKeys, Running, serve};
use homeserver::{request_openid, userinfo, well_known};
use responses::{go_not_found, raw};
use service::{delegate_delayed_leave, get_token, healthz, sfu_get};

/// Where deployments usually mount the service.
const SERVICE_PREFIX: &str = "/livekit/jwt";

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
