//! Regression tests for the funds-safety review: one test (or more) per defect, each driving
//! the engine through the test kit with the node behaviour that exposed it (ambiguous errors,
//! a node starting up, payments that stay in flight, lost replies, piled-up effects).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::Ordering;

use futures::executor::block_on;
use mostro_core::engine::{Action, Outcome};
use mostro_core::machine::{
    self, Authority, Caller, Effect, Env, Input, Notice, Notify, PayOutcome, Reject,
};
use mostro_core::order::{HoldState, NextTrade, PayoutState, Protocol, Status};
use mostro_core::policy::Policy;
use mostro_core::ports::{Commit, PaymentStatus, Solver, Store};
use mostro_core::types::{BlockHeight, OrderId, PaymentHash, PubKey, Sats};
use mostro_testkit::ledger::AttemptStatus;
use mostro_testkit::scenario::sell_order;
use mostro_testkit::{Faults, TestBed, Trader};

async fn active_sell(bed: &TestBed, seller: &Trader, buyer: &Trader) -> OrderId {
    bed.active_sell(seller, buyer).await
}

/// `active_sell`, then fiat-sent.
async fn fiat_sent(bed: &TestBed, seller: &Trader, buyer: &Trader) -> OrderId {
    let id = active_sell(bed, seller, buyer).await;
    bed.send(buyer, Some(id), Action::FiatSent { next_trade: None })
        .await;
    assert_eq!(bed.order(id).await.status, Status::FiatSent);
    id
}

async fn release(bed: &TestBed, seller: &Trader, id: OrderId) {
    let out = bed
        .send(seller, Some(id), Action::Release { next_trade: None })
        .await;
    assert_eq!(out, Outcome::Applied(Some(id)));
}

fn faults(bed: &TestBed, f: impl FnOnce(&mut Faults)) {
    let mut cur = bed.ledger.faults();
    f(&mut cur);
    bed.ledger.set_faults(cur);
}

fn pay_calls(bed: &TestBed, hash: &PaymentHash) -> usize {
    bed.ledger
        .pay_requests()
        .iter()
        .filter(|r| r.hash == *hash)
        .count()
}

fn successes(bed: &TestBed) -> usize {
    bed.ledger
        .all_attempts()
        .iter()
        .filter(|(_, a)| matches!(a.status, AttemptStatus::Succeeded(_)))
        .count()
}

fn told(bed: &TestBed, who: &Trader, pred: impl Fn(&Notice) -> bool) -> bool {
    bed.inbox(&who.trade_key).iter().any(pred)
}

fn retry_secs(bed: &TestBed) -> u64 {
    bed.engine.policy().payment_retry_secs
}

// Defect 1: an unknown outcome was recorded as a definite failure.

#[test]
fn an_ambiguous_pay_error_is_not_a_failure() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        // The node pays for real but answers an error of no known kind.
        faults(&bed, |f| f.ambiguous_pays = 1);
        release(&bed, &seller, id).await;
        let o = bed.order(id).await;
        // The node's own record said it succeeded: recorded at once, never as a failure.
        assert_eq!(o.status, Status::Success, "{:?}", o.payout);
        assert!(!told(&bed, &buyer, |n| matches!(
            n,
            Notice::PaymentFailed { .. }
        )));
        assert_eq!(successes(&bed), 1);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
    });
}

#[test]
fn a_node_starting_up_leaves_the_payout_in_flight_until_it_can_say() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        // Settle works, then the node restarts: every call answers "starting up".
        let hash = bed.order(id).await.buyer_invoice.unwrap().hash;
        faults(&bed, |f| {
            f.hang_payments = true;
            f.ambiguous_pays = 1;
        });
        release(&bed, &seller, id).await;
        faults(&bed, |f| f.starting_up = true);
        for _ in 0..5 {
            bed.advance(retry_secs(&bed)).await;
            bed.engine.resume().await.unwrap();
            let o = bed.order(id).await;
            assert_eq!(o.status, Status::SettledHoldInvoice);
            assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::InFlight);
            assert_eq!(o.payout.as_ref().unwrap().attempts, 0, "no attempt counted");
        }
        faults(&bed, |f| f.starting_up = false);
        bed.ledger.finish_hung(false);
        bed.advance(retry_secs(&bed)).await;
        bed.engine.resume().await.unwrap();
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert_eq!(pay_calls(&bed, &hash), 1, "one send");
        assert_eq!(successes(&bed), 1);
    });
}

// Defect 2: after a "failure" the next attempt used a new hash while the old one was in flight.

#[test]
fn a_lightning_address_is_not_resolved_again_while_its_payment_is_in_flight() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: None,
            },
        )
        .await;
        bed.send(
            &buyer,
            Some(id),
            Action::AddInvoice("buyer@wallet.example".into()),
        )
        .await;
        assert!(bed.seller_pays(&seller, id).await);
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        // The payment starts and hangs; the call answers an unrecognized error.
        faults(&bed, |f| {
            f.hang_payments = true;
            f.ambiguous_pays = 1;
        });
        release(&bed, &seller, id).await;
        for _ in 0..4 {
            bed.advance(retry_secs(&bed)).await;
        }
        assert_eq!(bed.resolver.calls().len(), 1, "resolved once");
        let o = bed.order(id).await;
        assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::InFlight);
        bed.ledger.finish_hung(false);
        bed.advance(retry_secs(&bed)).await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(successes(&bed), 1, "paid once");
        assert_eq!(bed.resolver.calls().len(), 1);
    });
}

#[test]
fn a_new_invoice_is_refused_while_the_payout_is_in_flight() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        faults(&bed, |f| {
            f.hang_payments = true;
            f.ambiguous_pays = 1;
        });
        release(&bed, &seller, id).await;
        let fresh = bed.invoice(&buyer, Sats(99_700));
        let out = bed.send(&buyer, Some(id), Action::AddInvoice(fresh)).await;
        assert_eq!(out, Outcome::Refused(Reject::NotAllowedByStatus));
        bed.ledger.finish_hung(false);
        bed.advance(retry_secs(&bed)).await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(successes(&bed), 1);
    });
}

#[test]
fn a_new_invoice_is_taken_only_after_the_node_confirms_the_failure() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        let first = bed.order(id).await.buyer_invoice.unwrap().hash;
        faults(&bed, |f| f.fail_payments = 10);
        release(&bed, &seller, id).await;
        for _ in 0..3 {
            bed.advance(retry_secs(&bed)).await;
        }
        let o = bed.order(id).await;
        assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::NeedInvoice);
        faults(&bed, |f| f.fail_payments = 0);
        let fresh = bed.invoice(&buyer, Sats(99_700));
        let out = bed.send(&buyer, Some(id), Action::AddInvoice(fresh)).await;
        assert_eq!(out, Outcome::Applied(Some(id)));
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        let p = o.payout.unwrap();
        assert_eq!(p.previous, vec![first], "the old hash is remembered");
        assert_eq!(successes(&bed), 1);
    });
}

// Defect 3: a success for an old hash was dropped.

#[test]
fn a_success_on_an_earlier_hash_is_recorded_and_alarms() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        let first = bed.order(id).await.buyer_invoice.unwrap().hash;
        faults(&bed, |f| f.fail_payments = 3);
        release(&bed, &seller, id).await;
        for _ in 0..3 {
            bed.advance(retry_secs(&bed)).await;
        }
        assert_eq!(
            bed.order(id).await.payout.unwrap().state,
            PayoutState::NeedInvoice
        );
        // A new invoice, whose payment hangs.
        faults(&bed, |f| f.hang_payments = true);
        let fresh = bed.invoice(&buyer, Sats(99_700));
        bed.send(&buyer, Some(id), Action::AddInvoice(fresh)).await;
        // The network resolves the first hash as paid after all (a node that lied about the
        // failure): the restart check of every hash of the order finds it.
        bed.ledger
            .force_attempt(&first, AttemptStatus::Succeeded(Sats(1)));
        let mut bed = bed;
        bed.restart();
        let r = bed.engine.recover().await.unwrap();
        assert!(r.failed.is_empty());
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success, "the success is recorded");
        assert_eq!(o.payout.as_ref().unwrap().paid_hash, Some(first));
        assert_eq!(
            bed.engine
                .alarms()
                .payout_duplicates
                .load(Ordering::Relaxed),
            1
        );
        // The hung second payment lands too: a duplicate, recorded for the operator.
        bed.ledger.finish_hung(false);
        bed.engine.resume().await.unwrap();
        bed.engine.recover_order(id).await.unwrap();
        let o = bed.order(id).await;
        assert_eq!(o.payout.as_ref().unwrap().duplicates.len(), 1);
        assert_eq!(
            bed.engine
                .alarms()
                .payout_duplicates
                .load(Ordering::Relaxed),
            2
        );
    });
}

#[test]
fn the_machine_records_a_success_for_any_hash_of_the_order() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        faults(&bed, |f| f.hang_payments = true);
        release(&bed, &seller, id).await;
        let mut o = bed.order(id).await;
        let policy = Policy::default();
        let env = Env {
            now: bed.now(),
            policy: &policy,
            rand: [7; 32],
            price: None,
        };
        let old = PaymentHash([0x11; 32]);
        o.payout.as_mut().unwrap().previous.push(old);
        let t = machine::step(
            &o,
            &Input::PayResult {
                hash: old,
                outcome: PayOutcome::Succeeded { fee: Sats(2) },
            },
            &env,
        )
        .unwrap();
        assert_eq!(t.order.status, Status::Success);
        assert_eq!(t.order.payout.as_ref().unwrap().paid_hash, Some(old));
        // The current attempt is then checked, so a second success becomes visible.
        assert!(
            t.effects
                .iter()
                .any(|e| matches!(e, Effect::CheckPayment { .. }))
        );
        let cur = o.payout.as_ref().unwrap().hash;
        let t2 = machine::step(
            &t.order,
            &Input::PayResult {
                hash: cur,
                outcome: PayOutcome::Succeeded { fee: Sats(2) },
            },
            &env,
        )
        .unwrap();
        assert_eq!(t2.order.payout.as_ref().unwrap().duplicates, vec![cur]);
        // A hash the order never used is not ours.
        let t3 = machine::step(
            &o,
            &Input::PayResult {
                hash: PaymentHash([0x22; 32]),
                outcome: PayOutcome::Succeeded { fee: Sats(2) },
            },
            &env,
        )
        .unwrap();
        assert_eq!(t3.order.status, Status::SettledHoldInvoice);
    });
}

// Defect 4: stale or duplicate `Pay` effects ran unchecked.

#[test]
fn deadlines_while_in_flight_check_the_node_and_never_pay_again() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        let hash = bed.order(id).await.buyer_invoice.unwrap().hash;
        faults(&bed, |f| f.hang_payments = true);
        release(&bed, &seller, id).await;
        let status_before = bed.ledger.status_calls();
        for _ in 0..6 {
            bed.advance(retry_secs(&bed)).await;
        }
        assert_eq!(pay_calls(&bed, &hash), 1, "deadlines never send again");
        assert!(
            bed.ledger.status_calls() >= status_before + 6,
            "they ask the node"
        );
        let pending_pays = bed
            .store
            .outbox()
            .into_iter()
            .filter(|(_, e, done)| !done && matches!(e, Effect::Pay { .. }))
            .count();
        assert_eq!(pending_pays, 0);
        bed.ledger.finish_hung(false);
        bed.advance(retry_secs(&bed)).await;
        assert_eq!(bed.order(id).await.status, Status::Success);
    });
}

#[test]
fn piled_up_pay_effects_run_concurrently_pay_once() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        let hash = bed.order(id).await.buyer_invoice.unwrap().hash;
        // The node is down at release: the settle and then the pay pile up in the outbox.
        bed.ledger.set_unreachable(true);
        release(&bed, &seller, id).await;
        for _ in 0..3 {
            bed.advance(retry_secs(&bed)).await;
            bed.engine.resume().await.unwrap();
        }
        bed.ledger.set_unreachable(false);
        // Settle, then the pay: hang it so several runs overlap.
        faults(&bed, |f| f.hang_payments = true);
        bed.engine.resume().await.unwrap();
        bed.pump().await;
        let pending = bed.engine.pending_effects().await.unwrap();
        // The same effects handed to two runners at once, twice over.
        let a = async {
            for (i, e) in pending.clone() {
                bed.engine.run_effect(i, e).await;
            }
        };
        let b = async {
            for (i, e) in pending.clone() {
                bed.engine.run_effect(i, e).await;
            }
        };
        futures::join!(a, b);
        bed.engine.resume().await.unwrap();
        assert!(pay_calls(&bed, &hash) <= 1, "{}", pay_calls(&bed, &hash));
        bed.ledger.finish_hung(false);
        bed.advance(retry_secs(&bed)).await;
        bed.engine.resume().await.unwrap();
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(successes(&bed), 1);
    });
}

#[test]
fn a_stale_snapshot_of_a_finished_effect_is_not_run_again() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        bed.ledger.set_unreachable(true);
        release(&bed, &seller, id).await;
        // A retry round read the outbox (the settle is pending)...
        let snapshot = bed.engine.pending_effects().await.unwrap();
        assert!(
            snapshot
                .iter()
                .any(|(_, e)| matches!(e, Effect::SettleHold { .. }))
        );
        // ...then another task finished it before the round ran it.
        bed.ledger.set_unreachable(false);
        bed.engine.resume().await.unwrap();
        bed.pump().await;
        let calls_before = bed.node.calls().len();
        for (i, e) in snapshot {
            bed.engine.run_effect(i, e).await;
        }
        let again: Vec<String> = bed.node.calls()[calls_before..]
            .iter()
            .filter(|c| c.starts_with("settle") || c.starts_with("pay"))
            .cloned()
            .collect();
        assert!(again.is_empty(), "ran again: {again:?}");
    });
}

#[test]
fn a_pay_for_a_hash_that_is_no_longer_current_is_skipped() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        let first = bed.order(id).await.buyer_invoice.unwrap().hash;
        faults(&bed, |f| f.fail_payments = 3);
        release(&bed, &seller, id).await;
        for _ in 0..3 {
            bed.advance(retry_secs(&bed)).await;
        }
        faults(&bed, |f| f.fail_payments = 0);
        let fresh = bed.invoice(&buyer, Sats(99_700));
        bed.send(&buyer, Some(id), Action::AddInvoice(fresh)).await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        let before = pay_calls(&bed, &first);
        // An old `Pay` for the first hash turns up (a stale copy from another process).
        let o = bed.order(id).await;
        let stale = Effect::Pay {
            order_id: id,
            hash: first,
            invoice: o.payout.as_ref().unwrap().invoice.clone(),
            amount: Sats(99_700),
            fee_limit: Sats(200),
        };
        let ids = bed
            .store
            .commit(Commit {
                effects: vec![stale.clone()],
                ..Commit::at(mostro_core::types::Timestamp(0))
            })
            .await
            .unwrap();
        bed.engine.run_effect(ids[0], stale).await;
        assert_eq!(pay_calls(&bed, &first), before, "not sent");
        assert!(!bed.store.effect_pending(ids[0]).await.unwrap());
    });
}

// Defect 5: poison effects starved retries.

#[test]
fn poison_messages_are_dead_lettered_and_do_not_starve_a_settle() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        // 300 messages to a key that is not a curve point (as a bad next-trade key made).
        let bad = PubKey([0; 32]);
        assert!(!bad.is_on_curve());
        let poison: Vec<Effect> = (0..300u64)
            .map(|i| {
                Effect::Notify(Notify {
                    to: bad,
                    protocol: Protocol::V2,
                    request_id: Some(i),
                    order_id: Some(id),
                    trade_index: None,
                    notice: Notice::Canceled,
                })
            })
            .collect();
        bed.store
            .commit(Commit {
                effects: poison,
                ..Commit::at(mostro_core::types::Timestamp(0))
            })
            .await
            .unwrap();
        // The settle fails once (node down) and must be retried behind them.
        bed.ledger.set_unreachable(true);
        release(&bed, &seller, id).await;
        bed.ledger.set_unreachable(false);
        // One retry round, as the daemon's loop runs it.
        let round = bed.engine.pending_effects().await.unwrap();
        assert!(
            matches!(round.first(), Some((_, Effect::SettleHold { .. }))),
            "Lightning effects come first"
        );
        for (i, e) in round {
            bed.engine.run_effect(i, e).await;
        }
        bed.pump().await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        let (dead, total) = bed.store.dead_effects(10).await.unwrap();
        assert_eq!(total, 300);
        assert_eq!(dead.len(), 10);
        assert_eq!(
            bed.engine.alarms().dead_letters.load(Ordering::Relaxed),
            300
        );
        assert!(bed.engine.pending_effects().await.unwrap().is_empty());
    });
}

#[test]
fn retry_rounds_page_through_a_long_outbox() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        // 3,000 messages that fail transiently (relays down), then a settle that failed once.
        bed.transport.set_failing(true);
        let msgs: Vec<Effect> = (0..3000u64)
            .map(|i| {
                Effect::Notify(Notify {
                    to: buyer.trade_key,
                    protocol: Protocol::V2,
                    request_id: Some(i),
                    order_id: Some(id),
                    trade_index: None,
                    notice: Notice::Canceled,
                })
            })
            .collect();
        bed.store
            .commit(Commit {
                effects: msgs,
                ..Commit::at(mostro_core::types::Timestamp(0))
            })
            .await
            .unwrap();
        bed.ledger.set_unreachable(true);
        release(&bed, &seller, id).await;
        bed.ledger.set_unreachable(false);
        let mut settled_in = None;
        for round in 0..5 {
            let r = bed.engine.pending_effects().await.unwrap();
            for (i, e) in r {
                bed.engine.run_effect(i, e).await;
            }
            bed.pump().await;
            if bed.order(id).await.status == Status::Success {
                settled_in = Some(round);
                break;
            }
        }
        assert!(
            settled_in.is_some(),
            "the settle was reached within 5 rounds"
        );
    });
}

#[test]
fn a_next_trade_key_off_the_curve_is_refused_at_intake() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = active_sell(&bed, &seller, &buyer).await;
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::FiatSent {
                    next_trade: Some(NextTrade {
                        trade_key: PubKey([0; 32]),
                        trade_index: 5,
                    }),
                },
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidPubkey));
        let admin = Trader {
            identity: bed.node_key,
            trade_key: bed.node_key,
            ..Trader::new("admin")
        };
        let out = bed
            .send(
                &admin,
                None,
                Action::AdminAddSolver(Solver {
                    identity: PubKey([0; 32]),
                    write: true,
                }),
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidPubkey));
    });
}

// Defect 6: the expiry guard did not protect fiat-sent and dispute.

fn expiry_of(o: &mostro_core::order::Order) -> BlockHeight {
    o.hold.as_ref().unwrap().htlc_expiry.unwrap()
}

async fn mine_to_margin(bed: &TestBed, id: OrderId) {
    let o = bed.order(id).await;
    let margin = bed.engine.policy().escrow_deadline_margin_blocks;
    let target = expiry_of(&o).0 - margin;
    let now = bed.ledger.height().0;
    bed.ledger.mine(target - now);
    bed.pump().await;
}

#[test]
fn a_disputed_escrow_near_expiry_warns_the_solver_once() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::Dispute).await;
        let dispute_id = bed.order(id).await.dispute.unwrap().id;
        let admin = Trader {
            identity: bed.node_key,
            trade_key: bed.node_key,
            ..Trader::new("admin")
        };
        let solver = Trader::new("solver");
        bed.send(
            &admin,
            None,
            Action::AdminAddSolver(Solver {
                identity: solver.identity,
                write: true,
            }),
        )
        .await;
        assert_eq!(
            bed.send(&solver, Some(dispute_id), Action::AdminTakeDispute)
                .await,
            Outcome::Applied(Some(id))
        );
        let disputes_before = bed.transport.disputes().len();
        mine_to_margin(&bed, id).await;
        bed.ledger.mine(1);
        bed.pump().await;
        let warnings = bed
            .inbox(&solver.trade_key)
            .into_iter()
            .filter(|n| matches!(n, Notice::EscrowExpiring { .. }))
            .count();
        assert_eq!(warnings, 1, "warned once");
        assert_eq!(
            bed.engine.alarms().escrow_expiring.load(Ordering::Relaxed),
            1
        );
        assert!(
            bed.transport.disputes().len() > disputes_before,
            "dispute republished"
        );
        // The solver can still settle before the node's own cancel.
        bed.send(&solver, Some(id), Action::AdminSettle).await;
        assert_eq!(bed.order(id).await.status, Status::Success);
    });
}

#[test]
fn fiat_sent_near_expiry_opens_a_dispute_and_alarms() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        mine_to_margin(&bed, id).await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Dispute);
        assert!(o.dispute.as_ref().unwrap().expiry_warned);
        assert_eq!(
            bed.engine.alarms().escrow_expiring.load(Ordering::Relaxed),
            1
        );
        assert_eq!(
            o.hold.unwrap().state,
            HoldState::Accepted,
            "still settleable"
        );
        // The reference's actions (clients need them), then the truth to both: the node
        // opened it, not the counterparty.
        let did = o.dispute.unwrap().id;
        assert!(told(&bed, &buyer, |n| matches!(
            n,
            Notice::DisputeInitiatedByYou { .. }
        )));
        for who in [&buyer, &seller] {
            assert!(
                told(&bed, who, |n| matches!(
                    n,
                    Notice::DisputeOpenedByNode { dispute_id, expiry: Some(_) } if *dispute_id == did
                )),
                "{}",
                who.name
            );
        }
    });
}

// Defect 7: restart recovery blind spots.

#[test]
fn a_settle_answered_not_found_while_starting_does_not_refund_the_seller() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        faults(&bed, |f| f.spurious_not_found = 1);
        release(&bed, &seller, id).await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::SettledHoldInvoice, "not canceled");
        bed.engine.resume().await.unwrap();
        bed.pump().await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
    });
}

#[test]
fn recovery_settles_again_a_hold_the_node_still_shows_accepted() {
    block_on(async {
        let mut bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        bed.ledger.set_unreachable(true);
        release(&bed, &seller, id).await;
        // The outbox lost the settle (an operator cleared it, or an older release marked it
        // done): only the order says "settling".
        let pending: Vec<_> = bed
            .store
            .outbox()
            .into_iter()
            .filter(|(_, _, done)| !done)
            .map(|(i, _, _)| i)
            .collect();
        bed.store
            .commit(Commit {
                done: pending,
                ..Commit::at(mostro_core::types::Timestamp(0))
            })
            .await
            .unwrap();
        bed.ledger.set_unreachable(false);
        bed.restart();
        let r = bed.engine.recover().await.unwrap();
        assert!(r.failed.is_empty());
        bed.engine.resume().await.unwrap();
        bed.pump().await;
        assert_eq!(bed.order(id).await.status, Status::Success);
    });
}

#[test]
fn recovery_cancels_a_hold_the_store_believes_canceled_but_the_node_still_offers() {
    block_on(async {
        let mut bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        let inv = bed.invoice(&buyer, Sats(99_700));
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: Some(inv),
            },
        )
        .await;
        let hash = bed.order(id).await.hold.unwrap().hash;
        // The buyer (taker) cancels: the order goes back to pending, but the node answers the
        // cancel with a spurious "not found" and keeps the invoice open; then it is paid.
        faults(&bed, |f| f.spurious_not_found = 1);
        bed.send(&buyer, Some(id), Action::Cancel).await;
        assert!(bed.seller_pays(&seller, id).await || bed.ledger.hold(&hash).is_some());
        let bolt11 = bed.ledger.hold(&hash).unwrap().bolt11;
        let _ = bed.ledger.pay_hold("seller", &bolt11);
        // Events lost in a crash; at restart the stray accepted hold is found and refunded.
        let _ = bed.node.drain_events();
        bed.restart();
        bed.engine.recover().await.unwrap();
        bed.engine.resume().await.unwrap();
        for e in bed.node.drain_events() {
            bed.engine.on_node_event(e).await.unwrap();
        }
        let st = bed.ledger.hold(&hash).unwrap().state;
        assert!(
            !matches!(st, mostro_core::ports::HoldInvoiceState::Accepted { .. }),
            "{st:?}"
        );
    });
}

#[test]
fn recovery_goes_on_past_an_order_it_cannot_read_and_retries_it() {
    block_on(async {
        let mut bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let a = fiat_sent(&bed, &seller, &buyer).await;
        let (s2, b2) = (Trader::new("seller2"), Trader::new("buyer2"));
        let b = active_sell(&bed, &s2, &b2).await;
        faults(&bed, |f| f.hang_payments = true);
        release(&bed, &seller, a).await;
        bed.restart();
        // The payout status of `a` cannot be read; `b` is looked at regardless.
        faults(&bed, |f| f.lose_status_replies = 1);
        let r = bed.engine.recover().await.unwrap();
        assert_eq!(r.orders, 2);
        assert_eq!(r.failed, vec![a]);
        assert!(r.checked >= 1, "{r:?}");
        // Recovery does not run the outbox itself (the retry loop does, after start-up).
        bed.ledger.finish_hung(false);
        bed.engine.recover_order(a).await.unwrap();
        assert_eq!(bed.order(a).await.status, Status::Success);
        assert_eq!(bed.order(b).await.status, Status::Active);
    });
}

// Defect 8: a solver judging their own trade.

#[test]
fn a_solver_who_is_a_party_may_not_take_or_resolve_the_dispute() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        let admin = Trader {
            identity: bed.node_key,
            trade_key: bed.node_key,
            ..Trader::new("admin")
        };
        // The buyer's identity is registered as a solver.
        bed.send(
            &admin,
            None,
            Action::AdminAddSolver(Solver {
                identity: buyer.identity,
                write: true,
            }),
        )
        .await;
        bed.send(&seller, Some(id), Action::Dispute).await;
        let dispute_id = bed.order(id).await.dispute.unwrap().id;
        let out = bed
            .send(&buyer, Some(dispute_id), Action::AdminTakeDispute)
            .await;
        assert_eq!(out, Outcome::Refused(Reject::NotAuthorized));
        let out = bed.send(&buyer, Some(id), Action::AdminSettle).await;
        assert_eq!(out, Outcome::Refused(Reject::NotAuthorized));
        assert_eq!(bed.order(id).await.status, Status::Dispute);
        // The pure rule, for a solver caller on any trade key of theirs.
        let o = bed.order(id).await;
        let policy = Policy::default();
        let env = Env {
            now: bed.now(),
            policy: &policy,
            rand: [1; 32],
            price: None,
        };
        let caller = Caller {
            trade_key: PubKey([0x33; 32]),
            identity: seller.identity,
            trade_index: 0,
            protocol: Protocol::V2,
            authority: Authority::Solver { write: true },
        };
        let r = machine::step(
            &o,
            &Input::Command {
                caller,
                command: machine::Command::AdminTakeDispute,
                request_id: None,
            },
            &env,
        );
        assert_eq!(r.unwrap_err(), Reject::NotAuthorized);
    });
}

// Defect 9: payout CLTV bounds.

#[test]
fn a_payout_invoice_asking_for_a_huge_final_cltv_is_refused() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        let hostile = bed
            .ledger
            .wallet_invoice_full("buyer", Some(Sats(99_700)), 24 * 3600, None, 2_000)
            .unwrap();
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some(hostile),
                },
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidInvoice));
    });
}

#[test]
fn every_pay_carries_the_cltv_limit() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        release(&bed, &seller, id).await;
        let reqs = bed.ledger.pay_requests();
        assert!(!reqs.is_empty());
        let limit = bed.engine.policy().max_payout_cltv;
        assert!(reqs.iter().all(|r| r.max_cltv == limit && limit > 0));
        assert_eq!(bed.order(id).await.status, Status::Success);
    });
}

// The status the node reports for a payment is the only source of a payout's outcome.
#[test]
fn a_pay_failure_the_node_record_contradicts_is_not_trusted() {
    block_on(async {
        let bed = TestBed::new();
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        let hash = bed.order(id).await.buyer_invoice.unwrap().hash;
        faults(&bed, |f| f.fail_payments = 1);
        release(&bed, &seller, id).await;
        // The node's record agrees: a real failure, counted.
        assert!(matches!(
            bed.ledger.payment_status(&hash).unwrap(),
            PaymentStatus::Failed { .. }
        ));
        let o = bed.order(id).await;
        assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::Failed);
        assert_eq!(o.payout.as_ref().unwrap().attempts, 1);
        bed.advance(retry_secs(&bed)).await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(successes(&bed), 1);
    });
}

#[test]
fn retry_rounds_over_a_mid_sized_outbox_cover_everything_and_end() {
    // More than one store page, less than one round: the cursor wraps around mid-outbox.
    block_on(async {
        let bed = TestBed::new();
        let buyer = Trader::new("buyer");
        bed.transport.set_failing(true);
        // Every third goes to a key off the curve: it is dead-lettered (done) when run, so the
        // cursor can come to rest on an effect that is no longer pending.
        let msgs: Vec<Effect> = (0..600u64)
            .map(|i| {
                Effect::Notify(Notify {
                    to: if i % 3 == 0 {
                        PubKey([0; 32])
                    } else {
                        buyer.trade_key
                    },
                    protocol: Protocol::V2,
                    request_id: Some(i),
                    order_id: None,
                    trade_index: None,
                    notice: Notice::Canceled,
                })
            })
            .collect();
        let ids = bed
            .store
            .commit(Commit {
                effects: msgs,
                ..Commit::at(mostro_core::types::Timestamp(0))
            })
            .await
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let r = bed.engine.pending_effects().await.unwrap();
            assert!(r.len() <= 1024);
            seen.extend(r.iter().map(|(i, _)| *i));
            for (i, e) in r {
                bed.engine.run_effect(i, e).await;
            }
            bed.clock.advance(600);
        }
        assert_eq!(seen.len(), ids.len(), "every pending effect was handed out");
        let (_, dead) = bed.store.dead_effects(0).await.unwrap();
        assert_eq!(dead, 200);
    });
}
