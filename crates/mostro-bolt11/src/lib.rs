//! BOLT11 invoices for Mostro's Lightning adapters: decoding with signature check (shared by the
//! LND and CLN adapters and the test kit) and signing (used by the simulators).
#![warn(missing_docs)]

use std::str::FromStr;
use std::time::Duration;

use bitcoin::hashes::{Hash as _, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning_invoice::{Bolt11Invoice, Currency, InvoiceBuilder, PaymentSecret};
use mostro_core::ports::{DecodedInvoice, LnError, LnErrorKind, Network};
use mostro_core::types::{Msats, PaymentHash, PubKey, Sats, Timestamp};

/// The BOLT11 currency of a network.
#[must_use]
pub fn currency(n: Network) -> Currency {
    match n {
        Network::Mainnet => Currency::Bitcoin,
        Network::Testnet => Currency::BitcoinTestnet,
        Network::Signet => Currency::Signet,
        Network::Regtest => Currency::Regtest,
    }
}

/// The network of a BOLT11 currency.
#[must_use]
pub fn network_of(c: &Currency) -> Network {
    match c {
        Currency::Bitcoin => Network::Mainnet,
        Currency::BitcoinTestnet => Network::Testnet,
        Currency::Signet => Network::Signet,
        Currency::Regtest | Currency::Simnet => Network::Regtest,
    }
}

fn invalid(msg: String) -> LnError {
    LnError::new(LnErrorKind::InvalidInvoice, msg)
}

/// Decodes a BOLT11 invoice and checks its signature. Reports the invoice's own network (the
/// caller compares it with the node's). An amount that is not a whole number of satoshis is
/// refused: payouts are made in whole satoshis.
///
/// # Errors
/// `InvalidInvoice` for anything that does not parse, verify or fit.
pub fn decode(s: &str) -> Result<DecodedInvoice, LnError> {
    let s = s.trim();
    if s.len() > 7089 {
        return Err(invalid("invoice too long".into()));
    }
    let inv =
        Bolt11Invoice::from_str(s).map_err(|e| invalid(format!("not a BOLT11 invoice: {e}")))?;
    inv.check_signature()
        .map_err(|e| invalid(format!("bad invoice signature: {e}")))?;
    let created = inv.duration_since_epoch().as_secs();
    let amount = match inv.amount_milli_satoshis() {
        Some(m) => Some(
            Msats(m)
                .to_sats_exact()
                .map_err(|e| invalid(format!("invoice amount: {e}")))?,
        ),
        None => None,
    };
    let payee = inv.recover_payee_pub_key();
    Ok(DecodedInvoice {
        hash: PaymentHash(*inv.payment_hash().as_byte_array()),
        amount,
        expires_at: Timestamp(created.saturating_add(inv.expiry_time().as_secs())),
        network: network_of(&inv.currency()),
        min_final_cltv: u32::try_from(inv.min_final_cltv_expiry_delta()).unwrap_or(u32::MAX),
        payee: Some(PubKey(payee.x_only_public_key().0.serialize())),
    })
}

/// What to put in a signed invoice.
#[derive(Clone, Debug)]
pub struct InvoiceSpec<'a> {
    /// Network.
    pub network: Network,
    /// Payment hash.
    pub hash: PaymentHash,
    /// Amount (none = amountless).
    pub amount: Option<Sats>,
    /// Description.
    pub memo: &'a str,
    /// Creation time.
    pub created_at: Timestamp,
    /// Seconds until it expires.
    pub expiry_secs: u64,
    /// Final CLTV delta.
    pub cltv_delta: u32,
}

/// Builds a real signed BOLT11 invoice with `key`.
///
/// # Errors
/// When the invoice cannot be built (an impossible amount).
pub fn sign(key: &SecretKey, spec: &InvoiceSpec<'_>) -> Result<String, LnError> {
    let secp = Secp256k1::new();
    let mut b = InvoiceBuilder::new(currency(spec.network))
        .description(spec.memo.to_owned())
        .payment_hash(sha256::Hash::from_byte_array(spec.hash.0))
        .payment_secret(PaymentSecret([42u8; 32]))
        .duration_since_epoch(Duration::from_secs(spec.created_at.0))
        .min_final_cltv_expiry_delta(u64::from(spec.cltv_delta))
        .expiry_time(Duration::from_secs(spec.expiry_secs));
    if let Some(a) = spec.amount {
        let msat = a
            .to_msats()
            .ok_or_else(|| LnError::new(LnErrorKind::Other, "amount overflow"))?;
        b = b.amount_milli_satoshis(msat.0);
    }
    let inv = b
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, key))
        .map_err(|e| LnError::new(LnErrorKind::Other, format!("cannot build invoice: {e:?}")))?;
    Ok(inv.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_decode() {
        let key = SecretKey::from_slice(&[3u8; 32]).unwrap();
        let spec = InvoiceSpec {
            network: Network::Regtest,
            hash: PaymentHash([9; 32]),
            amount: Some(Sats(1234)),
            memo: "m",
            created_at: Timestamp(1_800_000_000),
            expiry_secs: 900,
            cltv_delta: 144,
        };
        let s = sign(&key, &spec).unwrap();
        assert!(s.starts_with("lnbcrt12340n1"), "{s}");
        let d = decode(&s).unwrap();
        assert_eq!(
            (d.hash, d.amount, d.network),
            (PaymentHash([9; 32]), Some(Sats(1234)), Network::Regtest)
        );
        assert_eq!(d.expires_at, Timestamp(1_800_000_900));
        assert_eq!(d.min_final_cltv, 144);
        let main = sign(
            &key,
            &InvoiceSpec {
                network: Network::Mainnet,
                ..spec.clone()
            },
        )
        .unwrap();
        assert_eq!(decode(&main).unwrap().network, Network::Mainnet);
        assert_eq!(
            decode("lnbcrt1garbage").unwrap_err().kind,
            LnErrorKind::InvalidInvoice
        );
        // Tampering breaks the checksum or the signature.
        let mut t = s.clone().into_bytes();
        let i = t.len() - 10;
        t[i] = if t[i] == b'q' { b'p' } else { b'q' };
        assert!(decode(&String::from_utf8(t).unwrap()).is_err());
    }
}
