//! The WebSocket endpoints: `/api/v1/ws` (every route) and
//! `/api/v1/<tag>/ws` (the routes whose plugin lists the tag).
//!
//! The upgrade handler only applies frame limits and hands the socket to
//! [`run`]: a spawned writer drains the session's outbox into the socket
//! (with the heartbeat), the reader loop hands each client frame to the
//! session, one at a time, at the pace the command rate allows (it stops
//! reading meanwhile). When either side ends, the session is dropped,
//! which ends its subscriptions.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Extension,
    extract::{
        OriginalUri, Path, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, rejection::WebSocketUpgradeRejection},
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use tracing::Instrument;

use super::{
    auth::{Admitted, Security},
    conn::OverLimit,
    docs,
};
use crate::hub::{
    Host,
    outbox::{CloseReason, Frame, Outbox},
    ratelimit::{Admission, RateLimit},
    session::Session,
};

/// Initial read buffer of a connection.
const READ_BUFFER_BYTES: usize = 1024;

/// `GET /api/v1/ws`. A browser page of a foreign origin gets 403; without
/// a valid token (when tokens are required), 401.
pub async fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(host): State<Arc<Host>>,
    Extension(security): Extension<Arc<Security>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    over: Option<Extension<OverLimit>>,
) -> Response {
    let admitted = match security.admit_client(&headers, &uri) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    if !host.started() {
        return starting();
    }
    match ws {
        Ok(ws) => accept(ws, host, None, admitted, over.is_some()),
        Err(rejection) => rejection.into_response(),
    }
}

/// `GET /api/v1/<tag>/ws`: the same protocol, for the routes tagged `tag`
/// only. A tag no route has is a 404.
#[allow(clippy::too_many_arguments)] // Axum extractors.
pub async fn upgrade_module(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(host): State<Arc<Host>>,
    Extension(security): Extension<Arc<Security>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(tag): Path<String>,
    over: Option<Extension<OverLimit>>,
) -> Response {
    if !host.started() {
        return starting();
    }
    // An unknown module is a 404 whatever the request (not a 400 for a
    // plain GET).
    if !docs::module_exists(&host, &tag) {
        return docs::unknown_module(&host, &tag);
    }
    let admitted = match security.admit_client(&headers, &uri) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    match ws {
        Ok(ws) => accept(ws, host, Some(tag), admitted, over.is_some()),
        Err(rejection) => rejection.into_response(),
    }
}

/// 503 with `Retry-After`, to a client that comes before the startup
/// plugins are loaded: it would find no routes, and a client renewing its
/// subscriptions after a restart would lose them ("unknown route").
/// Clients retry a failed handshake with backoff.
fn starting() -> Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "1")],
        "the host is starting: its plugins are still loading; retry shortly\n",
    )
        .into_response()
}

fn accept(
    ws: WebSocketUpgrade,
    host: Arc<Host>,
    tag: Option<String>,
    admitted: Admitted,
    over: bool,
) -> Response {
    let max = host.config().limits.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        // Clients send a few small commands; the 128 KiB default read
        // buffer was most of an idle connection's memory. It grows when a
        // larger frame arrives.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            let session = match host.open_session() {
                Ok(session) if !over => session,
                // Over the limit: a browser sees a close code it can act on
                // (retry later), not an opaque failed handshake.
                _ => return refuse(socket, CloseReason::TOO_MANY_CONNECTIONS).await,
            };
            let session = match &tag {
                Some(tag) => session.only_tagged(tag),
                None => session,
            };
            let session = match admitted {
                Some((identity, verifier)) => session.authenticated(identity, verifier),
                None => session,
            };
            run(socket, host, session).await
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

async fn run(socket: WebSocket, host: Arc<Host>, session: Session) {
    let identity = session.identity();
    let subject = identity.as_ref().and_then(|i| i.subject.as_deref());
    let span = tracing::info_span!("conn", id = session.id(), sub = subject);
    async move {
        tracing::debug!("connected");
        let (sink, mut stream) = socket.split();
        let limits = &host.config().limits;
        let outbox = Arc::clone(session.outbox());
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
        let mut rate = RateLimit::new(
            limits.commands_per_sec,
            Duration::from_millis(limits.rate_limit_close_after_ms),
        );
        let mut end = CloseReason::NORMAL;
        // The token's expiry closes the connection (4001), unless a refresh
        // moves it; boxed, and only on authenticated connections.
        let mut expires = session.expires();
        let mut expiry = expires.map(|at| Box::pin(tokio::time::sleep_until(instant_of(at))));
        loop {
            tokio::select! {
                () = until(&mut expiry) => {
                    tracing::info!("closing client: token expired");
                    end = CloseReason::TOKEN_EXPIRED;
                    break;
                }
                message = stream.next() => {
                    if matches!(message, Some(Ok(_))) {
                        liveness.heard();
                    }
                    let command = matches!(message, Some(Ok(Message::Text(_) | Message::Binary(_))));
                    if command {
                        match rate.admit() {
                            Admission::Now => {}
                            Admission::Abusive => {
                                tracing::info!("closing client: over the command rate for too long");
                                end = CloseReason::RATE_LIMIT;
                                break;
                            }
                            // Boxed like a command: only a paced connection
                            // needs the timer's memory.
                            Admission::After(wait) => {
                                if !Box::pin(pause(wait, &mut shutdown)).await {
                                    end = CloseReason::GOING_AWAY;
                                    break;
                                }
                            }
                        }
                    }
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            // Boxed: a command's future (a plugin call among
                            // it) is large and short-lived; inline, every
                            // idle connection would carry its size.
                            Box::pin(session.handle_text(&text)).await;
                            if session.expires() != expires {
                                expires = session.expires();
                                if let (Some(sleep), Some(at)) = (&mut expiry, expires) {
                                    sleep.as_mut().reset(instant_of(at));
                                }
                            }
                        }
                        Some(Ok(Message::Binary(_))) => session.handle_binary(),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "read failed");
                            end = read_error_close(e);
                            break;
                        }
                    }
                    if outbox.is_closing() {
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
        session.close(end);
        // Let the writer flush what is queued, then the close frame; the
        // session (and its place in the connection count) lasts until then.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        drop(session);
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await
}

/// The runtime's instant for wall-clock time `at` (now, if it has passed).
fn instant_of(at: std::time::SystemTime) -> tokio::time::Instant {
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::Instant::now() + left
}

/// Resolves when `sleep` ends; never without one.
async fn until(sleep: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Wait `wait` before handling the command just read (the command rate
/// says so); nothing is read meanwhile, so the client's sends back up (TCP
/// flow control). False if the host started shutting down instead.
async fn pause(wait: Duration, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        _ = shutdown.changed() => false,
    }
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

/// A frame for the socket, as it is (see [`Frame`]).
fn text(frame: Frame) -> Message {
    Message::Text(frame.into_text())
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
                sink.feed(text(frame)).await?;
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
