//! The HTTP client every adapter uses.
//!
//! It turns transport failures and HTTP statuses into [`PlaneError`]s with the server's own
//! explanation (every backend puts it somewhere else: `error`, `errors[]`, `message`, `msg`,
//! `detail`, Matrix `errcode`/`error`), recognises HTML where JSON was expected, and reads
//! `Retry-After`. Adapters refine the generic mapping (a 403 that means "kicked") with
//! [`Failure`] before calling [`Failure::into_error`].

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::PlaneError;

/// Per-request timeout: long enough for a slow forum, short enough that a dead server gives a
/// clear error quickly. Long polls set their own.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a server's error text reaches the user.
const MAX_MESSAGE_CHARS: usize = 200;
/// The most of an answer read: no backend's reply comes near it, and a broken or hostile
/// server's endless body ends here instead of in the user's memory.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The most of an error answer read (a few hundred characters of it are shown).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A reqwest client with our defaults. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    /// Refuse `http://` to other machines: the backend was reached over TLS, so an address it
    /// hands out (a discovered service, a link) must not take our credentials to cleartext.
    encrypted_only: bool,
}

impl Http {
    /// A client without a cookie jar.
    pub fn new() -> Result<Self, PlaneError> {
        Self::build(false, true)
    }

    /// A client that keeps cookies between requests (Meet's session and lobby cookies).
    pub fn with_cookies() -> Result<Self, PlaneError> {
        Self::build(true, true)
    }

    /// A client that answers a redirect with the redirect itself (a [`Failure`] with a 3xx
    /// status), for probes where a redirect to some page must not count as the answer.
    pub fn without_redirects() -> Result<Self, PlaneError> {
        Self::build(false, false)
    }

    fn build(cookies: bool, follow_redirects: bool) -> Result<Self, PlaneError> {
        install_crypto_provider();
        let redirects = if follow_redirects { same_origin_redirects() } else { reqwest::redirect::Policy::none() };
        let client = reqwest::Client::builder()
            .user_agent(concat!("Parley/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .cookie_store(cookies)
            .redirect(redirects)
            // A redirect must not tell the next page where we came from (queries carry names).
            .referer(false)
            .build()
            .map_err(|error| PlaneError::InvalidInput { message: format!("cannot create the HTTP client: {error}") })?;
        Ok(Http { client, encrypted_only: false })
    }

    /// This client for a backend at `server`: when `server` is encrypted (`https://`,
    /// `wss://`), every request must be too, unless it stays on this machine (see
    /// [`crate::transport`]).
    pub fn for_server(mut self, server: &str) -> Self {
        self.encrypted_only =
            reqwest::Url::parse(server.trim()).is_ok_and(|url| matches!(url.scheme(), "https" | "wss"));
        self
    }

    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends `request`; any non-2xx status becomes a [`Failure`] the caller can refine.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        let request = request.build().map_err(Failure::transport)?;
        if self.encrypted_only && request.url().scheme() == "http" && !crate::transport::is_loopback(request.url()) {
            return Err(Failure::refused(
                request.url(),
                "the server, reached over https, pointed Parley to an unencrypted http:// address; \
                 Parley does not downgrade an encrypted connection"
                    .into(),
            ));
        }
        let response = self.client.execute(request).await.map_err(Failure::transport)?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(Failure::from_response(response).await)
    }

    /// Sends `request` and maps any failure with the generic mapping.
    pub async fn send_plain(&self, request: RequestBuilder) -> Result<Response, PlaneError> {
        self.send(request).await.map_err(Failure::into_error)
    }

    /// Sends `request` and decodes a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, PlaneError> {
        let response = self.send_plain(request).await?;
        decode_json(response).await
    }
}

/// Decodes a successful response as JSON, with a clear error for HTML pages and bad bodies.
pub async fn decode_json<T: DeserializeOwned>(response: Response) -> Result<T, PlaneError> {
    let url = redact_url(response.url());
    let body = read_body(response).await?;
    parse_json(&body, &url)
}

/// A successful answer's body, up to [`MAX_BODY_BYTES`].
///
/// Errors: [`PlaneError::Malformed`] for a longer body or one that breaks off.
pub async fn read_body(response: Response) -> Result<String, PlaneError> {
    let url = redact_url(response.url());
    match read_capped(response, MAX_BODY_BYTES).await {
        Ok((body, false)) => Ok(body),
        Ok((_, true)) => Err(PlaneError::Malformed {
            detail: format!(
                "{url} answered with more than {} MiB; that is no answer Parley expects",
                MAX_BODY_BYTES >> 20
            ),
        }),
        // reqwest's text would name the whole URL, query and all: ours is redacted.
        Err(error) => Err(PlaneError::Malformed {
            detail: format!("reading the answer from {url}: {}", root_cause(&error.without_url())),
        }),
    }
}

/// Reads at most `limit` bytes of `response`'s body (lossy UTF-8); whether it was longer.
async fn read_capped(mut response: Response, limit: usize) -> Result<(String, bool), reqwest::Error> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            body.extend_from_slice(&chunk[..limit - body.len()]);
            return Ok((text(&body), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((text(&body), false))
}

/// Parses `body` (from `url`, for the message) as `T`.
pub fn parse_json<T: DeserializeOwned>(body: &str, url: &str) -> Result<T, PlaneError> {
    if looks_like_html(body) {
        return Err(PlaneError::Malformed {
            detail: format!("{url} answered with a web page where JSON was expected; check the server URL"),
        });
    }
    serde_json::from_str(body)
        .map_err(|error| PlaneError::Malformed { detail: format!("{url} answered with unexpected JSON ({error})") })
}

fn looks_like_html(body: &str) -> bool {
    let start = body.trim_start().get(..15).unwrap_or(body.trim_start());
    let lower = start.to_ascii_lowercase();
    lower.starts_with("<!doctype") || lower.starts_with("<html") || lower.starts_with('<')
}

/// A request that did not succeed, before it is mapped to a [`PlaneError`].
#[derive(Debug, Clone)]
pub struct Failure {
    /// `None` when no HTTP answer arrived.
    pub status: Option<StatusCode>,
    /// The server's explanation, shortened.
    pub message: String,
    /// The parsed JSON body, when there was one.
    pub body: Option<serde_json::Value>,
    /// `Retry-After` (seconds form), or a body's `wait_seconds`.
    pub retry_after: Option<Duration>,
    /// The URL without query string or credentials.
    pub url: String,
    /// For transport failures: what went wrong.
    transport: Option<String>,
}

impl Failure {
    fn transport(error: reqwest::Error) -> Self {
        let url = error.url().map(redact_url).unwrap_or_default();
        let detail = if let Some(problem) = certificate_problem(&error) {
            format!(
                "the server's certificate is not trusted ({problem}); if this is your own server, \
                 give it a certificate from a public authority or add its authority to the system's \
                 trusted certificates"
            )
        } else if error.is_timeout() {
            "no answer in time".to_string()
        } else if error.is_connect() {
            "connection failed (is the server running and the URL right?)".to_string()
        } else if error.is_builder() {
            "the URL is not valid".to_string()
        } else {
            root_cause(&error)
        };
        Failure { status: None, message: String::new(), body: None, retry_after: None, url, transport: Some(detail) }
    }

    /// A request Parley would not send.
    fn refused(url: &reqwest::Url, detail: String) -> Self {
        let url = redact_url(url);
        Failure { status: None, message: String::new(), body: None, retry_after: None, url, transport: Some(detail) }
    }

    async fn from_response(response: Response) -> Self {
        let status = response.status();
        let url = redact_url(response.url());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Only the start of an error body matters (its message); the rest is not read.
        let text = read_capped(response, MAX_ERROR_BODY_BYTES).await.map(|(text, _)| text).unwrap_or_default();
        let body = serde_json::from_str::<serde_json::Value>(&text).ok();
        let message = match &body {
            Some(json) => message_from_json(json),
            None if looks_like_html(&text) => String::new(),
            None => shorten(text.trim()),
        };
        let retry_after = retry_after.or_else(|| {
            body.as_ref()
                .and_then(|json| json.pointer("/extras/wait_seconds"))
                .and_then(serde_json::Value::as_u64)
                .map(Duration::from_secs)
        });
        Failure { status: Some(status), message, body, retry_after, url, transport: None }
    }

    /// The generic status → error mapping.
    pub fn into_error(self) -> PlaneError {
        let Some(status) = self.status else {
            return PlaneError::Unreachable { url: self.url, detail: self.transport.unwrap_or_default() };
        };
        let message = self.message;
        match status.as_u16() {
            401 => PlaneError::Unauthorized { message },
            403 => PlaneError::Forbidden { message },
            404 => PlaneError::NotFound { what: self.url, message },
            429 => PlaneError::RateLimited { retry_after: self.retry_after },
            code @ 400..=499 => PlaneError::Rejected { status: code, message },
            code => PlaneError::Server { status: code, message },
        }
    }

    /// A string field of the JSON error body (`conflicting_room_id`, `errcode`, …).
    pub fn body_str(&self, field: &str) -> Option<String> {
        let value = self.body.as_ref()?.get(field)?;
        match value {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }
}

/// Finds the human explanation in the error bodies the backends use.
fn message_from_json(json: &serde_json::Value) -> String {
    let text = ["error", "message", "msg", "detail", "error_description"]
        .iter()
        .find_map(|key| json.get(*key).and_then(serde_json::Value::as_str))
        .or_else(|| {
            json.get("errors")
                .and_then(serde_json::Value::as_array)
                .and_then(|errors| errors.first())
                .and_then(serde_json::Value::as_str)
        })
        .unwrap_or_default();
    shorten(text)
}

fn shorten(text: &str) -> String {
    let single_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_line.chars().count() <= MAX_MESSAGE_CHARS {
        single_line
    } else {
        let cut: String = single_line.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}…")
    }
}

/// `scheme://host[:port]/path` — no credentials, no query (tokens travel in queries).
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// What was wrong with the server's certificate, when that is why the connection failed.
///
/// rustls reports it as `rustls::Error::InvalidCertificate` inside one or more `io::Error`s
/// down the chain; `io::Error::source` skips the error it wraps, so each one is opened by hand.
fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        let mut candidate = current;
        loop {
            if let Some(rustls::Error::InvalidCertificate(problem)) = candidate.downcast_ref::<rustls::Error>() {
                return Some(certificate_words(problem));
            }
            match candidate.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
                Some(inner) => candidate = inner,
                None => break,
            }
        }
        cause = current.source();
    }
    None
}

fn certificate_words(problem: &rustls::CertificateError) -> String {
    match problem {
        rustls::CertificateError::UnknownIssuer => "issued by an unknown authority, or self-signed".into(),
        rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => "expired".into(),
        rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. } => {
            "made out to another name".into()
        }
        rustls::CertificateError::Revoked => "revoked".into(),
        other => format!("{other:?}"),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// How many redirects in a row are followed (reqwest's default, too).
const MAX_REDIRECTS: usize = 10;

/// Follows redirects only within the origin (scheme, host and port) they started from.
/// reqwest's default policy strips `Authorization` and `Cookie` on a cross-host redirect but
/// re-sends every other header (`User-Api-Key`, a token endpoint's own header) and, on 307/308,
/// the body (a password): a server, or whoever controls its redirects, must not be able to send
/// our credentials elsewhere. A downgrade from https to http is a change of origin too.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url();
        let crossed = attempt.previous().last().is_some_and(|from| {
            from.scheme() != next.scheme()
                || from.host_str() != next.host_str()
                || from.port_or_known_default() != next.port_or_known_default()
        });
        if crossed {
            let to = RedirectRefused::CrossOrigin(next.origin().ascii_serialization());
            attempt.error(to)
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(RedirectRefused::TooMany)
        } else {
            attempt.follow()
        }
    })
}

/// Why a redirect was not followed; the message the user sees.
#[derive(Debug, thiserror::Error)]
enum RedirectRefused {
    #[error(
        "the server redirected to another site ({0}); Parley does not follow that with your credentials \
         (check the server address in the profile)"
    )]
    CrossOrigin(String),
    #[error("the server redirected more than {MAX_REDIRECTS} times")]
    TooMany,
}

/// reqwest is built without a bundled TLS provider (`rustls-no-provider`) so that the process
/// uses the one `ring` provider livekit-api already links, instead of compiling aws-lc as well.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install it between the check and this call; either way one
        // provider is installed, which is all that matters.
        if rustls::crypto::ring::default_provider().install_default().is_err() {
            tracing::debug!("TLS crypto provider was installed concurrently");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_message_in_every_backend_shape() {
        let shapes = [
            (r#"{"error":"Room is full"}"#, "Room is full"),
            (r#"{"errors":["You are not permitted"],"error_type":"invalid_access"}"#, "You are not permitted"),
            (r#"{"code":"unauthenticated","msg":"permissions denied"}"#, "permissions denied"),
            (r#"{"detail":"Not found."}"#, "Not found."),
            (r#"{"errcode":"M_UNAUTHORIZED","error":"bad openid"}"#, "bad openid"),
            (r#"{"message":"Participant not found."}"#, "Participant not found."),
        ];
        for (body, expected) in shapes {
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(message_from_json(&json), expected, "message from {body}");
        }
    }

    #[test]
    fn html_is_reported_as_a_web_page() {
        let error =
            parse_json::<serde_json::Value>("\n<!DOCTYPE html><html><body>Login</body></html>", "http://forum/x.json")
                .unwrap_err();
        assert_eq!(error.code(), "malformed_response");
        assert!(error.to_string().contains("web page"), "{error}");
        let garbage = parse_json::<serde_json::Value>("{\"a\":", "http://x").unwrap_err();
        assert!(garbage.to_string().contains("unexpected JSON"), "{garbage}");
    }

    #[test]
    fn urls_lose_their_query_and_credentials() {
        let url = reqwest::Url::parse("https://user:pw@host:8443/api/events?token=secret").unwrap();
        assert_eq!(redact_url(&url), "https://host:8443/api/events");
    }
}
