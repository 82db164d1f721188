//! Timeouts and block heights.

use crate::order::{HoldState, PayoutState, Role, Status};
use crate::types::BlockHeight;

use super::cancel::reset_to_pending;
use super::dispute::{open_dispute, opened_by_node};
use super::payout::start_payout;
use super::{Env, Notice, Reject, Transition};

pub(super) fn timeout(t: &mut Transition, env: &Env<'_>) -> Result<(), Reject> {
    let o = &t.order;
    let Some(deadline) = o.deadline else {
        return Ok(());
    };
    if env.now < deadline {
        return Ok(());
    }
    if super::dev_fee::dev_fee_pending(t) {
        super::dev_fee::dev_fee_timeout(t, env);
        return Ok(());
    }
    if o.status.is_terminal() {
        return Ok(());
    }
    match o.status {
        Status::Pending => {
            t.order.status = Status::Expired;
            t.order.deadline = None;
            t.publish();
        },
        Status::WaitingBuyerInvoice | Status::WaitingPayment => {
            let late = if o.status == Status::WaitingBuyerInvoice {
                Role::Buyer
            } else {
                Role::Seller
            };
            let maker_late = late == o.kind.maker_role();
            t.cancel_hold();
            if maker_late {
                t.order.status = Status::Canceled;
                t.order.deadline = None;
                t.tell_both(&Notice::Canceled);
                t.publish();
            } else {
                reset_to_pending(t, env.now, None);
            }
        },
        Status::SettledHoldInvoice => {
            // In flight: ask the node for the hash's status (never a second `Pay`); failed or
            // resolving: the next attempt.
            let retry = o.payout.as_ref().is_some_and(|p| {
                matches!(
                    p.state,
                    PayoutState::Failed | PayoutState::InFlight | PayoutState::Resolving
                )
            });
            if retry {
                start_payout(t, env)?;
            } else {
                t.order.deadline = None;
            }
        },
        _ => {
            t.order.deadline = None;
        },
    }
    Ok(())
}

pub(super) fn block(t: &mut Transition, height: BlockHeight, env: &Env<'_>) {
    let o = &t.order;
    let Some(h) = &o.hold else { return };
    let Some(expiry) = h.htlc_expiry else { return };
    if h.state != HoldState::Accepted
        || height.plus(env.policy.escrow_deadline_margin_blocks) < expiry
    {
        return;
    }
    match o.status {
        Status::Active | Status::WaitingBuyerInvoice => {
            t.cancel_hold();
            t.order.status = Status::Canceled;
            t.order.deadline = None;
            t.tell_both(&Notice::Canceled);
            t.publish();
        },
        Status::FiatSent => {
            // As the reference does (protocol notes §9.8): a dispute on the buyer's behalf,
            // then a word to both that the node opened it, not the counterparty.
            open_dispute(t, Role::Buyer, None, env);
            opened_by_node(t, Some(expiry));
            warn_expiry(t, height, expiry);
        },
        Status::Dispute => warn_expiry(t, height, expiry),
        _ => {},
    }
}

/// The escrow of a disputed trade nears its expiry: once per dispute, the assigned solver is
/// told and the dispute event is republished with the expiry height (the engine also logs it
/// at error level and counts it for the operator).
pub(super) fn warn_expiry(t: &mut Transition, height: BlockHeight, expiry: BlockHeight) {
    let Some(d) = t.order.dispute.as_mut() else {
        return;
    };
    if d.expiry_warned || !d.status.is_open() {
        return;
    }
    d.expiry_warned = true;
    let dispute_id = d.id;
    if let Some(solver) = d.solver_party.clone() {
        t.tell(
            &solver,
            None,
            Notice::EscrowExpiring {
                dispute_id,
                height,
                expiry,
            },
        );
    }
    t.publish_dispute();
}
