//! `parley`, the headless Parley client: the same core session as the desktop app, for tests,
//! bots and scripting.
//!
//! Commands, one module each unless noted:
//! * `devserver` — run the pinned LiveKit server on loopback with fresh keys ([`devserver`]);
//! * `token` — print a join token signed with an API key and secret ([`token`]);
//! * `join` — join a room: publish a file, tone or microphone, record or play the others
//!   ([`join`], events printed by [`printer`], stdin commands read by [`control`]);
//! * `ctl` — send a running `join` a command over its control socket: ptt-start, ptt-stop, mute,
//!   unmute, toggle-mute, deafen, undeafen, toggle-deafen, volume, output-volume, local-mute,
//!   local-unmute ([`control`]);
//! * `crowd` — a load generator: N speakers in one process, each with its own tone ([`crowd`]);
//! * `profile add` — save a server profile, its secrets in the OS keyring ([`profile`]);
//! * `profile list` — list the saved profiles;
//! * `profile show` — a profile's settings and which secrets the keyring holds;
//! * `profile remove` — remove a profile and its secrets;
//! * `profile authorize` — get and store an audioroom forum's user API key;
//! * `rooms` — list the rooms on a profile's server ([`profile`]);
//! * `mod` — moderate someone through a profile: mute, unmute, hard-mute, restore, kick, unkick,
//!   ban, unban, invite-to-speak, move-to-audience, make-moderator ([`moderation`]);
//! * `devices` — list the sound devices ([`devices`]);
//! * `mic-test` — hear yourself through the call's device path ([`devices`]).
//!
//! [`args`] holds the command line; [`stop`] says when a running command ends. Errors print on
//! one line; [`exit::ExitKind`] lists the exit codes.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};
use parley_core::Engine;

use crate::args::{Cli, Command};
use crate::exit::{ExitKind, Failure, fail};

mod args;
mod control;
mod crowd;
mod devices;
mod devserver;
mod exit;
mod join;
mod moderation;
mod printer;
mod profile;
mod share;
mod stop;
mod token;

fn main() -> ExitCode {
    let started = SystemTime::now();
    // A bug must still end in one readable line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = parley_livekit_ffi::redact(&info.to_string()).replace('\n', " ");
        eprintln!("parley: error: internal error (please report it): {message}");
    }));
    init_logging();
    let matches = Cli::command().get_matches();
    warn_about_visible_secrets(&matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
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

/// Secrets typed as arguments are visible to every user of the machine (`ps`, `/proc`): each
/// one given on the command line gets a warning naming the environment variable to use.
fn warn_about_visible_secrets(matches: &clap::ArgMatches) {
    const SECRETS: [(&str, &str, &str); 3] = [
        ("token", "--token", "LIVEKIT_TOKEN"),
        ("e2ee_key", "--e2ee-key", "PARLEY_E2EE_KEY"),
        ("api_secret", "--api-secret", "LIVEKIT_API_SECRET"),
    ];
    let mut level = Some(matches);
    while let Some(matches) = level {
        for (id, flag, variable) in SECRETS {
            let typed = matches.try_contains_id(id).unwrap_or(false)
                && matches.value_source(id) == Some(ValueSource::CommandLine);
            if typed {
                eprintln!(
                    "parley: warning: {flag} on the command line is visible to other users of this machine; \
                     set {variable} in the environment instead"
                );
            }
        }
        level = matches.subcommand().map(|(_, sub)| sub);
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
        Command::Devserver(args) => devserver::run(&args),
        Command::Token(args) => token::run(&args),
        Command::Devices { json } => devices::list(json),
        Command::ShareTargets { json } => share::list_targets(json),
        Command::MicTest { input_device, output_device, seconds } => {
            devices::mic_test(&input_device, &output_device, seconds)
        }
        Command::Crowd(args) => with_engine_runtime(crowd::run(args)),
        Command::Ctl { socket, command } => control::send(socket, &command),
        Command::Join(args) => with_engine_runtime(join::run(*args, started)),
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
