//! The inbound side: subscriptions on every relay, relay supervision, the
//! intake pipeline and mapping. It yields authenticated, decoded requests,
//! each with an [`Ack`], on a channel; it never sees the engine: the daemon's
//! driver decides what handles them and in which order.
//!
//! * One subscription per protocol on every relay, both at once:
//!   `{kinds:[14], #p:[node], since}` and `{kinds:[1059], #p:[node], since}`.
//!   Gift wraps carry a `created_at` pushed up to two days into the past, so
//!   their `since` is two days earlier than the kind-14 one.
//! * Supervision: each time a relay is connected (again), and each time it closes one of our
//!   subscriptions (after a backoff doubling from one second), a new generation of both
//!   subscriptions is sent with `since` = that relay's mark minus a margin, so what was
//!   published while we were away is fetched ([`subs`]). Events are deduplicated by id (the
//!   intake's replay guard, then the store's). Each relay's mark is kept in the node's records
//!   every few seconds and read back at start.
//! * Two lanes ([`lanes`]): live events are opened on any core and leave in arrival order; a
//!   catch-up is opened beside them, bounded in parallelism and rate, and leaves as one batch
//!   oldest first. The consumer answers each [`Ack`]: a failure not caused by the request makes
//!   the adapter forget the event, so a relay's re-delivery is processed again.

mod lanes;
mod subs;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mostro_core::engine::Request;
use mostro_core::ports::TransportError;
use nostr_sdk::pool::RelayNotification;
use nostr_sdk::{Relay, RelayMessage, RelayPoolNotification, RelayStatus, RelayUrl};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::transport::NostrTransport;
use lanes::{CatchUp, Step};
use subs::{Proto, Shared};

/// How long a catch-up waits for the relay's end of stored events.
const EOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often public events a connected relay has not confirmed are re-sent to it.
const REDELIVER_EVERY: Duration = Duration::from_secs(30);
/// Live events being opened at most (the driver waits for the sequencer beyond that).
const LIVE_IN_FLIGHT: usize = 256;
/// How often changed relay marks (and public events still owed) are written to the records.
const SAVE_MARKS_EVERY: Duration = Duration::from_secs(5);
/// How often the known trade keys are rebuilt from the records (as the reference: 60 s).
const REFRESH_KNOWN_EVERY: Duration = Duration::from_secs(60);
/// The records' key of the relay marks.
pub(crate) const MARKS_KEY: &str = "nostr.relay_marks";

/// One authenticated, decoded request and the handle that tells the adapter how it ended.
pub type Delivered = (Request, Ack);

/// How a delivered request ended, for the adapter's replay guard. Dropping it counts as
/// [`Ack::handled`].
#[derive(Debug)]
pub struct Ack {
    transport: Arc<NostrTransport>,
    event: Option<nostr_sdk::EventId>,
}

impl Ack {
    /// The request was handled (applied, refused or a duplicate): its event stays in the
    /// replay guard and a re-delivery is dropped.
    pub fn handled(self) {}

    /// The request could not be handled for a reason that is not its own (a store or node
    /// failure): the event is forgotten, so that a relay delivering it again gets it
    /// processed.
    pub fn failed(self) {
        if let Some(id) = self.event {
            let mut intake = match self.transport.intake.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            intake.forget(&id);
        }
    }
}

/// Runs the inbound side until `shutdown` completes (or the receiver of `out` is gone):
/// subscribes on every relay, supervises them, and sends every accepted request on `out`.
///
/// # Errors
///
/// [`TransportError`] if the relays cannot be set up.
pub async fn run_intake<F>(
    transport: Arc<NostrTransport>,
    out: mpsc::UnboundedSender<Delivered>,
    shutdown: F,
) -> Result<(), TransportError>
where
    F: Future<Output = ()> + Send,
{
    let client = transport.client().clone();
    let mut notifications = client.notifications();
    // Idempotent: adds the configured relays if the caller did not.
    transport.connect().await?;
    let start = transport.now();
    let window = transport.config().intake.freshness_secs.unwrap_or(0);
    // Resume from the newest request the store recorded (never ahead of now), so requests
    // sent while the daemon was down are fetched; a fresh node starts a window back.
    let from = transport
        .config()
        .resume_from
        .map_or(start.saturating_sub(window), |t| t.min(start));
    let marks = load_marks(&transport).await;
    transport.load_delivery().await;
    // Before the first catch-up: a stored request of a known trade key must not be taken for a
    // first contact.
    transport.refresh_known().await;
    let shared = Arc::new(Shared::new(transport.clone(), from, marks));
    let (steps, steps_rx) = mpsc::channel::<Step>(LIVE_IN_FLIGHT);
    let give = {
        let (transport, out) = (transport.clone(), out.clone());
        move |req| hand_over(req, &transport, &out)
    };
    let sequencer = tokio::spawn(lanes::sequence(shared.clone(), steps_rx, give));
    let mut watchers = JoinSet::new();
    for (url, relay) in client.relays().await {
        watchers.spawn(watch_relay(shared.clone(), url, relay));
    }
    watchers.spawn(redeliver(transport.clone()));
    watchers.spawn(save_marks_every(shared.clone()));
    watchers.spawn(refresh_known_every(transport.clone()));
    info!(relays = watchers.len().saturating_sub(3), node = %shared.node, "inbound started");
    let config = transport.config();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut catch_up = CatchUp::new(
        shared.clone(),
        config.catch_up_parallel,
        config.catch_up_rate,
        done_tx,
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let far = Duration::from_secs(3600);
    tokio::pin!(shutdown);
    'intake: loop {
        let wake = catch_up.wake_at();
        let wake_at = wake.unwrap_or_else(|| tokio::time::Instant::now() + far);
        let n = tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                catch_up.on_tick(EOSE_TIMEOUT);
                None
            },
            Some(done) = done_rx.recv() => {
                catch_up.on_done(done);
                None
            },
            () = tokio::time::sleep_until(wake_at), if wake.is_some() => None,
            n = notifications.recv() => Some(n),
        };
        if let Some(n) = n {
            match n {
                Ok(RelayPoolNotification::Message {
                    relay_url,
                    message:
                        RelayMessage::Event {
                            subscription_id,
                            event,
                        },
                }) => {
                    let Some((proto, generation)) = Proto::parse(subscription_id.as_str()) else {
                        continue;
                    };
                    // A superseded or retired REQ (one nostr-sdk re-sent by itself, say): the
                    // current one returns the same events.
                    let stats = &transport.stats;
                    if !shared.is_current(&relay_url, proto, generation) {
                        stats.superseded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    stats.events.fetch_add(1, Ordering::Relaxed);
                    let event = Box::new(event.into_owned());
                    let live = shared.is_caught_up(&relay_url, proto, generation)
                        && !catch_up.collecting(&relay_url, proto);
                    if live {
                        let backlog = !notifications.is_empty();
                        match lanes::start_live(&shared, event, backlog) {
                            // Opened in place and nothing waits in the sequencer: hand it over
                            // here (one task hop less), nothing earlier can be overtaken.
                            Ok(lanes::Opening::Done(opened))
                                if shared.in_sequencer.load(Ordering::Acquire) == 0 =>
                            {
                                if let Some(req) = lanes::finish_live(&shared, &relay_url, *opened)
                                    && !hand_over(req, &transport, &out)
                                {
                                    break 'intake;
                                }
                            },
                            Ok(opening) => {
                                shared.in_sequencer.fetch_add(1, Ordering::AcqRel);
                                if steps.send(Step::Live(relay_url, opening)).await.is_err() {
                                    break 'intake;
                                }
                            },
                            Err(reason) => stats.drop_for(reason),
                        }
                    } else {
                        catch_up.push(relay_url, proto, generation, event);
                    }
                },
                Ok(RelayPoolNotification::Message {
                    relay_url,
                    message: RelayMessage::EndOfStoredEvents(subscription_id),
                }) => {
                    if let Some((proto, generation)) = Proto::parse(subscription_id.as_str())
                        && shared.is_current(&relay_url, proto, generation)
                    {
                        catch_up.end_of_stored(relay_url, proto, generation);
                    }
                },
                Ok(RelayPoolNotification::Shutdown) => break,
                Ok(_) => {},
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "inbound lagged; re-subscribing to catch up");
                    for (url, relay) in client.relays().await {
                        if relay.is_connected() {
                            shared.subscribe(&url).await;
                        }
                    }
                },
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        catch_up.dispatch();
        for batch in catch_up.take_finished() {
            shared.in_sequencer.fetch_add(1, Ordering::AcqRel);
            if steps.send(Step::Batch(batch)).await.is_err() {
                break 'intake;
            }
        }
    }
    watchers.abort_all();
    drop(steps);
    let _ = sequencer.await;
    save_marks(&shared).await;
    transport.save_delivery().await;
    info!("inbound stopped");
    Ok(())
}

/// The relay marks the records kept (unknown or unreadable: none).
async fn load_marks(transport: &NostrTransport) -> HashMap<RelayUrl, u64> {
    let Some(raw) = transport.load_state(MARKS_KEY).await else {
        return HashMap::new();
    };
    match serde_json::from_str::<HashMap<String, u64>>(&raw) {
        Ok(m) => m
            .into_iter()
            .filter_map(|(u, t)| RelayUrl::parse(&u).ok().map(|u| (u, t)))
            .collect(),
        Err(e) => {
            warn!(error = %e, "relay marks unreadable; starting from the store's newest request");
            HashMap::new()
        },
    }
}

async fn save_marks(shared: &Shared) {
    let marks: HashMap<String, u64> = shared
        .marks()
        .into_iter()
        .map(|(u, t)| (u.to_string(), t))
        .collect();
    if let Ok(raw) = serde_json::to_string(&marks) {
        shared.transport.save_state(MARKS_KEY, &raw).await;
    }
}

/// Rebuilds the known trade keys (first-contact proof of work) every [`REFRESH_KNOWN_EVERY`].
async fn refresh_known_every(transport: Arc<NostrTransport>) {
    let mut tick = tokio::time::interval(REFRESH_KNOWN_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        transport.refresh_known().await;
    }
}

/// Writes the relay marks and what relays still lack to the records when they changed, every
/// [`SAVE_MARKS_EVERY`].
async fn save_marks_every(shared: Arc<Shared>) {
    let mut last = shared.marks();
    let mut tick = tokio::time::interval(SAVE_MARKS_EVERY);
    loop {
        tick.tick().await;
        let now = shared.marks();
        if now != last {
            save_marks(&shared).await;
            last = now;
        }
        shared.transport.save_delivery().await;
    }
}

/// Sends one request to the consumer; `false` when the consumer is gone.
fn hand_over(
    request: Request,
    transport: &Arc<NostrTransport>,
    out: &mpsc::UnboundedSender<Delivered>,
) -> bool {
    let ack = Ack {
        transport: transport.clone(),
        event: request
            .event_id
            .map(|id| nostr_sdk::EventId::from_byte_array(id.0)),
    };
    out.send((request, ack)).is_ok()
}

/// Every [`REDELIVER_EVERY`], re-sends public events to the connected relays that have not
/// confirmed them (one refused or timed out while the others took it).
async fn redeliver(transport: Arc<NostrTransport>) {
    let mut tick = tokio::time::interval(REDELIVER_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        for url in transport.relays_owed() {
            let connected = match transport.client().relay(&url).await {
                Ok(r) => r.is_connected(),
                Err(_) => false,
            };
            if connected {
                transport.reconcile_relay(&url, false).await;
            }
        }
    }
}

/// A relay is connected: a new generation of subscriptions, and the public events it may have
/// missed (or lost) while away are compared and re-sent, off the watcher so a slow relay answer
/// does not delay the subscriptions.
async fn connected(shared: &Shared, url: &RelayUrl) {
    shared.subscribe(url).await;
    let (t, u) = (shared.transport.clone(), url.clone());
    tokio::spawn(async move {
        t.reconcile_relay(&u, true).await;
    });
}

/// Watches one relay: re-subscribes with a catch-up `since` whenever it
/// (re)connects, and after a backoff when it closes a subscription.
async fn watch_relay(shared: Arc<Shared>, url: RelayUrl, relay: Relay) {
    let mut notes = relay.notifications();
    let max = shared.transport.config().max_resubscribe_backoff;
    let mut backoff = Duration::from_secs(1);
    // Connected before we listened: no notification will say so.
    if relay.is_connected() {
        connected(&shared, &url).await;
    }
    loop {
        match notes.recv().await {
            Ok(RelayNotification::RelayStatus {
                status: RelayStatus::Connected,
            }) => {
                info!(relay = %url, "relay connected; subscribing");
                backoff = Duration::from_secs(1);
                connected(&shared, &url).await;
            },
            Ok(RelayNotification::RelayStatus { status }) => {
                debug!(relay = %url, %status, "relay status");
                if matches!(status, RelayStatus::Disconnected | RelayStatus::Terminated) {
                    // Nothing it sends on the old REQs counts any more; a new generation is
                    // sent once it is back.
                    shared.retire(&url).await;
                }
            },
            Ok(RelayNotification::Message {
                message:
                    RelayMessage::Closed {
                        subscription_id,
                        message,
                    },
            }) => {
                let Some((proto, generation)) = Proto::parse(subscription_id.as_str()) else {
                    continue;
                };
                if !shared.is_current(&url, proto, generation) {
                    continue;
                }
                warn!(relay = %url, sub = %subscription_id, reason = %message, wait = ?backoff, "subscription closed by relay");
                shared.retire(&url).await;
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(max);
                if relay.is_connected() {
                    shared.subscribe(&url).await;
                }
            },
            Ok(RelayNotification::Shutdown) | Err(broadcast::error::RecvError::Closed) => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {},
        }
    }
}
