//! The handlers that need the manage permission (CONTROL_PLANES.md §1.1 Guardian, §1.2): the
//! room's memberships (invite to speak, move to the audience, make moderator), muting others,
//! hard mute, kick and ban.
//!
//! Like the plugin's `RoomServiceClient`, a membership change for a present user and a hard
//! mute also update the participant in LiveKit: after the forum's state changed and before it
//! answers, each permission sent whole; a failed call is logged and recorded, never the
//! request's error, as the plugin rescues it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::LivekitUpdate;
use super::layers::CurrentUser;
use super::params::Params;
use super::responses::{self, Answer, Refusal, no_content, ok, success_ok};
use super::state::{Forum, MembershipRole, Room, Shared, User, presence_role};
use crate::PublishRights;

/// How long a kick keeps a user out (Redis key TTL).
const KICK_DURATION: Duration = Duration::from_secs(300);

/// The room `id` names, if `user` may manage it: 404 before 403, as `load_room` runs before
/// the Guardian's check.
fn managed_room(forum: &Forum, id: &str, user: &User) -> Result<Room, Refusal> {
    let room = forum.find_room(id).ok_or(Refusal::NotFound)?;
    if !forum.can_manage(&room, user) {
        return Err(Refusal::InvalidAccess);
    }
    Ok(room)
}

/// The user a call names by `user_id`: 400 without one, 404 if there is no such user.
fn target(forum: &Forum, params: &Params) -> Result<u64, Refusal> {
    let target = params.u64("user_id").ok_or(Refusal::ParamMissing("user_id"))?;
    if !forum.users.contains_key(&target) {
        return Err(Refusal::NotFound);
    }
    Ok(target)
}

pub(super) async fn memberships(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        let memberships: Vec<Value> = forum
            .memberships
            .iter()
            .filter(|membership| membership.room_id == room.id)
            .map(|membership| responses::membership(forum, membership))
            .collect();
        Ok(ok(json!({ "memberships": memberships })))
    })
}

/// `POST memberships`: creates or replaces the membership and, for a present user, applies the
/// role live (metadata, `hand_raised: false`, `role_change` event, LiveKit).
pub(super) async fn create_membership(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    let (response, updates) = shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        assign_role(forum, &room, &params)
    })?;
    tell_livekit(&shared, updates).await;
    Ok(response)
}

fn assign_role(forum: &mut Forum, room: &Room, params: &Params) -> Result<(Response, Vec<LivekitUpdate>), Refusal> {
    let target = match (params.u64("user_id"), params.text("username")) {
        (Some(id), _) => forum.users.get(&id).cloned(),
        (None, Some(username)) => {
            forum.users.values().find(|user| user.username.eq_ignore_ascii_case(&username)).cloned()
        }
        (None, None) => return Err(Refusal::ParamMissing("user_id")),
    };
    let target = target.ok_or(Refusal::NotFound)?;
    let Some(role) = params.text("role").and_then(|role| MembershipRole::parse(&role)) else {
        return Err(Refusal::InvalidParameters("role must be participant, speaker or moderator".into()));
    };
    let membership = forum.upsert_membership(room.id, target.id, role);
    let live_role = if room.creator == Some(target.id) { "moderator" } else { presence_role(room.stage, role) };
    let mut updates = Vec::new();
    if let Some(presence) = forum.presence_mut(room.id, target.id) {
        presence.role = live_role.to_string();
        presence.hand_raised = false;
        let channel = format!("/audioroom/rooms/{}", room.id);
        forum.bus.publish(
            &channel,
            json!({ "type": "role_change", "room_id": room.id, "user_id": target.id, "role": live_role }),
            None,
        );
        forum.publish_participants(room.id);
        // `sync_livekit_participant_metadata`: the metadata everywhere; the permission in stage
        // rooms, from the membership's role (a creator's too), so that a promoted listener
        // speaks and a demoted speaker falls silent without reconnecting.
        let metadata = responses::participant_metadata(&target, live_role);
        updates.push(LivekitUpdate { metadata: Some(metadata.to_string()), ..LivekitUpdate::new(room, target.id) });
        if room.stage {
            let speaks = matches!(role, MembershipRole::Moderator | MembershipRole::Speaker);
            let rights = PublishRights { can_publish: speaks, can_publish_data: speaks };
            updates.push(LivekitUpdate::permission(room, target.id, rights));
        }
    }
    Ok((ok(json!({ "membership": responses::membership(forum, &membership) })), updates))
}

pub(super) async fn update_membership(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path((id, member)): Path<(String, String)>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        let index = membership_index(forum, &room, &member)?;
        let role = params.text("role").and_then(|role| MembershipRole::parse(&role));
        forum.memberships[index].role = role.ok_or(Refusal::ParamMissing("role"))?;
        let membership = forum.memberships[index].clone();
        Ok(ok(json!({ "membership": responses::membership(forum, &membership) })))
    })
}

pub(super) async fn delete_membership(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path((id, member)): Path<(String, String)>,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        let index = membership_index(forum, &room, &member)?;
        forum.memberships.remove(index);
        Ok(no_content())
    })
}

/// Where the membership `member` (a numeric id) of `room` is in the forum's list.
fn membership_index(forum: &Forum, room: &Room, member: &str) -> Result<usize, Refusal> {
    let id = member.parse::<u64>().map_err(|_| Refusal::NotFound)?;
    let index = forum.memberships.iter().position(|membership| membership.id == id && membership.room_id == room.id);
    index.ok_or(Refusal::NotFound)
}

/// `mute_participant`: the forum's record of the mute (the plugin's LiveKit `MutePublishedTrack`
/// is not imitated).
pub(super) async fn mute_participant(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = managed_room(forum, &id, &user)?;
        let target = target(forum, &params)?;
        let muted = params.bool("muted").ok_or(Refusal::ParamMissing("muted"))?;
        let Some(presence) = forum.presence_mut(room.id, target) else {
            let message = "Participant is not in the room or has no audio track.";
            return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, message));
        };
        presence.muted = muted;
        forum.publish_participants(room.id);
        Ok(no_content())
    })
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

async fn set_hard_mute(shared: &Shared, user: &User, id: &str, params: &Params, muted: bool) -> Answer {
    let update = shared.change(|forum| {
        let room = managed_room(forum, id, user)?;
        let target = target(forum, params)?;
        let Some(presence) = forum.presence_mut(room.id, target) else {
            return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, "Participant is not in the room."));
        };
        presence.hard_muted = muted;
        forum.publish_participants(room.id);
        // `hard_mute`/`hard_unmute` set both publish rights, in every room type.
        let rights = PublishRights { can_publish: !muted, can_publish_data: !muted };
        Ok(LivekitUpdate::permission(&room, target, rights))
    })?;
    tell_livekit(shared, vec![update]).await;
    Ok(success_ok())
}

/// `DELETE kick`: out for [`KICK_DURATION`].
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

/// Kick or ban: the user leaves the room's presence and is told alone (`kicked`); LiveKit is not
/// asked to evict (§1.2: the client is trusted to leave).
fn remove(forum: &mut Forum, user: &User, id: &str, params: &Params, removal: Removal) -> Answer {
    let room = managed_room(forum, id, user)?;
    let target = target(forum, params)?;
    if target == user.id || room.creator == Some(target) {
        return Err(Refusal::InvalidParameters("You cannot remove yourself or the room's creator.".into()));
    }
    match removal {
        Removal::Kick => {
            forum.kicked.insert((room.id, target), Instant::now() + KICK_DURATION);
        }
        Removal::Ban => {
            forum.banned.insert((room.id, target));
        }
    }
    if let Some(present) = forum.presence.get_mut(&room.id) {
        present.remove(&target);
    }
    let channel = format!("/audioroom/rooms/{}", room.id);
    forum.bus.publish(&channel, json!({ "type": "kicked", "room_id": room.id }), Some(vec![target]));
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
        let target = target(forum, &params)?;
        forum.kicked.remove(&(room.id, target));
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
        let target = target(forum, &params)?;
        forum.banned.remove(&(room.id, target));
        Ok(success_ok())
    })
}

/// Makes the RoomService calls a change implies, in order, recording each with LiveKit's answer.
async fn tell_livekit(shared: &Shared, updates: Vec<LivekitUpdate>) {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, Method, Request, Uri, header};
    use livekit_api::access_token::TokenVerifier;
    use livekit_protocol as proto;
    use prost::Message as _;
    use tower::ServiceExt as _;

    use super::super::{Handle, NewRoom, routes, start};
    use super::*;
    use crate::{LivekitKeys, Running, serve};

    const API_KEY: &str = "devkey";
    const API_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    /// What the stand-in LiveKit received: the path, the bearer token and the request.
    type Seen = Arc<Mutex<Vec<(String, String, proto::UpdateParticipantRequest)>>>;

    /// A stand-in for LiveKit's RoomService that records each `UpdateParticipant` and answers
    /// like the real one (a protobuf `ParticipantInfo`).
    async fn fake_livekit() -> (Running, Seen) {
        let seen: Seen = Arc::default();
        let recorded = Arc::clone(&seen);
        let router = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let recorded = Arc::clone(&recorded);
            async move {
                let request =
                    proto::UpdateParticipantRequest::decode(body).expect("a protobuf UpdateParticipantRequest");
                let bearer = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_string();
                recorded.lock().expect("lock").push((uri.path().to_string(), bearer, request));
                let answer = proto::ParticipantInfo::default().encode_to_vec();
                ([(header::CONTENT_TYPE, "application/protobuf")], answer)
            }
        });
        (serve(router).await.expect("the stand-in LiveKit starts"), seen)
    }

    fn keys(url: String) -> LivekitKeys {
        LivekitKeys { url, api_key: API_KEY.into(), api_secret: API_SECRET.into() }
    }

    /// Sends one request through the forum's own router as `key`.
    async fn call(handle: &Handle, key: &str, method: Method, path: &str, body: Value) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("User-Api-Key", key)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a request");
        let router = routes::router(Arc::clone(&handle.shared));
        router.oneshot(request).await.map(|response| response.status()).unwrap_or_else(|never| match never {})
    }

    fn permission(request: &proto::UpdateParticipantRequest) -> Option<(bool, bool, bool)> {
        request
            .permission
            .as_ref()
            .map(|permission| (permission.can_subscribe, permission.can_publish, permission.can_publish_data))
    }

    #[tokio::test]
    async fn invite_to_speak_and_hard_mute_update_the_whole_permission_in_livekit() {
        let (livekit, seen) = fake_livekit().await;
        let (_forum, handle) = start(keys(format!("ws://{}", livekit.address))).await.expect("forum");
        let host = handle.add_user("host", "Host", true);
        let ear = handle.add_user("ear", "Ear", false);
        let stage = handle.add_room(NewRoom::stage("stage", "The Stage"));
        handle.set_present(stage, ear.id);
        let memberships = format!("/audioroom/rooms/{stage}/memberships");

        let invited =
            call(&handle, &host.api_key, Method::POST, &memberships, json!({"username": "ear", "role": "speaker"}));
        assert_eq!(invited.await, StatusCode::OK, "inviting ear to speak succeeds");
        {
            let seen = seen.lock().expect("lock");
            assert_eq!(seen.len(), 2, "the metadata, then the permission: {seen:?}");
            for (path, bearer, request) in seen.iter() {
                assert_eq!(path, "/twirp/livekit.RoomService/UpdateParticipant");
                assert_eq!((request.room.as_str(), request.identity.clone()), ("stage", ear.id.to_string()));
                let claims =
                    TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(bearer).expect("signed with the keys");
                assert!(claims.video.room_admin && claims.video.room == "stage", "a roomAdmin token for the room");
            }
            let metadata: Value = serde_json::from_str(&seen[0].2.metadata).expect("JSON metadata");
            assert_eq!(metadata["role"], "speaker", "the metadata carries the new role: {metadata}");
            assert_eq!(permission(&seen[0].2), None, "the metadata call leaves the permission alone");
            assert_eq!(permission(&seen[1].2), Some((true, true, true)), "subscribe, publish and data, whole");
        }

        let demoted =
            call(&handle, &host.api_key, Method::POST, &memberships, json!({"user_id": ear.id, "role": "participant"}));
        assert_eq!(demoted.await, StatusCode::OK);
        assert_eq!(permission(&seen.lock().expect("lock")[3].2), Some((true, false, false)), "back to the audience");

        let hard_mute = format!("/audioroom/rooms/{stage}/hard_mute");
        assert_eq!(
            call(&handle, &host.api_key, Method::POST, &hard_mute, json!({"user_id": ear.id})).await,
            StatusCode::OK
        );
        let hard_unmute = format!("/audioroom/rooms/{stage}/hard_unmute");
        assert_eq!(
            call(&handle, &host.api_key, Method::POST, &hard_unmute, json!({"user_id": ear.id})).await,
            StatusCode::OK
        );
        let seen = seen.lock().expect("lock");
        assert_eq!(
            permission(&seen[4].2),
            Some((true, false, false)),
            "hard mute revokes publishing, keeps subscribing"
        );
        assert_eq!(permission(&seen[5].2), Some((true, true, true)), "hard unmute restores it");
        let updates = handle.livekit_updates();
        assert_eq!(updates.len(), 6, "every call is recorded: {updates:?}");
        assert!(updates.iter().all(|update| update.outcome.is_ok()), "LiveKit accepted each: {updates:?}");
    }

    #[tokio::test]
    async fn open_rooms_change_only_metadata_and_a_livekit_failure_is_logged_not_returned() {
        let (livekit, seen) = fake_livekit().await;
        let (_forum, handle) = start(keys(format!("ws://{}", livekit.address))).await.expect("forum");
        let host = handle.add_user("host", "Host", true);
        let ear = handle.add_user("ear", "Ear", false);
        let porch = handle.add_room(NewRoom::open("porch", "The Porch"));
        handle.set_present(porch, ear.id);
        let memberships = format!("/audioroom/rooms/{porch}/memberships");
        let made =
            call(&handle, &host.api_key, Method::POST, &memberships, json!({"username": "ear", "role": "moderator"}));
        assert_eq!(made.await, StatusCode::OK);
        let calls: Vec<_> = seen.lock().expect("lock").iter().map(|(_, _, request)| permission(request)).collect();
        assert_eq!(calls, vec![None], "an open room's membership change sends metadata only");

        // Nothing listens on a port freed just now: the forum still answers, and records the failure.
        let closed =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("port");
        let (_forum, handle) = start(keys(format!("ws://{closed}"))).await.expect("forum");
        let host = handle.add_user("host", "Host", true);
        let ear = handle.add_user("ear", "Ear", false);
        let stage = handle.add_room(NewRoom::stage("stage", "The Stage"));
        handle.set_present(stage, ear.id);
        let hard_mute = format!("/audioroom/rooms/{stage}/hard_mute");
        assert_eq!(
            call(&handle, &host.api_key, Method::POST, &hard_mute, json!({"user_id": ear.id})).await,
            StatusCode::OK
        );
        let updates = handle.livekit_updates();
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert!(updates[0].outcome.is_err(), "the unreachable LiveKit is recorded as a failure: {updates:?}");
        assert!(
            handle.presence(stage, ear.id).is_some_and(|presence| presence.hard_muted),
            "the forum's state changed"
        );
    }
}
