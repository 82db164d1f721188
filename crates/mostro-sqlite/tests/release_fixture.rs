//! A database written by a released build opens with this one and means the same thing.
//!
//! `tests/data/schema3-demo-trade.db` was written by `mostro-demo --trade` (schema version 3):
//! one sell order traded to `success` (hold settled, buyer paid, both rated), the two users,
//! the replay guard of the seven requests and the 24 outbox effects of the trade, all done.
//! The file is never regenerated: opening it migrates it to the current schema, and every row
//! must decode to what it said and re-encode byte for byte in row format 1 (`mostro_sqlite::rows`).
//! If a change to a domain type alters how a stored row decodes or re-encodes, this test fails,
//! and the change needs a new row format instead of a silent schema change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mostro_core::order::{HoldState, Status};
use mostro_core::ports::Store;
use mostro_core::types::{EventId, OrderId, PubKey};
use mostro_sqlite::{SCHEMA_VERSION, SqliteStore, rows};
use rusqlite::Connection;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/schema3-demo-trade.db"
);

fn copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mostro.db");
    std::fs::copy(FIXTURE, &path).unwrap();
    (dir, path)
}

fn key(bytes: Vec<u8>) -> [u8; 32] {
    bytes.try_into().unwrap()
}

#[tokio::test]
async fn the_released_database_opens_and_every_row_decodes_to_what_it_said() {
    let (_dir, path) = copy();
    // Read the raw rows before the store touches the file.
    let (id, body, maker, taker, events, effects) = {
        let c = Connection::open(&path).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 3, "the fixture is a schema-3 file");
        let (id, body): (Vec<u8>, String) = c
            .query_row("SELECT id, body FROM orders", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let (maker, taker): (Vec<u8>, Vec<u8>) = c
            .query_row(
                "SELECT maker_identity, taker_identity FROM orders",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let mut st = c.prepare("SELECT id FROM events").unwrap();
        let events: Vec<Vec<u8>> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut st = c.prepare("SELECT effect FROM outbox ORDER BY id").unwrap();
        let effects: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        (id, body, maker, taker, events, effects)
    };
    const { assert!(SCHEMA_VERSION >= 4) };
    let s = SqliteStore::open(&path).unwrap();
    s.integrity_check().await.unwrap();
    let migrated: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(migrated, SCHEMA_VERSION, "opening migrated the file");

    let id = OrderId(uuid::Uuid::from_slice(&id).unwrap());
    let o = s.order(id).await.unwrap().expect("the order is there");
    assert_eq!(o.status, Status::Success);
    assert_eq!(o.amount.0, 100_000);
    assert_eq!(o.fiat_code, "EUR");
    let hold = o.hold.as_ref().expect("the hold invoice is kept");
    assert_eq!(hold.state, HoldState::Settled);
    assert_eq!(hold.preimage.hash(), hold.hash, "the preimage is kept");
    let payout = o.payout.as_ref().expect("the payout is kept");
    assert_eq!(payout.amount.0, 99_700);
    assert!(payout.paid_hash.is_some(), "the payout is recorded as paid");
    assert!(o.buyer_rated && o.seller_rated);
    assert!(s.open_orders().await.unwrap().is_empty(), "nothing open");
    assert_eq!(
        s.due(mostro_core::types::Timestamp(u64::MAX / 4), 10)
            .await
            .unwrap(),
        vec![]
    );

    // Re-encoding the decoded order gives back the stored bytes: format 1 is what the release
    // wrote, and rows written from now on are read the same way.
    assert_eq!(
        rows::encode_order(&o).unwrap(),
        body,
        "the stored order body no longer round-trips: add a row format"
    );
    assert_eq!(rows::decode_order(1, &body).unwrap(), o);
    // The same for every outbox effect row.
    assert_eq!(effects.len(), 24);
    for json in &effects {
        let e = rows::decode_effect(1, json).unwrap();
        assert_eq!(
            &rows::encode_effect(&e).unwrap(),
            json,
            "an effect row no longer round-trips: add an effect row format"
        );
    }

    for identity in [maker, taker] {
        let u = s
            .user(&PubKey(key(identity)))
            .await
            .unwrap()
            .expect("both traders have a record");
        assert_eq!(u.reviews, 1);
        assert_eq!(u.rating_sum, 5);
        assert_eq!(u.last_trade_index, 1);
    }
    assert_eq!(events.len(), 7);
    for e in events {
        assert!(
            s.seen_event(&EventId(key(e))).await.unwrap(),
            "replay guard kept"
        );
    }
    assert!(
        s.pending_effects(100).await.unwrap().is_empty(),
        "every effect was done"
    );
}
