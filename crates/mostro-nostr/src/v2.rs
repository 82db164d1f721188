//! Protocol v2: a signed kind-14 event whose content is the NIP-44 v2
//! encryption of `[message, trade_sig | null, [identity, identity_sig] | null]`.
//!
//! Unwrap order (as the reference): kind 14, event id and signature, NIP-44
//! decryption with the receiver's secret (failure = not for us), the 3-tuple,
//! the trade signature against the event author, the identity proof bound to
//! the event author. Signatures are checked over our canonical
//! re-serialization of the message.

use mostro_core::order::Protocol;
use mostro_core::wire::Message;
use nostr_sdk::{Event, EventBuilder, Keys, Kind, PublicKey, Tag, Timestamp};

use crate::crypto;
use crate::error::{UnwrapError, WrapError};
use crate::{KIND_V2, Unwrapped};

/// The decrypted v2 tuple.
type Tuple = (Message, Option<String>, Option<(String, String)>);

/// Opens a kind-14 event addressed to `receiver` and authenticates it.
///
/// # Errors
///
/// [`UnwrapError`] for every event that must be dropped; `NotForMe` when the
/// content does not decrypt with `receiver`.
pub fn unwrap(event: &Event, receiver: &Keys) -> Result<Unwrapped, UnwrapError> {
    let kind = event.kind.as_u16();
    if kind != KIND_V2 {
        return Err(UnwrapError::WrongKind(kind));
    }
    if event.verify().is_err() {
        return Err(UnwrapError::InvalidEvent);
    }
    let plaintext = crypto::decrypt(receiver.secret_key(), &event.pubkey, &event.content)
        .ok_or(UnwrapError::NotForMe)?;
    let (message, trade_sig, proof): Tuple =
        serde_json::from_str(&plaintext).map_err(|e| UnwrapError::Malformed(e.to_string()))?;
    let json = message.to_json();
    let signed = match &trade_sig {
        Some(sig) if crypto::verify(&event.pubkey, sig, &json) => true,
        Some(_) => return Err(UnwrapError::BadTradeSignature),
        None => false,
    };
    let identity = match &proof {
        Some((key, sig)) => {
            let identity = PublicKey::from_hex(key).map_err(|_| UnwrapError::MalformedIdentity)?;
            let text = crypto::identity_proof_text(&event.pubkey, &json);
            if !crypto::verify(&identity, sig, &text) {
                return Err(UnwrapError::BadIdentityProof);
            }
            identity
        },
        None => event.pubkey,
    };
    Ok(Unwrapped {
        protocol: Protocol::V2,
        event_id: event.id,
        sender: event.pubkey,
        identity,
        signed,
        created_at: event.created_at.as_secs(),
        plaintext,
        message,
    })
}

/// Builds the node's kind-14 reply: authored and signed by `node`, `p`-tagged
/// to `to`, NIP-40 `expiration` when given, content the NIP-44 encryption of
/// `[message, null, null]`.
///
/// # Errors
///
/// [`WrapError`] if encryption or signing fails.
pub fn wrap_reply(
    message: &Message,
    node: &Keys,
    to: &PublicKey,
    created_at: Timestamp,
    expiration: Option<Timestamp>,
) -> Result<Event, WrapError> {
    let plaintext = format!("[{},null,null]", message.to_json());
    seal_event(node, to, &plaintext, created_at, expiration, 0)
}

/// Encrypts `plaintext` from `author` to `to` into a signed kind-14 event
/// with tags `p`, then `expiration` (if any), then the NIP-13 `nonce` (if
/// `pow > 0`).
pub(crate) fn seal_event(
    author: &Keys,
    to: &PublicKey,
    plaintext: &str,
    created_at: Timestamp,
    expiration: Option<Timestamp>,
    pow: u8,
) -> Result<Event, WrapError> {
    let content = crypto::encrypt(author.secret_key(), to, plaintext)?;
    let mut builder = EventBuilder::new(Kind::from(KIND_V2), content)
        .tag(Tag::public_key(*to))
        .allow_self_tagging()
        .custom_created_at(created_at);
    if let Some(exp) = expiration {
        builder = builder.tag(Tag::expiration(exp));
    }
    if pow > 0 {
        builder = builder.pow(pow);
    }
    builder
        .sign_with_keys(author)
        .map_err(|e| WrapError::Build(e.to_string()))
}
