//! Connections to lightningd's unix socket: a small pool (one connection serves one call at a
//! time), a timeout on every call, and the mapping of `cln-rpc` failures.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cln_rpc::ClnRpc;
use mostro_core::ports::{LnError, LnErrorKind};
use serde_json::Value;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// Socket missing, connection refused or dropped.
    Transport(String),
    /// No answer in time (the outcome is unknown).
    Timeout,
    /// lightningd (or the plugin) answered with an error object.
    Rpc { code: i64, message: String },
    /// The answer could not be understood.
    Parse(String),
}

impl CallError {
    /// The port error for a failure that the caller does not interpret itself.
    pub(crate) fn into_ln(self, what: &str) -> LnError {
        match self {
            CallError::Transport(m) => {
                LnError::new(LnErrorKind::Unreachable, format!("{what}: {m}"))
            },
            CallError::Timeout => {
                LnError::new(LnErrorKind::Timeout, format!("{what}: no answer in time"))
            },
            CallError::Rpc { code, message } => LnError::new(
                if unavailable(code) {
                    LnErrorKind::Unreachable
                } else {
                    LnErrorKind::Other
                },
                format!("{what}: error {code}: {message}"),
            ),
            CallError::Parse(m) => LnError::new(LnErrorKind::Other, format!("{what}: {m}")),
        }
    }
}

/// Codes meaning the command is not served right now (transient, outcome unknown):
/// `-32601` unknown command (lightningd starting, the plugin not (yet) registered or
/// restarting), `-4` the plugin terminated before replying, `-5` lightningd shutting down.
pub(crate) fn unavailable(code: i64) -> bool {
    matches!(code, -32601 | -4 | -5)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A pool of connections to one socket.
pub(crate) struct Rpc {
    path: PathBuf,
    timeout: Duration,
    idle: Mutex<Vec<ClnRpc>>,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Rpc {
    pub(crate) fn new(path: &Path, timeout: Duration) -> Self {
        Rpc {
            path: path.to_path_buf(),
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn connect(&self, limit: Duration) -> Result<ClnRpc, CallError> {
        match tokio::time::timeout(limit, ClnRpc::new(&self.path)).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) => Err(CallError::Transport(format!(
                "cannot connect to {}: {e}",
                self.path.display()
            ))),
            Ok(Ok(c)) => Ok(c),
        }
    }

    fn give_back(&self, conn: ClnRpc) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Calls `method` with the default timeout. An idempotent call that fails on a reused
    /// connection because it went stale (node restarted) is retried once on a fresh one.
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.call_within(method, params, self.timeout, true).await
    }

    /// Calls `method` within `limit`; `retry_stale` allows one retry on a fresh connection
    /// after a transport failure of a reused one (only for calls that are safe to repeat).
    pub(crate) async fn call_within(
        &self,
        method: &str,
        params: Value,
        limit: Duration,
        retry_stale: bool,
    ) -> Result<Value, CallError> {
        let pooled = lock(&self.idle).pop();
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect(limit).await?,
        };
        match self.call_on(conn, method, &params, limit).await {
            Err(CallError::Transport(_)) if reused && retry_stale => {
                tracing::debug!(method, "cln: stale connection, retrying on a fresh one");
                let conn = self.connect(limit).await?;
                self.call_on(conn, method, &params, limit).await
            },
            r => r,
        }
    }

    async fn call_on(
        &self,
        mut conn: ClnRpc,
        method: &str,
        params: &Value,
        limit: Duration,
    ) -> Result<Value, CallError> {
        let r = tokio::time::timeout(limit, conn.call_raw::<Value, Value>(method, params)).await;
        match r {
            // The connection may still deliver the late answer: drop it.
            Err(_) => Err(CallError::Timeout),
            Ok(Ok(v)) => {
                self.give_back(conn);
                error_in_result(v)
            },
            Ok(Err(e)) => match e.code {
                Some(code) => {
                    self.give_back(conn);
                    Err(CallError::Rpc {
                        code: i64::from(code),
                        message: e.message,
                    })
                },
                None if e.message.starts_with("Failed to parse")
                    || e.message.starts_with("Invalid response") =>
                {
                    Err(CallError::Parse(e.message))
                },
                None => Err(CallError::Transport(e.message)),
            },
        }
    }
}

/// daywalker90's plugin returns its errors as a *result* `{"code": .., "message": ..}`.
fn error_in_result(v: Value) -> Result<Value, CallError> {
    if let Value::Object(o) = &v
        && o.len() == 2
        && let (Some(code), Some(message)) = (
            o.get("code").and_then(Value::as_i64),
            o.get("message").and_then(Value::as_str),
        )
    {
        return Err(CallError::Rpc {
            code,
            message: message.to_owned(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_objects_inside_results_are_errors() {
        assert_eq!(
            error_in_result(json!({"code": -32602, "message": "payment_hash 'ab' not found"})),
            Err(CallError::Rpc {
                code: -32602,
                message: "payment_hash 'ab' not found".into()
            })
        );
        let ok = json!({"state": "OPEN"});
        assert_eq!(error_in_result(ok.clone()), Ok(ok));
    }

    #[test]
    fn transport_maps_to_unreachable_and_timeout_to_timeout() {
        assert_eq!(
            CallError::Transport("x".into()).into_ln("getinfo").kind,
            LnErrorKind::Unreachable
        );
        assert_eq!(
            CallError::Timeout.into_ln("getinfo").kind,
            LnErrorKind::Timeout
        );
        assert_eq!(
            CallError::Rpc {
                code: -1,
                message: "x".into()
            }
            .into_ln("getinfo")
            .kind,
            LnErrorKind::Other
        );
        for code in [-32601, -4, -5] {
            let e = CallError::Rpc {
                code,
                message: "Unknown command 'listpays'".into(),
            }
            .into_ln("listpays");
            assert_eq!(e.kind, LnErrorKind::Unreachable, "{code}");
            assert!(e.is_transient());
        }
    }
}
