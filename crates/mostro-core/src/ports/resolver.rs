//! The payout resolver port: Lightning addresses and LNURL-pay into invoices.

use async_trait::async_trait;

use crate::types::Sats;

/// Why a Lightning address could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResolveError {
    /// Retrying later may work (timeouts, unreachable host).
    pub transient: bool,
    /// Detail.
    pub message: String,
}

/// Turns a Lightning address (`user@domain`) or LNURL-pay into a BOLT11 invoice.
#[async_trait]
pub trait PayoutResolver: Send + Sync {
    /// An invoice for exactly `amount` payable to `destination`.
    ///
    /// # Implementations
    /// MUST refuse private or loopback hosts outside tests and bound every request in time and
    /// size. The engine decodes and checks the returned invoice itself.
    ///
    /// MUST set [`ResolveError::transient`] only when a later call may succeed (timeout,
    /// unreachable host): the effect then stays in the outbox and is retried. Any other `Err`
    /// counts as a failed payout attempt. MUST make one attempt per call and MUST NOT retry on
    /// its own.
    async fn resolve(&self, destination: &str, amount: Sats) -> Result<String, ResolveError>;
}
