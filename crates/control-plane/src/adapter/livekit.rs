//! A self-hosted LiveKit server reached with its API key and secret (DESIGN.md §4, first row;
//! CONTROL_PLANES.md §6 for RoomService).
//!
//! Joining mints a token locally ([`token::mint`]); rooms come from RoomService `ListRooms`
//! (signed with a `roomList` grant), participants and moderation from [`RoomAdmin`], each request
//! signed with the key and secret for exactly the grant it needs.
//!
//! The API key is not a secret: it is the `iss` claim of every token the server sees and shows in
//! its logs. It lives in the profile file; the API secret lives only in the keyring.

pub mod room_service;
pub mod token;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use room_service::RoomAdmin;
use room_service::RoomService;
use token::TokenRequest;

use crate::plane::{
    BackendKind, Capabilities, Capability, ControlPlane, JoinGrant, ModerationAction, PlaneParticipant, RoomSummary,
};
use crate::{PlaneError, Secret};

/// How long minted join tokens are valid; the session refreshes them before they expire.
pub const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// Non-secret settings, stored in the profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Signalling URL, `ws://` or `wss://`.
    pub url: String,
    /// The API key (the token's `iss`; public).
    pub api_key: String,
    /// The identity to join as.
    pub identity: String,
    /// The name others see; the identity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Secrets, stored only in the OS keyring.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub api_secret: Option<Secret>,
}

/// The keyring entry names of this backend's secrets.
pub const SECRET_NAMES: &[&str] = &["api-secret"];

/// A LiveKit server administered with its own key and secret.
#[derive(Debug)]
pub struct LivekitPlane {
    settings: Settings,
    api_secret: Secret,
}

impl LivekitPlane {
    /// Checks the settings; nothing is sent.
    ///
    /// Errors: [`PlaneError::InvalidInput`] for a URL that is not ws(s)://, an empty key or
    /// identity, or a missing secret.
    pub fn new(settings: Settings, secrets: Secrets) -> Result<Self, PlaneError> {
        if !(settings.url.starts_with("ws://") || settings.url.starts_with("wss://")) {
            return Err(PlaneError::InvalidInput {
                message: format!("the LiveKit URL must start with ws:// or wss://, got {:?}", settings.url),
            });
        }
        room_service::http_base(&settings.url)?;
        if settings.api_key.trim().is_empty() {
            return Err(PlaneError::InvalidInput { message: "the profile has no LiveKit API key".into() });
        }
        if settings.identity.trim().is_empty() {
            return Err(PlaneError::InvalidInput { message: "the profile has no identity to join as".into() });
        }
        let api_secret =
            secrets.api_secret.filter(|secret| !secret.is_empty()).ok_or_else(|| PlaneError::InvalidInput {
                message: "the profile's API secret is not in the keyring; add the profile again".into(),
            })?;
        Ok(LivekitPlane { settings, api_secret })
    }

    fn admin(&self, room: &str) -> Result<RoomAdmin, PlaneError> {
        RoomAdmin::with_api_key(&self.settings.url, &self.settings.api_key, &self.api_secret, room)
    }

    /// Replaces `ListRooms`' `num_participants` with a `ListParticipants` count, for the first
    /// [`COUNTED_ROOMS`] rooms, all at once. LiveKit keeps that field only eventually
    /// consistent (a room with two people in it was listed with 0 for seconds), and a list
    /// that says "0" beside a room people are talking in is wrong; where a count fails, the
    /// server's figure stays.
    async fn count_participants(&self, rooms: &mut [RoomSummary]) {
        let mut counts = tokio::task::JoinSet::new();
        for (index, room) in rooms.iter().enumerate().take(COUNTED_ROOMS) {
            let Ok(admin) = self.admin(&room.id) else { continue };
            counts.spawn(async move { (index, admin.participants().await.map(|people| people.len())) });
        }
        while let Some(joined) = counts.join_next().await {
            if let Ok((index, Ok(count))) = joined {
                rooms[index].participants = Some(u32::try_from(count).unwrap_or(u32::MAX));
            }
        }
    }
}

/// How many rooms [`LivekitPlane::list_rooms`] counts people in, one request each.
const COUNTED_ROOMS: usize = 32;

#[async_trait]
impl ControlPlane for LivekitPlane {
    fn kind(&self) -> BackendKind {
        BackendKind::Livekit
    }

    fn capabilities(&self) -> Capabilities {
        let basics = [Capability::ListRooms, Capability::Join, Capability::ListParticipants];
        Capabilities::new(basics.into_iter().chain(RoomAdmin::ACTIONS.into_iter().map(Capability::Moderate)))
    }

    async fn list_rooms(&self) -> Result<Vec<RoomSummary>, PlaneError> {
        let rooms =
            RoomService::with_keys(&self.settings.url, &self.settings.api_key, &self.api_secret)?.list_rooms().await?;
        let mut summaries: Vec<RoomSummary> = rooms
            .into_iter()
            .map(|room| RoomSummary {
                id: room.name.clone(),
                name: room.name,
                description: None,
                stage: false,
                participants: Some(room.num_participants),
                max_participants: (room.max_participants > 0).then_some(room.max_participants),
                can_manage: true,
            })
            .collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        self.count_participants(&mut summaries).await;
        Ok(summaries)
    }

    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        let request = TokenRequest {
            room: room.to_string(),
            identity: self.settings.identity.clone(),
            name: self.settings.display_name.clone(),
            admin: false,
            ttl: TOKEN_TTL,
        };
        let jwt = token::mint(&self.settings.api_key, self.api_secret.expose(), &request)?;
        Ok(JoinGrant {
            room_id: room.to_string(),
            room_name: room.to_string(),
            url: self.settings.url.clone(),
            token: jwt,
            e2ee_key: None,
            expires_at: Some(token::expiry_from_now(TOKEN_TTL)),
            heartbeat_every: None,
            role: None,
            notice: None,
        })
    }

    async fn participants(&self, grant: &JoinGrant) -> Result<Vec<PlaneParticipant>, PlaneError> {
        self.admin(&grant.room_id)?.participants().await
    }

    async fn moderate(&self, grant: &JoinGrant, action: ModerationAction, participant: &str) -> Result<(), PlaneError> {
        if !RoomAdmin::ACTIONS.contains(&action) {
            return Err(PlaneError::Unsupported { backend: self.kind().as_str(), action: action.as_str() });
        }
        self.admin(&grant.room_id)?.moderate(action, participant).await
    }
}
