//! End-to-end: the real `mostrod` binary's health, metrics and admin CLI over real HTTP.
//!
//! The LND simulator stops under the running daemon: `/health/ready` turns 503 naming
//! `lightning` and `mostro_lightning_up` turns 0, while `/health/live` stays 200; when the
//! simulator starts again on the same port both recover. Every metric family carries a HELP
//! line; the `[metrics] listen` listener serves metrics and health but not the admin API; the
//! `mostrod admin` CLI checks status codes and prints tables or `--json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::too_many_lines,
    reason = "test code"
)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mostro_core::ports::{Clock, Network};
use mostro_nostr::Keys;
use mostro_testkit::Ledger;
use nostr_relay_builder::prelude::{
    LocalRelay, MemoryDatabase, MemoryDatabaseOptions, RelayBuilder,
};
use support::free_port;

/// How long any single wait may take.
const WAIT: Duration = Duration::from_secs(30);

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("MOSTRO_") {
            cmd.env_remove(k);
        }
    }
}

/// A running `mostrod run`; SIGKILLed on drop (its log printed when a test panics).
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(config: &Path, log: &Path) -> Daemon {
        let out = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mostrod"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        clean_env(&mut cmd);
        cmd.env("MOSTRO_LOG", "info,mostrod=debug");
        Daemon {
            child: cmd.spawn().unwrap(),
            log: log.to_owned(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "---- mostrod log ----\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// A raw HTTP/1.1 request: the status code and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

async fn get(addr: SocketAddr, target: &'static str) -> Option<(u16, String)> {
    tokio::task::spawn_blocking(move || http(addr, "GET", target, None))
        .await
        .ok()
        .flatten()
}

/// Waits (bounded by [`WAIT`]) until `cond` holds for a `GET target` answer.
async fn until(
    what: &str,
    addr: SocketAddr,
    target: &'static str,
    cond: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Some((code, body)) = get(addr, target).await {
            if cond(code, &body) {
                return (code, body);
            }
            last = Some((code, body));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; last answer {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of an unlabelled sample in OpenMetrics text.
fn sample(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().to_owned())
    })
}

/// Metric families (from `# TYPE` lines) that have no `# HELP` line.
fn families_without_help(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let names = |prefix: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    let typed = names("# TYPE ");
    let helped = names("# HELP ");
    (typed.difference(&helped).cloned().collect(), typed)
}

fn admin_cli(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mostrod"));
    cmd.arg("admin").arg("--config").arg(config).args(args);
    clean_env(&mut cmd);
    cmd.output().unwrap()
}

async fn start_relay() -> (LocalRelay, u16) {
    let relay_port = free_port();
    let relay = LocalRelay::new(
        RelayBuilder::default()
            .addr(std::net::IpAddr::from([127, 0, 0, 1]))
            .port(relay_port)
            .database(MemoryDatabase::with_opts(MemoryDatabaseOptions {
                events: true,
                max_events: None,
            })),
    );
    relay.run().await.unwrap();
    (relay, relay_port)
}

fn write_key(dir: &Path) {
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("node.key"))
            .unwrap();
        writeln!(f, "{}", Keys::generate().secret_key().to_secret_hex()).unwrap();
    }
}

fn ledger() -> Ledger {
    let clock: Arc<dyn Clock> = Arc::new(mostro_lnd_sim::SystemClock);
    Ledger::new(Network::Regtest, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_lightning_up_follow_the_lnd_node() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, relay_port) = start_relay().await;
    let sim = mostro_lnd_sim::LndSim::start(ledger(), &dir.path().join("lnd"), 0)
        .await
        .unwrap();
    write_key(dir.path());
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        r#"[nostr]
relays = ["ws://127.0.0.1:{relay_port}"]

[lightning]
backend = "lnd"
network = "regtest"

[lightning.lnd]
host = "{host}"
cert_file = "{cert}"
macaroon_file = "{mac}"

[prices]
fixed = {{ EUR = 50000.0 }}

[admin]
listen = "{admin}"

[metrics]
listen = "{metrics}"
"#,
        host = sim.host(),
        cert = sim.cert_path().display(),
        mac = sim.macaroon_path().display(),
    );
    let cfg_path = dir.path().join("mostrod.toml");
    std::fs::write(&cfg_path, config).unwrap();
    let _daemon = Daemon::spawn(&cfg_path, &dir.path().join("mostrod.log"));

    // Ready: store, Lightning and the relay all answer.
    let (_, body) = until("ready", admin, "/health/ready", |c, _| c == 200).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["failed"], serde_json::json!([]), "{v}");
    assert_eq!(v["relays"]["connected"], 1, "{v}");
    assert_eq!(
        get(admin, "/health").await.unwrap().0,
        200,
        "/health = ready"
    );
    assert_eq!(get(admin, "/health/live").await.unwrap().0, 200);

    // Metrics: every family has HELP; the expected families are there.
    let (code, text) = get(admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    let (missing, families) = families_without_help(&text);
    assert!(
        missing.is_empty(),
        "families without HELP: {missing:?}\n{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("# HELP ") && (l.ends_with("..") || l.split(' ').count() < 4)),
        "a HELP line with a doubled period or no text:\n{text}"
    );
    for f in [
        "mostro_build",
        "mostro_lightning_up",
        "mostro_lightning_connected",
        "mostro_outbox_pending",
        "mostro_outbox_dead",
        "mostro_store_commit_seconds",
        "mostro_relays_connected",
        "mostro_intake_dropped",
    ] {
        assert!(families.contains(f), "no family {f}: {families:?}");
    }
    assert!(
        text.lines().any(|l| l.starts_with("mostro_build_info{")
            && l.contains("version=\"")
            && l.contains("commit=\"")),
        "{text}"
    );
    assert_eq!(sample(&text, "mostro_lightning_up").as_deref(), Some("1"));
    assert_eq!(sample(&text, "mostro_outbox_pending").as_deref(), Some("0"));
    // A labelled family appears with its first sample (none yet: no requests, no calls).
    assert!(!families.contains("mostro_messages_in"), "{families:?}");

    // The [metrics] listener: metrics and health, no admin API.
    let (code, mtext) = get(metrics, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(families_without_help(&mtext).0.is_empty());
    assert_eq!(get(metrics, "/health/live").await.unwrap().0, 200);
    assert_eq!(get(metrics, "/admin/orders").await.unwrap().0, 404);

    // The admin API: token checked; the CLI prints tables, --json, and fails on non-200.
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let token = token.trim().to_owned();
    let bad =
        tokio::task::spawn_blocking(move || http(admin, "GET", "/admin/orders", Some("nope")))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(bad.0, 401, "{bad:?}");
    let t = token.clone();
    let good = tokio::task::spawn_blocking(move || http(admin, "GET", "/admin/orders", Some(&t)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good, (200, "[]".to_owned()));
    let out = admin_cli(&cfg_path, &["orders"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no orders");
    let out = admin_cli(&cfg_path, &["--json", "orders"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = admin_cli(
        &cfg_path,
        &["order", "6f1b5c8e-0d5e-4a53-9d59-0a3f2c0b8a11"],
    );
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404") && err.contains("no order"), "{err}");
    let out = admin_cli(&cfg_path, &["order", "not-a-uuid"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a UUID"));
    let out = admin_cli(&cfg_path, &["maintenance", "on"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("maintenance mode on"));
    let (_, text) = get(admin, "/metrics").await.unwrap();
    assert_eq!(sample(&text, "mostro_maintenance").as_deref(), Some("1"));
    let out = admin_cli(&cfg_path, &["maintenance", "off"]);
    assert!(out.status.success(), "{out:?}");

    // Solvers: add (read-write), list, remove; a bad key names the argument.
    let npub = {
        use nostr_sdk::ToBech32;
        Keys::generate().public_key().to_bech32().unwrap()
    };
    let out = admin_cli(&cfg_path, &["solvers", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no solvers",
        "{out:?}"
    );
    let out = admin_cli(&cfg_path, &["solvers", "add", &npub, "--read-write"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("read-write"),
        "{out:?}"
    );
    let out = admin_cli(&cfg_path, &["--json", "solvers", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["npub"], npub.as_str(), "{list}");
    assert_eq!(list[0]["write"], true, "{list}");
    let out = admin_cli(&cfg_path, &["solvers", "list"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains(&npub) && table.contains("read-write"),
        "{table}"
    );
    let out = admin_cli(&cfg_path, &["solvers", "remove", &npub]);
    assert!(out.status.success(), "{out:?}");
    let out = admin_cli(&cfg_path, &["solvers", "remove", &npub]);
    assert!(!out.status.success(), "second removal: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{out:?}"
    );
    let out = admin_cli(&cfg_path, &["solvers", "add", "npub1nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NPUB"),
        "{out:?}"
    );

    // LND goes away: not ready (naming lightning), lightning_up 0, still live.
    sim.stop().await;
    let (_, body) = until("not ready without LND", admin, "/health/ready", |c, _| {
        c == 503
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["failed"], serde_json::json!(["lightning"]), "{v}");
    assert_eq!(v["lightning"]["ok"], false, "{v}");
    assert!(v["lightning"]["error"].is_string(), "{v}");
    assert_eq!(get(admin, "/health").await.unwrap().0, 503);
    assert_eq!(get(metrics, "/health/ready").await.unwrap().0, 503);
    assert_eq!(get(admin, "/health/live").await.unwrap().0, 200);
    let (_, text) = get(admin, "/metrics").await.unwrap();
    assert_eq!(
        sample(&text, "mostro_lightning_up").as_deref(),
        Some("0"),
        "{text}"
    );

    // LND is back on the same port: ready again, lightning_up 1.
    sim.start_again().await.unwrap();
    until("ready again", admin, "/health/ready", |c, _| c == 200).await;
    until("lightning_up 1 again", admin, "/metrics", |c, t| {
        c == 200 && sample(t, "mostro_lightning_up").as_deref() == Some("1")
    })
    .await;
    relay.shutdown();
}

/// The same outage seen through Core Lightning: the simulator's socket goes away and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_lightning_up_follow_the_cln_node() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, relay_port) = start_relay().await;
    std::fs::create_dir_all(dir.path().join("cln")).unwrap();
    let sim = mostro_cln_sim::ClnSim::start_in(
        &dir.path().join("cln"),
        ledger(),
        mostro_cln_sim::HoldPlugin::Boltz,
    )
    .await
    .unwrap();
    write_key(dir.path());
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        r#"[nostr]
relays = ["ws://127.0.0.1:{relay_port}"]

[lightning]
backend = "cln"
network = "regtest"

[lightning.cln]
socket = "{socket}"

[prices]
fixed = {{ EUR = 50000.0 }}

[admin]
listen = "{admin}"
"#,
        socket = sim.socket_path().display(),
    );
    let cfg_path = dir.path().join("mostrod.toml");
    std::fs::write(&cfg_path, config).unwrap();
    let _daemon = Daemon::spawn(&cfg_path, &dir.path().join("mostrod.log"));
    until("ready", admin, "/health/ready", |c, _| c == 200).await;
    let (_, text) = get(admin, "/metrics").await.unwrap();
    assert_eq!(sample(&text, "mostro_lightning_up").as_deref(), Some("1"));
    assert!(families_without_help(&text).0.is_empty(), "{text}");

    sim.stop().await;
    let (_, body) = until("not ready without CLN", admin, "/health/ready", |c, _| {
        c == 503
    })
    .await;
    assert!(body.contains("\"failed\":[\"lightning\"]"), "{body}");
    let (_, text) = get(admin, "/metrics").await.unwrap();
    assert_eq!(
        sample(&text, "mostro_lightning_up").as_deref(),
        Some("0"),
        "{text}"
    );
    assert_eq!(get(admin, "/health/live").await.unwrap().0, 200);

    sim.start().unwrap();
    until("ready again", admin, "/health/ready", |c, _| c == 200).await;
    until("lightning_up 1 again", admin, "/metrics", |c, t| {
        c == 200 && sample(t, "mostro_lightning_up").as_deref() == Some("1")
    })
    .await;
    relay.shutdown();
}
