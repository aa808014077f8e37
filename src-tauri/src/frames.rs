//! The `parley-frame` URI scheme (Windows and macOS): the next picture of a share the window
//! watches, as a JPEG, long-polled by its viewer's `<img>`
//! (`parley-frame://localhost/<identity>?viewer=<name>&n=<k>`; on Windows
//! `http://parley-frame.localhost/…`). On Linux the shell paints pictures itself (`surface`)
//! and none is put on the shelf for this scheme. Pictures come from the core (see
//! `parley_core::client::frames` for why JPEG); a URI scheme answer is a load the web engine
//! frees, unlike an event's script. The `<img>` loads the answer itself: a `fetch` turned into
//! a blob URL took each picture through WebKit's network process twice more.

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

/// The answer to `path` (`/<identity>`) and `query` (`viewer=<name>`, other pairs ignored: the
/// viewer makes each URL new with one): the first picture newer than the one that viewer was
/// handed last (200), or 204 when none came in time.
async fn answer(shelf: &FrameShelf, path: &str, query: Option<&str>) -> Response<Vec<u8>> {
    let identity = percent_encoding::percent_decode_str(path.trim_start_matches('/')).decode_utf8_lossy();
    let viewer = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("viewer="))
        .unwrap_or_default();
    let response = Response::builder().header(header::CACHE_CONTROL, "no-store");
    let built = if identity.is_empty() {
        response.status(StatusCode::NOT_FOUND).body(b"no participant named".to_vec())
    } else {
        match shelf.next_for(&identity, viewer, LONG_POLL).await {
            None => response.status(StatusCode::NO_CONTENT).body(Vec::new()),
            Some(frame) => response.header(header::CONTENT_TYPE, "image/jpeg").body(frame.jpeg.to_vec()),
        }
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
        let empty = answer(&shelf, "/alice%20smith", Some("viewer=v1&n=3")).await;
        assert_eq!(empty.status(), StatusCode::NO_CONTENT);
        assert_eq!(empty.headers()[header::CACHE_CONTROL], "no-store");
        let nobody = answer(&shelf, "/", None).await;
        assert_eq!(nobody.status(), StatusCode::NOT_FOUND);
    }
}
