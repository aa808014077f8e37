//! Unit tests of the Go behaviours the service depends on: `json.Marshal`'s HTML escaping and
//! `encoding/json`'s decoding.

use super::go_json_array;
use super::requests::{SFU_FIELDS, SfuRequest, go_decode};

#[test]
fn go_json_escapes_html_characters() {
    assert_eq!(go_json_array(&["!a:b", "m.call#"]), r#"["!a:b","m.call#"]"#);
    assert_eq!(go_json_array(&["<&>"]), r#"["\u003c\u0026\u003e"]"#);
}

#[test]
fn go_decoding_matches_encoding_json() {
    let decode = |body: &str| go_decode::<SfuRequest>(body.as_bytes(), SFU_FIELDS);
    let request = decode(r#"{"ROOM_ID":"!r:s","Slot_Id":"m.call#","delay_timeout":-5} trailing"#)
        .expect("case-insensitive names, trailing bytes ignored");
    assert_eq!((request.room_id.as_str(), request.slot_id.as_str(), request.delay_timeout), ("!r:s", "m.call#", -5));
    let request = decode(r#"{"room_id":null,"member":null,"openid_token":{"expires_in":-1}}"#).expect("nulls");
    assert!(request.room_id.is_empty() && request.member.id.is_empty(), "null leaves the zero value");
    assert!(decode("null").is_ok(), "a top-level null decodes into nothing");
    assert!(decode(r#"{"delay_cs_api_url":"https://x"}"#).is_ok(), "the deprecated field is known");
    for bad in ["", "  ", "[]", r#"{"extra":1}"#, r#"{"member":{"extra":1}}"#, r#"{"room_id":5}"#] {
        assert!(decode(bad).is_err(), "{bad:?} must fail to decode");
    }
    for bad in [r#"{"delay_timeout":1.5}"#, r#"{"delay_timeout":"1"}"#, r#"{"delay_timeout":9223372036854775808}"#] {
        assert!(decode(bad).is_err(), "{bad:?} is not a Go int");
    }
}
