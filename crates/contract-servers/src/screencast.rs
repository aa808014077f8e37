//! The desktop's ScreenCast portal, as `xdg-desktop-portal` serves it on a session bus: the
//! service `org.freedesktop.portal.Desktop`, the object `/org/freedesktop/portal/desktop`, the
//! interface `org.freedesktop.portal.ScreenCast` (version 4), with its `Request` and `Session`
//! objects. It is how a Wayland app shares a screen; the real backends (GNOME's, KDE's,
//! wlroots') need their compositors, hence this stand-in.
//!
//! It checks what the real frontend checks: requests and sessions live under the caller's
//! sender path, a session belongs to the connection that created it, sources are selected once
//! and before `Start`, the source types and cursor mode are among the available ones, and
//! `OpenPipeWireRemote` only answers a started session. Results arrive in the `Response`
//! signal of the request object, after the method returned its path.
//!
//! The test plays the desktop: [`Grant`] is the PipeWire node `Start` hands over (a stream the
//! test feeds) and the PipeWire socket `OpenPipeWireRemote` connects to;
//! [`ScreenCastPortal::refuse_next`] makes the user cancel the next dialog, and
//! [`ScreenCastPortal::end_sessions`] stops every share from the desktop's side (`Closed`).

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use zbus::message::Header;
use zbus::zvariant::{self, ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, fdo, interface};

use crate::portal::{DESKTOP_PATH, object_path, respond, respond_with, sender, token};

/// Monitor and window, as `AvailableSourceTypes` says.
const SOURCE_TYPES: u32 = 1 | 2;
/// Hidden, embedded and metadata, as `AvailableCursorModes` says.
const CURSOR_MODES: u32 = 1 | 2 | 4;

/// What the desktop grants when the user confirms.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The PipeWire node of the stream.
    pub node: u32,
    pub width: i32,
    pub height: i32,
    /// The PipeWire daemon's socket (`$XDG_RUNTIME_DIR/pipewire-0`).
    pub pipewire_socket: PathBuf,
}

/// What an app asked for in one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// `SelectSources`' `types` (1 monitor, 2 window).
    pub types: Option<u32>,
    pub cursor_mode: Option<u32>,
    pub started: bool,
    pub remotes_opened: usize,
}

#[derive(Debug, Default)]
struct CastSession {
    owner: String,
    asked: Asked,
    selected: bool,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<OwnedObjectPath, CastSession>,
    /// Every session ever created, in order, as last seen (closed ones too).
    history: Vec<(OwnedObjectPath, Asked)>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// The caller's own session, or the error the frontend gives for anyone else's.
    fn owned(&mut self, path: &ObjectPath<'_>, owner: &str) -> fdo::Result<&mut CastSession> {
        self.sessions
            .get_mut(&OwnedObjectPath::from(path.to_owned()))
            .filter(|session| session.owner == owner)
            .ok_or_else(|| fdo::Error::AccessDenied("invalid session".into()))
    }

    fn remember(&mut self, path: &OwnedObjectPath) {
        if let Some(session) = self.sessions.get(path)
            && let Some(entry) = self.history.iter_mut().find(|(seen, _)| seen == path)
        {
            entry.1 = session.asked.clone();
        }
    }
}

/// The running stand-in. Dropping it leaves the bus.
pub struct ScreenCastPortal {
    runtime: tokio::runtime::Runtime,
    connection: Connection,
    state: Shared,
    refuse: Arc<AtomicBool>,
}

impl ScreenCastPortal {
    /// Connects to the session bus at `address` and takes the portal's name there.
    pub fn start(address: &str, grant: Grant) -> Result<ScreenCastPortal, zbus::Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|error| zbus::Error::Failure(format!("a runtime for the portal: {error}")))?;
        let state = Shared::default();
        let refuse = Arc::new(AtomicBool::new(false));
        let portal = Portal { state: state.clone(), grant, refuse: refuse.clone() };
        let connection = runtime.block_on(async move {
            let connection = zbus::connection::Builder::address(address)?.build().await?;
            connection.object_server().at(DESKTOP_PATH, portal).await?;
            connection.request_name("org.freedesktop.portal.Desktop").await?;
            Ok::<_, zbus::Error>(connection)
        })?;
        Ok(ScreenCastPortal { runtime, connection, state, refuse })
    }

    /// The user will cancel the next `Start` dialog.
    pub fn refuse_next(&self) {
        self.refuse.store(true, Ordering::SeqCst);
    }

    /// What each session ever created asked for, oldest first.
    pub fn sessions(&self) -> Vec<Asked> {
        let mut state = lock(&self.state);
        let open: Vec<OwnedObjectPath> = state.sessions.keys().cloned().collect();
        for path in &open {
            state.remember(path);
        }
        state.history.iter().map(|(_, asked)| asked.clone()).collect()
    }

    /// Sessions still open.
    pub fn open_sessions(&self) -> usize {
        lock(&self.state).sessions.len()
    }

    /// The desktop ends every share (its "stop sharing" indicator): each open session is closed
    /// and its owner gets `Closed`. Returns how many were ended.
    pub fn end_sessions(&self) -> Result<usize, zbus::Error> {
        let ended: Vec<(OwnedObjectPath, String)> = {
            let mut state = lock(&self.state);
            let paths: Vec<OwnedObjectPath> = state.sessions.keys().cloned().collect();
            for path in &paths {
                state.remember(path);
            }
            state.sessions.drain().map(|(path, session)| (path, session.owner)).collect()
        };
        self.runtime.block_on(async {
            for (path, owner) in &ended {
                let details: HashMap<&str, Value<'_>> = HashMap::new();
                self.connection
                    .emit_signal(Some(owner.as_str()), path, "org.freedesktop.portal.Session", "Closed", &(details,))
                    .await?;
                self.connection.object_server().remove::<CastSessionObject, _>(path).await?;
            }
            Ok(ended.len())
        })
    }
}

fn value<'a>(value: impl Into<Value<'a>>) -> fdo::Result<OwnedValue> {
    OwnedValue::try_from(value.into()).map_err(|error| fdo::Error::Failed(error.to_string()))
}

/// A `u` option, if present; a wrong type is an error, as in the real portal.
fn u32_option(options: &HashMap<String, OwnedValue>, key: &str) -> fdo::Result<Option<u32>> {
    options
        .get(key)
        .map(|value| u32::try_from(value).map_err(|_| fdo::Error::InvalidArgs(format!("option {key:?} must be a u"))))
        .transpose()
}

struct Portal {
    state: Shared,
    grant: Grant,
    refuse: Arc<AtomicBool>,
}

#[interface(name = "org.freedesktop.portal.ScreenCast")]
impl Portal {
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        4
    }

    #[zbus(property)]
    fn available_source_types(&self) -> u32 {
        SOURCE_TYPES
    }

    #[zbus(property)]
    fn available_cursor_modes(&self) -> u32 {
        CURSOR_MODES
    }

    async fn create_session(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<OwnedObjectPath> {
        let owner = sender(&header)?;
        let request = object_path("request", &owner, &token(&options, "handle_token")?)?;
        let session = object_path("session", &owner, &token(&options, "session_handle_token")?)?;
        {
            let mut state = lock(&self.state);
            if state.sessions.contains_key(&session) {
                return Err(fdo::Error::InvalidArgs(format!("session {} exists", session.as_str())));
            }
            state.sessions.insert(session.clone(), CastSession { owner: owner.clone(), ..CastSession::default() });
            state.history.push((session.clone(), Asked::default()));
        }
        let served = CastSessionObject { state: self.state.clone(), path: session.clone() };
        connection.object_server().at(&session, served).await?;
        let handle = value(session.as_str().to_string())?;
        respond(connection, owner, request.clone(), HashMap::from([("session_handle".to_string(), handle)]));
        Ok(request)
    }

    async fn select_sources(
        &self,
        session_handle: ObjectPath<'_>,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<OwnedObjectPath> {
        let owner = sender(&header)?;
        let request = object_path("request", &owner, &token(&options, "handle_token")?)?;
        let types = u32_option(&options, "types")?;
        let cursor_mode = u32_option(&options, "cursor_mode")?;
        if types.is_some_and(|types| types == 0 || types & !SOURCE_TYPES != 0) {
            return Err(fdo::Error::InvalidArgs(format!("unsupported source types {types:?}")));
        }
        if cursor_mode.is_some_and(|mode| mode.count_ones() != 1 || mode & !CURSOR_MODES != 0) {
            return Err(fdo::Error::InvalidArgs(format!("unsupported cursor mode {cursor_mode:?}")));
        }
        {
            let mut state = lock(&self.state);
            let session = state.owned(&session_handle, &owner)?;
            if session.selected || session.asked.started {
                return Err(fdo::Error::Failed("invalid state: sources are already selected".into()));
            }
            session.selected = true;
            session.asked.types = types;
            session.asked.cursor_mode = cursor_mode;
        }
        respond(connection, owner, request.clone(), HashMap::new());
        Ok(request)
    }

    async fn start(
        &self,
        session_handle: ObjectPath<'_>,
        _parent_window: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<OwnedObjectPath> {
        let owner = sender(&header)?;
        let request = object_path("request", &owner, &token(&options, "handle_token")?)?;
        let types = {
            let mut state = lock(&self.state);
            let session = state.owned(&session_handle, &owner)?;
            if !session.selected || session.asked.started {
                return Err(fdo::Error::Failed("invalid state: select sources once, then start once".into()));
            }
            session.asked.types.unwrap_or(1)
        };
        if self.refuse.swap(false, Ordering::SeqCst) {
            respond_with(connection, owner, request.clone(), 1, HashMap::new());
            return Ok(request);
        }
        {
            let mut state = lock(&self.state);
            state.owned(&session_handle, &owner)?.asked.started = true;
        }
        // One stream of the first type asked for, as a single-choice dialog gives.
        let source_type = if types & 1 != 0 { 1u32 } else { 2 };
        let properties = HashMap::from([
            ("source_type".to_string(), value(source_type)?),
            ("size".to_string(), value((self.grant.width, self.grant.height))?),
        ]);
        let streams = value(vec![(self.grant.node, properties)])?;
        respond(connection, owner, request.clone(), HashMap::from([("streams".to_string(), streams)]));
        Ok(request)
    }

    async fn open_pipe_wire_remote(
        &self,
        session_handle: ObjectPath<'_>,
        _options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<zvariant::OwnedFd> {
        let owner = sender(&header)?;
        {
            let mut state = lock(&self.state);
            let session = state.owned(&session_handle, &owner)?;
            if !session.asked.started {
                return Err(fdo::Error::AccessDenied("the session was not started".into()));
            }
            session.asked.remotes_opened += 1;
        }
        let remote = UnixStream::connect(&self.grant.pipewire_socket).map_err(|error| {
            fdo::Error::Failed(format!("cannot reach PipeWire at {}: {error}", self.grant.pipewire_socket.display()))
        })?;
        Ok(zvariant::OwnedFd::from(std::os::fd::OwnedFd::from(remote)))
    }
}

/// `org.freedesktop.portal.Session` of one screen-cast session: `Close` ends it.
struct CastSessionObject {
    state: Shared,
    path: OwnedObjectPath,
}

#[interface(name = "org.freedesktop.portal.Session")]
impl CastSessionObject {
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        1
    }

    async fn close(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> fdo::Result<()> {
        let caller = sender(&header)?;
        {
            let mut state = lock(&self.state);
            let owned = state.sessions.get(&self.path).is_some_and(|session| session.owner == caller);
            if !owned {
                return Err(fdo::Error::AccessDenied("not your session".into()));
            }
            state.remember(&self.path);
            state.sessions.remove(&self.path);
        }
        server.remove::<CastSessionObject, _>(&self.path).await?;
        Ok(())
    }
}
