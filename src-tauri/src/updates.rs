//! The updater: releases signed with the project's key (public key in `tauri.conf.json`), over
//! https, checked and installed only when the user asks. The plugin verifies the signature
//! before installing; an unsigned or wrongly signed update fails with `update`.

use parley_core::client::ipc::UpdateStatus;
use parley_core::client::{ClientError, ErrorCode};
use tauri::AppHandle;
use tauri_plugin_updater::UpdaterExt as _;

fn update_error(error: tauri_plugin_updater::Error) -> ClientError {
    ClientError::new(ErrorCode::Update, format!("checking for updates failed: {error}"))
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn check_for_updates(app: AppHandle) -> Result<UpdateStatus, ClientError> {
    let update = app.updater().map_err(update_error)?.check().await.map_err(update_error)?;
    Ok(UpdateStatus {
        available: update.is_some(),
        current_version: app.package_info().version.to_string(),
        version: update.as_ref().map(|update| update.version.clone()),
        notes: update.and_then(|update| update.body),
    })
}

/// Downloads, verifies and installs the newest release, then restarts into it.
#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn install_update(app: AppHandle) -> Result<(), ClientError> {
    let update = app.updater().map_err(update_error)?.check().await.map_err(update_error)?;
    let Some(update) = update else {
        return Err(ClientError::new(ErrorCode::Update, "there is no newer version"));
    };
    update.download_and_install(|_chunk, _total| {}, || {}).await.map_err(update_error)?;
    app.restart();
}
