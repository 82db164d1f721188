//! The simulator's wire shapes parse with `cln-rpc`'s own typed models, and CLN's framing and
//! error objects come through its codec unchanged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failed expectation is a panic with a message"
)]

use std::sync::Arc;

use cln_rpc::ClnRpc;
#[allow(deprecated, reason = "cln-rpc marks the pay request fields deprecated")]
use cln_rpc::model::requests::{
    DecodeRequest, GetinfoRequest, HelpRequest, ListpaysRequest, ListsendpaysRequest, PayRequest,
};
use mostro_cln_sim::{ClnSim, HoldPlugin, codes};
use mostro_core::ports::Network;
use mostro_core::types::{Preimage, Sats, Timestamp};
use mostro_testkit::{Ledger, ManualClock};
use serde_json::{Value, json};

async fn sim(plugin: HoldPlugin) -> (tempfile::TempDir, ClnSim) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000)));
    let ledger = Ledger::new(Network::Regtest, clock);
    let sim = ClnSim::start_in(dir.path(), ledger, plugin).await.unwrap();
    (dir, sim)
}

#[tokio::test]
#[allow(deprecated, reason = "cln-rpc marks the pay request fields deprecated")]
async fn typed_models_parse_the_sim_results() {
    let (_d, sim) = sim(HoldPlugin::Boltz).await;
    let mut rpc = ClnRpc::new(sim.socket_path()).await.unwrap();
    let info = rpc.call_typed(&GetinfoRequest {}).await.unwrap();
    assert_eq!(info.network, "regtest");
    assert_eq!(info.blockheight, 100);
    let help = rpc
        .call_typed(&HelpRequest { command: None })
        .await
        .unwrap();
    assert!(
        help.help
            .iter()
            .any(|h| h.command.starts_with("listholdinvoices"))
    );

    let inv = sim
        .ledger()
        .wallet_invoice("buyer", Some(Sats(2_000)), 3600)
        .unwrap();
    let d = rpc
        .call_typed(&DecodeRequest {
            string: inv.clone(),
        })
        .await
        .unwrap();
    assert_eq!(d.amount_msat.map(|a| a.msat()), Some(2_000_000));
    assert!(d.valid);

    let paid = rpc
        .call_typed(&PayRequest {
            bolt11: inv.clone(),
            amount_msat: None,
            description: None,
            exemptfee: None,
            label: None,
            localinvreqid: None,
            maxdelay: None,
            maxfee: Some(cln_rpc::primitives::Amount::from_msat(10_000)),
            maxfeepercent: None,
            partial_msat: None,
            retry_for: Some(5),
            riskfactor: None,
            exclude: None,
        })
        .await
        .unwrap();
    assert_eq!(paid.amount_sent_msat.msat(), 2_001_000);

    let pays = rpc
        .call_typed(&ListpaysRequest {
            bolt11: Some(inv.clone()),
            index: None,
            limit: None,
            payment_hash: None,
            start: None,
            status: None,
        })
        .await
        .unwrap();
    assert_eq!(pays.pays.len(), 1);
    let sendpays = rpc
        .call_typed(&ListsendpaysRequest {
            bolt11: None,
            index: None,
            limit: None,
            payment_hash: Some(paid.payment_hash),
            start: None,
            status: None,
        })
        .await
        .unwrap();
    assert_eq!(sendpays.payments.len(), 1);
}

#[tokio::test]
async fn errors_and_plugin_methods_on_the_wire() {
    let (_d, sim) = sim(HoldPlugin::Boltz).await;
    let mut rpc = ClnRpc::new(sim.socket_path()).await.unwrap();
    let e = rpc
        .call_raw::<Value, _>("nosuch", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        Some(i32::try_from(codes::METHOD_NOT_FOUND).unwrap())
    );
    let pre = Preimage([1; 32]);
    // Boltz: positional parameters, amount in msat.
    let r: Value = rpc
        .call_raw("holdinvoice", &json!([pre.hash().to_hex(), 3_000_000]))
        .await
        .unwrap();
    assert!(r["bolt11"].as_str().unwrap().starts_with("lnbcrt30u1"));
    let e = rpc
        .call_raw::<Value, _>("holdinvoice", &json!([pre.hash().to_hex(), 3_000_000]))
        .await
        .unwrap_err();
    assert_eq!(e.code, Some(-32600));
    let l: Value = rpc
        .call_raw("listholdinvoices", &json!([pre.hash().to_hex()]))
        .await
        .unwrap();
    assert_eq!(l["holdinvoices"][0]["state"], "unpaid");
    let s: Value = rpc
        .call_raw("cancelholdinvoice", &json!([pre.hash().to_hex()]))
        .await
        .unwrap();
    assert_eq!(s, json!({}));
    assert_eq!(sim.calls("holdinvoice"), 2);

    // Without a plugin the hold methods are unknown commands.
    let (_d2, none) = self::sim(HoldPlugin::None).await;
    let mut rpc = ClnRpc::new(none.socket_path()).await.unwrap();
    let e = rpc
        .call_raw::<Value, _>("holdinvoice", &json!([pre.hash().to_hex(), 1000]))
        .await
        .unwrap_err();
    assert_eq!(e.code, Some(-32601));
}

#[tokio::test]
async fn restart_on_the_same_socket() {
    let (_d, sim) = sim(HoldPlugin::Boltz).await;
    let mut rpc = ClnRpc::new(sim.socket_path()).await.unwrap();
    let _: Value = rpc.call_raw("getinfo", &json!({})).await.unwrap();
    sim.stop().await;
    assert!(!sim.is_running());
    assert!(
        rpc.call_raw::<Value, _>("getinfo", &json!({}))
            .await
            .is_err()
    );
    assert!(ClnRpc::new(sim.socket_path()).await.is_err());
    sim.start().unwrap();
    let mut rpc = ClnRpc::new(sim.socket_path()).await.unwrap();
    let _: Value = rpc.call_raw("getinfo", &json!({})).await.unwrap();
}

#[tokio::test]
async fn starting_up_ambiguous_pays_and_maxdelay_on_the_wire() {
    use mostro_testkit::Faults;
    let (_d, sim) = sim(HoldPlugin::Boltz).await;
    let mut rpc = ClnRpc::new(sim.socket_path()).await.unwrap();
    let l = sim.ledger();
    let inv = l.wallet_invoice("buyer", Some(Sats(3_000)), 3600).unwrap();
    l.set_faults(Faults {
        starting_up: true,
        ..l.faults()
    });
    for (method, code) in [
        ("getinfo", codes::LIGHTNINGD),
        ("listsendpays", codes::LIGHTNINGD),
        ("listpays", codes::METHOD_NOT_FOUND),
        ("listholdinvoices", codes::METHOD_NOT_FOUND),
        ("pay", codes::METHOD_NOT_FOUND),
    ] {
        let e = rpc
            .call_raw::<Value, _>(method, &json!({"bolt11": inv}))
            .await
            .unwrap_err();
        assert_eq!(e.code, Some(i32::try_from(code).unwrap()), "{method}");
    }
    assert!(sim.pay_maxdelays().is_empty(), "pay was not handled");
    l.set_faults(Faults {
        starting_up: false,
        ambiguous_pays: 1,
        ..l.faults()
    });
    // Named `maxdelay`, and the position CLN gives it (6).
    let e = rpc
        .call_raw::<Value, _>("pay", &json!({"bolt11": inv, "maxdelay": 144}))
        .await
        .unwrap_err();
    assert_eq!(e.code, Some(-1), "uncategorized: {}", e.message);
    let pays: Value = rpc
        .call_raw("listpays", &json!({"bolt11": inv}))
        .await
        .unwrap();
    assert_eq!(pays["pays"][0]["status"], "complete", "{pays}");
    let again: Value = rpc
        .call_raw("pay", &json!([inv, null, null, null, null, null, 200]))
        .await
        .unwrap();
    assert_eq!(again["status"], "complete");
    assert_eq!(sim.pay_maxdelays(), vec![Some(144), Some(200)]);
    assert_eq!(
        l.attempts(&mostro_testkit::ledger::decode_bolt11(&inv).unwrap().hash)
            .len(),
        1
    );
}
