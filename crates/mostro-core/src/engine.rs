//! The engine: load -> step -> commit -> execute effects.
//!
//! The engine owns no task, timer or socket; someone else drives it by calling
//! [`Engine::handle`] for inbound requests, [`Engine::on_node_event`] for Lightning events,
//! [`Engine::tick`] when a deadline is due, and [`Engine::resume`] after a start or a transient
//! failure. It holds no lock across an await and no global mutable state besides the policy, so
//! requests for different orders never wait on each other: a payout that hangs for one order only
//! keeps that order's call pending.
//!
//! Commit-then-execute: every transition is committed (new state + outbox effects, optimistic
//! version check, replay-guard record) before any effect runs. Each executed effect is marked done
//! in the same transaction as the transition its result causes, so a crash at any point leaves
//! either the effect pending (it runs again; executors are idempotent) or its result recorded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::fees::Price;
use crate::machine::{
    self, Authority, Caller, Command, Effect, Env, Input, NewOrder, Notice, Notify, PayOutcome,
    PayoutDest, Reject, Transition, UserUpdate,
};
use crate::order::{HoldState, NextTrade, Order, PayoutInvoice, PayoutState, Protocol};
use crate::policy::Policy;
use crate::ports::{
    Clock, Commit, EffectId, Entropy, HoldInvoiceRequest, HoldInvoiceState, LightningNode,
    LnErrorKind, Network, NodeEvent, OrderWrite, PayRequest, PaymentStatus, PayoutResolver,
    PriceSource, Solver, Store, StoreError, StoreErrorKind, Transport,
};
use crate::types::{BlockHeight, EventId, OrderId, PaymentHash, PubKey, Timestamp};

/// An inbound request, already authenticated by the transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Outer event id (replay guard); `None` for requests that did not come from an event.
    pub event_id: Option<EventId>,
    /// Trade key that signed the request.
    pub sender: PubKey,
    /// Identity key (equals `sender` in full privacy).
    pub identity: PubKey,
    /// Protocol it arrived in.
    pub protocol: Protocol,
    /// Correlation id.
    pub request_id: Option<u64>,
    /// Trade index the request carried.
    pub trade_index: Option<i64>,
    /// Order id (dispute id for `AdminTakeDispute`).
    pub order_id: Option<OrderId>,
    /// What is asked.
    pub action: Action,
}

/// A new order as a client sends it (the payout invoice is still a string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrderRequest {
    /// The order fields.
    pub order: NewOrder,
    /// Buy-order maker's payout invoice.
    pub buyer_invoice: Option<String>,
}

/// Everything a client may ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `new-order`.
    NewOrder(Box<NewOrderRequest>),
    /// `take-sell`.
    TakeSell {
        /// Range fiat amount.
        fiat_amount: Option<i64>,
        /// Payout invoice.
        invoice: Option<String>,
    },
    /// `take-buy`.
    TakeBuy {
        /// Range fiat amount.
        fiat_amount: Option<i64>,
    },
    /// `add-invoice`.
    AddInvoice(String),
    /// `fiat-sent`.
    FiatSent {
        /// Next trade key (range buy maker).
        next_trade: Option<NextTrade>,
    },
    /// `release`.
    Release {
        /// Next trade key (range sell maker).
        next_trade: Option<NextTrade>,
    },
    /// `cancel`.
    Cancel,
    /// `dispute`.
    Dispute,
    /// `rate-user`.
    RateUser(u8),
    /// `trade-pubkey`.
    TradePubkey,
    /// `admin-take-dispute` (request `order_id` = dispute id).
    AdminTakeDispute,
    /// `admin-settle`.
    AdminSettle,
    /// `admin-cancel`.
    AdminCancel,
    /// `admin-add-solver`.
    AdminAddSolver(Solver),
    /// `orders`.
    Orders(Vec<OrderId>),
    /// `restore-session`.
    RestoreSession,
    /// `last-trade-index`.
    LastTradeIndex,
    /// `user-info`.
    UserInfo,
    /// An action clients may not send (answered `invalid_action`).
    Unsupported,
}

impl Action {
    fn opens_trade(&self) -> bool {
        matches!(
            self,
            Action::NewOrder(_) | Action::TakeSell { .. } | Action::TakeBuy { .. }
        )
    }
}

/// What happened to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; the order it touched or created.
    Applied(Option<OrderId>),
    /// Refused with a `cant-do`.
    Refused(Reject),
    /// Already processed (replay).
    Duplicate,
}

/// Engine failures that are not the user's fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Too many concurrent writers on the same order.
    #[error("order {0} kept changing under us")]
    Contention(OrderId),
    /// The Lightning node could not answer.
    #[error("lightning: {0}")]
    Node(String),
}

/// The store setting that holds maintenance mode (`on` / `off`).
pub const MAINTENANCE_SETTING: &str = "maintenance";

/// Static engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The node's Nostr key: its identity is the admin.
    pub node_key: PubKey,
    /// Network payout invoices must be on.
    pub network: Network,
    /// Seconds a payment may take before the node reports it in flight.
    pub pay_timeout_secs: u32,
}

/// The ports the engine drives.
#[derive(Clone)]
pub struct Ports {
    /// Lightning node.
    pub node: Arc<dyn LightningNode>,
    /// Store.
    pub store: Arc<dyn Store>,
    /// Outbound transport.
    pub transport: Arc<dyn Transport>,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// Randomness.
    pub entropy: Arc<dyn Entropy>,
    /// Prices.
    pub prices: Arc<dyn PriceSource>,
}

const MAX_CONFLICT_RETRIES: usize = 16;
const RESUME_BATCH: usize = 256;
/// Most pending effects one retry round hands out (the cursor goes on from there next round).
const RETRY_ROUND: usize = 1024;
/// Longest pause between two attempts of a message that keeps failing transiently.
const MAX_MESSAGE_BACKOFF_SECS: u64 = 300;
/// Most orders a `restore-session` reply lists (most recent first); a NIP-44 message holds
/// at most 64 KiB, and a restored order takes about 150 bytes.
pub const MAX_RESTORE: usize = 200;

/// The escrow engine.
pub struct Engine {
    ports: Ports,
    resolver: Option<Arc<dyn PayoutResolver>>,
    config: EngineConfig,
    policy: RwLock<Arc<Policy>>,
    /// Outbox effects some task of this engine is about to run or running, so that
    /// [`Engine::resume`] does not start them a second time. An id is claimed by exactly one
    /// task (the committing task or a retry), and a retry re-reads the store after claiming.
    claimed: Mutex<HashSet<EffectId>>,
    /// Payment hashes a `pay` call of this process is running for (never two at once, and a
    /// missing node record is not read as "never sent" while one runs).
    paying: Mutex<HashSet<PaymentHash>>,
    /// Where the next retry round starts in the outbox.
    cursor: Mutex<Option<EffectId>>,
    /// Message effects that failed transiently: failures so far and when to try again.
    backoff: Mutex<HashMap<EffectId, (u32, Timestamp)>>,
    alarms: Alarms,
}

/// Counters of events an operator must look at (exposed on `/metrics` by the daemon).
#[derive(Debug, Default)]
pub struct Alarms {
    /// A success the node reported for a payment hash other than the one the order was paid
    /// with, or for an earlier hash (`mostro_payout_duplicate_total`).
    pub payout_duplicates: AtomicU64,
    /// Disputed trades whose escrow HTLC reached the expiry margin.
    pub escrow_expiring: AtomicU64,
    /// Effects given up as undeliverable.
    pub dead_letters: AtomicU64,
}

/// What [`Engine::recover`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Open orders looked at.
    pub orders: usize,
    /// Hold invoices and payouts whose state the node reported.
    pub checked: usize,
    /// Orders whose node state could not be read (retry with [`Engine::recover_order`]).
    pub failed: Vec<OrderId>,
}

type Queue = VecDeque<(EffectId, Effect)>;
/// Message effects to one recipient (`None`: public events), sent in order.
type Lane = (Option<PubKey>, Vec<(EffectId, Effect)>);

impl Engine {
    /// Builds an engine.
    pub fn new(ports: Ports, config: EngineConfig, policy: Policy) -> Self {
        Engine {
            ports,
            resolver: None,
            config,
            policy: RwLock::new(Arc::new(policy)),
            claimed: Mutex::new(HashSet::new()),
            paying: Mutex::new(HashSet::new()),
            cursor: Mutex::new(None),
            backoff: Mutex::new(HashMap::new()),
            alarms: Alarms::default(),
        }
    }

    /// The operator alarms counted so far.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// Enables Lightning-address / LNURL payouts through `resolver`.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn PayoutResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Switches maintenance mode (refuse new orders and takes; open trades keep working).
    pub fn set_maintenance(&self, on: bool) {
        let mut p = (*self.policy()).clone();
        p.maintenance = on;
        match self.policy.write() {
            Ok(mut g) => *g = Arc::new(p),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
        }
    }

    /// Switches maintenance mode and records it in the store first, so a restart keeps it
    /// (see [`Engine::restore_settings`]). On a store error nothing changes.
    pub async fn switch_maintenance(&self, on: bool) -> Result<(), StoreError> {
        self.ports
            .store
            .set_setting(MAINTENANCE_SETTING, if on { "on" } else { "off" })
            .await?;
        self.set_maintenance(on);
        Ok(())
    }

    /// Applies the settings recorded in the store (maintenance mode) at start; returns whether
    /// maintenance mode is on.
    pub async fn restore_settings(&self) -> Result<bool, StoreError> {
        let on = self
            .ports
            .store
            .setting(MAINTENANCE_SETTING)
            .await?
            .as_deref()
            == Some("on");
        self.set_maintenance(on);
        Ok(on)
    }

    /// Every registered solver (the node key itself is not listed: it always has authority).
    ///
    /// # Errors
    /// The store fails.
    pub async fn solvers(&self) -> Result<Vec<Solver>, StoreError> {
        self.ports.store.solvers().await
    }

    /// Registers (or updates) a solver, as `admin-add-solver` does.
    ///
    /// # Errors
    /// The store fails.
    pub async fn add_solver(&self, solver: Solver) -> Result<(), StoreError> {
        self.ports
            .store
            .commit(Commit {
                solvers: vec![solver],
                ..Commit::at(self.ports.clock.now())
            })
            .await
            .map(|_| ())
    }

    /// Removes a solver; whether it was registered. Disputes it took keep their solver field.
    ///
    /// # Errors
    /// The store fails.
    pub async fn remove_solver(&self, identity: &PubKey) -> Result<bool, StoreError> {
        self.ports.store.remove_solver(identity).await
    }

    /// The ports.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    fn env<'a>(&self, policy: &'a Policy, now: Timestamp, price: Option<Price>) -> Env<'a> {
        Env {
            now,
            policy,
            rand: self.ports.entropy.random_32(),
            price,
        }
    }

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

    async fn commit(&self, commit: Commit) -> Result<Queue, StoreError> {
        let effects = commit.effects.clone();
        let ids = self.ports.store.commit(commit).await?;
        // Claim what we committed; an id a retry round claimed first (it read the outbox
        // between our commit and this line) is that round's to run, not ours.
        let mut claimed = self.claimed();
        Ok(ids
            .into_iter()
            .zip(effects)
            .filter(|(id, _)| claimed.insert(*id))
            .collect())
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, HashSet<EffectId>> {
        lock(&self.claimed)
    }

    async fn decide(&self, req: &Request, policy: &Policy) -> Result<(Outcome, Queue), Decided> {
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
    async fn check_no_pending_duty(&self, caller: &Caller, order: &Order) -> Result<(), Decided> {
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

    async fn reply_only(&self, req: &Request, notice: Notice) -> Result<(Outcome, Queue), Decided> {
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
    async fn payout_dest(&self, s: &str, now: Timestamp) -> Result<PayoutDest, Decided> {
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

    async fn decode_payout_invoice(
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

    async fn commit_transition(
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
    async fn apply(
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

    async fn complete(&self, done: Vec<EffectId>) -> Result<Queue, EngineError> {
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
    async fn run_queue(&self, mut queue: Queue) {
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
    async fn send_group(&self, group: Vec<(EffectId, Effect)>) {
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
    async fn finish(
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

    fn note_failure(&self, id: EffectId) {
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
    async fn send_message(&self, effect: &Effect) -> Result<(), EffectFailed> {
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
            | Effect::ResolvePayout { .. } => Ok(()),
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
    async fn execute(&self, id: EffectId, effect: &Effect) -> Result<Queue, EffectFailed> {
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
                // A `Pay` runs only while it is the order's current attempt.
                let current = self.ports.store.order(*order_id).await?.is_some_and(|o| {
                    o.status == crate::order::Status::SettledHoldInvoice
                        && o.payout
                            .as_ref()
                            .is_some_and(|p| p.hash == *hash && p.state == PayoutState::InFlight)
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
                let Some(p) = &order.payout else {
                    return Ok(self.complete(vec![id]).await?);
                };
                let current = p.hash == *hash;
                if !p.knows(hash) {
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
                let Some(resolver) = &self.resolver else {
                    let input = Input::PayoutResolveFailed {
                        reason: "no resolver configured".into(),
                    };
                    return Ok(self.apply(*order_id, &input, vec![id]).await?);
                };
                let input = match resolver.resolve(address, *amount).await {
                    Ok(bolt11) => {
                        let now = self.ports.clock.now();
                        match self.decode_payout_invoice(&bolt11, now).await {
                            Ok(invoice) => Input::PayoutResolved { invoice },
                            Err(_) => Input::PayoutResolveFailed {
                                reason: "unusable invoice".into(),
                            },
                        }
                    },
                    Err(e) if e.transient => return Err(EffectFailed::Ln(e.message)),
                    Err(e) => Input::PayoutResolveFailed { reason: e.message },
                };
                Ok(self.apply(*order_id, &input, vec![id]).await?)
            },
            Effect::Notify(_)
            | Effect::PublishOrder { .. }
            | Effect::PublishDispute { .. }
            | Effect::PublishRating { .. } => match self.send_message(effect).await {
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

    /// Counts and logs what the operator must see in a transition.
    fn observe(&self, before: &Order, after: &Order) {
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

    /// Feeds an event reported by the Lightning node.
    pub async fn on_node_event(&self, event: NodeEvent) -> Result<(), EngineError> {
        match event {
            NodeEvent::Hold { hash, state } => self.on_hold_state(hash, state).await,
            NodeEvent::Block(h) => self.on_block(h).await,
        }
    }

    async fn on_hold_state(
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

    async fn recover_one(&self, o: &Order) -> Result<usize, EngineError> {
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

/// Claim on one payment hash for the duration of a `pay` call.
struct PayGuard<'a> {
    set: &'a Mutex<HashSet<PaymentHash>>,
    hash: PaymentHash,
}

impl<'a> PayGuard<'a> {
    /// The claim, or `None` while another call holds it. The set's lock is released before a
    /// guard exists, so that no guard is ever dropped (and relocks) under it.
    fn take(set: &'a Mutex<HashSet<PaymentHash>>, hash: PaymentHash) -> Option<Self> {
        let fresh = lock(set).insert(hash);
        fresh.then(|| PayGuard { set, hash })
    }
}

impl Drop for PayGuard<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.hash);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What the node's record of a hash says, as a payout outcome.
fn status_outcome(st: PaymentStatus) -> PayOutcome {
    match st {
        PaymentStatus::Succeeded { fee } => PayOutcome::Succeeded { fee },
        PaymentStatus::InFlight => PayOutcome::InFlight,
        PaymentStatus::Failed { reason } => PayOutcome::Failed { reason },
        PaymentStatus::NotFound => PayOutcome::Unknown {
            reason: "no payment record".into(),
        },
    }
}

/// A next-trade key the node will write to must be a curve point.
fn checked_next_trade(n: Option<NextTrade>) -> Result<Option<NextTrade>, Decided> {
    match n {
        Some(k) if !k.trade_key.is_on_curve() => Err(Decided::Refuse(Reject::InvalidPubkey)),
        n => Ok(n),
    }
}

#[derive(Debug, thiserror::Error)]
enum EffectFailed {
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

enum Decided {
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
fn is_ln_address(s: &str) -> bool {
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

/// Effects that only send a message (no Lightning call, no state change of their own).
fn is_message(e: &Effect) -> bool {
    matches!(
        e,
        Effect::Notify(_)
            | Effect::PublishOrder { .. }
            | Effect::PublishDispute { .. }
            | Effect::PublishRating { .. }
    )
}

fn reply(req: &Request, notice: Notice) -> Effect {
    Effect::Notify(Notify {
        to: req.sender,
        protocol: req.protocol,
        request_id: req.request_id,
        order_id: req.order_id,
        trade_index: None,
        notice,
    })
}

fn cant_do(req: &Request, reason: Reject) -> Effect {
    reply(req, Notice::CantDo(reason))
}

/// Echo the request id on the direct answers to the requester (the first message to them).
fn set_request_id(t: &mut Transition, rid: Option<u64>) {
    if let Some(Effect::Notify(n)) = t
        .effects
        .iter_mut()
        .find(|e| matches!(e, Effect::Notify(_)))
    {
        n.request_id = rid;
    }
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
