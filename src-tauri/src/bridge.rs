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
    latest: watch::Sender<Latest>,
}

struct Latest {
    revision: u32,
    /// The revision from which on the state differed in levels only.
    structure: u32,
    state: ClientState,
}

impl Latest {
    /// Whether the window's snapshot at `after` is one of `structure..=revision` (in wrapping
    /// order), so that the levels are all it lacks.
    fn has_structure(&self, after: u32) -> bool {
        after != 0 && after.wrapping_sub(self.structure) <= self.revision.wrapping_sub(self.structure)
    }
}

impl StateFeed {
    /// How long `next_state` waits for a change before answering with the current snapshot.
    pub const LONG_POLL: Duration = Duration::from_secs(20);

    /// Starts at revision 1, so a window asking with `after: 0` gets the state at once.
    pub fn new(state: ClientState) -> Self {
        StateFeed { latest: watch::Sender::new(Latest { revision: 1, structure: 1, state }) }
    }

    fn publish(&self, state: ClientState) {
        self.latest.send_modify(|latest| {
            latest.revision = latest.revision.wrapping_add(1).max(1);
            if !latest.state.same_apart_from_levels(&state) {
                latest.structure = latest.revision;
            }
            latest.state = state;
        });
    }

    /// The first snapshot whose revision is not `after`, waiting up to `wait` for one; without
    /// the whole state when the window's snapshot at `after` differs from it in levels only.
    pub async fn next_after(&self, after: u32, wait: Duration) -> StateUpdate {
        let mut latest = self.latest.subscribe();
        // The sender lives as long as the feed, so waiting ends with a change or the timeout.
        let _ = tokio::time::timeout(wait, latest.wait_for(|latest| latest.revision != after)).await;
        let latest = latest.borrow();
        StateUpdate {
            revision: latest.revision,
            state: (!latest.has_structure(after)).then(|| latest.state.clone()),
            levels: latest.state.levels(),
        }
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
            crate::popout::sync(&forward_app, &state);
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
    use parley_core::client::{CallState, Levels, LocalState, ParticipantState};

    use super::*;

    fn muted(muted: bool) -> ClientState {
        ClientState { call: None, local: LocalState { muted, ..ClientState::default().local }, link: None }
    }

    /// In a call with alice and bob, alice at `alice_dbfs`.
    fn in_call(alice_dbfs: f32, bob_muted: bool) -> ClientState {
        let mut call = CallState::joining("home", "lobby");
        call.participants.push(ParticipantState::new("alice", "Alice"));
        call.participants.push(ParticipantState::new("bob", "Bob"));
        call.participants[0].level_dbfs = alice_dbfs;
        call.participants[1].muted = bob_muted;
        ClientState {
            call: Some(call),
            local: LocalState { input_level_dbfs: -30.0, ..ClientState::default().local },
            link: None,
        }
    }

    fn whole(update: &StateUpdate) -> &ClientState {
        update.state.as_ref().expect("the update should carry the whole state")
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
        assert_eq!(latest.revision, 4, "three changes later; the ones in between are passed over");
        assert!(whole(&latest).local.muted);
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
        assert!(whole(&update).local.muted);
    }

    #[tokio::test]
    async fn a_long_poll_ends_with_the_current_snapshot_when_nothing_changes() {
        let feed = StateFeed::new(muted(true));
        let update = feed.next_after(1, Duration::from_millis(50)).await;
        assert_eq!(update.revision, 1, "the same snapshot: the window asks again");
        assert_eq!(update.state, None, "the window has this snapshot already");
    }

    #[tokio::test]
    async fn when_only_levels_changed_the_window_gets_the_levels_alone() {
        let feed = StateFeed::new(in_call(-100.0, false));
        let first = feed.next_after(0, Duration::from_secs(60)).await;
        assert_eq!(whole(&first).call.as_ref().map(|call| call.participants.len()), Some(2));
        assert_eq!(first.levels, Levels { input_dbfs: -30.0, participants: vec![-100.0, -100.0] });

        feed.publish(in_call(-20.0, false));
        feed.publish(in_call(-12.5, false));
        let levels_only = feed.next_after(first.revision, Duration::from_secs(60)).await;
        assert_eq!(levels_only.revision, 3);
        assert_eq!(levels_only.state, None, "alice's level is all that changed");
        assert_eq!(levels_only.levels.participants, vec![-12.5, -100.0], "in the order of the participants");

        feed.publish(in_call(-15.0, true));
        let changed = feed.next_after(levels_only.revision, Duration::from_secs(60)).await;
        assert!(whole(&changed).call.as_ref().is_some_and(|call| call.participants[1].muted), "bob muted");
        assert_eq!(changed.levels.participants, vec![-15.0, -100.0]);

        feed.publish(in_call(-40.0, true));
        let stale = feed.next_after(first.revision, Duration::from_secs(60)).await;
        assert!(stale.state.is_some(), "a window from before bob muted needs the whole state");
        let fresh = feed.next_after(changed.revision, Duration::from_secs(60)).await;
        assert_eq!(fresh.state, None, "a window that saw bob muted needs the levels only");
        assert_eq!(fresh.levels.participants, vec![-40.0, -100.0]);
    }

    #[test]
    fn revisions_wrap_past_zero_so_after_0_always_means_never_seen() {
        let feed = StateFeed::new(muted(false));
        feed.latest.send_modify(|latest| latest.revision = u32::MAX);
        feed.publish(muted(true));
        assert_eq!(feed.latest.borrow().revision, 1);
    }

    #[tokio::test]
    async fn levels_only_updates_survive_the_revision_wrapping() {
        let feed = StateFeed::new(in_call(-100.0, false));
        feed.latest.send_modify(|latest| {
            latest.revision = u32::MAX - 1;
            latest.structure = u32::MAX - 1;
        });
        feed.publish(in_call(-20.0, false));
        feed.publish(in_call(-10.0, false));
        let update = feed.next_after(u32::MAX - 1, Duration::from_secs(60)).await;
        assert_eq!(update.revision, 1, "wrapped past 0");
        assert_eq!(update.state, None, "the window's snapshot from before the wrap still holds");
        assert!(feed.next_after(0, Duration::from_secs(60)).await.state.is_some(), "after 0 gets it whole");
        feed.publish(in_call(-10.0, true));
        let stale = feed.next_after(u32::MAX, Duration::from_secs(60)).await;
        assert!(stale.state.is_some(), "bob muted since");
    }
}
