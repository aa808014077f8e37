//! Bad input gives one clear line on stderr, a distinct non-zero exit, within 10 s, no panic.

use std::process::Stdio;
use std::time::{Duration, Instant};

use parley_core::token::{TokenRequest, mint};

use crate::support::{parley, server, wait};

struct Outcome {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    // The first test to run builds the binary: that is not parley's time to fail.
    let mut command = parley();
    let started = Instant::now();
    command.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn parley");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).map(|_| text).unwrap_or_default()
    });
    let status = wait(&mut child, Duration::from_secs(15));
    Outcome { code: status.code(), stderr: reader.join().expect("stderr thread"), elapsed: started.elapsed() }
}

fn assert_clear_error(outcome: &Outcome, code: i32, phrase: &str, case: &str) {
    assert!(outcome.elapsed < Duration::from_secs(10), "{case}: must fail within 10 s, took {:?}", outcome.elapsed);
    assert_eq!(outcome.code, Some(code), "{case}: exit code; stderr: {}", outcome.stderr);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{case}: exactly one line on stderr, got: {:?}", outcome.stderr);
    assert!(lines[0].starts_with("parley: error: "), "{case}: {:?}", lines[0]);
    assert!(lines[0].contains(phrase), "{case}: the error should say {phrase:?}: {:?}", lines[0]);
    assert!(!outcome.stderr.contains("panicked"), "{case}: panicked: {}", outcome.stderr);
    assert!(!outcome.stderr.contains("eyJ"), "{case}: a token leaked into the error: {}", outcome.stderr);
}

fn token(key: &str, secret: &str, room: &str) -> String {
    let request = TokenRequest {
        room: room.into(),
        identity: "mallory".into(),
        name: None,
        admin: false,
        ttl: Duration::from_secs(600),
    };
    mint(key, secret, &request).expect("mint")
}

#[test]
fn garbage_token_is_refused_before_connecting() {
    let outcome = run(&["join", "--url", "ws://127.0.0.1:9"], &[("LIVEKIT_TOKEN", "not-a-token")]);
    assert_clear_error(&outcome, 4, "not a LiveKit access token", "garbage token");
}

#[test]
fn secrets_typed_as_arguments_are_warned_about() {
    let outcome = run(&["join", "--url", "ws://127.0.0.1:9", "--token", "not-a-token", "--e2ee-key", "pass"], &[]);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(outcome.code, Some(4), "the join still fails as before: {}", outcome.stderr);
    assert_eq!(lines.len(), 3, "two warnings, then the error: {:?}", outcome.stderr);
    for (line, flag, variable) in [(lines[0], "--token", "LIVEKIT_TOKEN"), (lines[1], "--e2ee-key", "PARLEY_E2EE_KEY")]
    {
        assert!(line.starts_with("parley: warning: "), "{line:?}");
        assert!(line.contains(flag) && line.contains(variable), "names the flag and the variable: {line:?}");
        assert!(line.contains("visible to other users"), "says why: {line:?}");
        assert!(!line.contains("not-a-token") && !line.contains("pass "), "never the value: {line:?}");
    }
    assert!(lines[2].starts_with("parley: error: "), "{:?}", lines[2]);
    // From the environment: no warning.
    let quiet = run(&["join", "--url", "ws://127.0.0.1:9"], &[("LIVEKIT_TOKEN", "x"), ("PARLEY_E2EE_KEY", "pass")]);
    assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
}

#[test]
fn token_for_another_room_is_refused_naming_both_rooms() {
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "elsewhere");
    let outcome = run(&["join", "--url", "ws://127.0.0.1:9", "--room", "lobby"], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 4, "is for room \"elsewhere\", not \"lobby\"", "token for another room");
}

#[test]
fn token_signed_with_the_wrong_secret_is_refused_by_the_server() {
    let server = server();
    let jwt = token(server.api_key(), "not-the-secret-not-the-secret-not-the-secret", "lobby");
    let outcome = run(&["join", "--url", &server.url(), "--room", "lobby"], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 4, "the server refused the access token", "wrong API secret");
}

#[test]
fn unknown_api_key_is_refused_by_the_server() {
    let server = server();
    let jwt = token("APIunknown", server.api_secret(), "lobby");
    let outcome = run(&["join", "--url", &server.url()], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 4, "the server refused the access token", "unknown API key");
}

#[test]
fn malformed_url_is_refused() {
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    let outcome = run(&["join", "--url", "localhost:7880"], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 5, "invalid LiveKit URL", "malformed URL");
}

#[test]
fn server_not_running_is_reported_as_unreachable() {
    let port = parley_devserver::free_tcp_port().expect("free port");
    let url = format!("ws://127.0.0.1:{port}");
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    let outcome = run(&["join", "--url", &url], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 5, "cannot reach the LiveKit server", "server not running");
}

#[test]
fn an_unencrypted_url_to_another_machine_needs_insecure() {
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    // 192.0.2.10 (TEST-NET-1) stands for another machine; the refusal comes before any packet.
    let outcome = run(&["join", "--url", "ws://192.0.2.10:7880"], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 20, "ws://192.0.2.10:7880 is unencrypted", "cleartext to another machine");
    assert!(outcome.stderr.contains("--insecure"), "says how to accept the risk: {}", outcome.stderr);
    assert!(outcome.elapsed < Duration::from_secs(5), "refused before connecting: {:?}", outcome.elapsed);
}

#[test]
fn an_untrusted_certificate_is_reported_as_not_trusted() {
    let tls = parley_contract_servers::untrusted_tls::UntrustedTls::start();
    let url = format!("wss://{}", tls.address());
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    let outcome = run(&["join", "--url", &url], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 5, "certificate is not trusted", "self-signed LiveKit server");
}

#[test]
fn wrong_ffi_library_path_names_the_path_and_the_fix() {
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    let outcome = run(
        &["join", "--url", "ws://127.0.0.1:9", "--ffi-lib", "/nonexistent/liblivekit_ffi.so"],
        &[("LIVEKIT_TOKEN", &jwt)],
    );
    assert_clear_error(&outcome, 3, "/nonexistent/liblivekit_ffi.so: not found", "wrong FFI path");
    assert!(outcome.stderr.contains("cargo xtask setup"), "the error says how to fix it: {}", outcome.stderr);
}

#[test]
fn missing_wav_file_names_the_file() {
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    let outcome =
        run(&["join", "--url", "ws://127.0.0.1:9", "--play", "/nonexistent/voice.wav"], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 7, "/nonexistent/voice.wav", "missing WAV");
}

#[test]
fn expired_token_is_refused() {
    let request = TokenRequest {
        room: "lobby".into(),
        identity: "late".into(),
        name: None,
        admin: false,
        ttl: Duration::from_secs(0),
    };
    let jwt = mint("APIkey", "secret-secret-secret-secret-secret-secret", &request).expect("mint");
    std::thread::sleep(Duration::from_millis(1100));
    let outcome = run(&["join", "--url", "ws://127.0.0.1:9"], &[("LIVEKIT_TOKEN", &jwt)]);
    assert_clear_error(&outcome, 4, "expired", "expired token");
}

#[test]
fn library_path_from_the_environment_is_named_when_wrong() {
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    let outcome = run(
        &["join", "--url", "ws://127.0.0.1:9"],
        &[("LIVEKIT_TOKEN", &jwt), ("LIVEKIT_LIB_PATH", "/nowhere/liblivekit_ffi.so")],
    );
    assert_clear_error(&outcome, 3, "/nowhere/liblivekit_ffi.so: not found", "LIVEKIT_LIB_PATH wrong");
}

#[test]
fn a_missing_library_lists_every_place_searched() {
    let jwt = token("APIkey", "secret-secret-secret-secret-secret-secret", "lobby");
    let outcome =
        run(&["join", "--url", "ws://127.0.0.1:9"], &[("LIVEKIT_TOKEN", &jwt), ("PARLEY_DEPS_DIR", "/nowhere/deps")]);
    assert_clear_error(&outcome, 3, "/nowhere/deps/livekit-ffi/", "no library installed");
    let exe_dir = parley_e2e::parley_binary().parent().expect("exe dir").display().to_string();
    assert!(outcome.stderr.contains(&exe_dir), "the directory beside the executable is listed: {}", outcome.stderr);
    assert!(
        outcome.stderr.contains("LIVEKIT_LIB_PATH"),
        "the error says how to point at a library: {}",
        outcome.stderr
    );
}
