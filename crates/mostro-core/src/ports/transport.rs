//! The outbound transport port: direct messages to parties and the node's public events.

use async_trait::async_trait;

use crate::machine::Notify;
use crate::order::Order;
use crate::types::PubKey;
use crate::user::User;

/// Transport failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transport: {message}")]
pub struct TransportError {
    /// Detail.
    pub message: String,
    /// The message can never be delivered (an invalid recipient key, an encryption or size
    /// error): the engine dead-letters it instead of retrying.
    pub permanent: bool,
}

impl TransportError {
    /// A failure that may clear (relays down, timeouts): the effect is retried.
    pub fn transient(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that will never clear: the effect is dead-lettered.
    pub fn permanent(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Outbound side of the transport (inbound requests are handed to the engine by the adapter's
/// driver).
///
/// # Contract
/// - **At-least-once**: `Ok` means at least one relay accepted the event; an implementation
///   MUST NOT report `Ok` for a message no relay accepted. The engine retries a failed call
///   from its outbox. A message may be delivered more than once (after a crash, or when one
///   relay accepted and another did not); clients tolerate repeats.
/// - **Failures**: [`TransportError::transient`] when a later call may succeed (relays down,
///   timeouts); [`TransportError::permanent`] only when no call can ever deliver the message.
/// - **What an `Err` means**: the message was not (known to be) delivered. The effect stays
///   pending in the outbox, which retries a transient error in a later round with a growing
///   pause and dead-letters a permanent one. An implementation MUST make one attempt per call
///   and MUST NOT sleep and retry a failed call itself: the outbox is the only retry policy
///   (ADR 0001).
/// - MUST NOT block on one relay: a dead relay costs a bounded time.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends a message to a party, in the party's protocol.
    ///
    /// # Implementations
    /// MUST return `Ok` only when at least one relay accepted the message, and MUST send it in
    /// `msg.protocol` to `msg.to`.
    /// May deliver more than once after a crash; clients tolerate repeats. MUST mark an error
    /// [`TransportError::permanent`] only when no retry can ever deliver the message (invalid
    /// recipient key, encryption failure, a message over the size limit).
    async fn send(&self, msg: &Notify) -> Result<(), TransportError>;

    /// Publishes (replaces) the public event of an order from its current state. Publishing
    /// an older state after a newer one MUST NOT win on relays (replaceable events ordered by
    /// `created_at`, never backwards).
    async fn publish_order(&self, order: &Order) -> Result<(), TransportError>;

    /// Publishes (replaces) the public event of an order's dispute.
    ///
    /// Same contract as [`Transport::publish_order`]: `Ok` only when a relay accepted it, and an
    /// older state published after a newer one MUST NOT win on relays.
    async fn publish_dispute(&self, order: &Order) -> Result<(), TransportError>;

    /// Publishes (replaces) the rating event of a user, `d`-tagged with the rated trade key.
    /// The default publishes nothing (transports without public events).
    ///
    /// MUST replace the earlier rating event of the same trade key, never add a second one.
    async fn publish_rating(&self, trade_key: &PubKey, user: &User) -> Result<(), TransportError> {
        let _ = (trade_key, user);
        Ok(())
    }

    /// Publishes the audit event of an order's paid development fee (a regular event: one per
    /// payment). No default: a decorator that forgot to forward it would silently publish
    /// nothing (a transport without public events returns `Ok`).
    ///
    /// MAY be called again for the same order after a crash (the outbox re-runs it); relays keep
    /// what they receive, so a client reading the audit trail MUST see the order id at most once
    /// per payment hash (the event carries both).
    async fn publish_dev_fee(&self, order: &Order) -> Result<(), TransportError>;
}
