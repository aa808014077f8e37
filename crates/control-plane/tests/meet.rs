//! The La Suite Meet adapter against its contract server (CONTROL_PLANES.md §2, §6).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use parley_contract_servers::meet::{self, AccessLevel, Handle};
use parley_contract_servers::{LivekitKeys, Running};
use parley_control_plane::adapter::meet::{LobbyStatus, MeetPlane, Secrets, Settings};
use parley_control_plane::{Capability, ControlPlane, ModerationAction, Secret};

const CSRF: &str = "csrf-token-value-1234567890";

fn keys() -> LivekitKeys {
    LivekitKeys {
        url: "ws://127.0.0.1:7880".into(),
        api_key: "devkey".into(),
        api_secret: "a-test-secret-that-is-long-enough-123".into(),
    }
}

async fn site() -> (Running, Handle) {
    meet::start(keys()).await.expect("site starts")
}

fn plane_with(url: &str, name: &str, session: Option<&str>, csrf: Option<&str>, wait_ms: u64) -> MeetPlane {
    MeetPlane::new(
        Settings { url: url.into(), display_name: name.into(), lobby_poll_ms: 100, lobby_wait_ms: wait_ms },
        Secrets { session_cookie: session.map(Secret::new), csrf_token: csrf.map(Secret::new) },
    )
    .expect("valid settings")
}

fn guest(url: &str) -> MeetPlane {
    plane_with(url, "Guest Gus", None, None, 10_000)
}

/// The claims of a Meet token. Meet's tokens carry `room_role: null` for callers without a role,
/// which `livekit-api`'s verifier refuses, so the payload is read as JSON (the contract server's
/// own tests check the signature).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Whether a `Cookie` header carries a cookie named `name` (not just one ending so).
fn has_cookie(header: &str, name: &str) -> bool {
    header.split(';').any(|pair| pair.trim().split_once('=').is_some_and(|(key, _)| key == name))
}

/// A restricted room with a signed-in owner (session + CSRF) whose simulated LiveKit room holds
/// the owner and a guest with a microphone.
async fn owner_setup() -> (Running, Handle, String, MeetPlane) {
    let (running, handle) = site().await;
    handle.set_livekit_url(&running.url().replace("http://", "ws://"));
    let room = handle.add_room("standup", "Daily standup", AccessLevel::Restricted);
    let session = handle.add_user("owner-sub");
    handle.set_role(&room, "owner-sub", "owner");
    // Meet's LiveKit identity of a signed-in user is their `sub`.
    handle.add_present(&room, "owner-sub", "Olga", &[("TR_owner_mic", "MICROPHONE")]);
    handle.add_present(&room, "guest-1", "Gus", &[("TR_cam", "CAMERA"), ("TR_mic", "MICROPHONE")]);
    handle.set_user_details("member-sub", Some("mia@example.org"), Some("Mia"));
    handle.add_present(&room, "member-sub", "Mia", &[]);
    let owner = plane_with(&running.url(), "Olga", Some(&session), Some(CSRF), 10_000);
    (running, handle, room, owner)
}

#[tokio::test]
async fn a_guest_joins_a_public_room_directly() {
    let (running, handle) = site().await;
    let room = handle.add_room("lobby-free", "Open room", AccessLevel::Public);
    let plane = guest(&running.url());
    let grant = plane.join("lobby-free").await.expect("public rooms admit everyone");
    assert_eq!(grant.room_id, room, "the slug resolves to the room UUID");
    assert_eq!(grant.room_name, "Open room");
    assert_eq!(grant.url, "ws://127.0.0.1:7880");
    let claims = claims(&grant.token);
    assert_eq!(claims["video"]["room"], room.as_str(), "LiveKit room = room UUID");
    assert_eq!(claims["name"], "Guest Gus");
    assert_eq!(claims["video"]["roomAdmin"], false);
    assert_eq!(claims["attributes"]["is_authenticated"], "false");
    assert_eq!(claims["attributes"]["room_role"], serde_json::Value::Null, "Meet sends no role as JSON null");
    assert_eq!(grant.role, None, "no role");
    let capabilities = plane.capabilities();
    assert!(capabilities.supports(Capability::Join) && capabilities.supports(Capability::RaiseHand));
    assert_eq!(capabilities.moderation(), [ModerationAction::Mute], "without a session only token-mute");
    let request = handle.requests().into_iter().next().unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/api/v1.0/rooms/lobby-free/"));
    assert_eq!(request.query.as_deref(), Some("username=Guest+Gus"));
}

#[tokio::test]
async fn an_owner_gets_a_room_admin_token_and_the_participant_list() {
    let (_running, handle, room, owner) = owner_setup().await;
    let grant = owner.join(&room).await.expect("owners enter restricted rooms");
    assert_eq!(claims(&grant.token)["video"]["roomAdmin"], true, "owners get roomAdmin");
    assert_eq!(grant.role.as_deref(), Some("owner"));
    let moderation = owner.capabilities().moderation();
    for action in [
        ModerationAction::Mute,
        ModerationAction::HardMute,
        ModerationAction::Restore,
        ModerationAction::Kick,
        ModerationAction::MakeModerator,
    ] {
        assert!(moderation.contains(&action), "owner can {action}: {moderation:?}");
    }
    assert!(owner.capabilities().supports(Capability::ListParticipants));

    let participants = owner.participants(&grant).await.expect("RoomService list with the roomAdmin token");
    let gus = participants.iter().find(|participant| participant.identity == "guest-1").expect("guest listed");
    assert_eq!((gus.name.as_str(), gus.muted, gus.hand_raised), ("Gus", Some(false), Some(false)));
    let twirp =
        handle.requests().into_iter().find(|seen| seen.path == "/twirp/livekit.RoomService/ListParticipants").unwrap();
    assert_eq!(twirp.headers["authorization"], format!("Bearer {}", grant.token));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&twirp.body).unwrap(), serde_json::json!({ "room": room }));
}

#[tokio::test]
async fn owners_moderate_with_session_csrf_and_whole_permission_objects() {
    let (running, handle, room, owner) = owner_setup().await;
    let grant = owner.join(&room).await.unwrap();

    owner.moderate(&grant, ModerationAction::Mute, "guest-1").await.expect("mute resolves the microphone track");
    let gus = handle.present(&room).into_iter().find(|present| present.identity == "guest-1").unwrap();
    assert!(gus.tracks.iter().any(|track| track.sid == "TR_mic" && track.muted), "microphone muted");
    assert!(gus.tracks.iter().any(|track| track.sid == "TR_cam" && !track.muted), "camera untouched");
    let mute = handle.requests().into_iter().find(|seen| seen.path.ends_with("/mute-participant/")).unwrap();
    assert_eq!(mute.headers["x-csrftoken"], CSRF);
    assert_eq!(mute.headers["origin"], running.url());
    assert_eq!(mute.headers["referer"], format!("{}/", running.url()));
    assert!(
        has_cookie(&mute.headers["cookie"], "sessionid")
            && mute.headers["cookie"].contains(&format!("csrftoken={CSRF}")),
        "production Meet reads Django's default session cookie: {}",
        mute.headers["cookie"]
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&mute.body).unwrap(),
        serde_json::json!({ "participant_identity": "guest-1", "track_sid": "TR_mic" })
    );

    owner.moderate(&grant, ModerationAction::HardMute, "guest-1").await.expect("hard mute");
    let permission =
        handle.present(&room).into_iter().find(|present| present.identity == "guest-1").unwrap().permission.unwrap();
    assert_eq!(
        permission,
        serde_json::json!({ "can_subscribe": true, "can_publish": false, "can_publish_data": true, "can_publish_sources": [],
                            "can_update_metadata": false, "can_subscribe_metrics": false }),
        "every permission field is sent"
    );
    owner.moderate(&grant, ModerationAction::Restore, "guest-1").await.expect("restore");
    let permission =
        handle.present(&room).into_iter().find(|present| present.identity == "guest-1").unwrap().permission.unwrap();
    assert_eq!(permission["can_publish"], true);
    assert_eq!(
        permission["can_publish_sources"],
        serde_json::json!(["camera", "microphone", "screen_share", "screen_share_audio"])
    );

    owner.moderate(&grant, ModerationAction::MakeModerator, "member-sub").await.expect("promote");
    assert_eq!(handle.role(&room, "member-sub").as_deref(), Some("administrator"));
    let mia = handle.present(&room).into_iter().find(|present| present.identity == "member-sub").unwrap();
    assert_eq!(mia.attributes["room_role"], "administrator", "the role reaches LiveKit");
    assert_eq!(mia.metadata, "null", "Meet's UpdateParticipant writes json.dumps(None)");
    let guest_role = owner.moderate(&grant, ModerationAction::MakeModerator, "guest-1").await.expect_err("no account");
    assert_eq!(guest_role.code(), "not_found");
    assert!(guest_role.to_string().contains("no user account"), "{guest_role}");

    owner.moderate(&grant, ModerationAction::Kick, "guest-1").await.expect("kick");
    assert!(!handle.present(&room).iter().any(|present| present.identity == "guest-1"), "removed from the room");
    let again = owner.moderate(&grant, ModerationAction::Kick, "guest-1").await.expect_err("already gone");
    assert_eq!(again.code(), "not_found");
    assert!(again.to_string().contains("Participant not found"), "{again}");

    let ban = owner.moderate(&grant, ModerationAction::Ban, "member-sub").await.expect_err("Meet has no bans");
    assert_eq!(ban.code(), "unsupported");
}

#[tokio::test]
async fn the_lobby_is_polled_with_its_cookie_until_an_admin_admits() {
    let (running, handle, room, owner) = owner_setup().await;
    let guest = Arc::new(guest(&running.url()));
    let mut status = guest.lobby_status();
    let joining = {
        let (guest, room) = (guest.clone(), room.clone());
        tokio::spawn(async move { guest.join(&room).await })
    };
    tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|status| matches!(status, LobbyStatus::Waiting { .. })),
    )
    .await
    .expect("waiting shows in time")
    .expect("status channel open");

    let waiting = owner.waiting_participants(&room).await.expect("the owner sees the lobby");
    assert_eq!(waiting.len(), 1, "one waiter: {waiting:?}");
    assert_eq!(waiting[0].username, "Guest Gus");
    tokio::time::sleep(Duration::from_millis(350)).await;
    owner.admit(&room, &waiting[0].id, true).await.expect("admit");

    let grant =
        tokio::time::timeout(Duration::from_secs(5), joining).await.expect("admitted in time").unwrap().expect("grant");
    let claims = claims(&grant.token);
    assert_eq!(claims["sub"], waiting[0].id.as_str(), "identity = lobby participant id");
    assert_eq!(claims["attributes"]["color"], waiting[0].color.as_deref().unwrap(), "the lobby color is the token's");
    assert_eq!(*guest.lobby_status().borrow(), LobbyStatus::Admitted { room: room.clone() });
    assert_eq!(handle.notifications(), 1, "the cookie kept one waiter, not one per poll");
    let polls: Vec<_> = handle.requests().into_iter().filter(|seen| seen.path.ends_with("/request-entry/")).collect();
    assert!(polls.len() >= 3, "polled repeatedly: {}", polls.len());
    assert!(polls.iter().skip(1).all(|seen| {
        seen.headers
            .get("cookie")
            .is_some_and(|cookie| cookie.contains(&format!("lobbyParticipantId={}", waiting[0].id)))
    }));
}

#[tokio::test]
async fn a_declined_or_unanswered_guest_gets_a_clear_error() {
    let (running, handle, room, owner) = owner_setup().await;
    let guest = Arc::new(guest(&running.url()));
    let joining = {
        let (guest, room) = (guest.clone(), room.clone());
        tokio::spawn(async move { guest.join(&room).await })
    };
    let mut waiting = Vec::new();
    for _ in 0..50 {
        waiting = owner.waiting_participants(&room).await.unwrap();
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner.admit(&room, &waiting[0].id, false).await.expect("deny");
    let error = tokio::time::timeout(Duration::from_secs(5), joining).await.unwrap().unwrap().expect_err("denied");
    assert_eq!(error.code(), "entry_denied");
    assert!(error.to_string().contains("declined"), "{error}");

    let impatient = plane_with(&running.url(), "Ivan", None, None, 400);
    let error = impatient.join(&room).await.expect_err("nobody answers");
    assert_eq!(error.code(), "forbidden");
    assert!(error.to_string().contains("nobody admitted you"), "{error}");
    assert_eq!(*impatient.lobby_status().borrow(), LobbyStatus::GaveUp { room });
    assert!(handle.notifications() >= 2, "both guests reached the lobby");
}

#[tokio::test]
async fn waiters_that_stop_polling_expire_after_three_seconds() {
    let (running, handle) = site().await;
    let room = handle.add_room("closed", "Closed", AccessLevel::Restricted);
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1.0/rooms/{room}/request-entry/", running.url());
    let first = client.post(&url).json(&serde_json::json!({ "username": "Once" })).send().await.unwrap();
    let cookie = first.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.starts_with("lobbyParticipantId=") && cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(first.json::<serde_json::Value>().await.unwrap()["status"], "waiting");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(handle.expired_waiters(), 1, "the waiter was forgotten");
}

#[tokio::test]
async fn token_auth_raises_hands_renames_and_mutes_named_tracks() {
    let (running, handle) = site().await;
    handle.set_livekit_url(&running.url().replace("http://", "ws://"));
    let room = handle.add_room("open", "Open", AccessLevel::Public);
    let plane = guest(&running.url());
    let grant = plane.join("open").await.unwrap();
    let identity = claims(&grant.token)["sub"].as_str().unwrap().to_string();
    handle.add_present(&room, &identity, "Guest Gus", &[]);
    handle.add_present(&room, "noisy", "Noisy", &[("TR_noisy", "MICROPHONE")]);

    plane.set_hand(&grant, true).await.expect("raise hand");
    let me = handle.present(&room).into_iter().find(|present| present.identity == identity).unwrap();
    assert!(me.attributes["handRaisedAt"].starts_with("20"), "ISO timestamp: {:?}", me.attributes);
    let toggle = handle.requests().into_iter().find(|seen| seen.path.ends_with("/toggle-hand/")).unwrap();
    assert_eq!(toggle.headers["authorization"], format!("Bearer {}", grant.token));
    assert!(!toggle.headers.contains_key("cookie"), "token calls carry no session");
    plane.set_hand(&grant, false).await.unwrap();
    plane.rename(&grant, "Gus the Guest").await.expect("rename");
    let me = handle.present(&room).into_iter().find(|present| present.identity == identity).unwrap();
    assert_eq!(me.name, "Gus the Guest");
    assert!(!me.attributes.contains_key("handRaisedAt"), "an empty attribute is deleted: {:?}", me.attributes);

    let resolve =
        plane.moderate(&grant, ModerationAction::Mute, "noisy").await.expect_err("no roomAdmin to list tracks");
    assert_eq!(resolve.code(), "forbidden");
    assert!(resolve.to_string().contains("<identity>/<track SID>"), "{resolve}");
    plane.moderate(&grant, ModerationAction::Mute, "noisy/TR_noisy").await.expect("everyone can mute a named track");
    assert!(handle.present(&room).iter().any(|present| present.identity == "noisy" && present.tracks[0].muted));

    handle.set_configuration(&room, serde_json::json!({ "everyone_can_mute": false }));
    let refused = plane.moderate(&grant, ModerationAction::Mute, "noisy/TR_noisy").await.expect_err("not in this room");
    assert_eq!(refused.code(), "forbidden");
    let kick = plane.moderate(&grant, ModerationAction::Kick, "noisy").await.expect_err("no session");
    assert_eq!(kick.code(), "invalid_input");
    assert!(kick.to_string().contains("sessionid"), "{kick}");
}

#[tokio::test]
async fn session_and_csrf_failures_read_well() {
    let (running, handle, room, _owner) = owner_setup().await;
    let owner_session = handle.add_user("owner-sub");
    let owner = plane_with(&running.url(), "Olga", Some(&owner_session), Some(CSRF), 10_000);
    let grant = owner.join(&room).await.expect("owner joins");
    // The adapter sends cookie and header from one secret, so the server's check is shown with a
    // raw request, and the adapter's mapping of its answer with a forced one.
    let csrf_error = {
        let client = reqwest::Client::new();
        let response = client
            .post(format!("{}/api/v1.0/rooms/{room}/remove-participant/", running.url()))
            .header("cookie", format!("sessionid={owner_session}; csrftoken=a"))
            .header("x-csrftoken", "b")
            .json(&serde_json::json!({ "participant_identity": "guest-1" }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(csrf_error.0, 403);
    assert!(csrf_error.1["detail"].as_str().unwrap().starts_with("CSRF Failed"), "{:?}", csrf_error.1);
    handle.fail_next("remove-participant", 403, r#"{"detail":"CSRF Failed: CSRF token missing."}"#);
    let error = owner.moderate(&grant, ModerationAction::Kick, "guest-1").await.expect_err("CSRF refused");
    assert_eq!(error.code(), "unauthorized");
    assert!(error.to_string().contains("CSRF Failed") && error.to_string().contains("csrftoken"), "{error}");

    let stranger = plane_with(&running.url(), "Sam", Some("expired-session"), Some(CSRF), 10_000);
    let error = stranger.waiting_participants(&room).await.expect_err("unknown session = anonymous");
    assert_eq!(error.code(), "unauthorized");
    assert!(error.to_string().contains("Authentication credentials were not provided"), "{error}");

    let member_session = handle.add_user("member-sub");
    handle.set_role(&room, "member-sub", "member");
    let member = plane_with(&running.url(), "Mia", Some(&member_session), Some(CSRF), 10_000);
    let member_grant = member.join(&room).await.expect("members enter");
    assert!(!member.capabilities().can_moderate(ModerationAction::Kick), "a non-admin token hides admin actions");
    let error =
        member.moderate(&member_grant, ModerationAction::Kick, "guest-1").await.expect_err("members cannot kick");
    assert_eq!(error.code(), "forbidden");
    assert!(error.to_string().contains("You must have privileges on room"), "{error}");
}

#[tokio::test]
async fn unknown_rooms_forced_errors_and_dead_servers_map_to_plane_errors() {
    let (running, handle) = site().await;
    handle.add_room("open", "Open", AccessLevel::Public);
    handle.set_allow_unregistered_rooms(false);
    let plane = guest(&running.url());
    let missing = plane.join("nope").await.expect_err("unknown room");
    assert_eq!(missing.code(), "not_found");
    assert!(missing.to_string().contains("No Room matches"), "{missing}");
    let cases: [(u16, &str, &str, &str); 5] = [
        (500, "<html><body>Server Error (500)</body></html>", "server_error", "HTTP 500"),
        (429, r#"{"detail":"Request was throttled."}"#, "rate_limited", "rate limiting"),
        (502, "Bad Gateway", "server_error", "Bad Gateway"),
        (200, "<!DOCTYPE html><html>SPA</html>", "malformed_response", "web page"),
        (200, r#"{"id":"#, "malformed_response", "unexpected JSON"),
    ];
    for (status, body, code, words) in cases {
        handle.fail_next("retrieve", status, body);
        let error = plane.join("open").await.expect_err("forced failure");
        assert_eq!(error.code(), code, "{status} {body}: {error}");
        assert!(error.to_string().contains(words), "{status}: {error}");
    }

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = client.get(format!("{}/api/v1.0/rooms/open?username=x", running.url())).send().await.unwrap();
    assert_eq!(redirect.status().as_u16(), 301, "APPEND_SLASH redirects GETs");
    let post = client.post(format!("{}/api/v1.0/rooms/open/rename", running.url())).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 301, "without DEBUG, Django redirects every method");
    let unknown = client.post(format!("{}/api/v1.0/rooms/open/shout/", running.url())).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404, "an unknown action is not routed");

    let url = running.url();
    running.stop().await;
    assert_eq!(guest(&url).join("open").await.expect_err("dead").code(), "unreachable");
}

#[tokio::test]
async fn cookies_never_show() {
    let session = "sessionvalue-abcdef-123456";
    let plane = plane_with("https://meet.example", "Olga", Some(session), Some(CSRF), 10_000);
    let debug = format!("{plane:?}");
    assert!(!debug.contains(session) && !debug.contains(CSRF), "Debug leaks a cookie: {debug}");
    let grant = parley_control_plane::JoinGrant {
        room_id: String::new(),
        room_name: String::new(),
        url: "ws://x".into(),
        token: "t".into(),
        e2ee_key: None,
        expires_at: None,
        heartbeat_every: None,
        role: None,
        notice: None,
    };
    let error = plane.moderate(&grant, ModerationAction::Kick, "someone").await.expect_err("no room");
    assert!(!error.to_string().contains(session), "{error}");
}

/// Regression: Meet's tokens carry `"room_role": null` for everyone without a role, and the
/// adapter read them with `livekit-api`'s `Claims`, whose attributes are strings only, so every
/// guest's join failed with "not a JWT".
#[tokio::test]
async fn a_token_whose_room_role_is_null_still_joins() {
    let (running, handle) = site().await;
    let room = handle.add_room("open", "Open", AccessLevel::Public);
    let grant = guest(&running.url()).join("open").await.expect("a null room_role is a valid token");
    assert_eq!(claims(&grant.token)["attributes"]["room_role"], serde_json::Value::Null, "the real shape");
    assert_eq!(grant.room_id, room);
    assert_eq!(grant.role, None, "a null role is no role");
    assert!(grant.expires_at.is_some_and(|exp| exp > 5 * 60 * 60), "the 6 h expiry is read: {:?}", grant.expires_at);
}

/// Regression: the adapter sent the session as `meet_sessionid`, the cookie name of Meet's
/// Development settings; production Meet reads Django's default `sessionid` and saw an anonymous
/// caller.
#[tokio::test]
async fn the_session_cookie_is_djangos_sessionid_unless_named() {
    let (running, handle) = site().await;
    let room = handle.add_room("standup", "Standup", AccessLevel::Restricted);
    let session = handle.add_user("owner-sub");
    handle.set_role(&room, "owner-sub", "owner");
    let owner = plane_with(&running.url(), "Olga", Some(&session), Some(CSRF), 10_000);
    let grant = owner.join("standup").await.expect("the session is recognised");
    assert_eq!(grant.role.as_deref(), Some("owner"));
    let retrieve = handle.requests().into_iter().find(|seen| seen.path.ends_with("/standup/")).unwrap();
    assert!(has_cookie(&retrieve.headers["cookie"], "sessionid"), "{}", retrieve.headers["cookie"]);

    // A Development deployment names its cookie; the secret may then say `name=value`.
    handle.set_session_cookie_name("meet_sessionid");
    let named = format!("meet_sessionid={session}");
    let dev = plane_with(&running.url(), "Olga", Some(&named), Some(CSRF), 10_000);
    assert_eq!(dev.join("standup").await.expect("named cookie").role.as_deref(), Some("owner"));
}

/// Regression: with a session cookie configured, the adapter muted through the session. Meet's
/// `CanMuteParticipant` lets a session through only for owners and administrators; everyone else
/// mutes with the LiveKit token (`everyone_can_mute`), so a signed-in member was refused.
#[tokio::test]
async fn a_signed_in_member_mutes_with_the_livekit_token() {
    let (running, handle) = site().await;
    let room = handle.add_room("standup", "Standup", AccessLevel::Restricted);
    let session = handle.add_user("member-sub");
    handle.set_role(&room, "member-sub", "member");
    handle.add_present(&room, "member-sub", "Mia", &[]);
    handle.add_present(&room, "noisy", "Noisy", &[("TR_noisy", "MICROPHONE")]);
    let member = plane_with(&running.url(), "Mia", Some(&session), Some(CSRF), 10_000);
    let grant = member.join("standup").await.expect("members enter");
    member.moderate(&grant, ModerationAction::Mute, "noisy/TR_noisy").await.expect("everyone can mute");
    assert!(handle.present(&room).iter().any(|present| present.identity == "noisy" && present.tracks[0].muted));
    let mute = handle.requests().into_iter().find(|seen| seen.path.ends_with("/mute-participant/")).unwrap();
    assert_eq!(mute.headers["authorization"], format!("Bearer {}", grant.token), "the token proves the room");
}

/// Regression: the LiveKit-token endpoints answer a missing or refused token with 403 (the token
/// authenticator has no `WWW-Authenticate`), which the adapter reported as a permission problem.
#[tokio::test]
async fn a_refused_livekit_token_reads_as_unauthorized() {
    let (running, handle) = site().await;
    let room = handle.add_room("open", "Open", AccessLevel::Public);
    let plane = guest(&running.url());
    let mut grant = plane.join("open").await.unwrap();
    grant.token =
        livekit_api::access_token::AccessToken::with_api_key(&keys().api_key, "not-the-site-secret-0123456789")
            .with_identity("someone")
            .with_grants(livekit_api::access_token::VideoGrants {
                room_join: true,
                room: room.clone(),
                ..Default::default()
            })
            .to_jwt()
            .unwrap();
    let error = plane.set_hand(&grant, true).await.expect_err("a token the site did not sign");
    assert_eq!(error.code(), "unauthorized", "{error}");
    assert!(error.to_string().contains("Invalid LiveKit token: Signature verification failed"), "{error}");
    grant.token = String::new();
    let error = plane.rename(&grant, "Gus").await.expect_err("no token");
    assert_eq!(error.code(), "unauthorized", "{error}");
}

#[tokio::test]
async fn an_unregistered_room_is_joined_by_its_slug() {
    let (running, handle) = site().await;
    let plane = guest(&running.url());
    let grant = plane.join("Team Sync").await.expect("ALLOW_UNREGISTERED_ROOMS is on by default");
    assert_eq!((grant.room_id.as_str(), grant.room_name.as_str()), ("team-sync", "team-sync"));
    assert_eq!(claims(&grant.token)["video"]["room"], "team-sync", "the LiveKit room is the slug");
    let hand = plane.set_hand(&grant, true).await.expect_err("the room does not exist in Meet's database");
    assert_eq!(hand.code(), "not_found");
    assert!(handle.requests().iter().any(|seen| seen.path == "/api/v1.0/rooms/Team%20Sync/"));
}

#[tokio::test]
async fn a_signed_in_visitor_admitted_from_the_lobby_joins_as_themselves() {
    let (running, handle, room, owner) = owner_setup().await;
    let session = handle.add_user("visitor-sub");
    let visitor = Arc::new(plane_with(&running.url(), "Vic", Some(&session), Some(CSRF), 10_000));
    let joining = {
        let (visitor, room) = (visitor.clone(), room.clone());
        tokio::spawn(async move { visitor.join(&room).await })
    };
    let mut waiting = Vec::new();
    for _ in 0..50 {
        waiting = owner.waiting_participants(&room).await.unwrap();
        if !waiting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner.admit(&room, &waiting[0].id, true).await.expect("admit");
    let grant = tokio::time::timeout(Duration::from_secs(5), joining).await.unwrap().unwrap().expect("admitted");
    let claims = claims(&grant.token);
    assert_eq!(claims["sub"], "visitor-sub", "request.user's sub, not the lobby id");
    assert_eq!(claims["attributes"]["is_authenticated"], "true");
}

/// The wire shapes the adapter does not exercise, checked literally against Meet's.
#[tokio::test]
async fn the_room_and_error_bodies_are_meets() {
    let (running, handle, room, _owner) = owner_setup().await;
    let owner_session = handle.add_user("owner-sub");
    let client = reqwest::Client::new();
    let base = running.url();
    let get = |path: String, session: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(session) = session {
            request = request.header("cookie", format!("sessionid={session}"));
        }
        request.send()
    };

    let owner_view: serde_json::Value =
        get(format!("/api/v1.0/rooms/{room}/"), Some(&owner_session)).await.unwrap().json().await.unwrap();
    assert_eq!(owner_view["pin_code"], serde_json::Value::Null, "no telephony, no PIN: {owner_view}");
    assert!(owner_view.get("is_administrable").is_none(), "only unregistered rooms say is_administrable");
    let access = &owner_view["accesses"][0];
    let user = &access["user"];
    assert!(user.is_object(), "accesses[].user is the nested account: {access}");
    assert!(uuid_like(user["id"].as_str().unwrap()) && user["id"] != "owner-sub", "user.id is the account UUID");
    assert_eq!(access["resource"], room.as_str());
    assert_eq!(access["role"], "owner");
    for (field, value) in [
        ("timezone", serde_json::json!("UTC")),
        ("language", serde_json::json!("en-us")),
        ("default_room_access_level", serde_json::Value::Null),
        ("default_room_configuration", serde_json::json!({})),
        ("email", serde_json::Value::Null),
    ] {
        assert_eq!(user[field], value, "accesses[].user.{field}");
    }
    let stranger: serde_json::Value =
        get(format!("/api/v1.0/rooms/{room}/"), None).await.unwrap().json().await.unwrap();
    assert!(stranger.get("pin_code").is_none() && stranger.get("livekit").is_none(), "{stranger}");
    handle.set_telephony(true);
    let dialled = handle.add_room("dial", "Dial", AccessLevel::Public);
    let dial: serde_json::Value = get(format!("/api/v1.0/rooms/{dialled}/"), None).await.unwrap().json().await.unwrap();
    let pin = dial["pin_code"].as_str().expect("a PIN string");
    assert!(pin.len() == 10 && pin.bytes().all(|byte| byte.is_ascii_digit()), "{pin}");
    let unregistered: serde_json::Value =
        get("/api/v1.0/rooms/elsewhere/".into(), None).await.unwrap().json().await.unwrap();
    assert_eq!(
        (&unregistered["id"], &unregistered["is_administrable"]),
        (&serde_json::Value::Null, &serde_json::json!(false))
    );

    let post =
        |path: &str, body: serde_json::Value| client.post(format!("{base}/api/v1.0/rooms/{room}/{path}/")).json(&body);
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let www = response.headers().get("www-authenticate").map(|value| value.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        (status, www, serde_json::from_str::<serde_json::Value>(&text).unwrap_or(serde_json::Value::String(text)))
    };
    let (status, _, body) =
        answer(post("toggle-hand", serde_json::json!({ "raised": true })).send().await.unwrap()).await;
    assert_eq!((status, body), (403, serde_json::json!({ "detail": "Authentication credentials were not provided." })));
    let (status, _, body) = answer(post("mute-participant", serde_json::json!({})).send().await.unwrap()).await;
    assert_eq!((status, body), (403, serde_json::json!({ "detail": "Authentication credentials were not provided." })));
    let (status, www, _) = answer(post("update-participant", serde_json::json!({})).send().await.unwrap()).await;
    assert_eq!((status, www.as_deref()), (401, Some("Session")), "session endpoints say 401 + WWW-Authenticate");

    let plain = client
        .post(format!("{base}/api/v1.0/rooms/{room}/request-entry/"))
        .header("content-type", "text/plain")
        .body(r#"{"username":"x"}"#)
        .send()
        .await
        .unwrap();
    let (status, _, body) = answer(plain).await;
    assert_eq!(
        (status, body),
        (415, serde_json::json!({ "detail": "Unsupported media type \"text/plain\" in request." }))
    );
    let (status, _, body) = answer(
        client
            .post(format!("{base}/api/v1.0/rooms/nowhere/request-entry/"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (400, serde_json::json!({ "username": ["This field is required."] })),
        "body before room"
    );

    let with_session = |path: &str, body: serde_json::Value| {
        post(path, body)
            .header("cookie", format!("sessionid={owner_session}; csrftoken={CSRF}"))
            .header("x-csrftoken", CSRF)
    };
    let (status, _, body) = answer(
        with_session(
            "update-participant-role",
            serde_json::json!({ "participant_identity": "owner-sub", "role": "member" }),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, body), (403, serde_json::json!({ "error": "You cannot change your own role." })));
    let (status, _, body) = answer(
        with_session(
            "update-participant-role",
            serde_json::json!({ "participant_identity": "guest-1", "role": "member" }),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (404, serde_json::json!({ "error": "This participant has no user account and cannot be assigned a role." }))
    );
    let (status, _, body) = answer(
        with_session(
            "update-participant",
            serde_json::json!({ "participant_identity": "guest-1", "permission": { "hidden": true } }),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.as_str().is_some_and(|page| page.contains("Bad Request (400)")),
        "SuspiciousOperation is HTML: {body}"
    );

    // CSRF only guards session-authenticated requests: a LiveKit-token call carrying a stale
    // session cookie and no CSRF header passes.
    let token = livekit_api::access_token::AccessToken::with_api_key(&keys().api_key, &keys().api_secret)
        .with_identity("guest-1")
        .with_grants(livekit_api::access_token::VideoGrants {
            room_join: true,
            room: room.clone(),
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    let (status, _, body) = answer(
        post("toggle-hand", serde_json::json!({ "raised": true }))
            .header("cookie", format!("sessionid={owner_session}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (200, serde_json::json!({ "status": "success" })));
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4
}
