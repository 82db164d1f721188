//! Client side of `mostrod admin ...`: one HTTP/1.1 request (hyper) to the daemon's loopback
//! admin endpoint, the status code checked, the JSON body printed raw (`--json`) or as a table.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long one admin request may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// A response: status and body.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Body text.
    pub body: String,
}

/// Sends one request and reads the whole answer (any status).
///
/// # Errors
/// The endpoint cannot be reached, or the exchange fails or times out.
pub async fn send(
    addr: SocketAddr,
    token: &str,
    method: Method,
    target: &str,
) -> anyhow::Result<Answer> {
    tokio::time::timeout(TIMEOUT, exchange(addr, token, method, target))
        .await
        .map_err(|_| anyhow!("the admin endpoint at {addr} did not answer within {TIMEOUT:?}"))?
}

async fn exchange(
    addr: SocketAddr,
    token: &str,
    method: Method,
    target: &str,
) -> anyhow::Result<Answer> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        anyhow!("cannot reach the admin endpoint at {addr}: {e} (is mostrod running?)")
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("admin endpoint: HTTP handshake")?;
    let driver = tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .context("admin request")?;
    let resp = sender
        .send_request(req)
        .await
        .context("admin endpoint: request")?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("admin endpoint: reading the answer")?
        .to_bytes();
    driver.abort();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// [`send`], and an error unless the status is 200 (the error carries the endpoint's message).
///
/// # Errors
/// As [`send`], or a non-200 status.
pub async fn request(
    addr: SocketAddr,
    token: &str,
    method: Method,
    target: &str,
) -> anyhow::Result<Value> {
    let a = send(addr, token, method, target).await?;
    let parsed: Option<Value> = serde_json::from_str(&a.body).ok();
    if a.status != StatusCode::OK {
        let msg = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| a.body.clone(), str::to_owned);
        bail!("admin endpoint answered {}: {msg}", a.status);
    }
    parsed.ok_or_else(|| anyhow!("admin endpoint answered 200 without JSON: {}", a.body))
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Lays rows out in aligned columns under `headers`.
#[must_use]
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        let mut s = String::new();
        for (c, w) in cells.zip(&widths) {
            if !first {
                s.push_str("  ");
            }
            first = false;
            let _ = write!(s, "{c:<w$}");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

/// Orders (a JSON array of the endpoint's order objects) as a table.
#[must_use]
pub fn orders_table(v: &Value) -> String {
    let list = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "no orders\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|o| {
            let dispute = o
                .get("dispute")
                .filter(|d| !d.is_null())
                .map_or_else(|| "-".to_owned(), |d| cell(d.get("status")));
            vec![
                cell(o.get("id")),
                cell(o.get("kind")),
                cell(o.get("status")),
                cell(o.get("amount")),
                format!(
                    "{} {}",
                    cell(o.get("fiat_amount")),
                    cell(o.get("fiat_code"))
                ),
                cell(o.get("created_at")),
                dispute,
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "STATUS", "SATS", "FIAT", "CREATED", "DISPUTE"],
        &rows,
    )
}

/// One order as `key: value` lines.
#[must_use]
pub fn order_detail(v: &Value) -> String {
    let mut out = String::new();
    if let Some(m) = v.as_object() {
        let w = m.keys().map(String::len).max().unwrap_or(0);
        for (k, val) in m {
            let shown = match val {
                Value::Object(_) => val.to_string(),
                other => cell(Some(other)),
            };
            let _ = writeln!(out, "{k:<w$}  {shown}");
        }
    }
    out
}

/// The alarms answer as a summary and a table of dead letters.
#[must_use]
pub fn alarms_table(v: &Value) -> String {
    let mut out = format!(
        "payout duplicates: {}\nescrows near expiry: {}\ndead letters: {}\n",
        cell(v.get("payout_duplicates")),
        cell(v.get("escrow_expiring")),
        cell(v.get("dead_letters_total")),
    );
    let list = v
        .get("dead_letters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !list.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|d| {
                vec![
                    cell(d.get("id")),
                    cell(d.get("order_id")),
                    cell(d.get("reason")),
                ]
            })
            .collect();
        out.push_str(&table(&["EFFECT", "ORDER", "REASON"], &rows));
    }
    out
}

/// Solvers as a table.
#[must_use]
pub fn solvers_table(v: &Value) -> String {
    let list = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "no solvers\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                cell(s.get("npub")),
                if s.get("write").and_then(Value::as_bool) == Some(true) {
                    "read-write".to_owned()
                } else {
                    "read-only".to_owned()
                },
            ]
        })
        .collect();
    table(&["NPUB", "PERMISSION"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_show_missing_values_as_dashes() {
        let v = json!([
            {"id": "a1", "kind": "sell", "status": "pending", "amount": 1000, "fiat_code": "USD",
             "fiat_amount": 10, "created_at": 5, "dispute": null},
            {"id": "b22222", "kind": "buy", "status": "dispute", "amount": 20, "fiat_code": "EUR",
             "fiat_amount": 2, "created_at": 6, "dispute": {"status": "initiated"}},
        ]);
        let t = orders_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("ID      KIND  STATUS"), "{t}");
        assert!(lines[1].starts_with("a1      sell  pending  1000"), "{t}");
        assert!(lines[1].ends_with('-'), "{t}");
        assert!(lines[2].ends_with("initiated"), "{t}");
        assert_eq!(orders_table(&json!([])), "no orders\n");
        let a = alarms_table(&json!({"payout_duplicates": 1, "escrow_expiring": 0,
            "dead_letters_total": 1, "dead_letters": [{"id": 7, "order_id": null, "reason": "too large"}]}));
        assert!(a.contains("payout duplicates: 1\n"), "{a}");
        assert!(a.contains("7       -      too large"), "{a}");
    }
}
