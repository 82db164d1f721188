//! CI smoke test: `mostro-bench --smoke` against the real `mostrod` binary (2 makers x 3 orders,
//! then 2 pairs x 1 complete trade) must finish with every request answered.
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

#[test]
fn smoke_finishes_with_every_request_answered() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_mostro-bench"));
    let mostrod = mostrod_path(&bench);
    if !mostrod.exists() {
        build_mostrod(&bench);
    }
    let started = Instant::now();
    let out = Command::new(&bench)
        .args([
            "--smoke",
            "--no-report",
            "--daemon-log",
            "warn",
            "--mostrod",
        ])
        .arg(&mostrod)
        .output()
        .expect("run mostro-bench --smoke");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mostro-bench --smoke failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("new-order acks/s"), "{stdout}");
    assert!(stdout.contains("complete trades/s"), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "smoke run took {:?}",
        started.elapsed()
    );
}
