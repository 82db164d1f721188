//! Every query the engine runs (and the maintenance deletes) must be answered from an index:
//! no `SCAN` of a table, no scan of a full index, no temporary sort.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test"
)]

use rusqlite::Connection;
use rusqlite::types::Null;

use crate::schema;
use crate::sql::PLANNED;

/// Indexes that hold only the rows a query wants (partial indexes): scanning them is fine.
const PARTIAL: &[&str] = &["orders_open", "outbox_pending", "outbox_dead"];

fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    for i in 1..=stmt.parameter_count() {
        stmt.raw_bind_parameter(i, Null).unwrap();
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        out.push(row.get::<_, String>(3).unwrap());
    }
    out
}

/// What is wrong with the plan of `sql` (empty when every step searches an index).
fn problems(conn: &Connection, sql: &str) -> Vec<String> {
    let lines = plan(conn, sql);
    let mut bad = Vec::new();
    if lines.is_empty() {
        bad.push("no plan".to_owned());
    }
    for line in &lines {
        if line.contains("TEMP B-TREE") {
            bad.push(format!("temporary sort: {line}"));
        } else if line.starts_with("SCAN") {
            let partial = PARTIAL.iter().any(|ix| {
                line.contains(&format!("USING INDEX {ix}"))
                    || line.contains(&format!("USING COVERING INDEX {ix}"))
            });
            if !partial {
                bad.push(format!("full scan: {line}"));
            }
        } else if !(line.starts_with("SEARCH")
            || line.starts_with("COMPOUND")
            || line.starts_with("LEFT-MOST")
            || line.starts_with("UNION")
            || line.starts_with("MULTI-INDEX")
            || line.starts_with("INDEX "))
        {
            bad.push(format!("unexpected step: {line}"));
        }
    }
    bad
}

fn check_plans(conn: &Connection) {
    for (name, sql) in PLANNED {
        let bad = problems(conn, sql);
        assert!(bad.is_empty(), "{name}: {bad:?} in {:?}", plan(conn, sql));
    }
}

#[test]
fn every_query_uses_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.db");
    schema::ensure_file(&path).unwrap();
    let mut conn = Connection::open(&path).unwrap();
    schema::migrate(&mut conn, &path).unwrap();
    // Empty tables first, then with rows and statistics, as the planner may change its mind.
    check_plans(&conn);
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO orders (id, status, terminal, version, deadline, hold_hash, dispute_id,
             htlc_expiry, maker_identity, taker_identity, maker_trade_key, taker_trade_key,
             created_at, body)
         SELECT randomblob(16), 'success', i % 50 != 0, 3,
             CASE WHEN i % 50 = 0 THEN i END, randomblob(32), NULL, NULL,
             randomblob(32), randomblob(32), randomblob(32), randomblob(32), i, '{}' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO outbox (order_id, effect, created_at, done_at, dead_reason)
         SELECT NULL, '{}', i, CASE WHEN i % 100 = 0 THEN NULL ELSE i END,
             CASE WHEN i % 100 = 50 THEN 'undeliverable' END FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO events (id, seen_at) SELECT randomblob(32), i FROM n;
         ANALYZE;",
    )
    .unwrap();
    check_plans(&conn);
}

#[test]
fn the_plan_check_catches_scans_and_sorts() {
    // The checker itself must be able to fail.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.db");
    schema::ensure_file(&path).unwrap();
    let mut conn = Connection::open(&path).unwrap();
    schema::migrate(&mut conn, &path).unwrap();
    assert!(!problems(&conn, "SELECT body FROM orders WHERE status = ?1").is_empty());
    assert!(!problems(&conn, "SELECT id FROM outbox ORDER BY created_at").is_empty());
    assert!(
        !problems(
            &conn,
            "SELECT body FROM orders WHERE terminal = 0 ORDER BY status"
        )
        .is_empty()
    );
    assert!(problems(&conn, "SELECT body FROM orders WHERE id = ?1").is_empty());
}
