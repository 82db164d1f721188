//! The loops that drive the engine: Lightning events, deadlines, outbox retries, and a graceful
//! shutdown. Inbound requests are pushed into the engine by the transport's own driver.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mostro_core::engine::Engine;
use mostro_core::ports::LightningNode;
use mostro_core::types::OrderId;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// How often pending outbox effects are retried.
pub const RESUME_EVERY: Duration = Duration::from_secs(5);
/// The scheduler's resolution: a deadline fires within this long after it passes.
pub const TICK_EVERY: Duration = Duration::from_millis(500);
/// How long in-flight work may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Counters the metrics endpoint exposes.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lightning events handled.
    pub node_events: AtomicU64,
    /// Deadlines fired.
    pub timeouts: AtomicU64,
    /// Effects retried.
    pub retries: AtomicU64,
    /// The node's event stream is up.
    pub node_connected: AtomicBool,
}

/// A handle to stop the loops.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    /// A new, un-triggered handle.
    #[must_use]
    pub fn new() -> (Shutdown, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Shutdown(tx), rx)
    }

    /// Triggers it.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Spawns the engine loops; returns when `shutdown` fires and in-flight work has finished
/// (or the grace period ran out).
pub async fn drive(
    engine: Arc<Engine>,
    node: Arc<dyn LightningNode>,
    counters: Arc<Counters>,
    unrecovered: Vec<OrderId>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop, rx) = Shutdown::new();
    let mut tasks = JoinSet::new();
    if !unrecovered.is_empty() {
        tasks.spawn(recover_later(engine.clone(), unrecovered, rx.clone()));
    }
    tasks.spawn(node_events(
        engine.clone(),
        node,
        counters.clone(),
        rx.clone(),
    ));
    tasks.spawn(scheduler(engine.clone(), counters.clone(), rx.clone()));
    tasks.spawn(retries(engine.clone(), counters, rx));
    shutdown.await;
    info!("shutting down: stopping intake, letting in-flight work finish");
    stop.trigger();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        warn!("in-flight work did not finish within the grace period; it resumes at next start");
    }
    // Flush what the outbox still holds, bounded.
    let flush = engine.resume();
    if tokio::time::timeout(SHUTDOWN_GRACE, flush).await.is_err() {
        warn!("outbox flush timed out; pending effects resume at next start");
    }
}

async fn node_events(
    engine: Arc<Engine>,
    node: Arc<dyn LightningNode>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut work = JoinSet::new();
    loop {
        let ev = tokio::select! {
            () = stopped(&mut stop) => break,
            ev = node.next_event() => ev,
        };
        match ev {
            Ok(ev) => {
                backoff = Duration::from_millis(200);
                counters.node_connected.store(true, Ordering::Relaxed);
                counters.node_events.fetch_add(1, Ordering::Relaxed);
                let engine = engine.clone();
                // Each event on its own task: a payout that hangs for one order stalls nothing else.
                work.spawn(async move {
                    if let Err(e) = engine.on_node_event(ev).await {
                        warn!(error = %e, "node event not applied");
                    }
                });
                while work.try_join_next().is_some() {}
            },
            Err(e) => {
                counters.node_connected.store(false, Ordering::Relaxed);
                warn!(error = %e, "lightning event stream error; retrying");
                tokio::select! {
                    () = stopped(&mut stop) => break,
                    () = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            },
        }
    }
    while work.join_next().await.is_some() {}
}

async fn scheduler(engine: Arc<Engine>, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let running: Arc<Mutex<HashSet<OrderId>>> = Arc::default();
    let mut work = JoinSet::new();
    let mut every = tokio::time::interval(TICK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            _ = every.tick() => {},
        }
        let due = match engine.due().await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "deadline query failed");
                continue;
            },
        };
        for id in due {
            let fresh = match running.lock() {
                Ok(mut g) => g.insert(id),
                Err(p) => p.into_inner().insert(id),
            };
            if !fresh {
                continue; // still being stepped from an earlier tick
            }
            counters.timeouts.fetch_add(1, Ordering::Relaxed);
            let (engine, running) = (engine.clone(), running.clone());
            work.spawn(async move {
                if let Err(e) = engine.tick_order(id).await {
                    warn!(order_id = %id, error = %e, "deadline not applied");
                }
                match running.lock() {
                    Ok(mut g) => g.remove(&id),
                    Err(p) => p.into_inner().remove(&id),
                };
            });
        }
        while work.try_join_next().is_some() {}
    }
    while work.join_next().await.is_some() {}
}

/// Retries the restart reconciliation of orders whose node state could not be read at start,
/// with a growing pause, until each one succeeded.
async fn recover_later(
    engine: Arc<Engine>,
    mut left: Vec<OrderId>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_secs(2);
    while !left.is_empty() {
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(pause) => {},
        }
        let mut still = Vec::new();
        for id in left {
            if let Err(e) = engine.recover_order(id).await {
                warn!(order_id = %id, error = %e, "reconciliation still failing");
                still.push(id);
            } else {
                info!(order_id = %id, "reconciled");
            }
        }
        left = still;
        pause = (pause * 2).min(Duration::from_secs(60));
    }
}

async fn retries(engine: Arc<Engine>, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let mut work = JoinSet::new();
    // The first round runs at once: it is the restart's resume of the outbox.
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = stopped(&mut stop) => break,
                () = tokio::time::sleep(RESUME_EVERY) => {},
            }
        }
        first = false;
        match engine.pending_effects().await {
            Ok(pending) => {
                for (id, effect) in pending {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    let engine = engine.clone();
                    work.spawn(async move { engine.run_effect(id, effect).await });
                }
            },
            Err(e) => warn!(error = %e, "outbox query failed"),
        }
        while work.try_join_next().is_some() {}
    }
    while work.join_next().await.is_some() {}
}
