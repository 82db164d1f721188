//! Paying the buyer once the hold is settled.

use crate::fees;
use crate::order::{Payout, PayoutInvoice, PayoutState, Role, Status};
use crate::types::{PaymentHash, Sats};

use super::checks::buyer_amount;
use super::{Effect, Env, Notice, PayOutcome, Reject, Transition};

/// Starts (or retries) the buyer payout.
///
/// The payout rule: a payment hash's outcome is known only from the node's status for that
/// hash. A new destination (a new invoice, a fresh Lightning-address resolution) is taken only
/// when the current one is not in flight, which the callers guarantee: they reach here from
/// `Failed` / `NeedInvoice` (the node confirmed every attempt failed), `Resolving` or a first
/// payout. The hashes left behind are kept in `previous`.
pub(super) fn start_payout(t: &mut Transition, env: &Env<'_>) -> Result<(), Reject> {
    let amount = buyer_amount(&t.order)?;
    let old = t.order.payout.clone();
    if let Some(p) = &old
        && p.state == PayoutState::InFlight
    {
        // Never switch away from (or re-send) a hash whose outcome is not known: ask the node.
        if !p.checking {
            let hash = p.hash;
            if let Some(p) = &mut t.order.payout {
                p.checking = true;
            }
            t.effects.push(Effect::CheckPayment {
                order_id: t.order.id,
                hash,
            });
        }
        t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
        return Ok(());
    }
    let mut previous = old.as_ref().map(|p| p.previous.clone()).unwrap_or_default();
    let duplicates = old
        .as_ref()
        .map(|p| p.duplicates.clone())
        .unwrap_or_default();
    let remember = |previous: &mut Vec<PaymentHash>, h: PaymentHash, next: Option<PaymentHash>| {
        if h != PaymentHash([0; 32]) && Some(h) != next && !previous.contains(&h) {
            previous.push(h);
        }
    };
    if let (None, Some(address)) = (&t.order.buyer_invoice, t.order.buyer_address.clone()) {
        // A Lightning address: get an invoice for the exact amount first. Nothing is paid until
        // the resolved invoice is committed, so a re-resolution can never pay twice.
        let attempts = old.as_ref().map_or(0, |p| p.attempts);
        if let Some(p) = &old {
            remember(&mut previous, p.hash, None);
        }
        t.order.payout = Some(Payout {
            invoice: address.clone(),
            hash: PaymentHash([0; 32]),
            amount,
            attempts,
            state: PayoutState::Resolving,
            routing_fee: Sats::ZERO,
            previous,
            checking: false,
            paid_hash: None,
            duplicates,
        });
        t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
        t.effects.push(Effect::ResolvePayout {
            order_id: t.order.id,
            address,
            amount,
        });
        return Ok(());
    }
    let Some(inv) = t.order.buyer_invoice.clone() else {
        // Cannot happen for an order that reached settle; ask the buyer rather than stall.
        let snap = t.snapshot();
        t.tell_role(Role::Buyer, None, Notice::AddInvoice(snap));
        return Ok(());
    };
    let attempts = match &old {
        Some(p) if p.hash == inv.hash || p.state == PayoutState::Resolving => p.attempts,
        _ => 0,
    };
    if let Some(p) = &old {
        remember(&mut previous, p.hash, Some(inv.hash));
    }
    t.order.payout = Some(Payout {
        invoice: inv.bolt11.clone(),
        hash: inv.hash,
        amount,
        attempts,
        state: PayoutState::InFlight,
        routing_fee: Sats::ZERO,
        previous,
        checking: false,
        paid_hash: None,
        duplicates,
    });
    t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
    t.effects.push(Effect::Pay {
        order_id: t.order.id,
        hash: inv.hash,
        invoice: inv.bolt11,
        amount,
        fee_limit: fees::routing_fee_cap(amount, env.policy.max_routing_fee_ppm),
    });
    Ok(())
}

pub(super) fn pay_result(
    t: &mut Transition,
    hash: PaymentHash,
    outcome: &PayOutcome,
    env: &Env<'_>,
) -> Result<(), Reject> {
    if super::dev_fee::is_dev_fee_hash(t, &hash) {
        super::dev_fee::dev_fee_pay_result(t, hash, outcome, env);
        return Ok(());
    }
    let o = &mut t.order;
    let Some(p) = o.payout.as_mut() else {
        return Ok(());
    };
    if !p.knows(&hash) {
        return Ok(());
    }
    if hash == p.hash {
        p.checking = false;
    }
    if let PayOutcome::Succeeded { fee } = outcome {
        match o.status {
            Status::SettledHoldInvoice => {
                // Every success the node reports is recorded, whichever hash of the order it is
                // for (a success on an earlier hash is an alarm, counted by the engine).
                let current = p.hash;
                let was_in_flight = p.state == PayoutState::InFlight;
                p.state = PayoutState::Succeeded;
                p.routing_fee = *fee;
                p.paid_hash = Some(hash);
                o.status = Status::Success;
                o.deadline = None;
                if hash != current && was_in_flight {
                    // The current attempt may still land: find out, so a duplicate is recorded.
                    t.effects.push(Effect::CheckPayment {
                        order_id: t.order.id,
                        hash: current,
                    });
                }
                t.tell_role(Role::Buyer, None, Notice::PurchaseCompleted);
                t.tell_role(Role::Buyer, None, Notice::Rate);
                t.publish();
                // Only now, with the buyer paid: the development fee, if one is configured.
                super::dev_fee::start_dev_fee(t, env);
            },
            Status::Success => {
                let paid = p.paid_hash.unwrap_or(p.hash);
                if hash != paid && !p.duplicates.contains(&hash) {
                    p.duplicates.push(hash);
                }
            },
            _ => {},
        }
        return Ok(());
    }
    if o.status != Status::SettledHoldInvoice || hash != p.hash {
        // Nothing to learn from a non-success on an earlier hash or after the payout ended.
        return Ok(());
    }
    match outcome {
        PayOutcome::InFlight | PayOutcome::Unknown { .. } => {
            if matches!(outcome, PayOutcome::InFlight)
                && matches!(p.state, PayoutState::Failed | PayoutState::NeedInvoice)
            {
                // The node says an attempt is pending: it is authoritative.
                p.state = PayoutState::InFlight;
            }
            if p.state == PayoutState::InFlight {
                o.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
            }
        },
        PayOutcome::Failed { .. } => {
            if p.state == PayoutState::InFlight {
                payout_failed(t, env);
            }
        },
        PayOutcome::Succeeded { .. } => {},
    }
    Ok(())
}

/// A payout attempt (or the resolution of a Lightning address) failed: retry later, or after the
/// last attempt ask the buyer for a new invoice.
pub(super) fn payout_failed(t: &mut Transition, env: &Env<'_>) {
    let Some(p) = t.order.payout.as_mut() else {
        return;
    };
    p.attempts = p.attempts.saturating_add(1);
    let attempts = p.attempts;
    let max = env.policy.payment_attempts.max(1);
    if attempts == 1 && max > 1 {
        let left = max.saturating_sub(1);
        let retry_secs = env.policy.payment_retry_secs;
        t.tell_role(
            Role::Buyer,
            None,
            Notice::PaymentFailed {
                attempts: left,
                retry_secs,
            },
        );
    }
    let o = &mut t.order;
    if o.buyer_address.is_some() {
        // Resolve the address again next time: its invoice may have expired.
        o.buyer_invoice = None;
    }
    let Some(p) = o.payout.as_mut() else { return };
    if attempts >= max {
        p.state = PayoutState::NeedInvoice;
        o.deadline = None;
        let snap = t.snapshot();
        t.tell_role(Role::Buyer, None, Notice::AddInvoice(snap));
    } else {
        p.state = PayoutState::Failed;
        o.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
    }
}

pub(super) fn payout_resolved(
    t: &mut Transition,
    inv: &PayoutInvoice,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let o = &t.order;
    let resolving = o
        .payout
        .as_ref()
        .is_some_and(|p| p.state == PayoutState::Resolving);
    if o.status != Status::SettledHoldInvoice || !resolving || o.buyer_address.is_none() {
        return Ok(());
    }
    let expected = buyer_amount(o)?;
    if inv.amount != Some(expected) || inv.expires_at <= env.now {
        payout_failed(t, env);
        return Ok(());
    }
    t.order.buyer_invoice = Some(inv.clone());
    start_payout(t, env)
}
