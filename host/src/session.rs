//! One WebSocket connection.
//!
//! The upgrade handler only applies frame limits and hands the socket to
//! [`run`]. A spawned writer drains the connection's [`Outbox`] into the
//! socket (replies and updates share it, so their order is kept); the reader
//! loop handles the client's commands one at a time. When either side ends,
//! the connection's subscriptions are removed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

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
    server::{ConnectionSlot, Host},
};

/// Initial read buffer of a connection.
const READ_BUFFER_BYTES: usize = 1024;

/// `GET /api/v1/ws`.
pub async fn upgrade(ws: WebSocketUpgrade, State(host): State<Arc<Host>>) -> Response {
    let max = host.config.limits.max_frame_bytes;
    let slot = host.admit();
    ws.max_message_size(max)
        .max_frame_size(max)
        // Clients send a few small commands; the 128 KiB default read
        // buffer was most of an idle connection's memory. It grows when a
        // larger frame arrives.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            match slot {
                Some(slot) => run(socket, host, slot).await,
                // Over the limit: a browser sees a close code it can act on
                // (retry later), not an opaque failed handshake.
                None => refuse(socket, CloseReason::TOO_MANY_CONNECTIONS).await,
            }
        })
}

async fn refuse(mut socket: WebSocket, reason: CloseReason) {
    tracing::warn!(code = reason.code, "connection refused: {}", reason.reason);
    let frame = CloseFrame {
        code: reason.code,
        reason: reason.reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// A connection's subscriptions are recorded in the registry (by topic:
/// the name the client knows each by), which keeps them across plugin
/// upgrades and ends them when their route is removed.
struct Session {
    host: Arc<Host>,
    conn: ConnId,
    outbox: Arc<Outbox>,
    rate: RateLimit,
}

/// Commands per second: a token bucket holding one second's worth.
struct RateLimit {
    per_sec: f64,
    tokens: f64,
    refilled: Instant,
    /// Commands refused in the current one-second window.
    refused: u32,
    window: Instant,
}

enum Admission {
    Allowed,
    Refused,
    /// Refused again and again: the client ignores the error replies.
    Abusive,
}

impl RateLimit {
    fn new(per_sec: u32) -> Self {
        let now = Instant::now();
        RateLimit {
            per_sec: f64::from(per_sec.max(1)),
            tokens: f64::from(per_sec.max(1)),
            refilled: now,
            refused: 0,
            window: now,
        }
    }

    fn admit(&mut self) -> Admission {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Allowed;
        }
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.refused = 0;
        }
        self.refused += 1;
        // Twice the allowed rate for a whole second is not an accident.
        if f64::from(self.refused) > self.per_sec {
            Admission::Abusive
        } else {
            Admission::Refused
        }
    }
}

/// When the connection last heard from the client, in milliseconds since
/// `since`; shared by the reader (which hears) and the writer (which pings).
struct Liveness {
    since: Instant,
    heard_ms: AtomicU64,
}

impl Liveness {
    fn now_ms(&self) -> u64 {
        self.since.elapsed().as_millis() as u64
    }

    fn heard(&self) {
        self.heard_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether the client was heard at or after `ms` (same clock, same
    /// rounding as `now_ms`: a pong in the ping's millisecond counts).
    fn heard_since(&self, ms: u64) -> bool {
        self.heard_ms.load(Ordering::Relaxed) >= ms
    }
}

async fn run(socket: WebSocket, host: Arc<Host>, _slot: ConnectionSlot) {
    let conn = host.next_conn_id();
    let span = tracing::info_span!("conn", id = conn);
    async move {
        tracing::debug!("connected");
        let (sink, mut stream) = socket.split();
        let limits = &host.config.limits;
        let outbox = Arc::new(Outbox::new(limits.outbox_bytes));
        let liveness = Arc::new(Liveness {
            since: Instant::now(),
            heard_ms: AtomicU64::new(0),
        });
        let heartbeat = Heartbeat {
            interval: limits.heartbeat_interval(),
            timeout: limits.heartbeat_timeout(),
            liveness: Arc::clone(&liveness),
        };
        let mut writer =
            tokio::spawn(write_loop(sink, Arc::clone(&outbox), heartbeat).in_current_span());
        let mut shutdown = host.shutdown_signal();
        let rate = RateLimit::new(limits.commands_per_sec);
        // Server frames to every client (routes.changed) go through this.
        let _listed = host.connections.register(conn, &outbox);
        let mut session = Session { host, conn, outbox, rate };
        let mut end = CloseReason::NORMAL;
        loop {
            tokio::select! {
                message = stream.next() => {
                    if matches!(message, Some(Ok(_))) {
                        liveness.heard();
                    }
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if session.admit() {
                                // Boxed: a command's future (a plugin call
                                // among it) is large and short-lived; inline,
                                // every idle connection would carry its size.
                                Box::pin(session.handle_text(&text)).await;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            if session.admit() {
                                session.send(protocol::error_frame(&protocol::FrameError::Binary.to_string()));
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "read failed");
                            end = read_error_close(e);
                            break;
                        }
                    }
                    if session.outbox.is_closing() {
                        break;
                    }
                },
                _ = &mut writer => break,
                _ = shutdown.changed() => {
                    end = CloseReason::GOING_AWAY;
                    break;
                }
            }
        }
        session.end();
        // Let the writer flush what is queued, then the close frame.
        session.outbox.close(end);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await
}

/// The protocol layer refused what the client sent: tell the client why
/// with the standard code.
fn read_error_close(e: axum::Error) -> CloseReason {
    use tungstenite::error::Error;
    match e.into_inner().downcast::<Error>().map(|e| *e) {
        Ok(Error::Utf8(_)) => CloseReason::INVALID_UTF8,
        Ok(Error::Capacity(_)) => CloseReason::TOO_BIG,
        _ => CloseReason::NORMAL,
    }
}

struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    liveness: Arc<Liveness>,
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    outbox: Arc<Outbox>,
    heartbeat: Heartbeat,
) {
    let mut batch = std::collections::VecDeque::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat.interval,
        heartbeat.interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the ping waiting for an answer was sent (liveness clock, ms).
    let mut outstanding: Option<u64> = None;
    // A client that does not take its data within the timeout is gone:
    // drop the socket rather than hold the writer (and the batch) forever.
    let write_timeout = heartbeat.timeout;
    loop {
        let closing = tokio::select! {
            reason = outbox.next_batch(&mut batch) => reason,
            _ = ticker.tick() => {
                if let Some(sent) = outstanding {
                    let waited = Duration::from_millis(heartbeat.liveness.now_ms().saturating_sub(sent));
                    if heartbeat.liveness.heard_since(sent) {
                        outstanding = None;
                    } else if waited >= heartbeat.timeout {
                        tracing::info!("closing client: no pong within {:?}", heartbeat.timeout);
                        outbox.close(CloseReason::HEARTBEAT_TIMEOUT);
                        continue;
                    }
                }
                if outstanding.is_none() {
                    outstanding = Some(heartbeat.liveness.now_ms());
                    let ping = tokio::time::timeout(write_timeout, sink.send(Message::Ping(Default::default())));
                    if !matches!(ping.await, Ok(Ok(()))) {
                        return;
                    }
                }
                continue;
            }
        };
        if let Some(reason) = closing {
            let frame = CloseFrame {
                code: reason.code,
                reason: reason.reason.into(),
            };
            let _ =
                tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(frame)))).await;
            return;
        }
        // Feed everything queued, then flush once: one syscall for a burst.
        let write = async {
            for frame in batch.drain(..) {
                sink.feed(Message::Text(frame)).await?;
            }
            sink.flush().await
        };
        // Boxed for the same reason as a command: only a connection that is
        // being written to needs this future's memory.
        match Box::pin(tokio::time::timeout(write_timeout, write)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("dropping client: a write blocked for {:?}", write_timeout);
                outbox.close(CloseReason::SLOW_CONSUMER);
                return;
            }
        }
    }
}

impl Session {
    /// Apply the command rate limit; `false` when the command is dropped.
    fn admit(&mut self) -> bool {
        match self.rate.admit() {
            Admission::Allowed => true,
            Admission::Refused => {
                let per_sec = self.host.config.limits.commands_per_sec;
                self.send(protocol::error_frame(&format!(
                    "rate limit: at most {per_sec} commands per second; this one was ignored"
                )));
                false
            }
            Admission::Abusive => {
                tracing::info!("closing client: rate limit exceeded repeatedly");
                self.outbox.close(CloseReason::RATE_LIMIT);
                false
            }
        }
    }

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
            return self.send(fail(
                &protocol::describe("invalid request", &problems),
                &problems,
            ));
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
