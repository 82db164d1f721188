//! The multi-provider price feed behind [`PriceSource`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use mostro_core::fees::Price;
use mostro_core::ports::{Clock, PriceSource};
use mostro_core::types::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use url::Url;

use crate::http::{HttpClient, HttpError, HttpPolicy};

/// Response formats the feed understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Yadio: `GET {url}/exrates/BTC` -> `{"BTC": {"USD": 97000.5, ...}, "timestamp": ms}`.
    Yadio,
    /// CoinGecko: `GET {url}/api/v3/simple/price?ids=bitcoin&vs_currencies=usd,eur&include_last_updated_at=true`
    /// -> `{"bitcoin": {"usd": 97000.5, "eur": ..., "last_updated_at": secs}}`.
    Coingecko,
    /// Blockchain.info: `GET {url}/ticker` -> `{"USD": {"last": 97000.5, ...}, ...}`.
    Blockchain,
}

impl ProviderKind {
    /// The name used in config and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Yadio => "yadio",
            ProviderKind::Coingecko => "coingecko",
            ProviderKind::Blockchain => "blockchain",
        }
    }

    /// The public endpoint base URL of this kind.
    #[must_use]
    pub fn default_url(self) -> &'static str {
        match self {
            ProviderKind::Yadio => "https://api.yadio.io",
            ProviderKind::Coingecko => "https://api.coingecko.com",
            ProviderKind::Blockchain => "https://blockchain.info",
        }
    }
}

/// One configured provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// Response format.
    pub kind: ProviderKind,
    /// Base URL (no trailing path); the kind appends its endpoint.
    pub url: String,
}

/// Fiat codes asked from CoinGecko when no accepted-currency list is configured
/// (CoinGecko needs an explicit list).
pub const COINGECKO_DEFAULT_CURRENCIES: &[&str] = &[
    "usd", "eur", "gbp", "jpy", "cad", "aud", "chf", "cny", "brl", "ars", "mxn", "clp", "cop",
    "pen", "vef", "ves", "uyu", "inr", "krw", "rub", "try", "zar", "ngn", "php", "idr", "thb",
    "sgd", "hkd", "nzd", "sek", "nok", "dkk", "pln", "czk", "huf", "ils", "aed", "sar", "twd",
    "myr", "vnd", "uah", "kes",
];

/// Default refresh period, seconds.
pub const DEFAULT_UPDATE_INTERVAL_SECS: u64 = 300;
/// Smallest refresh period, seconds.
pub const MIN_UPDATE_INTERVAL_SECS: u64 = 60;
/// Default outlier threshold, percent from the median.
pub const DEFAULT_OUTLIER_THRESHOLD_PCT: f64 = 5.0;
/// Default per-request time limit, seconds.
pub const DEFAULT_PROVIDER_TIMEOUT_SECS: u64 = 10;

/// Settings of a [`PriceFeed`].
#[derive(Clone, Debug)]
pub struct PriceFeedConfig {
    /// Providers to poll.
    pub providers: Vec<ProviderConfig>,
    /// Refresh period (clamped to at least 60 s by [`PriceFeed::spawn`]).
    pub update_interval: Duration,
    /// Quotes farther than this percentage from the median are dropped (with at least 3
    /// providers answering).
    pub outlier_threshold_pct: f64,
    /// Time limit of one provider request.
    pub provider_timeout: Duration,
    /// Accepted fiat codes (empty = every code a provider reports).
    pub currencies: Vec<String>,
    /// A provider's last good quote takes part in the median for this long, seconds
    /// (default 1800, the daemon's `max_price_staleness_seconds`).
    pub max_quote_age_secs: u64,
    /// Largest provider response, bytes.
    pub max_response_bytes: usize,
    /// Longest a failing provider is skipped, seconds (its skip doubles on every failure).
    pub max_backoff_secs: u64,
    /// Tests only: allow plain `http://` to loopback addresses.
    pub allow_insecure_loopback: bool,
}

impl Default for PriceFeedConfig {
    fn default() -> Self {
        PriceFeedConfig {
            providers: Vec::new(),
            update_interval: Duration::from_secs(DEFAULT_UPDATE_INTERVAL_SECS),
            outlier_threshold_pct: DEFAULT_OUTLIER_THRESHOLD_PCT,
            provider_timeout: Duration::from_secs(DEFAULT_PROVIDER_TIMEOUT_SECS),
            currencies: Vec::new(),
            max_quote_age_secs: 1800,
            max_response_bytes: 1 << 20,
            max_backoff_secs: 3600,
            allow_insecure_loopback: false,
        }
    }
}

/// Why a provider round failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The body is not the expected JSON or holds no usable price.
    #[error("bad response: {0}")]
    Malformed(String),
}

/// Prices one provider reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quotes {
    /// Upper-case fiat code -> fiat per BTC (finite and positive only).
    pub prices: BTreeMap<String, f64>,
    /// The provider's own timestamp of the rates, if it gave one.
    pub provider_time: Option<Timestamp>,
}

fn valid_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 10 && code.chars().all(|c| c.is_ascii_alphanumeric())
}

fn insert_price(q: &mut Quotes, code: &str, v: Option<f64>, accepted: &[String]) {
    let Some(v) = v else { return };
    if !(v.is_finite() && v > 0.0 && valid_code(code)) {
        return;
    }
    let code = code.to_ascii_uppercase();
    if !accepted.is_empty() && !accepted.iter().any(|a| a.eq_ignore_ascii_case(&code)) {
        return;
    }
    q.prices.insert(code, v);
}

/// Seconds since the epoch from a number that may be seconds or milliseconds.
fn epoch_secs(v: &serde_json::Value) -> Option<Timestamp> {
    let n = v.as_f64()?;
    if !(n.is_finite() && n > 0.0) {
        return None;
    }
    let secs = if n > 1e11 { n / 1000.0 } else { n };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive finite value below 1e11"
    )]
    let s = secs as u64;
    Some(Timestamp(s))
}

/// Parses a provider's response body. Never panics; ignores unusable entries.
///
/// # Errors
/// `Malformed` when the body is not the expected JSON shape or holds no usable price.
pub fn parse_quotes(
    kind: ProviderKind,
    body: &[u8],
    accepted: &[String],
) -> Result<Quotes, ProviderError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed(format!("not JSON: {e}")))?;
    let mut q = Quotes::default();
    match kind {
        ProviderKind::Yadio => {
            let rates = v
                .get("BTC")
                .and_then(|b| b.as_object())
                .ok_or_else(|| ProviderError::Malformed("no \"BTC\" object".into()))?;
            for (code, p) in rates {
                insert_price(&mut q, code, p.as_f64(), accepted);
            }
            q.provider_time = v.get("timestamp").and_then(epoch_secs);
        },
        ProviderKind::Coingecko => {
            let rates = v
                .get("bitcoin")
                .and_then(|b| b.as_object())
                .ok_or_else(|| ProviderError::Malformed("no \"bitcoin\" object".into()))?;
            for (code, p) in rates {
                if code == "last_updated_at" {
                    q.provider_time = epoch_secs(p);
                    continue;
                }
                insert_price(&mut q, code, p.as_f64(), accepted);
            }
        },
        ProviderKind::Blockchain => {
            let rates = v
                .as_object()
                .ok_or_else(|| ProviderError::Malformed("not an object".into()))?;
            for (code, t) in rates {
                insert_price(
                    &mut q,
                    code,
                    t.get("last").and_then(serde_json::Value::as_f64),
                    accepted,
                );
            }
        },
    }
    if q.prices.is_empty() {
        return Err(ProviderError::Malformed("no usable price".into()));
    }
    Ok(q)
}

/// The request URL for a provider.
///
/// # Errors
/// `Malformed` if the configured base URL does not parse.
pub fn provider_url(p: &ProviderConfig, accepted: &[String]) -> Result<Url, ProviderError> {
    let base = p.url.trim().trim_end_matches('/');
    let s = match p.kind {
        ProviderKind::Yadio => format!("{base}/exrates/BTC"),
        ProviderKind::Blockchain => format!("{base}/ticker"),
        ProviderKind::Coingecko => {
            let list: Vec<String> = if accepted.is_empty() {
                COINGECKO_DEFAULT_CURRENCIES
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect()
            } else {
                accepted.iter().map(|c| c.to_ascii_lowercase()).collect()
            };
            format!(
                "{base}/api/v3/simple/price?ids=bitcoin&vs_currencies={}&include_last_updated_at=true",
                list.join(",")
            )
        },
    };
    Url::parse(&s).map_err(|e| ProviderError::Malformed(format!("bad provider URL {s}: {e}")))
}

/// The median of `v` (sorted in place); `None` if empty.
#[must_use]
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// The aggregate of several quotes: with three or more, quotes farther than `threshold_pct`
/// from the median are dropped and the median of the rest is taken. Returns the value and the
/// indices of the kept quotes; `None` when nothing usable remains.
#[must_use]
pub fn aggregate(quotes: &[f64], threshold_pct: f64) -> Option<(f64, Vec<usize>)> {
    let all: Vec<usize> = (0..quotes.len())
        .filter(|&i| quotes[i].is_finite() && quotes[i] > 0.0)
        .collect();
    let mut vals: Vec<f64> = all.iter().map(|&i| quotes[i]).collect();
    let m = median(&mut vals)?;
    if all.len() < 3 {
        return Some((m, all));
    }
    let kept: Vec<usize> = all
        .into_iter()
        .filter(|&i| ((quotes[i] - m).abs() / m) * 100.0 <= threshold_pct)
        .collect();
    let mut vals: Vec<f64> = kept.iter().map(|&i| quotes[i]).collect();
    median(&mut vals).map(|m| (m, kept))
}

/// What one provider is doing, for logs and the admin endpoint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderStatus {
    /// Kind.
    pub kind: ProviderKind,
    /// Base URL.
    pub url: String,
    /// Time of its last good quote.
    pub last_ok: Option<Timestamp>,
    /// Consecutive failures.
    pub failures: u32,
    /// Ticks it still sits out.
    pub skip_ticks: u64,
    /// Its last error.
    pub last_error: Option<String>,
}

/// Outcome of one refresh round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Providers asked this round.
    pub asked: usize,
    /// Providers that answered usefully.
    pub ok: usize,
    /// Providers that failed.
    pub failed: usize,
    /// Providers sitting out (backoff).
    pub skipped: usize,
    /// Currencies whose price was updated.
    pub updated: usize,
}

#[derive(Debug)]
struct ProviderState {
    cfg: ProviderConfig,
    last: Option<(Quotes, Timestamp)>,
    failures: u32,
    skip_ticks: u64,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    providers: Vec<ProviderState>,
    /// Quotes that reach the feed from elsewhere (trusted nodes' kind-30078 rates on Nostr),
    /// by source, with when they were published: they enter the median like a provider's.
    external: BTreeMap<String, (Quotes, Timestamp)>,
    prices: BTreeMap<String, Price>,
}

struct Inner {
    cfg: PriceFeedConfig,
    accepted: Vec<String>,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// Polls several HTTP price providers and serves per-currency medians as a [`PriceSource`].
///
/// `Price::at` is the time of the newest quote that went into the median (the fetch time, or the
/// provider's own timestamp when it is older), so the engine's staleness limit
/// (`Policy::max_price_age_secs`) refuses market orders when every provider has been failing.
/// Cloning shares the state.
#[derive(Clone)]
pub struct PriceFeed {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PriceFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriceFeed")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl PriceFeed {
    /// A feed with no price yet; call [`PriceFeed::refresh`] or [`PriceFeed::spawn`].
    ///
    /// # Errors
    /// A provider URL that does not parse or is not allowed (plain `http` outside loopback
    /// test mode), or a TLS setup failure.
    pub fn new(cfg: PriceFeedConfig, clock: Arc<dyn Clock>) -> Result<Self, ProviderError> {
        let http = HttpClient::new(HttpPolicy {
            connect_timeout: cfg.provider_timeout,
            total_timeout: cfg.provider_timeout,
            max_body_bytes: cfg.max_response_bytes,
            refuse_private: false,
            allow_insecure_loopback: cfg.allow_insecure_loopback,
            extra_roots: Vec::new(),
        })?;
        let accepted: Vec<String> = cfg
            .currencies
            .iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty())
            .collect();
        let mut providers = Vec::new();
        for p in &cfg.providers {
            let url = provider_url(p, &accepted)?;
            http.check_url(&url)?;
            providers.push(ProviderState {
                cfg: p.clone(),
                last: None,
                failures: 0,
                skip_ticks: 0,
                last_error: None,
            });
        }
        Ok(PriceFeed {
            inner: Arc::new(Inner {
                cfg,
                accepted,
                http,
                clock,
                state: Mutex::new(State {
                    providers,
                    external: BTreeMap::new(),
                    prices: BTreeMap::new(),
                }),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fetches one provider once (no state change).
    ///
    /// # Errors
    /// The request or parse failure.
    pub async fn fetch(&self, p: &ProviderConfig) -> Result<Quotes, ProviderError> {
        let url = provider_url(p, &self.inner.accepted)?;
        let body = self.inner.http.get(&url).await?;
        parse_quotes(p.kind, &body, &self.inner.accepted)
    }

    /// One round: asks every provider not in backoff (concurrently), records answers and
    /// failures, and recomputes the medians.
    pub async fn refresh(&self) -> RefreshReport {
        let now = self.inner.clock.now();
        let mut report = RefreshReport::default();
        let due: Vec<(usize, ProviderConfig)> = {
            let mut st = self.state();
            let mut due = Vec::new();
            for (i, p) in st.providers.iter_mut().enumerate() {
                if p.skip_ticks > 0 {
                    p.skip_ticks -= 1;
                    report.skipped += 1;
                } else {
                    due.push((i, p.cfg.clone()));
                }
            }
            due
        };
        report.asked = due.len();
        let results = futures::future::join_all(due.iter().map(|(_, p)| self.fetch(p))).await;
        let interval = self
            .inner
            .cfg
            .update_interval
            .as_secs()
            .max(MIN_UPDATE_INTERVAL_SECS);
        let max_skip = (self.inner.cfg.max_backoff_secs / interval).max(1);
        let mut st = self.state();
        for ((i, cfg), res) in due.iter().zip(results) {
            let Some(p) = st.providers.get_mut(*i) else {
                continue;
            };
            match res {
                Ok(q) => {
                    let at = q.provider_time.map_or(now, |t| t.min(now));
                    debug!(
                        provider = cfg.kind.as_str(),
                        prices = q.prices.len(),
                        "price quotes"
                    );
                    p.last = Some((q, at));
                    p.failures = 0;
                    p.skip_ticks = 0;
                    p.last_error = None;
                    report.ok += 1;
                },
                Err(e) => {
                    p.failures = p.failures.saturating_add(1);
                    // Sit out 0, 1, 3, 7, ... ticks after 1, 2, 3, 4, ... consecutive failures.
                    let skip = 1u64
                        .checked_shl(p.failures.saturating_sub(1).min(62))
                        .unwrap_or(u64::MAX)
                        .saturating_sub(1);
                    p.skip_ticks = skip.min(max_skip);
                    warn!(provider = cfg.kind.as_str(), url = %cfg.url, failures = p.failures, error = %e, "price provider failed");
                    p.last_error = Some(e.to_string());
                    report.failed += 1;
                },
            }
        }
        report.updated = self.recompute(&mut st, now);
        report
    }

    /// Takes the quotes of an outside source (a trusted node's published rates), published at
    /// `at` (never later than now), filtered to the accepted codes, and recomputes the medians.
    /// A source's newer quotes replace its older ones. Returns how many codes were updated.
    pub fn set_external(&self, source: &str, quotes: Quotes, at: Timestamp) -> usize {
        let now = self.inner.clock.now();
        let accepted = &self.inner.accepted;
        let mut q = Quotes::default();
        for (code, v) in &quotes.prices {
            insert_price(&mut q, code, Some(*v), accepted);
        }
        let at = Timestamp(at.0.min(now.0));
        let mut st = self.state();
        if st.external.get(source).is_some_and(|(_, old)| old.0 > at.0) {
            return 0;
        }
        st.external.insert(source.to_owned(), (q, at));
        self.recompute(&mut st, now)
    }

    fn recompute(&self, st: &mut State, now: Timestamp) -> usize {
        let min_at = now.0.saturating_sub(self.inner.cfg.max_quote_age_secs);
        let mut per_code: BTreeMap<&str, Vec<(f64, Timestamp)>> = BTreeMap::new();
        let provided = st.providers.iter().filter_map(|p| p.last.as_ref());
        for (q, at) in provided.chain(st.external.values()) {
            if at.0 < min_at {
                continue;
            }
            for (code, v) in &q.prices {
                per_code.entry(code.as_str()).or_default().push((*v, *at));
            }
        }
        let mut fresh = Vec::new();
        for (code, qs) in per_code {
            let vals: Vec<f64> = qs.iter().map(|(v, _)| *v).collect();
            match aggregate(&vals, self.inner.cfg.outlier_threshold_pct) {
                Some((m, kept)) => {
                    if kept.len() < vals.len() {
                        info!(
                            code,
                            dropped = vals.len() - kept.len(),
                            median = m,
                            "price outliers dropped"
                        );
                    }
                    let at = kept
                        .iter()
                        .filter_map(|&i| qs.get(i).map(|(_, t)| *t))
                        .max()
                        .unwrap_or(now);
                    fresh.push((
                        code.to_owned(),
                        Price {
                            fiat_per_btc: m,
                            at,
                        },
                    ));
                },
                None => warn!(
                    code,
                    quotes = vals.len(),
                    "providers disagree; price not updated"
                ),
            }
        }
        let n = fresh.len();
        for (code, p) in fresh {
            st.prices.insert(code, p);
        }
        n
    }

    /// The current aggregated prices.
    #[must_use]
    pub fn prices(&self) -> BTreeMap<String, Price> {
        self.state().prices.clone()
    }

    /// Per-provider status.
    #[must_use]
    pub fn status(&self) -> Vec<ProviderStatus> {
        self.state()
            .providers
            .iter()
            .map(|p| ProviderStatus {
                kind: p.cfg.kind,
                url: p.cfg.url.clone(),
                last_ok: p.last.as_ref().map(|(_, t)| *t),
                failures: p.failures,
                skip_ticks: p.skip_ticks,
                last_error: p.last_error.clone(),
            })
            .collect()
    }

    fn period(&self) -> Duration {
        self.inner
            .cfg
            .update_interval
            .max(Duration::from_secs(MIN_UPDATE_INTERVAL_SECS))
    }

    /// Refreshes every `update_interval` (at least 60 s) until `shutdown` resolves. The first
    /// round runs at once.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) {
        self.run_from(tokio::time::Instant::now(), shutdown).await;
    }

    async fn run_from(&self, start: tokio::time::Instant, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval_at(start, self.period());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {
                    let r = self.refresh().await;
                    debug!(?r, "price refresh");
                },
            }
        }
    }

    /// Spawns the refresh loop; its first round comes one period from now (call
    /// [`PriceFeed::refresh`] first for prices at startup). Abort the handle to stop it.
    #[must_use]
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let feed = self.clone();
        let start = tokio::time::Instant::now() + self.period();
        tokio::spawn(async move { feed.run_from(start, std::future::pending()).await })
    }
}

#[async_trait]
impl PriceSource for PriceFeed {
    async fn price(&self, fiat_code: &str) -> Option<Price> {
        let code = fiat_code.trim().to_ascii_uppercase();
        if !self.inner.accepted.is_empty() && !self.inner.accepted.contains(&code) {
            return None;
        }
        self.state().prices.get(&code).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_outliers() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        // Two providers: no outlier rule.
        assert_eq!(aggregate(&[100.0, 200.0], 5.0), Some((150.0, vec![0, 1])));
        // Three: 150 is 50 % off the median 100.
        let (m, kept) = aggregate(&[100.0, 101.0, 150.0], 5.0).unwrap();
        assert!((m - 100.5).abs() < 1e-9, "{m}");
        assert_eq!(kept, vec![0, 1]);
        // No agreement at all.
        assert_eq!(aggregate(&[100.0, 100.0, 200.0, 200.0], 5.0), None);
        assert_eq!(aggregate(&[f64::NAN, -1.0], 5.0), None);
    }

    #[test]
    fn parse_formats() {
        let y = br#"{"BTC":{"USD":97000.5,"EUR":"x","VES":-1,"ARS":1e400,"bad code!":1},"base":"BTC","timestamp":1700000000123}"#;
        // serde_json refuses 1e400 (out of range): the whole body is malformed.
        assert!(parse_quotes(ProviderKind::Yadio, y, &[]).is_err());
        let y = br#"{"BTC":{"USD":97000.5,"EUR":"x","VES":-1,"bad code!":1,"ars":9e7},"timestamp":1700000000123}"#;
        let q = parse_quotes(ProviderKind::Yadio, y, &[]).unwrap();
        assert_eq!(q.prices.len(), 2);
        assert_eq!(q.prices.get("ARS"), Some(&9e7));
        assert_eq!(q.provider_time, Some(Timestamp(1_700_000_000)));
        let g = br#"{"bitcoin":{"usd":97000,"eur":90000,"last_updated_at":1700000000}}"#;
        let q = parse_quotes(ProviderKind::Coingecko, g, &["EUR".into()]).unwrap();
        assert_eq!(q.prices.keys().collect::<Vec<_>>(), vec!["EUR"]);
        assert_eq!(q.provider_time, Some(Timestamp(1_700_000_000)));
        let b = br#"{"USD":{"15m":1,"last":97000.1,"symbol":"USD"},"EUR":{"last":null}}"#;
        let q = parse_quotes(ProviderKind::Blockchain, b, &[]).unwrap();
        assert_eq!(q.prices.len(), 1);
        for bad in [
            &b"[]"[..],
            b"",
            b"{\"BTC\":[]}",
            b"{\"BTC\":{}}",
            b"\xff\xfe",
        ] {
            assert!(parse_quotes(ProviderKind::Yadio, bad, &[]).is_err());
        }
    }

    #[test]
    fn urls() {
        let p = ProviderConfig {
            kind: ProviderKind::Coingecko,
            url: "https://api.coingecko.com/".into(),
        };
        let u = provider_url(&p, &["USD".into(), "EUR".into()]).unwrap();
        assert_eq!(
            u.as_str(),
            "https://api.coingecko.com/api/v3/simple/price?ids=bitcoin&vs_currencies=usd,eur&include_last_updated_at=true"
        );
    }
}
