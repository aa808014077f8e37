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

/// Whether `dir` belongs to the effective user.
#[cfg(unix)]
fn is_ours(dir: &Path) -> Result<bool, ControlSocketError> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = std::fs::symlink_metadata(dir).map_err(|source| ControlSocketError::Io {
        action: "checking",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(metadata.uid() == rustix::process::geteuid().as_raw())
}

/// `dir` is a real directory (not a link), ours, and closed to group and others (0700).
///
/// Errors: [`ControlSocketError::NotPrivate`], or `Io` when it cannot be read.
#[cfg(unix)]
fn ensure_private(dir: &Path) -> Result<(), ControlSocketError> {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = std::fs::symlink_metadata(dir).map_err(|source| ControlSocketError::Io {
        action: "checking",
        path: dir.to_path_buf(),
        source,
    })?;
    let private = metadata.is_dir() && is_ours(dir)? && metadata.mode() & 0o077 == 0;
    if private { Ok(()) } else { Err(ControlSocketError::NotPrivate(dir.to_path_buf())) }
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
            parley_control_plane::profile::create_private_dir(dir).map_err(io("creating", dir))?;
            // Ours but loose (an older version, a umask): tighten it. Another user's: refused.
            if is_ours(dir)? {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io("restricting", dir))?;
            }
            ensure_private(dir)?;
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
    // Only to a listener in a directory of ours that nobody else can enter: the fallback in
    // the shared temp dir could have been created by another user, who would get our commands.
    if let Some(dir) = socket.parent()
        && dir.exists()
    {
        ensure_private(dir)?;
    }
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
