//! Policy: plain data the operator configures (fees, limits, windows, retries).

use serde::{Deserialize, Serialize};

use crate::types::Sats;

/// Everything the state machine needs to know about the operator's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Total Mostro fee in parts per million of the amount, split half/half
    /// between buyer and seller (`[mostro].fee = 0.006` is `6000`).
    pub fee_ppm: u32,
    /// Routing fee cap in parts per million of the payout (`max_routing_fee`, default 2000).
    pub max_routing_fee_ppm: u32,
    /// Smallest sats amount a trade may have.
    pub min_payment_amount: Sats,
    /// Largest sats amount a trade may have.
    pub max_order_amount: Sats,
    /// Lifetime of a pending order when the client asks for none (24 h).
    pub pending_expiration_secs: u64,
    /// Cap for a client-requested expiry (15 days).
    pub max_expiration_secs: u64,
    /// Window of each waiting step (`expiration_seconds`, 900).
    pub waiting_step_secs: u64,
    /// CLTV delta of the escrow hold invoice (144 blocks).
    pub hold_cltv_delta: u32,
    /// The guard acts this many blocks before the escrow HTLC expires (24).
    pub escrow_deadline_margin_blocks: u32,
    /// Payout attempts before asking for a new invoice (3).
    pub payment_attempts: u32,
    /// Seconds between payout attempts (60).
    pub payment_retry_secs: u64,
    /// A payout invoice must stay valid at least this long (3600 s).
    pub invoice_expiration_window_secs: u64,
    /// A market price older than this is refused (1800 s).
    pub max_price_age_secs: u64,
    /// Accepted fiat codes; empty accepts all.
    pub fiat_currencies: Vec<String>,
    /// Maximum ids in an `orders` request (10).
    pub max_orders_per_response: u32,
    /// Refuse new orders and takes (open trades keep working).
    pub maintenance: bool,
    /// Largest total CLTV (blocks) a payout route may lock the node's outgoing HTLC for; a
    /// payout invoice asking for a larger final CLTV is refused (576 blocks, about 4 days).
    pub max_payout_cltv: u32,
    /// Share of the node's fee (both parties' parts) paid as the development fee after a
    /// successful trade, in parts per million (0 = off).
    pub dev_fee_ppm: u32,
    /// The Lightning address the development fee is paid to (needed when `dev_fee_ppm` > 0).
    pub dev_fee_address: Option<String>,
    /// Development-fee attempts before giving up (each a retry interval apart).
    pub dev_fee_attempts: u32,
}

/// Default [`Policy::max_payout_cltv`]: about four days of blocks, enough for the routes real
/// wallets need (final deltas of 18-144 plus 40-144 per hop) and far from the ~2,016 blocks a
/// hostile invoice could otherwise pin the node's funds for.
pub const DEFAULT_MAX_PAYOUT_CLTV: u32 = 576;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fee_ppm: 6_000,
            max_routing_fee_ppm: 2_000,
            min_payment_amount: Sats(100),
            max_order_amount: Sats(1_000_000),
            pending_expiration_secs: 24 * 3600,
            max_expiration_secs: 15 * 24 * 3600,
            waiting_step_secs: 900,
            hold_cltv_delta: 144,
            escrow_deadline_margin_blocks: 24,
            payment_attempts: 3,
            payment_retry_secs: 60,
            invoice_expiration_window_secs: 3600,
            max_price_age_secs: 1800,
            fiat_currencies: Vec::new(),
            max_orders_per_response: 10,
            maintenance: false,
            max_payout_cltv: DEFAULT_MAX_PAYOUT_CLTV,
            dev_fee_ppm: 0,
            dev_fee_address: None,
            dev_fee_attempts: 10,
        }
    }
}

impl Policy {
    /// Whether a fiat code is accepted.
    #[must_use]
    pub fn accepts_fiat(&self, code: &str) -> bool {
        self.fiat_currencies.is_empty()
            || self
                .fiat_currencies
                .iter()
                .any(|c| c.eq_ignore_ascii_case(code))
    }
}
