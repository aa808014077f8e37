//! The handlers that let people in: `retrieve` (the room, with a token when the caller may enter
//! directly), the lobby's `request-entry/`, and for owners and administrators
//! `waiting-participants/` and `enter/`.

use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AccessLevel;
use super::fields::{CHAR, Errors, REQUIRED, bool_field, char_field, non_field, object};
use super::python::slugify;
use super::responses::{NO_ROOM, detail, message};
use super::routes::{Ctx, require_privileges};
use super::state::Waiter;
use super::tokens::{generate_color, mint};

/// `LOBBY_WAITING_TIMEOUT`.
const WAITING_TIMEOUT: Duration = Duration::from_secs(3);
/// `LOBBY_ACCEPTED_TIMEOUT`.
const ACCEPTED_TIMEOUT: Duration = Duration::from_secs(21_600);
/// `LOBBY_DENIED_TIMEOUT`.
const DENIED_TIMEOUT: Duration = Duration::from_secs(5);

/// `RoomViewSet.retrieve`.
pub(super) fn retrieve(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let username = ctx.call.query.get("username").map(String::as_str);
    let user = ctx.user();
    let Ok(room) = ctx.room(key) else {
        if !ctx.shared.lock().allow_unregistered_rooms {
            return Err(detail(StatusCode::NOT_FOUND, NO_ROOM));
        }
        let slug = slugify(key);
        let token = mint(ctx.shared, &slug, user, username, None, None, None, None);
        let livekit = json!({ "url": ctx.shared.lock().livekit_url, "room": slug, "token": token });
        return Ok(axum::Json(json!({
            "id": null, "slug": slug, "is_administrable": false, "access_level": "public", "livekit": livekit,
        }))
        .into_response());
    };
    let role = room.role(user);
    let mut body = json!({
        "id": room.id, "name": room.name, "slug": room.slug, "configuration": room.configuration,
        "access_level": room.access_level.as_str(), "pin_code": room.pin_code,
    });
    if room.is_admin(user) {
        let site = ctx.shared.lock();
        let accesses: Vec<Value> = room
            .accesses
            .iter()
            .filter_map(|access| {
                let account = site.user(&access.sub)?;
                Some(json!({
                    "id": access.id,
                    "user": {
                        "id": account.id, "email": account.email, "full_name": account.full_name,
                        "short_name": account.short_name, "timezone": "UTC", "language": "en-us",
                        "default_room_access_level": null, "default_room_configuration": {},
                    },
                    "resource": room.id,
                    "role": access.role,
                }))
            })
            .collect();
        body["accesses"] = Value::Array(accesses);
    }
    let should_access =
        (room.access_level == AccessLevel::Trusted && user.is_some()) || role.is_some() || room.is_public();
    if should_access {
        let token = mint(ctx.shared, &room.id, user, username, None, room.configured_sources(), role.as_deref(), None);
        body["livekit"] = json!({ "url": ctx.shared.lock().livekit_url, "room": room.id, "token": token });
    } else if let Some(fields) = body.as_object_mut() {
        fields.remove("pin_code");
    }
    Ok(axum::Json(body).into_response())
}

/// `RoomViewSet.request_entry` + `LobbyService.request_entry`.
pub(super) fn request_entry(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let username = char_field(object(&data)?, "username", CHAR, &mut errors);
    errors.finish()?;
    let username = username.unwrap_or_default();
    let room = ctx.room(key)?;
    let participant_id =
        ctx.call.cookies.get("lobbyParticipantId").cloned().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let user = ctx.user();
    let role = room.role(user);
    let lobby_key = (room.id.clone(), participant_id.clone());
    let existing = {
        let mut site = ctx.shared.lock();
        site.purge_lobby();
        site.lobby.get(&lobby_key).cloned()
    };
    let bypass = room.is_public()
        || (room.access_level == AccessLevel::Trusted && user.is_some())
        || (room.access_level == AccessLevel::Restricted && user.is_some() && role.is_some());
    let token = |color: &str| {
        let token = mint(
            ctx.shared,
            &room.id,
            user,
            Some(&username),
            Some(color.to_string()),
            room.configured_sources(),
            role.as_deref(),
            Some(&participant_id),
        );
        json!({ "url": ctx.shared.lock().livekit_url, "room": room.id, "token": token })
    };
    let (participant, livekit) = if bypass {
        // The accepted participant is not stored: only an existing entry's copy is changed.
        let mut participant = existing.unwrap_or_else(|| Waiter {
            username: username.clone(),
            color: generate_color(&participant_id),
            status: "accepted",
            expires: Instant::now(),
        });
        participant.status = "accepted";
        let livekit = token(&participant.color);
        (participant, livekit)
    } else {
        match existing {
            None => {
                let waiter = Waiter {
                    username: username.clone(),
                    color: generate_color(&participant_id),
                    status: "waiting",
                    expires: Instant::now() + WAITING_TIMEOUT,
                };
                let mut site = ctx.shared.lock();
                site.notifications += 1;
                site.lobby.insert(lobby_key, waiter.clone());
                (waiter, Value::Null)
            }
            Some(waiter) if waiter.status == "waiting" => {
                if let Some(stored) = ctx.shared.lock().lobby.get_mut(&lobby_key) {
                    stored.expires = Instant::now() + WAITING_TIMEOUT;
                }
                (waiter, Value::Null)
            }
            Some(waiter) if waiter.status == "accepted" => {
                let livekit = token(&waiter.color);
                (waiter, livekit)
            }
            Some(waiter) => (waiter, Value::Null),
        }
    };
    let mut response = axum::Json(json!({
        "status": participant.status, "username": participant.username, "id": participant_id,
        "color": participant.color, "livekit": livekit,
    }))
    .into_response();
    // `prepare_response` sets the cookie on every answer.
    let cookie = format!("lobbyParticipantId={participant_id}; HttpOnly; Path=/; SameSite=Lax; Secure");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `list_waiting_participants`.
pub(super) fn waiting(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    if room.is_public() {
        return Ok(axum::Json(json!({ "participants": [] })).into_response());
    }
    let mut site = ctx.shared.lock();
    site.purge_lobby();
    let participants: Vec<Value> = site
        .lobby
        .iter()
        .filter(|((room_id, _), waiter)| *room_id == room.id && waiter.status == "waiting")
        .map(|((_, id), waiter)| json!({ "status": waiter.status, "username": waiter.username, "id": id, "color": waiter.color }))
        .collect();
    Ok(axum::Json(json!({ "participants": participants })).into_response())
}

/// `allow_participant_to_enter`: serializer, then the room and its object permission.
pub(super) fn enter(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let participant_id = match fields.get("participant_id") {
        None => {
            errors.add("participant_id", REQUIRED);
            None
        }
        Some(Value::Null) => {
            errors.add("participant_id", "This field may not be null.");
            None
        }
        Some(value) => {
            let parsed = value.as_str().and_then(|text| uuid::Uuid::parse_str(text.trim()).ok());
            if parsed.is_none() {
                errors.add("participant_id", "Must be a valid UUID.");
            }
            parsed
        }
    };
    let allow = bool_field(fields, "allow_entry", &mut errors);
    errors.finish()?;
    let (Some(participant_id), Some(allow)) = (participant_id, allow) else {
        return Err(non_field("Invalid data."));
    };
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    if room.is_public() {
        return Err(message(StatusCode::NOT_FOUND, "Room has no lobby system."));
    }
    let mut site = ctx.shared.lock();
    site.purge_lobby();
    let Some(waiter) = site.lobby.get_mut(&(room.id.clone(), participant_id.to_string())) else {
        return Err(message(StatusCode::NOT_FOUND, "Participant not found."));
    };
    if allow {
        waiter.status = "accepted";
        waiter.expires = Instant::now() + ACCEPTED_TIMEOUT;
    } else {
        waiter.status = "denied";
        waiter.expires = Instant::now() + DENIED_TIMEOUT;
    }
    Ok(message(StatusCode::OK, "Participant was updated."))
}
