//! The daemon's HTTP endpoints (axum): health, `/metrics` (Prometheus / OpenMetrics text through
//! `prometheus-client`) and the token-protected admin API used by `mostrod admin ...`.
//!
//! - `GET /health/live`: 200 while the process serves;
//! - `GET /health/ready` (and its alias `GET /health`): 200 when the store answers, the
//!   Lightning node answered its last `GetInfo` poll and at least one relay is connected, else
//!   503; the JSON body names each check;
//! - `GET /metrics`;
//! - `GET /admin/orders[?status=<status>]`: open orders (optionally of one status), as JSON;
//! - `GET /admin/orders/{id}`: one order (open or not), as JSON (404 when unknown);
//! - `GET /admin/disputes`: orders in dispute with their dispute, as JSON;
//! - `POST /admin/maintenance?on=true|false`: refuse new orders and takes (open trades go on);
//! - `GET /admin/alarms`: duplicate / stale payouts, escrows near expiry in disputes, and the
//!   dead-lettered effects (newest 100, with their reasons);
//! - `GET /admin/solvers`: registered dispute solvers;
//! - `POST /admin/solvers?pubkey=<npub|hex>[&write=true]`: registers (or updates) a solver;
//! - `DELETE /admin/solvers/{pubkey}`: removes one (404 when not registered).
//!
//! Every request is bounded by [`REQUEST_TIMEOUT`]; the admin routes take only loopback peers
//! and compare the bearer token in constant time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use mostro_core::engine::Engine;
use mostro_core::order::{Order, Status};
use mostro_core::ports::Solver;
use mostro_core::ports::{Clock, Store};
use mostro_core::types::{OrderId, PubKey};
use mostro_nostr::NostrTransport;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::warn;

use crate::daemon::Counters;
use crate::health::LightningHealth;
use crate::metrics::{Labels, Metrics};

/// Longest time one request may take (a slow store or a stuck client gets a 503).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The git commit the binary was built from (`unknown` without git at build time).
pub const COMMIT: &str = env!("MOSTRO_GIT_COMMIT");

/// What the endpoints serve from.
pub struct State {
    /// Engine (maintenance toggle, alarms).
    pub engine: Arc<Engine>,
    /// Store (order listings, outbox depth).
    pub store: Arc<dyn Store>,
    /// Loop counters.
    pub counters: Arc<Counters>,
    /// Admin token.
    pub token: String,
    /// Port decorators' metrics.
    pub metrics: Arc<Metrics>,
    /// Lightning `GetInfo` polls.
    pub lightning: Arc<LightningHealth>,
    /// Nostr transport (relay states, inbound counters).
    pub transport: Arc<NostrTransport>,
    /// Relays in the config.
    pub relays_configured: usize,
    /// The live price feed, when one is configured (quote ages).
    pub prices: Option<Arc<mostro_price::PriceFeed>>,
    /// Clock (quote ages).
    pub clock: Arc<dyn Clock>,
}

type Shared = Arc<State>;

fn json_response(code: StatusCode, v: &serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    json_response(code, &json!({"error": msg.to_string()}))
}

/// Health and metrics only: what a `[metrics] listen` listener serves.
pub fn public_router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(timeout))
        .with_state(state)
}

/// Health, metrics and the admin API: what `[admin] listen` serves.
pub fn admin_router(state: Shared) -> Router {
    let admin = Router::new()
        .route("/admin/orders", get(orders))
        .route("/admin/orders/{id}", get(one_order))
        .route("/admin/disputes", get(disputes))
        .route("/admin/alarms", get(alarms))
        .route("/admin/maintenance", post(maintenance))
        .route("/admin/solvers", get(solvers).post(add_solver))
        .route("/admin/solvers/{pubkey}", delete(remove_solver))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state.clone());
    public_router(state).merge(admin)
}

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection (keep-alive included): a slow or idle client cannot hold a
/// connection longer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `router` (HTTP/1.1) until the task is aborted; each connection is bounded by
/// [`HEADER_TIMEOUT`] and [`CONNECTION_TIMEOUT`], each request by [`REQUEST_TIMEOUT`].
pub async fn serve(listener: TcpListener, router: Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            },
        };
        let router = router.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(req)
                },
            );
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = b.serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "HTTP connection"),
                Ok(Ok(())) => {},
                Err(_) => tracing::debug!(%peer, "HTTP connection closed after its time limit"),
            }
        });
    }
}

async fn timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

/// Constant-time check of an `Authorization: Bearer <token>` header against the token.
fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let expected = format!("Bearer {token}");
    bool::from(v.as_bytes().ct_eq(expected.as_bytes()))
}

async fn authorize(
    AxState(state): AxState<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback() {
        return error(StatusCode::FORBIDDEN, "admin API is loopback only");
    }
    if !token_ok(req.headers(), &state.token) {
        return error(StatusCode::UNAUTHORIZED, "bad or missing token");
    }
    next.run(req).await
}

fn query(raw: Option<&str>) -> BTreeMap<&str, &str> {
    raw.unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

async fn live() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn relays_connected(t: &NostrTransport) -> usize {
    t.client()
        .relays()
        .await
        .values()
        .filter(|r| r.status() == nostr_sdk::RelayStatus::Connected)
        .count()
}

/// What `/health/ready` checks: the store answers, the Lightning node answers, a relay is
/// connected. Also published as the health event (kind 38389) when `[health] publish` is on.
pub(crate) struct Readiness {
    store: Option<String>,
    lightning: Option<String>,
    relays: usize,
    relays_configured: usize,
    lightning_events: bool,
}

impl Readiness {
    pub(crate) async fn check(state: &State) -> Readiness {
        let store = state
            .store
            .next_deadline()
            .await
            .err()
            .map(|e| e.to_string());
        Readiness {
            store,
            lightning: state.lightning.problem(),
            relays: relays_connected(&state.transport).await,
            relays_configured: state.relays_configured,
            lightning_events: state.counters.node_connected.load(Ordering::Relaxed),
        }
    }

    fn failed(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        if self.store.is_some() {
            failed.push("store");
        }
        if self.lightning.is_some() {
            failed.push("lightning");
        }
        if self.relays == 0 {
            failed.push("relays");
        }
        failed
    }

    /// The report for the health event: the three checks, and the outbox depth (read by the
    /// caller, for information: a deep outbox is not a failure by itself).
    pub(crate) fn report(
        &self,
        outbox: Option<u64>,
        interval_secs: u64,
    ) -> mostro_nostr::events::Health {
        use mostro_nostr::events::HealthCheck;
        let check = |name: &str, problem: &Option<String>| HealthCheck {
            name: name.to_owned(),
            ok: problem.is_none(),
            detail: problem.clone().unwrap_or_default(),
        };
        mostro_nostr::events::Health {
            checks: vec![
                check("store", &self.store),
                check("lightning", &self.lightning),
                HealthCheck {
                    name: "relays".to_owned(),
                    ok: self.relays > 0,
                    detail: format!("{}/{}", self.relays, self.relays_configured),
                },
                HealthCheck {
                    name: "outbox".to_owned(),
                    ok: true,
                    detail: outbox.map_or_else(|| "unknown".to_owned(), |n| format!("{n} pending")),
                },
            ],
            interval_secs,
        }
    }
}

async fn ready(AxState(state): AxState<Shared>) -> Response {
    let r = Readiness::check(&state).await;
    let failed = r.failed();
    let ok = failed.is_empty();
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "failed": failed,
        "store": {"ok": r.store.is_none(), "error": r.store},
        "lightning": {"ok": r.lightning.is_none(), "error": r.lightning},
        "relays": {"ok": r.relays > 0, "connected": r.relays, "configured": r.relays_configured},
        "lightning_events": r.lightning_events,
    });
    json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

pub(crate) fn order_json(o: &Order) -> serde_json::Value {
    json!({
        "id": o.id.to_string(),
        "kind": o.kind.as_str(),
        "status": o.status.as_str(),
        "amount": o.amount.0,
        "fee": o.fee.0,
        "fiat_code": o.fiat_code,
        "fiat_amount": o.fiat_amount,
        "created_at": o.created_at.0,
        "deadline": o.deadline.map(|d| d.0),
        "dispute": o.dispute.as_ref().map(|d| json!({
            "id": d.id.to_string(),
            "status": d.status.as_str(),
            "initiator": d.initiator.as_str(),
            "solver": d.solver.map(|s| s.to_hex()),
        })),
    })
}

async fn orders(AxState(state): AxState<Shared>, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let status = match q.get("status") {
        Some(s) => match Status::parse(s) {
            Some(st) => Some(st),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown status {s}")),
        },
        None => None,
    };
    match state.store.open_orders().await {
        Ok(orders) => {
            let v: Vec<_> = orders
                .iter()
                .filter(|o| status.is_none_or(|s| o.status == s))
                .map(order_json)
                .collect();
            json_response(StatusCode::OK, &serde_json::Value::Array(v))
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn one_order(AxState(state): AxState<Shared>, Path(id): Path<String>) -> Response {
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, format!("not an order id: {id}"));
    };
    match state.store.order(OrderId(uuid)).await {
        Ok(Some(o)) => json_response(StatusCode::OK, &order_json(&o)),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no order {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn disputes(AxState(state): AxState<Shared>) -> Response {
    match state.store.open_orders().await {
        Ok(orders) => {
            let v: Vec<_> = orders
                .iter()
                .filter(|o| o.dispute.is_some())
                .map(order_json)
                .collect();
            json_response(StatusCode::OK, &serde_json::Value::Array(v))
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn alarms(AxState(state): AxState<Shared>) -> Response {
    match state.store.dead_effects(100).await {
        Ok((dead, total)) => {
            let a = state.engine.alarms();
            let list: Vec<_> = dead
                .iter()
                .map(|d| {
                    json!({
                        "id": d.id.0,
                        "order_id": d.effect.order_id().map(|o| o.to_string()),
                        "reason": d.reason,
                        "effect": serde_json::to_value(&d.effect).unwrap_or_default(),
                    })
                })
                .collect();
            let body = json!({
                "payout_duplicates": a.payout_duplicates.load(Ordering::Relaxed),
                "escrow_expiring": a.escrow_expiring.load(Ordering::Relaxed),
                "dead_letters_total": total,
                "dead_letters": list,
            });
            json_response(StatusCode::OK, &body)
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn maintenance(AxState(state): AxState<Shared>, RawQuery(raw): RawQuery) -> Response {
    let on = match query(raw.as_deref()).get("on") {
        Some(&"true") => true,
        Some(&"false") => false,
        _ => return error(StatusCode::BAD_REQUEST, "on=true|false"),
    };
    if let Err(e) = state.engine.switch_maintenance(on).await {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("maintenance mode not recorded: {e}"),
        );
    }
    warn!(maintenance = on, "maintenance mode changed by admin");
    json_response(StatusCode::OK, &json!({"maintenance": on}))
}

/// A public key from npub (bech32) or hex.
fn parse_key(s: &str) -> Option<PubKey> {
    let k = nostr_sdk::PublicKey::parse(s.trim()).ok()?;
    Some(PubKey(k.to_bytes()))
}

fn solver_json(s: &Solver) -> serde_json::Value {
    use nostr_sdk::ToBech32;
    let npub = nostr_sdk::PublicKey::from_slice(&s.identity.0)
        .ok()
        .and_then(|k| k.to_bech32().ok());
    json!({"pubkey": s.identity.to_hex(), "npub": npub, "write": s.write})
}

async fn solvers(AxState(state): AxState<Shared>) -> Response {
    match state.engine.solvers().await {
        Ok(list) => json_response(
            StatusCode::OK,
            &serde_json::Value::Array(list.iter().map(solver_json).collect()),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn add_solver(AxState(state): AxState<Shared>, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let Some(identity) = q.get("pubkey").and_then(|k| parse_key(k)) else {
        return error(StatusCode::BAD_REQUEST, "pubkey=<npub or hex public key>");
    };
    let write = match q.get("write") {
        None | Some(&"false") => false,
        Some(&"true") => true,
        Some(_) => return error(StatusCode::BAD_REQUEST, "write=true|false"),
    };
    let solver = Solver { identity, write };
    match state.engine.add_solver(solver).await {
        Ok(()) => {
            warn!(solver = %identity, write, "solver registered by admin");
            json_response(StatusCode::OK, &solver_json(&solver))
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn remove_solver(AxState(state): AxState<Shared>, Path(key): Path<String>) -> Response {
    let Some(identity) = parse_key(&key) else {
        return error(StatusCode::BAD_REQUEST, format!("not a public key: {key}"));
    };
    match state.engine.remove_solver(&identity).await {
        Ok(true) => {
            warn!(solver = %identity, "solver removed by admin");
            json_response(StatusCode::OK, &json!({"removed": identity.to_hex()}))
        },
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no solver {key}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn gauge_family() -> Family<Labels, Gauge> {
    Family::default()
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn as_i64_usize(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Builds the registry of one scrape: the long-lived metrics plus gauges read now.
pub async fn registry(state: &State) -> Registry {
    let mut r = Registry::default();
    r.register(
        "mostro_build",
        "Version and git commit of this mostrod build",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("commit", COMMIT.to_owned()),
        ]),
    );
    state.metrics.register(&mut r);

    let open = gauge_family();
    if let Ok(orders) = state.store.open_orders().await {
        let mut by_status: BTreeMap<&str, i64> = BTreeMap::new();
        for o in &orders {
            *by_status.entry(o.status.as_str()).or_default() += 1;
        }
        for (s, n) in by_status {
            open.get_or_create(&vec![("status", s.to_owned())]).set(n);
        }
    }
    r.register("mostro_open_orders", "Non-terminal orders by status", open);
    let depth = state.store.pending_effect_count().await.unwrap_or(0);
    r.register(
        "mostro_outbox_pending",
        "Outbox effects not yet done (the store's count)",
        ConstGauge::new(as_i64(depth)),
    );
    let dead = state.store.dead_effects(0).await.map_or(0, |(_, n)| n);
    r.register(
        "mostro_outbox_dead",
        "Effects given up as undeliverable (dead letters; see /admin/alarms)",
        ConstGauge::new(as_i64(dead)),
    );
    let a = state.engine.alarms();
    r.register(
        "mostro_payout_duplicate",
        "Successes the node reported for another payment hash of an already paid order, or for an earlier hash",
        ConstCounter::new(a.payout_duplicates.load(Ordering::Relaxed)),
    );
    r.register(
        "mostro_escrow_expiring",
        "Disputed trades whose escrow HTLC reached the expiry margin",
        ConstCounter::new(a.escrow_expiring.load(Ordering::Relaxed)),
    );
    let c = &state.counters;
    r.register(
        "mostro_node_events",
        "Lightning node events handled (hold invoice and payment updates, blocks)",
        ConstCounter::new(c.node_events.load(Ordering::Relaxed)),
    );
    r.register(
        "mostro_timeouts",
        "Order deadlines fired by the scheduler",
        ConstCounter::new(c.timeouts.load(Ordering::Relaxed)),
    );
    r.register(
        "mostro_effect_retries",
        "Outbox effects run again by the retry loop",
        ConstCounter::new(c.retries.load(Ordering::Relaxed)),
    );
    r.register(
        "mostro_lightning_connected",
        "1 while the Lightning node's event stream is up, 0 after it failed until it delivers again",
        ConstGauge::new(i64::from(c.node_connected.load(Ordering::Relaxed))),
    );
    r.register(
        "mostro_lightning_up",
        "1 when the Lightning node answered its last GetInfo poll (every few seconds), else 0",
        ConstGauge::new(i64::from(state.lightning.up())),
    );
    r.register(
        "mostro_maintenance",
        "1 while maintenance mode refuses new orders and takes",
        ConstGauge::new(i64::from(state.engine.policy().maintenance)),
    );
    r.register(
        "mostro_relays_connected",
        "Nostr relays connected now",
        ConstGauge::new(as_i64_usize(relays_connected(&state.transport).await)),
    );
    r.register(
        "mostro_relays_configured",
        "Nostr relays in the config",
        ConstGauge::new(as_i64_usize(state.relays_configured)),
    );
    let inbound = state.transport.inbound_stats();
    r.register(
        "mostro_intake_events",
        "Protocol events received from relays (every copy, every relay)",
        ConstCounter::new(inbound.events),
    );
    r.register(
        "mostro_intake_dropped",
        "Inbound events dropped by the intake or the mapping (replays, rate limit, bad signature, stale, ...)",
        ConstCounter::new(inbound.dropped),
    );
    let by_reason: Family<Labels, prometheus_client::metrics::counter::Counter> = Family::default();
    for (reason, n) in &inbound.drops {
        by_reason
            .get_or_create(&vec![("reason", (*reason).to_owned())])
            .inc_by(*n);
    }
    r.register(
        "mostro_intake_dropped_by_reason",
        "Inbound events dropped, by reason (stale, replay, already_processed, rate_limited, future, signature and mapping reasons, ...)",
        by_reason,
    );
    r.register(
        "mostro_intake_caught_up",
        "Requests that arrived while a subscription replayed stored events after a (re)connection",
        ConstCounter::new(inbound.caught_up),
    );
    if let Some(feed) = &state.prices {
        let now = state.clock.now().0;
        let age = gauge_family();
        for (code, p) in feed.prices() {
            age.get_or_create(&vec![("currency", code)])
                .set(as_i64(now.saturating_sub(p.at.0)));
        }
        r.register_with_unit(
            "mostro_price_quote_age",
            "Age of the aggregated price quote, by fiat currency",
            Unit::Seconds,
            age,
        );
    }
    r
}

async fn metrics(AxState(state): AxState<Shared>) -> Response {
    let r = registry(&state).await;
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!token_ok(&h, "secret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        assert!(token_ok(&h, "secret"));
        assert!(!token_ok(&h, "secreT"));
        assert!(!token_ok(&h, "secret2"));
        assert!(!token_ok(&h, ""));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secre"),
        );
        assert!(!token_ok(&h, "secret"));
    }

    #[test]
    fn queries_split_on_ampersands() {
        let q = query(Some("status=pending&x=1&junk"));
        assert_eq!(q.get("status"), Some(&"pending"));
        assert_eq!(q.get("x"), Some(&"1"));
        assert_eq!(q.len(), 2);
        assert!(query(None).is_empty());
    }
}
