//! The service's request types (`requests.go`), decoded the way Go's `encoding/json` does with
//! `DisallowUnknownFields`, and their `Validate()` checks.

use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::responses::bad_json;

/// A field of a Go struct: its JSON name, and its own fields when it is a struct.
pub(super) struct GoField {
    name: &'static str,
    nested: Option<&'static [GoField]>,
}

const fn leaf(name: &'static str) -> GoField {
    GoField { name, nested: None }
}

const OPENID_FIELDS: &[GoField] =
    &[leaf("access_token"), leaf("token_type"), leaf("matrix_server_name"), leaf("expires_in")];
const MEMBER_FIELDS: &[GoField] = &[leaf("id"), leaf("claimed_user_id"), leaf("claimed_device_id")];
/// `SFURequest` and `DelegateDelayedLeaveRequest` have the same fields.
pub(super) const SFU_FIELDS: &[GoField] = &[
    leaf("room_id"),
    leaf("slot_id"),
    GoField { name: "openid_token", nested: Some(OPENID_FIELDS) },
    GoField { name: "member", nested: Some(MEMBER_FIELDS) },
    leaf("delay_id"),
    leaf("delay_timeout"),
    leaf("delay_cs_api_url"),
];
pub(super) const LEGACY_FIELDS: &[GoField] = &[
    leaf("room"),
    GoField { name: "openid_token", nested: Some(OPENID_FIELDS) },
    leaf("device_id"),
    leaf("delay_id"),
    leaf("delay_timeout"),
    leaf("delay_cs_api_url"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct OpenIdToken {
    pub(super) access_token: String,
    // Decoded (a wrong type is an error) but never looked at, as in the service.
    #[allow(dead_code)]
    token_type: String,
    pub(super) matrix_server_name: String,
    #[allow(dead_code)]
    expires_in: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Member {
    pub(super) id: String,
    pub(super) claimed_user_id: String,
    pub(super) claimed_device_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SfuRequest {
    pub(super) room_id: String,
    pub(super) slot_id: String,
    pub(super) openid_token: OpenIdToken,
    pub(super) member: Member,
    pub(super) delay_id: String,
    pub(super) delay_timeout: i64,
    /// Deprecated and ignored by the service.
    #[allow(dead_code)]
    delay_cs_api_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LegacySfuRequest {
    pub(super) room: String,
    pub(super) openid_token: OpenIdToken,
    pub(super) device_id: String,
    pub(super) delay_id: String,
    pub(super) delay_timeout: i64,
    #[allow(dead_code)]
    delay_cs_api_url: String,
}

/// `json.NewDecoder(body)` + `DisallowUnknownFields()` + `Decode(&request)`: reads the first
/// JSON value only, matches field names exactly or else case-insensitively, rejects unknown
/// fields, leaves `null` and missing fields at their zero value, and fails on a wrong type.
pub(super) fn go_decode<T: DeserializeOwned + Default>(body: &[u8], fields: &[GoField]) -> Result<T, ()> {
    let value = serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .next()
        .ok_or(())?
        .map_err(|_| ())?;
    if value.is_null() {
        // A top-level `null` decodes into nothing and leaves the struct as it was.
        return Ok(T::default());
    }
    serde_json::from_value(go_fields(value, fields)?).map_err(|_| ())
}

/// One struct level of [`go_decode`]: each key mapped onto its field's canonical name.
fn go_fields(value: serde_json::Value, fields: &[GoField]) -> Result<serde_json::Value, ()> {
    let serde_json::Value::Object(object) = value else { return Err(()) };
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        let field = fields
            .iter()
            .find(|field| field.name == key)
            .or_else(|| fields.iter().find(|field| field.name.eq_ignore_ascii_case(&key)))
            .ok_or(())?;
        if value.is_null() {
            continue;
        }
        let value = match field.nested {
            Some(nested) => go_fields(value, nested)?,
            None => value,
        };
        out.insert(field.name.to_string(), value);
    }
    Ok(serde_json::Value::Object(out))
}

/// The delay pair of `requests.go`: both or neither (a non-positive timeout counts as absent).
fn check_delay_pair(delay_id: &str, delay_timeout: i64) -> Result<(), Response> {
    let all = !delay_id.is_empty() && delay_timeout > 0;
    let any = !delay_id.is_empty() || delay_timeout > 0;
    if any && !all { Err(bad_json("The request body is missing `delay_id` or `delay_timeout`")) } else { Ok(()) }
}

impl SfuRequest {
    pub(super) fn validate(&self) -> Result<(), Response> {
        if self.room_id.is_empty() || self.slot_id.is_empty() {
            return Err(bad_json("The request body is missing `room_id` or `slot_id`"));
        }
        if self.member.id.is_empty()
            || self.member.claimed_user_id.is_empty()
            || self.member.claimed_device_id.is_empty()
        {
            return Err(bad_json(
                "The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`",
            ));
        }
        if self.openid_token.access_token.is_empty() || self.openid_token.matrix_server_name.is_empty() {
            return Err(bad_json(
                "The request body `openid_token` is missing a `access_token` or `matrix_server_name`",
            ));
        }
        check_delay_pair(&self.delay_id, self.delay_timeout)
    }

    /// `DelegateDelayedLeaveRequest.Validate`: its own texts, and the pair is mandatory.
    pub(super) fn validate_delegation(&self) -> Result<(), Response> {
        if self.room_id.is_empty() || self.slot_id.is_empty() {
            return Err(bad_json("The request body is missing `room_id` or `slot_id`"));
        }
        if self.member.id.is_empty()
            || self.member.claimed_user_id.is_empty()
            || self.member.claimed_device_id.is_empty()
        {
            return Err(bad_json(
                "The request body `member` is missing `id`, `claimed_user_id` or `claimed_device_id`",
            ));
        }
        if self.openid_token.access_token.is_empty() || self.openid_token.matrix_server_name.is_empty() {
            return Err(bad_json("The request body `openid_token` is missing `access_token` or `matrix_server_name`"));
        }
        if self.delay_id.is_empty() || self.delay_timeout <= 0 {
            return Err(bad_json("The request body is missing `delay_id` or `delay_timeout`"));
        }
        Ok(())
    }
}

impl LegacySfuRequest {
    pub(super) fn validate(&self) -> Result<(), Response> {
        if self.room.is_empty() {
            return Err(bad_json("Missing room parameter"));
        }
        if self.openid_token.access_token.is_empty() || self.openid_token.matrix_server_name.is_empty() {
            return Err(bad_json("Missing OpenID token parameters"));
        }
        check_delay_pair(&self.delay_id, self.delay_timeout)
    }
}
