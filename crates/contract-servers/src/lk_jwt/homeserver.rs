//! The homeserver's side (Synapse's `rest/client/openid.py`): the `.well-known/matrix/client`
//! document, OpenID tokens for a device's access token, and the federation `userinfo` lookup.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::responses::matrix;
use super::{Endpoint, Hub, OpenIdGrant, Shared};

/// Synapse's `EXPIRES_MS` / 1000.
const OPENID_EXPIRES_IN: u64 = 3600;

/// The well-known document: the override, or the default advertising both servers.
pub(super) fn well_known_document(hub: &Hub) -> serde_json::Value {
    hub.well_known_override.clone().unwrap_or_else(|| {
        serde_json::json!({
            "m.homeserver": { "base_url": hub.homeserver_url },
            "org.matrix.msc4143.rtc_foci": [
                { "type": "nextgen_new_foci_type", "props_for_nextgen_foci": "val" },
                { "type": "livekit", "livekit_service_url": hub.service_url },
            ],
        })
    })
}

pub(super) async fn well_known(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::WellKnown, "GET", &uri, &headers, b"") {
        return forced;
    }
    let document = well_known_document(&shared.lock());
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], axum::Json(document)).into_response()
}

pub(super) async fn request_openid(
    State(shared): State<Shared>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::OpenId, "POST", &uri, &headers, &body) {
        return forced;
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return matrix(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing access token.");
    };
    let mut hub = shared.lock();
    let Some(owner) = hub.users.get(token).cloned() else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed.", "soft_logout": false,
            })),
        )
            .into_response();
    };
    if owner != user_id {
        return matrix(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Cannot request tokens for other users.");
    }
    // `parse_json_object_from_request`: the body must be a JSON object, its contents are ignored.
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return matrix(StatusCode::BAD_REQUEST, "M_BAD_JSON", "Content must be a JSON object."),
        Err(_) => return matrix(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Content not JSON."),
    }
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    hub.openid.insert(
        access_token.clone(),
        OpenIdGrant { user_id: owner, expires: Instant::now() + Duration::from_secs(OPENID_EXPIRES_IN) },
    );
    axum::Json(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "matrix_server_name": hub.server_name,
        "expires_in": OPENID_EXPIRES_IN,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct UserinfoQuery {
    access_token: Option<String>,
}

pub(super) async fn userinfo(State(shared): State<Shared>, Query(query): Query<UserinfoQuery>) -> Response {
    let hub = shared.lock();
    match query.access_token.as_deref().and_then(|token| hub.openid.get(token)) {
        Some(grant) if grant.expires > Instant::now() => {
            axum::Json(serde_json::json!({ "sub": grant.user_id })).into_response()
        }
        _ => matrix(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Access Token unknown or expired"),
    }
}
