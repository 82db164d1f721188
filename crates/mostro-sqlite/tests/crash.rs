//! Crash test: a child process (this test binary, re-executed) commits trades in a loop and
//! prints every acknowledged commit; the parent SIGKILLs it at random moments, then checks the
//! database: integrity, every acknowledged commit present, no commit half applied, pending
//! effects still pending. The next child continues from what the database holds.
//!
//! Commit `c` belongs to trade `c / STEPS` at step `c % STEPS`. It records event `c`, writes the
//! trade's order at version `step` (insert at step 0, otherwise replace of `step - 1`) with
//! `fiat_amount = c`, inserts `1 + c % 3` effects tagged `c{c}:{k}`, marks done the effects
//! `k >= 1` of the previous commit of the same trade (effect `k = 0` stays pending forever),
//! and raises the trade index of one identity to `c`.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mostro_core::machine::{Effect, UserUpdate};
use mostro_core::order::{Order, Status};
use mostro_core::ports::{Commit, EffectId, OrderWrite, Store};
use mostro_core::types::{EventId, OrderId, PaymentHash, Sats, Timestamp};
use mostro_sqlite::SqliteStore;
use mostro_testkit::store_suite::{identity, order};

const CHILD_ENV: &str = "MOSTRO_SQLITE_CRASH_DB";
const START_ENV: &str = "MOSTRO_SQLITE_CRASH_START";
const STEPS: u64 = 5;
const KILLS: usize = 60;

fn effects_of(c: u64) -> u64 {
    1 + c % 3
}

fn event(c: u64) -> EventId {
    let mut b = [0xC0u8; 32];
    b[..8].copy_from_slice(&c.to_be_bytes());
    EventId(b)
}

fn trade_id(t: u64) -> OrderId {
    // Bytes 6 and 8 carry the UUID version and variant: keep `t` out of them.
    let mut b = [0x77u8; 16];
    b[9..].copy_from_slice(&t.to_be_bytes()[1..]);
    OrderId::from_random_bytes(b)
}

fn memo(c: u64, k: u64) -> String {
    format!("c{c}:{k}")
}

fn parse_memo(e: &Effect) -> (u64, u64) {
    let Effect::CreateHold { memo, .. } = e else {
        panic!("unexpected effect {e:?}")
    };
    let (c, k) = memo
        .strip_prefix('c')
        .and_then(|m| m.split_once(':'))
        .expect("memo");
    (c.parse().unwrap(), k.parse().unwrap())
}

fn trade_order(c: u64) -> Order {
    let (t, step) = (c / STEPS, c % STEPS);
    let mut o = order(u16::try_from(t % 60_000).unwrap(), identity(1));
    o.id = trade_id(t);
    o.version = step;
    o.fiat_amount = i64::try_from(c).unwrap();
    o.status = if step == STEPS - 1 {
        Status::Success
    } else {
        Status::Active
    };
    o
}

fn commit_for(c: u64, done: Vec<EffectId>) -> Commit {
    let step = c % STEPS;
    let order = trade_order(c);
    let effects = (0..effects_of(c))
        .map(|k| Effect::CreateHold {
            order_id: order.id,
            hash: PaymentHash([u8::try_from(k).unwrap(); 32]),
            amount: Sats(c),
            cltv_delta: 144,
            expiry_secs: 60,
            memo: memo(c, k),
        })
        .collect();
    Commit {
        at: Timestamp(1_700_000_000 + c),
        event: Some(event(c)),
        orders: vec![OrderWrite {
            order,
            expected_version: step.checked_sub(1),
        }],
        effects,
        done,
        dead: Vec::new(),
        users: vec![UserUpdate::TradeIndex {
            identity: identity(1),
            index: u32::try_from(c).unwrap(),
        }],
        solvers: Vec::new(),
    }
}

/// The child: commits forever from `start`, printing `ACK c` after each acknowledged commit.
async fn child(path: &Path, start: u64) {
    let store = SqliteStore::open(path).unwrap();
    // Ids of the previous commit's effects k >= 1 (recovered from the outbox after a restart).
    let mut prev: Vec<EffectId> = if start.is_multiple_of(STEPS) {
        Vec::new()
    } else {
        store
            .pending_effects(usize::MAX)
            .await
            .unwrap()
            .into_iter()
            .filter(|(_, e)| {
                let (c, k) = parse_memo(e);
                c + 1 == start && k >= 1
            })
            .map(|(id, _)| id)
            .collect()
    };
    let mut out = std::io::stdout().lock();
    for c in start.. {
        let done = if c.is_multiple_of(STEPS) {
            Vec::new()
        } else {
            std::mem::take(&mut prev)
        };
        let ids = store.commit(commit_for(c, done)).await.unwrap();
        assert_eq!(ids.len() as u64, effects_of(c));
        prev = ids.into_iter().skip(1).collect();
        writeln!(out, "ACK {c}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn child_process_entry() {
    // Does nothing in a normal test run; the crash test re-executes the binary into it.
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(child(Path::new(&path), start));
}

/// What the database holds, checked for consistency. Returns the number of commits applied.
fn verify(path: &Path) -> u64 {
    use rusqlite::{Connection, OpenFlags};
    // Read-only: do not checkpoint or remove the WAL the next child must recover.
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    if version == 0 {
        // Killed before the first migration committed: it must have left nothing.
        let objects: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(objects, 0, "half-applied migration");
        return 0;
    }

    // Events are exactly 0..n.
    let mut stmt = conn.prepare("SELECT id FROM events").unwrap();
    let mut events: Vec<u64> = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| u64::from_be_bytes(b.unwrap()[..8].try_into().unwrap()))
        .collect();
    events.sort_unstable();
    let n = events.len() as u64;
    assert!(events.iter().copied().eq(0..n), "event ids are not 0..{n}");

    // Outbox: each commit c < n has exactly its effects; done exactly as the next commit said.
    let mut stmt = conn
        .prepare("SELECT id, effect, done_at IS NOT NULL FROM outbox ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut last = None;
    for (id, json, done) in &rows {
        let effect: Effect = serde_json::from_str(json).unwrap();
        let (c, k) = parse_memo(&effect);
        assert!(
            c < n,
            "effect of commit {c} present but its event is not (n = {n})"
        );
        assert!(last < Some((c, k)), "outbox id {id} out of commit order");
        last = Some((c, k));
        let next_done = c + 1 < n && !(c + 1).is_multiple_of(STEPS);
        assert_eq!(*done, k >= 1 && next_done, "effect c{c}:{k} done = {done}");
        seen.entry(c).or_default().push(k);
    }
    for c in 0..n {
        let want: Vec<u64> = (0..effects_of(c)).collect();
        assert_eq!(seen.get(&c), Some(&want), "effects of commit {c}");
    }

    // Orders: each trade at the version of its last applied commit.
    let trades = n.div_ceil(STEPS);
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count as u64, trades);
    for t in 0..trades {
        let last_c = (t * STEPS + STEPS - 1).min(n - 1);
        let (version, body): (i64, String) = conn
            .query_row(
                "SELECT version, body FROM orders WHERE id = ?1",
                [trade_id(t).0.as_bytes()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let o: Order = serde_json::from_str(&body).unwrap();
        assert_eq!(o, trade_order(last_c), "trade {t}");
        assert_eq!(version as u64, last_c % STEPS);
    }

    // The user's trade index is the last commit's.
    let idx: Option<i64> = conn
        .query_row(
            "SELECT last_trade_index FROM users WHERE identity = ?1",
            [&identity(1).0],
            |r| r.get(0),
        )
        .ok();
    assert_eq!(idx.map(|i| i as u64), n.checked_sub(1));
    n
}

/// xorshift64*, seeded from the clock (printed, for reproduction).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed:#x}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().unwrap();
    let mut applied = 0u64;
    let (mut acked_total, mut unacked_applied, mut empty_runs) = (0u64, 0u64, 0u64);
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env(START_ENV, applied.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(2_000 + rng.next() % 60_000));
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("child exited by itself ({status}) at kill {kill}: {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        // Complete lines only; libtest may print its own text before ours on a line.
        let complete = out.rfind('\n').map_or("", |i| &out[..i]);
        let acked: Vec<u64> = complete
            .lines()
            .filter_map(|l| l.split_once("ACK ").map(|(_, c)| c.parse().unwrap()))
            .collect();
        assert!(
            acked
                .iter()
                .copied()
                .eq(applied..applied + acked.len() as u64),
            "acks out of order: {acked:?}"
        );
        let n = verify(&path);
        let want = applied + acked.len() as u64;
        assert!(
            n == want || n == want + 1,
            "kill {kill}: {n} commits applied, {want} acknowledged"
        );
        acked_total += acked.len() as u64;
        unacked_applied += n - want;
        empty_runs += u64::from(acked.is_empty());
        applied = n;
    }
    eprintln!(
        "{KILLS} kills in {:?}: {applied} commits applied, {acked_total} acknowledged, \
         {unacked_applied} applied but killed before the ack, {empty_runs} runs without any ack",
        started.elapsed()
    );
    assert!(
        applied > KILLS as u64,
        "children made too little progress: {applied} commits"
    );
    // The store opens and works after all that.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        store.integrity_check().await.unwrap();
        let pending = store.pending_effects(usize::MAX).await.unwrap();
        assert!(
            pending.len() as u64 >= applied,
            "every commit leaves its k = 0 effect pending"
        );
    });
}
