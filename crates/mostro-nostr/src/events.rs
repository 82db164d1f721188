//! The node's public events, all signed by the node key with empty content:
//! orders (kind 38383), ratings (38384), node info (38385), disputes (38386)
//! and the relay list (10002).
//!
//! The tag builders take every input explicitly, `now` included, so they are
//! checked tag by tag against `testdata/protocol/vectors/orders-events.jsonl`.

use mostro_core::order::{Dispute, Order};
use mostro_core::ports::User;
use mostro_core::types::BlockHeight;
use nostr_sdk::{Event, EventBuilder, Keys, Kind, Tag, Timestamp};
use serde::Serialize;

use crate::error::WrapError;

/// Kind of an order event.
pub const KIND_ORDER: u16 = 38383;
/// Kind of a rating event.
pub const KIND_RATING: u16 = 38384;
/// Kind of the node info event.
pub const KIND_INFO: u16 = 38385;
/// Kind of a dispute event.
pub const KIND_DISPUTE: u16 = 38386;
/// Kind of the NIP-65 relay list.
pub const KIND_RELAY_LIST: u16 = 10002;
/// Kind of the node's profile (NIP-01 user metadata, replaceable).
pub const KIND_METADATA: u16 = 0;
/// Development-fee audit (a regular event, one per payment).
pub const KIND_DEV_FEE: u16 = 8383;
/// How long relays are asked to keep a development-fee audit event (365 days).
pub const DEV_FEE_EVENT_SECS: u64 = 365 * 86_400;

/// Exchange rates (addressable, `d` = `mostro-rates`), opt-in.
pub const KIND_RATES: u16 = 30_078;
/// The `d` tag of the exchange-rates event.
pub const RATES_D: &str = "mostro-rates";
/// Node health (addressable, `d` = node pubkey), opt-in.
pub const KIND_HEALTH: u16 = 38389;

/// Whether events of `kind` are addressed by a `d` tag (NIP-01 addressable kinds,
/// 30000-39999); the others the node publishes (profile, relay list) are replaceable by kind.
#[must_use]
pub const fn has_d_tag(kind: u16) -> bool {
    kind >= 30_000 && kind < 40_000
}

/// The node's public profile (kind 0 content): each field is left out when unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// Picture URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Website URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// Lightning address (LUD-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lud16: Option<String>,
}

impl Profile {
    /// Nothing to publish.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Profile::default()
    }

    /// The kind-0 content: a JSON object of the set fields, in the order above.
    #[must_use]
    pub fn content(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Seconds in a day.
const DAY: u64 = 86_400;

/// What every public event needs to know about the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishConfig {
    /// Node public key in hex (the `mostro=` part of the `source` tag).
    pub node_pubkey: String,
    /// Relay URLs, as configured (the `relays=` part of the `source` tag and
    /// the relay list).
    pub relays: Vec<String>,
    /// Lightning networks of the node (`network` tag); empty = `unknown`.
    pub networks: Vec<String>,
    /// Instance name (second value of the `y` tag), if any.
    pub name: Option<String>,
    /// NIP-40 retention of non-pending order events, in seconds (30 days).
    pub order_retention_secs: u64,
    /// NIP-40 retention of rating events, in seconds (90 days).
    pub rating_retention_secs: u64,
    /// NIP-40 retention of dispute events, in seconds (90 days).
    pub dispute_retention_secs: u64,
}

impl PublishConfig {
    /// Defaults of the reference (`[expiration]` 30 / 90 / 90 days) for a
    /// node key and relays.
    #[must_use]
    pub fn new(node_pubkey: String, relays: Vec<String>) -> Self {
        PublishConfig {
            node_pubkey,
            relays,
            networks: Vec::new(),
            name: None,
            order_retention_secs: 30 * DAY,
            rating_retention_secs: 90 * DAY,
            dispute_retention_secs: 90 * DAY,
        }
    }

    /// The platform tag `["y", "mostro", <name>?]`.
    fn y_tag(&self) -> Vec<String> {
        let mut y = vec!["y".to_owned(), "mostro".to_owned()];
        if let Some(name) = self
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            y.push(name.to_owned());
        }
        y
    }
}

/// A maker's reputation as shown in the `rating` tag of a pending order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reputation {
    /// Mean rating.
    pub total_rating: f64,
    /// Number of ratings.
    pub total_reviews: u64,
    /// First trade (unix seconds, truncated to the UTC day), if known.
    pub since: Option<u64>,
    /// Whole days from the user's creation to publish time.
    pub days: u64,
}

impl Reputation {
    /// The reputation of a user record at `now`.
    #[must_use]
    pub fn of(user: &User, now: u64) -> Self {
        let created = user.created_at.0;
        let known = created > 0;
        Reputation {
            total_rating: user.rating(),
            total_reviews: user.reviews,
            since: known.then(|| day_start(created)),
            days: if known {
                now.saturating_sub(created) / DAY
            } else {
                0
            },
        }
    }
}

/// The JSON object inside the `rating` tag; keys in alphabetical order.
#[derive(Serialize)]
struct RatingJson {
    days: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    total_rating: f64,
    total_reviews: u64,
}

fn day_start(ts: u64) -> u64 {
    ts.saturating_sub(ts % DAY)
}

fn pair(k: &str, v: impl ToString) -> Vec<String> {
    vec![k.to_owned(), v.to_string()]
}

/// The tags of an order's kind-38383 event at `now`, or `None` when the
/// order's status is not published (active, fiat-sent, dispute, ...).
///
/// Order: `d`, `k`, `f`, `s`, `amt`, `fa`, `pm`, `premium`, `network`,
/// `layer`, `published_at`, `expires_at`, `expiration`, `y`, `z`; while
/// pending, `rating` (reputation-mode makers only) is inserted at index 7 and
/// then `source` at index 8, counting from `k`.
#[must_use]
pub fn order_tags(
    order: &Order,
    cfg: &PublishConfig,
    rating: Option<&Reputation>,
    now: u64,
) -> Option<Vec<Vec<String>>> {
    let bucket = order.status.published_bucket(order.kind)?;
    let pending = bucket == "pending";
    let range_open = pending && order.is_range();
    let amt = if pending && (range_open || order.price_from_api) {
        0
    } else {
        order.amount.0
    };
    let mut fa = vec!["fa".to_owned()];
    match (range_open, order.min_amount, order.max_amount) {
        (true, Some(min), Some(max)) => {
            fa.push(min.to_string());
            fa.push(max.to_string());
        },
        _ => fa.push(order.fiat_amount.to_string()),
    }
    let mut pm = vec!["pm".to_owned()];
    pm.extend(
        order
            .payment_method
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
    );
    let expiration = if pending && order.expires_at.0 > 0 {
        order.expires_at.0
    } else {
        now.saturating_add(cfg.order_retention_secs)
    };
    let network = if cfg.networks.is_empty() {
        "unknown".to_owned()
    } else {
        cfg.networks.join(",")
    };
    let mut tags = vec![
        pair("k", order.kind.as_str()),
        pair("f", &order.fiat_code),
        pair("s", bucket),
        pair("amt", amt),
        fa,
        pm,
        pair("premium", order.premium),
        pair("network", network),
        pair("layer", "lightning"),
        pair("published_at", order.created_at.0),
        pair("expires_at", order.expires_at.0),
        pair("expiration", expiration),
        cfg.y_tag(),
        pair("z", "order"),
    ];
    if pending {
        if let Some(r) = rating.filter(|_| !order.maker.is_full_privacy()) {
            tags.insert(7, pair("rating", rating_value(r)));
        }
        let source = format!(
            "mostro:{}?relays={}&mostro={}",
            order.id,
            cfg.relays.join(","),
            cfg.node_pubkey
        );
        tags.insert(8, pair("source", source));
    }
    tags.insert(0, pair("d", order.id));
    Some(tags)
}

/// The `rating` tag value: compact JSON `["rating",{...}]`.
fn rating_value(r: &Reputation) -> String {
    let body = RatingJson {
        days: r.days,
        since: r.since,
        total_rating: r.total_rating,
        total_reviews: r.total_reviews,
    };
    serde_json::to_string(&("rating", body)).unwrap_or_default()
}

/// The tags of a kind-38386 dispute event at `now`.
#[must_use]
pub fn dispute_tags(dispute: &Dispute, cfg: &PublishConfig, now: u64) -> Vec<Vec<String>> {
    vec![
        pair("d", dispute.id),
        pair("expiration", now.saturating_add(cfg.dispute_retention_secs)),
        pair("s", dispute.status.as_str()),
        pair("initiator", dispute.initiator.as_str()),
        pair("published_at", dispute.created_at.0),
        cfg.y_tag(),
        pair("z", "dispute"),
    ]
}

/// Name of the dispute event's tag holding the escrow HTLC's expiry height.
pub const ESCROW_EXPIRY_TAG: &str = "escrow_expiry";

/// The tags of a kind-38386 dispute event at `now`: [`dispute_tags`], then, when the block
/// height at which the escrow's HTLC expires is known, `["escrow_expiry", "<height>"]` (last,
/// so the other tags keep their order). Solvers see how long they have before the seller's
/// HTLC times out.
#[must_use]
pub fn dispute_tags_with_escrow(
    dispute: &Dispute,
    escrow_expiry: Option<BlockHeight>,
    cfg: &PublishConfig,
    now: u64,
) -> Vec<Vec<String>> {
    let mut tags = dispute_tags(dispute, cfg, now);
    if let Some(BlockHeight(h)) = escrow_expiry {
        tags.push(pair(ESCROW_EXPIRY_TAG, h));
    }
    tags
}

/// The tags of the dispute event of `order` (`None` when it has no dispute), with the escrow
/// expiry of its hold invoice when known.
#[must_use]
pub fn order_dispute_tags(
    order: &Order,
    cfg: &PublishConfig,
    now: u64,
) -> Option<Vec<Vec<String>>> {
    let d = order.dispute.as_ref()?;
    let expiry = order.hold.as_ref().and_then(|h| h.htlc_expiry);
    Some(dispute_tags_with_escrow(d, expiry, cfg, now))
}

/// A rated user's aggregates, as the kind-38384 event shows them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatingSummary {
    /// Number of ratings.
    pub total_reviews: u64,
    /// Mean rating.
    pub total_rating: f64,
    /// Latest rating.
    pub last_rating: u8,
    /// Highest rating.
    pub max_rate: u8,
    /// Lowest rating.
    pub min_rate: u8,
    /// First trade (unix seconds), if known.
    pub since: Option<u64>,
    /// Whole days since the first trade.
    pub days: u64,
}

impl RatingSummary {
    /// The summary of a user record at `now`.
    #[must_use]
    pub fn of(user: &User, now: u64) -> Self {
        let r = Reputation::of(user, now);
        RatingSummary {
            total_reviews: user.reviews,
            total_rating: user.rating(),
            last_rating: user.last_rating,
            max_rate: user.max_rating,
            min_rate: user.min_rating,
            since: r.since,
            days: r.days,
        }
    }
}

/// The tags of a kind-38384 rating event at `now`; `d` is a trade pubkey in
/// hex. No `y` tag (as the reference).
#[must_use]
pub fn rating_tags(d: &str, r: &RatingSummary, cfg: &PublishConfig, now: u64) -> Vec<Vec<String>> {
    let mut tags = vec![
        pair("d", d),
        pair("expiration", now.saturating_add(cfg.rating_retention_secs)),
        pair("total_reviews", r.total_reviews),
        pair("total_rating", r.total_rating),
        pair("last_rating", r.last_rating),
        pair("max_rate", r.max_rate),
        pair("min_rate", r.min_rate),
    ];
    if let Some(since) = r.since {
        tags.push(pair("since", day_start(since)));
    }
    tags.push(pair("z", "rating"));
    tags.push(pair("days", r.days));
    tags
}

/// Lightning node facts advertised in the info event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LightningInfo {
    /// `lnd_version`.
    pub version: String,
    /// `lnd_node_pubkey`.
    pub node_pubkey: String,
    /// `lnd_commit_hash`.
    pub commit_hash: String,
    /// `lnd_node_alias`.
    pub alias: String,
    /// `lnd_chains`.
    pub chains: Vec<String>,
    /// `lnd_networks`.
    pub networks: Vec<String>,
    /// `lnd_uris`.
    pub uris: Vec<String>,
}

/// Everything the kind-38385 info event advertises.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// `mostro_version`.
    pub version: String,
    /// `mostro_commit_hash`.
    pub commit_hash: String,
    /// `max_order_amount` (sats).
    pub max_order_amount: u64,
    /// `min_order_amount` (sats).
    pub min_order_amount: u64,
    /// `expiration_hours`.
    pub expiration_hours: u64,
    /// `expiration_seconds`.
    pub expiration_seconds: u64,
    /// `fiat_currencies_accepted` (empty = all).
    pub fiat_currencies: Vec<String>,
    /// `max_orders_per_response`.
    pub max_orders_per_response: u64,
    /// `fee` (total fraction, e.g. 0.006).
    pub fee: f64,
    /// `pow`.
    pub pow: u8,
    /// First-contact proof of work (advertised as `max(pow, this)`).
    pub pow_first_contact: u8,
    /// `hold_invoice_cltv_delta`.
    pub hold_invoice_cltv_delta: u32,
    /// `escrow_deadline_margin_blocks`.
    pub escrow_deadline_margin_blocks: u32,
    /// Lightning node facts.
    pub lightning: LightningInfo,
    /// `invoice_expiration_window` (seconds).
    pub invoice_expiration_window: u64,
    /// `hold_invoice_expiration_window` (seconds).
    pub hold_invoice_expiration_window: u64,
    /// `maintenance_mode`.
    pub maintenance: bool,
}

/// The protocol version the node advertises. Clients that read `2` speak
/// kind 14; the node also still answers gift wraps.
pub const PROTOCOL_VERSION_TAG: &str = "2";

/// The tags of the kind-38385 info event (no expiration; `bond_enabled`
/// is always `false`: bonds are not implemented).
#[must_use]
pub fn info_tags(info: &NodeInfo, cfg: &PublishConfig) -> Vec<Vec<String>> {
    let ln = &info.lightning;
    vec![
        pair("d", &cfg.node_pubkey),
        pair("mostro_version", &info.version),
        pair("mostro_commit_hash", &info.commit_hash),
        pair("max_order_amount", info.max_order_amount),
        pair("min_order_amount", info.min_order_amount),
        pair("expiration_hours", info.expiration_hours),
        pair("expiration_seconds", info.expiration_seconds),
        pair("fiat_currencies_accepted", info.fiat_currencies.join(",")),
        pair("max_orders_per_response", info.max_orders_per_response),
        pair("fee", info.fee),
        pair("pow", info.pow),
        pair("pow_first_contact", info.pow.max(info.pow_first_contact)),
        pair("protocol_version", PROTOCOL_VERSION_TAG),
        cfg.y_tag(),
        pair("z", "info"),
        pair("escrow_mode", "lightning"),
        pair("hold_invoice_cltv_delta", info.hold_invoice_cltv_delta),
        pair(
            "escrow_deadline_margin_blocks",
            info.escrow_deadline_margin_blocks,
        ),
        pair("lnd_version", &ln.version),
        pair("lnd_node_pubkey", &ln.node_pubkey),
        pair("lnd_commit_hash", &ln.commit_hash),
        pair("lnd_node_alias", &ln.alias),
        pair("lnd_chains", ln.chains.join(",")),
        pair("lnd_networks", ln.networks.join(",")),
        pair("lnd_uris", ln.uris.join(",")),
        pair("invoice_expiration_window", info.invoice_expiration_window),
        pair(
            "hold_invoice_expiration_window",
            info.hold_invoice_expiration_window,
        ),
        pair("bond_enabled", false),
        pair("maintenance_mode", info.maintenance),
    ]
}

/// The node's exchange rates for the kind-30078 event: fiat units per BTC by code, and where
/// they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    /// Code -> price of one BTC in it (finite, positive).
    pub prices: std::collections::BTreeMap<String, f64>,
    /// The source label (`yadio`, the providers joined by `,`, or `fixed`).
    pub source: String,
    /// Seconds between two publications: the event expires after two, at most an hour.
    pub interval_secs: u64,
}

/// The tags of the exchange-rates event: `d` = `mostro-rates`, `published_at`, `source` and a
/// NIP-40 expiration (now + min(2 intervals, 3600 s)), in the reference's order.
#[must_use]
pub fn rates_tags(r: &Rates, now: u64) -> Vec<Vec<String>> {
    vec![
        pair("d", RATES_D),
        pair("published_at", now),
        pair("source", &r.source),
        pair(
            "expiration",
            now.saturating_add(r.interval_secs.saturating_mul(2).min(3600)),
        ),
    ]
}

/// The content of the exchange-rates event, in the Yadio format the reference uses:
/// `{"BTC":{"BTC":1,"EUR":...,"USD":...}}` (codes sorted; prices that are not finite and
/// positive are left out).
#[must_use]
pub fn rates_content(r: &Rates) -> String {
    let mut inner = serde_json::Map::new();
    inner.insert("BTC".to_owned(), serde_json::Value::from(1));
    for (code, p) in &r.prices {
        if p.is_finite() && *p > 0.0 && code != "BTC" {
            inner.insert(code.clone(), serde_json::Value::from(*p));
        }
    }
    let mut outer = serde_json::Map::new();
    outer.insert("BTC".to_owned(), serde_json::Value::Object(inner));
    serde_json::Value::Object(outer).to_string()
}

/// The tags of the development-fee audit event of `order` (kind 8383), in the reference's order:
/// `order-id`, `amount` (sats), `hash` (of the paid invoice), `destination` (the Lightning
/// address), `network`, `y`, `z` = `dev-fee-payment`, `expiration` (a year). `None` unless its
/// development fee is paid.
#[must_use]
pub fn dev_fee_tags(order: &Order, cfg: &PublishConfig, now: u64) -> Option<Vec<Vec<String>>> {
    let d = order.dev_fee.as_ref()?;
    if d.state != mostro_core::order::DevFeeState::Paid {
        return None;
    }
    let hash = d.paid_hash.or(d.hash)?;
    Some(vec![
        pair("order-id", order.id),
        pair("amount", d.amount.0),
        pair("hash", hash),
        pair("destination", &d.address),
        pair("network", cfg.networks.join(",")),
        cfg.y_tag(),
        pair("z", "dev-fee-payment"),
        pair("expiration", now.saturating_add(DEV_FEE_EVENT_SECS)),
    ])
}

/// One check of a health report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// What was checked (`store`, `lightning`, `relays`, `outbox`, ...).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// A short detail (`2/2` relays, an error message, a depth).
    pub detail: String,
}

/// What the node's readiness check found, for the kind-38389 health event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The checks, in the order published.
    pub checks: Vec<HealthCheck>,
    /// Seconds between two reports: the event expires after three.
    pub interval_secs: u64,
}

impl Health {
    /// `ok` when every check passed, else `unavailable` (the words of `/health/ready`).
    #[must_use]
    pub fn status(&self) -> &'static str {
        if self.checks.iter().all(|c| c.ok) {
            "ok"
        } else {
            "unavailable"
        }
    }
}

/// Longest detail published per check (an error message can be long).
const MAX_HEALTH_DETAIL: usize = 200;

/// The tags of the health event: `d` = node, `z` = `health`, `status`, one
/// `["check", name, "ok"|"fail", detail]` per check, the platform tag, and a NIP-40 expiration
/// three intervals ahead (a node that stopped reporting disappears from relays that honour it).
#[must_use]
pub fn health_tags(h: &Health, cfg: &PublishConfig, now: u64) -> Vec<Vec<String>> {
    let mut tags = vec![
        pair("d", &cfg.node_pubkey),
        pair("z", "health"),
        pair("status", h.status()),
    ];
    for c in &h.checks {
        let mut detail = c.detail.clone();
        if detail.len() > MAX_HEALTH_DETAIL {
            let mut end = MAX_HEALTH_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        tags.push(vec![
            "check".to_owned(),
            c.name.clone(),
            if c.ok { "ok" } else { "fail" }.to_owned(),
            detail,
        ]);
    }
    tags.push(cfg.y_tag());
    tags.push(pair(
        "expiration",
        now.saturating_add(h.interval_secs.saturating_mul(3)),
    ));
    tags
}

/// The tags of the NIP-65 relay list: one `["r", url]` per relay.
#[must_use]
pub fn relay_list_tags(relays: &[String]) -> Vec<Vec<String>> {
    relays.iter().map(|r| pair("r", r)).collect()
}

/// Signs an event of `kind` with empty content, the given tags in order and
/// `created_at`.
///
/// # Errors
///
/// [`WrapError::Build`] if a tag is empty or signing fails.
pub fn sign(
    keys: &Keys,
    kind: u16,
    tags: Vec<Vec<String>>,
    created_at: u64,
) -> Result<Event, WrapError> {
    sign_content(keys, kind, tags, "", created_at)
}

/// Signs an event of `kind` with `content`, the given tags in order and `created_at`.
///
/// # Errors
///
/// [`WrapError::Build`] if a tag is empty or signing fails.
pub fn sign_content(
    keys: &Keys,
    kind: u16,
    tags: Vec<Vec<String>>,
    content: &str,
    created_at: u64,
) -> Result<Event, WrapError> {
    let mut parsed = Vec::with_capacity(tags.len());
    for t in tags {
        parsed.push(Tag::parse(t).map_err(|e| WrapError::Build(e.to_string()))?);
    }
    EventBuilder::new(Kind::from(kind), content)
        .tags(parsed)
        .allow_self_tagging()
        .custom_created_at(Timestamp::from_secs(created_at))
        .sign_with_keys(keys)
        .map_err(|e| WrapError::Build(e.to_string()))
}
