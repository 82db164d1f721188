//! A database written by an older schema version opens, migrates in place and keeps its data;
//! what the new version adds (dead letters) works on the migrated rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mostro_core::ports::{Commit, DeadEffect, EffectId, Store, StoreErrorKind};
use mostro_core::types::Timestamp;
use mostro_sqlite::{SCHEMA_VERSION, SqliteConfig, SqliteStore};
use mostro_testkit::store_suite::{effect, event_id, identity, order};
use rusqlite::{Connection, params};

/// Schema version 1 exactly as released (its migration file is never edited).
const V1: &str = include_str!("../migrations/001_init.sql");

/// Writes a version-1 database by hand, the way a version-1 binary laid out its rows: one
/// open order, a replay-guard record, a pending and a completed outbox effect.
fn write_v1(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(V1).unwrap();
    c.pragma_update(None, "user_version", 1).unwrap();
    let o = order(1, identity(1));
    c.execute(
        "INSERT INTO orders (id, status, terminal, version, deadline, hold_hash, dispute_id, \
         htlc_expiry, maker_identity, taker_identity, maker_trade_key, taker_trade_key, \
         created_at, body) VALUES (?1, ?2, 0, 0, NULL, NULL, NULL, NULL, ?3, NULL, ?4, NULL, ?5, ?6)",
        params![
            o.id.0.as_bytes().as_slice(),
            o.status.as_str(),
            o.maker.identity.0.as_slice(),
            o.maker.trade_key.0.as_slice(),
            i64::try_from(o.created_at.0).unwrap(),
            serde_json::to_string(&o).unwrap(),
        ],
    )
    .unwrap();
    c.execute(
        "INSERT INTO events (id, seen_at) VALUES (?1, 1000)",
        [event_id(1).0.as_slice()],
    )
    .unwrap();
    for (n, done) in [(1u16, None), (2, Some(1_100i64))] {
        c.execute(
            "INSERT INTO outbox (order_id, effect, created_at, done_at) VALUES (NULL, ?1, 1000, ?2)",
            params![serde_json::to_string(&effect(n)).unwrap(), done],
        )
        .unwrap();
    }
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_version_1_database_migrates_and_keeps_its_data() {
    assert_eq!(SCHEMA_VERSION, 4, "add the new version's checks here");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    write_v1(&path);
    assert_eq!(user_version(&path), 1);

    let config = SqliteConfig::default();
    let s = SqliteStore::open_with(&path, config.clone()).unwrap();
    s.integrity_check().await.unwrap();
    let o = order(1, identity(1));
    assert_eq!(s.order(o.id).await.unwrap(), Some(o.clone()));
    assert_eq!(s.open_orders().await.unwrap(), vec![o]);
    assert!(s.seen_event(&event_id(1)).await.unwrap());
    assert_eq!(
        s.pending_effects(10).await.unwrap(),
        vec![(EffectId(1), effect(1))]
    );
    assert_eq!(
        s.pending_effects_after(None, 10).await.unwrap(),
        vec![(EffectId(1), effect(1))]
    );
    assert!(s.effect_pending(EffectId(1)).await.unwrap());
    assert!(!s.effect_pending(EffectId(2)).await.unwrap());
    assert_eq!(s.dead_effects(10).await.unwrap(), (Vec::new(), 0));
    // Version 3: settings, empty after migrating.
    assert_eq!(s.setting("maintenance").await.unwrap(), None);
    s.set_setting("maintenance", "on").await.unwrap();

    // The migrated outbox takes dead letters, and pruning keeps them.
    s.commit(Commit {
        dead: vec![(EffectId(1), "invalid recipient key".into())],
        ..Commit::at(Timestamp(5_000))
    })
    .await
    .unwrap();
    let dead = vec![DeadEffect {
        id: EffectId(1),
        effect: effect(1),
        reason: "invalid recipient key".into(),
    }];
    assert_eq!(s.dead_effects(10).await.unwrap(), (dead.clone(), 1));
    assert_eq!(
        s.prune_outbox(Timestamp(u64::MAX)).await.unwrap(),
        1,
        "the old completed effect goes, the dead letter stays"
    );
    // New ids continue after the old ones.
    let ids = s
        .commit(Commit {
            effects: vec![effect(3)],
            ..Commit::at(Timestamp(5_000))
        })
        .await
        .unwrap();
    assert_eq!(ids, vec![EffectId(3)]);
    drop(s);
    assert_eq!(user_version(&path), SCHEMA_VERSION);

    // Reopening does not migrate again and keeps the dead letter and the setting.
    let s = SqliteStore::open_with(&path, config).unwrap();
    assert_eq!(
        s.setting("maintenance").await.unwrap().as_deref(),
        Some("on")
    );
    assert_eq!(s.dead_effects(10).await.unwrap(), (dead, 1));
    assert_eq!(
        s.pending_effects_after(Some(EffectId(1)), 10)
            .await
            .unwrap(),
        vec![(EffectId(3), effect(3))]
    );
    s.integrity_check().await.unwrap();
    drop(s);

    // Version 4: every row names its format; the old rows are format 1.
    let c = Connection::open(&path).unwrap();
    let formats = |sql: &str| -> Vec<i64> {
        let mut st = c.prepare(sql).unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(formats("SELECT body_format FROM orders"), vec![1]);
    assert_eq!(
        formats("SELECT effect_format FROM outbox ORDER BY id"),
        vec![1, 1]
    );
    // A row in a format this build does not know is refused by name, not guessed at.
    c.execute("UPDATE orders SET body_format = 2", []).unwrap();
    c.execute("UPDATE outbox SET effect_format = 7 WHERE id = 3", [])
        .unwrap();
    drop(c);
    let s = SqliteStore::open(&path).unwrap();
    let e = s.order(order(1, identity(1)).id).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Corrupt);
    assert!(e.message.contains("format 2"), "{e}");
    let e = s.pending_effects(10).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Corrupt);
    assert!(e.message.contains("format 7"), "{e}");
}

#[test]
fn the_new_index_exists_after_migrating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    write_v1(&path);
    drop(SqliteStore::open(&path).unwrap());
    let c = Connection::open(&path).unwrap();
    let sql: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'outbox_dead'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(sql.contains("dead_reason IS NOT NULL"), "{sql}");
}
