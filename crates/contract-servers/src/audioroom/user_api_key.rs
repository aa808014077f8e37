//! `GET|HEAD /user-api-key/new` (CONTROL_PLANES.md §1.6; core's `UserApiKeysController`).
//!
//! **A test shortcut:** the real `GET` renders an approval page and the key is made by the
//! `POST /user-api-key` that page sends with the browser's session. Here the `GET` approves at
//! once as [`super::Handle::set_approving_user`], doing both halves' checks in their order.
//!
//! * `HEAD` → 200 with `Auth-Api-Version: 4`.
//! * `GET` needs `nonce`, `scopes`, `client_id`, `public_key`, `application_name` (400
//!   `{"errors":["param is missing or the value is empty or invalid: …"]}` otherwise). An
//!   unknown scope gets the page with a generic error (200), a public key that is not RSA a 500.
//!   Then a logged-in browser (else 302 to `/login`), and an `auth_redirect` that matches
//!   `allowed_user_api_auth_redirects` (else 403 `invalid_access`).
//! * The new key replaces the user's older keys for the same client id. The payload
//!   `{"key","nonce","push","api":4}` (`push` with the `push` scope and a `push_url`) is encrypted with the given public key (PKCS#1 v1.5,
//!   as Ruby's `public_encrypt`) and Base64-encoded with a line break every 60 characters (as
//!   `Base64.encode64`), then sent as a 302 to `auth_redirect?payload=<CGI-escaped>`, or shown
//!   (HTML, or JSON `{payload, instructions}` when asked for JSON) without `auth_redirect`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::rand_core::OsRng;
use rsa::{Pkcs1v15Encrypt, RsaPublicKey};
use serde_json::json;

use super::layers::RequestFormat;
use super::params::Params;
use super::responses::{Answer, Refusal, ok};
use super::state::{ApiKey, Shared};
use super::{IssuedKey, random_hex};

/// `UserApiKeysController::AUTH_API_VERSION`.
pub const AUTH_API_VERSION: u32 = 4;
/// `UserApiKeyScope::SCOPES`.
const SCOPES: &[&str] = &[
    "read",
    "write",
    "message_bus",
    "push",
    "one_time_password",
    "notifications",
    "session_info",
    "bookmarks_calendar",
    "user_status",
];

/// `HEAD /user-api-key/new`: the auth API version, for clients to check before sending a user.
pub(super) async fn auth_api_version() -> Response {
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert("Auth-Api-Version", HeaderValue::from(AUTH_API_VERSION));
    response
}

/// `GET /user-api-key/new`: checks the request, issues the key at once and hands the encrypted
/// payload over (redirect, JSON or HTML).
pub(super) async fn new_key(
    State(shared): State<Arc<Shared>>,
    Extension(format): Extension<RequestFormat>,
    params: Params,
) -> Answer {
    let mut required = HashMap::new();
    for name in ["nonce", "scopes", "client_id", "public_key", "application_name"] {
        required.insert(name, params.text(name).ok_or(Refusal::ParamMissing(name))?);
    }
    // `validate_params`, before the login check: an unknown scope raises `InvalidAccess`, which
    // `new` rescues into its page with a generic error (200); a public key OpenSSL cannot read
    // raises an unrescued `OpenSSL::PKey::RSAError` (500).
    let scopes: Vec<String> = required["scopes"].split(',').map(|scope| scope.trim().to_string()).collect();
    if scopes.iter().any(|scope| !SCOPES.contains(&scope.as_str())) {
        return Ok(page(
            StatusCode::OK,
            "<p class=\"alert alert-error\">You are not permitted to view the requested resource.</p>",
        ));
    }
    // Real keys are PEM with newlines; query decoding may leave them as-is or as spaces.
    let pem = required["public_key"].clone();
    let public_key = RsaPublicKey::from_public_key_pem(&pem).or_else(|_| RsaPublicKey::from_pkcs1_pem(&pem));
    let Ok(public_key) = public_key else {
        return Ok(page(StatusCode::INTERNAL_SERVER_ERROR, "<h1>Oops</h1>"));
    };
    let mut forum = shared.lock();
    let Some(user_id) = forum.approving_user else {
        return Ok((StatusCode::FOUND, [(header::LOCATION, "/login")]).into_response());
    };
    // `create` checks the redirect when the user approves (this page approves at once).
    let redirect = params.text("auth_redirect");
    let allowed = |redirect: &String| forum.allowed_redirects.iter().any(|pattern| wildcard_match(pattern, redirect));
    if redirect.as_ref().is_some_and(|redirect| !allowed(redirect)) {
        return Err(Refusal::InvalidAccess);
    }
    // `has_push?`: the `push` scope and a push URL.
    let push = scopes.iter().any(|scope| scope == "push") && params.text("push_url").is_some();
    let key = random_hex(16);
    let client_id = required["client_id"].clone();
    forum
        .api_keys
        .retain(|_, existing| !(existing.user_id == user_id && existing.client_id.as_deref() == Some(&client_id)));
    forum.api_keys.insert(key.clone(), ApiKey { user_id, scopes: scopes.clone(), client_id: Some(client_id.clone()) });
    forum.issued.push(IssuedKey {
        key: key.clone(),
        user_id: u64::try_from(user_id).unwrap_or_default(),
        client_id,
        scopes,
        application_name: required["application_name"].clone(),
    });
    drop(forum);
    let payload = json!({ "key": key, "nonce": required["nonce"], "push": push, "api": AUTH_API_VERSION });
    let encrypted = public_key
        .encrypt(&mut OsRng, Pkcs1v15Encrypt, payload.to_string().as_bytes())
        .map_err(|error| Refusal::InvalidParameters(format!("cannot encrypt: {error}")))?;
    let encoded = encode64(&encrypted);
    match redirect {
        Some(redirect) => {
            let separator = if redirect.contains('?') { '&' } else { '?' };
            let escaped: String = url::form_urlencoded::byte_serialize(encoded.as_bytes()).collect();
            let location = format!("{redirect}{separator}payload={escaped}");
            let location = HeaderValue::from_str(&location).map_err(|_| Refusal::InvalidAccess)?;
            Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
        }
        None if format.json => {
            Ok(ok(json!({ "payload": encoded, "instructions": "Copy the payload into the application." })))
        }
        None => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!DOCTYPE html><html><body><p>Copy this into the application:</p><pre>{encoded}</pre></body></html>"
            ),
        )
            .into_response()),
    }
}

/// An HTML page of the forum's with `body`.
fn page(status: StatusCode, body: &str) -> Response {
    let html = format!("<!DOCTYPE html><html><head><title>Forum</title></head><body>{body}</body></html>");
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Ruby's `Base64.encode64`: standard alphabet, a newline after every 60 characters and at the end.
fn encode64(bytes: &[u8]) -> String {
    let plain = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut wrapped = String::with_capacity(plain.len() + plain.len() / 60 + 1);
    for (index, character) in plain.chars().enumerate() {
        if index > 0 && index % 60 == 0 {
            wrapped.push('\n');
        }
        wrapped.push(character);
    }
    wrapped.push('\n');
    wrapped
}

/// `*` matches any run of characters, as in `allowed_user_api_auth_redirects`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(after) = text.strip_prefix(head) else { return false };
            (0..=after.len()).filter(|cut| after.is_char_boundary(*cut)).any(|cut| wildcard_match(rest, &after[cut..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_patterns_match_like_discourse() {
        assert!(wildcard_match("discourse://auth_redirect", "discourse://auth_redirect"));
        assert!(wildcard_match("http://127.0.0.1:*/auth_redirect", "http://127.0.0.1:4711/auth_redirect"));
        assert!(!wildcard_match("http://127.0.0.1:*/auth_redirect", "http://evil.example/auth_redirect"));
        assert!(!wildcard_match("parley://auth_redirect", "parley://auth_redirect/x"));
    }

    #[test]
    fn encode64_wraps_like_ruby() {
        let encoded = encode64(&[0u8; 256]);
        assert!(encoded.lines().all(|line| line.len() <= 60), "lines of at most 60 characters");
        assert!(encoded.ends_with('\n'));
    }
}
