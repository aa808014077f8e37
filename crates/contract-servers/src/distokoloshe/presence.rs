//! Who is online and in which room (`routes/events.ts`): state in memory, kept **per event
//! stream**. `/join` and `/sync` stamp the room on the user's streams that are open at the time
//! — a user without an open stream is in no room, whatever `/join` said — and `/members` reads
//! the streams. When a user's last stream closes, a grace period (15 s after a ping within the
//! last 10 s, else 2 s) keeps their room for a stream that comes back; during it they are no
//! longer listed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use tokio::sync::mpsc;

use super::accounts::now_secs;
use super::{Server, error};

/// `MAX_CONNECTIONS_PER_USER` / `MAX_TOTAL_CONNECTIONS`.
const MAX_STREAMS_PER_USER: usize = 3;
const MAX_STREAMS: usize = 500;

/// One open event stream.
pub(super) struct Client {
    pub connection: u64,
    pub user_id: u64,
    pub room_id: Option<u64>,
    pub sender: mpsc::UnboundedSender<(String, serde_json::Value)>,
}

/// A user whose last stream closed: the room they were in, kept until the grace period ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub room_id: Option<u64>,
    pub generation: u64,
}

impl Server {
    /// The user's room: their first stream's.
    pub(super) fn user_room(&self, user_id: u64) -> Option<u64> {
        self.clients.iter().find(|client| client.user_id == user_id).and_then(|client| client.room_id)
    }

    /// `setUserRoom`: only streams open now take the room.
    pub(super) fn set_user_room(&mut self, user_id: u64, room_id: Option<u64>) {
        for client in self.clients.iter_mut().filter(|client| client.user_id == user_id) {
            client.room_id = room_id;
        }
    }

    pub(super) fn broadcast(&mut self, event: &str, data: serde_json::Value) {
        self.clients.retain(|client| client.sender.send((event.to_string(), data.clone())).is_ok());
    }

    /// `user:room_join` / `user:room_leave` / `user:online` / `user:offline` with `{user, roomId?}`.
    pub(super) fn tell_about(&mut self, event: &str, user_id: u64, room_id: Option<u64>) {
        let Some(user) = self.user(user_id).map(super::accounts::User::brief) else { return };
        let data = match room_id {
            Some(room_id) => serde_json::json!({ "user": user, "roomId": room_id }),
            None => serde_json::json!({ "user": user }),
        };
        self.broadcast(event, data);
    }

    /// Who is in which room, from the open streams: `{"<roomId>": [{id, username,
    /// display_name}]}`, each user once per room, in connection order.
    pub(super) fn members(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut members = serde_json::Map::new();
        let mut seen = Vec::new();
        for client in &self.clients {
            let Some(room_id) = client.room_id else { continue };
            if seen.contains(&(room_id, client.user_id)) {
                continue;
            }
            seen.push((room_id, client.user_id));
            if let Some(user) = self.user(client.user_id) {
                let list = members.entry(room_id.to_string()).or_insert_with(|| serde_json::json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(user.brief());
                }
            }
        }
        members
    }

    /// `POST /api/events/leave`: out of the room (pending or current) at once; offline when no
    /// stream is open. Open streams stay open.
    pub(super) fn leave(&mut self, user_id: u64) -> Response {
        let pending = self.pending.remove(&user_id).and_then(|pending| pending.room_id);
        if let Some(room_id) = pending.or_else(|| self.user_room(user_id)) {
            self.set_user_room(user_id, None);
            self.tell_about("user:room_leave", user_id, Some(room_id));
        }
        if !self.clients.iter().any(|client| client.user_id == user_id) {
            self.tell_about("user:offline", user_id, None);
        }
        if let Some(user) = self.users.iter_mut().find(|user| user.id == user_id) {
            user.last_seen = Some(now_secs());
        }
        if let Some(name) = self.user(user_id).map(|user| user.username.clone()) {
            *self.leaves.entry(name).or_default() += 1;
        }
        axum::Json(serde_json::json!({ "left": true })).into_response()
    }
}

/// `GET /api/events`: a server-sent-events stream (`:ok`, then `event:`/`data:` blocks, `:ping`).
pub(super) fn open(shared: &Arc<Mutex<Server>>, user_id: u64) -> Response {
    let mut server = shared.lock().unwrap_or_else(PoisonError::into_inner);
    server.clients.retain(|client| !client.sender.is_closed());
    if server.clients.len() >= MAX_STREAMS {
        return error(StatusCode::TOO_MANY_REQUESTS, "Server connection limit reached");
    }
    if server.clients.iter().filter(|client| client.user_id == user_id).count() >= MAX_STREAMS_PER_USER {
        return error(StatusCode::TOO_MANY_REQUESTS, "Too many concurrent connections");
    }
    let was_online = server.clients.iter().any(|client| client.user_id == user_id);
    let pending = server.pending.remove(&user_id);
    let (sender, receiver) = mpsc::unbounded_channel();
    server.next_connection += 1;
    let connection = server.next_connection;
    server.clients.push(Client { connection, user_id, room_id: None, sender });
    if let Some(pending) = pending {
        // A stream back within the grace period: the user never left their room.
        server.set_user_room(user_id, pending.room_id);
    }
    if let Some(user) = server.users.iter_mut().find(|user| user.id == user_id) {
        user.last_seen = Some(now_secs());
    }
    if !was_online && pending.is_none() {
        server.tell_about("user:online", user_id, None);
    }
    let ping_every = server.config.ping_every;
    drop(server);
    let guard = StreamGuard { server: Arc::clone(shared), connection, user_id };
    let opening = stream::once(async { Ok::<Event, std::convert::Infallible>(Event::default().comment("ok")) });
    let updates = stream::unfold((receiver, guard), |(mut receiver, guard)| async move {
        let (kind, data) = receiver.recv().await?;
        Some((Ok(Event::default().event(kind).data(data.to_string())), (receiver, guard)))
    });
    let headers = [("cache-control", "no-cache"), ("x-accel-buffering", "no")];
    (headers, Sse::new(opening.chain(updates)).keep_alive(KeepAlive::new().interval(ping_every).text("ping")))
        .into_response()
}

/// Closes the stream's membership when the client goes (see the module doc).
struct StreamGuard {
    server: Arc<Mutex<Server>>,
    connection: u64,
    user_id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(index) = server.clients.iter().position(|client| client.connection == self.connection) else {
            return;
        };
        let closed = server.clients.remove(index);
        if server.clients.iter().any(|client| client.user_id == self.user_id) {
            let still_there =
                server.clients.iter().any(|client| client.user_id == self.user_id && client.room_id == closed.room_id);
            if let (Some(room_id), false) = (closed.room_id, still_there) {
                server.tell_about("user:room_leave", self.user_id, Some(room_id));
            }
            return;
        }
        let pinged_recently =
            server.last_ping.get(&self.user_id).is_some_and(|at| at.elapsed() < Duration::from_secs(10));
        let grace = if pinged_recently { server.config.grace_after_ping } else { server.config.grace };
        server.next_generation += 1;
        let generation = server.next_generation;
        server.pending.insert(self.user_id, Pending { room_id: closed.room_id, generation });
        drop(server);
        let (shared, user_id) = (Arc::clone(&self.server), self.user_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(grace).await;
                let mut server = shared.lock().unwrap_or_else(PoisonError::into_inner);
                let due = server.pending.get(&user_id).is_some_and(|pending| pending.generation == generation);
                if !due {
                    return;
                }
                let pending = server.pending.remove(&user_id);
                if let Some(room_id) = pending.and_then(|pending| pending.room_id) {
                    server.tell_about("user:room_leave", user_id, Some(room_id));
                }
                if !server.clients.iter().any(|client| client.user_id == user_id) {
                    server.tell_about("user:offline", user_id, None);
                }
            });
        }
    }
}

/// `POST /api/events/ping`: the heartbeat that lengthens the grace period. No stream needed.
pub(super) fn ping(server: &mut Server, user_id: u64) -> Response {
    server.last_ping.insert(user_id, Instant::now());
    if let Some(name) = server.user(user_id).map(|user| user.username.clone()) {
        *server.pings.entry(name).or_default() += 1;
    }
    axum::Json(serde_json::json!({ "ok": true })).into_response()
}
