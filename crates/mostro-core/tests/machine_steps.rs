//! Table-driven tests of the pure machine: `machine::step` and `machine::new_order` called
//! directly, with no engine, store or async runtime.
//!
//! Each case names a starting order (reached by driving the machine itself from a new order, so
//! every starting state is one the machine can produce), one input, and what must come out:
//! the next status and the exact sequence of effects (a message is written `recipient:Notice`),
//! a refusal with its specific reason, or nothing at all. All cases run and every mismatch is
//! reported together.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a broken starting order ends the test"
)]

use mostro_core::fees;
use mostro_core::machine::{
    self, Authority, Caller, Command, Effect, Env, Input, NewOrder, PayOutcome, PayoutDest, Reject,
    Transition,
};
use mostro_core::order::{HoldState, Order, PayoutInvoice, PayoutState, Status};
use mostro_core::policy::Policy;
use mostro_core::types::{PaymentHash, Sats};
use mostro_testkit::Trader;
use mostro_testkit::scenario::{T0, buy_order, sell_order};

/// Sats of the fixed-price orders of the table.
const SATS: i64 = 10_000;
/// Fiat amount of those orders.
const FIAT: i64 = 100;
/// Payment hash of the buyer's payout invoice.
const PAYOUT_HASH: PaymentHash = PaymentHash([0x99; 32]);

/// The people of the table and the operator policy.
struct World {
    seller: Trader,
    buyer: Trader,
    admin: Trader,
    stranger: Trader,
    policy: Policy,
}

impl World {
    fn new() -> Self {
        World {
            seller: Trader::new("seller"),
            buyer: Trader::new("buyer"),
            admin: Trader::new("admin"),
            stranger: Trader::new("stranger"),
            policy: Policy::default(),
        }
    }

    /// The environment `secs` seconds after [`T0`].
    fn env(&self, secs: u64) -> Env<'_> {
        Env {
            now: T0.plus(secs),
            policy: &self.policy,
            rand: [0x42; 32],
            price: None,
        }
    }

    /// Who a trade key belongs to, for the effect listing.
    fn name_of(&self, key: &mostro_core::PubKey) -> &'static str {
        if *key == self.seller.trade_key {
            "seller"
        } else if *key == self.buyer.trade_key {
            "buyer"
        } else if *key == self.admin.trade_key {
            "admin"
        } else {
            "someone"
        }
    }

    /// What the buyer receives on the table's fixed-price orders.
    fn buyer_sats(&self) -> Sats {
        let amount = Sats(SATS.unsigned_abs());
        Sats(amount.0 - fees::party_fee(amount, self.policy.fee_ppm).0)
    }

    /// A payout invoice for `amount` that passes every check at [`T0`].
    fn invoice(&self, amount: Option<Sats>) -> PayoutDest {
        PayoutDest::Invoice(PayoutInvoice {
            bolt11: "lnbcrt1payout".to_owned(),
            hash: PAYOUT_HASH,
            amount,
            expires_at: T0.plus(10 * 3600),
            min_final_cltv: 40,
        })
    }
}

fn caller(t: &Trader, authority: Authority) -> Caller {
    Caller {
        trade_key: t.trade_key,
        identity: t.identity,
        trade_index: t.index,
        protocol: t.protocol,
        authority,
    }
}

fn user(t: &Trader) -> Caller {
    caller(t, Authority::User)
}

fn admin(w: &World) -> Caller {
    caller(&w.admin, Authority::Admin)
}

fn command(by: Caller, command: Command) -> Input {
    Input::Command {
        caller: by,
        command,
        request_id: Some(7),
    }
}

/// Steps a builder order on, failing the test if the machine refuses.
fn then(w: &World, o: Order, input: Input) -> Order {
    match machine::step(&o, &input, &w.env(0)) {
        Ok(t) => t.order,
        Err(r) => panic!("building the starting order: {input:?} refused with {r}"),
    }
}

fn hold_hash(o: &Order) -> PaymentHash {
    o.hold
        .as_ref()
        .map(|h| h.hash)
        .expect("the order has a hold")
}

// Starting orders, each reached by driving the machine.

fn pending_sell(w: &World) -> Order {
    match machine::new_order(&user(&w.seller), &sell_order(SATS, FIAT), &w.env(0)) {
        Ok(t) => t.order,
        Err(r) => panic!("new sell order refused: {r}"),
    }
}

fn pending_buy(w: &World) -> Order {
    match machine::new_order(&user(&w.buyer), &buy_order(SATS, FIAT), &w.env(0)) {
        Ok(t) => t.order,
        Err(r) => panic!("new buy order refused: {r}"),
    }
}

/// Sell order taken by the buyer without an invoice.
fn waiting_buyer_invoice(w: &World) -> Order {
    let take = Command::TakeSell {
        fiat_amount: None,
        invoice: None,
    };
    then(w, pending_sell(w), command(user(&w.buyer), take))
}

/// Sell order whose buyer gave an invoice: the hold invoice is created and offered.
fn waiting_payment(w: &World) -> Order {
    let inv = Command::AddInvoice(w.invoice(Some(w.buyer_sats())));
    let o = then(w, waiting_buyer_invoice(w), command(user(&w.buyer), inv));
    let hash = hold_hash(&o);
    then(
        w,
        o,
        Input::HoldCreated {
            hash,
            bolt11: "lnbcrt1hold".to_owned(),
        },
    )
}

/// Buy order taken by the seller (the taker owes the escrow).
fn waiting_payment_buy(w: &World) -> Order {
    let take = Command::TakeBuy { fiat_amount: None };
    then(w, pending_buy(w), command(user(&w.seller), take))
}

fn active(w: &World) -> Order {
    let o = waiting_payment(w);
    let hash = hold_hash(&o);
    then(
        w,
        o,
        Input::HoldAccepted {
            hash,
            htlc_expiry: Some(mostro_core::BlockHeight(1_000)),
        },
    )
}

fn fiat_sent(w: &World) -> Order {
    let sent = Command::FiatSent { next_trade: None };
    then(w, active(w), command(user(&w.buyer), sent))
}

fn disputed(w: &World) -> Order {
    then(w, fiat_sent(w), command(user(&w.buyer), Command::Dispute))
}

fn dispute_taken(w: &World) -> Order {
    then(w, disputed(w), command(admin(w), Command::AdminTakeDispute))
}

/// Released by the seller; the node has not confirmed the settle yet.
fn settling(w: &World) -> Order {
    let release = Command::Release { next_trade: None };
    then(w, fiat_sent(w), command(user(&w.seller), release))
}

/// The settle confirmed: the payout to the buyer's invoice is in flight.
fn paying(w: &World) -> Order {
    let o = settling(w);
    let hash = hold_hash(&o);
    then(w, o, Input::HoldSettled { hash })
}

/// Two payout attempts failed already; the next failure is the last one allowed.
fn paying_last_attempt(w: &World) -> Order {
    let mut o = paying(w);
    if let Some(p) = o.payout.as_mut() {
        p.attempts = w.policy.payment_attempts - 1;
    }
    o
}

fn success(w: &World) -> Order {
    let paid = Input::PayResult {
        hash: PAYOUT_HASH,
        outcome: PayOutcome::Succeeded { fee: Sats(3) },
    };
    then(w, paying(w), paid)
}

fn rated_by_buyer(w: &World) -> Order {
    then(w, success(w), command(user(&w.buyer), Command::RateUser(5)))
}

/// What a case must produce.
#[derive(Debug)]
enum Expect {
    /// The step succeeds with this status and exactly these effects, in order.
    Ok(Status, &'static [&'static str]),
    /// The step succeeds and changes nothing (same order, no effect, no user change).
    Nothing,
    /// The step is refused for this reason.
    Err(Reject),
}

struct Case {
    name: &'static str,
    start: fn(&World) -> Order,
    input: fn(&World, &Order) -> Input,
    /// Seconds after [`T0`] at which the step runs.
    at: u64,
    expect: Expect,
}

/// An effect as the table writes it.
fn describe(w: &World, e: &Effect) -> String {
    match e {
        Effect::Notify(n) => {
            let notice = format!("{:?}", n.notice);
            let variant = notice
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_owned();
            format!("{}:{variant}", w.name_of(&n.to))
        },
        other => format!("{other:?}")
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Compares one outcome with its expectation; `None` when they agree. `before` is the order
/// stepped (`None` for a new order, which must start at version 0).
fn check(
    w: &World,
    before: Option<&Order>,
    got: &Result<Transition, Reject>,
    expect: &Expect,
) -> Option<String> {
    let want_version = before.map_or(0, |b| b.version + 1);
    match (got, expect) {
        (Ok(t), Expect::Ok(status, effects)) => {
            let got_effects: Vec<String> = t.effects.iter().map(|e| describe(w, e)).collect();
            if t.order.status != *status || got_effects != *effects {
                return Some(format!(
                    "got Ok({:?}, {got_effects:?}), want Ok({status:?}, {effects:?})",
                    t.order.status
                ));
            }
            if t.order.version != want_version {
                return Some(format!("version {}, want {want_version}", t.order.version));
            }
            None
        },
        (Ok(t), Expect::Nothing) => before
            .is_none_or(|b| !t.is_noop(b) || t.order.version != b.version)
            .then(|| {
                let got_effects: Vec<String> = t.effects.iter().map(|e| describe(w, e)).collect();
                format!(
                    "got a change ({:?}, {got_effects:?}, {} user updates), want nothing",
                    t.order.status,
                    t.users.len()
                )
            }),
        (Err(r), Expect::Err(want)) => {
            (r != want).then(|| format!("got Err({r:?}), want Err({want:?})"))
        },
        (Ok(t), want) => Some(format!(
            "got Ok({:?}, {:?}), want {want:?}",
            t.order.status,
            t.effects.iter().map(|e| describe(w, e)).collect::<Vec<_>>()
        )),
        (Err(r), want) => Some(format!("got Err({r:?}), want {want:?}")),
    }
}

fn cases() -> Vec<Case> {
    use Expect::{Err, Nothing, Ok};
    use Status::*;
    vec![
        // Taking.
        Case {
            name: "the buyer takes a pending sell order without an invoice",
            start: pending_sell,
            input: |w, _| {
                let take = Command::TakeSell {
                    fiat_amount: None,
                    invoice: None,
                };
                command(user(&w.buyer), take)
            },
            at: 10,
            expect: Ok(
                WaitingBuyerInvoice,
                &[
                    "buyer:AddInvoice",
                    "seller:WaitingBuyerInvoice",
                    "PublishOrder",
                ],
            ),
        },
        Case {
            name: "the buyer takes a pending sell order with an invoice",
            start: pending_sell,
            input: |w, _| {
                let take = Command::TakeSell {
                    fiat_amount: None,
                    invoice: Some(w.invoice(Some(w.buyer_sats()))),
                };
                command(user(&w.buyer), take)
            },
            at: 10,
            expect: Ok(WaitingPayment, &["CreateHold", "PublishOrder"]),
        },
        Case {
            name: "the maker may not take their own order",
            start: pending_sell,
            input: |w, _| {
                let take = Command::TakeSell {
                    fiat_amount: None,
                    invoice: None,
                };
                command(user(&w.seller), take)
            },
            at: 10,
            expect: Err(Reject::InvalidPubkey),
        },
        Case {
            name: "take-buy of a sell order is the wrong kind",
            start: pending_sell,
            input: |w, _| command(user(&w.buyer), Command::TakeBuy { fiat_amount: None }),
            at: 10,
            expect: Err(Reject::InvalidOrderKind),
        },
        Case {
            name: "the seller takes a pending buy order: the escrow is asked for",
            start: pending_buy,
            input: |w, _| command(user(&w.seller), Command::TakeBuy { fiat_amount: None }),
            at: 10,
            expect: Ok(WaitingPayment, &["CreateHold", "PublishOrder"]),
        },
        // The buyer's invoice.
        Case {
            name: "an invoice for the wrong amount is refused",
            start: waiting_buyer_invoice,
            input: |w, _| {
                command(
                    user(&w.buyer),
                    Command::AddInvoice(w.invoice(Some(Sats(1)))),
                )
            },
            at: 10,
            expect: Err(Reject::InvalidInvoice),
        },
        Case {
            name: "an invoice for the buyer's amount asks for the hold invoice",
            start: waiting_buyer_invoice,
            input: |w, _| {
                command(
                    user(&w.buyer),
                    Command::AddInvoice(w.invoice(Some(w.buyer_sats()))),
                )
            },
            at: 10,
            expect: Ok(WaitingPayment, &["CreateHold"]),
        },
        Case {
            name: "only the buyer adds an invoice",
            start: waiting_buyer_invoice,
            input: |w, _| {
                command(
                    user(&w.seller),
                    Command::AddInvoice(w.invoice(Some(w.buyer_sats()))),
                )
            },
            at: 10,
            expect: Err(Reject::InvalidPeer),
        },
        // The escrow.
        Case {
            name: "the created hold invoice is offered to the seller",
            start: |w| {
                let inv = Command::AddInvoice(w.invoice(Some(w.buyer_sats())));
                then(w, waiting_buyer_invoice(w), command(user(&w.buyer), inv))
            },
            input: |_, o| Input::HoldCreated {
                hash: hold_hash(o),
                bolt11: "lnbcrt1hold".to_owned(),
            },
            at: 10,
            expect: Ok(
                WaitingPayment,
                &["seller:PayInvoice", "buyer:WaitingSellerToPay"],
            ),
        },
        Case {
            name: "the accepted hold makes the trade active",
            start: waiting_payment,
            input: |_, o| Input::HoldAccepted {
                hash: hold_hash(o),
                htlc_expiry: None,
            },
            at: 10,
            expect: Ok(
                Active,
                &["seller:BuyerTookOrder", "buyer:HoldInvoicePaymentAccepted"],
            ),
        },
        Case {
            name: "a hold the order does not use is canceled when paid",
            start: waiting_payment,
            input: |_, _| Input::HoldAccepted {
                hash: PaymentHash([0x55; 32]),
                htlc_expiry: None,
            },
            at: 10,
            expect: Ok(WaitingPayment, &["CancelHold"]),
        },
        Case {
            name: "the accepted hold of a buy order without invoice asks the buyer for one",
            start: waiting_payment_buy,
            input: |_, o| Input::HoldAccepted {
                hash: hold_hash(o),
                htlc_expiry: None,
            },
            at: 10,
            expect: Ok(
                WaitingBuyerInvoice,
                &["buyer:AddInvoice", "seller:WaitingBuyerInvoice"],
            ),
        },
        // The fiat leg and the release.
        Case {
            name: "fiat-sent by the seller is refused",
            start: active,
            input: |w, _| command(user(&w.seller), Command::FiatSent { next_trade: None }),
            at: 10,
            expect: Err(Reject::InvalidPubkey),
        },
        Case {
            name: "fiat-sent by the buyer tells both",
            start: active,
            input: |w, _| command(user(&w.buyer), Command::FiatSent { next_trade: None }),
            at: 10,
            expect: Ok(FiatSent, &["seller:FiatSentOk", "buyer:FiatSentOk"]),
        },
        Case {
            name: "release by the seller settles the hold",
            start: fiat_sent,
            input: |w, _| command(user(&w.seller), Command::Release { next_trade: None }),
            at: 10,
            expect: Ok(SettledHoldInvoice, &["SettleHold"]),
        },
        Case {
            name: "release by the buyer is refused",
            start: fiat_sent,
            input: |w, _| command(user(&w.buyer), Command::Release { next_trade: None }),
            at: 10,
            expect: Err(Reject::InvalidPeer),
        },
        Case {
            name: "the confirmed settle pays the buyer",
            start: settling,
            input: |_, o| Input::HoldSettled { hash: hold_hash(o) },
            at: 10,
            expect: Ok(
                SettledHoldInvoice,
                &[
                    "buyer:Released",
                    "seller:HoldInvoicePaymentSettled",
                    "seller:Rate",
                    "Pay",
                ],
            ),
        },
        // Cancel.
        Case {
            name: "the maker cancels a pending order",
            start: pending_sell,
            input: |w, _| command(user(&w.seller), Command::Cancel),
            at: 10,
            expect: Ok(Canceled, &["seller:Canceled", "PublishOrder"]),
        },
        Case {
            name: "only the maker cancels a pending order",
            start: pending_sell,
            input: |w, _| command(user(&w.buyer), Command::Cancel),
            at: 10,
            expect: Err(Reject::IsNotYourOrder),
        },
        Case {
            name: "the maker cancels while waiting for the buyer's invoice",
            start: waiting_buyer_invoice,
            input: |w, _| command(user(&w.seller), Command::Cancel),
            at: 10,
            expect: Ok(
                Canceled,
                &["seller:Canceled", "buyer:Canceled", "PublishOrder"],
            ),
        },
        Case {
            name: "the taker cancels while waiting for their invoice: back to the book",
            start: waiting_buyer_invoice,
            input: |w, _| command(user(&w.buyer), Command::Cancel),
            at: 10,
            expect: Ok(
                Pending,
                &["buyer:Canceled", "seller:NewOrder", "PublishOrder"],
            ),
        },
        Case {
            name: "the maker cancels while waiting for the escrow: the hold is canceled",
            start: waiting_payment,
            input: |w, _| command(user(&w.seller), Command::Cancel),
            at: 10,
            expect: Ok(
                Canceled,
                &[
                    "CancelHold",
                    "seller:Canceled",
                    "buyer:Canceled",
                    "PublishOrder",
                ],
            ),
        },
        Case {
            name: "the taker cancels while waiting for the escrow: back to the book",
            start: waiting_payment,
            input: |w, _| command(user(&w.buyer), Command::Cancel),
            at: 10,
            expect: Ok(
                Pending,
                &[
                    "CancelHold",
                    "buyer:Canceled",
                    "seller:NewOrder",
                    "PublishOrder",
                ],
            ),
        },
        Case {
            name: "a stranger may not cancel a taken order",
            start: waiting_payment,
            input: |w, _| command(user(&w.stranger), Command::Cancel),
            at: 10,
            expect: Err(Reject::InvalidPubkey),
        },
        Case {
            name: "a cancel during the trade asks the peer first",
            start: active,
            input: |w, _| command(user(&w.seller), Command::Cancel),
            at: 10,
            expect: Ok(
                Active,
                &[
                    "seller:CooperativeCancelInitiatedByYou",
                    "buyer:CooperativeCancelInitiatedByPeer",
                ],
            ),
        },
        // Deadlines.
        Case {
            name: "the taker's invoice is late: back to the book",
            start: waiting_buyer_invoice,
            input: |_, _| Input::Timeout,
            at: 901,
            expect: Ok(
                Pending,
                &["buyer:Canceled", "seller:NewOrder", "PublishOrder"],
            ),
        },
        Case {
            name: "the taking seller's escrow is late: back to the book",
            start: waiting_payment_buy,
            input: |_, _| Input::Timeout,
            at: 901,
            expect: Ok(
                Pending,
                &[
                    "CancelHold",
                    "seller:Canceled",
                    "buyer:NewOrder",
                    "PublishOrder",
                ],
            ),
        },
        Case {
            name: "the maker's escrow is late: the order is canceled",
            start: waiting_payment,
            input: |_, _| Input::Timeout,
            at: 901,
            expect: Ok(
                Canceled,
                &[
                    "CancelHold",
                    "seller:Canceled",
                    "buyer:Canceled",
                    "PublishOrder",
                ],
            ),
        },
        Case {
            name: "a timeout before the deadline does nothing",
            start: waiting_buyer_invoice,
            input: |_, _| Input::Timeout,
            at: 899,
            expect: Nothing,
        },
        Case {
            name: "a pending order expires",
            start: pending_sell,
            input: |_, _| Input::Timeout,
            at: 24 * 3600,
            expect: Ok(Expired, &["PublishOrder"]),
        },
        // Disputes.
        Case {
            name: "the buyer opens a dispute",
            start: active,
            input: |w, _| command(user(&w.buyer), Command::Dispute),
            at: 10,
            expect: Ok(
                Dispute,
                &[
                    "buyer:DisputeInitiatedByYou",
                    "seller:DisputeInitiatedByPeer",
                    "PublishDispute",
                ],
            ),
        },
        Case {
            name: "a stranger may not open a dispute",
            start: active,
            input: |w, _| command(user(&w.stranger), Command::Dispute),
            at: 10,
            expect: Err(Reject::InvalidPubkey),
        },
        Case {
            name: "no dispute before the trade is active",
            start: waiting_payment,
            input: |w, _| command(user(&w.buyer), Command::Dispute),
            at: 10,
            expect: Err(Reject::NotAllowedByStatus),
        },
        Case {
            name: "the admin takes the dispute",
            start: disputed,
            input: |w, _| command(admin(w), Command::AdminTakeDispute),
            at: 10,
            expect: Ok(
                Dispute,
                &[
                    "admin:AdminTookDisputeSolver",
                    "seller:AdminTookDisputePeer",
                    "buyer:AdminTookDisputePeer",
                    "PublishDispute",
                ],
            ),
        },
        Case {
            name: "a user may not take a dispute",
            start: disputed,
            input: |w, _| command(user(&w.stranger), Command::AdminTakeDispute),
            at: 10,
            expect: Err(Reject::NotAuthorized),
        },
        Case {
            name: "admin-settle by the solver settles the hold",
            start: dispute_taken,
            input: |w, _| command(admin(w), Command::AdminSettle),
            at: 10,
            expect: Ok(
                SettledHoldInvoice,
                &[
                    "SettleHold",
                    "admin:AdminSettled",
                    "seller:AdminSettled",
                    "buyer:AdminSettled",
                    "PublishDispute",
                ],
            ),
        },
        Case {
            name: "admin-cancel by the solver refunds the seller",
            start: dispute_taken,
            input: |w, _| command(admin(w), Command::AdminCancel),
            at: 10,
            expect: Ok(
                CanceledByAdmin,
                &[
                    "CancelHold",
                    "admin:AdminCanceled",
                    "seller:AdminCanceled",
                    "buyer:AdminCanceled",
                    "PublishOrder",
                    "PublishDispute",
                ],
            ),
        },
        Case {
            name: "admin-settle of a dispute nobody took is refused",
            start: disputed,
            input: |w, _| command(admin(w), Command::AdminSettle),
            at: 10,
            expect: Err(Reject::IsNotYourDispute),
        },
        Case {
            name: "admin-settle by a user is refused",
            start: dispute_taken,
            input: |w, _| command(user(&w.stranger), Command::AdminSettle),
            at: 10,
            expect: Err(Reject::NotAuthorized),
        },
        // The payout.
        Case {
            name: "a failed payout is retried later and the buyer told",
            start: paying,
            input: |_, _| Input::PayResult {
                hash: PAYOUT_HASH,
                outcome: PayOutcome::Failed {
                    reason: "no route".to_owned(),
                },
            },
            at: 10,
            expect: Ok(SettledHoldInvoice, &["buyer:PaymentFailed"]),
        },
        Case {
            name: "the last failed attempt asks the buyer for a new invoice",
            start: paying_last_attempt,
            input: |_, _| Input::PayResult {
                hash: PAYOUT_HASH,
                outcome: PayOutcome::Failed {
                    reason: "no route".to_owned(),
                },
            },
            at: 10,
            expect: Ok(SettledHoldInvoice, &["buyer:AddInvoice"]),
        },
        Case {
            name: "a failure reported for a hash the order never used changes nothing",
            start: paying,
            input: |_, _| Input::PayResult {
                hash: PaymentHash([0x77; 32]),
                outcome: PayOutcome::Failed {
                    reason: "no route".to_owned(),
                },
            },
            at: 10,
            expect: Nothing,
        },
        Case {
            name: "a successful payout completes the trade",
            start: paying,
            input: |_, _| Input::PayResult {
                hash: PAYOUT_HASH,
                outcome: PayOutcome::Succeeded { fee: Sats(3) },
            },
            at: 10,
            expect: Ok(
                Success,
                &["buyer:PurchaseCompleted", "buyer:Rate", "PublishOrder"],
            ),
        },
        // Ratings.
        Case {
            name: "the buyer rates the seller",
            start: success,
            input: |w, _| command(user(&w.buyer), Command::RateUser(5)),
            at: 10,
            expect: Ok(Success, &["buyer:RateReceived", "PublishRating"]),
        },
        Case {
            name: "a second rating by the same side is refused (ignored, as the reference does)",
            start: rated_by_buyer,
            input: |w, _| command(user(&w.buyer), Command::RateUser(4)),
            at: 10,
            expect: Nothing,
        },
        Case {
            name: "a rating outside 1-5 is refused",
            start: success,
            input: |w, _| command(user(&w.buyer), Command::RateUser(6)),
            at: 10,
            expect: Err(Reject::InvalidRating),
        },
        Case {
            name: "the buyer may not rate before the payout",
            start: active,
            input: |w, _| command(user(&w.buyer), Command::RateUser(5)),
            at: 10,
            expect: Err(Reject::InvalidOrderStatus),
        },
        Case {
            name: "a stranger may not rate",
            start: success,
            input: |w, _| command(user(&w.stranger), Command::RateUser(5)),
            at: 10,
            expect: Err(Reject::InvalidPubkey),
        },
    ]
}

#[test]
fn every_step_case_gives_its_expected_outcome() {
    let w = World::new();
    let mut failures = Vec::new();
    let all = cases();
    for case in &all {
        let before = (case.start)(&w);
        let input = (case.input)(&w, &before);
        let got = machine::step(&before, &input, &w.env(case.at));
        if let Some(why) = check(&w, Some(&before), &got, &case.expect) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn the_starting_orders_are_the_states_their_names_say() {
    // The table is only as good as its starting points.
    let w = World::new();
    let hold = |o: &Order| o.hold.as_ref().map(|h| h.state);
    let payout = |o: &Order| o.payout.as_ref().map(|p| (p.state, p.attempts));
    assert_eq!(pending_sell(&w).status, Status::Pending);
    assert_eq!(pending_buy(&w).status, Status::Pending);
    assert_eq!(
        waiting_buyer_invoice(&w).status,
        Status::WaitingBuyerInvoice
    );
    assert_eq!(hold(&waiting_buyer_invoice(&w)), None);
    assert_eq!(waiting_payment(&w).status, Status::WaitingPayment);
    assert_eq!(hold(&waiting_payment(&w)), Some(HoldState::Open));
    assert_eq!(waiting_payment_buy(&w).status, Status::WaitingPayment);
    assert_eq!(hold(&waiting_payment_buy(&w)), Some(HoldState::Requested));
    assert_eq!(active(&w).status, Status::Active);
    assert_eq!(hold(&active(&w)), Some(HoldState::Accepted));
    assert_eq!(fiat_sent(&w).status, Status::FiatSent);
    assert_eq!(disputed(&w).status, Status::Dispute);
    assert_eq!(
        dispute_taken(&w).dispute.and_then(|d| d.solver),
        Some(w.admin.identity)
    );
    assert_eq!(hold(&settling(&w)), Some(HoldState::Settling));
    assert_eq!(payout(&paying(&w)), Some((PayoutState::InFlight, 0)));
    assert_eq!(
        payout(&paying_last_attempt(&w)),
        Some((PayoutState::InFlight, w.policy.payment_attempts - 1))
    );
    assert_eq!(success(&w).status, Status::Success);
    assert!(rated_by_buyer(&w).buyer_rated);
}

#[test]
fn the_payout_failure_cases_leave_the_payout_where_they_say() {
    let w = World::new();
    let failed = Input::PayResult {
        hash: PAYOUT_HASH,
        outcome: PayOutcome::Failed {
            reason: "no route".to_owned(),
        },
    };
    let state = |o: &Order| o.payout.as_ref().map(|p| (p.state, p.attempts));
    let t = machine::step(&paying(&w), &failed, &w.env(10)).expect("a failure is an input");
    assert_eq!(state(&t.order), Some((PayoutState::Failed, 1)));
    assert_eq!(
        t.order.deadline,
        Some(T0.plus(10 + w.policy.payment_retry_secs))
    );
    let t = machine::step(&paying_last_attempt(&w), &failed, &w.env(10))
        .expect("a failure is an input");
    assert_eq!(
        state(&t.order),
        Some((PayoutState::NeedInvoice, w.policy.payment_attempts))
    );
    assert_eq!(t.order.deadline, None);
}

/// A `new_order` case: the request, and the refusal or the pending order's effects.
struct NewCase {
    name: &'static str,
    request: fn() -> NewOrder,
    expect: Expect,
}

#[test]
fn every_new_order_case_gives_its_expected_outcome() {
    let w = World::new();
    let cases = [
        NewCase {
            name: "a fixed-price sell order",
            request: || sell_order(SATS, FIAT),
            expect: Expect::Ok(Status::Pending, &["seller:NewOrder", "PublishOrder"]),
        },
        NewCase {
            name: "an empty fiat code",
            request: || NewOrder {
                fiat_code: String::new(),
                ..sell_order(SATS, FIAT)
            },
            expect: Expect::Err(Reject::InvalidFiatCurrency),
        },
        NewCase {
            name: "no payment method",
            request: || NewOrder {
                payment_method: " ".to_owned(),
                ..sell_order(SATS, FIAT)
            },
            expect: Expect::Err(Reject::InvalidParameters),
        },
        NewCase {
            name: "a negative amount",
            request: || sell_order(-1, FIAT),
            expect: Expect::Err(Reject::InvalidAmount),
        },
        NewCase {
            name: "an amount under the node's minimum",
            request: || sell_order(99, FIAT),
            expect: Expect::Err(Reject::OutOfRangeSatsAmount),
        },
        NewCase {
            name: "a market-price order without a price",
            request: || sell_order(0, FIAT),
            expect: Expect::Err(Reject::PriceTooStale),
        },
        NewCase {
            name: "a fixed amount with a premium",
            request: || NewOrder {
                premium: 5,
                ..sell_order(SATS, FIAT)
            },
            expect: Expect::Err(Reject::InvalidParameters),
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let got = machine::new_order(&user(&w.seller), &(case.request)(), &w.env(0));
        if let Some(why) = check(&w, None, &got, &case.expect) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
