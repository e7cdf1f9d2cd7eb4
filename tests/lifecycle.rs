//! Connection lifecycle against the real binary: heartbeat, connection
//! limit, graceful shutdown on SIGTERM, and plugins of the older contract.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, Event, Host};

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut host = Host::start();
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    // An HTTP connection that sent nothing does not hold the exit up.
    let _idle = tokio::net::TcpStream::connect(&host.addr).await.unwrap();
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(host.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    let event = loop {
        match c.next_event(Duration::from_secs(10)).await {
            Some(Event::Text(_)) => continue,
            other => break other,
        }
    };
    match event {
        Some(Event::Closed(Some((code, reason)))) => {
            assert_eq!(code, 1001, "{reason}");
        }
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert_eq!(host.wait_exit(Duration::from_secs(10)), Some(0));
    // New connections are refused once the host has stopped.
    assert!(
        tokio_tungstenite::connect_async(host.ws_url())
            .await
            .is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_an_idle_one_is_not() {
    let host = Host::builder()
        .arg("--heartbeat-interval-ms")
        .arg("200")
        .arg("--heartbeat-timeout-ms")
        .arg("300")
        .start();
    let mut idle = host.client().await;
    idle.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let mut deaf = host.client().await;
    deaf.subscribe("bars", json!({"symbol": "AAPL"})).await;

    // The idle client reads (so its WebSocket library answers pings) but
    // sends nothing itself, for many heartbeat periods.
    idle.expect_silence(Duration::from_millis(2000)).await;
    // The deaf client read nothing meanwhile: it missed its pongs.
    match deaf.next_event(Duration::from_secs(5)).await {
        Some(Event::Closed(Some((code, reason)))) => {
            assert_eq!(code, 4000, "{reason}");
            assert!(reason.contains("heartbeat"), "{reason}");
        }
        other => panic!("expected close 4000, got {other:?}"),
    }
    idle.subscribe("bars", json!({"symbol": "MSFT"})).await;
    host.wait_for_log("no pong within", Duration::from_secs(1))
        .await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_with_1013() {
    let host = Host::builder().arg("--max-connections").arg("2").start();
    let mut a = host.client().await;
    let b = host.client().await;
    let mut c = host.client().await;
    match c.next_event(Duration::from_secs(5)).await {
        Some(Event::Closed(Some((code, reason)))) => {
            assert_eq!(code, 1013, "{reason}");
        }
        other => panic!("expected close 1013, got {other:?}"),
    }
    a.subscribe("bars", json!({"symbol": "AAPL"})).await;
    // A slot frees when a client leaves.
    b.close().await;
    let mut d = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut client = Client::connect(&host.ws_url()).await;
        client
            .send(&json!({"type": "bars.subscribe", "payload": {"symbol": "MSFT"}}))
            .await;
        if let Some(Event::Text(_)) = client.next_event(Duration::from_secs(2)).await {
            d = Some(client);
            break;
        }
    }
    assert!(d.is_some(), "no slot freed");
}

#[tokio::test]
async fn plugins_built_against_contract_0_1_0_still_load_with_queue_all() {
    // bars-contract-0.1.0.wasm: the bars plugin as built before the
    // optional `delivery` interface existed (contract 0.1.0).
    let host = Host::builder()
        .plugins(&["bars-contract-0.1.0", "quotes"])
        .start();
    let routes = host.get_json("/api/v1/routes").await;
    let delivery = |name: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not loaded: {routes}"))["delivery"]
            .clone()
    };
    assert_eq!(delivery("bars"), "queue-all");
    assert_eq!(delivery("quotes"), "latest-value");
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
}

/// Read from `s` until the host closes it (EOF or reset); what arrived, or
/// `None` if it stayed open for `wait`.
async fn read_to_close(s: &mut tokio::net::TcpStream, wait: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn http_connections_idle_past_the_header_timeout_are_closed() {
    use tokio::io::AsyncWriteExt;
    let host = Host::builder()
        .arg("--http-header-timeout-ms")
        .arg("300")
        .start();
    // One that never sends a byte.
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(&host.addr).await.unwrap();
    assert!(
        read_to_close(&mut silent, Duration::from_secs(3))
            .await
            .is_some(),
        "a silent connection stayed open"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // One kept alive after a request, then idle.
    let mut kept = tokio::net::TcpStream::connect(&host.addr).await.unwrap();
    kept.write_all(b"GET /api/v1/routes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut kept, Duration::from_secs(3))
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn connections_over_the_limit_get_503_for_plain_http() {
    let host = Host::builder().arg("--max-connections").arg("1").start();
    let _held = tokio::net::TcpStream::connect(&host.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = reqwest::get(host.http("/api/v1/routes")).await.unwrap();
    assert_eq!(reply.status(), 503);
    assert_eq!(reply.headers()["retry-after"], "1");
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["message"], "too many connections: try again later");
}

#[tokio::test]
async fn a_publish_body_over_2_mib_gets_413() {
    let host = Host::start();
    let body = format!("[{}]", "1,".repeat(1 << 20) + "1");
    let reply = reqwest::Client::new()
        .post(host.http("/api/v1/publish"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
}
