//! The node conformance suite against `ClnNode` <-> `cln-sim` (BoltzExchange plugin mode), and
//! a smoke test against a real regtest CLN (ignored unless `MOSTRO_TEST_CLN_SOCKET` is set).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed expectation is a panic with a message"
)]

mod common;

use mostro_cln::{ClnConfig, ClnNode, HoldPlugin};
use mostro_core::ports::{HoldInvoiceRequest, HoldInvoiceState, LightningNode, Network};
use mostro_core::types::{Preimage, Sats};
use mostro_testkit::node_suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_cln_sim() {
    let h = common::ClnHarness::new().await;
    node_suite::run_all(&h).await;
    // Twice on the same node: every check stays idempotent across runs.
    node_suite::run_all(&h).await;
}

/// Against a real regtest lightningd with the BoltzExchange `hold` plugin:
/// `MOSTRO_TEST_CLN_SOCKET=~/.lightning/regtest/lightning-rpc cargo test -p mostro-cln
/// --test conformance -- --ignored`. Only what needs no second node: connect, info, create
/// (idempotent), lookup, cancel.
#[tokio::test]
#[ignore = "needs a regtest CLN with a hold plugin (MOSTRO_TEST_CLN_SOCKET)"]
async fn real_regtest_cln_smoke() {
    let Ok(socket) = std::env::var("MOSTRO_TEST_CLN_SOCKET") else {
        eprintln!("MOSTRO_TEST_CLN_SOCKET not set: skipped");
        return;
    };
    let node = ClnNode::connect(ClnConfig::new(socket, Network::Regtest))
        .await
        .expect("connects to the regtest node");
    let info = node.info().await.expect("info");
    assert_eq!(info.network, Network::Regtest);
    if node.hold_plugin() != HoldPlugin::Boltz {
        eprintln!("daywalker90 plugin: hold creation by hash is not possible, stopping here");
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut p = [7u8; 32];
    p[..16].copy_from_slice(&nanos.to_le_bytes());
    let pre = Preimage(p);
    let req = HoldInvoiceRequest {
        hash: pre.hash(),
        amount: Sats(1_000),
        expiry_secs: 600,
        cltv_delta: 144,
        memo: "mostro regtest smoke".into(),
    };
    let b1 = node.create_hold_invoice(&req).await.expect("create");
    assert_eq!(node.create_hold_invoice(&req).await.expect("again"), b1);
    assert_eq!(
        node.lookup_hold_invoice(&req.hash).await.expect("lookup"),
        HoldInvoiceState::Open
    );
    node.cancel_hold_invoice(&req.hash).await.expect("cancel");
    assert_eq!(
        node.lookup_hold_invoice(&req.hash).await.expect("lookup"),
        HoldInvoiceState::Canceled
    );
}
