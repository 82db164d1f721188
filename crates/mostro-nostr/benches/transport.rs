//! Transport benchmark (not a test): per-message cost of wrapping and
//! unwrapping in both protocols, and round trips through a local relay.
//!
//! Run: `cargo bench -p mostro-nostr --bench transport` (add `-- --quick`
//! for fewer iterations). Prints a Markdown table.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mostro_core::engine::{Engine, EngineConfig, Ports};
use mostro_core::order::Protocol;
use mostro_core::policy::Policy;
use mostro_core::ports::{Clock, Network};
use mostro_core::wire::{Action, Message, MessageKind};
use mostro_nostr::client::{ClientKeys, WrapOptions, open_reply, wrap_v1, wrap_v2};
use mostro_nostr::intake::{Intake, IntakeConfig};
use mostro_nostr::{Delivered, NostrTransport, TransportConfig, run_intake, to_core_key, v1, v2};
use mostro_testkit::{FakeNode, FixedPrices, Ledger, ManualClock, MemStore, SeqEntropy};
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};
use nostr_sdk::{Client, Filter, Keys, RelayPoolNotification};

fn message(request_id: u64) -> Message {
    Message::Restore(MessageKind::new(
        None,
        Some(request_id),
        None,
        Action::LastTradeIndex,
        None,
    ))
}

fn key(b: u8) -> Keys {
    Keys::parse(&hex::encode([b; 32])).unwrap()
}

/// Mean microseconds per call of `f` over `n` calls (after a short warm-up).
fn per_op(n: u32, mut f: impl FnMut(u32)) -> f64 {
    for i in 0..n.min(50) {
        f(i);
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

struct Row(String, String);

fn micro(n: u32, rows: &mut Vec<Row>) {
    let node = key(3);
    let client = ClientKeys::reputation(key(1), key(2));
    let to = node.public_key();
    let opts = WrapOptions::default();
    let m = message(1);

    let v2_events: Vec<_> = (0..n)
        .map(|i| wrap_v2(&message(u64::from(i)), &client, &to, opts).unwrap())
        .collect();
    let v1_events: Vec<_> = (0..n)
        .map(|i| wrap_v1(&message(u64::from(i)), &client, &to, opts).unwrap())
        .collect();
    let now = nostr_sdk::Timestamp::now();

    let mut push = |name: &str, us: f64| rows.push(Row(name.to_owned(), format!("{us:.0} µs")));
    push(
        "v2 client wrap (sign + identity proof + NIP-44 + event sig)",
        per_op(n, |_| {
            wrap_v2(&m, &client, &to, opts).unwrap();
        }),
    );
    push(
        "v2 node unwrap + verify (event sig, NIP-44, tuple, trade sig, identity proof)",
        per_op(n, |i| {
            v2::unwrap(&v2_events[i as usize], &node).unwrap();
        }),
    );
    push(
        "v2 node reply wrap (NIP-44 + event sig)",
        per_op(n, |_| {
            v2::wrap_reply(&m, &node, &client.trade.public_key(), now, None).unwrap();
        }),
    );
    push(
        "v1 client wrap (rumor, seal, gift wrap)",
        per_op(n, |_| {
            wrap_v1(&m, &client, &to, opts).unwrap();
        }),
    );
    push(
        "v1 node unwrap + verify (wrap sig, 2x NIP-44, seal sig, trade sig)",
        per_op(n, |i| {
            v1::unwrap(&v1_events[i as usize], &node).unwrap();
        }),
    );
    push(
        "v1 node reply wrap (rumor, seal, gift wrap)",
        per_op(n, |_| {
            v1::wrap_reply(&m, &node, &client.trade.public_key(), now).unwrap();
        }),
    );
    let mut intake = Intake::new(IntakeConfig {
        freshness_secs: None,
        max_future_secs: None,
        rate_per_minute: 0,
        ..IntakeConfig::default()
    });
    push(
        "intake of a v2 event (size, replay, unwrap, record)",
        per_op(n, |i| {
            let _ = intake.accept(&v2_events[i as usize], &node, now.as_secs());
        }),
    );
}

async fn round_trips(n: u64, rows: &mut Vec<Row>) {
    let relay = LocalRelay::new(
        RelayBuilder::default()
            .addr("127.0.0.1".parse().unwrap())
            .rate_limit(RateLimit {
                max_reqs: 1000,
                notes_per_minute: 1_000_000,
            }),
    );
    relay.run().await.unwrap();
    let url = relay.url().await.to_string();

    // The node: real engine on the test kit's fakes; rate limit off.
    let node_keys = key(3);
    let clock: Arc<dyn Clock> = Arc::new(mostro_testkit::SystemClock);
    let manual = Arc::new(ManualClock::new(clock.now()));
    let store = MemStore::new();
    let mut cfg = TransportConfig::new(&node_keys, vec![url.clone()]);
    cfg.intake = IntakeConfig {
        rate_per_minute: 0,
        freshness_secs: Some(60),
        ..IntakeConfig::default()
    };
    let transport = Arc::new(NostrTransport::new(node_keys.clone(), cfg, clock, None));
    let ports = Ports {
        node: Arc::new(FakeNode::new(Ledger::new(Network::Regtest, manual.clone()))),
        store: Arc::new(store),
        transport: transport.clone(),
        clock: manual,
        entropy: Arc::new(SeqEntropy::new(1)),
        prices: Arc::new(FixedPrices::default()),
    };
    let engine = Arc::new(Engine::new(
        ports,
        EngineConfig {
            node_key: to_core_key(&node_keys.public_key()),
            network: Network::Regtest,
            pay_timeout_secs: 60,
        },
        Policy::default(),
    ));
    transport.connect().await.unwrap();
    transport.wait_for_connection(Duration::from_secs(5)).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The consumer: every request on its own task (the daemon's driver orders per sender;
    // here every request is an independent query).
    let (inbox_tx, mut inbox) = tokio::sync::mpsc::unbounded_channel::<Delivered>();
    tokio::spawn(async move {
        while let Some((request, ack)) = inbox.recv().await {
            let engine = engine.clone();
            tokio::spawn(async move {
                match engine.handle(request).await {
                    Ok(_) => ack.handled(),
                    Err(_) => ack.failed(),
                }
            });
        }
    });
    let inbound = tokio::spawn(run_intake(transport.clone(), inbox_tx, async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Eight full-privacy senders on one client connection.
    let senders: Vec<ClientKeys> = (0..8u8)
        .map(|i| ClientKeys::private(key(0x40 + i)))
        .collect();
    let client = Client::builder().signer(key(0x40)).build();
    client.add_relay(url.as_str()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    client
        .subscribe(
            Filter::new()
                .kinds([nostr_sdk::Kind::from(14), nostr_sdk::Kind::GiftWrap])
                .pubkeys(senders.iter().map(|s| s.trade.public_key())),
            None,
        )
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut notes = client.notifications();
    let trades: Vec<Keys> = senders.iter().map(|s| s.trade.clone()).collect();
    tokio::spawn(async move {
        loop {
            let event = match notes.recv().await {
                Ok(RelayPoolNotification::Event { event, .. }) => event,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    panic!("client lagged by {n} notifications")
                },
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for k in &trades {
                if let Ok(u) = open_reply(&event, k) {
                    let _ = tx.send(u.message.kind().request_id.unwrap_or(0));
                    break;
                }
            }
        }
    });
    let to = node_keys.public_key();

    for protocol in [Protocol::V2, Protocol::V1] {
        let base = if protocol == Protocol::V2 {
            0
        } else {
            1_000_000
        };
        let wrap = |i: u64| {
            let s = &senders[(i % 8) as usize];
            match protocol {
                Protocol::V2 => {
                    wrap_v2(&message(base + i), s, &to, WrapOptions::default()).unwrap()
                },
                Protocol::V1 => {
                    wrap_v1(&message(base + i), s, &to, WrapOptions::default()).unwrap()
                },
            }
        };
        // Latency: one at a time.
        let k = 50.min(n);
        let t = Instant::now();
        for i in 0..k {
            client.send_event(&wrap(i)).await.unwrap();
            loop {
                if rx.recv().await.unwrap() == base + i {
                    break;
                }
            }
        }
        let rtt = t.elapsed().as_secs_f64() * 1000.0 / k as f64;
        // Throughput: all at once, then wait for every reply.
        let events: Vec<_> = (k..k + n).map(wrap).collect();
        let t = Instant::now();
        for e in &events {
            client.send_event(e).await.unwrap();
        }
        let mut want: HashSet<u64> = (k..k + n).map(|i| base + i).collect();
        while !want.is_empty() {
            let r = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .unwrap()
                .unwrap();
            want.remove(&r);
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let name = if protocol == Protocol::V2 { "v2" } else { "v1" };
        rows.push(Row(format!("{name} round trip through a local relay, one at a time (request -> engine -> reply)"), format!("{rtt:.1} ms")));
        rows.push(Row(
            format!("{name} round trips through a local relay, {n} in flight, 8 senders"),
            format!("{rate:.0} msg/s"),
        ));
    }
    let _ = stop.send(());
    let _ = inbound.await;
    transport.shutdown().await;
    relay.shutdown();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_micro, n_rt) = if quick { (200, 100) } else { (2000, 500) };
    let mut rows = Vec::new();
    micro(n_micro, &mut rows);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(round_trips(n_rt, &mut rows));
    println!("| operation | cost |");
    println!("|---|---|");
    for Row(a, b) in rows {
        println!("| {a} | {b} |");
    }
}
