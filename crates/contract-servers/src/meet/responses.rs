//! What the site answers with: DRF's `{"detail": …}`, the handlers' `{"message": …}`,
//! `{"error": …}` and `{"status": "success"}`, Django's HTML pages, answers forced by
//! [`super::Handle::fail_next`], and the texts they carry.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(super) const NO_CREDENTIALS: &str = "Authentication credentials were not provided.";
pub(super) const NO_PERMISSION: &str = "You do not have permission to perform this action.";
pub(super) const NEEDS_PRIVILEGES: &str = "You must have privileges on room to perform this action.";
pub(super) const NEEDS_PRESENCE: &str = "You must be connected to the meeting to perform this action.";
pub(super) const NO_ROOM: &str = "No Room matches the given query.";
/// Django's `page_not_found` with `DEBUG=False`.
pub(super) const NOT_FOUND_PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";
/// Django's `bad_request`, what a `SuspiciousOperation` turns into.
pub(super) const BAD_REQUEST_PAGE: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Bad Request (400)</title>\n</head>\n<body>\n  <h1>Bad Request (400)</h1><p></p>\n</body>\n</html>\n";

pub(super) fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "detail": text }))).into_response()
}

pub(super) fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

pub(super) fn error(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "error": text }))).into_response()
}

pub(super) fn status_success() -> Response {
    axum::Json(json!({ "status": "success" })).into_response()
}

pub(super) fn html(status: StatusCode, page: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
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
