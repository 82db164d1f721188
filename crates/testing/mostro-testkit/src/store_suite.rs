//! Conformance suite for the [`Store`] port: every store (the SQLite adapter, the in-memory
//! fake) must pass it.
//!
//! Run everything with [`run_all`], giving a function that makes a fresh, empty store, or call
//! the individual checks (each expects an empty store) from separate tests:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     mostro_testkit::store_suite::run_all(&|| Arc::new(MemStore::new())).await;
//! }
//! ```
//!
//! The checks use only the port, build their orders with [`order`] and friends, and never
//! depend on what a store records beyond the port's contract (no timestamps, no tie orders).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test suite: failures are assertion panics"
)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use mostro_core::machine::{Effect, Notice, Notify, UserUpdate};
use mostro_core::order::{
    Dispute, DisputeStatus, Hold, HoldState, Kind, NextTrade, Order, Party, Payout, PayoutInvoice,
    PayoutState, Protocol, Role, Status,
};
use mostro_core::ports::{
    Commit, DeadEffect, EffectId, OrderKey, OrderWrite, Solver, Store, StoreError, StoreErrorKind,
    User, View, ViewQuery,
};
use mostro_core::types::{
    BlockHeight, EventId, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp,
};

/// How many checks [`run_all`] runs (each on its own fresh store).
pub const CHECKS: usize = 22;

/// The time of the suite's commits.
pub const T0: Timestamp = Timestamp(1_700_000_000);

/// Every check, in order, each on a fresh store from `make`.
pub async fn run_all<S: Store + ?Sized>(make: &dyn Fn() -> Arc<S>) {
    order_insert_and_replace(&*make()).await;
    order_roundtrip_keeps_every_field(&*make()).await;
    commit_is_all_or_nothing(&*make()).await;
    duplicate_insert_in_commit_applies_nothing(&*make()).await;
    replay_guard(&*make()).await;
    outbox_ids_and_pending_order(&*make()).await;
    outbox_done_in_same_commit_as_new_effects(&*make()).await;
    outbox_cursor_paging(&*make()).await;
    effect_pending_reads_committed_state(&*make()).await;
    dead_letters(&*make()).await;
    dead_letters_are_atomic_with_the_commit(&*make()).await;
    deadlines(&*make()).await;
    htlc_expiring(&*make()).await;
    lookup_by_hold_hash_and_dispute(&*make()).await;
    open_orders(&*make()).await;
    user_trade_index(&*make()).await;
    user_ratings(&*make()).await;
    solvers(&*make()).await;
    concurrent_replaces_one_wins(&*make()).await;
    settings(&*make()).await;
    rows_carry_the_commit_time(&*make()).await;
    view_answers_each_part(&*make()).await;
}

/// `view` answers each part it is asked for as the single-purpose method does, and nothing
/// else.
pub async fn view_answers_each_part<S: Store + ?Sized>(s: &S) {
    let maker = identity(1);
    let taker = identity(2);
    let a = order(1, maker);
    let b = with_dispute(taken(order(2, maker), taker), order_id(900));
    commit(
        s,
        Commit {
            event: Some(event_id(1)),
            orders: vec![insert(&a), insert(&b)],
            users: vec![UserUpdate::TradeIndex {
                identity: maker,
                index: 4,
            }],
            solvers: vec![Solver {
                identity: taker,
                write: true,
            }],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(
        s.view(&ViewQuery::default()).await.unwrap(),
        View::default(),
        "nothing asked, nothing read"
    );
    let all = ViewQuery {
        event: Some(event_id(1)),
        solver_of: Some(taker),
        user_of: Some(maker),
        order: Some(OrderKey::Id(a.id)),
        open_orders_of: Some(maker),
    };
    let v = s.view(&all).await.unwrap();
    assert!(v.seen);
    assert_eq!(v.solver, s.solver(&taker).await.unwrap());
    assert!(v.solver.is_some());
    assert_eq!(v.user, s.user(&maker).await.unwrap());
    assert_eq!(v.user.as_ref().map(|u| u.last_trade_index), Some(4));
    assert_eq!(v.order.as_ref(), Some(&a));
    let mut open: Vec<_> = v.open_orders.iter().map(|o| o.id).collect();
    open.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(open, want);
    // Absent things are absent; an order by its dispute id.
    let v = s
        .view(&ViewQuery {
            event: Some(event_id(2)),
            solver_of: Some(maker),
            user_of: Some(taker),
            order: Some(OrderKey::Dispute(order_id(900))),
            open_orders_of: Some(identity(3)),
        })
        .await
        .unwrap();
    assert!(!v.seen);
    assert_eq!((v.solver, v.user), (None, None));
    assert_eq!(v.order.map(|o| o.id), Some(b.id));
    assert!(v.open_orders.is_empty());
    let v = s
        .view(&ViewQuery {
            order: Some(OrderKey::Id(order_id(77))),
            ..ViewQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(v.order, None);
}

/// The store stamps with the commit's time, never a clock of its own: a user is created at the
/// `at` of the commit that first named it, and keeps it.
pub async fn rows_carry_the_commit_time<S: Store + ?Sized>(s: &S) {
    let x = identity(77);
    let ti = |index, at| Commit {
        users: vec![UserUpdate::TradeIndex { identity: x, index }],
        ..Commit::at(at)
    };
    s.commit(ti(1, Timestamp(5_000))).await.unwrap();
    s.commit(ti(2, Timestamp(9_000))).await.unwrap();
    let u = s.user(&x).await.unwrap().expect("created");
    assert_eq!((u.created_at, u.last_trade_index), (Timestamp(5_000), 2));
}

/// Settings: unset is `None`, last write wins, keys are independent.
pub async fn settings<S: Store + ?Sized>(s: &S) {
    assert_eq!(s.setting("maintenance").await.unwrap(), None);
    s.set_setting("maintenance", "on").await.unwrap();
    assert_eq!(
        s.setting("maintenance").await.unwrap().as_deref(),
        Some("on")
    );
    s.set_setting("maintenance", "off").await.unwrap();
    assert_eq!(
        s.setting("maintenance").await.unwrap().as_deref(),
        Some("off")
    );
    s.set_setting("other", "x").await.unwrap();
    assert_eq!(
        s.setting("maintenance").await.unwrap().as_deref(),
        Some("off")
    );
    assert_eq!(s.setting("other").await.unwrap().as_deref(), Some("x"));
    assert_eq!(
        s.setting("Maintenance").await.unwrap(),
        None,
        "keys are exact"
    );
}

// ---------------------------------------------------------------------------------------------
// Builders

/// A key whose 32 bytes are `tag` followed by `n` (big endian) and zeros.
#[must_use]
pub fn key(tag: u8, n: u16) -> PubKey {
    let mut b = [0u8; 32];
    b[0] = tag;
    b[1..3].copy_from_slice(&n.to_be_bytes());
    PubKey(b)
}

/// A well-known identity key for tests (`identity(1)`, `identity(2)`, ...).
#[must_use]
pub fn identity(n: u16) -> PubKey {
    key(0x1d, n)
}

/// A deterministic order id.
#[must_use]
pub fn order_id(n: u16) -> OrderId {
    let mut b = [0x5au8; 16];
    b[0..2].copy_from_slice(&n.to_be_bytes());
    OrderId::from_random_bytes(b)
}

/// A deterministic event id.
#[must_use]
pub fn event_id(n: u16) -> EventId {
    let mut b = [0xe7u8; 32];
    b[0..2].copy_from_slice(&n.to_be_bytes());
    EventId(b)
}

/// A deterministic payment hash.
#[must_use]
pub fn hash(n: u16) -> PaymentHash {
    let mut b = [0x4au8; 32];
    b[0..2].copy_from_slice(&n.to_be_bytes());
    PaymentHash(b)
}

/// A pending sell order `n` (version 0) made by `maker`, with its own trade key, no taker, no
/// hold, no dispute and no deadline.
#[must_use]
pub fn order(n: u16, maker: PubKey) -> Order {
    let created = Timestamp(1_700_000_000u64.saturating_add(u64::from(n)));
    Order {
        id: order_id(n),
        version: 0,
        kind: Kind::Sell,
        status: Status::Pending,
        fiat_code: "EUR".into(),
        fiat_amount: 100,
        min_amount: None,
        max_amount: None,
        amount: Sats(150_000),
        premium: 0,
        price_from_api: false,
        payment_method: "SEPA,face to face".into(),
        fee: Sats(150),
        created_at: created,
        expires_at: created.plus(86_400),
        taken_at: None,
        maker: Party {
            trade_key: key(0x7a, n),
            identity: maker,
            trade_index: 3,
            protocol: Protocol::V2,
        },
        taker: None,
        buyer_invoice: None,
        buyer_address: None,
        hold: None,
        payout: None,
        cancel_initiator: None,
        dispute: None,
        buyer_rated: false,
        seller_rated: false,
        next_trade: None,
        range_parent: None,
        abandoned_holds: Vec::new(),
        deadline: None,
        dev_fee: None,
    }
}

/// `o` taken by `taker` (with its own trade key), status `WaitingPayment`.
#[must_use]
pub fn taken(mut o: Order, taker: PubKey) -> Order {
    let n = u16::from_be_bytes([o.id.0.as_bytes()[0], o.id.0.as_bytes()[1]]);
    o.taker = Some(Party {
        trade_key: key(0x7b, n),
        identity: taker,
        trade_index: 0,
        protocol: Protocol::V1,
    });
    o.status = Status::WaitingPayment;
    o.taken_at = Some(o.created_at.plus(60));
    o
}

/// `o` with a hold invoice of hash `h` in `state`, HTLC expiring at `expiry`.
#[must_use]
pub fn with_hold(mut o: Order, h: PaymentHash, state: HoldState, expiry: Option<u32>) -> Order {
    o.hold = Some(Hold {
        hash: h,
        preimage: Preimage([0x33; 32]),
        amount: Sats(150_150),
        bolt11: Some(format!("lnbcrt1500u1{}", h.to_hex())),
        state,
        htlc_expiry: expiry.map(BlockHeight),
        request_id: None,
    });
    o
}

/// `o` with an open dispute whose id is `id`.
#[must_use]
pub fn with_dispute(mut o: Order, id: OrderId) -> Order {
    o.dispute = Some(Dispute {
        id,
        status: DisputeStatus::Initiated,
        initiator: Role::Buyer,
        previous_status: o.status,
        solver: None,
        solver_write: false,
        taken_by_admin: false,
        created_at: o.created_at.plus(600),
        taken_at: None,
        expiry_warned: false,
        solver_party: None,
    });
    o.status = Status::Dispute;
    o
}

/// Order 5 with every optional part present (taker, accepted hold, dispute with a solver,
/// buyer invoice and address, a failed payout with history, next trade, abandoned holds, range
/// parent, ...): what a store or a row format must keep field for field.
#[must_use]
pub fn full_order() -> Order {
    let mut o = with_dispute(
        with_hold(
            taken(order(5, identity(1)), identity(2)),
            hash(5),
            HoldState::Accepted,
            Some(812),
        ),
        order_id(500),
    );
    o.deadline = Some(Timestamp(1_700_100_000));
    o.min_amount = Some(10);
    o.max_amount = Some(200);
    o.range_parent = Some(order_id(4));
    o.cancel_initiator = Some(Role::Seller);
    o.buyer_rated = true;
    o.taken_at = Some(Timestamp(1_700_000_100));
    o.buyer_address = Some("buyer@example.com".into());
    o.buyer_invoice = Some(PayoutInvoice {
        bolt11: "lnbcrt1...".into(),
        hash: hash(6),
        amount: Some(Sats(99_700)),
        expires_at: Timestamp(1_700_003_600),
        min_final_cltv: 18,
    });
    o.payout = Some(Payout {
        invoice: "lnbcrt1...".into(),
        hash: hash(6),
        amount: Sats(99_700),
        attempts: 2,
        state: PayoutState::Failed,
        routing_fee: Sats(12),
        previous: vec![hash(7)],
        checking: true,
        paid_hash: Some(hash(8)),
        duplicates: vec![hash(9)],
    });
    o.next_trade = Some(NextTrade {
        trade_key: identity(9),
        trade_index: 4,
    });
    o.abandoned_holds = vec![hash(10), hash(11)];
    o.dev_fee = Some(mostro_core::order::DevFee {
        amount: Sats(360),
        address: "dev@example.com".into(),
        state: mostro_core::order::DevFeeState::InFlight,
        invoice: Some("lnbcrt3600n1...".into()),
        hash: Some(hash(12)),
        previous: vec![hash(13)],
        attempts: 1,
        checking: true,
        paid_hash: None,
        routing_fee: Sats(0),
        duplicates: Vec::new(),
    });
    if let Some(d) = o.dispute.as_mut() {
        d.solver = Some(identity(3));
        d.solver_write = true;
        d.taken_at = Some(Timestamp(1_700_000_900));
        d.expiry_warned = true;
        d.solver_party = o.taker.clone();
    }
    o
}

/// The next version of `o` (what a transition stores).
#[must_use]
pub fn bumped(o: &Order) -> Order {
    let mut n = o.clone();
    n.version = o.version.saturating_add(1);
    n
}

/// An effect distinguishable by `n`; even `n` gives an order effect, odd a notification
/// without order.
#[must_use]
pub fn effect(n: u16) -> Effect {
    if n.is_multiple_of(2) {
        Effect::CreateHold {
            order_id: order_id(n),
            hash: hash(n),
            amount: Sats(u64::from(n).saturating_add(1000)),
            cltv_delta: 144,
            expiry_secs: 900,
            memo: format!("effect {n}"),
        }
    } else {
        Effect::Notify(Notify {
            to: key(0x70, n),
            protocol: Protocol::V2,
            request_id: Some(u64::from(n)),
            order_id: None,
            trade_index: None,
            notice: Notice::RateReceived(u8::try_from(n % 5).unwrap_or(0).saturating_add(1)),
        })
    }
}

/// Insert of a new order.
#[must_use]
pub fn insert(o: &Order) -> OrderWrite {
    OrderWrite {
        order: o.clone(),
        expected_version: None,
    }
}

/// Replacement of the stored version `expected` by `o`.
#[must_use]
pub fn replace(o: &Order, expected: u64) -> OrderWrite {
    OrderWrite {
        order: o.clone(),
        expected_version: Some(expected),
    }
}

async fn commit<S: Store + ?Sized>(s: &S, c: Commit) -> Vec<EffectId> {
    s.commit(c).await.expect("commit")
}

async fn write<S: Store + ?Sized>(s: &S, w: OrderWrite) {
    commit(
        s,
        Commit {
            orders: vec![w],
            ..Commit::at(T0)
        },
    )
    .await;
}

fn expect_kind<T: Debug>(r: Result<T, StoreError>, kind: StoreErrorKind, what: &str) {
    match r {
        Err(e) => assert_eq!(e.kind, kind, "{what}: wrong error kind: {e}"),
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
    }
}

async fn stored<S: Store + ?Sized>(s: &S, id: OrderId) -> Order {
    s.order(id)
        .await
        .expect("order")
        .unwrap_or_else(|| panic!("order {id} not stored"))
}

fn id_set(orders: &[Order]) -> BTreeSet<OrderId> {
    orders.iter().map(|o| o.id).collect()
}

async fn pending<S: Store + ?Sized>(s: &S) -> Vec<(EffectId, Effect)> {
    s.pending_effects(1000).await.expect("pending_effects")
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Insert, replace with the version check, `Conflict` on a duplicate insert, a stale version and
/// a replace of an unknown order; a refused write changes nothing.
pub async fn order_insert_and_replace<S: Store + ?Sized>(s: &S) {
    let o = order(1, identity(1));
    assert_eq!(s.order(o.id).await.expect("order"), None, "empty store");
    write(s, insert(&o)).await;
    assert_eq!(stored(s, o.id).await, o);

    let mut dup = o.clone();
    dup.fiat_amount = 999;
    expect_kind(
        s.commit(Commit {
            orders: vec![insert(&dup)],
            ..Commit::at(T0)
        })
        .await,
        StoreErrorKind::Conflict,
        "insert of an existing id",
    );
    assert_eq!(
        stored(s, o.id).await,
        o,
        "a refused insert must not overwrite"
    );

    let v1 = taken(bumped(&o), identity(2));
    write(s, replace(&v1, 0)).await;
    assert_eq!(stored(s, o.id).await, v1);

    let mut stale = bumped(&o);
    stale.fiat_amount = 7;
    expect_kind(
        s.commit(Commit {
            orders: vec![replace(&stale, 0)],
            ..Commit::at(T0)
        })
        .await,
        StoreErrorKind::Conflict,
        "replace with a stale version",
    );
    assert_eq!(stored(s, o.id).await, v1, "a stale replace must not apply");

    let ghost = order(2, identity(1));
    expect_kind(
        s.commit(Commit {
            orders: vec![replace(&ghost, 0)],
            ..Commit::at(T0)
        })
        .await,
        StoreErrorKind::Conflict,
        "replace of an unknown order",
    );
    assert_eq!(s.order(ghost.id).await.expect("order"), None);

    let v2 = bumped(&v1);
    write(s, replace(&v2, 1)).await;
    assert_eq!(stored(s, o.id).await.version, 2);
}

/// A fully populated order (taker, hold, dispute, deadline) reads back equal.
pub async fn order_roundtrip_keeps_every_field<S: Store + ?Sized>(s: &S) {
    let o = full_order();
    write(s, insert(&o)).await;
    assert_eq!(stored(s, o.id).await, o);
}

/// A commit whose second order write conflicts applies nothing: not the first write, not the
/// event, effects, completions, users or solvers.
pub async fn commit_is_all_or_nothing<S: Store + ?Sized>(s: &S) {
    let a = order(1, identity(1));
    let b = order(2, identity(1));
    commit(
        s,
        Commit {
            orders: vec![insert(&a), insert(&b)],
            ..Commit::at(T0)
        },
    )
    .await;
    let first = commit(
        s,
        Commit {
            effects: vec![effect(1)],
            ..Commit::at(T0)
        },
    )
    .await;

    let a1 = taken(bumped(&a), identity(2));
    let b_stale = bumped(&bumped(&b));
    let bad = Commit {
        at: T0,
        event: Some(event_id(1)),
        orders: vec![replace(&a1, 0), replace(&b_stale, 5)],
        effects: vec![effect(2), effect(3)],
        done: first.clone(),
        dead: Vec::new(),
        users: vec![UserUpdate::TradeIndex {
            identity: identity(9),
            index: 4,
        }],
        solvers: vec![Solver {
            identity: identity(8),
            write: true,
        }],
    };
    expect_kind(
        s.commit(bad.clone()).await,
        StoreErrorKind::Conflict,
        "second write stale",
    );
    assert_eq!(
        stored(s, a.id).await,
        a,
        "first write of a failed commit applied"
    );
    assert_eq!(stored(s, b.id).await, b);
    assert_eq!(
        pending(s).await,
        vec![(first[0], effect(1))],
        "effects or done of a failed commit applied"
    );
    assert!(
        !s.seen_event(&event_id(1)).await.expect("seen"),
        "event of a failed commit recorded"
    );
    assert_eq!(
        s.user(&identity(9)).await.expect("user"),
        None,
        "user update of a failed commit"
    );
    assert_eq!(
        s.solver(&identity(8)).await.expect("solver"),
        None,
        "solver of a failed commit"
    );

    // The same commit with the right version goes through entirely.
    let mut good = bad;
    good.orders[1] = replace(&bumped(&b), 0);
    let ids = commit(s, good).await;
    assert_eq!(ids.len(), 2);
    assert_eq!(stored(s, a.id).await, a1);
    assert_eq!(stored(s, b.id).await.version, 1);
    assert_eq!(
        pending(s).await,
        vec![(ids[0], effect(2)), (ids[1], effect(3))]
    );
    assert!(s.seen_event(&event_id(1)).await.expect("seen"));
    assert_eq!(
        s.user(&identity(9))
            .await
            .expect("user")
            .map(|u| u.last_trade_index),
        Some(4)
    );
    assert_eq!(
        s.solver(&identity(8)).await.expect("solver"),
        Some(Solver {
            identity: identity(8),
            write: true
        })
    );
}

/// A commit that inserts a new order and an order that already exists applies neither.
pub async fn duplicate_insert_in_commit_applies_nothing<S: Store + ?Sized>(s: &S) {
    let a = order(1, identity(1));
    write(s, insert(&a)).await;
    let c = order(3, identity(1));
    let mut a_again = a.clone();
    a_again.fiat_amount = 5;
    expect_kind(
        s.commit(Commit {
            orders: vec![insert(&c), insert(&a_again)],
            effects: vec![effect(4)],
            ..Commit::at(T0)
        })
        .await,
        StoreErrorKind::Conflict,
        "duplicate insert",
    );
    assert_eq!(
        s.order(c.id).await.expect("order"),
        None,
        "first insert of a failed commit applied"
    );
    assert_eq!(stored(s, a.id).await, a);
    assert!(pending(s).await.is_empty());
}

/// A known event id fails the commit with `Duplicate` and nothing of it is applied.
pub async fn replay_guard<S: Store + ?Sized>(s: &S) {
    let o = order(1, identity(1));
    assert!(!s.seen_event(&event_id(1)).await.expect("seen"));
    assert_eq!(
        s.last_event_seen_at().await.expect("last seen"),
        None,
        "an empty replay guard has no newest event"
    );
    let ids = commit(
        s,
        Commit {
            event: Some(event_id(1)),
            orders: vec![insert(&o)],
            effects: vec![effect(1)],
            ..Commit::at(T0)
        },
    )
    .await;
    assert!(s.seen_event(&event_id(1)).await.expect("seen"));
    assert!(
        !s.seen_event(&event_id(2)).await.expect("seen"),
        "another event is not seen"
    );
    let first_seen = s.last_event_seen_at().await.expect("last seen");
    assert!(first_seen.is_some(), "a processed event is the newest one");

    let other = order(2, identity(1));
    let replay = Commit {
        at: T0,
        event: Some(event_id(1)),
        orders: vec![insert(&other), replace(&bumped(&o), 0)],
        effects: vec![effect(2)],
        done: ids.clone(),
        dead: Vec::new(),
        users: vec![UserUpdate::TradeIndex {
            identity: identity(3),
            index: 1,
        }],
        solvers: vec![Solver {
            identity: identity(4),
            write: false,
        }],
    };
    expect_kind(
        s.commit(replay).await,
        StoreErrorKind::Duplicate,
        "replayed event",
    );
    assert_eq!(
        s.order(other.id).await.expect("order"),
        None,
        "order of a replay applied"
    );
    assert_eq!(
        stored(s, o.id).await.version,
        0,
        "replace of a replay applied"
    );
    assert_eq!(
        pending(s).await,
        vec![(ids[0], effect(1))],
        "effects or done of a replay applied"
    );
    assert_eq!(s.user(&identity(3)).await.expect("user"), None);
    assert_eq!(s.solver(&identity(4)).await.expect("solver"), None);

    // Commits without an event are not deduplicated.
    commit(
        s,
        Commit {
            effects: vec![effect(3)],
            ..Commit::at(T0)
        },
    )
    .await;
    commit(
        s,
        Commit {
            effects: vec![effect(3)],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(pending(s).await.len(), 3);
    // Neither the refused replay nor commits without an inbound event moved the newest event.
    assert_eq!(s.last_event_seen_at().await.expect("last seen"), first_seen);
}

/// Outbox ids increase in commit order and are never reused; pending effects come oldest first,
/// limited; done effects leave the pending list.
pub async fn outbox_ids_and_pending_order<S: Store + ?Sized>(s: &S) {
    assert!(pending(s).await.is_empty());
    let first = commit(
        s,
        Commit {
            effects: vec![effect(1), effect(2)],
            ..Commit::at(T0)
        },
    )
    .await;
    let second = commit(
        s,
        Commit {
            effects: vec![effect(3)],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 1);
    assert!(
        first[0] < first[1] && first[1] < second[0],
        "ids not increasing: {first:?} {second:?}"
    );
    let all = vec![
        (first[0], effect(1)),
        (first[1], effect(2)),
        (second[0], effect(3)),
    ];
    assert_eq!(pending(s).await, all);
    assert_eq!(
        s.pending_effects(2).await.expect("pending"),
        all[..2].to_vec(),
        "limit"
    );
    assert!(
        s.pending_effects(0).await.expect("pending").is_empty(),
        "limit 0"
    );

    commit(
        s,
        Commit {
            done: vec![first[1]],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(pending(s).await, vec![all[0].clone(), all[2].clone()]);
    assert_eq!(
        s.pending_effects(1).await.expect("pending"),
        vec![all[0].clone()]
    );

    commit(
        s,
        Commit {
            done: vec![first[0], second[0]],
            ..Commit::at(T0)
        },
    )
    .await;
    assert!(pending(s).await.is_empty());
    let third = commit(
        s,
        Commit {
            effects: vec![effect(4)],
            ..Commit::at(T0)
        },
    )
    .await;
    assert!(
        third[0] > second[0],
        "outbox id reused: {third:?} after {second:?}"
    );
    assert_eq!(pending(s).await, vec![(third[0], effect(4))]);
}

/// Completing effects and adding new ones in one commit (what the engine does when an effect's
/// result causes a transition).
pub async fn outbox_done_in_same_commit_as_new_effects<S: Store + ?Sized>(s: &S) {
    let o = order(1, identity(1));
    let ids = commit(
        s,
        Commit {
            orders: vec![insert(&o)],
            effects: vec![effect(2)],
            ..Commit::at(T0)
        },
    )
    .await;
    let next = commit(
        s,
        Commit {
            orders: vec![replace(&bumped(&o), 0)],
            effects: vec![effect(4), effect(5)],
            done: ids.clone(),
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(next.len(), 2);
    assert!(next[0] > ids[0]);
    assert_eq!(
        pending(s).await,
        vec![(next[0], effect(4)), (next[1], effect(5))]
    );
}

async fn after<S: Store + ?Sized>(
    s: &S,
    cursor: Option<EffectId>,
    limit: usize,
) -> Vec<(EffectId, Effect)> {
    s.pending_effects_after(cursor, limit)
        .await
        .expect("pending_effects_after")
}

async fn dead<S: Store + ?Sized>(s: &S, limit: usize) -> (Vec<DeadEffect>, u64) {
    s.dead_effects(limit).await.expect("dead_effects")
}

async fn is_pending<S: Store + ?Sized>(s: &S, id: EffectId) -> bool {
    s.effect_pending(id).await.expect("effect_pending")
}

fn dead_letter(id: EffectId, n: u16, reason: &str) -> DeadEffect {
    DeadEffect {
        id,
        effect: effect(n),
        reason: reason.to_owned(),
    }
}

/// `pending_effects_after` returns exactly the pending effects whose id is greater than the
/// cursor, in id order, at most `limit`; paging with the last id of each page visits every
/// pending effect once; a cursor on a completed or dead effect, or past the end, works.
pub async fn outbox_cursor_paging<S: Store + ?Sized>(s: &S) {
    assert!(after(s, None, 10).await.is_empty(), "empty outbox");
    let mut ids = commit(
        s,
        Commit {
            effects: (1..=4).map(effect).collect(),
            ..Commit::at(T0)
        },
    )
    .await;
    ids.extend(
        commit(
            s,
            Commit {
                effects: (5..=8).map(effect).collect(),
                ..Commit::at(T0)
            },
        )
        .await,
    );
    assert_eq!(ids.len(), 8);
    // ids[1] done, ids[4] dead: neither is pending.
    commit(
        s,
        Commit {
            done: vec![ids[1]],
            dead: vec![(ids[4], "undeliverable".to_owned())],
            ..Commit::at(T0)
        },
    )
    .await;
    let live: Vec<(EffectId, Effect)> = ids
        .iter()
        .zip(1u16..)
        .filter(|(id, _)| **id != ids[1] && **id != ids[4])
        .map(|(id, n)| (*id, effect(n)))
        .collect();
    assert_eq!(live.len(), 6);
    assert_eq!(after(s, None, 100).await, live, "no cursor: every pending");
    assert_eq!(pending(s).await, live, "pending_effects agrees");

    // Pages of 2 from the start: every pending effect once, in order.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = after(s, cursor, 2).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "limit exceeded: {page:?}");
        if let Some(c) = cursor {
            assert!(
                page.iter().all(|(id, _)| *id > c),
                "page at or before the cursor {c:?}: {page:?}"
            );
        }
        cursor = page.last().map(|(id, _)| *id);
        seen.extend(page);
        pages += 1;
        assert!(pages <= 10, "paging does not end");
    }
    assert_eq!(
        seen, live,
        "paging visits each pending effect once, in order"
    );
    assert_eq!(pages, 3);

    // A cursor on a pending, a done and a dead effect.
    assert_eq!(after(s, Some(ids[2]), 100).await, live[2..].to_vec());
    assert_eq!(
        after(s, Some(ids[1]), 100).await,
        live[1..].to_vec(),
        "cursor on a done effect"
    );
    assert_eq!(
        after(s, Some(ids[4]), 2).await,
        live[3..5].to_vec(),
        "cursor on a dead effect, limited"
    );
    assert!(
        after(s, Some(ids[7]), 100).await.is_empty(),
        "cursor at the end"
    );
    assert!(
        after(s, Some(EffectId(ids[7].0 + 1000)), 100)
            .await
            .is_empty(),
        "cursor past the end"
    );
    assert!(after(s, None, 0).await.is_empty(), "limit 0");

    // An effect committed later shows up after any earlier cursor.
    let late = commit(
        s,
        Commit {
            effects: vec![effect(9)],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(
        after(s, Some(ids[7]), 100).await,
        vec![(late[0], effect(9))]
    );
}

/// `effect_pending` is true for an inserted effect and false as soon as a commit completing
/// or dead-lettering it returned; false for an id never inserted.
pub async fn effect_pending_reads_committed_state<S: Store + ?Sized>(s: &S) {
    assert!(!is_pending(s, EffectId(1)).await, "empty outbox");
    let ids = commit(
        s,
        Commit {
            effects: vec![effect(1), effect(2), effect(3)],
            ..Commit::at(T0)
        },
    )
    .await;
    for id in &ids {
        assert!(is_pending(s, *id).await, "{id:?} just inserted");
    }
    assert!(!is_pending(s, EffectId(ids[2].0 + 100)).await, "unknown id");
    commit(
        s,
        Commit {
            done: vec![ids[0]],
            ..Commit::at(T0)
        },
    )
    .await;
    assert!(
        !is_pending(s, ids[0]).await,
        "pending right after its done commit"
    );
    assert!(is_pending(s, ids[1]).await);
    commit(
        s,
        Commit {
            dead: vec![(ids[1], "invalid recipient".to_owned())],
            ..Commit::at(T0)
        },
    )
    .await;
    assert!(
        !is_pending(s, ids[1]).await,
        "pending right after its dead commit"
    );
    assert!(is_pending(s, ids[2]).await, "an untouched effect");
    // Back to back: each read follows the commit it observes.
    for n in 10..20u16 {
        let id = commit(
            s,
            Commit {
                effects: vec![effect(n)],
                ..Commit::at(T0)
            },
        )
        .await;
        assert!(is_pending(s, id[0]).await);
        commit(
            s,
            Commit {
                done: id.clone(),
                ..Commit::at(T0)
            },
        )
        .await;
        assert!(!is_pending(s, id[0]).await, "effect {n} still pending");
    }
}

/// Dead-lettered effects are never pending again and are listed newest (highest id) first
/// with their effect and reason, limited, with the total count; dead-lettering an effect
/// already done or already dead changes nothing; an unknown id is ignored.
pub async fn dead_letters<S: Store + ?Sized>(s: &S) {
    assert_eq!(dead(s, 10).await, (Vec::new(), 0), "empty store");
    let ids = commit(
        s,
        Commit {
            effects: (1..=5).map(effect).collect(),
            ..Commit::at(T0)
        },
    )
    .await;
    commit(
        s,
        Commit {
            dead: vec![(ids[1], "recipient key is not a valid point".to_owned())],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(
        dead(s, 10).await,
        (
            vec![dead_letter(ids[1], 2, "recipient key is not a valid point")],
            1
        )
    );
    // Two in one commit, one older than the first dead letter.
    commit(
        s,
        Commit {
            dead: vec![
                (ids[3], "message too large".to_owned()),
                (ids[0], "encryption failed".to_owned()),
            ],
            ..Commit::at(T0)
        },
    )
    .await;
    let all = vec![
        dead_letter(ids[3], 4, "message too large"),
        dead_letter(ids[1], 2, "recipient key is not a valid point"),
        dead_letter(ids[0], 1, "encryption failed"),
    ];
    assert_eq!(dead(s, 10).await, (all.clone(), 3), "newest first");
    assert_eq!(
        dead(s, 2).await,
        (all[..2].to_vec(), 3),
        "limited, full count"
    );
    assert_eq!(dead(s, 0).await, (Vec::new(), 3), "limit 0 still counts");
    assert_eq!(
        pending(s).await,
        vec![(ids[2], effect(3)), (ids[4], effect(5))],
        "dead effects are not pending"
    );
    assert_eq!(
        after(s, None, 10).await,
        vec![(ids[2], effect(3)), (ids[4], effect(5))],
        "dead effects are not pending after a cursor"
    );

    // Already dead: the first reason stays. Already done: not a dead letter. Unknown: ignored.
    commit(
        s,
        Commit {
            done: vec![ids[2]],
            ..Commit::at(T0)
        },
    )
    .await;
    commit(
        s,
        Commit {
            dead: vec![
                (ids[1], "another reason".to_owned()),
                (ids[2], "late".to_owned()),
                (EffectId(ids[4].0 + 100), "unknown".to_owned()),
            ],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(dead(s, 10).await, (all, 3), "dead letters changed");
    assert_eq!(pending(s).await, vec![(ids[4], effect(5))]);
    assert!(!is_pending(s, ids[2]).await);
}

/// Dead letters are part of the commit's transaction: a commit refused for a stale version or
/// a replayed event dead-letters nothing (the effect stays pending); the same commit with the
/// right version applies its dead letters with everything else.
pub async fn dead_letters_are_atomic_with_the_commit<S: Store + ?Sized>(s: &S) {
    let o = order(1, identity(1));
    let ids = commit(
        s,
        Commit {
            event: Some(event_id(1)),
            orders: vec![insert(&o)],
            effects: vec![effect(1), effect(2)],
            ..Commit::at(T0)
        },
    )
    .await;
    let bad = Commit {
        orders: vec![replace(&bumped(&o), 7)],
        effects: vec![effect(3)],
        done: vec![ids[1]],
        dead: vec![(ids[0], "undeliverable".to_owned())],
        ..Commit::at(T0)
    };
    expect_kind(
        s.commit(bad.clone()).await,
        StoreErrorKind::Conflict,
        "stale version with a dead letter",
    );
    assert_eq!(
        dead(s, 10).await,
        (Vec::new(), 0),
        "dead letter of a refused commit"
    );
    assert!(
        is_pending(s, ids[0]).await,
        "dead effect of a refused commit"
    );
    assert_eq!(
        pending(s).await,
        vec![(ids[0], effect(1)), (ids[1], effect(2))],
        "refused commit applied"
    );
    assert_eq!(stored(s, o.id).await, o);

    let replayed = Commit {
        event: Some(event_id(1)),
        orders: vec![replace(&bumped(&o), 0)],
        ..bad.clone()
    };
    expect_kind(
        s.commit(replayed).await,
        StoreErrorKind::Duplicate,
        "replayed event with a dead letter",
    );
    assert_eq!(
        dead(s, 10).await,
        (Vec::new(), 0),
        "dead letter of a duplicate"
    );
    assert!(is_pending(s, ids[0]).await);

    let mut good = bad;
    good.orders = vec![replace(&bumped(&o), 0)];
    let new = commit(s, good).await;
    assert_eq!(new.len(), 1);
    assert_eq!(stored(s, o.id).await.version, 1);
    assert_eq!(
        dead(s, 10).await,
        (vec![dead_letter(ids[0], 1, "undeliverable")], 1)
    );
    assert_eq!(pending(s).await, vec![(new[0], effect(3))]);
}

/// `due` returns orders whose deadline is at or before now, earliest first, at most `limit`;
/// `next_deadline` the earliest; orders without a deadline never appear.
pub async fn deadlines<S: Store + ?Sized>(s: &S) {
    assert_eq!(s.next_deadline().await.expect("next"), None, "empty store");
    assert!(
        s.due(Timestamp(u64::from(u32::MAX)), 10)
            .await
            .expect("due")
            .is_empty()
    );
    let mut orders = Vec::new();
    for (n, d) in [
        (1u16, Some(300u64)),
        (2, Some(100)),
        (3, Some(200)),
        (4, None),
        (5, Some(400)),
    ] {
        let mut o = order(n, identity(1));
        o.deadline = d.map(Timestamp);
        orders.push(o.clone());
        write(s, insert(&o)).await;
    }
    let id = |n: u16| order_id(n);
    assert_eq!(s.next_deadline().await.expect("next"), Some(Timestamp(100)));
    assert_eq!(
        s.due(Timestamp(99), 10).await.expect("due"),
        Vec::<OrderId>::new()
    );
    assert_eq!(
        s.due(Timestamp(100), 10).await.expect("due"),
        vec![id(2)],
        "at the deadline"
    );
    assert_eq!(
        s.due(Timestamp(250), 10).await.expect("due"),
        vec![id(2), id(3)]
    );
    assert_eq!(
        s.due(Timestamp(1000), 10).await.expect("due"),
        vec![id(2), id(3), id(1), id(5)]
    );
    assert_eq!(
        s.due(Timestamp(1000), 2).await.expect("due"),
        vec![id(2), id(3)],
        "limit"
    );
    assert!(
        s.due(Timestamp(1000), 0).await.expect("due").is_empty(),
        "limit 0"
    );

    // Clearing and moving deadlines.
    let mut o2 = bumped(&orders[1]);
    o2.deadline = None;
    write(s, replace(&o2, 0)).await;
    let mut o5 = bumped(&orders[4]);
    o5.deadline = Some(Timestamp(50));
    write(s, replace(&o5, 0)).await;
    assert_eq!(s.next_deadline().await.expect("next"), Some(Timestamp(50)));
    assert_eq!(
        s.due(Timestamp(250), 10).await.expect("due"),
        vec![id(5), id(3)]
    );
}

/// Only orders whose hold is accepted with a known expiry at or below the height.
pub async fn htlc_expiring<S: Store + ?Sized>(s: &S) {
    let a = with_hold(
        taken(order(1, identity(1)), identity(2)),
        hash(1),
        HoldState::Accepted,
        Some(800),
    );
    let b = with_hold(
        taken(order(2, identity(1)), identity(2)),
        hash(2),
        HoldState::Accepted,
        Some(900),
    );
    let open = with_hold(
        taken(order(3, identity(1)), identity(2)),
        hash(3),
        HoldState::Open,
        Some(700),
    );
    let unknown = with_hold(
        taken(order(4, identity(1)), identity(2)),
        hash(4),
        HoldState::Accepted,
        None,
    );
    let none = order(5, identity(1));
    for o in [&a, &b, &open, &unknown, &none] {
        write(s, insert(o)).await;
    }
    let set = |v: Vec<OrderId>| v.into_iter().collect::<BTreeSet<_>>();
    assert!(
        s.htlc_expiring(BlockHeight(799))
            .await
            .expect("htlc")
            .is_empty()
    );
    assert_eq!(
        set(s.htlc_expiring(BlockHeight(800)).await.expect("htlc")),
        set(vec![a.id])
    );
    assert_eq!(
        set(s.htlc_expiring(BlockHeight(899)).await.expect("htlc")),
        set(vec![a.id])
    );
    assert_eq!(
        set(s.htlc_expiring(BlockHeight(5000)).await.expect("htlc")),
        set(vec![a.id, b.id])
    );

    // Once the hold is settling it is no longer watched.
    let mut a1 = bumped(&a);
    if let Some(h) = a1.hold.as_mut() {
        h.state = HoldState::Settling;
    }
    write(s, replace(&a1, 0)).await;
    assert_eq!(
        set(s.htlc_expiring(BlockHeight(5000)).await.expect("htlc")),
        set(vec![b.id])
    );
}

/// Lookups by the current hold hash and by dispute id.
pub async fn lookup_by_hold_hash_and_dispute<S: Store + ?Sized>(s: &S) {
    let a = with_hold(
        taken(order(1, identity(1)), identity(2)),
        hash(1),
        HoldState::Open,
        None,
    );
    let b = with_dispute(taken(order(2, identity(1)), identity(2)), order_id(200));
    let c = order(3, identity(1));
    for o in [&a, &b, &c] {
        write(s, insert(o)).await;
    }
    assert_eq!(
        s.order_by_hold_hash(&hash(1)).await.expect("by hash"),
        Some(a.clone())
    );
    assert_eq!(s.order_by_hold_hash(&hash(9)).await.expect("by hash"), None);
    assert_eq!(
        s.order_by_dispute(order_id(200)).await.expect("by dispute"),
        Some(b.clone())
    );
    assert_eq!(
        s.order_by_dispute(b.id).await.expect("by dispute"),
        None,
        "order id is not a dispute id"
    );
    assert_eq!(
        s.order_by_dispute(order_id(201)).await.expect("by dispute"),
        None
    );

    // A new hold replaces the old one: only the current hash finds the order.
    let a1 = with_hold(bumped(&a), hash(11), HoldState::Requested, None);
    write(s, replace(&a1, 0)).await;
    assert_eq!(
        s.order_by_hold_hash(&hash(1)).await.expect("by hash"),
        None,
        "stale hash"
    );
    assert_eq!(
        s.order_by_hold_hash(&hash(11)).await.expect("by hash"),
        Some(a1)
    );
}

/// `open_orders_of` finds non-terminal orders where the identity is maker or taker, and only
/// those; `open_orders` every non-terminal order.
pub async fn open_orders<S: Store + ?Sized>(s: &S) {
    let (x, y, z) = (identity(1), identity(2), identity(3));
    let o1 = order(1, x); // x maker, open
    let o2 = taken(order(2, y), x); // x taker, y maker, open
    let mut o3 = order(3, x); // x maker, terminal
    o3.status = Status::Success;
    let o4 = order(4, y); // y maker, open
    let mut o5 = taken(order(5, z), y); // terminal, y taker
    o5.status = Status::Canceled;
    let o6 = taken(order(6, x), x); // x both sides (full-privacy re-use): must appear once
    for o in [&o1, &o2, &o3, &o4, &o5, &o6] {
        write(s, insert(o)).await;
    }
    let of = |v: Vec<Order>| {
        let ids: Vec<OrderId> = v.iter().map(|o| o.id).collect();
        let set = id_set(&v);
        assert_eq!(ids.len(), set.len(), "an order listed twice: {ids:?}");
        set
    };
    let ids = |v: &[&Order]| v.iter().map(|o| o.id).collect::<BTreeSet<_>>();
    assert_eq!(
        of(s.open_orders_of(&x).await.expect("open of")),
        ids(&[&o1, &o2, &o6])
    );
    assert_eq!(
        of(s.open_orders_of(&y).await.expect("open of")),
        ids(&[&o2, &o4])
    );
    assert!(
        s.open_orders_of(&z).await.expect("open of").is_empty(),
        "z has only a terminal order"
    );
    assert!(
        s.open_orders_of(&identity(4))
            .await
            .expect("open of")
            .is_empty()
    );
    let trade_key = o1.maker.trade_key;
    assert!(
        s.open_orders_of(&trade_key)
            .await
            .expect("open of")
            .is_empty(),
        "a trade key is not an identity"
    );
    assert_eq!(
        of(s.open_orders().await.expect("open")),
        ids(&[&o1, &o2, &o4, &o6])
    );
    let listed = s.open_orders_of(&x).await.expect("open of");
    assert!(listed.contains(&o2), "orders come back whole");

    // Finishing an order removes it from both lists.
    let mut o1c = bumped(&o1);
    o1c.status = Status::Canceled;
    write(s, replace(&o1c, 0)).await;
    assert_eq!(
        of(s.open_orders_of(&x).await.expect("open of")),
        ids(&[&o2, &o6])
    );
    assert_eq!(
        of(s.open_orders().await.expect("open")),
        ids(&[&o2, &o4, &o6])
    );
}

/// Trade index updates create the user and keep the maximum.
pub async fn user_trade_index<S: Store + ?Sized>(s: &S) {
    let x = identity(1);
    assert_eq!(s.user(&x).await.expect("user"), None);
    let ti = |index| UserUpdate::TradeIndex { identity: x, index };
    commit(
        s,
        Commit {
            users: vec![ti(5)],
            ..Commit::at(T0)
        },
    )
    .await;
    let u = s
        .user(&x)
        .await
        .expect("user")
        .expect("created by a trade index");
    assert_eq!(
        (u.identity, u.last_trade_index, u.reviews, u.rating_sum),
        (x, 5, 0, 0)
    );
    commit(
        s,
        Commit {
            users: vec![ti(3)],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(
        s.user(&x)
            .await
            .expect("user")
            .expect("user")
            .last_trade_index,
        5,
        "max, not last"
    );
    commit(
        s,
        Commit {
            users: vec![ti(9), ti(7)],
            ..Commit::at(T0)
        },
    )
    .await;
    let after = s.user(&x).await.expect("user").expect("user");
    assert_eq!(after.last_trade_index, 9);
    assert_eq!(after.created_at, u.created_at, "creation time kept");
    assert_eq!(
        s.user(&identity(2)).await.expect("user"),
        None,
        "other identities untouched"
    );
}

/// Ratings aggregate (count, sum, min, max, last); a rating creates an unknown identity.
pub async fn user_ratings<S: Store + ?Sized>(s: &S) {
    let y = identity(2);
    let rate = |rating| UserUpdate::Rating {
        identity: y,
        rating,
        at: Timestamp(1_700_000_000),
    };
    commit(
        s,
        Commit {
            users: vec![rate(4), rate(2)],
            ..Commit::at(T0)
        },
    )
    .await;
    commit(
        s,
        Commit {
            users: vec![rate(5)],
            ..Commit::at(T0)
        },
    )
    .await;
    let u = s
        .user(&y)
        .await
        .expect("user")
        .expect("created by a rating");
    let mut want = User {
        identity: y,
        created_at: u.created_at,
        ..User::default()
    };
    for r in [4, 2, 5] {
        want.apply(&UserUpdate::Rating {
            identity: y,
            rating: r,
            at: Timestamp(0),
        });
    }
    assert_eq!(u, want);
    assert_eq!(
        (
            u.reviews,
            u.rating_sum,
            u.min_rating,
            u.max_rating,
            u.last_rating
        ),
        (3, 11, 2, 5, 5)
    );
    assert_eq!(u.last_trade_index, 0);
    // A trade index after ratings keeps them.
    commit(
        s,
        Commit {
            users: vec![UserUpdate::TradeIndex {
                identity: y,
                index: 2,
            }],
            ..Commit::at(T0)
        },
    )
    .await;
    let v = s.user(&y).await.expect("user").expect("user");
    assert_eq!((v.reviews, v.rating_sum, v.last_trade_index), (3, 11, 2));
}

/// Solver registration is an upsert.
pub async fn solvers<S: Store + ?Sized>(s: &S) {
    let a = identity(7);
    assert_eq!(s.solver(&a).await.expect("solver"), None);
    commit(
        s,
        Commit {
            solvers: vec![Solver {
                identity: a,
                write: false,
            }],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(
        s.solver(&a).await.expect("solver"),
        Some(Solver {
            identity: a,
            write: false
        })
    );
    commit(
        s,
        Commit {
            solvers: vec![Solver {
                identity: a,
                write: true,
            }],
            ..Commit::at(T0)
        },
    )
    .await;
    assert_eq!(
        s.solver(&a).await.expect("solver"),
        Some(Solver {
            identity: a,
            write: true
        })
    );
    assert_eq!(s.solver(&identity(8)).await.expect("solver"), None);
    assert_eq!(
        s.user(&a).await.expect("user"),
        None,
        "a solver is not a user record"
    );
    // Listing (by identity) and removal.
    let b = identity(3);
    commit(
        s,
        Commit {
            solvers: vec![Solver {
                identity: b,
                write: false,
            }],
            ..Commit::at(T0)
        },
    )
    .await;
    let mut want = vec![
        Solver {
            identity: a,
            write: true,
        },
        Solver {
            identity: b,
            write: false,
        },
    ];
    want.sort_by_key(|x| x.identity.0);
    assert_eq!(s.solvers().await.expect("solvers"), want);
    assert!(s.remove_solver(&a).await.expect("remove"));
    assert!(
        !s.remove_solver(&a).await.expect("remove again"),
        "already gone"
    );
    assert_eq!(s.solver(&a).await.expect("solver"), None);
    assert_eq!(
        s.solvers().await.expect("solvers"),
        vec![Solver {
            identity: b,
            write: false
        }]
    );
}

/// Many commits racing to replace the same version: exactly one wins, the others get
/// `Conflict`; racing commits on different orders all succeed.
pub async fn concurrent_replaces_one_wins<S: Store + ?Sized>(s: &S) {
    let o = order(1, identity(1));
    let others: Vec<Order> = (10..30).map(|n| order(n, identity(2))).collect();
    write(s, insert(&o)).await;
    let racers = (0..16i64).map(|i| {
        let mut next = bumped(&o);
        next.fiat_amount = 1000 + i;
        s.commit(Commit {
            orders: vec![replace(&next, 0)],
            effects: vec![effect(100)],
            ..Commit::at(T0)
        })
    });
    let inserts = others.iter().map(|x| {
        s.commit(Commit {
            orders: vec![insert(x)],
            ..Commit::at(T0)
        })
    });
    let (raced, inserted) = futures::future::join(
        futures::future::join_all(racers),
        futures::future::join_all(inserts),
    )
    .await;
    let wins = raced.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one racer wins: {raced:?}");
    for r in &raced {
        if let Err(e) = r {
            assert_eq!(e.kind, StoreErrorKind::Conflict, "{e}");
        }
    }
    assert!(inserted.iter().all(Result::is_ok), "{inserted:?}");
    let won = stored(s, o.id).await;
    assert_eq!(won.version, 1);
    assert!((1000..1016).contains(&won.fiat_amount));
    assert_eq!(
        pending(s).await.len(),
        1,
        "only the winner's effect is in the outbox"
    );
    for x in &others {
        assert_eq!(stored(s, x.id).await, *x);
    }
}
