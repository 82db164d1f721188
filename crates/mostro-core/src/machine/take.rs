//! Taking an order and adding the buyer's invoice.

use crate::fees;
use crate::order::{Hold, HoldState, Kind, PayoutState, Role, Status};
use crate::types::{Preimage, Sats};

use super::checks::{buyer_amount, quote, seller_amount};
use super::escrow::activate;
use super::payout::start_payout;
use super::{Caller, Effect, Env, Notice, PayoutDest, Reject, Transition};

pub(super) fn take(
    t: &mut Transition,
    caller: &Caller,
    kind: Kind,
    fiat_amount: Option<i64>,
    invoice: Option<&PayoutDest>,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let o = &t.order;
    if o.kind != kind {
        return Err(Reject::InvalidOrderKind);
    }
    if o.status != Status::Pending || env.now >= o.expires_at {
        return Err(Reject::InvalidOrderStatus);
    }
    if caller.trade_key == o.maker.trade_key
        || (!o.maker.is_full_privacy() && caller.identity == o.maker.identity)
    {
        return Err(Reject::InvalidPubkey);
    }
    let fiat = match (o.min_amount, o.max_amount) {
        (Some(min), Some(max)) => match fiat_amount {
            Some(f) if f >= min && f <= max && f > 0 => f,
            _ => return Err(Reject::OutOfRangeSatsAmount),
        },
        _ => o.fiat_amount,
    };
    let (amount, fee) = if o.price_from_api || o.amount == Sats::ZERO {
        let a = quote(fiat, o.premium, env)?;
        (a, fees::party_fee(a, env.policy.fee_ppm))
    } else {
        (o.amount, o.fee)
    };
    if let Some(dest) = invoice {
        dest.check(amount.checked_sub(fee).ok_or(Reject::InvalidAmount)?, env)?;
    }
    let ord = &mut t.order;
    ord.fiat_amount = fiat;
    ord.amount = amount;
    ord.fee = fee;
    ord.taker = Some(caller.party());
    ord.taken_at = Some(env.now);
    if let Some(dest) = invoice {
        dest.apply(ord);
    }
    match kind {
        Kind::Sell if invoice.is_none() => {
            ord.status = Status::WaitingBuyerInvoice;
            ord.deadline = Some(env.now.plus(env.policy.waiting_step_secs));
            let snap = t.snapshot();
            t.tell_role(Role::Buyer, rid, Notice::AddInvoice(snap));
            t.tell_role(Role::Seller, None, Notice::WaitingBuyerInvoice);
            t.publish();
        },
        Kind::Sell | Kind::Buy => {
            request_hold(t, env, rid)?;
            t.publish();
        },
    }
    Ok(())
}

/// Moves to `waiting-payment` and asks the node for a hold invoice.
pub(super) fn request_hold(
    t: &mut Transition,
    env: &Env<'_>,
    rid: Option<u64>,
) -> Result<(), Reject> {
    let preimage = Preimage(env.derive(b"preimage"));
    let hash = preimage.hash();
    let amount = seller_amount(&t.order)?;
    let o = &mut t.order;
    o.status = Status::WaitingPayment;
    o.taken_at = Some(env.now);
    o.deadline = Some(env.now.plus(env.policy.waiting_step_secs));
    o.hold = Some(Hold {
        hash,
        preimage,
        amount,
        bolt11: None,
        state: HoldState::Requested,
        htlc_expiry: None,
        request_id: rid,
    });
    let memo = format!(
        "Escrow amount Order #{}: {} BTC for {} {} - it stays frozen until you release it",
        o.id,
        if o.kind == Kind::Sell { "SELL" } else { "BUY" },
        o.fiat_code,
        o.fiat_amount
    );
    t.effects.push(Effect::CreateHold {
        order_id: o.id,
        hash,
        amount,
        cltv_delta: env.policy.hold_cltv_delta,
        expiry_secs: env.policy.waiting_step_secs,
        memo,
    });
    Ok(())
}

pub(super) fn add_invoice(
    t: &mut Transition,
    role: Option<Role>,
    inv: &PayoutDest,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    if role != Some(Role::Buyer) {
        return Err(Reject::InvalidPeer);
    }
    let o = &t.order;
    match o.status {
        Status::WaitingBuyerInvoice => {
            inv.check(buyer_amount(o)?, env)?;
            let accepted = o
                .hold
                .as_ref()
                .is_some_and(|h| h.state == HoldState::Accepted);
            inv.apply(&mut t.order);
            if accepted {
                activate(t, rid);
            } else {
                request_hold(t, env, rid)?;
            }
            Ok(())
        },
        Status::SettledHoldInvoice => {
            let Some(p) = &o.payout else {
                return Err(Reject::NotAllowedByStatus);
            };
            if !matches!(p.state, PayoutState::Failed | PayoutState::NeedInvoice) {
                return Err(Reject::NotAllowedByStatus);
            }
            inv.check(buyer_amount(o)?, env)?;
            inv.apply(&mut t.order);
            if let Some(p) = &mut t.order.payout {
                // A new destination starts a new series of attempts.
                p.attempts = 0;
            }
            start_payout(t, env)?;
            t.tell_role(Role::Buyer, rid, Notice::InvoiceUpdated);
            Ok(())
        },
        _ => Err(Reject::NotAllowedByStatus),
    }
}
