//! An LND-protocol simulator: a gRPC server over TLS that speaks LND's wire protocol (the
//! `lnrpc.Lightning`, `invoicesrpc.Invoices` and `routerrpc.Router` methods the Mostro adapter
//! uses) in front of the shared [`mostro_testkit::Ledger`].
//!
//! The message types are fedimint-tonic-lnd's; only the server traits are generated here, from
//! skeleton `.proto` files (see `build.rs`). The control surface is the Rust API of [`LndSim`]:
//! wallets, chain and faults live on the ledger ([`LndSim::ledger`]); wire faults (dropping
//! invoice streams, restarting the node, the start-up phases) live on the handle.
//!
//! # Faults as LND shows them
//! - Starting up ([`mostro_testkit::Faults::starting_up`], [`LndSim::set_starting_up`],
//!   [`LndSim::set_startup_phase`], [`LndSim::restart_starting_up`]): every call is refused
//!   before it does anything, with LND's RPC-state answers (gRPC `Unknown`): "waiting to
//!   start, RPC services not available", "wallet locked, unlock it to enable full RPC access",
//!   then "the RPC server is in the process of starting up, but not yet ready to accept calls"
//!   (while the sub-servers, `routerrpc` and `invoicesrpc`, still answer "waiting to start").
//! - `ambiguous_pays`: `SendPaymentV2` starts the payment for real and then answers gRPC
//!   `Unknown` with a message no adapter can recognize.
//! - `TrackPaymentV2` answers from [`Ledger::payment_status`]; no record is LND's gRPC
//!   `NotFound` "payment isn't initiated".
//! - `cltv_limit` of every `SendPaymentV2` is recorded ([`LndSim::cltv_limits`]) and bounds the
//!   route: below the invoice's final CLTV delta the payment fails with no route.
#![warn(missing_docs)]
#![allow(
    clippy::result_large_err,
    reason = "tonic::Status is the error type of the server traits"
)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc};
use futures::StreamExt;
use mostro_core::ports::{
    HoldInvoiceRequest, HoldInvoiceState, LnError, LnErrorKind, NodeEvent, PayRequest,
    PaymentStatus,
};
use mostro_core::types::{PaymentHash, Preimage, Sats};
use mostro_testkit::Ledger;
use mostro_testkit::ledger::{Attempt, AttemptStatus, Faults, decode_bolt11};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
mod gen_lnrpc {
    tonic::include_proto!("lnrpc");
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
mod gen_invoicesrpc {
    tonic::include_proto!("invoicesrpc");
}
#[allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]
mod gen_routerrpc {
    tonic::include_proto!("routerrpc");
}

use gen_invoicesrpc::invoices_server::{Invoices, InvoicesServer};
use gen_lnrpc::lightning_server::{Lightning, LightningServer};
use gen_routerrpc::router_server::{Router, RouterServer};

/// The wall clock, for the binary.
pub use mostro_testkit::SystemClock;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Maps a ledger error to the status LND would answer with (code and message text).
fn status(e: &LnError) -> Status {
    match e.kind {
        LnErrorKind::Unreachable => Status::unavailable("connection refused (simulated)"),
        LnErrorKind::Timeout => Status::deadline_exceeded("reply lost (simulated)"),
        LnErrorKind::Auth => Status::unauthenticated("permission denied"),
        LnErrorKind::NotFound => Status::not_found("unable to locate invoice"),
        LnErrorKind::AlreadySettled => Status::unknown("invoice already settled"),
        LnErrorKind::AlreadyCanceled => Status::unknown("invoice already canceled"),
        LnErrorKind::InvalidInvoice => Status::invalid_argument(e.message.clone()),
        LnErrorKind::WrongNetwork => Status::unknown("invoice not for current active network"),
        LnErrorKind::Expired => Status::unknown("invoice expired"),
        LnErrorKind::Conflict => Status::unknown("invoice with payment hash already exists"),
        LnErrorKind::Other => Status::unknown(e.message.clone()),
    }
}

fn hash_from(bytes: &[u8]) -> Result<PaymentHash, Status> {
    <[u8; 32]>::try_from(bytes)
        .map(PaymentHash)
        .map_err(|_| Status::invalid_argument("payment hash must be exactly 32 bytes"))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A phase of LND's start-up, as its RPC-state interceptor answers during it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupPhase {
    /// The daemon runs but no RPC service is registered yet.
    WaitingToStart,
    /// The wallet is locked (waiting for `unlock`).
    WalletLocked,
    /// The wallet is unlocked and the RPC server is starting.
    RpcStarting,
}

/// LND's `ErrWaitingToStart`.
pub const MSG_WAITING_TO_START: &str = "waiting to start, RPC services not available";
/// LND's `ErrWalletLocked`.
pub const MSG_WALLET_LOCKED: &str = "wallet locked, unlock it to enable full RPC access";
/// LND's `ErrRPCStarting`.
pub const MSG_RPC_STARTING: &str =
    "the RPC server is in the process of starting up, but not yet ready to accept calls";

/// Which gRPC service a call is for (the start-up answers differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Lightning,
    Invoices,
    Router,
}

/// Calls refused because the node was starting up, per gRPC service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusedCalls {
    /// `lnrpc.Lightning` (GetInfo, LookupInvoice).
    pub lightning: u64,
    /// `invoicesrpc.Invoices` (hold invoices and their subscriptions).
    pub invoices: u64,
    /// `routerrpc.Router` (SendPaymentV2, TrackPaymentV2: payouts and their status).
    pub router: u64,
}

/// LND's default `--max-cltv-expiry`, used when `cltv_limit` is 0.
const DEFAULT_MAX_CLTV: u32 = 2016;

#[derive(Clone)]
struct Svc {
    ledger: Ledger,
    /// Bumped to end every open server stream ("stream dropped").
    drops: watch::Sender<u64>,
    /// The start-up phase set on the handle (`None`: serving, unless the ledger's
    /// `starting_up` fault is set).
    startup: Arc<Mutex<Option<StartupPhase>>>,
    /// `cltv_limit` of every SendPaymentV2, in order.
    cltv_limits: Arc<Mutex<Vec<i32>>>,
    /// Serializes the ledger calls of SendPaymentV2 (a route refused for its CLTV limit is
    /// recorded through a one-shot ledger fault).
    pay_lock: Arc<Mutex<()>>,
    /// Calls refused while starting up.
    refused: Arc<Mutex<RefusedCalls>>,
}

impl Svc {
    /// The answer of a node that is not ready for `service`, if it is starting up.
    fn not_ready(&self, service: Service) -> Option<Status> {
        let phase = (*lock(&self.startup)).or_else(|| {
            self.ledger
                .faults()
                .starting_up
                .then_some(StartupPhase::RpcStarting)
        })?;
        let msg = match (phase, service) {
            (StartupPhase::WaitingToStart, _)
            | (StartupPhase::RpcStarting, Service::Invoices | Service::Router) => {
                MSG_WAITING_TO_START
            },
            (StartupPhase::WalletLocked, _) => MSG_WALLET_LOCKED,
            (StartupPhase::RpcStarting, Service::Lightning) => MSG_RPC_STARTING,
        };
        {
            let mut r = lock(&self.refused);
            let n = match service {
                Service::Lightning => &mut r.lightning,
                Service::Invoices => &mut r.invoices,
                Service::Router => &mut r.router,
            };
            *n = n.saturating_add(1);
        }
        Some(Status::unknown(msg))
    }
}

impl Svc {
    fn invoice(&self, hash: &PaymentHash) -> Result<lnrpc::Invoice, Status> {
        let state = self.ledger.lookup(hash).map_err(|e| status(&e))?;
        let rec = self
            .ledger
            .hold(hash)
            .ok_or_else(|| Status::not_found("unable to locate invoice"))?;
        Ok(invoice_msg(
            hash,
            &rec.bolt11,
            rec.amount,
            rec.cltv_delta,
            state,
        ))
    }
}

fn invoice_msg(
    hash: &PaymentHash,
    bolt11: &str,
    amount: Sats,
    cltv: u32,
    state: HoldInvoiceState,
) -> lnrpc::Invoice {
    use lnrpc::invoice::InvoiceState as S;
    let (st, htlcs) = match state {
        HoldInvoiceState::Open => (S::Open, Vec::new()),
        HoldInvoiceState::Accepted { htlc_expiry } => (
            S::Accepted,
            vec![lnrpc::InvoiceHtlc {
                amt_msat: amount.0.saturating_mul(1000),
                expiry_height: htlc_expiry.map_or(0, |h| i32::try_from(h.0).unwrap_or(i32::MAX)),
                state: lnrpc::InvoiceHtlcState::Accepted as i32,
                ..Default::default()
            }],
        ),
        HoldInvoiceState::Settled => (S::Settled, Vec::new()),
        HoldInvoiceState::Canceled => (S::Canceled, Vec::new()),
    };
    lnrpc::Invoice {
        r_hash: hash.0.to_vec(),
        value: i64_of(amount.0),
        value_msat: i64_of(amount.0.saturating_mul(1000)),
        payment_request: bolt11.to_owned(),
        cltv_expiry: u64::from(cltv),
        state: st as i32,
        htlcs,
        ..Default::default()
    }
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lightning for Svc {
    async fn get_info(
        &self,
        _r: Request<lnrpc::GetInfoRequest>,
    ) -> Result<Response<lnrpc::GetInfoResponse>, Status> {
        let i = self.ledger.info().map_err(|e| status(&e))?;
        #[allow(deprecated, reason = "LND still fills the deprecated chain field")]
        let chain = lnrpc::Chain {
            chain: "bitcoin".to_owned(),
            network: i.network.as_str().to_owned(),
        };
        Ok(Response::new(lnrpc::GetInfoResponse {
            version: format!("0.18.0-beta {}", i.version),
            identity_pubkey: i.pubkey,
            alias: i.alias,
            block_height: i.block_height.0,
            synced_to_chain: true,
            chains: vec![chain],
            commit_hash: i.commit_hash,
            uris: i.uris,
            ..Default::default()
        }))
    }

    async fn lookup_invoice(
        &self,
        r: Request<lnrpc::PaymentHash>,
    ) -> Result<Response<lnrpc::Invoice>, Status> {
        let hash = hash_from(&r.into_inner().r_hash)?;
        self.invoice(&hash).map(Response::new)
    }
}

#[tonic::async_trait]
impl Invoices for Svc {
    type SubscribeSingleInvoiceStream = Stream<lnrpc::Invoice>;

    async fn subscribe_single_invoice(
        &self,
        r: Request<invoicesrpc::SubscribeSingleInvoiceRequest>,
    ) -> Result<Response<Self::SubscribeSingleInvoiceStream>, Status> {
        let hash = hash_from(&r.into_inner().r_hash)?;
        // Subscribe before reading the current state so no transition falls in between.
        let mut events = self.ledger.subscribe();
        let first = self.invoice(&hash)?;
        let (tx, rx) = mpsc::channel(16);
        let mut drops = self.drops.subscribe();
        let svc = self.clone();
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(NodeEvent::Hold { hash: h, .. }) if h == hash => {
                            let Ok(inv) = svc.invoice(&hash) else { return };
                            if tx.send(Ok(inv)).await.is_err() {
                                return;
                            }
                        },
                        Some(_) => {},
                        None => return,
                    },
                    _ = drops.changed() => {
                        let _ = tx.send(Err(Status::unavailable("stream dropped (simulated)"))).await;
                        return;
                    },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_invoice(
        &self,
        r: Request<invoicesrpc::CancelInvoiceMsg>,
    ) -> Result<Response<invoicesrpc::CancelInvoiceResp>, Status> {
        let hash = hash_from(&r.into_inner().payment_hash)?;
        // LND: canceling a canceled invoice succeeds; a settled one fails.
        self.ledger.cancel(&hash).map_err(|e| status(&e))?;
        Ok(Response::new(invoicesrpc::CancelInvoiceResp {}))
    }

    async fn add_hold_invoice(
        &self,
        r: Request<invoicesrpc::AddHoldInvoiceRequest>,
    ) -> Result<Response<invoicesrpc::AddHoldInvoiceResp>, Status> {
        let r = r.into_inner();
        let hash = hash_from(&r.hash)?;
        // LND refuses any second invoice with the same hash, whatever its terms.
        if self.ledger.hold(&hash).is_some() {
            return Err(Status::unknown("invoice with payment hash already exists"));
        }
        let sats = if r.value_msat > 0 {
            u64::try_from(r.value_msat).unwrap_or(0) / 1000
        } else {
            u64::try_from(r.value).unwrap_or(0)
        };
        let req = HoldInvoiceRequest {
            hash,
            amount: Sats(sats),
            expiry_secs: if r.expiry > 0 {
                u64::try_from(r.expiry).unwrap_or(86_400)
            } else {
                86_400
            },
            cltv_delta: if r.cltv_expiry > 0 {
                u32::try_from(r.cltv_expiry).unwrap_or(u32::MAX)
            } else {
                80
            },
            memo: r.memo,
        };
        let bolt11 = self.ledger.create_hold(&req).map_err(|e| status(&e))?;
        Ok(Response::new(invoicesrpc::AddHoldInvoiceResp {
            payment_request: bolt11,
            add_index: 0,
            payment_addr: vec![42; 32],
        }))
    }

    async fn settle_invoice(
        &self,
        r: Request<invoicesrpc::SettleInvoiceMsg>,
    ) -> Result<Response<invoicesrpc::SettleInvoiceResp>, Status> {
        let pre = <[u8; 32]>::try_from(r.into_inner().preimage.as_slice())
            .map(Preimage)
            .map_err(|_| Status::invalid_argument("preimage must be exactly 32 bytes"))?;
        // LND answers a second settle with "invoice already settled".
        if let Ok(HoldInvoiceState::Settled) = self.ledger.lookup(&pre.hash()) {
            return Err(Status::unknown("invoice already settled"));
        }
        self.ledger.settle(&pre).map_err(|e| status(&e))?;
        Ok(Response::new(invoicesrpc::SettleInvoiceResp {}))
    }
}

/// The payment record LND keeps for a hash: [`Ledger::payment_status`]'s rule over the attempts.
fn aggregate(attempts: &[Attempt]) -> Option<PaymentStatus> {
    if attempts.is_empty() {
        return None;
    }
    if let Some(fee) = attempts.iter().find_map(|a| match a.status {
        AttemptStatus::Succeeded(f) => Some(f),
        _ => None,
    }) {
        return Some(PaymentStatus::Succeeded { fee });
    }
    if attempts.iter().any(|a| a.status == AttemptStatus::InFlight) {
        return Some(PaymentStatus::InFlight);
    }
    let reason = attempts
        .iter()
        .rev()
        .find_map(|a| match &a.status {
            AttemptStatus::Failed(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_default();
    Some(PaymentStatus::Failed { reason })
}

fn payment_msg(hash: &PaymentHash, attempts: &[Attempt], st: &PaymentStatus) -> lnrpc::Payment {
    use lnrpc::htlc_attempt::HtlcStatus as H;
    use lnrpc::payment::PaymentStatus as P;
    let (status, fee, reason) = match st {
        PaymentStatus::InFlight | PaymentStatus::NotFound => (
            P::InFlight,
            0,
            lnrpc::PaymentFailureReason::FailureReasonNone,
        ),
        PaymentStatus::Succeeded { fee } => (
            P::Succeeded,
            fee.0,
            lnrpc::PaymentFailureReason::FailureReasonNone,
        ),
        PaymentStatus::Failed { reason } if reason.contains("timeout") => (
            P::Failed,
            0,
            lnrpc::PaymentFailureReason::FailureReasonTimeout,
        ),
        PaymentStatus::Failed { .. } => (
            P::Failed,
            0,
            lnrpc::PaymentFailureReason::FailureReasonNoRoute,
        ),
    };
    let amount = attempts.last().map_or(Sats::ZERO, |a| a.amount);
    let htlcs = attempts
        .iter()
        .enumerate()
        .map(|(n, a)| lnrpc::HtlcAttempt {
            attempt_id: u64::try_from(n).unwrap_or(u64::MAX),
            status: match a.status {
                AttemptStatus::InFlight => H::InFlight,
                AttemptStatus::Succeeded(_) => H::Succeeded,
                AttemptStatus::Failed(_) => H::Failed,
            } as i32,
            ..Default::default()
        })
        .collect();
    lnrpc::Payment {
        payment_hash: hash.to_hex(),
        value_sat: i64_of(amount.0),
        value_msat: i64_of(amount.0.saturating_mul(1000)),
        status: status as i32,
        fee_sat: i64_of(fee),
        fee_msat: i64_of(fee.saturating_mul(1000)),
        failure_reason: reason as i32,
        htlcs,
        ..Default::default()
    }
}

impl Svc {
    /// The payment record for a hash now (without counting a status call on the ledger).
    fn record(&self, hash: &PaymentHash) -> Option<(Vec<Attempt>, PaymentStatus)> {
        let atts = self.ledger.attempts(hash);
        aggregate(&atts).map(|st| (atts, st))
    }

    /// Streams the payment's record: `first` (or the current one), then every change until it is
    /// final (polling the ledger). Ends with `UNAVAILABLE` when streams are dropped.
    fn payment_stream(
        &self,
        hash: PaymentHash,
        first: Option<PaymentStatus>,
    ) -> Stream<lnrpc::Payment> {
        let (tx, rx) = mpsc::channel(8);
        let svc = self.clone();
        let mut drops = self.drops.subscribe();
        tokio::spawn(async move {
            let mut last: Option<PaymentStatus> = None;
            let mut first = first;
            loop {
                let current = match first.take() {
                    Some(st) => Some((svc.ledger.attempts(&hash), st)),
                    None => svc.record(&hash),
                };
                let Some((atts, st)) = current else {
                    return;
                };
                if last.as_ref() != Some(&st) {
                    if tx.send(Ok(payment_msg(&hash, &atts, &st))).await.is_err() {
                        return;
                    }
                    if st != PaymentStatus::InFlight {
                        return;
                    }
                    last = Some(st);
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {},
                    _ = drops.changed() => {
                        let _ = tx.send(Err(Status::unavailable("stream dropped (simulated)"))).await;
                        return;
                    },
                    () = tx.closed() => return,
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    /// The ledger side of SendPaymentV2, under the pay lock.
    fn send_payment(&self, req: &PayRequest, final_cltv: u32) -> Result<(), Status> {
        let _g = lock(&self.pay_lock);
        // LND refuses a new payment while one is in flight or after one succeeded.
        match self.record(&req.hash).map(|(_, st)| st) {
            Some(PaymentStatus::InFlight) => {
                return Err(Status::already_exists("payment is in transition"));
            },
            Some(PaymentStatus::Succeeded { .. }) => {
                return Err(Status::already_exists("invoice is already paid"));
            },
            _ => {},
        }
        if req.max_cltv < final_cltv {
            // LND registers the payment, finds no route within the limit, and fails it.
            let f = self.ledger.faults();
            self.ledger.set_faults(Faults {
                fail_payments: f.fail_payments.saturating_add(1),
                ..f
            });
            let r = self.ledger.pay(req);
            let after = self.ledger.faults();
            if after.fail_payments > f.fail_payments {
                // Refused before an attempt (an expired invoice, ...): take the fault back.
                self.ledger.set_faults(Faults {
                    fail_payments: f.fail_payments,
                    ..after
                });
            }
            return r.map(|_| ()).map_err(|e| status(&e));
        }
        // The ledger records the attempt; the stream reports it as LND does.
        self.ledger.pay(req).map(|_| ()).map_err(|e| status(&e))
    }
}

#[tonic::async_trait]
impl Router for Svc {
    type SendPaymentV2Stream = Stream<lnrpc::Payment>;
    type TrackPaymentV2Stream = Stream<lnrpc::Payment>;

    async fn send_payment_v2(
        &self,
        r: Request<routerrpc::SendPaymentRequest>,
    ) -> Result<Response<Self::SendPaymentV2Stream>, Status> {
        let r = r.into_inner();
        lock(&self.cltv_limits).push(r.cltv_limit);
        let d = decode_bolt11(&r.payment_request).map_err(|e| status(&e))?;
        self.ledger.info().map_err(|e| status(&e))?;
        let amount = d
            .amount
            .unwrap_or_else(|| Sats(u64::try_from(r.amt).unwrap_or(0)));
        let max_cltv = match u32::try_from(r.cltv_limit) {
            Ok(0) => DEFAULT_MAX_CLTV,
            Ok(v) => v,
            Err(_) => return Err(Status::invalid_argument("cltv_limit must not be negative")),
        };
        let req = PayRequest {
            invoice: r.payment_request.clone(),
            hash: d.hash,
            amount,
            fee_limit: Sats(u64::try_from(r.fee_limit_sat).unwrap_or(0)),
            timeout_secs: u32::try_from(r.timeout_seconds).unwrap_or(60),
            max_cltv,
        };
        // One direct channel: the route's total CLTV is the final hop's delta.
        self.send_payment(&req, d.min_final_cltv)?;
        Ok(Response::new(self.payment_stream(d.hash, None)))
    }

    async fn track_payment_v2(
        &self,
        r: Request<routerrpc::TrackPaymentRequest>,
    ) -> Result<Response<Self::TrackPaymentV2Stream>, Status> {
        let r = r.into_inner();
        let hash = hash_from(&r.payment_hash)?;
        // The node's own record (counted as a status call on the ledger).
        let first = match self.ledger.payment_status(&hash) {
            Ok(PaymentStatus::NotFound) => {
                return Err(Status::not_found("payment isn't initiated"));
            },
            Ok(st) => st,
            Err(e) => return Err(status(&e)),
        };
        if r.no_inflight_updates && first == PaymentStatus::InFlight {
            // LND holds back in-flight updates: the stream stays silent until the payment ends.
            return Ok(Response::new(self.final_only_stream(hash)));
        }
        Ok(Response::new(self.payment_stream(hash, Some(first))))
    }
}

impl Svc {
    /// A payment stream that reports only the final state (`no_inflight_updates`).
    fn final_only_stream(&self, hash: PaymentHash) -> Stream<lnrpc::Payment> {
        let inner = self.payment_stream(hash, None);
        Box::pin(inner.filter(|m| {
            let keep =
                !matches!(m, Ok(p) if p.status == lnrpc::payment::PaymentStatus::InFlight as i32);
            futures::future::ready(keep)
        }))
    }
}

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// A running simulator. Dropping it stops the server.
pub struct LndSim {
    svc: Svc,
    addr: SocketAddr,
    cert_path: PathBuf,
    macaroon_path: PathBuf,
    identity: (String, String),
    macaroon_hex: String,
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for LndSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LndSim").field("addr", &self.addr).finish()
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl LndSim {
    /// Writes `tls.cert`, `tls.key` and `admin.macaroon` into `dir` and serves on
    /// `127.0.0.1:port` (`0` picks a free port).
    ///
    /// # Errors
    /// When the files cannot be written or the port cannot be bound.
    pub async fn start(ledger: Ledger, dir: &Path, port: u16) -> io::Result<LndSim> {
        std::fs::create_dir_all(dir)?;
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .map_err(io_err)?;
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        let cert_path = dir.join("tls.cert");
        std::fs::write(&cert_path, &cert_pem)?;
        std::fs::write(dir.join("tls.key"), &key_pem)?;
        // A macaroon is opaque bytes to clients; LND sends it hex-encoded in metadata.
        let mac: Vec<u8> = (0u8..48)
            .map(|i| {
                i.wrapping_mul(37)
                    ^ cert_pem
                        .as_bytes()
                        .get(usize::from(i) + 40)
                        .copied()
                        .unwrap_or(0)
            })
            .collect();
        let macaroon_path = dir.join("admin.macaroon");
        std::fs::write(&macaroon_path, &mac)?;
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (drops, _) = watch::channel(0);
        let sim = LndSim {
            svc: Svc {
                ledger,
                drops,
                startup: Arc::new(Mutex::new(None)),
                cltv_limits: Arc::new(Mutex::new(Vec::new())),
                pay_lock: Arc::new(Mutex::new(())),
                refused: Arc::new(Mutex::new(RefusedCalls::default())),
            },
            addr,
            cert_path,
            macaroon_path,
            identity: (cert_pem, key_pem),
            macaroon_hex: hex::encode(mac),
            running: Mutex::new(None),
        };
        sim.serve(listener)?;
        Ok(sim)
    }

    fn serve(&self, listener: TcpListener) -> io::Result<()> {
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(
            self.identity.0.as_bytes(),
            self.identity.1.as_bytes(),
        ));
        // LND's interceptor chain: the RPC state first (a node starting up refuses every
        // call before looking at it), then the macaroon.
        let check = |service: Service| {
            let expected = self.macaroon_hex.clone();
            let svc = self.svc.clone();
            move |req: Request<()>| -> Result<Request<()>, Status> {
                if let Some(refused) = svc.not_ready(service) {
                    return Err(refused);
                }
                match req.metadata().get("macaroon").map(|v| v.to_str()) {
                    Some(Ok(m)) if m == expected => Ok(req),
                    Some(_) => Err(Status::unauthenticated(
                        "verification failed: signature mismatch after caveat verification",
                    )),
                    None => Err(Status::unauthenticated("expected 1 macaroon, got 0")),
                }
            }
        };
        // `tcp_nodelay` (tonic's default already) only reaches sockets of tonic's own listener;
        // ours are accepted below, where TCP_NODELAY is set on each one.
        let router = Server::builder()
            .tcp_nodelay(true)
            .tls_config(tls)
            .map_err(io_err)?
            .add_service(LightningServer::with_interceptor(
                self.svc.clone(),
                check(Service::Lightning),
            ))
            .add_service(InvoicesServer::with_interceptor(
                self.svc.clone(),
                check(Service::Invoices),
            ))
            .add_service(RouterServer::with_interceptor(
                self.svc.clone(),
                check(Service::Router),
            ));
        let (tx, rx) = oneshot::channel::<()>();
        // No Nagle delay on the simulator's side (LND's gRPC server, Go's net package, sets
        // TCP_NODELAY on every socket too).
        let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |s| {
            s.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = rx.await;
        }));
        *lock(&self.running) = Some(Running { shutdown: tx, task });
        Ok(())
    }

    /// `https://127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Path of the PEM certificate.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Path of the macaroon file.
    pub fn macaroon_path(&self) -> &Path {
        &self.macaroon_path
    }

    /// The ledger behind the node (wallets, chain, faults, assertions).
    pub fn ledger(&self) -> &Ledger {
        &self.svc.ledger
    }

    /// Ends every open server stream (invoice subscriptions, payment streams) with
    /// `UNAVAILABLE`, as a dropped connection would.
    pub fn drop_streams(&self) {
        self.svc.drops.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Stops the server (streams end, the port is released).
    pub async fn stop(&self) {
        self.drop_streams();
        let r = lock(&self.running).take();
        if let Some(r) = r {
            let _ = r.shutdown.send(());
            let mut task = r.task;
            if tokio::time::timeout(Duration::from_secs(3), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Starts the server again on the same port with the same certificate and macaroon.
    ///
    /// # Errors
    /// When the port cannot be bound again.
    pub async fn start_again(&self) -> io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener)
    }

    /// Stops and starts the node (state is kept, as LND's database would be).
    ///
    /// # Errors
    /// When the port cannot be bound again.
    pub async fn restart(&self) -> io::Result<()> {
        self.stop().await;
        self.start_again().await
    }

    /// Puts the node in (or out of) its start-up: every call is refused with LND's
    /// "starting up" answers ([`StartupPhase::RpcStarting`]) and performs nothing.
    pub fn set_starting_up(&self, starting: bool) {
        self.set_startup_phase(starting.then_some(StartupPhase::RpcStarting));
    }

    /// Sets the start-up phase (`None`: serving).
    pub fn set_startup_phase(&self, phase: Option<StartupPhase>) {
        *lock(&self.svc.startup) = phase;
    }

    /// The start-up phase set on the handle.
    pub fn startup_phase(&self) -> Option<StartupPhase> {
        *lock(&self.svc.startup)
    }

    /// An LND restart: every connection and stream is dropped, and the node comes back on the
    /// same port, with its state intact, in its start-up ([`StartupPhase::WaitingToStart`]).
    /// It stays there until [`LndSim::set_starting_up`]`(false)` (or
    /// [`LndSim::set_startup_phase`]) ends it; see [`LndSim::restart_with_startup`] for a
    /// start-up that ends on its own.
    ///
    /// # Errors
    /// When the port cannot be bound again.
    pub async fn restart_starting_up(&self) -> io::Result<()> {
        self.stop().await;
        self.set_startup_phase(Some(StartupPhase::WaitingToStart));
        self.start_again().await
    }

    /// An LND restart whose start-up lasts `startup`: a third waiting to start, a third with
    /// the wallet locked, a third with the RPC server starting, then it serves again. Returns
    /// once the node listens again (in its start-up).
    ///
    /// # Errors
    /// When the port cannot be bound again.
    pub async fn restart_with_startup(&self, startup: Duration) -> io::Result<()> {
        self.restart_starting_up().await?;
        let phase = self.svc.startup.clone();
        let step = startup / 3;
        tokio::spawn(async move {
            for next in [
                Some(StartupPhase::WalletLocked),
                Some(StartupPhase::RpcStarting),
                None,
            ] {
                tokio::time::sleep(step).await;
                *lock(&phase) = next;
            }
        });
        Ok(())
    }

    /// How many calls were refused because the node was starting up, per service.
    pub fn refused_calls(&self) -> RefusedCalls {
        *lock(&self.svc.refused)
    }

    /// `cltv_limit` of every SendPaymentV2 call so far, in order (0: not set).
    pub fn cltv_limits(&self) -> Vec<i32> {
        lock(&self.svc.cltv_limits).clone()
    }
}

impl Drop for LndSim {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.running).take() {
            let _ = r.shutdown.send(());
            r.task.abort();
        }
    }
}
