//! One WebSocket connection.
//!
//! The upgrade handler only applies frame limits and hands the socket to
//! [`run`]. A spawned writer drains the connection's [`Outbox`] into the
//! socket (replies and updates share it, so their order is kept); the reader
//! loop handles the client's commands one at a time. When either side ends,
//! the connection's subscriptions are removed.

use std::sync::Arc;

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    response::Response,
};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use tracing::Instrument;

use crate::{
    outbox::{CloseReason, Frame, Outbox},
    protocol::{self, Command, Operation, Problem, Reply, Status},
    registry::{ConnId, NewSubscription},
    server::Host,
};

/// Initial read buffer of a connection.
const READ_BUFFER_BYTES: usize = 1024;

/// `GET /api/v1/ws`.
pub async fn upgrade(ws: WebSocketUpgrade, State(host): State<Arc<Host>>) -> Response {
    let max = host.config.limits.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        // Clients send a few small commands; the 128 KiB default read
        // buffer was most of an idle connection's memory. It grows when a
        // larger frame arrives.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run(socket, host))
}

/// A connection's subscriptions are recorded in the registry (by topic:
/// the name the client knows each by), which keeps them across plugin
/// upgrades and ends them when their route is removed.
struct Session {
    host: Arc<Host>,
    conn: ConnId,
    outbox: Arc<Outbox>,
}

async fn run(socket: WebSocket, host: Arc<Host>) {
    let conn = host.next_conn_id();
    let span = tracing::info_span!("conn", id = conn);
    async move {
        tracing::debug!("connected");
        let (sink, mut stream) = socket.split();
        let outbox = Arc::new(Outbox::new(host.config.limits.outbox_bytes));
        let mut writer = tokio::spawn(write_loop(sink, Arc::clone(&outbox)).in_current_span());
        let mut shutdown = host.shutdown_signal();
        // Server frames to every client (routes.changed) go through this.
        let _listed = host.connections.register(conn, &outbox);
        let mut session = Session { host, conn, outbox };
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => session.handle_text(&text).await,
                    Some(Ok(Message::Binary(_))) => {
                        session.send(protocol::error_frame(&protocol::FrameError::Binary.to_string()));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "read failed");
                        break;
                    }
                },
                _ = &mut writer => break,
                _ = shutdown.changed() => session.outbox.close(CloseReason::GOING_AWAY),
            }
        }
        session.end();
        // Let the writer flush what is queued (a close frame, usually).
        session.outbox.close(CloseReason::GOING_AWAY);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, outbox: Arc<Outbox>) {
    let mut batch = std::collections::VecDeque::new();
    loop {
        if let Some(reason) = outbox.next_batch(&mut batch).await {
            if reason == CloseReason::SLOW_CONSUMER {
                tracing::info!(code = reason.code, "closing slow consumer");
            }
            let frame = CloseFrame {
                code: reason.code,
                reason: reason.reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            return;
        }
        // Feed everything queued, then flush once: one syscall for a burst.
        for frame in batch.drain(..) {
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

impl Session {
    fn send(&self, frame: String) {
        // If the queue is full the connection is already closing.
        let _ = self.outbox.push(Frame::from(frame));
    }

    async fn handle_text(&mut self, text: &str) {
        match protocol::parse_command(text) {
            Ok(command) => self.handle(command).await,
            Err(error) => {
                let frame = match error.reply_to() {
                    Some((route, op)) => reply_error(route, op, &error.to_string(), &[]),
                    None => protocol::error_frame(&error.to_string()),
                };
                self.send(frame);
            }
        }
    }

    async fn handle(&mut self, command: Command<'_>) {
        let Command { route, op, payload } = command;
        let fail = |message: &str, problems: &[Problem]| reply_error(route, op, message, problems);
        let Some(plugin) = self.host.routes.get(route) else {
            let known = self.host.routes.names().join(", ");
            return self.send(fail(
                &format!("unknown route {route:?} (routes: {known})"),
                &[],
            ));
        };
        // The payload is valid JSON: the envelope parsed. Depth is bounded
        // by serde_json's recursion limit.
        let request: serde_json::Value = match serde_json::from_str(payload.get()) {
            Ok(value) => value,
            Err(e) => return self.send(fail(&format!("invalid request: {e}"), &[])),
        };
        if let Err(problems) = plugin.validate_request(&request) {
            return self.send(fail(&describe("invalid request", &problems), &problems));
        }
        let resolved = match plugin.topics(payload.get(), &self.host.config.limits).await {
            Ok(resolved) => resolved,
            Err(e) => return self.send(fail(&format!("cannot subscribe: {e}"), &[])),
        };
        let topic = resolved.topic;
        match op {
            Operation::Subscribe => {
                let max = self.host.config.limits.max_subscriptions;
                let registry = &self.host.registry;
                if !registry.holds(self.conn, &topic) && registry.held_count(self.conn) >= max {
                    return self.send(fail(
                        &format!("subscription limit reached ({max} per connection)"),
                        &[],
                    ));
                }
                // Already held: idempotent, nothing changes.
                self.host.registry.add(NewSubscription {
                    conn: self.conn,
                    outbox: &self.outbox,
                    route: &plugin.route,
                    topic: &topic,
                    request: &request,
                    keys: &resolved.keys,
                    resolved_by: &plugin.sha256,
                });
                let keys = (resolved.keys.len() != 1 || resolved.keys[0] != topic)
                    .then_some(&resolved.keys);
                let keys: Option<Vec<String>> =
                    keys.map(|k| k.iter().map(|k| k.to_string()).collect());
                self.send(reply_ok(route, op, "Subscribed", &topic, keys.as_deref()));
            }
            Operation::Unsubscribe => {
                // Unsubscribe by what was registered: a plugin upgraded since
                // may resolve the same request to other keys or topic.
                let removed = self
                    .host
                    .registry
                    .remove(self.conn, route, &topic, &request);
                let topic = removed.unwrap_or(topic);
                self.send(reply_ok(route, op, "Unsubscribed", &topic, None));
            }
        }
    }

    /// Remove every subscription of this connection.
    fn end(&mut self) {
        self.host.registry.remove_conn(self.conn);
    }
}

fn reply_ok(
    route: &str,
    op: Operation,
    message: &str,
    topic: &str,
    topics: Option<&[String]>,
) -> String {
    let reply = Reply {
        status: Status::Ok,
        message,
        topic: Some(topic),
        topics,
        errors: &[],
    };
    protocol::reply_frame(route, op, &reply)
}

fn reply_error(route: &str, op: Operation, message: &str, problems: &[Problem]) -> String {
    let reply = Reply {
        status: Status::Error,
        message,
        topic: None,
        topics: None,
        errors: problems,
    };
    protocol::reply_frame(route, op, &reply)
}

/// "invalid request: /symbol: ...; /resolution: ..." in one line.
fn describe(what: &str, problems: &[Problem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| {
            if p.path.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.path, p.message)
            }
        })
        .collect();
    format!("{what}: {}", parts.join("; "))
}
