//! Shared test setup: a CLN simulator in a temporary directory and a `ClnNode` on it.
#![allow(
    dead_code,
    clippy::expect_used,
    reason = "test setup: each test binary uses a subset; a failed setup is a panic"
)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mostro_cln::{ClnConfig, ClnNode};
use mostro_cln_sim::{ClnSim, HoldPlugin};
use mostro_core::ports::{LightningNode, Network};
use mostro_core::types::Timestamp;
use mostro_testkit::node_suite::NodeHarness;
use mostro_testkit::{Ledger, ManualClock};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub sim: ClnSim,
}

pub async fn sim(plugin: HoldPlugin, network: Network) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000)));
    let ledger = Ledger::new(network, clock);
    let sim = ClnSim::start_in(dir.path(), ledger, plugin)
        .await
        .expect("sim starts");
    Env { dir, sim }
}

pub fn config(env: &Env) -> ClnConfig {
    let mut cfg = ClnConfig::new(env.sim.socket_path(), Network::Regtest);
    cfg.call_timeout = Duration::from_secs(2);
    cfg.poll_interval = Duration::from_millis(20);
    cfg.pay_grace = Duration::from_millis(300);
    cfg
}

pub async fn node(env: &Env) -> Arc<ClnNode> {
    Arc::new(ClnNode::connect(config(env)).await.expect("connects"))
}

pub struct ClnHarness {
    pub env: Env,
    pub node: Arc<ClnNode>,
}

impl ClnHarness {
    pub async fn new() -> Self {
        let env = sim(HoldPlugin::Boltz, Network::Regtest).await;
        let node = node(&env).await;
        ClnHarness { env, node }
    }
}

#[async_trait]
impl NodeHarness for ClnHarness {
    fn node(&self) -> Arc<dyn LightningNode> {
        self.node.clone()
    }

    fn ledger(&self) -> Ledger {
        self.env.sim.ledger().clone()
    }

    async fn settle_time(&self) {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
