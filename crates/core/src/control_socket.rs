//! The local control socket (`parley ctl ptt-start`): one [`Control`] line in, `ok` or
//! `error: …` out. The running `parley join` or desktop app listens; any window manager or
//! script can bind a key to it — the portable answer to Wayland having no global key grabs.
//!
//! [`ControlSocket::listen`] takes where to forward requests, so that the CLI (one session) and
//! the app (a [`crate::client::Client`]) answer the same protocol.
//!
//! The transport is per OS behind this facade: a Unix socket in a private directory (`unix`:
//! Linux, macOS), a named pipe that refuses remote clients (`windows`). The protocol
//! ([`serve`]) is shared.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
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
    #[error(
        "{0} is not a private directory of yours (another user may have created it to receive your commands); \
         remove it or set XDG_RUNTIME_DIR"
    )]
    NotPrivate(PathBuf),
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

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;

pub use platform::ControlSocket;

/// Where `parley join`, the app and `parley ctl` meet by default: on Unix
/// `$XDG_RUNTIME_DIR/parley/control.sock`, else a per-user directory in the temp dir; on Windows
/// the named pipe `\\.\pipe\parley-<user>-control`.
pub fn default_socket() -> PathBuf {
    platform::default_socket()
}

/// Sends one command to whatever listens on `socket` and returns its answer (`ok`).
///
/// Errors: [`ControlSocketError::Parse`] for a bad line, [`ControlSocketError::NotRunning`],
/// [`ControlSocketError::Refused`] with the listener's message; on Unix
/// [`ControlSocketError::NotPrivate`] for a socket in a directory others can enter.
pub async fn send(socket: &Path, line: &str) -> Result<String, ControlSocketError> {
    let control: Control = line.parse()?;
    let stream = platform::connect(socket).await?;
    let (reader, mut writer) = tokio::io::split(stream);
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

/// Answers one client: a line in, `ok` or `error: …` out, until it hangs up.
async fn serve(stream: impl AsyncRead + AsyncWrite, requests: mpsc::Sender<ControlRequest>) {
    let (reader, mut writer) = tokio::io::split(stream);
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

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

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

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A directory of another user: root's `/tmp` for an ordinary user; for root (CI), a new
    /// directory given to `nobody`.
    fn foreign_dir(scratch: &Path) -> PathBuf {
        if rustix::process::geteuid().is_root() {
            let dir = scratch.join("theirs");
            std::fs::create_dir(&dir).expect("mkdir");
            set_mode(&dir, 0o700);
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("root gives it to nobody");
            dir
        } else {
            PathBuf::from("/tmp")
        }
    }

    #[tokio::test]
    async fn a_directory_of_another_user_is_refused_by_listener_and_sender() {
        let scratch = tempfile::tempdir().expect("scratch");
        let theirs = foreign_dir(scratch.path()).join("control.sock");
        let (requests, _received) = mpsc::channel(1);
        let listened = ControlSocket::listen(&theirs, requests).await;
        assert!(matches!(listened, Err(ControlSocketError::NotPrivate(_))), "listen: {:?}", listened.err());
        let sent = send(&theirs, "mute").await;
        let error = sent.expect_err("send refuses");
        assert!(matches!(error, ControlSocketError::NotPrivate(_)), "send: {error}");
        assert!(error.to_string().contains("XDG_RUNTIME_DIR"), "says what to do: {error}");
    }

    #[tokio::test]
    async fn a_loose_directory_of_ours_is_tightened_by_the_listener_and_refused_by_the_sender() {
        let scratch = tempfile::tempdir().expect("scratch");
        let dir = scratch.path().join("parley-me");
        std::fs::create_dir(&dir).expect("mkdir");
        set_mode(&dir, 0o777);
        let socket = dir.join("control.sock");
        let refused = send(&socket, "mute").await.expect_err("a world-writable directory is not trusted");
        assert!(matches!(refused, ControlSocketError::NotPrivate(_)), "{refused}");

        let (requests, mut received) = mpsc::channel(1);
        let _listening = ControlSocket::listen(&socket, requests).await.expect("listen");
        let mode = std::fs::metadata(&dir).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the listener made its directory private");
        let answer = tokio::spawn(async move { send(&socket, "mute").await });
        let request = received.recv().await.expect("the command arrives");
        assert_eq!(request.control, Control::Mute);
        request.reply.send(Ok(())).expect("reply");
        assert_eq!(answer.await.expect("join").expect("answered"), "ok");
    }
}
