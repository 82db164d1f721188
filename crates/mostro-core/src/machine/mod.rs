//! The pure transition function: (order, input, environment) -> next order + effects.
//!
//! Nothing here performs I/O or reads a clock. `now`, the policy, the latest price and 32 fresh
//! random bytes arrive in [`Env`]; every side effect leaves as an [`Effect`] value that the engine
//! commits together with the next state before executing it.
//!
//! Funds-safety rules enforced here (and checked by the property tests):
//! - the hold invoice is settled only on `release` by the seller or `admin-settle` by the assigned
//!   solver, and canceled on every other exit; a settled hold is never canceled and vice versa;
//! - the buyer is paid only after the node confirmed the settle ([`Input::HoldSettled`]);
//! - terminal statuses never change again.

mod admit;
mod cancel;
mod checks;
mod dev_fee;
mod dispute;
mod effect;
mod escrow;
mod new_order;
mod payout;
mod range;
mod rating;
mod reject;
mod take;
mod timers;
mod transition;

pub use admit::{
    Admitted, DestinationKind, Facts, MAX_DESTINATION_LEN, MAX_RESTORE, add_solver, admit,
    check_decoded_invoice, check_next_trade, check_no_pending_duty, check_orders_query,
    classify_destination, is_ln_address, last_trade_index_reply, needs_open_orders, needs_user,
    orders_reply, restore_reply, user_info_reply,
};
pub use checks::MAX_PAYMENT_METHOD_LEN;
pub use effect::{Effect, Notice, Notify};
pub use new_order::new_order;
pub use reject::Reject;
pub use transition::Transition;

pub use crate::user::UserUpdate;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fees::Price;
use crate::order::{
    DisputeStatus, Kind, NextTrade, Order, Party, PayoutInvoice, PayoutState, Protocol, Role,
    Status,
};
use crate::policy::Policy;
use crate::types::{BlockHeight, OrderId, PaymentHash, PubKey, Sats, Timestamp};

use cancel::cancel;
use checks::check_invoice;
use dispute::{admin_resolve, admin_take, open_dispute};
use escrow::{
    hold_accepted, hold_canceled, hold_create_failed, hold_created, hold_open, hold_settled,
    start_settle,
};
use payout::{pay_result, payout_failed, payout_resolved};
use rating::rate;
use take::{add_invoice, take};
use timers::{block, timeout};

/// Who is asking, as proven by the transport and resolved by the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The trade key that signed the request (replies go here).
    pub trade_key: PubKey,
    /// The identity key (equals `trade_key` in full privacy).
    pub identity: PubKey,
    /// The trade index the request carried (0 when absent).
    pub trade_index: u32,
    /// Protocol the request arrived in.
    pub protocol: Protocol,
    /// The caller's powers.
    pub authority: Authority,
}

impl Caller {
    fn party(&self) -> Party {
        Party {
            trade_key: self.trade_key,
            identity: self.identity,
            trade_index: self.trade_index,
            protocol: self.protocol,
        }
    }
}

/// Powers of a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Authority {
    /// An ordinary user.
    User,
    /// The node operator (identity = node key).
    Admin,
    /// A registered dispute solver.
    Solver {
        /// `read-write` permission (may settle / cancel).
        write: bool,
    },
}

/// What the environment supplies to one step.
#[derive(Clone, Debug)]
pub struct Env<'a> {
    /// Current time.
    pub now: Timestamp,
    /// Operator policy.
    pub policy: &'a Policy,
    /// 32 fresh random bytes (preimages and new ids are derived from them).
    pub rand: [u8; 32],
    /// Latest price for the order's fiat code, if the engine has one.
    pub price: Option<Price>,
}

impl Env<'_> {
    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.rand);
        h.update(label);
        h.finalize().into()
    }

    fn derive_id(&self, label: &[u8]) -> OrderId {
        let d = self.derive(label);
        let mut b = [0u8; 16];
        b.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
        OrderId::from_random_bytes(b)
    }
}

/// A request to create an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// Buy or sell.
    pub kind: Kind,
    /// Fiat code.
    pub fiat_code: String,
    /// Fixed fiat amount (0 for a range).
    pub fiat_amount: i64,
    /// Range lower bound.
    pub min_amount: Option<i64>,
    /// Range upper bound.
    pub max_amount: Option<i64>,
    /// Sats amount (0 = market price).
    pub amount: i64,
    /// Premium percent (market only).
    pub premium: i64,
    /// Payment methods.
    pub payment_method: String,
    /// Buy-order maker's payout destination, validated by the engine.
    pub buyer_invoice: Option<PayoutDest>,
    /// Requested expiry.
    pub expires_at: Option<i64>,
}

/// Where the buyer wants to be paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutDest {
    /// A BOLT11 invoice, decoded and checked by the engine.
    Invoice(PayoutInvoice),
    /// A Lightning address (`user@domain`) or LNURL-pay, resolved into an invoice for the exact
    /// payout amount when the payout starts.
    Address(String),
}

impl PayoutDest {
    fn check(&self, expected: Sats, env: &Env<'_>) -> Result<(), Reject> {
        match self {
            PayoutDest::Invoice(inv) => check_invoice(inv, expected, env),
            PayoutDest::Address(_) => Ok(()),
        }
    }

    fn apply(&self, o: &mut Order) {
        match self {
            PayoutDest::Invoice(inv) => {
                o.buyer_invoice = Some(inv.clone());
                o.buyer_address = None;
            },
            PayoutDest::Address(a) => {
                o.buyer_invoice = None;
                o.buyer_address = None;
                o.buyer_address = Some(a.clone());
            },
        }
    }
}

fn has_dest(o: &Order) -> bool {
    o.buyer_invoice.is_some() || o.buyer_address.is_some()
}

/// A user or admin command on an existing order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Buyer takes a sell order.
    TakeSell {
        /// Fiat amount of a range take.
        fiat_amount: Option<i64>,
        /// Payout destination given with the take.
        invoice: Option<PayoutDest>,
    },
    /// Seller takes a buy order.
    TakeBuy {
        /// Fiat amount of a range take.
        fiat_amount: Option<i64>,
    },
    /// Buyer gives (or replaces) the payout invoice.
    AddInvoice(PayoutDest),
    /// Buyer says the fiat was sent.
    FiatSent {
        /// Range buy maker's next trade key.
        next_trade: Option<NextTrade>,
    },
    /// Seller releases the sats.
    Release {
        /// Range sell maker's next trade key.
        next_trade: Option<NextTrade>,
    },
    /// Cancel (maker alone while pending; cooperative once taken).
    Cancel,
    /// Open a dispute.
    Dispute,
    /// Rate the counterparty (1-5).
    RateUser(u8),
    /// Maker rotates the trade key of a pending order.
    TradePubkey,
    /// A solver or the admin takes the order's dispute.
    AdminTakeDispute,
    /// Settle the hold invoice and pay the buyer.
    AdminSettle,
    /// Cancel the hold invoice (refund the seller).
    AdminCancel,
}

/// How a payment attempt ended, as reported by the Lightning node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayOutcome {
    /// Still in flight.
    InFlight,
    /// Paid.
    Succeeded {
        /// Routing fee paid.
        fee: Sats,
    },
    /// The node confirmed that every attempt on this hash failed for good (a new attempt may
    /// be made).
    Failed {
        /// Why.
        reason: String,
    },
    /// The call failed without telling the outcome (the node starting up, a lost reply, an
    /// unrecognized error): the payout stays in flight and the node is asked again later.
    Unknown {
        /// What the call answered.
        reason: String,
    },
}

/// Everything that can move an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A command from a user, solver or admin.
    Command {
        /// Who.
        caller: Caller,
        /// What.
        command: Command,
        /// Correlation id to echo.
        request_id: Option<u64>,
    },
    /// The node created the hold invoice.
    HoldCreated {
        /// Hash.
        hash: PaymentHash,
        /// Invoice.
        bolt11: String,
    },
    /// The node refused to create the hold invoice.
    HoldCreateFailed {
        /// Hash.
        hash: PaymentHash,
    },
    /// The seller's HTLC is locked.
    HoldAccepted {
        /// Hash.
        hash: PaymentHash,
        /// Expiry height of the HTLC, if the node reports it.
        htlc_expiry: Option<BlockHeight>,
    },
    /// The node settled the hold invoice.
    HoldSettled {
        /// Hash.
        hash: PaymentHash,
    },
    /// The node reports the hold invoice open (unpaid).
    HoldOpen {
        /// Hash.
        hash: PaymentHash,
    },
    /// The node canceled the hold invoice (on our request or on its own).
    HoldCanceled {
        /// Hash.
        hash: PaymentHash,
    },
    /// Result of a payout attempt.
    PayResult {
        /// Payment hash of the payout invoice.
        hash: PaymentHash,
        /// Outcome.
        outcome: PayOutcome,
    },
    /// A Lightning address was resolved into this invoice (decoded by the engine).
    PayoutResolved {
        /// The invoice.
        invoice: PayoutInvoice,
    },
    /// A Lightning address could not be resolved.
    PayoutResolveFailed {
        /// Why.
        reason: String,
    },
    /// The development-fee address was resolved into this invoice (decoded by the engine).
    DevFeeResolved {
        /// The invoice.
        invoice: PayoutInvoice,
    },
    /// The development-fee address could not be resolved.
    DevFeeResolveFailed {
        /// Why.
        reason: String,
    },
    /// Wall clock reached (or passed) the order's deadline.
    Timeout,
    /// New chain tip (escrow CLTV guard).
    Block(BlockHeight),
}

/// Steps an existing order.
pub fn step(order: &Order, input: &Input, env: &Env<'_>) -> Result<Transition, Reject> {
    let mut t = Transition::new(order.clone());
    match input {
        Input::Command {
            caller,
            command,
            request_id,
        } => {
            command_step(&mut t, caller, command, *request_id, env)?;
        },
        Input::HoldCreated { hash, bolt11 } => hold_created(&mut t, *hash, bolt11),
        Input::HoldCreateFailed { hash } => hold_create_failed(&mut t, *hash, env),
        Input::HoldAccepted { hash, htlc_expiry } => {
            hold_accepted(&mut t, *hash, *htlc_expiry, env)
        },
        Input::HoldSettled { hash } => hold_settled(&mut t, *hash, env)?,
        Input::HoldOpen { hash } => hold_open(&mut t, *hash),
        Input::HoldCanceled { hash } => hold_canceled(&mut t, *hash, env),
        Input::PayResult { hash, outcome } => pay_result(&mut t, *hash, outcome, env)?,
        Input::PayoutResolved { invoice } => payout_resolved(&mut t, invoice, env)?,
        Input::PayoutResolveFailed { .. } => {
            let resolving = t
                .order
                .payout
                .as_ref()
                .is_some_and(|p| p.state == PayoutState::Resolving);
            if resolving && t.order.status == Status::SettledHoldInvoice {
                payout_failed(&mut t, env);
            }
        },
        Input::DevFeeResolved { invoice } => dev_fee::dev_fee_resolved(&mut t, invoice, env),
        Input::DevFeeResolveFailed { .. } => dev_fee::dev_fee_resolve_failed(&mut t, env),
        Input::Timeout => timeout(&mut t, env)?,
        Input::Block(h) => block(&mut t, *h, env),
    }
    if t.order != *order || !t.effects.is_empty() {
        t.order.version = order.version.saturating_add(1);
    }
    Ok(t)
}

fn command_step(
    t: &mut Transition,
    caller: &Caller,
    command: &Command,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let o = &t.order;
    let role = o.role_of(&caller.trade_key);
    match command {
        Command::TakeSell {
            fiat_amount,
            invoice,
        } => take(
            t,
            caller,
            Kind::Sell,
            *fiat_amount,
            invoice.as_ref(),
            rid,
            env,
        ),
        Command::TakeBuy { fiat_amount } => {
            take(t, caller, Kind::Buy, *fiat_amount, None, rid, env)
        },
        Command::AddInvoice(inv) => add_invoice(t, role, inv, rid, env),
        Command::FiatSent { next_trade } => {
            if role != Some(Role::Buyer) {
                return Err(Reject::InvalidPubkey);
            }
            if o.status != Status::Active {
                return Err(Reject::InvalidOrderStatus);
            }
            let range_buy = o.is_range() && o.kind == Kind::Buy;
            t.order.status = Status::FiatSent;
            if range_buy {
                t.order.next_trade = *next_trade;
            }
            let (Some(buyer), Some(seller)) = (t.order.buyer().cloned(), t.order.seller().cloned())
            else {
                return Err(Reject::NotAllowedByStatus);
            };
            t.tell(
                &seller,
                None,
                Notice::FiatSentOk {
                    peer: buyer.trade_key,
                },
            );
            t.tell(
                &buyer,
                rid,
                Notice::FiatSentOk {
                    peer: seller.trade_key,
                },
            );
            Ok(())
        },
        Command::Release { next_trade } => {
            if role != Some(Role::Seller) {
                return Err(Reject::InvalidPeer);
            }
            if !matches!(
                o.status,
                Status::FiatSent | Status::Dispute | Status::Active
            ) {
                return Err(Reject::NotAllowedByStatus);
            }
            if o.status == Status::Active && !has_dest(o) {
                return Err(Reject::NotAllowedByStatus);
            }
            let range_sell = o.is_range() && o.kind == Kind::Sell;
            start_settle(t, rid)?;
            if range_sell {
                t.order.next_trade = *next_trade;
            }
            if let Some(d) = &mut t.order.dispute
                && d.status.is_open()
            {
                d.status = DisputeStatus::Released;
                // The parties closed it themselves: the solver who took it is told.
                let solver = d.solver_party.clone();
                t.publish_dispute();
                if let Some(s) = solver {
                    t.tell(&s, None, Notice::Released);
                }
            }
            Ok(())
        },
        Command::Cancel => cancel(t, caller, role, rid, env.now),
        Command::Dispute => {
            let Some(r) = role else {
                return Err(Reject::InvalidPubkey);
            };
            if !matches!(o.status, Status::Active | Status::FiatSent) {
                return Err(Reject::NotAllowedByStatus);
            }
            open_dispute(t, r, rid, env);
            Ok(())
        },
        Command::RateUser(r) => rate(t, role, *r, rid, env),
        Command::TradePubkey => {
            if o.status != Status::Pending {
                return Err(Reject::InvalidOrderStatus);
            }
            if o.maker.is_full_privacy() || caller.identity != o.maker.identity {
                return Err(Reject::InvalidPubkey);
            }
            t.order.maker.trade_key = caller.trade_key;
            t.order.maker.protocol = caller.protocol;
            t.order.maker.trade_index = caller.trade_index;
            let p = t.order.maker.clone();
            t.tell(&p, rid, Notice::TradePubkey);
            t.publish();
            Ok(())
        },
        Command::AdminTakeDispute => admin_take(t, caller, rid, env),
        Command::AdminSettle => admin_resolve(t, caller, rid, true),
        Command::AdminCancel => admin_resolve(t, caller, rid, false),
    }
}
