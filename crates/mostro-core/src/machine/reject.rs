//! Why a request was refused.

use serde::{Deserialize, Serialize};

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
    /// Every refusal.
    pub const ALL: [Reject; 30] = [
        Reject::InvalidSignature,
        Reject::InvalidTradeIndex,
        Reject::InvalidAmount,
        Reject::InvalidInvoice,
        Reject::InvalidPaymentRequest,
        Reject::InvalidPeer,
        Reject::InvalidRating,
        Reject::InvalidOrderKind,
        Reject::InvalidOrderStatus,
        Reject::InvalidPubkey,
        Reject::InvalidParameters,
        Reject::InvalidPayload,
        Reject::OrderAlreadyCanceled,
        Reject::CantCreateUser,
        Reject::IsNotYourOrder,
        Reject::NotAllowedByStatus,
        Reject::OutOfRangeFiatAmount,
        Reject::OutOfRangeSatsAmount,
        Reject::PriceTooStale,
        Reject::IsNotYourDispute,
        Reject::DisputeTakenByAdmin,
        Reject::NotAuthorized,
        Reject::NotFound,
        Reject::InvalidDisputeStatus,
        Reject::InvalidAction,
        Reject::PendingOrderExists,
        Reject::InvalidFiatCurrency,
        Reject::TooManyRequests,
        Reject::MaintenanceMode,
        Reject::ReputationIdentityRequired,
    ];

    /// The wire spelling of the reason.
    #[must_use]
    pub fn as_wire(&self) -> String {
        self.to_string()
    }
}
