//! The message envelope: wrapper and inner message.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enums::Action;
use super::payload::Payload;

/// Protocol version written by this implementation (both transports).
pub const PROTOCOL_VERSION: u8 = 2;

/// A protocol message: a single-key JSON object whose key (the wrapper)
/// names the channel, around a [`MessageKind`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Message {
    /// `order`: almost everything.
    Order(MessageKind),
    /// `dispute`: dispute and solver actions.
    Dispute(MessageKind),
    /// `cant-do`: refusals.
    CantDo(MessageKind),
    /// `rate`: defined, unused by the daemon.
    Rate(MessageKind),
    /// `dm`: direct messages between users.
    Dm(MessageKind),
    /// `restore`: restore-session, last-trade-index, user-info.
    Restore(MessageKind),
}

impl Message {
    /// Parses a message from its JSON text.
    ///
    /// # Errors
    ///
    /// Fails on malformed JSON, an unknown wrapper or action, an unknown
    /// [`SmallOrder`](super::SmallOrder) key or any type mismatch.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The canonical compact JSON form (what signatures are computed over).
    ///
    /// Serializing these types cannot fail; should it ever, the result is an
    /// empty string, which no signature or parser accepts.
    pub fn to_json(&self) -> String {
        self.try_to_json().unwrap_or_default()
    }

    /// Like [`Message::to_json`], with the serializer's error surfaced.
    ///
    /// # Errors
    ///
    /// Only if serde_json fails, which these types do not provoke.
    pub fn try_to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The inner message.
    pub fn kind(&self) -> &MessageKind {
        match self {
            Message::Order(k)
            | Message::Dispute(k)
            | Message::CantDo(k)
            | Message::Rate(k)
            | Message::Dm(k)
            | Message::Restore(k) => k,
        }
    }

    /// The inner message, mutably.
    pub fn kind_mut(&mut self) -> &mut MessageKind {
        match self {
            Message::Order(k)
            | Message::Dispute(k)
            | Message::CantDo(k)
            | Message::Rate(k)
            | Message::Dm(k)
            | Message::Restore(k) => k,
        }
    }

    /// Consumes the message and returns the inner message.
    pub fn into_kind(self) -> MessageKind {
        match self {
            Message::Order(k)
            | Message::Dispute(k)
            | Message::CantDo(k)
            | Message::Rate(k)
            | Message::Dm(k)
            | Message::Restore(k) => k,
        }
    }

    /// The wrapper key as written on the wire (`order`, `dispute`, `cant-do`,
    /// `rate`, `dm`, `restore`).
    pub fn wrapper_name(&self) -> &'static str {
        match self {
            Message::Order(_) => "order",
            Message::Dispute(_) => "dispute",
            Message::CantDo(_) => "cant-do",
            Message::Rate(_) => "rate",
            Message::Dm(_) => "dm",
            Message::Restore(_) => "restore",
        }
    }

    /// The inner message's action.
    pub fn action(&self) -> Action {
        self.kind().action
    }

    /// [`MessageKind::verify`] of the inner message.
    pub fn verify(&self) -> bool {
        self.kind().verify()
    }
}

/// The inner message. Fields are written in declaration order; `id` is
/// omitted when absent, `request_id`, `trade_index` and `payload` are written
/// as `null`. Missing keys on input are read as absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageKind {
    /// Protocol version (`2`; `1` from older clients still parses).
    pub version: u8,
    /// Client correlation id, echoed on direct replies. A full u64: real
    /// clients send values above 2^53.
    #[serde(default)]
    pub request_id: Option<u64>,
    /// Trade key index.
    #[serde(default)]
    pub trade_index: Option<i64>,
    /// Order id (dispute id for some dispute actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// What the message asks for or announces.
    pub action: Action,
    /// Action-specific data.
    #[serde(default)]
    pub payload: Option<Payload>,
}

impl MessageKind {
    /// A message with the current [`PROTOCOL_VERSION`].
    pub fn new(
        id: Option<Uuid>,
        request_id: Option<u64>,
        trade_index: Option<i64>,
        action: Action,
        payload: Option<Payload>,
    ) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            request_id,
            trade_index,
            id,
            action,
            payload,
        }
    }

    /// The reference's action / payload / id consistency check, run by the
    /// daemon on input (messages failing it are dropped without a reply).
    ///
    /// Some shapes the reference daemon itself sends fail it (for example
    /// add-invoice with an `order` payload, or the restore-session reply), so
    /// it must not be applied to outgoing messages.
    pub fn verify(&self) -> bool {
        use Payload as P;

        let has_id = self.id.is_some();
        let payload = self.payload.as_ref();
        match self.action {
            Action::NewOrder => matches!(payload, Some(P::Order(_))),
            Action::PayInvoice | Action::AddInvoice | Action::PayBondInvoice => {
                has_id && matches!(payload, Some(P::PaymentRequest(..)))
            },
            Action::AddBondInvoice => {
                has_id
                    && matches!(
                        payload,
                        Some(P::PaymentRequest(..) | P::BondPayoutRequest(_))
                    )
            },
            Action::PaymentFailed => has_id && matches!(payload, Some(P::PaymentFailed(_))),
            Action::RateUser => matches!(payload, Some(P::RatingUser(_))),
            Action::CantDo => matches!(payload, Some(P::CantDo(_))),
            // Clients send no request id here; we accept (and echo) one anyway.
            Action::RestoreSession => !has_id && self.trade_index.is_none() && payload.is_none(),
            Action::LastTradeIndex => payload.is_none(),
            Action::UserInfo => !has_id && matches!(payload, None | Some(P::UserInfo(_))),
            Action::Orders => matches!(payload, Some(P::Ids(_) | P::Orders(_))),
            Action::AddCashuEscrow => has_id && matches!(payload, Some(P::CashuLockProof(_))),
            Action::CashuPmSignature => has_id && matches!(payload, Some(P::CashuSignatures(_))),
            Action::DeclarePayer | Action::PayerDeclared => {
                has_id && matches!(payload, Some(P::PayerDeclaration(_)))
            },
            Action::PaymentHistory => {
                has_id && matches!(payload, None | Some(P::PaymentHistory(_)))
            },
            Action::ExportReputation => matches!(payload, Some(P::ReputationExportRequest(_))),
            Action::ReputationExported | Action::ImportReputation => {
                matches!(payload, Some(P::ReputationAttestation(_)))
            },
            Action::ReputationImported => true,
            Action::TakeSell
            | Action::TakeBuy
            | Action::FiatSent
            | Action::FiatSentOk
            | Action::Release
            | Action::Released
            | Action::Cancel
            | Action::Canceled
            | Action::CooperativeCancelInitiatedByYou
            | Action::CooperativeCancelInitiatedByPeer
            | Action::CooperativeCancelAccepted
            | Action::DisputeInitiatedByYou
            | Action::DisputeInitiatedByPeer
            | Action::BuyerInvoiceAccepted
            | Action::PurchaseCompleted
            | Action::HoldInvoicePaymentAccepted
            | Action::HoldInvoicePaymentSettled
            | Action::HoldInvoicePaymentCanceled
            | Action::WaitingSellerToPay
            | Action::WaitingBuyerInvoice
            | Action::BuyerTookOrder
            | Action::Rate
            | Action::RateReceived
            | Action::Dispute
            | Action::AdminCancel
            | Action::AdminCanceled
            | Action::AdminSettle
            | Action::AdminSettled
            | Action::AdminAddSolver
            | Action::AdminTakeDispute
            | Action::AdminTookDispute
            | Action::InvoiceUpdated
            | Action::SendDm
            | Action::TradePubkey
            | Action::BondInvoiceAccepted
            | Action::BondPayoutCompleted
            | Action::BondSlashed
            | Action::CashuEscrowLocked => has_id,
        }
    }
}
