//! Scheduled pruning of the SQLite store: replay-guard records (`events`) that can no longer
//! matter and delivered outbox rows past their retention. See docs/storage.md for why the
//! replay-guard horizon is safe.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mostro_core::ports::StoreError;
use mostro_core::types::Timestamp;
use mostro_sqlite::SqliteStore;
use tracing::{info, warn};

use crate::config::Config;

/// Extra seconds on the replay-guard horizon, for clock adjustments between acceptance and
/// pruning.
pub const CLOCK_MARGIN_SECS: u64 = 300;

/// What to prune and how often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prune {
    /// Replay-guard rows recorded more than this many seconds ago are deleted.
    pub events_horizon_secs: u64,
    /// Delivered outbox rows completed more than this many seconds ago are deleted.
    pub outbox_retention_secs: u64,
    /// Period of the loop.
    pub interval: Duration,
}

impl Prune {
    /// From the config: an event id matters while an event with it could still be accepted:
    /// live within the freshness window, from a relay's storage within the catch-up horizon
    /// (never shorter than the window), dated up to `max_future` ahead; so for
    /// `catch_up_horizon + max_future` seconds (plus a clock margin) after it was recorded.
    #[must_use]
    pub fn from_config(cfg: &Config) -> Prune {
        Prune {
            events_horizon_secs: cfg
                .nostr
                .catch_up_horizon_secs
                .max(cfg.nostr.freshness_secs)
                .saturating_add(cfg.nostr.max_future_secs)
                .saturating_add(CLOCK_MARGIN_SECS),
            outbox_retention_secs: cfg.database.outbox_retention_days.saturating_mul(86_400),
            interval: Duration::from_secs(cfg.database.prune_interval_secs),
        }
    }
}

/// One pass at `now`; returns (replay-guard rows, outbox rows) deleted.
pub async fn prune_once(
    store: &SqliteStore,
    p: &Prune,
    now: Timestamp,
) -> Result<(u64, u64), StoreError> {
    let events = store
        .prune_events(Timestamp(now.0.saturating_sub(p.events_horizon_secs)))
        .await?;
    let outbox = store
        .prune_outbox(Timestamp(now.0.saturating_sub(p.outbox_retention_secs)))
        .await?;
    Ok((events, outbox))
}

/// Prunes every `p.interval` (the first pass one interval after start) until `stop`.
pub async fn run(
    store: Arc<SqliteStore>,
    p: Prune,
    clock: Arc<dyn mostro_core::ports::Clock>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(p.interval) => {},
        }
        match prune_once(&store, &p, clock.now()).await {
            Ok((events, outbox)) => info!(events, outbox, "housekeeping: pruned"),
            Err(e) => warn!(error = %e, "housekeeping: pruning failed; retried next period"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mostro_core::ports::{Clock, Commit, Store};
    use mostro_testkit::ManualClock;
    use mostro_testkit::store_suite::{effect, event_id};

    #[tokio::test]
    async fn prunes_old_replay_records_and_delivered_outbox_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp(1_000_000)));
        let store = SqliteStore::open(dir.path().join("mostro.db")).unwrap();
        let cfg = Config::parse("[database]\noutbox_retention_days = 2\n", &[]).unwrap();
        let p = Prune::from_config(&cfg);
        assert_eq!(p.events_horizon_secs, 86_400 + 300 + CLOCK_MARGIN_SECS);
        assert_eq!(p.outbox_retention_secs, 2 * 86_400);
        assert_eq!(p.interval, Duration::from_secs(3600));

        // At t0: an event and two effects, one of which is then delivered.
        let ids = store
            .commit(Commit {
                event: Some(event_id(1)),
                effects: vec![effect(1), effect(2)],
                ..Commit::at(clock.now())
            })
            .await
            .unwrap();
        store
            .commit(Commit {
                done: vec![ids[0]],
                ..Commit::at(clock.now())
            })
            .await
            .unwrap();
        // Just inside the horizon: nothing goes.
        clock.set(Timestamp(1_000_000 + p.events_horizon_secs));
        assert_eq!(prune_once(&store, &p, clock.now()).await.unwrap(), (0, 0));
        assert!(store.seen_event(&event_id(1)).await.unwrap());
        // Past it: the replay record goes; the delivered effect is kept for its retention.
        clock.set(Timestamp(1_000_000 + p.events_horizon_secs + 1));
        store
            .commit(Commit {
                event: Some(event_id(2)),
                ..Commit::at(clock.now())
            })
            .await
            .unwrap();
        assert_eq!(prune_once(&store, &p, clock.now()).await.unwrap(), (1, 0));
        assert!(!store.seen_event(&event_id(1)).await.unwrap());
        assert!(
            store.seen_event(&event_id(2)).await.unwrap(),
            "a recent one stays"
        );
        // After the retention: the delivered row goes, the pending one never does.
        clock.set(Timestamp(1_000_000 + 2 * 86_400 + 1));
        let (_, outbox) = prune_once(&store, &p, clock.now()).await.unwrap();
        assert_eq!(outbox, 1);
        let pending = store.pending_effects(10).await.unwrap();
        assert_eq!(pending, vec![(ids[1], effect(2))]);
        let s = store.stats().await.unwrap();
        assert_eq!(s.outbox_rows, 1);
    }
}
