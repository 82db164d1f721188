//! Amount, price and invoice checks shared by the step functions.

use crate::fees;
use crate::order::{Order, PayoutInvoice};
use crate::policy::Policy;
use crate::types::Sats;

use super::{Env, Reject};

/// Maximum length of the payment method field.
pub const MAX_PAYMENT_METHOD_LEN: usize = 500;

pub(super) fn check_limits(amount: Sats, p: &Policy) -> Result<(), Reject> {
    if amount < p.min_payment_amount || amount > p.max_order_amount {
        return Err(Reject::OutOfRangeSatsAmount);
    }
    Ok(())
}

pub(super) fn fresh_price(env: &Env<'_>) -> Result<f64, Reject> {
    match env.price {
        Some(pr) if env.now.since(pr.at) <= env.policy.max_price_age_secs => Ok(pr.fiat_per_btc),
        _ => Err(Reject::PriceTooStale),
    }
}

pub(super) fn quote(fiat: i64, premium: i64, env: &Env<'_>) -> Result<Sats, Reject> {
    let price = fresh_price(env)?;
    let sats = fees::market_quote(fiat, price, premium).ok_or(Reject::OutOfRangeSatsAmount)?;
    check_limits(sats, env.policy)?;
    Ok(sats)
}

pub(super) fn check_invoice(
    inv: &PayoutInvoice,
    expected: Sats,
    env: &Env<'_>,
) -> Result<(), Reject> {
    if let Some(a) = inv.amount
        && a != expected
    {
        return Err(Reject::InvalidInvoice);
    }
    if inv.expires_at < env.now.plus(env.policy.invoice_expiration_window_secs) {
        return Err(Reject::InvalidInvoice);
    }
    if inv.min_final_cltv >= env.policy.max_payout_cltv {
        // No route within the node's CLTV limit can reach it; a hostile invoice would pin the
        // node's outgoing HTLC for weeks.
        return Err(Reject::InvalidInvoice);
    }
    Ok(())
}

/// What the buyer receives.
pub(super) fn buyer_amount(o: &Order) -> Result<Sats, Reject> {
    o.amount.checked_sub(o.fee).ok_or(Reject::InvalidAmount)
}

/// What the seller locks.
pub(super) fn seller_amount(o: &Order) -> Result<Sats, Reject> {
    o.amount.checked_add(o.fee).ok_or(Reject::InvalidAmount)
}
