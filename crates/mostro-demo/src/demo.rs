//! The demo: everything local, no external service. An in-process Nostr relay on
//! 127.0.0.1, the LND simulator driven through the real LND adapter (or the CLN simulator through
//! the real CLN adapter), SQLite in a data directory. `--trade` also runs a scripted trade
//! between two built-in clients over the relay (the seller speaks protocol v2, the buyer v1).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mostro_client::MostroClient;
use mostro_core::order::Protocol;
use mostro_core::ports::{Clock, LightningNode, Network};
use mostro_core::wire::{Action, Kind, Payload, SmallOrder, Status};
use mostro_nostr::PublicKey;
use mostro_testkit::Ledger;
use nostr_relay_builder::prelude::{LocalRelay, RateLimit, RelayBuilder};
use nostr_sdk::ToBech32;

use mostrod::config::{Backend, Config};
use mostrod::support::{NodeKey, SystemClock};

/// Options of the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Data directory (created).
    pub dir: PathBuf,
    /// Run the scripted trade, then exit.
    pub trade: bool,
    /// Lightning backend to simulate.
    pub backend: Backend,
    /// Relay port (0 = any free port).
    pub relay_port: u16,
}

/// A running simulator, kept alive for the demo's duration.
#[allow(dead_code, reason = "held only to keep the simulator running")]
enum Sim {
    Lnd(mostro_lnd_sim::LndSim),
    Cln(mostro_cln_sim::ClnSim),
}

#[allow(clippy::print_stdout, reason = "the demo talks to a person")]
fn say(s: &str) {
    println!("{s}");
}

async fn start_relay(port: u16) -> anyhow::Result<(LocalRelay, String)> {
    let port = if port == 0 {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        port
    };
    let builder = RelayBuilder::default()
        .addr(std::net::IpAddr::from([127, 0, 0, 1]))
        .port(port)
        .rate_limit(RateLimit {
            max_reqs: 1000,
            notes_per_minute: 100_000,
        });
    let relay = LocalRelay::new(builder);
    relay
        .run()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the local relay on port {port}: {e}"))?;
    Ok((relay, format!("ws://127.0.0.1:{port}")))
}

async fn start_sim(
    opts: &DemoOptions,
    ledger: Ledger,
) -> anyhow::Result<(Sim, Arc<dyn LightningNode>)> {
    match opts.backend {
        Backend::Lnd => {
            let sim_dir = opts.dir.join("lnd-sim");
            std::fs::create_dir_all(&sim_dir)?;
            let sim = mostro_lnd_sim::LndSim::start(ledger, &sim_dir, 0)
                .await
                .context("lnd-sim")?;
            let cfg = mostro_lnd::LndConfig::new(sim.host(), sim.cert_path(), sim.macaroon_path());
            let node = mostro_lnd::LndNode::connect(cfg)
                .await
                .context("LND adapter")?;
            Ok((Sim::Lnd(sim), Arc::new(node)))
        },
        Backend::Cln => {
            let sim_dir = opts.dir.join("cln-sim");
            std::fs::create_dir_all(&sim_dir)?;
            let sim = mostro_cln_sim::ClnSim::start_in(
                &sim_dir,
                ledger,
                mostro_cln_sim::HoldPlugin::Boltz,
            )
            .await
            .context("cln-sim")?;
            let cfg = mostro_cln::ClnConfig::new(sim.socket_path(), Network::Regtest);
            let node = mostro_cln::ClnNode::connect(cfg)
                .await
                .context("CLN adapter")?;
            Ok((Sim::Cln(sim), Arc::new(node)))
        },
    }
}

fn demo_config(dir: &Path, relay: &str, backend: Backend) -> anyhow::Result<Config> {
    let mut cfg = Config {
        base_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.node.name = "mostrod demo".to_owned();
    cfg.nostr.relays = vec![relay.to_owned()];
    cfg.lightning.backend = backend;
    cfg.lightning.network = Network::Regtest;
    cfg.prices.fixed.insert("EUR".to_owned(), 50_000.0);
    cfg.prices.fixed.insert("USD".to_owned(), 55_000.0);
    // Any free loopback port for the admin endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    cfg.admin.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    cfg.validate()?;
    Ok(cfg)
}

/// Runs the demo. Returns when the scripted trade finished (`--trade`) or on Ctrl-C.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create the demo directory {}", opts.dir.display()))?;
    let started = Instant::now();
    let key_path = opts.dir.join("node.key");
    let key = if key_path.exists() {
        NodeKey::load(&key_path)?
    } else {
        let k = NodeKey::generate();
        k.save(&key_path)?;
        k
    };
    let node_pub = key.public();
    let (relay, relay_url) = start_relay(opts.relay_port).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ledger = Ledger::new(Network::Regtest, clock);
    let (sim, node) = start_sim(&opts, ledger.clone()).await?;
    let cfg = demo_config(&opts.dir, &relay_url, opts.backend)?;

    let npub = PublicKey::from_slice(&node_pub.0)
        .ok()
        .and_then(|p| p.to_bech32().ok())
        .unwrap_or_default();
    say(&format!(
        "mostrod demo\n  node pubkey  {node_pub}\n  npub         {npub}\n  relay        {relay_url}\n  backend      {:?} simulator (regtest)\n  data         {}\n  admin        http://{}  (token in {})\n\
         Point a Mostro client at it, e.g. mostro-cli: MOSTRO_PUBKEY={npub} RELAYS={relay_url} mostro-cli listorders",
        opts.backend,
        opts.dir.display(),
        cfg.admin.listen,
        cfg.data_path(&cfg.admin.token_file).display(),
    ));

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let daemon = {
        let cfg = cfg.clone();
        let node = node.clone();
        tokio::spawn(async move {
            mostrod::run_with(cfg, key, node, async move {
                while !*stop_rx.borrow() {
                    if stop_rx.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await
        })
    };

    let result = if opts.trade {
        let r = scripted_trade(&relay_url, node_pub, &ledger).await;
        if r.is_ok() {
            say(&format!(
                "demo trade completed in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
        r
    } else {
        say("running; Ctrl-C to stop");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok(())
    };
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(30), daemon).await {
        Ok(Ok(Err(e))) => return Err(e.context("daemon")),
        Ok(Err(e)) => bail!("daemon task failed: {e}"),
        Err(_) => bail!("daemon did not stop within 30 s"),
        Ok(Ok(Ok(()))) => {},
    }
    drop(sim);
    relay.shutdown();
    result
}

fn step(n: u32, s: &str, t0: Instant) {
    say(&format!("[{:>5.2}s] {n}. {s}", t0.elapsed().as_secs_f64()));
}

async fn scripted_trade(
    relay: &str,
    node: mostro_core::types::PubKey,
    ledger: &Ledger,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let node = PublicKey::from_slice(&node.0).map_err(|e| anyhow::anyhow!("node key: {e}"))?;
    let mut seller = MostroClient::connect("seller", relay, node, Protocol::V2).await?;
    let mut buyer = MostroClient::connect("buyer", relay, node, Protocol::V1).await?;
    // Give the daemon's subscriptions a moment to be live on the relay.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let order = SmallOrder {
        id: None,
        kind: Some(Kind::Sell),
        status: Some(Status::Pending),
        amount: 100_000,
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
    };
    seller
        .send(None, Some(1), Action::NewOrder, Some(Payload::Order(order)))
        .await?;
    let ack = seller.expect(Action::NewOrder, |_| true).await?;
    let id = ack
        .id
        .ok_or_else(|| anyhow::anyhow!("new-order ack without id"))?;
    step(
        1,
        &format!("seller (protocol v2) published sell order {id}: 100000 sat for 50 EUR"),
        t0,
    );

    buyer
        .send(Some(id), Some(1), Action::TakeSell, None)
        .await?;
    let ask = buyer
        .expect(Action::AddInvoice, |k| {
            matches!(k.payload, Some(Payload::Order(_)))
        })
        .await?;
    let payout = match &ask.payload {
        Some(Payload::Order(o)) => o.amount,
        _ => 0,
    };
    step(
        2,
        &format!("buyer (protocol v1 gift wrap) took it; the node asks for a {payout} sat invoice"),
        t0,
    );

    let sats = u64::try_from(payout).map_err(|_| anyhow::anyhow!("bad payout amount {payout}"))?;
    let invoice = ledger
        .wallet_invoice("buyer", Some(mostro_core::types::Sats(sats)), 24 * 3600)
        .map_err(|e| anyhow::anyhow!("buyer wallet: {e}"))?;
    buyer
        .send(
            Some(id),
            None,
            Action::AddInvoice,
            Some(Payload::PaymentRequest(None, invoice, None)),
        )
        .await?;
    let pay = seller
        .expect(Action::PayInvoice, |k| {
            matches!(k.payload, Some(Payload::PaymentRequest(..)))
        })
        .await?;
    let Some(Payload::PaymentRequest(_, hold, _)) = pay.payload else {
        bail!("no hold invoice")
    };
    step(
        3,
        "buyer sent its invoice; the seller got a hold invoice to pay",
        t0,
    );

    ledger
        .pay_hold("seller", &hold)
        .map_err(|e| anyhow::anyhow!("seller wallet: {e}"))?;
    seller.expect(Action::BuyerTookOrder, |_| true).await?;
    buyer
        .expect(Action::HoldInvoicePaymentAccepted, |_| true)
        .await?;
    step(
        4,
        &format!(
            "seller paid the hold invoice: {} sat locked; both know each other's trade key",
            -ledger.balance("seller")
        ),
        t0,
    );

    buyer.send(Some(id), None, Action::FiatSent, None).await?;
    seller.expect(Action::FiatSentOk, |_| true).await?;
    step(5, "buyer sent the euros and said so; seller notified", t0);

    seller.send(Some(id), None, Action::Release, None).await?;
    seller
        .expect(Action::HoldInvoicePaymentSettled, |_| true)
        .await?;
    buyer.expect(Action::PurchaseCompleted, |_| true).await?;
    step(
        6,
        &format!(
            "seller released: hold invoice settled, buyer paid {} sat",
            ledger.balance("buyer")
        ),
        t0,
    );

    buyer
        .send(
            Some(id),
            None,
            Action::RateUser,
            Some(Payload::RatingUser(5)),
        )
        .await?;
    buyer.expect(Action::RateReceived, |_| true).await?;
    seller
        .send(
            Some(id),
            None,
            Action::RateUser,
            Some(Payload::RatingUser(5)),
        )
        .await?;
    seller.expect(Action::RateReceived, |_| true).await?;
    step(7, "both rated each other 5/5", t0);
    seller.shutdown().await;
    buyer.shutdown().await;
    Ok(())
}
