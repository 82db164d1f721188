//! Every direct answer echoes the request's `request_id` (mostro-cli refuses an answer without
//! it on the requests it correlates). One row per request action, plus refusals: the first
//! message the requester receives in answer to a request carries that request's id.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use futures::executor::block_on;
use mostro_core::engine::{Action, NewOrderRequest, Outcome};
use mostro_core::machine::{Notice, Notify};
use mostro_core::ports::Solver;
use mostro_core::types::OrderId;
use mostro_testkit::scenario::{buy_order, sell_order};
use mostro_testkit::{TestBed, Trader};

/// Sends `action` from `who` and returns the outcome and the first message to `who` that it
/// caused, after checking that message echoes the request id.
async fn answered(
    bed: &TestBed,
    name: &str,
    who: &Trader,
    order: Option<OrderId>,
    action: Action,
) -> (Outcome, Notify) {
    let before = bed.sent().len();
    let req = bed.request(who, order, action);
    let rid = req.request_id;
    assert!(rid.is_some(), "{name}: the test bed sets a request id");
    let out = bed.send_request(req).await;
    let sent = bed.sent();
    let first = sent[before..]
        .iter()
        .find(|n| n.to == who.trade_key)
        .cloned()
        .unwrap_or_else(|| panic!("{name}: no answer to the requester ({out:?})"));
    assert_eq!(
        first.request_id, rid,
        "{name}: the answer {:?} does not echo the request id",
        first.notice
    );
    (out, first)
}

fn admin(bed: &TestBed) -> Trader {
    Trader {
        identity: bed.node_key,
        trade_key: bed.node_key,
        ..Trader::new("admin")
    }
}

fn take_sell() -> Action {
    Action::TakeSell {
        fiat_amount: None,
        invoice: None,
    }
}

fn new_order(o: mostro_core::machine::NewOrder) -> Action {
    Action::NewOrder(Box::new(NewOrderRequest {
        order: o,
        buyer_invoice: None,
    }))
}

/// A sell order taken, invoiced and paid: `Active`. Every step checked.
async fn active(bed: &TestBed, seller: &Trader, buyer: &Trader) -> OrderId {
    let (out, n) = answered(
        bed,
        "new-order (sell)",
        seller,
        None,
        new_order(sell_order(100_000, 50)),
    )
    .await;
    let Outcome::Applied(Some(id)) = out else {
        panic!("new order refused: {out:?}")
    };
    assert!(matches!(n.notice, Notice::NewOrder(_)), "{:?}", n.notice);
    let (_, n) = answered(bed, "take-sell", buyer, Some(id), take_sell()).await;
    assert!(matches!(n.notice, Notice::AddInvoice(_)), "{:?}", n.notice);
    let o = bed.order(id).await;
    let inv = bed.invoice(buyer, o.amount.checked_sub(o.fee).unwrap());
    let (_, n) = answered(bed, "add-invoice", buyer, Some(id), Action::AddInvoice(inv)).await;
    assert!(
        matches!(n.notice, Notice::WaitingSellerToPay),
        "{:?}",
        n.notice
    );
    assert!(bed.seller_pays(seller, id).await);
    id
}

#[test]
fn every_direct_answer_of_a_trade_echoes_the_request_id() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = active(&bed, &seller, &buyer).await;
        answered(
            &bed,
            "fiat-sent",
            &buyer,
            Some(id),
            Action::FiatSent { next_trade: None },
        )
        .await;
        answered(
            &bed,
            "release",
            &seller,
            Some(id),
            Action::Release { next_trade: None },
        )
        .await;
        answered(
            &bed,
            "rate-user (buyer)",
            &buyer,
            Some(id),
            Action::RateUser(5),
        )
        .await;
        answered(
            &bed,
            "rate-user (seller)",
            &seller,
            Some(id),
            Action::RateUser(4),
        )
        .await;
    });
}

#[test]
fn buy_order_take_buy_and_the_invoice_after_payment_echo_the_request_id() {
    block_on(async {
        let bed = TestBed::new();
        let buyer = Trader::new("buyer");
        let seller = Trader::new("seller");
        let (out, _) = answered(
            &bed,
            "new-order (buy)",
            &buyer,
            None,
            new_order(buy_order(100_000, 50)),
        )
        .await;
        let Outcome::Applied(Some(id)) = out else {
            panic!("{out:?}")
        };
        let (_, n) = answered(
            &bed,
            "take-buy",
            &seller,
            Some(id),
            Action::TakeBuy { fiat_amount: None },
        )
        .await;
        assert!(
            matches!(n.notice, Notice::PayInvoice { .. }),
            "{:?}",
            n.notice
        );
        assert!(bed.seller_pays(&seller, id).await);
        let o = bed.order(id).await;
        let inv = bed.invoice(&buyer, o.amount.checked_sub(o.fee).unwrap());
        answered(
            &bed,
            "add-invoice (after payment)",
            &buyer,
            Some(id),
            Action::AddInvoice(inv),
        )
        .await;
    });
}

#[test]
fn cancels_echo_the_request_id() {
    block_on(async {
        let bed = TestBed::new();
        let mut seller = Trader::new("seller");
        let mut buyer = Trader::new("buyer");
        // The maker cancels a pending order.
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        answered(
            &bed,
            "cancel (maker, pending)",
            &seller,
            Some(id),
            Action::Cancel,
        )
        .await;
        // The taker cancels in a waiting step.
        seller.next_key();
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        bed.send(&buyer, Some(id), take_sell()).await;
        answered(
            &bed,
            "cancel (taker, waiting)",
            &buyer,
            Some(id),
            Action::Cancel,
        )
        .await;
        // Cooperative cancel of an active trade: asked, then accepted.
        seller.next_key();
        buyer.next_key();
        let id = active(&bed, &seller, &buyer).await;
        answered(
            &bed,
            "cancel (cooperative, first)",
            &buyer,
            Some(id),
            Action::Cancel,
        )
        .await;
        answered(
            &bed,
            "cancel (cooperative, second)",
            &seller,
            Some(id),
            Action::Cancel,
        )
        .await;
    });
}

#[test]
fn disputes_and_admin_actions_echo_the_request_id() {
    block_on(async {
        let bed = TestBed::new();
        let admin = admin(&bed);
        let mut seller = Trader::new("seller");
        let mut buyer = Trader::new("buyer");
        let id = active(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        answered(&bed, "dispute", &buyer, Some(id), Action::Dispute).await;
        let did = bed.order(id).await.dispute.unwrap().id;
        answered(
            &bed,
            "admin-take-dispute",
            &admin,
            Some(did),
            Action::AdminTakeDispute,
        )
        .await;
        answered(&bed, "admin-settle", &admin, Some(id), Action::AdminSettle).await;

        seller.next_key();
        buyer.next_key();
        let id = active(&bed, &seller, &buyer).await;
        answered(&bed, "dispute (seller)", &seller, Some(id), Action::Dispute).await;
        let did = bed.order(id).await.dispute.unwrap().id;
        answered(
            &bed,
            "admin-take-dispute",
            &admin,
            Some(did),
            Action::AdminTakeDispute,
        )
        .await;
        answered(&bed, "admin-cancel", &admin, Some(id), Action::AdminCancel).await;

        let solver = Trader::new("solver");
        answered(
            &bed,
            "admin-add-solver",
            &admin,
            None,
            Action::AdminAddSolver(Solver {
                identity: solver.identity,
                write: true,
            }),
        )
        .await;
    });
}

#[test]
fn queries_echo_the_request_id() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        answered(&bed, "orders", &seller, None, Action::Orders(vec![id])).await;
        answered(
            &bed,
            "restore-session",
            &seller,
            None,
            Action::RestoreSession,
        )
        .await;
        answered(
            &bed,
            "last-trade-index",
            &seller,
            None,
            Action::LastTradeIndex,
        )
        .await;
        answered(&bed, "user-info", &seller, None, Action::UserInfo).await;
    });
}

#[test]
fn refusals_echo_the_request_id() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let stranger = Trader::new("stranger");
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        let cases: Vec<(&str, &Trader, Option<OrderId>, Action)> = vec![
            (
                "release of a pending order",
                &seller,
                Some(id),
                Action::Release { next_trade: None },
            ),
            (
                "fiat-sent by a stranger",
                &stranger,
                Some(id),
                Action::FiatSent { next_trade: None },
            ),
            (
                "take-buy of a sell order",
                &buyer,
                Some(id),
                Action::TakeBuy { fiat_amount: None },
            ),
            ("take-sell by the maker", &seller, Some(id), take_sell()),
            (
                "add-invoice to a pending order",
                &buyer,
                Some(id),
                Action::AddInvoice("lnbc1".into()),
            ),
            (
                "dispute of a pending order",
                &seller,
                Some(id),
                Action::Dispute,
            ),
            (
                "rate-user before the trade",
                &seller,
                Some(id),
                Action::RateUser(5),
            ),
            (
                "admin-settle by a user",
                &stranger,
                Some(id),
                Action::AdminSettle,
            ),
            (
                "take-sell of an unknown order",
                &buyer,
                Some(OrderId::from_random_bytes([7; 16])),
                take_sell(),
            ),
            ("unsupported action", &buyer, Some(id), Action::Unsupported),
        ];
        for (name, who, order, action) in cases {
            let (out, n) = answered(&bed, name, who, order, action).await;
            assert!(matches!(out, Outcome::Refused(_)), "{name}: {out:?}");
            assert!(
                matches!(n.notice, Notice::CantDo(_)),
                "{name}: {:?}",
                n.notice
            );
        }
    });
}
