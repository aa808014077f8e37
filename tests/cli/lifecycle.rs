//! The other commands and the life of a session: `devserver`, `token`, and a server that goes away.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use parley_core::token::inspect;

use crate::support::{audio_lock, join, parley, scratch, server, wait};

#[test]
fn devserver_prints_its_details_serves_a_join_and_stops_on_ctrl_c() {
    let _serial = audio_lock();
    let mut devserver = parley().args(["devserver", "--json"]).stdout(Stdio::piped()).spawn().expect("spawn devserver");
    let stdout = devserver.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the details line");
    let details: serde_json::Value = serde_json::from_str(&line).expect("devserver --json prints JSON");
    let url = details["url"].as_str().expect("url");
    let key = details["api_key"].as_str().expect("api_key");
    let secret = details["api_secret"].as_str().expect("api_secret");
    assert!(url.starts_with("ws://127.0.0.1:"), "the server listens on loopback only: {url}");

    let joined = parley()
        .args(["join", "--url", url, "--room", "hello", "--identity", "probe", "--duration", "1"])
        .env("LIVEKIT_API_KEY", key)
        .env("LIVEKIT_API_SECRET", secret)
        .stdout(Stdio::null())
        .status()
        .expect("run join");
    assert!(joined.success(), "a client can join the dev server with the printed keys");

    let interrupted = Command::new("kill").args(["-INT", &devserver.id().to_string()]).status().expect("kill -INT");
    assert!(interrupted.success());
    let status = wait(&mut devserver, Duration::from_secs(15));
    assert!(status.success(), "Ctrl-C stops the dev server cleanly, got {status}");
    let port = url.rsplit(':').next().and_then(|port| port.parse::<u16>().ok()).expect("port");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens on {port} after Ctrl-C");
}

#[test]
fn token_command_mints_a_token_for_the_room_and_identity() {
    let output = parley()
        .args(["token", "--room", "lobby", "--identity", "alice", "--admin"])
        .env("LIVEKIT_API_KEY", "APIkey")
        .env("LIVEKIT_API_SECRET", "secret-secret-secret-secret-secret-secret")
        .output()
        .expect("run token");
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let jwt = String::from_utf8(output.stdout).expect("utf-8").trim().to_string();
    let summary = inspect(&jwt, Some("lobby")).expect("a valid token for lobby");
    assert_eq!(summary.identity, "alice");
    assert!(summary.admin, "--admin grants roomAdmin");

    let missing = parley()
        .args(["token", "--room", "lobby", "--identity", "alice"])
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .output()
        .expect("run token");
    assert_eq!(missing.status.code(), Some(1), "no credentials is an error");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("API key and secret are needed"));
}

#[test]
/// Regression: losing the server ended with exit code 6, which means "removed from the room".
fn a_client_whose_server_goes_away_reports_it_and_exits_as_unreachable() {
    let _serial = audio_lock();
    let mut server = server();
    let dir = scratch();
    let peer = join(&server, "doomed", "alice", dir.path(), &["--tone", "440"], 120.0);
    std::thread::sleep(Duration::from_secs(3));
    server.stop();
    let finished = peer.finish(Duration::from_secs(90));
    assert_eq!(
        finished.status.code(),
        Some(5),
        "losing the server is exit code 5 (unreachable); stderr: {}",
        finished.stderr
    );
    assert!(!finished.events_named("reconnecting").is_empty(), "the client tried to reconnect: {:?}", finished.events);
    let disconnected = finished.events_named("disconnected");
    assert_eq!(disconnected.len(), 1, "one disconnected event: {:?}", finished.events);
    assert_eq!(disconnected[0]["connection_lost"], true, "it says the connection was lost: {:?}", disconnected[0]);
    let lines: Vec<&str> = finished.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {:?}", finished.stderr);
    assert!(lines[0].contains("disconnected from the room: the connection to the server was lost"), "{}", lines[0]);
}

#[test]
fn crowd_puts_many_speakers_in_one_room_from_one_process() {
    let _serial = audio_lock();
    let server = server();
    let dir = scratch();
    let mut crowd = Command::new(parley_e2e::parley_binary())
        .args(["crowd", "--url", &server.url(), "--room", "stadium", "--count", "5", "--duration", "8"])
        .env("LIVEKIT_API_KEY", server.api_key())
        .env("LIVEKIT_API_SECRET", server.api_secret())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn crowd");
    std::thread::sleep(Duration::from_secs(3));
    let listener = join(&server, "stadium", "listener", dir.path(), &["--record"], 3.0).finish(Duration::from_secs(30));
    listener.assert_clean();
    assert!(wait(&mut crowd, Duration::from_secs(30)).success(), "the crowd leaves cleanly");
    let present = listener.events_named("joined")[0]["participants"].as_array().map_or(0, Vec::len);
    assert_eq!(present, 5, "the listener finds five speakers: {:?}", listener.events);
    let heard = listener.recording.as_deref().expect("recording");
    let tail = &heard[heard.len() / 2..];
    for index in 0..5 {
        let frequency = 200.0 + 37.0 * index as f32;
        let level = parley_audio::analysis::tone_level_dbfs(tail, parley_audio::SAMPLE_RATE, frequency);
        // Audible, well above silence (< −60): six real-time senders and a listener share two
        // cores here, so a level band as tight as the two-client tests' would measure the machine.
        assert!(
            level > -35.0 && level < -14.0,
            "speaker {index}'s {frequency} Hz (sent at −20 dBFS) is heard, got {level:.1}"
        );
    }
}
