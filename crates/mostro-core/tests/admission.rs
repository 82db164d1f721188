//! Table-driven tests of the machine's admission rules (`machine::admit` and the checks beside
//! it): pure calls, no engine, no store. The engine only gathers the facts these rules read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mostro_core::machine::{
    self, Admitted, Authority, DestinationKind, Facts, MAX_RESTORE, Notice, Reject, UserUpdate,
};
use mostro_core::order::{NextTrade, Protocol, Status};
use mostro_core::policy::Policy;
use mostro_core::types::{DecodedInvoice, Network, PaymentHash, PubKey, Sats, Timestamp};
use mostro_core::user::{Solver, User};
use mostro_testkit::Trader;
use mostro_testkit::scenario::T0;
use mostro_testkit::store_suite::order;

fn facts<'a>(t: &Trader, index: Option<i64>, opens: bool, node: &Trader) -> Facts<'a> {
    Facts {
        sender: t.trade_key,
        identity: t.identity,
        protocol: t.protocol,
        trade_index: index,
        opens_trade: opens,
        node_key: node.identity,
        solver: None,
        user: None,
    }
}

fn with_last(last: u32) -> User {
    User {
        last_trade_index: last,
        ..User::default()
    }
}

#[test]
fn admission_rules_in_order() {
    let node = Trader::new("node");
    let alice = Trader::new("alice");
    let private = Trader::private("bob");
    let on = Policy {
        maintenance: true,
        ..Policy::default()
    };
    let off = Policy::default();
    let u5 = with_last(5);
    // (case, facts, policy, expected refusal or the caller's index and recorded index)
    type Want = Result<(u32, Option<u32>), Reject>;
    let cases: Vec<(&str, Facts<'_>, &Policy, Want)> = vec![
        (
            "maintenance refuses a trade opener",
            facts(&alice, Some(1), true, &node),
            &on,
            Err(Reject::MaintenanceMode),
        ),
        (
            "maintenance lets other requests through",
            facts(&alice, None, false, &node),
            &on,
            Ok((0, None)),
        ),
        (
            "reputation mode opening a trade needs an index",
            facts(&alice, None, true, &node),
            &off,
            Err(Reject::InvalidTradeIndex),
        ),
        (
            "index zero is no index",
            facts(&alice, Some(0), true, &node),
            &off,
            Err(Reject::InvalidTradeIndex),
        ),
        (
            "a negative index is refused",
            facts(&alice, Some(-1), true, &node),
            &off,
            Err(Reject::InvalidTradeIndex),
        ),
        (
            "an index beyond u32 is refused",
            facts(&alice, Some(i64::from(u32::MAX) + 1), true, &node),
            &off,
            Err(Reject::InvalidTradeIndex),
        ),
        (
            "a first index is recorded",
            facts(&alice, Some(3), true, &node),
            &off,
            Ok((3, Some(3))),
        ),
        (
            "an index not above the last is refused",
            Facts {
                user: Some(&u5),
                ..facts(&alice, Some(5), true, &node)
            },
            &off,
            Err(Reject::InvalidTradeIndex),
        ),
        (
            "an index above the last is recorded",
            Facts {
                user: Some(&u5),
                ..facts(&alice, Some(6), true, &node)
            },
            &off,
            Ok((6, Some(6))),
        ),
        (
            "full privacy carries no index and records none",
            facts(&private, Some(9), true, &node),
            &off,
            Ok((0, None)),
        ),
        (
            "a non-opening request keeps its index but records none",
            facts(&alice, Some(4), false, &node),
            &off,
            Ok((4, None)),
        ),
    ];
    for (name, f, policy, want) in cases {
        let got = machine::admit(&f, policy).map(|Admitted { caller, users }| {
            let recorded = users.iter().find_map(|u| match u {
                UserUpdate::TradeIndex { identity, index } => {
                    assert_eq!(*identity, f.identity, "{name}");
                    Some(*index)
                },
                UserUpdate::Rating { .. } => None,
            });
            (caller.trade_index, recorded)
        });
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn authority_comes_from_the_node_key_and_the_solver_record() {
    let node = Trader::new("node");
    let alice = Trader::new("alice");
    let p = Policy::default();
    let admin = machine::admit(&facts(&node, None, false, &node), &p).unwrap();
    assert_eq!(admin.caller.authority, Authority::Admin);
    let rw = Solver {
        identity: alice.identity,
        write: true,
    };
    let f = Facts {
        solver: Some(&rw),
        ..facts(&alice, None, false, &node)
    };
    assert_eq!(
        machine::admit(&f, &p).unwrap().caller.authority,
        Authority::Solver { write: true }
    );
    let user = machine::admit(&facts(&alice, None, false, &node), &p).unwrap();
    assert_eq!(user.caller.authority, Authority::User);
    // Only the admin registers solvers, with a key that is a curve point.
    assert_eq!(
        machine::add_solver(&admin.caller, &rw),
        Ok(Notice::AdminAddSolver)
    );
    assert_eq!(
        machine::add_solver(&user.caller, &rw),
        Err(Reject::NotAuthorized)
    );
    let off_curve = Solver {
        identity: PubKey([0xff; 32]),
        write: false,
    };
    assert_eq!(
        machine::add_solver(&admin.caller, &off_curve),
        Err(Reject::InvalidPubkey)
    );
}

#[test]
fn destinations() {
    let cases: [(&str, bool, Result<DestinationKind, Reject>); 8] = [
        ("", true, Err(Reject::InvalidInvoice)),
        ("lnbcrt1xyz", false, Ok(DestinationKind::Invoice)),
        ("alice@example.com", true, Ok(DestinationKind::Address)),
        ("alice@example.com", false, Err(Reject::InvalidInvoice)),
        ("LNURL1DP68GURN8GHJ7", true, Ok(DestinationKind::Address)),
        ("alice@localhost", true, Ok(DestinationKind::Invoice)),
        ("a b@example.com", true, Ok(DestinationKind::Invoice)),
        ("@example.com", true, Ok(DestinationKind::Invoice)),
    ];
    for (s, resolver, want) in cases {
        assert_eq!(
            machine::classify_destination(s, resolver),
            want,
            "{s:?} resolver={resolver}"
        );
    }
    let long = "x".repeat(machine::MAX_DESTINATION_LEN + 1);
    assert_eq!(
        machine::classify_destination(&long, true),
        Err(Reject::InvalidInvoice)
    );

    let d = DecodedInvoice {
        hash: PaymentHash([1; 32]),
        amount: Some(Sats(5)),
        expires_at: T0.plus(60),
        network: Network::Regtest,
        min_final_cltv: 18,
        payee: None,
    };
    let ok = machine::check_decoded_invoice("lnbcrt1", &d, Network::Regtest, T0).unwrap();
    assert_eq!(
        (ok.hash, ok.amount, ok.min_final_cltv),
        (d.hash, d.amount, 18)
    );
    assert_eq!(
        machine::check_decoded_invoice("lnbcrt1", &d, Network::Mainnet, T0),
        Err(Reject::InvalidInvoice),
        "another network"
    );
    assert_eq!(
        machine::check_decoded_invoice("lnbcrt1", &d, Network::Regtest, T0.plus(60)),
        Err(Reject::InvalidInvoice),
        "expired"
    );
}

#[test]
fn next_trade_keys_are_curve_points() {
    let t = Trader::new("carol");
    let good = NextTrade {
        trade_key: t.trade_key,
        trade_index: 2,
    };
    assert_eq!(machine::check_next_trade(Some(good)), Ok(Some(good)));
    assert_eq!(machine::check_next_trade(None), Ok(None));
    let bad = NextTrade {
        trade_key: PubKey([0xff; 32]),
        trade_index: 2,
    };
    assert_eq!(
        machine::check_next_trade(Some(bad)),
        Err(Reject::InvalidPubkey)
    );
}

#[test]
fn a_taker_with_a_duty_waiting_takes_nothing_else() {
    let node = Trader::new("node");
    let seller = Trader::new("seller");
    let buyer = Trader::new("buyer");
    let p = Policy::default();
    let caller = machine::admit(&facts(&buyer, Some(1), true, &node), &p)
        .unwrap()
        .caller;
    let book = order(1, seller.identity);
    // The buyer already owes an invoice on another sell order.
    let mut owed = order(2, seller.identity);
    owed.status = Status::WaitingBuyerInvoice;
    owed.taker = Some(mostro_core::order::Party {
        trade_key: buyer.trade_key,
        identity: buyer.identity,
        trade_index: 1,
        protocol: Protocol::V2,
    });
    assert!(machine::needs_open_orders(&caller));
    assert_eq!(
        machine::check_no_pending_duty(&caller, &book, std::slice::from_ref(&owed)),
        Err(Reject::PendingOrderExists)
    );
    // Past that step, or nothing open: free to take.
    let mut past = owed.clone();
    past.status = Status::Active;
    assert_eq!(
        machine::check_no_pending_duty(&caller, &book, &[past]),
        Ok(())
    );
    assert_eq!(machine::check_no_pending_duty(&caller, &book, &[]), Ok(()));
    // Full privacy has no identity to hold a duty against.
    let private = Trader::private("anon");
    let anon = machine::admit(&facts(&private, None, true, &node), &p)
        .unwrap()
        .caller;
    assert!(!machine::needs_open_orders(&anon));
    assert_eq!(
        machine::check_no_pending_duty(&anon, &book, &[owed]),
        Ok(())
    );
}

#[test]
fn queries() {
    let node = Trader::new("node");
    let alice = Trader::new("alice");
    let bob = Trader::new("bob");
    let p = Policy {
        max_orders_per_response: 2,
        ..Policy::default()
    };
    let mine = order(1, alice.identity);
    let theirs = order(2, bob.identity);
    assert_eq!(
        machine::check_orders_query(&[], &p),
        Err(Reject::InvalidParameters)
    );
    assert_eq!(
        machine::check_orders_query(&[mine.id, theirs.id, mine.id], &p),
        Err(Reject::TooManyRequests)
    );
    assert_eq!(machine::check_orders_query(&[mine.id], &p), Ok(()));
    assert_eq!(
        machine::orders_reply(&alice.identity, vec![mine.clone(), theirs.clone()]),
        Ok(Notice::Orders(vec![mine.clone()])),
        "only the caller's own orders"
    );
    assert_eq!(
        machine::orders_reply(&alice.identity, vec![theirs.clone()]),
        Err(Reject::NotFound)
    );

    let many: Vec<_> = (0..MAX_RESTORE + 5)
        .map(|i| {
            let mut o = order(u16::try_from(i).unwrap(), alice.identity);
            o.created_at = Timestamp(1_000 + i as u64);
            o
        })
        .collect();
    let Notice::RestoreSession { identity, orders } = machine::restore_reply(alice.identity, many)
    else {
        panic!("restore reply")
    };
    assert_eq!(identity, alice.identity);
    assert_eq!(orders.len(), MAX_RESTORE);
    assert_eq!(
        orders[0].created_at,
        Timestamp(1_000 + MAX_RESTORE as u64 + 4)
    );
    assert!(orders.windows(2).all(|w| w[0].created_at > w[1].created_at));

    assert_eq!(machine::last_trade_index_reply(None), Err(Reject::NotFound));
    assert_eq!(
        machine::last_trade_index_reply(Some(&with_last(0))),
        Err(Reject::InvalidTradeIndex)
    );
    assert_eq!(
        machine::last_trade_index_reply(Some(&with_last(7))),
        Ok(Notice::LastTradeIndex(7))
    );

    let c = machine::admit(&facts(&alice, None, false, &node), &p)
        .unwrap()
        .caller;
    assert_eq!(
        machine::user_info_reply(&c, None),
        Ok(Notice::UserInfo(User::default()))
    );
    let private = Trader::private("anon");
    let anon = machine::admit(&facts(&private, None, false, &node), &p)
        .unwrap()
        .caller;
    assert_eq!(
        machine::user_info_reply(&anon, Some(with_last(3))),
        Err(Reject::ReputationIdentityRequired)
    );
}
