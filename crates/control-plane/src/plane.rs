//! The [`ControlPlane`] trait and the types every adapter shares.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{PlaneError, Secret};

/// Which backend a profile points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// A self-hosted LiveKit server with an API key and secret.
    Livekit,
    /// A Discourse forum with the Audioroom plugin.
    Audioroom,
    /// La Suite Meet.
    Meet,
    /// Matrix / Element Call's lk-jwt-service.
    LkJwt,
    /// A NIP-29 Nostr relay with LiveKit spaces.
    Nip29,
    /// A disTokoloshe server.
    Distokoloshe,
    /// Any URL that hands out a token.
    TokenEndpoint,
}

impl BackendKind {
    pub const ALL: [BackendKind; 7] = [
        BackendKind::Livekit,
        BackendKind::Audioroom,
        BackendKind::Meet,
        BackendKind::LkJwt,
        BackendKind::Nip29,
        BackendKind::Distokoloshe,
        BackendKind::TokenEndpoint,
    ];

    /// The name used on the command line and in profile files.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Livekit => "livekit",
            BackendKind::Audioroom => "audioroom",
            BackendKind::Meet => "meet",
            BackendKind::LkJwt => "lk-jwt",
            BackendKind::Nip29 => "nip29",
            BackendKind::Distokoloshe => "distokoloshe",
            BackendKind::TokenEndpoint => "token-endpoint",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = PlaneError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        BackendKind::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| PlaneError::InvalidInput {
            message: format!(
                "unknown backend {text:?}; expected one of: {}",
                BackendKind::ALL.map(BackendKind::as_str).join(", ")
            ),
        })
    }
}

/// A moderation action on another participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModerationAction {
    /// Mute their microphone track (they can unmute themselves).
    Mute,
    /// Unmute their track (LiveKit needs `room.enable_remote_unmute`).
    Unmute,
    /// Take away their right to publish until restored.
    HardMute,
    /// Give back the right to publish after a hard mute.
    Restore,
    /// Remove them from the room (temporarily, where the backend distinguishes).
    Kick,
    /// Allow a kicked user back before the kick expires.
    Unkick,
    /// Remove them and refuse them for good.
    Ban,
    Unban,
    /// Stage rooms: make a listener a speaker.
    InviteToSpeak,
    /// Stage rooms: make a speaker a listener.
    MoveToAudience,
    MakeModerator,
    /// Stop their screen share (LiveKit: mute their published screen-share track; their client
    /// ends the share).
    StopShare,
}

impl ModerationAction {
    pub const ALL: [ModerationAction; 12] = [
        ModerationAction::Mute,
        ModerationAction::Unmute,
        ModerationAction::HardMute,
        ModerationAction::Restore,
        ModerationAction::Kick,
        ModerationAction::Unkick,
        ModerationAction::Ban,
        ModerationAction::Unban,
        ModerationAction::InviteToSpeak,
        ModerationAction::MoveToAudience,
        ModerationAction::MakeModerator,
        ModerationAction::StopShare,
    ];

    /// The command-line spelling (`parley mod … hard-mute <participant>`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationAction::Mute => "mute",
            ModerationAction::Unmute => "unmute",
            ModerationAction::HardMute => "hard-mute",
            ModerationAction::Restore => "restore",
            ModerationAction::Kick => "kick",
            ModerationAction::Unkick => "unkick",
            ModerationAction::Ban => "ban",
            ModerationAction::Unban => "unban",
            ModerationAction::InviteToSpeak => "invite-to-speak",
            ModerationAction::MoveToAudience => "move-to-audience",
            ModerationAction::MakeModerator => "make-moderator",
            ModerationAction::StopShare => "stop-share",
        }
    }

    /// Whether the UI must ask for confirmation first.
    pub fn is_destructive(self) -> bool {
        matches!(self, ModerationAction::Kick | ModerationAction::Ban | ModerationAction::HardMute)
    }
}

impl std::fmt::Display for ModerationAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ModerationAction {
    type Err = PlaneError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ModerationAction::ALL.into_iter().find(|action| action.as_str() == text).ok_or_else(|| {
            PlaneError::InvalidInput {
                message: format!(
                    "unknown moderation action {text:?}; expected one of: {}",
                    ModerationAction::ALL.map(ModerationAction::as_str).join(", ")
                ),
            }
        })
    }
}

/// Something an adapter can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "action")]
pub enum Capability {
    ListRooms,
    Join,
    /// The backend needs `heartbeat` calls while in a room (see [`JoinGrant::heartbeat_every`]).
    Heartbeat,
    Leave,
    ListParticipants,
    /// Raise / lower hand (stage rooms).
    RaiseHand,
    /// Report own mute/deafen state to the backend.
    ReportSelfState,
    /// Pushes events (participants, role changes, kicked) through [`ControlPlane::watch`].
    Events,
    /// Opens invite links ([`ControlPlane::open_invite`]).
    OpenInvite,
    Moderate(ModerationAction),
}

/// What an adapter can do, as configured (some depend on the profile: a token endpoint handing
/// out `roomAdmin` tokens can moderate through RoomService).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities(pub BTreeSet<Capability>);

impl Capabilities {
    pub fn new(capabilities: impl IntoIterator<Item = Capability>) -> Self {
        Capabilities(capabilities.into_iter().collect())
    }

    pub fn supports(&self, capability: Capability) -> bool {
        self.0.contains(&capability)
    }

    pub fn can_moderate(&self, action: ModerationAction) -> bool {
        self.supports(Capability::Moderate(action))
    }

    /// The moderation actions offered, in menu order.
    pub fn moderation(&self) -> Vec<ModerationAction> {
        ModerationAction::ALL.into_iter().filter(|action| self.can_moderate(*action)).collect()
    }
}

/// A room as a backend lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// What `join` takes (backend id or slug).
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// `true` for stage rooms (speakers and listeners).
    pub stage: bool,
    /// How many people are in it now, when the backend says.
    pub participants: Option<u32>,
    pub max_participants: Option<u32>,
    /// Whether the current user may moderate it.
    pub can_manage: bool,
}

/// What a successful join hands to the session: where to connect and with what. Neither
/// serializable nor shown by `Debug` with its secrets: a log line or a JSON dump of it cannot
/// leak the token or the key.
#[derive(Clone, PartialEq)]
pub struct JoinGrant {
    /// The backend's room id (what `join` was given, or its canonical id).
    pub room_id: String,
    /// The room's display name.
    pub room_name: String,
    /// LiveKit signalling URL (`ws://` / `wss://`), absolute.
    pub url: String,
    /// LiveKit access token. Secret: never logged (the `Debug` impl redacts it).
    pub token: String,
    /// End-to-end encryption passphrase the backend gave (disTokoloshe). Secret.
    pub e2ee_key: Option<String>,
    /// When the token expires (seconds since the Unix epoch), if known.
    pub expires_at: Option<u64>,
    /// How often the session must call `heartbeat`, if the backend needs it.
    pub heartbeat_every: Option<Duration>,
    /// The user's role in the room as the backend reported it ("speaker", "listener", …).
    pub role: Option<String>,
    /// Something the user should know about this join, in a sentence (e.g. why they join as a
    /// listener). Core reports it as a warning when the call starts.
    pub notice: Option<String>,
}

impl std::fmt::Debug for JoinGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinGrant")
            .field("room_id", &self.room_id)
            .field("room_name", &self.room_name)
            .field("url", &self.url)
            .field("token", &"[redacted]")
            .field("e2ee_key", &self.e2ee_key.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .field("heartbeat_every", &self.heartbeat_every)
            .field("role", &self.role)
            .field("notice", &self.notice)
            .finish()
    }
}

/// A participant as the backend sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaneParticipant {
    /// The LiveKit identity this participant joins with.
    pub identity: String,
    pub name: String,
    pub role: Option<String>,
    pub muted: Option<bool>,
    pub hand_raised: Option<bool>,
    pub avatar_url: Option<String>,
    /// They say they hear nothing (self-reported; `None` when the backend does not tell).
    #[serde(default)]
    pub deafened: Option<bool>,
    /// A moderator took away their right to speak (`None` when the backend does not tell; the
    /// LiveKit permission the call sees says it for every backend).
    #[serde(default)]
    pub hard_muted: Option<bool>,
}

/// Pushed by a backend while the user is in a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum PlaneEvent {
    Participants {
        participants: Vec<PlaneParticipant>,
    },
    RoleChanged {
        identity: String,
        role: String,
    },
    /// The user was kicked or banned: the session must disconnect and not rejoin.
    Removed {
        reason: String,
    },
    /// A followed room went live (desktop notification).
    RoomLive {
        room_id: String,
        room_name: String,
    },
    /// The backend's event channel failed and is retrying (the call itself goes on).
    Degraded {
        message: String,
    },
}

/// One community backend. Every method may be called from any tokio task; none blocks.
///
/// Methods a backend does not offer return [`PlaneError::Unsupported`] (the defaults below), and
/// [`ControlPlane::capabilities`] does not list them.
#[async_trait]
pub trait ControlPlane: Send + Sync {
    fn kind(&self) -> BackendKind;

    fn capabilities(&self) -> Capabilities;

    /// Checks the saved credentials with the server where the backend signs in with them (a
    /// password): `Ok(true)` when the server accepted them, `Ok(false)` when the backend has
    /// nothing to check before a join. Saving a profile calls it so that a wrong password is
    /// refused then, not at the first join.
    ///
    /// Errors: [`PlaneError::Unauthorized`] when refused; [`PlaneError::Unreachable`] and the
    /// other transport errors when the server could not say.
    async fn check_credentials(&self) -> Result<bool, PlaneError> {
        Ok(false)
    }

    /// Creates the account the saved credentials name, where the backend lets clients register
    /// (disTokoloshe); the account is signed in afterwards.
    ///
    /// Errors: [`PlaneError::Unsupported`] elsewhere; the server's refusal
    /// ([`PlaneError::Rejected`] for a taken name or a weak password).
    async fn register(&self, _display_name: &str) -> Result<(), PlaneError> {
        Err(self.unsupported("creating an account"))
    }

    /// Secrets the adapter obtained itself (a sign-in token) that are worth keeping with the
    /// profile, by keyring name.
    fn obtained_secrets(&self) -> Vec<(&'static str, Secret)> {
        Vec::new()
    }

    async fn list_rooms(&self) -> Result<Vec<RoomSummary>, PlaneError> {
        Err(self.unsupported("listing rooms"))
    }

    /// Asks the backend for a token to `room` (an id, slug or name, as the backend names rooms).
    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError>;

    /// Keeps presence alive. Called every `grant.heartbeat_every`.
    async fn heartbeat(&self, _grant: &JoinGrant) -> Result<(), PlaneError> {
        Ok(())
    }

    /// A fresh grant for the same room before the token expires. The default joins again.
    async fn refresh(&self, grant: &JoinGrant) -> Result<JoinGrant, PlaneError> {
        self.join(&grant.room_id).await
    }

    /// Tells the backend the user left. Best effort on exit.
    async fn leave(&self, _grant: &JoinGrant) -> Result<(), PlaneError> {
        Ok(())
    }

    /// Leaves a room by id without holding its grant (the "already in another room" switch).
    async fn leave_room(&self, _room_id: &str) -> Result<(), PlaneError> {
        Err(self.unsupported("leaving another room"))
    }

    /// Resolves an invite link (its URL, or the token in it) to the room it invites to; the
    /// backend may make the user a member on the way. Join the returned room's `id` next.
    async fn open_invite(&self, _invite: &str) -> Result<RoomSummary, PlaneError> {
        Err(self.unsupported("invite links"))
    }

    async fn participants(&self, _grant: &JoinGrant) -> Result<Vec<PlaneParticipant>, PlaneError> {
        Err(self.unsupported("listing participants"))
    }

    async fn set_hand(&self, _grant: &JoinGrant, _raised: bool) -> Result<(), PlaneError> {
        Err(self.unsupported("raising hands"))
    }

    /// Reports the user's own mute/deafen state where the backend shows it to others.
    async fn report_self_state(&self, _grant: &JoinGrant, _muted: bool, _deafened: bool) -> Result<(), PlaneError> {
        Ok(())
    }

    /// Applies `action` to `participant` (a LiveKit identity, or the backend's user name where
    /// it has one).
    async fn moderate(
        &self,
        _grant: &JoinGrant,
        action: ModerationAction,
        _participant: &str,
    ) -> Result<(), PlaneError> {
        Err(PlaneError::Unsupported { backend: self.kind().as_str(), action: action.as_str() })
    }

    /// Streams backend events for the room into `events` until the receiver is dropped or the
    /// session ends. Returns `Ok` at once for backends without events.
    async fn watch(&self, _grant: &JoinGrant, _events: mpsc::Sender<PlaneEvent>) -> Result<(), PlaneError> {
        Ok(())
    }

    /// The error for an action this backend does not offer.
    fn unsupported(&self, action: &'static str) -> PlaneError {
        PlaneError::Unsupported { backend: self.kind().as_str(), action }
    }
}
