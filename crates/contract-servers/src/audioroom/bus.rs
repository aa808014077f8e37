//! Discourse's MessageBus, as much of it as the Audioroom plugin uses (CONTROL_PLANES.md §1.4,
//! the `discourse/message_bus` wire protocol): per-channel message ids, a global id, messages
//! addressed to some users only, backlog by last id, `/__status` for new subscriptions, long
//! polls and `?dlp=t`, chunked framing unless the client sends `Dont-Chunk`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::layers::CurrentUser;
use super::params::Params;
use super::responses::json_response;
use super::state::Shared;

const STATUS_CHANNEL: &str = "/__status";

#[derive(Debug, Clone)]
struct Message {
    global_id: u64,
    message_id: i64,
    channel: String,
    data: Value,
    /// `None`: everyone on the channel; else only these users.
    user_ids: Option<Vec<u64>>,
}

#[derive(Debug, Default)]
pub(super) struct Bus {
    messages: Vec<Message>,
    last_ids: HashMap<String, i64>,
    global_id: u64,
}

impl Bus {
    pub(super) fn publish(&mut self, channel: &str, data: Value, user_ids: Option<Vec<u64>>) {
        let last = self.last_ids.entry(channel.to_string()).or_insert(0);
        *last += 1;
        self.global_id += 1;
        self.messages.push(Message {
            global_id: self.global_id,
            message_id: *last,
            channel: channel.to_string(),
            data,
            user_ids,
        });
    }

    /// `MessageBus::Client#backlog`: what a client subscribed at `subscriptions` should get now.
    fn backlog(&self, user: u64, subscriptions: &[(String, i64)]) -> Vec<Value> {
        let mut answer = Vec::new();
        let mut status = serde_json::Map::new();
        for (channel, client_last) in subscriptions {
            let server_last = self.last_ids.get(channel).copied().unwrap_or(0);
            let mut from = *client_last;
            if from < -1 {
                // "-n": the last n-1 messages.
                from = (server_last + from + 1).max(0);
            } else if from > server_last {
                // The client is ahead of the bus (it restarted): start over from now.
                from = -1;
            }
            if from == -1 {
                status.insert(channel.clone(), json!(server_last));
                continue;
            }
            let mut hidden = false;
            for message in
                self.messages.iter().filter(|message| &message.channel == channel && message.message_id > from)
            {
                let allowed = message.user_ids.as_ref().is_none_or(|users| users.contains(&user));
                if allowed {
                    answer.push(json!({
                        "global_id": message.global_id,
                        "message_id": message.message_id,
                        "channel": message.channel,
                        "data": message.data,
                    }));
                } else {
                    hidden = true;
                }
            }
            if hidden {
                status.insert(channel.clone(), json!(server_last));
            }
        }
        if !status.is_empty() {
            answer.push(json!({ "global_id": -1, "message_id": -1, "channel": STATUS_CHANNEL, "data": status }));
        }
        answer
    }
}

/// `POST /message-bus/<client_id>/poll`: answers at once when there is backlog (or with
/// `?dlp=t`), else holds the request until something is published or the long poll ends. The
/// params name the channels, each with the last id the client saw.
pub(super) async fn poll(
    State(shared): State<Arc<Shared>>,
    CurrentUser(user): CurrentUser,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let dlp = query.as_deref().is_some_and(|query| query.split('&').any(|pair| pair == "dlp=t"));
    let chunked = headers.get("Dont-Chunk").is_none();
    let subscriptions: Vec<(String, i64)> = params
        .iter()
        .filter(|(name, _)| name.starts_with('/'))
        .filter_map(|(name, value)| {
            let last = match value {
                Value::Number(number) => number.as_i64(),
                Value::String(text) => text.trim().parse().ok(),
                _ => None,
            }?;
            Some((name.clone(), last))
        })
        .collect();
    let long_poll = shared.lock().long_poll;
    let deadline = Instant::now() + if dlp { Duration::ZERO } else { long_poll };
    loop {
        // Registered before looking, so a publish between the look and the wait still wakes us.
        let published = shared.published.notified();
        tokio::pin!(published);
        published.as_mut().enable();
        let backlog = {
            let mut forum = shared.lock();
            forum.prune(std::time::Instant::now());
            forum.bus.backlog(user.id, &subscriptions)
        };
        if !backlog.is_empty() || Instant::now() >= deadline {
            return answer(backlog, chunked);
        }
        tokio::select! {
            () = published => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn answer(messages: Vec<Value>, chunked: bool) -> Response {
    let body = Value::Array(messages);
    if !chunked {
        return json_response(StatusCode::OK, body);
    }
    // MessageBus's streaming framing: each batch followed by `\r\n|\r\n`.
    let mut response = (StatusCode::OK, format!("{body}\r\n|\r\n")).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_subscribers_get_a_status_and_then_only_newer_messages() {
        let mut bus = Bus::default();
        bus.publish("/a", json!({"n": 1}), None);
        let first = bus.backlog(7, &[("/a".into(), -1)]);
        assert_eq!(first.len(), 1, "a -1 subscription gets only the status: {first:?}");
        assert_eq!(first[0]["channel"], "/__status");
        assert_eq!(first[0]["data"]["/a"], 1);
        bus.publish("/a", json!({"n": 2}), None);
        bus.publish("/a", json!({"n": 3}), Some(vec![8]));
        let next = bus.backlog(7, &[("/a".into(), 1)]);
        assert_eq!(next[0]["data"]["n"], 2, "the message after the last id arrives");
        assert_eq!(
            next.last().map(|status| status["data"]["/a"].clone()),
            Some(json!(3)),
            "a hidden message moves the id"
        );
        assert_eq!(bus.backlog(8, &[("/a".into(), 2)])[0]["data"]["n"], 3, "the addressed user gets it");
    }
}
