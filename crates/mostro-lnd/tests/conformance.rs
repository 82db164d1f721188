//! `LndNode` against the LND-protocol simulator: the shared conformance suite plus wire faults
//! (wrong certificate, bad macaroon, unreachable port, dropped streams, node restart, lost reply).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mostro_core::ports::{
    HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnErrorKind, Network, NodeEvent,
};
use mostro_core::types::{Preimage, Sats, Timestamp};
use mostro_lnd::{LndConfig, LndNode};
use mostro_lnd_sim::LndSim;
use mostro_testkit::node_suite::{NodeHarness, run_all};
use mostro_testkit::{Faults, Ledger, ManualClock};
use tempfile::TempDir;

struct Harness {
    sim: LndSim,
    node: Arc<LndNode>,
    _dir: TempDir,
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

/// A long poll interval by default: invoice transitions must then come from the streams
/// (and re-subscription), not from the safety-net lookups.
fn config(sim: &LndSim) -> LndConfig {
    let mut cfg = LndConfig::new(sim.host(), sim.cert_path(), sim.macaroon_path());
    cfg.call_timeout = Duration::from_secs(5);
    cfg.poll_interval = Duration::from_secs(60);
    cfg
}

async fn harness() -> Harness {
    harness_polling(Duration::from_secs(60)).await
}

async fn harness_polling(poll: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(Network::Regtest, Arc::new(ManualClock::new(now())));
    let sim = LndSim::start(ledger, dir.path(), 0).await.unwrap();
    let mut cfg = config(&sim);
    cfg.poll_interval = poll;
    let node = Arc::new(LndNode::connect(cfg).await.unwrap());
    Harness {
        sim,
        node,
        _dir: dir,
    }
}

#[async_trait]
impl NodeHarness for Harness {
    fn node(&self) -> Arc<dyn LightningNode> {
        self.node.clone()
    }

    fn ledger(&self) -> Ledger {
        self.sim.ledger().clone()
    }

    async fn settle_time(&self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hold(pre: &Preimage, amount: u64) -> HoldInvoiceRequest {
    HoldInvoiceRequest {
        hash: pre.hash(),
        amount: Sats(amount),
        expiry_secs: 3600,
        cltv_delta: 144,
        memo: "fault test".into(),
    }
}

/// Waits up to 10 s for the Accepted event of `pre`'s hash.
async fn accepted_event(node: &LndNode, pre: &Preimage) {
    let hash = pre.hash();
    let wait = async {
        loop {
            match node.next_event().await.unwrap() {
                NodeEvent::Hold {
                    hash: h,
                    state:
                        HoldInvoiceState::Accepted {
                            htlc_expiry: Some(_),
                        },
                } if h == hash => return,
                _ => {},
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the Accepted transition is reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lnd_node_passes_the_suite_against_the_simulator() {
    let h = harness().await;
    tokio::time::timeout(Duration::from_secs(120), run_all(&h))
        .await
        .expect("suite finishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificate_is_an_auth_error() {
    let h = harness().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = LndSim::start(h.sim.ledger().clone(), other_dir.path(), 0)
        .await
        .unwrap();
    let mut cfg = config(&h.sim);
    cfg.cert_path = other.cert_path().to_path_buf();
    let node = LndNode::connect(cfg).await.unwrap();
    let e = node.info().await.unwrap_err();
    eprintln!("wrong certificate: {e}");
    assert_eq!(e.kind, LnErrorKind::Auth, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_macaroon_is_an_auth_error() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let mac = dir.path().join("bad.macaroon");
    std::fs::write(&mac, b"not the macaroon").unwrap();
    let mut cfg = config(&h.sim);
    cfg.macaroon_path = mac;
    let node = LndNode::connect(cfg).await.unwrap();
    let e = node.info().await.unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Auth, "{e}");
    let e = node
        .create_hold_invoice(&hold(&Preimage([1; 32]), 1000))
        .await
        .unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Auth, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_fail_at_connect() {
    let h = harness().await;
    let mut cfg = config(&h.sim);
    cfg.cert_path = "/nonexistent/tls.cert".into();
    let e = LndNode::connect(cfg).await.unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Auth, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_is_unreachable() {
    let h = harness().await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let mut cfg = config(&h.sim);
    cfg.host = format!("https://127.0.0.1:{port}");
    let node = LndNode::connect(cfg).await.unwrap();
    let e = node.info().await.unwrap_err();
    eprintln!("unreachable: {e}");
    assert_eq!(e.kind, LnErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transition_during_a_dropped_stream_is_reported() {
    let h = harness().await;
    let pre = Preimage([0x31; 32]);
    let b = h.node.create_hold_invoice(&hold(&pre, 5000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // subscribed
    h.sim.drop_streams();
    // The seller pays while the watcher is disconnected (it waits >= 100 ms to re-subscribe).
    h.sim.ledger().pay_hold("seller", &b).unwrap();
    accepted_event(&h.node, &pre).await;
    assert_eq!(h.node.watched(), vec![pre.hash()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_restart_is_survived() {
    let h = harness().await;
    let pre = Preimage([0x32; 32]);
    let b = h.node.create_hold_invoice(&hold(&pre, 6000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.sim.stop().await;
    let e = h.node.info().await.unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Unreachable, "{e}");
    // A transition while the node is down, then the node comes back on the same port.
    h.sim.ledger().pay_hold("seller", &b).unwrap();
    h.sim.start_again().await.unwrap();
    accepted_event(&h.node, &pre).await;
    h.node.settle_hold_invoice(&pre).await.unwrap();
    assert_eq!(
        h.node.lookup_hold_invoice(&pre.hash()).await.unwrap(),
        HoldInvoiceState::Settled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_reply_then_retry_returns_the_same_invoice() {
    let h = harness().await;
    let pre = Preimage([0x33; 32]);
    h.sim.ledger().set_faults(Faults {
        lose_next_reply: true,
        ..Faults::default()
    });
    let e = h
        .node
        .create_hold_invoice(&hold(&pre, 7000))
        .await
        .unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Timeout, "{e}");
    let b = h.node.create_hold_invoice(&hold(&pre, 7000)).await.unwrap();
    assert_eq!(b, h.sim.ledger().hold(&pre.hash()).unwrap().bolt11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_events_follow_mining() {
    let h = harness_polling(Duration::from_millis(100)).await;
    let target = h.sim.ledger().height().plus(2);
    h.sim.ledger().mine(2);
    let wait = async {
        loop {
            if let NodeEvent::Block(b) = h.node.next_event().await.unwrap()
                && b == target
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("a Block event with the new height");
}

/// The suite's node-only checks against a real regtest LND (see docs/lnd.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a regtest lnd: MOSTRO_TEST_LND_HOST, _CERT, _MACAROON"]
async fn real_regtest_lnd_smoke() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let cfg = LndConfig::new(
        var("MOSTRO_TEST_LND_HOST"),
        var("MOSTRO_TEST_LND_CERT"),
        var("MOSTRO_TEST_LND_MACAROON"),
    );
    let node = LndNode::connect(cfg).await.unwrap();
    let info = node.info().await.unwrap();
    assert_eq!(info.network, Network::Regtest);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&now().0.to_le_bytes());
    let pre = Preimage(seed);
    let b1 = node.create_hold_invoice(&hold(&pre, 1000)).await.unwrap();
    assert_eq!(
        node.create_hold_invoice(&hold(&pre, 1000)).await.unwrap(),
        b1
    );
    assert_eq!(
        node.create_hold_invoice(&hold(&pre, 1001))
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::Conflict
    );
    let d = node.decode_invoice(&b1).await.unwrap();
    assert_eq!(d.hash, pre.hash());
    assert_eq!(
        node.lookup_hold_invoice(&pre.hash()).await.unwrap(),
        HoldInvoiceState::Open
    );
    node.cancel_hold_invoice(&pre.hash()).await.unwrap();
    node.cancel_hold_invoice(&pre.hash()).await.unwrap();
    assert_eq!(
        node.settle_hold_invoice(&pre).await.unwrap_err().kind,
        LnErrorKind::AlreadyCanceled
    );
    assert_eq!(
        node.lookup_hold_invoice(&Preimage([0xEE; 32]).hash())
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::NotFound
    );
    assert_eq!(
        node.decode_invoice("lnbcrt1garbage")
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::InvalidInvoice
    );
}
