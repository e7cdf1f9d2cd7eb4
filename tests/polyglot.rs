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

#[tokio::test]
async fn python_news_route_serves_subscribe_updates_and_unsubscribe() {
    let host = Host::builder().plugins(&["bars", "news"]).start();
    let routes = host.get_json("/api/v1/routes").await;
    let news = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "news"))
        .unwrap_or_else(|| panic!("news route not loaded: {routes}"));
    assert_eq!(news["version"], "0.1.0");
    assert_eq!(news["tags"], json!(["news"]));
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
    host.publish(&json!({"route": "news", "topic": "news:AAPL:en", "data": headline("AAPL", "late")}))
        .await;
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn python_route_schema_errors_reach_the_client_readably() {
    let host = Host::builder().plugins(&["news"]).start();
    let mut c = host.client().await;
    c.send(&json!({"type": "news.subscribe", "payload": {"symbols": [], "language": "xx"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "news.subscribe.response");
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    let message = reply["payload"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("invalid request:"), "{message}");
    assert!(message.contains("/symbols"), "names the empty list: {message}");
    assert!(message.contains("/language"), "names the bad language: {message}");

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
    let ok = c.subscribe("news", json!({"symbols": ["AAPL"], "language": "fr"})).await;
    assert_eq!(ok["topic"], r#"news:{"language":"fr","symbols":["AAPL"]}"#);
}
