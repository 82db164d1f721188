//! Readable scenario helpers: a test bed wiring the engine to the fakes, and traders that build
//! requests. Helpers panic on unexpected outcomes: they are test assertions.
#![allow(clippy::panic, reason = "scenario helpers are test assertions")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mostro_core::engine::{Action, Engine, EngineConfig, NewOrderRequest, Outcome, Ports, Request};
use mostro_core::machine::{NewOrder, Notice, Notify};
use mostro_core::order::{Kind, Order, Protocol};
use mostro_core::policy::Policy;
use mostro_core::ports::{Clock, LightningNode, Network, Store};
use mostro_core::types::{EventId, OrderId, PubKey, Sats, Timestamp};

use crate::fakes::{
    FakeNode, FakeResolver, FixedPrices, ManualClock, MemStore, RecordingTransport, SeqEntropy,
};
use crate::ledger::Ledger;

/// Where the manual clock starts.
pub const T0: Timestamp = Timestamp(1_800_000_000);

/// A participant with an identity key and fresh trade keys.
#[derive(Clone, Debug)]
pub struct Trader {
    /// Name (also the wallet name in the ledger).
    pub name: String,
    /// Identity key.
    pub identity: PubKey,
    /// Current trade key.
    pub trade_key: PubKey,
    /// Current trade index.
    pub index: u32,
    /// Full-privacy mode (identity = trade key).
    pub full_privacy: bool,
    /// Protocol spoken.
    pub protocol: Protocol,
}

/// A deterministic key that is a real secp256k1 point (the engine refuses to write to others).
fn key(seed: &str, n: u32) -> PubKey {
    use sha2::{Digest, Sha256};
    let mut salt = 0u32;
    loop {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(n.to_le_bytes());
        if salt > 0 {
            h.update(salt.to_le_bytes());
        }
        let k = PubKey(h.finalize().into());
        if k.is_on_curve() {
            return k;
        }
        salt = salt.wrapping_add(1);
    }
}

impl Trader {
    /// A reputation-mode trader at trade index 1.
    pub fn new(name: &str) -> Self {
        Trader {
            name: name.to_owned(),
            identity: key(name, 0),
            trade_key: key(name, 1),
            index: 1,
            full_privacy: false,
            protocol: Protocol::V2,
        }
    }

    /// A full-privacy trader.
    pub fn private(name: &str) -> Self {
        let k = key(name, 1);
        Trader {
            identity: k,
            trade_key: k,
            full_privacy: true,
            ..Trader::new(name)
        }
    }

    /// Speaks protocol v1 (gift wrap).
    #[must_use]
    pub fn v1(mut self) -> Self {
        self.protocol = Protocol::V1;
        self
    }

    /// Moves to the next trade key (as clients do for every new order or take).
    pub fn next_key(&mut self) {
        self.index = self.index.saturating_add(1);
        self.trade_key = key(&self.name, self.index);
        if self.full_privacy {
            self.identity = self.trade_key;
        }
    }

    /// The key that the next `next_key` will produce (for range `next_trade`).
    pub fn peek_next(&self) -> (PubKey, u32) {
        let i = self.index.saturating_add(1);
        (key(&self.name, i), i)
    }
}

/// A fixed-amount sell order for `fiat` EUR at `sats`.
pub fn sell_order(sats: i64, fiat: i64) -> NewOrder {
    NewOrder {
        kind: Kind::Sell,
        fiat_code: "EUR".to_owned(),
        fiat_amount: fiat,
        min_amount: None,
        max_amount: None,
        amount: sats,
        premium: 0,
        payment_method: "SEPA".to_owned(),
        buyer_invoice: None,
        expires_at: None,
    }
}

/// A fixed-amount buy order.
pub fn buy_order(sats: i64, fiat: i64) -> NewOrder {
    NewOrder {
        kind: Kind::Buy,
        ..sell_order(sats, fiat)
    }
}

/// The engine wired to in-memory fakes.
pub struct TestBed {
    /// Clock.
    pub clock: Arc<ManualClock>,
    /// Ledger behind the fake node.
    pub ledger: Ledger,
    /// Fake node.
    pub node: Arc<FakeNode>,
    /// Store (clones share data).
    pub store: MemStore,
    /// Recording transport.
    pub transport: Arc<RecordingTransport>,
    /// Prices.
    pub prices: Arc<FixedPrices>,
    /// Lightning-address resolver (wallet `name` for `name@...`).
    pub resolver: Arc<FakeResolver>,
    /// Admin (node) key.
    pub node_key: PubKey,
    /// The engine.
    pub engine: Engine,
    policy: Policy,
    events: AtomicU64,
    yielding: bool,
    /// What the yielding node saw go wrong (a `pay` for a hash that was not the current attempt).
    pub violations: Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestBed {
    /// Default policy.
    pub fn new() -> Self {
        Self::with_policy(Policy::default())
    }

    /// Custom policy.
    pub fn with_policy(policy: Policy) -> Self {
        Self::build(policy, false)
    }

    /// Every node and store call is an await point where other tasks run (and where a test
    /// may drop a task: a crash between two awaits); every `pay` is checked to be for the
    /// current attempt of an order (see [`TestBed::violations`]).
    pub fn yielding(policy: Policy) -> Self {
        Self::build(policy, true)
    }

    fn build(policy: Policy, yielding: bool) -> Self {
        let violations = Arc::new(std::sync::Mutex::new(Vec::new()));
        let clock = Arc::new(ManualClock::new(T0));
        let ledger = Ledger::new(Network::Regtest, clock.clone());
        let node = Arc::new(FakeNode::new(ledger.clone()));
        let store = MemStore::new();
        let transport = Arc::new(RecordingTransport::default());
        let prices = Arc::new(FixedPrices::default());
        let node_key = key("mostro-node", 0);
        let resolver = Arc::new(FakeResolver::new(ledger.clone()));
        let (n, st) = ports_for(&node, &store, yielding, &violations);
        let engine = build_engine(&clock, n, st, &transport, &prices, node_key, &policy, 1)
            .with_resolver(resolver.clone());
        TestBed {
            clock,
            ledger,
            node,
            store,
            transport,
            prices,
            resolver,
            node_key,
            engine,
            policy,
            events: AtomicU64::new(0),
            yielding,
            violations,
        }
    }

    /// Drops the engine and builds a new one on the same store and node (a process restart).
    pub fn restart(&mut self) {
        let seed = self.events.load(Ordering::SeqCst).wrapping_add(1000);
        let (n, st) = ports_for(&self.node, &self.store, self.yielding, &self.violations);
        self.engine = build_engine(
            &self.clock,
            n,
            st,
            &self.transport,
            &self.prices,
            self.node_key,
            &self.policy,
            seed,
        )
        .with_resolver(self.resolver.clone());
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A request from `who`.
    pub fn request(&self, who: &Trader, order_id: Option<OrderId>, action: Action) -> Request {
        let n = self.events.fetch_add(1, Ordering::SeqCst);
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_le_bytes());
        id[8..16].copy_from_slice(&who.trade_key.0[..8]);
        Request {
            event_id: Some(EventId(id)),
            sender: who.trade_key,
            identity: who.identity,
            protocol: who.protocol,
            request_id: Some(n),
            trade_index: if who.full_privacy {
                None
            } else {
                Some(i64::from(who.index))
            },
            order_id,
            action,
        }
    }

    /// Sends a request and delivers the node events it caused.
    pub async fn send(&self, who: &Trader, order_id: Option<OrderId>, action: Action) -> Outcome {
        let req = self.request(who, order_id, action);
        self.send_request(req).await
    }

    /// Sends a prepared request (e.g. to replay it) and pumps node events.
    pub async fn send_request(&self, req: Request) -> Outcome {
        let out = match self.engine.handle(req).await {
            Ok(o) => o,
            Err(e) => panic!("engine error: {e}"),
        };
        self.pump().await;
        out
    }

    /// Delivers every queued node event to the engine.
    pub async fn pump(&self) {
        loop {
            let evs = self.node.drain_events();
            if evs.is_empty() {
                break;
            }
            for ev in evs {
                if let Err(e) = self.engine.on_node_event(ev).await {
                    panic!("engine error on node event: {e}");
                }
            }
        }
    }

    /// Creates an order; returns its id.
    pub async fn new_order(&self, maker: &Trader, order: NewOrder) -> OrderId {
        let out = self
            .send(
                maker,
                None,
                Action::NewOrder(Box::new(NewOrderRequest {
                    order,
                    buyer_invoice: None,
                })),
            )
            .await;
        match out {
            Outcome::Applied(Some(id)) => id,
            other => panic!("new order refused: {other:?}"),
        }
    }

    /// A 100,000 sat sell order of `seller`, taken by `buyer` without an invoice, the invoice for
    /// the exact payout added, the hold paid: `active`. Panics if a step is refused.
    pub async fn active_sell(&self, seller: &Trader, buyer: &Trader) -> OrderId {
        let id = self.new_order(seller, sell_order(100_000, 50)).await;
        let take = Action::TakeSell {
            fiat_amount: None,
            invoice: None,
        };
        assert_eq!(
            self.send(buyer, Some(id), take).await,
            Outcome::Applied(Some(id))
        );
        let o = self.order(id).await;
        let payout = o.amount.checked_sub(o.fee).unwrap_or(Sats::ZERO);
        let inv = self.invoice(buyer, payout);
        assert_eq!(
            self.send(buyer, Some(id), Action::AddInvoice(inv)).await,
            Outcome::Applied(Some(id))
        );
        assert!(
            self.seller_pays(seller, id).await,
            "the seller could not pay"
        );
        assert_eq!(
            self.order(id).await.status,
            mostro_core::order::Status::Active
        );
        id
    }

    /// The stored order.
    pub async fn order(&self, id: OrderId) -> Order {
        use mostro_core::ports::Store;
        match self.store.order(id).await {
            Ok(Some(o)) => o,
            other => panic!("order {id} not found: {other:?}"),
        }
    }

    /// Messages sent to a trade key so far (kept).
    pub fn inbox(&self, key: &PubKey) -> Vec<Notice> {
        self.transport
            .sent()
            .into_iter()
            .filter(|n| &n.to == key)
            .map(|n| n.notice)
            .collect()
    }

    /// Every message sent so far.
    pub fn sent(&self) -> Vec<Notify> {
        self.transport.sent()
    }

    /// A buyer invoice for `sats` from the buyer wallet `who`.
    pub fn invoice(&self, who: &Trader, sats: Sats) -> String {
        match self.ledger.wallet_invoice(&who.name, Some(sats), 24 * 3600) {
            Ok(s) => s,
            Err(e) => panic!("wallet invoice: {e}"),
        }
    }

    /// The seller wallet `who` pays the hold invoice it was sent; returns false if none.
    pub async fn seller_pays(&self, who: &Trader, order_id: OrderId) -> bool {
        let o = self.order(order_id).await;
        let Some(bolt11) = o.hold.and_then(|h| h.bolt11) else {
            return false;
        };
        if self.ledger.pay_hold(&who.name, &bolt11).is_err() {
            return false;
        }
        self.pump().await;
        true
    }

    /// Moves the clock and fires due deadlines.
    pub async fn advance(&self, secs: u64) {
        self.clock.advance(secs);
        if let Err(e) = self.engine.tick().await {
            panic!("tick: {e}");
        }
        self.pump().await;
    }
}

impl Default for TestBed {
    fn default() -> Self {
        Self::new()
    }
}

fn ports_for(
    node: &Arc<FakeNode>,
    store: &MemStore,
    yielding: bool,
    violations: &Arc<std::sync::Mutex<Vec<String>>>,
) -> (Arc<dyn LightningNode>, Arc<dyn Store>) {
    if yielding {
        (
            Arc::new(crate::fakes::YieldingNode::new(
                node.clone(),
                store.clone(),
                violations.clone(),
            )),
            Arc::new(crate::fakes::YieldingStore(store.clone())),
        )
    } else {
        (node.clone(), Arc::new(store.clone()))
    }
}

#[allow(clippy::too_many_arguments, reason = "wiring helper")]
fn build_engine(
    clock: &Arc<ManualClock>,
    node: Arc<dyn LightningNode>,
    store: Arc<dyn Store>,
    transport: &Arc<RecordingTransport>,
    prices: &Arc<FixedPrices>,
    node_key: PubKey,
    policy: &Policy,
    seed: u64,
) -> Engine {
    let ports = Ports {
        node,
        store,
        transport: transport.clone(),
        clock: clock.clone(),
        entropy: Arc::new(SeqEntropy::new(seed)),
        prices: prices.clone(),
    };
    let config = EngineConfig {
        node_key,
        network: Network::Regtest,
        pay_timeout_secs: 60,
    };
    Engine::new(ports, config, policy.clone())
}
