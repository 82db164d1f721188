//! Ports: the traits adapters implement, one file per port. Object-safe (`Arc<dyn
//! LightningNode>` is chosen at runtime from config) and written contract first: every method
//! states what an implementation MUST and MUST NOT do, and one conformance suite per port (in
//! the test kit) holds every implementation to it.

mod clock;
mod lightning;
mod price;
mod resolver;
mod store;
mod transport;

pub use clock::{Clock, Entropy};
pub use lightning::{
    HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnErrorKind, NodeEvent, NodeInfo,
    PayRequest, PaymentStatus,
};
pub use price::PriceSource;
pub use resolver::{PayoutResolver, ResolveError};
pub use store::{
    Commit, DeadEffect, EffectId, OrderKey, OrderWrite, Store, StoreError, StoreErrorKind, View,
    ViewQuery,
};
pub use transport::{Transport, TransportError};

pub use crate::types::{DecodedInvoice, Network};
pub use crate::user::{Solver, User};
