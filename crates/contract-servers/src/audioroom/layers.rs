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
//! 4. [`negotiate`]: notes how Rails reads the request's format ([`RequestFormat`]) and renders
//!    the errors whose shape depends on it as HTML for requests that do not take JSON.
//! 5. [`current_user`]: the `User-Api-Key`, its rate limits, then its scopes; without a key,
//!    CSRF verification refuses every method but GET.
//! 6. [`check_xhr`]: a GET neither `.json` nor asking for JSON gets the HTML app shell.
//!
//! MessageBus and the key-issuing page sit behind 1–3 only: MessageBus is Rack middleware that
//! runs before Rails, and a browser opens the key page before there is a key. Handlers then take
//! the key's user with the [`CurrentUser`] extractor (`ensure_logged_in`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;

use super::responses::{INVALID_ACCESS, Negotiated, Refusal, html_error, html_shell};
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

/// How Rails reads the request's format (`request.format`, `request.xhr?`), noted by
/// [`negotiate`] for the layers after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RequestFormat {
    /// `request.format.json?`.
    pub(super) json: bool,
    /// `request.xhr?`: `X-Requested-With` matches `XMLHttpRequest`.
    pub(super) xhr: bool,
}

impl RequestFormat {
    /// `ActionDispatch::Http::MimeNegotiation#formats`: the `format` param (the `.json` suffix or
    /// `?format=`), else a valid `Accept` (browser-like lists with `*/*` beside other types do not
    /// count unless it is an XHR) by quality, else `js` for an XHR and `html` for the rest.
    pub(super) fn of(headers: &HeaderMap, query: Option<&str>, json_suffix: bool) -> RequestFormat {
        let xhr = header_text(headers, "X-Requested-With")
            .is_some_and(|value| value.to_ascii_lowercase().contains("xmlhttprequest"));
        let format_param = query.and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "format")
                .map(|(_, value)| value.into_owned())
        });
        let json = if json_suffix {
            true
        } else if let Some(format) = format_param {
            format == "json"
        } else {
            let accept =
                header_text(headers, header::ACCEPT.as_str()).map(str::trim).filter(|accept| !accept.is_empty());
            let content_type = header_text(headers, header::CONTENT_TYPE.as_str()).is_some();
            let browser_like = accept.is_some_and(|accept| {
                let squeezed: String = accept.split_whitespace().collect();
                squeezed.contains(",*/*") || squeezed.contains("*/*,")
            });
            let valid = (xhr && (accept.is_some() || content_type)) || (accept.is_some() && !browser_like);
            valid && accept.and_then(preferred_type).is_some_and(|mime| JSON_TYPES.contains(&mime.as_str()))
        };
        RequestFormat { json, xhr }
    }

    /// Whether `rescue_discourse_actions` answers in JSON.
    pub(super) fn shows_json_errors(self) -> bool {
        self.json || self.xhr
    }
}

/// The names Rails registers for `Mime[:json]`.
const JSON_TYPES: [&str; 3] = ["application/json", "text/x-json", "application/jsonrequest"];

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The first type of an `Accept` list once sorted by quality (stable, as `Mime::Type.parse`).
fn preferred_type(accept: &str) -> Option<String> {
    let mut types: Vec<(String, f32)> = accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let mime = parts.next()?.trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|parameter| parameter.trim().strip_prefix("q="))
                .find_map(|value| value.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!mime.is_empty()).then_some((mime, quality))
        })
        .collect();
    types.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    types.into_iter().next().map(|(mime, _)| mime)
}

/// Notes the request's [`RequestFormat`] and renders the errors whose shape depends on it
/// ([`Negotiated`]) as HTML for requests that do not take JSON.
pub(super) async fn negotiate(mut request: Request, next: Next) -> Response {
    let json_suffix = request.extensions().get::<JsonSuffix>().is_some_and(|suffix| suffix.0);
    let format = RequestFormat::of(request.headers(), request.uri().query(), json_suffix);
    request.extensions_mut().insert(format);
    let response = next.run(request).await;
    let Some(how) = response.extensions().get::<Negotiated>().copied() else { return response };
    let json = match how {
        Negotiated::DiscourseAction => format.shows_json_errors(),
        Negotiated::PublicException | Negotiated::RecordInvalid => format.json,
    };
    if json { response } else { html_error(response.status(), how) }
}

fn format_of(request: &Request) -> RequestFormat {
    request.extensions().get::<RequestFormat>().copied().unwrap_or(RequestFormat { json: false, xhr: false })
}

/// Discourse's `check_xhr`: a GET must ask for JSON (the `.json` suffix, `Accept`, or an XHR),
/// else it gets the HTML app shell. A user API key spares the other methods the check.
pub(super) async fn check_xhr(request: Request, next: Next) -> Response {
    let format = format_of(&request);
    if request.method() == Method::GET && !format.json && !format.xhr {
        return html_shell();
    }
    next.run(request).await
}

/// The key a request came with and whose user it is, once [`current_user`] accepted it.
#[derive(Debug, Clone)]
struct Caller {
    user_id: i64,
}

/// `Auth::DefaultCurrentUserProvider#current_user` for user API keys, in its order: an unknown
/// key → 403 `invalid_access`; the per-minute, then the per-day limiter → 429; the key's scopes
/// (`ensure_allowed!`) → 403 `invalid_access`. For a request that is neither JSON nor an XHR, the
/// error page's own `current_user` call fails again, so the 403 is the message as plain text.
///
/// Without a key, a GET goes on anonymous (the action's `ensure_logged_in` refuses it later);
/// any other method fails CSRF verification first (`["BAD CSRF"]`), as nothing exempts it.
pub(super) async fn current_user(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let key = request.headers().get("User-Api-Key").and_then(|value| value.to_str().ok()).map(str::trim);
    let Some(key) = key.map(str::to_string) else {
        if request.method() == Method::GET || request.method() == Method::HEAD {
            return next.run(request).await;
        }
        return Refusal::BadCsrf.into_response();
    };
    let format = format_of(&request);
    let invalid_access = || {
        if format.shows_json_errors() {
            Refusal::InvalidAccess.into_response()
        } else {
            (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], INVALID_ACCESS)
                .into_response()
        }
    };
    let looked_up = {
        let mut forum = shared.lock();
        match forum.api_keys.get(&key).cloned() {
            None => Err(None),
            Some(api_key) => forum.rate_limit(&key, Instant::now()).map(|()| api_key).map_err(Some),
        }
    };
    let api_key = match looked_up {
        Ok(api_key) => api_key,
        Err(None) => return invalid_access(),
        Err(Some(limit)) => return Refusal::RateLimited(limit).into_response(),
    };
    // `UserApiKeyScope`: `read` allows GETs, `message_bus` only MessageBus, `write` everything.
    let allowed = api_key.scopes.iter().any(|scope| match scope.as_str() {
        "write" => true,
        "read" => request.method() == Method::GET,
        _ => false,
    });
    if !allowed {
        return invalid_access();
    }
    request.extensions_mut().insert(Caller { user_id: api_key.user_id });
    next.run(request).await
}

/// The user whose key the request came with: `ensure_logged_in`'s 403 `not_logged_in` without
/// one.
pub(super) struct CurrentUser(pub(super) User);

impl FromRequestParts<Arc<Shared>> for CurrentUser {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<CurrentUser, Refusal> {
        let caller = parts.extensions.get::<Caller>().ok_or(Refusal::NotLoggedIn)?;
        shared.lock().users.get(&caller.user_id).cloned().map(CurrentUser).ok_or(Refusal::InvalidAccess)
    }
}

/// The key's user when there is one: for the actions that serve anonymous users too.
pub(super) struct MaybeUser(pub(super) Option<User>);

impl FromRequestParts<Arc<Shared>> for MaybeUser {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<MaybeUser, Refusal> {
        let Some(caller) = parts.extensions.get::<Caller>() else { return Ok(MaybeUser(None)) };
        Ok(MaybeUser(shared.lock().users.get(&caller.user_id).cloned()))
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
