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

mod feeds;
mod outbox;
mod request;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::fees::Price;
use crate::machine::{Effect, Env, NewOrder, Reject};
use crate::order::{NextTrade, Protocol};
use crate::policy::Policy;
use crate::ports::{
    Clock, Commit, EffectId, Entropy, LightningNode, Network, PayoutResolver, PriceSource, Solver,
    Store, StoreError, Transport,
};
use crate::types::{EventId, OrderId, PaymentHash, PubKey, Timestamp};

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
/// at most 64 KiB, and a restored order takes about 150 bytes. The rule lives in the machine.
pub use crate::machine::MAX_RESTORE;

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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
