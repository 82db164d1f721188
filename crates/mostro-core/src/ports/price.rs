//! The price port: BTC prices per fiat code, for market-price orders.

use async_trait::async_trait;

use crate::fees::Price;

/// BTC prices per fiat code.
#[async_trait]
pub trait PriceSource: Send + Sync {
    /// The latest known price for a fiat code, if any.
    ///
    /// # Implementations
    /// MUST answer from what it already knows, without network I/O in the call (it is awaited
    /// while a request is decided). MUST NOT report a price as newer than it is: `at` is when
    /// the source last confirmed it (a price fixed by configuration is confirmed at every call),
    /// since the machine refuses a price older than the policy allows by that time. `None`
    /// when no price is known (the request is refused as `price_too_stale`).
    async fn price(&self, fiat_code: &str) -> Option<Price>;
}
