//! Readiness inputs the daemon measures itself: whether the Lightning node answers `GetInfo`
//! (polled here for both backends, so an outage shows even while no trade calls the node).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mostro_core::ports::LightningNode;
use tracing::{info, warn};

/// How often the Lightning node is asked for `GetInfo`.
pub const LIGHTNING_POLL: Duration = Duration::from_secs(3);
/// How long one `GetInfo` may take before the node counts as down.
pub const LIGHTNING_CALL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct State {
    last_ok: Option<Instant>,
    up: bool,
    last_error: Option<String>,
}

/// The last answer (or failure) of the Lightning node.
#[derive(Debug, Default)]
pub struct LightningHealth {
    state: Mutex<State>,
}

impl LightningHealth {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Records one poll's outcome.
    pub fn record(&self, outcome: Result<(), String>) {
        self.with(|s| match outcome {
            Ok(()) => {
                if !s.up && s.last_error.is_some() {
                    info!("lightning node answers again");
                }
                s.up = true;
                s.last_ok = Some(Instant::now());
                s.last_error = None;
            },
            Err(e) => {
                if s.up || s.last_error.is_none() {
                    warn!(error = %e, "lightning node does not answer GetInfo");
                }
                s.up = false;
                s.last_error = Some(e);
            },
        });
    }

    /// Whether the node answered its last poll, and that poll is recent (within one poll
    /// interval plus the call's timeout).
    #[must_use]
    pub fn up(&self) -> bool {
        self.with(|s| {
            s.up && s
                .last_ok
                .is_some_and(|t| t.elapsed() <= LIGHTNING_POLL + LIGHTNING_CALL_TIMEOUT)
        })
    }

    /// Whether at least one poll has ended (either way).
    #[must_use]
    pub fn polled(&self) -> bool {
        self.with(|s| s.last_ok.is_some() || s.last_error.is_some())
    }

    /// Why the node is not up (`None` when up).
    #[must_use]
    pub fn problem(&self) -> Option<String> {
        if self.up() {
            return None;
        }
        Some(self.with(|s| match (&s.last_error, s.last_ok) {
            (Some(e), _) => e.clone(),
            (None, Some(t)) => format!("no answer for {} s", t.elapsed().as_secs()),
            (None, None) => "not polled yet".to_owned(),
        }))
    }
}

/// Polls `node.info()` every [`LIGHTNING_POLL`] until aborted.
pub async fn poll_lightning(node: Arc<dyn LightningNode>, health: Arc<LightningHealth>) {
    let mut every = tokio::time::interval(LIGHTNING_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let outcome = match tokio::time::timeout(LIGHTNING_CALL_TIMEOUT, node.info()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "GetInfo took longer than {} s",
                LIGHTNING_CALL_TIMEOUT.as_secs()
            )),
        };
        health.record(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_follows_the_last_poll() {
        let h = LightningHealth::default();
        assert!(!h.up());
        assert_eq!(h.problem().as_deref(), Some("not polled yet"));
        h.record(Ok(()));
        assert!(h.up());
        assert_eq!(h.problem(), None);
        h.record(Err("connection refused".into()));
        assert!(!h.up());
        assert_eq!(h.problem().as_deref(), Some("connection refused"));
        h.record(Ok(()));
        assert!(h.up());
    }
}
