//! A small Mostro protocol client over Nostr: one trade key (plus an identity key in reputation
//! mode), protocol v1 or v2, its own relay connection. Used by the demo, the end-to-end tests and
//! the load benchmark.
#![warn(missing_docs)]

use std::time::Duration;

use anyhow::{anyhow, bail};
use mostro_core::order::Protocol;
use mostro_core::wire::{Action, Message, MessageKind, Payload};
use mostro_nostr::client::{ClientKeys, WrapOptions, open_reply, wrap_v1, wrap_v2};
use mostro_nostr::{Keys, PublicKey};
use nostr_sdk::{Client, Event, Filter, RelayPoolNotification};
use tokio::sync::mpsc;

/// Which wrapper key a request goes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapper {
    /// `order`.
    Order,
    /// `dispute` (admin-take-dispute).
    Dispute,
    /// `restore` (restore-session, last-trade-index, user-info).
    Restore,
}

/// A client: one trade key (+ identity), one protocol, its own relay connection.
pub struct MostroClient {
    /// Name used in error messages.
    pub name: String,
    /// Keys.
    pub keys: ClientKeys,
    /// Protocol spoken.
    pub protocol: Protocol,
    /// How long [`MostroClient::expect`] waits.
    pub timeout: Duration,
    node: PublicKey,
    client: Client,
    inbox: mpsc::UnboundedReceiver<Message>,
    next_request: u64,
}

impl MostroClient {
    /// Connects a reputation-mode client with fresh keys.
    pub async fn connect(
        name: &str,
        relay: &str,
        node: PublicKey,
        protocol: Protocol,
    ) -> anyhow::Result<MostroClient> {
        let keys = ClientKeys::reputation(Keys::generate(), Keys::generate());
        Self::connect_with(name, relay, node, protocol, keys).await
    }

    /// Connects with the given keys (e.g. the node key as admin, or a known identity).
    pub async fn connect_with(
        name: &str,
        relay: &str,
        node: PublicKey,
        protocol: Protocol,
        keys: ClientKeys,
    ) -> anyhow::Result<MostroClient> {
        let client = Client::builder()
            .signer(keys.trade.clone())
            .websocket_transport(mostro_nostr::NoDelayTransport)
            .build();
        client
            .add_relay(relay)
            .await
            .map_err(|e| anyhow!("{name}: {e}"))?;
        client.connect().await;
        client.wait_for_connection(Duration::from_secs(5)).await;
        let me = keys.trade.public_key();
        // Gift wraps are backdated up to two days: never subscribe from now for kind 1059.
        let since = nostr_sdk::Timestamp::now() - Duration::from_secs(3 * 86_400);
        let filter = Filter::new()
            .kinds([nostr_sdk::Kind::from(14u16), nostr_sdk::Kind::from(1059u16)])
            .pubkey(me)
            .since(since);
        client
            .subscribe(filter, None)
            .await
            .map_err(|e| anyhow!("{name}: {e}"))?;
        let (tx, inbox) = mpsc::unbounded_channel();
        let trade = keys.trade.clone();
        let mut notes = client.notifications();
        tokio::spawn(async move {
            while let Ok(n) = notes.recv().await {
                if let RelayPoolNotification::Event { event, .. } = n
                    && let Ok(u) = open_reply(&event, &trade)
                    && u.sender == node
                    && tx.send(u.message).is_err()
                {
                    break;
                }
            }
        });
        Ok(MostroClient {
            name: name.to_owned(),
            keys,
            protocol,
            timeout: Duration::from_secs(20),
            node,
            client,
            inbox,
            next_request: 1,
        })
    }

    /// The trade public key in hex.
    #[must_use]
    pub fn trade_pubkey(&self) -> String {
        self.keys.trade.public_key().to_hex()
    }

    /// Builds the wrapped event of a request (without sending it).
    pub fn build(
        &mut self,
        wrapper: Wrapper,
        id: Option<uuid::Uuid>,
        trade_index: Option<i64>,
        action: Action,
        payload: Option<Payload>,
    ) -> anyhow::Result<Event> {
        let rid = self.next_request;
        self.next_request = self.next_request.saturating_add(1);
        let kind = MessageKind::new(id, Some(rid), trade_index, action, payload);
        let msg = match wrapper {
            Wrapper::Order => Message::Order(kind),
            Wrapper::Dispute => Message::Dispute(kind),
            Wrapper::Restore => Message::Restore(kind),
        };
        match self.protocol {
            Protocol::V2 => wrap_v2(&msg, &self.keys, &self.node, WrapOptions::default()),
            Protocol::V1 => wrap_v1(&msg, &self.keys, &self.node, WrapOptions::default()),
        }
        .map_err(|e| anyhow!("{}: cannot wrap: {e}", self.name))
    }

    /// Publishes a prepared event.
    pub async fn publish(&self, ev: &Event) -> anyhow::Result<()> {
        self.client
            .send_event(ev)
            .await
            .map_err(|e| anyhow!("{}: cannot publish: {e}", self.name))?;
        Ok(())
    }

    /// Sends a request in the `order` wrapper.
    pub async fn send(
        &mut self,
        id: Option<uuid::Uuid>,
        trade_index: Option<i64>,
        action: Action,
        payload: Option<Payload>,
    ) -> anyhow::Result<()> {
        self.send_in(Wrapper::Order, id, trade_index, action, payload)
            .await
    }

    /// Sends a request in the given wrapper.
    pub async fn send_in(
        &mut self,
        wrapper: Wrapper,
        id: Option<uuid::Uuid>,
        trade_index: Option<i64>,
        action: Action,
        payload: Option<Payload>,
    ) -> anyhow::Result<()> {
        let ev = self.build(wrapper, id, trade_index, action, payload)?;
        self.publish(&ev).await
    }

    /// The next message from the node, waiting up to the timeout.
    pub async fn next(&mut self) -> anyhow::Result<MessageKind> {
        let msg = tokio::time::timeout(self.timeout, self.inbox.recv())
            .await
            .map_err(|_| anyhow!("{}: no message within {:?}", self.name, self.timeout))?
            .ok_or_else(|| anyhow!("{}: connection closed", self.name))?;
        Ok(msg.kind().clone())
    }

    /// Waits for a message with `action` matching `pred` (skipping others). A `cant-do` fails.
    pub async fn expect(
        &mut self,
        action: Action,
        pred: impl Fn(&MessageKind) -> bool,
    ) -> anyhow::Result<MessageKind> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{}: no `{}` within {:?}",
                        self.name,
                        action.as_str(),
                        self.timeout
                    )
                })?
                .ok_or_else(|| anyhow!("{}: connection closed", self.name))?;
            let k = msg.kind().clone();
            if k.action == action && pred(&k) {
                return Ok(k);
            }
            if k.action == Action::CantDo {
                bail!("{}: the node refused: {:?}", self.name, k.payload);
            }
        }
    }

    /// Waits for a `cant-do` and returns its payload.
    pub async fn expect_cant_do(&mut self) -> anyhow::Result<Option<Payload>> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .map_err(|_| anyhow!("{}: no cant-do within {:?}", self.name, self.timeout))?
                .ok_or_else(|| anyhow!("{}: connection closed", self.name))?;
            let k = msg.kind().clone();
            if k.action == Action::CantDo {
                return Ok(k.payload);
            }
        }
    }

    /// Disconnects.
    pub async fn shutdown(&self) {
        self.client.shutdown().await;
    }
}
