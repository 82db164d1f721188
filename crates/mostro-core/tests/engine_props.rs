//! Property tests: random interleavings of actions by both parties, strangers and admins,
//! timeouts, blocks, Lightning faults, lost replies, failed store writes and engine crashes, with
//! the funds-safety invariants checked after every step.
//!
//! Cases per property: `PROPTEST_CASES` (default 1000 here); raise it for long runs, e.g.
//! `PROPTEST_CASES=20000 cargo test -p mostro-core --test engine_props --release`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::executor::block_on;
use mostro_core::engine::{Action, NewOrderRequest, Outcome, Request};
use mostro_core::machine::{Effect, NewOrder};
use mostro_core::order::{DevFeeState, HoldState, Kind, NextTrade, Order, PayoutState, Status};
use mostro_core::ports::{HoldInvoiceState, Solver, Store};
use mostro_core::types::{OrderId, PaymentHash, Sats};
use mostro_testkit::ledger::AttemptStatus;
use mostro_testkit::{Faults, TestBed, Trader};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Who {
    Maker,
    Taker,
    Stranger,
    Admin,
    Solver,
}

#[derive(Clone, Debug)]
enum Op {
    NewOrder {
        maker: u8,
        kind: Kind,
        sats: u32,
        range: bool,
        market: bool,
    },
    Take {
        order: u8,
        taker: u8,
        with_invoice: bool,
        fiat: i64,
    },
    AddInvoice {
        order: u8,
        who: Who,
        good: bool,
    },
    AddAddress {
        order: u8,
        who: Who,
    },
    ResolverFails {
        n: u8,
    },
    SellerPays {
        order: u8,
    },
    FiatSent {
        order: u8,
        who: Who,
    },
    Release {
        order: u8,
        who: Who,
        next: bool,
    },
    Cancel {
        order: u8,
        who: Who,
    },
    Dispute {
        order: u8,
        who: Who,
    },
    AdminTake {
        order: u8,
        who: Who,
    },
    AdminSettle {
        order: u8,
        who: Who,
    },
    AdminCancel {
        order: u8,
        who: Who,
    },
    Rate {
        order: u8,
        who: Who,
        r: u8,
    },
    Advance {
        secs: u32,
    },
    Mine {
        blocks: u8,
    },
    FailPayments {
        n: u8,
    },
    Hang {
        on: bool,
    },
    FinishHung {
        fail: bool,
    },
    LoseNextReply,
    Unreachable {
        on: bool,
    },
    StoreFailsNextCommit,
    Crash,
    Resume,
    ReplayLast,
    RelaysDown {
        on: bool,
    },
    /// The next N pays really happen but answer an unrecognized error.
    AmbiguousPays {
        n: u8,
    },
    /// The node is (or stops) starting up: every call errors, nothing happens.
    StartingUp {
        on: bool,
    },
    /// The next N payment status replies are lost.
    LoseStatusReplies {
        n: u8,
    },
    /// The next N settle / cancel / lookup calls answer a spurious "not found".
    SpuriousNotFound {
        n: u8,
    },
    /// Two engine tasks at once, interleaved at every await by `schedule`'s bits.
    Race {
        a: Task,
        b: Task,
        schedule: u64,
    },
    /// A task dropped after `polls` polls (the process dies between two awaits), then a
    /// restart with recovery.
    CrashDuring {
        task: Task,
        polls: u8,
    },
}

/// An engine operation that can run concurrently with another.
#[derive(Clone, Copy, Debug)]
enum Task {
    /// Fire due deadlines (after moving the clock by the payout retry interval).
    Tick,
    /// Run every pending effect.
    Resume,
    /// One retry round from a snapshot of the outbox (a second round may hold the same ids).
    RetryRound,
    /// The seller of the newest order releases.
    Release,
    /// The buyer of the newest order gives a fresh invoice.
    FreshInvoice,
    /// Restart recovery of every open order.
    Recover,
    /// Deliver the node's events.
    Events,
}

fn task() -> impl Strategy<Value = Task> {
    prop_oneof![
        3 => Just(Task::Tick),
        2 => Just(Task::Resume),
        3 => Just(Task::RetryRound),
        2 => Just(Task::Release),
        2 => Just(Task::FreshInvoice),
        1 => Just(Task::Recover),
        2 => Just(Task::Events),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        4 => Just(Who::Maker),
        4 => Just(Who::Taker),
        1 => Just(Who::Stranger),
        1 => Just(Who::Admin),
        1 => Just(Who::Solver),
    ]
}

fn admin_who() -> impl Strategy<Value = Who> {
    prop_oneof![4 => Just(Who::Admin), 4 => Just(Who::Solver), 1 => Just(Who::Maker), 1 => Just(Who::Stranger)]
}

fn op() -> impl Strategy<Value = Op> {
    let o = prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => 2u8..4];
    prop_oneof![
        2 => (0u8..3, prop_oneof![Just(Kind::Sell), Just(Kind::Buy)], 1_000u32..200_000, any::<bool>(), any::<bool>())
            .prop_map(|(maker, kind, sats, range, market)| Op::NewOrder { maker, kind, sats, range, market }),
        4 => (o.clone(), 0u8..3, any::<bool>(), 5i64..120)
            .prop_map(|(order, taker, with_invoice, fiat)| Op::Take { order, taker, with_invoice, fiat }),
        3 => (o.clone(), who(), prop::bool::weighted(0.85)).prop_map(|(order, who, good)| Op::AddInvoice { order, who, good }),
        1 => (o.clone(), who()).prop_map(|(order, who)| Op::AddAddress { order, who }),
        1 => (1u8..4).prop_map(|n| Op::ResolverFails { n }),
        4 => o.clone().prop_map(|order| Op::SellerPays { order }),
        3 => (o.clone(), who()).prop_map(|(order, who)| Op::FiatSent { order, who }),
        3 => (o.clone(), who(), any::<bool>()).prop_map(|(order, who, next)| Op::Release { order, who, next }),
        2 => (o.clone(), who()).prop_map(|(order, who)| Op::Cancel { order, who }),
        2 => (o.clone(), who()).prop_map(|(order, who)| Op::Dispute { order, who }),
        2 => (o.clone(), admin_who()).prop_map(|(order, who)| Op::AdminTake { order, who }),
        1 => (o.clone(), admin_who()).prop_map(|(order, who)| Op::AdminSettle { order, who }),
        1 => (o.clone(), admin_who()).prop_map(|(order, who)| Op::AdminCancel { order, who }),
        1 => (o.clone(), who(), 0u8..7).prop_map(|(order, who, r)| Op::Rate { order, who, r }),
        2 => prop_oneof![Just(30u32), Just(61), Just(600), Just(901), Just(3600), Just(90_000)]
            .prop_map(|secs| Op::Advance { secs }),
        1 => (1u8..130).prop_map(|blocks| Op::Mine { blocks }),
        1 => (1u8..4).prop_map(|n| Op::FailPayments { n }),
        1 => any::<bool>().prop_map(|on| Op::Hang { on }),
        1 => any::<bool>().prop_map(|fail| Op::FinishHung { fail }),
        1 => Just(Op::LoseNextReply),
        1 => any::<bool>().prop_map(|on| Op::Unreachable { on }),
        1 => Just(Op::StoreFailsNextCommit),
        2 => Just(Op::Crash),
        1 => Just(Op::Resume),
        1 => Just(Op::ReplayLast),
        1 => any::<bool>().prop_map(|on| Op::RelaysDown { on }),
        1 => (1u8..3).prop_map(|n| Op::AmbiguousPays { n }),
        1 => any::<bool>().prop_map(|on| Op::StartingUp { on }),
        1 => (1u8..3).prop_map(|n| Op::LoseStatusReplies { n }),
        1 => Just(Op::SpuriousNotFound { n: 1 }),
        3 => (task(), task(), any::<u64>()).prop_map(|(a, b, schedule)| Op::Race { a, b, schedule }),
        2 => (task(), 0u8..12).prop_map(|(task, polls)| Op::CrashDuring { task, polls }),
    ]
}

fn noise() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => prop_oneof![Just(30u32), Just(61), Just(300)].prop_map(|secs| Op::Advance { secs }),
        1 => (1u8..30).prop_map(|blocks| Op::Mine { blocks }),
        1 => (1u8..3).prop_map(|n| Op::FailPayments { n }),
        1 => (1u8..3).prop_map(|n| Op::ResolverFails { n }),
        1 => any::<bool>().prop_map(|on| Op::Hang { on }),
        1 => any::<bool>().prop_map(|fail| Op::FinishHung { fail }),
        2 => Just(Op::LoseNextReply),
        1 => any::<bool>().prop_map(|on| Op::Unreachable { on }),
        2 => Just(Op::StoreFailsNextCommit),
        3 => Just(Op::Crash),
        2 => Just(Op::Resume),
        2 => Just(Op::ReplayLast),
        1 => any::<bool>().prop_map(|on| Op::RelaysDown { on }),
        1 => (0u8..2).prop_map(|order| Op::Cancel { order, who: Who::Stranger }),
        2 => who().prop_map(|who| Op::Release { order: 0, who, next: false }),
        1 => who().prop_map(|who| Op::FiatSent { order: 0, who }),
        1 => who().prop_map(|who| Op::AdminSettle { order: 0, who }),
        1 => who().prop_map(|who| Op::AdminCancel { order: 0, who }),
        1 => (who(), 0u8..7).prop_map(|(who, r)| Op::Rate { order: 0, who, r }),
        1 => (1u8..3).prop_map(|n| Op::AmbiguousPays { n }),
        1 => any::<bool>().prop_map(|on| Op::StartingUp { on }),
        1 => (1u8..3).prop_map(|n| Op::LoseStatusReplies { n }),
        1 => Just(Op::SpuriousNotFound { n: 1 }),
        3 => (task(), task(), any::<u64>()).prop_map(|(a, b, schedule)| Op::Race { a, b, schedule }),
        2 => (task(), 0u8..12).prop_map(|(task, polls)| Op::CrashDuring { task, polls }),
    ]
}

/// A trade script (sell, buy, cooperative cancel, dispute settled, dispute canceled) with random
/// faults, crashes, replays and strangers inserted between its steps.
fn scripted() -> impl Strategy<Value = Vec<Op>> {
    use Op::*;
    use Who::{Admin, Maker, Solver, Stranger, Taker};
    let sell = |kind| NewOrder {
        maker: 0,
        kind,
        sats: 100_000,
        range: false,
        market: false,
    };
    let templates: Vec<Vec<Op>> = vec![
        vec![
            sell(Kind::Sell),
            Take {
                order: 0,
                taker: 1,
                with_invoice: false,
                fiat: 50,
            },
            AddInvoice {
                order: 0,
                who: Taker,
                good: true,
            },
            SellerPays { order: 0 },
            FiatSent {
                order: 0,
                who: Taker,
            },
            Release {
                order: 0,
                who: Maker,
                next: false,
            },
            Rate {
                order: 0,
                who: Taker,
                r: 5,
            },
        ],
        vec![
            sell(Kind::Buy),
            Take {
                order: 0,
                taker: 1,
                with_invoice: false,
                fiat: 50,
            },
            SellerPays { order: 0 },
            AddInvoice {
                order: 0,
                who: Maker,
                good: true,
            },
            FiatSent {
                order: 0,
                who: Maker,
            },
            Release {
                order: 0,
                who: Taker,
                next: false,
            },
        ],
        vec![
            sell(Kind::Sell),
            Take {
                order: 0,
                taker: 2,
                with_invoice: false,
                fiat: 50,
            },
            AddAddress {
                order: 0,
                who: Taker,
            },
            SellerPays { order: 0 },
            FiatSent {
                order: 0,
                who: Taker,
            },
            Release {
                order: 0,
                who: Maker,
                next: false,
            },
        ],
        vec![
            sell(Kind::Sell),
            Take {
                order: 0,
                taker: 1,
                with_invoice: true,
                fiat: 50,
            },
            SellerPays { order: 0 },
            Cancel {
                order: 0,
                who: Maker,
            },
            Cancel {
                order: 0,
                who: Taker,
            },
        ],
        vec![
            sell(Kind::Sell),
            Take {
                order: 0,
                taker: 2,
                with_invoice: true,
                fiat: 50,
            },
            SellerPays { order: 0 },
            FiatSent {
                order: 0,
                who: Taker,
            },
            Dispute {
                order: 0,
                who: Taker,
            },
            AdminTake {
                order: 0,
                who: Stranger,
            },
            AdminTake {
                order: 0,
                who: Admin,
            },
            AdminSettle {
                order: 0,
                who: Admin,
            },
        ],
        vec![
            sell(Kind::Buy),
            Take {
                order: 0,
                taker: 2,
                with_invoice: false,
                fiat: 50,
            },
            SellerPays { order: 0 },
            AddInvoice {
                order: 0,
                who: Maker,
                good: true,
            },
            Dispute {
                order: 0,
                who: Maker,
            },
            AdminTake {
                order: 0,
                who: Solver,
            },
            AdminCancel {
                order: 0,
                who: Solver,
            },
        ],
    ];
    let n = templates.len();
    (
        0..n,
        prop::collection::vec(prop::collection::vec(noise(), 0..3), 10),
    )
        .prop_map(move |(t, noise)| {
            let mut out = Vec::new();
            for (i, step) in templates[t].iter().enumerate() {
                out.extend(noise[i % noise.len()].iter().cloned());
                out.push(step.clone());
            }
            out
        })
}

struct World {
    bed: TestBed,
    traders: Vec<Trader>,
    admin: Trader,
    solver: Trader,
    stranger: Trader,
    orders: Vec<OrderId>,
    /// (order, key used) per participant role.
    parties: HashMap<OrderId, (Trader, Option<Trader>)>,
    /// Orders whose hold settle was legitimately requested (release / admin settle applied).
    released: BTreeSet<OrderId>,
    /// Payout invoice hash -> order.
    invoices: HashMap<PaymentHash, OrderId>,
    /// Wallet behind a Lightning address -> order.
    address_wallets: HashMap<String, OrderId>,
    last: Option<(Request, bool)>,
    known: BTreeSet<OrderId>,
}

/// The development-fee wallet of the property runs and its share of the node's fee.
const DEV_WALLET: &str = "devfund";
const DEV_FEE_PPM: u32 = 300_000;

impl World {
    /// Whether a paid hash went to the development-fee wallet.
    fn is_dev_payment(&self, hash: &mostro_core::types::PaymentHash) -> bool {
        self.bed
            .ledger
            .invoice(hash)
            .is_some_and(|i| i.wallet == DEV_WALLET)
    }

    async fn new() -> Self {
        // Every node and store call is an await point: races and crashes land between them.
        // With a development fee: paid only after the buyer, at most once, fees conserved.
        let bed = TestBed::yielding(mostro_core::policy::Policy {
            dev_fee_ppm: DEV_FEE_PPM,
            dev_fee_address: Some(format!("{DEV_WALLET}@dev.example")),
            ..mostro_core::policy::Policy::default()
        });
        bed.prices.set("EUR", 50_000.0, bed.now());
        let admin = Trader {
            identity: bed.node_key,
            trade_key: bed.node_key,
            ..Trader::new("admin")
        };
        let solver = Trader::new("solver");
        // Register one read-write solver.
        let req = bed.request(
            &admin,
            None,
            Action::AdminAddSolver(Solver {
                identity: solver.identity,
                write: true,
            }),
        );
        bed.send_request(req).await;
        World {
            bed,
            traders: vec![Trader::new("t0"), Trader::new("t1"), Trader::new("t2").v1()],
            admin,
            solver,
            stranger: Trader::private("stranger"),
            orders: Vec::new(),
            parties: HashMap::new(),
            released: BTreeSet::new(),
            invoices: HashMap::new(),
            address_wallets: HashMap::new(),
            last: None,
            known: BTreeSet::new(),
        }
    }

    fn order_id(&self, i: u8) -> Option<OrderId> {
        if self.orders.is_empty() {
            return None;
        }
        // Most operations target the newest orders, so trades progress.
        let n = self.orders.len();
        Some(self.orders[n - 1 - usize::from(i) % n])
    }

    fn actor(&self, id: OrderId, who: Who) -> Option<Trader> {
        let (maker, taker) = self.parties.get(&id)?;
        match who {
            Who::Maker => Some(maker.clone()),
            Who::Taker => taker.clone(),
            Who::Stranger => Some(self.stranger.clone()),
            Who::Admin => Some(self.admin.clone()),
            Who::Solver => Some(self.solver.clone()),
        }
    }

    async fn order(&self, id: OrderId) -> Order {
        self.bed.store.order(id).await.unwrap().unwrap()
    }

    async fn send(&mut self, who: &Trader, id: Option<OrderId>, action: Action) -> Option<Outcome> {
        let req = self.bed.request(who, id, action);
        let out = self.bed.engine.handle(req.clone()).await.ok();
        self.last = Some((req, out.is_some()));
        self.pump().await;
        out
    }

    async fn pump(&self) {
        for _ in 0..50 {
            let evs = self.bed.node.drain_events();
            if evs.is_empty() {
                return;
            }
            for ev in evs {
                let _ = self.bed.engine.on_node_event(ev).await;
            }
        }
    }

    fn invoice_for(&mut self, id: OrderId, wallet: &str, sats: Sats) -> String {
        let s = self
            .bed
            .ledger
            .wallet_invoice(wallet, Some(sats), 24 * 3600)
            .unwrap();
        let d = mostro_testkit::ledger::decode_bolt11(&s).unwrap();
        self.invoices.insert(d.hash, id);
        s
    }

    async fn apply(&mut self, op: &Op) {
        match op {
            Op::NewOrder {
                maker,
                kind,
                sats,
                range,
                market,
            } => {
                let m = usize::from(*maker);
                self.traders[m].next_key();
                let t = self.traders[m].clone();
                let mut o = NewOrder {
                    kind: *kind,
                    fiat_code: "EUR".into(),
                    fiat_amount: 50,
                    min_amount: None,
                    max_amount: None,
                    amount: i64::from(*sats),
                    premium: 0,
                    payment_method: "SEPA".into(),
                    buyer_invoice: None,
                    expires_at: None,
                };
                if *range {
                    o.amount = 0;
                    o.fiat_amount = 0;
                    o.min_amount = Some(10);
                    o.max_amount = Some(100);
                } else if *market {
                    o.amount = 0;
                }
                let out = self
                    .send(
                        &t,
                        None,
                        Action::NewOrder(Box::new(NewOrderRequest {
                            order: o,
                            buyer_invoice: None,
                        })),
                    )
                    .await;
                if let Some(Outcome::Applied(Some(id))) = out {
                    self.orders.push(id);
                    self.parties.insert(id, (t, None));
                }
            },
            Op::Take {
                order,
                taker,
                with_invoice,
                fiat,
            } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let k = usize::from(*taker);
                self.traders[k].next_key();
                let t = self.traders[k].clone();
                let o = self.order(id).await;
                let fiat_amount = if o.is_range() { Some(*fiat) } else { None };
                let action = match o.kind {
                    Kind::Sell => {
                        let invoice = if *with_invoice && !o.is_range() && o.amount > Sats::ZERO {
                            let name = t.name.clone();
                            Some(self.invoice_for(id, &name, o.amount.checked_sub(o.fee).unwrap()))
                        } else {
                            None
                        };
                        Action::TakeSell {
                            fiat_amount,
                            invoice,
                        }
                    },
                    Kind::Buy => Action::TakeBuy { fiat_amount },
                };
                if let Some(Outcome::Applied(_)) = self.send(&t, Some(id), action).await
                    && let Some(p) = self.parties.get_mut(&id)
                {
                    p.1 = Some(t);
                }
            },
            Op::AddInvoice { order, who, good } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                let o = self.order(id).await;
                let amount = o.amount.checked_sub(o.fee).unwrap_or_default();
                let amount = if *good {
                    amount
                } else {
                    amount.checked_add(Sats(1)).unwrap()
                };
                let inv = self.invoice_for(id, &t.name.clone(), amount);
                self.send(&t, Some(id), Action::AddInvoice(inv)).await;
            },
            Op::AddAddress { order, who } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                let wallet = format!("ln{}", &id.to_string()[..8]);
                self.address_wallets.insert(wallet.clone(), id);
                self.send(
                    &t,
                    Some(id),
                    Action::AddInvoice(format!("{wallet}@wallet.example")),
                )
                .await;
            },
            Op::ResolverFails { n } => self.bed.resolver.fail_next(u32::from(*n)),
            Op::SellerPays { order } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let o = self.order(id).await;
                if let Some(b) = o.hold.and_then(|h| h.bolt11) {
                    let _ = self.bed.ledger.pay_hold("seller-wallet", &b);
                    self.pump().await;
                }
            },
            Op::FiatSent { order, who } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                self.send(&t, Some(id), Action::FiatSent { next_trade: None })
                    .await;
            },
            Op::Release { order, who, next } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                let next_trade = next.then(|| {
                    let (k, i) = t.peek_next();
                    NextTrade {
                        trade_key: k,
                        trade_index: i,
                    }
                });
                let kind = self.order(id).await.kind;
                if let Some(Outcome::Applied(_)) = self
                    .send(&t, Some(id), Action::Release { next_trade })
                    .await
                {
                    let seller = matches!(
                        (kind, who),
                        (Kind::Sell, Who::Maker) | (Kind::Buy, Who::Taker)
                    );
                    assert!(seller, "release by {who:?} of a {kind:?} order was applied");
                    self.released.insert(id);
                }
            },
            Op::Cancel { order, who } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                self.send(&t, Some(id), Action::Cancel).await;
            },
            Op::Dispute { order, who } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                self.send(&t, Some(id), Action::Dispute).await;
            },
            Op::AdminTake { order, who } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                let Some(d) = self.order(id).await.dispute else {
                    return;
                };
                self.send(&t, Some(d.id), Action::AdminTakeDispute).await;
            },
            Op::AdminSettle { order, who } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                if let Some(Outcome::Applied(_)) =
                    self.send(&t, Some(id), Action::AdminSettle).await
                {
                    assert!(
                        matches!(who, Who::Admin | Who::Solver),
                        "admin-settle by {who:?} applied"
                    );
                    self.released.insert(id);
                }
            },
            Op::AdminCancel { order, who } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                self.send(&t, Some(id), Action::AdminCancel).await;
            },
            Op::Rate { order, who, r } => {
                let Some(id) = self.order_id(*order) else {
                    return;
                };
                let Some(t) = self.actor(id, *who) else {
                    return;
                };
                self.send(&t, Some(id), Action::RateUser(*r)).await;
            },
            Op::Advance { secs } => {
                self.bed.clock.advance(u64::from(*secs));
                self.bed.prices.set("EUR", 50_000.0, self.bed.now());
                let _ = self.bed.engine.tick().await;
                self.pump().await;
            },
            Op::Mine { blocks } => {
                self.bed.ledger.mine(u32::from(*blocks));
                self.pump().await;
            },
            Op::FailPayments { n } => {
                let mut f = self.bed.ledger.faults();
                f.fail_payments = u32::from(*n);
                self.bed.ledger.set_faults(f);
            },
            Op::Hang { on } => {
                let mut f = self.bed.ledger.faults();
                f.hang_payments = *on;
                self.bed.ledger.set_faults(f);
            },
            Op::FinishHung { fail } => self.bed.ledger.finish_hung(*fail),
            Op::LoseNextReply => {
                let mut f = self.bed.ledger.faults();
                f.lose_next_reply = true;
                self.bed.ledger.set_faults(f);
            },
            Op::Unreachable { on } => self.bed.ledger.set_unreachable(*on),
            Op::StoreFailsNextCommit => self.bed.store.fail_next_commit(),
            Op::Crash => {
                self.bed.restart();
                let _ = self.bed.engine.reconcile().await;
                self.pump().await;
            },
            Op::Resume => {
                let _ = self.bed.engine.resume().await;
                self.pump().await;
            },
            Op::ReplayLast => {
                if let Some((req, committed)) = self.last.clone() {
                    let commits = self.bed.store.commits();
                    let out = self.bed.engine.handle(req.clone()).await;
                    if !committed {
                        // The first attempt failed before committing: the replay is the real one.
                        if let (
                            Ok(Outcome::Applied(Some(id))),
                            Action::Release { .. } | Action::AdminSettle,
                        ) = (&out, &req.action)
                        {
                            self.released.insert(*id);
                        }
                    }
                    if committed {
                        // A processed request replayed changes nothing at all.
                        assert!(matches!(out, Ok(Outcome::Duplicate)), "replay gave {out:?}");
                        assert_eq!(self.bed.store.commits(), commits);
                    }
                    self.pump().await;
                }
            },
            Op::RelaysDown { on } => self.bed.transport.set_failing(*on),
            Op::AmbiguousPays { n } => {
                let mut f = self.bed.ledger.faults();
                f.ambiguous_pays = u32::from(*n);
                self.bed.ledger.set_faults(f);
            },
            Op::StartingUp { on } => {
                let mut f = self.bed.ledger.faults();
                f.starting_up = *on;
                self.bed.ledger.set_faults(f);
            },
            Op::LoseStatusReplies { n } => {
                let mut f = self.bed.ledger.faults();
                f.lose_status_replies = u32::from(*n);
                self.bed.ledger.set_faults(f);
            },
            Op::SpuriousNotFound { n } => {
                let mut f = self.bed.ledger.faults();
                f.spurious_not_found = u32::from(*n);
                self.bed.ledger.set_faults(f);
            },
            Op::Race { a, b, schedule } => {
                let pa = self.prepare(*a).await;
                let pb = self.prepare(*b).await;
                if matches!(pa, Prepared::Tick) || matches!(pb, Prepared::Tick) {
                    let secs = self.bed.engine.policy().payment_retry_secs;
                    self.bed.clock.advance(secs);
                    self.bed.prices.set("EUR", 50_000.0, self.bed.now());
                }
                let (ra, rb) = {
                    let fa = run_task(&self.bed, &pa);
                    let fb = run_task(&self.bed, &pb);
                    race(fa, fb, *schedule)
                };
                self.record(&pa, ra);
                self.record(&pb, rb);
                self.pump().await;
            },
            Op::CrashDuring { task, polls } => {
                let p = self.prepare(*task).await;
                if matches!(p, Prepared::Tick) {
                    let secs = self.bed.engine.policy().payment_retry_secs;
                    self.bed.clock.advance(secs);
                }
                let done = {
                    let f = run_task(&self.bed, &p);
                    poll_n(f, usize::from(*polls))
                };
                if let Some(r) = done {
                    self.record(&p, r);
                } else if let Prepared::Request(req) = &p {
                    // Died mid-request: whether it committed decides if a release happened.
                    if matches!(req.action, Action::Release { .. })
                        && self
                            .bed
                            .store
                            .seen_event(&req.event_id.unwrap())
                            .await
                            .unwrap()
                    {
                        let id = req.order_id.unwrap();
                        if self.order(id).await.hold.is_some_and(|h| {
                            matches!(h.state, HoldState::Settling | HoldState::Settled)
                        }) {
                            self.released.insert(id);
                        }
                    }
                }
                self.bed.restart();
                let _ = self.bed.engine.recover().await;
                self.pump().await;
            },
        }
    }

    /// Turns a task into something that can run on `&TestBed` (requests built up front).
    async fn prepare(&mut self, t: Task) -> Prepared {
        match t {
            Task::Tick => Prepared::Tick,
            Task::Resume => Prepared::Resume,
            Task::RetryRound => match self.bed.engine.pending_effects().await {
                Ok(p) => Prepared::Round(p),
                Err(_) => Prepared::Nothing,
            },
            Task::Recover => Prepared::Recover,
            Task::Events => Prepared::Events,
            Task::Release | Task::FreshInvoice => {
                let Some(id) = self.order_id(0) else {
                    return Prepared::Nothing;
                };
                let o = self.order(id).await;
                let role = if matches!(t, Task::Release) {
                    mostro_core::order::Role::Seller
                } else {
                    mostro_core::order::Role::Buyer
                };
                let Some(party) = o.party(role).cloned() else {
                    return Prepared::Nothing;
                };
                let (maker, taker) = self.parties.get(&id).cloned().unwrap();
                let who = if party.trade_key == maker.trade_key {
                    Some(maker)
                } else {
                    taker.filter(|t| t.trade_key == party.trade_key)
                };
                let Some(who) = who else {
                    return Prepared::Nothing;
                };
                let action = if matches!(t, Task::Release) {
                    Action::Release { next_trade: None }
                } else {
                    let amount = o.amount.checked_sub(o.fee).unwrap_or_default();
                    let name = who.name.clone();
                    Action::AddInvoice(self.invoice_for(id, &name, amount))
                };
                let req = self.bed.request(&who, Some(id), action);
                Prepared::Request(req)
            },
        }
    }

    fn record(&mut self, p: &Prepared, r: Option<Outcome>) {
        if let (Prepared::Request(req), Some(Outcome::Applied(Some(id)))) = (p, &r)
            && matches!(req.action, Action::Release { .. })
        {
            self.released.insert(*id);
        }
        if let Prepared::Request(req) = p {
            self.last = Some((req.clone(), r.is_some()));
        }
    }

    /// Invariants that hold after every step.
    async fn check(&mut self) {
        let orders: BTreeMap<OrderId, Order> = self
            .bed
            .store
            .all_orders()
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        // No order is lost or duplicated, across crashes too.
        for id in &self.known {
            assert!(orders.contains_key(id), "order {id} lost");
        }
        self.known.extend(orders.keys().copied());
        // Hold invoices: settled at most once, canceled at most once, never both; settle only
        // after a release or an admin settle.
        let calls = self.bed.node.calls();
        for (hash, rec) in self.bed.ledger.holds() {
            assert!(
                rec.settles + rec.cancels <= 1,
                "hold {hash} settled {} canceled {}",
                rec.settles,
                rec.cancels
            );
            let settle_req = calls
                .iter()
                .any(|c| c == &format!("settle_hold_invoice {hash}"));
            let cancel_req = calls
                .iter()
                .any(|c| c == &format!("cancel_hold_invoice {hash}"));
            assert!(
                !(settle_req && cancel_req),
                "hold {hash}: both settle and cancel requested"
            );
            if rec.state == HoldInvoiceState::Settled || settle_req {
                let owner = orders
                    .values()
                    .find(|o| o.hold.as_ref().is_some_and(|h| h.hash == hash));
                let owner = owner.expect("settled hold belongs to an order");
                assert!(
                    self.released.contains(&owner.id),
                    "hold of {} settled without release",
                    owner.id
                );
            }
        }
        // Payouts: at most one success per order, only after the hold settled; amounts conserved.
        let mut paid: HashMap<OrderId, u32> = HashMap::new();
        let mut dev_paid: HashMap<OrderId, u32> = HashMap::new();
        for (hash, a) in self.bed.ledger.all_attempts() {
            if let AttemptStatus::Succeeded(_) = a.status
                && self.is_dev_payment(&hash)
            {
                // The development fee: only for an order whose buyer was paid, of exactly its
                // share, at most once.
                let o = orders
                    .values()
                    .find(|o| o.dev_fee.as_ref().is_some_and(|d| d.knows(&hash)))
                    .expect("dev fee payment of a known order");
                *dev_paid.entry(o.id).or_default() += 1;
                assert_eq!(
                    o.status,
                    Status::Success,
                    "dev fee of {} before success",
                    o.id
                );
                assert_eq!(
                    o.payout.as_ref().map(|p| p.state),
                    Some(PayoutState::Succeeded),
                    "dev fee of {} before the buyer was paid",
                    o.id
                );
                assert_eq!(a.amount, mostro_core::fees::dev_fee(o.fee, DEV_FEE_PPM));
                continue;
            }
            if let AttemptStatus::Succeeded(_) = a.status {
                let id = self
                    .invoices
                    .get(&hash)
                    .copied()
                    .or_else(|| {
                        let w = self.bed.ledger.invoice(&hash)?.wallet;
                        self.address_wallets.get(&w).copied()
                    })
                    .expect("payment to a known invoice");
                *paid.entry(id).or_default() += 1;
                let o = &orders[&id];
                let h = o.hold.as_ref().expect("paid order has a hold");
                assert_eq!(
                    self.bed.ledger.hold(&h.hash).map(|r| r.state),
                    Some(HoldInvoiceState::Settled),
                    "buyer of {id} paid before the hold settled"
                );
                assert_eq!(
                    a.amount
                        .checked_add(o.fee)
                        .and_then(|x| x.checked_add(o.fee)),
                    Some(h.amount)
                );
            }
        }
        for (id, n) in paid {
            assert!(n <= 1, "order {id} paid {n} times");
        }
        for (id, n) in dev_paid {
            assert!(n <= 1, "dev fee of {id} paid {n} times");
        }
        for o in orders.values() {
            // A development fee exists only on a successful order, for its exact share.
            if let Some(d) = &o.dev_fee {
                assert_eq!(o.status, Status::Success, "{} has a dev fee", o.id);
                assert_eq!(d.amount, mostro_core::fees::dev_fee(o.fee, DEV_FEE_PPM));
            }
            if o.status == Status::Success {
                let p = o.payout.as_ref().expect("success has a payout");
                assert_eq!(p.state, PayoutState::Succeeded);
                let h = o.hold.as_ref().unwrap();
                assert_eq!(
                    p.amount
                        .checked_add(o.fee)
                        .and_then(|x| x.checked_add(o.fee)),
                    Some(h.amount)
                );
            }
            // A terminal order never keeps a hold it still wants locked.
            if o.status.is_terminal()
                && let Some(h) = &o.hold
            {
                assert!(
                    !matches!(
                        h.state,
                        HoldState::Accepted
                            | HoldState::Open
                            | HoldState::Requested
                            | HoldState::Settling
                    ),
                    "terminal {} with hold {:?}",
                    o.id,
                    h.state
                );
            }
        }
        // No `pay` ever went out for a hash that was not its order's current attempt.
        let v = self.bed.violations.lock().unwrap().clone();
        assert!(v.is_empty(), "{v:?}");
        // Only allowed status transitions.
        for (id, from, to) in self.bed.store.transitions() {
            assert!(allowed(from, to), "order {id}: {from} -> {to}");
        }
    }

    /// Heal every fault, drain everything, then check the end state strictly.
    async fn settle_down(&mut self) {
        self.bed.ledger.set_faults(Faults::default());
        self.bed.ledger.finish_hung(false);
        self.bed.transport.set_failing(false);
        for _ in 0..5 {
            let _ = self.bed.engine.reconcile().await;
            self.pump().await;
            self.bed.clock.advance(61);
            let _ = self.bed.engine.tick().await;
            self.pump().await;
        }
        self.check().await;
        let pending = self.bed.store.pending_effects(10_000).await.unwrap();
        assert!(pending.is_empty(), "effects stuck: {pending:?}");
        for o in self.bed.store.all_orders() {
            if o.status.is_terminal()
                && let Some(h) = &o.hold
            {
                let st = self.bed.ledger.hold(&h.hash).map(|r| r.state);
                assert!(
                    !matches!(st, Some(HoldInvoiceState::Accepted { .. })),
                    "terminal order {} left an accepted hold",
                    o.id
                );
            }
            // Every successful order's development fee ends (paid or given up) or waits for a
            // deadline: never stuck.
            if o.status == Status::Success {
                let d = o
                    .dev_fee
                    .as_ref()
                    .expect("a successful order has its dev fee");
                assert!(
                    matches!(d.state, DevFeeState::Paid | DevFeeState::GaveUp)
                        || o.deadline.is_some(),
                    "{}: dev fee {:?} without deadline",
                    o.id,
                    d.state
                );
            }
            // Nothing waits forever on a wall-clock step.
            if matches!(
                o.status,
                Status::Pending | Status::WaitingBuyerInvoice | Status::WaitingPayment
            ) {
                assert!(
                    o.deadline.is_some(),
                    "{} in {} without deadline",
                    o.id,
                    o.status
                );
            }
        }
        // Every accepted hold in the ledger belongs to a live order that still needs it.
        for (hash, rec) in self.bed.ledger.holds() {
            if let HoldInvoiceState::Accepted { .. } = rec.state {
                let o = self.bed.store.order_by_hold_hash(&hash).await.unwrap();
                let o = o.unwrap_or_else(|| panic!("accepted hold {hash} of no order"));
                assert!(!o.status.is_terminal());
            }
        }
        // Every success the node reports is recorded on its order.
        for (hash, a) in self.bed.ledger.all_attempts() {
            if !matches!(a.status, AttemptStatus::Succeeded(_)) {
                continue;
            }
            if self.is_dev_payment(&hash) {
                let o = self
                    .bed
                    .store
                    .all_orders()
                    .into_iter()
                    .find(|o| o.dev_fee.as_ref().is_some_and(|d| d.knows(&hash)))
                    .expect("dev fee payment of a known order");
                let d = o.dev_fee.unwrap();
                assert_eq!(
                    d.state,
                    DevFeeState::Paid,
                    "{}: node paid the dev fee",
                    o.id
                );
                assert!(
                    d.paid_hash == Some(hash) || d.duplicates.contains(&hash),
                    "{}: dev fee success on {hash} not recorded ({d:?})",
                    o.id
                );
                continue;
            }
            let id = self
                .invoices
                .get(&hash)
                .copied()
                .or_else(|| {
                    let w = self.bed.ledger.invoice(&hash)?.wallet;
                    self.address_wallets.get(&w).copied()
                })
                .expect("payment to a known invoice");
            let o = self.order(id).await;
            assert_eq!(
                o.status,
                Status::Success,
                "{id}: node paid {hash}, order says {}",
                o.status
            );
            let p = o.payout.unwrap();
            assert!(
                p.paid_hash.unwrap_or(p.hash) == hash || p.duplicates.contains(&hash),
                "{id}: success on {hash} not recorded ({p:?})"
            );
        }
        // Outbox effects are all done.
        assert!(
            self.bed
                .store
                .outbox()
                .iter()
                .all(|(_, e, done)| *done || matches!(e, Effect::Notify(_)))
        );
    }
}

fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (
            Pending,
            WaitingBuyerInvoice | WaitingPayment | Canceled | Expired | CanceledByAdmin
        ) | (
            WaitingBuyerInvoice,
            WaitingPayment | Active | Pending | Canceled
        ) | (
            WaitingPayment,
            WaitingBuyerInvoice | Active | Pending | Canceled
        ) | (
            Active,
            FiatSent | Dispute | CooperativelyCanceled | Canceled | SettledHoldInvoice
        ) | (
            FiatSent,
            Dispute | SettledHoldInvoice | CooperativelyCanceled
        ) | (
            Dispute,
            SettledHoldInvoice | CanceledByAdmin | CooperativelyCanceled
        ) | (SettledHoldInvoice, Success | Canceled)
    )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn run(ops: &[Op]) {
    block_on(async {
        let mut w = World::new().await;
        for op in ops {
            let before: Vec<Order> = w.bed.store.all_orders();
            let stranger_op = matches!(
                op,
                Op::FiatSent {
                    who: Who::Stranger,
                    ..
                } | Op::Release {
                    who: Who::Stranger,
                    ..
                } | Op::Cancel {
                    who: Who::Stranger,
                    ..
                } | Op::Dispute {
                    who: Who::Stranger,
                    ..
                } | Op::AdminSettle {
                    who: Who::Stranger,
                    ..
                } | Op::AdminCancel {
                    who: Who::Stranger,
                    ..
                } | Op::AdminTake {
                    who: Who::Stranger,
                    ..
                } | Op::AddInvoice {
                    who: Who::Stranger,
                    ..
                } | Op::AddAddress {
                    who: Who::Stranger,
                    ..
                } | Op::Rate {
                    who: Who::Stranger,
                    ..
                }
            );
            w.apply(op).await;
            if stranger_op {
                // Strangers change nothing (they hold no key of the order and no admin power).
                let after = w.bed.store.all_orders();
                assert_eq!(before, after, "a stranger changed an order with {op:?}");
            }
            w.check().await;
        }
        w.settle_down().await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    /// Funds safety, transitions, strangers, crash recovery and replays under random schedules.
    #[test]
    fn random_schedules_keep_funds_safe(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops);
    }

    /// Complete trade scripts with faults, crashes, replays and strangers between their steps.
    #[test]
    fn scripted_trades_with_faults_keep_funds_safe(ops in scripted()) {
        run(&ops);
    }

    /// The happy path interleaved with crashes at every step still completes trades safely.
    #[test]
    fn crash_at_any_step_of_a_trade(crash_mask in any::<u16>(), lose_mask in any::<u16>()) {
        let mut ops = vec![
            Op::NewOrder { maker: 0, kind: Kind::Sell, sats: 100_000, range: false, market: false },
            Op::Take { order: 0, taker: 1, with_invoice: false, fiat: 50 },
            Op::AddInvoice { order: 0, who: Who::Taker, good: true },
            Op::SellerPays { order: 0 },
            Op::FiatSent { order: 0, who: Who::Taker },
            Op::Release { order: 0, who: Who::Maker, next: false },
            Op::Rate { order: 0, who: Who::Taker, r: 5 },
        ];
        let mut with = Vec::new();
        for (i, op) in ops.drain(..).enumerate() {
            if lose_mask & (1 << i) != 0 {
                with.push(Op::LoseNextReply);
            }
            with.push(op);
            if crash_mask & (1 << i) != 0 {
                with.push(Op::Crash);
            }
        }
        run(&with);
    }
}

#[test]
fn happy_path_through_the_property_harness_completes() {
    // Guards the harness itself: a plain trade must reach success.
    block_on(async {
        let mut w = World::new().await;
        for op in [
            Op::NewOrder {
                maker: 0,
                kind: Kind::Sell,
                sats: 100_000,
                range: false,
                market: false,
            },
            Op::Take {
                order: 0,
                taker: 1,
                with_invoice: false,
                fiat: 50,
            },
            Op::AddInvoice {
                order: 0,
                who: Who::Taker,
                good: true,
            },
            Op::SellerPays { order: 0 },
            Op::FiatSent {
                order: 0,
                who: Who::Taker,
            },
            Op::Release {
                order: 0,
                who: Who::Maker,
                next: false,
            },
        ] {
            w.apply(&op).await;
            w.check().await;
        }
        let id = w.orders[0];
        let o = w.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert_eq!(o.dev_fee.map(|d| d.state), Some(DevFeeState::Paid));
        assert_eq!(w.bed.ledger.balance(DEV_WALLET), 180);
    });
}

/// The generator must actually reach the interesting paths, or the properties prove little.
#[test]
fn random_schedules_cover_the_lifecycle() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let random = prop::collection::vec(op(), 40..80);
    let script = scripted();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut crashes_mid_trade = 0u32;
    let mut dev_fees: BTreeSet<String> = BTreeSet::new();
    for i in 0..600 {
        let ops = if i % 2 == 0 {
            random.new_tree(&mut runner).unwrap().current()
        } else {
            script.new_tree(&mut runner).unwrap().current()
        };
        block_on(async {
            let mut w = World::new().await;
            for op in &ops {
                let live = w.bed.store.all_orders().iter().any(|o| {
                    matches!(
                        o.status,
                        Status::Active | Status::FiatSent | Status::SettledHoldInvoice
                    )
                });
                if live && matches!(op, Op::Crash) {
                    crashes_mid_trade += 1;
                }
                w.apply(op).await;
            }
            for (_, from, to) in w.bed.store.transitions() {
                seen.insert(format!("{from}->{to}"));
            }
            for o in w.bed.store.all_orders() {
                if let Some(d) = o.dev_fee {
                    dev_fees.insert(format!("{:?}", d.state));
                    if d.attempts > 0 {
                        dev_fees.insert("retried".into());
                    }
                }
            }
        });
    }
    // The development fee's paths are reached too: paid, retried after a failure.
    for s in ["Paid", "retried"] {
        assert!(dev_fees.contains(s), "dev fee never {s}: {dev_fees:?}");
    }
    for t in [
        "pending->waiting-buyer-invoice",
        "waiting-payment->active",
        "active->fiat-sent",
        "fiat-sent->settled-hold-invoice",
        "settled-hold-invoice->success",
        "active->cooperatively-canceled",
        "dispute->canceled-by-admin",
        "dispute->settled-hold-invoice",
        "pending->expired",
        "waiting-payment->pending",
    ] {
        assert!(
            seen.contains(t),
            "generator never reached {t}; reached {seen:?}"
        );
    }
    assert!(
        crashes_mid_trade > 20,
        "only {crashes_mid_trade} crashes during a live trade"
    );
}

/// What a [`Task`] runs.
#[derive(Clone, Debug)]
enum Prepared {
    Tick,
    Resume,
    Round(Vec<(mostro_core::ports::EffectId, Effect)>),
    Recover,
    Events,
    Request(Request),
    Nothing,
}

fn run_task<'a>(
    bed: &'a TestBed,
    p: &'a Prepared,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Outcome>> + 'a>> {
    Box::pin(async move {
        match p {
            Prepared::Tick => {
                let _ = bed.engine.tick().await;
                None
            },
            Prepared::Resume => {
                let _ = bed.engine.resume().await;
                None
            },
            Prepared::Round(effects) => {
                for (id, e) in effects {
                    bed.engine.run_effect(*id, e.clone()).await;
                }
                None
            },
            Prepared::Recover => {
                let _ = bed.engine.recover().await;
                None
            },
            Prepared::Events => {
                for ev in bed.node.drain_events() {
                    let _ = bed.engine.on_node_event(ev).await;
                }
                None
            },
            Prepared::Request(req) => bed.engine.handle(req.clone()).await.ok(),
            Prepared::Nothing => None,
        }
    })
}

type TaskFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Outcome>> + 'a>>;

/// Polls two futures to completion, choosing which one to poll at each step from `schedule`.
fn race(
    mut a: TaskFuture<'_>,
    mut b: TaskFuture<'_>,
    schedule: u64,
) -> (Option<Outcome>, Option<Outcome>) {
    use std::task::{Context, Poll};
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let (mut ra, mut rb) = (None, None);
    let mut step = 0u32;
    loop {
        if ra.is_some() && rb.is_some() {
            break;
        }
        let pick_a = (schedule.rotate_right(step % 64) & 1 == 0 && ra.is_none()) || rb.is_some();
        step = step.wrapping_add(1);
        if pick_a {
            if let Poll::Ready(r) = a.as_mut().poll(&mut cx) {
                ra = Some(r);
            }
        } else if let Poll::Ready(r) = b.as_mut().poll(&mut cx) {
            rb = Some(r);
        }
        assert!(step < 1_000_000, "tasks never finished");
    }
    (ra.flatten(), rb.flatten())
}

/// Polls a future at most `n` times; `None` when it had not finished (it is then dropped).
fn poll_n(mut f: TaskFuture<'_>, n: usize) -> Option<Option<Outcome>> {
    use std::task::{Context, Poll};
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for _ in 0..n {
        if let Poll::Ready(r) = f.as_mut().poll(&mut cx) {
            return Some(r);
        }
    }
    None
}
