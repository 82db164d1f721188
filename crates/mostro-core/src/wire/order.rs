//! The order object carried in payloads.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enums::{Kind, Status};

/// The order as carried in payloads (`payload.order`, `payment_request[0]`,
/// `orders[*]`, `bond_payout_request.order`).
///
/// Unknown keys make parsing fail (`deny_unknown_fields`), as in the
/// reference: never add fields. `id`, `buyer_trade_pubkey`,
/// `seller_trade_pubkey`, `buyer_invoice` and `cashu_mint_url` are omitted when
/// absent; the other optional fields are written as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmallOrder {
    /// Order id (absent in a client's new-order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Buy or sell.
    pub kind: Option<Kind>,
    /// Order status (ignored on input for new orders).
    pub status: Option<Status>,
    /// Amount in sats; `0` means market price, fixed at take time.
    pub amount: i64,
    /// Fiat currency code.
    pub fiat_code: String,
    /// Range lower bound (fiat).
    pub min_amount: Option<i64>,
    /// Range upper bound (fiat).
    pub max_amount: Option<i64>,
    /// Fixed fiat amount (`0` for a range order).
    pub fiat_amount: i64,
    /// Comma separated payment methods.
    pub payment_method: String,
    /// Premium in percent (only with `amount == 0`).
    pub premium: i64,
    /// Buyer's trade pubkey (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_trade_pubkey: Option<String>,
    /// Seller's trade pubkey (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_trade_pubkey: Option<String>,
    /// Buyer payout destination (bolt11, Lightning address or LNURL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_invoice: Option<String>,
    /// Creation time (unix seconds), set by the node.
    pub created_at: Option<i64>,
    /// Expiry time (unix seconds).
    pub expires_at: Option<i64>,
    /// Cashu mint URL (Cashu escrow nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cashu_mint_url: Option<String>,
}
