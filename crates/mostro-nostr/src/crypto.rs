//! The signatures of the Mostro message layer: BIP-340 Schnorr over
//! SHA-256 of a string, and NIP-44 v2 helpers.

use std::str::FromStr;

use nostr_sdk::nips::nip44;
use nostr_sdk::secp256k1::schnorr::Signature;
use nostr_sdk::secp256k1::{Message as Digest, XOnlyPublicKey};
use nostr_sdk::{Keys, PublicKey, SECP256K1, SecretKey};
use sha2::{Digest as _, Sha256};

use crate::error::WrapError;

/// Domain prefix of the v2 identity proof.
pub(crate) const IDENTITY_PREFIX: &str = "mostro-transport-v2-identity:";

fn digest(data: &str) -> Digest {
    Digest::from_digest(Sha256::digest(data.as_bytes()).into())
}

/// Hex BIP-340 signature of SHA-256(`data`).
pub(crate) fn sign(keys: &Keys, data: &str) -> String {
    keys.sign_schnorr(&digest(data)).to_string()
}

/// Whether `sig_hex` is `key`'s signature of SHA-256(`data`).
pub(crate) fn verify(key: &PublicKey, sig_hex: &str, data: &str) -> bool {
    let Ok(sig) = Signature::from_str(sig_hex) else {
        return false;
    };
    let Ok(xonly) = key.xonly() else { return false };
    verify_xonly(&xonly, &sig, data)
}

fn verify_xonly(key: &XOnlyPublicKey, sig: &Signature, data: &str) -> bool {
    SECP256K1.verify_schnorr(sig, &digest(data), key).is_ok()
}

/// The string the identity key signs in a v2 identity proof.
pub(crate) fn identity_proof_text(trade_key: &PublicKey, message_json: &str) -> String {
    format!("{IDENTITY_PREFIX}{}:{message_json}", trade_key.to_hex())
}

/// NIP-44 v2 encryption.
pub(crate) fn encrypt(
    secret: &SecretKey,
    to: &PublicKey,
    plaintext: &str,
) -> Result<String, WrapError> {
    nip44::encrypt(secret, to, plaintext, nip44::Version::V2)
        .map_err(|e| WrapError::Encrypt(e.to_string()))
}

/// NIP-44 decryption; `None` when it fails (wrong key or tampered).
pub(crate) fn decrypt(secret: &SecretKey, from: &PublicKey, payload: &str) -> Option<String> {
    nip44::decrypt(secret, from, payload).ok()
}
