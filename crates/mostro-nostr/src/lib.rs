//! Nostr transport of the Mostro daemon.
//!
//! * [`v2`]: protocol v2, signed kind-14 events with NIP-44 v2 content
//!   (current).
//! * [`v1`]: protocol v1, NIP-59 gift wraps (kind 1059) unwrapped by hand,
//!   because Mostro's seal signer (identity key) and rumor author (trade key)
//!   legitimately differ.
//! * [`intake`]: the checks run before and after decryption (NIP-13 proof of
//!   work, size, per-sender rate limit, replay guard, freshness), with the
//!   clock passed in.
//! * [`events`]: the node's public events (kinds 38383, 38384, 38385, 38386,
//!   10002).
//! * [`NostrTransport`]: the [`mostro_core::ports::Transport`] adapter, and
//!   [`run_intake`], which subscribes on every relay, unwraps, maps with
//!   [`mostro_core::wire::map::to_request`] and yields each request with an
//!   [`Ack`] on a channel (the daemon's driver hands them to the engine).
//! * [`client`]: what a client does (wrap a request, open a reply), for
//!   tests, tools and benchmarks.
//!
//! The logical message and its canonical JSON come from
//! [`mostro_core::wire`]; signatures are checked against our own
//! re-serialization ([`mostro_core::wire::Message::to_json`]), never against
//! the received bytes.
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod client;
mod crypto;
mod delivery;
mod error;
pub mod events;
mod inbound;
pub mod intake;
mod nodelay;
mod transport;
pub mod v1;
pub mod v2;

pub use error::{UnwrapError, WrapError};
pub use inbound::{Ack, Delivered, run_intake};
pub use nodelay::NoDelayTransport;
pub use transport::{
    DEFAULT_CATCH_UP_RATE, InboundStats, MAX_PLAINTEXT, NostrTransport, Records, TransportConfig,
};

pub use nostr_sdk::{Event, Keys, PublicKey};

use mostro_core::order::Protocol;
use mostro_core::types::{EventId, PubKey, Timestamp};
use mostro_core::wire::Message;
use mostro_core::wire::map::Inbound;

/// Kind of a protocol v2 message.
pub const KIND_V2: u16 = 14;
/// Kind of a NIP-59 gift wrap (protocol v1).
pub const KIND_GIFT_WRAP: u16 = 1059;
/// Kind of a NIP-59 seal.
pub const KIND_SEAL: u16 = 13;
/// Kind of a Mostro v1 rumor.
pub const KIND_RUMOR: u16 = 1;

/// A message opened and authenticated by [`v2::unwrap`] or [`v1::unwrap`].
#[derive(Clone, Debug, PartialEq)]
pub struct Unwrapped {
    /// Protocol it arrived in.
    pub protocol: Protocol,
    /// Id of the outer event (kind 14 or the gift wrap).
    pub event_id: nostr_sdk::EventId,
    /// The trade key (v2: event author; v1: rumor author).
    pub sender: PublicKey,
    /// The identity (v2: identity-proof key or the sender; v1: seal signer).
    pub identity: PublicKey,
    /// A trade signature was present and valid.
    pub signed: bool,
    /// Time the sender stamped (v2: event `created_at`; v1: rumor
    /// `created_at`), the one freshness is checked on.
    pub created_at: u64,
    /// The decrypted tuple text.
    pub plaintext: String,
    /// The parsed message.
    pub message: Message,
}

impl Unwrapped {
    /// What the message layer needs to know about the sender.
    #[must_use]
    pub fn inbound(&self) -> Inbound {
        Inbound {
            sender: to_core_key(&self.sender),
            identity: to_core_key(&self.identity),
            protocol: self.protocol,
            event_id: Some(EventId(self.event_id.to_bytes())),
            signed: self.signed,
        }
    }
}

/// A nostr public key as the domain's [`PubKey`].
#[must_use]
pub fn to_core_key(k: &PublicKey) -> PubKey {
    PubKey(k.to_bytes())
}

/// A domain [`PubKey`] as a nostr public key (`None` if the bytes are not a
/// valid x-only key).
#[must_use]
pub fn to_nostr_key(k: &PubKey) -> Option<PublicKey> {
    PublicKey::from_slice(&k.0).ok()
}

/// A domain timestamp as a nostr timestamp.
#[must_use]
pub fn to_nostr_time(t: Timestamp) -> nostr_sdk::Timestamp {
    nostr_sdk::Timestamp::from_secs(t.0)
}
