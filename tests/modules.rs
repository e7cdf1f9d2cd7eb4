//! Issue 17: per-module endpoints. `/api/v1/<tag>/ws` serves the routes
//! whose plugin lists `<tag>` among its tags, and
//! `/api/v1/<tag>/ws/asyncapi.json` documents just those;
//! `/api/v1/ws` keeps carrying every route.

mod support;

use serde_json::{Value, json};
use support::{Client, Host};

/// bars and quotes are tagged `datafeed`, trades `trading`.
fn host() -> Host {
    Host::builder()
        .plugins(&["bars", "quotes", "trades"])
        .start()
}

fn module_url(host: &Host, tag: &str) -> String {
    format!("ws://{}/api/v1/{tag}/ws", host.addr)
}

fn operations(doc: &Value) -> Vec<String> {
    let mut ops: Vec<String> = doc["operations"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    ops.sort();
    ops
}

#[tokio::test]
async fn a_module_endpoint_serves_only_the_routes_with_its_tag() {
    let host = host();
    let mut datafeed = Client::connect(&module_url(&host, "datafeed")).await;
    let bars = datafeed.subscribe("bars", json!({"symbol": "AAPL"})).await;
    datafeed
        .subscribe("quotes", json!({"symbols": ["AAPL"]}))
        .await;
    // Another module's route is unknown here, and the error names only the
    // routes this endpoint serves.
    datafeed
        .send(&json!({"type": "trades.subscribe", "id": 1, "payload": {"symbols": ["AAPL"]}}))
        .await;
    let reply = datafeed.recv().await;
    assert_eq!(reply["type"], "trades.subscribe.response", "{reply}");
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["payload"]["status"], "error");
    assert_eq!(
        reply["payload"]["message"],
        r#"unknown route "trades" (routes: bars, quotes)"#
    );
    assert_eq!(host.subscribers("trades:AAPL").await, 0);

    // Updates arrive as on /api/v1/ws.
    let data = json!({"time": 1, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10});
    host.publish(&json!({"route": "bars", "request": {"symbol": "AAPL"}, "data": data}))
        .await;
    let update = datafeed.recv().await;
    assert_eq!(update["type"], "bars.update");
    assert_eq!(update["payload"]["topic"], bars["topic"]);
    assert_eq!(update["payload"]["payload"], data);

    // The trading module has trades only; /api/v1/ws has everything.
    let mut trading = Client::connect(&module_url(&host, "trading")).await;
    trading
        .subscribe("trades", json!({"symbols": ["AAPL"]}))
        .await;
    trading
        .send(&json!({"type": "bars.subscribe", "payload": {"symbol": "AAPL"}}))
        .await;
    let reply = trading.recv().await;
    assert_eq!(
        reply["payload"]["message"],
        r#"unknown route "bars" (routes: trades)"#
    );
    let mut all = host.client().await;
    all.subscribe("trades", json!({"symbols": ["MSFT"]})).await;
    all.subscribe("bars", json!({"symbol": "MSFT"})).await;
}

#[tokio::test]
async fn a_module_document_has_only_its_routes_on_its_own_channel() {
    let host = host();
    let doc = host.get_json("/api/v1/datafeed/ws/asyncapi.json").await;
    assert_eq!(doc["channels"]["ws"]["address"], "/api/v1/datafeed/ws");
    let routes: Vec<&str> = doc["info"]["x-routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["bars", "quotes"]);
    let ops = operations(&doc);
    assert!(ops.contains(&"quotes.subscribe".to_owned()), "{ops:?}");
    assert!(!ops.iter().any(|op| op.starts_with("trades.")), "{ops:?}");
    // The host's own frames are there too.
    assert!(ops.contains(&"routes.changed".to_owned()), "{ops:?}");
    assert!(doc["components"]["schemas"].get("trades.request").is_none());

    // The whole document is unchanged: every route, on /api/v1/ws.
    let all = host.get_json("/api/v1/ws/asyncapi.json").await;
    assert_eq!(all["channels"]["ws"]["address"], "/api/v1/ws");
    let ops = operations(&all);
    for op in ["bars.subscribe", "quotes.update", "trades.unsubscribe"] {
        assert!(ops.contains(&op.to_owned()), "{op} missing: {ops:?}");
    }
}

#[tokio::test]
async fn an_unknown_module_is_a_404_with_a_json_body() {
    let host = host();
    for path in [
        "/api/v1/broker/ws/asyncapi.json",
        "/api/v1/broker/ws",
        "/api/v1/NOT%20A%20TAG/ws",
    ] {
        let reply = reqwest::get(host.http(path)).await.unwrap();
        assert_eq!(reply.status(), 404, "{path}");
        let body: Value = reply.json().await.expect("a JSON body");
        assert_eq!(body["status"], "error", "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("datafeed, trading"), "{path}: {message}");
    }
    // A WebSocket handshake to it fails with that 404.
    match tokio_tungstenite::connect_async(format!("ws://{}/api/v1/broker/ws", host.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("expected a 404, got {:?}", other.map(|_| ())),
    }
}
