//! Conversions between LND's proto types and mostro-core's types, and error mapping.

use fedimint_tonic_lnd::lnrpc;
use mostro_core::ports::{HoldInvoiceState, LnError, LnErrorKind, Network};
use mostro_core::types::BlockHeight;
use tonic_status::{Code, Status};

/// Re-exported through fedimint-tonic-lnd (`Error` is `tonic::Status`).
mod tonic_status {
    pub use fedimint_tonic_lnd::tonic::{Code, Status};
}

/// Maps a gRPC status from LND to a port error (by code first, then by LND's message text).
pub(crate) fn map_status(s: &Status) -> LnError {
    // Connection and TLS failures carry their cause in the source chain, not the message.
    let mut text = s.message().to_owned();
    let mut src = std::error::Error::source(s);
    while let Some(e) = src {
        text.push_str(": ");
        text.push_str(&e.to_string());
        src = e.source();
    }
    let msg = text.to_lowercase();
    let kind = match s.code() {
        Code::Unauthenticated | Code::PermissionDenied => LnErrorKind::Auth,
        Code::DeadlineExceeded => LnErrorKind::Timeout,
        Code::Unavailable => LnErrorKind::Unreachable,
        _ => kind_from_message(&msg, s.code()),
    };
    LnError::new(kind, format!("lnd: {:?}: {text}", s.code()))
}

fn kind_from_message(msg: &str, code: Code) -> LnErrorKind {
    let has = |p: &str| msg.contains(p);
    if has("unable to locate invoice")
        || has("there are no existing invoices")
        || has("payment isn't initiated")
    {
        LnErrorKind::NotFound
    } else if has("invoice already settled") || has("invoice is already paid") {
        LnErrorKind::AlreadySettled
    } else if has("invoice already canceled") {
        LnErrorKind::AlreadyCanceled
    } else if has("invoice with payment hash already exists") {
        LnErrorKind::Conflict
    } else if has("not for current active network") {
        LnErrorKind::WrongNetwork
    } else if has("invoice expired") {
        LnErrorKind::Expired
    } else if has("certificate") || has("macaroon") || has("handshake") {
        LnErrorKind::Auth
    } else if has("transport error")
        || has("connection refused")
        || has("tcp connect")
        || has("error trying to connect")
        || has("connection reset")
        || has("broken pipe")
        || has("connection closed")
    {
        LnErrorKind::Unreachable
    } else if code == Code::NotFound {
        LnErrorKind::NotFound
    } else {
        LnErrorKind::Other
    }
}

/// Hold-invoice state from an LND invoice (with the accepted HTLC's expiry height).
pub(crate) fn hold_state(inv: &lnrpc::Invoice) -> HoldInvoiceState {
    use lnrpc::invoice::InvoiceState as S;
    match S::try_from(inv.state) {
        Ok(S::Settled) => HoldInvoiceState::Settled,
        Ok(S::Canceled) => HoldInvoiceState::Canceled,
        Ok(S::Accepted) => {
            let expiry = inv
                .htlcs
                .iter()
                .filter(|h| h.state == lnrpc::InvoiceHtlcState::Accepted as i32)
                .filter_map(|h| u32::try_from(h.expiry_height).ok())
                .filter(|h| *h > 0)
                .min()
                .map(BlockHeight);
            HoldInvoiceState::Accepted {
                htlc_expiry: expiry,
            }
        },
        Ok(S::Open) | Err(_) => HoldInvoiceState::Open,
    }
}

/// Network from GetInfo's `chains[0].network`.
pub(crate) fn network_from_info(info: &lnrpc::GetInfoResponse) -> Result<Network, LnError> {
    let name = info
        .chains
        .first()
        .map(|c| c.network.as_str())
        .unwrap_or("");
    match name {
        "mainnet" | "bitcoin" => Ok(Network::Mainnet),
        "testnet" | "testnet3" | "testnet4" => Ok(Network::Testnet),
        "signet" => Ok(Network::Signet),
        "regtest" | "simnet" => Ok(Network::Regtest),
        other => Err(LnError::new(
            LnErrorKind::Other,
            format!("unknown LND network {other:?}"),
        )),
    }
}

/// Decodes a BOLT11 invoice locally (signature checked).
pub(crate) use mostro_bolt11::decode as decode_bolt11;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        let k = |s: Status| map_status(&s).kind;
        assert_eq!(k(Status::unavailable("x")), LnErrorKind::Unreachable);
        assert_eq!(k(Status::unauthenticated("x")), LnErrorKind::Auth);
        assert_eq!(k(Status::permission_denied("x")), LnErrorKind::Auth);
        assert_eq!(k(Status::deadline_exceeded("x")), LnErrorKind::Timeout);
        assert_eq!(
            k(Status::unknown("unable to locate invoice")),
            LnErrorKind::NotFound
        );
        assert_eq!(
            k(Status::unknown("invoice already settled")),
            LnErrorKind::AlreadySettled
        );
        assert_eq!(
            k(Status::unknown("invoice already canceled")),
            LnErrorKind::AlreadyCanceled
        );
        assert_eq!(
            k(Status::unknown("invoice with payment hash already exists")),
            LnErrorKind::Conflict
        );
        assert_eq!(k(Status::unknown("invoice still open")), LnErrorKind::Other);
        assert_eq!(
            k(Status::unknown("transport error")),
            LnErrorKind::Unreachable
        );
        assert_eq!(
            k(Status::not_found("payment isn't initiated")),
            LnErrorKind::NotFound
        );
    }

    #[test]
    fn accepted_state_carries_expiry() {
        let inv = lnrpc::Invoice {
            state: lnrpc::invoice::InvoiceState::Accepted as i32,
            htlcs: vec![lnrpc::InvoiceHtlc {
                expiry_height: 250,
                state: lnrpc::InvoiceHtlcState::Accepted as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            hold_state(&inv),
            HoldInvoiceState::Accepted {
                htlc_expiry: Some(BlockHeight(250))
            }
        );
        assert!(decode_bolt11("lnbcrt1garbage").is_err());
    }
}
