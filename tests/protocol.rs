//! The WebSocket protocol against the real host: captured frames, errors
//! that keep the connection, cleanup on disconnect.

mod support;

use std::time::Duration;

use serde_json::json;
use support::Host;

const BARS_TOPIC: &str = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;

#[tokio::test]
async fn bars_and_quotes_replies_match_the_captured_frames() {
    let host = Host::start();
    let mut c = host.client().await;

    c.send_text(r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":"1"}}"#)
        .await;
    // bars keeps a history (docs/recovery.md): its frames are the captured
    // ones, byte for byte, with fields appended that older clients ignore.
    assert_captured_then(
        &c.recv_text().await,
        r#"{"type":"bars.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}"}}"#,
        &["positions"],
    );
    c.send_text(r#"{"type":"bars.unsubscribe","payload":{"symbol":"AAPL","resolution":"1"}}"#)
        .await;
    assert_eq!(
        c.recv_text().await,
        r#"{"type":"bars.unsubscribe.response","payload":{"status":"ok","message":"Unsubscribed","topic":"bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}"}}"#
    );
    c.send_text(r#"{"type":"quotes.subscribe","payload":{}}"#)
        .await;
    assert_eq!(
        c.recv_text().await,
        r#"{"type":"quotes.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"quotes:{\"fast_symbols\":[],\"symbols\":[]}"}}"#
    );

    // The captured update frame, byte for byte.
    c.send_text(r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL"}}"#)
        .await;
    c.recv().await;
    // Sent as text: the data's key order and number forms must survive.
    host.publish_raw(
        r#"{"route": "bars", "request": {"symbol": "AAPL", "resolution": "1"},
            "data": { "time": 1, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10 }}"#,
    )
    .await;
    assert_captured_then(
        &c.recv_text().await,
        r#"{"type":"bars.update","payload":{"topic":"bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}","payload":{"time":1,"open":1.0,"high":2.0,"low":0.5,"close":1.5,"volume":10}}}"#,
        &["offset", "epoch"],
    );
}

/// `frame` is `captured` with exactly the payload fields `added` appended.
fn assert_captured_then(frame: &str, captured: &str, added: &[&str]) {
    let start = captured
        .strip_suffix("}}")
        .expect("a captured frame ends with }}");
    assert!(
        frame.starts_with(start),
        "{frame}\ndoes not start as\n{captured}"
    );
    let value: serde_json::Value = serde_json::from_str(frame).expect("JSON");
    let mut payload = value["payload"].as_object().expect("payload").clone();
    for field in added {
        assert!(payload.remove(*field).is_some(), "no {field} in {frame}");
    }
    let old: serde_json::Value = serde_json::from_str(captured).expect("JSON");
    assert_eq!(
        serde_json::Value::Object(payload),
        old["payload"],
        "{frame}"
    );
}

#[tokio::test]
async fn defaults_apply_extra_fields_are_ignored_and_subscribing_twice_is_idempotent() {
    let host = Host::start();
    let mut c = host.client().await;
    let reply = c
        .subscribe("bars", json!({"symbol": "AAPL", "extra": [1, 2]}))
        .await;
    assert_eq!(reply["topic"], BARS_TOPIC);
    let again = c
        .subscribe("bars", json!({"resolution": "1", "symbol": "AAPL"}))
        .await;
    assert_eq!(again["topic"], BARS_TOPIC);
    assert_eq!(host.subscribers(BARS_TOPIC).await, 1);

    // Unsubscribing from something never subscribed still answers ok.
    c.send(&json!({"type": "bars.unsubscribe", "payload": {"symbol": "ZZZ"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["payload"]["status"], "ok");
    assert_eq!(reply["payload"]["message"], "Unsubscribed");
}

/// The same request text sent again (by another client, after the first
/// has left) is answered from what the host remembers of it: the same
/// canonical topic, stored without its unknown fields; a text the schema
/// refused is refused every time, never remembered as valid.
#[tokio::test]
async fn a_request_sent_again_is_answered_the_same() {
    let host = Host::start();
    let sent = r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","junk":{"x":[1,2]}}}"#;
    let bad = r#"{"type":"bars.subscribe","payload":{"symbol":7,"junk":{"x":[1,2]}}}"#;
    for round in 0..3 {
        let mut c = host.client().await;
        c.send_text(sent).await;
        let reply = c.recv().await;
        assert_eq!(
            reply["payload"]["topic"], BARS_TOPIC,
            "round {round}: {reply}"
        );
        assert_eq!(host.subscribers(BARS_TOPIC).await, 1, "round {round}");
        for _ in 0..2 {
            c.send_text(bad).await;
            let refused = c.recv().await;
            assert_eq!(
                refused["payload"]["status"], "error",
                "round {round}: {refused}"
            );
            assert_eq!(
                refused["payload"]["errors"][0]["path"], "/symbol",
                "{refused}"
            );
        }
        c.send_text(&sent.replace(".subscribe", ".unsubscribe"))
            .await;
        let left = c.recv().await;
        assert_eq!(
            left["payload"]["topic"], BARS_TOPIC,
            "round {round}: {left}"
        );
        assert_eq!(host.subscribers(BARS_TOPIC).await, 0, "round {round}");
    }
}

#[tokio::test]
async fn invalid_request_gets_readable_error_and_connection_stays() {
    let host = Host::start();
    let mut c = host.client().await;
    c.send(&json!({"type": "bars.subscribe", "payload": {"resolution": 5}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "bars.subscribe.response");
    assert_eq!(reply["payload"]["status"], "error");
    let message = reply["payload"]["message"].as_str().unwrap();
    assert!(message.starts_with("invalid request:"), "{message}");
    assert!(
        message.contains("symbol"),
        "names the missing field: {message}"
    );
    assert!(
        message.contains("/resolution"),
        "names the wrongly typed field: {message}"
    );
    let errors = reply["payload"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{reply}");

    let ok = c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    assert_eq!(ok["topic"], BARS_TOPIC);
}

#[tokio::test]
async fn bad_frames_get_error_replies_and_connection_keeps_working() {
    let host = Host::start();
    let mut c = host.client().await;

    c.send(&json!({"type": "nosuch.subscribe", "payload": {}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "nosuch.subscribe.response");
    assert_eq!(reply["payload"]["status"], "error");
    let message = reply["payload"]["message"].as_str().unwrap();
    assert!(
        message.contains("unknown route \"nosuch\"") && message.contains("bars"),
        "{message}"
    );

    c.send_text("{not json").await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["payload"]["status"], "error");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{reply}"
    );

    c.send(&json!({"type": "bars.update", "payload": {"topic": "x", "payload": {}}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "error");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("sent by the server"),
        "{reply}"
    );

    let ok = c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    assert_eq!(ok["topic"], BARS_TOPIC);
}

#[tokio::test]
async fn disconnect_removes_all_of_a_clients_subscriptions() {
    let host = Host::start();
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    c.subscribe("quotes", json!({"symbols": ["AAPL", "MSFT"]}))
        .await;
    c.subscribe("trades", json!({"symbols": ["GOOGL"]})).await;
    let quote_key = r#"quotes:{"fast_symbols":[],"symbols":["MSFT"]}"#;
    assert_eq!(host.subscribers(BARS_TOPIC).await, 1);
    assert_eq!(host.subscribers(quote_key).await, 1);
    assert_eq!(host.subscribers("trades:GOOGL").await, 1);
    c.close().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = host.subscribers(BARS_TOPIC).await
            + host.subscribers(quote_key).await
            + host.subscribers("trades:GOOGL").await;
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions left after disconnect: {left}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn demo_feed_delivers_a_bars_update_to_a_fresh_client_within_a_second() {
    let host = Host::builder().arg("--demo-feed").start();
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL", "resolution": "1"}))
        .await;
    let started = std::time::Instant::now();
    let update = match c.next_event(Duration::from_secs(1)).await {
        Some(support::Event::Text(t)) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
        other => panic!("no demo update within a second: {other:?}"),
    };
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(update["type"], "bars.update");
    assert_eq!(update["payload"]["topic"], BARS_TOPIC);
    assert!(update["payload"]["payload"]["close"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn a_fresh_host_sends_nothing_unasked() {
    // The routes loaded at start are not news: no `routes.changed` may
    // arrive in the middle of a client's first exchange.
    let host = Host::start();
    let mut c = host.client().await;
    c.expect_silence(Duration::from_millis(300)).await;
    let reply = c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    assert_eq!(reply["topic"], BARS_TOPIC);
}
