//! Client connections: connect from one of several loopback source
//! addresses, subscribe through the wire protocol, then count update frames
//! and record their latency.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

pub type Ws = WebSocketStream<TcpStream>;

const SHARDS: usize = 32;

/// Process-wide clock: payload timestamps are nanoseconds since `EPOCH`.
pub fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[repr(align(64))]
#[derive(Default)]
struct Counter(AtomicU64);

/// Delivered-frame counters and latency histograms, sharded by connection so
/// that reader tasks on different threads rarely touch the same lock.
pub struct Stats {
    delivered: Vec<Counter>,
    hists: Vec<Mutex<Histogram<u64>>>,
    /// Connections the server closed (or that failed) during the run.
    pub closed: AtomicU64,
}

impl Stats {
    pub fn new() -> Arc<Stats> {
        Arc::new(Stats {
            delivered: (0..SHARDS).map(|_| Counter::default()).collect(),
            hists: (0..SHARDS).map(|_| Mutex::new(new_hist())).collect(),
            closed: AtomicU64::new(0),
        })
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Forget latencies recorded so far (end of warm-up).
    pub fn reset_latency(&self) {
        for h in &self.hists {
            h.lock().unwrap_or_else(|p| p.into_inner()).reset();
        }
    }

    /// All shards' latencies merged.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = new_hist();
        for h in &self.hists {
            let h = h.lock().unwrap_or_else(|p| p.into_inner());
            let _ = all.add(&*h);
        }
        all
    }

    fn record(&self, shard: usize, latency_ns: u64) {
        let shard = shard % SHARDS;
        self.delivered[shard].0.fetch_add(1, Ordering::Relaxed);
        let mut h = self.hists[shard].lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(latency_ns / 1000);
    }
}

/// Latency in microseconds, 1 µs to 100 s, 3 significant figures.
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// The `"ts":<digits>` timestamp in an update frame. The load generator
/// writes it as the data's last field and every server under test passes
/// data through, so it ends either the frame or the data, which a route
/// with history follows with its update's position
/// (`..."ts":N},"offset":O,"epoch":"E"}}`): both are found by a short scan
/// from the end, so that the generator, which shares the machine's cores
/// with the server, spends the same on every frame. A forward search is the
/// fallback.
pub fn find_ts(frame: &[u8]) -> Option<u64> {
    let mut end = frame.len();
    while end > 0 && frame[end - 1] == b'}' {
        end -= 1;
    }
    if let Some(ts) = ts_ending_at(frame, end) {
        return Some(ts);
    }
    // The position's fields hold no `}`: the data ends at the last one.
    if let Some(close) = frame[..end].iter().rposition(|&b| b == b'}')
        && let Some(ts) = ts_ending_at(frame, close)
    {
        return Some(ts);
    }
    let pat = b"\"ts\":";
    let at = frame.windows(pat.len()).rposition(|w| w == pat)? + pat.len();
    let digits = frame[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    parse_digits(&frame[at..at + digits])
}

/// The timestamp whose digits end right before `end`.
fn ts_ending_at(frame: &[u8], end: usize) -> Option<u64> {
    let mut start = end;
    while start > 0 && frame[start - 1].is_ascii_digit() {
        start -= 1;
    }
    if start < end && frame[..start].ends_with(b"\"ts\":") {
        return parse_digits(&frame[start..end]);
    }
    None
}

fn parse_digits(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    Some(d.iter().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')))
}

/// Where to connect and from which source addresses.
#[derive(Clone)]
pub struct Target {
    /// Source addresses 127.0.0.1 ..= 127.0.0.<sources>.
    pub sources: u8,
    /// Every (URL, address) when several servers were given, comma
    /// separated (nodes of one cluster): connection `i` goes to the
    /// `i % n`-th.
    nodes: Vec<(String, SocketAddr)>,
}

impl Target {
    pub fn new(url: &str, sources: u8) -> anyhow::Result<Target> {
        let mut nodes = Vec::new();
        for url in url.split(',') {
            let rest = url
                .strip_prefix("ws://")
                .context("the WebSocket URL must start with ws://")?;
            let hostport = rest.split('/').next().unwrap_or(rest);
            let addr: SocketAddr = hostport
                .parse()
                .with_context(|| format!("{hostport:?} is not an IP:port"))?;
            nodes.push((url.to_owned(), addr));
        }
        Ok(Target {
            sources: sources.max(1),
            nodes,
        })
    }

    /// Open connection number `i`, from source address 127.0.0.(1 + i % sources).
    /// A server out of descriptors leaves connections in its accept queue:
    /// give up after 10 s instead of waiting forever.
    pub async fn connect(&self, i: usize) -> anyhow::Result<Ws> {
        tokio::time::timeout(Duration::from_secs(10), self.connect_now(i))
            .await
            .context("connect and handshake took over 10 s")?
    }

    async fn connect_now(&self, i: usize) -> anyhow::Result<Ws> {
        let (url, addr) = &self.nodes[i % self.nodes.len()];
        let socket = TcpSocket::new_v4()?;
        if addr.ip().is_loopback() {
            let src = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(self.sources)) as u8);
            socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
        }
        // Ports of earlier runs linger in TIME_WAIT; they may be reused.
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        let stream = socket.connect(*addr).await?;
        stream.set_nodelay(true)?;
        // Small buffers: the generator holds tens of thousands of these.
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let (ws, _) = client_async_with_config(url.as_str(), stream, Some(config)).await?;
        Ok(ws)
    }
}

/// `{"type":"<route>.subscribe","payload":<request>}`.
pub fn subscribe_frame(route: &str, request: &str) -> String {
    format!(r#"{{"type":"{route}.subscribe","payload":{request}}}"#)
}

/// Send the subscribe frames, then wait for each reply; returns the topics
/// the server named. Updates arriving meanwhile are ignored.
pub async fn subscribe_all(ws: &mut Ws, frames: &[String]) -> anyhow::Result<Vec<String>> {
    for frame in frames {
        ws.feed(Message::text(frame.as_str())).await?;
    }
    ws.flush().await?;
    let mut topics = Vec::with_capacity(frames.len());
    while topics.len() < frames.len() {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .context("no subscribe reply within 60 s")?;
        match msg {
            Some(Ok(Message::Text(text))) => {
                if !text.contains(".subscribe.response") {
                    continue;
                }
                topics.push(reply_topic(&text)?);
            }
            Some(Ok(Message::Close(c))) => bail!("closed while subscribing: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended while subscribing"),
        }
    }
    Ok(topics)
}

/// The topic of an ok subscribe reply; an error otherwise.
pub fn reply_topic(text: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(text)?;
    let payload = &v["payload"];
    if payload["status"] != "ok" {
        bail!("subscribe refused: {text}");
    }
    payload["topic"]
        .as_str()
        .map(str::to_owned)
        .context("subscribe reply without a topic")
}

/// Read until the connection ends, counting update frames and their latency.
pub async fn read_updates(mut ws: Ws, shard: usize, stats: Arc<Stats>) {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(text)) => {
                if let Some(ts) = find_ts(text.as_bytes()) {
                    stats.record(shard, now_ns().saturating_sub(ts));
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    stats.closed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_timestamp_from_either_end() {
        let f = br#"{"type":"bars.update","payload":{"topic":"t","payload":{"time":1,"pad":"x","ts":12345}}}"#;
        assert_eq!(find_ts(f), Some(12345));
        let g = br#"{"type":"bars.update","payload":{"topic":"t","payload":{"ts":77,"time":1}}}"#;
        assert_eq!(find_ts(g), Some(77));
        assert_eq!(find_ts(br#"{"type":"x"}"#), None);
        // A route with history appends the update's position after the data.
        let h = br#"{"type":"bars.update","payload":{"topic":"t","payload":{"pad":"x","ts":42},"offset":7,"epoch":"0a1b2c3d4e5f"}}"#;
        assert_eq!(find_ts(h), Some(42));
        let k = br#"{"type":"bars.update","payload":{"topic":"t","payload":{"ts":9},"key":"bars:{\"s\":1}","offset":7,"epoch":"e"}}"#;
        assert_eq!(find_ts(k), Some(9));
    }
}
