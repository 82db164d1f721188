//! Shared helpers of the mostro-nostr tests: vector files, fixed keys, orders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mostro_core::order::{Kind, Order, Party, Protocol, Status};
use mostro_core::types::{OrderId, PubKey, Sats, Timestamp};
use nostr_sdk::Keys;
use serde_json::Value;

/// The protocol vectors, copied in the repository.
pub const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/protocol/vectors"
);

/// Every line of a `.jsonl` vector file.
pub fn read_lines(file: &str) -> Vec<Value> {
    let path = format!("{VECTORS}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `keys.json`.
pub fn key_file() -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{VECTORS}/keys.json")).unwrap()).unwrap()
}

/// The fixed key pair with this label.
pub fn keys(label: &str) -> Keys {
    Keys::parse(key_file()[label]["secret_hex"].as_str().unwrap()).unwrap()
}

/// The public key with this label as a domain key.
pub fn core_key(label: &str) -> PubKey {
    PubKey(keys(label).public_key().to_bytes())
}

/// A party (identity label = trade label for full privacy).
pub fn party(trade: &str, identity: &str, index: u32) -> Party {
    Party {
        trade_key: core_key(trade),
        identity: core_key(identity),
        trade_index: index,
        protocol: Protocol::V2,
    }
}

/// An order with the vectors' common values (EUR 100, SEPA, created
/// 1767225600, expires 1767312000), maker `client_trade` in reputation mode.
pub fn order(id: &str, kind: Kind, status: Status, amount: u64) -> Order {
    Order {
        id: id.parse::<OrderId>().unwrap(),
        version: 1,
        kind,
        status,
        fiat_code: "EUR".into(),
        fiat_amount: 100,
        min_amount: None,
        max_amount: None,
        amount: Sats(amount),
        premium: 0,
        price_from_api: amount == 0,
        payment_method: "SEPA".into(),
        fee: Sats(0),
        created_at: Timestamp(1_767_225_600),
        expires_at: Timestamp(1_767_312_000),
        taken_at: None,
        maker: party("client_trade", "client_identity", 1),
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
        range_parent: None,
        abandoned_holds: Vec::new(),
        deadline: None,
        dev_fee: None,
    }
}
