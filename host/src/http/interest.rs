//! `GET /api/v1/interest`: what is wanted, as Server-Sent Events, for
//! publishers that produce only keys somebody subscribes to.
//!
//! The stream opens with one `wanted` event per key with subscribers
//! (`{"route","key","subscribers"}`), then `synced` (`{"keys":N}`), then
//! `first` / `last` (`{"route","key"}`) whenever a key gains its first
//! subscriber or loses its last (with the Redis broker, on any node).
//!
//! Bounded: behind the publish key; at most `--max-interest-streams` open
//! at once (503 past that); a reader that does not keep up (its events
//! unread for [`SLOW`], or more than the interest queue behind) is sent an
//! `error` event and closed, to reconnect and start from a fresh snapshot.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Extension,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::auth::{Security, refusal};
use crate::hub::{
    Host,
    interest::{InterestEvent, InterestStream},
};

/// Events queued to one reader before the write waits.
const QUEUED: usize = 256;
/// The longest a write may wait for the reader before it is closed.
const SLOW: Duration = Duration::from_secs(5);

/// The interest streams open now, bounded.
#[derive(Clone)]
pub struct Streams(Arc<Semaphore>);

impl Streams {
    pub fn new(max: usize) -> Streams {
        Streams(Arc::new(Semaphore::new(max)))
    }
}

/// `GET /api/v1/interest`.
pub async fn stream(
    State(host): State<Arc<Host>>,
    Extension(security): Extension<Arc<Security>>,
    Extension(streams): Extension<Streams>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = security.admit_publisher(&headers) {
        return refused;
    }
    let Ok(permit) = Arc::clone(&streams.0).try_acquire_owned() else {
        let mut response = refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many interest streams open: try again later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::spawn(feed(host.interest(), tx, permit, host.shutdown_signal()));
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Turn the interest stream into events for one reader, until it leaves,
/// falls behind, or the host shuts down.
async fn feed(
    mut interest: InterestStream,
    tx: mpsc::Sender<Event>,
    _permit: OwnedSemaphorePermit,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            next = interest.next_strict() => next,
            () = tx.closed() => return,
            _ = shutdown.changed() => return,
        };
        let events = match next {
            Ok(InterestEvent::Snapshot(keys)) => {
                let n = keys.len();
                let mut events: Vec<Event> =
                    keys.iter().map(|w| event("wanted", json!(w))).collect();
                events.push(event("synced", json!({ "keys": n })));
                events
            }
            Ok(InterestEvent::First { route, key }) => {
                vec![event("first", json!({ "route": route, "key": key }))]
            }
            Ok(InterestEvent::Last { route, key }) => {
                vec![event("last", json!({ "route": route, "key": key }))]
            }
            Err(ended) => {
                let message = format!("{ended}: reconnect for a fresh snapshot");
                let _ = tx.try_send(event("error", json!({ "message": message })));
                return;
            }
        };
        for e in events {
            match tokio::time::timeout(SLOW, tx.send(e)).await {
                Ok(Ok(())) => {}
                // Gone, or not reading: close rather than hold its events.
                Ok(Err(_)) | Err(_) => {
                    tracing::debug!("closed an interest stream whose reader does not keep up");
                    return;
                }
            }
        }
    }
}

fn event(name: &str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}
