//! What runs around the forum's routes, in the order a request meets it (CONTROL_PLANES.md
//! §1.1, §1.5):
//!
//! 1. [`rails_routing`], before routing: a `.json` suffix is Rails' format, not part of the
//!    path, so it is taken off (and noted as [`JsonSuffix`]) for the router to see the route;
//!    leading slashes are squeezed as Rails' router does.
//! 2. [`record`]: names the [`Endpoint`] from the matched route, method and suffix, and records
//!    the request for [`super::Handle::requests`]; what names no endpoint is a 404.
//! 3. [`forced`]: a canned answer queued by [`super::Handle::fail_next`] replaces everything
//!    after it, checks included.
//! 4. [`check_xhr`]: a GET neither `.json` nor asking for JSON gets the HTML app shell.
//! 5. [`authenticate`]: the `User-Api-Key` and its scopes.
//! 6. [`rate_limit`]: the request counts against the key's limits.
//!
//! The key-issuing page sits behind 1–3 only: a browser opens it before there is a key.
//! Handlers then take the key's user with the [`CurrentUser`] extractor.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;

use super::responses::{Refusal, html_shell};
use super::state::{Shared, User};
use super::{Endpoint, SeenRequest};

/// Whether the request's path ended in `.json` (before [`rails_routing`] took it off).
#[derive(Debug, Clone, Copy)]
pub(super) struct JsonSuffix(pub(super) bool);

/// Which endpoint each route is, by method, route pattern and `.json` suffix.
#[derive(Debug, Default)]
pub(super) struct Endpoints(Vec<EndpointRoute>);

#[derive(Debug)]
struct EndpointRoute {
    method: MethodFilter,
    route: &'static str,
    /// Whether the route also answers with a `.json` suffix (the forum's JSON GETs).
    json_suffix: bool,
    endpoint: Endpoint,
}

impl Endpoints {
    pub(super) fn add(&mut self, method: MethodFilter, route: &'static str, json_suffix: bool, endpoint: Endpoint) {
        self.0.push(EndpointRoute { method, route, json_suffix, endpoint });
    }

    pub(super) fn extend(&mut self, other: Endpoints) {
        self.0.extend(other.0);
    }

    fn find(&self, method: &Method, route: &str, json_suffix: bool) -> Option<Endpoint> {
        // A method without a filter (a custom one) is no route's.
        let method = MethodFilter::try_from(method.clone()).ok()?;
        self.0
            .iter()
            .find(|known| known.method == method && known.route == route && (known.json_suffix || !json_suffix))
            .map(|known| known.endpoint)
    }
}

/// Routes the path as Rails does: leading slashes squeezed to one, and a `.json` suffix taken
/// off the last segment (noted as [`JsonSuffix`]). Drops the `Allow` header axum adds when a
/// route has no handler for the method, as Rails' routing error (a 404, [`record`]'s) has none.
pub(super) async fn rails_routing(mut request: Request, next: Next) -> Response {
    let json_suffix = request.uri().path().ends_with(".json");
    if let Some(uri) = routed_uri(request.uri()) {
        *request.uri_mut() = uri;
    }
    request.extensions_mut().insert(JsonSuffix(json_suffix));
    let mut response = next.run(request).await;
    response.headers_mut().remove(header::ALLOW);
    response
}

/// The URI the router should see, if it differs from `uri`. A `.json` suffix comes off only
/// after something in its segment (a bare `.json` segment is the segment).
fn routed_uri(uri: &Uri) -> Option<Uri> {
    let squeezed = uri.path().trim_start_matches('/');
    let path = match squeezed.strip_suffix(".json").filter(|rest| !rest.is_empty() && !rest.ends_with('/')) {
        Some(rest) => format!("/{rest}"),
        None => format!("/{squeezed}"),
    };
    if path == uri.path() {
        return None;
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// [`record`]'s state.
#[derive(Clone)]
pub(super) struct Recorder {
    pub(super) shared: Arc<Shared>,
    pub(super) endpoints: Arc<Endpoints>,
}

/// Names the endpoint, records the request as it arrived (path with its suffix, headers, body)
/// and passes it on with the [`Endpoint`] as an extension; answers 404 for what names none (an
/// unknown path, a method the route lacks, a suffix it does not take).
pub(super) async fn record(State(recorder): State<Recorder>, request: Request, next: Next) -> Response {
    let json_suffix = request.extensions().get::<JsonSuffix>().is_some_and(|suffix| suffix.0);
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|route| recorder.endpoints.find(request.method(), route.as_str(), json_suffix));
    let (parts, body) = request.into_parts();
    // Buffered as axum's `Bytes` extractor does, with its default limit (a 413 beyond it).
    let body = match Bytes::from_request(Request::new(body), &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |original| &original.0);
    let seen = SeenRequest {
        method: parts.method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        endpoint,
    };
    recorder.shared.lock().requests.push(seen);
    let Some(endpoint) = endpoint else { return Refusal::NotFound.into_response() };
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(endpoint);
    next.run(request).await
}

/// Answers with the next [`super::Forced`] queued for the endpoint, if any.
pub(super) async fn forced(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<Endpoint>().copied();
    let forced = endpoint.and_then(|endpoint| shared.lock().forced.get_mut(&endpoint)?.pop_front());
    match forced {
        Some(forced) => forced.into_response(),
        None => next.run(request).await,
    }
}

/// Discourse's `check_xhr`: a GET must say it wants JSON, by the `.json` suffix or the headers.
pub(super) async fn check_xhr(request: Request, next: Next) -> Response {
    let json_suffix = request.extensions().get::<JsonSuffix>().is_some_and(|suffix| suffix.0);
    if request.method() == Method::GET && !json_suffix && !accepts_json(request.headers()) {
        return html_shell();
    }
    next.run(request).await
}

/// `Accept: application/json`, or an XHR.
pub(super) fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
        || headers.get("X-Requested-With").is_some()
}

/// The key a request came with and whose user it is, once [`authenticate`] accepted it.
#[derive(Debug, Clone)]
struct Caller {
    key: String,
    user_id: u64,
}

/// `Auth::DefaultCurrentUserProvider` for user API keys: no key → 403 `not_logged_in`; an
/// unknown key, or one whose scopes do not cover the request → 403 `invalid_access`.
pub(super) async fn authenticate(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let key = request.headers().get("User-Api-Key").and_then(|value| value.to_str().ok()).map(str::trim);
    let Some(key) = key.map(str::to_string) else { return Refusal::NotLoggedIn.into_response() };
    let Some(api_key) = shared.lock().api_keys.get(&key).cloned() else {
        return Refusal::InvalidAccess.into_response();
    };
    let endpoint = request.extensions().get::<Endpoint>().copied();
    // `UserApiKeyScope`: `read` allows GETs, `message_bus` allows polling, `write` everything.
    let allowed = api_key.scopes.iter().any(|scope| match scope.as_str() {
        "write" => true,
        "read" => request.method() == Method::GET,
        "message_bus" => endpoint == Some(Endpoint::Poll),
        _ => false,
    });
    if !allowed {
        return Refusal::InvalidAccess.into_response();
    }
    request.extensions_mut().insert(Caller { key, user_id: api_key.user_id });
    next.run(request).await
}

/// Counts the request against its key's per-minute and per-day limits: 429 when over.
pub(super) async fn rate_limit(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    // Runs inside `authenticate`, which lets no request through without a caller.
    let Some(caller) = request.extensions().get::<Caller>() else { return Refusal::NotLoggedIn.into_response() };
    let counted = shared.lock().rate_limit(&caller.key, Instant::now());
    if let Err((wait_seconds, code)) = counted {
        return Refusal::RateLimited { wait_seconds, code }.into_response();
    }
    next.run(request).await
}

/// The user whose key the request came with: 403 `invalid_access` if the user is gone.
pub(super) struct CurrentUser(pub(super) User);

impl FromRequestParts<Arc<Shared>> for CurrentUser {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<CurrentUser, Refusal> {
        let caller = parts.extensions.get::<Caller>().ok_or(Refusal::NotLoggedIn)?;
        shared.lock().users.get(&caller.user_id).cloned().map(CurrentUser).ok_or(Refusal::InvalidAccess)
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt as _;

    use super::super::{Handle, routes};
    use super::*;
    use crate::LivekitKeys;

    fn routed(uri: &str) -> String {
        let uri: Uri = uri.parse().expect("a URI");
        routed_uri(&uri).map_or_else(|| uri.to_string(), |routed| routed.to_string())
    }

    #[test]
    fn the_router_sees_paths_as_rails_routes_them() {
        assert_eq!(routed("/audioroom/rooms.json?include_archived=true"), "/audioroom/rooms?include_archived=true");
        assert_eq!(routed("/audioroom/rooms/7/participants.json"), "/audioroom/rooms/7/participants");
        assert_eq!(routed("//audioroom/rooms.json"), "/audioroom/rooms", "leading slashes squeeze");
        assert_eq!(routed("/audioroom/rooms/.json"), "/audioroom/rooms/.json", "a bare .json is the segment");
        assert_eq!(routed("/audioroom/rooms.json.json"), "/audioroom/rooms.json", "one suffix comes off");
        assert_eq!(routed("/audioroom/rooms"), "/audioroom/rooms");
    }

    #[tokio::test]
    async fn what_names_no_endpoint_is_a_recorded_rails_404_without_allow() {
        let shared = Arc::new(Shared::new(LivekitKeys {
            url: "ws://127.0.0.1:9".into(),
            api_key: "devkey".into(),
            api_secret: "a-test-secret-that-is-long-enough-for-hs256".into(),
        }));
        let handle = Handle { shared: Arc::clone(&shared) };
        let alice = handle.add_user("alice", "Alice", false);
        let cases = [
            ("DELETE", "/audioroom/rooms/1/join"),
            ("HEAD", "/audioroom/rooms.json"),
            ("POST", "/audioroom/rooms/1/join.json"),
            ("GET", "/user-api-key/new.json"),
            ("GET", "/nothing"),
        ];
        for (method, path) in cases {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("User-Api-Key", &alice.api_key)
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
                .expect("a request");
            let response =
                routes::router(Arc::clone(&shared)).oneshot(request).await.unwrap_or_else(|never| match never {});
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path} should be Rails' 404");
            assert!(response.headers().get(header::ALLOW).is_none(), "{method} {path} should carry no Allow");
        }
        let seen = handle.requests();
        assert_eq!(seen.len(), cases.len(), "each unrouted request is recorded: {seen:?}");
        assert!(seen.iter().all(|request| request.endpoint.is_none()), "as no endpoint's: {seen:?}");
        assert_eq!(seen[1].path, "/audioroom/rooms.json", "with the path as sent");
    }
}
