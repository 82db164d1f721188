//! The two lanes an inbound event takes after its subscription is known.
//!
//! * **Live** (a subscription whose stored events are all in): the cheap checks run on the
//!   driver, in arrival order; verification and decryption run as their own task, on any core;
//!   the [`sequence`] task takes the results in arrival order, runs the last checks and hands the
//!   requests over. So a sender's requests leave in the order the relay delivered them, however
//!   the opening tasks were scheduled.
//! * **Catch-up** (what a relay returns before the end of stored events of our current REQ):
//!   order does not matter while it is collected (relays return stored events newest first; the
//!   batch is sorted oldest first when it is complete), so each event is checked against the
//!   store's replay guard and opened as its own task, at most `catch_up_parallel` at a time and
//!   `catch_up_rate` per second, beside the live lane rather than in front of it. The batch leaves
//!   when the relay said it sent everything (or the wait ran out) and every task of it finished;
//!   an event arriving on that subscription before then joins the batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mostro_core::engine::Request;
use mostro_core::wire::map::to_request;
use nostr_sdk::{Event, RelayUrl};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::subs::{Key, Proto, Shared};
use crate::Unwrapped;
use crate::intake::{IntakeDrop, open};

/// A live event and how its opening went.
type Opened = (Box<Event>, Result<Unwrapped, IntakeDrop>);

/// A live event opened on the driver, or being opened as its own task.
pub(crate) enum Opening {
    /// Opened in place (nothing else was waiting: a task would only add a thread hop).
    Done(Box<Opened>),
    /// Being opened on another core (a backlog was waiting).
    Task(JoinHandle<Opened>),
}

/// What the sequencer gets, in the driver's order.
pub(crate) enum Step {
    /// A live event.
    Live(RelayUrl, Opening),
    /// A complete catch-up batch, oldest first.
    Batch(Vec<Request>),
}

/// The result of one catch-up task.
pub(crate) struct Done {
    key: Key,
    result: Result<(u64, Request), &'static str>,
}

fn lock_intake(shared: &Shared) -> std::sync::MutexGuard<'_, crate::intake::Intake> {
    match shared.transport.intake.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn dropped(event: &Event, d: &IntakeDrop) -> &'static str {
    debug!(id = %event.id, reason = d.as_str(), "event dropped");
    d.as_str()
}

/// The mapping, after the intake accepted an event.
fn map(
    shared: &Shared,
    url: &RelayUrl,
    event: &Event,
    opened: &Unwrapped,
) -> Result<(u64, Request), &'static str> {
    shared.advance(url, opened.created_at);
    match to_request(&opened.message, &opened.inbound()) {
        Ok(req) => Ok((opened.created_at, req)),
        Err(d) => {
            debug!(id = %event.id, reason = d.reason.as_str(), action = %d.action, "message dropped");
            Err(d.reason.as_str())
        },
    }
}

/// The live lane's first half, on the driver: the cheap checks, then the opening, as its own task
/// when `backlog` (more events wait behind this one: open them on all cores), else in place.
/// `Err`: dropped, with the reason label.
pub(crate) fn start_live(
    shared: &Shared,
    event: Box<Event>,
    backlog: bool,
) -> Result<Opening, &'static str> {
    let now = shared.transport.now();
    if let Err(d) = lock_intake(shared).precheck(&event, now) {
        return Err(dropped(&event, &d));
    }
    if !backlog {
        let opened = open(&event, &shared.keys);
        return Ok(Opening::Done(Box::new((event, opened))));
    }
    let keys = shared.keys.clone();
    Ok(Opening::Task(tokio::spawn(async move {
        let opened = open(&event, &keys);
        (event, opened)
    })))
}

/// The live lane's second half: the last checks (own reply, freshness, rate token) and the
/// mapping; the request to hand over, or `None` (dropped, counted).
pub(crate) fn finish_live(shared: &Shared, url: &RelayUrl, opened: Opened) -> Option<Request> {
    let (event, opened) = opened;
    let stats = &shared.transport.stats;
    let now = shared.transport.now();
    let accepted =
        opened.and_then(|o| lock_intake(shared).finish(&event, o, &shared.keys, now, false));
    let mapped = match accepted {
        Ok(o) => map(shared, url, &event, &o),
        Err(d) => Err(dropped(&event, &d)),
    };
    match mapped {
        Ok((_, req)) => {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            Some(req)
        },
        Err(reason) => {
            stats.drop_for(reason);
            None
        },
    }
}

/// Takes the lane's results in the driver's order and hands the requests to the consumer; ends
/// when the driver is gone or the consumer is. Each step is counted off
/// [`Shared::in_sequencer`] once handed over.
pub(crate) async fn sequence(
    shared: Arc<Shared>,
    mut steps: mpsc::Receiver<Step>,
    hand_over: impl Fn(Request) -> bool,
) {
    while let Some(step) = steps.recv().await {
        let alive = match step {
            Step::Live(url, opening) => {
                let opened = match opening {
                    Opening::Done(o) => Some(*o),
                    Opening::Task(task) => task.await.ok(),
                };
                opened
                    .and_then(|o| finish_live(&shared, &url, o))
                    .is_none_or(&hand_over)
            },
            Step::Batch(batch) => batch.into_iter().all(&hand_over),
        };
        shared.in_sequencer.fetch_sub(1, Ordering::AcqRel);
        if !alive {
            return;
        }
    }
}

/// One stored event: the store's replay guard by outer id (no decryption for what was handled),
/// then the whole intake judged by the catch-up horizon, then the mapping.
async fn open_stored(
    shared: &Shared,
    url: &RelayUrl,
    event: &Event,
) -> Result<(u64, Request), &'static str> {
    let t = &shared.transport;
    if t.processed(&event.id).await {
        return Err("already_processed");
    }
    let now = t.now();
    if let Err(d) = lock_intake(shared).precheck(event, now) {
        return Err(dropped(event, &d));
    }
    let opened = open(event, &shared.keys).map_err(|d| dropped(event, &d))?;
    let opened = lock_intake(shared)
        .finish(event, opened, &shared.keys, now, true)
        .map_err(|d| dropped(event, &d))?;
    map(shared, url, event, &opened)
}

/// A catch-up being collected for one relay subscription.
struct Batch {
    /// The newest generation that fed it (an older one's events join a newer one's batch).
    generation: u64,
    requests: Vec<(u64, Request)>,
    queued: usize,
    running: usize,
    /// The relay said it sent every stored event (or the wait ran out).
    complete: bool,
}

/// The catch-up lane: the queue of stored events, the tasks opening them, the batches.
pub(crate) struct CatchUp {
    shared: Arc<Shared>,
    batches: HashMap<Key, Batch>,
    queue: VecDeque<(Key, Box<Event>)>,
    running: usize,
    parallel: usize,
    /// Openings per second (0: unbounded) and the token bucket.
    rate: u32,
    tokens: f64,
    refilled: Instant,
    done_tx: mpsc::UnboundedSender<Done>,
    /// Finished batches not yet sent to the sequencer.
    finished: Vec<Vec<Request>>,
}

impl CatchUp {
    pub(crate) fn new(
        shared: Arc<Shared>,
        parallel: usize,
        rate: u32,
        done_tx: mpsc::UnboundedSender<Done>,
    ) -> Self {
        let parallel = parallel.max(1);
        CatchUp {
            shared,
            batches: HashMap::new(),
            queue: VecDeque::new(),
            running: 0,
            parallel,
            rate,
            tokens: burst(parallel, rate),
            refilled: Instant::now(),
            done_tx,
            finished: Vec::new(),
        }
    }

    /// Whether (`url`, `proto`) has a batch still being collected (later events join it).
    pub(crate) fn collecting(&self, url: &RelayUrl, proto: Proto) -> bool {
        self.batches.contains_key(&(url.clone(), proto))
    }

    fn batch(&mut self, key: &Key, generation: u64) -> &mut Batch {
        let b = self.batches.entry(key.clone()).or_insert(Batch {
            generation,
            requests: Vec::new(),
            queued: 0,
            running: 0,
            complete: false,
        });
        if b.generation < generation {
            // A newer REQ: the batch now waits for its end of stored events.
            b.generation = generation;
            b.complete = false;
        }
        b
    }

    /// A stored event of (`url`, `proto`, `generation`).
    pub(crate) fn push(&mut self, url: RelayUrl, proto: Proto, generation: u64, event: Box<Event>) {
        let key = (url, proto);
        self.batch(&key, generation).queued += 1;
        self.queue.push_back((key, event));
    }

    /// The relay's end of stored events for `generation`.
    pub(crate) fn end_of_stored(&mut self, url: RelayUrl, proto: Proto, generation: u64) {
        let key = (url, proto);
        let b = self.batch(&key, generation);
        if b.generation == generation {
            b.complete = true;
        }
        self.try_finish(&key);
    }

    /// Once a second: ends the waits that ran out, and follows superseded REQs.
    pub(crate) fn on_tick(&mut self, eose_timeout: Duration) {
        let keys: Vec<Key> = self.batches.keys().cloned().collect();
        for key in keys {
            let Some(current) = self.shared.current(&key.0, key.1) else {
                continue;
            };
            let overdue = self
                .shared
                .sent_ago(&key.0, key.1, current)
                .is_some_and(|s| s > eose_timeout.as_secs());
            if let Some(b) = self.batches.get_mut(&key) {
                if b.generation < current {
                    b.generation = current;
                    b.complete = false;
                }
                if overdue && !b.complete {
                    warn!(relay = %key.0, "no end of stored events; handling what arrived");
                    b.complete = true;
                }
            }
            self.try_finish(&key);
        }
        // A subscription that never answered with its end of stored events and sent nothing:
        // count it caught up, so its events are live.
        for (url, proto, generation) in self.shared.overdue(eose_timeout) {
            if !self.collecting(&url, proto) {
                self.shared.caught_up(&url, proto, generation);
            }
        }
    }

    /// A catch-up task finished.
    pub(crate) fn on_done(&mut self, done: Done) {
        self.running = self.running.saturating_sub(1);
        let stats = &self.shared.transport.stats;
        if let Some(b) = self.batches.get_mut(&done.key) {
            b.running = b.running.saturating_sub(1);
            match done.result {
                Ok(r) => {
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    stats.caught_up.fetch_add(1, Ordering::Relaxed);
                    b.requests.push(r);
                },
                Err(reason) => {
                    if reason == "already_processed" {
                        stats.already_processed.fetch_add(1, Ordering::Relaxed);
                    }
                    stats.drop_for(reason);
                },
            }
        }
        self.try_finish(&done.key);
    }

    fn try_finish(&mut self, key: &Key) {
        let ready = self
            .batches
            .get(key)
            .is_some_and(|b| b.complete && b.queued == 0 && b.running == 0);
        if !ready {
            return;
        }
        if let Some(b) = self.batches.remove(key) {
            self.shared.caught_up(&key.0, key.1, b.generation);
            let mut requests = b.requests;
            // Relays replay stored events newest first and timestamps have one-second
            // resolution: within a second, a sender's trade index (which must grow) gives the
            // order. Stable: ties keep their arrival order.
            requests.sort_by_key(|(t, r)| (*t, r.trade_index.unwrap_or(0)));
            if !requests.is_empty() {
                self.finished
                    .push(requests.into_iter().map(|(_, r)| r).collect());
            }
        }
    }

    /// Complete batches, to send to the sequencer.
    pub(crate) fn take_finished(&mut self) -> Vec<Vec<Request>> {
        std::mem::take(&mut self.finished)
    }

    fn refill(&mut self) {
        if self.rate == 0 {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens =
            (self.tokens + dt * f64::from(self.rate)).min(burst(self.parallel, self.rate));
    }

    /// Starts queued openings as far as the parallelism and the rate allow.
    pub(crate) fn dispatch(&mut self) {
        self.refill();
        while self.running < self.parallel && (self.rate == 0 || self.tokens >= 1.0) {
            let Some((key, event)) = self.queue.pop_front() else {
                break;
            };
            if self.rate > 0 {
                self.tokens -= 1.0;
            }
            self.running += 1;
            if let Some(b) = self.batches.get_mut(&key) {
                b.queued = b.queued.saturating_sub(1);
                b.running += 1;
            }
            let shared = self.shared.clone();
            let tx = self.done_tx.clone();
            tokio::spawn(async move {
                let result = open_stored(&shared, &key.0, &event).await;
                let _ = tx.send(Done { key, result });
            });
        }
    }

    /// When the rate allows the next opening, if one waits for it.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        if self.rate == 0 || self.queue.is_empty() || self.running >= self.parallel {
            return None;
        }
        let missing = (1.0 - self.tokens).max(0.0);
        Some(self.refilled + Duration::from_secs_f64(missing / f64::from(self.rate)))
    }
}

/// The bucket size: a tenth of a second's worth, at least one per core.
fn burst(parallel: usize, rate: u32) -> f64 {
    (f64::from(rate) / 10.0).max(parallel as f64)
}
