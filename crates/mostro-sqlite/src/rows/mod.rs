//! The store's own row format for orders, versioned apart from the domain types.
//!
//! An order is stored as a JSON document whose shape belongs to this crate, not to
//! [`mostro_core::order::Order`]: the types below spell out every field, tag and enum spelling of
//! format 1 (the format every release so far has written), and convert to and from the domain
//! type with total matches. A change to a domain type therefore cannot change what is on disk
//! silently: either the conversion here stops compiling, or it keeps writing format 1.
//!
//! The `orders.body_format` column (schema 4) names the format of each row. Reading dispatches on
//! it; a row in a format this build does not know is refused as corrupt (a newer release wrote
//! it) rather than guessed at. A future format 2 adds its own types next to these, keeps the
//! format-1 decoder, and writes 2 from then on (rows convert as they are rewritten).
//!
//! Outbox effects carry a format too (`outbox.effect_format`): `effect.rs` spells out format 1
//! of an effect, of the message it may carry and of everything inside it (orders as `OrderV1`,
//! users, refusals), with the same total conversions. `tests/data/effects-format1.jsonl` holds
//! one sample of every variant as format 1 wrote it; a unit test decodes and re-encodes each.
//!
//! Format 1 is byte-compatible with the JSON the release before schema 4 wrote: the fixture
//! test (`tests/release_fixture.rs`) decodes such a file and re-encodes every row identically.

use mostro_core::machine::Effect;
use mostro_core::order::{
    DevFee, DevFeeState, Dispute, DisputeStatus, Hold, HoldState, Kind, NextTrade, Order, Party,
    Payout, PayoutInvoice, PayoutState, Protocol, Role, Status,
};
use mostro_core::types::{BlockHeight, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The row format this build writes.
pub const ORDER_FORMAT: i64 = 1;

/// Why a stored row does not decode.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// The format column names a format this build does not know.
    #[error("row format {0} is unknown to this build (written by a newer release?)")]
    UnknownFormat(i64),
    /// The document is not valid for its format.
    #[error("undecodable format-{format} row: {reason}")]
    Invalid {
        /// The row's format.
        format: i64,
        /// What the decoder said.
        reason: String,
    },
}

/// The effect row format this build writes.
pub const EFFECT_FORMAT: i64 = 1;

/// Encodes an outbox effect in the current format.
pub fn encode_effect(effect: &Effect) -> Result<String, serde_json::Error> {
    effect::encode(effect)
}

/// Decodes an outbox effect row of the given format.
pub fn decode_effect(format: i64, json: &str) -> Result<Effect, RowError> {
    match format {
        1 => effect::decode(json).map_err(|e| RowError::Invalid {
            format,
            reason: e.to_string(),
        }),
        other => Err(RowError::UnknownFormat(other)),
    }
}

/// Encodes an order in the current format.
pub fn encode_order(order: &Order) -> Result<String, serde_json::Error> {
    serde_json::to_string(&OrderV1::from(order))
}

/// Decodes an order row of the given format.
pub fn decode_order(format: i64, body: &str) -> Result<Order, RowError> {
    match format {
        1 => {
            let row: OrderV1 = serde_json::from_str(body).map_err(|e| RowError::Invalid {
                format,
                reason: e.to_string(),
            })?;
            Ok(row.into())
        },
        other => Err(RowError::UnknownFormat(other)),
    }
}

/// 32 bytes, lower-case hex in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hex32([u8; 32]);

impl Serialize for Hex32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Hex32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected 64 hex characters, got {:?}",
                s.chars().take(80).collect::<String>()
            ))
        })?;
        Ok(Hex32(out))
    }
}

macro_rules! hex32_conversions {
    ($($t:ty),*) => {$(
        impl From<$t> for Hex32 {
            fn from(v: $t) -> Self {
                Hex32(v.0)
            }
        }
        impl From<Hex32> for $t {
            fn from(v: Hex32) -> Self {
                Self(v.0)
            }
        }
    )*};
}
hex32_conversions!(PubKey, PaymentHash, Preimage);

/// A two-way total mapping between a domain enum and its format-1 spelling.
macro_rules! row_enum {
    ($row:ident, $domain:ty, $rename:literal, { $($v:ident),* $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = $rename)]
        enum $row { $($v),* }

        impl From<$domain> for $row {
            fn from(v: $domain) -> Self {
                match v { $(<$domain>::$v => $row::$v),* }
            }
        }

        impl From<$row> for $domain {
            fn from(v: $row) -> Self {
                match v { $($row::$v => <$domain>::$v),* }
            }
        }
    };
}

mod effect;

row_enum!(KindV1, Kind, "lowercase", { Buy, Sell });
row_enum!(RoleV1, Role, "lowercase", { Buyer, Seller });
row_enum!(ProtocolV1, Protocol, "lowercase", { V1, V2 });
row_enum!(StatusV1, Status, "kebab-case", {
    Pending,
    WaitingTakerBond,
    WaitingMakerBond,
    WaitingBuyerInvoice,
    WaitingPayment,
    Active,
    FiatSent,
    Dispute,
    SettledHoldInvoice,
    Success,
    Canceled,
    CooperativelyCanceled,
    CanceledByAdmin,
    Expired,
    SettledByAdmin,
    CompletedByAdmin,
    InProgress,
});
row_enum!(DisputeStatusV1, DisputeStatus, "kebab-case", {
    Initiated,
    InProgress,
    Settled,
    SellerRefunded,
    Released,
    CooperativelyCanceled,
});
row_enum!(HoldStateV1, HoldState, "snake_case", {
    Requested,
    Open,
    Accepted,
    Settling,
    Settled,
    Canceled,
});
row_enum!(DevFeeStateV1, DevFeeState, "snake_case", {
    Resolving,
    InFlight,
    Failed,
    Paid,
    GaveUp,
});
row_enum!(PayoutStateV1, PayoutState, "snake_case", {
    Idle,
    Resolving,
    InFlight,
    Failed,
    NeedInvoice,
    Succeeded,
});

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PartyV1 {
    trade_key: Hex32,
    identity: Hex32,
    trade_index: u32,
    protocol: ProtocolV1,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct HoldV1 {
    hash: Hex32,
    preimage: Hex32,
    amount: u64,
    bolt11: Option<String>,
    state: HoldStateV1,
    htlc_expiry: Option<u32>,
    #[serde(default)]
    request_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PayoutV1 {
    invoice: String,
    hash: Hex32,
    amount: u64,
    attempts: u32,
    state: PayoutStateV1,
    routing_fee: u64,
    #[serde(default)]
    previous: Vec<Hex32>,
    #[serde(default)]
    checking: bool,
    #[serde(default)]
    paid_hash: Option<Hex32>,
    #[serde(default)]
    duplicates: Vec<Hex32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DevFeeV1 {
    amount: u64,
    address: String,
    state: DevFeeStateV1,
    invoice: Option<String>,
    hash: Option<Hex32>,
    previous: Vec<Hex32>,
    attempts: u32,
    checking: bool,
    paid_hash: Option<Hex32>,
    routing_fee: u64,
    duplicates: Vec<Hex32>,
}

impl From<&DevFee> for DevFeeV1 {
    fn from(d: &DevFee) -> Self {
        DevFeeV1 {
            amount: d.amount.0,
            address: d.address.clone(),
            state: d.state.into(),
            invoice: d.invoice.clone(),
            hash: d.hash.map(Into::into),
            previous: hexes(&d.previous),
            attempts: d.attempts,
            checking: d.checking,
            paid_hash: d.paid_hash.map(Into::into),
            routing_fee: d.routing_fee.0,
            duplicates: hexes(&d.duplicates),
        }
    }
}

impl From<DevFeeV1> for DevFee {
    fn from(d: DevFeeV1) -> Self {
        DevFee {
            amount: Sats(d.amount),
            address: d.address,
            state: d.state.into(),
            invoice: d.invoice,
            hash: d.hash.map(Into::into),
            previous: unhex(d.previous),
            attempts: d.attempts,
            checking: d.checking,
            paid_hash: d.paid_hash.map(Into::into),
            routing_fee: Sats(d.routing_fee),
            duplicates: unhex(d.duplicates),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PayoutInvoiceV1 {
    bolt11: String,
    hash: Hex32,
    amount: Option<u64>,
    expires_at: u64,
    #[serde(default)]
    min_final_cltv: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DisputeV1 {
    id: uuid::Uuid,
    status: DisputeStatusV1,
    initiator: RoleV1,
    previous_status: StatusV1,
    solver: Option<Hex32>,
    solver_write: bool,
    taken_by_admin: bool,
    created_at: u64,
    taken_at: Option<u64>,
    #[serde(default)]
    expiry_warned: bool,
    #[serde(default)]
    solver_party: Option<PartyV1>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct NextTradeV1 {
    trade_key: Hex32,
    trade_index: u32,
}

/// Format 1 of an order row (field order is the document's key order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrderV1 {
    id: uuid::Uuid,
    version: u64,
    kind: KindV1,
    status: StatusV1,
    fiat_code: String,
    fiat_amount: i64,
    min_amount: Option<i64>,
    max_amount: Option<i64>,
    amount: u64,
    premium: i64,
    price_from_api: bool,
    payment_method: String,
    fee: u64,
    created_at: u64,
    expires_at: u64,
    taken_at: Option<u64>,
    maker: PartyV1,
    taker: Option<PartyV1>,
    buyer_invoice: Option<PayoutInvoiceV1>,
    #[serde(default)]
    buyer_address: Option<String>,
    hold: Option<HoldV1>,
    payout: Option<PayoutV1>,
    cancel_initiator: Option<RoleV1>,
    dispute: Option<DisputeV1>,
    buyer_rated: bool,
    seller_rated: bool,
    next_trade: Option<NextTradeV1>,
    range_parent: Option<uuid::Uuid>,
    #[serde(default)]
    abandoned_holds: Vec<Hex32>,
    deadline: Option<u64>,
    /// Added within format 1: absent (and left out when none) in rows written before it, so
    /// their bytes do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev_fee: Option<DevFeeV1>,
}

fn hexes<T: Copy + Into<Hex32>>(v: &[T]) -> Vec<Hex32> {
    v.iter().map(|x| (*x).into()).collect()
}

fn unhex<T: From<Hex32>>(v: Vec<Hex32>) -> Vec<T> {
    v.into_iter().map(T::from).collect()
}

impl From<&Party> for PartyV1 {
    fn from(p: &Party) -> Self {
        PartyV1 {
            trade_key: p.trade_key.into(),
            identity: p.identity.into(),
            trade_index: p.trade_index,
            protocol: p.protocol.into(),
        }
    }
}

impl From<PartyV1> for Party {
    fn from(p: PartyV1) -> Self {
        Party {
            trade_key: p.trade_key.into(),
            identity: p.identity.into(),
            trade_index: p.trade_index,
            protocol: p.protocol.into(),
        }
    }
}

impl From<&Hold> for HoldV1 {
    fn from(h: &Hold) -> Self {
        HoldV1 {
            hash: h.hash.into(),
            preimage: h.preimage.into(),
            amount: h.amount.0,
            bolt11: h.bolt11.clone(),
            state: h.state.into(),
            htlc_expiry: h.htlc_expiry.map(|b| b.0),
            request_id: h.request_id,
        }
    }
}

impl From<HoldV1> for Hold {
    fn from(h: HoldV1) -> Self {
        Hold {
            hash: h.hash.into(),
            preimage: h.preimage.into(),
            amount: Sats(h.amount),
            bolt11: h.bolt11,
            state: h.state.into(),
            htlc_expiry: h.htlc_expiry.map(BlockHeight),
            request_id: h.request_id,
        }
    }
}

impl From<&Payout> for PayoutV1 {
    fn from(p: &Payout) -> Self {
        PayoutV1 {
            invoice: p.invoice.clone(),
            hash: p.hash.into(),
            amount: p.amount.0,
            attempts: p.attempts,
            state: p.state.into(),
            routing_fee: p.routing_fee.0,
            previous: hexes(&p.previous),
            checking: p.checking,
            paid_hash: p.paid_hash.map(Into::into),
            duplicates: hexes(&p.duplicates),
        }
    }
}

impl From<PayoutV1> for Payout {
    fn from(p: PayoutV1) -> Self {
        Payout {
            invoice: p.invoice,
            hash: p.hash.into(),
            amount: Sats(p.amount),
            attempts: p.attempts,
            state: p.state.into(),
            routing_fee: Sats(p.routing_fee),
            previous: unhex(p.previous),
            checking: p.checking,
            paid_hash: p.paid_hash.map(Into::into),
            duplicates: unhex(p.duplicates),
        }
    }
}

impl From<&PayoutInvoice> for PayoutInvoiceV1 {
    fn from(i: &PayoutInvoice) -> Self {
        PayoutInvoiceV1 {
            bolt11: i.bolt11.clone(),
            hash: i.hash.into(),
            amount: i.amount.map(|a| a.0),
            expires_at: i.expires_at.0,
            min_final_cltv: i.min_final_cltv,
        }
    }
}

impl From<PayoutInvoiceV1> for PayoutInvoice {
    fn from(i: PayoutInvoiceV1) -> Self {
        PayoutInvoice {
            bolt11: i.bolt11,
            hash: i.hash.into(),
            amount: i.amount.map(Sats),
            expires_at: Timestamp(i.expires_at),
            min_final_cltv: i.min_final_cltv,
        }
    }
}

impl From<&Dispute> for DisputeV1 {
    fn from(d: &Dispute) -> Self {
        DisputeV1 {
            id: d.id.0,
            status: d.status.into(),
            initiator: d.initiator.into(),
            previous_status: d.previous_status.into(),
            solver: d.solver.map(Into::into),
            solver_write: d.solver_write,
            taken_by_admin: d.taken_by_admin,
            created_at: d.created_at.0,
            taken_at: d.taken_at.map(|t| t.0),
            expiry_warned: d.expiry_warned,
            solver_party: d.solver_party.as_ref().map(Into::into),
        }
    }
}

impl From<DisputeV1> for Dispute {
    fn from(d: DisputeV1) -> Self {
        Dispute {
            id: OrderId(d.id),
            status: d.status.into(),
            initiator: d.initiator.into(),
            previous_status: d.previous_status.into(),
            solver: d.solver.map(Into::into),
            solver_write: d.solver_write,
            taken_by_admin: d.taken_by_admin,
            created_at: Timestamp(d.created_at),
            taken_at: d.taken_at.map(Timestamp),
            expiry_warned: d.expiry_warned,
            solver_party: d.solver_party.map(Into::into),
        }
    }
}

impl From<&Order> for OrderV1 {
    fn from(o: &Order) -> Self {
        OrderV1 {
            id: o.id.0,
            version: o.version,
            kind: o.kind.into(),
            status: o.status.into(),
            fiat_code: o.fiat_code.clone(),
            fiat_amount: o.fiat_amount,
            min_amount: o.min_amount,
            max_amount: o.max_amount,
            amount: o.amount.0,
            premium: o.premium,
            price_from_api: o.price_from_api,
            payment_method: o.payment_method.clone(),
            fee: o.fee.0,
            created_at: o.created_at.0,
            expires_at: o.expires_at.0,
            taken_at: o.taken_at.map(|t| t.0),
            maker: (&o.maker).into(),
            taker: o.taker.as_ref().map(Into::into),
            buyer_invoice: o.buyer_invoice.as_ref().map(Into::into),
            buyer_address: o.buyer_address.clone(),
            hold: o.hold.as_ref().map(Into::into),
            payout: o.payout.as_ref().map(Into::into),
            cancel_initiator: o.cancel_initiator.map(Into::into),
            dispute: o.dispute.as_ref().map(Into::into),
            buyer_rated: o.buyer_rated,
            seller_rated: o.seller_rated,
            next_trade: o.next_trade.map(|n| NextTradeV1 {
                trade_key: n.trade_key.into(),
                trade_index: n.trade_index,
            }),
            range_parent: o.range_parent.map(|r| r.0),
            abandoned_holds: hexes(&o.abandoned_holds),
            deadline: o.deadline.map(|t| t.0),
            dev_fee: o.dev_fee.as_ref().map(Into::into),
        }
    }
}

impl From<OrderV1> for Order {
    fn from(o: OrderV1) -> Self {
        Order {
            id: OrderId(o.id),
            version: o.version,
            kind: o.kind.into(),
            status: o.status.into(),
            fiat_code: o.fiat_code,
            fiat_amount: o.fiat_amount,
            min_amount: o.min_amount,
            max_amount: o.max_amount,
            amount: Sats(o.amount),
            premium: o.premium,
            price_from_api: o.price_from_api,
            payment_method: o.payment_method,
            fee: Sats(o.fee),
            created_at: Timestamp(o.created_at),
            expires_at: Timestamp(o.expires_at),
            taken_at: o.taken_at.map(Timestamp),
            maker: o.maker.into(),
            taker: o.taker.map(Into::into),
            buyer_invoice: o.buyer_invoice.map(Into::into),
            buyer_address: o.buyer_address,
            hold: o.hold.map(Into::into),
            payout: o.payout.map(Into::into),
            cancel_initiator: o.cancel_initiator.map(Into::into),
            dispute: o.dispute.map(Into::into),
            buyer_rated: o.buyer_rated,
            seller_rated: o.seller_rated,
            next_trade: o.next_trade.map(|n| NextTrade {
                trade_key: n.trade_key.into(),
                trade_index: n.trade_index,
            }),
            range_parent: o.range_parent.map(OrderId),
            abandoned_holds: unhex(o.abandoned_holds),
            deadline: o.deadline.map(Timestamp),
            dev_fee: o.dev_fee.map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use mostro_testkit::store_suite::full_order;

    use super::*;

    /// A name the row format gives a domain status, for the `status` column (kept equal to the
    /// document's spelling).
    fn status_spelling(s: Status) -> String {
        serde_json::to_string(&StatusV1::from(s))
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned()
    }

    #[test]
    fn every_field_survives_the_row_format() {
        let o = full_order();
        let body = encode_order(&o).unwrap();
        assert_eq!(decode_order(ORDER_FORMAT, &body).unwrap(), o);
    }

    #[test]
    fn every_status_is_spelled_as_the_domain_and_the_wire_spell_it() {
        for s in Status::ALL {
            assert_eq!(status_spelling(s), s.as_str());
            assert_eq!(Status::from(StatusV1::from(s)), s);
        }
    }

    #[test]
    fn an_unknown_format_is_refused_not_guessed() {
        assert!(matches!(
            decode_order(2, "{}"),
            Err(RowError::UnknownFormat(2))
        ));
        assert!(matches!(
            decode_order(1, "{\"id\": 3}"),
            Err(RowError::Invalid { format: 1, .. })
        ));
    }

    #[test]
    fn a_bad_key_names_what_it_got() {
        let e = serde_json::from_str::<Hex32>("\"zz\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 hex characters") && e.contains("zz"), "{e}");
    }

    #[test]
    fn preimage_from_str_agrees_with_the_row_spelling() {
        let p = Preimage::from_str(&"ab".repeat(32)).unwrap();
        let h: Hex32 = p.into();
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            format!("\"{}\"", "ab".repeat(32))
        );
    }
}
