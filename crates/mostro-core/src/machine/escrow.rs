//! The hold invoice (escrow): created, accepted, settled, canceled.

use crate::order::{DisputeStatus, HoldState, Role, Status};
use crate::types::{BlockHeight, PaymentHash};

use super::cancel::reset_to_pending;
use super::dispute::{open_dispute, opened_by_node};
use super::payout::start_payout;
use super::range::make_child;
use super::{Effect, Env, Notice, Reject, Transition, has_dest};

/// Escrow locked and buyer invoice known: the fiat leg starts. `buyer_rid` is the request id of
/// the buyer's `add-invoice` when that request is what completed the step (its direct answer).
pub(super) fn activate(t: &mut Transition, buyer_rid: Option<u64>) {
    t.order.status = Status::Active;
    t.order.deadline = None;
    let snap = t.snapshot();
    t.tell_role(Role::Seller, None, Notice::BuyerTookOrder(snap.clone()));
    t.tell_role(
        Role::Buyer,
        buyer_rid,
        Notice::HoldInvoicePaymentAccepted(snap),
    );
}

/// Asks the node to settle the hold. `rid` is the seller's `release` request id, kept on the
/// hold and echoed on the `hold-invoice-payment-settled` that answers it once the node settled.
pub(super) fn start_settle(t: &mut Transition, rid: Option<u64>) -> Result<(), Reject> {
    let Some(h) = &mut t.order.hold else {
        return Err(Reject::NotAllowedByStatus);
    };
    if h.state != HoldState::Accepted {
        return Err(Reject::NotAllowedByStatus);
    }
    h.state = HoldState::Settling;
    h.request_id = rid;
    let preimage = h.preimage;
    t.order.status = Status::SettledHoldInvoice;
    t.order.deadline = None;
    t.effects.push(Effect::SettleHold {
        order_id: t.order.id,
        preimage,
    });
    Ok(())
}

pub(super) fn hold_created(t: &mut Transition, hash: PaymentHash, bolt11: &str) {
    let o = &mut t.order;
    let current = o.hold.as_mut().filter(|h| h.hash == hash);
    match current {
        Some(h) if h.state == HoldState::Requested && o.status == Status::WaitingPayment => {
            h.state = HoldState::Open;
            h.bolt11 = Some(bolt11.to_owned());
            // These answer the take / add-invoice that asked for the hold: echo its id (as the
            // reference does, to both parties; mostro-cli requires it on the `pay-invoice`
            // that answers its `take-buy`).
            let rid = h.request_id;
            let snap = t.snapshot();
            t.tell_role(
                Role::Seller,
                rid,
                Notice::PayInvoice {
                    order: snap,
                    bolt11: bolt11.to_owned(),
                },
            );
            t.tell_role(Role::Buyer, rid, Notice::WaitingSellerToPay);
        },
        Some(h) if h.state == HoldState::Canceled => {
            // Created after we gave up on it: make sure it cannot be paid.
            t.effects.push(Effect::CancelHold {
                order_id: o.id,
                hash,
            });
        },
        Some(_) => {},
        None => {
            // A hold invoice this order no longer uses.
            t.effects.push(Effect::CancelHold {
                order_id: o.id,
                hash,
            });
        },
    }
}

pub(super) fn hold_create_failed(t: &mut Transition, hash: PaymentHash, env: &Env<'_>) {
    let o = &t.order;
    let ours = o
        .hold
        .as_ref()
        .is_some_and(|h| h.hash == hash && h.state == HoldState::Requested);
    if ours && o.status == Status::WaitingPayment {
        if let Some(h) = &mut t.order.hold {
            h.state = HoldState::Canceled;
        }
        reset_to_pending(t, env.now, None);
    }
}

pub(super) fn hold_accepted(
    t: &mut Transition,
    hash: PaymentHash,
    htlc_expiry: Option<BlockHeight>,
    env: &Env<'_>,
) {
    let o = &mut t.order;
    let Some(h) = o.hold.as_mut().filter(|h| h.hash == hash) else {
        t.effects.push(Effect::CancelHold {
            order_id: o.id,
            hash,
        });
        return;
    };
    match h.state {
        HoldState::Requested | HoldState::Open if o.status == Status::WaitingPayment => {
            h.state = HoldState::Accepted;
            h.htlc_expiry = htlc_expiry;
            if has_dest(o) {
                activate(t, None);
            } else {
                o.status = Status::WaitingBuyerInvoice;
                o.taken_at = Some(env.now);
                o.deadline = Some(env.now.plus(env.policy.waiting_step_secs));
                let snap = t.snapshot();
                t.tell_role(Role::Buyer, None, Notice::AddInvoice(snap));
                t.tell_role(Role::Seller, None, Notice::WaitingBuyerInvoice);
            }
        },
        HoldState::Settling => {
            if h.htlc_expiry.is_none() {
                h.htlc_expiry = htlc_expiry;
            }
            // We asked to settle but the node still holds the HTLC (the settle was lost, or
            // the node restarted before it took effect): ask again (settle is idempotent).
            let preimage = h.preimage;
            t.effects.push(Effect::SettleHold {
                order_id: o.id,
                preimage,
            });
        },
        HoldState::Accepted | HoldState::Settled => {
            if h.htlc_expiry.is_none() {
                h.htlc_expiry = htlc_expiry;
            }
        },
        HoldState::Requested | HoldState::Open | HoldState::Canceled => {
            // Paid after the order moved on: refund the seller.
            h.state = HoldState::Canceled;
            t.effects.push(Effect::CancelHold {
                order_id: o.id,
                hash,
            });
        },
    }
}

pub(super) fn hold_settled(
    t: &mut Transition,
    hash: PaymentHash,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let o = &mut t.order;
    let Some(h) = o.hold.as_mut().filter(|h| h.hash == hash) else {
        return Ok(());
    };
    if h.state != HoldState::Settling {
        return Ok(());
    }
    h.state = HoldState::Settled;
    let release_rid = h.request_id;
    let admin = o
        .dispute
        .as_ref()
        .is_some_and(|d| d.status == DisputeStatus::Settled);
    if !admin {
        t.tell_role(Role::Buyer, None, Notice::Released);
        t.tell_role(Role::Seller, release_rid, Notice::HoldInvoicePaymentSettled);
    }
    t.tell_role(Role::Seller, None, Notice::Rate);
    make_child(t, env);
    start_payout(t, env)
}

pub(super) fn hold_open(t: &mut Transition, hash: PaymentHash) {
    let o = &t.order;
    let gone = match &o.hold {
        Some(h) if h.hash == hash => h.state == HoldState::Canceled,
        _ => o.abandoned_holds.contains(&hash),
    };
    if gone {
        // We gave this invoice up but the node still offers it: make sure it cannot be paid.
        t.effects.push(Effect::CancelHold {
            order_id: o.id,
            hash,
        });
    }
}

pub(super) fn hold_canceled(t: &mut Transition, hash: PaymentHash, env: &Env<'_>) {
    let o = &mut t.order;
    let Some(h) = o.hold.as_mut().filter(|h| h.hash == hash) else {
        return;
    };
    let was = h.state;
    if was == HoldState::Settled {
        return;
    }
    h.state = HoldState::Canceled;
    if o.status.is_terminal() {
        return;
    }
    match (o.status, was) {
        (Status::WaitingPayment, HoldState::Requested | HoldState::Open) => {
            // The unpaid invoice expired on the node; the step timeout decides what happens.
        },
        (Status::WaitingBuyerInvoice | Status::Active, _)
        | (Status::SettledHoldInvoice, HoldState::Settling) => {
            o.status = Status::Canceled;
            o.deadline = None;
            t.tell_both(&Notice::HoldInvoicePaymentCanceled);
            t.publish();
        },
        (Status::FiatSent, _) => {
            t.tell_both(&Notice::HoldInvoicePaymentCanceled);
            open_dispute(t, Role::Buyer, None, env);
            opened_by_node(t, None);
        },
        (Status::Dispute, _) => {
            t.tell_both(&Notice::HoldInvoicePaymentCanceled);
        },
        _ => {},
    }
}
