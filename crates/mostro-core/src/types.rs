//! Newtypes for every unit and id. Raw integers appear only at wire and storage edges.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// An amount in satoshis. Arithmetic is checked: money never overflows silently.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Sats(pub u64);

impl Sats {
    /// Zero satoshis.
    pub const ZERO: Sats = Sats(0);

    /// Checked addition.
    #[must_use]
    pub fn checked_add(self, other: Sats) -> Option<Sats> {
        self.0.checked_add(other.0).map(Sats)
    }

    /// Checked subtraction.
    #[must_use]
    pub fn checked_sub(self, other: Sats) -> Option<Sats> {
        self.0.checked_sub(other.0).map(Sats)
    }

    /// The same amount in millisatoshis, if it fits.
    #[must_use]
    pub fn to_msats(self) -> Option<Msats> {
        self.0.checked_mul(1000).map(Msats)
    }
}

impl fmt::Display for Sats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat", self.0)
    }
}

/// An amount in millisatoshis.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Msats(pub u64);

impl Msats {
    /// Whole satoshis, refusing a sub-satoshi remainder.
    pub fn to_sats_exact(self) -> Result<Sats, SubSatRemainder> {
        if self.0.is_multiple_of(1000) {
            Ok(Sats(self.0 / 1000))
        } else {
            Err(SubSatRemainder(self.0))
        }
    }

    /// Whole satoshis, rounding a remainder down.
    #[must_use]
    pub fn to_sats_floor(self) -> Sats {
        Sats(self.0 / 1000)
    }
}

/// A millisatoshi amount that is not a whole number of satoshis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} msat is not a whole number of satoshis")]
pub struct SubSatRemainder(pub u64);

/// Seconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `self + secs`, saturating at the end of time rather than wrapping.
    #[must_use]
    pub fn plus(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }

    /// `self - secs`, saturating at the epoch.
    #[must_use]
    pub fn minus(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_sub(secs))
    }

    /// Seconds from `earlier` to `self` (0 if `earlier` is later).
    #[must_use]
    pub fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Bitcoin block height.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BlockHeight(pub u32);

impl BlockHeight {
    /// `self + blocks`, saturating.
    #[must_use]
    pub fn plus(self, blocks: u32) -> BlockHeight {
        BlockHeight(self.0.saturating_add(blocks))
    }
}

/// An order id (a UUID on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub uuid::Uuid);

impl OrderId {
    /// Builds a version-4 style UUID from 16 random bytes supplied by the caller.
    #[must_use]
    pub fn from_random_bytes(bytes: [u8; 16]) -> OrderId {
        OrderId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrderId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(OrderId)
    }
}

/// Error parsing a 32-byte hex value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex characters, got {0:?}")]
pub struct BadHex32(pub String);

fn parse_hex32(s: &str) -> Result<[u8; 32], BadHex32> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| BadHex32(s.chars().take(80).collect()))?;
    Ok(out)
}

macro_rules! hex32_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex.
            #[must_use]
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl FromStr for $name {
            type Err = BadHex32;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex32_newtype!(
    /// An x-only (BIP-340) public key, 32 bytes, hex on the wire.
    PubKey
);
hex32_newtype!(
    /// A Lightning payment hash (sha256 of the preimage).
    PaymentHash
);
hex32_newtype!(
    /// A Lightning preimage. Secret: `Debug` never prints it.
    Preimage
);

impl PubKey {
    /// Whether the key is a point of secp256k1 (only such a key can receive an encrypted
    /// message; the wire only checks its hex length).
    #[must_use]
    pub fn is_on_curve(&self) -> bool {
        secp256k1::XOnlyPublicKey::from_slice(&self.0).is_ok()
    }
}

impl fmt::Debug for PubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PubKey({})", self.to_hex())
    }
}

impl fmt::Display for PubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentHash({})", self.to_hex())
    }
}

impl fmt::Display for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(..)")
    }
}

impl Preimage {
    /// The payment hash this preimage unlocks.
    #[must_use]
    pub fn hash(&self) -> PaymentHash {
        PaymentHash(Sha256::digest(self.0).into())
    }
}

hex32_newtype!(
    /// A 32-byte Nostr event id, used by the replay guard.
    EventId
);

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.to_hex())
    }
}

/// Bitcoin network of a node or an invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Mainnet.
    Mainnet,
    /// Testnet.
    Testnet,
    /// Signet.
    Signet,
    /// Regtest.
    Regtest,
}

impl Network {
    /// Lower-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }
}

/// A decoded invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodedInvoice {
    /// Payment hash.
    pub hash: PaymentHash,
    /// Amount, if any.
    pub amount: Option<Sats>,
    /// Expiry time.
    pub expires_at: Timestamp,
    /// Network.
    pub network: Network,
    /// Final CLTV delta asked for.
    pub min_final_cltv: u32,
    /// Payee node.
    pub payee: Option<PubKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preimage_debug_hides_secret() {
        let p = Preimage([7u8; 32]);
        assert_eq!(format!("{p:?}"), "Preimage(..)");
        assert!(!format!("{p:?}").contains("0707"));
    }

    #[test]
    fn preimage_hash_is_sha256() {
        let p = Preimage([0u8; 32]);
        assert_eq!(
            p.hash().to_hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn sats_arithmetic_is_checked() {
        assert_eq!(Sats(u64::MAX).checked_add(Sats(1)), None);
        assert_eq!(Sats(1).checked_sub(Sats(2)), None);
        assert_eq!(Sats(u64::MAX).to_msats(), None);
        assert_eq!(Msats(1500).to_sats_exact(), Err(SubSatRemainder(1500)));
        assert_eq!(Msats(2000).to_sats_exact(), Ok(Sats(2)));
    }

    #[test]
    fn pubkey_hex_roundtrip_and_refusal() {
        let k: PubKey = "1b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f"
            .parse()
            .unwrap();
        assert_eq!(
            k.to_hex(),
            "1b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f"
        );
        assert!("zz".parse::<PubKey>().is_err());
        assert!(serde_json::from_str::<PubKey>("\"abc\"").is_err());
    }
}
