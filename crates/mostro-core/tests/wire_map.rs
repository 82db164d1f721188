//! `wire::map` against the protocol vectors: every client-to-node line maps to
//! the expected engine action, every notice the engine emits serializes to
//! the shape (and, where the inputs can be made equal, the exact bytes) of the
//! corresponding node-to-client line, and the drop cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use mostro_core::engine::{Action, NewOrderRequest};
use mostro_core::machine::{NewOrder, Notice, Notify, Reject};
use mostro_core::order::{
    Dispute, DisputeStatus, Hold, HoldState, Kind, NextTrade, Order, Party, Payout, PayoutState,
    Protocol, Role, Status,
};
use mostro_core::ports::{Solver, User};
use mostro_core::types::{EventId, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp};
use mostro_core::wire::map::{
    DropReason, Inbound, parse_pubkey, parse_solver, to_message, to_message_at, to_request,
};
use mostro_core::wire::{self, CantDoReason, Message};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/protocol/vectors"
);

fn read_lines(file: &str) -> Vec<Value> {
    let path = format!("{VECTORS}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn keys() -> Value {
    let path = format!("{VECTORS}/keys.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn key(label: &str) -> PubKey {
    keys()[label]["pubkey_hex"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn line<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no line {name}"))
}

fn json_of(line: &Value) -> String {
    serde_json::to_string(&line["json"]).unwrap()
}

fn msg_of(line: &Value) -> Message {
    Message::from_json(&json_of(line)).unwrap()
}

fn inbound() -> Inbound {
    Inbound {
        sender: key("client_trade"),
        identity: key("client_identity"),
        protocol: Protocol::V2,
        event_id: Some(EventId([9; 32])),
        signed: true,
    }
}

const ORDER_ID: &str = "308e1272-d5f4-47e6-bd97-3504baea9c23";
const DISPUTE_ID: &str = "d15b07e0-0000-4000-8000-000000000001";
const INVOICE: &str = "lnbcrt78510n1pj59wmepp50677g8tffdqa2p8882y0x6newny5vtz0hjuyngdwv226nanv4uzsdqqcqzzsxqyz5vqsp5skn973360gp4yhlpmefwvul5hs58lkkl3u3ujvt57elmp4zugp4q9qyyssqw4nzlr72w28k4waycf27qvgzc9sp79sqlw83j56txltz4va44j7jda23ydcujj9y5k6k0rn5ms84w8wmcmcyk5g3mhpqepf7envhdccp72nz6e";

fn oid(s: &str) -> OrderId {
    s.parse().unwrap()
}

fn party(label: &str, identity: &str, index: u32) -> Party {
    Party {
        trade_key: key(label),
        identity: key(identity),
        trade_index: index,
        protocol: Protocol::V2,
    }
}

/// The sell order of the vectors: maker = seller = `counterparty_trade` (full
/// privacy, index 1), taker = buyer = `client_trade` (reputation, index 7).
/// Amount 149 550 with a 450 fee per party, so amount + fee = 150 000 and
/// amount - fee = 149 100, the two values the vectors show.
fn sell_order(status: Status) -> Order {
    Order {
        id: oid(ORDER_ID),
        version: 3,
        kind: Kind::Sell,
        status,
        fiat_code: "EUR".into(),
        fiat_amount: 100,
        min_amount: None,
        max_amount: None,
        amount: Sats(149_550),
        premium: 0,
        price_from_api: false,
        payment_method: "SEPA".into(),
        fee: Sats(450),
        created_at: Timestamp(1_767_225_600),
        expires_at: Timestamp(1_767_312_000),
        taken_at: Some(Timestamp(1_767_225_900)),
        maker: party("counterparty_trade", "counterparty_trade", 1),
        taker: Some(party("client_trade", "client_identity", 7)),
        buyer_invoice: None,
        buyer_address: None,
        hold: None,
        payout: None,
        cancel_initiator: None,
        dispute: None,
        buyer_rated: false,
        seller_rated: false,
        next_trade: None,
        range_parent: None,
        abandoned_holds: Vec::new(),
        deadline: None,
        dev_fee: None,
    }
}

fn pending(mut o: Order, amount: u64) -> Order {
    o.status = Status::Pending;
    o.taker = None;
    o.taken_at = None;
    o.amount = Sats(amount);
    o
}

fn notify(notice: Notice, request_id: Option<u64>) -> Notify {
    Notify {
        to: key("client_trade"),
        protocol: Protocol::V2,
        request_id,
        order_id: Some(oid(ORDER_ID)),
        trade_index: None,
        notice,
    }
}

// ---------------------------------------------------------------- inbound

/// Expected engine action per client-to-node line (`None` = dropped with
/// the given reason).
fn expected_action(name: &str) -> Result<Action, DropReason> {
    let next = NextTrade {
        trade_key: key("new_identity"),
        trade_index: 0,
    };
    let new_order = |kind,
                     fiat_code: &str,
                     amount,
                     fiat_amount,
                     min,
                     max,
                     pm: &str,
                     premium,
                     inv: Option<&str>| {
        Action::NewOrder(Box::new(NewOrderRequest {
            order: NewOrder {
                kind,
                fiat_code: fiat_code.into(),
                fiat_amount,
                min_amount: min,
                max_amount: max,
                amount,
                premium,
                payment_method: pm.into(),
                buyer_invoice: None,
                expires_at: None,
            },
            buyer_invoice: inv.map(Into::into),
        }))
    };
    Ok(match name {
        "new-order/sell-fixed-amount" | "new-order/large-request-id" => {
            new_order(Kind::Sell, "EUR", 150_000, 100, None, None, "SEPA", 0, None)
        },
        "new-order/buy-fixed-amount-lightning-address" => new_order(
            Kind::Buy,
            "USD",
            80_000,
            50,
            None,
            None,
            "Zelle,Bank transfer",
            0,
            Some("buyer@lnaddress.example"),
        ),
        "new-order/buy-range" => new_order(
            Kind::Buy,
            "ARS",
            0,
            0,
            Some(10_000),
            Some(50_000),
            "MercadoPago,Transferencia",
            0,
            None,
        ),
        "new-order/sell-market-price-premium" => new_order(
            Kind::Sell,
            "VES",
            0,
            3500,
            None,
            None,
            "Pago Movil",
            3,
            None,
        ),
        "new-order/sell-cashu-mint" => Action::Unsupported,
        "take-sell/with-invoice" => Action::TakeSell {
            fiat_amount: None,
            invoice: Some(INVOICE.into()),
        },
        "take-sell/range-with-invoice-and-amount" => Action::TakeSell {
            fiat_amount: Some(20_000),
            invoice: Some(INVOICE.into()),
        },
        "take-sell/range-amount-only" => Action::TakeSell {
            fiat_amount: Some(20_000),
            invoice: None,
        },
        "take-sell/no-payload" => Action::TakeSell {
            fiat_amount: None,
            invoice: None,
        },
        "take-buy/no-payload" => Action::TakeBuy { fiat_amount: None },
        "take-buy/range-amount" => Action::TakeBuy {
            fiat_amount: Some(25_000),
        },
        "add-invoice" => Action::AddInvoice(INVOICE.into()),
        "fiat-sent" | "legacy/missing-optional-keys" => Action::FiatSent { next_trade: None },
        "fiat-sent/range-next-trade" => Action::FiatSent {
            next_trade: Some(NextTrade {
                trade_index: 13,
                ..next
            }),
        },
        "release" => Action::Release { next_trade: None },
        "release/range-next-trade" => Action::Release {
            next_trade: Some(NextTrade {
                trade_index: 14,
                ..next
            }),
        },
        "cancel" => Action::Cancel,
        "dispute" => Action::Dispute,
        "rate-user" => Action::RateUser(5),
        "rate-user/rate-wrapper" => Action::RateUser(4),
        "admin-cancel/bond-resolution" | "legacy/admin-cancel-version-1-null-payload" => {
            Action::AdminCancel
        },
        "admin-settle/no-payload" => Action::AdminSettle,
        "admin-add-solver" => Action::AdminAddSolver(Solver {
            identity: key("solver"),
            write: true,
        }),
        "admin-take-dispute" => Action::AdminTakeDispute,
        "trade-pubkey/rotate-maker-key" => Action::TradePubkey,
        "restore-session/request" => Action::RestoreSession,
        "last-trade-index/request" => Action::LastTradeIndex,
        "user-info/request" => Action::UserInfo,
        "orders/request-ids" => Action::Orders(vec![
            oid(ORDER_ID),
            oid("4b4a2d5e-1c3f-4e6a-8b7c-9d0e1f2a3b4c"),
        ]),
        // Optional features and user-to-user messages: answered invalid_action.
        "add-bond-invoice/reply-with-invoice"
        | "add-cashu-escrow"
        | "declare-payer"
        | "payment-history/query"
        | "export-reputation/no-rebind"
        | "export-reputation/with-rebind"
        | "import-reputation"
        | "send-dm/non-ascii-text"
        | "send-dm/with-order-id" => Action::Unsupported,
        // mostro-cli's send-dm without id fails the shape check.
        "send-dm/peer-text" => return Err(DropReason::ShapeCheck),
        other => panic!("no expectation for client line {other}"),
    })
}

#[test]
fn every_client_line_maps_to_the_expected_action() {
    let lines = read_lines("messages.jsonl");
    let mut seen = 0;
    for l in lines
        .iter()
        .filter(|l| l["direction"] != "mostro-to-client")
    {
        let name = l["name"].as_str().unwrap();
        let msg = msg_of(l);
        let got = to_request(&msg, &inbound());
        match (expected_action(name), got) {
            (Ok(want), Ok(req)) => {
                assert_eq!(req.action, want, "{name}");
                let k = msg.kind();
                assert_eq!(req.request_id, k.request_id, "{name}");
                assert_eq!(req.trade_index, k.trade_index, "{name}");
                assert_eq!(req.order_id, k.id.map(OrderId), "{name}");
                assert_eq!(req.sender, key("client_trade"));
                assert_eq!(req.identity, key("client_identity"));
                assert_eq!(req.protocol, Protocol::V2);
                assert_eq!(req.event_id, Some(EventId([9; 32])));
            },
            (Err(want), Err(got)) => {
                assert_eq!(got.reason, want, "{name}");
                assert_eq!(got.action, msg.action(), "{name}");
            },
            (want, got) => panic!("{name}: want {want:?}, got {got:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 42);
}

#[test]
fn admin_take_dispute_carries_the_dispute_id() {
    let lines = read_lines("messages.jsonl");
    let req = to_request(&msg_of(line(&lines, "admin-take-dispute")), &inbound()).unwrap();
    assert_eq!(req.order_id, Some(oid(DISPUTE_ID)));
}

#[test]
fn node_to_client_lines_sent_by_a_client_are_unsupported_or_dropped() {
    // A client echoing a node action gets invalid_action when the shape
    // passes, a silent drop otherwise; never a panic or a real command.
    let lines = read_lines("messages.jsonl");
    for l in lines
        .iter()
        .filter(|l| l["direction"] == "mostro-to-client")
    {
        let name = l["name"].as_str().unwrap();
        let msg = msg_of(l);
        match to_request(&msg, &inbound()) {
            Ok(req) => match msg.action() {
                wire::Action::NewOrder => {
                    assert!(matches!(req.action, Action::NewOrder(_)), "{name}")
                },
                wire::Action::Orders => assert!(matches!(req.action, Action::Orders(_)), "{name}"),
                wire::Action::LastTradeIndex => assert_eq!(req.action, Action::LastTradeIndex),
                wire::Action::UserInfo => assert_eq!(req.action, Action::UserInfo),
                wire::Action::RestoreSession => assert_eq!(req.action, Action::RestoreSession),
                wire::Action::TradePubkey => assert_eq!(req.action, Action::TradePubkey),
                _ => assert_eq!(req.action, Action::Unsupported, "{name}"),
            },
            Err(d) => assert!(
                matches!(d.reason, DropReason::ShapeCheck | DropReason::BadSolver),
                "{name}: {d}"
            ),
        }
    }
}

// ---------------------------------------------------------------- dropped

#[test]
fn reputation_mode_without_trade_signature_is_dropped() {
    let lines = read_lines("messages.jsonl");
    let msg = msg_of(line(&lines, "take-sell/no-payload"));
    let unsigned = Inbound {
        signed: false,
        ..inbound()
    };
    let d = to_request(&msg, &unsigned).unwrap_err();
    assert_eq!(d.reason, DropReason::UnsignedReputation);
    assert_eq!(d.reason.as_str(), "unsigned_reputation");
    // Full privacy without signature is fine.
    let fp = Inbound {
        identity: key("client_trade"),
        signed: false,
        ..inbound()
    };
    assert!(to_request(&msg, &fp).is_ok());
}

#[test]
fn shape_check_failures_are_dropped() {
    let cases = [
        // take-sell without id
        r#"{"order":{"version":2,"request_id":null,"trade_index":1,"action":"take-sell","payload":null}}"#,
        // add-invoice without payment_request
        r#"{"order":{"version":2,"request_id":null,"trade_index":null,"id":"308e1272-d5f4-47e6-bd97-3504baea9c23","action":"add-invoice","payload":null}}"#,
        // new-order without an order
        r#"{"order":{"version":2,"request_id":null,"trade_index":1,"action":"new-order","payload":null}}"#,
        // restore-session with a trade index (a request id is accepted and echoed)
        r#"{"restore":{"version":2,"request_id":null,"trade_index":3,"action":"restore-session","payload":null}}"#,
        // restore-session with a payload
        r#"{"restore":{"version":2,"request_id":null,"trade_index":null,"action":"restore-session","payload":{"amount":1}}}"#,
        // rate-user without rating
        r#"{"order":{"version":2,"request_id":null,"trade_index":null,"id":"308e1272-d5f4-47e6-bd97-3504baea9c23","action":"rate-user","payload":null}}"#,
        // pay-invoice from a client without a payment request
        r#"{"order":{"version":2,"request_id":null,"trade_index":null,"id":"308e1272-d5f4-47e6-bd97-3504baea9c23","action":"pay-invoice","payload":null}}"#,
    ];
    for c in cases {
        let d = to_request(&Message::from_json(c).unwrap(), &inbound()).unwrap_err();
        assert_eq!(d.reason, DropReason::ShapeCheck, "{c}");
    }
}

#[test]
fn restore_session_with_a_request_id_is_accepted() {
    let j = r#"{"restore":{"version":2,"request_id":5,"trade_index":null,"action":"restore-session","payload":null}}"#;
    let r = to_request(&Message::from_json(j).unwrap(), &inbound()).unwrap();
    assert_eq!(r.action, Action::RestoreSession);
    assert_eq!(r.request_id, Some(5));
}

#[test]
fn pay_invoice_from_a_client_with_a_valid_shape_is_unsupported() {
    let j = r#"{"order":{"version":2,"request_id":null,"trade_index":null,"id":"308e1272-d5f4-47e6-bd97-3504baea9c23","action":"pay-invoice","payload":{"payment_request":[null,"lnbc1",null]}}}"#;
    let r = to_request(&Message::from_json(j).unwrap(), &inbound()).unwrap();
    assert_eq!(r.action, Action::Unsupported);
}

#[test]
fn signature_check_comes_before_the_shape_check() {
    let j = r#"{"order":{"version":2,"request_id":null,"trade_index":1,"action":"take-sell","payload":null}}"#;
    let unsigned = Inbound {
        signed: false,
        ..inbound()
    };
    let d = to_request(&Message::from_json(j).unwrap(), &unsigned).unwrap_err();
    assert_eq!(d.reason, DropReason::UnsignedReputation);
}

#[test]
fn user_info_outside_restore_is_dropped() {
    let j = r#"{"order":{"version":2,"request_id":1,"trade_index":null,"action":"user-info","payload":null}}"#;
    let d = to_request(&Message::from_json(j).unwrap(), &inbound()).unwrap_err();
    assert_eq!(d.reason, DropReason::WrongWrapper);
}

#[test]
fn bad_next_trade_key_is_dropped() {
    for action in ["fiat-sent", "release"] {
        let j = format!(
            r#"{{"order":{{"version":2,"request_id":null,"trade_index":null,"id":"{ORDER_ID}","action":"{action}","payload":{{"next_trade":["not-a-key",3]}}}}}}"#
        );
        let d = to_request(&Message::from_json(&j).unwrap(), &inbound()).unwrap_err();
        assert_eq!(d.reason, DropReason::BadPayload);
    }
}

#[test]
fn new_order_without_kind_is_dropped() {
    let j = r#"{"order":{"version":2,"request_id":1,"trade_index":1,"action":"new-order","payload":{"order":{"kind":null,"status":null,"amount":0,"fiat_code":"EUR","min_amount":null,"max_amount":null,"fiat_amount":10,"payment_method":"SEPA","premium":0,"created_at":null,"expires_at":null}}}}"#;
    let d = to_request(&Message::from_json(j).unwrap(), &inbound()).unwrap_err();
    assert_eq!(d.reason, DropReason::BadPayload);
}

#[test]
fn bad_solver_text_is_dropped() {
    for text in [
        "",
        "npub1xyz",
        "abcd",
        "npub1nzwqkakt2cuhrlwfhme3asrvx4s0xfyadm57tkpu2a39t9hqtahs7fsn89:admin",
    ] {
        let j = format!(
            r#"{{"dispute":{{"version":2,"request_id":1,"trade_index":null,"id":"{ORDER_ID}","action":"admin-add-solver","payload":{{"text_message":"{text}"}}}}}}"#
        );
        let d = to_request(&Message::from_json(&j).unwrap(), &inbound()).unwrap_err();
        assert_eq!(d.reason, DropReason::BadSolver, "{text:?}");
    }
}

#[test]
fn solver_strings_and_npub_decoding() {
    let k = keys();
    for (label, entry) in k.as_object().unwrap() {
        let npub = entry["npub"].as_str().unwrap();
        let hex = entry["pubkey_hex"].as_str().unwrap();
        let want: PubKey = hex.parse().unwrap();
        assert_eq!(parse_pubkey(npub), Some(want), "{label}");
        assert_eq!(
            parse_pubkey(&npub.to_uppercase()),
            Some(want),
            "{label} upper"
        );
        assert_eq!(parse_pubkey(hex), Some(want), "{label} hex");
        assert_eq!(
            parse_solver(npub),
            Some(Solver {
                identity: want,
                write: true
            })
        );
        assert_eq!(
            parse_solver(&format!("{npub}:read")),
            Some(Solver {
                identity: want,
                write: false
            })
        );
        assert_eq!(
            parse_solver(&format!("{npub}:read-write")),
            Some(Solver {
                identity: want,
                write: true
            })
        );
        assert_eq!(
            parse_solver(&format!("{npub}:write")),
            Some(Solver {
                identity: want,
                write: true
            })
        );
        assert_eq!(
            parse_solver(&format!("{hex}:read")),
            Some(Solver {
                identity: want,
                write: false
            })
        );
        // Any single-character change breaks the checksum.
        let mut chars: Vec<char> = npub.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'q' { 'p' } else { 'q' };
        let broken: String = chars.into_iter().collect();
        assert_eq!(parse_pubkey(&broken), None, "{label} broken checksum");
    }
    let npub = k["solver"]["npub"].as_str().unwrap();
    let mixed = format!("N{}", &npub[1..]);
    assert_eq!(parse_pubkey(&mixed), None, "mixed case");
    assert_eq!(
        parse_pubkey(&npub.replacen("npub", "nsec", 1)),
        None,
        "wrong hrp"
    );
    assert_eq!(parse_pubkey("npub1"), None);
    assert_eq!(parse_pubkey(""), None);
    assert_eq!(parse_pubkey(&"z".repeat(64)), None);
}

// ---------------------------------------------------------------- outbound

/// Asserts `to_message(n)` serializes exactly as the vector line.
fn assert_exact(lines: &[Value], name: &str, n: &Notify) {
    let got = to_message(n).to_json();
    assert_eq!(got, json_of(line(lines, name)), "{name}");
}

/// Same action, wrapper, id presence and keys (recursively for objects, by
/// position for arrays) as the vector line.
fn assert_shape(lines: &[Value], name: &str, n: &Notify) {
    let got: Value = serde_json::from_str(&to_message(n).to_json()).unwrap();
    let want = &line(lines, name)["json"];
    same_shape(&got, want, name);
}

fn same_shape(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().collect();
            let wk: Vec<&String> = w.keys().collect();
            assert_eq!(gk, wk, "keys at {path}");
            for (k, v) in w {
                same_shape(&g[k], v, &format!("{path}.{k}"));
            }
        },
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "array length at {path}");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                same_shape(a, b, &format!("{path}[{i}]"));
            }
        },
        // A null where the vector has a value (or the reverse) is a value
        // difference the callers document; strings vs numbers are not.
        (Value::Null, _) | (_, Value::Null) => {},
        (g, w) => assert_eq!(
            std::mem::discriminant(g),
            std::mem::discriminant(w),
            "type at {path}: {g} vs {w}"
        ),
    }
}

#[test]
fn order_notices_match_the_vectors_byte_for_byte() {
    let lines = read_lines("messages.jsonl");
    let sell = sell_order;

    // new-order ack: pending, no taker, raw amount, maker's index.
    let mut n = notify(
        Notice::NewOrder(Box::new(pending(sell(Status::Pending), 150_000))),
        Some(1001),
    );
    n.trade_index = Some(1);
    assert_exact(&lines, "new-order/ack", &n);

    let bolt11 = line(&lines, "pay-invoice")["json"]["order"]["payload"]["payment_request"][1]
        .as_str()
        .unwrap()
        .to_owned();
    let n = notify(
        Notice::PayInvoice {
            order: Box::new(sell(Status::WaitingPayment)),
            bolt11,
        },
        Some(2001),
    );
    assert_exact(&lines, "pay-invoice", &n);

    let n = notify(
        Notice::AddInvoice(Box::new(sell(Status::WaitingBuyerInvoice))),
        Some(2001),
    );
    assert_exact(&lines, "add-invoice/request-from-mostro", &n);

    let mut n = notify(Notice::WaitingSellerToPay, Some(2005));
    n.trade_index = Some(2);
    assert_exact(&lines, "waiting-seller-to-pay", &n);
    let mut n = notify(Notice::WaitingBuyerInvoice, Some(2004));
    n.trade_index = Some(1);
    assert_exact(&lines, "waiting-buyer-invoice", &n);

    assert_exact(
        &lines,
        "buyer-took-order",
        &notify(Notice::BuyerTookOrder(Box::new(sell(Status::Active))), None),
    );
    assert_exact(
        &lines,
        "hold-invoice-payment-accepted",
        &notify(
            Notice::HoldInvoicePaymentAccepted(Box::new(sell(Status::Active))),
            Some(2001),
        ),
    );

    let simple = [
        (
            "hold-invoice-payment-settled",
            Notice::HoldInvoicePaymentSettled,
            Some(2011),
        ),
        (
            "hold-invoice-payment-canceled",
            Notice::HoldInvoicePaymentCanceled,
            None,
        ),
        ("released", Notice::Released, None),
        ("purchase-completed", Notice::PurchaseCompleted, None),
        ("canceled", Notice::Canceled, Some(2013)),
        (
            "cooperative-cancel-initiated-by-you",
            Notice::CooperativeCancelInitiatedByYou,
            Some(2013),
        ),
        (
            "cooperative-cancel-initiated-by-peer",
            Notice::CooperativeCancelInitiatedByPeer,
            None,
        ),
        (
            "cooperative-cancel-accepted",
            Notice::CooperativeCancelAccepted,
            None,
        ),
        ("rate", Notice::Rate, None),
        ("rate-received", Notice::RateReceived(5), Some(2015)),
        ("admin-canceled", Notice::AdminCanceled, None),
        ("admin-settled", Notice::AdminSettled, Some(2018)),
        ("invoice-updated", Notice::InvoiceUpdated, Some(2007)),
        ("trade-pubkey/ack", Notice::TradePubkey, Some(2021)),
        (
            "payment-failed",
            Notice::PaymentFailed {
                attempts: 3,
                retry_secs: 60,
            },
            None,
        ),
        (
            "fiat-sent-ok/peer-without-reputation",
            Notice::FiatSentOk {
                peer: key("counterparty_trade"),
            },
            Some(2009),
        ),
        (
            "dispute-initiated-by-you",
            Notice::DisputeInitiatedByYou {
                dispute_id: oid(DISPUTE_ID),
            },
            Some(2014),
        ),
        (
            "dispute-initiated-by-peer",
            Notice::DisputeInitiatedByPeer {
                dispute_id: oid(DISPUTE_ID),
            },
            None,
        ),
        (
            "admin-took-dispute/to-parties",
            Notice::AdminTookDisputePeer {
                solver: key("solver"),
            },
            Some(2020),
        ),
    ];
    for (name, notice, rid) in simple {
        assert_exact(&lines, name, &notify(notice, rid));
    }
}

#[test]
fn pay_invoice_and_add_invoice_fall_back_to_the_party_trade_index() {
    let o = sell_order(Status::WaitingPayment);
    let m = to_message(&notify(
        Notice::PayInvoice {
            order: Box::new(o.clone()),
            bolt11: "x".into(),
        },
        None,
    ));
    assert_eq!(m.kind().trade_index, Some(1));
    let m = to_message(&notify(Notice::AddInvoice(Box::new(o.clone())), None));
    assert_eq!(m.kind().trade_index, Some(7));
    // An explicit index wins.
    let mut n = notify(Notice::AddInvoice(Box::new(o.clone())), None);
    n.trade_index = Some(9);
    assert_eq!(to_message(&n).kind().trade_index, Some(9));
    // Full privacy (index 0): null.
    let mut fp = o;
    fp.taker.as_mut().unwrap().trade_index = 0;
    let m = to_message(&notify(Notice::AddInvoice(Box::new(fp)), None));
    assert_eq!(m.kind().trade_index, None);
}

#[test]
fn fiat_sent_ok_with_reputation_has_the_same_shape() {
    // We do not attach the peer's reputation (the notice carries only the
    // key): same keys, `reputation` null.
    let lines = read_lines("messages.jsonl");
    let n = notify(
        Notice::FiatSentOk {
            peer: key("client_trade"),
        },
        None,
    );
    assert_shape(&lines, "fiat-sent-ok/peer-with-reputation", &n);
}

fn disputed_order() -> Order {
    let mut o = sell_order(Status::Dispute);
    o.amount = Sats(150_000);
    o.fee = Sats(900);
    o.hold = Some(Hold {
        hash: "5e1d1f6a38c7c1c1fa3b3f0f1d0d6f4f7fba6a3ad7e19a7f8e2b5a2d8c4a9b11"
            .parse::<PaymentHash>()
            .unwrap(),
        preimage: Preimage([3; 32]),
        amount: Sats(150_900),
        bolt11: Some("lnbcrt1hold".into()),
        state: HoldState::Accepted,
        htlc_expiry: None,
        request_id: None,
    });
    o.payout = Some(Payout {
        invoice: INVOICE.into(),
        hash: PaymentHash([4; 32]),
        amount: Sats(149_100),
        attempts: 0,
        state: PayoutState::Idle,
        routing_fee: Sats(0),
        previous: Vec::new(),
        checking: false,
        paid_hash: None,
        duplicates: Vec::new(),
    });
    o.dispute = Some(Dispute {
        id: oid(DISPUTE_ID),
        status: DisputeStatus::InProgress,
        initiator: Role::Buyer,
        previous_status: Status::FiatSent,
        solver: Some(key("solver")),
        solver_write: true,
        taken_by_admin: false,
        created_at: Timestamp(1_767_226_500),
        taken_at: Some(Timestamp(1_767_226_600)),
        expiry_warned: false,
        solver_party: None,
    });
    o
}

#[test]
fn admin_took_dispute_to_the_solver() {
    let lines = read_lines("messages.jsonl");
    let mut n = notify(
        Notice::AdminTookDisputeSolver {
            dispute_id: oid(DISPUTE_ID),
            order: Box::new(disputed_order()),
        },
        Some(2020),
    );
    n.to = key("solver");
    assert_shape(&lines, "admin-took-dispute/to-solver", &n);
    let got: Value = serde_json::from_str(&to_message(&n).to_json()).unwrap();
    let mut want = line(&lines, "admin-took-dispute/to-solver")["json"].clone();
    // Known value differences: reputations are not in the order snapshot,
    // and the time the hold was accepted is not tracked.
    let info = &mut want["dispute"]["payload"]["dispute"][1];
    info["initiator_info"] = Value::Null;
    info["invoice_held_at"] = Value::from(0);
    assert_eq!(got, want);
    assert_eq!(to_message(&n).kind().id, Some(oid(DISPUTE_ID).0));
}

#[test]
fn admin_add_solver_ack_has_no_id_and_the_dispute_wrapper() {
    let lines = read_lines("messages.jsonl");
    assert_exact(
        &lines,
        "admin-add-solver/ack",
        &notify(Notice::AdminAddSolver, Some(2019)),
    );
}

fn buy_order_pending() -> Order {
    let mut o = pending(sell_order(Status::Pending), 80_000);
    o.id = oid("4b4a2d5e-1c3f-4e6a-8b7c-9d0e1f2a3b4c");
    o.kind = Kind::Buy;
    o.fiat_code = "USD".into();
    o.fiat_amount = 50;
    o.payment_method = "Zelle,Bank transfer".into();
    o.maker = party("attacker_trade", "client_identity", 2);
    o
}

#[test]
fn orders_reply() {
    let lines = read_lines("messages.jsonl");
    let mut active = sell_order(Status::Active);
    active.amount = Sats(150_000);
    active.buyer_invoice = None;
    let n = notify(
        Notice::Orders(vec![active, buy_order_pending()]),
        Some(2024),
    );
    assert_exact(&lines, "orders/response", &n);
}

#[test]
fn restore_session_reply() {
    let lines = read_lines("messages.jsonl");
    // The vector lists an order as active while its dispute is in progress
    // (constructed sample); build exactly that.
    let mut disputed = disputed_order();
    disputed.status = Status::Active;
    let mut n = notify(
        Notice::RestoreSession {
            identity: key("client_identity"),
            orders: vec![disputed, buy_order_pending()],
        },
        None,
    );
    n.order_id = None;
    n.to = key("client_identity");
    assert_exact(&lines, "restore-session/response", &n);

    // Sent to a fresh trade key: the requester's side comes from the identity in the notice.
    n.to = key("stranger");
    assert_exact(&lines, "restore-session/response", &n);
}

#[test]
fn restore_session_omits_disputed_and_terminal_orders() {
    let mut in_dispute = disputed_order();
    in_dispute.status = Status::Dispute;
    let mut done = sell_order(Status::Success);
    done.id = oid("7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d");
    let n = Notify {
        to: key("client_trade"),
        protocol: Protocol::V2,
        request_id: None,
        order_id: None,
        trade_index: None,
        notice: Notice::RestoreSession {
            identity: key("client_identity"),
            orders: vec![in_dispute, done],
        },
    };
    let m = to_message(&n);
    let Some(wire::Payload::RestoreData(d)) = &m.kind().payload else {
        panic!()
    };
    assert!(d.orders.is_empty());
    assert_eq!(d.disputes.len(), 1);
    assert_eq!(d.disputes[0].trade_index, 7);
    assert_eq!(d.disputes[0].initiator, Some(wire::DisputeInitiator::Buyer));
}

#[test]
fn restore_wrapper_replies() {
    let lines = read_lines("messages.jsonl");
    let mut n = notify(Notice::LastTradeIndex(14), Some(2022));
    n.order_id = None;
    assert_exact(&lines, "last-trade-index/response", &n);

    let n = notify(Notice::UserInfo(User::default()), Some(2023));
    assert_exact(&lines, "user-info/response-unknown-identity", &n);

    // 23 reviews averaging 4.78 (an integer sum cannot give 4.8 exactly):
    // compare shape and the integer fields.
    let created = Timestamp(1_700_784_000 + 3_600);
    let user = User {
        identity: key("client_identity"),
        last_trade_index: 14,
        reviews: 23,
        rating_sum: 110,
        min_rating: 3,
        max_rating: 5,
        last_rating: 5,
        created_at: created,
    };
    let n = notify(Notice::UserInfo(user), Some(2023));
    assert_shape(&lines, "user-info/response", &n);
    let now = created.plus(142 * 86_400 + 100);
    let m = to_message_at(&n, now);
    let Some(wire::Payload::UserInfo(ui)) = &m.kind().payload else {
        panic!()
    };
    assert_eq!(
        (ui.reviews, ui.operating_days, ui.since),
        (23, 142, Some(created.0))
    );
    assert!((ui.rating - 110.0 / 23.0).abs() < 1e-9);
    assert!(
        m.to_json().contains(r#""since":1700784000"#),
        "since truncated to the day"
    );
    assert_eq!(m.kind().id, None);
}

#[test]
fn every_refusal_has_its_own_wire_reason() {
    let mut seen = std::collections::HashSet::new();
    for r in Reject::ALL {
        let reason = mostro_core::wire::map::cant_do_reason(r);
        assert_ne!(reason, CantDoReason::Unknown, "{r:?}");
        assert_eq!(reason.as_str(), r.as_wire(), "{r:?}");
        assert!(seen.insert(reason), "{r:?} shares its reason");
    }
}

#[test]
fn cant_do_replies_match_the_vectors() {
    let lines = read_lines("messages.jsonl");
    for r in Reject::ALL {
        let name = format!("cant-do/{}", r.as_wire());
        assert_exact(&lines, &name, &notify(Notice::CantDo(r), Some(3000)));
    }
    // No reason degrades to `unknown`.
    for r in Reject::ALL {
        let m = to_message(&notify(Notice::CantDo(r), None));
        assert_ne!(
            m.kind().payload,
            Some(wire::Payload::CantDo(Some(CantDoReason::Unknown)))
        );
        assert_eq!(m.wrapper_name(), "cant-do");
    }
}

#[test]
fn version_follows_the_recipient_protocol() {
    let mut n = notify(Notice::Released, None);
    assert_eq!(to_message(&n).kind().version, 2);
    n.protocol = Protocol::V1;
    assert_eq!(to_message(&n).kind().version, 1);
}

#[test]
fn every_notice_maps_to_a_parsable_message_with_a_known_action() {
    let o = Box::new(disputed_order());
    let notices = vec![
        Notice::NewOrder(o.clone()),
        Notice::PayInvoice {
            order: o.clone(),
            bolt11: "lnbc".into(),
        },
        Notice::AddInvoice(o.clone()),
        Notice::WaitingSellerToPay,
        Notice::WaitingBuyerInvoice,
        Notice::BuyerTookOrder(o.clone()),
        Notice::HoldInvoicePaymentAccepted(o.clone()),
        Notice::HoldInvoicePaymentSettled,
        Notice::HoldInvoicePaymentCanceled,
        Notice::FiatSentOk {
            peer: key("solver"),
        },
        Notice::Released,
        Notice::PurchaseCompleted,
        Notice::PaymentFailed {
            attempts: 1,
            retry_secs: u64::MAX,
        },
        Notice::InvoiceUpdated,
        Notice::Rate,
        Notice::RateReceived(1),
        Notice::Canceled,
        Notice::CooperativeCancelInitiatedByYou,
        Notice::CooperativeCancelInitiatedByPeer,
        Notice::CooperativeCancelAccepted,
        Notice::DisputeInitiatedByYou {
            dispute_id: oid(DISPUTE_ID),
        },
        Notice::DisputeInitiatedByPeer {
            dispute_id: oid(DISPUTE_ID),
        },
        Notice::AdminTookDisputeSolver {
            dispute_id: oid(DISPUTE_ID),
            order: o.clone(),
        },
        Notice::AdminTookDisputePeer {
            solver: key("solver"),
        },
        Notice::AdminSettled,
        Notice::AdminCanceled,
        Notice::TradePubkey,
        Notice::Orders(vec![*o.clone()]),
        Notice::RestoreSession {
            identity: key("client_identity"),
            orders: vec![*o],
        },
        Notice::LastTradeIndex(3),
        Notice::UserInfo(User::default()),
        Notice::AdminAddSolver,
        Notice::CantDo(Reject::NotFound),
    ];
    let mut actions = BTreeSet::new();
    for notice in notices {
        let m = to_message(&notify(notice, Some(u64::MAX)));
        let json = m.to_json();
        assert_eq!(Message::from_json(&json).unwrap(), m);
        assert_eq!(m.kind().request_id, Some(u64::MAX));
        actions.insert(m.action().as_str());
    }
    assert_eq!(actions.len(), 32); // admin-took-dispute appears twice
}

#[test]
fn a_dispute_the_node_opened_is_explained_in_a_send_dm() {
    let did = oid("5d2a2a4c-3b0e-4d2a-9c55-0b8f6c1d2e3f");
    for (expiry, says) in [
        (Some(mostro_core::types::BlockHeight(812_345)), "812345"),
        (None, "canceled the seller's escrow"),
    ] {
        let json = to_message(&notify(
            Notice::DisputeOpenedByNode {
                dispute_id: did,
                expiry,
            },
            None,
        ))
        .to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        let order = &v["order"];
        assert_eq!(order["action"], "send-dm", "{json}");
        assert_eq!(order["id"], ORDER_ID, "{json}");
        let text = order["payload"]["text_message"].as_str().unwrap();
        assert!(text.contains("opened by the Mostro node"), "{text}");
        assert!(text.contains(&did.to_string()), "{text}");
        assert!(text.contains(says), "{text}");
    }
}
