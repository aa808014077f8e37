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
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use parley_control_plane::{BackendKind, Capabilities, Capability};

    use super::*;

    /// A control plane that counts calls and fails as told.
    #[derive(Default)]
    struct Fake {
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        heartbeats: Vec<Instant>,
        heartbeat_errors: Vec<PlaneError>,
        refreshes: Vec<Instant>,
        refresh_errors: Vec<PlaneError>,
        /// Seconds each refreshed token lives (600 when unset); `Some(0)`: the same expiry as
        /// the old token.
        refresh_ttl: Option<u64>,
        leaves: u32,
        watch_events: Vec<PlaneEvent>,
        watch_errors: Vec<PlaneError>,
        watches: u32,
        moderated: Vec<(ModerationAction, String)>,
    }

    impl Fake {
        fn with(setup: impl FnOnce(&mut FakeState)) -> Arc<Fake> {
            let fake = Fake::default();
            setup(&mut fake.state.lock().unwrap());
            Arc::new(fake)
        }

        fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap()
        }
    }

    #[async_trait]
    impl ControlPlane for Fake {
        fn kind(&self) -> BackendKind {
            BackendKind::Audioroom
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::new([Capability::Join, Capability::Moderate(ModerationAction::Ban)])
        }

        async fn join(&self, room: &str) -> Result<JoinGrant, PlaneError> {
            Ok(grant(room, "fresh-token", Some(now_unix() + 600), None))
        }

        async fn heartbeat(&self, _grant: &JoinGrant) -> Result<(), PlaneError> {
            let mut state = self.state();
            state.heartbeats.push(Instant::now());
            if state.heartbeat_errors.is_empty() { Ok(()) } else { Err(state.heartbeat_errors.remove(0)) }
        }

        async fn refresh(&self, old: &JoinGrant) -> Result<JoinGrant, PlaneError> {
            {
                let mut state = self.state();
                state.refreshes.push(Instant::now());
                if !state.refresh_errors.is_empty() {
                    return Err(state.refresh_errors.remove(0));
                }
            }
            let (count, ttl) = {
                let state = self.state();
                (state.refreshes.len(), state.refresh_ttl)
            };
            let expires_at = match ttl {
                Some(0) => old.expires_at,
                ttl => Some(now_unix() + ttl.unwrap_or(600)),
            };
            Ok(grant(&old.room_id, &format!("token-{count}"), expires_at, old.heartbeat_every))
        }

        async fn leave(&self, _grant: &JoinGrant) -> Result<(), PlaneError> {
            self.state().leaves += 1;
            Ok(())
        }

        async fn moderate(
            &self,
            _grant: &JoinGrant,
            action: ModerationAction,
            participant: &str,
        ) -> Result<(), PlaneError> {
            self.state().moderated.push((action, participant.to_string()));
            Ok(())
        }

        async fn watch(&self, _grant: &JoinGrant, events: mpsc::Sender<PlaneEvent>) -> Result<(), PlaneError> {
            let (pending, error) = {
                let mut state = self.state();
                state.watches += 1;
                match (!state.watch_errors.is_empty()).then(|| state.watch_errors.remove(0)) {
                    Some(error) => (Vec::new(), Some(error)),
                    None => (std::mem::take(&mut state.watch_events), None),
                }
            };
            if let Some(error) = error {
                return Err(error);
            }
            for event in pending {
                tokio::time::sleep(Duration::from_secs(1)).await;
                events.send(event).await.map_err(|_| PlaneError::InvalidInput { message: "closed".into() })?;
            }
            Ok(())
        }
    }

    fn grant(room: &str, token: &str, expires_at: Option<u64>, heartbeat_every: Option<Duration>) -> JoinGrant {
        JoinGrant {
            room_id: room.into(),
            room_name: room.into(),
            url: "ws://127.0.0.1:7880".into(),
            token: token.into(),
            e2ee_key: None,
            expires_at,
            heartbeat_every,
            role: None,
            notice: None,
        }
    }

    fn server_down() -> PlaneError {
        PlaneError::Server { status: 503, message: String::new() }
    }

    async fn drain(events: &mut mpsc::UnboundedReceiver<MembershipEvent>) -> Vec<MembershipEvent> {
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(event);
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_run_at_the_granted_cadence() {
        let fake = Fake::with(|_| {});
        let start = Instant::now();
        let (membership, mut events) =
            Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
        tokio::time::sleep(Duration::from_secs(35)).await;
        let beats: Vec<u64> = fake.state().heartbeats.iter().map(|at| (*at - start).as_secs()).collect();
        assert_eq!(beats, vec![10, 20, 30], "a heartbeat every 10 s, the first after 10 s");
        assert!(drain(&mut events).await.is_empty(), "healthy heartbeats report nothing");
        drop(membership);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_heartbeat_failures_back_off_then_report_recovery() {
        let fake = Fake::with(|state| state.heartbeat_errors = vec![server_down(), server_down(), server_down()]);
        let start = Instant::now();
        let (_membership, mut events) =
            Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
        tokio::time::sleep(Duration::from_secs(25)).await;
        let beats: Vec<u64> = fake.state().heartbeats.iter().map(|at| (*at - start).as_secs()).collect();
        assert_eq!(beats, vec![10, 11, 13, 17], "retries after 1, 2 and 4 s, then success");
        let seen = drain(&mut events).await;
        let attempts: Vec<u32> = seen
            .iter()
            .filter_map(|event| match event {
                MembershipEvent::HeartbeatFailed { attempt, code, .. } => {
                    assert_eq!(code, "server_error");
                    Some(*attempt)
                }
                _ => None,
            })
            .collect();
        assert_eq!(attempts, vec![1, 2, 3], "each failure is reported with its attempt: {seen:?}");
        assert_eq!(seen.last(), Some(&MembershipEvent::Recovered { what: "heartbeat".into() }), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_grants_notice_is_reported_first_and_once() {
        let fake = Fake::with(|_| {});
        let mut noted = grant("r", "t", None, Some(Duration::from_secs(10)));
        noted.notice = Some("you are not a member of group r: joining as a listener".into());
        let (_membership, mut events) = Membership::start(fake.clone(), noted);
        tokio::time::sleep(Duration::from_secs(25)).await;
        let seen = drain(&mut events).await;
        let expected =
            MembershipEvent::Warning { message: "you are not a member of group r: joining as a listener".into() };
        assert_eq!(seen, vec![expected], "the notice, once, and nothing else for healthy heartbeats");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let delays: Vec<u64> = (1..=8).map(|attempt| RETRY_BACKOFF.delay(attempt).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(RETRY_BACKOFF.delay(200), Duration::from_secs(30), "huge attempt counts do not overflow");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_waits_at_least_as_long_as_the_server_asked() {
        let limited = PlaneError::RateLimited { retry_after: Some(Duration::from_secs(20)) };
        let fake = Fake::with(|state| state.heartbeat_errors = vec![limited]);
        let start = Instant::now();
        let (_membership, _events) =
            Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
        tokio::time::sleep(Duration::from_secs(31)).await;
        let beats: Vec<u64> = fake.state().heartbeats.iter().map(|at| (*at - start).as_secs()).collect();
        assert_eq!(beats, vec![10, 30], "Retry-After 20 s is honoured: {beats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_kicked_heartbeat_ends_with_removed_and_stops() {
        let kicked = PlaneError::Kicked { message: "by a moderator".into() };
        let fake = Fake::with(|state| state.heartbeat_errors = vec![kicked]);
        let (_membership, mut events) =
            Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fake.state().heartbeats.len(), 1, "no heartbeat after being kicked");
        let seen = drain(&mut events).await;
        match seen.as_slice() {
            [MembershipEvent::Removed { reason, code }] => {
                assert_eq!(code, "kicked");
                assert!(reason.contains("removed from this room"), "{reason}");
            }
            other => panic!("expected exactly one Removed, got {other:?}"),
        }
        assert!(events.recv().await.is_none(), "the task ended and closed the event stream");
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_is_refreshed_before_it_expires_and_handed_out() {
        let fake = Fake::with(|state| state.refresh_errors = vec![server_down()]);
        let start = Instant::now();
        let (membership, mut events) = Membership::start(fake.clone(), grant("r", "t0", Some(now_unix() + 600), None));
        let mut grants = membership.grants();
        tokio::time::sleep(Duration::from_secs(470)).await;
        assert!(fake.state().refreshes.is_empty(), "no refresh long before expiry");
        tokio::time::sleep(Duration::from_secs(20)).await;
        let refreshes: Vec<u64> = fake.state().refreshes.iter().map(|at| (*at - start).as_secs()).collect();
        assert_eq!(refreshes, vec![480, 482], "refresh at 4/5 of the lifetime, a failure retried after 2 s");
        assert!(grants.has_changed().unwrap(), "the fresh grant is published");
        assert_eq!(grants.borrow_and_update().token, "token-2");
        assert_eq!(membership.grant().token, "token-2");
        let seen = drain(&mut events).await;
        assert!(matches!(seen[0], MembershipEvent::RefreshFailed { attempt: 1, .. }), "{seen:?}");
        assert_eq!(seen[1], MembershipEvent::Recovered { what: "refresh".into() });
        assert!(matches!(seen[2], MembershipEvent::TokenRefreshed { expires_at: Some(_) }), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn short_tokens_are_refreshed_no_more_than_every_ten_seconds() {
        // Tokens of 20 s: a fifth of their life, but at least 30 s, before expiry is "now".
        let fake = Fake::with(|state| state.refresh_ttl = Some(20));
        let (_membership, _events) = Membership::start(fake.clone(), grant("r", "t0", Some(now_unix() + 20), None));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let count = fake.state().refreshes.len();
        assert!((1..=7).contains(&count), "one refresh at once, then one per 10 s at most; got {count} in 60 s");
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_that_bring_no_later_expiry_back_off() {
        let fake = Fake::with(|state| state.refresh_ttl = Some(0));
        let start = Instant::now();
        let (_membership, _events) = Membership::start(fake.clone(), grant("r", "t0", Some(now_unix() + 5), None));
        tokio::time::sleep(Duration::from_secs(300)).await;
        let at: Vec<u64> = fake.state().refreshes.iter().map(|at| (*at - start).as_secs()).collect();
        let gaps: Vec<u64> = at.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert!(at.len() <= 10, "at most a handful of refreshes in 5 minutes: {at:?}");
        assert!(gaps.windows(2).all(|pair| pair[1] >= pair[0]), "the spacing never shrinks: {gaps:?}");
        assert!(gaps.last().is_some_and(|gap| *gap >= 32), "and grows to half a minute and more: {gaps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn backend_events_are_forwarded_and_removed_ends_the_membership() {
        let participants = PlaneEvent::Participants { participants: Vec::new() };
        let removed = PlaneEvent::Removed { reason: "you were kicked by a moderator".into() };
        let fake = Fake::with(|state| state.watch_events = vec![participants.clone(), removed]);
        let (_membership, mut events) =
            Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let seen = drain(&mut events).await;
        assert_eq!(
            seen,
            vec![
                MembershipEvent::Backend { backend: participants },
                MembershipEvent::Removed { reason: "you were kicked by a moderator".into(), code: "removed".into() },
            ]
        );
        assert!(fake.state().heartbeats.is_empty(), "removed at 2 s, so the 10 s heartbeat never runs");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_watch_is_restarted_after_a_backoff() {
        let fake = Fake::with(|state| {
            state.watch_errors = vec![PlaneError::Unreachable { url: "x".into(), detail: "down".into() }];
            state.watch_events = vec![PlaneEvent::RoleChanged { identity: "a".into(), role: "speaker".into() }];
        });
        let (_membership, mut events) = Membership::start(fake.clone(), grant("r", "t", None, None));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(fake.state().watches, 2, "watched again after the failure");
        let seen = drain(&mut events).await;
        assert!(
            matches!(seen[0], MembershipEvent::WatchFailed { attempt: 1, retry_in_ms: Some(1000), .. }),
            "{seen:?}"
        );
        assert_eq!(seen[1], MembershipEvent::Recovered { what: "events".into() });
        assert!(matches!(seen[2], MembershipEvent::Backend { .. }), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn leave_stops_the_task_and_tells_the_backend_and_drop_stops_it_too() {
        let fake = Fake::with(|_| {});
        let (membership, _events) =
            Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
        tokio::time::sleep(Duration::from_secs(15)).await;
        membership.leave().await.expect("leave");
        tokio::time::sleep(Duration::from_secs(60)).await;
        {
            let state = fake.state();
            assert_eq!((state.heartbeats.len(), state.leaves), (1, 1), "one heartbeat, then one leave and no more");
        }

        let other = Fake::with(|_| {});
        let (membership, _events) =
            Membership::start(other.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
        drop(membership);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(other.state().heartbeats.is_empty(), "dropping the membership stops its heartbeats");
        assert_eq!(other.state().leaves, 0, "dropping is not leaving");
    }

    #[tokio::test]
    async fn moderation_uses_the_adapter_or_says_it_is_unsupported() {
        let fake = Fake::with(|_| {});
        let plain = grant("r", "not-an-admin-token", None, None);
        moderate(fake.as_ref(), &plain, ModerationAction::Ban, "bob").await.expect("the adapter bans");
        assert_eq!(fake.state().moderated, vec![(ModerationAction::Ban, "bob".to_string())]);
        let error = moderate(fake.as_ref(), &plain, ModerationAction::Mute, "bob").await.unwrap_err();
        assert_eq!(error.code(), "unsupported", "{error}");
        assert_eq!(moderation_actions(fake.as_ref(), &plain), vec![ModerationAction::Ban]);
    }
}
