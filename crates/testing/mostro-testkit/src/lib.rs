//! Test support for Mostro: an in-memory Lightning node over a simulated ledger, an in-memory
//! store, a manual clock, a recording transport, scenario helpers and the
//! conformance suites every adapter must pass.
#![warn(missing_docs)]

pub mod fakes;
pub mod ledger;
pub mod node_suite;
pub mod scenario;
pub mod store_suite;

pub use fakes::{
    FakeNode, FakeResolver, FixedPrices, ManualClock, MemStore, RecordingTransport, SeqEntropy,
    SystemClock,
};
pub use ledger::{Faults, Ledger};
pub use scenario::{TestBed, Trader};
