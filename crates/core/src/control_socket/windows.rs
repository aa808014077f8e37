//! The control socket on Windows: a named pipe (`\\.\pipe\parley-<user>-control`) that refuses
//! remote clients. The pipe's default security lets only its creator (and administrators and
//! the system) write to it, so another user cannot send us commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions};
use tokio::sync::mpsc;

use super::{ControlRequest, ControlSocketError, serve};

/// `ERROR_PIPE_BUSY`: every instance of the pipe is serving another client.
const PIPE_BUSY: i32 = 231;
/// How long a client waits for a busy listener to open another instance.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// `\\.\pipe\parley-<user>-control`.
pub(super) fn default_socket() -> PathBuf {
    let user = std::env::var("USERNAME").unwrap_or_else(|_| "user".into());
    let user: String = user.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    PathBuf::from(format!(r"\\.\pipe\parley-{user}-control"))
}

/// A listening named pipe; the task stops (and the pipe goes) on drop.
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    /// Listens on the pipe `path` and forwards each command to `requests`. A pipe another
    /// process already serves is [`ControlSocketError::InUse`]. Call from a tokio runtime.
    pub async fn listen(
        path: &Path,
        requests: mpsc::Sender<ControlRequest>,
    ) -> Result<ControlSocket, ControlSocketError> {
        // A pipe that answers is served by another Parley. (Creating the first instance of a
        // name that exists is refused too, but Wine does not enforce that.)
        match ClientOptions::new().open(path) {
            Ok(_) => return Err(ControlSocketError::InUse(path.to_path_buf())),
            Err(error) if error.raw_os_error() == Some(PIPE_BUSY) => {
                return Err(ControlSocketError::InUse(path.to_path_buf()));
            }
            Err(_) => {}
        }
        let first = instance(path, true).map_err(|source| match source.kind() {
            // The first instance of a name that exists is refused.
            std::io::ErrorKind::PermissionDenied => ControlSocketError::InUse(path.to_path_buf()),
            _ => ControlSocketError::Io { action: "listening on", path: path.to_path_buf(), source },
        })?;
        let name = path.to_path_buf();
        let task = tokio::spawn(async move {
            let mut server = first;
            loop {
                if server.connect().await.is_err() {
                    return;
                }
                // The next client needs an instance of its own before this one is handed over.
                let next = match instance(&name, false) {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::warn!(%error, "the control pipe cannot take more clients");
                        return;
                    }
                };
                tokio::spawn(serve(std::mem::replace(&mut server, next), requests.clone()));
            }
        });
        Ok(ControlSocket { path: path.to_path_buf(), task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn instance(path: &Path, first: bool) -> std::io::Result<NamedPipeServer> {
    ServerOptions::new().first_pipe_instance(first).reject_remote_clients(true).create(path)
}

/// Connects to the listener on the pipe `socket`, waiting a little while it is busy.
pub(super) async fn connect(socket: &Path) -> Result<NamedPipeClient, ControlSocketError> {
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        match ClientOptions::new().open(socket) {
            Ok(client) => return Ok(client),
            Err(error) if error.raw_os_error() == Some(PIPE_BUSY) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(source) => return Err(ControlSocketError::NotRunning { path: socket.to_path_buf(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Control;
    use crate::control_socket::send;

    #[tokio::test]
    async fn a_command_reaches_the_pipe_listener_and_a_second_listener_is_refused() {
        let path = PathBuf::from(format!(r"\\.\pipe\parley-test-{}", std::process::id()));
        let (requests, mut received) = mpsc::channel(4);
        let socket = ControlSocket::listen(&path, requests).await.expect("listening");
        let answering = tokio::spawn(async move {
            let first = received.recv().await.expect("a first request");
            assert_eq!(first.control, Control::PttStart);
            first.reply.send(Ok(())).expect("answering");
            let second = received.recv().await.expect("a second request");
            second.reply.send(Err("you are not in a call".into())).expect("answering");
        });
        assert_eq!(send(&path, "ptt-start").await.expect("answered"), "ok");
        let refused = send(&path, "toggle-mute").await.expect_err("refused");
        assert!(refused.to_string().contains("not in a call"), "{refused}");
        answering.await.expect("the answering task");
        let second = ControlSocket::listen(&path, mpsc::channel(1).0).await;
        assert!(
            matches!(second, Err(ControlSocketError::InUse(_))),
            "a live pipe is not taken over: {:?}",
            second.as_ref().map(ControlSocket::path)
        );
        drop(socket);
        let gone = send(&path, "mute").await.expect_err("nobody listens");
        assert!(matches!(gone, ControlSocketError::NotRunning { .. }), "{gone}");
    }

    #[test]
    fn the_default_pipe_is_per_user() {
        let pipe = default_socket();
        assert!(pipe.to_string_lossy().starts_with(r"\\.\pipe\parley-"), "{}", pipe.display());
    }
}
