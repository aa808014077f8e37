//! A NIP-29 relay's LiveKit endpoints (`shared/CONTROL_PLANES.md` §4), as fiatjaf/pyramid and
//! coracle-social/zooid serve them, with zooid's stricter NIP-98 checks.
//!
//! * `GET /.well-known/nip29/livekit` → 204 when LiveKit is configured, else 404.
//! * `GET /.well-known/nip29/livekit/{group}` with `Authorization: Nostr <base64(event)>`: checks
//!   the signature (BIP-340 over the NIP-01 id), kind 27235, `created_at` within 60 s, the `u` tag
//!   (`http://<Host><path>`, scheme from `X-Forwarded-Proto`) and the `method` tag; 401 with
//!   pyramid's plain-text messages otherwise. Unknown group → 404 `group not found`; group without
//!   LiveKit → 403 `livekit not enabled for this group`; non-member of a private group → 403
//!   `not allowed to access livekit for this group`; non-member of a public group → a read-only
//!   token. Other methods → 405; `OPTIONS` → 204 with CORS.
//! * Tokens: identity `<hex pubkey>:<16 random chars>`, room = group id, 6 h (Go SDK default);
//!   answer `{server_url, participant_token}` (or `{url, token}` after
//!   [`Handle::set_legacy_shape`]).
//!
//! `start(keys) -> (Running, Handle)`; the [`Handle`] sets up groups and members, forces the next
//! answer ([`Handle::fail_next`]) and shows what arrived ([`Handle::requests`],
//! [`Handle::issued`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use k256::schnorr::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{LivekitKeys, Running, serve};

/// NIP-98's suggested window, enforced like zooid.
const CREATED_AT_WINDOW_SECS: u64 = 60;
/// Go SDK default token validity.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 60 * 60);

/// A group on the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Non-members may listen (read-only tokens).
    pub public: bool,
    /// The group's kind-39000 announcement carries `["livekit"]`.
    pub livekit: bool,
}

/// A request as the relay saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lowercase header names.
    pub headers: BTreeMap<String, String>,
    /// The decoded NIP-98 event, when the header held valid base64 JSON.
    pub auth_event: Option<serde_json::Value>,
}

/// A token the relay handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub identity: String,
    pub room: String,
    pub read_only: bool,
}

#[derive(Default)]
struct Relay {
    livekit_configured: bool,
    legacy_shape: bool,
    groups: HashMap<String, Group>,
    members: HashMap<String, HashSet<String>>,
    requests: Vec<Seen>,
    issued: Vec<Issued>,
    fail_next: Option<(u16, String)>,
}

/// Test-side control of the relay.
#[derive(Clone)]
pub struct Handle {
    state: Arc<Mutex<Relay>>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Relay> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add_group(&self, id: &str, group: Group) {
        self.lock().groups.insert(id.to_string(), group);
    }

    /// Adds `pubkey` (lowercase hex) to `group`'s members.
    pub fn add_member(&self, group: &str, pubkey: &str) {
        self.lock().members.entry(group.to_string()).or_default().insert(pubkey.to_string());
    }

    /// Whether the relay has LiveKit URL, key and secret (both endpoints 404 without).
    pub fn set_livekit_configured(&self, configured: bool) {
        self.lock().livekit_configured = configured;
    }

    /// Answer `{url, token}` instead of `{server_url, participant_token}`.
    pub fn set_legacy_shape(&self, legacy: bool) {
        self.lock().legacy_shape = legacy;
    }

    /// The next token request (after its auth passed or not) gets `status` with `body`
    /// (JSON if it starts with `{`, HTML if with `<`, else plain text).
    pub fn fail_next(&self, status: u16, body: &str) {
        self.lock().fail_next = Some((status, body.to_string()));
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.lock().issued.clone()
    }
}

/// Starts the relay with LiveKit configured and no groups.
pub async fn start(keys: LivekitKeys) -> std::io::Result<(Running, Handle)> {
    let state = Arc::new(Mutex::new(Relay { livekit_configured: true, ..Relay::default() }));
    let shared = Shared { keys, state: state.clone() };
    let router = Router::new()
        .route("/.well-known/nip29/livekit", get(probe))
        .route("/.well-known/nip29/livekit/{group}", get(token).options(preflight))
        .with_state(shared);
    Ok((serve(router).await?, Handle { state }))
}

#[derive(Clone)]
struct Shared {
    keys: LivekitKeys,
    state: Arc<Mutex<Relay>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Relay> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn probe(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let mut state = shared.lock();
    state.requests.push(seen("GET", &uri, &headers, None));
    if state.livekit_configured {
        StatusCode::NO_CONTENT.into_response()
    } else {
        text(StatusCode::NOT_FOUND, "404 page not found")
    }
}

async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization"),
        ],
    )
        .into_response()
}

async fn token(State(shared): State<Shared>, Path(group): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let decoded = decode_header(&headers);
    let mut state = shared.lock();
    state.requests.push(seen("GET", &uri, &headers, decoded.as_ref().ok().cloned()));
    if !state.livekit_configured {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    if let Some((status, body)) = state.fail_next.take() {
        return raw(status, &body);
    }
    let event =
        match decoded.and_then(|event| verify(&event, &headers, &uri, &Method::GET).map(|pubkey| (event, pubkey))) {
            Ok((_, pubkey)) => pubkey,
            Err(message) => return text(StatusCode::UNAUTHORIZED, message),
        };
    let Some(info) = state.groups.get(&group).cloned() else {
        return text(StatusCode::NOT_FOUND, "group not found");
    };
    if !info.livekit {
        return text(StatusCode::FORBIDDEN, "livekit not enabled for this group");
    }
    let member = state.members.get(&group).is_some_and(|members| members.contains(&event));
    if !member && !info.public {
        return text(StatusCode::FORBIDDEN, "not allowed to access livekit for this group");
    }
    let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(16).collect();
    let identity = format!("{event}:{suffix}");
    let read_only = !member;
    let jwt = shared.keys.mint(&group, &identity, "", TOKEN_TTL, |grants| {
        if read_only {
            grants.can_publish = Some(false);
            grants.can_publish_data = Some(false);
            grants.can_publish_sources = Vec::new();
        }
    });
    state.issued.push(Issued { identity, room: group.clone(), read_only });
    let body = if state.legacy_shape {
        serde_json::json!({ "url": shared.keys.url, "token": jwt })
    } else {
        serde_json::json!({ "server_url": shared.keys.url, "participant_token": jwt })
    };
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], axum::Json(body)).into_response()
}

/// The NIP-98 event from `Authorization: Nostr <base64>`, or pyramid's 401 text.
fn decode_header(headers: &HeaderMap) -> Result<serde_json::Value, &'static str> {
    let value = headers.get(header::AUTHORIZATION).ok_or("authorization header required")?;
    let value = value.to_str().map_err(|_| "invalid authorization header format")?;
    let encoded = value.strip_prefix("Nostr ").ok_or("invalid authorization header format")?;
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| "invalid base64 encoding")?;
    serde_json::from_slice(&bytes).map_err(|_| "invalid event json")
}

/// Checks the event; returns the signer's hex pubkey.
fn verify(event: &serde_json::Value, headers: &HeaderMap, uri: &Uri, method: &Method) -> Result<String, &'static str> {
    let pubkey = event.get("pubkey").and_then(serde_json::Value::as_str).ok_or("invalid event json")?;
    let created_at = event.get("created_at").and_then(serde_json::Value::as_u64).ok_or("invalid event json")?;
    let kind = event.get("kind").and_then(serde_json::Value::as_u64).ok_or("invalid event json")?;
    let tags = event.get("tags").and_then(serde_json::Value::as_array).ok_or("invalid event json")?;
    let content = event.get("content").and_then(serde_json::Value::as_str).ok_or("invalid event json")?;
    let id = event.get("id").and_then(serde_json::Value::as_str).ok_or("invalid event json")?;
    let sig = event.get("sig").and_then(serde_json::Value::as_str).ok_or("invalid event json")?;

    let canonical = serde_json::json!([0, pubkey, created_at, kind, tags, content]).to_string();
    let digest: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
    if hex::encode(digest) != id {
        return Err("invalid event signature");
    }
    let key_bytes = hex::decode(pubkey).map_err(|_| "invalid event signature")?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| "invalid event signature")?;
    let sig_bytes = hex::decode(sig).map_err(|_| "invalid event signature")?;
    let signature = Signature::try_from(sig_bytes.as_slice()).map_err(|_| "invalid event signature")?;
    key.verify_raw(&digest, &signature).map_err(|_| "invalid event signature")?;

    if kind != 27235 {
        return Err("invalid event kind");
    }
    if now_secs().abs_diff(created_at) > CREATED_AT_WINDOW_SECS {
        return Err("event created_at is too far from now");
    }
    let tag = |name: &str| {
        tags.iter().filter_map(serde_json::Value::as_array).find_map(|tag| {
            (tag.first().and_then(serde_json::Value::as_str) == Some(name))
                .then(|| tag.get(1).and_then(serde_json::Value::as_str))
        })
    };
    let scheme = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()).unwrap_or("http");
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let path_and_query = uri.path_and_query().map(|value| value.as_str()).unwrap_or_else(|| uri.path());
    let expected = format!("{scheme}://{host}{path_and_query}");
    if tag("u").flatten() != Some(expected.as_str()) {
        return Err("invalid u tag");
    }
    if !tag("method").flatten().is_some_and(|value| value.eq_ignore_ascii_case(method.as_str())) {
        return Err("invalid method tag");
    }
    Ok(pubkey.to_string())
}

fn seen(method: &str, uri: &Uri, headers: &HeaderMap, auth_event: Option<serde_json::Value>) -> Seen {
    Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
            .collect(),
        auth_event,
    }
}

/// Go's `http.Error`: plain text with a newline.
fn text(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
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

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default()
}
