//! The engine API against a real LiveKit server: events, data, attributes, mute, permission
//! changes by a moderator, APM, and that every handle is released exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_api::services::room::{RoomClient, UpdateParticipantOptions};
use parley_audio::SAMPLE_RATE;
use parley_audio::analysis::{dominant_frequency, rms_dbfs};
use parley_audio::signal::Tone;
use parley_devserver::DevServer;
use parley_livekit_ffi::{
    Apm, ApmConfig, AudioSource, AudioStream, DisconnectReason, LocalAudioTrack, PublishOptions, Room, RoomEvent,
    RoomOptions, StreamFrame, TrackSource,
};
use tokio::sync::mpsc::UnboundedReceiver;

mod support;

use support::{engine, expect_event, server};

fn token(server: &DevServer, room: &str, identity: &str) -> String {
    AccessToken::with_api_key(server.api_key(), server.api_secret())
        .with_identity(identity)
        .with_grants(VideoGrants {
            room_join: true,
            room: room.into(),
            can_update_own_metadata: Some(true),
            ..Default::default()
        })
        .to_jwt()
        .expect("mint token")
}

async fn join(
    server: &DevServer,
    room: &str,
    identity: &str,
    options: &RoomOptions,
) -> (Room, UnboundedReceiver<RoomEvent>) {
    Room::connect(engine(), &server.url(), &token(server, room, identity), options)
        .await
        .unwrap_or_else(|error| panic!("{identity} joining {room}: {error}"))
}

/// Sends a tone in real time until the returned task is aborted.
fn speak(source: Arc<AudioSource>, frequency: f64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tone = Tone::new(frequency, -12.0);
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let mut frame = vec![0i16; 480];
        loop {
            ticker.tick().await;
            tone.fill(&mut frame);
            frame = source.capture_frame(frame).await.expect("capture");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_attributes_mute_and_leave_reach_the_other_participant() {
    let server = server();
    let options = RoomOptions::default();
    let (alice, _alice_events) = join(&server, "events", "alice", &options).await;
    let (bob, mut bob_events) = join(&server, "events", "bob", &options).await;
    assert_eq!(bob.remote_participants().len(), 1, "bob sees alice already in the room");

    let source = Arc::new(AudioSource::new(engine(), SAMPLE_RATE, 1).expect("source"));
    let track = LocalAudioTrack::new("microphone", &source).expect("track");
    let publication =
        alice.local_participant().publish_audio_track(&track, &PublishOptions::default()).await.expect("publish");
    let voice = speak(Arc::clone(&source), 440.0);
    let subscribed = expect_event(&mut bob_events, "alice's track subscribed", |event| match event {
        RoomEvent::AudioTrackSubscribed { identity, track } if identity == "alice" => Some(track),
        _ => None,
    })
    .await;
    assert_eq!(subscribed.sid, publication.sid, "bob subscribed to the track alice published");

    // bob's stream hands alice's tone to its sink, in 10 ms frames.
    let (frames, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let stream = AudioStream::new(&subscribed, SAMPLE_RATE, 1, move |frame: StreamFrame<'_>| {
        let _ = frames.send(match frame {
            StreamFrame::Audio { samples, info } => Some((samples.to_vec(), info)),
            StreamFrame::Ended => None,
        });
    })
    .expect("audio stream");
    let mut tone = Vec::new();
    while tone.len() < SAMPLE_RATE as usize {
        let frame = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
        let Ok(Some(Some((samples, info)))) = frame else { panic!("bob's stream stopped before a second of audio") };
        assert_eq!(
            (info.sample_rate, info.channels, info.samples_per_channel as usize),
            (SAMPLE_RATE, 1, samples.len()),
            "10 ms mono frames at the rate asked for"
        );
        assert_eq!(samples.len(), SAMPLE_RATE as usize / 100);
        tone.extend(samples);
    }
    let last_half = &tone[tone.len() / 2..];
    let frequency = dominant_frequency(last_half, SAMPLE_RATE);
    assert!((frequency - 440.0).abs() < 10.0, "bob hears alice's 440 Hz tone, not {frequency} Hz");
    assert!(rms_dbfs(last_half) > -30.0, "at a level one hears: {} dBFS", rms_dbfs(last_half));
    // Dropping the stream lets its sink go: nothing more is handed to it.
    drop(stream);
    let released = tokio::time::timeout(Duration::from_secs(5), async { while heard.recv().await.is_some() {} }).await;
    assert!(released.is_ok(), "the sink is released when its stream is dropped");

    track.set_muted(true).expect("mute");
    let sid = expect_event(&mut bob_events, "TrackMuted", |event| match event {
        RoomEvent::TrackMuted { identity, sid } if identity == "alice" => Some(sid),
        _ => None,
    })
    .await;
    assert_eq!(sid, publication.sid);
    track.set_muted(false).expect("unmute");
    expect_event(&mut bob_events, "TrackUnmuted", |event| {
        matches!(event, RoomEvent::TrackUnmuted { ref identity, .. } if identity == "alice").then_some(())
    })
    .await;

    let attributes = HashMap::from([("ptt".to_string(), "on".to_string())]);
    alice.local_participant().set_attributes(&attributes).await.expect("set attributes");
    let changed = expect_event(&mut bob_events, "attributes changed", |event| match event {
        RoomEvent::ParticipantAttributesChanged { identity, changed } if identity == "alice" => Some(changed),
        _ => None,
    })
    .await;
    assert_eq!(changed.get("ptt").map(String::as_str), Some("on"), "bob sees alice's ptt attribute");

    alice.local_participant().publish_data(b"hello bob".to_vec(), true, Some("chat"), &[]).await.expect("publish data");
    let (data, topic, reliable) = expect_event(&mut bob_events, "data", |event| match event {
        RoomEvent::DataReceived { identity, topic, data, reliable } if identity == "alice" => {
            Some((data, topic, reliable))
        }
        _ => None,
    })
    .await;
    assert_eq!(data, b"hello bob");
    assert_eq!(topic.as_deref(), Some("chat"));
    assert!(reliable, "sent reliably");

    voice.abort();
    alice.local_participant().unpublish_track(&publication.sid).await.expect("unpublish");
    let unpublished = expect_event(&mut bob_events, "TrackUnpublished", |event| match event {
        RoomEvent::TrackUnpublished { identity, sid } if identity == "alice" => Some(sid),
        _ => None,
    })
    .await;
    assert_eq!(unpublished, publication.sid);

    alice.disconnect().await.expect("alice leaves");
    let reason = expect_event(&mut bob_events, "alice leaving", |event| match event {
        RoomEvent::ParticipantDisconnected { identity, reason } if identity == "alice" => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::ClientInitiated);
    bob.disconnect().await.expect("bob leaves");
    drop((track, source, publication, subscribed));
    assert_eq!(engine().handle_stats().unknown, 0, "no handle may be released twice or invented");
    assert!(engine().handle_stats().released > 5, "handles were released: {:?}", engine().handle_stats());
}

/// RoomService `UpdateParticipant` with a whole permission: subscribe and data, publish as given.
async fn set_can_publish(server: &DevServer, room: &str, identity: &str, can_publish: bool) {
    let rooms = RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let permission = livekit_protocol::ParticipantPermission {
        can_subscribe: true,
        can_publish,
        can_publish_data: true,
        ..Default::default()
    };
    let options = UpdateParticipantOptions { permission: Some(permission), ..Default::default() };
    rooms.update_participant(room, identity, options).await.expect("UpdateParticipant");
}

/// Waits for our own permission change and returns whether it allows publishing the microphone.
async fn own_permission(events: &mut UnboundedReceiver<RoomEvent>, identity: &str, what: &str) -> bool {
    expect_event(events, what, |event| match event {
        RoomEvent::ParticipantPermissionChanged { identity: changed, permission: Some(permission) }
            if changed == identity =>
        {
            Some(permission.allows_publishing(TrackSource::Microphone))
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_permission_unpublishes_and_a_new_grant_lets_the_same_track_publish_again() {
    let server = server();
    let options = RoomOptions::default();
    let (alice, mut alice_events) = join(&server, "stage", "alice", &options).await;
    let (bob, mut bob_events) = join(&server, "stage", "bob", &options).await;
    let granted = alice.local_permission().expect("the join answer carries alice's permission");
    assert!(granted.allows_publishing(TrackSource::Microphone), "alice's token lets her publish: {granted:?}");

    let source = Arc::new(AudioSource::new(engine(), SAMPLE_RATE, 1).expect("source"));
    let track = LocalAudioTrack::new("microphone", &source).expect("track");
    let publisher = alice.local_participant().clone();
    let first = publisher.publish_audio_track(&track, &PublishOptions::default()).await.expect("publish");
    let voice = speak(Arc::clone(&source), 440.0);
    expect_event(&mut bob_events, "alice's first track", |event| {
        matches!(event, RoomEvent::AudioTrackSubscribed { ref identity, .. } if identity == "alice").then_some(())
    })
    .await;

    set_can_publish(&server, "stage", "alice", false).await;
    assert!(!own_permission(&mut alice_events, "alice", "alice's permission revoked").await, "no publishing now");
    assert!(
        alice.local_permission().is_some_and(|permission| !permission.can_publish),
        "the room's record follows: {:?}",
        alice.local_permission()
    );
    let gone = expect_event(&mut bob_events, "alice's track unpublished by the server", |event| match event {
        RoomEvent::TrackUnpublished { identity, sid } if identity == "alice" => Some(sid),
        _ => None,
    })
    .await;
    assert_eq!(gone, first.sid, "the server withdrew the published track");
    // The engine does not report the server's unpublication as its own; the participant must
    // unpublish too (keeping the track), or the engine holds two publications of one track and
    // aborts the process when it later releases them.
    publisher.unpublish_track_keeping(&first.sid).await.expect("unpublishing the withdrawn track");
    let local = expect_event(&mut alice_events, "alice's own unpublication", |event| match event {
        RoomEvent::LocalTrackUnpublished { sid } => Some(sid),
        _ => None,
    })
    .await;
    assert_eq!(local, first.sid, "the engine reports the track unpublished");

    set_can_publish(&server, "stage", "alice", true).await;
    assert!(own_permission(&mut alice_events, "alice", "alice's permission granted").await, "publishing again");
    let second = publisher.publish_audio_track(&track, &PublishOptions::default()).await.expect("publish again");
    assert_ne!(second.sid, first.sid, "a new publication");
    let resubscribed = expect_event(&mut bob_events, "alice's track again", |event| match event {
        RoomEvent::AudioTrackSubscribed { identity, track } if identity == "alice" => Some(track.sid),
        _ => None,
    })
    .await;
    assert_eq!(resubscribed, second.sid, "bob receives the republished track");

    voice.abort();
    alice.disconnect().await.expect("alice leaves");
    bob.disconnect().await.expect("bob leaves");
    drop((track, source, first, second, publisher));
}

/// Deterministic broadband noise (a speech-like echo reference).
fn noise(samples: usize, seed: &mut u32) -> Vec<i16> {
    (0..samples)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((*seed >> 16) as i16) / 8
        })
        .collect()
}

/// Plays far-end noise, feeds its delayed, attenuated copy as the microphone, and returns the
/// level (dBFS) of the microphone before and after processing over the last 2 s.
fn echo_through_apm(config: ApmConfig) -> (f32, f32) {
    let mut apm = Apm::new(engine(), config).expect("apm");
    apm.set_stream_delay_ms(20).expect("delay");
    let mut seed = 7;
    let far = noise(SAMPLE_RATE as usize * 6, &mut seed);
    let delay = 960; // 20 ms
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (index, chunk) in far.chunks(480).enumerate() {
        let mut reverse = chunk.to_vec();
        apm.process_reverse_stream(&mut reverse, SAMPLE_RATE, 1).expect("reverse");
        let start = index * 480;
        let mut near: Vec<i16> =
            (start..start + 480).map(|at| if at >= delay { far[at - delay] / 2 } else { 0 }).collect();
        if start >= SAMPLE_RATE as usize * 4 {
            before.extend_from_slice(&near);
        }
        apm.process_stream(&mut near, SAMPLE_RATE, 1).expect("process");
        if start >= SAMPLE_RATE as usize * 4 {
            after.extend_from_slice(&near);
        }
    }
    (rms_dbfs(&before), rms_dbfs(&after))
}

#[test]
fn apm_cancels_echo_only_when_echo_cancellation_is_on() {
    let on = ApmConfig {
        echo_cancellation: true,
        noise_suppression: false,
        auto_gain_control: false,
        high_pass_filter: false,
    };
    let (before, after) = echo_through_apm(on);
    assert!(before - after >= 15.0, "echo cancellation should remove ≥ 15 dB of echo: {before:.1} → {after:.1} dBFS");
    let off = ApmConfig { echo_cancellation: false, ..on };
    let (before, after) = echo_through_apm(off);
    assert!((before - after).abs() < 3.0, "without echo cancellation the echo stays: {before:.1} → {after:.1} dBFS");
}

#[test]
fn frames_that_are_not_10_ms_are_refused() {
    let mut apm = Apm::new(engine(), ApmConfig::default()).expect("apm");
    let mut short = vec![0i16; 100];
    let error = apm.process_stream(&mut short, SAMPLE_RATE, 1).expect_err("a 100-sample frame is not 10 ms");
    assert!(error.to_string().contains("10 ms"), "{error}");
}
