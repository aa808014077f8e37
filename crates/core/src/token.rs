//! LiveKit access tokens for front ends that hold a token or an API key themselves (the CLI's
//! `--token` / `--api-key`): minting, and an early look at a token's claims so that the user gets
//! a clear error before the server is asked.
//!
//! Minting and reading claims are the `livekit` control plane's ([`livekit_token`]), which
//! profiles use too; this module only adds the checks a join makes of a token it was handed.

use parley_control_plane::PlaneError;
pub use parley_control_plane::adapter::livekit::token::TokenRequest;
use parley_control_plane::adapter::livekit::token::{self as livekit_token, TokenClaims};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Minting failed, or the token is not a LiveKit token; the sentence says which.
    #[error(transparent)]
    Plane(#[from] PlaneError),
    #[error("the access token expired {0} s ago; ask for a new one")]
    Expired(u64),
    #[error("the access token is for room {token_room:?}, not {wanted:?}")]
    WrongRoom { token_room: String, wanted: String },
}

/// Signs a join token with `api_key` / `api_secret`. Any thread.
///
/// Errors: [`TokenError::Plane`] for an empty key, secret, room or identity.
pub fn mint(api_key: &str, api_secret: &str, request: &TokenRequest) -> Result<String, TokenError> {
    Ok(livekit_token::mint(api_key, api_secret, request)?)
}

/// Reads a token's claims (unverified: only the server can verify it) and rejects it early when
/// it is expired or for another room than `wanted_room`.
pub fn inspect(token: &str, wanted_room: Option<&str>) -> Result<TokenClaims, TokenError> {
    let claims = TokenClaims::read(token)?;
    let now = livekit_token::now_unix();
    if let Some(expires_at) = claims.expires_at
        && expires_at < now
    {
        return Err(TokenError::Expired(now - expires_at));
    }
    if let Some(wanted) = wanted_room
        && !claims.room.is_empty()
        && claims.room != wanted
    {
        return Err(TokenError::WrongRoom { token_room: claims.room, wanted: wanted.to_string() });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECRET: &str = "a-secret-that-is-long-enough-for-livekit";

    fn request(room: &str, ttl: Duration) -> TokenRequest {
        TokenRequest { room: room.into(), identity: "alice".into(), name: None, admin: true, ttl }
    }

    #[test]
    fn a_minted_token_carries_room_identity_and_admin() {
        let token = mint("APIkey", SECRET, &request("lobby", Duration::from_secs(600))).expect("mint");
        let claims = inspect(&token, Some("lobby")).expect("valid");
        assert_eq!(claims.room, "lobby");
        assert_eq!(claims.identity, "alice");
        assert!(claims.admin, "--admin grants roomAdmin");
    }

    #[test]
    fn a_token_for_another_room_is_refused_with_both_names() {
        let token = mint("APIkey", SECRET, &request("other", Duration::from_secs(600))).expect("mint");
        let error = inspect(&token, Some("lobby")).expect_err("wrong room");
        let text = error.to_string();
        assert!(text.contains("other") && text.contains("lobby"), "{text}");
    }

    #[test]
    fn an_expired_token_is_refused_before_the_server_is_asked() {
        let token = mint("APIkey", SECRET, &request("lobby", Duration::from_secs(1))).expect("mint");
        assert!(inspect(&token, None).is_ok(), "a fresh token passes");
        std::thread::sleep(Duration::from_millis(2_100));
        let error = inspect(&token, None).expect_err("expired");
        assert!(matches!(error, TokenError::Expired(seconds) if seconds >= 1), "{error}");
    }

    #[test]
    fn garbage_is_not_a_token() {
        let error = inspect("not-a-jwt", None).expect_err("garbage");
        assert!(error.to_string().contains("not a LiveKit access token"), "{error}");
    }

    #[test]
    fn missing_credentials_are_an_error() {
        let error = mint("", "", &request("lobby", Duration::from_secs(600))).expect_err("no credentials");
        assert!(error.to_string().contains("an API key and secret are needed"), "{error}");
    }
}
