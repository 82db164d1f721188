//! The inbound side: subscriptions on every relay, relay supervision, the
//! intake pipeline and mapping. It yields authenticated, decoded requests,
//! each with an [`Ack`], on a channel; it never sees the engine: the daemon's
//! driver decides what handles them and in which order.
//!
//! * One subscription per protocol on every relay, both at once:
//!   `{kinds:[14], #p:[node], since}` and `{kinds:[1059], #p:[node], since}`.
//!   Gift wraps carry a `created_at` pushed up to two days into the past, so
//!   their `since` is two days earlier than the kind-14 one.
//! * Supervision: nostr-sdk reconnects dropped relays; each time a relay is
//!   connected again, and each time it closes one of our subscriptions
//!   (after a backoff doubling from one second), the subscriptions are sent
//!   again with `since` = the newest processed message time minus a margin,
//!   so what was published while we were away is fetched. Events are
//!   deduplicated by id (the intake's replay guard, then the store's).
//! * Requests leave in arrival order (a catch-up's buffered batch oldest
//!   first); the consumer answers each [`Ack`]: a failure not caused by the
//!   request makes the adapter forget the event, so a relay's re-delivery is
//!   processed again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use std::time::Instant;

use mostro_core::engine::Request;
use mostro_core::ports::TransportError;
use mostro_core::wire::map::to_request;
use nostr_sdk::pool::RelayNotification;
use nostr_sdk::{
    Event, Filter, Kind, PublicKey, Relay, RelayMessage, RelayPoolNotification, RelayStatus,
    RelayUrl, SubscriptionId, Timestamp,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::transport::NostrTransport;
use crate::{KIND_GIFT_WRAP, KIND_V2, v1};

/// Subscription id of the kind-14 subscription.
const SUB_V2: &str = "mostro-v2";
/// Subscription id of the gift-wrap subscription.
const SUB_V1: &str = "mostro-v1";
/// How long a catch-up waits for the relay's end of stored events.
const EOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often public events a connected relay has not confirmed are re-sent to it.
const REDELIVER_EVERY: Duration = Duration::from_secs(30);

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

/// Shared state of the driver and the relay watchers.
struct Shared {
    transport: Arc<NostrTransport>,
    node: PublicKey,
    /// Newest processed sender timestamp (never ahead of our clock).
    watermark: AtomicU64,
    /// Newest processed sender timestamp per relay (what each relay delivered), so that a relay
    /// that was away longer than the others is caught up from its own point, not theirs.
    relay_marks: StdMutex<HashMap<RelayUrl, u64>>,
    /// Subscriptions replaying stored events (until their EOSE): their
    /// events are buffered and handled oldest first, because relays return
    /// stored events newest first.
    catching_up: StdMutex<HashMap<(RelayUrl, &'static str), Instant>>,
}

impl Shared {
    /// The two filters for `url`. `since` = the newest sender timestamp that
    /// relay delivered (or, for a relay not heard from in this process, the
    /// newest processed one overall) minus the margin (at least the freshness
    /// window: a client's clock may be that far behind), but never before what
    /// the intake would drop anyway (now minus the catch-up horizon); gift
    /// wraps two days earlier.
    fn filters(&self, url: &RelayUrl) -> (Filter, Filter) {
        let t = &self.transport;
        let intake = &t.config().intake;
        let margin = t
            .config()
            .catch_up_margin_secs
            .max(intake.freshness_secs.unwrap_or(0));
        let floor = t.now().saturating_sub(intake.catch_up_horizon_secs);
        let global = self.watermark.load(Ordering::Relaxed);
        let mark = self.relay_mark(url).map_or(global, |m| m.min(global));
        let since = mark.saturating_sub(margin).max(floor);
        let v2 = Filter::new()
            .kind(Kind::from(KIND_V2))
            .pubkey(self.node)
            .since(Timestamp::from_secs(since));
        let v1 = Filter::new()
            .kind(Kind::from(KIND_GIFT_WRAP))
            .pubkey(self.node)
            .since(Timestamp::from_secs(since.saturating_sub(v1::TWEAK_SECS)));
        (v2, v1)
    }

    fn lock_catch_up(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(RelayUrl, &'static str), Instant>> {
        match self.catching_up.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Marks both subscriptions of a relay as replaying stored events.
    fn start_catch_up(&self, url: &RelayUrl) {
        let mut c = self.lock_catch_up();
        for id in [SUB_V2, SUB_V1] {
            c.insert((url.clone(), id), Instant::now());
        }
    }

    fn is_catching_up(&self, url: &RelayUrl, id: &'static str) -> bool {
        self.lock_catch_up().contains_key(&(url.clone(), id))
    }

    /// Ends a catch-up (EOSE received); `true` if one was running. When both subscriptions of
    /// the relay are done, its mark moves to when they were sent.
    fn end_catch_up(&self, url: &RelayUrl, id: &'static str) -> bool {
        let (started, both_done) = {
            let mut c = self.lock_catch_up();
            let started = c.remove(&(url.clone(), id));
            let both = [SUB_V2, SUB_V1]
                .iter()
                .all(|s| !c.contains_key(&(url.clone(), *s)));
            (started, both)
        };
        if let Some(t) = started {
            if both_done {
                let at = self
                    .transport
                    .now()
                    .saturating_sub(t.elapsed().as_secs().saturating_add(1));
                self.caught_up_to(url, at);
            }
            true
        } else {
            false
        }
    }

    /// Ends the catch-ups that waited too long for their EOSE.
    fn overdue_catch_ups(&self) -> Vec<(RelayUrl, &'static str)> {
        let mut c = self.lock_catch_up();
        let overdue: Vec<_> = c
            .iter()
            .filter(|(_, t)| t.elapsed() > EOSE_TIMEOUT)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &overdue {
            c.remove(k);
        }
        overdue
    }

    async fn subscribe(&self, url: &RelayUrl) {
        self.start_catch_up(url);
        let (f2, f1) = self.filters(url);
        let client = self.transport.client();
        for (id, filter) in [(SUB_V2, f2), (SUB_V1, f1)] {
            let sub = SubscriptionId::new(id);
            match client
                .subscribe_with_id_to([url.clone()], sub, filter, None)
                .await
            {
                Ok(out) if out.failed.is_empty() => debug!(relay = %url, sub = id, "subscribed"),
                Ok(out) => {
                    debug!(relay = %url, sub = id, failed = ?out.failed, "subscription queued")
                },
                Err(e) => warn!(relay = %url, sub = id, error = %e, "subscribe failed"),
            }
        }
    }

    fn lock_marks(&self) -> std::sync::MutexGuard<'_, HashMap<RelayUrl, u64>> {
        match self.relay_marks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn relay_mark(&self, url: &RelayUrl) -> Option<u64> {
        self.lock_marks().get(url).copied()
    }

    /// `url` delivered an event with sender time `created_at` (never ahead of our clock).
    fn advance(&self, url: &RelayUrl, created_at: u64) {
        let at = created_at.min(self.transport.now());
        self.watermark.fetch_max(at, Ordering::Relaxed);
        let mut m = self.lock_marks();
        let e = m.entry(url.clone()).or_insert(at);
        *e = (*e).max(at);
    }

    /// `url` finished replaying its stored events: it has given us everything up to the
    /// subscription, so its mark moves there even when nothing new came.
    fn caught_up_to(&self, url: &RelayUrl, at: u64) {
        let mut m = self.lock_marks();
        let e = m.entry(url.clone()).or_insert(at);
        *e = (*e).max(at);
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
    let shared = Arc::new(Shared {
        node: transport.keys().public_key(),
        watermark: AtomicU64::new(from),
        relay_marks: StdMutex::new(HashMap::new()),
        transport: transport.clone(),
        catching_up: StdMutex::new(HashMap::new()),
    });
    let mut watchers = JoinSet::new();
    for (url, relay) in client.relays().await {
        shared.subscribe(&url).await;
        watchers.spawn(watch_relay(shared.clone(), url, relay));
    }
    watchers.spawn(redeliver(transport.clone()));
    info!(relays = watchers.len(), node = %shared.node, "inbound started");
    let mut buffers: HashMap<(RelayUrl, &'static str), Vec<(u64, Request)>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    'intake: loop {
        let n = tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                for key in shared.overdue_catch_ups() {
                    warn!(relay = %key.0, sub = key.1, "no end of stored events; handling what arrived");
                    for req in drain_sorted(&mut buffers, &key) {
                        if !hand_over(req, &transport, &out) {
                            break 'intake;
                        }
                    }
                }
                continue;
            },
            n = notifications.recv() => n,
        };
        match n {
            Ok(RelayPoolNotification::Message {
                relay_url,
                message:
                    RelayMessage::Event {
                        subscription_id,
                        event,
                    },
            }) => {
                let Some(sub) = our_sub(subscription_id.as_str()) else {
                    continue;
                };
                let stats = &transport.stats;
                stats.events.fetch_add(1, Ordering::Relaxed);
                let stored = shared.is_catching_up(&relay_url, sub);
                // A catch-up returns mostly what was already handled (the margin, the other
                // relays' copies, gift wraps backdated two days): the store's replay guard drops
                // those by outer id before any decryption.
                if stored && transport.processed(&event.id).await {
                    stats.already_processed.fetch_add(1, Ordering::Relaxed);
                    stats.drop_for("already_processed");
                    continue;
                }
                let (created_at, req) = match intake(&shared, &relay_url, &event, stored) {
                    Ok(r) => r,
                    Err(reason) => {
                        stats.drop_for(reason);
                        continue;
                    },
                };
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if stored {
                    stats.caught_up.fetch_add(1, Ordering::Relaxed);
                    buffers
                        .entry((relay_url, sub))
                        .or_default()
                        .push((created_at, req));
                } else if !hand_over(req, &transport, &out) {
                    break 'intake;
                }
            },
            Ok(RelayPoolNotification::Message {
                relay_url,
                message: RelayMessage::EndOfStoredEvents(subscription_id),
            }) => {
                let Some(sub) = our_sub(subscription_id.as_str()) else {
                    continue;
                };
                if shared.end_catch_up(&relay_url, sub) {
                    for req in drain_sorted(&mut buffers, &(relay_url.clone(), sub)) {
                        if !hand_over(req, &transport, &out) {
                            break 'intake;
                        }
                    }
                }
            },
            Ok(RelayPoolNotification::Shutdown) => break,
            Ok(_) => {},
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "inbound lagged; re-subscribing to catch up");
                for (url, _) in client.relays().await {
                    if let Ok(relay) = client.relay(&url).await
                        && relay.is_connected()
                    {
                        shared.subscribe(&url).await;
                    }
                }
            },
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    watchers.abort_all();
    info!("inbound stopped");
    Ok(())
}

/// Our subscription id as a static string.
fn our_sub(id: &str) -> Option<&'static str> {
    match id {
        SUB_V2 => Some(SUB_V2),
        SUB_V1 => Some(SUB_V1),
        _ => None,
    }
}

/// The buffered requests of a catch-up, oldest sender timestamp first
/// (stable: ties keep their arrival order).
fn drain_sorted(
    buffers: &mut HashMap<(RelayUrl, &'static str), Vec<(u64, Request)>>,
    key: &(RelayUrl, &'static str),
) -> Vec<Request> {
    let mut batch = buffers.remove(key).unwrap_or_default();
    // Relays replay stored events newest first and timestamps have one-second resolution:
    // within a second, a sender's trade index (which must grow) gives the order.
    batch.sort_by_key(|(t, r)| (*t, r.trade_index.unwrap_or(0)));
    batch.into_iter().map(|(_, r)| r).collect()
}

/// The intake pipeline and the mapping: the sender timestamp and the
/// request, or `None` when the event is dropped.
/// `stored`: the event came during a catch-up (from the relay's storage). `Err`: why it was
/// dropped (the intake's or the mapping's reason label).
fn intake(
    shared: &Shared,
    url: &RelayUrl,
    event: &Event,
    stored: bool,
) -> Result<(u64, Request), &'static str> {
    let t = &shared.transport;
    let now = t.now();
    let opened = {
        let mut intake = match t.intake.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if stored {
            intake.accept_stored(event, t.keys(), now)
        } else {
            intake.accept(event, t.keys(), now)
        }
    };
    let opened = match opened {
        Ok(o) => o,
        Err(drop) => {
            debug!(id = %event.id, reason = drop.as_str(), "event dropped");
            return Err(drop.as_str());
        },
    };
    shared.advance(url, opened.created_at);
    match to_request(&opened.message, &opened.inbound()) {
        Ok(req) => Ok((opened.created_at, req)),
        Err(d) => {
            debug!(id = %event.id, reason = d.reason.as_str(), action = %d.action, "message dropped");
            Err(d.reason.as_str())
        },
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

/// Watches one relay: re-subscribes with a catch-up `since` whenever it
/// (re)connects, and after a backoff when it closes a subscription.
async fn watch_relay(shared: Arc<Shared>, url: RelayUrl, relay: Relay) {
    let mut notes = relay.notifications();
    let max = shared.transport.config().max_resubscribe_backoff;
    let mut backoff = Duration::from_secs(1);
    loop {
        match notes.recv().await {
            Ok(RelayNotification::RelayStatus {
                status: RelayStatus::Connected,
            }) => {
                info!(relay = %url, "relay connected; subscribing");
                backoff = Duration::from_secs(1);
                shared.subscribe(&url).await;
                // It may have missed (or lost) public events while away: compare and re-send,
                // off this watcher so a slow relay answer does not delay the subscriptions.
                let (t, u) = (shared.transport.clone(), url.clone());
                tokio::spawn(async move {
                    t.reconcile_relay(&u, true).await;
                });
            },
            Ok(RelayNotification::RelayStatus { status }) => {
                debug!(relay = %url, %status, "relay status");
                if matches!(status, RelayStatus::Disconnected | RelayStatus::Terminated) {
                    // The pool re-sends our subscriptions as soon as it is
                    // back: buffer what it replays until the end of stored
                    // events.
                    shared.start_catch_up(&url);
                }
            },
            Ok(RelayNotification::Message {
                message:
                    RelayMessage::Closed {
                        subscription_id,
                        message,
                    },
            }) if matches!(subscription_id.as_str(), SUB_V2 | SUB_V1) => {
                warn!(relay = %url, sub = %subscription_id, reason = %message, wait = ?backoff, "subscription closed by relay");
                shared.start_catch_up(&url);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use crate::TransportConfig;
    use mostro_core::ports::Clock;
    use mostro_core::types::Timestamp as CoreTime;

    struct At(u64);
    impl Clock for At {
        fn now(&self) -> CoreTime {
            CoreTime(self.0)
        }
    }

    const T: u64 = 1_800_000_000;

    fn shared(watermark: u64) -> Shared {
        let keys = nostr_sdk::Keys::generate();
        let mut config = TransportConfig::new(&keys, Vec::new());
        config.catch_up_margin_secs = 10;
        config.intake.freshness_secs = Some(10);
        config.intake.catch_up_horizon_secs = 3600;
        let transport = Arc::new(NostrTransport::new(keys, config, Arc::new(At(T)), None));
        Shared {
            node: transport.keys().public_key(),
            watermark: AtomicU64::new(watermark),
            relay_marks: StdMutex::new(HashMap::new()),
            transport,
            catching_up: StdMutex::new(HashMap::new()),
        }
    }

    fn since(s: &Shared, url: &RelayUrl) -> (u64, u64) {
        let (v2, v1) = s.filters(url);
        (v2.since.unwrap().as_secs(), v1.since.unwrap().as_secs())
    }

    #[test]
    fn a_relay_away_longer_is_caught_up_from_its_own_mark() {
        let a = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
        let b = RelayUrl::parse("ws://127.0.0.1:2").unwrap();
        let c = RelayUrl::parse("ws://127.0.0.1:3").unwrap();
        let s = shared(T - 600);
        // B last delivered something 500 s ago; A is current.
        s.advance(&b, T - 500);
        s.advance(&a, T - 5);
        assert_eq!(s.watermark.load(Ordering::Relaxed), T - 5);
        assert_eq!(since(&s, &a).0, T - 15);
        assert_eq!(since(&s, &b).0, T - 510, "B from its own mark");
        assert_eq!(
            since(&s, &b).1,
            T - 510 - v1::TWEAK_SECS,
            "gift wraps two days earlier"
        );
        assert_eq!(
            since(&s, &c).0,
            T - 15,
            "a relay not heard from: the overall mark"
        );
        // A sender clock ahead of ours does not move a mark past now.
        s.advance(&a, T + 100);
        assert_eq!(since(&s, &a).0, T - 10);
        // B finished replaying both subscriptions: it is current up to when they were sent.
        s.start_catch_up(&b);
        assert!(s.end_catch_up(&b, SUB_V2));
        assert_eq!(since(&s, &b).0, T - 510, "one subscription still replaying");
        assert!(s.end_catch_up(&b, SUB_V1));
        assert!(since(&s, &b).0 >= T - 12, "{:?}", since(&s, &b));
        // Never earlier than the horizon.
        let old = shared(T - 10_000);
        assert_eq!(since(&old, &c).0, T - 3600);
    }
}
