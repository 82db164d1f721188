//! Metrics decorators around the ports (messages in and out per protocol version, Lightning call
//! latency per method, store commit latency) and the Prometheus registry the `/metrics` endpoint
//! encodes (through `prometheus-client`; no exposition text is written by hand here).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use mostro_core::machine::{Effect, Notify, PayOutcome};
use mostro_core::order::{Order, Protocol};
use mostro_core::ports::{
    Commit, DeadEffect, DecodedInvoice, EffectId, HoldInvoiceRequest, HoldInvoiceState,
    LightningNode, LnError, NodeEvent, NodeInfo, PayRequest, PaymentStatus, Solver, Store,
    StoreError, Transport, TransportError, User,
};
use mostro_core::types::{BlockHeight, EventId, OrderId, PaymentHash, Preimage, PubKey, Timestamp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];

/// A label set: `(name, value)` pairs.
pub type Labels = Vec<(&'static str, String)>;

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The long-lived metrics (those the decorators update); the scrape registers clones of them
/// (they share their values) next to the point-in-time gauges read at scrape time.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) messages_in: Family<Labels, Counter>,
    messages_out: Family<Labels, Counter>,
    published: Counter,
    ln_calls: Family<Labels, Histogram, fn() -> Histogram>,
    ln_errors: Family<Labels, Counter>,
    store_commit: Histogram,
    store_commit_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            messages_in: Family::default(),
            messages_out: Family::default(),
            published: Counter::default(),
            ln_calls: Family::new_with_constructor(latency),
            ln_errors: Family::default(),
            store_commit: latency(),
            store_commit_errors: Counter::default(),
        }
    }
}

/// The metric labels of a protocol.
#[must_use]
pub fn protocol(p: Protocol) -> Labels {
    vec![(
        "protocol",
        match p {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
        .to_owned(),
    )]
}

impl Metrics {
    fn observe(&self, method: &'static str, started: Instant, ok: bool) {
        let labels = vec![("method", method.to_owned())];
        self.ln_calls
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let errors = self.ln_errors.get_or_create(&labels);
        if !ok {
            errors.inc();
        }
    }

    /// Registers the long-lived metrics (clones sharing their values) into `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mostro_messages_in",
            "Requests received from clients, by protocol version",
            self.messages_in.clone(),
        );
        r.register(
            "mostro_messages_out",
            "Messages sent to clients, by protocol version",
            self.messages_out.clone(),
        );
        r.register(
            "mostro_events_published",
            "Public events published (orders, disputes, ratings)",
            self.published.clone(),
        );
        r.register_with_unit(
            "mostro_lightning_call",
            "Latency of calls to the Lightning node, by method",
            Unit::Seconds,
            self.ln_calls.clone(),
        );
        r.register(
            "mostro_lightning_call_errors",
            "Calls to the Lightning node that returned an error, by method",
            self.ln_errors.clone(),
        );
        r.register_with_unit(
            "mostro_store_commit",
            "Latency of store commits (one atomic transaction each)",
            Unit::Seconds,
            self.store_commit.clone(),
        );
        r.register(
            "mostro_store_commit_errors",
            "Store commits that returned an error",
            self.store_commit_errors.clone(),
        );
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

/// A Lightning node that records call latency.
#[derive(Debug)]
pub struct MeteredNode {
    inner: Arc<dyn LightningNode>,
    metrics: Arc<Metrics>,
}

impl MeteredNode {
    /// Wraps a node.
    pub fn new(inner: Arc<dyn LightningNode>, metrics: Arc<Metrics>) -> Self {
        MeteredNode { inner, metrics }
    }
}

macro_rules! timed {
    ($self:ident, $name:literal, $call:expr) => {{
        let t = Instant::now();
        let r = $call.await;
        $self.metrics.observe($name, t, r.is_ok());
        r
    }};
}

#[async_trait]
impl LightningNode for MeteredNode {
    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<String, LnError> {
        timed!(
            self,
            "create_hold_invoice",
            self.inner.create_hold_invoice(req)
        )
    }
    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError> {
        timed!(
            self,
            "settle_hold_invoice",
            self.inner.settle_hold_invoice(preimage)
        )
    }
    async fn cancel_hold_invoice(&self, hash: &PaymentHash) -> Result<(), LnError> {
        timed!(
            self,
            "cancel_hold_invoice",
            self.inner.cancel_hold_invoice(hash)
        )
    }
    async fn lookup_hold_invoice(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        timed!(
            self,
            "lookup_hold_invoice",
            self.inner.lookup_hold_invoice(hash)
        )
    }
    async fn next_event(&self) -> Result<NodeEvent, LnError> {
        self.inner.next_event().await
    }
    async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError> {
        timed!(self, "pay", self.inner.pay(req))
    }
    async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        timed!(self, "payment_status", self.inner.payment_status(hash))
    }
    async fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError> {
        timed!(self, "decode_invoice", self.inner.decode_invoice(bolt11))
    }
    async fn info(&self) -> Result<NodeInfo, LnError> {
        timed!(self, "info", self.inner.info())
    }
}

/// A transport that counts messages out per protocol.
pub struct MeteredTransport {
    inner: Arc<dyn Transport>,
    metrics: Arc<Metrics>,
}

impl MeteredTransport {
    /// Wraps a transport.
    pub fn new(inner: Arc<dyn Transport>, metrics: Arc<Metrics>) -> Self {
        MeteredTransport { inner, metrics }
    }
}

#[async_trait]
impl Transport for MeteredTransport {
    async fn send(&self, msg: &Notify) -> Result<(), TransportError> {
        self.inner.send(msg).await?;
        self.metrics
            .messages_out
            .get_or_create(&protocol(msg.protocol))
            .inc();
        Ok(())
    }
    async fn publish_order(&self, order: &Order) -> Result<(), TransportError> {
        self.inner.publish_order(order).await?;
        self.metrics.published.inc();
        Ok(())
    }
    async fn publish_dispute(&self, order: &Order) -> Result<(), TransportError> {
        self.inner.publish_dispute(order).await?;
        self.metrics.published.inc();
        Ok(())
    }
    async fn publish_rating(&self, trade_key: &PubKey, user: &User) -> Result<(), TransportError> {
        self.inner.publish_rating(trade_key, user).await?;
        self.metrics.published.inc();
        Ok(())
    }
    async fn publish_dev_fee(&self, order: &Order) -> Result<(), TransportError> {
        self.inner.publish_dev_fee(order).await?;
        self.metrics.published.inc();
        Ok(())
    }
}

/// A store that records commit latency.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn commit(&self, commit: Commit) -> Result<Vec<EffectId>, StoreError> {
        let t = Instant::now();
        let r = self.inner.commit(commit).await;
        self.metrics.store_commit.observe(t.elapsed().as_secs_f64());
        if r.is_err() {
            self.metrics.store_commit_errors.inc();
        }
        r
    }
    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.inner.order(id).await
    }
    async fn order_by_hold_hash(&self, hash: &PaymentHash) -> Result<Option<Order>, StoreError> {
        self.inner.order_by_hold_hash(hash).await
    }
    async fn order_by_dispute(&self, dispute_id: OrderId) -> Result<Option<Order>, StoreError> {
        self.inner.order_by_dispute(dispute_id).await
    }
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<OrderId>, StoreError> {
        self.inner.due(now, limit).await
    }
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_deadline().await
    }
    async fn htlc_expiring(&self, height: BlockHeight) -> Result<Vec<OrderId>, StoreError> {
        self.inner.htlc_expiring(height).await
    }
    async fn open_orders_of(&self, identity: &PubKey) -> Result<Vec<Order>, StoreError> {
        self.inner.open_orders_of(identity).await
    }
    async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        self.inner.open_orders().await
    }
    async fn pending_effects(&self, limit: usize) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        self.inner.pending_effects(limit).await
    }
    async fn pending_effects_after(
        &self,
        after: Option<EffectId>,
        limit: usize,
    ) -> Result<Vec<(EffectId, Effect)>, StoreError> {
        self.inner.pending_effects_after(after, limit).await
    }
    async fn pending_effect_count(&self) -> Result<u64, StoreError> {
        self.inner.pending_effect_count().await
    }
    async fn effect_pending(&self, id: EffectId) -> Result<bool, StoreError> {
        self.inner.effect_pending(id).await
    }
    async fn dead_effects(&self, limit: usize) -> Result<(Vec<DeadEffect>, u64), StoreError> {
        self.inner.dead_effects(limit).await
    }
    async fn seen_event(&self, id: &EventId) -> Result<bool, StoreError> {
        self.inner.seen_event(id).await
    }
    async fn last_event_seen_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.last_event_seen_at().await
    }
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.setting(key).await
    }
    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.set_setting(key, value).await
    }
    async fn user(&self, identity: &PubKey) -> Result<Option<User>, StoreError> {
        self.inner.user(identity).await
    }
    async fn solver(&self, identity: &PubKey) -> Result<Option<Solver>, StoreError> {
        self.inner.solver(identity).await
    }
    async fn view(
        &self,
        q: &mostro_core::ports::ViewQuery,
    ) -> Result<mostro_core::ports::View, StoreError> {
        self.inner.view(q).await
    }
    async fn solvers(&self) -> Result<Vec<Solver>, StoreError> {
        self.inner.solvers().await
    }
    async fn remove_solver(&self, identity: &PubKey) -> Result<bool, StoreError> {
        self.inner.remove_solver(identity).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_once_it_has_samples() {
        let m = Metrics::default();
        m.observe("pay", Instant::now(), false);
        m.messages_in.get_or_create(&protocol(Protocol::V1)).inc();
        m.messages_out.get_or_create(&protocol(Protocol::V2)).inc();
        m.store_commit.observe(0.002);
        let mut r = Registry::default();
        m.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(typed.len(), 7, "{text}");
        for f in typed {
            assert!(text.contains(&format!("# HELP {f} ")), "{f}: {text}");
        }
        assert!(
            text.contains("mostro_lightning_call_errors_total{method=\"pay\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mostro_messages_in_total{protocol=\"v1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mostro_store_commit_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT mostro_lightning_call_seconds seconds"),
            "{text}"
        );
        // The encoder ends each HELP with a period: the texts here must not bring their own.
        assert!(
            text.lines()
                .filter(|l| l.starts_with("# HELP "))
                .all(|l| l.ends_with('.') && !l.ends_with("..")),
            "{text}"
        );
    }
}
