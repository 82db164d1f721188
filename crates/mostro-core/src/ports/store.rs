//! The store port: orders, users, solvers, settings, the replay guard and the effect outbox.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::machine::{Effect, UserUpdate};
use crate::order::Order;
use crate::types::{BlockHeight, EventId, OrderId, PaymentHash, PubKey, Timestamp};
use crate::user::{Solver, User};

/// Id of an effect in the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EffectId(pub u64);

/// A write of one order inside a commit.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderWrite {
    /// The order to store.
    pub order: Order,
    /// `None` to insert a new order; `Some(v)` to replace the stored order whose version is `v`.
    pub expected_version: Option<u64>,
}

/// How a [`ViewQuery`] names its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKey {
    /// By order id ([`Store::order`]).
    Id(OrderId),
    /// By dispute id ([`Store::order_by_dispute`]).
    Dispute(OrderId),
}

/// Everything a request handler reads before it steps, asked for at once so that a store can
/// answer from one snapshot in one round trip. Each field left `None` is not read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewQuery {
    /// Whether this event is in the replay guard ([`View::seen`]).
    pub event: Option<EventId>,
    /// The solver registration of this identity ([`View::solver`]).
    pub solver_of: Option<PubKey>,
    /// The user record of this identity ([`View::user`]).
    pub user_of: Option<PubKey>,
    /// The order ([`View::order`]).
    pub order: Option<OrderKey>,
    /// The open orders of this identity ([`View::open_orders`]).
    pub open_orders_of: Option<PubKey>,
}

/// The answer to a [`ViewQuery`]: what was not asked for is empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// The event was recorded ([`Store::seen_event`]).
    pub seen: bool,
    /// [`Store::solver`].
    pub solver: Option<Solver>,
    /// [`Store::user`].
    pub user: Option<User>,
    /// [`Store::order`] or [`Store::order_by_dispute`].
    pub order: Option<Order>,
    /// [`Store::open_orders_of`].
    pub open_orders: Vec<Order>,
}

/// One atomic store transaction.
///
/// There is no `Default`: every commit is built with [`Commit::at`], so none can reach a store
/// without the time it was decided at.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// When the engine decided this commit: the time stored with every row it writes (replay
    /// guard entry, new user, outbox entry, completion, dead letter, solver). A store MUST NOT
    /// read a clock of its own; the engine's clock is the only one.
    pub at: Timestamp,
    /// Inbound event to record in the replay guard (the commit fails with
    /// [`StoreErrorKind::Duplicate`] if it was already recorded).
    pub event: Option<EventId>,
    /// Orders to insert or replace.
    pub orders: Vec<OrderWrite>,
    /// Effects to add to the outbox.
    pub effects: Vec<Effect>,
    /// Outbox effects this commit completes.
    pub done: Vec<EffectId>,
    /// Outbox effects that can never succeed: marked done and kept as dead letters with the
    /// reason (visible to the operator, never retried).
    pub dead: Vec<(EffectId, String)>,
    /// User record changes.
    pub users: Vec<UserUpdate>,
    /// Solver registrations.
    pub solvers: Vec<Solver>,
}

impl Commit {
    /// An empty commit decided at `at`; fill the fields with struct update syntax
    /// (`Commit { done, ..Commit::at(now) }`).
    #[must_use]
    pub const fn at(at: Timestamp) -> Self {
        Commit {
            at,
            event: None,
            orders: Vec::new(),
            effects: Vec::new(),
            done: Vec::new(),
            dead: Vec::new(),
            users: Vec::new(),
            solvers: Vec::new(),
        }
    }
}

/// An effect that could never succeed, kept for the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadEffect {
    /// Its outbox id.
    pub id: EffectId,
    /// The effect.
    pub effect: Effect,
    /// Why it was given up.
    pub reason: String,
}

/// Kind of store failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreErrorKind {
    /// Optimistic version check failed: reload and retry.
    Conflict,
    /// The inbound event was already processed.
    Duplicate,
    /// Data could not be decoded (corruption or a newer schema).
    Corrupt,
    /// I/O or database failure.
    Io,
}

/// A store port error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct StoreError {
    /// Kind.
    pub kind: StoreErrorKind,
    /// Detail.
    pub message: String,
}

impl StoreError {
    /// Builds an error.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }
}

/// Persistence of orders, users, solvers, the replay guard and the effect outbox.
///
/// # Contract (every implementation; checked by the store conformance suite)
/// - **Atomicity**: a [`Store::commit`] applies all of its parts or none of them; a failed
///   commit leaves no trace. Readers never see half a commit.
/// - **Durability**: once `commit` returned `Ok`, the commit survives a crash of the process
///   (and, for a durable store, of the machine).
/// - **Idempotency by event id**: a commit whose `event` is already recorded fails with
///   [`StoreErrorKind::Duplicate`] and changes nothing, also after a reopen.
/// - **Optimistic concurrency**: an order write whose `expected_version` is not the stored
///   version fails the whole commit with [`StoreErrorKind::Conflict`]; an insert (`None`) of
///   an existing id fails likewise. Stores MUST NOT change an order's version themselves.
/// - **Outbox order**: effect ids increase in commit order and within a commit in the order of
///   `effects`; listings return them in id order.
/// - MUST NOT panic on any input; data it cannot decode is [`StoreErrorKind::Corrupt`].
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies a commit atomically: every order write (with its version check), the outbox
    /// insertions and completions, user updates and the replay-guard record, or nothing.
    /// Returns the ids of the inserted effects, in order.
    ///
    /// MUST fail with [`StoreErrorKind::Duplicate`] when `event` was recorded before and with
    /// [`StoreErrorKind::Conflict`] on a version mismatch, changing nothing in either case.
    /// Completing (`done`) or dead-lettering (`dead`) an effect that is no longer pending MUST
    /// be a no-op, not an error.
    ///
    /// MUST return exactly one id per entry of `commit.effects`, in that order, each greater
    /// than every id returned before (also across a reopen), so that the outbox runs effects in
    /// the order they were decided. MUST NOT return `Ok` before the commit is durable, and on
    /// `Err` of any kind MUST leave the store as it was (no order, outbox entry, completion, user
    /// change, solver or replay-guard record of this commit may remain).
    async fn commit(&self, commit: Commit) -> Result<Vec<EffectId>, StoreError>;

    /// An order by id, as last committed.
    ///
    /// MUST return the order exactly as the last successful commit wrote it (its version
    /// included), terminal orders too, and `None` only when no commit ever inserted it. MUST NOT
    /// return anything of a failed commit.
    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// The order whose current hold invoice has this hash (MUST find terminal orders too: a
    /// hold paid late on a closed order is still canceled).
    async fn order_by_hold_hash(&self, hash: &PaymentHash) -> Result<Option<Order>, StoreError>;

    /// The order carrying this dispute.
    ///
    /// MUST read committed state and return `None` (not an error) when no order carries it.
    async fn order_by_dispute(&self, dispute_id: OrderId) -> Result<Option<Order>, StoreError>;

    /// Orders whose deadline is at or before `now` (at most `limit`), earliest first. MUST be
    /// served by an index (called on every scheduler tick).
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OrderId>, StoreError>;

    /// The earliest deadline of any order, `None` when no order has one.
    ///
    /// MUST read committed state: a commit that sets, moves or clears a deadline is reflected
    /// in the next answer (the driver sleeps until this time).
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Orders with an accepted hold whose HTLC expiry is known and at or before `height`
    /// (MUST NOT list orders whose hold is not accepted).
    async fn htlc_expiring(&self, height: BlockHeight) -> Result<Vec<OrderId>, StoreError>;

    /// Non-terminal orders in which `identity` is maker or taker (MUST NOT list terminal ones).
    async fn open_orders_of(&self, identity: &PubKey) -> Result<Vec<Order>, StoreError>;

    /// Every non-terminal order (restart reconciliation). MUST be complete: an order left out
    /// is not reconciled.
    async fn open_orders(&self) -> Result<Vec<Order>, StoreError>;

    /// Outbox effects not yet done (neither completed nor dead), oldest first (at most `limit`).
    ///
    /// MUST list them in id order and MUST NOT list an effect a committed `done` or `dead`
    /// removed.
    async fn pending_effects(&self, limit: usize) -> Result<Vec<(EffectId, Effect)>, StoreError>;

    /// Outbox effects not yet done whose id is greater than `after` (all when `None`), in id
    /// order, at most `limit`: the cursor retries and recovery page with, so that old entries
    /// never hide newer ones.
    ///
    /// MUST NOT list completed or dead effects, and MUST NOT skip a pending one: paging from
    /// `None` with the last id of each page as the next `after` visits every pending effect.
    async fn pending_effects_after(
        &self,
        after: Option<EffectId>,
        limit: usize,
    ) -> Result<Vec<(EffectId, Effect)>, StoreError>;

    /// How many outbox effects are not yet done (the outbox depth, for metrics). The default
    /// counts a full listing; stores override it with a count query.
    ///
    /// An override MUST count exactly the effects [`Store::pending_effects`] would list.
    async fn pending_effect_count(&self) -> Result<u64, StoreError> {
        let all = self.pending_effects(usize::MAX).await?;
        Ok(u64::try_from(all.len()).unwrap_or(u64::MAX))
    }

    /// Whether an outbox effect is still pending (inserted and neither done nor dead).
    ///
    /// # Implementations
    /// MUST read committed state: once a commit completing `id` returned, this returns `false`.
    async fn effect_pending(&self, id: EffectId) -> Result<bool, StoreError>;

    /// Dead-lettered effects, newest first (at most `limit`), and how many there are in all.
    ///
    /// MUST list only effects a committed `dead` gave up, each with the reason it was given,
    /// and MUST NOT list them again as pending. The count MUST be the total, not the page size.
    async fn dead_effects(&self, limit: usize) -> Result<(Vec<DeadEffect>, u64), StoreError>;

    /// Whether an inbound event was already processed (recorded by a committed `event`).
    /// MUST keep answering `true` for as long as the replay guard retains the id.
    async fn seen_event(&self, id: &EventId) -> Result<bool, StoreError>;

    /// When the newest inbound event still in the replay guard was recorded (the time of the
    /// commit that processed it), or `None` when none is. The inbound side resumes its catch-up
    /// from here after a restart, so that requests sent while the daemon was down are fetched.
    /// MUST read committed state and MUST NOT decrease except by pruning the replay guard.
    async fn last_event_seen_at(&self) -> Result<Option<Timestamp>, StoreError>;

    /// A node setting (for example maintenance mode), `None` when never set.
    ///
    /// MUST return the value of the last successful [`Store::set_setting`] for `key`, also
    /// after reopening the store.
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Records a node setting durably (last write wins); a later [`Store::setting`], also after
    /// reopening the store, returns it.
    ///
    /// MUST NOT return `Ok` before the value is durable.
    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// A user record, as changed by committed [`UserUpdate`]s (`None` before the first).
    ///
    /// MUST reflect every committed update in commit order and nothing of a failed commit.
    async fn user(&self, identity: &PubKey) -> Result<Option<User>, StoreError>;

    /// A registered solver (as last written by a commit; `None` once removed).
    ///
    /// MUST read committed state: the last registration for `identity` wins.
    async fn solver(&self, identity: &PubKey) -> Result<Option<Solver>, StoreError>;

    /// Everything `q` asks for, each part as the single-purpose method answers it.
    ///
    /// MUST answer every part from committed state, and SHOULD answer them all from one
    /// snapshot in one round trip (the default asks the single-purpose methods one by one, which
    /// is correct but not a snapshot: the engine does not rely on the parts agreeing with one
    /// another, only on each part reading committed state, since the commit's version check and
    /// replay guard catch whatever changed meanwhile).
    async fn view(&self, q: &ViewQuery) -> Result<View, StoreError> {
        let mut v = View::default();
        if let Some(ev) = &q.event {
            v.seen = self.seen_event(ev).await?;
        }
        if let Some(k) = &q.solver_of {
            v.solver = self.solver(k).await?;
        }
        if let Some(k) = &q.user_of {
            v.user = self.user(k).await?;
        }
        v.order = match q.order {
            Some(OrderKey::Id(id)) => self.order(id).await?,
            Some(OrderKey::Dispute(id)) => self.order_by_dispute(id).await?,
            None => None,
        };
        if let Some(k) = &q.open_orders_of {
            v.open_orders = self.open_orders_of(k).await?;
        }
        Ok(v)
    }

    /// Every registered solver, by identity (the admin listing).
    ///
    /// MUST list each registered identity once, with its last registration, and MUST NOT list
    /// removed ones.
    async fn solvers(&self) -> Result<Vec<Solver>, StoreError>;

    /// Removes a solver registration; whether there was one. (Registrations are written by
    /// commits; removal is an admin action outside any trade.)
    ///
    /// MUST be durable once it returns `Ok`. Removing an identity that is not registered MUST
    /// return `Ok(false)`, not an error.
    async fn remove_solver(&self, identity: &PubKey) -> Result<bool, StoreError>;
}
