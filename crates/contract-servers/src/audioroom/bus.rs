//! Discourse's MessageBus (`discourse/message_bus` 4.5.2 and Discourse's
//! `config/initializers/004-message_bus.rb`), as much of it as the Audioroom plugin uses.
//!
//! * Messages carry per-channel ids and a global id, and are addressed to everyone, to some
//!   users, or to some groups ([`Audience`]); `Client#allowed?` decides who gets them.
//! * `POST /message-bus/<client id>/poll` runs as Rack middleware, before Rails: the user comes
//!   from `CurrentUser.lookup_from_env` with every error rescued, so a missing, unknown,
//!   rate-limited or under-scoped user API key is an **anonymous** poll — 200, with user- and
//!   group-addressed messages withheld — never a 403 or 429. A valid key's poll still counts
//!   against its rate limits.
//! * `Client#backlog`: messages after each subscription's last id; `-1` subscribes "from now"
//!   and `null`/`""` from the channel's last id; withheld messages and new subscriptions move
//!   the client on with a `/__status` message.
//! * Answers: `?dlp=t` turns long polling off, so the backlog (maybe `[]`) comes back at once
//!   as one `application/json` array, chunked or not. Otherwise, without `Dont-Chunk`, the poll
//!   streams `text/plain` frames (`<json>\r\n|\r\n`): the backlog or `[]` at once, one frame per
//!   message published while it is held, and a final `[]` when the long poll (25 s) ends. With
//!   `Dont-Chunk`, a backlog comes back at once as JSON, else the poll is held until the first
//!   message it may see (`[msg]`) or the end of the long poll (`[]`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::params::Params;
use super::state::{Shared, TRUST_LEVEL_0};

const STATUS_CHANNEL: &str = "/__status";
/// `MessageBus::Client#write_chunk`'s separator.
const FRAME_END: &str = "\r\n|\r\n";

/// Who a message is for (`MessageBus.publish`'s `user_ids:` / `group_ids:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Audience {
    Everyone,
    Users(Vec<i64>),
    Groups(Vec<u64>),
}

#[derive(Debug, Clone)]
struct Message {
    global_id: u64,
    message_id: i64,
    channel: String,
    data: Value,
    audience: Audience,
}

impl Message {
    fn json(&self) -> Value {
        json!({
            "global_id": self.global_id,
            "message_id": self.message_id,
            "channel": self.channel,
            "data": self.data,
        })
    }
}

/// Who polls: a user and their groups, or nobody (an anonymous poll).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Subscriber {
    user_id: Option<i64>,
    group_ids: Vec<u64>,
}

impl Subscriber {
    /// A signed-in user: every user is in trust level 0.
    pub(super) fn user(id: i64) -> Subscriber {
        Subscriber { user_id: Some(id), group_ids: vec![TRUST_LEVEL_0] }
    }

    /// `Client#allowed?` for messages without client ids or filters.
    fn allowed(&self, message: &Message) -> bool {
        match &message.audience {
            Audience::Everyone => true,
            Audience::Users(users) => self.user_id.is_some_and(|user| users.contains(&user)),
            Audience::Groups(groups) => groups.iter().any(|group| self.group_ids.contains(group)),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Bus {
    messages: Vec<Message>,
    last_ids: HashMap<String, i64>,
    global_id: u64,
}

impl Bus {
    pub(super) fn publish(&mut self, channel: &str, data: Value, audience: Audience) {
        let last = self.last_ids.entry(channel.to_string()).or_insert(0);
        *last += 1;
        self.global_id += 1;
        self.messages.push(Message {
            global_id: self.global_id,
            message_id: *last,
            channel: channel.to_string(),
            data,
            audience,
        });
    }

    fn last_id(&self, channel: &str) -> i64 {
        self.last_ids.get(channel).copied().unwrap_or(0)
    }

    /// `MessageBus::Client#backlog`: what a client subscribed at `subscriptions` gets now.
    fn backlog(&self, subscriber: &Subscriber, subscriptions: &[(String, i64)]) -> Vec<Value> {
        let mut answer = Vec::new();
        let mut status = serde_json::Map::new();
        for (channel, client_last) in subscriptions {
            let server_last = self.last_id(channel);
            let mut from = *client_last;
            if from < -1 {
                // "-n": the last n-1 messages.
                from = (server_last + from + 1).max(0);
            } else if from == -1 || from > server_last {
                // A new subscription, or a client ahead of the bus (it restarted): from now on.
                status.insert(channel.clone(), json!(server_last));
                continue;
            } else if from == server_last {
                continue;
            }
            let mut withheld = false;
            for message in
                self.messages.iter().filter(|message| &message.channel == channel && message.message_id > from)
            {
                if subscriber.allowed(message) {
                    answer.push(message.json());
                } else {
                    withheld = true;
                }
            }
            if withheld {
                status.insert(channel.clone(), json!(server_last));
            }
        }
        if !status.is_empty() {
            answer.push(json!({ "global_id": -1, "message_id": -1, "channel": STATUS_CHANNEL, "data": status }));
        }
        answer
    }

    /// What `ConnectionManager#notify_clients` hands a held client: the messages published
    /// after `after` on its channels that it may see.
    fn published_since(&self, after: u64, subscriber: &Subscriber, subscriptions: &[(String, i64)]) -> Vec<Value> {
        self.messages
            .iter()
            .filter(|message| message.global_id > after)
            .filter(|message| subscriptions.iter().any(|(channel, _)| *channel == message.channel))
            .filter(|message| subscriber.allowed(message))
            .map(Message::json)
            .collect()
    }
}

/// `POST /message-bus/<client_id>/poll`; see the module doc for the answers.
pub(super) async fn poll(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    version: Version,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let subscriber = subscriber(&shared, &headers);
    let long_polling = !query.as_deref().is_some_and(|query| query.contains("dlp=t"));
    let chunked = version == Version::HTTP_11 && headers.get("Dont-Chunk").is_none();
    let (backlog, seen, subscriptions, long_poll) = {
        let mut forum = shared.lock();
        forum.prune(std::time::Instant::now());
        let subscriptions = subscriptions(&forum.bus, &params);
        (forum.bus.backlog(&subscriber, &subscriptions), forum.bus.global_id, subscriptions, forum.long_poll)
    };
    if !long_polling || (!backlog.is_empty() && !chunked) {
        return json_answer(Value::Array(backlog));
    }
    let mut held = Held { shared, subscriber, subscriptions, seen, deadline: Instant::now() + long_poll };
    if chunked {
        return streamed(backlog, held);
    }
    match held.wait().await {
        Some(messages) => json_answer(Value::Array(messages.into_iter().take(1).collect())),
        None => json_answer(json!([])),
    }
}

/// `setup_message_bus_env`: the key's user if `CurrentUser.lookup_from_env` finds one; any
/// failure (unknown key, rate limit, scope) is rescued into an anonymous poll.
fn subscriber(shared: &Shared, headers: &HeaderMap) -> Subscriber {
    let Some(key) = headers.get("User-Api-Key").and_then(|value| value.to_str().ok()).map(str::trim) else {
        return Subscriber::default();
    };
    let mut forum = shared.lock();
    let Some(api_key) = forum.api_keys.get(key).cloned() else { return Subscriber::default() };
    if forum.rate_limit(key, std::time::Instant::now()).is_err() {
        return Subscriber::default();
    }
    // `UserApiKeyScope`: `message_bus` allows `POST /message-bus/*`, `write` everything; `read`
    // only GETs.
    if !api_key.scopes.iter().any(|scope| scope == "write" || scope == "message_bus") {
        return Subscriber::default();
    }
    Subscriber::user(api_key.user_id)
}

/// `client.subscribe(channel, last_id)` for every param but `__seq`: `null` or `""` means the
/// channel's last id; text is read with Ruby's `to_i`.
fn subscriptions(bus: &Bus, params: &Params) -> Vec<(String, i64)> {
    params
        .iter()
        .filter(|(name, _)| name.as_str() != "__seq")
        .filter_map(|(name, value)| {
            let last = match value {
                Value::Null => bus.last_id(name),
                Value::String(text) if text.is_empty() => bus.last_id(name),
                Value::Number(_) | Value::String(_) => super::state::ruby_to_i(value),
                _ => return None,
            };
            Some((name.clone(), last))
        })
        .collect()
}

/// A poll held open: who it is for, what it listens to, the last global id it has seen.
struct Held {
    shared: Arc<Shared>,
    subscriber: Subscriber,
    subscriptions: Vec<(String, i64)>,
    seen: u64,
    deadline: Instant,
}

impl Held {
    /// The next messages published for this poll, or `None` when the long poll ends first.
    async fn wait(&mut self) -> Option<Vec<Value>> {
        loop {
            // Registered before looking, so a publish between the look and the wait still wakes us.
            let published = self.shared.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let fresh = {
                let forum = self.shared.lock();
                let fresh = forum.bus.published_since(self.seen, &self.subscriber, &self.subscriptions);
                self.seen = forum.bus.global_id;
                fresh
            };
            if !fresh.is_empty() {
                return Some(fresh);
            }
            if Instant::now() >= self.deadline {
                return None;
            }
            tokio::select! {
                () = published => {}
                () = tokio::time::sleep_until(self.deadline) => {}
            }
        }
    }
}

/// The chunked long poll: frames until the long poll ends.
fn streamed(backlog: Vec<Value>, held: Held) -> Response {
    let first = frame(&Value::Array(backlog));
    let stream = futures_util::stream::unfold(Some((Some(first), held)), |state| async move {
        let (first, mut held) = state?;
        if let Some(first) = first {
            return Some((Ok::<_, std::convert::Infallible>(first), Some((None, held))));
        }
        match held.wait().await {
            Some(messages) => {
                let frames: String = messages.iter().map(|message| frame(&json!([message]))).collect();
                Some((Ok(frames), Some((None, held))))
            }
            // `ensure_closed!`: a last empty frame, then the end of the body.
            None => Some((Ok(frame(&json!([]))), None)),
        }
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let headers = response.headers_mut();
    bus_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// One chunk's text: the JSON, a separator inside it doubled (as proxies may re-chunk).
fn frame(data: &Value) -> String {
    format!("{}{FRAME_END}", data.to_string().replace(FRAME_END, "\r\n||\r\n"))
}

fn json_answer(body: Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    bus_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// The middleware's headers on every answer, and Discourse's extra ones.
fn bus_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("must-revalidate, private, max-age=0"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-SILENCE-LOGGER, X-Shared-Session-Key, Dont-Chunk, Discourse-Present"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("7200"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everyone(bus: &mut Bus, data: Value) {
        bus.publish("/a", data, Audience::Everyone);
    }

    #[test]
    fn new_subscribers_get_a_status_and_then_only_newer_messages() {
        let mut bus = Bus::default();
        let alice = Subscriber::user(7);
        everyone(&mut bus, json!({"n": 1}));
        let first = bus.backlog(&alice, &[("/a".into(), -1)]);
        assert_eq!(first.len(), 1, "a -1 subscription gets only the status: {first:?}");
        assert_eq!(first[0]["channel"], "/__status");
        assert_eq!(first[0]["data"]["/a"], 1);
        everyone(&mut bus, json!({"n": 2}));
        bus.publish("/a", json!({"n": 3}), Audience::Users(vec![8]));
        let next = bus.backlog(&alice, &[("/a".into(), 1)]);
        assert_eq!(next[0]["data"]["n"], 2, "the message after the last id arrives");
        assert_eq!(
            next.last().map(|status| status["data"]["/a"].clone()),
            Some(json!(3)),
            "a withheld message moves the id"
        );
        assert_eq!(bus.backlog(&Subscriber::user(8), &[("/a".into(), 2)])[0]["data"]["n"], 3, "its user gets it");
        assert!(bus.backlog(&alice, &[("/a".into(), 3)]).is_empty(), "an up-to-date client gets nothing");
    }

    #[test]
    fn group_messages_reach_signed_in_users_and_nobody_anonymous() {
        let mut bus = Bus::default();
        bus.publish("/a", json!({"n": 1}), Audience::Groups(vec![TRUST_LEVEL_0]));
        assert_eq!(bus.backlog(&Subscriber::user(7), &[("/a".into(), 0)])[0]["data"]["n"], 1);
        let anonymous = bus.backlog(&Subscriber::default(), &[("/a".into(), 0)]);
        assert_eq!(anonymous.len(), 1, "only the status: {anonymous:?}");
        assert_eq!(anonymous[0]["channel"], "/__status");
    }
}
