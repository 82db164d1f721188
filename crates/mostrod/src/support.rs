//! Small port implementations that only the binary needs: the system clock, OS randomness,
//! fixed prices, and the node key file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use async_trait::async_trait;
use bitcoin::secp256k1::rand::RngCore;
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use mostro_core::fees::Price;
use mostro_core::ports::{Clock, Entropy, PriceSource};
use mostro_core::types::{PubKey, Timestamp};

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }
}

/// Randomness from the operating system.
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn random_32(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        bitcoin::secp256k1::rand::thread_rng().fill_bytes(&mut b);
        b
    }
}

/// Prices fixed in the config (`[prices] fixed`), always fresh.
#[derive(Debug, Default)]
pub struct StaticPrices(pub BTreeMap<String, f64>);

#[async_trait]
impl PriceSource for StaticPrices {
    async fn price(&self, fiat_code: &str) -> Option<Price> {
        let p = self
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(fiat_code))?
            .1;
        Some(Price {
            fiat_per_btc: *p,
            at: SystemClock.now(),
        })
    }
}

/// The node's Nostr secret key.
pub struct NodeKey {
    secret: SecretKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", self.public())
    }
}

impl NodeKey {
    /// A fresh random key.
    #[must_use]
    pub fn generate() -> NodeKey {
        let mut rng = bitcoin::secp256k1::rand::thread_rng();
        NodeKey {
            secret: SecretKey::new(&mut rng),
        }
    }

    /// The x-only public key.
    #[must_use]
    pub fn public(&self) -> PubKey {
        let kp = Keypair::from_secret_key(&Secp256k1::new(), &self.secret);
        PubKey(kp.x_only_public_key().0.serialize())
    }

    /// The secret as hex (for the transport; never log it).
    #[must_use]
    pub fn secret_hex(&self) -> String {
        hex::encode(self.secret.secret_bytes())
    }

    /// The public key as a bech32 `npub1...`.
    #[must_use]
    pub fn npub(&self) -> String {
        use nostr_sdk::ToBech32;
        nostr_sdk::Keys::parse(&self.secret_hex())
            .ok()
            .and_then(|k| k.public_key().to_bech32().ok())
            .unwrap_or_default()
    }

    /// The secret as a bech32 `nsec1...` (for `mostrod key show --nsec`; never log it).
    #[must_use]
    pub fn nsec(&self) -> String {
        use nostr_sdk::ToBech32;
        nostr_sdk::SecretKey::from_slice(&self.secret.secret_bytes())
            .ok()
            .and_then(|k| k.to_bech32().ok())
            .unwrap_or_default()
    }

    /// Parses a key given as `nsec1...` (bech32) or 64 hex characters.
    pub fn parse(text: &str) -> Result<NodeKey, &'static str> {
        let text = text.trim();
        let bytes: [u8; 32] = if text.starts_with("nsec1") {
            use nostr_sdk::FromBech32;
            nostr_sdk::SecretKey::from_bech32(text)
                .map_err(|_| "an nsec1 key with a bad checksum or length")?
                .to_secret_bytes()
        } else {
            let mut b = [0u8; 32];
            hex::decode_to_slice(text, &mut b)
                .map_err(|_| "neither nsec1... nor 64 hex characters")?;
            b
        };
        let secret =
            SecretKey::from_slice(&bytes).map_err(|_| "not a valid secp256k1 secret key")?;
        Ok(NodeKey { secret })
    }

    /// Reads a key file (`nsec1...` or 64 hex characters, one line). Refuses a file readable
    /// by others.
    pub fn load(path: &Path) -> anyhow::Result<NodeKey> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path)
                .with_context(|| format!("node key file {}", path.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                bail!(
                    "node key file {} is readable by other users (mode {:o}); run chmod 600 on it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read node key file {}", path.display()))?;
        NodeKey::parse(&text).map_err(|why| {
            anyhow::anyhow!(
                "node key file {}: {why}; it must hold the node's secret key as nsec1... (bech32) \
                 or 64 hex characters",
                path.display()
            )
        })
    }

    /// Writes the key with mode 0600, refusing to overwrite an existing file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_secret(path, &self.secret_hex())
    }
}

/// Writes `content` and a newline to a new file of mode 0600, refusing to overwrite.
pub fn write_secret(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{content}")?;
    Ok(())
}

/// Writes a secret file (mode 0600) with random hex content unless it exists; returns the content.
pub fn ensure_token(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        let t = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read admin token {}", path.display()))?;
        return Ok(t.trim().to_owned());
    }
    let token = hex::encode(OsEntropy.random_32());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_roundtrip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        let k = NodeKey::generate();
        k.save(&p).unwrap();
        assert!(k.save(&p).is_err(), "must not overwrite");
        let l = NodeKey::load(&p).unwrap();
        assert_eq!(l.public(), k.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = NodeKey::load(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        assert!(!format!("{k:?}").contains(&k.secret_hex()));
    }

    #[test]
    fn key_file_takes_nsec_or_hex_and_names_the_formats() {
        let dir = tempfile::tempdir().unwrap();
        let k = NodeKey::generate();
        assert!(k.nsec().starts_with("nsec1"), "{}", k.nsec());
        assert!(k.npub().starts_with("npub1"), "{}", k.npub());
        let p = dir.path().join("bech32.key");
        write_secret(&p, &k.nsec()).unwrap();
        assert_eq!(NodeKey::load(&p).unwrap().public(), k.public());
        // Known vector (NIP-19): this nsec is the hex key below.
        let known =
            NodeKey::parse("nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5")
                .unwrap();
        assert_eq!(
            known.secret_hex(),
            "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
        );
        let bad = dir.path().join("bad.key");
        write_secret(&bad, "nsec1notakey").unwrap();
        let e = NodeKey::load(&bad).unwrap_err().to_string();
        assert!(
            e.contains("bad.key") && e.contains("nsec1") && e.contains("64 hex"),
            "{e}"
        );
        let bad = dir.path().join("short.key");
        write_secret(&bad, "abcd").unwrap();
        let e = NodeKey::load(&bad).unwrap_err().to_string();
        assert!(e.contains("short.key") && e.contains("64 hex"), "{e}");
    }
}
