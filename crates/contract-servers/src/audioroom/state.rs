//! The forum's data — users and their keys, rooms, memberships, presence, kicks and bans,
//! rate-limit usage, forced answers, the requests it saw — and the rules read from it: Guardian's
//! manage and join permissions, the join-time role, presence's TTL, the per-key rate limits.
//!
//! [`Shared`] is what every handler holds: the [`Forum`] behind a mutex, the notifier that wakes
//! held MessageBus polls, and the LiveKit keys.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;

use super::{
    DEFAULT_LONG_POLL, DEFAULT_PRESENCE_TTL, DEFAULT_REQUESTS_PER_DAY, DEFAULT_REQUESTS_PER_MINUTE, Endpoint, Forced,
    IssuedKey, LivekitUpdate, Presence, SeenRequest, bus, responses,
};
use crate::LivekitKeys;

pub(super) struct Shared {
    state: Mutex<Forum>,
    /// Wakes held MessageBus polls when something is published.
    pub(super) published: Notify,
    pub(super) keys: LivekitKeys,
}

impl Shared {
    /// An empty forum: no users, no rooms, LiveKit configured with `keys`, Discourse's defaults.
    pub(super) fn new(keys: LivekitKeys) -> Shared {
        Shared {
            state: Mutex::new(Forum {
                next_id: 1,
                users: BTreeMap::new(),
                api_keys: HashMap::new(),
                rooms: BTreeMap::new(),
                memberships: Vec::new(),
                presence: HashMap::new(),
                kicked: HashMap::new(),
                banned: HashSet::new(),
                heartbeats: HashMap::new(),
                livekit_configured: true,
                presence_ttl: DEFAULT_PRESENCE_TTL,
                long_poll: DEFAULT_LONG_POLL,
                per_minute: DEFAULT_REQUESTS_PER_MINUTE,
                per_day: DEFAULT_REQUESTS_PER_DAY,
                usage: HashMap::new(),
                forced: HashMap::new(),
                requests: Vec::new(),
                bus: bus::Bus::default(),
                approving_user: None,
                allowed_redirects: vec!["discourse://auth_redirect".into()],
                issued: Vec::new(),
                invites: HashMap::new(),
                livekit_updates: Vec::new(),
            }),
            published: Notify::new(),
            keys,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Forum> {
        // A panicking handler leaves consistent-enough test state; keep serving.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `change` on the forum with lapsed presence dropped first (as the real forum's Redis
    /// keys expire on their own), then wakes held MessageBus polls, since anything may have
    /// published (participants, role changes, kicks).
    pub(super) fn change<T>(&self, change: impl FnOnce(&mut Forum) -> T) -> T {
        let answer = {
            let mut forum = self.lock();
            forum.prune(Instant::now());
            change(&mut forum)
        };
        self.published.notify_waiters();
        answer
    }
}

pub(super) struct Forum {
    next_id: u64,
    pub(super) users: BTreeMap<u64, User>,
    pub(super) api_keys: HashMap<String, ApiKey>,
    pub(super) rooms: BTreeMap<u64, Room>,
    pub(super) memberships: Vec<Membership>,
    pub(super) presence: HashMap<u64, BTreeMap<u64, Presence>>,
    pub(super) kicked: HashMap<(u64, u64), Instant>,
    pub(super) banned: HashSet<(u64, u64)>,
    pub(super) heartbeats: HashMap<(u64, u64), u32>,
    pub(super) livekit_configured: bool,
    pub(super) presence_ttl: Duration,
    pub(super) long_poll: Duration,
    pub(super) per_minute: u32,
    pub(super) per_day: u32,
    usage: HashMap<String, VecDeque<Instant>>,
    pub(super) forced: HashMap<Endpoint, VecDeque<Forced>>,
    pub(super) requests: Vec<SeenRequest>,
    pub(super) bus: bus::Bus,
    pub(super) approving_user: Option<u64>,
    pub(super) allowed_redirects: Vec<String>,
    pub(super) issued: Vec<IssuedKey>,
    /// Invite token → room id.
    pub(super) invites: HashMap<String, u64>,
    pub(super) livekit_updates: Vec<LivekitUpdate>,
}

#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) id: u64,
    pub(super) username: String,
    pub(super) name: String,
    /// In `audioroom_create_room_allowed_groups`: manages every room.
    pub(super) manager: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Room {
    pub(super) id: u64,
    pub(super) slug: String,
    pub(super) name: String,
    pub(super) stage: bool,
    pub(super) public: bool,
    pub(super) max_participants: Option<u32>,
    pub(super) creator: Option<u64>,
}

#[derive(Debug, Clone)]
pub(super) struct Membership {
    pub(super) id: u64,
    pub(super) room_id: u64,
    pub(super) user_id: u64,
    pub(super) role: MembershipRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MembershipRole {
    Participant,
    Moderator,
    Speaker,
}

impl MembershipRole {
    pub(super) fn parse(text: &str) -> Option<MembershipRole> {
        match text {
            "participant" | "0" => Some(MembershipRole::Participant),
            "moderator" | "1" => Some(MembershipRole::Moderator),
            "speaker" | "2" => Some(MembershipRole::Speaker),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            MembershipRole::Participant => "participant",
            MembershipRole::Moderator => "moderator",
            MembershipRole::Speaker => "speaker",
        }
    }

    /// The integer enum value the serializer sends as `role`.
    pub(super) fn number(self) -> u8 {
        match self {
            MembershipRole::Participant => 0,
            MembershipRole::Moderator => 1,
            MembershipRole::Speaker => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct ApiKey {
    pub(super) user_id: u64,
    pub(super) scopes: Vec<String>,
    pub(super) client_id: Option<String>,
}

impl LivekitUpdate {
    /// An update of `user` in `room`'s LiveKit room that changes nothing yet.
    pub(super) fn new(room: &Room, user: u64) -> LivekitUpdate {
        LivekitUpdate {
            room: room.slug.clone(),
            identity: user.to_string(),
            metadata: None,
            permission: None,
            outcome: Ok(()),
        }
    }

    pub(super) fn permission(room: &Room, user: u64, rights: crate::PublishRights) -> LivekitUpdate {
        LivekitUpdate { permission: Some(rights), ..LivekitUpdate::new(room, user) }
    }
}

impl Presence {
    pub(super) fn new(role: String) -> Presence {
        Presence {
            role,
            muted: false,
            deafened: false,
            hand_raised: false,
            hard_muted: false,
            idle_state: "active".into(),
            last_seen: Instant::now(),
        }
    }
}

impl Forum {
    pub(super) fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(super) fn find_room(&self, id_or_slug: &str) -> Option<Room> {
        // `load_room`: `find_by(id:) || find_by!(slug:)`.
        let by_id = id_or_slug.parse::<u64>().ok().and_then(|id| self.rooms.get(&id));
        by_id.or_else(|| self.rooms.values().find(|room| room.slug == id_or_slug)).cloned()
    }

    pub(super) fn membership(&self, room: u64, user: u64) -> Option<&Membership> {
        self.memberships.iter().find(|membership| membership.room_id == room && membership.user_id == user)
    }

    pub(super) fn upsert_membership(&mut self, room: u64, user: u64, role: MembershipRole) -> Membership {
        if let Some(existing) =
            self.memberships.iter_mut().find(|membership| membership.room_id == room && membership.user_id == user)
        {
            existing.role = role;
            return existing.clone();
        }
        let membership = Membership { id: self.take_id(), room_id: room, user_id: user, role };
        self.memberships.push(membership.clone());
        membership
    }

    /// `user`'s presence in `room`, if they are there.
    pub(super) fn presence_mut(&mut self, room: u64, user: u64) -> Option<&mut Presence> {
        self.presence.get_mut(&room).and_then(|present| present.get_mut(&user))
    }

    pub(super) fn can_manage(&self, room: &Room, user: &User) -> bool {
        user.manager
            || room.creator == Some(user.id)
            || self.membership(room.id, user.id).is_some_and(|membership| membership.role == MembershipRole::Moderator)
    }

    pub(super) fn can_join(&self, room: &Room, user: &User) -> bool {
        room.public || self.membership(room.id, user.id).is_some() || self.can_manage(room, user)
    }

    pub(super) fn is_kicked(&self, room: u64, user: u64, now: Instant) -> bool {
        self.kicked.get(&(room, user)).is_some_and(|until| *until > now)
    }

    /// The participant role at join time (§1.2 "Participant").
    pub(super) fn join_role(&self, room_id: u64, user: u64) -> String {
        let Some(room) = self.rooms.get(&room_id) else { return "participant".into() };
        let membership = self.membership(room_id, user).map(|membership| membership.role);
        if room.creator == Some(user) || membership == Some(MembershipRole::Moderator) {
            return "moderator".into();
        }
        presence_role(room.stage, membership.unwrap_or(MembershipRole::Participant)).into()
    }

    /// Drops presence older than the TTL and tells each affected room.
    pub(super) fn prune(&mut self, now: Instant) {
        let ttl = self.presence_ttl;
        let mut changed = Vec::new();
        for (room, present) in &mut self.presence {
            let before = present.len();
            present.retain(|_, presence| now.duration_since(presence.last_seen) < ttl);
            if present.len() != before {
                changed.push(*room);
            }
        }
        for room in changed {
            self.publish_participants(room);
        }
    }

    pub(super) fn present_in_other_room(&self, user: u64, room: u64) -> Option<Room> {
        self.presence
            .iter()
            .filter(|(other, present)| **other != room && present.contains_key(&user))
            .find_map(|(other, _)| self.rooms.get(other).cloned())
    }

    pub(super) fn publish_participants(&mut self, room: u64) {
        let participants = responses::participants(self, room);
        let data = json!({ "type": "participants", "room_id": room, "participants": participants });
        self.bus.publish(&format!("/audioroom/rooms/{room}"), data, None);
    }

    /// Counts a request against the key's limits; `Err(wait, code)` when over.
    pub(super) fn rate_limit(&mut self, key: &str, now: Instant) -> Result<(), (u64, &'static str)> {
        let (per_minute, per_day) = (self.per_minute, self.per_day);
        let usage = self.usage.entry(key.to_string()).or_default();
        while usage.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(86_400)) {
            usage.pop_front();
        }
        let minute = Duration::from_secs(60);
        let last_minute: Vec<&Instant> = usage.iter().filter(|at| now.duration_since(**at) < minute).collect();
        if last_minute.len() >= per_minute as usize {
            let oldest = last_minute.first().map(|at| now.duration_since(**at)).unwrap_or_default();
            return Err((minute.saturating_sub(oldest).as_secs().max(1), "user_api_min"));
        }
        if usage.len() >= per_day as usize {
            let oldest = usage.front().map(|at| now.duration_since(*at)).unwrap_or_default();
            return Err((Duration::from_secs(86_400).saturating_sub(oldest).as_secs().max(1), "user_api_day"));
        }
        usage.push_back(now);
        Ok(())
    }
}

/// The live role a membership gives in a room: what participants and metadata show.
pub(super) fn presence_role(stage: bool, membership: MembershipRole) -> &'static str {
    match (stage, membership) {
        (_, MembershipRole::Moderator) => "moderator",
        (true, MembershipRole::Speaker) => "speaker",
        (true, MembershipRole::Participant) => "listener",
        (false, _) => "participant",
    }
}
