//! Metrics decorators around the ports: messages in and out per protocol version, Lightning call
//! latency per method, rendered as Prometheus text by the `/metrics` endpoint.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use mostro_core::engine::{Engine, Request};
use mostro_core::machine::{Notify, PayOutcome};
use mostro_core::order::{Order, Protocol};
use mostro_core::ports::{
    DecodedInvoice, HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, NodeEvent,
    NodeInfo, PayRequest, PaymentStatus, Transport, TransportError, User,
};
use mostro_core::types::{PaymentHash, Preimage, PubKey};
use mostro_nostr::RequestHandler;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    errors: u64,
}

/// Shared counters.
#[derive(Default)]
pub struct Metrics {
    in_v1: AtomicU64,
    in_v2: AtomicU64,
    out_v1: AtomicU64,
    out_v2: AtomicU64,
    published: AtomicU64,
    ln: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
    fn observe(&self, method: &'static str, started: Instant, ok: bool) {
        let secs = started.elapsed().as_secs_f64();
        let mut g = match self.ln.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let h = g.entry(method).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b
                && let Some(c) = h.counts.get_mut(i)
            {
                *c = c.saturating_add(1);
            }
        }
        h.count = h.count.saturating_add(1);
        h.sum += secs;
        if !ok {
            h.errors = h.errors.saturating_add(1);
        }
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE mostro_messages_in_total counter");
        let _ = writeln!(
            out,
            "mostro_messages_in_total{{protocol=\"v1\"}} {}",
            self.in_v1.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "mostro_messages_in_total{{protocol=\"v2\"}} {}",
            self.in_v2.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE mostro_messages_out_total counter");
        let _ = writeln!(
            out,
            "mostro_messages_out_total{{protocol=\"v1\"}} {}",
            self.out_v1.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "mostro_messages_out_total{{protocol=\"v2\"}} {}",
            self.out_v2.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE mostro_events_published_total counter");
        let _ = writeln!(
            out,
            "mostro_events_published_total {}",
            self.published.load(Ordering::Relaxed)
        );
        let g = match self.ln.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let _ = writeln!(out, "# TYPE mostro_lightning_call_seconds histogram");
        for (m, h) in g.iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let c = h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "mostro_lightning_call_seconds_bucket{{method=\"{m}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "mostro_lightning_call_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "mostro_lightning_call_seconds_sum{{method=\"{m}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "mostro_lightning_call_seconds_count{{method=\"{m}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(out, "# TYPE mostro_lightning_call_errors_total counter");
        for (m, h) in g.iter() {
            let _ = writeln!(
                out,
                "mostro_lightning_call_errors_total{{method=\"{m}\"}} {}",
                h.errors
            );
        }
        out
    }
}

/// A Lightning node that records call latency.
#[derive(Debug)]
pub struct MeteredNode {
    inner: Arc<dyn LightningNode>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
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
        let c = match msg.protocol {
            Protocol::V1 => &self.metrics.out_v1,
            Protocol::V2 => &self.metrics.out_v2,
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn publish_order(&self, order: &Order) -> Result<(), TransportError> {
        self.inner.publish_order(order).await?;
        self.metrics.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn publish_dispute(&self, order: &Order) -> Result<(), TransportError> {
        self.inner.publish_dispute(order).await?;
        self.metrics.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn publish_rating(&self, trade_key: &PubKey, user: &User) -> Result<(), TransportError> {
        self.inner.publish_rating(trade_key, user).await?;
        self.metrics.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The inbound handler: counts requests per protocol, then hands them to the engine.
pub struct MeteredHandler {
    /// Engine.
    pub engine: Arc<Engine>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl RequestHandler for MeteredHandler {
    async fn deliver(&self, req: Request) -> bool {
        let c = match req.protocol {
            Protocol::V1 => &self.metrics.in_v1,
            Protocol::V2 => &self.metrics.in_v2,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.engine.deliver(req).await
    }
}
