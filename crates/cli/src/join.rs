//! `parley join`: joins a room with a file, tone or microphone as input and a recording or
//! speaker as output, directly (URL and token) or through a saved profile, and runs until the
//! duration ends, Ctrl-C, or the room ends it. Control commands arrive on stdin and the control
//! socket; events print as they happen ([`crate::printer`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use parley_audio::cue::{Cue, CuePlayer};
use parley_audio::device::{DeviceInput, DeviceOutput};
use parley_audio::gate::TransmitMode;
use parley_audio::signal::Tone;
use parley_audio::stream::{Clip, FrameSink, FrameSource};
use parley_control_plane::transport;
use parley_core::client::ErrorCode;
use parley_core::control_socket;
use parley_core::membership::{Membership, MembershipEvent};
use parley_core::token;
use parley_core::{
    Engine, JoinRequest, LibrarySearch, PlatformAudioMode, RoomOptions, Session, SessionEvent, VideoSink, WatchRequest,
};
use parley_livekit_ffi::ApmConfig;
use tokio::sync::mpsc;

use crate::args::{JoinArgs, ModeArg, PlatformAudioArg, Switch};
use crate::devices::device_choice;
use crate::exit::{ExitKind, Failure, classify, fail, fail_as};
use crate::printer::EventPrinter;
use crate::token::mint;
use crate::{control, profile, stop};

/// Runs one call to its end; `started` is the process's start, from which event times count.
pub async fn run(args: JoinArgs, started: SystemTime) -> Result<(), Failure> {
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
        (None, Some(url)) => {
            transport::check_livekit(url, None, args.insecure).map_err(|error| classify(error, "checking --url"))?;
            url.clone()
        }
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
    let platform_audio = args.platform_audio.map(|mode| match mode {
        PlatformAudioArg::Listen => PlatformAudioMode::Listen,
        PlatformAudioArg::Talk => PlatformAudioMode::Talk,
    });
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
    let printer = EventPrinter::new(args.json, started);
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
    let report_stats = args
        .stats
        .map(|seconds| Duration::try_from_secs_f64(seconds).ok().filter(|every| !every.is_zero()))
        .map(|every| {
            every.ok_or_else(|| fail(ExitKind::Failure, anyhow::anyhow!("--stats needs a positive number of seconds")))
        })
        .transpose()?;
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
        report_stats,
        report_traffic: report_stats,
        device_info,
        watch: match (&args.watch, &args.save_frames) {
            (Some(identity), Some(dir)) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))
                    .map_err(|error| fail(ExitKind::File, error))?;
                let saver = crate::share::PngSaver { dir: dir.clone() };
                Some(WatchRequest { identity: identity.clone(), sink: Box::new(saver), every: args.save_every })
            }
            (Some(identity), None) => {
                Some(WatchRequest { identity: identity.clone(), sink: Box::new(Discard), every: u64::MAX })
            }
            (None, _) => None,
        },
        // A share watched later (`parley ctl watch <identity>`) is saved in a folder of its own.
        viewer: Some(match args.save_frames.clone() {
            Some(dir) => Arc::new(move |identity: &str| -> Box<dyn VideoSink> {
                let dir = dir.join(identity);
                if let Err(error) = std::fs::create_dir_all(&dir) {
                    eprintln!("parley: warning: creating {}: {error}", dir.display());
                }
                Box::new(crate::share::PngSaver { dir })
            }),
            None => Arc::new(|_: &str| -> Box<dyn VideoSink> { Box::new(Discard) }),
        }),
        platform_audio,
    };
    let joined = tokio::time::timeout(Duration::from_secs(10), Session::join(engine, request)).await;
    let (mut session, mut events) = match joined {
        Ok(Ok(joined)) => joined,
        Ok(Err(error)) => return Err(classify(error, "joining the room")),
        Err(_) => {
            return Err(fail_as(ErrorCode::Timeout, anyhow::anyhow!("timed out after 10 s joining {url}")));
        }
    };

    if let Some(wanted) = &args.share_screen {
        // A share that cannot start is reported (`share_failed`) and the call goes on.
        let wanted = wanted.clone();
        let found = tokio::task::spawn_blocking(move || parley_core::capture::find_target(&wanted)).await;
        match found {
            Ok(Ok(target)) => {
                if let Err(error) = session.start_share(&target, args.share_settings()).await {
                    tracing::debug!(%error, "the share did not start");
                }
            }
            Ok(Err(error)) => {
                let reason = error.to_string();
                let code = parley_core::session::share_failure_code(&error.into()).to_string();
                printer.print(&parley_core::StampedEvent {
                    at: SystemTime::now(),
                    event: SessionEvent::ShareFailed { code, reason },
                });
            }
            Err(error) => tracing::warn!(%error, "looking for the share target failed"),
        }
    }

    let deadline = stop::after(args.duration);
    let (requests, mut controls) = mpsc::channel(32);
    control::read_stdin(requests.clone());
    let _socket = open_control_socket(args.control_socket.as_deref(), requests).await;
    let mut ended_by_room: Option<(String, String)> = None;
    let (membership, mut membership_events) = match through_profile {
        Some((plane, grant)) => {
            let (membership, events) = Membership::start(plane, grant);
            (Some(membership), Some(events))
        }
        None => (None, None),
    };
    let mut removed: Option<(String, String)> = None;
    let mut lost: Option<String> = None;
    loop {
        tokio::select! {
            Some(event) = parley_core::membership::next_event(&mut membership_events) => {
                printer.print_membership(&event);
                if let MembershipEvent::Removed { reason, code } = event {
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
                session.on_share_muted(&stamped.event).await;
                match stamped.event {
                    // Through a profile, the backend is asked for a fresh join first.
                    SessionEvent::Disconnected { connection_lost: true, reason, .. } => {
                        let Some(membership) = &membership else {
                            lost = Some(reason);
                            break;
                        };
                        if let Err(last) = parley_core::membership::rejoin(&mut session, membership).await {
                            lost = Some(format!("{reason}, and joining again failed: {last}"));
                            break;
                        }
                    }
                    SessionEvent::Disconnected { reason, code, .. } => {
                        ended_by_room = Some((reason, code));
                        break;
                    }
                    _ => {}
                }
            }
            _ = stop::at(deadline) => break,
            signal = stop::signal() => {
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
        // `code` is the control plane's (`kicked`, `banned`), or `removed` for a backend's event.
        let code = if code == "banned" { ErrorCode::Banned } else { ErrorCode::Kicked };
        return Err(fail_as(code, anyhow::anyhow!("removed from the room: {reason}")));
    }
    if let Some(reason) = lost {
        return Err(fail_as(ErrorCode::Unreachable, anyhow::anyhow!("disconnected from the room: {reason}")));
    }
    if let Some((reason, code)) = ended_by_room
        && code != "client_initiated"
    {
        return Err(fail(ExitKind::Disconnected, anyhow::anyhow!("disconnected from the room: {reason}")));
    }
    // Not core's classification: what a script must learn from a failed leave is that the
    // recording may be incomplete (README: 7), and core calls a failed write of the output a
    // device error (in the app the output is always a speaker).
    left.context("leaving the room").map_err(|error| fail(ExitKind::File, error))
}

/// Watches without keeping the pictures (`--watch` alone: the statistics only).
struct Discard;

impl VideoSink for Discard {
    fn frame(&mut self, _identity: &str, _index: u64, _frame: &parley_livekit_ffi::ReceivedVideoFrame) {}
}

/// Opens the control socket unless disabled; failing to is a warning, not a reason to leave.
async fn open_control_socket(
    wanted: Option<&str>,
    requests: mpsc::Sender<control_socket::ControlRequest>,
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
