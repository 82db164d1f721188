//! The client side of both protocols: wrap a request to a node, open the
//! node's replies. Used by tests, benchmarks and tools; the daemon itself
//! only needs [`crate::v2`] and [`crate::v1`].

use mostro_core::wire::Message;
use nostr_sdk::{Event, Keys, PublicKey, Timestamp};

use crate::crypto;
use crate::error::{UnwrapError, WrapError};
use crate::{Unwrapped, v1, v2};

/// How a client wraps a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrapOptions {
    /// Put a trade signature in the tuple.
    pub signed: bool,
    /// NIP-13 difficulty to mine on the outer event (v2 only; 0 = none).
    pub pow: u8,
    /// NIP-40 expiration of the outer event.
    pub expiration: Option<Timestamp>,
    /// `created_at` of the v2 event / v1 rumor (`None` = now).
    pub created_at: Option<Timestamp>,
}

impl Default for WrapOptions {
    fn default() -> Self {
        WrapOptions {
            signed: true,
            pow: 0,
            expiration: None,
            created_at: None,
        }
    }
}

/// A client's trade key and, in reputation mode, identity key.
#[derive(Clone, Debug)]
pub struct ClientKeys {
    /// The per-trade key (event / rumor author).
    pub trade: Keys,
    /// The identity key; `None` in full-privacy mode.
    pub identity: Option<Keys>,
}

impl ClientKeys {
    /// Reputation mode.
    #[must_use]
    pub fn reputation(trade: Keys, identity: Keys) -> Self {
        ClientKeys {
            trade,
            identity: Some(identity),
        }
    }

    /// Full-privacy mode (identity = trade key).
    #[must_use]
    pub fn private(trade: Keys) -> Self {
        ClientKeys {
            trade,
            identity: None,
        }
    }
}

/// Wraps a request as a protocol v2 kind-14 event to `node`.
///
/// # Errors
///
/// [`WrapError`] if encryption or signing fails.
pub fn wrap_v2(
    message: &Message,
    keys: &ClientKeys,
    node: &PublicKey,
    opts: WrapOptions,
) -> Result<Event, WrapError> {
    let json = message.to_json();
    let sig = if opts.signed {
        Some(crypto::sign(&keys.trade, &json))
    } else {
        None
    };
    let proof = keys.identity.as_ref().map(|id| {
        let text = crypto::identity_proof_text(&keys.trade.public_key(), &json);
        (id.public_key().to_hex(), crypto::sign(id, &text))
    });
    let plaintext = format!(
        "[{json},{},{}]",
        json_str_or_null(sig.as_deref()),
        match &proof {
            Some((k, s)) => format!("[\"{k}\",\"{s}\"]"),
            None => "null".to_owned(),
        }
    );
    let created_at = opts.created_at.unwrap_or_else(Timestamp::now);
    v2::seal_event(
        &keys.trade,
        node,
        &plaintext,
        created_at,
        opts.expiration,
        opts.pow,
    )
}

/// Wraps a request as a protocol v1 gift wrap to `node`: rumor by the trade
/// key, seal by the identity key (the trade key in full privacy).
///
/// # Errors
///
/// [`WrapError`] if encryption or signing fails.
pub fn wrap_v1(
    message: &Message,
    keys: &ClientKeys,
    node: &PublicKey,
    opts: WrapOptions,
) -> Result<Event, WrapError> {
    let json = message.to_json();
    let sig = if opts.signed {
        Some(crypto::sign(&keys.trade, &json))
    } else {
        None
    };
    let content = format!("[{json},{}]", json_str_or_null(sig.as_deref()));
    let sealer = keys.identity.as_ref().unwrap_or(&keys.trade);
    let created_at = opts.created_at.unwrap_or_else(Timestamp::now);
    v1::gift_wrap(
        &keys.trade,
        sealer,
        node,
        &content,
        created_at,
        opts.expiration,
    )
}

/// Opens a node reply (either protocol) addressed to `trade`.
///
/// # Errors
///
/// [`UnwrapError`] if the event is not a valid reply for this key.
pub fn open_reply(event: &Event, trade: &Keys) -> Result<Unwrapped, UnwrapError> {
    match event.kind.as_u16() {
        crate::KIND_GIFT_WRAP => v1::unwrap(event, trade),
        _ => v2::unwrap(event, trade),
    }
}

/// Hex signatures contain no characters JSON must escape.
fn json_str_or_null(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("\"{s}\""),
        None => "null".to_owned(),
    }
}
