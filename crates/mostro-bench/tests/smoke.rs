//! CI smoke tests against the real `mostrod` binary: `mostro-bench --smoke` (2 makers x 3 orders,
//! then 2 pairs x 1 complete trade) must finish with every request answered, and a small `chaos`
//! run (trades while the daemon is SIGKILLed and the relay restarted) must pay every buyer
//! exactly once and leave no hold invoice accepted.
//!
//! The daemon binary is the `mostrod` next to the bench binary in the same target directory and
//! profile. When it is missing, the test builds it first with the `cargo` that runs the test.
#![allow(clippy::expect_used, clippy::panic, reason = "test")]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn mostrod_path(bench: &std::path::Path) -> PathBuf {
    bench.with_file_name(format!("mostrod{}", std::env::consts::EXE_SUFFIX))
}

fn build_mostrod(bench: &std::path::Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // The bench binary lives in <target>/<profile>/; build mostrod there too.
    let profile_dir = bench.parent().expect("bench binary directory");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target = profile_dir.parent().expect("target directory");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "mostrod"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("run cargo build -p mostrod");
    assert!(st.success(), "cargo build -p mostrod failed");
}

/// Runs the bench with `args` against the sibling `mostrod`; returns its stdout after checking
/// it exited 0.
fn bench(args: &[&str]) -> String {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_mostro-bench"));
    let mostrod = mostrod_path(&bench);
    if !mostrod.exists() {
        build_mostrod(&bench);
    }
    let out = Command::new(&bench)
        .args(args)
        .args(["--no-report", "--daemon-log", "warn", "--mostrod"])
        .arg(&mostrod)
        .output()
        .expect("run mostro-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mostro-bench {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The number that ends right before `marker` in `text` (0 when absent).
fn number_before(text: &str, marker: &str) -> u32 {
    text.find(marker)
        .map(|i| {
            let head = &text[..i];
            let digits: String = head
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.chars().rev().collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

#[test]
fn chaos_pays_every_buyer_once_through_kills_and_a_relay_restart() {
    let stdout = bench(&[
        "chaos",
        "--pairs",
        "2",
        "--trades-per-pair",
        "8",
        "--kills",
        "2",
        "--relay-kills",
        "1",
        "--seed",
        "3",
    ]);
    // The kills stop when the trades are done: on a fast machine fewer may happen.
    let kills = number_before(&stdout, " times, down");
    assert!(kills >= 1, "the daemon was never killed: {stdout}");
    assert!(
        stdout.contains("16 payouts for 16 completed trades"),
        "{stdout}"
    );
    assert!(stdout.contains("paid more than once: none"), "{stdout}");
    assert!(
        stdout.contains("hold invoices left accepted: 0"),
        "{stdout}"
    );
}

#[test]
fn smoke_finishes_with_every_request_answered() {
    let started = Instant::now();
    let stdout = bench(&["--smoke"]);
    assert!(stdout.contains("new-order acks/s"), "{stdout}");
    assert!(stdout.contains("complete trades/s"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "smoke run took {:?}",
        started.elapsed()
    );
}
