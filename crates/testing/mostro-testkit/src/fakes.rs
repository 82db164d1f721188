//! In-memory implementations of the ports: `FakeNode`, `MemStore`, `ManualClock`,
//! `RecordingTransport`, `FixedPrices`, `SeqEntropy`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use futures::lock::Mutex as AsyncMutex;
use mostro_core::fees::Price;
use mostro_core::machine::{Effect, Notify, PayOutcome};
use mostro_core::order::Order;
use mostro_core::ports::{
    Clock, Commit, DeadEffect, DecodedInvoice, EffectId, Entropy, HoldInvoiceRequest,
    HoldInvoiceState, LightningNode, LnError, LnErrorKind, NodeEvent, NodeInfo, PayRequest,
    PaymentStatus, PriceSource, Solver, Store, StoreError, StoreErrorKind, Transport,
    TransportError, User,
};
use mostro_core::types::{BlockHeight, EventId, OrderId, PaymentHash, Preimage, PubKey, Timestamp};

use crate::ledger::{self, Ledger};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The wall clock, for simulators, relay tests, benchmarks and examples.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp(secs)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Starts at `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(AtomicU64::new(t.0))
    }

    /// Moves forward by `secs`.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Jumps to `t` (never backwards).
    pub fn set(&self, t: Timestamp) {
        self.0.fetch_max(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Deterministic "randomness": a counter hashed with a seed.
#[derive(Debug)]
pub struct SeqEntropy {
    seed: u64,
    n: AtomicU64,
}

impl SeqEntropy {
    /// A sequence from `seed`.
    pub fn new(seed: u64) -> Self {
        SeqEntropy {
            seed,
            n: AtomicU64::new(0),
        }
    }
}

impl Entropy for SeqEntropy {
    fn random_32(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(n.to_le_bytes());
        h.finalize().into()
    }
}

/// Fixed prices per fiat code, settable by tests.
#[derive(Debug, Default)]
pub struct FixedPrices(Mutex<HashMap<String, Price>>);

impl FixedPrices {
    /// Sets the price of a fiat code.
    pub fn set(&self, code: &str, fiat_per_btc: f64, at: Timestamp) {
        lock(&self.0).insert(code.to_uppercase(), Price { fiat_per_btc, at });
    }
}

#[async_trait]
impl PriceSource for FixedPrices {
    async fn price(&self, fiat_code: &str) -> Option<Price> {
        lock(&self.0).get(&fiat_code.to_uppercase()).copied()
    }
}

/// The in-memory Lightning node: the [`Ledger`] behind the [`LightningNode`] port.
#[derive(Debug)]
pub struct FakeNode {
    ledger: Ledger,
    events: AsyncMutex<UnboundedReceiver<NodeEvent>>,
    calls: Mutex<Vec<String>>,
}

impl FakeNode {
    /// A node over `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        let rx = ledger.subscribe();
        FakeNode {
            ledger,
            events: AsyncMutex::new(rx),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The ledger (wallets, faults, chain).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Events queued so far, without waiting.
    pub fn drain_events(&self) -> Vec<NodeEvent> {
        let mut out = Vec::new();
        if let Some(mut rx) = self.events.try_lock() {
            while let Ok(ev) = rx.try_recv() {
                out.push(ev);
            }
        }
        out
    }

    /// The port calls made so far, as `"<method> <hash hex>"` (drained).
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.calls))
    }

    /// The port calls made so far (kept).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    fn record(&self, call: &str) {
        lock(&self.calls).push(call.to_owned());
    }
}

#[async_trait]
impl LightningNode for FakeNode {
    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<String, LnError> {
        self.record(&format!("create_hold_invoice {}", req.hash));
        self.ledger.create_hold(req)
    }

    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError> {
        self.record(&format!("settle_hold_invoice {}", preimage.hash()));
        self.ledger.settle(preimage)
    }

    async fn cancel_hold_invoice(&self, hash: &PaymentHash) -> Result<(), LnError> {
        self.record(&format!("cancel_hold_invoice {hash}"));
        self.ledger.cancel(hash)
    }

    async fn lookup_hold_invoice(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        self.ledger.lookup(hash)
    }

    async fn next_event(&self) -> Result<NodeEvent, LnError> {
        let mut rx = self.events.lock().await;
        rx.next()
            .await
            .ok_or_else(|| LnError::new(LnErrorKind::Unreachable, "event stream closed"))
    }

    async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError> {
        self.record(&format!("pay {}", req.hash));
        self.ledger.pay(req)
    }

    async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        self.ledger.payment_status(hash)
    }

    async fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError> {
        ledger::decode_bolt11(bolt11)
    }

    async fn info(&self) -> Result<NodeInfo, LnError> {
        self.ledger.info()
    }
}

#[derive(Default)]
struct MemState {
    orders: BTreeMap<OrderId, Order>,
    outbox: BTreeMap<EffectId, (Effect, bool)>,
    dead: BTreeMap<EffectId, String>,
    next_effect: u64,
    events: HashSet<EventId>,
    last_event_at: Option<Timestamp>,
    settings: BTreeMap<String, String>,
    users: HashMap<PubKey, User>,
    solvers: HashMap<PubKey, Solver>,
    commits: u64,
    transitions: Vec<(
        OrderId,
        mostro_core::order::Status,
        mostro_core::order::Status,
    )>,
}

/// The in-memory store. Clones share state, so a test can "restart" an engine on the same data.
#[derive(Clone, Default)]
pub struct MemStore {
    st: Arc<Mutex<MemState>>,
    fail_next_commit: Arc<Mutex<bool>>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemStore(..)")
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next commit fails with an I/O error (as a crashed write would).
    pub fn fail_next_commit(&self) {
        *lock(&self.fail_next_commit) = true;
    }

    /// Every order.
    pub fn all_orders(&self) -> Vec<Order> {
        lock(&self.st).orders.values().cloned().collect()
    }

    /// Every effect ever committed, with its done flag.
    pub fn outbox(&self) -> Vec<(EffectId, Effect, bool)> {
        lock(&self.st)
            .outbox
            .iter()
            .map(|(i, (e, d))| (*i, e.clone(), *d))
            .collect()
    }

    /// Every status change committed so far: (order, from, to).
    pub fn transitions(
        &self,
    ) -> Vec<(
        OrderId,
        mostro_core::order::Status,
        mostro_core::order::Status,
    )> {
        lock(&self.st).transitions.clone()
    }

    /// Number of successful commits.
    pub fn commits(&self) -> u64 {
        lock(&self.st).commits
    }
}

#[async_trait]
impl Store for MemStore {
    async fn commit(&self, c: Commit) -> Result<Vec<EffectId>, StoreError> {
        {
            let mut f = lock(&self.fail_next_commit);
            if *f {
                *f = false;
                return Err(StoreError::new(
                    StoreErrorKind::Io,
                    "simulated write failure",
                ));
            }
        }
        let now = c.at;
        let mut st = lock(&self.st);
        if let Some(ev) = &c.event
            && st.events.contains(ev)
        {
            return Err(StoreError::new(
                StoreErrorKind::Duplicate,
                "event already processed",
            ));
        }
        for w in &c.orders {
            match (w.expected_version, st.orders.get(&w.order.id)) {
                (None, Some(_)) => {
                    return Err(StoreError::new(StoreErrorKind::Conflict, "order exists"));
                },
                (Some(v), Some(cur)) if cur.version != v => {
                    return Err(StoreError::new(StoreErrorKind::Conflict, "stale version"));
                },
                (Some(_), None) => {
                    return Err(StoreError::new(StoreErrorKind::Conflict, "order missing"));
                },
                _ => {},
            }
        }
        // Validated: apply everything.
        if let Some(ev) = c.event {
            st.events.insert(ev);
            st.last_event_at = Some(st.last_event_at.map_or(now, |t| t.max(now)));
        }
        for w in c.orders {
            if let Some(prev) = st.orders.get(&w.order.id)
                && prev.status != w.order.status
            {
                let t = (w.order.id, prev.status, w.order.status);
                st.transitions.push(t);
            }
            st.orders.insert(w.order.id, w.order);
        }
        let mut ids = Vec::with_capacity(c.effects.len());
        for e in c.effects {
            st.next_effect = st.next_effect.saturating_add(1);
            let id = EffectId(st.next_effect);
            st.outbox.insert(id, (e, false));
            ids.push(id);
        }
        for d in c.done {
            if let Some(e) = st.outbox.get_mut(&d) {
                e.1 = true;
            }
        }
        for (d, reason) in c.dead {
            if let Some(e) = st.outbox.get_mut(&d)
                && !e.1
            {
                e.1 = true;
                st.dead.insert(d, reason);
            }
        }
        for u in c.users {
            let identity = match &u {
                mostro_core::machine::UserUpdate::TradeIndex { identity, .. }
                | mostro_core::machine::UserUpdate::Rating { identity, .. } => *identity,
            };
            let rec = st.users.entry(identity).or_insert_with(|| User {
                identity,
                created_at: now,
                ..User::default()
            });
            rec.apply(&u);
        }
        for s in c.solvers {
            st.solvers.insert(s.identity, s);
        }
        st.commits = st.commits.saturating_add(1);
        Ok(ids)
    }

    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        Ok(lock(&self.st).orders.get(&id).cloned())
    }

    async fn order_by_hold_hash(&self, hash: &PaymentHash) -> Result<Option<Order>, StoreError> {
        let st = lock(&self.st);
        Ok(st
            .orders
            .values()
            .find(|o| o.hold.as_ref().is_some_and(|h| &h.hash == hash))
            .cloned())
    }

    async fn order_by_dispute(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let st = lock(&self.st);
        Ok(st
            .orders
            .values()
            .find(|o| o.dispute.as_ref().is_some_and(|d| d.id == id))
            .cloned())
    }

    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        let st = lock(&self.st);
        let mut v: Vec<(Timestamp, OrderId)> = st
            .orders
            .values()
            .filter_map(|o| o.deadline.filter(|d| *d <= now).map(|d| (d, o.id)))
            .collect();
        v.sort();
        Ok(v.into_iter().take(limit).map(|x| x.1).collect())
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(lock(&self.st)
            .orders
            .values()
            .filter_map(|o| o.deadline)
            .min())
    }

    async fn htlc_expiring(&self, height: BlockHeight) -> Result<Vec<OrderId>, StoreError> {
        use mostro_core::order::HoldState;
        let st = lock(&self.st);
        Ok(st
            .orders
            .values()
            .filter(|o| {
                o.hold.as_ref().is_some_and(|h| {
                    h.state == HoldState::Accepted && h.htlc_expiry.is_some_and(|e| e <= height)
                })
            })
            .map(|o| o.id)
            .collect())
    }

    async fn open_orders_of(&self, identity: &PubKey) -> Result<Vec<Order>, StoreError> {
        let st = lock(&self.st);
        Ok(st
            .orders
            .values()
            .filter(|o| !o.status.is_terminal() && o.identities().any(|i| i == identity))
            .cloned()
            .collect())
    }

    async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        let st = lock(&self.st);
        Ok(st
            .orders
            .values()
            .filter(|o| !o.status.is_terminal())
            .cloned()
            .collect())
    }

    async fn pending_effects(&self, limit: usize) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        let st = lock(&self.st);
        Ok(st
            .outbox
            .iter()
            .filter(|(_, (_, done))| !done)
            .take(limit)
            .map(|(i, (e, _))| (*i, e.clone()))
            .collect())
    }

    async fn pending_effects_after(
        &self,
        after: Option<EffectId>,
        limit: usize,
    ) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        use std::ops::Bound;
        let st = lock(&self.st);
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(st
            .outbox
            .range((from, Bound::Unbounded))
            .filter(|(_, (_, done))| !done)
            .take(limit)
            .map(|(i, (e, _))| (*i, e.clone()))
            .collect())
    }

    async fn effect_pending(&self, id: EffectId) -> Result<bool, StoreError> {
        Ok(lock(&self.st)
            .outbox
            .get(&id)
            .is_some_and(|(_, done)| !done))
    }

    async fn dead_effects(&self, limit: usize) -> Result<(Vec<DeadEffect>, u64), StoreError> {
        let st = lock(&self.st);
        let list = st
            .dead
            .iter()
            .rev()
            .take(limit)
            .filter_map(|(id, reason)| {
                st.outbox.get(id).map(|(e, _)| DeadEffect {
                    id: *id,
                    effect: e.clone(),
                    reason: reason.clone(),
                })
            })
            .collect();
        Ok((list, st.dead.len() as u64))
    }

    async fn seen_event(&self, id: &EventId) -> Result<bool, StoreError> {
        Ok(lock(&self.st).events.contains(id))
    }

    async fn last_event_seen_at(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(lock(&self.st).last_event_at)
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(lock(&self.st).settings.get(key).cloned())
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        lock(&self.st)
            .settings
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn user(&self, identity: &PubKey) -> Result<Option<User>, StoreError> {
        Ok(lock(&self.st).users.get(identity).cloned())
    }

    async fn solver(&self, identity: &PubKey) -> Result<Option<Solver>, StoreError> {
        Ok(lock(&self.st).solvers.get(identity).copied())
    }
    async fn solvers(&self) -> Result<Vec<Solver>, StoreError> {
        let mut v: Vec<Solver> = lock(&self.st).solvers.values().copied().collect();
        v.sort_by_key(|s| s.identity.0);
        Ok(v)
    }
    async fn remove_solver(&self, identity: &PubKey) -> Result<bool, StoreError> {
        Ok(lock(&self.st).solvers.remove(identity).is_some())
    }
}

/// A transport that records what it would send.
#[derive(Debug, Default)]
pub struct RecordingTransport {
    sent: Mutex<Vec<Notify>>,
    published: Mutex<Vec<Order>>,
    disputes: Mutex<Vec<Order>>,
    ratings: Mutex<Vec<(PubKey, User)>>,
    dev_fees: Mutex<Vec<Order>>,
    fail: Mutex<bool>,
}

impl RecordingTransport {
    /// Messages sent so far (drained).
    pub fn take_sent(&self) -> Vec<Notify> {
        std::mem::take(&mut *lock(&self.sent))
    }

    /// Messages sent so far (kept).
    pub fn sent(&self) -> Vec<Notify> {
        lock(&self.sent).clone()
    }

    /// Order events published so far (kept).
    pub fn published(&self) -> Vec<Order> {
        lock(&self.published).clone()
    }

    /// Dispute events published so far (kept).
    pub fn disputes(&self) -> Vec<Order> {
        lock(&self.disputes).clone()
    }

    /// Rating events published so far: (d tag, record) (kept).
    pub fn ratings(&self) -> Vec<(PubKey, User)> {
        lock(&self.ratings).clone()
    }

    /// Development-fee audit events published so far (kept).
    pub fn dev_fees(&self) -> Vec<Order> {
        lock(&self.dev_fees).clone()
    }

    /// Makes every send fail (relays down) or work again.
    pub fn set_failing(&self, fail: bool) {
        *lock(&self.fail) = fail;
    }

    fn check(&self) -> Result<(), TransportError> {
        if *lock(&self.fail) {
            Err(TransportError::transient("relays down (simulated)"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Transport for RecordingTransport {
    async fn send(&self, msg: &Notify) -> Result<(), TransportError> {
        self.check()?;
        lock(&self.sent).push(msg.clone());
        Ok(())
    }

    async fn publish_order(&self, order: &Order) -> Result<(), TransportError> {
        self.check()?;
        lock(&self.published).push(order.clone());
        Ok(())
    }

    async fn publish_dispute(&self, order: &Order) -> Result<(), TransportError> {
        self.check()?;
        lock(&self.disputes).push(order.clone());
        Ok(())
    }

    async fn publish_rating(&self, trade_key: &PubKey, user: &User) -> Result<(), TransportError> {
        self.check()?;
        lock(&self.ratings).push((*trade_key, user.clone()));
        Ok(())
    }

    async fn publish_dev_fee(&self, order: &Order) -> Result<(), TransportError> {
        self.check()?;
        lock(&self.dev_fees).push(order.clone());
        Ok(())
    }
}

/// A Lightning-address resolver over the ledger: `name@domain` pays the ledger wallet `name`.
#[derive(Debug)]
pub struct FakeResolver {
    ledger: Ledger,
    fail_next: Mutex<u32>,
    calls: Mutex<Vec<(String, mostro_core::types::Sats)>>,
}

impl FakeResolver {
    /// A resolver issuing invoices from the ledger's wallets.
    pub fn new(ledger: Ledger) -> Self {
        FakeResolver {
            ledger,
            fail_next: Mutex::new(0),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The next `n` resolutions fail permanently.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.fail_next) = n;
    }

    /// Resolutions asked so far (kept).
    pub fn calls(&self) -> Vec<(String, mostro_core::types::Sats)> {
        lock(&self.calls).clone()
    }
}

#[async_trait]
impl mostro_core::ports::PayoutResolver for FakeResolver {
    async fn resolve(
        &self,
        destination: &str,
        amount: mostro_core::types::Sats,
    ) -> Result<String, mostro_core::ports::ResolveError> {
        lock(&self.calls).push((destination.to_owned(), amount));
        {
            let mut f = lock(&self.fail_next);
            if *f > 0 {
                *f = f.saturating_sub(1);
                return Err(mostro_core::ports::ResolveError {
                    transient: false,
                    message: "lnurl server answered 500 (simulated)".into(),
                });
            }
        }
        let Some((user, _)) = destination.split_once('@') else {
            return Err(mostro_core::ports::ResolveError {
                transient: false,
                message: "not a lightning address".into(),
            });
        };
        self.ledger
            .wallet_invoice(user, Some(amount), 600)
            .map_err(|e| mostro_core::ports::ResolveError {
                transient: e.is_transient(),
                message: e.to_string(),
            })
    }
}

/// A future that is ready on its second poll: a point where another task may run, or where a
/// test may drop the task (a crash between two awaits).
#[derive(Debug, Default)]
pub struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// Yields once.
pub fn yield_now() -> YieldOnce {
    YieldOnce(false)
}

/// [`FakeNode`] with an await point before every call, and a check at every `pay` that the
/// payment is the current attempt of an order (recorded in `violations`).
#[derive(Debug, Clone)]
pub struct YieldingNode {
    inner: Arc<FakeNode>,
    store: MemStore,
    violations: Arc<Mutex<Vec<String>>>,
}

impl YieldingNode {
    /// Wraps `inner`; `store` is read at each `pay`.
    pub fn new(inner: Arc<FakeNode>, store: MemStore, violations: Arc<Mutex<Vec<String>>>) -> Self {
        YieldingNode {
            inner,
            store,
            violations,
        }
    }
}

#[async_trait]
impl LightningNode for YieldingNode {
    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<String, LnError> {
        yield_now().await;
        self.inner.create_hold_invoice(req).await
    }

    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError> {
        yield_now().await;
        self.inner.settle_hold_invoice(preimage).await
    }

    async fn cancel_hold_invoice(&self, hash: &PaymentHash) -> Result<(), LnError> {
        yield_now().await;
        self.inner.cancel_hold_invoice(hash).await
    }

    async fn lookup_hold_invoice(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        yield_now().await;
        self.inner.lookup_hold_invoice(hash).await
    }

    async fn next_event(&self) -> Result<NodeEvent, LnError> {
        self.inner.next_event().await
    }

    async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError> {
        // Checked when the engine issues the call, before any other task can run.
        let current = self.store.all_orders().iter().any(|o| {
            let buyer = o.status == mostro_core::order::Status::SettledHoldInvoice
                && o.payout.as_ref().is_some_and(|p| {
                    p.hash == req.hash && p.state == mostro_core::order::PayoutState::InFlight
                });
            // The development fee is paid only once the buyer was (the order succeeded).
            let dev = o.status == mostro_core::order::Status::Success
                && o.dev_fee.as_ref().is_some_and(|d| {
                    d.hash == Some(req.hash) && d.state == mostro_core::order::DevFeeState::InFlight
                });
            buyer || dev
        });
        if !current {
            lock(&self.violations).push(format!("pay for a non-current hash {}", req.hash));
        }
        yield_now().await;
        self.inner.pay(req).await
    }

    async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        yield_now().await;
        self.inner.payment_status(hash).await
    }

    async fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError> {
        self.inner.decode_invoice(bolt11).await
    }

    async fn info(&self) -> Result<NodeInfo, LnError> {
        self.inner.info().await
    }
}

/// [`MemStore`] with an await point before every call.
#[derive(Debug, Clone)]
pub struct YieldingStore(pub MemStore);

#[async_trait]
impl Store for YieldingStore {
    async fn commit(&self, c: Commit) -> Result<Vec<EffectId>, StoreError> {
        yield_now().await;
        self.0.commit(c).await
    }
    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        yield_now().await;
        self.0.order(id).await
    }
    async fn order_by_hold_hash(&self, hash: &PaymentHash) -> Result<Option<Order>, StoreError> {
        yield_now().await;
        self.0.order_by_hold_hash(hash).await
    }
    async fn order_by_dispute(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        yield_now().await;
        self.0.order_by_dispute(id).await
    }
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        yield_now().await;
        self.0.due(now, limit).await
    }
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError> {
        self.0.next_deadline().await
    }
    async fn htlc_expiring(&self, height: BlockHeight) -> Result<Vec<OrderId>, StoreError> {
        yield_now().await;
        self.0.htlc_expiring(height).await
    }
    async fn open_orders_of(&self, identity: &PubKey) -> Result<Vec<Order>, StoreError> {
        yield_now().await;
        self.0.open_orders_of(identity).await
    }
    async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        yield_now().await;
        self.0.open_orders().await
    }
    async fn pending_effects(&self, limit: usize) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        yield_now().await;
        self.0.pending_effects(limit).await
    }
    async fn pending_effects_after(
        &self,
        after: Option<EffectId>,
        limit: usize,
    ) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        yield_now().await;
        self.0.pending_effects_after(after, limit).await
    }
    async fn effect_pending(&self, id: EffectId) -> Result<bool, StoreError> {
        yield_now().await;
        self.0.effect_pending(id).await
    }
    async fn dead_effects(&self, limit: usize) -> Result<(Vec<DeadEffect>, u64), StoreError> {
        self.0.dead_effects(limit).await
    }
    async fn seen_event(&self, id: &EventId) -> Result<bool, StoreError> {
        yield_now().await;
        self.0.seen_event(id).await
    }
    async fn last_event_seen_at(&self) -> Result<Option<Timestamp>, StoreError> {
        yield_now().await;
        self.0.last_event_seen_at().await
    }
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        yield_now().await;
        self.0.setting(key).await
    }
    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        yield_now().await;
        self.0.set_setting(key, value).await
    }
    async fn user(&self, identity: &PubKey) -> Result<Option<User>, StoreError> {
        yield_now().await;
        self.0.user(identity).await
    }
    async fn solver(&self, identity: &PubKey) -> Result<Option<Solver>, StoreError> {
        yield_now().await;
        self.0.solver(identity).await
    }
    async fn solvers(&self) -> Result<Vec<Solver>, StoreError> {
        yield_now().await;
        self.0.solvers().await
    }
    async fn remove_solver(&self, identity: &PubKey) -> Result<bool, StoreError> {
        yield_now().await;
        self.0.remove_solver(identity).await
    }
}
