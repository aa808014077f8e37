//! Control commands for a running `parley join` from stdin, one per line. The same commands
//! arrive over the local socket (`parley ctl ptt-start`, [`parley_core::control_socket`]), which
//! the desktop app answers too.

use parley_core::Control;
use parley_core::control_socket::ControlRequest;
use tokio::sync::{mpsc, oneshot};

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
