//! `cln-sim --dir <dir> [--plugin boltz|daywalker|none] [--network regtest]`: serves the CLN
//! simulator on `<dir>/lightning-rpc` and prints the socket path. Stops on Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use mostro_cln_sim::{ClnSim, HoldPlugin, SystemClock};
use mostro_core::ports::Network;
use mostro_testkit::Ledger;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir = PathBuf::from("cln-sim");
    let mut network = Network::Regtest;
    let mut plugin = HoldPlugin::Boltz;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(args.next().ok_or("--dir needs a value")?),
            "--plugin" => {
                plugin = match args.next().as_deref() {
                    Some("boltz") => HoldPlugin::Boltz,
                    Some("daywalker") => HoldPlugin::Daywalker,
                    Some("none") => HoldPlugin::None,
                    _ => return Err("--plugin boltz|daywalker|none".into()),
                }
            },
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
                println!(
                    "usage: cln-sim --dir <dir> [--plugin boltz|daywalker|none] [--network regtest]"
                );
                return Ok(());
            },
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    std::fs::create_dir_all(&dir)?;
    let ledger = Ledger::new(network, Arc::new(SystemClock));
    let sim = ClnSim::start_in(&dir, ledger, plugin).await?;
    println!("{}", sim.socket_path().display());
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}
