//! `tools`: online backup, check and stats on real database files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mostro_core::ports::{Commit, Store};
use mostro_sqlite::{SCHEMA_VERSION, SqliteStore, tools};
use mostro_testkit::store_suite::{effect, event_id, identity, insert, order};

#[tokio::test]
async fn backup_while_open_then_check_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mostro.db");
    let store = SqliteStore::open(&src).unwrap();
    for n in 1..=3u16 {
        store
            .commit(Commit {
                event: Some(event_id(n)),
                orders: vec![insert(&order(n, identity(1)))],
                effects: vec![effect(n)],
                ..Commit::at(mostro_core::types::Timestamp(0))
            })
            .await
            .unwrap();
    }
    store.set_setting("maintenance", "on").await.unwrap();

    // The store stays open (its WAL holds the commits) while the backup runs.
    let dst = dir.path().join("backup.db");
    let pages = tools::backup(&src, &dst).unwrap();
    assert!(pages > 0);
    let e = tools::backup(&src, &dst).unwrap_err().to_string();
    assert!(e.contains("backup.db"), "refuses to overwrite: {e}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let r = tools::check(&dst).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.integrity, vec!["ok"]);
    assert_eq!(r.schema_version, SCHEMA_VERSION);

    let s = tools::table_stats(&dst).unwrap();
    let rows: std::collections::BTreeMap<_, _> = s.rows.iter().cloned().collect();
    assert_eq!(rows["orders"], 3);
    assert_eq!(rows["outbox"], 3);
    assert_eq!(rows["events"], 3);
    assert_eq!(rows["settings"], 1);
    assert_eq!(rows["users"], 0);
    assert!(s.file_bytes > 0);
    assert_eq!(s.wal_bytes, 0, "a backup is one self-contained file");

    // The copy opens as a store with every row.
    drop(store);
    let copy = SqliteStore::open(&dst).unwrap();
    assert!(
        copy.order(order(2, identity(1)).id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        copy.setting("maintenance").await.unwrap().as_deref(),
        Some("on")
    );
}

#[test]
fn check_refuses_what_is_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let e = tools::check(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.db"), "{e}");
    assert!(!missing.exists(), "check never creates a file");
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let r = tools::check(&foreign).unwrap();
    assert!(!r.ours && !r.ok(), "{r:?}");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    assert!(tools::check(&junk).is_err());
}
