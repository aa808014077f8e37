//! DRF's pipeline for every request: routing (`APPEND_SLASH` redirects, Django's 404 page), the
//! request log and forced failures, authentication (session with CSRF, LiveKit token), the
//! view's `has_permission`, 405s, then the action's handler; and the object permission
//! `HasPrivilegesOnRoom` that handlers check.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Seen;
use super::entry::{enter, request_entry, retrieve, waiting};
use super::participants::{
    list_participants, mute, remove_participant, rename, toggle_hand, update_participant, update_role,
};
use super::python::percent_decode;
use super::responses::{NEEDS_PRIVILEGES, NO_CREDENTIALS, NO_PERMISSION, NO_ROOM, NOT_FOUND_PAGE, detail, html, raw};
use super::state::{Room, Shared, User};
use super::tokens::verify_token;

/// The room actions this server routes (`@action` `url_path`s).
const ACTIONS: [&str; 9] = [
    "request-entry",
    "waiting-participants",
    "enter",
    "mute-participant",
    "update-participant",
    "remove-participant",
    "update-participant-role",
    "toggle-hand",
    "rename",
];

/// What one request carries.
pub(super) struct Call {
    method: Method,
    host: String,
    headers: HeaderMap,
    pub(super) cookies: HashMap<String, String>,
    pub(super) query: HashMap<String, String>,
    pub(super) body: Bytes,
}

impl Call {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn is_safe(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
    }

    /// `request.data` with Meet's parsers (`JSONParser`; multipart is not modelled): an empty
    /// body is `{}`, any other needs the JSON content type.
    pub(super) fn data(&self) -> Result<Value, Response> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        let content_type = self.header("content-type").unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Unsupported media type \"{content_type}\" in request."),
            ));
        }
        serde_json::from_slice(&self.body)
            .map_err(|error| detail(StatusCode::BAD_REQUEST, &format!("JSON parse error - {error}")))
    }
}

/// Which authentication classes a view runs, in order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authenticators {
    /// `SessionAuthenticationWith401` (the default).
    Session,
    /// `[LiveKitTokenAuthentication]`.
    Token,
    /// `[LiveKitTokenAuthentication, SessionAuthenticationWith401]` (mute).
    TokenThenSession,
}

/// The outcome of DRF's authentication.
pub(super) enum Auth {
    Anonymous,
    /// Signed in through the session cookie.
    Session {
        sub: String,
    },
    /// A valid LiveKit token; `user` is the account whose `sub` is the token's identity, if any.
    Token {
        identity: String,
        room: String,
        user: Option<String>,
    },
}

/// A request in the middle of DRF's pipeline.
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Shared,
    pub(super) call: &'a Call,
    pub(super) auth: Auth,
    authenticators: Authenticators,
}

impl Ctx<'_> {
    /// `request.user.sub` when someone is signed in (session, or a token whose identity is an
    /// account).
    pub(super) fn user(&self) -> Option<&str> {
        match &self.auth {
            Auth::Anonymous => None,
            Auth::Session { sub } => Some(sub),
            Auth::Token { user, .. } => user.as_deref(),
        }
    }

    fn authenticated(&self) -> bool {
        !matches!(self.auth, Auth::Anonymous)
    }

    /// `NotAuthenticated` / `AuthenticationFailed`: 401 with `WWW-Authenticate` when the first
    /// authenticator is the session one, else DRF turns it into 403.
    fn unauthenticated(&self, message: &str) -> Response {
        if self.authenticators == Authenticators::Session {
            let mut response = detail(StatusCode::UNAUTHORIZED, message);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Session"));
            response
        } else {
            detail(StatusCode::FORBIDDEN, message)
        }
    }

    /// `APIView.permission_denied`.
    pub(super) fn denied(&self, message: Option<&str>) -> Response {
        if self.authenticated() {
            detail(StatusCode::FORBIDDEN, message.unwrap_or(NO_PERMISSION))
        } else {
            self.unauthenticated(NO_CREDENTIALS)
        }
    }

    /// `get_object`'s lookup (404 when unknown).
    pub(super) fn room(&self, key: &str) -> Result<Room, Response> {
        self.shared.lock().find_room(key).ok_or_else(|| detail(StatusCode::NOT_FOUND, NO_ROOM))
    }

    pub(super) fn account(&self, sub: &str) -> Option<User> {
        self.shared.lock().user(sub).cloned()
    }
}

pub(super) async fn dispatch(
    State(shared): State<Shared>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let action = match segments.as_slice() {
        ["api", "v1.0", "rooms", key, ""] if !key.is_empty() => "retrieve".to_string(),
        ["api", "v1.0", "rooms", key, action, ""] if !key.is_empty() && ACTIONS.contains(action) => {
            (*action).to_string()
        }
        ["twirp", "livekit.RoomService", method] => (*method).to_string(),
        _ => String::new(),
    };
    {
        let mut site = shared.lock();
        site.requests.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().map(String::from),
            headers: headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if let Some((status, body)) = site.fail_next.remove(&action) {
            return raw(status, &body);
        }
    }
    let call = Call {
        method: method.clone(),
        host: headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string(),
        cookies: parse_cookies(&headers),
        query: url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect(),
        headers,
        body,
    };
    let key = match segments.as_slice() {
        ["twirp", "livekit.RoomService", "ListParticipants"] if method == Method::POST => {
            return list_participants(&shared, &call);
        }
        ["api", "v1.0", "rooms", key, ..] if !action.is_empty() => percent_decode(key),
        _ => {
            // `CommonMiddleware`: a path that resolves once a slash is appended is redirected.
            let with_slash = format!("{path}/");
            let resolves = matches!(
                with_slash.trim_start_matches('/').split('/').collect::<Vec<_>>().as_slice(),
                ["api", "v1.0", "rooms", key, ""] if !key.is_empty()
            ) || matches!(
                with_slash.trim_start_matches('/').split('/').collect::<Vec<_>>().as_slice(),
                ["api", "v1.0", "rooms", key, action, ""] if !key.is_empty() && ACTIONS.contains(action)
            );
            if !path.ends_with('/') && resolves {
                let location = match uri.query() {
                    Some(query) => format!("{with_slash}?{query}"),
                    None => with_slash,
                };
                return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response();
            }
            return html(StatusCode::NOT_FOUND, NOT_FOUND_PAGE);
        }
    };
    let (authenticators, methods): (Authenticators, &[Method]) = match action.as_str() {
        "retrieve" | "waiting-participants" => (Authenticators::Session, &[Method::GET]),
        "mute-participant" => (Authenticators::TokenThenSession, &[Method::POST]),
        "toggle-hand" | "rename" => (Authenticators::Token, &[Method::POST]),
        _ => (Authenticators::Session, &[Method::POST]),
    };
    // `APIView.initial`: authentication, then the view's `has_permission`.
    let auth = match authenticate(&shared, &call, authenticators) {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let ctx = Ctx { shared: &shared, call: &call, auth, authenticators };
    let needs_user = match action.as_str() {
        // `RoomPermissions`: anyone may read; writing needs a user.
        "retrieve" => !call.is_safe(),
        // No permission classes, `CanMuteParticipant`, `HasLiveKitRoomAccess`: object-level only.
        "request-entry" | "mute-participant" | "toggle-hand" | "rename" => false,
        // `HasPrivilegesOnRoom` (an `IsAuthenticated`).
        _ => true,
    };
    if needs_user && !ctx.authenticated() {
        return ctx.unauthenticated(NO_CREDENTIALS);
    }
    if !methods.contains(&method) {
        return detail(StatusCode::METHOD_NOT_ALLOWED, &format!("Method \"{method}\" not allowed."));
    }
    let result = match action.as_str() {
        "retrieve" => retrieve(&ctx, &key),
        "request-entry" => request_entry(&ctx, &key),
        "waiting-participants" => waiting(&ctx, &key),
        "enter" => enter(&ctx, &key),
        "mute-participant" => mute(&ctx, &key),
        "update-participant" => update_participant(&ctx, &key),
        "remove-participant" => remove_participant(&ctx, &key),
        "update-participant-role" => update_role(&ctx, &key),
        "toggle-hand" => toggle_hand(&ctx, &key),
        _ => rename(&ctx, &key),
    };
    result.unwrap_or_else(|response| response)
}

/// DRF's `Request._authenticate` over `authenticators`: the first that recognises the request
/// wins; an error from one of them ends the request.
fn authenticate(shared: &Shared, call: &Call, authenticators: Authenticators) -> Result<Auth, Response> {
    let as_failure = |message: String| {
        // The token authenticator has no `authenticate_header`, so DRF answers 403.
        detail(StatusCode::FORBIDDEN, &message)
    };
    if matches!(authenticators, Authenticators::Token | Authenticators::TokenThenSession)
        && let Some(authorization) = call.header("authorization")
    {
        let parts: Vec<&str> = authorization.split_whitespace().collect();
        let [scheme, token] = parts.as_slice() else {
            return Err(as_failure("Authorization header must be: Bearer <token>".into()));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(as_failure("Authorization header must be: Bearer <token>".into()));
        }
        let claims = verify_token(&shared.keys, token)
            .map_err(|reason| as_failure(format!("Invalid LiveKit token: {reason}")))?;
        let identity = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_string();
        if identity.is_empty() {
            return Err(as_failure("Invalid LiveKit token: Token missing user identity".into()));
        }
        let room = claims.pointer("/video/room").and_then(Value::as_str).unwrap_or_default().to_string();
        let user = shared.lock().user(&identity).map(|user| user.sub.clone());
        return Ok(Auth::Token { identity, room, user });
    }
    if matches!(authenticators, Authenticators::Session | Authenticators::TokenThenSession) {
        let site = shared.lock();
        let sub = call.cookies.get(&site.session_cookie).and_then(|session| site.sessions.get(session)).cloned();
        drop(site);
        if let Some(sub) = sub {
            // `SessionAuthentication.enforce_csrf`, for session-authenticated requests only.
            if !call.is_safe()
                && let Err(reason) = csrf(call)
            {
                return Err(detail(StatusCode::FORBIDDEN, &format!("CSRF Failed: {reason}")));
            }
            return Ok(Auth::Session { sub });
        }
    }
    Ok(Auth::Anonymous)
}

fn parse_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// Django's `CsrfViewMiddleware` for a plain-HTTP site.
fn csrf(call: &Call) -> Result<(), String> {
    if let Some(origin) = call.header("origin")
        && origin != format!("http://{}", call.host)
    {
        return Err(format!("Origin checking failed - {origin} does not match any trusted origins."));
    }
    let cookie = call.cookies.get("csrftoken").ok_or("CSRF cookie not set.")?;
    let token = call.header("x-csrftoken").ok_or("CSRF token missing.")?;
    if token != cookie {
        return Err("CSRF token from the 'X-Csrftoken' HTTP header incorrect.".into());
    }
    Ok(())
}

/// `HasPrivilegesOnRoom.has_object_permission`.
pub(super) fn require_privileges(ctx: &Ctx<'_>, room: &Room) -> Result<(), Response> {
    if room.is_admin(ctx.user()) { Ok(()) } else { Err(ctx.denied(Some(NEEDS_PRIVILEGES))) }
}
