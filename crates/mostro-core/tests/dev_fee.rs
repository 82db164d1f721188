//! The development fee: paid once, only after the buyer, audited, retried, never twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use futures::executor::block_on;
use mostro_core::engine::Action;
use mostro_core::fees;
use mostro_core::order::{DevFeeState, PayoutState, Status};
use mostro_core::policy::Policy;
use mostro_core::ports::Store;
use mostro_core::types::{OrderId, Sats};
use mostro_testkit::ledger::{AttemptStatus, NODE};
use mostro_testkit::{Faults, TestBed, Trader};

const DEV: &str = "devfund";

fn policy() -> Policy {
    Policy {
        dev_fee_ppm: 300_000,
        dev_fee_address: Some(format!("{DEV}@dev.example")),
        dev_fee_attempts: 3,
        ..Policy::default()
    }
}

/// A sell trade up to the release (not sent).
async fn fiat_sent(bed: &TestBed, seller: &Trader, buyer: &Trader) -> OrderId {
    let id = bed.active_sell(seller, buyer).await;
    bed.send(buyer, Some(id), Action::FiatSent { next_trade: None })
        .await;
    assert_eq!(bed.order(id).await.status, Status::FiatSent);
    id
}

/// Successful payments into the development wallet.
fn dev_payments(bed: &TestBed) -> Vec<Sats> {
    bed.ledger
        .all_attempts()
        .into_iter()
        .filter(|(h, a)| {
            matches!(a.status, AttemptStatus::Succeeded(_))
                && bed.ledger.invoice(h).is_some_and(|i| i.wallet == DEV)
        })
        .map(|(_, a)| a.amount)
        .collect()
}

#[test]
fn the_dev_fee_is_a_share_of_the_node_fee_rounded_half_up() {
    assert_eq!(fees::dev_fee(Sats(300), 300_000), Sats(180));
    assert_eq!(fees::dev_fee(Sats(1), 250_000), Sats(1), "0.5 rounds up");
    assert_eq!(fees::dev_fee(Sats(1), 200_000), Sats(0));
    assert_eq!(fees::dev_fee(Sats(300), 1_000_000), Sats(600), "all of it");
    assert_eq!(
        fees::dev_fee(Sats(300), u32::MAX),
        Sats(600),
        "never more than the node's fee"
    );
    assert_eq!(fees::dev_fee(Sats(300), 0), Sats(0));
}

#[test]
fn paid_once_after_the_buyer_and_audited() {
    block_on(async {
        let bed = TestBed::with_policy(policy());
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        // Nothing before the buyer is paid.
        assert!(bed.order(id).await.dev_fee.is_none());
        assert!(bed.resolver.calls().is_empty());
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::Succeeded);
        let d = o.dev_fee.clone().unwrap();
        assert_eq!(d.state, DevFeeState::Paid);
        assert_eq!(d.amount, Sats(180), "30 % of the node's 600 sat fee");
        assert_eq!(dev_payments(&bed), vec![Sats(180)]);
        assert_eq!(bed.ledger.balance(DEV), 180);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
        // Fees conserved: what the seller locked = the buyer's payout + the dev fee + what the
        // node keeps + the two routing fees.
        let routing = o.payout.as_ref().unwrap().routing_fee.0 + d.routing_fee.0;
        assert_eq!(
            bed.ledger.balance(NODE),
            i128::from(600 - 180 - routing),
            "node keeps its fee minus the dev fee and routing"
        );
        assert_eq!(o.deadline, None);
        // One audit event, for the paid hash.
        let audits = bed.transport.dev_fees();
        assert_eq!(audits.len(), 1);
        assert_eq!(audits[0].dev_fee.as_ref().unwrap().paid_hash, d.paid_hash);
        assert!(bed.store.pending_effects(100).await.unwrap().is_empty());
        // Time passing changes nothing.
        bed.advance(3600).await;
        assert_eq!(dev_payments(&bed), vec![Sats(180)]);
        assert_eq!(bed.resolver.calls().len(), 1);
    });
}

#[test]
fn no_dev_fee_when_the_trade_does_not_succeed_or_none_is_configured() {
    block_on(async {
        // Configured, but the trade is canceled cooperatively: nothing is paid.
        let bed = TestBed::with_policy(policy());
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        bed.send(&seller, Some(id), Action::Cancel).await;
        bed.send(&buyer, Some(id), Action::Cancel).await;
        assert_eq!(bed.order(id).await.status, Status::CooperativelyCanceled);
        assert!(bed.order(id).await.dev_fee.is_none());
        assert!(dev_payments(&bed).is_empty());
        // Not configured: a successful trade pays none.
        let bed = TestBed::new();
        let id = fiat_sent(&bed, &seller, &buyer).await;
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert!(o.dev_fee.is_none());
        assert!(bed.resolver.calls().is_empty());
    });
}

#[test]
fn failures_are_retried_then_given_up_without_touching_the_order() {
    block_on(async {
        let bed = TestBed::with_policy(policy());
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        // The address fails once, then the payment fails once: the third attempt pays.
        bed.resolver.fail_next(1);
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        let d = bed.order(id).await.dev_fee.unwrap();
        assert_eq!((d.state, d.attempts), (DevFeeState::Failed, 1));
        bed.ledger.set_faults(Faults {
            fail_payments: 1,
            ..Faults::default()
        });
        bed.advance(61).await;
        let d = bed.order(id).await.dev_fee.unwrap();
        assert_eq!((d.state, d.attempts), (DevFeeState::Failed, 2));
        assert!(dev_payments(&bed).is_empty());
        bed.advance(61).await;
        let o = bed.order(id).await;
        let d = o.dev_fee.unwrap();
        assert_eq!(d.state, DevFeeState::Paid);
        assert_eq!(d.previous.len(), 1, "the failed hash is kept");
        assert_eq!(dev_payments(&bed), vec![Sats(180)]);
        assert_eq!(o.status, Status::Success);

        // An address that never works: given up after the configured attempts.
        let bed = TestBed::with_policy(policy());
        let id = fiat_sent(&bed, &seller, &buyer).await;
        bed.resolver.fail_next(100);
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        for _ in 0..5 {
            bed.advance(61).await;
        }
        let o = bed.order(id).await;
        let d = o.dev_fee.unwrap();
        assert_eq!((d.state, d.attempts), (DevFeeState::GaveUp, 3));
        assert_eq!(bed.resolver.calls().len(), 3);
        assert_eq!(o.status, Status::Success);
        assert_eq!(o.deadline, None);
        assert!(bed.transport.dev_fees().is_empty());
        assert!(bed.store.pending_effects(100).await.unwrap().is_empty());
    });
}

#[test]
fn an_ambiguous_payment_across_a_restart_is_asked_about_never_sent_again() {
    block_on(async {
        let mut bed = TestBed::with_policy(policy());
        let (seller, buyer) = (Trader::new("seller"), Trader::new("buyer"));
        let id = fiat_sent(&bed, &seller, &buyer).await;
        // The buyer is paid; the dev fee's first resolution fails, so its payment starts at the
        // next deadline, and then hangs in flight.
        bed.resolver.fail_next(1);
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
        bed.ledger.set_faults(Faults {
            hang_payments: true,
            ..Faults::default()
        });
        bed.advance(61).await;
        let d = bed.order(id).await.dev_fee.unwrap();
        assert_eq!(d.state, DevFeeState::InFlight, "{d:?}");
        let hash = d.hash.unwrap();
        // The process dies and comes back; deadlines pass while the payment still hangs: the
        // node is asked, nothing is sent again, no new invoice is fetched.
        bed.restart();
        let _ = bed.engine.reconcile().await;
        bed.pump().await;
        for _ in 0..3 {
            bed.advance(61).await;
        }
        let d = bed.order(id).await.dev_fee.unwrap();
        assert_eq!(d.state, DevFeeState::InFlight);
        assert_eq!(d.hash, Some(hash));
        let attempts: Vec<_> = bed
            .ledger
            .all_attempts()
            .into_iter()
            .filter(|(h, _)| *h == hash)
            .collect();
        assert_eq!(attempts.len(), 1, "one attempt only");
        assert_eq!(bed.resolver.calls().len(), 2);
        // The node finishes it: recorded as paid, audited once, one payment in all.
        bed.ledger.finish_hung(false);
        bed.advance(61).await;
        let d = bed.order(id).await.dev_fee.unwrap();
        assert_eq!(d.state, DevFeeState::Paid);
        assert_eq!(d.paid_hash, Some(hash));
        assert_eq!(dev_payments(&bed), vec![Sats(180)]);
        assert_eq!(bed.transport.dev_fees().len(), 1);
        assert!(bed.store.pending_effects(100).await.unwrap().is_empty());
    });
}
