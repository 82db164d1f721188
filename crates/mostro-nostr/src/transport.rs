//! [`NostrTransport`]: the engine's outbound port over a nostr-sdk relay
//! pool, plus the public events the daemon publishes on its own schedule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mostro_core::machine::Notify;
use mostro_core::order::{Order, Protocol};
use mostro_core::ports::{Clock, Transport, TransportError, User};
use mostro_core::wire::map::to_message_at;
use nostr_sdk::{Client, Event, Filter, Keys, Kind, RelayOptions, RelayUrl, Timestamp};
use tracing::{debug, info, warn};

use crate::delivery::{Address, Delivery};
use crate::events::{self, NodeInfo, PublishConfig, RatingSummary, Reputation};
use crate::intake::{Intake, IntakeConfig};
use crate::nodelay::NoDelayTransport;
use crate::{to_nostr_key, v1, v2};

/// Settings of the transport.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Relay URLs (`ws://` or `wss://`).
    pub relays: Vec<String>,
    /// Public event settings (node key, relays, networks, name, retention).
    pub publish: PublishConfig,
    /// NIP-40 lifetime of the node's kind-14 replies, in seconds (30 days).
    pub dm_expiration_secs: u64,
    /// Inbound checks.
    pub intake: IntakeConfig,
    /// Delay between reconnection attempts to a relay.
    pub relay_retry_interval: Duration,
    /// Catch-up margin, in seconds: after a reconnection the subscription asks
    /// for events since the last processed one minus this (never less than the
    /// live freshness window, the clock skew a client may have).
    pub catch_up_margin_secs: u64,
    /// Where the first catch-up starts (unix seconds): the time the store
    /// recorded the newest processed request, so that what was sent while the
    /// daemon was down is fetched (bounded by the intake's catch-up horizon).
    /// `None`: now minus the freshness window.
    pub resume_from: Option<u64>,
    /// Longest wait before re-subscribing after a relay closed a
    /// subscription (the wait doubles from one second up to this).
    pub max_resubscribe_backoff: Duration,
    /// Stored events (a catch-up) opened at once at most: verification and decryption of a
    /// catch-up run on this many cores, beside the live events.
    pub catch_up_parallel: usize,
    /// Stored events opened per second at most (0: no bound), so a catch-up of many gift wraps
    /// (anyone can send the node some) cannot take the whole machine.
    pub catch_up_rate: u32,
}

/// Whether a reply means its recipient now has an open trade with the node (an accepted new
/// order or take), so its next messages need no first-contact proof of work.
fn starts_a_trade(notice: &mostro_core::machine::Notice) -> bool {
    use mostro_core::machine::Notice;
    matches!(
        notice,
        Notice::NewOrder(_)
            | Notice::PayInvoice { .. }
            | Notice::AddInvoice(_)
            | Notice::WaitingSellerToPay
            | Notice::WaitingBuyerInvoice
    )
}

/// The records' key of the public events relays still lack.
const OWED_KEY: &str = "nostr.owed";

/// Default bound on catch-up openings per second.
pub const DEFAULT_CATCH_UP_RATE: u32 = 2_000;

impl TransportConfig {
    /// Defaults for a node key and relays.
    #[must_use]
    pub fn new(node: &Keys, relays: Vec<String>) -> Self {
        TransportConfig {
            publish: PublishConfig::new(node.public_key().to_hex(), relays.clone()),
            relays,
            dm_expiration_secs: 30 * 86_400,
            intake: IntakeConfig::default(),
            relay_retry_interval: Duration::from_secs(5),
            catch_up_margin_secs: 60,
            resume_from: None,
            max_resubscribe_backoff: Duration::from_secs(60),
            catch_up_parallel: std::thread::available_parallelism().map_or(1, usize::from),
            catch_up_rate: DEFAULT_CATCH_UP_RATE,
        }
    }
}

/// What the adapter asks of the node's records, and nothing more: it never sees the store or
/// the engine. The daemon answers from its store.
#[async_trait]
pub trait Records: Send + Sync {
    /// Whether an inbound event (outer id) was already processed: a relay's catch-up replays
    /// mostly those, and they are dropped before any decryption.
    ///
    /// # Errors
    /// The records cannot say (the event is then processed, and the engine's own replay guard
    /// decides).
    async fn processed(&self, id: &mostro_core::types::EventId) -> Result<bool, String>;
    /// A user's reputation record, for the `rating` tag of a pending order's public event.
    ///
    /// # Errors
    /// The records cannot say (the tag then shows an empty reputation).
    async fn user(&self, identity: &mostro_core::types::PubKey) -> Result<Option<User>, String>;
    /// The trade keys with an open trade with the node (the parties of its non-terminal orders,
    /// disputed ones included) and the solvers: senders that need no first-contact proof of work.
    /// The default knows none.
    ///
    /// # Errors
    /// The records cannot say (the known keys stay as they were).
    async fn active_keys(&self) -> Result<Vec<mostro_core::types::PubKey>, String> {
        Ok(Vec::new())
    }
    /// A piece of the adapter's own state kept across restarts (the relay marks, the public
    /// events a relay still lacks), by key; `None` when never saved. The default keeps nothing.
    ///
    /// # Errors
    /// The records cannot say (the adapter then starts without it).
    async fn load(&self, key: &str) -> Result<Option<String>, String> {
        let _ = key;
        Ok(None)
    }
    /// Saves a piece of the adapter's own state (see [`Records::load`]).
    ///
    /// # Errors
    /// It could not be saved (the adapter logs it and saves again on the next change).
    async fn save(&self, key: &str, value: &str) -> Result<(), String> {
        let _ = (key, value);
        Ok(())
    }
}

/// The Nostr side of the node: sends the engine's messages in each
/// recipient's protocol, publishes the public events, and (with
/// [`crate::run_intake`]) receives requests.
pub struct NostrTransport {
    client: Client,
    keys: Keys,
    config: TransportConfig,
    clock: Arc<dyn Clock>,
    records: Option<Arc<dyn Records>>,
    /// Last `created_at` used per (kind, `d`), to keep addressable events
    /// strictly increasing.
    stamps: Mutex<HashMap<(u16, String), u64>>,
    /// Latest public event per address and the relays that lack it.
    delivery: Delivery,
    pub(crate) intake: Mutex<Intake>,
    pub(crate) stats: Counters,
}

/// Inbound counters (monotonic since start).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) events: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) caught_up: AtomicU64,
    pub(crate) already_processed: AtomicU64,
    pub(crate) superseded: AtomicU64,
    /// Drops by reason label.
    pub(crate) drops: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Counters {
    /// One dropped event, with why.
    pub(crate) fn drop_for(&self, reason: &'static str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        let mut d = match self.drops.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *d.entry(reason).or_insert(0) += 1;
    }
}

/// A snapshot of the inbound counters, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Protocol events received from relays (every copy, every relay).
    pub events: u64,
    /// Events dropped by the intake or the mapping (replays included).
    pub dropped: u64,
    /// Requests handed to the engine.
    pub requests: u64,
    /// Of those, requests that arrived while a subscription was replaying
    /// stored events (catch-up after a (re)connection).
    pub caught_up: u64,
    /// Events a relay returned from storage that the store's replay guard already held:
    /// dropped before any decryption.
    pub already_processed: u64,
    /// Events that came on a superseded or retired subscription generation and were ignored
    /// unread (the current generation carries the same): a relay still sending on a closed one.
    pub superseded: u64,
    /// Dropped events by reason (`stale`, `replay`, `rate_limited`, `already_processed`, the
    /// unwrap and mapping reasons, ...).
    pub drops: std::collections::BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for NostrTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NostrTransport")
            .field("node", &self.keys.public_key().to_hex())
            .field("relays", &self.config.relays)
            .finish_non_exhaustive()
    }
}

impl NostrTransport {
    /// A transport for the node key `keys`. `clock` stamps events and checks
    /// freshness; `records` (optional) answers the two questions the adapter
    /// asks of the node's records: was this event processed (catch-up), and
    /// the maker's reputation for the `rating` tag of pending orders.
    #[must_use]
    pub fn new(
        keys: Keys,
        config: TransportConfig,
        clock: Arc<dyn Clock>,
        records: Option<Arc<dyn Records>>,
    ) -> Self {
        let client = Client::builder()
            .signer(keys.clone())
            .websocket_transport(NoDelayTransport)
            .build();
        let intake = Mutex::new(Intake::new(config.intake.clone()));
        NostrTransport {
            client,
            keys,
            config,
            clock,
            records,
            stamps: Mutex::new(HashMap::new()),
            delivery: Delivery::default(),
            intake,
            stats: Counters::default(),
        }
    }

    /// Adds the configured relays and starts connecting (in the
    /// background; nostr-sdk reconnects dropped relays by itself).
    ///
    /// # Errors
    ///
    /// [`TransportError`] if a relay URL is invalid.
    pub async fn connect(&self) -> Result<(), TransportError> {
        let opts = RelayOptions::new()
            .retry_interval(self.config.relay_retry_interval)
            .adjust_retry_interval(false);
        for url in &self.config.relays {
            self.client
                .pool()
                .add_relay(url.as_str(), opts.clone())
                .await
                .map_err(|e| TransportError::permanent(format!("relay {url}: {e}")))?;
        }
        self.client.connect().await;
        Ok(())
    }

    /// Waits until at least one relay is connected or `timeout` passed.
    pub async fn wait_for_connection(&self, timeout: Duration) {
        self.client.wait_for_connection(timeout).await;
    }

    /// Disconnects from every relay.
    pub async fn shutdown(&self) {
        self.client.shutdown().await;
    }

    /// The node key.
    #[must_use]
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The underlying nostr-sdk client.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The inbound counters.
    #[must_use]
    pub fn inbound_stats(&self) -> InboundStats {
        let c = &self.stats;
        InboundStats {
            events: c.events.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            caught_up: c.caught_up.load(Ordering::Relaxed),
            already_processed: c.already_processed.load(Ordering::Relaxed),
            superseded: c.superseded.load(Ordering::Relaxed),
            drops: match c.drops.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            },
        }
    }

    /// Rebuilds the intake's known trade keys from the records (first-contact proof of work);
    /// nothing to do when that is off.
    pub(crate) async fn refresh_known(&self) {
        let enabled = match self.intake.lock() {
            Ok(g) => g.first_contact_enabled(),
            Err(p) => p.into_inner().first_contact_enabled(),
        };
        let Some(r) = self.records.as_ref().filter(|_| enabled) else {
            return;
        };
        match r.active_keys().await {
            Ok(keys) => {
                // The admin may speak with the node key itself.
                let keys: Vec<nostr_sdk::PublicKey> = keys
                    .iter()
                    .filter_map(to_nostr_key)
                    .chain([self.keys.public_key()])
                    .collect();
                let n = keys.len();
                let now = self.now();
                match self.intake.lock() {
                    Ok(mut g) => g.set_known(keys, now),
                    Err(p) => p.into_inner().set_known(keys, now),
                }
                debug!(keys = n, "known trade keys rebuilt");
            },
            Err(e) => warn!(error = %e, "cannot read the active trade keys; keeping the old set"),
        }
    }

    /// A piece of the adapter's state from the records (`None`: none, or unreadable).
    pub(crate) async fn load_state(&self, key: &str) -> Option<String> {
        let r = self.records.as_ref()?;
        match r.load(key).await {
            Ok(v) => v,
            Err(e) => {
                warn!(key, error = %e, "cannot read the transport's saved state");
                None
            },
        }
    }

    /// Saves a piece of the adapter's state in the records (logged when it fails).
    pub(crate) async fn save_state(&self, key: &str, value: &str) {
        if let Some(r) = &self.records
            && let Err(e) = r.save(key, value).await
        {
            warn!(key, error = %e, "cannot save the transport's state");
        }
    }

    /// Reads back the public events a relay still lacked when the last run saved them.
    pub(crate) async fn load_delivery(&self) {
        let Some(raw) = self.load_state(OWED_KEY).await else {
            return;
        };
        match self.delivery.restore(&raw) {
            Ok(0) => {},
            Ok(n) => info!(
                addresses = n,
                "public events still owed to relays read back"
            ),
            Err(e) => warn!(error = %e, "saved delivery state unreadable; ignored"),
        }
    }

    /// Saves what relays still lack, if it changed.
    pub(crate) async fn save_delivery(&self) {
        if let Some(raw) = self.delivery.save() {
            self.save_state(OWED_KEY, &raw).await;
        }
    }

    /// Whether the node's replay guard already holds this (outer) event id; `false` without
    /// records or when they cannot say.
    pub(crate) async fn processed(&self, id: &nostr_sdk::EventId) -> bool {
        match &self.records {
            Some(r) => r
                .processed(&mostro_core::types::EventId(id.to_bytes()))
                .await
                .unwrap_or(false),
            None => false,
        }
    }

    /// The clock.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now().0
    }

    /// The wire event for a notification, in the recipient's protocol.
    ///
    /// # Errors
    ///
    /// A [permanent](TransportError::permanent) [`TransportError`] (no retry can deliver
    /// the message) if the recipient key is not a valid point, the encoded message is over the
    /// NIP-44 plaintext limit ([`MAX_PLAINTEXT`]), or encryption or wrapping fails.
    pub fn build_reply(&self, n: &Notify) -> Result<Event, TransportError> {
        let now = self.clock.now();
        let msg = to_message_at(n, now);
        // No retry can deliver these: the engine dead-letters them.
        // `to_nostr_key` only checks the length: a key that is not a curve point would fail
        // later, inside the encryption.
        let to = to_nostr_key(&n.to)
            .filter(|k| k.xonly().is_ok())
            .ok_or_else(|| {
                TransportError::permanent(format!(
                    "invalid recipient key: {} is not a valid public key",
                    n.to.to_hex()
                ))
            })?;
        let size = serde_json::to_string(&msg).map_or(usize::MAX, |j| j.len());
        if size > MAX_PLAINTEXT {
            return Err(TransportError::permanent(format!(
                "reply of {size} bytes is over the NIP-44 limit of {MAX_PLAINTEXT}"
            )));
        }
        let created_at = Timestamp::from_secs(now.0);
        let event = match n.protocol {
            Protocol::V2 => {
                let exp =
                    Timestamp::from_secs(now.0.saturating_add(self.config.dm_expiration_secs));
                v2::wrap_reply(&msg, &self.keys, &to, created_at, Some(exp))
            },
            Protocol::V1 => v1::wrap_reply(&msg, &self.keys, &to, created_at),
        };
        event.map_err(|e| TransportError::permanent(e.to_string()))
    }

    /// Publishes an event to every relay, once: `Ok` when at least one relay accepted it.
    /// There is no retry here: a failure is transient and the caller's outbox retries the
    /// effect (one retry policy, the outbox's).
    ///
    /// # Errors
    ///
    /// [`TransportError`] (transient) when no relay accepted it.
    pub async fn publish(&self, event: &Event) -> Result<(), TransportError> {
        match self.send_once(event).await {
            Ok(()) => Ok(()),
            Err(last) => {
                warn!(id = %event.id, error = %last, "publish failed");
                Err(TransportError::transient(format!(
                    "publish {}: {last}",
                    event.id
                )))
            },
        }
    }

    /// One publish attempt to every relay; `Ok` when at least one accepted it.
    async fn send_once(&self, event: &Event) -> Result<(), String> {
        match self.client.send_event(event).await {
            Ok(out) if !out.success.is_empty() => {
                debug!(id = %event.id, kind = event.kind.as_u16(), relays = out.success.len(), "published");
                Ok(())
            },
            Ok(out) => Err(out
                .failed
                .iter()
                .map(|(url, e)| format!("{url}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One publish attempt of a public (replaceable) event to every relay, recording which
    /// relays did not take it so that the reconciler re-sends it to them later.
    async fn send_public(&self, event: &Event, address: Address) -> Result<(), String> {
        let relays: Vec<RelayUrl> = self.client.relays().await.into_keys().collect();
        match self.client.send_event(event).await {
            Ok(out) => {
                let missing = relays.into_iter().filter(|u| !out.success.contains(u));
                self.delivery.record(address, event, missing);
                if out.success.is_empty() {
                    Err(out
                        .failed
                        .iter()
                        .map(|(url, e)| format!("{url}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; "))
                } else {
                    debug!(id = %event.id, kind = event.kind.as_u16(), relays = out.success.len(), "published");
                    Ok(())
                }
            },
            Err(e) => {
                self.delivery.record(address, event, relays);
                Err(e.to_string())
            },
        }
    }

    /// Makes `url` hold the latest version of every public event it lacks: asks it for its
    /// copies (by kind and `d`), then re-sends ours where it has none or an older one. `all`:
    /// compare every address known (after a reconnection: the relay may have lost data while
    /// away), else only those it has not confirmed. Returns how many events were re-sent.
    pub async fn reconcile_relay(&self, url: &RelayUrl, all: bool) -> usize {
        let owed = self.delivery.owed(url, all);
        if owed.is_empty() {
            return 0;
        }
        let node = self.keys.public_key();
        // The relay's newest copy per address.
        let mut theirs: HashMap<Address, Timestamp> = HashMap::new();
        let mut by_kind: HashMap<u16, Vec<String>> = HashMap::new();
        for o in &owed {
            by_kind
                .entry(o.address.0)
                .or_default()
                .push(o.address.1.clone());
        }
        for (kind, ds) in by_kind {
            for chunk in ds.chunks(200) {
                let mut f = Filter::new().author(node).kind(Kind::from(kind));
                if events::has_d_tag(kind) {
                    f = f.identifiers(chunk.iter().cloned());
                }
                let got = match self
                    .client
                    .fetch_events_from([url.clone()], f, Duration::from_secs(5))
                    .await
                {
                    Ok(evs) => evs,
                    Err(e) => {
                        debug!(relay = %url, error = %e, "reconcile: relay copies unavailable");
                        return 0;
                    },
                };
                for e in got {
                    let d = if events::has_d_tag(kind) {
                        e.tags.identifier().unwrap_or_default().to_owned()
                    } else {
                        String::new()
                    };
                    let at = theirs.entry((kind, d)).or_insert(e.created_at);
                    *at = (*at).max(e.created_at);
                }
            }
        }
        let mut sent = 0;
        for o in owed {
            if theirs
                .get(&o.address)
                .is_some_and(|at| *at >= o.event.created_at)
            {
                self.delivery.confirmed(&o.address, &o.event, url);
                continue;
            }
            match self.client.send_event_to([url.clone()], &o.event).await {
                Ok(out) if out.success.contains(url) => {
                    self.delivery.confirmed(&o.address, &o.event, url);
                    sent += 1;
                },
                Ok(out) => {
                    debug!(relay = %url, failed = ?out.failed, "reconcile: re-send refused");
                },
                Err(e) => debug!(relay = %url, error = %e, "reconcile: re-send failed"),
            }
        }
        if sent > 0 {
            info!(relay = %url, sent, "reconcile: re-sent public events the relay lacked");
        }
        sent
    }

    /// Relays still owed a public event.
    pub(crate) fn relays_owed(&self) -> std::collections::HashSet<RelayUrl> {
        self.delivery.relays_owed()
    }

    fn stamp(&self, kind: u16, d: &str) -> u64 {
        let now = self.now();
        let mut stamps = match self.stamps.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if stamps.len() > 10_000 {
            // Only same-second collisions matter: forget old stamps.
            stamps.retain(|_, at| at.saturating_add(60) >= now);
        }
        let last = stamps.entry((kind, d.to_owned())).or_insert(0);
        let at = if now > *last {
            now
        } else {
            last.saturating_add(1)
        };
        *last = at;
        at
    }

    async fn publish_tags(&self, kind: u16, tags: Vec<Vec<String>>) -> Result<(), TransportError> {
        let d = tags
            .first()
            .and_then(|t| t.get(1))
            .cloned()
            .unwrap_or_default();
        // Every publish is signed with a fresh, strictly later `created_at`: after a restart the
        // relays may hold a version stamped ahead of our clock (several changes in one second),
        // and a replaceable event older than the stored one is refused. One attempt: the
        // outbox retries a failed effect, and the reconciler re-sends to relays that missed it.
        let at = self.stamp(kind, &d);
        let event = events::sign(&self.keys, kind, tags, at)
            .map_err(|e| TransportError::permanent(e.to_string()))?;
        match self.send_public(&event, (kind, d.clone())).await {
            Ok(()) => Ok(()),
            Err(last) => {
                warn!(kind, d = %d, error = %last, "publish failed");
                Err(TransportError::transient(format!(
                    "publish kind {kind} {d}: {last}"
                )))
            },
        }
    }

    /// The maker's reputation for the `rating` tag (reputation mode only).
    async fn maker_reputation(&self, order: &Order) -> Option<Reputation> {
        if order.maker.is_full_privacy() {
            return None;
        }
        let user = match &self.records {
            Some(records) => match records.user(&order.maker.identity).await {
                Ok(u) => u.unwrap_or_default(),
                Err(e) => {
                    warn!(order_id = %order.id, error = %e, "maker reputation unavailable");
                    User::default()
                },
            },
            None => User::default(),
        };
        Some(Reputation::of(&user, self.now()))
    }

    /// Publishes the node's exchange rates (kind 30078, `d` = `mostro-rates`).
    ///
    /// # Errors
    ///
    /// [`TransportError`] (transient) when no relay accepted it.
    pub async fn publish_rates(&self, rates: &events::Rates) -> Result<(), TransportError> {
        let at = self.stamp(events::KIND_RATES, events::RATES_D);
        let event = events::sign_content(
            &self.keys,
            events::KIND_RATES,
            events::rates_tags(rates, at),
            &events::rates_content(rates),
            at,
        )
        .map_err(|e| TransportError::permanent(e.to_string()))?;
        self.send_public(&event, (events::KIND_RATES, events::RATES_D.to_owned()))
            .await
            .map_err(|e| TransportError::transient(format!("publish rates: {e}")))
    }

    /// Publishes the node's health report (kind 38389).
    ///
    /// # Errors
    ///
    /// [`TransportError`] (transient) when no relay accepted it.
    pub async fn publish_health(&self, health: &events::Health) -> Result<(), TransportError> {
        let tags = events::health_tags(health, &self.config.publish, self.now());
        self.publish_tags(events::KIND_HEALTH, tags).await
    }

    /// Publishes the node info event (kind 38385).
    ///
    /// # Errors
    ///
    /// [`TransportError`] if publishing failed.
    pub async fn publish_info(&self, info: &NodeInfo) -> Result<(), TransportError> {
        self.publish_tags(
            events::KIND_INFO,
            events::info_tags(info, &self.config.publish),
        )
        .await
    }

    /// Publishes a rating event (kind 38384) for a rated user, `d` = a trade
    /// key in hex.
    ///
    /// # Errors
    ///
    /// [`TransportError`] if publishing failed.
    pub async fn publish_rating(&self, d: &str, user: &User) -> Result<(), TransportError> {
        let now = self.now();
        let tags = events::rating_tags(d, &RatingSummary::of(user, now), &self.config.publish, now);
        self.publish_tags(events::KIND_RATING, tags).await
    }

    /// Publishes the node's profile (kind 0, NIP-01 metadata).
    ///
    /// # Errors
    ///
    /// [`TransportError`] if publishing failed.
    pub async fn publish_profile(&self, profile: &events::Profile) -> Result<(), TransportError> {
        let event = events::sign_content(
            &self.keys,
            events::KIND_METADATA,
            Vec::new(),
            &profile.content(),
            self.now(),
        )
        .map_err(|e| TransportError::permanent(e.to_string()))?;
        self.send_public(&event, (events::KIND_METADATA, String::new()))
            .await
            .map_err(|e| TransportError::transient(format!("publish profile: {e}")))
    }

    /// Publishes the NIP-65 relay list (kind 10002): the configured relays connected now.
    ///
    /// # Errors
    ///
    /// [`TransportError`] if publishing failed.
    pub async fn publish_relay_list(&self) -> Result<(), TransportError> {
        // Only the relays connected now, in configuration order (as the reference publishes).
        let pool = self.client.relays().await;
        let connected: Vec<String> = self
            .config
            .relays
            .iter()
            .filter(|r| {
                RelayUrl::parse(r.as_str())
                    .ok()
                    .and_then(|u| pool.get(&u))
                    .is_some_and(|relay| relay.is_connected())
            })
            .cloned()
            .collect();
        if connected.is_empty() {
            return Err(TransportError::transient(
                "publish relay list: no relay connected",
            ));
        }
        let tags = events::relay_list_tags(&connected);
        let event = events::sign(&self.keys, events::KIND_RELAY_LIST, tags, self.now())
            .map_err(|e| TransportError::permanent(e.to_string()))?;
        match self
            .send_public(&event, (events::KIND_RELAY_LIST, String::new()))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                warn!(error = %e, "relay list publish failed");
                Err(TransportError::transient(format!(
                    "publish relay list: {e}"
                )))
            },
        }
    }
}

/// Largest NIP-44 plaintext (bytes): a reply whose encoded message is longer can never be
/// encrypted, so sending it fails permanently.
pub const MAX_PLAINTEXT: usize = 65_535;

#[async_trait]
impl Transport for NostrTransport {
    async fn send(&self, msg: &Notify) -> Result<(), TransportError> {
        let event = self.build_reply(msg)?;
        self.publish(&event).await?;
        if starts_a_trade(&msg.notice) {
            // Its next messages are no first contact (the records confirm it on the next
            // rebuild of the known keys).
            if let Some(key) = to_nostr_key(&msg.to) {
                let mut intake = match self.intake.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                intake.add_known(key, self.now());
            }
        }
        Ok(())
    }

    async fn publish_dev_fee(&self, order: &Order) -> Result<(), TransportError> {
        let now = self.now();
        let Some(tags) = events::dev_fee_tags(order, &self.config.publish, now) else {
            return Ok(());
        };
        let event = events::sign(&self.keys, events::KIND_DEV_FEE, tags, now)
            .map_err(|e| TransportError::permanent(e.to_string()))?;
        self.publish(&event).await
    }

    async fn publish_order(&self, order: &Order) -> Result<(), TransportError> {
        let pending = order.status.published_bucket(order.kind) == Some("pending");
        let rating = if pending {
            self.maker_reputation(order).await
        } else {
            None
        };
        let now = self.now();
        match events::order_tags(order, &self.config.publish, rating.as_ref(), now) {
            Some(tags) => self.publish_tags(events::KIND_ORDER, tags).await,
            None => Ok(()),
        }
    }

    async fn publish_dispute(&self, order: &Order) -> Result<(), TransportError> {
        match events::order_dispute_tags(order, &self.config.publish, self.now()) {
            Some(tags) => self.publish_tags(events::KIND_DISPUTE, tags).await,
            None => Ok(()),
        }
    }

    async fn publish_rating(
        &self,
        trade_key: &mostro_core::types::PubKey,
        user: &User,
    ) -> Result<(), TransportError> {
        NostrTransport::publish_rating(self, &trade_key.to_hex(), user).await
    }
}
