//! Staying in a room as far as the backend is concerned (DESIGN.md §4, CONTROL_PLANES.md §7
//! "cross-cutting observations" 2–4): heartbeats, token refresh, backend events, and being
//! removed.
//!
//! [`Membership::start`] takes the adapter and the [`JoinGrant`] the session joined with and runs
//! one owned task beside the session:
//!
//! * `heartbeat` every `grant.heartbeat_every` (audioroom's presence TTL is 30 s);
//! * `refresh` before `grant.expires_at` (resenha's tokens last 10 minutes), publishing the fresh
//!   grant through [`Membership::grants`] for whoever reconnects later;
//! * `watch`, whose [`PlaneEvent`]s are forwarded;
//! * the grant's notice (why the user joins as a listener, say) comes first, as a
//!   [`MembershipEvent::Warning`];
//! * transient failures (5xx, 429, unreachable) retry with capped exponential backoff; every
//!   failure and recovery is a [`MembershipEvent`];
//! * kicked/banned (a heartbeat or refresh error, or a `Removed` event) ends with
//!   [`MembershipEvent::Removed`]: the front end must leave the call and not rejoin.
//!
//! Dropping the [`Membership`] stops the task; [`Membership::leave`] stops it and tells the
//! backend. [`moderate`] applies a moderation action through the adapter, or through LiveKit's
//! RoomService when the adapter lacks it and the token carries `roomAdmin`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parley_control_plane::adapter::livekit::RoomAdmin;
use parley_control_plane::adapter::livekit::token::now_unix;
use parley_control_plane::{ControlPlane, JoinGrant, ModerationAction, PlaneError, PlaneEvent};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Session;

/// What the membership task reports, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MembershipEvent {
    /// A heartbeat failed; the next try is in `retry_in_ms`.
    HeartbeatFailed { attempt: u32, code: String, message: String, retry_in_ms: u64 },
    /// Refreshing the token failed; the next try is in `retry_in_ms`.
    RefreshFailed { attempt: u32, code: String, message: String, retry_in_ms: u64 },
    /// The backend's event stream failed; `retry_in_ms` is `None` when it is not retried.
    WatchFailed { attempt: u32, code: String, message: String, retry_in_ms: Option<u64> },
    /// `what` (`heartbeat`, `refresh`, `events`) works again after failures.
    Recovered { what: String },
    /// A fresh token is in [`Membership::grants`].
    TokenRefreshed { expires_at: Option<u64> },
    /// Something the backend pushed (participants, role changes, …).
    Backend { backend: PlaneEvent },
    /// The user was removed (kicked, banned): leave the call and do not rejoin. `code` is the
    /// error code (`kicked`, `banned`) or `removed` for a backend event.
    Removed { reason: String, code: String },
    /// The backend's word on this join (`JoinGrant::notice`, e.g. why the user only listens),
    /// reported once when the membership starts.
    Warning { message: String },
}

/// Exponential backoff for retries: `first`, doubling, never more than `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.cap)
    }
}

/// Heartbeats and watch restarts: 1 s, 2 s, 4 s … 30 s.
pub const RETRY_BACKOFF: Backoff = Backoff { first: Duration::from_secs(1), cap: Duration::from_secs(30) };
/// Token refreshes: 2 s, 4 s … 60 s.
pub const REFRESH_BACKOFF: Backoff = Backoff { first: Duration::from_secs(2), cap: Duration::from_secs(60) };
/// A token is refreshed when a fifth of its remaining life is left, but at least this early.
const MIN_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Never two refreshes closer than this: a backend handing out short tokens (or a clock that
/// runs ahead of the server's) would otherwise be asked for a token again at once, forever.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The backend side of a joined room. Dropping it stops its task.
pub struct Membership {
    plane: Arc<dyn ControlPlane>,
    grants: watch::Receiver<JoinGrant>,
    /// Shared with the driver, which replaces the grant on each refresh; [`Membership::rejoin`]
    /// replaces it too.
    grant: Arc<watch::Sender<JoinGrant>>,
    driver: Owned<()>,
}

impl Membership {
    /// Starts heartbeats, refresh and event watching for `grant`. Call from a tokio runtime.
    pub fn start(
        plane: Arc<dyn ControlPlane>,
        grant: JoinGrant,
    ) -> (Membership, mpsc::UnboundedReceiver<MembershipEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        if let Some(message) = grant.notice.clone() {
            // The receiver is in hand, so the send cannot fail.
            events.send(MembershipEvent::Warning { message }).ok();
        }
        let (grant_sender, grants) = watch::channel(grant);
        let grant = Arc::new(grant_sender);
        let driver = Driver { plane: Arc::clone(&plane), grant: Arc::clone(&grant), events };
        let membership = Membership { plane, grants, grant, driver: Owned(tokio::spawn(driver.run())) };
        (membership, receiver)
    }

    /// The newest grant (the token changes on refresh).
    pub fn grant(&self) -> JoinGrant {
        self.grants.borrow().clone()
    }

    /// Follows the newest grant, e.g. to reconnect with a fresh token.
    pub fn grants(&self) -> watch::Receiver<JoinGrant> {
        self.grants.clone()
    }

    pub fn plane(&self) -> &Arc<dyn ControlPlane> {
        &self.plane
    }

    /// Asks the backend for a fresh grant to the call's room (its `join`), which becomes the
    /// newest grant: after the connection to the room was lost for good, the old token may have
    /// expired and the backend may have forgotten us.
    ///
    /// Errors: the adapter's `join` errors.
    pub async fn rejoin(&self) -> Result<JoinGrant, PlaneError> {
        let room = self.grant().room_id;
        let fresh = self.plane.join(&room).await?;
        self.grant.send_replace(fresh.clone());
        Ok(fresh)
    }

    /// Applies `action` to `participant` with the newest grant; see [`moderate`].
    pub async fn moderate(&self, action: ModerationAction, participant: &str) -> Result<(), PlaneError> {
        moderate(self.plane.as_ref(), &self.grant(), action, participant).await
    }

    /// Stops heartbeats and watching, then tells the backend the user left.
    ///
    /// Errors: whatever the adapter's `leave` returns (callers usually log it: leaving is best
    /// effort).
    pub async fn leave(self) -> Result<(), PlaneError> {
        let grant = self.grant();
        let driver = self.driver;
        driver.0.abort();
        if let Err(error) = driver.await
            && !error.is_cancelled()
        {
            tracing::warn!(%error, "the membership task ended badly");
        }
        self.plane.leave(&grant).await
    }
}

/// The moderation actions available for `grant`: the adapter's, plus RoomService's when the
/// token carries `roomAdmin`.
pub fn moderation_actions(plane: &dyn ControlPlane, grant: &JoinGrant) -> Vec<ModerationAction> {
    let capabilities = plane.capabilities();
    let admin = RoomAdmin::grant_is_admin(grant);
    ModerationAction::ALL
        .into_iter()
        .filter(|action| capabilities.can_moderate(*action) || (admin && RoomAdmin::ACTIONS.contains(action)))
        .collect()
}

/// Applies `action` to `participant` through the adapter when it offers the action, otherwise
/// through LiveKit's RoomService when `grant`'s token carries `roomAdmin`. Any tokio task.
///
/// Errors: [`PlaneError::Unsupported`] when neither can; otherwise the adapter's or
/// RoomService's errors.
pub async fn moderate(
    plane: &dyn ControlPlane,
    grant: &JoinGrant,
    action: ModerationAction,
    participant: &str,
) -> Result<(), PlaneError> {
    if plane.capabilities().can_moderate(action) {
        return plane.moderate(grant, action, participant).await;
    }
    if RoomAdmin::ACTIONS.contains(&action)
        && let Some(admin) = RoomAdmin::for_grant(grant)
    {
        return admin.moderate(action, participant).await;
    }
    Err(PlaneError::Unsupported { backend: plane.kind().as_str(), action: action.as_str() })
}

/// A task that is aborted when its handle is dropped.
struct Owned<T>(JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Owned<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(context)
    }
}

struct Driver {
    plane: Arc<dyn ControlPlane>,
    grant: Arc<watch::Sender<JoinGrant>>,
    events: mpsc::UnboundedSender<MembershipEvent>,
}

/// What a failed call tells the loop.
enum Outcome {
    Continue,
    Removed,
}

impl Driver {
    async fn run(self) {
        let (plane_events, mut plane_receiver) = mpsc::channel(64);
        let mut watcher = Some(self.spawn_watch(plane_events.clone()));
        let mut watch_failures = 0u32;
        let mut watch_restart: Option<Instant> = None;
        let mut watch_failing = false;

        let every = self.current().heartbeat_every.filter(|every| !every.is_zero());
        let mut next_heartbeat = every.map(|every| Instant::now() + every);
        let mut heartbeat_failures = 0u32;

        let mut next_refresh = refresh_deadline(&self.current());
        let mut refresh_failures = 0u32;
        // Refreshes in a row whose token expired no later than the one it replaced.
        let mut stale_refreshes = 0u32;

        loop {
            tokio::select! {
                () = sleep_until(next_heartbeat) => {
                    let Some(every) = every else { continue };
                    match self.plane.heartbeat(&self.current()).await {
                        Ok(()) => {
                            if heartbeat_failures > 0 {
                                self.emit(MembershipEvent::Recovered { what: "heartbeat".into() });
                            }
                            heartbeat_failures = 0;
                            next_heartbeat = Some(Instant::now() + every);
                        }
                        Err(error) => {
                            if let Outcome::Removed = self.removed_by(&error) { return }
                            heartbeat_failures += 1;
                            let wait = retry_wait(&error, heartbeat_failures, RETRY_BACKOFF, every);
                            self.emit(MembershipEvent::HeartbeatFailed {
                                attempt: heartbeat_failures,
                                code: error.code().into(),
                                message: error.to_string(),
                                retry_in_ms: millis(wait),
                            });
                            next_heartbeat = Some(Instant::now() + wait);
                        }
                    }
                }
                () = sleep_until(next_refresh) => {
                    match self.plane.refresh(&self.current()).await {
                        Ok(fresh) => {
                            if refresh_failures > 0 {
                                self.emit(MembershipEvent::Recovered { what: "refresh".into() });
                            }
                            refresh_failures = 0;
                            let gained = match (fresh.expires_at, self.current().expires_at) {
                                (Some(new), Some(old)) => new > old,
                                _ => true,
                            };
                            stale_refreshes = if gained { 0 } else { stale_refreshes + 1 };
                            next_refresh = next_refresh_after(&fresh, stale_refreshes);
                            let expires_at = fresh.expires_at;
                            self.grant.send_replace(fresh);
                            self.emit(MembershipEvent::TokenRefreshed { expires_at });
                        }
                        Err(error) => {
                            if let Outcome::Removed = self.removed_by(&error) { return }
                            refresh_failures += 1;
                            // Every refresh failure is retried: a token that expires ends the
                            // next reconnect, whatever the reason was.
                            let wait = retry_wait(&error, refresh_failures, REFRESH_BACKOFF, REFRESH_BACKOFF.cap);
                            let wait = if error.is_transient() { wait } else { REFRESH_BACKOFF.delay(refresh_failures) };
                            self.emit(MembershipEvent::RefreshFailed {
                                attempt: refresh_failures,
                                code: error.code().into(),
                                message: error.to_string(),
                                retry_in_ms: millis(wait),
                            });
                            next_refresh = Some(Instant::now() + wait);
                        }
                    }
                }
                Some(event) = plane_receiver.recv() => {
                    if watch_failing {
                        watch_failing = false;
                        watch_failures = 0;
                        self.emit(MembershipEvent::Recovered { what: "events".into() });
                    }
                    if let PlaneEvent::Removed { reason } = event {
                        self.emit(MembershipEvent::Removed { reason, code: "removed".into() });
                        return;
                    }
                    self.emit(MembershipEvent::Backend { backend: event });
                }
                ended = async { match watcher.as_mut() { Some(task) => task.await, None => std::future::pending().await } } => {
                    watcher = None;
                    match ended {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            if let Outcome::Removed = self.removed_by(&error) { return }
                            watch_failures += 1;
                            watch_failing = true;
                            let retry = error.is_transient().then(|| retry_wait(&error, watch_failures, RETRY_BACKOFF, RETRY_BACKOFF.cap));
                            self.emit(MembershipEvent::WatchFailed {
                                attempt: watch_failures,
                                code: error.code().into(),
                                message: error.to_string(),
                                retry_in_ms: retry.map(millis),
                            });
                            watch_restart = retry.map(|wait| Instant::now() + wait);
                        }
                        Err(error) => tracing::warn!(%error, "the backend event task ended badly"),
                    }
                }
                () = sleep_until(watch_restart) => {
                    watch_restart = None;
                    watcher = Some(self.spawn_watch(plane_events.clone()));
                }
            }
        }
    }

    fn current(&self) -> JoinGrant {
        self.grant.borrow().clone()
    }

    fn spawn_watch(&self, events: mpsc::Sender<PlaneEvent>) -> Owned<Result<(), PlaneError>> {
        let plane = Arc::clone(&self.plane);
        let grant = self.current();
        Owned(tokio::spawn(async move { plane.watch(&grant, events).await }))
    }

    /// Reports a kick or ban and tells the loop to end.
    fn removed_by(&self, error: &PlaneError) -> Outcome {
        if !error.ends_session() {
            return Outcome::Continue;
        }
        self.emit(MembershipEvent::Removed { reason: error.to_string(), code: error.code().into() });
        Outcome::Removed
    }

    fn emit(&self, event: MembershipEvent) {
        if self.events.send(event).is_err() {
            tracing::debug!("nobody follows the membership events any more");
        }
    }
}

/// How long to wait after failure number `attempt`: backoff for transient errors (at least what
/// a 429 asked for), the normal cadence for the others (retrying sooner would not help).
fn retry_wait(error: &PlaneError, attempt: u32, backoff: Backoff, cadence: Duration) -> Duration {
    match error {
        PlaneError::RateLimited { retry_after: Some(wait) } => backoff.delay(attempt).max(*wait),
        _ if error.is_transient() => backoff.delay(attempt),
        _ => cadence,
    }
}

/// When to refresh `grant`: a fifth of its remaining life before it expires, at least
/// [`MIN_REFRESH_MARGIN`] before; `None` without an expiry.
fn refresh_deadline(grant: &JoinGrant) -> Option<Instant> {
    let expires_at = grant.expires_at?;
    let remaining = Duration::from_secs(expires_at.saturating_sub(now_unix()));
    let margin = (remaining / 5).max(MIN_REFRESH_MARGIN);
    Some(Instant::now() + remaining.saturating_sub(margin))
}

/// When to refresh again after a refresh handed out `fresh`: its [`refresh_deadline`], but no
/// sooner than [`MIN_REFRESH_INTERVAL`], and backing off ([`REFRESH_BACKOFF`]) while refreshes
/// bring no later expiry (`stale` in a row): asking again would only bring the same.
fn next_refresh_after(fresh: &JoinGrant, stale: u32) -> Option<Instant> {
    let deadline = refresh_deadline(fresh)?;
    let floor = if stale == 0 { MIN_REFRESH_INTERVAL } else { REFRESH_BACKOFF.delay(stale).max(MIN_REFRESH_INTERVAL) };
    Some(deadline.max(Instant::now() + floor))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How many times a call asks its backend for a fresh join after the connection to the room was
/// lost for good, and the wait before attempt `n`: `n × 2 s` (the disTokoloshe web client's
/// schedule).
pub const REJOIN_ATTEMPTS: u32 = 3;
const REJOIN_STEP: Duration = Duration::from_secs(2);

/// Joins `session` to its room again through `membership` after the connection was lost for good
/// (see [`parley_livekit_ffi::DisconnectReason::is_connection_lost`]): a fresh grant from the
/// backend, then [`Session::reconnect`], up to [`REJOIN_ATTEMPTS`] times. A refusal that ends the
/// session (kicked, banned) is not retried. Any tokio task.
///
/// Errors: the last attempt's error, as the sentence a user sees.
pub async fn rejoin(session: &mut Session, membership: &Membership) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=REJOIN_ATTEMPTS {
        tokio::time::sleep(REJOIN_STEP * attempt).await;
        let grant = match membership.rejoin().await {
            Ok(grant) => grant,
            Err(error) if error.ends_session() => return Err(error.to_string()),
            Err(error) => {
                tracing::info!(attempt, %error, "joining again failed");
                last = error.to_string();
                continue;
            }
        };
        match session.reconnect(&grant.url, &grant.token).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::info!(attempt, %error, "reconnecting failed");
                last = parley_livekit_ffi::redact(&error.to_string()).into_owned();
            }
        }
    }
    Err(last)
}

/// The next event of a call's membership, or never once there are none (no membership, or it
/// ended): a `select!` arm over it simply stops firing. Any tokio task.
pub async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<MembershipEvent>>) -> Option<MembershipEvent> {
    match events {
        Some(receiver) => match receiver.recv().await {
            Some(event) => Some(event),
            None => {
                *events = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
