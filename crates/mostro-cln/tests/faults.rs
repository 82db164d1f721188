//! Adapter behaviour under faults and plugin variants, against `cln-sim`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed expectation is a panic with a message"
)]

mod common;

use std::time::Duration;

use mostro_cln::{ClnConfig, ClnNode, HoldPlugin};
use mostro_cln_sim::{HoldPlugin as SimPlugin, RepeatPay};
use mostro_core::machine::PayOutcome;
use mostro_core::ports::{
    HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnErrorKind, Network, NodeEvent,
    PayRequest, PaymentStatus,
};
use mostro_core::types::{PaymentHash, Preimage, Sats};
use mostro_testkit::Faults;
use mostro_testkit::ledger::decode_bolt11;

fn hold(pre: &Preimage, amount: u64) -> HoldInvoiceRequest {
    HoldInvoiceRequest {
        hash: pre.hash(),
        amount: Sats(amount),
        expiry_secs: 3600,
        cltv_delta: 144,
        memo: "faults".into(),
    }
}

/// The next hold event for `hash` matching `want`, within `secs`.
async fn hold_event(
    node: &ClnNode,
    hash: PaymentHash,
    want: impl Fn(&HoldInvoiceState) -> bool,
    secs: u64,
) -> HoldInvoiceState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, node.next_event())
            .await
            .expect("event within the deadline")
            .expect("event");
        if let NodeEvent::Hold { hash: h, state } = ev
            && h == hash
            && want(&state)
        {
            return state;
        }
    }
}

#[tokio::test]
async fn no_plugin_refuses_to_start_naming_what_to_install() {
    let env = common::sim(SimPlugin::None, Network::Regtest).await;
    let err = ClnNode::connect(common::config(&env)).await.unwrap_err();
    assert_eq!(err.kind, LnErrorKind::Other);
    assert!(
        err.message
            .contains("https://github.com/BoltzExchange/hold"),
        "{err}"
    );
    assert!(
        err.message
            .contains("https://github.com/daywalker90/holdinvoice"),
        "{err}"
    );
    assert!(err.message.contains("no hold-invoice plugin"), "{err}");
}

#[tokio::test]
async fn missing_socket_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ClnConfig::new(dir.path().join("lightning-rpc"), Network::Regtest);
    cfg.call_timeout = Duration::from_secs(1);
    let err = ClnNode::connect(cfg).await.unwrap_err();
    assert_eq!(err.kind, LnErrorKind::Unreachable, "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn wrong_network_refuses_to_start() {
    let env = common::sim(SimPlugin::Boltz, Network::Mainnet).await;
    let err = ClnNode::connect(common::config(&env)).await.unwrap_err();
    assert_eq!(err.kind, LnErrorKind::WrongNetwork, "{err}");
}

#[tokio::test]
async fn stopped_node_is_unreachable_then_back() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let node = common::node(&env).await;
    node.info().await.unwrap();
    env.sim.stop().await;
    assert_eq!(
        node.info().await.unwrap_err().kind,
        LnErrorKind::Unreachable
    );
    let pre = Preimage([3; 32]);
    assert_eq!(
        node.lookup_hold_invoice(&pre.hash())
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::Unreachable
    );
    env.sim.start().unwrap();
    node.info()
        .await
        .expect("works again on the restarted node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_during_an_outage_is_reported_after_restart() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let node = common::node(&env).await;
    let pre = Preimage([4; 32]);
    let bolt11 = node.create_hold_invoice(&hold(&pre, 5_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the poller has seen it open
    env.sim.stop().await;
    env.sim.ledger().pay_hold("seller", &bolt11).unwrap(); // while the node is "down"
    tokio::time::sleep(Duration::from_millis(200)).await; // polls fail meanwhile
    env.sim.start().unwrap();
    let st = hold_event(
        &node,
        pre.hash(),
        |s| matches!(s, HoldInvoiceState::Accepted { .. }),
        10,
    )
    .await;
    let height = env.sim.ledger().height();
    assert_eq!(
        st,
        HoldInvoiceState::Accepted {
            htlc_expiry: Some(height.plus(144))
        }
    );
    node.settle_hold_invoice(&pre).await.unwrap();
    hold_event(&node, pre.hash(), |s| *s == HoldInvoiceState::Settled, 10).await;
}

#[tokio::test]
async fn lookup_after_a_restart_of_the_adapter_reports_through_events() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let first = common::node(&env).await;
    let pre = Preimage([5; 32]);
    let bolt11 = first.create_hold_invoice(&hold(&pre, 6_000)).await.unwrap();
    drop(first);
    env.sim.ledger().pay_hold("seller", &bolt11).unwrap();
    // A new adapter (daemon restart) learns the state by lookup, then keeps watching.
    let node = common::node(&env).await;
    assert!(matches!(
        node.lookup_hold_invoice(&pre.hash()).await.unwrap(),
        HoldInvoiceState::Accepted { .. }
    ));
    hold_event(
        &node,
        pre.hash(),
        |s| matches!(s, HoldInvoiceState::Accepted { .. }),
        10,
    )
    .await;
    env.sim.ledger().cancel(&pre.hash()).unwrap();
    hold_event(&node, pre.hash(), |s| *s == HoldInvoiceState::Canceled, 10).await;
}

#[tokio::test]
async fn pay_is_never_sent_twice_for_an_in_flight_hash() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let node = common::node(&env).await;
    let l = env.sim.ledger();
    let inv = l.wallet_invoice("buyer", Some(Sats(1_500)), 3600).unwrap();
    let req = PayRequest {
        hash: decode_bolt11(&inv).unwrap().hash,
        invoice: inv,
        amount: Sats(1_500),
        fee_limit: Sats(10),
        timeout_secs: 1,
        max_cltv: 576,
    };
    l.set_faults(Faults {
        hang_payments: true,
        ..l.faults()
    });
    assert_eq!(node.pay(&req).await.unwrap(), PayOutcome::InFlight);
    assert_eq!(env.sim.calls("pay"), 1);
    // Concurrent and repeated attempts while in flight: answered from listpays.
    let (a, b) = tokio::join!(node.pay(&req), node.pay(&req));
    assert_eq!(a.unwrap(), PayOutcome::InFlight);
    assert_eq!(b.unwrap(), PayOutcome::InFlight);
    assert_eq!(
        env.sim.calls("pay"),
        1,
        "no second `pay` call while in flight"
    );
    assert!(env.sim.calls("listpays") >= 3);
    l.finish_hung(false);
    let done = node.pay(&req).await.unwrap();
    assert_eq!(done, PayOutcome::Succeeded { fee: Sats(1) });
    assert_eq!(node.pay(&req).await.unwrap(), done);
    assert_eq!(
        env.sim.calls("pay"),
        1,
        "no second `pay` call after success"
    );
    assert_eq!(l.attempts(&req.hash).len(), 1);
    assert_eq!(l.balance("buyer"), 1_500);
}

#[tokio::test]
async fn pay_errors_map_to_kinds() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let node = common::node(&env).await;
    let l = env.sim.ledger();
    let foreign = l
        .wallet_invoice_on("buyer", Some(Sats(10)), 3600, Some(Network::Mainnet))
        .unwrap();
    let req = PayRequest {
        hash: decode_bolt11(&foreign).unwrap().hash,
        invoice: foreign,
        amount: Sats(10),
        fee_limit: Sats(10),
        timeout_secs: 5,
        max_cltv: 576,
    };
    assert_eq!(
        node.pay(&req).await.unwrap_err().kind,
        LnErrorKind::WrongNetwork
    );
    let inv = l.wallet_invoice("buyer", Some(Sats(10)), 3600).unwrap();
    let mut req = PayRequest {
        hash: decode_bolt11(&inv).unwrap().hash,
        invoice: inv,
        amount: Sats(11),
        fee_limit: Sats(10),
        timeout_secs: 5,
        max_cltv: 576,
    };
    assert_eq!(
        node.pay(&req).await.unwrap_err().kind,
        LnErrorKind::InvalidInvoice
    );
    req.amount = Sats(10);
    req.fee_limit = Sats(0); // the sim's route costs 1 sat
    assert!(matches!(
        node.pay(&req).await.unwrap(),
        PayOutcome::Failed { .. }
    ));
    assert_eq!(
        env.sim.calls("pay"),
        1,
        "refused locally before calling `pay`"
    );
    // Amountless invoice: the amount is passed as amount_msat.
    let open = l.wallet_invoice("buyer2", None, 3600).unwrap();
    let req = PayRequest {
        hash: decode_bolt11(&open).unwrap().hash,
        invoice: open,
        amount: Sats(42),
        fee_limit: Sats(10),
        timeout_secs: 5,
        max_cltv: 576,
    };
    assert!(matches!(
        node.pay(&req).await.unwrap(),
        PayOutcome::Succeeded { .. }
    ));
    assert_eq!(l.balance("buyer2"), 42);
}

#[tokio::test]
async fn lost_reply_is_a_timeout_and_the_retry_is_idempotent() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let mut cfg = common::config(&env);
    cfg.call_timeout = Duration::from_millis(500);
    let node = ClnNode::connect(cfg).await.unwrap();
    let pre = Preimage([6; 32]);
    let l = env.sim.ledger();
    l.set_faults(Faults {
        lose_next_reply: true,
        ..l.faults()
    });
    let err = node
        .create_hold_invoice(&hold(&pre, 7_000))
        .await
        .unwrap_err();
    assert_eq!(err.kind, LnErrorKind::Timeout, "{err}");
    // The invoice was created; the retry returns it rather than failing on the duplicate.
    let b = node.create_hold_invoice(&hold(&pre, 7_000)).await.unwrap();
    assert_eq!(decode_bolt11(&b).unwrap().hash, pre.hash());
    assert_eq!(env.sim.calls("holdinvoice"), 1);
    l.set_faults(Faults {
        lose_next_reply: true,
        ..l.faults()
    });
    assert_eq!(
        node.cancel_hold_invoice(&pre.hash())
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::Timeout
    );
    node.cancel_hold_invoice(&pre.hash())
        .await
        .expect("cancel again is Ok");
    assert_eq!(l.hold(&pre.hash()).unwrap().cancels, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daywalker_plugin_mode() {
    let env = common::sim(SimPlugin::Daywalker, Network::Regtest).await;
    let node = common::node(&env).await;
    assert_eq!(node.hold_plugin(), HoldPlugin::Daywalker);
    assert!(!node.supports_hold_by_hash());
    // Creation for a caller-chosen hash is refused with a clear message.
    let err = node
        .create_hold_invoice(&hold(&Preimage([8; 32]), 1_000))
        .await
        .unwrap_err();
    assert_eq!(err.kind, LnErrorKind::Other);
    assert!(err.message.contains("BoltzExchange"), "{err}");
    // Invoices made through the plugin (as an operator would) are settled, canceled, looked
    // up and watched through the adapter.
    let mut rpc = cln_rpc::ClnRpc::new(env.sim.socket_path()).await.unwrap();
    let pre = Preimage([9; 32]);
    let made: serde_json::Value = rpc
        .call_raw(
            "holdinvoice",
            &serde_json::json!({"amount_msat": 9_000_000, "label": "dw-1", "description": "d",
                "preimage": pre.to_hex(), "cltv": 144}),
        )
        .await
        .unwrap();
    let bolt11 = made["bolt11"].as_str().unwrap().to_owned();
    assert_eq!(made["payment_hash"], serde_json::json!(pre.hash().to_hex()));
    assert_eq!(
        node.lookup_hold_invoice(&pre.hash()).await.unwrap(),
        HoldInvoiceState::Open
    );
    assert_eq!(
        node.settle_hold_invoice(&pre).await.unwrap_err().kind,
        LnErrorKind::Other,
        "settling an open invoice fails"
    );
    let height = env.sim.ledger().height();
    env.sim.ledger().pay_hold("seller", &bolt11).unwrap();
    let st = hold_event(
        &node,
        pre.hash(),
        |s| matches!(s, HoldInvoiceState::Accepted { .. }),
        10,
    )
    .await;
    assert_eq!(
        st,
        HoldInvoiceState::Accepted {
            htlc_expiry: Some(height.plus(144))
        }
    );
    node.settle_hold_invoice(&pre).await.unwrap();
    node.settle_hold_invoice(&pre)
        .await
        .expect("settle again is Ok");
    assert_eq!(
        node.cancel_hold_invoice(&pre.hash())
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::AlreadySettled
    );
    assert_eq!(env.sim.ledger().hold(&pre.hash()).unwrap().settles, 1);
    // Cancel path and its conflicts.
    let pre2 = Preimage([10; 32]);
    let _: serde_json::Value = rpc
        .call_raw(
            "holdinvoice",
            &serde_json::json!([5_000_000, "dw-2", "d", 3600, null, pre2.to_hex(), 144]),
        )
        .await
        .unwrap();
    node.cancel_hold_invoice(&pre2.hash()).await.unwrap();
    node.cancel_hold_invoice(&pre2.hash())
        .await
        .expect("cancel again is Ok");
    assert_eq!(
        node.settle_hold_invoice(&pre2).await.unwrap_err().kind,
        LnErrorKind::AlreadyCanceled
    );
    let unknown = Preimage([11; 32]);
    assert_eq!(
        node.lookup_hold_invoice(&unknown.hash())
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::NotFound
    );
    assert_eq!(
        node.settle_hold_invoice(&unknown).await.unwrap_err().kind,
        LnErrorKind::NotFound
    );
    assert_eq!(
        node.cancel_hold_invoice(&unknown.hash())
            .await
            .unwrap_err()
            .kind,
        LnErrorKind::NotFound
    );
}

fn pay_req(invoice: String, amount: u64) -> PayRequest {
    PayRequest {
        hash: decode_bolt11(&invoice).unwrap().hash,
        invoice,
        amount: Sats(amount),
        fee_limit: Sats(10),
        timeout_secs: 5,
        max_cltv: 576,
    }
}

/// Another client's payment lands between the adapter's `listpays` check and its `pay`, and
/// CLN answers the `pay` with an "already paid" error (201 from `sendpay`, 218 from `xpay`):
/// the adapter reports the success from the record, never a failure, and nothing is paid twice.
#[tokio::test]
async fn already_paid_errors_are_resolved_from_the_record() {
    for (mode, code) in [(RepeatPay::AlreadyUsed, 201), (RepeatPay::Xpay, 218)] {
        let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
        let node = common::node(&env).await;
        let l = env.sim.ledger();
        env.sim.set_repeat_pay(mode);
        let wallet = format!("buyer-{code}");
        let inv = l.wallet_invoice(&wallet, Some(Sats(1_200)), 3600).unwrap();
        let req = pay_req(inv, 1_200);
        env.sim.race_next_pay();
        let out = node.pay(&req).await.expect("resolved from the record");
        assert_eq!(out, PayOutcome::Succeeded { fee: Sats(1) }, "{code}");
        assert_eq!(env.sim.calls("pay"), 1, "{code}");
        assert_eq!(l.attempts(&req.hash).len(), 1, "{code}: paid once");
        assert_eq!(l.balance(&wallet), 1_200, "{code}");
        // A plain repeat is answered from the record without calling `pay` again.
        assert_eq!(node.pay(&req).await.unwrap(), out);
        assert_eq!(env.sim.calls("pay"), 1, "{code}");
    }
}

/// `pay` sends the payment for real but answers an uncategorized error (`-1`): the adapter
/// reports an `Err` (outcome unknown), never `Failed`, and `payment_status` then says
/// succeeded; a retry does not send again.
#[tokio::test]
async fn ambiguous_error_after_a_real_send_is_not_a_failure() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let node = common::node(&env).await;
    let l = env.sim.ledger();
    let inv = l
        .wallet_invoice("buyer-amb", Some(Sats(1_300)), 3600)
        .unwrap();
    let req = pay_req(inv, 1_300);
    l.set_faults(Faults {
        ambiguous_pays: 1,
        ..l.faults()
    });
    let err = node.pay(&req).await.expect_err("outcome unknown is an Err");
    assert_eq!(err.kind, LnErrorKind::Other, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.message.contains("error -1"), "{err}");
    assert_eq!(
        node.payment_status(&req.hash).await.unwrap(),
        PaymentStatus::Succeeded { fee: Sats(1) }
    );
    assert_eq!(
        node.pay(&req).await.unwrap(),
        PayOutcome::Succeeded { fee: Sats(1) }
    );
    assert_eq!(env.sim.calls("pay"), 1, "no second send");
    assert_eq!(l.balance("buyer-amb"), 1_300);
}

/// While the node is starting up every call is a transient error, never a status or an
/// outcome, and nothing is sent.
#[tokio::test]
async fn starting_up_gives_errors_not_statuses() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let node = common::node(&env).await;
    let l = env.sim.ledger();
    let inv = l
        .wallet_invoice("buyer-start", Some(Sats(1_400)), 3600)
        .unwrap();
    let req = pay_req(inv, 1_400);
    l.set_faults(Faults {
        starting_up: true,
        ..l.faults()
    });
    let status = node.payment_status(&req.hash).await;
    let pay = node.pay(&req).await;
    let lookup = node.lookup_hold_invoice(&req.hash).await;
    l.set_faults(Faults {
        starting_up: false,
        ..l.faults()
    });
    for (what, r) in [
        ("status", status.map(|s| format!("{s:?}"))),
        ("pay", pay.map(|o| format!("{o:?}"))),
        ("lookup", lookup.map(|s| format!("{s:?}"))),
    ] {
        let e = r.expect_err(what);
        assert_eq!(e.kind, LnErrorKind::Unreachable, "{what}: {e}");
        assert!(e.is_transient(), "{what}");
    }
    assert_eq!(env.sim.calls("pay"), 0, "nothing sent while starting");
    assert!(l.attempts(&req.hash).is_empty());
    // Once up, the record answers and the payment goes through.
    assert_eq!(
        node.payment_status(&req.hash).await.unwrap(),
        PaymentStatus::NotFound
    );
    assert!(matches!(
        node.pay(&req).await.unwrap(),
        PayOutcome::Succeeded { .. }
    ));
}

/// A lost `listpays` reply is a `Timeout`, not a status.
#[tokio::test]
async fn lost_status_reply_is_a_timeout() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let mut cfg = common::config(&env);
    cfg.call_timeout = Duration::from_millis(300);
    let node = ClnNode::connect(cfg).await.unwrap();
    let l = env.sim.ledger();
    l.set_faults(Faults {
        lose_status_replies: 1,
        ..l.faults()
    });
    let e = node
        .payment_status(&PaymentHash([7; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, LnErrorKind::Timeout, "{e}");
    assert_eq!(
        node.payment_status(&PaymentHash([7; 32])).await.unwrap(),
        PaymentStatus::NotFound
    );
}

/// `max_cltv` reaches CLN as `maxdelay`, and a bound below the invoice's final CLTV fails
/// the route (nothing sent) rather than being ignored.
#[tokio::test]
async fn maxdelay_is_passed() {
    let env = common::sim(SimPlugin::Boltz, Network::Regtest).await;
    let node = common::node(&env).await;
    let l = env.sim.ledger();
    let inv = l
        .wallet_invoice("buyer-cltv", Some(Sats(1_500)), 3600)
        .unwrap();
    let mut req = pay_req(inv, 1_500);
    req.max_cltv = 10; // the wallet invoice asks for a final CLTV of 18
    let out = node.pay(&req).await.unwrap();
    assert!(matches!(out, PayOutcome::Failed { .. }), "{out:?}");
    assert!(l.attempts(&req.hash).is_empty(), "nothing was sent");
    req.max_cltv = 333;
    assert!(matches!(
        node.pay(&req).await.unwrap(),
        PayOutcome::Succeeded { .. }
    ));
    assert_eq!(env.sim.pay_maxdelays(), vec![Some(10), Some(333)]);
    req.max_cltv = 0;
    assert!(node.pay(&req).await.is_err(), "a zero bound is refused");
}
