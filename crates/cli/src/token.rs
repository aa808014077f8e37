//! `parley token`, and the join tokens `join` and `crowd` mint from an API key and secret.

use std::time::Duration;

use anyhow::Context as _;
use parley_core::token::{self, TokenRequest};

use crate::args::{Credentials, TokenArgs};
use crate::exit::{ExitKind, Failure, fail};

/// Prints a join token signed with the given API key and secret.
pub fn run(args: &TokenArgs) -> Result<(), Failure> {
    let jwt = mint(&args.credentials, &args.room, &args.identity, args.name.clone(), args.admin, args.ttl)?;
    println!("{jwt}");
    Ok(())
}

/// A join token for `identity` in `room`; the API key and secret must both be given.
pub fn mint(
    credentials: &Credentials,
    room: &str,
    identity: &str,
    name: Option<String>,
    admin: bool,
    ttl: u64,
) -> Result<String, Failure> {
    let (Some(key), Some(secret)) = (credentials.api_key.as_deref(), credentials.api_secret.as_deref()) else {
        return Err(fail(
            ExitKind::Failure,
            anyhow::anyhow!(
                "an API key and secret are needed (--api-key/--api-secret or LIVEKIT_API_KEY/LIVEKIT_API_SECRET)"
            ),
        ));
    };
    let request = TokenRequest {
        room: room.to_string(),
        identity: identity.to_string(),
        name,
        admin,
        ttl: Duration::from_secs(ttl),
    };
    token::mint(key, secret, &request).context("creating the token").map_err(|error| fail(ExitKind::Failure, error))
}
