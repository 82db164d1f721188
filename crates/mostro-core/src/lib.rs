//! Pure domain of the Mostro peer-to-peer exchange.
//!
//! Nothing here performs I/O, spawns tasks or reads a clock: time arrives as an
//! argument, randomness arrives through the [`ports::Entropy`] port, and every
//! side effect is returned as data ([`machine::Effect`]) that the [`engine`]
//! commits to the store before executing it.
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

pub mod engine;
pub mod fees;
pub mod machine;
pub mod order;
pub mod policy;
pub mod ports;
pub mod types;
pub mod user;
pub mod wire;

pub use order::{Dispute, DisputeStatus, Kind, Order, Party, Role, Status};
pub use policy::Policy;
pub use types::{BlockHeight, Msats, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp};
