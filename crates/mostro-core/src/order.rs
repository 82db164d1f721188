//! The order: every field the protocol needs, its statuses and its parties.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{BlockHeight, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp};

/// Which side the maker is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The maker buys sats (maker = buyer, taker = seller).
    Buy,
    /// The maker sells sats (maker = seller, taker = buyer).
    Sell,
}

impl Kind {
    /// Wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Buy => "buy",
            Kind::Sell => "sell",
        }
    }

    /// The role of the maker of an order of this kind.
    #[must_use]
    pub fn maker_role(self) -> Role {
        match self {
            Kind::Buy => Role::Buyer,
            Kind::Sell => Role::Seller,
        }
    }
}

/// Buyer or seller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Receives sats, sends fiat.
    Buyer,
    /// Locks sats in the hold invoice, receives fiat.
    Seller,
}

impl Role {
    /// The other side.
    #[must_use]
    pub fn other(self) -> Role {
        match self {
            Role::Buyer => Role::Seller,
            Role::Seller => Role::Buyer,
        }
    }

    /// Wire spelling (dispute initiator).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
        }
    }
}

/// Order status, with the protocol's kebab-case spelling (§7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// In the book, takeable.
    Pending,
    /// Bond feature: a taker is paying its bond (not produced: bonds are not implemented).
    WaitingTakerBond,
    /// Bond feature: the maker must pay a bond (not produced).
    WaitingMakerBond,
    /// Waiting for the buyer's payout invoice.
    WaitingBuyerInvoice,
    /// Waiting for the seller to pay the hold invoice.
    WaitingPayment,
    /// Hold invoice accepted and buyer invoice known: fiat leg in progress.
    Active,
    /// Buyer declared the fiat sent.
    FiatSent,
    /// A dispute is open.
    Dispute,
    /// Hold invoice settled; the buyer payout is pending or retrying.
    SettledHoldInvoice,
    /// Buyer paid. Terminal.
    Success,
    /// Canceled. Terminal.
    Canceled,
    /// Both parties agreed to cancel. Terminal.
    CooperativelyCanceled,
    /// An admin or solver canceled (seller refunded). Terminal.
    CanceledByAdmin,
    /// A pending order passed its expiry. Terminal.
    Expired,
    /// Defined by the protocol, not produced.
    SettledByAdmin,
    /// Defined by the protocol, not produced.
    CompletedByAdmin,
    /// Only used as a published bucket.
    InProgress,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 17] = [
        Status::Pending,
        Status::WaitingTakerBond,
        Status::WaitingMakerBond,
        Status::WaitingBuyerInvoice,
        Status::WaitingPayment,
        Status::Active,
        Status::FiatSent,
        Status::Dispute,
        Status::SettledHoldInvoice,
        Status::Success,
        Status::Canceled,
        Status::CooperativelyCanceled,
        Status::CanceledByAdmin,
        Status::Expired,
        Status::SettledByAdmin,
        Status::CompletedByAdmin,
        Status::InProgress,
    ];

    /// Wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::WaitingTakerBond => "waiting-taker-bond",
            Status::WaitingMakerBond => "waiting-maker-bond",
            Status::WaitingBuyerInvoice => "waiting-buyer-invoice",
            Status::WaitingPayment => "waiting-payment",
            Status::Active => "active",
            Status::FiatSent => "fiat-sent",
            Status::Dispute => "dispute",
            Status::SettledHoldInvoice => "settled-hold-invoice",
            Status::Success => "success",
            Status::Canceled => "canceled",
            Status::CooperativelyCanceled => "cooperatively-canceled",
            Status::CanceledByAdmin => "canceled-by-admin",
            Status::Expired => "expired",
            Status::SettledByAdmin => "settled-by-admin",
            Status::CompletedByAdmin => "completed-by-admin",
            Status::InProgress => "in-progress",
        }
    }

    /// Parses the wire spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No transition leaves a terminal status.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Success
                | Status::Canceled
                | Status::CooperativelyCanceled
                | Status::CanceledByAdmin
                | Status::Expired
                | Status::SettledByAdmin
                | Status::CompletedByAdmin
        )
    }

    /// The `s` tag value of the public order event, or `None` when this status is not published.
    #[must_use]
    pub fn published_bucket(self, kind: Kind) -> Option<&'static str> {
        match (self, kind) {
            (Status::Pending | Status::WaitingTakerBond, _) => Some("pending"),
            (Status::WaitingBuyerInvoice, Kind::Sell) | (Status::WaitingPayment, Kind::Buy) => {
                Some("in-progress")
            },
            (Status::Success, _) => Some("success"),
            (Status::CompletedByAdmin, _) => Some("completed-by-admin"),
            (
                Status::Canceled
                | Status::CooperativelyCanceled
                | Status::CanceledByAdmin
                | Status::Expired,
                _,
            ) => Some("canceled"),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Dispute status (§7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisputeStatus {
    /// Opened, no solver yet.
    Initiated,
    /// A solver took it.
    InProgress,
    /// Admin settled: buyer paid.
    Settled,
    /// Admin canceled: seller refunded.
    SellerRefunded,
    /// The seller released during the dispute.
    Released,
    /// The parties cooperatively canceled during the dispute.
    CooperativelyCanceled,
}

impl DisputeStatus {
    /// Wire spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Initiated => "initiated",
            DisputeStatus::InProgress => "in-progress",
            DisputeStatus::Settled => "settled",
            DisputeStatus::SellerRefunded => "seller-refunded",
            DisputeStatus::Released => "released",
            DisputeStatus::CooperativelyCanceled => "cooperatively-canceled",
        }
    }

    /// Whether the dispute still needs a solver.
    #[must_use]
    pub fn is_open(self) -> bool {
        matches!(self, DisputeStatus::Initiated | DisputeStatus::InProgress)
    }
}

/// Which transport a party used, so replies go back in the same protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// NIP-59 gift wrap (kind 1059).
    V1,
    /// Signed kind 14 with NIP-44 content.
    #[default]
    V2,
}

/// One side of a trade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// The per-trade key (visible sender; replies go here).
    pub trade_key: PubKey,
    /// The identity key (equals `trade_key` in full-privacy mode).
    pub identity: PubKey,
    /// Trade index (0 in full privacy).
    pub trade_index: u32,
    /// Protocol the party spoke; replies use it.
    pub protocol: Protocol,
}

impl Party {
    /// Full-privacy mode: no identity key revealed.
    #[must_use]
    pub fn is_full_privacy(&self) -> bool {
        self.trade_key == self.identity
    }
}

/// State of the escrow hold invoice as the order knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// A `CreateHold` effect is queued; no invoice string yet.
    Requested,
    /// The node created it; waiting for the seller to pay.
    Open,
    /// The seller's HTLC is locked.
    Accepted,
    /// A `SettleHold` effect is queued; the buyer is paid once the node confirms.
    Settling,
    /// Settled: the node owns the sats. Final.
    Settled,
    /// Canceled: the seller is refunded. Final.
    Canceled,
}

/// The escrow hold invoice of one trade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Payment hash.
    pub hash: PaymentHash,
    /// Preimage (secret, kept until settle).
    pub preimage: Preimage,
    /// Amount the seller locks (`amount + fee`).
    pub amount: Sats,
    /// BOLT11 once the node created it.
    pub bolt11: Option<String>,
    /// Lifecycle.
    pub state: HoldState,
    /// Expiry height of the accepted HTLC, when known (CLTV guard).
    pub htlc_expiry: Option<BlockHeight>,
    /// Correlation id of the request that last acted on this hold: the take or add-invoice that
    /// asked for it (echoed on the `pay-invoice` / `waiting-seller-to-pay` sent once it exists),
    /// then the `release` that asked to settle it (echoed on `hold-invoice-payment-settled`).
    #[serde(default)]
    pub request_id: Option<u64>,
}

/// The buyer's payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// Payout destination as given by the buyer (BOLT11).
    pub invoice: String,
    /// Payment hash of `invoice` (the idempotency key of the payment).
    pub hash: PaymentHash,
    /// Amount paid to the buyer (`amount - fee`).
    pub amount: Sats,
    /// Attempts made on this order (reset when the buyer gives a new invoice).
    pub attempts: u32,
    /// Lifecycle.
    pub state: PayoutState,
    /// Routing fee paid, once succeeded.
    pub routing_fee: Sats,
    /// Payment hashes of earlier destinations of this order. The order moved to a new
    /// destination only after the node confirmed every attempt on each of them failed; they
    /// are checked again at restart, and a success reported for one is recorded.
    #[serde(default)]
    pub previous: Vec<PaymentHash>,
    /// A `CheckPayment` effect for `hash` is queued (at most one at a time).
    #[serde(default)]
    pub checking: bool,
    /// The hash the buyer was paid with, once succeeded (normally `hash`).
    #[serde(default)]
    pub paid_hash: Option<PaymentHash>,
    /// Successes the node reported for another hash of this order after it was paid: a
    /// duplicate payout, kept for the operator.
    #[serde(default)]
    pub duplicates: Vec<PaymentHash>,
}

impl Payout {
    /// Whether `hash` is the current or an earlier payment hash of this payout.
    #[must_use]
    pub fn knows(&self, hash: &PaymentHash) -> bool {
        &self.hash == hash || self.previous.contains(hash)
    }
}

/// The development fee of a successful order: a share of the node's fee paid to a configured
/// Lightning address after the buyer was paid, at most once.
///
/// The payout rule applies as to the buyer's payout: an attempt's outcome is known only from the
/// node's record for its hash; a new invoice is fetched only once the node confirmed the current
/// one failed (never while it is in flight), and the hashes left behind are kept in `previous`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevFee {
    /// Sats to pay.
    pub amount: Sats,
    /// The Lightning address paid.
    pub address: String,
    /// Where it stands.
    pub state: DevFeeState,
    /// The current attempt's invoice and hash (none while resolving the address).
    pub invoice: Option<String>,
    /// Hash of `invoice`.
    pub hash: Option<PaymentHash>,
    /// Earlier attempts' hashes (each confirmed failed by the node, or never sent).
    pub previous: Vec<PaymentHash>,
    /// Attempts that failed.
    pub attempts: u32,
    /// A status check of the current hash is queued.
    pub checking: bool,
    /// The hash the node reported paid.
    pub paid_hash: Option<PaymentHash>,
    /// Routing fee of the successful attempt.
    pub routing_fee: Sats,
    /// Successes reported for another hash after it was paid (must never happen: an alarm).
    pub duplicates: Vec<PaymentHash>,
}

impl DevFee {
    /// Whether `hash` is one of its attempts.
    #[must_use]
    pub fn knows(&self, hash: &PaymentHash) -> bool {
        self.hash.as_ref() == Some(hash) || self.previous.contains(hash)
    }
}

/// Development fee lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DevFeeState {
    /// Getting an invoice from the Lightning address.
    Resolving,
    /// A `Pay` is queued or in flight for `hash`.
    InFlight,
    /// The node confirmed the last attempt failed (or the address could not be resolved): the
    /// next attempt at the order's deadline.
    Failed,
    /// Paid. Final.
    Paid,
    /// Every attempt failed: given up (logged; the order itself is done).
    GaveUp,
}

/// Payout lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutState {
    /// Not yet attempted (hold not settled yet).
    Idle,
    /// Resolving the buyer's Lightning address into an invoice.
    Resolving,
    /// A `Pay` effect is queued or in flight.
    InFlight,
    /// The node confirmed the last attempt failed; retry at the order's deadline.
    Failed,
    /// Exhausted: waiting for a new invoice from the buyer.
    NeedInvoice,
    /// Paid. Final.
    Succeeded,
}

/// A validated payout invoice (checked by the engine through the Lightning port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutInvoice {
    /// The BOLT11 string.
    pub bolt11: String,
    /// Its payment hash.
    pub hash: PaymentHash,
    /// Amount, if the invoice has one.
    pub amount: Option<Sats>,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The final CLTV delta the invoice asks for (bounded by `Policy::max_payout_cltv`).
    #[serde(default)]
    pub min_final_cltv: u32,
}

/// A dispute (at most one per order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// Dispute id.
    pub id: OrderId,
    /// Status.
    pub status: DisputeStatus,
    /// Who opened it.
    pub initiator: Role,
    /// Order status when it was opened.
    pub previous_status: Status,
    /// Assigned solver identity.
    pub solver: Option<PubKey>,
    /// Whether the assigned solver has write permission.
    pub solver_write: bool,
    /// Whether the admin (node key) took it over.
    pub taken_by_admin: bool,
    /// Opened at.
    pub created_at: Timestamp,
    /// Taken at.
    pub taken_at: Option<Timestamp>,
    /// The solver was warned that the escrow HTLC nears its expiry.
    #[serde(default)]
    pub expiry_warned: bool,
    /// The assigned solver's trade key and protocol (where warnings go).
    #[serde(default)]
    pub solver_party: Option<Party>,
}

/// Next trade key of a range maker, for the child order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextTrade {
    /// The maker's next trade key.
    pub trade_key: PubKey,
    /// Its index.
    pub trade_index: u32,
}

/// Most abandoned hold hashes an order remembers.
pub const MAX_ABANDONED_HOLDS: usize = 8;

/// An order and its whole trade state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Id.
    pub id: OrderId,
    /// Optimistic-concurrency version, bumped by every commit.
    pub version: u64,
    /// Buy or sell.
    pub kind: Kind,
    /// Status.
    pub status: Status,
    /// ISO 4217 (or pegged) code.
    pub fiat_code: String,
    /// Fixed fiat amount, or the amount chosen by the taker of a range order.
    pub fiat_amount: i64,
    /// Range lower bound (fiat).
    pub min_amount: Option<i64>,
    /// Range upper bound (fiat).
    pub max_amount: Option<i64>,
    /// Sats amount (0 for a market-price order until taken).
    pub amount: Sats,
    /// Premium percent (market-price orders).
    pub premium: i64,
    /// Amount comes from the price feed at take time.
    pub price_from_api: bool,
    /// Payment methods, comma separated.
    pub payment_method: String,
    /// Fee per party.
    pub fee: Sats,
    /// Created at.
    pub created_at: Timestamp,
    /// Pending expiry.
    pub expires_at: Timestamp,
    /// Start of the current waiting step.
    pub taken_at: Option<Timestamp>,
    /// The maker.
    pub maker: Party,
    /// The taker, once taken.
    pub taker: Option<Party>,
    /// Buyer payout invoice (validated), or the invoice resolved from `buyer_address`.
    pub buyer_invoice: Option<PayoutInvoice>,
    /// Buyer payout Lightning address / LNURL, resolved at payout time.
    #[serde(default)]
    pub buyer_address: Option<String>,
    /// Escrow.
    pub hold: Option<Hold>,
    /// Payout.
    pub payout: Option<Payout>,
    /// First party that asked for a cooperative cancel.
    pub cancel_initiator: Option<Role>,
    /// Dispute, if any.
    pub dispute: Option<Dispute>,
    /// Buyer rated the seller.
    pub buyer_rated: bool,
    /// Seller rated the buyer.
    pub seller_rated: bool,
    /// Range maker's next trade key (buy ranges give it with fiat-sent).
    pub next_trade: Option<NextTrade>,
    /// Parent of a range child order.
    pub range_parent: Option<OrderId>,
    /// Hold invoices of earlier takes of this order that were given up (most recent last, at
    /// most [`MAX_ABANDONED_HOLDS`]): restart recovery makes sure none stays payable.
    #[serde(default)]
    pub abandoned_holds: Vec<PaymentHash>,
    /// Wall-clock deadline of the current status (see `machine` for what fires).
    pub deadline: Option<Timestamp>,
    /// The development fee, once the order succeeded with one configured.
    #[serde(default)]
    pub dev_fee: Option<DevFee>,
}

impl Order {
    /// The party with this role, if known.
    #[must_use]
    pub fn party(&self, role: Role) -> Option<&Party> {
        if role == self.kind.maker_role() {
            Some(&self.maker)
        } else {
            self.taker.as_ref()
        }
    }

    /// Buyer party, if known.
    #[must_use]
    pub fn buyer(&self) -> Option<&Party> {
        self.party(Role::Buyer)
    }

    /// Seller party, if known.
    #[must_use]
    pub fn seller(&self) -> Option<&Party> {
        self.party(Role::Seller)
    }

    /// The role a trade key plays in this order, if any.
    #[must_use]
    pub fn role_of(&self, trade_key: &PubKey) -> Option<Role> {
        if &self.maker.trade_key == trade_key {
            return Some(self.kind.maker_role());
        }
        match &self.taker {
            Some(t) if &t.trade_key == trade_key => Some(self.kind.maker_role().other()),
            _ => None,
        }
    }

    /// Whether this is a range order.
    #[must_use]
    pub fn is_range(&self) -> bool {
        self.min_amount.is_some() && self.max_amount.is_some()
    }

    /// Identities involved (maker, taker).
    pub fn identities(&self) -> impl Iterator<Item = &PubKey> {
        std::iter::once(&self.maker.identity).chain(self.taker.as_ref().map(|t| &t.identity))
    }

    /// Trade keys involved (maker, taker).
    pub fn trade_keys(&self) -> impl Iterator<Item = &PubKey> {
        std::iter::once(&self.maker.trade_key).chain(self.taker.as_ref().map(|t| &t.trade_key))
    }
}
