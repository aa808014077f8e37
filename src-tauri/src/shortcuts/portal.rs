//! Global shortcuts on Wayland, through the desktop's GlobalShortcuts portal
//! (`org.freedesktop.portal.GlobalShortcuts`, via `ashpd`): Wayland gives apps no key grabs, so
//! the app asks the desktop to bind the keys and tell it when they go down and up. Push-to-talk
//! follows `Activated` / `Deactivated`; the toggles act on `Activated`.
//!
//! A portal session binds its shortcuts once; new settings close the session and open another.
//! The desktop may show the user a dialog to confirm or change the keys, and has the last word
//! on them: the settings screen shows what it assigned.

use ashpd::desktop::global_shortcuts::{GlobalShortcuts, NewShortcut};
use ashpd::desktop::{CreateSessionOptions, Session};
use futures_util::StreamExt as _;
use parley_core::client::ipc::ShortcutSupport;
use tauri::{AppHandle, Runtime};
use tokio::sync::oneshot;

use super::Action;

/// What the portal calls each shortcut (stable: desktops remember the user's keys by id).
fn id(action: Action) -> &'static str {
    match action {
        Action::PushToTalk => "push-to-talk",
        Action::ToggleMute => "toggle-mute",
        Action::ToggleDeafen => "toggle-deafen",
    }
}

fn description(action: Action) -> &'static str {
    match action {
        Action::PushToTalk => "Push to talk (hold)",
        Action::ToggleMute => "Mute or unmute the microphone",
        Action::ToggleDeafen => "Deafen or undeafen",
    }
}

/// A Tauri accelerator (`CommandOrControl+Shift+P`) in the shortcuts specification's trigger
/// syntax (`CTRL+SHIFT+p`: modifiers in capitals, the key as its xkb keysym name). `None` when
/// a part has no equivalent; the desktop then asks the user for a key.
pub fn trigger(accelerator: &str) -> Option<String> {
    let mut parts = Vec::new();
    let mut key = None;
    for part in accelerator.split('+').map(str::trim) {
        let modifier = match part.to_ascii_lowercase().as_str() {
            "commandorcontrol" | "cmdorctrl" | "control" | "ctrl" => Some("CTRL"),
            "shift" => Some("SHIFT"),
            "alt" | "option" => Some("ALT"),
            "super" | "meta" | "command" | "cmd" => Some("LOGO"),
            _ => None,
        };
        match modifier {
            Some(modifier) => parts.push(modifier.to_string()),
            None if key.is_none() => key = Some(keysym(part)?),
            None => return None,
        }
    }
    parts.push(key?);
    Some(parts.join("+"))
}

/// The xkb keysym name of one accelerator key.
fn keysym(key: &str) -> Option<String> {
    let named = match key.to_ascii_lowercase().as_str() {
        "space" => "space",
        "enter" | "return" => "Return",
        "tab" => "Tab",
        "escape" | "esc" => "Escape",
        "backspace" => "BackSpace",
        "delete" => "Delete",
        "insert" => "Insert",
        "home" => "Home",
        "end" => "End",
        "pageup" => "Prior",
        "pagedown" => "Next",
        "up" | "arrowup" => "Up",
        "down" | "arrowdown" => "Down",
        "left" | "arrowleft" => "Left",
        "right" | "arrowright" => "Right",
        "pause" => "Pause",
        "capslock" => "Caps_Lock",
        "scrolllock" => "Scroll_Lock",
        "numlock" => "Num_Lock",
        "printscreen" => "Print",
        _ => "",
    };
    if !named.is_empty() {
        return Some(named.to_string());
    }
    let mut chars = key.chars();
    match (chars.next(), chars.next()) {
        (Some(single), None) if single.is_ascii_alphanumeric() => Some(single.to_ascii_lowercase().to_string()),
        _ if key.len() <= 3
            && key.starts_with(['F', 'f'])
            && key[1..].parse::<u8>().is_ok_and(|n| (1..=24).contains(&n)) =>
        {
            Some(format!("F{}", &key[1..]))
        }
        _ => None,
    }
}

/// A running portal binding; dropping it closes its session.
pub struct Binding {
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Binding {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may have ended already (the portal failed): nothing to stop then.
            let _ended = stop.send(());
        }
    }
}

/// Binds `wanted` (action, accelerator) through the portal in the background; reports the
/// outcome with `report` (the settings screen's text) and performs each activation with
/// `perform(action, pressed)`.
pub fn bind<R: Runtime>(
    app: &AppHandle<R>,
    wanted: Vec<(Action, String)>,
    report: impl Fn(&AppHandle<R>, ShortcutSupport) + Send + Sync + 'static,
    perform: impl Fn(&AppHandle<R>, Action, bool) + Send + Sync + 'static,
) -> Binding {
    let (stop, stopped) = oneshot::channel();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(error) = run(&app, &wanted, &report, &perform, stopped).await {
            tracing::warn!(%error, "the desktop's shortcuts portal is not available");
            report(&app, unavailable(&error.to_string()));
        }
    });
    Binding { stop: Some(stop) }
}

/// What the settings say when neither key grabs nor the portal work.
pub fn unavailable(why: &str) -> ShortcutSupport {
    ShortcutSupport {
        global_shortcuts: false,
        // The settings screen adds what to do instead (`parley ctl …`).
        message: Some(format!("Your desktop's shortcuts portal did not bind them: {why}.")),
        failed: Vec::new(),
    }
}

async fn run<R: Runtime>(
    app: &AppHandle<R>,
    wanted: &[(Action, String)],
    report: &(impl Fn(&AppHandle<R>, ShortcutSupport) + Sync),
    perform: &(impl Fn(&AppHandle<R>, Action, bool) + Sync),
    mut stopped: oneshot::Receiver<()>,
) -> Result<(), ashpd::Error> {
    if wanted.is_empty() {
        report(app, ShortcutSupport { global_shortcuts: true, message: None, failed: Vec::new() });
        return Ok(());
    }
    let portal = GlobalShortcuts::new().await?;
    // Listen before binding, so that no early press is lost.
    let mut activated = portal.receive_activated().await?;
    let mut deactivated = portal.receive_deactivated().await?;
    let session = portal.create_session(CreateSessionOptions::default()).await?;
    let shortcuts: Vec<NewShortcut> = wanted
        .iter()
        .map(|(action, accelerator)| {
            NewShortcut::new(id(*action), description(*action)).preferred_trigger(trigger(accelerator).as_deref())
        })
        .collect();
    let bound = portal.bind_shortcuts(&session, &shortcuts, None, Default::default()).await?.response()?;
    let assigned: Vec<String> = bound
        .shortcuts()
        .iter()
        .map(|shortcut| format!("{}: {}", shortcut.description(), shortcut.trigger_description()))
        .collect();
    tracing::info!(?assigned, "global shortcuts bound through the desktop's portal");
    report(
        app,
        ShortcutSupport {
            global_shortcuts: true,
            message: Some(format!(
                "Your desktop's shortcuts portal handles these keys ({}); change them in the desktop's settings.",
                assigned.join("; ")
            )),
            failed: Vec::new(),
        },
    );
    // The portal sends a session's signals to its owner alone, and the app holds one session at a
    // time (new settings stop this task before the next binds), so every event here is ours.
    let action_of = |shortcut: &str| wanted.iter().map(|(action, _)| *action).find(|action| id(*action) == shortcut);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(event) = activated.next() => {
                if let Some(action) = action_of(event.shortcut_id()) {
                    perform(app, action, true);
                }
            }
            Some(event) = deactivated.next() => {
                if let Some(action) = action_of(event.shortcut_id()) {
                    perform(app, action, false);
                }
            }
            else => break,
        }
    }
    close(session).await;
    Ok(())
}

async fn close(session: Session<GlobalShortcuts>) {
    if let Err(error) = session.close().await {
        tracing::debug!(%error, "closing the shortcuts portal session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accelerators_become_portal_triggers() {
        assert_eq!(trigger("CommandOrControl+Shift+P").as_deref(), Some("CTRL+SHIFT+p"));
        assert_eq!(trigger("Alt+Space").as_deref(), Some("ALT+space"));
        assert_eq!(trigger("Super+F5").as_deref(), Some("LOGO+F5"));
        assert_eq!(trigger("F13").as_deref(), Some("F13"));
        assert_eq!(trigger("Ctrl+PageDown").as_deref(), Some("CTRL+Next"));
        assert_eq!(trigger("Ctrl+Shift"), None, "no key");
        assert_eq!(trigger("Ctrl+A+B"), None, "two keys");
        assert_eq!(trigger("Ctrl+MediaPlay"), None, "no equivalent known");
        assert_eq!(trigger("F25"), None);
    }
}
