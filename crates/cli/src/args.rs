//! The command line: `parley`'s commands and their flags, as clap parses them. The subcommands
//! of `profile` and the arguments of `rooms` and `mod` live beside their commands
//! ([`crate::profile`], [`crate::moderation`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{moderation, profile};

#[derive(Parser)]
#[command(name = "parley", version, about = "Parley voice client (headless)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the pinned LiveKit server on 127.0.0.1 with fresh keys until Ctrl-C.
    Devserver(DevserverArgs),
    /// Print a LiveKit join token signed with an API key and secret.
    Token(TokenArgs),
    /// Join a room: publish a file, tone or microphone, record or play what the others say.
    Join(Box<JoinArgs>),
    /// Send a command to a running `parley join`: ptt-start, ptt-stop, mute, unmute,
    /// toggle-mute, deafen, undeafen, toggle-deafen, volume <identity> <0-200>,
    /// output-volume <0-200>, local-mute <identity>, local-unmute <identity>.
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
    /// List the screens and windows `parley join --share-screen` can share.
    ShareTargets {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
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
pub struct DevserverArgs {
    /// Print the connection details as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Signalling port (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Args, Clone)]
pub struct Credentials {
    /// LiveKit API key.
    #[arg(long, env = "LIVEKIT_API_KEY")]
    pub api_key: Option<String>,
    /// LiveKit API secret (prefer the environment variable: arguments are visible to other users).
    #[arg(long, env = "LIVEKIT_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub credentials: Credentials,
    #[arg(long)]
    pub room: String,
    #[arg(long)]
    pub identity: String,
    /// Display name (default: the identity).
    #[arg(long)]
    pub name: Option<String>,
    /// Grant room administration (RoomService moderation) for this room.
    #[arg(long)]
    pub admin: bool,
    /// Validity in seconds.
    #[arg(long, default_value_t = 6 * 3600)]
    pub ttl: u64,
}

#[derive(Args)]
pub struct JoinArgs {
    /// LiveKit server URL (ws:// or wss://).
    #[arg(long, env = "LIVEKIT_URL", required_unless_present = "profile")]
    pub url: Option<String>,
    /// Join through a saved profile (`parley profile add`): its server hands out the token;
    /// needs --room or --invite. Heartbeats, token refresh and moderation events run beside the
    /// call.
    #[arg(long)]
    pub profile: Option<String>,
    /// With --profile: join the room an invite link (URL or token) invites to.
    #[arg(long, requires = "profile", conflicts_with = "room")]
    pub invite: Option<String>,
    /// With --profile: when the backend says you are in another room already (one room at a
    /// time), leave that room and join this one.
    #[arg(long, requires = "profile")]
    pub switch: bool,
    /// Allow an unencrypted --url (ws://) on another machine: anyone on the network can then
    /// read the token and listen in. Never needed for 127.0.0.1 or localhost; a profile says it
    /// with `profile add --insecure`.
    #[arg(long, conflicts_with = "profile")]
    pub insecure: bool,
    /// Join token (or mint one with --api-key/--api-secret).
    #[arg(long, env = "LIVEKIT_TOKEN", hide_env_values = true, conflicts_with_all = ["api_key", "api_secret"])]
    pub token: Option<String>,
    #[command(flatten)]
    pub credentials: Credentials,
    /// Room to join; with --token, checked against the token's room.
    #[arg(long)]
    pub room: Option<String>,
    /// Identity to join as (needed when minting).
    #[arg(long)]
    pub identity: Option<String>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Publish this WAV file (any PCM rate/channels; converted to 48 kHz mono), in real time.
    #[arg(long, conflicts_with_all = ["tone", "input_device"])]
    pub play: Option<PathBuf>,
    /// Publish this capture device (id or name from `parley devices`, or `default`).
    #[arg(long, conflicts_with = "tone")]
    pub input_device: Option<String>,
    /// Play the others on this output device (id or name, or `default`).
    #[arg(long, conflicts_with = "record")]
    pub output_device: Option<String>,
    /// Let the LiveKit engine's own device module play the others (`listen`), and record and
    /// publish the microphone (`talk`), on the system's default devices (PULSE_SINK and
    /// PULSE_SOURCE choose them), instead of Parley's device ends, mixer and processing: for
    /// `cargo xtask bench audio`'s comparison. No per-user volume, mute or push-to-talk.
    #[arg(long, value_enum, conflicts_with_all = ["play", "tone", "record", "mode", "input_device", "output_device"])]
    pub platform_audio: Option<PlatformAudioArg>,
    /// Publish a sine tone at this frequency in Hz.
    #[arg(long)]
    pub tone: Option<f64>,
    /// Peak level of --tone in dBFS.
    #[arg(long, default_value_t = -12.0, allow_hyphen_values = true)]
    pub tone_level: f64,
    /// Record the mix of all remote audio to this 48 kHz mono WAV file.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Leave after this many seconds (default: run until Ctrl-C or the room ends).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print one JSON object per event line on stdout.
    #[arg(long)]
    pub json: bool,
    /// End-to-end encryption with this shared passphrase (every participant needs the same).
    #[arg(long, env = "PARLEY_E2EE_KEY", hide_env_values = true)]
    pub e2ee_key: Option<String>,
    /// The LiveKit FFI library file (default: LIVEKIT_LIB_PATH, beside the executable, then setup's).
    #[arg(long)]
    pub ffi_lib: Option<PathBuf>,
    /// When to transmit: always, on voice activity, or while push-to-talk is held.
    #[arg(long, value_enum, default_value_t = ModeArg::Open)]
    pub mode: ModeArg,
    /// Voice-activity threshold in dBFS.
    #[arg(long, default_value_t = -40.0, allow_hyphen_values = true)]
    pub vad_threshold: f32,
    /// Keep transmitting this long after push-to-talk is released (0–2000 ms).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=2000))]
    pub ptt_release_ms: u32,
    /// Two quick push-to-talk presses keep it open until the next press.
    #[arg(long)]
    pub double_tap_lock: bool,
    /// Audio processing (echo cancellation, noise suppression, gain, high-pass): on by default
    /// for --input-device, off for files and tones. `--processing on|off` forces it.
    #[arg(long, value_enum)]
    pub processing: Option<Switch>,
    #[arg(long)]
    pub no_aec: bool,
    #[arg(long)]
    pub no_ns: bool,
    #[arg(long)]
    pub no_agc: bool,
    #[arg(long)]
    pub no_hpf: bool,
    /// Speaker-to-microphone delay hint for the echo canceller, in ms.
    #[arg(long, default_value_t = 40)]
    pub echo_delay_ms: i32,
    /// Confirmation sounds on the output device: `all`, `none`, or a comma list (joined, left,
    /// participant-joined, participant-left, muted, unmuted, deafened, undeafened, ptt-on,
    /// ptt-off, you-are-muted). Default: all with --output-device, none otherwise.
    #[arg(long)]
    pub cues: Option<String>,
    /// Print audio levels (microphone, each participant) every 100 ms (with --json).
    #[arg(long)]
    pub levels: bool,
    /// Print each remote track's receive statistics (jitter buffer delay and target,
    /// concealment, loss, our mixer queue) every this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub stats: Option<f64>,
    /// Listen for control commands on this socket (default: see `parley ctl --help`); `none` to disable.
    #[arg(long)]
    pub control_socket: Option<String>,
    /// Share a screen or window: a screen index (`0`), a window id (`0x1a00007`), or part of a
    /// window's name (see `parley share-targets`).
    #[arg(long, value_name = "TARGET")]
    pub share_screen: Option<String>,
    /// The share's quality: 720p30, 1080p30, 1080p60 or source.
    #[arg(long, default_value = "720p30", requires = "share_screen")]
    pub share_quality: parley_core::capture::Quality,
    /// What the share keeps when bandwidth is short: `detail` (the resolution: text stays
    /// sharp) or `motion` (the frame rate: motion stays smooth).
    #[arg(long, default_value = "detail", requires = "share_screen")]
    pub share_priority: parley_core::capture::Priority,
    /// Cap the share's upload at this many kbit/s (below what the quality sets), e.g. on a slow
    /// uplink.
    #[arg(long, value_name = "KBIT_S", requires = "share_screen", value_parser = clap::value_parser!(u64).range(50..))]
    pub share_max_bitrate: Option<u64>,
    /// Share this application's sound with the picture (Linux): part of its name, `#<stream>`
    /// or its process id (see `parley share-targets`). Never Parley's own playout.
    #[arg(long, value_name = "APP", requires = "share_screen")]
    pub share_audio: Option<String>,
    /// Watch this participant's screen share (prints watch statistics every second).
    #[arg(long, value_name = "IDENTITY")]
    pub watch: Option<String>,
    /// Save watched pictures as PNG files in this directory (`frame-000042.png`).
    #[arg(long, value_name = "DIR", requires = "watch")]
    pub save_frames: Option<PathBuf>,
    /// With --save-frames: save every Nth picture received.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "save_frames",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub save_every: u64,
}

impl JoinArgs {
    /// How `--share-screen` sends.
    pub fn share_settings(&self) -> parley_core::ShareSettings {
        parley_core::ShareSettings {
            quality: self.share_quality,
            priority: self.share_priority,
            max_bitrate: self.share_max_bitrate.map(|kbps| kbps * 1000),
            audio: self.share_audio.clone(),
        }
    }
}

#[derive(Args)]
pub struct CrowdArgs {
    #[arg(long, env = "LIVEKIT_URL")]
    pub url: String,
    #[command(flatten)]
    pub credentials: Credentials,
    #[arg(long)]
    pub room: String,
    /// How many speakers.
    #[arg(long)]
    pub count: usize,
    /// Identity prefix; speakers are `<prefix>-0`, `<prefix>-1`, …
    #[arg(long, default_value = "speaker")]
    pub prefix: String,
    /// Leave after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long)]
    pub ffi_lib: Option<PathBuf>,
}

/// What `--platform-audio` does besides playing the others.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PlatformAudioArg {
    /// Play the others only.
    Listen,
    /// Also record the default microphone and publish it.
    Talk,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Open,
    Vad,
    Ptt,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}
