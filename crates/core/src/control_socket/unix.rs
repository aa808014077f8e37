//! The control socket on Unix (Linux, macOS): a Unix socket in a directory only we can enter.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::{ControlRequest, ControlSocketError, serve};

/// `$XDG_RUNTIME_DIR/parley/control.sock`, else a per-user directory in the temp dir (on macOS
/// the temp dir is the user's own).
pub(super) fn default_socket() -> PathBuf {
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
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

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

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::debug!(%error, "control socket already gone");
        }
    }
}

/// Connects to the listener on `socket`, only in a directory of ours that nobody else can enter:
/// the fallback in the shared temp dir could have been created by another user, who would get
/// our commands.
pub(super) async fn connect(socket: &Path) -> Result<tokio::net::UnixStream, ControlSocketError> {
    if let Some(dir) = socket.parent()
        && dir.exists()
    {
        ensure_private(dir)?;
    }
    tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ControlSocketError::NotRunning { path: socket.to_path_buf(), source })
}
