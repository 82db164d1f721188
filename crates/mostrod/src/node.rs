//! Composition: config -> adapters -> engine -> loops. The only place that knows every adapter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use mostro_core::engine::{Engine, EngineConfig, Ports};
use mostro_core::ports::{LightningNode, PriceSource, Store};
use mostro_nostr::{Keys, NostrTransport, TransportConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::{Backend, Config};
use crate::daemon::{self, Counters};
use crate::health::{LightningHealth, poll_lightning};
use crate::http;
use crate::metrics::{MeteredNode, MeteredStore, MeteredTransport, Metrics};
use crate::support::{NodeKey, OsEntropy, StaticPrices, SystemClock, ensure_token};

/// Opens the configured Lightning backend and checks it is usable for escrow.
pub async fn lightning(cfg: &Config) -> anyhow::Result<Arc<dyn LightningNode>> {
    let l = &cfg.lightning;
    let node: Arc<dyn LightningNode> = match l.backend {
        Backend::Lnd => {
            let lc = mostro_lnd::LndConfig::new(
                l.lnd.host.clone(),
                cfg.data_path(&l.lnd.cert_file),
                cfg.data_path(&l.lnd.macaroon_file),
            );
            Arc::new(
                mostro_lnd::LndNode::connect(lc)
                    .await
                    .with_context(|| format!("lightning.lnd: cannot use LND at {}", l.lnd.host))?,
            )
        },
        Backend::Cln => {
            let cc = mostro_cln::ClnConfig::new(cfg.data_path(&l.cln.socket), l.network);
            let n = mostro_cln::ClnNode::connect(cc).await.with_context(|| {
                format!(
                    "lightning.cln: cannot use Core Lightning at {}",
                    l.cln.socket.display()
                )
            })?;
            if !n.supports_hold_by_hash() {
                bail!(
                    "lightning.cln: the loaded hold-invoice plugin cannot create a hold invoice for a \
                     payment hash; install BoltzExchange's `hold` plugin"
                );
            }
            Arc::new(n)
        },
    };
    let info = node
        .info()
        .await
        .context("lightning: the node does not answer GetInfo")?;
    if info.network != l.network {
        bail!(
            "lightning.network is {} but the node runs on {}",
            l.network.as_str(),
            info.network.as_str()
        );
    }
    info!(alias = %info.alias, network = info.network.as_str(), height = info.block_height.0, "lightning node ready");
    Ok(node)
}

/// Runs the node until `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    run_with_parts(cfg, Parts::default(), shutdown).await
}

/// What an embedder may supply instead of what the config builds.
#[derive(Default)]
pub struct Parts {
    /// Resolves Lightning addresses (buyer payouts to an address, the development fee); by
    /// default the SSRF-guarded LNURL resolver.
    pub resolver: Option<Arc<dyn mostro_core::ports::PayoutResolver>>,
}

/// [`run`] with some parts supplied by the caller.
pub async fn run_with_parts(
    cfg: Config,
    parts: Parts,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let key = NodeKey::load(&cfg.data_path(&cfg.node.key_file))?;
    info!(npub = %key.npub(), pubkey = %key.public(), "node key loaded");
    let node = lightning(&cfg).await?;
    run_node(cfg, key, node, parts, shutdown).await
}

/// Runs the node with an already opened Lightning backend (the demo passes its simulator's).
pub async fn run_with(
    cfg: Config,
    key: NodeKey,
    node: Arc<dyn LightningNode>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_node(cfg, key, node, Parts::default(), shutdown).await
}

async fn run_node(
    cfg: Config,
    key: NodeKey,
    node: Arc<dyn LightningNode>,
    parts: Parts,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let clock = Arc::new(SystemClock);
    let db_path = cfg.data_path(&cfg.database.path);
    let sync = match cfg.database.synchronous.as_str() {
        "normal" => mostro_sqlite::Synchronous::Normal,
        _ => mostro_sqlite::Synchronous::Full,
    };
    let store_cfg = mostro_sqlite::SqliteConfig {
        synchronous: sync,
        ..Default::default()
    };
    let sqlite = Arc::new(
        mostro_sqlite::SqliteStore::open_with(&db_path, store_cfg)
            .with_context(|| format!("database.path: cannot open {}", db_path.display()))?,
    );
    let store: Arc<dyn Store> = sqlite.clone();

    let keys = Keys::parse(&key.secret_hex()).map_err(|e| anyhow::anyhow!("node key: {e}"))?;
    let mut tc = TransportConfig::new(&keys, cfg.nostr.relays.clone());
    tc.dm_expiration_secs = cfg.nostr.dm_expiration_days.saturating_mul(86_400);
    tc.intake.freshness_secs = Some(cfg.nostr.freshness_secs);
    tc.intake.catch_up_horizon_secs = cfg.nostr.catch_up_horizon_secs;
    tc.catch_up_rate = cfg.nostr.catch_up_rate;
    // The first catch-up starts where the last run stopped processing requests.
    tc.resume_from = store
        .last_event_seen_at()
        .await
        .context("database: reading the newest processed request")?
        .map(|t| t.0);
    tc.intake.max_future_secs = Some(cfg.nostr.max_future_secs);
    tc.intake.pow = cfg.nostr.pow;
    tc.intake.pow_first_contact = cfg.nostr.pow_first_contact;
    tc.publish.name = (!cfg.node.name.is_empty()).then(|| cfg.node.name.clone());
    tc.publish.networks = vec![cfg.lightning.network.as_str().to_owned()];
    let transport = Arc::new(NostrTransport::new(
        keys,
        tc,
        clock.clone(),
        Some(Arc::new(StoreRecords(store.clone()))),
    ));
    transport.connect().await.context("nostr.relays")?;
    transport.wait_for_connection(Duration::from_secs(5)).await;

    let (prices, feed, price_task) = price_source(&cfg, clock.clone()).await?;
    let metrics = Arc::new(Metrics::default());
    let ports = Ports {
        node: Arc::new(MeteredNode::new(node.clone(), metrics.clone())),
        store: Arc::new(MeteredStore::new(store.clone(), metrics.clone())),
        transport: Arc::new(MeteredTransport::new(transport.clone(), metrics.clone())),
        clock,
        entropy: Arc::new(OsEntropy),
        prices,
    };
    let engine_cfg = EngineConfig {
        node_key: key.public(),
        network: cfg.lightning.network,
        pay_timeout_secs: cfg.lightning.pay_timeout_secs,
    };
    // Lightning-address / LNURL payouts, resolved at payout time (SSRF-guarded, bounded).
    let resolver: Arc<dyn mostro_core::ports::PayoutResolver> = match parts.resolver {
        Some(r) => r,
        None => Arc::new(
            mostro_price::LnurlResolver::new(mostro_price::LnurlConfig::default())
                .map_err(|e| anyhow::anyhow!("LNURL resolver: {e}"))?,
        ),
    };
    let engine = Arc::new(Engine::new(ports, engine_cfg, cfg.policy()).with_resolver(resolver));

    // Restart recovery before any new message is accepted: the node's view of every hold and
    // payout hash an open order knows. One order that cannot be read never stops the start;
    // it is retried in the background. Pending effects run in the retry loop, next to the
    // scheduler and the CLTV guard, not before them.
    if engine
        .restore_settings()
        .await
        .context("reading the stored settings")?
    {
        warn!(
            "maintenance mode is on (kept from before the restart): new orders and takes are refused"
        );
    }
    let recovery = engine.recover().await.context("restart reconciliation")?;
    info!(
        orders = recovery.orders,
        checked = recovery.checked,
        failed = recovery.failed.len(),
        "restart reconciliation"
    );

    let counters = Arc::new(Counters::default());
    let token = ensure_token(&cfg.data_path(&cfg.admin.token_file))?;
    let listener = TcpListener::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("admin.listen: cannot bind {}", cfg.admin.listen))?;
    let metrics_listener = match cfg.metrics.addr() {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics.listen: cannot bind {addr}"))?,
        ),
        None => None,
    };
    let lightning_health = Arc::new(LightningHealth::default());
    let ln_poll = tokio::spawn(poll_lightning(node.clone(), lightning_health.clone()));
    let state = Arc::new(http::State {
        engine: engine.clone(),
        store: store.clone(),
        counters: counters.clone(),
        token,
        metrics: metrics.clone(),
        lightning: lightning_health,
        transport: transport.clone(),
        relays_configured: cfg.nostr.relays.len(),
        prices: feed.clone(),
        clock: Arc::new(SystemClock),
    });
    let http_task = tokio::spawn(http::serve(listener, http::admin_router(state.clone())));
    let metrics_task =
        metrics_listener.map(|l| tokio::spawn(http::serve(l, http::public_router(state.clone()))));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    let prune_task = tokio::spawn(crate::housekeeping::run(
        sqlite.clone(),
        crate::housekeeping::Prune::from_config(&cfg),
        Arc::new(SystemClock),
        stopped(stop_rx.clone()),
    ));
    let info_task = tokio::spawn(publish_info_loop(
        cfg.clone(),
        transport.clone(),
        engine.clone(),
        node.clone(),
        stopped(stop_rx.clone()),
    ));
    let trusted_rates_task = match (&feed, cfg.price.nostr_sources.is_empty()) {
        (Some(f), false) => Some(tokio::spawn(read_trusted_rates_loop(
            cfg.clone(),
            transport.clone(),
            f.clone(),
            stopped(stop_rx.clone()),
        ))),
        _ => None,
    };
    let rates_task = cfg.price.publish_to_nostr.then(|| {
        tokio::spawn(publish_rates_loop(
            cfg.clone(),
            transport.clone(),
            feed.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    let health_task = cfg.health.publish.then(|| {
        tokio::spawn(publish_health_loop(
            state.clone(),
            cfg.health.interval_secs,
            stopped(stop_rx.clone()),
        ))
    });
    // Inbound: the transport yields requests, the driver's intake hands them to the engine.
    let (inbox_tx, inbox) = tokio::sync::mpsc::unbounded_channel();
    let inbound = tokio::spawn(mostro_nostr::run_intake(
        transport.clone(),
        inbox_tx,
        stopped(stop_rx.clone()),
    ));
    let intake_task = tokio::spawn(crate::intake::serve(
        engine.clone(),
        Some(metrics.clone()),
        inbox,
        stopped(stop_rx.clone()),
    ));
    info!(npub = %key.npub(), pubkey = %key.public(), relays = ?cfg.nostr.relays, admin = %cfg.admin.listen, metrics = ?cfg.metrics.addr(), commit = http::COMMIT, "mostrod running");

    daemon::drive(engine, node, counters, recovery.failed, async {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    if let Ok(Err(e)) = inbound.await {
        warn!(error = %e, "inbound driver ended with an error");
    }
    let _ = intake_task.await;
    let _ = info_task.await;
    if let Some(t) = health_task {
        let _ = t.await;
    }
    if let Some(t) = rates_task {
        let _ = t.await;
    }
    if let Some(t) = trusted_rates_task {
        let _ = t.await;
    }
    let _ = prune_task.await;
    http_task.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    ln_poll.abort();
    if let Some(t) = price_task {
        t.abort();
    }
    transport.shutdown().await;
    info!("mostrod stopped");
    Ok(())
}

/// The Nostr adapter's questions (processed event? maker reputation?) answered from the store,
/// so the adapter itself never holds the store.
struct StoreRecords(Arc<dyn Store>);

#[async_trait::async_trait]
impl mostro_nostr::Records for StoreRecords {
    async fn processed(&self, id: &mostro_core::types::EventId) -> Result<bool, String> {
        self.0.seen_event(id).await.map_err(|e| e.to_string())
    }

    async fn user(
        &self,
        identity: &mostro_core::types::PubKey,
    ) -> Result<Option<mostro_core::ports::User>, String> {
        self.0.user(identity).await.map_err(|e| e.to_string())
    }

    async fn active_keys(&self) -> Result<Vec<mostro_core::types::PubKey>, String> {
        let orders = self.0.open_orders().await.map_err(|e| e.to_string())?;
        let solvers = self.0.solvers().await.map_err(|e| e.to_string())?;
        let mut keys: Vec<mostro_core::types::PubKey> = Vec::new();
        for o in &orders {
            keys.push(o.maker.trade_key);
            keys.extend(o.taker.as_ref().map(|t| t.trade_key));
            keys.extend(o.dispute.as_ref().and_then(|d| d.solver));
        }
        keys.extend(solvers.iter().map(|s| s.identity));
        Ok(keys)
    }

    async fn load(&self, key: &str) -> Result<Option<String>, String> {
        self.0
            .setting(&format!("transport.{key}"))
            .await
            .map_err(|e| e.to_string())
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), String> {
        self.0
            .set_setting(&format!("transport.{key}"), value)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What [`price_source`] returns: the source, the live feed (if any, for metrics) and its task.
type PriceParts = (
    Arc<dyn PriceSource>,
    Option<Arc<mostro_price::PriceFeed>>,
    Option<tokio::task::JoinHandle<()>>,
);

/// The fixed `[prices]`, or the live `[price]` feed when providers are configured (refreshed
/// once before the engine starts, then every `update_interval_seconds` by the returned task).
async fn price_source(cfg: &Config, clock: Arc<SystemClock>) -> anyhow::Result<PriceParts> {
    let Some(feed_cfg) = cfg.price_feed() else {
        return Ok((Arc::new(StaticPrices(cfg.prices.fixed.clone())), None, None));
    };
    let feed = mostro_price::PriceFeed::new(feed_cfg, clock).context("price.providers")?;
    let r = feed.refresh().await;
    info!(
        ok = r.ok,
        failed = r.failed,
        currencies = feed.prices().len(),
        "price feed started"
    );
    let task = feed.spawn();
    let feed = Arc::new(feed);
    Ok((feed.clone(), Some(feed), Some(task)))
}

/// The node's quotes for the exchange-rates event: the live feed's aggregated prices (source:
/// the providers), or the fixed `[prices]`.
fn current_rates(
    cfg: &Config,
    feed: Option<&mostro_price::PriceFeed>,
) -> mostro_nostr::events::Rates {
    let interval_secs = cfg.price.update_interval_seconds;
    match feed {
        Some(f) => {
            let mut kinds: Vec<&str> = cfg
                .price
                .providers
                .iter()
                .map(|p| p.kind.as_str())
                .collect();
            if !cfg.price.nostr_sources.is_empty() {
                kinds.push("nostr");
            }
            kinds.dedup();
            mostro_nostr::events::Rates {
                prices: f
                    .prices()
                    .into_iter()
                    .map(|(code, p)| (code, p.fiat_per_btc))
                    .collect(),
                source: kinds.join(","),
                interval_secs,
            }
        },
        None => mostro_nostr::events::Rates {
            prices: cfg.prices.fixed.clone(),
            source: "fixed".to_owned(),
            interval_secs,
        },
    }
}

/// Publishes the node's quotes as the exchange-rates event (kind 30078) every
/// `[price] update_interval_seconds`, the first time at once (after the feed's first refresh),
/// until `stop`. Nothing is published while there is no quote.
async fn publish_rates_loop(
    cfg: Config,
    transport: Arc<NostrTransport>,
    feed: Option<Arc<mostro_price::PriceFeed>>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    transport
        .wait_for_connection(std::time::Duration::from_secs(5))
        .await;
    let period = std::time::Duration::from_secs(cfg.price.update_interval_seconds.max(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {},
        }
        let rates = current_rates(&cfg, feed.as_deref());
        if rates.prices.is_empty() {
            continue;
        }
        if let Err(e) = transport.publish_rates(&rates).await {
            warn!(error = %e, "exchange rates not published");
        }
    }
}

/// Reads the exchange rates the trusted nodes (`[price] nostr_sources`) published (kind 30078,
/// `d` = `mostro-rates`) from this node's relays every `update_interval_seconds`, the first time
/// at once, and gives each node's newest, unexpired rates to the feed as one more source.
async fn read_trusted_rates_loop(
    cfg: Config,
    transport: Arc<NostrTransport>,
    feed: Arc<mostro_price::PriceFeed>,
    stop: impl Future<Output = ()>,
) {
    use mostro_nostr::events::{KIND_RATES, RATES_D};
    let own = transport.keys().public_key();
    let authors: Vec<nostr_sdk::PublicKey> = cfg
        .price
        .nostr_sources
        .iter()
        .filter_map(|k| nostr_sdk::PublicKey::parse(k.trim()).ok())
        .filter(|k| *k != own)
        .collect();
    let mut stop = std::pin::pin!(stop);
    transport
        .wait_for_connection(std::time::Duration::from_secs(5))
        .await;
    let period = std::time::Duration::from_secs(cfg.price.update_interval_seconds.max(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {},
        }
        let filter = nostr_sdk::Filter::new()
            .authors(authors.clone())
            .kind(nostr_sdk::Kind::from(KIND_RATES))
            .identifier(RATES_D);
        let events = match transport
            .client()
            .fetch_events(filter, std::time::Duration::from_secs(5))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "trusted nodes' rates unavailable");
                continue;
            },
        };
        let now = nostr_sdk::Timestamp::now();
        let mut newest: HashMap<nostr_sdk::PublicKey, nostr_sdk::Event> = HashMap::new();
        for e in events {
            if !authors.contains(&e.pubkey) || e.is_expired_at(&now) || e.verify().is_err() {
                continue;
            }
            if newest
                .get(&e.pubkey)
                .is_none_or(|old| old.created_at < e.created_at)
            {
                newest.insert(e.pubkey, e);
            }
        }
        for (author, e) in newest {
            match mostro_price::feed::parse_quotes(
                mostro_price::ProviderKind::Yadio,
                e.content.as_bytes(),
                &[],
            ) {
                Ok(q) => {
                    let n = feed.set_external(
                        &format!("nostr:{}", author.to_hex()),
                        q,
                        mostro_core::types::Timestamp(e.created_at.as_secs()),
                    );
                    debug!(node = %author, updated = n, "trusted node's rates taken");
                },
                Err(err) => warn!(node = %author, error = %err, "trusted node's rates unreadable"),
            }
        }
    }
}

/// Publishes what `/health/ready` checks as the health event (kind 38389) every
/// `interval_secs`, until `stop`.
async fn publish_health_loop(
    state: Arc<http::State>,
    interval_secs: u64,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    // The first report once a relay is there to take it and the Lightning node was asked (or
    // after 5 s: then it says so).
    state
        .transport
        .wait_for_connection(std::time::Duration::from_secs(5))
        .await;
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !state.lightning.polled() && tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(interval_secs.max(1)));
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {},
        }
        let outbox = state.store.pending_effect_count().await.ok();
        let report = http::Readiness::check(&state)
            .await
            .report(outbox, interval_secs);
        if let Err(e) = state.transport.publish_health(&report).await {
            warn!(error = %e, "health event not published");
        }
    }
}

async fn publish_info_loop(
    cfg: Config,
    transport: Arc<NostrTransport>,
    engine: Arc<Engine>,
    node: Arc<dyn LightningNode>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    // The profile (kind 0) once at start; a relay that misses it gets it from the reconciler.
    let profile = cfg.profile.profile();
    if !profile.is_empty()
        && let Err(e) = transport.publish_profile(&profile).await
    {
        warn!(error = %e, "profile not published");
    }
    let info_every = Duration::from_secs(cfg.nostr.info_interval_secs.max(1));
    let relays_every = Duration::from_secs(cfg.nostr.relay_list_interval_secs.max(1));
    let mut next_info = tokio::time::Instant::now();
    let mut next_relays = next_info;
    let mut published_maintenance = None;
    loop {
        let now = tokio::time::Instant::now();
        let maintenance = engine.policy().maintenance;
        // The info event on its interval, or at once when maintenance mode flips.
        if now >= next_info || published_maintenance != Some(maintenance) {
            let ln = node.info().await.ok();
            let info = node_info(&cfg, ln.as_ref(), maintenance);
            if let Err(e) = transport.publish_info(&info).await {
                warn!(error = %e, "info event not published");
            }
            published_maintenance = Some(maintenance);
            next_info = now + info_every;
        }
        if now >= next_relays {
            next_relays = match transport.publish_relay_list().await {
                Ok(()) => now + relays_every,
                // No relay connected yet (start-up) or none reachable: try again soon.
                Err(e) => {
                    debug!(error = %e, "relay list not published");
                    now + relays_every.min(Duration::from_secs(5))
                },
            };
        }
        // Wake at the next due time, and every second to see a maintenance flip.
        let wake = next_info.min(next_relays).min(now + Duration::from_secs(1));
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep_until(wake) => {},
        }
    }
}

fn node_info(
    cfg: &Config,
    ln: Option<&mostro_core::ports::NodeInfo>,
    maintenance: bool,
) -> mostro_nostr::events::NodeInfo {
    let m = &cfg.mostro;
    mostro_nostr::events::NodeInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit_hash: if http::COMMIT == "unknown" {
            String::new()
        } else {
            http::COMMIT.to_owned()
        },
        max_order_amount: m.max_order_amount,
        min_order_amount: m.min_payment_amount,
        expiration_hours: m.expiration_hours,
        expiration_seconds: m.expiration_seconds,
        fiat_currencies: m.fiat_currencies_accepted.clone(),
        max_orders_per_response: u64::from(m.max_orders_per_response),
        fee: m.fee,
        pow: cfg.nostr.pow,
        pow_first_contact: cfg.nostr.pow_first_contact,
        hold_invoice_cltv_delta: m.hold_invoice_cltv_delta,
        escrow_deadline_margin_blocks: m.escrow_deadline_margin_blocks,
        lightning: mostro_nostr::events::LightningInfo {
            version: ln.map(|i| i.version.clone()).unwrap_or_default(),
            node_pubkey: ln.map(|i| i.pubkey.clone()).unwrap_or_default(),
            commit_hash: ln.map(|i| i.commit_hash.clone()).unwrap_or_default(),
            alias: ln.map(|i| i.alias.clone()).unwrap_or_default(),
            chains: ln
                .map(|i| i.chains.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| vec!["bitcoin".to_owned()]),
            networks: vec![cfg.lightning.network.as_str().to_owned()],
            uris: ln.map(|i| i.uris.clone()).unwrap_or_default(),
        },
        invoice_expiration_window: m.invoice_expiration_window,
        hold_invoice_expiration_window: m.expiration_seconds,
        maintenance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn price_source_is_fixed_or_the_feed() {
        let cfg = Config::parse("[prices]\nfixed = { USD = 50000.0 }\n", &[]).unwrap();
        let (p, feed, task) = price_source(&cfg, Arc::new(SystemClock)).await.unwrap();
        assert!(task.is_none() && feed.is_none());
        assert_eq!(p.price("usd").await.unwrap().fiat_per_btc, 50_000.0);
        // A configured provider replaces the fixed prices (nothing listens there: no price).
        let cfg = Config::parse(
            "[prices]\nfixed = { USD = 50000.0 }\n[price]\nprovider_timeout_seconds = 1\n\
             providers = [{ kind = \"yadio\", url = \"https://127.0.0.1:1\" }]\n",
            &[],
        )
        .unwrap();
        let (p, feed, task) = price_source(&cfg, Arc::new(SystemClock)).await.unwrap();
        assert!(p.price("USD").await.is_none());
        assert!(feed.is_some());
        task.unwrap().abort();
    }
}
