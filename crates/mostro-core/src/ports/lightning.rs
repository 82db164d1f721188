//! The Lightning node port: hold invoices (the escrow), payouts, invoice decoding, events.
//!
//! Every method that changes the node is idempotent: the engine re-runs pending effects after
//! a crash, and a call whose reply was lost is made again.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::machine::PayOutcome;
use crate::types::{BlockHeight, DecodedInvoice, Network, PaymentHash, Preimage, Sats};

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
    /// The implementation's source commit, where it reports one (LND), else empty.
    #[serde(default)]
    pub commit_hash: String,
    /// Public addresses, `pubkey@host:port` (empty when it announces none).
    #[serde(default)]
    pub uris: Vec<String>,
    /// Chains it runs on (`bitcoin`).
    #[serde(default)]
    pub chains: Vec<String>,
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
