//! Store benchmark on a file database. Prints a markdown table.
//!
//! ```text
//! cargo run --release -p mostro-sqlite --example store_bench -- [--orders N] [--commits N] [--dir PATH] [--page-size B] [--commits-only]
//! ```
//!
//! 1. Commit throughput with `synchronous` NORMAL and FULL: sequential (one commit at a time,
//!    awaited) and concurrent (64 tasks; group commit). Each commit is a trade step: replay-guard
//!    record, an order write with its version check, two outbox effects, completion of the
//!    previous step's effects and a user update.
//! 2. A database with `--orders` finished orders (default 1,000,000, bulk-imported) plus 2,000 open
//!    ones: latency of the periodic and per-request queries, and bytes per stored order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark binary"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mostro_core::machine::{Effect, Notice, Notify, UserUpdate};
use mostro_core::order::{HoldState, Order, Payout, PayoutInvoice, PayoutState, Protocol, Status};
use mostro_core::ports::{Commit, EffectId, OrderWrite, Store};
use mostro_core::types::{BlockHeight, EventId, OrderId, PaymentHash, PubKey, Sats, Timestamp};
use mostro_sqlite::{SqliteConfig, SqliteStore, Synchronous};
use mostro_testkit::store_suite;

const NOW: u64 = 1_750_000_000;
const OPEN_BIT: u64 = 1 << 40;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn page_size() -> u32 {
    arg("--page-size").map_or(SqliteConfig::default().page_size, |s| s.parse().unwrap())
}

fn key(tag: u8, n: u64) -> PubKey {
    let mut b = [tag; 32];
    b[..8].copy_from_slice(&n.to_be_bytes());
    PubKey(b)
}

fn oid(tag: u8, n: u64) -> OrderId {
    // Bytes 6 and 8 carry the UUID version and variant: keep `n` out of them.
    let mut b = [tag; 16];
    b[9..].copy_from_slice(&n.to_be_bytes()[1..]);
    OrderId::from_random_bytes(b)
}

/// A finished (or open) trade with realistic field sizes: both parties, settled hold with
/// its BOLT11, buyer invoice and payout.
fn trade(n: u64, identities: u64, open: bool) -> Order {
    let maker = key(0x1d, n % identities);
    let taker = key(0x1d, (n.wrapping_mul(7919) + 1) % identities);
    let mut o = store_suite::taken(store_suite::order(0, maker), taker);
    o.id = oid(if open { 0x0e } else { 0x0f }, n);
    // Open orders get keys and hashes of their own.
    let n = if open { n | OPEN_BIT } else { n };
    o.maker.trade_key = key(0x7a, n);
    if let Some(t) = o.taker.as_mut() {
        t.trade_key = key(0x7b, n);
    }
    o.created_at = Timestamp(NOW - 400_000_000 + n * 3);
    let invoice = format!("lnbc1500u1p{}{}", "q".repeat(260), n);
    let h = PaymentHash(key(0x4a, n).0);
    o = store_suite::with_hold(o, h, HoldState::Settled, Some(900_000));
    if let Some(hold) = o.hold.as_mut() {
        hold.bolt11 = Some(format!("lnbc1501u1p{}{}", "z".repeat(280), n));
    }
    o.buyer_invoice = Some(PayoutInvoice {
        bolt11: invoice.clone(),
        hash: PaymentHash(key(0x4b, n).0),
        amount: Some(Sats(149_850)),
        expires_at: Timestamp(NOW),
        min_final_cltv: 18,
    });
    o.payout = Some(Payout {
        invoice,
        hash: PaymentHash(key(0x4b, n).0),
        amount: Sats(149_850),
        attempts: 1,
        state: PayoutState::Succeeded,
        routing_fee: Sats(12),
        previous: Vec::new(),
        checking: false,
        paid_hash: None,
        duplicates: Vec::new(),
    });
    o.version = 9;
    o.status = Status::Success;
    o.buyer_rated = true;
    o.seller_rated = true;
    if open {
        o.status = Status::Active;
        o.payout = None;
        o.version = 3;
        let i = n & !OPEN_BIT;
        o.deadline = Some(Timestamp(NOW - 1_000 + i % 2_000));
        if let Some(hold) = o.hold.as_mut() {
            hold.state = HoldState::Accepted;
            hold.htlc_expiry = Some(BlockHeight(900_000 + u32::try_from(i % 500).unwrap()));
        }
    }
    o
}

fn event(tag: u8, n: u64) -> EventId {
    EventId(key(tag, n).0)
}

fn effects(o: &Order) -> Vec<Effect> {
    vec![
        Effect::PublishOrder { order_id: o.id },
        Effect::Notify(Notify {
            to: o.maker.trade_key,
            protocol: Protocol::V2,
            request_id: Some(7),
            order_id: Some(o.id),
            trade_index: None,
            notice: Notice::HoldInvoicePaymentSettled,
        }),
    ]
}

/// A worker stepping its own orders: 10 steps per order.
async fn stepper(store: Arc<SqliteStore>, worker: u64, commits: u64) {
    let mut current: Option<Order> = None;
    let mut done: Vec<EffectId> = Vec::new();
    for i in 0..commits {
        let n = worker * 10_000_000 + i;
        let (write, next) = match current.take() {
            Some(o) if o.version < 9 => {
                let mut next = o.clone();
                next.version += 1;
                next.deadline = Some(Timestamp(NOW + n));
                (
                    OrderWrite {
                        order: next.clone(),
                        expected_version: Some(o.version),
                    },
                    next,
                )
            },
            _ => {
                let mut o = trade(n, 1_000, true);
                o.id = oid(0x0c, n);
                o.version = 0;
                (
                    OrderWrite {
                        order: o.clone(),
                        expected_version: None,
                    },
                    o,
                )
            },
        };
        let c = Commit {
            at: Timestamp(0),
            event: Some(event(0xe0, n)),
            effects: effects(&next),
            orders: vec![write],
            done: std::mem::take(&mut done),
            dead: Vec::new(),
            users: vec![UserUpdate::TradeIndex {
                identity: next.maker.identity,
                index: u32::try_from(i).unwrap(),
            }],
            solvers: Vec::new(),
        };
        done = store.commit(c).await.unwrap();
        current = Some(next);
    }
}

async fn throughput(dir: &Path, sync: Synchronous, commits: u64, tasks: u64) -> f64 {
    let path = dir.join(format!("tput-{}-{tasks}.db", sync.as_str()));
    let config = SqliteConfig {
        synchronous: sync,
        page_size: page_size(),
        ..SqliteConfig::default()
    };
    let store = Arc::new(SqliteStore::open_with(&path, config).unwrap());
    let per_task = commits / tasks;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|w| tokio::spawn(stepper(Arc::clone(&store), w, per_task)))
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = (per_task * tasks) as f64 / secs;
    drop(store);
    remove_db(&path);
    rate
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

struct Lat {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn latency<F, Fut>(runs: usize, mut f: F) -> Lat
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut v = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        f(i).await;
        v.push(t.elapsed());
    }
    v.sort();
    Lat {
        p50: v[runs / 2],
        p99: v[runs * 99 / 100],
        max: v[runs - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn print_table(rows: Vec<(String, String, String)>) {
    println!("| measurement | result | target |");
    println!("|---|---|---|");
    for (m, r, t) in rows {
        println!("| {m} | {r} | {t} |");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let orders: u64 = arg("--orders").map_or(1_000_000, |s| s.parse().unwrap());
    let commits: u64 = arg("--commits").map_or(20_000, |s| s.parse().unwrap());
    let tmp;
    let dir: PathBuf = match arg("--dir") {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        },
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // 1. Commit throughput.
    for sync in [Synchronous::Normal, Synchronous::Full] {
        for tasks in [1u64, 64] {
            let rate = throughput(&dir, sync, commits, tasks).await;
            let what = if tasks == 1 {
                "sequential"
            } else {
                "64 concurrent tasks"
            };
            eprintln!("commits {} {what}: {rate:.0}/s", sync.as_str());
            rows.push((
                format!("commits/s, synchronous={}, {what}", sync.as_str()),
                format!("{rate:.0}"),
                "> 5,000".into(),
            ));
        }
    }

    if std::env::args().any(|a| a == "--commits-only") {
        print_table(rows);
        return;
    }

    // 2. Big database.
    let path = dir.join("big.db");
    let config = SqliteConfig {
        synchronous: Synchronous::Normal,
        page_size: page_size(),
        ..SqliteConfig::default()
    };
    let store = Arc::new(SqliteStore::open_with(&path, config).unwrap());
    let identities = 10_000u64;
    let fill = Instant::now();
    let batch = 50_000u64;
    let mut n = 0;
    let mut body_bytes = 0usize;
    while n < orders {
        let end = (n + batch).min(orders);
        let chunk: Vec<Order> = (n..end).map(|i| trade(i, identities, false)).collect();
        body_bytes += chunk
            .iter()
            .map(|o| serde_json::to_string(o).unwrap().len())
            .sum::<usize>();
        store.import_orders(chunk).await.unwrap();
        n = end;
    }
    let open_n = 2_000u64;
    let open: Vec<Order> = (0..open_n).map(|i| trade(i, identities, true)).collect();
    store.import_orders(open).await.unwrap();
    let fill_secs = fill.elapsed().as_secs_f64();
    eprintln!("filled {orders} + {open_n} orders in {fill_secs:.1} s");
    store.checkpoint().await.unwrap();
    let stats = store.stats().await.unwrap();
    let size = file_size(&path);
    rows.push((
        format!("bulk import of {orders} finished + {open_n} open orders"),
        format!(
            "{fill_secs:.1} s ({:.0} orders/s)",
            (orders + open_n) as f64 / fill_secs
        ),
        String::new(),
    ));
    rows.push((
        "bytes per stored order (file size / orders, after checkpoint)".into(),
        format!("{}", size / stats.orders.max(1)),
        String::new(),
    ));
    rows.push((
        "of which JSON body (average)".into(),
        format!("{}", body_bytes as u64 / orders.max(1)),
        String::new(),
    ));

    let now = Timestamp(NOW);
    let s = Arc::clone(&store);
    let due = latency(300, |_| {
        let s = Arc::clone(&s);
        async move {
            let ids = s.due(now, 1024).await.unwrap();
            assert_eq!(ids.len(), 1001);
        }
    })
    .await;
    rows.push((
        "due(now, 1024) -> 1,001 ids".into(),
        format!(
            "p50 {} / p99 {} / max {}",
            ms(due.p50),
            ms(due.p99),
            ms(due.max)
        ),
        "< 5 ms".into(),
    ));
    let next = latency(1000, |_| {
        let s = Arc::clone(&s);
        async move {
            s.next_deadline().await.unwrap().unwrap();
        }
    })
    .await;
    rows.push((
        "next_deadline()".into(),
        format!("p50 {} / p99 {}", ms(next.p50), ms(next.p99)),
        "< 5 ms".into(),
    ));
    let htlc = latency(300, |_| {
        let s = Arc::clone(&s);
        async move {
            assert!(
                !s.htlc_expiring(BlockHeight(900_100))
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    })
    .await;
    rows.push((
        "htlc_expiring(height) -> ~400 ids".into(),
        format!("p50 {} / p99 {}", ms(htlc.p50), ms(htlc.p99)),
        "< 5 ms".into(),
    ));
    let by_key = latency(2000, |i| {
        let s = Arc::clone(&s);
        let k = key(0x7a, (i as u64).wrapping_mul(48_271) % orders);
        async move {
            assert_eq!(s.orders_by_trade_key(&k).await.unwrap().len(), 1);
        }
    })
    .await;
    rows.push((
        "orders_by_trade_key(key), historical order".into(),
        format!("p50 {} / p99 {}", ms(by_key.p50), ms(by_key.p99)),
        "< 1 ms".into(),
    ));
    let by_id = latency(2000, |i| {
        let s = Arc::clone(&s);
        let id = oid(0x0f, (i as u64).wrapping_mul(48_271) % orders);
        async move {
            s.order(id).await.unwrap().unwrap();
        }
    })
    .await;
    rows.push((
        "order(id)".into(),
        format!("p50 {} / p99 {}", ms(by_id.p50), ms(by_id.p99)),
        "< 1 ms".into(),
    ));
    let by_hash = latency(2000, |i| {
        let s = Arc::clone(&s);
        let h = PaymentHash(key(0x4a, ((i as u64) % open_n) | OPEN_BIT).0);
        async move {
            s.order_by_hold_hash(&h).await.unwrap().unwrap();
        }
    })
    .await;
    rows.push((
        "order_by_hold_hash(hash)".into(),
        format!("p50 {} / p99 {}", ms(by_hash.p50), ms(by_hash.p99)),
        "< 1 ms".into(),
    ));
    let of = latency(2000, |i| {
        let s = Arc::clone(&s);
        let id = key(0x1d, (i as u64) % identities);
        async move {
            s.open_orders_of(&id).await.unwrap();
        }
    })
    .await;
    rows.push((
        format!(
            "open_orders_of(identity) ({} historical orders per identity)",
            orders * 2 / identities
        ),
        format!("p50 {} / p99 {}", ms(of.p50), ms(of.p99)),
        "< 1 ms".into(),
    ));
    let open_all = latency(50, |_| {
        let s = Arc::clone(&s);
        async move {
            assert_eq!(s.open_orders().await.unwrap().len() as u64, open_n);
        }
    })
    .await;
    rows.push((
        format!("open_orders() -> {open_n} orders"),
        format!("p50 {} / p99 {}", ms(open_all.p50), ms(open_all.p99)),
        String::new(),
    ));

    // Concurrent reads: 8 tasks doing lookups at once, total throughput.
    let start = Instant::now();
    let per = 2_000u64;
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for i in 0..per {
                    let id = oid(0x0f, (t * per + i).wrapping_mul(48_271) % orders);
                    s.order(id).await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let rps = (8 * per) as f64 / start.elapsed().as_secs_f64();
    rows.push((
        "order(id) lookups/s, 8 concurrent tasks".into(),
        format!("{rps:.0}"),
        String::new(),
    ));

    drop(s);
    drop(store);
    print_table(rows);
    if arg("--dir").is_none() {
        remove_db(&path);
    }
}
