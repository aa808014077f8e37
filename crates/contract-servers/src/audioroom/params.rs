//! Rails' `params`: the query string merged with an `application/x-www-form-urlencoded` or
//! `application/json` body (the body wins a clash). Values stay as sent; handlers cast them as
//! the controllers do ([`super::state::cast_bool`], [`super::state::ruby_to_i`]). A body that
//! does not parse adds nothing, as a handler that only reads the params it knows never notices.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::responses::Refusal;

/// The params of a request, as a handler's last extractor (it reads the body).
#[derive(Debug, Default)]
pub(super) struct Params(HashMap<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Params, Response> {
        let query = request.uri().query().map(str::to_string);
        let content_type =
            request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_string);
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        Ok(Params(parse(query.as_deref(), content_type.as_deref(), &body)))
    }
}

impl Params {
    /// The value sent, whatever it is (`Some(Null)` for an explicit `null`: `params.key?`).
    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// `params.require(name)`: the value, unless it is missing or blank (`nil`, a blank
    /// string, an empty array or object); `false` passes.
    pub(super) fn require(&self, name: &'static str) -> Result<&Value, Refusal> {
        match self.0.get(name) {
            None | Some(Value::Null) => Err(Refusal::ParamMissing(name)),
            Some(Value::String(text)) if text.trim().is_empty() => Err(Refusal::ParamMissing(name)),
            Some(Value::Array(items)) if items.is_empty() => Err(Refusal::ParamMissing(name)),
            Some(Value::Object(fields)) if fields.is_empty() => Err(Refusal::ParamMissing(name)),
            Some(value) => Ok(value),
        }
    }

    /// A present, non-blank value as trimmed text (`.present?`).
    pub(super) fn text(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(true) => Some("true".to_string()),
            _ => None,
        }
    }

    /// Every param, for endpoints whose param names are data (MessageBus channels).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

/// The params of a request with this query, `Content-Type` and body.
pub(super) fn parse(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> HashMap<String, Value> {
    let mut params: HashMap<String, Value> = HashMap::new();
    let form = |bytes: &[u8], params: &mut HashMap<String, Value>| {
        for (name, value) in url::form_urlencoded::parse(bytes) {
            params.insert(name.into_owned(), Value::String(value.into_owned()));
        }
    };
    if let Some(query) = query {
        form(query.as_bytes(), &mut params);
    }
    let content_type = content_type.unwrap_or_default();
    if content_type.contains("application/json") {
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) {
            params.extend(object);
        }
    } else if content_type.contains("application/x-www-form-urlencoded") {
        form(body, &mut params);
    }
    params
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_body_joins_the_query_and_wins_a_clash() {
        let json = parse(Some("user_id=1&dlp=t"), Some("application/json; charset=utf-8"), br#"{"user_id": 2}"#);
        assert_eq!((json.get("user_id"), json.get("dlp")), (Some(&json!(2)), Some(&json!("t"))), "{json:?}");
        let form = parse(Some("role=speaker"), Some("application/x-www-form-urlencoded"), b"role=moderator&muted=true");
        assert_eq!((form.get("role"), form.get("muted")), (Some(&json!("moderator")), Some(&json!("true"))));
        let plain = parse(None, Some("text/plain"), b"user_id=3");
        assert!(plain.is_empty(), "another content type's body adds nothing: {plain:?}");
        let broken = parse(Some("a=1"), Some("application/json"), b"{not json");
        assert_eq!(broken.len(), 1, "a body that does not parse adds nothing: {broken:?}");
    }

    #[test]
    fn require_refuses_missing_and_blank_values_but_not_false() {
        let params = Params(parse(
            Some("blank=%20&zero=0"),
            Some("application/json"),
            br#"{"off": false, "none": null, "list": []}"#,
        ));
        assert!(params.require("off").is_ok(), "false is a value");
        assert!(params.require("zero").is_ok());
        for name in ["blank", "none", "list", "absent"] {
            assert!(params.require(name).is_err(), "{name} is missing");
        }
        assert!(params.get("none").is_some() && params.get("absent").is_none(), "key? sees a null");
        assert_eq!(params.text("blank"), None, "a blank value is no text");
    }
}
