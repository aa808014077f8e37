//! From the client to the desktop: every state snapshot goes to the [`StateFeed`] the window
//! pulls from (`next_state`) and to the tray; every notice to the window (`notice-posted`)
//! and, for rooms going live, to a desktop notification. Call transitions are logged (room,
//! identity, counts; never a token).

use std::time::Duration;

use parley_core::client::ipc::{NOTICE_POSTED, StateUpdate};
use parley_core::client::{CallPhase, Client, ClientState, Notice};
use tauri::{AppHandle, Emitter as _, Manager as _};
use tauri_plugin_notification::NotificationExt as _;
use tokio::sync::watch;

use crate::{MAIN_WINDOW, tray};

/// The latest state snapshot, numbered, for the window to pull ([`StateUpdate`] says why it
/// pulls rather than being sent events). Snapshots the window did not ask for in time are
/// replaced, so a busy window gets the newest state, never a backlog.
pub struct StateFeed {
    latest: watch::Sender<StateUpdate>,
}

impl StateFeed {
    /// How long `next_state` waits for a change before answering with the current snapshot.
    pub const LONG_POLL: Duration = Duration::from_secs(20);

    /// Starts at revision 1, so a window asking with `after: 0` gets the state at once.
    pub fn new(state: ClientState) -> Self {
        StateFeed { latest: watch::Sender::new(StateUpdate { revision: 1, state }) }
    }

    fn publish(&self, state: ClientState) {
        self.latest.send_modify(|latest| {
            latest.revision = latest.revision.wrapping_add(1).max(1);
            latest.state = state;
        });
    }

    /// The first snapshot whose revision is not `after`, waiting up to `wait` for one.
    pub async fn next_after(&self, after: u32, wait: Duration) -> StateUpdate {
        let mut latest = self.latest.subscribe();
        // The sender lives as long as the feed, so waiting ends with a change or the timeout.
        let _ = tokio::time::timeout(wait, latest.wait_for(|update| update.revision != after)).await;
        latest.borrow().clone()
    }
}

/// Starts the two forwarding tasks; they end when the client's channels close.
pub fn start(app: &AppHandle, client: &Client) {
    let mut states = client.subscribe();
    app.manage(StateFeed::new(states.borrow().clone()));
    let forward_app = app.clone();
    tauri::async_runtime::spawn(async move {
        let mut last = Summary::default();
        loop {
            let state = states.borrow_and_update().clone();
            forward_app.state::<StateFeed>().publish(state.clone());
            tray::show(&forward_app, &state);
            last = last.log_change(&state);
            if states.changed().await.is_err() {
                return;
            }
        }
    });
    let mut notices = client.notices();
    let notify_app = app.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            match notices.recv().await {
                Ok(notice) => post(&notify_app, &notice),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "notices were dropped");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

fn post(app: &AppHandle, notice: &Notice) {
    if let Err(error) = app.emit_to(MAIN_WINDOW, NOTICE_POSTED, notice) {
        tracing::debug!(%error, "the window did not take a notice");
    }
    match notice {
        Notice::RoomWentLive { room_name, .. } => {
            let shown = app.notification().builder().title("Parley").body(format!("{room_name} is live")).show();
            if let Err(error) = shown {
                tracing::warn!(%error, "the desktop notification failed");
            }
        }
        Notice::CallEnded { code, message } => tracing::info!(?code, message, "call ended"),
        Notice::DeviceChanged { message } | Notice::Warning { message } => tracing::warn!(message, "notice"),
    }
}

/// The part of the state worth a log line when it changes.
#[derive(Debug, Default, Clone, PartialEq)]
struct Summary {
    phase: Option<String>,
    room: Option<String>,
    participants: usize,
    muted: bool,
    deafened: bool,
}

impl Summary {
    fn log_change(self, state: &ClientState) -> Summary {
        let next = Summary {
            phase: state.call.as_ref().map(|call| phase_name(&call.phase)),
            room: state.call.as_ref().map(|call| call.room_name.clone()),
            participants: state.call.as_ref().map_or(0, |call| call.participants.len()),
            muted: state.local.muted,
            deafened: state.local.deafened,
        };
        if next != self {
            let identity = state.call.as_ref().and_then(|call| call.identity.clone()).unwrap_or_default();
            tracing::info!(
                phase = next.phase.as_deref().unwrap_or("idle"),
                room = next.room.as_deref().unwrap_or(""),
                identity,
                participants = next.participants,
                muted = next.muted,
                deafened = next.deafened,
                "call state"
            );
        }
        next
    }
}

fn phase_name(phase: &CallPhase) -> String {
    match phase {
        CallPhase::Joining => "joining".into(),
        CallPhase::Connecting => "connecting".into(),
        CallPhase::Connected => "connected".into(),
        CallPhase::Reconnecting => "reconnecting".into(),
        CallPhase::Failed { code, message } => format!("failed ({code:?}: {message})"),
    }
}

#[cfg(test)]
mod tests {
    use parley_core::client::LocalState;

    use super::*;

    fn muted(muted: bool) -> ClientState {
        ClientState { call: None, local: LocalState { muted, ..ClientState::default().local } }
    }

    #[tokio::test]
    async fn a_window_behind_gets_the_latest_snapshot_at_once() {
        let feed = StateFeed::new(muted(false));
        let first = feed.next_after(0, Duration::from_secs(60)).await;
        assert_eq!(first.revision, 1);
        feed.publish(muted(true));
        feed.publish(muted(false));
        feed.publish(muted(true));
        let latest = feed.next_after(first.revision, Duration::from_secs(60)).await;
        assert_eq!(latest.revision, 4, "three changes later, skipping the ones in between");
        assert!(latest.state.local.muted);
    }

    #[tokio::test]
    async fn a_window_up_to_date_waits_for_the_next_change() {
        let feed = std::sync::Arc::new(StateFeed::new(muted(false)));
        let waiting = tokio::spawn({
            let feed = feed.clone();
            async move { feed.next_after(1, Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing changed yet");
        feed.publish(muted(true));
        let update = waiting.await.expect("the poll ends");
        assert_eq!(update.revision, 2);
        assert!(update.state.local.muted);
    }

    #[tokio::test]
    async fn a_long_poll_ends_with_the_current_snapshot_when_nothing_changes() {
        let feed = StateFeed::new(muted(true));
        let update = feed.next_after(1, Duration::from_millis(50)).await;
        assert_eq!(update.revision, 1, "the same snapshot: the window asks again");
        assert!(update.state.local.muted);
    }

    #[test]
    fn revisions_wrap_past_zero_so_after_0_always_means_never_seen() {
        let feed = StateFeed::new(muted(false));
        feed.latest.send_modify(|latest| latest.revision = u32::MAX);
        feed.publish(muted(true));
        assert_eq!(feed.latest.borrow().revision, 1);
    }
}
