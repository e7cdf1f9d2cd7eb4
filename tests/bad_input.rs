//! A corpus of bad inputs sent over a real connection to the real host. Each
//! gets its documented answer (docs/limits.md, docs of the wire format); the
//! host never panics; where the connection is meant to survive it still
//! subscribes afterwards.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, Event, Host};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

/// What a client sends.
enum Input {
    Text(String),
    Binary(Vec<u8>),
    /// A text frame with these bytes, whatever they are (invalid UTF-8).
    RawText(Vec<u8>),
}

/// What the host answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// `{"type":"error","payload":{"status":"error",...}}`; connection stays.
    Error,
    /// `{"type":"<route>.<op>.response","payload":{"status":"error",...}}`.
    Response(&'static str),
    /// Either of the two error replies (the frame names a route or not,
    /// depending on how far parsing got); connection stays.
    AnyError,
    /// `<route>.<op>.response` with status ok; connection stays.
    Ok(&'static str),
    /// Closed with this code.
    Close(u16),
}

fn text(s: impl Into<String>) -> Input {
    Input::Text(s.into())
}

fn frame(v: Value) -> Input {
    Input::Text(v.to_string())
}

fn bars(payload: Value) -> Input {
    frame(json!({"type": "bars.subscribe", "payload": payload}))
}

fn nested(depth: usize, open: &str, close: &str, leaf: &str) -> String {
    format!("{}{leaf}{}", open.repeat(depth), close.repeat(depth))
}

fn corpus() -> Vec<(&'static str, Input, Answer)> {
    use Answer::*;
    let big = "x".repeat(60_000);
    vec![
        // Not JSON.
        ("empty text", text(""), Error),
        ("plain words", text("hello"), Error),
        ("truncated object", text("{"), Error),
        ("truncated after key", text(r#"{"type":"#), Error),
        (
            "trailing garbage",
            text(r#"{"type":"bars.subscribe","payload":{}} xyz"#),
            Error,
        ),
        (
            "single quotes",
            text("{'type':'bars.subscribe','payload':{}}"),
            Error,
        ),
        ("NUL byte", text("\u{0}"), Error),
        ("control characters", text("\u{1}\u{2}\u{7f}"), Error),
        // JSON, but not an envelope.
        ("null", text("null"), Error),
        ("number", text("123"), Error),
        ("string", text(r#""bars.subscribe""#), Error),
        ("array", text("[]"), Error),
        (
            "array of envelopes",
            text(r#"[{"type":"bars.subscribe","payload":{}}]"#),
            Error,
        ),
        ("empty object", text("{}"), Error),
        (
            "payload only",
            frame(json!({"payload": {"symbol": "AAPL"}})),
            Error,
        ),
        (
            "type is a number",
            frame(json!({"type": 5, "payload": {}})),
            Error,
        ),
        (
            "type is null",
            frame(json!({"type": null, "payload": {}})),
            Error,
        ),
        (
            "type is an array",
            frame(json!({"type": ["bars.subscribe"], "payload": {}})),
            Error,
        ),
        (
            "type is an object",
            frame(json!({"type": {"route": "bars"}, "payload": {}})),
            Error,
        ),
        (
            "duplicate type",
            text(r#"{"type":"bars.subscribe","type":"bars.subscribe","payload":{}}"#),
            Error,
        ),
        // Wrong envelope types.
        (
            "empty type",
            frame(json!({"type": "", "payload": {}})),
            Error,
        ),
        (
            "type without operation",
            frame(json!({"type": "bars", "payload": {}})),
            Error,
        ),
        (
            "type without route",
            frame(json!({"type": ".subscribe", "payload": {}})),
            Error,
        ),
        (
            "type with escapes",
            text(r#"{"type":"bars\u002esubscribe","payload":{}}"#),
            Error,
        ),
        (
            "unknown operation",
            frame(json!({"type": "bars.publish", "payload": {}})),
            Error,
        ),
        (
            "operation in capitals",
            frame(json!({"type": "bars.SUBSCRIBE", "payload": {}})),
            Error,
        ),
        (
            "three-part type",
            frame(json!({"type": "bars.subscribe.now", "payload": {}})),
            Error,
        ),
        (
            "type error",
            frame(json!({"type": "error", "payload": {}})),
            Error,
        ),
        (
            "host frame routes.changed",
            frame(json!({"type": "routes.changed", "payload": {}})),
            Error,
        ),
        (
            "long type",
            frame(json!({"type": format!("{}.subscribe", "b".repeat(50_000)), "payload": {}})),
            Response("unknown route"),
        ),
        // Server-only operations sent by a client.
        (
            "server-only update",
            frame(json!({"type": "bars.update", "payload": {"topic": "bars:x", "payload": {}}})),
            Error,
        ),
        (
            "server-only response",
            frame(json!({"type": "bars.subscribe.response", "payload": {"status": "ok"}})),
            Error,
        ),
        (
            "server-only route.removed",
            frame(json!({"type": "route.removed", "payload": {}})),
            Error,
        ),
        // Unknown routes.
        (
            "unknown route",
            frame(json!({"type": "nosuch.subscribe", "payload": {}})),
            Response("unknown route"),
        ),
        (
            "route in capitals",
            frame(json!({"type": "BARS.subscribe", "payload": {"symbol": "AAPL"}})),
            Response("unknown route"),
        ),
        (
            "non-ASCII route",
            frame(json!({"type": "bärs.subscribe", "payload": {}})),
            Response("unknown route"),
        ),
        (
            "unknown route unsubscribe",
            frame(json!({"type": "nosuch.unsubscribe", "payload": {}})),
            Response("unknown route"),
        ),
        // Missing or wrong payloads.
        (
            "missing payload",
            frame(json!({"type": "bars.subscribe"})),
            Response("payload"),
        ),
        (
            "null payload",
            frame(json!({"type": "bars.subscribe", "payload": null})),
            Response("payload"),
        ),
        (
            "payload is an array",
            bars(json!([])),
            Response("invalid request"),
        ),
        (
            "payload is a string",
            bars(json!("AAPL")),
            Response("invalid request"),
        ),
        (
            "payload is a number",
            bars(json!(42)),
            Response("invalid request"),
        ),
        (
            "payload is a bool",
            bars(json!(true)),
            Response("invalid request"),
        ),
        (
            "missing required field",
            bars(json!({})),
            Response("invalid request"),
        ),
        (
            "field of wrong type",
            bars(json!({"symbol": 5})),
            Response("invalid request"),
        ),
        (
            "field is null",
            bars(json!({"symbol": null})),
            Response("invalid request"),
        ),
        (
            "field is an array",
            bars(json!({"symbol": ["AAPL"]})),
            Response("invalid request"),
        ),
        (
            "optional field of wrong type",
            bars(json!({"symbol": "AAPL", "resolution": {"x": 1}})),
            Response("invalid request"),
        ),
        (
            "unsubscribe with bad payload",
            frame(json!({"type": "bars.unsubscribe", "payload": {"symbol": false}})),
            Response("invalid request"),
        ),
        // Huge values.
        (
            "huge number",
            text(r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":1e400}}"#),
            AnyError,
        ),
        (
            "huge integer",
            text(
                r#"{"type":"bars.subscribe","payload":{"symbol":123456789012345678901234567890123456789}}"#,
            ),
            Response("invalid request"),
        ),
        (
            "huge string",
            bars(json!({"symbol": big})),
            Response("invalid answer"),
        ),
        (
            "lone surrogate",
            text(r#"{"type":"bars.subscribe","payload":{"symbol":"\ud800"}}"#),
            AnyError,
        ),
        // Deep nesting.
        (
            "payload nested 5000 deep (arrays)",
            text(format!(
                r#"{{"type":"bars.subscribe","payload":{}}}"#,
                nested(5000, "[", "]", "1")
            )),
            Response("recursion limit"),
        ),
        (
            "payload nested 5000 deep (objects)",
            text(format!(
                r#"{{"type":"bars.subscribe","payload":{}}}"#,
                nested(5000, r#"{"a":"#, "}", "1")
            )),
            Response("recursion limit"),
        ),
        (
            "frame nested 10000 deep",
            text(nested(10_000, "[", "]", "")),
            Error,
        ),
        (
            "field nested 100 deep",
            bars(
                serde_json::from_str(&format!(r#"{{"symbol":{}}}"#, nested(100, "[", "]", "1")))
                    .unwrap(),
            ),
            Response("invalid request"),
        ),
        // Extra fields are ignored, as documented.
        (
            "extra envelope fields",
            frame(
                json!({"type": "bars.subscribe", "payload": {"symbol": "AAPL"}, "id": 7, "meta": {"x": [1]}}),
            ),
            Ok("bars.subscribe.response"),
        ),
        (
            "extra payload fields",
            bars(json!({"symbol": "MSFT", "color": "blue", "n": [1, 2]})),
            Ok("bars.subscribe.response"),
        ),
        // Binary frames.
        (
            "binary JSON",
            Input::Binary(br#"{"type":"bars.subscribe","payload":{"symbol":"AAPL"}}"#.to_vec()),
            Error,
        ),
        (
            "binary garbage",
            Input::Binary(vec![0xff, 0x00, 0xfe, 0x01]),
            Error,
        ),
        ("empty binary", Input::Binary(vec![]), Error),
        // Frames the WebSocket layer refuses: the connection closes.
        (
            "invalid UTF-8 text",
            Input::RawText(vec![b'{', 0xff, 0xfe, b'}']),
            Close(1007),
        ),
        (
            "truncated UTF-8 text",
            Input::RawText("é".as_bytes()[..1].to_vec()),
            Close(1007),
        ),
        (
            "oversized text",
            text(format!(
                r#"{{"type":"bars.subscribe","payload":{{"symbol":"{}"}}}}"#,
                "y".repeat(70_000)
            )),
            Close(1009),
        ),
        (
            "oversized binary",
            Input::Binary(vec![b'a'; 100_000]),
            Close(1009),
        ),
    ]
}

async fn send(c: &mut Client, input: &Input) {
    match input {
        Input::Text(t) => c.send_text(t).await,
        Input::Binary(b) => c.send_message(Message::binary(b.clone())).await,
        Input::RawText(bytes) => {
            let frame = Frame::message(bytes.clone(), OpCode::Data(Data::Text), true);
            c.send_message(Message::Frame(frame)).await
        }
    }
}

fn check(name: &str, expected: Answer, event: Option<Event>) {
    let frame = |event: Option<Event>| -> Value {
        match event {
            Some(Event::Text(t)) => serde_json::from_str(&t)
                .unwrap_or_else(|e| panic!("{name}: reply is not JSON ({e}): {t}")),
            other => panic!("{name}: expected a reply, got {other:?}"),
        }
    };
    match expected {
        Answer::Error => {
            let v = frame(event);
            assert_eq!(v["type"], "error", "{name}: {v}");
            assert_eq!(v["payload"]["status"], "error", "{name}: {v}");
            assert!(
                v["payload"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{name}: {v}"
            );
        }
        Answer::Response(needle) => {
            let v = frame(event);
            let ty = v["type"].as_str().unwrap_or_default();
            assert!(ty.ends_with(".response"), "{name}: {v}");
            assert_eq!(v["payload"]["status"], "error", "{name}: {v}");
            let message = v["payload"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(needle),
                "{name}: message lacks {needle:?}: {v}"
            );
        }
        Answer::AnyError => {
            let v = frame(event);
            let ty = v["type"].as_str().unwrap_or_default();
            assert!(ty == "error" || ty.ends_with(".response"), "{name}: {v}");
            assert_eq!(v["payload"]["status"], "error", "{name}: {v}");
        }
        Answer::Ok(ty) => {
            let v = frame(event);
            assert_eq!(v["type"], ty, "{name}: {v}");
            assert_eq!(v["payload"]["status"], "ok", "{name}: {v}");
        }
        Answer::Close(code) => match event {
            Some(Event::Closed(Some((got, _)))) => assert_eq!(got, code, "{name}"),
            other => panic!("{name}: expected close {code}, got {other:?}"),
        },
    }
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_answer() {
    let host = Host::start();
    let corpus = corpus();
    assert!(corpus.len() >= 40, "the corpus has {} inputs", corpus.len());
    // One connection per input: a close cannot hide the next answer, and
    // each surviving connection proves it still works.
    for (name, input, expected) in &corpus {
        let mut c = host.client().await;
        send(&mut c, input).await;
        let event = c.next_event(Duration::from_secs(5)).await;
        check(name, *expected, event);
        if !matches!(expected, Answer::Close(_)) {
            let reply = c.subscribe("trades", json!({"symbols": ["AAPL"]})).await;
            assert_eq!(
                reply["status"], "ok",
                "{name}: cannot subscribe after: {reply}"
            );
        }
    }
    // All of them again on a single connection, in a row (the closing ones
    // excluded): each still gets its answer, in order.
    let mut c = host.client().await;
    for (name, input, expected) in corpus
        .iter()
        .filter(|(_, _, a)| !matches!(a, Answer::Close(_)))
    {
        send(&mut c, input).await;
        check(name, *expected, c.next_event(Duration::from_secs(5)).await);
    }
    c.subscribe("bars", json!({"symbol": "GOOGL"})).await;
    let logs = host.logs().join("\n");
    assert!(!logs.contains("panicked"), "the host panicked:\n{logs}");
}

#[tokio::test]
async fn a_flood_of_subscribe_and_unsubscribe_is_paced_and_sustained_abuse_closed() {
    let host = Host::builder()
        .arg("--commands-per-sec")
        .arg("100")
        .arg("--rate-limit-close-after-ms")
        .arg("1000")
        .start();
    let mut c = host.client().await;
    // 150 at once: the first 100 (the burst) are served at once, the rest
    // as the rate allows; every one is answered, in order.
    let started = std::time::Instant::now();
    for i in 0..150 {
        let op = if i % 2 == 0 {
            "subscribe"
        } else {
            "unsubscribe"
        };
        c.send(
            &json!({"type": format!("bars.{op}"), "id": i, "payload": {"symbol": format!("S{}", i / 2)}}),
        )
        .await;
    }
    for i in 0..150 {
        let v = c.recv().await;
        assert_eq!(v["id"], i, "{v}");
        assert_eq!(v["payload"]["status"], "ok", "{v}");
    }
    // Paced: the last 50 took about half a second.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;

    // A client that keeps going at many times the rate is closed with 1008
    // once it has been held back for --rate-limit-close-after-ms.
    let mut abuser = host.client().await;
    for _ in 0..400 {
        abuser
            .send_text(r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL"}}"#)
            .await;
    }
    let closed = loop {
        match abuser.next_event(Duration::from_secs(5)).await {
            Some(Event::Text(_)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(closed, Some(Event::Closed(Some((1008, _))))),
        "{closed:?}"
    );
    // The other connection did not notice.
    c.subscribe("bars", json!({"symbol": "MSFT"})).await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let host = Host::builder().arg("--max-subscriptions").arg("5").start();
    let mut c = host.client().await;
    for i in 0..5 {
        c.subscribe("bars", json!({"symbol": format!("S{i}")}))
            .await;
    }
    c.send(&json!({"type": "bars.subscribe", "payload": {"symbol": "S5"}}))
        .await;
    let v = c.recv().await;
    assert_eq!(v["type"], "bars.subscribe.response");
    assert_eq!(v["payload"]["status"], "error");
    assert!(
        v["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("subscription limit"),
        "{v}"
    );
    // Subscribing again to a held one is fine; unsubscribing frees a slot.
    c.subscribe("bars", json!({"symbol": "S0"})).await;
    c.send(&json!({"type": "bars.unsubscribe", "payload": {"symbol": "S0"}}))
        .await;
    assert_eq!(c.recv().await["payload"]["status"], "ok");
    c.subscribe("bars", json!({"symbol": "S5"})).await;
}
