//! What the forum answers: the serializers' JSON shapes (Room, Participant, Membership,
//! BasicUser), Discourse core's, Rails' and the plugin's error bodies ([`Refusal`]), the HTML
//! shell `check_xhr` renders, and answers forced by [`super::Handle::fail_next`].
//!
//! Error bodies, as the real stack renders them:
//! * the plugin's own `render json: {error:}` (and the 409's `conflicting_room_*`): always JSON;
//! * core's `rescue_discourse_actions` (`InvalidAccess`, `NotLoggedIn`, `InvalidParameters`,
//!   `NotFound`): `{"errors":[…],"error_type":…}` when the request's format is JSON or it is an
//!   XHR, else an HTML error page with the same status ([`Negotiated`], applied by
//!   [`super::layers::negotiate`]);
//! * `ActionController::ParameterMissing` and `RateLimiter::LimitExceeded`: always
//!   `render_json_error` — the former without `error_type`;
//! * `ActiveRecord::RecordNotFound` (`find_by!`, `find`): nothing in Discourse rescues it, so
//!   Rails' `PublicExceptions` answers `{"status":404,"error":"Not Found"}` for JSON, its 404 page
//!   otherwise;
//! * `ActiveRecord::RecordInvalid`: 422 `{"errors":[…],"error_type":"record_invalid"}` for JSON,
//!   a 500 otherwise.
//!
//! Bodies are `application/json; charset=utf-8`, as Rails sends them; timestamps are fixed, so
//! that answers compare equal across runs.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Forced;
use super::state::{Forum, LimitExceeded, Membership, Room, SYSTEM_USER_ID, User};

/// `invalid_access` in core's `server.en.yml`: what every `Discourse::InvalidAccess` shows,
/// whatever message the plugin raised it with (only a `custom_message` would be shown).
pub(super) const INVALID_ACCESS: &str = "You are not permitted to view the requested resource.";
const NOT_LOGGED_IN: &str = "You need to be logged in to do that.";
const NOT_FOUND: &str = "The requested URL or resource could not be found.";
/// What the serializers send for `created_at` / `updated_at`.
const TIMESTAMP: &str = "2025-01-01T00:00:00.000Z";

/// The plugin's `server.en.yml` texts.
pub(super) mod text {
    pub(in super::super) const NOT_AUTHORIZED: &str = "You are not allowed to perform that action for this room.";
    pub(in super::super) const ROOM_FULL: &str = "This room is full.";
    pub(in super::super) const KICKED: &str = "You have been removed from this room.";
    pub(in super::super) const BANNED: &str = "You are permanently banned from this room.";
    pub(in super::super) const CANNOT_KICK_SELF: &str = "You cannot kick yourself from the room.";
    pub(in super::super) const CANNOT_KICK_CREATOR: &str = "You cannot kick the room creator.";
    pub(in super::super) const SPEAKERS_CANNOT_RAISE_HAND: &str = "Speakers and moderators cannot raise their hand.";
    pub(in super::super) const PARTICIPANT_NOT_FOUND: &str = "Participant is not in the room or has no audio track.";
    pub(in super::super) const ALREADY_IN_ROOM: &str =
        "You are already in another voice room. Please leave it before joining a new one.";
    /// Not translated: `render json: { error: "Not a stage room" }`.
    pub(in super::super) const NOT_A_STAGE_ROOM: &str = "Not a stage room";
}

/// A handler's answer: the response, or why the forum refuses.
pub(super) type Answer = Result<Response, Refusal>;

/// Why the forum refuses a request, rendered as Discourse core, Rails or the plugin renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Core's `Discourse::NotLoggedIn` from `ensure_logged_in` (403).
    NotLoggedIn,
    /// Core's `Discourse::InvalidAccess` (403): an unknown key, a missing scope, the Guardian.
    InvalidAccess,
    /// Core's `Discourse::NotFound` (404), also what an unrouted request gets.
    NotFound,
    /// `ActiveRecord::RecordNotFound` (404), answered by Rails' `PublicExceptions`.
    RecordNotFound,
    /// `ActiveRecord::RecordInvalid` with the record's full messages.
    RecordInvalid(Vec<String>),
    /// `ActionController::ParameterMissing` (400), naming the param.
    ParamMissing(&'static str),
    /// Core's `Discourse::InvalidParameters` (400) with its message (the exception class name
    /// when it was raised without one).
    InvalidParameters(String),
    /// `RateLimiter::LimitExceeded` (429).
    RateLimited(LimitExceeded),
    /// The plugin's own `render json: { error: }`.
    Plugin(StatusCode, String),
    /// `join` while present in another room (409), naming that room (`null` if it is gone).
    InAnotherRoom { id: u64, name: Option<String> },
    /// A non-GET without a user API key: `handle_unverified_request`'s plain-text 403.
    BadCsrf,
}

/// How a response depends on the request's format, for [`super::layers::negotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Negotiated {
    /// `rescue_discourse_actions`: JSON for JSON or XHR requests, else the HTML error page.
    DiscourseAction,
    /// Rails' `PublicExceptions`: JSON for JSON requests, else `public/404.html`.
    PublicException,
    /// `rescue_from RecordInvalid`: JSON for JSON requests, else re-raised (500).
    RecordInvalid,
}

impl Refusal {
    pub(super) fn plugin(status: StatusCode, message: &str) -> Refusal {
        Refusal::Plugin(status, message.into())
    }

    /// `Discourse::InvalidParameters.new(message)` as the rescue renders it.
    pub(super) fn invalid_parameters(message: &str) -> Refusal {
        Refusal::InvalidParameters(message.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotLoggedIn => discourse_error(StatusCode::FORBIDDEN, "not_logged_in", NOT_LOGGED_IN),
            Refusal::InvalidAccess => discourse_error(StatusCode::FORBIDDEN, "invalid_access", INVALID_ACCESS),
            Refusal::NotFound => discourse_error(StatusCode::NOT_FOUND, "not_found", NOT_FOUND),
            Refusal::RecordNotFound => negotiated(
                json_response(StatusCode::NOT_FOUND, json!({ "status": 404, "error": "Not Found" })),
                Negotiated::PublicException,
            ),
            Refusal::RecordInvalid(messages) => negotiated(
                json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "errors": messages, "error_type": "record_invalid" }),
                ),
                Negotiated::RecordInvalid,
            ),
            Refusal::ParamMissing(name) => json_response(
                StatusCode::BAD_REQUEST,
                json!({ "errors": [format!("param is missing or the value is empty or invalid: {name}")] }),
            ),
            Refusal::InvalidParameters(message) => discourse_error(
                StatusCode::BAD_REQUEST,
                "invalid_parameters",
                &format!("You supplied invalid parameters to the request: {message}"),
            ),
            Refusal::RateLimited(limit) => rate_limited(limit),
            Refusal::Plugin(status, message) => json_response(status, json!({ "error": message })),
            Refusal::InAnotherRoom { id, name } => json_response(
                StatusCode::CONFLICT,
                json!({
                    "error": text::ALREADY_IN_ROOM,
                    "conflicting_room_id": id,
                    "conflicting_room_name": name,
                }),
            ),
            Refusal::BadCsrf => {
                (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "[\"BAD CSRF\"]")
                    .into_response()
            }
        }
    }
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

pub(super) fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

fn negotiated(mut response: Response, how: Negotiated) -> Response {
    response.extensions_mut().insert(how);
    response
}

/// Core's `render_json_error` shape, from `rescue_discourse_actions`.
fn discourse_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let response = json_response(status, json!({ "errors": [message], "error_type": error_type }));
    negotiated(response, Negotiated::DiscourseAction)
}

/// What a [`Negotiated`] response becomes for a request that is neither JSON nor an XHR.
pub(super) fn html_error(status: StatusCode, how: Negotiated) -> Response {
    let (status, body) = match how {
        Negotiated::DiscourseAction => (
            status,
            "<!DOCTYPE html><html><head><title>Page Not Found - Forum</title></head><body><div class=\"page-not-found\"><h1>Oops! That page doesn’t exist or is private.</h1></div></body></html>",
        ),
        Negotiated::PublicException => (
            status,
            "<!DOCTYPE html><html><head><title>The page you were looking for doesn't exist (404)</title></head><body><h1>The page you were looking for doesn't exist.</h1></body></html>",
        ),
        Negotiated::RecordInvalid => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "<!DOCTYPE html><html><head><title>Oops</title></head><body><h1>Oops</h1><p>The software powering this discussion forum encountered an unexpected problem.</p></body></html>",
        ),
    };
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// `rescue_from RateLimiter::LimitExceeded`: always JSON, with `Retry-After`,
/// `Discourse-Rate-Limit-Error-Code` and `extras {wait_seconds, time_left}`.
fn rate_limited(limit: LimitExceeded) -> Response {
    let time_left = time_left(limit.wait_seconds);
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "errors": [format!("You’ve performed this action too many times. Please wait {time_left} before trying again.")],
            "error_type": "rate_limit",
            "extras": { "wait_seconds": limit.wait_seconds, "time_left": time_left },
        }),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limit.wait_seconds));
    response.headers_mut().insert("Discourse-Rate-Limit-Error-Code", HeaderValue::from_static(limit.code));
    response
}

/// `RateLimiter.time_left` with core's English texts.
pub(super) fn time_left(seconds: u64) -> String {
    let plural = |count: u64, unit: &str| if count == 1 { format!("1 {unit}") } else { format!("{count} {unit}s") };
    match seconds {
        0..=3 => "a few seconds".to_string(),
        4..=59 => plural(seconds, "second"),
        60..=3599 => plural(seconds / 60, "minute"),
        _ => plural(seconds / 3600, "hour"),
    }
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `render json: success_json`.
pub(super) fn success_ok() -> Response {
    ok(json!({ "success": "OK" }))
}

/// What `check_xhr` renders for a GET that is neither `.json` nor XHR: the Ember app shell.
pub(super) fn html_shell() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html>\n<html lang=\"en\"><head><title>Forum</title></head><body><noscript>JavaScript required</noscript></body></html>",
    )
        .into_response()
}

impl IntoResponse for Forced {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `avatar_template`: an uploaded avatar's path; the system user's is the site logo.
fn avatar_template(user: &User) -> String {
    if user.id == SYSTEM_USER_ID {
        return "/images/discourse-logo-sketch-small.png".to_string();
    }
    format!("/user_avatar/forum/{}/{{size}}/{}_2.png", user.username.to_lowercase(), user.id)
}

/// `BasicUserSerializer` (`enable_names` on): `name` is `null` for a user without one.
pub(super) fn basic_user(user: &User) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "avatar_template": avatar_template(user),
    })
}

/// The metadata a participant carries in LiveKit: the token's and what
/// `sync_livekit_participant_metadata` sends (`name || username`).
pub(super) fn participant_metadata(user: &User, role: &str) -> Value {
    json!({
        "username": user.username,
        "name": user.name.as_deref().unwrap_or(&user.username),
        "avatar_template": avatar_template(user),
        "role": role,
    })
}

/// Who is present in `room`: each tracked user's BasicUser merged with whatever metadata keys
/// the controllers wrote (none are filled in: a key never written is absent).
pub(super) fn participants(forum: &Forum, room: u64) -> Vec<Value> {
    forum
        .tracked_users(room)
        .into_iter()
        .filter_map(|id| {
            let user = forum.users.get(&id)?;
            let mut json = basic_user(user);
            if let Value::Object(fields) = &mut json {
                fields.extend(forum.metadata(room, id));
            }
            Some(json)
        })
        .collect()
}

/// `RoomMembershipSerializer`.
pub(super) fn membership(forum: &Forum, membership: &Membership) -> Value {
    let user = forum.users.get(&membership.user_id).map(basic_user).unwrap_or(Value::Null);
    json!({
        "id": membership.id,
        "room_id": membership.room_id,
        "user_id": membership.user_id,
        "role": membership.role.number(),
        "role_name": membership.role.name(),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "user": user,
    })
}

/// `RoomSerializer`, as `viewer` sees the room; `visit_count` only where the controller asks
/// for it (`show` and `join`).
pub(super) fn room(forum: &Forum, room: &Room, viewer: &User, with_visit_count: bool) -> Value {
    let participants = participants(forum, room.id);
    let membership = forum.membership(room.id, viewer.id).map(|found| self::membership(forum, found));
    let member_count = forum.memberships.iter().filter(|membership| membership.room_id == room.id).count();
    let description = format!("About {}", room.name);
    let mut fields = Map::new();
    let mut put = |name: &str, value: Value| {
        fields.insert(name.to_string(), value);
    };
    put("id", json!(room.id));
    put("name", json!(room.name));
    put("slug", json!(room.slug));
    put("description", json!(description));
    put("cooked_description", json!(format!("<p>{description}</p>")));
    put("public", json!(room.public));
    put("room_type", json!(if room.stage { "stage" } else { "open" }));
    put("max_participants", json!(room.max_participants));
    put("created_at", json!(TIMESTAMP));
    put("updated_at", json!(TIMESTAMP));
    put("member_count", json!(member_count));
    put("active_participants", json!(participants));
    put("creator_id", json!(room.creator));
    put("can_manage", json!(forum.can_manage(room, viewer)));
    put("description_excerpt", json!(description));
    if with_visit_count {
        put("visit_count", json!(forum.visit_count(room.id, viewer.id)));
    }
    put("live", json!(false));
    put("broadcast_layout", json!("speaker"));
    put("schedule", Value::Null);
    put("next_session_at", Value::Null);
    put("topic_id", Value::Null);
    put("topic_url", Value::Null);
    put("is_following", json!(false));
    put("broadcast_background", Value::Null);
    put("broadcast_watermark", json!(true));
    put("has_youtube_stream_key", json!(false));
    put("archived", json!(false));
    put("membership", membership.unwrap_or(Value::Null));
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_as_core_writes_it() {
        assert_eq!(time_left(2), "a few seconds");
        assert_eq!(time_left(39), "39 seconds");
        assert_eq!(time_left(300), "5 minutes");
        assert_eq!(time_left(60), "1 minute");
        assert_eq!(time_left(7200), "2 hours");
    }
}
