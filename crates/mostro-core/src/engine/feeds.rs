//! What drives the engine besides requests: node events, blocks, deadlines, resume and recovery.

use tracing::warn;

use crate::machine::{Effect, Input};
use crate::order::{HoldState, Order};
use crate::ports::{EffectId, HoldInvoiceState, LnErrorKind, NodeEvent, PaymentStatus};
use crate::types::{BlockHeight, OrderId, PaymentHash, Timestamp};

use super::outbox::{PayGuard, is_message, status_outcome};
use super::{Engine, EngineError, RESUME_BATCH, RETRY_ROUND, Recovery, lock};

impl Engine {
    /// Feeds an event reported by the Lightning node.
    pub async fn on_node_event(&self, event: NodeEvent) -> Result<(), EngineError> {
        match event {
            NodeEvent::Hold { hash, state } => self.on_hold_state(hash, state).await,
            NodeEvent::Block(h) => self.on_block(h).await,
        }
    }

    pub(super) async fn on_hold_state(
        &self,
        hash: PaymentHash,
        state: HoldInvoiceState,
    ) -> Result<(), EngineError> {
        let input = match state {
            HoldInvoiceState::Open => Input::HoldOpen { hash },
            HoldInvoiceState::Accepted { htlc_expiry } => Input::HoldAccepted { hash, htlc_expiry },
            HoldInvoiceState::Settled => Input::HoldSettled { hash },
            HoldInvoiceState::Canceled => Input::HoldCanceled { hash },
        };
        let Some(order) = self.ports.store.order_by_hold_hash(&hash).await? else {
            if matches!(state, HoldInvoiceState::Accepted { .. }) {
                // Not a hold any order is waiting for: refund it at once.
                warn!(%hash, "accepted hold invoice of no order; canceling");
                if let Err(e) = self.ports.node.cancel_hold_invoice(&hash).await {
                    warn!(%hash, error = %e, "cancel of stray hold invoice failed");
                }
            }
            return Ok(());
        };
        let q = self.apply(order.id, &input, Vec::new()).await?;
        self.run_queue(q).await;
        Ok(())
    }

    /// The escrow CLTV guard: acts on orders whose accepted HTLC expires within the margin.
    pub async fn on_block(&self, height: BlockHeight) -> Result<(), EngineError> {
        let margin = self.policy().escrow_deadline_margin_blocks;
        let ids = self.ports.store.htlc_expiring(height.plus(margin)).await?;
        for id in ids {
            let q = self.apply(id, &Input::Block(height), Vec::new()).await?;
            self.run_queue(q).await;
        }
        Ok(())
    }

    /// Fires every deadline that is due. Returns how many orders were stepped.
    pub async fn tick(&self) -> Result<usize, EngineError> {
        let ids = self.due().await?;
        let n = ids.len();
        for id in ids {
            self.tick_order(id).await?;
        }
        Ok(n)
    }

    /// Orders whose deadline has passed (drivers may step them concurrently with
    /// [`Engine::tick_order`]).
    pub async fn due(&self) -> Result<Vec<OrderId>, EngineError> {
        let now = self.ports.clock.now();
        Ok(self.ports.store.due(now, 1024).await?)
    }

    /// Fires the deadline of one order (a no-op when it is not due).
    pub async fn tick_order(&self, id: OrderId) -> Result<(), EngineError> {
        let q = self.apply(id, &Input::Timeout, Vec::new()).await?;
        self.run_queue(q).await;
        Ok(())
    }

    /// The earliest deadline of any order (when the driver should call [`Engine::tick`] next).
    pub async fn next_deadline(&self) -> Result<Option<Timestamp>, EngineError> {
        Ok(self.ports.store.next_deadline().await?)
    }

    /// Runs every pending outbox effect once (after a start, or to retry transient failures),
    /// Lightning effects first. Returns how many effects were pending before the run.
    pub async fn resume(&self) -> Result<usize, EngineError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .ports
                .store
                .pending_effects_after(after, RESUME_BATCH)
                .await?;
            let n = page.len();
            after = page.last().map(|(id, _)| *id);
            all.extend(page);
            if n < RESUME_BATCH {
                break;
            }
        }
        let n = all.len();
        let (ln, msgs): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, e)| !is_message(e));
        for (id, effect) in ln.into_iter().chain(msgs) {
            self.run_effect(id, effect).await;
        }
        Ok(n)
    }

    /// The next round of pending outbox effects no task of this engine is running, Lightning
    /// effects first. Rounds page through the whole outbox with a cursor, so old entries never
    /// hide newer ones; a message that keeps failing waits longer between attempts.
    pub async fn pending_effects(&self) -> Result<Vec<(EffectId, Effect)>, EngineError> {
        let start = *lock(&self.cursor);
        let mut after = start;
        let mut got: Vec<(EffectId, Effect)> = Vec::new();
        let mut wrapped = false;
        loop {
            let page = self
                .ports
                .store
                .pending_effects_after(after, RESUME_BATCH)
                .await?;
            let full = page.len() >= RESUME_BATCH;
            let mut back_at_start = false;
            for (id, e) in page {
                if wrapped && start.is_some_and(|s| id > s) {
                    back_at_start = true;
                    break;
                }
                after = Some(id);
                got.push((id, e));
            }
            if got.len() >= RETRY_ROUND {
                break; // the next round goes on from `after`
            }
            if back_at_start {
                after = None; // a whole cycle: the next round starts from the oldest
                break;
            }
            if !full {
                if wrapped || start.is_none() {
                    after = None;
                    break;
                }
                wrapped = true;
                after = None;
            }
        }
        *lock(&self.cursor) = after;
        let now = self.ports.clock.now();
        let claimed = self.claimed();
        let backoff = lock(&self.backoff);
        let mut ready: Vec<(EffectId, Effect)> = got
            .into_iter()
            .filter(|(id, _)| !claimed.contains(id))
            .filter(|(id, _)| backoff.get(id).is_none_or(|(_, at)| *at <= now))
            .collect();
        ready.sort_by_key(|(id, e)| (is_message(e), *id));
        ready.dedup_by_key(|(id, _)| *id);
        Ok(ready)
    }

    /// Restart reconciliation: [`Engine::recover`], then every pending effect once.
    pub async fn reconcile(&self) -> Result<Recovery, EngineError> {
        let r = self.recover().await?;
        self.resume().await?;
        Ok(r)
    }

    /// Asks the node for the state of every hold invoice an open order knows of and of every
    /// payout hash still in question, and feeds what changed while we were down. One order's
    /// failure never stops the others: its id is returned for a later
    /// [`Engine::recover_order`]. Pending effects are left to the retry loop.
    pub async fn recover(&self) -> Result<Recovery, EngineError> {
        let orders = self.ports.store.open_orders().await?;
        let mut report = Recovery {
            orders: orders.len(),
            ..Recovery::default()
        };
        for o in orders {
            match self.recover_one(&o).await {
                Ok(n) => report.checked = report.checked.saturating_add(n),
                Err(e) => {
                    warn!(order_id = %o.id, error = %e, "recovery of this order failed; retried later");
                    report.failed.push(o.id);
                },
            }
        }
        Ok(report)
    }

    /// [`Engine::recover`] for one order.
    pub async fn recover_order(&self, id: OrderId) -> Result<usize, EngineError> {
        match self.ports.store.order(id).await? {
            Some(o) => self.recover_one(&o).await,
            None => Ok(0),
        }
    }

    pub(super) async fn recover_one(&self, o: &Order) -> Result<usize, EngineError> {
        let mut checked: usize = 0;
        if let Some(h) = &o.hold {
            match self.ports.node.lookup_hold_invoice(&h.hash).await {
                Ok(state) => {
                    checked = checked.saturating_add(1);
                    self.on_hold_state(h.hash, state).await?;
                },
                Err(e) if e.kind == LnErrorKind::NotFound => {
                    if matches!(h.state, HoldState::Open | HoldState::Accepted) {
                        warn!(order_id = %o.id, "the node does not know this order's hold invoice");
                    }
                },
                Err(e) => {
                    return Err(EngineError::Node(e.to_string()));
                },
            }
        }
        // Holds of earlier takes: none may stay payable or locked.
        for hash in &o.abandoned_holds {
            let input = match self.ports.node.lookup_hold_invoice(hash).await {
                Ok(HoldInvoiceState::Open) => Input::HoldOpen { hash: *hash },
                Ok(HoldInvoiceState::Accepted { htlc_expiry }) => Input::HoldAccepted {
                    hash: *hash,
                    htlc_expiry,
                },
                Ok(_) => continue,
                Err(e) if e.kind == LnErrorKind::NotFound => continue,
                Err(e) => return Err(EngineError::Node(e.to_string())),
            };
            checked = checked.saturating_add(1);
            warn!(order_id = %o.id, %hash, "an abandoned hold invoice is still live; canceling");
            let q = self.apply(o.id, &input, Vec::new()).await?;
            self.run_queue(q).await;
        }
        let Some(p) = &o.payout else {
            return Ok(checked);
        };
        // Every hash of the payout: a success the node recorded while we were down (on the
        // current hash or an earlier one) must be recorded.
        let hashes: Vec<PaymentHash> = std::iter::once(p.hash)
            .filter(|h| *h != PaymentHash([0; 32]))
            .chain(p.previous.iter().copied())
            .collect();
        for hash in hashes {
            let Some(_guard) = PayGuard::take(&self.paying, hash) else {
                continue; // a pay call of ours is running for it; its result is recorded
            };
            let st = self
                .ports
                .node
                .payment_status(&hash)
                .await
                .map_err(|e| EngineError::Node(e.to_string()))?;
            checked = checked.saturating_add(1);
            let outcome = match st {
                PaymentStatus::NotFound => continue,
                PaymentStatus::Failed { .. } if hash != p.hash => continue,
                st => status_outcome(st),
            };
            let q = self
                .apply(o.id, &Input::PayResult { hash, outcome }, Vec::new())
                .await?;
            self.run_queue(q).await;
        }
        Ok(checked)
    }
}
