//! What a step asks the engine to do: notices to parties and the effects committed with the next state.

use serde::{Deserialize, Serialize};

use crate::order::{Order, Protocol};
use crate::types::{BlockHeight, OrderId, PaymentHash, Preimage, PubKey, Sats};

use super::Reject;

/// A message to one party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notify {
    /// Recipient trade key.
    pub to: PubKey,
    /// Recipient's protocol.
    pub protocol: Protocol,
    /// Echoed correlation id.
    pub request_id: Option<u64>,
    /// Order (or dispute) id of the message.
    pub order_id: Option<OrderId>,
    /// Trade index to put in the message.
    pub trade_index: Option<u32>,
    /// What to say.
    pub notice: Notice,
}

/// The domain-level content of a message to a party; mapped to wire actions by `wire`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant, reason = "boxed where large")]
pub enum Notice {
    /// `new-order` with the order.
    NewOrder(Box<Order>),
    /// `pay-invoice` with the hold invoice (seller).
    PayInvoice {
        /// Order snapshot.
        order: Box<Order>,
        /// Hold invoice.
        bolt11: String,
    },
    /// `add-invoice` asking the buyer for a payout invoice.
    AddInvoice(Box<Order>),
    /// `waiting-seller-to-pay`.
    WaitingSellerToPay,
    /// `waiting-buyer-invoice`.
    WaitingBuyerInvoice,
    /// `buyer-took-order` (to the seller; both trade keys).
    BuyerTookOrder(Box<Order>),
    /// `hold-invoice-payment-accepted` (to the buyer; both trade keys).
    HoldInvoicePaymentAccepted(Box<Order>),
    /// `hold-invoice-payment-settled`.
    HoldInvoicePaymentSettled,
    /// `hold-invoice-payment-canceled`.
    HoldInvoicePaymentCanceled,
    /// `fiat-sent-ok` with the counterparty's trade key.
    FiatSentOk {
        /// The counterparty trade key.
        peer: PubKey,
    },
    /// `released`.
    Released,
    /// `purchase-completed`.
    PurchaseCompleted,
    /// `payment-failed`.
    PaymentFailed {
        /// Attempts left (as the reference reports).
        attempts: u32,
        /// Seconds between attempts.
        retry_secs: u64,
    },
    /// `invoice-updated`.
    InvoiceUpdated,
    /// `rate`.
    Rate,
    /// `rate-received`.
    RateReceived(u8),
    /// `canceled`.
    Canceled,
    /// `cooperative-cancel-initiated-by-you`.
    CooperativeCancelInitiatedByYou,
    /// `cooperative-cancel-initiated-by-peer`.
    CooperativeCancelInitiatedByPeer,
    /// `cooperative-cancel-accepted`.
    CooperativeCancelAccepted,
    /// `dispute-initiated-by-you`.
    DisputeInitiatedByYou {
        /// Dispute id.
        dispute_id: OrderId,
    },
    /// `dispute-initiated-by-peer`.
    DisputeInitiatedByPeer {
        /// Dispute id.
        dispute_id: OrderId,
    },
    /// `admin-took-dispute` to the solver, with the order details.
    AdminTookDisputeSolver {
        /// Dispute id.
        dispute_id: OrderId,
        /// Order snapshot.
        order: Box<Order>,
    },
    /// `admin-took-dispute` to the parties, with the solver key.
    AdminTookDisputePeer {
        /// Solver key.
        solver: PubKey,
    },
    /// The escrow HTLC of a disputed trade nears its expiry (to the assigned solver; sent as
    /// `send-dm`): resolve before `expiry` or the node cancels it and the seller is refunded.
    EscrowExpiring {
        /// Dispute id.
        dispute_id: OrderId,
        /// Current chain tip.
        height: BlockHeight,
        /// Expiry height of the escrow HTLC.
        expiry: BlockHeight,
    },
    /// `send-dm` to both parties (after the reference's `dispute-initiated-by-you` to the buyer
    /// and `-by-peer` to the seller, which clients need): the node opened this dispute itself,
    /// neither party did, because the seller's escrow is near its expiry (`expiry` known) or
    /// the Lightning node canceled it.
    DisputeOpenedByNode {
        /// Dispute id.
        dispute_id: OrderId,
        /// Expiry height of the escrow HTLC, when that is the reason.
        expiry: Option<BlockHeight>,
    },
    /// `admin-settled`.
    AdminSettled,
    /// `admin-canceled`.
    AdminCanceled,
    /// `trade-pubkey` ack.
    TradePubkey,
    /// `orders` reply: the requester's own orders.
    Orders(Vec<Order>),
    /// `restore-session` reply.
    RestoreSession {
        /// The requester's identity (which side of each order is theirs).
        identity: PubKey,
        /// Non-terminal orders of the identity.
        orders: Vec<Order>,
    },
    /// `last-trade-index` reply.
    LastTradeIndex(u32),
    /// `user-info` reply.
    UserInfo(crate::user::User),
    /// `admin-add-solver` ack.
    AdminAddSolver,
    /// `cant-do` with a reason.
    CantDo(Reject),
}

/// A side effect, committed to the outbox with the state change and executed after the commit.
/// Every executor is idempotent: after a crash the same effect may run again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Create the escrow hold invoice (idempotent by hash).
    CreateHold {
        /// Order.
        order_id: OrderId,
        /// Hash.
        hash: PaymentHash,
        /// Amount the seller locks.
        amount: Sats,
        /// CLTV delta.
        cltv_delta: u32,
        /// Invoice expiry in seconds.
        expiry_secs: u64,
        /// Memo.
        memo: String,
    },
    /// Settle the hold invoice (idempotent).
    SettleHold {
        /// Order.
        order_id: OrderId,
        /// Preimage.
        preimage: Preimage,
    },
    /// Cancel the hold invoice (idempotent; unknown or already canceled is success).
    CancelHold {
        /// Order.
        order_id: OrderId,
        /// Hash.
        hash: PaymentHash,
    },
    /// Pay the buyer (idempotent by payment hash: never sends while one is in flight or done).
    Pay {
        /// Order.
        order_id: OrderId,
        /// Payment hash of the invoice.
        hash: PaymentHash,
        /// BOLT11.
        invoice: String,
        /// Amount.
        amount: Sats,
        /// Routing fee cap.
        fee_limit: Sats,
    },
    /// Ask the node for the authoritative status of the payout with this hash.
    CheckPayment {
        /// Order.
        order_id: OrderId,
        /// Payment hash (current or earlier).
        hash: PaymentHash,
    },
    /// Resolve a Lightning address / LNURL-pay into an invoice for exactly `amount`.
    ResolvePayout {
        /// Order.
        order_id: OrderId,
        /// The address.
        address: String,
        /// Payout amount.
        amount: Sats,
    },
    /// Resolve the development-fee Lightning address into an invoice for exactly `amount`.
    ResolveDevFee {
        /// Order.
        order_id: OrderId,
        /// The address.
        address: String,
        /// Development fee.
        amount: Sats,
    },
    /// Publish the audit event of the order's paid development fee (kind 8383).
    PublishDevFee {
        /// Order.
        order_id: OrderId,
    },
    /// Send a message.
    Notify(Notify),
    /// (Re)publish the order's public event from its latest state.
    PublishOrder {
        /// Order.
        order_id: OrderId,
    },
    /// (Re)publish the order's dispute event.
    PublishDispute {
        /// Order.
        order_id: OrderId,
    },
    /// (Re)publish the rating event (kind 38384) of a rated identity from its current record.
    PublishRating {
        /// Order the rating was given in.
        order_id: OrderId,
        /// The rated identity.
        identity: PubKey,
        /// The rated party's trade key in that order (the event's `d` tag).
        trade_key: PubKey,
    },
}

impl Effect {
    /// The order the effect belongs to, if any.
    #[must_use]
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Effect::CreateHold { order_id, .. }
            | Effect::SettleHold { order_id, .. }
            | Effect::CancelHold { order_id, .. }
            | Effect::Pay { order_id, .. }
            | Effect::CheckPayment { order_id, .. }
            | Effect::ResolvePayout { order_id, .. }
            | Effect::ResolveDevFee { order_id, .. }
            | Effect::PublishDevFee { order_id }
            | Effect::PublishOrder { order_id }
            | Effect::PublishDispute { order_id }
            | Effect::PublishRating { order_id, .. } => Some(*order_id),
            Effect::Notify(n) => n.order_id,
        }
    }
}
