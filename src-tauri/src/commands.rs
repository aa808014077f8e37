//! The commands the webview may call (`command_list::COMMANDS`). Each takes the client, calls
//! it, and returns its `ClientError` (`{code, message}`) unchanged (STYLE.md 15).
//!
//! Each runs in a tracing span named after it with its arguments (secrets, payloads and
//! addresses skipped; the polling ones at `trace`), and a failure is logged with its message:
//! what the window asked for, in order, is what a bug report needs.

use parley_core::client::ipc::{ShortcutSupport, StateUpdate};
use parley_core::client::{
    AppSettings, AudioDevice, BackendFeatures, BackendForm, Client, ClientError, ClientState, DiscourseAuthStarted,
    ModerationAction, ProfileInput, ProfileSummary, RoomEntry, ShareRect, ShareSound, ShareTarget,
};
use tauri::{AppHandle, State};

use crate::bridge::StateFeed;
use crate::{login_item, shortcuts};

type Reply<T> = Result<T, ClientError>;

#[tauri::command]
#[tracing::instrument(level = "trace", skip_all)]
pub async fn get_state(client: State<'_, Client>) -> Reply<ClientState> {
    Ok(client.state())
}

/// The first snapshot whose revision is not `after`: at once if there is one, else when the
/// state next changes, or the current one after [`StateFeed::LONG_POLL`] so that a window that
/// went away leaves no request waiting for long.
#[tauri::command]
#[tracing::instrument(level = "trace", skip(feed))]
pub async fn next_state(feed: State<'_, StateFeed>, after: u32) -> Reply<StateUpdate> {
    Ok(feed.next_after(after, StateFeed::LONG_POLL).await)
}

#[tauri::command]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_settings(client: State<'_, Client>) -> Reply<AppSettings> {
    Ok(client.settings())
}

/// Saves the settings, then re-registers the shortcuts and the login item they name.
#[tauri::command]
#[tracing::instrument(skip_all)]
pub async fn update_settings(app: AppHandle, client: State<'_, Client>, settings: AppSettings) -> Reply<AppSettings> {
    let saved = client.update_settings(settings).await?;
    shortcuts::apply(&app, &saved.shortcuts);
    login_item::apply(&app, saved.launch_at_login);
    Ok(saved)
}

#[tauri::command]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list_backends(client: State<'_, Client>) -> Reply<Vec<BackendForm>> {
    Ok(client.backend_forms())
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn list_profiles(client: State<'_, Client>) -> Reply<Vec<ProfileSummary>> {
    client.list_profiles().await
}

#[tauri::command]
#[tracing::instrument(skip_all, fields(profile = %profile.name, backend = ?profile.backend), err(Display))]
pub async fn add_profile(client: State<'_, Client>, profile: ProfileInput) -> Reply<ProfileSummary> {
    client.add_profile(profile).await
}

/// Starts the forum sign-in and opens its approval page in the system browser. A browser that
/// cannot be opened is logged, not an error: the form shows the address to open by hand.
#[tauri::command]
#[tracing::instrument(skip(client, url), err(Display))]
pub async fn begin_discourse_auth(
    client: State<'_, Client>,
    profile: String,
    url: String,
) -> Reply<DiscourseAuthStarted> {
    let started = client.begin_discourse_auth(&profile, &url).await?;
    // `opener` (also the CLI's) honours $BROWSER and the desktop's default handler.
    if let Err(error) = opener::open_browser(&started.authorize_url) {
        tracing::warn!(%error, "cannot open a browser for the forum sign-in");
    }
    Ok(started)
}

#[tauri::command]
#[tracing::instrument(skip(client, payload), err(Display))]
pub async fn complete_discourse_auth(client: State<'_, Client>, profile: String, payload: String) -> Reply<()> {
    client.complete_discourse_auth(&profile, &payload).await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn remove_profile(client: State<'_, Client>, name: String) -> Reply<()> {
    client.remove_profile(&name).await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn list_rooms(client: State<'_, Client>, profile: String) -> Reply<Vec<RoomEntry>> {
    client.list_rooms(&profile).await
}

#[tauri::command]
#[tracing::instrument(level = "debug", skip(client), err(Display))]
pub async fn get_backend_features(client: State<'_, Client>, profile: String) -> Reply<BackendFeatures> {
    client.backend_features(&profile).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn list_devices(client: State<'_, Client>) -> Reply<Vec<AudioDevice>> {
    client.list_devices().await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn start_mic_test(client: State<'_, Client>) -> Reply<()> {
    client.start_mic_test().await
}

#[tauri::command]
#[tracing::instrument(skip_all)]
pub async fn stop_mic_test(client: State<'_, Client>) -> Reply<()> {
    client.stop_mic_test().await;
    Ok(())
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn join_room(client: State<'_, Client>, profile: String, room: String, switch_rooms: bool) -> Reply<()> {
    client.join_room(&profile, &room, switch_rooms).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn leave_room(client: State<'_, Client>) -> Reply<()> {
    client.leave_room().await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn set_muted(client: State<'_, Client>, muted: bool) -> Reply<()> {
    client.set_muted(muted).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn toggle_mute(client: State<'_, Client>) -> Reply<()> {
    client.toggle_mute().await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn set_deafened(client: State<'_, Client>, deafened: bool) -> Reply<()> {
    client.set_deafened(deafened).await
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn toggle_deafen(client: State<'_, Client>) -> Reply<()> {
    client.toggle_deafen().await
}

#[tauri::command]
#[tracing::instrument(level = "debug", skip(client), err(Display))]
pub async fn push_to_talk(client: State<'_, Client>, pressed: bool) -> Reply<()> {
    client.push_to_talk(pressed).await
}

#[tauri::command]
#[tracing::instrument(level = "debug", skip(client), err(Display))]
pub async fn set_volume(client: State<'_, Client>, identity: String, percent: u32) -> Reply<()> {
    client.set_volume(&identity, percent).await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn set_local_mute(client: State<'_, Client>, identity: String, muted: bool) -> Reply<()> {
    client.set_local_mute(&identity, muted).await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn allow_unencrypted(client: State<'_, Client>, identity: String) -> Reply<()> {
    client.allow_unencrypted(&identity).await
}

/// The screens and windows there are to share, with thumbnails.
#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn list_share_targets(client: State<'_, Client>) -> Reply<Vec<ShareTarget>> {
    client.list_share_targets().await
}

/// The applications playing sound, whose sound may go with a share.
#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn list_share_sounds(client: State<'_, Client>) -> Reply<Vec<ShareSound>> {
    client.list_share_sounds().await
}

/// Shares a screen or window in the call, with an application's sound when `sound` names one.
#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn start_share(
    client: State<'_, Client>,
    target: String,
    quality: String,
    priority: String,
    sound: Option<String>,
) -> Reply<()> {
    client.start_share(&target, &quality, &priority, sound.as_deref()).await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn stop_share(client: State<'_, Client>) -> Reply<()> {
    client.stop_share().await
}

/// Opens a viewer on someone's screen share (its pictures come through `frames`).
#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn watch_share(client: State<'_, Client>, identity: String) -> Reply<()> {
    client.watch_share(&identity).await
}

/// Moves a watched share's viewer into a window of its own.
#[tauri::command]
#[tracing::instrument(skip(app, client), err(Display))]
pub async fn pop_out_share(app: AppHandle, client: State<'_, Client>, identity: String) -> Reply<()> {
    crate::popout::open(&app, &client, &identity)
}

/// Closes the viewer: the share is no longer received.
#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn unwatch_share(client: State<'_, Client>, identity: String) -> Reply<()> {
    client.unwatch_share(&identity).await
}

/// The viewer's size in device pixels, for the layer that fits.
#[tauri::command]
#[tracing::instrument(level = "debug", skip(client), err(Display))]
pub async fn fit_share(client: State<'_, Client>, identity: String, width: u32, height: u32) -> Reply<()> {
    client.fit_share(&identity, width, height).await
}

/// Where the viewer shows the picture in the calling window (CSS pixels), or `None` once it
/// does not: where the shell paints pictures itself (`surface`), its surface follows.
#[tauri::command]
#[tracing::instrument(level = "debug", skip(client, window), err(Display))]
pub async fn place_share<R: tauri::Runtime>(
    window: tauri::WebviewWindow<R>,
    client: State<'_, Client>,
    identity: String,
    rect: Option<ShareRect>,
) -> Reply<()> {
    client.place_share(&identity, rect);
    crate::surface::place(&window, &identity, rect)
}

/// The user declined the room a `parley://join/…` link asked them to join.
#[tauri::command]
#[tracing::instrument(skip(client))]
pub fn dismiss_link(client: State<'_, Client>) {
    client.dismiss_link();
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn moderate_participant(client: State<'_, Client>, identity: String, action: ModerationAction) -> Reply<()> {
    client.moderate(&identity, action).await
}

#[tauri::command]
#[tracing::instrument(skip(client), err(Display))]
pub async fn set_hand_raised(client: State<'_, Client>, raised: bool) -> Reply<()> {
    client.set_hand_raised(raised).await
}

#[tauri::command]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_shortcut_support(shortcuts: State<'_, shortcuts::ShortcutState>) -> Reply<ShortcutSupport> {
    Ok(shortcuts.support())
}
