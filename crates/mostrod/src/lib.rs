//! The Mostro daemon as a library: configuration, composition of the engine with its adapters,
//! and the one driver that runs a node (intake, scheduler, Lightning events, outbox).
//!
//! The `mostrod` binary is a thin CLI over this crate; an embedder (or an in-process test) runs a
//! whole node with [`run`]:
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let cfg = mostrod::Config::load(std::path::Path::new("mostrod.toml"), &[])?;
//! mostrod::run(cfg, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod admin;
pub mod config;
pub mod daemon;
pub mod health;
pub mod housekeeping;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod support;

use std::future::Future;
use std::path::Path;

pub use config::{Backend, Config};
pub use node::{Parts, run_with, run_with_parts};
pub use support::NodeKey;

/// Runs the node described by `config` until `shutdown` resolves: opens the Lightning backend
/// and the store, reconciles every open order with the node, then serves until shutdown and
/// lets in-flight work finish.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    node::run(config, shutdown).await
}

/// The `MOSTRO_*` variables of the process environment (config overrides).
#[must_use]
pub fn env_vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("MOSTRO_"))
        .collect()
}

/// Loads a config file with the environment's overrides and logs its warnings.
///
/// # Errors
/// An unreadable file, or a field that does not validate (the error names it).
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let cfg = Config::load(path, &env_vars())?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

/// One line of CLI output on stdout.
#[allow(clippy::print_stdout, reason = "the CLI's output")]
pub fn say(s: &str) {
    println!("{s}");
}
