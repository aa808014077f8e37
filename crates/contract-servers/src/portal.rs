//! The desktop's GlobalShortcuts portal, as `xdg-desktop-portal` serves it on a session bus: the
//! service `org.freedesktop.portal.Desktop`, the object `/org/freedesktop/portal/desktop`, the
//! interface `org.freedesktop.portal.GlobalShortcuts` (version 1), with its `Request` and
//! `Session` objects. Wayland compositors give apps no key grabs; this portal is how a Wayland
//! app gets global shortcuts, and no portal backend that implements it can run on a test
//! machine (KDE's and GNOME's need their desktops), hence this stand-in.
//!
//! It checks what the real frontend checks: requests and sessions live under the caller's
//! sender path (`…/request/<sender>/<token>`, `…/session/<sender>/<token>`), a session belongs to
//! the connection that created it, shortcuts are bound once per session with unique non-empty
//! ids, and a closed session gets nothing. Results arrive in the `Response` signal of the
//! request object, after the method returned its path, as the real portal does it.
//!
//! The test plays the user at the keyboard: [`ShortcutsPortal::press`] and
//! [`ShortcutsPortal::release`] emit `Activated` / `Deactivated` for a bound shortcut id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, fdo, interface};

pub(crate) const DESKTOP_PATH: &str = "/org/freedesktop/portal/desktop";
const INTERFACE: &str = "org.freedesktop.portal.GlobalShortcuts";

/// A shortcut an app bound, as it asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundShortcut {
    pub id: String,
    pub description: String,
    /// In the shortcuts specification's syntax (`CTRL+SHIFT+p`), when the app suggested one.
    pub preferred_trigger: Option<String>,
}

#[derive(Debug, Default)]
struct PortalSession {
    /// The unique bus name of the connection that created it.
    owner: String,
    /// `None` until `BindShortcuts`.
    bound: Option<Vec<BoundShortcut>>,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<OwnedObjectPath, PortalSession>,
    /// Sessions ever created and closed, for tests that check a rebind closed the old one.
    closed: usize,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running stand-in. Dropping it leaves the bus.
pub struct ShortcutsPortal {
    runtime: tokio::runtime::Runtime,
    connection: Connection,
    state: Shared,
}

impl ShortcutsPortal {
    /// Connects to the session bus at `address` and takes the portal's name there.
    pub fn start(address: &str) -> Result<ShortcutsPortal, zbus::Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|error| zbus::Error::Failure(format!("a runtime for the portal: {error}")))?;
        let state = Shared::default();
        let served = state.clone();
        let connection = runtime.block_on(async move {
            let connection = zbus::connection::Builder::address(address)?.build().await?;
            connection.object_server().at(DESKTOP_PATH, Portal { state: served }).await?;
            connection.request_name("org.freedesktop.portal.Desktop").await?;
            Ok::<_, zbus::Error>(connection)
        })?;
        Ok(ShortcutsPortal { runtime, connection, state })
    }

    /// What each open session bound (sessions that bound nothing yet are left out).
    pub fn bound(&self) -> Vec<Vec<BoundShortcut>> {
        lock(&self.state).sessions.values().filter_map(|session| session.bound.clone()).collect()
    }

    /// How many sessions were closed so far.
    pub fn closed_sessions(&self) -> usize {
        lock(&self.state).closed
    }

    /// The user pressed the keys of shortcut `id`: `Activated` to every open session that bound
    /// it. Returns how many sessions were told.
    pub fn press(&self, id: &str) -> Result<usize, zbus::Error> {
        self.emit("Activated", id)
    }

    /// …and let go: `Deactivated`.
    pub fn release(&self, id: &str) -> Result<usize, zbus::Error> {
        self.emit("Deactivated", id)
    }

    fn emit(&self, signal: &'static str, id: &str) -> Result<usize, zbus::Error> {
        let targets: Vec<(OwnedObjectPath, String)> = lock(&self.state)
            .sessions
            .iter()
            .filter(|(_, session)| session.bound.iter().flatten().any(|shortcut| shortcut.id == id))
            .map(|(path, session)| (path.clone(), session.owner.clone()))
            .collect();
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
        self.runtime.block_on(async {
            for (path, owner) in &targets {
                let options: HashMap<&str, Value<'_>> = HashMap::new();
                self.connection
                    .emit_signal(Some(owner.as_str()), DESKTOP_PATH, INTERFACE, signal, &(path, id, timestamp, options))
                    .await?;
            }
            Ok(targets.len())
        })
    }
}

/// `<prefix>/<sender without ':' and with '.' as '_'>/<token>`, as the frontend builds it.
pub(crate) fn object_path(prefix: &str, sender: &str, token: &str) -> fdo::Result<OwnedObjectPath> {
    let sender = sender.trim_start_matches(':').replace('.', "_");
    OwnedObjectPath::try_from(format!("{DESKTOP_PATH}/{prefix}/{sender}/{token}"))
        .map_err(|error| fdo::Error::InvalidArgs(format!("invalid token {token:?}: {error}")))
}

pub(crate) fn sender(header: &Header<'_>) -> fdo::Result<String> {
    header.sender().map(|sender| sender.to_string()).ok_or_else(|| fdo::Error::Failed("no sender".into()))
}

/// A string option, if present; a wrong type is an error, as in the real portal.
pub(crate) fn string_option(options: &HashMap<String, OwnedValue>, key: &str) -> fdo::Result<Option<String>> {
    options
        .get(key)
        .map(|value| {
            String::try_from(value.clone())
                .map_err(|_| fdo::Error::InvalidArgs(format!("option {key:?} must be a string")))
        })
        .transpose()
}

pub(crate) fn token(options: &HashMap<String, OwnedValue>, key: &str) -> fdo::Result<String> {
    let token = string_option(options, key)?.unwrap_or_else(|| format!("t{}", uuid::Uuid::new_v4().simple()));
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(fdo::Error::InvalidArgs(format!("invalid {key} {token:?}")));
    }
    Ok(token)
}

/// Sends `Response(0, results)` on `request` to `owner`, once the method's reply has left.
pub(crate) fn respond(
    connection: &Connection,
    owner: String,
    request: OwnedObjectPath,
    results: HashMap<String, OwnedValue>,
) {
    respond_with(connection, owner, request, 0, results);
}

/// Sends `Response(code, results)`: 0 granted, 1 cancelled by the user, 2 ended otherwise.
pub(crate) fn respond_with(
    connection: &Connection,
    owner: String,
    request: OwnedObjectPath,
    code: u32,
    results: HashMap<String, OwnedValue>,
) {
    let connection = connection.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let sent = connection
            .emit_signal(Some(owner.as_str()), &request, "org.freedesktop.portal.Request", "Response", &(code, results))
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, "the portal stand-in could not send a response");
        }
    });
}

struct Portal {
    state: Shared,
}

#[interface(name = "org.freedesktop.portal.GlobalShortcuts")]
impl Portal {
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        1
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
            state.sessions.insert(session.clone(), PortalSession { owner: owner.clone(), bound: None });
        }
        let served = SessionObject { state: self.state.clone(), path: session.clone() };
        connection.object_server().at(&session, served).await?;
        // The frontend answers with the session handle as a string (a historical mistake that
        // clients now expect).
        let handle = OwnedValue::try_from(Value::from(session.as_str().to_string()))
            .map_err(|error| fdo::Error::Failed(error.to_string()))?;
        respond(connection, owner, request.clone(), HashMap::from([("session_handle".to_string(), handle)]));
        Ok(request)
    }

    async fn bind_shortcuts(
        &self,
        session_handle: ObjectPath<'_>,
        shortcuts: Vec<(String, HashMap<String, OwnedValue>)>,
        _parent_window: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<OwnedObjectPath> {
        let owner = sender(&header)?;
        let request = object_path("request", &owner, &token(&options, "handle_token")?)?;
        let mut bound = Vec::new();
        for (id, details) in shortcuts {
            if id.is_empty() || bound.iter().any(|shortcut: &BoundShortcut| shortcut.id == id) {
                return Err(fdo::Error::InvalidArgs(format!("shortcut ids must be unique and non-empty, got {id:?}")));
            }
            let description = string_option(&details, "description")?
                .ok_or_else(|| fdo::Error::InvalidArgs(format!("shortcut {id:?} has no description")))?;
            let preferred_trigger = string_option(&details, "preferred_trigger")?;
            bound.push(BoundShortcut { id, description, preferred_trigger });
        }
        {
            let mut state = lock(&self.state);
            let session = state
                .sessions
                .get_mut(&OwnedObjectPath::from(session_handle.to_owned()))
                .filter(|session| session.owner == owner)
                .ok_or_else(|| fdo::Error::AccessDenied("invalid session".into()))?;
            if session.bound.is_some() {
                return Err(fdo::Error::Failed("invalid state: the session's shortcuts are bound already".into()));
            }
            session.bound = Some(bound.clone());
        }
        let described: Vec<(String, HashMap<String, OwnedValue>)> = bound
            .into_iter()
            .map(|shortcut| {
                let trigger = shortcut.preferred_trigger.unwrap_or_else(|| "unassigned".to_string());
                let value = |text: String| OwnedValue::try_from(Value::from(text)).expect("a string is a value");
                let details = HashMap::from([
                    ("description".to_string(), value(shortcut.description)),
                    ("trigger_description".to_string(), value(trigger)),
                ]);
                (shortcut.id, details)
            })
            .collect();
        let described =
            OwnedValue::try_from(Value::from(described)).map_err(|error| fdo::Error::Failed(error.to_string()))?;
        respond(connection, owner, request.clone(), HashMap::from([("shortcuts".to_string(), described)]));
        Ok(request)
    }
}

/// `org.freedesktop.portal.Session` of one session: `Close` ends it.
struct SessionObject {
    state: Shared,
    path: OwnedObjectPath,
}

#[interface(name = "org.freedesktop.portal.Session")]
impl SessionObject {
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
            state.sessions.remove(&self.path);
            state.closed += 1;
        }
        server.remove::<SessionObject, _>(&self.path).await?;
        Ok(())
    }
}
