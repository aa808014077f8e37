//! The forum's answers checked literally against what `dpnmw/audioroom@067cfbb`, Discourse core
//! and MessageBus 4.5.2 send, as read from their source: the keys a participant
//! carries, the types in a room, the token's claims, the error shapes, presence expiry, the
//! LiveKit calls, MessageBus's anonymous polls and framing. Requests go through the forum's own
//! router; LiveKit is a stand-in RoomService that answers like the real one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use base64::Engine as _;
use livekit_api::access_token::TokenVerifier;
use livekit_protocol as proto;
use prost::Message as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{Handle, NewRoom, TestUser, routes, start};
use crate::{LivekitKeys, Running, serve};

const API_KEY: &str = "devkey";
const API_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// One RoomService request the stand-in LiveKit received.
#[derive(Debug, Clone)]
struct LivekitRequest {
    method: String,
    bearer: String,
    body: Bytes,
}

impl LivekitRequest {
    fn update(&self) -> proto::UpdateParticipantRequest {
        proto::UpdateParticipantRequest::decode(self.body.clone()).expect("a protobuf UpdateParticipantRequest")
    }

    fn permission(&self) -> Option<(bool, bool, bool)> {
        self.update()
            .permission
            .map(|permission| (permission.can_subscribe, permission.can_publish, permission.can_publish_data))
    }
}

/// A stand-in for LiveKit's RoomService: records every call; `GetParticipant` knows the
/// identities in `audio` (identity → the sid of the audio track they publish, `None` for a
/// participant without one) and answers `not_found` for the rest.
struct FakeLivekit {
    running: Running,
    seen: Arc<Mutex<Vec<LivekitRequest>>>,
    audio: Arc<Mutex<HashMap<String, Option<String>>>>,
}

impl FakeLivekit {
    async fn start() -> FakeLivekit {
        let seen: Arc<Mutex<Vec<LivekitRequest>>> = Arc::default();
        let audio: Arc<Mutex<HashMap<String, Option<String>>>> = Arc::default();
        let (recorded, tracks) = (Arc::clone(&seen), Arc::clone(&audio));
        let router = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (recorded, tracks) = (Arc::clone(&recorded), Arc::clone(&tracks));
            async move {
                let method = uri.path().rsplit('/').next().unwrap_or_default().to_string();
                let bearer = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_string();
                recorded.lock().expect("lock").push(LivekitRequest {
                    method: method.clone(),
                    bearer,
                    body: body.clone(),
                });
                let protobuf =
                    |bytes: Vec<u8>| (StatusCode::OK, [(header::CONTENT_TYPE, "application/protobuf")], bytes);
                match method.as_str() {
                    "GetParticipant" => {
                        let asked = proto::RoomParticipantIdentity::decode(body).expect("a RoomParticipantIdentity");
                        let known = tracks.lock().expect("lock").get(&asked.identity).cloned();
                        let Some(track) = known else {
                            let error = r#"{"code":"not_found","msg":"participant not found"}"#;
                            return (
                                StatusCode::NOT_FOUND,
                                [(header::CONTENT_TYPE, "application/json")],
                                error.as_bytes().to_vec(),
                            );
                        };
                        let tracks = track
                            .map(|sid| proto::TrackInfo {
                                sid,
                                r#type: proto::TrackType::Audio as i32,
                                ..Default::default()
                            })
                            .into_iter()
                            .collect();
                        protobuf(
                            proto::ParticipantInfo { identity: asked.identity, tracks, ..Default::default() }
                                .encode_to_vec(),
                        )
                    }
                    "MutePublishedTrack" => {
                        let asked = proto::MuteRoomTrackRequest::decode(body).expect("a MuteRoomTrackRequest");
                        let track = proto::TrackInfo { sid: asked.track_sid, muted: asked.muted, ..Default::default() };
                        protobuf(proto::MuteRoomTrackResponse { track: Some(track) }.encode_to_vec())
                    }
                    "CreateRoom" => {
                        let asked = proto::CreateRoomRequest::decode(body).expect("a CreateRoomRequest");
                        protobuf(proto::Room { name: asked.name, ..Default::default() }.encode_to_vec())
                    }
                    _ => protobuf(proto::ParticipantInfo::default().encode_to_vec()),
                }
            }
        });
        FakeLivekit { running: serve(router).await.expect("the stand-in LiveKit starts"), seen, audio }
    }

    fn keys(&self) -> LivekitKeys {
        LivekitKeys {
            url: format!("ws://{}", self.running.address),
            api_key: API_KEY.into(),
            api_secret: API_SECRET.into(),
        }
    }

    fn publishes_audio(&self, identity: u64, track: Option<&str>) {
        self.audio.lock().expect("lock").insert(identity.to_string(), track.map(str::to_string));
    }

    fn calls(&self, method: &str) -> Vec<LivekitRequest> {
        self.seen.lock().expect("lock").iter().filter(|request| request.method == method).cloned().collect()
    }
}

/// A forum on a stand-in LiveKit.
async fn forum() -> (Handle, FakeLivekit) {
    let livekit = FakeLivekit::start().await;
    let (running, handle) = start(livekit.keys()).await.expect("forum");
    // The router is driven directly; the listening server is not needed.
    drop(running);
    (handle, livekit)
}

/// An answer, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("JSON expected ({error}): {}", self.body))
    }

    fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }
}

/// A request as the adapter sends it: the key, `Accept: application/json`, a JSON body.
async fn call(handle: &Handle, key: &str, method: Method, path: &str, body: Value) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("User-Api-Key", key)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a request");
    send(handle, request).await
}

async fn send(handle: &Handle, request: Request<Body>) -> Reply {
    let router = routes::router(Arc::clone(&handle.shared));
    let response = router.oneshot(request).await.unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("the body");
    Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn keys_of(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

/// The claims of a JWT, read without checking it (the verifier checks the signature elsewhere).
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().expect("a JWT part");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice::<Value>(&bytes).expect("JSON")
    };
    (decode(), decode())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

fn room_path(room: u64, action: &str) -> String {
    format!("/audioroom/rooms/{room}/{action}")
}

async fn join(handle: &Handle, user: &TestUser, room: u64) -> Reply {
    let reply = call(handle, &user.api_key, Method::POST, &room_path(room, "join"), json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{} joins room {room}: {}", user.username, reply.body);
    reply
}

#[tokio::test]
async fn a_fresh_participant_carries_only_the_keys_a_join_writes() {
    let (handle, _livekit) = forum().await;
    let alice = handle.add_user("alice", "Alice", false);
    let nameless = handle.add_user("nameless", "", false);
    let room = handle.add_room(NewRoom::open("lounge", "Lounge"));
    join(&handle, &alice, room).await;
    join(&handle, &nameless, room).await;

    let listed = call(&handle, &alice.api_key, Method::GET, &room_path(room, "participants.json"), json!({})).await;
    let participants = listed.json()["participants"].as_array().expect("a list").clone();
    assert_eq!(participants.len(), 2);
    let expected_keys = ["avatar_template", "id", "name", "role", "session_id", "username"];
    for participant in &participants {
        assert_eq!(
            keys_of(participant),
            expected_keys,
            "no is_muted, hand_raised, hard_muted or idle_state yet: {participant}"
        );
        assert!(participant["id"].is_i64() && participant["session_id"].is_u64(), "integers: {participant}");
        assert_eq!(participant["role"], "participant");
    }
    assert_eq!(participants[1]["name"], Value::Null, "a user without a name has name null");

    let beat =
        call(&handle, &alice.api_key, Method::POST, &room_path(room, "heartbeat"), json!({"idle_state": "asleep"}))
            .await;
    assert_eq!(beat.status, StatusCode::NO_CONTENT);
    assert_eq!(
        handle.presence(room, alice.id).expect("present").idle_state,
        None,
        "an unknown idle_state is not stored"
    );
    let muted =
        call(&handle, &alice.api_key, Method::POST, &room_path(room, "toggle_mute"), json!({"muted": true})).await;
    assert_eq!(muted.status, StatusCode::NO_CONTENT);
    let presence = handle.presence(room, alice.id).expect("present");
    assert_eq!((presence.muted, presence.deafened), (Some(true), None), "only the key sent is written");
}

#[tokio::test]
async fn rooms_carry_the_real_types_and_their_creator_moderates() {
    let (handle, _livekit) = forum().await;
    let alice = handle.add_user("alice", "Alice", false);
    let seeded = handle.add_room(NewRoom::open("thelounge", "TheLounge"));
    let own = handle.add_room(NewRoom { creator: Some(alice.id), ..NewRoom::stage("alices", "Alice's") });

    let index = call(&handle, &alice.api_key, Method::GET, "/audioroom/rooms.json", json!({})).await.json();
    let rooms = index["rooms"].as_array().expect("rooms");
    let lounge = &rooms[0];
    assert_eq!(lounge["broadcast_watermark"], json!(true), "a NOT NULL boolean column, default true");
    assert_eq!(lounge["creator_id"], json!(-1), "the seeded room's creator is the system user");
    assert_eq!(lounge["member_count"], json!(1), "the creator's membership counts");
    assert!(lounge.get("visit_count").is_none(), "the index has no visit_count");
    assert_eq!(lounge["membership"], Value::Null, "alice is no member");
    assert_eq!(lounge["room_type"], "open");
    let mine = &rooms[1];
    assert_eq!(mine["creator_id"], json!(alice.id));
    assert_eq!(mine["membership"]["role"], json!(1), "moderator is the integer 1");
    assert_eq!(mine["membership"]["role_name"], "moderator");
    assert_eq!(mine["can_manage"], json!(true));

    let joined = join(&handle, &alice, seeded).await.json();
    assert_eq!(joined["room"]["visit_count"], json!(1), "join counts the session it opened");
    let shown = call(&handle, &alice.api_key, Method::GET, &format!("/audioroom/rooms/{seeded}.json"), json!({})).await;
    assert_eq!(shown.json()["room"]["visit_count"], json!(1), "show includes visit_count");
    let own_join = {
        call(&handle, &alice.api_key, Method::DELETE, &room_path(seeded, "leave"), json!({})).await;
        join(&handle, &alice, own).await.json()
    };
    assert_eq!(own_join["room"]["active_participants"][0]["role"], "moderator", "the creator joins as moderator");
}

#[tokio::test]
async fn tokens_are_what_livekit_server_sdk_0_9_0_mints() {
    let (handle, _livekit) = forum().await;
    let alice = handle.add_user("alice", "", false);
    let room = handle.add_room(NewRoom::open("lounge", "Lounge"));
    handle.set_membership(room, alice.id, "moderator");

    let token = join(&handle, &alice, room).await.json()["livekit_token"].as_str().expect("a token").to_string();
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header, json!({"alg": "HS256"}), "ruby-jwt's header");
    assert_eq!(keys_of(&claims), ["exp", "iss", "metadata", "name", "nbf", "sub", "video"]);
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp.abs_diff(now() + 600) <= 2, "DEFAULT_TTL = 600 s: {claims}");
    assert_eq!(exp - claims["nbf"].as_u64().expect("nbf"), 605, "nbf 5 s back");
    assert_eq!(claims["sub"], alice.id.to_string());
    let metadata: Value = serde_json::from_str(claims["metadata"].as_str().expect("text")).expect("JSON metadata");
    assert_eq!(metadata["role"], "participant", "an open room's moderator member who did not create it");
    assert_eq!(metadata["name"], "alice", "name || username");
    assert_eq!(
        claims["video"],
        json!({"roomJoin": true, "room": "lounge", "canPublish": true, "canSubscribe": true, "canPublishData": false})
    );
    let verified = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(&token).expect("LiveKit accepts it");
    assert_eq!(verified.video.room, "lounge");

    handle.set_livekit_configured(false);
    let answer = join(&handle, &alice, room).await.json();
    assert_eq!(answer["livekit_token"], Value::Null, "no credentials: a null token, still 200");
}

#[tokio::test]
async fn errors_have_the_shapes_the_real_stack_renders() {
    let (handle, _livekit) = forum().await;
    let host = handle.add_user("host", "Host", true);
    let ear = handle.add_user("ear", "Ear", false);
    let stage = handle.add_room(NewRoom::stage("stage", "Stage"));

    let missing = call(&handle, &host.api_key, Method::POST, "/audioroom/rooms/nope/join", json!({})).await;
    assert_eq!((missing.status, missing.json()), (StatusCode::NOT_FOUND, json!({"status": 404, "error": "Not Found"})));
    let no_user = call(&handle, &host.api_key, Method::DELETE, &room_path(stage, "kick"), json!({})).await;
    assert_eq!(no_user.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_user.json(), json!({"errors": ["param is missing or the value is empty or invalid: user_id"]}));
    let self_kick =
        call(&handle, &host.api_key, Method::DELETE, &room_path(stage, "kick"), json!({"user_id": host.id})).await;
    assert_eq!(
        self_kick.json(),
        json!({"errors": ["You supplied invalid parameters to the request: You cannot kick yourself from the room."], "error_type": "invalid_parameters"})
    );
    let creator = call(&handle, &host.api_key, Method::POST, &room_path(stage, "ban"), json!({"user_id": -1})).await;
    assert!(creator.body.contains("You cannot kick the room creator."), "{}", creator.body);

    join(&handle, &ear, stage).await;
    let unmute =
        call(&handle, &ear.api_key, Method::POST, &room_path(stage, "toggle_mute"), json!({"muted": false})).await;
    assert_eq!(unmute.status, StatusCode::FORBIDDEN);
    assert_eq!(
        unmute.json(),
        json!({"errors": ["You are not permitted to view the requested resource."], "error_type": "invalid_access"}),
        "core's InvalidAccess, not the plugin's message"
    );
    handle.set_membership(stage, ear.id, "speaker");
    let speaker =
        call(&handle, &ear.api_key, Method::POST, &room_path(stage, "toggle_mute"), json!({"muted": false})).await;
    assert_eq!(speaker.status, StatusCode::NO_CONTENT, "a speaking membership may unmute, whatever the presence role");
    let hand = call(&handle, &ear.api_key, Method::POST, &room_path(stage, "raise_hand"), json!({})).await;
    assert_eq!(hand.status, StatusCode::NO_CONTENT, "the metadata still says listener: the hand goes up");

    // The same refusal for a request that takes no JSON: an HTML page; the plugin's stays JSON.
    let plain = |path: String| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("User-Api-Key", &ear.api_key)
            .header(header::ACCEPT, "application/json, text/plain, */*")
            .body(Body::empty())
            .expect("a request")
    };
    handle.set_membership(stage, ear.id, "participant");
    let html = send(&handle, plain(format!("{}?muted=false", room_path(stage, "toggle_mute")))).await;
    assert_eq!(
        (html.status, html.content_type()),
        (StatusCode::FORBIDDEN, "text/html; charset=utf-8"),
        "{}",
        html.body
    );
    let open = handle.add_room(NewRoom::open("open", "Open"));
    let plugin = send(&handle, plain(room_path(open, "raise_hand"))).await;
    assert_eq!(
        (plugin.status, plugin.json()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": "Not a stage room"}))
    );

    let keyless =
        Request::builder().method(Method::POST).uri(room_path(stage, "join")).body(Body::empty()).expect("a request");
    let csrf = send(&handle, keyless).await;
    assert_eq!((csrf.status, csrf.body.as_str()), (StatusCode::FORBIDDEN, "[\"BAD CSRF\"]"), "no key, no CSRF token");
}

#[tokio::test]
async fn rate_limits_count_before_the_scope_and_name_their_limiter() {
    let (handle, _livekit) = forum().await;
    let alice = handle.add_user("alice", "Alice", false);
    let room = handle.add_room(NewRoom::open("lounge", "Lounge"));
    let reader = handle.add_key(alice.id, &["read"]);
    handle.set_rate_limit(2, 2880);
    let post = call(&handle, &reader, Method::POST, &room_path(room, "join"), json!({})).await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "a read key may not POST");
    call(&handle, &reader, Method::GET, "/audioroom/rooms.json", json!({})).await;
    let limited = call(&handle, &reader, Method::GET, "/audioroom/rooms.json", json!({})).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "the refused POST counted");
    assert_eq!(limited.headers["discourse-rate-limit-error-code"], "user_api_key_limiter_60_secs");
    let extras = &limited.json()["extras"];
    let wait = extras["wait_seconds"].as_u64().expect("wait_seconds");
    assert_eq!(extras["time_left"], if wait == 60 { "1 minute".to_string() } else { format!("{wait} seconds") });
}

#[tokio::test]
async fn presence_expires_for_the_whole_room_at_once() {
    let (handle, _livekit) = forum().await;
    let alice = handle.add_user("alice", "Alice", false);
    let bob = handle.add_user("bob", "Bob", false);
    let lounge = handle.add_room(NewRoom::open("lounge", "Lounge"));
    let hall = handle.add_room(NewRoom::open("hall", "Hall"));
    handle.set_presence_ttl(Duration::from_millis(400));
    join(&handle, &alice, lounge).await;
    join(&handle, &bob, lounge).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        call(&handle, &bob.api_key, Method::POST, &room_path(lounge, "heartbeat"), json!({})).await;
    }
    assert_eq!(handle.present(lounge), [alice.id, bob.id], "alice stopped beating but bob's beats keep the set alive");
    let elsewhere = call(&handle, &alice.api_key, Method::POST, &room_path(hall, "join"), json!({})).await;
    assert_eq!(elsewhere.status, StatusCode::CONFLICT, "alice still counts as in the lounge");
    assert_eq!(elsewhere.json()["conflicting_room_id"], json!(lounge));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(handle.present(lounge).is_empty(), "nobody beat for the TTL: the whole set expired");
    assert_eq!(handle.presence(lounge, bob.id), None);
    join(&handle, &alice, hall).await;
}

#[tokio::test]
async fn membership_changes_write_the_role_name_and_send_livekit_the_broadcast_role() {
    let (handle, livekit) = forum().await;
    let host = handle.add_user("host", "Host", true);
    let ear = handle.add_user("ear", "Ear", false);
    let stage = handle.add_room(NewRoom::stage("stage", "Stage"));
    join(&handle, &ear, stage).await;
    let memberships = format!("/audioroom/rooms/{stage}/memberships");

    let promoted =
        call(&handle, &host.api_key, Method::POST, &memberships, json!({"username": "ear", "role": "speaker"})).await;
    assert_eq!(promoted.json()["membership"]["role"], json!(2), "speaker is the integer 2");
    let demoted = call(&handle, &host.api_key, Method::POST, &memberships, json!({"user_id": ear.id, "role": 1})).await;
    assert_eq!(demoted.json()["membership"]["role_name"], "participant", "a number is no role name: participant");
    let presence = handle.presence(stage, ear.id).expect("present");
    assert_eq!(presence.role.as_deref(), Some("participant"), "the role name, not listener");
    assert_eq!(presence.hand_raised, Some(false));
    let updates = livekit.calls("UpdateParticipant");
    let metadata: Vec<String> = updates
        .iter()
        .filter_map(|request| serde_json::from_str::<Value>(&request.update().metadata).ok())
        .map(|metadata| metadata["role"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(metadata, ["speaker", "listener"], "LiveKit hears the broadcast role");
    assert_eq!(updates[3].permission(), Some((true, false, false)), "back to the audience in LiveKit");

    let by_slug = call(&handle, &host.api_key, Method::GET, "/audioroom/rooms/stage/memberships.json", json!({})).await;
    assert_eq!(by_slug.status, StatusCode::NOT_FOUND, "memberships take the numeric id only");
    let nobody = call(&handle, &host.api_key, Method::POST, &memberships, json!({"username": "nobody"})).await;
    assert_eq!(nobody.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(nobody.json()["error_type"], "record_invalid");
    let neither = call(&handle, &host.api_key, Method::POST, &memberships, json!({"role": "speaker"})).await;
    assert_eq!(neither.status, StatusCode::BAD_REQUEST);
    let listed = call(&handle, &host.api_key, Method::GET, &format!("{memberships}.json"), json!({})).await.json();
    let members: Vec<(i64, String)> = listed["memberships"]
        .as_array()
        .expect("memberships")
        .iter()
        .map(|membership| {
            (membership["user_id"].as_i64().unwrap_or(0), membership["role_name"].as_str().unwrap_or("").into())
        })
        .collect();
    assert_eq!(members, [(-1, "moderator".to_string()), (ear.id as i64, "participant".to_string())]);
}

#[tokio::test]
async fn moderation_needs_no_presence_except_remote_mute_which_drives_livekit() {
    let (handle, livekit) = forum().await;
    let host = handle.add_user("host", "Host", true);
    let ear = handle.add_user("ear", "Ear", false);
    let room = handle.add_room(NewRoom::stage("stage", "Stage"));

    let hard = call(&handle, &host.api_key, Method::POST, &room_path(room, "hard_mute"), json!({"user_id": 999})).await;
    assert_eq!((hard.status, hard.json()), (StatusCode::OK, json!({"success": "OK"})), "no user or presence check");
    let kick =
        call(&handle, &host.api_key, Method::DELETE, &format!("{}?user_id=999", room_path(room, "kick")), json!({}))
            .await;
    assert_eq!(kick.status, StatusCode::NO_CONTENT);

    let absent = call(
        &handle,
        &host.api_key,
        Method::POST,
        &room_path(room, "mute_participant"),
        json!({"user_id": ear.id, "muted": true}),
    )
    .await;
    assert_eq!(
        (absent.status, absent.json()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": "Participant is not in the room or has no audio track."}))
    );
    join(&handle, &ear, room).await;
    let untracked = call(
        &handle,
        &host.api_key,
        Method::POST,
        &room_path(room, "mute_participant"),
        json!({"user_id": ear.id, "muted": true}),
    )
    .await;
    assert_eq!(untracked.status, StatusCode::UNPROCESSABLE_ENTITY, "not in LiveKit: GetParticipant fails");
    livekit.publishes_audio(ear.id, None);
    let trackless = call(
        &handle,
        &host.api_key,
        Method::POST,
        &room_path(room, "mute_participant"),
        json!({"user_id": ear.id, "muted": true}),
    )
    .await;
    assert_eq!(trackless.status, StatusCode::UNPROCESSABLE_ENTITY, "no audio track");
    assert!(livekit.calls("MutePublishedTrack").is_empty());
    assert_eq!(handle.presence(room, ear.id).expect("present").muted, None, "nothing recorded while LiveKit refused");

    livekit.publishes_audio(ear.id, Some("TR_ear_mic"));
    let muted = call(
        &handle,
        &host.api_key,
        Method::POST,
        &room_path(room, "mute_participant"),
        json!({"user_id": ear.id, "muted": "false"}),
    )
    .await;
    assert_eq!(muted.status, StatusCode::NO_CONTENT);
    let request =
        proto::MuteRoomTrackRequest::decode(livekit.calls("MutePublishedTrack")[0].body.clone()).expect("a mute");
    assert_eq!((request.room.as_str(), request.track_sid.as_str(), request.muted), ("stage", "TR_ear_mic", false));
    assert_eq!(handle.presence(room, ear.id).expect("present").muted, Some(false), "then the metadata");
    let bearer = &livekit.calls("GetParticipant")[0].bearer;
    let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(bearer).expect("signed with the keys");
    assert!(claims.video.room_admin, "RoomService calls carry roomAdmin");
    assert_eq!(livekit.calls("CreateRoom").len(), 1, "the join made sure the LiveKit room exists");
    let calls = handle.livekit_calls();
    assert!(calls.iter().any(|call| call.method == "MutePublishedTrack" && call.outcome.is_ok()), "{calls:?}");

    handle.set_livekit_configured(false);
    let unconfigured = call(
        &handle,
        &host.api_key,
        Method::POST,
        &room_path(room, "mute_participant"),
        json!({"user_id": ear.id, "muted": true}),
    )
    .await;
    assert_eq!(unconfigured.status, StatusCode::UNPROCESSABLE_ENTITY, "no RoomService client: 422");
}

#[tokio::test]
async fn invite_links_make_members_of_any_joinable_room_and_never_ask_to_confirm() {
    let (handle, _livekit) = forum().await;
    let alice = handle.add_user("alice", "Alice", false);
    let stage = handle.add_room(NewRoom::stage("stage", "Stage"));
    let private = handle.add_room(NewRoom { public: false, ..NewRoom::open("den", "Den") });

    let path = format!("/audioroom/invite/{}.json", handle.invite_token(stage));
    let opened = call(&handle, &alice.api_key, Method::GET, &path, json!({})).await.json();
    assert_eq!(opened["requires_confirmation"], json!(false), "the plugin's stage check never matches");
    assert_eq!(handle.membership_role(stage, alice.id), Some("participant"), "a stage room makes a member too");
    let path = format!("/audioroom/invite/{}.json", handle.invite_token(private));
    let refused = call(&handle, &alice.api_key, Method::GET, &path, json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "the join permission comes first");
    assert_eq!(handle.membership_role(private, alice.id), None);
    let unknown = call(&handle, &alice.api_key, Method::GET, "/audioroom/invite/nope.json", json!({})).await;
    assert_eq!(unknown.json(), json!({"status": 404, "error": "Not Found"}));
}

/// A MessageBus poll with `key` (if any), `headers` and the subscriptions in `body`.
async fn poll(handle: &Handle, key: Option<&str>, query: &str, headers: &[(&str, &str)], body: Value) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("/message-bus/client-1/poll{query}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header("User-Api-Key", key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(handle, request.body(Body::from(body.to_string())).expect("a request")).await
}

#[tokio::test]
async fn bad_or_limited_keys_poll_anonymously_and_miss_what_is_addressed_to_them() {
    let (handle, _livekit) = forum().await;
    handle.set_long_poll(Duration::from_millis(200));
    let host = handle.add_user("host", "Host", true);
    let ear = handle.add_user("ear", "Ear", false);
    let room = handle.add_room(NewRoom::open("lounge", "Lounge"));
    let channel = format!("/audioroom/rooms/{room}");
    join(&handle, &ear, room).await;
    call(&handle, &host.api_key, Method::DELETE, &format!("{}?user_id={}", room_path(room, "kick"), ear.id), json!({}))
        .await;
    let dont_chunk = [("Dont-Chunk", "true")];

    let mine = poll(&handle, Some(&ear.api_key), "", &dont_chunk, json!({ channel.clone(): 0 })).await.json();
    let types: Vec<&str> =
        mine.as_array().expect("messages").iter().filter_map(|message| message["data"]["type"].as_str()).collect();
    assert_eq!(types, ["participants", "kicked", "participants"], "ear sees the room and the kick: {mine}");

    let stranger = poll(&handle, Some("not-a-key"), "", &dont_chunk, json!({ channel.clone(): 0 })).await;
    assert_eq!(stranger.status, StatusCode::OK, "an unknown key is an anonymous poll, not a 403");
    let messages = stranger.json();
    assert_eq!(messages.as_array().map(Vec::len), Some(1), "only the status: {messages}");
    assert_eq!(messages[0]["channel"], "/__status");
    assert_eq!(messages[0]["data"][&channel], json!(3), "and it moves the client past what it may not see");

    handle.set_rate_limit(0, 2880);
    let limited = poll(&handle, Some(&ear.api_key), "", &dont_chunk, json!({ channel.clone(): 0 })).await;
    assert_eq!(limited.status, StatusCode::OK, "a rate-limited key is anonymous too, not a 429");
    assert!(!limited.body.contains("kicked"), "the kick is withheld: {}", limited.body);
    let keyless = poll(&handle, None, "", &dont_chunk, json!({ channel.clone(): -1 })).await;
    assert_eq!(keyless.status, StatusCode::OK);
}

#[tokio::test]
async fn dlp_answers_plain_json_and_chunked_long_polls_stream_until_they_end() {
    let (handle, _livekit) = forum().await;
    handle.set_long_poll(Duration::from_millis(400));
    let ear = handle.add_user("ear", "Ear", false);
    let room = handle.add_room(NewRoom::open("lounge", "Lounge"));
    let channel = format!("/audioroom/rooms/{room}");

    let dlp = poll(&handle, Some(&ear.api_key), "?dlp=t", &[], json!({ channel.clone(): -1 })).await;
    assert_eq!(dlp.content_type(), "application/json; charset=utf-8", "dlp=t is never chunked");
    assert_eq!(dlp.json()[0]["channel"], "/__status");
    assert_eq!(dlp.headers["cache-control"], "must-revalidate, private, max-age=0");

    let publisher = {
        let handle = handle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            handle.publish(room, json!({"type": "note"}));
        })
    };
    let started = tokio::time::Instant::now();
    let streamed = poll(&handle, Some(&ear.api_key), "", &[], json!({ channel.clone(): 0 })).await;
    publisher.await.expect("published");
    assert!(started.elapsed() >= Duration::from_millis(400), "the stream stays open for the whole long poll");
    assert_eq!(streamed.content_type(), "text/plain; charset=utf-8");
    let frames: Vec<&str> = streamed.body.split("\r\n|\r\n").filter(|frame| !frame.is_empty()).collect();
    assert_eq!(frames.len(), 3, "nothing yet ([]), the message, the closing []: {:?}", streamed.body);
    assert_eq!((frames[0], frames[2]), ("[]", "[]"));
    assert!(frames[1].contains("\"note\""), "{}", frames[1]);

    let held = poll(&handle, Some(&ear.api_key), "", &[("Dont-Chunk", "true")], json!({ channel.clone(): 1 })).await;
    assert_eq!(held.json(), json!([]), "a held Dont-Chunk poll that saw nothing ends with []");
}

#[tokio::test]
async fn invite_to_speak_and_hard_mute_update_the_whole_permission_in_livekit() {
    let (handle, livekit) = forum().await;
    let host = handle.add_user("host", "Host", true);
    let ear = handle.add_user("ear", "Ear", false);
    let stage = handle.add_room(NewRoom::stage("stage", "The Stage"));
    handle.set_present(stage, ear.id);
    let memberships = format!("/audioroom/rooms/{stage}/memberships");

    let invited =
        call(&handle, &host.api_key, Method::POST, &memberships, json!({"username": "ear", "role": "speaker"})).await;
    assert_eq!(invited.status, StatusCode::OK, "inviting ear to speak succeeds");
    let seen = livekit.calls("UpdateParticipant");
    assert_eq!(seen.len(), 2, "the metadata, then the permission: {seen:?}");
    for request in &seen {
        let update = request.update();
        assert_eq!((update.room.as_str(), update.identity.clone()), ("stage", ear.id.to_string()));
        let claims = TokenVerifier::with_api_key(API_KEY, API_SECRET).verify(&request.bearer).expect("signed");
        assert!(claims.video.room_admin && claims.video.room == "stage", "a roomAdmin token for the room");
    }
    let metadata: Value = serde_json::from_str(&seen[0].update().metadata).expect("JSON metadata");
    assert_eq!(metadata["role"], "speaker", "the metadata carries the new role: {metadata}");
    assert_eq!(seen[0].permission(), None, "the metadata call leaves the permission alone");
    assert_eq!(seen[1].permission(), Some((true, true, true)), "subscribe, publish and data, whole");

    for (action, expected) in [("hard_mute", (true, false, false)), ("hard_unmute", (true, true, true))] {
        let answer =
            call(&handle, &host.api_key, Method::POST, &room_path(stage, action), json!({"user_id": ear.id})).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            livekit.calls("UpdateParticipant").last().and_then(LivekitRequest::permission),
            Some(expected),
            "{action}"
        );
    }
    let updates = handle.livekit_updates();
    assert_eq!(updates.len(), 4, "every call is recorded: {updates:?}");
    assert!(updates.iter().all(|update| update.outcome.is_ok()), "LiveKit accepted each: {updates:?}");
}

#[tokio::test]
async fn open_rooms_change_only_metadata_and_a_livekit_failure_is_logged_not_returned() {
    let (handle, livekit) = forum().await;
    let host = handle.add_user("host", "Host", true);
    let ear = handle.add_user("ear", "Ear", false);
    let porch = handle.add_room(NewRoom::open("porch", "The Porch"));
    handle.set_present(porch, ear.id);
    let made = call(
        &handle,
        &host.api_key,
        Method::POST,
        &format!("/audioroom/rooms/{porch}/memberships"),
        json!({"username": "ear", "role": "moderator"}),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK);
    let calls: Vec<_> = livekit.calls("UpdateParticipant").iter().map(LivekitRequest::permission).collect();
    assert_eq!(calls, vec![None], "an open room's membership change sends metadata only");
    let metadata: Value = serde_json::from_str(&livekit.calls("UpdateParticipant")[0].update().metadata).expect("JSON");
    assert_eq!(metadata["role"], "participant", "an open room broadcasts everyone but the creator as participant");

    // Nothing listens on a port freed just now: the forum still answers, and records the failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("port");
    let keys = LivekitKeys { url: format!("ws://{closed}"), api_key: API_KEY.into(), api_secret: API_SECRET.into() };
    let (_forum, handle) = start(keys).await.expect("forum");
    let host = handle.add_user("host", "Host", true);
    let ear = handle.add_user("ear", "Ear", false);
    let stage = handle.add_room(NewRoom::stage("stage", "The Stage"));
    handle.set_present(stage, ear.id);
    let hard_mute =
        call(&handle, &host.api_key, Method::POST, &room_path(stage, "hard_mute"), json!({"user_id": ear.id})).await;
    assert_eq!(hard_mute.status, StatusCode::OK);
    let updates = handle.livekit_updates();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert!(updates[0].outcome.is_err(), "the unreachable LiveKit is recorded as a failure: {updates:?}");
    assert_eq!(
        handle.presence(stage, ear.id).and_then(|presence| presence.hard_muted),
        Some(true),
        "the forum's state changed"
    );
}
