//! The app-facing API: one [`Client`] per running front end, owning the profile store, the
//! keyring, the app settings and at most one call. Every button, menu item, shortcut and
//! `parley ctl` line of the desktop app is a method here first (STYLE.md 2); the Tauri shell
//! only forwards to it.
//!
//! * [`Client`] — commands (join, leave, mute, deafen, push-to-talk, volumes, moderation,
//!   profiles, rooms, devices, settings), each returning `Result<_, ClientError>`;
//! * [`state`] — the [`ClientState`] snapshot published through a `tokio::sync::watch` on every
//!   change, and the pure functions folding session and membership events into it;
//! * [`error`] — [`ClientError`], `{code, message}` with a closed [`ErrorCode`] set;
//! * [`settings`] — [`AppSettings`] and the `settings.toml` beside `profiles.toml`;
//! * [`directory`] — profiles, backends, rooms and devices as the UI lists them;
//! * [`ipc`] — the command and event names and the TypeScript the UI imports;
//! * `call` — the task that owns a joined [`crate::Session`] and its
//!   [`crate::membership::Membership`].
//!
//! Threads: every method may be called from any tokio task; blocking work (keyring, files,
//! device enumeration, loading the engine) runs on `spawn_blocking`.

mod call;
pub mod directory;
pub mod error;
pub mod frames;
pub mod ipc;
pub mod settings;
pub mod sharing;
pub mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_audio::cue::{Cue, CuePlayer};
use parley_audio::device::{DeviceInput, DeviceOutput, StreamInfo};
use parley_audio::stream::{FrameSink, FrameSource};
use parley_control_plane::adapter::audioroom::user_api_key::{APP_REDIRECT, KeyRequest, new_client_id};
use parley_control_plane::profile::{ProfileStore, open_plane};
use parley_control_plane::secret_store::{KeyringStore, SecretStore};
use parley_control_plane::{ControlPlane, JoinGrant, PlaneError};
use parley_livekit_ffi::{ApmConfig, Engine, LibrarySearch};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use ts_rs::TS;

use crate::control::Control;
pub use directory::{AudioDevice, Backend, BackendFeatures, BackendForm, ProfileInput, ProfileSummary, RoomEntry};
pub use error::{ClientError, ErrorCode};
pub use settings::{AppSettings, Shortcuts, TransmitChoice};
pub use state::{
    Bandwidth, CallPhase, CallState, ClientState, ConnectionQuality, Encryption, Levels, LinkedRoom, LocalState,
    ModerationAction, ParticipantState,
};

use call::{CallCommand, CallHandle};
use frames::FrameShelf;
use settings::{MAX_VOLUME_PERCENT, SettingsFile, SettingsStore};
pub use sharing::{LocalShare, ShareRect, ShareSound, ShareTarget};

/// How long joining (backend + LiveKit) may take before it fails with [`ErrorCode::Timeout`].
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Something the UI should tell the user once (a dialog, a desktop notification), beside the
/// state it draws.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// We were removed from the call (kicked, banned, room closed).
    CallEnded { code: ErrorCode, message: String },
    /// A room the backend says we follow went live.
    RoomWentLive {
        profile: String,
        #[serde(rename = "roomId")]
        room_id: String,
        #[serde(rename = "roomName")]
        room_name: String,
    },
    /// A sound device vanished or changed and was replaced.
    DeviceChanged { message: String },
    /// Something degraded but the call goes on (backend events retrying, a dropped command).
    Warning { message: String },
}

/// The audio ends of a call, opened for the current settings.
pub struct OpenedAudio {
    pub input: Option<Box<dyn FrameSource>>,
    pub output: Option<Box<dyn FrameSink>>,
    pub cues: Option<CuePlayer>,
    pub processing: Option<ApmConfig>,
    pub device_info: Vec<(&'static str, StreamInfo)>,
}

/// Where a call's audio comes from and goes to: the sound devices in the app, tones and files in
/// tests. Called on a blocking thread.
pub trait AudioEnds: Send + Sync {
    /// Opens the ends for a call.
    ///
    /// Errors: [`ErrorCode::Device`] when a device cannot be opened.
    fn open(&self, settings: &AppSettings) -> Result<OpenedAudio, ClientError>;
}

/// The system's sound devices, chosen and processed as the settings say.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoundDevices;

impl AudioEnds for SoundDevices {
    fn open(&self, settings: &AppSettings) -> Result<OpenedAudio, ClientError> {
        let input = DeviceInput::open(settings.input_device.as_deref())?;
        let output = DeviceOutput::open(settings.output_device.as_deref())?;
        let device_info = vec![("input", input.info().clone()), ("output", output.info().clone())];
        let cues = if settings.cues {
            Some(CuePlayer::open(settings.output_device.as_deref(), Cue::ALL.into_iter().collect())?)
        } else {
            None
        };
        Ok(OpenedAudio {
            input: Some(Box::new(input)),
            output: Some(Box::new(output)),
            cues,
            processing: Some(ApmConfig {
                echo_cancellation: settings.echo_cancellation,
                noise_suppression: settings.noise_suppression,
                auto_gain_control: settings.auto_gain_control,
                high_pass_filter: true,
            }),
            device_info,
        })
    }
}

/// What a [`Client`] is built from.
pub struct ClientConfig {
    /// Holds `profiles.toml` and `settings.toml`.
    pub config_dir: PathBuf,
    pub secrets: Arc<dyn SecretStore>,
    pub audio: Arc<dyn AudioEnds>,
    /// Where to find the LiveKit FFI library.
    pub library: LibrarySearch,
}

impl ClientConfig {
    /// The user's config dir (`PARLEY_CONFIG_DIR` overrides it), the OS keyring and the sound
    /// devices.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] when the system has no config directory.
    pub fn system(library: LibrarySearch) -> Result<ClientConfig, ClientError> {
        let store = ProfileStore::open_default()?;
        let config_dir = store.path().parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        Ok(ClientConfig { config_dir, secrets: Arc::new(KeyringStore), audio: Arc::new(SoundDevices), library })
    }
}

/// The app's one handle on profiles, settings and the call. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    profiles: ProfileStore,
    secrets: Arc<dyn SecretStore>,
    audio: Arc<dyn AudioEnds>,
    library: LibrarySearch,
    settings_store: SettingsStore,
    settings: Arc<Mutex<SettingsFile>>,
    /// Why the settings file could not be loaded; saving is refused until it is fixed, so that
    /// the user's file is never overwritten with defaults.
    settings_broken: Option<ClientError>,
    state: Arc<watch::Sender<ClientState>>,
    notices: broadcast::Sender<Notice>,
    /// The call, held for a whole join or leave so that two never overlap.
    call: tokio::sync::Mutex<Option<CallHandle>>,
    /// Discourse user-API-key requests waiting for the forum's answer, by profile name: the
    /// private key that decrypts it never leaves memory.
    discourse_auth: Mutex<std::collections::HashMap<String, KeyRequest>>,
    /// The settings screen's microphone test, while it runs.
    mic_test: tokio::sync::Mutex<Option<MicTest>>,
    /// The latest pictures of the screen shares the window watches.
    frames: FrameShelf,
}

/// The microphone played straight back to the speaker, outside a call, with the input meter
/// running: a thread that ends when `stop` is raised.
struct MicTest {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// A started Discourse sign-in: the client id the key will be bound to (the profile's
/// `client_id`), and the forum page where the user approves Parley.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct DiscourseAuthStarted {
    pub client_id: String,
    pub authorize_url: String,
}

impl Client {
    /// A client over `config`. Reads the settings file; a broken one is logged and replaced by
    /// defaults in memory (see [`Client::update_settings`]). Call from a tokio runtime.
    pub fn new(config: ClientConfig) -> Client {
        let settings_store = SettingsStore::in_dir(&config.config_dir);
        let (file, settings_broken) = match settings_store.load() {
            Ok(file) => (file, None),
            Err(error) => {
                tracing::warn!(%error, "using default settings");
                (SettingsFile::default(), Some(error))
            }
        };
        let local = LocalState { transmit_mode: file.settings.transmit_mode, ..LocalState::default() };
        let (state, _) = watch::channel(ClientState { call: None, local, link: None });
        let (notices, _) = broadcast::channel(64);
        Client {
            inner: Arc::new(Inner {
                profiles: ProfileStore::in_dir(&config.config_dir),
                secrets: config.secrets,
                audio: config.audio,
                library: config.library,
                settings_store,
                settings: Arc::new(Mutex::new(file)),
                settings_broken,
                state: Arc::new(state),
                notices,
                call: tokio::sync::Mutex::new(None),
                discourse_auth: Mutex::new(std::collections::HashMap::new()),
                mic_test: tokio::sync::Mutex::new(None),
                frames: FrameShelf::default(),
            }),
        }
    }

    /// Follows the state: the receiver sees the newest snapshot after each change.
    pub fn subscribe(&self) -> watch::Receiver<ClientState> {
        self.inner.state.subscribe()
    }

    /// The current snapshot.
    pub fn state(&self) -> ClientState {
        self.inner.state.borrow().clone()
    }

    /// Follows one-off notices (removed, a room went live, device changes).
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    // ---- settings -------------------------------------------------------------------------

    pub fn settings(&self) -> AppSettings {
        self.lock_settings().settings.clone()
    }

    /// Validates and saves `settings`; audio settings apply from the next call.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] for values out of range; [`ErrorCode::Settings`] when
    /// the file cannot be written or could not be read at start (fix or remove it first).
    pub async fn update_settings(&self, settings: AppSettings) -> Result<AppSettings, ClientError> {
        settings.validate()?;
        if let Some(error) = &self.inner.settings_broken {
            return Err(error.clone());
        }
        let transmit_mode = settings.transmit_mode;
        let file = {
            let mut file = self.lock_settings();
            file.settings = settings.clone();
            file.clone()
        };
        self.save_settings(file).await?;
        self.inner.state.send_modify(|state| {
            if state.call.is_none() {
                state.local.transmit_mode = transmit_mode;
            }
        });
        Ok(settings)
    }

    async fn save_settings(&self, file: SettingsFile) -> Result<(), ClientError> {
        let store = self.inner.settings_store.clone();
        blocking(move || store.save(&file)).await
    }

    fn lock_settings(&self) -> std::sync::MutexGuard<'_, SettingsFile> {
        // Every update replaces whole values; a panic elsewhere cannot leave it half-written.
        self.inner.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ---- profiles, rooms, devices -----------------------------------------------------------

    /// The backends a profile can point at, with the form fields the UI needs.
    pub fn backend_forms(&self) -> Vec<BackendForm> {
        BackendForm::all()
    }

    /// Every saved profile, without secrets.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] when the profile file cannot be read.
    pub async fn list_profiles(&self) -> Result<Vec<ProfileSummary>, ClientError> {
        let store = self.inner.profiles.clone();
        blocking(move || Ok(store.list()?.iter().map(ProfileSummary::of).collect())).await
    }

    /// Saves a profile; its secrets go to the keyring only. The adapter is built first, so bad
    /// settings are refused before anything is stored.
    ///
    /// Errors: [`ErrorCode::InvalidInput`], [`ErrorCode::Keyring`].
    pub async fn add_profile(&self, input: ProfileInput) -> Result<ProfileSummary, ClientError> {
        let (replace, register) = (input.replace, input.register);
        let (profile, secrets) = input.into_parts()?;
        // A new account's display name is its user name; the server lets the user change it.
        let display_name = profile.settings.account_name().unwrap_or(&profile.name).to_string();
        let account = if register {
            parley_control_plane::profile::Account::Register { display_name: &display_name }
        } else {
            parley_control_plane::profile::Account::Existing
        };
        let check = parley_control_plane::profile::add_checked(
            &self.inner.profiles,
            &profile,
            &secrets,
            Arc::clone(&self.inner.secrets),
            replace,
            account,
        )
        .await?;
        if let parley_control_plane::profile::CredentialCheck::Unchecked { reason } = check {
            let message = format!("{} was saved, but its password could not be checked: {reason}", profile.name);
            if self.inner.notices.send(Notice::Warning { message }).is_err() {
                tracing::debug!("nobody follows notices");
            }
        }
        Ok(ProfileSummary::of(&profile))
    }

    /// Starts Discourse's user-API-key flow for the audioroom profile `profile` (saved or about
    /// to be) on the forum at `forum_url`: a fresh RSA key pair and nonce, bound to a new client
    /// id, with the forum told to send the browser back to `parley://auth_redirect`. The shell
    /// opens [`DiscourseAuthStarted::authorize_url`] in the browser; the answer comes back to
    /// [`Client::complete_discourse_auth`] (deep link or pasted). A new start replaces an older
    /// one for the same profile.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] for a bad profile name or a forum URL that is not
    /// http(s).
    pub async fn begin_discourse_auth(
        &self,
        profile: &str,
        forum_url: &str,
    ) -> Result<DiscourseAuthStarted, ClientError> {
        parley_control_plane::profile::check_name(profile)?;
        let client_id = new_client_id();
        let id = client_id.clone();
        // RSA key generation takes up to a second of CPU.
        let request = blocking(move || Ok(KeyRequest::new(&id, Some(APP_REDIRECT))?)).await?;
        let authorize_url = request.authorize_url(forum_url)?.to_string();
        self.lock_auth().insert(profile.to_string(), request);
        Ok(DiscourseAuthStarted { client_id, authorize_url })
    }

    /// Finishes the flow [`Client::begin_discourse_auth`] started for `profile`: decrypts the
    /// forum's payload (the bare text, or the whole `parley://auth_redirect?payload=…` link) and
    /// stores the key in the keyring as `<profile>/user-api-key`. A payload that does not decode
    /// keeps the request, so the user can paste again.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] when no sign-in was started for `profile`;
    /// [`ErrorCode::MalformedResponse`] for a payload that is not this request's; [`ErrorCode::Keyring`].
    pub async fn complete_discourse_auth(&self, profile: &str, payload: &str) -> Result<(), ClientError> {
        let key = {
            let pending = self.lock_auth();
            let request = pending.get(profile).ok_or_else(|| {
                ClientError::from(PlaneError::InvalidInput {
                    message: format!("no forum sign-in was started for {profile:?}; start it again"),
                })
            })?;
            request.decode_payload(payload)?
        };
        let (keyring, owned) = (Arc::clone(&self.inner.secrets), profile.to_string());
        blocking(move || Ok(keyring.set(&owned, "user-api-key", &key)?)).await?;
        self.lock_auth().remove(profile);
        Ok(())
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, KeyRequest>> {
        // Requests are whole values; a panic elsewhere cannot leave one half-made.
        self.inner.discourse_auth.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the microphone test: the input device (as the settings choose it) played back on
    /// the output device, and `local.inputLevelDbfs` updated ten times a second, until
    /// [`Client::stop_mic_test`] or a join. A running test is restarted (with new settings).
    ///
    /// Errors: [`ErrorCode::InvalidInput`] during a call (its meter already shows the level);
    /// [`ErrorCode::Device`] when a device cannot be opened.
    pub async fn start_mic_test(&self) -> Result<(), ClientError> {
        if self.inner.call.lock().await.is_some() {
            return Err(ClientError::new(
                ErrorCode::InvalidInput,
                "the microphone test is for outside a call; in a call the meter shows your level",
            ));
        }
        self.stop_mic_test().await;
        let (audio, settings) = (Arc::clone(&self.inner.audio), self.settings());
        let opened = blocking(move || audio.open(&settings)).await?;
        let (Some(input), Some(output)) = (opened.input, opened.output) else {
            return Err(ClientError::new(ErrorCode::Device, "there is no microphone or no speaker to test"));
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (state, stopped) = (Arc::clone(&self.inner.state), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("parley-mic-test".into())
            .spawn(move || {
                let report = |level: f32| {
                    state.send_modify(|state| state.local.input_level_dbfs = level.max(state::SILENCE_DBFS));
                };
                if let Err(message) = crate::mic_test::play_back(input, output, &stopped, report) {
                    tracing::warn!(%message, "the microphone test stopped");
                }
            })
            .map_err(|error| {
                ClientError::new(ErrorCode::Device, format!("cannot start the microphone test: {error}"))
            })?;
        *self.inner.mic_test.lock().await = Some(MicTest { stop, thread });
        Ok(())
    }

    /// Stops the microphone test, if one runs, and releases its devices.
    pub async fn stop_mic_test(&self) {
        let Some(test) = self.inner.mic_test.lock().await.take() else { return };
        test.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if tokio::task::spawn_blocking(move || test.thread.join()).await.is_err() {
            tracing::warn!("the microphone test ended abnormally");
        }
        self.inner.state.send_modify(|state| state.local.input_level_dbfs = state::SILENCE_DBFS);
    }

    /// Removes a profile, its secrets and its saved volumes.
    ///
    /// Errors: [`ErrorCode::NotFound`], [`ErrorCode::Keyring`], [`ErrorCode::Settings`].
    pub async fn remove_profile(&self, name: &str) -> Result<(), ClientError> {
        let (store, keyring, owned) = (self.inner.profiles.clone(), Arc::clone(&self.inner.secrets), name.to_string());
        blocking(move || Ok(store.remove(&owned, keyring.as_ref()).map(|_| ())?)).await?;
        let file = {
            let mut file = self.lock_settings();
            if file.volumes.remove(name).is_none() {
                return Ok(());
            }
            file.clone()
        };
        self.save_settings(file).await
    }

    /// The rooms on a profile's server.
    ///
    /// Errors: the backend's ([`ErrorCode::Unauthorized`], [`ErrorCode::Unreachable`],
    /// [`ErrorCode::Unsupported`] …).
    pub async fn list_rooms(&self, profile: &str) -> Result<Vec<RoomEntry>, ClientError> {
        let plane = self.open_plane(profile).await?;
        Ok(plane.list_rooms().await?.into_iter().map(RoomEntry::from).collect())
    }

    /// What a profile's backend offers (room lists, raised hands).
    ///
    /// Errors: as [`Client::list_rooms`] before any request.
    pub async fn backend_features(&self, profile: &str) -> Result<BackendFeatures, ClientError> {
        let plane = self.open_plane(profile).await?;
        Ok(BackendFeatures::of(&plane.capabilities()))
    }

    /// The sound devices.
    ///
    /// Errors: [`ErrorCode::Device`].
    pub async fn list_devices(&self) -> Result<Vec<AudioDevice>, ClientError> {
        blocking(AudioDevice::list).await
    }

    async fn open_plane(&self, name: &str) -> Result<Arc<dyn ControlPlane>, ClientError> {
        let (store, keyring, name) = (self.inner.profiles.clone(), Arc::clone(&self.inner.secrets), name.to_string());
        blocking(move || {
            let profile = store.get(&name)?;
            Ok(open_plane(&profile, keyring)?)
        })
        .await
    }

    // ---- the call ------------------------------------------------------------------------------

    /// A `parley://join/<profile>/<room>` link was opened: the state shows the room, and the
    /// window asks the user; only their click joins ([`Client::join_room`]). Any web page can
    /// open such a link, so it must never put an open microphone into a room by itself.
    pub fn open_link(&self, profile: &str, room: &str) {
        let link = LinkedRoom { profile: profile.to_string(), room: room.to_string() };
        self.inner.state.send_modify(|state| state.link = Some(link));
    }

    /// The user declined the room a link asked them to join.
    pub fn dismiss_link(&self) {
        self.inner.state.send_if_modified(|state| state.link.take().is_some());
    }

    /// Joins `room` through `profile`, leaving the current call first. With `switch_rooms`, a
    /// backend that says we are in another room is told to leave that one, and the join is tried
    /// once more. The state shows every phase; on failure the call stays in the state as
    /// [`CallPhase::Failed`] until the next join or leave.
    ///
    /// Errors: the backend's ([`ErrorCode::InAnotherRoom`], [`ErrorCode::Kicked`],
    /// [`ErrorCode::RoomFull`] …), [`ErrorCode::Device`], [`ErrorCode::Engine`],
    /// [`ErrorCode::Unauthorized`], [`ErrorCode::Unreachable`], [`ErrorCode::Timeout`].
    pub async fn join_room(&self, profile: &str, room: &str, switch_rooms: bool) -> Result<(), ClientError> {
        // The call needs the devices the test holds.
        self.stop_mic_test().await;
        let mut slot = self.inner.call.lock().await;
        if let Some(previous) = slot.take() {
            previous.leave().await;
        }
        self.inner.state.send_modify(|state| {
            state.call = Some(CallState::joining(profile, room));
            // The user acted: a link waiting for their click has had its answer.
            state.link = None;
        });
        let joined = tokio::time::timeout(JOIN_TIMEOUT, self.connect(profile, room, switch_rooms)).await;
        let joined = joined.unwrap_or_else(|_| {
            Err(ClientError::new(
                ErrorCode::Timeout,
                format!("joining {room} took more than {} s", JOIN_TIMEOUT.as_secs()),
            ))
        });
        match joined {
            Ok(handle) => {
                *slot = Some(handle);
                Ok(())
            }
            Err(error) => {
                self.inner.state.send_modify(|state| {
                    if let Some(call) = state.call.as_mut() {
                        call.phase = CallPhase::Failed { code: error.code, message: error.message.clone() };
                    }
                });
                Err(error)
            }
        }
    }

    async fn connect(&self, profile: &str, room: &str, switch_rooms: bool) -> Result<CallHandle, ClientError> {
        let plane = self.open_plane(profile).await?;
        let grant = match plane.join(room).await {
            Err(PlaneError::InAnotherRoom { room_id, .. }) if switch_rooms => {
                plane.leave_room(&room_id).await?;
                plane.join(room).await?
            }
            other => other?,
        };
        let settings = self.settings();
        let audio = Arc::clone(&self.inner.audio);
        let opened = blocking(move || audio.open(&settings)).await?;
        let library = self.inner.library.clone();
        let engine = blocking(move || Ok(Engine::start(&library)?)).await?;
        self.announce_grant(plane.as_ref(), &grant);
        let settings = self.settings();
        call::start(
            call::CallSetup { engine, plane, grant, audio: opened, settings, profile: profile.to_string() },
            call::Shared {
                state: Arc::clone(&self.inner.state),
                notices: self.inner.notices.clone(),
                settings: Arc::clone(&self.inner.settings),
                frames: self.inner.frames.clone(),
            },
        )
        .await
    }

    /// Fills what the grant tells about the room before the LiveKit connection exists.
    fn announce_grant(&self, plane: &dyn ControlPlane, grant: &JoinGrant) {
        let moderation = call::moderation_options(plane, grant);
        let can_raise_hand = plane.capabilities().supports(parley_control_plane::Capability::RaiseHand);
        self.inner.state.send_modify(|state| {
            if let Some(call) = state.call.as_mut() {
                call.room_id = grant.room_id.clone();
                call.room_name = grant.room_name.clone();
                call.role = grant.role.clone();
                call.moderation = moderation;
                call.can_raise_hand = can_raise_hand;
                call.phase = CallPhase::Connecting;
            }
        });
    }

    /// Leaves the call (or clears a failed one from the state). Leaving when there is no call
    /// succeeds.
    pub async fn leave_room(&self) -> Result<(), ClientError> {
        let handle = self.inner.call.lock().await.take();
        if let Some(handle) = handle {
            handle.leave().await;
        }
        self.inner.state.send_modify(|state| {
            state.call = None;
            state.local.transmitting = false;
            state.local.ptt_held = false;
            state.local.input_level_dbfs = state::SILENCE_DBFS;
        });
        Ok(())
    }

    /// Mutes or unmutes our microphone. Outside a call it is remembered for the next one.
    ///
    /// Errors: [`ErrorCode::Engine`] when the track cannot be muted.
    pub async fn set_muted(&self, muted: bool) -> Result<(), ClientError> {
        self.local_control(if muted { Control::Mute } else { Control::Unmute }, |local| local.muted = muted).await
    }

    pub async fn toggle_mute(&self) -> Result<(), ClientError> {
        let muted = self.inner.state.borrow().local.muted;
        self.set_muted(!muted).await
    }

    /// Deafens (plays nothing) or undeafens. Outside a call it is remembered for the next one.
    pub async fn set_deafened(&self, deafened: bool) -> Result<(), ClientError> {
        self.local_control(if deafened { Control::Deafen } else { Control::Undeafen }, |local| {
            local.deafened = deafened
        })
        .await
    }

    pub async fn toggle_deafen(&self) -> Result<(), ClientError> {
        let deafened = self.inner.state.borrow().local.deafened;
        self.set_deafened(!deafened).await
    }

    /// Push-to-talk key down (`true`) or up. Outside a call it only shows in the state.
    pub async fn push_to_talk(&self, pressed: bool) -> Result<(), ClientError> {
        self.inner.state.send_modify(|state| state.local.ptt_held = pressed);
        let control = if pressed { Control::PttStart } else { Control::PttStop };
        match self.send_control(control).await {
            Err(error) if error.code == ErrorCode::NotInCall => Ok(()),
            other => other,
        }
    }

    async fn local_control(&self, control: Control, offline: impl FnOnce(&mut LocalState)) -> Result<(), ClientError> {
        match self.send_control(control).await {
            Err(error) if error.code == ErrorCode::NotInCall => {
                self.inner.state.send_modify(|state| offline(&mut state.local));
                Ok(())
            }
            other => other,
        }
    }

    /// Our playback volume for `identity`, 0–200 %, saved for this profile.
    ///
    /// Errors: [`ErrorCode::InvalidInput`] above 200; [`ErrorCode::NotInCall`];
    /// [`ErrorCode::Settings`] when it cannot be saved (it still applies to the call).
    pub async fn set_volume(&self, identity: &str, percent: u32) -> Result<(), ClientError> {
        if percent > MAX_VOLUME_PERCENT {
            return Err(directory::invalid(format!("a volume is 0–{MAX_VOLUME_PERCENT} %, not {percent} %")));
        }
        let profile = self.call_profile().await?;
        self.send_control(Control::Volume { identity: identity.to_string(), percent }).await?;
        let file = {
            let mut file = self.lock_settings();
            file.set_volume(&profile, identity, percent);
            file.clone()
        };
        self.save_settings(file).await
    }

    /// Silences (or restores) `identity` for us only.
    ///
    /// Errors: [`ErrorCode::NotInCall`].
    pub async fn set_local_mute(&self, identity: &str, muted: bool) -> Result<(), ClientError> {
        let identity = identity.to_string();
        self.send_control(if muted { Control::LocalMute { identity } } else { Control::LocalUnmute { identity } }).await
    }

    /// Applies a moderation action to `identity`, when the state offers it.
    ///
    /// Errors: [`ErrorCode::Unsupported`] when it is not offered; [`ErrorCode::NotInCall`]; the
    /// backend's errors ([`ErrorCode::Forbidden`] …).
    pub async fn moderate(&self, identity: &str, action: ModerationAction) -> Result<(), ClientError> {
        let offered = self
            .inner
            .state
            .borrow()
            .call
            .as_ref()
            .is_some_and(|call| call.moderation.iter().any(|option| option.action == action));
        if !offered {
            return Err(ClientError::new(ErrorCode::Unsupported, "this room does not let you do that"));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(CallCommand::Moderate { identity: identity.to_string(), action: action.to_plane(), reply }).await?;
        answer.await.unwrap_or_else(|_| Err(ClientError::not_in_call()))
    }

    /// Raises or lowers our hand (stage rooms).
    ///
    /// Errors: [`ErrorCode::Unsupported`], [`ErrorCode::NotInCall`], the backend's.
    pub async fn set_hand_raised(&self, raised: bool) -> Result<(), ClientError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(CallCommand::Hand { raised, reply }).await?;
        answer.await.unwrap_or_else(|_| Err(ClientError::not_in_call()))
    }

    /// Applies a control line (`parley ctl …`, shortcuts, tray) to the app.
    ///
    /// Errors: as the matching method.
    pub async fn apply_control(&self, control: &Control) -> Result<(), ClientError> {
        match control {
            Control::PttStart => self.push_to_talk(true).await,
            Control::PttStop => self.push_to_talk(false).await,
            Control::Mute => self.set_muted(true).await,
            Control::Unmute => self.set_muted(false).await,
            Control::ToggleMute => self.toggle_mute().await,
            Control::Deafen => self.set_deafened(true).await,
            Control::Undeafen => self.set_deafened(false).await,
            Control::ToggleDeafen => self.toggle_deafen().await,
            Control::Volume { identity, percent } => self.set_volume(identity, *percent).await,
            Control::LocalMute { identity } => self.set_local_mute(identity, true).await,
            Control::LocalUnmute { identity } => self.set_local_mute(identity, false).await,
            Control::OutputVolume { .. }
            | Control::AllowUnencrypted { .. }
            | Control::Watch { .. }
            | Control::Unwatch { .. } => self.send_control(control.clone()).await,
        }
    }

    /// Plays a participant whose audio arrives unencrypted in an encrypted call.
    ///
    /// Errors: [`ErrorCode::NotInCall`].
    pub async fn allow_unencrypted(&self, identity: &str) -> Result<(), ClientError> {
        self.send_control(Control::AllowUnencrypted { identity: identity.to_string() }).await
    }

    /// Leaves any call; call before the process exits so the backend hears we left.
    pub async fn shutdown(&self) {
        if let Err(error) = self.leave_room().await {
            tracing::warn!(%error, "leaving the call at shutdown failed");
        }
    }

    async fn call_profile(&self) -> Result<String, ClientError> {
        let slot = self.inner.call.lock().await;
        slot.as_ref().map(|handle| handle.profile.clone()).ok_or_else(ClientError::not_in_call)
    }

    async fn send_control(&self, control: Control) -> Result<(), ClientError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(CallCommand::Control { control, reply }).await?;
        answer.await.unwrap_or_else(|_| Err(ClientError::not_in_call()))
    }

    async fn send(&self, command: CallCommand) -> Result<(), ClientError> {
        // Cloned out so that a long join holding the slot does not block commands for longer
        // than it takes to see there is no call yet.
        let sender = match self.inner.call.try_lock() {
            Ok(slot) => slot.as_ref().map(CallHandle::sender),
            Err(_) => None,
        };
        let sender = sender.ok_or_else(ClientError::not_in_call)?;
        sender.send(command).await.map_err(|_| ClientError::not_in_call())
    }
}

/// Runs blocking work (keyring, files, devices) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(ClientError::internal(format!("a background task failed: {error}"))))
}

#[cfg(test)]
mod tests;
