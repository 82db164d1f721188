//! What the benchmark runs against: an in-process relay, a ledger behind the LND simulator, the
//! real `mostrod` binary as a child process, and what is read from /proc and its `/metrics`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mostro_core::ports::{Clock, Network};
use mostro_testkit::Ledger;
use nostr_relay_builder::prelude::{
    LocalRelay, MemoryDatabase, MemoryDatabaseOptions, RateLimit, RelayBuilder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The in-process relay; its events live in a database that survives [`BenchRelay::restart`].
pub struct BenchRelay {
    relay: Option<LocalRelay>,
    /// Its stored events.
    pub db: Arc<MemoryDatabase>,
    port: u16,
}

impl BenchRelay {
    fn builder(db: &Arc<MemoryDatabase>, port: u16) -> RelayBuilder {
        RelayBuilder::default()
            .addr(std::net::IpAddr::from([127, 0, 0, 1]))
            .port(port)
            .database(db.clone())
            .rate_limit(RateLimit {
                max_reqs: 10_000,
                notes_per_minute: 1_000_000,
            })
    }

    /// Its URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Stops it, dropping every connection (the stop signal is repeated for a while: a session
    /// busy with a message at that instant misses one).
    pub fn kill(&mut self) {
        if let Some(r) = self.relay.take() {
            tokio::spawn(async move {
                for _ in 0..100 {
                    r.shutdown();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
    }

    /// Starts it again on the same port with the same stored events.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        for _ in 0..100 {
            let relay = LocalRelay::new(Self::builder(&self.db, self.port));
            if relay.run().await.is_ok() {
                self.relay = Some(relay);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the relay could not bind port {} again", self.port)
    }

    /// Stops it for good.
    pub fn shutdown(&mut self) {
        if let Some(r) = self.relay.take() {
            r.shutdown();
        }
    }
}

/// Starts the in-process relay on a free loopback port with the rate limit raised.
pub async fn start_relay() -> anyhow::Result<BenchRelay> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let db = Arc::new(MemoryDatabase::with_opts(MemoryDatabaseOptions {
        events: true,
        max_events: None,
    }));
    let relay = LocalRelay::new(BenchRelay::builder(&db, port));
    relay
        .run()
        .await
        .map_err(|e| anyhow!("cannot start the local relay: {e}"))?;
    Ok(BenchRelay {
        relay: Some(relay),
        db,
        port,
    })
}

/// The simulated Lightning side: a ledger and the LND-protocol server over it.
pub struct Lightning {
    /// The ledger (wallets pay hold invoices and issue invoices through it).
    pub ledger: Ledger,
    /// The simulator (kept alive).
    pub sim: mostro_lnd_sim::LndSim,
}

/// Starts the LND simulator over a fresh regtest ledger.
pub async fn start_lightning(dir: &Path) -> anyhow::Result<Lightning> {
    let clock: Arc<dyn Clock> = Arc::new(mostro_lnd_sim::SystemClock);
    let ledger = Ledger::new(Network::Regtest, clock);
    let sim = mostro_lnd_sim::LndSim::start(ledger.clone(), &dir.join("lnd-sim"), 0)
        .await
        .context("LND simulator")?;
    Ok(Lightning { ledger, sim })
}

/// Settings of the daemon under test.
pub struct DaemonSetup {
    /// Relay URL.
    pub relay: String,
    /// SQLite `synchronous`: `full` or `normal`.
    pub synchronous: String,
    /// Log filter (`MOSTRO_LOG`).
    pub log: String,
}

/// The daemon child process.
pub struct Daemon {
    child: Child,
    /// Its node public key.
    pub pubkey: nostr_sdk::PublicKey,
    /// Admin endpoint (`/health`, `/metrics`).
    pub admin: SocketAddr,
    /// Its stderr log.
    pub log: PathBuf,
    /// How to start it again (chaos runs): binary, config, log filter.
    bin: PathBuf,
    config: PathBuf,
    log_filter: String,
    /// Times started.
    pub starts: u32,
}

fn spawn(bin: &Path, config: &Path, log: &Path, filter: &str) -> anyhow::Result<Child> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("MOSTRO_LOG", filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes the config and node key into `dir`, starts `mostrod run --config`, waits for `/health`.
pub async fn start_daemon(
    bin: &Path,
    dir: &Path,
    ln: &Lightning,
    setup: &DaemonSetup,
) -> anyhow::Result<Daemon> {
    if !bin.exists() {
        bail!(
            "{} not found: build it first (`cargo build --release -p mostrod`) or pass --mostrod",
            bin.display()
        );
    }
    let keys = nostr_sdk::Keys::generate();
    let key_path = dir.join("node.key");
    write_secret(&key_path, &keys.secret_key().to_secret_hex())?;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let toml = format!(
        r#"# Written by mostro-bench.
[node]
data_dir = "."
key_file = "node.key"
name = "mostro-bench"

[nostr]
relays = ["{relay}"]

[lightning]
backend = "lnd"
network = "regtest"
# A hung payout keeps its call pending this long (below [mostro] payment_retries_interval).
pay_timeout_secs = 120

[lightning.lnd]
host = "{host}"
cert_file = "{cert}"
macaroon_file = "{mac}"

[database]
path = "mostro.db"
synchronous = "{sync}"

[mostro]
payment_retries_interval = 180

[prices.fixed]
EUR = 50000.0

[admin]
listen = "{admin}"
"#,
        relay = setup.relay,
        host = ln.sim.host(),
        cert = ln.sim.cert_path().display(),
        mac = ln.sim.macaroon_path().display(),
        sync = setup.synchronous,
    );
    let cfg_path = dir.join("mostrod.toml");
    std::fs::write(&cfg_path, toml)?;
    let log = dir.join("mostrod.log");
    let child = spawn(bin, &cfg_path, &log, &setup.log)?;
    let mut d = Daemon {
        child,
        pubkey: keys.public_key(),
        admin,
        log,
        bin: bin.to_owned(),
        config: cfg_path,
        log_filter: setup.log.clone(),
        starts: 1,
    };
    d.wait_ready().await?;
    Ok(d)
}

impl Daemon {
    /// Waits for `/health` (20 s at most).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let (admin, d) = (self.admin, self);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = d.child.try_wait() {
                bail!(
                    "mostrod exited at start ({st}); log:\n{}",
                    std::fs::read_to_string(&d.log).unwrap_or_default()
                );
            }
            if http_get(admin, "/health").await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                d.stop().await;
                bail!("mostrod did not answer /health within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

impl Daemon {
    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same config and data directory, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(&self.bin, &self.config, &self.log, &self.log_filter)?;
        self.starts += 1;
        self.wait_ready().await
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-s", "TERM", &pid]).status();
        for _ in 0..300 {
            if !self.running() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The daemon's message counters.
    pub async fn counters(&self) -> anyhow::Result<MsgCounters> {
        let text = http_get(self.admin, "/metrics").await?;
        let mut c = MsgCounters::default();
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = value.parse().unwrap_or(0.0);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "counters"
            )]
            let v = v as u64;
            if name.starts_with("mostro_messages_in_total") {
                c.inbound += v;
            } else if name.starts_with("mostro_messages_out_total") {
                c.outbound += v;
            } else if name.starts_with("mostro_events_published_total") {
                c.published += v;
            }
            if let Some(rest) = name.strip_prefix("mostro_lightning_call_seconds_sum{method=\"")
                && let Some(m) = rest.split('"').next()
            {
                c.ln_sum.push((m.to_owned(), value.parse().unwrap_or(0.0)));
            }
            if let Some(rest) = name.strip_prefix("mostro_lightning_call_seconds_count{method=\"")
                && let Some(m) = rest.split('"').next()
            {
                c.ln_count.push((m.to_owned(), v));
            }
        }
        Ok(c)
    }
}

/// Message counters from `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct MsgCounters {
    /// Requests received.
    pub inbound: u64,
    /// Direct messages sent.
    pub outbound: u64,
    /// Public events published.
    pub published: u64,
    /// Lightning call seconds, summed, per method (since the daemon started).
    pub ln_sum: Vec<(String, f64)>,
    /// Lightning calls per method (since the daemon started).
    pub ln_count: Vec<(String, u64)>,
}

/// A minimal HTTP/1.1 GET on loopback.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await??;
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("bad HTTP reply"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// Clock ticks per second of /proc times.
fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
pub fn cpu_secs(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    Ok((utime + stime) / clk_tck())
}

/// A `Vm*` line of /proc/<pid>/status, in kB.
pub fn vm_kb(pid: &str, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}

/// The 1-minute load average.
pub fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}
