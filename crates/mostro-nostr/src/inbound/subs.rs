//! Subscription state per relay: which request (REQ) generation is current for each protocol,
//! when it was sent, whether its stored events are all in, and the per-relay marks that say
//! where the next catch-up starts.
//!
//! Every REQ we send gets a fresh subscription id (`mostro-v2-<n>` / `mostro-v1-<n>`), and a
//! relay's events are taken only from its current, active generation. So a REQ that nostr-sdk
//! re-sends by itself after a reconnect, or one we superseded, can never slip its stored events
//! (which relays return newest first) into the live path: what decides "stored or live" is the
//! end of stored events (EOSE) of our own current REQ, nothing else.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nostr_sdk::{Filter, Keys, Kind, PublicKey, RelayUrl, SubscriptionId, Timestamp};
use tracing::{debug, warn};

use crate::transport::NostrTransport;
use crate::{KIND_GIFT_WRAP, KIND_V2, v1};
use std::sync::Arc;

/// The two subscriptions a relay carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Proto {
    /// Kind 14.
    V2,
    /// Gift wraps (kind 1059).
    V1,
}

impl Proto {
    pub(crate) const BOTH: [Proto; 2] = [Proto::V2, Proto::V1];

    fn prefix(self) -> &'static str {
        match self {
            Proto::V2 => "mostro-v2-",
            Proto::V1 => "mostro-v1-",
        }
    }

    /// The subscription id of generation `gen`.
    pub(crate) fn sub_id(self, generation: u64) -> SubscriptionId {
        SubscriptionId::new(format!("{}{generation}", self.prefix()))
    }

    /// Which protocol and generation a subscription id names (`None`: not ours).
    pub(crate) fn parse(id: &str) -> Option<(Proto, u64)> {
        Proto::BOTH.into_iter().find_map(|p| {
            id.strip_prefix(p.prefix())
                .and_then(|n| n.parse().ok())
                .map(|g| (p, g))
        })
    }
}

/// One relay's subscription for one protocol.
#[derive(Clone, Copy, Debug)]
struct Sub {
    generation: u64,
    /// False once the relay disconnected or closed it: its events are ignored until the next REQ.
    active: bool,
    /// When the REQ was sent (monotonic and unix seconds).
    sent: Instant,
    sent_at: u64,
    /// Its stored events have all been handed over.
    caught_up: bool,
}

/// A relay and one of its subscriptions.
pub(crate) type Key = (RelayUrl, Proto);

/// Shared state of the driver and the relay watchers.
pub(crate) struct Shared {
    pub(crate) transport: Arc<NostrTransport>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) node: PublicKey,
    /// Newest processed sender timestamp (never ahead of our clock).
    pub(crate) watermark: AtomicU64,
    /// Per relay: the newest sender timestamp it delivered, or the time its last complete
    /// catch-up was sent, so a relay away longer than the others is caught up from its own point.
    marks: StdMutex<HashMap<RelayUrl, u64>>,
    subs: StdMutex<HashMap<Key, Sub>>,
    next_generation: AtomicU64,
    /// Steps sent to the sequencer and not yet handed over: while there are none, the driver
    /// may hand a live request over itself without overtaking anything.
    pub(crate) in_sequencer: std::sync::atomic::AtomicUsize,
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Shared {
    pub(crate) fn new(
        transport: Arc<NostrTransport>,
        watermark: u64,
        marks: HashMap<RelayUrl, u64>,
    ) -> Self {
        Shared {
            keys: Arc::new(transport.keys().clone()),
            node: transport.keys().public_key(),
            watermark: AtomicU64::new(watermark),
            marks: StdMutex::new(marks),
            subs: StdMutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            in_sequencer: std::sync::atomic::AtomicUsize::new(0),
            transport,
        }
    }

    /// The two filters for `url`. `since` = the newest sender timestamp that relay delivered
    /// (or, for a relay not heard from, the newest processed one overall; never later than
    /// that) minus the margin (at least the freshness window: a client's clock may be that far
    /// behind), but never before what the intake would drop anyway (now minus the catch-up
    /// horizon); gift wraps two days earlier.
    pub(crate) fn filters(&self, url: &RelayUrl) -> (Filter, Filter) {
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

    /// Sends a new REQ generation for both protocols to `url` (each starts a catch-up: what the
    /// relay returns before its EOSE is stored) and closes the generation it replaces.
    pub(crate) async fn subscribe(&self, url: &RelayUrl) {
        let Ok(relay) = self.transport.client().relay(url).await else {
            return;
        };
        let (f2, f1) = self.filters(url);
        for (proto, filter) in [(Proto::V2, f2), (Proto::V1, f1)] {
            let (generation, old) = self.new_generation(url, proto);
            let id = proto.sub_id(generation);
            match relay
                .subscribe_with_id(id.clone(), filter, nostr_sdk::SubscribeOptions::default())
                .await
            {
                Ok(()) => debug!(relay = %url, sub = %id, "subscribed"),
                Err(e) => warn!(relay = %url, sub = %id, error = %e, "subscribe failed"),
            }
            if let Some(old) = old {
                let _ = relay.unsubscribe(&proto.sub_id(old.generation)).await;
            }
        }
    }

    /// Records a new current generation of (`url`, `proto`), sent now; returns it and the one it
    /// replaces.
    fn new_generation(&self, url: &RelayUrl, proto: Proto) -> (u64, Option<Sub>) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let old = lock(&self.subs).insert(
            (url.clone(), proto),
            Sub {
                generation,
                active: true,
                sent: Instant::now(),
                sent_at: self.transport.now(),
                caught_up: false,
            },
        );
        (generation, old)
    }

    /// The relay went away or closed a subscription: its current generations stop counting, and
    /// they are removed from nostr-sdk's own list so it does not re-send them by itself on the
    /// next connection (we send a fresh generation then).
    pub(crate) async fn retire(&self, url: &RelayUrl) {
        let gens: Vec<(Proto, u64)> = {
            let mut s = lock(&self.subs);
            Proto::BOTH
                .into_iter()
                .filter_map(|p| {
                    s.get_mut(&(url.clone(), p)).map(|sub| {
                        sub.active = false;
                        (p, sub.generation)
                    })
                })
                .collect()
        };
        if let Ok(relay) = self.transport.client().relay(url).await {
            for (p, g) in gens {
                // Removes it from the relay's map first; the CLOSE may not go out while
                // disconnected, which is fine.
                let _ = relay.unsubscribe(&p.sub_id(g)).await;
            }
        }
    }

    /// Whether events of `generation` on (`url`, `proto`) count: it is the current, active one.
    pub(crate) fn is_current(&self, url: &RelayUrl, proto: Proto, generation: u64) -> bool {
        lock(&self.subs)
            .get(&(url.clone(), proto))
            .is_some_and(|s| s.active && s.generation == generation)
    }

    /// The current generation of (`url`, `proto`), active or not.
    pub(crate) fn current(&self, url: &RelayUrl, proto: Proto) -> Option<u64> {
        lock(&self.subs)
            .get(&(url.clone(), proto))
            .map(|s| s.generation)
    }

    /// Whether `generation`'s stored events are all handed over (its events are live now).
    pub(crate) fn is_caught_up(&self, url: &RelayUrl, proto: Proto, generation: u64) -> bool {
        lock(&self.subs)
            .get(&(url.clone(), proto))
            .is_some_and(|s| s.generation == generation && s.caught_up)
    }

    /// Seconds since `generation` was sent (`None`: not the current one).
    pub(crate) fn sent_ago(&self, url: &RelayUrl, proto: Proto, generation: u64) -> Option<u64> {
        lock(&self.subs)
            .get(&(url.clone(), proto))
            .filter(|s| s.generation == generation)
            .map(|s| s.sent.elapsed().as_secs())
    }

    /// `generation`'s stored events are all handed over. When both protocols of the relay are,
    /// its mark moves to when the older of the two REQs was sent.
    pub(crate) fn caught_up(&self, url: &RelayUrl, proto: Proto, generation: u64) {
        let both = {
            let mut s = lock(&self.subs);
            if let Some(sub) = s.get_mut(&(url.clone(), proto))
                && sub.generation == generation
            {
                sub.caught_up = true;
            }
            let subs: Vec<Sub> = Proto::BOTH
                .into_iter()
                .filter_map(|p| s.get(&(url.clone(), p)).copied())
                .collect();
            (subs.len() == 2 && subs.iter().all(|s| s.caught_up && s.active))
                .then(|| subs.iter().map(|s| s.sent_at).min().unwrap_or(0))
        };
        if let Some(at) = both {
            // One second back: a sender timestamp of that same second may still be in flight.
            self.caught_up_to(url, at.saturating_sub(1));
        }
    }

    /// Current, active subscriptions whose end of stored events has not come within `timeout`.
    pub(crate) fn overdue(&self, timeout: std::time::Duration) -> Vec<(RelayUrl, Proto, u64)> {
        lock(&self.subs)
            .iter()
            .filter(|(_, s)| s.active && !s.caught_up && s.sent.elapsed() > timeout)
            .map(|((u, p), s)| (u.clone(), *p, s.generation))
            .collect()
    }

    pub(crate) fn relay_mark(&self, url: &RelayUrl) -> Option<u64> {
        lock(&self.marks).get(url).copied()
    }

    /// Every relay's mark, to persist.
    pub(crate) fn marks(&self) -> HashMap<RelayUrl, u64> {
        lock(&self.marks).clone()
    }

    /// `url` delivered an event with sender time `created_at` (never ahead of our clock).
    pub(crate) fn advance(&self, url: &RelayUrl, created_at: u64) {
        let at = created_at.min(self.transport.now());
        self.watermark.fetch_max(at, Ordering::Relaxed);
        let mut m = lock(&self.marks);
        let e = m.entry(url.clone()).or_insert(at);
        *e = (*e).max(at);
    }

    /// `url` finished replaying its stored events: it has given us everything up to the
    /// subscription, so its mark moves there even when nothing new came.
    pub(crate) fn caught_up_to(&self, url: &RelayUrl, at: u64) {
        let mut m = lock(&self.marks);
        let e = m.entry(url.clone()).or_insert(at);
        *e = (*e).max(at);
    }

    /// Marks a generation as sent without a relay (tests).
    #[cfg(test)]
    pub(crate) fn fake_subscribe(&self, url: &RelayUrl) -> [u64; 2] {
        Proto::BOTH.map(|proto| self.new_generation(url, proto).0)
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

    fn shared(watermark: u64, marks: HashMap<RelayUrl, u64>) -> Shared {
        let keys = nostr_sdk::Keys::generate();
        let mut config = TransportConfig::new(&keys, Vec::new());
        config.catch_up_margin_secs = 10;
        config.intake.freshness_secs = Some(10);
        config.intake.catch_up_horizon_secs = 3600;
        let transport = Arc::new(NostrTransport::new(keys, config, Arc::new(At(T)), None));
        Shared::new(transport, watermark, marks)
    }

    fn since(s: &Shared, url: &RelayUrl) -> (u64, u64) {
        let (v2, v1) = s.filters(url);
        (v2.since.unwrap().as_secs(), v1.since.unwrap().as_secs())
    }

    #[test]
    fn subscription_ids_name_protocol_and_generation() {
        assert_eq!(Proto::V2.sub_id(7).to_string(), "mostro-v2-7");
        assert_eq!(Proto::parse("mostro-v1-12"), Some((Proto::V1, 12)));
        assert_eq!(Proto::parse("mostro-v2"), None);
        assert_eq!(Proto::parse("mostro-v2-x"), None);
        assert_eq!(Proto::parse("other"), None);
    }

    #[test]
    fn a_relay_away_longer_is_caught_up_from_its_own_mark() {
        let a = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
        let b = RelayUrl::parse("ws://127.0.0.1:2").unwrap();
        let c = RelayUrl::parse("ws://127.0.0.1:3").unwrap();
        let s = shared(T - 600, HashMap::new());
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
        // B's new REQs: caught up once both protocols are, up to when they were sent.
        let [g2, g1] = s.fake_subscribe(&b);
        assert!(s.is_current(&b, Proto::V2, g2));
        assert!(!s.is_caught_up(&b, Proto::V2, g2));
        s.caught_up(&b, Proto::V2, g2);
        assert!(s.is_caught_up(&b, Proto::V2, g2));
        assert_eq!(since(&s, &b).0, T - 510, "one subscription still replaying");
        s.caught_up(&b, Proto::V1, g1);
        assert_eq!(since(&s, &b).0, T - 11, "{:?}", since(&s, &b));
        // A newer generation supersedes: the old one's events no longer count.
        let [n2, _] = s.fake_subscribe(&b);
        assert!(!s.is_current(&b, Proto::V2, g2));
        assert!(s.is_current(&b, Proto::V2, n2));
        assert!(!s.is_caught_up(&b, Proto::V2, n2));
        // Never earlier than the horizon.
        let old = shared(T - 10_000, HashMap::new());
        assert_eq!(since(&old, &c).0, T - 3600);
    }

    #[test]
    fn a_persisted_mark_only_ever_moves_the_start_back() {
        let a = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
        let b = RelayUrl::parse("ws://127.0.0.1:2").unwrap();
        // Read back at start: A was last heard 900 s ago; B's mark is newer than the store's
        // newest processed request (the request may not have been committed): the store wins.
        let s = shared(
            T - 100,
            HashMap::from([(a.clone(), T - 900), (b.clone(), T - 20)]),
        );
        assert_eq!(since(&s, &a).0, T - 910);
        assert_eq!(since(&s, &b).0, T - 110);
    }
}
