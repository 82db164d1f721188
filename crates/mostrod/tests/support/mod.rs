//! The end-to-end harness shared by the daemon's test binaries: the real `mostrod` process,
//! an in-process relay, the LND simulator (kept, so a test can restart it) and protocol clients.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of the harness"
)]
#![allow(
    unused_imports,
    reason = "re-exported for the test binaries; each uses its part"
)]
pub use std::io::{Read, Write};
pub use std::net::{SocketAddr, TcpListener, TcpStream};
pub use std::path::{Path, PathBuf};
pub use std::process::{Child, Command, Stdio};
pub use std::sync::Arc;
pub use std::time::{Duration, Instant};

pub use anyhow::{Context, anyhow, bail, ensure};
pub use mostro_client::{MostroClient, Wrapper};
pub use mostro_core::fees::party_fee;
pub use mostro_core::order::Protocol;
pub use mostro_core::ports::{Clock, Network};
pub use mostro_core::types::{PaymentHash, Sats};
pub use mostro_core::wire::{Action, Kind, MessageKind, Payload, SmallOrder, Status};
pub use mostro_nostr::client::ClientKeys;
pub use mostro_nostr::{Keys, PublicKey};
pub use mostro_testkit::Ledger;
pub use mostro_testkit::ledger::{AttemptStatus, Faults, NODE};
pub use nostr_relay_builder::prelude::{
    LocalRelay, MemoryDatabase, MemoryDatabaseOptions, RateLimit, RelayBuilder,
};
pub use uuid::Uuid;

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// Fee setting of every daemon (total, split half/half).
pub const FEE_PPM: u32 = 6000;
/// Routing fee the simulated network charges per payment.
pub const ROUTING_FEE: i128 = 1;

pub fn fee(amount: u64) -> u64 {
    party_fee(Sats(amount), FEE_PPM).0
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// The daemon process
// ---------------------------------------------------------------------------------------------

/// A running `mostrod run`; SIGKILLed on drop. Prints the tail of its log when a test panics.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub config: PathBuf,
    pub admin: SocketAddr,
    pub starts: u32,
}

impl Daemon {
    pub fn spawn(config: &Path, admin: SocketAddr, log: &Path) -> anyhow::Result<Daemon> {
        let mut d = Daemon {
            child: None,
            log: log.to_owned(),
            config: config.to_owned(),
            admin,
            starts: 0,
        };
        d.start()?;
        Ok(d)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mostrod"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Settings come from the file only: no stray MOSTRO_* from the environment.
        for (k, _) in std::env::vars() {
            if k.starts_with("MOSTRO_") {
                cmd.env_remove(k);
            }
        }
        cmd.env(
            "MOSTRO_LOG",
            "info,mostro_core=debug,mostro_nostr=debug,mostrod=debug",
        );
        self.child = Some(cmd.spawn().context("cannot spawn mostrod")?);
        self.starts += 1;
        Ok(())
    }

    /// Polls `GET /health` until 200 (and fails early if the process exits).
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(st) = c.try_wait()?
            {
                bail!("mostrod exited during start-up: {st}\n{}", self.tail(40));
            }
            let addr = self.admin;
            let ok = tokio::task::spawn_blocking(move || health(addr))
                .await
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("mostrod not healthy within {WAIT:?}\n{}", self.tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL on unix
            let _ = c.wait();
        }
    }

    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- mostrod log (last 80 lines of {}) ----\n{}",
                self.log.display(),
                self.tail(80)
            );
        }
    }
}

/// A raw HTTP/1.1 GET (no HTTP client dependency): the status line and the body.
pub fn http_get(
    addr: SocketAddr,
    target: &str,
    token: Option<&str>,
) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let req = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    ))
}

/// `GET /health` answers 200.
pub fn health(addr: SocketAddr) -> bool {
    http_get(addr, "/health", None).is_ok_and(|(status, _)| status.contains(" 200 "))
}

// ---------------------------------------------------------------------------------------------
// The harness: relay + ledger + LND simulator + config + daemon
// ---------------------------------------------------------------------------------------------

pub struct Harness {
    // Field order = drop order: the daemon goes first.
    pub daemon: Daemon,
    pub relay_url: String,
    pub node: PublicKey,
    pub node_keys: Keys,
    pub ledger: Ledger,
    pub sim: mostro_lnd_sim::LndSim,
    pub relay: LocalRelay,
    pub dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.daemon.kill9();
        self.relay.shutdown();
    }
}

/// Everything a node needs around it, before the node runs: a relay, the ledger and the LND
/// simulator, a node key, and a config file naming them.
pub struct World {
    pub relay_url: String,
    pub node_keys: Keys,
    pub ledger: Ledger,
    pub sim: mostro_lnd_sim::LndSim,
    pub relay: LocalRelay,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Starts the relay and the simulator and writes the config; `mostro_extra` is appended to
    /// the `[mostro]` section, `nostr_extra` to `[nostr]`, `lightning_extra` to `[lightning]`.
    pub async fn start(mostro_extra: &str, nostr_extra: &str, lightning_extra: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        // Relay with an in-memory database that keeps events, so a restarted daemon can catch up
        // on what it missed.
        let relay_port = free_port();
        let builder = RelayBuilder::default()
            .addr(std::net::IpAddr::from([127, 0, 0, 1]))
            .port(relay_port)
            .database(MemoryDatabase::with_opts(MemoryDatabaseOptions {
                events: true,
                max_events: None,
            }))
            .rate_limit(RateLimit {
                max_reqs: 1000,
                notes_per_minute: 100_000,
            });
        let relay = LocalRelay::new(builder);
        relay.run().await.unwrap();
        let relay_url = format!("ws://127.0.0.1:{relay_port}");

        let clock: Arc<dyn Clock> = Arc::new(mostro_lnd_sim::SystemClock);
        let ledger = Ledger::new(Network::Regtest, clock);
        let sim = mostro_lnd_sim::LndSim::start(ledger.clone(), &dir.path().join("lnd"), 0)
            .await
            .unwrap();

        // Node key: 64 hex characters, mode 0600.
        let node_keys = Keys::generate();
        let key_path = dir.path().join("node.key");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .unwrap();
            writeln!(f, "{}", node_keys.secret_key().to_secret_hex()).unwrap();
        }
        let admin: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            r#"[node]
data_dir = "."
key_file = "node.key"
name = "e2e"

[nostr]
relays = ["{relay_url}"]
{nostr_extra}

[lightning]
backend = "lnd"
network = "regtest"
{lightning_extra}

[lightning.lnd]
host = "{host}"
cert_file = "{cert}"
macaroon_file = "{mac}"

[database]
path = "mostro.db"

[mostro]
fee = 0.006
{mostro_extra}

[prices]
fixed = {{ EUR = 50000.0 }}

[admin]
listen = "{admin}"
"#,
            host = sim.host(),
            cert = sim.cert_path().display(),
            mac = sim.macaroon_path().display(),
        );
        let cfg_path = dir.path().join("mostrod.toml");
        std::fs::write(&cfg_path, config).unwrap();
        World {
            relay_url,
            node_keys,
            ledger,
            sim,
            relay,
            admin,
            config: cfg_path,
            dir,
        }
    }

    /// A protocol client of this world's node.
    pub async fn client(&self, name: &str, protocol: Protocol) -> Party {
        let c = MostroClient::connect(name, &self.relay_url, self.node_keys.public_key(), protocol)
            .await
            .unwrap();
        Party::new(c)
    }
}

impl Harness {
    /// Starts everything (see [`World::start`]) and the `mostrod` binary on it.
    pub async fn start(mostro_extra: &str, nostr_extra: &str, lightning_extra: &str) -> Harness {
        let w = World::start(mostro_extra, nostr_extra, lightning_extra).await;
        let mut daemon =
            Daemon::spawn(&w.config, w.admin, &w.dir.path().join("mostrod.log")).unwrap();
        daemon.ready().await.unwrap();
        Harness {
            daemon,
            relay_url: w.relay_url,
            node: w.node_keys.public_key(),
            node_keys: w.node_keys,
            ledger: w.ledger,
            sim: w.sim,
            relay: w.relay,
            dir: w.dir,
        }
    }

    pub async fn client(&self, name: &str, protocol: Protocol) -> Party {
        let c = MostroClient::connect(name, &self.relay_url, self.node, protocol)
            .await
            .unwrap();
        Party::new(c)
    }

    pub async fn client_with(&self, name: &str, protocol: Protocol, keys: ClientKeys) -> Party {
        let c = MostroClient::connect_with(name, &self.relay_url, self.node, protocol, keys)
            .await
            .unwrap();
        Party::new(c)
    }

    /// The operator: the node key as identity and trade key.
    pub async fn admin(&self, name: &str) -> Party {
        self.client_with(
            name,
            Protocol::V2,
            ClientKeys::private(self.node_keys.clone()),
        )
        .await
    }

    /// Restarts the killed daemon on the same config and data directory.
    pub async fn restart(&mut self) {
        self.daemon.start().unwrap();
        self.daemon.ready().await.unwrap();
    }

    /// The daemon's open (non-terminal) orders, from the token-protected admin endpoint.
    pub async fn open_orders(&self) -> Vec<serde_json::Value> {
        let token = std::fs::read_to_string(self.dir.path().join("admin.token")).unwrap();
        let addr = self.daemon.admin;
        let (status, body) = tokio::task::spawn_blocking(move || {
            http_get(addr, "/admin/orders", Some(token.trim()))
        })
        .await
        .unwrap()
        .unwrap();
        assert!(status.contains(" 200 "), "{status}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Payout attempts to `wallet` (amount and outcome).
    pub fn payouts_to(&self, wallet: &str) -> Vec<(Sats, AttemptStatus)> {
        self.ledger
            .all_attempts()
            .into_iter()
            .filter(|(h, _)| self.ledger.invoice(h).is_some_and(|i| i.wallet == wallet))
            .map(|(_, a)| (a.amount, a.status))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// A client with a message buffer: waits match in any arrival order
// ---------------------------------------------------------------------------------------------

pub struct Party {
    pub c: MostroClient,
    pub buf: Vec<MessageKind>,
    pub trade_index: i64,
}

impl Party {
    pub fn new(c: MostroClient) -> Party {
        Party {
            c,
            buf: Vec::new(),
            trade_index: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.c.name
    }

    pub fn pubkey(&self) -> String {
        self.c.trade_pubkey()
    }

    /// The next trade index of this identity (for requests that open a trade).
    pub fn next_index(&mut self) -> i64 {
        self.trade_index += 1;
        self.trade_index
    }

    pub async fn send(
        &mut self,
        id: Option<Uuid>,
        action: Action,
        payload: Option<Payload>,
    ) -> anyhow::Result<()> {
        self.c.send(id, None, action, payload).await
    }

    pub async fn send_opening(
        &mut self,
        id: Option<Uuid>,
        action: Action,
        payload: Option<Payload>,
    ) -> anyhow::Result<()> {
        let idx = self.next_index();
        self.c.send(id, Some(idx), action, payload).await
    }

    /// Waits for `action` on order/dispute `id` (any id when `None`) matching `pred`. Messages
    /// that do not match stay buffered for later waits; a `cant-do` on that id fails at once.
    pub async fn wait_where(
        &mut self,
        action: Action,
        id: Option<Uuid>,
        pred: impl Fn(&MessageKind) -> bool,
    ) -> anyhow::Result<MessageKind> {
        let on_id = |k: &MessageKind| id.is_none() || k.id == id;
        if let Some(i) = self
            .buf
            .iter()
            .position(|k| k.action == action && on_id(k) && pred(k))
        {
            return Ok(self.buf.remove(i));
        }
        if action != Action::CantDo
            && let Some(k) = self
                .buf
                .iter()
                .find(|k| k.action == Action::CantDo && on_id(k))
        {
            bail!(
                "{}: refused while waiting for `{}`: {:?}",
                self.name(),
                action.as_str(),
                k.payload
            );
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{}: no `{}` for {:?} within {WAIT:?}; buffered: {:?}",
                    self.name(),
                    action.as_str(),
                    id,
                    self.buf
                        .iter()
                        .map(|k| (k.action.as_str(), k.id))
                        .collect::<Vec<_>>()
                );
            }
            self.c.timeout = left;
            let k = match self.c.next().await {
                Ok(k) => k,
                Err(_) => continue, // the deadline check above reports it
            };
            if k.action == action && on_id(&k) && pred(&k) {
                return Ok(k);
            }
            if k.action == Action::CantDo && action != Action::CantDo && on_id(&k) {
                bail!(
                    "{}: refused while waiting for `{}`: {:?}",
                    self.name(),
                    action.as_str(),
                    k.payload
                );
            }
            self.buf.push(k);
        }
    }

    pub async fn wait(&mut self, action: Action, id: Uuid) -> anyhow::Result<MessageKind> {
        self.wait_where(action, Some(id), |_| true).await
    }

    /// Waits for `action` on `id` carrying an `order` payload (or a `payment_request` with an
    /// order), returning the order.
    pub async fn wait_order(&mut self, action: Action, id: Uuid) -> anyhow::Result<SmallOrder> {
        let k = self
            .wait_where(action, Some(id), |k| {
                matches!(
                    k.payload,
                    Some(Payload::Order(_) | Payload::PaymentRequest(Some(_), _, _))
                )
            })
            .await?;
        match k.payload {
            Some(Payload::Order(o) | Payload::PaymentRequest(Some(o), _, _)) => Ok(o),
            _ => unreachable!(),
        }
    }

    /// Collects what arrives within `d` and returns every buffered message (for "nothing
    /// unexpected" checks).
    pub async fn drain(&mut self, d: Duration) -> Vec<MessageKind> {
        self.c.timeout = d;
        while let Ok(k) = self.c.next().await {
            self.buf.push(k);
        }
        std::mem::take(&mut self.buf)
    }
}

pub fn sell_order(amount: i64, fiat: i64) -> SmallOrder {
    order(Kind::Sell, amount, fiat, None)
}

pub fn order(kind: Kind, amount: i64, fiat: i64, range: Option<(i64, i64)>) -> SmallOrder {
    SmallOrder {
        id: None,
        kind: Some(kind),
        status: Some(Status::Pending),
        amount,
        fiat_code: "EUR".to_owned(),
        min_amount: range.map(|r| r.0),
        max_amount: range.map(|r| r.1),
        fiat_amount: fiat,
        payment_method: "SEPA".to_owned(),
        premium: 0,
        buyer_trade_pubkey: None,
        seller_trade_pubkey: None,
        buyer_invoice: None,
        created_at: Some(0),
        expires_at: None,
        cashu_mint_url: None,
    }
}

/// Publishes an order and returns its id from the `new-order` ack.
pub async fn make(maker: &mut Party, o: SmallOrder) -> anyhow::Result<(Uuid, SmallOrder)> {
    let kind = o.kind;
    maker
        .send_opening(None, Action::NewOrder, Some(Payload::Order(o)))
        .await?;
    let k = maker
        .wait_where(
            Action::NewOrder,
            None,
            |k| matches!(&k.payload, Some(Payload::Order(o)) if o.kind == kind),
        )
        .await?;
    let Some(Payload::Order(ack)) = k.payload else {
        unreachable!()
    };
    let id =
        k.id.or(ack.id)
            .ok_or_else(|| anyhow!("new-order ack without id"))?;
    ensure!(
        ack.status == Some(Status::Pending),
        "ack status {:?}",
        ack.status
    );
    ensure!(ack.id == Some(id), "ack order id {:?} != {id}", ack.id);
    Ok((id, ack))
}

pub fn invoice(ledger: &Ledger, wallet: &str, sats: u64) -> anyhow::Result<String> {
    ledger
        .wallet_invoice(wallet, Some(Sats(sats)), 24 * 3600)
        .map_err(|e| anyhow!("{wallet}: {e}"))
}

/// A sell trade brought to `active`.
pub struct Trade {
    pub seller: Party,
    pub buyer: Party,
    pub id: Uuid,
    pub amount: u64,
    pub fee: u64,
    pub seller_wallet: String,
    pub buyer_wallet: String,
}

/// Sell flow up to `active`: seller makes, buyer takes without invoice, sends it with
/// `add-invoice`, the seller pays the hold invoice. Asserts the messages of each step.
pub async fn sell_to_active(
    h: &Harness,
    tag: &str,
    amount: u64,
    seller_proto: Protocol,
    buyer_proto: Protocol,
) -> anyhow::Result<Trade> {
    let mut seller = h.client(&format!("{tag}-seller"), seller_proto).await;
    let mut buyer = h.client(&format!("{tag}-buyer"), buyer_proto).await;
    let (seller_wallet, buyer_wallet) = (format!("{tag}-seller"), format!("{tag}-buyer"));
    let fiat = (amount / 2000) as i64; // 50 000 EUR/BTC
    let (id, ack) = make(&mut seller, sell_order(amount as i64, fiat)).await?;
    ensure!(ack.amount == amount as i64 && ack.fiat_amount == fiat);
    let fee = fee(amount);

    buyer.send_opening(Some(id), Action::TakeSell, None).await?;
    let ask = buyer.wait_order(Action::AddInvoice, id).await?;
    ensure!(
        ask.amount == (amount - fee) as i64,
        "add-invoice amount {} != {}",
        ask.amount,
        amount - fee
    );
    ensure!(ask.status == Some(Status::WaitingBuyerInvoice));
    seller.wait(Action::WaitingBuyerInvoice, id).await?;

    let inv = invoice(&h.ledger, &buyer_wallet, amount - fee)?;
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await?;
    let k = seller
        .wait_where(Action::PayInvoice, Some(id), |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await?;
    let Some(Payload::PaymentRequest(Some(po), hold, _)) = k.payload else {
        bail!("pay-invoice without order: {:?}", k.payload)
    };
    ensure!(
        po.amount == (amount + fee) as i64,
        "pay-invoice amount {}",
        po.amount
    );
    ensure!(po.status == Some(Status::WaitingPayment));
    buyer.wait(Action::WaitingSellerToPay, id).await?;

    h.ledger
        .pay_hold(&seller_wallet, &hold)
        .map_err(|e| anyhow!("pay hold: {e}"))?;
    let took = seller.wait_order(Action::BuyerTookOrder, id).await?;
    ensure!(took.status == Some(Status::Active));
    ensure!(took.buyer_trade_pubkey.as_deref() == Some(buyer.pubkey().as_str()));
    ensure!(took.amount == (amount + fee) as i64);
    let acc = buyer
        .wait_order(Action::HoldInvoicePaymentAccepted, id)
        .await?;
    ensure!(acc.seller_trade_pubkey.as_deref() == Some(seller.pubkey().as_str()));
    ensure!(acc.amount == (amount - fee) as i64);
    ensure!(h.ledger.balance(&seller_wallet) == -i128::from(amount + fee));
    Ok(Trade {
        seller,
        buyer,
        id,
        amount,
        fee,
        seller_wallet,
        buyer_wallet,
    })
}

/// `fiat-sent` and its two `fiat-sent-ok` (each naming the counterparty).
pub async fn fiat_sent(t: &mut Trade) -> anyhow::Result<()> {
    let id = t.id;
    t.buyer.send(Some(id), Action::FiatSent, None).await?;
    let sp = t.seller.pubkey();
    let bp = t.buyer.pubkey();
    t.seller
        .wait_where(
            Action::FiatSentOk,
            Some(id),
            |k| matches!(&k.payload, Some(Payload::Peer(p)) if p.pubkey == bp),
        )
        .await?;
    t.buyer
        .wait_where(
            Action::FiatSentOk,
            Some(id),
            |k| matches!(&k.payload, Some(Payload::Peer(p)) if p.pubkey == sp),
        )
        .await?;
    Ok(())
}

/// After a completed trade: balances and exactly one successful payout.
pub fn check_paid(h: &Harness, t: &Trade) -> anyhow::Result<()> {
    ensure!(
        h.ledger.balance(&t.seller_wallet) == -i128::from(t.amount + t.fee),
        "seller balance {}",
        h.ledger.balance(&t.seller_wallet)
    );
    ensure!(
        h.ledger.balance(&t.buyer_wallet) == i128::from(t.amount - t.fee),
        "buyer balance {}",
        h.ledger.balance(&t.buyer_wallet)
    );
    let paid = h.payouts_to(&t.buyer_wallet);
    let ok: Vec<_> = paid
        .iter()
        .filter(|(_, s)| matches!(s, AttemptStatus::Succeeded(_)))
        .collect();
    ensure!(ok.len() == 1, "payout attempts to the buyer: {paid:?}");
    ensure!(ok[0].0 == Sats(t.amount - t.fee));
    Ok(())
}
