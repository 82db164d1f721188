//! A load-test protocol client: one relay connection per user, one identity key, many trade keys
//! (a fresh one per order or trade, as real clients in reputation mode do).
//!
//! `mostro_client::MostroClient` holds one trade key per connection; a benchmark that wants a
//! fresh trade key for each of thousands of orders would open a connection per order and
//! measure websocket handshakes. This client subscribes once for all the trade keys it will use
//! and routes each reply to the key it is addressed to. The wire format is the same
//! ([`mostro_nostr::client::wrap_v2`] / [`mostro_nostr::client::wrap_v1`] / `open_reply`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use mostro_core::order::Protocol;
use mostro_core::wire::{Action, Message, MessageKind, Payload};
use mostro_nostr::client::{ClientKeys, WrapOptions, open_reply, wrap_v1, wrap_v2};
use mostro_nostr::{Keys, PublicKey};
use nostr_sdk::{Client, Event, Filter, RelayPoolNotification, TagKind};
use tokio::sync::mpsc;

/// A reply from the node, with the trade key it was addressed to and when it was opened.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Trade key (recipient).
    pub to: PublicKey,
    /// The message.
    pub kind: MessageKind,
    /// When the client had it decrypted.
    pub at: Instant,
}

/// How long a publish waits for the client's relay to be connected again.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(20);

/// One user: identity key, a set of trade keys, a relay connection.
pub struct Peer {
    name: String,
    identity: Keys,
    trades: Vec<Keys>,
    protocol: Protocol,
    node: PublicKey,
    client: Client,
    inbox: mpsc::UnboundedReceiver<Reply>,
    /// Replies received for another trade key than the one being waited on.
    stash: Vec<Reply>,
    next_request: u64,
    /// Seconds this client's clock is behind: its requests are stamped that far in the past.
    pub skew_secs: u64,
}

fn p_tag(ev: &Event) -> Option<PublicKey> {
    ev.tags
        .iter()
        .find(|t| t.kind() == TagKind::p())
        .and_then(|t| t.content())
        .and_then(|c| PublicKey::from_hex(c).ok())
}

impl Peer {
    /// Connects and subscribes for `n_trades` fresh trade keys.
    pub async fn connect(
        name: String,
        relay: &str,
        node: PublicKey,
        protocol: Protocol,
        n_trades: usize,
    ) -> anyhow::Result<Peer> {
        let identity = Keys::generate();
        let trades: Vec<Keys> = (0..n_trades).map(|_| Keys::generate()).collect();
        let client = Client::builder()
            .websocket_transport(mostro_nostr::NoDelayTransport)
            .build();
        client
            .add_relay(relay)
            .await
            .map_err(|e| anyhow!("{name}: {e}"))?;
        client.connect().await;
        client.wait_for_connection(Duration::from_secs(5)).await;
        // Gift wraps are backdated up to two days: never subscribe from now for kind 1059.
        let since = nostr_sdk::Timestamp::now() - Duration::from_secs(3 * 86_400);
        let filter = Filter::new()
            .kinds([nostr_sdk::Kind::from(14u16), nostr_sdk::Kind::from(1059u16)])
            .pubkeys(trades.iter().map(Keys::public_key))
            .since(since);
        client
            .subscribe(filter, None)
            .await
            .map_err(|e| anyhow!("{name}: subscribe: {e}"))?;
        let routes: Arc<Mutex<HashMap<PublicKey, Keys>>> = Arc::new(Mutex::new(
            trades.iter().map(|k| (k.public_key(), k.clone())).collect(),
        ));
        let (tx, inbox) = mpsc::unbounded_channel();
        let mut notes = client.notifications();
        tokio::spawn(async move {
            while let Ok(n) = notes.recv().await {
                let RelayPoolNotification::Event { event, .. } = n else {
                    continue;
                };
                let Some(to) = p_tag(&event) else { continue };
                let keys = match routes.lock() {
                    Ok(g) => g.get(&to).cloned(),
                    Err(p) => p.into_inner().get(&to).cloned(),
                };
                let Some(keys) = keys else { continue };
                if let Ok(u) = open_reply(&event, &keys)
                    && u.sender == node
                {
                    let r = Reply {
                        to,
                        kind: u.message.kind().clone(),
                        at: Instant::now(),
                    };
                    if tx.send(r).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Peer {
            name,
            identity,
            trades,
            protocol,
            node,
            client,
            inbox,
            stash: Vec::new(),
            next_request: 1,
            skew_secs: 0,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Trade key `i`.
    fn trade(&self, i: usize) -> anyhow::Result<&Keys> {
        self.trades
            .get(i)
            .ok_or_else(|| anyhow!("{}: no trade key {i}", self.name))
    }

    /// Wraps a request from trade key `i` (identity proof included).
    pub fn build(
        &mut self,
        i: usize,
        id: Option<uuid::Uuid>,
        trade_index: Option<i64>,
        action: Action,
        payload: Option<Payload>,
    ) -> anyhow::Result<Event> {
        let rid = self.next_request;
        self.next_request = self.next_request.saturating_add(1);
        let keys = ClientKeys::reputation(self.trade(i)?.clone(), self.identity.clone());
        let msg = Message::Order(MessageKind::new(
            id,
            Some(rid),
            trade_index,
            action,
            payload,
        ));
        let opts = WrapOptions {
            created_at: (self.skew_secs > 0)
                .then(|| nostr_sdk::Timestamp::now() - Duration::from_secs(self.skew_secs)),
            ..WrapOptions::default()
        };
        match self.protocol {
            Protocol::V2 => wrap_v2(&msg, &keys, &self.node, opts),
            Protocol::V1 => wrap_v1(&msg, &keys, &self.node, opts),
        }
        .map_err(|e| anyhow!("{}: cannot wrap: {e}", self.name))
    }

    /// Publishes a prepared event (waits for the relay's OK).
    /// A relay that is not connected (restarting) is waited for, as a client app retries, up
    /// to [`PUBLISH_PATIENCE`]; a refusal by a connected relay fails at once.
    pub async fn publish(&self, ev: &Event) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + PUBLISH_PATIENCE;
        loop {
            let out = self
                .client
                .send_event(ev)
                .await
                .map_err(|e| anyhow!("publish: {e}"))?;
            if !out.success.is_empty() {
                return Ok(());
            }
            let away = out
                .failed
                .values()
                .all(|e| e.contains("not connected") || e.contains("timeout"));
            if !away || tokio::time::Instant::now() > deadline {
                bail!("publish: relay refused: {:?}", out.failed);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until trade key `i` receives `action` (other messages to that key are skipped, a
    /// `cant-do` fails). Messages to other trade keys are kept for later.
    pub async fn expect(
        &mut self,
        i: usize,
        action: Action,
        timeout: Duration,
    ) -> anyhow::Result<Reply> {
        let to = self.trade(i)?.public_key();
        if let Some(pos) = self.stash.iter().position(|r| {
            r.to == to && (r.kind.action == action || r.kind.action == Action::CantDo)
        }) {
            let r = self.stash.remove(pos);
            return check(r, action);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .map_err(|_| anyhow!("timeout waiting for {}", action.as_str()))?
                .ok_or_else(|| anyhow!("connection closed"))?;
            if r.to != to {
                self.stash.push(r);
                continue;
            }
            if r.kind.action == action || r.kind.action == Action::CantDo {
                return check(r, action);
            }
        }
    }

    /// Disconnects.
    pub async fn shutdown(&self) {
        self.client.shutdown().await;
    }
}

fn check(r: Reply, action: Action) -> anyhow::Result<Reply> {
    if r.kind.action == action {
        return Ok(r);
    }
    match &r.kind.payload {
        Some(Payload::CantDo(Some(reason))) => bail!("cant-do {}", reason.as_str()),
        _ => bail!("cant-do"),
    }
}
