//! Focused engine unit tests with `mockall` mocks of the Lightning port: exact calls, in order,
//! and nothing else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use async_trait::async_trait;
use futures::executor::block_on;
use mockall::predicate::eq;
use mockall::{Sequence, mock};
use mostro_core::engine::{Action, Engine, EngineConfig, NewOrderRequest, Outcome, Ports, Request};
use mostro_core::machine::{Notice, PayOutcome, Reject};
use mostro_core::order::{HoldState, Protocol, Status};
use mostro_core::policy::Policy;
use mostro_core::ports::{
    DecodedInvoice, HoldInvoiceRequest, HoldInvoiceState, LightningNode, LnError, LnErrorKind,
    Network, NodeEvent, NodeInfo, PayRequest, PaymentStatus, Store,
};
use mostro_core::types::{EventId, OrderId, PaymentHash, Preimage, PubKey, Sats, Timestamp};
use mostro_testkit::scenario::sell_order;
use mostro_testkit::{FixedPrices, ManualClock, MemStore, RecordingTransport, SeqEntropy};

mock! {
    #[derive(Debug)]
    pub Node {}
    #[async_trait]
    impl LightningNode for Node {
        async fn create_hold_invoice(&self, req: &HoldInvoiceRequest) -> Result<String, LnError>;
        async fn settle_hold_invoice(&self, preimage: &Preimage) -> Result<(), LnError>;
        async fn cancel_hold_invoice(&self, hash: &PaymentHash) -> Result<(), LnError>;
        async fn lookup_hold_invoice(&self, hash: &PaymentHash) -> Result<HoldInvoiceState, LnError>;
        async fn next_event(&self) -> Result<NodeEvent, LnError>;
        async fn pay(&self, req: &PayRequest) -> Result<PayOutcome, LnError>;
        async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LnError>;
        async fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, LnError>;
        async fn info(&self) -> Result<NodeInfo, LnError>;
    }
}

const T0: Timestamp = Timestamp(1_800_000_000);

struct Rig {
    engine: Engine,
    store: MemStore,
    transport: Arc<RecordingTransport>,
    n: std::sync::atomic::AtomicU64,
}

fn rig(node: MockNode) -> Rig {
    let clock = Arc::new(ManualClock::new(T0));
    let store = MemStore::new();
    let transport = Arc::new(RecordingTransport::default());
    let ports = Ports {
        node: Arc::new(node),
        store: Arc::new(store.clone()),
        transport: transport.clone(),
        clock,
        entropy: Arc::new(SeqEntropy::new(7)),
        prices: Arc::new(FixedPrices::default()),
    };
    let cfg = EngineConfig {
        node_key: PubKey([9; 32]),
        network: Network::Regtest,
        pay_timeout_secs: 30,
    };
    Rig {
        engine: Engine::new(ports, cfg, Policy::default()),
        store,
        transport,
        n: 0.into(),
    }
}

impl Rig {
    fn req(&self, who: u8, order_id: Option<OrderId>, action: Action) -> Request {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Request {
            event_id: Some(EventId([n as u8; 32])),
            sender: PubKey([who; 32]),
            identity: PubKey([who.wrapping_add(100); 32]),
            protocol: Protocol::V2,
            request_id: Some(n),
            trade_index: Some(i64::try_from(n).unwrap() + 1),
            order_id,
            action,
        }
    }

    async fn new_order(&self) -> OrderId {
        let a = Action::NewOrder(Box::new(NewOrderRequest {
            order: sell_order(10_000, 5),
            buyer_invoice: None,
        }));
        match self.engine.handle(self.req(1, None, a)).await.unwrap() {
            Outcome::Applied(Some(id)) => id,
            o => panic!("{o:?}"),
        }
    }
}

fn decoded(hash: [u8; 32], amount: u64) -> DecodedInvoice {
    DecodedInvoice {
        hash: PaymentHash(hash),
        amount: Some(Sats(amount)),
        expires_at: Timestamp(T0.0 + 86_400),
        network: Network::Regtest,
        min_final_cltv: 18,
        payee: None,
    }
}

#[test]
fn unreachable_node_on_hold_creation_leaves_the_effect_pending_and_calls_once() {
    let mut node = MockNode::new();
    node.expect_decode_invoice()
        .returning(|_| Ok(decoded([1; 32], 9_970)));
    node.expect_create_hold_invoice()
        .times(1)
        .returning(|_| Err(LnError::new(LnErrorKind::Unreachable, "down")));
    node.expect_pay().never();
    node.expect_settle_hold_invoice().never();
    let r = rig(node);
    block_on(async {
        let id = r.new_order().await;
        let out = r
            .engine
            .handle(r.req(
                2,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some("lnbcrt1x".into()),
                },
            ))
            .await
            .unwrap();
        assert_eq!(out, Outcome::Applied(Some(id)));
        let o = r.store.order(id).await.unwrap().unwrap();
        assert_eq!(o.status, Status::WaitingPayment);
        assert_eq!(o.hold.unwrap().state, HoldState::Requested);
        let pending = r.store.pending_effects(10).await.unwrap();
        assert!(
            pending
                .iter()
                .any(|(_, e)| matches!(e, mostro_core::machine::Effect::CreateHold { .. }))
        );
    });
}

#[test]
fn undecodable_invoice_is_refused_without_touching_the_order() {
    let mut node = MockNode::new();
    node.expect_decode_invoice()
        .with(eq("not-an-invoice"))
        .times(1)
        .returning(|_| Err(LnError::new(LnErrorKind::InvalidInvoice, "bad")));
    node.expect_create_hold_invoice().never();
    let r = rig(node);
    block_on(async {
        let id = r.new_order().await;
        let before = r.store.order(id).await.unwrap();
        let out = r
            .engine
            .handle(r.req(
                2,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some("not-an-invoice".into()),
                },
            ))
            .await
            .unwrap();
        assert_eq!(out, Outcome::Refused(Reject::InvalidInvoice));
        assert_eq!(r.store.order(id).await.unwrap(), before);
        let last = r.transport.sent().pop().unwrap();
        assert_eq!(last.to, PubKey([2; 32]));
        assert!(matches!(
            last.notice,
            Notice::CantDo(Reject::InvalidInvoice)
        ));
    });
}

#[test]
fn settle_refused_as_canceled_never_pays_and_cancels_the_order() {
    let mut node = MockNode::new();
    let mut seq = Sequence::new();
    node.expect_decode_invoice()
        .returning(|_| Ok(decoded([1; 32], 9_970)));
    node.expect_create_hold_invoice()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok("lnbcrt-hold".into()));
    node.expect_settle_hold_invoice()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| {
            Err(LnError::new(
                LnErrorKind::AlreadyCanceled,
                "canceled at CLTV",
            ))
        });
    node.expect_pay().never();
    node.expect_cancel_hold_invoice().never();
    let r = rig(node);
    block_on(async {
        let id = r.new_order().await;
        r.engine
            .handle(r.req(
                2,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some("lnbcrt1x".into()),
                },
            ))
            .await
            .unwrap();
        let hash = r.store.order(id).await.unwrap().unwrap().hold.unwrap().hash;
        r.engine
            .on_node_event(NodeEvent::Hold {
                hash,
                state: HoldInvoiceState::Accepted { htlc_expiry: None },
            })
            .await
            .unwrap();
        assert_eq!(
            r.store.order(id).await.unwrap().unwrap().status,
            Status::Active
        );
        // The seller (maker, key 1) releases from active.
        let out = r
            .engine
            .handle(r.req(1, Some(id), Action::Release { next_trade: None }))
            .await
            .unwrap();
        assert_eq!(out, Outcome::Applied(Some(id)));
        let o = r.store.order(id).await.unwrap().unwrap();
        assert_eq!(o.status, Status::Canceled);
        assert_eq!(o.hold.unwrap().state, HoldState::Canceled);
    });
}

#[test]
fn payout_is_sent_once_with_the_fee_cap_after_settle() {
    let mut node = MockNode::new();
    let mut seq = Sequence::new();
    node.expect_decode_invoice()
        .returning(|_| Ok(decoded([1; 32], 9_970)));
    node.expect_create_hold_invoice()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok("lnbcrt-hold".into()));
    node.expect_settle_hold_invoice()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    node.expect_pay()
        .withf(|r: &PayRequest| {
            r.amount == Sats(9_970) && r.fee_limit == Sats(19) && r.hash == PaymentHash([1; 32])
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(PayOutcome::Succeeded { fee: Sats(2) }));
    let r = rig(node);
    block_on(async {
        let id = r.new_order().await;
        r.engine
            .handle(r.req(
                2,
                Some(id),
                Action::TakeSell {
                    fiat_amount: None,
                    invoice: Some("lnbcrt1x".into()),
                },
            ))
            .await
            .unwrap();
        let hash = r.store.order(id).await.unwrap().unwrap().hold.unwrap().hash;
        r.engine
            .on_node_event(NodeEvent::Hold {
                hash,
                state: HoldInvoiceState::Accepted { htlc_expiry: None },
            })
            .await
            .unwrap();
        // A replayed accepted event changes nothing and calls nothing.
        r.engine
            .on_node_event(NodeEvent::Hold {
                hash,
                state: HoldInvoiceState::Accepted { htlc_expiry: None },
            })
            .await
            .unwrap();
        r.engine
            .handle(r.req(2, Some(id), Action::FiatSent { next_trade: None }))
            .await
            .unwrap();
        r.engine
            .handle(r.req(1, Some(id), Action::Release { next_trade: None }))
            .await
            .unwrap();
        let o = r.store.order(id).await.unwrap().unwrap();
        assert_eq!(o.status, Status::Success);
        assert_eq!(o.payout.unwrap().routing_fee, Sats(2));
        // A late settled event is a no-op.
        r.engine
            .on_node_event(NodeEvent::Hold {
                hash,
                state: HoldInvoiceState::Settled,
            })
            .await
            .unwrap();
        assert!(r.engine.resume().await.unwrap() == 0);
    });
}

#[test]
fn stray_accepted_hold_is_canceled_at_once() {
    let mut node = MockNode::new();
    node.expect_cancel_hold_invoice()
        .with(eq(PaymentHash([42; 32])))
        .times(1)
        .returning(|_| Ok(()));
    let r = rig(node);
    block_on(async {
        r.engine
            .on_node_event(NodeEvent::Hold {
                hash: PaymentHash([42; 32]),
                state: HoldInvoiceState::Accepted { htlc_expiry: None },
            })
            .await
            .unwrap();
    });
}
