//! Conversions between LND's proto types and mostro-core's types, and error mapping.
//!
//! # Error classification
//! LND answers most errors as gRPC `Unknown` with a Go error string, so the kind comes from the
//! code first and then from the message. The order matters:
//! 1. a node that cannot answer yet (starting up, waiting to start, wallet locked or not
//!    created, shutting down) or a broken connection is [`LnErrorKind::Unreachable`] (transient),
//!    whatever the code, so it is never read as "not found" or as a payment failure;
//! 2. LND's own answers are recognized by their message ("unable to locate invoice", "payment
//!    isn't initiated", "invoice already settled", ...);
//! 3. anything unrecognized is [`LnErrorKind::Other`]: an `Err`, never a payment outcome.

use fedimint_tonic_lnd::lnrpc;
use mostro_core::ports::{HoldInvoiceState, LnError, LnErrorKind, Network, PaymentStatus};
use mostro_core::types::{BlockHeight, PaymentHash, Sats};
use tonic_status::{Code, Status};

/// Re-exported through fedimint-tonic-lnd (`Error` is `tonic::Status`).
mod tonic_status {
    pub use fedimint_tonic_lnd::tonic::{Code, Status};
}

/// Messages of an LND that is up but cannot serve calls yet (or any more): its RPC state
/// interceptor (`rpcperms`) while waiting to start, before the wallet is unlocked or while the
/// RPC server starts, and the server's own "not active yet" / "shutting down" answers.
const NOT_READY: &[&str] = &[
    "waiting to start, rpc services not available",
    "wallet locked, unlock it to enable full rpc access",
    "wallet not created, create one to enable full rpc access",
    "the rpc server is in the process of starting up",
    "server is still in the process of starting",
    "rpc server not active yet",
    "chain backend is still syncing",
    // "server is shutting down", "lnd is shutting down", "router shutting down".
    "shutting down",
];

/// A broken or refused connection, as tonic / hyper / h2 describe it.
const CONNECTION: &[&str] = &[
    "transport error",
    "connection refused",
    "tcp connect",
    "error trying to connect",
    "connection reset",
    "broken pipe",
    "connection closed",
    "connection error",
    "h2 protocol error",
    "error reading a body from connection",
    "stream no longer needed",
    "go away",
    "goaway",
    "dns error",
    "not connected",
];

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
    let kind = kind_of(s.code(), &text);
    LnError::new(kind, format!("lnd: {:?}: {text}", s.code()))
}

/// The kind of an LND answer with gRPC `code` and message (plus source chain) `text`.
pub(crate) fn kind_of(code: Code, text: &str) -> LnErrorKind {
    let msg = text.to_lowercase();
    let has = |p: &str| msg.contains(p);
    // A node that cannot answer yet is never "not found" nor a failure, whatever the code.
    if NOT_READY.iter().any(|p| has(p)) {
        return LnErrorKind::Unreachable;
    }
    match code {
        Code::Unauthenticated | Code::PermissionDenied => return LnErrorKind::Auth,
        Code::DeadlineExceeded | Code::Cancelled => return LnErrorKind::Timeout,
        Code::Unavailable => return LnErrorKind::Unreachable,
        _ => {},
    }
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
    } else if has("certificate")
        || has("macaroon")
        || has("handshake")
        || has("verification failed")
        || has("permission denied")
    {
        LnErrorKind::Auth
    } else if CONNECTION.iter().any(|p| has(p)) {
        LnErrorKind::Unreachable
    } else if code == Code::NotFound {
        LnErrorKind::NotFound
    } else {
        LnErrorKind::Other
    }
}

/// Whether a SendPaymentV2 refusal means LND already has a payment for this hash (in flight,
/// succeeded or just registered): `ALREADY_EXISTS`, "invoice is already paid", "payment is in
/// transition", "payment already exists". The pay path then asks the payment's status.
pub(crate) fn is_existing_payment(e: &LnError) -> bool {
    let m = e.message.to_lowercase();
    m.starts_with("lnd: alreadyexists:")
        || m.contains("invoice is already paid")
        || m.contains("payment is in transition")
        || m.contains("payment already exists")
        || m.contains("payment already succeeded")
}

fn sats_of(sat: i64, msat: i64) -> Sats {
    let from_msat = u64::try_from(msat).unwrap_or(0).div_ceil(1000);
    Sats(u64::try_from(sat).unwrap_or(0).max(from_msat))
}

/// LND's record of one payment (from TrackPaymentV2 / SendPaymentV2) as a [`PaymentStatus`]:
/// succeeded if the payment or any of its HTLC attempts succeeded (a settled shard means the
/// payee revealed the preimage), else in flight if the payment or any attempt is pending, else
/// failed when LND reports the payment terminally FAILED.
///
/// # Errors
/// When the record is for another hash or its status is unknown (never read as a failure).
pub(crate) fn payment_record(
    p: &lnrpc::Payment,
    hash: &PaymentHash,
) -> Result<PaymentStatus, LnError> {
    use lnrpc::htlc_attempt::HtlcStatus as H;
    use lnrpc::payment::PaymentStatus as P;
    if !p.payment_hash.is_empty() && !p.payment_hash.eq_ignore_ascii_case(&hash.to_hex()) {
        return Err(LnError::new(
            LnErrorKind::Other,
            format!("lnd reported payment {} for another hash", p.payment_hash),
        ));
    }
    let status = P::try_from(p.status);
    let htlc = |want: H| p.htlcs.iter().any(|h| H::try_from(h.status) == Ok(want));
    if status == Ok(P::Succeeded) || htlc(H::Succeeded) {
        return Ok(PaymentStatus::Succeeded {
            fee: sats_of(p.fee_sat, p.fee_msat),
        });
    }
    if matches!(status, Ok(P::InFlight | P::Initiated)) || htlc(H::InFlight) {
        return Ok(PaymentStatus::InFlight);
    }
    if status == Ok(P::Failed) {
        let reason = lnrpc::PaymentFailureReason::try_from(p.failure_reason)
            .map_or_else(|_| "FAILED".to_owned(), |r| r.as_str_name().to_owned());
        return Ok(PaymentStatus::Failed { reason });
    }
    Err(LnError::new(
        LnErrorKind::Other,
        format!("lnd reported payment status {} (unknown)", p.status),
    ))
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

    /// Real LND answers (gRPC code, message) and the kind each must map to.
    const TABLE: &[(Code, &str, LnErrorKind)] = &[
        // LND starting up (rpcperms interceptor states) and shutting down: transient.
        (
            Code::Unknown,
            "waiting to start, RPC services not available",
            LnErrorKind::Unreachable,
        ),
        (
            Code::Unknown,
            "wallet locked, unlock it to enable full RPC access",
            LnErrorKind::Unreachable,
        ),
        (
            Code::Unknown,
            "wallet not created, create one to enable full RPC access",
            LnErrorKind::Unreachable,
        ),
        (
            Code::Unknown,
            "the RPC server is in the process of starting up, but not yet ready to accept calls",
            LnErrorKind::Unreachable,
        ),
        (
            Code::Unknown,
            "server is still in the process of starting",
            LnErrorKind::Unreachable,
        ),
        (
            Code::Unknown,
            "server is shutting down",
            LnErrorKind::Unreachable,
        ),
        // A starting node never means "not found", even under a NotFound code.
        (
            Code::NotFound,
            "the RPC server is in the process of starting up, but not yet ready to accept calls",
            LnErrorKind::Unreachable,
        ),
        // Connection trouble.
        (
            Code::Unavailable,
            "connection refused",
            LnErrorKind::Unreachable,
        ),
        (Code::Unavailable, "x", LnErrorKind::Unreachable),
        (Code::Unknown, "transport error", LnErrorKind::Unreachable),
        (
            Code::Unknown,
            "h2 protocol error: error reading a body from connection",
            LnErrorKind::Unreachable,
        ),
        (
            Code::Internal,
            "connection reset by peer",
            LnErrorKind::Unreachable,
        ),
        (Code::DeadlineExceeded, "x", LnErrorKind::Timeout),
        (Code::Cancelled, "Timeout expired", LnErrorKind::Timeout),
        // Authentication.
        (Code::Unauthenticated, "x", LnErrorKind::Auth),
        (Code::PermissionDenied, "x", LnErrorKind::Auth),
        (
            Code::Unknown,
            "verification failed: signature mismatch after caveat verification",
            LnErrorKind::Auth,
        ),
        (
            Code::Unknown,
            "expected 1 macaroon, got 0",
            LnErrorKind::Auth,
        ),
        // LND's real "not found" answers.
        (
            Code::Unknown,
            "unable to locate invoice",
            LnErrorKind::NotFound,
        ),
        (
            Code::NotFound,
            "unable to locate invoice",
            LnErrorKind::NotFound,
        ),
        (
            Code::Unknown,
            "there are no existing invoices",
            LnErrorKind::NotFound,
        ),
        (
            Code::NotFound,
            "payment isn't initiated",
            LnErrorKind::NotFound,
        ),
        // Invoice lifecycle answers.
        (
            Code::Unknown,
            "invoice already settled",
            LnErrorKind::AlreadySettled,
        ),
        (
            Code::AlreadyExists,
            "invoice is already paid",
            LnErrorKind::AlreadySettled,
        ),
        (
            Code::Unknown,
            "invoice already canceled",
            LnErrorKind::AlreadyCanceled,
        ),
        (
            Code::Unknown,
            "invoice with payment hash already exists",
            LnErrorKind::Conflict,
        ),
        (
            Code::Unknown,
            "invoice not for current active network 'regtest'",
            LnErrorKind::WrongNetwork,
        ),
        (
            Code::Unknown,
            "invoice expired. Valid until 12:00",
            LnErrorKind::Expired,
        ),
        // Unrecognized: Other (an Err, never a payment outcome).
        (Code::Unknown, "invoice still open", LnErrorKind::Other),
        (
            Code::AlreadyExists,
            "payment is in transition",
            LnErrorKind::Other,
        ),
        (
            Code::Unknown,
            "rpc error: something new",
            LnErrorKind::Other,
        ),
        (Code::Internal, "unexpected EOF", LnErrorKind::Other),
    ];

    #[test]
    fn status_mapping_table() {
        for (code, msg, want) in TABLE {
            let got = map_status(&Status::new(*code, *msg));
            assert_eq!(got.kind, *want, "{code:?} {msg:?} -> {got}");
        }
        // Case does not matter.
        assert_eq!(
            kind_of(
                Code::Unknown,
                "WAITING TO START, RPC SERVICES NOT AVAILABLE"
            ),
            LnErrorKind::Unreachable
        );
    }

    #[test]
    fn existing_payment_answers_are_recognized() {
        let e = |c: Code, m: &str| map_status(&Status::new(c, m));
        assert!(is_existing_payment(&e(
            Code::AlreadyExists,
            "payment is in transition"
        )));
        assert!(is_existing_payment(&e(Code::AlreadyExists, "anything")));
        assert!(is_existing_payment(&e(
            Code::Unknown,
            "invoice is already paid"
        )));
        assert!(is_existing_payment(&e(
            Code::Unknown,
            "payment already exists"
        )));
        assert!(!is_existing_payment(&e(
            Code::Unknown,
            "invoice with payment hash already exists"
        )));
        assert!(!is_existing_payment(&e(Code::Unknown, "no route")));
    }

    fn payment(status: i32, htlcs: &[i32]) -> lnrpc::Payment {
        lnrpc::Payment {
            payment_hash: PaymentHash([7; 32]).to_hex(),
            status,
            fee_sat: 2,
            fee_msat: 2500,
            failure_reason: lnrpc::PaymentFailureReason::FailureReasonNoRoute as i32,
            htlcs: htlcs
                .iter()
                .map(|s| lnrpc::HtlcAttempt {
                    status: *s,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn payment_record_aggregation() {
        use lnrpc::htlc_attempt::HtlcStatus as H;
        use lnrpc::payment::PaymentStatus as P;
        let hash = PaymentHash([7; 32]);
        let rec = |st: P, h: &[H]| {
            let h: Vec<i32> = h.iter().map(|x| *x as i32).collect();
            payment_record(&payment(st as i32, &h), &hash)
        };
        let ok = PaymentStatus::Succeeded { fee: Sats(3) };
        assert_eq!(
            rec(P::Succeeded, &[H::Failed, H::Succeeded]),
            Ok(ok.clone())
        );
        // A settled shard wins over one still in flight (the preimage is out).
        assert_eq!(rec(P::InFlight, &[H::InFlight, H::Succeeded]), Ok(ok));
        assert_eq!(rec(P::InFlight, &[H::Failed]), Ok(PaymentStatus::InFlight));
        assert_eq!(rec(P::Initiated, &[]), Ok(PaymentStatus::InFlight));
        // Failed only when LND says FAILED, and never while an attempt is pending.
        assert_eq!(rec(P::Failed, &[H::InFlight]), Ok(PaymentStatus::InFlight));
        assert_eq!(
            rec(P::Failed, &[H::Failed, H::Failed]),
            Ok(PaymentStatus::Failed {
                reason: "FAILURE_REASON_NO_ROUTE".to_owned()
            })
        );
        assert!(
            rec(P::Unknown, &[]).is_err(),
            "an unknown status is no answer"
        );
        let mut other = payment(P::Failed as i32, &[]);
        other.payment_hash = PaymentHash([8; 32]).to_hex();
        assert!(
            payment_record(&other, &hash).is_err(),
            "another hash is no answer"
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
