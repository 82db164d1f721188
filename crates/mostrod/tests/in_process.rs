//! The daemon as a library: `mostrod::run(config, shutdown)` in this test's own runtime (no
//! child process), against an in-process relay and the LND simulator behind the real adapter.
//! A whole trade (seller on protocol v2, buyer on v1), then a graceful stop through the
//! shutdown future, then a second run on the same data directory that finds the trade done.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "test code"
)]

mod support;

use support::*;
use tokio::sync::oneshot;

/// Runs the node of `world` on its own task; the sender stops it.
fn spawn_node(
    world: &World,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let cfg = mostrod::Config::load(&world.config, &[]).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(mostrod::run(cfg, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Stops the node and checks `run()` returned `Ok` within the grace period.
async fn stop_node(stop: oneshot::Sender<()>, node: tokio::task::JoinHandle<anyhow::Result<()>>) {
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while !health(admin) {
        assert!(Instant::now() < deadline, "node not ready within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first event of the node's of `kind` on the relay that `pred` accepts, polled until
/// [`WAIT`]; verified.
async fn node_event(
    world: &World,
    kind: u16,
    what: &str,
    pred: impl Fn(&nostr_sdk::Event) -> bool,
) -> nostr_sdk::Event {
    let client = nostr_sdk::Client::default();
    client.add_relay(world.relay_url.as_str()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    let deadline = Instant::now() + WAIT;
    let event = loop {
        let events = client
            .fetch_events(
                nostr_sdk::Filter::new()
                    .author(world.node_keys.public_key())
                    .kind(nostr_sdk::Kind::from(kind)),
                Duration::from_secs(3),
            )
            .await
            .unwrap();
        if let Some(e) = events.into_iter().find(|e| pred(e)) {
            break e;
        }
        assert!(Instant::now() < deadline, "no {what} from the node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    client.shutdown().await;
    event
}

/// A sell trade of `sats` from the new order to the buyer's purchase-completed: the seller and
/// the buyer are the node's clients, the buyer's invoice and the seller's payment come from the
/// simulator's wallets. Returns the order id and the buyer's payout.
async fn sell_trade(
    world: &World,
    seller: &mut Party,
    buyer: &mut Party,
    sats: i64,
) -> (Uuid, u64) {
    seller
        .send_opening(
            None,
            Action::NewOrder,
            Some(Payload::Order(sell_order(sats, 40))),
        )
        .await
        .unwrap();
    let id = seller
        .wait_where(Action::NewOrder, None, |_| true)
        .await
        .unwrap()
        .id
        .expect("new-order reply names the order");
    buyer
        .send_opening(Some(id), Action::TakeSell, None)
        .await
        .unwrap();
    let ask = buyer.wait_order(Action::AddInvoice, id).await.unwrap();
    let payout = u64::try_from(ask.amount).unwrap();
    // The support's invoice (valid a day): one of exactly `invoice_expiration_window` (3600 s)
    // is refused once a second has passed, as on a loaded machine.
    let invoice = invoice(&world.ledger, "buyer", payout).unwrap();
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, invoice, None)),
        )
        .await
        .unwrap();
    let pay = seller
        .wait_where(Action::PayInvoice, Some(id), |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await
        .unwrap();
    let Some(Payload::PaymentRequest(_, hold, _)) = pay.payload else {
        panic!("no hold invoice")
    };
    world.ledger.pay_hold("seller", &hold).unwrap();
    buyer
        .wait(Action::HoldInvoicePaymentAccepted, id)
        .await
        .unwrap();
    buyer.send(Some(id), Action::FiatSent, None).await.unwrap();
    seller.wait(Action::FiatSentOk, id).await.unwrap();
    seller.send(Some(id), Action::Release, None).await.unwrap();
    buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    (id, payout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_through_the_library_driver_then_a_graceful_stop() {
    let world = World::start("", "", "").await;
    let (stop, node) = spawn_node(&world);
    wait_ready(world.admin).await;

    let mut seller = world.client("seller", Protocol::V2).await;
    let mut buyer = world.client("buyer", Protocol::V1).await;
    let (id, payout) = sell_trade(&world, &mut seller, &mut buyer, 80_000).await;
    assert_eq!(
        payout,
        80_000 - fee(80_000),
        "the buyer is asked for amount minus its fee"
    );
    assert_eq!(
        world.ledger.balance("buyer"),
        i128::from(payout),
        "paid once"
    );

    // Graceful stop: the shutdown future resolves, run() returns Ok within the grace period.
    stop.send(()).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), node)
        .await
        .expect("run() returns after the shutdown future resolved")
        .unwrap();
    r.unwrap();
    assert!(
        !health(world.admin),
        "the admin endpoint is closed after the stop"
    );

    // A second run on the same data: the order is finished, nothing is paid again.
    let (stop, node) = spawn_node(&world);
    wait_ready(world.admin).await;
    let token = std::fs::read_to_string(world.dir.path().join("admin.token")).unwrap();
    let (_, body) = http_get(
        world.admin,
        &format!("/admin/orders/{id}"),
        Some(token.trim()),
    )
    .unwrap();
    assert!(
        body.contains("\"success\""),
        "order finished after restart: {body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        world.ledger.balance("buyer"),
        i128::from(payout),
        "not paid twice"
    );
    stop_node(stop, node).await;
    world.relay.shutdown();
}

/// The `[profile]` section reaches the relay as the node's kind-0 metadata at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_is_published_at_start() {
    let world = World::start("", "", "").await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&world.config)
        .unwrap();
    writeln!(
        f,
        "\n[profile]\nname = \"Test Mostro\"\nabout = \"escrow in hold invoices\"\nlud16 = \"node@example.com\""
    )
    .unwrap();
    drop(f);
    let (stop, node) = spawn_node(&world);
    wait_ready(world.admin).await;

    let event = node_event(&world, 0, "profile event", |_| true).await;
    assert_eq!(
        event.content,
        r#"{"name":"Test Mostro","about":"escrow in hold invoices","lud16":"node@example.com"}"#
    );

    stop_node(stop, node).await;
}

/// `[health] publish = true`: what `/health/ready` checks reaches the relay as kind 38389.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_report_is_published_when_asked_for() {
    let world = World::start("", "", "").await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&world.config)
        .unwrap();
    writeln!(f, "\n[health]\npublish = true\ninterval_secs = 10").unwrap();
    drop(f);
    let (stop, node) = spawn_node(&world);
    wait_ready(world.admin).await;

    let event = node_event(&world, 38389, "healthy report", |e| {
        // The first report may be sent before the relay connection is up: one that saw it.
        e.tags
            .iter()
            .any(|t| t.as_slice() == ["status".to_owned(), "ok".to_owned()])
    })
    .await;
    let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
    assert_eq!(tags[0], ["d", &world.node_keys.public_key().to_hex()]);
    assert_eq!(tags[1], ["z", "health"]);
    let check = |name: &str| {
        tags.iter()
            .find(|t| t.first().map(String::as_str) == Some("check") && t[1] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check in {tags:?}"))
    };
    assert_eq!(check("store")[2], "ok");
    assert_eq!(check("lightning")[2], "ok");
    assert_eq!(check("relays")[2..], ["ok", "1/1"]);
    let expiration: u64 = tags.iter().find(|t| t[0] == "expiration").unwrap()[1]
        .parse()
        .unwrap();
    assert_eq!(expiration, event.created_at.as_secs() + 30);

    stop_node(stop, node).await;
}

/// `[price] publish_to_nostr = true`: the node's quotes (here the fixed `[prices]`) reach the
/// relay as the kind-30078 exchange-rates event in the reference's format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_rates_are_published_when_asked_for() {
    let world = World::start("", "", "").await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&world.config)
        .unwrap();
    writeln!(f, "\n[price]\npublish_to_nostr = true").unwrap();
    drop(f);
    let (stop, node) = spawn_node(&world);
    wait_ready(world.admin).await;

    let event = node_event(&world, 30_078, "exchange-rates event", |_| true).await;
    let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
    let at = event.created_at.as_secs().to_string();
    let expiration = (event.created_at.as_secs() + 600).to_string();
    assert_eq!(
        tags,
        vec![
            vec!["d".to_owned(), "mostro-rates".to_owned()],
            vec!["published_at".to_owned(), at],
            vec!["source".to_owned(), "fixed".to_owned()],
            vec!["expiration".to_owned(), expiration],
        ]
    );
    assert_eq!(event.content, r#"{"BTC":{"BTC":1,"EUR":50000.0}}"#);

    stop_node(stop, node).await;
}

/// A trade with a development fee configured, against the LND simulator behind the real LND
/// adapter: the fee is paid once after the buyer, audited as kind 8383, and not again after a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_pays_the_dev_fee_once_and_publishes_its_audit_event() {
    let world = World::start(
        "dev_fee_percentage = 0.3\ndev_fee_address = \"devfund@dev.example\"",
        "",
        "",
    )
    .await;
    let spawn = |world: &World| {
        let cfg = mostrod::Config::load(&world.config, &[]).unwrap();
        let parts = mostrod::Parts {
            resolver: Some(std::sync::Arc::new(mostro_testkit::FakeResolver::new(
                world.ledger.clone(),
            ))),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mostrod::run_with_parts(cfg, parts, async {
            let _ = stopped.await;
        }));
        (stop, task)
    };
    let (stop, node) = spawn(&world);
    wait_ready(world.admin).await;

    let mut seller = world.client("seller", Protocol::V2).await;
    let mut buyer = world.client("buyer", Protocol::V2).await;
    let (id, payout) = sell_trade(&world, &mut seller, &mut buyer, 80_000).await;
    assert_eq!(world.ledger.balance("buyer"), i128::from(payout));

    // 30 % of the node's fee (2 x 240 sat).
    let dev = 144i128;
    let deadline = Instant::now() + WAIT;
    while world.ledger.balance("devfund") != dev {
        assert!(
            Instant::now() < deadline,
            "dev fee not paid: {}",
            world.ledger.balance("devfund")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit = node_event(&world, 8383, "dev-fee audit event", |_| true).await;
    let tags: Vec<Vec<String>> = audit.tags.iter().map(|t| t.as_slice().to_vec()).collect();
    let names: Vec<&str> = tags.iter().map(|t| t[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "order-id",
            "amount",
            "hash",
            "destination",
            "network",
            "y",
            "z",
            "expiration"
        ]
    );
    assert_eq!(tags[0][1], id.to_string());
    assert_eq!(tags[1][1], "144");
    assert_eq!(tags[2][1].len(), 64);
    assert_eq!(tags[3][1], "devfund@dev.example");
    assert_eq!(tags[4][1], "regtest");
    assert_eq!(tags[6][1], "dev-fee-payment");
    stop_node(stop, node).await;

    // Another run on the same data: nothing is paid again.
    let (stop, node) = spawn(&world);
    wait_ready(world.admin).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.ledger.balance("devfund"), dev, "dev fee paid once");
    assert_eq!(world.ledger.balance("buyer"), i128::from(payout));
    stop_node(stop, node).await;
    world.relay.shutdown();
}

/// `[price] nostr_sources`: a trusted node's published rates (kind 30078) become the node's
/// price feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_nodes_published_rates_feed_the_prices() {
    let world = World::start("", "", "").await;
    let trusted = nostr_sdk::Keys::generate();
    let client = nostr_sdk::Client::new(trusted.clone());
    client.add_relay(world.relay_url.as_str()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    let rates = nostr_sdk::EventBuilder::new(
        nostr_sdk::Kind::from(30_078u16),
        r#"{"BTC":{"BTC":1,"EUR":61000.0,"USD":66000.0}}"#,
    )
    .tag(nostr_sdk::Tag::identifier("mostro-rates"))
    .sign_with_keys(&trusted)
    .unwrap();
    client.send_event(&rates).await.unwrap();
    client.shutdown().await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&world.config)
        .unwrap();
    writeln!(
        f,
        "\n[price]\nnostr_sources = [\"{}\"]\ncurrencies = [\"EUR\"]",
        trusted.public_key().to_hex()
    )
    .unwrap();
    drop(f);
    let (stop, node) = spawn_node(&world);
    wait_ready(world.admin).await;
    let token = std::fs::read_to_string(world.dir.path().join("admin.token")).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = http_get(world.admin, "/metrics", Some(token.trim())).unwrap();
        if body.contains("mostro_price_quote_age_seconds{currency=\"EUR\"}") {
            assert!(!body.contains("currency=\"USD\""), "USD is not accepted");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no EUR quote from the trusted node:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_node(stop, node).await;
}
