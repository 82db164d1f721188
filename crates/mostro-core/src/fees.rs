//! Fee and price arithmetic, all integer and checked.
//!
//! Rounding rules (documented because clients compute the same numbers):
//! - the per-party Mostro fee is `round_half_up(amount * fee_ppm / 2 / 1e6)`, which equals the
//!   reference's `round(fee_pct * amount / 2)` for every non-negative amount;
//! - the routing fee cap is `max(floor(1% of amount), 10)` for amounts up to 1000 sats, and
//!   `floor(amount * max_routing_fee_ppm / 1e6)` above;
//! - a market quote is `round(fiat / price * 1e8 * (1 - premium/100))`, computed in `f64` and
//!   refused when not finite or out of `u64` range.

use crate::types::Sats;

/// One party's share of the Mostro fee.
#[must_use]
pub fn party_fee(amount: Sats, fee_ppm: u32) -> Sats {
    // amount * fee_ppm fits in u128; the result is at most amount * 2^32 / 2e6 < amount.
    let num = u128::from(amount.0)
        .saturating_mul(u128::from(fee_ppm))
        .saturating_add(1_000_000);
    let v = num / 2_000_000;
    Sats(u64::try_from(v).unwrap_or(u64::MAX))
}

/// The development fee of an order whose parties each paid `party_fee`: `dev_fee_ppm` of the
/// node's whole fee (`2 * party_fee`), rounded half up (the reference's
/// `round(2 * fee * dev_fee_percentage)`). Never more than the node's fee.
#[must_use]
pub fn dev_fee(party_fee: Sats, dev_fee_ppm: u32) -> Sats {
    let total = u128::from(party_fee.0).saturating_mul(2);
    let v = total
        .saturating_mul(u128::from(dev_fee_ppm.min(1_000_000)))
        .saturating_add(500_000)
        / 1_000_000;
    Sats(u64::try_from(v.min(total)).unwrap_or(u64::MAX))
}

/// The routing fee cap for a payout of `amount`.
#[must_use]
pub fn routing_fee_cap(amount: Sats, max_routing_fee_ppm: u32) -> Sats {
    if amount.0 <= 1000 {
        Sats((amount.0 / 100).max(10))
    } else {
        let v = u128::from(amount.0).saturating_mul(u128::from(max_routing_fee_ppm)) / 1_000_000;
        Sats(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

/// A BTC price in fiat units per bitcoin, with the time it was observed.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Price {
    /// Fiat units per BTC.
    pub fiat_per_btc: f64,
    /// When the price was observed.
    pub at: crate::types::Timestamp,
}

/// Sats for `fiat_amount` at `price` with `premium` percent; `None` if not computable.
#[must_use]
pub fn market_quote(fiat_amount: i64, price: f64, premium: i64) -> Option<Sats> {
    if !(price.is_finite() && price > 0.0) || fiat_amount <= 0 {
        return None;
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "fiat amounts are far below 2^52"
    )]
    let (fiat, prem) = (fiat_amount as f64, premium as f64);
    let sats = (fiat / price * 100_000_000.0 * (1.0 - prem / 100.0)).round();
    if !sats.is_finite() || !(0.0..1.8e19).contains(&sats) {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "range checked above"
    )]
    Some(Sats(sats as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_matches_reference_rounding() {
        // 0.6 % total, 0.3 % per party.
        assert_eq!(party_fee(Sats(100_000), 6000), Sats(300));
        assert_eq!(party_fee(Sats(1_000), 6000), Sats(3));
        // 0.3% of 500 = 1.5 -> rounds half up to 2.
        assert_eq!(party_fee(Sats(500), 6000), Sats(2));
        assert_eq!(party_fee(Sats(499), 6000), Sats(1));
        assert_eq!(party_fee(Sats(0), 6000), Sats(0));
        assert!(party_fee(Sats(u64::MAX), u32::MAX) > Sats(0));
    }

    #[test]
    fn routing_cap() {
        assert_eq!(routing_fee_cap(Sats(500), 2000), Sats(10));
        assert_eq!(routing_fee_cap(Sats(1000), 2000), Sats(10));
        assert_eq!(routing_fee_cap(Sats(100_000), 2000), Sats(200));
    }

    #[test]
    fn quote() {
        // 100 EUR at 50_000 EUR/BTC = 200_000 sats; premium 1 % -> 198_000.
        assert_eq!(market_quote(100, 50_000.0, 0), Some(Sats(200_000)));
        assert_eq!(market_quote(100, 50_000.0, 1), Some(Sats(198_000)));
        assert_eq!(market_quote(100, 0.0, 0), None);
        assert_eq!(market_quote(100, f64::NAN, 0), None);
        assert_eq!(market_quote(-1, 50_000.0, 0), None);
        assert_eq!(market_quote(100, 50_000.0, 200), None);
    }
}
