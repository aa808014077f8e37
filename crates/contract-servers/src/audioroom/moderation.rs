//! The handlers that need the manage permission (`rooms_controller.rb`'s moderation actions and
//! `room_memberships_controller.rb`), in the controllers' order of checks: the room's
//! memberships (invite to speak, move to the audience, make moderator), muting others, hard
//! mute, kick and ban.
//!
//! Like the plugin's `RoomServiceClient`, they drive LiveKit when it is configured:
//! `mute_participant` finds the user's audio track and mutes it (`GetParticipant`,
//! `MutePublishedTrack`) and answers 422 when that fails; hard mute and a membership change for
//! a present user update the participant (`UpdateParticipant`), each permission sent whole, a
//! failure logged and recorded but never the request's error, as the plugin rescues it.
//!
//! None of them looks the target user up (kick, ban and hard mute work on any id) or checks
//! presence, except `mute_participant`, which needs the user in the room's participants set.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::layers::CurrentUser;
use super::params::Params;
use super::responses::{self, Answer, Refusal, no_content, ok, success_ok, text};
use super::state::{Forum, MembershipRole, Room, Shared, User, cast_bool, ruby_to_i};
use super::{LivekitCall, LivekitUpdate};
use crate::PublishRights;

/// `load_room` (404), then `ensure_can_manage_audioroom_room!` (403).
fn managed_room(forum: &Forum, id: &str, user: &User) -> Result<Room, Refusal> {
    let room = forum.find_room(id).ok_or(Refusal::RecordNotFound)?;
    if !forum.can_manage(&room, user) {
        return Err(Refusal::InvalidAccess);
    }
    Ok(room)
}

/// The memberships controller's `Room.find(params[:room_id])` (a numeric id only), then the
/// manage permission.
fn managed_room_by_id(forum: &Forum, id: &str, user: &User) -> Result<Room, Refusal> {
    let room = forum.find_room_by_id(id).ok_or(Refusal::RecordNotFound)?;
    if !forum.can_manage(&room, user) {
        return Err(Refusal::InvalidAccess);
    }
    Ok(room)
}

/// `params.require(:user_id).to_i`: no user lookup, so any id (or text, which is 0) goes.
fn target(params: &Params) -> Result<i64, Refusal> {
    params.require("user_id").map(ruby_to_i)
}

/// Ruby truthiness of a param: present and neither `nil` nor `false`.
fn truthy(value: Option<&Value>) -> bool {
    !matches!(value, None | Some(Value::Null) | Some(Value::Bool(false)))
}

pub(super) async fn memberships(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room_by_id(forum, &id, &user)?;
        let memberships: Vec<Value> = forum
            .memberships
            .iter()
            .filter(|membership| membership.room_id == room.id)
            .map(|membership| responses::membership(forum, membership))
            .collect();
        Ok(ok(json!({ "memberships": memberships })))
    })
}

/// `POST memberships`: the user by `user_id` (`User.find`, 404) or `username` (none found is a
/// membership without a user, refused by validation: 422), else 400; a blank or unknown `role`
/// is `participant`. Creates or replaces the membership and, for a present user, applies the
/// role live.
pub(super) async fn create_membership(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    let (response, updates) = shared.change(|forum| {
        let room = managed_room_by_id(forum, &id, &user)?;
        let member = if truthy(params.get("user_id")) {
            let id = params.get("user_id").map(ruby_to_i);
            Some(id.and_then(|id| forum.users.get(&id).cloned()).ok_or(Refusal::RecordNotFound)?)
        } else if truthy(params.get("username")) {
            let username = params.text("username").unwrap_or_default();
            forum.users.values().find(|user| user.username.eq_ignore_ascii_case(&username)).cloned()
        } else {
            return Err(Refusal::invalid_parameters("Discourse::InvalidParameters"));
        };
        let role = MembershipRole::value(params.get("role"));
        // `find_or_initialize_by(user: nil)` + `save!`: the validations refuse it.
        let member = member
            .ok_or_else(|| Refusal::RecordInvalid(vec!["User must exist".into(), "User can't be blank".into()]))?;
        let membership = forum.upsert_membership(room.id, member.id, role);
        let updates = apply_role_live(forum, &room, &member, role);
        Ok((ok(json!({ "membership": responses::membership(forum, &membership) })), updates))
    })?;
    tell_livekit(&shared, updates).await;
    Ok(response)
}

/// What `create` and `update` do for a present user: the metadata's `role` becomes the
/// membership's `role_name` (`participant`, also in a stage room) and `hand_raised` false; a
/// `role_change` to the present participants; the participants; and LiveKit's metadata (with
/// the broadcast role: `listener` for a stage participant, `participant` for everyone but the
/// creator in an open room) and, in stage rooms, the permission. Returns the LiveKit calls.
fn apply_role_live(forum: &mut Forum, room: &Room, member: &User, role: MembershipRole) -> Vec<LivekitUpdate> {
    if !forum.is_tracked(room.id, member.id) {
        return Vec::new();
    }
    forum.edit_metadata(room.id, member.id, Instant::now(), |metadata| {
        metadata.insert("role".into(), json!(role.name()));
        metadata.insert("hand_raised".into(), json!(false));
    });
    forum.publish_role_change(room.id, member.id, role.name());
    forum.publish_participants(room.id);
    let broadcast_role = Forum::broadcast_role(room, member.id, role.name());
    let metadata = responses::participant_metadata(member, broadcast_role);
    let mut updates =
        vec![LivekitUpdate { metadata: Some(metadata.to_string()), ..LivekitUpdate::new(room, member.id) }];
    if room.stage {
        let speaks = role.can_speak();
        updates.push(LivekitUpdate::permission(
            room,
            member.id,
            PublishRights { can_publish: speaks, can_publish_data: speaks },
        ));
    }
    updates
}

/// `PUT/PATCH memberships/:id`: the membership (404), then `params.require(:role)` (400), then
/// the same live update as `create`.
pub(super) async fn update_membership(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path((id, member)): Path<(String, String)>,
    params: Params,
) -> Answer {
    let (response, updates) = shared.change(|forum| {
        let room = managed_room_by_id(forum, &id, &user)?;
        let index = membership_index(forum, &room, &member)?;
        let role = MembershipRole::value(Some(params.require("role")?));
        forum.memberships[index].role = role;
        let membership = forum.memberships[index].clone();
        let updates = match forum.users.get(&membership.user_id).cloned() {
            Some(member) => apply_role_live(forum, &room, &member, role),
            None => Vec::new(),
        };
        Ok((ok(json!({ "membership": responses::membership(forum, &membership) })), updates))
    })?;
    tell_livekit(&shared, updates).await;
    Ok(response)
}

pub(super) async fn delete_membership(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path((id, member)): Path<(String, String)>,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room_by_id(forum, &id, &user)?;
        let index = membership_index(forum, &room, &member)?;
        forum.memberships.remove(index);
        Ok(no_content())
    })
}

/// `@room.room_memberships.find(params[:id])`: a membership of this room, else 404.
fn membership_index(forum: &Forum, room: &Room, member: &str) -> Result<usize, Refusal> {
    let id =
        super::state::rails_integer(member).and_then(|id| u64::try_from(id).ok()).ok_or(Refusal::RecordNotFound)?;
    let index = forum.memberships.iter().position(|membership| membership.id == id && membership.room_id == room.id);
    index.ok_or(Refusal::RecordNotFound)
}

/// `mute_participant`: the user must be in the room's participants set (422), then LiveKit
/// mutes their audio track (422 when LiveKit is not configured, the participant or the track is
/// not there, or the call fails); only then does the metadata say `is_muted`.
pub(super) async fn mute_participant(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    let (room, target, muted, configured) = shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        let target = target(&params)?;
        let muted = cast_bool(params.require("muted")?).unwrap_or(false);
        if !forum.is_tracked(room.id, target) {
            return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, text::PARTICIPANT_NOT_FOUND));
        }
        Ok((room, target, muted, forum.livekit_configured))
    })?;
    let muted_in_livekit = configured && mute_in_livekit(&shared, &room, target, muted).await;
    if !muted_in_livekit {
        return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, text::PARTICIPANT_NOT_FOUND));
    }
    shared.change(|forum| {
        forum.edit_metadata(room.id, target, Instant::now(), |metadata| {
            metadata.insert("is_muted".into(), json!(muted));
        });
        forum.publish_participants(room.id);
    });
    Ok(no_content())
}

/// `RoomServiceClient.mute_participant`: `true` once LiveKit muted the audio track.
async fn mute_in_livekit(shared: &Shared, room: &Room, target: i64, muted: bool) -> bool {
    let outcome = shared.keys.mute_audio_track(&room.slug, &target.to_string(), muted).await;
    let (recorded, done) = match outcome {
        Ok(true) => (Ok(()), true),
        Ok(false) => (Err("the participant publishes no audio track".to_string()), false),
        Err(error) => (Err(error), false),
    };
    if let Err(error) = &recorded {
        tracing::warn!(room = %room.slug, identity = target, %error, "LiveKit MutePublishedTrack failed");
    }
    shared.lock().livekit_calls.push(LivekitCall::new("MutePublishedTrack", room, Some(target), recorded));
    done
}

pub(super) async fn hard_mute(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    set_hard_mute(&shared, &user, &id, &params, true).await
}

pub(super) async fn hard_unmute(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    set_hard_mute(&shared, &user, &id, &params, false).await
}

/// `hard_mute`/`hard_unmute`: LiveKit's permission first (both publish rights, in every room
/// type), then the metadata's `hard_muted`, for anyone, present or not.
async fn set_hard_mute(shared: &Shared, user: &User, id: &str, params: &Params, muted: bool) -> Answer {
    let (room, target) = shared.change(|forum| {
        let room = managed_room(forum, id, user)?;
        Ok::<_, Refusal>((room, target(params)?))
    })?;
    let rights = PublishRights { can_publish: !muted, can_publish_data: !muted };
    tell_livekit(shared, vec![LivekitUpdate::permission(&room, target, rights)]).await;
    shared.change(|forum| {
        forum.edit_metadata(room.id, target, Instant::now(), |metadata| {
            metadata.insert("hard_muted".into(), json!(muted));
        });
        forum.publish_participants(room.id);
    });
    Ok(success_ok())
}

/// `DELETE kick`: out of the room and into its kicked set for 300 s.
pub(super) async fn kick(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| remove(forum, &user, &id, &params, Removal::Kick))
}

/// `POST ban`: out for good.
pub(super) async fn ban(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| remove(forum, &user, &id, &params, Removal::Ban))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Kick,
    Ban,
}

/// Kick or ban: not oneself, not the creator (two `InvalidParameters` 400s); the session
/// closes, the user leaves the participants set and is told alone (`kicked`). LiveKit is not
/// asked to evict: the client is trusted to leave.
fn remove(forum: &mut Forum, user: &User, id: &str, params: &Params, removal: Removal) -> Answer {
    let room = managed_room(forum, id, user)?;
    let target = target(params)?;
    if target == user.id {
        return Err(Refusal::invalid_parameters(text::CANNOT_KICK_SELF));
    }
    if target == room.creator {
        return Err(Refusal::invalid_parameters(text::CANNOT_KICK_CREATOR));
    }
    forum.close_session_for(room.id, target);
    match removal {
        Removal::Kick => forum.kick(room.id, target, Instant::now()),
        Removal::Ban => {
            forum.untrack(room.id, target);
            forum.banned.insert((room.id, target));
        }
    }
    forum.publish_kick(room.id, target);
    forum.publish_participants(room.id);
    Ok(no_content())
}

pub(super) async fn unkick(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        forum.unkick(room.id, target(&params)?);
        Ok(success_ok())
    })
}

pub(super) async fn unban(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        let target = target(&params)?;
        forum.banned.remove(&(room.id, target));
        Ok(success_ok())
    })
}

/// Makes the RoomService `UpdateParticipant` calls a change implies, in order, recording each
/// with LiveKit's answer; none when LiveKit is not configured (`build_client` is `nil`).
async fn tell_livekit(shared: &Shared, updates: Vec<LivekitUpdate>) {
    if !shared.lock().livekit_configured {
        return;
    }
    for mut update in updates {
        let outcome = shared
            .keys
            .update_participant(&update.room, &update.identity, update.metadata.as_deref(), update.permission)
            .await;
        if let Err(error) = &outcome {
            tracing::warn!(room = %update.room, identity = %update.identity, %error, "LiveKit UpdateParticipant failed");
        }
        update.outcome = outcome;
        shared.lock().livekit_updates.push(update);
    }
}
