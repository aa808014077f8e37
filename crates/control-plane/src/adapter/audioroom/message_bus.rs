//! Room events over Discourse's MessageBus (CONTROL_PLANES.md §1.4).
//!
//! `POST /message-bus/<client id>/poll` with `{"/audioroom/rooms/<id>": <last id>, "__seq": n}`.
//! The first poll sends `-1` ("from now on"); the answer carries a `/__status` message with the
//! channel's current last id, and every later answer's messages carry theirs, so nothing
//! published between two polls is lost. `participants` becomes [`PlaneEvent::Participants`],
//! `role_change` [`PlaneEvent::RoleChanged`] (a stage's `participant` shown as `listener`),
//! `kicked` [`PlaneEvent::Removed`] (after which the watch ends: the forum does not evict from
//! LiveKit, the client must leave). A held poll ends with the first message published for the
//! user (one per answer); the rest wait in the backlog for the next poll.
//!
//! **Long poll, not `?dlp=t`.** Every poll is one request against the key's 20-a-minute and
//! 2880-a-day budget. A long poll is held by the forum for up to 25 s and returns as soon as
//! something is published, so a quiet room costs 2.4 requests a minute and events arrive at
//! once; short polling would need a poll every few seconds (10–20 a minute, the whole budget) for
//! the same latency. In a busy room each message ends a long poll early, so polls are also paced
//! by a small budget: a burst of [`POLL_BURST`] and then one per [`DEFAULT_POLL_SPACING`] (at most
//! 10 a minute). Messages published meanwhile wait in the backlog and arrive together.
//!
//! `Dont-Chunk: true` asks for one JSON array per answer instead of MessageBus's chunked
//! streaming framing (which is still understood, should a proxy drop the header).
//!
//! **A poll never fails for the key.** MessageBus runs before Rails and rescues every error of
//! the user lookup, so a poll with an unknown, revoked or rate-limited key is answered as an
//! anonymous one: 200, with what is addressed to the user (`kicked`) or to a group (a public
//! room's `participants`) left out and the channel's id moved past it. The watch cannot tell;
//! the session learns of a kick from its next heartbeat (403) instead, and of a bad key from
//! the other requests.
//!
//! Failures: rate limiting, 5xx, unreachable forum and garbled answers send
//! [`PlaneEvent::Degraded`] and retry after an exponential backoff (2 s doubling to 60 s, or the
//! forum's `Retry-After` if longer); a rejected key, a forbidden or missing room end the watch
//! with the error.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::user_api_key::random_hex;
use super::{AudioroomPlane, Call, room_argument, wire};
use crate::http::{parse_json, redact_url};
use crate::{JoinGrant, PlaneError, PlaneEvent};

/// Polls allowed back to back before pacing starts.
pub const POLL_BURST: u32 = 3;
/// Smallest spacing between polls once the burst is spent: 10 polls a minute at most, leaving
/// the rest of the key's 20 a minute to heartbeats (3) and the user's own actions.
pub const DEFAULT_POLL_SPACING: Duration = Duration::from_secs(6);
/// The forum holds a long poll for 25 s; the margin covers a slow forum before we call it dead.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(25 + 15);
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The channel MessageBus reports last ids on.
const STATUS_CHANNEL: &str = "/__status";

/// Runs until `events` is closed, the user is removed, or a failure that retrying cannot fix.
pub(super) async fn watch(
    plane: &AudioroomPlane,
    grant: &JoinGrant,
    events: mpsc::Sender<PlaneEvent>,
) -> Result<(), PlaneError> {
    let room = room_argument(&grant.room_id)?;
    let info = plane.room_info(room).await?;
    let channel = format!("/audioroom/rooms/{}", info.id);
    // A MessageBus client id names one subscriber (a browser tab); a fresh one per watch keeps
    // two Parley sessions on the same key from stealing each other's messages.
    let url = plane.endpoint(&["message-bus", &random_hex(16), "poll"])?;
    let mut last_id: i64 = -1;
    let mut seq: u64 = 0;
    let mut budget = PollBudget::new(POLL_BURST, plane.poll_spacing, Instant::now());
    let mut failures: u32 = 0;
    loop {
        let wait = budget.take(Instant::now());
        if !wait.is_zero() && !pause(&events, wait).await {
            return Ok(());
        }
        let mut subscriptions = serde_json::Map::new();
        subscriptions.insert(channel.clone(), json!(last_id));
        subscriptions.insert("__seq".into(), json!(seq));
        seq += 1;
        let request = plane
            .request(Method::POST, &url)
            .header("Dont-Chunk", "true")
            .header("X-SILENCE-LOGGER", "true")
            .timeout(LONG_POLL_TIMEOUT)
            .json(&Value::Object(subscriptions));
        let outcome = tokio::select! {
            () = events.closed() => return Ok(()),
            outcome = poll(plane, request, room) => outcome,
        };
        let messages = match outcome {
            Ok(messages) => {
                failures = 0;
                messages
            }
            Err(error) if !worth_retrying(&error) => return Err(error),
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = backoff(failures, &error);
                tracing::warn!(code = error.code(), "room events interrupted: {error}; retrying in {delay:?}");
                let message =
                    format!("live room updates are interrupted ({error}); retrying in {} s", delay.as_secs().max(1));
                if events.send(PlaneEvent::Degraded { message }).await.is_err() || !pause(&events, delay).await {
                    return Ok(());
                }
                continue;
            }
        };
        for message in messages {
            if message.channel == STATUS_CHANNEL {
                if let Some(id) = message.data.get(&channel).and_then(Value::as_i64) {
                    last_id = id;
                }
                continue;
            }
            if message.channel != channel {
                continue;
            }
            last_id = message.message_id;
            let Some(event) = room_event(plane, message.data, info.stage) else { continue };
            let removed = matches!(event, PlaneEvent::Removed { .. });
            if events.send(event).await.is_err() || removed {
                return Ok(());
            }
        }
    }
}

async fn poll(
    plane: &AudioroomPlane,
    request: reqwest::RequestBuilder,
    room: &str,
) -> Result<Vec<wire::BusMessage>, PlaneError> {
    let response = plane.send_request(request, Call::Poll(room)).await?;
    let url = redact_url(response.url());
    let body = response
        .text()
        .await
        .map_err(|error| PlaneError::Malformed { detail: format!("reading the answer from {url}: {error}") })?;
    parse_messages(&body, &url)
}

/// One JSON array, or MessageBus's chunked framing (`[…]\r\n|\r\n[…]\r\n|\r\n`).
fn parse_messages(body: &str, url: &str) -> Result<Vec<wire::BusMessage>, PlaneError> {
    let mut messages = Vec::new();
    for chunk in body.split("\r\n|\r\n").map(str::trim).filter(|chunk| !chunk.is_empty()) {
        messages.extend(parse_json::<Vec<wire::BusMessage>>(chunk, url)?);
    }
    Ok(messages)
}

fn room_event(plane: &AudioroomPlane, data: Value, stage: bool) -> Option<PlaneEvent> {
    let message: wire::RoomMessage = match serde_json::from_value(data) {
        Ok(message) => message,
        Err(error) => {
            tracing::debug!("skipping a room message of unknown shape: {error}");
            return None;
        }
    };
    match message {
        wire::RoomMessage::Participants { participants } => Some(PlaneEvent::Participants {
            participants: participants.into_iter().map(|participant| plane.participant(participant, stage)).collect(),
        }),
        wire::RoomMessage::RoleChange { user_id, role } => {
            let identity = match user_id {
                Value::Number(number) => number.to_string(),
                Value::String(text) => text,
                _ => return None,
            };
            Some(PlaneEvent::RoleChanged { identity, role: super::parley_role(stage, role) })
        }
        wire::RoomMessage::Kicked => {
            Some(PlaneEvent::Removed { reason: "a moderator removed you from the room".into() })
        }
        wire::RoomMessage::Other => None,
    }
}

/// Sleeps `delay` unless the receiver goes away first; `false` when it did.
async fn pause(events: &mpsc::Sender<PlaneEvent>, delay: Duration) -> bool {
    tokio::select! {
        () = events.closed() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Failures that a later poll may not hit. The rest (a rejected key, a forbidden or deleted
/// room) would fail the same way forever.
fn worth_retrying(error: &PlaneError) -> bool {
    error.is_transient() || matches!(error, PlaneError::Malformed { .. } | PlaneError::Rejected { .. })
}

fn backoff(failures: u32, error: &PlaneError) -> Duration {
    let doubling = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF);
    match error {
        PlaneError::RateLimited { retry_after: Some(wait) } => doubling.max(*wait),
        _ => doubling,
    }
}

/// A token bucket: `capacity` polls at once, then one per `spacing`.
#[derive(Debug)]
struct PollBudget {
    capacity: u32,
    available: u32,
    spacing: Duration,
    /// When the last token was credited.
    refilled_at: Instant,
}

impl PollBudget {
    fn new(capacity: u32, spacing: Duration, now: Instant) -> Self {
        PollBudget { capacity, available: capacity, spacing, refilled_at: now }
    }

    /// Takes one poll's token; returns how long to wait before polling (zero when one is there).
    fn take(&mut self, now: Instant) -> Duration {
        if self.spacing.is_zero() {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned = u32::try_from(elapsed.as_nanos() / self.spacing.as_nanos()).unwrap_or(u32::MAX);
        if earned >= self.capacity - self.available {
            self.available = self.capacity;
            self.refilled_at = now;
        } else if earned > 0 {
            self.available += earned;
            self.refilled_at += self.spacing * earned;
        }
        if self.available > 0 {
            self.available -= 1;
            return Duration::ZERO;
        }
        // The next token is spent by this poll as soon as it is earned.
        let due = self.refilled_at + self.spacing;
        self.refilled_at = due;
        due.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_poll_per_spacing() {
        let start = Instant::now();
        let spacing = Duration::from_secs(6);
        let mut budget = PollBudget::new(3, spacing, start);
        for poll in 0..3 {
            assert_eq!(budget.take(start), Duration::ZERO, "poll {poll} of the burst waits");
        }
        assert_eq!(budget.take(start), spacing, "the fourth poll waits one spacing");
        assert_eq!(budget.take(start + spacing), spacing, "the fifth waits for the next token");
        let quiet = start + Duration::from_secs(120);
        for poll in 0..3 {
            assert_eq!(budget.take(quiet), Duration::ZERO, "after a quiet spell, poll {poll} is free");
        }
        assert!(budget.take(quiet) > Duration::ZERO, "the burst does not grow past its capacity");
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_honours_retry_after() {
        let server = PlaneError::Server { status: 502, message: String::new() };
        let delays: Vec<u64> = (1..=8).map(|failures| backoff(failures, &server).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        let limited = PlaneError::RateLimited { retry_after: Some(Duration::from_secs(45)) };
        assert_eq!(backoff(1, &limited), Duration::from_secs(45), "Retry-After wins when longer");
    }

    #[test]
    fn chunked_answers_are_understood() {
        let body = "[{\"global_id\":1,\"message_id\":3,\"channel\":\"/a\",\"data\":{}}]\r\n|\r\n[]\r\n|\r\n";
        let messages = parse_messages(body, "http://forum/poll").expect("chunked framing parses");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].message_id, 3);
        assert_eq!(parse_messages("<html>", "u").unwrap_err().code(), "malformed_response");
    }
}
