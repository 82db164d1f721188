//! The pure transition function: (order, input, environment) -> next order + effects.
//!
//! Nothing here performs I/O or reads a clock. `now`, the policy, the latest price and 32 fresh
//! random bytes arrive in [`Env`]; every side effect leaves as an [`Effect`] value that the engine
//! commits together with the next state before executing it.
//!
//! Funds-safety rules enforced here (and checked by the property tests):
//! - the hold invoice is settled only on `release` by the seller or `admin-settle` by the assigned
//!   solver, and canceled on every other exit; a settled hold is never canceled and vice versa;
//! - the buyer is paid only after the node confirmed the settle ([`Input::HoldSettled`]);
//! - terminal statuses never change again.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fees::{self, Price};
use crate::order::{
    Dispute, DisputeStatus, Hold, HoldState, Kind, NextTrade, Order, Party, Payout, PayoutInvoice,
    PayoutState, Protocol, Role, Status,
};
use crate::policy::Policy;
use crate::types::{BlockHeight, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp};

/// Who is asking, as proven by the transport and resolved by the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The trade key that signed the request (replies go here).
    pub trade_key: PubKey,
    /// The identity key (equals `trade_key` in full privacy).
    pub identity: PubKey,
    /// The trade index the request carried (0 when absent).
    pub trade_index: u32,
    /// Protocol the request arrived in.
    pub protocol: Protocol,
    /// The caller's powers.
    pub authority: Authority,
}

impl Caller {
    fn party(&self) -> Party {
        Party {
            trade_key: self.trade_key,
            identity: self.identity,
            trade_index: self.trade_index,
            protocol: self.protocol,
        }
    }
}

/// Powers of a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Authority {
    /// An ordinary user.
    User,
    /// The node operator (identity = node key).
    Admin,
    /// A registered dispute solver.
    Solver {
        /// `read-write` permission (may settle / cancel).
        write: bool,
    },
}

/// What the environment supplies to one step.
#[derive(Clone, Debug)]
pub struct Env<'a> {
    /// Current time.
    pub now: Timestamp,
    /// Operator policy.
    pub policy: &'a Policy,
    /// 32 fresh random bytes (preimages and new ids are derived from them).
    pub rand: [u8; 32],
    /// Latest price for the order's fiat code, if the engine has one.
    pub price: Option<Price>,
}

impl Env<'_> {
    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.rand);
        h.update(label);
        h.finalize().into()
    }

    fn derive_id(&self, label: &[u8]) -> OrderId {
        let d = self.derive(label);
        let mut b = [0u8; 16];
        b.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
        OrderId::from_random_bytes(b)
    }
}

/// A request to create an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// Buy or sell.
    pub kind: Kind,
    /// Fiat code.
    pub fiat_code: String,
    /// Fixed fiat amount (0 for a range).
    pub fiat_amount: i64,
    /// Range lower bound.
    pub min_amount: Option<i64>,
    /// Range upper bound.
    pub max_amount: Option<i64>,
    /// Sats amount (0 = market price).
    pub amount: i64,
    /// Premium percent (market only).
    pub premium: i64,
    /// Payment methods.
    pub payment_method: String,
    /// Buy-order maker's payout destination, validated by the engine.
    pub buyer_invoice: Option<PayoutDest>,
    /// Requested expiry.
    pub expires_at: Option<i64>,
}

/// Where the buyer wants to be paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutDest {
    /// A BOLT11 invoice, decoded and checked by the engine.
    Invoice(PayoutInvoice),
    /// A Lightning address (`user@domain`) or LNURL-pay, resolved into an invoice for the exact
    /// payout amount when the payout starts.
    Address(String),
}

impl PayoutDest {
    fn check(&self, expected: Sats, env: &Env<'_>) -> Result<(), Reject> {
        match self {
            PayoutDest::Invoice(inv) => check_invoice(inv, expected, env),
            PayoutDest::Address(_) => Ok(()),
        }
    }

    fn apply(&self, o: &mut Order) {
        match self {
            PayoutDest::Invoice(inv) => {
                o.buyer_invoice = Some(inv.clone());
                o.buyer_address = None;
            },
            PayoutDest::Address(a) => {
                o.buyer_invoice = None;
                o.buyer_address = None;
                o.buyer_address = Some(a.clone());
            },
        }
    }
}

fn has_dest(o: &Order) -> bool {
    o.buyer_invoice.is_some() || o.buyer_address.is_some()
}

/// A user or admin command on an existing order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Buyer takes a sell order.
    TakeSell {
        /// Fiat amount of a range take.
        fiat_amount: Option<i64>,
        /// Payout destination given with the take.
        invoice: Option<PayoutDest>,
    },
    /// Seller takes a buy order.
    TakeBuy {
        /// Fiat amount of a range take.
        fiat_amount: Option<i64>,
    },
    /// Buyer gives (or replaces) the payout invoice.
    AddInvoice(PayoutDest),
    /// Buyer says the fiat was sent.
    FiatSent {
        /// Range buy maker's next trade key.
        next_trade: Option<NextTrade>,
    },
    /// Seller releases the sats.
    Release {
        /// Range sell maker's next trade key.
        next_trade: Option<NextTrade>,
    },
    /// Cancel (maker alone while pending; cooperative once taken).
    Cancel,
    /// Open a dispute.
    Dispute,
    /// Rate the counterparty (1-5).
    RateUser(u8),
    /// Maker rotates the trade key of a pending order.
    TradePubkey,
    /// A solver or the admin takes the order's dispute.
    AdminTakeDispute,
    /// Settle the hold invoice and pay the buyer.
    AdminSettle,
    /// Cancel the hold invoice (refund the seller).
    AdminCancel,
}

/// How a payment attempt ended, as reported by the Lightning node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayOutcome {
    /// Still in flight.
    InFlight,
    /// Paid.
    Succeeded {
        /// Routing fee paid.
        fee: Sats,
    },
    /// The node confirmed that every attempt on this hash failed for good (a new attempt may
    /// be made).
    Failed {
        /// Why.
        reason: String,
    },
    /// The call failed without telling the outcome (the node starting up, a lost reply, an
    /// unrecognized error): the payout stays in flight and the node is asked again later.
    Unknown {
        /// What the call answered.
        reason: String,
    },
}

/// Everything that can move an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A command from a user, solver or admin.
    Command {
        /// Who.
        caller: Caller,
        /// What.
        command: Command,
        /// Correlation id to echo.
        request_id: Option<u64>,
    },
    /// The node created the hold invoice.
    HoldCreated {
        /// Hash.
        hash: PaymentHash,
        /// Invoice.
        bolt11: String,
    },
    /// The node refused to create the hold invoice.
    HoldCreateFailed {
        /// Hash.
        hash: PaymentHash,
    },
    /// The seller's HTLC is locked.
    HoldAccepted {
        /// Hash.
        hash: PaymentHash,
        /// Expiry height of the HTLC, if the node reports it.
        htlc_expiry: Option<BlockHeight>,
    },
    /// The node settled the hold invoice.
    HoldSettled {
        /// Hash.
        hash: PaymentHash,
    },
    /// The node reports the hold invoice open (unpaid).
    HoldOpen {
        /// Hash.
        hash: PaymentHash,
    },
    /// The node canceled the hold invoice (on our request or on its own).
    HoldCanceled {
        /// Hash.
        hash: PaymentHash,
    },
    /// Result of a payout attempt.
    PayResult {
        /// Payment hash of the payout invoice.
        hash: PaymentHash,
        /// Outcome.
        outcome: PayOutcome,
    },
    /// A Lightning address was resolved into this invoice (decoded by the engine).
    PayoutResolved {
        /// The invoice.
        invoice: PayoutInvoice,
    },
    /// A Lightning address could not be resolved.
    PayoutResolveFailed {
        /// Why.
        reason: String,
    },
    /// Wall clock reached (or passed) the order's deadline.
    Timeout,
    /// New chain tip (escrow CLTV guard).
    Block(BlockHeight),
}

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
            | Effect::PublishOrder { order_id }
            | Effect::PublishDispute { order_id }
            | Effect::PublishRating { order_id, .. } => Some(*order_id),
            Effect::Notify(n) => n.order_id,
        }
    }
}

pub use crate::user::UserUpdate;

/// The result of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The order after the step.
    pub order: Order,
    /// A new range child order, if the step created one.
    pub child: Option<Order>,
    /// Effects to commit and run.
    pub effects: Vec<Effect>,
    /// User record changes.
    pub users: Vec<UserUpdate>,
}

impl Transition {
    fn new(order: Order) -> Self {
        Transition {
            order,
            child: None,
            effects: Vec::new(),
            users: Vec::new(),
        }
    }

    /// Whether the step changed nothing and asks for nothing.
    #[must_use]
    pub fn is_noop(&self, before: &Order) -> bool {
        self.effects.is_empty()
            && self.users.is_empty()
            && self.child.is_none()
            && &self.order == before
    }

    fn tell(&mut self, party: &Party, request_id: Option<u64>, notice: Notice) {
        let order_id = Some(self.order.id);
        self.effects.push(Effect::Notify(Notify {
            to: party.trade_key,
            protocol: party.protocol,
            request_id,
            order_id,
            trade_index: None,
            notice,
        }));
    }

    fn tell_role(&mut self, role: Role, request_id: Option<u64>, notice: Notice) {
        if let Some(p) = self.order.party(role).cloned() {
            self.tell(&p, request_id, notice);
        }
    }

    /// Both parties; the one who sent the request gets its request id (the direct answer).
    fn tell_both_answering(&mut self, notice: &Notice, caller: &PubKey, rid: Option<u64>) {
        for role in [Role::Seller, Role::Buyer] {
            if let Some(p) = self.order.party(role).cloned() {
                let r = if &p.trade_key == caller { rid } else { None };
                self.tell(&p, r, notice.clone());
            }
        }
    }

    fn tell_both(&mut self, notice: &Notice) {
        self.tell_role(Role::Seller, None, notice.clone());
        self.tell_role(Role::Buyer, None, notice.clone());
    }

    fn publish(&mut self) {
        self.effects.push(Effect::PublishOrder {
            order_id: self.order.id,
        });
    }

    fn publish_dispute(&mut self) {
        self.effects.push(Effect::PublishDispute {
            order_id: self.order.id,
        });
    }

    fn snapshot(&self) -> Box<Order> {
        Box::new(self.order.clone())
    }

    /// Cancels the hold invoice if one may exist and is not final.
    fn cancel_hold(&mut self) {
        if let Some(h) = &mut self.order.hold {
            match h.state {
                HoldState::Requested | HoldState::Open | HoldState::Accepted => {
                    h.state = HoldState::Canceled;
                    let hash = h.hash;
                    self.effects.push(Effect::CancelHold {
                        order_id: self.order.id,
                        hash,
                    });
                },
                HoldState::Settling | HoldState::Settled | HoldState::Canceled => {},
            }
        }
    }
}

/// Why a request was refused. Maps one-to-one onto the protocol's `cant-do` reasons (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    /// Bad or missing trade signature.
    #[error("invalid_signature")]
    InvalidSignature,
    /// Trade index not greater than the last one seen.
    #[error("invalid_trade_index")]
    InvalidTradeIndex,
    /// Amounts are inconsistent.
    #[error("invalid_amount")]
    InvalidAmount,
    /// The payout invoice is not acceptable.
    #[error("invalid_invoice")]
    InvalidInvoice,
    /// Malformed payment request.
    #[error("invalid_payment_request")]
    InvalidPaymentRequest,
    /// Only the buyer may add an invoice / only the seller may release.
    #[error("invalid_peer")]
    InvalidPeer,
    /// Rating outside 1-5.
    #[error("invalid_rating")]
    InvalidRating,
    /// Take of the wrong kind of order.
    #[error("invalid_order_kind")]
    InvalidOrderKind,
    /// The order is not in a status that allows this.
    #[error("invalid_order_status")]
    InvalidOrderStatus,
    /// The sender is not the right party.
    #[error("invalid_pubkey")]
    InvalidPubkey,
    /// Inconsistent parameters.
    #[error("invalid_parameters")]
    InvalidParameters,
    /// Payload does not fit the action.
    #[error("invalid_payload")]
    InvalidPayload,
    /// Already canceled.
    #[error("order_already_canceled")]
    OrderAlreadyCanceled,
    /// The user record could not be created.
    #[error("cant_create_user")]
    CantCreateUser,
    /// Not the caller's order.
    #[error("is_not_your_order")]
    IsNotYourOrder,
    /// The action does not fit the order's status.
    #[error("not_allowed_by_status")]
    NotAllowedByStatus,
    /// Fiat amount outside the range.
    #[error("out_of_range_fiat_amount")]
    OutOfRangeFiatAmount,
    /// Sats amount outside the node's limits.
    #[error("out_of_range_sats_amount")]
    OutOfRangeSatsAmount,
    /// No fresh price.
    #[error("price_too_stale")]
    PriceTooStale,
    /// Not the caller's dispute.
    #[error("is_not_your_dispute")]
    IsNotYourDispute,
    /// The admin took the dispute over.
    #[error("dispute_taken_by_admin")]
    DisputeTakenByAdmin,
    /// Missing permission.
    #[error("not_authorized")]
    NotAuthorized,
    /// Unknown order or dispute.
    #[error("not_found")]
    NotFound,
    /// The dispute is not in a status that allows this.
    #[error("invalid_dispute_status")]
    InvalidDisputeStatus,
    /// Not an action a client may send.
    #[error("invalid_action")]
    InvalidAction,
    /// The taker already has an order waiting on them.
    #[error("pending_order_exists")]
    PendingOrderExists,
    /// Fiat currency not accepted.
    #[error("invalid_fiat_currency")]
    InvalidFiatCurrency,
    /// Too many ids.
    #[error("too_many_requests")]
    TooManyRequests,
    /// The node is in maintenance mode.
    #[error("maintenance_mode")]
    MaintenanceMode,
    /// Needs reputation mode.
    #[error("reputation_identity_required")]
    ReputationIdentityRequired,
}

impl Reject {
    /// The wire spelling of the reason.
    #[must_use]
    pub fn as_wire(&self) -> String {
        self.to_string()
    }
}

/// Maximum length of the payment method field.
pub const MAX_PAYMENT_METHOD_LEN: usize = 500;

fn check_limits(amount: Sats, p: &Policy) -> Result<(), Reject> {
    if amount < p.min_payment_amount || amount > p.max_order_amount {
        return Err(Reject::OutOfRangeSatsAmount);
    }
    Ok(())
}

fn fresh_price(env: &Env<'_>) -> Result<f64, Reject> {
    match env.price {
        Some(pr) if env.now.since(pr.at) <= env.policy.max_price_age_secs => Ok(pr.fiat_per_btc),
        _ => Err(Reject::PriceTooStale),
    }
}

fn quote(fiat: i64, premium: i64, env: &Env<'_>) -> Result<Sats, Reject> {
    let price = fresh_price(env)?;
    let sats = fees::market_quote(fiat, price, premium).ok_or(Reject::OutOfRangeSatsAmount)?;
    check_limits(sats, env.policy)?;
    Ok(sats)
}

fn check_invoice(inv: &PayoutInvoice, expected: Sats, env: &Env<'_>) -> Result<(), Reject> {
    if let Some(a) = inv.amount
        && a != expected
    {
        return Err(Reject::InvalidInvoice);
    }
    if inv.expires_at < env.now.plus(env.policy.invoice_expiration_window_secs) {
        return Err(Reject::InvalidInvoice);
    }
    if inv.min_final_cltv >= env.policy.max_payout_cltv {
        // No route within the node's CLTV limit can reach it; a hostile invoice would pin the
        // node's outgoing HTLC for weeks.
        return Err(Reject::InvalidInvoice);
    }
    Ok(())
}

/// What the buyer receives.
fn buyer_amount(o: &Order) -> Result<Sats, Reject> {
    o.amount.checked_sub(o.fee).ok_or(Reject::InvalidAmount)
}

/// What the seller locks.
fn seller_amount(o: &Order) -> Result<Sats, Reject> {
    o.amount.checked_add(o.fee).ok_or(Reject::InvalidAmount)
}

/// Creates a new order (§9.1). The caller is the maker.
pub fn new_order(caller: &Caller, req: &NewOrder, env: &Env<'_>) -> Result<Transition, Reject> {
    let p = env.policy;
    if !p.accepts_fiat(&req.fiat_code) {
        return Err(Reject::InvalidFiatCurrency);
    }
    if req.fiat_code.is_empty() || req.fiat_code.len() > 10 {
        return Err(Reject::InvalidFiatCurrency);
    }
    if req.payment_method.trim().is_empty() || req.payment_method.len() > MAX_PAYMENT_METHOD_LEN {
        return Err(Reject::InvalidParameters);
    }
    if req.amount < 0 || req.fiat_amount < 0 {
        return Err(Reject::InvalidAmount);
    }
    let range = match (req.min_amount, req.max_amount) {
        (Some(min), Some(max)) => {
            if min < 0 || min >= max || req.amount != 0 {
                return Err(Reject::InvalidAmount);
            }
            Some((min, max))
        },
        (None, None) => {
            if req.fiat_amount <= 0 {
                return Err(Reject::InvalidAmount);
            }
            None
        },
        _ => return Err(Reject::InvalidAmount),
    };
    if req.amount != 0 && req.premium != 0 {
        return Err(Reject::InvalidParameters);
    }
    if !(-100..=100).contains(&req.premium) {
        return Err(Reject::InvalidParameters);
    }
    let amount = Sats(u64::try_from(req.amount).map_err(|_| Reject::InvalidAmount)?);
    let fee = if amount == Sats::ZERO {
        match range {
            Some((min, max)) => {
                quote(min, req.premium, env)?;
                quote(max, req.premium, env)?;
            },
            None => {
                quote(req.fiat_amount, req.premium, env)?;
            },
        }
        Sats::ZERO
    } else {
        check_limits(amount, p)?;
        fees::party_fee(amount, p.fee_ppm)
    };
    let (buyer_invoice, buyer_address) = match (&req.buyer_invoice, req.kind) {
        (Some(PayoutDest::Address(a)), Kind::Buy) => (None, Some(a.clone())),
        (Some(PayoutDest::Invoice(inv)), Kind::Buy) => {
            if amount == Sats::ZERO {
                // The amount is only known at take time: only an amountless invoice can match.
                if inv.amount.is_some() {
                    return Err(Reject::InvalidInvoice);
                }
                check_invoice(inv, Sats::ZERO, env)?;
            } else {
                check_invoice(
                    inv,
                    amount.checked_sub(fee).ok_or(Reject::InvalidAmount)?,
                    env,
                )?;
            }
            (Some(inv.clone()), None)
        },
        (Some(_), Kind::Sell) => return Err(Reject::InvalidParameters),
        (None, _) => (None, None),
    };
    let expires_at = match req.expires_at {
        Some(t) if t > 0 && u64::try_from(t).is_ok_and(|t| t > env.now.0) => {
            let t = u64::try_from(t).unwrap_or(0);
            Timestamp(t.min(env.now.plus(p.max_expiration_secs).0))
        },
        _ => env.now.plus(p.pending_expiration_secs),
    };
    let order = Order {
        id: env.derive_id(b"order"),
        version: 0,
        kind: req.kind,
        status: Status::Pending,
        fiat_code: req.fiat_code.clone(),
        fiat_amount: if range.is_some() { 0 } else { req.fiat_amount },
        min_amount: range.map(|r| r.0),
        max_amount: range.map(|r| r.1),
        amount,
        premium: req.premium,
        price_from_api: amount == Sats::ZERO,
        payment_method: req.payment_method.clone(),
        fee,
        created_at: env.now,
        expires_at,
        taken_at: None,
        maker: caller.party(),
        taker: None,
        buyer_invoice,
        buyer_address,
        hold: None,
        payout: None,
        cancel_initiator: None,
        dispute: None,
        buyer_rated: false,
        seller_rated: false,
        next_trade: None,
        range_parent: None,
        abandoned_holds: Vec::new(),
        deadline: Some(expires_at),
    };
    let mut t = Transition::new(order);
    let snap = t.snapshot();
    let maker = t.order.maker.clone();
    t.effects.push(Effect::Notify(Notify {
        to: maker.trade_key,
        protocol: maker.protocol,
        request_id: None,
        order_id: Some(t.order.id),
        trade_index: Some(maker.trade_index),
        notice: Notice::NewOrder(snap),
    }));
    t.publish();
    Ok(t)
}

/// Steps an existing order.
pub fn step(order: &Order, input: &Input, env: &Env<'_>) -> Result<Transition, Reject> {
    let mut t = Transition::new(order.clone());
    match input {
        Input::Command {
            caller,
            command,
            request_id,
        } => {
            command_step(&mut t, caller, command, *request_id, env)?;
        },
        Input::HoldCreated { hash, bolt11 } => hold_created(&mut t, *hash, bolt11),
        Input::HoldCreateFailed { hash } => hold_create_failed(&mut t, *hash, env),
        Input::HoldAccepted { hash, htlc_expiry } => {
            hold_accepted(&mut t, *hash, *htlc_expiry, env)
        },
        Input::HoldSettled { hash } => hold_settled(&mut t, *hash, env)?,
        Input::HoldOpen { hash } => hold_open(&mut t, *hash),
        Input::HoldCanceled { hash } => hold_canceled(&mut t, *hash, env),
        Input::PayResult { hash, outcome } => pay_result(&mut t, *hash, outcome, env)?,
        Input::PayoutResolved { invoice } => payout_resolved(&mut t, invoice, env)?,
        Input::PayoutResolveFailed { .. } => {
            let resolving = t
                .order
                .payout
                .as_ref()
                .is_some_and(|p| p.state == PayoutState::Resolving);
            if resolving && t.order.status == Status::SettledHoldInvoice {
                payout_failed(&mut t, env);
            }
        },
        Input::Timeout => timeout(&mut t, env)?,
        Input::Block(h) => block(&mut t, *h, env),
    }
    if t.order != *order || !t.effects.is_empty() {
        t.order.version = order.version.saturating_add(1);
    }
    Ok(t)
}

fn command_step(
    t: &mut Transition,
    caller: &Caller,
    command: &Command,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let o = &t.order;
    let role = o.role_of(&caller.trade_key);
    match command {
        Command::TakeSell {
            fiat_amount,
            invoice,
        } => take(
            t,
            caller,
            Kind::Sell,
            *fiat_amount,
            invoice.as_ref(),
            rid,
            env,
        ),
        Command::TakeBuy { fiat_amount } => {
            take(t, caller, Kind::Buy, *fiat_amount, None, rid, env)
        },
        Command::AddInvoice(inv) => add_invoice(t, role, inv, rid, env),
        Command::FiatSent { next_trade } => {
            if role != Some(Role::Buyer) {
                return Err(Reject::InvalidPubkey);
            }
            if o.status != Status::Active {
                return Err(Reject::InvalidOrderStatus);
            }
            let range_buy = o.is_range() && o.kind == Kind::Buy;
            t.order.status = Status::FiatSent;
            if range_buy {
                t.order.next_trade = *next_trade;
            }
            let (Some(buyer), Some(seller)) = (t.order.buyer().cloned(), t.order.seller().cloned())
            else {
                return Err(Reject::NotAllowedByStatus);
            };
            t.tell(
                &seller,
                None,
                Notice::FiatSentOk {
                    peer: buyer.trade_key,
                },
            );
            t.tell(
                &buyer,
                rid,
                Notice::FiatSentOk {
                    peer: seller.trade_key,
                },
            );
            Ok(())
        },
        Command::Release { next_trade } => {
            if role != Some(Role::Seller) {
                return Err(Reject::InvalidPeer);
            }
            if !matches!(
                o.status,
                Status::FiatSent | Status::Dispute | Status::Active
            ) {
                return Err(Reject::NotAllowedByStatus);
            }
            if o.status == Status::Active && !has_dest(o) {
                return Err(Reject::NotAllowedByStatus);
            }
            let range_sell = o.is_range() && o.kind == Kind::Sell;
            start_settle(t, rid)?;
            if range_sell {
                t.order.next_trade = *next_trade;
            }
            if let Some(d) = &mut t.order.dispute
                && d.status.is_open()
            {
                d.status = DisputeStatus::Released;
                t.publish_dispute();
            }
            Ok(())
        },
        Command::Cancel => cancel(t, caller, role, rid, env.now),
        Command::Dispute => {
            let Some(r) = role else {
                return Err(Reject::InvalidPubkey);
            };
            if !matches!(o.status, Status::Active | Status::FiatSent) {
                return Err(Reject::NotAllowedByStatus);
            }
            open_dispute(t, r, rid, env);
            Ok(())
        },
        Command::RateUser(r) => rate(t, role, *r, rid, env),
        Command::TradePubkey => {
            if o.status != Status::Pending {
                return Err(Reject::InvalidOrderStatus);
            }
            if o.maker.is_full_privacy() || caller.identity != o.maker.identity {
                return Err(Reject::InvalidPubkey);
            }
            t.order.maker.trade_key = caller.trade_key;
            t.order.maker.protocol = caller.protocol;
            t.order.maker.trade_index = caller.trade_index;
            let p = t.order.maker.clone();
            t.tell(&p, rid, Notice::TradePubkey);
            t.publish();
            Ok(())
        },
        Command::AdminTakeDispute => admin_take(t, caller, rid, env),
        Command::AdminSettle => admin_resolve(t, caller, rid, true),
        Command::AdminCancel => admin_resolve(t, caller, rid, false),
    }
}

fn take(
    t: &mut Transition,
    caller: &Caller,
    kind: Kind,
    fiat_amount: Option<i64>,
    invoice: Option<&PayoutDest>,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let o = &t.order;
    if o.kind != kind {
        return Err(Reject::InvalidOrderKind);
    }
    if o.status != Status::Pending || env.now >= o.expires_at {
        return Err(Reject::InvalidOrderStatus);
    }
    if caller.trade_key == o.maker.trade_key
        || (!o.maker.is_full_privacy() && caller.identity == o.maker.identity)
    {
        return Err(Reject::InvalidPubkey);
    }
    let fiat = match (o.min_amount, o.max_amount) {
        (Some(min), Some(max)) => match fiat_amount {
            Some(f) if f >= min && f <= max && f > 0 => f,
            _ => return Err(Reject::OutOfRangeSatsAmount),
        },
        _ => o.fiat_amount,
    };
    let (amount, fee) = if o.price_from_api || o.amount == Sats::ZERO {
        let a = quote(fiat, o.premium, env)?;
        (a, fees::party_fee(a, env.policy.fee_ppm))
    } else {
        (o.amount, o.fee)
    };
    if let Some(dest) = invoice {
        dest.check(amount.checked_sub(fee).ok_or(Reject::InvalidAmount)?, env)?;
    }
    let ord = &mut t.order;
    ord.fiat_amount = fiat;
    ord.amount = amount;
    ord.fee = fee;
    ord.taker = Some(caller.party());
    ord.taken_at = Some(env.now);
    if let Some(dest) = invoice {
        dest.apply(ord);
    }
    match kind {
        Kind::Sell if invoice.is_none() => {
            ord.status = Status::WaitingBuyerInvoice;
            ord.deadline = Some(env.now.plus(env.policy.waiting_step_secs));
            let snap = t.snapshot();
            t.tell_role(Role::Buyer, rid, Notice::AddInvoice(snap));
            t.tell_role(Role::Seller, None, Notice::WaitingBuyerInvoice);
            t.publish();
        },
        Kind::Sell | Kind::Buy => {
            request_hold(t, env, rid)?;
            t.publish();
        },
    }
    Ok(())
}

/// Moves to `waiting-payment` and asks the node for a hold invoice.
fn request_hold(t: &mut Transition, env: &Env<'_>, rid: Option<u64>) -> Result<(), Reject> {
    let preimage = Preimage(env.derive(b"preimage"));
    let hash = preimage.hash();
    let amount = seller_amount(&t.order)?;
    let o = &mut t.order;
    o.status = Status::WaitingPayment;
    o.taken_at = Some(env.now);
    o.deadline = Some(env.now.plus(env.policy.waiting_step_secs));
    o.hold = Some(Hold {
        hash,
        preimage,
        amount,
        bolt11: None,
        state: HoldState::Requested,
        htlc_expiry: None,
        request_id: rid,
    });
    let memo = format!(
        "Escrow amount Order #{}: {} BTC for {} {} - it stays frozen until you release it",
        o.id,
        if o.kind == Kind::Sell { "SELL" } else { "BUY" },
        o.fiat_code,
        o.fiat_amount
    );
    t.effects.push(Effect::CreateHold {
        order_id: o.id,
        hash,
        amount,
        cltv_delta: env.policy.hold_cltv_delta,
        expiry_secs: env.policy.waiting_step_secs,
        memo,
    });
    Ok(())
}

fn add_invoice(
    t: &mut Transition,
    role: Option<Role>,
    inv: &PayoutDest,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    if role != Some(Role::Buyer) {
        return Err(Reject::InvalidPeer);
    }
    let o = &t.order;
    match o.status {
        Status::WaitingBuyerInvoice => {
            inv.check(buyer_amount(o)?, env)?;
            let accepted = o
                .hold
                .as_ref()
                .is_some_and(|h| h.state == HoldState::Accepted);
            inv.apply(&mut t.order);
            if accepted {
                activate(t, rid);
            } else {
                request_hold(t, env, rid)?;
            }
            Ok(())
        },
        Status::SettledHoldInvoice => {
            let Some(p) = &o.payout else {
                return Err(Reject::NotAllowedByStatus);
            };
            if !matches!(p.state, PayoutState::Failed | PayoutState::NeedInvoice) {
                return Err(Reject::NotAllowedByStatus);
            }
            inv.check(buyer_amount(o)?, env)?;
            inv.apply(&mut t.order);
            if let Some(p) = &mut t.order.payout {
                // A new destination starts a new series of attempts.
                p.attempts = 0;
            }
            start_payout(t, env)?;
            t.tell_role(Role::Buyer, rid, Notice::InvoiceUpdated);
            Ok(())
        },
        _ => Err(Reject::NotAllowedByStatus),
    }
}

/// Escrow locked and buyer invoice known: the fiat leg starts. `buyer_rid` is the request id of
/// the buyer's `add-invoice` when that request is what completed the step (its direct answer).
fn activate(t: &mut Transition, buyer_rid: Option<u64>) {
    t.order.status = Status::Active;
    t.order.deadline = None;
    let snap = t.snapshot();
    t.tell_role(Role::Seller, None, Notice::BuyerTookOrder(snap.clone()));
    t.tell_role(
        Role::Buyer,
        buyer_rid,
        Notice::HoldInvoicePaymentAccepted(snap),
    );
}

/// Asks the node to settle the hold. `rid` is the seller's `release` request id, kept on the
/// hold and echoed on the `hold-invoice-payment-settled` that answers it once the node settled.
fn start_settle(t: &mut Transition, rid: Option<u64>) -> Result<(), Reject> {
    let Some(h) = &mut t.order.hold else {
        return Err(Reject::NotAllowedByStatus);
    };
    if h.state != HoldState::Accepted {
        return Err(Reject::NotAllowedByStatus);
    }
    h.state = HoldState::Settling;
    h.request_id = rid;
    let preimage = h.preimage;
    t.order.status = Status::SettledHoldInvoice;
    t.order.deadline = None;
    t.effects.push(Effect::SettleHold {
        order_id: t.order.id,
        preimage,
    });
    Ok(())
}

/// Starts (or retries) the buyer payout.
///
/// The payout rule: a payment hash's outcome is known only from the node's status for that
/// hash. A new destination (a new invoice, a fresh Lightning-address resolution) is taken only
/// when the current one is not in flight, which the callers guarantee: they reach here from
/// `Failed` / `NeedInvoice` (the node confirmed every attempt failed), `Resolving` or a first
/// payout. The hashes left behind are kept in `previous`.
fn start_payout(t: &mut Transition, env: &Env<'_>) -> Result<(), Reject> {
    let amount = buyer_amount(&t.order)?;
    let old = t.order.payout.clone();
    if let Some(p) = &old
        && p.state == PayoutState::InFlight
    {
        // Never switch away from (or re-send) a hash whose outcome is not known: ask the node.
        if !p.checking {
            let hash = p.hash;
            if let Some(p) = &mut t.order.payout {
                p.checking = true;
            }
            t.effects.push(Effect::CheckPayment {
                order_id: t.order.id,
                hash,
            });
        }
        t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
        return Ok(());
    }
    let mut previous = old.as_ref().map(|p| p.previous.clone()).unwrap_or_default();
    let duplicates = old
        .as_ref()
        .map(|p| p.duplicates.clone())
        .unwrap_or_default();
    let remember = |previous: &mut Vec<PaymentHash>, h: PaymentHash, next: Option<PaymentHash>| {
        if h != PaymentHash([0; 32]) && Some(h) != next && !previous.contains(&h) {
            previous.push(h);
        }
    };
    if let (None, Some(address)) = (&t.order.buyer_invoice, t.order.buyer_address.clone()) {
        // A Lightning address: get an invoice for the exact amount first. Nothing is paid until
        // the resolved invoice is committed, so a re-resolution can never pay twice.
        let attempts = old.as_ref().map_or(0, |p| p.attempts);
        if let Some(p) = &old {
            remember(&mut previous, p.hash, None);
        }
        t.order.payout = Some(Payout {
            invoice: address.clone(),
            hash: PaymentHash([0; 32]),
            amount,
            attempts,
            state: PayoutState::Resolving,
            routing_fee: Sats::ZERO,
            previous,
            checking: false,
            paid_hash: None,
            duplicates,
        });
        t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
        t.effects.push(Effect::ResolvePayout {
            order_id: t.order.id,
            address,
            amount,
        });
        return Ok(());
    }
    let Some(inv) = t.order.buyer_invoice.clone() else {
        // Cannot happen for an order that reached settle; ask the buyer rather than stall.
        let snap = t.snapshot();
        t.tell_role(Role::Buyer, None, Notice::AddInvoice(snap));
        return Ok(());
    };
    let attempts = match &old {
        Some(p) if p.hash == inv.hash || p.state == PayoutState::Resolving => p.attempts,
        _ => 0,
    };
    if let Some(p) = &old {
        remember(&mut previous, p.hash, Some(inv.hash));
    }
    t.order.payout = Some(Payout {
        invoice: inv.bolt11.clone(),
        hash: inv.hash,
        amount,
        attempts,
        state: PayoutState::InFlight,
        routing_fee: Sats::ZERO,
        previous,
        checking: false,
        paid_hash: None,
        duplicates,
    });
    t.order.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
    t.effects.push(Effect::Pay {
        order_id: t.order.id,
        hash: inv.hash,
        invoice: inv.bolt11,
        amount,
        fee_limit: fees::routing_fee_cap(amount, env.policy.max_routing_fee_ppm),
    });
    Ok(())
}

/// `taker_rid`: the taker's `cancel` request id when the taker asked (its direct answer).
fn reset_to_pending(t: &mut Transition, now: Timestamp, taker_rid: Option<u64>) {
    let o = &mut t.order;
    let taker = o.taker.take();
    o.status = Status::Pending;
    o.taken_at = None;
    if let Some(h) = o.hold.take() {
        o.abandoned_holds.retain(|x| *x != h.hash);
        o.abandoned_holds.push(h.hash);
        let extra = o
            .abandoned_holds
            .len()
            .saturating_sub(crate::order::MAX_ABANDONED_HOLDS);
        o.abandoned_holds.drain(..extra);
    }
    o.payout = None;
    o.cancel_initiator = None;
    if o.kind == Kind::Sell {
        // The buyer was the taker: its invoice leaves with it.
        o.buyer_invoice = None;
    }
    if o.price_from_api {
        o.amount = Sats::ZERO;
        o.fee = Sats::ZERO;
    }
    if o.is_range() {
        o.fiat_amount = 0;
    }
    o.deadline = Some(o.expires_at.max(now));
    let snap = t.snapshot();
    if let Some(tk) = taker {
        t.tell(&tk, taker_rid, Notice::Canceled);
    }
    let maker = t.order.maker.clone();
    t.tell(&maker, None, Notice::NewOrder(snap));
    t.publish();
}

fn cancel(
    t: &mut Transition,
    caller: &Caller,
    role: Option<Role>,
    rid: Option<u64>,
    now: Timestamp,
) -> Result<(), Reject> {
    let o = &t.order;
    let is_maker = caller.trade_key == o.maker.trade_key;
    match o.status {
        Status::Canceled | Status::CooperativelyCanceled | Status::CanceledByAdmin => {
            Err(Reject::OrderAlreadyCanceled)
        },
        Status::Pending => {
            if !is_maker {
                return Err(Reject::IsNotYourOrder);
            }
            t.order.status = Status::Canceled;
            t.order.deadline = None;
            let m = t.order.maker.clone();
            t.tell(&m, rid, Notice::Canceled);
            t.publish();
            Ok(())
        },
        Status::WaitingPayment | Status::WaitingBuyerInvoice => {
            if is_maker {
                t.cancel_hold();
                t.order.status = Status::Canceled;
                t.order.deadline = None;
                t.tell_both_answering(&Notice::Canceled, &caller.trade_key, rid);
                t.publish();
                Ok(())
            } else if role.is_some() {
                // The caller is the taker: the order goes back to the book.
                t.cancel_hold();
                reset_to_pending(t, now, rid);
                Ok(())
            } else {
                Err(Reject::InvalidPubkey)
            }
        },
        Status::Active | Status::FiatSent | Status::Dispute => {
            let Some(r) = role else {
                return Err(Reject::InvalidPubkey);
            };
            match o.cancel_initiator {
                None => {
                    t.order.cancel_initiator = Some(r);
                    t.tell_role(r, rid, Notice::CooperativeCancelInitiatedByYou);
                    t.tell_role(r.other(), None, Notice::CooperativeCancelInitiatedByPeer);
                    Ok(())
                },
                Some(first) if first == r => Err(Reject::InvalidPubkey),
                Some(_) => {
                    t.cancel_hold();
                    t.order.status = Status::CooperativelyCanceled;
                    t.order.deadline = None;
                    if let Some(d) = &mut t.order.dispute
                        && d.status.is_open()
                    {
                        d.status = DisputeStatus::CooperativelyCanceled;
                        t.publish_dispute();
                    }
                    t.tell_both_answering(
                        &Notice::CooperativeCancelAccepted,
                        &caller.trade_key,
                        rid,
                    );
                    t.publish();
                    Ok(())
                },
            }
        },
        _ => Err(Reject::NotAllowedByStatus),
    }
}

fn open_dispute(t: &mut Transition, initiator: Role, rid: Option<u64>, env: &Env<'_>) {
    let id = env.derive_id(b"dispute");
    let prev = t.order.status;
    t.order.dispute = Some(Dispute {
        id,
        status: DisputeStatus::Initiated,
        initiator,
        previous_status: prev,
        solver: None,
        solver_write: false,
        taken_by_admin: false,
        created_at: env.now,
        taken_at: None,
        expiry_warned: false,
        solver_party: None,
    });
    t.order.status = Status::Dispute;
    t.order.deadline = None;
    t.tell_role(
        initiator,
        rid,
        Notice::DisputeInitiatedByYou { dispute_id: id },
    );
    t.tell_role(
        initiator.other(),
        None,
        Notice::DisputeInitiatedByPeer { dispute_id: id },
    );
    t.publish_dispute();
}

/// Tells both parties the dispute just opened on the buyer's behalf was the node's doing.
fn opened_by_node(t: &mut Transition, expiry: Option<BlockHeight>) {
    if let Some(d) = &t.order.dispute {
        let dispute_id = d.id;
        t.tell_both(&Notice::DisputeOpenedByNode { dispute_id, expiry });
    }
}

fn rate(
    t: &mut Transition,
    role: Option<Role>,
    r: u8,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    if !(1..=5).contains(&r) {
        return Err(Reject::InvalidRating);
    }
    let Some(role) = role else {
        return Err(Reject::InvalidPubkey);
    };
    let o = &t.order;
    let allowed = match role {
        Role::Buyer => o.status == Status::Success,
        Role::Seller => matches!(o.status, Status::Success | Status::SettledHoldInvoice),
    };
    if !allowed {
        return Err(Reject::InvalidOrderStatus);
    }
    let already = match role {
        Role::Buyer => o.buyer_rated,
        Role::Seller => o.seller_rated,
    };
    if already {
        // Each side rates once; a repeat is ignored (as the reference does).
        return Ok(());
    }
    let Some(rated) = o.party(role.other()).cloned() else {
        return Ok(());
    };
    match role {
        Role::Buyer => t.order.buyer_rated = true,
        Role::Seller => t.order.seller_rated = true,
    }
    if rated.is_full_privacy() {
        // Full-privacy users carry no reputation; nothing to record or acknowledge.
        return Ok(());
    }
    t.users.push(crate::machine::UserUpdate::Rating {
        identity: rated.identity,
        rating: r,
        at: env.now,
    });
    t.tell_role(role, rid, Notice::RateReceived(r));
    t.effects.push(Effect::PublishRating {
        order_id: t.order.id,
        identity: rated.identity,
        trade_key: rated.trade_key,
    });
    Ok(())
}

fn admin_take(
    t: &mut Transition,
    caller: &Caller,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let is_admin = caller.authority == Authority::Admin;
    let write = match caller.authority {
        Authority::Admin => true,
        Authority::Solver { write } => write,
        Authority::User => return Err(Reject::NotAuthorized),
    };
    if is_party(&t.order, caller) {
        // A buyer or seller never judges their own trade.
        return Err(Reject::NotAuthorized);
    }
    let Some(d) = &t.order.dispute else {
        return Err(Reject::NotFound);
    };
    if !d.status.is_open() {
        return Err(Reject::InvalidDisputeStatus);
    }
    let allowed = match d.solver {
        None => true,
        Some(s) if s == caller.identity => true,
        Some(_) => is_admin || (write && !d.solver_write && !d.taken_by_admin),
    };
    if !allowed {
        return Err(Reject::InvalidPubkey);
    }
    let id = d.id;
    if let Some(d) = &mut t.order.dispute {
        d.status = DisputeStatus::InProgress;
        d.solver = Some(caller.identity);
        d.solver_write = write;
        d.taken_by_admin = is_admin;
        d.taken_at = Some(env.now);
        d.solver_party = Some(caller.party());
    }
    let snap = t.snapshot();
    let solver_party = caller.party();
    t.tell(
        &solver_party,
        rid,
        Notice::AdminTookDisputeSolver {
            dispute_id: id,
            order: snap,
        },
    );
    t.tell_both(&Notice::AdminTookDisputePeer {
        solver: caller.identity,
    });
    t.publish_dispute();
    Ok(())
}

/// Whether the caller is the buyer or the seller of the order (by trade key or identity).
fn is_party(o: &Order, caller: &Caller) -> bool {
    o.trade_keys()
        .any(|k| *k == caller.trade_key || *k == caller.identity)
        || o.identities().any(|i| *i == caller.identity)
}

fn admin_resolve(
    t: &mut Transition,
    caller: &Caller,
    rid: Option<u64>,
    settle: bool,
) -> Result<(), Reject> {
    let o = &t.order;
    let admin = caller.authority == Authority::Admin;
    if caller.authority == Authority::User || is_party(o, caller) {
        return Err(Reject::NotAuthorized);
    }
    // The operator may cancel an order that was never taken.
    if !settle && admin && o.status == Status::Pending {
        t.order.status = Status::CanceledByAdmin;
        t.order.deadline = None;
        let m = t.order.maker.clone();
        t.tell(&m, None, Notice::AdminCanceled);
        t.tell(&caller.party(), rid, Notice::AdminCanceled);
        t.publish();
        return Ok(());
    }
    if o.status == Status::CooperativelyCanceled {
        t.tell(&caller.party(), rid, Notice::CooperativeCancelAccepted);
        return Ok(());
    }
    if o.status != Status::Dispute {
        return Err(Reject::NotAllowedByStatus);
    }
    let Some(d) = &o.dispute else {
        return Err(Reject::NotAllowedByStatus);
    };
    if d.solver != Some(caller.identity) {
        return Err(if d.taken_by_admin {
            Reject::DisputeTakenByAdmin
        } else {
            Reject::IsNotYourDispute
        });
    }
    let write = match caller.authority {
        Authority::Admin => true,
        Authority::Solver { write } => write,
        Authority::User => false,
    };
    if !write {
        return Err(Reject::NotAuthorized);
    }
    if settle {
        start_settle(t, None)?;
        if let Some(d) = &mut t.order.dispute {
            d.status = DisputeStatus::Settled;
        }
        t.tell(&caller.party(), rid, Notice::AdminSettled);
        t.tell_both(&Notice::AdminSettled);
    } else {
        t.cancel_hold();
        t.order.status = Status::CanceledByAdmin;
        t.order.deadline = None;
        if let Some(d) = &mut t.order.dispute {
            d.status = DisputeStatus::SellerRefunded;
        }
        t.tell(&caller.party(), rid, Notice::AdminCanceled);
        t.tell_both(&Notice::AdminCanceled);
        t.publish();
    }
    t.publish_dispute();
    Ok(())
}

fn hold_created(t: &mut Transition, hash: PaymentHash, bolt11: &str) {
    let o = &mut t.order;
    let current = o.hold.as_mut().filter(|h| h.hash == hash);
    match current {
        Some(h) if h.state == HoldState::Requested && o.status == Status::WaitingPayment => {
            h.state = HoldState::Open;
            h.bolt11 = Some(bolt11.to_owned());
            // These answer the take / add-invoice that asked for the hold: echo its id (as the
            // reference does, to both parties; mostro-cli requires it on the `pay-invoice`
            // that answers its `take-buy`).
            let rid = h.request_id;
            let snap = t.snapshot();
            t.tell_role(
                Role::Seller,
                rid,
                Notice::PayInvoice {
                    order: snap,
                    bolt11: bolt11.to_owned(),
                },
            );
            t.tell_role(Role::Buyer, rid, Notice::WaitingSellerToPay);
        },
        Some(h) if h.state == HoldState::Canceled => {
            // Created after we gave up on it: make sure it cannot be paid.
            t.effects.push(Effect::CancelHold {
                order_id: o.id,
                hash,
            });
        },
        Some(_) => {},
        None => {
            // A hold invoice this order no longer uses.
            t.effects.push(Effect::CancelHold {
                order_id: o.id,
                hash,
            });
        },
    }
}

fn hold_create_failed(t: &mut Transition, hash: PaymentHash, env: &Env<'_>) {
    let o = &t.order;
    let ours = o
        .hold
        .as_ref()
        .is_some_and(|h| h.hash == hash && h.state == HoldState::Requested);
    if ours && o.status == Status::WaitingPayment {
        if let Some(h) = &mut t.order.hold {
            h.state = HoldState::Canceled;
        }
        reset_to_pending(t, env.now, None);
    }
}

fn hold_accepted(
    t: &mut Transition,
    hash: PaymentHash,
    htlc_expiry: Option<BlockHeight>,
    env: &Env<'_>,
) {
    let o = &mut t.order;
    let Some(h) = o.hold.as_mut().filter(|h| h.hash == hash) else {
        t.effects.push(Effect::CancelHold {
            order_id: o.id,
            hash,
        });
        return;
    };
    match h.state {
        HoldState::Requested | HoldState::Open if o.status == Status::WaitingPayment => {
            h.state = HoldState::Accepted;
            h.htlc_expiry = htlc_expiry;
            if has_dest(o) {
                activate(t, None);
            } else {
                o.status = Status::WaitingBuyerInvoice;
                o.taken_at = Some(env.now);
                o.deadline = Some(env.now.plus(env.policy.waiting_step_secs));
                let snap = t.snapshot();
                t.tell_role(Role::Buyer, None, Notice::AddInvoice(snap));
                t.tell_role(Role::Seller, None, Notice::WaitingBuyerInvoice);
            }
        },
        HoldState::Settling => {
            if h.htlc_expiry.is_none() {
                h.htlc_expiry = htlc_expiry;
            }
            // We asked to settle but the node still holds the HTLC (the settle was lost, or
            // the node restarted before it took effect): ask again (settle is idempotent).
            let preimage = h.preimage;
            t.effects.push(Effect::SettleHold {
                order_id: o.id,
                preimage,
            });
        },
        HoldState::Accepted | HoldState::Settled => {
            if h.htlc_expiry.is_none() {
                h.htlc_expiry = htlc_expiry;
            }
        },
        HoldState::Requested | HoldState::Open | HoldState::Canceled => {
            // Paid after the order moved on: refund the seller.
            h.state = HoldState::Canceled;
            t.effects.push(Effect::CancelHold {
                order_id: o.id,
                hash,
            });
        },
    }
}

fn hold_settled(t: &mut Transition, hash: PaymentHash, env: &Env<'_>) -> Result<(), Reject> {
    let o = &mut t.order;
    let Some(h) = o.hold.as_mut().filter(|h| h.hash == hash) else {
        return Ok(());
    };
    if h.state != HoldState::Settling {
        return Ok(());
    }
    h.state = HoldState::Settled;
    let release_rid = h.request_id;
    let admin = o
        .dispute
        .as_ref()
        .is_some_and(|d| d.status == DisputeStatus::Settled);
    if !admin {
        t.tell_role(Role::Buyer, None, Notice::Released);
        t.tell_role(Role::Seller, release_rid, Notice::HoldInvoicePaymentSettled);
    }
    t.tell_role(Role::Seller, None, Notice::Rate);
    make_child(t, env);
    start_payout(t, env)
}

fn make_child(t: &mut Transition, env: &Env<'_>) {
    let o = &t.order;
    let (Some(min), Some(max), Some(next)) = (o.min_amount, o.max_amount, o.next_trade) else {
        return;
    };
    let Some(rest) = max.checked_sub(o.fiat_amount) else {
        return;
    };
    if rest < min || rest <= 0 {
        return;
    }
    let (cmin, cmax, cfiat) = if rest == min {
        (None, None, rest)
    } else {
        (Some(min), Some(rest), 0)
    };
    let identity = if o.maker.is_full_privacy() {
        next.trade_key
    } else {
        o.maker.identity
    };
    let child = Order {
        id: env.derive_id(b"child"),
        version: 0,
        kind: o.kind,
        status: Status::Pending,
        fiat_code: o.fiat_code.clone(),
        fiat_amount: cfiat,
        min_amount: cmin,
        max_amount: cmax,
        amount: Sats::ZERO,
        premium: o.premium,
        price_from_api: true,
        payment_method: o.payment_method.clone(),
        fee: Sats::ZERO,
        created_at: env.now,
        expires_at: o
            .expires_at
            .max(env.now.plus(env.policy.pending_expiration_secs)),
        taken_at: None,
        maker: Party {
            trade_key: next.trade_key,
            identity,
            trade_index: next.trade_index,
            protocol: o.maker.protocol,
        },
        taker: None,
        buyer_invoice: None,
        buyer_address: None,
        hold: None,
        payout: None,
        cancel_initiator: None,
        dispute: None,
        buyer_rated: false,
        seller_rated: false,
        next_trade: None,
        range_parent: Some(o.id),
        abandoned_holds: Vec::new(),
        deadline: None,
    };
    let mut child = child;
    child.deadline = Some(child.expires_at);
    let cid = child.id;
    let maker = child.maker.clone();
    if !maker.is_full_privacy() {
        t.users.push(UserUpdate::TradeIndex {
            identity: maker.identity,
            index: next.trade_index,
        });
    }
    t.effects.push(Effect::Notify(Notify {
        to: maker.trade_key,
        protocol: maker.protocol,
        request_id: None,
        order_id: Some(cid),
        trade_index: Some(next.trade_index),
        notice: Notice::NewOrder(Box::new(child.clone())),
    }));
    t.effects.push(Effect::PublishOrder { order_id: cid });
    t.child = Some(child);
}

fn hold_open(t: &mut Transition, hash: PaymentHash) {
    let o = &t.order;
    let gone = match &o.hold {
        Some(h) if h.hash == hash => h.state == HoldState::Canceled,
        _ => o.abandoned_holds.contains(&hash),
    };
    if gone {
        // We gave this invoice up but the node still offers it: make sure it cannot be paid.
        t.effects.push(Effect::CancelHold {
            order_id: o.id,
            hash,
        });
    }
}

fn hold_canceled(t: &mut Transition, hash: PaymentHash, env: &Env<'_>) {
    let o = &mut t.order;
    let Some(h) = o.hold.as_mut().filter(|h| h.hash == hash) else {
        return;
    };
    let was = h.state;
    if was == HoldState::Settled {
        return;
    }
    h.state = HoldState::Canceled;
    if o.status.is_terminal() {
        return;
    }
    match (o.status, was) {
        (Status::WaitingPayment, HoldState::Requested | HoldState::Open) => {
            // The unpaid invoice expired on the node; the step timeout decides what happens.
        },
        (Status::WaitingBuyerInvoice | Status::Active, _)
        | (Status::SettledHoldInvoice, HoldState::Settling) => {
            o.status = Status::Canceled;
            o.deadline = None;
            t.tell_both(&Notice::HoldInvoicePaymentCanceled);
            t.publish();
        },
        (Status::FiatSent, _) => {
            t.tell_both(&Notice::HoldInvoicePaymentCanceled);
            open_dispute(t, Role::Buyer, None, env);
            opened_by_node(t, None);
        },
        (Status::Dispute, _) => {
            t.tell_both(&Notice::HoldInvoicePaymentCanceled);
        },
        _ => {},
    }
}

fn pay_result(
    t: &mut Transition,
    hash: PaymentHash,
    outcome: &PayOutcome,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let o = &mut t.order;
    let Some(p) = o.payout.as_mut() else {
        return Ok(());
    };
    if !p.knows(&hash) {
        return Ok(());
    }
    if hash == p.hash {
        p.checking = false;
    }
    if let PayOutcome::Succeeded { fee } = outcome {
        match o.status {
            Status::SettledHoldInvoice => {
                // Every success the node reports is recorded, whichever hash of the order it is
                // for (a success on an earlier hash is an alarm, counted by the engine).
                let current = p.hash;
                let was_in_flight = p.state == PayoutState::InFlight;
                p.state = PayoutState::Succeeded;
                p.routing_fee = *fee;
                p.paid_hash = Some(hash);
                o.status = Status::Success;
                o.deadline = None;
                if hash != current && was_in_flight {
                    // The current attempt may still land: find out, so a duplicate is recorded.
                    t.effects.push(Effect::CheckPayment {
                        order_id: t.order.id,
                        hash: current,
                    });
                }
                t.tell_role(Role::Buyer, None, Notice::PurchaseCompleted);
                t.tell_role(Role::Buyer, None, Notice::Rate);
                t.publish();
            },
            Status::Success => {
                let paid = p.paid_hash.unwrap_or(p.hash);
                if hash != paid && !p.duplicates.contains(&hash) {
                    p.duplicates.push(hash);
                }
            },
            _ => {},
        }
        return Ok(());
    }
    if o.status != Status::SettledHoldInvoice || hash != p.hash {
        // Nothing to learn from a non-success on an earlier hash or after the payout ended.
        return Ok(());
    }
    match outcome {
        PayOutcome::InFlight | PayOutcome::Unknown { .. } => {
            if matches!(outcome, PayOutcome::InFlight)
                && matches!(p.state, PayoutState::Failed | PayoutState::NeedInvoice)
            {
                // The node says an attempt is pending: it is authoritative.
                p.state = PayoutState::InFlight;
            }
            if p.state == PayoutState::InFlight {
                o.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
            }
        },
        PayOutcome::Failed { .. } => {
            if p.state == PayoutState::InFlight {
                payout_failed(t, env);
            }
        },
        PayOutcome::Succeeded { .. } => {},
    }
    Ok(())
}

/// A payout attempt (or the resolution of a Lightning address) failed: retry later, or after the
/// last attempt ask the buyer for a new invoice.
fn payout_failed(t: &mut Transition, env: &Env<'_>) {
    let Some(p) = t.order.payout.as_mut() else {
        return;
    };
    p.attempts = p.attempts.saturating_add(1);
    let attempts = p.attempts;
    let max = env.policy.payment_attempts.max(1);
    if attempts == 1 && max > 1 {
        let left = max.saturating_sub(1);
        let retry_secs = env.policy.payment_retry_secs;
        t.tell_role(
            Role::Buyer,
            None,
            Notice::PaymentFailed {
                attempts: left,
                retry_secs,
            },
        );
    }
    let o = &mut t.order;
    if o.buyer_address.is_some() {
        // Resolve the address again next time: its invoice may have expired.
        o.buyer_invoice = None;
    }
    let Some(p) = o.payout.as_mut() else { return };
    if attempts >= max {
        p.state = PayoutState::NeedInvoice;
        o.deadline = None;
        let snap = t.snapshot();
        t.tell_role(Role::Buyer, None, Notice::AddInvoice(snap));
    } else {
        p.state = PayoutState::Failed;
        o.deadline = Some(env.now.plus(env.policy.payment_retry_secs));
    }
}

fn payout_resolved(t: &mut Transition, inv: &PayoutInvoice, env: &Env<'_>) -> Result<(), Reject> {
    let o = &t.order;
    let resolving = o
        .payout
        .as_ref()
        .is_some_and(|p| p.state == PayoutState::Resolving);
    if o.status != Status::SettledHoldInvoice || !resolving || o.buyer_address.is_none() {
        return Ok(());
    }
    let expected = buyer_amount(o)?;
    if inv.amount != Some(expected) || inv.expires_at <= env.now {
        payout_failed(t, env);
        return Ok(());
    }
    t.order.buyer_invoice = Some(inv.clone());
    start_payout(t, env)
}

fn timeout(t: &mut Transition, env: &Env<'_>) -> Result<(), Reject> {
    let o = &t.order;
    let Some(deadline) = o.deadline else {
        return Ok(());
    };
    if env.now < deadline || o.status.is_terminal() {
        return Ok(());
    }
    match o.status {
        Status::Pending => {
            t.order.status = Status::Expired;
            t.order.deadline = None;
            t.publish();
        },
        Status::WaitingBuyerInvoice | Status::WaitingPayment => {
            let late = if o.status == Status::WaitingBuyerInvoice {
                Role::Buyer
            } else {
                Role::Seller
            };
            let maker_late = late == o.kind.maker_role();
            t.cancel_hold();
            if maker_late {
                t.order.status = Status::Canceled;
                t.order.deadline = None;
                t.tell_both(&Notice::Canceled);
                t.publish();
            } else {
                reset_to_pending(t, env.now, None);
            }
        },
        Status::SettledHoldInvoice => {
            // In flight: ask the node for the hash's status (never a second `Pay`); failed or
            // resolving: the next attempt.
            let retry = o.payout.as_ref().is_some_and(|p| {
                matches!(
                    p.state,
                    PayoutState::Failed | PayoutState::InFlight | PayoutState::Resolving
                )
            });
            if retry {
                start_payout(t, env)?;
            } else {
                t.order.deadline = None;
            }
        },
        _ => {
            t.order.deadline = None;
        },
    }
    Ok(())
}

fn block(t: &mut Transition, height: BlockHeight, env: &Env<'_>) {
    let o = &t.order;
    let Some(h) = &o.hold else { return };
    let Some(expiry) = h.htlc_expiry else { return };
    if h.state != HoldState::Accepted
        || height.plus(env.policy.escrow_deadline_margin_blocks) < expiry
    {
        return;
    }
    match o.status {
        Status::Active | Status::WaitingBuyerInvoice => {
            t.cancel_hold();
            t.order.status = Status::Canceled;
            t.order.deadline = None;
            t.tell_both(&Notice::Canceled);
            t.publish();
        },
        Status::FiatSent => {
            // As the reference does (protocol notes §9.8): a dispute on the buyer's behalf,
            // then a word to both that the node opened it, not the counterparty.
            open_dispute(t, Role::Buyer, None, env);
            opened_by_node(t, Some(expiry));
            warn_expiry(t, height, expiry);
        },
        Status::Dispute => warn_expiry(t, height, expiry),
        _ => {},
    }
}

/// The escrow of a disputed trade nears its expiry: once per dispute, the assigned solver is
/// told and the dispute event is republished with the expiry height (the engine also logs it
/// at error level and counts it for the operator).
fn warn_expiry(t: &mut Transition, height: BlockHeight, expiry: BlockHeight) {
    let Some(d) = t.order.dispute.as_mut() else {
        return;
    };
    if d.expiry_warned || !d.status.is_open() {
        return;
    }
    d.expiry_warned = true;
    let dispute_id = d.id;
    if let Some(solver) = d.solver_party.clone() {
        t.tell(
            &solver,
            None,
            Notice::EscrowExpiring {
                dispute_id,
                height,
                expiry,
            },
        );
    }
    t.publish_dispute();
}
