//! One joined room: the state machine, the participant model, and the audio paths through it.
//!
//! ```text
//! Idle → Connecting → Connected ⇄ Reconnecting → Left | Failed(reason)
//! ```
//!
//! Audio in: the `parley-capture` thread reads a [`FrameSource`] one 10 ms frame at a time —
//! as the sound card delivers them for a device, on a 10 ms clock for a file or tone — runs it
//! through echo cancellation, the level meter and the transmit gate, and hands it to the engine's
//! audio source. Audio out: every subscribed remote audio track gets a task that copies its
//! frames into the [`Mixer`]; the `parley-playout` thread writes one mixed frame whenever the
//! sound card is about to run out (or every 10 ms for a file). Driving both ends from the device
//! clock, rather than a timer of our own, is what keeps the queues between the two clocks — and
//! so mouth-to-ear latency — short (STYLE.md 12).
//!
//! Publishing follows the server's permission: a participant whose token may not publish (a
//! stage room's listener) joins as a listener, with the capture thread running but sending
//! nothing; when a moderator grants publishing (`UpdateParticipant`), the publisher task
//! publishes the microphone without reconnecting, and when the grant is revoked (the server
//! withdraws the track itself) it stops sending and unpublishes the track in the engine too,
//! keeping it for the next grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parley_audio::analysis::rms_dbfs;
use parley_audio::cue::{Cue, CuePlayer};
use parley_audio::gate::{TransmitGate, TransmitMode};
use parley_audio::mixer::Mixer;
use parley_audio::stream::{FrameSink, FrameSource};
use parley_audio::{FRAME_SAMPLES, SAMPLE_RATE};
use parley_livekit_ffi as ffi;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::control::Control;

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
    fn from_info(info: ffi::ParticipantInfo) -> Participant {
        let can_publish = can_publish_microphone(info.permission.as_ref());
        Participant { identity: info.identity, name: info.name, can_publish }
    }
}

/// No permission at all means LiveKit's default grant: everything.
fn can_publish_microphone(permission: Option<&ffi::Permission>) -> bool {
    permission.is_none_or(|permission| permission.allows_publishing(ffi::TrackSource::Microphone))
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
    /// packets lost; plus the mean standing delay of our own queue for the track in the mixer.
    ReceiveStats {
        identity: String,
        sid: String,
        jitter_buffer_ms: Option<f64>,
        jitter_buffer_target_ms: Option<f64>,
        concealed_percent: f64,
        packets_lost: i64,
        mixer_queue_ms: Option<f64>,
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
    /// The room is gone for us.
    Disconnected {
        reason: String,
        code: String,
    },
    Warning {
        message: String,
    },
}

/// A [`SessionEvent`] with the wall-clock time it happened (not the time it was read).
#[derive(Debug, Clone, PartialEq)]
pub struct StampedEvent {
    pub at: SystemTime,
    pub event: SessionEvent,
}

/// Errors a session reports to its front end.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Engine(#[from] ffi::Error),
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    #[error("writing the output failed: {0}")]
    Output(#[from] parley_audio::wav::WavError),
    #[error("{0}")]
    Audio(String),
    #[error("the engine did not finish {0} within {LEAVE_STEP_LIMIT:?}; left without waiting longer")]
    LeaveTimedOut(&'static str),
}

/// How long each step of leaving (the capture thread ending, unpublishing, disconnecting) may
/// take before [`Session::leave`] goes on without it: a stuck step in the engine must not keep a
/// user in a room they asked to leave, nor a process from exiting.
pub const LEAVE_STEP_LIMIT: Duration = Duration::from_secs(5);

/// Runs one step of leaving, giving up after [`LEAVE_STEP_LIMIT`].
async fn leave_step<T>(step: &'static str, work: impl std::future::Future<Output = T>) -> Result<T, SessionError> {
    tokio::time::timeout(LEAVE_STEP_LIMIT, work).await.map_err(|_| {
        tracing::warn!(step, "a step of leaving timed out");
        SessionError::LeaveTimedOut(step)
    })
}

/// What to join and with which audio ends.
pub struct JoinRequest {
    pub url: String,
    pub token: String,
    pub options: ffi::RoomOptions,
    /// Audio to publish as the microphone (while the server allows it); `None` joins as a listener.
    pub input: Option<Box<dyn FrameSource>>,
    /// Where the mix of all remote audio goes; `None` plays nothing.
    pub output: Option<Box<dyn FrameSink>>,
    /// Echo cancellation, noise suppression, gain control: for a microphone, not for a file.
    pub processing: Option<ffi::ApmConfig>,
    /// When the input is transmitted.
    pub transmit: TransmitMode,
    /// How long audio takes from the speaker back into the microphone, for the echo canceller.
    pub echo_delay_ms: i32,
    /// Where confirmation sounds play; `None` plays none.
    pub cues: Option<CuePlayer>,
    /// Emit [`SessionEvent::Levels`] every 100 ms.
    pub report_levels: bool,
    /// Report each remote track's receive statistics this often ([`SessionEvent::ReceiveStats`]).
    pub report_stats: Option<Duration>,
    /// What the sound devices granted (`"input"`/`"output"`), reported as `DeviceOpened`.
    pub device_info: Vec<(&'static str, parley_audio::device::StreamInfo)>,
}

/// How long a remote track's audio may wait in the mixer before the oldest is dropped.
const MAX_PLAYOUT_QUEUE_MS: u32 = 40;
/// A frame whose peak is below this (about −60 dBFS) counts as silence for `FirstAudio`.
const AUDIBLE_PEAK: i16 = 33;

/// A joined room. Call [`Session::leave`] to leave cleanly.
pub struct Session {
    room: ffi::Room,
    events: mpsc::UnboundedSender<StampedEvent>,
    mixer: Arc<Mutex<Mixer>>,
    microphone: Option<Microphone>,
    playout: Option<std::thread::JoinHandle<Result<(), SessionError>>>,
    /// Tells the capture and playout threads to end.
    stop_audio: StopOnDrop,
    follower: JoinHandle<()>,
    muted: Arc<AtomicBool>,
    deafened: AtomicBool,
    cues: Option<CuePlayer>,
    input_level: Arc<AtomicU32>,
    meter: Option<JoinHandle<()>>,
    /// Whether the server lets us publish the microphone now (kept by the follower).
    may_publish: Arc<AtomicBool>,
}

struct Microphone {
    track: SharedTrack,
    thread: std::thread::JoinHandle<()>,
    gate: std::sync::mpsc::SyncSender<GateCommand>,
    /// Publishes and withdraws the track as the server's permission changes.
    publisher: JoinHandle<()>,
    _source: Arc<ffi::AudioSource>,
}

/// The microphone track and its publication (when published), shared by the session (mute,
/// leave) and the publisher task. Held only for short sections that never await.
type SharedTrack = Arc<Mutex<MicrophoneTrack>>;

struct MicrophoneTrack {
    track: Arc<ffi::LocalAudioTrack>,
    publication: Option<ffi::LocalTrackPublication>,
}

/// What the room follower tells the publisher task.
#[derive(Debug)]
enum PublishCommand {
    /// The server now allows (or forbids) publishing the microphone.
    Allowed(bool),
    /// The engine reports this local publication gone.
    Unpublished(String),
}

/// What the microphone task's gate is told; polled once per frame.
enum GateCommand {
    Press,
    Release,
}

/// The audio processing module shared by the microphone (near end) and playout (far end).
type SharedApm = Arc<Mutex<ffi::Apm>>;

impl Session {
    /// Joins a room, starts playout and publishes the input — at once when the token allows
    /// publishing, otherwise when a moderator grants it (see the module docs). Returns the
    /// session and its event stream (which starts with `StateChanged(Connecting)`). Call from a
    /// tokio runtime.
    ///
    /// Errors: connect failures ([`ffi::Error::Connect`]), engine errors, output errors.
    pub async fn join(
        engine: &'static ffi::Engine,
        request: JoinRequest,
    ) -> Result<(Session, mpsc::UnboundedReceiver<StampedEvent>), SessionError> {
        let (events, receiver) = mpsc::unbounded_channel();
        emit(&events, SessionEvent::StateChanged { state: SessionState::Connecting });
        let (room, room_events) = match ffi::Room::connect(engine, &request.url, &request.token, &request.options).await
        {
            Ok(joined) => joined,
            Err(error) => {
                emit(&events, SessionEvent::StateChanged { state: SessionState::Failed { reason: error.to_string() } });
                return Err(error.into());
            }
        };
        emit(&events, SessionEvent::StateChanged { state: SessionState::Connected });
        if let Some(cues) = &request.cues {
            cues.play(Cue::Joined);
        }
        let participants: Vec<Participant> =
            room.remote_participants().into_iter().map(Participant::from_info).collect();
        let publishers =
            participants.iter().map(|participant| (participant.identity.clone(), participant.can_publish)).collect();
        emit(
            &events,
            SessionEvent::Joined {
                room: room.name().to_string(),
                identity: room.local_participant().identity().to_string(),
                participants,
            },
        );
        let can_publish = can_publish_microphone(room.local_permission().as_ref());
        emit(&events, SessionEvent::PublishPermission { can_publish });
        for (direction, info) in request.device_info.iter() {
            emit(
                &events,
                SessionEvent::DeviceOpened {
                    direction: direction.to_string(),
                    device: info.device.clone(),
                    sample_rate: info.sample_rate,
                    channels: info.channels,
                    buffer_frames: info.buffer_frames,
                },
            );
        }
        let mixer = Arc::new(Mutex::new(Mixer::new(MAX_PLAYOUT_QUEUE_MS)));
        let apm: Option<SharedApm> = match request.processing {
            Some(config) => {
                let mut apm = ffi::Apm::new(engine, config)?;
                apm.set_stream_delay_ms(request.echo_delay_ms)?;
                Some(Arc::new(Mutex::new(apm)))
            }
            None => None,
        };
        let playing = request.output.is_some();
        let stop_audio = Arc::new(AtomicBool::new(false));
        let playout = match request.output {
            Some(sink) => {
                let (mixer, apm, events, stop) =
                    (Arc::clone(&mixer), apm.clone(), events.clone(), Arc::clone(&stop_audio));
                let thread = std::thread::Builder::new()
                    .name("parley-playout".to_string())
                    .spawn(move || playout(sink, &mixer, apm.as_ref(), &events, &stop))
                    .map_err(|error| SessionError::Audio(format!("cannot start the playout thread: {error}")))?;
                Some(thread)
            }
            None => None,
        };
        let may_publish = Arc::new(AtomicBool::new(can_publish));
        let (publish_commands, publish_receiver) = if request.input.is_some() {
            let (sender, receiver) = mpsc::unbounded_channel();
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        let local = LocalPublishing {
            identity: room.local_participant().identity().to_string(),
            may_publish: Arc::clone(&may_publish),
            publisher: publish_commands,
        };
        let follower = tokio::spawn(follow(
            room_events,
            events.clone(),
            playing.then(|| Arc::clone(&mixer)),
            request.cues.clone(),
            local,
            publishers,
            request.report_stats,
        ));
        let mut session = Session {
            room,
            events: events.clone(),
            mixer,
            microphone: None,
            playout,
            stop_audio: StopOnDrop(stop_audio),
            follower,
            muted: Arc::new(AtomicBool::new(false)),
            deafened: AtomicBool::new(false),
            cues: request.cues.clone(),
            input_level: Arc::new(AtomicU32::new(SILENCE_DBFS.to_bits())),
            meter: None,
            may_publish,
        };
        if request.report_levels {
            let meter = meter(Arc::clone(&session.mixer), Arc::clone(&session.input_level), events.clone());
            session.meter = Some(tokio::spawn(meter));
        }
        if let (Some(input), Some(publish_receiver)) = (request.input, publish_receiver) {
            // The SFU reads inside RED packets, which it cannot do when they are encrypted; LiveKit's
            // own clients turn RED off with E2EE for the same reason.
            let publish = ffi::PublishOptions { red: request.options.e2ee_shared_key.is_none(), ..Default::default() };
            let microphone = MicrophoneSetup {
                input,
                apm,
                gate: TransmitGate::new(request.transmit),
                muted: Arc::clone(&session.muted),
                cues: request.cues.clone(),
                level: Arc::clone(&session.input_level),
                publishing: Arc::new(AtomicBool::new(false)),
            };
            session.start_microphone(engine, microphone, publish, can_publish, publish_receiver).await?;
        }
        Ok((session, receiver))
    }

    /// Creates the microphone's source and track, publishes the track when `can_publish`, and
    /// starts the capture thread and the publisher task (which follows later permission changes
    /// arriving on `commands`).
    async fn start_microphone(
        &mut self,
        engine: &'static ffi::Engine,
        setup: MicrophoneSetup,
        publish: ffi::PublishOptions,
        can_publish: bool,
        commands: mpsc::UnboundedReceiver<PublishCommand>,
    ) -> Result<(), SessionError> {
        let source = Arc::new(ffi::AudioSource::new(engine, SAMPLE_RATE, 1)?);
        let track = Arc::new(ffi::LocalAudioTrack::new("microphone", &source)?);
        let publication = if can_publish {
            Some(self.room.local_participant().publish_audio_track(&track, &publish).await?)
        } else {
            None
        };
        setup.publishing.store(publication.is_some(), Ordering::Relaxed);
        let shared = Arc::new(Mutex::new(MicrophoneTrack { track, publication }));
        let publisher = Publisher {
            participant: self.room.local_participant().clone(),
            source: Arc::clone(&source),
            options: publish,
            track: Arc::clone(&shared),
            publishing: Arc::clone(&setup.publishing),
            muted: Arc::clone(&self.muted),
            events: self.events.clone(),
        };
        let sid = lock_track(&shared).publication.as_ref().map(|publication| publication.sid.clone());
        let (gate, gate_commands) = std::sync::mpsc::sync_channel(64);
        let (engine_source, events, stop) = (Arc::clone(&source), self.events.clone(), Arc::clone(&self.stop_audio.0));
        let runtime = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("parley-capture".to_string())
            .spawn(move || feed_microphone(setup, &gate_commands, &engine_source, &events, sid, &runtime, &stop))
            .map_err(|error| SessionError::Audio(format!("cannot start the capture thread: {error}")))?;
        let publisher = tokio::spawn(publisher.run(commands));
        self.microphone = Some(Microphone { track: shared, thread, gate, publisher, _source: source });
        Ok(())
    }

    /// Applies a front end's command. Any thread with the session.
    ///
    /// Errors: engine errors (muting the track).
    pub fn apply(&self, control: &Control) -> Result<(), SessionError> {
        match control {
            Control::PttStart => self.send_gate(GateCommand::Press),
            Control::PttStop => self.send_gate(GateCommand::Release),
            Control::Mute => self.set_muted(true)?,
            Control::Unmute => self.set_muted(false)?,
            Control::ToggleMute => self.set_muted(!self.muted.load(Ordering::Relaxed))?,
            Control::Deafen => self.set_deafened(true),
            Control::Undeafen => self.set_deafened(false),
            Control::ToggleDeafen => self.set_deafened(!self.deafened.load(Ordering::Relaxed)),
            Control::Volume { identity, percent } => self.set_volume(identity, *percent),
            Control::OutputVolume { percent } => self.set_output_volume(*percent),
            Control::LocalMute { identity } => self.set_local_mute(identity, true),
            Control::LocalUnmute { identity } => self.set_local_mute(identity, false),
        }
        Ok(())
    }

    fn send_gate(&self, command: GateCommand) {
        if let Some(microphone) = &self.microphone
            && microphone.gate.try_send(command).is_err()
        {
            emit(&self.events, SessionEvent::Warning { message: "push-to-talk command dropped (busy)".into() });
        }
    }

    /// The room's name.
    pub fn room_name(&self) -> &str {
        self.room.name()
    }

    /// Our identity in the room.
    pub fn identity(&self) -> &str {
        self.room.local_participant().identity()
    }

    /// Whether the server lets us publish the microphone now (a stage room's listener may not
    /// until a moderator invites them to speak). Any thread.
    pub fn can_publish(&self) -> bool {
        self.may_publish.load(Ordering::Relaxed)
    }

    /// Mutes or unmutes our microphone track; others see the change. The state carries over to
    /// later publications (after a moderator's grant).
    pub fn set_muted(&self, muted: bool) -> Result<(), SessionError> {
        self.muted.store(muted, Ordering::Relaxed);
        if let Some(microphone) = &self.microphone {
            // Under the lock, so that a track the publisher swaps in meanwhile gets the same state.
            let shared = lock_track(&microphone.track);
            shared.track.set_muted(muted)?;
        }
        self.cue(if muted { Cue::Muted } else { Cue::Unmuted });
        emit(&self.events, SessionEvent::MuteChanged { muted });
        Ok(())
    }

    /// Per-participant playback volume, 0–200 %.
    pub fn set_volume(&self, identity: &str, percent: u32) {
        let percent = percent.min(200);
        self.lock_mixer().set_gain(identity, percent as f32 / 100.0);
        emit(&self.events, SessionEvent::VolumeChanged { identity: identity.to_string(), percent });
    }

    /// Volume of everything played, 0–200 %.
    pub fn set_output_volume(&self, percent: u32) {
        let percent = percent.min(200);
        self.lock_mixer().set_master_gain(percent as f32 / 100.0);
        emit(&self.events, SessionEvent::OutputVolumeChanged { percent });
    }

    /// Silences (or restores) one participant for us only.
    pub fn set_local_mute(&self, identity: &str, muted: bool) {
        self.lock_mixer().set_local_mute(identity, muted);
        emit(&self.events, SessionEvent::LocalMuteChanged { identity: identity.to_string(), muted });
    }

    /// Deafen: play nothing.
    pub fn set_deafened(&self, deafened: bool) {
        self.lock_mixer().set_deafened(deafened);
        self.deafened.store(deafened, Ordering::Relaxed);
        self.cue(if deafened { Cue::Deafened } else { Cue::Undeafened });
        emit(&self.events, SessionEvent::DeafenChanged { deafened });
    }

    fn cue(&self, cue: Cue) {
        if let Some(cues) = &self.cues {
            cues.play(cue);
        }
    }

    fn lock_mixer(&self) -> std::sync::MutexGuard<'_, Mixer> {
        // The mixer holds plain values; a panic elsewhere cannot leave it half-updated.
        self.mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leaves the room, stops the audio tasks and closes the output.
    pub async fn leave(mut self) -> Result<(), SessionError> {
        if let Some(cues) = &self.cues {
            // Let the goodbye sound finish before the device closes (plus the device's buffer).
            let lasts = cues.play(Cue::Left);
            if !lasts.is_zero() {
                tokio::time::sleep(lasts + Duration::from_millis(150)).await;
            }
        }
        self.stop_audio.raise();
        if let Some(microphone) = self.microphone.take() {
            // No grant may publish once we are leaving.
            microphone.publisher.abort();
            let publication = lock_track(&microphone.track).publication.take();
            // The capture thread ends within one frame once told; waiting keeps the source (and
            // the frame buffer the engine reads) alive until then.
            let thread = microphone.thread;
            let ended =
                leave_step("stopping the microphone", tokio::task::spawn_blocking(move || thread.join().is_ok()));
            match ended.await {
                Ok(Ok(true)) => {}
                // Timed out: the thread still holds the source, so it must not be unpublished
                // under it; disconnecting ends the publication anyway.
                Err(_) => {}
                Ok(_) => tracing::warn!("the capture thread ended abnormally"),
            }
            if let Some(publication) = publication {
                let unpublish = self.room.local_participant().unpublish_track(&publication.sid);
                match leave_step("unpublishing the microphone", unpublish).await {
                    Ok(Ok(())) | Err(_) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "unpublishing before leaving failed"),
                }
            }
        }
        let disconnected = match leave_step("disconnecting", self.room.disconnect()).await {
            Ok(result) => result.map_err(SessionError::from),
            Err(timed_out) => Err(timed_out),
        };
        let output = match self.playout.take() {
            Some(thread) => {
                match leave_step("stopping playback", tokio::task::spawn_blocking(move || thread.join())).await {
                    Ok(Ok(Ok(result))) => result,
                    Err(timed_out) => Err(timed_out),
                    _ => Err(SessionError::Audio("the playout thread ended abnormally".to_string())),
                }
            }
            None => Ok(()),
        };
        self.follower.abort();
        if let Some(meter) = self.meter.take() {
            meter.abort();
        }
        emit(&self.events, SessionEvent::StateChanged { state: SessionState::Left });
        disconnected?;
        output
    }
}

/// The audio threads' stop flag, raised when the session goes: a session dropped without
/// [`Session::leave`] (an error path) still stops its threads.
struct StopOnDrop(Arc<AtomicBool>);

impl StopOnDrop {
    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.raise();
    }
}

fn emit(events: &mpsc::UnboundedSender<StampedEvent>, event: SessionEvent) {
    // A front end that stopped listening does not stop the session.
    if events.send(StampedEvent { at: SystemTime::now(), event }).is_err() {
        tracing::trace!("session event dropped: nobody listens");
    }
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos() as u64).unwrap_or(0)
}

/// What the microphone task needs: the input, its processing and its gate.
struct MicrophoneSetup {
    input: Box<dyn FrameSource>,
    apm: Option<SharedApm>,
    gate: TransmitGate,
    muted: Arc<AtomicBool>,
    cues: Option<CuePlayer>,
    /// The last frame's level (f32 bits), for the meter.
    level: Arc<AtomicU32>,
    /// Whether frames go to the engine: true while the track is published. A listener's
    /// capture keeps running (meter, gate, a warm pipeline) but sends nothing.
    publishing: Arc<AtomicBool>,
}

/// The level meters show for silence.
const SILENCE_DBFS: f32 = -100.0;

/// Speaking into a muted microphone louder than this earns a "you are muted" cue…
const SPEAKING_DBFS: f32 = -40.0;
/// …at most once per this many 10 ms frames (5 s).
const MUTED_REMINDER_FRAMES: u64 = 500;

/// How often a worker thread looks at its device between frames. Each look is a few atomic
/// loads; a millisecond keeps the added delay under one millisecond at a negligible CPU cost.
const DEVICE_POLL: Duration = Duration::from_millis(1);

/// The pace of one audio worker: a sound card's clock, or ours for files and tones.
struct Pace {
    start: std::time::Instant,
    frames: u32,
}

impl Pace {
    fn new() -> Pace {
        Pace { start: std::time::Instant::now(), frames: 0 }
    }

    /// Waits until `ready` says the device is ready (clocked ends) or until the next 10 ms
    /// boundary of our own clock (other ends; late frames are caught up, so frame `n` always
    /// belongs to `start + n × 10 ms`). Returns false when `stop` was set meanwhile.
    fn wait(&mut self, clocked: bool, stop: &AtomicBool, mut ready: impl FnMut() -> bool) -> bool {
        if clocked {
            while !ready() {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(DEVICE_POLL);
            }
        } else {
            let due = self.start + Duration::from_millis(10) * self.frames;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.frames = self.frames.wrapping_add(1);
        !stop.load(Ordering::Relaxed)
    }
}

/// The capture thread: sends each 10 ms frame of the input as it arrives. Each frame: input →
/// APM (echo cancellation etc.) → level → transmit gate → engine (while published). Ends when
/// `stop` is set. `sid` is the publication at start, if the track was published at once.
fn feed_microphone(
    setup: MicrophoneSetup,
    commands: &std::sync::mpsc::Receiver<GateCommand>,
    source: &ffi::AudioSource,
    events: &mpsc::UnboundedSender<StampedEvent>,
    sid: Option<String>,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    let MicrophoneSetup { mut input, apm, mut gate, muted, cues, level: meter_level, publishing } = setup;
    let events = events.clone();
    let push_to_talk = matches!(gate.mode(), TransmitMode::PushToTalk { .. });
    let mut frames = 0u64;
    let mut reminded_at: Option<u64> = None;
    let mut frame = vec![0i16; FRAME_SAMPLES];
    let mut ended = false;
    let mut transmitting = None;
    let clocked = input.clocked();
    let mut pace = Pace::new();
    if let Some(sid) = sid {
        emit(&events, SessionEvent::PublishingStarted { sid, unix_ns: unix_ns() });
    }
    loop {
        if !pace.wait(clocked, stop, || input.ready()) {
            return;
        }
        if !input.fill(&mut frame) && !ended {
            ended = true;
            emit(&events, SessionEvent::InputEnded);
        }
        if let Some(message) = input.take_notice() {
            emit(&events, SessionEvent::DeviceChanged { message });
        }
        if let Some(apm) = &apm {
            let processed =
                apm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).process_stream(&mut frame, SAMPLE_RATE, 1);
            if let Err(error) = processed {
                emit(&events, SessionEvent::Warning { message: format!("audio processing failed: {error}") });
            }
        }
        while let Ok(command) = commands.try_recv() {
            match command {
                GateCommand::Press => gate.press(),
                GateCommand::Release => gate.release(),
            }
        }
        let level = rms_dbfs(&frame);
        meter_level.store(level.max(SILENCE_DBFS).to_bits(), Ordering::Relaxed);
        let open = gate.process(&mut frame, level);
        frames += 1;
        if transmitting != Some(open) {
            if push_to_talk
                && transmitting.is_some()
                && let Some(cues) = &cues
            {
                cues.play(if open { Cue::PttOn } else { Cue::PttOff });
            }
            transmitting = Some(open);
            emit(&events, SessionEvent::TransmitChanged { on: open });
        }
        if muted.load(Ordering::Relaxed)
            && open
            && level >= SPEAKING_DBFS
            && reminded_at.is_none_or(|at| frames - at >= MUTED_REMINDER_FRAMES)
            && let Some(cues) = &cues
        {
            reminded_at = Some(frames);
            cues.play(Cue::YouAreMuted);
        }
        if !publishing.load(Ordering::Relaxed) {
            // Not published (a listener, or publishing revoked): nothing leaves this machine.
            continue;
        }
        // The engine answers once it has taken the frame (its queue is zero-length, so this
        // is quick); the buffer stays ours until then.
        frame = match runtime.block_on(source.capture_frame(frame)) {
            Ok(returned) => returned,
            Err(error) => {
                emit(&events, SessionEvent::Warning { message: format!("sending audio failed: {error}") });
                return;
            }
        };
        frame.resize(FRAME_SAMPLES, 0);
    }
}

fn lock_track(shared: &Mutex<MicrophoneTrack>) -> std::sync::MutexGuard<'_, MicrophoneTrack> {
    // Plain values and handles: a panic elsewhere cannot leave them half-updated.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Publishes the microphone when the server grants publishing and withdraws it when the grant
/// is revoked, one command at a time (a tokio task owned by the session's [`Microphone`]).
struct Publisher {
    participant: ffi::LocalParticipant,
    source: Arc<ffi::AudioSource>,
    options: ffi::PublishOptions,
    track: SharedTrack,
    /// Tells the capture thread whether to send frames.
    publishing: Arc<AtomicBool>,
    muted: Arc<AtomicBool>,
    events: mpsc::UnboundedSender<StampedEvent>,
}

impl Publisher {
    async fn run(self, mut commands: mpsc::UnboundedReceiver<PublishCommand>) {
        while let Some(command) = commands.recv().await {
            match command {
                PublishCommand::Allowed(true) => self.publish().await,
                PublishCommand::Allowed(false) => self.withdraw().await,
                PublishCommand::Unpublished(sid) => self.forget(&sid),
            }
        }
    }

    /// Publishes the track unless it is published. The engine may have ended the track when the
    /// server unpublished it; a new track on the same source then takes its place.
    async fn publish(&self) {
        let track = {
            let shared = lock_track(&self.track);
            if shared.publication.is_some() {
                return;
            }
            Arc::clone(&shared.track)
        };
        let published = match self.participant.publish_audio_track(&track, &self.options).await {
            Ok(publication) => Ok(publication),
            Err(first) => {
                tracing::debug!(error = %first, "publishing the microphone track again failed; trying a new track");
                self.publish_new_track().await
            }
        };
        match published {
            Ok(publication) => {
                let sid = publication.sid.clone();
                lock_track(&self.track).publication = Some(publication);
                self.publishing.store(true, Ordering::Relaxed);
                emit(&self.events, SessionEvent::PublishingStarted { sid, unix_ns: unix_ns() });
            }
            Err(error) => emit(
                &self.events,
                SessionEvent::Warning {
                    message: format!("cannot publish the microphone after being allowed to: {error}"),
                },
            ),
        }
    }

    async fn publish_new_track(&self) -> Result<ffi::LocalTrackPublication, SessionError> {
        let track = Arc::new(ffi::LocalAudioTrack::new("microphone", &self.source)?);
        {
            // Under the lock: `Session::set_muted` mutes whichever track is current.
            let mut shared = lock_track(&self.track);
            track.set_muted(self.muted.load(Ordering::Relaxed))?;
            shared.track = Arc::clone(&track);
        }
        Ok(self.participant.publish_audio_track(&track, &self.options).await?)
    }

    /// Stops sending and unpublishes the track, keeping it for the next grant. The server has
    /// already withdrawn it, but the engine does not count that as an unpublication: without
    /// this, the next grant would give one track two publications, and the engine aborts the
    /// process when it releases them (seen with the pinned library).
    async fn withdraw(&self) {
        self.publishing.store(false, Ordering::Relaxed);
        let Some(publication) = lock_track(&self.track).publication.take() else { return };
        if let Err(error) = self.participant.unpublish_track_keeping(&publication.sid).await {
            tracing::debug!(%error, "unpublishing after the permission was revoked failed");
        }
        emit(&self.events, SessionEvent::PublishingStopped { sid: publication.sid });
    }

    /// The engine reports our track unpublished. After our own unpublication (leaving, a
    /// revocation) the publication is already gone; otherwise the engine dropped it on its own:
    /// stop sending, and a later grant publishes again.
    fn forget(&self, sid: &str) {
        let mut shared = lock_track(&self.track);
        if shared.publication.as_ref().is_some_and(|publication| publication.sid == sid) {
            shared.publication = None;
            self.publishing.store(false, Ordering::Relaxed);
            emit(&self.events, SessionEvent::PublishingStopped { sid: sid.to_string() });
        }
    }
}

/// What the room follower needs to follow our own permission to publish.
struct LocalPublishing {
    identity: String,
    /// The current permission, shared with [`Session::can_publish`].
    may_publish: Arc<AtomicBool>,
    /// The publisher task, when there is a microphone to publish.
    publisher: Option<mpsc::UnboundedSender<PublishCommand>>,
}

impl LocalPublishing {
    fn tell(&self, command: PublishCommand) {
        if let Some(publisher) = &self.publisher
            && publisher.send(command).is_err()
        {
            tracing::debug!("the publisher task has ended (leaving)");
        }
    }
}

/// Reports levels every 100 ms: the microphone's, and each participant's loudest source.
async fn meter(mixer: Arc<Mutex<Mixer>>, input_level: Arc<AtomicU32>, events: mpsc::UnboundedSender<StampedEvent>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticker.tick().await;
        let mut participants = std::collections::BTreeMap::new();
        for (_, identity, stats) in mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).stats() {
            let level = if stats.level > 0.0 {
                parley_audio::linear_to_db(stats.level).max(SILENCE_DBFS)
            } else {
                SILENCE_DBFS
            };
            let entry = participants.entry(identity.to_string()).or_insert(SILENCE_DBFS);
            *entry = f32::max(*entry, level);
        }
        let input_dbfs = f32::from_bits(input_level.load(Ordering::Relaxed));
        emit(&events, SessionEvent::Levels { input_dbfs, participants });
    }
}

/// The playout thread: writes one mixed frame whenever the sink wants one, until `stop` is
/// set, then closes the sink. Each frame is also the echo canceller's far-end reference.
fn playout(
    mut sink: Box<dyn FrameSink>,
    mixer: &Mutex<Mixer>,
    apm: Option<&SharedApm>,
    events: &mpsc::UnboundedSender<StampedEvent>,
    stop: &AtomicBool,
) -> Result<(), SessionError> {
    let mut frame = vec![0i16; FRAME_SAMPLES];
    let mut reference = vec![0i16; FRAME_SAMPLES];
    let clocked = sink.clocked();
    let mut pace = Pace::new();
    emit(events, SessionEvent::PlayoutStarted { unix_ns: unix_ns() });
    loop {
        if !pace.wait(clocked, stop, || sink.wants_frame()) {
            break;
        }
        mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).mix(&mut frame);
        if let Some(apm) = apm {
            // The reverse stream may be rewritten in place; what we play stays untouched.
            reference.copy_from_slice(&frame);
            let analysed = apm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).process_reverse_stream(
                &mut reference,
                SAMPLE_RATE,
                1,
            );
            if let Err(error) = analysed {
                emit(events, SessionEvent::Warning { message: format!("echo reference failed: {error}") });
            }
        }
        if let Err(error) = sink.write(&frame) {
            emit(events, SessionEvent::Warning { message: error.to_string() });
            return Err(error.into());
        }
        if let Some(message) = sink.take_notice() {
            emit(events, SessionEvent::DeviceChanged { message });
        }
    }
    sink.finish()?;
    Ok(())
}

/// Turns room events into session events and wires subscribed audio into the mixer.
async fn follow(
    mut room_events: mpsc::UnboundedReceiver<ffi::RoomEvent>,
    events: mpsc::UnboundedSender<StampedEvent>,
    mixer: Option<Arc<Mutex<Mixer>>>,
    cues: Option<CuePlayer>,
    local: LocalPublishing,
    // Who may publish their microphone, as last reported: the server repeats permission
    // updates for rights we do not show (data, metadata), and those are not news.
    mut publishers: HashMap<String, bool>,
    report_stats: Option<Duration>,
) {
    let cue = |cue: Cue| {
        if let Some(cues) = &cues {
            cues.play(cue);
        }
    };
    let mut streams: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Some(event) = room_events.recv().await {
        let mapped = match event {
            ffi::RoomEvent::ParticipantConnected(info) => {
                cue(Cue::ParticipantJoined);
                let joined = Participant::from_info(info);
                publishers.insert(joined.identity.clone(), joined.can_publish);
                Some(SessionEvent::ParticipantJoined {
                    identity: joined.identity,
                    name: joined.name,
                    can_publish: joined.can_publish,
                })
            }
            ffi::RoomEvent::ParticipantDisconnected { identity, reason } => {
                cue(Cue::ParticipantLeft);
                publishers.remove(&identity);
                Some(SessionEvent::ParticipantLeft { identity, reason: reason.code().to_string() })
            }
            ffi::RoomEvent::AudioTrackSubscribed { identity, track } => {
                if let Some(mixer) = &mixer {
                    match ffi::AudioStream::new(&track, SAMPLE_RATE, 1) {
                        Ok(stream) => {
                            let task = tokio::spawn(receive(
                                stream,
                                track.clone(),
                                Arc::clone(mixer),
                                events.clone(),
                                report_stats,
                            ));
                            if let Some(previous) = streams.insert(track.sid.clone(), task) {
                                previous.abort();
                            }
                        }
                        Err(error) => emit(
                            &events,
                            SessionEvent::Warning { message: format!("cannot play {identity}'s audio: {error}") },
                        ),
                    }
                }
                Some(SessionEvent::TrackSubscribed { identity, sid: track.sid })
            }
            ffi::RoomEvent::TrackUnsubscribed { identity, sid } => {
                if let Some(task) = streams.remove(&sid) {
                    task.abort();
                }
                if let Some(mixer) = &mixer {
                    mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_source(&sid);
                }
                Some(SessionEvent::TrackUnsubscribed { identity, sid })
            }
            ffi::RoomEvent::ParticipantPermissionChanged { identity, permission: Some(permission) }
                if identity == local.identity =>
            {
                let allowed = permission.allows_publishing(ffi::TrackSource::Microphone);
                // The server also reports changes of rights we do not follow (data, metadata).
                (local.may_publish.swap(allowed, Ordering::Relaxed) != allowed).then(|| {
                    local.tell(PublishCommand::Allowed(allowed));
                    SessionEvent::PublishPermission { can_publish: allowed }
                })
            }
            ffi::RoomEvent::ParticipantPermissionChanged { identity, permission } => {
                let allowed = can_publish_microphone(permission.as_ref());
                (publishers.insert(identity.clone(), allowed) != Some(allowed))
                    .then_some(SessionEvent::ParticipantPermission { identity, can_publish: allowed })
            }
            ffi::RoomEvent::LocalTrackUnpublished { sid } => {
                local.tell(PublishCommand::Unpublished(sid));
                None
            }
            ffi::RoomEvent::TrackMuted { identity, sid } => Some(SessionEvent::TrackMuted { identity, sid }),
            ffi::RoomEvent::TrackUnmuted { identity, sid } => Some(SessionEvent::TrackUnmuted { identity, sid }),
            ffi::RoomEvent::ActiveSpeakersChanged(identities) => Some(SessionEvent::ActiveSpeakers { identities }),
            ffi::RoomEvent::ConnectionQualityChanged { identity, quality } => {
                Some(SessionEvent::ConnectionQuality { identity, quality: format!("{quality:?}").to_lowercase() })
            }
            ffi::RoomEvent::Reconnecting => {
                emit(&events, SessionEvent::StateChanged { state: SessionState::Reconnecting });
                Some(SessionEvent::Reconnecting)
            }
            ffi::RoomEvent::Reconnected => {
                emit(&events, SessionEvent::StateChanged { state: SessionState::Connected });
                Some(SessionEvent::Reconnected)
            }
            ffi::RoomEvent::Disconnected { reason } => {
                for (_, task) in streams.drain() {
                    task.abort();
                }
                Some(SessionEvent::Disconnected {
                    reason: reason.describe().to_string(),
                    code: reason.code().to_string(),
                })
            }
            _ => None,
        };
        if let Some(mapped) = mapped {
            emit(&events, mapped);
        }
    }
}

/// Copies one remote track's frames into the mixer; every `report_stats`, reports how the
/// track fares in the receiver.
async fn receive(
    mut stream: ffi::AudioStream,
    track: ffi::RemoteAudioTrack,
    mixer: Arc<Mutex<Mixer>>,
    events: mpsc::UnboundedSender<StampedEvent>,
    report_stats: Option<Duration>,
) {
    let (sid, identity) = (track.sid.clone(), track.participant_identity.clone());
    mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).add_source(&sid, &identity);
    let mut samples = Vec::with_capacity(FRAME_SAMPLES);
    let mut heard = false;
    // Without statistics the timer never fires: one day is as good as never for a call.
    let mut ticker = tokio::time::interval(report_stats.unwrap_or(Duration::from_secs(86_400)));
    ticker.tick().await;
    let mut previous = (ffi::ReceiveStats::default(), parley_audio::mixer::SourceStats::default());
    loop {
        tokio::select! {
            frame = stream.next_frame(&mut samples) => {
                if frame.is_none() {
                    break;
                }
                if !heard && samples.iter().any(|sample| sample.unsigned_abs() > AUDIBLE_PEAK as u16) {
                    heard = true;
                    emit(&events, SessionEvent::FirstAudio { identity: identity.clone(), sid: sid.clone() });
                }
                mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(&sid, &samples);
            }
            _ = ticker.tick(), if report_stats.is_some() => {
                let Ok(Some(now)) = track.receive_stats().await else { continue };
                let interval = now.since(&previous.0);
                let queue = mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).source_stats(&sid);
                let queue = queue.unwrap_or_default();
                let mixer_queue_ms = queue.mean_queue_ms_since(&previous.1);
                previous = (now, queue);
                emit(
                    &events,
                    SessionEvent::ReceiveStats {
                        identity: identity.clone(),
                        sid: sid.clone(),
                        jitter_buffer_ms: interval.jitter_buffer_ms,
                        jitter_buffer_target_ms: interval.jitter_buffer_target_ms,
                        concealed_percent: interval.concealed_percent,
                        packets_lost: interval.packets_lost,
                        mixer_queue_ms,
                    },
                );
            }
        }
    }
    mixer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_source(&sid);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stuck_step_of_leaving_is_given_up_with_a_message_naming_it() {
        let stuck = leave_step("disconnecting", std::future::pending::<()>()).await;
        let error = stuck.expect_err("a step that never ends times out");
        assert!(matches!(error, SessionError::LeaveTimedOut("disconnecting")));
        assert_eq!(error.to_string(), "the engine did not finish disconnecting within 5s; left without waiting longer");
        let done = leave_step("disconnecting", async { 7 }).await;
        assert_eq!(done.expect("a step that ends is waited for"), 7);
    }
}
