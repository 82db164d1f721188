//! The price port: BTC prices per fiat code, for market-price orders.

use async_trait::async_trait;

use crate::fees::Price;

/// BTC prices per fiat code.
#[async_trait]
pub trait PriceSource: Send + Sync {
    /// The latest known price for a fiat code, if any.
    async fn price(&self, fiat_code: &str) -> Option<Price>;
}
