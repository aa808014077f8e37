//! LiveKit access tokens (CONTROL_PLANES.md §6.4): minting join tokens from an API key and
//! secret, and reading what a token (from any backend) says about itself.
//!
//! Reading is unverified on purpose: only the LiveKit server can verify a token, but its claims
//! tell us early which room it is for, when it expires and whether it carries `roomAdmin`
//! (RoomService moderation).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_api::access_token::{AccessToken, VideoGrants};

use crate::PlaneError;

/// What a minted join token allows.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub room: String,
    pub identity: String,
    /// Display name; the identity when `None`.
    pub name: Option<String>,
    /// Grants `roomAdmin` for this room: RoomService moderation (mute, remove, permissions).
    pub admin: bool,
    pub ttl: Duration,
}

/// Signs a join token with `api_key` / `api_secret`. Any thread.
///
/// Errors: [`PlaneError::InvalidInput`] for an empty key, secret, room or identity.
pub fn mint(api_key: &str, api_secret: &str, request: &TokenRequest) -> Result<String, PlaneError> {
    if api_key.is_empty() || api_secret.is_empty() {
        return Err(PlaneError::InvalidInput { message: "an API key and secret are needed to create a token".into() });
    }
    if request.room.is_empty() || request.identity.is_empty() {
        return Err(PlaneError::InvalidInput { message: "the room and identity must not be empty".into() });
    }
    let grants = VideoGrants {
        room_join: true,
        room: request.room.clone(),
        room_admin: request.admin,
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        // Push-to-talk state travels as a participant attribute (DESIGN.md §3).
        can_update_own_metadata: Some(true),
        ..Default::default()
    };
    AccessToken::with_api_key(api_key, api_secret)
        .with_identity(&request.identity)
        .with_name(request.name.as_deref().unwrap_or(&request.identity))
        .with_grants(grants)
        .with_ttl(request.ttl)
        .to_jwt()
        // The library's error text names neither the key nor the secret.
        .map_err(|error| PlaneError::InvalidInput { message: format!("cannot create the token: {error}") })
}

/// What a token says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The room it admits to (`video.room`); may be empty for admin-only tokens.
    pub room: String,
    /// `sub`: the identity it joins as.
    pub identity: String,
    /// `video.roomAdmin`: RoomService moderation of [`TokenClaims::room`].
    pub admin: bool,
    /// `exp`, seconds since the Unix epoch; `None` when the token has none.
    pub expires_at: Option<u64>,
    /// `video.canPublish`; `None` when the token leaves it to LiveKit's default (allowed).
    pub can_publish: Option<bool>,
    /// `metadata`, as the backend wrote it (often JSON); empty when absent.
    pub metadata: String,
}

impl TokenClaims {
    /// Reads `token`'s claims without verifying its signature.
    ///
    /// Not through `livekit_api::access_token::Claims`: it refuses tokens the LiveKit server
    /// accepts, such as La Suite Meet's, whose `attributes` hold a JSON `null` (Go reads it as
    /// an empty string). Only the fields we use are read, each leniently.
    ///
    /// Errors: [`PlaneError::Malformed`] when it is not a LiveKit JWT.
    pub fn read(token: &str) -> Result<TokenClaims, PlaneError> {
        use base64::Engine as _;
        let malformed =
            || PlaneError::Malformed { detail: "the token handed out is not a LiveKit access token".into() };
        let mut parts = token.trim().split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| malformed())?;
        let claims: wire::Claims = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        let video = claims.video.unwrap_or_default();
        Ok(TokenClaims {
            room: video.room.unwrap_or_default(),
            identity: claims.sub.unwrap_or_default(),
            admin: video.room_admin.unwrap_or(false),
            expires_at: claims.exp.filter(|exp| *exp > 0.0).map(|exp| exp as u64),
            can_publish: video.can_publish,
            metadata: claims.metadata.unwrap_or_default(),
        })
    }
}

/// The JWT payload as LiveKit reads it: every field optional, `null` as absent.
mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct Claims {
        pub(super) sub: Option<String>,
        pub(super) exp: Option<f64>,
        pub(super) metadata: Option<String>,
        pub(super) video: Option<Video>,
    }

    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Video {
        pub(super) room: Option<String>,
        pub(super) room_admin: Option<bool>,
        pub(super) can_publish: Option<bool>,
    }
}

/// Seconds since the Unix epoch, `ttl` from now.
pub fn expiry_from_now(ttl: Duration) -> u64 {
    now_unix() + ttl.as_secs()
}

/// Seconds since the Unix epoch (0 if the clock is before 1970, which only a broken clock is).
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-secret-that-is-long-enough-for-livekit";

    fn request(admin: bool) -> TokenRequest {
        TokenRequest {
            room: "lobby".into(),
            identity: "alice".into(),
            name: None,
            admin,
            ttl: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_minted_token_reads_back_with_room_identity_admin_and_expiry() {
        let token = mint("APIkey", SECRET, &request(true)).expect("mint");
        let claims = TokenClaims::read(&token).expect("claims");
        assert_eq!((claims.room.as_str(), claims.identity.as_str(), claims.admin), ("lobby", "alice", true));
        let expires = claims.expires_at.expect("an expiry");
        assert!(expires.abs_diff(now_unix() + 600) <= 5, "expiry should be 600 s from now, got {expires}");
        let plain = TokenClaims::read(&mint("APIkey", SECRET, &request(false)).expect("mint")).expect("claims");
        assert!(!plain.admin, "a join token without admin carries no roomAdmin");
    }

    #[test]
    fn empty_credentials_and_garbage_tokens_are_refused() {
        assert_eq!(mint("", "", &request(false)).unwrap_err().code(), "invalid_input");
        assert_eq!(TokenClaims::read("not-a-jwt").unwrap_err().code(), "malformed_response");
        assert_eq!(TokenClaims::read("a.bm90IGpzb24.c").unwrap_err().code(), "malformed_response", "not JSON");
    }

    #[test]
    fn a_token_with_null_attributes_is_read_as_livekit_reads_it() {
        use base64::Engine as _;
        // La Suite Meet leaves a missing role as `"room_role": null` in the attributes.
        let payload = br#"{"sub":"u1","exp":1900000000,"video":{"room":"abc","roomJoin":true,"canPublish":false},
            "attributes":{"room_role":null,"color":"red"},"metadata":null}"#;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let token = format!("{}.{}.sig", encode(br#"{"alg":"HS256"}"#), encode(payload));
        let claims = TokenClaims::read(&token).expect("claims");
        assert_eq!((claims.room.as_str(), claims.identity.as_str()), ("abc", "u1"));
        assert_eq!((claims.expires_at, claims.can_publish, claims.admin), (Some(1_900_000_000), Some(false), false));
        assert_eq!(claims.metadata, "");
    }
}
