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
//!
//! Each loop lives in a module of its own and knows its ends only through traits, so tests
//! drive it without an engine: [`capture`] (the `parley-capture` thread), [`playout`] (the
//! `parley-playout` thread), [`publisher`] (publishing as the permission changes), [`follow`]
//! (room events, and one receive task per remote audio track), [`meter`] (levels); [`pace`] is
//! their shared clock and [`event`] what they report. Video loops go beside them: [`share`]
//! (the `parley-share` thread: capture, scale, send; [`Session::start_share`]) and [`watch`]
//! (a watched screen share's pictures to a [`VideoSink`], [`JoinRequest::watch`]), each on its
//! own thread with bounded, dropping hand-overs, so that video never holds audio back.

mod capture;
mod event;
mod follow;
mod meter;
mod pace;
mod platform;
mod playout;
mod publisher;
mod reconnect;
mod share;
mod share_audio;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_audio::SAMPLE_RATE;
use parley_audio::cue::{Cue, CuePlayer};
use parley_audio::gate::{TransmitGate, TransmitMode};
use parley_audio::mixer::Mixer;
use parley_audio::stream::{FrameSink, FrameSource};
use parley_livekit_ffi as ffi;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::control::Control;
use capture::{EngineOutlet, GateCommand, MicrophoneSetup, SharedApm};
pub use event::{CallEncryption, MediaKind, Participant, SessionEvent, SessionState, StampedEvent};
use event::{can_publish_microphone, emit};
use follow::LocalPublishing;
pub use meter::SILENCE_DBFS;
pub use platform::PlatformAudioMode;
use publisher::{MicrophoneTrack, PublishCommand, Publisher, SharedTrack, lock_track};
use share::Share;
pub use share::{ShareSettings, encoding as share_encoding, failure_code as share_failure_code};
pub use watch::{VideoSink, ViewerFactory, WatchRequest};

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
    #[error(transparent)]
    Capture(#[from] parley_capture::CaptureError),
    #[error("this front end cannot show screen shares")]
    NoViewer,
    #[error("a screen share is already running; stop it first")]
    AlreadySharing,
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

/// Reports the room's [`SessionEvent::Traffic`] every `every` until the room is gone.
async fn report_traffic(traffic: ffi::RoomTraffic, every: Duration, events: mpsc::UnboundedSender<StampedEvent>) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match traffic.read().await {
            Ok(ffi::Traffic { received_bytes, sent_bytes }) => {
                emit(&events, SessionEvent::Traffic { received_bytes, sent_bytes });
            }
            Err(error) => {
                tracing::debug!(%error, "the room's traffic is no longer readable");
                break;
            }
        }
    }
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
    /// Report [`SessionEvent::Traffic`] this often.
    pub report_traffic: Option<Duration>,
    /// What the sound devices granted (`"input"`/`"output"`), reported as `DeviceOpened`.
    pub device_info: Vec<(&'static str, parley_audio::device::StreamInfo)>,
    /// Watch this participant's screen share (when they share), handing pictures to a sink.
    pub watch: Option<WatchRequest>,
    /// Where the pictures of a share watched later ([`Control::Watch`]) go; `None` refuses
    /// such watching.
    pub viewer: Option<ViewerFactory>,
    /// Let the engine's own device module play (and record) instead of `input` and `output`
    /// (`bench audio`'s comparison; see `session/platform.rs`).
    pub platform_audio: Option<PlatformAudioMode>,
}

/// How long a remote track's audio may wait in the mixer before the oldest is dropped.
const MAX_PLAYOUT_QUEUE_MS: u32 = 40;

/// Opus DTX on the microphone (on: during silence, and while push-to-talk is released, the
/// encoder sends a packet every 400 ms instead of 50 a second). `PARLEY_MIC_DTX=off` turns it
/// off, for `cargo xtask bench audio`'s comparison of speech onsets with and without it.
fn microphone_dtx() -> bool {
    !matches!(std::env::var("PARLEY_MIC_DTX").as_deref(), Ok("off" | "0" | "false"))
}

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
    /// What [`Session::reconnect`] joins a room again with.
    engine: &'static ffi::Engine,
    options: ffi::RoomOptions,
    report_stats: Option<Duration>,
    report_traffic: Option<Duration>,
    /// Remote audio is played (there is an output).
    playing: bool,
    /// Our screen share, while there is one.
    share: Option<Share>,
    /// Whose screen shares we watch (handed to each follower, also after a reconnect).
    watchers: HashMap<String, watch::Watcher>,
    /// Tells the current follower what to watch.
    view_commands: mpsc::UnboundedSender<watch::ViewCommand>,
    /// Makes the sink of a share watched by [`Control::Watch`].
    viewer: Option<ViewerFactory>,
    /// The engine's device module and its microphone, in the platform-audio mode.
    _platform: Option<platform::PlatformCall>,
}

struct Microphone {
    track: SharedTrack,
    thread: std::thread::JoinHandle<()>,
    gate: std::sync::mpsc::SyncSender<GateCommand>,
    /// Publishes and withdraws the track as the server's permission changes.
    publisher: JoinHandle<()>,
    /// Tells the capture thread whether frames go out (the track is published).
    publishing: Arc<AtomicBool>,
    source: Arc<ffi::AudioSource>,
    options: ffi::PublishOptions,
}

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
        let platform = request.platform_audio.map(|mode| platform::prepare(engine, mode)).transpose()?;
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
                encryption: CallEncryption::with_key(request.options.e2ee_shared_key.as_deref()),
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
                    .spawn(move || playout::run(sink, &mixer, apm.as_ref(), &events, &stop))
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
        let mut session = Session {
            room,
            events: events.clone(),
            mixer,
            microphone: None,
            playout,
            stop_audio: StopOnDrop(stop_audio),
            follower: tokio::spawn(async {}),
            muted: Arc::new(AtomicBool::new(false)),
            deafened: AtomicBool::new(false),
            cues: request.cues.clone(),
            input_level: Arc::new(AtomicU32::new(SILENCE_DBFS.to_bits())),
            meter: None,
            may_publish,
            engine,
            options: request.options.clone(),
            report_stats: request.report_stats,
            report_traffic: request.report_traffic,
            playing,
            share: None,
            watchers: HashMap::new(),
            view_commands: mpsc::unbounded_channel().0,
            viewer: request.viewer,
            _platform: None,
        };
        if let Some(watch) = request.watch {
            let watcher = session.start_watcher(watch)?;
            session.watchers.insert(watcher.identity.clone(), watcher);
        }
        session.follower = session.follow(room_events, publishers, publish_commands);
        if request.report_levels {
            let meter = meter::run(Arc::clone(&session.mixer), Arc::clone(&session.input_level), events.clone());
            session.meter = Some(tokio::spawn(meter));
        }
        // The SFU reads inside RED packets, which it cannot do when they are encrypted; LiveKit's
        // own clients turn RED off with E2EE for the same reason.
        let publish = ffi::PublishOptions {
            red: request.options.e2ee_shared_key.is_none(),
            dtx: microphone_dtx(),
            ..Default::default()
        };
        if let Some(mut call) = platform {
            call.publish(engine, &session.room, &publish, can_publish, &events).await?;
            session._platform = Some(call);
        }
        if let (Some(input), Some(publish_receiver)) = (request.input, publish_receiver) {
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
        let publisher_flag = Arc::clone(&setup.publishing);
        let publisher = Publisher {
            participant: self.room.local_participant().clone(),
            source: Arc::clone(&source),
            options: publish.clone(),
            track: Arc::clone(&shared),
            publishing: Arc::clone(&setup.publishing),
            muted: Arc::clone(&self.muted),
            events: self.events.clone(),
        };
        let sid = lock_track(&shared).publication.as_ref().map(|publication| publication.sid.clone());
        let (gate, gate_commands) = std::sync::mpsc::sync_channel(64);
        let outlet = EngineOutlet { source: Arc::clone(&source), runtime: tokio::runtime::Handle::current() };
        let (events, stop) = (self.events.clone(), Arc::clone(&self.stop_audio.0));
        let thread = std::thread::Builder::new()
            .name("parley-capture".to_string())
            .spawn(move || capture::run(setup, &gate_commands, outlet, &events, sid, &stop))
            .map_err(|error| SessionError::Audio(format!("cannot start the capture thread: {error}")))?;
        let publisher = tokio::spawn(publisher.run(commands));
        let publishing = Arc::clone(&publisher_flag);
        self.microphone =
            Some(Microphone { track: shared, thread, gate, publisher, publishing, source, options: publish });
        Ok(())
    }

    /// Starts the room follower on `room_events` (see [`follow`]); `publisher` is the publisher
    /// task's channel when there is a microphone.
    fn follow(
        &mut self,
        room_events: mpsc::UnboundedReceiver<ffi::RoomEvent>,
        publishers: HashMap<String, bool>,
        publisher: Option<mpsc::UnboundedSender<PublishCommand>>,
    ) -> JoinHandle<()> {
        let local = LocalPublishing {
            identity: self.room.local_participant().identity().to_string(),
            may_publish: Arc::clone(&self.may_publish),
            publisher,
        };
        let playback = follow::Playback {
            mixer: self.playing.then(|| Arc::clone(&self.mixer)),
            cues: self.cues.clone(),
            report_stats: self.report_stats,
            encrypted: self.options.e2ee_shared_key.is_some(),
            watchers: self.watchers.clone(),
            subscriptions: self.room.subscriptions(),
        };
        let (view_commands, view_receiver) = mpsc::unbounded_channel();
        self.view_commands = view_commands;
        if let Some(every) = self.report_traffic {
            // It ends with the room it reads (a reconnection's new room gets its own).
            tokio::spawn(report_traffic(self.room.traffic(), every, self.events.clone()));
        }
        tokio::spawn(follow::run(room_events, view_receiver, self.events.clone(), playback, local, publishers))
    }

    fn start_watcher(&self, request: WatchRequest) -> Result<watch::Watcher, SessionError> {
        watch::Watcher::start(request, self.events.clone())
            .map_err(|error| SessionError::Audio(format!("cannot start the watch thread: {error}")))
    }

    /// Watches `request.identity`'s screen share, now or when they share, in place of any
    /// earlier watch of theirs: their video is subscribed (at its full-size layer until
    /// [`Session::fit_watch`]) and each picture goes to the sink. Several shares can be
    /// watched at once. Reports `TrackSubscribed` (video), then `WatchStarted` and `WatchStats`.
    ///
    /// Errors: the sink's thread could not start.
    pub fn watch(&mut self, request: WatchRequest) -> Result<(), SessionError> {
        let watcher = self.start_watcher(request)?;
        self.watchers.insert(watcher.identity.clone(), watcher.clone());
        self.tell_follower(watch::ViewCommand::Watch(watcher));
        Ok(())
    }

    /// Stops watching `identity`'s screen share: the video is unsubscribed (the server stops
    /// sending it) and the sink is dropped. Reports `WatchEnded` when pictures were arriving.
    pub fn unwatch(&mut self, identity: &str) {
        if self.watchers.remove(identity).is_some() {
            self.tell_follower(watch::ViewCommand::Unwatch(identity.to_string()));
        }
    }

    /// Whose screen shares are watched.
    pub fn watched(&self) -> impl Iterator<Item = &str> {
        self.watchers.keys().map(String::as_str)
    }

    /// The viewer of `identity`'s share is about `width`×`height` device pixels: receive the
    /// simulcast layer that fits it (a small tile costs less than a fullscreen view).
    pub fn fit_watch(&self, identity: &str, width: u32, height: u32) {
        if self.watchers.contains_key(identity) {
            let identity = identity.to_string();
            self.tell_follower(watch::ViewCommand::Fit { identity, width, height });
        }
    }

    fn tell_follower(&self, command: watch::ViewCommand) {
        if self.view_commands.send(command).is_err() {
            tracing::debug!("the room follower has ended (leaving)");
        }
    }

    /// Applies a front end's command. Any thread with the session.
    ///
    /// Errors: engine errors (muting the track).
    pub fn apply(&mut self, control: &Control) -> Result<(), SessionError> {
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
            Control::AllowUnencrypted { identity } => self.allow_unencrypted(identity),
            Control::Watch { identity } => {
                let viewer = self.viewer.as_ref().ok_or(SessionError::NoViewer)?;
                let sink = viewer(identity);
                self.watch(WatchRequest { identity: identity.clone(), sink, every: 1 })?;
            }
            Control::Unwatch { identity } => self.unwatch(identity),
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

    /// Plays `identity`'s audio although it arrives unencrypted in an encrypted call.
    pub fn allow_unencrypted(&self, identity: &str) {
        self.lock_mixer().allow_unencrypted(identity);
        emit(&self.events, SessionEvent::UnencryptedAllowed { identity: identity.to_string() });
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
        self.stop_share().await;
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
