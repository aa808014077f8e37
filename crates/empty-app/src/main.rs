//! An empty Tauri 2 window with a static page, built like `parley-app` (same Tauri, same
//! features) but with no plugins and no Parley code: the baseline that `cargo xtask bench app`
//! measures the app against. It prints `page loaded` on stderr when the page's load finishes,
//! as the app logs it, so that both are timed by the same mark.

use std::process::ExitCode;

use tauri::webview::PageLoadEvent;

fn main() -> ExitCode {
    let app = tauri::Builder::default().on_page_load(|_webview, payload| {
        if matches!(payload.event(), PageLoadEvent::Finished) {
            eprintln!("page loaded");
        }
    });
    match app.run(tauri::generate_context!()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("parley-empty-app: error: {error}");
            ExitCode::FAILURE
        }
    }
}
