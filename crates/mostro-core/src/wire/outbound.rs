//! Outbound: an engine [`Notify`] to the wire [`Message`] (see [`crate::wire::map`]).

use super::enums::Status as WireStatus;
use super::enums::{Action as WireAction, CantDoReason, DisputeInitiator, Kind as WireKind};
use super::message::{Message, MessageKind};
use super::order::SmallOrder;
use super::payload::{
    Payload, PaymentFailedInfo, Peer, RestoreSessionInfo, RestoredDisputesInfo, RestoredOrdersInfo,
    SolverDisputeInfo, UserInfo,
};
use crate::machine::{Notice, Notify, Reject};
use crate::order::{Kind, Order, Party, Protocol, Role, Status};
use crate::ports::User;
use crate::types::{PubKey, Sats, Timestamp};

/// Seconds in a day (operating days of a user).
const SECONDS_PER_DAY: u64 = 86_400;

/// Maps an engine notification to the wire message, as [`to_message_at`]
/// with the epoch as "now" (so a `user-info` reply reports 0 operating
/// days). Transports that know the time use [`to_message_at`].
#[must_use]
pub fn to_message(n: &Notify) -> Message {
    to_message_at(n, Timestamp(0))
}

/// Maps an engine notification to the wire message the reference daemon
/// sends for it. `now` is only used for `user-info` (operating days).
///
/// `version` follows the recipient's protocol (1 for gift wraps, 2 for
/// kind 14); `request_id`, `trade_index` and `id` come from the
/// notification, except where the reference fixes them (no `id` on
/// `orders`, `restore-session`, `last-trade-index`, `user-info` and the
/// `admin-add-solver` ack; the dispute id on `admin-took-dispute` to the
/// solver; the party's trade index on `pay-invoice` and `add-invoice` when
/// the notification carries none). A trade index of 0 (a full-privacy
/// party) is written as `null`.
#[must_use]
pub fn to_message_at(n: &Notify, now: Timestamp) -> Message {
    use Payload as P;
    let order_id = n.order_id.map(|o| o.0);
    // Index 0 is the identity key: a full-privacy party has no trade index.
    let trade_index = n.trade_index.filter(|i| *i > 0).map(i64::from);
    let mut id = order_id;
    let mut ti = trade_index;
    let (wrapper, action, payload): (fn(MessageKind) -> Message, WireAction, Option<Payload>) =
        match &n.notice {
            Notice::NewOrder(o) => (
                Message::Order,
                WireAction::NewOrder,
                Some(P::Order(small(o, Amt::Raw))),
            ),
            Notice::PayInvoice { order, bolt11 } => {
                ti = ti.or_else(|| party_index(order.seller()));
                let so = SmallOrder {
                    buyer_trade_pubkey: None,
                    seller_trade_pubkey: None,
                    ..small(order, Amt::PlusFee)
                };
                (
                    Message::Order,
                    WireAction::PayInvoice,
                    Some(P::PaymentRequest(Some(so), bolt11.clone(), None)),
                )
            },
            Notice::AddInvoice(o) => {
                ti = ti.or_else(|| party_index(o.buyer()));
                (
                    Message::Order,
                    WireAction::AddInvoice,
                    Some(P::Order(small(o, Amt::MinusFee))),
                )
            },
            Notice::WaitingSellerToPay => (Message::Order, WireAction::WaitingSellerToPay, None),
            Notice::WaitingBuyerInvoice => (Message::Order, WireAction::WaitingBuyerInvoice, None),
            Notice::BuyerTookOrder(o) => (
                Message::Order,
                WireAction::BuyerTookOrder,
                Some(P::Order(small(o, Amt::PlusFee))),
            ),
            Notice::HoldInvoicePaymentAccepted(o) => (
                Message::Order,
                WireAction::HoldInvoicePaymentAccepted,
                Some(P::Order(small(o, Amt::MinusFee))),
            ),
            Notice::HoldInvoicePaymentSettled => {
                (Message::Order, WireAction::HoldInvoicePaymentSettled, None)
            },
            Notice::HoldInvoicePaymentCanceled => {
                (Message::Order, WireAction::HoldInvoicePaymentCanceled, None)
            },
            Notice::FiatSentOk { peer } => (
                Message::Order,
                WireAction::FiatSentOk,
                Some(peer_payload(peer)),
            ),
            Notice::Released => (Message::Order, WireAction::Released, None),
            Notice::PurchaseCompleted => (Message::Order, WireAction::PurchaseCompleted, None),
            Notice::PaymentFailed {
                attempts,
                retry_secs,
            } => (
                Message::Order,
                WireAction::PaymentFailed,
                Some(P::PaymentFailed(PaymentFailedInfo {
                    payment_attempts: *attempts,
                    payment_retries_interval: u32::try_from(*retry_secs).unwrap_or(u32::MAX),
                })),
            ),
            Notice::InvoiceUpdated => (Message::Order, WireAction::InvoiceUpdated, None),
            Notice::Rate => (Message::Order, WireAction::Rate, None),
            Notice::RateReceived(r) => (
                Message::Order,
                WireAction::RateReceived,
                Some(P::RatingUser(*r)),
            ),
            Notice::Canceled => (Message::Order, WireAction::Canceled, None),
            Notice::CooperativeCancelInitiatedByYou => (
                Message::Order,
                WireAction::CooperativeCancelInitiatedByYou,
                None,
            ),
            Notice::CooperativeCancelInitiatedByPeer => (
                Message::Order,
                WireAction::CooperativeCancelInitiatedByPeer,
                None,
            ),
            Notice::CooperativeCancelAccepted => {
                (Message::Order, WireAction::CooperativeCancelAccepted, None)
            },
            Notice::DisputeInitiatedByYou { dispute_id } => (
                Message::Order,
                WireAction::DisputeInitiatedByYou,
                Some(P::Dispute(dispute_id.0, None)),
            ),
            Notice::DisputeInitiatedByPeer { dispute_id } => (
                Message::Order,
                WireAction::DisputeInitiatedByPeer,
                Some(P::Dispute(dispute_id.0, None)),
            ),
            Notice::AdminTookDisputeSolver { dispute_id, order } => {
                id = Some(dispute_id.0);
                (
                    Message::Dispute,
                    WireAction::AdminTookDispute,
                    Some(P::Dispute(dispute_id.0, Some(solver_info(order)))),
                )
            },
            Notice::AdminTookDisputePeer { solver } => (
                Message::Order,
                WireAction::AdminTookDispute,
                Some(peer_payload(solver)),
            ),
            Notice::AdminSettled => (Message::Order, WireAction::AdminSettled, None),
            Notice::AdminCanceled => (Message::Order, WireAction::AdminCanceled, None),
            Notice::TradePubkey => (Message::Order, WireAction::TradePubkey, None),
            Notice::Orders(orders) => {
                id = None;
                let list = orders.iter().map(|o| small(o, Amt::Raw)).collect();
                (Message::Order, WireAction::Orders, Some(P::Orders(list)))
            },
            Notice::RestoreSession { identity, orders } => {
                id = None;
                (
                    Message::Restore,
                    WireAction::RestoreSession,
                    Some(P::RestoreData(restore_data(orders, identity))),
                )
            },
            Notice::LastTradeIndex(i) => {
                id = None;
                ti = Some(i64::from(*i));
                (Message::Restore, WireAction::LastTradeIndex, None)
            },
            Notice::UserInfo(u) => {
                id = None;
                (
                    Message::Restore,
                    WireAction::UserInfo,
                    Some(P::UserInfo(user_info(u, now))),
                )
            },
            Notice::EscrowExpiring {
                dispute_id,
                height,
                expiry,
            } => {
                id = Some(dispute_id.0);
                let text = format!(
                    "Dispute {dispute_id}: the seller's escrow HTLC expires at block {} (now {}). \
                     Settle or cancel before then: near its expiry the Lightning node cancels it \
                     and the seller is refunded.",
                    expiry.0, height.0
                );
                (
                    Message::Dispute,
                    WireAction::SendDm,
                    Some(P::TextMessage(text)),
                )
            },
            Notice::DisputeOpenedByNode { dispute_id, expiry } => {
                let why = match expiry {
                    Some(h) => format!(
                        "the seller's escrow expires at block {} and a solver must settle or \
                         cancel it before then",
                        h.0
                    ),
                    None => "the Lightning node canceled the seller's escrow".to_owned(),
                };
                let text = format!(
                    "Dispute {dispute_id} was opened by the Mostro node, not by you or your \
                     counterparty: {why}. A solver will contact you."
                );
                (
                    Message::Order,
                    WireAction::SendDm,
                    Some(P::TextMessage(text)),
                )
            },
            Notice::AdminAddSolver => {
                id = None;
                (Message::Dispute, WireAction::AdminAddSolver, None)
            },
            Notice::CantDo(reject) => {
                let reason = cant_do_reason(*reject);
                (
                    Message::CantDo,
                    WireAction::CantDo,
                    Some(P::CantDo(Some(reason))),
                )
            },
        };
    wrapper(MessageKind {
        version: version_of(n.protocol),
        request_id: n.request_id,
        trade_index: ti,
        id,
        action,
        payload,
    })
}

/// The `version` field for a protocol.
#[must_use]
pub const fn version_of(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::V1 => 1,
        Protocol::V2 => 2,
    }
}

/// Which amount a [`SmallOrder`] shows.
#[derive(Clone, Copy)]
enum Amt {
    /// The order's amount.
    Raw,
    /// What the seller locks: amount + fee.
    PlusFee,
    /// What the buyer receives: amount - fee.
    MinusFee,
}

/// Sats to the wire's i64 (saturating; amounts are far below 2^63).
fn sats_i64(s: Sats) -> i64 {
    i64::try_from(s.0).unwrap_or(i64::MAX)
}

/// Timestamp to the wire's i64.
fn ts_i64(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// A party's trade index for a message, `None` in full privacy.
fn party_index(p: Option<&Party>) -> Option<i64> {
    p.filter(|p| p.trade_index > 0)
        .map(|p| i64::from(p.trade_index))
}

/// The wire status of an order status.
#[must_use]
pub const fn wire_status(s: Status) -> WireStatus {
    match s {
        Status::Pending => WireStatus::Pending,
        Status::WaitingTakerBond => WireStatus::WaitingTakerBond,
        Status::WaitingMakerBond => WireStatus::WaitingMakerBond,
        Status::WaitingBuyerInvoice => WireStatus::WaitingBuyerInvoice,
        Status::WaitingPayment => WireStatus::WaitingPayment,
        Status::Active => WireStatus::Active,
        Status::FiatSent => WireStatus::FiatSent,
        Status::Dispute => WireStatus::Dispute,
        Status::SettledHoldInvoice => WireStatus::SettledHoldInvoice,
        Status::Success => WireStatus::Success,
        Status::Canceled => WireStatus::Canceled,
        Status::CooperativelyCanceled => WireStatus::CooperativelyCanceled,
        Status::CanceledByAdmin => WireStatus::CanceledByAdmin,
        Status::Expired => WireStatus::Expired,
        Status::SettledByAdmin => WireStatus::SettledByAdmin,
        Status::CompletedByAdmin => WireStatus::CompletedByAdmin,
        Status::InProgress => WireStatus::InProgress,
    }
}

/// The wire kind of an order kind.
#[must_use]
pub const fn wire_kind(k: Kind) -> WireKind {
    match k {
        Kind::Buy => WireKind::Buy,
        Kind::Sell => WireKind::Sell,
    }
}

/// The order as a [`SmallOrder`] (amount per [`Amt`]).
///
/// Trade pubkeys are included once the order has a taker (both known), as
/// the reference does on `add-invoice`, `buyer-took-order`,
/// `hold-invoice-payment-accepted` and `orders`; the payout invoice is never
/// included (the reference strips it from every order it sends back).
#[must_use]
pub fn small_order(o: &Order) -> SmallOrder {
    small(o, Amt::Raw)
}

fn small(o: &Order, amt: Amt) -> SmallOrder {
    let amount = match amt {
        Amt::Raw => o.amount,
        Amt::PlusFee => o.amount.checked_add(o.fee).unwrap_or(o.amount),
        Amt::MinusFee => o.amount.checked_sub(o.fee).unwrap_or(Sats::ZERO),
    };
    let taken = o.taker.is_some();
    let key = |p: Option<&Party>| p.filter(|_| taken).map(|p| p.trade_key.to_hex());
    SmallOrder {
        id: Some(o.id.0),
        kind: Some(wire_kind(o.kind)),
        status: Some(wire_status(o.status)),
        amount: sats_i64(amount),
        fiat_code: o.fiat_code.clone(),
        min_amount: o.min_amount,
        max_amount: o.max_amount,
        fiat_amount: o.fiat_amount,
        payment_method: o.payment_method.clone(),
        premium: o.premium,
        buyer_trade_pubkey: key(o.buyer()),
        seller_trade_pubkey: key(o.seller()),
        buyer_invoice: None,
        created_at: Some(ts_i64(o.created_at)),
        expires_at: Some(ts_i64(o.expires_at)),
        cashu_mint_url: None,
    }
}

/// A `peer` payload without reputation.
fn peer_payload(key: &PubKey) -> Payload {
    Payload::Peer(Peer {
        pubkey: key.to_hex(),
        reputation: None,
    })
}

/// The reputation of a user as the wire shows it.
#[must_use]
pub fn user_info(u: &User, now: Timestamp) -> UserInfo {
    let known = u.created_at.0 > 0;
    UserInfo {
        rating: u.rating(),
        reviews: i64::try_from(u.reviews).unwrap_or(i64::MAX),
        operating_days: if known {
            now.since(u.created_at)
                .checked_div(SECONDS_PER_DAY)
                .unwrap_or(0)
        } else {
            0
        },
        since: known.then_some(u.created_at.0),
    }
}

/// Dispute details for the solver.
///
/// The reputations of the parties are not in the order snapshot and are sent
/// as `null`; the preimage is never disclosed; `invoice_held_at` is not
/// tracked and is sent as 0.
fn solver_info(o: &Order) -> SolverDisputeInfo {
    let d = o.dispute.as_ref();
    let initiator_role = d.map(|d| d.initiator).unwrap_or(Role::Buyer);
    let initiator = o.party(initiator_role);
    let counterpart = o.party(initiator_role.other());
    SolverDisputeInfo {
        id: o.id.0,
        kind: o.kind.as_str().to_owned(),
        status: o.status.as_str().to_owned(),
        hash: o.hold.as_ref().map(|h| h.hash.to_hex()),
        preimage: None,
        order_previous_status: d
            .map_or(o.status, |d| d.previous_status)
            .as_str()
            .to_owned(),
        initiator_pubkey: initiator.map(|p| p.trade_key.to_hex()).unwrap_or_default(),
        buyer_pubkey: o.buyer().map(|p| p.trade_key.to_hex()),
        seller_pubkey: o.seller().map(|p| p.trade_key.to_hex()),
        initiator_full_privacy: initiator.is_some_and(Party::is_full_privacy),
        counterpart_full_privacy: counterpart.is_some_and(Party::is_full_privacy),
        initiator_info: None,
        counterpart_info: None,
        premium: o.premium,
        payment_method: o.payment_method.clone(),
        amount: sats_i64(o.amount),
        fiat_amount: o.fiat_amount,
        fee: sats_i64(o.fee),
        routing_fee: o.payout.as_ref().map_or(0, |p| sats_i64(p.routing_fee)),
        buyer_invoice: o
            .payout
            .as_ref()
            .map(|p| p.invoice.clone())
            .or_else(|| o.buyer_invoice.as_ref().map(|i| i.bolt11.clone())),
        invoice_held_at: 0,
        taken_at: o.taken_at.map_or(0, ts_i64),
        created_at: ts_i64(o.created_at),
    }
}

/// The requester's side of an order: the party whose trade key or identity
/// is the recipient, else the one whose identity appears in every order
/// (the store returned the orders of one identity), else the maker.
fn requester_role(o: &Order, identity: &PubKey) -> Role {
    let maker = o.kind.maker_role();
    if o.maker.identity == *identity {
        maker
    } else {
        maker.other()
    }
}

/// `restore_data`: non-terminal orders (disputed ones excluded) with the
/// requester's trade index and the counterparty's trade key, and the open
/// disputes.
fn restore_data(orders: &[Order], identity: &PubKey) -> RestoreSessionInfo {
    let mut info = RestoreSessionInfo::default();
    for o in orders {
        let role = requester_role(o, identity);
        let trade_index = o.party(role).map_or(0, |p| i64::from(p.trade_index));
        if let Some(d) = o.dispute.as_ref().filter(|d| d.status.is_open()) {
            info.disputes.push(RestoredDisputesInfo {
                dispute_id: d.id.0,
                order_id: o.id.0,
                trade_index,
                status: d.status.as_str().to_owned(),
                initiator: Some(match d.initiator {
                    Role::Buyer => DisputeInitiator::Buyer,
                    Role::Seller => DisputeInitiator::Seller,
                }),
                solver_pubkey: d.solver.map(|s| s.to_hex()),
            });
        }
        if o.status.is_terminal() || o.status == Status::Dispute {
            continue;
        }
        info.orders.push(RestoredOrdersInfo {
            order_id: o.id.0,
            trade_index,
            status: o.status.as_str().to_owned(),
            counterparty_trade_pubkey: o.party(role.other()).map(|p| p.trade_key.to_hex()),
        });
    }
    info
}

/// The wire reason of a refusal: one arm per [`Reject`], no string in between, so a new refusal
/// cannot reach a client as `unknown`.
#[must_use]
pub const fn cant_do_reason(r: Reject) -> CantDoReason {
    match r {
        Reject::InvalidSignature => CantDoReason::InvalidSignature,
        Reject::InvalidTradeIndex => CantDoReason::InvalidTradeIndex,
        Reject::InvalidAmount => CantDoReason::InvalidAmount,
        Reject::InvalidInvoice => CantDoReason::InvalidInvoice,
        Reject::InvalidPaymentRequest => CantDoReason::InvalidPaymentRequest,
        Reject::InvalidPeer => CantDoReason::InvalidPeer,
        Reject::InvalidRating => CantDoReason::InvalidRating,
        Reject::InvalidOrderKind => CantDoReason::InvalidOrderKind,
        Reject::InvalidOrderStatus => CantDoReason::InvalidOrderStatus,
        Reject::InvalidPubkey => CantDoReason::InvalidPubkey,
        Reject::InvalidParameters => CantDoReason::InvalidParameters,
        Reject::InvalidPayload => CantDoReason::InvalidPayload,
        Reject::OrderAlreadyCanceled => CantDoReason::OrderAlreadyCanceled,
        Reject::CantCreateUser => CantDoReason::CantCreateUser,
        Reject::IsNotYourOrder => CantDoReason::IsNotYourOrder,
        Reject::NotAllowedByStatus => CantDoReason::NotAllowedByStatus,
        Reject::OutOfRangeFiatAmount => CantDoReason::OutOfRangeFiatAmount,
        Reject::OutOfRangeSatsAmount => CantDoReason::OutOfRangeSatsAmount,
        Reject::PriceTooStale => CantDoReason::PriceTooStale,
        Reject::IsNotYourDispute => CantDoReason::IsNotYourDispute,
        Reject::DisputeTakenByAdmin => CantDoReason::DisputeTakenByAdmin,
        Reject::NotAuthorized => CantDoReason::NotAuthorized,
        Reject::NotFound => CantDoReason::NotFound,
        Reject::InvalidDisputeStatus => CantDoReason::InvalidDisputeStatus,
        Reject::InvalidAction => CantDoReason::InvalidAction,
        Reject::PendingOrderExists => CantDoReason::PendingOrderExists,
        Reject::InvalidFiatCurrency => CantDoReason::InvalidFiatCurrency,
        Reject::TooManyRequests => CantDoReason::TooManyRequests,
        Reject::MaintenanceMode => CantDoReason::MaintenanceMode,
        Reject::ReputationIdentityRequired => CantDoReason::ReputationIdentityRequired,
    }
}
