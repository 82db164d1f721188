//! Cancel by a party, and the way back to `pending`.

use crate::order::{DisputeStatus, Kind, Role, Status};
use crate::types::{Sats, Timestamp};

use super::{Caller, Notice, Reject, Transition};

/// `taker_rid`: the taker's `cancel` request id when the taker asked (its direct answer).
pub(super) fn reset_to_pending(t: &mut Transition, now: Timestamp, taker_rid: Option<u64>) {
    let o = &mut t.order;
    let taker = o.taker.take();
    o.status = Status::Pending;
    o.taken_at = None;
    if let Some(h) = o.hold.take() {
        o.abandoned_holds.retain(|x| *x != h.hash);
        o.abandoned_holds.push(h.hash);
        let extra = o
            .abandoned_holds
            .len()
            .saturating_sub(crate::order::MAX_ABANDONED_HOLDS);
        o.abandoned_holds.drain(..extra);
    }
    o.payout = None;
    o.cancel_initiator = None;
    if o.kind == Kind::Sell {
        // The buyer was the taker: its invoice leaves with it.
        o.buyer_invoice = None;
    }
    if o.price_from_api {
        o.amount = Sats::ZERO;
        o.fee = Sats::ZERO;
    }
    if o.is_range() {
        o.fiat_amount = 0;
    }
    o.deadline = Some(o.expires_at.max(now));
    let snap = t.snapshot();
    if let Some(tk) = taker {
        t.tell(&tk, taker_rid, Notice::Canceled);
    }
    let maker = t.order.maker.clone();
    t.tell(&maker, None, Notice::NewOrder(snap));
    t.publish();
}

pub(super) fn cancel(
    t: &mut Transition,
    caller: &Caller,
    role: Option<Role>,
    rid: Option<u64>,
    now: Timestamp,
) -> Result<(), Reject> {
    let o = &t.order;
    let is_maker = caller.trade_key == o.maker.trade_key;
    match o.status {
        Status::Canceled | Status::CooperativelyCanceled | Status::CanceledByAdmin => {
            Err(Reject::OrderAlreadyCanceled)
        },
        Status::Pending => {
            if !is_maker {
                return Err(Reject::IsNotYourOrder);
            }
            t.order.status = Status::Canceled;
            t.order.deadline = None;
            let m = t.order.maker.clone();
            t.tell(&m, rid, Notice::Canceled);
            t.publish();
            Ok(())
        },
        Status::WaitingPayment | Status::WaitingBuyerInvoice => {
            if is_maker {
                t.cancel_hold();
                t.order.status = Status::Canceled;
                t.order.deadline = None;
                t.tell_both_answering(&Notice::Canceled, &caller.trade_key, rid);
                t.publish();
                Ok(())
            } else if role.is_some() {
                // The caller is the taker: the order goes back to the book.
                t.cancel_hold();
                reset_to_pending(t, now, rid);
                Ok(())
            } else {
                Err(Reject::InvalidPubkey)
            }
        },
        Status::Active | Status::FiatSent | Status::Dispute => {
            let Some(r) = role else {
                return Err(Reject::InvalidPubkey);
            };
            match o.cancel_initiator {
                None => {
                    t.order.cancel_initiator = Some(r);
                    t.tell_role(r, rid, Notice::CooperativeCancelInitiatedByYou);
                    t.tell_role(r.other(), None, Notice::CooperativeCancelInitiatedByPeer);
                    Ok(())
                },
                Some(first) if first == r => Err(Reject::InvalidPubkey),
                Some(_) => {
                    t.cancel_hold();
                    t.order.status = Status::CooperativelyCanceled;
                    t.order.deadline = None;
                    if let Some(d) = &mut t.order.dispute
                        && d.status.is_open()
                    {
                        d.status = DisputeStatus::CooperativelyCanceled;
                        // Closed by the parties: the solver who took it is told.
                        let solver = d.solver_party.clone();
                        t.publish_dispute();
                        if let Some(s) = solver {
                            t.tell(&s, None, Notice::CooperativeCancelAccepted);
                        }
                    }
                    t.tell_both_answering(
                        &Notice::CooperativeCancelAccepted,
                        &caller.trade_key,
                        rid,
                    );
                    t.publish();
                    Ok(())
                },
            }
        },
        _ => Err(Reject::NotAllowedByStatus),
    }
}
