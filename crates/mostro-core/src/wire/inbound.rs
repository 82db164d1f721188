//! Inbound: an authenticated wire [`Message`] to an engine [`Request`] (see [`crate::wire::map`]).

use std::fmt;

use bech32::Bech32;
use bech32::primitives::decode::CheckedHrpstring;

use super::enums::{Action as WireAction, Kind as WireKind};
use super::message::{Message, MessageKind};
use super::order::SmallOrder;
use super::payload::Payload;
use crate::engine::{Action, NewOrderRequest, Request};
use crate::machine::NewOrder;
use crate::order::{Kind, NextTrade, Protocol};
use crate::ports::Solver;
use crate::types::{EventId, OrderId, PubKey};

/// What the transport proved about an inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The trade key that sent the message (v2: event author; v1: rumor
    /// author).
    pub sender: PubKey,
    /// The identity key (v2: identity proof key, else the sender; v1: seal
    /// signer).
    pub identity: PubKey,
    /// Protocol the message arrived in.
    pub protocol: Protocol,
    /// Outer event id (replay guard).
    pub event_id: Option<EventId>,
    /// A valid trade signature by `sender` was present.
    pub signed: bool,
}

/// Why an inbound message was dropped without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Reputation mode (identity differs from the sender) without a trade
    /// signature (§3.5 step 6).
    UnsignedReputation,
    /// [`MessageKind::verify`] refused the action / payload / id combination
    /// (§3.5 step 9).
    ShapeCheck,
    /// The action is only accepted in another wrapper (`user-info` outside
    /// `restore`).
    WrongWrapper,
    /// The payload passed the shape check but its contents are unusable.
    BadPayload,
    /// `admin-add-solver` text is not `npub1…` / 64-hex with an optional
    /// `:read`, `:read-write` or `:write` suffix.
    BadSolver,
}

impl DropReason {
    /// Stable snake_case label for logs and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::UnsignedReputation => "unsigned_reputation",
            DropReason::ShapeCheck => "shape_check",
            DropReason::WrongWrapper => "wrong_wrapper",
            DropReason::BadPayload => "bad_payload",
            DropReason::BadSolver => "bad_solver",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inbound message the daemon drops without answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("dropped {action} message: {reason}")]
pub struct Dropped {
    /// Why.
    pub reason: DropReason,
    /// The message's action (for logs and metrics).
    pub action: WireAction,
}

/// Maps an authenticated inbound message to an engine request.
///
/// Applies, in the reference's order, the trade-signature requirement of
/// reputation mode (§3.5 step 6) and the [`MessageKind::verify`] shape check
/// (step 9); maintenance mode and trade-index rules (steps 7 and 8) are the
/// engine's. Actions the daemon does not implement map to
/// [`Action::Unsupported`], which the engine answers with `invalid_action`.
///
/// # Errors
///
/// [`Dropped`] when the reference would drop the message silently; see the
/// module documentation for the choices made.
pub fn to_request(msg: &Message, inbound: &Inbound) -> Result<Request, Dropped> {
    let kind = msg.kind();
    let drop = |reason| Dropped {
        reason,
        action: kind.action,
    };
    if inbound.identity != inbound.sender && !inbound.signed {
        return Err(drop(DropReason::UnsignedReputation));
    }
    let always_answered = matches!(
        kind.action,
        WireAction::ExportReputation | WireAction::ImportReputation
    );
    if !always_answered && !kind.verify() {
        return Err(drop(DropReason::ShapeCheck));
    }
    let action = map_action(msg, kind).map_err(drop)?;
    Ok(Request {
        event_id: inbound.event_id,
        sender: inbound.sender,
        identity: inbound.identity,
        protocol: inbound.protocol,
        request_id: kind.request_id,
        trade_index: kind.trade_index,
        order_id: kind.id.map(OrderId),
        action,
    })
}

/// The engine action of a message that passed the shape check.
fn map_action(msg: &Message, kind: &MessageKind) -> Result<Action, DropReason> {
    use Payload as P;
    let payload = kind.payload.as_ref();
    Ok(match kind.action {
        WireAction::NewOrder => match payload {
            Some(P::Order(o)) => new_order(o)?,
            _ => return Err(DropReason::ShapeCheck),
        },
        WireAction::TakeSell => match payload {
            Some(P::Amount(a)) => Action::TakeSell {
                fiat_amount: Some(*a),
                invoice: None,
            },
            Some(P::PaymentRequest(_, invoice, amount)) => Action::TakeSell {
                fiat_amount: *amount,
                invoice: Some(invoice.clone()),
            },
            _ => Action::TakeSell {
                fiat_amount: None,
                invoice: None,
            },
        },
        WireAction::TakeBuy => match payload {
            Some(P::Amount(a)) => Action::TakeBuy {
                fiat_amount: Some(*a),
            },
            Some(P::PaymentRequest(_, _, amount)) => Action::TakeBuy {
                fiat_amount: *amount,
            },
            _ => Action::TakeBuy { fiat_amount: None },
        },
        WireAction::AddInvoice => match payload {
            Some(P::PaymentRequest(_, invoice, _)) => Action::AddInvoice(invoice.clone()),
            _ => return Err(DropReason::ShapeCheck),
        },
        WireAction::FiatSent => Action::FiatSent {
            next_trade: next_trade(payload)?,
        },
        WireAction::Release => Action::Release {
            next_trade: next_trade(payload)?,
        },
        WireAction::Cancel => Action::Cancel,
        WireAction::Dispute => Action::Dispute,
        WireAction::RateUser => match payload {
            Some(P::RatingUser(r)) => Action::RateUser(*r),
            _ => return Err(DropReason::ShapeCheck),
        },
        WireAction::TradePubkey => Action::TradePubkey,
        WireAction::AdminTakeDispute => Action::AdminTakeDispute,
        // `bond_resolution` is ignored: bonds are not implemented.
        WireAction::AdminSettle => Action::AdminSettle,
        WireAction::AdminCancel => Action::AdminCancel,
        WireAction::AdminAddSolver => match payload {
            Some(P::TextMessage(text)) => {
                Action::AdminAddSolver(parse_solver(text).ok_or(DropReason::BadSolver)?)
            },
            _ => return Err(DropReason::BadSolver),
        },
        WireAction::Orders => match payload {
            Some(P::Ids(ids)) => Action::Orders(ids.iter().copied().map(OrderId).collect()),
            // `orders` with an `orders` payload passes the shape check but is
            // a reply shape: there is nothing to look up.
            _ => Action::Orders(Vec::new()),
        },
        WireAction::RestoreSession => Action::RestoreSession,
        WireAction::LastTradeIndex => Action::LastTradeIndex,
        WireAction::UserInfo => match msg {
            Message::Restore(_) => Action::UserInfo,
            _ => return Err(DropReason::WrongWrapper),
        },
        // Node-to-client actions, optional features (bonds, Cashu, payer
        // history, reputation portability) and user-to-user messages.
        WireAction::PayInvoice
        | WireAction::PayBondInvoice
        | WireAction::AddBondInvoice
        | WireAction::BondInvoiceAccepted
        | WireAction::BondPayoutCompleted
        | WireAction::BondSlashed
        | WireAction::FiatSentOk
        | WireAction::Released
        | WireAction::Canceled
        | WireAction::CooperativeCancelInitiatedByYou
        | WireAction::CooperativeCancelInitiatedByPeer
        | WireAction::DisputeInitiatedByYou
        | WireAction::DisputeInitiatedByPeer
        | WireAction::CooperativeCancelAccepted
        | WireAction::BuyerInvoiceAccepted
        | WireAction::PurchaseCompleted
        | WireAction::HoldInvoicePaymentAccepted
        | WireAction::HoldInvoicePaymentSettled
        | WireAction::HoldInvoicePaymentCanceled
        | WireAction::WaitingSellerToPay
        | WireAction::WaitingBuyerInvoice
        | WireAction::BuyerTookOrder
        | WireAction::Rate
        | WireAction::RateReceived
        | WireAction::CantDo
        | WireAction::AdminCanceled
        | WireAction::AdminSettled
        | WireAction::AdminTookDispute
        | WireAction::PaymentFailed
        | WireAction::InvoiceUpdated
        | WireAction::SendDm
        | WireAction::AddCashuEscrow
        | WireAction::CashuEscrowLocked
        | WireAction::CashuPmSignature
        | WireAction::DeclarePayer
        | WireAction::PayerDeclared
        | WireAction::PaymentHistory
        | WireAction::ExportReputation
        | WireAction::ReputationExported
        | WireAction::ImportReputation
        | WireAction::ReputationImported => Action::Unsupported,
    })
}

/// `new-order` payload to the engine's request. The client's `id`, `status`
/// and `created_at` are ignored (§9.1).
fn new_order(o: &SmallOrder) -> Result<Action, DropReason> {
    if o.cashu_mint_url.is_some() {
        return Ok(Action::Unsupported);
    }
    let kind = match o.kind {
        Some(WireKind::Buy) => Kind::Buy,
        Some(WireKind::Sell) => Kind::Sell,
        None => return Err(DropReason::BadPayload),
    };
    Ok(Action::NewOrder(Box::new(NewOrderRequest {
        order: NewOrder {
            kind,
            fiat_code: o.fiat_code.clone(),
            fiat_amount: o.fiat_amount,
            min_amount: o.min_amount,
            max_amount: o.max_amount,
            amount: o.amount,
            premium: o.premium,
            payment_method: o.payment_method.clone(),
            buyer_invoice: None,
            expires_at: o.expires_at,
        },
        buyer_invoice: o.buyer_invoice.clone(),
    })))
}

/// `next_trade` of fiat-sent / release; other payloads are ignored.
fn next_trade(payload: Option<&Payload>) -> Result<Option<NextTrade>, DropReason> {
    match payload {
        Some(Payload::NextTrade(key, index)) => {
            let trade_key = key.parse::<PubKey>().map_err(|_| DropReason::BadPayload)?;
            Ok(Some(NextTrade {
                trade_key,
                trade_index: *index,
            }))
        },
        _ => Ok(None),
    }
}

/// Parses the `admin-add-solver` text: a key (`npub1…` or 64 hex
/// characters), optionally followed by `:read`, `:read-write` or `:write`.
/// Without a suffix the solver gets read-write permission.
#[must_use]
pub fn parse_solver(text: &str) -> Option<Solver> {
    let text = text.trim();
    let (key, write) = match text.split_once(':') {
        None => (text, true),
        Some((key, "read")) => (key, false),
        Some((key, "read-write" | "write")) => (key, true),
        Some(_) => return None,
    };
    Some(Solver {
        identity: parse_pubkey(key)?,
        write,
    })
}

/// Parses a public key given as `npub1…` (bech32) or 64 hex characters.
#[must_use]
pub fn parse_pubkey(s: &str) -> Option<PubKey> {
    let s = s.trim();
    if s.len() == 64 {
        return s.parse().ok();
    }
    decode_npub(s).map(PubKey)
}

/// The human-readable part of a NIP-19 public key.
const NPUB_HRP: &str = "npub";

/// Decodes `npub1…` into the 32-byte key: the human-readable part must be `npub`, the string of
/// one case with a valid BIP-173 bech32 checksum (not bech32m), the padding bits fewer than five
/// and zero, and the payload exactly 32 bytes.
fn decode_npub(s: &str) -> Option<[u8; 32]> {
    let checked = CheckedHrpstring::new::<Bech32>(s).ok()?;
    if checked.hrp().to_lowercase() != NPUB_HRP {
        return None;
    }
    checked.validate_segwit_padding().ok()?;
    let bytes: Vec<u8> = checked.byte_iter().collect();
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use bech32::{Bech32, Bech32m, ByteIterExt, Fe32, Fe32IterExt, Hrp};

    use super::parse_pubkey;
    use crate::types::PubKey;

    /// NIP-19's example public key.
    const NPUB: &str = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";
    const HEX: &str = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";

    fn key() -> PubKey {
        HEX.parse().expect("test vector is 64 hex characters")
    }

    fn encode<Ck: bech32::Checksum>(hrp: &str, data: &[u8]) -> String {
        let hrp = Hrp::parse(hrp).expect("valid hrp");
        bech32::encode::<Ck>(hrp, data).expect("encodable")
    }

    #[test]
    fn the_nip19_vector_decodes_to_its_hex_key() {
        assert_eq!(parse_pubkey(NPUB), Some(key()));
        assert_eq!(parse_pubkey(HEX), Some(key()));
        assert_eq!(parse_pubkey(&format!("  {NPUB}\n")), Some(key()));
    }

    #[test]
    fn the_encoder_reproduces_the_vector() {
        assert_eq!(encode::<Bech32>("npub", &key().0), NPUB);
    }

    #[test]
    fn one_case_is_accepted_mixed_case_is_not() {
        assert_eq!(parse_pubkey(&NPUB.to_ascii_uppercase()), Some(key()));
        let mixed = format!("N{}", NPUB.get(1..).unwrap_or_default());
        assert_eq!(parse_pubkey(&mixed), None);
        let mixed_data = format!("{}G", NPUB.get(..NPUB.len() - 1).unwrap_or_default());
        assert_eq!(parse_pubkey(&mixed_data), None);
    }

    #[test]
    fn another_hrp_is_refused() {
        let k = key();
        assert_eq!(parse_pubkey(&encode::<Bech32>("nsec", &k.0)), None);
        assert_eq!(parse_pubkey(&encode::<Bech32>("note", &k.0)), None);
        assert_eq!(parse_pubkey(&encode::<Bech32>("npu", &k.0)), None);
        assert_eq!(parse_pubkey(&encode::<Bech32>("npubx", &k.0)), None);
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        // Last character changed.
        let bad = format!("{}q", NPUB.get(..NPUB.len() - 1).unwrap_or_default());
        assert_ne!(bad, NPUB);
        assert_eq!(parse_pubkey(&bad), None);
        // One data character changed.
        let bad = NPUB.replacen("0elf", "0elg", 1);
        assert_eq!(parse_pubkey(&bad), None);
        // The bech32m checksum is another checksum.
        assert_eq!(parse_pubkey(&encode::<Bech32m>("npub", &key().0)), None);
    }

    #[test]
    fn a_payload_of_another_length_is_refused() {
        let k = key();
        assert_eq!(parse_pubkey(&encode::<Bech32>("npub", &k.0[..31])), None);
        let mut long = k.0.to_vec();
        long.push(0);
        assert_eq!(parse_pubkey(&encode::<Bech32>("npub", &long)), None);
        assert_eq!(parse_pubkey(&encode::<Bech32>("npub", &[])), None);
        assert_eq!(parse_pubkey(&HEX[..63]), None);
        assert_eq!(parse_pubkey(&format!("{HEX}0")), None);
    }

    #[test]
    fn non_zero_padding_bits_are_refused() {
        let mut fes: Vec<Fe32> = key().0.iter().copied().bytes_to_fes().collect();
        let last = fes.pop().expect("52 elements");
        let flipped = Fe32::try_from(last.to_u8() ^ 1).expect("five bits");
        fes.push(flipped);
        let hrp = Hrp::parse("npub").expect("valid hrp");
        let s: String = fes
            .into_iter()
            .with_checksum::<Bech32>(&hrp)
            .chars()
            .collect();
        assert_eq!(parse_pubkey(&s), None);
    }

    #[test]
    fn anything_else_is_refused() {
        for s in [
            "",
            "npub1",
            "npub",
            "nsec10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg",
            "zz7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e",
            "not a key",
        ] {
            assert_eq!(parse_pubkey(s), None, "{s:?}");
        }
    }
}
