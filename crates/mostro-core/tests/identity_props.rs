//! Property tests for identities: no request reveals an order or reputation of another identity,
//! trade indexes only grow, and a rating counts once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};

use futures::executor::block_on;
use mostro_core::engine::{Action, NewOrderRequest, Outcome};
use mostro_core::machine::Notice;
use mostro_core::order::Kind;
use mostro_core::ports::Store;
use mostro_core::types::{OrderId, PubKey, Sats};
use mostro_testkit::scenario::{buy_order, sell_order};
use mostro_testkit::{TestBed, Trader};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    NewOrder {
        who: u8,
        sell: bool,
    },
    /// Reuses (or lowers) the trader's index instead of moving to a fresh key.
    StaleIndex {
        who: u8,
    },
    Take {
        who: u8,
        order: u8,
    },
    Complete {
        order: u8,
    },
    Rate {
        order: u8,
        buyer: bool,
        r: u8,
    },
    Lookup {
        who: u8,
        orders: Vec<u8>,
    },
    Restore {
        who: u8,
    },
    UserInfo {
        who: u8,
    },
    LastIndex {
        who: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0u8..4;
    let order = 0u8..6;
    prop_oneof![
        3 => (who.clone(), any::<bool>()).prop_map(|(who, sell)| Op::NewOrder { who, sell }),
        1 => who.clone().prop_map(|who| Op::StaleIndex { who }),
        3 => (who.clone(), order.clone()).prop_map(|(who, order)| Op::Take { who, order }),
        2 => order.clone().prop_map(|order| Op::Complete { order }),
        2 => (order.clone(), any::<bool>(), 1u8..6).prop_map(|(order, buyer, r)| Op::Rate { order, buyer, r }),
        2 => (who.clone(), prop::collection::vec(order.clone(), 1..4)).prop_map(|(who, orders)| Op::Lookup { who, orders }),
        2 => who.clone().prop_map(|who| Op::Restore { who }),
        1 => who.clone().prop_map(|who| Op::UserInfo { who }),
        1 => who.prop_map(|who| Op::LastIndex { who }),
    ]
}

struct World {
    bed: TestBed,
    traders: Vec<Trader>,
    /// Every trade key a trader used -> trader index.
    keys: BTreeMap<PubKey, usize>,
    orders: Vec<OrderId>,
    /// (order, rater is buyer) pairs whose rating was acknowledged.
    rated: BTreeSet<(OrderId, bool)>,
    last_index: BTreeMap<PubKey, u32>,
}

impl World {
    fn new() -> Self {
        let traders: Vec<Trader> = (0..4).map(|i| Trader::new(&format!("u{i}"))).collect();
        let mut keys = BTreeMap::new();
        for (i, t) in traders.iter().enumerate() {
            keys.insert(t.trade_key, i);
        }
        World {
            bed: TestBed::new(),
            traders,
            keys,
            orders: Vec::new(),
            rated: BTreeSet::new(),
            last_index: BTreeMap::new(),
        }
    }

    fn fresh(&mut self, who: usize) -> Trader {
        self.traders[who].next_key();
        let t = self.traders[who].clone();
        self.keys.insert(t.trade_key, who);
        t
    }

    fn pick(&self, i: u8) -> Option<OrderId> {
        (!self.orders.is_empty()).then(|| self.orders[usize::from(i) % self.orders.len()])
    }

    async fn apply(&mut self, op: &Op) {
        let bed = &self.bed;
        match op {
            Op::NewOrder { who, sell } => {
                let t = self.fresh(usize::from(*who));
                let order = if *sell {
                    sell_order(20_000, 10)
                } else {
                    buy_order(20_000, 10)
                };
                let out = self
                    .bed
                    .send(
                        &t,
                        None,
                        Action::NewOrder(Box::new(NewOrderRequest {
                            order,
                            buyer_invoice: None,
                        })),
                    )
                    .await;
                if let Outcome::Applied(Some(id)) = out {
                    self.orders.push(id);
                }
            },
            Op::StaleIndex { who } => {
                let mut t = self.traders[usize::from(*who)].clone();
                t.index = t.index.saturating_sub(u32::from(*who) % 2);
                let last = bed
                    .store
                    .user(&t.identity)
                    .await
                    .unwrap()
                    .map_or(0, |u| u.last_trade_index);
                if t.index > last {
                    return; // not stale: the node has not seen this index yet
                }
                let out = bed
                    .send(
                        &t,
                        None,
                        Action::NewOrder(Box::new(NewOrderRequest {
                            order: sell_order(20_000, 10),
                            buyer_invoice: None,
                        })),
                    )
                    .await;
                assert!(
                    !matches!(out, Outcome::Applied(_)),
                    "a stale trade index was accepted: {out:?}"
                );
            },
            Op::Take { who, order } => {
                let Some(id) = self.pick(*order) else { return };
                let t = self.fresh(usize::from(*who));
                let o = self.bed.order(id).await;
                let action = match o.kind {
                    Kind::Sell => {
                        let inv = self
                            .bed
                            .invoice(&t, o.amount.checked_sub(o.fee).unwrap_or(Sats(1)));
                        Action::TakeSell {
                            fiat_amount: None,
                            invoice: Some(inv),
                        }
                    },
                    Kind::Buy => Action::TakeBuy { fiat_amount: None },
                };
                self.bed.send(&t, Some(id), action).await;
            },
            Op::Complete { order } => {
                // Drive a taken order to success: pay the hold, add an invoice, fiat-sent, release.
                let Some(id) = self.pick(*order) else { return };
                let o = self.bed.order(id).await;
                let (Some(seller), Some(buyer)) = (o.seller().cloned(), o.buyer().cloned()) else {
                    return;
                };
                let as_trader = |p: &mostro_core::order::Party| {
                    let i = self.keys[&p.trade_key];
                    Trader {
                        trade_key: p.trade_key,
                        ..self.traders[i].clone()
                    }
                };
                let (s, b) = (as_trader(&seller), as_trader(&buyer));
                self.bed.seller_pays(&s, id).await;
                let o = self.bed.order(id).await;
                if o.status == mostro_core::order::Status::WaitingBuyerInvoice {
                    let inv = self.bed.invoice(&b, o.amount.checked_sub(o.fee).unwrap());
                    self.bed.send(&b, Some(id), Action::AddInvoice(inv)).await;
                }
                self.bed
                    .send(&b, Some(id), Action::FiatSent { next_trade: None })
                    .await;
                self.bed
                    .send(&s, Some(id), Action::Release { next_trade: None })
                    .await;
            },
            Op::Rate { order, buyer, r } => {
                let Some(id) = self.pick(*order) else { return };
                let o = self.bed.order(id).await;
                let p = if *buyer {
                    o.buyer().cloned()
                } else {
                    o.seller().cloned()
                };
                let Some(p) = p else { return };
                let i = self.keys[&p.trade_key];
                let t = Trader {
                    trade_key: p.trade_key,
                    ..self.traders[i].clone()
                };
                let before = self
                    .bed
                    .inbox(&t.trade_key)
                    .iter()
                    .filter(|n| matches!(n, Notice::RateReceived(_)))
                    .count();
                self.bed.send(&t, Some(id), Action::RateUser(*r)).await;
                let after = self
                    .bed
                    .inbox(&t.trade_key)
                    .iter()
                    .filter(|n| matches!(n, Notice::RateReceived(_)))
                    .count();
                if after > before {
                    assert!(
                        self.rated.insert((id, *buyer)),
                        "a second rating of {id} by the same side was acknowledged"
                    );
                }
            },
            Op::Lookup { who, orders } => {
                let ids: Vec<OrderId> = orders.iter().filter_map(|i| self.pick(*i)).collect();
                if ids.is_empty() {
                    return;
                }
                let t = self.traders[usize::from(*who)].clone();
                self.bed.send(&t, None, Action::Orders(ids)).await;
            },
            Op::Restore { who } => {
                let t = self.traders[usize::from(*who)].clone();
                self.bed.send(&t, None, Action::RestoreSession).await;
            },
            Op::UserInfo { who } => {
                let t = self.traders[usize::from(*who)].clone();
                self.bed.send(&t, None, Action::UserInfo).await;
            },
            Op::LastIndex { who } => {
                let t = self.traders[usize::from(*who)].clone();
                self.bed.send(&t, None, Action::LastTradeIndex).await;
            },
        }
    }

    async fn check(&mut self) {
        // Nothing sent to a trader's key reveals another identity's order or reputation.
        for n in self.bed.sent() {
            let Some(&who) = self.keys.get(&n.to) else {
                continue;
            };
            let me = self.traders[who].identity;
            match &n.notice {
                Notice::Orders(list) | Notice::RestoreSession { orders: list, .. } => {
                    for o in list {
                        assert!(
                            o.identities().any(|i| *i == me),
                            "order {} of others sent to {}",
                            o.id,
                            n.to
                        );
                    }
                },
                Notice::UserInfo(u) => {
                    assert!(
                        u.identity == me || u.identity == PubKey::default(),
                        "reputation of another identity"
                    );
                },
                _ => {},
            }
        }
        // Trade indexes only grow.
        for t in &self.traders {
            if let Some(u) = self.bed.store.user(&t.identity).await.unwrap() {
                let last = self.last_index.entry(t.identity).or_default();
                assert!(u.last_trade_index >= *last, "trade index went down");
                *last = u.last_trade_index;
            }
        }
        // A rating counts once: total reviews equal the acknowledged ratings.
        let mut reviews = 0;
        for t in &self.traders {
            if let Some(u) = self.bed.store.user(&t.identity).await.unwrap() {
                reviews += u.reviews;
            }
        }
        assert_eq!(
            reviews,
            self.rated.len() as u64,
            "reviews counted differ from ratings acknowledged"
        );
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn identities_stay_separate(ops in prop::collection::vec(op(), 1..40)) {
        block_on(async {
            let mut w = World::new();
            for op in &ops {
                w.apply(op).await;
                w.check().await;
            }
        });
    }
}
