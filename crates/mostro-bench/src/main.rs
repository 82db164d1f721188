//! `mostro-bench`: load benchmark of the real `mostrod` binary.
//!
//! It starts an in-process Nostr relay (or uses `--relay`), a regtest ledger behind the LND
//! simulator, and `mostrod run --config <generated>` as a child process (the sibling binary of
//! this one: run `cargo build --release -p mostrod` first, or pass `--mostrod`), then drives
//! real protocol clients against it:
//!
//! * `orders`: U concurrent makers each send N new orders (fresh trade key per order, identity
//!   proof, increasing trade index) and wait for each `new-order` acknowledgement;
//! * `trades`: P concurrent pairs complete sell trades (new order, take-sell, add-invoice with a
//!   real invoice from the ledger wallet, the seller wallet pays the hold invoice, fiat-sent,
//!   release, purchase-completed).
//!
//! It reports throughput, latency percentiles per step, errors by reason, the daemon's CPU time
//! per message and its memory, and appends the table to `docs/performance.md`.

mod env;
mod peer;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, ValueEnum};
use mostro_core::order::Protocol;
use mostro_core::types::Sats;
use mostro_core::wire::{Action, Kind, Payload, SmallOrder, Status};
use mostro_testkit::Ledger;
use mostro_testkit::ledger::{AttemptStatus, Faults};
use nostr_sdk::{FromBech32, PublicKey};
use tokio::sync::{Barrier, watch};

use crate::env::{Daemon, DaemonSetup};
use crate::peer::Peer;
use crate::stats::Samples;

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Concurrent makers sending new orders.
    Orders,
    /// Concurrent pairs completing sell trades.
    Trades,
    /// Both, one after the other, against the same daemon.
    All,
    /// `trades` while the daemon is SIGKILLed `--kills` times (0.5-2.5 s apart) and restarted
    /// after `--down-secs`; then checks every buyer was paid exactly once and no hold invoice
    /// is left accepted.
    Chaos,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "mostro-bench", about = "Load benchmark of the mostrod daemon")]
struct Cli {
    /// orders | trades | all (default all with --smoke).
    mode: Option<Mode>,
    /// Concurrent makers (orders).
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// New orders per maker (orders).
    #[arg(long, default_value_t = 20)]
    per_user: usize,
    /// Concurrent buyer/seller pairs (trades).
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Trades each pair completes one after the other (trades).
    #[arg(long, default_value_t = 10)]
    trades_per_pair: usize,
    /// Clients speak protocol v1 (NIP-59 gift wraps) instead of v2.
    #[arg(long)]
    v1: bool,
    /// Use this relay instead of starting one in-process.
    #[arg(long)]
    relay: Option<String>,
    /// The process id of that relay, to report its CPU time beside the daemon's and the bench's.
    #[arg(long, requires = "relay")]
    relay_pid: Option<u32>,
    /// The mostrod binary (default: `mostrod` next to this binary).
    #[arg(long)]
    mostrod: Option<PathBuf>,
    /// Drive an already running daemon with this node pubkey (hex or npub) instead of starting
    /// one (orders only; needs --relay; no CPU/RSS figures).
    #[arg(long)]
    node_pubkey: Option<String>,
    /// SQLite durability of the daemon under test: full (fsync per commit) or normal.
    #[arg(long, default_value = "full")]
    sync: String,
    /// Trades: one pair's payout hangs (ledger fault) while the other pairs trade; released at
    /// the end.
    #[arg(long)]
    hang_one: bool,
    /// A few seconds: 2 makers x 3 orders and 2 pairs x 1 trade; exit code 0 when all succeeded.
    #[arg(long)]
    smoke: bool,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Chaos: how many times the daemon is SIGKILLed during the trades.
    #[arg(long, default_value_t = 5)]
    kills: u32,
    /// Chaos: seconds the daemon stays down after each kill (requests sent meanwhile must be
    /// served after the restart).
    #[arg(long, default_value_t = 0)]
    down_secs: u64,
    /// Trades: every client's clock is this many seconds behind (its requests are stamped that
    /// far in the past).
    #[arg(long, default_value_t = 0)]
    client_skew_secs: u64,
    /// Chaos: how many times the in-process relay is killed and restarted on the same port
    /// (its stored events kept) during the trades.
    #[arg(long, default_value_t = 0)]
    relay_kills: u32,
    /// Chaos: seed of the kill schedule (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Daemon log filter (MOSTRO_LOG); its log goes to <dir>/mostrod.log.
    #[arg(long, default_value = "info")]
    daemon_log: String,
    /// Data directory (default: a fresh temporary directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Markdown file the report is appended to (default: docs/performance.md of the workspace,
    /// except with --smoke).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Do not append the report to a file.
    #[arg(long)]
    no_report: bool,
}

#[allow(clippy::print_stdout, reason = "the benchmark's report")]
fn say(s: &str) {
    println!("{s}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("mostro-bench: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        },
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            say("mostro-bench: some requests failed");
            ExitCode::FAILURE
        },
        Err(e) => {
            say(&format!("mostro-bench: {e:#}"));
            ExitCode::FAILURE
        },
    }
}

/// Everything a scenario needs.
struct Ctx {
    relay: String,
    node: PublicKey,
    protocol: Protocol,
    ledger: Option<Ledger>,
    timeout: Duration,
    /// Client clock skew (seconds behind).
    skew_secs: u64,
}

/// What a scenario measured.
struct Run {
    title: String,
    samples: Samples,
    /// Completed units (acks or trades).
    done: usize,
    unit: &'static str,
    wall: Duration,
    extra: Vec<String>,
    /// Checks beyond the replies passed (chaos: paid once, no hold left accepted).
    ok: bool,
}

async fn run(mut cli: Cli) -> anyhow::Result<bool> {
    if cli.smoke {
        cli.users = 2;
        cli.per_user = 3;
        cli.pairs = 2;
        cli.trades_per_pair = 1;
        cli.timeout = cli.timeout.min(15);
    }
    let mode = cli
        .mode
        .unwrap_or(if cli.smoke { Mode::All } else { Mode::Orders });
    if mode == Mode::Chaos {
        // A request sent while the daemon is down is answered only after the restart.
        cli.timeout = cli.timeout.max(cli.down_secs.saturating_add(40));
    }
    if !matches!(cli.sync.as_str(), "full" | "normal") {
        bail!("--sync takes full or normal");
    }
    let protocol = if cli.v1 { Protocol::V1 } else { Protocol::V2 };
    let load_before = env::load_avg();

    let tmp;
    let dir = match &cli.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        },
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        },
    };

    let (mut relay_handle, relay) = match &cli.relay {
        Some(r) => (None, r.clone()),
        None => {
            let h = env::start_relay().await?;
            let url = h.url();
            (Some(h), url)
        },
    };

    let mut daemon: Option<Daemon> = None;
    let mut lightning = None;
    let node = match &cli.node_pubkey {
        Some(pk) => {
            if mode != Mode::Orders {
                bail!(
                    "--node-pubkey drives an external daemon: only `orders` (trades need the bench's Lightning simulator)"
                );
            }
            if cli.relay.is_none() {
                bail!("--node-pubkey needs --relay");
            }
            PublicKey::from_hex(pk)
                .or_else(|_| PublicKey::from_bech32(pk))
                .map_err(|e| anyhow!("--node-pubkey: {e}"))?
        },
        None => {
            let bin = match &cli.mostrod {
                Some(p) => p.clone(),
                None => std::env::current_exe()?.with_file_name("mostrod"),
            };
            let ln = env::start_lightning(&dir).await?;
            let d = env::start_daemon(
                &bin,
                &dir,
                &ln,
                &DaemonSetup {
                    relay: relay.clone(),
                    synchronous: cli.sync.clone(),
                    log: cli.daemon_log.clone(),
                },
            )
            .await?;
            let pk = d.pubkey;
            daemon = Some(d);
            lightning = Some(ln);
            pk
        },
    };
    let ctx = Arc::new(Ctx {
        relay: relay.clone(),
        node,
        protocol,
        ledger: lightning.as_ref().map(|l| l.ledger.clone()),
        timeout: Duration::from_secs(cli.timeout),
        skew_secs: cli.client_skew_secs,
    });

    let result = scenarios(
        &cli,
        mode,
        &ctx,
        daemon.as_mut(),
        relay_handle.as_mut(),
        &load_before,
    )
    .await;
    if let Some(d) = daemon.as_mut() {
        d.stop().await;
        if let Err(e) = &result {
            say(&format!(
                "daemon log ({}), last lines:\n{}",
                d.log.display(),
                tail(&d.log, 20)
            ));
            let _ = e;
        }
    }
    drop(lightning);
    if let Some(r) = relay_handle.as_mut() {
        r.shutdown();
    }
    result
}

fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!("mostro-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Daemon resource figures around one scenario.
struct Usage {
    cpu: f64,
    counters: env::MsgCounters,
    self_cpu: f64,
    /// The external relay's CPU seconds (`--relay-pid`).
    relay_cpu: Option<f64>,
}

async fn usage(d: Option<&Daemon>, relay_pid: Option<u32>) -> Option<Usage> {
    let d = d?;
    let pid = d.pid().to_string();
    Some(Usage {
        cpu: env::cpu_secs(&pid).ok()?,
        counters: d.counters().await.ok()?,
        self_cpu: env::cpu_secs("self").unwrap_or(0.0),
        relay_cpu: relay_pid.and_then(|p| env::cpu_secs(&p.to_string()).ok()),
    })
}

/// Waits until the daemon's outbound counters stop moving (effects that run after the last
/// reply, e.g. the public order event), at most 5 s.
async fn settle(d: Option<&Daemon>) {
    let Some(d) = d else { return };
    let mut last = None;
    for _ in 0..25 {
        let c = d
            .counters()
            .await
            .ok()
            .map(|c| (c.inbound, c.outbound, c.published));
        if c.is_some() && c == last {
            return;
        }
        last = c;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scenarios(
    cli: &Cli,
    mode: Mode,
    ctx: &Arc<Ctx>,
    mut daemon: Option<&mut Daemon>,
    mut relay: Option<&mut env::BenchRelay>,
    load_before: &str,
) -> anyhow::Result<bool> {
    warm_up(ctx)
        .await
        .context("warm-up (is the daemon reading the relay?)")?;
    let pid = daemon.as_ref().map(|d| d.pid().to_string());
    let idle_rss = pid.as_deref().and_then(|p| env::vm_kb(p, "VmRSS").ok());
    let mut all_ok = true;
    let mut runs = Vec::new();
    let todo: Vec<Mode> = match mode {
        Mode::All => vec![Mode::Orders, Mode::Trades],
        m => vec![m],
    };
    for m in todo {
        // A chaos run restarts the daemon: its process figures would not add up.
        let figures = m != Mode::Chaos;
        let before = if figures {
            usage(daemon.as_deref(), cli.relay_pid).await
        } else {
            None
        };
        let run = match m {
            Mode::Orders => orders(cli, ctx).await?,
            Mode::Chaos => chaos(cli, ctx, daemon.as_deref_mut(), relay.as_deref_mut()).await?,
            _ => trades(cli, ctx).await?,
        };
        settle(daemon.as_deref()).await;
        let after = if figures {
            usage(daemon.as_deref(), cli.relay_pid).await
        } else {
            None
        };
        let peak = pid.as_deref().and_then(|p| env::vm_kb(p, "VmHWM").ok());
        all_ok &= run.samples.error_count() == 0 && run.ok;
        let text = report(
            cli,
            &run,
            before.as_ref(),
            after.as_ref(),
            idle_rss,
            peak,
            load_before,
        );
        say(&text);
        runs.push(text);
        if let Some(d) = daemon.as_deref_mut()
            && !d.running()
        {
            bail!("the daemon exited during the run");
        }
    }
    if !cli.no_report && (cli.report.is_some() || !cli.smoke) {
        let path = cli.report.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/performance.md")
        });
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot append to {}", path.display()))?;
        for r in &runs {
            writeln!(f, "\n{r}")?;
        }
        say(&format!("appended to {}", path.display()));
    }
    Ok(all_ok)
}

fn sell_order(amount: i64) -> SmallOrder {
    SmallOrder {
        id: None,
        kind: Some(Kind::Sell),
        status: Some(Status::Pending),
        amount,
        fiat_code: "EUR".to_owned(),
        min_amount: None,
        max_amount: None,
        fiat_amount: 50,
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

/// One order from a throwaway maker, retried: proves the daemon's subscription is live.
async fn warm_up(ctx: &Ctx) -> anyhow::Result<()> {
    let mut p = Peer::connect("warm-up".into(), &ctx.relay, ctx.node, ctx.protocol, 5).await?;
    let mut last = anyhow!("no attempt");
    for i in 0..5usize {
        let idx = i64::try_from(i + 1)?;
        let ev = p.build(
            i,
            None,
            Some(idx),
            Action::NewOrder,
            Some(Payload::Order(sell_order(100_000))),
        )?;
        p.publish(&ev).await?;
        match p.expect(i, Action::NewOrder, Duration::from_secs(3)).await {
            Ok(_) => {
                p.shutdown().await;
                return Ok(());
            },
            Err(e) => last = e,
        }
    }
    p.shutdown().await;
    Err(last)
}

fn reason(e: &anyhow::Error) -> String {
    let s = e.to_string();
    if s.starts_with("timeout") || s.starts_with("cant-do") || s.starts_with("publish") {
        s
    } else {
        format!("other: {s}")
    }
}

async fn orders(cli: &Cli, ctx: &Arc<Ctx>) -> anyhow::Result<Run> {
    let users = cli.users;
    let per_user = cli.per_user;
    let barrier = Arc::new(Barrier::new(users + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for u in 0..users {
        let ctx = ctx.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let mut s = Samples::default();
            let peer = Peer::connect(
                format!("maker-{u}"),
                &ctx.relay,
                ctx.node,
                ctx.protocol,
                per_user,
            )
            .await;
            barrier.wait().await;
            let mut p = match peer {
                Ok(p) => p,
                Err(e) => {
                    s.error(&format!("connect: {e}"));
                    return s;
                },
            };
            for i in 0..per_user {
                let r: anyhow::Result<Duration> = async {
                    let idx = i64::try_from(i + 1)?;
                    let ev = p.build(
                        i,
                        None,
                        Some(idx),
                        Action::NewOrder,
                        Some(Payload::Order(sell_order(100_000))),
                    )?;
                    let t0 = Instant::now();
                    p.publish(&ev).await?;
                    let r = p.expect(i, Action::NewOrder, ctx.timeout).await?;
                    if r.kind.id.is_none() {
                        bail!("other: ack without order id");
                    }
                    Ok(r.at.saturating_duration_since(t0))
                }
                .await;
                match r {
                    Ok(d) => s.add("new-order -> ack", d),
                    Err(e) => s.error(&reason(&e)),
                }
            }
            p.shutdown().await;
            s
        });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut samples = Samples::default();
    while let Some(r) = tasks.join_next().await {
        samples.merge(r.map_err(|e| anyhow!("maker task: {e}"))?);
    }
    let wall = t0.elapsed();
    Ok(Run {
        title: format!(
            "orders: {users} concurrent makers x {per_user} new orders, protocol {}",
            proto_name(ctx.protocol)
        ),
        done: samples.count("new-order -> ack"),
        samples,
        unit: "new-order acks",
        wall,
        extra: Vec::new(),
        ok: true,
    })
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V1 => "v1 (gift wrap)",
        Protocol::V2 => "v2",
    }
}

/// What one pair does: `trades` sell trades one after the other. With `hang`, its single trade's
/// payout hangs; it signals `hung` once the payment is in flight.
struct PairJob {
    n: usize,
    trades: usize,
    hang: Option<watch::Sender<bool>>,
    start: Option<watch::Receiver<bool>>,
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn pair(ctx: Arc<Ctx>, job: PairJob, barrier: Arc<Barrier>) -> Samples {
    let mut s = Samples::default();
    let conn = async {
        let seller = Peer::connect(
            format!("seller-{}", job.n),
            &ctx.relay,
            ctx.node,
            ctx.protocol,
            job.trades,
        )
        .await?;
        let buyer = Peer::connect(
            format!("buyer-{}", job.n),
            &ctx.relay,
            ctx.node,
            ctx.protocol,
            job.trades,
        )
        .await?;
        anyhow::Ok((seller, buyer))
    }
    .await;
    barrier.wait().await;
    let (mut seller, mut buyer) = match conn {
        Ok(p) => p,
        Err(e) => {
            s.error(&format!("connect: {e}"));
            return s;
        },
    };
    seller.skew_secs = ctx.skew_secs;
    buyer.skew_secs = ctx.skew_secs;
    if let Some(mut rx) = job.start.clone() {
        wait_true(&mut rx).await;
    }
    let Some(ledger) = ctx.ledger.clone() else {
        s.error("no ledger");
        return s;
    };
    for t in 0..job.trades {
        let r = one_trade(
            &ctx,
            &ledger,
            &mut seller,
            &mut buyer,
            t,
            job.hang.as_ref(),
            &mut s,
        )
        .await;
        match r {
            Ok(d) => s.add(
                if job.hang.is_some() {
                    "hung pair: whole trade (payout held until the others finished)"
                } else {
                    "whole trade"
                },
                d,
            ),
            Err(e) => s.error(&reason(&e)),
        }
    }
    seller.shutdown().await;
    buyer.shutdown().await;
    s
}

#[allow(clippy::too_many_lines, reason = "one trade, step by step")]
async fn one_trade(
    ctx: &Ctx,
    ledger: &Ledger,
    seller: &mut Peer,
    buyer: &mut Peer,
    t: usize,
    hang: Option<&watch::Sender<bool>>,
    s: &mut Samples,
) -> anyhow::Result<Duration> {
    let to = ctx.timeout;
    let idx = i64::try_from(t + 1)?;
    let start = Instant::now();
    let tag = |step: &str| {
        if hang.is_some() {
            format!("hung pair: {step}")
        } else {
            step.to_owned()
        }
    };

    // 1. new sell order.
    let ev = seller.build(
        t,
        None,
        Some(idx),
        Action::NewOrder,
        Some(Payload::Order(sell_order(100_000))),
    )?;
    let t0 = Instant::now();
    seller.publish(&ev).await?;
    let ack = seller.expect(t, Action::NewOrder, to).await?;
    s.add(&tag("1 new-order -> ack"), ack.at - t0);
    let id = ack
        .kind
        .id
        .ok_or_else(|| anyhow!("other: ack without id"))?;

    // 2. take-sell -> add-invoice request with the payout amount.
    let ev = buyer.build(t, Some(id), Some(idx), Action::TakeSell, None)?;
    let t0 = Instant::now();
    buyer.publish(&ev).await?;
    let ask = buyer.expect(t, Action::AddInvoice, to).await?;
    s.add(&tag("2 take-sell -> add-invoice"), ask.at - t0);
    let payout = match &ask.kind.payload {
        Some(Payload::Order(o)) => o.amount,
        _ => bail!("other: add-invoice without order"),
    };

    // 3. add-invoice (a real regtest invoice of the buyer's wallet) -> seller gets the hold.
    let sats = u64::try_from(payout).map_err(|_| anyhow!("other: bad payout {payout}"))?;
    let invoice = ledger
        .wallet_invoice(buyer.name(), Some(Sats(sats)), 24 * 3600)
        .map_err(|e| anyhow!("other: buyer wallet: {e}"))?;
    let ev = buyer.build(
        t,
        Some(id),
        None,
        Action::AddInvoice,
        Some(Payload::PaymentRequest(None, invoice, None)),
    )?;
    let t0 = Instant::now();
    buyer.publish(&ev).await?;
    let pay = seller.expect(t, Action::PayInvoice, to).await?;
    s.add(&tag("3 add-invoice -> pay-invoice"), pay.at - t0);
    let Some(Payload::PaymentRequest(_, hold, _)) = pay.kind.payload else {
        bail!("other: pay-invoice without invoice")
    };

    // 4. the seller's wallet pays the hold invoice -> both notified.
    let t0 = Instant::now();
    ledger
        .pay_hold(seller.name(), &hold)
        .map_err(|e| anyhow!("other: seller wallet: {e}"))?;
    let a = seller.expect(t, Action::BuyerTookOrder, to).await?;
    let b = buyer
        .expect(t, Action::HoldInvoicePaymentAccepted, to)
        .await?;
    s.add(&tag("4 hold paid -> both notified"), a.at.max(b.at) - t0);

    // 5. fiat-sent -> seller notified.
    let ev = buyer.build(t, Some(id), None, Action::FiatSent, None)?;
    let t0 = Instant::now();
    buyer.publish(&ev).await?;
    let ok = seller.expect(t, Action::FiatSentOk, to).await?;
    s.add(&tag("5 fiat-sent -> fiat-sent-ok"), ok.at - t0);

    // 6. release -> hold settled, buyer paid.
    if hang.is_some() {
        ledger.set_faults(Faults {
            hang_payments: true,
            ..Faults::default()
        });
    }
    let ev = seller.build(t, Some(id), None, Action::Release, None)?;
    let t0 = Instant::now();
    seller.publish(&ev).await?;
    let settled = seller
        .expect(t, Action::HoldInvoicePaymentSettled, to)
        .await?;
    if let Some(h) = hang {
        // Wait for the payout attempt to be in flight, then let other payments through again
        // (the hung one stays in flight until `finish_hung`).
        let deadline = Instant::now() + to;
        while !ledger
            .all_attempts()
            .iter()
            .any(|(_, a)| a.status == AttemptStatus::InFlight)
        {
            if Instant::now() > deadline {
                bail!("other: the payout never went in flight");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ledger.set_faults(Faults::default());
        let _ = h.send(true);
    }
    let done_to = if hang.is_some() { to * 10 } else { to };
    let done = buyer.expect(t, Action::PurchaseCompleted, done_to).await?;
    s.add(&tag("6 release -> settled"), settled.at - t0);
    s.add(&tag("6 release -> purchase-completed"), done.at - t0);
    Ok(start.elapsed())
}

async fn trades(cli: &Cli, ctx: &Arc<Ctx>) -> anyhow::Result<Run> {
    let Some(ledger) = ctx.ledger.clone() else {
        bail!("trades need the bench's Lightning simulator");
    };
    let pairs = cli.pairs;
    let per = cli.trades_per_pair;
    let hang = cli.hang_one;
    let barrier = Arc::new(Barrier::new(pairs + usize::from(hang) + 1));
    let (hung_tx, hung_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut hung_task = None;
    if hang {
        let job = PairJob {
            n: pairs,
            trades: 1,
            hang: Some(hung_tx),
            start: None,
        };
        hung_task = Some(tokio::spawn(pair(ctx.clone(), job, barrier.clone())));
    }
    for n in 0..pairs {
        let job = PairJob {
            n,
            trades: per,
            hang: None,
            start: hang.then(|| hung_rx.clone()),
        };
        tasks.spawn(pair(ctx.clone(), job, barrier.clone()));
    }
    barrier.wait().await;
    if hang {
        let mut rx = hung_rx.clone();
        tokio::time::timeout(ctx.timeout * 4, wait_true(&mut rx))
            .await
            .map_err(|_| anyhow!("the hung pair did not reach its payout"))?;
    }
    let t0 = Instant::now();
    let mut samples = Samples::default();
    while let Some(r) = tasks.join_next().await {
        samples.merge(r.map_err(|e| anyhow!("pair task: {e}"))?);
    }
    let wall = t0.elapsed();
    let done = samples.count("whole trade");
    let mut extra = Vec::new();
    if let Some(h) = hung_task {
        let in_flight = ledger
            .all_attempts()
            .iter()
            .filter(|(_, a)| a.status == AttemptStatus::InFlight)
            .count();
        extra.push(format!(
            "hang-one: while the other pairs traded, {in_flight} payout(s) stayed in flight (ledger fault); released after they finished"
        ));
        ledger.finish_hung(false);
        samples.merge(h.await.map_err(|e| anyhow!("hung pair: {e}"))?);
    }
    Ok(Run {
        title: format!(
            "trades: {pairs} concurrent pairs x {per} sell trades, protocol {}{}{}",
            proto_name(ctx.protocol),
            if ctx.skew_secs > 0 {
                format!(", clients' clocks {} s behind", ctx.skew_secs)
            } else {
                String::new()
            },
            if hang {
                ", one more pair's payout hanging"
            } else {
                ""
            }
        ),
        samples,
        done,
        unit: "complete trades",
        wall,
        extra,
        ok: true,
    })
}

/// `trades` while the daemon is killed and restarted; then the funds checks.
/// The next value of a xorshift generator.
fn next_rand(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Order id (`d`) -> status (`s`) of the newest kind-38383 event of each order on the relay.
async fn order_events(relay: &str, node: PublicKey) -> anyhow::Result<HashMap<String, String>> {
    let c = nostr_sdk::Client::default();
    c.add_relay(relay).await?;
    c.connect().await;
    let f = nostr_sdk::Filter::new()
        .author(node)
        .kind(nostr_sdk::Kind::from(38383u16));
    let evs = c.fetch_events(f, Duration::from_secs(10)).await?;
    c.shutdown().await;
    let mut newest: HashMap<String, (nostr_sdk::Timestamp, String)> = HashMap::new();
    for e in evs {
        let tag = |name: &str| {
            e.tags
                .iter()
                .find(|t| t.as_slice().first().map(String::as_str) == Some(name))
                .and_then(|t| t.as_slice().get(1).cloned())
        };
        let (Some(d), Some(s)) = (tag("d"), tag("s")) else {
            continue;
        };
        let slot = newest.entry(d).or_insert((e.created_at, s.clone()));
        if e.created_at >= slot.0 {
            *slot = (e.created_at, s);
        }
    }
    Ok(newest.into_iter().map(|(d, (_, s))| (d, s)).collect())
}

#[allow(clippy::too_many_lines, reason = "the run, then its checks")]
async fn chaos(
    cli: &Cli,
    ctx: &Arc<Ctx>,
    daemon: Option<&mut Daemon>,
    relay: Option<&mut env::BenchRelay>,
) -> anyhow::Result<Run> {
    let Some(daemon) = daemon else {
        bail!("chaos needs a daemon started by the bench (not --node-pubkey)");
    };
    let Some(ledger) = ctx.ledger.clone() else {
        bail!("chaos needs the bench's Lightning simulator");
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }) | 1;
    let seed0 = seed;
    let killer = async {
        let mut kills = 0u32;
        let mut restart_ms = Vec::new();
        while kills < cli.kills && !done.load(std::sync::atomic::Ordering::Relaxed) {
            // 0.5-2.5 s between kills.
            let wait = Duration::from_millis(500 + next_rand(&mut seed) % 2000);
            tokio::time::sleep(wait).await;
            if done.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            daemon.kill9();
            kills += 1;
            tokio::time::sleep(Duration::from_secs(cli.down_secs)).await;
            let t0 = Instant::now();
            daemon.restart().await?;
            restart_ms.push(t0.elapsed().as_millis());
        }
        anyhow::Ok((kills, restart_ms))
    };
    let mut relay_seed = seed0.rotate_left(17) | 1;
    let relay_killer = async {
        let mut n = 0u32;
        if let Some(r) = relay {
            while n < cli.relay_kills && !done.load(std::sync::atomic::Ordering::Relaxed) {
                let wait = Duration::from_millis(1000 + next_rand(&mut relay_seed) % 2000);
                tokio::time::sleep(wait).await;
                r.kill();
                n += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                r.restart().await?;
            }
        }
        anyhow::Ok(n)
    };
    let load = async {
        let r = trades(cli, ctx).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    let (run, killed, relay_killed) = tokio::join!(load, killer, relay_killer);
    let mut run = run?;
    let (kills, restart_ms) = killed?;
    let relay_kills = relay_killed?;
    // Let the last payouts and cancels land.
    let holds_left = |l: &Ledger| {
        l.holds()
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.state,
                    mostro_core::ports::HoldInvoiceState::Accepted { .. }
                )
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while holds_left(&ledger) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let accepted = holds_left(&ledger);
    let mut over_paid = Vec::new();
    let mut paid = 0usize;
    for n in 0..cli.pairs {
        let wallet = format!("buyer-{n}");
        let ok = ledger
            .all_attempts()
            .into_iter()
            .filter(|(h, a)| {
                matches!(a.status, AttemptStatus::Succeeded(_))
                    && ledger.invoice(h).is_some_and(|i| i.wallet == wallet)
            })
            .count();
        paid += ok;
        if ok > cli.trades_per_pair {
            over_paid.push(format!("{wallet}: {ok}"));
        }
    }
    // Every completed trade's public order event says so on the relay (a publish that failed
    // while the relay was down is retried by the daemon's outbox: give it a while).
    let t_events = Instant::now();
    let mut events = order_events(&ctx.relay, ctx.node).await?;
    let count = |e: &HashMap<String, String>| e.values().filter(|s| *s == "success").count();
    while count(&events) < run.done && t_events.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        events = order_events(&ctx.relay, ctx.node).await?;
    }
    let events_settled_ms = t_events.elapsed().as_millis();
    let success = count(&events);
    let not_final: Vec<String> = events
        .iter()
        .filter(|(_, s)| *s != "success")
        .map(|(d, s)| format!("{d}: {s}"))
        .collect();
    run.ok = accepted == 0 && over_paid.is_empty() && paid == run.done && success == run.done;
    run.title = format!(
        "chaos: {} concurrent pairs x {} sell trades, daemon SIGKILLed {kills} times, down {} s each, relay killed {relay_kills} times",
        cli.pairs, cli.trades_per_pair, cli.down_secs
    );
    run.extra.push(format!(
        "order events on the relay ({events_settled_ms} ms after the last trade): {} orders, {success} show success; others: {}",
        events.len(),
        if not_final.is_empty() {
            "none".to_owned()
        } else {
            not_final.join(", ")
        }
    ));
    run.extra.push(format!(
        "kill schedule seed {seed0}; restarts answered /health after {restart_ms:?} ms; daemon started {} times",
        daemon.starts
    ));
    run.extra.push(format!(
        "buyers paid: {paid} payouts for {} completed trades; paid more than once: {}; hold invoices left accepted: {accepted}",
        run.done,
        if over_paid.is_empty() {
            "none".to_owned()
        } else {
            over_paid.join(", ")
        }
    ));
    Ok(run)
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
}

#[allow(clippy::cast_precision_loss, reason = "report arithmetic")]
fn report(
    cli: &Cli,
    run: &Run,
    before: Option<&Usage>,
    after: Option<&Usage>,
    idle_rss: Option<u64>,
    peak_rss: Option<u64>,
    load_before: &str,
) -> String {
    use std::fmt::Write;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = String::new();
    let _ = writeln!(o, "### {}\n", run.title);
    let _ = writeln!(
        o,
        "`mostro-bench {}` — {}, machine: {} cores, load average before: {load_before}, after: {}, SQLite synchronous={}{}\n",
        args.join(" "),
        date(),
        cores(),
        env::load_avg(),
        cli.sync,
        if cli.relay.is_some() {
            ""
        } else {
            ", in-process relay"
        },
    );
    let secs = run.wall.as_secs_f64();
    let _ = writeln!(o, "| metric | value |\n| --- | --- |");
    let _ = writeln!(
        o,
        "| throughput | **{:.1} {}/s** ({} in {:.2} s) |",
        run.done as f64 / secs.max(1e-9),
        run.unit,
        run.done,
        secs
    );
    let _ = writeln!(o, "| errors | {} |", run.samples.error_count());
    if let (Some(b), Some(a)) = (before, after) {
        let cpu = a.cpu - b.cpu;
        let inb = a.counters.inbound.saturating_sub(b.counters.inbound);
        let out = a.counters.outbound.saturating_sub(b.counters.outbound);
        let publ = a.counters.published.saturating_sub(b.counters.published);
        let msgs = inb + out + publ;
        let _ = writeln!(
            o,
            "| daemon messages | {inb} requests in, {out} direct messages out, {publ} public events |"
        );
        let _ = writeln!(
            o,
            "| daemon CPU | {cpu:.2} s = {:.0} % of one core; **{:.0} µs per request** (its replies and events included), {:.0} µs per message (in + out + public) |",
            100.0 * cpu / secs.max(1e-9),
            1e6 * cpu / (inb.max(1) as f64),
            1e6 * cpu / (msgs.max(1) as f64),
        );
        if cli.relay.is_some() {
            let _ = writeln!(
                o,
                "| bench process CPU (clients + LND simulator) | {:.2} s |",
                a.self_cpu - b.self_cpu
            );
            if let (Some(rb), Some(ra)) = (b.relay_cpu, a.relay_cpu) {
                let _ = writeln!(
                    o,
                    "| relay CPU (pid {}) | {:.2} s = {:.0} % of one core |",
                    cli.relay_pid.unwrap_or(0),
                    ra - rb,
                    100.0 * (ra - rb) / secs.max(1e-9)
                );
            }
        } else {
            let _ = writeln!(
                o,
                "| bench process CPU (clients + relay + LND simulator) | {:.2} s |",
                a.self_cpu - b.self_cpu
            );
        }
        let ln: Vec<String> = a
            .counters
            .ln_count
            .iter()
            .filter_map(|(m, n)| {
                let before_n = b
                    .counters
                    .ln_count
                    .iter()
                    .find(|(x, _)| x == m)
                    .map_or(0, |(_, n)| *n);
                let before_s = b
                    .counters
                    .ln_sum
                    .iter()
                    .find(|(x, _)| x == m)
                    .map_or(0.0, |(_, s)| *s);
                let sum = a
                    .counters
                    .ln_sum
                    .iter()
                    .find(|(x, _)| x == m)
                    .map_or(0.0, |(_, s)| *s);
                let n = n.saturating_sub(before_n);
                (n > 0).then(|| format!("{m} {n} x {:.1} ms", 1000.0 * (sum - before_s) / n as f64))
            })
            .collect();
        if !ln.is_empty() {
            let _ = writeln!(o, "| daemon Lightning calls (mean) | {} |", ln.join(", "));
        }
    }
    if let Some(r) = idle_rss {
        let _ = writeln!(o, "| daemon idle RSS | {:.1} MB |", r as f64 / 1024.0);
    }
    if let Some(r) = peak_rss {
        let _ = writeln!(
            o,
            "| daemon peak RSS (VmHWM) | {:.1} MB |",
            r as f64 / 1024.0
        );
    }
    for e in &run.extra {
        let _ = writeln!(o, "| note | {e} |");
    }
    let _ = writeln!(
        o,
        "\n| step | n | p50 ms | p90 ms | p99 ms | max ms |\n| --- | --: | --: | --: | --: | --: |"
    );
    for (step, n, p50, p90, p99, max) in run.samples.rows() {
        let _ = writeln!(
            o,
            "| {step} | {n} | {p50:.1} | {p90:.1} | {p99:.1} | {max:.1} |"
        );
    }
    if !run.samples.errors.is_empty() {
        let _ = writeln!(o, "\n| error | count |\n| --- | --: |");
        for (k, v) in &run.samples.errors {
            let _ = writeln!(o, "| {k} | {v} |");
        }
    }
    o
}
