//! Property tests over the inbound path: raw event JSON bytes -> parse ->
//! intake (unwrap) -> `to_request`. Nothing may panic, whatever arrives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{keys, read_lines};
use mostro_core::wire::map::to_request;
use mostro_nostr::intake::{Intake, IntakeConfig};
use nostr_sdk::nips::nip44;
use nostr_sdk::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag};
use proptest::prelude::*;

/// Runs the whole inbound path on raw bytes; returns whether a request came
/// out. Must never panic.
fn inbound(bytes: &[u8], node: &Keys) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Ok(event) = Event::from_json(text) else {
        return false;
    };
    let cfg = IntakeConfig {
        freshness_secs: None,
        max_future_secs: None,
        ..IntakeConfig::default()
    };
    let mut intake = Intake::new(cfg);
    match intake.accept(&event, node, 1_795_461_900) {
        Ok(u) => to_request(&u.message, &u.inbound()).is_ok(),
        Err(_) => false,
    }
}

fn vector_events() -> Vec<String> {
    let mut out = Vec::new();
    for file in ["v2-events.jsonl", "v1-giftwraps.jsonl"] {
        for line in read_lines(file) {
            out.push(serde_json::to_string(&line["event"]).unwrap());
        }
    }
    out
}

/// A kind-14 event from `author` to the node whose content is the NIP-44
/// encryption of `plaintext` (so the tuple parser sees arbitrary text).
fn encrypted_to_node(author: &Keys, plaintext: &str, kind: u16) -> Event {
    let node = keys("mostro").public_key();
    let content =
        nip44::encrypt(author.secret_key(), &node, plaintext, nip44::Version::V2).unwrap();
    EventBuilder::new(Kind::from(kind), content)
        .tag(Tag::public_key(node))
        .sign_with_keys(author)
        .unwrap()
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z_-]{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("order"),
            Just("restore"),
            Just("new-order"),
            Just("take-sell"),
            Just("payment_request"),
            Just("next_trade"),
            Just("308e1272-d5f4-47e6-bd97-3504baea9c23"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("order".to_owned()),
                    Just("version".to_owned()),
                    Just("action".to_owned()),
                    Just("payload".to_owned()),
                    Just("id".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        inbound(&bytes, &keys("mostro"));
    }

    #[test]
    fn mutated_vector_events_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let events = vector_events();
        let mut bytes = pick.get(&events).clone().into_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        inbound(&bytes, &keys("mostro"));
    }

    #[test]
    fn arbitrary_plaintext_in_a_valid_envelope_never_panics(
        text in ".{1,400}",
        v1_kind in any::<bool>(),
    ) {
        let author = keys("client_trade");
        let e = encrypted_to_node(&author, &text, if v1_kind { 1059 } else { 14 });
        inbound(e.as_json().as_bytes(), &keys("mostro"));
    }

    #[test]
    fn arbitrary_tuples_in_a_valid_envelope_never_panic(value in json_value()) {
        let author = keys("client_trade");
        let e = encrypted_to_node(&author, &value.to_string(), 14);
        inbound(e.as_json().as_bytes(), &keys("mostro"));
    }

    #[test]
    fn arbitrary_messages_in_a_valid_tuple_never_panic(
        message in json_value(),
        sig in prop_oneof![Just(serde_json::Value::Null), "[0-9a-f]{0,130}".prop_map(serde_json::Value::from)],
    ) {
        // [message, sig, null]: reaches the message parser and, when it
        // parses, the signature check and `to_request`.
        let tuple = serde_json::json!([{ "order": message }, sig, null]);
        let author = keys("client_trade");
        let e = encrypted_to_node(&author, &tuple.to_string(), 14);
        inbound(e.as_json().as_bytes(), &keys("mostro"));
    }
}

#[test]
fn every_accepted_vector_event_still_passes_the_path() {
    // Sanity check of the harness: the unmodified client events addressed to
    // the node come out as requests, except the daemon-level rejects.
    let node = keys("mostro");
    let mut ok = 0;
    for file in ["v2-events.jsonl", "v1-giftwraps.jsonl"] {
        for line in read_lines(file) {
            let bytes = serde_json::to_string(&line["event"]).unwrap();
            // The gift wrap the v2 file uses as a cross-protocol reject is a
            // valid v1 request: the node speaks both.
            let want = (line["expect"] == "accept" && line["to"] == "mostro")
                || line["name"] == "reject/v1-gift-wrap-on-v2-transport";
            assert_eq!(inbound(bytes.as_bytes(), &node), want, "{}", line["name"]);
            ok += usize::from(want);
        }
    }
    assert_eq!(ok, 13);
}
