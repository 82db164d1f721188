//! End-to-end tests: the real `mostrod` binary (`run --config <file>`) against an in-process
//! Nostr relay and the LND simulator, driven by protocol v1 and v2 clients over the relay.
//!
//! Every test starts its own relay, ledger, simulator and daemon (killed on drop). Independent
//! trade scenarios share one daemon and run concurrently; scenarios that need special settings
//! (short windows, ledger faults, `kill -9`) get their own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::too_many_lines,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

mod support;

use support::*;

/// Release and payout: the messages of both parties, then ratings.
async fn release_and_complete(h: &Harness, t: &mut Trade) -> anyhow::Result<()> {
    let id = t.id;
    t.seller.send(Some(id), Action::Release, None).await?;
    t.seller.wait(Action::HoldInvoicePaymentSettled, id).await?;
    t.seller.wait(Action::Rate, id).await?;
    t.buyer.wait(Action::Released, id).await?;
    t.buyer.wait(Action::PurchaseCompleted, id).await?;
    t.buyer.wait(Action::Rate, id).await?;
    check_paid(h, t)?;
    for p in [&mut t.buyer, &mut t.seller] {
        p.send(Some(id), Action::RateUser, Some(Payload::RatingUser(5)))
            .await?;
        p.wait_where(Action::RateReceived, Some(id), |k| {
            k.payload == Some(Payload::RatingUser(5))
        })
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenarios sharing one daemon
// ---------------------------------------------------------------------------------------------

/// Sell flow, both parties on protocol v2. Node revenue: 2 fee - routing.
async fn scenario_sell_v2(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "sell", 100_000, Protocol::V2, Protocol::V2).await?;
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * t.fee) - ROUTING_FEE)
}

/// A buyer loses its local state: a fresh install with the same identity (from the mnemonic)
/// restores the session over the relay, learns the open trade, its trade index and the
/// counterparty's key, and finishes the trade with the re-derived trade key.
async fn scenario_restore(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "restore", 60_000, Protocol::V2, Protocol::V1).await?;
    let identity = t
        .buyer
        .c
        .keys
        .identity
        .clone()
        .ok_or_else(|| anyhow!("reputation mode"))?;
    let fresh = ClientKeys::reputation(Keys::generate(), identity);
    let mut device2 = h.client_with("restore-device2", Protocol::V1, fresh).await;
    device2
        .c
        .send_in(Wrapper::Restore, None, None, Action::RestoreSession, None)
        .await?;
    let reply = device2
        .wait_where(Action::RestoreSession, None, |_| true)
        .await?;
    let Some(Payload::RestoreData(data)) = reply.payload else {
        bail!("restore-session without restore_data: {reply:?}");
    };
    let restored = data
        .orders
        .iter()
        .find(|o| o.order_id == t.id)
        .ok_or_else(|| anyhow!("the open trade is not restored: {data:?}"))?;
    ensure!(
        restored.status == "active",
        "restored status {}",
        restored.status
    );
    ensure!(
        restored.trade_index == t.buyer.trade_index,
        "restored index {}",
        restored.trade_index
    );
    ensure!(restored.counterparty_trade_pubkey.as_deref() == Some(t.seller.pubkey().as_str()));
    device2
        .c
        .send_in(Wrapper::Restore, None, None, Action::LastTradeIndex, None)
        .await?;
    let last = device2
        .wait_where(Action::LastTradeIndex, None, |_| true)
        .await?;
    ensure!(
        last.trade_index == Some(t.buyer.trade_index),
        "last-trade-index {:?}",
        last.trade_index
    );
    device2.c.shutdown().await;
    // The client re-derives the trade key of that index (here: the keys it had) and carries on.
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * t.fee) - ROUTING_FEE)
}

/// Buy flow, both parties on protocol v1 (gift wrap): the taker (seller) pays first, then the
/// buyer is asked for its invoice.
async fn scenario_buy_v1(h: &Harness) -> anyhow::Result<i128> {
    let mut buyer = h.client("buy-buyer", Protocol::V1).await;
    let mut seller = h.client("buy-seller", Protocol::V1).await;
    let amount = 60_000u64;
    let fee = fee(amount);
    let (id, _) = make(&mut buyer, order(Kind::Buy, amount as i64, 30, None)).await?;

    seller.send_opening(Some(id), Action::TakeBuy, None).await?;
    let k = seller
        .wait_where(Action::PayInvoice, Some(id), |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await?;
    let Some(Payload::PaymentRequest(Some(po), hold, _)) = k.payload else {
        bail!("pay-invoice: {:?}", k.payload)
    };
    ensure!(po.amount == (amount + fee) as i64);
    buyer.wait(Action::WaitingSellerToPay, id).await?;
    h.ledger
        .pay_hold("buy-seller", &hold)
        .map_err(|e| anyhow!("{e}"))?;

    let ask = buyer.wait_order(Action::AddInvoice, id).await?;
    ensure!(ask.amount == (amount - fee) as i64);
    ensure!(ask.status == Some(Status::WaitingBuyerInvoice));
    seller.wait(Action::WaitingBuyerInvoice, id).await?;
    let inv = invoice(&h.ledger, "buy-buyer", amount - fee)?;
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await?;
    seller.wait_order(Action::BuyerTookOrder, id).await?;
    buyer
        .wait_order(Action::HoldInvoicePaymentAccepted, id)
        .await?;
    let mut t = Trade {
        seller,
        buyer,
        id,
        amount,
        fee,
        seller_wallet: "buy-seller".into(),
        buyer_wallet: "buy-buyer".into(),
    };
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * fee) - ROUTING_FEE)
}

/// Sell range order [10, 40] EUR at market price; the buyer takes 15 EUR; the seller releases
/// with `next_trade`, and its next trade key receives the child order [10, 25] via `new-order`.
async fn scenario_range(h: &Harness) -> anyhow::Result<i128> {
    let mut seller = h.client("range-seller", Protocol::V2).await;
    let mut buyer = h.client("range-buyer", Protocol::V1).await;
    let (id, ack) = make(&mut seller, order(Kind::Sell, 0, 0, Some((10, 40)))).await?;
    ensure!(ack.min_amount == Some(10) && ack.max_amount == Some(40));

    buyer
        .send_opening(Some(id), Action::TakeSell, Some(Payload::Amount(15)))
        .await?;
    let amount = 30_000u64; // 15 EUR at 50 000 EUR/BTC
    let fee = fee(amount);
    let ask = buyer.wait_order(Action::AddInvoice, id).await?;
    ensure!(
        ask.amount == (amount - fee) as i64,
        "range add-invoice {}",
        ask.amount
    );
    ensure!(ask.fiat_amount == 15);
    let inv = invoice(&h.ledger, "range-buyer", amount - fee)?;
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await?;
    let k = seller
        .wait_where(Action::PayInvoice, Some(id), |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await?;
    let Some(Payload::PaymentRequest(_, hold, _)) = k.payload else {
        unreachable!()
    };
    h.ledger
        .pay_hold("range-seller", &hold)
        .map_err(|e| anyhow!("{e}"))?;
    seller.wait_order(Action::BuyerTookOrder, id).await?;
    buyer
        .wait_order(Action::HoldInvoicePaymentAccepted, id)
        .await?;
    let mut t = Trade {
        seller,
        buyer,
        id,
        amount,
        fee,
        seller_wallet: "range-seller".into(),
        buyer_wallet: "range-buyer".into(),
    };
    fiat_sent(&mut t).await?;

    // The maker's next trade key (same identity) listens before the release.
    let identity = t.seller.c.keys.identity.clone().unwrap();
    let mut next = h
        .client_with(
            "range-seller-next",
            Protocol::V2,
            ClientKeys::reputation(Keys::generate(), identity),
        )
        .await;
    let next_index = t.seller.trade_index + 1;
    t.seller
        .send(
            Some(id),
            Action::Release,
            Some(Payload::NextTrade(next.pubkey(), next_index as u32)),
        )
        .await?;
    t.seller.wait(Action::HoldInvoicePaymentSettled, id).await?;
    t.buyer.wait(Action::Released, id).await?;
    t.buyer.wait(Action::PurchaseCompleted, id).await?;
    check_paid(h, &t)?;

    let k = next
        .wait_where(Action::NewOrder, None, |k| {
            matches!(k.payload, Some(Payload::Order(_)))
        })
        .await?;
    ensure!(
        k.trade_index == Some(next_index),
        "child trade index {:?}",
        k.trade_index
    );
    let Some(Payload::Order(child)) = k.payload else {
        unreachable!()
    };
    let cid = child.id.ok_or_else(|| anyhow!("child without id"))?;
    ensure!(cid != id);
    ensure!(
        child.min_amount == Some(10) && child.max_amount == Some(25),
        "child range {:?}..{:?}",
        child.min_amount,
        child.max_amount
    );
    ensure!(child.kind == Some(Kind::Sell) && child.status == Some(Status::Pending));
    ensure!(child.amount == 0);
    // The child belongs to the next key: it can cancel it.
    next.send(Some(cid), Action::Cancel, None).await?;
    next.wait(Action::Canceled, cid).await?;
    Ok(i128::from(2 * fee) - ROUTING_FEE)
}

/// Market-price buy order (amount 0): the sats are quoted from `prices.fixed` at take time.
async fn scenario_market(h: &Harness) -> anyhow::Result<i128> {
    let mut buyer = h.client("market-buyer", Protocol::V1).await;
    let mut seller = h.client("market-seller", Protocol::V2).await;
    let (id, ack) = make(&mut buyer, order(Kind::Buy, 0, 25, None)).await?;
    ensure!(ack.amount == 0);
    let amount = 50_000u64; // 25 EUR at 50 000 EUR/BTC
    let fee = fee(amount);
    seller.send_opening(Some(id), Action::TakeBuy, None).await?;
    let k = seller
        .wait_where(Action::PayInvoice, Some(id), |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await?;
    let Some(Payload::PaymentRequest(Some(po), hold, _)) = k.payload else {
        bail!("pay-invoice: {:?}", k.payload)
    };
    ensure!(
        po.amount == (amount + fee) as i64,
        "market pay-invoice amount {} != {}",
        po.amount,
        amount + fee
    );
    h.ledger
        .pay_hold("market-seller", &hold)
        .map_err(|e| anyhow!("{e}"))?;
    let ask = buyer.wait_order(Action::AddInvoice, id).await?;
    ensure!(ask.amount == (amount - fee) as i64);
    let inv = invoice(&h.ledger, "market-buyer", amount - fee)?;
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await?;
    seller.wait_order(Action::BuyerTookOrder, id).await?;
    buyer
        .wait_order(Action::HoldInvoicePaymentAccepted, id)
        .await?;
    let mut t = Trade {
        seller,
        buyer,
        id,
        amount,
        fee,
        seller_wallet: "market-seller".into(),
        buyer_wallet: "market-buyer".into(),
    };
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * fee) - ROUTING_FEE)
}

/// Cooperative cancel of an active trade: the seller is refunded.
async fn scenario_coop_cancel(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "coop", 40_000, Protocol::V2, Protocol::V1).await?;
    let id = t.id;
    t.seller.send(Some(id), Action::Cancel, None).await?;
    t.seller
        .wait(Action::CooperativeCancelInitiatedByYou, id)
        .await?;
    t.buyer
        .wait(Action::CooperativeCancelInitiatedByPeer, id)
        .await?;
    t.buyer.send(Some(id), Action::Cancel, None).await?;
    t.seller.wait(Action::CooperativeCancelAccepted, id).await?;
    t.buyer.wait(Action::CooperativeCancelAccepted, id).await?;
    wait_balance(h, &t.seller_wallet, 0).await?;
    ensure!(h.ledger.balance(&t.buyer_wallet) == 0);
    ensure!(h.payouts_to(&t.buyer_wallet).is_empty());
    Ok(0)
}

async fn wait_balance(h: &Harness, wallet: &str, want: i128) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while h.ledger.balance(wallet) != want {
        if Instant::now() > deadline {
            bail!("{wallet}: balance {} != {want}", h.ledger.balance(wallet));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Opens a dispute (`by_buyer` or by the seller); returns the dispute id both parties got.
async fn open_dispute(t: &mut Trade, by_buyer: bool) -> anyhow::Result<Uuid> {
    let id = t.id;
    let (me, peer) = if by_buyer {
        (&mut t.buyer, &mut t.seller)
    } else {
        (&mut t.seller, &mut t.buyer)
    };
    me.send(Some(id), Action::Dispute, None).await?;
    let k = me
        .wait_where(Action::DisputeInitiatedByYou, Some(id), |k| {
            matches!(k.payload, Some(Payload::Dispute(_, None)))
        })
        .await?;
    let Some(Payload::Dispute(did, _)) = k.payload else {
        unreachable!()
    };
    let k = peer
        .wait_where(Action::DisputeInitiatedByPeer, Some(id), |k| {
            matches!(k.payload, Some(Payload::Dispute(..)))
        })
        .await?;
    ensure!(
        matches!(k.payload, Some(Payload::Dispute(d, None)) if d == did),
        "peer dispute payload {:?}",
        k.payload
    );
    Ok(did)
}

/// The admin takes the dispute: `admin-took-dispute` to the admin (dispute payload with the
/// solver info) and to both parties (peer = the admin's key).
async fn admin_take(
    h: &Harness,
    admin: &mut Party,
    t: &mut Trade,
    did: Uuid,
) -> anyhow::Result<()> {
    admin
        .c
        .send_in(
            Wrapper::Dispute,
            Some(did),
            None,
            Action::AdminTakeDispute,
            None,
        )
        .await?;
    admin
        .wait_where(
            Action::AdminTookDispute,
            Some(did),
            |k| matches!(k.payload, Some(Payload::Dispute(d, Some(_))) if d == did),
        )
        .await?;
    let admin_hex = h.node.to_hex();
    for p in [&mut t.buyer, &mut t.seller] {
        p.wait_where(
            Action::AdminTookDispute,
            Some(t.id),
            |k| matches!(&k.payload, Some(Payload::Peer(p)) if p.pubkey == admin_hex),
        )
        .await?;
    }
    Ok(())
}

/// Dispute after fiat-sent, opened by the buyer; the admin settles: the buyer is paid.
async fn scenario_dispute_settle(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "dsettle", 70_000, Protocol::V1, Protocol::V2).await?;
    fiat_sent(&mut t).await?;
    let did = open_dispute(&mut t, true).await?;
    let mut admin = h.admin("dsettle-admin").await;
    admin_take(h, &mut admin, &mut t, did).await?;
    let id = t.id;
    admin.send(Some(id), Action::AdminSettle, None).await?;
    admin.wait(Action::AdminSettled, id).await?;
    t.seller.wait(Action::AdminSettled, id).await?;
    t.buyer.wait(Action::AdminSettled, id).await?;
    t.buyer.wait(Action::PurchaseCompleted, id).await?;
    check_paid(h, &t)?;
    Ok(i128::from(2 * t.fee) - ROUTING_FEE)
}

/// Dispute while active, opened by the seller; the admin cancels: the seller is refunded.
async fn scenario_dispute_cancel(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "dcancel", 30_000, Protocol::V2, Protocol::V2).await?;
    let did = open_dispute(&mut t, false).await?;
    let mut admin = h.admin("dcancel-admin").await;
    admin_take(h, &mut admin, &mut t, did).await?;
    let id = t.id;
    admin.send(Some(id), Action::AdminCancel, None).await?;
    admin.wait(Action::AdminCanceled, id).await?;
    t.seller.wait(Action::AdminCanceled, id).await?;
    t.buyer.wait(Action::AdminCanceled, id).await?;
    wait_balance(h, &t.seller_wallet, 0).await?;
    ensure!(h.ledger.balance(&t.buyer_wallet) == 0);
    ensure!(h.payouts_to(&t.buyer_wallet).is_empty());
    Ok(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_on_one_daemon() {
    let h = Harness::start("", "", "").await;
    let t0 = Instant::now();
    let (sell, buy, range, market, coop, dsettle, dcancel, restore) = tokio::join!(
        scenario_sell_v2(&h),
        scenario_buy_v1(&h),
        scenario_range(&h),
        scenario_market(&h),
        scenario_coop_cancel(&h),
        scenario_dispute_settle(&h),
        scenario_dispute_cancel(&h),
        scenario_restore(&h),
    );
    let mut node = 0i128;
    let mut failed = Vec::new();
    for (name, r) in [
        ("sell flow (v2)", sell),
        ("buy flow (v1)", buy),
        ("range order + child", range),
        ("market-price order", market),
        ("cooperative cancel", coop),
        ("dispute + admin settle", dsettle),
        ("dispute + admin cancel", dcancel),
        ("restore-session after losing local state", restore),
    ] {
        match r {
            Ok(n) => node += n,
            Err(e) => failed.push(format!("{name}: {e:#}")),
        }
    }
    assert!(
        failed.is_empty(),
        "scenarios failed:\n{}",
        failed.join("\n")
    );
    assert_eq!(h.ledger.balance(NODE), node, "node revenue");
    // Every order ended (success, canceled, canceled-by-admin): none left open.
    let open = h.open_orders().await;
    assert!(open.is_empty(), "open orders left: {open:?}");
    // No hold invoice was settled or canceled twice.
    for (hash, r) in h.ledger.holds() {
        assert!(r.settles <= 1 && r.cancels <= 1, "hold {hash:?}: {r:?}");
    }
    eprintln!("trades_on_one_daemon: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Scenarios with their own daemon
// ---------------------------------------------------------------------------------------------

/// Every payout attempt fails (payment_attempts = 2): the buyer gets `payment-failed`, then
/// `add-invoice`; a new invoice is paid (`invoice-updated`, `purchase-completed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_failure_then_new_invoice() {
    let h = Harness::start(
        "payment_attempts = 2\npayment_retries_interval = 6",
        "",
        "pay_timeout_secs = 5",
    )
    .await;
    let t0 = Instant::now();
    let mut t = sell_to_active(&h, "pf", 80_000, Protocol::V2, Protocol::V2)
        .await
        .unwrap();
    fiat_sent(&mut t).await.unwrap();
    h.ledger.set_faults(Faults {
        fail_payments: 2,
        ..Faults::default()
    });
    let id = t.id;
    t.seller
        .send(Some(id), Action::Release, None)
        .await
        .unwrap();
    t.seller
        .wait(Action::HoldInvoicePaymentSettled, id)
        .await
        .unwrap();
    t.buyer.wait(Action::Released, id).await.unwrap();
    let k = t
        .buyer
        .wait_where(Action::PaymentFailed, Some(id), |_| true)
        .await
        .unwrap();
    match k.payload {
        Some(Payload::PaymentFailed(info)) => {
            assert_eq!(info.payment_attempts, 1, "{info:?}");
            assert_eq!(info.payment_retries_interval, 6, "{info:?}");
        },
        other => panic!("payment-failed payload {other:?}"),
    }
    let ask = t.buyer.wait_order(Action::AddInvoice, id).await.unwrap();
    assert_eq!(ask.amount, (t.amount - t.fee) as i64);
    let failed = h.payouts_to(&t.buyer_wallet);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|(_, s)| matches!(s, AttemptStatus::Failed(_)))
    );
    assert_eq!(h.ledger.balance(&t.buyer_wallet), 0);

    let inv = invoice(&h.ledger, &t.buyer_wallet, t.amount - t.fee).unwrap();
    t.buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await
        .unwrap();
    t.buyer.wait(Action::InvoiceUpdated, id).await.unwrap();
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    assert_eq!(
        h.ledger.balance(&t.buyer_wallet),
        i128::from(t.amount - t.fee)
    );
    assert_eq!(
        h.ledger.balance(&t.seller_wallet),
        -i128::from(t.amount + t.fee)
    );
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
    let ok: Vec<_> = h
        .payouts_to(&t.buyer_wallet)
        .into_iter()
        .filter(|(_, s)| matches!(s, AttemptStatus::Succeeded(_)))
        .collect();
    assert_eq!(ok.len(), 1, "{ok:?}");
    eprintln!(
        "payout_failure_then_new_invoice: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// The taker of a sell order never sends its invoice: after `expiration_seconds` the taker gets
/// `canceled`, the maker `new-order` (the order is back in the book), and a new taker can take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_step_timeout_republishes() {
    let h = Harness::start("expiration_seconds = 5", "", "").await;
    let t0 = Instant::now();
    let mut seller = h.client("to-seller", Protocol::V2).await;
    let mut buyer = h.client("to-buyer", Protocol::V1).await;
    let (id, _) = make(&mut seller, sell_order(20_000, 10)).await.unwrap();
    let taken = Instant::now();
    buyer
        .send_opening(Some(id), Action::TakeSell, None)
        .await
        .unwrap();
    buyer.wait_order(Action::AddInvoice, id).await.unwrap();
    seller.wait(Action::WaitingBuyerInvoice, id).await.unwrap();
    buyer.wait(Action::Canceled, id).await.unwrap();
    let o = seller.wait_order(Action::NewOrder, id).await.unwrap();
    // The window is 5 s counted from the take in whole seconds.
    let waited = taken.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "timed out too early: {waited:?}"
    );
    assert_eq!(o.status, Some(Status::Pending));
    assert_eq!(o.buyer_trade_pubkey, None);

    // Back in the book: another buyer can take it.
    let mut buyer2 = h.client("to-buyer2", Protocol::V2).await;
    buyer2
        .send_opening(Some(id), Action::TakeSell, None)
        .await
        .unwrap();
    buyer2.wait_order(Action::AddInvoice, id).await.unwrap();
    // The first buyer's late invoice is refused.
    let inv = invoice(&h.ledger, "to-buyer", 20_000 - fee(20_000)).unwrap();
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await
        .unwrap();
    buyer
        .wait_where(Action::CantDo, Some(id), |_| true)
        .await
        .unwrap();
    assert!(h.ledger.holds().is_empty());
    eprintln!(
        "waiting_step_timeout_republishes: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// `kill -9` twice mid-trade, restarting the same binary on the same data directory:
/// 1. with the escrow locked (`active`); the buyer's `fiat-sent` is sent while the daemon is
///    down and is picked up from the relay after the restart;
/// 2. with the buyer's payout in flight after `release`; the payment completes while the daemon
///    is down, and the restarted daemon finds it instead of paying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_trade_and_restart() {
    let mut h = Harness::start("", "", "pay_timeout_secs = 5").await;
    let t0 = Instant::now();
    let mut t = sell_to_active(&h, "k9", 90_000, Protocol::V2, Protocol::V1)
        .await
        .unwrap();
    let id = t.id;

    h.daemon.kill9();
    t.buyer
        .send(Some(id), Action::FiatSent, None)
        .await
        .unwrap();
    h.restart().await;
    let bp = t.buyer.pubkey();
    t.seller
        .wait_where(
            Action::FiatSentOk,
            Some(id),
            |k| matches!(&k.payload, Some(Payload::Peer(p)) if p.pubkey == bp),
        )
        .await
        .unwrap();
    t.buyer.wait(Action::FiatSentOk, id).await.unwrap();

    // Payout hangs in flight; kill the daemon while it does.
    h.ledger.set_faults(Faults {
        hang_payments: true,
        ..Faults::default()
    });
    t.seller
        .send(Some(id), Action::Release, None)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !h
        .payouts_to(&t.buyer_wallet)
        .iter()
        .any(|(_, s)| *s == AttemptStatus::InFlight)
    {
        assert!(Instant::now() < deadline, "no payout attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.daemon.kill9();
    h.ledger.finish_hung(false);
    h.restart().await;

    t.seller
        .wait(Action::HoldInvoicePaymentSettled, id)
        .await
        .unwrap();
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    check_paid(&h, &t).unwrap();
    assert_eq!(
        h.payouts_to(&t.buyer_wallet).len(),
        1,
        "exactly one payment attempt"
    );
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
    for (hash, r) in h.ledger.holds() {
        assert_eq!(r.settles, 1, "hold {hash:?}: {r:?}");
    }
    // Nothing replayed: no second order, no refusal, no duplicate completion.
    for p in [&mut t.seller, &mut t.buyer] {
        let rest = p.drain(Duration::from_millis(1500)).await;
        for k in &rest {
            assert!(
                !matches!(
                    k.action,
                    Action::NewOrder | Action::CantDo | Action::PurchaseCompleted
                ),
                "{}: unexpected {:?}",
                p.name(),
                k
            );
        }
    }
    assert_eq!(h.daemon.starts, 3);
    // No request was applied twice (a replayed new-order would leave a pending order).
    let open = h.open_orders().await;
    assert!(open.is_empty(), "open orders left: {open:?}");
    eprintln!(
        "kill9_mid_trade_and_restart: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// A request sent while the daemon is down, and older than the live freshness window when the
/// daemon comes back, is fetched by the restart's catch-up (from the newest request the store
/// recorded) and served: the window bounds live events only, the catch-up horizon the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_while_the_daemon_was_down_is_served_after_the_restart() {
    // A one-second live window: the request below is three seconds old when the daemon is
    // back, so only the catch-up horizon lets it through.
    let mut h = Harness::start("", "freshness_secs = 1", "pay_timeout_secs = 5").await;
    let mut t = sell_to_active(&h, "dn", 70_000, Protocol::V2, Protocol::V2)
        .await
        .unwrap();
    let id = t.id;
    h.daemon.kill9();
    t.buyer
        .send(Some(id), Action::FiatSent, None)
        .await
        .unwrap();
    // The daemon stays down for a while (the scenario, not a timing assertion).
    tokio::time::sleep(Duration::from_secs(3)).await;
    h.restart().await;
    let bp = t.buyer.pubkey();
    t.seller
        .wait_where(
            Action::FiatSentOk,
            Some(id),
            |k| matches!(&k.payload, Some(Payload::Peer(p)) if p.pubkey == bp),
        )
        .await
        .unwrap();
    t.buyer.wait(Action::FiatSentOk, id).await.unwrap();
    t.seller
        .send(Some(id), Action::Release, None)
        .await
        .unwrap();
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    check_paid(&h, &t).unwrap();
}
