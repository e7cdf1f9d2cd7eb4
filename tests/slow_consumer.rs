//! Slow consumers: one client stops reading while others subscribe to the
//! same busy topic. The others keep receiving everything, the host's memory
//! stays bounded, and the slow one is treated as its route declares:
//! disconnected with 4008 (bars, queue-all) or conflated to the newest value
//! per topic (quotes, latest-value).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, Event, Host};

const BARS_TOPIC: &str = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;
const QUOTES_TOPIC: &str = r#"quotes:{"fast_symbols":[],"symbols":["AAPL"]}"#;
const BATCH: u64 = 250;
/// Enough to fill the slow client's socket buffers and outbox many times.
const MAX_UPDATES: u64 = 200_000;

fn bar(n: u64) -> Value {
    json!({"route": "bars", "topic": BARS_TOPIC,
           "data": {"time": n, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": n}})
}

fn quote(n: u64) -> Value {
    json!({"route": "quotes", "topic": QUOTES_TOPIC,
           "data": {"s": "ok", "n": "AAPL", "v": {"lp": 1.0, "ask": 1.1, "bid": 0.9, "spread": 0.2,
           "open_price": 1.0, "high_price": 1.2, "low_price": 0.8, "prev_close_price": 1.0, "ch": 0.0,
           "chp": 0.0, "volume": n, "short_name": "AAPL", "exchange": "X", "description": "Apple",
           "original_name": "AAPL"}}})
}

/// The sequence number an update frame carries.
fn seq(v: &Value) -> u64 {
    let data = &v["payload"]["payload"];
    data["time"]
        .as_u64()
        .or_else(|| data["v"]["volume"].as_u64())
        .expect("sequence")
}

/// A client that reads every update until `last` and checks none is missing.
fn fast_reader(
    mut c: Client,
    last: tokio::sync::watch::Receiver<u64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut last = last;
        let mut expected = 1;
        loop {
            let target = *last.borrow();
            if target != 0 && expected > target {
                return expected - 1;
            }
            let event = tokio::select! {
                event = c.next_event(Duration::from_secs(10)) => event,
                _ = last.changed() => continue,
            };
            match event {
                Some(Event::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(seq(&v), expected, "a fast client lost or reordered updates");
                    expected += 1;
                }
                other => panic!("a fast client was disturbed: {other:?} after {expected}"),
            }
        }
    })
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Publish numbered updates in batches until `done` says stop; returns the
/// last number published and the highest RSS seen.
async fn publish_until(
    host: &Host,
    update: impl Fn(u64) -> Value,
    mut done: impl FnMut(&Host, u64) -> bool,
) -> (u64, u64) {
    let mut n = 0;
    let mut peak_rss = 0;
    while n < MAX_UPDATES && !done(host, n) {
        let batch: Vec<Value> = (n + 1..=n + BATCH).map(&update).collect();
        let reply = host.publish(&Value::Array(batch)).await;
        assert!(
            reply["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "ok"),
            "{reply}"
        );
        n += BATCH;
        peak_rss = peak_rss.max(vm_rss_kib(host.pid()));
    }
    (n, peak_rss)
}

#[tokio::test]
async fn slow_bars_client_is_disconnected_with_4008_others_get_everything() {
    let host = Host::start();
    let mut slow = Client::connect_with_recv_buffer(&host.ws_url(), 8192).await;
    slow.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let (last_tx, last_rx) = tokio::sync::watch::channel(0);
    let mut fast = Vec::new();
    for _ in 0..2 {
        let mut c = host.client().await;
        c.subscribe("bars", json!({"symbol": "AAPL"})).await;
        fast.push(fast_reader(c, last_rx.clone()));
    }
    let rss_before = vm_rss_kib(host.pid());

    // The slow client reads nothing while the publisher runs.
    let (last, peak_rss) = publish_until(&host, bar, |host, _| {
        host.logs()
            .iter()
            .any(|l| l.contains("closing slow consumer"))
    })
    .await;
    assert!(
        last < MAX_UPDATES,
        "the slow client was never disconnected (RSS {rss_before} -> {peak_rss})"
    );
    // A few more after the disconnect: the others still get them.
    let (more, _) = publish_until(&host, |n| bar(n + last), |_, n| n >= 2 * BATCH).await;
    let last = last + more;
    last_tx.send(last).unwrap();
    for reader in fast {
        assert_eq!(reader.await.unwrap(), last);
    }

    // The slow client finds what was written before the close, then 4008.
    let mut previous = 0;
    let close = loop {
        match slow.next_event(Duration::from_secs(10)).await {
            Some(Event::Text(t)) => {
                let n = seq(&serde_json::from_str(&t).unwrap());
                assert!(n > previous, "out of order");
                previous = n;
            }
            other => break other,
        }
    };
    match close {
        Some(Event::Closed(Some((code, reason)))) => {
            assert_eq!(code, 4008, "{reason}");
            assert!(reason.contains("slow consumer"), "{reason}");
        }
        other => panic!("expected close 4008, got {other:?}"),
    }
    assert!(
        previous < last,
        "the slow client cannot have received everything"
    );
    // Memory: bounded by the outbox limit, not by what was published.
    assert!(
        peak_rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {peak_rss} KiB"
    );
    println!(
        "bars: {last} published, slow client got {previous}, RSS {rss_before} -> {peak_rss} KiB"
    );
}

#[tokio::test]
async fn slow_quotes_client_is_conflated_to_the_latest_value_and_stays() {
    let host = Host::start();
    let mut slow = Client::connect_with_recv_buffer(&host.ws_url(), 8192).await;
    slow.subscribe("quotes", json!({"symbols": ["AAPL"]})).await;
    let (last_tx, last_rx) = tokio::sync::watch::channel(0);
    let mut fast = Vec::new();
    for _ in 0..2 {
        let mut c = host.client().await;
        c.subscribe("quotes", json!({"symbols": ["AAPL"]})).await;
        fast.push(fast_reader(c, last_rx.clone()));
    }
    let rss_before = vm_rss_kib(host.pid());

    // Far more than the slow client's socket buffers and outbox hold.
    let (last, peak_rss) = publish_until(&host, quote, |_, n| n >= 60_000).await;
    last_tx.send(last).unwrap();
    for reader in fast {
        assert_eq!(reader.await.unwrap(), last);
    }

    // The slow client now reads: in order, with gaps, ending at the newest.
    let mut received = 0;
    let mut previous = 0;
    while previous < last {
        match slow.next_event(Duration::from_secs(10)).await {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["payload"]["topic"], QUOTES_TOPIC);
                let n = seq(&v);
                assert!(n > previous, "out of order: {n} after {previous}");
                previous = n;
                received += 1;
            }
            other => panic!("the slow quotes client was closed: {other:?} after {previous}"),
        }
    }
    assert_eq!(previous, last, "the newest quote arrives");
    assert!(
        received < last,
        "nothing was conflated ({received} of {last})"
    );
    // Still connected and served.
    slow.subscribe("quotes", json!({"symbols": ["MSFT"]})).await;
    assert!(
        !host
            .logs()
            .iter()
            .any(|l| l.contains("closing slow consumer"))
    );
    assert!(
        peak_rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {peak_rss} KiB"
    );
    println!(
        "quotes: {last} published, slow client got {received}, RSS {rss_before} -> {peak_rss} KiB"
    );
}

/// A quote of `symbol` numbered `seq` (in `volume`), padded to about 30 KB
/// so that two or three fill a 64 KiB queue.
fn padded_quote(symbol: &str, seq: u64) -> Value {
    json!({"route": "quotes", "request": {"symbols": [symbol]},
           "data": {"s": "ok", "n": symbol, "v": {"lp": 1.0, "ask": 1.1, "bid": 0.9,
           "spread": 0.2, "open_price": 1.0, "high_price": 1.2, "low_price": 0.8,
           "prev_close_price": 1.0, "ch": 0.0, "chp": 0.0, "volume": seq,
           "short_name": symbol, "exchange": "X", "description": "d".repeat(30_000),
           "original_name": symbol}}})
}

/// Connect with a small receive buffer, so that the host's writer blocks
/// at once and what follows stays queued in the host.
async fn slow_client(host: &Host) -> Client {
    Client::connect_with_recv_buffer(&host.ws_url(), 4096).await
}

/// Read quote updates until the newest of each of `symbols` is `last`;
/// panics if the client is closed or starved first.
async fn expect_newest(c: &mut Client, symbols: &[&str], last: u64) {
    let mut newest = std::collections::HashMap::new();
    while symbols.iter().any(|s| newest.get(*s) != Some(&last)) {
        match c.next_event(Duration::from_secs(10)).await {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "quotes.update" {
                    let data = &v["payload"]["payload"];
                    newest.insert(
                        data["n"].as_str().unwrap().to_owned(),
                        data["v"]["volume"].as_u64().unwrap(),
                    );
                }
            }
            other => panic!("closed or starved with newest {newest:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn conflation_keeps_the_newest_quote_of_each_symbol_of_one_subscription() {
    let host = Host::builder()
        .plugins(&["quotes"])
        .arg("--outbox-bytes")
        .arg("65536")
        .start();
    let mut slow = slow_client(&host).await;
    slow.subscribe("quotes", json!({"symbols": ["AAPL", "MSFT"]}))
        .await;
    // Interleaved: with conflation by topic, each MSFT quote would replace
    // the AAPL one queued just before it, and the last AAPL would be lost.
    for seq in 1..=60 {
        let batch = json!([padded_quote("AAPL", seq), padded_quote("MSFT", seq)]);
        assert_eq!(host.publish(&batch).await["failed"], 0);
    }
    expect_newest(&mut slow, &["AAPL", "MSFT"], 60).await;
}

#[tokio::test]
async fn a_reply_to_a_latest_value_client_over_its_queue_limit_does_not_close_it() {
    let host = Host::builder()
        .plugins(&["quotes"])
        .arg("--outbox-bytes")
        .arg("65536")
        .start();
    let mut slow = slow_client(&host).await;
    for symbol in ["AAPL", "MSFT", "GOOG"] {
        slow.subscribe("quotes", json!({"symbols": [symbol]})).await;
    }
    // Three subscriptions of 30 KB quotes: the queue is over its 64 KiB
    // limit (conflated, within twice it) when the reply is queued.
    for seq in 1..=20 {
        let batch: Vec<Value> = ["AAPL", "MSFT", "GOOG"]
            .iter()
            .map(|s| padded_quote(s, seq))
            .collect();
        assert_eq!(host.publish(&Value::Array(batch)).await["failed"], 0);
    }
    slow.send(&json!({"type": "quotes.subscribe", "id": "late", "payload": {"symbols": ["TSLA"]}}))
        .await;
    // The reply, then (or before it) the newest quote of each symbol.
    let mut replied = false;
    let mut newest = std::collections::HashMap::new();
    while !replied || newest.values().filter(|n| **n == 20).count() < 3 {
        match slow.next_event(Duration::from_secs(10)).await {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == "late" {
                    assert_eq!(v["payload"]["status"], "ok", "{v}");
                    replied = true;
                } else if v["type"] == "quotes.update" {
                    let data = &v["payload"]["payload"];
                    newest.insert(
                        data["n"].as_str().unwrap().to_owned(),
                        data["v"]["volume"].as_u64().unwrap(),
                    );
                }
            }
            other => panic!(
                "the slow latest-value client was closed or starved (replied {replied}, \
                 newest {newest:?}): {other:?}"
            ),
        }
    }
}
