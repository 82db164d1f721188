//! Ports: the traits adapters implement. Object-safe (`Arc<dyn LightningNode>` is chosen at
//! runtime from config) and written contract first. Every method that changes the outside world
//! is idempotent, because the engine re-runs pending effects after a crash.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::fees::Price;
use crate::machine::{Effect, Notify, PayOutcome, UserUpdate};
use crate::order::Order;
use crate::types::{BlockHeight, EventId, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp};

/// Bitcoin network of a node or an invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Mainnet.
    Mainnet,
    /// Testnet.
    Testnet,
    /// Signet.
    Signet,
    /// Regtest.
    Regtest,
}

impl Network {
    /// Lower-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }
}

/// What kind of Lightning failure, deciding retry versus give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LnErrorKind {
    /// Node unreachable or connection dropped. Transient.
    Unreachable,
    /// The call did not answer in time. Transient: the outcome is unknown.
    Timeout,
    /// Authentication failed (macaroon, certificate).
    Auth,
    /// No such invoice or payment.
    NotFound,
    /// The invoice is already settled (on cancel) or already paid (on pay).
    AlreadySettled,
    /// The invoice is canceled (on settle).
    AlreadyCanceled,
    /// Invoice string could not be decoded.
    InvalidInvoice,
    /// Invoice for another network.
    WrongNetwork,
    /// Invoice expired.
    Expired,
    /// A hold invoice with this hash exists with different terms.
    Conflict,
    /// Anything else.
    Other,
}

/// A Lightning port error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct LnError {
    /// Kind.
    pub kind: LnErrorKind,
    /// Human-readable detail (never contains secrets).
    pub message: String,
}

impl LnError {
    /// Builds an error.
    pub fn new(kind: LnErrorKind, message: impl Into<String>) -> Self {
        LnError {
            kind,
            message: message.into(),
        }
    }

    /// Whether retrying the same call later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, LnErrorKind::Unreachable | LnErrorKind::Timeout)
    }
}

/// Request to create a hold invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInvoiceRequest {
    /// Payment hash (the node never learns the preimage before settle).
    pub hash: PaymentHash,
    /// Amount.
    pub amount: Sats,
    /// Invoice expiry in seconds.
    pub expiry_secs: u64,
    /// CLTV delta of the final hop.
    pub cltv_delta: u32,
    /// Memo.
    pub memo: String,
}

/// State of a hold invoice on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldInvoiceState {
    /// Created, unpaid.
    Open,
    /// HTLC locked.
    Accepted {
        /// Expiry height of the accepted HTLC, when known.
        htlc_expiry: Option<BlockHeight>,
    },
    /// Settled.
    Settled,
    /// Canceled.
    Canceled,
}

/// An outbound payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayRequest {
    /// BOLT11.
    pub invoice: String,
    /// Its payment hash (the idempotency key).
    pub hash: PaymentHash,
    /// Amount to pay (must match the invoice if it has one).
    pub amount: Sats,
    /// Maximum routing fee.
    pub fee_limit: Sats,
    /// Give up after this many seconds.
    pub timeout_secs: u32,
    /// Largest total CLTV the route may lock (LND `cltv_limit`, CLN `maxdelay`).
    pub max_cltv: u32,
}

/// The node's authoritative record of the outgoing payments for one payment hash
/// (LND `TrackPaymentV2` / `ListPayments`, CLN `listpays`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// The node has no payment for this hash.
    NotFound,
    /// At least one attempt is still pending.
    InFlight,
    /// An attempt succeeded.
    Succeeded {
        /// Routing fee paid.
        fee: Sats,
    },
    /// The node has a record and every attempt failed for good.
    Failed {
        /// Why the last attempt failed.
        reason: String,
    },
}

/// A decoded invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodedInvoice {
    /// Payment hash.
    pub hash: PaymentHash,
    /// Amount, if any.
    pub amount: Option<Sats>,
    /// Expiry time.
    pub expires_at: Timestamp,
    /// Network.
    pub network: Network,
    /// Final CLTV delta asked for.
    pub min_final_cltv: u32,
    /// Payee node.
    pub payee: Option<PubKey>,
}

/// Node facts used for validation, the CLTV guard and the info event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Network.
    pub network: Network,
    /// Chain tip.
    pub block_height: BlockHeight,
    /// Alias.
    pub alias: String,
    /// Node public key (33-byte compressed, hex).
    pub pubkey: String,
    /// Implementation version string.
    pub version: String,
}

/// Something the node reports on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeEvent {
    /// A hold invoice changed state.
    Hold {
        /// Hash.
        hash: PaymentHash,
        /// New state.
        state: HoldInvoiceState,
    },
    /// New chain tip.
    Block(BlockHeight),
}

/// The Lightning node as the escrow engine sees it.
#[async_trait]
pub trait LightningNode: fmt::Debug + Send + Sync {
    /// Creates a hold invoice and returns its BOLT11.
    ///
    /// # Implementations
    /// MUST be idempotent by hash: when an invoice with this hash exists with the same amount,
    /// return its BOLT11; with other terms, fail with [`LnErrorKind::Conflict`].
    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<String, LnError>;

    /// Settles a hold invoice with its preimage.
    ///
    /// # Implementations
    /// MUST succeed when already settled; MUST fail with [`LnErrorKind::AlreadyCanceled`] when the
    /// invoice was canceled, and [`LnErrorKind::NotFound`] when unknown.
    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError>;

    /// Cancels a hold invoice (refunding an accepted HTLC).
    ///
    /// # Implementations
    /// MUST succeed when already canceled; MUST fail with [`LnErrorKind::AlreadySettled`] when
    /// settled, and [`LnErrorKind::NotFound`] when unknown.
    async fn cancel_hold_invoice(&self, hash: &PaymentHash) -> Result<(), LnError>;

    /// Current state of a hold invoice.
    async fn lookup_hold_invoice(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError>;

    /// Waits for the next event the node reports (hold invoice state changes, new blocks).
    ///
    /// # Implementations
    /// MUST keep its subscriptions alive across disconnects and, after re-subscribing, report
    /// the current state of watched invoices so a transition missed while disconnected is not lost.
    async fn next_event(&self) -> Result<NodeEvent, LnError>;

    /// Pays an invoice.
    ///
    /// # Implementations
    /// MUST be idempotent per payment hash: if a payment for `req.hash` is in flight, report
    /// [`PayOutcome::InFlight`]; if it succeeded, report that success; never send a second
    /// payment while one is in flight or after one succeeded. A new attempt is sent only when
    /// every earlier attempt failed. May return `InFlight` when the payment has not finished
    /// within `req.timeout_secs`. MUST bound the route by `req.max_cltv`.
    ///
    /// MUST report [`PayOutcome::Failed`] only when the node itself reports the payment for
    /// this hash as terminally failed. Every other failure (the node starting up, a locked
    /// wallet, a dropped connection, an error the adapter does not recognize) MUST be an `Err`:
    /// the engine treats any `Err` as "outcome unknown" and asks [`LightningNode::payment_status`].
    async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError>;

    /// The node's authoritative status of the outgoing payment(s) for `hash`.
    ///
    /// # Implementations
    /// MUST answer from the node's own payment record (never from a cache of earlier
    /// answers): [`PaymentStatus::Succeeded`] if any attempt succeeded, else
    /// [`PaymentStatus::InFlight`] if any attempt is pending, else [`PaymentStatus::Failed`]
    /// when a record exists and all its attempts failed, and [`PaymentStatus::NotFound`] when
    /// the node has no record. MUST return an `Err` (never a status) when the node cannot say:
    /// starting up, wallet locked, unreachable.
    async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError>;

    /// Decodes and checks a BOLT11 invoice (signature included).
    ///
    /// # Implementations
    /// MUST report the invoice's own network, or refuse an invoice of another network than the
    /// node's with [`LnErrorKind::WrongNetwork`]; the engine refuses both as `invalid_invoice`.
    /// MUST refuse amounts that are not whole satoshis.
    async fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError>;

    /// Node facts.
    async fn info(&self) -> Result<NodeInfo, LnError>;
}

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

/// One atomic store transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Commit {
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

/// Reputation and bookkeeping of one identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Identity key.
    pub identity: PubKey,
    /// Highest trade index seen.
    pub last_trade_index: u32,
    /// Ratings received.
    pub reviews: u64,
    /// Sum of ratings received.
    pub rating_sum: u64,
    /// Lowest rating received (0 = none).
    pub min_rating: u8,
    /// Highest rating received.
    pub max_rating: u8,
    /// Latest rating received.
    pub last_rating: u8,
    /// First seen.
    pub created_at: Timestamp,
}

impl User {
    /// Mean rating (0.0 with no reviews).
    #[must_use]
    pub fn rating(&self) -> f64 {
        if self.reviews == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let (sum, n) = (self.rating_sum as f64, self.reviews as f64);
        sum / n
    }

    /// Applies an update (the store calls this inside its transaction).
    pub fn apply(&mut self, u: &UserUpdate) {
        match u {
            UserUpdate::TradeIndex { index, .. } => {
                self.last_trade_index = self.last_trade_index.max(*index);
            },
            UserUpdate::Rating { rating, .. } => {
                self.reviews = self.reviews.saturating_add(1);
                self.rating_sum = self.rating_sum.saturating_add(u64::from(*rating));
                self.min_rating = if self.min_rating == 0 {
                    *rating
                } else {
                    self.min_rating.min(*rating)
                };
                self.max_rating = self.max_rating.max(*rating);
                self.last_rating = *rating;
            },
        }
    }
}

/// A registered dispute solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solver {
    /// Identity key.
    pub identity: PubKey,
    /// `read-write` permission.
    pub write: bool,
}

/// Persistence of orders, users, solvers, the replay guard and the effect outbox.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies a commit atomically: every order write (with its version check), the outbox
    /// insertions and completions, user updates and the replay-guard record, or nothing.
    /// Returns the ids of the inserted effects, in order.
    async fn commit(&self, commit: Commit) -> Result<Vec<EffectId>, StoreError>;

    /// An order by id.
    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// The order whose current hold invoice has this hash.
    async fn order_by_hold_hash(&self, hash: &PaymentHash) -> Result<Option<Order>, StoreError>;

    /// The order carrying this dispute.
    async fn order_by_dispute(&self, dispute_id: OrderId) -> Result<Option<Order>, StoreError>;

    /// Orders whose deadline is at or before `now` (at most `limit`).
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OrderId>, StoreError>;

    /// The earliest deadline of any order.
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Orders with an accepted hold whose HTLC expires at or before `height`.
    async fn htlc_expiring(&self, height: BlockHeight) -> Result<Vec<OrderId>, StoreError>;

    /// Non-terminal orders in which `identity` is maker or taker.
    async fn open_orders_of(&self, identity: &PubKey) -> Result<Vec<Order>, StoreError>;

    /// Every non-terminal order (restart reconciliation).
    async fn open_orders(&self) -> Result<Vec<Order>, StoreError>;

    /// Outbox effects not yet done, oldest first (at most `limit`).
    async fn pending_effects(&self, limit: usize) -> Result<Vec<(EffectId, Effect)>, StoreError>;

    /// Outbox effects not yet done whose id is greater than `after` (all when `None`), in id
    /// order, at most `limit`: the cursor retries and recovery page with, so that old entries
    /// never hide newer ones.
    async fn pending_effects_after(
        &self,
        after: Option<EffectId>,
        limit: usize,
    ) -> Result<Vec<(EffectId, Effect)>, StoreError>;

    /// How many outbox effects are not yet done (the outbox depth, for metrics). The default
    /// counts a full listing; stores override it with a count query.
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
    async fn dead_effects(&self, limit: usize) -> Result<(Vec<DeadEffect>, u64), StoreError>;

    /// Whether an inbound event was already processed.
    async fn seen_event(&self, id: &EventId) -> Result<bool, StoreError>;

    /// When the newest inbound event still in the replay guard was recorded (the time of the
    /// commit that processed it), or `None` when none is. The inbound side resumes its catch-up
    /// from here after a restart, so that requests sent while the daemon was down are fetched.
    /// MUST read committed state and MUST NOT decrease except by pruning the replay guard.
    async fn last_event_seen_at(&self) -> Result<Option<Timestamp>, StoreError>;

    /// A node setting (for example maintenance mode), `None` when never set.
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Records a node setting durably (last write wins); a later [`Store::setting`], also after
    /// reopening the store, returns it.
    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// A user record.
    async fn user(&self, identity: &PubKey) -> Result<Option<User>, StoreError>;

    /// A registered solver.
    async fn solver(&self, identity: &PubKey) -> Result<Option<Solver>, StoreError>;

    /// Every registered solver, by identity (the admin listing).
    async fn solvers(&self) -> Result<Vec<Solver>, StoreError>;

    /// Removes a solver registration; whether there was one. (Registrations are written by
    /// commits; removal is an admin action outside any trade.)
    async fn remove_solver(&self, identity: &PubKey) -> Result<bool, StoreError>;
}

/// Transport failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transport: {message}")]
pub struct TransportError {
    /// Detail.
    pub message: String,
    /// The message can never be delivered (an invalid recipient key, an encryption or size
    /// error): the engine dead-letters it instead of retrying.
    pub permanent: bool,
}

impl TransportError {
    /// A failure that may clear (relays down, timeouts): the effect is retried.
    pub fn transient(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that will never clear: the effect is dead-lettered.
    pub fn permanent(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Outbound side of the transport (inbound requests are pushed into the engine by the adapter).
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends a message to a party, in the party's protocol.
    ///
    /// # Implementations
    /// May deliver more than once after a crash; clients tolerate repeats. MUST mark an error
    /// [`TransportError::permanent`] only when no retry can ever deliver the message (invalid
    /// recipient key, encryption failure, a message over the size limit).
    async fn send(&self, msg: &Notify) -> Result<(), TransportError>;

    /// Publishes (replaces) the public event of an order from its current state.
    async fn publish_order(&self, order: &Order) -> Result<(), TransportError>;

    /// Publishes (replaces) the public event of an order's dispute.
    async fn publish_dispute(&self, order: &Order) -> Result<(), TransportError>;

    /// Publishes (replaces) the rating event of a user, `d`-tagged with the rated trade key.
    /// The default publishes nothing (transports without public events).
    async fn publish_rating(&self, trade_key: &PubKey, user: &User) -> Result<(), TransportError> {
        let _ = (trade_key, user);
        Ok(())
    }
}

/// Why a Lightning address could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResolveError {
    /// Retrying later may work (timeouts, unreachable host).
    pub transient: bool,
    /// Detail.
    pub message: String,
}

/// Turns a Lightning address (`user@domain`) or LNURL-pay into a BOLT11 invoice.
#[async_trait]
pub trait PayoutResolver: Send + Sync {
    /// An invoice for exactly `amount` payable to `destination`.
    ///
    /// # Implementations
    /// MUST refuse private or loopback hosts outside tests and bound every request in time and
    /// size. The engine decodes and checks the returned invoice itself.
    async fn resolve(&self, destination: &str, amount: Sats) -> Result<String, ResolveError>;
}

/// The wall clock.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// Randomness for preimages and ids.
pub trait Entropy: Send + Sync {
    /// 32 fresh random bytes.
    fn random_32(&self) -> [u8; 32];
}

/// BTC prices per fiat code.
#[async_trait]
pub trait PriceSource: Send + Sync {
    /// The latest known price for a fiat code, if any.
    async fn price(&self, fiat_code: &str) -> Option<Price>;
}
