//! `parley crowd`: a load generator, N participants in one process, each saying its own tone
//! (what LiveKit's `lk load-test` would do; that tool cannot be installed here).

use anyhow::Context as _;
use parley_audio::gate::TransmitMode;
use parley_audio::signal::Tone;
use parley_core::{Engine, JoinRequest, LibrarySearch, RoomOptions, Session};

use crate::args::CrowdArgs;
use crate::exit::{ExitKind, Failure, classify, fail};
use crate::stop;
use crate::token::mint;

/// Joins `count` speakers, each saying its own tone, and keeps them in the room until the
/// duration ends or Ctrl-C; then they all leave together.
pub async fn run(args: CrowdArgs) -> Result<(), Failure> {
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
            report_traffic: None,
            device_info: Vec::new(),
            watch: None,
            viewer: None,
            platform_audio: None,
        };
        let (session, mut events) =
            Session::join(engine, request).await.map_err(|error| classify(error, "joining the room"))?;
        // Nobody reads a crowd speaker's events, but unread they would pile up in the channel for
        // as long as the crowd runs (1.7 GB after 11 minutes of 10 speakers).
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        sessions.push((session, drain));
    }
    println!("crowd: {} speakers in room {}", sessions.len(), args.room);
    let deadline = stop::after(args.duration);
    tokio::select! {
        _ = stop::at(deadline) => {}
        signal = stop::signal() => signal.context("waiting for Ctrl-C").map_err(|error| fail(ExitKind::Failure, error))?,
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
