//! The intake pipeline with an injected clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::keys;
use mostro_core::wire::Message;
use mostro_nostr::client::{ClientKeys, WrapOptions, wrap_v1, wrap_v2};
use mostro_nostr::intake::{Intake, IntakeConfig, IntakeDrop};
use mostro_nostr::{UnwrapError, v1, v2};
use nostr_sdk::{Event, EventBuilder, EventId, Keys, Kind, PublicKey, Timestamp};

const T: u64 = 1_800_000_000;

fn msg(request_id: u64) -> Message {
    Message::from_json(&format!(
        r#"{{"order":{{"version":2,"request_id":{request_id},"trade_index":null,"id":"308e1272-d5f4-47e6-bd97-3504baea9c23","action":"fiat-sent","payload":null}}}}"#
    ))
    .unwrap()
}

fn opts(at: u64) -> WrapOptions {
    WrapOptions {
        created_at: Some(Timestamp::from_secs(at)),
        ..WrapOptions::default()
    }
}

fn client() -> ClientKeys {
    ClientKeys::reputation(keys("client_trade"), keys("client_identity"))
}

fn node() -> Keys {
    keys("mostro")
}

/// The defaults with a ten-second live window (the tests below count on it).
fn cfg() -> IntakeConfig {
    IntakeConfig {
        freshness_secs: Some(10),
        ..IntakeConfig::default()
    }
}

#[test]
fn the_defaults_allow_minutes_of_clock_skew_live_and_a_day_of_downtime() {
    let d = IntakeConfig::default();
    assert_eq!(d.freshness_secs, Some(300));
    assert_eq!(d.catch_up_horizon_secs, 86_400);
    let e = wrap_v2(&msg(1), &client(), &node().public_key(), opts(T)).unwrap();
    // A client two minutes behind.
    assert!(Intake::new(d.clone()).accept(&e, &node(), T + 120).is_ok());
}

#[test]
fn a_stored_event_is_judged_by_the_catch_up_horizon_not_the_live_window() {
    let c = IntakeConfig {
        catch_up_horizon_secs: 3600,
        ..cfg()
    };
    let e = wrap_v2(&msg(1), &client(), &node().public_key(), opts(T)).unwrap();
    // Ten minutes old: stale live, fine from a relay's storage after a restart.
    assert_eq!(
        Intake::new(c.clone()).accept(&e, &node(), T + 600),
        Err(IntakeDrop::Stale)
    );
    assert!(
        Intake::new(c.clone())
            .accept_stored(&e, &node(), T + 600)
            .is_ok()
    );
    // Beyond the horizon it is stale either way.
    assert_eq!(
        Intake::new(c.clone()).accept_stored(&e, &node(), T + 3601),
        Err(IntakeDrop::Stale)
    );
    // v1: the rumor's time counts, as live.
    let old = wrap_v1(&msg(2), &client(), &node().public_key(), opts(T)).unwrap();
    assert!(
        Intake::new(c.clone())
            .accept_stored(&old, &node(), T + 600)
            .is_ok()
    );
    // The in-memory replay guard applies to stored events too.
    let mut i = Intake::new(c);
    assert!(i.accept_stored(&e, &node(), T + 5).is_ok());
    assert_eq!(i.accept_stored(&e, &node(), T + 6), Err(IntakeDrop::Replay));
}

#[test]
fn freshness_v2_uses_the_event_time() {
    let e = wrap_v2(&msg(1), &client(), &node().public_key(), opts(T)).unwrap();
    assert!(Intake::new(cfg()).accept(&e, &node(), T + 10).is_ok());
    assert_eq!(
        Intake::new(cfg()).accept(&e, &node(), T + 11),
        Err(IntakeDrop::Stale)
    );
    // Dated ahead: accepted up to max_future_secs (300 s by default), refused beyond.
    assert!(Intake::new(cfg()).accept(&e, &node(), T - 300).is_ok());
    assert_eq!(
        Intake::new(cfg()).accept(&e, &node(), T - 301),
        Err(IntakeDrop::Future)
    );
    let unbounded = IntakeConfig {
        max_future_secs: None,
        ..cfg()
    };
    assert!(
        Intake::new(unbounded)
            .accept(&e, &node(), T - 100_000)
            .is_ok()
    );
    // Configurable.
    let wide = IntakeConfig {
        freshness_secs: Some(60),
        ..cfg()
    };
    assert!(Intake::new(wide).accept(&e, &node(), T + 60).is_ok());
    let off = IntakeConfig {
        freshness_secs: None,
        ..cfg()
    };
    assert!(Intake::new(off).accept(&e, &node(), T + 100_000).is_ok());
}

#[test]
fn freshness_v1_uses_the_rumor_time_not_the_wrap_time() {
    let e = wrap_v1(&msg(1), &client(), &node().public_key(), opts(T)).unwrap();
    // The wrap is backdated by up to two days; the rumor is not.
    assert!(e.created_at.as_secs() <= T);
    let u = Intake::new(cfg()).accept(&e, &node(), T + 5).unwrap();
    assert_eq!(u.created_at, T);
    // A rumor stamped 100 s ago is stale whatever the wrap says.
    let old = wrap_v1(&msg(2), &client(), &node().public_key(), opts(T - 100)).unwrap();
    assert_eq!(
        Intake::new(cfg()).accept(&old, &node(), T),
        Err(IntakeDrop::Stale)
    );
}

#[test]
fn replayed_events_are_dropped_until_the_window_passes() {
    let c = IntakeConfig {
        freshness_secs: None,
        replay_window_secs: 60,
        ..cfg()
    };
    let mut intake = Intake::new(c);
    let e = wrap_v2(&msg(1), &client(), &node().public_key(), opts(T)).unwrap();
    assert!(intake.accept(&e, &node(), T).is_ok());
    assert_eq!(intake.accept(&e, &node(), T + 1), Err(IntakeDrop::Replay));
    assert_eq!(intake.accept(&e, &node(), T + 60), Err(IntakeDrop::Replay));
    // Past the window the store's guard takes over.
    assert!(intake.accept(&e, &node(), T + 61).is_ok());
    // `forget` lets a failed event through again.
    intake.forget(&e.id);
    assert!(intake.accept(&e, &node(), T + 62).is_ok());
}

#[test]
fn replay_guard_is_bounded() {
    let c = IntakeConfig {
        freshness_secs: None,
        replay_capacity: 3,
        rate_per_minute: 0,
        ..cfg()
    };
    let mut intake = Intake::new(c);
    let events: Vec<_> = (0..5)
        .map(|i| wrap_v2(&msg(i), &client(), &node().public_key(), opts(T)).unwrap())
        .collect();
    for e in &events {
        assert!(intake.accept(e, &node(), T).is_ok());
    }
    assert!(!intake.has_seen(&events[0].id));
    assert!(!intake.has_seen(&events[1].id));
    assert!(intake.has_seen(&events[4].id));
}

#[test]
fn events_that_fail_to_unwrap_are_not_recorded() {
    let mut intake = Intake::new(IntakeConfig {
        freshness_secs: None,
        ..cfg()
    });
    let e = wrap_v2(&msg(1), &client(), &keys("stranger").public_key(), opts(T)).unwrap();
    assert_eq!(
        intake.accept(&e, &node(), T),
        Err(IntakeDrop::Unwrap(UnwrapError::NotForMe))
    );
    assert!(!intake.has_seen(&e.id));
}

#[test]
fn rate_limit_per_sender_token_bucket() {
    let c = IntakeConfig {
        freshness_secs: None,
        rate_burst: 3,
        rate_per_minute: 60,
        ..cfg()
    };
    let mut intake = Intake::new(c);
    let mut next = 0;
    let mut send = |intake: &mut Intake, who: &ClientKeys, now: u64| {
        next += 1;
        let e = wrap_v2(&msg(next), who, &node().public_key(), opts(now)).unwrap();
        intake.accept(&e, &node(), now)
    };
    let a = client();
    for _ in 0..3 {
        assert!(send(&mut intake, &a, T).is_ok());
    }
    assert_eq!(send(&mut intake, &a, T), Err(IntakeDrop::RateLimited));
    // Another sender has its own bucket.
    let b = ClientKeys::private(keys("attacker_trade"));
    assert!(send(&mut intake, &b, T).is_ok());
    // One token per second comes back.
    assert!(send(&mut intake, &a, T + 1).is_ok());
    assert_eq!(send(&mut intake, &a, T + 1), Err(IntakeDrop::RateLimited));
    // Never more than the burst.
    for _ in 0..3 {
        assert!(send(&mut intake, &a, T + 1000).is_ok());
    }
    assert_eq!(
        send(&mut intake, &a, T + 1000),
        Err(IntakeDrop::RateLimited)
    );
}

#[test]
fn rate_limit_v1_is_keyed_by_the_rumor_author() {
    let c = IntakeConfig {
        freshness_secs: None,
        rate_burst: 2,
        rate_per_minute: 1,
        ..cfg()
    };
    let mut intake = Intake::new(c);
    // Every gift wrap has a fresh outer key; the bucket still fills.
    for i in 0..2 {
        let e = wrap_v1(&msg(i), &client(), &node().public_key(), opts(T)).unwrap();
        assert!(intake.accept(&e, &node(), T).is_ok());
    }
    let e = wrap_v1(&msg(9), &client(), &node().public_key(), opts(T)).unwrap();
    assert_eq!(intake.accept(&e, &node(), T), Err(IntakeDrop::RateLimited));
}

#[test]
fn size_pow_and_kind() {
    let e = wrap_v2(&msg(1), &client(), &node().public_key(), opts(T)).unwrap();
    let small = IntakeConfig {
        max_event_bytes: 100,
        freshness_secs: None,
        ..cfg()
    };
    assert!(matches!(
        Intake::new(small).accept(&e, &node(), T),
        Err(IntakeDrop::TooLarge(_))
    ));

    let pow = IntakeConfig {
        pow: 12,
        freshness_secs: None,
        ..cfg()
    };
    let mined = wrap_v2(
        &msg(2),
        &client(),
        &node().public_key(),
        WrapOptions { pow: 12, ..opts(T) },
    )
    .unwrap();
    assert!(mined.id.check_pow(12));
    assert!(Intake::new(pow.clone()).accept(&mined, &node(), T).is_ok());
    if !e.id.check_pow(12) {
        assert_eq!(
            Intake::new(pow).accept(&e, &node(), T),
            Err(IntakeDrop::Pow)
        );
    }
    // The nonce tag comes after p.
    assert_eq!(mined.tags.first().unwrap().as_slice()[0], "p");
    assert_eq!(mined.tags.iter().nth(1).unwrap().as_slice()[0], "nonce");

    let note = EventBuilder::new(Kind::TextNote, "hi")
        .sign_with_keys(&node())
        .unwrap();
    assert_eq!(
        Intake::new(cfg()).accept(&note, &node(), T),
        Err(IntakeDrop::Kind(1))
    );
}

#[test]
fn own_unsigned_replies_never_loop_but_the_admin_may_use_the_node_key() {
    let mut intake = Intake::new(IntakeConfig {
        freshness_secs: None,
        ..cfg()
    });
    let n = node();
    let now = Timestamp::from_secs(T);
    let reply = v2::wrap_reply(&msg(1), &n, &n.public_key(), now, None).unwrap();
    assert_eq!(intake.accept(&reply, &n, T), Err(IntakeDrop::OwnReply));
    let reply = v1::wrap_reply(&msg(2), &n, &n.public_key(), now).unwrap();
    assert_eq!(intake.accept(&reply, &n, T), Err(IntakeDrop::OwnReply));
    // mostro-cli as admin: node key as identity and trade key, signed.
    let admin = ClientKeys::private(n.clone());
    let req = wrap_v2(&msg(3), &admin, &n.public_key(), opts(T)).unwrap();
    let u = intake.accept(&req, &n, T).unwrap();
    assert!(u.signed);
    assert_eq!(u.sender, n.public_key());
}

#[test]
fn drop_labels_are_stable() {
    assert_eq!(IntakeDrop::Stale.as_str(), "stale");
    assert_eq!(
        IntakeDrop::Unwrap(UnwrapError::NotForMe).as_str(),
        "not_for_me"
    );
    assert_eq!(IntakeDrop::RateLimited.as_str(), "rate_limited");
}

/// `template` re-authored as `victim` without the victim's key: the id is recomputed (a
/// well-formed event) when `valid_id`, the signature is never the victim's.
fn forged(template: &Event, victim: &PublicKey, n: u64, valid_id: bool) -> Event {
    let created_at = Timestamp::from_secs(template.created_at.as_secs() + n);
    let id = if valid_id {
        EventId::new(
            victim,
            &created_at,
            &template.kind,
            &template.tags,
            &template.content,
        )
    } else {
        let mut b = [0x5au8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        EventId::from_byte_array(b)
    };
    Event::new(
        id,
        *victim,
        created_at,
        template.kind,
        template.tags.iter().cloned(),
        template.content.clone(),
        template.sig,
    )
}

fn limited() -> IntakeConfig {
    IntakeConfig {
        freshness_secs: None,
        rate_burst: 2,
        rate_per_minute: 1,
        ..cfg()
    }
}

#[test]
fn forged_events_with_a_victims_key_do_not_drain_its_rate_limit() {
    let mut intake = Intake::new(limited());
    let victim = client();
    let victim_key = victim.trade.public_key();
    // The attacker's own well-formed event, re-labelled with the victim's key.
    let attacker = ClientKeys::private(keys("attacker_trade"));
    let template = wrap_v2(&msg(1), &attacker, &node().public_key(), opts(T)).unwrap();
    for n in 0..20 {
        for valid_id in [true, false] {
            let f = forged(&template, &victim_key, n, valid_id);
            assert_eq!(f.pubkey, victim_key);
            assert!(f.verify().is_err());
            assert_eq!(
                intake.accept(&f, &node(), T),
                Err(IntakeDrop::Unwrap(UnwrapError::InvalidEvent)),
                "forgery {n} (valid id: {valid_id})"
            );
        }
    }
    // The victim's own budget is intact: its burst goes through, then its own limit applies.
    for i in 0..2 {
        let e = wrap_v2(&msg(100 + i), &victim, &node().public_key(), opts(T)).unwrap();
        assert!(intake.accept(&e, &node(), T).is_ok(), "genuine message {i}");
    }
    let e = wrap_v2(&msg(200), &victim, &node().public_key(), opts(T)).unwrap();
    assert_eq!(intake.accept(&e, &node(), T), Err(IntakeDrop::RateLimited));
    // Once the victim is out of tokens, forgeries stop at the cheap pre-check (no signature
    // check), still without touching the bucket.
    let f = forged(&template, &victim_key, 99, true);
    assert_eq!(intake.precheck(&f, T), Err(IntakeDrop::RateLimited));
    let e = wrap_v2(&msg(201), &victim, &node().public_key(), opts(T + 60)).unwrap();
    assert!(
        intake.accept(&e, &node(), T + 60).is_ok(),
        "the refill is the victim's"
    );
}

#[test]
fn replayed_stale_or_misaddressed_genuine_events_do_not_drain_the_sender() {
    let mut intake = Intake::new(IntakeConfig {
        freshness_secs: Some(10),
        ..limited()
    });
    let victim = client();
    for i in 0..5 {
        // Old genuine messages a relay kept (past the replay window): dropped as stale.
        let old = wrap_v2(&msg(i), &victim, &node().public_key(), opts(T - 1000)).unwrap();
        assert_eq!(intake.accept(&old, &node(), T), Err(IntakeDrop::Stale));
        let old = wrap_v1(&msg(i), &victim, &node().public_key(), opts(T - 1000)).unwrap();
        assert_eq!(intake.accept(&old, &node(), T), Err(IntakeDrop::Stale));
        // Genuine messages to another node, delivered to us (twice: they are not remembered).
        let other = wrap_v2(&msg(i), &victim, &keys("stranger").public_key(), opts(T)).unwrap();
        for _ in 0..2 {
            assert_eq!(
                intake.accept(&other, &node(), T),
                Err(IntakeDrop::Unwrap(UnwrapError::NotForMe))
            );
        }
    }
    for i in 0..2 {
        let e = wrap_v2(&msg(10 + i), &victim, &node().public_key(), opts(T)).unwrap();
        assert!(intake.accept(&e, &node(), T).is_ok(), "fresh message {i}");
    }
    let e = wrap_v2(&msg(20), &victim, &node().public_key(), opts(T)).unwrap();
    assert_eq!(intake.accept(&e, &node(), T), Err(IntakeDrop::RateLimited));
}

#[test]
fn the_pre_check_never_takes_a_token() {
    let mut intake = Intake::new(limited());
    let e = wrap_v2(&msg(1), &client(), &node().public_key(), opts(T)).unwrap();
    for _ in 0..10 {
        assert_eq!(intake.precheck(&e, T), Ok(()));
    }
    for i in 0..2 {
        let e = wrap_v2(&msg(2 + i), &client(), &node().public_key(), opts(T)).unwrap();
        assert!(intake.accept(&e, &node(), T).is_ok());
    }
}

#[test]
fn a_first_contact_needs_its_own_proof_of_work_a_known_trade_key_does_not() {
    let config = IntakeConfig {
        pow: 2,
        pow_first_contact: 12,
        ..cfg()
    };
    let n = node();
    let c = client();
    let wrap_at = |pow: u8, id: u64, at: u64| {
        let o = WrapOptions { pow, ..opts(at) };
        wrap_v2(&msg(id), &c, &n.public_key(), o).unwrap()
    };
    let wrap = |pow: u8, id: u64| wrap_at(pow, id, T);
    let mut intake = Intake::new(config.clone());
    assert!(intake.first_contact_enabled());
    // Unknown sender: the base work is not enough, the first-contact work is.
    let light = wrap(2, 1);
    assert_eq!(
        intake.accept(&light, &n, T).unwrap_err(),
        IntakeDrop::FirstContactPow
    );
    assert_eq!(IntakeDrop::FirstContactPow.as_str(), "pow_first_contact");
    assert!(intake.accept(&wrap(12, 2), &n, T).is_ok());
    // Known (an open trade in the records): the base work is enough, none is not.
    intake.set_known([c.trade.public_key()], T);
    assert!(intake.accept(&wrap(2, 3), &n, T).is_ok());
    let none = wrap(0, 4);
    if !none.id.check_pow(2) {
        assert_eq!(intake.accept(&none, &n, T).unwrap_err(), IntakeDrop::Pow);
    }
    // A rebuild without it (the trade ended): a first contact again.
    intake.set_known([], T + 60);
    assert_eq!(
        intake
            .accept(&wrap_at(2, 5, T + 60), &n, T + 60)
            .unwrap_err(),
        IntakeDrop::FirstContactPow
    );
    // The node answered its new order: known at once, and still after a rebuild that read the
    // records just before the trade was committed, until the records catch up.
    intake.add_known(c.trade.public_key(), T + 61);
    assert!(intake.accept(&wrap_at(2, 6, T + 61), &n, T + 61).is_ok());
    intake.set_known([], T + 120);
    assert!(intake.accept(&wrap_at(2, 7, T + 120), &n, T + 120).is_ok());
    intake.set_known([], T + 400);
    assert_eq!(
        intake
            .accept(&wrap_at(2, 8, T + 400), &n, T + 400)
            .unwrap_err(),
        IntakeDrop::FirstContactPow
    );
}

#[test]
fn v1_and_a_first_contact_level_below_pow_need_only_pow() {
    let n = node();
    let c = client();
    // v1: the outer key is throwaway, so there is no first contact to recognize.
    let mut intake = Intake::new(IntakeConfig {
        pow_first_contact: 30,
        ..cfg()
    });
    let e = wrap_v1(&msg(1), &c, &n.public_key(), opts(T)).unwrap();
    assert!(intake.accept(&e, &n, T).is_ok());
    // Not above pow: off.
    let off = Intake::new(IntakeConfig {
        pow: 0,
        pow_first_contact: 0,
        ..cfg()
    });
    assert!(!off.first_contact_enabled());
    let mut off = off;
    let e = wrap_v2(&msg(2), &c, &n.public_key(), opts(T)).unwrap();
    assert!(off.accept(&e, &n, T).is_ok());
}
