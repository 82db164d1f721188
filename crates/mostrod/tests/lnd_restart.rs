//! End-to-end: the real `mostrod` binary while LND restarts with a payout in flight.
//!
//! A sell trade reaches release; the buyer's payout hangs in flight; the LND simulator
//! restarts (every connection and stream dropped) and answers as LND does while starting up
//! ("waiting to start, RPC services not available", ...) so every pay and status call of the
//! daemon fails; then it serves again with its state intact. Either the hung payment completes
//! (the buyer is paid exactly once, the order ends `success`) or it failed while the node was
//! down (the buyer is asked for a new invoice only once the node's record says so, and is
//! paid once, on the new invoice).
//!
//! The harness (daemon process, relay, simulator, clients) is `support/`, shared with `e2e.rs`;
//! its simulator handle is what restarts LND here.

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

// ---------------------------------------------------------------------------------------------
// The restart scenarios
// ---------------------------------------------------------------------------------------------

/// Polls `cond` every 50 ms until it holds (bounded by [`WAIT`]).
async fn until(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        ensure!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The `s` tag of the latest kind-38383 event of order `id` on the relay.
async fn relay_status(h: &Harness, id: Uuid) -> anyhow::Result<Option<String>> {
    let c = nostr_sdk::Client::default();
    c.add_relay(h.relay_url.as_str()).await?;
    c.connect().await;
    c.wait_for_connection(Duration::from_secs(5)).await;
    let f = nostr_sdk::Filter::new()
        .kind(nostr_sdk::Kind::from(38383u16))
        .author(h.node)
        .identifier(id.to_string());
    let events = c.fetch_events(f, Duration::from_secs(5)).await?;
    c.shutdown().await;
    let latest = events.into_iter().max_by_key(|e| e.created_at);
    Ok(latest.and_then(|e| {
        e.tags.iter().find_map(|t| match t.as_slice() {
            [k, v, ..] if k == "s" => Some(v.clone()),
            _ => None,
        })
    }))
}

/// Waits (bounded) until the relay shows order `id` with status `want`.
async fn relay_status_is(h: &Harness, id: Uuid, want: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = relay_status(h, id).await?;
        if st.as_deref() == Some(want) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "order {id} on the relay: {st:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The daemon's open order `id` (from the admin endpoint), if it is still open.
async fn open_order(h: &Harness, id: Uuid) -> Option<serde_json::Value> {
    h.open_orders()
        .await
        .into_iter()
        .find(|o| o["id"] == id.to_string())
}

/// Daemon settings of these scenarios (the smallest mostrod accepts): a payout call reports
/// "in flight" after 5 s, and a payout in flight is checked with the node every 6 s.
fn start_settings(attempts: u32) -> (String, String) {
    (
        format!("payment_attempts = {attempts}\npayment_retries_interval = 6"),
        "pay_timeout_secs = 5".to_owned(),
    )
}

/// Common first half: a sell trade up to release with the payout hung in flight, then an LND
/// restart that stays in its start-up until the daemon has had pay / status calls refused.
/// Returns the trade and the payout hash.
async fn release_then_restart_lnd(
    h: &Harness,
    tag: &str,
    amount: u64,
    fail_while_down: bool,
) -> anyhow::Result<(Trade, PaymentHash)> {
    let mut t = sell_to_active(h, tag, amount, Protocol::V2, Protocol::V2).await?;
    fiat_sent(&mut t).await?;
    h.ledger.set_faults(Faults {
        hang_payments: true,
        ..Faults::default()
    });
    let id = t.id;
    t.seller.send(Some(id), Action::Release, None).await?;
    t.seller.wait(Action::HoldInvoicePaymentSettled, id).await?;
    t.buyer.wait(Action::Released, id).await?;
    until("the payout is in flight", || {
        h.payouts_to(&t.buyer_wallet)
            .iter()
            .any(|(_, s)| *s == AttemptStatus::InFlight)
    })
    .await?;
    let hashes: Vec<PaymentHash> = h
        .ledger
        .all_attempts()
        .into_iter()
        .map(|(hash, _)| hash)
        .collect();
    ensure!(hashes.len() == 1, "one payout attempt: {hashes:?}");
    let hash = hashes[0];
    ensure!(h.ledger.invoice(&hash).unwrap().wallet == t.buyer_wallet);

    // LND restarts: connections and streams dropped, back in its start-up.
    h.sim.restart_starting_up().await?;
    if fail_while_down {
        // The network gives up on the HTLC while the node is not answering.
        h.ledger.finish_hung(true);
    }
    let before = h.sim.refused_calls();
    // Bounded: the daemon checks a payout in flight every retry interval (6 s).
    until(
        "the daemon's payout calls are refused while LND starts",
        || h.sim.refused_calls().router > before.router,
    )
    .await?;
    h.sim
        .set_startup_phase(Some(mostro_lnd_sim::StartupPhase::WalletLocked));
    let at = h.sim.refused_calls().router;
    until("refused with the wallet locked", || {
        h.sim.refused_calls().router > at
    })
    .await?;
    h.sim
        .set_startup_phase(Some(mostro_lnd_sim::StartupPhase::RpcStarting));
    let at = h.sim.refused_calls().router;
    until("refused while the RPC server starts", || {
        h.sim.refused_calls().router > at
    })
    .await?;

    // While the node cannot say, nothing is decided: no second payment, no new invoice asked,
    // the order is still waiting for its payout.
    let attempts = h.ledger.attempts(&hash);
    ensure!(attempts.len() == 1, "still one attempt: {attempts:?}");
    ensure!(
        h.ledger.all_attempts().len() == 1,
        "no other payment: {:?}",
        h.ledger.all_attempts()
    );
    let seen = t.buyer.drain(Duration::from_millis(300)).await;
    ensure!(
        !seen.iter().any(|k| matches!(
            k.action,
            Action::AddInvoice | Action::PaymentFailed | Action::PurchaseCompleted
        )),
        "the buyer was told something while LND was starting: {:?}",
        seen.iter().map(|k| k.action.as_str()).collect::<Vec<_>>()
    );
    let o = open_order(h, id)
        .await
        .ok_or_else(|| anyhow!("order {id} no longer open"))?;
    ensure!(
        o["status"] == "settled-hold-invoice",
        "order while LND starts: {o}"
    );
    let health = h.daemon.admin;
    ensure!(
        tokio::task::spawn_blocking(move || health_ok(health)).await?,
        "mostrod stays healthy while LND starts"
    );
    // ... but not ready: its Lightning node does not answer GetInfo.
    let addr = h.daemon.admin;
    until_async(
        "/health/ready names lightning while LND starts",
        || async move {
            tokio::task::spawn_blocking(move || http_get(addr, "/health/ready", None))
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|(status, body)| {
                    status.contains(" 503 ") && body.contains("lightning")
                })
        },
    )
    .await?;
    Ok((t, hash))
}

/// The process serves (`/health/live`); readiness is `/health`, which needs the node.
fn health_ok(addr: SocketAddr) -> bool {
    http_get(addr, "/health/live", None).is_ok_and(|(status, _)| status.contains(" 200 "))
}

/// Waits (bounded by [`WAIT`]) until the async `cond` holds.
async fn until_async<F, Fut>(what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The escrow hold invoice of the test's only trade.
fn the_hold(h: &Harness) -> anyhow::Result<mostro_testkit::ledger::HoldRecord> {
    let holds = h.ledger.holds();
    ensure!(holds.len() == 1, "one hold invoice: {}", holds.len());
    Ok(holds[0].1.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lnd_restarts_while_a_payout_is_in_flight() {
    let (mostro, lightning) = start_settings(2);
    let h = Harness::start(&mostro, "", &lightning).await;
    let (mut t, hash) = release_then_restart_lnd(&h, "rs", 60_000, false)
        .await
        .unwrap();
    let id = t.id;

    // LND serves again and the hung payment completes.
    h.sim.set_starting_up(false);
    h.ledger.finish_hung(false);
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    t.buyer.wait(Action::Rate, id).await.unwrap();
    relay_status_is(&h, id, "success").await.unwrap();
    assert!(open_order(&h, id).await.is_none(), "the order is closed");

    // Give a duplicate every chance to happen: more than a retry interval.
    let later = t.buyer.drain(Duration::from_secs(7)).await;
    assert!(
        !later
            .iter()
            .any(|k| matches!(k.action, Action::AddInvoice | Action::PaymentFailed)),
        "{:?}",
        later.iter().map(|k| k.action.as_str()).collect::<Vec<_>>()
    );
    let attempts = h.ledger.attempts(&hash);
    assert_eq!(
        attempts.len(),
        1,
        "one attempt on the payout hash: {attempts:?}"
    );
    assert!(matches!(attempts[0].status, AttemptStatus::Succeeded(_)));
    assert_eq!(
        h.ledger.all_attempts().len(),
        1,
        "no other payment at all: {:?}",
        h.ledger.all_attempts()
    );
    assert_eq!(
        h.payouts_to(&t.buyer_wallet),
        vec![(Sats(t.amount - t.fee), AttemptStatus::Succeeded(Sats(1)))]
    );
    assert_eq!(
        h.ledger.invoice(&hash).unwrap().received,
        Sats(t.amount - t.fee)
    );
    check_paid(&h, &t).unwrap();
    let hold = the_hold(&h).unwrap();
    assert_eq!(hold.settles, 1, "the hold invoice is settled once");
    assert_eq!(hold.cancels, 0);
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
    // Every payout call carried the configured CLTV bound.
    assert!(!h.sim.cltv_limits().is_empty());
    assert!(
        h.sim.cltv_limits().iter().all(|l| *l > 0),
        "{:?}",
        h.sim.cltv_limits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_fails_while_lnd_restarts() {
    let (mostro, lightning) = start_settings(1);
    let h = Harness::start(&mostro, "", &lightning).await;
    let (mut t, hash) = release_then_restart_lnd(&h, "rf", 70_000, true)
        .await
        .unwrap();
    let id = t.id;
    assert!(
        matches!(h.ledger.attempts(&hash)[0].status, AttemptStatus::Failed(_)),
        "the payment failed while LND was starting"
    );

    // LND serves again: only its record can tell the daemon the payment failed.
    let status_calls = h.ledger.status_calls();
    h.sim.set_starting_up(false);
    let ask = t.buyer.wait_order(Action::AddInvoice, id).await.unwrap();
    assert_eq!(ask.amount, (t.amount - t.fee) as i64);
    assert!(
        h.ledger.status_calls() > status_calls,
        "the daemon read the node's payment record before asking for a new invoice"
    );
    assert_eq!(
        h.ledger.attempts(&hash).len(),
        1,
        "the failed hash is not sent again"
    );
    assert_eq!(h.ledger.balance(&t.buyer_wallet), 0, "nothing paid yet");
    let o = open_order(&h, id).await.unwrap();
    assert_eq!(o["status"], "settled-hold-invoice", "{o}");

    let inv = invoice(&h.ledger, &t.buyer_wallet, t.amount - t.fee).unwrap();
    t.buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await
        .unwrap();
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    relay_status_is(&h, id, "success").await.unwrap();

    let later = t.buyer.drain(Duration::from_secs(7)).await;
    assert!(
        !later.iter().any(|k| k.action == Action::AddInvoice),
        "asked for an invoice again: {:?}",
        later.iter().map(|k| k.action.as_str()).collect::<Vec<_>>()
    );
    // Paid exactly once, on the new invoice; the failed hash stayed at its one failed attempt.
    let all = h.ledger.all_attempts();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(h.ledger.attempts(&hash).len(), 1);
    let ok: Vec<_> = all
        .iter()
        .filter(|(_, a)| matches!(a.status, AttemptStatus::Succeeded(_)))
        .collect();
    assert_eq!(ok.len(), 1, "{all:?}");
    assert_ne!(ok[0].0, hash);
    check_paid(&h, &t).unwrap();
    let hold = the_hold(&h).unwrap();
    assert_eq!(hold.settles, 1, "the hold invoice is settled once");
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
}
