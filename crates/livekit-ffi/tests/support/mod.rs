//! What the engine's integration tests share: the engine, a LiveKit server, and waiting for a
//! room event.

use std::time::Duration;

use parley_devserver::{DevServer, DevServerConfig};
use parley_livekit_ffi::{Engine, LibrarySearch, RoomEvent};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long an expected event may take (a generous deadline, not a timing).
pub const WAIT: Duration = Duration::from_secs(15);

pub fn engine() -> &'static Engine {
    Engine::start(&LibrarySearch::default()).unwrap_or_else(|error| panic!("{error}"))
}

pub fn server() -> DevServer {
    DevServer::start(&DevServerConfig::default()).unwrap_or_else(|error| panic!("LiveKit dev server: {error}"))
}

/// Waits for the first event matching `wanted`, failing after [`WAIT`].
pub async fn expect_event<T>(
    events: &mut UnboundedReceiver<RoomEvent>,
    what: &str,
    mut wanted: impl FnMut(RoomEvent) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if let Some(value) = wanted(event) {
                return Some(value);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(value)) => value,
        Ok(None) => panic!("the event stream ended before {what}"),
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}
