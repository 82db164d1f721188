//! Wire compatibility of `mostro_core::wire` against the protocol test vectors
//! (testdata/protocol/vectors, produced with mostro-core 0.17.3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mostro_core::wire::{
    Action, CantDoReason, Message, MessageKind, PROTOCOL_VERSION, Payload, Peer, UserInfo,
};
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

#[test]
fn messages_jsonl_round_trip_verify_and_names() {
    let lines = read_lines("messages.jsonl");
    assert_eq!(lines.len(), 139);
    let mut failures = Vec::new();
    for line in &lines {
        let name = line["name"].as_str().unwrap();
        let json = serde_json::to_string(&line["json"]).unwrap();
        let msg = match Message::from_json(&json) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: parse error {e}"));
                continue;
            },
        };
        let expected = if line["roundtrip"].as_bool().unwrap() {
            json.clone()
        } else {
            serde_json::to_string(&line["reserialized"]).unwrap()
        };
        let out = msg.to_json();
        if out != expected {
            failures.push(format!(
                "{name}: serialized\n  got  {out}\n  want {expected}"
            ));
        }
        let want_verify = line["verify"].as_bool().unwrap();
        if msg.verify() != want_verify || msg.kind().verify() != want_verify {
            failures.push(format!("{name}: verify() != {want_verify}"));
        }
        if msg.wrapper_name() != line["wrapper"].as_str().unwrap() {
            failures.push(format!("{name}: wrapper {}", msg.wrapper_name()));
        }
        if msg.kind().action.as_str() != line["action"].as_str().unwrap() {
            failures.push(format!("{name}: action {}", msg.kind().action));
        }
        // The parsed value re-parses to itself.
        assert_eq!(Message::from_json(&out).unwrap(), msg, "{name}");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_action_and_cant_do_reason_is_covered() {
    let lines = read_lines("messages.jsonl");
    let mut actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    actions.sort_unstable();
    actions.dedup();
    assert_eq!(actions.len(), 59);
    assert_eq!(Action::ALL.len(), 59);
    for a in Action::ALL {
        assert!(actions.contains(&a.as_str()), "{a} not in vectors");
        assert_eq!(a.as_str().parse::<Action>().unwrap(), *a);
    }
    // 47 named reasons plus the catch-all.
    assert_eq!(CantDoReason::ALL.len(), 48);
    for r in CantDoReason::ALL {
        let name = format!("cant-do/{r}");
        assert!(
            lines.iter().any(|l| l["name"] == name.as_str()),
            "{name} missing"
        );
    }
}

fn v2_plaintext_message(line: &Value) -> Option<String> {
    let tuple: Value = serde_json::from_str(line["plaintext"].as_str()?).ok()?;
    Some(serde_json::to_string(tuple.get(0)?).unwrap())
}

#[test]
fn v2_events_messages_parse_or_reject_like_the_reference() {
    let lines = read_lines("v2-events.jsonl");
    let mut accepted = 0;
    for line in &lines {
        let name = line["name"].as_str().unwrap();
        if line["expect"] == "accept" {
            let message = &line["message"];
            assert!(!message.is_null(), "{name}");
            let msg = Message::from_json(&serde_json::to_string(message).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // The plaintext's first element parses to the same message.
            let from_plain = Message::from_json(&v2_plaintext_message(line).unwrap()).unwrap();
            assert_eq!(from_plain, msg, "{name}");
            assert_canonical_when_complete(name, message, &msg);
            accepted += 1;
        } else if !line["message"].is_null() {
            Message::from_json(&serde_json::to_string(&line["message"]).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    assert_eq!(accepted, 11);

    for name in [
        "reject/malformed-tuple/small-order-unknown-field",
        "reject/malformed-tuple/unknown-action",
        "reject/malformed-tuple/unknown-message-wrapper",
    ] {
        let line = lines.iter().find(|l| l["name"] == name).expect(name);
        let text = v2_plaintext_message(line).expect(name);
        assert!(Message::from_json(&text).is_err(), "{name} must not parse");
    }

    // The daemon-level verify reject: parses, verify() is false.
    let line = lines
        .iter()
        .find(|l| l["name"] == "reject/daemon/message-fails-verify")
        .unwrap();
    let msg = Message::from_json(&serde_json::to_string(&line["message"]).unwrap()).unwrap();
    assert!(!msg.verify());
}

/// A message carrying every always-written key re-serializes byte for byte.
fn assert_canonical_when_complete(name: &str, message: &Value, msg: &Message) {
    let inner = message.as_object().unwrap().values().next().unwrap();
    if inner.get("request_id").is_some() && inner.get("trade_index").is_some() {
        assert_eq!(
            msg.to_json(),
            serde_json::to_string(message).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn v1_giftwrap_messages_parse() {
    let lines = read_lines("v1-giftwraps.jsonl");
    let mut parsed = 0;
    for line in &lines {
        let name = line["name"].as_str().unwrap();
        let message = &line["message"];
        if message.is_null() {
            continue;
        }
        let msg = Message::from_json(&serde_json::to_string(message).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_canonical_when_complete(name, message, &msg);
        parsed += 1;
    }
    assert_eq!(parsed, 12);
}

#[test]
fn unknown_cant_do_reason_parses_as_unknown_and_writes_unknown() {
    let json = r#"{"cant-do":{"version":2,"request_id":null,"trade_index":null,"action":"cant-do","payload":{"cant_do":"brand_new_reason"}}}"#;
    let msg = Message::from_json(json).unwrap();
    assert_eq!(
        msg.kind().payload,
        Some(Payload::CantDo(Some(CantDoReason::Unknown)))
    );
    assert!(
        msg.to_json()
            .ends_with(r#""payload":{"cant_do":"unknown"}}}"#)
    );
    assert_eq!(
        "whatever".parse::<CantDoReason>(),
        Ok(CantDoReason::Unknown)
    );
    assert_eq!(
        serde_json::to_string(&CantDoReason::NotFound).unwrap(),
        r#""not_found""#
    );
}

#[test]
fn unknown_wrapper_action_and_order_key_fail() {
    let bad = [
        r#"{"trade":{"version":2,"request_id":null,"trade_index":null,"action":"cancel","payload":null}}"#,
        r#"{"order":{"version":2,"request_id":null,"trade_index":null,"action":"release-now","payload":null}}"#,
        r#"{"order":{"version":2,"request_id":null,"trade_index":null,"action":"cancel","payload":null},"dm":{"version":2,"action":"cancel"}}"#,
        r#"{"order":{"version":2,"action":"new-order","payload":{"order":{"kind":"sell","status":"pending","amount":1,"fiat_code":"EUR","min_amount":null,"max_amount":null,"fiat_amount":1,"payment_method":"x","premium":0,"created_at":0,"expires_at":null,"foo":1}}}}"#,
    ];
    for json in bad {
        assert!(Message::from_json(json).is_err(), "{json}");
    }
    assert!("release-now".parse::<Action>().is_err());
}

#[test]
fn large_request_id_is_exact() {
    let id = u64::MAX - 1;
    let msg = Message::Order(MessageKind::new(
        None,
        Some(id),
        Some(1),
        Action::Orders,
        None,
    ));
    let json = msg.to_json();
    assert_eq!(
        json,
        format!(
            r#"{{"order":{{"version":{PROTOCOL_VERSION},"request_id":{id},"trade_index":1,"action":"orders","payload":null}}}}"#
        )
    );
    let back = Message::from_json(&json).unwrap();
    assert_eq!(back.kind().request_id, Some(id));
}

#[test]
fn missing_optional_keys_are_absent() {
    let msg = Message::from_json(r#"{"dm":{"version":1,"action":"send-dm"}}"#).unwrap();
    let kind = msg.kind();
    assert_eq!(
        (kind.request_id, kind.trade_index, kind.id, &kind.payload),
        (None, None, None, &None)
    );
    assert_eq!(
        msg.to_json(),
        r#"{"dm":{"version":1,"request_id":null,"trade_index":null,"action":"send-dm","payload":null}}"#
    );
}

#[test]
fn user_info_since_is_truncated_to_utc_day_and_omitted_when_absent() {
    let mut msg = Message::Order(MessageKind::new(
        None,
        None,
        None,
        Action::FiatSentOk,
        Some(Payload::Peer(Peer {
            pubkey: "ab".into(),
            reputation: Some(UserInfo {
                rating: 5.0,
                reviews: 1,
                operating_days: 3,
                since: Some(1_700_784_000 + 12_345),
            }),
        })),
    ));
    assert!(msg.to_json().contains(
        r#"{"peer":{"pubkey":"ab","reputation":{"rating":5.0,"reviews":1,"operating_days":3,"since":1700784000}}}"#
    ));
    if let Some(Payload::Peer(peer)) = &mut msg.kind_mut().payload {
        peer.reputation.as_mut().unwrap().since = None;
    }
    assert!(
        msg.to_json()
            .contains(r#""reputation":{"rating":5.0,"reviews":1,"operating_days":3}"#)
    );
}
