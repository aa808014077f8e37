//! What the UI lists before and around a call: saved profiles, the backends it can add, a
//! profile's rooms, and the sound devices. Plain data with TypeScript twins; no secret ever
//! appears in these types except [`ProfileInput::secrets`], which goes straight to the keyring.

use std::collections::BTreeMap;

use parley_control_plane::profile::{BackendSettings, Profile, secret_names, server_field};
use parley_control_plane::{BackendKind, Capability, RoomSummary, Secret};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::error::{ClientError, ErrorCode};

/// A community backend (mirrors the control plane's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Livekit,
    Audioroom,
    Meet,
    LkJwt,
    Nip29,
    Distokoloshe,
    TokenEndpoint,
}

impl Backend {
    pub fn kind(self) -> BackendKind {
        match self {
            Backend::Livekit => BackendKind::Livekit,
            Backend::Audioroom => BackendKind::Audioroom,
            Backend::Meet => BackendKind::Meet,
            Backend::LkJwt => BackendKind::LkJwt,
            Backend::Nip29 => BackendKind::Nip29,
            Backend::Distokoloshe => BackendKind::Distokoloshe,
            Backend::TokenEndpoint => BackendKind::TokenEndpoint,
        }
    }

    pub fn from_kind(kind: BackendKind) -> Backend {
        match kind {
            BackendKind::Livekit => Backend::Livekit,
            BackendKind::Audioroom => Backend::Audioroom,
            BackendKind::Meet => Backend::Meet,
            BackendKind::LkJwt => Backend::LkJwt,
            BackendKind::Nip29 => Backend::Nip29,
            BackendKind::Distokoloshe => Backend::Distokoloshe,
            BackendKind::TokenEndpoint => Backend::TokenEndpoint,
        }
    }
}

/// What the add-server form needs to know about a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct BackendForm {
    pub backend: Backend,
    /// The settings field holding the server address (`url`, `homeserver_url`, …).
    pub server_field: String,
    /// The keyring entries this backend takes (`api-secret`, `user-api-key`, …).
    pub secret_names: Vec<String>,
    /// The form may create the account on the server (disTokoloshe).
    pub can_register: bool,
}

impl BackendForm {
    pub fn all() -> Vec<BackendForm> {
        BackendKind::ALL
            .into_iter()
            .map(|kind| BackendForm {
                backend: Backend::from_kind(kind),
                server_field: server_field(kind).to_string(),
                secret_names: secret_names(kind).iter().map(|name| name.to_string()).collect(),
                can_register: parley_control_plane::profile::offers_registration(kind),
            })
            .collect()
    }
}

/// A saved profile, without its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSummary {
    pub name: String,
    pub backend: Backend,
    /// The server address, for the sidebar.
    pub server: String,
    /// The profile's non-secret settings by field name (for editing).
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Unencrypted connections to other machines are allowed (the sidebar warns).
    pub insecure: bool,
}

impl ProfileSummary {
    pub fn of(profile: &Profile) -> ProfileSummary {
        let fields = match serde_json::to_value(&profile.settings) {
            Ok(serde_json::Value::Object(mut map)) => {
                // The tag is `backend`, shown separately.
                map.remove("backend");
                map.into_iter().collect()
            }
            _ => BTreeMap::new(),
        };
        ProfileSummary {
            name: profile.name.clone(),
            backend: Backend::from_kind(profile.kind()),
            server: profile.settings.server().to_string(),
            fields,
            insecure: profile.insecure,
        }
    }
}

/// A profile to save. Secrets are stored in the OS keyring and nowhere else.
#[derive(Clone, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ProfileInput {
    pub name: String,
    pub backend: Backend,
    /// Settings by field name (`url`, `api_key`, `identity`, …).
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Secrets by keyring name (`api-secret`, …).
    pub secrets: BTreeMap<String, String>,
    /// Overwrite a profile of the same name.
    #[serde(default)]
    pub replace: bool,
    /// Create the account on the server first (backends with registration: disTokoloshe).
    #[serde(default)]
    pub register: bool,
    /// Allow unencrypted (http:// / ws://) connections to another machine; the form warns.
    #[serde(default)]
    pub insecure: bool,
}

impl std::fmt::Debug for ProfileInput {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProfileInput")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("fields", &self.fields)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl ProfileInput {
    /// The profile and its secrets, checked by the backend's settings type.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] for a missing or unknown field.
    pub fn into_parts(self) -> Result<(Profile, BTreeMap<String, Secret>), ClientError> {
        let settings = BackendSettings::from_fields(self.backend.kind(), self.fields.into_iter().collect())?;
        let secrets = self
            .secrets
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name, Secret::new(value)))
            .collect();
        Ok((Profile { name: self.name, settings, insecure: self.insecure }, secrets))
    }
}

/// A room as the room list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct RoomEntry {
    /// What `join_room` takes.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Speakers and listeners.
    pub stage: bool,
    pub participants: Option<u32>,
    pub max_participants: Option<u32>,
    /// We may moderate it.
    pub can_manage: bool,
}

impl From<RoomSummary> for RoomEntry {
    fn from(room: RoomSummary) -> RoomEntry {
        RoomEntry {
            id: room.id,
            name: room.name,
            description: room.description,
            stage: room.stage,
            participants: room.participants,
            max_participants: room.max_participants,
            can_manage: room.can_manage,
        }
    }
}

/// What a profile's backend can do, for the UI to offer or hide features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct BackendFeatures {
    pub list_rooms: bool,
    pub raise_hand: bool,
}

impl BackendFeatures {
    pub fn of(capabilities: &parley_control_plane::Capabilities) -> BackendFeatures {
        BackendFeatures {
            list_rooms: capabilities.supports(Capability::ListRooms),
            raise_hand: capabilities.supports(Capability::RaiseHand),
        }
    }
}

/// A sound device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AudioDevice {
    /// What the settings store (`inputDevice`, `outputDevice`).
    pub id: String,
    pub name: String,
    pub input: bool,
    pub is_default: bool,
}

impl AudioDevice {
    /// Every input and output device the system reports. Blocking (device enumeration).
    ///
    /// Errors: [`ErrorCode::Device`].
    pub fn list() -> Result<Vec<AudioDevice>, ClientError> {
        let devices = parley_audio::device::list_devices()?;
        Ok(devices
            .into_iter()
            .map(|device| AudioDevice {
                id: device.id,
                name: device.name,
                input: matches!(device.direction, parley_audio::device::Direction::Input),
                is_default: device.is_default,
            })
            .collect())
    }
}

/// Keeps `ErrorCode` in this module's vocabulary for callers matching on it.
pub(crate) fn invalid(message: impl Into<String>) -> ClientError {
    ClientError::new(ErrorCode::InvalidInput, message)
}
