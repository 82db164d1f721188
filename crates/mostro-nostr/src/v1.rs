//! Protocol v1: NIP-59 gift wrap (kind 1059) -> seal (kind 13) -> rumor
//! (kind 1), unwrapped by hand.
//!
//! Mostro deliberately lets the seal signer (the identity key) differ from
//! the rumor author (the trade key), which generic NIP-59 helpers refuse.
//! Unwrap: verify the gift wrap (id and signature; the reference skipped
//! this, real senders always pass it), decrypt it with the receiver's secret
//! (failure = not for us), parse the seal, require kind 13 and verify its id
//! and signature, decrypt it, parse the rumor, require kind 1, parse the
//! 2-tuple `[message, trade_sig | null]`, verify the trade signature against
//! the rumor author. `identity` = seal signer, `sender` = rumor author. The
//! rumor id is not checked (the reference does not either).

use mostro_core::order::Protocol;
use mostro_core::wire::Message;
use nostr_sdk::{
    Event, EventBuilder, JsonUtil, Keys, Kind, PublicKey, Tag, Timestamp, UnsignedEvent,
};

use crate::crypto;
use crate::error::{UnwrapError, WrapError};
use crate::{KIND_GIFT_WRAP, KIND_RUMOR, KIND_SEAL, Unwrapped};

/// How far NIP-59 pushes seal and wrap timestamps into the past (2 days).
pub const TWEAK_SECS: u64 = 2 * 24 * 60 * 60;

/// The decrypted v1 tuple.
type Tuple = (Message, Option<String>);

/// Opens a gift wrap addressed to `receiver` and authenticates it.
///
/// # Errors
///
/// [`UnwrapError`] for every event that must be dropped; `NotForMe` when the
/// wrap does not decrypt with `receiver`.
pub fn unwrap(event: &Event, receiver: &Keys) -> Result<Unwrapped, UnwrapError> {
    let kind = event.kind.as_u16();
    if kind != KIND_GIFT_WRAP {
        return Err(UnwrapError::WrongKind(kind));
    }
    if event.verify().is_err() {
        return Err(UnwrapError::InvalidEvent);
    }
    let seal_json = crypto::decrypt(receiver.secret_key(), &event.pubkey, &event.content)
        .ok_or(UnwrapError::NotForMe)?;
    let seal = Event::from_json(&seal_json).map_err(|e| UnwrapError::Malformed(e.to_string()))?;
    let seal_kind = seal.kind.as_u16();
    if seal_kind != KIND_SEAL {
        return Err(UnwrapError::NotASeal(seal_kind));
    }
    if seal.verify().is_err() {
        return Err(UnwrapError::InvalidSeal);
    }
    let rumor_json = crypto::decrypt(receiver.secret_key(), &seal.pubkey, &seal.content)
        .ok_or_else(|| UnwrapError::Malformed("seal does not decrypt".into()))?;
    let rumor =
        UnsignedEvent::from_json(&rumor_json).map_err(|e| UnwrapError::Malformed(e.to_string()))?;
    let rumor_kind = rumor.kind.as_u16();
    if rumor_kind != KIND_RUMOR {
        return Err(UnwrapError::RumorKind(rumor_kind));
    }
    let (message, trade_sig): Tuple =
        serde_json::from_str(&rumor.content).map_err(|e| UnwrapError::Malformed(e.to_string()))?;
    let signed = match &trade_sig {
        Some(sig) if crypto::verify(&rumor.pubkey, sig, &message.to_json()) => true,
        Some(_) => return Err(UnwrapError::BadTradeSignature),
        None => false,
    };
    Ok(Unwrapped {
        protocol: Protocol::V1,
        event_id: event.id,
        sender: rumor.pubkey,
        identity: seal.pubkey,
        signed,
        created_at: rumor.created_at.as_secs(),
        plaintext: rumor.content,
        message,
    })
}

/// Builds the node's gift-wrapped reply: rumor and seal by `node`, content
/// `[message, null]`, wrapped by a fresh key to `to`, no expiration.
///
/// # Errors
///
/// [`WrapError`] if encryption or signing fails.
pub fn wrap_reply(
    message: &Message,
    node: &Keys,
    to: &PublicKey,
    created_at: Timestamp,
) -> Result<Event, WrapError> {
    let content = format!("[{},null]", message.to_json());
    gift_wrap(node, node, to, &content, created_at, None)
}

/// Rumor by `author` with `content`, sealed by `sealer`, wrapped to `to`.
/// Seal and wrap timestamps are pushed up to [`TWEAK_SECS`] into the past
/// from `created_at`, as NIP-59 does; the rumor keeps `created_at`.
pub(crate) fn gift_wrap(
    author: &Keys,
    sealer: &Keys,
    to: &PublicKey,
    content: &str,
    created_at: Timestamp,
    expiration: Option<Timestamp>,
) -> Result<Event, WrapError> {
    let rumor = EventBuilder::new(Kind::from(KIND_RUMOR), content)
        .custom_created_at(created_at)
        .build(author.public_key());
    let sealed = crypto::encrypt(sealer.secret_key(), to, &rumor.as_json())?;
    let seal = EventBuilder::new(Kind::from(KIND_SEAL), sealed)
        .custom_created_at(tweaked(created_at))
        .sign_with_keys(sealer)
        .map_err(|e| WrapError::Build(e.to_string()))?;
    let ephemeral = Keys::generate();
    let wrapped = crypto::encrypt(ephemeral.secret_key(), to, &seal.as_json())?;
    let mut builder = EventBuilder::new(Kind::from(KIND_GIFT_WRAP), wrapped)
        .allow_self_tagging()
        .custom_created_at(tweaked(created_at));
    if let Some(exp) = expiration {
        builder = builder.tag(Tag::expiration(exp));
    }
    builder
        .tag(Tag::public_key(*to))
        .sign_with_keys(&ephemeral)
        .map_err(|e| WrapError::Build(e.to_string()))
}

/// `t` minus a random 0..2 days.
fn tweaked(t: Timestamp) -> Timestamp {
    let back = nostr_sdk::Timestamp::tweaked(0..TWEAK_SECS);
    let now = nostr_sdk::Timestamp::now().as_secs();
    let delta = now.saturating_sub(back.as_secs());
    Timestamp::from_secs(t.as_secs().saturating_sub(delta))
}
