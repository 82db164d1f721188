//! Embedding the Mostro engine in your own tokio service, with your own adapters and no mostrod.
//!
//! The "service" here takes requests from an in-process channel (where a real one would have an
//! HTTP or WebSocket API), delivers the engine's messages through its own `Transport` (a channel
//! per user), stores everything in SQLite with the real `mostro-sqlite` adapter, and uses the test
//! kit's simulated Lightning node. It drives the engine with mostrod's own driver (the `mostrod`
//! library): `intake::serve` (one worker per sender, each request's outcome back on a reply
//! channel) and `daemon::drive` (Lightning events, deadlines, outbox retries, graceful stop).
//!
//! Run: `cargo run -p mostro-examples --example embedded_service`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mostro_core::engine::{Action, Engine, EngineConfig, NewOrderRequest, Outcome, Ports, Request};
use mostro_core::machine::{Notice, Notify};
use mostro_core::order::{Order, Protocol};
use mostro_core::ports::{Clock, Entropy, LightningNode, Network, Transport, TransportError};
use mostro_core::types::{EventId, PubKey, Sats};
use mostro_testkit::scenario::sell_order;
use mostro_testkit::{FakeNode, FixedPrices, Ledger};
use tokio::sync::mpsc;

/// Your transport: here, one channel per user key (a WebSocket per connected user in real life).
#[derive(Default)]
struct ChannelTransport {
    users: Mutex<HashMap<PubKey, mpsc::UnboundedSender<Notice>>>,
}

impl ChannelTransport {
    fn connect(&self, key: PubKey) -> mpsc::UnboundedReceiver<Notice> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut u) = self.users.lock() {
            u.insert(key, tx);
        }
        rx
    }
}

#[async_trait]
impl Transport for ChannelTransport {
    async fn send(&self, msg: &Notify) -> Result<(), TransportError> {
        let users = self
            .users
            .lock()
            .map_err(|_| TransportError::transient("poisoned"))?;
        if let Some(tx) = users.get(&msg.to) {
            // A closed channel is the user's problem, not a reason to retry forever.
            let _ = tx.send(msg.notice.clone());
        }
        Ok(())
    }

    async fn publish_order(&self, order: &Order) -> Result<(), TransportError> {
        say(&format!(
            "   [order book] {} is now {}",
            order.id, order.status
        ));
        Ok(())
    }

    async fn publish_dispute(&self, _order: &Order) -> Result<(), TransportError> {
        Ok(())
    }

    async fn publish_dev_fee(&self, _order: &Order) -> Result<(), TransportError> {
        // No public audit trail in this embedding (no development fee is configured).
        Ok(())
    }
}

/// Not for production: use the operating system's randomness in a real service.
struct CounterEntropy(Mutex<u64>);
impl Entropy for CounterEntropy {
    fn random_32(&self) -> [u8; 32] {
        let mut n = self.0.lock().map(|mut g| {
            *g += 1;
            *g
        });
        let n = n.as_mut().map(|n| *n).unwrap_or(0);
        let mut b = [7u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b
    }
}

#[allow(clippy::print_stdout, reason = "example output")]
fn say(s: &str) {
    println!("{s}");
}

fn user(n: u8) -> (PubKey, PubKey) {
    (PubKey([n; 32]), PubKey([n.wrapping_add(100); 32]))
}

fn request(
    n: &mut u64,
    who: (PubKey, PubKey),
    order: Option<mostro_core::types::OrderId>,
    action: Action,
) -> Request {
    *n += 1;
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_le_bytes());
    Request {
        event_id: Some(EventId(id)),
        sender: who.0,
        identity: who.1,
        protocol: Protocol::V2,
        request_id: Some(*n),
        trade_index: Some(i64::try_from(*n).unwrap_or(1)),
        order_id: order,
        action,
    }
}

async fn expect(
    rx: &mut mpsc::UnboundedReceiver<Notice>,
    what: &str,
    pred: impl Fn(&Notice) -> bool,
) -> Result<Notice, String> {
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .map_err(|_| format!("no {what} within 5 s"))?
            .ok_or("channel closed")?;
        if pred(&n) {
            return Ok(n);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("mostro-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let store = Arc::new(
        mostro_sqlite::SqliteStore::open(dir.join("trades.db")).map_err(|e| e.to_string())?,
    );
    let clock: Arc<dyn Clock> = Arc::new(mostro_testkit::SystemClock);
    let ledger = Ledger::new(Network::Regtest, clock.clone());
    let node = Arc::new(FakeNode::new(ledger.clone()));
    let transport = Arc::new(ChannelTransport::default());
    let ports = Ports {
        node: node.clone(),
        store,
        transport: transport.clone(),
        clock,
        entropy: Arc::new(CounterEntropy(Mutex::new(0))),
        prices: Arc::new(FixedPrices::default()),
    };
    let config = EngineConfig {
        node_key: PubKey([99; 32]),
        network: Network::Regtest,
        pay_timeout_secs: 30,
    };
    let engine = Arc::new(Engine::new(
        ports,
        config,
        mostro_core::policy::Policy::default(),
    ));
    engine.reconcile().await.map_err(|e| e.to_string())?;

    // The driver's loops (Lightning events, deadlines, outbox retries) and its intake, until
    // `stop` fires.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    let lightning: Arc<dyn LightningNode> = node.clone();
    let driver = tokio::spawn(mostrod::daemon::drive(
        engine.clone(),
        lightning,
        Arc::default(),
        Vec::new(),
        stopped(stop_rx.clone()),
    ));
    type Reply = tokio::sync::oneshot::Sender<Result<Outcome, String>>;
    let (inbox_tx, inbox) = mpsc::unbounded_channel::<(Request, Reply)>();
    let intake = tokio::spawn(mostrod::intake::serve(
        engine.clone(),
        None,
        inbox,
        stopped(stop_rx),
    ));

    // Your API: requests arrive from users (here, scripted).
    let (seller, buyer) = (user(1), user(2));
    let mut seller_rx = transport.connect(seller.0);
    let mut buyer_rx = transport.connect(buyer.0);
    let mut n = 0u64;
    // Your API hands each request to the intake and waits for its outcome.
    let handle = |req: Request| {
        let inbox = inbox_tx.clone();
        async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            inbox
                .send((req, tx))
                .map_err(|_| "intake stopped".to_owned())?;
            rx.await.map_err(|_| "no outcome".to_owned())?
        }
    };

    let new = Action::NewOrder(Box::new(NewOrderRequest {
        order: sell_order(50_000, 25),
        buyer_invoice: None,
    }));
    let Outcome::Applied(Some(id)) = handle(request(&mut n, seller, None, new)).await? else {
        return Err("order refused".into());
    };
    say(&format!("1. seller's order {id} accepted"));
    handle(request(
        &mut n,
        buyer,
        Some(id),
        Action::TakeSell {
            fiat_amount: None,
            invoice: None,
        },
    ))
    .await?;
    let Notice::AddInvoice(o) = expect(&mut buyer_rx, "add-invoice", |n| {
        matches!(n, Notice::AddInvoice(_))
    })
    .await?
    else {
        return Err("unexpected".into());
    };
    let payout = o.amount.checked_sub(o.fee).ok_or("fee")?;
    let invoice = ledger
        .wallet_invoice("buyer", Some(payout), 3600)
        .map_err(|e| e.to_string())?;
    handle(request(
        &mut n,
        buyer,
        Some(id),
        Action::AddInvoice(invoice),
    ))
    .await?;
    say(&format!("2. buyer took it and gave a {payout} invoice"));
    let Notice::PayInvoice { bolt11, .. } = expect(&mut seller_rx, "pay-invoice", |n| {
        matches!(n, Notice::PayInvoice { .. })
    })
    .await?
    else {
        return Err("unexpected".into());
    };
    ledger
        .pay_hold("seller", &bolt11)
        .map_err(|e| e.to_string())?;
    expect(&mut buyer_rx, "hold accepted", |n| {
        matches!(n, Notice::HoldInvoicePaymentAccepted(_))
    })
    .await?;
    say("3. seller locked the sats in the hold invoice");
    handle(request(
        &mut n,
        buyer,
        Some(id),
        Action::FiatSent { next_trade: None },
    ))
    .await?;
    handle(request(
        &mut n,
        seller,
        Some(id),
        Action::Release { next_trade: None },
    ))
    .await?;
    expect(&mut buyer_rx, "purchase-completed", |n| {
        matches!(n, Notice::PurchaseCompleted)
    })
    .await?;
    say(&format!(
        "4. released; buyer received {} sat",
        ledger.balance("buyer")
    ));
    if ledger.balance("buyer") != i128::from(payout.0) {
        return Err("buyer not paid".into());
    }
    let _ = Sats::ZERO;
    let _ = stop_tx.send(true);
    let _ = intake.await;
    let _ = driver.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
