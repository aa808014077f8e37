//! What the forum answers (CONTROL_PLANES.md §1.2, §1.5): the serializers' JSON shapes (Room,
//! Participant, Membership, BasicUser), Discourse core's and the plugin's error bodies
//! ([`Refusal`]), the HTML shell `check_xhr` renders, and answers forced by
//! [`super::Handle::fail_next`].
//!
//! Bodies are `application/json; charset=utf-8`, as Rails sends them; timestamps are fixed, so
//! that answers compare equal across runs.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Forced;
use super::state::{Forum, Membership, Room, User};

const INVALID_ACCESS: &str = "You are not permitted to view the requested resource.";
const NOT_LOGGED_IN: &str = "You need to be logged in to do that.";
const NOT_FOUND: &str = "The requested URL or resource could not be found.";
/// What the serializers send for `created_at` / `updated_at`.
const TIMESTAMP: &str = "2025-01-01T00:00:00.000Z";

/// A handler's answer: the response, or why the forum refuses.
pub(super) type Answer = Result<Response, Refusal>;

/// Why the forum refuses a request, rendered as Discourse core or the plugin renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No `User-Api-Key`: core's `Discourse::NotLoggedIn` (403 for JSON and non-GET requests).
    NotLoggedIn,
    /// Core's `Discourse::InvalidAccess` (403): an unknown key, a missing scope, the Guardian.
    InvalidAccess,
    /// Core's `Discourse::NotFound` (404), also what Rails' routing gives an unrouted request.
    NotFound,
    /// `ActionController::ParameterMissing` (400), naming the param.
    ParamMissing(&'static str),
    /// Core's `Discourse::InvalidParameters` (400) with its message.
    InvalidParameters(String),
    /// `RateLimiter::LimitExceeded` (429): the wait, and `Discourse-Rate-Limit-Error-Code`.
    RateLimited { wait_seconds: u64, code: &'static str },
    /// The plugin's own `render json: { error: }`.
    Plugin(StatusCode, String),
    /// `join` while present in another room (409), naming that room.
    InAnotherRoom { id: u64, name: String },
}

impl Refusal {
    pub(super) fn plugin(status: StatusCode, message: &str) -> Refusal {
        Refusal::Plugin(status, message.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotLoggedIn => discourse_error(StatusCode::FORBIDDEN, "not_logged_in", NOT_LOGGED_IN),
            Refusal::InvalidAccess => discourse_error(StatusCode::FORBIDDEN, "invalid_access", INVALID_ACCESS),
            Refusal::NotFound => discourse_error(StatusCode::NOT_FOUND, "not_found", NOT_FOUND),
            Refusal::ParamMissing(name) => discourse_error(
                StatusCode::BAD_REQUEST,
                "invalid_parameters",
                &format!("param is missing or the value is empty: {name}"),
            ),
            Refusal::InvalidParameters(message) => {
                discourse_error(StatusCode::BAD_REQUEST, "invalid_parameters", &message)
            }
            Refusal::RateLimited { wait_seconds, code } => rate_limited(wait_seconds, code),
            Refusal::Plugin(status, message) => json_response(status, json!({ "error": message })),
            Refusal::InAnotherRoom { id, name } => json_response(
                StatusCode::CONFLICT,
                json!({
                    "error": "You are already in another room. Leave it first.",
                    "conflicting_room_id": id,
                    "conflicting_room_name": name,
                }),
            ),
        }
    }
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

pub(super) fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// Core's `render_json_error` shape.
fn discourse_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    json_response(status, json!({ "errors": [message], "error_type": error_type }))
}

fn rate_limited(wait_seconds: u64, code: &str) -> Response {
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "errors": [format!("You’ve performed this action too many times. Please wait {wait_seconds} seconds before trying again.")],
            "error_type": "rate_limit",
            "extras": { "wait_seconds": wait_seconds, "time_left": format!("{wait_seconds} seconds") },
        }),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_seconds));
    if let Ok(code) = HeaderValue::from_str(code) {
        response.headers_mut().insert("Discourse-Rate-Limit-Error-Code", code);
    }
    response
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

/// `BasicUserSerializer`.
pub(super) fn basic_user(user: &User) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "avatar_template": format!("/user_avatar/forum/{}/{{size}}/{}_2.png", user.username.to_lowercase(), user.id),
    })
}

/// The metadata a participant carries in LiveKit: the token's (§1.3) and what
/// `sync_livekit_participant_metadata` sends.
pub(super) fn participant_metadata(user: &User, role: &str) -> Value {
    json!({
        "username": user.username,
        "name": user.name,
        "avatar_template": basic_user(user)["avatar_template"],
        "role": role,
    })
}

/// Who is present in `room`: BasicUser merged with the presence metadata (§1.2 "Participant").
pub(super) fn participants(forum: &Forum, room: u64) -> Vec<Value> {
    let Some(present) = forum.presence.get(&room) else { return Vec::new() };
    present
        .iter()
        .filter_map(|(user, presence)| {
            let user = forum.users.get(user)?;
            let mut json = basic_user(user);
            json["role"] = json!(presence.role);
            json["is_muted"] = json!(presence.muted);
            json["is_deafened"] = json!(presence.deafened);
            json["hand_raised"] = json!(presence.hand_raised);
            json["hard_muted"] = json!(presence.hard_muted);
            json["idle_state"] = json!(presence.idle_state);
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

/// `RoomSerializer`, as `viewer` sees the room.
pub(super) fn room(forum: &Forum, room: &Room, viewer: &User) -> Value {
    let participants = participants(forum, room.id);
    let membership = forum.membership(room.id, viewer.id).map(|found| self::membership(forum, found));
    let member_count = forum.memberships.iter().filter(|membership| membership.room_id == room.id).count();
    json!({
        "id": room.id,
        "name": room.name,
        "slug": room.slug,
        "description": format!("About {}", room.name),
        "cooked_description": format!("<p>About {}</p>", room.name),
        "description_excerpt": format!("About {}", room.name),
        "public": room.public,
        "room_type": if room.stage { "stage" } else { "open" },
        "max_participants": room.max_participants,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "member_count": member_count,
        "active_participants": participants,
        "creator_id": room.creator,
        "can_manage": forum.can_manage(room, viewer),
        "live": false,
        "broadcast_layout": "speaker",
        "schedule": null,
        "next_session_at": null,
        "topic_id": null,
        "topic_url": null,
        "is_following": false,
        "broadcast_background": null,
        "broadcast_watermark": null,
        "has_youtube_stream_key": false,
        "archived": false,
        "membership": membership,
    })
}
