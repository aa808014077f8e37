//! Unit tests of what the site computes as Python does: colours, `json.dumps`, `slugify`,
//! `isoformat()`, and the tokens it mints and verifies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::python::{python_isoformat_now, python_json, slugify};
use super::state::{Shared, Site};
use super::tokens::{DEFAULT_SOURCES, generate_color, mint, verify_token};
use crate::LivekitKeys;

#[test]
fn colors_match_cpython() {
    // Computed with CPython 3: `utils.generate_color(identity)`.
    for (identity, color) in [
        ("owner-sub", "hsl(143, 66%, 35%)"),
        ("3f2b6c1e-1111-4222-8333-444455556666", "hsl(160, 68%, 58%)"),
        ("", "hsl(55, 70%, 42%)"),
        ("guest-1", "hsl(285, 55%, 27%)"),
    ] {
        assert_eq!(generate_color(identity), color, "color of {identity:?}");
    }
}

#[test]
fn python_helpers_match_python() {
    assert_eq!(python_json(&Value::Null), "null");
    assert_eq!(python_json(&json!({ "a": 1, "b": [1, "é"] })), r#"{"a": 1, "b": [1, "\u00e9"]}"#);
    assert_eq!(slugify("  Daily Stand-up!  "), "daily-stand-up");
    assert_eq!(slugify("a_b -- c"), "a_b-c");
    let now = python_isoformat_now();
    assert!(now.ends_with("+00:00") && now.as_bytes()[10] == b'T', "{now}");
}

fn keys() -> LivekitKeys {
    LivekitKeys { url: "ws://x".into(), api_key: "key".into(), api_secret: "secret-secret-secret-secret".into() }
}

#[test]
fn tokens_carry_a_null_role_and_verify_like_pyjwt() {
    let shared = Shared {
        keys: keys(),
        site: Arc::new(Mutex::new(Site {
            livekit_url: String::new(),
            session_cookie: "sessionid".into(),
            allow_unregistered_rooms: true,
            telephony: false,
            users: Vec::new(),
            sessions: HashMap::new(),
            rooms: Vec::new(),
            lobby: HashMap::new(),
            roster: HashMap::new(),
            notifications: 0,
            expired_waiters: 0,
            requests: Vec::new(),
            fail_next: HashMap::new(),
        })),
    };
    let token = mint(&shared, "room", None, Some(""), None, Some(vec![]), None, Some("lobby-id"));
    let claims = verify_token(&shared.keys, &token).expect("own token verifies");
    assert_eq!(claims["attributes"]["room_role"], Value::Null, "no role is a JSON null");
    assert_eq!(claims["name"], "Anonymous");
    assert_eq!(claims["sub"], "lobby-id");
    assert_eq!(claims["video"]["canPublish"], false);
    assert_eq!(claims["video"]["roomAdmin"], false);
    let owner = mint(&shared, "room", None, None, None, Some(vec![]), Some("owner"), Some("x"));
    let owner = verify_token(&shared.keys, &owner).unwrap();
    assert_eq!(owner["video"]["canPublishSources"], json!(DEFAULT_SOURCES), "owners get every source");
    let other = LivekitKeys { api_secret: "another-secret-another-secret".into(), ..keys() };
    assert_eq!(verify_token(&other, &token).unwrap_err(), "Signature verification failed");
    let foreign = LivekitKeys { api_key: "other".into(), ..keys() };
    assert_eq!(verify_token(&foreign, &token).unwrap_err(), "Invalid issuer");
    assert_eq!(verify_token(&shared.keys, "abc").unwrap_err(), "Not enough segments");
}
