//! A token endpoint as home-grown LiveKit apps expose it (DESIGN.md §4, last row; the
//! `GET /api/livekit?room=…&username=…` shape of CONTROL_PLANES.md §7, note 1): one route that
//! checks an auth header and answers `{"token": …, "url": …}` with a real LiveKit token.
//!
//! * `GET <path>?room=R&username=U[&name=N]`, or `POST <path>` with JSON `{"room", "username",
//!   "name"?}` (as configured);
//! * a missing or wrong auth header → 401 `{"error":"unauthorized"}`; no room or username → 400
//!   `{"error":"room and username are required"}`; the other method → 405;
//! * the answer puts the token at `token_pointer` and the LiveKit URL at `url_pointer` (nested
//!   objects are created for deeper pointers), so adapters' pointer settings can be tested.
//!
//! ```ignore
//! let (server, handle) = token_endpoint::start(keys, token_endpoint::Config::default()).await?;
//! // profile url_template: format!("{}/api/livekit?room={{room}}&username={{identity}}", server.url())
//! handle.fail_next(503, r#"{"error":"maintenance"}"#);
//! assert_eq!(handle.requests().len(), 1);
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::{LivekitKeys, Running, serve};

/// How the endpoint behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The route, e.g. `/api/livekit`.
    pub path: String,
    /// `GET` (query parameters) or `POST` (JSON body).
    pub method: Method,
    /// The header name and exact value required; `None` leaves the endpoint open.
    pub header: Option<(String, String)>,
    /// Where the token goes in the answer.
    pub token_pointer: String,
    /// Where the LiveKit URL goes; `None` answers without one.
    pub url_pointer: Option<String>,
    /// The URL to answer with; the keys' URL when `None` (may be relative, like disTokoloshe's
    /// `/livekit/`).
    pub url: Option<String>,
    /// Hand out tokens with `roomAdmin` for their room.
    pub admin: bool,
    pub ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/api/livekit".into(),
            method: Method::GET,
            header: None,
            token_pointer: "/token".into(),
            url_pointer: Some("/url".into()),
            url: None,
            admin: false,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Debug)]
struct Canned {
    status: StatusCode,
    body: String,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<Recorded>,
    canned: VecDeque<Canned>,
}

struct Shared {
    keys: LivekitKeys,
    config: Config,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a push or pop; a poisoned lock still holds consistent data.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Test-side access to a running endpoint.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The next request gets `status` with `body` (JSON, HTML, anything) instead of a token.
    pub fn fail_next(&self, status: u16, body: &str) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.shared.lock().canned.push_back(Canned { status, body: body.to_string() });
    }

    /// The next request gets 200 with `body` (malformed answers).
    pub fn answer_next(&self, body: &str) {
        self.fail_next(200, body);
    }
}

/// Starts the endpoint on a fresh loopback port. Call inside a tokio runtime.
pub async fn start(keys: LivekitKeys, config: Config) -> std::io::Result<(Running, Handle)> {
    let path = config.path.clone();
    let shared = Arc::new(Shared { keys, config, inner: Mutex::new(Inner::default()) });
    let router = Router::new().route(&path, any(token)).with_state(Arc::clone(&shared));
    let running = serve(router).await?;
    Ok((running, Handle { shared }))
}

async fn token(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let body_text = String::from_utf8_lossy(&body).to_string();
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: body_text.clone(),
    };
    let canned = {
        let mut inner = shared.lock();
        inner.requests.push(recorded);
        inner.canned.pop_front()
    };
    if let Some(canned) = canned {
        let content_type =
            if canned.body.trim_start().starts_with('<') { "text/html; charset=utf-8" } else { "application/json" };
        return (canned.status, [(header::CONTENT_TYPE, content_type)], canned.body).into_response();
    }
    let config = &shared.config;
    if method != config.method {
        return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    if let Some((name, value)) = &config.header
        && headers.get(name.as_str()).and_then(|given| given.to_str().ok()) != Some(value.as_str())
    {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let fields: HashMap<String, String> = if method == Method::POST {
        match serde_json::from_str::<Value>(&body_text) {
            Ok(Value::Object(object)) => object
                .into_iter()
                .filter_map(|(key, value)| value.as_str().map(|text| (key, text.to_string())))
                .collect(),
            _ => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        }
    } else {
        query
    };
    let (Some(room), Some(username)) =
        (fields.get("room").filter(|room| !room.is_empty()), fields.get("username").filter(|name| !name.is_empty()))
    else {
        return error(StatusCode::BAD_REQUEST, "room and username are required");
    };
    let name = fields.get("name").filter(|name| !name.is_empty()).unwrap_or(username);
    let jwt = shared.keys.mint(room, username, name, config.ttl, |grants| grants.room_admin = config.admin);
    let mut answer = json!({});
    put(&mut answer, &config.token_pointer, Value::String(jwt));
    if let Some(pointer) = &config.url_pointer {
        let url = config.url.clone().unwrap_or_else(|| shared.keys.url.clone());
        put(&mut answer, pointer, Value::String(url));
    }
    (StatusCode::OK, axum::Json(answer)).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Sets `value` at JSON pointer `pointer`, creating objects on the way.
fn put(target: &mut Value, pointer: &str, value: Value) {
    let mut current = target;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (index, part) in parts.iter().enumerate() {
        let key = part.replace("~1", "/").replace("~0", "~");
        if !current.is_object() {
            *current = json!({});
        }
        let Value::Object(object) = current else { return };
        if index + 1 == parts.len() {
            object.insert(key, value);
            return;
        }
        current = object.entry(key).or_insert_with(|| json!({}));
    }
}
