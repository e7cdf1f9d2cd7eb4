//! `bare-fanout`: the ceiling for this WebSocket stack. The same axum
//! WebSocket, envelope, topics and publish endpoint as ws-router, with no
//! plugins, no validation and no limits: each publication is encoded once
//! and the shared bytes go to every subscriber's unbounded queue, whose
//! writer feeds everything queued and flushes once.
//!
//! Usage: `bare-fanout [ADDR]` (default 127.0.0.1:8103).

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context;
use axum::{
    Router,
    body::Bytes,
    extract::{
        State, WebSocketUpgrade,
        ws::{Message, Utf8Bytes, WebSocket},
    },
    response::{IntoResponse, Response},
    routing::{get, post},
    serve::ListenerExt,
};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};
use tokio::sync::mpsc;

type Tx = mpsc::UnboundedSender<Utf8Bytes>;

#[derive(Default)]
struct Hub {
    topics: RwLock<HashMap<String, Vec<(u64, Tx)>>>,
    next: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8103".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let hub = Arc::new(Hub::default());
        let app = Router::new()
            .route("/api/v1/ws", get(upgrade))
            .route("/api/v1/publish", post(publish))
            .with_state(hub);
        let addr: std::net::SocketAddr = addr
            .parse()
            .with_context(|| format!("bad address {addr}"))?;
        // The host's listen backlog (4096; `TcpListener::bind` gives 128), so
        // bursts of connects compare fairly. Not shared with the host: the
        // ceiling depends on nothing of it.
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket
            .bind(addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
        let listener = socket.listen(4096)?;
        println!("listening on {addr}");
        // The same socket settings as the host: TCP_NODELAY on every accepted socket.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}

async fn upgrade(ws: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    // The same buffer size as the host.
    ws.read_buffer_size(1024)
        .on_upgrade(move |socket| session(socket, hub))
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    payload: Value,
}

async fn session(socket: WebSocket, hub: Arc<Hub>) {
    let id = hub.next.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 1024).await > 0 {
            for frame in batch.drain(..) {
                if sink.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut mine: Vec<String> = Vec::new();
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(env) = serde_json::from_str::<Envelope>(&text) else {
            continue;
        };
        let Some((route, op)) = env.ty.rsplit_once('.') else {
            continue;
        };
        let topic = topic_of(route, env.payload);
        let (message, reply_op) = match op {
            "subscribe" => {
                let mut topics = hub.topics.write().unwrap_or_else(|p| p.into_inner());
                let subs = topics.entry(topic.clone()).or_default();
                if !subs.iter().any(|(c, _)| *c == id) {
                    subs.push((id, tx.clone()));
                    mine.push(topic.clone());
                }
                ("Subscribed", "subscribe")
            }
            "unsubscribe" => {
                remove(&hub, &topic, id);
                mine.retain(|t| *t != topic);
                ("Unsubscribed", "unsubscribe")
            }
            _ => continue,
        };
        let reply = serde_json::json!({
            "type": format!("{route}.{reply_op}.response"),
            "payload": {"status": "ok", "message": message, "topic": topic},
        });
        let _ = tx.send(Utf8Bytes::from(reply.to_string()));
    }
    for topic in mine {
        remove(&hub, &topic, id);
    }
    writer.abort();
}

fn remove(hub: &Hub, topic: &str, id: u64) {
    let mut topics = hub.topics.write().unwrap_or_else(|p| p.into_inner());
    if let Some(subs) = topics.get_mut(topic) {
        subs.retain(|(c, _)| *c != id);
        if subs.is_empty() {
            topics.remove(topic);
        }
    }
}

/// `<route>:<request with keys sorted>`, with the bars default applied so
/// that topics match the host's byte for byte.
fn topic_of(route: &str, mut request: Value) -> String {
    if route == "bars"
        && let Value::Object(map) = &mut request
    {
        map.entry("resolution").or_insert_with(|| Value::from("1"));
    }
    let mut out = format!("{route}:");
    canonical(&request, &mut out);
    out
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Null => out.push_str("\"\""),
        other => out.push_str(&other.to_string()),
    }
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    route: &'a str,
    #[serde(borrow)]
    topic: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

async fn publish(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    let items: Vec<Item<'_>> = match serde_json::from_slice::<Vec<Item<'_>>>(&body) {
        Ok(items) => items,
        Err(_) => match serde_json::from_slice::<Item<'_>>(&body) {
            Ok(item) => vec![item],
            Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
    };
    let mut delivered = 0usize;
    let topics = hub.topics.read().unwrap_or_else(|p| p.into_inner());
    for item in &items {
        let Some(subs) = topics.get(&*item.topic) else {
            continue;
        };
        let mut frame = String::with_capacity(64 + item.topic.len() * 2 + item.data.get().len());
        frame.push_str("{\"type\":\"");
        frame.push_str(item.route);
        frame.push_str(".update\",\"payload\":{\"topic\":");
        frame.push_str(&Value::from(&*item.topic).to_string());
        frame.push_str(",\"payload\":");
        frame.push_str(item.data.get());
        frame.push_str("}}");
        let frame = Utf8Bytes::from(frame);
        for (_, tx) in subs {
            if tx.send(frame.clone()).is_ok() {
                delivered += 1;
            }
        }
    }
    drop(topics);
    axum::Json(serde_json::json!({"delivered": delivered, "failed": 0})).into_response()
}
