//! Inbound requests: decide (load, check, step), commit the transition, then run its effects.

use std::sync::atomic::Ordering;

use tracing::{debug, error, info, warn};

use crate::machine::{
    self, Admitted, Command, DestinationKind, Effect, Facts, Input, Notice, Notify, PayoutDest,
    Reject, Transition,
};
use crate::order::{NextTrade, Order, PayoutInvoice};
use crate::policy::Policy;
use crate::ports::{
    Commit, EffectId, OrderKey, OrderWrite, StoreError, StoreErrorKind, View, ViewQuery,
};
use crate::types::{EventId, OrderId, Timestamp};

use super::{Action, Engine, EngineError, MAX_CONFLICT_RETRIES, Outcome, Queue, Request};

impl Engine {
    /// Handles one inbound request: validates, steps, commits, then executes the effects.
    #[tracing::instrument(skip_all, fields(order_id = ?req.order_id, sender = %req.sender))]
    pub async fn handle(&self, req: Request) -> Result<Outcome, EngineError> {
        let query = self.view_query(&req);
        let view = self.ports.store.view(&query).await?;
        if view.seen {
            return Ok(Outcome::Duplicate);
        }
        let policy = self.policy();
        let (outcome, queue) = match self.decide(&req, &policy, &query, view).await {
            Ok(r) => r,
            Err(Decided::Refuse(reason)) => {
                debug!(%reason, "refused");
                let commit = Commit {
                    event: req.event_id,
                    effects: vec![cant_do(&req, reason)],
                    ..Commit::at(self.ports.clock.now())
                };
                match self.commit(commit).await {
                    Ok(q) => (Outcome::Refused(reason), q),
                    Err(e) if e.kind == StoreErrorKind::Duplicate => return Ok(Outcome::Duplicate),
                    Err(e) => return Err(e.into()),
                }
            },
            Err(Decided::Duplicate) => return Ok(Outcome::Duplicate),
            Err(Decided::Failed(e)) => return Err(e),
        };
        self.run_queue(queue).await;
        Ok(outcome)
    }

    /// What the request needs read before it steps: the replay guard, the sender's solver and
    /// user records, the order it names and the sender's open orders, as far as the machine's
    /// rules for this action read them. One store round trip answers it.
    fn view_query(&self, req: &Request) -> ViewQuery {
        let opens_trade = req.action.opens_trade();
        let wants_user = machine::needs_user(opens_trade, &req.identity, &req.sender)
            || matches!(req.action, Action::LastTradeIndex | Action::UserInfo);
        let is_take = matches!(req.action, Action::TakeSell { .. } | Action::TakeBuy { .. });
        let wants_open =
            matches!(req.action, Action::RestoreSession) || (is_take && req.identity != req.sender);
        let order = match (&req.action, req.order_id) {
            (
                Action::NewOrder(_)
                | Action::AdminAddSolver(_)
                | Action::Orders(_)
                | Action::RestoreSession
                | Action::LastTradeIndex
                | Action::UserInfo
                | Action::Unsupported,
                _,
            )
            | (_, None) => None,
            (Action::AdminTakeDispute, Some(id)) => Some(OrderKey::Dispute(id)),
            (_, Some(id)) => Some(OrderKey::Id(id)),
        };
        ViewQuery {
            event: req.event_id,
            solver_of: (req.identity != self.config.node_key).then_some(req.identity),
            user_of: wants_user.then_some(req.identity),
            order,
            open_orders_of: wants_open.then_some(req.identity),
        }
    }

    pub(super) async fn decide(
        &self,
        req: &Request,
        policy: &Policy,
        query: &ViewQuery,
        view: View,
    ) -> Result<(Outcome, Queue), Decided> {
        let store = &self.ports.store;
        let now = self.ports.clock.now();
        // The facts the admission rules need were read with the view; the machine decides.
        let opens_trade = req.action.opens_trade();
        let View {
            solver,
            user,
            order: mut loaded,
            open_orders: mut open,
            ..
        } = view;
        let facts = Facts {
            sender: req.sender,
            identity: req.identity,
            protocol: req.protocol,
            trade_index: req.trade_index,
            opens_trade,
            node_key: self.config.node_key,
            solver: solver.as_ref(),
            // `admit` reads it only where `needs_user` asked the view for it.
            user: user.as_ref(),
        };
        let Admitted { caller, users } = machine::admit(&facts, policy).map_err(Decided::Refuse)?;
        let command = match &req.action {
            Action::NewOrder(n) => {
                let mut order = n.order.clone();
                if let Some(inv) = &n.buyer_invoice {
                    order.buyer_invoice = Some(self.payout_dest(inv, now).await?);
                }
                let price = if order.amount == 0 {
                    self.ports.prices.price(&order.fiat_code).await
                } else {
                    None
                };
                let env = self.env(policy, now, price);
                let mut t = machine::new_order(&caller, &order, &env).map_err(Decided::Refuse)?;
                t.users.extend(users);
                set_request_id(&mut t, req.request_id);
                let id = t.order.id;
                let q = self
                    .commit_transition(now, req.event_id, None, t, Vec::new())
                    .await?;
                info!(order_id = %id, "new order");
                return Ok((Outcome::Applied(Some(id)), q));
            },
            Action::TakeSell {
                fiat_amount,
                invoice,
            } => {
                let invoice = match invoice {
                    Some(i) => Some(self.payout_dest(i, now).await?),
                    None => None,
                };
                Command::TakeSell {
                    fiat_amount: *fiat_amount,
                    invoice,
                }
            },
            Action::TakeBuy { fiat_amount } => Command::TakeBuy {
                fiat_amount: *fiat_amount,
            },
            Action::AddInvoice(i) => Command::AddInvoice(self.payout_dest(i, now).await?),
            Action::FiatSent { next_trade } => Command::FiatSent {
                next_trade: checked_next_trade(*next_trade)?,
            },
            Action::Release { next_trade } => Command::Release {
                next_trade: checked_next_trade(*next_trade)?,
            },
            Action::Cancel => Command::Cancel,
            Action::Dispute => Command::Dispute,
            Action::RateUser(r) => Command::RateUser(*r),
            Action::TradePubkey => Command::TradePubkey,
            Action::AdminTakeDispute => Command::AdminTakeDispute,
            Action::AdminSettle => Command::AdminSettle,
            Action::AdminCancel => Command::AdminCancel,
            Action::AdminAddSolver(s) => {
                let notice = machine::add_solver(&caller, s).map_err(Decided::Refuse)?;
                let reply = reply(req, notice);
                let commit = Commit {
                    event: req.event_id,
                    solvers: vec![*s],
                    effects: vec![reply],
                    ..Commit::at(now)
                };
                let q = self.commit(commit).await.map_err(Decided::from_store)?;
                return Ok((Outcome::Applied(None), q));
            },
            Action::Orders(ids) => {
                machine::check_orders_query(ids, policy).map_err(Decided::Refuse)?;
                let mut loaded = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(o) = store.order(*id).await? {
                        loaded.push(o);
                    }
                }
                let notice =
                    machine::orders_reply(&req.identity, loaded).map_err(Decided::Refuse)?;
                return self.reply_only(req, notice).await;
            },
            Action::RestoreSession => {
                let notice = machine::restore_reply(req.identity, std::mem::take(&mut open));
                return self.reply_only(req, notice).await;
            },
            Action::LastTradeIndex => {
                let notice =
                    machine::last_trade_index_reply(user.as_ref()).map_err(Decided::Refuse)?;
                return self.reply_only(req, notice).await;
            },
            Action::UserInfo => {
                let notice = machine::user_info_reply(&caller, user).map_err(Decided::Refuse)?;
                return self.reply_only(req, notice).await;
            },
            Action::Unsupported => return Err(Decided::Refuse(Reject::InvalidAction)),
        };
        // Commands on an existing order.
        let Some(id) = req.order_id else {
            return Err(Decided::Refuse(Reject::NotFound));
        };
        let input = Input::Command {
            caller: caller.clone(),
            command,
            request_id: req.request_id,
        };
        for attempt in 0..MAX_CONFLICT_RETRIES {
            if attempt > 0 {
                // A version conflict: read the order (and the caller's open orders) again.
                let again = ViewQuery {
                    order: query.order,
                    open_orders_of: query.open_orders_of,
                    ..ViewQuery::default()
                };
                let v = store.view(&again).await?;
                loaded = v.order;
                open = v.open_orders;
            }
            let Some(order) = loaded.take() else {
                return Err(Decided::Refuse(Reject::NotFound));
            };
            if let Input::Command {
                command: Command::TakeSell { .. } | Command::TakeBuy { .. },
                ..
            } = &input
            {
                machine::check_no_pending_duty(&caller, &order, &open).map_err(Decided::Refuse)?;
            }
            let price = if order.price_from_api && order.status == crate::order::Status::Pending {
                self.ports.prices.price(&order.fiat_code).await
            } else {
                None
            };
            let env = self.env(policy, now, price);
            let mut t = machine::step(&order, &input, &env).map_err(Decided::Refuse)?;
            t.users.extend(users.iter().cloned());
            match self
                .commit_transition(now, req.event_id, Some(&order), t, Vec::new())
                .await
            {
                Ok(q) => return Ok((Outcome::Applied(Some(order.id)), q)),
                Err(Decided::Failed(EngineError::Store(e)))
                    if e.kind == StoreErrorKind::Conflict =>
                {
                    debug!(order_id = %order.id, "version conflict, retrying");
                },
                Err(e) => return Err(e),
            }
        }
        Err(Decided::Failed(EngineError::Contention(id)))
    }

    pub(super) async fn reply_only(
        &self,
        req: &Request,
        notice: Notice,
    ) -> Result<(Outcome, Queue), Decided> {
        let commit = Commit {
            event: req.event_id,
            effects: vec![reply(req, notice)],
            ..Commit::at(self.ports.clock.now())
        };
        let q = self.commit(commit).await.map_err(Decided::from_store)?;
        Ok((Outcome::Applied(None), q))
    }

    /// A payout destination from a client string: a Lightning address / LNURL (when a resolver
    /// is configured) or a BOLT11 invoice decoded by the node; the machine's rules decide.
    pub(super) async fn payout_dest(&self, s: &str, now: Timestamp) -> Result<PayoutDest, Decided> {
        let s = s.trim();
        match machine::classify_destination(s, self.resolver.is_some()).map_err(Decided::Refuse)? {
            DestinationKind::Address => Ok(PayoutDest::Address(s.to_owned())),
            DestinationKind::Invoice => self
                .decode_payout_invoice(s, now)
                .await
                .map(PayoutDest::Invoice)
                .map_err(Decided::Refuse),
        }
    }

    pub(super) async fn decode_payout_invoice(
        &self,
        s: &str,
        now: Timestamp,
    ) -> Result<PayoutInvoice, Reject> {
        let d = match self.ports.node.decode_invoice(s).await {
            Ok(d) => d,
            Err(e) if e.is_transient() => {
                warn!(error = %e, "could not decode invoice: node unavailable");
                return Err(Reject::InvalidInvoice);
            },
            Err(_) => return Err(Reject::InvalidInvoice),
        };
        machine::check_decoded_invoice(s, &d, self.config.network, now)
    }

    pub(super) async fn commit_transition(
        &self,
        at: Timestamp,
        event: Option<EventId>,
        before: Option<&Order>,
        t: Transition,
        done: Vec<EffectId>,
    ) -> Result<Queue, Decided> {
        let mut orders = vec![OrderWrite {
            order: t.order,
            expected_version: before.map(|o| o.version),
        }];
        if let Some(child) = t.child {
            orders.push(OrderWrite {
                order: child,
                expected_version: None,
            });
        }
        let commit = Commit {
            event,
            orders,
            effects: t.effects,
            done,
            users: t.users,
            ..Commit::at(at)
        };
        self.commit(commit).await.map_err(Decided::from_store)
    }

    /// Applies a non-command input to an order, retrying on version conflicts, completing the
    /// given outbox effects in the same transaction. Returns the new effects to run.
    pub(super) async fn apply(
        &self,
        id: OrderId,
        input: &Input,
        done: Vec<EffectId>,
    ) -> Result<Queue, EngineError> {
        let policy = self.policy();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(order) = self.ports.store.order(id).await? else {
                return self.complete(done).await;
            };
            let now = self.ports.clock.now();
            let env = self.env(&policy, now, None);
            let t = match machine::step(&order, input, &env) {
                Ok(t) if !t.is_noop(&order) => t,
                Ok(_) => return self.complete(done).await,
                Err(reason) => {
                    warn!(order_id = %id, %reason, ?input, "internal input refused");
                    return self.complete(done).await;
                },
            };
            let from = order.status;
            let to = t.order.status;
            self.observe(&order, &t.order);
            match self
                .commit_transition(now, None, Some(&order), t, done.clone())
                .await
            {
                Ok(q) => {
                    if from != to {
                        info!(order_id = %id, from = %from, to = %to, "transition");
                    }
                    return Ok(q);
                },
                Err(Decided::Failed(EngineError::Store(e)))
                    if e.kind == StoreErrorKind::Conflict => {},
                Err(Decided::Failed(e)) => return Err(e),
                Err(Decided::Refuse(_) | Decided::Duplicate) => return Ok(Queue::new()),
            }
        }
        Err(EngineError::Contention(id))
    }

    /// Counts and logs what the operator must see in a transition.
    pub(super) fn observe(&self, before: &Order, after: &Order) {
        let dups = |o: &Order| {
            o.payout
                .as_ref()
                .map_or(0, |p| p.duplicates.len())
                .saturating_add(o.dev_fee.as_ref().map_or(0, |d| d.duplicates.len()))
        };
        let stale_paid = |o: &Order| {
            o.payout
                .as_ref()
                .is_some_and(|p| p.paid_hash.is_some_and(|h| h != p.hash))
        };
        let new_dups = dups(after).saturating_sub(dups(before));
        let newly_stale = stale_paid(after) && !stale_paid(before);
        if new_dups > 0 || newly_stale {
            error!(
                order_id = %after.id,
                "DUPLICATE OR STALE PAYOUT: the node reports a success for another payment hash of this order"
            );
            let n = (new_dups as u64).saturating_add(u64::from(newly_stale));
            self.alarms
                .payout_duplicates
                .fetch_add(n, Ordering::Relaxed);
        }
        let warned = |o: &Order| o.dispute.as_ref().is_some_and(|d| d.expiry_warned);
        if warned(after) && !warned(before) {
            let expiry = after.hold.as_ref().and_then(|h| h.htlc_expiry);
            error!(
                order_id = %after.id,
                expiry = ?expiry,
                "escrow of a disputed trade nears its expiry: resolve the dispute now"
            );
            self.alarms.escrow_expiring.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A next-trade key the node will write to must be a curve point.
pub(super) fn checked_next_trade(n: Option<NextTrade>) -> Result<Option<NextTrade>, Decided> {
    machine::check_next_trade(n).map_err(Decided::Refuse)
}

pub(super) enum Decided {
    Refuse(Reject),
    Duplicate,
    Failed(EngineError),
}

impl Decided {
    fn from_store(e: StoreError) -> Decided {
        if e.kind == StoreErrorKind::Duplicate {
            Decided::Duplicate
        } else {
            Decided::Failed(EngineError::Store(e))
        }
    }
}

impl From<StoreError> for Decided {
    fn from(e: StoreError) -> Self {
        Decided::from_store(e)
    }
}

/// `user@domain` or a bech32 `lnurl1...` string.
pub(super) fn reply(req: &Request, notice: Notice) -> Effect {
    Effect::Notify(Notify {
        to: req.sender,
        protocol: req.protocol,
        request_id: req.request_id,
        order_id: req.order_id,
        trade_index: None,
        notice,
    })
}

pub(super) fn cant_do(req: &Request, reason: Reject) -> Effect {
    reply(req, Notice::CantDo(reason))
}

/// Echo the request id on the direct answers to the requester (the first message to them).
pub(super) fn set_request_id(t: &mut Transition, rid: Option<u64>) {
    if let Some(Effect::Notify(n)) = t
        .effects
        .iter_mut()
        .find(|e| matches!(e, Effect::Notify(_)))
    {
        n.request_id = rid;
    }
}
