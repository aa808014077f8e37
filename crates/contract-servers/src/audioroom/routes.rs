//! The forum's routes (CONTROL_PLANES.md §1.2), each named by its [`Endpoint`], with the layers
//! of [`super::layers`] around them; and the handlers a participant calls (rooms, join,
//! heartbeat, leave, own mute, hand). The manage-permission ones are in [`super::moderation`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use livekit_api::access_token::{AccessToken, VideoGrants};
use serde_json::{Value, json};

use super::layers::{self, CurrentUser, Endpoints, Recorder};
use super::params::Params;
use super::responses::{self, Answer, Refusal, basic_user, no_content, ok};
use super::state::{Forum, MembershipRole, Room, Shared, User};
use super::{Endpoint, Presence, bus, moderation, user_api_key};
use crate::LivekitKeys;

/// The Ruby SDK's default token TTL (§1.3).
const TOKEN_TTL: Duration = Duration::from_secs(14_400);

/// The forum's whole HTTP surface over `shared`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let keyed = Routes::new()
        .get_json(Endpoint::CurrentSession, "/session/current", current_session)
        .get_json(Endpoint::User, "/u/{username}", user)
        .post(Endpoint::Poll, "/message-bus/{client_id}/poll", bus::poll)
        .get_json(Endpoint::Rooms, "/audioroom/rooms", rooms)
        .get_json(Endpoint::Invite, "/audioroom/invite/{token}", invite)
        .get_json(Endpoint::Room, "/audioroom/rooms/{room}", room)
        .post(Endpoint::Join, "/audioroom/rooms/{room}/join", join)
        .post(Endpoint::Heartbeat, "/audioroom/rooms/{room}/heartbeat", heartbeat)
        .delete(Endpoint::Leave, "/audioroom/rooms/{room}/leave", leave)
        .get_json(Endpoint::Participants, "/audioroom/rooms/{room}/participants", participants)
        .post(Endpoint::ToggleMute, "/audioroom/rooms/{room}/toggle_mute", toggle_mute)
        .post(Endpoint::RaiseHand, "/audioroom/rooms/{room}/raise_hand", raise_hand)
        .delete(Endpoint::LowerHand, "/audioroom/rooms/{room}/raise_hand", lower_hand)
        .post(Endpoint::MuteParticipant, "/audioroom/rooms/{room}/mute_participant", moderation::mute_participant)
        .post(Endpoint::HardMute, "/audioroom/rooms/{room}/hard_mute", moderation::hard_mute)
        .post(Endpoint::HardUnmute, "/audioroom/rooms/{room}/hard_unmute", moderation::hard_unmute)
        .delete(Endpoint::Kick, "/audioroom/rooms/{room}/kick", moderation::kick)
        .post(Endpoint::Unkick, "/audioroom/rooms/{room}/unkick", moderation::unkick)
        .post(Endpoint::Ban, "/audioroom/rooms/{room}/ban", moderation::ban)
        .delete(Endpoint::Unban, "/audioroom/rooms/{room}/ban", moderation::unban)
        .get_json(Endpoint::Memberships, "/audioroom/rooms/{room}/memberships", moderation::memberships)
        .post(Endpoint::CreateMembership, "/audioroom/rooms/{room}/memberships", moderation::create_membership)
        .put(Endpoint::UpdateMembership, MEMBERSHIP, moderation::update_membership)
        .patch(Endpoint::UpdateMembership, MEMBERSHIP, moderation::update_membership)
        .delete(Endpoint::DeleteMembership, MEMBERSHIP, moderation::delete_membership);
    // A browser opens the key page before there is a key, and reads HTML: no `check_xhr`.
    let key_page = Routes::new().get(Endpoint::UserApiKeyNew, "/user-api-key/new", user_api_key::new_key).head(
        Endpoint::UserApiKeyNew,
        "/user-api-key/new",
        user_api_key::auth_api_version,
    );

    let mut endpoints = keyed.endpoints;
    endpoints.extend(key_page.endpoints);
    let recorder = Recorder { shared: Arc::clone(&shared), endpoints: Arc::new(endpoints) };
    // Each layer wraps what is there already, so the last one added meets the request first.
    let forum = keyed
        .router
        .route_layer(from_fn_with_state(Arc::clone(&shared), layers::rate_limit))
        .route_layer(from_fn_with_state(Arc::clone(&shared), layers::authenticate))
        .route_layer(from_fn(layers::check_xhr))
        .merge(key_page.router)
        // `layer`, unlike `route_layer`, also wraps the fallback: unrouted requests are recorded.
        .layer(from_fn_with_state(Arc::clone(&shared), layers::forced))
        .layer(from_fn_with_state(recorder, layers::record))
        .with_state(shared);
    // Around the forum's router, not inside it: the path is rewritten before it is matched.
    Router::new().fallback_service(forum).layer(from_fn(layers::rails_routing))
}

const MEMBERSHIP: &str = "/audioroom/rooms/{room}/memberships/{member}";

/// A router being built, with the [`Endpoints`] its routes are.
struct Routes {
    router: Router<Arc<Shared>>,
    endpoints: Endpoints,
}

impl Routes {
    fn new() -> Routes {
        Routes { router: Router::new(), endpoints: Endpoints::default() }
    }

    /// A GET of Discourse's JSON API, which also answers with the `.json` suffix.
    fn get_json<H, T>(self, endpoint: Endpoint, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(endpoint, MethodFilter::GET, route, true, handler)
    }

    fn get<H, T>(self, endpoint: Endpoint, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(endpoint, MethodFilter::GET, route, false, handler)
    }

    fn head<H, T>(self, endpoint: Endpoint, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(endpoint, MethodFilter::HEAD, route, false, handler)
    }

    fn post<H, T>(self, endpoint: Endpoint, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(endpoint, MethodFilter::POST, route, false, handler)
    }

    fn put<H, T>(self, endpoint: Endpoint, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(endpoint, MethodFilter::PUT, route, false, handler)
    }

    fn patch<H, T>(self, endpoint: Endpoint, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(endpoint, MethodFilter::PATCH, route, false, handler)
    }

    fn delete<H, T>(self, endpoint: Endpoint, route: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        self.add(endpoint, MethodFilter::DELETE, route, false, handler)
    }

    fn add<H, T>(
        mut self,
        endpoint: Endpoint,
        method: MethodFilter,
        route: &'static str,
        json_suffix: bool,
        handler: H,
    ) -> Self
    where
        H: Handler<T, Arc<Shared>>,
        T: 'static,
    {
        // A second method on a route joins the first (`Router::route` merges them).
        self.router = self.router.route(route, on(method, handler));
        self.endpoints.add(method, route, json_suffix, endpoint);
        self
    }
}

async fn current_session(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser) -> Response {
    shared.change(|_| ok(json!({ "current_user": basic_user(&user) })))
}

async fn user(State(shared): State<Arc<Shared>>, _: CurrentUser, Path(username): Path<String>) -> Answer {
    shared.change(|forum| {
        let found = forum.users.values().find(|other| other.username.eq_ignore_ascii_case(&username));
        Ok(ok(json!({ "user": basic_user(found.ok_or(Refusal::NotFound)?) })))
    })
}

/// `room_invite#show`: open rooms make the visitor a participant member at once; stage rooms
/// ask the client to confirm by joining.
async fn invite(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(token): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room = forum.invites.get(&token).and_then(|id| forum.rooms.get(id)).cloned().ok_or(Refusal::NotFound)?;
        if !room.stage && forum.membership(room.id, user.id).is_none() {
            forum.upsert_membership(room.id, user.id, MembershipRole::Participant);
        }
        let room_json = responses::room(forum, &room, &user);
        Ok(ok(json!({ "room": room_json, "requires_confirmation": room.stage })))
    })
}

async fn rooms(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser) -> Response {
    shared.change(|forum| {
        let rooms: Vec<Value> = forum
            .rooms
            .values()
            .filter(|room| forum.can_join(room, &user) || forum.can_manage(room, &user))
            .map(|room| responses::room(forum, room, &user))
            .collect();
        ok(json!({ "rooms": rooms, "can_create_room": user.manager }))
    })
}

async fn room(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser, Path(id): Path<String>) -> Answer {
    shared.change(|forum| {
        let room = forum.find_room(&id).ok_or(Refusal::NotFound)?;
        if !forum.can_join(&room, &user) {
            return Err(Refusal::InvalidAccess);
        }
        let mut room_json = responses::room(forum, &room, &user);
        room_json["visit_count"] = json!(0);
        Ok(ok(json!({ "room": room_json })))
    })
}

async fn join(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser, Path(id): Path<String>) -> Answer {
    shared.change(|forum| {
        let room = forum.find_room(&id).ok_or(Refusal::NotFound)?;
        join_room(forum, &shared.keys, &user, &room, Instant::now())
    })
}

fn join_room(forum: &mut Forum, keys: &LivekitKeys, user: &User, room: &Room, now: Instant) -> Answer {
    if !forum.can_join(room, user) {
        return Err(Refusal::InvalidAccess);
    }
    if forum.banned.contains(&(room.id, user.id)) {
        return Err(Refusal::plugin(StatusCode::FORBIDDEN, "You are banned from this room."));
    }
    if forum.is_kicked(room.id, user.id, now) {
        let message = "You have been kicked from this room. Please try again later.";
        return Err(Refusal::plugin(StatusCode::FORBIDDEN, message));
    }
    if let Some(other) = forum.present_in_other_room(user.id, room.id) {
        return Err(Refusal::InAnotherRoom { id: other.id, name: other.name });
    }
    let present = forum.presence.get(&room.id).map(|present| present.len()).unwrap_or(0);
    let already = forum.presence.get(&room.id).is_some_and(|present| present.contains_key(&user.id));
    let full = room.max_participants.filter(|max| *max > 0).is_some_and(|max| present >= max as usize);
    if full && !already {
        return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, "This room is full."));
    }
    let role = forum.join_role(room.id, user.id);
    let entry =
        forum.presence.entry(room.id).or_default().entry(user.id).or_insert_with(|| Presence::new(role.clone()));
    entry.last_seen = now;
    forum.publish_participants(room.id);
    let token = if forum.livekit_configured {
        let token = mint(keys, user, room, &role)
            .map_err(|message| Refusal::Plugin(StatusCode::INTERNAL_SERVER_ERROR, message))?;
        Value::String(token)
    } else {
        Value::Null
    };
    Ok(ok(json!({ "room": responses::room(forum, room, user), "livekit_token": token, "livekit_url": keys.url })))
}

/// `generate_livekit_token` (§1.3).
fn mint(keys: &LivekitKeys, user: &User, room: &Room, role: &str) -> Result<String, String> {
    let speaks = matches!(role, "moderator" | "speaker");
    let grants = VideoGrants {
        room_join: true,
        room: room.slug.clone(),
        can_publish: Some(if room.stage { speaks } else { true }),
        can_subscribe: Some(true),
        can_publish_data: Some(speaks),
        ..Default::default()
    };
    AccessToken::with_api_key(&keys.api_key, &keys.api_secret)
        .with_identity(&user.id.to_string())
        .with_name(&user.username)
        .with_metadata(&responses::participant_metadata(user, role).to_string())
        .with_grants(grants)
        .with_ttl(TOKEN_TTL)
        .to_jwt()
        .map_err(|error| format!("minting the LiveKit token failed: {error}"))
}

async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = forum.find_room(&id).ok_or(Refusal::NotFound)?;
        let now = Instant::now();
        if forum.banned.contains(&(room.id, user.id)) || forum.is_kicked(room.id, user.id, now) {
            return Err(Refusal::plugin(StatusCode::FORBIDDEN, "You are not allowed to be in this room."));
        }
        *forum.heartbeats.entry((room.id, user.id)).or_default() += 1;
        let idle_state = params.text("idle_state").unwrap_or_else(|| "active".into());
        let role = forum.join_role(room.id, user.id);
        let present = forum.presence.entry(room.id).or_default();
        let fresh = !present.contains_key(&user.id);
        let presence = present.entry(user.id).or_insert_with(|| Presence::new(role));
        presence.last_seen = now;
        presence.idle_state = idle_state;
        if fresh {
            forum.publish_participants(room.id);
        }
        Ok(no_content())
    })
}

async fn leave(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser, Path(id): Path<String>) -> Answer {
    shared.change(|forum| {
        let room = forum.find_room(&id).ok_or(Refusal::NotFound)?;
        if forum.presence.get_mut(&room.id).and_then(|present| present.remove(&user.id)).is_some() {
            forum.publish_participants(room.id);
        }
        Ok(no_content())
    })
}

async fn participants(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room = forum.find_room(&id).ok_or(Refusal::NotFound)?;
        if !forum.can_join(&room, &user) {
            return Err(Refusal::InvalidAccess);
        }
        Ok(ok(json!({ "participants": responses::participants(forum, room.id) })))
    })
}

/// Self-reported mute and deafen state (§1.2: no LiveKit call).
async fn toggle_mute(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = forum.find_room(&id).ok_or(Refusal::NotFound)?;
        let muted = params.bool("muted");
        let deafened = params.bool("deafened");
        let presence = forum.presence_mut(room.id, user.id).ok_or_else(not_in_room)?;
        if room.stage && presence.role == "listener" && muted == Some(false) {
            return Err(Refusal::plugin(StatusCode::FORBIDDEN, "Listeners cannot unmute in a stage room."));
        }
        if let Some(muted) = muted {
            presence.muted = muted;
        }
        if let Some(deafened) = deafened {
            presence.deafened = deafened;
        }
        forum.publish_participants(room.id);
        Ok(no_content())
    })
}

async fn raise_hand(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| set_hand(forum, &user, &id, true))
}

async fn lower_hand(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| set_hand(forum, &user, &id, false))
}

fn set_hand(forum: &mut Forum, user: &User, id: &str, raise: bool) -> Answer {
    let room = forum.find_room(id).ok_or(Refusal::NotFound)?;
    if raise && !room.stage {
        return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, "Not a stage room"));
    }
    let presence = forum.presence_mut(room.id, user.id).ok_or_else(not_in_room)?;
    if raise && presence.role != "listener" {
        return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, "Speakers cannot raise their hand."));
    }
    presence.hand_raised = raise;
    forum.publish_participants(room.id);
    Ok(no_content())
}

/// A call about one's own presence from someone not present.
fn not_in_room() -> Refusal {
    Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, "You are not in this room.")
}
