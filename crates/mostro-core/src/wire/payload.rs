//! The message payload and the structures it carries.

use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use super::enums::{BuyerMode, CantDoReason, DisputeInitiator};
use super::order::SmallOrder;

/// Message payload: externally tagged, snake_case variant names.
///
/// Tuple variants are JSON arrays (`{"payment_request": [order, bolt11,
/// amount]}`); newtype variants hold the value directly (`{"amount": 20000}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // wire values, moved rarely; boxing would only hurt matching
pub enum Payload {
    /// An order (`{"order": SmallOrder}`).
    Order(SmallOrder),
    /// `[order|null, bolt11 / Lightning address / LNURL, amount|null]`.
    ///
    /// On take-sell the third element is the fiat amount chosen inside a
    /// range; on add-invoice it is ignored by the daemon.
    PaymentRequest(Option<SmallOrder>, String, Option<i64>),
    /// Free text (direct messages, solver registration).
    TextMessage(String),
    /// The counterparty (or the solver) and its reputation.
    Peer(Peer),
    /// A rating, valid 1..=5.
    RatingUser(u8),
    /// An amount (fiat amount of a range take).
    Amount(i64),
    /// `[dispute id, solver info|null]`.
    Dispute(Uuid, Option<SolverDisputeInfo>),
    /// The refusal reason (`null` allowed).
    CantDo(Option<CantDoReason>),
    /// `[next trade pubkey hex, next trade index]` for range-order makers.
    NextTrade(String, u32),
    /// Payout retry configuration.
    PaymentFailed(PaymentFailedInfo),
    /// Session restore data.
    RestoreData(RestoreSessionInfo),
    /// Order ids (own orders query).
    Ids(Vec<Uuid>),
    /// Orders (own orders reply).
    Orders(Vec<SmallOrder>),
    /// Which bonds an admin settle/cancel slashes.
    BondResolution(BondResolution),
    /// Request for a payout invoice for a slashed bond share.
    BondPayoutRequest(BondPayoutRequest),
    /// Cashu escrow lock proof.
    CashuLockProof(CashuLockProof),
    /// Cashu signatures from the node.
    CashuSignatures(Vec<CashuSignature>),
    /// Payer account declaration.
    PayerDeclaration(PayerDeclaration),
    /// Payer account history.
    PaymentHistory(PaymentHistory),
    /// Reputation export request.
    ReputationExportRequest(ReputationExportRequest),
    /// Signed kind-38388 attestation event, as a JSON string.
    ReputationAttestation(String),
    /// The caller's own reputation.
    UserInfo(UserInfo),
}

/// One party of the trade (`peer` payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    /// Trade pubkey in hex (empty in the taker reputation notice).
    pub pubkey: String,
    /// Reputation; `null` in full-privacy mode (always written).
    pub reputation: Option<UserInfo>,
}

/// Number of seconds in a day, for the `since` truncation.
const SECONDS_PER_DAY: u64 = 86_400;

/// Aggregated reputation of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Average rating.
    pub rating: f64,
    /// Number of reviews.
    pub reviews: i64,
    /// Days since the user was created.
    pub operating_days: u64,
    /// First trade (unix seconds); omitted when unknown, written truncated to
    /// the start of its UTC day.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_day_start"
    )]
    pub since: Option<u64>,
}

/// Start of the UTC day containing `ts` (unix seconds).
fn utc_day_start(ts: u64) -> u64 {
    ts.saturating_sub(ts.checked_rem(SECONDS_PER_DAY).unwrap_or(0))
}

/// Writes `since` truncated to the start of its UTC day.
fn serialize_day_start<S: Serializer>(since: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match since {
        Some(ts) => s.serialize_some(&utc_day_start(*ts)),
        None => s.serialize_none(),
    }
}

/// Dispute details sent to the solver on `admin-took-dispute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverDisputeInfo {
    /// Order id.
    pub id: Uuid,
    /// Order kind as text.
    pub kind: String,
    /// Order status as text.
    pub status: String,
    /// Hold invoice payment hash.
    pub hash: Option<String>,
    /// Hold invoice preimage.
    pub preimage: Option<String>,
    /// Order status before the dispute.
    pub order_previous_status: String,
    /// Trade pubkey of the initiator.
    pub initiator_pubkey: String,
    /// Buyer's trade pubkey.
    pub buyer_pubkey: Option<String>,
    /// Seller's trade pubkey.
    pub seller_pubkey: Option<String>,
    /// Whether the initiator trades in full privacy.
    pub initiator_full_privacy: bool,
    /// Whether the counterpart trades in full privacy.
    pub counterpart_full_privacy: bool,
    /// Initiator's reputation.
    pub initiator_info: Option<UserInfo>,
    /// Counterpart's reputation.
    pub counterpart_info: Option<UserInfo>,
    /// Premium in percent.
    pub premium: i64,
    /// Payment methods.
    pub payment_method: String,
    /// Amount in sats.
    pub amount: i64,
    /// Fiat amount.
    pub fiat_amount: i64,
    /// Mostro fee in sats.
    pub fee: i64,
    /// Routing fee in sats.
    pub routing_fee: i64,
    /// Buyer payout destination.
    pub buyer_invoice: Option<String>,
    /// When the hold invoice was accepted (unix seconds).
    pub invoice_held_at: i64,
    /// When the order was taken (unix seconds).
    pub taken_at: i64,
    /// When the order was created (unix seconds).
    pub created_at: i64,
}

/// Payout retry configuration (`payment_failed` payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailedInfo {
    /// Maximum number of payout attempts.
    pub payment_attempts: u32,
    /// Seconds between attempts.
    pub payment_retries_interval: u32,
}

/// Session restore data (`restore_data` payload).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSessionInfo {
    /// The user's orders.
    pub orders: Vec<RestoredOrdersInfo>,
    /// The user's disputes.
    pub disputes: Vec<RestoredDisputesInfo>,
}

/// One order in [`RestoreSessionInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredOrdersInfo {
    /// Order id.
    pub order_id: Uuid,
    /// The user's trade index for this order.
    pub trade_index: i64,
    /// Order status as text.
    pub status: String,
    /// Counterparty's trade pubkey; written as `null` when untaken, may be
    /// missing on input.
    #[serde(default)]
    pub counterparty_trade_pubkey: Option<String>,
}

/// One dispute in [`RestoreSessionInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredDisputesInfo {
    /// Dispute id.
    pub dispute_id: Uuid,
    /// Order id.
    pub order_id: Uuid,
    /// The user's trade index for the order.
    pub trade_index: i64,
    /// Dispute status as text.
    pub status: String,
    /// Who opened the dispute.
    pub initiator: Option<DisputeInitiator>,
    /// Solver's pubkey, when taken.
    pub solver_pubkey: Option<String>,
}

/// Which bonds an admin settle/cancel slashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondResolution {
    /// Slash the seller's bond.
    pub slash_seller: bool,
    /// Slash the buyer's bond.
    pub slash_buyer: bool,
}

/// Request for a payout invoice for a share of a slashed bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondPayoutRequest {
    /// The order; `amount` is the share in sats.
    pub order: SmallOrder,
    /// When the bond was slashed (unix seconds).
    pub slashed_at: i64,
}

/// Cashu escrow lock proof sent by the seller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashuLockProof {
    /// The locked Cashu token.
    pub token: String,
    /// Mint URL.
    pub mint_url: String,
    /// Buyer's pubkey.
    pub buyer_pubkey: String,
    /// Seller's pubkey.
    pub seller_pubkey: String,
    /// Node's pubkey.
    pub mostro_pubkey: String,
    /// Token paying the node fee; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_token: Option<String>,
}

/// One Cashu proof signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashuSignature {
    /// The proof secret (a JSON string).
    pub secret: String,
    /// The signature.
    pub signature: String,
}

/// Payer account declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerDeclaration {
    /// Lowercase hex SHA-256 of the canonical account string.
    pub payment_hash: String,
}

/// Payer account history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentHistory {
    /// Payer account hash.
    pub payment_hash: String,
    /// How the buyer trades.
    pub buyer_mode: BuyerMode,
    /// Successful trades paid from this account.
    pub successful_trades: u64,
    /// Distinct counterparties.
    pub distinct_counterparties: u64,
    /// Counterparties with trading experience.
    pub experienced_counterparties: u64,
    /// First success (unix seconds); written as `null` when absent.
    pub first_success_at: Option<i64>,
    /// Last success (unix seconds); written as `null` when absent.
    pub last_success_at: Option<i64>,
}

/// Reputation export request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationExportRequest {
    /// Destination identity pubkey (hex).
    pub destination: String,
    /// Signed kind-38388 rebind authorisation as a JSON string; written as
    /// `null` when absent, may be missing on input.
    #[serde(default)]
    pub rebind: Option<String>,
}
