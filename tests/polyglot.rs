//! Routes written in Python (`plugins/news`) and JavaScript
//! (`plugins/orderbook`), built from source by `just build-plugins`, loaded
//! by the real host next to the Rust routes and driven over a real
//! WebSocket: subscribe, published updates, unsubscribe, and schema errors.

mod support;

use std::time::Duration;

use serde_json::json;
use support::Host;

fn headline(symbol: &str, title: &str) -> serde_json::Value {
    json!({"time": 1_700_000_000_000_i64, "symbol": symbol, "title": title, "sentiment": 0.5})
}

async fn python_news_route_serves_subscribe_updates_and_unsubscribe(host: &Host) {
    let routes = host.get_json("/api/v1/routes").await;
    let news = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "news"))
        .unwrap_or_else(|| panic!("news route not loaded: {routes}"));
    assert_eq!(news["version"], "0.1.0");
    assert_eq!(news["tags"], json!(["news"]));
    // The SDK's default delivery policy, through the WIT `delivery` export.
    assert_eq!(news["delivery"], "queue-all");
    // The schema derived from the Python dataclass, with its default.
    assert_eq!(
        news["request_schema"]["properties"]["language"]["default"],
        "en"
    );
    assert_eq!(news["request_schema"]["required"], json!(["symbols"]));

    let mut c = host.client().await;
    // Defaults applied and keys sorted: the canonical topic.
    let reply = c
        .subscribe("news", json!({"symbols": ["MSFT", "AAPL"]}))
        .await;
    let topic = r#"news:{"language":"en","symbols":["MSFT","AAPL"]}"#;
    assert_eq!(reply["topic"], topic, "{reply}");
    assert_eq!(reply["topics"], json!(["news:AAPL:en", "news:MSFT:en"]));

    let delivered = host
        .publish(&json!([
            {"route": "news", "topic": "news:AAPL:en", "data": headline("AAPL", "Apple ships")},
            {"route": "news", "topic": "news:AAPL:de", "data": headline("AAPL", "Apple liefert")},
            {"route": "news", "request": {"symbols": ["MSFT"]}, "data": headline("MSFT", "Ünïcødé 株")},
        ]))
        .await;
    assert_eq!(delivered["delivered"], 2, "{delivered}");
    for expected in ["Apple ships", "Ünïcødé 株"] {
        let frame = c.recv().await;
        assert_eq!(frame["type"], "news.update", "{frame}");
        assert_eq!(frame["payload"]["topic"], topic);
        assert_eq!(frame["payload"]["payload"]["title"], expected);
    }

    // Unsubscribing with the request in another key order finds the same topic.
    c.send(&json!({"type": "news.unsubscribe", "payload": {"language": "en", "symbols": ["MSFT", "AAPL"]}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "news.unsubscribe.response");
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    assert_eq!(reply["payload"]["topic"], topic);
    assert_eq!(host.subscribers("news:AAPL:en").await, 0);
    host.publish(
        &json!({"route": "news", "topic": "news:AAPL:en", "data": headline("AAPL", "late")}),
    )
    .await;
    c.expect_silence(Duration::from_millis(200)).await;
}

async fn python_route_errors_reach_the_client_readably(host: &Host) {
    let mut c = host.client().await;
    c.send(&json!({"type": "news.subscribe", "payload": {"symbols": [], "language": "xx"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "news.subscribe.response");
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    let message = reply["payload"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("invalid request:"), "{message}");
    assert!(
        message.contains("/symbols"),
        "names the empty list: {message}"
    );
    assert!(
        message.contains("/language"),
        "names the bad language: {message}"
    );

    // A rule the route enforces itself (raised as ws_router.InvalidRequest).
    c.send(&json!({"type": "news.subscribe", "payload": {"symbols": ["AAPL", "MSFT", "AAPL"]}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    let message = reply["payload"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("symbols listed twice: AAPL"), "{message}");

    // Published data is checked against the dataclass-derived data schema.
    let reply = host
        .publish_raw(r#"{"route": "news", "topic": "news:AAPL:en", "data": {"time": "noon"}}"#)
        .await;
    assert_eq!(reply["delivered"], 0, "{reply}");
    assert!(reply.to_string().contains("time"), "{reply}");

    // The connection still works.
    let ok = c
        .subscribe("news", json!({"symbols": ["AAPL"], "language": "fr"}))
        .await;
    assert_eq!(ok["topic"], r#"news:{"language":"fr","symbols":["AAPL"]}"#);
}

fn snapshot(bid: f64) -> serde_json::Value {
    json!({"time": 1, "bids": [{"price": bid, "size": 3.0}], "asks": [{"price": bid + 0.01, "size": 1.5}]})
}

async fn javascript_orderbook_route_serves_subscribe_updates_and_unsubscribe(host: &Host) {
    let routes = host.get_json("/api/v1/routes").await;
    let book = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "orderbook"))
        .unwrap_or_else(|| panic!("orderbook route not loaded: {routes}"));
    assert_eq!(book["request_schema"]["required"], json!(["symbol"]));
    assert_eq!(book["request_schema"]["properties"]["depth"]["default"], 10);
    // Declared with `delivery: "latest-value"` through the JS SDK.
    assert_eq!(book["delivery"], "latest-value");

    let mut c = host.client().await;
    // Defaults applied; an integer sent for the float `tick` prints as a
    // float, as the Rust and Python SDKs print it.
    let reply = c
        .subscribe("orderbook", json!({"tick": 1, "symbol": "AAPL"}))
        .await;
    let topic = r#"orderbook:{"depth":10,"symbol":"AAPL","tick":1.0}"#;
    assert_eq!(reply["topic"], topic, "{reply}");
    let small = c
        .subscribe("orderbook", json!({"symbol": "AAPL", "depth": 5}))
        .await;
    let small_topic = r#"orderbook:{"depth":5,"symbol":"AAPL","tick":0.01}"#;
    assert_eq!(small["topic"], small_topic, "{small}");

    // Published by request (the plugin resolves it) and by key.
    let reply = host
        .publish(&json!([
            {"route": "orderbook", "request": {"symbol": "AAPL", "tick": 1.0}, "data": snapshot(187.0)},
            {"route": "orderbook", "topic": small_topic, "data": snapshot(187.25)},
        ]))
        .await;
    assert_eq!(reply["delivered"], 2, "{reply}");
    let first = c.recv().await;
    assert_eq!(first["type"], "orderbook.update");
    assert_eq!(first["payload"]["topic"], topic);
    assert_eq!(first["payload"]["payload"]["bids"][0]["price"], 187.0);
    let second = c.recv().await;
    assert_eq!(second["payload"]["topic"], small_topic);

    c.send(&json!({"type": "orderbook.unsubscribe", "payload": {"symbol": "AAPL", "tick": 1, "depth": 10}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "orderbook.unsubscribe.response");
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    assert_eq!(reply["payload"]["topic"], topic);
    host.publish(&json!({"route": "orderbook", "topic": topic, "data": snapshot(1.0)}))
        .await;
    host.publish(&json!({"route": "orderbook", "topic": small_topic, "data": snapshot(2.0)}))
        .await;
    let still = c.recv().await;
    assert_eq!(
        still["payload"]["topic"], small_topic,
        "only the remaining subscription: {still}"
    );
    c.expect_silence(Duration::from_millis(200)).await;
}

async fn javascript_route_errors_reach_the_client_readably(host: &Host) {
    let mut c = host.client().await;
    c.send(&json!({"type": "orderbook.subscribe", "payload": {"symbol": "AAPL", "depth": 0, "tick": "small"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "orderbook.subscribe.response");
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    let message = reply["payload"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("invalid request:"), "{message}");
    assert!(message.contains("/depth"), "names the depth: {message}");
    assert!(message.contains("/tick"), "names the tick: {message}");

    // A rule the route checks itself (thrown as InvalidRequest).
    c.send(&json!({"type": "orderbook.subscribe", "payload": {"symbol": "aapl"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    let message = reply["payload"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("symbol must be upper case: AAPL, not aapl"),
        "{message}"
    );

    let ok = c.subscribe("orderbook", json!({"symbol": "MSFT"})).await;
    assert_eq!(
        ok["topic"],
        r#"orderbook:{"depth":10,"symbol":"MSFT","tick":0.01}"#
    );
}

/// One host for every check: compiling a Python (~18 MB) or JavaScript
/// (~12 MB) component takes seconds of CPU, so the routes are loaded once.
#[tokio::test]
async fn python_and_javascript_routes_serve_next_to_the_rust_routes() {
    let host = Host::builder()
        .plugins(&["bars", "quotes", "trades", "news", "orderbook"])
        .start();
    assert_eq!(
        host.route_names().await,
        ["bars", "news", "orderbook", "quotes", "trades"]
    );

    python_news_route_serves_subscribe_updates_and_unsubscribe(&host).await;
    python_route_errors_reach_the_client_readably(&host).await;
    javascript_orderbook_route_serves_subscribe_updates_and_unsubscribe(&host).await;
    javascript_route_errors_reach_the_client_readably(&host).await;

    // A Rust route on the same host still answers.
    let mut c = host.client().await;
    let reply = c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    assert_eq!(reply["topic"], r#"bars:{"resolution":"1","symbol":"AAPL"}"#);
}
