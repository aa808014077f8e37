//! Control commands for a running `parley join`: read from its stdin, one per line, or sent to
//! its local socket by `parley ctl ptt-start` ([`parley_core::control_socket`], which the
//! desktop app answers too).

use std::path::PathBuf;

use anyhow::Context as _;
use parley_core::Control;
use parley_core::control_socket::{self, ControlRequest};
use tokio::sync::{mpsc, oneshot};

use crate::exit::{ExitKind, Failure, fail};

/// `parley ctl`: sends `command` to the session listening on `socket` (default: the one `parley
/// join` opens) and prints its answer. No session listening exits as [`ExitKind::Unreachable`].
pub fn send(socket: Option<PathBuf>, command: &[String]) -> Result<(), Failure> {
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

/// Reads commands from stdin until it closes. A line that does not parse, or a command the
/// session refuses, is reported on stderr and the next line is read.
///
/// A plain thread rather than a tokio task: a read blocked on an open pipe would otherwise hold
/// up the runtime's shutdown, and with it the process's exit.
pub fn read_stdin(requests: mpsc::Sender<ControlRequest>) {
    let reader = std::thread::Builder::new().name("control-stdin".into()).spawn(move || {
        for line in std::io::BufRead::lines(std::io::stdin().lock()) {
            let Ok(line) = line else { return };
            if line.trim().is_empty() {
                continue;
            }
            let control = match line.parse::<Control>() {
                Ok(control) => control,
                Err(error) => {
                    eprintln!("parley: {error}");
                    continue;
                }
            };
            let (reply, answer) = oneshot::channel();
            if requests.blocking_send(ControlRequest { control, reply }).is_err() {
                return;
            }
            if let Ok(Err(message)) = answer.blocking_recv() {
                eprintln!("parley: {line}: {message}");
            }
        }
    });
    if let Err(error) = reader {
        eprintln!("parley: warning: cannot read commands from stdin: {error}");
    }
}
