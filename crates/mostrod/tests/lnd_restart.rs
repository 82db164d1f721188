//! End-to-end: the real `mostrod` binary while LND restarts with a payout in flight.
//!
//! A sell trade reaches release; the buyer's payout hangs in flight; the LND simulator
//! restarts (every connection and stream dropped) and answers as LND does while starting up
//! ("waiting to start, RPC services not available", ...) so every pay and status call of the
//! daemon fails; then it serves again with its state intact. Either the hung payment completes
//! (the buyer is paid exactly once, the order ends `success`) or it failed while the node was
//! down (the buyer is asked for a new invoice only once the node's record says so, and is
//! paid once, on the new invoice).
//!
//! The harness (daemon process, relay, simulator, clients) is a copy of the one in `e2e.rs`,
//! keeping the simulator handle to restart it.

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
use mostro_client::MostroClient;
use mostro_core::fees::party_fee;
use mostro_core::order::Protocol;
use mostro_core::ports::{Clock, Network};
use mostro_core::types::{PaymentHash, Sats};
use mostro_core::wire::{Action, Kind, MessageKind, Payload, SmallOrder, Status};
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
    ledger: Ledger,
    sim: mostro_lnd_sim::LndSim,
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
            ledger,
            sim,
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

// ---------------------------------------------------------------------------------------------
// The restart scenarios
// ---------------------------------------------------------------------------------------------

/// Polls `cond` every 50 ms until it holds (bounded by [`WAIT`]).
async fn until(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        ensure!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The `s` tag of the latest kind-38383 event of order `id` on the relay.
async fn relay_status(h: &Harness, id: Uuid) -> anyhow::Result<Option<String>> {
    let c = nostr_sdk::Client::default();
    c.add_relay(h.relay_url.as_str()).await?;
    c.connect().await;
    c.wait_for_connection(Duration::from_secs(5)).await;
    let f = nostr_sdk::Filter::new()
        .kind(nostr_sdk::Kind::from(38383u16))
        .author(h.node)
        .identifier(id.to_string());
    let events = c.fetch_events(f, Duration::from_secs(5)).await?;
    c.shutdown().await;
    let latest = events.into_iter().max_by_key(|e| e.created_at);
    Ok(latest.and_then(|e| {
        e.tags.iter().find_map(|t| match t.as_slice() {
            [k, v, ..] if k == "s" => Some(v.clone()),
            _ => None,
        })
    }))
}

/// Waits (bounded) until the relay shows order `id` with status `want`.
async fn relay_status_is(h: &Harness, id: Uuid, want: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = relay_status(h, id).await?;
        if st.as_deref() == Some(want) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "order {id} on the relay: {st:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The daemon's open order `id` (from the admin endpoint), if it is still open.
async fn open_order(h: &Harness, id: Uuid) -> Option<serde_json::Value> {
    h.open_orders()
        .await
        .into_iter()
        .find(|o| o["id"] == id.to_string())
}

/// Daemon settings of these scenarios (the smallest mostrod accepts): a payout call reports
/// "in flight" after 5 s, and a payout in flight is checked with the node every 6 s.
fn start_settings(attempts: u32) -> (String, String) {
    (
        format!("payment_attempts = {attempts}\npayment_retries_interval = 6"),
        "pay_timeout_secs = 5".to_owned(),
    )
}

/// Common first half: a sell trade up to release with the payout hung in flight, then an LND
/// restart that stays in its start-up until the daemon has had pay / status calls refused.
/// Returns the trade and the payout hash.
async fn release_then_restart_lnd(
    h: &Harness,
    tag: &str,
    amount: u64,
    fail_while_down: bool,
) -> anyhow::Result<(Trade, PaymentHash)> {
    let mut t = sell_to_active(h, tag, amount, Protocol::V2, Protocol::V2).await?;
    fiat_sent(&mut t).await?;
    h.ledger.set_faults(Faults {
        hang_payments: true,
        ..Faults::default()
    });
    let id = t.id;
    t.seller.send(Some(id), Action::Release, None).await?;
    t.seller.wait(Action::HoldInvoicePaymentSettled, id).await?;
    t.buyer.wait(Action::Released, id).await?;
    until("the payout is in flight", || {
        h.payouts_to(&t.buyer_wallet)
            .iter()
            .any(|(_, s)| *s == AttemptStatus::InFlight)
    })
    .await?;
    let hashes: Vec<PaymentHash> = h
        .ledger
        .all_attempts()
        .into_iter()
        .map(|(hash, _)| hash)
        .collect();
    ensure!(hashes.len() == 1, "one payout attempt: {hashes:?}");
    let hash = hashes[0];
    ensure!(h.ledger.invoice(&hash).unwrap().wallet == t.buyer_wallet);

    // LND restarts: connections and streams dropped, back in its start-up.
    h.sim.restart_starting_up().await?;
    if fail_while_down {
        // The network gives up on the HTLC while the node is not answering.
        h.ledger.finish_hung(true);
    }
    let before = h.sim.refused_calls();
    // Bounded: the daemon checks a payout in flight every retry interval (6 s).
    until(
        "the daemon's payout calls are refused while LND starts",
        || h.sim.refused_calls().router > before.router,
    )
    .await?;
    h.sim
        .set_startup_phase(Some(mostro_lnd_sim::StartupPhase::WalletLocked));
    let at = h.sim.refused_calls().router;
    until("refused with the wallet locked", || {
        h.sim.refused_calls().router > at
    })
    .await?;
    h.sim
        .set_startup_phase(Some(mostro_lnd_sim::StartupPhase::RpcStarting));
    let at = h.sim.refused_calls().router;
    until("refused while the RPC server starts", || {
        h.sim.refused_calls().router > at
    })
    .await?;

    // While the node cannot say, nothing is decided: no second payment, no new invoice asked,
    // the order is still waiting for its payout.
    let attempts = h.ledger.attempts(&hash);
    ensure!(attempts.len() == 1, "still one attempt: {attempts:?}");
    ensure!(
        h.ledger.all_attempts().len() == 1,
        "no other payment: {:?}",
        h.ledger.all_attempts()
    );
    let seen = t.buyer.drain(Duration::from_millis(300)).await;
    ensure!(
        !seen.iter().any(|k| matches!(
            k.action,
            Action::AddInvoice | Action::PaymentFailed | Action::PurchaseCompleted
        )),
        "the buyer was told something while LND was starting: {:?}",
        seen.iter().map(|k| k.action.as_str()).collect::<Vec<_>>()
    );
    let o = open_order(h, id)
        .await
        .ok_or_else(|| anyhow!("order {id} no longer open"))?;
    ensure!(
        o["status"] == "settled-hold-invoice",
        "order while LND starts: {o}"
    );
    let health = h.daemon.admin;
    ensure!(
        tokio::task::spawn_blocking(move || health_ok(health)).await?,
        "mostrod stays healthy while LND starts"
    );
    // ... but not ready: its Lightning node does not answer GetInfo.
    let addr = h.daemon.admin;
    until_async(
        "/health/ready names lightning while LND starts",
        || async move {
            tokio::task::spawn_blocking(move || http_get(addr, "/health/ready", None))
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|(status, body)| {
                    status.contains(" 503 ") && body.contains("lightning")
                })
        },
    )
    .await?;
    Ok((t, hash))
}

/// The process serves (`/health/live`); readiness is `/health`, which needs the node.
fn health_ok(addr: SocketAddr) -> bool {
    http_get(addr, "/health/live", None).is_ok_and(|(status, _)| status.contains(" 200 "))
}

/// Waits (bounded by [`WAIT`]) until the async `cond` holds.
async fn until_async<F, Fut>(what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The escrow hold invoice of the test's only trade.
fn the_hold(h: &Harness) -> anyhow::Result<mostro_testkit::ledger::HoldRecord> {
    let holds = h.ledger.holds();
    ensure!(holds.len() == 1, "one hold invoice: {}", holds.len());
    Ok(holds[0].1.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lnd_restarts_while_a_payout_is_in_flight() {
    let (mostro, lightning) = start_settings(2);
    let h = Harness::start(&mostro, "", &lightning).await;
    let (mut t, hash) = release_then_restart_lnd(&h, "rs", 60_000, false)
        .await
        .unwrap();
    let id = t.id;

    // LND serves again and the hung payment completes.
    h.sim.set_starting_up(false);
    h.ledger.finish_hung(false);
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    t.buyer.wait(Action::Rate, id).await.unwrap();
    relay_status_is(&h, id, "success").await.unwrap();
    assert!(open_order(&h, id).await.is_none(), "the order is closed");

    // Give a duplicate every chance to happen: more than a retry interval.
    let later = t.buyer.drain(Duration::from_secs(7)).await;
    assert!(
        !later
            .iter()
            .any(|k| matches!(k.action, Action::AddInvoice | Action::PaymentFailed)),
        "{:?}",
        later.iter().map(|k| k.action.as_str()).collect::<Vec<_>>()
    );
    let attempts = h.ledger.attempts(&hash);
    assert_eq!(
        attempts.len(),
        1,
        "one attempt on the payout hash: {attempts:?}"
    );
    assert!(matches!(attempts[0].status, AttemptStatus::Succeeded(_)));
    assert_eq!(
        h.ledger.all_attempts().len(),
        1,
        "no other payment at all: {:?}",
        h.ledger.all_attempts()
    );
    assert_eq!(
        h.payouts_to(&t.buyer_wallet),
        vec![(Sats(t.amount - t.fee), AttemptStatus::Succeeded(Sats(1)))]
    );
    assert_eq!(
        h.ledger.invoice(&hash).unwrap().received,
        Sats(t.amount - t.fee)
    );
    check_paid(&h, &t).unwrap();
    let hold = the_hold(&h).unwrap();
    assert_eq!(hold.settles, 1, "the hold invoice is settled once");
    assert_eq!(hold.cancels, 0);
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
    // Every payout call carried the configured CLTV bound.
    assert!(!h.sim.cltv_limits().is_empty());
    assert!(
        h.sim.cltv_limits().iter().all(|l| *l > 0),
        "{:?}",
        h.sim.cltv_limits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_fails_while_lnd_restarts() {
    let (mostro, lightning) = start_settings(1);
    let h = Harness::start(&mostro, "", &lightning).await;
    let (mut t, hash) = release_then_restart_lnd(&h, "rf", 70_000, true)
        .await
        .unwrap();
    let id = t.id;
    assert!(
        matches!(h.ledger.attempts(&hash)[0].status, AttemptStatus::Failed(_)),
        "the payment failed while LND was starting"
    );

    // LND serves again: only its record can tell the daemon the payment failed.
    let status_calls = h.ledger.status_calls();
    h.sim.set_starting_up(false);
    let ask = t.buyer.wait_order(Action::AddInvoice, id).await.unwrap();
    assert_eq!(ask.amount, (t.amount - t.fee) as i64);
    assert!(
        h.ledger.status_calls() > status_calls,
        "the daemon read the node's payment record before asking for a new invoice"
    );
    assert_eq!(
        h.ledger.attempts(&hash).len(),
        1,
        "the failed hash is not sent again"
    );
    assert_eq!(h.ledger.balance(&t.buyer_wallet), 0, "nothing paid yet");
    let o = open_order(&h, id).await.unwrap();
    assert_eq!(o["status"], "settled-hold-invoice", "{o}");

    let inv = invoice(&h.ledger, &t.buyer_wallet, t.amount - t.fee).unwrap();
    t.buyer
        .send(
            Some(id),
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, inv, None)),
        )
        .await
        .unwrap();
    t.buyer.wait(Action::PurchaseCompleted, id).await.unwrap();
    relay_status_is(&h, id, "success").await.unwrap();

    let later = t.buyer.drain(Duration::from_secs(7)).await;
    assert!(
        !later.iter().any(|k| k.action == Action::AddInvoice),
        "asked for an invoice again: {:?}",
        later.iter().map(|k| k.action.as_str()).collect::<Vec<_>>()
    );
    // Paid exactly once, on the new invoice; the failed hash stayed at its one failed attempt.
    let all = h.ledger.all_attempts();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(h.ledger.attempts(&hash).len(), 1);
    let ok: Vec<_> = all
        .iter()
        .filter(|(_, a)| matches!(a.status, AttemptStatus::Succeeded(_)))
        .collect();
    assert_eq!(ok.len(), 1, "{all:?}");
    assert_ne!(ok[0].0, hash);
    check_paid(&h, &t).unwrap();
    let hold = the_hold(&h).unwrap();
    assert_eq!(hold.settles, 1, "the hold invoice is settled once");
    assert_eq!(h.ledger.balance(NODE), i128::from(2 * t.fee) - ROUTING_FEE);
}
