//! Serializer fields, as DRF validates them: the top-level dictionary, `CharField`,
//! `BooleanField` and `DictField`, with DRF's error texts collected per field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// DRF's message for a missing required field.
pub(super) const REQUIRED: &str = "This field is required.";

/// Collected field errors; a 400 with them when any.
#[derive(Default)]
pub(super) struct Errors(serde_json::Map<String, Value>);

impl Errors {
    pub(super) fn add(&mut self, field: &str, message: &str) {
        self.0.insert(field.to_string(), json!([message]));
    }

    pub(super) fn finish(self) -> Result<(), Response> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err((StatusCode::BAD_REQUEST, axum::Json(Value::Object(self.0))).into_response())
        }
    }
}

/// `Serializer.run_validation` on the top-level data: it must be a dictionary.
pub(super) fn object(data: &Value) -> Result<&serde_json::Map<String, Value>, Response> {
    let found = match data {
        Value::Object(object) => return Ok(object),
        Value::Null => return Err(non_field("This field may not be null.")),
        other => python_type(other),
    };
    Err(non_field(&format!("Invalid data. Expected a dictionary, but got {found}.")))
}

pub(super) fn non_field(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "non_field_errors": [message] }))).into_response()
}

fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// `CharField` options.
#[derive(Clone, Copy)]
pub(super) struct Char {
    pub(super) required: bool,
    pub(super) allow_null: bool,
    pub(super) allow_blank: bool,
    pub(super) min_length: usize,
    pub(super) max_length: Option<usize>,
}

pub(super) const CHAR: Char =
    Char { required: true, allow_null: false, allow_blank: false, min_length: 0, max_length: None };

/// A `CharField`: `Ok(None)` when absent (not required) or null (allowed).
pub(super) fn char_field(
    object: &serde_json::Map<String, Value>,
    name: &str,
    field: Char,
    errors: &mut Errors,
) -> Option<String> {
    let value = match object.get(name) {
        None => {
            if field.required {
                errors.add(name, REQUIRED);
            }
            return None;
        }
        Some(Value::Null) => {
            if !field.allow_null {
                errors.add(name, "This field may not be null.");
            }
            return None;
        }
        // `CharField.to_internal_value`: numbers become strings, booleans and containers fail.
        Some(Value::String(text)) => text.trim().to_string(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => {
            errors.add(name, "Not a valid string.");
            return None;
        }
    };
    if value.is_empty() && !field.allow_blank {
        errors.add(name, "This field may not be blank.");
        return None;
    }
    let length = value.chars().count();
    if let Some(max) = field.max_length
        && length > max
    {
        errors.add(name, &format!("Ensure this field has no more than {max} characters."));
        return None;
    }
    if length < field.min_length && !value.is_empty() {
        errors.add(name, &format!("Ensure this field has at least {} characters.", field.min_length));
        return None;
    }
    Some(value)
}

/// A required `BooleanField`, with DRF's accepted spellings.
pub(super) fn bool_field(object: &serde_json::Map<String, Value>, name: &str, errors: &mut Errors) -> Option<bool> {
    let parsed = match object.get(name) {
        None => {
            errors.add(name, REQUIRED);
            return None;
        }
        Some(Value::Null) => {
            errors.add(name, "This field may not be null.");
            return None;
        }
        Some(Value::Bool(value)) => Some(*value),
        // DRF compares with `in TRUE_VALUES`, where `1 == 1.0`.
        Some(Value::Number(number)) => match number.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Some(Value::String(text)) => match text.as_str() {
            "t" | "T" | "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" | "1" => {
                Some(true)
            }
            "f" | "F" | "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" | "0" => {
                Some(false)
            }
            _ => None,
        },
        Some(_) => None,
    };
    if parsed.is_none() {
        errors.add(name, "Must be a valid boolean.");
    }
    parsed
}

/// A `DictField(required=False, allow_null=True)`.
pub(super) fn dict_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    name: &str,
    errors: &mut Errors,
) -> Option<&'a Value> {
    match object.get(name) {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => Some(value),
        Some(other) => {
            errors.add(name, &format!("Expected a dictionary of items but got type \"{}\".", python_type(other)));
            None
        }
    }
}
