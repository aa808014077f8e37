//! Screen shares popped out of the room view into windows of their own (`share-<hex>` labels,
//! the page `index.html?share=<identity>`). A pop-out lives while its share is watched: closing
//! it puts the viewer back in the room view; a share that ends or is unwatched closes it.

use parley_core::client::{Client, ClientError, ClientState, ErrorCode};
use tauri::{AppHandle, Manager as _, Runtime, WebviewUrl, WebviewWindowBuilder};

/// The labels of pop-out windows start with this (the capability file names `share-*`).
pub const LABEL_PREFIX: &str = "share-";

/// A window label for `identity`: labels allow only a few characters, so the identity is hex.
fn label_of(identity: &str) -> String {
    let hex: String = identity.bytes().map(|byte| format!("{byte:02x}")).collect();
    format!("{LABEL_PREFIX}{hex}")
}

/// The identity a pop-out's label names, if it is one.
pub fn identity_of(label: &str) -> Option<String> {
    let hex = label.strip_prefix(LABEL_PREFIX)?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|at| hex.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Opens (or brings forward) the window of `identity`'s share.
///
/// Errors: [`ErrorCode::InvalidInput`] when their share is not watched; the window could not be
/// created ([`ErrorCode::Internal`]).
pub fn open<R: Runtime>(app: &AppHandle<R>, client: &Client, identity: &str) -> Result<(), ClientError> {
    let label = label_of(identity);
    if let Some(window) = app.get_webview_window(&label) {
        return window
            .set_focus()
            .map_err(|error| ClientError::new(ErrorCode::Internal, format!("focusing the window: {error}")));
    }
    if !client.set_popped_out(identity, true) {
        return Err(ClientError::new(ErrorCode::InvalidInput, format!("{identity}'s screen is not being watched")));
    }
    let name = client
        .state()
        .call
        .and_then(|call| call.participants.into_iter().find(|participant| participant.identity == identity))
        .map_or_else(|| identity.to_string(), |participant| participant.name);
    let query: String = url_encode(identity);
    let built = WebviewWindowBuilder::new(app, &label, WebviewUrl::App(format!("index.html?share={query}").into()))
        .title(format!("{name}'s screen — Parley"))
        .inner_size(960.0, 580.0)
        .min_inner_size(320.0, 200.0)
        .build();
    match built {
        Ok(_) => Ok(()),
        Err(error) => {
            client.set_popped_out(identity, false);
            Err(ClientError::new(ErrorCode::Internal, format!("opening a window for {identity}'s screen: {error}")))
        }
    }
}

/// `text` percent-encoded for a query value.
fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A pop-out window closed: its viewer goes back to the room view (if still watched).
pub fn closed(client: &Client, label: &str) {
    if let Some(identity) = identity_of(label) {
        client.set_popped_out(&identity, false);
    }
}

/// Closes the pop-outs of shares that are no longer popped out (unwatched, ended, left).
pub fn sync<R: Runtime>(app: &AppHandle<R>, state: &ClientState) {
    let popped = state.call.as_ref().map(|call| call.popped_out.as_slice()).unwrap_or_default();
    for (label, window) in app.webview_windows() {
        let Some(identity) = identity_of(&label) else { continue };
        if !popped.contains(&identity)
            && let Err(error) = window.close()
        {
            tracing::warn!(%error, %identity, "closing a pop-out window failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_any_identity_and_back() {
        for identity in ["bob", "Ünïcode user", "a/b:c", ""] {
            let label = label_of(identity);
            assert!(label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{label}");
            assert_eq!(identity_of(&label).as_deref(), Some(identity));
        }
        assert_eq!(identity_of("main"), None);
        assert_eq!(identity_of("share-zz"), None);
    }
}
