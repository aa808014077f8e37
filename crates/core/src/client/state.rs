//! The state every front end draws: one [`ClientState`] snapshot, replaced as a whole whenever
//! something changes, and the pure functions that fold session and membership events into it.
//!
//! Snapshots rather than diffs: a call holds tens of participants at most, so a snapshot is a few
//! kilobytes; the busiest change (audio levels) touches every participant 10 times a second
//! anyway (a window is sent those alone, [`Levels`], see `ipc::StateUpdate`); and a window that opens late, reloads or misses an event still draws the truth from
//! the next snapshot, with no patch bookkeeping on either side.

use parley_control_plane::{PlaneEvent, PlaneParticipant};
use serde::Serialize;
use ts_rs::TS;

use super::error::ErrorCode;
use super::settings::TransmitChoice;
use super::sharing::LocalShare;
use crate::SessionEvent;
use crate::membership::MembershipEvent;
use crate::session::{CallEncryption, MediaKind, SessionState};

/// The level meters' floor: anything quieter shows as silence.
pub use crate::session::SILENCE_DBFS;

/// Everything the UI shows, at one instant.
#[derive(Debug, Clone, PartialEq, Default, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ClientState {
    /// The current call, or the last one's failure until the next join or leave.
    pub call: Option<CallState>,
    pub local: LocalState,
    /// A `parley://join/…` link asks to join a room: shown to the user, joined only when they
    /// say so (a web page must not be able to put an open microphone into a room).
    pub link: Option<LinkedRoom>,
}

/// The room a join link names, waiting for the user's click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LinkedRoom {
    pub profile: String,
    pub room: String,
}

impl ClientState {
    /// The audio levels alone, in the order of [`CallState::participants`].
    pub fn levels(&self) -> Levels {
        Levels {
            input_dbfs: self.local.input_level_dbfs,
            participants: self
                .call
                .as_ref()
                .map_or_else(Vec::new, |call| call.participants.iter().map(|p| p.level_dbfs).collect()),
        }
    }

    /// Whether `other` differs from this state in its audio levels at most: the case of ten
    /// updates a second in a call, which a window can apply without redrawing anything else.
    pub fn same_apart_from_levels(&self, other: &ClientState) -> bool {
        let (mut this, mut that) = (self.clone(), other.clone());
        this.silence_levels();
        that.silence_levels();
        this == that
    }

    fn silence_levels(&mut self) {
        self.local.input_level_dbfs = SILENCE_DBFS;
        for participant in self.call.iter_mut().flat_map(|call| call.participants.iter_mut()) {
            participant.level_dbfs = SILENCE_DBFS;
        }
    }
}

/// The meters of one snapshot: [`LocalState::input_level_dbfs`] and each
/// [`ParticipantState::level_dbfs`], in the order of the call's participants.
#[derive(Debug, Clone, PartialEq, Default, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Levels {
    pub input_dbfs: f32,
    pub participants: Vec<f32>,
}

/// Our own microphone and speakers; kept between calls (muted stays muted).
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LocalState {
    pub muted: bool,
    pub deafened: bool,
    /// The transmit gate is open: others hear us now.
    pub transmitting: bool,
    /// A push-to-talk key (shortcut, tray, `parley ctl ptt-start`) is held.
    pub ptt_held: bool,
    pub transmit_mode: TransmitChoice,
    /// Our microphone after processing, dBFS RMS (meters, the talking tray icon).
    pub input_level_dbfs: f32,
}

impl Default for LocalState {
    fn default() -> LocalState {
        LocalState {
            muted: false,
            deafened: false,
            transmitting: false,
            ptt_held: false,
            transmit_mode: TransmitChoice::OpenMic,
            input_level_dbfs: SILENCE_DBFS,
        }
    }
}

/// Where a call is in its life (DESIGN.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum CallPhase {
    /// Asking the backend for a token.
    Joining,
    /// Connecting to the LiveKit server.
    Connecting,
    Connected,
    Reconnecting,
    /// The call failed or ended for us (kicked, banned, room closed); `code` says why.
    Failed {
        code: ErrorCode,
        message: String,
    },
}

/// A moderation action as the UI offers it (mirrors the control plane's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    Mute,
    Unmute,
    HardMute,
    Restore,
    Kick,
    Unkick,
    Ban,
    Unban,
    InviteToSpeak,
    MoveToAudience,
    MakeModerator,
    StopShare,
}

impl ModerationAction {
    pub fn to_plane(self) -> parley_control_plane::ModerationAction {
        use parley_control_plane::ModerationAction as Plane;
        match self {
            ModerationAction::Mute => Plane::Mute,
            ModerationAction::Unmute => Plane::Unmute,
            ModerationAction::HardMute => Plane::HardMute,
            ModerationAction::Restore => Plane::Restore,
            ModerationAction::Kick => Plane::Kick,
            ModerationAction::Unkick => Plane::Unkick,
            ModerationAction::Ban => Plane::Ban,
            ModerationAction::Unban => Plane::Unban,
            ModerationAction::InviteToSpeak => Plane::InviteToSpeak,
            ModerationAction::MoveToAudience => Plane::MoveToAudience,
            ModerationAction::MakeModerator => Plane::MakeModerator,
            ModerationAction::StopShare => Plane::StopShare,
        }
    }

    pub fn from_plane(action: parley_control_plane::ModerationAction) -> ModerationAction {
        use parley_control_plane::ModerationAction as Plane;
        match action {
            Plane::Mute => ModerationAction::Mute,
            Plane::Unmute => ModerationAction::Unmute,
            Plane::HardMute => ModerationAction::HardMute,
            Plane::Restore => ModerationAction::Restore,
            Plane::Kick => ModerationAction::Kick,
            Plane::Unkick => ModerationAction::Unkick,
            Plane::Ban => ModerationAction::Ban,
            Plane::Unban => ModerationAction::Unban,
            Plane::InviteToSpeak => ModerationAction::InviteToSpeak,
            Plane::MoveToAudience => ModerationAction::MoveToAudience,
            Plane::MakeModerator => ModerationAction::MakeModerator,
            Plane::StopShare => ModerationAction::StopShare,
        }
    }
}

/// One offered moderation action and whether the UI must confirm it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ModerationOption {
    pub action: ModerationAction,
    pub destructive: bool,
}

/// How well a participant's connection works, as LiveKit rates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionQuality {
    #[default]
    Unknown,
    Excellent,
    Good,
    Poor,
    Lost,
}

impl ConnectionQuality {
    fn parse(text: &str) -> ConnectionQuality {
        match text {
            "excellent" => ConnectionQuality::Excellent,
            "good" => ConnectionQuality::Good,
            "poor" => ConnectionQuality::Poor,
            "lost" => ConnectionQuality::Lost,
            _ => ConnectionQuality::Unknown,
        }
    }
}

/// A joined room.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallState {
    pub profile: String,
    /// The backend's room id (what `join_room` was given, or its canonical form).
    pub room_id: String,
    pub room_name: String,
    pub phase: CallPhase,
    /// Our identity in the room, once connected.
    pub identity: Option<String>,
    /// Our role as the backend reported it (`speaker`, `listener`, `moderator`, …).
    pub role: Option<String>,
    pub hand_raised: bool,
    /// The backend lets us raise a hand (stage rooms).
    pub can_raise_hand: bool,
    /// The server lets us publish the microphone: `false` for a stage room's listener or
    /// someone a moderator hard-muted, until invited to speak or restored.
    pub can_speak: bool,
    /// What we may do to others here: the backend's actions filtered by our role.
    pub moderation: Vec<ModerationOption>,
    pub local_quality: ConnectionQuality,
    /// The call is end-to-end encrypted (the backend handed out a key, or the user gave one).
    pub encrypted: bool,
    /// Everyone else, in the order they arrived.
    pub participants: Vec<ParticipantState>,
    /// The server lets us share a screen (the token's `canPublishSources`).
    pub can_share: bool,
    /// Our screen share, while it runs.
    pub sharing: Option<LocalShare>,
    /// Whose screen shares we watch (their viewers are open), in the order they were opened.
    pub watching: Vec<String>,
    /// Which of those are shown in a window of their own (popped out of the room view).
    pub popped_out: Vec<String>,
    /// What the call's connections carry now (over the last report interval), once known.
    pub bandwidth: Option<Bandwidth>,
    /// The last traffic counters and when they came, to turn the next into a rate.
    #[serde(skip)]
    #[ts(skip)]
    last_traffic: Option<(std::time::Instant, u64, u64)>,
}

/// The call's network rate both ways, kilobits per second (media, data and RTCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub received_kbps: u32,
    pub sent_kbps: u32,
}

/// How end-to-end encryption fares for someone in an encrypted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// Nothing known (yet), or the call is not encrypted.
    Unknown,
    /// Their media decrypts.
    Ok,
    /// Their audio arrives unencrypted: it is not played until the user chooses to.
    NotEncrypted,
    /// Unencrypted, and the user chose to hear them anyway.
    AllowedUnencrypted,
    /// We lack their key.
    MissingKey,
    /// Their media does not decrypt (another key).
    Failed,
}

/// Someone else in the call.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantState {
    pub identity: String,
    pub name: String,
    pub role: Option<String>,
    pub avatar_url: Option<String>,
    /// LiveKit counts them among the active speakers.
    pub speaking: bool,
    /// Their playback peak after their volume, dBFS (the speaking ring).
    pub level_dbfs: f32,
    /// Their microphone track is muted (by them or a moderator).
    pub muted: bool,
    pub hand_raised: bool,
    pub connection_quality: ConnectionQuality,
    /// Our playback volume for them, 0–200 %.
    pub volume: u32,
    /// We silenced them for ourselves.
    pub locally_muted: bool,
    /// They say they hear nothing (only backends that report it: Audioroom).
    pub deafened: bool,
    /// The server lets them publish their microphone (LiveKit's permission, for every backend).
    pub can_speak: bool,
    /// A moderator took away their right to speak: what the backend says when it tells
    /// (Audioroom), otherwise someone on stage (not a listener) whom the server does not let
    /// publish.
    pub hard_muted: bool,
    /// End-to-end encryption of their media (in an encrypted call).
    pub encryption: Encryption,
    /// They share their screen (the "Live" mark).
    pub sharing: bool,
    /// The size their screen share arrives at (width, height), while we watch it and once its
    /// first picture came: the layer the server sends, which may be smaller than what they send.
    pub share_size: Option<(u32, u32)>,
    /// The backend's own word on the hard mute, when it has one.
    #[serde(skip)]
    #[ts(skip)]
    backend_hard_muted: Option<bool>,
    /// In the LiveKit room (not only on the backend's list, which may name people who are only
    /// in the web client's lobby, or who left without the backend noticing).
    #[serde(skip)]
    #[ts(skip)]
    in_room: bool,
}

impl ParticipantState {
    pub fn new(identity: &str, name: &str) -> ParticipantState {
        ParticipantState {
            identity: identity.to_string(),
            name: if name.is_empty() { identity.to_string() } else { name.to_string() },
            role: None,
            avatar_url: None,
            speaking: false,
            level_dbfs: SILENCE_DBFS,
            muted: false,
            hand_raised: false,
            connection_quality: ConnectionQuality::Unknown,
            volume: 100,
            locally_muted: false,
            deafened: false,
            can_speak: true,
            hard_muted: false,
            encryption: Encryption::Unknown,
            sharing: false,
            share_size: None,
            backend_hard_muted: None,
            in_room: false,
        }
    }

    /// Recomputes [`Self::hard_muted`] after what it depends on changed.
    fn settle_hard_mute(&mut self) {
        let listener = self.role.as_deref() == Some("listener");
        self.hard_muted = self.backend_hard_muted.unwrap_or(!self.can_speak && !listener);
    }
}

impl CallState {
    pub fn joining(profile: &str, room_id: &str) -> CallState {
        CallState {
            profile: profile.to_string(),
            room_id: room_id.to_string(),
            room_name: room_id.to_string(),
            phase: CallPhase::Joining,
            identity: None,
            role: None,
            hand_raised: false,
            can_raise_hand: false,
            can_speak: true,
            moderation: Vec::new(),
            local_quality: ConnectionQuality::Unknown,
            encrypted: false,
            participants: Vec::new(),
            can_share: false,
            sharing: None,
            watching: Vec::new(),
            popped_out: Vec::new(),
            bandwidth: None,
            last_traffic: None,
        }
    }

    /// Closes `identity`'s viewer (in the room view or its own window); whether one was open.
    pub fn stop_watching(&mut self, identity: &str) -> bool {
        let open = self.watching.len();
        self.watching.retain(|watched| watched != identity);
        self.popped_out.retain(|popped| popped != identity);
        if let Some(participant) = self.participant_mut(identity) {
            participant.share_size = None;
        }
        self.watching.len() != open
    }

    pub fn participant_mut(&mut self, identity: &str) -> Option<&mut ParticipantState> {
        self.participants.iter_mut().find(|participant| participant.identity == identity)
    }

    /// The participant `identity`, added when new (backends and LiveKit report people in either
    /// order). `volume` gives a newcomer's saved volume.
    fn participant_entry(&mut self, identity: &str, name: &str, volume: &dyn Fn(&str) -> u32) -> &mut ParticipantState {
        let index = match self.participants.iter().position(|participant| participant.identity == identity) {
            Some(index) => index,
            None => {
                let mut participant = ParticipantState::new(identity, name);
                participant.volume = volume(identity);
                self.participants.push(participant);
                self.participants.len() - 1
            }
        };
        &mut self.participants[index]
    }

    fn is_me(&self, identity: &str) -> bool {
        self.identity.as_deref() == Some(identity)
    }
}

/// The most participants shown that only the backend reports (not in the LiveKit room).
const MAX_BACKEND_ONLY_PARTICIPANTS: usize = 500;

/// Folds one session event into the state. `volume` gives a participant's saved volume.
/// Returns `true` when something visible changed.
pub fn apply_session_event(state: &mut ClientState, event: &SessionEvent, volume: &dyn Fn(&str) -> u32) -> bool {
    let local = &mut state.local;
    match event {
        SessionEvent::MuteChanged { muted } => local.muted = *muted,
        SessionEvent::DeafenChanged { deafened } => local.deafened = *deafened,
        SessionEvent::TransmitChanged { on } => local.transmitting = *on,
        _ => {}
    }
    let Some(call) = state.call.as_mut() else {
        return true;
    };
    match event {
        SessionEvent::StateChanged { state: session_state } => match session_state {
            SessionState::Connecting => call.phase = CallPhase::Connecting,
            SessionState::Connected => call.phase = CallPhase::Connected,
            SessionState::Reconnecting => call.phase = CallPhase::Reconnecting,
            SessionState::Failed { reason } => {
                call.phase = CallPhase::Failed { code: ErrorCode::Unreachable, message: reason.clone() }
            }
            // Leaving is the front end's own doing; `Client::leave_room` clears the call.
            SessionState::Idle | SessionState::Left => return false,
        },
        SessionEvent::Joined { identity, participants, encryption, .. } => {
            call.identity = Some(identity.clone());
            call.encrypted = *encryption == CallEncryption::EndToEnd;
            for participant in participants {
                let entry = call.participant_entry(&participant.identity, &participant.name, volume);
                entry.in_room = true;
                entry.can_speak = participant.can_publish;
                entry.settle_hard_mute();
            }
        }
        SessionEvent::ParticipantJoined { identity, name, can_publish } => {
            let participant = call.participant_entry(identity, name, volume);
            participant.in_room = true;
            if !name.is_empty() {
                participant.name = name.clone();
            }
            participant.can_speak = *can_publish;
            participant.settle_hard_mute();
        }
        SessionEvent::ParticipantEncryption { identity, state } => {
            let Some(participant) = call.participant_mut(identity) else { return false };
            let encryption = match state.as_str() {
                "ok" | "key_ratcheted" => Encryption::Ok,
                "not_encrypted" if participant.encryption == Encryption::AllowedUnencrypted => {
                    Encryption::AllowedUnencrypted
                }
                "not_encrypted" => Encryption::NotEncrypted,
                "missing_key" => Encryption::MissingKey,
                "decryption_failed" | "encryption_failed" | "internal_error" => Encryption::Failed,
                _ => return false,
            };
            // An unencrypted track says more than the engine's state about the others.
            if participant.encryption == encryption
                || (matches!(participant.encryption, Encryption::NotEncrypted | Encryption::AllowedUnencrypted)
                    && encryption == Encryption::Ok)
            {
                return false;
            }
            participant.encryption = encryption;
        }
        SessionEvent::UnencryptedAllowed { identity } => match call.participant_mut(identity) {
            Some(participant) => participant.encryption = Encryption::AllowedUnencrypted,
            None => return false,
        },
        SessionEvent::ParticipantPermission { identity, can_publish } => match call.participant_mut(identity) {
            Some(participant) => {
                participant.can_speak = *can_publish;
                participant.settle_hard_mute();
            }
            None => return false,
        },
        SessionEvent::ParticipantLeft { identity, .. } => {
            call.participants.retain(|participant| participant.identity != *identity);
            call.stop_watching(identity);
        }
        SessionEvent::TrackMuted { identity, .. } | SessionEvent::TrackUnmuted { identity, .. } => {
            let muted = matches!(event, SessionEvent::TrackMuted { .. });
            match call.participant_mut(identity) {
                Some(participant) => participant.muted = muted,
                None => return false,
            }
        }
        SessionEvent::ShareAvailable { identity, .. }
        | SessionEvent::TrackSubscribed { identity, kind: MediaKind::Video, .. }
        | SessionEvent::ShareEnded { identity, .. } => {
            let sharing = !matches!(event, SessionEvent::ShareEnded { .. });
            // Their viewer closes with the share.
            let closed = !sharing && call.stop_watching(identity);
            match call.participant_mut(identity) {
                Some(participant) if participant.sharing != sharing => participant.sharing = sharing,
                _ => return closed,
            }
        }
        SessionEvent::WatchStarted { identity, width, height, .. }
        | SessionEvent::WatchStats { identity, width, height, .. } => {
            // A picture that comes in as the viewer closes leaves no size behind.
            if !call.watching.contains(identity) {
                return false;
            }
            let size = Some((*width, *height));
            match call.participant_mut(identity) {
                Some(participant) if participant.share_size != size => participant.share_size = size,
                _ => return false,
            }
        }
        SessionEvent::ShareStarted { target, quality, priority, width, height, audio, .. } => {
            call.sharing = Some(LocalShare {
                target: target.clone(),
                quality: quality.clone(),
                priority: priority.clone(),
                width: *width,
                height: *height,
                sound: audio.clone(),
            });
        }
        SessionEvent::ShareSoundEnded { .. } => {
            if call.sharing.as_mut().and_then(|share| share.sound.take()).is_none() {
                return false;
            }
        }
        SessionEvent::ShareStopped { .. } | SessionEvent::ShareFailed { .. } => {
            if call.sharing.take().is_none() {
                return false;
            }
        }
        SessionEvent::Traffic { received_bytes, sent_bytes } => {
            let now = std::time::Instant::now();
            let previous = call.last_traffic.replace((now, *received_bytes, *sent_bytes));
            let Some((then, received_before, sent_before)) = previous else { return false };
            let seconds = now.duration_since(then).as_secs_f64();
            if seconds <= 0.0 {
                return false;
            }
            let kbps =
                |now: u64, before: u64| (now.saturating_sub(before) as f64 * 8.0 / 1000.0 / seconds).round() as u32;
            let bandwidth = Bandwidth {
                received_kbps: kbps(*received_bytes, received_before),
                sent_kbps: kbps(*sent_bytes, sent_before),
            };
            if call.bandwidth == Some(bandwidth) {
                return false;
            }
            call.bandwidth = Some(bandwidth);
        }
        SessionEvent::ActiveSpeakers { identities } => {
            for participant in &mut call.participants {
                participant.speaking = identities.contains(&participant.identity);
            }
        }
        SessionEvent::ConnectionQuality { identity, quality } => {
            let quality = ConnectionQuality::parse(quality);
            if call.is_me(identity) {
                call.local_quality = quality;
            } else if let Some(participant) = call.participant_mut(identity) {
                participant.connection_quality = quality;
            }
        }
        SessionEvent::Reconnecting => call.phase = CallPhase::Reconnecting,
        SessionEvent::Reconnected => call.phase = CallPhase::Connected,
        SessionEvent::PublishPermission { can_publish } => call.can_speak = *can_publish,
        SessionEvent::VolumeChanged { identity, percent } => match call.participant_mut(identity) {
            Some(participant) => participant.volume = *percent,
            None => return false,
        },
        SessionEvent::LocalMuteChanged { identity, muted } => match call.participant_mut(identity) {
            Some(participant) => participant.locally_muted = *muted,
            None => return false,
        },
        SessionEvent::Levels { input_dbfs, participants } => {
            // Unchanged levels (a quiet room: silence at every meter) are no change to publish.
            let input = input_dbfs.max(SILENCE_DBFS);
            let mut changed = state.local.input_level_dbfs != input;
            state.local.input_level_dbfs = input;
            for participant in &mut call.participants {
                let level = participants.get(&participant.identity).copied().unwrap_or(SILENCE_DBFS).max(SILENCE_DBFS);
                changed |= participant.level_dbfs != level;
                participant.level_dbfs = level;
            }
            return changed;
        }
        SessionEvent::Disconnected { connection_lost: true, .. } => {
            // The call joins again through its backend; it fails only if that does.
            call.phase = CallPhase::Reconnecting;
        }
        SessionEvent::Disconnected { reason, code, .. } => {
            if code != "client_initiated" {
                let code = match code.as_str() {
                    "participant_removed" => ErrorCode::Kicked,
                    "room_deleted" | "room_closed" => ErrorCode::RoomClosed,
                    _ => ErrorCode::Disconnected,
                };
                call.phase = CallPhase::Failed { code, message: format!("disconnected from the room: {reason}") };
            }
        }
        SessionEvent::MuteChanged { .. }
        | SessionEvent::DeafenChanged { .. }
        | SessionEvent::TransmitChanged { .. } => {}
        _ => return false,
    }
    true
}

/// Folds one membership event into the state. Returns `true` when something visible changed.
pub fn apply_membership_event(state: &mut ClientState, event: &MembershipEvent, volume: &dyn Fn(&str) -> u32) -> bool {
    let Some(call) = state.call.as_mut() else {
        return false;
    };
    match event {
        MembershipEvent::Backend { backend } => match backend {
            PlaneEvent::Participants { participants } => {
                // The backend's latest list is the whole truth about who is known only from it:
                // anyone it no longer lists and who is not in the LiveKit room goes.
                call.participants.retain(|known| {
                    known.in_room || participants.iter().any(|listed| listed.identity == known.identity)
                });
                let mut backend_only = call.participants.iter().filter(|known| !known.in_room).count();
                for participant in participants {
                    let known = call.participants.iter().any(|known| known.identity == participant.identity);
                    if !known && !call.is_me(&participant.identity) {
                        // A hostile or broken backend cannot grow the list (and every snapshot
                        // sent to the window) without bound.
                        if backend_only >= MAX_BACKEND_ONLY_PARTICIPANTS {
                            continue;
                        }
                        backend_only += 1;
                    }
                    merge_backend_participant(call, participant, volume);
                }
            }
            PlaneEvent::RoleChanged { identity, role } => {
                if call.is_me(identity) {
                    call.role = Some(role.clone());
                } else if let Some(participant) = call.participant_mut(identity) {
                    participant.role = Some(role.clone());
                    participant.settle_hard_mute();
                }
            }
            _ => return false,
        },
        MembershipEvent::Removed { reason, code } => {
            let code = if code == "banned" { ErrorCode::Banned } else { ErrorCode::Kicked };
            call.phase = CallPhase::Failed { code, message: format!("you were removed from the room: {reason}") };
        }
        _ => return false,
    }
    true
}

fn merge_backend_participant(call: &mut CallState, backend: &PlaneParticipant, volume: &dyn Fn(&str) -> u32) {
    if call.is_me(&backend.identity) {
        if let Some(raised) = backend.hand_raised {
            call.hand_raised = raised;
        }
        if backend.role.is_some() {
            call.role = backend.role.clone();
        }
        return;
    }
    let participant = call.participant_entry(&backend.identity, &backend.name, volume);
    if backend.role.is_some() {
        participant.role = backend.role.clone();
    }
    if let Some(raised) = backend.hand_raised {
        participant.hand_raised = raised;
    }
    if let Some(muted) = backend.muted {
        participant.muted = muted;
    }
    if backend.avatar_url.is_some() {
        participant.avatar_url = backend.avatar_url.clone();
    }
    if let Some(deafened) = backend.deafened {
        participant.deafened = deafened;
    }
    if backend.hard_muted.is_some() {
        participant.backend_hard_muted = backend.hard_muted;
    }
    participant.settle_hard_mute();
}

#[cfg(test)]
mod tests;
