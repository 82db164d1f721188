//! Core Lightning adapter: [`ClnNode`] implements [`LightningNode`] over lightningd's JSON-RPC
//! unix socket (`lightning-rpc`) with `cln-rpc`, and a hold-invoice plugin (BoltzExchange
//! `hold`, preferred, or daywalker90 `holdinvoice`).
//!
//! - Every call has a timeout; connections come from a small pool (one call per connection at a
//!   time), and a stale pooled connection (node restarted) is replaced transparently.
//! - Hold invoice state changes and new blocks are found by polling on a dedicated connection
//!   (re-established after any drop) and reported through [`LightningNode::next_event`]. The
//!   poller remembers the last state it reported per invoice, so a transition that happened
//!   while the node was unreachable is reported once it is back.
//! - `pay` is idempotent per payment hash: `listpays` and `listsendpays` are checked first and
//!   `pay` is only called when no attempt is pending or complete.
//! - A payment is reported failed only when CLN's own record for the hash says every attempt
//!   failed; any other error of `pay` (including "already paid") is resolved from that record
//!   or returned as an `Err` (outcome unknown). See [`classify_pay_error`].
#![warn(missing_docs)]

mod plugin;
mod rpc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use mostro_core::machine::PayOutcome;
use mostro_core::ports::{
    DecodedInvoice, HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnErrorKind,
    Network, NodeEvent, NodeInfo, PayRequest, PaymentStatus,
};
use mostro_core::types::{BlockHeight, PaymentHash, Preimage, Sats};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

pub use plugin::HoldPlugin;
use rpc::{CallError, Rpc};

/// How to reach the node.
#[derive(Clone, Debug)]
pub struct ClnConfig {
    /// Path of lightningd's RPC socket (`<lightning-dir>/<network>/lightning-rpc`).
    pub socket: PathBuf,
    /// The network the node must be on.
    pub network: Network,
    /// Bound on every call (except `pay`, bounded by its own timeout plus `pay_grace`).
    pub call_timeout: Duration,
    /// Interval of the invoice-state and block-height polls.
    pub poll_interval: Duration,
    /// Extra time given to `pay` beyond `PayRequest::timeout_secs`.
    pub pay_grace: Duration,
}

impl ClnConfig {
    /// Defaults: 30 s per call, a 1 s poll, 5 s pay grace.
    pub fn new(socket: impl Into<PathBuf>, network: Network) -> Self {
        ClnConfig {
            socket: socket.into(),
            network,
            call_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            pay_grace: Duration::from_secs(5),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Invoices the poller watches, with the last state reported (`None`: report the next one
/// seen).
type Watch = Arc<Mutex<HashMap<PaymentHash, Option<HoldInvoiceState>>>>;

/// The CLN node behind the [`LightningNode`] port.
pub struct ClnNode {
    rpc: Arc<Rpc>,
    plugin: HoldPlugin,
    network: Network,
    pay_grace: Duration,
    watch: Watch,
    /// One `pay` at a time per payment hash (so two concurrent calls cannot both send).
    pay_locks: Mutex<HashMap<PaymentHash, Arc<tokio::sync::Mutex<()>>>>,
    events: tokio::sync::Mutex<UnboundedReceiver<NodeEvent>>,
    poller: JoinHandle<()>,
}

impl std::fmt::Debug for ClnNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClnNode")
            .field("rpc", &self.rpc)
            .field("plugin", &self.plugin)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Drop for ClnNode {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

fn cln_network(name: &str) -> Result<Network, LnError> {
    match name {
        "bitcoin" => Ok(Network::Mainnet),
        "testnet" | "testnet4" => Ok(Network::Testnet),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(LnError::new(
            LnErrorKind::WrongNetwork,
            format!("unsupported network {other:?}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct GetInfo {
    id: String,
    #[serde(default)]
    alias: String,
    blockheight: u32,
    network: String,
    #[serde(default)]
    version: String,
    /// Announced addresses.
    #[serde(default)]
    address: Vec<ClnAddress>,
}

/// One `getinfo` address.
#[derive(Debug, Deserialize)]
struct ClnAddress {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: u16,
}

impl ClnAddress {
    /// `pubkey@host:port` (IPv6 in brackets); `None` for an entry without a host.
    fn uri(&self, id: &str) -> Option<String> {
        let host = self.address.as_deref()?;
        Some(if self.kind == "ipv6" {
            format!("{id}@[{host}]:{}", self.port)
        } else {
            format!("{id}@{host}:{}", self.port)
        })
    }
}

async fn get_info(rpc: &Rpc) -> Result<GetInfo, LnError> {
    let v = rpc
        .call("getinfo", json!({}))
        .await
        .map_err(|e| e.into_ln("getinfo"))?;
    serde_json::from_value(v).map_err(|e| {
        LnError::new(
            LnErrorKind::Other,
            format!("getinfo: unexpected result: {e}"),
        )
    })
}

impl ClnNode {
    /// Connects: checks the network with `getinfo`, finds the hold-invoice plugin with `help`
    /// and starts the event poller (owned by the node; stopped when it is dropped).
    ///
    /// # Errors
    /// `Unreachable` when the socket is missing or refuses, `WrongNetwork` when the node is on
    /// another network, `Other` naming the plugins to install when neither is loaded.
    pub async fn connect(cfg: ClnConfig) -> Result<Self, LnError> {
        let rpc = Arc::new(Rpc::new(&cfg.socket, cfg.call_timeout));
        let info = get_info(&rpc).await?;
        let network = cln_network(&info.network)?;
        if network != cfg.network {
            return Err(LnError::new(
                LnErrorKind::WrongNetwork,
                format!(
                    "the CLN node is on {}, expected {}",
                    network.as_str(),
                    cfg.network.as_str()
                ),
            ));
        }
        let help = rpc
            .call("help", json!({}))
            .await
            .map_err(|e| e.into_ln("help"))?;
        let Some(plugin) = plugin::detect(&help) else {
            return Err(LnError::new(
                LnErrorKind::Other,
                plugin::missing_plugin_message(&cfg.socket.display().to_string()),
            ));
        };
        if plugin == HoldPlugin::Daywalker {
            tracing::warn!(
                "cln: daywalker90 holdinvoice found: it cannot create hold invoices for a \
                 caller-chosen payment hash; prefer BoltzExchange hold"
            );
        }
        tracing::info!(?plugin, network = network.as_str(), "cln: connected");
        let watch: Watch = Arc::new(Mutex::new(HashMap::new()));
        let (tx, rx) = unbounded_channel();
        // The poller has its own connection, never shared with port calls.
        let poll_rpc = Rpc::new(&cfg.socket, cfg.call_timeout);
        let poller = tokio::spawn(poll_loop(
            poll_rpc,
            plugin,
            watch.clone(),
            tx,
            cfg.poll_interval,
        ));
        Ok(ClnNode {
            rpc,
            plugin,
            network,
            pay_grace: cfg.pay_grace,
            watch,
            pay_locks: Mutex::new(HashMap::new()),
            events: tokio::sync::Mutex::new(rx),
            poller,
        })
    }

    /// The plugin in use.
    pub fn hold_plugin(&self) -> HoldPlugin {
        self.plugin
    }

    /// Whether the node can create hold invoices for a payment hash chosen by the caller
    /// (what Mostro's escrow needs).
    pub fn supports_hold_by_hash(&self) -> bool {
        self.plugin == HoldPlugin::Boltz
    }

    fn watch_new(&self, hash: PaymentHash, state: Option<HoldInvoiceState>) {
        lock(&self.watch).entry(hash).or_insert(state);
    }

    /// Interprets a failed settle/cancel from the invoice's current state, so both plugins'
    /// error texts map to the same kinds.
    async fn after_failure(
        &self,
        hash: &PaymentHash,
        err: CallError,
        what: &str,
        ok_when: HoldInvoiceState,
    ) -> Result<(), LnError> {
        if !matches!(err, CallError::Rpc { .. }) {
            return Err(err.into_ln(what));
        }
        match plugin::lookup(&self.rpc, self.plugin, hash).await? {
            s if s == ok_when => Ok(()),
            HoldInvoiceState::Settled => Err(LnError::new(
                LnErrorKind::AlreadySettled,
                "invoice already settled",
            )),
            HoldInvoiceState::Canceled => Err(LnError::new(
                LnErrorKind::AlreadyCanceled,
                "invoice already canceled",
            )),
            _ => Err(err.into_ln(what)),
        }
    }

    /// The rows `method` (`listpays` / `listsendpays`) reports for `hash`.
    async fn pay_rows(
        &self,
        method: &str,
        key: &str,
        hash: &PaymentHash,
    ) -> Result<Vec<PayRow>, LnError> {
        let v = self
            .rpc
            .call(method, json!({ "payment_hash": hash.to_hex() }))
            .await
            .map_err(|e| e.into_ln(method))?;
        let rows = v.get(key).cloned().ok_or_else(|| {
            LnError::new(
                LnErrorKind::Other,
                format!("{method}: no `{key}` in the result"),
            )
        })?;
        serde_json::from_value(rows).map_err(|e| {
            LnError::new(
                LnErrorKind::Other,
                format!("{method}: unexpected result: {e}"),
            )
        })
    }

    /// The node's record for `hash`: `listpays` (the pay plugin's per-payment summary) and
    /// `listsendpays` (lightningd's own per-part table), both asked, either failing is an
    /// `Err`.
    async fn record(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        let pays = self.pay_rows("listpays", "pays", hash).await?;
        let parts = self.pay_rows("listsendpays", "payments", hash).await?;
        aggregate_status(&pays, &parts)
    }

    fn check_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError> {
        let d = decode_bolt11(bolt11)?;
        if d.network != self.network {
            return Err(LnError::new(
                LnErrorKind::WrongNetwork,
                format!(
                    "invoice is for {}, the node is on {}",
                    d.network.as_str(),
                    self.network.as_str()
                ),
            ));
        }
        Ok(d)
    }
}

/// A row of `listpays`, `listsendpays` or a `pay` result.
#[derive(Debug, Deserialize)]
struct PayRow {
    status: String,
    #[serde(default)]
    amount_msat: Option<u64>,
    #[serde(default)]
    amount_sent_msat: Option<u64>,
    /// `listsendpays` only: the payment group (one `pay` command) of the part.
    #[serde(default)]
    groupid: Option<u64>,
}

fn fee_of(amount_msat: Option<u64>, sent_msat: Option<u64>) -> Sats {
    match (amount_msat, sent_msat) {
        (Some(a), Some(s)) => Sats(s.saturating_sub(a).div_ceil(1000)),
        _ => Sats::ZERO,
    }
}

impl PayRow {
    fn fee(&self) -> Sats {
        fee_of(self.amount_msat, self.amount_sent_msat)
    }
}

/// What one payment-record status string means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowStatus {
    Complete,
    Pending,
    Failed,
}

fn row_status(s: &str) -> Option<RowStatus> {
    match s {
        "complete" => Some(RowStatus::Complete),
        "pending" => Some(RowStatus::Pending),
        "failed" => Some(RowStatus::Failed),
        _ => None,
    }
}

/// The status of a hash from its `listpays` rows (one per payment group) and `listsendpays`
/// rows (one per part): any complete gives `Succeeded` (fee from the `listpays` summary, or
/// the sum over the complete group's parts), else any pending gives `InFlight`, else any row
/// gives `Failed`, else `NotFound`. A status string this adapter does not know, with no
/// complete row, is an `Err`: the record cannot be read.
fn aggregate_status(pays: &[PayRow], parts: &[PayRow]) -> Result<PaymentStatus, LnError> {
    let complete = |r: &&PayRow| row_status(&r.status) == Some(RowStatus::Complete);
    if let Some(done) = pays.iter().find(complete) {
        return Ok(PaymentStatus::Succeeded { fee: done.fee() });
    }
    if let Some(first) = parts.iter().find(complete) {
        let group: Vec<&PayRow> = parts
            .iter()
            .filter(complete)
            .filter(|r| r.groupid == first.groupid)
            .collect();
        let sum = |f: fn(&PayRow) -> Option<u64>| {
            group
                .iter()
                .try_fold(0u64, |acc, r| f(r).map(|v| acc.saturating_add(v)))
        };
        return Ok(PaymentStatus::Succeeded {
            fee: fee_of(sum(|r| r.amount_msat), sum(|r| r.amount_sent_msat)),
        });
    }
    let mut pending = false;
    for r in pays.iter().chain(parts) {
        match row_status(&r.status) {
            Some(RowStatus::Pending) => pending = true,
            Some(_) => {},
            None => {
                return Err(LnError::new(
                    LnErrorKind::Other,
                    format!("unknown payment status {:?} in the node's record", r.status),
                ));
            },
        }
    }
    Ok(if pending {
        PaymentStatus::InFlight
    } else if pays.is_empty() && parts.is_empty() {
        PaymentStatus::NotFound
    } else {
        PaymentStatus::Failed {
            reason: format!(
                "every attempt failed ({} payment(s), {} part(s))",
                pays.len(),
                parts.len()
            ),
        }
    })
}

/// What an error answer of `pay` says about the payment, before the node's record is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayErrorClass {
    /// `200` `PAY_IN_PROGRESS`: a payment for the hash is pending.
    InFlight,
    /// `201` `PAY_RHASH_ALREADY_USED`, or any code whose message says "already paid" (`xpay`
    /// answers `218` `Already paid this invoice successfully`): the hash was paid before.
    /// Only the record can tell the fee, and whether it really succeeded.
    AlreadyPaid,
    /// A code of a payment that failed: `202`-`206`, `209`, `210`, `218`. Reported as failed
    /// only when the record then shows no pending and no complete attempt.
    Failed,
    /// Refused before anything was sent: `207` (expired), `-32602` (invalid parameters).
    Refused(LnErrorKind),
    /// The command is not served right now: `-32601` (unknown command: the node is starting
    /// or the plugin is (re)starting), `-4` (the plugin died before replying), `-5`
    /// (lightningd shutting down). Transient; the outcome is unknown.
    Unavailable,
    /// Anything else (`-1`, `-3`, `-32600`, `208`, `211`, unlisted codes): outcome unknown.
    Unknown,
}

/// Classifies an error answer of `pay` (see [`PayErrorClass`]).
#[must_use]
pub fn classify_pay_error(code: i64, message: &str) -> PayErrorClass {
    if message.to_ascii_lowercase().contains("already paid") {
        return PayErrorClass::AlreadyPaid;
    }
    match code {
        200 => PayErrorClass::InFlight,
        201 => PayErrorClass::AlreadyPaid,
        202..=206 | 209 | 210 | 218 => PayErrorClass::Failed,
        207 => PayErrorClass::Refused(LnErrorKind::Expired),
        -32602 => PayErrorClass::Refused(LnErrorKind::InvalidInvoice),
        -32601 | -4 | -5 => PayErrorClass::Unavailable,
        _ => PayErrorClass::Unknown,
    }
}

fn msat(s: Sats) -> Result<u64, LnError> {
    s.to_msats()
        .map(|m| m.0)
        .ok_or_else(|| LnError::new(LnErrorKind::Other, "amount overflow"))
}

/// Decodes a BOLT11 invoice locally with the shared decoder (signature checked, whole
/// satoshis only).
///
/// # Errors
/// `InvalidInvoice` when it does not parse, verify or fit.
pub fn decode_bolt11(s: &str) -> Result<DecodedInvoice, LnError> {
    mostro_bolt11::decode(s)
}

const DAYWALKER_CREATE: &str = "daywalker90's holdinvoice plugin cannot create a hold invoice \
    for a payment hash chosen by Mostro (it wraps CLN's `invoice`, which takes the preimage); \
    install BoltzExchange hold (https://github.com/BoltzExchange/hold)";

#[async_trait]
impl LightningNode for ClnNode {
    async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<String, LnError> {
        if self.plugin == HoldPlugin::Daywalker {
            return Err(LnError::new(LnErrorKind::Other, DAYWALKER_CREATE));
        }
        let existing = |entry: plugin::BoltzEntry| -> Result<String, LnError> {
            let d = decode_bolt11(&entry.invoice)?;
            if d.amount == Some(req.amount) {
                Ok(entry.invoice)
            } else {
                Err(LnError::new(
                    LnErrorKind::Conflict,
                    "a hold invoice with this hash exists with another amount",
                ))
            }
        };
        if let Some(entry) = plugin::boltz_entry(&self.rpc, &req.hash).await? {
            self.watch_new(req.hash, Some(entry.state()?));
            return existing(entry);
        }
        // `amount` is in msat. The extra named fields are honoured by plugin versions that
        // know them and ignored by older ones (serde skips unknown fields).
        let params = json!({
            "payment_hash": req.hash.to_hex(),
            "amount": msat(req.amount)?,
            "description": req.memo,
            "expiry": req.expiry_secs,
            "min_final_cltv_expiry": req.cltv_delta,
        });
        match self.rpc.call("holdinvoice", params).await {
            Ok(v) => {
                let bolt11 = v
                    .get("bolt11")
                    .or_else(|| v.get("invoice"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        LnError::new(LnErrorKind::Other, "holdinvoice: no bolt11 in the result")
                    })?
                    .to_owned();
                self.watch_new(req.hash, Some(HoldInvoiceState::Open));
                Ok(bolt11)
            },
            // A concurrent or earlier create may have won: the existing entry decides.
            Err(e @ CallError::Rpc { .. }) => {
                match plugin::boltz_entry(&self.rpc, &req.hash).await? {
                    Some(entry) => {
                        self.watch_new(req.hash, Some(entry.state()?));
                        existing(entry)
                    },
                    None => Err(e.into_ln("holdinvoice")),
                }
            },
            Err(e) => Err(e.into_ln("holdinvoice")),
        }
    }

    async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError> {
        let hash = preimage.hash();
        let r = match self.plugin {
            HoldPlugin::Boltz => {
                self.rpc
                    .call(
                        "settleholdinvoice",
                        json!({ "preimage": preimage.to_hex() }),
                    )
                    .await
            },
            HoldPlugin::Daywalker => {
                self.rpc
                    .call(
                        "holdinvoicesettle",
                        json!({ "payment_hash": hash.to_hex() }),
                    )
                    .await
            },
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.after_failure(&hash, e, "settle", HoldInvoiceState::Settled)
                    .await
            },
        }
    }

    async fn cancel_hold_invoice(&self, hash: &PaymentHash) -> Result<(), LnError> {
        let method = match self.plugin {
            HoldPlugin::Boltz => "cancelholdinvoice",
            HoldPlugin::Daywalker => "holdinvoicecancel",
        };
        match self
            .rpc
            .call(method, json!({ "payment_hash": hash.to_hex() }))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                self.after_failure(hash, e, "cancel", HoldInvoiceState::Canceled)
                    .await
            },
        }
    }

    async fn lookup_hold_invoice(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        let st = plugin::lookup(&self.rpc, self.plugin, hash).await?;
        if !matches!(st, HoldInvoiceState::Settled | HoldInvoiceState::Canceled) {
            // Watch it from now on (after a restart the engine looks up its open holds).
            self.watch_new(*hash, None);
        }
        Ok(st)
    }

    async fn next_event(&self) -> Result<NodeEvent, LnError> {
        self.events
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| LnError::new(LnErrorKind::Unreachable, "event poller stopped"))
    }

    async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError> {
        let gate = lock(&self.pay_locks).entry(req.hash).or_default().clone();
        let out = {
            let _one = gate.lock().await;
            self.pay_once(req).await
        };
        drop(gate);
        let mut locks = lock(&self.pay_locks);
        if locks
            .get(&req.hash)
            .is_some_and(|g| Arc::strong_count(g) == 1)
        {
            locks.remove(&req.hash);
        }
        out
    }

    async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        self.record(hash).await
    }

    async fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError> {
        self.check_invoice(bolt11)
    }

    async fn info(&self) -> Result<NodeInfo, LnError> {
        let i = get_info(&self.rpc).await?;
        let uris = i.address.iter().filter_map(|a| a.uri(&i.id)).collect();
        Ok(NodeInfo {
            network: cln_network(&i.network)?,
            block_height: BlockHeight(i.blockheight),
            alias: i.alias,
            pubkey: i.id,
            version: i.version,
            // Core Lightning reports its version (a git describe), no separate commit.
            commit_hash: String::new(),
            uris,
            chains: vec!["bitcoin".to_owned()],
        })
    }
}

impl ClnNode {
    async fn pay_once(&self, req: &PayRequest) -> Result<PayOutcome, LnError> {
        let d = self.check_invoice(&req.invoice)?;
        if d.hash != req.hash {
            return Err(LnError::new(
                LnErrorKind::InvalidInvoice,
                "hash does not match the invoice",
            ));
        }
        if let Some(a) = d.amount
            && a != req.amount
        {
            return Err(LnError::new(
                LnErrorKind::InvalidInvoice,
                "amount does not match the invoice",
            ));
        }
        if req.max_cltv == 0 {
            return Err(LnError::new(
                LnErrorKind::Other,
                "max_cltv must be positive",
            ));
        }
        // Never pay twice: a pending or complete attempt answers for itself.
        match self.record(&req.hash).await? {
            PaymentStatus::InFlight => return Ok(PayOutcome::InFlight),
            PaymentStatus::Succeeded { fee } => return Ok(PayOutcome::Succeeded { fee }),
            PaymentStatus::Failed { .. } | PaymentStatus::NotFound => {},
        }
        let mut params = json!({
            "bolt11": req.invoice,
            "maxfee": msat(req.fee_limit)?,
            "retry_for": req.timeout_secs,
            "maxdelay": req.max_cltv,
        });
        if d.amount.is_none() {
            params["amount_msat"] = json!(msat(req.amount)?);
        }
        let limit = Duration::from_secs(u64::from(req.timeout_secs)).saturating_add(self.pay_grace);
        match self.rpc.call_within("pay", params, limit, false).await {
            Ok(v) => {
                let row: PayRow = serde_json::from_value(v).map_err(|e| {
                    LnError::new(LnErrorKind::Other, format!("pay: unexpected result: {e}"))
                })?;
                match row_status(&row.status) {
                    Some(RowStatus::Complete) => Ok(PayOutcome::Succeeded { fee: row.fee() }),
                    Some(RowStatus::Pending) => Ok(PayOutcome::InFlight),
                    Some(RowStatus::Failed) => {
                        self.confirm_failure(&req.hash, "pay: status failed".to_owned())
                            .await
                    },
                    None => Err(LnError::new(
                        LnErrorKind::Other,
                        format!("pay: unknown status {:?}", row.status),
                    )),
                }
            },
            Err(CallError::Rpc { code, message }) => {
                let detail = format!("pay: error {code}: {message}");
                match classify_pay_error(code, &message) {
                    PayErrorClass::InFlight => Ok(PayOutcome::InFlight),
                    PayErrorClass::AlreadyPaid => match self.record(&req.hash).await? {
                        PaymentStatus::Succeeded { fee } => Ok(PayOutcome::Succeeded { fee }),
                        PaymentStatus::InFlight => Ok(PayOutcome::InFlight),
                        other => Err(LnError::new(
                            LnErrorKind::AlreadySettled,
                            format!("{detail} (the node's record says {other:?})"),
                        )),
                    },
                    PayErrorClass::Failed => self.confirm_failure(&req.hash, detail).await,
                    PayErrorClass::Refused(kind) => Err(LnError::new(kind, detail)),
                    PayErrorClass::Unavailable => {
                        Err(LnError::new(LnErrorKind::Unreachable, detail))
                    },
                    PayErrorClass::Unknown => Err(LnError::new(LnErrorKind::Other, detail)),
                }
            },
            // Not finished in time (or the answer was lost): only a pending or complete
            // record is an answer; earlier failed attempts say nothing about this one.
            Err(e) => match self.record(&req.hash).await {
                Ok(PaymentStatus::InFlight) => Ok(PayOutcome::InFlight),
                Ok(PaymentStatus::Succeeded { fee }) => Ok(PayOutcome::Succeeded { fee }),
                Ok(PaymentStatus::Failed { .. } | PaymentStatus::NotFound) | Err(_) => {
                    Err(e.into_ln("pay"))
                },
            },
        }
    }

    /// After `pay` answered a failure: `Failed` only when the record shows nothing pending
    /// or complete for the hash.
    async fn confirm_failure(
        &self,
        hash: &PaymentHash,
        reason: String,
    ) -> Result<PayOutcome, LnError> {
        Ok(match self.record(hash).await? {
            PaymentStatus::Failed { .. } | PaymentStatus::NotFound => PayOutcome::Failed { reason },
            PaymentStatus::InFlight => PayOutcome::InFlight,
            PaymentStatus::Succeeded { fee } => PayOutcome::Succeeded { fee },
        })
    }
}

/// Polls block height and watched invoices on its own connection; reports changes.
async fn poll_loop(
    rpc: Rpc,
    plugin: HoldPlugin,
    watch: Watch,
    tx: UnboundedSender<NodeEvent>,
    interval: Duration,
) {
    let mut height: Option<u32> = None;
    let mut down = false;
    loop {
        tokio::time::sleep(interval).await;
        match get_info(&rpc).await {
            Ok(i) => {
                if down {
                    tracing::info!("cln: node reachable again");
                    down = false;
                }
                if height != Some(i.blockheight) {
                    height = Some(i.blockheight);
                    if tx
                        .send(NodeEvent::Block(BlockHeight(i.blockheight)))
                        .is_err()
                    {
                        return;
                    }
                }
            },
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, "cln: poll failed, retrying");
                    down = true;
                }
                continue;
            },
        }
        let watched: Vec<(PaymentHash, Option<HoldInvoiceState>)> =
            lock(&watch).iter().map(|(h, s)| (*h, *s)).collect();
        for (hash, last) in watched {
            match plugin::lookup(&rpc, plugin, &hash).await {
                Ok(st) => {
                    if last == Some(st) {
                        continue;
                    }
                    {
                        let mut w = lock(&watch);
                        if matches!(st, HoldInvoiceState::Settled | HoldInvoiceState::Canceled) {
                            w.remove(&hash);
                        } else {
                            w.insert(hash, Some(st));
                        }
                    }
                    if tx.send(NodeEvent::Hold { hash, state: st }).is_err() {
                        return;
                    }
                },
                Err(e) if e.kind == LnErrorKind::NotFound => {
                    lock(&watch).remove(&hash);
                },
                Err(e) => {
                    tracing::debug!(error = %e, "cln: invoice poll failed");
                    break;
                },
            }
        }
    }
}

/// The default socket path of a node: `<lightning_dir>/<network>/lightning-rpc`.
pub fn default_socket(lightning_dir: &Path, network: Network) -> PathBuf {
    let sub = match network {
        Network::Mainnet => "bitcoin",
        Network::Testnet => "testnet",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    };
    lightning_dir.join(sub).join("lightning-rpc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_up_to_whole_sats() {
        assert_eq!(fee_of(Some(700_000), Some(701_000)), Sats(1));
        assert_eq!(fee_of(Some(700_000), Some(700_001)), Sats(1));
        assert_eq!(fee_of(Some(700_000), Some(700_000)), Sats(0));
        assert_eq!(fee_of(None, Some(1)), Sats(0));
    }

    /// Real CLN error codes and messages of `pay` (lightningd `sendpay`, the `pay` plugin,
    /// `xpay`) and how each is handled.
    #[test]
    fn pay_errors_are_classified_by_code_and_message() {
        use PayErrorClass as C;
        let cases: [(i64, &str, PayErrorClass); 17] = [
            (200, "Payment is still in progress", C::InFlight),
            (
                200,
                "Payment is pending with full amount already commited",
                C::InFlight,
            ),
            (
                201,
                "Already succeeded with amount 1200000msat",
                C::AlreadyPaid,
            ),
            (
                218,
                "Already paid this invoice successfully",
                C::AlreadyPaid,
            ),
            (
                203,
                "Destination said it doesn't know invoice: incorrect_or_unknown_payment_details",
                C::Failed,
            ),
            (205, "Could not find a route", C::Failed),
            (206, "Fee exceeds our fee budget", C::Failed),
            (210, "Ran out of routes to try after 3 attempts", C::Failed),
            (
                209,
                "Could not create payment onion: path too long!",
                C::Failed,
            ),
            (207, "Invoice expired", C::Refused(LnErrorKind::Expired)),
            (
                -32602,
                "Invalid bolt11: Invoice is for another network",
                C::Refused(LnErrorKind::InvalidInvoice),
            ),
            (-32601, "Unknown command 'pay'", C::Unavailable),
            (
                -4,
                "Plugin terminated before replying to RPC call.",
                C::Unavailable,
            ),
            (-5, "lightningd is shutting down", C::Unavailable),
            (-1, "Error retrieving previous pay attempts", C::Unknown),
            (211, "Payment status unexpected", C::Unknown),
            (
                -3,
                "Unexpected injectpaymentonion error 204: {}",
                C::Unknown,
            ),
        ];
        for (code, msg, want) in cases {
            assert_eq!(classify_pay_error(code, msg), want, "{code} {msg}");
        }
        assert_eq!(classify_pay_error(999, "whatever"), C::Unknown);
    }

    fn row(status: &str, amount: u64, sent: u64, group: Option<u64>) -> PayRow {
        PayRow {
            status: status.to_owned(),
            amount_msat: Some(amount),
            amount_sent_msat: Some(sent),
            groupid: group,
        }
    }

    #[test]
    fn the_record_aggregates_pays_and_parts() {
        assert_eq!(aggregate_status(&[], &[]).unwrap(), PaymentStatus::NotFound);
        let failed = [row("failed", 1000, 1000, Some(1))];
        assert!(matches!(
            aggregate_status(&failed, &failed).unwrap(),
            PaymentStatus::Failed { .. }
        ));
        // A pending part after a failed group is in flight, in either list.
        let parts = [
            row("failed", 1000, 1000, Some(1)),
            row("pending", 1000, 2000, Some(2)),
        ];
        assert_eq!(
            aggregate_status(&failed, &parts).unwrap(),
            PaymentStatus::InFlight
        );
        assert_eq!(
            aggregate_status(&[row("pending", 0, 0, None)], &[]).unwrap(),
            PaymentStatus::InFlight
        );
        // Complete wins over everything; the fee comes from the listpays summary...
        let pays = [
            row("failed", 5_000_000, 5_000_000, None),
            row("complete", 5_000_000, 5_002_500, None),
        ];
        assert_eq!(
            aggregate_status(&pays, &parts).unwrap(),
            PaymentStatus::Succeeded { fee: Sats(3) }
        );
        // ... or the sum over the complete group's parts (MPP), ignoring other groups.
        let mpp = [
            row("failed", 5_000_000, 5_009_000, Some(1)),
            row("complete", 2_000_000, 2_001_000, Some(2)),
            row("complete", 3_000_000, 3_002_000, Some(2)),
        ];
        assert_eq!(
            aggregate_status(&[], &mpp).unwrap(),
            PaymentStatus::Succeeded { fee: Sats(3) }
        );
        // A status this adapter does not know is no answer.
        assert_eq!(
            aggregate_status(&[row("settling", 1, 1, None)], &[])
                .unwrap_err()
                .kind,
            LnErrorKind::Other
        );
        // ... unless a complete attempt already says it all.
        assert!(matches!(
            aggregate_status(
                &[row("settling", 1, 1, None)],
                &[row("complete", 1000, 1000, Some(1))]
            )
            .unwrap(),
            PaymentStatus::Succeeded { fee: Sats(0) }
        ));
    }

    #[test]
    fn networks() {
        assert_eq!(cln_network("bitcoin").unwrap(), Network::Mainnet);
        assert_eq!(cln_network("regtest").unwrap(), Network::Regtest);
        assert_eq!(
            cln_network("liquid").unwrap_err().kind,
            LnErrorKind::WrongNetwork
        );
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(
            decode_bolt11("").unwrap_err().kind,
            LnErrorKind::InvalidInvoice
        );
        assert_eq!(
            decode_bolt11("lnbcrt1notaninvoice").unwrap_err().kind,
            LnErrorKind::InvalidInvoice
        );
    }
}
