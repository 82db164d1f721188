//! The store conformance suite (mostro-testkit) against `SqliteStore` on a file database, then
//! the SQLite store's own extras (pruning, import, clock, group commit, damaged rows).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mostro_core::ports::{Commit, Store, StoreErrorKind};
use mostro_core::types::Timestamp;
use mostro_sqlite::SqliteStore;
use mostro_testkit::store_suite::{self, effect, event_id, identity, insert, order, taken};
use tempfile::TempDir;

/// A fresh store in a fresh temporary directory (kept alive with the store).
fn fresh() -> (TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("mostro.db")).unwrap();
    (dir, Arc::new(store))
}

macro_rules! check {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_dir, store) = fresh();
            store_suite::$name(&*store).await;
            store.integrity_check().await.unwrap();
        }
    )*};
}

check!(
    order_insert_and_replace,
    order_roundtrip_keeps_every_field,
    commit_is_all_or_nothing,
    duplicate_insert_in_commit_applies_nothing,
    replay_guard,
    outbox_ids_and_pending_order,
    outbox_done_in_same_commit_as_new_effects,
    outbox_cursor_paging,
    effect_pending_reads_committed_state,
    dead_letters,
    dead_letters_are_atomic_with_the_commit,
    deadlines,
    htlc_expiring,
    lookup_by_hold_hash_and_dispute,
    open_orders,
    user_trade_index,
    user_ratings,
    solvers,
    concurrent_replaces_one_wins,
    settings,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_fresh_stores() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let make = || {
        let i = n.fetch_add(1, Ordering::Relaxed);
        Arc::new(SqliteStore::open(dir.path().join(format!("s{i}.db"))).unwrap())
    };
    store_suite::run_all(&make).await;
    assert_eq!(
        n.load(Ordering::Relaxed),
        store_suite::CHECKS,
        "every check ran on its own store"
    );
}

// SQLite-specific behaviour beyond the port.

#[tokio::test]
async fn prune_events_drops_only_old_records() {
    let (_dir, s) = fresh();
    let ev = |n, at| Commit {
        event: Some(event_id(n)),
        ..Commit::at(Timestamp(at))
    };
    s.commit(ev(1, 1_000)).await.unwrap();
    s.commit(ev(2, 2_000)).await.unwrap();
    assert_eq!(s.prune_events(Timestamp(1_500)).await.unwrap(), 1);
    assert!(!s.seen_event(&event_id(1)).await.unwrap());
    assert!(s.seen_event(&event_id(2)).await.unwrap());
    assert_eq!(
        s.commit(ev(2, 2_500)).await.unwrap_err().kind,
        StoreErrorKind::Duplicate
    );
    assert_eq!(s.prune_events(Timestamp(1_500)).await.unwrap(), 0);
    assert_eq!(s.stats().await.unwrap().events, 1);
}

#[tokio::test]
async fn prune_outbox_drops_only_old_completed_effects() {
    let (_dir, s) = fresh();
    let ids = s
        .commit(Commit {
            effects: vec![effect(1), effect(2), effect(3)],
            ..Commit::at(Timestamp(1_000))
        })
        .await
        .unwrap();
    s.commit(Commit {
        done: vec![ids[0]],
        ..Commit::at(Timestamp(1_100))
    })
    .await
    .unwrap();
    s.commit(Commit {
        done: vec![ids[2]],
        ..Commit::at(Timestamp(3_000))
    })
    .await
    .unwrap();
    assert_eq!(
        s.prune_outbox(Timestamp(2_000)).await.unwrap(),
        1,
        "only the effect done at 1100"
    );
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.outbox_rows, stats.pending_effects), (2, 1));
    assert_eq!(
        s.pending_effects(10).await.unwrap(),
        vec![(ids[1], effect(2))]
    );
    assert_eq!(
        s.prune_outbox(Timestamp(u64::MAX)).await.unwrap(),
        1,
        "never the pending one"
    );
    assert_eq!(s.pending_effects(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn prune_outbox_keeps_dead_letters() {
    let (_dir, s) = fresh();
    let ids = s
        .commit(Commit {
            effects: vec![effect(1), effect(2), effect(3)],
            ..Commit::at(Timestamp(1_000))
        })
        .await
        .unwrap();
    s.commit(Commit {
        done: vec![ids[0]],
        dead: vec![(ids[1], "message too large".into())],
        ..Commit::at(Timestamp(1_000))
    })
    .await
    .unwrap();
    assert_eq!(
        s.prune_outbox(Timestamp(u64::MAX)).await.unwrap(),
        1,
        "only the completed effect"
    );
    let (dead, total) = s.dead_effects(10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(
        dead.iter()
            .map(|d| (d.id, d.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![(ids[1], "message too large")]
    );
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.outbox_rows, stats.pending_effects), (2, 1));
    assert_eq!(s.pending_effect_count().await.unwrap(), 1, "effect 3 only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effect_pending_sees_each_commit_under_concurrent_load() {
    // Group commit and the reader pool: a completion is visible to `effect_pending` as soon as
    // its own commit returned, whatever else is being committed meanwhile.
    let (_dir, s) = fresh();
    let mut tasks = Vec::new();
    for t in 0..8u16 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            for k in 0..20u16 {
                let ids = s
                    .commit(Commit {
                        effects: vec![effect(t * 100 + k)],
                        ..Commit::at(Timestamp(0))
                    })
                    .await
                    .unwrap();
                assert!(s.effect_pending(ids[0]).await.unwrap());
                let finish = if k % 2 == 0 {
                    Commit {
                        done: ids.clone(),
                        ..Commit::at(Timestamp(0))
                    }
                } else {
                    Commit {
                        dead: vec![(ids[0], format!("dead {t}/{k}"))],
                        ..Commit::at(Timestamp(0))
                    }
                };
                s.commit(finish).await.unwrap();
                assert!(!s.effect_pending(ids[0]).await.unwrap(), "{t}/{k}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(s.pending_effects(10).await.unwrap().is_empty());
    assert_eq!(s.pending_effect_count().await.unwrap(), 0);
    assert_eq!(s.dead_effects(0).await.unwrap().1, 80);
}

#[tokio::test]
async fn import_is_all_or_nothing_and_trade_keys_find_any_order() {
    let (_dir, s) = fresh();
    let a = order(1, identity(1));
    let mut b = taken(order(2, identity(2)), identity(1));
    b.status = mostro_core::Status::Success;
    s.import_orders(vec![a.clone(), b.clone()]).await.unwrap();
    let c = order(3, identity(3));
    let err = s
        .import_orders(vec![c.clone(), a.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Conflict);
    assert_eq!(
        s.order(c.id).await.unwrap(),
        None,
        "a failed import leaves nothing"
    );
    assert_eq!(
        s.orders_by_trade_key(&a.maker.trade_key).await.unwrap(),
        vec![a.clone()]
    );
    let taker_key = b.taker.as_ref().unwrap().trade_key;
    assert_eq!(
        s.orders_by_trade_key(&taker_key).await.unwrap(),
        vec![b.clone()],
        "terminal orders too"
    );
    assert!(
        s.orders_by_trade_key(&identity(1))
            .await
            .unwrap()
            .is_empty(),
        "an identity is not a trade key"
    );
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.orders, stats.open_orders), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_commits_all_land_with_distinct_ids() {
    let (_dir, s) = fresh();
    let tasks: Vec<_> = (0..200u16)
        .map(|n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let c = Commit {
                    event: Some(event_id(n)),
                    orders: vec![insert(&order(n, identity(n)))],
                    effects: vec![effect(n)],
                    ..Commit::at(Timestamp(0))
                };
                (n, s.commit(c).await.unwrap())
            })
        })
        .collect();
    let mut by_id = Vec::new();
    for t in tasks {
        let (n, ids) = t.await.unwrap();
        assert_eq!(ids.len(), 1);
        by_id.push((ids[0], effect(n)));
    }
    by_id.sort_by_key(|(id, _)| *id);
    by_id.dedup_by_key(|(id, _)| *id);
    assert_eq!(by_id.len(), 200, "outbox ids must be distinct");
    assert_eq!(
        s.pending_effects(1000).await.unwrap(),
        by_id,
        "each commit's effect under its own id"
    );
    assert_eq!(s.stats().await.unwrap().orders, 200);
}

#[tokio::test]
async fn a_damaged_row_is_reported_as_corrupt() {
    let (dir, s) = fresh();
    let a = order(1, identity(1));
    let b = order(2, identity(1));
    s.commit(Commit {
        orders: vec![insert(&a), insert(&b)],
        effects: vec![effect(2)],
        ..Commit::at(Timestamp(0))
    })
    .await
    .unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("mostro.db")).unwrap();
        c.execute(
            "UPDATE orders SET body = '{\"not\": \"an order\"}' WHERE id = ?1",
            [a.id.0.as_bytes()],
        )
        .unwrap();
        c.execute(
            "UPDATE orders SET version = 7 WHERE id = ?1",
            [b.id.0.as_bytes()],
        )
        .unwrap();
        c.execute("UPDATE outbox SET effect = 'garbage'", [])
            .unwrap();
    }
    assert_eq!(
        s.order(a.id).await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        s.order(b.id).await.unwrap_err().kind,
        StoreErrorKind::Corrupt,
        "body and row disagree"
    );
    assert_eq!(
        s.open_orders().await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        s.pending_effects(10).await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
}
