//! The relays' websocket transport: nostr-sdk's own connection (async-wsocket: happy eyeballs,
//! TLS, proxy and the same timeouts) with `TCP_NODELAY` set on the socket once it is open.
//!
//! async-wsocket 0.13 dials with `TcpStream::connect` and never disables Nagle's algorithm, and
//! nostr-sdk offers no option for it. With Nagle on, a small websocket frame written while an
//! earlier one is still unacknowledged waits for the peer's delayed ACK (~40 ms on Linux): an
//! `EVENT` right after another one, or after the `REQ` of a subscription, pays that stall (see
//! docs/performance.md, "Nagle stalls").

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_wsocket::futures_util::stream::SplitSink;
use async_wsocket::futures_util::{Sink, SinkExt, StreamExt, TryStreamExt};
use async_wsocket::{ConnectionMode, Message, WebSocket};
use nostr_sdk::Url;
use nostr_sdk::pool::transport::error::TransportError as WsError;
use nostr_sdk::pool::transport::websocket::{WebSocketSink, WebSocketStream, WebSocketTransport};
use nostr_sdk::util::BoxedFuture;
use tokio_tungstenite::MaybeTlsStream;

/// nostr-sdk's default websocket transport plus `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDelayTransport;

/// Disables Nagle's algorithm on a direct connection (a Tor stream has no TCP socket of its
/// own). A failure only costs latency: it is logged, never fatal.
fn set_nodelay(socket: &WebSocket) {
    #[allow(
        irrefutable_let_patterns,
        reason = "the Tor variant exists with a feature only"
    )]
    let WebSocket::Tokio(ws) = socket else {
        return;
    };
    let tcp = match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref().0,
        _ => return,
    };
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("relay socket: cannot set TCP_NODELAY: {e}");
    }
}

impl WebSocketTransport for NoDelayTransport {
    fn support_ping(&self) -> bool {
        true
    }

    fn connect<'a>(
        &'a self,
        url: &'a Url,
        mode: &'a ConnectionMode,
        timeout: Duration,
    ) -> BoxedFuture<'a, Result<(WebSocketSink, WebSocketStream), WsError>> {
        Box::pin(async move {
            let socket = WebSocket::connect(url, mode, timeout)
                .await
                .map_err(WsError::backend)?;
            set_nodelay(&socket);
            let (tx, rx) = socket.split();
            // A sink wrapper rather than `sink_map_err`, as nostr-sdk's own transport does
            // (rust-nostr/nostr#984).
            let sink: WebSocketSink = Box::new(Frames(tx));
            let stream: WebSocketStream = Box::pin(rx.map_err(WsError::backend));
            Ok((sink, stream))
        })
    }
}

struct Frames(SplitSink<WebSocket, Message>);

impl Sink<Message> for Frames {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.0.poll_ready_unpin(cx).map_err(WsError::backend)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        self.0.start_send_unpin(item).map_err(WsError::backend)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.0.poll_flush_unpin(cx).map_err(WsError::backend)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.0.poll_close_unpin(cx).map_err(WsError::backend)
    }
}
