//! Inbound requests: decide (load, check, step), commit the transition, then run its effects.

use std::sync::atomic::Ordering;

use tracing::{debug, error, info, warn};

use crate::machine::{
    self, Authority, Caller, Command, Effect, Input, Notice, Notify, PayoutDest, Reject,
    Transition, UserUpdate,
};
use crate::order::{NextTrade, Order, PayoutInvoice};
use crate::policy::Policy;
use crate::ports::{Commit, EffectId, OrderWrite, StoreError, StoreErrorKind};
use crate::types::{EventId, OrderId, Timestamp};

use super::{
    Action, Engine, EngineError, MAX_CONFLICT_RETRIES, MAX_RESTORE, Outcome, Queue, Request,
};

impl Engine {
    /// Handles one inbound request: validates, steps, commits, then executes the effects.
    #[tracing::instrument(skip_all, fields(order_id = ?req.order_id, sender = %req.sender))]
    pub async fn handle(&self, req: Request) -> Result<Outcome, EngineError> {
        let store = &self.ports.store;
        if let Some(ev) = &req.event_id
            && store.seen_event(ev).await?
        {
            return Ok(Outcome::Duplicate);
        }
        let policy = self.policy();
        let (outcome, queue) = match self.decide(&req, &policy).await {
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

    pub(super) async fn decide(
        &self,
        req: &Request,
        policy: &Policy,
    ) -> Result<(Outcome, Queue), Decided> {
        let store = &self.ports.store;
        let now = self.ports.clock.now();
        if policy.maintenance && req.action.opens_trade() {
            return Err(Decided::Refuse(Reject::MaintenanceMode));
        }
        let authority = if req.identity == self.config.node_key {
            Authority::Admin
        } else if let Some(s) = store.solver(&req.identity).await? {
            Authority::Solver { write: s.write }
        } else {
            Authority::User
        };
        // Trade index rules (§2) for the actions that open a trade.
        let full_privacy = req.identity == req.sender;
        let trade_index = match req.trade_index {
            Some(i) => u32::try_from(i).map_err(|_| Decided::Refuse(Reject::InvalidTradeIndex))?,
            None => 0,
        };
        let mut users = Vec::new();
        if req.action.opens_trade() && !full_privacy {
            if trade_index == 0 {
                return Err(Decided::Refuse(Reject::InvalidTradeIndex));
            }
            if let Some(u) = store.user(&req.identity).await?
                && trade_index <= u.last_trade_index
            {
                return Err(Decided::Refuse(Reject::InvalidTradeIndex));
            }
            users.push(UserUpdate::TradeIndex {
                identity: req.identity,
                index: trade_index,
            });
        }
        let caller = Caller {
            trade_key: req.sender,
            identity: req.identity,
            trade_index: if full_privacy { 0 } else { trade_index },
            protocol: req.protocol,
            authority,
        };
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
                if authority != Authority::Admin {
                    return Err(Decided::Refuse(Reject::NotAuthorized));
                }
                if !s.identity.is_on_curve() {
                    return Err(Decided::Refuse(Reject::InvalidPubkey));
                }
                let reply = reply(req, Notice::AdminAddSolver);
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
                if ids.is_empty() {
                    return Err(Decided::Refuse(Reject::InvalidParameters));
                }
                if ids.len() > usize::try_from(policy.max_orders_per_response).unwrap_or(0) {
                    return Err(Decided::Refuse(Reject::TooManyRequests));
                }
                let mut found = Vec::new();
                for id in ids {
                    if let Some(o) = store.order(*id).await?
                        && o.identities().any(|i| *i == req.identity)
                    {
                        found.push(o);
                    }
                }
                if found.is_empty() {
                    return Err(Decided::Refuse(Reject::NotFound));
                }
                return self.reply_only(req, Notice::Orders(found)).await;
            },
            Action::RestoreSession => {
                let mut orders = store.open_orders_of(&req.identity).await?;
                // Bounded reply: the most recent orders first, at most MAX_RESTORE of them.
                orders.sort_by_key(|o| std::cmp::Reverse(o.created_at));
                orders.truncate(MAX_RESTORE);
                let notice = Notice::RestoreSession {
                    identity: req.identity,
                    orders,
                };
                return self.reply_only(req, notice).await;
            },
            Action::LastTradeIndex => {
                let Some(u) = store.user(&req.identity).await? else {
                    return Err(Decided::Refuse(Reject::NotFound));
                };
                if u.last_trade_index == 0 {
                    return Err(Decided::Refuse(Reject::InvalidTradeIndex));
                }
                return self
                    .reply_only(req, Notice::LastTradeIndex(u.last_trade_index))
                    .await;
            },
            Action::UserInfo => {
                if full_privacy {
                    return Err(Decided::Refuse(Reject::ReputationIdentityRequired));
                }
                let u = store.user(&req.identity).await?.unwrap_or_default();
                return self.reply_only(req, Notice::UserInfo(u)).await;
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
        for _ in 0..MAX_CONFLICT_RETRIES {
            let order = if matches!(req.action, Action::AdminTakeDispute) {
                store.order_by_dispute(id).await?
            } else {
                store.order(id).await?
            };
            let Some(order) = order else {
                return Err(Decided::Refuse(Reject::NotFound));
            };
            if let Input::Command {
                command: Command::TakeSell { .. } | Command::TakeBuy { .. },
                ..
            } = &input
            {
                self.check_no_pending_duty(&caller, &order).await?;
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

    /// `pending_order_exists`: a taker who already has a trade waiting on them may not take more.
    pub(super) async fn check_no_pending_duty(
        &self,
        caller: &Caller,
        order: &Order,
    ) -> Result<(), Decided> {
        if caller.identity == caller.trade_key {
            return Ok(());
        }
        use crate::order::{Role, Status};
        let role = order.kind.maker_role().other();
        let waiting_status = match role {
            Role::Buyer => Status::WaitingBuyerInvoice,
            Role::Seller => Status::WaitingPayment,
        };
        let open = self.ports.store.open_orders_of(&caller.identity).await?;
        let busy = open.iter().any(|o| {
            o.status == waiting_status
                && o.party(role).is_some_and(|p| p.identity == caller.identity)
        });
        if busy {
            Err(Decided::Refuse(Reject::PendingOrderExists))
        } else {
            Ok(())
        }
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
    /// is configured) or a BOLT11 invoice decoded and checked against our network.
    pub(super) async fn payout_dest(&self, s: &str, now: Timestamp) -> Result<PayoutDest, Decided> {
        let s = s.trim();
        if s.is_empty() || s.len() > 4096 {
            return Err(Decided::Refuse(Reject::InvalidInvoice));
        }
        if is_ln_address(s) {
            return if self.resolver.is_some() {
                Ok(PayoutDest::Address(s.to_owned()))
            } else {
                Err(Decided::Refuse(Reject::InvalidInvoice))
            };
        }
        self.decode_payout_invoice(s, now)
            .await
            .map(PayoutDest::Invoice)
            .map_err(Decided::Refuse)
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
        if d.network != self.config.network || d.expires_at <= now {
            return Err(Reject::InvalidInvoice);
        }
        Ok(PayoutInvoice {
            bolt11: s.to_owned(),
            hash: d.hash,
            amount: d.amount,
            expires_at: d.expires_at,
            min_final_cltv: d.min_final_cltv,
        })
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
        let dups = |o: &Order| o.payout.as_ref().map_or(0, |p| p.duplicates.len());
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
    match n {
        Some(k) if !k.trade_key.is_on_curve() => Err(Decided::Refuse(Reject::InvalidPubkey)),
        n => Ok(n),
    }
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
pub(super) fn is_ln_address(s: &str) -> bool {
    if s.len() > 5 && s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("lnurl")) {
        return true;
    }
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && domain.contains('.')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
}

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
