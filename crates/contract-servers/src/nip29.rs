//! A NIP-29 relay's LiveKit endpoints (`shared/CONTROL_PLANES.md` §4) as the reference relay
//! serves them: **fiatjaf/pyramid @ d15b6d9** (`groups/livekit.go`, `groups/handler.go`, and the
//! setup redirect of `main.go`).
//!
//! * Unless the relay is set up ([`Handle::set_needs_setup`]), every path answers 302 →
//!   `/setup/domain`, which is a 200 HTML page.
//! * `/.well-known/nip29/livekit`, any method → 204 when LiveKit URL, key and secret are
//!   configured, else 404; both with an empty body.
//! * `/.well-known/nip29/livekit/{group}`, checked in pyramid's order: a CORS preflight → 204;
//!   not `GET` → 405 `method not allowed`; unknown group → 404 `404 page not found` (before
//!   auth); then `Authorization: Nostr <std-base64 event>`: 401 `authorization header required`,
//!   `invalid authorization header format`, `invalid base64 encoding`, `invalid event json`,
//!   `invalid event signature` (BIP-340 over the recomputed NIP-01 id; the `id` field is not
//!   read), `invalid event kind` (27235), `invalid u tag`. `u` must be exactly
//!   `<scheme><domain>/.well-known/nip29/livekit/<decoded group id>`, with the relay's own
//!   domain ([`Handle::set_domain`]) and pyramid's scheme rule (`http://` only for domains
//!   starting with `127.0.0.1`, `0.0.0.0` or `localhost`, or ending in `onion` or `i2p`). No
//!   `method` tag and no `created_at` window are checked: pyramid checks neither.
//! * Membership before the `livekit` flag: a group member, or a relay member in a group that is
//!   not `restricted`, gets a full token; anyone else gets 403 `not allowed to access livekit
//!   for this group` in a `private` group and a listen-only token otherwise (`closed` plays no
//!   part). Then 403 `livekit not enabled for this group` for groups without `livekit`.
//! * Before the first token of a group, the relay creates the room on the real LiveKit server
//!   (`POST …/twirp/livekit.RoomService/CreateRoom`, 200 or 409 is fine) and remembers it;
//!   failing that → 500 `failed to ensure livekit room: <error>`, Go's error text where it can
//!   be imitated (`Post "<url>": dial tcp <addr>: connect: connection refused`,
//!   `failed to create room: 401 Unauthorized`, or `unsupported protocol scheme ""` when LiveKit
//!   is not configured, which this endpoint does not check beforehand).
//! * Tokens: identity `<hex pubkey>:<3 base64url chars>` (Go's `RandomString(2)`), room = group
//!   id, 6 h (Go SDK default), grants `{roomJoin, room}` plus `canPublish: false,
//!   canPublishData: false` for listeners. Answer `{"server_url", "participant_token"}\n` (Go's
//!   `json.Encoder`), or `{url, token}` after [`Handle::set_legacy_shape`] (not pyramid's: another
//!   relay's older shape). `Access-Control-Allow-Origin: *` when the request has an `Origin`.
//!
//! `start(keys) -> (Running, Handle)`; the [`Handle`] sets up groups and members, forces the next
//! answer ([`Handle::fail_next`]) and shows what arrived ([`Handle::requests`],
//! [`Handle::issued`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine;
use k256::schnorr::{Signature, VerifyingKey};
use livekit_api::access_token::{AccessToken, VideoGrants};
use sha2::{Digest, Sha256};

use crate::{LivekitKeys, Running, serve_on};

/// Go SDK default token validity (pyramid never calls `SetValidFor`).
const TOKEN_TTL: Duration = Duration::from_secs(6 * 60 * 60);
const TOKEN_PATH: &str = "/.well-known/nip29/livekit/";
/// Go's `http.NotFound` text.
const NOT_FOUND: &str = "404 page not found";

/// A group on the relay: the bare tags of its kind-39000 metadata event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// `["private"]`: non-members are refused instead of getting listen-only tokens.
    pub private: bool,
    /// `["restricted"]`: relay members are not taken for group members.
    pub restricted: bool,
    /// `["closed"]`: joining the group needs an invite. No effect on LiveKit tokens.
    pub closed: bool,
    /// `["livekit"]`: the group has an audio/video space.
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
    /// pyramid's `Settings.Domain`: `host[:port]`, what `u` is rebuilt from.
    domain: String,
    needs_setup: bool,
    livekit_configured: bool,
    legacy_shape: bool,
    groups: HashMap<String, Group>,
    members: HashMap<String, HashSet<String>>,
    relay_members: HashSet<String>,
    /// pyramid's `livekitRooms`: groups whose room was created, never cleared.
    rooms_created: HashSet<String>,
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

    /// Adds `pubkey` (lowercase hex) to `group`'s members (any role).
    pub fn add_member(&self, group: &str, pubkey: &str) {
        self.lock().members.entry(group.to_string()).or_default().insert(pubkey.to_string());
    }

    /// Makes `pubkey` a member of the relay itself (pyramid's invite tree).
    pub fn add_relay_member(&self, pubkey: &str) {
        self.lock().relay_members.insert(pubkey.to_string());
    }

    /// The relay's configured domain (`host[:port]`); by default the address it listens on.
    pub fn set_domain(&self, domain: &str) {
        self.lock().domain = domain.to_string();
    }

    /// The domain `u` is checked against.
    pub fn domain(&self) -> String {
        self.lock().domain.clone()
    }

    /// Whether the relay has LiveKit URL, key and secret: the probe says 404 without, and the
    /// first token of a group fails at room creation.
    pub fn set_livekit_configured(&self, configured: bool) {
        self.lock().livekit_configured = configured;
    }

    /// A relay whose owner has not finished the setup pages: everything redirects there.
    pub fn set_needs_setup(&self, needs_setup: bool) {
        self.lock().needs_setup = needs_setup;
    }

    /// Answer `{url, token}` instead of `{server_url, participant_token}`.
    pub fn set_legacy_shape(&self, legacy: bool) {
        self.lock().legacy_shape = legacy;
    }

    /// The next token request gets `status` with `body` before any check (JSON if it starts
    /// with `{`, HTML if with `<`, else plain text).
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

/// Starts the relay on 127.0.0.1, set up, with LiveKit configured and no groups.
pub async fn start(keys: LivekitKeys) -> std::io::Result<(Running, Handle)> {
    start_on(keys, IpAddr::V4(Ipv4Addr::LOCALHOST)).await
}

/// Starts the relay on `ip` (a loopback address such as 127.0.0.2 stands for a relay on the
/// LAN: pyramid's scheme rule makes it expect `https://` in `u`). Its domain is the address it
/// listens on.
pub async fn start_on(keys: LivekitKeys, ip: IpAddr) -> std::io::Result<(Running, Handle)> {
    let state = Arc::new(Mutex::new(Relay { livekit_configured: true, ..Relay::default() }));
    let shared = Shared { keys, state: state.clone(), http: livekit_http() };
    let router = Router::new()
        .route("/.well-known/nip29/livekit", any(probe))
        .route("/.well-known/nip29/livekit/{group}", any(token))
        .route("/setup/domain", get(setup_page))
        .fallback(not_found)
        .with_state(shared);
    let running = serve_on(router, ip).await?;
    let handle = Handle { state };
    handle.set_domain(&running.address.to_string());
    Ok((running, handle))
}

#[derive(Clone)]
struct Shared {
    keys: LivekitKeys,
    state: Arc<Mutex<Relay>>,
    /// pyramid's `livekitHTTPClient`.
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Relay> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Like Go's `&http.Client{}`: no timeout, so a hanging LiveKit hangs the request.
fn livekit_http() -> reqwest::Client {
    // Built into a process whose reqwest has `rustls-no-provider` (the control plane's choice),
    // the client panics without an installed provider. Another thread may install one between
    // the check and the call; either way one is installed.
    if rustls::crypto::CryptoProvider::get_default().is_none()
        && rustls::crypto::ring::default_provider().install_default().is_err()
    {
        tracing::debug!("TLS crypto provider was installed concurrently");
    }
    reqwest::Client::builder()
        .build()
        // Invariant: a default client builds once a crypto provider is installed (above).
        .expect("building the LiveKit HTTP client")
}

/// `setupCheckMiddleware`: a relay without a domain sends every page to its setup. The request
/// is recorded when it is redirected.
fn setup_redirect(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let mut state = shared.lock();
    if !state.needs_setup {
        return None;
    }
    state.requests.push(seen(method, uri, headers, None));
    // Go's `http.Redirect` body for GET.
    let body = "<a href=\"/setup/domain\">Found</a>.\n\n";
    Some(
        (
            StatusCode::FOUND,
            [(header::LOCATION, "/setup/domain"), (header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

async fn setup_page(State(shared): State<Shared>, method: Method, headers: HeaderMap, uri: Uri) -> Response {
    shared.lock().requests.push(seen(&method, &uri, &headers, None));
    let page = "<!DOCTYPE html><html><head><title>pyramid setup</title></head>\
                <body><form method=\"post\"><input name=\"domain\"></form></body></html>";
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

async fn not_found(State(shared): State<Shared>, method: Method, headers: HeaderMap, uri: Uri) -> Response {
    setup_redirect(&shared, &method, &uri, &headers).unwrap_or_else(|| text(StatusCode::NOT_FOUND, NOT_FOUND))
}

/// `livekitStatusHandler`: any method, status only.
async fn probe(State(shared): State<Shared>, method: Method, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(redirect) = setup_redirect(&shared, &method, &uri, &headers) {
        return redirect;
    }
    let configured = {
        let mut state = shared.lock();
        state.requests.push(seen(&method, &uri, &headers, None));
        state.livekit_configured
    };
    let status = if configured { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND };
    with_cors(&headers, status.into_response())
}

async fn token(
    State(shared): State<Shared>,
    method: Method,
    Path(group_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some(redirect) = setup_redirect(&shared, &method, &uri, &headers) {
        return redirect;
    }
    let answer = match check(&shared, &method, &group_id, &headers, &uri) {
        Checked::Passed { pubkey, read_only } => issue(&shared, &group_id, pubkey, read_only).await,
        Checked::Answer(response) => response,
    };
    with_cors(&headers, answer)
}

/// The checks' outcome: go on to the room and the token, or answer now.
enum Checked {
    Passed { pubkey: String, read_only: bool },
    Answer(Response),
}

/// `livekitAuthHandler` up to room creation, in pyramid's order.
fn check(shared: &Shared, method: &Method, group_id: &str, headers: &HeaderMap, uri: &Uri) -> Checked {
    let decoded = decode_header(headers);
    let mut state = shared.lock();
    state.requests.push(seen(method, uri, headers, decoded.as_ref().ok().cloned()));
    if method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Checked::Answer(preflight(headers));
    }
    if let Some((status, body)) = state.fail_next.take() {
        return Checked::Answer(raw(status, &body));
    }
    if method != Method::GET {
        return Checked::Answer(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let Some(group) = state.groups.get(group_id).cloned() else {
        return Checked::Answer(text(StatusCode::NOT_FOUND, NOT_FOUND));
    };
    let expected_u = format!("{}{}{TOKEN_PATH}{group_id}", http_scheme(&state.domain), state.domain);
    let pubkey = match decoded.and_then(|event| verify(&event, &expected_u)) {
        Ok(pubkey) => pubkey,
        Err(message) => return Checked::Answer(text(StatusCode::UNAUTHORIZED, message)),
    };

    let group_member = state.members.get(group_id).is_some_and(|members| members.contains(&pubkey));
    let relay_member = state.relay_members.contains(&pubkey);
    let mut read_only = false;
    if (group.restricted || !relay_member) && !group_member {
        if group.private {
            return Checked::Answer(text(StatusCode::FORBIDDEN, "not allowed to access livekit for this group"));
        }
        read_only = true;
    }
    if !group.livekit {
        return Checked::Answer(text(StatusCode::FORBIDDEN, "livekit not enabled for this group"));
    }
    Checked::Passed { pubkey, read_only }
}

/// `ensureLiveKitRoom`, then the token.
async fn issue(shared: &Shared, group_id: &str, pubkey: String, read_only: bool) -> Response {
    let (created, configured) = {
        let state = shared.lock();
        (state.rooms_created.contains(group_id), state.livekit_configured)
    };
    if !created {
        if let Err(error) = create_room(shared, group_id, configured).await {
            return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("failed to ensure livekit room: {error}"));
        }
        shared.lock().rooms_created.insert(group_id.to_string());
    }

    let mut suffix = [0u8; 2];
    suffix.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..2]);
    let identity = format!("{pubkey}:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(suffix));
    let jwt = shared.keys.mint(group_id, &identity, "", TOKEN_TTL, |grants| {
        // pyramid sets only `roomJoin` and `room`; LiveKit's defaults (publish, subscribe,
        // publish data) apply to members.
        grants.can_publish = None;
        grants.can_subscribe = None;
        grants.can_publish_data = None;
        if read_only {
            grants.can_publish = Some(false);
            grants.can_publish_data = Some(false);
            grants.can_publish_sources = Vec::new();
        }
    });
    let mut state = shared.lock();
    state.issued.push(Issued { identity, room: group_id.to_string(), read_only });
    // A struct, not `json!`, keeps Go's field order (`server_url` first).
    let body = if state.legacy_shape {
        serde_json::to_string(&LegacyAnswer { url: &shared.keys.url, token: &jwt })
    } else {
        serde_json::to_string(&TokenSourceResponse { server_url: &shared.keys.url, participant_token: &jwt })
    };
    match body {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response(),
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

/// pyramid's `TokenSourceResponse`.
#[derive(serde::Serialize)]
struct TokenSourceResponse<'a> {
    server_url: &'a str,
    participant_token: &'a str,
}

#[derive(serde::Serialize)]
struct LegacyAnswer<'a> {
    url: &'a str,
    token: &'a str,
}

/// `POST <LiveKit>/twirp/livekit.RoomService/CreateRoom` with a `roomCreate`/`roomList`/
/// `roomAdmin` token; the error as Go's client and pyramid word it.
async fn create_room(shared: &Shared, group_id: &str, configured: bool) -> Result<(), String> {
    const CREATE_ROOM: &str = "/twirp/livekit.RoomService/CreateRoom";
    if !configured {
        // An empty `LiveKitServerURL` leaves a URL without scheme, which Go's client refuses.
        return Err(format!("Post \"{CREATE_ROOM}\": unsupported protocol scheme \"\""));
    }
    // pyramid replaces the first "ws" of the scheme: ws → http, wss → https.
    let url = format!("{}{CREATE_ROOM}", shared.keys.url.replacen("ws", "http", 1));
    let server_token = AccessToken::with_api_key(&shared.keys.api_key, &shared.keys.api_secret)
        .with_grants(VideoGrants { room_create: true, room_list: true, room_admin: true, ..Default::default() })
        .to_jwt()
        .map_err(|error| format!("signing the server token: {error}"))?;
    let response = shared
        .http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {server_token}"))
        .body(serde_json::json!({ "name": group_id }).to_string())
        .send()
        .await
        .map_err(|error| format!("Post \"{url}\": {}", go_transport_error(&error)))?;
    let status = response.status();
    if status == StatusCode::OK || status == StatusCode::CONFLICT {
        Ok(())
    } else {
        // Go's `resp.Status`, e.g. `401 Unauthorized`.
        Err(format!("failed to create room: {status}"))
    }
}

/// Go's wording for a refused connection (`dial tcp 127.0.0.1:7880: connect: connection
/// refused`); other transport failures keep reqwest's innermost message.
fn go_transport_error(error: &reqwest::Error) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = error;
    loop {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            let address = error.url().and_then(|url| Some(format!("{}:{}", url.host_str()?, url.port()?)));
            return format!("dial tcp {}: connect: connection refused", address.unwrap_or_default());
        }
        match cause.source() {
            Some(source) => cause = source,
            None => return cause.to_string(),
        }
    }
}

/// `global.Settings.HTTPScheme()`.
fn http_scheme(domain: &str) -> &'static str {
    let local = ["127.0.0.1", "0.0.0.0", "localhost"].iter().any(|prefix| domain.starts_with(prefix))
        || ["i2p", "onion"].iter().any(|suffix| domain.ends_with(suffix));
    if local { "http://" } else { "https://" }
}

/// rs/cors `AllowAll` answering a preflight.
fn preflight(headers: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Some(method) = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
    }
    if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    response
}

/// rs/cors `AllowAll` on an actual request: only requests that carry an `Origin` get it.
fn with_cors(headers: &HeaderMap, mut response: Response) -> Response {
    if headers.contains_key(header::ORIGIN) && !response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    response
}

/// The NIP-98 event from `Authorization: Nostr <base64>`, or pyramid's 401 text.
fn decode_header(headers: &HeaderMap) -> Result<serde_json::Value, &'static str> {
    let value = headers.get(header::AUTHORIZATION).ok_or("authorization header required")?;
    if value.is_empty() {
        return Err("authorization header required");
    }
    let value = value.to_str().map_err(|_| "invalid authorization header format")?;
    // `strings.SplitN(h, " ", 2)` and `parts[0] == "Nostr"`, then strict standard base64.
    let encoded = value.strip_prefix("Nostr ").ok_or("invalid authorization header format")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| "invalid base64 encoding")?;
    serde_json::from_slice(&bytes).map_err(|_| "invalid event json")
}

/// Checks the event as pyramid does (signature, kind, `u`); returns the signer's hex pubkey.
fn verify(event: &serde_json::Value, expected_u: &str) -> Result<String, &'static str> {
    let pubkey = event.get("pubkey").and_then(serde_json::Value::as_str).ok_or("invalid event json")?;
    let created_at = event.get("created_at").and_then(serde_json::Value::as_u64).ok_or("invalid event json")?;
    let kind = event.get("kind").and_then(serde_json::Value::as_u64).ok_or("invalid event json")?;
    let tags = event.get("tags").and_then(serde_json::Value::as_array).ok_or("invalid event json")?;
    let content = event.get("content").and_then(serde_json::Value::as_str).ok_or("invalid event json")?;
    let sig = event.get("sig").and_then(serde_json::Value::as_str).ok_or("invalid event json")?;

    // `VerifySignature` hashes the event itself; the `id` field is never compared.
    let canonical = serde_json::json!([0, pubkey, created_at, kind, tags, content]).to_string();
    let digest: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
    let key_bytes = hex::decode(pubkey).map_err(|_| "invalid event signature")?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| "invalid event signature")?;
    let sig_bytes = hex::decode(sig).map_err(|_| "invalid event signature")?;
    let signature = Signature::try_from(sig_bytes.as_slice()).map_err(|_| "invalid event signature")?;
    key.verify_raw(&digest, &signature).map_err(|_| "invalid event signature")?;

    if kind != 27235 {
        return Err("invalid event kind");
    }
    // `Tags.Find("u")`: the first `u` tag with a value.
    let u = tags
        .iter()
        .filter_map(serde_json::Value::as_array)
        .find_map(|tag| (tag.len() >= 2 && tag[0].as_str() == Some("u")).then(|| tag[1].as_str()).flatten());
    if u != Some(expected_u) {
        return Err("invalid u tag");
    }
    Ok(pubkey.to_string())
}

fn seen(method: &Method, uri: &Uri, headers: &HeaderMap, auth_event: Option<serde_json::Value>) -> Seen {
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
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        format!("{message}\n"),
    )
        .into_response()
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
    fn the_scheme_rule_is_pyramids() {
        assert_eq!(http_scheme("127.0.0.1:3334"), "http://");
        assert_eq!(http_scheme("localhost:3334"), "http://");
        assert_eq!(http_scheme("abc.onion"), "http://");
        assert_eq!(http_scheme("127.0.0.2:3334"), "https://", "only 127.0.0.1 counts as local");
        assert_eq!(http_scheme("192.168.1.5:3334"), "https://", "a LAN address is not local to pyramid");
        assert_eq!(http_scheme("relay.example"), "https://");
    }
}
