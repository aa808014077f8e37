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
    let (_membership, _events) = Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
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
    assert!(matches!(seen[0], MembershipEvent::WatchFailed { attempt: 1, retry_in_ms: Some(1000), .. }), "{seen:?}");
    assert_eq!(seen[1], MembershipEvent::Recovered { what: "events".into() });
    assert!(matches!(seen[2], MembershipEvent::Backend { .. }), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn leave_stops_the_task_and_tells_the_backend_and_drop_stops_it_too() {
    let fake = Fake::with(|_| {});
    let (membership, _events) = Membership::start(fake.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
    tokio::time::sleep(Duration::from_secs(15)).await;
    membership.leave().await.expect("leave");
    tokio::time::sleep(Duration::from_secs(60)).await;
    {
        let state = fake.state();
        assert_eq!((state.heartbeats.len(), state.leaves), (1, 1), "one heartbeat, then one leave and no more");
    }

    let other = Fake::with(|_| {});
    let (membership, _events) = Membership::start(other.clone(), grant("r", "t", None, Some(Duration::from_secs(10))));
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
