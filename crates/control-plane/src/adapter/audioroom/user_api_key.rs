//! Getting a Discourse User API Key for Parley (CONTROL_PLANES.md §1.6).
//!
//! 1. [`KeyRequest::new`] generates an RSA-2048 key pair and a nonce for a stable client id
//!    ([`new_client_id`], stored in the profile so that re-authorizing replaces the old key).
//! 2. [`KeyRequest::authorize_url`] is the `/user-api-key/new` page to open in the user's browser
//!    (`application_name=Parley`, `scopes=write` — the only scope that covers POST/DELETE and
//!    MessageBus polls).
//! 3. The forum answers with an RSA-encrypted (PKCS#1 v1.5) Base64 `payload`, either by
//!    redirecting the browser to `auth_redirect?payload=…` — caught by a [`LoopbackListener`] on
//!    `http://127.0.0.1:<port>/auth_redirect`, or by the app's `parley://auth_redirect` handler —
//!    or, without `auth_redirect`, on a page for the user to copy.
//! 4. [`KeyRequest::decode_payload`] decrypts it, checks the nonce and returns the key.
//!
//! The forum only redirects to URLs its admin listed in `allowed_user_api_auth_redirects`
//! (wildcards allowed), so a loopback redirect needs a fixed port the admin can allow, e.g.
//! `http://127.0.0.1:47615/auth_redirect`; the copy/paste flow needs nothing.
//!
//! ```no_run
//! # async fn run() -> Result<(), parley_control_plane::PlaneError> {
//! use parley_control_plane::adapter::audioroom::user_api_key::{KeyRequest, LoopbackListener, new_client_id};
//! let listener = LoopbackListener::bind(47615).await?;
//! let redirect = listener.redirect_url().to_string();
//! let client_id = new_client_id(); // store it in the profile
//! let request = tokio::task::spawn_blocking(move || KeyRequest::new(&client_id, Some(&redirect)))
//!     .await
//!     .expect("key generation does not panic")?;
//! println!("open {}", request.authorize_url("https://forum.example.org")?);
//! let key = request.receive(listener, std::time::Duration::from_secs(300)).await?;
//! # drop(key); Ok(()) }
//! ```

use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use reqwest::Method;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::rand_core::{OsRng, RngCore};
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::http::Http;
use crate::{PlaneError, Secret};

/// What the forum shows the user on the approval page.
pub const APPLICATION_NAME: &str = "Parley";
/// `write` covers every method on every route, MessageBus included (`read` is GET only).
pub const SCOPES: &str = "write";
/// The User API version whose payload format this module decodes.
pub const AUTH_API_VERSION: u32 = 4;
/// The path a loopback redirect arrives on.
pub const REDIRECT_PATH: &str = "/auth_redirect";
/// The redirect for the desktop app's URL scheme.
pub const APP_REDIRECT: &str = "parley://auth_redirect";
const RSA_BITS: usize = 2048;
/// The longest request head the loopback listener reads (a payload is ~350 bytes URL-encoded).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long one browser connection may take to send its request.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh client id: 32 hex digits. Generate once per profile and keep it: Discourse replaces
/// a user's older key for the same client id when a new one is approved.
pub fn new_client_id() -> String {
    random_hex(16)
}

/// `bytes` random bytes from the OS, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One authorization attempt: the key pair and nonce the forum's answer must match.
pub struct KeyRequest {
    private_key: RsaPrivateKey,
    public_key_pem: String,
    nonce: String,
    client_id: String,
    auth_redirect: Option<String>,
}

impl std::fmt::Debug for KeyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRequest")
            .field("private_key", &"[redacted]")
            .field("nonce", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("auth_redirect", &self.auth_redirect)
            .finish()
    }
}

#[derive(Deserialize)]
struct Payload {
    key: String,
    nonce: String,
    #[serde(default)]
    api: Option<u32>,
}

impl KeyRequest {
    /// Generates the key pair and nonce. `auth_redirect`: where the forum sends the browser
    /// ([`LoopbackListener::redirect_url`], [`APP_REDIRECT`]), or `None` to have the forum show
    /// the payload for copy and paste.
    ///
    /// CPU-bound for up to a second (RSA key generation): call it from `spawn_blocking` or a
    /// plain thread, not directly on a tokio worker.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for an empty client id or a redirect that is not a URL.
    pub fn new(client_id: &str, auth_redirect: Option<&str>) -> Result<Self, PlaneError> {
        let client_id = client_id.trim();
        if client_id.is_empty() {
            return Err(invalid("the client id is empty"));
        }
        let auth_redirect = auth_redirect.map(str::trim).filter(|redirect| !redirect.is_empty());
        if let Some(redirect) = auth_redirect {
            Url::parse(redirect)
                .map_err(|error| invalid(&format!("the auth redirect {redirect:?} is not a URL ({error})")))?;
        }
        let private_key = RsaPrivateKey::new(&mut OsRng, RSA_BITS)
            .map_err(|error| invalid(&format!("cannot generate an RSA key pair: {error}")))?;
        let public_key_pem = RsaPublicKey::from(&private_key)
            .to_public_key_pem(LineEnding::LF)
            .map_err(|error| invalid(&format!("cannot encode the RSA public key: {error}")))?;
        Ok(KeyRequest {
            private_key,
            public_key_pem,
            nonce: random_hex(16),
            client_id: client_id.to_string(),
            auth_redirect: auth_redirect.map(str::to_string),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The PEM (SubjectPublicKeyInfo) the forum encrypts the payload with.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The approval page: `{forum}/user-api-key/new?application_name=Parley&client_id=…&scopes=write
    /// &public_key=…&nonce=…[&auth_redirect=…]`.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a forum URL that is not http(s).
    pub fn authorize_url(&self, forum_url: &str) -> Result<Url, PlaneError> {
        let mut url = forum_endpoint(forum_url)?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("application_name", APPLICATION_NAME)
                .append_pair("client_id", &self.client_id)
                .append_pair("scopes", SCOPES)
                .append_pair("public_key", &self.public_key_pem)
                .append_pair("nonce", &self.nonce);
            if let Some(redirect) = &self.auth_redirect {
                query.append_pair("auth_redirect", redirect);
            }
        }
        Ok(url)
    }

    /// Decrypts the forum's answer and returns the key. Accepts the bare Base64 payload (line
    /// breaks and spaces allowed, as Ruby's `Base64.encode64` and copy/paste leave them), or the
    /// whole redirect URL / query containing `payload=…`.
    ///
    /// Errors: [`PlaneError::Malformed`] when the text is not Base64, was not encrypted for this
    /// request, is not Discourse's payload, or carries another request's nonce.
    pub fn decode_payload(&self, text: &str) -> Result<Secret, PlaneError> {
        let compact = normalize_payload(text);
        if compact.is_empty() {
            return Err(malformed("the authorization payload is empty; copy the whole text the forum shows"));
        }
        let engine = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let encrypted = engine.decode(compact.as_bytes()).map_err(|_| {
            malformed("the authorization payload is not valid Base64; copy the whole text the forum shows")
        })?;
        // PKCS#1 v1.5 is what Ruby's `public_encrypt` uses. Its padding oracle (and the rsa
        // crate's timing advisory) needs an attacker submitting many ciphertexts to us; this
        // key decrypts one payload, once, locally.
        let plain = self.private_key.decrypt(Pkcs1v15Encrypt, &encrypted).map_err(|_| {
            malformed(
                "the authorization payload was not encrypted for this request (it may be from an earlier attempt); \
                 start the authorization again",
            )
        })?;
        let payload: Payload = serde_json::from_slice(&plain)
            .map_err(|_| malformed("the decrypted authorization payload is not the JSON Discourse sends"))?;
        if payload.nonce != self.nonce {
            return Err(malformed(
                "the authorization answer belongs to another request (its nonce does not match); \
                 start the authorization again",
            ));
        }
        if let Some(api) = payload.api.filter(|api| *api < AUTH_API_VERSION) {
            tracing::warn!(api, "the forum speaks an older user API version than {AUTH_API_VERSION}");
        }
        let key = payload.key.trim();
        if key.is_empty() {
            return Err(malformed("the authorization payload carries no key"));
        }
        Ok(Secret::new(key))
    }

    /// Waits on `listener` for the forum's redirect (at most `timeout`) and decodes it. A
    /// payload that does not decode (any local program or web page can send one to the
    /// loopback port) is ignored and the wait goes on until the real one, or the time is up.
    ///
    /// Errors: as [`LoopbackListener::wait_for_payload`] — or, when payloads arrived but none
    /// decoded, the last one's [`KeyRequest::decode_payload`] error.
    pub async fn receive(&self, listener: LoopbackListener, timeout: Duration) -> Result<Secret, PlaneError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut refused = None;
        loop {
            let payload = match listener.next_payload(deadline).await {
                Ok(payload) => payload,
                Err(timed_out) => return Err(refused.unwrap_or(timed_out)),
            };
            match self.decode_payload(&payload) {
                Ok(key) => return Ok(key),
                Err(error) => {
                    tracing::warn!("an answer that does not decode reached the loopback listener (ignored): {error}");
                    refused = Some(error);
                }
            }
        }
    }
}

/// Asks the forum which User API version it speaks (`HEAD /user-api-key/new` →
/// `Auth-Api-Version`). A quick check that the URL is a Discourse forum that offers user keys.
///
/// Errors: [`PlaneError::NotConfigured`] when the header is missing; HTTP and transport errors.
pub async fn auth_api_version(forum_url: &str) -> Result<u32, PlaneError> {
    let url = forum_endpoint(forum_url)?;
    let http = Http::new()?;
    let response = http.send_plain(http.request(Method::HEAD, url.as_str())).await?;
    response
        .headers()
        .get("Auth-Api-Version")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| PlaneError::NotConfigured {
            message: format!(
                "{} does not offer Discourse user API keys (no Auth-Api-Version header)",
                crate::http::redact_url(&url)
            ),
        })
}

/// A one-shot HTTP listener on the loopback interface that catches the browser's redirect.
#[derive(Debug)]
pub struct LoopbackListener {
    listener: TcpListener,
    redirect_url: String,
}

impl LoopbackListener {
    /// Listens on `127.0.0.1:port` (`0`: any free port, usable only if the forum allows
    /// `http://127.0.0.1:*` redirects).
    ///
    /// Errors: [`PlaneError::InvalidInput`] when the port is taken or not allowed.
    pub async fn bind(port: u16) -> Result<Self, PlaneError> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|error| invalid(&format!("cannot listen on 127.0.0.1:{port} for the forum's answer: {error}")))?;
        let port =
            listener.local_addr().map_err(|error| invalid(&format!("cannot read the listening port: {error}")))?.port();
        Ok(LoopbackListener { listener, redirect_url: format!("http://127.0.0.1:{port}{REDIRECT_PATH}") })
    }

    /// `http://127.0.0.1:<port>/auth_redirect`, the `auth_redirect` to give [`KeyRequest::new`].
    pub fn redirect_url(&self) -> &str {
        &self.redirect_url
    }

    /// Answers browser requests until one brings `/auth_redirect?payload=…`, and returns that
    /// payload (still encrypted). Other paths (a browser's `/favicon.ico`) get a 404 and the
    /// wait goes on.
    ///
    /// Errors: [`PlaneError::InvalidInput`] when nothing arrives within `timeout` (the user did
    /// not approve, or the forum does not allow this redirect).
    pub async fn wait_for_payload(self, timeout: Duration) -> Result<String, PlaneError> {
        self.next_payload(tokio::time::Instant::now() + timeout).await
    }

    /// The next payload to arrive before `deadline`; see [`LoopbackListener::wait_for_payload`].
    async fn next_payload(&self, deadline: tokio::time::Instant) -> Result<String, PlaneError> {
        let wait = async {
            loop {
                let (stream, _) = match self.listener.accept().await {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::debug!("loopback accept failed: {error}");
                        continue;
                    }
                };
                match tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream)).await {
                    Ok(Ok(Some(payload))) => return payload,
                    Ok(Ok(None)) => {}
                    Ok(Err(error)) => tracing::debug!("loopback connection failed: {error}"),
                    Err(_) => tracing::debug!("loopback connection sent nothing in time"),
                }
            }
        };
        tokio::time::timeout_at(deadline, wait).await.map_err(|_| {
            invalid(&format!(
                "no authorization arrived at {} in time; approve Parley in the browser (the forum's admin \
                 must allow this address in allowed_user_api_auth_redirects), or use the copy-and-paste flow",
                self.redirect_url,
            ))
        })
    }
}

/// Serves one connection; `Some(payload)` when it was the redirect.
async fn answer(mut stream: TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.lines().next().and_then(|line| {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next()) {
            (Some("GET"), Some(target)) => Some(target.to_string()),
            _ => None,
        }
    });
    let (path, query) = match target.as_deref().map(|target| target.split_once('?').unwrap_or((target, ""))) {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (String::new(), String::new()),
    };
    let payload = (path == REDIRECT_PATH)
        .then(|| url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "payload"))
        .flatten()
        .map(|(_, value)| value.replace(' ', "+"));
    let (status, text) = match (&payload, path == REDIRECT_PATH) {
        (Some(_), _) => ("200 OK", "Parley is authorized. You can close this tab and go back to Parley."),
        (None, true) => ("400 Bad Request", "The forum's answer carried no payload. Start the authorization again."),
        (None, false) => ("404 Not Found", "Not found."),
    };
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Parley</title></head><body><p>{text}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(payload)
}

/// The Base64 text of a payload however it was pasted or received.
fn normalize_payload(text: &str) -> String {
    let text = text.trim();
    if let Some(start) = text.find("payload=") {
        // A redirect URL or query: form-decoded, where a `+` left unescaped reads as a space
        // (Base64 never contains spaces, so they can be turned back).
        let value = url::form_urlencoded::parse(&text.as_bytes()[start..])
            .find(|(name, _)| name == "payload")
            .map(|(_, value)| value.replace(' ', "+"))
            .unwrap_or_default();
        return value.split_whitespace().collect();
    }
    let compact: String = text.split_whitespace().collect();
    if compact.contains('%') {
        // Percent-encoded Base64 copied out of an address bar.
        let decoded: String = url::form_urlencoded::parse(format!("payload={compact}").as_bytes())
            .find(|(name, _)| name == "payload")
            .map(|(_, value)| value.replace(' ', "+"))
            .unwrap_or_default();
        return decoded.split_whitespace().collect();
    }
    compact
}

/// `{forum}/user-api-key/new`.
fn forum_endpoint(forum_url: &str) -> Result<Url, PlaneError> {
    let forum_url = forum_url.trim();
    let mut url = Url::parse(forum_url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
        .ok_or_else(|| invalid(&format!("the forum URL {forum_url:?} is not an http(s) URL")))?;
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| invalid("the forum URL cannot have a path"))?
        .pop_if_empty()
        .extend(["user-api-key", "new"]);
    Ok(url)
}

fn invalid(message: &str) -> PlaneError {
    PlaneError::InvalidInput { message: message.to_string() }
}

fn malformed(detail: &str) -> PlaneError {
    PlaneError::Malformed { detail: detail.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_found_however_they_were_pasted() {
        assert_eq!(normalize_payload("  YWJj\nZGVm\r\n  "), "YWJjZGVm");
        assert_eq!(normalize_payload("http://127.0.0.1:1/auth_redirect?payload=YS%2Bb%0AYw%3D%3D&x=1"), "YS+bYw==");
        assert_eq!(normalize_payload("payload=YS+bYw=="), "YS+bYw==", "an unescaped + survives");
        assert_eq!(normalize_payload("YS%2Bb%0AYw%3D%3D"), "YS+bYw==");
    }

    #[test]
    fn the_authorize_url_carries_every_required_parameter() {
        let request = KeyRequest::new("client-1", Some(APP_REDIRECT)).expect("key generation");
        let url = request.authorize_url("https://forum.example.org/sub/").expect("url");
        assert_eq!(url.path(), "/sub/user-api-key/new");
        let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["application_name"], "Parley");
        assert_eq!(pairs["scopes"], "write");
        assert_eq!(pairs["client_id"], "client-1");
        assert_eq!(pairs["auth_redirect"], APP_REDIRECT);
        assert!(pairs["public_key"].starts_with("-----BEGIN PUBLIC KEY-----\n"), "PEM public key");
        assert_eq!(pairs["nonce"].len(), 32);
        assert!(!format!("{request:?}").contains(&pairs["nonce"]), "Debug hides the nonce");
    }
}
