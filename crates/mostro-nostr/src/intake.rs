//! The intake pipeline: what runs on an inbound event before the engine sees
//! it. The clock is an argument (`now`, unix seconds).
//!
//! Order (cheap checks first, as the reference §3.5):
//! 1. kind must be 14 or 1059;
//! 2. maximum serialized size;
//! 3. NIP-13 proof of work on the outer event id (when configured); a v2 event whose visible
//!    sender is not a known trade key (one with an open trade, see [`Intake::set_known`]) needs
//!    `pow_first_contact` bits instead when that is higher (a set lookup, no store read);
//! 4. in-memory replay guard of recent event ids (in front of the store's
//!    persistent one);
//! 5. v2: a sender (outer trade key) whose token bucket is already empty is
//!    dropped here, before any signature check; this only reads the bucket;
//! 6. unwrap (signature, decryption, tuple, trade signature, identity
//!    proof); the event id is recorded in the replay guard only after this
//!    authenticated it;
//! 7. a message the node itself sent, coming back (the admin may use the node
//!    key as trade key), is dropped when unsigned, so a node reply can never
//!    loop;
//! 8. freshness: the sender's timestamp (v2 event, v1 rumor) must not be older
//!    than the window for a live event, or than the catch-up horizon for one a
//!    relay returns from storage after a (re)subscription (sent while the daemon
//!    was down or the relay away: the persistent replay guard, not the window,
//!    stops replays of those), nor more than `max_future_secs` ahead of the clock
//!    (the reference has no future bound; without one an event dated far ahead
//!    would stay fresh, so its id could never leave the persistent replay guard);
//! 9. the rate limit: a token is taken from the sender's bucket (v2: the outer
//!    trade key; v1: the rumor author, since the outer key of a gift wrap is
//!    throwaway).
//!
//! Only an event that verified and passed every other check costs its sender a
//! token: anybody can put a victim's public key on a forged event (a relay does
//! not have to verify signatures), or replay a victim's old genuine events, so
//! a token taken before those checks would let a stranger silence the victim.

use std::collections::{HashMap, HashSet, VecDeque};

use nostr_sdk::{Event, EventId, JsonUtil, Keys, PublicKey};

use crate::error::UnwrapError;
use crate::{KIND_GIFT_WRAP, KIND_V2, Unwrapped, v1, v2};

/// Intake settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntakeConfig {
    /// NIP-13 leading zero bits required on the outer event id (0 = off).
    pub pow: u8,
    /// Bits required instead on a v2 event whose visible sender is not a known trade key, when
    /// higher than `pow` (the first messages of a trade); v1's outer key is throwaway, so v1
    /// events only ever need `pow`.
    pub pow_first_contact: u8,
    /// Largest accepted event, serialized, in bytes.
    pub max_event_bytes: usize,
    /// Token bucket size per sender.
    pub rate_burst: u32,
    /// Tokens refilled per minute per sender (0 disables the limit).
    pub rate_per_minute: u32,
    /// How long an accepted event id is remembered, in seconds.
    pub replay_window_secs: u64,
    /// At most this many ids are remembered.
    pub replay_capacity: usize,
    /// Drop live messages whose sender timestamp is older than this, in seconds
    /// (`None` disables the check). It is the clock skew a client may have.
    pub freshness_secs: Option<u64>,
    /// Drop stored messages (returned by a relay during a catch-up) older than this,
    /// in seconds: how long a request sent while the daemon was away stays valid.
    pub catch_up_horizon_secs: u64,
    /// Drop messages whose sender timestamp is more than this many seconds ahead of the
    /// clock (`None` disables the check).
    pub max_future_secs: Option<u64>,
}

/// Default live freshness window: a client clock up to five minutes behind still works.
pub const DEFAULT_FRESHNESS_SECS: u64 = 300;
/// Default catch-up horizon: a day.
pub const DEFAULT_CATCH_UP_HORIZON_SECS: u64 = 86_400;

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            pow: 0,
            pow_first_contact: 0,
            max_event_bytes: 64 * 1024,
            rate_burst: 30,
            rate_per_minute: 120,
            replay_window_secs: 3600,
            replay_capacity: 100_000,
            freshness_secs: Some(DEFAULT_FRESHNESS_SECS),
            catch_up_horizon_secs: DEFAULT_CATCH_UP_HORIZON_SECS,
            max_future_secs: Some(300),
        }
    }
}

/// Why the intake dropped an event (never answered).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntakeDrop {
    /// Neither kind 14 nor 1059.
    #[error("kind {0} is not a protocol message")]
    Kind(u16),
    /// Larger than [`IntakeConfig::max_event_bytes`].
    #[error("event of {0} bytes is too large")]
    TooLarge(usize),
    /// Not enough proof of work.
    #[error("insufficient proof of work")]
    Pow,
    /// Not enough proof of work for a first contact (a v2 sender with no open trade).
    #[error("insufficient proof of work for a first contact")]
    FirstContactPow,
    /// Seen recently.
    #[error("replayed event")]
    Replay,
    /// The sender exceeded its rate.
    #[error("rate limited")]
    RateLimited,
    /// Unwrap failed.
    #[error(transparent)]
    Unwrap(#[from] UnwrapError),
    /// An unsigned message authored by the node key: one of our own replies.
    #[error("own reply")]
    OwnReply,
    /// Older than the freshness window.
    #[error("stale message")]
    Stale,
    /// Dated further ahead than [`IntakeConfig::max_future_secs`].
    #[error("message dated in the future")]
    Future,
}

impl IntakeDrop {
    /// Stable snake_case label for logs and metrics.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            IntakeDrop::Kind(_) => "kind",
            IntakeDrop::TooLarge(_) => "too_large",
            IntakeDrop::Pow => "pow",
            IntakeDrop::FirstContactPow => "pow_first_contact",
            IntakeDrop::Replay => "replay",
            IntakeDrop::RateLimited => "rate_limited",
            IntakeDrop::Unwrap(e) => e.as_str(),
            IntakeDrop::OwnReply => "own_reply",
            IntakeDrop::Stale => "stale",
            IntakeDrop::Future => "future",
        }
    }
}

/// Token bucket in thousandths of a token.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    at: u64,
}

/// Keep at most this many buckets; full ones are evicted first.
const MAX_BUCKETS: usize = 100_000;
/// A key made known by the node's own reply stays known this long without the records
/// confirming it (covers a rebuild that read the records just before its trade was committed).
const RECENT_KNOWN_SECS: u64 = 180;

/// The intake state: rate buckets and the replay guard.
#[derive(Debug)]
pub struct Intake {
    config: IntakeConfig,
    buckets: HashMap<PublicKey, Bucket>,
    seen: HashMap<EventId, u64>,
    order: VecDeque<(u64, EventId)>,
    /// Trade keys with an open trade (from the records), for the first-contact proof of work.
    known: HashSet<PublicKey>,
    /// Keys the node answered lately (an accepted new order or take), with when.
    recent: HashMap<PublicKey, u64>,
}

impl Intake {
    /// An empty intake.
    #[must_use]
    pub fn new(config: IntakeConfig) -> Self {
        Intake {
            config,
            buckets: HashMap::new(),
            seen: HashMap::new(),
            order: VecDeque::new(),
            known: HashSet::new(),
            recent: HashMap::new(),
        }
    }

    /// Whether a first contact needs more work than any other message.
    #[must_use]
    pub fn first_contact_enabled(&self) -> bool {
        self.config.pow_first_contact > self.config.pow
    }

    /// Replaces the known trade keys with those of the node's open trades (from its records);
    /// keys answered in the last few minutes stay known too.
    pub fn set_known(&mut self, keys: impl IntoIterator<Item = PublicKey>, now: u64) {
        self.recent
            .retain(|_, at| now.saturating_sub(*at) <= RECENT_KNOWN_SECS);
        self.known = keys.into_iter().collect();
    }

    /// A key the node has just started a trade with (it answered its new order or take).
    pub fn add_known(&mut self, key: PublicKey, now: u64) {
        if self.first_contact_enabled() && self.recent.len() < MAX_BUCKETS {
            self.recent.insert(key, now);
        }
    }

    /// Whether `key` has an open trade with the node (as far as the intake knows).
    #[must_use]
    pub fn is_known(&self, key: &PublicKey) -> bool {
        self.known.contains(key) || self.recent.contains_key(key)
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &IntakeConfig {
        &self.config
    }

    /// Runs the whole pipeline on one event for the node `node` at `now`.
    ///
    /// # Errors
    ///
    /// [`IntakeDrop`] with the first check that failed.
    pub fn accept(
        &mut self,
        event: &Event,
        node: &Keys,
        now: u64,
    ) -> Result<Unwrapped, IntakeDrop> {
        self.accept_as(event, node, now, false)
    }

    fn accept_as(
        &mut self,
        event: &Event,
        node: &Keys,
        now: u64,
        stored: bool,
    ) -> Result<Unwrapped, IntakeDrop> {
        self.precheck(event, now)?;
        let opened = open(event, node)?;
        self.finish(event, opened, node, now, stored)
    }

    /// [`Intake::accept`] for an event a relay returned from storage (a catch-up): judged
    /// against the catch-up horizon instead of the live freshness window.
    ///
    /// # Errors
    ///
    /// [`IntakeDrop`] with the first check that failed.
    pub fn accept_stored(
        &mut self,
        event: &Event,
        node: &Keys,
        now: u64,
    ) -> Result<Unwrapped, IntakeDrop> {
        self.accept_as(event, node, now, true)
    }

    /// The cheap checks before decryption: kind, size, proof of work, replay guard, and, for
    /// v2, whether the claimed sender (the outer author) has a token left. Nothing is taken
    /// here: the claim is not verified yet.
    pub fn precheck(&mut self, event: &Event, now: u64) -> Result<(), IntakeDrop> {
        let kind = event.kind.as_u16();
        if kind != KIND_V2 && kind != KIND_GIFT_WRAP {
            return Err(IntakeDrop::Kind(kind));
        }
        let size = event.as_json().len();
        if size > self.config.max_event_bytes {
            return Err(IntakeDrop::TooLarge(size));
        }
        if self.config.pow > 0 && !event.id.check_pow(self.config.pow) {
            return Err(IntakeDrop::Pow);
        }
        if kind == KIND_V2
            && self.first_contact_enabled()
            && !self.is_known(&event.pubkey)
            && !event.id.check_pow(self.config.pow_first_contact)
        {
            return Err(IntakeDrop::FirstContactPow);
        }
        self.expire(now);
        if self.seen.contains_key(&event.id) {
            return Err(IntakeDrop::Replay);
        }
        if kind == KIND_V2 && !self.has_token(&event.pubkey, now) {
            return Err(IntakeDrop::RateLimited);
        }
        Ok(())
    }

    /// The checks after decryption: replay guard (again: a twin may have been opened
    /// concurrently), own replies, freshness, and last the rate limit (a token of the
    /// authenticated sender: the v2 trade key or the v1 rumor author). `stored`: the event
    /// came from a relay's storage during a catch-up (the horizon applies, not the window).
    pub fn finish(
        &mut self,
        event: &Event,
        opened: Unwrapped,
        node: &Keys,
        now: u64,
        stored: bool,
    ) -> Result<Unwrapped, IntakeDrop> {
        if self.seen.contains_key(&event.id) {
            return Err(IntakeDrop::Replay);
        }
        self.remember(event.id, now);
        if opened.sender == node.public_key() && !opened.signed {
            return Err(IntakeDrop::OwnReply);
        }
        let max_age = if stored {
            Some(self.config.catch_up_horizon_secs)
        } else {
            self.config.freshness_secs
        };
        if let Some(age) = max_age
            && opened.created_at < now.saturating_sub(age)
        {
            return Err(IntakeDrop::Stale);
        }
        if let Some(ahead) = self.config.max_future_secs
            && opened.created_at > now.saturating_add(ahead)
        {
            return Err(IntakeDrop::Future);
        }
        // `opened` is authenticated: for v2 `sender` is the verified event author, for v1 the
        // rumor author vouched for by the seal's signature.
        self.take_token(&opened.sender, now)?;
        Ok(opened)
    }

    /// Forgets an event id (so that a later delivery is processed again,
    /// for example after the engine failed on it).
    pub fn forget(&mut self, id: &EventId) {
        self.seen.remove(id);
    }

    /// Whether an id is in the replay guard.
    #[must_use]
    pub fn has_seen(&self, id: &EventId) -> bool {
        self.seen.contains_key(id)
    }

    fn remember(&mut self, id: EventId, now: u64) {
        if self.seen.insert(id, now).is_none() {
            self.order.push_back((now, id));
        }
        while self.order.len() > self.config.replay_capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    fn expire(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.config.replay_window_secs);
        while let Some((at, id)) = self.order.front().copied() {
            if at >= horizon {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&id).is_some_and(|t| *t == at) {
                self.seen.remove(&id);
            }
        }
    }

    /// Whether `key` has a whole token now, without taking it or creating a bucket.
    fn has_token(&self, key: &PublicKey, now: u64) -> bool {
        let per_minute = u64::from(self.config.rate_per_minute);
        if per_minute == 0 {
            return true;
        }
        let cap = u64::from(self.config.rate_burst).saturating_mul(1000);
        let Some(b) = self.buckets.get(key) else {
            return cap >= 1000;
        };
        let refill = now
            .saturating_sub(b.at)
            .saturating_mul(per_minute)
            .saturating_mul(1000)
            / 60;
        b.milli.saturating_add(refill).min(cap) >= 1000
    }

    fn take_token(&mut self, key: &PublicKey, now: u64) -> Result<(), IntakeDrop> {
        let per_minute = u64::from(self.config.rate_per_minute);
        if per_minute == 0 {
            return Ok(());
        }
        let cap = u64::from(self.config.rate_burst).saturating_mul(1000);
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(key) {
            self.evict_full(now, cap, per_minute);
        }
        let b = self.buckets.entry(*key).or_insert(Bucket {
            milli: cap,
            at: now,
        });
        let refill = now
            .saturating_sub(b.at)
            .saturating_mul(per_minute)
            .saturating_mul(1000)
            / 60;
        b.milli = b.milli.saturating_add(refill).min(cap);
        b.at = now;
        if b.milli < 1000 {
            return Err(IntakeDrop::RateLimited);
        }
        b.milli = b.milli.saturating_sub(1000);
        Ok(())
    }

    /// Drops the buckets that would be full by now (idle senders).
    fn evict_full(&mut self, now: u64, cap: u64, per_minute: u64) {
        self.buckets.retain(|_, b| {
            let refill = now
                .saturating_sub(b.at)
                .saturating_mul(per_minute)
                .saturating_mul(1000)
                / 60;
            b.milli.saturating_add(refill) < cap
        });
        if self.buckets.len() >= MAX_BUCKETS {
            self.buckets.clear();
        }
    }
}

/// Verifies and decrypts an event in its protocol (the expensive part; needs no intake state,
/// so it can run on any core).
pub fn open(event: &Event, node: &Keys) -> Result<Unwrapped, IntakeDrop> {
    let opened = if event.kind.as_u16() == KIND_V2 {
        v2::unwrap(event, node)?
    } else {
        v1::unwrap(event, node)?
    };
    Ok(opened)
}
