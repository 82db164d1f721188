//! Engine scenarios driven through the test kit: whole trades, refusals, timeouts, restarts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use futures::executor::block_on;
use mostro_core::engine::{Action, NewOrderRequest, Outcome};
use mostro_core::machine::{Notice, Reject};
use mostro_core::order::{HoldState, NextTrade, PayoutState, Status};
use mostro_core::ports::HoldInvoiceState;
use mostro_core::types::{OrderId, Sats};
use mostro_testkit::scenario::{buy_order, sell_order};
use mostro_testkit::{Faults, TestBed, Trader, ledger::NODE};

fn has(inbox: &[Notice], pred: impl Fn(&Notice) -> bool) -> bool {
    inbox.iter().any(pred)
}

async fn active_sell(bed: &TestBed, seller: &Trader, buyer: &Trader) -> OrderId {
    bed.active_sell(seller, buyer).await
}

#[test]
fn complete_sell_trade() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = active_sell(&bed, &seller, &buyer).await;
        let o = bed.order(id).await;
        assert_eq!(o.fee, Sats(300));
        // Seller locked amount + fee.
        assert_eq!(bed.ledger.balance("seller"), -100_300);
        assert!(has(&bed.inbox(&seller.trade_key), |n| matches!(
            n,
            Notice::BuyerTookOrder(_)
        )));
        assert!(has(&bed.inbox(&buyer.trade_key), |n| matches!(
            n,
            Notice::HoldInvoicePaymentAccepted(_)
        )));
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        assert_eq!(bed.order(id).await.status, Status::FiatSent);
        // Only the seller may release.
        let out = bed
            .send(&buyer, Some(id), Action::Release { next_trade: None })
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidPeer));
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert_eq!(o.hold.as_ref().unwrap().state, HoldState::Settled);
        assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::Succeeded);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
        // Node keeps both fees minus the routing fee.
        assert_eq!(bed.ledger.balance(NODE), 600 - 1);
        assert!(has(&bed.inbox(&buyer.trade_key), |n| matches!(
            n,
            Notice::PurchaseCompleted
        )));
        // Ratings, once each.
        bed.send(&buyer, Some(id), Action::RateUser(5)).await;
        bed.send(&seller, Some(id), Action::RateUser(4)).await;
        bed.send(&seller, Some(id), Action::RateUser(1)).await;
        use mostro_core::ports::Store;
        let s = bed.store.user(&seller.identity).await.unwrap().unwrap();
        assert_eq!((s.reviews, s.rating_sum), (1, 5));
        let b = bed.store.user(&buyer.identity).await.unwrap().unwrap();
        assert_eq!((b.reviews, b.rating_sum), (1, 4));
        // Each counted rating is published once, d-tagged with the rated trade key.
        let ratings = bed.transport.ratings();
        assert_eq!(ratings.len(), 2);
        assert_eq!(ratings[0].0, seller.trade_key);
        assert_eq!(ratings[0].1.rating_sum, 5);
        assert_eq!(ratings[1].0, buyer.trade_key);
        assert!(bed.store.pending_effects(100).await.unwrap().is_empty());
    });
}

#[test]
fn complete_buy_trade_with_invoice_after_payment() {
    block_on(async {
        let bed = TestBed::new();
        let buyer = Trader::new("buyer");
        let seller = Trader::new("seller");
        let id = bed.new_order(&buyer, buy_order(50_000, 25)).await;
        bed.send(&seller, Some(id), Action::TakeBuy { fiat_amount: None })
            .await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::WaitingPayment);
        assert!(has(&bed.inbox(&seller.trade_key), |n| matches!(
            n,
            Notice::PayInvoice { .. }
        )));
        assert!(bed.seller_pays(&seller, id).await);
        assert_eq!(bed.order(id).await.status, Status::WaitingBuyerInvoice);
        let o = bed.order(id).await;
        let inv = bed.invoice(&buyer, o.amount.checked_sub(o.fee).unwrap());
        bed.send(&buyer, Some(id), Action::AddInvoice(inv)).await;
        assert_eq!(bed.order(id).await.status, Status::Active);
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(bed.ledger.balance("buyer"), 50_000 - 150);
    });
}

#[test]
fn wrong_invoice_amount_and_network_are_refused() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        let bad = bed.invoice(&buyer, Sats(100_000));
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some(bad),
                },
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidInvoice));
        let mainnet = bed
            .ledger
            .wallet_invoice_on(
                "buyer",
                Some(Sats(99_700)),
                3600 * 24,
                Some(mostro_core::ports::Network::Mainnet),
            )
            .unwrap();
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some(mainnet),
                },
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidInvoice));
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some("garbage".into()),
                },
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidInvoice));
        // The order is untouched and still takeable.
        assert_eq!(bed.order(id).await.status, Status::Pending);
        let cant: Vec<_> = bed
            .inbox(&buyer.trade_key)
            .into_iter()
            .filter(|n| matches!(n, Notice::CantDo(Reject::InvalidInvoice)))
            .collect();
        assert_eq!(cant.len(), 3);
    });
}

#[test]
fn replayed_request_changes_nothing() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let req = bed.request(
            &seller,
            None,
            Action::NewOrder(Box::new(NewOrderRequest {
                order: sell_order(10_000, 5),
                buyer_invoice: None,
            })),
        );
        let first = bed.send_request(req.clone()).await;
        assert!(matches!(first, Outcome::Applied(Some(_))));
        let commits = bed.store.commits();
        assert_eq!(bed.send_request(req).await, Outcome::Duplicate);
        assert_eq!(bed.store.commits(), commits);
        assert_eq!(bed.store.all_orders().len(), 1);
    });
}

#[test]
fn trade_index_must_grow() {
    block_on(async {
        let bed = TestBed::new();
        let mut seller = Trader::new("seller");
        bed.new_order(&seller, sell_order(10_000, 5)).await;
        // Same index again: refused.
        let out = bed
            .send(
                &seller,
                None,
                Action::NewOrder(Box::new(NewOrderRequest {
                    order: sell_order(10_000, 5),
                    buyer_invoice: None,
                })),
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::InvalidTradeIndex));
        seller.next_key();
        bed.new_order(&seller, sell_order(10_000, 5)).await;
        let out = bed.send(&seller, None, Action::LastTradeIndex).await;
        assert_eq!(out, Outcome::Applied(None));
        assert!(has(&bed.inbox(&seller.trade_key), |n| matches!(
            n,
            Notice::LastTradeIndex(2)
        )));
    });
}

#[test]
fn maker_cancel_and_taker_cancel() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let stranger = Trader::new("stranger");
        let id = bed.new_order(&seller, sell_order(10_000, 5)).await;
        assert_eq!(
            bed.send(&stranger, Some(id), Action::Cancel).await,
            Outcome::Refused(Reject::IsNotYourOrder)
        );
        // Taker cancels during waiting-payment: order returns to the book and the hold is canceled.
        let inv = bed.invoice(&buyer, Sats(10_000 - 30));
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: Some(inv),
            },
        )
        .await;
        let hash = bed.order(id).await.hold.unwrap().hash;
        bed.send(&buyer, Some(id), Action::Cancel).await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Pending);
        assert!(o.taker.is_none());
        assert_eq!(
            bed.ledger.hold(&hash).unwrap().state,
            HoldInvoiceState::Canceled
        );
        bed.send(&seller, Some(id), Action::Cancel).await;
        assert_eq!(bed.order(id).await.status, Status::Canceled);
        assert_eq!(
            bed.send(&seller, Some(id), Action::Cancel).await,
            Outcome::Refused(Reject::OrderAlreadyCanceled)
        );
    });
}

#[test]
fn cooperative_cancel_refunds_seller() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::Cancel).await;
        assert_eq!(bed.order(id).await.status, Status::Active);
        assert_eq!(
            bed.send(&buyer, Some(id), Action::Cancel).await,
            Outcome::Refused(Reject::InvalidPubkey)
        );
        bed.send(&seller, Some(id), Action::Cancel).await;
        assert_eq!(bed.order(id).await.status, Status::CooperativelyCanceled);
        assert_eq!(bed.ledger.balance("seller"), 0);
        assert!(has(&bed.inbox(&buyer.trade_key), |n| matches!(
            n,
            Notice::CooperativeCancelAccepted
        )));
    });
}

#[test]
fn dispute_admin_settle_and_admin_cancel() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let admin = Trader {
            identity: bed.node_key,
            trade_key: bed.node_key,
            ..Trader::new("admin")
        };
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        bed.send(&buyer, Some(id), Action::Dispute).await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Dispute);
        let did = o.dispute.unwrap().id;
        // Settle before taking: refused.
        assert_eq!(
            bed.send(&admin, Some(id), Action::AdminSettle).await,
            Outcome::Refused(Reject::IsNotYourDispute)
        );
        // A user cannot take disputes.
        assert_eq!(
            bed.send(&seller, Some(did), Action::AdminTakeDispute).await,
            Outcome::Refused(Reject::NotAuthorized)
        );
        bed.send(&admin, Some(did), Action::AdminTakeDispute).await;
        bed.send(&admin, Some(id), Action::AdminSettle).await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);

        // Second trade: admin cancel refunds the seller.
        let mut seller = seller;
        let mut buyer = buyer;
        seller.next_key();
        buyer.next_key();
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&seller, Some(id), Action::Dispute).await;
        let did = bed.order(id).await.dispute.unwrap().id;
        bed.send(&admin, Some(did), Action::AdminTakeDispute).await;
        bed.send(&admin, Some(id), Action::AdminCancel).await;
        assert_eq!(bed.order(id).await.status, Status::CanceledByAdmin);
        assert_eq!(bed.ledger.balance("seller"), -100_300);
    });
}

/// What was sent to `who` since the last drain (drains the transport's record).
fn notices_to(bed: &TestBed, who: &Trader) -> Vec<Notice> {
    bed.transport
        .take_sent()
        .into_iter()
        .filter(|n| n.to == who.trade_key)
        .map(|n| n.notice)
        .collect()
}

#[test]
fn the_solver_is_told_when_the_parties_close_its_dispute_themselves() {
    block_on(async {
        let bed = TestBed::new();
        let admin = Trader {
            identity: bed.node_key,
            trade_key: bed.node_key,
            ..Trader::new("admin")
        };
        let (mut seller, mut buyer) = (Trader::new("seller"), Trader::new("buyer"));
        // The seller releases during a dispute the admin took: told `released`.
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        bed.send(&buyer, Some(id), Action::Dispute).await;
        let did = bed.order(id).await.dispute.unwrap().id;
        bed.send(&admin, Some(did), Action::AdminTakeDispute).await;
        bed.transport.take_sent();
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        let to_admin = notices_to(&bed, &admin);
        assert_eq!(to_admin, vec![Notice::Released]);

        // A cooperative cancel during a taken dispute: told `cooperative-cancel-accepted`.
        seller.next_key();
        buyer.next_key();
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&seller, Some(id), Action::Dispute).await;
        let did = bed.order(id).await.dispute.unwrap().id;
        bed.send(&admin, Some(did), Action::AdminTakeDispute).await;
        bed.send(&seller, Some(id), Action::Cancel).await;
        bed.transport.take_sent();
        bed.send(&buyer, Some(id), Action::Cancel).await;
        assert_eq!(bed.order(id).await.status, Status::CooperativelyCanceled);
        let to_admin = notices_to(&bed, &admin);
        assert_eq!(to_admin, vec![Notice::CooperativeCancelAccepted]);

        // A dispute nobody took: no solver to tell.
        seller.next_key();
        buyer.next_key();
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&seller, Some(id), Action::Dispute).await;
        bed.send(&seller, Some(id), Action::Cancel).await;
        bed.transport.take_sent();
        bed.send(&buyer, Some(id), Action::Cancel).await;
        assert!(
            bed.transport
                .take_sent()
                .iter()
                .all(|n| n.to == seller.trade_key || n.to == buyer.trade_key)
        );
    });
}

#[test]
fn payout_failure_retries_then_new_invoice() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        bed.ledger.set_faults(Faults {
            fail_payments: 3,
            ..Faults::default()
        });
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::SettledHoldInvoice);
        assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::Failed);
        assert!(has(&bed.inbox(&buyer.trade_key), |n| matches!(
            n,
            Notice::PaymentFailed { .. }
        )));
        bed.advance(61).await;
        bed.advance(61).await;
        let o = bed.order(id).await;
        assert_eq!(o.payout.as_ref().unwrap().state, PayoutState::NeedInvoice);
        assert_eq!(o.payout.as_ref().unwrap().attempts, 3);
        let inv = bed.invoice(&buyer, Sats(99_700));
        bed.send(&buyer, Some(id), Action::AddInvoice(inv)).await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
        assert!(has(&bed.inbox(&buyer.trade_key), |n| matches!(
            n,
            Notice::InvoiceUpdated
        )));
    });
}

#[test]
fn waiting_step_timeouts_republish_or_cancel() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        // Buyer (taker) late with the invoice: back to pending.
        let id = bed.new_order(&seller, sell_order(10_000, 5)).await;
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: None,
            },
        )
        .await;
        bed.advance(901).await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Pending);
        assert!(has(&bed.inbox(&seller.trade_key), |n| matches!(
            n,
            Notice::NewOrder(_)
        )));
        // Seller (maker) late with the hold invoice: canceled.
        let mut buyer = buyer;
        buyer.next_key();
        let inv = bed.invoice(&buyer, Sats(10_000 - 30));
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: Some(inv),
            },
        )
        .await;
        let hash = bed.order(id).await.hold.unwrap().hash;
        bed.advance(901).await;
        assert_eq!(bed.order(id).await.status, Status::Canceled);
        assert_eq!(
            bed.ledger.hold(&hash).unwrap().state,
            HoldInvoiceState::Canceled
        );
        // Pending expiry after 24 h.
        let mut seller = seller;
        seller.next_key();
        let id2 = bed.new_order(&seller, sell_order(10_000, 5)).await;
        bed.advance(24 * 3600).await;
        assert_eq!(bed.order(id2).await.status, Status::Expired);
    });
}

#[test]
fn range_order_partial_take_creates_child() {
    block_on(async {
        let bed = TestBed::new();
        bed.prices.set("EUR", 50_000.0, bed.now());
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let mut order = sell_order(0, 0);
        order.min_amount = Some(10);
        order.max_amount = Some(100);
        let id = bed.new_order(&seller, order).await;
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::TakeSell {
                    fiat_amount: Some(500),
                    invoice: None,
                },
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::OutOfRangeSatsAmount));
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: Some(40),
                invoice: None,
            },
        )
        .await;
        let o = bed.order(id).await;
        assert_eq!(o.amount, Sats(80_000));
        let inv = bed.invoice(&buyer, o.amount.checked_sub(o.fee).unwrap());
        bed.send(&buyer, Some(id), Action::AddInvoice(inv)).await;
        assert!(bed.seller_pays(&seller, id).await);
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        let (next_key, next_index) = seller.peek_next();
        bed.send(
            &seller,
            Some(id),
            Action::Release {
                next_trade: Some(NextTrade {
                    trade_key: next_key,
                    trade_index: next_index,
                }),
            },
        )
        .await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        let child = bed
            .store
            .all_orders()
            .into_iter()
            .find(|o| o.range_parent == Some(id))
            .expect("child order");
        assert_eq!(child.status, Status::Pending);
        assert_eq!((child.min_amount, child.max_amount), (Some(10), Some(60)));
        assert_eq!(child.maker.trade_key, next_key);
        assert!(has(&bed.inbox(&next_key), |n| matches!(
            n,
            Notice::NewOrder(_)
        )));
    });
}

#[test]
fn market_order_refuses_stale_price() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let out = bed
            .send(
                &seller,
                None,
                Action::NewOrder(Box::new(NewOrderRequest {
                    order: sell_order(0, 50),
                    buyer_invoice: None,
                })),
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::PriceTooStale));
        bed.prices.set("EUR", 50_000.0, bed.now());
        let id = bed.new_order(&seller, sell_order(0, 50)).await;
        bed.clock.advance(3600);
        let buyer = Trader::new("buyer");
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: None,
                },
            )
            .await;
        assert_eq!(out, Outcome::Refused(Reject::PriceTooStale));
        bed.prices.set("EUR", 50_000.0, bed.now());
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: None,
            },
        )
        .await;
        assert_eq!(bed.order(id).await.amount, Sats(100_000));
    });
}

#[test]
fn restart_mid_trade_with_lost_replies_completes() {
    block_on(async {
        let mut bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        // The node settles but the reply is lost; then the process dies.
        bed.ledger.set_faults(Faults {
            lose_next_reply: true,
            ..Faults::default()
        });
        let req = bed.request(&seller, Some(id), Action::Release { next_trade: None });
        bed.engine.handle(req).await.unwrap();
        // Drop the Settled event the node emitted (as if we missed it while down).
        let _ = bed.node.drain_events();
        assert_eq!(bed.order(id).await.hold.unwrap().state, HoldState::Settling);
        bed.restart();
        bed.engine.reconcile().await.unwrap();
        bed.pump().await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert_eq!(bed.ledger.hold(&o.hold.unwrap().hash).unwrap().settles, 1);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
        let paid: Vec<_> = bed.ledger.all_attempts();
        assert_eq!(paid.len(), 1);
    });
}

#[test]
fn node_unreachable_leaves_effects_pending_then_resumes() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = bed.new_order(&seller, sell_order(10_000, 5)).await;
        bed.ledger.set_unreachable(true);
        let inv = bed.invoice(&buyer, Sats(9_970));
        // The invoice cannot be decoded without the node... our fake decodes locally, so the take
        // goes through and the hold creation waits in the outbox.
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: Some(inv),
            },
        )
        .await;
        let o = bed.order(id).await;
        assert_eq!(o.hold.as_ref().unwrap().state, HoldState::Requested);
        bed.ledger.set_unreachable(false);
        let n = bed.engine.resume().await.unwrap();
        assert!(n >= 1);
        bed.pump().await;
        assert_eq!(bed.order(id).await.hold.unwrap().state, HoldState::Open);
        assert!(has(&bed.inbox(&seller.trade_key), |n| matches!(
            n,
            Notice::PayInvoice { .. }
        )));
    });
}

#[test]
fn cltv_guard_cancels_active_and_disputes_fiat_sent() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = active_sell(&bed, &seller, &buyer).await;
        // HTLC expires at 100 + 144; the guard acts 24 blocks before.
        bed.ledger.mine(119);
        bed.pump().await;
        assert_eq!(bed.order(id).await.status, Status::Active);
        bed.ledger.mine(1);
        bed.pump().await;
        assert_eq!(bed.order(id).await.status, Status::Canceled);
        assert_eq!(bed.ledger.balance("seller"), 0);

        let mut seller = seller;
        let mut buyer = buyer;
        seller.next_key();
        buyer.next_key();
        let id = active_sell(&bed, &seller, &buyer).await;
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        bed.ledger.mine(120);
        bed.pump().await;
        assert_eq!(bed.order(id).await.status, Status::Dispute);
    });
}

#[test]
fn client_restores_after_losing_state_and_completes_the_trade() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let mut buyer = Trader::new("buyer");
        buyer.next_key(); // index 2: an earlier trade used index 1
        let id = active_sell(&bed, &seller, &buyer).await;
        // The buyer reinstalls: only the mnemonic (identity) survives. A fresh key asks.
        let mut device2 = Trader::new("buyer");
        device2.next_key();
        device2.next_key();
        device2.next_key(); // some key the new install happens to use
        bed.send(&device2, None, Action::RestoreSession).await;
        let restored = bed
            .inbox(&device2.trade_key)
            .into_iter()
            .find_map(|n| match n {
                Notice::RestoreSession { orders, .. } => Some(orders),
                _ => None,
            })
            .expect("restore reply");
        assert_eq!(restored.len(), 1);
        let o = &restored[0];
        assert_eq!(o.id, id);
        let mine = o.buyer().unwrap();
        assert_eq!(mine.identity, buyer.identity);
        // The client re-derives the trade key of that index and carries on.
        let mut recovered = Trader::new("buyer");
        while recovered.index < mine.trade_index {
            recovered.next_key();
        }
        assert_eq!(recovered.trade_key, buyer.trade_key);
        bed.send(&device2, None, Action::LastTradeIndex).await;
        assert!(has(&bed.inbox(&device2.trade_key), |n| matches!(
            n,
            Notice::LastTradeIndex(2)
        )));
        bed.send(&recovered, Some(id), Action::FiatSent { next_trade: None })
            .await;
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        assert_eq!(bed.order(id).await.status, Status::Success);
        assert_eq!(bed.ledger.balance("buyer"), 99_700);
        // Another identity restoring sees nothing of it.
        let stranger = Trader::new("stranger");
        bed.send(&stranger, None, Action::RestoreSession).await;
        assert!(bed.inbox(&stranger.trade_key).iter().all(|n| match n {
            Notice::RestoreSession { orders, .. } => orders.is_empty(),
            _ => true,
        }));
    });
}

#[test]
fn lightning_address_payout_is_resolved_at_payout_time() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        let out = bed
            .send(
                &buyer,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some("bob@wallet.example".into()),
                },
            )
            .await;
        assert_eq!(out, Outcome::Applied(Some(id)));
        assert_eq!(bed.order(id).await.status, Status::WaitingPayment);
        assert!(bed.seller_pays(&seller, id).await);
        assert_eq!(bed.order(id).await.status, Status::Active);
        // Nothing is resolved before the release.
        assert!(bed.resolver.calls().is_empty());
        // First resolution fails: an attempt is counted and retried later with a fresh invoice.
        bed.resolver.fail_next(1);
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await;
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::SettledHoldInvoice);
        assert_eq!(o.payout.as_ref().unwrap().attempts, 1);
        bed.advance(61).await;
        let o = bed.order(id).await;
        assert_eq!(o.status, Status::Success);
        assert_eq!(
            bed.resolver.calls(),
            vec![
                ("bob@wallet.example".to_owned(), Sats(99_700)),
                ("bob@wallet.example".to_owned(), Sats(99_700)),
            ]
        );
        assert_eq!(bed.ledger.balance("bob"), 99_700);
        assert_eq!(bed.ledger.all_attempts().len(), 1);
    });
}

#[test]
fn malformed_lightning_address_is_refused() {
    block_on(async {
        let bed = TestBed::new();
        let seller = Trader::new("seller");
        let buyer = Trader::new("buyer");
        let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
        for bad in [
            "bob@",
            "@wallet.example",
            "bob@wallet",
            "b o b@wallet.example",
        ] {
            let out = bed
                .send(
                    &buyer,
                    Some(id),
                    Action::TakeSell {
                        fiat_amount: None,
                        invoice: Some(bad.into()),
                    },
                )
                .await;
            assert_eq!(out, Outcome::Refused(Reject::InvalidInvoice), "{bad}");
        }
    });
}

#[test]
fn the_pay_invoice_answering_a_take_buy_echoes_its_request_id() {
    // mostro-cli refuses a `pay-invoice` without the request id of its `take-buy`.
    block_on(async {
        let bed = TestBed::new();
        let buyer = Trader::new("buyer");
        let seller = Trader::new("seller");
        let id = bed.new_order(&buyer, buy_order(100_000, 50)).await;
        let req = bed.request(&seller, Some(id), Action::TakeBuy { fiat_amount: None });
        let rid = req.request_id;
        assert!(rid.is_some());
        assert_eq!(bed.send_request(req).await, Outcome::Applied(Some(id)));
        let pay = bed
            .sent()
            .into_iter()
            .find(|n| n.to == seller.trade_key && matches!(n.notice, Notice::PayInvoice { .. }))
            .expect("pay-invoice to the seller");
        assert_eq!(pay.request_id, rid);
    });
}

#[test]
fn maintenance_mode_survives_a_restart() {
    block_on(async {
        let mut bed = TestBed::new();
        let maker = Trader::new("maker");
        let new_order = |bed: &TestBed| {
            bed.request(
                &maker,
                None,
                Action::NewOrder(Box::new(NewOrderRequest {
                    order: sell_order(100_000, 100),
                    buyer_invoice: None,
                })),
            )
        };
        assert!(
            !bed.engine.restore_settings().await.unwrap(),
            "off when never set"
        );
        bed.engine.switch_maintenance(true).await.unwrap();
        bed.restart();
        assert!(
            !bed.engine.policy().maintenance,
            "a fresh engine starts from the config"
        );
        assert!(bed.engine.restore_settings().await.unwrap());
        assert!(bed.engine.policy().maintenance);
        let out = bed.engine.handle(new_order(&bed)).await.unwrap();
        assert_eq!(out, Outcome::Refused(Reject::MaintenanceMode));
        // Off again, and still off after the next restart.
        bed.engine.switch_maintenance(false).await.unwrap();
        bed.restart();
        assert!(!bed.engine.restore_settings().await.unwrap());
        assert!(matches!(
            bed.engine.handle(new_order(&bed)).await.unwrap(),
            Outcome::Applied(Some(_))
        ));
    });
}
