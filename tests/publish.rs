//! Publishing over HTTP: who receives what, batches with bad updates,
//! multi-symbol subscriptions and custom keys.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Host;

fn bar(i: i64) -> Value {
    json!({"time": i, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": i})
}

#[tokio::test]
async fn an_update_reaches_exactly_its_subscribers_in_order() {
    let host = Host::start();
    let mut aapl = host.client().await;
    let mut aapl_too = host.client().await;
    let mut msft = host.client().await;
    let mut aapl_5 = host.client().await;
    let topic = aapl.subscribe("bars", json!({"symbol": "AAPL"})).await["topic"].clone();
    aapl_too
        .subscribe("bars", json!({"symbol": "AAPL", "resolution": "1"}))
        .await;
    msft.subscribe("bars", json!({"symbol": "MSFT"})).await;
    aapl_5
        .subscribe("bars", json!({"symbol": "AAPL", "resolution": "5"}))
        .await;

    let updates: Vec<Value> = (0..50)
        .map(|i| json!({"route": "bars", "request": {"symbol": "AAPL"}, "data": bar(i)}))
        .collect();
    let reply = host.publish(&Value::Array(updates)).await;
    assert_eq!(reply["delivered"], 100, "{reply}");
    assert_eq!(reply["failed"], 0);
    assert_eq!(reply["results"][0]["keys"], json!([topic]));

    for client in [&mut aapl, &mut aapl_too] {
        for i in 0..50 {
            let frame = client.recv().await;
            assert_eq!(frame["type"], "bars.update");
            assert_eq!(frame["payload"]["topic"], topic);
            assert_eq!(frame["payload"]["payload"]["time"], i, "in order");
        }
    }
    msft.expect_silence(Duration::from_millis(200)).await;
    aapl_5.expect_silence(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn multi_symbol_quotes_subscription_receives_each_symbol_under_its_topic() {
    let host = Host::start();
    let mut c = host.client().await;
    let reply = c
        .subscribe("quotes", json!({"symbols": ["AAPL", "MSFT"]}))
        .await;
    let topic = r#"quotes:{"fast_symbols":[],"symbols":["AAPL","MSFT"]}"#;
    assert_eq!(reply["topic"], topic);
    assert_eq!(
        reply["topics"],
        json!([
            r#"quotes:{"fast_symbols":[],"symbols":["AAPL"]}"#,
            r#"quotes:{"fast_symbols":[],"symbols":["MSFT"]}"#
        ])
    );
    let quote = |symbol: &str| {
        json!({"s": "ok", "n": symbol, "v": {"lp": 1.0, "ask": 1.1, "bid": 0.9, "spread": 0.2, "open_price": 1.0,
            "high_price": 1.2, "low_price": 0.8, "prev_close_price": 1.0, "ch": 0.0, "chp": 0.0, "volume": 5,
            "short_name": symbol, "exchange": "X", "description": "d", "original_name": symbol}})
    };
    let batch: Vec<Value> = ["AAPL", "GOOGL", "MSFT"]
        .iter()
        .map(|s| json!({"route": "quotes", "request": {"symbols": [s]}, "data": quote(s)}))
        .collect();
    let reply = host.publish(&Value::Array(batch)).await;
    assert_eq!(reply["delivered"], 2, "{reply}");
    for symbol in ["AAPL", "MSFT"] {
        let frame = c.recv().await;
        assert_eq!(frame["type"], "quotes.update");
        assert_eq!(
            frame["payload"]["topic"], topic,
            "update carries the subscription's topic"
        );
        assert_eq!(frame["payload"]["payload"]["n"], symbol);
    }
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn trades_are_routed_by_symbol_keys() {
    let host = Host::start();
    let mut c = host.client().await;
    let reply = c
        .subscribe("trades", json!({"symbols": ["MSFT", "AAPL"]}))
        .await;
    assert_eq!(reply["topics"], json!(["trades:AAPL", "trades:MSFT"]));
    let topic = reply["topic"].clone();
    let trade =
        |s: &str| json!({"symbol": s, "price": 1.5, "quantity": 2.0, "time": 7, "side": "buy"});
    let reply = host
        .publish(&json!([
            {"route": "trades", "topic": "trades:AAPL", "data": trade("AAPL")},
            {"route": "trades", "request": {"symbols": ["MSFT"]}, "data": trade("MSFT")},
            {"route": "trades", "topic": "trades:GOOGL", "data": trade("GOOGL")},
            // Both keys of the subscription in one update: trades keeps a
            // history, so each key's publication is its own update, with
            // its own offset (docs/recovery.md).
            {"route": "trades", "request": {"symbols": ["AAPL", "MSFT"]}, "data": trade("AAPL")},
        ]))
        .await;
    assert_eq!(reply["delivered"], 4, "{reply}");
    for (symbol, key) in [
        ("AAPL", "trades:AAPL"),
        ("MSFT", "trades:MSFT"),
        ("AAPL", "trades:AAPL"),
        ("AAPL", "trades:MSFT"),
    ] {
        let frame = c.recv().await;
        assert_eq!(frame["payload"]["topic"], topic);
        assert_eq!(frame["payload"]["key"], key, "{frame}");
        assert_eq!(frame["payload"]["payload"]["symbol"], symbol);
    }
    c.expect_silence(Duration::from_millis(200)).await;

    // A route's own rule: at least one symbol.
    c.send(&json!({"type": "trades.subscribe", "payload": {"symbols": []}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["payload"]["status"], "error");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("at least one symbol"),
        "{reply}"
    );
}

#[tokio::test]
async fn bad_updates_are_reported_and_the_rest_of_the_batch_is_delivered() {
    let host = Host::start();
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let reply = host
        .publish(&json!([
            {"route": "nosuch", "topic": "nosuch:x", "data": {}},
            {"route": "bars", "request": {"symbol": 5}, "data": bar(1)},
            {"route": "bars", "request": {"symbol": "AAPL"}, "data": {"time": "soon"}},
            {"route": "bars", "topic": "quotes:x", "data": bar(1)},
            {"route": "bars", "data": bar(1)},
            {"route": "bars", "request": {"symbol": "AAPL"}, "data": bar(42)},
            // Not updates at all: each is reported alone too.
            7,
            {"route": "bars", "key": "bars:AAPL", "data": bar(1), "extra": true},
        ]))
        .await;
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    assert_eq!(reply["failed"], 7);
    assert_eq!(reply["delivered"], 1);
    assert!(
        results[0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown route \"nosuch\"")
    );
    assert!(results[1]["message"].as_str().unwrap().contains("request"));
    assert_eq!(results[1]["errors"][0]["path"], "/symbol");
    assert!(results[2]["message"].as_str().unwrap().contains("data"));
    assert!(!results[2]["errors"].as_array().unwrap().is_empty());
    assert!(
        results[3]["message"]
            .as_str()
            .unwrap()
            .contains("does not belong")
    );
    assert!(
        results[4]["message"]
            .as_str()
            .unwrap()
            .contains("\"request\"")
    );
    assert_eq!(results[5]["status"], "ok");
    assert!(
        results[6]["message"]
            .as_str()
            .unwrap()
            .contains("malformed")
    );
    assert!(results[7]["message"].as_str().unwrap().contains("extra"));

    let frame = c.recv().await;
    assert_eq!(
        frame["payload"]["payload"]["time"], 42,
        "only the valid update arrives"
    );
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn single_update_body_and_subscriber_query() {
    let host = Host::start();
    let topic = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;
    let reply = host
        .publish(&json!({"route": "bars", "topic": topic, "data": bar(1)}))
        .await;
    assert_eq!(reply["results"][0]["delivered"], 0, "nobody subscribed yet");
    let status: Value = host
        .get_json(&format!("/api/v1/subscribers?topic={}", urlencode(topic)))
        .await;
    assert_eq!(status["has_subscribers"], false);

    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let status: Value = host
        .get_json(&format!("/api/v1/subscribers?topic={}", urlencode(topic)))
        .await;
    assert_eq!(status["has_subscribers"], true);
    assert_eq!(status["subscribers"], 1);

    // A body that is not JSON is a 400 with a reason.
    let reply = reqwest::Client::new()
        .post(host.http("/api/v1/publish"))
        .header("content-type", "application/json")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: Value = reply.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not JSON"));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
