//! `mostrod`: the Mostro daemon. It reads config and composes the engine with its adapters.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use mostrod::config;
use mostrod::support::{self, NodeKey};
use mostrod::{admin, load, ops, say};

#[derive(Parser, Debug)]
#[command(name = "mostrod", version, about = "Mostro P2P exchange daemon")]
struct Cli {
    /// Log line format on stderr: text (ANSI colours only on a terminal) or json (one object
    /// a line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MOSTRO_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write a commented config file, a new node key and an admin token into a directory.
    Init {
        /// Directory to create them in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Validate a config file (and environment overrides), the files it names (node key,
    /// LND cert/macaroon or CLN socket) and, with --connect, the Lightning node and relays.
    CheckConfig {
        /// Config file.
        #[arg(long, env = "MOSTRO_CONFIG", default_value = "mostrod.toml")]
        config: PathBuf,
        /// Also connect: GetInfo on the Lightning node, a connection to each relay.
        #[arg(long)]
        connect: bool,
        /// Time limit of each connection check, seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// The node's Nostr key.
    Key {
        #[command(subcommand)]
        what: ops::KeyCmd,
    },
    /// Database maintenance on the configured SQLite file.
    Db {
        /// Config file (for the database path).
        #[arg(long, env = "MOSTRO_CONFIG", default_value = "mostrod.toml")]
        config: PathBuf,
        #[command(subcommand)]
        what: ops::DbCmd,
    },
    /// Convert a settings.toml of the reference Mostro daemon into mostrod.toml and node.key.
    ImportSettings {
        /// The reference daemon's settings.toml.
        settings: PathBuf,
        /// Directory to write mostrod.toml and node.key into (must not hold them yet).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Run the node.
    Run {
        /// Config file.
        #[arg(long, env = "MOSTRO_CONFIG", default_value = "mostrod.toml")]
        config: PathBuf,
    },
    /// Local administration through the daemon's loopback endpoint.
    Admin {
        /// Config file (for the endpoint address and token).
        #[arg(long, env = "MOSTRO_CONFIG", default_value = "mostrod.toml")]
        config: PathBuf,
        /// Print the endpoint's raw JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: AdminCmd,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCmd {
    /// List open orders, optionally of one status.
    Orders {
        /// Status (e.g. pending, active, dispute).
        #[arg(long)]
        status: Option<String>,
    },
    /// One order by id (open or finished).
    Order {
        /// Order id (UUID).
        id: String,
    },
    /// List orders in dispute.
    Disputes,
    /// Payout alarms (duplicates, escrows near expiry) and dead-lettered effects.
    Alarms,
    /// Dispute solvers: list, add, remove.
    Solvers {
        #[command(subcommand)]
        what: SolversCmd,
    },
    /// Refuse new orders and takes (`on`) or accept them again (`off`).
    Maintenance {
        /// on | off
        state: String,
    },
}

#[derive(Subcommand, Debug)]
enum SolversCmd {
    /// Registered solvers.
    List,
    /// Register (or update) a solver.
    Add {
        /// The solver's public key (npub or hex).
        npub: String,
        /// May settle and cancel disputes (default: read-only).
        #[arg(long)]
        read_write: bool,
    },
    /// Remove a solver.
    Remove {
        /// The solver's public key (npub or hex).
        npub: String,
    },
}

/// A public key argument as hex, or an error naming the argument.
fn solver_key(arg: &str) -> anyhow::Result<String> {
    nostr_sdk::PublicKey::parse(arg.trim())
        .map(|k| k.to_hex())
        .map_err(|e| anyhow::anyhow!("NPUB `{arg}` is not a public key (npub or hex): {e}"))
}

fn init(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg_path = dir.join("mostrod.toml");
    if cfg_path.exists() {
        anyhow::bail!("{} already exists; not overwriting", cfg_path.display());
    }
    let key = NodeKey::generate();
    key.save(&dir.join("node.key"))?;
    support::ensure_token(&dir.join("admin.token"))?;
    std::fs::write(&cfg_path, config::TEMPLATE)
        .with_context(|| format!("cannot write {}", cfg_path.display()))?;
    say(&format!(
        "wrote {} and a new node key ({}, hex {})\nedit the [lightning] and [nostr] sections, then: mostrod run --config {}",
        cfg_path.display(),
        key.npub(),
        key.public(),
        cfg_path.display()
    ));
    Ok(())
}

#[allow(clippy::print_stderr, reason = "the CLI's error output")]
fn fail(e: &anyhow::Error) {
    eprintln!("mostrod: {e:#}");
}

async fn admin(config: &Path, json: bool, what: AdminCmd) -> anyhow::Result<()> {
    use ::http::Method;
    let cfg = load(config)?;
    let token_path = cfg.data_path(&cfg.admin.token_file);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read admin token {}", token_path.display()))?;
    let (method, target) = match &what {
        AdminCmd::Orders { status: Some(s) } => {
            if !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                anyhow::bail!("--status: not a status: {s}");
            }
            (Method::GET, format!("/admin/orders?status={s}"))
        },
        AdminCmd::Orders { status: None } => (Method::GET, "/admin/orders".to_owned()),
        AdminCmd::Order { id } => {
            let id = uuid::Uuid::parse_str(id)
                .map_err(|e| anyhow::anyhow!("order id `{id}` is not a UUID: {e}"))?;
            (Method::GET, format!("/admin/orders/{id}"))
        },
        AdminCmd::Disputes => (Method::GET, "/admin/disputes".to_owned()),
        AdminCmd::Alarms => (Method::GET, "/admin/alarms".to_owned()),
        AdminCmd::Maintenance { state } => match state.as_str() {
            "on" => (Method::POST, "/admin/maintenance?on=true".to_owned()),
            "off" => (Method::POST, "/admin/maintenance?on=false".to_owned()),
            other => anyhow::bail!("maintenance takes `on` or `off`, not `{other}`"),
        },
        AdminCmd::Solvers { what } => match what {
            SolversCmd::List => (Method::GET, "/admin/solvers".to_owned()),
            SolversCmd::Add { npub, read_write } => (
                Method::POST,
                format!(
                    "/admin/solvers?pubkey={}&write={read_write}",
                    solver_key(npub)?
                ),
            ),
            SolversCmd::Remove { npub } => (
                Method::DELETE,
                format!("/admin/solvers/{}", solver_key(npub)?),
            ),
        },
    };
    let body = admin::request(cfg.admin.listen, token.trim(), method, &target).await?;
    if json {
        say(&body.to_string());
        return Ok(());
    }
    let text = match what {
        AdminCmd::Orders { .. } | AdminCmd::Disputes => admin::orders_table(&body),
        AdminCmd::Order { .. } => admin::order_detail(&body),
        AdminCmd::Alarms => admin::alarms_table(&body),
        AdminCmd::Solvers {
            what: SolversCmd::List,
        } => admin::solvers_table(&body),
        AdminCmd::Solvers {
            what: SolversCmd::Add { .. },
        } => format!(
            "solver {} registered ({})",
            body.get("npub")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default(),
            if body.get("write").and_then(serde_json::Value::as_bool) == Some(true) {
                "read-write"
            } else {
                "read-only"
            }
        ),
        AdminCmd::Solvers {
            what: SolversCmd::Remove { npub },
        } => format!("solver {npub} removed"),
        AdminCmd::Maintenance { .. } => format!(
            "maintenance mode {}",
            if body.get("maintenance").and_then(serde_json::Value::as_bool) == Some(true) {
                "on: new orders and takes are refused"
            } else {
                "off"
            }
        ),
    };
    say(text.trim_end());
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {},
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}

fn init_tracing(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MOSTRO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing("info", cli.log_format);
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
    let r = rt.block_on(async {
        match cli.cmd {
            Cmd::Init { dir } => init(&dir),
            Cmd::CheckConfig {
                config,
                connect,
                timeout,
            } => ops::check_config(&config, connect, timeout).await,
            Cmd::Key { what } => ops::key(what),
            Cmd::Db { config, what } => ops::db(&config, what).await,
            Cmd::ImportSettings { settings, out } => ops::import_settings(&settings, &out),
            Cmd::Admin { config, json, what } => admin(&config, json, what).await,
            Cmd::Run { config } => {
                let cfg = load(&config)?;
                mostrod::run(cfg, async {
                    let _ = shutdown_signal().await;
                })
                .await
            },
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(&e);
            ExitCode::FAILURE
        },
    }
}
