//! Configuration: a TOML file, every key with a documented default, environment overrides
//! (`MOSTRO_<SECTION>_<KEY>`, e.g. `MOSTRO_MOSTRO_FEE=0.01`, `MOSTRO_LIGHTNING_LND_HOST=...`),
//! and validation that names the offending key and its accepted range.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mostro_core::policy::Policy;
use mostro_core::ports::Network;
use mostro_core::types::Sats;
use serde::{Deserialize, Serialize};

/// A configuration error, always naming the key (or the file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax or type error (the message names the key).
    #[error("config file {path}: {message}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A value out of range.
    #[error("config key `{key}` = {value}: {expected}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// An environment override that does not parse.
    #[error("environment variable {var}: {message}")]
    Env {
        /// Variable.
        var: String,
        /// Why.
        message: String,
    },
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Data directory (relative paths are relative to the config file's directory).
    pub data_dir: PathBuf,
    /// File holding the node's Nostr secret key, `nsec1...` or 64 hex (mode 0600). Relative to `data_dir`.
    pub key_file: PathBuf,
    /// Instance name for the `y` tag.
    pub name: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            data_dir: PathBuf::from("."),
            key_file: PathBuf::from("node.key"),
            name: String::new(),
        }
    }
}

/// `[nostr]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NostrSection {
    /// Relay URLs (ws:// or wss://).
    pub relays: Vec<String>,
    /// NIP-13 proof-of-work bits required on incoming events (0 = off).
    pub pow: u8,
    /// Bits required instead on a v2 message from a key with no open trade with the node (the
    /// first messages of a trade), when higher than `pow`; advertised as the larger of the two.
    pub pow_first_contact: u8,
    /// Live requests older than this many seconds are dropped: the clock skew a client may
    /// have (a request sent while the daemon was down is judged by the catch-up horizon).
    pub freshness_secs: u64,
    /// How long, in seconds, a request sent while the daemon was down (or a relay away) stays
    /// valid: at start and on every reconnect the daemon fetches what it missed, this far back
    /// at most.
    pub catch_up_horizon_secs: u64,
    /// Requests a catch-up opens (verifies and decrypts) per second at most, on all cores,
    /// beside live traffic; 0 = no bound.
    pub catch_up_rate: u32,
    /// Requests dated more than this many seconds ahead of the clock are dropped.
    pub max_future_secs: u64,
    /// NIP-40 expiration of direct messages, in days.
    pub dm_expiration_days: u64,
    /// Seconds between two publications of the info event (kind 38385); it is also published
    /// at once when maintenance mode changes.
    pub info_interval_secs: u64,
    /// Seconds between two publications of the relay list (kind 10002).
    pub relay_list_interval_secs: u64,
}

impl Default for NostrSection {
    fn default() -> Self {
        NostrSection {
            relays: vec!["ws://127.0.0.1:7000".to_owned()],
            pow: 0,
            pow_first_contact: 0,
            freshness_secs: 300,
            catch_up_horizon_secs: 86_400,
            catch_up_rate: 2_000,
            max_future_secs: 300,
            dm_expiration_days: 30,
            info_interval_secs: 300,
            relay_list_interval_secs: 60,
        }
    }
}

/// Lightning backend kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// LND over gRPC.
    Lnd,
    /// Core Lightning over its unix socket with a hold-invoice plugin.
    Cln,
}

/// `[lightning.lnd]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LndSection {
    /// gRPC URL.
    pub host: String,
    /// TLS certificate path.
    pub cert_file: PathBuf,
    /// Macaroon path (a secret: read from the file, never logged).
    pub macaroon_file: PathBuf,
}

impl Default for LndSection {
    fn default() -> Self {
        LndSection {
            host: "https://127.0.0.1:10009".to_owned(),
            cert_file: PathBuf::from("tls.cert"),
            macaroon_file: PathBuf::from("admin.macaroon"),
        }
    }
}

/// `[lightning.cln]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClnSection {
    /// Path of the `lightning-rpc` unix socket.
    pub socket: PathBuf,
}

impl Default for ClnSection {
    fn default() -> Self {
        ClnSection {
            socket: PathBuf::from("lightning-rpc"),
        }
    }
}

/// `[lightning]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LightningSection {
    /// `lnd` or `cln`.
    pub backend: Backend,
    /// Network payout invoices must be on.
    pub network: Network,
    /// Seconds a payout may take before it is reported in flight.
    pub pay_timeout_secs: u32,
    /// LND settings.
    pub lnd: LndSection,
    /// CLN settings.
    pub cln: ClnSection,
}

impl Default for LightningSection {
    fn default() -> Self {
        LightningSection {
            backend: Backend::Lnd,
            network: Network::Regtest,
            pay_timeout_secs: 30,
            lnd: LndSection::default(),
            cln: ClnSection::default(),
        }
    }
}

/// `[database]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// SQLite file (relative to `data_dir`).
    pub path: PathBuf,
    /// `full` (survives power loss; default) or `normal` (survives process crashes).
    pub synchronous: String,
    /// Seconds between two housekeeping runs (replay-guard and outbox pruning).
    pub prune_interval_secs: u64,
    /// Delivered outbox rows are kept this many days.
    pub outbox_retention_days: u64,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            path: PathBuf::from("mostro.db"),
            synchronous: "full".to_owned(),
            prune_interval_secs: 3600,
            outbox_retention_days: 7,
        }
    }
}

/// `[mostro]`: the trading policy (names follow the reference daemon's settings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MostroSection {
    /// Total fee fraction, split half/half between buyer and seller (0.006 = 0.6 %).
    pub fee: f64,
    /// Routing fee cap fraction of the payout.
    pub max_routing_fee: f64,
    /// Smallest trade, sats.
    pub min_payment_amount: u64,
    /// Largest trade, sats.
    pub max_order_amount: u64,
    /// Default pending lifetime, hours.
    pub expiration_hours: u64,
    /// Cap on a client-requested expiry, days.
    pub max_expiration_days: u64,
    /// Window of each waiting step, seconds.
    pub expiration_seconds: u64,
    /// CLTV delta of the escrow hold invoice, blocks.
    pub hold_invoice_cltv_delta: u32,
    /// The CLTV guard acts this many blocks before the escrow HTLC expires.
    pub escrow_deadline_margin_blocks: u32,
    /// Payout attempts before asking the buyer for a new invoice.
    pub payment_attempts: u32,
    /// Seconds between payout attempts.
    pub payment_retries_interval: u64,
    /// A payout invoice must stay valid at least this many seconds.
    pub invoice_expiration_window: u64,
    /// Market prices older than this are refused, seconds.
    pub max_price_staleness_seconds: u64,
    /// Accepted fiat codes (empty = all).
    pub fiat_currencies_accepted: Vec<String>,
    /// Maximum ids in an `orders` request.
    pub max_orders_per_response: u32,
    /// Largest total CLTV (blocks) a payout route may lock the node's HTLC for; payout
    /// invoices asking for a larger final CLTV are refused.
    pub max_payout_cltv: u32,
    /// Share of the node's fee paid to `dev_fee_address` after each successful trade (0 = off;
    /// otherwise 0.10-1.0, the reference's range).
    pub dev_fee_percentage: f64,
    /// The Lightning address (`user@domain`) the development fee is paid to; required when
    /// `dev_fee_percentage` is set.
    pub dev_fee_address: String,
}

impl Default for MostroSection {
    fn default() -> Self {
        MostroSection {
            fee: 0.006,
            max_routing_fee: 0.002,
            min_payment_amount: 100,
            max_order_amount: 1_000_000,
            expiration_hours: 24,
            max_expiration_days: 15,
            expiration_seconds: 900,
            hold_invoice_cltv_delta: 144,
            escrow_deadline_margin_blocks: 24,
            payment_attempts: 3,
            payment_retries_interval: 60,
            invoice_expiration_window: 3600,
            max_price_staleness_seconds: 1800,
            fiat_currencies_accepted: Vec::new(),
            max_orders_per_response: 10,
            max_payout_cltv: mostro_core::policy::DEFAULT_MAX_PAYOUT_CLTV,
            dev_fee_percentage: 0.0,
            dev_fee_address: String::new(),
        }
    }
}

/// `[prices]`: fixed prices per fiat code (fiat units per BTC) until a price feed is configured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricesSection {
    /// Fiat code -> price.
    pub fixed: BTreeMap<String, f64>,
}

/// One `[price].providers` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceProviderEntry {
    /// Response format: `yadio`, `coingecko` or `blockchain`.
    pub kind: mostro_price::ProviderKind,
    /// Base URL (https); empty = the provider's public API.
    #[serde(default)]
    pub url: String,
}

impl PriceProviderEntry {
    /// The URL to use.
    #[must_use]
    pub fn effective_url(&self) -> String {
        if self.url.trim().is_empty() {
            self.kind.default_url().to_owned()
        } else {
            self.url.trim().to_owned()
        }
    }
}

/// `[price]`: live BTC price providers (median of several, outliers dropped). With no
/// providers the fixed `[prices]` are used. The staleness limit is
/// `mostro.max_price_staleness_seconds`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceSection {
    /// Providers to poll.
    pub providers: Vec<PriceProviderEntry>,
    /// Refresh period, seconds (60-86400).
    pub update_interval_seconds: u64,
    /// Quotes farther than this percentage from the median are dropped (>= 3 providers).
    pub outlier_threshold_pct: f64,
    /// Time limit of one provider request, seconds (1-60).
    pub provider_timeout_seconds: u64,
    /// Fiat codes to fetch (empty = `mostro.fiat_currencies_accepted`, or every code).
    pub currencies: Vec<String>,
    /// Publish the node's quotes as the kind-30078 exchange-rates event (`d` = `mostro-rates`)
    /// every `update_interval_seconds` (the fixed `[prices]` when no provider is configured).
    pub publish_to_nostr: bool,
    /// Trusted Mostro nodes (npub or hex) whose published exchange rates (kind 30078) enter the
    /// median like a provider's, read from the node's relays every `update_interval_seconds`.
    pub nostr_sources: Vec<String>,
}

impl Default for PriceSection {
    fn default() -> Self {
        PriceSection {
            providers: Vec::new(),
            update_interval_seconds: mostro_price::feed::DEFAULT_UPDATE_INTERVAL_SECS,
            outlier_threshold_pct: mostro_price::feed::DEFAULT_OUTLIER_THRESHOLD_PCT,
            provider_timeout_seconds: mostro_price::feed::DEFAULT_PROVIDER_TIMEOUT_SECS,
            currencies: Vec::new(),
            publish_to_nostr: false,
            nostr_sources: Vec::new(),
        }
    }
}

impl Config {
    /// The price feed settings, when providers are configured.
    #[must_use]
    pub fn price_feed(&self) -> Option<mostro_price::PriceFeedConfig> {
        let p = &self.price;
        if p.providers.is_empty() && p.nostr_sources.is_empty() {
            return None;
        }
        let currencies = if p.currencies.is_empty() {
            self.mostro.fiat_currencies_accepted.clone()
        } else {
            p.currencies.clone()
        };
        Some(mostro_price::PriceFeedConfig {
            providers: p
                .providers
                .iter()
                .map(|e| mostro_price::ProviderConfig {
                    kind: e.kind,
                    url: e.effective_url(),
                })
                .collect(),
            update_interval: std::time::Duration::from_secs(p.update_interval_seconds),
            outlier_threshold_pct: p.outlier_threshold_pct,
            provider_timeout: std::time::Duration::from_secs(p.provider_timeout_seconds),
            currencies,
            max_quote_age_secs: self.mostro.max_price_staleness_seconds,
            ..mostro_price::PriceFeedConfig::default()
        })
    }
}

/// `[admin]`: the local admin endpoint (loopback only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Loopback address of the admin endpoint (also serves `/health` and `/metrics`).
    pub listen: SocketAddr,
    /// File holding the admin token (relative to `data_dir`).
    pub token_file: PathBuf,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 9737)),
            token_file: PathBuf::from("admin.token"),
        }
    }
}

/// `[metrics]`: an optional second listener for `/metrics` and the health endpoints only (no
/// admin API), which may be non-loopback for a Prometheus server elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// `host:port` to serve them on; unset: they are served on `admin.listen` only.
    pub listen: Option<String>,
}

impl MetricsSection {
    /// The parsed `metrics.listen` (validated at load).
    #[must_use]
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listen.as_deref().and_then(|s| s.trim().parse().ok())
    }
}

/// `[health]`: the opt-in public health report (kind 38389) of what `/health/ready` checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSection {
    /// Publish the report on Nostr.
    pub publish: bool,
    /// Seconds between two reports (the event expires after three).
    pub interval_secs: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            publish: false,
            interval_secs: 60,
        }
    }
}

/// `[profile]`: the node's public Nostr profile (kind 0 metadata), published at start when any
/// field is set (a change takes effect at the next start).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileSection {
    /// Display name (at most 100 characters).
    pub name: Option<String>,
    /// Description (at most 2000 characters).
    pub about: Option<String>,
    /// Picture URL (http or https).
    pub picture: Option<String>,
    /// Website URL (http or https).
    pub website: Option<String>,
    /// Lightning address (`user@domain`).
    pub lud16: Option<String>,
}

impl ProfileSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let text = |key: &str, v: &Option<String>, max: usize| match v {
            Some(s) if s.trim().is_empty() || s.chars().count() > max => Err(invalid(
                key,
                s,
                &format!("must be 1 to {max} characters (leave the key out for none)"),
            )),
            _ => Ok(()),
        };
        text("profile.name", &self.name, 100)?;
        text("profile.about", &self.about, 2000)?;
        for (key, v) in [
            ("profile.picture", &self.picture),
            ("profile.website", &self.website),
        ] {
            if let Some(s) = v {
                let rest = s
                    .strip_prefix("https://")
                    .or_else(|| s.strip_prefix("http://"))
                    .unwrap_or_default();
                if rest.is_empty() || s.len() > 2048 || s.chars().any(char::is_whitespace) {
                    return Err(invalid(key, s, "must be an http(s) URL"));
                }
            }
        }
        if let Some(s) = &self.lud16
            && !(s.contains('@') && mostro_core::machine::is_ln_address(s))
        {
            return Err(invalid(
                "profile.lud16",
                s,
                "must be a Lightning address (user@domain)",
            ));
        }
        Ok(())
    }

    /// The profile the transport publishes.
    #[must_use]
    pub fn profile(&self) -> mostro_nostr::events::Profile {
        mostro_nostr::events::Profile {
            name: self.name.clone(),
            about: self.about.clone(),
            picture: self.picture.clone(),
            website: self.website.clone(),
            lud16: self.lud16.clone(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[node]`.
    pub node: NodeSection,
    /// `[nostr]`.
    pub nostr: NostrSection,
    /// `[lightning]`.
    pub lightning: LightningSection,
    /// `[database]`.
    pub database: DatabaseSection,
    /// `[mostro]`.
    pub mostro: MostroSection,
    /// `[prices]`.
    pub prices: PricesSection,
    /// `[price]`.
    pub price: PriceSection,
    /// `[admin]`.
    pub admin: AdminSection,
    /// `[metrics]`.
    pub metrics: MetricsSection,
    /// `[profile]`.
    pub profile: ProfileSection,
    /// `[health]`.
    pub health: HealthSection,
    /// Directory of the config file (set at load; not a key).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Environment variables that look like settings of a known section but name no key
    /// (set at load; logged as warnings, never fatal).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

fn invalid(key: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        expected: expected.to_owned(),
    }
}

fn check_u64(key: &str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(invalid(key, v, &format!("must be between {min} and {max}")));
    }
    Ok(())
}

fn check_f64(key: &str, v: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    if !v.is_finite() || v < min || v > max {
        return Err(invalid(key, v, &format!("must be between {min} and {max}")));
    }
    Ok(())
}

fn fraction_ppm(v: f64) -> u32 {
    // Range-checked before: 0 <= v <= 1.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked range"
    )]
    let ppm = (v * 1_000_000.0).round() as u32;
    ppm
}

impl Config {
    /// Loads a file, applies environment overrides from `env`, validates.
    pub fn load(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(&text, env).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(cfg)
    }

    /// Parses TOML text plus environment overrides, then validates.
    pub fn parse(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let warnings = apply_env(&mut value, env)?;
        let mut cfg: Config = toml::Table::try_into(value).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        cfg.warnings = warnings;
        Ok(cfg)
    }

    /// Checks every range; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.profile.validate()?;
        let m = &self.mostro;
        check_f64("mostro.fee", m.fee, 0.0, 0.1)?;
        check_f64("mostro.max_routing_fee", m.max_routing_fee, 0.0, 0.05)?;
        check_u64(
            "mostro.min_payment_amount",
            m.min_payment_amount,
            1,
            2_100_000_000_000_000,
        )?;
        if m.max_order_amount <= m.min_payment_amount {
            return Err(invalid(
                "mostro.max_order_amount",
                m.max_order_amount,
                "must be greater than mostro.min_payment_amount",
            ));
        }
        check_u64("mostro.expiration_hours", m.expiration_hours, 1, 720)?;
        check_u64("mostro.max_expiration_days", m.max_expiration_days, 1, 60)?;
        check_u64("mostro.expiration_seconds", m.expiration_seconds, 5, 86_400)?;
        check_u64(
            "mostro.hold_invoice_cltv_delta",
            u64::from(m.hold_invoice_cltv_delta),
            40,
            2016,
        )?;
        if m.escrow_deadline_margin_blocks < 18
            || m.escrow_deadline_margin_blocks >= m.hold_invoice_cltv_delta
        {
            return Err(invalid(
                "mostro.escrow_deadline_margin_blocks",
                m.escrow_deadline_margin_blocks,
                "must be at least 18 and below mostro.hold_invoice_cltv_delta",
            ));
        }
        check_u64(
            "mostro.payment_attempts",
            u64::from(m.payment_attempts),
            1,
            20,
        )?;
        check_u64(
            "mostro.payment_retries_interval",
            m.payment_retries_interval,
            5,
            3600,
        )?;
        if m.payment_retries_interval <= u64::from(self.lightning.pay_timeout_secs) {
            // A payout is asked about a retry interval after its last call; that must be after
            // the call could have given up, or a payment still on its way could look absent.
            return Err(invalid(
                "mostro.payment_retries_interval",
                m.payment_retries_interval,
                "must be greater than lightning.pay_timeout_secs",
            ));
        }
        check_u64(
            "mostro.max_payout_cltv",
            u64::from(m.max_payout_cltv),
            40,
            2016,
        )?;
        if m.dev_fee_percentage != 0.0 {
            check_f64("mostro.dev_fee_percentage", m.dev_fee_percentage, 0.1, 1.0)?;
            let a = m.dev_fee_address.trim();
            if a.is_empty()
                || a.contains(char::is_whitespace)
                || !mostro_core::machine::is_ln_address(a)
            {
                return Err(invalid(
                    "mostro.dev_fee_address",
                    &m.dev_fee_address,
                    "a Lightning address (user@domain) is needed when mostro.dev_fee_percentage is set",
                ));
            }
        }
        check_u64(
            "mostro.invoice_expiration_window",
            m.invoice_expiration_window,
            0,
            86_400,
        )?;
        check_u64(
            "mostro.max_price_staleness_seconds",
            m.max_price_staleness_seconds,
            60,
            86_400,
        )?;
        check_u64(
            "mostro.max_orders_per_response",
            u64::from(m.max_orders_per_response),
            1,
            100,
        )?;
        for code in &m.fiat_currencies_accepted {
            if code.is_empty()
                || code.len() > 10
                || !code.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(invalid(
                    "mostro.fiat_currencies_accepted",
                    code,
                    "fiat codes like \"EUR\"",
                ));
            }
        }
        if self.nostr.relays.is_empty() {
            return Err(invalid("nostr.relays", "[]", "at least one relay URL"));
        }
        for r in &self.nostr.relays {
            if !(r.starts_with("ws://") || r.starts_with("wss://")) {
                return Err(invalid(
                    "nostr.relays",
                    r,
                    "URLs starting with ws:// or wss://",
                ));
            }
        }
        check_u64("nostr.pow", u64::from(self.nostr.pow), 0, 32)?;
        check_u64(
            "health.interval_secs",
            self.health.interval_secs,
            10,
            86_400,
        )?;
        check_u64(
            "nostr.pow_first_contact",
            u64::from(self.nostr.pow_first_contact),
            0,
            32,
        )?;
        check_u64("nostr.freshness_secs", self.nostr.freshness_secs, 1, 3600)?;
        check_u64("nostr.max_future_secs", self.nostr.max_future_secs, 1, 3600)?;
        check_u64(
            "database.prune_interval_secs",
            self.database.prune_interval_secs,
            60,
            86_400,
        )?;
        check_u64(
            "database.outbox_retention_days",
            self.database.outbox_retention_days,
            1,
            3650,
        )?;
        check_u64(
            "nostr.catch_up_horizon_secs",
            self.nostr.catch_up_horizon_secs,
            60,
            7 * 86_400,
        )?;
        if self.nostr.catch_up_rate != 0 {
            check_u64(
                "nostr.catch_up_rate",
                u64::from(self.nostr.catch_up_rate),
                10,
                1_000_000,
            )?;
        }
        if self.nostr.catch_up_horizon_secs < self.nostr.freshness_secs {
            return Err(invalid(
                "nostr.catch_up_horizon_secs",
                self.nostr.catch_up_horizon_secs,
                "must be at least nostr.freshness_secs",
            ));
        }
        check_u64(
            "nostr.dm_expiration_days",
            self.nostr.dm_expiration_days,
            1,
            365,
        )?;
        check_u64(
            "nostr.info_interval_secs",
            self.nostr.info_interval_secs,
            10,
            86_400,
        )?;
        check_u64(
            "nostr.relay_list_interval_secs",
            self.nostr.relay_list_interval_secs,
            10,
            86_400,
        )?;
        check_u64(
            "lightning.pay_timeout_secs",
            u64::from(self.lightning.pay_timeout_secs),
            5,
            600,
        )?;
        if !self.admin.listen.ip().is_loopback() {
            return Err(invalid(
                "admin.listen",
                self.admin.listen,
                "a loopback address (127.0.0.1 or [::1])",
            ));
        }
        if let Some(raw) = &self.metrics.listen {
            let expected =
                "an IP socket address like \"0.0.0.0:9738\" (port not 0), other than admin.listen";
            match raw.trim().parse::<SocketAddr>() {
                Ok(a) if a.port() != 0 && a != self.admin.listen => {},
                _ => return Err(invalid("metrics.listen", raw, expected)),
            }
        }
        match self.database.synchronous.as_str() {
            "full" | "normal" => {},
            other => {
                return Err(invalid(
                    "database.synchronous",
                    other,
                    "\"full\" or \"normal\"",
                ));
            },
        }
        let pr = &self.price;
        check_u64(
            "price.update_interval_seconds",
            pr.update_interval_seconds,
            mostro_price::feed::MIN_UPDATE_INTERVAL_SECS,
            86_400,
        )?;
        check_f64(
            "price.outlier_threshold_pct",
            pr.outlier_threshold_pct,
            0.1,
            100.0,
        )?;
        check_u64(
            "price.provider_timeout_seconds",
            pr.provider_timeout_seconds,
            1,
            60,
        )?;
        for e in &pr.providers {
            let url = e.effective_url();
            if !url.starts_with("https://") {
                return Err(invalid("price.providers.url", url, "an https:// URL"));
            }
        }
        for code in &pr.currencies {
            if code.is_empty()
                || code.len() > 10
                || !code.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(invalid("price.currencies", code, "fiat codes like \"EUR\""));
            }
        }
        for k in &pr.nostr_sources {
            if nostr_sdk::PublicKey::parse(k.trim()).is_err() {
                return Err(invalid(
                    "price.nostr_sources",
                    k,
                    "node public keys (npub or 64 hex characters)",
                ));
            }
        }
        for (code, p) in &self.prices.fixed {
            if !p.is_finite() || *p <= 0.0 {
                return Err(invalid(
                    &format!("prices.fixed.{code}"),
                    p,
                    "a positive price",
                ));
            }
        }
        Ok(())
    }

    /// The engine policy.
    #[must_use]
    pub fn policy(&self) -> Policy {
        let m = &self.mostro;
        Policy {
            fee_ppm: fraction_ppm(m.fee),
            max_routing_fee_ppm: fraction_ppm(m.max_routing_fee),
            min_payment_amount: Sats(m.min_payment_amount),
            max_order_amount: Sats(m.max_order_amount),
            pending_expiration_secs: m.expiration_hours.saturating_mul(3600),
            max_expiration_secs: m.max_expiration_days.saturating_mul(86_400),
            waiting_step_secs: m.expiration_seconds,
            hold_cltv_delta: m.hold_invoice_cltv_delta,
            escrow_deadline_margin_blocks: m.escrow_deadline_margin_blocks,
            payment_attempts: m.payment_attempts,
            payment_retry_secs: m.payment_retries_interval,
            invoice_expiration_window_secs: m.invoice_expiration_window,
            max_price_age_secs: m.max_price_staleness_seconds,
            fiat_currencies: m.fiat_currencies_accepted.clone(),
            max_orders_per_response: m.max_orders_per_response,
            maintenance: false,
            max_payout_cltv: m.max_payout_cltv,
            dev_fee_ppm: fraction_ppm(m.dev_fee_percentage),
            dev_fee_address: (m.dev_fee_percentage != 0.0)
                .then(|| m.dev_fee_address.trim().to_owned()),
            dev_fee_attempts: Policy::default().dev_fee_attempts,
        }
    }

    /// A path relative to the data directory.
    #[must_use]
    pub fn data_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_owned();
        }
        let data = if self.node.data_dir.is_absolute() {
            self.node.data_dir.clone()
        } else {
            self.base_dir.join(&self.node.data_dir)
        };
        data.join(p)
    }
}

/// Every settable key, dotted, for environment overrides.
const KEYS: &[&str] = &[
    "node.data_dir",
    "node.key_file",
    "node.name",
    "nostr.relays",
    "nostr.pow",
    "nostr.pow_first_contact",
    "nostr.freshness_secs",
    "nostr.catch_up_horizon_secs",
    "nostr.catch_up_rate",
    "nostr.max_future_secs",
    "nostr.dm_expiration_days",
    "nostr.info_interval_secs",
    "nostr.relay_list_interval_secs",
    "lightning.backend",
    "lightning.network",
    "lightning.pay_timeout_secs",
    "lightning.lnd.host",
    "lightning.lnd.cert_file",
    "lightning.lnd.macaroon_file",
    "lightning.cln.socket",
    "database.path",
    "database.synchronous",
    "database.prune_interval_secs",
    "database.outbox_retention_days",
    "mostro.fee",
    "mostro.max_routing_fee",
    "mostro.min_payment_amount",
    "mostro.max_order_amount",
    "mostro.expiration_hours",
    "mostro.max_expiration_days",
    "mostro.expiration_seconds",
    "mostro.hold_invoice_cltv_delta",
    "mostro.escrow_deadline_margin_blocks",
    "mostro.payment_attempts",
    "mostro.payment_retries_interval",
    "mostro.invoice_expiration_window",
    "mostro.max_price_staleness_seconds",
    "mostro.fiat_currencies_accepted",
    "mostro.max_orders_per_response",
    "mostro.max_payout_cltv",
    "mostro.dev_fee_percentage",
    "mostro.dev_fee_address",
    "price.providers",
    "price.update_interval_seconds",
    "price.outlier_threshold_pct",
    "price.provider_timeout_seconds",
    "price.currencies",
    "price.publish_to_nostr",
    "price.nostr_sources",
    "admin.listen",
    "admin.token_file",
    "metrics.listen",
    "health.publish",
    "health.interval_secs",
    "profile.name",
    "profile.about",
    "profile.picture",
    "profile.website",
    "profile.lud16",
];

fn env_name(key: &str) -> String {
    format!("MOSTRO_{}", key.replace('.', "_").to_uppercase())
}

/// Sections whose `MOSTRO_<SECTION>_...` variables are taken as meant for this daemon.
fn sections() -> Vec<String> {
    let mut v: Vec<String> = KEYS
        .iter()
        .filter_map(|k| k.split('.').next())
        .chain(["prices"])
        .map(str::to_uppercase)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Applies `MOSTRO_<SECTION>_<KEY>` overrides. Variables that name no key never stop the
/// daemon: one under a known section (`MOSTRO_MOSTRO_FEEE`) is returned as a warning, any other
/// `MOSTRO_*` name (mostro-cli's `MOSTRO_PUBKEY`, `MOSTRO_RELAYS`, `MOSTRO_CONFIG`,
/// `MOSTRO_LOG`) is ignored.
fn apply_env(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<String>, ConfigError> {
    let sections = sections();
    let mut warnings = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("MOSTRO_") else {
            continue;
        };
        let Some(key) = KEYS.iter().find(|k| env_name(k) == *var) else {
            let under_section = sections.iter().any(|s| {
                rest.strip_prefix(s.as_str())
                    .is_some_and(|r| r.starts_with('_'))
            });
            if under_section && var != "MOSTRO_CONFIG" {
                warnings.push(format!(
                    "environment variable {var} is not a known setting and is ignored (see the config reference in the README)"
                ));
            }
            continue;
        };
        // A TOML literal (number, bool, array) if it parses as one, else a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut parts: Vec<&str> = key.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        let mut cur = &mut *table;
        for p in parts {
            let entry = cur
                .entry(p.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: format!("`{p}` is not a section"),
                });
            };
            cur = t;
        }
        cur.insert(last.to_owned(), value);
    }
    Ok(warnings)
}

/// The commented config file `mostrod init` writes.
pub const TEMPLATE: &str = r#"# mostrod configuration. Every key is optional; the value shown is the default.
# Environment variables override keys: MOSTRO_<SECTION>_<KEY>, e.g. MOSTRO_MOSTRO_FEE=0.01.

[node]
# Data directory, relative to this file's directory.
data_dir = "."
# The node's Nostr secret key (nsec1... or 64 hex, file mode 0600), relative to data_dir.
# Written by `mostrod init` (or `mostrod import-settings`).
key_file = "node.key"
# Instance name published in the `y` tag.
name = ""

[nostr]
relays = ["ws://127.0.0.1:7000"]
# NIP-13 proof-of-work bits required on incoming events (0 = off).
pow = 0
# Bits required instead on a v2 message from a key with no open trade with the node (the first
# messages of a trade), when higher than pow (0-32; advertised as the larger of the two).
pow_first_contact = 0
# Live requests older than this many seconds are dropped: the clock skew a client may have.
freshness_secs = 300
# Requests sent while the daemon was down (or a relay away) are fetched and served at start and
# on every reconnect, this many seconds back at most (default a day).
catch_up_horizon_secs = 86400
# Requests of a catch-up opened (verified and decrypted) per second at most, on all cores beside
# live traffic (0 = no bound, else 10-1000000).
catch_up_rate = 2000
# Requests dated more than this many seconds ahead of the clock are dropped (1-3600).
max_future_secs = 300
dm_expiration_days = 30
# Seconds between publications of the info event (kind 38385; also at once when maintenance
# mode changes) and of the relay list (kind 10002), 10-86400.
info_interval_secs = 300
relay_list_interval_secs = 60

[lightning]
# "lnd" or "cln".
backend = "lnd"
# Network payout invoices must be on: mainnet, testnet, signet, regtest.
network = "regtest"
# Seconds a payout call waits before the payment is reported in flight (5-600); must be below
# mostro.payment_retries_interval.
pay_timeout_secs = 30

[lightning.lnd]
host = "https://127.0.0.1:10009"
cert_file = "tls.cert"
macaroon_file = "admin.macaroon"

[lightning.cln]
# Path of Core Lightning's `lightning-rpc` unix socket (needs a hold-invoice plugin).
socket = "lightning-rpc"

[database]
path = "mostro.db"
# "full" survives power loss; "normal" survives process crashes and is faster.
synchronous = "full"
# Housekeeping period, seconds (60-86400): replay-guard records too old to matter and delivered
# outbox rows older than outbox_retention_days (1-3650) are deleted.
prune_interval_secs = 3600
outbox_retention_days = 7

[mostro]
# Total fee fraction, split half/half between buyer and seller (0.006 = 0.6 %). Range 0-0.1.
fee = 0.006
# Routing fee cap as a fraction of the payout. Range 0-0.05.
max_routing_fee = 0.002
min_payment_amount = 100
max_order_amount = 1000000
# Lifetime of an untaken order, hours (1-720).
expiration_hours = 24
max_expiration_days = 15
# Window of each waiting step (invoice, hold payment), seconds (5-86400).
expiration_seconds = 900
hold_invoice_cltv_delta = 144
# The CLTV guard acts this many blocks before the escrow HTLC expires (>= 18, < cltv delta).
escrow_deadline_margin_blocks = 24
payment_attempts = 3
# Seconds between payout checks and attempts; must be greater than lightning.pay_timeout_secs.
payment_retries_interval = 60
invoice_expiration_window = 3600
max_price_staleness_seconds = 1800
# Empty accepts every fiat code.
fiat_currencies_accepted = []
max_orders_per_response = 10
# Largest total CLTV (blocks, 40-2016) a payout route may lock the node's outgoing HTLC for;
# payout invoices asking for a final CLTV at or above it are refused (invalid_invoice).
max_payout_cltv = 576
# Development fee: this share of the node's fee (both parties' parts) is paid to dev_fee_address
# after each successful trade, once, with retries (0 = off; otherwise 0.10-1.0). Each payment is
# published as a kind-8383 audit event.
dev_fee_percentage = 0.0
dev_fee_address = ""

[prices]
# Fixed prices (fiat per BTC) for market-price orders, used when [price] has no providers.
fixed = {}

[price]
# Live BTC price providers; the price is the median across them. kind: "yadio", "coingecko"
# or "blockchain"; url (https) defaults to the provider's public API. Example:
# providers = [{ kind = "yadio" }, { kind = "coingecko" }, { kind = "blockchain" }]
providers = []
# Refresh period, seconds (min 60). A failing provider is skipped for 1, 3, 7, ... periods.
update_interval_seconds = 300
# With 3+ providers, quotes farther than this percentage from the median are dropped.
outlier_threshold_pct = 5.0
provider_timeout_seconds = 10
# Fiat codes to fetch (empty = mostro.fiat_currencies_accepted, or every code).
currencies = []
# Publish the node's quotes as the kind-30078 exchange-rates event (d = "mostro-rates") every
# update_interval_seconds (the fixed [prices] when no provider is configured).
publish_to_nostr = false
# Trusted Mostro nodes (npub or hex) whose published rates (kind 30078) enter the median like a
# provider's, read from this node's relays every update_interval_seconds.
nostr_sources = []

[admin]
# Loopback endpoint for `mostrod admin ...`, /health and /metrics.
listen = "127.0.0.1:9737"
token_file = "admin.token"

[metrics]
# A second listener serving only /metrics and /health, /health/live, /health/ready (no admin
# API); it may be non-loopback for a Prometheus server on another host. Unset: they are served
# on admin.listen only.
# listen = "0.0.0.0:9738"

[health]
# Publish what /health/ready checks (store, Lightning node, relays, outbox) as a public kind-38389
# event every interval_secs (10-86400); each report expires after three intervals.
publish = false
interval_secs = 60

[profile]
# The node's public Nostr profile (kind 0), published at start when any key is set.
# name = "My Mostro"
# about = "P2P bitcoin for fiat, escrow in Lightning hold invoices"
# picture = "https://example.com/mostro.png"
# website = "https://example.com"
# lud16 = "mostro@example.com"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_defaults() {
        let cfg = Config::parse(TEMPLATE, &[]).unwrap();
        let def = Config {
            base_dir: PathBuf::new(),
            ..Config::default()
        };
        assert_eq!(cfg, def);
        assert_eq!(cfg.policy().fee_ppm, 6000);
        assert_eq!(cfg.policy(), Policy::default());
    }

    #[test]
    fn publication_intervals_are_bounded() {
        let d = Config::parse("", &[]).unwrap();
        assert_eq!(
            (d.nostr.info_interval_secs, d.nostr.relay_list_interval_secs),
            (300, 60)
        );
        for key in ["info_interval_secs", "relay_list_interval_secs"] {
            for bad in [0, 9, 86_401] {
                let e = Config::parse(&format!("[nostr]\n{key} = {bad}\n"), &[]).unwrap_err();
                assert!(e.to_string().contains(&format!("nostr.{key}")), "{e}");
            }
            let ok = Config::parse(&format!("[nostr]\n{key} = 10\n"), &[]);
            assert!(ok.is_ok(), "{key} = 10");
        }
    }

    #[test]
    fn profile_fields_are_checked_by_name() {
        let ok = Config::parse(
            "[profile]\nname = \"M\"\nwebsite = \"https://example.com\"\nlud16 = \"a@b.co\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(ok.profile.profile().name.as_deref(), Some("M"));
        assert!(!ok.profile.profile().is_empty());
        assert!(Config::parse("", &[]).unwrap().profile.profile().is_empty());
        for (text, key) in [
            ("name = \"\"", "profile.name"),
            ("picture = \"ftp://x\"", "profile.picture"),
            ("website = \"https://a b\"", "profile.website"),
            ("website = \"https://\"", "profile.website"),
            ("lud16 = \"lnurl1abcdef\"", "profile.lud16"),
            ("lud16 = \"nobody\"", "profile.lud16"),
        ] {
            let e = Config::parse(&format!("[profile]\n{text}\n"), &[]).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
        let e = Config::parse(
            &format!("[profile]\nabout = \"{}\"\n", "x".repeat(2001)),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("profile.about"), "{e}");
        let env = [("MOSTRO_PROFILE_NAME".to_owned(), "From Env".to_owned())];
        let from_env = Config::parse("", &env).unwrap();
        assert_eq!(from_env.profile.name.as_deref(), Some("From Env"));
    }

    #[test]
    fn trusted_rate_sources_are_node_keys_and_make_a_feed() {
        let e = Config::parse("[price]\nnostr_sources = [\"not-a-key\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("price.nostr_sources"), "{e}");
        let hex = "a".repeat(64);
        let ok = Config::parse(&format!("[price]\nnostr_sources = [\"{hex}\"]\n"), &[]);
        assert!(ok.is_ok_and(|c| c.price_feed().is_some()));
    }

    #[test]
    fn the_dev_fee_is_off_by_default_and_checked_when_set() {
        let p = Config::parse("", &[]).unwrap().policy();
        assert_eq!((p.dev_fee_ppm, p.dev_fee_address), (0, None));
        let ok = Config::parse(
            "[mostro]\ndev_fee_percentage = 0.3\ndev_fee_address = \"dev@example.com\"\n",
            &[],
        )
        .unwrap()
        .policy();
        assert_eq!(ok.dev_fee_ppm, 300_000);
        assert_eq!(ok.dev_fee_address.as_deref(), Some("dev@example.com"));
        for (toml, key) in [
            (
                "dev_fee_percentage = 0.05\ndev_fee_address = \"a@b.c\"",
                "mostro.dev_fee_percentage",
            ),
            (
                "dev_fee_percentage = 1.5\ndev_fee_address = \"a@b.c\"",
                "mostro.dev_fee_percentage",
            ),
            ("dev_fee_percentage = 0.3", "mostro.dev_fee_address"),
            (
                "dev_fee_percentage = 0.3\ndev_fee_address = \"lnbc1xyz\"",
                "mostro.dev_fee_address",
            ),
        ] {
            let e = Config::parse(&format!("[mostro]\n{toml}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn a_retry_interval_not_above_the_pay_timeout_is_refused() {
        let e = Config::parse(
            "[lightning]\npay_timeout_secs = 60\n[mostro]\npayment_retries_interval = 60\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("mostro.payment_retries_interval") && e.contains("pay_timeout_secs"),
            "{e}"
        );
        assert!(
            Config::parse(
                "[lightning]\npay_timeout_secs = 59\n[mostro]\npayment_retries_interval = 60\n",
                &[],
            )
            .is_ok()
        );
        let e = Config::parse("[mostro]\nmax_payout_cltv = 5000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("mostro.max_payout_cltv"), "{e}");
        let c = Config::parse("[mostro]\nmax_payout_cltv = 300\n", &[]).unwrap();
        assert_eq!(c.policy().max_payout_cltv, 300);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::parse("[mostro]\nfee = 0.5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mostro.fee") && e.contains("between 0 and 0.1"),
            "{e}"
        );
        let e = Config::parse("[mostro]\nfeee = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("feee"), "{e}");
        for bad in ["nope", "0.0.0.0:0", "127.0.0.1:9737", "example.com:80"] {
            let e = Config::parse(&format!("[metrics]\nlisten = \"{bad}\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("metrics.listen"), "{bad}: {e}");
        }
        let ok = Config::parse("[metrics]\nlisten = \"0.0.0.0:9738\"\n", &[]).unwrap();
        assert_eq!(
            ok.metrics.addr(),
            Some(SocketAddr::from(([0, 0, 0, 0], 9738)))
        );
        assert_eq!(Config::default().metrics.addr(), None);
        let env = [("MOSTRO_METRICS_LISTEN".to_owned(), "[::]:9100".to_owned())];
        let from_env = Config::parse("", &env).unwrap();
        assert_eq!(from_env.metrics.addr().map(|a| a.port()), Some(9100));
        let e = Config::parse("[admin]\nlisten = \"0.0.0.0:9737\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.listen") && e.contains("loopback"), "{e}");
        let e = Config::parse("[mostro]\nescrow_deadline_margin_blocks = 200\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("escrow_deadline_margin_blocks"), "{e}");
        let e = Config::parse("[lightning]\nbackend = \"eclair\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("backend") || e.contains("eclair"), "{e}");
    }

    #[test]
    fn price_section() {
        assert!(Config::parse("", &[]).unwrap().price_feed().is_none());
        let cfg = Config::parse(
            "[mostro]\nfiat_currencies_accepted = [\"USD\"]\nmax_price_staleness_seconds = 900\n\
             [price]\nproviders = [{ kind = \"yadio\" }, { kind = \"coingecko\", url = \"https://cg.example\" }]\n\
             update_interval_seconds = 120\n",
            &[],
        )
        .unwrap();
        let f = cfg.price_feed().unwrap();
        assert_eq!(f.providers[0].url, "https://api.yadio.io");
        assert_eq!(f.providers[1].url, "https://cg.example");
        assert_eq!(f.providers[1].kind, mostro_price::ProviderKind::Coingecko);
        assert_eq!(f.update_interval.as_secs(), 120);
        assert_eq!(f.currencies, vec!["USD"]);
        assert_eq!(f.max_quote_age_secs, 900);
        for (toml, key) in [
            (
                "[price]\nupdate_interval_seconds = 10\n",
                "price.update_interval_seconds",
            ),
            (
                "[price]\noutlier_threshold_pct = 0\n",
                "price.outlier_threshold_pct",
            ),
            (
                "[price]\nproviders = [{ kind = \"yadio\", url = \"http://x\" }]\n",
                "price.providers",
            ),
            ("[price]\nproviders = [{ kind = \"kraken\" }]\n", "kraken"),
            ("[price]\ncurrencies = [\"US D\"]\n", "price.currencies"),
        ] {
            let e = Config::parse(toml, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let env = vec![(
            "MOSTRO_PRICE_PROVIDERS".to_owned(),
            "[{ kind = \"blockchain\" }]".to_owned(),
        )];
        let cfg = Config::parse("", &env).unwrap();
        assert_eq!(
            cfg.price_feed().unwrap().providers[0].url,
            "https://blockchain.info"
        );
    }

    #[test]
    fn env_overrides() {
        let env = vec![
            ("MOSTRO_MOSTRO_FEE".to_owned(), "0.01".to_owned()),
            (
                "MOSTRO_LIGHTNING_LND_HOST".to_owned(),
                "https://10.0.0.1:10009".to_owned(),
            ),
            (
                "MOSTRO_NOSTR_RELAYS".to_owned(),
                "[\"wss://a\", \"wss://b\"]".to_owned(),
            ),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let cfg = Config::parse("", &env).unwrap();
        assert_eq!(cfg.policy().fee_ppm, 10_000);
        assert_eq!(cfg.lightning.lnd.host, "https://10.0.0.1:10009");
        assert_eq!(cfg.nostr.relays, vec!["wss://a", "wss://b"]);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let e = Config::parse("", &[("MOSTRO_MOSTRO_FEE".into(), "2".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("mostro.fee"), "{e}");
    }

    #[test]
    fn env_names_that_are_no_key_never_stop_the_daemon() {
        let env: Vec<(String, String)> = [
            ("MOSTRO_PUBKEY", "npub1xyz"),
            ("MOSTRO_RELAYS", "wss://relay.example"),
            ("MOSTRO_CONFIG", "mostrod.toml"),
            ("MOSTRO_LOG", "debug"),
            ("MOSTRO_MOSTRO_FEEE", "1"),
            ("MOSTRO_NOSTR_RELAY", "wss://typo.example"),
            ("MOSTRO_PRICES_FIXED", "{}"),
            ("MOSTRO_MOSTRO_FEE", "0.01"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let cfg = Config::parse("", &env).unwrap();
        assert_eq!(cfg.policy().fee_ppm, 10_000);
        assert_eq!(cfg.nostr.relays, NostrSection::default().relays);
        assert_eq!(cfg.warnings.len(), 3, "{:?}", cfg.warnings);
        for var in [
            "MOSTRO_MOSTRO_FEEE",
            "MOSTRO_NOSTR_RELAY",
            "MOSTRO_PRICES_FIXED",
        ] {
            assert!(
                cfg.warnings.iter().any(|w| w.contains(var)),
                "{var}: {:?}",
                cfg.warnings
            );
        }
        for var in [
            "MOSTRO_PUBKEY",
            "MOSTRO_RELAYS",
            "MOSTRO_LOG",
            "MOSTRO_CONFIG",
        ] {
            assert!(
                !cfg.warnings.iter().any(|w| w.contains(var)),
                "{var}: {:?}",
                cfg.warnings
            );
        }
    }
}
