//! Format 1 of an outbox effect row: the effect, the message it may carry and everything inside,
//! spelled out here and converted to and from the domain by total matches.

use mostro_core::machine::{Effect, Notice, Notify, Reject};
use mostro_core::types::{BlockHeight, OrderId, Sats, Timestamp};
use mostro_core::user::User;
use serde::{Deserialize, Serialize};

use super::{Hex32, OrderV1, ProtocolV1};

row_enum!(RejectV1, Reject, "snake_case", {
    InvalidSignature,
    InvalidTradeIndex,
    InvalidAmount,
    InvalidInvoice,
    InvalidPaymentRequest,
    InvalidPeer,
    InvalidRating,
    InvalidOrderKind,
    InvalidOrderStatus,
    InvalidPubkey,
    InvalidParameters,
    InvalidPayload,
    OrderAlreadyCanceled,
    CantCreateUser,
    IsNotYourOrder,
    NotAllowedByStatus,
    OutOfRangeFiatAmount,
    OutOfRangeSatsAmount,
    PriceTooStale,
    IsNotYourDispute,
    DisputeTakenByAdmin,
    NotAuthorized,
    NotFound,
    InvalidDisputeStatus,
    InvalidAction,
    PendingOrderExists,
    InvalidFiatCurrency,
    TooManyRequests,
    MaintenanceMode,
    ReputationIdentityRequired,
});

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UserV1 {
    identity: Hex32,
    last_trade_index: u32,
    reviews: u64,
    rating_sum: u64,
    min_rating: u8,
    max_rating: u8,
    last_rating: u8,
    created_at: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct NotifyV1 {
    to: Hex32,
    protocol: ProtocolV1,
    request_id: Option<u64>,
    order_id: Option<uuid::Uuid>,
    trade_index: Option<u32>,
    notice: NoticeV1,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum NoticeV1 {
    NewOrder(Box<OrderV1>),
    PayInvoice {
        order: Box<OrderV1>,
        bolt11: String,
    },
    AddInvoice(Box<OrderV1>),
    WaitingSellerToPay,
    WaitingBuyerInvoice,
    BuyerTookOrder(Box<OrderV1>),
    HoldInvoicePaymentAccepted(Box<OrderV1>),
    HoldInvoicePaymentSettled,
    HoldInvoicePaymentCanceled,
    FiatSentOk {
        peer: Hex32,
    },
    Released,
    PurchaseCompleted,
    PaymentFailed {
        attempts: u32,
        retry_secs: u64,
    },
    InvoiceUpdated,
    Rate,
    RateReceived(u8),
    Canceled,
    CooperativeCancelInitiatedByYou,
    CooperativeCancelInitiatedByPeer,
    CooperativeCancelAccepted,
    DisputeInitiatedByYou {
        dispute_id: uuid::Uuid,
    },
    DisputeInitiatedByPeer {
        dispute_id: uuid::Uuid,
    },
    AdminTookDisputeSolver {
        dispute_id: uuid::Uuid,
        order: Box<OrderV1>,
    },
    AdminTookDisputePeer {
        solver: Hex32,
    },
    EscrowExpiring {
        dispute_id: uuid::Uuid,
        height: u32,
        expiry: u32,
    },
    DisputeOpenedByNode {
        dispute_id: uuid::Uuid,
        expiry: Option<u32>,
    },
    AdminSettled,
    AdminCanceled,
    TradePubkey,
    Orders(Vec<OrderV1>),
    RestoreSession {
        identity: Hex32,
        orders: Vec<OrderV1>,
    },
    LastTradeIndex(u32),
    UserInfo(UserV1),
    AdminAddSolver,
    CantDo(RejectV1),
}

/// Format 1 of an outbox effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum EffectV1 {
    CreateHold {
        order_id: uuid::Uuid,
        hash: Hex32,
        amount: u64,
        cltv_delta: u32,
        expiry_secs: u64,
        memo: String,
    },
    SettleHold {
        order_id: uuid::Uuid,
        preimage: Hex32,
    },
    CancelHold {
        order_id: uuid::Uuid,
        hash: Hex32,
    },
    Pay {
        order_id: uuid::Uuid,
        hash: Hex32,
        invoice: String,
        amount: u64,
        fee_limit: u64,
    },
    CheckPayment {
        order_id: uuid::Uuid,
        hash: Hex32,
    },
    ResolvePayout {
        order_id: uuid::Uuid,
        address: String,
        amount: u64,
    },
    ResolveDevFee {
        order_id: uuid::Uuid,
        address: String,
        amount: u64,
    },
    PublishDevFee {
        order_id: uuid::Uuid,
    },
    Notify(NotifyV1),
    PublishOrder {
        order_id: uuid::Uuid,
    },
    PublishDispute {
        order_id: uuid::Uuid,
    },
    PublishRating {
        order_id: uuid::Uuid,
        identity: Hex32,
        trade_key: Hex32,
    },
}

fn order_v1(o: &mostro_core::order::Order) -> Box<OrderV1> {
    Box::new(OrderV1::from(o))
}

fn order_of(o: OrderV1) -> Box<mostro_core::order::Order> {
    Box::new(o.into())
}

impl From<&User> for UserV1 {
    fn from(u: &User) -> Self {
        UserV1 {
            identity: u.identity.into(),
            last_trade_index: u.last_trade_index,
            reviews: u.reviews,
            rating_sum: u.rating_sum,
            min_rating: u.min_rating,
            max_rating: u.max_rating,
            last_rating: u.last_rating,
            created_at: u.created_at.0,
        }
    }
}

impl From<UserV1> for User {
    fn from(u: UserV1) -> Self {
        User {
            identity: u.identity.into(),
            last_trade_index: u.last_trade_index,
            reviews: u.reviews,
            rating_sum: u.rating_sum,
            min_rating: u.min_rating,
            max_rating: u.max_rating,
            last_rating: u.last_rating,
            created_at: Timestamp(u.created_at),
        }
    }
}

impl From<&Notice> for NoticeV1 {
    fn from(n: &Notice) -> Self {
        use NoticeV1 as V;
        match n {
            Notice::NewOrder(o) => V::NewOrder(order_v1(o)),
            Notice::PayInvoice { order, bolt11 } => V::PayInvoice {
                order: order_v1(order),
                bolt11: bolt11.clone(),
            },
            Notice::AddInvoice(o) => V::AddInvoice(order_v1(o)),
            Notice::WaitingSellerToPay => V::WaitingSellerToPay,
            Notice::WaitingBuyerInvoice => V::WaitingBuyerInvoice,
            Notice::BuyerTookOrder(o) => V::BuyerTookOrder(order_v1(o)),
            Notice::HoldInvoicePaymentAccepted(o) => V::HoldInvoicePaymentAccepted(order_v1(o)),
            Notice::HoldInvoicePaymentSettled => V::HoldInvoicePaymentSettled,
            Notice::HoldInvoicePaymentCanceled => V::HoldInvoicePaymentCanceled,
            Notice::FiatSentOk { peer } => V::FiatSentOk {
                peer: (*peer).into(),
            },
            Notice::Released => V::Released,
            Notice::PurchaseCompleted => V::PurchaseCompleted,
            Notice::PaymentFailed {
                attempts,
                retry_secs,
            } => V::PaymentFailed {
                attempts: *attempts,
                retry_secs: *retry_secs,
            },
            Notice::InvoiceUpdated => V::InvoiceUpdated,
            Notice::Rate => V::Rate,
            Notice::RateReceived(r) => V::RateReceived(*r),
            Notice::Canceled => V::Canceled,
            Notice::CooperativeCancelInitiatedByYou => V::CooperativeCancelInitiatedByYou,
            Notice::CooperativeCancelInitiatedByPeer => V::CooperativeCancelInitiatedByPeer,
            Notice::CooperativeCancelAccepted => V::CooperativeCancelAccepted,
            Notice::DisputeInitiatedByYou { dispute_id } => V::DisputeInitiatedByYou {
                dispute_id: dispute_id.0,
            },
            Notice::DisputeInitiatedByPeer { dispute_id } => V::DisputeInitiatedByPeer {
                dispute_id: dispute_id.0,
            },
            Notice::AdminTookDisputeSolver { dispute_id, order } => V::AdminTookDisputeSolver {
                dispute_id: dispute_id.0,
                order: order_v1(order),
            },
            Notice::AdminTookDisputePeer { solver } => V::AdminTookDisputePeer {
                solver: (*solver).into(),
            },
            Notice::EscrowExpiring {
                dispute_id,
                height,
                expiry,
            } => V::EscrowExpiring {
                dispute_id: dispute_id.0,
                height: height.0,
                expiry: expiry.0,
            },
            Notice::DisputeOpenedByNode { dispute_id, expiry } => V::DisputeOpenedByNode {
                dispute_id: dispute_id.0,
                expiry: expiry.map(|e| e.0),
            },
            Notice::AdminSettled => V::AdminSettled,
            Notice::AdminCanceled => V::AdminCanceled,
            Notice::TradePubkey => V::TradePubkey,
            Notice::Orders(os) => V::Orders(os.iter().map(OrderV1::from).collect()),
            Notice::RestoreSession { identity, orders } => V::RestoreSession {
                identity: (*identity).into(),
                orders: orders.iter().map(OrderV1::from).collect(),
            },
            Notice::LastTradeIndex(i) => V::LastTradeIndex(*i),
            Notice::UserInfo(u) => V::UserInfo(u.into()),
            Notice::AdminAddSolver => V::AdminAddSolver,
            Notice::CantDo(r) => V::CantDo((*r).into()),
        }
    }
}

impl From<NoticeV1> for Notice {
    fn from(n: NoticeV1) -> Self {
        use NoticeV1 as V;
        match n {
            V::NewOrder(o) => Notice::NewOrder(order_of(*o)),
            V::PayInvoice { order, bolt11 } => Notice::PayInvoice {
                order: order_of(*order),
                bolt11,
            },
            V::AddInvoice(o) => Notice::AddInvoice(order_of(*o)),
            V::WaitingSellerToPay => Notice::WaitingSellerToPay,
            V::WaitingBuyerInvoice => Notice::WaitingBuyerInvoice,
            V::BuyerTookOrder(o) => Notice::BuyerTookOrder(order_of(*o)),
            V::HoldInvoicePaymentAccepted(o) => Notice::HoldInvoicePaymentAccepted(order_of(*o)),
            V::HoldInvoicePaymentSettled => Notice::HoldInvoicePaymentSettled,
            V::HoldInvoicePaymentCanceled => Notice::HoldInvoicePaymentCanceled,
            V::FiatSentOk { peer } => Notice::FiatSentOk { peer: peer.into() },
            V::Released => Notice::Released,
            V::PurchaseCompleted => Notice::PurchaseCompleted,
            V::PaymentFailed {
                attempts,
                retry_secs,
            } => Notice::PaymentFailed {
                attempts,
                retry_secs,
            },
            V::InvoiceUpdated => Notice::InvoiceUpdated,
            V::Rate => Notice::Rate,
            V::RateReceived(r) => Notice::RateReceived(r),
            V::Canceled => Notice::Canceled,
            V::CooperativeCancelInitiatedByYou => Notice::CooperativeCancelInitiatedByYou,
            V::CooperativeCancelInitiatedByPeer => Notice::CooperativeCancelInitiatedByPeer,
            V::CooperativeCancelAccepted => Notice::CooperativeCancelAccepted,
            V::DisputeInitiatedByYou { dispute_id } => Notice::DisputeInitiatedByYou {
                dispute_id: OrderId(dispute_id),
            },
            V::DisputeInitiatedByPeer { dispute_id } => Notice::DisputeInitiatedByPeer {
                dispute_id: OrderId(dispute_id),
            },
            V::AdminTookDisputeSolver { dispute_id, order } => Notice::AdminTookDisputeSolver {
                dispute_id: OrderId(dispute_id),
                order: order_of(*order),
            },
            V::AdminTookDisputePeer { solver } => Notice::AdminTookDisputePeer {
                solver: solver.into(),
            },
            V::EscrowExpiring {
                dispute_id,
                height,
                expiry,
            } => Notice::EscrowExpiring {
                dispute_id: OrderId(dispute_id),
                height: BlockHeight(height),
                expiry: BlockHeight(expiry),
            },
            V::DisputeOpenedByNode { dispute_id, expiry } => Notice::DisputeOpenedByNode {
                dispute_id: OrderId(dispute_id),
                expiry: expiry.map(BlockHeight),
            },
            V::AdminSettled => Notice::AdminSettled,
            V::AdminCanceled => Notice::AdminCanceled,
            V::TradePubkey => Notice::TradePubkey,
            V::Orders(os) => Notice::Orders(os.into_iter().map(Into::into).collect()),
            V::RestoreSession { identity, orders } => Notice::RestoreSession {
                identity: identity.into(),
                orders: orders.into_iter().map(Into::into).collect(),
            },
            V::LastTradeIndex(i) => Notice::LastTradeIndex(i),
            V::UserInfo(u) => Notice::UserInfo(u.into()),
            V::AdminAddSolver => Notice::AdminAddSolver,
            V::CantDo(r) => Notice::CantDo(r.into()),
        }
    }
}

impl From<&Effect> for EffectV1 {
    fn from(e: &Effect) -> Self {
        use EffectV1 as V;
        match e {
            Effect::CreateHold {
                order_id,
                hash,
                amount,
                cltv_delta,
                expiry_secs,
                memo,
            } => V::CreateHold {
                order_id: order_id.0,
                hash: (*hash).into(),
                amount: amount.0,
                cltv_delta: *cltv_delta,
                expiry_secs: *expiry_secs,
                memo: memo.clone(),
            },
            Effect::SettleHold { order_id, preimage } => V::SettleHold {
                order_id: order_id.0,
                preimage: (*preimage).into(),
            },
            Effect::CancelHold { order_id, hash } => V::CancelHold {
                order_id: order_id.0,
                hash: (*hash).into(),
            },
            Effect::Pay {
                order_id,
                hash,
                invoice,
                amount,
                fee_limit,
            } => V::Pay {
                order_id: order_id.0,
                hash: (*hash).into(),
                invoice: invoice.clone(),
                amount: amount.0,
                fee_limit: fee_limit.0,
            },
            Effect::CheckPayment { order_id, hash } => V::CheckPayment {
                order_id: order_id.0,
                hash: (*hash).into(),
            },
            Effect::ResolvePayout {
                order_id,
                address,
                amount,
            } => V::ResolvePayout {
                order_id: order_id.0,
                address: address.clone(),
                amount: amount.0,
            },
            Effect::ResolveDevFee {
                order_id,
                address,
                amount,
            } => V::ResolveDevFee {
                order_id: order_id.0,
                address: address.clone(),
                amount: amount.0,
            },
            Effect::PublishDevFee { order_id } => V::PublishDevFee {
                order_id: order_id.0,
            },
            Effect::Notify(n) => V::Notify(NotifyV1 {
                to: n.to.into(),
                protocol: n.protocol.into(),
                request_id: n.request_id,
                order_id: n.order_id.map(|o| o.0),
                trade_index: n.trade_index,
                notice: (&n.notice).into(),
            }),
            Effect::PublishOrder { order_id } => V::PublishOrder {
                order_id: order_id.0,
            },
            Effect::PublishDispute { order_id } => V::PublishDispute {
                order_id: order_id.0,
            },
            Effect::PublishRating {
                order_id,
                identity,
                trade_key,
            } => V::PublishRating {
                order_id: order_id.0,
                identity: (*identity).into(),
                trade_key: (*trade_key).into(),
            },
        }
    }
}

impl From<EffectV1> for Effect {
    fn from(e: EffectV1) -> Self {
        use EffectV1 as V;
        match e {
            V::CreateHold {
                order_id,
                hash,
                amount,
                cltv_delta,
                expiry_secs,
                memo,
            } => Effect::CreateHold {
                order_id: OrderId(order_id),
                hash: hash.into(),
                amount: Sats(amount),
                cltv_delta,
                expiry_secs,
                memo,
            },
            V::SettleHold { order_id, preimage } => Effect::SettleHold {
                order_id: OrderId(order_id),
                preimage: preimage.into(),
            },
            V::CancelHold { order_id, hash } => Effect::CancelHold {
                order_id: OrderId(order_id),
                hash: hash.into(),
            },
            V::Pay {
                order_id,
                hash,
                invoice,
                amount,
                fee_limit,
            } => Effect::Pay {
                order_id: OrderId(order_id),
                hash: hash.into(),
                invoice,
                amount: Sats(amount),
                fee_limit: Sats(fee_limit),
            },
            V::CheckPayment { order_id, hash } => Effect::CheckPayment {
                order_id: OrderId(order_id),
                hash: hash.into(),
            },
            V::ResolvePayout {
                order_id,
                address,
                amount,
            } => Effect::ResolvePayout {
                order_id: OrderId(order_id),
                address,
                amount: Sats(amount),
            },
            V::ResolveDevFee {
                order_id,
                address,
                amount,
            } => Effect::ResolveDevFee {
                order_id: OrderId(order_id),
                address,
                amount: Sats(amount),
            },
            V::PublishDevFee { order_id } => Effect::PublishDevFee {
                order_id: OrderId(order_id),
            },
            V::Notify(n) => Effect::Notify(Notify {
                to: n.to.into(),
                protocol: n.protocol.into(),
                request_id: n.request_id,
                order_id: n.order_id.map(OrderId),
                trade_index: n.trade_index,
                notice: n.notice.into(),
            }),
            V::PublishOrder { order_id } => Effect::PublishOrder {
                order_id: OrderId(order_id),
            },
            V::PublishDispute { order_id } => Effect::PublishDispute {
                order_id: OrderId(order_id),
            },
            V::PublishRating {
                order_id,
                identity,
                trade_key,
            } => Effect::PublishRating {
                order_id: OrderId(order_id),
                identity: identity.into(),
                trade_key: trade_key.into(),
            },
        }
    }
}

/// Encodes an effect in format 1.
pub(super) fn encode(e: &Effect) -> Result<String, serde_json::Error> {
    serde_json::to_string(&EffectV1::from(e))
}

/// Decodes a format-1 effect.
pub(super) fn decode(json: &str) -> Result<Effect, serde_json::Error> {
    serde_json::from_str::<EffectV1>(json).map(Into::into)
}

#[cfg(test)]
mod golden {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use mostro_core::order::{HoldState, Protocol};
    use mostro_core::types::{PaymentHash, Preimage, PubKey};
    use mostro_testkit::store_suite::{
        hash, identity, order, order_id, taken, with_dispute, with_hold,
    };

    use super::*;

    /// The golden file: one sample of every effect and notice variant (and every refusal), as
    /// format 1 spells it. Written once from the serde JSON of the domain types, which format 1
    /// was before the store had row types of its own; never regenerated: a row written by an
    /// older release must keep decoding.
    const GOLDEN: &str = include_str!("../../tests/data/effects-format1.jsonl");

    /// Names every variant, so that a new one fails to compile here until it has a sample.
    fn variant(e: &Effect) -> &'static str {
        match e {
            Effect::CreateHold { .. } => "CreateHold",
            Effect::SettleHold { .. } => "SettleHold",
            Effect::CancelHold { .. } => "CancelHold",
            Effect::Pay { .. } => "Pay",
            Effect::CheckPayment { .. } => "CheckPayment",
            Effect::ResolvePayout { .. } => "ResolvePayout",
            Effect::ResolveDevFee { .. } => "ResolveDevFee",
            Effect::PublishDevFee { .. } => "PublishDevFee",
            Effect::PublishOrder { .. } => "PublishOrder",
            Effect::PublishDispute { .. } => "PublishDispute",
            Effect::PublishRating { .. } => "PublishRating",
            Effect::Notify(n) => match &n.notice {
                Notice::NewOrder(_) => "NewOrder",
                Notice::PayInvoice { .. } => "PayInvoice",
                Notice::AddInvoice(_) => "AddInvoice",
                Notice::WaitingSellerToPay => "WaitingSellerToPay",
                Notice::WaitingBuyerInvoice => "WaitingBuyerInvoice",
                Notice::BuyerTookOrder(_) => "BuyerTookOrder",
                Notice::HoldInvoicePaymentAccepted(_) => "HoldInvoicePaymentAccepted",
                Notice::HoldInvoicePaymentSettled => "HoldInvoicePaymentSettled",
                Notice::HoldInvoicePaymentCanceled => "HoldInvoicePaymentCanceled",
                Notice::FiatSentOk { .. } => "FiatSentOk",
                Notice::Released => "Released",
                Notice::PurchaseCompleted => "PurchaseCompleted",
                Notice::PaymentFailed { .. } => "PaymentFailed",
                Notice::InvoiceUpdated => "InvoiceUpdated",
                Notice::Rate => "Rate",
                Notice::RateReceived(_) => "RateReceived",
                Notice::Canceled => "Canceled",
                Notice::CooperativeCancelInitiatedByYou => "CooperativeCancelInitiatedByYou",
                Notice::CooperativeCancelInitiatedByPeer => "CooperativeCancelInitiatedByPeer",
                Notice::CooperativeCancelAccepted => "CooperativeCancelAccepted",
                Notice::DisputeInitiatedByYou { .. } => "DisputeInitiatedByYou",
                Notice::DisputeInitiatedByPeer { .. } => "DisputeInitiatedByPeer",
                Notice::AdminTookDisputeSolver { .. } => "AdminTookDisputeSolver",
                Notice::AdminTookDisputePeer { .. } => "AdminTookDisputePeer",
                Notice::EscrowExpiring { .. } => "EscrowExpiring",
                Notice::DisputeOpenedByNode { .. } => "DisputeOpenedByNode",
                Notice::AdminSettled => "AdminSettled",
                Notice::AdminCanceled => "AdminCanceled",
                Notice::TradePubkey => "TradePubkey",
                Notice::Orders(_) => "Orders",
                Notice::RestoreSession { .. } => "RestoreSession",
                Notice::LastTradeIndex(_) => "LastTradeIndex",
                Notice::UserInfo(_) => "UserInfo",
                Notice::AdminAddSolver => "AdminAddSolver",
                Notice::CantDo(_) => "CantDo",
            },
        }
    }

    fn samples() -> Vec<Effect> {
        let o = with_dispute(
            with_hold(
                taken(order(5, identity(1)), identity(2)),
                hash(5),
                HoldState::Accepted,
                Some(812),
            ),
            order_id(500),
        );
        let id = o.id;
        let b = || Box::new(o.clone());
        let notify = |k: u16, notice: Notice| {
            Effect::Notify(Notify {
                to: identity(k),
                protocol: if k.is_multiple_of(2) {
                    Protocol::V1
                } else {
                    Protocol::V2
                },
                request_id: (!k.is_multiple_of(3)).then_some(u64::from(k) * 11),
                order_id: (!k.is_multiple_of(4)).then_some(id),
                trade_index: (!k.is_multiple_of(5)).then_some(u32::from(k)),
                notice,
            })
        };
        let dispute_id = order_id(500);
        let user = User {
            identity: identity(3),
            last_trade_index: 7,
            reviews: 2,
            rating_sum: 9,
            min_rating: 4,
            max_rating: 5,
            last_rating: 5,
            created_at: Timestamp(1_700_000_000),
        };
        let mut v = vec![
            Effect::CreateHold {
                order_id: id,
                hash: hash(9),
                amount: Sats(100_300),
                cltv_delta: 144,
                expiry_secs: 900,
                memo: "Mostro order \"5\"".into(),
            },
            Effect::SettleHold {
                order_id: id,
                preimage: Preimage([7; 32]),
            },
            Effect::CancelHold {
                order_id: id,
                hash: hash(9),
            },
            Effect::Pay {
                order_id: id,
                hash: PaymentHash([8; 32]),
                invoice: "lnbcrt997u1...".into(),
                amount: Sats(99_700),
                fee_limit: Sats(997),
            },
            Effect::CheckPayment {
                order_id: id,
                hash: PaymentHash([8; 32]),
            },
            Effect::ResolvePayout {
                order_id: id,
                address: "buyer@example.com".into(),
                amount: Sats(99_700),
            },
            Effect::PublishOrder { order_id: id },
            Effect::PublishDispute { order_id: id },
            Effect::PublishRating {
                order_id: id,
                identity: identity(1),
                trade_key: PubKey([0x7a; 32]),
            },
        ];
        let notices = vec![
            Notice::NewOrder(b()),
            Notice::PayInvoice {
                order: b(),
                bolt11: "lnbcrt1003u1...".into(),
            },
            Notice::AddInvoice(b()),
            Notice::WaitingSellerToPay,
            Notice::WaitingBuyerInvoice,
            Notice::BuyerTookOrder(b()),
            Notice::HoldInvoicePaymentAccepted(b()),
            Notice::HoldInvoicePaymentSettled,
            Notice::HoldInvoicePaymentCanceled,
            Notice::FiatSentOk { peer: identity(2) },
            Notice::Released,
            Notice::PurchaseCompleted,
            Notice::PaymentFailed {
                attempts: 3,
                retry_secs: 60,
            },
            Notice::InvoiceUpdated,
            Notice::Rate,
            Notice::RateReceived(5),
            Notice::Canceled,
            Notice::CooperativeCancelInitiatedByYou,
            Notice::CooperativeCancelInitiatedByPeer,
            Notice::CooperativeCancelAccepted,
            Notice::DisputeInitiatedByYou { dispute_id },
            Notice::DisputeInitiatedByPeer { dispute_id },
            Notice::AdminTookDisputeSolver {
                dispute_id,
                order: b(),
            },
            Notice::AdminTookDisputePeer {
                solver: identity(4),
            },
            Notice::EscrowExpiring {
                dispute_id,
                height: BlockHeight(700),
                expiry: BlockHeight(812),
            },
            Notice::DisputeOpenedByNode {
                dispute_id,
                expiry: Some(BlockHeight(812)),
            },
            Notice::DisputeOpenedByNode {
                dispute_id,
                expiry: None,
            },
            Notice::AdminSettled,
            Notice::AdminCanceled,
            Notice::TradePubkey,
            Notice::Orders(vec![o.clone(), order(6, identity(1))]),
            Notice::RestoreSession {
                identity: identity(1),
                orders: vec![o.clone()],
            },
            Notice::LastTradeIndex(7),
            Notice::UserInfo(user),
            Notice::AdminAddSolver,
        ];
        for (k, n) in (1u16..).zip(notices) {
            v.push(notify(k, n));
        }
        for (k, r) in (100u16..).zip(Reject::ALL) {
            v.push(notify(k, Notice::CantDo(r)));
        }
        // Added later within format 1 (the golden file is only ever appended to).
        v.push(Effect::ResolveDevFee {
            order_id: id,
            address: "dev@example.com".into(),
            amount: Sats(1_200),
        });
        v.push(Effect::PublishDevFee { order_id: id });
        v
    }

    #[test]
    fn every_variant_has_a_sample() {
        let names: std::collections::BTreeSet<_> = samples().iter().map(variant).collect();
        assert_eq!(names.len(), 11 + 35, "{names:?}");
    }

    #[test]
    fn format_1_matches_the_golden_file_both_ways() {
        let samples = samples();
        let golden: Vec<&str> = GOLDEN.lines().collect();
        assert_eq!(golden.len(), samples.len(), "one golden line per sample");
        for (line, e) in golden.iter().zip(&samples) {
            assert_eq!(&encode(e).unwrap(), line, "{}", variant(e));
            assert_eq!(&decode(line).unwrap(), e, "{}", variant(e));
        }
    }
}
