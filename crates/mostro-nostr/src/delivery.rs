//! Per-relay delivery state of the node's public events, and the reconciler that re-sends what a
//! relay lacks.
//!
//! A public event (order 38383, rating 38384, info 38385, dispute 38386, relay list 10002) counts
//! as published once one relay accepted it; a relay that was down, refused it or timed out would
//! otherwise never get it, and a client reading only that relay would see an order stuck in an
//! old status. So the transport keeps, per replaceable address (kind, `d`), the latest version it
//! signed and the relays that have not confirmed it. When a relay (re)connects, and periodically
//! for relays still owed something, [`crate::NostrTransport::reconcile_relay`] asks that relay for
//! its copies of those addresses and re-sends ours where the relay has none or an older one.
//!
//! The state is in memory and bounded ([`MAX_ADDRESSES`]): addresses every relay confirmed are
//! dropped first, oldest first. What is still owed (at most the newest [`MAX_SAVED`] addresses)
//! is saved in the node's records when it changes and read back at start, so a relay that missed
//! an event before a restart still gets it after.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nostr_sdk::{Event, JsonUtil, RelayUrl};
use serde::{Deserialize, Serialize};

/// Most addresses kept.
pub const MAX_ADDRESSES: usize = 20_000;
/// Most owed addresses saved across a restart (the newest).
pub const MAX_SAVED: usize = 1_000;

/// One owed address as saved in the records.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    kind: u16,
    d: String,
    /// The signed event, as JSON.
    event: String,
    missing: Vec<String>,
}

/// A replaceable address: (kind, `d` tag; empty for kind 10002).
pub(crate) type Address = (u16, String);

#[derive(Debug)]
struct Entry {
    event: Event,
    /// Relays that have not confirmed `event`.
    missing: HashSet<RelayUrl>,
}

/// The latest version of each public event and who still lacks it.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    entries: Mutex<HashMap<Address, Entry>>,
    /// What is owed changed since the last [`Delivery::save`].
    dirty: AtomicBool,
}

/// What a relay is owed: the latest event of each address it has not confirmed (or every
/// address, when asked to check them all).
#[derive(Debug, Clone)]
pub(crate) struct Owed {
    pub(crate) address: Address,
    pub(crate) event: Event,
}

impl Delivery {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Entry>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records a signed version of `address` and the relays that did not accept it. An older
    /// version than the one known is ignored.
    pub(crate) fn record(
        &self,
        address: Address,
        event: &Event,
        missing: impl IntoIterator<Item = RelayUrl>,
    ) {
        let mut m = self.lock();
        if let Some(cur) = m.get(&address)
            && cur.event.created_at > event.created_at
        {
            return;
        }
        let missing: HashSet<RelayUrl> = missing.into_iter().collect();
        let was_owed = m.get(&address).is_some_and(|e| !e.missing.is_empty());
        if was_owed || !missing.is_empty() {
            self.dirty.store(true, Ordering::Relaxed);
        }
        m.insert(
            address,
            Entry {
                event: event.clone(),
                missing,
            },
        );
        if m.len() > MAX_ADDRESSES {
            evict(&mut m);
        }
    }

    /// `url` holds `event` (or a newer version) of `address`.
    pub(crate) fn confirmed(&self, address: &Address, event: &Event, url: &RelayUrl) {
        let mut m = self.lock();
        if let Some(e) = m.get_mut(address)
            && e.event.created_at <= event.created_at
            && e.missing.remove(url)
        {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// What is owed, as JSON for the records, if it changed since the last call (`None`: no
    /// change). At most the newest [`MAX_SAVED`] addresses.
    pub(crate) fn save(&self) -> Option<String> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return None;
        }
        let m = self.lock();
        let mut owed: Vec<(&Address, &Entry)> =
            m.iter().filter(|(_, e)| !e.missing.is_empty()).collect();
        owed.sort_by_key(|(_, e)| std::cmp::Reverse(e.event.created_at));
        let mut owed: Vec<Saved> = owed
            .into_iter()
            .map(|((kind, d), e)| Saved {
                kind: *kind,
                d: d.clone(),
                event: e.event.as_json(),
                missing: e.missing.iter().map(ToString::to_string).collect(),
            })
            .collect();
        owed.truncate(MAX_SAVED);
        serde_json::to_string(&owed).ok()
    }

    /// Takes back what [`Delivery::save`] wrote (a newer version already known wins). Returns
    /// how many addresses are owed from it; `Err` when it cannot be read.
    pub(crate) fn restore(&self, raw: &str) -> Result<usize, String> {
        let saved: Vec<Saved> = serde_json::from_str(raw).map_err(|e| e.to_string())?;
        let mut n = 0;
        for s in saved {
            let Ok(event) = Event::from_json(&s.event) else {
                continue;
            };
            if event.verify().is_err() {
                continue;
            }
            let missing: Vec<RelayUrl> = s
                .missing
                .iter()
                .filter_map(|u| RelayUrl::parse(u).ok())
                .collect();
            if missing.is_empty() {
                continue;
            }
            self.record((s.kind, s.d), &event, missing);
            n += 1;
        }
        Ok(n)
    }

    /// What `url` may lack: every address (`all`) or only those it has not confirmed.
    pub(crate) fn owed(&self, url: &RelayUrl, all: bool) -> Vec<Owed> {
        self.lock()
            .iter()
            .filter(|(_, e)| all || e.missing.contains(url))
            .map(|(a, e)| Owed {
                address: a.clone(),
                event: e.event.clone(),
            })
            .collect()
    }

    /// Relays owed at least one event.
    pub(crate) fn relays_owed(&self) -> HashSet<RelayUrl> {
        self.lock()
            .values()
            .flat_map(|e| e.missing.iter().cloned())
            .collect()
    }

    /// Addresses known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Drops addresses down to 90 % of the bound: confirmed everywhere first, oldest first.
fn evict(m: &mut HashMap<Address, Entry>) {
    let target = MAX_ADDRESSES.saturating_mul(9) / 10;
    let mut keys: Vec<(bool, u64, Address)> = m
        .iter()
        .map(|(a, e)| {
            (
                !e.missing.is_empty(),
                e.event.created_at.as_secs(),
                a.clone(),
            )
        })
        .collect();
    keys.sort();
    let extra = m.len().saturating_sub(target);
    for (_, _, a) in keys.into_iter().take(extra) {
        m.remove(&a);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use nostr_sdk::{EventBuilder, Keys, Kind, Tag, Timestamp};

    fn ev(keys: &Keys, d: &str, at: u64) -> Event {
        EventBuilder::new(Kind::from(38383u16), "")
            .tag(Tag::identifier(d))
            .custom_created_at(Timestamp::from_secs(at))
            .sign_with_keys(keys)
            .unwrap()
    }

    fn url(s: &str) -> RelayUrl {
        RelayUrl::parse(s).unwrap()
    }

    #[test]
    fn a_relay_owes_only_what_it_did_not_confirm_and_only_the_latest_version() {
        let k = Keys::generate();
        let d = Delivery::default();
        let (a, b) = (url("ws://127.0.0.1:1"), url("ws://127.0.0.1:2"));
        let addr = (38383u16, "o1".to_owned());
        d.record(addr.clone(), &ev(&k, "o1", 10), [b.clone()]);
        assert!(d.owed(&a, false).is_empty());
        assert_eq!(d.owed(&b, false).len(), 1);
        // A newer version replaces it; an older one is ignored.
        d.record(addr.clone(), &ev(&k, "o1", 20), [a.clone(), b.clone()]);
        d.record(addr.clone(), &ev(&k, "o1", 15), []);
        let owed = d.owed(&a, false);
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].event.created_at.as_secs(), 20);
        // Confirming an older version does not settle the newer one.
        d.confirmed(&addr, &ev(&k, "o1", 10), &a);
        assert_eq!(d.owed(&a, false).len(), 1);
        d.confirmed(&addr, &owed[0].event, &a);
        assert!(d.owed(&a, false).is_empty());
        assert_eq!(d.relays_owed(), HashSet::from([b.clone()]));
        // `all` lists every address for a full comparison.
        assert_eq!(d.owed(&a, true).len(), 1);
    }

    #[test]
    fn what_is_owed_survives_a_restart_and_nothing_else_is_saved() {
        let k = Keys::generate();
        let d = Delivery::default();
        let (a, b) = (url("ws://127.0.0.1:1"), url("ws://127.0.0.1:2"));
        d.record((38383, "confirmed".into()), &ev(&k, "confirmed", 5), []);
        assert_eq!(d.save(), None, "nothing owed changed");
        d.record((38383, "o1".into()), &ev(&k, "o1", 10), [b.clone()]);
        d.record(
            (38385, String::new()),
            &ev(&k, "", 11),
            [a.clone(), b.clone()],
        );
        let raw = d.save().unwrap();
        assert_eq!(d.save(), None, "saved once per change");

        let after = Delivery::default();
        assert_eq!(after.restore(&raw).unwrap(), 2);
        assert_eq!(after.owed(&b, false).len(), 2);
        assert_eq!(after.owed(&a, false).len(), 1);
        assert!(
            after
                .owed(&a, true)
                .iter()
                .all(|o| o.address.1 != "confirmed")
        );
        // A newer version published since the restart wins over the saved one.
        let newer = Delivery::default();
        newer.record((38383, "o1".into()), &ev(&k, "o1", 20), []);
        newer.restore(&raw).unwrap();
        assert!(newer.owed(&b, false).iter().all(|o| o.address.1 != "o1"));
        // Confirming the last owed copy is a change to save; a forged event is not taken back.
        after.confirmed(&(38385, String::new()), &ev(&k, "", 11), &a);
        assert!(after.save().is_some());
        let forged = raw.replace("\\\"content\\\":\\\"\\\"", "\\\"content\\\":\\\"x\\\"");
        assert_ne!(forged, raw);
        assert_eq!(Delivery::default().restore(&forged).unwrap(), 0);
        assert!(Delivery::default().restore("not json").is_err());
    }

    #[test]
    fn the_state_is_bounded_and_keeps_what_is_still_owed() {
        let k = Keys::generate();
        let d = Delivery::default();
        let b = url("ws://127.0.0.1:2");
        // One owed address, then more confirmed ones than the bound.
        d.record((38383, "owed".into()), &ev(&k, "owed", 1), [b.clone()]);
        let e = ev(&k, "x", 2);
        for i in 0..=MAX_ADDRESSES {
            d.record((38383, format!("c{i}")), &e, []);
        }
        assert!(d.len() <= MAX_ADDRESSES);
        assert_eq!(
            d.owed(&b, false).len(),
            1,
            "the owed address survives eviction"
        );
    }
}
