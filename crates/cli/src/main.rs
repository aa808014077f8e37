//! `parley`, the headless Parley client: the same core session as the desktop app, for tests,
//! bots and scripting.
//!
//! Commands: `devserver` (a LiveKit server on loopback), `token` (mint a join token), `join`
//! (join a room, publish a file or tone, record what others say). Errors print on one line;
//! exit codes are listed in [`ExitKind`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use parley_audio::cue::{Cue, CuePlayer};
use parley_audio::device::{DeviceInput, DeviceOutput, Direction, list_devices};
use parley_audio::gate::TransmitMode;
use parley_audio::signal::Tone;
use parley_audio::stream::{Clip, FrameSink, FrameSource};
use parley_core::control_socket;
use parley_core::token::{self, TokenRequest};
use parley_core::{Engine, JoinRequest, LibrarySearch, RoomOptions, Session, SessionEvent, StampedEvent};
use parley_livekit_ffi::{ApmConfig, ConnectFailure};

mod control;
mod moderation;
mod profile;

#[derive(Parser)]
#[command(name = "parley", version, about = "Parley voice client (headless)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pinned LiveKit server on 127.0.0.1 with fresh keys until Ctrl-C.
    Devserver(DevserverArgs),
    /// Print a LiveKit join token signed with an API key and secret.
    Token(TokenArgs),
    /// Join a room: publish a file, tone or microphone, record or play what the others say.
    Join(Box<JoinArgs>),
    /// Send a command to a running `parley join`: ptt-start, ptt-stop, mute, unmute,
    /// toggle-mute, deafen, undeafen, toggle-deafen, volume <identity> <0-200>,
    /// local-mute <identity>, local-unmute <identity>.
    Ctl {
        /// The control socket (default: the one `parley join` opens).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Load generator: N participants in one process, each saying its own tone (what LiveKit's
    /// `lk load-test` would do; that tool cannot be installed here).
    Crowd(CrowdArgs),
    /// Saved server profiles (secrets in the OS keyring): add, list, show, remove.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// List the rooms on a profile's server.
    Rooms(profile::RoomsArgs),
    /// Moderate someone in a room through a profile: mute, unmute, hard-mute, restore, kick,
    /// unkick, ban, unban, invite-to-speak, move-to-audience, make-moderator.
    Mod(moderation::ModArgs),
    /// List the sound devices (inputs and outputs, defaults marked).
    Devices {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Hear yourself: the microphone played straight back on the speaker, through the same
    /// device path a call uses; prints the input's peak once a second.
    MicTest {
        /// Input device: id, short id, or name (see `parley devices`); default: the system's.
        #[arg(long, default_value = "default")]
        input_device: String,
        /// Output device: id, short id, or name; default: the system's.
        #[arg(long, default_value = "default")]
        output_device: String,
        /// Stop after this many seconds (default: until interrupted).
        #[arg(long)]
        seconds: Option<f64>,
    },
}

#[derive(Args)]
struct DevserverArgs {
    /// Print the connection details as one JSON object.
    #[arg(long)]
    json: bool,
    /// Signalling port (default: a free one).
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Args, Clone)]
struct Credentials {
    /// LiveKit API key.
    #[arg(long, env = "LIVEKIT_API_KEY")]
    api_key: Option<String>,
    /// LiveKit API secret (prefer the environment variable: arguments are visible to other users).
    #[arg(long, env = "LIVEKIT_API_SECRET", hide_env_values = true)]
    api_secret: Option<String>,
}

#[derive(Args)]
struct TokenArgs {
    #[command(flatten)]
    credentials: Credentials,
    #[arg(long)]
    room: String,
    #[arg(long)]
    identity: String,
    /// Display name (default: the identity).
    #[arg(long)]
    name: Option<String>,
    /// Grant room administration (RoomService moderation) for this room.
    #[arg(long)]
    admin: bool,
    /// Validity in seconds.
    #[arg(long, default_value_t = 6 * 3600)]
    ttl: u64,
}

#[derive(Args)]
struct JoinArgs {
    /// LiveKit server URL (ws:// or wss://).
    #[arg(long, env = "LIVEKIT_URL", required_unless_present = "profile")]
    url: Option<String>,
    /// Join through a saved profile (`parley profile add`): its server hands out the token;
    /// needs --room or --invite. Heartbeats, token refresh and moderation events run beside the
    /// call.
    #[arg(long)]
    profile: Option<String>,
    /// With --profile: join the room an invite link (URL or token) invites to.
    #[arg(long, requires = "profile", conflicts_with = "room")]
    invite: Option<String>,
    /// With --profile: when the backend says you are in another room already (one room at a
    /// time), leave that room and join this one.
    #[arg(long, requires = "profile")]
    switch: bool,
    /// Join token (or mint one with --api-key/--api-secret).
    #[arg(long, env = "LIVEKIT_TOKEN", hide_env_values = true, conflicts_with_all = ["api_key", "api_secret"])]
    token: Option<String>,
    #[command(flatten)]
    credentials: Credentials,
    /// Room to join; with --token, checked against the token's room.
    #[arg(long)]
    room: Option<String>,
    /// Identity to join as (needed when minting).
    #[arg(long)]
    identity: Option<String>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Publish this WAV file (any PCM rate/channels; converted to 48 kHz mono), in real time.
    #[arg(long, conflicts_with_all = ["tone", "input_device"])]
    play: Option<PathBuf>,
    /// Publish this capture device (id or name from `parley devices`, or `default`).
    #[arg(long, conflicts_with = "tone")]
    input_device: Option<String>,
    /// Play the others on this output device (id or name, or `default`).
    #[arg(long, conflicts_with = "record")]
    output_device: Option<String>,
    /// Publish a sine tone at this frequency in Hz.
    #[arg(long)]
    tone: Option<f64>,
    /// Peak level of --tone in dBFS.
    #[arg(long, default_value_t = -12.0, allow_hyphen_values = true)]
    tone_level: f64,
    /// Record the mix of all remote audio to this 48 kHz mono WAV file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Leave after this many seconds (default: run until Ctrl-C or the room ends).
    #[arg(long)]
    duration: Option<f64>,
    /// Print one JSON object per event line on stdout.
    #[arg(long)]
    json: bool,
    /// End-to-end encryption with this shared passphrase (every participant needs the same).
    #[arg(long, env = "PARLEY_E2EE_KEY", hide_env_values = true)]
    e2ee_key: Option<String>,
    /// The LiveKit FFI library file (default: LIVEKIT_LIB_PATH, beside the executable, then setup's).
    #[arg(long)]
    ffi_lib: Option<PathBuf>,
    /// When to transmit: always, on voice activity, or while push-to-talk is held.
    #[arg(long, value_enum, default_value_t = ModeArg::Open)]
    mode: ModeArg,
    /// Voice-activity threshold in dBFS.
    #[arg(long, default_value_t = -40.0, allow_hyphen_values = true)]
    vad_threshold: f32,
    /// Keep transmitting this long after push-to-talk is released (0–2000 ms).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=2000))]
    ptt_release_ms: u32,
    /// Two quick push-to-talk presses keep it open until the next press.
    #[arg(long)]
    double_tap_lock: bool,
    /// Audio processing (echo cancellation, noise suppression, gain, high-pass): on by default
    /// for --input-device, off for files and tones. `--processing on|off` forces it.
    #[arg(long, value_enum)]
    processing: Option<Switch>,
    #[arg(long)]
    no_aec: bool,
    #[arg(long)]
    no_ns: bool,
    #[arg(long)]
    no_agc: bool,
    #[arg(long)]
    no_hpf: bool,
    /// Speaker-to-microphone delay hint for the echo canceller, in ms.
    #[arg(long, default_value_t = 40)]
    echo_delay_ms: i32,
    /// Confirmation sounds on the output device: `all`, `none`, or a comma list (joined, left,
    /// participant-joined, participant-left, muted, unmuted, deafened, undeafened, ptt-on,
    /// ptt-off, you-are-muted). Default: all with --output-device, none otherwise.
    #[arg(long)]
    cues: Option<String>,
    /// Print audio levels (microphone, each participant) every 100 ms (with --json).
    #[arg(long)]
    levels: bool,
    /// Print each remote track's receive statistics (jitter buffer delay and target,
    /// concealment, loss, our mixer queue) every this many seconds.
    #[arg(long, value_name = "SECONDS")]
    stats: Option<f64>,
    /// Listen for control commands on this socket (default: see `parley ctl --help`); `none` to disable.
    #[arg(long)]
    control_socket: Option<String>,
}

#[derive(Args)]
struct CrowdArgs {
    #[arg(long, env = "LIVEKIT_URL")]
    url: String,
    #[command(flatten)]
    credentials: Credentials,
    #[arg(long)]
    room: String,
    /// How many speakers.
    #[arg(long)]
    count: usize,
    /// Identity prefix; speakers are `<prefix>-0`, `<prefix>-1`, …
    #[arg(long, default_value = "speaker")]
    prefix: String,
    /// Leave after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long)]
    ffi_lib: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Open,
    Vad,
    Ptt,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

/// Exit codes, so scripts can tell failures apart.
#[derive(Debug, Clone, Copy)]
enum ExitKind {
    /// Anything not listed below.
    Failure = 1,
    /// The LiveKit FFI library could not be loaded.
    Engine = 3,
    /// The server refused the token (bad, expired, wrong key, wrong room).
    Unauthorized = 4,
    /// The server could not be reached, or the URL is not usable.
    Unreachable = 5,
    /// The room ended for us: removed, room deleted, server gone.
    Disconnected = 6,
    /// An input or output file could not be used.
    File = 7,
    /// A sound device could not be found or opened.
    Device = 8,
    /// Control plane: authenticated, but not allowed.
    Forbidden = 9,
    /// Control plane: a moderator removed (kicked) us, at join or during the call.
    Removed = 10,
    /// Control plane: banned from the room.
    Banned = 11,
    /// Control plane: the room, participant or profile does not exist.
    NotFound = 12,
    /// Control plane: already in another room on a one-room-at-a-time backend.
    InAnotherRoom = 13,
    RoomFull = 14,
    RateLimited = 15,
    /// Control plane: the server rejected the request's content.
    Rejected = 16,
    /// Control plane: the lobby refused entry.
    EntryDenied = 17,
    /// Control plane: the server failed (5xx).
    ServerError = 18,
    /// Control plane: the server's answer was not understood.
    Malformed = 19,
    /// The profile or its flags are wrong.
    InvalidProfile = 20,
    /// The backend cannot do this.
    Unsupported = 21,
    /// The OS keyring is missing, locked or failed.
    Keyring = 22,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
struct Failure {
    kind: ExitKind,
    error: anyhow::Error,
}

fn fail(kind: ExitKind, error: impl Into<anyhow::Error>) -> Failure {
    Failure { kind, error: error.into() }
}

fn main() -> ExitCode {
    let started = SystemTime::now();
    // A bug must still end in one readable line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = parley_livekit_ffi::redact(&info.to_string()).replace('\n', " ");
        eprintln!("parley: error: internal error (please report it): {message}");
    }));
    init_logging();
    let cli = Cli::parse();
    match run(cli, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let chain: Vec<String> = failure.error.chain().map(ToString::to_string).collect();
            let line = parley_livekit_ffi::redact(&chain.join(": ")).replace('\n', " ");
            eprintln!("parley: error: {line}");
            ExitCode::from(failure.kind as u8)
        }
    }
}

fn init_logging() {
    // Quiet by default (a CLI's stderr is for its one-line errors); PARLEY_LOG=debug etc. to see more.
    // The PulseAudio client logs a teardown "error" on every clean exit; device problems reach
    // the user through our own errors instead.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,livekit=off,pulseaudio=off"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}

fn run(cli: Cli, started: SystemTime) -> Result<(), Failure> {
    match cli.command {
        Command::Devserver(args) => devserver(args),
        Command::Token(args) => {
            let jwt = mint(&args.credentials, &args.room, &args.identity, args.name.clone(), args.admin, args.ttl)?;
            println!("{jwt}");
            Ok(())
        }
        Command::Devices { json } => devices(json),
        Command::MicTest { input_device, output_device, seconds } => mic_test(&input_device, &output_device, seconds),
        Command::Crowd(args) => with_engine_runtime(crowd(args)),
        Command::Ctl { socket, command } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")
                .map_err(|error| fail(ExitKind::Failure, error))?;
            let socket = socket.unwrap_or_else(control_socket::default_socket);
            let answer = runtime
                .block_on(control_socket::send(&socket, &command.join(" ")))
                .map_err(|error| fail(ExitKind::Unreachable, error))?;
            println!("{answer}");
            Ok(())
        }
        Command::Join(args) => with_engine_runtime(join(*args, started)),
        Command::Profile(command) => profile::run(command),
        Command::Rooms(args) => with_engine_runtime(profile::rooms(args)),
        Command::Mod(args) => with_engine_runtime(moderation::run(args)),
    }
}

/// Runs a command that uses the engine on a two-thread runtime, then shuts the engine down.
fn with_engine_runtime(command: impl std::future::Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    let result = runtime.block_on(command);
    if let Some(engine) = Engine::get() {
        engine.shutdown();
    }
    result
}

fn mint(
    credentials: &Credentials,
    room: &str,
    identity: &str,
    name: Option<String>,
    admin: bool,
    ttl: u64,
) -> Result<String, Failure> {
    let (Some(key), Some(secret)) = (credentials.api_key.as_deref(), credentials.api_secret.as_deref()) else {
        return Err(fail(
            ExitKind::Failure,
            anyhow::anyhow!(
                "an API key and secret are needed (--api-key/--api-secret or LIVEKIT_API_KEY/LIVEKIT_API_SECRET)"
            ),
        ));
    };
    let request = TokenRequest {
        room: room.to_string(),
        identity: identity.to_string(),
        name,
        admin,
        ttl: Duration::from_secs(ttl),
    };
    token::mint(key, secret, &request).context("creating the token").map_err(|error| fail(ExitKind::Failure, error))
}

fn devserver(args: DevserverArgs) -> Result<(), Failure> {
    let config = parley_devserver::DevServerConfig { port: args.port, ..Default::default() };
    let mut server = parley_devserver::DevServer::start(&config)
        .context("starting the LiveKit dev server")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    if args.json {
        let details = serde_json::json!({
            "url": server.url(),
            "http_url": server.http_url(),
            "api_key": server.api_key(),
            "api_secret": server.api_secret(),
            "log": server.log_path(),
        });
        println!("{details}");
    } else {
        println!("LiveKit dev server on {}", server.url());
        println!("  API key:    {}", server.api_key());
        println!("  API secret: {}", server.api_secret());
        println!("  log:        {}", server.log_path().display());
        println!("Join with:");
        println!(
            "  LIVEKIT_API_KEY={} LIVEKIT_API_SECRET=… parley join --url {} --room demo --identity me --tone 440",
            server.api_key(),
            server.url()
        );
        println!("Ctrl-C stops the server.");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(|error| fail(ExitKind::Failure, error))?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            signal = stop_signal() => signal.map(|_| true),
            _ = watch_exit(&mut server) => Ok(false),
        }
    });
    let stopped_by_user = outcome.context("waiting for Ctrl-C").map_err(|error| fail(ExitKind::Failure, error))?;
    if !stopped_by_user {
        return Err(fail(
            ExitKind::Failure,
            anyhow::anyhow!("the LiveKit server exited; its log ends with: {}", server.log_tail(5)),
        ));
    }
    server.stop();
    Ok(())
}

async fn watch_exit(server: &mut parley_devserver::DevServer) {
    while server.is_running() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one.
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

async fn join(args: JoinArgs, started: SystemTime) -> Result<(), Failure> {
    let through_profile = match &args.profile {
        Some(name) => {
            let plane = profile::open(name).await?;
            let room = match (&args.room, &args.invite) {
                (Some(room), _) => room.clone(),
                (None, Some(invite)) => profile::open_invite(plane.as_ref(), invite).await?,
                (None, None) => {
                    return Err(fail(ExitKind::Failure, anyhow::anyhow!("--profile needs --room or --invite")));
                }
            };
            let grant = profile::join_grant(plane.as_ref(), &room, args.switch).await?;
            Some((plane, grant))
        }
        None => None,
    };
    let url = match (&through_profile, &args.url) {
        (Some((_, grant)), _) => grant.url.clone(),
        (None, Some(url)) => url.clone(),
        (None, None) => return Err(fail(ExitKind::Failure, anyhow::anyhow!("give --url, or --profile and --room"))),
    };
    let jwt = match (&through_profile, &args.token) {
        (Some((_, grant)), _) => grant.token.clone(),
        (None, Some(jwt)) => jwt.clone(),
        (None, None) => {
            let (Some(room), Some(identity)) = (args.room.as_deref(), args.identity.as_deref()) else {
                return Err(fail(
                    ExitKind::Failure,
                    anyhow::anyhow!("give --token, or --room and --identity with an API key and secret"),
                ));
            };
            mint(&args.credentials, room, identity, args.name.clone(), false, 6 * 3600)?
        }
    };
    // A backend's room id (a slug, a number) need not be the LiveKit room name.
    let wanted_room = if through_profile.is_some() { None } else { args.room.as_deref() };
    token::inspect(&jwt, wanted_room)
        .context("checking the access token")
        .map_err(|error| fail(ExitKind::Unauthorized, error))?;

    let mut device_info = Vec::new();
    let input: Option<Box<dyn FrameSource>> = match (&args.play, args.tone, &args.input_device) {
        (Some(path), _, _) => {
            let samples = parley_audio::wav::read_mono_48k(path).map_err(|error| fail(ExitKind::File, error))?;
            Some(Box::new(Clip::new(samples)))
        }
        (None, Some(frequency), _) => Some(Box::new(Tone::new(frequency, args.tone_level))),
        (None, None, Some(device)) => {
            let input = DeviceInput::open(device_choice(device)).map_err(|error| fail(ExitKind::Device, error))?;
            device_info.push(("input", input.info().clone()));
            Some(Box::new(input))
        }
        (None, None, None) => None,
    };
    let output: Option<Box<dyn FrameSink>> = match (&args.record, &args.output_device) {
        (Some(path), _) => {
            Some(Box::new(parley_audio::wav::Recorder::create(path).map_err(|error| fail(ExitKind::File, error))?))
        }
        (None, Some(device)) => {
            let output = DeviceOutput::open(device_choice(device)).map_err(|error| fail(ExitKind::Device, error))?;
            device_info.push(("output", output.info().clone()));
            Some(Box::new(output))
        }
        (None, None) => None,
    };

    let search = LibrarySearch { explicit: args.ffi_lib.clone(), extra_dirs: Vec::new() };
    let engine = Engine::start(&search).map_err(|error| fail(ExitKind::Engine, error))?;
    let options = RoomOptions {
        e2ee_shared_key: args
            .e2ee_key
            .as_ref()
            .or(through_profile.as_ref().and_then(|(_, grant)| grant.e2ee_key.as_ref()))
            .map(|key| key.as_bytes().to_vec()),
        ..RoomOptions::default()
    };
    let printer = EventPrinter { json: args.json, started };
    let cues = match (&args.output_device, parse_cues(args.cues.as_deref(), args.output_device.is_some())) {
        (_, Err(error)) => return Err(fail(ExitKind::Failure, anyhow::anyhow!(error))),
        (_, Ok(enabled)) if enabled.is_empty() => None,
        (device, Ok(enabled)) => Some(
            CuePlayer::open(device.as_deref().and_then(device_choice), enabled)
                .map_err(|error| fail(ExitKind::Device, error))?,
        ),
    };
    let processing = match args.processing {
        Some(Switch::On) => true,
        Some(Switch::Off) => false,
        None => args.input_device.is_some(),
    };
    let transmit = match args.mode {
        ModeArg::Open => TransmitMode::OpenMic,
        ModeArg::Vad => {
            TransmitMode::VoiceActivity { threshold_dbfs: args.vad_threshold, hysteresis_db: 6.0, hold_ms: 300 }
        }
        ModeArg::Ptt => {
            TransmitMode::PushToTalk { release_delay_ms: args.ptt_release_ms, double_tap_lock: args.double_tap_lock }
        }
    };
    let request = JoinRequest {
        url: url.clone(),
        token: jwt,
        options,
        input,
        output,
        processing: processing.then_some(ApmConfig {
            echo_cancellation: !args.no_aec,
            noise_suppression: !args.no_ns,
            auto_gain_control: !args.no_agc,
            high_pass_filter: !args.no_hpf,
        }),
        transmit,
        echo_delay_ms: args.echo_delay_ms,
        cues,
        report_levels: args.levels,
        report_stats: args
            .stats
            .map(|seconds| Duration::try_from_secs_f64(seconds).ok().filter(|every| !every.is_zero()))
            .map(|every| {
                every.ok_or_else(|| {
                    fail(ExitKind::Failure, anyhow::anyhow!("--stats needs a positive number of seconds"))
                })
            })
            .transpose()?,
        device_info,
    };
    let joined = tokio::time::timeout(Duration::from_secs(10), Session::join(engine, request)).await;
    let (session, mut events) = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(error)) => return Err(join_failure(error)),
        Err(_) => {
            return Err(fail(ExitKind::Unreachable, anyhow::anyhow!("timed out after 10 s joining {url}")));
        }
    };

    let deadline = args.duration.map(|seconds| tokio::time::Instant::now() + Duration::from_secs_f64(seconds));
    let (requests, mut controls) = tokio::sync::mpsc::channel(32);
    control::read_stdin(requests.clone());
    let _socket = open_control_socket(args.control_socket.as_deref(), requests).await;
    let mut ended_by_room: Option<(String, String)> = None;
    let (membership, mut membership_events) = match through_profile {
        Some((plane, grant)) => {
            let (membership, events) = parley_core::membership::Membership::start(plane, grant);
            (Some(membership), Some(events))
        }
        None => (None, None),
    };
    let mut removed: Option<(String, String)> = None;
    loop {
        tokio::select! {
            Some(event) = next_membership_event(&mut membership_events) => {
                profile::print_membership(args.json, started, &event);
                if let parley_core::membership::MembershipEvent::Removed { reason, code } = event {
                    removed = Some((reason, code));
                    break;
                }
            }
            Some(request) = controls.recv() => {
                let answer = session.apply(&request.control).map_err(|error| error.to_string());
                if request.reply.send(answer).is_err() {
                    tracing::debug!("control client left before the answer");
                }
            }
            event = events.recv() => {
                let Some(stamped) = event else { break };
                printer.print(&stamped);
                if let SessionEvent::Disconnected { reason, code } = stamped.event {
                    ended_by_room = Some((reason, code));
                    break;
                }
            }
            _ = sleep_until(deadline) => break,
            signal = stop_signal() => {
                signal.context("waiting for Ctrl-C").map_err(|error| fail(ExitKind::Failure, error))?;
                break;
            }
        }
    }
    let left = session.leave().await;
    while let Ok(stamped) = events.try_recv() {
        printer.print(&stamped);
    }
    if let Some(membership) = membership
        && let Err(error) = membership.leave().await
    {
        tracing::debug!(%error, "telling the server we left failed");
    }
    if let Some((reason, code)) = removed {
        let kind = if code == "banned" { ExitKind::Banned } else { ExitKind::Removed };
        return Err(fail(kind, anyhow::anyhow!("removed from the room: {reason}")));
    }
    if let Some((reason, code)) = ended_by_room
        && code != "client_initiated"
    {
        return Err(fail(ExitKind::Disconnected, anyhow::anyhow!("disconnected from the room: {reason}")));
    }
    left.context("leaving the room").map_err(|error| fail(ExitKind::File, error))
}

async fn crowd(args: CrowdArgs) -> Result<(), Failure> {
    let engine = Engine::start(&LibrarySearch { explicit: args.ffi_lib.clone(), extra_dirs: Vec::new() })
        .map_err(|error| fail(ExitKind::Engine, error))?;
    let mut sessions = Vec::with_capacity(args.count);
    for index in 0..args.count {
        let identity = format!("{}-{index}", args.prefix);
        let token = mint(&args.credentials, &args.room, &identity, None, false, 6 * 3600)?;
        let request = JoinRequest {
            url: args.url.clone(),
            token,
            options: RoomOptions::default(),
            input: Some(Box::new(Tone::new(200.0 + 37.0 * index as f64, -20.0))),
            output: None,
            processing: None,
            transmit: TransmitMode::OpenMic,
            echo_delay_ms: 0,
            cues: None,
            report_levels: false,
            report_stats: None,
            device_info: Vec::new(),
        };
        let (session, mut events) = Session::join(engine, request).await.map_err(join_failure)?;
        // Nobody reads a crowd speaker's events, but unread they would pile up in the channel for
        // as long as the crowd runs (1.7 GB after 11 minutes of 10 speakers).
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        sessions.push((session, drain));
    }
    println!("crowd: {} speakers in room {}", sessions.len(), args.room);
    let deadline = args.duration.map(|seconds| tokio::time::Instant::now() + Duration::from_secs_f64(seconds));
    tokio::select! {
        _ = sleep_until(deadline) => {}
        signal = stop_signal() => signal.context("waiting for Ctrl-C").map_err(|error| fail(ExitKind::Failure, error))?,
    }
    // All at once: each leave is bounded (`LEAVE_STEP_LIMIT` per step), one after another they
    // could still add up to minutes.
    let leaving: Vec<_> = sessions
        .into_iter()
        .map(|(session, drain)| {
            drain.abort();
            tokio::spawn(session.leave())
        })
        .collect();
    for left in leaving {
        if let Ok(Err(error)) = left.await {
            eprintln!("crowd: a speaker did not leave cleanly: {error}");
        }
    }
    Ok(())
}

/// Opens the control socket unless disabled; failing to is a warning, not a reason to leave.
#[cfg(unix)]
async fn open_control_socket(
    wanted: Option<&str>,
    requests: tokio::sync::mpsc::Sender<control_socket::ControlRequest>,
) -> Option<control_socket::ControlSocket> {
    let path = match wanted {
        Some("none") => return None,
        Some(path) => PathBuf::from(path),
        None => control_socket::default_socket(),
    };
    match control_socket::ControlSocket::listen(&path, requests).await {
        Ok(socket) => Some(socket),
        Err(error) => {
            eprintln!("parley: warning: no control socket: {error:#}");
            None
        }
    }
}

/// The cues `--cues` enables: `all`, `none`, or a comma list; by default all when the session
/// plays to a device (a file recording should not contain them).
fn parse_cues(wanted: Option<&str>, playing_to_device: bool) -> Result<HashSet<Cue>, String> {
    match wanted {
        None if playing_to_device => Ok(Cue::ALL.into_iter().collect()),
        None | Some("none") => Ok(HashSet::new()),
        Some("all") => Ok(Cue::ALL.into_iter().collect()),
        Some(list) => list.split(',').map(|name| name.trim().parse::<Cue>()).collect(),
    }
}

/// `default` (or an empty name) means the system default device.
fn device_choice(name: &str) -> Option<&str> {
    (!name.is_empty() && name != "default").then_some(name)
}

fn mic_test(input: &str, output: &str, seconds: Option<f64>) -> Result<(), Failure> {
    let input = DeviceInput::open(device_choice(input)).map_err(|error| fail(ExitKind::Device, error))?;
    let output = DeviceOutput::open(device_choice(output)).map_err(|error| fail(ExitKind::Device, error))?;
    eprintln!("microphone test: {} → {} (Ctrl-C to stop)", input.info().device, output.info().device);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(seconds) = seconds {
        let stop = std::sync::Arc::clone(&stop);
        let duration = Duration::try_from_secs_f64(seconds.max(0.0))
            .map_err(|error| fail(ExitKind::Failure, anyhow::anyhow!("--seconds: {error}")))?;
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    let mut reports = 0u32;
    let mut loudest = f32::NEG_INFINITY;
    let report = |level: f32| {
        loudest = loudest.max(level);
        reports += 1;
        if reports.is_multiple_of(10) {
            println!("input peak {:.1} dBFS", loudest.max(-100.0));
            loudest = f32::NEG_INFINITY;
        }
    };
    parley_core::mic_test::play_back(Box::new(input), Box::new(output), &stop, report)
        .map_err(|message| fail(ExitKind::Device, anyhow::anyhow!(message)))
}

fn devices(json: bool) -> Result<(), Failure> {
    let devices = list_devices().map_err(|error| fail(ExitKind::Device, error))?;
    if json {
        let text = serde_json::to_string(&devices).map_err(|error| fail(ExitKind::Failure, error))?;
        println!("{text}");
        return Ok(());
    }
    for device in &devices {
        let direction = match device.direction {
            Direction::Input => "input ",
            Direction::Output => "output",
        };
        let default = if device.is_default { " (default)" } else { "" };
        println!(
            "{direction}  {}{default}  [{} Hz, {} ch]  id: {}",
            device.name, device.default_sample_rate, device.default_channels, device.id
        );
    }
    Ok(())
}

/// The next membership event, or never when the call has no membership (or it ended).
async fn next_membership_event(
    events: &mut Option<tokio::sync::mpsc::UnboundedReceiver<parley_core::membership::MembershipEvent>>,
) -> Option<parley_core::membership::MembershipEvent> {
    match events {
        Some(receiver) => match receiver.recv().await {
            Some(event) => Some(event),
            None => {
                *events = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn join_failure(error: parley_core::SessionError) -> Failure {
    use parley_livekit_ffi::Error as E;
    let kind = match &error {
        parley_core::SessionError::Engine(E::Connect { kind, .. }) => match kind {
            ConnectFailure::Unauthorized | ConnectFailure::Forbidden => ExitKind::Unauthorized,
            ConnectFailure::Unreachable | ConnectFailure::InvalidUrl | ConnectFailure::Timeout => ExitKind::Unreachable,
            _ => ExitKind::Failure,
        },
        parley_core::SessionError::Output(_) => ExitKind::File,
        _ => ExitKind::Failure,
    };
    fail(kind, anyhow::Error::new(error).context("joining the room"))
}

/// Prints session events: JSON lines with `t_ms` (since process start) and `unix_ms` (wall
/// clock, comparable across processes), or short human lines.
struct EventPrinter {
    json: bool,
    started: SystemTime,
}

impl EventPrinter {
    fn print(&self, stamped: &StampedEvent) {
        let event = &stamped.event;
        let t_ms = stamped.at.duration_since(self.started).map(|elapsed| elapsed.as_secs_f64() * 1000.0).unwrap_or(0.0);
        if self.json {
            let unix_ms =
                stamped.at.duration_since(UNIX_EPOCH).map(|since| since.as_secs_f64() * 1000.0).unwrap_or(0.0);
            let mut value = serde_json::to_value(event).unwrap_or_else(|_| serde_json::json!({"event": "unknown"}));
            if let Some(object) = value.as_object_mut() {
                object.insert("t_ms".into(), serde_json::json!((t_ms * 10.0).round() / 10.0));
                object.insert("unix_ms".into(), serde_json::json!((unix_ms * 10.0).round() / 10.0));
            }
            self.write(&value.to_string());
            return;
        }
        let line = match event {
            SessionEvent::Joined { room, identity, participants } => {
                format!("joined room {room} as {identity} ({} others here)", participants.len())
            }
            SessionEvent::ParticipantJoined { identity, .. } => format!("{identity} joined"),
            SessionEvent::ParticipantLeft { identity, reason } => format!("{identity} left ({reason})"),
            SessionEvent::TrackSubscribed { identity, .. } => format!("receiving {identity}'s audio"),
            SessionEvent::FirstAudio { identity, .. } => format!("hearing {identity}"),
            SessionEvent::ActiveSpeakers { identities } if !identities.is_empty() => {
                format!("speaking: {}", identities.join(", "))
            }
            SessionEvent::Reconnecting => "connection lost, reconnecting…".into(),
            SessionEvent::Reconnected => "reconnected".into(),
            SessionEvent::Disconnected { reason, .. } => format!("disconnected: {reason}"),
            SessionEvent::InputEnded => "input ended; sending silence".into(),
            SessionEvent::DeviceChanged { message } => format!("sound device: {message}"),
            SessionEvent::DeviceOpened { direction, device, sample_rate, channels, buffer_frames } => format!(
                "{direction} {device}: {sample_rate} Hz, {channels} ch, buffer {}",
                buffer_frames.map_or_else(|| "not reported".to_string(), |frames| format!("{frames} frames"))
            ),
            SessionEvent::TransmitChanged { on } => (if *on { "transmitting" } else { "not transmitting" }).into(),
            SessionEvent::PublishPermission { can_publish: false } => {
                "listening only: the room does not let you speak (a moderator can invite you)".into()
            }
            SessionEvent::PublishPermission { can_publish: true } => "allowed to speak".into(),
            SessionEvent::PublishingStopped { .. } => "no longer allowed to speak: microphone unpublished".into(),
            SessionEvent::Warning { message } => format!("warning: {message}"),
            SessionEvent::ReceiveStats {
                identity,
                jitter_buffer_ms,
                jitter_buffer_target_ms,
                concealed_percent,
                packets_lost,
                mixer_queue_ms,
                ..
            } => {
                let ms = |value: &Option<f64>| value.map_or_else(|| "–".to_string(), |value| format!("{value:.1} ms"));
                format!(
                    "{identity}: jitter buffer {} (target {}), concealed {concealed_percent:.1} %, lost {packets_lost}, mixer queue {}",
                    ms(jitter_buffer_ms),
                    ms(jitter_buffer_target_ms),
                    ms(mixer_queue_ms)
                )
            }
            _ => return,
        };
        self.write(&format!("[{:>7.1} s] {line}", t_ms / 1000.0));
    }

    /// Writes one line to stdout. A closed stdout (the reader went away) is not an error worth
    /// failing the session for: the line is dropped.
    fn write(&self, line: &str) {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            tracing::debug!(%error, "stdout closed; event not printed");
        }
    }
}
