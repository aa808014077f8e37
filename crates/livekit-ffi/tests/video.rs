//! Screen share against a real LiveKit server: alice publishes a synthetic 1280 × 720 picture
//! (colour bars over a moving marker) at 30 fps; bob receives it through a `VideoStream` and
//! checks what arrives. Also: the server refuses a screen share the token does not allow, a
//! slow viewer drops frames instead of queueing them, and subscription and unpublication end
//! the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, VideoGrants};
use parley_devserver::DevServer;
use parley_livekit_ffi::{
    Error, LocalVideoTrack, PixelFormat, ReceivedVideoFrame, RemoteVideoTrack, Room, RoomEvent, RoomOptions, TrackKind,
    TrackSource, VideoContent, VideoEncoding, VideoFrame, VideoPublishOptions, VideoQuality, VideoSource, VideoStream,
};
use tokio::sync::mpsc::UnboundedReceiver;

mod support;

use support::{WAIT, engine, expect_event, server};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
/// The bars fill the top two thirds; the marker moves across the bottom third.
const BARS_HEIGHT: usize = 480;
const BARS: [[u8; 3]; 8] =
    [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]];
const BACKGROUND: u8 = 96;
const MARKER: usize = 64;
const MARKER_TOP: usize = 560;
const MARKER_STEP: usize = 24;

fn token(server: &DevServer, room: &str, identity: &str, sources: &[&str]) -> String {
    AccessToken::with_api_key(server.api_key(), server.api_secret())
        .with_identity(identity)
        .with_grants(VideoGrants {
            room_join: true,
            room: room.into(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_sources: sources.iter().map(|source| source.to_string()).collect(),
            ..Default::default()
        })
        .to_jwt()
        .expect("mint token")
}

async fn join(
    server: &DevServer,
    room: &str,
    identity: &str,
    sources: &[&str],
) -> (Room, UnboundedReceiver<RoomEvent>) {
    Room::connect(engine(), &server.url(), &token(server, room, identity, sources), &RoomOptions::default())
        .await
        .unwrap_or_else(|error| panic!("{identity} joining {room}: {error}"))
}

/// The still part of the picture, BGRA (what X11 capture gives).
fn background() -> Vec<u8> {
    let mut pixels = Vec::with_capacity(PixelFormat::Bgra.frame_len(WIDTH, HEIGHT));
    let bar_width = WIDTH as usize / BARS.len();
    for y in 0..HEIGHT as usize {
        for x in 0..WIDTH as usize {
            let [r, g, b] = if y < BARS_HEIGHT { BARS[x / bar_width] } else { [BACKGROUND; 3] };
            pixels.extend_from_slice(&[b, g, r, 255]);
        }
    }
    pixels
}

/// Where the marker's left edge is in frame `index`.
fn marker_x(index: usize) -> usize {
    32 + (index * MARKER_STEP) % (WIDTH as usize - 2 * MARKER)
}

/// Captures the pattern at 30 fps on a thread of its own until `stop` is set; returns how many
/// frames it sent and how long the captures took in all.
fn share_screen(source: Arc<VideoSource>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, Duration)> {
    std::thread::spawn(move || {
        let still = background();
        let mut frame = VideoFrame::new(PixelFormat::Bgra, WIDTH, HEIGHT).expect("frame");
        let stride = frame.stride();
        let start = Instant::now();
        let (mut index, mut capturing) = (0, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            frame.data_mut().copy_from_slice(&still);
            let left = marker_x(index);
            for row in MARKER_TOP..MARKER_TOP + MARKER {
                frame.data_mut()[row * stride + left * 4..row * stride + (left + MARKER) * 4].fill(255);
            }
            let before = Instant::now();
            source.capture(&frame, start.elapsed().as_micros() as i64).expect("capture");
            capturing += before.elapsed();
            index += 1;
            let next = start + Duration::from_micros(index as u64 * 33_333);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        (index, capturing)
    })
}

/// The mean RGB of a 9 × 9 block centred on (`x`, `y`).
fn sample(frame: &ReceivedVideoFrame, x: usize, y: usize) -> [f64; 3] {
    let mut sum = [0.0; 3];
    for row in y - 4..=y + 4 {
        for column in x - 4..=x + 4 {
            let at = (row * frame.width as usize + column) * 4;
            for (channel, total) in sum.iter_mut().enumerate() {
                *total += f64::from(frame.data[at + channel]);
            }
        }
    }
    sum.map(|total| total / 81.0)
}

/// The centre of the bright marker on the row through its middle, if it is visible.
fn find_marker(frame: &ReceivedVideoFrame) -> Option<usize> {
    let row = (MARKER_TOP + MARKER / 2) * frame.width as usize * 4;
    let bright: Vec<usize> = (0..frame.width as usize)
        .filter(|x| {
            let pixel = &frame.data[row + x * 4..row + x * 4 + 3];
            pixel.iter().all(|&channel| channel > 200)
        })
        .collect();
    (bright.len() >= MARKER / 2).then(|| bright.iter().sum::<usize>() / bright.len())
}

/// Waits for the next frame, failing after [`WAIT`] or if the stream ends.
async fn next_frame(stream: &mut VideoStream, what: &str) -> ReceivedVideoFrame {
    match tokio::time::timeout(WAIT, stream.next_frame()).await {
        Ok(Some(frame)) => frame,
        Ok(None) => panic!("the video stream ended before {what}"),
        Err(_) => panic!("no video frame within {WAIT:?} ({what})"),
    }
}

/// Waits for `stream` to end (the track went away).
async fn expect_end(stream: &mut VideoStream, what: &str) {
    let ended = tokio::time::timeout(WAIT, async { while stream.next_frame().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the video stream did not end within {WAIT:?} after {what}");
}

async fn screen_share_subscribed(events: &mut UnboundedReceiver<RoomEvent>, what: &str) -> RemoteVideoTrack {
    expect_event(events, what, |event| match event {
        RoomEvent::VideoTrackSubscribed { identity, track } if identity == "alice" => Some(track),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_share_arrives_with_its_colours_and_motion_and_ends_when_unpublished() {
    let server = server();
    let (alice, _alice_events) = join(&server, "share", "alice", &[]).await;
    let (bob, mut bob_events) = join(&server, "share", "bob", &[]).await;

    let source = Arc::new(VideoSource::new(engine(), WIDTH, HEIGHT, VideoContent::Screen).expect("video source"));
    assert_eq!(source.resolution(), (WIDTH, HEIGHT));
    let track = LocalVideoTrack::new("screen", &source).expect("video track");
    let options = VideoPublishOptions {
        encoding: Some(VideoEncoding { max_bitrate: 3_000_000, max_framerate: 30.0 }),
        simulcast: false,
        ..VideoPublishOptions::default()
    };
    assert_eq!(options.source, TrackSource::ScreenShare, "a screen share by default");
    let publication = alice.local_participant().publish_video_track(&track, &options).await.expect("publish");
    let stop = Arc::new(AtomicBool::new(false));
    let sharing = share_screen(Arc::clone(&source), Arc::clone(&stop));

    let published = expect_event(&mut bob_events, "alice's screen share published", |event| match event {
        RoomEvent::TrackPublished { identity, publication } if identity == "alice" => Some(publication),
        _ => None,
    })
    .await;
    assert_eq!((published.kind, published.source), (TrackKind::Video, TrackSource::ScreenShare), "{published:?}");
    let remote = screen_share_subscribed(&mut bob_events, "alice's screen share subscribed").await;
    assert_eq!(remote.sid, publication.sid, "bob receives the track alice published");
    assert_eq!(remote.source, TrackSource::ScreenShare, "the source travels with the track");

    let mut stream = VideoStream::new(&remote).expect("video stream");
    // The first pictures may be smaller while the encoder ramps up; wait for the full size.
    let deadline = Instant::now() + WAIT;
    loop {
        let frame = next_frame(&mut stream, "the first full-size frame").await;
        if (frame.width, frame.height) == (WIDTH, HEIGHT) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 1280x720 frame within {WAIT:?}: last was {}x{}",
            frame.width,
            frame.height
        );
    }

    // Two seconds of receiving: count, and find the marker in each picture.
    let (mut count, mut positions, mut last) = (0, Vec::new(), ReceivedVideoFrame::default());
    let window = Instant::now() + Duration::from_secs(2);
    while Instant::now() < window {
        let Ok(Some(frame)) = tokio::time::timeout_at(window.into(), stream.next_frame()).await else { break };
        assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT), "the resolution stays 1280x720");
        assert_eq!(frame.data.len(), (WIDTH * HEIGHT * 4) as usize, "packed RGBA rows");
        count += 1;
        positions.extend(find_marker(&frame));
        last = frame;
    }
    assert!(count >= 20, "at least 20 frames in 2 s of a 30 fps share, got {count}");
    let bar_width = WIDTH as usize / BARS.len();
    for (index, expected) in BARS.iter().enumerate() {
        let seen = sample(&last, index * bar_width + bar_width / 2, BARS_HEIGHT / 2);
        for channel in 0..3 {
            assert!(
                (seen[channel] - f64::from(expected[channel])).abs() <= 40.0,
                "bar {index}: expected RGB {expected:?}, received {seen:?}"
            );
        }
    }
    positions.sort_unstable();
    positions.dedup_by(|a, b| a.abs_diff(*b) < MARKER_STEP / 2);
    assert!(positions.len() >= 5, "the marker moves from frame to frame; seen at x = {positions:?}");

    // The same pictures as the decoder's own I420 planes (no conversion to RGBA): the bars'
    // luma and chroma where limited-range BT.601 puts them.
    let mut planar = VideoStream::with_format(&remote, 2, PixelFormat::I420).expect("an I420 stream");
    let frame = loop {
        let frame = next_frame(&mut planar, "an I420 frame").await;
        if (frame.width, frame.height) == (WIDTH, HEIGHT) {
            break frame;
        }
    };
    assert_eq!(frame.format, PixelFormat::I420);
    let (luma, u, v) = frame.i420_planes().expect("three packed planes");
    let chroma_width = WIDTH as usize / 2;
    assert_eq!((luma.len(), u.len(), v.len()), (1280 * 720, 640 * 360, 640 * 360));
    for (index, rgb) in BARS.iter().enumerate() {
        let [r, g, b] = rgb.map(f64::from);
        let expected = [
            16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0,
            128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0,
            128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0,
        ];
        let (x, y) = (index * bar_width + bar_width / 2, BARS_HEIGHT / 2);
        let seen = [luma[y * WIDTH as usize + x], u[y / 2 * chroma_width + x / 2], v[y / 2 * chroma_width + x / 2]];
        for (channel, (seen, expected)) in seen.iter().zip(expected).enumerate() {
            assert!(
                (f64::from(*seen) - expected).abs() <= 24.0,
                "bar {index}, plane {channel}: expected {expected:.0}, received {seen} (RGB {rgb:?})"
            );
        }
    }
    drop(planar);

    // A viewer that stops reading loses frames rather than queueing them, and is current again
    // as soon as it reads.
    let dropped = stream.dropped_frames();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        stream.dropped_frames() >= dropped + 10,
        "frames are dropped while nobody reads: {}",
        stream.dropped_frames()
    );
    next_frame(&mut stream, "reading again").await;

    // Unsubscribing ends the stream once the track is let go of (the room lets go of its own
    // reference at the event); subscribing again brings the track back.
    bob.subscriptions().set_subscribed("alice", &publication.sid, false).expect("unsubscribe");
    let gone = expect_event(&mut bob_events, "the screen share unsubscribed", |event| match event {
        RoomEvent::TrackUnsubscribed { identity, sid } if identity == "alice" => Some(sid),
        _ => None,
    })
    .await;
    assert_eq!(gone, publication.sid);
    drop(remote);
    expect_end(&mut stream, "unsubscribing").await;
    drop(stream);
    bob.subscriptions().set_subscribed("alice", &publication.sid, true).expect("subscribe again");
    let again = screen_share_subscribed(&mut bob_events, "the screen share subscribed again").await;
    let mut stream = VideoStream::new(&again).expect("second video stream");
    let frame = next_frame(&mut stream, "the resubscribed track").await;
    assert!(frame.width > 0 && frame.height > 0, "pictures flow again");

    // Unpublishing makes the track go away for bob, and his stream ends.
    alice.local_participant().unpublish_track(&publication.sid).await.expect("unpublish");
    let unpublished = expect_event(&mut bob_events, "the screen share unpublished", |event| match event {
        RoomEvent::TrackUnpublished { identity, sid } if identity == "alice" => Some(sid),
        _ => None,
    })
    .await;
    assert_eq!(unpublished, publication.sid);
    drop(again);
    assert!(
        bob.remote_publications().get("alice").is_none_or(|publications| publications.is_empty()),
        "bob's room no longer lists the track: {:?}",
        bob.remote_publications()
    );
    expect_end(&mut stream, "unpublishing").await;

    stop.store(true, Ordering::Relaxed);
    let (sent, capturing) = sharing.join().expect("the capture thread");
    assert!(sent > 60, "alice sent frames throughout: {sent}");
    eprintln!("{sent} frames captured, {:?} a capture on average", capturing / sent as u32);
    drop((stream, track, publication));
    alice.disconnect().await.expect("alice leaves");
    bob.disconnect().await.expect("bob leaves");
    assert_eq!(engine().handle_stats().unknown, 0, "no handle may be released twice or invented");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i420_and_odd_sized_pictures_are_accepted() {
    let source = VideoSource::new(engine(), 641, 361, VideoContent::Camera).expect("video source");
    for (format, width, height) in
        [(PixelFormat::I420, 1280, 720), (PixelFormat::I420, 641, 361), (PixelFormat::Rgba, 641, 361)]
    {
        let mut frame = VideoFrame::new(format, width, height).expect("frame");
        if let Some((y, u, v)) = frame.i420_planes_mut() {
            y.fill(128);
            u.fill(64);
            v.fill(192);
        }
        for index in 0..3 {
            source
                .capture(&frame, index * 33_333)
                .unwrap_or_else(|error| panic!("{format:?} {width}x{height}: {error}"));
        }
    }
    // The engine is still alive (a malformed buffer would have made it panic).
    VideoSource::new(engine(), 16, 16, VideoContent::Screen).expect("the engine still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_screen_share_among_its_sources_cannot_share_the_screen() {
    let server = server();
    let (alice, _alice_events) = join(&server, "no-share", "alice", &["microphone"]).await;
    let permission = alice.local_permission().expect("the join answer carries alice's permission");
    assert!(!permission.allows_publishing(TrackSource::ScreenShare), "{permission:?}");

    let source = VideoSource::new(engine(), WIDTH, HEIGHT, VideoContent::Screen).expect("video source");
    let track = LocalVideoTrack::new("screen", &source).expect("video track");
    // The server ignores such a request (it logs "no permission to publish track") and the
    // engine would give up after 10 s with "track publication timed out"; the grant is checked
    // first, so the refusal is immediate and says why.
    let started = Instant::now();
    let error = alice
        .local_participant()
        .publish_video_track(&track, &VideoPublishOptions::default())
        .await
        .expect_err("a screen share the token does not allow is refused");
    assert!(matches!(error, Error::NotAllowed(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "not allowed: the access token does not allow publishing screen_share (it allows: microphone)"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not after a timeout");
    alice.disconnect().await.expect("alice leaves");
}

/// Reads frames until one's width satisfies `wanted`; returns that width.
async fn width_after(stream: &mut VideoStream, wanted: fn(u32) -> bool, what: &str) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let frame = next_frame(stream, what).await;
        if wanted(frame.width) {
            return frame.width;
        }
        assert!(Instant::now() < deadline, "{what}: still {}x{} after {WAIT:?}", frame.width, frame.height);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_can_ask_for_the_low_simulcast_layer() {
    let server = server();
    let (alice, _alice_events) = join(&server, "layers", "alice", &[]).await;
    let (bob, mut bob_events) = join(&server, "layers", "bob", &[]).await;
    let source = Arc::new(VideoSource::new(engine(), WIDTH, HEIGHT, VideoContent::Screen).expect("video source"));
    let track = LocalVideoTrack::new("screen", &source).expect("video track");
    let options = VideoPublishOptions { simulcast: true, ..VideoPublishOptions::default() };
    let publication = alice.local_participant().publish_video_track(&track, &options).await.expect("publish");
    let stop = Arc::new(AtomicBool::new(false));
    let sharing = share_screen(Arc::clone(&source), Arc::clone(&stop));
    let remote = screen_share_subscribed(&mut bob_events, "alice's screen share subscribed").await;
    let mut stream = VideoStream::new(&remote).expect("video stream");

    width_after(&mut stream, |width| width == WIDTH, "the full-size layer").await;
    bob.subscriptions().set_video_quality("alice", &publication.sid, VideoQuality::Low).expect("ask for the low layer");
    let low = width_after(&mut stream, |width| width < WIDTH, "the low layer").await;
    eprintln!("low layer: {low} pixels wide");
    bob.subscriptions()
        .set_video_quality("alice", &publication.sid, VideoQuality::High)
        .expect("ask for the high layer");
    width_after(&mut stream, |width| width == WIDTH, "the high layer again").await;

    stop.store(true, Ordering::Relaxed);
    sharing.join().expect("the capture thread");
    drop((stream, remote));
    alice.disconnect().await.expect("alice leaves");
    bob.disconnect().await.expect("bob leaves");
}
