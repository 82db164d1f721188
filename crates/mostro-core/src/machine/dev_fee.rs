//! The development fee: after the buyer was paid, a share of the node's fee goes to a configured
//! Lightning address, at most once per order, across restarts and ambiguous node answers.
//!
//! It follows the payout rule of the buyer's payout (`payout.rs`): the outcome of an attempt is
//! the node's record for its hash; a new invoice is fetched only after the node confirmed the
//! current attempt failed (a timeout while in flight only asks the node, never pays again); the
//! resolved invoice is committed before anything is paid, so resolving again can never pay twice.

use crate::fees;
use crate::order::{DevFee, DevFeeState, PayoutInvoice, Status};
use crate::types::{PaymentHash, Sats};

use super::{Effect, Env, PayOutcome, Transition};

/// The buyer was just paid: starts the development fee when one is configured.
pub(super) fn start_dev_fee(t: &mut Transition, env: &Env<'_>) {
    let p = env.policy;
    let Some(address) = p.dev_fee_address.clone() else {
        return;
    };
    let amount = fees::dev_fee(t.order.fee, p.dev_fee_ppm);
    if p.dev_fee_ppm == 0 || amount == Sats::ZERO || t.order.dev_fee.is_some() {
        return;
    }
    t.order.dev_fee = Some(DevFee {
        amount,
        address: address.clone(),
        state: DevFeeState::Resolving,
        invoice: None,
        hash: None,
        previous: Vec::new(),
        attempts: 0,
        checking: false,
        paid_hash: None,
        routing_fee: Sats::ZERO,
        duplicates: Vec::new(),
    });
    t.order.deadline = Some(env.now.plus(p.payment_retry_secs));
    t.effects.push(Effect::ResolveDevFee {
        order_id: t.order.id,
        address,
        amount,
    });
}

/// Whether the development fee has work left (the order's deadline belongs to it).
pub(super) fn dev_fee_pending(t: &Transition) -> bool {
    t.order.status == Status::Success
        && t.order.dev_fee.as_ref().is_some_and(|d| {
            matches!(
                d.state,
                DevFeeState::Resolving | DevFeeState::InFlight | DevFeeState::Failed
            )
        })
}

/// The order's deadline passed with the development fee unfinished: in flight, ask the node
/// (never a second `Pay`); resolving or failed, the next attempt.
pub(super) fn dev_fee_timeout(t: &mut Transition, env: &Env<'_>) {
    let order_id = t.order.id;
    let retry = env.now.plus(env.policy.payment_retry_secs);
    let Some(d) = t.order.dev_fee.as_mut() else {
        return;
    };
    match d.state {
        DevFeeState::InFlight => {
            if let (Some(hash), false) = (d.hash, d.checking) {
                d.checking = true;
                t.effects.push(Effect::CheckPayment { order_id, hash });
            }
            t.order.deadline = Some(retry);
        },
        DevFeeState::Resolving | DevFeeState::Failed => {
            // Nothing is in flight: the old hash (if any) was confirmed failed or never sent.
            if let Some(h) = d.hash.take()
                && !d.previous.contains(&h)
            {
                d.previous.push(h);
            }
            d.invoice = None;
            d.state = DevFeeState::Resolving;
            t.effects.push(Effect::ResolveDevFee {
                order_id,
                address: d.address.clone(),
                amount: d.amount,
            });
            t.order.deadline = Some(retry);
        },
        DevFeeState::Paid | DevFeeState::GaveUp => t.order.deadline = None,
    }
}

/// An attempt failed for good (the node confirmed it, or the address did not resolve): retry a
/// retry interval later, or give up after the last attempt.
fn dev_fee_failed(t: &mut Transition, env: &Env<'_>) {
    let Some(d) = t.order.dev_fee.as_mut() else {
        return;
    };
    d.attempts = d.attempts.saturating_add(1);
    if d.attempts >= env.policy.dev_fee_attempts.max(1) {
        d.state = DevFeeState::GaveUp;
        t.order.deadline = None;
    } else {
        d.state = DevFeeState::Failed;
        t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
    }
}

/// The address gave this invoice: checked, committed, and only then paid.
pub(super) fn dev_fee_resolved(t: &mut Transition, inv: &PayoutInvoice, env: &Env<'_>) {
    let ok = t.order.status == Status::Success
        && t.order
            .dev_fee
            .as_ref()
            .is_some_and(|d| d.state == DevFeeState::Resolving);
    if !ok {
        return;
    }
    let order_id = t.order.id;
    let Some(d) = t.order.dev_fee.as_mut() else {
        return;
    };
    if inv.amount != Some(d.amount) || inv.expires_at <= env.now || d.knows(&inv.hash) {
        dev_fee_failed(t, env);
        return;
    }
    d.invoice = Some(inv.bolt11.clone());
    d.hash = Some(inv.hash);
    d.state = DevFeeState::InFlight;
    d.checking = false;
    let amount = d.amount;
    t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
    t.effects.push(Effect::Pay {
        order_id,
        hash: inv.hash,
        invoice: inv.bolt11.clone(),
        amount,
        fee_limit: fees::routing_fee_cap(amount, env.policy.max_routing_fee_ppm),
    });
}

/// The address could not be resolved.
pub(super) fn dev_fee_resolve_failed(t: &mut Transition, env: &Env<'_>) {
    let resolving = t.order.status == Status::Success
        && t.order
            .dev_fee
            .as_ref()
            .is_some_and(|d| d.state == DevFeeState::Resolving);
    if resolving {
        dev_fee_failed(t, env);
    }
}

/// Whether `hash` belongs to the order's development fee (not to the buyer's payout).
pub(super) fn is_dev_fee_hash(t: &Transition, hash: &PaymentHash) -> bool {
    t.order.dev_fee.as_ref().is_some_and(|d| d.knows(hash))
}

/// What the node says of one of the development fee's hashes.
pub(super) fn dev_fee_pay_result(
    t: &mut Transition,
    hash: PaymentHash,
    outcome: &PayOutcome,
    env: &Env<'_>,
) {
    let order_id = t.order.id;
    let Some(d) = t.order.dev_fee.as_mut() else {
        return;
    };
    if d.hash == Some(hash) {
        d.checking = false;
    }
    if let PayOutcome::Succeeded { fee } = outcome {
        match d.state {
            DevFeeState::Paid => {
                let paid = d.paid_hash.or(d.hash);
                if paid != Some(hash) && !d.duplicates.contains(&hash) {
                    d.duplicates.push(hash);
                }
            },
            _ => {
                // Whichever of its hashes it is, the node paid it: recorded, and final.
                d.state = DevFeeState::Paid;
                d.paid_hash = Some(hash);
                d.routing_fee = *fee;
                t.order.deadline = None;
                t.effects.push(Effect::PublishDevFee { order_id });
            },
        }
        return;
    }
    if d.hash != Some(hash) || d.state != DevFeeState::InFlight {
        // Nothing to learn from a non-success on an earlier hash or after it ended.
        return;
    }
    match outcome {
        PayOutcome::Failed { .. } => dev_fee_failed(t, env),
        PayOutcome::InFlight | PayOutcome::Unknown { .. } => {
            t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
        },
        PayOutcome::Succeeded { .. } => {},
    }
}
