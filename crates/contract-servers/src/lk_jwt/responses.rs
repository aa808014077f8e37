//! What the two servers answer with: Go's `json.NewEncoder` bodies, Matrix errors (the service's
//! `writeMatrixError`, Synapse's), Go's `http.NotFound`, `corsJSON`'s headers, and answers forced
//! by [`super::Handle::fail_next`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `gomatrix.RespError`, in Go's field order.
#[derive(Serialize)]
struct RespError<'a> {
    errcode: &'a str,
    error: &'a str,
}

/// Go's `http.NotFound`.
pub(super) async fn go_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        "404 page not found\n",
    )
        .into_response()
}

pub(super) fn with_cors_json(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token"),
    );
    response
}

/// `json.NewEncoder(w).Encode(value)`: compact JSON and a newline.
pub(super) fn go_json(status: StatusCode, value: &impl Serialize) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(super) fn not_json() -> Response {
    matrix(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Error reading request")
}

pub(super) fn bad_json(error: &str) -> Response {
    matrix(StatusCode::BAD_REQUEST, "M_BAD_JSON", error)
}

/// A Matrix error: `writeMatrixError` on the service, Synapse's `{errcode, error}` on the
/// homeserver.
pub(super) fn matrix(status: StatusCode, errcode: &str, error: &str) -> Response {
    go_json(status, &RespError { errcode, error })
}

pub(super) fn raw(status: u16, body: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = match body.trim_start().chars().next() {
        Some('{' | '[') => "application/json",
        Some('<') => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    (status, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}
