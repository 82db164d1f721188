//! Operator subcommands: `key show`, `db backup|check|stats`, `check-config` and
//! `import-settings`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::config::{Backend, Config, PriceProviderEntry};
use crate::support::{NodeKey, write_secret};
use crate::{load, say};

/// `mostrod key ...`.
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Print the node's public key (npub and hex).
    Show {
        /// Config file (for the key file's path).
        #[arg(long, env = "MOSTRO_CONFIG", default_value = "mostrod.toml")]
        config: PathBuf,
        /// Also print the secret key as nsec1... (keep it private).
        #[arg(long)]
        nsec: bool,
    },
}

/// `mostrod db ...`.
#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Copy the database into a new file with SQLite's online backup (safe while running).
    Backup {
        /// The new file (must not exist).
        file: PathBuf,
    },
    /// Integrity check and schema version.
    Check,
    /// Rows per table and file sizes.
    Stats,
}

pub fn key(what: KeyCmd) -> anyhow::Result<()> {
    match what {
        KeyCmd::Show { config, nsec } => {
            let cfg = load(&config)?;
            let key = NodeKey::load(&cfg.data_path(&cfg.node.key_file))?;
            say(&format!("npub {}\nhex  {}", key.npub(), key.public()));
            if nsec {
                say(&format!("nsec {}", key.nsec()));
            }
            Ok(())
        },
    }
}

pub async fn db(config: &Path, what: DbCmd) -> anyhow::Result<()> {
    let cfg = load(config)?;
    let path = cfg.data_path(&cfg.database.path);
    match what {
        DbCmd::Backup { file } => {
            let (src, dst) = (path.clone(), file.clone());
            let pages =
                tokio::task::spawn_blocking(move || mostro_sqlite::tools::backup(&src, &dst))
                    .await??;
            let report = mostro_sqlite::tools::check(&file)?;
            if !report.ok() {
                bail!(
                    "backup {} fails its check: {}",
                    file.display(),
                    report.integrity.join("; ")
                );
            }
            say(&format!(
                "backed up {} to {} ({pages} pages, schema version {}, integrity ok)",
                path.display(),
                file.display(),
                report.schema_version
            ));
        },
        DbCmd::Check => {
            let r =
                tokio::task::spawn_blocking(move || mostro_sqlite::tools::check(&path)).await??;
            say(&format!(
                "integrity: {}\nschema version: {} (this binary: up to {})\napplication id: {}",
                r.integrity.join("; "),
                r.schema_version,
                r.supported_version,
                if r.ours {
                    "mostrod"
                } else {
                    "NOT a mostrod database"
                }
            ));
            if !r.ok() {
                bail!("database check failed");
            }
        },
        DbCmd::Stats => {
            let p = path.clone();
            let s = tokio::task::spawn_blocking(move || mostro_sqlite::tools::table_stats(&p))
                .await??;
            let mut out = format!("database {}\n", path.display());
            for (t, n) in &s.rows {
                out.push_str(&format!("{t:<10} {n} rows\n"));
            }
            out.push_str(&format!(
                "file       {} bytes\nwal        {} bytes",
                s.file_bytes, s.wal_bytes
            ));
            say(&out);
        },
    }
    Ok(())
}

fn readable(what: &str, p: &Path) -> anyhow::Result<()> {
    std::fs::File::open(p)
        .map(drop)
        .with_context(|| format!("{what}: cannot read {}", p.display()))
}

/// The file checks of `check-config`: each problem names its key.
fn check_files(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = NodeKey::load(&cfg.data_path(&cfg.node.key_file)) {
        problems.push(format!("node.key_file: {e:#}"));
    }
    match cfg.lightning.backend {
        Backend::Lnd => {
            let l = &cfg.lightning.lnd;
            for (k, p) in [
                ("lightning.lnd.cert_file", &l.cert_file),
                ("lightning.lnd.macaroon_file", &l.macaroon_file),
            ] {
                if let Err(e) = readable(k, &cfg.data_path(p)) {
                    problems.push(format!("{e:#}"));
                }
            }
        },
        Backend::Cln => {
            let p = cfg.data_path(&cfg.lightning.cln.socket);
            #[cfg(unix)]
            let is_socket = {
                use std::os::unix::fs::FileTypeExt;
                std::fs::metadata(&p).map(|m| m.file_type().is_socket())
            };
            #[cfg(not(unix))]
            let is_socket = std::fs::metadata(&p).map(|_| true);
            match is_socket {
                Ok(true) => {},
                Ok(false) => problems.push(format!(
                    "lightning.cln.socket: {} is not a unix socket",
                    p.display()
                )),
                Err(e) => problems.push(format!("lightning.cln.socket: {}: {e}", p.display())),
            }
        },
    }
    problems
}

async fn check_relays(relays: &[String], timeout: Duration) -> Vec<String> {
    let client = nostr_sdk::Client::default();
    let mut problems = Vec::new();
    for r in relays {
        if let Err(e) = client.add_relay(r.as_str()).await {
            problems.push(format!("nostr.relays: {r}: {e}"));
        }
    }
    client.connect().await;
    client.wait_for_connection(timeout).await;
    for (url, relay) in client.relays().await {
        if relay.status() == nostr_sdk::RelayStatus::Connected {
            say(&format!("relay {url}: connected"));
        } else {
            problems.push(format!(
                "nostr.relays: {url}: not connected within {}s ({})",
                timeout.as_secs(),
                relay.status()
            ));
        }
    }
    client.shutdown().await;
    problems
}

pub async fn check_config(config: &Path, connect: bool, timeout: u64) -> anyhow::Result<()> {
    let cfg = load(config)?;
    let mut problems = check_files(&cfg);
    if connect && problems.is_empty() {
        let t = Duration::from_secs(timeout.max(1));
        match tokio::time::timeout(t, crate::node::lightning(&cfg)).await {
            Ok(Ok(node)) => match node.info().await {
                Ok(i) => say(&format!(
                    "lightning: {} ({}, block {})",
                    i.alias,
                    i.network.as_str(),
                    i.block_height.0
                )),
                Err(e) => problems.push(format!("lightning: GetInfo: {e}")),
            },
            Ok(Err(e)) => problems.push(format!("{e:#}")),
            Err(_) => problems.push(format!("lightning: no answer within {timeout}s")),
        }
        problems.extend(check_relays(&cfg.nostr.relays, t).await);
    }
    if !problems.is_empty() {
        bail!("{}: {}", config.display(), problems.join("\n  "));
    }
    say(&format!(
        "{}: ok (backend {:?}, {} relay(s), database {}{})",
        config.display(),
        cfg.lightning.backend,
        cfg.nostr.relays.len(),
        cfg.data_path(&cfg.database.path).display(),
        if connect { ", connected" } else { "" }
    ));
    Ok(())
}

/// The outcome of converting a reference settings file.
#[derive(Debug)]
pub struct Imported {
    /// The new config.
    pub config: Config,
    /// The node's secret key from `[nostr] nsec_privkey`.
    pub key: NodeKey,
    /// `section.key: why` for every setting not carried over.
    pub not_carried: Vec<String>,
}

fn ref_str<'a>(t: &'a toml::Table, section: &str, key: &str) -> anyhow::Result<Option<&'a str>> {
    match t.get(section).and_then(|s| s.get(key)) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(v) => bail!("[{section}] {key} = {v}: expected a string"),
    }
}

fn ref_u64(t: &toml::Table, section: &str, key: &str) -> anyhow::Result<Option<u64>> {
    match t.get(section).and_then(|s| s.get(key)) {
        None => Ok(None),
        Some(toml::Value::Integer(i)) => u64::try_from(*i).map(Some).map_err(|_| {
            anyhow::anyhow!("[{section}] {key} = {i}: expected a non-negative integer")
        }),
        Some(v) => bail!("[{section}] {key} = {v}: expected an integer"),
    }
}

fn ref_f64(t: &toml::Table, section: &str, key: &str) -> anyhow::Result<Option<f64>> {
    match t.get(section).and_then(|s| s.get(key)) {
        None => Ok(None),
        Some(toml::Value::Float(f)) => Ok(Some(*f)),
        #[allow(clippy::cast_precision_loss, reason = "small settings values")]
        Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
        Some(v) => bail!("[{section}] {key} = {v}: expected a number"),
    }
}

fn ref_strings(t: &toml::Table, section: &str, key: &str) -> anyhow::Result<Option<Vec<String>>> {
    match t.get(section).and_then(|s| s.get(key)) {
        None => Ok(None),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("[{section}] {key}: expected a list of strings"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Some),
        Some(v) => bail!("[{section}] {key} = {v}: expected a list of strings"),
    }
}

/// Keys of the reference settings this converter reads (everything else is reported).
const CARRIED: &[(&str, &str)] = &[
    ("lightning", "lnd_cert_file"),
    ("lightning", "lnd_macaroon_file"),
    ("lightning", "lnd_grpc_host"),
    ("lightning", "invoice_expiration_window"),
    ("lightning", "hold_invoice_cltv_delta"),
    ("lightning", "hold_invoice_expiration_window"),
    ("lightning", "payment_attempts"),
    ("lightning", "payment_retries_interval"),
    ("nostr", "nsec_privkey"),
    ("nostr", "relays"),
    ("mostro", "name"),
    ("mostro", "about"),
    ("mostro", "picture"),
    ("mostro", "website"),
    ("mostro", "fee"),
    ("mostro", "max_routing_fee"),
    ("mostro", "max_order_amount"),
    ("mostro", "min_payment_amount"),
    ("mostro", "expiration_hours"),
    ("mostro", "max_expiration_days"),
    ("mostro", "expiration_seconds"),
    ("mostro", "pow"),
    ("mostro", "dev_fee_percentage"),
    ("mostro", "pow_first_contact"),
    ("mostro", "publish_relays_interval"),
    ("mostro", "publish_mostro_info_interval"),
    ("mostro", "bitcoin_price_api_url"),
    ("mostro", "fiat_currencies_accepted"),
    ("mostro", "max_orders_per_response"),
    ("database", "url"),
];

/// Converts the text of a reference `settings.toml`; relative paths in it are taken relative
/// to `base` (the directory of the settings file).
pub fn convert_settings(text: &str, base: &Path) -> anyhow::Result<Imported> {
    let t: toml::Table = toml::from_str(text).context("not a TOML settings file")?;
    let mut cfg = Config::default();
    let mut not_carried = Vec::new();
    let abs = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };

    let nsec = ref_str(&t, "nostr", "nsec_privkey")?.ok_or_else(|| {
        anyhow::anyhow!("[nostr] nsec_privkey is missing: the node key is needed")
    })?;
    let key = NodeKey::parse(nsec).map_err(|why| anyhow::anyhow!("[nostr] nsec_privkey: {why}"))?;
    if let Some(r) = ref_strings(&t, "nostr", "relays")? {
        cfg.nostr.relays = r;
    }
    if let Some(v) = ref_str(&t, "lightning", "lnd_cert_file")? {
        cfg.lightning.lnd.cert_file = abs(v);
    }
    if let Some(v) = ref_str(&t, "lightning", "lnd_macaroon_file")? {
        cfg.lightning.lnd.macaroon_file = abs(v);
        // The reference has no network key; LND's macaroon path usually names it.
        use mostro_core::ports::Network;
        let net = [
            Network::Mainnet,
            Network::Testnet,
            Network::Signet,
            Network::Regtest,
        ]
        .into_iter()
        .find(|n| v.contains(&format!("/{}/", n.as_str())));
        match net {
            Some(n) => cfg.lightning.network = n,
            None => not_carried.push(
                "lightning.network: the reference has no such key and the macaroon path names \
                 no network; mostrod.toml says regtest: set the node's network"
                    .to_owned(),
            ),
        }
    }
    if let Some(v) = ref_str(&t, "lightning", "lnd_grpc_host")? {
        cfg.lightning.lnd.host = v.to_owned();
    }
    let m = &mut cfg.mostro;
    for (section, key, dst) in [
        (
            "lightning",
            "invoice_expiration_window",
            &mut m.invoice_expiration_window,
        ),
        (
            "lightning",
            "payment_retries_interval",
            &mut m.payment_retries_interval,
        ),
        ("mostro", "max_order_amount", &mut m.max_order_amount),
        ("mostro", "min_payment_amount", &mut m.min_payment_amount),
        ("mostro", "expiration_hours", &mut m.expiration_hours),
        ("mostro", "max_expiration_days", &mut m.max_expiration_days),
        ("mostro", "expiration_seconds", &mut m.expiration_seconds),
    ] {
        if let Some(v) = ref_u64(&t, section, key)? {
            *dst = v;
        }
    }
    let small = |section: &str, key: &str, v: u64| {
        u32::try_from(v).map_err(|_| anyhow::anyhow!("[{section}] {key} = {v}: too large"))
    };
    if let Some(v) = ref_u64(&t, "lightning", "hold_invoice_cltv_delta")? {
        m.hold_invoice_cltv_delta = small("lightning", "hold_invoice_cltv_delta", v)?;
    }
    if let Some(v) = ref_u64(&t, "lightning", "payment_attempts")? {
        m.payment_attempts = small("lightning", "payment_attempts", v)?;
    }
    if let Some(v) = ref_u64(&t, "mostro", "max_orders_per_response")? {
        m.max_orders_per_response = small("mostro", "max_orders_per_response", v)?;
    }
    if let Some(v) = ref_f64(&t, "mostro", "fee")? {
        m.fee = v;
    }
    if let Some(v) = ref_f64(&t, "mostro", "max_routing_fee")? {
        m.max_routing_fee = v;
    }
    if let Some(v) = ref_strings(&t, "mostro", "fiat_currencies_accepted")? {
        m.fiat_currencies_accepted = v;
    }
    if let Some(v) = ref_u64(&t, "lightning", "hold_invoice_expiration_window")?
        && v != m.expiration_seconds
    {
        not_carried.push(format!(
            "lightning.hold_invoice_expiration_window = {v}: mostrod has one window for every \
             waiting step, mostro.expiration_seconds = {}",
            m.expiration_seconds
        ));
    }
    if let Some(v) = ref_u64(&t, "mostro", "pow")? {
        cfg.nostr.pow =
            u8::try_from(v).map_err(|_| anyhow::anyhow!("[mostro] pow = {v}: too large"))?;
    }
    if let Some(v) = t
        .get("mostro")
        .and_then(|m| m.get("dev_fee_percentage"))
        .map(ToString::to_string)
    {
        // The reference pays it to its own project's address by default: not carried over, so
        // the operator chooses the share and the address of this daemon deliberately.
        not_carried.push(format!(
            "mostro.dev_fee_percentage = {v}: not carried over; set [mostro] dev_fee_percentage \
             and dev_fee_address to pay a development fee"
        ));
    }
    if let Some(v) = ref_u64(&t, "mostro", "pow_first_contact")? {
        cfg.nostr.pow_first_contact = u8::try_from(v)
            .map_err(|_| anyhow::anyhow!("[mostro] pow_first_contact = {v}: too large"))?;
    }
    if let Some(v) = ref_str(&t, "mostro", "name")? {
        cfg.node.name = v.to_owned();
        // The reference publishes its name, about, picture and website as the kind-0 profile.
        cfg.profile.name = Some(v.to_owned()).filter(|v| !v.trim().is_empty());
    }
    cfg.profile.about = ref_str(&t, "mostro", "about")?.map(str::to_owned);
    cfg.profile.picture = ref_str(&t, "mostro", "picture")?.map(str::to_owned);
    cfg.profile.website = ref_str(&t, "mostro", "website")?.map(str::to_owned);
    if let Some(v) = ref_u64(&t, "mostro", "publish_mostro_info_interval")? {
        cfg.nostr.info_interval_secs = v;
    }
    if let Some(v) = ref_u64(&t, "mostro", "publish_relays_interval")? {
        cfg.nostr.relay_list_interval_secs = v;
    }
    if let Some(url) = ref_str(&t, "mostro", "bitcoin_price_api_url")? {
        let u = url.trim_end_matches('/');
        match mostro_price::ProviderKind::Yadio {
            k if u == k.default_url() || u.contains("yadio") => {
                cfg.price.providers = vec![PriceProviderEntry {
                    kind: k,
                    url: if u == k.default_url() {
                        String::new()
                    } else {
                        u.to_owned()
                    },
                }];
            },
            _ => not_carried.push(format!(
                "mostro.bitcoin_price_api_url = {url}: not a Yadio API; configure [price] providers"
            )),
        }
    }
    if let Some(url) = ref_str(&t, "database", "url")? {
        // A relative url stays relative (to mostrod's data directory); an absolute one keeps
        // its directory. The file name is mostrod's own, never the reference's database.
        let file = PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url));
        cfg.database.path = match file.parent() {
            Some(d) if file.is_absolute() => d.join("mostrod.db"),
            _ => PathBuf::from("mostrod.db"),
        };
        not_carried.push(format!(
            "database.url = {url}: the reference's database has another schema and is not \
             read; mostrod keeps its own file, {}",
            cfg.database.path.display()
        ));
    }

    // Everything else in the file, by name.
    for (section, v) in &t {
        match v {
            toml::Value::Table(keys) => {
                for k in keys.keys() {
                    if !CARRIED.contains(&(section.as_str(), k.as_str())) {
                        not_carried.push(format!("{section}.{k}: no mostrod equivalent"));
                    }
                }
            },
            _ => not_carried.push(format!("{section}: no mostrod equivalent")),
        }
    }
    cfg.validate()
        .context("the converted settings are out of mostrod's accepted range")?;
    Ok(Imported {
        config: cfg,
        key,
        not_carried,
    })
}

pub fn import_settings(settings: &Path, out: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(settings)
        .with_context(|| format!("cannot read {}", settings.display()))?;
    let base = settings.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        std::env::current_dir()?
    } else {
        std::fs::canonicalize(&base).unwrap_or(base)
    };
    let imported =
        convert_settings(&text, &base).with_context(|| format!("{}", settings.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cfg_path = out.join("mostrod.toml");
    let key_path = out.join("node.key");
    for p in [&cfg_path, &key_path] {
        if p.exists() {
            bail!("{} already exists; not overwriting", p.display());
        }
    }
    let body = toml::to_string_pretty(&imported.config).context("cannot write the config")?;
    let text = format!(
        "# mostrod configuration converted from {} by `mostrod import-settings`.\n\
         # Every key is documented in the template `mostrod init` writes.\n\n{body}",
        settings.display()
    );
    // The written file must load as it is.
    Config::parse(&text, &[]).context("the converted config does not load")?;
    write_secret(&key_path, &imported.key.nsec())?;
    std::fs::write(&cfg_path, text)
        .with_context(|| format!("cannot write {}", cfg_path.display()))?;
    say(&format!(
        "wrote {} and {} (node {})",
        cfg_path.display(),
        key_path.display(),
        imported.key.npub()
    ));
    if imported.not_carried.is_empty() {
        say("every setting was carried over");
    } else {
        say("not carried over:");
        for n in &imported.not_carried {
            say(&format!("  {n}"));
        }
    }
    Ok(())
}
