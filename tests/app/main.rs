//! End-to-end tests of the desktop app: the real `parley-app` binary in a real window (a private
//! Xvfb), driven through WebDriver (tauri-driver + WebKitWebDriver), joining a real LiveKit
//! server through a `parley://join/…` link with a `livekit` profile whose secret sits in a real
//! keyring, playing and capturing through real sound devices (null sinks of a private
//! PulseAudio), with `parley` CLI processes as the other people in the room.
//!
//! Each test builds its own world ([`rig::Rig`]); nothing is shared between tests. Whatever is
//! missing (Xvfb, tauri-driver, WebKitWebDriver, PulseAudio, the LiveKit server or FFI library,
//! gnome-keyring) fails the test with what to install: `cargo xtask setup` installs all of it.
//! Timing is only ever a generous deadline on something that must happen; the oracles are the
//! audio (frequency and level at the app's speaker, at a peer's ears) and what the peers report.
//!
//! Screenshots go to `<target dir>/app-e2e/<scenario>.png` (and `<scenario>-failed.png`).
//!
//! Modules: [`rig`] (the world and the app), [`window`] (the DOM, as a user sees it), [`peer`]
//! (`parley join` processes), [`sound`] (recording and feeding the app's devices), [`tray`] (the
//! tray menu over D-Bus, as a panel sees it).

mod peer;
mod rig;
mod sound;
mod tray;
mod window;

use std::process::Command;
use std::time::{Duration, Instant};

use parley_capture::pattern;
use parley_e2e::PatternWindow;
use peer::{Peer, between, now_ms};
use rig::{APP_IDENTITY, APP_MIC, APP_SPEAKER, AppSetup, ROOM, Rig};
use sound::{Ear, Mouth, read_tone, tone_gain};
use window::{
    PictureView, click_live_mark, click_menu_item, click_viewer_button, confirm, menu_items, open_menu, received_kbps,
    set_volume, tile, viewer_open, wait_for_picture, wait_for_tile,
};

/// The CLI's default `--tone-level`: a peak of −12 dBFS.
const TONE_DBFS: f32 = -12.0;
const PEER: &str = "bot";
/// Deadlines for things that must happen; never expected durations.
const APPEARS: Duration = Duration::from_secs(30);
const ARRIVES: Duration = Duration::from_secs(20);
const ENDS: Duration = Duration::from_secs(30);

#[test]
fn a_linked_join_lists_the_speaking_peer_and_plays_its_tone_on_the_speaker() {
    let started = Instant::now();
    let rig = Rig::start("peer-heard", &AppSetup::default());
    let ear = Ear::on(&rig.pulse, APP_SPEAKER);
    let bot = Peer::join(&rig.server, ROOM, PEER, rig.dir.path(), &["--tone", "440"], 120.0);

    let view = wait_for_tile(&rig.session, PEER, APPEARS, "the app should list bot with a speaking ring", |view| {
        view.is_some_and(|view| view.speaking)
    })
    .expect("a tile");
    let arrival = ear.wait_for_tone(440.0, -30.0, ARRIVES, "the app's speaker");
    let heard = ear.listen(2.0);
    let tone = read_tone(&heard, 440.0);
    let view = tile(&rig.session, PEER).unwrap_or(view);
    let shot = rig.screenshot("");
    eprintln!(
        "peer-heard: tone after {:.1} s at {:.1} Hz, {:.1} dBFS, {:.3} of the energy; ring level {:.2} ({:?}); {}",
        arrival.as_secs_f64(),
        tone.frequency_hz,
        tone.level_dbfs,
        tone.share,
        view.level,
        view.label,
        shot.display()
    );
    assert!(view.label.contains("speaking"), "the tile's label should say bot is speaking: {:?}", view.label);
    assert!(view.level >= 0.5, "a −12 dBFS tone should draw a wide ring (--level ≥ 0.5), got {:.2}", view.level);
    assert!((tone.frequency_hz - 440.0).abs() <= 5.0, "the speaker should play 440 Hz, got {:.1}", tone.frequency_hz);
    assert!(
        (tone.level_dbfs - TONE_DBFS).abs() <= 6.0,
        "the speaker should play bot's tone at −12 ± 6 dBFS, got {:.1}",
        tone.level_dbfs
    );
    assert!(tone.share >= 0.9, "bot's tone should be ≥ 90 % of what plays, got {:.3}", tone.share);
    bot.leave(ENDS).assert_clean();
    eprintln!("peer-heard: {:.1} s", started.elapsed().as_secs_f64());
}

/// Any web page can open a `parley://join/…` link: the app shows the room and sends nothing —
/// not even its presence — until the user clicks Join.
#[test]
fn a_join_link_alone_sends_no_audio_until_join_is_clicked() {
    let started = Instant::now();
    let rig = Rig::launch("link-asks", &AppSetup::default());
    let _mouth = Mouth::sing(&rig.pulse, APP_MIC, MIC_HZ.into(), TONE_DBFS.into(), 300.0);
    let listener = Peer::join(&rig.server, ROOM, "ear", rig.dir.path(), &["--record"], 120.0);
    let recording = listener.recording.clone().expect("a recording path");
    listener.wait_for_event("should join the room", APPEARS, |event| event["event"] == "joined");
    let dialog = rig.session.wait_for(
        "const dialog = document.querySelector('[role=alertdialog]'); return dialog ? dialog.textContent : null;",
        Vec::new(),
        APPEARS,
    );
    let dialog = dialog.unwrap_or_else(|error| panic!("reading the window: {error}"));
    let text = dialog.as_str().unwrap_or_else(|| panic!("the link should open a dialog, got {dialog}"));
    assert!(text.contains(ROOM) && text.contains("Join"), "the dialog names the room and offers Join: {text:?}");
    // Long enough for a join the link had started by itself to be heard.
    std::thread::sleep(Duration::from_secs(8));
    rig.screenshot("asked");
    let clicked = now_ms();
    rig.accept_link();
    rig.wait_connected();
    listener.wait_for_event("should hear the app once Join is clicked", ARRIVES, |event| {
        event["event"] == "first_audio" && event["identity"] == APP_IDENTITY
    });
    std::thread::sleep(Duration::from_secs(3));
    let heard_until = now_ms();
    let ended = listener.leave(ENDS);
    ended.assert_clean();

    let joined_before = ended
        .events_named("participant_joined")
        .into_iter()
        .any(|event| event["identity"] == APP_IDENTITY && event["unix_ms"].as_f64().is_some_and(|at| at < clicked));
    assert!(!joined_before, "the app must not enter the room before Join: {:?}", ended.events);
    let (samples, start_ms) = ended.recording(&recording);
    let before = read_tone(between(&samples, start_ms, clicked - 7000.0, clicked), MIC_HZ);
    let after = read_tone(between(&samples, start_ms, heard_until - 3000.0, heard_until), MIC_HZ);
    eprintln!(
        "link-asks: {MIC_HZ} Hz at the listener: {:.1} dBFS before Join, {:.1} dBFS after; {:.1} s",
        before.level_dbfs,
        after.level_dbfs,
        started.elapsed().as_secs_f64()
    );
    assert!(before.level_dbfs <= -60.0, "before Join the listener hears nothing, got {:.1} dBFS", before.level_dbfs);
    assert!(
        after.level_dbfs >= -30.0,
        "after Join the listener hears the microphone, got {:.1} dBFS",
        after.level_dbfs
    );
}

#[test]
fn halving_a_peers_volume_in_their_menu_lowers_them_by_6_db() {
    let started = Instant::now();
    let rig = Rig::start("volume", &AppSetup::default());
    let ear = Ear::on(&rig.pulse, APP_SPEAKER);
    let bot = Peer::join(&rig.server, ROOM, PEER, rig.dir.path(), &["--tone", "440"], 120.0);
    wait_for_tile(&rig.session, PEER, APPEARS, "the app should list bot", |view| view.is_some());
    ear.wait_for_tone(440.0, -30.0, ARRIVES, "the app's speaker");
    std::thread::sleep(Duration::from_secs(1));
    let full = ear.listen(2.0);
    let full_db = tone_gain(&full, 440.0);

    open_menu(&rig.session, PEER);
    let shown = set_volume(&rig.session, 50);
    assert_eq!(shown, "50 %", "the slider should read 50 %");
    wait_for_tile(&rig.session, PEER, ARRIVES, "bot's tile should show the new volume", |view| {
        view.is_some_and(|view| view.label.contains("volume 50 %"))
    });
    // Wait for the change to reach the speaker, then measure a steady stretch.
    let deadline = Instant::now() + ARRIVES;
    while tone_gain(&ear.last(1.0), 440.0) > full_db - 3.0 {
        assert!(Instant::now() < deadline, "bot should get quieter at the speaker within {} s", ARRIVES.as_secs());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let half_samples = ear.listen(2.0);
    let half = read_tone(&half_samples, 440.0);
    let half_db = tone_gain(&half_samples, 440.0);
    let shot = rig.screenshot("");
    // Compared as the tone's level while it sounds: a playout gap on a loaded machine is not a
    // volume change (the CI once read 8.4 dB for 6 from gaps and a
    // wandering pitch in the second stretch, while the app redrew its menu).
    let drop_db = full_db - half_db;
    eprintln!(
        "volume: {full_db:.2} dBFS at 100 %, {half_db:.2} dBFS at 50 % ({:.1} Hz; {:.2} dBFS with gaps counted): \
         {drop_db:.2} dB quieter; {}",
        half.frequency_hz,
        half.level_dbfs,
        shot.display()
    );
    assert!((drop_db - 6.02).abs() <= 1.5, "50 % should be 6 ± 1.5 dB quieter, got {drop_db:.2} dB");
    assert!((half.frequency_hz - 440.0).abs() <= 5.0, "still bot's 440 Hz, got {:.1}", half.frequency_hz);
    let settings = rig.settings_file();
    assert!(
        settings.contains("[volumes.local]") && settings.contains("bot = 50"),
        "the volume should be saved for the profile:\n{settings}"
    );
    bot.leave(ENDS).assert_clean();
    eprintln!("volume: {:.1} s", started.elapsed().as_secs_f64());
}

/// A PNG's size, samples per pixel and pixels.
fn decode_png(png: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG's size")];
    let info = reader.next_frame(&mut pixels).expect("the PNG's pixels");
    (info.width, info.height, info.color_type.samples(), pixels)
}

/// The colours of the pattern's eight bars as the picture `png` (a screenshot, or a saved frame)
/// shows them inside `picture` (where the whole pattern window is drawn in it).
fn bars_on_screen(png: &[u8], picture: &PictureView) -> Vec<[u8; 3]> {
    let (width, height, channels, pixels) = decode_png(png);
    bars_in(width, height, channels, &pixels, picture)
}

/// The pattern's bars as the X server shows them in the app's window titled `title`, inside
/// `picture`: the shell paints a watched share itself, and WebDriver's screenshots (the page's)
/// do not show it. The window must not be covered (the shared window is moved off it).
fn bars_in_window(rig: &Rig, title: &str, suffix: &str, picture: &PictureView) -> Vec<[u8; 3]> {
    let (width, height, rgb) = rig.window_pixels(title, suffix);
    bars_in(width, height, 3, &rgb, picture)
}

/// The bars in `width` × `height` pixels of `channels` samples each (RGB first).
fn bars_in(width: u32, height: u32, channels: usize, pixels: &[u8], picture: &PictureView) -> Vec<[u8; 3]> {
    let scale_x = picture.width / f64::from(pattern::WIDTH);
    let scale_y = picture.height / f64::from(pattern::HEIGHT);
    let bar_width = pattern::WIDTH / 8;
    (0..8u32)
        .map(|bar| {
            let x = (picture.left + f64::from(bar * bar_width + bar_width / 2) * scale_x).round() as usize;
            let y = (picture.top + f64::from(pattern::BARS_HEIGHT / 2) * scale_y).round() as usize;
            assert!(x < width as usize && y < height as usize, "({x}, {y}) is outside the {width}x{height} picture");
            let at = (y * width as usize + x) * channels;
            [pixels[at], pixels[at + 1], pixels[at + 2]]
        })
        .collect()
}

/// Waits for a window other than `main` to open; returns its handle.
fn wait_for_new_window(rig: &Rig, main: &str) -> String {
    let deadline = Instant::now() + ARRIVES;
    loop {
        let handles = rig.session.window_handles().unwrap_or_else(|error| panic!("listing the windows: {error}"));
        if let Some(other) = handles.into_iter().find(|handle| handle != main) {
            return other;
        }
        assert!(Instant::now() < deadline, "a window of the share's own should open");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts that `bars` are the pattern's eight bars, within what video compression changes.
fn assert_bars(what: &str, bars: &[[u8; 3]]) {
    for (bar, (got, expected)) in bars.iter().zip(pattern::BARS).enumerate() {
        let off = got.iter().zip(expected).map(|(got, expected)| (i32::from(*got) - i32::from(expected)).abs()).max();
        assert!(
            off.is_some_and(|off| off <= 48),
            "{what}: bar {bar} should be {expected:?}, got {got:?} (all: {bars:?})"
        );
    }
}

#[test]
fn a_share_is_marked_live_watched_full_screen_popped_out_and_closed_and_ends_with_its_window() {
    let started = Instant::now();
    let rig = Rig::start("live", &AppSetup { wide_display: true, ..AppSetup::default() });
    // Bot shares a window on the app's own display; closing it ends the share. It goes to the
    // right of the app's windows, so that what the X server shows of them is their own.
    let window = PatternWindow::open(&rig.display.env());
    let id = window.id.to_string();
    let moved = Command::new("xdotool")
        .args(["windowmove", &id, &rig::WIDE_DISPLAY.0.saturating_sub(pattern::WIDTH).to_string(), "0"])
        .envs(rig.display.env())
        .status()
        .expect("running xdotool (Debian package xdotool; run `cargo xtask setup`)");
    assert!(moved.success(), "xdotool windowmove should succeed");
    let bot = Peer::join_with_env(
        &rig.server,
        ROOM,
        PEER,
        rig.dir.path(),
        &["--share-screen", &id, "--share-quality", "720p30"],
        180.0,
        &rig.display.env(),
    );
    bot.wait_for_event("bot should share its window", ARRIVES, |event| event["event"] == "share_started");
    let live = wait_for_tile(&rig.session, PEER, ARRIVES, "bot's tile should show the Live mark", |view| {
        view.is_some_and(|view| view.live_mark)
    });
    let live = live.expect("bot's tile");
    assert!(live.label.contains("sharing their screen"), "the tile says so to a screen reader: {}", live.label);
    // Unwatched, the share costs nothing: what arrives is the call's signalling and RTCP.
    std::thread::sleep(Duration::from_secs(5));
    let declined = received_kbps(&rig.session);

    click_live_mark(&rig.session, PEER);
    let picture = wait_for_picture(&rig.session, PEER, ARRIVES);
    assert!(!picture.fills_window, "the viewer opens in the room view: {picture:?}");
    std::thread::sleep(Duration::from_secs(5));
    let in_room = wait_for_picture(&rig.session, PEER, ARRIVES);
    let watched_in_room = received_kbps(&rig.session);
    assert_bars("the viewer in the room view", &bars_in_window(&rig, "Parley", "room", &in_room));
    // The room view's viewer is for watching: the full layer (a share's smaller layer is sent
    // at 3 frames a second, for thumbnails).
    assert_eq!(
        (in_room.natural_width, in_room.natural_height),
        (pattern::WIDTH, pattern::HEIGHT),
        "the room view should show the full layer: {in_room:?}"
    );

    click_viewer_button(&rig.session, PEER, "share-expand");
    std::thread::sleep(Duration::from_secs(5));
    let full = wait_for_picture(&rig.session, PEER, ARRIVES);
    assert!(full.fills_window, "full screen should fill the window: {full:?}");
    let watched = received_kbps(&rig.session);
    let shot = rig.screenshot("full");
    assert_bars("the viewer, full screen", &bars_in_window(&rig, "Parley", "full", &full));
    click_viewer_button(&rig.session, PEER, "share-expand");

    // Into a window of its own, which shows the picture.
    let main = rig.session.window_handle().unwrap_or_else(|error| panic!("the main window's handle: {error}"));
    click_viewer_button(&rig.session, PEER, "share-popout");
    let popout = wait_for_new_window(&rig, &main);
    rig.session.switch_to_window(&popout).unwrap_or_else(|error| panic!("switching to the pop-out: {error}"));
    // The new window opened over the shared one: X11 capture without a compositor reads what
    // is on screen, so put the pattern back on top (as a user would), and let a frame pass.
    let raised = Command::new("xdotool")
        .args(["windowraise", &window.id.to_string()])
        .envs(rig.display.env())
        .status()
        .expect("running xdotool (Debian package xdotool; run `cargo xtask setup`)");
    assert!(raised.success(), "xdotool windowraise should succeed");
    std::thread::sleep(Duration::from_secs(2));
    let alone = wait_for_picture(&rig.session, PEER, ARRIVES);
    let popout_shot = rig.screenshot("popout");
    assert!(alone.fills_window, "the pop-out shows only the share: {alone:?} ({})", popout_shot.display());
    let bars = bars_in_window(&rig, &format!("{PEER}'s screen — Parley"), "popout", &alone);
    assert_bars(&format!("the pop-out ({})", popout_shot.display()), &bars);
    // Adaptive stream: shrunk to a thumbnail, the pop-out takes the smaller layer.
    let shrunk = Command::new("xdotool")
        .args(["search", "--name", "screen — Parley", "windowsize", "%@", "320", "200"])
        .envs(rig.display.env())
        .status()
        .expect("running xdotool");
    assert!(shrunk.success(), "xdotool should find and resize the pop-out");
    let deadline = Instant::now() + ARRIVES;
    let thumbnail = loop {
        let picture = wait_for_picture(&rig.session, PEER, ARRIVES);
        if picture.natural_width < pattern::WIDTH || Instant::now() > deadline {
            break picture;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        thumbnail.natural_width < pattern::WIDTH && thumbnail.width <= 320.0,
        "a thumbnail-sized viewer should take the smaller layer: {thumbnail:?}"
    );
    // Its ✕ stops watching, which closes the window too.
    click_viewer_button(&rig.session, PEER, "share-close");
    let deadline = Instant::now() + ENDS;
    while rig.session.window_handles().unwrap_or_else(|error| panic!("listing the windows: {error}")).len() > 1 {
        assert!(Instant::now() < deadline, "the share's window should close when it stops watching");
        std::thread::sleep(Duration::from_millis(200));
    }
    rig.session.switch_to_window(&main).unwrap_or_else(|error| panic!("back to the main window: {error}"));
    let deadline = Instant::now() + ENDS;
    while viewer_open(&rig.session) {
        assert!(Instant::now() < deadline, "closing the viewer should remove it");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    let unwatched = received_kbps(&rig.session);
    eprintln!(
        "app received: {declined} kbit/s before watching, {watched_in_room} in the room view ({}x{} first, then {}x{}), \
         {watched} full screen ({}x{}), a {}x{} picture in the thumbnail-sized pop-out, {unwatched} after closing",
        picture.natural_width,
        picture.natural_height,
        in_room.natural_width,
        in_room.natural_height,
        full.natural_width,
        full.natural_height,
        thumbnail.natural_width,
        thumbnail.natural_height,
    );
    assert_eq!(full.natural_width, pattern::WIDTH, "full screen shows the full layer: {full:?}");
    let video = watched - declined;
    // A mostly still pattern is cheap: 118–283 kbit/s full screen in runs so far.
    assert!(video >= 50.0, "the share should arrive while watched: {declined} kbit/s before, {watched} while watching");
    assert!(
        unwatched <= declined + video / 4.0,
        "closing the viewer should stop the video: {declined} before, {watched} while watching, {unwatched} kbit/s after"
    );

    drop(window);
    let ended =
        bot.wait_for_event("bot's share should end with its window", ARRIVES, |event| event["event"] == "share_failed");
    assert_eq!(ended["code"], "target_gone", "{ended}");
    let after = wait_for_tile(&rig.session, PEER, ARRIVES, "the Live mark should go when the share ends", |view| {
        view.is_some_and(|view| !view.live_mark)
    });
    let after = after.expect("bot is still in the call");
    assert!(!after.label.contains("sharing"), "the label no longer says sharing: {}", after.label);
    bot.leave(ENDS).assert_clean();
    eprintln!("live: {}; {:.1} s", shot.display(), started.elapsed().as_secs_f64());
}

/// Waits until a window on the app's display has (`shown`) or has not a title matching `pattern`
/// (the native title: WebDriver's title is the page's).
fn wait_for_window_title(rig: &Rig, pattern: &str, shown: bool) {
    let deadline = Instant::now() + ARRIVES;
    loop {
        let found = Command::new("xdotool")
            .args(["search", "--name", pattern])
            .envs(rig.display.env())
            .output()
            .expect("running xdotool (Debian package xdotool; run `cargo xtask setup`)");
        if found.status.success() == shown {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a window titled {pattern:?} should be {}",
            if shown { "shown" } else { "gone" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_app_shares_a_window_picked_from_thumbnails_that_a_peer_receives_until_the_tray_stops_it() {
    let started = Instant::now();
    let rig = Rig::start("share", &AppSetup::default());
    let window = PatternWindow::open(&rig.display.env());
    // An application plays on the desktop's speaker: its sound goes with the share.
    let _player = Mouth::sing_as(&rig.pulse, APP_SPEAKER, "Tone Player", 660.0, -12.0, 120.0);
    let frames = rig.dir.path().join("frames");
    let frames_arg = frames.to_str().expect("a UTF-8 path").to_string();
    let bot = Peer::join(
        &rig.server,
        ROOM,
        PEER,
        rig.dir.path(),
        &["--watch", APP_IDENTITY, "--save-frames", &frames_arg, "--save-every", "30", "--record"],
        120.0,
    );
    wait_for_tile(&rig.session, PEER, APPEARS, "the app should list bot", |view| view.is_some());

    click(&rig, "[data-testid=share-button]");
    let target = format!("window:{:#x}", window.id);
    let thumbnail = rig
        .session
        .wait_for(
            "const target = document.querySelector(`[data-testid=share-target][data-target=\"${arguments[0]}\"]`); \
             const img = target?.querySelector('img'); \
             return img && img.complete && img.naturalWidth > 0 ? img.naturalWidth : null;",
            vec![serde_json::json!(target)],
            ARRIVES,
        )
        .unwrap_or_else(|error| panic!("reading the picker: {error}"));
    assert!(thumbnail.as_u64().is_some_and(|width| width > 0), "the picker should show {target} with a thumbnail");
    click(&rig, &format!("[data-testid=share-target][data-target=\"{target}\"]"));
    let sound = rig
        .session
        .wait_for(
            "const options = [...(document.querySelector('[data-testid=share-sound]')?.options ?? [])]; \
             const player = options.find((option) => option.textContent.includes('Tone Player')); \
             if (!player) return null; \
             const select = document.querySelector('[data-testid=share-sound]'); \
             select.value = player.value; \
             select.dispatchEvent(new Event('change', { bubbles: true })); \
             return player.value;",
            Vec::new(),
            ARRIVES,
        )
        .unwrap_or_else(|error| panic!("the picker should offer the Tone Player's sound: {error}"));
    click(&rig, "[data-testid=share-start]");

    bot.wait_for_event("bot should receive the app's share", ARRIVES, |event| {
        event["event"] == "watch_started" && event["identity"] == APP_IDENTITY
    });
    wait_for_window_title(&rig, "Parley — sharing your screen", true);
    // The first pictures may come from a smaller simulcast layer, until the full-size one flows.
    bot.wait_for_event("bot should receive the share at 1280x720 and full rate", ARRIVES, |event| {
        event["event"] == "watch_stats"
            && event["width"] == 1280
            && event["height"] == 720
            && event["fps"].as_f64().is_some_and(|fps| fps >= 20.0)
    });
    let shot = rig.screenshot("");
    let title = rig
        .session
        .execute("return document.querySelector('[data-testid=share-button]').title;", Vec::new())
        .unwrap_or_else(|error| panic!("reading the control bar: {error}"));
    assert!(
        title.as_str().is_some_and(|title| title.ends_with("with the sound of Tone Player")),
        "the control bar says the player's sound ({sound}) is shared: {title}"
    );
    // bot, watching, hears the player's sound beside the picture.
    std::thread::sleep(Duration::from_secs(3));
    let heard_to = now_ms();

    let bus = rig.keyring.bus_address();
    let menu = tray::find_menu(bus, APPEARS);
    menu.click(bus, "Stop sharing");
    bot.wait_for_event("the share should end when the tray stops it", ARRIVES, |event| {
        event["event"] == "share_ended" && event["identity"] == APP_IDENTITY
    });
    wait_for_window_title(&rig, "sharing your screen", false);
    let button = rig
        .session
        .wait_for(
            "const button = document.querySelector('[data-testid=share-button]'); \
             return button?.textContent.trim() === 'Share screen' ? true : null;",
            Vec::new(),
            ARRIVES,
        )
        .unwrap_or_else(|error| panic!("reading the control bar: {error}"));
    assert_eq!(button, serde_json::json!(true), "the control bar should offer to share again");
    let bot_recording = bot.recording.clone().expect("bot records");
    let ended = bot.leave(ENDS);
    ended.assert_clean();
    let (recording, start_ms) = ended.recording(&bot_recording);
    let sound_level = tone_gain(between(&recording, start_ms, heard_to - 2500.0, heard_to), 660.0);
    assert!(
        (sound_level + 12.0).abs() <= 6.0,
        "bot hears the shared application's sound at −12 ± 6 dBFS: {sound_level:.1}"
    );

    // Complete pictures only: one bot was writing as it left stays a `.png.part`.
    let mut saved: Vec<_> = std::fs::read_dir(&frames)
        .unwrap_or_else(|error| panic!("bot's frames in {}: {error}", frames.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "png"))
        .collect();
    saved.sort();
    // The last full-size picture (a stream can start on a smaller layer, and a track that ends
    // hands over an 8x8 black picture last).
    let (last, png) = saved
        .iter()
        .rev()
        .map(|path| (path, std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))))
        .find(|(_, png)| decode_png(png).0 == pattern::WIDTH)
        .unwrap_or_else(|| panic!("bot should have saved a 1280-wide picture in {}: {saved:?}", frames.display()));
    let whole = PictureView {
        left: 0.0,
        top: 0.0,
        width: f64::from(pattern::WIDTH),
        height: f64::from(pattern::HEIGHT),
        natural_width: pattern::WIDTH,
        natural_height: pattern::HEIGHT,
        fills_window: false,
    };
    assert_bars(&format!("bot's picture of the app's share ({})", last.display()), &bars_on_screen(&png, &whole));
    eprintln!(
        "share: {}; the shared sound at bot {sound_level:.1} dBFS; {:.1} s",
        shot.display(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_moderator_menu_mutes_a_peer_then_kicks_them_after_confirming() {
    let started = Instant::now();
    let rig = Rig::start("moderation", &AppSetup::default());
    let bot = Peer::join(&rig.server, ROOM, PEER, rig.dir.path(), &["--tone", "330"], 120.0);
    wait_for_tile(&rig.session, PEER, APPEARS, "the app should list bot speaking", |view| {
        view.is_some_and(|view| view.speaking)
    });

    open_menu(&rig.session, PEER);
    click_menu_item(&rig.session, "Mute for everyone");
    let dialog = rig.session.execute("return document.querySelector('[role=alertdialog]') !== null;", Vec::new());
    let dialog = dialog.expect("reading the window");
    assert_eq!(dialog, serde_json::Value::Bool(false), "muting is not destructive: no confirmation dialog");
    bot.wait_for_event("should report its own track muted by the moderator", ARRIVES, |event| {
        event["event"] == "track_muted" && event["identity"] == PEER
    });
    let view = wait_for_tile(&rig.session, PEER, ARRIVES, "bot's tile should show muted and not speaking", |view| {
        view.is_some_and(|view| view.muted_mark && !view.speaking)
    });
    rig.screenshot("muted");
    eprintln!(
        "moderation: muted after {:.1} s; tile {:?}",
        started.elapsed().as_secs_f64(),
        view.map(|view| view.label)
    );

    open_menu(&rig.session, PEER);
    click_menu_item(&rig.session, "Hard mute");
    confirm(&rig.session, "Take away bot's right to speak");
    bot.wait_for_event("should lose the right to publish", ARRIVES, |event| {
        event["event"] == "publish_permission" && event["can_publish"] == false
    });
    wait_for_tile(&rig.session, PEER, ARRIVES, "bot's tile should show the hard mute", |view| {
        view.is_some_and(|view| view.label.contains("hard muted by a moderator"))
    });
    // Let the confirmation dialog's closing finish drawing before the picture.
    std::thread::sleep(Duration::from_millis(600));
    rig.screenshot("hard-muted");
    open_menu(&rig.session, PEER);
    let offered = menu_items(&rig.session);
    let offers = |label: &str| {
        offered
            .as_array()
            .is_some_and(|items| items.iter().any(|item| item.as_str().is_some_and(|text| text.starts_with(label))))
    };
    assert!(
        offers("Restore speaking") && !offers("Hard mute"),
        "a hard-muted peer is offered restore, not another hard mute: {offered}"
    );
    click_menu_item(&rig.session, "Restore speaking");
    bot.wait_for_event("should get the right to publish back", ARRIVES, |event| {
        event["event"] == "publish_permission" && event["can_publish"] == true
    });
    wait_for_tile(&rig.session, PEER, ARRIVES, "bot's tile should drop the hard mute", |view| {
        view.is_some_and(|view| !view.label.contains("hard muted"))
    });
    eprintln!("moderation: hard muted and restored after {:.1} s", started.elapsed().as_secs_f64());

    open_menu(&rig.session, PEER);
    click_menu_item(&rig.session, "Kick");
    confirm(&rig.session, "Remove bot from the room?");
    let ended = bot.wait(ENDS);
    wait_for_tile(&rig.session, PEER, ARRIVES, "the app should stop listing bot", |view| view.is_none());
    let shot = rig.screenshot("");
    let disconnected = ended.events_named("disconnected");
    eprintln!("moderation: bot exited {} with {disconnected:?}; {}", ended.status, shot.display());
    assert_eq!(ended.status.code(), Some(6), "bot should exit as removed from the room; stderr: {}", ended.stderr);
    assert!(ended.stderr.contains("disconnected from the room"), "bot should say it was removed: {}", ended.stderr);
    assert!(
        disconnected.iter().any(|event| event["code"] != "client_initiated"),
        "bot should report a disconnection it did not ask for: {disconnected:?}"
    );
    eprintln!("moderation: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn by_default_the_app_runs_without_webkit_compositing_and_still_shows_the_call() {
    let rig = Rig::start("software-compositing", &AppSetup { default_compositing: true, ..AppSetup::default() });
    let _bot = Peer::join(&rig.server, ROOM, PEER, rig.dir.path(), &["--tone", "330"], 60.0);
    wait_for_tile(&rig.session, PEER, APPEARS, "the app should draw bot's tile speaking", |view| {
        view.is_some_and(|view| view.speaking)
    });
    let environment = rig.app_environment().expect("the app's process");
    let switch = environment.iter().find(|(key, _)| key == "WEBKIT_DISABLE_COMPOSITING_MODE");
    assert_eq!(
        switch.map(|(_, value)| value.as_str()),
        Some("1"),
        "the app should have turned WebKit's compositing off for itself (it was not set for it)"
    );
}

/// The push-to-talk accelerator, as the settings hold it and as xdotool presses it.
const PTT_ACCELERATOR: &str = "CommandOrControl+Shift+P";
const PTT_KEYS: &str = "ctrl+shift+p";
const MIC_HZ: f32 = 880.0;

#[test]
fn push_to_talk_sends_the_microphone_only_while_the_key_is_held() {
    let rig = Rig::start("push-to-talk", &AppSetup { push_to_talk: Some(PTT_ACCELERATOR), ..AppSetup::default() });
    hold_push_to_talk(&rig, "push-to-talk", || xdotool(&rig, "keydown"), || xdotool(&rig, "keyup"));
}

#[test]
fn on_wayland_push_to_talk_comes_through_the_desktops_shortcuts_portal() {
    let setup = AppSetup { push_to_talk: Some(PTT_ACCELERATOR), wayland_portal: true, ..AppSetup::default() };
    let rig = Rig::start("portal-push-to-talk", &setup);
    let portal = rig.portal.as_ref().expect("the portal stand-in");
    let deadline = Instant::now() + APPEARS;
    let bound = loop {
        let bound = portal.bound();
        if !bound.is_empty() || Instant::now() > deadline {
            break bound;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(bound.len(), 1, "the app should bind its shortcuts in one portal session: {bound:?}");
    let shortcut = bound[0].iter().find(|shortcut| shortcut.id == "push-to-talk");
    let trigger = shortcut.and_then(|shortcut| shortcut.preferred_trigger.as_deref());
    assert_eq!(
        trigger,
        Some("CTRL+SHIFT+p"),
        "push-to-talk on the settings' keys, as the portal spells them: {bound:?}"
    );
    let press = || assert_eq!(portal.press("push-to-talk").expect("Activated"), 1, "one session to tell");
    let release = || assert_eq!(portal.release("push-to-talk").expect("Deactivated"), 1, "one session to tell");
    hold_push_to_talk(&rig, "portal push-to-talk", press, release);

    // New keys in the settings: a portal session binds once, so the app closes it and binds anew.
    let script = "return (async () => { \
                    const settings = await window.__TAURI_INTERNALS__.invoke('get_settings'); \
                    settings.shortcuts.pushToTalk = 'Alt+F9'; \
                    return await window.__TAURI_INTERNALS__.invoke('update_settings', { settings }); })();";
    let saved = rig.session.execute(script, Vec::new()).expect("changing the push-to-talk key");
    assert_eq!(saved["shortcuts"]["pushToTalk"], "Alt+F9", "the settings keep the new key: {saved}");
    let deadline = Instant::now() + ARRIVES;
    loop {
        let bound = portal.bound();
        let rebound =
            bound.len() == 1 && bound[0].iter().any(|shortcut| shortcut.preferred_trigger.as_deref() == Some("ALT+F9"));
        if rebound && portal.closed_sessions() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the old session should close and a new one bind ALT+F9: {bound:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With the app in push-to-talk and its microphone singing 880 Hz: a listener hears nothing
/// before `press`, hears the tone while held, and nothing after `release`.
fn hold_push_to_talk(rig: &Rig, what: &str, press: impl Fn(), release: impl Fn()) {
    let started = Instant::now();
    let _mouth = Mouth::sing(&rig.pulse, APP_MIC, MIC_HZ.into(), TONE_DBFS.into(), 300.0);
    let listener = Peer::join(&rig.server, ROOM, "ear", rig.dir.path(), &["--record"], 120.0);
    let recording = listener.recording.clone().expect("a recording path");
    listener.wait_for_event("should subscribe to the app's track", APPEARS, |event| {
        event["event"] == "track_subscribed" && event["identity"] == APP_IDENTITY
    });
    wait_for_tile(&rig.session, "ear", APPEARS, "the app should list ear", |view| view.is_some());
    std::thread::sleep(Duration::from_secs(3));

    let pressed = now_ms();
    press();
    let you = wait_for_tile(
        &rig.session,
        "You",
        ARRIVES,
        "our own tile should show us talking while the key is held",
        |view| view.is_some_and(|view| view.speaking),
    );
    std::thread::sleep(Duration::from_secs(4));
    rig.screenshot("held");
    let released = now_ms();
    release();
    wait_for_tile(&rig.session, "You", ARRIVES, "our own tile should stop showing us talking on release", |view| {
        view.is_some_and(|view| !view.speaking)
    });
    std::thread::sleep(Duration::from_secs(4));
    let ended = listener.leave(ENDS);
    ended.assert_clean();

    let (samples, start_ms) = ended.recording(&recording);
    let before = read_tone(between(&samples, start_ms, pressed - 2500.0, pressed - 500.0), MIC_HZ);
    let held = read_tone(between(&samples, start_ms, pressed + 1000.0, released), MIC_HZ);
    let after = read_tone(between(&samples, start_ms, released + 1500.0, released + 3500.0), MIC_HZ);
    eprintln!(
        "{what}: {MIC_HZ} Hz at the listener: {:.1} dBFS before, {:.1} dBFS held ({:.1} Hz, {:.3} of the energy), \
         {:.1} dBFS after; our tile while held: {:?}",
        before.level_dbfs,
        held.level_dbfs,
        held.frequency_hz,
        held.share,
        after.level_dbfs,
        you.map(|view| view.label)
    );
    assert!(
        held.level_dbfs >= -30.0,
        "while the key is held ear should hear the microphone, got {:.1} dBFS",
        held.level_dbfs
    );
    assert!((held.frequency_hz - MIC_HZ).abs() <= 5.0, "…as its 880 Hz, got {:.1} Hz", held.frequency_hz);
    assert!(before.level_dbfs <= -60.0, "before the key ear should hear nothing, got {:.1} dBFS", before.level_dbfs);
    assert!(after.level_dbfs <= -60.0, "after the key ear should hear nothing, got {:.1} dBFS", after.level_dbfs);
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
}

/// `xdotool keydown|keyup ctrl+shift+p` on the test's display.
fn xdotool(rig: &Rig, action: &str) {
    let status = Command::new("xdotool")
        .args([action, PTT_KEYS])
        .envs(rig.display.env())
        .status()
        .expect("running xdotool (Debian package xdotool; run `cargo xtask setup`)");
    assert!(status.success(), "xdotool {action} {PTT_KEYS} should succeed ({status})");
}

#[test]
fn the_tray_menus_mute_item_mutes_the_apps_track_for_the_peer() {
    let started = Instant::now();
    let rig = Rig::start("tray-mute", &AppSetup::default());
    let bot = Peer::join(&rig.server, ROOM, PEER, rig.dir.path(), &[], 120.0);
    bot.wait_for_event("should subscribe to the app's track", APPEARS, |event| {
        event["event"] == "track_subscribed" && event["identity"] == APP_IDENTITY
    });
    let bus = rig.keyring.bus_address();
    let menu = tray::find_menu(bus, APPEARS);
    assert_eq!(menu.item("Mute").map(|(_, state)| state), Some(Some(0)), "Mute starts unchecked: {menu:?}");

    menu.click(bus, "Mute");
    bot.wait_for_event("should see the app's track muted", ARRIVES, |event| {
        event["event"] == "track_muted" && event["identity"] == APP_IDENTITY
    });
    wait_for_tile(&rig.session, "You", ARRIVES, "our own tile should show us muted", |view| {
        view.is_some_and(|view| view.muted_mark)
    });
    let deadline = Instant::now() + ARRIVES;
    let checked = loop {
        let menu = menu.refresh(bus);
        if menu.item("Mute").and_then(|(_, state)| state) == Some(1) || Instant::now() > deadline {
            break menu;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(checked.item("Mute").map(|(_, state)| state), Some(Some(1)), "Mute shows checked: {checked:?}");
    let shot = rig.screenshot("");
    eprintln!(
        "tray-mute: muted through {} {} in {:.1} s; {}",
        menu.owner,
        menu.path,
        started.elapsed().as_secs_f64(),
        shot.display()
    );
    bot.leave(ENDS).assert_clean();
}

#[test]
fn a_newcomer_adds_a_self_hosted_server_picks_its_room_and_hears_the_peer() {
    let started = Instant::now();
    let rig = Rig::launch("first-run", &AppSetup { first_run: true, ..AppSetup::default() });
    let ear = Ear::on(&rig.pulse, APP_SPEAKER);
    // The peer is in the room first, so the server lists it.
    let bot = Peer::join(&rig.server, ROOM, PEER, rig.dir.path(), &["--tone", "440"], 120.0);
    bot.wait_for_event("should join", APPEARS, |event| event["event"] == "joined");

    let welcome = rig
        .session
        .wait_for("return document.querySelector('#add-server-title')?.textContent ?? null;", Vec::new(), APPEARS)
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    assert_eq!(welcome, "Welcome to Parley", "a first run should open on the add-server form");
    rig.screenshot("welcome");
    // Saving with nothing filled names what is missing instead of failing somewhere later.
    click(&rig, "form button[type=submit]");
    let problems = rig
        .session
        .wait_for(
            "const errors = Array.from(document.querySelectorAll('form .error')).map((e) => e.textContent.trim()); \
             return errors.length > 0 ? errors : null;",
            Vec::new(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    assert!(problems.is_array(), "an empty form should show what is missing, shows {problems}");

    let secret = rig.server.api_secret().to_string();
    for (field, text) in [
        ("#server-name", "local"),
        ("#field-url", &rig.server.url()),
        ("#field-api_key", rig.server.api_key()),
        ("#field-identity", APP_IDENTITY),
        ("#secret-api-secret", &secret),
    ] {
        let element = rig.session.find(field).unwrap_or_else(|error| panic!("the form should have {field}: {error}"));
        rig.session.send_keys(&element, text).unwrap_or_else(|error| panic!("typing into {field}: {error}"));
    }
    rig.screenshot("filled");
    click(&rig, "form button[type=submit]");

    // The server is saved and its rooms are listed: join the one the peer is in.
    let join = rig
        .session
        .wait_for(
            "return document.querySelector(`.rooms button.join[aria-label='Join ${arguments[0]}']`);",
            vec![serde_json::json!(ROOM)],
            APPEARS,
        )
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    let join = rig.session.element_from(&join).unwrap_or_else(|_| {
        panic!("the new server's room list should offer {ROOM}; the app's log ends with:\n{}", rig.driver.log_tail(40))
    });
    let count = rig
        .session
        .execute(
            "return document.querySelector(`.rooms button.join[aria-label='Join ${arguments[0]}']`)\
             .closest('li').querySelector('.count')?.getAttribute('aria-label') ?? null;",
            vec![serde_json::json!(ROOM)],
        )
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    assert_eq!(count, "1 person in the room", "the list should count bot in {ROOM}");
    rig.screenshot("rooms");
    rig.session.click(&join).unwrap_or_else(|error| panic!("clicking Join: {error}"));
    rig.wait_connected();
    wait_for_tile(&rig.session, PEER, APPEARS, "the app should list bot speaking", |view| {
        view.is_some_and(|view| view.speaking)
    });
    ear.wait_for_tone(440.0, -30.0, ARRIVES, "the app's speaker");
    let tone = read_tone(&ear.listen(2.0), 440.0);
    let shot = rig.screenshot("");
    eprintln!(
        "first-run: joined and heard {:.1} Hz at {:.1} dBFS after {:.1} s; {}",
        tone.frequency_hz,
        tone.level_dbfs,
        started.elapsed().as_secs_f64(),
        shot.display()
    );
    assert!((tone.frequency_hz - 440.0).abs() <= 5.0, "the speaker should play 440 Hz, got {:.1}", tone.frequency_hz);
    assert!((tone.level_dbfs - TONE_DBFS).abs() <= 6.0, "at −12 ± 6 dBFS, got {:.1}", tone.level_dbfs);

    // The secret went to the keyring, not into any file the app keeps.
    let profiles = rig.profiles_file();
    assert!(profiles.contains("[local]") || profiles.contains("local"), "the profile is saved:\n{profiles}");
    for entry in walk(&rig.dir.path().join("config")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap_or_default()).into_owned();
        assert!(!text.contains(&secret), "the API secret must not be written to {}", entry.display());
    }
    // The app's log says what the window asked for, in order, and never the secret it carried.
    let log = std::fs::read_to_string(rig.driver.log_path()).unwrap_or_default();
    let added = log.find("add_profile{profile=local backend=Livekit}");
    let joined = log.find(&format!("join_room{{profile=\"local\" room=\"{ROOM}\" switch_rooms=false}}"));
    assert!(
        added.is_some() && joined.is_some() && added < joined,
        "the log should name add_profile, then join_room with their arguments; it ends with:\n{}",
        rig.driver.log_tail(40)
    );
    assert!(!log.contains(&secret), "the API secret must not reach the app's log");
    bot.leave(ENDS).assert_clean();
}

/// Clicks the first element matching `css`.
fn click(rig: &Rig, css: &str) {
    let element = rig.session.find(css).unwrap_or_else(|error| panic!("the window should have {css}: {error}"));
    rig.session.click(&element).unwrap_or_else(|error| panic!("clicking {css}: {error}"));
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn a_forum_profile_signs_in_through_the_forum_with_a_pasted_key_and_joins_its_room() {
    use parley_contract_servers::audioroom::{self, NewRoom};
    let rig = Rig::launch("forum-sign-in", &AppSetup { first_run: true, ..AppSetup::default() });
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the forum");
    let keys = parley_contract_servers::LivekitKeys {
        url: rig.server.url(),
        api_key: rig.server.api_key().into(),
        api_secret: rig.server.api_secret().into(),
    };
    let (forum, handle) = runtime.block_on(audioroom::start(keys)).expect("the forum starts");
    let user = handle.add_user("alice", "Alice", false);
    let porch = handle.add_room(NewRoom::open("porch", "The Porch"));
    handle.set_approving_user(Some(user.id));
    handle.allow_auth_redirect("parley://auth_redirect");

    rig.session
        .wait_for("return document.querySelector('#server-name');", Vec::new(), APPEARS)
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    type_into(&rig, "#server-name", "forum");
    click(&rig, "#server-backend option[value=audioroom]");
    type_into(&rig, "#field-url", &forum.url());
    click_button(&rig, "Sign in with the forum");
    let page = rig
        .session
        .wait_for("return document.querySelector('.auth-url')?.textContent ?? null;", Vec::new(), ARRIVES)
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    let page = page.as_str().unwrap_or_else(|| panic!("the form should show the forum's page, shows {page}"));
    assert!(page.starts_with(&forum.url()) && page.contains("/user-api-key/new?"), "the approval page: {page}");
    rig.screenshot("approve");

    // The user approves in a browser; the forum sends it to parley://auth_redirect?payload=….
    let (status, location) = parley_devserver::browser::get(page);
    assert_eq!(status, 302, "the forum approves and redirects");
    let location = location.expect("a redirect");
    assert!(location.starts_with("parley://auth_redirect?payload="), "back to the app: {location}");
    type_into(&rig, "#auth-payload", &location);
    click_button(&rig, "Use pasted key");
    let signed_in = rig
        .session
        .wait_for("return document.querySelector('fieldset.auth .ok')?.textContent ?? null;", Vec::new(), ARRIVES)
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    assert!(signed_in.as_str().is_some_and(|text| text.contains("Signed in")), "signed in, shows {signed_in}");
    click(&rig, "form button[type=submit]");

    let join = rig
        .session
        .wait_for(
            "return document.querySelector(\".rooms button.join[aria-label='Join The Porch']\");",
            Vec::new(),
            APPEARS,
        )
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    let join = rig.session.element_from(&join).unwrap_or_else(|_| {
        panic!(
            "the forum's rooms should be listed with the new key; the app's log ends with:\n{}",
            rig.driver.log_tail(40)
        )
    });
    rig.session.click(&join).unwrap_or_else(|error| panic!("clicking Join: {error}"));
    rig.wait_connected();
    let shot = rig.screenshot("");
    let issued = handle.issued_keys();
    assert_eq!(issued.len(), 1, "the forum issued one key");
    assert!(handle.present(porch).contains(&user.id), "the forum counts alice present in The Porch");
    for entry in walk(&rig.dir.path().join("config")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap_or_default()).into_owned();
        assert!(!text.contains(&issued[0].key), "the user API key must not be written to {}", entry.display());
    }
    eprintln!("forum-sign-in: joined The Porch as alice; {}", shot.display());
    drop(forum);
}

/// Types `text` into the first element matching `css`, as key presses.
fn type_into(rig: &Rig, css: &str, text: &str) {
    let element = rig.session.find(css).unwrap_or_else(|error| panic!("the window should have {css}: {error}"));
    rig.session.send_keys(&element, text).unwrap_or_else(|error| panic!("typing into {css}: {error}"));
}

/// Clicks the button whose text is `text`.
fn click_button(rig: &Rig, text: &str) {
    let node = rig
        .session
        .execute(
            "return Array.from(document.querySelectorAll('button')).find((b) => b.textContent.trim() === arguments[0]) ?? null;",
            vec![serde_json::json!(text)],
        )
        .unwrap_or_else(|error| panic!("reading the window: {error}"));
    let button = rig.session.element_from(&node).unwrap_or_else(|_| panic!("the window should have a {text:?} button"));
    rig.session.click(&button).unwrap_or_else(|error| panic!("clicking {text:?}: {error}"));
}
