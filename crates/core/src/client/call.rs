//! The task that owns a joined call: the [`Session`], its [`Membership`], and the fold of their
//! events into the shared [`ClientState`]. Commands reach it through a bounded channel and are
//! answered through oneshots; backend requests (moderation, hands) run in their own tasks so
//! that events keep flowing while a server thinks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_control_plane::adapter::livekit::RoomAdmin;
use parley_control_plane::{ControlPlane, JoinGrant, PlaneEvent};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::error::{ClientError, ErrorCode};
use super::frames::FrameShelf;
use super::settings::{AppSettings, SettingsFile};
use super::state::{self, CallPhase, ClientState, ModerationAction, ModerationOption};
use super::{Notice, OpenedAudio};
use crate::control::Control;
use crate::membership::{Membership, MembershipEvent, moderate};
use crate::{Engine, JoinRequest, RoomOptions, Session, SessionEvent, StampedEvent};

/// How long LiveKit may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Roles that may not moderate, whatever the adapter offers (its server would refuse).
const AUDIENCE_ROLES: [&str; 6] = ["listener", "audience", "member", "speaker", "participant", "guest"];

/// A command for the call task.
pub(crate) enum CallCommand {
    Control {
        control: Control,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Moderate {
        identity: String,
        action: parley_control_plane::ModerationAction,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Hand {
        raised: bool,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// Share a screen or window.
    Share {
        target: parley_capture::Target,
        quality: parley_capture::Quality,
        priority: parley_capture::Priority,
        /// The application whose sound goes with it (`#<stream>`).
        sound: Option<String>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    StopShare {
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// A share's viewer is this large (device pixels): receive the layer that fits.
    Fit {
        identity: String,
        width: u32,
        height: u32,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
}

/// The client's handle on the running call. Dropping it stops the task (and with the session,
/// the audio threads).
pub(crate) struct CallHandle {
    commands: mpsc::Sender<CallCommand>,
    task: JoinHandle<()>,
    pub profile: String,
}

impl CallHandle {
    pub fn sender(&self) -> mpsc::Sender<CallCommand> {
        self.commands.clone()
    }

    /// Leaves the room and waits for the task to end. A call that already ended (kicked, room
    /// closed) has nothing left to do.
    pub async fn leave(mut self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(CallCommand::Leave { reply }).await.is_ok() && done.await.is_err() {
            tracing::warn!("the call task ended while leaving");
        }
        if let Err(error) = (&mut self.task).await
            && !error.is_cancelled()
        {
            tracing::warn!(%error, "the call task ended badly");
        }
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a call is started with.
pub(crate) struct CallSetup {
    pub engine: &'static Engine,
    pub plane: Arc<dyn ControlPlane>,
    pub grant: JoinGrant,
    pub audio: OpenedAudio,
    pub settings: AppSettings,
    pub profile: String,
}

/// How often the call reports its bandwidth (`CallState::bandwidth`).
const TRAFFIC_EVERY: Duration = Duration::from_secs(2);

/// What the call task shares with the client.
pub(crate) struct Shared {
    pub state: Arc<watch::Sender<ClientState>>,
    pub notices: broadcast::Sender<Notice>,
    pub settings: Arc<Mutex<SettingsFile>>,
    /// Where watched shares' pictures go.
    pub frames: FrameShelf,
}

impl Shared {
    fn saved_volume(&self, profile: &str, identity: &str) -> u32 {
        self.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).volume(profile, identity)
    }

    fn notify(&self, notice: Notice) {
        // No receiver (no window yet) is fine: the state still carries what matters.
        if self.notices.send(notice).is_err() {
            tracing::debug!("a notice had no listener");
        }
    }
}

/// The moderation actions offered to us: the adapter's (and RoomService's with an admin token),
/// none when the backend names us audience and the token is not an admin's.
pub(crate) fn moderation_options(plane: &dyn ControlPlane, grant: &JoinGrant) -> Vec<ModerationOption> {
    let audience =
        grant.role.as_deref().is_some_and(|role| AUDIENCE_ROLES.contains(&role.to_ascii_lowercase().as_str()));
    if audience && !RoomAdmin::grant_is_admin(grant) {
        return Vec::new();
    }
    crate::membership::moderation_actions(plane, grant)
        .into_iter()
        .map(|action| ModerationOption {
            action: ModerationAction::from_plane(action),
            destructive: action.is_destructive(),
        })
        .collect()
}

/// Connects the session, starts the membership and the task.
///
/// Errors: the session's join errors (connect, engine, devices), or [`ErrorCode::Timeout`].
pub(crate) async fn start(setup: CallSetup, shared: Shared) -> Result<CallHandle, ClientError> {
    let CallSetup { engine, plane, grant, audio, settings, profile } = setup;
    let request = JoinRequest {
        url: grant.url.clone(),
        token: grant.token.clone(),
        options: RoomOptions {
            e2ee_shared_key: grant.e2ee_key.as_ref().map(|key| key.as_bytes().to_vec()),
            ..RoomOptions::default()
        },
        input: audio.input,
        output: audio.output,
        processing: audio.processing,
        transmit: settings.transmit_mode(),
        echo_delay_ms: 40,
        cues: audio.cues,
        report_levels: true,
        report_stats: None,
        report_traffic: Some(TRAFFIC_EVERY),
        device_info: audio.device_info,
        watch: None,
        viewer: Some(shared.frames.viewer()),
        platform_audio: None,
    };
    let joined = tokio::time::timeout(CONNECT_TIMEOUT, Session::join(engine, request)).await;
    let (session, events) = match joined {
        Ok(joined) => joined?,
        Err(_) => {
            return Err(ClientError::new(
                ErrorCode::Timeout,
                format!("the voice server at {} did not answer in {} s", grant.url, CONNECT_TIMEOUT.as_secs()),
            ));
        }
    };
    // Mute and deafen carry over from before the call (or from toggles during the join).
    let local = shared.state.borrow().local.clone();
    if local.muted {
        session.set_muted(true)?;
    }
    if local.deafened {
        session.set_deafened(true);
    }
    shared.state.send_modify(|state| state.local.transmit_mode = settings.transmit_mode);
    let (membership, membership_events) = Membership::start(plane, grant);
    let (commands, receiver) = mpsc::channel(64);
    let call = Call {
        session,
        events,
        membership,
        membership_events: Some(membership_events),
        profile: profile.clone(),
        shared,
    };
    let task = tokio::spawn(call.run(receiver));
    Ok(CallHandle { commands, task, profile })
}

struct Call {
    session: Session,
    events: mpsc::UnboundedReceiver<StampedEvent>,
    membership: Membership,
    membership_events: Option<mpsc::UnboundedReceiver<MembershipEvent>>,
    profile: String,
    shared: Shared,
}

/// What a session event means for the call.
enum Next {
    Go,
    End,
    /// The connection was lost for good: join again through the backend.
    Rejoin,
}

/// Why the loop ended.
enum End {
    /// We left (or the client went away); `reply` hears when leaving is done.
    Left(Option<oneshot::Sender<()>>),
    /// The room or the backend ended the call; the state already says why.
    Ended,
}

impl Call {
    async fn run(mut self, mut commands: mpsc::Receiver<CallCommand>) {
        let end = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => break End::Left(None),
                    // Starting and stopping a share wait on the engine (publishing, the capture
                    // thread's end): events queue meanwhile, as during a join.
                    Some(CallCommand::Share { target, quality, priority, sound, reply }) => {
                        let settings = crate::ShareSettings { quality, priority, max_bitrate: None, audio: sound };
                        let result = self.session.start_share(&target, settings).await.map_err(ClientError::from);
                        answer(reply, result);
                    }
                    Some(CallCommand::StopShare { reply }) => {
                        self.session.stop_share().await;
                        answer(reply, Ok(()));
                    }
                    Some(command) => {
                        if let Some(reply) = self.handle(command) {
                            break End::Left(Some(reply));
                        }
                    }
                },
                event = self.events.recv() => match event {
                    Some(stamped) => match self.on_session_event(&stamped.event).await {
                        Next::Go => {}
                        Next::End => break End::Ended,
                        Next::Rejoin => {
                            if let Some(end) = self.rejoin(&mut commands).await {
                                break end;
                            }
                        }
                    },
                    None => break End::Ended,
                },
                Some(event) = crate::membership::next_event(&mut self.membership_events) => {
                    if self.on_membership_event(&event) {
                        break End::Ended;
                    }
                }
            }
        };
        self.finish(end).await;
    }

    /// Runs a command; returns the leave's reply when the command is to leave.
    fn handle(&mut self, command: CallCommand) -> Option<oneshot::Sender<()>> {
        match command {
            CallCommand::Leave { reply } => return Some(reply),
            CallCommand::Control { control, reply } => {
                let result = self.session.apply(&control).map_err(ClientError::from);
                if result.is_ok() {
                    self.note_watching(&control);
                }
                answer(reply, result);
            }
            CallCommand::Fit { identity, width, height } => self.session.fit_watch(&identity, width, height),
            // `run` awaits these itself.
            CallCommand::Share { reply, .. } | CallCommand::StopShare { reply } => {
                answer(reply, Err(ClientError::internal("a share command reached the wrong handler")));
            }
            CallCommand::Moderate { identity, action, reply } => {
                let (plane, grant) = (Arc::clone(self.membership.plane()), self.membership.grant());
                tokio::spawn(async move {
                    let result = moderate(plane.as_ref(), &grant, action, &identity).await.map_err(ClientError::from);
                    answer(reply, result);
                });
            }
            CallCommand::Hand { raised, reply } => {
                let (plane, grant, state) =
                    (Arc::clone(self.membership.plane()), self.membership.grant(), Arc::clone(&self.shared.state));
                tokio::spawn(async move {
                    let result = plane.set_hand(&grant, raised).await.map_err(ClientError::from);
                    if result.is_ok() {
                        state.send_modify(|state| {
                            if let Some(call) = state.call.as_mut() {
                                call.hand_raised = raised;
                            }
                        });
                    }
                    answer(reply, result);
                });
            }
        }
        None
    }

    /// Joins the room again after the connection was lost for good (see
    /// [`crate::membership::rejoin`]). A leave asked for meanwhile wins; other commands are
    /// refused until the call is back. Returns how the call ended, or `None` when it goes on.
    async fn rejoin(&mut self, commands: &mut mpsc::Receiver<CallCommand>) -> Option<End> {
        let outcome = {
            let rejoining = crate::membership::rejoin(&mut self.session, &self.membership);
            tokio::pin!(rejoining);
            loop {
                tokio::select! {
                    outcome = &mut rejoining => break outcome,
                    command = commands.recv() => match command {
                        None => return Some(End::Left(None)),
                        Some(CallCommand::Leave { reply }) => return Some(End::Left(Some(reply))),
                        Some(CallCommand::Control { reply, .. })
                        | Some(CallCommand::Moderate { reply, .. })
                        | Some(CallCommand::Hand { reply, .. })
                        | Some(CallCommand::Share { reply, .. })
                        | Some(CallCommand::StopShare { reply }) => {
                            answer(reply, Err(ClientError::new(ErrorCode::Unreachable, "the call is reconnecting")));
                        }
                        // The viewer says its size again when it changes.
                        Some(CallCommand::Fit { .. }) => {}
                    },
                }
            }
        };
        match outcome {
            Ok(()) => None,
            Err(last) => {
                let message = format!("the connection to the room was lost and joining again failed: {last}");
                self.shared.state.send_modify(|state| {
                    if let Some(call) = state.call.as_mut() {
                        call.phase = CallPhase::Failed { code: ErrorCode::Unreachable, message: message.clone() };
                    }
                });
                self.notify_failure();
                Some(End::Ended)
            }
        }
    }

    /// Keeps `CallState::watching` and the frame shelf in step with a watch command that
    /// succeeded.
    fn note_watching(&self, control: &Control) {
        match control {
            Control::Watch { identity } => self.shared.state.send_if_modified(|state| match state.call.as_mut() {
                Some(call) if !call.watching.contains(identity) => {
                    call.watching.push(identity.clone());
                    true
                }
                _ => false,
            }),
            Control::Unwatch { identity } => {
                self.shared.frames.remove(identity);
                self.shared
                    .state
                    .send_if_modified(|state| state.call.as_mut().is_some_and(|call| call.stop_watching(identity)))
            }
            _ => false,
        };
    }

    /// Folds a session event; says whether the call goes on, is over, or must join again.
    async fn on_session_event(&mut self, event: &SessionEvent) -> Next {
        self.session.on_share_muted(event).await;
        // A share that ends (or whose sharer leaves) closes its viewer.
        if let SessionEvent::ShareEnded { identity, .. } | SessionEvent::ParticipantLeft { identity, .. } = event
            && self.session.watched().any(|watched| watched == identity)
        {
            self.session.unwatch(identity);
            self.shared.frames.remove(identity);
        }
        // Saved volumes apply as people arrive.
        let arrivals: Vec<String> = match event {
            SessionEvent::Joined { participants, .. } => participants.iter().map(|p| p.identity.clone()).collect(),
            SessionEvent::ParticipantJoined { identity, .. } => vec![identity.clone()],
            _ => Vec::new(),
        };
        for identity in arrivals {
            let percent = self.shared.saved_volume(&self.profile, &identity);
            if percent != 100 {
                self.session.set_volume(&identity, percent);
            }
        }
        let volume = |identity: &str| self.shared.saved_volume(&self.profile, identity);
        self.shared.state.send_if_modified(|state| state::apply_session_event(state, event, &volume));
        if matches!(
            event,
            SessionEvent::Joined { .. } | SessionEvent::PublishPermission { .. } | SessionEvent::Reconnected
        ) {
            let can_share = self.session.can_share();
            self.shared.state.send_if_modified(|state| match state.call.as_mut() {
                Some(call) if call.can_share != can_share => {
                    call.can_share = can_share;
                    true
                }
                _ => false,
            });
        }
        match event {
            SessionEvent::DeviceChanged { message } => {
                self.shared.notify(Notice::DeviceChanged { message: message.clone() })
            }
            SessionEvent::Warning { message } => self.shared.notify(Notice::Warning { message: message.clone() }),
            SessionEvent::ShareSoundEnded { app } => self.shared.notify(Notice::Warning {
                message: format!("{app} stopped playing: your screen share goes on without its sound"),
            }),
            SessionEvent::ShareFailed { reason, .. } => {
                self.shared.notify(Notice::Warning { message: format!("Your screen share stopped: {reason}") })
            }
            SessionEvent::WatchStarted { identity, width, height, .. } => {
                tracing::info!(identity, width, height, "first picture of a watched screen share");
            }
            SessionEvent::WatchStats { identity, fps, width, height, dropped, .. } => {
                tracing::debug!(identity, fps, width, height, dropped, "watched screen share");
            }
            SessionEvent::Disconnected { connection_lost: true, .. } => return Next::Rejoin,
            SessionEvent::Disconnected { code, .. } if code != "client_initiated" => {
                self.notify_failure();
                return Next::End;
            }
            _ => {}
        }
        Next::Go
    }

    /// Folds a membership event; returns `true` when the call is over.
    fn on_membership_event(&self, event: &MembershipEvent) -> bool {
        let volume = |identity: &str| self.shared.saved_volume(&self.profile, identity);
        self.shared.state.send_if_modified(|state| state::apply_membership_event(state, event, &volume));
        match event {
            MembershipEvent::Removed { .. } => {
                self.notify_failure();
                return true;
            }
            MembershipEvent::Backend { backend: PlaneEvent::RoomLive { room_id, room_name } } => {
                self.shared.notify(Notice::RoomWentLive {
                    profile: self.profile.clone(),
                    room_id: room_id.clone(),
                    room_name: room_name.clone(),
                });
            }
            MembershipEvent::Backend { backend: PlaneEvent::Degraded { message } }
            | MembershipEvent::WatchFailed { message, .. }
            | MembershipEvent::Warning { message } => {
                self.shared.notify(Notice::Warning { message: message.clone() });
            }
            _ => {}
        }
        false
    }

    fn notify_failure(&self) {
        let failed = self.shared.state.borrow().call.as_ref().and_then(|call| match &call.phase {
            CallPhase::Failed { code, message } => Some((*code, message.clone())),
            _ => None,
        });
        if let Some((code, message)) = failed {
            self.shared.notify(Notice::CallEnded { code, message });
        }
    }

    async fn finish(self, end: End) {
        let Call { session, mut events, membership, shared, .. } = self;
        if let Err(error) = session.leave().await {
            tracing::warn!(%error, "leaving the room did not finish cleanly");
        }
        // Folds the last events (mute state, levels back to silence) before the call goes.
        while let Ok(stamped) = events.try_recv() {
            shared.state.send_if_modified(|state| state::apply_session_event(state, &stamped.event, &|_| 100));
        }
        if let Err(error) = membership.leave().await {
            tracing::debug!(%error, "telling the backend we left failed");
        }
        shared.state.send_modify(|state| {
            state.local.transmitting = false;
            state.local.input_level_dbfs = state::SILENCE_DBFS;
        });
        if let End::Left(Some(reply)) = end
            && reply.send(()).is_err()
        {
            tracing::debug!("nobody waited for the leave to finish");
        }
    }
}

fn answer(reply: oneshot::Sender<Result<(), ClientError>>, result: Result<(), ClientError>) {
    if reply.send(result).is_err() {
        tracing::debug!("the caller stopped waiting for the answer");
    }
}
