//! `lnd-sim --dir <dir> --port <port> [--network regtest]`: serves the LND simulator and prints
//! the host, certificate path and macaroon path.

use std::path::PathBuf;
use std::sync::Arc;

use mostro_core::ports::Network;
use mostro_lnd_sim::{LndSim, SystemClock};
use mostro_testkit::Ledger;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir = PathBuf::from("lnd-sim");
    let mut port = 10009u16;
    let mut network = Network::Regtest;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(args.next().ok_or("--dir needs a value")?),
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            "--network" => {
                network = match args.next().as_deref() {
                    Some("mainnet") => Network::Mainnet,
                    Some("testnet") => Network::Testnet,
                    Some("signet") => Network::Signet,
                    Some("regtest") => Network::Regtest,
                    _ => return Err("--network mainnet|testnet|signet|regtest".into()),
                }
            },
            "-h" | "--help" => {
                println!("usage: lnd-sim --dir <dir> --port <port> [--network regtest]");
                return Ok(());
            },
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let ledger = Ledger::new(network, Arc::new(SystemClock));
    let sim = LndSim::start(ledger, &dir, port).await?;
    println!("host={}", sim.host());
    println!("cert={}", sim.cert_path().display());
    println!("macaroon={}", sim.macaroon_path().display());
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}
