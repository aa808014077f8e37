//! From the client to the desktop: every state snapshot goes to the window (`state-changed`)
//! and the tray; every notice to the window (`notice-posted`) and, for rooms going live, to a
//! desktop notification. Call transitions are logged (room, identity, counts; never a token).

use parley_core::client::ipc::{NOTICE_POSTED, STATE_CHANGED};
use parley_core::client::{CallPhase, Client, ClientState, Notice};
use tauri::{AppHandle, Emitter as _};
use tauri_plugin_notification::NotificationExt as _;

use crate::{MAIN_WINDOW, tray};

/// Starts the two forwarding tasks; they end when the client's channels close.
pub fn start(app: &AppHandle, client: &Client) {
    let mut states = client.subscribe();
    let forward_app = app.clone();
    tauri::async_runtime::spawn(async move {
        let mut last = Summary::default();
        loop {
            let state = states.borrow_and_update().clone();
            if let Err(error) = forward_app.emit_to(MAIN_WINDOW, STATE_CHANGED, &state) {
                tracing::debug!(%error, "the window did not take a state update");
            }
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
