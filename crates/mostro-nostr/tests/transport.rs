//! `NostrTransport` without relays: reply building in each protocol, and a
//! publish that has nowhere to go.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::{core_key, keys};
use mostro_core::machine::{Notice, Notify};
use mostro_core::order::Protocol;
use mostro_core::ports::{Transport, User};
use mostro_core::types::{PubKey, Timestamp};
use mostro_core::wire::map::to_message_at;
use mostro_nostr::client::open_reply;
use mostro_nostr::{NostrTransport, TransportConfig};
use mostro_testkit::ManualClock;

const NOW: u64 = 1_800_000_000;

fn transport() -> NostrTransport {
    let cfg = TransportConfig::new(&keys("mostro"), Vec::new());
    NostrTransport::new(
        keys("mostro"),
        cfg,
        Arc::new(ManualClock::new(Timestamp(NOW))),
        None,
    )
}

fn notify(protocol: Protocol, notice: Notice) -> Notify {
    Notify {
        to: core_key("client_trade"),
        protocol,
        request_id: Some(12),
        order_id: None,
        trade_index: None,
        notice,
    }
}

#[test]
fn v2_reply_is_a_node_signed_kind_14_with_expiration() {
    let t = transport();
    let n = notify(Protocol::V2, Notice::LastTradeIndex(4));
    let e = t.build_reply(&n).unwrap();
    assert_eq!(e.kind.as_u16(), 14);
    assert_eq!(e.pubkey, keys("mostro").public_key());
    assert_eq!(e.created_at.as_secs(), NOW);
    let tags: Vec<Vec<String>> = e.tags.iter().map(|t| t.as_slice().to_vec()).collect();
    assert_eq!(
        tags[0],
        vec!["p".to_owned(), keys("client_trade").public_key().to_hex()]
    );
    assert_eq!(
        tags[1],
        vec!["expiration".to_owned(), (NOW + 30 * 86_400).to_string()]
    );
    let u = open_reply(&e, &keys("client_trade")).unwrap();
    assert_eq!(u.message, to_message_at(&n, Timestamp(NOW)));
    assert_eq!(u.message.kind().version, 2);
    assert_eq!(u.plaintext, format!("[{},null,null]", u.message.to_json()));
}

#[test]
fn v1_reply_is_a_gift_wrap_sealed_by_the_node() {
    let t = transport();
    let user = User {
        reviews: 2,
        rating_sum: 9,
        created_at: Timestamp(NOW - 3 * 86_400),
        ..User::default()
    };
    let n = notify(Protocol::V1, Notice::UserInfo(user));
    let e = t.build_reply(&n).unwrap();
    assert_eq!(e.kind.as_u16(), 1059);
    assert_ne!(
        e.pubkey,
        keys("mostro").public_key(),
        "wrapped by a throwaway key"
    );
    let u = open_reply(&e, &keys("client_trade")).unwrap();
    assert_eq!(
        (u.sender, u.identity),
        (keys("mostro").public_key(), keys("mostro").public_key())
    );
    assert_eq!(u.created_at, NOW);
    assert_eq!(u.message.kind().version, 1);
    // user-info uses the transport's clock for the operating days.
    assert!(
        u.message.to_json().contains(r#""operating_days":3"#),
        "{}",
        u.message.to_json()
    );
}

#[test]
fn invalid_recipient_is_an_error_not_a_panic() {
    let t = transport();
    let mut n = notify(Protocol::V2, Notice::Released);
    n.to = PubKey([0xff; 32]);
    assert!(t.build_reply(&n).is_err());
}

#[tokio::test]
async fn sending_without_relays_fails_so_the_engine_retries_later() {
    let t = transport();
    let err = t
        .send(&notify(Protocol::V2, Notice::Released))
        .await
        .unwrap_err();
    assert!(err.message.contains("publish"), "{err}");
    assert!(!err.permanent, "relays down is transient: {err}");
}

#[test]
fn an_invalid_recipient_is_a_permanent_error() {
    let t = transport();
    for to in [PubKey([0xff; 32]), PubKey([0; 32])] {
        assert!(!to.is_on_curve());
        for protocol in [Protocol::V2, Protocol::V1] {
            let mut n = notify(protocol, Notice::Released);
            n.to = to;
            let err = t.build_reply(&n).unwrap_err();
            assert!(err.permanent, "{protocol:?} {to:?}: {err:?}");
            assert!(err.message.contains("not a valid public key"), "{err}");
        }
    }
}

#[tokio::test]
async fn a_message_over_the_nip44_limit_is_a_permanent_error() {
    let t = transport();
    let order = Box::new(mostro_testkit::store_suite::order(
        1,
        core_key("client_identity"),
    ));
    let notice = |len: usize| Notice::PayInvoice {
        order: order.clone(),
        bolt11: "x".repeat(len),
    };
    // Under the limit (nostr-sdk's NIP-44 takes up to 65 408 bytes): v2 adds only the tuple.
    let fits = notify(Protocol::V2, notice(1000));
    let base = to_message_at(&fits, Timestamp(NOW)).to_json().len() - 1000;
    let under = notify(
        Protocol::V2,
        notice(mostro_nostr::MAX_PLAINTEXT - base - 200),
    );
    if let Err(e) = t.build_reply(&under) {
        panic!("under the limit: {e:?}");
    }
    // The same message in v1 does not fit the gift wrap (the seal holds the encrypted rumor):
    // the encryption error is permanent too.
    let mut v1 = under.clone();
    v1.protocol = Protocol::V1;
    let err = t.build_reply(&v1).unwrap_err();
    assert!(err.permanent, "{err:?}");
    for protocol in [Protocol::V2, Protocol::V1] {
        let n = notify(protocol, notice(mostro_nostr::MAX_PLAINTEXT));
        let err = t.build_reply(&n).unwrap_err();
        assert!(err.permanent, "{protocol:?}: {err:?}");
        assert!(err.message.contains("NIP-44 limit"), "{err}");
        // `send` reports the same permanent error without trying a relay.
        let err = t.send(&n).await.unwrap_err();
        assert!(err.permanent, "{err:?}");
    }
}
