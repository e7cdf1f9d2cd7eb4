//! Snapshots, offsets and recovery (docs/recovery.md) against the real
//! host: what a client sees when it subscribes to a route that keeps its
//! updates, and when it comes back after missing some.

#[path = "support/recovery.rs"]
mod recovery;
mod support;

use std::time::Duration;

use recovery::{
    BARS, bar, position, publish_bars, recover_from, subscribe, subscribe_bars, subscribe_frame,
    update,
};
use serde_json::{Value, json};
use support::{Event, Host};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_new_bars_subscription_receives_the_last_update_at_once() {
    let host = Host::start();
    publish_bars(&host, [1, 2, 3]).await;
    let mut c = host.client().await;
    let reply = subscribe_bars(&mut c, None).await;
    let (offset, epoch) = position(&reply, BARS);
    assert_eq!(offset, 3, "{reply}");
    assert!(reply.get("recovered").is_none(), "{reply}");
    let snapshot = update(&mut c, "bars").await;
    assert_eq!(
        snapshot,
        json!({"topic": BARS, "offset": 3, "epoch": epoch, "payload": bar(3)})
    );
    c.expect_silence(QUIET).await;
    // Then live updates, numbered on.
    publish_bars(&host, [4]).await;
    assert_eq!(update(&mut c, "bars").await["offset"], 4);
}

#[tokio::test]
async fn a_client_that_reconnects_recovers_exactly_what_it_missed_then_live_updates() {
    let host = Host::start();
    let mut c = host.client().await;
    let reply = subscribe_bars(&mut c, None).await;
    let (offset, epoch) = position(&reply, BARS);
    assert_eq!(offset, 0, "nothing published yet: {reply}");
    c.expect_silence(QUIET).await;
    publish_bars(&host, 1..=5).await;
    for expected in 1..=5u64 {
        let u = update(&mut c, "bars").await;
        assert_eq!(
            (u["offset"].as_u64(), u["epoch"].as_str()),
            (Some(expected), Some(&*epoch))
        );
        assert_eq!(u["payload"], bar(expected));
    }
    c.close().await;

    publish_bars(&host, 6..=8).await;
    let mut c = host.client().await;
    let reply = subscribe_bars(&mut c, Some(recover_from(BARS, 5, &epoch))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["positions"][BARS]["recovered"], true, "{reply}");
    assert_eq!(position(&reply, BARS), (8, epoch.clone()));
    for expected in 6..=8u64 {
        let u = update(&mut c, "bars").await;
        assert_eq!(u["offset"], expected, "{u}");
        assert_eq!(u["payload"], bar(expected));
    }
    // No snapshot besides: the client has the last update now.
    c.expect_silence(QUIET).await;
    publish_bars(&host, [9]).await;
    assert_eq!(update(&mut c, "bars").await["offset"], 9);

    // Recovering from where it stands replays nothing and succeeds.
    let mut d = host.client().await;
    let reply = subscribe_bars(&mut d, Some(recover_from(BARS, 9, &epoch))).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    d.expect_silence(QUIET).await;
}

#[tokio::test]
async fn recovery_from_an_offset_the_history_no_longer_holds_or_another_epoch_replays_nothing() {
    let host = Host::start();
    let mut c = host.client().await;
    let (_, epoch) = position(&subscribe_bars(&mut c, None).await, BARS);
    c.close().await;
    // bars keeps 500 updates: offset 1's successors 2..=501 are partly gone.
    publish_bars(&host, 1..=502).await;
    for (offset, epoch, why) in [
        (1, epoch.as_str(), "too old"),
        (500, "not-the-epoch", "wrong epoch"),
        (503, epoch.as_str(), "ahead of the key"),
    ] {
        let mut c = host.client().await;
        let reply = subscribe_bars(&mut c, Some(recover_from(BARS, offset, epoch))).await;
        assert_eq!(reply["recovered"], false, "{why}: {reply}");
        assert_eq!(
            reply["positions"][BARS]["recovered"], false,
            "{why}: {reply}"
        );
        // Nothing replayed; bars has a snapshot, which the client gets as
        // any new subscription does.
        let snapshot = update(&mut c, "bars").await;
        assert_eq!(snapshot["offset"], 502, "{why}: {snapshot}");
        c.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn a_replay_larger_than_a_connection_may_queue_is_refused_not_a_disconnect() {
    // 8 KiB queues: a replay may use 4 KiB, some 30 bars.
    let host = Host::builder().arg("--outbox-bytes").arg("8192").start();
    let mut c = host.client().await;
    let (_, epoch) = position(&subscribe_bars(&mut c, None).await, BARS);
    c.close().await;
    publish_bars(&host, 1..=100).await;
    let mut c = host.client().await;
    let reply = subscribe_bars(&mut c, Some(recover_from(BARS, 0, &epoch))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(update(&mut c, "bars").await["offset"], 100);
    // Still connected, still served.
    let reply = subscribe_bars(&mut c, Some(recover_from(BARS, 90, &epoch))).await;
    assert_eq!(reply["recovered"], false, "already subscribed: {reply}");
    c.expect_silence(QUIET).await;
    let mut d = host.client().await;
    let reply = subscribe_bars(&mut d, Some(recover_from(BARS, 90, &epoch))).await;
    assert_eq!(reply["recovered"], true, "ten bars fit: {reply}");
    for expected in 91..=100u64 {
        assert_eq!(update(&mut d, "bars").await["offset"], expected);
    }
}

#[tokio::test]
async fn a_restarted_host_starts_a_new_epoch() {
    let host = Host::start();
    publish_bars(&host, [1, 2]).await;
    let mut c = host.client().await;
    let (offset, before) = position(&subscribe_bars(&mut c, None).await, BARS);
    assert_eq!(offset, 2);
    drop(c);
    drop(host);

    let host = Host::start();
    publish_bars(&host, [1]).await;
    let mut c = host.client().await;
    let reply = subscribe_bars(&mut c, Some(recover_from(BARS, 2, &before))).await;
    let (offset, after) = position(&reply, BARS);
    assert_ne!(after, before, "{reply}");
    assert_eq!(offset, 1, "{reply}");
    assert_eq!(reply["recovered"], false, "{reply}");
    let snapshot = update(&mut c, "bars").await;
    assert_eq!(
        (snapshot["offset"].as_u64(), snapshot["epoch"].as_str()),
        (Some(1), Some(&*after))
    );
}

/// The contract test plugin with its retention settings patched in (see
/// tests/plugins/contract-v0-1-3).
fn retention_plugin(config: &str) -> Vec<u8> {
    const MARKER: &[u8] = b"@@WSR-RETENTION@@";
    const CONFIG_LEN: usize = 64;
    let mut bytes =
        std::fs::read(support::plugin("contract-v0-1-3")).expect("read contract-v0-1-3.wasm");
    let at = bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("the retention marker in contract-v0-1-3.wasm");
    let mut block = MARKER.to_vec();
    block.extend_from_slice(config.as_bytes());
    assert!(block.len() <= CONFIG_LEN);
    block.resize(CONFIG_LEN, b' ');
    bytes[at..at + CONFIG_LEN].copy_from_slice(&block);
    bytes
}

#[tokio::test]
async fn updates_older_than_the_ttl_leave_the_history() {
    let host = Host::builder().plugins(&[]).start_with(|dir| {
        std::fs::write(
            dir.join("short.wasm"),
            retention_plugin(";snapshot=0;size=10;ttl=300"),
        )
        .unwrap();
    });
    let (route, request) = ("contract-v0-1-3", json!({"symbol": "A"}));
    let key = r#"contract-v0-1-3:{"symbol":"A"}"#;
    let publish = |n: u64| json!({"route": route, "key": key, "data": {"n": n}});
    let mut c = host.client().await;
    let (_, epoch) = position(&subscribe(&mut c, route, request.clone(), None).await, key);
    host.publish(&json!([publish(1), publish(2)])).await;
    assert_eq!(update(&mut c, route).await["offset"], 1);
    assert_eq!(update(&mut c, route).await["offset"], 2);
    c.close().await;

    // Within the TTL: recovered.
    let mut c = host.client().await;
    let reply = subscribe(
        &mut c,
        route,
        request.clone(),
        Some(recover_from(key, 1, &epoch)),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(update(&mut c, route).await["payload"], json!({"n": 2}));
    c.close().await;

    // Past it (and a sweep): gone, and with it the key's epoch.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = host.client().await;
    let reply = subscribe(&mut c, route, request, Some(recover_from(key, 1, &epoch))).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    let (offset, now) = position(&reply, key);
    assert_eq!(offset, 0, "{reply}");
    assert_ne!(now, epoch);
    c.expect_silence(QUIET).await;
    let metrics = reqwest::get(host.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"ws_router_history_evicted_total{reason="ttl"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_route_without_retention_sends_the_frames_it_always_did() {
    let host = Host::builder().plugins(&["ticker"]).start();
    let data = json!({"status": "open", "values": {"last": 1.5}});
    let publish = json!({"route": "ticker", "request": {"symbol": "AAPL"}, "data": data});
    host.publish(&publish).await;
    let mut c = host.client().await;
    c.send_text(r#"{"type":"ticker.subscribe","payload":{"symbol":"AAPL"}}"#)
        .await;
    assert_eq!(
        c.recv_text().await,
        r#"{"type":"ticker.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"ticker:{\"symbol\":\"AAPL\"}"}}"#
    );
    // No snapshot, and updates without offsets.
    c.expect_silence(QUIET).await;
    host.publish(&publish).await;
    assert_eq!(
        c.recv_text().await,
        r#"{"type":"ticker.update","payload":{"topic":"ticker:{\"symbol\":\"AAPL\"}","payload":{"status":"open","values":{"last":1.5}}}}"#
    );
    // A client that asks to recover learns there is nothing to recover.
    let mut d = host.client().await;
    let reply = subscribe(
        &mut d,
        "ticker",
        json!({"symbol": "AAPL"}),
        Some(recover_from(r#"ticker:{"symbol":"AAPL"}"#, 1, "e")),
    )
    .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert!(reply.get("positions").is_none(), "{reply}");
    d.expect_silence(QUIET).await;
}

#[tokio::test]
async fn quotes_keep_a_snapshot_per_symbol_without_offsets() {
    let host = Host::start();
    for (symbol, lp) in [("AAPL", 1.0), ("MSFT", 2.0), ("AAPL", 3.0)] {
        let data = json!({"s": "ok", "n": symbol, "v": {"lp": lp}});
        let reply = host
            .publish(&json!({"route": "quotes", "request": {"symbols": [symbol]}, "data": data}))
            .await;
        assert_eq!(reply["failed"], 0, "{reply}");
    }
    let mut c = host.client().await;
    let reply = subscribe(&mut c, "quotes", json!({"symbols": ["AAPL", "MSFT"]}), None).await;
    assert!(
        reply.get("positions").is_none(),
        "snapshot only, no history: {reply}"
    );
    let mut got = vec![
        update(&mut c, "quotes").await,
        update(&mut c, "quotes").await,
    ];
    got.sort_by_key(|u| u["payload"]["n"].as_str().map(str::to_owned));
    assert_eq!(
        got[0]["payload"],
        json!({"s": "ok", "n": "AAPL", "v": {"lp": 3.0}})
    );
    assert_eq!(
        got[1]["payload"],
        json!({"s": "ok", "n": "MSFT", "v": {"lp": 2.0}})
    );
    assert!(got.iter().all(|u| u.get("offset").is_none()), "{got:?}");
    c.expect_silence(QUIET).await;
}

fn trade(symbol: &str, time: u64) -> Value {
    json!({"route": "trades", "key": format!("trades:{symbol}"),
           "data": {"symbol": symbol, "price": 1.5, "quantity": 3, "time": time, "side": "buy"}})
}

#[tokio::test]
async fn a_multi_key_subscription_recovers_each_key_on_its_own() {
    let host = Host::start();
    let request = json!({"symbols": ["AAPL", "MSFT"]});
    let (aapl, msft) = ("trades:AAPL", "trades:MSFT");
    let mut c = host.client().await;
    let reply = subscribe(&mut c, "trades", request.clone(), None).await;
    let (_, aapl_epoch) = position(&reply, aapl);
    let (_, msft_epoch) = position(&reply, msft);
    host.publish(&json!([
        trade("AAPL", 1),
        trade("AAPL", 2),
        trade("MSFT", 1)
    ]))
    .await;
    for (key, offset) in [(aapl, 1), (aapl, 2), (msft, 1)] {
        let u = update(&mut c, "trades").await;
        assert_eq!(
            (u["key"].as_str(), u["offset"].as_u64()),
            (Some(key), Some(offset)),
            "{u}"
        );
    }
    c.close().await;

    host.publish(&json!([
        trade("AAPL", 3),
        trade("MSFT", 2),
        trade("AAPL", 4)
    ]))
    .await;
    let mut c = host.client().await;
    let recover = json!({
        aapl: {"offset": 2, "epoch": aapl_epoch},
        msft: {"offset": 1, "epoch": format!("{msft_epoch}x")},
    });
    let reply = subscribe(&mut c, "trades", request, Some(recover)).await;
    assert_eq!(reply["recovered"], false, "one key was not: {reply}");
    assert_eq!(reply["positions"][aapl]["recovered"], true, "{reply}");
    assert_eq!(reply["positions"][msft]["recovered"], false, "{reply}");
    assert_eq!(position(&reply, msft), (2, msft_epoch));
    for offset in [3, 4] {
        let u = update(&mut c, "trades").await;
        assert_eq!(
            (u["key"].as_str(), u["offset"].as_u64()),
            (Some(aapl), Some(offset)),
            "{u}"
        );
        assert_eq!(u["payload"]["time"], offset);
    }
    // trades keeps no snapshot: MSFT sends nothing until its next trade.
    c.expect_silence(QUIET).await;
}

#[tokio::test]
async fn recovering_while_updates_stream_in_misses_none_and_repeats_none() {
    let host = Host::start();
    let mut c = host.client().await;
    let (_, epoch) = position(&subscribe_bars(&mut c, None).await, BARS);
    let total = 400u64;
    let publisher = {
        let url = host.http("/api/v1/publish");
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for t in 1..=total {
                let body = json!({"route": "bars", "request": {"symbol": "AAPL", "resolution": "1"}, "data": bar(t)});
                let reply = http.post(&url).json(&body).send().await.expect("publish");
                assert!(reply.status().is_success());
            }
        })
    };
    // Read a while, leave, come back while the feed runs, several times.
    let mut last = 0u64;
    for _ in 0..4 {
        for _ in 0..20 {
            let u = update(&mut c, "bars").await;
            assert_eq!(u["offset"], last + 1, "{u}");
            last += 1;
            if last == total {
                break;
            }
        }
        c.close().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        c = host.client().await;
        let reply = subscribe_bars(&mut c, Some(recover_from(BARS, last, &epoch))).await;
        assert_eq!(reply["recovered"], true, "{reply}");
    }
    while last < total {
        let u = update(&mut c, "bars").await;
        assert_eq!(u["offset"], last + 1, "{u}");
        last += 1;
    }
    publisher.await.unwrap();
    c.expect_silence(QUIET).await;
}

#[tokio::test]
async fn hostile_recover_fields_get_clear_errors_and_the_connection_stays() {
    let host = Host::start();
    let mut c = host.client().await;
    let many: serde_json::Map<String, Value> = (0..1100)
        .map(|i| (format!("k{i}"), json!({"offset": 1, "epoch": "e"})))
        .collect();
    let cases = [
        (json!([1, 2]), "an object of keys"),
        (
            json!({BARS: {"offset": "5", "epoch": "e"}}),
            "invalid type: string",
        ),
        (json!({BARS: {"offset": -1, "epoch": "e"}}), "expected u64"),
        (
            json!({BARS: {"offset": 1, "epoch": 7}}),
            "invalid type: integer",
        ),
        (
            json!({BARS: {"offset": 1, "epoch": "e".repeat(65)}}),
            "longer than 64 bytes",
        ),
        (
            json!({"x".repeat(5000): {"offset": 1, "epoch": "e"}}),
            "longer than 4096 bytes",
        ),
        (Value::Object(many), "more than 1024 keys"),
        (
            json!({"bars:other": {"offset": 1, "epoch": "e"}}),
            "not one of this subscription's keys",
        ),
    ];
    for (recover, says) in cases {
        let frame = subscribe_frame("bars", json!({"symbol": "AAPL"}), Some(recover));
        let text = frame.to_string();
        if text.len() > 64 * 1024 {
            continue;
        }
        c.send_text(&text).await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "bars.subscribe.response", "{reply}");
        assert_eq!(reply["payload"]["status"], "error", "{reply}");
        let message = reply["payload"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("recover"), "{message}");
        assert!(message.contains(says), "{says}: {message}");
    }
    // Nothing was subscribed by the refused frames; a good one works.
    assert_eq!(host.subscribers(BARS).await, 0);
    subscribe_bars(&mut c, None).await;
    assert!(matches!(
        c.next_event(QUIET).await,
        None | Some(Event::Text(_))
    ));
}

#[tokio::test]
async fn a_zero_history_budget_turns_snapshots_and_offsets_off() {
    let host = Host::builder().arg("--history-memory-mib").arg("0").start();
    publish_bars(&host, [1]).await;
    let mut c = host.client().await;
    c.send_text(r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":"1"}}"#)
        .await;
    assert_eq!(
        c.recv_text().await,
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}"}}"#
    );
    c.expect_silence(QUIET).await;
    publish_bars(&host, [2]).await;
    assert_eq!(
        update(&mut c, "bars").await,
        json!({"topic": BARS, "payload": bar(2)})
    );
}
