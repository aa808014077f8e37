//! The site's data — accounts, rooms and their accesses, lobby waiters, the simulated LiveKit
//! rooms, forced failures and the requests it saw — and the lookups and changes read from it.
//! [`Shared`] is what every request holds: the [`Site`] behind a mutex and the LiveKit keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::Value;

use super::python::{python_json, slugify};
use super::{AccessLevel, Present, Seen};
use crate::LivekitKeys;

/// A Meet account (`User`).
#[derive(Debug, Clone)]
pub(super) struct User {
    /// The database UUID, which `accesses[].user.id` shows.
    pub(super) id: String,
    /// The OIDC subject, which is also the LiveKit identity.
    pub(super) sub: String,
    pub(super) email: Option<String>,
    pub(super) full_name: Option<String>,
    pub(super) short_name: Option<String>,
}

impl User {
    /// `str(user)`: `email or admin_email or str(id)` (accounts made here have no admin e-mail).
    pub(super) fn display(&self) -> String {
        self.email.clone().unwrap_or_else(|| self.id.clone())
    }
}

/// A `ResourceAccess`.
#[derive(Debug, Clone)]
pub(super) struct Access {
    pub(super) id: String,
    pub(super) sub: String,
    pub(super) role: String,
}

#[derive(Debug, Clone)]
pub(super) struct Room {
    pub(super) id: String,
    pub(super) slug: String,
    pub(super) name: String,
    pub(super) access_level: AccessLevel,
    pub(super) configuration: Value,
    pub(super) pin_code: Option<String>,
    /// Newest first (`ResourceAccess.Meta.ordering = ("-created_at",)`).
    pub(super) accesses: Vec<Access>,
}

impl Room {
    pub(super) fn role(&self, sub: Option<&str>) -> Option<String> {
        let sub = sub?;
        self.accesses.iter().find(|access| access.sub == sub).map(|access| access.role.clone())
    }

    pub(super) fn is_admin(&self, sub: Option<&str>) -> bool {
        matches!(self.role(sub).as_deref(), Some("owner" | "administrator"))
    }

    pub(super) fn is_public(&self) -> bool {
        self.access_level == AccessLevel::Public
    }

    /// `configuration.get("can_publish_sources")`, when it is a list of strings.
    pub(super) fn configured_sources(&self) -> Option<Vec<String>> {
        serde_json::from_value(self.configuration.get("can_publish_sources")?.clone()).ok()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Waiter {
    pub(super) username: String,
    pub(super) color: String,
    pub(super) status: &'static str,
    pub(super) expires: Instant,
}

pub(super) struct Site {
    pub(super) livekit_url: String,
    pub(super) session_cookie: String,
    pub(super) allow_unregistered_rooms: bool,
    pub(super) telephony: bool,
    pub(super) users: Vec<User>,
    /// session id → sub
    pub(super) sessions: HashMap<String, String>,
    pub(super) rooms: Vec<Room>,
    /// (room id, lobby participant id) → waiter
    pub(super) lobby: HashMap<(String, String), Waiter>,
    /// room id → participants
    pub(super) roster: HashMap<String, Vec<Present>>,
    pub(super) notifications: u32,
    pub(super) expired_waiters: u32,
    pub(super) requests: Vec<Seen>,
    pub(super) fail_next: HashMap<String, (u16, String)>,
}

impl Site {
    /// `RoomViewSet.get_object`'s lookup: a UUID is the id, anything else a slug to slugify.
    pub(super) fn find_room(&self, key: &str) -> Option<Room> {
        match uuid::Uuid::parse_str(key) {
            Ok(id) => self.rooms.iter().find(|room| uuid::Uuid::parse_str(&room.id).ok() == Some(id)).cloned(),
            Err(_) => {
                let slug = slugify(key);
                self.rooms.iter().find(|room| room.slug == slug).cloned()
            }
        }
    }

    pub(super) fn room_mut(&mut self, key: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|room| room.id == key || room.slug == key)
    }

    pub(super) fn user(&self, sub: &str) -> Option<&User> {
        self.users.iter().find(|user| user.sub == sub)
    }

    pub(super) fn ensure_user(&mut self, sub: &str) {
        if self.user(sub).is_none() {
            self.users.push(User {
                id: uuid::Uuid::new_v4().to_string(),
                sub: sub.to_string(),
                email: None,
                full_name: None,
                short_name: None,
            });
        }
    }

    pub(super) fn purge_lobby(&mut self) {
        let now = Instant::now();
        let before = self.lobby.len();
        self.lobby.retain(|_, waiter| waiter.expires > now);
        let expired = before - self.lobby.len();
        self.expired_waiters += u32::try_from(expired).unwrap_or(u32::MAX);
    }

    pub(super) fn in_meeting(&self, room: &str, identity: &str) -> bool {
        self.roster.get(room).is_some_and(|roster| roster.iter().any(|present| present.identity == identity))
    }

    pub(super) fn present_mut(&mut self, room: &str, identity: &str) -> Option<&mut Present> {
        self.roster.get_mut(room)?.iter_mut().find(|present| present.identity == identity)
    }

    /// `ParticipantsManagement.update` → LiveKit `UpdateParticipant`: metadata always
    /// (`json.dumps(metadata)`), attributes merged (an empty value deletes), permission replaced,
    /// a non-empty name set. `false` when LiveKit does not know the participant.
    pub(super) fn update_participant(
        &mut self,
        room: &str,
        identity: &str,
        metadata: Option<&Value>,
        attributes: &[(String, String)],
        permission: Option<Value>,
        name: Option<&str>,
    ) -> bool {
        let Some(present) = self.present_mut(room, identity) else { return false };
        present.metadata = python_json(metadata.unwrap_or(&Value::Null));
        for (key, value) in attributes {
            if value.is_empty() {
                present.attributes.remove(key);
            } else {
                present.attributes.insert(key.clone(), value.clone());
            }
        }
        if let Some(permission) = permission {
            present.permission = Some(permission);
        }
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            present.name = name.to_string();
        }
        true
    }
}

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) keys: LivekitKeys,
    pub(super) site: Arc<Mutex<Site>>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Site> {
        self.site.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
