//! Mapping between wire [`Message`]s and the engine's domain types.
//!
//! * Inbound: [`to_request`] turns an authenticated message into an engine
//!   [`Request`], applying the intake checks of the reference daemon that
//!   belong to the message layer (§3.5 steps 6 and 9) and dropping what the
//!   reference drops silently.
//! * Outbound: [`to_message`] / [`to_message_at`] turn an engine [`Notify`]
//!   into the wire message, with the action, wrapper and payload shapes the
//!   reference daemon sends (see `testdata/protocol/vectors/messages.jsonl`).
//!
//! Everything here is pure: no clock, no I/O. The transport authenticates
//! the sender and the identity and reports them in an [`Inbound`].
//!
//! # Choices where the reference gives no usable answer
//!
//! * A message whose [`MessageKind::verify`] shape check fails is dropped
//!   without a reply, as in the reference (§3.5 step 9). The only exception
//!   is reputation import / export, which the reference answers with a
//!   `cant-do` even on a bad shape: those actions are not implemented here and
//!   are always mapped to [`Action::Unsupported`] (answered `invalid_action`).
//! * A payload that passes the shape check but whose contents cannot be used
//!   (a `next_trade` pubkey that is not 64 hex characters, a `new-order`
//!   without `kind`, a solver string that is not a key) is dropped without a
//!   reply ([`DropReason::BadPayload`], [`DropReason::BadSolver`]). In the
//!   reference these fail inside the handler, which for `next_trade` and
//!   `kind` is an internal error with no reply; for the solver string the
//!   reference answers `invalid_parameters`, which the engine has no path
//!   for from a request, so we drop it (the admin sees a timeout).
//! * Payloads that an action does not use are ignored, as the reference
//!   handlers do (for example an `amount` on `fiat-sent`).
//! * A `new-order` carrying `cashu_mint_url` asks for a Cashu escrow, which a
//!   Lightning node does not offer: it maps to [`Action::Unsupported`].
//!
//! The decoding lives in `wire/inbound.rs`, the encoding in `wire/outbound.rs`; this module
//! re-exports both under their historical paths.
//!
//! [`Message`]: crate::wire::Message
//! [`MessageKind::verify`]: crate::wire::MessageKind::verify
//! [`Request`]: crate::engine::Request
//! [`Notify`]: crate::machine::Notify
//! [`Action::Unsupported`]: crate::engine::Action::Unsupported

pub use super::inbound::{DropReason, Dropped, Inbound, parse_pubkey, parse_solver, to_request};
pub use super::outbound::{
    cant_do_reason, small_order, to_message, to_message_at, user_info, version_of, wire_kind,
    wire_status,
};
