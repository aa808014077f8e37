//! What a browser does with a sign-in page in the tests: one plain `GET`, without following the
//! redirect, so the test sees where the server sends the user (a loopback listener, a
//! `parley://` link). HTTP/1.0 over a `TcpStream`: the servers are in-process, on loopback.

use std::io::{Read as _, Write as _};

/// `GET url` (an `http://` URL); returns the status and the `Location` header, if any.
///
/// Panics on anything but an answering `http://` server: this is test scaffolding.
pub fn get(url: &str) -> (u16, Option<String>) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(host, path)| (host, format!("/{path}")));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/html\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status line");
    let location = answer
        .lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("location")))
        .map(|(_, value)| value.trim().to_string());
    (status, location)
}
