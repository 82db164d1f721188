//! `LndNode` against the simulator's LND-like faults: the start-up phases, a restart while a
//! payment is in flight, an ambiguous pay answer, lost status replies, and `cltv_limit`. Also
//! the raw wire answers of the simulator (what LND itself sends), read with a plain client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use fedimint_tonic_lnd::tonic::Code;
use fedimint_tonic_lnd::{lnrpc, routerrpc};
use mostro_core::machine::PayOutcome;
use mostro_core::ports::{
    HoldInvoiceRequest, LightningNode, LnErrorKind, Network, PayRequest, PaymentStatus,
};
use mostro_core::types::{PaymentHash, Sats, Timestamp};
use mostro_lnd::{LndConfig, LndNode};
use mostro_lnd_sim::{
    LndSim, MSG_RPC_STARTING, MSG_WAITING_TO_START, MSG_WALLET_LOCKED, StartupPhase,
};
use mostro_testkit::ledger::{AttemptStatus, decode_bolt11};
use mostro_testkit::{Faults, Ledger, ManualClock};
use tempfile::TempDir;

struct H {
    sim: LndSim,
    node: LndNode,
    _dir: TempDir,
}

impl H {
    fn ledger(&self) -> &Ledger {
        self.sim.ledger()
    }

    fn faults(&self, f: impl FnOnce(&mut Faults)) {
        let mut cur = self.ledger().faults();
        f(&mut cur);
        self.ledger().set_faults(cur);
    }

    /// A plain LND client (no adapter logic) on the simulator.
    async fn raw(&self) -> fedimint_tonic_lnd::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        fedimint_tonic_lnd::connect(
            self.sim.host(),
            self.sim.cert_path().to_path_buf(),
            self.sim.macaroon_path().to_path_buf(),
        )
        .await
        .unwrap()
    }
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

async fn start() -> H {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(Network::Regtest, Arc::new(ManualClock::new(now())));
    let sim = LndSim::start(ledger, dir.path(), 0).await.unwrap();
    let mut cfg = LndConfig::new(sim.host(), sim.cert_path(), sim.macaroon_path());
    cfg.call_timeout = Duration::from_secs(5);
    cfg.poll_interval = Duration::from_secs(60);
    let node = LndNode::connect(cfg).await.unwrap();
    H {
        sim,
        node,
        _dir: dir,
    }
}

fn pay_req(invoice: String, amount: u64, timeout_secs: u32, max_cltv: u32) -> PayRequest {
    let d = decode_bolt11(&invoice).unwrap();
    PayRequest {
        invoice,
        hash: d.hash,
        amount: Sats(amount),
        fee_limit: Sats(10),
        timeout_secs,
        max_cltv,
    }
}

/// Polls `payment_status` (bounded: 10 s) until `done`.
async fn status_until(
    node: &LndNode,
    hash: &PaymentHash,
    done: impl Fn(&PaymentStatus) -> bool,
) -> PaymentStatus {
    let mut last = None;
    for _ in 0..200 {
        if let Ok(st) = node.payment_status(hash).await {
            if done(&st) {
                return st;
            }
            last = Some(st);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("status never reached; last {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_cltv_is_sent_as_cltv_limit_and_bounds_the_route() {
    let h = start().await;
    let inv = h
        .ledger()
        .wallet_invoice_full("buyer", Some(Sats(1000)), 3600, None, 40)
        .unwrap();
    let req = pay_req(inv, 1000, 5, 500);
    let out = h.node.pay(&req).await.unwrap();
    assert!(matches!(out, PayOutcome::Succeeded { .. }), "{out:?}");
    assert_eq!(h.sim.cltv_limits(), vec![500], "cltv_limit on the wire");
    assert_eq!(h.ledger().pay_requests().last().unwrap().max_cltv, 500);

    // A limit below the invoice's final CLTV: LND records the payment and fails it (no route).
    let inv = h
        .ledger()
        .wallet_invoice_full("buyer", Some(Sats(1100)), 3600, None, 144)
        .unwrap();
    let req = pay_req(inv, 1100, 5, 100);
    let out = h.node.pay(&req).await.unwrap();
    assert!(matches!(out, PayOutcome::Failed { .. }), "{out:?}");
    assert_eq!(h.sim.cltv_limits(), vec![500, 100]);
    assert!(matches!(
        h.node.payment_status(&req.hash).await.unwrap(),
        PaymentStatus::Failed { .. }
    ));
    assert_eq!(h.ledger().attempts(&req.hash).len(), 1);
    assert_eq!(h.ledger().invoice(&req.hash).unwrap().received, Sats::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_startup_phase_is_unreachable_and_does_nothing() {
    let h = start().await;
    let inv = h
        .ledger()
        .wallet_invoice("buyer", Some(Sats(1200)), 3600)
        .unwrap();
    let req = pay_req(inv, 1200, 2, 500);
    for (phase, lightning_msg, router_msg) in [
        (
            StartupPhase::WaitingToStart,
            MSG_WAITING_TO_START,
            MSG_WAITING_TO_START,
        ),
        (
            StartupPhase::WalletLocked,
            MSG_WALLET_LOCKED,
            MSG_WALLET_LOCKED,
        ),
        (
            StartupPhase::RpcStarting,
            MSG_RPC_STARTING,
            MSG_WAITING_TO_START,
        ),
    ] {
        h.sim.set_startup_phase(Some(phase));
        let info = h.node.info().await.unwrap_err();
        assert_eq!(info.kind, LnErrorKind::Unreachable, "{phase:?}: {info}");
        assert!(info.message.contains(lightning_msg), "{phase:?}: {info}");
        assert!(info.is_transient());
        let pay = h.node.pay(&req).await.unwrap_err();
        assert_eq!(pay.kind, LnErrorKind::Unreachable, "{phase:?}: {pay}");
        let st = h.node.payment_status(&req.hash).await.unwrap_err();
        assert_eq!(st.kind, LnErrorKind::Unreachable, "{phase:?}: {st}");
        assert!(st.message.contains(router_msg), "{phase:?}: {st}");
        let look = h
            .node
            .lookup_hold_invoice(&PaymentHash([0xab; 32]))
            .await
            .unwrap_err();
        assert_eq!(look.kind, LnErrorKind::Unreachable, "{phase:?}: {look}");
        let hold = h
            .node
            .create_hold_invoice(&HoldInvoiceRequest {
                hash: PaymentHash([0xac; 32]),
                amount: Sats(5000),
                expiry_secs: 3600,
                cltv_delta: 144,
                memo: "startup".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(hold.kind, LnErrorKind::Unreachable, "{phase:?}: {hold}");
    }
    assert!(h.ledger().holds().is_empty(), "no invoice was created");
    assert!(
        h.ledger().attempts(&req.hash).is_empty(),
        "nothing was sent"
    );
    assert!(
        h.sim.cltv_limits().is_empty(),
        "no SendPaymentV2 got through"
    );
    let refused = h.sim.refused_calls();
    assert!(refused.lightning >= 3 && refused.router >= 3, "{refused:?}");
    assert!(refused.invoices >= 3, "{refused:?}");
    h.sim.set_starting_up(false);
    assert_eq!(
        h.node.payment_status(&req.hash).await.unwrap(),
        PaymentStatus::NotFound,
        "once started, the true answer"
    );
    let out = h.node.pay(&req).await.unwrap();
    assert!(matches!(out, PayOutcome::Succeeded { .. }), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_starting_up_fault_is_answered_like_lnd() {
    let h = start().await;
    h.faults(|f| f.starting_up = true);
    let mut raw = h.raw().await;
    let e = raw
        .lightning()
        .get_info(lnrpc::GetInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    assert_eq!(e.message(), MSG_RPC_STARTING);
    let e = raw
        .router()
        .track_payment_v2(routerrpc::TrackPaymentRequest {
            payment_hash: vec![1; 32],
            no_inflight_updates: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "never NotFound while starting");
    assert_eq!(e.message(), MSG_WAITING_TO_START);
    h.faults(|f| f.starting_up = false);
    let e = raw
        .router()
        .track_payment_v2(routerrpc::TrackPaymentRequest {
            payment_hash: vec![1; 32],
            no_inflight_updates: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "payment isn't initiated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_a_payment_is_in_flight() {
    let h = start().await;
    let inv = h
        .ledger()
        .wallet_invoice("buyer", Some(Sats(1300)), 3600)
        .unwrap();
    let req = pay_req(inv, 1300, 1, 500);
    h.faults(|f| f.hang_payments = true);
    assert_eq!(h.node.pay(&req).await.unwrap(), PayOutcome::InFlight);
    assert_eq!(
        h.node.payment_status(&req.hash).await.unwrap(),
        PaymentStatus::InFlight
    );

    h.sim.restart_starting_up().await.unwrap();
    assert_eq!(h.sim.startup_phase(), Some(StartupPhase::WaitingToStart));
    let e = h.node.pay(&req).await.unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Unreachable, "{e}");
    let e = h.node.payment_status(&req.hash).await.unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Unreachable, "{e}");
    h.sim.set_startup_phase(Some(StartupPhase::RpcStarting));
    assert!(h.node.payment_status(&req.hash).await.is_err());

    // Back: the record survived the restart, and the hung payment completes.
    h.sim.set_starting_up(false);
    assert_eq!(
        h.node.payment_status(&req.hash).await.unwrap(),
        PaymentStatus::InFlight
    );
    assert_eq!(h.node.pay(&req).await.unwrap(), PayOutcome::InFlight);
    h.ledger().finish_hung(false);
    let st = status_until(&h.node, &req.hash, |s| {
        matches!(s, PaymentStatus::Succeeded { .. })
    })
    .await;
    assert_eq!(st, PaymentStatus::Succeeded { fee: Sats(1) });
    let out = h.node.pay(&req).await.unwrap();
    assert_eq!(out, PayOutcome::Succeeded { fee: Sats(1) });
    let atts = h.ledger().attempts(&req.hash);
    assert_eq!(atts.len(), 1, "paid once: {atts:?}");
    assert_eq!(h.ledger().invoice(&req.hash).unwrap().received, Sats(1300));
    assert_eq!(h.sim.cltv_limits().len(), 1, "one SendPaymentV2 in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_startup_ends_on_its_own_and_a_failed_payment_is_reported_failed() {
    let h = start().await;
    let inv = h
        .ledger()
        .wallet_invoice("buyer", Some(Sats(1400)), 3600)
        .unwrap();
    let req = pay_req(inv, 1400, 1, 500);
    h.faults(|f| f.hang_payments = true);
    assert_eq!(h.node.pay(&req).await.unwrap(), PayOutcome::InFlight);
    h.sim
        .restart_with_startup(Duration::from_millis(900))
        .await
        .unwrap();
    // Fails while the network resolves the hung payment as failed.
    h.ledger().finish_hung(true);
    let mut refused = 0;
    let st = loop {
        match h.node.payment_status(&req.hash).await {
            Ok(st) => break st,
            Err(e) => {
                assert_eq!(e.kind, LnErrorKind::Unreachable, "{e}");
                refused += 1;
            },
        }
        assert!(refused < 200, "the start-up never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused > 0, "the node was starting up for a while");
    assert_eq!(h.sim.startup_phase(), None);
    assert!(matches!(st, PaymentStatus::Failed { .. }), "{st:?}");
    assert_eq!(h.ledger().attempts(&req.hash).len(), 1);
    assert_eq!(
        h.ledger().attempts(&req.hash)[0].status,
        AttemptStatus::Failed("timeout (simulated)".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_pay_is_an_error_and_the_record_tells() {
    let h = start().await;
    let inv = h
        .ledger()
        .wallet_invoice("buyer", Some(Sats(1500)), 3600)
        .unwrap();
    let req = pay_req(inv, 1500, 2, 500);
    h.faults(|f| f.ambiguous_pays = 1);
    let e = h.node.pay(&req).await.unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Other, "{e}");
    assert!(!e.is_transient());
    assert_eq!(
        h.node.payment_status(&req.hash).await.unwrap(),
        PaymentStatus::Succeeded { fee: Sats(1) }
    );
    // A repeat does not send again.
    assert_eq!(
        h.node.pay(&req).await.unwrap(),
        PayOutcome::Succeeded { fee: Sats(1) }
    );
    assert_eq!(h.ledger().attempts(&req.hash).len(), 1);

    // On the wire: gRPC Unknown with a message nobody can recognize.
    let inv = h
        .ledger()
        .wallet_invoice("buyer", Some(Sats(1600)), 3600)
        .unwrap();
    h.faults(|f| f.ambiguous_pays = 1);
    let mut raw = h.raw().await;
    let e = raw
        .router()
        .send_payment_v2(routerrpc::SendPaymentRequest {
            payment_request: inv.clone(),
            fee_limit_sat: 10,
            timeout_seconds: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    let hash = decode_bolt11(&inv).unwrap().hash;
    assert_eq!(h.ledger().attempts(&hash).len(), 1, "the payment happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_payment_refusals_and_lost_status_replies() {
    let h = start().await;
    let inv = h
        .ledger()
        .wallet_invoice("buyer", Some(Sats(1700)), 3600)
        .unwrap();
    let req = pay_req(inv.clone(), 1700, 1, 500);
    h.faults(|f| f.hang_payments = true);
    assert_eq!(h.node.pay(&req).await.unwrap(), PayOutcome::InFlight);
    // LND's own refusal of a second send for the hash.
    let mut raw = h.raw().await;
    let e = raw
        .router()
        .send_payment_v2(routerrpc::SendPaymentRequest {
            payment_request: inv.clone(),
            fee_limit_sat: 10,
            timeout_seconds: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(e.message(), "payment is in transition");

    // A lost status reply is an error, never a status.
    h.faults(|f| f.lose_status_replies = 1);
    let e = h.node.payment_status(&req.hash).await.unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Timeout, "{e}");
    // ... and a pay that cannot read the record does not send.
    h.faults(|f| f.lose_status_replies = 1);
    assert!(h.node.pay(&req).await.is_err());
    assert_eq!(h.ledger().attempts(&req.hash).len(), 1);

    h.ledger().finish_hung(false);
    let e = raw
        .router()
        .send_payment_v2(routerrpc::SendPaymentRequest {
            payment_request: inv,
            fee_limit_sat: 10,
            timeout_seconds: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(e.message(), "invoice is already paid");
    assert_eq!(
        h.node.pay(&req).await.unwrap(),
        PayOutcome::Succeeded { fee: Sats(1) }
    );
    assert_eq!(h.ledger().attempts(&req.hash).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_without_inflight_updates_reports_only_the_end() {
    let h = start().await;
    let inv = h
        .ledger()
        .wallet_invoice("buyer", Some(Sats(1800)), 3600)
        .unwrap();
    let req = pay_req(inv, 1800, 1, 500);
    h.faults(|f| f.hang_payments = true);
    assert_eq!(h.node.pay(&req).await.unwrap(), PayOutcome::InFlight);
    let mut raw = h.raw().await;
    let mut s = raw
        .router()
        .track_payment_v2(routerrpc::TrackPaymentRequest {
            payment_hash: req.hash.0.to_vec(),
            no_inflight_updates: true,
        })
        .await
        .unwrap()
        .into_inner();
    // Nothing while in flight (this is why the adapter asks with in-flight updates).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.message())
            .await
            .is_err()
    );
    h.ledger().finish_hung(false);
    let p = tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(p.status, lnrpc::payment::PaymentStatus::Succeeded as i32);
}
