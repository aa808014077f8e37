//! The handlers that manage people in the meeting, with Meet's permissions and LiveKit effects:
//! `mute-participant/`, `update-participant/`, `remove-participant/`, `update-participant-role/`,
//! `toggle-hand/`, `rename/`; and LiveKit's `ListParticipants` over the simulated room.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fields::{CHAR, Char, Errors, REQUIRED, bool_field, char_field, dict_field, non_field, object};
use super::python::python_isoformat_now;
use super::responses::{BAD_REQUEST_PAGE, NEEDS_PRESENCE, NO_ROOM, detail, error, html, status_success};
use super::routes::{Auth, Call, Ctx, require_privileges};
use super::state::{Access, Room, Shared};
use super::tokens::{DEFAULT_SOURCES, verify_token};

/// `PARTICIPANT_FORBIDDEN_PERMISSION_FIELDS`.
const FORBIDDEN_PERMISSION_FIELDS: [&str; 3] = ["hidden", "recorder", "agent"];
/// `ParticipantPermission`'s fields (pydantic, `extra = "forbid"`).
const PERMISSION_FIELDS: [&str; 9] = [
    "can_subscribe",
    "can_publish",
    "can_publish_data",
    "can_publish_sources",
    "hidden",
    "recorder",
    "can_update_metadata",
    "agent",
    "can_subscribe_metrics",
];

/// `mute_participant`: room, `CanMuteParticipant`, serializer, the token caller's presence, then
/// LiveKit's `MutePublishedTrack`.
pub(super) fn mute(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    let token = match &ctx.auth {
        Auth::Token { identity, room, .. } => Some((identity.clone(), room.clone())),
        _ => None,
    };
    let allowed = if token.is_none() && room.is_admin(ctx.user()) {
        true
    } else if room.configuration.get("everyone_can_mute").and_then(Value::as_bool) == Some(false) {
        false
    } else {
        token.as_ref().is_some_and(|(_, token_room)| *token_room == room.id)
    };
    if !allowed {
        return Err(ctx.denied(None));
    }
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let identity = char_field(fields, "participant_identity", CHAR, &mut errors);
    let track_sid = char_field(fields, "track_sid", Char { max_length: Some(255), ..CHAR }, &mut errors);
    errors.finish()?;
    let (Some(identity), Some(track_sid)) = (identity, track_sid) else {
        return Err(non_field("Invalid data."));
    };
    let mut site = ctx.shared.lock();
    if let Some((caller, _)) = &token
        && !site.in_meeting(&room.id, caller)
    {
        return Err(error(StatusCode::FORBIDDEN, "Could not verify caller presence"));
    }
    let track = site
        .present_mut(&room.id, &identity)
        .and_then(|present| present.tracks.iter_mut().find(|track| track.sid == track_sid));
    match track {
        Some(track) => {
            track.muted = true;
            Ok(status_success())
        }
        None => Err(error(StatusCode::NOT_FOUND, "Participant not found")),
    }
}

/// `update_participant`: room, privileges, `UpdateParticipantSerializer`, LiveKit.
pub(super) fn update_participant(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let identity = char_field(fields, "participant_identity", CHAR, &mut errors);
    let metadata = dict_field(fields, "metadata", &mut errors);
    let attributes = dict_field(fields, "attributes", &mut errors);
    let permission = match fields.get("permission") {
        None | Some(Value::Null) => None,
        Some(permission) => match check_permission(permission) {
            Ok(()) => {
                // `validate_permission` raises `SuspiciousOperation`, which DRF does not handle:
                // Django's HTML 400, whatever the other fields' errors.
                if FORBIDDEN_PERMISSION_FIELDS.iter().any(|field| permission.get(*field).is_some_and(|v| !v.is_null()))
                {
                    return Err(html(StatusCode::BAD_REQUEST, BAD_REQUEST_PAGE));
                }
                Some(permission.clone())
            }
            Err(problem) => {
                errors.add("permission", &problem);
                None
            }
        },
    };
    let name = char_field(
        fields,
        "name",
        Char { required: false, allow_null: true, allow_blank: true, max_length: Some(255), ..CHAR },
        &mut errors,
    );
    errors.finish()?;
    let Some(identity) = identity else { return Err(non_field("Invalid data.")) };
    let given = metadata.is_some()
        || attributes.is_some()
        || permission.is_some()
        || name.as_deref().is_some_and(|n| !n.is_empty());
    if !given {
        return Err(non_field(
            "At least one of the following fields must be provided: metadata, attributes, permission, name.",
        ));
    }
    let attributes: Vec<(String, String)> = attributes
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.as_str().map_or_else(|| value.to_string(), String::from)))
        .collect();
    let updated =
        ctx.shared.lock().update_participant(&room.id, &identity, metadata, &attributes, permission, name.as_deref());
    if updated { Ok(status_success()) } else { Err(error(StatusCode::NOT_FOUND, "Participant not found")) }
}

/// pydantic's `ParticipantPermission` (`extra = "forbid"`), lax mode.
fn check_permission(permission: &Value) -> Result<(), String> {
    let Value::Object(fields) = permission else {
        return Err("Input should be a valid dictionary or instance of ParticipantPermission".into());
    };
    for (name, value) in fields {
        if !PERMISSION_FIELDS.contains(&name.as_str()) {
            return Err(format!("{name}: Extra inputs are not permitted"));
        }
        let valid = if name == "can_publish_sources" {
            value.as_array().is_some_and(|sources| {
                sources.iter().all(|source| source.as_str().is_some_and(|source| DEFAULT_SOURCES.contains(&source)))
            })
        } else {
            match value {
                Value::Null | Value::Bool(_) => true,
                Value::Number(number) => matches!(number.as_f64(), Some(value) if value == 0.0 || value == 1.0),
                Value::String(text) => matches!(
                    text.to_ascii_lowercase().as_str(),
                    "0" | "1" | "true" | "false" | "t" | "f" | "yes" | "no" | "y" | "n" | "on" | "off"
                ),
                _ => false,
            }
        };
        if !valid {
            return Err(format!("{name}: Input is not valid"));
        }
    }
    Ok(())
}

/// `remove_participant`: the lobby entry is cleared before LiveKit is asked.
pub(super) fn remove_participant(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let identity = char_field(object(&data)?, "participant_identity", CHAR, &mut errors);
    errors.finish()?;
    let Some(identity) = identity else { return Err(non_field("Invalid data.")) };
    let mut site = ctx.shared.lock();
    site.lobby.remove(&(room.id.clone(), identity.clone()));
    let Some(roster) = site.roster.get_mut(&room.id) else {
        return Err(error(StatusCode::NOT_FOUND, "Participant not found"));
    };
    let before = roster.len();
    roster.retain(|present| present.identity != identity);
    if roster.len() == before {
        return Err(error(StatusCode::NOT_FOUND, "Participant not found"));
    }
    Ok(status_success())
}

/// `update_participant_role`: room, `HasPrivilegesOnRoom`, `IsPresentInMeeting`, serializer,
/// the self check, then `RoomRoleService`'s errors (`{"error": …}`).
pub(super) fn update_role(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    require_privileges(ctx, &room)?;
    let actor = ctx.user().unwrap_or_default().to_string();
    if !ctx.shared.lock().in_meeting(&room.id, &actor) {
        return Err(ctx.denied(Some(NEEDS_PRESENCE)));
    }
    let data = ctx.call.data()?;
    let fields = object(&data)?;
    let mut errors = Errors::default();
    let identity = char_field(fields, "participant_identity", CHAR, &mut errors);
    let role = match fields.get("role") {
        None => {
            errors.add("role", REQUIRED);
            None
        }
        Some(Value::String(role)) if role == "member" || role == "administrator" => Some(role.clone()),
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), String::from);
            errors.add("role", &format!("\"{shown}\" is not a valid choice."));
            None
        }
    };
    errors.finish()?;
    let (Some(identity), Some(role)) = (identity, role) else { return Err(non_field("Invalid data.")) };
    if identity == actor {
        return Err(error(StatusCode::FORBIDDEN, "You cannot change your own role."));
    }
    if !ctx.shared.lock().in_meeting(&room.id, &identity) {
        return Err(error(StatusCode::NOT_FOUND, "Participant is not connected to this meeting."));
    }
    if ctx.account(&identity).is_none() {
        return Err(error(
            StatusCode::NOT_FOUND,
            "This participant has no user account and cannot be assigned a role.",
        ));
    }
    let mut site = ctx.shared.lock();
    let Some(found) = site.rooms.iter_mut().find(|found| found.id == room.id) else {
        return Err(detail(StatusCode::NOT_FOUND, NO_ROOM));
    };
    match found.accesses.iter_mut().find(|access| access.sub == identity) {
        Some(access) if access.role == "owner" => {
            return Err(error(StatusCode::FORBIDDEN, "Room owners cannot be demoted."));
        }
        Some(access) => access.role = role.clone(),
        None => found
            .accesses
            .insert(0, Access { id: uuid::Uuid::new_v4().to_string(), sub: identity.clone(), role: role.clone() }),
    }
    let synced = site.update_participant(&room.id, &identity, None, &[("room_role".into(), role.clone())], None, None);
    Ok(axum::Json(json!({ "role": role, "livekit_synced": synced })).into_response())
}

/// `HasLiveKitRoomAccess`: the token's room is this room; the token's identity.
fn token_for(ctx: &Ctx<'_>, room: &Room) -> Result<String, Response> {
    match &ctx.auth {
        Auth::Token { identity, room: token_room, .. } if *token_room == room.id => Ok(identity.clone()),
        _ => Err(ctx.denied(None)),
    }
}

/// `toggle_hand`: `handRaisedAt` = an ISO 8601 time, or `""` (which LiveKit deletes).
pub(super) fn toggle_hand(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    let identity = token_for(ctx, &room)?;
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let raised = bool_field(object(&data)?, "raised", &mut errors);
    errors.finish()?;
    let at = if raised == Some(true) { python_isoformat_now() } else { String::new() };
    let updated =
        ctx.shared.lock().update_participant(&room.id, &identity, None, &[("handRaisedAt".into(), at)], None, None);
    if updated { Ok(status_success()) } else { Err(error(StatusCode::NOT_FOUND, "Participant not found")) }
}

/// `rename`: `RenameParticipantSerializer` (1–255 characters, not blank).
pub(super) fn rename(ctx: &Ctx<'_>, key: &str) -> Result<Response, Response> {
    let room = ctx.room(key)?;
    let identity = token_for(ctx, &room)?;
    let data = ctx.call.data()?;
    let mut errors = Errors::default();
    let name = char_field(object(&data)?, "name", Char { min_length: 1, max_length: Some(255), ..CHAR }, &mut errors);
    errors.finish()?;
    let Some(name) = name else { return Err(non_field("Invalid data.")) };
    let updated = ctx.shared.lock().update_participant(&room.id, &identity, None, &[], None, Some(&name));
    if updated { Ok(status_success()) } else { Err(error(StatusCode::NOT_FOUND, "Participant not found")) }
}

/// LiveKit's `ListParticipants` over Twirp JSON, for the simulated room.
pub(super) fn list_participants(shared: &Shared, call: &Call) -> Response {
    let denied = || {
        (StatusCode::UNAUTHORIZED, axum::Json(json!({ "code": "unauthenticated", "msg": "permissions denied" })))
            .into_response()
    };
    let Some(token) = call.header("authorization").and_then(|value| value.strip_prefix("Bearer ")) else {
        return denied();
    };
    let Ok(claims) = verify_token(&shared.keys, token) else { return denied() };
    let room = serde_json::from_slice::<Value>(&call.body)
        .ok()
        .and_then(|body| body.get("room").and_then(Value::as_str).map(String::from))
        .unwrap_or_default();
    let admin = claims.pointer("/video/roomAdmin").and_then(Value::as_bool) == Some(true);
    if !admin || claims.pointer("/video/room").and_then(Value::as_str) != Some(room.as_str()) {
        return denied();
    }
    let site = shared.lock();
    let participants: Vec<Value> = site
        .roster
        .get(&room)
        .into_iter()
        .flatten()
        .map(|present| {
            let tracks: Vec<Value> = present
                .tracks
                .iter()
                .map(|track| {
                    let kind =
                        if track.source == "CAMERA" || track.source == "SCREEN_SHARE" { "VIDEO" } else { "AUDIO" };
                    json!({ "sid": track.sid, "type": kind, "source": track.source, "muted": track.muted })
                })
                .collect();
            json!({
                "sid": format!("PA_{}", present.identity), "identity": present.identity, "name": present.name,
                "state": "ACTIVE", "tracks": tracks, "metadata": present.metadata, "attributes": present.attributes,
            })
        })
        .collect();
    axum::Json(json!({ "participants": participants })).into_response()
}
