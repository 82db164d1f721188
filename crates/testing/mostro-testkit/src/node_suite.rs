//! Lightning node conformance suite: the behaviour every [`LightningNode`] must show, run
//! against [`FakeNode`] and against every adapter (LND through its simulator, CLN, ...).
//!
//! The harness gives the node under test and a [`Ledger`]: the wallet, fault and chain surface
//! the checks drive (a seller paying a hold invoice, a buyer issuing an invoice, mining,
//! injected failures). For a simulator the ledger *is* the node's state. For a real regtest
//! node a harness would implement the same surface with other means (a second node paying
//! and issuing invoices, `bitcoin-cli generatetoaddress`, stopping the node); the checks that
//! need faults cannot run there, and such a harness should expose only the checks it can
//! drive (see `docs/lnd.md`).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a failed check is a panic with a message"
)]

use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use mostro_core::machine::PayOutcome;
use mostro_core::ports::{
    HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnErrorKind, Network, NodeEvent,
    PayRequest,
};
use mostro_core::types::{PaymentHash, Preimage, Sats};

use crate::fakes::{FakeNode, ManualClock};
use crate::ledger::{self, Faults, Ledger};

/// What the suite needs from a backend.
#[async_trait]
pub trait NodeHarness: Send + Sync {
    /// The node under test.
    fn node(&self) -> Arc<dyn LightningNode>;
    /// The ledger behind it (wallets, faults, chain).
    fn ledger(&self) -> Ledger;
    /// Waits a little for asynchronous effects to reach the node under test (a wire hop,
    /// a poll). Also the unit of the suite's bounded waits. Instant for in-memory nodes.
    async fn settle_time(&self) {}
}

/// [`FakeNode`] as a harness.
#[derive(Debug)]
pub struct FakeNodeHarness {
    node: Arc<FakeNode>,
}

impl FakeNodeHarness {
    /// A fresh regtest ledger and node.
    pub fn new() -> Self {
        let clock = Arc::new(ManualClock::new(mostro_core::types::Timestamp(
            1_800_000_000,
        )));
        let node = Arc::new(FakeNode::new(Ledger::new(Network::Regtest, clock)));
        FakeNodeHarness { node }
    }
}

impl Default for FakeNodeHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl NodeHarness for FakeNodeHarness {
    fn node(&self) -> Arc<dyn LightningNode> {
        self.node.clone()
    }

    fn ledger(&self) -> Ledger {
        self.node.ledger().clone()
    }
}

/// Bound on waits, in [`NodeHarness::settle_time`] units.
const MAX_WAITS: u32 = 100;

fn kind<T: std::fmt::Debug>(r: Result<T, LnError>, what: &str) -> LnErrorKind {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e.kind,
    }
}

fn ok<T>(r: Result<T, LnError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A preimage unique to a check (`tag`) and a run (`salt`), so the suite can run twice on
/// one node.
fn preimage(tag: u8, salt: u8) -> Preimage {
    let mut p = [tag; 32];
    p[0] = salt;
    p[1] = 0xA5;
    Preimage(p)
}

fn hold_req(pre: &Preimage, amount: u64, cltv: u32) -> HoldInvoiceRequest {
    HoldInvoiceRequest {
        hash: pre.hash(),
        amount: Sats(amount),
        expiry_secs: 3600,
        cltv_delta: cltv,
        memo: "mostro conformance".to_owned(),
    }
}

/// Waits (bounded) until `lookup` reports `want`.
async fn wait_state(
    h: &dyn NodeHarness,
    hash: &PaymentHash,
    want: impl Fn(&HoldInvoiceState) -> bool,
) -> HoldInvoiceState {
    let node = h.node();
    let mut last = None;
    for _ in 0..MAX_WAITS {
        let st = ok(node.lookup_hold_invoice(hash).await, "lookup");
        if want(&st) {
            return st;
        }
        last = Some(st);
        h.settle_time().await;
    }
    panic!("state never reached; last {last:?}");
}

/// Waits (bounded) for an event matching `want`, skipping others.
async fn wait_event(h: &dyn NodeHarness, want: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
    let node = h.node();
    let mut misses = 0;
    let mut seen = 0usize;
    loop {
        let next = node.next_event().fuse();
        let tick = h.settle_time().fuse();
        futures::pin_mut!(next, tick);
        futures::select_biased! {
            ev = next => {
                let ev = ok(ev, "next_event");
                if want(&ev) {
                    return ev;
                }
                seen += 1;
                if seen > 10_000 {
                    panic!("no matching event among {seen} events");
                }
            },
            () = tick => {
                misses += 1;
                if misses > MAX_WAITS {
                    panic!("no matching event within the bounded wait");
                }
            },
        }
    }
}

/// Runs every check. Each check uses its own hashes, and the run's `salt` keeps them apart
/// from earlier runs on the same node.
pub async fn run_all(h: &dyn NodeHarness) {
    let salt = u8::try_from(h.ledger().holds().len() % 251).unwrap_or(0);
    hold_create_idempotent(h, salt).await;
    hold_settle(h, salt).await;
    hold_cancel_open(h, salt).await;
    hold_cancel_accepted_refunds(h, salt).await;
    unknown_hash(h).await;
    event_on_accept(h, salt).await;
    cltv_auto_cancel(h, salt).await;
    pay_once(h).await;
    pay_failure_then_retry(h).await;
    pay_hung(h).await;
    payment_status_record(h).await;
    starting_up_is_no_answer(h).await;
    ambiguous_pay_error(h).await;
    decode_checks(h).await;
    info_and_mining(h).await;
    unreachable(h).await;
}

/// `create_hold_invoice` is idempotent; another amount is a conflict; the BOLT11 is real.
pub async fn hold_create_idempotent(h: &dyn NodeHarness, salt: u8) {
    let node = h.node();
    let pre = preimage(1, salt);
    let req = hold_req(&pre, 10_000, 144);
    let b1 = ok(node.create_hold_invoice(&req).await, "create");
    let b2 = ok(node.create_hold_invoice(&req).await, "create again");
    assert_eq!(b1, b2, "create_hold_invoice must be idempotent");
    let mut other = req.clone();
    other.amount = Sats(10_001);
    assert_eq!(
        kind(
            node.create_hold_invoice(&other).await,
            "create with another amount"
        ),
        LnErrorKind::Conflict
    );
    let d = ledger::decode_bolt11(&b1).expect("real BOLT11");
    assert_eq!(d.hash, pre.hash());
    assert_eq!(d.amount, Some(Sats(10_000)));
    assert_eq!(d.network, h.ledger().network());
    assert_eq!(
        ok(node.lookup_hold_invoice(&pre.hash()).await, "lookup"),
        HoldInvoiceState::Open
    );
}

/// Accept, settle, settle again, cancel after settle.
pub async fn hold_settle(h: &dyn NodeHarness, salt: u8) {
    let node = h.node();
    let l = h.ledger();
    let pre = preimage(2, salt);
    let b = ok(
        node.create_hold_invoice(&hold_req(&pre, 20_000, 144)).await,
        "create",
    );
    assert_eq!(
        kind(node.settle_hold_invoice(&pre).await, "settle open"),
        LnErrorKind::Other,
        "settling an open invoice fails"
    );
    let height = l.height();
    ok(l.pay_hold("seller", &b), "seller pays");
    let st = wait_state(h, &pre.hash(), |s| {
        matches!(s, HoldInvoiceState::Accepted { .. })
    })
    .await;
    assert_eq!(
        st,
        HoldInvoiceState::Accepted {
            htlc_expiry: Some(height.plus(144))
        },
        "accepted with the HTLC expiry height"
    );
    ok(node.settle_hold_invoice(&pre).await, "settle");
    assert_eq!(
        ok(node.lookup_hold_invoice(&pre.hash()).await, "lookup"),
        HoldInvoiceState::Settled
    );
    ok(node.settle_hold_invoice(&pre).await, "settle again is Ok");
    assert_eq!(
        kind(
            node.cancel_hold_invoice(&pre.hash()).await,
            "cancel settled"
        ),
        LnErrorKind::AlreadySettled
    );
    let rec = l.hold(&pre.hash()).expect("record");
    assert_eq!(rec.settles, 1, "settled exactly once");
}

/// Cancel open, cancel again, settle after cancel.
pub async fn hold_cancel_open(h: &dyn NodeHarness, salt: u8) {
    let node = h.node();
    let pre = preimage(3, salt);
    ok(
        node.create_hold_invoice(&hold_req(&pre, 30_000, 144)).await,
        "create",
    );
    ok(node.cancel_hold_invoice(&pre.hash()).await, "cancel");
    assert_eq!(
        ok(node.lookup_hold_invoice(&pre.hash()).await, "lookup"),
        HoldInvoiceState::Canceled
    );
    ok(
        node.cancel_hold_invoice(&pre.hash()).await,
        "cancel again is Ok",
    );
    assert_eq!(
        kind(node.settle_hold_invoice(&pre).await, "settle canceled"),
        LnErrorKind::AlreadyCanceled
    );
    assert_eq!(h.ledger().hold(&pre.hash()).expect("record").cancels, 1);
}

/// Canceling an accepted invoice refunds the payer.
pub async fn hold_cancel_accepted_refunds(h: &dyn NodeHarness, salt: u8) {
    let node = h.node();
    let l = h.ledger();
    let pre = preimage(4, salt);
    let wallet = format!("seller-refund-{salt}");
    let b = ok(
        node.create_hold_invoice(&hold_req(&pre, 40_000, 144)).await,
        "create",
    );
    ok(l.pay_hold(&wallet, &b), "seller pays");
    assert_eq!(l.balance(&wallet), -40_000);
    wait_state(h, &pre.hash(), |s| {
        matches!(s, HoldInvoiceState::Accepted { .. })
    })
    .await;
    ok(
        node.cancel_hold_invoice(&pre.hash()).await,
        "cancel accepted",
    );
    assert_eq!(
        ok(node.lookup_hold_invoice(&pre.hash()).await, "lookup"),
        HoldInvoiceState::Canceled
    );
    assert_eq!(l.balance(&wallet), 0, "the payer is refunded");
}

/// Unknown hashes are `NotFound`.
pub async fn unknown_hash(h: &dyn NodeHarness) {
    let node = h.node();
    let pre = Preimage([0xEE; 32]);
    assert_eq!(
        kind(
            node.lookup_hold_invoice(&pre.hash()).await,
            "lookup unknown"
        ),
        LnErrorKind::NotFound
    );
    assert_eq!(
        kind(node.settle_hold_invoice(&pre).await, "settle unknown"),
        LnErrorKind::NotFound
    );
    assert_eq!(
        kind(
            node.cancel_hold_invoice(&pre.hash()).await,
            "cancel unknown"
        ),
        LnErrorKind::NotFound
    );
}

/// `next_event` reports the Accepted transition after a seller pays.
pub async fn event_on_accept(h: &dyn NodeHarness, salt: u8) {
    let node = h.node();
    let pre = preimage(5, salt);
    let hash = pre.hash();
    let b = ok(
        node.create_hold_invoice(&hold_req(&pre, 50_000, 144)).await,
        "create",
    );
    h.settle_time().await;
    ok(h.ledger().pay_hold("seller", &b), "seller pays");
    let ev = wait_event(h, |e| {
        matches!(e, NodeEvent::Hold { hash: x, state: HoldInvoiceState::Accepted { .. } } if *x == hash)
    })
    .await;
    let NodeEvent::Hold { state, .. } = ev else {
        panic!("not a hold event");
    };
    assert!(
        matches!(
            state,
            HoldInvoiceState::Accepted {
                htlc_expiry: Some(_)
            }
        ),
        "accepted event carries the HTLC expiry: {state:?}"
    );
    ok(node.cancel_hold_invoice(&hash).await, "cleanup");
}

/// An accepted hold is canceled by the node near its CLTV expiry, refunding the payer.
pub async fn cltv_auto_cancel(h: &dyn NodeHarness, salt: u8) {
    let node = h.node();
    let l = h.ledger();
    let pre = preimage(6, salt);
    let wallet = format!("seller-cltv-{salt}");
    let b = ok(
        node.create_hold_invoice(&hold_req(&pre, 60_000, 40)).await,
        "create",
    );
    ok(l.pay_hold(&wallet, &b), "seller pays");
    wait_state(h, &pre.hash(), |s| {
        matches!(s, HoldInvoiceState::Accepted { .. })
    })
    .await;
    l.mine(40 - ledger::HOLD_EXPIRY_DELTA);
    wait_state(h, &pre.hash(), |s| *s == HoldInvoiceState::Canceled).await;
    assert_eq!(l.balance(&wallet), 0, "the payer is refunded");
    assert_eq!(
        kind(
            node.settle_hold_invoice(&pre).await,
            "settle after auto-cancel"
        ),
        LnErrorKind::AlreadyCanceled
    );
}

fn pay_req(invoice: String, amount: u64, timeout_secs: u32) -> PayRequest {
    let d = ledger::decode_bolt11(&invoice).expect("wallet invoice decodes");
    PayRequest {
        invoice,
        hash: d.hash,
        amount: Sats(amount),
        fee_limit: Sats(10),
        timeout_secs,
        max_cltv: 576,
    }
}

/// A payment succeeds once; a repeat reports the same success without a second attempt.
pub async fn pay_once(h: &dyn NodeHarness) {
    let node = h.node();
    let l = h.ledger();
    let inv = ok(
        l.wallet_invoice("buyer-once", Some(Sats(700)), 3600),
        "invoice",
    );
    let req = pay_req(inv, 700, 10);
    let first = ok(node.pay(&req).await, "pay");
    assert!(matches!(first, PayOutcome::Succeeded { .. }), "{first:?}");
    let again = ok(node.pay(&req).await, "pay again");
    assert_eq!(again, first, "a repeat reports the same success");
    assert_eq!(l.attempts(&req.hash).len(), 1, "no second attempt");
    assert_eq!(l.balance("buyer-once") % 700, 0);
    assert!(l.balance("buyer-once") >= 700);
}

/// An injected route failure reports `Failed`; a new pay sends a new attempt that succeeds.
pub async fn pay_failure_then_retry(h: &dyn NodeHarness) {
    let node = h.node();
    let l = h.ledger();
    let inv = ok(
        l.wallet_invoice("buyer-retry", Some(Sats(800)), 3600),
        "invoice",
    );
    let req = pay_req(inv, 800, 10);
    l.set_faults(Faults {
        fail_payments: 1,
        ..l.faults()
    });
    let first = ok(node.pay(&req).await, "pay");
    assert!(matches!(first, PayOutcome::Failed { .. }), "{first:?}");
    let second = ok(node.pay(&req).await, "pay again");
    assert!(matches!(second, PayOutcome::Succeeded { .. }), "{second:?}");
    assert_eq!(l.attempts(&req.hash).len(), 2);
}

/// A hung payment is `InFlight`; a repeat does not send again; it completes later.
pub async fn pay_hung(h: &dyn NodeHarness) {
    let node = h.node();
    let l = h.ledger();
    let inv = ok(
        l.wallet_invoice("buyer-hung", Some(Sats(900)), 3600),
        "invoice",
    );
    let req = pay_req(inv, 900, 1);
    l.set_faults(Faults {
        hang_payments: true,
        ..l.faults()
    });
    assert_eq!(ok(node.pay(&req).await, "pay"), PayOutcome::InFlight);
    assert_eq!(ok(node.pay(&req).await, "pay again"), PayOutcome::InFlight);
    assert_eq!(
        l.attempts(&req.hash).len(),
        1,
        "never a second send in flight"
    );
    l.finish_hung(false);
    let mut out = PayOutcome::InFlight;
    for _ in 0..MAX_WAITS {
        out = ok(node.pay(&req).await, "pay after completion");
        if out != PayOutcome::InFlight {
            break;
        }
        h.settle_time().await;
    }
    assert!(matches!(out, PayOutcome::Succeeded { .. }), "{out:?}");
    assert_eq!(l.attempts(&req.hash).len(), 1);
}

/// `payment_status` answers from the node's record: nothing before a payment, in flight while
/// hung, failed when every attempt failed, succeeded after a success (even after failures).
pub async fn payment_status_record(h: &dyn NodeHarness) {
    use mostro_core::ports::PaymentStatus;
    let node = h.node();
    let l = h.ledger();
    let inv = ok(
        l.wallet_invoice("buyer-status", Some(Sats(950)), 3600),
        "invoice",
    );
    let req = pay_req(inv, 950, 1);
    assert_eq!(
        ok(node.payment_status(&req.hash).await, "status before"),
        PaymentStatus::NotFound,
        "no record before any payment"
    );
    l.set_faults(Faults {
        fail_payments: 1,
        ..l.faults()
    });
    let first = ok(node.pay(&req).await, "pay");
    assert!(matches!(first, PayOutcome::Failed { .. }), "{first:?}");
    let st = wait_status(h, &req.hash, |s| matches!(s, PaymentStatus::Failed { .. })).await;
    assert!(matches!(st, PaymentStatus::Failed { .. }), "{st:?}");
    l.set_faults(Faults {
        hang_payments: true,
        ..l.faults()
    });
    assert_eq!(ok(node.pay(&req).await, "pay again"), PayOutcome::InFlight);
    let st = wait_status(h, &req.hash, |s| *s == PaymentStatus::InFlight).await;
    assert_eq!(st, PaymentStatus::InFlight, "a hung attempt is in flight");
    l.finish_hung(false);
    let st = wait_status(h, &req.hash, |s| {
        matches!(s, PaymentStatus::Succeeded { .. })
    })
    .await;
    assert!(matches!(st, PaymentStatus::Succeeded { .. }), "{st:?}");
    assert_eq!(l.attempts(&req.hash).len(), 2);
}

async fn wait_status(
    h: &dyn NodeHarness,
    hash: &PaymentHash,
    done: impl Fn(&mostro_core::ports::PaymentStatus) -> bool,
) -> mostro_core::ports::PaymentStatus {
    let mut st = ok(h.node().payment_status(hash).await, "status");
    for _ in 0..MAX_WAITS {
        if done(&st) {
            break;
        }
        h.settle_time().await;
        st = ok(h.node().payment_status(hash).await, "status");
    }
    st
}

/// While the node starts up, no call reports a state or an outcome: each is an error (which
/// the engine treats as "unknown"), and nothing is paid.
pub async fn starting_up_is_no_answer(h: &dyn NodeHarness) {
    let node = h.node();
    let l = h.ledger();
    let inv = ok(
        l.wallet_invoice("buyer-startup", Some(Sats(960)), 3600),
        "invoice",
    );
    let req = pay_req(inv, 960, 1);
    l.set_faults(Faults {
        starting_up: true,
        ..l.faults()
    });
    let pay = node.pay(&req).await;
    let status = node.payment_status(&req.hash).await;
    let lookup = node.lookup_hold_invoice(&PaymentHash([0xee; 32])).await;
    l.set_faults(Faults {
        starting_up: false,
        ..l.faults()
    });
    assert!(pay.is_err(), "pay while starting: {pay:?}");
    assert!(status.is_err(), "status while starting: {status:?}");
    assert!(
        lookup
            .as_ref()
            .is_err_and(|e| e.kind != LnErrorKind::NotFound),
        "a lookup while starting is not a 'not found': {lookup:?}"
    );
    assert!(l.attempts(&req.hash).is_empty(), "nothing was sent");
}

/// A `pay` that really sent but answered an unrecognized error is not a failure: the node's
/// record (asked with `payment_status`) tells the truth.
pub async fn ambiguous_pay_error(h: &dyn NodeHarness) {
    use mostro_core::ports::PaymentStatus;
    let node = h.node();
    let l = h.ledger();
    let inv = ok(
        l.wallet_invoice("buyer-ambiguous", Some(Sats(970)), 3600),
        "invoice",
    );
    let req = pay_req(inv, 970, 1);
    l.set_faults(Faults {
        ambiguous_pays: 1,
        ..l.faults()
    });
    let r = node.pay(&req).await;
    l.set_faults(Faults {
        ambiguous_pays: 0,
        ..l.faults()
    });
    assert!(
        !matches!(r, Ok(PayOutcome::Failed { .. })),
        "an unrecognized error is never reported as a failure: {r:?}"
    );
    let st = wait_status(h, &req.hash, |s| {
        matches!(s, PaymentStatus::Succeeded { .. })
    })
    .await;
    assert!(matches!(st, PaymentStatus::Succeeded { .. }), "{st:?}");
}

/// Decoding: own network, another network, garbage.
pub async fn decode_checks(h: &dyn NodeHarness) {
    let node = h.node();
    let l = h.ledger();
    let inv = ok(
        l.wallet_invoice("buyer-decode", Some(Sats(1234)), 3600),
        "invoice",
    );
    let d = ok(node.decode_invoice(&inv).await, "decode");
    assert_eq!(d.amount, Some(Sats(1234)));
    assert_eq!(d.network, l.network());
    assert_eq!(d.hash, ledger::decode_bolt11(&inv).expect("decodes").hash);
    let other_net = if l.network() == Network::Mainnet {
        Network::Testnet
    } else {
        Network::Mainnet
    };
    let foreign = ok(
        l.wallet_invoice_on("buyer-decode", Some(Sats(1)), 3600, Some(other_net)),
        "foreign invoice",
    );
    // Either the network is reported (the caller compares) or refused with WrongNetwork.
    match node.decode_invoice(&foreign).await {
        Ok(d) => assert_eq!(d.network, other_net),
        Err(e) => assert_eq!(e.kind, LnErrorKind::WrongNetwork, "{e}"),
    }
    assert_eq!(
        kind(node.decode_invoice("lnbcrt1notaninvoice").await, "garbage"),
        LnErrorKind::InvalidInvoice
    );
    assert_eq!(
        kind(node.decode_invoice("").await, "empty"),
        LnErrorKind::InvalidInvoice
    );
}

/// `info` reports the network and height; mining advances the height.
pub async fn info_and_mining(h: &dyn NodeHarness) {
    let node = h.node();
    let l = h.ledger();
    let i = ok(node.info().await, "info");
    assert_eq!(i.network, l.network());
    assert_eq!(i.block_height, l.height());
    assert!(!i.pubkey.is_empty());
    // What the info event publishes as lnd_uris / lnd_chains / lnd_commit_hash, through the
    // adapter's wire (Core Lightning has no commit of its own to report).
    let facts = ok(l.info(), "ledger info");
    assert_eq!(i.uris, facts.uris, "uris");
    assert_eq!(i.chains, ["bitcoin"], "chains");
    assert!(
        i.commit_hash == facts.commit_hash || i.commit_hash.is_empty(),
        "commit hash {:?}",
        i.commit_hash
    );
    l.mine(3);
    let i2 = ok(node.info().await, "info after mining");
    assert_eq!(i2.block_height, i.block_height.plus(3));
}

/// A node that is down reports `Unreachable`, and works again once it is back.
pub async fn unreachable(h: &dyn NodeHarness) {
    let node = h.node();
    let l = h.ledger();
    l.set_unreachable(true);
    let r = node.info().await;
    l.set_unreachable(false);
    assert_eq!(kind(r, "info while down"), LnErrorKind::Unreachable);
    ok(node.info().await, "info when back");
}
