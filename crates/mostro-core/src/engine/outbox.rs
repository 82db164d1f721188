//! The outbox: running committed effects, marking them done, retrying and backing off.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use tracing::{debug, error, warn};

use crate::machine::{Effect, Input, PayOutcome};
use crate::order::PayoutState;
use crate::ports::{
    Commit, EffectId, HoldInvoiceRequest, HoldInvoiceState, LnErrorKind, PayRequest, PaymentStatus,
    StoreError,
};
use crate::types::PaymentHash;

use super::{Engine, EngineError, Lane, MAX_MESSAGE_BACKOFF_SECS, Queue, lock};

impl Engine {
    pub(super) async fn complete(&self, done: Vec<EffectId>) -> Result<Queue, EngineError> {
        if done.is_empty() {
            return Ok(Queue::new());
        }
        Ok(self
            .commit(Commit {
                done,
                ..Commit::at(self.ports.clock.now())
            })
            .await?)
    }

    /// Runs effects and whatever effects their results cause, until none is left. Effects that
    /// fail transiently stay pending in the outbox for [`Engine::resume`].
    ///
    /// A run of consecutive message effects (direct messages, public events) is sent
    /// concurrently, one lane per recipient so that one recipient's messages keep their order,
    /// and the whole run is marked done in a single store commit. Lightning effects run one at a
    /// time, in order.
    pub(super) async fn run_queue(&self, mut queue: Queue) {
        loop {
            let mut group: Vec<(EffectId, Effect)> = Vec::new();
            while let Some((_, e)) = queue.front() {
                if !is_message(e) {
                    break;
                }
                if let Some(x) = queue.pop_front() {
                    group.push(x);
                }
            }
            if !group.is_empty() {
                self.send_group(group).await;
                continue;
            }
            let Some((id, effect)) = queue.pop_front() else {
                break;
            };
            let r = self.execute(id, &effect).await;
            self.claimed().remove(&id);
            match r {
                Ok(more) => queue.extend(more),
                Err(e) => warn!(effect = ?id, error = %e, "effect left pending"),
            }
        }
    }

    /// Sends message effects concurrently (sequentially per recipient), then marks the ones that
    /// went out done (and the undeliverable ones dead) in one commit. Failed ones stay pending
    /// for [`Engine::resume`], with a growing pause.
    pub(super) async fn send_group(&self, group: Vec<(EffectId, Effect)>) {
        let ids: Vec<EffectId> = group.iter().map(|(id, _)| *id).collect();
        let mut lanes: Vec<Lane> = Vec::new();
        for (id, e) in group {
            let key = match &e {
                Effect::Notify(n) => Some(n.to),
                _ => None,
            };
            match lanes.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push((id, e)),
                None => lanes.push((key, vec![(id, e)])),
            }
        }
        let runs = lanes.into_iter().map(|(_, lane)| async move {
            let mut ok = Vec::new();
            let mut dead = Vec::new();
            for (id, e) in lane {
                match self.send_message(&e).await {
                    Ok(()) => ok.push(id),
                    Err(EffectFailed::Dead(reason)) => {
                        error!(effect = ?id, %reason, "undeliverable message dead-lettered");
                        dead.push((id, reason));
                    },
                    Err(err) => {
                        self.note_failure(id);
                        warn!(effect = ?id, error = %err, "effect left pending");
                    },
                }
            }
            (ok, dead)
        });
        let mut done = Vec::new();
        let mut dead = Vec::new();
        for (o, d) in futures::future::join_all(runs).await {
            done.extend(o);
            dead.extend(d);
        }
        if let Err(e) = self.finish(done.clone(), dead).await {
            warn!(error = %e, "sent messages not marked done; they are sent again on resume");
        }
        {
            let mut b = lock(&self.backoff);
            for id in &done {
                b.remove(id);
            }
        }
        let mut claimed = self.claimed();
        for id in ids {
            claimed.remove(&id);
        }
    }

    /// Marks effects done and dead-letters the undeliverable ones, in one commit.
    pub(super) async fn finish(
        &self,
        done: Vec<EffectId>,
        dead: Vec<(EffectId, String)>,
    ) -> Result<(), EngineError> {
        if done.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let n = dead.len() as u64;
        self.commit(Commit {
            done,
            dead,
            ..Commit::at(self.ports.clock.now())
        })
        .await?;
        self.alarms.dead_letters.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn note_failure(&self, id: EffectId) {
        let now = self.ports.clock.now();
        let mut b = lock(&self.backoff);
        let e = b.entry(id).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        let pause = 5u64
            .saturating_mul(1u64 << e.0.min(10))
            .min(MAX_MESSAGE_BACKOFF_SECS);
        e.1 = now.plus(pause);
    }

    /// Sends one message effect (no store write).
    pub(super) async fn send_message(&self, effect: &Effect) -> Result<(), EffectFailed> {
        let transport = |e: crate::ports::TransportError| {
            if e.permanent {
                EffectFailed::Dead(e.message)
            } else {
                EffectFailed::Transport(e.message)
            }
        };
        match effect {
            Effect::Notify(n) => {
                if !n.to.is_on_curve() {
                    return Err(EffectFailed::Dead(format!(
                        "recipient {} is not a valid public key",
                        n.to
                    )));
                }
                self.ports.transport.send(n).await.map_err(transport)
            },
            Effect::PublishDevFee { order_id } => {
                let order = self
                    .ports
                    .store
                    .order(*order_id)
                    .await
                    .map_err(EngineError::from)?;
                if let Some(o) = order.filter(|o| {
                    o.dev_fee
                        .as_ref()
                        .is_some_and(|d| d.state == crate::order::DevFeeState::Paid)
                }) {
                    self.ports
                        .transport
                        .publish_dev_fee(&o)
                        .await
                        .map_err(transport)?;
                }
                Ok(())
            },
            Effect::PublishOrder { order_id } | Effect::PublishDispute { order_id } => {
                if let Some(o) = self
                    .ports
                    .store
                    .order(*order_id)
                    .await
                    .map_err(EngineError::from)?
                {
                    let r = if matches!(effect, Effect::PublishOrder { .. }) {
                        self.ports.transport.publish_order(&o).await
                    } else {
                        self.ports.transport.publish_dispute(&o).await
                    };
                    r.map_err(transport)?;
                }
                Ok(())
            },
            Effect::PublishRating {
                identity,
                trade_key,
                ..
            } => {
                if let Some(u) = self
                    .ports
                    .store
                    .user(identity)
                    .await
                    .map_err(EngineError::from)?
                {
                    self.ports
                        .transport
                        .publish_rating(trade_key, &u)
                        .await
                        .map_err(transport)?;
                }
                Ok(())
            },
            Effect::CreateHold { .. }
            | Effect::SettleHold { .. }
            | Effect::CancelHold { .. }
            | Effect::Pay { .. }
            | Effect::CheckPayment { .. }
            | Effect::ResolvePayout { .. }
            | Effect::ResolveDevFee { .. } => Ok(()),
        }
    }

    /// Runs one pending outbox effect (and what its result causes) unless another task of this
    /// engine already runs it or it is no longer pending. Drivers use it to retry effects
    /// concurrently.
    pub async fn run_effect(&self, id: EffectId, effect: Effect) {
        if !self.claimed().insert(id) {
            return;
        }
        // The outbox row was read before the claim: another task may have finished it since.
        match self.ports.store.effect_pending(id).await {
            Ok(true) => {},
            Ok(false) => {
                self.claimed().remove(&id);
                return;
            },
            Err(e) => {
                self.claimed().remove(&id);
                warn!(effect = ?id, error = %e, "outbox read failed; effect left pending");
                return;
            },
        }
        self.run_queue(Queue::from([(id, effect)])).await;
    }

    /// Executes one effect. `Ok` means it was completed (its id marked done); `Err` leaves it
    /// pending.
    pub(super) async fn execute(
        &self,
        id: EffectId,
        effect: &Effect,
    ) -> Result<Queue, EffectFailed> {
        let node = &self.ports.node;
        match effect {
            Effect::CreateHold {
                order_id,
                hash,
                amount,
                cltv_delta,
                expiry_secs,
                memo,
            } => {
                let req = HoldInvoiceRequest {
                    hash: *hash,
                    amount: *amount,
                    expiry_secs: *expiry_secs,
                    cltv_delta: *cltv_delta,
                    memo: memo.clone(),
                };
                let input = match node.create_hold_invoice(&req).await {
                    Ok(bolt11) => Input::HoldCreated {
                        hash: *hash,
                        bolt11,
                    },
                    Err(e) if e.is_transient() => return Err(EffectFailed::Ln(e.to_string())),
                    Err(e) => {
                        warn!(order_id = %order_id, error = %e, "hold invoice refused");
                        Input::HoldCreateFailed { hash: *hash }
                    },
                };
                Ok(self.apply(*order_id, &input, vec![id]).await?)
            },
            Effect::SettleHold { order_id, preimage } => {
                let hash = preimage.hash();
                let input = match node.settle_hold_invoice(preimage).await {
                    Ok(()) => Input::HoldSettled { hash },
                    Err(e) if e.is_transient() => return Err(EffectFailed::Ln(e.to_string())),
                    Err(e) if e.kind == LnErrorKind::AlreadyCanceled => {
                        warn!(order_id = %order_id, error = %e, "settle impossible: hold canceled");
                        Input::HoldCanceled { hash }
                    },
                    Err(e) => {
                        // Anything else (including "not found" while the node starts): the
                        // settle is retried; the hold's real state is read back from the node.
                        return Err(EffectFailed::Ln(e.to_string()));
                    },
                };
                Ok(self.apply(*order_id, &input, vec![id]).await?)
            },
            Effect::CancelHold { order_id, hash } => match node.cancel_hold_invoice(hash).await {
                Ok(()) => Ok(self.complete(vec![id]).await?),
                Err(e) if e.kind == LnErrorKind::NotFound => {
                    // Believe "not found" only when a lookup agrees: a node that is still
                    // loading its invoices may say it of a hold it holds.
                    match node.lookup_hold_invoice(hash).await {
                        Ok(HoldInvoiceState::Open | HoldInvoiceState::Accepted { .. }) => {
                            warn!(order_id = %order_id, %hash, "cancel said not found but the hold is live; retrying");
                            Err(EffectFailed::Ln(e.to_string()))
                        },
                        Ok(_) => Ok(self.complete(vec![id]).await?),
                        Err(l) if l.kind == LnErrorKind::NotFound => {
                            Ok(self.complete(vec![id]).await?)
                        },
                        Err(l) => Err(EffectFailed::Ln(l.to_string())),
                    }
                },
                Err(e) if e.kind == LnErrorKind::AlreadySettled => {
                    error!(order_id = %order_id, "cancel of a settled hold invoice refused");
                    Ok(self.complete(vec![id]).await?)
                },
                Err(e) => Err(EffectFailed::Ln(e.to_string())),
            },
            Effect::Pay {
                order_id,
                hash,
                invoice,
                amount,
                fee_limit,
            } => {
                // One task per hash at a time, `Pay` or `CheckPayment`, held until the result
                // is committed: a check can never read "no record" while a send is on its way.
                let Some(_guard) = PayGuard::take(&self.paying, *hash) else {
                    return Err(EffectFailed::Ln("payment hash busy in this process".into()));
                };
                // A `Pay` runs only while it is the order's current attempt: of the buyer's
                // payout, or of the development fee once the order succeeded.
                let current = self.ports.store.order(*order_id).await?.is_some_and(|o| {
                    let buyer = o.status == crate::order::Status::SettledHoldInvoice
                        && o.payout
                            .as_ref()
                            .is_some_and(|p| p.hash == *hash && p.state == PayoutState::InFlight);
                    let dev = o.status == crate::order::Status::Success
                        && o.dev_fee.as_ref().is_some_and(|d| {
                            d.hash == Some(*hash) && d.state == crate::order::DevFeeState::InFlight
                        });
                    buyer || dev
                });
                if !current {
                    debug!(order_id = %order_id, %hash, "stale payout effect skipped");
                    return Ok(self.complete(vec![id]).await?);
                }
                let req = PayRequest {
                    invoice: invoice.clone(),
                    hash: *hash,
                    amount: *amount,
                    fee_limit: *fee_limit,
                    timeout_secs: self.config.pay_timeout_secs,
                    max_cltv: self.policy().max_payout_cltv,
                };
                let outcome = match node.pay(&req).await {
                    Ok(PayOutcome::Failed { reason }) => {
                        // Trust a failure only when the node's own record agrees.
                        match node.payment_status(hash).await {
                            Ok(PaymentStatus::Failed { reason }) => PayOutcome::Failed { reason },
                            // Refused before any attempt was recorded: nothing was sent.
                            Ok(PaymentStatus::NotFound) => PayOutcome::Failed { reason },
                            Ok(st) => status_outcome(st),
                            Err(e) => PayOutcome::Unknown {
                                reason: format!("{reason}; status unknown: {e}"),
                            },
                        }
                    },
                    Ok(o) => o,
                    Err(e) => {
                        warn!(order_id = %order_id, error = %e, "payout call failed; asking the node");
                        match node.payment_status(hash).await {
                            // No record yet: the request may still be on its way; decided at
                            // the next check, a retry interval later.
                            Ok(PaymentStatus::NotFound) => PayOutcome::Unknown {
                                reason: e.to_string(),
                            },
                            Ok(st) => status_outcome(st),
                            Err(e2) => PayOutcome::Unknown {
                                reason: format!("{e}; status: {e2}"),
                            },
                        }
                    },
                };
                let input = Input::PayResult {
                    hash: *hash,
                    outcome,
                };
                Ok(self.apply(*order_id, &input, vec![id]).await?)
            },
            Effect::CheckPayment { order_id, hash } => {
                let Some(order) = self.ports.store.order(*order_id).await? else {
                    return Ok(self.complete(vec![id]).await?);
                };
                // The hash is the buyer payout's or the development fee's.
                let (current, known) = match (&order.payout, &order.dev_fee) {
                    (_, Some(d)) if d.knows(hash) => (d.hash == Some(*hash), true),
                    (Some(p), _) => (p.hash == *hash, p.knows(hash)),
                    (None, _) => (false, false),
                };
                if !known {
                    return Ok(self.complete(vec![id]).await?);
                }
                let guard = PayGuard::take(&self.paying, *hash);
                let outcome = if guard.is_none() {
                    // A `pay` call of ours is running for this hash: it is in flight.
                    PayOutcome::InFlight
                } else {
                    match node.payment_status(hash).await {
                        // A retry interval after the last call the node still has no record:
                        // nothing was sent, nothing is in flight.
                        Ok(PaymentStatus::NotFound) if current => PayOutcome::Failed {
                            reason: "the node has no payment for this invoice".into(),
                        },
                        Ok(PaymentStatus::NotFound) => {
                            return Ok(self.complete(vec![id]).await?);
                        },
                        Ok(st) => status_outcome(st),
                        Err(e) => return Err(EffectFailed::Ln(e.to_string())),
                    }
                };
                let input = Input::PayResult {
                    hash: *hash,
                    outcome,
                };
                Ok(self.apply(*order_id, &input, vec![id]).await?)
            },
            Effect::ResolvePayout {
                order_id,
                address,
                amount,
            } => {
                let input = match self.resolve_address(address, *amount).await? {
                    Ok(invoice) => Input::PayoutResolved { invoice },
                    Err(reason) => Input::PayoutResolveFailed { reason },
                };
                Ok(self.apply(*order_id, &input, vec![id]).await?)
            },
            Effect::ResolveDevFee {
                order_id,
                address,
                amount,
            } => {
                let input = match self.resolve_address(address, *amount).await? {
                    Ok(invoice) => Input::DevFeeResolved { invoice },
                    Err(reason) => Input::DevFeeResolveFailed { reason },
                };
                Ok(self.apply(*order_id, &input, vec![id]).await?)
            },
            Effect::Notify(_)
            | Effect::PublishOrder { .. }
            | Effect::PublishDispute { .. }
            | Effect::PublishRating { .. }
            | Effect::PublishDevFee { .. } => match self.send_message(effect).await {
                Ok(()) => {
                    lock(&self.backoff).remove(&id);
                    Ok(self.complete(vec![id]).await?)
                },
                Err(EffectFailed::Dead(reason)) => {
                    error!(effect = ?id, %reason, "undeliverable message dead-lettered");
                    self.finish(Vec::new(), vec![(id, reason)]).await?;
                    Ok(Queue::new())
                },
                Err(e) => {
                    self.note_failure(id);
                    Err(e)
                },
            },
        }
    }

    /// A Lightning address resolved into a usable invoice for exactly `amount`: `Ok(Ok(..))`;
    /// `Ok(Err(reason))` when it cannot be (no resolver, refused, unusable invoice); `Err` when
    /// the resolver failed transiently (the effect stays pending and is retried).
    async fn resolve_address(
        &self,
        address: &str,
        amount: crate::types::Sats,
    ) -> Result<Result<crate::order::PayoutInvoice, String>, EffectFailed> {
        let Some(resolver) = &self.resolver else {
            return Ok(Err("no resolver configured".into()));
        };
        match resolver.resolve(address, amount).await {
            Ok(bolt11) => {
                let now = self.ports.clock.now();
                Ok(self
                    .decode_payout_invoice(&bolt11, now)
                    .await
                    .map_err(|_| "unusable invoice".to_owned()))
            },
            Err(e) if e.transient => Err(EffectFailed::Ln(e.message)),
            Err(e) => Ok(Err(e.message)),
        }
    }
}

/// Claim on one payment hash for the duration of a `pay` call.
pub(super) struct PayGuard<'a> {
    set: &'a Mutex<HashSet<PaymentHash>>,
    hash: PaymentHash,
}

impl<'a> PayGuard<'a> {
    /// The claim, or `None` while another call holds it. The set's lock is released before a
    /// guard exists, so that no guard is ever dropped (and relocks) under it.
    pub(super) fn take(set: &'a Mutex<HashSet<PaymentHash>>, hash: PaymentHash) -> Option<Self> {
        let fresh = lock(set).insert(hash);
        fresh.then(|| PayGuard { set, hash })
    }
}

impl Drop for PayGuard<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.hash);
    }
}

/// What the node's record of a hash says, as a payout outcome.
pub(super) fn status_outcome(st: PaymentStatus) -> PayOutcome {
    match st {
        PaymentStatus::Succeeded { fee } => PayOutcome::Succeeded { fee },
        PaymentStatus::InFlight => PayOutcome::InFlight,
        PaymentStatus::Failed { reason } => PayOutcome::Failed { reason },
        PaymentStatus::NotFound => PayOutcome::Unknown {
            reason: "no payment record".into(),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum EffectFailed {
    #[error("lightning: {0}")]
    Ln(String),
    #[error("undeliverable: {0}")]
    Dead(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for EffectFailed {
    fn from(e: StoreError) -> Self {
        EffectFailed::Engine(EngineError::Store(e))
    }
}

/// Effects that only send a message (no Lightning call, no state change of their own).
pub(super) fn is_message(e: &Effect) -> bool {
    matches!(
        e,
        Effect::Notify(_)
            | Effect::PublishOrder { .. }
            | Effect::PublishDispute { .. }
            | Effect::PublishRating { .. }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn a_second_claim_on_a_hash_is_refused_and_leaves_the_first_in_place() {
        // Used to deadlock: the refused guard was built anyway and dropped (relocking the set)
        // while the set's lock was still held, and would otherwise have removed the first claim.
        let set = Mutex::new(HashSet::new());
        let h = PaymentHash([7; 32]);
        let first = PayGuard::take(&set, h);
        assert!(first.is_some());
        assert!(PayGuard::take(&set, h).is_none());
        assert!(
            lock(&set).contains(&h),
            "the refused claim must not release the first"
        );
        assert!(PayGuard::take(&set, PaymentHash([8; 32])).is_some());
        drop(first);
        assert!(!lock(&set).contains(&h));
        assert!(PayGuard::take(&set, h).is_some());
    }
}
