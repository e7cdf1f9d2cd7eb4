//! Subscribing to routes that keep their updates, and reading positions
//! and updates back (docs/recovery.md): shared by the single-host and the
//! two-node recovery tests (use with `#[path = "support/recovery.rs"] mod
//! recovery;` next to `mod support;`).

#![allow(dead_code)]

use serde_json::{Value, json};

use crate::support::{Client, Host};

pub const BARS: &str = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;

pub fn bar(time: u64) -> Value {
    json!({"time": time, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10})
}

/// Publish bars AAPL 1 with times `times`, in one request (in order); each
/// item's result.
pub async fn publish_bars(host: &Host, times: impl IntoIterator<Item = u64>) -> Vec<Value> {
    let body: Vec<Value> = times
        .into_iter()
        .map(|t| json!({"route": "bars", "request": {"symbol": "AAPL", "resolution": "1"}, "data": bar(t)}))
        .collect();
    let reply = host.publish(&Value::Array(body)).await;
    assert_eq!(reply["failed"], 0, "{reply}");
    reply["results"].as_array().cloned().unwrap_or_default()
}

pub fn subscribe_frame(route: &str, request: Value, recover: Option<Value>) -> Value {
    let mut frame = json!({"type": format!("{route}.subscribe"), "payload": request});
    if let Some(recover) = recover {
        frame["recover"] = recover;
    }
    frame
}

/// Send a subscribe and return its reply's payload (status ok).
pub async fn subscribe(
    c: &mut Client,
    route: &str,
    request: Value,
    recover: Option<Value>,
) -> Value {
    c.send(&subscribe_frame(route, request, recover)).await;
    c.subscribed(route).await
}

pub async fn subscribe_bars(c: &mut Client, recover: Option<Value>) -> Value {
    subscribe(
        c,
        "bars",
        json!({"symbol": "AAPL", "resolution": "1"}),
        recover,
    )
    .await
}

/// The next frame, which must be an update of `route`; its payload.
pub async fn update(c: &mut Client, route: &str) -> Value {
    let frame = c.recv().await;
    assert_eq!(frame["type"], format!("{route}.update"), "{frame}");
    frame["payload"].clone()
}

pub fn position(reply: &Value, key: &str) -> (u64, String) {
    let p = &reply["positions"][key];
    let offset = p["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offset for {key}: {reply}"));
    let epoch = p["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch for {key}: {reply}"));
    (offset, epoch.to_owned())
}

pub fn recover_from(key: &str, offset: u64, epoch: &str) -> Value {
    json!({ key: {"offset": offset, "epoch": epoch} })
}
