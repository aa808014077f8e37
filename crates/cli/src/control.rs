//! Control commands for a running `parley join`: one per line on stdin, or over a local socket
//! (`parley ctl ptt-start`), so that any window manager or script can drive push-to-talk, mute
//! and volume — the portable answer to Wayland having no global key grabs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use parley_core::Control;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// A parsed command and, for socket clients, where the answer goes.
pub struct ControlRequest {
    pub control: Control,
    pub reply: Option<oneshot::Sender<String>>,
}

/// The socket `parley join` listens on and `parley ctl` talks to by default.
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

/// Reads commands from stdin until it closes. Bad lines are reported on stderr and skipped.
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
            match line.parse::<Control>() {
                Ok(control) => {
                    if requests.blocking_send(ControlRequest { control, reply: None }).is_err() {
                        return;
                    }
                }
                Err(error) => eprintln!("parley: {error}"),
            }
        }
    });
    if let Err(error) = reader {
        eprintln!("parley: warning: cannot read commands from stdin: {error}");
    }
}

/// A listening control socket; the file is removed on drop.
#[cfg(unix)]
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(unix)]
impl ControlSocket {
    /// Listens on `path` (creating its directory, owner-only). A socket left by a dead process is
    /// replaced; one a live `parley` answers on is an error.
    pub async fn listen(path: &Path, requests: mpsc::Sender<ControlRequest>) -> Result<ControlSocket> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {}", dir.display()))?;
        }
        if path.exists() {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                bail!("another parley already listens on {}", path.display());
            }
            std::fs::remove_file(path).with_context(|| format!("removing the stale {}", path.display()))?;
        }
        let listener =
            tokio::net::UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, requests.clone()));
            }
        });
        Ok(ControlSocket { path: path.to_path_buf(), task })
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
                if requests.send(ControlRequest { control, reply: Some(reply) }).await.is_err() {
                    "error: the session has ended".to_string()
                } else {
                    answered.await.unwrap_or_else(|_| "error: the session has ended".to_string())
                }
            }
            Err(error) => format!("error: {error}"),
        };
        if writer.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// `parley ctl`: sends one command to a running `parley join` and prints its answer.
#[cfg(unix)]
pub async fn send(socket: &Path, line: &str) -> Result<String> {
    let control: Control = line.parse()?;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("no running parley listens on {}", socket.display()))?;
    let (reader, mut writer) = stream.into_split();
    writer.write_all(format!("{control}\n").as_bytes()).await.context("sending the command")?;
    let mut answer = String::new();
    BufReader::new(reader).read_line(&mut answer).await.context("reading the answer")?;
    let answer = answer.trim().to_string();
    match answer.strip_prefix("error: ") {
        Some(error) => bail!("{error}"),
        None if answer.is_empty() => bail!("the session closed the connection"),
        None => Ok(answer),
    }
}
