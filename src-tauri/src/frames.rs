//! The `parley-frame` URI scheme: the latest picture of a share the window watches, as a JPEG,
//! long-polled by its viewer (`parley-frame://localhost/<identity>?after=<seq>`; on Windows
//! `http://parley-frame.localhost/…`). WebKitGTK has no WebRTC, so pictures come from the core
//! (see `parley_core::client::frames` for why JPEG); a URI scheme answer is a fetch body the
//! web engine frees, unlike an event's script.

use std::time::Duration;

use parley_core::client::Client;
use parley_core::client::frames::FrameShelf;
use tauri::http::{Request, Response, StatusCode, header};
use tauri::{Manager as _, Runtime, UriSchemeContext, UriSchemeResponder};

pub const SCHEME: &str = "parley-frame";
/// How long a viewer's request waits for a new picture before an empty answer (204).
const LONG_POLL: Duration = Duration::from_secs(2);

/// Answers one request off the event loop.
pub fn handle<R: Runtime>(context: UriSchemeContext<'_, R>, request: Request<Vec<u8>>, responder: UriSchemeResponder) {
    let shelf = context.app_handle().state::<Client>().frames();
    tauri::async_runtime::spawn(async move {
        responder.respond(answer(&shelf, request.uri().path(), request.uri().query()).await);
    });
}

/// The answer to `path` (`/<identity>`) and `query` (`after=<seq>`): the first picture newer
/// than `after` (200, `X-Frame-Seq`, `-Width`, `-Height`), or 204 when none came in time.
async fn answer(shelf: &FrameShelf, path: &str, query: Option<&str>) -> Response<Vec<u8>> {
    let identity = percent_encoding::percent_decode_str(path.trim_start_matches('/')).decode_utf8_lossy();
    let after = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|after| after.parse::<u64>().ok())
        .unwrap_or(0);
    let response = Response::builder()
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(header::ACCESS_CONTROL_EXPOSE_HEADERS, "X-Frame-Seq, X-Frame-Width, X-Frame-Height")
        .header(header::CACHE_CONTROL, "no-store");
    let built = match (identity.is_empty(), shelf.next_after(&identity, after, LONG_POLL).await) {
        (true, _) => response.status(StatusCode::NOT_FOUND).body(b"no participant named".to_vec()),
        (false, None) => response.status(StatusCode::NO_CONTENT).body(Vec::new()),
        (false, Some(frame)) => response
            .header(header::CONTENT_TYPE, "image/jpeg")
            .header("X-Frame-Seq", frame.seq)
            .header("X-Frame-Width", frame.width)
            .header("X-Frame-Height", frame.height)
            .body(frame.jpeg.to_vec()),
    };
    built.unwrap_or_else(|error| {
        tracing::warn!(%error, "building a frame answer failed");
        let mut failed = Response::new(Vec::new());
        *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        failed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_picture_in_time_is_an_empty_answer_and_no_name_a_404() {
        let shelf = FrameShelf::default();
        let empty = answer(&shelf, "/alice%20smith", Some("after=3")).await;
        assert_eq!(empty.status(), StatusCode::NO_CONTENT);
        assert_eq!(empty.headers()[header::CACHE_CONTROL], "no-store");
        let nobody = answer(&shelf, "/", None).await;
        assert_eq!(nobody.status(), StatusCode::NOT_FOUND);
    }
}
