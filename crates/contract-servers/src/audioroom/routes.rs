//! The forum's routes (CONTROL_PLANES.md §1.2), each named by its [`Endpoint`], with the layers
//! of [`super::layers`] around them; and the handlers a participant calls (rooms, join,
//! heartbeat, leave, own mute, hand, invite links), in `rooms_controller.rb`'s and
//! `room_invite_controller.rb`'s order of checks. The manage-permission ones are in
//! [`super::moderation`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::layers::{self, CurrentUser, Endpoints, MaybeUser, Recorder};
use super::params::Params;
use super::responses::{self, Answer, Refusal, basic_user, no_content, ok, text};
use super::state::{Forum, MembershipRole, Room, Shared, User, cast_bool};
use super::{Endpoint, LivekitCall, bus, moderation, user_api_key};
use crate::LivekitKeys;

/// `LiveKit::AccessToken::DEFAULT_TTL` in livekit-server-sdk 0.9.0 (`access_token.rb`: "10
/// minutes"), which `generate_livekit_token` does not override.
pub(super) const TOKEN_TTL: Duration = Duration::from_secs(600);
/// `RoomServiceClient.create_room`'s defaults: close an empty room after 5 min, 20 s after the
/// last one left.
const EMPTY_TIMEOUT: u32 = 300;
const DEPARTURE_TIMEOUT: u32 = 20;

/// The forum's whole HTTP surface over `shared`.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let keyed = Routes::new()
        .get_json(Endpoint::CurrentSession, "/session/current", current_session)
        .get_json(Endpoint::User, "/u/{username}", user)
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
    // MessageBus is Rack middleware in front of Rails: no CSRF, no `check_xhr`, and it looks the
    // key up itself. A browser opens the key page before there is a key, and reads HTML.
    let open = Routes::new()
        .post(Endpoint::Poll, "/message-bus/{client_id}/poll", bus::poll)
        .get(Endpoint::UserApiKeyNew, "/user-api-key/new", user_api_key::new_key)
        .head(Endpoint::UserApiKeyNew, "/user-api-key/new", user_api_key::auth_api_version);

    let mut endpoints = keyed.endpoints;
    endpoints.extend(open.endpoints);
    let recorder = Recorder { shared: Arc::clone(&shared), endpoints: Arc::new(endpoints) };
    // Each layer wraps what is there already, so the last one added meets the request first:
    // the key (`current_user`) before `check_xhr`, as in `ApplicationController`'s before_actions.
    let forum = keyed
        .router
        .route_layer(from_fn(layers::check_xhr))
        .route_layer(from_fn_with_state(Arc::clone(&shared), layers::current_user))
        .merge(open.router)
        // `layer`, unlike `route_layer`, also wraps the fallback: unrouted requests are recorded.
        .layer(from_fn(layers::negotiate))
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

/// `session#current`: who the key belongs to; a 404 without a body when nobody is signed in.
async fn current_session(State(shared): State<Arc<Shared>>, MaybeUser(user): MaybeUser) -> Response {
    match user {
        Some(user) => shared.change(|_| ok(json!({ "current_user": basic_user(&user) }))),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `users#show`: public, `Discourse::NotFound` for an unknown username.
async fn user(State(shared): State<Arc<Shared>>, _: MaybeUser, Path(username): Path<String>) -> Answer {
    shared.change(|forum| {
        let found = forum.users.values().find(|other| other.username.eq_ignore_ascii_case(&username));
        Ok(ok(json!({ "user": basic_user(found.ok_or(Refusal::NotFound)?) })))
    })
}

/// `room_invite#show`: the room by its invite token (`find_by!`), the join permission, then a
/// `participant` membership for the visitor. The controller means to spare stage rooms and ask
/// the client to confirm, but compares the integer `room_type` column with `"stage"`, which is
/// never equal: every room makes the visitor a member and `requires_confirmation` is always
/// `false`. The contract is what the real server does, so this mirrors it.
async fn invite(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(token): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room =
            forum.rooms.values().find(|room| room.invite_token == token).cloned().ok_or(Refusal::RecordNotFound)?;
        if !forum.can_join(&room, &user) {
            return Err(Refusal::InvalidAccess);
        }
        forum.ensure_membership(room.id, user.id, MembershipRole::Participant);
        let room_json = responses::room(forum, &room, &user, false);
        Ok(ok(json!({ "room": room_json, "requires_confirmation": false })))
    })
}

/// `rooms#index`: the rooms the user can see, oldest first.
async fn rooms(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser) -> Response {
    shared.change(|forum| {
        let rooms: Vec<Value> = forum
            .rooms
            .values()
            .filter(|room| forum.can_join(room, &user))
            .map(|room| responses::room(forum, room, &user, false))
            .collect();
        ok(json!({ "rooms": rooms, "can_create_room": user.manager }))
    })
}

/// `rooms#show`, with the viewer's `visit_count`.
async fn room(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser, Path(id): Path<String>) -> Answer {
    shared.change(|forum| {
        let room = joinable_room(forum, &id, &user)?;
        Ok(ok(json!({ "room": responses::room(forum, &room, &user, true) })))
    })
}

/// `load_room` (404) then `ensure_can_join_audioroom_room!` (403).
fn joinable_room(forum: &Forum, id: &str, user: &User) -> Result<Room, Refusal> {
    let room = forum.find_room(id).ok_or(Refusal::RecordNotFound)?;
    if !forum.can_join(&room, user) {
        return Err(Refusal::InvalidAccess);
    }
    Ok(room)
}

/// `rooms#join`: the checks, LiveKit's `CreateRoom`, then the user is tracked with fresh
/// metadata (`{role, session_id}`, replacing whatever was there) and gets a token.
async fn join(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    let (room, configured) =
        shared.change(|forum| admit(forum, &user, &id).map(|room| (room, forum.livekit_configured)))?;
    if configured {
        ensure_livekit_room(&shared, &room).await;
    }
    shared.change(|forum| Ok(enter(forum, &shared.keys, &user, &room, &params)))
}

/// `join`'s checks, in order: the room, the join permission, the ban, the kick, another room,
/// a full room.
fn admit(forum: &Forum, user: &User, id: &str) -> Result<Room, Refusal> {
    let room = joinable_room(forum, id, user)?;
    if forum.banned.contains(&(room.id, user.id)) {
        return Err(Refusal::plugin(StatusCode::FORBIDDEN, text::BANNED));
    }
    if forum.is_kicked(room.id, user.id, Instant::now()) {
        return Err(Refusal::plugin(StatusCode::FORBIDDEN, text::KICKED));
    }
    if let Some(other) = forum.active_room_for(user.id).filter(|other| *other != room.id) {
        let name = forum.rooms.get(&other).map(|other| other.name.clone());
        return Err(Refusal::InAnotherRoom { id: other, name });
    }
    if let Some(max) = room.max_participants {
        let present = forum.tracked_users(room.id);
        if !present.contains(&user.id) && present.len() >= max as usize {
            return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, text::ROOM_FULL));
        }
    }
    Ok(room)
}

/// `RoomServiceClient.ensure_room` (on every join): `CreateRoom` with the plugin's timeouts;
/// a failure is logged and recorded, as the plugin rescues it.
async fn ensure_livekit_room(shared: &Shared, room: &Room) {
    let max = room.max_participants.unwrap_or(0);
    let outcome = shared.keys.create_room(&room.slug, EMPTY_TIMEOUT, DEPARTURE_TIMEOUT, max).await;
    if let Err(error) = &outcome {
        tracing::warn!(room = %room.slug, %error, "LiveKit CreateRoom failed");
    }
    shared.lock().livekit_calls.push(LivekitCall::new("CreateRoom", room, None, outcome));
}

/// What a join writes and answers, once admitted.
fn enter(forum: &mut Forum, keys: &LivekitKeys, user: &User, room: &Room, params: &Params) -> Response {
    let now = Instant::now();
    forum.track(room.id, user.id, now);
    let role = forum.join_role(room, user.id);
    // `audioroom_analytics_enabled` is on by default: each join opens a session.
    let session = forum.open_session(room.id, user.id);
    let mut metadata = serde_json::Map::new();
    metadata.insert("role".into(), json!(role));
    metadata.insert("session_id".into(), json!(session));
    if params.text("skip_status").is_some() {
        metadata.insert("skip_status".into(), json!(true));
    }
    forum.set_metadata(room.id, user.id, metadata, now);
    forum.publish_participants(room.id);
    let token = if forum.livekit_configured { mint(keys, user, room, role) } else { None };
    let room_json = responses::room(forum, room, user, true);
    ok(json!({ "room": room_json, "livekit_token": token, "livekit_url": keys.url }))
}

/// `generate_livekit_token` with livekit-server-sdk 0.9.0's `AccessToken#to_jwt`: HS256 with
/// only `alg` in the header; claims `name`, `metadata`, `video`, `exp` (+600 s), `nbf` (−5 s),
/// `iss`, `sub` — nothing else (nils are compacted away). `None` (a `null` token) where the
/// plugin's `rescue` gives `nil`.
pub(super) fn mint(keys: &LivekitKeys, user: &User, room: &Room, role: &str) -> Option<String> {
    if keys.api_key.is_empty() || keys.api_secret.is_empty() {
        return None;
    }
    let speaks = matches!(role, "moderator" | "speaker");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let claims = json!({
        "name": user.username,
        "metadata": responses::participant_metadata(user, role).to_string(),
        "video": {
            "roomJoin": true,
            "room": room.slug,
            "canPublish": if room.stage { speaks } else { true },
            "canSubscribe": true,
            "canPublishData": speaks,
        },
        "exp": now + TOKEN_TTL.as_secs(),
        "nbf": now.saturating_sub(5),
        "iss": keys.api_key,
        "sub": user.id.to_string(),
    });
    let encode = |json: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string());
    let signing_input = format!("{}.{}", encode(&json!({ "alg": "HS256" })), encode(&claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(keys.api_secret.as_bytes()).ok()?;
    mac.update(signing_input.as_bytes());
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Some(format!("{signing_input}.{signature}"))
}

/// `rooms#heartbeat`: re-tracks the user whether or not they joined (with whatever metadata
/// there is, maybe none), stores `skip_status` when sent and `idle_state` when it is one of
/// `active`/`idle`/`afk`, and publishes the participants every time.
async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = joinable_room(forum, &id, &user)?;
        let now = Instant::now();
        if forum.is_kicked(room.id, user.id, now) || forum.banned.contains(&(room.id, user.id)) {
            return Err(Refusal::plugin(StatusCode::FORBIDDEN, text::NOT_AUTHORIZED));
        }
        *forum.heartbeats.entry((room.id, user.id)).or_default() += 1;
        forum.track(room.id, user.id, now);
        forum.edit_metadata(room.id, user.id, now, |metadata| {
            if let Some(skip) = params.get("skip_status") {
                metadata.insert("skip_status".into(), json!(cast_bool(skip)));
            }
            let idle_state = params.get("idle_state").map(ruby_to_s);
            if let Some(idle_state) = idle_state.filter(|state| ["active", "idle", "afk"].contains(&state.as_str())) {
                metadata.insert("idle_state".into(), json!(idle_state));
            }
        });
        forum.publish_participants(room.id);
        Ok(no_content())
    })
}

/// Ruby's `to_s` of a param.
fn ruby_to_s(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `rooms#leave`: always 204 and a `participants` message.
async fn leave(State(shared): State<Arc<Shared>>, CurrentUser(user): CurrentUser, Path(id): Path<String>) -> Answer {
    shared.change(|forum| {
        let room = joinable_room(forum, &id, &user)?;
        forum.close_session_for(room.id, user.id);
        forum.untrack(room.id, user.id);
        forum.publish_participants(room.id);
        Ok(no_content())
    })
}

async fn participants(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room = joinable_room(forum, &id, &user)?;
        Ok(ok(json!({ "participants": responses::participants(forum, room.id) })))
    })
}

/// `rooms#toggle_mute`: self-reported state, no LiveKit call and no presence check. Unmuting in
/// a stage room needs `can_speak_in_audioroom_room?` (an admin, or a speaking membership), else
/// core's generic `invalid_access` 403. Only the keys sent are written (`nil` for a blank one).
async fn toggle_mute(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    shared.change(|forum| {
        let room = joinable_room(forum, &id, &user)?;
        let muted = params.get("muted").map(cast_bool);
        let wants_unmute = muted.is_some_and(|muted| muted != Some(true));
        if wants_unmute && room.stage && !forum.can_speak(&room, &user) {
            return Err(Refusal::InvalidAccess);
        }
        let deafened = params.get("deafened").map(cast_bool);
        forum.edit_metadata(room.id, user.id, Instant::now(), |metadata| {
            if let Some(muted) = muted {
                metadata.insert("is_muted".into(), json!(muted));
            }
            if let Some(deafened) = deafened {
                metadata.insert("is_deafened".into(), json!(deafened));
            }
        });
        forum.publish_participants(room.id);
        Ok(no_content())
    })
}

/// `rooms#raise_hand`: stage rooms only, and not for whoever the metadata names speaker or
/// moderator; no presence check.
async fn raise_hand(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room = joinable_room(forum, &id, &user)?;
        if !room.stage {
            return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, text::NOT_A_STAGE_ROOM));
        }
        let role = forum.metadata(room.id, user.id).get("role").map(ruby_to_s).unwrap_or_default();
        if role == "moderator" || role == "speaker" {
            return Err(Refusal::plugin(StatusCode::UNPROCESSABLE_ENTITY, text::SPEAKERS_CANNOT_RAISE_HAND));
        }
        set_hand(forum, &room, &user, true);
        Ok(no_content())
    })
}

/// `rooms#lower_hand`: no checks beyond the room and the join permission.
async fn lower_hand(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    shared.change(|forum| {
        let room = joinable_room(forum, &id, &user)?;
        set_hand(forum, &room, &user, false);
        Ok(no_content())
    })
}

fn set_hand(forum: &mut Forum, room: &Room, user: &User, raised: bool) {
    forum.edit_metadata(room.id, user.id, Instant::now(), |metadata| {
        metadata.insert("hand_raised".into(), json!(raised));
    });
    forum.publish_participants(room.id);
}
