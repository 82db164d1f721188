//! An LND-protocol simulator: a gRPC server over TLS that speaks LND's wire protocol (the
//! `lnrpc.Lightning`, `invoicesrpc.Invoices` and `routerrpc.Router` methods the Mostro adapter
//! uses) in front of the shared [`mostro_testkit::Ledger`].
//!
//! The message types are fedimint-tonic-lnd's; only the server traits are generated here, from
//! skeleton `.proto` files (see `build.rs`). The control surface is the Rust API of [`LndSim`]:
//! wallets, chain and faults live on the ledger ([`LndSim::ledger`]); wire faults (dropping
//! invoice streams, restarting the node) live on the handle.
#![warn(missing_docs)]
#![allow(
    clippy::result_large_err,
    reason = "tonic::Status is the error type of the server traits"
)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc};
use futures::StreamExt;
use mostro_core::ports::{
    HoldInvoiceRequest, HoldInvoiceState, LnError, LnErrorKind, NodeEvent, PayRequest,
};
use mostro_core::types::{PaymentHash, Preimage, Sats};
use mostro_testkit::Ledger;
use mostro_testkit::ledger::{AttemptStatus, decode_bolt11};
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

#[derive(Clone)]
struct Svc {
    ledger: Ledger,
    /// Bumped to end every open server stream ("stream dropped").
    drops: watch::Sender<u64>,
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

fn payment_msg(hash: &PaymentHash, amount: Sats, st: &AttemptStatus) -> lnrpc::Payment {
    use lnrpc::payment::PaymentStatus as P;
    let (status, fee, reason) = match st {
        AttemptStatus::InFlight => (
            P::InFlight,
            0,
            lnrpc::PaymentFailureReason::FailureReasonNone,
        ),
        AttemptStatus::Succeeded(f) => (
            P::Succeeded,
            f.0,
            lnrpc::PaymentFailureReason::FailureReasonNone,
        ),
        AttemptStatus::Failed(_) => (
            P::Failed,
            0,
            lnrpc::PaymentFailureReason::FailureReasonNoRoute,
        ),
    };
    lnrpc::Payment {
        payment_hash: hash.to_hex(),
        value_sat: i64_of(amount.0),
        value_msat: i64_of(amount.0.saturating_mul(1000)),
        status: status as i32,
        fee_sat: i64_of(fee),
        fee_msat: i64_of(fee.saturating_mul(1000)),
        failure_reason: reason as i32,
        ..Default::default()
    }
}

impl Svc {
    /// The attempt LND would report for a hash: a live or succeeded one, else the last failed.
    fn current_attempt(&self, hash: &PaymentHash) -> Option<(Sats, AttemptStatus)> {
        let atts = self.ledger.attempts(hash);
        atts.iter()
            .find(|a| !matches!(a.status, AttemptStatus::Failed(_)))
            .or_else(|| atts.last())
            .map(|a| (a.amount, a.status.clone()))
    }

    /// Streams the payment's status: the current one, then its final one (polling the ledger).
    fn payment_stream(&self, hash: PaymentHash) -> Stream<lnrpc::Payment> {
        let (tx, rx) = mpsc::channel(8);
        let svc = self.clone();
        let mut drops = self.drops.subscribe();
        tokio::spawn(async move {
            let mut last: Option<AttemptStatus> = None;
            loop {
                let Some((amount, st)) = svc.current_attempt(&hash) else {
                    return;
                };
                if last.as_ref() != Some(&st) {
                    if tx.send(Ok(payment_msg(&hash, amount, &st))).await.is_err() {
                        return;
                    }
                    if !matches!(st, AttemptStatus::InFlight) {
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
        let d = decode_bolt11(&r.payment_request).map_err(|e| status(&e))?;
        self.ledger.info().map_err(|e| status(&e))?;
        // LND refuses a new payment while one is in flight or after one succeeded.
        match self.current_attempt(&d.hash) {
            Some((_, AttemptStatus::InFlight)) => {
                return Err(Status::already_exists("payment is in transition"));
            },
            Some((_, AttemptStatus::Succeeded(_))) => {
                return Err(Status::already_exists("invoice is already paid"));
            },
            _ => {},
        }
        let amount = d
            .amount
            .unwrap_or_else(|| Sats(u64::try_from(r.amt).unwrap_or(0)));
        let req = PayRequest {
            invoice: r.payment_request.clone(),
            hash: d.hash,
            amount,
            fee_limit: Sats(u64::try_from(r.fee_limit_sat).unwrap_or(0)),
            timeout_secs: u32::try_from(r.timeout_seconds).unwrap_or(60),
        };
        // The ledger records the attempt; the stream reports it as LND does.
        self.ledger.pay(&req).map_err(|e| status(&e))?;
        Ok(Response::new(self.payment_stream(d.hash)))
    }

    async fn track_payment_v2(
        &self,
        r: Request<routerrpc::TrackPaymentRequest>,
    ) -> Result<Response<Self::TrackPaymentV2Stream>, Status> {
        let hash = hash_from(&r.into_inner().payment_hash)?;
        self.ledger.info().map_err(|e| status(&e))?;
        if self.current_attempt(&hash).is_none() {
            return Err(Status::not_found("payment isn't initiated"));
        }
        Ok(Response::new(self.payment_stream(hash)))
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
            svc: Svc { ledger, drops },
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
        let expected = self.macaroon_hex.clone();
        let check = move |req: Request<()>| -> Result<Request<()>, Status> {
            match req.metadata().get("macaroon").map(|v| v.to_str()) {
                Some(Ok(m)) if m == expected => Ok(req),
                Some(_) => Err(Status::unauthenticated(
                    "verification failed: signature mismatch after caveat verification",
                )),
                None => Err(Status::unauthenticated("expected 1 macaroon, got 0")),
            }
        };
        let router = Server::builder()
            .tls_config(tls)
            .map_err(io_err)?
            .add_service(LightningServer::with_interceptor(
                self.svc.clone(),
                check.clone(),
            ))
            .add_service(InvoicesServer::with_interceptor(
                self.svc.clone(),
                check.clone(),
            ))
            .add_service(RouterServer::with_interceptor(self.svc.clone(), check));
        let (tx, rx) = oneshot::channel::<()>();
        // No Nagle delay on the simulator's side (LND's gRPC server sets TCP_NODELAY too).
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
}

impl Drop for LndSim {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.running).take() {
            let _ = r.shutdown.send(());
            r.task.abort();
        }
    }
}
