//! `GET /metrics`, `/healthz` and `/readyz` against the real host: the
//! metrics parse as Prometheus text (with a real parser), and their counters
//! move as clients connect, subscribe and receive updates and as plugins
//! come and go; readiness waits for the startup plugins.

mod support;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;
use support::{HOST_BIN, Host};

/// The samples of the exposition at `url`, by name and labels
/// (`name{a="x",b="y"}`, labels sorted), parsed by `prometheus-parse`.
async fn scrape(host: &Host) -> HashMap<String, f64> {
    let response = reqwest::get(host.http("/metrics"))
        .await
        .expect("GET /metrics");
    assert!(response.status().is_success(), "{}", response.status());
    let text = response.text().await.expect("body");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut out = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let key = if labels.is_empty() {
            sample.metric
        } else {
            format!("{}{{{}}}", sample.metric, labels.join(","))
        };
        out.insert(key, value);
    }
    assert!(
        out.keys().all(|k| k.starts_with("ws_router_")),
        "every metric is prefixed ws_router_"
    );
    out
}

fn get(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_with_connections_subscriptions_updates_and_plugins() {
    let host = Host::start();
    let before = scrape(&host).await;
    assert_eq!(get(&before, "ws_router_connections_open"), 0.0);

    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    c.subscribe("trades", json!({"symbols": ["AAPL", "MSFT"]}))
        .await;
    for _ in 0..3 {
        host.publish(&json!({"route": "trades", "key": "trades:AAPL",
            "data": {"symbol": "AAPL", "price": 1.5, "quantity": 1, "time": 1, "side": "buy"}}))
            .await;
        assert_eq!(c.recv().await["type"], "trades.update");
    }
    // Invalid data counts as an error of its route.
    host.publish(&json!({"route": "trades", "key": "trades:AAPL", "data": {}}))
        .await;
    let after = scrape(&host).await;
    assert_eq!(get(&after, "ws_router_connections_open"), 1.0);
    assert_eq!(
        get(&after, "ws_router_connections_accepted_total")
            - get(&before, "ws_router_connections_accepted_total"),
        1.0
    );
    assert_eq!(get(&after, "ws_router_subscriptions"), 2.0);
    assert_eq!(
        get(&after, "ws_router_keys"),
        3.0,
        "bars:.., trades:AAPL, trades:MSFT"
    );
    assert_eq!(
        get(
            &after,
            r#"ws_router_updates_published_total{result="ok",route="trades"}"#
        ),
        3.0
    );
    assert_eq!(
        get(
            &after,
            r#"ws_router_updates_published_total{result="error",route="trades"}"#
        ),
        1.0
    );
    assert_eq!(get(&after, "ws_router_updates_delivered_total"), 3.0);
    assert_eq!(
        get(
            &after,
            r#"ws_router_commands_total{result="ok",type="subscribe"}"#
        ),
        2.0
    );
    assert!(
        get(
            &after,
            r#"ws_router_plugin_calls_total{result="ok",route="bars"}"#
        ) >= 1.0,
        "the bars subscribe called its plugin"
    );
    assert!(get(&after, r#"ws_router_plugin_instances{route="bars"}"#) >= 1.0);
    assert!(
        get(
            &after,
            r#"ws_router_plugin_call_duration_seconds_count{route="bars"}"#
        ) >= 1.0
    );

    // A plugin added, then removed.
    let dir = host.plugins_dir.path();
    std::fs::copy(support::plugin("ticker"), dir.join("ticker.wasm")).expect("copy ticker");
    wait_until(Duration::from_secs(10), || async {
        get(
            &scrape(&host).await,
            r#"ws_router_plugin_events_total{event="loaded"}"#,
        ) >= get(&after, r#"ws_router_plugin_events_total{event="loaded"}"#) + 1.0
    })
    .await;
    std::fs::remove_file(dir.join("ticker.wasm")).expect("remove ticker");
    wait_until(Duration::from_secs(10), || async {
        get(
            &scrape(&host).await,
            r#"ws_router_plugin_events_total{event="removed"}"#,
        ) >= 1.0
    })
    .await;

    c.close().await;
    wait_until(Duration::from_secs(5), || async {
        let now = scrape(&host).await;
        get(&now, "ws_router_connections_open") == 0.0
            && get(&now, r#"ws_router_connections_closed_total{code="1000"}"#) == 1.0
    })
    .await;
}

#[tokio::test]
async fn healthz_always_and_readyz_once_the_startup_plugins_are_loaded() {
    // A cold compile of the Python plugin takes seconds: /readyz must say
    // 503 meanwhile, /healthz 200.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(support::plugin("news"), dir.path().join("news.wasm")).expect("copy news");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let mut child = KillOnDrop(
        Command::new(HOST_BIN)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--no-cache",
                "--plugins",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start host"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = ready_tx.send(());
            }
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut saw_not_ready = false;
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(60) && !ready {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.expect("JSON body");
            match status {
                503 => {
                    saw_not_ready = true;
                    assert!(
                        body["missing"][0]
                            .as_str()
                            .unwrap_or_default()
                            .contains("plugins"),
                        "{body}"
                    );
                    let health = http
                        .get(format!("{base}/healthz"))
                        .send()
                        .await
                        .expect("healthz");
                    assert_eq!(health.status().as_u16(), 200);
                    // No WebSocket client is let in to find no routes.
                    match tokio_tungstenite::connect_async(format!(
                        "ws://127.0.0.1:{port}/api/v1/ws"
                    ))
                    .await
                    {
                        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                            assert_eq!(response.status().as_u16(), 503);
                            assert!(response.headers().contains_key("retry-after"));
                        }
                        // Loaded in between the two requests.
                        Ok(_) => {}
                        Err(e) => panic!("upgrade while starting: {e}"),
                    }
                }
                200 => ready = true,
                other => panic!("/readyz answered {other}: {body}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(child);
    assert!(
        saw_not_ready,
        "/readyz never said 503 while the plugins compiled"
    );
    assert!(ready, "/readyz never said 200");
    assert!(
        ready_rx.recv_timeout(Duration::from_secs(5)).is_ok(),
        "no ready log line"
    );
}

/// A host process, killed and reaped however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until<F, Fut>(timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < timeout,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
