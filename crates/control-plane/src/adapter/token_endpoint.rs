//! Any HTTP endpoint that hands out a LiveKit token (DESIGN.md §4, last row): a URL template with
//! `{room}`, `{identity}` and `{name}` placeholders, an optional auth header whose value is a
//! secret, and JSON pointers to the token and URL in the answer. This covers home-grown token
//! servers and the `GET /api/livekit?room=…&username=…` routes many self-hosted apps expose
//! (the shape CONTROL_PLANES.md §7, note 1, describes: every backend names the fields
//! differently, so the pointers are configurable).
//!
//! Moderation: none of its own; when the endpoint hands out tokens with `roomAdmin`, RoomService
//! (§6) moderates the token's room ([`RoomAdmin`]).

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::adapter::livekit::RoomAdmin;
use crate::adapter::livekit::token::TokenClaims;
use crate::http::{Http, decode_json, redact_url};
use crate::plane::{
    BackendKind, Capabilities, Capability, ControlPlane, JoinGrant, ModerationAction, PlaneParticipant,
};
use crate::{PlaneError, Secret};

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The HTTP method of the token request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RequestMethod {
    #[default]
    Get,
    Post,
}

impl std::str::FromStr for RequestMethod {
    type Err = PlaneError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "GET" => Ok(RequestMethod::Get),
            "POST" => Ok(RequestMethod::Post),
            _ => Err(PlaneError::InvalidInput { message: format!("the method must be GET or POST, not {text:?}") }),
        }
    }
}

fn default_token_pointer() -> String {
    "/token".into()
}

fn default_url_pointer() -> String {
    "/url".into()
}

/// Non-secret settings, stored in the profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `https://example.org/api/livekit?room={room}&username={identity}`; placeholders are
    /// percent-encoded when substituted.
    pub url_template: String,
    #[serde(default)]
    pub method: RequestMethod,
    /// JSON body for POST, with the same placeholders (substituted JSON-escaped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
    /// The header that carries the secret (`Authorization`, `X-Api-Key`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// JSON pointer to the token in the answer.
    #[serde(default = "default_token_pointer")]
    pub token_pointer: String,
    /// JSON pointer to the LiveKit URL in the answer.
    #[serde(default = "default_url_pointer")]
    pub url_pointer: String,
    /// The LiveKit URL to use when the answer has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livekit_url: Option<String>,
    /// The identity to ask a token for.
    pub identity: String,
    /// The display name to ask for; the identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Secrets, stored only in the OS keyring.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The whole value of [`Settings::header_name`], e.g. `Bearer xyz`.
    pub header_value: Option<Secret>,
}

/// The keyring entry names of this backend's secrets.
pub const SECRET_NAMES: &[&str] = &["header-value"];

/// A token endpoint.
#[derive(Debug)]
pub struct TokenEndpointPlane {
    settings: Settings,
    header: Option<(reqwest::header::HeaderName, Secret)>,
    http: Http,
    /// Set once a join returned a `roomAdmin` token: RoomService moderation is then offered.
    admin_seen: AtomicBool,
}

impl TokenEndpointPlane {
    /// Checks the settings; nothing is sent.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a template without http(s), an invalid header
    /// name, a header name without its secret (or the reverse), a body template with GET, or a
    /// LiveKit URL that is not ws(s)://.
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, PlaneError> {
        let probe = substitute_url(&settings.url_template, "room", "identity", "name");
        let parsed = url::Url::parse(&probe).map_err(|error| PlaneError::InvalidInput {
            message: format!("the token URL template is not a URL: {error}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PlaneError::InvalidInput {
                message: "the token URL must start with http:// or https://".into(),
            });
        }
        if settings.identity.trim().is_empty() {
            return Err(PlaneError::InvalidInput { message: "the profile has no identity to ask a token for".into() });
        }
        if settings.body_template.is_some() && settings.method == RequestMethod::Get {
            return Err(PlaneError::InvalidInput { message: "a body template needs --method POST".into() });
        }
        if let Some(url) = &settings.livekit_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err(PlaneError::InvalidInput {
                message: format!("the LiveKit URL must start with ws:// or wss://, got {url:?}"),
            });
        }
        for pointer in [&settings.token_pointer, &settings.url_pointer] {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(PlaneError::InvalidInput {
                    message: format!("{pointer:?} is not a JSON pointer (they start with /, like /token)"),
                });
            }
        }
        let value = secrets.header_value.filter(|value| !value.is_empty());
        let header = match (&settings.header_name, value) {
            (Some(name), Some(value)) => {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    PlaneError::InvalidInput { message: format!("{name:?} is not a valid HTTP header name") }
                })?;
                if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                    return Err(PlaneError::InvalidInput {
                        message: "the header value contains characters HTTP headers cannot carry".into(),
                    });
                }
                Some((name, value))
            }
            (Some(name), None) => {
                return Err(PlaneError::InvalidInput {
                    message: format!("the value of the {name} header is not in the keyring; add the profile again"),
                });
            }
            (None, Some(_)) => {
                return Err(PlaneError::InvalidInput {
                    message: "a header value is stored but the profile names no header (--header-name)".into(),
                });
            }
            (None, None) => None,
        };
        let http = Http::new()?.for_server(&settings.url_template);
        Ok(TokenEndpointPlane { settings, header, http, admin_seen: AtomicBool::new(false) })
    }

    fn display_name(&self) -> &str {
        self.settings.display_name.as_deref().unwrap_or(&self.settings.identity)
    }

    fn admin_for(&self, grant: &JoinGrant) -> Option<RoomAdmin> {
        RoomAdmin::for_grant(grant)
    }

    /// The LiveKit URL from the answer (absolute, or relative to the endpoint) or the profile.
    fn livekit_url(&self, answer: &serde_json::Value, endpoint: &url::Url) -> Result<String, PlaneError> {
        let found = answer
            .pointer(&self.settings.url_pointer)
            .and_then(serde_json::Value::as_str)
            .filter(|url| !url.is_empty());
        let Some(found) = found else {
            return self.settings.livekit_url.clone().ok_or_else(|| PlaneError::Malformed {
                detail: format!(
                    "the token endpoint's answer has no LiveKit URL at {}; set one in the profile (--livekit-url)",
                    self.settings.url_pointer
                ),
            });
        };
        // Absolute URLs stay as given (a trailing slash matters to some proxies); relative ones
        // (disTokoloshe's `/livekit/`) are resolved against the endpoint.
        let absolute = if found.contains("://") {
            found.to_string()
        } else {
            endpoint
                .join(found)
                .map_err(|error| PlaneError::Malformed {
                    detail: format!("the token endpoint answered with an unusable LiveKit URL: {error}"),
                })?
                .to_string()
        };
        let (scheme, rest) = absolute.split_once("://").unwrap_or(("", absolute.as_str()));
        let scheme = match scheme {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            other => {
                return Err(PlaneError::Malformed {
                    detail: format!("the token endpoint answered with a {other}:// LiveKit URL"),
                });
            }
        };
        Ok(format!("{scheme}://{rest}"))
    }
}

#[async_trait]
impl ControlPlane for TokenEndpointPlane {
    fn kind(&self) -> BackendKind {
        BackendKind::TokenEndpoint
    }

    fn capabilities(&self) -> Capabilities {
        let mut capabilities = vec![Capability::Join];
        if self.admin_seen.load(Ordering::Relaxed) {
            capabilities.push(Capability::ListParticipants);
            capabilities.extend(RoomAdmin::ACTIONS.into_iter().map(Capability::Moderate));
        }
        Capabilities::new(capabilities)
    }

    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        if room.is_empty() {
            return Err(PlaneError::InvalidInput { message: "which room? the room name is empty".into() });
        }
        let identity = &self.settings.identity;
        let url = substitute_url(&self.settings.url_template, room, identity, self.display_name());
        let endpoint = url::Url::parse(&url)
            .map_err(|error| PlaneError::InvalidInput { message: format!("the token URL is not valid: {error}") })?;
        let method = match self.settings.method {
            RequestMethod::Get => Method::GET,
            RequestMethod::Post => Method::POST,
        };
        let mut request =
            self.http.request(method, endpoint.as_str()).header(reqwest::header::ACCEPT, "application/json");
        if let Some((name, value)) = &self.header {
            let mut header =
                reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| PlaneError::InvalidInput {
                    message: "the header value contains characters HTTP headers cannot carry".into(),
                })?;
            header.set_sensitive(true);
            request = request.header(name.clone(), header);
        }
        if let Some(template) = &self.settings.body_template {
            let body = substitute_json(template, room, identity, self.display_name());
            let parsed: serde_json::Value = serde_json::from_str(&body).map_err(|error| PlaneError::InvalidInput {
                message: format!("the body template is not valid JSON once filled in: {error}"),
            })?;
            request = request.json(&parsed);
        }
        let response = self.http.send_plain(request).await?;
        let answered_from = response.url().clone();
        let answer: serde_json::Value = decode_json(response).await?;
        let token = answer
            .pointer(&self.settings.token_pointer)
            .and_then(serde_json::Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| PlaneError::Malformed {
                detail: format!(
                    "{} answered without a token at {}",
                    redact_url(&answered_from),
                    self.settings.token_pointer
                ),
            })?
            .to_string();
        let claims = TokenClaims::read(&token)?;
        let livekit_url = self.livekit_url(&answer, &answered_from)?;
        if claims.admin {
            self.admin_seen.store(true, Ordering::Relaxed);
        }
        let room_name = if claims.room.is_empty() { room.to_string() } else { claims.room.clone() };
        Ok(JoinGrant {
            room_id: room.to_string(),
            room_name,
            url: livekit_url,
            token,
            e2ee_key: None,
            expires_at: claims.expires_at,
            heartbeat_every: None,
            role: None,
            notice: None,
        })
    }

    async fn participants(&self, grant: &JoinGrant) -> Result<Vec<PlaneParticipant>, PlaneError> {
        match self.admin_for(grant) {
            Some(admin) => admin.participants().await,
            None => Err(self.unsupported("listing participants (the token has no roomAdmin grant)")),
        }
    }

    async fn moderate(&self, grant: &JoinGrant, action: ModerationAction, participant: &str) -> Result<(), PlaneError> {
        match self.admin_for(grant) {
            Some(admin) if RoomAdmin::ACTIONS.contains(&action) => admin.moderate(action, participant).await,
            _ => Err(PlaneError::Unsupported { backend: self.kind().as_str(), action: action.as_str() }),
        }
    }
}

/// Fills the URL template, percent-encoding each value.
fn substitute_url(template: &str, room: &str, identity: &str, name: &str) -> String {
    let encode = |value: &str| utf8_percent_encode(value, COMPONENT).to_string();
    fill(template, &encode(room), &encode(identity), &encode(name))
}

/// Fills the body template with JSON-escaped values (the placeholders stand inside strings).
fn substitute_json(template: &str, room: &str, identity: &str, name: &str) -> String {
    let escape = |value: &str| {
        let quoted = serde_json::Value::String(value.to_string()).to_string();
        quoted[1..quoted.len() - 1].to_string()
    };
    fill(template, &escape(room), &escape(identity), &escape(name))
}

/// One pass over the template, so that a value containing `{name}` is not substituted again.
fn fill(template: &str, room: &str, identity: &str, name: &str) -> String {
    let mut filled = String::with_capacity(template.len() + room.len() + identity.len() + name.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        filled.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (value, length) = if tail.starts_with("{room}") {
            (room, "{room}".len())
        } else if tail.starts_with("{identity}") {
            (identity, "{identity}".len())
        } else if tail.starts_with("{name}") {
            (name, "{name}".len())
        } else {
            ("{", 1)
        };
        filled.push_str(value);
        rest = &tail[length..];
    }
    filled.push_str(rest);
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_percent_encoded_in_urls_and_escaped_in_json() {
        let url = substitute_url("http://h/t?room={room}&u={identity}&n={name}", "a b/c", "é", "{room}");
        assert_eq!(url, "http://h/t?room=a%20b%2Fc&u=%C3%A9&n=%7Broom%7D");
        let body = substitute_json(r#"{"room":"{room}","name":"{name}"}"#, "say \"hi\"", "x", "{identity}");
        assert_eq!(body, r#"{"room":"say \"hi\"","name":"{identity}"}"#);
    }
}
