//! Interop with the client most people use instead of Parley: a browser running LiveKit's JS SDK
//! (`livekit-client` in Debian's Chromium, installed by setup). Parley and the browser hear each
//! other in the clear and with end-to-end encryption (the same passphrase on both sides); a
//! browser without the passphrase hears nothing of Parley's voice.

use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::tone_level_dbfs;
use parley_core::token::{TokenRequest, mint};
use parley_devserver::DevServer;
use parley_devserver::browser_peer::{BrowserFinished, BrowserPeer, BrowserPeerOptions};
use parley_devserver::display::Xvfb;
use parley_devserver::pulse::{NullSink, PulseServer};

use crate::support::{Finished, audio_lock, join, scratch, server};

const BROWSER_HZ: f64 = 500.0;
const PARLEY_HZ: f64 = 700.0;
const PASSPHRASE: &str = "correct horse battery staple";

/// One room: the browser sends 500 Hz and listens for 700 Hz; Parley (`crab`) sends 700 Hz and
/// records what it hears.
fn call(
    server: &DevServer,
    env: &[(String, String)],
    room: &str,
    browser_key: Option<&str>,
    parley_key: Option<&str>,
) -> (BrowserFinished, Finished) {
    let dir = scratch();
    let request = TokenRequest {
        room: room.into(),
        identity: "browser".into(),
        name: None,
        admin: false,
        ttl: Duration::from_secs(600),
    };
    let token = mint(server.api_key(), server.api_secret(), &request).expect("mint");
    let options = BrowserPeerOptions {
        url: server.url(),
        token,
        tone: Some(BROWSER_HZ),
        listen: Some(PARLEY_HZ),
        e2ee_key: browser_key.map(str::to_string),
        seconds: 10.0,
        ..BrowserPeerOptions::default()
    };
    let mut browser = BrowserPeer::start(&options, env).unwrap_or_else(|error| panic!("{error}"));
    let published = browser.wait_for("published", Duration::from_secs(30));
    if published.is_none() {
        let finished = browser.finish(Duration::from_secs(5));
        panic!("the browser peer never published: {:?}\n{}", finished.events, finished.stderr);
    }
    let mut extra = vec!["--tone", "700", "--record"];
    if let Some(key) = parley_key {
        extra.extend(["--e2ee-key", key]);
    }
    let crab = join(server, room, "crab", dir.path(), &extra, 6.0).finish(Duration::from_secs(40));
    let browser = browser.finish(Duration::from_secs(30));
    assert!(browser.status.success(), "the browser peer failed: {:?}\n{}", browser.events, browser.stderr);
    crab.assert_clean();
    (browser, crab)
}

/// The loudest level of Parley's tone in any of the browser's `heard` reports about crab.
fn browser_heard_parley(browser: &BrowserFinished) -> f64 {
    browser
        .events
        .iter()
        .filter(|event| event["event"] == "heard" && event["identity"] == "crab")
        .filter_map(|event| event["tone_dbfs"].as_f64())
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Whether Parley reported the browser's encryption in `state`.
fn reported_encryption(crab: &Finished, state: &str) -> bool {
    crab.events.iter().any(|event| {
        event["event"] == "participant_encryption" && event["identity"] == "browser" && event["state"] == state
    })
}

/// The browser's tone in the last two seconds of what Parley recorded.
fn parley_heard_browser(crab: &Finished) -> f64 {
    let recorded = crab.recording.as_deref().expect("recording");
    tone_level_dbfs(&recorded[recorded.len() - 2 * SAMPLE_RATE as usize..], SAMPLE_RATE, BROWSER_HZ as f32) as f64
}

#[test]
fn parley_and_a_browser_running_livekit_client_hear_each_other_in_the_clear_and_end_to_end_encrypted() {
    let _serial = audio_lock();
    let server = server();
    // Headless Chromium opens no audio devices: it runs headful on a private display, its sound
    // in a private PulseAudio.
    let display = Xvfb::start().unwrap_or_else(|error| panic!("a virtual display: {error}"));
    let pulse = PulseServer::start(&[NullSink::new("browser_ear", 1)])
        .unwrap_or_else(|error| panic!("PulseAudio (run `cargo xtask setup`): {error}"));
    let mut env = display.env();
    env.extend(pulse.env());

    let (browser, crab) = call(&server, &env, "browser-clear", None, None);
    let heard = browser_heard_parley(&browser);
    assert!((heard + 12.0).abs() <= 6.0, "the browser hears parley's 700 Hz at −12 ± 6 dBFS, got {heard:.1}");
    let heard = parley_heard_browser(&crab);
    assert!((heard + 12.0).abs() <= 6.0, "parley hears the browser's 500 Hz at −12 ± 6 dBFS, got {heard:.1}");

    let (browser, crab) = call(&server, &env, "browser-e2ee", Some(PASSPHRASE), Some(PASSPHRASE));
    let published = browser.events.iter().find(|event| event["event"] == "published").expect("published");
    assert_eq!(published["e2ee"], true, "the browser encrypts its voice");
    let heard = browser_heard_parley(&browser);
    assert!(
        (heard + 12.0).abs() <= 6.0,
        "with the same passphrase the browser hears parley at −12 ± 6 dBFS, got {heard:.1}"
    );
    let heard = parley_heard_browser(&crab);
    assert!((heard + 12.0).abs() <= 6.0, "and parley hears the browser at −12 ± 6 dBFS, got {heard:.1}");
    assert!(reported_encryption(&crab, "ok"), "parley reports the browser's encryption as ok: {:?}", crab.events);

    let (browser, crab) = call(&server, &env, "browser-keyless", None, Some(PASSPHRASE));
    let subscribed = browser.events.iter().any(|event| event["event"] == "subscribed" && event["identity"] == "crab");
    assert!(subscribed, "the keyless browser is sent parley's (encrypted) voice: {:?}", browser.events);
    // Parley's encrypted frames reach the keyless browser's decoder and come out as loud noise
    // (−7 dBFS RMS was seen), so the tone is judged against what else is heard: a clean tone
    // stands 3 dB above the RMS (−12 dBFS peak, −15 RMS); in that noise it stayed 10.8 dB or
    // more under. Which frequency dominates the noise is chance (695 Hz was seen), so only how
    // far the tone stands out counts. Silent reports (before the call, after crab left) say
    // nothing either way.
    let reports: Vec<_> = browser.events.iter().filter(|event| event["event"] == "heard").collect();
    let prominence = reports
        .iter()
        .filter_map(|event| Some((event["tone_dbfs"].as_f64()?, event["rms_dbfs"].as_f64()?)))
        .filter(|(_, rms)| *rms > -60.0)
        .map(|(tone, rms)| tone - rms)
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        prominence < -5.0,
        "without the passphrase the browser hears no tone from parley: it stood {prominence:+.1} dB against the RMS: {reports:?}"
    );
    let heard = parley_heard_browser(&crab);
    assert!(heard < -40.0, "and parley plays nothing the keyless browser sends in the clear, got {heard:.1} dBFS");
    assert!(
        reported_encryption(&crab, "not_encrypted"),
        "parley flags the keyless browser as not encrypted: {:?}",
        crab.events
    );
}
