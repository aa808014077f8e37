//! A small blocking W3C WebDriver client: the few calls the desktop app's tests and
//! `cargo xtask app --smoke` make through tauri-driver (new session, execute script, find, click,
//! pointer actions, screenshot, end session).
//!
//! Plain HTTP/1.1 over `std::net::TcpStream` to a loopback port, one connection per request:
//! the remote end is always on this machine, requests are seconds apart,
//! and the only body format is JSON. An HTTP client crate (ureq, reqwest) would add TLS and
//! connection pooling that loopback does not need, and a dependency tree to every build of this
//! crate. Blocking on purpose: the tests drive a real window step by step, with no runtime.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one request may take: starting a session launches the app.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The W3C key of an element reference in JSON answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

#[derive(Debug, thiserror::Error)]
pub enum WebDriverError {
    #[error("cannot reach the WebDriver server on 127.0.0.1:{port}: {error}")]
    Connect { port: u16, error: std::io::Error },
    #[error("WebDriver {method} {path}: {error}")]
    Io { method: String, path: String, error: std::io::Error },
    #[error("WebDriver answered {method} {path} with something that is not JSON: {body}")]
    NotJson { method: String, path: String, body: String },
    #[error("WebDriver {method} {path} failed ({error}): {message}")]
    Command { method: String, path: String, error: String, message: String },
    #[error("the WebDriver server did not answer on port {port} within {seconds} s")]
    NotReady { port: u16, seconds: u64 },
    #[error("WebDriver answered without {0}")]
    Missing(&'static str),
    #[error("the screenshot is not base64")]
    Base64,
    #[error("cannot write {path}: {error}")]
    File { path: String, error: std::io::Error },
}

/// A WebDriver remote end (tauri-driver) on a loopback port.
#[derive(Debug, Clone)]
pub struct WebDriver {
    port: u16,
}

impl WebDriver {
    pub fn new(port: u16) -> WebDriver {
        WebDriver { port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits until `GET /status` answers.
    ///
    /// Errors: [`WebDriverError::NotReady`] after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), WebDriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.get("/status").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(WebDriverError::NotReady { port: self.port, seconds: timeout.as_secs() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens a session with `always_match` capabilities (for tauri-driver:
    /// `{"tauri:options": {"application": <binary>, "args": [...]}}`), which starts the app.
    ///
    /// Errors: the remote end's refusal (the app failed to start), or transport errors.
    pub fn new_session(&self, always_match: Value) -> Result<Session, WebDriverError> {
        let answer = self.post("/session", &json!({ "capabilities": { "alwaysMatch": always_match } }))?;
        let id = answer["value"]["sessionId"].as_str().ok_or(WebDriverError::Missing("a session id"))?;
        Ok(Session { driver: self.clone(), id: id.to_string(), ended: false })
    }

    pub fn get(&self, path: &str) -> Result<Value, WebDriverError> {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, WebDriverError> {
        self.request("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value, WebDriverError> {
        self.request("DELETE", path, None)
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, WebDriverError> {
        let io = |error| WebDriverError::Io { method: method.into(), path: path.into(), error };
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|error| WebDriverError::Connect { port: self.port, error })?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        // No `Connection: close`: tauri-driver forwards our headers to WebKitWebDriver, which then
        // closes its side after answering while tauri-driver's connection pool reuses that
        // connection for the next request — which fails with "connection reset" (seen on about
        // one session in four). So the answer is read by its length, not to the end of stream.
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream.write_all(request.as_bytes()).map_err(io)?;
        let (head, payload) = read_response(&mut stream).map_err(io)?;
        let status_ok = head.split_whitespace().nth(1).is_some_and(|code| code.starts_with('2'));
        let value: Value = serde_json::from_str(payload.trim()).map_err(|_| WebDriverError::NotJson {
            method: method.into(),
            path: path.into(),
            body: format!("{} {}", head.lines().next().unwrap_or(""), payload.chars().take(300).collect::<String>()),
        })?;
        if !status_ok {
            return Err(WebDriverError::Command {
                method: method.into(),
                path: path.into(),
                error: value["value"]["error"].as_str().unwrap_or("unknown error").into(),
                message: value["value"]["message"].as_str().unwrap_or(&payload).chars().take(500).collect(),
            });
        }
        Ok(value)
    }
}

/// Reads one HTTP/1.1 response: the head, then a body of `Content-Length` bytes, a chunked body,
/// or (neither) everything until the server closes.
fn read_response(stream: &mut impl std::io::Read) -> std::io::Result<(String, String)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
            let lower = head.to_ascii_lowercase();
            let length = lower
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            let chunked = lower.contains("transfer-encoding: chunked");
            let body = &bytes[end + 4..];
            let complete = match length {
                Some(length) => body.len() >= length,
                None if chunked => find(body, b"0\r\n\r\n").is_some(),
                None => false,
            };
            if complete {
                let body = String::from_utf8_lossy(length.map_or(body, |length| &body[..length]));
                let body = if chunked { dechunk(&body) } else { body.into_owned() };
                return Ok((head, body));
            }
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            let text = String::from_utf8_lossy(&bytes);
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            return Ok((head.to_string(), body.to_string()));
        }
        bytes.extend_from_slice(&chunk[..read]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// An element reference from a find call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(pub String);

impl Element {
    /// The element as a script argument (`arguments[i]` is the DOM node).
    pub fn as_argument(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// One WebDriver session: the app's window. Ended (the app stopped) on drop.
pub struct Session {
    driver: WebDriver,
    id: String,
    ended: bool,
}

impl Session {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.id)
    }

    /// The handles of the app's open windows (WebKitWebDriver: one per webview window).
    pub fn window_handles(&self) -> Result<Vec<String>, WebDriverError> {
        let answer = self.driver.get(&self.path("/window/handles"))?;
        let handles = answer["value"].as_array().ok_or(WebDriverError::Missing("window handles"))?;
        Ok(handles.iter().filter_map(|handle| handle.as_str().map(str::to_string)).collect())
    }

    /// The window that commands act on now.
    pub fn window_handle(&self) -> Result<String, WebDriverError> {
        let answer = self.driver.get(&self.path("/window"))?;
        answer["value"].as_str().map(str::to_string).ok_or(WebDriverError::Missing("a window handle"))
    }

    /// Makes `handle`'s window the one commands act on.
    pub fn switch_to_window(&self, handle: &str) -> Result<(), WebDriverError> {
        self.driver.post(&self.path("/window"), &json!({ "handle": handle }))?;
        Ok(())
    }

    /// Closes the current window (as its close button does); commands then need a switch.
    pub fn close_window(&self) -> Result<(), WebDriverError> {
        self.driver.delete(&self.path("/window"))?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, WebDriverError> {
        let answer = self.driver.post(&self.path("/execute/sync"), &json!({ "script": script, "args": args }))?;
        Ok(answer["value"].clone())
    }

    /// Polls `script` until it returns something other than `null`/`false`, or `timeout` passes
    /// (then returns the last value, for the caller's assertion message).
    pub fn wait_for(&self, script: &str, args: Vec<Value>, timeout: Duration) -> Result<Value, WebDriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.execute(script, args.clone())?;
            let done = !(value.is_null() || value == Value::Bool(false));
            if done || Instant::now() > deadline {
                return Ok(value);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The first element matching a CSS selector.
    ///
    /// Errors: [`WebDriverError::Command`] (`no such element`) when none matches.
    pub fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        let answer = self.driver.post(&self.path("/element"), &json!({ "using": "css selector", "value": css }))?;
        element_of(&answer["value"])
    }

    /// Turns a DOM node a script returned into an element reference.
    pub fn element_from(&self, value: &Value) -> Result<Element, WebDriverError> {
        element_of(value)
    }

    /// Clicks an element (scrolled into view by the remote end).
    pub fn click(&self, element: &Element) -> Result<(), WebDriverError> {
        self.driver.post(&self.path(&format!("/element/{}/click", element.0)), &json!({}))?;
        Ok(())
    }

    /// Types `text` into `element` as key presses (W3C "Element Send Keys"): the page sees
    /// focus, `keydown`/`input`/`keyup` for each character, as from a keyboard.
    pub fn send_keys(&self, element: &Element, text: &str) -> Result<(), WebDriverError> {
        self.driver.post(&self.path(&format!("/element/{}/value", element.0)), &json!({ "text": text }))?;
        Ok(())
    }

    /// Moves the pointer to the centre of `element` and clicks `button` (0 left, 2 right) there,
    /// through the Actions API: real pointer events, as a user's mouse.
    pub fn pointer_click(&self, element: &Element, button: u32) -> Result<(), WebDriverError> {
        let actions = json!({ "actions": [{
            "type": "pointer",
            "id": "mouse",
            "parameters": { "pointerType": "mouse" },
            "actions": [
                { "type": "pointerMove", "duration": 0, "origin": element.as_argument(), "x": 0, "y": 0 },
                { "type": "pointerDown", "button": button },
                { "type": "pointerUp", "button": button },
            ],
        }]});
        self.driver.post(&self.path("/actions"), &actions)?;
        self.driver.delete(&self.path("/actions"))?;
        Ok(())
    }

    pub fn title(&self) -> Result<String, WebDriverError> {
        Ok(self.driver.get(&self.path("/title"))?["value"].as_str().unwrap_or_default().to_string())
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        let answer = self.driver.get(&self.path("/screenshot"))?;
        decode_base64(answer["value"].as_str().ok_or(WebDriverError::Missing("a screenshot"))?)
    }

    /// Saves a screenshot to `path` (its directory is created); returns its size in bytes.
    pub fn save_screenshot(&self, path: &Path) -> Result<usize, WebDriverError> {
        let png = self.screenshot()?;
        let file_error = |error| WebDriverError::File { path: path.display().to_string(), error };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(file_error)?;
        }
        std::fs::write(path, &png).map_err(file_error)?;
        Ok(png.len())
    }

    /// Ends the session; tauri-driver stops the app.
    pub fn end(mut self) -> Result<(), WebDriverError> {
        self.ended = true;
        self.driver.delete(&self.path("")).map(|_| ())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.ended
            && let Err(error) = self.driver.delete(&self.path(""))
        {
            tracing::warn!(%error, "ending the WebDriver session failed");
        }
    }
}

fn element_of(value: &Value) -> Result<Element, WebDriverError> {
    value[ELEMENT_KEY].as_str().map(|id| Element(id.to_string())).ok_or(WebDriverError::Missing("an element"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn decode_base64(text: &str) -> Result<Vec<u8>, WebDriverError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes().filter(|byte| !byte.is_ascii_whitespace() && *byte != b'=') {
        let value = ALPHABET.iter().position(|candidate| *candidate == byte).ok_or(WebDriverError::Base64)?;
        buffer = (buffer << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{dechunk, decode_base64, read_response};

    #[test]
    fn base64_and_chunked_bodies_decode() {
        assert_eq!(decode_base64("UGFybGV5").expect("valid base64"), b"Parley", "no padding");
        assert_eq!(decode_base64("UGFybA==").expect("valid base64"), b"Parl", "with padding");
        assert!(decode_base64("U*").is_err(), "a character outside the alphabet is refused");
        assert_eq!(dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), "{\"a\":1}", "chunks are joined");
    }

    #[test]
    fn a_response_ends_at_its_length_without_the_connection_closing() {
        let mut answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}and the next answer";
        let (head, body) = read_response(&mut answer).expect("a response");
        assert_eq!((head.as_str(), body.as_str()), ("HTTP/1.1 200 OK\r\nContent-Length: 7", "{\"a\":1}"));
        let mut chunked: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(read_response(&mut chunked).expect("a response").1, "{}", "a chunked body is joined");
    }
}
