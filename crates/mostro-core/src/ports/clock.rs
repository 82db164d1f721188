//! The clock and entropy ports: the only sources of time and randomness of the engine.

use crate::types::Timestamp;

/// The wall clock.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// Randomness for preimages and ids.
pub trait Entropy: Send + Sync {
    /// 32 fresh random bytes.
    fn random_32(&self) -> [u8; 32];
}
