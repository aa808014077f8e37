//! Screen share under Wayland, end to end: alice's session has a Wayland display and no X
//! server, so she asks the desktop's ScreenCast portal (a stand-in on a private session bus,
//! `parley_contract_servers::screencast`) and shares the PipeWire stream it grants (the test
//! pattern, fed into a private PipeWire daemon with WirePlumber linking it as a desktop's
//! session manager does). Bob receives it through the real LiveKit server and checks it as the
//! X11 share test does. A dialog the user cancels and a share the desktop ends each say so
//! while alice's tone keeps reaching bob.

use std::time::Duration;

use parley_capture::pattern;
use parley_contract_servers::screencast::{Grant, ScreenCastPortal};
use parley_devserver::keyring::TestKeyring;
use parley_devserver::pipewire::PipeWire;
use parley_e2e::ScreenCastFeed;

use crate::share::{Saved, assert_bars, assert_tone_after, bars_of, saved_frames};
use crate::support::{audio_lock, join, join_with_env, scratch, server};

const TIMEOUT: Duration = Duration::from_secs(40);

/// Alice's environment as a Wayland session gives it: a Wayland display, no X display, and the
/// session bus the desktop's portal is on.
fn wayland_session(bus: &str) -> Vec<(String, String)> {
    vec![
        ("WAYLAND_DISPLAY".into(), "wayland-parley-test".into()),
        ("DISPLAY".into(), String::new()),
        ("DBUS_SESSION_BUS_ADDRESS".into(), bus.into()),
    ]
}

#[test]
fn on_wayland_the_desktop_is_asked_and_its_pipewire_stream_is_shared_refused_or_ended_clearly() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    // The desktop: a private PipeWire (daemon and session manager) carries the screen-cast
    // stream, fed the test pattern at 30 fps; the stand-in ScreenCast portal on a private
    // session bus grants that node.
    let pipewire = PipeWire::start().unwrap_or_else(|error| panic!("a private PipeWire: {error}"));
    let feed = ScreenCastFeed::start(&pipewire.env());
    let bus = TestKeyring::start().unwrap_or_else(|error| panic!("a private session bus: {error}"));
    let grant = Grant { node: feed.node, width: 1280, height: 720, pipewire_socket: pipewire.socket() };
    let portal = ScreenCastPortal::start(bus.bus_address(), grant)
        .unwrap_or_else(|error| panic!("the ScreenCast portal stand-in: {error}"));
    let session = wayland_session(bus.bus_address());
    let share = ["--tone", "440", "--share-screen", "screen", "--share-quality", "720p30"];

    // The user cancels the desktop's dialog: a clear refusal, and the call goes on.
    portal.refuse_next();
    let bob = join(&server, "wayland-no", "bob", dir.path(), &["--record"], 7.0);
    let alice = join_with_env(&server, "wayland-no", "alice", dir.path(), &share, 6.0, &session);
    let failed =
        alice.wait_for_event("the refused share should fail", TIMEOUT, |event| event["event"] == "share_failed");
    let failed_ms = failed["unix_ms"].as_f64().expect("unix_ms");
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();
    assert_eq!(failed["code"], "refused", "{failed}");
    assert!(failed["reason"].as_str().is_some_and(|reason| reason.contains("not allowed")), "{failed}");
    assert!(alice.events_named("share_started").is_empty(), "a refused share never starts: {:?}", alice.events);
    assert_eq!(portal.open_sessions(), 0, "alice closes the portal session the desktop refused");
    assert_tone_after(&bob, failed_ms, 1.5, "after the desktop refused her share");

    // The user confirms: bob receives the desktop's stream as alice's share.
    let frames = dir.path().join("wayland-frames");
    let frames_arg = frames.to_str().expect("a UTF-8 path").to_string();
    let watch = ["--record", "--watch", "alice", "--save-frames", &frames_arg, "--save-every", "15"];
    let bob = join(&server, "wayland", "bob", dir.path(), &watch, 120.0);
    let alice = join_with_env(&server, "wayland", "alice", dir.path(), &share, 120.0, &session);
    let started = alice.wait_for_event("alice should share", TIMEOUT, |event| event["event"] == "share_started");
    assert_eq!((started["width"].as_u64(), started["height"].as_u64()), (Some(1280), Some(720)), "{started}");
    bob.wait_for_event("bob should receive alice's share at 720p", TIMEOUT, |event| {
        event["event"] == "watch_stats" && event["width"].as_u64().is_some_and(|width| width >= 1280)
    });
    std::thread::sleep(Duration::from_secs(8));
    let asked = portal.sessions();
    assert_eq!(asked.len(), 2, "one portal session per share: {asked:?}");
    assert_eq!(
        (asked[1].types, asked[1].cursor_mode, asked[1].started, asked[1].remotes_opened),
        (Some(1), Some(2), true, 1),
        "alice asks for a monitor with its cursor drawn in, and opens one PipeWire remote: {asked:?}"
    );

    // The desktop ends the share (its "stop sharing" indicator): alice says so, the call goes on.
    assert_eq!(portal.end_sessions().expect("end the portal session"), 1);
    let failed = alice.wait_for_event("the share should end with the desktop's session", TIMEOUT, |event| {
        event["event"] == "share_failed"
    });
    assert_eq!(failed["code"], "target_gone", "{failed}");
    let failed_ms = failed["unix_ms"].as_f64().expect("unix_ms");
    bob.wait_for_event("bob's viewer should close", TIMEOUT, |event| {
        event["event"] == "watch_ended" && event["identity"] == "alice"
    });
    std::thread::sleep(Duration::from_secs(3));
    alice.terminate();
    bob.terminate();
    let alice = alice.finish(TIMEOUT);
    let bob = bob.finish(TIMEOUT);
    alice.assert_clean();
    bob.assert_clean();
    assert_tone_after(&bob, failed_ms, 2.0, "after the desktop ended her share");

    let stats: Vec<&serde_json::Value> = bob
        .events_named("watch_stats")
        .into_iter()
        .filter(|event| event["unix_ms"].as_f64().is_some_and(|ms| ms < failed_ms))
        .collect();
    let fps: Vec<f64> = stats.iter().rev().take(6).filter_map(|event| event["fps"].as_f64()).collect();
    eprintln!("bob's rate over the last seconds of the Wayland share: {fps:?}");
    assert!(fps.len() >= 5 && fps.iter().all(|&fps| fps >= 25.0), "bob should receive ≥ 25 fps: {fps:?}");
    let saved: Vec<Saved> = saved_frames(&frames).into_iter().filter(|frame| frame.received_ms < failed_ms).collect();
    assert!(saved.len() >= 8, "bob should save a picture every 15 received, got {}", saved.len());
    let steady = &saved[2..];
    let mut counters = Vec::new();
    let mut markers = Vec::new();
    for frame in steady {
        assert_eq!((frame.width, frame.height), (1280, 720), "frame {}", frame.index);
        assert_bars(&format!("Wayland frame {}", frame.index), &bars_of(frame));
        counters.push(pattern::read_counter(&frame.rgba, frame.width));
        markers.push(pattern::find_marker(&frame.rgba, frame.width));
    }
    eprintln!("Wayland share: counters {counters:?}, markers {markers:?}");
    assert!(counters.windows(2).all(|pair| pair[1] > pair[0]), "the counter should advance: {counters:?}");
    let found: Vec<u32> = markers.iter().flatten().copied().collect();
    assert!(found.len() >= steady.len() - 1, "the marker should be visible: {markers:?}");
    assert!(found.windows(2).all(|pair| pair[0] != pair[1]), "the marker should move: {markers:?}");
}
