//! Creating an order (the maker's request).

use crate::fees;
use crate::order::{Kind, Order, Status};
use crate::types::{Sats, Timestamp};

use super::checks::{MAX_PAYMENT_METHOD_LEN, check_invoice, check_limits, quote};
use super::{Caller, Effect, Env, NewOrder, Notice, Notify, PayoutDest, Reject, Transition};

/// Creates a new order (§9.1). The caller is the maker.
pub fn new_order(caller: &Caller, req: &NewOrder, env: &Env<'_>) -> Result<Transition, Reject> {
    let p = env.policy;
    if !p.accepts_fiat(&req.fiat_code) {
        return Err(Reject::InvalidFiatCurrency);
    }
    if req.fiat_code.is_empty() || req.fiat_code.len() > 10 {
        return Err(Reject::InvalidFiatCurrency);
    }
    if req.payment_method.trim().is_empty() || req.payment_method.len() > MAX_PAYMENT_METHOD_LEN {
        return Err(Reject::InvalidParameters);
    }
    if req.amount < 0 || req.fiat_amount < 0 {
        return Err(Reject::InvalidAmount);
    }
    let range = match (req.min_amount, req.max_amount) {
        (Some(min), Some(max)) => {
            if min < 0 || min >= max || req.amount != 0 {
                return Err(Reject::InvalidAmount);
            }
            Some((min, max))
        },
        (None, None) => {
            if req.fiat_amount <= 0 {
                return Err(Reject::InvalidAmount);
            }
            None
        },
        _ => return Err(Reject::InvalidAmount),
    };
    if req.amount != 0 && req.premium != 0 {
        return Err(Reject::InvalidParameters);
    }
    if !(-100..=100).contains(&req.premium) {
        return Err(Reject::InvalidParameters);
    }
    let amount = Sats(u64::try_from(req.amount).map_err(|_| Reject::InvalidAmount)?);
    let fee = if amount == Sats::ZERO {
        match range {
            Some((min, max)) => {
                quote(min, req.premium, env)?;
                quote(max, req.premium, env)?;
            },
            None => {
                quote(req.fiat_amount, req.premium, env)?;
            },
        }
        Sats::ZERO
    } else {
        check_limits(amount, p)?;
        fees::party_fee(amount, p.fee_ppm)
    };
    let (buyer_invoice, buyer_address) = match (&req.buyer_invoice, req.kind) {
        (Some(PayoutDest::Address(a)), Kind::Buy) => (None, Some(a.clone())),
        (Some(PayoutDest::Invoice(inv)), Kind::Buy) => {
            if amount == Sats::ZERO {
                // The amount is only known at take time: only an amountless invoice can match.
                if inv.amount.is_some() {
                    return Err(Reject::InvalidInvoice);
                }
                check_invoice(inv, Sats::ZERO, env)?;
            } else {
                check_invoice(
                    inv,
                    amount.checked_sub(fee).ok_or(Reject::InvalidAmount)?,
                    env,
                )?;
            }
            (Some(inv.clone()), None)
        },
        (Some(_), Kind::Sell) => return Err(Reject::InvalidParameters),
        (None, _) => (None, None),
    };
    let expires_at = match req.expires_at {
        Some(t) if t > 0 && u64::try_from(t).is_ok_and(|t| t > env.now.0) => {
            let t = u64::try_from(t).unwrap_or(0);
            Timestamp(t.min(env.now.plus(p.max_expiration_secs).0))
        },
        _ => env.now.plus(p.pending_expiration_secs),
    };
    let order = Order {
        id: env.derive_id(b"order"),
        version: 0,
        kind: req.kind,
        status: Status::Pending,
        fiat_code: req.fiat_code.clone(),
        fiat_amount: if range.is_some() { 0 } else { req.fiat_amount },
        min_amount: range.map(|r| r.0),
        max_amount: range.map(|r| r.1),
        amount,
        premium: req.premium,
        price_from_api: amount == Sats::ZERO,
        payment_method: req.payment_method.clone(),
        fee,
        created_at: env.now,
        expires_at,
        taken_at: None,
        maker: caller.party(),
        taker: None,
        buyer_invoice,
        buyer_address,
        hold: None,
        payout: None,
        cancel_initiator: None,
        dispute: None,
        buyer_rated: false,
        seller_rated: false,
        next_trade: None,
        range_parent: None,
        abandoned_holds: Vec::new(),
        deadline: Some(expires_at),
        dev_fee: None,
    };
    let mut t = Transition::new(order);
    let snap = t.snapshot();
    let maker = t.order.maker.clone();
    t.effects.push(Effect::Notify(Notify {
        to: maker.trade_key,
        protocol: maker.protocol,
        request_id: None,
        order_id: Some(t.order.id),
        trade_index: Some(maker.trade_index),
        notice: Notice::NewOrder(snap),
    }));
    t.publish();
    Ok(t)
}
