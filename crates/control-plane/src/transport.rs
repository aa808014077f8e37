//! Which connections may go unencrypted (issue 18 #2).
//!
//! A backend or LiveKit address in cleartext (`http://`, `ws://`) lets anyone on the path read
//! the join token, the forum key or the password, and change what the server says. Parley accepts
//! cleartext only where it cannot leave the machine (loopback: `127.0.0.0/8`, `::1`,
//! `localhost`) or where the profile says so (`insecure`, `parley profile add --insecure`, the
//! app's "Allow unencrypted connections" with its warning). Independently of that, a backend
//! reached over TLS never hands the call to a cleartext LiveKit address: an `https://` server
//! that answers with `ws://` is refused even for an insecure profile (the profile chose an
//! encrypted server; a downgrade is either a misconfiguration or an attack).
//!
//! [`check_server`] runs when a profile's adapter is built (saving a profile too);
//! [`GuardedPlane`] wraps every adapter [`crate::profile::open_plane`] builds and checks each
//! grant's LiveKit address with [`check_livekit`]; the CLI's `join --url` checks its own.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use url::Url;

use crate::plane::{
    BackendKind, Capabilities, ControlPlane, JoinGrant, ModerationAction, PlaneEvent, PlaneParticipant,
};
use crate::{PlaneError, RoomSummary, Secret};

/// Whether `url` is in cleartext (`http`, `ws`).
fn is_cleartext(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "ws")
}

/// Whether `url` is encrypted (`https`, `wss`).
fn is_encrypted(url: &Url) -> bool {
    matches!(url.scheme(), "https" | "wss")
}

/// Whether `url` names this machine: traffic to it never crosses a network.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(url::Host::Ipv6(address)) => IpAddr::V6(address).is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    }
}

/// What a user sees: the address without its path, query or credentials.
fn origin(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or_default()),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
    }
}

/// Checks the address a profile points at (its backend, or its LiveKit server for a self-hosted
/// profile). An address that does not parse is left to the adapter, which says what is wrong
/// with it.
///
/// Errors: [`PlaneError::InvalidInput`] for cleartext to another machine without `insecure`.
pub fn check_server(server: &str, insecure: bool) -> Result<(), PlaneError> {
    let Ok(url) = Url::parse(server.trim()) else {
        return Ok(());
    };
    if insecure || !is_cleartext(&url) || is_loopback(&url) {
        return Ok(());
    }
    let secure = if url.scheme() == "ws" { "wss://" } else { "https://" };
    Err(PlaneError::InvalidInput {
        message: format!(
            "{} is unencrypted: anyone on the network could read your sign-in and join tokens. Use \
             {secure} if the server offers it, or save the profile with --insecure (\"Allow \
             unencrypted connections\" in the app) if you accept that risk",
            origin(&url)
        ),
    })
}

/// Checks the LiveKit address a join hands out (`server`: the backend that handed it out, if
/// any; `None` when the user typed it).
///
/// Errors: [`PlaneError::InvalidInput`] for `ws://` to another machine without `insecure`, and
/// for `ws://` from an encrypted backend at all.
pub fn check_livekit(livekit: &str, server: Option<&str>, insecure: bool) -> Result<(), PlaneError> {
    let livekit = Url::parse(livekit.trim())
        .map_err(|error| PlaneError::InvalidInput { message: format!("the LiveKit address is not a URL ({error})") })?;
    if !is_cleartext(&livekit) || is_loopback(&livekit) {
        return Ok(());
    }
    let server = server.and_then(|server| Url::parse(server.trim()).ok());
    if let Some(server) = server.as_ref().filter(|server| is_encrypted(server)) {
        return Err(PlaneError::InvalidInput {
            message: format!(
                "{} (encrypted) sent the call to the unencrypted {}; Parley does not downgrade an \
                 encrypted connection (the server's LiveKit address should start with wss://)",
                origin(server),
                origin(&livekit)
            ),
        });
    }
    if insecure {
        return Ok(());
    }
    let advice = if server.is_some() {
        "the server's LiveKit address should start with wss://; if you accept the risk, save the profile with --insecure"
    } else {
        "use wss://, or add --insecure if you accept the risk"
    };
    Err(PlaneError::InvalidInput {
        message: format!(
            "the call's address {} is unencrypted: anyone on the network could read the join token and \
             listen in; {advice}",
            origin(&livekit)
        ),
    })
}

/// A LiveKit address as the signalling websocket URL: `https://` becomes `wss://` and `http://`
/// becomes `ws://` (backends hand out either form); `whose` names the backend in the error.
///
/// Errors: [`PlaneError::Malformed`] for any other scheme.
pub fn websocket_url(url: &str, whose: &str) -> Result<String, PlaneError> {
    let url = url.trim();
    if url.starts_with("wss://") || url.starts_with("ws://") {
        Ok(url.to_string())
    } else if let Some(rest) = url.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else if let Some(rest) = url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else {
        Err(PlaneError::Malformed { detail: format!("{whose} LiveKit URL {url:?} is not a ws(s) or http(s) URL") })
    }
}

/// An adapter whose join grants pass [`check_livekit`] before anyone connects with them.
pub struct GuardedPlane {
    inner: Arc<dyn ControlPlane>,
    server: String,
    insecure: bool,
}

impl GuardedPlane {
    pub fn new(inner: Arc<dyn ControlPlane>, server: &str, insecure: bool) -> GuardedPlane {
        GuardedPlane { inner, server: server.to_string(), insecure }
    }

    fn checked(&self, grant: JoinGrant) -> Result<JoinGrant, PlaneError> {
        check_livekit(&grant.url, Some(&self.server), self.insecure)?;
        Ok(grant)
    }
}

// Every method forwards; only the grants are looked at.
#[async_trait]
impl ControlPlane for GuardedPlane {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn check_credentials(&self) -> Result<bool, PlaneError> {
        self.inner.check_credentials().await
    }

    async fn register(&self, display_name: &str) -> Result<(), PlaneError> {
        self.inner.register(display_name).await
    }

    fn obtained_secrets(&self) -> Vec<(&'static str, Secret)> {
        self.inner.obtained_secrets()
    }

    async fn list_rooms(&self) -> Result<Vec<RoomSummary>, PlaneError> {
        self.inner.list_rooms().await
    }

    async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
        self.checked(self.inner.join(room).await?)
    }

    async fn heartbeat(&self, grant: &JoinGrant) -> Result<(), PlaneError> {
        self.inner.heartbeat(grant).await
    }

    async fn refresh(&self, grant: &JoinGrant) -> Result<JoinGrant, PlaneError> {
        self.checked(self.inner.refresh(grant).await?)
    }

    async fn leave(&self, grant: &JoinGrant) -> Result<(), PlaneError> {
        self.inner.leave(grant).await
    }

    async fn leave_room(&self, room_id: &str) -> Result<(), PlaneError> {
        self.inner.leave_room(room_id).await
    }

    async fn open_invite(&self, invite: &str) -> Result<RoomSummary, PlaneError> {
        self.inner.open_invite(invite).await
    }

    async fn participants(&self, grant: &JoinGrant) -> Result<Vec<PlaneParticipant>, PlaneError> {
        self.inner.participants(grant).await
    }

    async fn set_hand(&self, grant: &JoinGrant, raised: bool) -> Result<(), PlaneError> {
        self.inner.set_hand(grant, raised).await
    }

    async fn report_self_state(&self, grant: &JoinGrant, muted: bool, deafened: bool) -> Result<(), PlaneError> {
        self.inner.report_self_state(grant, muted, deafened).await
    }

    async fn moderate(&self, grant: &JoinGrant, action: ModerationAction, participant: &str) -> Result<(), PlaneError> {
        self.inner.moderate(grant, action, participant).await
    }

    async fn watch(&self, grant: &JoinGrant, events: mpsc::Sender<PlaneEvent>) -> Result<(), PlaneError> {
        self.inner.watch(grant, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_this_machine_only() {
        for url in [
            "http://127.0.0.1:3000",
            "ws://127.9.9.9",
            "http://[::1]:80/x",
            "ws://localhost:7880",
            "http://a.localhost",
        ] {
            assert!(is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
        for url in
            ["http://10.0.0.1", "ws://example.org", "http://[::2]", "http://localhost.example.org", "http://128.0.0.1"]
        {
            assert!(!is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn cleartext_servers_need_insecure_off_this_machine() {
        for url in ["https://forum.example.org", "wss://relay.example", "http://127.0.0.1:9", "ws://[::1]:7880"] {
            check_server(url, false).unwrap_or_else(|error| panic!("{url}: {error}"));
        }
        for url in ["http://forum.example.org", "ws://relay.example:7777", "http://192.168.1.5:3000"] {
            let error = check_server(url, false).expect_err(url).to_string();
            assert!(error.contains("unencrypted") && error.contains("--insecure"), "{error}");
            assert!(!error.contains("/path"), "{error}");
            check_server(url, true).unwrap_or_else(|error| panic!("{url} with insecure: {error}"));
        }
        let error = check_server("http://user:pw@host.example/path?token=x", false).unwrap_err().to_string();
        assert!(!error.contains("pw@") && !error.contains("token=x"), "the message keeps the origin only: {error}");
    }

    #[test]
    fn livekit_addresses_are_never_downgraded() {
        // Encrypted, or on this machine: fine from anywhere.
        check_livekit("wss://lk.example.org", Some("http://forum.example.org"), false).unwrap();
        check_livekit("ws://127.0.0.1:7880", Some("https://forum.example.org"), false).unwrap();
        // Typed by the user: ws:// elsewhere needs --insecure.
        let typed = check_livekit("ws://lk.example.org", None, false).unwrap_err().to_string();
        assert!(typed.contains("unencrypted") && typed.contains("--insecure"), "{typed}");
        check_livekit("ws://lk.example.org", None, true).unwrap();
        // From a cleartext backend (an insecure profile): allowed with insecure only.
        check_livekit("ws://lk.example.org", Some("http://forum.example.org"), false).unwrap_err();
        check_livekit("ws://lk.example.org", Some("http://forum.example.org"), true).unwrap();
        // From an encrypted backend: never, whatever the profile says.
        for insecure in [false, true] {
            let error = check_livekit("ws://lk.example.org:7880", Some("https://forum.example.org"), insecure)
                .unwrap_err()
                .to_string();
            assert!(error.contains("does not downgrade") && error.contains("ws://lk.example.org:7880"), "{error}");
        }
        let garbage = check_livekit("not a url", None, false).unwrap_err().to_string();
        assert!(garbage.contains("not a URL"), "{garbage}");
    }
}
