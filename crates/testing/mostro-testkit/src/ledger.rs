//! A simulated Lightning ledger: the node's hold invoices and payments, external wallets that
//! pay hold invoices (sellers) and issue invoices (buyers), a chain tip, and fault injection.
//!
//! It is the single source of truth behind [`crate::FakeNode`] (in-memory) and the wire-level
//! simulators (LND gRPC, CLN JSON-RPC), so every backend is tested against the same semantics.
//! Invoices are real signed BOLT11 strings (regtest by default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bitcoin::hashes::{Hash as _, sha256};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use mostro_core::machine::PayOutcome;
use mostro_core::ports::{
    Clock, HoldInvoiceRequest, HoldInvoiceState, LnError, LnErrorKind, Network, NodeEvent,
    NodeInfo, PayRequest, PaymentStatus,
};
use mostro_core::types::{BlockHeight, PaymentHash, Preimage, Sats, Timestamp};

/// LND cancels an accepted hold invoice this many blocks before its HTLC expires.
pub const HOLD_EXPIRY_DELTA: u32 = 12;

/// A hold invoice as the node holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRecord {
    /// Amount.
    pub amount: Sats,
    /// State.
    pub state: HoldInvoiceState,
    /// BOLT11.
    pub bolt11: String,
    /// CLTV delta.
    pub cltv_delta: u32,
    /// When the invoice expires (unpaid).
    pub expires_at: Timestamp,
    /// Memo.
    pub memo: String,
    /// Wallet that paid it.
    pub payer: Option<String>,
    /// Times it was settled (must stay <= 1).
    pub settles: u32,
    /// Times it went from open/accepted to canceled (must stay <= 1).
    pub cancels: u32,
}

/// One payment attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Amount sent.
    pub amount: Sats,
    /// Outcome so far.
    pub status: AttemptStatus,
}

/// State of a payment attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptStatus {
    /// In flight.
    InFlight,
    /// Succeeded with this routing fee.
    Succeeded(Sats),
    /// Failed.
    Failed(String),
}

/// An invoice issued by an external wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletInvoice {
    /// Issuing wallet.
    pub wallet: String,
    /// Amount, if any.
    pub amount: Option<Sats>,
    /// BOLT11.
    pub bolt11: String,
    /// Received (sum of successful payments).
    pub received: Sats,
}

/// Injectable faults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every call fails with `Unreachable`.
    pub unreachable: bool,
    /// The next N payment attempts fail with this reason.
    pub fail_payments: u32,
    /// New payment attempts stay in flight until [`Ledger::finish_hung`].
    pub hang_payments: bool,
    /// The next mutating call is performed but its reply is lost (`Timeout`).
    pub lose_next_reply: bool,
    /// The next N `pay` calls start (or finish) the payment for real but answer with an error
    /// of no recognizable kind, as an unlisted gRPC `Unknown` or a plugin error does.
    pub ambiguous_pays: u32,
    /// The node is starting up: every call fails with `Other` "the RPC server is in the process
    /// of starting up" (the kind a careless adapter gives it) and does nothing.
    pub starting_up: bool,
    /// The next N `payment_status` replies are lost (`Timeout`).
    pub lose_status_replies: u32,
    /// The next N settle / cancel / lookup calls answer "not found" and do nothing (a node whose
    /// invoice database is not loaded yet; a careless adapter's mapping of a startup error).
    pub spurious_not_found: u32,
}

struct State {
    node_key: SecretKey,
    network: Network,
    height: u32,
    holds: HashMap<PaymentHash, HoldRecord>,
    invoices: HashMap<PaymentHash, WalletInvoice>,
    payments: HashMap<PaymentHash, Vec<Attempt>>,
    balances: HashMap<String, i128>,
    faults: Faults,
    subscribers: Vec<UnboundedSender<NodeEvent>>,
    routing_fee: Sats,
    status_calls: u64,
    pay_requests: Vec<PayRequest>,
}

/// The simulated ledger. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Ledger {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger(..)")
    }
}

/// The node's own wallet name in balances.
pub const NODE: &str = "node";

fn err(kind: LnErrorKind, msg: impl Into<String>) -> LnError {
    LnError::new(kind, msg)
}

/// Builds a real signed BOLT11 invoice (see [`mostro_bolt11::sign`]).
///
/// # Errors
/// When the invoice cannot be built (an impossible amount).
#[allow(
    clippy::too_many_arguments,
    reason = "every BOLT11 field the simulators set"
)]
pub fn make_bolt11(
    key: &SecretKey,
    network: Network,
    hash: PaymentHash,
    amount: Option<Sats>,
    memo: &str,
    created_at: Timestamp,
    expiry_secs: u64,
    cltv_delta: u32,
) -> Result<String, LnError> {
    let spec = mostro_bolt11::InvoiceSpec {
        network,
        hash,
        amount,
        memo,
        created_at,
        expiry_secs,
        cltv_delta,
    };
    mostro_bolt11::sign(key, &spec)
}

pub use mostro_bolt11::decode as decode_bolt11;

impl Ledger {
    /// A new ledger on `network` at block height 100, reading time from `clock`.
    pub fn new(network: Network, clock: Arc<dyn Clock>) -> Self {
        let node_key = SecretKey::from_slice(&[0x11; 32]).unwrap_or_else(|_| unreachable_key());
        Ledger {
            state: Arc::new(Mutex::new(State {
                node_key,
                network,
                height: 100,
                holds: HashMap::new(),
                invoices: HashMap::new(),
                payments: HashMap::new(),
                balances: HashMap::new(),
                faults: Faults::default(),
                subscribers: Vec::new(),
                routing_fee: Sats(1),
                status_calls: 0,
                pay_requests: Vec::new(),
            })),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A stream of node events (hold state changes, blocks).
    pub fn subscribe(&self) -> UnboundedReceiver<NodeEvent> {
        let (tx, rx) = unbounded();
        self.lock().subscribers.push(tx);
        rx
    }

    fn emit(st: &mut State, ev: &NodeEvent) {
        st.subscribers
            .retain(|s| s.unbounded_send(ev.clone()).is_ok());
    }

    /// Sets the faults.
    pub fn set_faults(&self, f: Faults) {
        self.lock().faults = f;
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Makes every call fail as if the node were down (or brings it back).
    pub fn set_unreachable(&self, down: bool) {
        self.lock().faults.unreachable = down;
    }

    fn gate(st: &State) -> Result<(), LnError> {
        if st.faults.unreachable {
            return Err(err(
                LnErrorKind::Unreachable,
                "node unreachable (simulated)",
            ));
        }
        if st.faults.starting_up {
            return Err(err(
                LnErrorKind::Other,
                "the RPC server is in the process of starting up (simulated)",
            ));
        }
        Ok(())
    }

    /// The node's record of the outgoing payments for a hash (as `TrackPaymentV2` tells it).
    pub fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError> {
        let mut st = self.lock();
        Self::gate(&st)?;
        st.status_calls = st.status_calls.saturating_add(1);
        let out = match st.payments.get(hash) {
            None => PaymentStatus::NotFound,
            Some(v) if v.is_empty() => PaymentStatus::NotFound,
            Some(v) => {
                if let Some(fee) = v.iter().find_map(|a| match a.status {
                    AttemptStatus::Succeeded(fee) => Some(fee),
                    _ => None,
                }) {
                    PaymentStatus::Succeeded { fee }
                } else if v.iter().any(|a| a.status == AttemptStatus::InFlight) {
                    PaymentStatus::InFlight
                } else {
                    let reason = v
                        .iter()
                        .rev()
                        .find_map(|a| match &a.status {
                            AttemptStatus::Failed(r) => Some(r.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    PaymentStatus::Failed { reason }
                }
            },
        };
        if st.faults.lose_status_replies > 0 {
            st.faults.lose_status_replies = st.faults.lose_status_replies.saturating_sub(1);
            return Err(err(LnErrorKind::Timeout, "status reply lost (simulated)"));
        }
        Ok(out)
    }

    fn spurious(st: &mut State) -> Result<(), LnError> {
        if st.faults.spurious_not_found > 0 {
            st.faults.spurious_not_found = st.faults.spurious_not_found.saturating_sub(1);
            return Err(err(
                LnErrorKind::NotFound,
                "unable to locate invoice (simulated while starting)",
            ));
        }
        Ok(())
    }

    /// Every `pay` request the node received (after the reachability gate), in order.
    pub fn pay_requests(&self) -> Vec<PayRequest> {
        self.lock().pay_requests.clone()
    }

    /// Test hook: sets the status of the last attempt on `hash` (crediting the payee when it
    /// becomes a success), as if the network had resolved it that way.
    pub fn force_attempt(&self, hash: &PaymentHash, status: AttemptStatus) {
        let mut st = self.lock();
        let Some(a) = st.payments.get_mut(hash).and_then(|v| v.last_mut()) else {
            return;
        };
        let was_success = matches!(a.status, AttemptStatus::Succeeded(_));
        a.status = status.clone();
        let amount = a.amount;
        if let AttemptStatus::Succeeded(fee) = status
            && !was_success
        {
            complete_payment(&mut st, *hash, amount, fee);
        }
    }

    /// How many `payment_status` calls the node answered.
    pub fn status_calls(&self) -> u64 {
        self.lock().status_calls
    }

    /// After a mutating call succeeded: drop the reply if a lost reply was injected.
    fn reply<T>(st: &mut State, v: T) -> Result<T, LnError> {
        if st.faults.lose_next_reply {
            st.faults.lose_next_reply = false;
            return Err(err(LnErrorKind::Timeout, "reply lost (simulated)"));
        }
        Ok(v)
    }

    /// The node's network.
    pub fn network(&self) -> Network {
        self.lock().network
    }

    /// Chain tip.
    pub fn height(&self) -> BlockHeight {
        BlockHeight(self.lock().height)
    }

    /// Mines `n` blocks; cancels accepted holds within [`HOLD_EXPIRY_DELTA`] of their HTLC expiry.
    pub fn mine(&self, n: u32) {
        let mut st = self.lock();
        st.height = st.height.saturating_add(n);
        let h = st.height;
        let mut canceled = Vec::new();
        for (hash, rec) in &mut st.holds {
            if let HoldInvoiceState::Accepted {
                htlc_expiry: Some(e),
            } = rec.state
                && h.saturating_add(HOLD_EXPIRY_DELTA) >= e.0
            {
                rec.state = HoldInvoiceState::Canceled;
                rec.cancels = rec.cancels.saturating_add(1);
                canceled.push((*hash, rec.payer.clone(), rec.amount));
            }
        }
        for (hash, payer, amount) in canceled {
            if let Some(p) = payer {
                credit(&mut st, &p, amount);
            }
            Self::emit(
                &mut st,
                &NodeEvent::Hold {
                    hash,
                    state: HoldInvoiceState::Canceled,
                },
            );
        }
        Self::emit(&mut st, &NodeEvent::Block(BlockHeight(h)));
    }

    /// Node facts.
    pub fn info(&self) -> Result<NodeInfo, LnError> {
        let st = self.lock();
        Self::gate(&st)?;
        let secp = Secp256k1::new();
        let pubkey = hex::encode(PublicKey::from_secret_key(&secp, &st.node_key).serialize());
        Ok(NodeInfo {
            network: st.network,
            block_height: BlockHeight(st.height),
            alias: "mostro-sim".to_owned(),
            uris: vec![format!("{pubkey}@127.0.0.1:9735")],
            pubkey,
            version: "sim-0.1".to_owned(),
            commit_hash: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            chains: vec!["bitcoin".to_owned()],
        })
    }

    /// Creates a hold invoice (idempotent by hash).
    pub fn create_hold(&self, req: &HoldInvoiceRequest) -> Result<String, LnError> {
        let now = self.now();
        let mut st = self.lock();
        Self::gate(&st)?;
        if let Some(rec) = st.holds.get(&req.hash) {
            if rec.amount == req.amount {
                let b = rec.bolt11.clone();
                return Self::reply(&mut st, b);
            }
            return Err(err(
                LnErrorKind::Conflict,
                "invoice with that hash already exists",
            ));
        }
        if req.amount == Sats::ZERO {
            return Err(err(
                LnErrorKind::Other,
                "hold invoice amount must be positive",
            ));
        }
        let bolt11 = make_bolt11(
            &st.node_key,
            st.network,
            req.hash,
            Some(req.amount),
            &req.memo,
            now,
            req.expiry_secs,
            req.cltv_delta,
        )?;
        st.holds.insert(
            req.hash,
            HoldRecord {
                amount: req.amount,
                state: HoldInvoiceState::Open,
                bolt11: bolt11.clone(),
                cltv_delta: req.cltv_delta,
                expires_at: now.plus(req.expiry_secs),
                memo: req.memo.clone(),
                payer: None,
                settles: 0,
                cancels: 0,
            },
        );
        Self::emit(
            &mut st,
            &NodeEvent::Hold {
                hash: req.hash,
                state: HoldInvoiceState::Open,
            },
        );
        Self::reply(&mut st, bolt11)
    }

    /// Settles a hold invoice.
    pub fn settle(&self, preimage: &Preimage) -> Result<(), LnError> {
        let hash = preimage.hash();
        let mut st = self.lock();
        Self::gate(&st)?;
        Self::spurious(&mut st)?;
        let Some(rec) = st.holds.get_mut(&hash) else {
            return Err(err(LnErrorKind::NotFound, "unable to locate invoice"));
        };
        match rec.state {
            HoldInvoiceState::Settled => return Self::reply(&mut st, ()),
            HoldInvoiceState::Canceled => {
                return Err(err(
                    LnErrorKind::AlreadyCanceled,
                    "invoice already canceled",
                ));
            },
            HoldInvoiceState::Open => {
                return Err(err(LnErrorKind::Other, "invoice still open"));
            },
            HoldInvoiceState::Accepted { .. } => {
                rec.state = HoldInvoiceState::Settled;
                rec.settles = rec.settles.saturating_add(1);
                let amount = rec.amount;
                credit(&mut st, NODE, amount);
            },
        }
        Self::emit(
            &mut st,
            &NodeEvent::Hold {
                hash,
                state: HoldInvoiceState::Settled,
            },
        );
        Self::reply(&mut st, ())
    }

    /// Cancels a hold invoice, refunding an accepted HTLC.
    pub fn cancel(&self, hash: &PaymentHash) -> Result<(), LnError> {
        let mut st = self.lock();
        Self::gate(&st)?;
        Self::spurious(&mut st)?;
        let Some(rec) = st.holds.get_mut(hash) else {
            return Err(err(LnErrorKind::NotFound, "unable to locate invoice"));
        };
        match rec.state {
            HoldInvoiceState::Canceled => return Self::reply(&mut st, ()),
            HoldInvoiceState::Settled => {
                return Err(err(LnErrorKind::AlreadySettled, "invoice already settled"));
            },
            HoldInvoiceState::Open | HoldInvoiceState::Accepted { .. } => {
                let refund = matches!(rec.state, HoldInvoiceState::Accepted { .. });
                rec.state = HoldInvoiceState::Canceled;
                rec.cancels = rec.cancels.saturating_add(1);
                let (payer, amount) = (rec.payer.clone(), rec.amount);
                if refund && let Some(p) = payer {
                    credit(&mut st, &p, amount);
                }
            },
        }
        Self::emit(
            &mut st,
            &NodeEvent::Hold {
                hash: *hash,
                state: HoldInvoiceState::Canceled,
            },
        );
        Self::reply(&mut st, ())
    }

    /// State of a hold invoice.
    pub fn lookup(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError> {
        let mut st = self.lock();
        Self::gate(&st)?;
        Self::spurious(&mut st)?;
        st.holds
            .get(hash)
            .map(|r| r.state)
            .ok_or_else(|| err(LnErrorKind::NotFound, "unable to locate invoice"))
    }

    /// A hold record (for assertions).
    pub fn hold(&self, hash: &PaymentHash) -> Option<HoldRecord> {
        self.lock().holds.get(hash).cloned()
    }

    /// Every hold record.
    pub fn holds(&self) -> Vec<(PaymentHash, HoldRecord)> {
        self.lock()
            .holds
            .iter()
            .map(|(h, r)| (*h, r.clone()))
            .collect()
    }

    /// A seller wallet pays a hold invoice: its HTLC is locked (state ACCEPTED).
    pub fn pay_hold(&self, wallet: &str, bolt11: &str) -> Result<PaymentHash, LnError> {
        let d = decode_bolt11(bolt11)?;
        let now = self.now();
        let mut st = self.lock();
        let height = st.height;
        let Some(rec) = st.holds.get_mut(&d.hash) else {
            return Err(err(LnErrorKind::NotFound, "no such hold invoice"));
        };
        if rec.state != HoldInvoiceState::Open {
            return Err(err(
                LnErrorKind::Other,
                format!("invoice is {:?}", rec.state),
            ));
        }
        if now >= rec.expires_at {
            return Err(err(LnErrorKind::Expired, "invoice expired"));
        }
        let expiry = BlockHeight(height.saturating_add(rec.cltv_delta));
        rec.state = HoldInvoiceState::Accepted {
            htlc_expiry: Some(expiry),
        };
        rec.payer = Some(wallet.to_owned());
        let amount = rec.amount;
        debit(&mut st, wallet, amount);
        Self::emit(
            &mut st,
            &NodeEvent::Hold {
                hash: d.hash,
                state: HoldInvoiceState::Accepted {
                    htlc_expiry: Some(expiry),
                },
            },
        );
        Ok(d.hash)
    }

    /// A buyer wallet issues an invoice. `amount: None` makes an amountless invoice.
    pub fn wallet_invoice(
        &self,
        wallet: &str,
        amount: Option<Sats>,
        expiry_secs: u64,
    ) -> Result<String, LnError> {
        self.wallet_invoice_on(wallet, amount, expiry_secs, None)
    }

    /// Like [`Ledger::wallet_invoice`] on another network (to test network checks).
    pub fn wallet_invoice_on(
        &self,
        wallet: &str,
        amount: Option<Sats>,
        expiry_secs: u64,
        network: Option<Network>,
    ) -> Result<String, LnError> {
        self.wallet_invoice_full(wallet, amount, expiry_secs, network, 18)
    }

    /// A wallet invoice asking for a final CLTV delta of `min_final_cltv` blocks.
    pub fn wallet_invoice_full(
        &self,
        wallet: &str,
        amount: Option<Sats>,
        expiry_secs: u64,
        network: Option<Network>,
        min_final_cltv: u32,
    ) -> Result<String, LnError> {
        let now = self.now();
        let mut st = self.lock();
        let n = st.invoices.len();
        let mut seed = [0u8; 32];
        let wb = wallet.as_bytes();
        for (i, s) in seed.iter_mut().enumerate() {
            *s = wb.get(i % wb.len().max(1)).copied().unwrap_or(7) ^ 0x5a;
        }
        let key = SecretKey::from_slice(&sha256::Hash::hash(&seed).to_byte_array())
            .unwrap_or_else(|_| unreachable_key());
        let mut pre = Vec::new();
        pre.extend_from_slice(wallet.as_bytes());
        pre.extend_from_slice(&n.to_le_bytes());
        pre.extend_from_slice(&now.0.to_le_bytes());
        let hash = PaymentHash(sha256::Hash::hash(&pre).to_byte_array());
        let net = network.unwrap_or(st.network);
        let bolt11 = make_bolt11(
            &key,
            net,
            hash,
            amount,
            "payout",
            now,
            expiry_secs,
            min_final_cltv,
        )?;
        st.invoices.insert(
            hash,
            WalletInvoice {
                wallet: wallet.to_owned(),
                amount,
                bolt11: bolt11.clone(),
                received: Sats::ZERO,
            },
        );
        Ok(bolt11)
    }

    /// Pays an invoice from the node (idempotent per hash).
    pub fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError> {
        let d = decode_bolt11(&req.invoice)?;
        let now = self.now();
        let mut st = self.lock();
        Self::gate(&st)?;
        st.pay_requests.push(req.clone());
        if d.network != st.network {
            return Err(err(
                LnErrorKind::WrongNetwork,
                "invoice is for another network",
            ));
        }
        if d.hash != req.hash {
            return Err(err(
                LnErrorKind::InvalidInvoice,
                "hash does not match the invoice",
            ));
        }
        let attempts = st.payments.entry(d.hash).or_default();
        if let Some(a) = attempts
            .iter()
            .find(|a| !matches!(a.status, AttemptStatus::Failed(_)))
        {
            let out = match &a.status {
                AttemptStatus::InFlight => PayOutcome::InFlight,
                AttemptStatus::Succeeded(fee) => PayOutcome::Succeeded { fee: *fee },
                AttemptStatus::Failed(r) => PayOutcome::Failed { reason: r.clone() },
            };
            return Self::reply(&mut st, out);
        }
        if let Some(a) = d.amount
            && a != req.amount
        {
            return Err(err(
                LnErrorKind::InvalidInvoice,
                "amount does not match the invoice",
            ));
        }
        if now >= d.expires_at {
            return Err(err(LnErrorKind::Expired, "invoice expired"));
        }
        let status = if st.faults.fail_payments > 0 {
            st.faults.fail_payments = st.faults.fail_payments.saturating_sub(1);
            AttemptStatus::Failed("no route (simulated)".to_owned())
        } else if !st.invoices.contains_key(&d.hash) {
            AttemptStatus::Failed("unknown destination".to_owned())
        } else if st.faults.hang_payments {
            AttemptStatus::InFlight
        } else if st.routing_fee > req.fee_limit {
            AttemptStatus::Failed("fee limit exceeded".to_owned())
        } else {
            AttemptStatus::Succeeded(st.routing_fee)
        };
        let out = match &status {
            AttemptStatus::InFlight => PayOutcome::InFlight,
            AttemptStatus::Succeeded(fee) => PayOutcome::Succeeded { fee: *fee },
            AttemptStatus::Failed(r) => PayOutcome::Failed { reason: r.clone() },
        };
        if let AttemptStatus::Succeeded(fee) = status {
            complete_payment(&mut st, d.hash, req.amount, fee);
        }
        st.payments.entry(d.hash).or_default().push(Attempt {
            amount: req.amount,
            status,
        });
        if st.faults.ambiguous_pays > 0 {
            st.faults.ambiguous_pays = st.faults.ambiguous_pays.saturating_sub(1);
            return Err(err(
                LnErrorKind::Other,
                "rpc error: code = Unknown desc = (simulated, outcome not reported)",
            ));
        }
        Self::reply(&mut st, out)
    }

    /// Finishes every hung payment (success, or failure when `fail`).
    pub fn finish_hung(&self, fail: bool) {
        let mut st = self.lock();
        st.faults.hang_payments = false;
        let fee = st.routing_fee;
        let hung: Vec<(PaymentHash, Sats)> = st
            .payments
            .iter()
            .flat_map(|(h, v)| {
                v.iter()
                    .filter(|a| a.status == AttemptStatus::InFlight)
                    .map(|a| (*h, a.amount))
            })
            .collect();
        for (h, amount) in hung {
            if let Some(v) = st.payments.get_mut(&h) {
                for a in v.iter_mut().filter(|a| a.status == AttemptStatus::InFlight) {
                    a.status = if fail {
                        AttemptStatus::Failed("timeout (simulated)".to_owned())
                    } else {
                        AttemptStatus::Succeeded(fee)
                    };
                }
            }
            if !fail {
                complete_payment(&mut st, h, amount, fee);
            }
        }
    }

    /// Payment attempts for a hash.
    pub fn attempts(&self, hash: &PaymentHash) -> Vec<Attempt> {
        self.lock().payments.get(hash).cloned().unwrap_or_default()
    }

    /// Every payment attempt.
    pub fn all_attempts(&self) -> Vec<(PaymentHash, Attempt)> {
        let st = self.lock();
        st.payments
            .iter()
            .flat_map(|(h, v)| v.iter().map(|a| (*h, a.clone())))
            .collect()
    }

    /// A wallet invoice (for assertions).
    pub fn invoice(&self, hash: &PaymentHash) -> Option<WalletInvoice> {
        self.lock().invoices.get(hash).cloned()
    }

    /// Balance of a wallet (or [`NODE`]), in sats; may be negative (wallets start at 0).
    pub fn balance(&self, wallet: &str) -> i128 {
        self.lock().balances.get(wallet).copied().unwrap_or(0)
    }
}

fn credit(st: &mut State, who: &str, amount: Sats) {
    let b = st.balances.entry(who.to_owned()).or_insert(0);
    *b = b.saturating_add(i128::from(amount.0));
}

fn debit(st: &mut State, who: &str, amount: Sats) {
    let b = st.balances.entry(who.to_owned()).or_insert(0);
    *b = b.saturating_sub(i128::from(amount.0));
}

fn complete_payment(st: &mut State, hash: PaymentHash, amount: Sats, fee: Sats) {
    let wallet = st.invoices.get_mut(&hash).map(|inv| {
        inv.received = inv.received.checked_add(amount).unwrap_or(inv.received);
        inv.wallet.clone()
    });
    if let Some(w) = wallet {
        credit(st, &w, amount);
    }
    debit(st, NODE, amount.checked_add(fee).unwrap_or(amount));
}

#[allow(clippy::panic, reason = "a constant valid key: cannot fail")]
fn unreachable_key() -> SecretKey {
    panic!("constant secret key rejected")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn bolt11_roundtrip_is_real() {
        let key = SecretKey::from_slice(&[3u8; 32]).unwrap();
        let s = make_bolt11(
            &key,
            Network::Regtest,
            PaymentHash([9; 32]),
            Some(Sats(1234)),
            "m",
            Timestamp(1_800_000_000),
            900,
            144,
        )
        .unwrap();
        assert!(s.starts_with("lnbcrt12340n1"), "{s}");
        let d = decode_bolt11(&s).unwrap();
        assert_eq!(d.hash, PaymentHash([9; 32]));
        assert_eq!(d.amount, Some(Sats(1234)));
        assert_eq!(d.network, Network::Regtest);
        assert_eq!(d.expires_at, Timestamp(1_800_000_900));
        assert!(decode_bolt11("lnbcrt1garbage").is_err());
    }

    #[test]
    fn hold_lifecycle_and_idempotency() {
        let clock = Arc::new(ManualClock::new(Timestamp(1_800_000_000)));
        let l = Ledger::new(Network::Regtest, clock);
        let pre = Preimage([5; 32]);
        let req = HoldInvoiceRequest {
            hash: pre.hash(),
            amount: Sats(1000),
            expiry_secs: 900,
            cltv_delta: 144,
            memo: "x".into(),
        };
        let b1 = l.create_hold(&req).unwrap();
        assert_eq!(l.create_hold(&req).unwrap(), b1);
        assert_eq!(l.settle(&pre).unwrap_err().kind, LnErrorKind::Other);
        l.pay_hold("seller", &b1).unwrap();
        l.settle(&pre).unwrap();
        l.settle(&pre).unwrap();
        assert_eq!(
            l.cancel(&pre.hash()).unwrap_err().kind,
            LnErrorKind::AlreadySettled
        );
        assert_eq!(l.hold(&pre.hash()).unwrap().settles, 1);
        assert_eq!(l.balance(NODE), 1000);
        assert_eq!(l.balance("seller"), -1000);
    }
}
