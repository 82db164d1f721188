//! LND adapter: [`LndNode`] implements [`mostro_core::ports::LightningNode`] over LND's gRPC
//! API (fedimint-tonic-lnd's generated clients `lnrpc`, `invoicesrpc`, `routerrpc`, on our own
//! transport: see `connector`).
//!
//! One HTTP/2 connection (TLS pinned to LND's certificate, `TCP_NODELAY`) is shared by every
//! call and background task; every
//! unary call and every stream's first answer is bounded by [`LndConfig::call_timeout`].
//! Background tasks (one invoice watcher per watched hash, one block-height poller) are owned
//! by the node and aborted when it is dropped.
#![warn(missing_docs)]

mod connector;
mod convert;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use fedimint_tonic_lnd::tonic::{Response, Status};
use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc};
use mostro_core::machine::PayOutcome;
use mostro_core::ports::{
    DecodedInvoice, HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnErrorKind,
    Network, NodeEvent, NodeInfo, PayRequest, PaymentStatus,
};
use mostro_core::types::{BlockHeight, PaymentHash, Preimage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connector::Client;
use crate::convert::{
    decode_bolt11, hold_state, is_existing_payment, map_status, network_from_info, payment_record,
};

/// How to reach an LND node (built by mostrod from its configuration).
#[derive(Clone, Debug)]
pub struct LndConfig {
    /// gRPC address, `https://host:port`.
    pub host: String,
    /// LND's `tls.cert` (PEM); the connection pins exactly this certificate.
    pub cert_path: PathBuf,
    /// A macaroon file (sent hex-encoded with every call).
    pub macaroon_path: PathBuf,
    /// Bound on every unary call (and on the first answer of a stream).
    pub call_timeout: Duration,
    /// Interval of the block-height poll and of the invoice watchers' safety lookup.
    pub poll_interval: Duration,
}

impl LndConfig {
    /// A config with a 30 s call timeout and a 10 s poll interval.
    pub fn new(
        host: impl Into<String>,
        cert_path: impl Into<PathBuf>,
        macaroon_path: impl Into<PathBuf>,
    ) -> Self {
        LndConfig {
            host: host.into(),
            cert_path: cert_path.into(),
            macaroon_path: macaroon_path.into(),
            call_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(10),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Runs one gRPC call under the timeout, mapping errors.
async fn call<T>(
    limit: Duration,
    fut: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, LnError> {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(LnError::new(
            LnErrorKind::Timeout,
            format!("lnd did not answer within {limit:?}"),
        )),
        Ok(Err(s)) => Err(map_status(&s)),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn is_final(s: HoldInvoiceState) -> bool {
    matches!(s, HoldInvoiceState::Settled | HoldInvoiceState::Canceled)
}

/// The LND node.
pub struct LndNode {
    client: Client,
    cfg: LndConfig,
    events_tx: mpsc::UnboundedSender<NodeEvent>,
    events_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<NodeEvent>>,
    watchers: Mutex<HashMap<PaymentHash, JoinHandle<()>>>,
    poller: JoinHandle<()>,
    network: Mutex<Option<Network>>,
    /// One lock per payment hash: a concurrent duplicate `pay` for the same hash waits for the
    /// first one (and then sees its payment), while payouts of other orders go on in parallel.
    pay_locks: Mutex<HashMap<PaymentHash, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for LndNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LndNode")
            .field("host", &self.cfg.host)
            .finish_non_exhaustive()
    }
}

impl Drop for LndNode {
    fn drop(&mut self) {
        self.poller.abort();
        for (_, h) in lock(&self.watchers).drain() {
            h.abort();
        }
    }
}

impl LndNode {
    /// Loads the certificate and macaroon and prepares the client. The connection itself is
    /// made by the first call (a node that is down now is not an error here). Must be called
    /// inside a tokio runtime: it starts the block-height poller.
    ///
    /// # Errors
    /// [`LnErrorKind::Auth`] when the certificate or macaroon cannot be read or parsed,
    /// [`LnErrorKind::Other`] for an invalid address.
    pub async fn connect(cfg: LndConfig) -> Result<LndNode, LnError> {
        // The LND transport names ring itself; the process-wide default stays installed as
        // before, for any other rustls user of the process that reads it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = connector::connect(&cfg.host, &cfg.cert_path, &cfg.macaroon_path).await?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let poller = tokio::spawn(poll_blocks(
            client.clone(),
            cfg.call_timeout,
            cfg.poll_interval,
            events_tx.clone(),
        ));
        Ok(LndNode {
            client,
            cfg,
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            watchers: Mutex::new(HashMap::new()),
            poller,
            network: Mutex::new(None),
            pay_locks: Mutex::new(HashMap::new()),
        })
    }

    /// Hashes whose invoice is being watched now.
    pub fn watched(&self) -> Vec<PaymentHash> {
        let mut w = lock(&self.watchers);
        w.retain(|_, h| !h.is_finished());
        w.keys().copied().collect()
    }

    /// Starts a supervised subscription for `hash` unless one runs or the state is final.
    fn watch(&self, hash: PaymentHash, known: HoldInvoiceState) {
        if is_final(known) {
            return;
        }
        let mut w = lock(&self.watchers);
        if w.get(&hash).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let task = tokio::spawn(watch_invoice(
            self.client.clone(),
            hash,
            known,
            self.events_tx.clone(),
            self.cfg.call_timeout,
            self.cfg.poll_interval,
        ));
        w.insert(hash, task);
    }

    async fn get_info(&self) -> Result<lnrpc::GetInfoResponse, LnError> {
        let mut c = self.client.clone();
        call(
            self.cfg.call_timeout,
            c.lightning().get_info(lnrpc::GetInfoRequest {}),
        )
        .await
    }

    async fn network(&self) -> Result<Network, LnError> {
        if let Some(n) = *lock(&self.network) {
            return Ok(n);
        }
        let n = network_from_info(&self.get_info().await?)?;
        *lock(&self.network) = Some(n);
        Ok(n)
    }

    async fn lookup(&self, hash: &PaymentHash) -> Result<lnrpc::Invoice, LnError> {
        let mut c = self.client.clone();
        #[allow(deprecated, reason = "r_hash_str is a deprecated alternative field")]
        let req = lnrpc::PaymentHash {
            r_hash: hash.0.to_vec(),
            ..Default::default()
        };
        call(self.cfg.call_timeout, c.lightning().lookup_invoice(req)).await
    }

    /// LND's record of the payment for `hash`: the first update of `TrackPaymentV2`.
    ///
    /// `no_inflight_updates` is false on purpose: LND then sends the payment's current state
    /// right away (in flight included), while with `true` it holds back every update until the
    /// payment is final, so an in-flight payment would look like a node that does not answer.
    async fn record(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        let mut c = self.client.clone();
        let req = routerrpc::TrackPaymentRequest {
            payment_hash: hash.0.to_vec(),
            no_inflight_updates: false,
        };
        // `NotFound` comes only from LND's own "payment isn't initiated" (see convert.rs: a
        // node that is starting up is `Unreachable`, never `NotFound`).
        let mut stream = match call(self.cfg.call_timeout, c.router().track_payment_v2(req)).await {
            Ok(s) => s,
            Err(e) if e.kind == LnErrorKind::NotFound => return Ok(PaymentStatus::NotFound),
            Err(e) => return Err(e),
        };
        match tokio::time::timeout(self.cfg.call_timeout, stream.message()).await {
            Err(_) => Err(LnError::new(
                LnErrorKind::Timeout,
                "lnd sent no payment status in time",
            )),
            Ok(Err(s)) => {
                let e = map_status(&s);
                if e.kind == LnErrorKind::NotFound {
                    Ok(PaymentStatus::NotFound)
                } else {
                    Err(e)
                }
            },
            // A stream closed without a status is no answer.
            Ok(Ok(None)) => Err(LnError::new(
                LnErrorKind::Unreachable,
                "lnd closed the payment stream without a status",
            )),
            Ok(Ok(Some(p))) => payment_record(&p, hash),
        }
    }

    /// The outcome of a pay that LND refused because it already has a payment for the hash
    /// ("payment is in transition", "invoice is already paid"): whatever its record says.
    async fn existing_payment(
        &self,
        hash: &PaymentHash,
        why: &LnError,
    ) -> Result<PayOutcome, LnError> {
        match self.record(hash).await? {
            PaymentStatus::NotFound => Err(LnError::new(
                LnErrorKind::Other,
                format!("lnd refused the payment ({why}) but has no record of it"),
            )),
            st => Ok(outcome_of(st)),
        }
    }

    async fn send(&self, req: &PayRequest, amountless: bool) -> Result<PayOutcome, LnError> {
        let mut c = self.client.clone();
        let send = routerrpc::SendPaymentRequest {
            payment_request: req.invoice.clone(),
            amt: if amountless { i64_of(req.amount.0) } else { 0 },
            fee_limit_sat: i64_of(req.fee_limit.0),
            timeout_seconds: i32::try_from(req.timeout_secs.max(1)).unwrap_or(i32::MAX),
            // LND treats 0 as "its own --max-cltv-expiry": always send the bound.
            cltv_limit: i32::try_from(req.max_cltv.max(1)).unwrap_or(i32::MAX),
            no_inflight_updates: false,
            ..Default::default()
        };
        let wait = Duration::from_secs(u64::from(req.timeout_secs.max(1)));
        let mut stream = match call(self.cfg.call_timeout, c.router().send_payment_v2(send)).await {
            Ok(s) => s,
            // Already in flight or already paid: report what LND's record says.
            Err(e) if is_existing_payment(&e) => {
                return self.existing_payment(&req.hash, &e).await;
            },
            Err(e) => return Err(e),
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Whether LND itself reported the payment in flight on this stream.
        let mut in_flight = false;
        loop {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) if in_flight => return Ok(PayOutcome::InFlight),
                Err(_) => {
                    return Err(LnError::new(
                        LnErrorKind::Timeout,
                        "lnd sent no payment update in time",
                    ));
                },
                // The stream broke after LND reported the payment in flight: it goes on.
                Ok(Err(_) | Ok(None)) if in_flight => return Ok(PayOutcome::InFlight),
                Ok(Err(s)) => {
                    let e = map_status(&s);
                    if is_existing_payment(&e) {
                        return self.existing_payment(&req.hash, &e).await;
                    }
                    return Err(e);
                },
                Ok(Ok(None)) => {
                    return Err(LnError::new(
                        LnErrorKind::Unreachable,
                        "lnd closed the payment stream without an update",
                    ));
                },
                Ok(Ok(Some(p))) => match payment_record(&p, &req.hash)? {
                    PaymentStatus::InFlight => in_flight = true,
                    // Only a FAILED payment for this hash, as LND reports it, is a failure.
                    st @ (PaymentStatus::Succeeded { .. } | PaymentStatus::Failed { .. }) => {
                        return Ok(outcome_of(st));
                    },
                    PaymentStatus::NotFound => {
                        return Err(LnError::new(
                            LnErrorKind::Other,
                            "lnd sent an empty payment",
                        ));
                    },
                },
            }
        }
    }
}

/// A payment record as a pay outcome (`NotFound` is handled by the callers).
fn outcome_of(st: PaymentStatus) -> PayOutcome {
    match st {
        PaymentStatus::Succeeded { fee } => PayOutcome::Succeeded { fee },
        PaymentStatus::Failed { reason } => PayOutcome::Failed { reason },
        PaymentStatus::InFlight | PaymentStatus::NotFound => PayOutcome::InFlight,
    }
}

/// Reports `hash` moving to `st` unless it was already reported. Returns false when the
/// receiver is gone.
fn report(
    tx: &mpsc::UnboundedSender<NodeEvent>,
    hash: PaymentHash,
    last: &mut HoldInvoiceState,
    st: HoldInvoiceState,
) -> bool {
    if *last == st {
        return true;
    }
    *last = st;
    tx.send(NodeEvent::Hold { hash, state: st }).is_ok()
}

/// One supervised SubscribeSingleInvoice: re-subscribes after a drop (with backoff) and looks
/// the invoice up after each drop and on every poll tick, so no transition is lost.
async fn watch_invoice(
    client: Client,
    hash: PaymentHash,
    mut last: HoldInvoiceState,
    tx: mpsc::UnboundedSender<NodeEvent>,
    limit: Duration,
    poll: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    let lookup = |client: &Client| {
        let mut c = client.clone();
        #[allow(deprecated, reason = "r_hash_str is a deprecated alternative field")]
        let req = lnrpc::PaymentHash {
            r_hash: hash.0.to_vec(),
            ..Default::default()
        };
        async move { call(limit, c.lightning().lookup_invoice(req)).await }
    };
    loop {
        let mut c = client.clone();
        let sub = invoicesrpc::SubscribeSingleInvoiceRequest {
            r_hash: hash.0.to_vec(),
        };
        if let Ok(mut stream) = call(limit, c.invoices().subscribe_single_invoice(sub)).await {
            backoff = Duration::from_millis(100);
            let mut tick = tokio::time::interval(poll);
            tick.tick().await;
            loop {
                tokio::select! {
                    m = stream.message() => match m {
                        Ok(Some(inv)) => {
                            let st = hold_state(&inv);
                            if !report(&tx, hash, &mut last, st) || is_final(st) {
                                return;
                            }
                        },
                        Ok(None) | Err(_) => break,
                    },
                    _ = tick.tick() => {
                        // Safety net for a connection that died silently.
                        if let Ok(inv) = lookup(&client).await {
                            let st = hold_state(&inv);
                            if !report(&tx, hash, &mut last, st) || is_final(st) {
                                return;
                            }
                        }
                    },
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        match lookup(&client).await {
            Ok(inv) => {
                let st = hold_state(&inv);
                if !report(&tx, hash, &mut last, st) || is_final(st) {
                    return;
                }
            },
            Err(e) if e.kind == LnErrorKind::NotFound => return,
            Err(_) => {},
        }
    }
}

/// Polls GetInfo and reports each new chain tip.
async fn poll_blocks(
    client: Client,
    limit: Duration,
    every: Duration,
    tx: mpsc::UnboundedSender<NodeEvent>,
) {
    let mut last: Option<u32> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut c = client.clone();
        if let Ok(info) = call(limit, c.lightning().get_info(lnrpc::GetInfoRequest {})).await
            && last != Some(info.block_height)
        {
            last = Some(info.block_height);
            if tx
                .send(NodeEvent::Block(BlockHeight(info.block_height)))
                .is_err()
            {
                return;
            }
        }
    }
}

#[async_trait]
impl LightningNode for LndNode {
    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<String, LnError> {
        let mut c = self.client.clone();
        let add = invoicesrpc::AddHoldInvoiceRequest {
            memo: req.memo.clone(),
            hash: req.hash.0.to_vec(),
            value: i64_of(req.amount.0),
            expiry: i64_of(req.expiry_secs),
            cltv_expiry: u64::from(req.cltv_delta),
            ..Default::default()
        };
        match call(self.cfg.call_timeout, c.invoices().add_hold_invoice(add)).await {
            Ok(r) => {
                self.watch(req.hash, HoldInvoiceState::Open);
                Ok(r.payment_request)
            },
            Err(e) if e.kind == LnErrorKind::Conflict => {
                // Idempotency: the same invoice created earlier (maybe a lost reply).
                let inv = self.lookup(&req.hash).await?;
                let same = inv.value == i64_of(req.amount.0)
                    || inv.value_msat == i64_of(req.amount.0.saturating_mul(1000));
                if !same {
                    return Err(LnError::new(
                        LnErrorKind::Conflict,
                        "a hold invoice with this hash exists with another amount",
                    ));
                }
                self.watch(req.hash, hold_state(&inv));
                Ok(inv.payment_request)
            },
            Err(e) => Err(e),
        }
    }

    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError> {
        let mut c = self.client.clone();
        let msg = invoicesrpc::SettleInvoiceMsg {
            preimage: preimage.0.to_vec(),
        };
        match call(self.cfg.call_timeout, c.invoices().settle_invoice(msg)).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == LnErrorKind::AlreadySettled => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn cancel_hold_invoice(&self, hash: &PaymentHash) -> Result<(), LnError> {
        let mut c = self.client.clone();
        let msg = invoicesrpc::CancelInvoiceMsg {
            payment_hash: hash.0.to_vec(),
        };
        match call(self.cfg.call_timeout, c.invoices().cancel_invoice(msg)).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == LnErrorKind::AlreadyCanceled => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn lookup_hold_invoice(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        let st = hold_state(&self.lookup(hash).await?);
        self.watch(*hash, st);
        Ok(st)
    }

    async fn next_event(&self) -> Result<NodeEvent, LnError> {
        let mut rx = self.events_rx.lock().await;
        rx.recv()
            .await
            .ok_or_else(|| LnError::new(LnErrorKind::Unreachable, "event channel closed"))
    }

    async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError> {
        // One pay at a time per hash: a concurrent duplicate must see the first one's payment.
        let slot = lock(&self.pay_locks).entry(req.hash).or_default().clone();
        let _guard = slot.lock().await;
        let _cleanup = PayLockCleanup {
            locks: &self.pay_locks,
            hash: req.hash,
        };
        let d = decode_bolt11(&req.invoice)?;
        if d.hash != req.hash {
            return Err(LnError::new(
                LnErrorKind::InvalidInvoice,
                "hash does not match the invoice",
            ));
        }
        if d.amount.is_some_and(|a| a != req.amount) {
            return Err(LnError::new(
                LnErrorKind::InvalidInvoice,
                "amount does not match the invoice",
            ));
        }
        if d.network != self.network().await? {
            return Err(LnError::new(
                LnErrorKind::WrongNetwork,
                "invoice is for another network",
            ));
        }
        // Never a second send while one is in flight or after one succeeded; a node that
        // cannot say (starting up, unreachable) is an error, not a reason to send.
        match self.record(&req.hash).await? {
            PaymentStatus::InFlight => return Ok(PayOutcome::InFlight),
            PaymentStatus::Succeeded { fee } => return Ok(PayOutcome::Succeeded { fee }),
            PaymentStatus::Failed { .. } | PaymentStatus::NotFound => {},
        }
        self.send(req, d.amount.is_none()).await
    }

    async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        self.record(hash).await
    }

    async fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError> {
        let d = decode_bolt11(bolt11)?;
        let net = self.network().await?;
        if d.network != net {
            return Err(LnError::new(
                LnErrorKind::WrongNetwork,
                format!(
                    "invoice is for {}, the node is on {}",
                    d.network.as_str(),
                    net.as_str()
                ),
            ));
        }
        Ok(d)
    }

    async fn info(&self) -> Result<NodeInfo, LnError> {
        let i = self.get_info().await?;
        let network = network_from_info(&i)?;
        *lock(&self.network) = Some(network);
        #[allow(
            deprecated,
            reason = "LND still fills it (always bitcoin); the info event names it"
        )]
        let chains = i.chains.iter().map(|c| c.chain.clone()).collect();
        Ok(NodeInfo {
            network,
            block_height: BlockHeight(i.block_height),
            alias: i.alias,
            pubkey: i.identity_pubkey,
            version: i.version,
            commit_hash: i.commit_hash,
            uris: i.uris,
            chains,
        })
    }
}

/// Forgets a payment hash's lock once nobody waits on it.
struct PayLockCleanup<'a> {
    locks: &'a Mutex<HashMap<PaymentHash, Arc<tokio::sync::Mutex<()>>>>,
    hash: PaymentHash,
}

impl Drop for PayLockCleanup<'_> {
    fn drop(&mut self) {
        let mut g = lock(self.locks);
        // Two holders: the map and the `pay` call being finished (its guard drops right after).
        if g.get(&self.hash).is_some_and(|a| Arc::strong_count(a) <= 2) {
            g.remove(&self.hash);
        }
    }
}
