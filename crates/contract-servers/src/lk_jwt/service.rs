//! The service's endpoints (`handler.go`): `/get_token`, the legacy `/sfu/get`,
//! `/delegate_delayed_leave` and `/healthz`, and what a decoded request goes through — the OpenID
//! lookup, the full-access and delegation checks, `CreateRoom` on LiveKit, and the minted token.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use serde::Serialize;

use super::homeserver::well_known_document;
use super::requests::{LEGACY_FIELDS, LegacySfuRequest, OpenIdToken, SFU_FIELDS, SfuRequest, go_decode};
use super::responses::{bad_json, go_json, go_not_found, matrix, not_json, with_cors_json};
use super::{Delegation, Endpoint, Issued, Shared, hashed};

/// `getJoinToken`'s validity.
const TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// `CreateLiveKitRoom`: keep a room nobody joined for five minutes, and a left one for 20 s.
const EMPTY_TIMEOUT_SECS: u32 = 5 * 60;
const DEPARTURE_TIMEOUT_SECS: u32 = 20;
const UNAUTHORISED: &str = "The request could not be authorised.";
const NOT_FULL_ACCESS: &str = "Delegation of delayed events is only supported for full access users";

/// What `corsJSON` answers before the handler runs: 200 to a preflight; and the handlers' own
/// 405 (empty) to anything but `POST`. `None` for a `POST`.
fn not_a_post(method: &Method) -> Option<Response> {
    if method == Method::OPTIONS {
        Some(StatusCode::OK.into_response())
    } else if method != Method::POST {
        Some(StatusCode::METHOD_NOT_ALLOWED.into_response())
    } else {
        None
    }
}

pub(super) async fn get_token(
    State(shared): State<Shared>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::GetToken, method.as_str(), &uri, &headers, &body) {
        return forced;
    }
    if !shared.lock().get_token_enabled {
        return go_not_found().await;
    }
    if let Some(response) = not_a_post(&method) {
        return with_cors_json(response);
    }
    let response = async {
        let request = go_decode::<SfuRequest>(&body, SFU_FIELDS).map_err(|()| not_json())?;
        request.validate()?;
        let subject = shared.verify_openid(&request.openid_token, &request.member.claimed_user_id)?;
        let identity = hashed(&[&subject, &request.member.claimed_device_id, &request.member.id]);
        let room = hashed(&[&request.room_id, &request.slot_id]);
        let delay = (!request.delay_id.is_empty()).then_some((request.delay_id.as_str(), request.delay_timeout));
        shared.process(&request.openid_token.matrix_server_name, identity, room, delay, false).await
    }
    .await;
    with_cors_json(response.unwrap_or_else(|response| response))
}

pub(super) async fn sfu_get(
    State(shared): State<Shared>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::SfuGet, method.as_str(), &uri, &headers, &body) {
        return forced;
    }
    if let Some(response) = not_a_post(&method) {
        return with_cors_json(response);
    }
    let response = async {
        let request = go_decode::<LegacySfuRequest>(&body, LEGACY_FIELDS).map_err(|()| not_json())?;
        request.validate()?;
        // The legacy endpoint claims no user: only the lookup itself is checked.
        let subject = shared.verify_openid(&request.openid_token, "")?;
        // `device_id` is not validated: an empty one gives the identity `@user:server:`.
        let identity = format!("{subject}:{}", request.device_id);
        let room = hashed(&[&request.room, "m.call#ROOM"]);
        let delay = (!request.delay_id.is_empty()).then_some((request.delay_id.as_str(), request.delay_timeout));
        shared.process(&request.openid_token.matrix_server_name, identity, room, delay, true).await
    }
    .await;
    with_cors_json(response.unwrap_or_else(|response| response))
}

pub(super) async fn delegate_delayed_leave(
    State(shared): State<Shared>,
    method: Method,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Some(forced) = shared.arrive(Endpoint::DelegateDelayedLeave, method.as_str(), &uri, &headers, &body) {
        return forced;
    }
    if let Some(response) = not_a_post(&method) {
        return with_cors_json(response);
    }
    let response = (|| {
        let request = go_decode::<SfuRequest>(&body, SFU_FIELDS).map_err(|()| not_json())?;
        request.validate_delegation()?;
        let subject = shared.verify_openid(&request.openid_token, &request.member.claimed_user_id)?;
        let server_name = &request.openid_token.matrix_server_name;
        if !shared.full_access(server_name) {
            return Err(matrix(StatusCode::FORBIDDEN, "M_FORBIDDEN", NOT_FULL_ACCESS));
        }
        let identity = hashed(&[&subject, &request.member.claimed_device_id, &request.member.id]);
        let room = hashed(&[&request.room_id, &request.slot_id]);
        shared.resolve_cs_api(server_name)?;
        shared.lock().delegations.push(Delegation {
            server_name: server_name.clone(),
            delay_id: request.delay_id.clone(),
            delay_timeout: request.delay_timeout,
            room,
            identity,
        });
        Ok(go_json(StatusCode::OK, &serde_json::json!({})))
    })();
    with_cors_json(response.unwrap_or_else(|response| response))
}

impl Shared {
    fn full_access(&self, server_name: &str) -> bool {
        let hub = self.lock();
        (hub.full_access.len() == 1 && hub.full_access[0] == "*")
            || hub.full_access.iter().any(|server| server == server_name)
    }

    /// `exchangeOpenIdUserInfo` (the federation `userinfo` lookup on `matrix_server_name`) and
    /// the claimed-user check, both 401 on failure.
    fn verify_openid(&self, openid: &OpenIdToken, claimed_user_id: &str) -> Result<String, Response> {
        let refuse = || matrix(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", UNAUTHORISED);
        let hub = self.lock();
        // Only this homeserver answers federation lookups; any other name fails to resolve.
        if openid.matrix_server_name != hub.server_name {
            return Err(refuse());
        }
        let subject = match hub.openid.get(&openid.access_token) {
            Some(grant) if grant.expires > Instant::now() => grant.user_id.clone(),
            _ => return Err(refuse()),
        };
        if !claimed_user_id.is_empty() && claimed_user_id != subject {
            return Err(refuse());
        }
        Ok(subject)
    }

    /// `resolveCsApiUrl`: `.well-known/matrix/client` of the server name must give a base URL.
    fn resolve_cs_api(&self, server_name: &str) -> Result<String, Response> {
        let hub = self.lock();
        let url = (server_name == hub.server_name)
            .then(|| well_known_document(&hub))
            .and_then(|document| document.pointer("/m.homeserver/base_url")?.as_str().map(String::from))
            .filter(|url| !url.is_empty());
        url.ok_or_else(|| bad_json("Unable to resolve client-server API"))
    }

    /// The tail of `processSFURequest` / `processLegacySFURequest`, from the delegation check on.
    async fn process(
        &self,
        server_name: &str,
        identity: String,
        room: String,
        delay: Option<(&str, i64)>,
        legacy: bool,
    ) -> Result<Response, Response> {
        let full_access = self.full_access(server_name);
        if delay.is_some() && !full_access {
            return Err(bad_json(NOT_FULL_ACCESS));
        }
        let jwt = self.keys.mint(&room, &identity, "", TOKEN_TTL, |grants| {
            grants.room_create = false;
            grants.can_publish_data = None;
            grants.can_update_own_metadata = Some(true);
        });
        if full_access {
            if delay.is_some() {
                self.resolve_cs_api(server_name)?;
            }
            if self.lock().create_rooms {
                self.create_room(&room).await?;
            }
            if let Some((delay_id, delay_timeout)) = delay {
                self.lock().delegations.push(Delegation {
                    server_name: server_name.to_string(),
                    delay_id: delay_id.to_string(),
                    delay_timeout,
                    room: room.clone(),
                    identity: identity.clone(),
                });
            }
        }
        self.lock().issued.push(Issued { identity, room, legacy });
        Ok(go_json(StatusCode::OK, &SfuResponse { url: &self.keys.url, jwt: &jwt }))
    }

    /// `CreateLiveKitRoom` on the keys' LiveKit server.
    async fn create_room(&self, room: &str) -> Result<(), Response> {
        let client = RoomClient::with_api_key(&self.keys.url, &self.keys.api_key, &self.keys.api_secret);
        let options = CreateRoomOptions {
            empty_timeout: EMPTY_TIMEOUT_SECS,
            departure_timeout: DEPARTURE_TIMEOUT_SECS,
            ..CreateRoomOptions::default()
        };
        match client.create_room(room, options).await {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!("lk-jwt contract server: CreateRoom {room} failed: {error}");
                Err(matrix(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Unable to create room on SFU"))
            }
        }
    }
}

/// `SFUResponse`, in Go's field order.
#[derive(Serialize)]
struct SfuResponse<'a> {
    url: &'a str,
    jwt: &'a str,
}

pub(super) async fn healthz(method: Method) -> StatusCode {
    if method == Method::GET || method == Method::HEAD { StatusCode::OK } else { StatusCode::METHOD_NOT_ALLOWED }
}
