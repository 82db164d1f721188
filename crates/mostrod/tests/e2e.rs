//! End-to-end tests: the real `mostrod` binary (`run --config <file>`) against an in-process
//! Nostr relay and the LND simulator, driven by protocol v1 and v2 clients over the relay.
//!
//! Every test starts its own relay, ledger, simulator and daemon (killed on drop). Independent
//! trade scenarios share one daemon and run concurrently; scenarios that need special settings
//! (short windows, ledger faults, `kill -9`) get their own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::too_many_lines,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation,
    reason = "test code"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use mostro_client::{MostroClient, Wrapper};
use mostro_core::fees::party_fee;
use mostro_core::order::Protocol;
use mostro_core::ports::{Clock, Network};
use mostro_core::types::Sats;
use mostro_core::wire::{Action, Kind, MessageKind, Payload, SmallOrder, Status};
use mostro_nostr::client::ClientKeys;
use mostro_nostr::{Keys, PublicKey};
use mostro_testkit::Ledger;
use mostro_testkit::ledger::{AttemptStatus, Faults, NODE};
use nostr_relay_builder::prelude::{
    LocalRelay, MemoryDatabase, MemoryDatabaseOptions, RateLimit, RelayBuilder,
};
use uuid::Uuid;

/// How long any single wait may take.
const WAIT: Duration = Duration::from_secs(20);
/// Fee setting of every daemon (total, split half/half).
const FEE_PPM: u32 = 6000;
/// Routing fee the simulated network charges per payment.
const ROUTING_FEE: i128 = 1;

fn fee(amount: u64) -> u64 {
    party_fee(Sats(amount), FEE_PPM).0
}

fn free_port() -> u16 {
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
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
    admin: SocketAddr,
    starts: u32,
}

impl Daemon {
    fn spawn(config: &Path, admin: SocketAddr, log: &Path) -> anyhow::Result<Daemon> {
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

    fn start(&mut self) -> anyhow::Result<()> {
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
    async fn ready(&mut self) -> anyhow::Result<()> {
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
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL on unix
            let _ = c.wait();
        }
    }

    fn tail(&self, n: usize) -> String {
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
fn http_get(
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
fn health(addr: SocketAddr) -> bool {
    http_get(addr, "/health", None).is_ok_and(|(status, _)| status.contains(" 200 "))
}

// ---------------------------------------------------------------------------------------------
// The harness: relay + ledger + LND simulator + config + daemon
// ---------------------------------------------------------------------------------------------

struct Harness {
    // Field order = drop order: the daemon goes first.
    daemon: Daemon,
    relay_url: String,
    node: PublicKey,
    node_keys: Keys,
    ledger: Ledger,
    _sim: mostro_lnd_sim::LndSim,
    relay: LocalRelay,
    dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.daemon.kill9();
        self.relay.shutdown();
    }
}

impl Harness {
    /// Starts everything; `mostro_extra` is appended to the `[mostro]` section, `nostr_extra` to
    /// `[nostr]`, `lightning_extra` to `[lightning]`.
    async fn start(mostro_extra: &str, nostr_extra: &str, lightning_extra: &str) -> Harness {
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
        let mut daemon = Daemon::spawn(&cfg_path, admin, &dir.path().join("mostrod.log")).unwrap();
        daemon.ready().await.unwrap();
        Harness {
            daemon,
            relay_url,
            node: node_keys.public_key(),
            node_keys,
            ledger,
            _sim: sim,
            relay,
            dir,
        }
    }

    async fn client(&self, name: &str, protocol: Protocol) -> Party {
        let c = MostroClient::connect(name, &self.relay_url, self.node, protocol)
            .await
            .unwrap();
        Party::new(c)
    }

    async fn client_with(&self, name: &str, protocol: Protocol, keys: ClientKeys) -> Party {
        let c = MostroClient::connect_with(name, &self.relay_url, self.node, protocol, keys)
            .await
            .unwrap();
        Party::new(c)
    }

    /// The operator: the node key as identity and trade key.
    async fn admin(&self, name: &str) -> Party {
        self.client_with(
            name,
            Protocol::V2,
            ClientKeys::private(self.node_keys.clone()),
        )
        .await
    }

    /// Restarts the killed daemon on the same config and data directory.
    async fn restart(&mut self) {
        self.daemon.start().unwrap();
        self.daemon.ready().await.unwrap();
    }

    /// The daemon's open (non-terminal) orders, from the token-protected admin endpoint.
    async fn open_orders(&self) -> Vec<serde_json::Value> {
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
    fn payouts_to(&self, wallet: &str) -> Vec<(Sats, AttemptStatus)> {
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

struct Party {
    c: MostroClient,
    buf: Vec<MessageKind>,
    trade_index: i64,
}

impl Party {
    fn new(c: MostroClient) -> Party {
        Party {
            c,
            buf: Vec::new(),
            trade_index: 0,
        }
    }

    fn name(&self) -> &str {
        &self.c.name
    }

    fn pubkey(&self) -> String {
        self.c.trade_pubkey()
    }

    /// The next trade index of this identity (for requests that open a trade).
    fn next_index(&mut self) -> i64 {
        self.trade_index += 1;
        self.trade_index
    }

    async fn send(
        &mut self,
        id: Option<Uuid>,
        action: Action,
        payload: Option<Payload>,
    ) -> anyhow::Result<()> {
        self.c.send(id, None, action, payload).await
    }

    async fn send_opening(
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
    async fn wait_where(
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

    async fn wait(&mut self, action: Action, id: Uuid) -> anyhow::Result<MessageKind> {
        self.wait_where(action, Some(id), |_| true).await
    }

    /// Waits for `action` on `id` carrying an `order` payload (or a `payment_request` with an
    /// order), returning the order.
    async fn wait_order(&mut self, action: Action, id: Uuid) -> anyhow::Result<SmallOrder> {
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
    async fn drain(&mut self, d: Duration) -> Vec<MessageKind> {
        self.c.timeout = d;
        while let Ok(k) = self.c.next().await {
            self.buf.push(k);
        }
        std::mem::take(&mut self.buf)
    }
}

fn sell_order(amount: i64, fiat: i64) -> SmallOrder {
    order(Kind::Sell, amount, fiat, None)
}

fn order(kind: Kind, amount: i64, fiat: i64, range: Option<(i64, i64)>) -> SmallOrder {
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
async fn make(maker: &mut Party, o: SmallOrder) -> anyhow::Result<(Uuid, SmallOrder)> {
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

fn invoice(ledger: &Ledger, wallet: &str, sats: u64) -> anyhow::Result<String> {
    ledger
        .wallet_invoice(wallet, Some(Sats(sats)), 24 * 3600)
        .map_err(|e| anyhow!("{wallet}: {e}"))
}

/// A sell trade brought to `active`.
struct Trade {
    seller: Party,
    buyer: Party,
    id: Uuid,
    amount: u64,
    fee: u64,
    seller_wallet: String,
    buyer_wallet: String,
}

/// Sell flow up to `active`: seller makes, buyer takes without invoice, sends it with
/// `add-invoice`, the seller pays the hold invoice. Asserts the messages of each step.
async fn sell_to_active(
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
async fn fiat_sent(t: &mut Trade) -> anyhow::Result<()> {
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
fn check_paid(h: &Harness, t: &Trade) -> anyhow::Result<()> {
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

/// Release and payout: the messages of both parties, then ratings.
async fn release_and_complete(h: &Harness, t: &mut Trade) -> anyhow::Result<()> {
    let id = t.id;
    t.seller.send(Some(id), Action::Release, None).await?;
    t.seller.wait(Action::HoldInvoicePaymentSettled, id).await?;
    t.seller.wait(Action::Rate, id).await?;
    t.buyer.wait(Action::Released, id).await?;
    t.buyer.wait(Action::PurchaseCompleted, id).await?;
    t.buyer.wait(Action::Rate, id).await?;
    check_paid(h, t)?;
    for p in [&mut t.buyer, &mut t.seller] {
        p.send(Some(id), Action::RateUser, Some(Payload::RatingUser(5)))
            .await?;
        p.wait_where(Action::RateReceived, Some(id), |k| {
            k.payload == Some(Payload::RatingUser(5))
        })
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenarios sharing one daemon
// ---------------------------------------------------------------------------------------------

/// Sell flow, both parties on protocol v2. Node revenue: 2 fee - routing.
async fn scenario_sell_v2(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "sell", 100_000, Protocol::V2, Protocol::V2).await?;
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * t.fee) - ROUTING_FEE)
}

/// A buyer loses its local state: a fresh install with the same identity (from the mnemonic)
/// restores the session over the relay, learns the open trade, its trade index and the
/// counterparty's key, and finishes the trade with the re-derived trade key.
async fn scenario_restore(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "restore", 60_000, Protocol::V2, Protocol::V1).await?;
    let identity = t
        .buyer
        .c
        .keys
        .identity
        .clone()
        .ok_or_else(|| anyhow!("reputation mode"))?;
    let fresh = ClientKeys::reputation(Keys::generate(), identity);
    let mut device2 = h.client_with("restore-device2", Protocol::V1, fresh).await;
    device2
        .c
        .send_in(Wrapper::Restore, None, None, Action::RestoreSession, None)
        .await?;
    let reply = device2
        .wait_where(Action::RestoreSession, None, |_| true)
        .await?;
    let Some(Payload::RestoreData(data)) = reply.payload else {
        bail!("restore-session without restore_data: {reply:?}");
    };
    let restored = data
        .orders
        .iter()
        .find(|o| o.order_id == t.id)
        .ok_or_else(|| anyhow!("the open trade is not restored: {data:?}"))?;
    ensure!(
        restored.status == "active",
        "restored status {}",
        restored.status
    );
    ensure!(
        restored.trade_index == t.buyer.trade_index,
        "restored index {}",
        restored.trade_index
    );
    ensure!(restored.counterparty_trade_pubkey.as_deref() == Some(t.seller.pubkey().as_str()));
    device2
        .c
        .send_in(Wrapper::Restore, None, None, Action::LastTradeIndex, None)
        .await?;
    let last = device2
        .wait_where(Action::LastTradeIndex, None, |_| true)
        .await?;
    ensure!(
        last.trade_index == Some(t.buyer.trade_index),
        "last-trade-index {:?}",
        last.trade_index
    );
    device2.c.shutdown().await;
    // The client re-derives the trade key of that index (here: the keys it had) and carries on.
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * t.fee) - ROUTING_FEE)
}

/// Buy flow, both parties on protocol v1 (gift wrap): the taker (seller) pays first, then the
/// buyer is asked for its invoice.
async fn scenario_buy_v1(h: &Harness) -> anyhow::Result<i128> {
    let mut buyer = h.client("buy-buyer", Protocol::V1).await;
    let mut seller = h.client("buy-seller", Protocol::V1).await;
    let amount = 60_000u64;
    let fee = fee(amount);
    let (id, _) = make(&mut buyer, order(Kind::Buy, amount as i64, 30, None)).await?;

    seller.send_opening(Some(id), Action::TakeBuy, None).await?;
    let k = seller
        .wait_where(Action::PayInvoice, Some(id), |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await?;
    let Some(Payload::PaymentRequest(Some(po), hold, _)) = k.payload else {
        bail!("pay-invoice: {:?}", k.payload)
    };
    ensure!(po.amount == (amount + fee) as i64);
    buyer.wait(Action::WaitingSellerToPay, id).await?;
    h.ledger
        .pay_hold("buy-seller", &hold)
        .map_err(|e| anyhow!("{e}"))?;

    let ask = buyer.wait_order(Action::AddInvoice, id).await?;
    ensure!(ask.amount == (amount - fee) as i64);
    ensure!(ask.status == Some(Status::WaitingBuyerInvoice));
    seller.wait(Action::WaitingBuyerInvoice, id).await?;
    let inv = invoice(&h.ledger, "buy-buyer", amount - fee)?;
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await?;
    seller.wait_order(Action::BuyerTookOrder, id).await?;
    buyer
        .wait_order(Action::HoldInvoicePaymentAccepted, id)
        .await?;
    let mut t = Trade {
        seller,
        buyer,
        id,
        amount,
        fee,
        seller_wallet: "buy-seller".into(),
        buyer_wallet: "buy-buyer".into(),
    };
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * fee) - ROUTING_FEE)
}

/// Sell range order [10, 40] EUR at market price; the buyer takes 15 EUR; the seller releases
/// with `next_trade`, and its next trade key receives the child order [10, 25] via `new-order`.
async fn scenario_range(h: &Harness) -> anyhow::Result<i128> {
    let mut seller = h.client("range-seller", Protocol::V2).await;
    let mut buyer = h.client("range-buyer", Protocol::V1).await;
    let (id, ack) = make(&mut seller, order(Kind::Sell, 0, 0, Some((10, 40)))).await?;
    ensure!(ack.min_amount == Some(10) && ack.max_amount == Some(40));

    buyer
        .send_opening(Some(id), Action::TakeSell, Some(Payload::Amount(15)))
        .await?;
    let amount = 30_000u64; // 15 EUR at 50 000 EUR/BTC
    let fee = fee(amount);
    let ask = buyer.wait_order(Action::AddInvoice, id).await?;
    ensure!(
        ask.amount == (amount - fee) as i64,
        "range add-invoice {}",
        ask.amount
    );
    ensure!(ask.fiat_amount == 15);
    let inv = invoice(&h.ledger, "range-buyer", amount - fee)?;
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
    let Some(Payload::PaymentRequest(_, hold, _)) = k.payload else {
        unreachable!()
    };
    h.ledger
        .pay_hold("range-seller", &hold)
        .map_err(|e| anyhow!("{e}"))?;
    seller.wait_order(Action::BuyerTookOrder, id).await?;
    buyer
        .wait_order(Action::HoldInvoicePaymentAccepted, id)
        .await?;
    let mut t = Trade {
        seller,
        buyer,
        id,
        amount,
        fee,
        seller_wallet: "range-seller".into(),
        buyer_wallet: "range-buyer".into(),
    };
    fiat_sent(&mut t).await?;

    // The maker's next trade key (same identity) listens before the release.
    let identity = t.seller.c.keys.identity.clone().unwrap();
    let mut next = h
        .client_with(
            "range-seller-next",
            Protocol::V2,
            ClientKeys::reputation(Keys::generate(), identity),
        )
        .await;
    let next_index = t.seller.trade_index + 1;
    t.seller
        .send(
            Some(id),
            Action::Release,
            Some(Payload::NextTrade(next.pubkey(), next_index as u32)),
        )
        .await?;
    t.seller.wait(Action::HoldInvoicePaymentSettled, id).await?;
    t.buyer.wait(Action::Released, id).await?;
    t.buyer.wait(Action::PurchaseCompleted, id).await?;
    check_paid(h, &t)?;

    let k = next
        .wait_where(Action::NewOrder, None, |k| {
            matches!(k.payload, Some(Payload::Order(_)))
        })
        .await?;
    ensure!(
        k.trade_index == Some(next_index),
        "child trade index {:?}",
        k.trade_index
    );
    let Some(Payload::Order(child)) = k.payload else {
        unreachable!()
    };
    let cid = child.id.ok_or_else(|| anyhow!("child without id"))?;
    ensure!(cid != id);
    ensure!(
        child.min_amount == Some(10) && child.max_amount == Some(25),
        "child range {:?}..{:?}",
        child.min_amount,
        child.max_amount
    );
    ensure!(child.kind == Some(Kind::Sell) && child.status == Some(Status::Pending));
    ensure!(child.amount == 0);
    // The child belongs to the next key: it can cancel it.
    next.send(Some(cid), Action::Cancel, None).await?;
    next.wait(Action::Canceled, cid).await?;
    Ok(i128::from(2 * fee) - ROUTING_FEE)
}

/// Market-price buy order (amount 0): the sats are quoted from `prices.fixed` at take time.
async fn scenario_market(h: &Harness) -> anyhow::Result<i128> {
    let mut buyer = h.client("market-buyer", Protocol::V1).await;
    let mut seller = h.client("market-seller", Protocol::V2).await;
    let (id, ack) = make(&mut buyer, order(Kind::Buy, 0, 25, None)).await?;
    ensure!(ack.amount == 0);
    let amount = 50_000u64; // 25 EUR at 50 000 EUR/BTC
    let fee = fee(amount);
    seller.send_opening(Some(id), Action::TakeBuy, None).await?;
    let k = seller
        .wait_where(Action::PayInvoice, Some(id), |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await?;
    let Some(Payload::PaymentRequest(Some(po), hold, _)) = k.payload else {
        bail!("pay-invoice: {:?}", k.payload)
    };
    ensure!(
        po.amount == (amount + fee) as i64,
        "market pay-invoice amount {} != {}",
        po.amount,
        amount + fee
    );
    h.ledger
        .pay_hold("market-seller", &hold)
        .map_err(|e| anyhow!("{e}"))?;
    let ask = buyer.wait_order(Action::AddInvoice, id).await?;
    ensure!(ask.amount == (amount - fee) as i64);
    let inv = invoice(&h.ledger, "market-buyer", amount - fee)?;
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await?;
    seller.wait_order(Action::BuyerTookOrder, id).await?;
    buyer
        .wait_order(Action::HoldInvoicePaymentAccepted, id)
        .await?;
    let mut t = Trade {
        seller,
        buyer,
        id,
        amount,
        fee,
        seller_wallet: "market-seller".into(),
        buyer_wallet: "market-buyer".into(),
    };
    fiat_sent(&mut t).await?;
    release_and_complete(h, &mut t).await?;
    Ok(i128::from(2 * fee) - ROUTING_FEE)
}

/// Cooperative cancel of an active trade: the seller is refunded.
async fn scenario_coop_cancel(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "coop", 40_000, Protocol::V2, Protocol::V1).await?;
    let id = t.id;
    t.seller.send(Some(id), Action::Cancel, None).await?;
    t.seller
        .wait(Action::CooperativeCancelInitiatedByYou, id)
        .await?;
    t.buyer
        .wait(Action::CooperativeCancelInitiatedByPeer, id)
        .await?;
    t.buyer.send(Some(id), Action::Cancel, None).await?;
    t.seller.wait(Action::CooperativeCancelAccepted, id).await?;
    t.buyer.wait(Action::CooperativeCancelAccepted, id).await?;
    wait_balance(h, &t.seller_wallet, 0).await?;
    ensure!(h.ledger.balance(&t.buyer_wallet) == 0);
    ensure!(h.payouts_to(&t.buyer_wallet).is_empty());
    Ok(0)
}

async fn wait_balance(h: &Harness, wallet: &str, want: i128) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while h.ledger.balance(wallet) != want {
        if Instant::now() > deadline {
            bail!("{wallet}: balance {} != {want}", h.ledger.balance(wallet));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Opens a dispute (`by_buyer` or by the seller); returns the dispute id both parties got.
async fn open_dispute(t: &mut Trade, by_buyer: bool) -> anyhow::Result<Uuid> {
    let id = t.id;
    let (me, peer) = if by_buyer {
        (&mut t.buyer, &mut t.seller)
    } else {
        (&mut t.seller, &mut t.buyer)
    };
    me.send(Some(id), Action::Dispute, None).await?;
    let k = me
        .wait_where(Action::DisputeInitiatedByYou, Some(id), |k| {
            matches!(k.payload, Some(Payload::Dispute(_, None)))
        })
        .await?;
    let Some(Payload::Dispute(did, _)) = k.payload else {
        unreachable!()
    };
    let k = peer
        .wait_where(Action::DisputeInitiatedByPeer, Some(id), |k| {
            matches!(k.payload, Some(Payload::Dispute(..)))
        })
        .await?;
    ensure!(
        matches!(k.payload, Some(Payload::Dispute(d, None)) if d == did),
        "peer dispute payload {:?}",
        k.payload
    );
    Ok(did)
}

/// The admin takes the dispute: `admin-took-dispute` to the admin (dispute payload with the
/// solver info) and to both parties (peer = the admin's key).
async fn admin_take(
    h: &Harness,
    admin: &mut Party,
    t: &mut Trade,
    did: Uuid,
) -> anyhow::Result<()> {
    admin
        .c
        .send_in(
            Wrapper::Dispute,
            Some(did),
            None,
            Action::AdminTakeDispute,
            None,
        )
        .await?;
    admin
        .wait_where(
            Action::AdminTookDispute,
            Some(did),
            |k| matches!(k.payload, Some(Payload::Dispute(d, Some(_))) if d == did),
        )
        .await?;
    let admin_hex = h.node.to_hex();
    for p in [&mut t.buyer, &mut t.seller] {
        p.wait_where(
            Action::AdminTookDispute,
            Some(t.id),
            |k| matches!(&k.payload, Some(Payload::Peer(p)) if p.pubkey == admin_hex),
        )
        .await?;
    }
    Ok(())
}

/// Dispute after fiat-sent, opened by the buyer; the admin settles: the buyer is paid.
async fn scenario_dispute_settle(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "dsettle", 70_000, Protocol::V1, Protocol::V2).await?;
    fiat_sent(&mut t).await?;
    let did = open_dispute(&mut t, true).await?;
    let mut admin = h.admin("dsettle-admin").await;
    admin_take(h, &mut admin, &mut t, did).await?;
    let id = t.id;
    admin.send(Some(id), Action::AdminSettle, None).await?;
    admin.wait(Action::AdminSettled, id).await?;
    t.seller.wait(Action::AdminSettled, id).await?;
    t.buyer.wait(Action::AdminSettled, id).await?;
    t.buyer.wait(Action::PurchaseCompleted, id).await?;
    check_paid(h, &t)?;
    Ok(i128::from(2 * t.fee) - ROUTING_FEE)
}

/// Dispute while active, opened by the seller; the admin cancels: the seller is refunded.
async fn scenario_dispute_cancel(h: &Harness) -> anyhow::Result<i128> {
    let mut t = sell_to_active(h, "dcancel", 30_000, Protocol::V2, Protocol::V2).await?;
    let did = open_dispute(&mut t, false).await?;
    let mut admin = h.admin("dcancel-admin").await;
    admin_take(h, &mut admin, &mut t, did).await?;
    let id = t.id;
    admin.send(Some(id), Action::AdminCancel, None).await?;
    admin.wait(Action::AdminCanceled, id).await?;
    t.seller.wait(Action::AdminCanceled, id).await?;
    t.buyer.wait(Action::AdminCanceled, id).await?;
    wait_balance(h, &t.seller_wallet, 0).await?;
    ensure!(h.ledger.balance(&t.buyer_wallet) == 0);
    ensure!(h.payouts_to(&t.buyer_wallet).is_empty());
    Ok(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_on_one_daemon() {
    let h = Harness::start("", "", "").await;
    let t0 = Instant::now();
    let (sell, buy, range, market, coop, dsettle, dcancel, restore) = tokio::join!(
        scenario_sell_v2(&h),
        scenario_buy_v1(&h),
        scenario_range(&h),
        scenario_market(&h),
        scenario_coop_cancel(&h),
        scenario_dispute_settle(&h),
        scenario_dispute_cancel(&h),
        scenario_restore(&h),
    );
    let mut node = 0i128;
    let mut failed = Vec::new();
    for (name, r) in [
        ("sell flow (v2)", sell),
        ("buy flow (v1)", buy),
        ("range order + child", range),
        ("market-price order", market),
        ("cooperative cancel", coop),
        ("dispute + admin settle", dsettle),
        ("dispute + admin cancel", dcancel),
        ("restore-session after losing local state", restore),
    ] {
        match r {
            Ok(n) => node += n,
            Err(e) => failed.push(format!("{name}: {e:#}")),
        }
    }
    assert!(
        failed.is_empty(),
        "scenarios failed:\n{}",
        failed.join("\n")
    );
    assert_eq!(h.ledger.balance(NODE), node, "node revenue");
    // Every order ended (success, canceled, canceled-by-admin): none left open.
    let open = h.open_orders().await;
    assert!(open.is_empty(), "open orders left: {open:?}");
    // No hold invoice was settled or canceled twice.
    for (hash, r) in h.ledger.holds() {
        assert!(r.settles <= 1 && r.cancels <= 1, "hold {hash:?}: {r:?}");
    }
    eprintln!("trades_on_one_daemon: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Scenarios with their own daemon
// ---------------------------------------------------------------------------------------------

/// Every payout attempt fails (payment_attempts = 2): the buyer gets `payment-failed`, then
/// `add-invoice`; a new invoice is paid (`invoice-updated`, `purchase-completed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_failure_then_new_invoice() {
    let h = Harness::start(
        "payment_attempts = 2\npayment_retries_interval = 6",
        "",
        "pay_timeout_secs = 5",
    )
    .await;
    let t0 = Instant::now();
    let mut t = sell_to_active(&h, "pf", 80_000, Protocol::V2, Protocol::V2)
        .await
        .unwrap();
    fiat_sent(&mut t).await.unwrap();
    h.ledger.set_faults(Faults {
        fail_payments: 2,
        ..Faults::default()
    });
    let id = t.id;
    t.seller
        .send(Some(id), Action::Release, None)
        .await
        .unwrap();
    t.seller
        .wait(Action::HoldInvoicePaymentSettled, id)
        .await
        .unwrap();
    t.buyer.wait(Action::Released, id).await.unwrap();
    let k = t
        .buyer
        .wait_where(Action::PaymentFailed, Some(id), |_| true)
        .await
        .unwrap();
    match k.payload {
        Some(Payload::PaymentFailed(info)) => {
            assert_eq!(info.payment_attempts, 1, "{info:?}");
            assert_eq!(info.payment_retries_interval, 6, "{info:?}");
        },
        other => panic!("payment-failed payload {other:?}"),
    }
    let ask = t.buyer.wait_order(Action::AddInvoice, id).await.unwrap();
    assert_eq!(ask.amount, (t.amount - t.fee) as i64);
    let failed = h.payouts_to(&t.buyer_wallet);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|(_, s)| matches!(s, AttemptStatus::Failed(_)))
    );
    assert_eq!(h.ledger.balance(&t.buyer_wallet), 0);

    let inv = invoice(&h.ledger, &t.buyer_wallet, t.amount - t.fee).unwrap();
    t.buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await
        .unwrap();
    t.buyer.wait(Action::InvoiceUpdated, id).await.unwrap();
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    assert_eq!(
        h.ledger.balance(&t.buyer_wallet),
        i128::from(t.amount - t.fee)
    );
    assert_eq!(
        h.ledger.balance(&t.seller_wallet),
        -i128::from(t.amount + t.fee)
    );
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
    let ok: Vec<_> = h
        .payouts_to(&t.buyer_wallet)
        .into_iter()
        .filter(|(_, s)| matches!(s, AttemptStatus::Succeeded(_)))
        .collect();
    assert_eq!(ok.len(), 1, "{ok:?}");
    eprintln!(
        "payout_failure_then_new_invoice: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// The taker of a sell order never sends its invoice: after `expiration_seconds` the taker gets
/// `canceled`, the maker `new-order` (the order is back in the book), and a new taker can take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_step_timeout_republishes() {
    let h = Harness::start("expiration_seconds = 5", "", "").await;
    let t0 = Instant::now();
    let mut seller = h.client("to-seller", Protocol::V2).await;
    let mut buyer = h.client("to-buyer", Protocol::V1).await;
    let (id, _) = make(&mut seller, sell_order(20_000, 10)).await.unwrap();
    let taken = Instant::now();
    buyer
        .send_opening(Some(id), Action::TakeSell, None)
        .await
        .unwrap();
    buyer.wait_order(Action::AddInvoice, id).await.unwrap();
    seller.wait(Action::WaitingBuyerInvoice, id).await.unwrap();
    buyer.wait(Action::Canceled, id).await.unwrap();
    let o = seller.wait_order(Action::NewOrder, id).await.unwrap();
    // The window is 5 s counted from the take in whole seconds.
    let waited = taken.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "timed out too early: {waited:?}"
    );
    assert_eq!(o.status, Some(Status::Pending));
    assert_eq!(o.buyer_trade_pubkey, None);

    // Back in the book: another buyer can take it.
    let mut buyer2 = h.client("to-buyer2", Protocol::V2).await;
    buyer2
        .send_opening(Some(id), Action::TakeSell, None)
        .await
        .unwrap();
    buyer2.wait_order(Action::AddInvoice, id).await.unwrap();
    // The first buyer's late invoice is refused.
    let inv = invoice(&h.ledger, "to-buyer", 20_000 - fee(20_000)).unwrap();
    buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await
        .unwrap();
    buyer
        .wait_where(Action::CantDo, Some(id), |_| true)
        .await
        .unwrap();
    assert!(h.ledger.holds().is_empty());
    eprintln!(
        "waiting_step_timeout_republishes: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// `kill -9` twice mid-trade, restarting the same binary on the same data directory:
/// 1. with the escrow locked (`active`); the buyer's `fiat-sent` is sent while the daemon is
///    down and is picked up from the relay after the restart;
/// 2. with the buyer's payout in flight after `release`; the payment completes while the daemon
///    is down, and the restarted daemon finds it instead of paying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_trade_and_restart() {
    let mut h = Harness::start("", "freshness_secs = 60", "pay_timeout_secs = 5").await;
    let t0 = Instant::now();
    let mut t = sell_to_active(&h, "k9", 90_000, Protocol::V2, Protocol::V1)
        .await
        .unwrap();
    let id = t.id;

    h.daemon.kill9();
    t.buyer
        .send(Some(id), Action::FiatSent, None)
        .await
        .unwrap();
    h.restart().await;
    let bp = t.buyer.pubkey();
    t.seller
        .wait_where(
            Action::FiatSentOk,
            Some(id),
            |k| matches!(&k.payload, Some(Payload::Peer(p)) if p.pubkey == bp),
        )
        .await
        .unwrap();
    t.buyer.wait(Action::FiatSentOk, id).await.unwrap();

    // Payout hangs in flight; kill the daemon while it does.
    h.ledger.set_faults(Faults {
        hang_payments: true,
        ..Faults::default()
    });
    t.seller
        .send(Some(id), Action::Release, None)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !h
        .payouts_to(&t.buyer_wallet)
        .iter()
        .any(|(_, s)| *s == AttemptStatus::InFlight)
    {
        assert!(Instant::now() < deadline, "no payout attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.daemon.kill9();
    h.ledger.finish_hung(false);
    h.restart().await;

    t.seller
        .wait(Action::HoldInvoicePaymentSettled, id)
        .await
        .unwrap();
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    check_paid(&h, &t).unwrap();
    assert_eq!(
        h.payouts_to(&t.buyer_wallet).len(),
        1,
        "exactly one payment attempt"
    );
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
    for (hash, r) in h.ledger.holds() {
        assert_eq!(r.settles, 1, "hold {hash:?}: {r:?}");
    }
    // Nothing replayed: no second order, no refusal, no duplicate completion.
    for p in [&mut t.seller, &mut t.buyer] {
        let rest = p.drain(Duration::from_millis(1500)).await;
        for k in &rest {
            assert!(
                !matches!(
                    k.action,
                    Action::NewOrder | Action::CantDo | Action::PurchaseCompleted
                ),
                "{}: unexpected {:?}",
                p.name(),
                k
            );
        }
    }
    assert_eq!(h.daemon.starts, 3);
    // No request was applied twice (a replayed new-order would leave a pending order).
    let open = h.open_orders().await;
    assert!(open.is_empty(), "open orders left: {open:?}");
    eprintln!(
        "kill9_mid_trade_and_restart: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
