//! A Core Lightning simulator speaking CLN's JSON-RPC 2.0 over a unix socket, with the methods
//! of a hold-invoice plugin, backed by the [`mostro_testkit::Ledger`].
//!
//! Framing is CLN's: every request and response is one compact JSON object followed by
//! `"\n\n"`, so `cln-rpc`'s codec talks to it unchanged. Requests on one connection are answered
//! in order, one at a time (as `cln-rpc` expects). Method names, positional and named parameter
//! names and result shapes follow CLN (`getinfo`, `help`, `decode`, `pay`, `listpays`,
//! `listsendpays`) and the plugin chosen with [`HoldPlugin`]: BoltzExchange `hold` by default,
//! daywalker90 `holdinvoice`, or none.
//!
//! The control surface is the ledger ([`ClnSim::ledger`]: sellers pay hold invoices, buyers
//! issue invoices, mining, faults, balances), per-method call counters ([`ClnSim::calls`]) and
//! [`ClnSim::stop`] / [`ClnSim::start`] on the same socket path (a node restart).
//!
//! Faults: [`mostro_testkit::Faults::unreachable`] makes the node drop every connection
//! without answering; `lose_next_reply` performs the call and never answers it (the client
//! times out); `fail_payments` and `hang_payments` shape `pay` as in the ledger;
//! `starting_up` answers every call with an error and performs nothing (see [`codes`]);
//! `ambiguous_pays` makes `pay` send the payment for real and then answer an uncategorized
//! error (`-1`); `lose_status_replies` leaves the next `listpays`/`listsendpays` unanswered.
//!
//! How a repeated `pay` of an already paid invoice is answered is chosen with
//! [`ClnSim::set_repeat_pay`] ([`RepeatPay`]), and [`ClnSim::race_next_pay`] lets another
//! client's payment of the same invoice land just before the next `pay` is handled.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bitcoin::hashes::{Hash as _, sha256};
use lightning_invoice::{Bolt11Invoice, Currency};
use mostro_core::machine::PayOutcome;
use mostro_core::ports::{
    HoldInvoiceRequest, HoldInvoiceState, LnError, LnErrorKind, Network, PayRequest,
};
use mostro_core::types::{PaymentHash, Preimage, Sats};
use mostro_testkit::ledger::{AttemptStatus, Ledger};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

/// Which hold-invoice plugin the simulated node has loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldPlugin {
    /// BoltzExchange `hold`: `holdinvoice`, `settleholdinvoice`, `cancelholdinvoice`,
    /// `listholdinvoices`.
    Boltz,
    /// daywalker90 `holdinvoice`: `holdinvoice`, `holdinvoicesettle`, `holdinvoicecancel`,
    /// `holdinvoicelookup`.
    Daywalker,
    /// No hold-invoice plugin.
    None,
}

/// How `pay` answers for an invoice whose payment already succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepeatPay {
    /// The legacy `pay` plugin: the earlier success is returned again as a result
    /// (`status: complete`), nothing is sent.
    #[default]
    Success,
    /// Error `201` `Already succeeded with amount ...`: what lightningd's `sendpay` answers
    /// when the earlier success had other parameters, and `pay` passes on.
    AlreadyUsed,
    /// Error `218` `Already paid this invoice successfully`: what `xpay` (also serving `pay`
    /// with `xpay-handle-pay`) answers when `injectpaymentonion` finds the hash paid.
    Xpay,
}

/// CLN's JSON-RPC error codes used by the simulator.
///
/// While [`mostro_testkit::Faults::starting_up`] is set, plugin commands (`pay`, `listpays`,
/// `decode`, the hold plugin's) answer [`METHOD_NOT_FOUND`] `Unknown command`, as lightningd
/// does for a command whose plugin is not (yet) registered, and lightningd's built-ins
/// (`getinfo`, `help`, `listsendpays`) answer [`LIGHTNINGD`] `lightningd is starting up`.
/// A real lightningd has no dedicated "starting" code: before its socket exists connections
/// fail (the `unreachable` fault), and a plugin that is not up yet has no commands. The
/// built-ins' error is the simulator's choice, so that no call answers while starting.
pub mod codes {
    /// Uncategorized lightningd error.
    pub const LIGHTNINGD: i64 = -1;
    /// A plugin died before replying.
    pub const PLUGIN_TERMINATED: i64 = -4;
    /// lightningd is shutting down.
    pub const LIGHTNINGD_SHUTDOWN: i64 = -5;
    /// JSON-RPC: method not found (`Unknown command`).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// JSON-RPC: invalid parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Generic plugin failure (what `cln_plugin` reports for an `Err` from a method).
    pub const PLUGIN_ERROR: i64 = -32600;
    /// `pay`: a payment for this hash is already in progress.
    pub const PAY_IN_PROGRESS: i64 = 200;
    /// `pay`/`sendpay`: the hash was already paid (with other parameters).
    pub const PAY_RHASH_ALREADY_USED: i64 = 201;
    /// `pay`: no route.
    pub const PAY_ROUTE_NOT_FOUND: i64 = 205;
    /// `pay`: the invoice expired.
    pub const PAY_INVOICE_EXPIRED: i64 = 207;
    /// `pay`: gave up after the attempts failed.
    pub const PAY_STOPPED_RETRYING: i64 = 210;
    /// `xpay`/`injectpaymentonion`: the payment failed (also "already paid").
    pub const PAY_INJECTPAYMENTONION_FAILED: i64 = 218;
    /// `invoice`: duplicate label or preimage.
    pub const INVOICE_LABEL_ALREADY_EXISTS: i64 = 900;
}

/// The socket file name inside the simulator's directory (as in `<lightning-dir>/<network>/`).
pub const SOCKET_NAME: &str = "lightning-rpc";

/// Defaults the BoltzExchange plugin would use when the caller does not pass them.
const DEFAULT_EXPIRY_SECS: u64 = 3600;
const DEFAULT_CLTV: u32 = 80;
/// How often a blocked `pay` re-checks its attempt in the ledger.
const PAY_POLL: Duration = Duration::from_millis(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

struct Shared {
    ledger: Ledger,
    plugin: HoldPlugin,
    dir: PathBuf,
    calls: Mutex<HashMap<String, u64>>,
    /// daywalker90 mode: preimages the node generated or was given (hash -> preimage).
    preimages: Mutex<HashMap<PaymentHash, Preimage>>,
    /// daywalker90 mode: used invoice labels.
    labels: Mutex<HashSet<String>>,
    /// Invoices seen by `pay`, for `listpays`/`listsendpays` (hash -> bolt11, created_at).
    paid: Mutex<HashMap<PaymentHash, (String, u64)>>,
    /// `maxdelay` of every `pay` call, in order (`None`: not given).
    maxdelays: Mutex<Vec<Option<u64>>>,
    repeat_pay: Mutex<RepeatPay>,
    /// Another client pays the invoice right before the next `pay` is handled.
    race_next_pay: Mutex<bool>,
}

/// A running (or stopped) simulated CLN node.
pub struct ClnSim {
    shared: Arc<Shared>,
    path: PathBuf,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ClnSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClnSim")
            .field("path", &self.path)
            .field("plugin", &self.shared.plugin)
            .finish_non_exhaustive()
    }
}

impl ClnSim {
    /// Starts a simulator listening on `<dir>/lightning-rpc`.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn start_in(dir: &Path, ledger: Ledger, plugin: HoldPlugin) -> std::io::Result<Self> {
        let sim = ClnSim {
            shared: Arc::new(Shared {
                ledger,
                plugin,
                dir: dir.to_path_buf(),
                calls: Mutex::new(HashMap::new()),
                preimages: Mutex::new(HashMap::new()),
                labels: Mutex::new(HashSet::new()),
                paid: Mutex::new(HashMap::new()),
                maxdelays: Mutex::new(Vec::new()),
                repeat_pay: Mutex::new(RepeatPay::default()),
                race_next_pay: Mutex::new(false),
            }),
            path: dir.join(SOCKET_NAME),
            server: Mutex::new(None),
        };
        sim.start()?;
        Ok(sim)
    }

    /// The unix socket path (what `ClnRpc::new` takes).
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The ledger behind the node (wallets, chain, faults).
    pub fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }

    /// The plugin mode.
    pub fn plugin(&self) -> HoldPlugin {
        self.shared.plugin
    }

    /// How many times `method` was called (since the simulator was created, across restarts).
    pub fn calls(&self, method: &str) -> u64 {
        lock(&self.shared.calls).get(method).copied().unwrap_or(0)
    }

    /// The `maxdelay` parameter of every `pay` call so far, in order (`None` when not given).
    pub fn pay_maxdelays(&self) -> Vec<Option<u64>> {
        lock(&self.shared.maxdelays).clone()
    }

    /// How a `pay` of an already paid invoice is answered.
    pub fn set_repeat_pay(&self, r: RepeatPay) {
        *lock(&self.shared.repeat_pay) = r;
    }

    /// Makes the next `pay` find its invoice just paid by another client (a payment that
    /// lands between a caller's `listpays` check and its `pay`). The race payment is made
    /// with the same amount and budget, then the `pay` is handled as usual.
    pub fn race_next_pay(&self) {
        *lock(&self.shared.race_next_pay) = true;
    }

    /// Whether the server is listening.
    pub fn is_running(&self) -> bool {
        lock(&self.server).is_some()
    }

    /// (Re)starts listening on the same socket path. No-op when running.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub fn start(&self) -> std::io::Result<()> {
        let mut server = lock(&self.server);
        if server.is_some() {
            return Ok(());
        }
        if self.path.exists() {
            std::fs::remove_file(&self.path)?;
        }
        let listener = UnixListener::bind(&self.path)?;
        *server = Some(tokio::spawn(serve(listener, self.shared.clone())));
        Ok(())
    }

    /// Stops the node: closes every connection and removes the socket file. The ledger keeps
    /// its state, so [`ClnSim::start`] brings the same node back.
    pub async fn stop(&self) {
        let handle = lock(&self.server).take();
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ClnSim {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.server).take() {
            h.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    // Dropping the set (when this task is aborted) aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => match acc {
                Ok((stream, _)) => {
                    if shared.ledger.faults().unreachable {
                        drop(stream);
                        continue;
                    }
                    conns.spawn(connection(stream, shared.clone()));
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cln-sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                },
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {},
        }
    }
}

fn frame_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

async fn connection(mut stream: UnixStream, shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(end) = frame_end(&buf) {
            let frame: Vec<u8> = buf.drain(..end.saturating_add(2)).collect();
            let body = frame.get(..end).unwrap_or_default();
            if body.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if shared.ledger.faults().unreachable {
                return; // the node is "down": drop the connection unanswered
            }
            let reply = match serde_json::from_slice::<Value>(body) {
                Ok(req) => handle(&shared, &req).await,
                Err(e) => Some(error_response(
                    &Value::Null,
                    -32700,
                    &format!("Parse error: {e}"),
                )),
            };
            let Some(reply) = reply else {
                continue; // reply lost: never answered
            };
            let mut out = reply.to_string().into_bytes();
            out.extend_from_slice(b"\n\n");
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
}

fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// What a method produces.
enum Reply {
    Ok(Value),
    Err(i64, String),
    /// The reply is lost (the call was performed).
    Silent,
}

fn rpc_err(code: i64, message: impl Into<String>) -> Reply {
    Reply::Err(code, message.into())
}

async fn handle(shared: &Shared, req: &Value) -> Option<Value> {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = Params::new(req.get("params"));
    {
        let mut calls = lock(&shared.calls);
        let n = calls.entry(method.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
    }
    let reply = if shared.ledger.faults().starting_up {
        starting_up(method)
    } else {
        dispatch(shared, method, &params).await
    };
    match reply {
        Reply::Ok(v) => Some(json!({"jsonrpc": "2.0", "id": id, "result": v})),
        Reply::Err(code, msg) => Some(error_response(&id, code, &msg)),
        Reply::Silent => None,
    }
}

/// Positional or named parameters.
struct Params {
    positional: Vec<Value>,
    named: Map<String, Value>,
}

impl Params {
    fn new(v: Option<&Value>) -> Self {
        match v {
            Some(Value::Array(a)) => Params {
                positional: a.clone(),
                named: Map::new(),
            },
            Some(Value::Object(o)) => Params {
                positional: Vec::new(),
                named: o.clone(),
            },
            _ => Params {
                positional: Vec::new(),
                named: Map::new(),
            },
        }
    }

    /// Parameter `name` at position `idx` (JSON `null` counts as absent).
    fn get(&self, idx: usize, name: &str) -> Option<&Value> {
        self.named
            .get(name)
            .or_else(|| self.positional.get(idx))
            .filter(|v| !v.is_null())
    }

    fn str(&self, idx: usize, name: &str) -> Option<&str> {
        self.get(idx, name).and_then(Value::as_str)
    }

    /// An unsigned integer given as a number or a numeric string.
    fn u64(&self, idx: usize, name: &str) -> Option<u64> {
        self.get(idx, name).and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim_end_matches("msat").parse().ok(),
            _ => None,
        })
    }
}

fn parse_hash(s: Option<&str>, name: &str) -> Result<PaymentHash, Reply> {
    let s = s.ok_or_else(|| {
        rpc_err(
            codes::INVALID_PARAMS,
            format!("missing required parameter: {name}"),
        )
    })?;
    PaymentHash::from_str(s).map_err(|_| {
        rpc_err(
            codes::INVALID_PARAMS,
            format!("{name}: should be a 32 byte hex value: invalid token '{s}'"),
        )
    })
}

/// The answer of a node that is starting up (see [`codes`]): nothing is performed.
fn starting_up(method: &str) -> Reply {
    match method {
        "getinfo" | "help" | "listsendpays" => rpc_err(
            codes::LIGHTNINGD,
            "lightningd is starting up (cln-sim starting_up)",
        ),
        _ => rpc_err(
            codes::METHOD_NOT_FOUND,
            format!("Unknown command '{method}'"),
        ),
    }
}

async fn dispatch(shared: &Shared, method: &str, p: &Params) -> Reply {
    let r = match (method, shared.plugin) {
        ("getinfo", _) => getinfo(shared),
        ("help", _) => Ok(help(shared)),
        ("decode", _) => decode(shared, p),
        ("pay", _) => return pay(shared, p).await,
        ("listpays", _) => return lost_status(shared, list_pays(shared, p, false)),
        ("listsendpays", _) => return lost_status(shared, list_pays(shared, p, true)),
        ("holdinvoice", HoldPlugin::Boltz) => boltz_create(shared, p),
        ("settleholdinvoice", HoldPlugin::Boltz) => boltz_settle(shared, p),
        ("cancelholdinvoice", HoldPlugin::Boltz) => boltz_cancel(shared, p),
        ("listholdinvoices", HoldPlugin::Boltz) => boltz_list(shared, p),
        ("holdinvoice", HoldPlugin::Daywalker) => Ok(dw_create(shared, p)),
        ("holdinvoicesettle", HoldPlugin::Daywalker) => Ok(dw_settle(shared, p)),
        ("holdinvoicecancel", HoldPlugin::Daywalker) => Ok(dw_cancel(shared, p)),
        ("holdinvoicelookup", HoldPlugin::Daywalker) => Ok(dw_lookup(shared, p)),
        _ => Err(rpc_err(
            codes::METHOD_NOT_FOUND,
            format!("Unknown command '{method}'"),
        )),
    };
    match r {
        Ok(v) => Reply::Ok(v),
        Err(e) => e,
    }
}

/// Applies `lose_status_replies` to a payment-record answer.
fn lost_status(shared: &Shared, r: Result<Value, Reply>) -> Reply {
    let mut f = shared.ledger.faults();
    if f.lose_status_replies > 0 {
        f.lose_status_replies = f.lose_status_replies.saturating_sub(1);
        shared.ledger.set_faults(f);
        return Reply::Silent;
    }
    match r {
        Ok(v) => Reply::Ok(v),
        Err(e) => e,
    }
}

/// Maps a ledger error that is not a domain answer: a lost reply stays silent.
fn ledger_err(e: &LnError, code: i64) -> Reply {
    match e.kind {
        LnErrorKind::Timeout => Reply::Silent,
        _ => rpc_err(code, e.message.clone()),
    }
}

fn cln_network(n: Network) -> &'static str {
    match n {
        Network::Mainnet => "bitcoin",
        Network::Testnet => "testnet",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

fn getinfo(shared: &Shared) -> Result<Value, Reply> {
    let info = shared.ledger.info().map_err(|e| ledger_err(&e, -1))?;
    Ok(json!({
        "id": info.pubkey,
        "alias": info.alias,
        "color": "023456",
        "num_peers": 1,
        "num_pending_channels": 0,
        "num_active_channels": 1,
        "num_inactive_channels": 0,
        "address": info
            .uris
            .iter()
            .filter_map(|u| u.split_once('@')?.1.rsplit_once(':'))
            .map(|(host, port)| json!({"type": "ipv4", "address": host, "port": port.parse::<u16>().unwrap_or(9735)}))
            .collect::<Vec<_>>(),
        "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": 19846}],
        "version": format!("v25.09-{}", info.version),
        "blockheight": info.block_height.0,
        "network": cln_network(info.network),
        "fees_collected_msat": 0,
        "lightning-dir": shared.dir.display().to_string(),
        "our_features": {"init": "08a0000a8a5961", "node": "88a0000a8a5961", "channel": "", "invoice": "02000002024100"},
    }))
}

fn plugin_commands(plugin: HoldPlugin) -> &'static [(&'static str, &'static str)] {
    match plugin {
        HoldPlugin::Boltz => &[
            ("listholdinvoices", "[payment_hash] [bolt11]"),
            ("holdinvoice", "payment_hash amount"),
            ("settleholdinvoice", "preimage"),
            ("cancelholdinvoice", "payment_hash"),
        ],
        HoldPlugin::Daywalker => &[
            (
                "holdinvoice",
                "amount_msat label description [expiry] [fallbacks] [preimage] cltv [deschashonly]",
            ),
            ("holdinvoicesettle", "payment_hash"),
            ("holdinvoicecancel", "payment_hash"),
            ("holdinvoicelookup", "payment_hash"),
        ],
        HoldPlugin::None => &[],
    }
}

fn help(shared: &Shared) -> Value {
    let builtin: [(&str, &str); 6] = [
        ("getinfo", ""),
        ("help", "[command]"),
        ("decode", "string"),
        (
            "pay",
            "bolt11 [amount_msat] [label] [riskfactor] [maxfeepercent] [retry_for] [maxdelay] [exemptfee] [localinvreqid] [exclude] [maxfee] [description] [partial_msat]",
        ),
        (
            "listpays",
            "[bolt11] [payment_hash] [status] [index] [start] [limit]",
        ),
        (
            "listsendpays",
            "[bolt11] [payment_hash] [status] [index] [start] [limit]",
        ),
    ];
    let help: Vec<Value> = builtin
        .iter()
        .chain(plugin_commands(shared.plugin).iter())
        .map(|(name, usage)| {
            let command = if usage.is_empty() {
                (*name).to_owned()
            } else {
                format!("{name} {usage}")
            };
            json!({"command": command, "category": "plugin", "description": name, "verbose": name})
        })
        .collect();
    json!({"help": help, "format-hint": "simple"})
}

fn currency_prefix(c: &Currency) -> &'static str {
    match c {
        Currency::Bitcoin => "bc",
        Currency::BitcoinTestnet => "tb",
        Currency::Signet => "tbs",
        Currency::Regtest => "bcrt",
        Currency::Simnet => "sb",
    }
}

fn network_of(c: &Currency) -> Network {
    match c {
        Currency::Bitcoin => Network::Mainnet,
        Currency::BitcoinTestnet => Network::Testnet,
        Currency::Signet => Network::Signet,
        Currency::Regtest | Currency::Simnet => Network::Regtest,
    }
}

fn parse_invoice(s: &str) -> Result<Bolt11Invoice, String> {
    let inv = Bolt11Invoice::from_str(s.trim()).map_err(|e| format!("Unparsable invoice: {e}"))?;
    inv.check_signature()
        .map_err(|e| format!("Invalid invoice signature: {e}"))?;
    Ok(inv)
}

fn decode(_shared: &Shared, p: &Params) -> Result<Value, Reply> {
    let s = p
        .str(0, "string")
        .ok_or_else(|| rpc_err(codes::INVALID_PARAMS, "missing required parameter: string"))?;
    let inv =
        parse_invoice(s).map_err(|m| rpc_err(codes::INVALID_PARAMS, format!("string: {m}")))?;
    let mut out = json!({
        "type": "bolt11 invoice",
        "valid": true,
        "currency": currency_prefix(&inv.currency()),
        "created_at": inv.duration_since_epoch().as_secs(),
        "expiry": inv.expiry_time().as_secs(),
        "payee": hex::encode(inv.recover_payee_pub_key().serialize()),
        "payment_hash": hex::encode(inv.payment_hash().as_byte_array()),
        "signature": hex::encode(inv.clone().into_signed_raw().signature().0.serialize_compact().1),
        "min_final_cltv_expiry": inv.min_final_cltv_expiry_delta(),
        "payment_secret": hex::encode(inv.payment_secret().0),
    });
    if let Some(m) = inv.amount_milli_satoshis() {
        out["amount_msat"] = json!(m);
    }
    if let lightning_invoice::Bolt11InvoiceDescriptionRef::Direct(d) = inv.description() {
        out["description"] = json!(d.to_string());
    }
    Ok(out)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn pay(shared: &Shared, p: &Params) -> Reply {
    let Some(bolt11) = p.str(0, "bolt11") else {
        return rpc_err(codes::INVALID_PARAMS, "missing required parameter: bolt11");
    };
    let inv = match parse_invoice(bolt11) {
        Ok(i) => i,
        Err(m) => return rpc_err(codes::INVALID_PARAMS, format!("Invalid bolt11: {m}")),
    };
    let network = shared.ledger.network();
    if network_of(&inv.currency()) != network {
        return rpc_err(
            codes::INVALID_PARAMS,
            format!(
                "Invalid bolt11: Invoice is for another network {}",
                currency_prefix(&inv.currency())
            ),
        );
    }
    let hash = PaymentHash(*inv.payment_hash().as_byte_array());
    let amount_msat = match (inv.amount_milli_satoshis(), p.u64(1, "amount_msat")) {
        (Some(_), Some(_)) => {
            return rpc_err(codes::INVALID_PARAMS, "amount_msat parameter unnecessary");
        },
        (None, None) => return rpc_err(codes::INVALID_PARAMS, "amount_msat parameter required"),
        (Some(a), None) | (None, Some(a)) => a,
    };
    if amount_msat % 1000 != 0 {
        return rpc_err(-1, "cln-sim pays whole satoshis only");
    }
    let amount = Sats(amount_msat / 1000);
    // CLN's default fee budget: 0.5% with 5 sat exempt.
    let maxfee_msat = p
        .u64(10, "maxfee")
        .unwrap_or_else(|| (amount_msat / 200).max(5000));
    let retry_for = p.u64(5, "retry_for").unwrap_or(60);
    // CLN's default `maxdelay` is its `max-locktime-blocks` (2016).
    let maxdelay = p.u64(6, "maxdelay");
    lock(&shared.maxdelays).push(maxdelay);
    let max_cltv = u32::try_from(maxdelay.unwrap_or(2016)).unwrap_or(u32::MAX);
    let req = PayRequest {
        invoice: bolt11.to_owned(),
        hash,
        amount,
        fee_limit: Sats(maxfee_msat / 1000),
        timeout_secs: u32::try_from(retry_for).unwrap_or(u32::MAX),
        max_cltv,
    };
    if std::mem::take(&mut *lock(&shared.race_next_pay)) {
        // Another client's payment of the same invoice lands first.
        lock(&shared.paid)
            .entry(hash)
            .or_insert_with(|| (bolt11.to_owned(), now_secs()));
        let _ = shared.ledger.pay(&req);
    }
    let existing = shared.ledger.attempts(&hash);
    if existing.iter().any(|a| a.status == AttemptStatus::InFlight) {
        return rpc_err(
            codes::PAY_IN_PROGRESS,
            "Already have pending payment for this payment_hash",
        );
    }
    if existing
        .iter()
        .any(|a| matches!(a.status, AttemptStatus::Succeeded(_)))
    {
        match *lock(&shared.repeat_pay) {
            RepeatPay::Success => {},
            RepeatPay::AlreadyUsed => {
                return rpc_err(
                    codes::PAY_RHASH_ALREADY_USED,
                    format!("Already succeeded with amount {amount_msat}msat"),
                );
            },
            RepeatPay::Xpay => {
                return rpc_err(
                    codes::PAY_INJECTPAYMENTONION_FAILED,
                    "Already paid this invoice successfully",
                );
            },
        }
    }
    // The route's total CLTV is the final hop's delta (one direct channel in the simulator).
    let final_cltv = u32::try_from(inv.min_final_cltv_expiry_delta()).unwrap_or(u32::MAX);
    if max_cltv < final_cltv {
        return rpc_err(
            codes::PAY_ROUTE_NOT_FOUND,
            format!("No path found: maxdelay {max_cltv} is below the final CLTV {final_cltv}"),
        );
    }
    lock(&shared.paid)
        .entry(hash)
        .or_insert_with(|| (bolt11.to_owned(), now_secs()));
    let before = existing.len();
    let outcome = match shared.ledger.pay(&req) {
        Ok(o) => o,
        Err(e) => {
            return match e.kind {
                LnErrorKind::Expired => rpc_err(codes::PAY_INVOICE_EXPIRED, "Invoice expired"),
                LnErrorKind::InvalidInvoice | LnErrorKind::WrongNetwork => rpc_err(
                    codes::INVALID_PARAMS,
                    format!("Invalid bolt11: {}", e.message),
                ),
                // `ambiguous_pays`: the payment happened, the answer is uncategorized.
                _ => ledger_err(&e, codes::LIGHTNINGD),
            };
        },
    };
    let outcome = match outcome {
        // CLN's `pay` does not return while an HTLC is in flight: wait for the attempt.
        PayOutcome::InFlight => loop {
            tokio::time::sleep(PAY_POLL).await;
            let attempts = shared.ledger.attempts(&hash);
            match attempts.get(before).map(|a| a.status.clone()) {
                Some(AttemptStatus::InFlight) | None => {},
                Some(AttemptStatus::Succeeded(fee)) => break PayOutcome::Succeeded { fee },
                Some(AttemptStatus::Failed(reason)) => break PayOutcome::Failed { reason },
            }
        },
        o => o,
    };
    let payee = hex::encode(inv.recover_payee_pub_key().serialize());
    match outcome {
        PayOutcome::Succeeded { fee } => {
            let sent = amount.0.saturating_add(fee.0).saturating_mul(1000);
            Reply::Ok(json!({
                "destination": payee,
                "payment_hash": hash.to_hex(),
                "created_at": now_secs(),
                "parts": 1,
                "amount_msat": amount_msat,
                "amount_sent_msat": sent,
                "payment_preimage": hex::encode([0u8; 32]),
                "status": "complete",
            }))
        },
        PayOutcome::Failed { reason } => rpc_err(
            codes::PAY_STOPPED_RETRYING,
            format!("Ran out of routes to try after 1 attempt: {reason}"),
        ),
        PayOutcome::InFlight => rpc_err(codes::LIGHTNINGD, "unreachable: still in flight"),
        PayOutcome::Unknown { reason } => rpc_err(codes::LIGHTNINGD, reason),
    }
}

fn list_pays(shared: &Shared, p: &Params, sendpays: bool) -> Result<Value, Reply> {
    let by_bolt11 = match p.str(0, "bolt11") {
        Some(b) => Some(
            parse_invoice(b)
                .map(|i| PaymentHash(*i.payment_hash().as_byte_array()))
                .map_err(|m| rpc_err(codes::INVALID_PARAMS, format!("bolt11: {m}")))?,
        ),
        None => None,
    };
    let by_hash = match p.str(1, "payment_hash") {
        Some(h) => Some(parse_hash(Some(h), "payment_hash")?),
        None => None,
    };
    let status_filter = p.str(2, "status").map(str::to_owned);
    let mut all = shared.ledger.all_attempts();
    all.sort_by_key(|(h, _)| *h);
    let paid = lock(&shared.paid).clone();
    let mut rows = Vec::new();
    let mut index: u64 = 0;
    for (hash, attempt) in all {
        index = index.saturating_add(1);
        if by_bolt11.is_some_and(|h| h != hash) || by_hash.is_some_and(|h| h != hash) {
            continue;
        }
        let status = match &attempt.status {
            AttemptStatus::InFlight => "pending",
            AttemptStatus::Succeeded(_) => "complete",
            AttemptStatus::Failed(_) => "failed",
        };
        if status_filter.as_deref().is_some_and(|s| s != status) {
            continue;
        }
        let (bolt11, created_at) = paid
            .get(&hash)
            .cloned()
            .unwrap_or_else(|| (String::new(), now_secs()));
        let amount_msat = attempt.amount.0.saturating_mul(1000);
        let fee = match attempt.status {
            AttemptStatus::Succeeded(f) => f.0,
            _ => 0,
        };
        let sent = attempt.amount.0.saturating_add(fee).saturating_mul(1000);
        let mut row = json!({
            "created_index": index,
            "payment_hash": hash.to_hex(),
            "status": status,
            "created_at": created_at,
            "amount_msat": amount_msat,
            "amount_sent_msat": sent,
        });
        if !bolt11.is_empty() {
            row["bolt11"] = json!(bolt11);
        }
        if status == "complete" {
            row["completed_at"] = json!(created_at);
            let key = if sendpays {
                "payment_preimage"
            } else {
                "preimage"
            };
            row[key] = json!(hex::encode([0u8; 32]));
        }
        if sendpays {
            row["id"] = json!(index);
            row["groupid"] = json!(index);
            row["partid"] = json!(0);
        } else {
            row["number_of_parts"] = json!(1);
        }
        rows.push(row);
    }
    Ok(if sendpays {
        json!({ "payments": rows })
    } else {
        json!({ "pays": rows })
    })
}

// ---- BoltzExchange `hold` ----

fn boltz_state(s: HoldInvoiceState) -> &'static str {
    match s {
        HoldInvoiceState::Open => "unpaid",
        HoldInvoiceState::Accepted { .. } => "accepted",
        HoldInvoiceState::Settled => "paid",
        HoldInvoiceState::Canceled => "cancelled",
    }
}

fn boltz_create(shared: &Shared, p: &Params) -> Result<Value, Reply> {
    let hash = parse_hash(p.str(0, "payment_hash"), "payment_hash")?;
    let amount_msat = p
        .u64(1, "amount")
        .ok_or_else(|| rpc_err(codes::PLUGIN_ERROR, "could not parse request"))?;
    if amount_msat % 1000 != 0 || amount_msat == 0 {
        return Err(rpc_err(
            codes::PLUGIN_ERROR,
            "cln-sim: hold invoice amounts are whole satoshis",
        ));
    }
    if shared.ledger.hold(&hash).is_some() {
        return Err(rpc_err(
            codes::PLUGIN_ERROR,
            "UNIQUE constraint failed: invoices.payment_hash",
        ));
    }
    // Named extras (a newer plugin's optional fields); the old plugin ignores unknown names.
    let memo = p
        .named
        .get("description")
        .or_else(|| p.named.get("memo"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let expiry_secs = p
        .named
        .get("expiry")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_EXPIRY_SECS);
    let cltv_delta = p
        .named
        .get("min_final_cltv_expiry")
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(DEFAULT_CLTV);
    let req = HoldInvoiceRequest {
        hash,
        amount: Sats(amount_msat / 1000),
        expiry_secs,
        cltv_delta,
        memo,
    };
    let bolt11 = shared
        .ledger
        .create_hold(&req)
        .map_err(|e| ledger_err(&e, codes::PLUGIN_ERROR))?;
    Ok(json!({ "bolt11": bolt11 }))
}

fn boltz_settle(shared: &Shared, p: &Params) -> Result<Value, Reply> {
    let pre = p
        .str(0, "preimage")
        .and_then(|s| Preimage::from_str(s).ok())
        .ok_or_else(|| rpc_err(codes::PLUGIN_ERROR, "could not parse request"))?;
    match shared.ledger.settle(&pre) {
        Ok(()) => Ok(json!({})),
        Err(e) => Err(match e.kind {
            LnErrorKind::NotFound => rpc_err(codes::PLUGIN_ERROR, "invoice not found"),
            LnErrorKind::AlreadyCanceled => {
                rpc_err(codes::PLUGIN_ERROR, "state cancelled is final")
            },
            LnErrorKind::Other => rpc_err(
                codes::PLUGIN_ERROR,
                "invoice state transition (unpaid -> paid)",
            ),
            _ => ledger_err(&e, codes::PLUGIN_ERROR),
        }),
    }
}

fn boltz_cancel(shared: &Shared, p: &Params) -> Result<Value, Reply> {
    let hash = parse_hash(p.str(0, "payment_hash"), "payment_hash")
        .map_err(|_| rpc_err(codes::PLUGIN_ERROR, "could not parse request"))?;
    match shared.ledger.cancel(&hash) {
        Ok(()) => Ok(json!({})),
        Err(e) => Err(match e.kind {
            LnErrorKind::NotFound => rpc_err(codes::PLUGIN_ERROR, "invoice not found"),
            LnErrorKind::AlreadySettled => rpc_err(codes::PLUGIN_ERROR, "state paid is final"),
            _ => ledger_err(&e, codes::PLUGIN_ERROR),
        }),
    }
}

fn boltz_list(shared: &Shared, p: &Params) -> Result<Value, Reply> {
    let by_hash = match p.str(0, "payment_hash") {
        Some(h) => Some(parse_hash(Some(h), "payment_hash")?),
        None => None,
    };
    let by_invoice = match p
        .str(1, "invoice")
        .or_else(|| p.named.get("bolt11").and_then(Value::as_str))
    {
        Some(b) => Some(
            parse_invoice(b)
                .map(|i| PaymentHash(*i.payment_hash().as_byte_array()))
                .map_err(|m| rpc_err(codes::PLUGIN_ERROR, m))?,
        ),
        None => None,
    };
    if by_hash.is_some() && by_invoice.is_some() {
        return Err(rpc_err(codes::PLUGIN_ERROR, "too many parameters"));
    }
    let filter = by_hash.or(by_invoice);
    let mut holds = shared.ledger.holds();
    holds.sort_by_key(|(h, _)| *h);
    let mut out = Vec::new();
    let mut id: i64 = 0;
    for (hash, rec) in holds {
        id = id.saturating_add(1);
        if filter.is_some_and(|f| f != hash) {
            continue;
        }
        let msat = rec.amount.0.saturating_mul(1000);
        let htlc_state = match rec.state {
            HoldInvoiceState::Open => None,
            HoldInvoiceState::Accepted { .. } => Some("accepted"),
            HoldInvoiceState::Settled => Some("paid"),
            HoldInvoiceState::Canceled => rec.payer.as_ref().map(|_| "cancelled"),
        };
        let expiry = match rec.state {
            HoldInvoiceState::Accepted { htlc_expiry } => htlc_expiry.map(|h| h.0),
            _ => None,
        };
        let htlcs: Vec<Value> = htlc_state
            .map(|st| {
                json!({
                    "id": id,
                    "invoice_id": id,
                    "state": st,
                    "scid": "103x1x0",
                    "channel_id": 0,
                    "msat": msat,
                    "cltv_expiry": expiry,
                    "created_at": "2026-01-01T00:00:00",
                })
            })
            .into_iter()
            .collect();
        out.push(json!({
            "id": id,
            "payment_hash": hash.to_hex(),
            "invoice": rec.bolt11,
            "state": boltz_state(rec.state),
            "created_at": "2026-01-01T00:00:00",
            "htlcs": htlcs,
        }));
    }
    Ok(json!({ "holdinvoices": out }))
}

// ---- daywalker90 `holdinvoice` (errors come back as *results* `{code, message}`) ----

fn dw_error(code: i64, message: String) -> Value {
    json!({ "code": code, "message": message })
}

fn dw_state(s: HoldInvoiceState) -> &'static str {
    match s {
        HoldInvoiceState::Open => "OPEN",
        HoldInvoiceState::Accepted { .. } => "ACCEPTED",
        HoldInvoiceState::Settled => "SETTLED",
        HoldInvoiceState::Canceled => "CANCELED",
    }
}

const DW_KEYS: [&str; 8] = [
    "amount_msat",
    "label",
    "description",
    "expiry",
    "fallbacks",
    "preimage",
    "cltv",
    "deschashonly",
];

fn dw_create(shared: &Shared, p: &Params) -> Value {
    if let Some(k) = p.named.keys().find(|k| !DW_KEYS.contains(&k.as_str())) {
        return dw_error(-1, format!("Invalid argument: '{k}'"));
    }
    let get = |name: &str| {
        let idx = DW_KEYS
            .iter()
            .position(|k| *k == name)
            .unwrap_or(usize::MAX);
        p.get(idx, name)
    };
    for required in ["amount_msat", "label", "description", "cltv"] {
        if get(required).is_none() {
            return dw_error(
                codes::INVALID_PARAMS,
                format!("missing required parameter: {required}"),
            );
        }
    }
    let idx = |name: &str| {
        DW_KEYS
            .iter()
            .position(|k| *k == name)
            .unwrap_or(usize::MAX)
    };
    let Some(amount_msat) = p.u64(idx("amount_msat"), "amount_msat") else {
        return dw_error(
            codes::INVALID_PARAMS,
            "amount_msat: should be an unsigned 64 bit integer".to_owned(),
        );
    };
    if amount_msat % 1000 != 0 || amount_msat == 0 {
        return dw_error(
            -1,
            "cln-sim: hold invoice amounts are whole satoshis".to_owned(),
        );
    }
    let label = match get("label") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let description = get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let expiry_secs = p.u64(idx("expiry"), "expiry").unwrap_or(604_800);
    let cltv = p
        .u64(idx("cltv"), "cltv")
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(DEFAULT_CLTV);
    if !lock(&shared.labels).insert(label.clone()) {
        return dw_error(
            codes::INVOICE_LABEL_ALREADY_EXISTS,
            format!("Duplicate label '{label}'"),
        );
    }
    let preimage = match get("preimage").and_then(Value::as_str) {
        Some(s) => match Preimage::from_str(s) {
            Ok(p) => p,
            Err(_) => {
                return dw_error(
                    codes::INVALID_PARAMS,
                    format!("preimage: should be a 32 byte hex value: invalid token '{s}'"),
                );
            },
        },
        None => Preimage(
            sha256::Hash::hash(format!("cln-sim preimage {label}").as_bytes()).to_byte_array(),
        ),
    };
    let hash = preimage.hash();
    if shared.ledger.hold(&hash).is_some() {
        return dw_error(
            codes::INVOICE_LABEL_ALREADY_EXISTS,
            "preimage already used".to_owned(),
        );
    }
    let req = HoldInvoiceRequest {
        hash,
        amount: Sats(amount_msat / 1000),
        expiry_secs,
        cltv_delta: cltv,
        memo: description,
    };
    match shared.ledger.create_hold(&req) {
        Ok(bolt11) => {
            lock(&shared.preimages).insert(hash, preimage);
            json!({
                "bolt11": bolt11,
                "payment_hash": hash.to_hex(),
                "payment_secret": hex::encode([42u8; 32]),
                "expires_at": now_secs().saturating_add(expiry_secs),
                "created_index": lock(&shared.preimages).len(),
            })
        },
        Err(e) => dw_error(-1, e.message),
    }
}

fn dw_hash(p: &Params) -> Result<PaymentHash, Value> {
    let Some(s) = p.str(0, "payment_hash") else {
        return Err(dw_error(
            codes::INVALID_PARAMS,
            "missing required parameter: payment_hash".to_owned(),
        ));
    };
    PaymentHash::from_str(s).map_err(|_| {
        dw_error(
            codes::INVALID_PARAMS,
            format!("payment_hash: should be a 32 byte hex value: invalid token '{s}'"),
        )
    })
}

fn dw_missing(hash: &PaymentHash) -> Value {
    dw_error(
        codes::INVALID_PARAMS,
        format!("payment_hash '{hash}' not found"),
    )
}

fn dw_wrong_state(s: HoldInvoiceState) -> Value {
    dw_error(
        codes::INVALID_PARAMS,
        format!("Holdinvoice is in wrong state: '{}'", dw_state(s)),
    )
}

fn dw_settle(shared: &Shared, p: &Params) -> Value {
    let hash = match dw_hash(p) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let pre = lock(&shared.preimages).get(&hash).copied();
    let (Some(pre), Some(rec)) = (pre, shared.ledger.hold(&hash)) else {
        return dw_missing(&hash);
    };
    if !matches!(rec.state, HoldInvoiceState::Accepted { .. }) {
        return dw_wrong_state(rec.state);
    }
    match shared.ledger.settle(&pre) {
        Ok(()) => json!({ "state": "SETTLED" }),
        Err(e) => dw_error(-1, e.message),
    }
}

fn dw_cancel(shared: &Shared, p: &Params) -> Value {
    let hash = match dw_hash(p) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let Some(rec) = shared.ledger.hold(&hash) else {
        return dw_missing(&hash);
    };
    if !matches!(
        rec.state,
        HoldInvoiceState::Open | HoldInvoiceState::Accepted { .. }
    ) {
        return dw_wrong_state(rec.state);
    }
    match shared.ledger.cancel(&hash) {
        Ok(()) => json!({ "state": "CANCELED" }),
        Err(e) => dw_error(-1, e.message),
    }
}

fn dw_lookup(shared: &Shared, p: &Params) -> Value {
    let hash = match dw_hash(p) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let Some(rec) = shared.ledger.hold(&hash) else {
        return dw_missing(&hash);
    };
    let htlc_expiry = match rec.state {
        HoldInvoiceState::Accepted { htlc_expiry } => htlc_expiry.map(|h| h.0),
        _ => None,
    };
    let mut out = json!({ "state": dw_state(rec.state) });
    if let Some(e) = htlc_expiry {
        out["htlc_expiry"] = json!(e);
    }
    out
}

/// The wall clock, for the `cln-sim` binary (tests use `mostro_testkit::ManualClock`).
pub use mostro_testkit::SystemClock;
