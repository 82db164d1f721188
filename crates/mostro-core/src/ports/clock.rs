//! The clock and entropy ports: the only sources of time and randomness of the engine.

use crate::types::Timestamp;

/// The wall clock.
pub trait Clock: Send + Sync {
    /// Now.
    ///
    /// # Implementations
    /// MUST NOT block or fail (it is synchronous and called on every request). A production
    /// clock MUST report wall time in seconds since the Unix epoch; it is the only clock the
    /// engine and every commit use.
    fn now(&self) -> Timestamp;
}

/// Randomness for preimages and ids.
pub trait Entropy: Send + Sync {
    /// 32 fresh random bytes.
    ///
    /// # Implementations
    /// Outside tests MUST come from a cryptographically secure generator: hold-invoice
    /// preimages and new order ids are derived from them, and a preimage must stay secret until
    /// the node settles. MUST NOT repeat an earlier answer, and MUST NOT block or fail.
    fn random_32(&self) -> [u8; 32];
}
