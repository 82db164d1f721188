//! Latency samples per step and errors by reason.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one run collected.
#[derive(Debug, Default)]
pub struct Samples {
    /// Step name -> latencies (insertion order of first sample kept in `order`).
    steps: BTreeMap<String, Vec<Duration>>,
    order: Vec<String>,
    /// Error reason -> count.
    pub errors: BTreeMap<String, u64>,
}

impl Samples {
    /// Records one latency.
    pub fn add(&mut self, step: &str, d: Duration) {
        if !self.steps.contains_key(step) {
            self.order.push(step.to_owned());
        }
        self.steps.entry(step.to_owned()).or_default().push(d);
    }

    /// Records an error.
    pub fn error(&mut self, reason: &str) {
        *self.errors.entry(reason.to_owned()).or_default() += 1;
    }

    /// Merges another run's samples.
    pub fn merge(&mut self, other: Samples) {
        for step in other.order {
            if let Some(v) = other.steps.get(&step) {
                for d in v {
                    self.add(&step, *d);
                }
            }
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// Number of samples of a step.
    pub fn count(&self, step: &str) -> usize {
        self.steps.get(step).map_or(0, Vec::len)
    }

    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Rows: step, n, p50, p90, p99, max (milliseconds).
    pub fn rows(&self) -> Vec<(String, usize, f64, f64, f64, f64)> {
        self.order
            .iter()
            .filter_map(|s| {
                let mut v = self.steps.get(s)?.clone();
                v.sort();
                Some((
                    s.clone(),
                    v.len(),
                    pct(&v, 50.0),
                    pct(&v, 90.0),
                    pct(&v, 99.0),
                    v.last().map_or(0.0, ms),
                ))
            })
            .collect()
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "small sample counts"
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .map_or(0.0, ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s = Samples::default();
        for i in 1..=100u64 {
            s.add("a", Duration::from_millis(i));
        }
        let rows = s.rows();
        let r = rows.first().cloned().unwrap_or_default();
        assert_eq!(r.1, 100);
        assert!((r.2 - 50.0).abs() < 1e-9);
        assert!((r.3 - 90.0).abs() < 1e-9);
        assert!((r.4 - 99.0).abs() < 1e-9);
        assert!((r.5 - 100.0).abs() < 1e-9);
    }
}
