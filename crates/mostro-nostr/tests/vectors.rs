//! Both transports and the public events against the protocol vectors.
//! No freshness rule applies here: the samples are older than any window.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{core_key, keys, order, party, read_lines};
use mostro_core::order::{Dispute, DisputeStatus, Kind, Protocol, Role, Status};
use mostro_core::types::{OrderId, Timestamp};
use mostro_core::wire::Message;
use mostro_core::wire::map::{DropReason, to_request};
use mostro_nostr::events::{
    self, LightningInfo, NodeInfo, PublishConfig, RatingSummary, Reputation,
};
use mostro_nostr::intake::{Intake, IntakeConfig, IntakeDrop};
use mostro_nostr::{UnwrapError, Unwrapped, v1, v2};
use nostr_sdk::{Event, JsonUtil};
use serde_json::Value;

fn event_of(line: &Value) -> Event {
    Event::from_json(serde_json::to_string(&line["event"]).unwrap()).unwrap()
}

fn check_accept(name: &str, line: &Value, u: &Unwrapped) {
    assert_eq!(
        u.plaintext,
        line["plaintext"].as_str().unwrap(),
        "{name}: plaintext"
    );
    let want = Message::from_json(&serde_json::to_string(&line["message"]).unwrap()).unwrap();
    assert_eq!(u.message, want, "{name}: message");
    assert_eq!(
        u.sender.to_hex(),
        line["expected"]["sender"].as_str().unwrap(),
        "{name}: sender"
    );
    assert_eq!(
        u.identity.to_hex(),
        line["expected"]["identity"].as_str().unwrap(),
        "{name}: identity"
    );
    assert_eq!(u.event_id.to_hex(), line["event"]["id"].as_str().unwrap());
}

fn expected_v2_error(name: &str) -> UnwrapError {
    match name {
        "reject/identity-proof-grafted-from-other-trade-key"
        | "reject/identity-proof-without-domain-tag" => UnwrapError::BadIdentityProof,
        "reject/trade-signature-by-wrong-key"
        | "reject/trade-signature-over-non-canonical-json" => UnwrapError::BadTradeSignature,
        "reject/wrong-recipient"
        | "reject/p-tag-mostro-but-encrypted-for-stranger"
        | "reject/tampered-ciphertext-resigned" => UnwrapError::NotForMe,
        "reject/tampered-ciphertext-original-signature" | "reject/invalid-event-signature" => {
            UnwrapError::InvalidEvent
        },
        "reject/malformed-identity-pubkey" => UnwrapError::MalformedIdentity,
        "reject/v1-gift-wrap-on-v2-transport" => UnwrapError::WrongKind(1059),
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn v2_events() {
    let lines = read_lines("v2-events.jsonl");
    assert_eq!(lines.len(), 29);
    let (mut accepted, mut transport_rejects, mut daemon_rejects) = (0, 0, 0);
    for line in &lines {
        let name = line["name"].as_str().unwrap();
        let to = keys(line["to"].as_str().unwrap());
        let event = event_of(line);
        let got = v2::unwrap(&event, &to);
        match (
            line["expect"].as_str().unwrap(),
            line["reject_layer"].as_str(),
        ) {
            ("accept", _) => {
                let u = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                check_accept(name, line, &u);
                assert_eq!(u.protocol, Protocol::V2);
                assert_eq!(u.created_at, event.created_at.as_secs());
                let want_signed = line["mostro_core_0_17_3_unwrap"]["trade_sig_present"]
                    .as_bool()
                    .unwrap();
                assert_eq!(u.signed, want_signed, "{name}: signed");
                accepted += 1;
            },
            ("reject", Some("transport")) => {
                let e = got.expect_err(name);
                if name.starts_with("reject/malformed-tuple/") {
                    assert!(matches!(e, UnwrapError::Malformed(_)), "{name}: {e:?}");
                } else {
                    assert_eq!(e, expected_v2_error(name), "{name}");
                }
                transport_rejects += 1;
            },
            ("reject", Some("daemon")) => {
                let u = got.unwrap_or_else(|e| panic!("{name}: transport should accept: {e}"));
                let d = to_request(&u.message, &u.inbound()).expect_err(name);
                let want = if name.ends_with("without-trade-signature") {
                    DropReason::UnsignedReputation
                } else {
                    DropReason::ShapeCheck
                };
                assert_eq!(d.reason, want, "{name}");
                daemon_rejects += 1;
            },
            other => panic!("{name}: {other:?}"),
        }
        // The other protocol never accepts a kind-14 event.
        if event.kind.as_u16() == 14 {
            assert!(
                v1::unwrap(&event, &to).is_err(),
                "{name}: v1 accepted a v2 line"
            );
        }
    }
    assert_eq!((accepted, transport_rejects, daemon_rejects), (11, 16, 2));
}

#[test]
fn v2_accepted_client_lines_map_to_requests() {
    // Every accepted line addressed to the node maps to a request, except
    // the ones the daemon drops by design.
    for line in read_lines("v2-events.jsonl") {
        if line["expect"] != "accept" || line["to"] != "mostro" {
            continue;
        }
        let name = line["name"].as_str().unwrap();
        let u = v2::unwrap(&event_of(&line), &keys("mostro")).unwrap();
        let req = to_request(&u.message, &u.inbound()).unwrap_or_else(|d| panic!("{name}: {d}"));
        assert_eq!(req.sender, core_key("client_trade"), "{name}");
        assert_eq!(req.protocol, Protocol::V2);
        assert_eq!(req.event_id.map(|e| e.0), Some(u.event_id.to_bytes()));
    }
}

fn expected_v1_error(name: &str) -> UnwrapError {
    match name {
        "reject/wrong-recipient" => UnwrapError::NotForMe,
        "reject/rumor-signature-by-wrong-key" => UnwrapError::BadTradeSignature,
        "reject/invalid-seal-signature" => UnwrapError::InvalidSeal,
        "reject/inner-event-not-a-seal" => UnwrapError::NotASeal(1),
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn v1_gift_wraps() {
    let lines = read_lines("v1-giftwraps.jsonl");
    assert_eq!(lines.len(), 13);
    let (mut accepted, mut rejected) = (0, 0);
    for line in &lines {
        let name = line["name"].as_str().unwrap();
        let to = keys(line["to"].as_str().unwrap());
        let event = event_of(line);
        let got = v1::unwrap(&event, &to);
        if line["expect"] == "accept" {
            let u = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            check_accept(name, line, &u);
            assert_eq!(u.protocol, Protocol::V1);
            assert_eq!(
                u.created_at,
                line["rumor"]["created_at"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(
                u.signed,
                line["mostro_core_0_14_6_unwrap"]["trade_sig_present"]
                    .as_bool()
                    .unwrap(),
                "{name}"
            );
            if line["to"] == "mostro" {
                let req = to_request(&u.message, &u.inbound()).unwrap();
                assert_eq!(req.protocol, Protocol::V1);
                assert_eq!(req.sender, core_key("client_trade"));
            }
            accepted += 1;
        } else {
            let e = got.expect_err(name);
            if name.starts_with("reject/malformed-rumor-content/") {
                assert!(matches!(e, UnwrapError::Malformed(_)), "{name}: {e:?}");
            } else {
                assert_eq!(e, expected_v1_error(name), "{name}");
            }
            rejected += 1;
        }
        assert!(
            v2::unwrap(&event, &to).is_err(),
            "{name}: v2 accepted a gift wrap"
        );
    }
    assert_eq!((accepted, rejected), (7, 6));
}

#[test]
fn intake_without_freshness_agrees_with_unwrap_on_every_line() {
    let cfg = IntakeConfig {
        freshness_secs: None,
        max_future_secs: None,
        ..IntakeConfig::default()
    };
    let node = keys("mostro");
    for file in ["v2-events.jsonl", "v1-giftwraps.jsonl"] {
        let mut intake = Intake::new(cfg.clone());
        for line in read_lines(file) {
            let name = line["name"].as_str().unwrap();
            let event = event_of(&line);
            // The intake opens each event in the protocol of its kind.
            let direct = if event.kind.as_u16() == 14 {
                v2::unwrap(&event, &node)
            } else {
                v1::unwrap(&event, &node)
            };
            let got = intake.accept(&event, &node, 1_795_461_900);
            match (direct, got) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
                (Err(a), Err(IntakeDrop::Unwrap(b))) => assert_eq!(a, b, "{name}"),
                (a, b) => panic!("{name}: unwrap {a:?} vs intake {b:?}"),
            }
            // A second delivery of an accepted event is a replay.
            if intake.has_seen(&event.id) {
                assert_eq!(
                    intake.accept(&event, &node, 1_795_461_900),
                    Err(IntakeDrop::Replay)
                );
            }
        }
    }
}

#[test]
fn pow_8_line_passes_pow_8_and_fails_pow_9() {
    let line = read_lines("v2-events.jsonl")
        .into_iter()
        .find(|l| l["name"] == "accept/reputation-mode/fiat-sent-pow-8")
        .unwrap();
    let event = event_of(&line);
    let node = keys("mostro");
    let bits = nostr_sdk::nips::nip13::get_leading_zero_bits(event.id.as_bytes());
    let mut ok = Intake::new(IntakeConfig {
        pow: 8,
        freshness_secs: None,
        max_future_secs: None,
        ..Default::default()
    });
    assert!(ok.accept(&event, &node, 0).is_ok());
    let mut strict = Intake::new(IntakeConfig {
        pow: bits + 1,
        freshness_secs: None,
        max_future_secs: None,
        ..Default::default()
    });
    assert_eq!(strict.accept(&event, &node, 0), Err(IntakeDrop::Pow));
}

// ------------------------------------------------------------ node replies

#[test]
fn node_replies_round_trip_in_both_protocols() {
    let node = keys("mostro");
    let client = keys("client_trade");
    for line in read_lines("v2-events.jsonl") {
        if line["from"] != "mostro" {
            continue;
        }
        let msg = Message::from_json(&serde_json::to_string(&line["message"]).unwrap()).unwrap();
        let now = nostr_sdk::Timestamp::from_secs(1_795_461_838);
        let exp = nostr_sdk::Timestamp::from_secs(1_893_456_000);
        let e = v2::wrap_reply(&msg, &node, &client.public_key(), now, Some(exp)).unwrap();
        assert_eq!(e.kind.as_u16(), 14);
        assert_eq!(e.pubkey, node.public_key());
        let tags: Vec<Vec<String>> = e.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        assert_eq!(
            tags,
            vec![
                vec!["p".to_owned(), client.public_key().to_hex()],
                vec!["expiration".to_owned(), "1893456000".to_owned()],
            ]
        );
        let u = v2::unwrap(&e, &client).unwrap();
        assert_eq!(u.plaintext, format!("[{},null,null]", msg.to_json()));
        assert_eq!(
            (u.sender, u.identity, u.signed),
            (node.public_key(), node.public_key(), false)
        );

        let g = v1::wrap_reply(&msg, &node, &client.public_key(), now).unwrap();
        assert_eq!(g.kind.as_u16(), 1059);
        assert!(g.created_at <= now && g.created_at.as_secs() >= now.as_secs() - v1::TWEAK_SECS);
        let tags: Vec<Vec<String>> = g.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        assert_eq!(
            tags,
            vec![vec!["p".to_owned(), client.public_key().to_hex()]]
        );
        let u = v1::unwrap(&g, &client).unwrap();
        assert_eq!(u.plaintext, format!("[{},null]", msg.to_json()));
        assert_eq!(u.created_at, now.as_secs());
        assert_eq!(
            (u.sender, u.identity),
            (node.public_key(), node.public_key())
        );
        // Not for anyone else.
        assert_eq!(
            v1::unwrap(&g, &keys("stranger")),
            Err(UnwrapError::NotForMe)
        );
        assert_eq!(
            v2::unwrap(&e, &keys("stranger")),
            Err(UnwrapError::NotForMe)
        );
    }
}

// ------------------------------------------------------------ public events

fn cfg() -> PublishConfig {
    let mut c = PublishConfig::new(
        keys("mostro").public_key().to_hex(),
        vec!["wss://relay.mostro.network".into(), "wss://nos.lol".into()],
    );
    c.networks = vec!["regtest".into()];
    c.name = Some("Mostro Example".into());
    c
}

fn vector_tags(line: &Value) -> Vec<Vec<String>> {
    serde_json::from_value(line["event"]["tags"].clone()).unwrap()
}

/// Compares the tags, then signs them at the vector's `created_at` and checks
/// that the event id is the vector's (same pubkey, kind, tags, content).
fn check_event(line: &Value, kind: u16, tags: Vec<Vec<String>>) {
    let name = line["name"].as_str().unwrap();
    let want = vector_tags(line);
    for (i, (g, w)) in tags.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{name}: tag {i}");
    }
    assert_eq!(tags.len(), want.len(), "{name}: tag count");
    let created_at = line["event"]["created_at"].as_u64().unwrap();
    let e = events::sign(&keys("mostro"), kind, tags, created_at).unwrap();
    assert_eq!(e.kind.as_u16(), line["kind"].as_u64().unwrap() as u16);
    assert_eq!(e.content, "");
    assert_eq!(
        e.id.to_hex(),
        line["event"]["id"].as_str().unwrap(),
        "{name}: event id"
    );
    e.verify().unwrap();
}

const NOW: u64 = 1_767_225_900;

#[test]
fn order_events() {
    let lines = read_lines("orders-events.jsonl");
    let get = |n: &str| {
        lines
            .iter()
            .find(|l| l["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };

    // Pending sell, fixed amount, reputation-mode maker.
    let o = order(
        "308e1272-d5f4-47e6-bd97-3504baea9c23",
        Kind::Sell,
        Status::Pending,
        150_000,
    );
    let rep = Reputation {
        total_rating: 4.8,
        total_reviews: 23,
        since: Some(1_700_784_000),
        days: 769,
    };
    let tags = events::order_tags(&o, &cfg(), Some(&rep), NOW).unwrap();
    check_event(get("order/pending-sell-fixed-amount"), 38383, tags);

    // Pending range buy, full-privacy maker: no rating even if one is given.
    let mut o = order(
        "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f",
        Kind::Buy,
        Status::Pending,
        0,
    );
    o.fiat_code = "ARS".into();
    o.fiat_amount = 0;
    o.min_amount = Some(10_000);
    o.max_amount = Some(50_000);
    o.payment_method = "MercadoPago,Transferencia".into();
    o.maker = party("client_trade", "client_trade", 0);
    let tags = events::order_tags(&o, &cfg(), Some(&rep), NOW).unwrap();
    check_event(get("order/pending-range-buy"), 38383, tags);

    // Market price with premium.
    let mut o = order(
        "6d7e8f90-a1b2-4c3d-9e4f-5a6b7c8d9e0f",
        Kind::Sell,
        Status::Pending,
        0,
    );
    o.fiat_code = "VES".into();
    o.fiat_amount = 3500;
    o.payment_method = "Pago Movil".into();
    o.premium = 3;
    let rep5 = Reputation {
        total_rating: 5.0,
        total_reviews: 1,
        since: Some(1_709_424_000),
        days: 669,
    };
    let tags = events::order_tags(&o, &cfg(), Some(&rep5), NOW).unwrap();
    check_event(get("order/pending-market-price-premium"), 38383, tags);

    // Canceled (and every status published as canceled).
    for status in [
        Status::Canceled,
        Status::Expired,
        Status::CanceledByAdmin,
        Status::CooperativelyCanceled,
    ] {
        let o = order(
            "9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f",
            Kind::Sell,
            status,
            150_000,
        );
        let tags = events::order_tags(&o, &cfg(), Some(&rep), NOW).unwrap();
        check_event(get("order/canceled"), 38383, tags);
    }

    // In progress: a sell order waiting for the buyer's invoice.
    let mut o = order(
        "308e1272-d5f4-47e6-bd97-3504baea9c23",
        Kind::Sell,
        Status::WaitingBuyerInvoice,
        150_000,
    );
    o.taker = Some(party("counterparty_trade", "counterparty_trade", 0));
    let tags = events::order_tags(&o, &cfg(), Some(&rep), NOW).unwrap();
    check_event(get("order/in-progress"), 38383, tags);

    // Cashu order: the same tags without the trailing cashu_mint_url (our
    // orders have no Cashu escrow).
    let line = get("order/pending-cashu");
    let mut o = order(
        "8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e",
        Kind::Sell,
        Status::Pending,
        21_000,
    );
    o.fiat_amount = 15;
    o.payment_method = "SEPA Instant".into();
    o.maker = party("client_trade", "client_trade", 0);
    let tags = events::order_tags(&o, &cfg(), None, NOW).unwrap();
    let mut want = vector_tags(line);
    assert_eq!(want.pop().unwrap()[0], "cashu_mint_url");
    assert_eq!(tags, want);
}

#[test]
fn unpublished_statuses_produce_no_order_event() {
    for status in [
        Status::Active,
        Status::FiatSent,
        Status::Dispute,
        Status::SettledHoldInvoice,
    ] {
        let o = order(
            "308e1272-d5f4-47e6-bd97-3504baea9c23",
            Kind::Sell,
            status,
            1,
        );
        assert!(
            events::order_tags(&o, &cfg(), None, NOW).is_none(),
            "{status}"
        );
    }
    // Sell orders are in progress only while waiting for the buyer's
    // invoice, buy orders only while waiting for the seller's payment.
    let o = order(
        "308e1272-d5f4-47e6-bd97-3504baea9c23",
        Kind::Sell,
        Status::WaitingPayment,
        1,
    );
    assert!(events::order_tags(&o, &cfg(), None, NOW).is_none());
    let o = order(
        "308e1272-d5f4-47e6-bd97-3504baea9c23",
        Kind::Buy,
        Status::WaitingPayment,
        1,
    );
    assert_eq!(
        events::order_tags(&o, &cfg(), None, NOW).unwrap()[3][1],
        "in-progress"
    );
}

#[test]
fn rating_info_and_dispute_events() {
    let lines = read_lines("orders-events.jsonl");
    let get = |n: &str| {
        lines
            .iter()
            .find(|l| l["name"] == n)
            .unwrap_or_else(|| panic!("{n}"))
    };

    let r = RatingSummary {
        total_reviews: 23,
        total_rating: 4.8,
        last_rating: 5,
        max_rate: 5,
        min_rate: 3,
        since: Some(1_700_784_000),
        days: 769,
    };
    let d = keys("client_trade").public_key().to_hex();
    check_event(
        get("rating/reputation-update"),
        38384,
        events::rating_tags(&d, &r, &cfg(), NOW),
    );

    let info = NodeInfo {
        version: "0.20.2".into(),
        commit_hash: "0".repeat(40),
        max_order_amount: 1_000_000,
        min_order_amount: 100,
        expiration_hours: 24,
        expiration_seconds: 900,
        fiat_currencies: vec!["USD".into(), "EUR".into(), "ARS".into(), "CUP".into()],
        max_orders_per_response: 10,
        fee: 0.006,
        pow: 0,
        pow_first_contact: 16,
        hold_invoice_cltv_delta: 144,
        escrow_deadline_margin_blocks: 24,
        lightning: LightningInfo {
            version: "0.18.0-beta".into(),
            node_pubkey: "02989c0b76cb563971fdc9bef31ec06c3560f3249d6ee9e5d83c57625596e05f6f"
                .into(),
            commit_hash: "2fb150c8fe827df9df0520ef9916b3afb7b03a8d".into(),
            alias: "alice".into(),
            chains: vec!["bitcoin".into()],
            networks: vec!["regtest".into()],
            uris: vec![
                "02989c0b76cb563971fdc9bef31ec06c3560f3249d6ee9e5d83c57625596e05f6f@127.0.0.1:9735"
                    .into(),
            ],
        },
        invoice_expiration_window: 3600,
        hold_invoice_expiration_window: 300,
        maintenance: false,
    };
    let tags = events::info_tags(&info, &cfg());
    assert_eq!(
        tags.iter().find(|t| t[0] == "protocol_version").unwrap()[1],
        "2"
    );
    check_event(get("info/lightning-node"), 38385, tags);

    for (name, status) in [
        ("dispute/initiated", DisputeStatus::Initiated),
        ("dispute/in-progress", DisputeStatus::InProgress),
    ] {
        let d = Dispute {
            id: "d15b07e0-0000-4000-8000-000000000001"
                .parse::<OrderId>()
                .unwrap(),
            status,
            initiator: Role::Buyer,
            previous_status: Status::FiatSent,
            solver: None,
            solver_write: false,
            taken_by_admin: false,
            created_at: Timestamp(1_767_229_200),
            taken_at: None,
            expiry_warned: false,
            solver_party: None,
        };
        check_event(get(name), 38386, events::dispute_tags(&d, &cfg(), NOW));
    }
}

#[test]
fn relay_list_and_reputation_of_a_user() {
    let tags = events::relay_list_tags(&["wss://a.example".into(), "wss://b.example".into()]);
    assert_eq!(
        tags,
        vec![vec!["r", "wss://a.example"], vec!["r", "wss://b.example"]]
    );
    let e = events::sign(&keys("mostro"), 10002, tags, NOW).unwrap();
    e.verify().unwrap();

    let user = mostro_core::ports::User {
        reviews: 4,
        rating_sum: 18,
        created_at: Timestamp(1_700_784_000 + 5_000),
        ..Default::default()
    };
    let r = Reputation::of(&user, NOW);
    assert_eq!(
        (r.total_reviews, r.since, r.days),
        (4, Some(1_700_784_000), 768)
    );
    assert!((r.total_rating - 4.5).abs() < 1e-12);
    let unknown = Reputation::of(&mostro_core::ports::User::default(), NOW);
    assert_eq!(
        (unknown.since, unknown.days, unknown.total_reviews),
        (None, 0, 0)
    );
    let o = order(
        "308e1272-d5f4-47e6-bd97-3504baea9c23",
        Kind::Sell,
        Status::Pending,
        1000,
    );
    let tags = events::order_tags(&o, &cfg(), Some(&unknown), NOW).unwrap();
    assert_eq!(
        tags[8][1],
        r#"["rating",{"days":0,"total_rating":0.0,"total_reviews":0}]"#
    );
}

/// The dispute event carries the escrow HTLC's expiry height, when known, as one extra tag
/// after the vector's tags; without it the event is exactly the vector's.
#[test]
fn dispute_event_adds_the_escrow_expiry_after_the_vector_tags() {
    use mostro_core::order::HoldState;
    use mostro_testkit::store_suite::{hash, with_hold};

    let lines = read_lines("orders-events.jsonl");
    let line = lines
        .iter()
        .find(|l| l["name"] == "dispute/initiated")
        .unwrap();
    let d = Dispute {
        id: "d15b07e0-0000-4000-8000-000000000001"
            .parse::<OrderId>()
            .unwrap(),
        status: DisputeStatus::Initiated,
        initiator: Role::Buyer,
        previous_status: Status::FiatSent,
        solver: None,
        solver_write: false,
        taken_by_admin: false,
        created_at: Timestamp(1_767_229_200),
        taken_at: None,
        expiry_warned: false,
        solver_party: None,
    };
    let mut o = order(
        "308e1272-d5f4-47e6-bd97-3504baea9c23",
        Kind::Sell,
        Status::Dispute,
        150_000,
    );
    o.dispute = Some(d.clone());

    // No hold, or a hold whose HTLC expiry is unknown: the vector, byte for byte.
    assert!(events::order_dispute_tags(&o, &cfg(), NOW).is_some());
    check_event(
        line,
        38386,
        events::order_dispute_tags(&o, &cfg(), NOW).unwrap(),
    );
    let unknown = with_hold(o.clone(), hash(1), HoldState::Accepted, None);
    check_event(
        line,
        38386,
        events::order_dispute_tags(&unknown, &cfg(), NOW).unwrap(),
    );

    // Known: the vector's tags unchanged and in order, then the expiry.
    let held = with_hold(o.clone(), hash(1), HoldState::Accepted, Some(850_123));
    let tags = events::order_dispute_tags(&held, &cfg(), NOW).unwrap();
    let want = vector_tags(line);
    assert_eq!(tags.len(), want.len() + 1);
    assert_eq!(tags[..want.len()], want[..]);
    assert_eq!(
        tags.last().unwrap(),
        &vec![events::ESCROW_EXPIRY_TAG.to_owned(), "850123".to_owned()]
    );
    assert_eq!(
        events::dispute_tags_with_escrow(
            &d,
            Some(mostro_core::types::BlockHeight(850_123)),
            &cfg(),
            NOW
        ),
        tags
    );
    let e = events::sign(&keys("mostro"), 38386, tags, NOW).unwrap();
    e.verify().unwrap();

    // An order without a dispute has no dispute event.
    let mut none = held;
    none.dispute = None;
    assert_eq!(events::order_dispute_tags(&none, &cfg(), NOW), None);
}

/// The health event (kind 38389) has no reference vector: its layout is ours (docs/transport.md).
#[test]
fn health_event_tags() {
    use mostro_nostr::events::{Health, HealthCheck};
    let check = |name: &str, ok: bool, detail: &str| HealthCheck {
        name: name.into(),
        ok,
        detail: detail.into(),
    };
    let mut h = Health {
        checks: vec![
            check("store", true, ""),
            check("lightning", true, ""),
            check("relays", true, "2/2"),
            check("outbox", true, "0 pending"),
        ],
        interval_secs: 60,
    };
    let c = cfg();
    let tags = events::health_tags(&h, &c, NOW);
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let expiration = (NOW + 180).to_string();
    assert_eq!(
        tags,
        vec![
            s(&["d", &c.node_pubkey]),
            s(&["z", "health"]),
            s(&["status", "ok"]),
            s(&["check", "store", "ok", ""]),
            s(&["check", "lightning", "ok", ""]),
            s(&["check", "relays", "ok", "2/2"]),
            s(&["check", "outbox", "ok", "0 pending"]),
            s(&["y", "mostro", "Mostro Example"]),
            s(&["expiration", &expiration]),
        ]
    );
    // One failed check makes the report unavailable; a long error is cut at a char boundary.
    h.checks[1] = check("lightning", false, &"é".repeat(300));
    let tags = events::health_tags(&h, &c, NOW);
    assert_eq!(tags[2], s(&["status", "unavailable"]));
    assert_eq!(tags[4][2], "fail");
    assert_eq!(tags[4][3].len(), 200);
}

/// The exchange-rates event (kind 30078): tags and content as the reference documents them.
#[test]
fn exchange_rates_event() {
    use mostro_nostr::events::{Rates, rates_content, rates_tags};
    let r = Rates {
        prices: [
            ("USD".to_owned(), 50_000.0),
            ("VES".to_owned(), 850_000_000.0),
            ("EUR".to_owned(), 45_000.5),
            ("BAD".to_owned(), f64::NAN),
        ]
        .into_iter()
        .collect(),
        source: "yadio".into(),
        interval_secs: 300,
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    assert_eq!(
        rates_tags(&r, NOW),
        vec![
            s(&["d", "mostro-rates"]),
            s(&["published_at", &NOW.to_string()]),
            s(&["source", "yadio"]),
            s(&["expiration", &(NOW + 600).to_string()]),
        ]
    );
    // Never more than an hour ahead.
    let slow = Rates {
        interval_secs: 86_400,
        ..r.clone()
    };
    assert_eq!(rates_tags(&slow, NOW)[3][1], (NOW + 3600).to_string());
    assert_eq!(
        rates_content(&r),
        r#"{"BTC":{"BTC":1,"EUR":45000.5,"USD":50000.0,"VES":850000000.0}}"#
    );
}
