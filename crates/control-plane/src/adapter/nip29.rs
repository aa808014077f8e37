//! NIP-29 Nostr relays with LiveKit audio/video spaces (`shared/CONTROL_PLANES.md` §4).
//!
//! The relay is the whole control plane: it answers `GET /.well-known/nip29/livekit` with 204 when
//! it offers LiveKit spaces, and `GET /.well-known/nip29/livekit/<group-id>` with a LiveKit token
//! when the request carries a NIP-98 `Authorization: Nostr <base64(event)>` header. The signing
//! event is kind 27235 with tags `u` and `method` (`GET`), a fresh `created_at`, a NIP-01 id and a
//! BIP-340 Schnorr signature.
//!
//! What the reference relay (fiatjaf/pyramid @ d15b6d9, `groups/livekit.go`) does shapes the
//! details:
//!
//! * it rebuilds `u` from its own scheme and domain and the *decoded* group id and compares
//!   strings, so `u` carries the raw id (`…/livekit/a b`) while the request path is
//!   percent-encoded; a relay address other than the relay's own domain cannot pass, and the
//!   error says so;
//! * its scheme rule gives `http://` only to localhost, 127.0.0.1, 0.0.0.0, .onion and .i2p, so a
//!   plain `ws://` relay elsewhere (on a LAN) expects `https://` in `u`: when `http://` is
//!   refused as an "invalid u tag", the request is signed once more with `https://`;
//! * group members (and relay members in groups that are not `restricted`) get full tokens,
//!   anyone else a listen-only token in a public group ([`JoinGrant::notice`] says why) or 403 in
//!   a `private` one;
//! * it creates the LiveKit room before minting and answers 500 `failed to ensure livekit room:
//!   …` when its LiveKit is down, which is reported as the relay's voice server being
//!   unreachable;
//! * only 204 on the probe means LiveKit support: an unconfigured pyramid redirects every page
//!   to its setup, a 200 HTML page.
//!
//! Relays hand out tokens without `roomAdmin` and NIP-29 specifies no call moderation, so this
//! adapter only joins. Membership moderation (kinds 9000/9001) and the kind-39004 roster live on
//! the relay's websocket, which this adapter does not speak. [`pubkey_of_identity`] maps a
//! LiveKit identity back to the member's public key (the spec puts the hex key first).

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use k256::schnorr::SigningKey;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::adapter::livekit::token::TokenClaims;
use crate::http::{Failure, Http, parse_json, read_body};
use crate::plane::{BackendKind, Capabilities, Capability, ControlPlane, JoinGrant};
use crate::transport;
use crate::{PlaneError, Secret};

/// Where the relay serves LiveKit tokens (NIP-29 "Live audio/video spaces").
const LIVEKIT_PATH: &str = "/.well-known/nip29/livekit";
/// NIP-98 HTTP auth event kind.
const HTTP_AUTH_KIND: u32 = 27235;

/// Non-secret settings, stored in the profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The relay, as users know it: `wss://relay.example` (mapped to `https://`), `ws://` (mapped
    /// to `http://`), or an `http(s)://` URL. It must be the relay's own (canonical) domain: the
    /// relay checks signed requests against it.
    pub relay_url: String,
    /// The group joined when `join` is given an empty room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Secrets, kept in the OS keyring.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The Nostr secret key: 64 hex characters or `nsec1…`.
    pub nostr_key: Option<Secret>,
}

/// Keyring entry names of [`Secrets`].
pub const SECRET_NAMES: &[&str] = &["nostr-key"];

/// A NIP-29 relay with LiveKit spaces.
pub struct Nip29Plane {
    http: Http,
    /// For the probe, where a redirect (to a setup page) is not an answer.
    probe_http: Http,
    /// The relay's HTTP origin (`https://relay.example`), without a trailing slash.
    base: String,
    default_group: Option<String>,
    key: SigningKey,
    pubkey: String,
}

impl std::fmt::Debug for Nip29Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nip29Plane")
            .field("base", &self.base)
            .field("default_group", &self.default_group)
            .field("pubkey", &self.pubkey)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Nip29Plane {
    /// Checks the settings and parses the key; sends nothing.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a bad relay URL or a missing or malformed key.
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, PlaneError> {
        let base = http_base(&settings.relay_url)?;
        let key = secrets.nostr_key.as_ref().ok_or_else(|| PlaneError::InvalidInput {
            message: "a Nostr secret key (hex or nsec) is needed to sign requests to the relay".into(),
        })?;
        let key = parse_secret_key(key)?;
        let pubkey = hex::encode(key.verifying_key().to_bytes());
        let default_group = settings.group.filter(|group| !group.trim().is_empty());
        Ok(Nip29Plane {
            http: Http::new()?.for_server(&base),
            probe_http: Http::without_redirects()?,
            base,
            default_group,
            key,
            pubkey,
        })
    }

    /// The user's public key, lowercase hex (what the relay puts first in LiveKit identities).
    pub fn public_key(&self) -> &str {
        &self.pubkey
    }

    /// Asks the relay whether it offers LiveKit spaces: only `GET /.well-known/nip29/livekit` →
    /// 204 says yes. Redirects are not followed (pyramid before its setup redirects every page to
    /// a 200 HTML form).
    ///
    /// Errors: [`PlaneError::NotFound`] when the relay has none (404, a redirect, any other
    /// 2xx), plus the usual HTTP errors.
    pub async fn probe(&self) -> Result<(), PlaneError> {
        let url = format!("{}{LIVEKIT_PATH}", self.base);
        match self.probe_http.send(self.probe_http.request(Method::GET, &url)).await {
            Ok(response) if response.status() == StatusCode::NO_CONTENT => Ok(()),
            Ok(response) => Err(no_livekit(
                &url,
                &format!("it answered HTTP {} where a relay with LiveKit answers 204", response.status().as_u16()),
            )),
            Err(failure) if failure.status == Some(StatusCode::NOT_FOUND) => Err(no_livekit(&url, "")),
            Err(Failure { status: Some(status), .. }) if status.is_redirection() => Err(no_livekit(
                &url,
                &format!(
                    "it answered with a redirect (HTTP {}), as a relay does before its owner has set it up",
                    status.as_u16()
                ),
            )),
            Err(failure) => Err(failure.into_error()),
        }
    }

    /// The NIP-98 `Authorization` header value for `method url`, signed now.
    pub fn authorization(&self, method: &str, url: &str) -> Result<String, PlaneError> {
        let event = self.sign_event(
            HTTP_AUTH_KIND,
            vec![vec!["u".into(), url.into()], vec!["method".into(), method.into()]],
            "",
        )?;
        let json = serde_json::to_string(&event)
            .map_err(|error| PlaneError::InvalidInput { message: format!("cannot encode the auth event: {error}") })?;
        Ok(format!("Nostr {}", base64::engine::general_purpose::STANDARD.encode(json)))
    }

    fn sign_event(&self, kind: u32, tags: Vec<Vec<String>>, content: &str) -> Result<NostrEvent, PlaneError> {
        let created_at = now_secs();
        let id = event_id(&self.pubkey, created_at, kind, &tags, content);
        let mut aux = [0u8; 32];
        // BIP-340 recommends fresh auxiliary randomness against side channels; the signature is
        // valid either way, so a failing OS RNG is reported rather than silently zeroed.
        getrandom::fill(&mut aux).map_err(|error| PlaneError::InvalidInput {
            message: format!("the system random generator failed: {error}"),
        })?;
        let signature = self
            .key
            .sign_prehash_with_aux_rand(&id, &aux)
            .map_err(|_| PlaneError::InvalidInput { message: "signing the Nostr auth event failed".into() })?;
        Ok(NostrEvent {
            id: hex::encode(id),
            pubkey: self.pubkey.clone(),
            created_at,
            kind,
            tags,
            content: content.to_string(),
            sig: hex::encode(signature.to_bytes()),
        })
    }

    fn group<'a>(&'a self, room: &'a str) -> Result<&'a str, PlaneError> {
        let room = room.trim();
        if !room.is_empty() {
            return Ok(room);
        }
        self.default_group.as_deref().ok_or_else(|| PlaneError::InvalidInput {
            message: "name the group to join (or set a default group in the profile)".into(),
        })
    }
}

#[async_trait]
impl ControlPlane for Nip29Plane {
    fn kind(&self) -> BackendKind {
        BackendKind::Nip29
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new([Capability::Join])
    }

    /// `GET /.well-known/nip29/livekit/<group>` with a fresh NIP-98 header. Tokens last as long
    /// as the relay's SDK default (6 h); `refresh` (the default: join again) signs a new request.
    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        let group = self.group(room)?;
        let mut url = reqwest::Url::parse(&format!("{}{LIVEKIT_PATH}/", self.base))
            .map_err(|error| PlaneError::InvalidInput { message: format!("bad relay URL: {error}") })?;
        url.path_segments_mut()
            .map_err(|()| PlaneError::InvalidInput { message: "the relay URL cannot take a path".into() })?
            .pop_if_empty()
            .push(group);
        // The path is percent-encoded; the relay decodes it and rebuilds `u` with the raw id.
        let url = url.to_string();
        let mut outcome = self.request_token(&url, &signed_url(&self.base, group)).await?;
        if let Err(failure) = &outcome
            && is_invalid_u(failure)
            && let Some(tls_base) = pyramid_https_base(&self.base)
        {
            tracing::debug!("the relay refused an http:// u; signing the https:// one pyramid expects");
            outcome = self.request_token(&url, &signed_url(&tls_base, group)).await?;
        }
        let response = match outcome {
            Ok(response) => response,
            Err(failure) => return Err(self.join_error(failure, group).await),
        };
        let body = read_body(response).await?;
        let answer: TokenAnswer = parse_json(&body, &format!("{}{LIVEKIT_PATH}/…", self.base))?;
        let (server_url, token) = answer.into_parts()?;
        let claims = TokenClaims::read(&token)?;
        let read_only = claims.can_publish == Some(false);
        // Relays hand out listen-only tokens to non-members of public groups (pyramid since
        // 7712d39); without a word the user would wonder why the microphone stays off.
        let notice = read_only.then(|| {
            format!(
                "you are not a member of group {group}: joining as a listener (the relay lets non-members listen only)"
            )
        });
        Ok(JoinGrant {
            room_id: group.to_string(),
            room_name: group.to_string(),
            url: transport::websocket_url(&server_url, "the relay's")?,
            token,
            e2ee_key: None,
            expires_at: claims.expires_at,
            heartbeat_every: None,
            role: Some(if read_only { "listener" } else { "member" }.to_string()),
            notice,
        })
    }
}

impl Nip29Plane {
    /// One token request to `url` with a NIP-98 header signed for `u`.
    ///
    /// Errors: the outer one when signing fails, the inner one is the relay's answer.
    async fn request_token(&self, url: &str, u: &str) -> Result<Result<reqwest::Response, Failure>, PlaneError> {
        let authorization = self.authorization("GET", u)?;
        Ok(self
            .http
            .send(self.http.request(Method::GET, url).header(reqwest::header::AUTHORIZATION, authorization))
            .await)
    }

    /// The relay's refusal as the user should read it.
    async fn join_error(&self, failure: Failure, group: &str) -> PlaneError {
        let message = failure.message.clone();
        match failure.status.map(|status| status.as_u16()) {
            Some(401) if is_invalid_u(&failure) => PlaneError::Rejected {
                status: 401,
                message: format!(
                    "{message}: the relay checks signed requests against its own address, so the relay address in \
                     the profile must be the relay's canonical one (the domain the relay is configured with, e.g. \
                     wss://relay.example, not another name or IP address that also reaches it)"
                ),
            },
            Some(401) => PlaneError::Unauthorized {
                message: if message.is_empty() { "the relay refused the signed request".into() } else { message },
            },
            // pyramid's words for a non-member the group does not let listen (every non-member
            // before 7712d39, non-members of private groups since).
            Some(403) if message.is_empty() || message.contains("not allowed to access livekit") => {
                let why = format!("you are not a member of group {group}, and the relay lets only members in");
                PlaneError::Forbidden { message: if message.is_empty() { why } else { format!("{why}: {message}") } }
            }
            Some(403) => PlaneError::Forbidden { message },
            // pyramid answers Go's bare 404 both for an unknown group and when it has no
            // groups at all; the probe tells the two apart.
            Some(404) => match self.probe().await {
                Err(no_livekit @ PlaneError::NotFound { .. }) => no_livekit,
                _ => PlaneError::NotFound {
                    what: format!("group {group:?}"),
                    message: "the relay has no such group".into(),
                },
            },
            Some(405) => {
                PlaneError::Rejected { status: 405, message: "the relay does not serve LiveKit tokens this way".into() }
            }
            Some(status @ 500..=599) if message.contains("failed to ensure livekit room") => {
                let what = if message.contains("failed to create room:") {
                    "the relay's voice server (LiveKit) refused to create the room"
                } else {
                    "the relay's voice server (LiveKit) is unreachable"
                };
                PlaneError::Server { status, message: format!("{what}: {message}") }
            }
            _ => failure.into_error(),
        }
    }
}

/// `u` as pyramid rebuilds it: `base`, the token path and the raw group id.
fn signed_url(base: &str, group: &str) -> String {
    format!("{base}{LIVEKIT_PATH}/{group}")
}

fn is_invalid_u(failure: &Failure) -> bool {
    failure.status == Some(StatusCode::UNAUTHORIZED) && failure.message.contains("invalid u tag")
}

/// `https://` for an `http://` relay that pyramid's `HTTPScheme` would not call local: it
/// expects TLS (from a proxy in front of it) on every other domain, so its `u` says `https://`
/// even where Parley reaches it over plain HTTP. `None` when the first `u` was already right
/// for pyramid.
fn pyramid_https_base(base: &str) -> Option<String> {
    let rest = base.strip_prefix("http://")?;
    let url = reqwest::Url::parse(base).ok()?;
    let host = url.host_str()?;
    // pyramid tests its domain setting, which may carry a port; testing the host keeps
    // `.onion:80` local too.
    let local = ["127.0.0.1", "0.0.0.0", "localhost"].iter().any(|prefix| host.starts_with(prefix))
        || ["onion", "i2p"].iter().any(|suffix| host.ends_with(suffix));
    (!local).then(|| format!("https://{rest}"))
}

/// The public key (lowercase hex) in a LiveKit identity minted by a NIP-29 relay: the spec makes
/// relays put it in the first 64 characters (followed by a random suffix). `None` for identities
/// that do not start with one.
pub fn pubkey_of_identity(identity: &str) -> Option<&str> {
    let key = identity.get(..64)?;
    key.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')).then_some(key)
}

/// A signed Nostr event (NIP-01).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NostrEvent {
    id: String,
    pubkey: String,
    created_at: u64,
    kind: u32,
    tags: Vec<Vec<String>>,
    content: String,
    sig: String,
}

/// NIP-01 event id: sha256 of `[0, pubkey, created_at, kind, tags, content]` serialised without
/// whitespace. serde_json's escaping (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, `\u00XX` for other
/// controls, UTF-8 otherwise) is exactly NIP-01's.
fn event_id(pubkey: &str, created_at: u64, kind: u32, tags: &[Vec<String>], content: &str) -> [u8; 32] {
    let canonical = serde_json::json!([0, pubkey, created_at, kind, tags, content]).to_string();
    Sha256::digest(canonical.as_bytes()).into()
}

/// Token shapes relays send: LiveKit's TokenSource `{server_url, participant_token}` (pyramid,
/// zooid) or the older `{url, token}`.
#[derive(Deserialize)]
struct TokenAnswer {
    server_url: Option<String>,
    participant_token: Option<String>,
    url: Option<String>,
    token: Option<String>,
}

impl TokenAnswer {
    fn into_parts(self) -> Result<(String, String), PlaneError> {
        let url = self.server_url.or(self.url).filter(|url| !url.is_empty());
        let token = self.participant_token.or(self.token).filter(|token| !token.is_empty());
        match (url, token) {
            (Some(url), Some(token)) => Ok((url, token)),
            _ => Err(PlaneError::Malformed {
                detail: "the relay's answer has no LiveKit URL and token (server_url/participant_token)".into(),
            }),
        }
    }
}

fn no_livekit(url: &str, why: &str) -> PlaneError {
    let message = if why.is_empty() {
        "this relay has no LiveKit spaces".to_string()
    } else {
        format!("this relay has no LiveKit spaces ({why})")
    };
    PlaneError::NotFound { what: format!("LiveKit support at {url}"), message }
}

/// `wss://relay` → `https://relay`, `ws://` → `http://`; the relay's HTTP endpoints share the
/// websocket's host.
fn http_base(relay_url: &str) -> Result<String, PlaneError> {
    let trimmed = relay_url.trim();
    let mapped = if let Some(rest) = trimmed.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        trimmed.to_string()
    };
    let url = reqwest::Url::parse(&mapped).map_err(|error| PlaneError::InvalidInput {
        message: format!("the relay URL {relay_url:?} is not valid: {error}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(PlaneError::InvalidInput {
            message: format!("the relay URL {relay_url:?} must start with wss://, ws://, https:// or http://"),
        });
    }
    let mut origin = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        origin.push_str(&format!(":{port}"));
    }
    Ok(origin)
}

/// Hex (64 characters) or bech32 `nsec1…`. Error messages never echo the key.
fn parse_secret_key(secret: &Secret) -> Result<SigningKey, PlaneError> {
    let text = secret.expose().trim();
    let bytes = if text.to_ascii_lowercase().starts_with("nsec1") {
        let (hrp, data) = bech32::decode(text)
            .map_err(|_| PlaneError::InvalidInput { message: "the nsec key is not valid bech32".into() })?;
        if hrp.as_str() != "nsec" {
            return Err(PlaneError::InvalidInput { message: "the Nostr key must be an nsec (secret) key".into() });
        }
        data
    } else if text.to_ascii_lowercase().starts_with("npub1") {
        return Err(PlaneError::InvalidInput {
            message: "that is a public key (npub); the profile needs the secret key (nsec or hex)".into(),
        });
    } else {
        hex::decode(text).map_err(|_| PlaneError::InvalidInput {
            message: "the Nostr key must be 64 hex characters or nsec1…".into(),
        })?
    };
    if bytes.len() != 32 {
        return Err(PlaneError::InvalidInput { message: "the Nostr secret key must be 32 bytes".into() });
    }
    SigningKey::from_bytes(&bytes)
        .map_err(|_| PlaneError::InvalidInput { message: "the Nostr secret key is not a valid secp256k1 key".into() })
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_map_to_http_origins() {
        assert_eq!(http_base("wss://relay.example/").unwrap(), "https://relay.example");
        assert_eq!(http_base("ws://127.0.0.1:7777").unwrap(), "http://127.0.0.1:7777");
        assert_eq!(http_base("https://relay.example").unwrap(), "https://relay.example");
        assert_eq!(http_base("ftp://relay").unwrap_err().code(), "invalid_input");
    }

    #[test]
    fn plain_http_relays_pyramid_calls_remote_get_an_https_u() {
        assert_eq!(pyramid_https_base("http://192.168.1.5:3334").as_deref(), Some("https://192.168.1.5:3334"));
        assert_eq!(pyramid_https_base("http://relay.lan").as_deref(), Some("https://relay.lan"));
        assert_eq!(
            pyramid_https_base("http://[::1]:7777").as_deref(),
            Some("https://[::1]:7777"),
            "not in pyramid's list"
        );
        assert_eq!(pyramid_https_base("http://127.0.0.1:7777"), None, "local: http:// was right");
        assert_eq!(pyramid_https_base("http://localhost:7777"), None);
        assert_eq!(pyramid_https_base("http://abcdef.onion"), None);
        assert_eq!(pyramid_https_base("https://relay.example"), None, "already https://");
    }

    #[test]
    fn identities_map_to_public_keys() {
        let key = "a".repeat(64);
        assert_eq!(pubkey_of_identity(&format!("{key}:x1")), Some(key.as_str()));
        assert_eq!(pubkey_of_identity("alice"), None);
        assert_eq!(pubkey_of_identity(&"A".repeat(64)), None, "only lowercase hex is a pubkey");
    }

    #[test]
    fn event_ids_follow_nip01() {
        // Canonical form of an empty kind-1 note; the id must be sha256 of exactly this text.
        let pubkey = "b".repeat(64);
        let expected: [u8; 32] =
            Sha256::digest(format!("[0,\"{pubkey}\",1700000000,1,[],\"hi\\n\"]").as_bytes()).into();
        assert_eq!(event_id(&pubkey, 1_700_000_000, 1, &[], "hi\n"), expected);
    }
}
