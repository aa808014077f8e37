//! Every adapter against arbitrary server answers: whatever status, headers and bytes come back,
//! each call returns (`Ok` or `Err`) without panicking or hanging, every error has a user message
//! and a code, and no secret the adapter was configured with shows in what it returns.
//!
//! One loopback server per test answers every request with the case's canned response; proptest
//! picks the status, `Content-Type`, `Retry-After`, `Set-Cookie` and the body: arbitrary bytes,
//! arbitrary JSON whose keys are mostly the field names the adapters read, documents shaped like
//! each backend's real answers with some values replaced, prefixes of such documents, and
//! server-sent events. Shaped documents carry real LiveKit JWTs and this server's own URL, so
//! answers get past token and URL checks into the code behind them (RoomService calls made with
//! a `roomAdmin` token come back to the same server).
//!
//! Runs are reproducible: each test has a fixed seed unless `PROPTEST_RNG_SEED` is set, the
//! minimal failing response is printed, and nothing is written to disk (no failure persistence).
//! `PROPTEST_CASES` raises the case count for a longer hunt.

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::Engine;
use parley_control_plane::adapter::audioroom::{self, AudioroomPlane, user_api_key};
use parley_control_plane::adapter::distokoloshe::{self, DistokoloshePlane};
use parley_control_plane::adapter::livekit::token::{TokenRequest, mint};
use parley_control_plane::adapter::livekit::{self, LivekitPlane, RoomAdmin};
use parley_control_plane::adapter::lk_jwt::{self, LkJwtPlane};
use parley_control_plane::adapter::meet::{self, MeetPlane};
use parley_control_plane::adapter::nip29::{self, Nip29Plane};
use parley_control_plane::adapter::token_endpoint::{self, RequestMethod, TokenEndpointPlane};
use parley_control_plane::{ControlPlane, JoinGrant, ModerationAction, PlaneError, PlaneEvent, Secret};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Longer than any answer from a loopback server takes; a call still pending then is hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `watch` runs before it is dropped, as a session drops it on leaving.
const WATCH_FOR: Duration = Duration::from_millis(60);
/// How long the canned server waits on a silent client before giving up on the connection.
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Cases per adapter when `PROPTEST_CASES` is not set: with the file's seven tests on two slow
/// cores this keeps the whole file well under a minute.
const CASES: u32 = 64;
/// One action per RoomService path (GetParticipant + MutePublishedTrack, GetParticipant +
/// UpdateParticipant, RemoveParticipant) and one RoomService does not offer. Every RoomService
/// call builds its own HTTP client, so trying all eleven actions would triple the run time.
const ROOM_SERVICE_ACTIONS: [ModerationAction; 4] =
    [ModerationAction::Mute, ModerationAction::HardMute, ModerationAction::Kick, ModerationAction::Ban];

/// Statuses the backends really send, tried more often than the rest of 100..=599.
const STATUSES: &[u16] = &[200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503];
const CONTENT_TYPES: &[Option<&str>] =
    &[Some("application/json"), Some("text/html; charset=utf-8"), None, Some("text/event-stream")];

/// The names the adapters' wire types and error mappings read.
const FIELD_NAMES: &[&str] = &[
    // Audioroom and Discourse.
    "id",
    "name",
    "slug",
    "description",
    "description_excerpt",
    "room_type",
    "max_participants",
    "active_participants",
    "can_manage",
    "username",
    "avatar_template",
    "role",
    "is_muted",
    "hand_raised",
    "room",
    "rooms",
    "livekit_token",
    "livekit_url",
    "participants",
    "user",
    "current_user",
    "message_id",
    "channel",
    "data",
    "type",
    "user_id",
    "exp",
    "metadata",
    "errors",
    "error_type",
    "extras",
    "wait_seconds",
    "conflicting_room_id",
    "conflicting_room_name",
    // Error bodies every backend uses.
    "error",
    "message",
    "msg",
    "detail",
    "error_description",
    "code",
    // Meet.
    "configuration",
    "can_publish_sources",
    "livekit",
    "url",
    "token",
    "status",
    "color",
    "identity",
    "tracks",
    "attributes",
    "sid",
    "source",
    "muted",
    "handRaisedAt",
    "room_role",
    // lk-jwt-service and Matrix.
    "org.matrix.msc4143.rtc_foci",
    "livekit_service_url",
    "access_token",
    "token_type",
    "matrix_server_name",
    "expires_in",
    "jwt",
    "errcode",
    "retry_after_ms",
    // NIP-29.
    "server_url",
    "participant_token",
    // disTokoloshe.
    "created_by",
    "is_jail",
    "members",
    "display_name",
    "e2eeKey",
    "wsUrl",
    "punishment",
    "expiresAt",
    "roomId",
    "room_id",
    "jailConnection",
    "targetUsername",
    "targetUserId",
    "userId",
    "payload",
    // LiveKit RoomService (proto JSON takes both spellings).
    "numParticipants",
    "num_participants",
    "maxParticipants",
    "permission",
    "canPublish",
    "can_publish",
    "canSubscribe",
    "state",
];

/// Strings with a meaning somewhere in the adapters, or a history of tripping parsers.
const MEANINGFUL_STRINGS: &[&str] = &[
    "",
    " ",
    "null",
    "stage",
    "open",
    "speaker",
    "listener",
    "moderator",
    "participant",
    "administrator",
    "accepted",
    "denied",
    "unknown",
    "waiting",
    "livekit",
    "MICROPHONE",
    "CAMERA",
    "AUDIO",
    "VIDEO",
    "M_LIMIT_EXCEEDED",
    "M_UNKNOWN_TOKEN",
    "M_FORBIDDEN",
    "M_BAD_JSON",
    "invalid_access",
    "not_logged_in",
    "you are banned from this room",
    "you were kicked",
    "/__status",
    "/audioroom/rooms/7",
    "participants",
    "role_change",
    "kicked",
    "unauthenticated",
    "permissions denied",
    "not_found",
    "failed_precondition",
    "remote unmute is not enabled",
    "resource_exhausted",
    "CSRF Failed: CSRF token missing.",
    "TR_mic",
    "/livekit/",
    "livekit/",
    "https://localhost:1",
    "http://",
    "ws://",
    "wss://[::1",
    "ftp://localhost:1",
    "//localhost:1",
    "{size}",
    "/user_avatar/forum/bob/{size}/1.png",
    "99999999999999999999",
    "-1",
    "1e400",
    "<!DOCTYPE html>",
    "<html>",
    "\u{0}",
    "\r\n|\r\n",
    "é",
    "🎙",
    "a.b.c",
    "Bearer x",
    "not-a-jwt",
];

/// Whole bodies no generator is likely to hit.
const RAW_BODIES: &[&str] = &[
    "",
    "null",
    "{}",
    "[]",
    "\"\"",
    "{\"id\": 1e400}",
    "{\"id\": 18446744073709551616, \"name\": \"x\"}",
    "{\"rooms\": [{\"id\": -1, \"name\": \"x\"}]}",
    "{\"room\": {\"id\": 7.5, \"name\": \"x\"}}",
    "{\"members\": {\"1\": \"not a list\"}}",
    "{\"a\": 1, \"a\": 2}",
    "\u{feff}{\"token\": \"x\"}",
    "   <html><body>Sign in</body></html>",
    "[{\"message_id\": 1, \"channel\": \"/__status\"}]\r\n|\r\n[",
    "data: {}\n\n",
];

// Secrets the adapters are configured with; none may show in an error or a result.
const USER_API_KEY: &str = "audioroom-user-api-key-0f9d8c7b6a";
const SESSION_COOKIE: &str = "meet-session-cookie-5e4d3c2b1a";
const CSRF_TOKEN: &str = "meet-csrf-token-a1b2c3d4e5f6";
const ACCESS_TOKEN: &str = "syt_matrix_access_token_9a8b7c6d";
const NOSTR_KEY: &str = "7f4c11a9742721d66e40e321ca50b682c27f7422190c14a187525e69e604836a";
const PASSWORD: &str = "distokoloshe-Password-42!";
const API_SECRET: &str = "livekit-api-secret-that-is-long-enough-7d6c";
const HEADER_VALUE: &str = "Bearer token-endpoint-secret-3e2f1a";
/// Signs the fixture tokens the canned server hands out; not an adapter's secret.
const FIXTURE_SECRET: &str = "fixture-signing-secret-for-canned-answers-only";

#[test]
fn audioroom_survives_arbitrary_responses() {
    run("audioroom", 0xa0d1_0001, audioroom_documents, exercise_audioroom);
}

#[test]
fn meet_survives_arbitrary_responses() {
    run("meet", 0xa0d1_0002, meet_documents, exercise_meet);
}

#[test]
fn lk_jwt_survives_arbitrary_responses() {
    run("lk-jwt", 0xa0d1_0003, lk_jwt_documents, exercise_lk_jwt);
}

#[test]
fn nip29_survives_arbitrary_responses() {
    run("nip29", 0xa0d1_0004, nip29_documents, exercise_nip29);
}

#[test]
fn distokoloshe_survives_arbitrary_responses() {
    run("distokoloshe", 0xa0d1_0005, distokoloshe_documents, exercise_distokoloshe);
}

#[test]
fn livekit_survives_arbitrary_responses() {
    run("livekit", 0xa0d1_0006, room_service_documents, exercise_livekit);
}

#[test]
fn token_endpoint_survives_arbitrary_responses() {
    run("token-endpoint", 0xa0d1_0007, token_endpoint_documents, exercise_token_endpoint);
}

/// Starts a canned server, then for each case sets its answer and runs `exercise` in a fresh
/// runtime (a panic unwinds out of `block_on` into proptest, which reports it as the failure).
fn run(
    name: &str,
    seed: u64,
    documents: fn(&Fixtures) -> Vec<Value>,
    exercise: impl AsyncFn(&Fixtures) -> TestCaseResult,
) {
    let server = CannedServer::start();
    let fixtures = Fixtures::new(&server);
    let strategy = canned(&fixtures, documents(&fixtures));
    let config = config(seed);
    let chosen_seed = config.rng_seed;
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&strategy, |canned| {
        server.answer_with(&canned);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| TestCaseError::fail(format!("a tokio runtime should start: {error}")))?;
        runtime.block_on(exercise(&fixtures))
    });
    if let Err(failure) = outcome {
        panic!("{name}: every call should survive any answer, but one did not (seed {chosen_seed}): {failure}");
    }
}

/// Proptest settings: no failure files in the repository, a fixed seed unless the environment
/// names one, bounded shrinking (each case makes dozens of requests).
fn config(seed: u64) -> Config {
    let defaults = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() { defaults.cases } else { CASES },
        failure_persistence: None,
        rng_seed: match defaults.rng_seed {
            RngSeed::Random => RngSeed::Fixed(seed),
            chosen => chosen,
        },
        max_shrink_iters: 256,
        max_shrink_time: 120_000,
        ..defaults
    }
}

// ---------------------------------------------------------------------------------------------
// The adapters' calls.

async fn exercise_audioroom(fixtures: &Fixtures) -> TestCaseResult {
    let verdict = Verdict { secrets: &[USER_API_KEY] };
    let settings = audioroom::Settings {
        url: fixtures.http_url.clone(),
        client_id: "parley-fuzz".into(),
        heartbeat_seconds: None,
    };
    let plane = AudioroomPlane::new(settings, audioroom::Secrets { user_api_key: Some(Secret::new(USER_API_KEY)) })
        .map_err(setup)?
        .with_poll_spacing(Duration::from_millis(10));
    verdict.call("audioroom list_rooms", plane.list_rooms()).await?;
    let joined = verdict.call("audioroom join", plane.join("lounge")).await?;
    verdict.call("audioroom join_switching", plane.join_switching("7")).await?;
    verdict.call("audioroom room_capabilities", plane.room_capabilities("town-hall")).await?;
    verdict.call("audioroom current_user", plane.current_user()).await?;
    let invite = format!("{}/audioroom/invite/abc123", fixtures.http_url);
    verdict.call("audioroom open_invite", plane.open_invite(&invite)).await?;
    verdict.call("audioroom auth_api_version", user_api_key::auth_api_version(&fixtures.http_url)).await?;
    plane.capabilities();
    let by_slug = fixtures.grant("town-hall", &fixtures.member_token);
    for grant in joined.iter().chain([&by_slug]) {
        verdict.call("audioroom heartbeat", plane.heartbeat(grant)).await?;
        verdict.call("audioroom participants", plane.participants(grant)).await?;
        verdict.call("audioroom set_hand", plane.set_hand(grant, true)).await?;
        verdict.call("audioroom report_self_state", plane.report_self_state(grant, true, false)).await?;
        for (action, participant) in [
            (ModerationAction::Mute, "42"),
            (ModerationAction::Kick, "@bob"),
            (ModerationAction::Unban, "bob"),
            (ModerationAction::InviteToSpeak, "bob"),
            (ModerationAction::MoveToAudience, "42"),
            (ModerationAction::MakeModerator, "@2024"),
        ] {
            verdict.call("audioroom moderate", plane.moderate(grant, action, participant)).await?;
        }
        verdict.watch("audioroom watch", |events| plane.watch(grant, events)).await?;
        verdict.call("audioroom leave", plane.leave(grant)).await?;
    }
    verdict.call("audioroom leave_room", plane.leave_room("7")).await?;
    Ok(())
}

async fn exercise_meet(fixtures: &Fixtures) -> TestCaseResult {
    let verdict = Verdict { secrets: &[SESSION_COOKIE, CSRF_TOKEN] };
    // Polls 10 ms apart for at most 60 ms: a lobby that never decides gives up well within the
    // call timeout.
    let settings = |name: &str| meet::Settings {
        url: fixtures.http_url.clone(),
        display_name: name.into(),
        lobby_poll_ms: 10,
        lobby_wait_ms: 60,
    };
    let owner = MeetPlane::new(
        settings("Olga"),
        meet::Secrets { session_cookie: Some(Secret::new(SESSION_COOKIE)), csrf_token: Some(Secret::new(CSRF_TOKEN)) },
    )
    .map_err(setup)?;
    let guest = MeetPlane::new(settings("Gus"), meet::Secrets::default()).map_err(setup)?;
    let joined = verdict.call("meet join (owner)", owner.join("standup")).await?;
    verdict.call("meet join (guest)", guest.join("standup")).await?;
    owner.capabilities();
    let admin = fixtures.grant("standup", &fixtures.admin_token);
    for grant in joined.iter().chain([&admin]) {
        verdict.call("meet participants", owner.participants(grant)).await?;
        verdict.call("meet set_hand", owner.set_hand(grant, true)).await?;
        verdict.call("meet rename", owner.rename(grant, "Olga O.")).await?;
        for (action, participant) in [
            (ModerationAction::Mute, "guest-1"),
            (ModerationAction::Mute, "guest-1/TR_mic"),
            (ModerationAction::HardMute, "guest-1"),
            (ModerationAction::Restore, "guest-1"),
            (ModerationAction::Kick, "guest-1"),
            (ModerationAction::MakeModerator, "member-1"),
        ] {
            verdict.call("meet moderate", owner.moderate(grant, action, participant)).await?;
        }
    }
    verdict.call("meet waiting_participants", owner.waiting_participants("standup")).await?;
    verdict.call("meet admit", owner.admit("standup", "lobby-1", true)).await?;
    let member = fixtures.grant("standup", &fixtures.member_token);
    verdict.call("meet moderate (guest)", guest.moderate(&member, ModerationAction::Mute, "guest-1")).await?;
    verdict.call("meet participants (guest)", guest.participants(&member)).await?;
    Ok(())
}

async fn exercise_lk_jwt(fixtures: &Fixtures) -> TestCaseResult {
    let verdict = Verdict { secrets: &[ACCESS_TOKEN] };
    let settings = |service_url: Option<String>| lk_jwt::Settings {
        homeserver_url: fixtures.http_url.clone(),
        user_id: "@alice:example.org".into(),
        device_id: "PARLEYFUZZ".into(),
        room_id: Some("!call:example.org".into()),
        service_url,
    };
    let secrets = || lk_jwt::Secrets { access_token: Some(Secret::new(ACCESS_TOKEN)) };
    let discovering = LkJwtPlane::new(settings(None), secrets()).map_err(setup)?;
    let configured =
        LkJwtPlane::new(settings(Some(format!("{}/livekit/jwt", fixtures.http_url))), secrets()).map_err(setup)?;
    verdict.call("lk-jwt service_url", discovering.service_url()).await?;
    verdict.call("lk-jwt join (discovered service)", discovering.join("")).await?;
    let joined = verdict.call("lk-jwt join", configured.join("!call:example.org")).await?;
    if let Some(grant) = &joined {
        verdict.call("lk-jwt refresh", configured.refresh(grant)).await?;
    }
    Ok(())
}

async fn exercise_nip29(fixtures: &Fixtures) -> TestCaseResult {
    let verdict = Verdict { secrets: &[NOSTR_KEY] };
    let settings = nip29::Settings { relay_url: fixtures.ws_url.clone(), group: Some("lounge".into()) };
    let plane = Nip29Plane::new(settings, nip29::Secrets { nostr_key: Some(Secret::new(NOSTR_KEY)) }).map_err(setup)?;
    verdict.call("nip29 probe", plane.probe()).await?;
    let joined = verdict.call("nip29 join (default group)", plane.join("")).await?;
    verdict.call("nip29 join", plane.join("a group/with a slash")).await?;
    if let Some(grant) = &joined {
        verdict.call("nip29 refresh", plane.refresh(grant)).await?;
    }
    Ok(())
}

async fn exercise_distokoloshe(fixtures: &Fixtures) -> TestCaseResult {
    let verdict = Verdict { secrets: &[PASSWORD, fixtures.app_jwt.as_str()] };
    let settings = || distokoloshe::Settings { url: fixtures.http_url.clone(), username: "alice".into() };
    let password = || Some(Secret::new(PASSWORD));
    // One signs in first; the other starts from a saved sign-in and signs in again on a 401.
    let fresh = DistokoloshePlane::new(settings(), distokoloshe::Secrets { password: password(), app_jwt: None })
        .map_err(setup)?;
    let saved = DistokoloshePlane::new(
        settings(),
        distokoloshe::Secrets { password: password(), app_jwt: Some(Secret::new(fixtures.app_jwt.clone())) },
    )
    .map_err(setup)?;
    verdict.call("distokoloshe login", fresh.login()).await?;
    verdict
        .call(
            "distokoloshe register",
            distokoloshe::register(&fixtures.http_url, "alice", "Alice", &Secret::new(PASSWORD)),
        )
        .await?;
    for plane in [&fresh, &saved] {
        verdict.call("distokoloshe list_rooms", plane.list_rooms()).await?;
        let joined = verdict.call("distokoloshe join", plane.join("Lounge")).await?;
        verdict.call("distokoloshe join (by id)", plane.join("1")).await?;
        let by_id = fixtures.grant("1", &fixtures.member_token);
        for grant in joined.iter().chain([&by_id]) {
            verdict.call("distokoloshe heartbeat", plane.heartbeat(grant)).await?;
            verdict.call("distokoloshe participants", plane.participants(grant)).await?;
            verdict.call("distokoloshe leave", plane.leave(grant)).await?;
        }
        let watched = joined.as_ref().unwrap_or(&by_id);
        verdict.watch("distokoloshe watch", |events| plane.watch(watched, events)).await?;
        verdict.no_secret("distokoloshe app_jwt", &format!("{:?}", plane.app_jwt()))?;
    }
    Ok(())
}

async fn exercise_livekit(fixtures: &Fixtures) -> TestCaseResult {
    let verdict = Verdict { secrets: &[API_SECRET] };
    let settings = livekit::Settings {
        url: fixtures.ws_url.clone(),
        api_key: "devkey".into(),
        identity: "moderator".into(),
        display_name: None,
    };
    let plane =
        LivekitPlane::new(settings, livekit::Secrets { api_secret: Some(Secret::new(API_SECRET)) }).map_err(setup)?;
    verdict.call("livekit list_rooms", plane.list_rooms()).await?;
    let grant =
        verdict.call("livekit join", plane.join("lounge")).await?.unwrap_or_else(|| fixtures.grant("lounge", ""));
    verdict.call("livekit participants", plane.participants(&grant)).await?;
    for action in ROOM_SERVICE_ACTIONS {
        verdict.call("livekit moderate", plane.moderate(&grant, action, "bob")).await?;
    }
    // The same RoomService client, authorised by a participant token instead of the keys.
    let admin = RoomAdmin::from_token(&fixtures.ws_url, &fixtures.admin_token).map_err(setup)?;
    verdict.call("RoomAdmin participants", admin.participants()).await?;
    verdict.call("RoomAdmin moderate", admin.moderate(ModerationAction::Unmute, "bob")).await?;
    Ok(())
}

async fn exercise_token_endpoint(fixtures: &Fixtures) -> TestCaseResult {
    let verdict = Verdict { secrets: &[HEADER_VALUE] };
    let get = token_endpoint::Settings {
        url_template: format!("{}/api/livekit?room={{room}}&username={{identity}}", fixtures.http_url),
        method: RequestMethod::Get,
        body_template: None,
        header_name: Some("Authorization".into()),
        token_pointer: "/token".into(),
        url_pointer: "/url".into(),
        livekit_url: None,
        identity: "alice".into(),
        display_name: None,
    };
    let post = token_endpoint::Settings {
        url_template: format!("{}/token", fixtures.http_url),
        method: RequestMethod::Post,
        body_template: Some(r#"{"room":"{room}","identity":"{identity}","name":"{name}"}"#.into()),
        token_pointer: "/data/participant_token".into(),
        url_pointer: "/data/server_url".into(),
        livekit_url: Some(fixtures.ws_url.clone()),
        ..get.clone()
    };
    let secrets = || token_endpoint::Secrets { header_value: Some(Secret::new(HEADER_VALUE)) };
    let admin = fixtures.grant("lounge", &fixtures.admin_token);
    for settings in [get, post] {
        let plane = TokenEndpointPlane::new(settings, secrets()).map_err(setup)?;
        let joined = verdict.call("token-endpoint join", plane.join("lounge one")).await?;
        plane.capabilities();
        for grant in joined.iter().chain([&admin]) {
            verdict.call("token-endpoint participants", plane.participants(grant)).await?;
            for action in ROOM_SERVICE_ACTIONS {
                verdict.call("token-endpoint moderate", plane.moderate(grant, action, "bob")).await?;
            }
        }
    }
    Ok(())
}

/// A plane that refuses valid settings is a bug in this test, not a finding.
fn setup(error: PlaneError) -> TestCaseError {
    TestCaseError::fail(format!("the fixture settings should be accepted: {error}"))
}

/// What every answer must satisfy, whatever the server sent.
struct Verdict<'a> {
    secrets: &'a [&'a str],
}

impl Verdict<'_> {
    /// Runs `call` with a deadline and checks what it returns; `Some` on success.
    async fn call<T: fmt::Debug>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, PlaneError>>,
    ) -> Result<Option<T>, TestCaseError> {
        let outcome = tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| {
            TestCaseError::fail(format!("{what} should return within {CALL_TIMEOUT:?} whatever the answer, but hung"))
        })?;
        self.outcome(what, outcome)
    }

    fn outcome<T: fmt::Debug>(&self, what: &str, outcome: Result<T, PlaneError>) -> Result<Option<T>, TestCaseError> {
        match outcome {
            Ok(value) => {
                self.no_secret(what, &format!("{value:?}"))?;
                Ok(Some(value))
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.trim().is_empty(), "{what}: an error should carry a user message: {error:?}");
                prop_assert!(!error.code().is_empty(), "{what}: an error should carry a code: {error:?}");
                self.no_secret(what, &format!("{message} {error:?}"))?;
                Ok(None)
            }
        }
    }

    /// Runs a `watch` for [`WATCH_FOR`], then drops it (a session leaving); checks every event it
    /// sent and, if it ended by itself, how.
    async fn watch<Watching>(
        &self,
        what: &str,
        start: impl FnOnce(mpsc::Sender<PlaneEvent>) -> Watching,
    ) -> TestCaseResult
    where
        Watching: Future<Output = Result<(), PlaneError>>,
    {
        let (sender, mut receiver) = mpsc::channel(64);
        let ended = tokio::time::timeout(WATCH_FOR, start(sender)).await;
        while let Ok(event) = receiver.try_recv() {
            if let PlaneEvent::Degraded { message } | PlaneEvent::Removed { reason: message } = &event {
                prop_assert!(!message.trim().is_empty(), "{what}: {event:?} should explain itself to the user");
            }
            self.no_secret(what, &format!("{event:?}"))?;
        }
        if let Ok(outcome) = ended {
            self.outcome(what, outcome)?;
        }
        Ok(())
    }

    fn no_secret(&self, what: &str, shown: &str) -> TestCaseResult {
        for secret in self.secrets {
            prop_assert!(
                !shown.contains(secret),
                "{what}: a configured secret should never be shown, but was: {shown}"
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// What the canned server answers.

/// The response of one case.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    content_type: Option<&'static str>,
    retry_after: Option<String>,
    set_cookie: Option<String>,
    body: Body,
}

#[derive(Clone)]
enum Body {
    Bytes(Vec<u8>),
    Json(String),
    /// A strict prefix of a JSON document.
    Truncated(String),
    /// Server-sent events: `(event name, data)`.
    EventStream(Vec<(String, String)>),
}

impl fmt::Debug for Body {
    /// Bodies as text (bytes escaped), so a failing case reads as the answer it was.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(bytes) => write!(f, "Bytes(b\"{}\")", bytes.escape_ascii()),
            Body::Json(text) => write!(f, "Json({text:?})"),
            Body::Truncated(text) => write!(f, "Truncated({text:?})"),
            Body::EventStream(events) => write!(f, "EventStream({events:?})"),
        }
    }
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Bytes(bytes) => bytes.clone(),
            Body::Json(text) | Body::Truncated(text) => text.as_bytes().to_vec(),
            Body::EventStream(events) => {
                let mut stream = String::from(":ok\n\n");
                for (name, data) in events {
                    stream.push_str(&format!("event: {name}\n"));
                    for line in data.split('\n') {
                        stream.push_str(&format!("data: {line}\n"));
                    }
                    stream.push_str("\n:ping\n\n");
                }
                stream.into_bytes()
            }
        }
    }
}

impl Canned {
    /// The whole HTTP/1.1 response, written as is.
    fn render(&self) -> Vec<u8> {
        let body = self.body.bytes();
        let mut head = format!("HTTP/1.1 {} Canned\r\n", self.status);
        if let Some(content_type) = self.content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if let Some(retry_after) = &self.retry_after {
            head.push_str(&format!("Retry-After: {retry_after}\r\n"));
        }
        if let Some(cookie) = &self.set_cookie {
            head.push_str(&format!("Set-Cookie: {cookie}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        let mut response = head.into_bytes();
        response.extend_from_slice(&body);
        response
    }
}

/// Values the canned answers use to get past the adapters' first checks.
struct Fixtures {
    http_url: String,
    ws_url: String,
    /// A LiveKit token with `roomAdmin` for room `lounge`.
    admin_token: String,
    /// A plain join token.
    member_token: String,
    /// A disTokoloshe app JWT (a configured secret) that expires in 2100.
    app_jwt: String,
    /// JWT-shaped strings whose claims are odd: no signature, negative or huge `exp`, metadata
    /// that is not JSON.
    odd_tokens: Vec<String>,
}

impl Fixtures {
    fn new(server: &CannedServer) -> Fixtures {
        let token = |admin: bool| {
            let request = TokenRequest {
                room: "lounge".into(),
                identity: "fuzzer".into(),
                name: Some("Fuzzer".into()),
                admin,
                ttl: Duration::from_secs(3600),
            };
            mint("fixture-key", FIXTURE_SECRET, &request).expect("minting a fixture token")
        };
        let unsigned = |claims: Value| {
            let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
            format!("{}.{}.c2lnbmF0dXJl", encode(&json!({ "alg": "HS256", "typ": "JWT" })), encode(&claims))
        };
        Fixtures {
            http_url: format!("http://{}", server.address),
            ws_url: format!("ws://{}", server.address),
            admin_token: token(true),
            member_token: token(false),
            app_jwt: unsigned(json!({ "sub": 1, "exp": 4_102_444_800u64 })),
            odd_tokens: vec![
                unsigned(json!({ "exp": 4_102_444_800u64, "metadata": "{\"role\":\"moderator\"}", "sub": "42" })),
                unsigned(json!({ "exp": -5, "metadata": "{", "video": { "room": "lounge", "roomAdmin": true } })),
                unsigned(json!({ "exp": 1e300, "video": { "roomAdmin": "yes" } })),
                unsigned(json!([1, 2, 3])),
                "eyJhbGciOiJIUzI1NiJ9.%%%.x".into(),
            ],
        }
    }

    /// A grant for `room` on the canned server, as a session would hold it.
    fn grant(&self, room: &str, token: &str) -> JoinGrant {
        JoinGrant {
            room_id: room.into(),
            room_name: room.into(),
            url: self.ws_url.clone(),
            token: token.into(),
            e2ee_key: None,
            expires_at: None,
            heartbeat_every: None,
            role: None,
            notice: None,
        }
    }

    /// Strings worth offering as JSON string values: the fixed list, field names, and this
    /// server's URLs and tokens.
    fn strings(&self) -> Vec<String> {
        let mut strings: Vec<String> =
            MEANINGFUL_STRINGS.iter().chain(FIELD_NAMES).map(|text| text.to_string()).collect();
        strings.extend([
            self.http_url.clone(),
            self.ws_url.clone(),
            format!("{}/rtc", self.ws_url),
            self.admin_token.clone(),
            self.member_token.clone(),
        ]);
        strings.extend(self.odd_tokens.iter().cloned());
        strings
    }
}

/// The whole canned response of a case; `documents` are answers shaped like the backend's.
fn canned(fixtures: &Fixtures, documents: Vec<Value>) -> BoxedStrategy<Canned> {
    let status = prop_oneof![5 => Just(200u16), 4 => select(STATUSES), 2 => 100u16..=599];
    let header_text = prop_oneof![
        "[0-9]{1,24}",
        "[ -~]{0,32}",
        prop::collection::vec(any::<char>().prop_filter("no line breaks", |c| !matches!(c, '\r' | '\n')), 0..16)
            .prop_map(String::from_iter),
    ];
    let set_cookie = prop_oneof![
        "lobbyParticipantId=[a-z0-9-]{0,16}(; Path=/)?(; Max-Age=0)?",
        "sessionid=replaced; Secure",
        "[ -~]{0,32}",
    ];
    (
        status,
        select(CONTENT_TYPES),
        prop::option::weighted(0.3, header_text),
        prop::option::weighted(0.2, set_cookie),
        body(fixtures, documents),
    )
        .prop_map(|(status, content_type, retry_after, set_cookie, body)| Canned {
            status,
            content_type,
            retry_after,
            set_cookie,
            body,
        })
        .boxed()
}

fn body(fixtures: &Fixtures, documents: Vec<Value>) -> BoxedStrategy<Body> {
    let strings = prop_oneof![
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        select(fixtures.strings()),
    ]
    .boxed();
    let json = json_value(strings);
    let shaped = shaped(documents, json.clone());
    let any_document = prop_oneof![shaped.clone(), json.clone()].boxed();
    let event_names = prop_oneof![
        select(&["user:room_join", "user:room_leave", "punishment:started", "room:deleted", "message"][..])
            .prop_map(String::from),
        "[ -~]{0,12}",
    ];
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..2048).prop_map(Body::Bytes),
        1 => select(RAW_BODIES).prop_map(|text| Body::Bytes(text.as_bytes().to_vec())),
        3 => json.prop_map(|value| Body::Json(value.to_string())),
        8 => shaped.prop_map(|value| Body::Json(value.to_string())),
        2 => (any_document.clone(), any::<Index>()).prop_map(|(document, cut)| {
            let text = document.to_string();
            let mut end = cut.index(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Body::Truncated(text[..end].to_string())
        }),
        1 => prop::collection::vec((event_names, any_document.prop_map(|value| value.to_string())), 0..4)
            .prop_map(Body::EventStream),
    ]
    .boxed()
}

/// Any JSON value; object keys are mostly field names the adapters read.
fn json_value(strings: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..100).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |number| {
            serde_json::Number::from_f64(number).map(Value::Number)
        }),
        strings.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            4 => select(FIELD_NAMES).prop_map(String::from),
            1 => "[a-z_]{0,12}",
            1 => prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8).prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
    .boxed()
}

/// One of `documents`, as it is or with some values replaced by `json` and some fields dropped.
/// The first document is a complete success answer and is drawn more often than the others.
fn shaped(documents: Vec<Value>, json: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let weighted = documents.into_iter().enumerate().map(|(position, document)| {
        let weight = if position == 0 { 4 } else { 1 };
        (weight, prop_oneof![1 => Just(document.clone()), 2 => mutate(document, &json)].boxed())
    });
    prop::strategy::Union::new_weighted(weighted.collect()).boxed()
}

fn mutate(template: Value, json: &BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    match template {
        Value::Object(fields) => fields
            .into_iter()
            .map(|(key, value)| {
                prop_oneof![
                    19 => mutate(value, json).prop_map(move |value| Some((key.clone(), value))),
                    1 => Just(None),
                ]
            })
            .collect::<Vec<_>>()
            .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
            .boxed(),
        Value::Array(items) => {
            items.into_iter().map(|item| mutate(item, json)).collect::<Vec<_>>().prop_map(Value::Array).boxed()
        }
        leaf => prop_oneof![14 => Just(leaf), 1 => json.clone()].boxed(),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers shaped like each backend's (CONTROL_PLANES.md). Every request of a case gets the same
// answer, so each list starts with a union document that satisfies every call of the adapter at
// once (the wire types ignore fields they do not know).

fn audioroom_documents(fixtures: &Fixtures) -> Vec<Value> {
    let participant = json!({
        "id": 42, "username": "bob", "name": "Bob", "avatar_template": "/user_avatar/forum/bob/{size}/1.png",
        "role": "speaker", "is_muted": false, "hand_raised": true,
    });
    let room = json!({
        "id": 7, "name": "Town Hall", "slug": "town-hall", "description": "All hands",
        "description_excerpt": "All", "room_type": "stage", "max_participants": 8,
        "active_participants": [participant], "can_manage": true,
    });
    let bob = json!({ "id": 42, "username": "bob", "name": "Bob" });
    vec![
        json!({
            "rooms": [room, { "id": 8, "name": "Lounge" }], "room": room, "livekit_token": fixtures.member_token,
            "livekit_url": fixtures.ws_url, "participants": [participant], "user": bob, "current_user": bob,
        }),
        json!({ "room": room, "livekit_token": fixtures.odd_tokens[0], "livekit_url": "https://localhost:1" }),
        json!([
            { "message_id": 5, "channel": "/__status", "data": { "/audioroom/rooms/7": 4 } },
            { "message_id": 6, "channel": "/audioroom/rooms/7", "data": { "type": "participants", "participants": [participant] } },
            { "message_id": 7, "channel": "/audioroom/rooms/7", "data": { "type": "role_change", "user_id": 42, "role": "speaker" } },
            { "message_id": 8, "channel": "/audioroom/rooms/7", "data": { "type": "kicked" } },
        ]),
        json!({ "errors": ["You are not permitted to view the requested resource."], "error_type": "invalid_access" }),
        json!({ "errors": ["Slow down"], "error_type": "rate_limit", "extras": { "wait_seconds": 3 } }),
        json!({ "error": "you are in another room", "conflicting_room_id": 3, "conflicting_room_name": "Other" }),
        json!({ "error": "You were kicked from this room" }),
    ]
}

fn meet_documents(fixtures: &Fixtures) -> Vec<Value> {
    let livekit = json!({ "url": fixtures.ws_url, "room": "standup", "token": fixtures.admin_token });
    let participant = json!({
        "identity": "guest-1", "name": "Gus",
        "tracks": [
            { "sid": "TR_cam", "type": "VIDEO", "source": "CAMERA", "muted": false },
            { "sid": "TR_mic", "type": 0, "source": 2, "muted": false },
        ],
        "attributes": { "handRaisedAt": "1700000000", "room_role": "member" },
    });
    vec![
        json!({
            "id": "0b3c", "name": "Daily standup", "slug": "standup",
            "configuration": { "can_publish_sources": ["microphone"] }, "livekit": livekit,
            "participants": [participant],
        }),
        json!({ "id": "0b3c", "name": "Daily standup", "slug": "standup", "status": "accepted", "livekit": livekit }),
        json!({ "id": "0b3c", "slug": "standup", "status": "waiting" }),
        json!({ "status": "denied" }),
        json!({ "participants": [{ "id": "lobby-1", "username": "Gus", "status": "waiting", "color": "#abcdef" }] }),
        json!({ "detail": "CSRF Failed: CSRF token missing." }),
        json!({ "detail": "Not found." }),
    ]
}

fn lk_jwt_documents(fixtures: &Fixtures) -> Vec<Value> {
    // Discovery, the OpenID token and the LiveKit token in one answer.
    let complete = |url: &str, jwt: &str| {
        json!({
            "org.matrix.msc4143.rtc_foci": [{ "type": "livekit", "livekit_service_url": fixtures.http_url }],
            "access_token": "openid-token", "token_type": "Bearer", "matrix_server_name": "example.org",
            "expires_in": 3600, "url": url, "jwt": jwt,
        })
    };
    vec![
        complete(&fixtures.ws_url, &fixtures.member_token),
        complete("https://localhost:1", &fixtures.odd_tokens[1]),
        json!({ "errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 2000 }),
        json!({ "errcode": "M_UNKNOWN_TOKEN", "error": "Unrecognised access token" }),
    ]
}

fn nip29_documents(fixtures: &Fixtures) -> Vec<Value> {
    vec![
        json!({ "server_url": fixtures.ws_url, "participant_token": fixtures.member_token }),
        json!({ "url": "https://localhost:1", "token": fixtures.odd_tokens[2] }),
        json!({ "error": "not a member" }),
    ]
}

fn distokoloshe_documents(fixtures: &Fixtures) -> Vec<Value> {
    let room = json!({ "id": 1, "name": "Lounge", "created_by": 1, "is_jail": false });
    vec![
        json!({
            "token": fixtures.member_token, "user": { "id": 1, "username": "alice" },
            "rooms": [room, { "id": "2", "name": "Jail", "is_jail": true }],
            "members": { "1": [{ "username": "alice", "display_name": "Alice" }], "2": [] },
            "e2eeKey": "passphrase", "room": { "id": 1, "name": "Lounge" }, "wsUrl": "/livekit/",
        }),
        json!({ "token": fixtures.odd_tokens[3], "wsUrl": "livekit", "room": null }),
        json!({ "error": "You are jailed", "punishment": { "expiresAt": 1_709_210_096_000u64 } }),
        json!({ "roomId": 1 }),
        json!({ "jailConnection": {}, "punishment": { "expiresAt": "2030-01-01T00:00:00Z", "targetUsername": "alice" } }),
        json!({ "id": 1 }),
    ]
}

/// LiveKit RoomService (Twirp, proto JSON) answers and errors.
fn room_service_documents(_fixtures: &Fixtures) -> Vec<Value> {
    let track = json!({ "sid": "TR_mic", "type": "AUDIO", "source": "MICROPHONE", "muted": false });
    let participant = json!({
        "sid": "PA_1", "identity": "bob", "name": "Bob", "state": "ACTIVE", "tracks": [track],
        "permission": { "canSubscribe": true, "canPublish": true, "canPublishData": true },
    });
    // ListRooms, ListParticipants, GetParticipant, MutePublishedTrack and UpdateParticipant in one.
    let mut complete = participant.clone();
    complete["rooms"] = json!([{ "sid": "RM_1", "name": "lounge", "numParticipants": 2, "maxParticipants": 10 }]);
    complete["participants"] = json!([participant]);
    complete["track"] = track;
    vec![
        complete,
        json!({ "participants": [participant, { "identity": "carol", "permission": { "canPublish": false } }] }),
        json!({ "code": "not_found", "msg": "participant does not exist" }),
        json!({ "code": "failed_precondition", "msg": "remote unmute not enabled" }),
        json!({ "code": "unauthenticated", "msg": "permissions denied" }),
    ]
}

fn token_endpoint_documents(fixtures: &Fixtures) -> Vec<Value> {
    let mut documents = room_service_documents(fixtures);
    let complete = &mut documents[0];
    complete["token"] = json!(fixtures.admin_token);
    complete["url"] = json!(fixtures.ws_url);
    complete["data"] = json!({ "participant_token": fixtures.admin_token, "server_url": "/rtc" });
    documents.extend([
        json!({ "token": fixtures.member_token, "url": "localhost:1/rtc" }),
        json!({ "data": { "participant_token": fixtures.odd_tokens[1] } }),
    ]);
    documents
}

// ---------------------------------------------------------------------------------------------
// The canned server.

/// A loopback HTTP/1.1 server that answers every request with the current canned response.
///
/// Hand-written on purpose: the contract servers in `parley-contract-servers` implement the
/// documented contracts and by design never answer out of contract, and an HTTP framework would
/// refuse or normalise part of what this one must send (any status from 100 to 599, a body on a
/// 204, header values no real server sends). This one writes the bytes it is given.
struct CannedServer {
    address: SocketAddr,
    response: Arc<Mutex<Arc<[u8]>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl CannedServer {
    fn start() -> CannedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the canned server");
        let address = listener.local_addr().expect("the canned server's address");
        let response: Arc<Mutex<Arc<[u8]>>> = Arc::new(Mutex::new(Arc::from(&b"HTTP/1.1 204 Empty\r\n\r\n"[..])));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (response, stop) = (Arc::clone(&response), Arc::clone(&stop));
            thread::Builder::new()
                .name("canned-http".into())
                .spawn(move || serve(listener, response, stop))
                .expect("the canned server's thread starts")
        };
        CannedServer { address, response, stop, acceptor: Some(acceptor) }
    }

    fn answer_with(&self, canned: &Canned) {
        *self.response.lock().unwrap_or_else(PoisonError::into_inner) = Arc::from(canned.render());
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The acceptor is blocked in `accept`; one more connection wakes it to see the flag.
        if let Err(error) = TcpStream::connect(self.address) {
            eprintln!("canned server: cannot wake the acceptor to stop it: {error}");
            return;
        }
        if let Some(acceptor) = self.acceptor.take()
            && acceptor.join().is_err()
        {
            eprintln!("canned server: the acceptor thread panicked");
        }
    }
}

/// Accepts until `stop`; each connection gets its own thread, so a client that sends slowly
/// does not hold up the next.
fn serve(listener: TcpListener, response: Arc<Mutex<Arc<[u8]>>>, stop: Arc<AtomicBool>) {
    for connection in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match connection {
            Ok(stream) => stream,
            Err(error) => {
                eprintln!("canned server: accept failed: {error}");
                continue;
            }
        };
        let response = Arc::clone(&response.lock().unwrap_or_else(PoisonError::into_inner));
        thread::spawn(move || {
            // Clients hang up early when a call times out or a watch is dropped; that is
            // reported (or not) by the test, so here it is only noted.
            if let Err(error) = answer(stream, &response) {
                eprintln!("canned server: connection ended early: {error}");
            }
        });
    }
}

/// Reads one request (head and `Content-Length` body), writes `response`, closes.
fn answer(mut stream: TcpStream, response: &[u8]) -> io::Result<()> {
    stream.set_read_timeout(Some(SERVER_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(SERVER_IO_TIMEOUT))?;
    read_request(&mut stream)?;
    stream.write_all(response)?;
    stream.flush()?;
    stream.shutdown(Shutdown::Write)?;
    // Read until the client hangs up: closing with unread bytes would reset the connection and
    // the client could lose the answer before parsing it.
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

fn read_request(stream: &mut TcpStream) -> io::Result<()> {
    const MAX_HEAD: usize = 64 * 1024;
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        if request.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too long"));
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the client closed before a full request"));
        }
        request.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]);
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut remaining = length.saturating_sub(request.len() - head_end);
    while remaining > 0 {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        remaining = remaining.saturating_sub(read);
    }
    Ok(())
}
