//! End to end through a real relay running in-process (nostr-relay-builder on
//! 127.0.0.1): separate nostr-sdk clients speak v1 and v2 to a node made of
//! the real engine (test-kit fakes behind it), `NostrTransport` and
//! `run_intake` (its requests handed to the engine in order by a test consumer); the relay is killed and restarted on the same port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::keys;
use mostro_core::engine::{Engine, EngineConfig, Ports};
use mostro_core::order::Protocol;
use mostro_core::policy::Policy;
use mostro_core::ports::{Clock, Network, Store};
use mostro_core::types::EventId;
use mostro_core::wire::{Action, Kind, Message, MessageKind, Payload, SmallOrder, Status};
use mostro_nostr::client::{ClientKeys, WrapOptions, open_reply, wrap_v1, wrap_v2};
use mostro_nostr::intake::IntakeConfig;
use mostro_nostr::{Delivered, NostrTransport, TransportConfig, run_intake};
use mostro_testkit::{FakeNode, FixedPrices, Ledger, ManualClock, MemStore, SeqEntropy};
use nostr_relay_builder::prelude::{
    LocalRelay, MemoryDatabase, MemoryDatabaseOptions, RateLimit, RelayBuilder,
};
use nostr_sdk::{Client, Filter, Keys, RelayOptions, RelayPoolNotification, ToBech32};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ relay

struct TestRelay {
    relay: Option<LocalRelay>,
    db: Arc<MemoryDatabase>,
    port: u16,
}

impl TestRelay {
    fn builder(db: &Arc<MemoryDatabase>, port: u16) -> RelayBuilder {
        RelayBuilder::default()
            .addr("127.0.0.1".parse().unwrap())
            .port(port)
            .database(db.clone())
            .rate_limit(RateLimit {
                max_reqs: 1000,
                notes_per_minute: 100_000,
            })
    }

    async fn start() -> TestRelay {
        let db = Arc::new(MemoryDatabase::with_opts(MemoryDatabaseOptions {
            events: true,
            max_events: None,
        }));
        // Find a free port, then bind the relay on it (so a restart can reuse it).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let relay = LocalRelay::new(Self::builder(&db, port));
        relay.run().await.unwrap();
        TestRelay {
            relay: Some(relay),
            db,
            port,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Stops the relay and drops every connection. The relay signals its
    /// sessions with `Notify::notify_waiters`, which a session busy with a
    /// message at that instant misses, so the signal is repeated for a while
    /// (a real relay process takes all its sockets down at once).
    fn kill(&mut self) {
        if let Some(r) = self.relay.take() {
            tokio::spawn(async move {
                for _ in 0..300 {
                    r.shutdown();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
    }

    /// Starts again on the same port with the same stored events.
    async fn restart(&mut self) {
        for _ in 0..50 {
            let relay = LocalRelay::new(Self::builder(&self.db, self.port));
            if relay.run().await.is_ok() {
                self.relay = Some(relay);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("relay could not bind port {} again", self.port);
    }
}

// ------------------------------------------------------------------- node

/// Counts what reaches the engine, per outer event id.
struct Counting {
    engine: Arc<Engine>,
    seen: Mutex<HashMap<EventId, usize>>,
}

impl Counting {
    /// The consumer of the transport's requests: counts each, hands it to the engine, acks.
    async fn serve(&self, mut inbox: mpsc::UnboundedReceiver<Delivered>) {
        while let Some((request, ack)) = inbox.recv().await {
            if let Some(id) = request.event_id {
                *self.seen.lock().unwrap().entry(id).or_default() += 1;
            }
            match self.engine.handle(request).await {
                Ok(_) => ack.handled(),
                Err(_) => ack.failed(),
            }
        }
    }
}

/// The adapter's questions answered from the test store.
struct StoreRecords(MemStore);

#[async_trait::async_trait]
impl mostro_nostr::Records for StoreRecords {
    async fn processed(&self, id: &EventId) -> Result<bool, String> {
        self.0.seen_event(id).await.map_err(|e| e.to_string())
    }

    async fn user(
        &self,
        identity: &mostro_core::types::PubKey,
    ) -> Result<Option<mostro_core::ports::User>, String> {
        self.0.user(identity).await.map_err(|e| e.to_string())
    }

    async fn load(&self, key: &str) -> Result<Option<String>, String> {
        self.0.setting(key).await.map_err(|e| e.to_string())
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), String> {
        self.0
            .set_setting(key, value)
            .await
            .map_err(|e| e.to_string())
    }
}

struct TestNode {
    engine: Arc<Engine>,
    transport: Arc<NostrTransport>,
    store: MemStore,
    counting: Arc<Counting>,
    ledger: Ledger,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestNode {
    async fn start(relays: Vec<String>) -> TestNode {
        Self::start_on(relays, MemStore::new()).await
    }

    /// A node on an existing store (a restart).
    async fn start_on(relays: Vec<String>, store: MemStore) -> TestNode {
        Self::start_with(relays, store, |_| {}).await
    }

    /// A node on `store` with its transport settings adjusted by `tweak`.
    async fn start_with(
        relays: Vec<String>,
        store: MemStore,
        tweak: impl FnOnce(&mut TransportConfig),
    ) -> TestNode {
        let node_keys = keys("mostro");
        let clock: Arc<dyn Clock> = Arc::new(mostro_testkit::SystemClock);
        let manual = Arc::new(ManualClock::new(clock.now()));
        let ledger = Ledger::new(Network::Regtest, manual.clone());
        let fake = Arc::new(FakeNode::new(ledger.clone()));
        let mut config = TransportConfig::new(&node_keys, relays);
        config.relay_retry_interval = Duration::from_secs(1);
        config.intake = IntakeConfig {
            freshness_secs: Some(60),
            ..IntakeConfig::default()
        };
        tweak(&mut config);
        let transport = Arc::new(NostrTransport::new(
            node_keys.clone(),
            config,
            clock,
            Some(Arc::new(StoreRecords(store.clone()))),
        ));
        let ports = Ports {
            node: fake.clone(),
            store: Arc::new(store.clone()),
            transport: transport.clone(),
            clock: manual,
            entropy: Arc::new(SeqEntropy::new(7)),
            prices: Arc::new(FixedPrices::default()),
        };
        let engine_config = EngineConfig {
            node_key: mostro_nostr::to_core_key(&node_keys.public_key()),
            network: Network::Regtest,
            pay_timeout_secs: 60,
        };
        let engine = Arc::new(Engine::new(ports, engine_config, Policy::default()));
        transport.connect().await.unwrap();
        transport.wait_for_connection(Duration::from_secs(5)).await;
        let counting = Arc::new(Counting {
            engine: engine.clone(),
            seen: Mutex::new(HashMap::new()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let consumer = tokio::spawn({
            let c = counting.clone();
            async move { c.serve(inbox).await }
        });
        let inbound = tokio::spawn({
            let t = transport.clone();
            async move {
                run_intake(t, inbox_tx, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        // The outbox: messages that could not be sent (relay down) are retried.
        let resume = tokio::spawn({
            let engine = engine.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = engine.resume().await;
                }
            }
        });
        // Lightning events (the seller paid the hold invoice, ...) to the engine.
        let pump = tokio::spawn({
            let engine = engine.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    for ev in fake.drain_events() {
                        let _ = engine.on_node_event(ev).await;
                    }
                }
            }
        });
        // Give the subscriptions a moment to reach the relays.
        tokio::time::sleep(Duration::from_millis(300)).await;
        TestNode {
            engine,
            transport,
            store,
            counting,
            ledger,
            stop: Some(stop),
            tasks: vec![inbound, consumer, resume, pump],
        }
    }

    fn seen(&self) -> HashMap<EventId, usize> {
        self.counting.seen.lock().unwrap().clone()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let mut tasks = std::mem::take(&mut self.tasks);
        let inbound = tasks.remove(0);
        tokio::time::timeout(Duration::from_secs(15), inbound)
            .await
            .unwrap()
            .unwrap();
        for t in tasks {
            t.abort();
        }
        self.transport.shutdown().await;
    }
}

// ----------------------------------------------------------------- client

struct TestClient {
    client: Client,
    keys: ClientKeys,
    protocol: Protocol,
    node: nostr_sdk::PublicKey,
    replies: mpsc::UnboundedReceiver<Message>,
    pending: Vec<Message>,
}

impl TestClient {
    async fn connect(relays: &[String], keys: ClientKeys, protocol: Protocol) -> TestClient {
        let client = Client::builder().signer(keys.trade.clone()).build();
        let opts = RelayOptions::new()
            .retry_interval(Duration::from_millis(300))
            .adjust_retry_interval(false);
        for r in relays {
            client
                .pool()
                .add_relay(r.as_str(), opts.clone())
                .await
                .unwrap();
        }
        client.connect().await;
        client.wait_for_connection(Duration::from_secs(5)).await;
        let node = common::keys("mostro").public_key();
        let filter = Filter::new()
            .kinds([nostr_sdk::Kind::from(14), nostr_sdk::Kind::GiftWrap])
            .pubkey(keys.trade.public_key());
        client.subscribe(filter, None).await.unwrap();
        let (tx, replies) = mpsc::unbounded_channel();
        let mut notes = client.notifications();
        let trade = keys.trade.clone();
        tokio::spawn(async move {
            while let Ok(n) = notes.recv().await {
                if let RelayPoolNotification::Event { event, .. } = n
                    && let Ok(u) = open_reply(&event, &trade)
                    && u.sender == node
                    && tx.send(u.message).is_err()
                {
                    return;
                }
            }
        });
        TestClient {
            client,
            keys,
            protocol,
            node,
            replies,
            pending: Vec::new(),
        }
    }

    fn wrap(&self, msg: &Message) -> nostr_sdk::Event {
        self.wrap_at(msg, nostr_sdk::Timestamp::now())
    }

    /// Sends a new order and returns the id of the order the node created.
    async fn created(&mut self, msg: &Message) -> String {
        self.send(msg).await;
        self.expect(Action::NewOrder)
            .await
            .kind()
            .id
            .unwrap()
            .to_string()
    }

    /// Sends a v2 message with `pow` bits of proof of work mined on it.
    async fn send_with_pow(&self, msg: &Message, pow: u8) -> nostr_sdk::EventId {
        let opts = WrapOptions {
            pow,
            ..WrapOptions::default()
        };
        let e = wrap_v2(msg, &self.keys, &self.node, opts).unwrap();
        Self::publish(&self.client, &e).await;
        e.id
    }

    fn wrap_at(&self, msg: &Message, at: nostr_sdk::Timestamp) -> nostr_sdk::Event {
        let opts = WrapOptions {
            created_at: Some(at),
            ..WrapOptions::default()
        };
        match self.protocol {
            Protocol::V2 => wrap_v2(msg, &self.keys, &self.node, opts).unwrap(),
            Protocol::V1 => wrap_v1(msg, &self.keys, &self.node, opts).unwrap(),
        }
    }

    /// Publishes, retrying until a relay accepted it (the relay may be down).
    async fn publish(client: &Client, event: &nostr_sdk::Event) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(out) = client.send_event(event).await
                && !out.success.is_empty()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "could not publish {}",
                event.id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn send(&self, msg: &Message) -> nostr_sdk::EventId {
        let e = self.wrap(msg);
        Self::publish(&self.client, &e).await;
        e.id
    }

    /// Sends in the background, in order (while the relay is down).
    fn send_later(&self, msgs: &[Message]) -> (Vec<nostr_sdk::EventId>, JoinHandle<()>) {
        // One second apart: a relay replays stored events newest first and
        // the node restores the order from the sender timestamps (events of
        // the same second have no order to restore).
        let now = nostr_sdk::Timestamp::now().as_secs();
        let events: Vec<_> = msgs
            .iter()
            .zip(0u64..)
            .map(|(m, i)| self.wrap_at(m, nostr_sdk::Timestamp::from_secs(now + i)))
            .collect();
        let ids = events.iter().map(|e| e.id).collect();
        let client = self.client.clone();
        (
            ids,
            tokio::spawn(async move {
                for e in &events {
                    Self::publish(&client, e).await;
                }
            }),
        )
    }

    /// The next reply with this action (other replies are kept for later).
    async fn expect(&mut self, action: Action) -> Message {
        if let Some(i) = self.pending.iter().position(|m| m.action() == action) {
            return self.pending.remove(i);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.replies.recv())
                .await
                .unwrap_or_else(|_| panic!("no {action} reply; got {:?}", self.pending))
                .unwrap();
            if m.action() == action {
                return m;
            }
            self.pending.push(m);
        }
    }

    /// Replies for these request ids, one each (any action).
    async fn expect_request_ids(&mut self, ids: &[u64]) -> HashMap<u64, Message> {
        let mut got: HashMap<u64, Message> = HashMap::new();
        for m in std::mem::take(&mut self.pending) {
            match m.kind().request_id {
                Some(r) if ids.contains(&r) => {
                    got.insert(r, m);
                },
                _ => self.pending.push(m),
            }
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while ids.iter().any(|r| !got.contains_key(r)) {
            let m = tokio::time::timeout_at(deadline, self.replies.recv())
                .await
                .unwrap_or_else(|_| panic!("missing replies: want {ids:?}, got {:?}", got.keys()))
                .unwrap();
            match m.kind().request_id {
                Some(r) if ids.contains(&r) => {
                    got.insert(r, m);
                },
                _ => self.pending.push(m),
            }
        }
        got
    }
}

fn new_order(request_id: u64, trade_index: i64, amount: i64) -> Message {
    let order = SmallOrder {
        id: None,
        kind: Some(Kind::Sell),
        status: Some(Status::Pending),
        amount,
        fiat_code: "EUR".into(),
        min_amount: None,
        max_amount: None,
        fiat_amount: 100,
        payment_method: "SEPA".into(),
        premium: 0,
        buyer_trade_pubkey: None,
        seller_trade_pubkey: None,
        buyer_invoice: None,
        created_at: Some(0),
        expires_at: None,
        cashu_mint_url: None,
    };
    Message::Order(MessageKind::new(
        None,
        Some(request_id),
        Some(trade_index),
        Action::NewOrder,
        Some(Payload::Order(order)),
    ))
}

fn take_sell(request_id: u64, trade_index: i64, id: uuid::Uuid) -> Message {
    Message::Order(MessageKind::new(
        Some(id),
        Some(request_id),
        Some(trade_index),
        Action::TakeSell,
        None,
    ))
}

fn reputation(trade: u8, identity: u8) -> ClientKeys {
    ClientKeys::reputation(
        Keys::parse(&hex::encode([trade; 32])).unwrap(),
        Keys::parse(&hex::encode([identity; 32])).unwrap(),
    )
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_clients_trade_through_a_real_relay() {
    let relay = TestRelay::start().await;
    let urls = vec![relay.url()];
    let node = TestNode::start(urls.clone()).await;

    // A v1 (gift wrap) seller and a v2 (kind 14) buyer, both in reputation mode.
    let mut seller = TestClient::connect(&urls, reputation(0x11, 0x12), Protocol::V1).await;
    let mut buyer = TestClient::connect(&urls, reputation(0x21, 0x22), Protocol::V2).await;

    seller.send(&new_order(77, 1, 50_000)).await;
    let ack = seller.expect(Action::NewOrder).await;
    assert_eq!(ack.kind().version, 1, "v1 reply to a v1 client");
    assert_eq!(ack.kind().request_id, Some(77));
    assert_eq!(ack.kind().trade_index, Some(1));
    let order_id = ack.kind().id.unwrap();
    let Some(Payload::Order(o)) = &ack.kind().payload else {
        panic!("{ack:?}")
    };
    assert_eq!((o.status, o.amount), (Some(Status::Pending), 50_000));

    buyer.send(&take_sell(5, 1, order_id)).await;
    let add = buyer.expect(Action::AddInvoice).await;
    assert_eq!(add.kind().version, 2, "v2 reply to a v2 client");
    assert_eq!(add.kind().request_id, Some(5));
    let Some(Payload::Order(o)) = &add.kind().payload else {
        panic!("{add:?}")
    };
    assert_eq!(o.status, Some(Status::WaitingBuyerInvoice));
    assert_eq!(
        o.buyer_trade_pubkey.as_deref(),
        Some(buyer.keys.trade.public_key().to_hex().as_str())
    );
    let told = seller.expect(Action::WaitingBuyerInvoice).await;
    assert_eq!(told.kind().version, 1);

    // A refusal travels back too, with the request id echoed.
    buyer
        .send(&take_sell(6, 2, uuid::Uuid::from_u128(42)))
        .await;
    let no = buyer.expect(Action::CantDo).await;
    assert_eq!(no.wrapper_name(), "cant-do");
    assert_eq!(no.kind().request_id, Some(6));

    // The order book shows the order, now in progress.
    let filter = Filter::new()
        .kind(nostr_sdk::Kind::from(38383))
        .author(keys("mostro").public_key())
        .identifier(order_id.to_string());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let evs = buyer
            .client
            .fetch_events(filter.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        let s = evs.first().and_then(|e| {
            e.tags
                .iter()
                .find(|t| t.as_slice()[0] == "s")
                .map(|t| t.as_slice()[1].clone())
        });
        if s.as_deref() == Some("in-progress") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order event not in progress: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let seen = node.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(node.store.all_orders().len(), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart_loses_nothing_and_processes_nothing_twice() {
    let mut relay = TestRelay::start().await;
    let urls = vec![relay.url()];
    let node = TestNode::start(urls.clone()).await;
    let mut a = TestClient::connect(&urls, reputation(0x31, 0x32), Protocol::V2).await;
    let mut b = TestClient::connect(&urls, reputation(0x41, 0x42), Protocol::V1).await;
    let mut sent: HashSet<EventId> = HashSet::new();
    let mut add = |id: nostr_sdk::EventId| assert!(sent.insert(EventId(id.to_bytes())));

    // Before: three v2 and two v1 orders.
    for i in 1..=3u64 {
        add(a.send(&new_order(i, i as i64, 10_000 + i as i64)).await);
    }
    for i in 4..=5u64 {
        add(b.send(&new_order(i, i as i64, 10_000 + i as i64)).await);
    }
    let got = a.expect_request_ids(&[1, 2, 3]).await;
    assert!(
        got.values().all(|m| m.action() == Action::NewOrder),
        "{got:?}"
    );
    let got = b.expect_request_ids(&[4, 5]).await;
    assert!(
        got.values().all(|m| m.action() == Action::NewOrder),
        "{got:?}"
    );

    // The relay dies; clients keep trying to publish meanwhile.
    relay.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each client's requests stay in order (trade indexes must grow).
    let (ids_a, ha) = a.send_later(&[new_order(6, 6, 10_006), new_order(7, 7, 10_007)]);
    let (ids_b, hb) = b.send_later(&[new_order(8, 8, 10_008)]);
    ids_a.into_iter().chain(ids_b).for_each(&mut add);
    let background = [ha, hb];
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Same port, same stored events.
    relay.restart().await;
    for h in background {
        tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
    }
    let got = a.expect_request_ids(&[6, 7]).await;
    assert!(
        got.values().all(|m| m.action() == Action::NewOrder),
        "{got:?}"
    );
    let got = b.expect_request_ids(&[8]).await;
    assert!(
        got.values().all(|m| m.action() == Action::NewOrder),
        "{got:?}"
    );

    // After: the node is subscribed again.
    add(a.send(&new_order(9, 9, 10_009)).await);
    add(b.send(&new_order(10, 10, 10_010)).await);
    let got_a = a.expect_request_ids(&[9]).await;
    let got_b = b.expect_request_ids(&[10]).await;
    assert_eq!(got_a[&9].action(), Action::NewOrder);
    assert_eq!(got_b[&10].kind().version, 1);

    // Every message reached the engine exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = node.seen();
    let ids: HashSet<EventId> = seen.keys().copied().collect();
    assert_eq!(ids, sent, "processed set differs from sent set");
    assert!(seen.values().all(|n| *n == 1), "processed twice: {seen:?}");
    assert_eq!(node.store.all_orders().len(), 10);
    // The relay replayed what the node had already handled (the catch-up margin): the store's
    // replay guard dropped those before decryption.
    let stats = node.transport.inbound_stats();
    assert!(stats.already_processed > 0, "{stats:?}");
    assert_eq!(
        stats.drops.get("already_processed").copied(),
        Some(stats.already_processed),
        "{stats:?}"
    );
    assert_eq!(
        stats.drops.values().sum::<u64>(),
        stats.dropped,
        "{stats:?}"
    );
    // Nothing is left unsent in the outbox.
    assert_eq!(node.engine.resume().await.unwrap(), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_deliver_once() {
    let r1 = TestRelay::start().await;
    let r2 = TestRelay::start().await;
    let urls = vec![r1.url(), r2.url()];
    let node = TestNode::start(urls.clone()).await;
    let mut c = TestClient::connect(&urls, reputation(0x51, 0x52), Protocol::V2).await;
    let mut d = TestClient::connect(
        &urls,
        ClientKeys::private(Keys::parse(&hex::encode([0x61u8; 32])).unwrap()),
        Protocol::V1,
    )
    .await;
    c.send(&new_order(1, 1, 20_000)).await;
    d.send(&new_order(2, 0, 20_001)).await;
    c.expect_request_ids(&[1]).await;
    let got = d.expect_request_ids(&[2]).await;
    assert_eq!(
        got[&2].kind().trade_index,
        None,
        "full privacy: no trade index"
    );
    // Each relay carries one subscription per protocol: every request arrives once per relay
    // (the second copy may still be on its way when the reply came), nothing on a closed
    // generation.
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.transport.inbound_stats().events < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a relay's copy never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = node.transport.inbound_stats();
    assert_eq!(stats.superseded, 0, "{stats:?}");
    assert_eq!(stats.events, 4, "each request once per relay: {stats:?}");
    let seen = node.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    // The reply reached the client once even though both relays carry it.
    assert!(c.replies.try_recv().is_err());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_before_the_node_starts_are_caught_up() {
    let relay = TestRelay::start().await;
    let urls = vec![relay.url()];
    let mut a = TestClient::connect(&urls, reputation(0x71, 0x72), Protocol::V2).await;
    let mut b = TestClient::connect(&urls, reputation(0x81, 0x82), Protocol::V1).await;
    a.send(&new_order(1, 1, 30_000)).await;
    b.send(&new_order(2, 1, 30_001)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let node = TestNode::start(urls.clone()).await;
    a.expect_request_ids(&[1]).await;
    b.expect_request_ids(&[2]).await;
    let stats = node.transport.inbound_stats();
    assert_eq!(stats.requests, 2, "{stats:?}");
    assert_eq!(stats.caught_up, 2, "{stats:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_ignores_its_own_replies() {
    // mostro-cli as admin uses the node key as trade key: the reply is
    // p-tagged to the node key and comes back to the node's subscription.
    let relay = TestRelay::start().await;
    let urls = vec![relay.url()];
    let node = TestNode::start(urls.clone()).await;
    let mut admin =
        TestClient::connect(&urls, ClientKeys::private(keys("mostro")), Protocol::V2).await;
    let solver = keys("solver").public_key().to_bech32().unwrap();
    let add = Message::Dispute(MessageKind::new(
        Some(uuid::Uuid::from_u128(1)),
        Some(9),
        None,
        Action::AdminAddSolver,
        Some(Payload::TextMessage(solver)),
    ));
    admin.send(&add).await;
    let ack = admin.expect(Action::AdminAddSolver).await;
    assert_eq!(ack.wrapper_name(), "dispute");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = node.transport.inbound_stats();
    assert_eq!(stats.requests, 1, "{stats:?}");
    assert!(stats.dropped >= 1, "own reply not seen: {stats:?}");
    assert!(admin.replies.try_recv().is_err(), "a reply loop started");
    node.stop().await;
}

fn order_msg(action: Action, id: uuid::Uuid, request_id: u64, payload: Option<Payload>) -> Message {
    Message::Order(MessageKind::new(
        Some(id),
        Some(request_id),
        None,
        action,
        payload,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_sell_trade_between_a_v2_seller_and_a_v1_buyer() {
    let relay = TestRelay::start().await;
    let urls = vec![relay.url()];
    let node = TestNode::start(urls.clone()).await;
    let mut seller = TestClient::connect(&urls, reputation(0x91, 0x92), Protocol::V2).await;
    let mut buyer = TestClient::connect(&urls, reputation(0xa1, 0xa2), Protocol::V1).await;

    seller.send(&new_order(1, 1, 50_000)).await;
    let id = seller.expect(Action::NewOrder).await.kind().id.unwrap();

    buyer.send(&take_sell(2, 1, id)).await;
    let add = buyer.expect(Action::AddInvoice).await;
    let Some(Payload::Order(o)) = &add.kind().payload else {
        panic!("{add:?}")
    };
    let payout = u64::try_from(o.amount).unwrap();
    assert!(payout < 50_000, "the buyer is shown amount - fee");
    seller.expect(Action::WaitingBuyerInvoice).await;

    let invoice = node
        .ledger
        .wallet_invoice("buyer", Some(mostro_core::types::Sats(payout)), 86_400)
        .unwrap();
    let pr = Payload::PaymentRequest(None, invoice, None);
    buyer
        .send(&order_msg(Action::AddInvoice, id, 3, Some(pr)))
        .await;
    let pay = loop {
        // First the taker-reputation notice may come; wait for the invoice.
        let m = seller.expect(Action::PayInvoice).await;
        if let Some(Payload::PaymentRequest(Some(o), bolt11, _)) = &m.kind().payload {
            assert!(o.amount > 50_000, "the seller locks amount + fee");
            break bolt11.clone();
        }
    };
    buyer.expect(Action::WaitingSellerToPay).await;

    node.ledger.pay_hold("seller", &pay).unwrap();
    let took = seller.expect(Action::BuyerTookOrder).await;
    let Some(Payload::Order(o)) = &took.kind().payload else {
        panic!("{took:?}")
    };
    assert_eq!(
        o.buyer_trade_pubkey.as_deref(),
        Some(buyer.keys.trade.public_key().to_hex().as_str())
    );
    buyer.expect(Action::HoldInvoicePaymentAccepted).await;

    buyer.send(&order_msg(Action::FiatSent, id, 4, None)).await;
    let ok = seller.expect(Action::FiatSentOk).await;
    assert_eq!(ok.kind().version, 2);
    let ok = buyer.expect(Action::FiatSentOk).await;
    assert_eq!(ok.kind().version, 1);
    let Some(Payload::Peer(p)) = &ok.kind().payload else {
        panic!("{ok:?}")
    };
    assert_eq!(p.pubkey, seller.keys.trade.public_key().to_hex());

    seller.send(&order_msg(Action::Release, id, 5, None)).await;
    seller.expect(Action::HoldInvoicePaymentSettled).await;
    seller.expect(Action::Rate).await;
    buyer.expect(Action::Released).await;
    buyer.expect(Action::PurchaseCompleted).await;
    buyer.expect(Action::Rate).await;

    buyer
        .send(&order_msg(
            Action::RateUser,
            id,
            6,
            Some(Payload::RatingUser(5)),
        ))
        .await;
    let r = buyer.expect(Action::RateReceived).await;
    assert_eq!(r.kind().request_id, Some(6));
    assert!(node.ledger.balance("buyer") > 0, "the buyer was paid");
    let seen = node.seen();
    assert_eq!(seen.len(), 6);
    assert!(seen.values().all(|n| *n == 1));
    node.stop().await;
}

/// The `s` tag of the newest kind-38383 event of order `d` on the relay at `url`, if any.
async fn order_status_on(url: &str, node: nostr_sdk::PublicKey, d: &str) -> Option<String> {
    let c = Client::default();
    c.add_relay(url).await.ok()?;
    c.connect().await;
    let f = Filter::new()
        .author(node)
        .kind(nostr_sdk::Kind::from(38383u16))
        .identifier(d);
    let evs = c.fetch_events(f, Duration::from_secs(3)).await.ok()?;
    c.shutdown().await;
    let newest = evs.into_iter().max_by_key(|e| e.created_at)?;
    newest
        .tags
        .iter()
        .find(|t| t.as_slice().first().map(String::as_str) == Some("s"))
        .and_then(|t| t.as_slice().get(1).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_was_down_gets_the_public_events_it_missed() {
    let r1 = TestRelay::start().await;
    let mut r2 = TestRelay::start().await;
    let node = TestNode::start(vec![r1.url(), r2.url()]).await;
    let node_pk = node.transport.keys().public_key();
    // The client reads and writes through the first relay only.
    let urls1 = vec![r1.url()];
    let mut c = TestClient::connect(&urls1, reputation(0xb1, 0xb2), Protocol::V2).await;

    // An order published while both relays are up: both have it.
    let first = c.created(&new_order(1, 1, 30_000)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while order_status_on(&r2.url(), node_pk, &first).await.as_deref() != Some("pending") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "r2 never had the first order"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The second relay goes down; an order is published and the first one canceled meanwhile.
    r2.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = c.created(&new_order(2, 2, 30_001)).await;
    let first_id = uuid::Uuid::parse_str(&first).unwrap();
    c.send(&order_msg(Action::Cancel, first_id, 3, None)).await;
    c.expect(Action::Canceled).await;
    assert_eq!(
        order_status_on(&r1.url(), node_pk, &first).await.as_deref(),
        Some("canceled")
    );

    // Back (its stored events kept, so it still shows the first order pending): the node
    // reconnects and re-sends what the relay lacks or holds an older version of.
    r2.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s1 = order_status_on(&r2.url(), node_pk, &first).await;
        let s2 = order_status_on(&r2.url(), node_pk, &second).await;
        if s1.as_deref() == Some("canceled") && s2.as_deref() == Some("pending") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "r2 after the restart: first {s1:?}, second {s2:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.stop().await;
}

/// The newest relay list (kind 10002) of `node` on `url`, as its `r` values.
async fn relay_list_on(url: &str, node: nostr_sdk::PublicKey) -> Option<Vec<String>> {
    let c = Client::default();
    c.add_relay(url).await.ok()?;
    c.connect().await;
    let f = Filter::new()
        .author(node)
        .kind(nostr_sdk::Kind::from(10002u16));
    let evs = c.fetch_events(f, Duration::from_secs(3)).await.ok()?;
    c.shutdown().await;
    let newest = evs.into_iter().max_by_key(|e| e.created_at)?;
    Some(
        newest
            .tags
            .iter()
            .filter(|t| t.as_slice().first().map(String::as_str) == Some("r"))
            .filter_map(|t| t.as_slice().get(1).cloned())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_list_names_the_connected_relays_only() {
    let r1 = TestRelay::start().await;
    let mut r2 = TestRelay::start().await;
    r2.kill();
    let node = TestNode::start(vec![r1.url(), r2.url()]).await;
    let node_pk = node.transport.keys().public_key();
    // Not connected yet is an error the daemon retries; here the loop below retries.
    let _ = node.transport.publish_relay_list().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = relay_list_on(&r1.url(), node_pk).await;
        if list.as_deref() == Some(&[r1.url()][..]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay list while r2 is down: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = node.transport.publish_relay_list().await;
    }
    // Back: once the node is connected to it again, the next list names both.
    r2.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // Strictly newer than the previous list (created_at has a one-second resolution).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let _ = node.transport.publish_relay_list().await;
        let list = relay_list_on(&r1.url(), node_pk).await;
        if list.as_deref() == Some(&[r1.url(), r2.url()][..]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay list after r2 came back: {list:?}"
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_down_across_a_node_restart_still_gets_what_it_missed() {
    let r1 = TestRelay::start().await;
    let mut r2 = TestRelay::start().await;
    let urls = vec![r1.url(), r2.url()];
    let node = TestNode::start(urls.clone()).await;
    let node_pk = node.transport.keys().public_key();
    let mut c = TestClient::connect(&[r1.url()], reputation(0xc1, 0xc2), Protocol::V2).await;

    // The second relay is down when the order is published, and still down when the node
    // stops.
    r2.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = c.created(&new_order(1, 1, 40_000)).await;
    assert_eq!(
        order_status_on(&r1.url(), node_pk, &id).await.as_deref(),
        Some("pending")
    );
    // The publish to the dead relay ends (refused or timed out) and what it lacks is saved
    // within a few seconds.
    let store = node.store.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let owed = store.setting("nostr.owed").await.unwrap();
        if owed.as_deref().is_some_and(|o| o.contains(&id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owed order event was not saved: {owed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.stop().await;
    let marks = store.setting("nostr.relay_marks").await.unwrap().unwrap();
    assert!(marks.contains(&r1.url()), "{marks}");

    // A new process on the same records, the relay back: it gets the event it missed although
    // the order did not change since.
    r2.restart().await;
    let node = TestNode::start_on(urls, store).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = order_status_on(&r2.url(), node_pk, &id).await;
        if s.as_deref() == Some("pending") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "r2 after both restarts: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_stored_gift_wraps_does_not_hold_up_live_requests() {
    let relay = TestRelay::start().await;
    let urls = vec![relay.url()];
    let node_pk = keys("mostro").public_key();
    // Anyone can p-tag the node: 300 gift wraps nobody can open, waiting on the relay.
    let spammer = Client::default();
    spammer.add_relay(relay.url()).await.unwrap();
    spammer.connect().await;
    spammer.wait_for_connection(Duration::from_secs(5)).await;
    const JUNK: u64 = 300;
    for i in 0..JUNK {
        let e = nostr_sdk::EventBuilder::new(nostr_sdk::Kind::GiftWrap, format!("junk {i}"))
            .tag(nostr_sdk::Tag::public_key(node_pk))
            .sign_with_keys(&Keys::generate())
            .unwrap();
        spammer.send_event(&e).await.unwrap();
    }
    spammer.shutdown().await;

    // The node starts with catch-up openings bounded to 100 a second: about 3 s of catch-up.
    let node = TestNode::start_with(urls.clone(), MemStore::new(), |c| {
        c.catch_up_rate = 100;
        c.catch_up_parallel = 2;
    })
    .await;
    let mut c = TestClient::connect(&urls, reputation(0xd1, 0xd2), Protocol::V2).await;
    c.send(&new_order(1, 1, 50_000)).await;
    c.expect_request_ids(&[1]).await;
    // Answered while the gift-wrap catch-up was still going.
    let at_reply = node.transport.inbound_stats();
    let junk_done = at_reply.drops.values().sum::<u64>();
    assert!(
        junk_done < JUNK,
        "the live request waited for the whole catch-up: {at_reply:?}"
    );
    // And the catch-up still finishes: every junk event was opened and dropped.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = node.transport.inbound_stats();
        if stats.dropped >= JUNK {
            assert_eq!(stats.requests, 1, "{stats:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_contact_without_enough_work_is_dropped_a_trade_in_progress_needs_none() {
    let relay = TestRelay::start().await;
    let urls = vec![relay.url()];
    let node = TestNode::start_with(urls.clone(), MemStore::new(), |c| {
        c.intake.pow_first_contact = 10;
    })
    .await;
    let mut c = TestClient::connect(&urls, reputation(0xe1, 0xe2), Protocol::V2).await;
    // A new order without work from a key the node does not know: dropped, never answered.
    let mut unworked = c.send(&new_order(1, 1, 60_000)).await;
    while unworked.check_pow(10) {
        // One id in 1024 has the work by chance; send another.
        unworked = c.send(&new_order(1, 1, 60_000)).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while !node
        .transport
        .inbound_stats()
        .drops
        .contains_key("pow_first_contact")
    {
        assert!(tokio::time::Instant::now() < deadline, "not dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        c.replies.try_recv().is_err(),
        "a first contact without work was answered"
    );
    // With the work: accepted.
    c.send_with_pow(&new_order(2, 2, 60_001), 10).await;
    let got = c.expect_request_ids(&[2]).await;
    let id = got[&2].kind().id.unwrap();
    // Its trade goes on without work (the node knows the key now).
    c.send(&order_msg(Action::Cancel, id, 3, None)).await;
    c.expect(Action::Canceled).await;
    let stats = node.transport.inbound_stats();
    assert_eq!(stats.requests, 2, "{stats:?}");
    assert!(!node.seen().contains_key(&EventId(unworked.to_bytes())));
    node.stop().await;
}
