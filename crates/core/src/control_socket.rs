//! The local control socket (`parley ctl ptt-start`): one [`Control`] line in, `ok` or
//! `error: …` out. The running `parley join` or desktop app listens; any window manager or
//! script can bind a key to it — the portable answer to Wayland having no global key grabs.
//!
//! [`ControlSocket::listen`] takes where to forward requests, so that the CLI (one session) and
//! the app (a [`crate::client::Client`]) answer the same protocol.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::Control;

/// A parsed command and where its answer (`Ok` or the error's sentence) goes.
pub struct ControlRequest {
    pub control: Control,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    #[error("another parley already listens on {0}")]
    InUse(PathBuf),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("no running parley listens on {path}: {source}")]
    NotRunning { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Refused(String),
    #[error("the session closed the connection")]
    Closed,
    #[error(transparent)]
    Parse(#[from] crate::control::ParseControlError),
}

/// The socket path `parley join`, the app and `parley ctl` agree on:
/// `$XDG_RUNTIME_DIR/parley/control.sock`, else a per-user directory in the temp dir.
pub fn default_socket() -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR").filter(|value| !value.is_empty()).map(PathBuf::from);
    match base {
        Some(runtime) => runtime.join("parley").join("control.sock"),
        None => {
            let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
            std::env::temp_dir().join(format!("parley-{user}")).join("control.sock")
        }
    }
}

/// A listening control socket; the file is removed and the task stopped on drop.
#[cfg(unix)]
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(unix)]
impl ControlSocket {
    /// Listens on `path` (creating its directory, owner-only) and forwards each command to
    /// `requests`. A socket left by a dead process is replaced; a live one is
    /// [`ControlSocketError::InUse`]. Call from a tokio runtime.
    pub async fn listen(
        path: &Path,
        requests: mpsc::Sender<ControlRequest>,
    ) -> Result<ControlSocket, ControlSocketError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ControlSocketError::Io { action, path, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("restricting", dir))?;
        }
        if path.exists() {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(ControlSocketError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io("removing the stale", path))?;
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(io("listening on", path))?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, requests.clone()));
            }
        });
        Ok(ControlSocket { path: path.to_path_buf(), task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::debug!(%error, "control socket already gone");
        }
    }
}

/// Answers one client: a line in, `ok` or `error: …` out, until it hangs up.
#[cfg(unix)]
async fn serve(stream: tokio::net::UnixStream, requests: mpsc::Sender<ControlRequest>) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match line.parse::<Control>() {
            Ok(control) => {
                let (reply, answered) = oneshot::channel();
                let ended = || "error: the session has ended".to_string();
                if requests.send(ControlRequest { control, reply }).await.is_err() {
                    ended()
                } else {
                    match answered.await {
                        Ok(Ok(())) => "ok".to_string(),
                        Ok(Err(message)) => format!("error: {}", message.replace('\n', " ")),
                        Err(_) => ended(),
                    }
                }
            }
            Err(error) => format!("error: {error}"),
        };
        if writer.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends one command to whatever listens on `socket` and returns its answer (`ok`).
///
/// Errors: [`ControlSocketError::Parse`] for a bad line, [`ControlSocketError::NotRunning`],
/// [`ControlSocketError::Refused`] with the listener's message.
#[cfg(unix)]
pub async fn send(socket: &Path, line: &str) -> Result<String, ControlSocketError> {
    let control: Control = line.parse()?;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ControlSocketError::NotRunning { path: socket.to_path_buf(), source })?;
    let (reader, mut writer) = stream.into_split();
    let io = |source| ControlSocketError::Io { action: "talking to", path: socket.to_path_buf(), source };
    writer.write_all(format!("{control}\n").as_bytes()).await.map_err(io)?;
    let mut answer = String::new();
    BufReader::new(reader).read_line(&mut answer).await.map_err(io)?;
    let answer = answer.trim().to_string();
    match answer.strip_prefix("error: ") {
        Some(error) => Err(ControlSocketError::Refused(error.to_string())),
        None if answer.is_empty() => Err(ControlSocketError::Closed),
        None => Ok(answer),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_reaches_the_listener_and_its_answer_comes_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("parley").join("control.sock");
        let (requests, mut received) = mpsc::channel(4);
        let socket = ControlSocket::listen(&path, requests).await.expect("listening");
        let answering = tokio::spawn(async move {
            let first = received.recv().await.expect("a first request");
            assert_eq!(first.control, Control::PttStart, "the first command should be ptt-start");
            first.reply.send(Ok(())).expect("answering");
            let second = received.recv().await.expect("a second request");
            second.reply.send(Err("you are not in a call".into())).expect("answering");
        });
        assert_eq!(send(&path, "ptt-start").await.expect("ptt-start should be answered"), "ok", "ptt-start is ok");
        let refused = send(&path, "toggle-mute").await.expect_err("the second command is refused");
        assert!(refused.to_string().contains("not in a call"), "the refusal carries the message: {refused}");
        answering.await.expect("the answering task");
        let second = ControlSocket::listen(&path, mpsc::channel(1).0).await;
        assert!(matches!(second, Err(ControlSocketError::InUse(_))), "a live socket is not replaced");
        drop(socket);
        assert!(!path.exists(), "the socket file goes with the listener");
    }
}
