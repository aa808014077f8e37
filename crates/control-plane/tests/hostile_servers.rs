//! Servers that misbehave on purpose, through the shared HTTP client (the token endpoint
//! adapter stands for every backend):
//! * redirects never carry credentials to another origin: a 302/307 to another host or port
//!   gets a clear error and the other side sees nothing; a redirect within the origin is
//!   followed without a `Referer`;
//! * an endless answer is cut off at 4 MiB with a clear error, not read into memory.
//!
//! The misbehaving side is a raw loopback server; the far side of a redirect is the token
//! endpoint's contract server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, PoisonError};

use parley_contract_servers::LivekitKeys;
use parley_contract_servers::token_endpoint::{self, Config};
use parley_control_plane::ControlPlane;
use parley_control_plane::Secret;
use parley_control_plane::adapter::token_endpoint::{RequestMethod, Secrets, Settings, TokenEndpointPlane};

const HEADER_VALUE: &str = "Bearer very-secret-app-token";

/// A server answering each request with `status` and `Location: <location(n)>` (n counts
/// requests from 0); keeps each request's head, lowercased.
struct Redirector {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Redirector {
    fn start(status: &'static str, location: impl Fn(&str, usize) -> String + Send + 'static) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (seen, own) = (Arc::clone(&heads), url.clone());
        std::thread::spawn(move || {
            for (count, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&lower);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                seen.lock().unwrap_or_else(PoisonError::into_inner).push(head);
                let answer = format!(
                    "HTTP/1.1 {status}\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    location(&own, count)
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Redirector { url, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn plane(base: &str, method: RequestMethod) -> TokenEndpointPlane {
    let settings = Settings {
        url_template: format!("{base}/api/livekit?room={{room}}&username={{identity}}"),
        method,
        body_template: (method == RequestMethod::Post).then(|| r#"{"room":"{room}","password":"hunter2"}"#.into()),
        header_name: Some("X-App-Token".into()),
        token_pointer: "/token".into(),
        url_pointer: "/url".into(),
        livekit_url: None,
        identity: "alice".into(),
        display_name: None,
    };
    TokenEndpointPlane::new(settings, Secrets { header_value: Some(Secret::new(HEADER_VALUE)) }).expect("plane")
}

async fn far_side() -> (parley_contract_servers::Running, token_endpoint::Handle) {
    let keys = LivekitKeys {
        url: "ws://127.0.0.1:9".into(),
        api_key: "devkey".into(),
        api_secret: "contract-test-secret-that-is-long-enough".into(),
    };
    token_endpoint::start(keys, Config::default()).await.expect("the far server")
}

#[tokio::test]
async fn a_redirect_to_another_port_is_refused_and_the_other_side_sees_nothing() {
    for (status, method) in [("302 Found", RequestMethod::Get), ("307 Temporary Redirect", RequestMethod::Post)] {
        let (far, handle) = far_side().await;
        let target = format!("{}/api/livekit?room=lounge&username=alice", far.url());
        let redirector = Redirector::start(status, move |_, _| target.clone());
        let error = plane(&redirector.url, method).join("lounge").await.expect_err("a cross-origin redirect fails");
        let message = error.to_string();
        assert!(message.contains("redirected to another site"), "{status}: the error says why: {message}");
        assert!(message.contains(&far.url()), "{status}: and names where to: {message}");
        assert!(!message.contains("very-secret"), "{status}: no secret in the error: {message}");
        assert!(
            handle.requests().is_empty(),
            "{status}: the other origin must receive nothing: {:?}",
            handle.requests()
        );
        assert_eq!(redirector.heads().len(), 1, "{status}: one request to the configured server");
    }
}

#[tokio::test]
async fn a_redirect_within_the_origin_is_followed_without_a_referer() {
    // The first answer sends the client to another path of the same server; the second ends.
    let redirector = Redirector::start("302 Found", |own, count| {
        if count == 0 { format!("{own}/moved?room=lounge") } else { format!("{own}/moved?again") }
    });
    let _ = plane(&redirector.url, RequestMethod::Get).join("lounge").await;
    let heads = redirector.heads();
    assert!(heads.len() >= 2, "the same-origin redirect is followed: {heads:?}");
    assert!(heads[1].starts_with("get /moved?room=lounge"), "{heads:?}");
    assert!(heads[1].contains("x-app-token: bearer very-secret-app-token"), "the origin keeps the header: {heads:?}");
    assert!(heads.iter().all(|head| !head.contains("referer:")), "no Referer on any request: {heads:?}");
}

/// A server answering every request with `200`, JSON, chunked, and then spaces forever (until
/// the client hangs up); counts the bytes it sent.
fn endless_server() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let sent = Arc::new(Mutex::new(0usize));
    let counter = Arc::clone(&sent);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                continue;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
            while stream.write_all(chunk.as_bytes()).is_ok() {
                *counter.lock().unwrap_or_else(PoisonError::into_inner) += 64 * 1024;
            }
        }
    });
    (url, sent)
}

#[tokio::test]
async fn an_endless_answer_is_cut_off_at_four_mebibytes() {
    let (url, sent) = endless_server();
    let started = std::time::Instant::now();
    let error = plane(&url, RequestMethod::Get).join("lounge").await.expect_err("no answer to use");
    let message = error.to_string();
    assert!(message.contains("more than 4 MiB"), "the error says why: {message}");
    assert!(!message.contains("username=alice"), "the URL's query stays out of the error: {message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "cut off, not read until the timeout");
    // Give the server a moment to notice the hang-up: it must not have streamed on and on.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let streamed = *sent.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(streamed < 64 * 1024 * 1024, "the client stopped reading early: {streamed} bytes sent");
}
