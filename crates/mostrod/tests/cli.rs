//! The operator commands on the real binary: `import-settings` from a settings file laid out
//! like the reference daemon's, then `run` from the result against an in-process relay and the
//! LND simulator (with mostro-cli's `MOSTRO_PUBKEY` in the environment), `key show`,
//! `check-config --connect`, `db backup|check|stats`, JSON logs, and maintenance mode kept
//! across a restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::too_many_lines,
    reason = "test code"
)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mostro_core::ports::{Clock, Network};
use mostro_testkit::Ledger;
use nostr_relay_builder::prelude::{
    LocalRelay, MemoryDatabase, MemoryDatabaseOptions, RelayBuilder,
};
use nostr_sdk::{Filter, FromBech32, Keys, Kind, SecretKey, ToBech32};
use support::free_port;

const WAIT: Duration = Duration::from_secs(20);
/// The secret key in tests/data/reference-settings.toml (the NIP-19 example).
const NSEC: &str = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5";

/// `mostrod ARGS` with a clean MOSTRO_* environment plus `env`.
fn mostrod(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mostrod"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOSTRO_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out: Output = mostrod(args, env).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mostrod {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn http(addr: SocketAddr, method: &str, target: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    Some(resp)
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn ready(&mut self, admin: SocketAddr) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("mostrod exited during start-up: {st}\n{}", self.log());
            }
            let ok = tokio::task::spawn_blocking(move || {
                http(admin, "GET", "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            })
            .await
            .unwrap();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy in time\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- mostrod log ----\n{}", self.log());
        }
    }
}

fn spawn(config: &Path, env: &[(&str, &str)], log: &Path) -> Running {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = mostrod(
        &[
            "run",
            "--log-format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ],
        env,
    )
    .stdout(f.try_clone().unwrap())
    .stderr(f)
    .spawn()
    .unwrap();
    Running {
        child,
        log: log.to_owned(),
    }
}

fn tag<'a>(tags: &'a [Vec<String>], name: &str) -> &'a str {
    tags.iter()
        .find(|t| t.first().is_some_and(|n| n == name))
        .and_then(|t| t.get(1))
        .map_or("", String::as_str)
}

/// The newest info event of `node` on the relay, as tags.
async fn info_tags(relay: &str, node: nostr_sdk::PublicKey) -> Vec<Vec<String>> {
    let client = nostr_sdk::Client::default();
    client.add_relay(relay).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let events = client
            .fetch_events(
                Filter::new().author(node).kind(Kind::Custom(38385)),
                Duration::from_secs(3),
            )
            .await
            .unwrap();
        if let Some(e) = events.into_iter().max_by_key(|e| e.created_at) {
            client.shutdown().await;
            return e.tags.iter().map(|t| t.clone().to_vec()).collect();
        }
        assert!(Instant::now() < deadline, "no info event from the node");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_reference_settings_run_against_the_lnd_simulator() {
    let dir = tempfile::tempdir().unwrap();
    // A free port can be taken by a parallel test before the relay binds it: try a few.
    let mut bound = None;
    for _ in 0..5 {
        let port = free_port();
        let relay = LocalRelay::new(
            RelayBuilder::default()
                .addr(std::net::IpAddr::from([127, 0, 0, 1]))
                .port(port)
                .database(MemoryDatabase::with_opts(MemoryDatabaseOptions {
                    events: true,
                    max_events: None,
                })),
        );
        if relay.run().await.is_ok() {
            bound = Some((relay, port));
            break;
        }
    }
    let (relay, relay_port) = bound.expect("a loopback port for the relay");
    let relay_url = format!("ws://127.0.0.1:{relay_port}");
    let clock: Arc<dyn Clock> = Arc::new(mostro_lnd_sim::SystemClock);
    let ledger = Ledger::new(Network::Regtest, clock);
    let sim = mostro_lnd_sim::LndSim::start(ledger, &dir.path().join("lnd"), 0)
        .await
        .unwrap();

    // The reference's settings.toml, pointing at the simulator and the relay.
    let settings = include_str!("data/reference-settings.toml")
        .replace("@CERT@", sim.cert_path().to_str().unwrap())
        .replace("@MACAROON@", sim.macaroon_path().to_str().unwrap())
        .replace("@HOST@", &sim.host())
        .replace("@RELAY@", &relay_url);
    let settings_path = dir.path().join("settings.toml");
    std::fs::write(&settings_path, settings).unwrap();
    let out_dir = dir.path().join("mostrod");
    let report = run_ok(
        &[
            "import-settings",
            settings_path.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    // Every key that has no equivalent is named.
    for k in [
        "lightning.lndk_enabled",
        "lightning.bip353_enabled",
        "lightning.hold_invoice_expiration_window = 300",
        "mostro.user_rates_sent_interval_seconds",
        "mostro.dev_fee_percentage",
        "expiration.order_days",
        "rpc.enabled",
        "database.url",
        "lightning.network",
    ] {
        assert!(report.contains(k), "{k} not reported:\n{report}");
    }
    for carried in [
        "mostro.fee:",
        "nostr.relays",
        "lightning.lnd_grpc_host",
        "mostro.about",
        "publish_relays_interval",
    ] {
        assert!(!report.contains(carried), "{carried} reported:\n{report}");
    }
    let expected_npub = Keys::new(SecretKey::from_bech32(NSEC).unwrap())
        .public_key()
        .to_bech32()
        .unwrap();
    assert!(report.contains(&expected_npub), "{report}");
    // A second import into the same directory is refused.
    let again = mostrod(
        &[
            "import-settings",
            settings_path.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!again.status.success());

    // The mapped values.
    let cfg_path = out_dir.join("mostrod.toml");
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let get = |s: &str, k: &str| cfg[s][k].clone();
    assert_eq!(
        get("nostr", "relays"),
        toml::Value::Array(vec![relay_url.clone().into()])
    );
    assert_eq!(get("mostro", "fee").as_float(), Some(0.004));
    assert_eq!(
        get("nostr", "relay_list_interval_secs").as_integer(),
        Some(60)
    );
    // The reference's kind-0 profile keys become [profile].
    assert_eq!(get("profile", "name").as_str(), Some("Imported Mostro"));
    assert_eq!(
        get("profile", "about").as_str(),
        Some("converted in a test")
    );
    assert_eq!(get("mostro", "max_routing_fee").as_float(), Some(0.001));
    assert_eq!(
        get("mostro", "max_order_amount").as_integer(),
        Some(500_000)
    );
    assert_eq!(get("mostro", "min_payment_amount").as_integer(), Some(1000));
    assert_eq!(get("mostro", "expiration_hours").as_integer(), Some(12));
    assert_eq!(get("mostro", "max_expiration_days").as_integer(), Some(10));
    assert_eq!(get("mostro", "expiration_seconds").as_integer(), Some(600));
    assert_eq!(
        get("mostro", "invoice_expiration_window").as_integer(),
        Some(1800)
    );
    assert_eq!(
        get("mostro", "hold_invoice_cltv_delta").as_integer(),
        Some(150)
    );
    assert_eq!(get("mostro", "payment_attempts").as_integer(), Some(4));
    assert_eq!(
        get("mostro", "payment_retries_interval").as_integer(),
        Some(90)
    );
    assert_eq!(
        get("mostro", "max_orders_per_response").as_integer(),
        Some(20)
    );
    assert_eq!(get("node", "name").as_str(), Some("Imported Mostro"));
    assert_eq!(
        get("lightning", "lnd")["host"].as_str(),
        Some(sim.host().as_str())
    );
    assert_eq!(
        get("price", "providers")[0]["kind"].as_str(),
        Some("yadio"),
        "bitcoin_price_api_url became a Yadio provider"
    );
    assert_eq!(
        get("database", "path")
            .as_str()
            .map(|p| p.ends_with("mostrod.db")),
        Some(true)
    );

    // key show: npub and hex; the nsec only when asked.
    let cfg_arg = cfg_path.to_str().unwrap();
    let shown = run_ok(&["key", "show", "--config", cfg_arg], &[]);
    assert!(
        shown.contains(&expected_npub) && !shown.contains("nsec1"),
        "{shown}"
    );
    let shown = run_ok(&["key", "show", "--nsec", "--config", cfg_arg], &[]);
    assert!(shown.contains(NSEC), "{shown}");

    // Run it: no live price API in a test (an override), a free admin port, and mostro-cli's
    // own variables in the environment, which must not stop the daemon.
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin_s = admin.to_string();
    let env = [
        ("MOSTRO_PRICE_PROVIDERS", "[]"),
        ("MOSTRO_ADMIN_LISTEN", admin_s.as_str()),
        ("MOSTRO_PUBKEY", expected_npub.as_str()),
        ("MOSTRO_RELAYS", "wss://relay.example"),
        ("MOSTRO_MOSTRO_FEEE", "1"),
        ("MOSTRO_LOG", "info"),
    ];
    let log = dir.path().join("mostrod.log");
    let mut d = spawn(&cfg_path, &env, &log);
    d.ready(admin).await;
    let node = Keys::new(SecretKey::from_bech32(NSEC).unwrap()).public_key();
    let tags = info_tags(&relay_url, node).await;
    assert_eq!(tag(&tags, "max_order_amount"), "500000");
    assert_eq!(tag(&tags, "min_order_amount"), "1000");
    assert_eq!(tag(&tags, "expiration_hours"), "12");
    assert_eq!(tag(&tags, "expiration_seconds"), "600");
    assert_eq!(tag(&tags, "fee"), "0.004");
    assert_eq!(tag(&tags, "fiat_currencies_accepted"), "USD,EUR,ARS,CUP");
    assert_eq!(tag(&tags, "hold_invoice_cltv_delta"), "150");
    assert_eq!(tag(&tags, "invoice_expiration_window"), "1800");
    assert_eq!(tag(&tags, "maintenance_mode"), "false");
    // The Lightning node's own facts (the LND simulator behind the real LND adapter).
    assert_eq!(tag(&tags, "lnd_chains"), "bitcoin");
    assert_eq!(
        tag(&tags, "lnd_commit_hash"),
        "0123456789abcdef0123456789abcdef01234567"
    );
    let uris = tag(&tags, "lnd_uris");
    assert!(
        uris.ends_with("@127.0.0.1:9735") && uris.starts_with(tag(&tags, "lnd_node_pubkey")),
        "{uris}"
    );
    let text = d.log();
    // JSON log lines, the npub among them, and the stray variable warned about by name.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "{text}");
    assert!(!text.contains("\u{1b}["), "no ANSI colours in a file");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["npub"] == expected_npub.as_str()),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("MOSTRO_MOSTRO_FEEE"))),
        "{text}"
    );
    assert!(!text.contains("MOSTRO_PUBKEY"), "{text}");

    // check-config --connect reaches the simulator and the relay.
    let checked = run_ok(
        &[
            "check-config",
            "--connect",
            "--timeout",
            "10",
            "--config",
            cfg_arg,
        ],
        &env,
    );
    assert!(
        checked.contains("lightning:") && checked.contains("connected"),
        "{checked}"
    );

    // db commands on the live database (online backup while the daemon writes).
    let backup = dir.path().join("backup.db");
    let b = run_ok(
        &[
            "db",
            "--config",
            cfg_arg,
            "backup",
            backup.to_str().unwrap(),
        ],
        &env,
    );
    assert!(b.contains("integrity ok"), "{b}");
    let c = run_ok(&["db", "--config", cfg_arg, "check"], &env);
    assert!(
        c.contains("integrity: ok")
            && c.contains(&format!(
                "schema version: {}",
                mostro_sqlite::SCHEMA_VERSION
            )),
        "{c}"
    );
    let s = run_ok(&["db", "--config", cfg_arg, "stats"], &env);
    assert!(
        s.contains("orders") && s.contains("settings") && s.contains("bytes"),
        "{s}"
    );

    // Maintenance on, kill, start again: still on.
    let on = run_ok(
        &["admin", "--config", cfg_arg, "--json", "maintenance", "on"],
        &env,
    );
    assert!(on.contains("true"), "{on}");
    d.stop();
    let before = d.log().len();
    let mut d = spawn(&cfg_path, &env, &log);
    d.ready(admin).await;
    let after = d.log()[before..].to_owned();
    assert!(after.contains("kept from before the restart"), "{after}");
    let deadline = Instant::now() + WAIT;
    while tag(&info_tags(&relay_url, node).await, "maintenance_mode") != "true" {
        assert!(
            Instant::now() < deadline,
            "info event never says maintenance"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.stop();
    relay.shutdown();
}

#[test]
fn bad_key_files_and_settings_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.toml");
    std::fs::write(
        &settings,
        "[nostr]\nnsec_privkey = 'nsec1...'\nrelays = []\n",
    )
    .unwrap();
    let out = mostrod(
        &[
            "import-settings",
            settings.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nsec_privkey"),
        "{err}"
    );
    assert!(!dir.path().join("mostrod.toml").exists());

    // A key file holding neither format: key show and check-config name the file.
    let cfg = dir.path().join("mostrod.toml");
    std::fs::write(&cfg, "").unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.path().join("node.key"))
            .unwrap();
        writeln!(f, "not a key").unwrap();
    }
    for args in [
        vec!["key", "show", "--config", cfg.to_str().unwrap()],
        vec!["check-config", "--config", cfg.to_str().unwrap()],
    ] {
        let out = mostrod(&args, &[]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("node.key") && err.contains("nsec1") && err.contains("64 hex"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn init_prints_the_npub_and_check_config_names_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run_ok(&["init", "--dir", d], &[]);
    let cfg = dir.path().join("mostrod.toml");
    let shown = run_ok(&["key", "show", "--config", cfg.to_str().unwrap()], &[]);
    let npub = shown
        .split_whitespace()
        .find(|w| w.starts_with("npub1"))
        .unwrap();
    assert!(out.contains(npub), "init printed {out}, key show {shown}");
    // The template points at tls.cert and admin.macaroon in the data directory: not there yet.
    let res = mostrod(&["check-config", "--config", cfg.to_str().unwrap()], &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("lightning.lnd.cert_file") && err.contains("lightning.lnd.macaroon_file"),
        "{err}"
    );
    assert!(
        !err.contains("node.key_file"),
        "the key written by init parses: {err}"
    );
    std::fs::write(dir.path().join("tls.cert"), "cert").unwrap();
    std::fs::write(dir.path().join("admin.macaroon"), "mac").unwrap();
    let ok = run_ok(&["check-config", "--config", cfg.to_str().unwrap()], &[]);
    assert!(ok.contains(": ok"), "{ok}");
}
