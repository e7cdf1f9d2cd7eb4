//! Issue 15: several nodes with Redis between them, against a real
//! `redis-server` (`just redis-deps`) and two real host processes; and the
//! interest stream (`GET /api/v1/interest`).

#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::time::{Duration, Instant};

use redis_server::{
    Redis,
    nodes::{broker, connected, node, node_with, until},
};
use serde_json::{Value, json};
use support::{Client, Event, Host};

const KEY: &str = "trades:AAPL";
const CHANNEL: &str = "ws-router:u:trades:AAPL";

/// Nodes subscribed in Redis to `channel`.
fn subscribers_in_redis(redis: &Redis, channel: &str) -> u64 {
    redis
        .command(&["PUBSUB", "NUMSUB", channel])
        .lines()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn subscribe_trades(c: &mut Client, symbol: &str) {
    c.subscribe("trades", json!({"symbols": [symbol]})).await;
}

async fn publish_trade(host: &Host, price: f64) -> Value {
    let reply = host
        .publish(&json!({
            "route": "trades",
            "key": KEY,
            "data": {"symbol": "AAPL", "price": price, "quantity": 1.0, "time": 1, "side": "buy"},
        }))
        .await;
    reply["results"][0].clone()
}

/// The prices of the trades updates `c` receives within `quiet` of the last.
async fn prices(c: &mut Client, quiet: Duration) -> Vec<f64> {
    let mut got = Vec::new();
    while let Some(event) = c.next_event(quiet).await {
        match event {
            Event::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "trades.update" {
                    got.push(v["payload"]["payload"]["price"].as_f64().unwrap());
                }
            }
            Event::Closed(c) => panic!("client closed: {c:?}"),
        }
    }
    got
}

/// Publications from two nodes have no order between them.
fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn metrics(host: &Host) -> String {
    reqwest::get(host.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_publication_on_one_node_reaches_a_client_on_the_other_exactly_once() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let mut on_b = b.client().await;
    subscribe_trades(&mut on_b, "AAPL").await;
    until("B subscribes in Redis", async || {
        subscribers_in_redis(&redis, CHANNEL) == 1
    })
    .await;
    let result = publish_trade(&a, 101.0).await;
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["cluster"], "ok", "{result}");
    // A has no subscriber: it delivered to nobody itself.
    assert_eq!(result["delivered"], 0, "{result}");
    assert_eq!(prices(&mut on_b, Duration::from_millis(700)).await, [101.0]);
}

#[tokio::test]
async fn clients_on_both_nodes_each_get_one_publication() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let (mut on_a, mut on_b) = (a.client().await, b.client().await);
    subscribe_trades(&mut on_a, "AAPL").await;
    subscribe_trades(&mut on_b, "AAPL").await;
    until("both nodes subscribe in Redis", async || {
        subscribers_in_redis(&redis, CHANNEL) == 2
    })
    .await;
    for (host, price) in [(&a, 1.0), (&b, 2.0)] {
        let result = publish_trade(host, price).await;
        assert_eq!(result["cluster"], "ok", "{result}");
    }
    assert_eq!(
        sorted(prices(&mut on_a, Duration::from_millis(700)).await),
        [1.0, 2.0]
    );
    assert_eq!(
        sorted(prices(&mut on_b, Duration::from_millis(300)).await),
        [1.0, 2.0]
    );
}

#[tokio::test]
async fn a_node_without_local_subscribers_receives_nothing_for_the_key() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let mut on_a = a.client().await;
    subscribe_trades(&mut on_a, "AAPL").await;
    until("A subscribes in Redis", async || {
        subscribers_in_redis(&redis, CHANNEL) == 1
    })
    .await;
    for price in [1.0, 2.0, 3.0] {
        publish_trade(&a, price).await;
    }
    assert_eq!(
        prices(&mut on_a, Duration::from_millis(500)).await,
        [1.0, 2.0, 3.0]
    );
    // Only A is subscribed to the channel: B was sent nothing.
    assert_eq!(subscribers_in_redis(&redis, CHANNEL), 1);
    let text = metrics(&b).await;
    assert_eq!(
        metric(&text, "ws_router_broker_received_total"),
        0.0,
        "{text}"
    );
    assert_eq!(metric(&text, "ws_router_broker_channels"), 0.0, "{text}");
    // A client on B makes B subscribe; its leaving, unsubscribe.
    let mut on_b = b.client().await;
    subscribe_trades(&mut on_b, "AAPL").await;
    until("B subscribes", async || {
        subscribers_in_redis(&redis, CHANNEL) == 2
    })
    .await;
    on_b.close().await;
    until("B unsubscribes", async || {
        subscribers_in_redis(&redis, CHANNEL) == 1
    })
    .await;
    on_a.close().await;
    until("A unsubscribes", async || {
        subscribers_in_redis(&redis, CHANNEL) == 0
    })
    .await;
}

/// Many subscriptions at once are (un)subscribed in Redis in batches, and
/// every key ends up subscribed.
#[tokio::test]
async fn a_subscribe_storm_ends_with_every_key_subscribed_in_redis() {
    let redis = Redis::start();
    let a = node_with(&redis, &["--commands-per-sec", "100000"]);
    until("A reaches Redis", async || broker(&a).await["up"] == true).await;
    let mut c = a.client().await;
    let symbols: Vec<String> = (0..200).map(|i| format!("S{i}")).collect();
    for s in &symbols {
        c.send(&json!({"type": "trades.subscribe", "payload": {"symbols": [s]}}))
            .await;
    }
    for _ in &symbols {
        let reply = c.recv().await;
        assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    }
    until("200 channels in Redis", async || {
        redis
            .command(&["PUBSUB", "CHANNELS", "ws-router:u:*"])
            .lines()
            .count()
            == 200
    })
    .await;
    c.close().await;
    until("none left", async || {
        redis
            .command(&["PUBSUB", "CHANNELS", "ws-router:u:*"])
            .is_empty()
    })
    .await;
}

#[tokio::test]
async fn redis_restarting_loses_no_subscription_and_local_delivery_goes_on() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let (mut on_a, mut on_b) = (a.client().await, b.client().await);
    subscribe_trades(&mut on_a, "AAPL").await;
    subscribe_trades(&mut on_b, "AAPL").await;
    until("both nodes subscribe in Redis", async || {
        subscribers_in_redis(&redis, CHANNEL) == 2
    })
    .await;

    redis.kill();
    until("A sees Redis gone", async || {
        broker(&a).await["up"] == false
    })
    .await;
    // Local delivery goes on; the reply says the other nodes missed it.
    let result = publish_trade(&a, 10.0).await;
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["cluster"], "unavailable", "{result}");
    assert_eq!(result["delivered"], 1, "{result}");
    assert_eq!(prices(&mut on_a, Duration::from_millis(300)).await, [10.0]);
    let result = publish_trade(&b, 11.0).await;
    assert_eq!(result["delivered"], 1, "{result}");
    assert_eq!(prices(&mut on_b, Duration::from_millis(300)).await, [11.0]);
    assert!(
        prices(&mut on_a, Duration::from_millis(300))
            .await
            .is_empty()
    );
    let text = metrics(&a).await;
    assert_eq!(metric(&text, "ws_router_broker_up"), 0.0, "{text}");
    // Said once, not once per publication.
    let gone = a
        .logs()
        .iter()
        .filter(|l| l.contains("Redis unreachable"))
        .count();
    assert_eq!(gone, 1, "{:?}", a.logs());

    redis.restart();
    connected(&a, &b).await;
    until("both nodes subscribe again", async || {
        subscribers_in_redis(&redis, CHANNEL) == 2
    })
    .await;
    let result = publish_trade(&a, 20.0).await;
    assert_eq!(result["cluster"], "ok", "{result}");
    let result = publish_trade(&b, 21.0).await;
    assert_eq!(result["cluster"], "ok", "{result}");
    // The same connections, never subscribed again. (Publications from
    // two nodes have no order between them: each node's own come first.)
    assert_eq!(
        sorted(prices(&mut on_a, Duration::from_millis(700)).await),
        [20.0, 21.0]
    );
    assert_eq!(
        sorted(prices(&mut on_b, Duration::from_millis(300)).await),
        [20.0, 21.0]
    );
    assert!(
        a.wait_for_log("Redis reachable", Duration::from_secs(1))
            .await
            .contains("resumed")
    );
}

/// An SSE reader of `GET /api/v1/interest`.
struct Interest {
    response: reqwest::Response,
    buf: String,
}

impl Interest {
    async fn open(host: &Host, key: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(host.http("/api/v1/interest"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("GET /api/v1/interest")
    }

    async fn connect(host: &Host) -> Interest {
        let response = Interest::open(host, None).await;
        assert_eq!(response.status(), 200);
        Interest {
            response,
            buf: String::new(),
        }
    }

    /// The next event (name, data) within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if name.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until `synced`: the snapshot's keys.
    async fn snapshot(&mut self) -> Vec<Value> {
        let mut keys = Vec::new();
        loop {
            match self.next(Duration::from_secs(5)).await {
                Some((name, data)) if name == "wanted" => keys.push(data),
                Some((name, _)) if name == "synced" => return keys,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn the_interest_stream_reports_first_and_last_subscribers_across_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let mut on_a = a.client().await;
    subscribe_trades(&mut on_a, "MSFT").await;
    // B learns of A's key: B's stream starts with it.
    let mut stream = Interest::connect(&b).await;
    let mut snapshot = stream.snapshot().await;
    if snapshot.is_empty() {
        // B's snapshot may predate A's announcement; then the change comes.
        let (name, data) = stream.next(Duration::from_secs(5)).await.expect("first");
        assert_eq!(name, "first");
        snapshot.push(json!({"route": data["route"], "key": data["key"], "subscribers": 1}));
    }
    assert_eq!(
        snapshot,
        [json!({"route": "trades", "key": "trades:MSFT", "subscribers": 1})]
    );
    // A first subscriber on B to a key nobody wanted: `first`.
    let mut on_b = b.client().await;
    subscribe_trades(&mut on_b, "TSLA").await;
    let event = stream.next(Duration::from_secs(5)).await;
    assert_eq!(
        event,
        Some((
            "first".into(),
            json!({"route": "trades", "key": "trades:TSLA"})
        ))
    );
    // A second node wanting MSFT is no news; neither is one of the two
    // letting go.
    subscribe_trades(&mut on_b, "MSFT").await;
    on_a.close().await;
    // B's own MSFT subscriber leaves: now nobody wants it.
    on_b.send(&json!({"type": "trades.unsubscribe", "payload": {"symbols": ["MSFT"]}}))
        .await;
    let event = stream.next(Duration::from_secs(5)).await;
    assert_eq!(
        event,
        Some((
            "last".into(),
            json!({"route": "trades", "key": "trades:MSFT"})
        ))
    );
    // A's stream sees B's TSLA subscriber, and its leaving.
    // (B's MSFT leaving reaches A through Redis, a moment later.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut on_a_stream = loop {
        let mut s = Interest::connect(&a).await;
        let snapshot = s.snapshot().await;
        let keys: Vec<&Value> = snapshot.iter().map(|w| &w["key"]).collect();
        if keys == [&json!("trades:TSLA")] {
            break s;
        }
        assert!(Instant::now() < deadline, "A's snapshot: {snapshot:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    on_b.close().await;
    let event = on_a_stream.next(Duration::from_secs(5)).await;
    assert_eq!(
        event,
        Some((
            "last".into(),
            json!({"route": "trades", "key": "trades:TSLA"})
        ))
    );
}

/// A node killed without a word stops counting after its record expires.
#[tokio::test]
async fn a_dead_node_stops_counting_after_a_bounded_time() {
    let redis = Redis::start();
    let (a, b) = (node(&redis), node(&redis));
    connected(&a, &b).await;
    let mut on_b = b.client().await;
    subscribe_trades(&mut on_b, "NVDA").await;
    let mut stream = Interest::connect(&a).await;
    let mut snapshot = stream.snapshot().await;
    if snapshot.is_empty() {
        let (name, data) = stream.next(Duration::from_secs(5)).await.expect("first");
        assert_eq!(name, "first");
        snapshot.push(data);
    }
    assert_eq!(snapshot[0]["key"], "trades:NVDA");
    let _ = std::process::Command::new("kill")
        .args(["-9", &b.pid().to_string()])
        .status();
    let started = Instant::now();
    let event = stream.next(Duration::from_secs(15)).await;
    assert_eq!(
        event,
        Some((
            "last".into(),
            json!({"route": "trades", "key": "trades:NVDA"})
        ))
    );
    assert!(started.elapsed() < Duration::from_secs(12));
    drop(on_b);
}

#[tokio::test]
async fn one_node_without_redis_behaves_as_before() {
    let host = Host::start();
    let mut c = host.client().await;
    subscribe_trades(&mut c, "AAPL").await;
    let result = publish_trade(&host, 5.0).await;
    assert_eq!(result["status"], "ok");
    assert_eq!(result["delivered"], 1);
    assert!(result.get("cluster").is_none(), "{result}");
    assert_eq!(prices(&mut c, Duration::from_millis(300)).await, [5.0]);
    assert_eq!(broker(&host).await["engine"], "memory");
    let text = metrics(&host).await;
    assert!(!text.contains("ws_router_broker_up"), "{text}");
    // The interest stream is this node's.
    let mut stream = Interest::connect(&host).await;
    assert_eq!(
        stream.snapshot().await,
        [json!({"route": "trades", "key": "trades:AAPL", "subscribers": 1})]
    );
    c.close().await;
    assert_eq!(
        stream.next(Duration::from_secs(5)).await,
        Some((
            "last".into(),
            json!({"route": "trades", "key": "trades:AAPL"})
        ))
    );
}

/// The interest stream is for publishers, and bounded.
#[tokio::test]
async fn interest_streams_need_the_publish_key_and_are_limited() {
    let host = Host::builder()
        .arg("--publish-key")
        .arg("secret-key")
        .arg("--max-interest-streams")
        .arg("2")
        .start();
    assert_eq!(Interest::open(&host, None).await.status(), 401);
    assert_eq!(Interest::open(&host, Some("wrong")).await.status(), 401);
    let first = Interest::open(&host, Some("secret-key")).await;
    let second = Interest::open(&host, Some("secret-key")).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = Interest::open(&host, Some("secret-key")).await;
    assert_eq!(third.status(), 503);
    assert!(third.headers().contains_key("retry-after"));
    // A stream closed by its reader frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let again = Interest::open(&host, Some("secret-key")).await;
        if again.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(second);
}

/// The demo feed publishes what is wanted: any symbol subscribed to.
#[tokio::test]
async fn the_demo_feed_publishes_the_symbols_subscribed_to() {
    let host = Host::builder().arg("--demo-feed").start();
    let mut c = host.client().await;
    let reply = c
        .subscribe("bars", json!({"symbol": "TSLA", "resolution": "5"}))
        .await;
    let update = c.recv().await;
    assert_eq!(update["type"], "bars.update", "{update}");
    assert_eq!(update["payload"]["topic"], reply["topic"]);
    assert!(update["payload"]["payload"]["close"].as_f64().unwrap() > 0.0);
}
