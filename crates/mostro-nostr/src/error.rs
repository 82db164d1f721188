//! Errors of the unwrap and wrap functions.

/// Why an inbound event could not be opened. Every variant means "drop the
/// event without a reply".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// The event is of another kind than the protocol expects.
    #[error("unexpected event kind {0}")]
    WrongKind(u16),
    /// The outer event's id or signature does not verify.
    #[error("outer event id or signature does not verify")]
    InvalidEvent,
    /// The content does not decrypt with our key: not addressed to us (or
    /// tampered; NIP-44 cannot tell the two apart).
    #[error("not addressed to this key")]
    NotForMe,
    /// Decrypted, but the content (tuple, seal or rumor) is malformed.
    #[error("malformed content: {0}")]
    Malformed(String),
    /// v1: the gift wrap does not hold a seal (kind 13).
    #[error("inner event is not a seal (kind {0})")]
    NotASeal(u16),
    /// v1: the seal's id or signature does not verify.
    #[error("seal id or signature does not verify")]
    InvalidSeal,
    /// v1: the seal decrypted to something that is not a kind-1 rumor.
    #[error("rumor of kind {0}, expected 1")]
    RumorKind(u16),
    /// The trade signature does not verify against the sender.
    #[error("trade signature does not verify against the sender")]
    BadTradeSignature,
    /// v2: the identity proof does not verify.
    #[error("identity proof does not verify")]
    BadIdentityProof,
    /// v2: the identity proof's public key is malformed.
    #[error("malformed identity public key")]
    MalformedIdentity,
}

impl UnwrapError {
    /// Stable snake_case label for logs and metrics.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            UnwrapError::WrongKind(_) => "wrong_kind",
            UnwrapError::InvalidEvent => "invalid_event",
            UnwrapError::NotForMe => "not_for_me",
            UnwrapError::Malformed(_) => "malformed",
            UnwrapError::NotASeal(_) => "not_a_seal",
            UnwrapError::InvalidSeal => "invalid_seal",
            UnwrapError::RumorKind(_) => "rumor_kind",
            UnwrapError::BadTradeSignature => "bad_trade_signature",
            UnwrapError::BadIdentityProof => "bad_identity_proof",
            UnwrapError::MalformedIdentity => "malformed_identity",
        }
    }
}

/// Why an outgoing event could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// The recipient key is not a valid public key.
    #[error("invalid recipient key")]
    BadRecipient,
    /// NIP-44 encryption failed.
    #[error("encryption failed: {0}")]
    Encrypt(String),
    /// Signing or building the event failed.
    #[error("event building failed: {0}")]
    Build(String),
}
