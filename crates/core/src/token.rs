//! LiveKit access tokens: minting from an API key and secret, and reading a token's claims
//! (without verifying them) so that the user gets a clear error before the server is asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livekit_api::access_token::Claims;
use parley_control_plane::adapter::livekit::token::{self as livekit_token, TokenRequest as MintRequest};

/// What a minted token allows.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub room: String,
    pub identity: String,
    pub name: Option<String>,
    /// Grants `roomAdmin` for this room: RoomService moderation (mute, remove, permissions).
    pub admin: bool,
    pub ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("an API key and secret are needed to create a token")]
    MissingCredentials,
    #[error("the room and identity must not be empty")]
    MissingField,
    /// Already reads "cannot create the token: …".
    #[error("{0}")]
    Mint(String),
    #[error("this is not a LiveKit access token")]
    NotAToken,
    #[error("the access token expired {0} s ago; ask for a new one")]
    Expired(u64),
    #[error("the access token is for room {token_room:?}, not {wanted:?}")]
    WrongRoom { token_room: String, wanted: String },
}

/// Signs a join token with `api_key` / `api_secret`.
pub fn mint(api_key: &str, api_secret: &str, request: &TokenRequest) -> Result<String, TokenError> {
    if api_key.is_empty() || api_secret.is_empty() {
        return Err(TokenError::MissingCredentials);
    }
    if request.room.is_empty() || request.identity.is_empty() {
        return Err(TokenError::MissingField);
    }
    // One minting implementation: the `livekit` control plane's, which profiles use too.
    let request = MintRequest {
        room: request.room.clone(),
        identity: request.identity.clone(),
        name: request.name.clone(),
        admin: request.admin,
        ttl: request.ttl,
    };
    livekit_token::mint(api_key, api_secret, &request).map_err(|error| TokenError::Mint(error.to_string()))
}

/// What a token says about itself (unverified: only the server can verify it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSummary {
    pub room: String,
    pub identity: String,
    pub admin: bool,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Reads a token's claims and rejects it early when it is expired or for another room.
pub fn inspect(token: &str, wanted_room: Option<&str>) -> Result<TokenSummary, TokenError> {
    let claims = Claims::from_unverified(token).map_err(|_| TokenError::NotAToken)?;
    let summary = TokenSummary {
        room: claims.video.room.clone(),
        identity: claims.sub.clone(),
        admin: claims.video.room_admin,
        expires_at: claims.exp as u64,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    if summary.expires_at != 0 && summary.expires_at < now {
        return Err(TokenError::Expired(now - summary.expires_at));
    }
    if let Some(wanted) = wanted_room
        && !summary.room.is_empty()
        && summary.room != wanted
    {
        return Err(TokenError::WrongRoom { token_room: summary.room, wanted: wanted.to_string() });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(room: &str) -> TokenRequest {
        TokenRequest {
            room: room.into(),
            identity: "alice".into(),
            name: None,
            admin: true,
            ttl: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_minted_token_carries_room_identity_and_admin() {
        let token = mint("APIkey", "a-secret-that-is-long-enough-for-livekit", &request("lobby")).expect("mint");
        let summary = inspect(&token, Some("lobby")).expect("valid");
        assert_eq!(summary.room, "lobby");
        assert_eq!(summary.identity, "alice");
        assert!(summary.admin, "--admin grants roomAdmin");
    }

    #[test]
    fn a_token_for_another_room_is_refused_with_both_names() {
        let token = mint("APIkey", "a-secret-that-is-long-enough-for-livekit", &request("other")).expect("mint");
        let error = inspect(&token, Some("lobby")).expect_err("wrong room");
        let text = error.to_string();
        assert!(text.contains("other") && text.contains("lobby"), "{text}");
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert!(matches!(inspect("not-a-jwt", None), Err(TokenError::NotAToken)));
    }

    #[test]
    fn missing_credentials_are_an_error() {
        assert!(matches!(mint("", "", &request("lobby")), Err(TokenError::MissingCredentials)));
    }
}
