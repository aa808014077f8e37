//! The updater: releases signed with the project's key (public key in `tauri.conf.json`), over
//! https, checked and installed only when the user asks. The plugin verifies the signature
//! before installing; an unsigned or wrongly signed update fails with `update`.

use parley_core::client::ipc::UpdateStatus;
use parley_core::client::{ClientError, ErrorCode};
use tauri::AppHandle;
use tauri_plugin_updater::{Error as UpdaterError, UpdaterExt as _};

fn check_error(error: UpdaterError) -> ClientError {
    ClientError::new(ErrorCode::Update, format!("checking for updates failed: {error}"))
}

/// What the user reads when an update was found but not installed. A download that does not
/// match its signature (or was signed for another version) says so plainly: that is the case
/// where the plugin refused a tampered or mislabelled file, and the installed version is kept.
fn install_error(error: UpdaterError) -> ClientError {
    let message = match &error {
        UpdaterError::Minisign(_) | UpdaterError::Base64(_) | UpdaterError::SignatureUtf8(_) => format!(
            "the update was not installed: its signature does not match Parley's release key, so the download \
             may have been tampered with ({error}); this version stays installed"
        ),
        UpdaterError::SignedVersionMismatch { .. } | UpdaterError::MissingSignedVersion => {
            format!("the update was not installed: {error}; this version stays installed")
        }
        UpdaterError::AuthenticationFailed | UpdaterError::PackageInstallFailed | UpdaterError::DebInstallFailed => {
            format!("the update was verified but the system did not install it ({error}); this version stays installed")
        }
        _ => format!("installing the update failed: {error}; this version stays installed"),
    };
    ClientError::new(ErrorCode::Update, message)
}

#[tauri::command]
#[tracing::instrument(skip_all, err(Display))]
pub async fn check_for_updates(app: AppHandle) -> Result<UpdateStatus, ClientError> {
    let update = app.updater().map_err(check_error)?.check().await.map_err(check_error)?;
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
    let update = app.updater().map_err(check_error)?.check().await.map_err(check_error)?;
    let Some(update) = update else {
        return Err(ClientError::new(ErrorCode::Update, "there is no newer version"));
    };
    tracing::info!(version = %update.version, "downloading and installing an update");
    update.download_and_install(|_chunk, _total| {}, || {}).await.map_err(install_error)?;
    tracing::info!(version = %update.version, "update installed; restarting into it");
    app.restart();
}
