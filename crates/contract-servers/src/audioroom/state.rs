//! The forum's data — users and their keys, rooms, memberships, analytics sessions, the
//! plugin's Redis state (presence, its metadata, kicks, bans), rate-limit usage, forced answers,
//! the requests it saw — and the rules read from it: Guardian's manage, join and speak
//! permissions, the join-time role, Redis expiry, the per-key rate limits.
//!
//! [`Shared`] is what every handler holds: the [`Forum`] behind a mutex, the notifier that wakes
//! held MessageBus polls, and the LiveKit keys.
//!
//! User ids are `i64`, as in Discourse: the system user, who creates the seeded rooms, is `-1`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use super::bus::Audience;
use super::{
    DEFAULT_LONG_POLL, DEFAULT_PRESENCE_TTL, DEFAULT_REQUESTS_PER_DAY, DEFAULT_REQUESTS_PER_MINUTE, Endpoint, Forced,
    IssuedKey, LivekitCall, LivekitUpdate, SeenRequest, bus, responses,
};
use crate::LivekitKeys;

/// `Discourse.system_user`: id `-1`, the creator of the room the plugin seeds.
pub(super) const SYSTEM_USER_ID: i64 = -1;
/// `Group::AUTO_GROUPS[:trust_level_0]`: every user is in it; public rooms publish to it.
pub(super) const TRUST_LEVEL_0: u64 = 10;
/// `ParticipantTracker.kick`: the room's kicked set expires 300 s after its latest kick.
pub(super) const KICK_DURATION: Duration = Duration::from_secs(300);

pub(super) struct Shared {
    state: Mutex<Forum>,
    /// Wakes held MessageBus polls when something is published.
    pub(super) published: Notify,
    pub(super) keys: LivekitKeys,
}

impl Shared {
    /// An empty forum (only the system user): LiveKit configured with `keys`, Discourse's and the
    /// plugin's default settings.
    pub(super) fn new(keys: LivekitKeys) -> Shared {
        let mut users = BTreeMap::new();
        users.insert(
            SYSTEM_USER_ID,
            User {
                id: SYSTEM_USER_ID,
                username: "system".into(),
                name: Some("system".into()),
                manager: true,
                admin: true,
            },
        );
        Shared {
            state: Mutex::new(Forum {
                sequences: Sequences::default(),
                users,
                api_keys: HashMap::new(),
                rooms: BTreeMap::new(),
                memberships: Vec::new(),
                sessions: Vec::new(),
                tracked: HashMap::new(),
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
                livekit_updates: Vec::new(),
                livekit_calls: Vec::new(),
            }),
            published: Notify::new(),
            keys,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Forum> {
        // A panicking handler leaves consistent-enough test state; keep serving.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `change` on the forum with expired Redis keys dropped first (Redis expires them on
    /// its own), then wakes held MessageBus polls, since anything may have published.
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

/// Each table's own id sequence, as in Postgres.
#[derive(Debug)]
struct Sequences {
    user: i64,
    room: u64,
    membership: u64,
    session: u64,
}

impl Default for Sequences {
    fn default() -> Sequences {
        Sequences { user: 1, room: 1, membership: 1, session: 1 }
    }
}

pub(super) struct Forum {
    sequences: Sequences,
    pub(super) users: BTreeMap<i64, User>,
    pub(super) api_keys: HashMap<String, ApiKey>,
    pub(super) rooms: BTreeMap<u64, Room>,
    pub(super) memberships: Vec<Membership>,
    /// `Audioroom::Session` rows (one per join while analytics is on): what `visit_count` counts.
    pub(super) sessions: Vec<Session>,
    /// `ParticipantTracker`'s Redis keys, per room.
    tracked: HashMap<u64, Tracked>,
    /// Per room: the kicked set and when it expires.
    kicked: HashMap<u64, (BTreeSet<i64>, Instant)>,
    pub(super) banned: HashSet<(u64, i64)>,
    pub(super) heartbeats: HashMap<(u64, i64), u32>,
    pub(super) livekit_configured: bool,
    pub(super) presence_ttl: Duration,
    pub(super) long_poll: Duration,
    pub(super) per_minute: u32,
    pub(super) per_day: u32,
    usage: HashMap<String, Usage>,
    pub(super) forced: HashMap<Endpoint, VecDeque<Forced>>,
    pub(super) requests: Vec<SeenRequest>,
    pub(super) bus: bus::Bus,
    pub(super) approving_user: Option<i64>,
    pub(super) allowed_redirects: Vec<String>,
    pub(super) issued: Vec<IssuedKey>,
    pub(super) livekit_updates: Vec<LivekitUpdate>,
    pub(super) livekit_calls: Vec<LivekitCall>,
}

#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) id: i64,
    pub(super) username: String,
    /// `users.name`: `None` for a user who never gave one (serialized as `null`).
    pub(super) name: Option<String>,
    /// In `audioroom_create_room_allowed_groups`: manages every room.
    pub(super) manager: bool,
    /// A site admin: may speak in every stage room (`can_speak_in_audioroom_room?`).
    pub(super) admin: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Room {
    pub(super) id: u64,
    pub(super) slug: String,
    pub(super) name: String,
    pub(super) stage: bool,
    pub(super) public: bool,
    pub(super) max_participants: Option<u32>,
    /// `creator_id`, NOT NULL: the system user for seeded rooms.
    pub(super) creator: i64,
    /// `invite_token`, made at creation (`SecureRandom.urlsafe_base64(12)`).
    pub(super) invite_token: String,
}

#[derive(Debug, Clone)]
pub(super) struct Membership {
    pub(super) id: u64,
    pub(super) room_id: u64,
    pub(super) user_id: i64,
    pub(super) role: MembershipRole,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Session {
    pub(super) id: u64,
    pub(super) room_id: u64,
    pub(super) user_id: i64,
    pub(super) closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MembershipRole {
    Participant,
    Moderator,
    Speaker,
}

impl MembershipRole {
    /// `RoomMembership.role_value`: a blank or unknown key (a number included: `ROLES[key.to_s]`)
    /// is `participant`.
    pub(super) fn value(key: Option<&Value>) -> MembershipRole {
        match key {
            Some(Value::String(text)) => match text.as_str() {
                "moderator" => MembershipRole::Moderator,
                "speaker" => MembershipRole::Speaker,
                _ => MembershipRole::Participant,
            },
            _ => MembershipRole::Participant,
        }
    }

    /// `role_name`.
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

    /// `can_speak?`.
    pub(super) fn can_speak(self) -> bool {
        matches!(self, MembershipRole::Moderator | MembershipRole::Speaker)
    }
}

#[derive(Debug, Clone)]
pub(super) struct ApiKey {
    pub(super) user_id: i64,
    pub(super) scopes: Vec<String>,
    pub(super) client_id: Option<String>,
}

/// One room's `ParticipantTracker` keys: the participants set and the metadata hash, each with
/// the expiry Redis keeps for the whole key — refreshed by anyone's join or heartbeat, so one
/// user's presence lasts as long as someone in the room keeps beating.
#[derive(Debug, Default)]
struct Tracked {
    users: BTreeSet<i64>,
    users_expire: Option<Instant>,
    metadata: BTreeMap<i64, Map<String, Value>>,
    metadata_expire: Option<Instant>,
}

/// A key's request log for each of its two limiters.
#[derive(Debug, Default)]
struct Usage {
    minute: VecDeque<Instant>,
    day: VecDeque<Instant>,
}

/// Why a key's request is refused by its rate limiters (`RateLimiter::LimitExceeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LimitExceeded {
    pub(super) wait_seconds: u64,
    /// `Discourse-Rate-Limit-Error-Code`.
    pub(super) code: &'static str,
}

impl LivekitUpdate {
    /// An update of `user` in `room`'s LiveKit room that changes nothing yet.
    pub(super) fn new(room: &Room, user: i64) -> LivekitUpdate {
        LivekitUpdate {
            room: room.slug.clone(),
            identity: user.to_string(),
            metadata: None,
            permission: None,
            outcome: Ok(()),
        }
    }

    pub(super) fn permission(room: &Room, user: i64, rights: crate::PublishRights) -> LivekitUpdate {
        LivekitUpdate { permission: Some(rights), ..LivekitUpdate::new(room, user) }
    }
}

impl Forum {
    pub(super) fn next_user_id(&mut self) -> i64 {
        let id = self.sequences.user;
        self.sequences.user += 1;
        id
    }

    pub(super) fn next_room_id(&mut self) -> u64 {
        let id = self.sequences.room;
        self.sequences.room += 1;
        id
    }

    /// `load_room`: `find_by(id: params[:id]) || find_by!(slug: params[:id])`. The id lookup
    /// casts as Rails does, so `"3-lounge"` is room 3 when there is one.
    pub(super) fn find_room(&self, id_or_slug: &str) -> Option<Room> {
        let by_id = rails_integer(id_or_slug).and_then(|id| u64::try_from(id).ok()).and_then(|id| self.rooms.get(&id));
        by_id.or_else(|| self.rooms.values().find(|room| room.slug == id_or_slug)).cloned()
    }

    /// `Room.find(params[:room_id])`: the id only.
    pub(super) fn find_room_by_id(&self, id: &str) -> Option<Room> {
        let id = rails_integer(id).and_then(|id| u64::try_from(id).ok())?;
        self.rooms.get(&id).cloned()
    }

    pub(super) fn membership(&self, room: u64, user: i64) -> Option<&Membership> {
        self.memberships.iter().find(|membership| membership.room_id == room && membership.user_id == user)
    }

    /// `find_or_initialize_by(user:)` + `role=` + `save!`.
    pub(super) fn upsert_membership(&mut self, room: u64, user: i64, role: MembershipRole) -> Membership {
        if let Some(existing) =
            self.memberships.iter_mut().find(|membership| membership.room_id == room && membership.user_id == user)
        {
            existing.role = role;
            return existing.clone();
        }
        let id = self.sequences.membership;
        self.sequences.membership += 1;
        let membership = Membership { id, room_id: room, user_id: user, role };
        self.memberships.push(membership.clone());
        membership
    }

    /// `find_or_create_by!(user:)`: an existing membership keeps its role.
    pub(super) fn ensure_membership(&mut self, room: u64, user: i64, role: MembershipRole) {
        if self.membership(room, user).is_none() {
            self.upsert_membership(room, user, role);
        }
    }

    pub(super) fn member_ids(&self, room: u64) -> Vec<i64> {
        self.memberships.iter().filter(|membership| membership.room_id == room).map(|m| m.user_id).collect()
    }

    /// Guardian's `can_manage_audioroom_room?`.
    pub(super) fn can_manage(&self, room: &Room, user: &User) -> bool {
        user.manager
            || room.creator == user.id
            || self.membership(room.id, user.id).is_some_and(|membership| membership.role == MembershipRole::Moderator)
    }

    /// Guardian's `can_join_audioroom_room?` (also `can_see_…`).
    pub(super) fn can_join(&self, room: &Room, user: &User) -> bool {
        room.public || self.membership(room.id, user.id).is_some() || self.can_manage(room, user)
    }

    /// Guardian's `can_speak_in_audioroom_room?`: an open room, an admin, or a membership that
    /// speaks — not the presence role, and not the manage permission.
    pub(super) fn can_speak(&self, room: &Room, user: &User) -> bool {
        !room.stage || user.admin || self.membership(room.id, user.id).is_some_and(|m| m.role.can_speak())
    }

    pub(super) fn is_kicked(&self, room: u64, user: i64, now: Instant) -> bool {
        self.kicked.get(&room).is_some_and(|(users, expires)| *expires > now && users.contains(&user))
    }

    /// `ParticipantTracker.kick`: out of the room, into the kicked set, whose expiry restarts.
    pub(super) fn kick(&mut self, room: u64, user: i64, now: Instant) {
        self.untrack(room, user);
        let (users, expires) = self.kicked.entry(room).or_insert_with(|| (BTreeSet::new(), now));
        if *expires <= now {
            users.clear();
        }
        users.insert(user);
        *expires = now + KICK_DURATION;
    }

    pub(super) fn unkick(&mut self, room: u64, user: i64) {
        if let Some((users, _)) = self.kicked.get_mut(&room) {
            users.remove(&user);
        }
    }

    /// `join`'s `metadata_role`: the creator is `moderator`; in a stage room a speaking
    /// membership gives its name and anyone else is a `listener`; in an open room everyone
    /// else is a `participant`, moderator members included.
    pub(super) fn join_role(&self, room: &Room, user: i64) -> &'static str {
        if room.creator == user {
            return "moderator";
        }
        if !room.stage {
            return "participant";
        }
        match self.membership(room.id, user).map(|membership| membership.role) {
            Some(role) if role.can_speak() => role.name(),
            _ => "listener",
        }
    }

    /// `sync_livekit_participant_metadata`'s `broadcast_role`, from the role the metadata holds.
    pub(super) fn broadcast_role(room: &Room, user: i64, metadata_role: &str) -> &'static str {
        if room.creator == user {
            "moderator"
        } else if room.stage {
            match metadata_role {
                "moderator" => "moderator",
                "speaker" => "speaker",
                _ => "listener",
            }
        } else {
            "participant"
        }
    }

    /// An `Audioroom::Session` for a join; its id goes into the metadata.
    pub(super) fn open_session(&mut self, room: u64, user: i64) -> u64 {
        let id = self.sequences.session;
        self.sequences.session += 1;
        self.sessions.push(Session { id, room_id: room, user_id: user, closed: false });
        id
    }

    /// `close_session_for`: the session the metadata names, if any.
    pub(super) fn close_session_for(&mut self, room: u64, user: i64) {
        let Some(id) = self.metadata(room, user).get("session_id").and_then(Value::as_u64) else { return };
        if let Some(session) = self.sessions.iter_mut().find(|session| session.id == id) {
            session.closed = true;
        }
    }

    /// `visit_count`: the viewer's sessions in the room.
    pub(super) fn visit_count(&self, room: u64, user: i64) -> usize {
        self.sessions.iter().filter(|session| session.room_id == room && session.user_id == user).count()
    }

    /// `ParticipantTracker.add`: into the set (not ids ≤ 0), and both keys' expiry restarts.
    pub(super) fn track(&mut self, room: u64, user: i64, now: Instant) {
        if user <= 0 {
            return;
        }
        let expires = now + self.presence_ttl;
        let tracked = self.tracked.entry(room).or_default();
        tracked.users.insert(user);
        tracked.users_expire = Some(expires);
        tracked.metadata_expire = Some(expires);
    }

    /// `ParticipantTracker.remove`: out of the set, metadata gone.
    pub(super) fn untrack(&mut self, room: u64, user: i64) {
        if let Some(tracked) = self.tracked.get_mut(&room) {
            tracked.users.remove(&user);
            tracked.metadata.remove(&user);
        }
    }

    /// `ParticipantTracker.user_ids`, in id order.
    pub(super) fn tracked_users(&self, room: u64) -> Vec<i64> {
        self.tracked.get(&room).map(|tracked| tracked.users.iter().copied().collect()).unwrap_or_default()
    }

    pub(super) fn is_tracked(&self, room: u64, user: i64) -> bool {
        self.tracked.get(&room).is_some_and(|tracked| tracked.users.contains(&user))
    }

    /// `get_metadata`: only the keys written so far (`{}` for none).
    pub(super) fn metadata(&self, room: u64, user: i64) -> Map<String, Value> {
        self.tracked.get(&room).and_then(|tracked| tracked.metadata.get(&user)).cloned().unwrap_or_default()
    }

    /// `update_metadata`: replaces the user's whole entry; the hash's expiry restarts.
    pub(super) fn set_metadata(&mut self, room: u64, user: i64, metadata: Map<String, Value>, now: Instant) {
        let expires = now + self.presence_ttl;
        let tracked = self.tracked.entry(room).or_default();
        tracked.metadata.insert(user, metadata);
        tracked.metadata_expire = Some(expires);
    }

    /// Reads, changes and writes back one user's metadata, as the controllers do.
    pub(super) fn edit_metadata(
        &mut self,
        room: u64,
        user: i64,
        now: Instant,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) {
        let mut metadata = self.metadata(room, user);
        edit(&mut metadata);
        self.set_metadata(room, user, metadata, now);
    }

    /// `active_room_id_for_user`: the first room whose participants set holds the user.
    pub(super) fn active_room_for(&self, user: i64) -> Option<u64> {
        let mut rooms: Vec<u64> =
            self.tracked.iter().filter(|(_, tracked)| tracked.users.contains(&user)).map(|(room, _)| *room).collect();
        rooms.sort_unstable();
        rooms.first().copied()
    }

    /// Drops the Redis keys whose expiry passed: a room's whole participants set, or its whole
    /// metadata hash, at once. Nobody is told, as Redis tells nobody.
    pub(super) fn prune(&mut self, now: Instant) {
        for tracked in self.tracked.values_mut() {
            if tracked.users_expire.is_some_and(|expires| expires <= now) {
                tracked.users.clear();
                tracked.users_expire = None;
            }
            if tracked.metadata_expire.is_some_and(|expires| expires <= now) {
                tracked.metadata.clear();
                tracked.metadata_expire = None;
            }
        }
        for (users, expires) in self.kicked.values_mut() {
            if *expires <= now {
                users.clear();
            }
        }
    }

    /// `RoomBroadcaster#publish_participants`: to trust level 0 for a public room, to its
    /// members for a private one.
    pub(super) fn publish_participants(&mut self, room: u64) {
        let Some(found) = self.rooms.get(&room) else { return };
        let audience =
            if found.public { Audience::Groups(vec![TRUST_LEVEL_0]) } else { Audience::Users(self.member_ids(room)) };
        let participants = responses::participants(self, room);
        let data = json!({ "type": "participants", "room_id": room, "participants": participants });
        self.bus.publish(&format!("/audioroom/rooms/{room}"), data, audience);
    }

    /// `publish_role_change`: to the present participants only, and not at all to an empty room.
    pub(super) fn publish_role_change(&mut self, room: u64, user: i64, role: &str) {
        let present = self.tracked_users(room);
        if present.is_empty() {
            return;
        }
        let data = json!({ "type": "role_change", "room_id": room, "user_id": user, "role": role });
        self.bus.publish(&format!("/audioroom/rooms/{room}"), data, Audience::Users(present));
    }

    /// `publish_kick`: to the removed user alone.
    pub(super) fn publish_kick(&mut self, room: u64, user: i64) {
        let data = json!({ "type": "kicked", "room_id": room });
        self.bus.publish(&format!("/audioroom/rooms/{room}"), data, Audience::Users(vec![user]));
    }

    /// `user_api_key_limiter_60_secs.performed!` then `user_api_key_limiter_1_day.performed!`:
    /// each limiter records the request only when it lets it through, so a request refused by
    /// the daily limit still counts against the minute.
    pub(super) fn rate_limit(&mut self, key: &str, now: Instant) -> Result<(), LimitExceeded> {
        let (per_minute, per_day) = (self.per_minute, self.per_day);
        let usage = self.usage.entry(key.to_string()).or_default();
        perform(&mut usage.minute, per_minute, Duration::from_secs(60), now, "user_api_key_limiter_60_secs")?;
        perform(&mut usage.day, per_day, Duration::from_secs(86_400), now, "user_api_key_limiter_1_day")
    }
}

/// One `RateLimiter#performed!`: at most `max` in any `window`.
fn perform(
    log: &mut VecDeque<Instant>,
    max: u32,
    window: Duration,
    now: Instant,
    code: &'static str,
) -> Result<(), LimitExceeded> {
    while log.front().is_some_and(|at| now.duration_since(*at) >= window) {
        log.pop_front();
    }
    if log.len() >= max as usize {
        let oldest = log.front().map(|at| now.duration_since(*at)).unwrap_or_default();
        let wait_seconds = window.saturating_sub(oldest).as_secs().max(1);
        return Err(LimitExceeded { wait_seconds, code });
    }
    log.push_back(now);
    Ok(())
}

/// How ActiveRecord casts a param for an integer column: a string must start with an optional
/// sign and a digit (else it matches nothing), then Ruby's `to_i` reads the leading digits.
pub(super) fn rails_integer(text: &str) -> Option<i64> {
    let trimmed = text.trim_start();
    let (sign, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let leading: String = digits.chars().take_while(char::is_ascii_digit).collect();
    if leading.is_empty() {
        return None;
    }
    leading.parse::<i64>().ok().map(|value| sign * value)
}

/// Ruby's `String#to_i` (what `params.require(:user_id).to_i` gives): the leading integer, or 0.
pub(super) fn ruby_to_i(value: &Value) -> i64 {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| number.as_f64().map(|float| float as i64)).unwrap_or(0),
        Value::String(text) => rails_integer(text).unwrap_or(0),
        _ => 0,
    }
}

/// `ActiveModel::Type::Boolean#cast`: `nil` and `""` are `nil`; `false`, `0`, `"0"`, `"f"`,
/// `"false"`, `"off"` (any case) are false; anything else is true.
pub(super) fn cast_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Null => None,
        Value::Bool(flag) => Some(*flag),
        Value::Number(number) => Some(number.as_f64() != Some(0.0)),
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(!matches!(text.to_ascii_lowercase().as_str(), "0" | "f" | "false" | "off")),
        _ => Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_booleans_cast_as_rails_casts_them() {
        assert_eq!(rails_integer("3-lounge"), Some(3), "a slug that starts with digits is that id");
        assert_eq!(rails_integer(" 12"), Some(12));
        assert_eq!(rails_integer("-1"), Some(-1));
        assert_eq!(rails_integer("lounge"), None, "a non-numeric string matches no id");
        assert_eq!(ruby_to_i(&json!("abc")), 0, "to_i of text is 0");
        assert_eq!(ruby_to_i(&json!(7)), 7);
        assert_eq!(cast_bool(&json!("")), None);
        assert_eq!(cast_bool(&json!("OFF")), Some(false));
        assert_eq!(cast_bool(&json!("yes")), Some(true), "anything not false-like is true");
        assert_eq!(cast_bool(&json!(0)), Some(false));
    }

    #[test]
    fn the_daily_limit_refuses_after_the_minute_counted() {
        let keys = LivekitKeys { url: "ws://127.0.0.1:9".into(), api_key: "k".into(), api_secret: "s".into() };
        let shared = Shared::new(keys);
        let mut forum = shared.lock();
        forum.per_minute = 2;
        forum.per_day = 1;
        let now = Instant::now();
        assert_eq!(forum.rate_limit("key", now), Ok(()));
        let day = forum.rate_limit("key", now).expect_err("over the day");
        assert_eq!(day.code, "user_api_key_limiter_1_day");
        let minute = forum.rate_limit("key", now).expect_err("the refused request counted for the minute");
        assert_eq!(minute.code, "user_api_key_limiter_60_secs");
        assert!((59..=60).contains(&minute.wait_seconds), "{minute:?}");
    }
}
