//! What a session tells its front end: its state, the participants, and one ordered stream of
//! [`SessionEvent`]s, each stamped with the time it happened.

use std::time::{SystemTime, UNIX_EPOCH};

use parley_livekit_ffi as ffi;
use serde::Serialize;
use tokio::sync::mpsc;

/// Where the session is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    Idle,
    Connecting,
    Connected,
    Reconnecting,
    Left,
    Failed { reason: String },
}

/// A participant as front ends see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Participant {
    pub identity: String,
    pub name: String,
    /// The server lets them publish their microphone (a stage listener or a hard-muted
    /// speaker may not).
    pub can_publish: bool,
}

impl Participant {
    pub(super) fn from_info(info: ffi::ParticipantInfo) -> Participant {
        let can_publish = can_publish_microphone(info.permission.as_ref());
        Participant { identity: info.identity, name: info.name, can_publish }
    }
}

/// No permission at all means LiveKit's default grant: everything.
pub(super) fn can_publish_microphone(permission: Option<&ffi::Permission>) -> bool {
    permission.is_none_or(|permission| permission.allows_publishing(ffi::TrackSource::Microphone))
}

/// Whether a call's media is end-to-end encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEncryption {
    /// Only the transport (DTLS-SRTP to the server) is encrypted; the server can hear.
    None,
    /// Media is encrypted with the room's key: the server cannot hear.
    EndToEnd,
}

impl CallEncryption {
    /// `EndToEnd` when joined with a key.
    pub fn with_key(key: Option<&[u8]>) -> CallEncryption {
        if key.is_some() { CallEncryption::EndToEnd } else { CallEncryption::None }
    }
}

/// Everything a front end needs to follow the session, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionEvent {
    StateChanged {
        state: SessionState,
    },
    Joined {
        room: String,
        identity: String,
        participants: Vec<Participant>,
        /// Whether the call is end-to-end encrypted (we joined with a key).
        encryption: CallEncryption,
    },
    ParticipantJoined {
        identity: String,
        name: String,
        can_publish: bool,
    },
    /// A moderator changed whether another participant may publish their microphone (hard
    /// mute / restore, invite to speak / move to the audience). Ours is [`Self::PublishPermission`].
    ParticipantPermission {
        identity: String,
        can_publish: bool,
    },
    ParticipantLeft {
        identity: String,
        reason: String,
    },
    TrackSubscribed {
        identity: String,
        sid: String,
        kind: MediaKind,
    },
    /// Someone shares their screen and we do not watch it: Parley declined the video (it
    /// receives video only while it is watched).
    ShareAvailable {
        identity: String,
        sid: String,
    },
    /// Someone stopped sharing their screen (watched or not).
    ShareEnded {
        identity: String,
        sid: String,
    },
    TrackUnsubscribed {
        identity: String,
        sid: String,
    },
    TrackMuted {
        identity: String,
        sid: String,
    },
    TrackUnmuted {
        identity: String,
        sid: String,
    },
    ActiveSpeakers {
        identities: Vec<String>,
    },
    ConnectionQuality {
        identity: String,
        quality: String,
    },
    Reconnecting,
    Reconnected,
    /// The first audible frame of a remote track reached the mixer.
    FirstAudio {
        identity: String,
        sid: String,
    },
    /// Our microphone track is published; frame `n` is sent at `unix_ns + n × 10 ms`. (After a
    /// moderator's grant, `unix_ns` is when publishing resumed.)
    PublishingStarted {
        sid: String,
        unix_ns: u64,
    },
    /// Our microphone track is no longer published (the server revoked our permission to publish).
    PublishingStopped {
        sid: String,
    },
    /// Whether the server lets us publish the microphone: reported once at join, then on each
    /// change a moderator makes (invite to speak, move to the audience, hard mute). While it is
    /// `false` nothing we capture leaves this machine.
    PublishPermission {
        can_publish: bool,
    },
    /// How one remote track's audio fared in the receiver over the last interval (only when the
    /// join asked for statistics): the mean time a sample spent in the engine's jitter buffer
    /// and what the buffer aimed for, the share of played audio that was concealment, and
    /// packets lost; plus the mean standing delay of our own queue for the track in the mixer,
    /// the mixes that found that queue short (an underrun: a gap in this voice), and the output
    /// device's glitches since playout began (callbacks that found nothing to play: a gap in
    /// everything heard; the same count for every track).
    ReceiveStats {
        identity: String,
        sid: String,
        jitter_buffer_ms: Option<f64>,
        jitter_buffer_target_ms: Option<f64>,
        concealed_percent: f64,
        packets_lost: i64,
        mixer_queue_ms: Option<f64>,
        mixer_underruns: u64,
        output_glitches: u64,
    },
    /// Bytes the room's connections carried since they opened (media, data and RTCP, both
    /// ways), every stats interval: what the call costs the network.
    Traffic {
        received_bytes: u64,
        sent_bytes: u64,
    },
    /// The output started; frame `n` of the output is written at `unix_ns + n × 10 ms`.
    PlayoutStarted {
        unix_ns: u64,
    },
    /// The input source has nothing more to send (a clip ended); silence follows.
    InputEnded,
    /// The transmit gate opened or closed (push-to-talk, voice activity).
    TransmitChanged {
        on: bool,
    },
    /// Our microphone track was muted or unmuted (others see it).
    MuteChanged {
        muted: bool,
    },
    DeafenChanged {
        deafened: bool,
    },
    VolumeChanged {
        identity: String,
        percent: u32,
    },
    OutputVolumeChanged {
        percent: u32,
    },
    LocalMuteChanged {
        identity: String,
        muted: bool,
    },
    /// A sound device was opened: what it granted.
    DeviceOpened {
        direction: String,
        device: String,
        sample_rate: u32,
        channels: u16,
        buffer_frames: Option<u32>,
    },
    /// A sound device was replaced (it vanished, or the system default moved).
    DeviceChanged {
        message: String,
    },
    /// Audio levels for meters and speaking rings, every 100 ms when asked for: our
    /// microphone after processing (dBFS RMS) and each remote participant's playback peak
    /// (dBFS, after their volume).
    Levels {
        input_dbfs: f32,
        participants: std::collections::BTreeMap<String, f32>,
    },
    /// How end-to-end encryption fares for a participant: the engine's state (`ok`,
    /// `missing_key`, `decryption_failed`, …), or `not_encrypted` when their audio arrives
    /// unencrypted in an encrypted call — which is then not played until
    /// [`crate::Control::AllowUnencrypted`].
    ParticipantEncryption {
        identity: String,
        state: String,
    },
    /// The user chose to hear a participant whose audio is not encrypted.
    UnencryptedAllowed {
        identity: String,
    },
    /// The room is gone for us. `connection_lost`: the server or the network went away (the
    /// engine gave up reconnecting), rather than the room ending for us; a call through a
    /// control plane then joins again ([`crate::membership::rejoin`]).
    Disconnected {
        reason: String,
        code: String,
        connection_lost: bool,
    },
    /// Our screen share is published: `target` (a screen or window) at `width` × `height`.
    ShareStarted {
        sid: String,
        target: String,
        quality: String,
        /// `detail` (the resolution is kept) or `motion` (the frame rate is kept).
        priority: String,
        width: u32,
        height: u32,
        fps: u32,
        /// The application whose sound is shared with the picture, if any.
        audio: Option<String>,
    },
    /// How the share thread fared over the last second: frames sent, and the mean time a frame
    /// took to capture and scale, and to hand to the engine.
    ShareStats {
        fps: f64,
        width: u32,
        height: u32,
        capture_ms: f64,
        send_ms: f64,
    },
    /// The application whose sound went with our share stopped playing; the picture goes on.
    ShareSoundEnded {
        app: String,
    },
    /// Our screen share ended (we stopped it).
    ShareStopped {
        sid: String,
    },
    /// Our screen share could not start or broke off (`code`: `not_allowed`, `target_gone`,
    /// `no_display`, `not_found`, `unsupported`, `unavailable`, `engine`). Audio is unaffected.
    ShareFailed {
        code: String,
        reason: String,
    },
    /// The first picture of a watched screen share arrived.
    WatchStarted {
        identity: String,
        sid: String,
        width: u32,
        height: u32,
    },
    /// A watched share over the last second: pictures so far, the rate, the latest size, and
    /// pictures dropped (the engine's queue or the sink behind).
    WatchStats {
        identity: String,
        sid: String,
        frames: u64,
        fps: f64,
        width: u32,
        height: u32,
        dropped: u64,
    },
    /// A watched share ended (unpublished, or its publisher left).
    WatchEnded {
        identity: String,
        sid: String,
    },
    Warning {
        message: String,
    },
}

/// Whether a track carries sound or pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

/// A [`SessionEvent`] with the wall-clock time it happened (not the time it was read).
#[derive(Debug, Clone, PartialEq)]
pub struct StampedEvent {
    pub at: SystemTime,
    pub event: SessionEvent,
}

/// Sends `event` to the front end, stamped now.
pub(super) fn emit(events: &mpsc::UnboundedSender<StampedEvent>, event: SessionEvent) {
    // A front end that stopped listening does not stop the session.
    if events.send(StampedEvent { at: SystemTime::now(), event }).is_err() {
        tracing::trace!("session event dropped: nobody listens");
    }
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub(super) fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos() as u64).unwrap_or(0)
}
