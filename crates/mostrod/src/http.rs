//! A tiny loopback HTTP endpoint: `/health`, `/metrics` (Prometheus text) and the token-protected
//! admin API used by `mostrod admin ...`:
//! - `GET /admin/orders[?status=<status>]`: open orders (optionally of one status), as JSON;
//! - `GET /admin/disputes`: orders in dispute with their dispute, as JSON;
//! - `POST /admin/maintenance?on=true|false`: refuse new orders and takes (open trades go on);
//! - `GET /admin/alarms`: duplicate / stale payouts, escrows near expiry in disputes, and the
//!   dead-lettered effects (newest 100, with their reasons).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mostro_core::engine::Engine;
use mostro_core::order::{Order, Status};
use mostro_core::ports::Store;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::daemon::Counters;

/// What the endpoint serves from.
pub struct State {
    /// Engine (maintenance toggle).
    pub engine: Arc<Engine>,
    /// Store (order listings, outbox depth).
    pub store: Arc<dyn Store>,
    /// Loop counters.
    pub counters: Arc<Counters>,
    /// Admin token.
    pub token: String,
    /// Extra metric lines from other components (transport, Lightning).
    pub extra: Vec<Arc<dyn Fn() -> String + Send + Sync>>,
}

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((sock, peer)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(sock, peer, &state).await {
                debug!(error = %e, "admin connection");
            }
        });
    }
}

const MAX_REQUEST: usize = 16 * 1024;

async fn handle(mut sock: TcpStream, peer: SocketAddr, state: &State) -> std::io::Result<()> {
    if !peer.ip().is_loopback() {
        return Ok(());
    }
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        let n = sock.read(buf.get_mut(len..).unwrap_or_default()).await?;
        if n == 0 {
            break;
        }
        len = len.saturating_add(n);
        if buf
            .get(..len)
            .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
            || len >= MAX_REQUEST
        {
            break;
        }
    }
    let req = String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).to_string();
    let mut lines = req.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let auth = lines
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let (code, ctype, body) = route(state, method, path, &q, &auth).await;
    let resp = format!(
        "HTTP/1.1 {code}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

fn order_json(o: &Order) -> serde_json::Value {
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

async fn route(
    state: &State,
    method: &str,
    path: &str,
    q: &BTreeMap<&str, &str>,
    auth: &str,
) -> (&'static str, &'static str, String) {
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain; version=0.0.4";
    match (method, path) {
        ("GET", "/health") => {
            let node = state.counters.node_connected.load(Ordering::Relaxed);
            let store_ok = state.store.next_deadline().await.is_ok();
            let ok = store_ok;
            let body = json!({"status": if ok { "ok" } else { "degraded" }, "store": store_ok, "lightning_events": node});
            (
                if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                },
                JSON,
                body.to_string(),
            )
        },
        ("GET", "/metrics") => ("200 OK", TEXT, metrics(state).await),
        _ if path.starts_with("/admin/") => {
            if auth != format!("Bearer {}", state.token) || state.token.is_empty() {
                return (
                    "401 Unauthorized",
                    JSON,
                    json!({"error": "bad or missing token"}).to_string(),
                );
            }
            admin(state, method, path, q).await
        },
        _ => (
            "404 Not Found",
            JSON,
            json!({"error": "not found"}).to_string(),
        ),
    }
}

async fn admin(
    state: &State,
    method: &str,
    path: &str,
    q: &BTreeMap<&str, &str>,
) -> (&'static str, &'static str, String) {
    const JSON: &str = "application/json";
    let err = |m: String| {
        (
            "500 Internal Server Error",
            JSON,
            json!({"error": m}).to_string(),
        )
    };
    match (method, path) {
        ("GET", "/admin/orders") => {
            let status = match q.get("status") {
                Some(s) => match Status::parse(s) {
                    Some(st) => Some(st),
                    None => {
                        return (
                            "400 Bad Request",
                            JSON,
                            json!({"error": format!("unknown status {s}")}).to_string(),
                        );
                    },
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
                    ("200 OK", JSON, serde_json::Value::Array(v).to_string())
                },
                Err(e) => err(e.to_string()),
            }
        },
        ("GET", "/admin/disputes") => match state.store.open_orders().await {
            Ok(orders) => {
                let v: Vec<_> = orders
                    .iter()
                    .filter(|o| o.dispute.is_some())
                    .map(order_json)
                    .collect();
                ("200 OK", JSON, serde_json::Value::Array(v).to_string())
            },
            Err(e) => err(e.to_string()),
        },
        ("GET", "/admin/alarms") => match state.store.dead_effects(100).await {
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
                ("200 OK", JSON, body.to_string())
            },
            Err(e) => err(e.to_string()),
        },
        ("POST", "/admin/maintenance") => {
            let on = match q.get("on") {
                Some(&"true") => true,
                Some(&"false") => false,
                _ => {
                    return (
                        "400 Bad Request",
                        JSON,
                        json!({"error": "on=true|false"}).to_string(),
                    );
                },
            };
            if let Err(e) = state.engine.switch_maintenance(on).await {
                return err(format!("maintenance mode not recorded: {e}"));
            }
            warn!(maintenance = on, "maintenance mode changed by admin");
            ("200 OK", JSON, json!({"maintenance": on}).to_string())
        },
        _ => (
            "404 Not Found",
            JSON,
            json!({"error": "not found"}).to_string(),
        ),
    }
}

async fn metrics(state: &State) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    if let Ok(orders) = state.store.open_orders().await {
        for o in &orders {
            *by_status.entry(o.status.as_str()).or_default() += 1;
        }
    }
    let _ = writeln!(
        out,
        "# HELP mostro_open_orders Non-terminal orders by status."
    );
    let _ = writeln!(out, "# TYPE mostro_open_orders gauge");
    for (s, n) in &by_status {
        let _ = writeln!(out, "mostro_open_orders{{status=\"{s}\"}} {n}");
    }
    let depth = state
        .store
        .pending_effects(100_000)
        .await
        .map_or(0, |v| v.len());
    let _ = writeln!(
        out,
        "# TYPE mostro_outbox_pending gauge\nmostro_outbox_pending {depth}"
    );
    let dead = state.store.dead_effects(0).await.map_or(0, |(_, n)| n);
    let a = state.engine.alarms();
    let _ = writeln!(
        out,
        "# HELP mostro_outbox_dead Effects given up as undeliverable (see /admin/alarms).\n# TYPE mostro_outbox_dead gauge\nmostro_outbox_dead {dead}"
    );
    let _ = writeln!(
        out,
        "# HELP mostro_payout_duplicate_total Successes the node reported for another payment hash of an already paid order, or for an earlier hash.\n# TYPE mostro_payout_duplicate_total counter\nmostro_payout_duplicate_total {}",
        a.payout_duplicates.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP mostro_escrow_expiring_total Disputed trades whose escrow HTLC reached the expiry margin.\n# TYPE mostro_escrow_expiring_total counter\nmostro_escrow_expiring_total {}",
        a.escrow_expiring.load(Ordering::Relaxed)
    );
    let c = &state.counters;
    let _ = writeln!(
        out,
        "# TYPE mostro_node_events_total counter\nmostro_node_events_total {}",
        c.node_events.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE mostro_timeouts_total counter\nmostro_timeouts_total {}",
        c.timeouts.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE mostro_effect_retries_total counter\nmostro_effect_retries_total {}",
        c.retries.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# TYPE mostro_lightning_connected gauge\nmostro_lightning_connected {}",
        u8::from(c.node_connected.load(Ordering::Relaxed))
    );
    let _ = writeln!(
        out,
        "# TYPE mostro_maintenance gauge\nmostro_maintenance {}",
        u8::from(state.engine.policy().maintenance)
    );
    for f in &state.extra {
        out.push_str(&f());
    }
    out
}

/// Client side of `mostrod admin ...`: one request, returns the body.
pub async fn request(
    addr: SocketAddr,
    token: &str,
    method: &str,
    target: &str,
) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot reach the admin endpoint at {addr}: {e} (is mostrod running?)")
    })?;
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        anyhow::bail!("{status}: {body}");
    }
    Ok(body.to_owned())
}
