//! The intake loop of the driver: requests the transport delivered go to the engine, one
//! worker per sender, so one sender's requests are handled in arrival order and different
//! senders in parallel (a slow order never stalls the others). Each request comes with an
//! [`Acknowledge`] handle that learns how it ended: the Nostr transport's [`Ack`] (a failure
//! not caused by the request makes it forget the event so a re-delivery is processed again),
//! or an embedder's own (e.g. a reply channel of an HTTP API).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mostro_core::engine::{Engine, EngineError, Outcome, Request};
use mostro_core::types::PubKey;
use mostro_nostr::Ack;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::metrics::{Metrics, protocol};

/// A per-sender worker exits after this long without requests.
const WORKER_IDLE: Duration = Duration::from_secs(30);
/// How long shutdown waits for requests being handled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Learns how a request handed to the engine ended.
pub trait Acknowledge: Send + 'static {
    /// Called once, with the engine's answer.
    fn done(self, result: Result<&Outcome, &EngineError>);
}

impl Acknowledge for Ack {
    fn done(self, result: Result<&Outcome, &EngineError>) {
        match result {
            Ok(_) => self.handled(),
            Err(_) => self.failed(),
        }
    }
}

/// A reply channel: the embedder's caller gets the outcome (or the error's text).
impl Acknowledge for tokio::sync::oneshot::Sender<Result<Outcome, String>> {
    fn done(self, result: Result<&Outcome, &EngineError>) {
        let _ = self.send(result.cloned().map_err(ToString::to_string));
    }
}

/// Hands delivered requests to the engine until `stop` resolves or the transport's side of
/// the channel is gone, then lets the requests being handled finish (bounded).
pub async fn serve<A: Acknowledge>(
    engine: Arc<Engine>,
    metrics: Option<Arc<Metrics>>,
    mut inbox: mpsc::UnboundedReceiver<(Request, A)>,
    stop: impl Future<Output = ()>,
) {
    let mut workers: HashMap<PubKey, mpsc::UnboundedSender<(Request, A)>> = HashMap::new();
    let mut running = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let d = tokio::select! {
            () = &mut stop => break,
            d = inbox.recv() => match d {
                Some(d) => d,
                None => break,
            },
        };
        if let Some(m) = &metrics {
            m.messages_in.get_or_create(&protocol(d.0.protocol)).inc();
        }
        dispatch(d, &engine, &mut workers, &mut running);
        while running.try_join_next().is_some() {}
    }
    workers.clear();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("shutdown: requests still running were abandoned");
    }
}

/// Queues a request on its sender's worker, starting one if needed.
fn dispatch<A: Acknowledge>(
    d: (Request, A),
    engine: &Arc<Engine>,
    workers: &mut HashMap<PubKey, mpsc::UnboundedSender<(Request, A)>>,
    running: &mut JoinSet<()>,
) {
    let sender = d.0.sender;
    let d = match workers.get(&sender) {
        Some(tx) => match tx.send(d) {
            Ok(()) => return,
            Err(mpsc::error::SendError(d)) => d,
        },
        None => d,
    };
    // Forget finished workers when the map doubles in size (amortized O(1) per request;
    // fresh trade keys make one worker per order).
    if workers.len() >= 1024 && workers.len().is_power_of_two() {
        workers.retain(|_, tx| !tx.is_closed());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    if tx.send(d).is_err() {
        return;
    }
    workers.insert(sender, tx);
    running.spawn(worker(engine.clone(), rx));
}

/// Handles one sender's requests in order; exits when idle, after closing its queue and
/// draining what was queued meanwhile.
async fn worker<A: Acknowledge>(
    engine: Arc<Engine>,
    mut rx: mpsc::UnboundedReceiver<(Request, A)>,
) {
    // The engine's request future is large (tens of KB of state): boxed, it is allocated only
    // while a request runs, so an idle worker (a fresh trade key per order leaves one per
    // order for WORKER_IDLE) costs a few hundred bytes instead.
    loop {
        match tokio::time::timeout(WORKER_IDLE, rx.recv()).await {
            Ok(Some(d)) => Box::pin(handle(&engine, d.0, d.1)).await,
            Ok(None) => return,
            Err(_) => {
                rx.close();
                while let Some(d) = rx.recv().await {
                    Box::pin(handle(&engine, d.0, d.1)).await;
                }
                return;
            },
        }
    }
}

/// One request through the engine; the ack learns how it ended.
pub async fn handle<A: Acknowledge>(engine: &Engine, req: Request, ack: A) {
    let result = engine.handle(req).await;
    match &result {
        Ok(Outcome::Applied(id)) => debug!(order_id = ?id, "request applied"),
        Ok(Outcome::Refused(reason)) => debug!(%reason, "request refused"),
        Ok(Outcome::Duplicate) => debug!("duplicate request"),
        Err(e) => warn!(error = %e, "engine failed on a request"),
    }
    ack.done(result.as_ref());
}
