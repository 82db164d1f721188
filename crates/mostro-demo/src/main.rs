//! `mostro-demo`: everything local, nothing external. An in-process Nostr relay, a Lightning
//! simulator behind the real adapter (LND or Core Lightning), SQLite in a directory, and the
//! daemon itself (the `mostrod` library). With `--trade`, two built-in clients trade over the
//! relay and the process exits 0 when the buyer is paid.
//!
//! This is its own crate so that the production binary links none of the test house
//! (simulators, ledger, relay builder, client).

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mostrod::Backend;

#[derive(Parser, Debug)]
#[command(
    name = "mostro-demo",
    version,
    about = "mostrod with an in-process relay and a Lightning simulator: nothing external"
)]
struct Cli {
    /// Data directory.
    #[arg(long, default_value = "mostro-demo")]
    dir: PathBuf,
    /// Run a scripted trade between two built-in clients, then exit.
    #[arg(long)]
    trade: bool,
    /// Lightning backend to simulate: lnd or cln.
    #[arg(long, default_value = "lnd")]
    backend: String,
    /// Relay port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    relay_port: u16,
}

#[allow(clippy::print_stderr, reason = "the CLI's error output")]
fn fail(e: &anyhow::Error) {
    eprintln!("mostro-demo: {e:#}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own steps; logs stay quiet unless MOSTRO_LOG asks for them.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MOSTRO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let backend = match cli.backend.as_str() {
        "lnd" => Backend::Lnd,
        "cln" => Backend::Cln,
        other => {
            fail(&anyhow::anyhow!("--backend takes lnd or cln, not {other}"));
            return ExitCode::from(2);
        },
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail(&anyhow::anyhow!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        },
    };
    let r = rt.block_on(demo::run(demo::DemoOptions {
        dir: cli.dir,
        trade: cli.trade,
        backend,
        relay_port: cli.relay_port,
    }));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(&e);
            ExitCode::FAILURE
        },
    }
}
