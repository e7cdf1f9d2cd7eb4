//! Hardening against hostile or unlucky clients and publishers (issue 12,
//! `hardening-spec` items 5-12): host-wide subscription bounds, unsubscribe
//! and re-subscribe across upgrades, latest-value conflation per key,
//! control frames to slow clients, command bursts and closing handshakes,
//! HTTP timeouts and connection counting, the quotes data model.

#[path = "support/attack.rs"]
mod attack;
mod support;

use std::time::{Duration, Instant};

use attack::{Ending, TcpOutcome, install_plugin, raw_ws, read_tcp, read_until_end, wait_route};
use futures_util::SinkExt;
use serde_json::{Value, json};
use support::{Client, Event, Host};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

fn host_with(plugins: &[&str], args: &[&str]) -> Host {
    attack::require_flags(args);
    let mut builder = Host::builder().plugins(plugins);
    for a in args {
        builder = builder.arg(a);
    }
    builder.start()
}

/// The next frame that is not a `routes.changed` announcement.
async fn recv_reply(c: &mut Client) -> Value {
    loop {
        let frame = c.recv().await;
        if frame["type"] != "routes.changed" {
            return frame;
        }
    }
}

async fn command(c: &mut Client, route: &str, op: &str, request: Value) -> Value {
    c.send(&json!({"type": format!("{route}.{op}"), "payload": request}))
        .await;
    let reply = recv_reply(c).await;
    assert_eq!(reply["type"], format!("{route}.{op}.response"), "{reply}");
    reply["payload"].clone()
}

// ---------------------------------------------------------------- item 5

/// Spec item 5: `--max-total-subscriptions` bounds subscriptions across
/// all connections; over it, a subscribe gets an error reply naming the
/// host-wide limit and the connection stays.
#[tokio::test]
async fn host_wide_subscription_limit_refuses_with_a_clear_error_and_keeps_the_connection() {
    let host = host_with(&["bars"], &["--max-total-subscriptions", "3"]);
    let mut a = host.client().await;
    let mut b = host.client().await;
    a.subscribe("bars", json!({"symbol": "S0"})).await;
    a.subscribe("bars", json!({"symbol": "S1"})).await;
    b.subscribe("bars", json!({"symbol": "S2"})).await;
    let refused = command(&mut b, "bars", "subscribe", json!({"symbol": "S3"})).await;
    assert_eq!(refused["status"], "error", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("host-wide subscription limit"),
        "{message}"
    );
    // The connection stays; freeing one lets the next in.
    let ok = command(&mut b, "bars", "unsubscribe", json!({"symbol": "S2"})).await;
    assert_eq!(ok["status"], "ok", "{ok}");
    b.subscribe("bars", json!({"symbol": "S3"})).await;
    let refused = command(&mut a, "bars", "subscribe", json!({"symbol": "S4"})).await;
    assert_eq!(refused["status"], "error", "{refused}");
}

/// Spec item 5: `--max-total-keys` bounds routing keys across all
/// connections, with an error reply naming the host-wide key limit.
#[tokio::test]
async fn host_wide_key_limit_refuses_with_a_clear_error() {
    let host = host_with(&["quotes"], &["--max-total-keys", "4"]);
    let mut a = host.client().await;
    let mut b = host.client().await;
    a.subscribe("quotes", json!({"symbols": ["A", "B", "C"]}))
        .await;
    let refused = command(
        &mut b,
        "quotes",
        "subscribe",
        json!({"symbols": ["D", "E"]}),
    )
    .await;
    assert_eq!(refused["status"], "error", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("host-wide key limit"), "{message}");
    b.subscribe("quotes", json!({"symbols": ["A"]})).await;
}

/// Spec item 5: the host stores the canonical request, not what the client
/// sent: 600 subscriptions each carrying 60 KB of unknown fields (36 MB in
/// all) leave the host's memory about where it was.
#[tokio::test]
async fn unknown_request_fields_are_not_stored_with_the_subscription() {
    let host = host_with(&["bars"], &[]);
    let junk = "x".repeat(60_000);
    // Warm up allocator arenas and the plugin pool before measuring.
    let mut warm = host.client().await;
    for i in 0..20 {
        warm.subscribe("bars", json!({"symbol": format!("W{i}"), "junk": junk}))
            .await;
    }
    let before = attack::vm_rss_kib(host.pid());
    let mut tasks = Vec::new();
    for conn in 0..12 {
        let url = host.ws_url();
        let junk = junk.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            for i in 0..50 {
                c.subscribe(
                    "bars",
                    json!({"symbol": format!("S{conn}_{i}"), "junk": junk}),
                )
                .await;
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(
            tokio::time::timeout(Duration::from_secs(12), t)
                .await
                .expect("subscribes finished")
                .unwrap(),
        );
    }
    assert_eq!(
        host.subscribers(r#"bars:{"resolution":"1","symbol":"S3_7"}"#)
            .await,
        1
    );
    let after = attack::vm_rss_kib(host.pid());
    let grown_kib = after.saturating_sub(before);
    assert!(
        grown_kib < 12 * 1024,
        "RSS grew by {grown_kib} KiB holding 600 subscriptions: the 60 KB of unknown fields \
         of each request are kept"
    );
    drop(clients);
}

// ---------------------------------------------------------- items 6 and 9

const TICKER_AAPL: &str = r#"ticker:{"symbol":"AAPL"}"#;

fn tick(last: f64) -> Value {
    json!({"status": "open", "values": {"last": last}})
}

/// Replace `ticker.wasm` by `with` and wait until `version` serves.
async fn upgrade_ticker(host: &Host, with: &str, version: &str) {
    install_plugin(host.plugins_dir.path(), with, "ticker.wasm");
    wait_route(host, "ticker", Some(version), WAIT).await;
}

/// Spec item 6: after an upgrade to a version whose request schema rejects
/// the old request, the client can still unsubscribe (ok, with the topic it
/// held) and receives no more updates.
#[tokio::test]
async fn unsubscribe_works_after_an_upgrade_to_a_stricter_request_schema() {
    let host = host_with(&["ticker"], &[]);
    let mut c = host.client().await;
    let held = c.subscribe("ticker", json!({"symbol": "AAPL"})).await;
    assert_eq!(held["topic"], TICKER_AAPL);
    upgrade_ticker(&host, "ticker-strict", "0.4.0").await;

    let reply = command(&mut c, "ticker", "unsubscribe", json!({"symbol": "AAPL"})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["topic"], TICKER_AAPL, "{reply}");
    assert_eq!(host.subscribers(TICKER_AAPL).await, 0);
    host.publish(&json!({"route": "ticker", "topic": TICKER_AAPL, "data": tick(1.0)}))
        .await;
    expect_no_update(&mut c).await;
}

/// Spec item 6: after an upgrade to a version whose `topics` traps for the
/// request, the client can still unsubscribe and receives no more updates.
#[tokio::test]
async fn unsubscribe_works_when_the_new_version_traps_on_the_request() {
    let host = host_with(&["ticker"], &[]);
    let mut c = host.client().await;
    let topic = r#"ticker:{"symbol":"TRAP"}"#;
    assert_eq!(
        c.subscribe("ticker", json!({"symbol": "TRAP"})).await["topic"],
        topic
    );
    upgrade_ticker(&host, "ticker-v2", "0.5.0").await;

    let reply = command(&mut c, "ticker", "unsubscribe", json!({"symbol": "TRAP"})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["topic"], topic, "{reply}");
    assert_eq!(host.subscribers(topic).await, 0);
    host.publish(&json!({"route": "ticker", "topic": topic, "data": tick(1.0)}))
        .await;
    expect_no_update(&mut c).await;
}

/// No update frame within a short wait (announcements are fine).
async fn expect_no_update(c: &mut Client) {
    let until = Instant::now() + Duration::from_millis(400);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match c.next_event(left).await {
            None => return,
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_ne!(
                    v["type"], "ticker.update",
                    "an update after unsubscribe: {v}"
                );
            }
            Some(other) => panic!("connection ended: {other:?}"),
        }
    }
}

/// Spec item 9: re-subscribing with the same request after an upgrade that
/// names topics differently is recognised: ok with the topic already held,
/// and one publication is delivered once.
#[tokio::test]
async fn resubscribing_after_an_upgrade_that_renames_topics_does_not_duplicate_updates() {
    let host = host_with(&["ticker"], &[]);
    let mut c = host.client().await;
    c.subscribe("ticker", json!({"symbol": "AAPL"})).await;
    upgrade_ticker(&host, "ticker-v2", "0.5.0").await;

    let again = command(&mut c, "ticker", "subscribe", json!({"symbol": "AAPL"})).await;
    assert_eq!(again["status"], "ok", "{again}");
    assert_eq!(again["topic"], TICKER_AAPL, "{again}");
    host.publish(&json!({"route": "ticker", "request": {"symbol": "AAPL"}, "data": tick(2.0)}))
        .await;
    let update = recv_reply(&mut c).await;
    assert_eq!(update["type"], "ticker.update", "{update}");
    assert_eq!(update["payload"]["topic"], TICKER_AAPL);
    expect_no_update(&mut c).await;
}

// ---------------------------------------------------------- items 7 and 8

/// A quote of `symbol` numbered `seq` (in `volume`), padded to about 20 KB
/// so that a few hundred fill any socket buffer.
fn big_quote(symbol: &str, seq: u64) -> Value {
    json!({"route": "quotes", "request": {"symbols": [symbol]},
           "data": {"s": "ok", "n": symbol, "v": {"lp": 1.0, "ask": 1.1, "bid": 0.9, "spread": 0.2,
           "open_price": 1.0, "high_price": 1.2, "low_price": 0.8, "prev_close_price": 1.0,
           "ch": 0.0, "chp": 0.0, "volume": seq, "short_name": symbol, "exchange": "X",
           "description": "d".repeat(20_000), "original_name": symbol}}})
}

/// Publish `count` numbered big quotes of `symbol`, one per request: the
/// host's writer gets each before the next, so the socket buffers fill
/// (in batches, the outbox would conflate them before any reached the
/// socket, and the socket would never fill).
async fn publish_quotes(host: &Host, symbol: &str, count: u64) {
    for i in 1..=count {
        let reply = host.publish(&big_quote(symbol, i)).await;
        assert_eq!(reply["failed"], 0, "{reply:.300}");
    }
}

/// Spec item 7: latest-value conflation is per (subscription, key): a slow
/// client subscribed to AAPL and MSFT in one subscription keeps the newest
/// AAPL queued while MSFT updates keep coming.
#[tokio::test]
async fn a_slow_quotes_client_keeps_the_newest_value_of_every_symbol() {
    let host = host_with(&["quotes"], &["--outbox-bytes", "65536"]);
    let mut slow = Client::connect_with_recv_buffer(&host.ws_url(), 8192).await;
    slow.subscribe("quotes", json!({"symbols": ["AAPL", "MSFT"]}))
        .await;
    // 6 MB of each, more than the socket buffers hold (the host's send
    // buffer grows to 4 MiB): the client reads nothing meanwhile.
    const EACH: u64 = 300;
    publish_quotes(&host, "AAPL", EACH).await;
    publish_quotes(&host, "MSFT", EACH).await;

    let (mut aapl, mut msft, mut received) = (0, 0, 0);
    while msft < EACH {
        match slow.next_event(WAIT).await {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let data = &v["payload"]["payload"];
                let seq = data["v"]["volume"].as_u64().unwrap();
                match data["n"].as_str() {
                    Some("AAPL") => aapl = seq,
                    Some("MSFT") => msft = seq,
                    other => panic!("unexpected symbol {other:?}"),
                }
                received += 1;
            }
            other => panic!("the slow quotes client was closed or starved: {other:?}"),
        }
    }
    assert!(
        received < 2 * EACH,
        "nothing was conflated: the test did not fill the queue"
    );
    assert_eq!(
        aapl, EACH,
        "the newest AAPL quote was lost: an MSFT update replaced it (conflated by topic)"
    );
}

/// Spec item 8: control frames (a subscribe reply, `routes.changed`,
/// `route.removed`) pushed while a latest-value client's queue is over its
/// limit are queued, not a reason to close it with 4008.
#[tokio::test]
async fn control_frames_do_not_disconnect_a_slow_latest_value_client() {
    let host = host_with(&["quotes", "bars"], &["--outbox-bytes", "65536"]);
    let mut slow = Client::connect_with_recv_buffer(&host.ws_url(), 8192).await;
    for symbol in ["AAPL", "MSFT", "GOOG"] {
        slow.subscribe("quotes", json!({"symbols": [symbol]})).await;
    }
    slow.subscribe("bars", json!({"symbol": "AAPL"})).await;
    // Fill the socket buffers, then queue updates of other subscriptions:
    // the queue is now over its limit (latest-value queues may reach twice
    // the limit with several subscriptions).
    publish_quotes(&host, "AAPL", 300).await;
    publish_quotes(&host, "MSFT", 1).await;
    publish_quotes(&host, "GOOG", 1).await;

    // While its queue is over the limit: a command reply, routes.changed,
    // route.removed.
    slow.send(&json!({"type": "quotes.subscribe", "payload": {"symbols": ["MSFT"]}}))
        .await;
    install_plugin(host.plugins_dir.path(), "ticker", "ticker.wasm");
    wait_route(&host, "ticker", None, WAIT).await;
    std::fs::remove_file(host.plugins_dir.path().join("bars.wasm")).unwrap();
    let start = Instant::now();
    while host.route_names().await.contains(&"bars".to_owned()) {
        assert!(start.elapsed() < WAIT, "bars never removed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut reply, mut changed, mut removed, mut newest) = (false, false, false, 0);
    while !(reply && changed && removed && newest == 300) {
        match slow.next_event(WAIT).await {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str().unwrap_or_default() {
                    "quotes.subscribe.response" => {
                        assert_eq!(v["payload"]["status"], "ok", "{v}");
                        reply = true;
                    }
                    "routes.changed" => changed = true,
                    "route.removed" => removed = true,
                    "quotes.update" if v["payload"]["payload"]["n"] == "AAPL" => {
                        newest = v["payload"]["payload"]["v"]["volume"].as_u64().unwrap()
                    }
                    "quotes.update" => {}
                    other => panic!("unexpected frame {other}"),
                }
            }
            other => panic!(
                "the slow latest-value client was closed (reply {reply}, routes.changed \
                 {changed}, route.removed {removed}, newest quote {newest}): {other:?}"
            ),
        }
    }
}

// --------------------------------------------------------------- item 10

/// Spec item 10: with the default `--commands-per-sec 100`, 150 subscribes
/// sent at once (a watch list at page load) all get ok replies: the host
/// slows the client down instead of refusing commands.
#[tokio::test]
async fn a_burst_of_150_subscribes_all_succeed() {
    let host = host_with(&["bars"], &[]);
    let mut c = host.client().await;
    for i in 0..150 {
        c.send(&json!({"type": "bars.subscribe", "payload": {"symbol": format!("S{i}")}}))
            .await;
    }
    for i in 0..150 {
        let reply = c.recv().await;
        assert_eq!(
            reply["type"], "bars.subscribe.response",
            "reply {i}: {reply}"
        );
        assert_eq!(reply["payload"]["status"], "ok", "reply {i}: {reply}");
    }
}

/// Spec item 10: a client that sent 2,000 commands at once is closed for
/// sustained abuse with a close frame carrying 1008 (the closing handshake
/// completes; not a reset).
#[tokio::test]
async fn a_flooding_client_receives_close_1008_not_a_reset() {
    let host = host_with(&["bars"], &[]);
    let mut ws = raw_ws(&host.ws_url()).await;
    // 2 MB in all: more than the host's socket buffer takes at once.
    let frame = json!({"type": "bars.subscribe",
        "payload": {"symbol": "AAPL", "pad": "x".repeat(1000)}})
    .to_string();
    // All at once, one flush: the host has unread frames when it closes.
    // (With backpressure it may stop reading: the flush may then stall.)
    for _ in 0..2000 {
        ws.feed(Message::text(frame.as_str()))
            .await
            .expect("buffer a frame");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.flush()).await;
    let (ending, _) = read_until_end(&mut ws, Duration::from_secs(12)).await;
    match ending {
        Ending::CloseFrame(code, _) => assert_eq!(code, 1008, "{ending:?}"),
        other => panic!("expected a close frame with 1008, got {other:?}"),
    }
}

/// Spec item 10: a client closed for an oversized message (1 MiB, over the
/// 64 KiB limit) receives the close frame with 1009, not a reset.
#[tokio::test]
async fn an_oversized_message_gets_close_1009_not_a_reset() {
    let host = host_with(&["bars"], &[]);
    let mut ws = raw_ws(&host.ws_url()).await;
    let big = format!(
        r#"{{"type":"bars.subscribe","payload":{{"symbol":"{}"}}}}"#,
        "A".repeat(1 << 20)
    );
    let _ = attack::send_text(&mut ws, &big).await;
    let (ending, _) = read_until_end(&mut ws, Duration::from_secs(5)).await;
    match ending {
        Ending::CloseFrame(code, _) => assert_eq!(code, 1009, "{ending:?}"),
        other => panic!("expected a close frame with 1009, got {other:?}"),
    }
}

// --------------------------------------------------------------- item 11

async fn tcp(host: &Host) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(&host.addr)
        .await
        .expect("TCP connect")
}

const SLOW_HEADERS: &[u8] = b"GET /api/v1/routes HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";

/// Spec item 11: `--http-header-timeout-ms`: a connection that trickles its
/// request headers is closed once the timeout passes.
#[tokio::test]
async fn trickled_headers_are_cut_off_by_the_header_timeout() {
    let host = host_with(&["bars"], &["--http-header-timeout-ms", "500"]);
    let mut s = tcp(&host).await;
    let started = Instant::now();
    let closed = attack::trickle(
        &mut s,
        SLOW_HEADERS,
        Duration::from_millis(50),
        Duration::from_secs(4),
    )
    .await;
    assert!(
        closed,
        "still open after {:?} of trickled headers",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Spec item 11: the header timeout is on by default (10 s): a slowloris
/// connection does not live forever.
#[tokio::test]
async fn trickled_headers_are_cut_off_by_default() {
    let host = host_with(&["bars"], &[]);
    let mut s = tcp(&host).await;
    let started = Instant::now();
    let closed = attack::trickle(
        &mut s,
        SLOW_HEADERS,
        Duration::from_millis(200),
        Duration::from_secs(13),
    )
    .await;
    assert!(
        closed,
        "still open after {:?} of trickled headers",
        started.elapsed()
    );
}

/// Spec item 11: `--http-body-timeout-ms`: a publish whose body does not
/// complete in time gets 408, and nothing is published.
#[tokio::test]
async fn a_trickled_publish_body_gets_408_and_publishes_nothing() {
    let host = host_with(&["bars"], &["--http-body-timeout-ms", "1000"]);
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let body = json!({"route": "bars", "request": {"symbol": "AAPL"},
        "data": {"time": 1, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}})
    .to_string();
    let mut s = tcp(&host).await;
    let head = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let got = match read_tcp(&mut s, Duration::from_secs(4)).await {
        TcpOutcome::Closed(b) | TcpOutcome::Open(b) => String::from_utf8_lossy(&b).into_owned(),
    };
    assert!(
        got.starts_with("HTTP/1.1 408"),
        "reply to a stalled body: {got:?}"
    );
    c.expect_silence(Duration::from_millis(300)).await;
}

/// Spec item 11: every accepted TCP connection counts against
/// `--max-connections`: with 3 idle TCP connections open and a limit of 3,
/// a WebSocket upgrade fails (closed at once, 503, or a 1013 close).
#[tokio::test]
async fn idle_tcp_connections_count_against_max_connections() {
    let host = host_with(&["bars"], &["--max-connections", "3"]);
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tcp(&host).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let attempt = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_tungstenite::connect_async(host.ws_url()),
    )
    .await;
    match attempt {
        Err(_) => panic!("the upgrade attempt hung instead of failing at once"),
        Ok(Err(e)) => {
            // Refused: closed at once, or an HTTP error such as 503.
            let text = e.to_string();
            assert!(!text.is_empty());
        }
        Ok(Ok((mut ws, _))) => {
            let (ending, _) = read_until_end(&mut ws, Duration::from_secs(2)).await;
            match ending {
                Ending::CloseFrame(1013, _) => {}
                other => panic!(
                    "a 4th connection was served with 3 idle TCP connections open and \
                     --max-connections 3: {other:?}"
                ),
            }
        }
    }
    // Room again once they go.
    drop(idle);
    let start = Instant::now();
    loop {
        if let Ok(Ok((ws, _))) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(host.ws_url()),
        )
        .await
        {
            drop(ws);
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "no room after the idle connections closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --------------------------------------------------------------- item 12

/// Spec item 12: the quotes data schema accepts the earlier model's
/// error quotes and partial values, and they are delivered.
#[tokio::test]
async fn quotes_accept_error_quotes_and_partial_values() {
    let host = host_with(&["quotes"], &[]);
    let mut c = host.client().await;
    c.subscribe("quotes", json!({"symbols": ["XYZ", "AAPL"]}))
        .await;
    let error_quote = json!({"s": "error", "n": "XYZ", "v": {"error": "Symbol not found"}});
    let partial = json!({"s": "ok", "n": "AAPL", "v": {"lp": 190.7}});
    for (symbol, data) in [("XYZ", &error_quote), ("AAPL", &partial)] {
        let reply = host
            .publish(&json!({"route": "quotes", "request": {"symbols": [symbol]}, "data": data}))
            .await;
        assert_eq!(reply["failed"], 0, "{symbol}: {reply}");
        let update = c.recv().await;
        assert_eq!(update["type"], "quotes.update", "{update}");
        assert_eq!(&update["payload"]["payload"], data);
    }
}
