//! Issue 17: a client frame may carry an `"id"` that the host echoes at the
//! top level of its reply, so a client matches replies to commands instead
//! of guessing. Frames without one get exactly the replies they always did.

mod support;

use serde_json::{Value, json};
use support::Host;

fn host() -> Host {
    Host::builder().plugins(&["bars", "quotes"]).start()
}

#[tokio::test]
async fn replies_carry_the_id_of_their_command_unchanged() {
    let host = host();
    let mut c = host.client().await;
    c.send_text(r#"{"type":"bars.subscribe","id":"c7","payload":{"symbol":"AAPL"}}"#)
        .await;
    let reply = c.recv_text().await;
    // At the top level, between type and payload, byte for byte.
    assert!(
        reply
            .starts_with(r#"{"type":"bars.subscribe.response","id":"c7","payload":{"status":"ok""#),
        "{reply}"
    );
    // Integers too, up to 2^53-1, and on unsubscribe.
    c.send_text(r#"{"id":9007199254740991,"type":"bars.unsubscribe","payload":{"symbol":"AAPL"}}"#)
        .await;
    let reply: Value = c.recv().await;
    assert_eq!(reply["type"], "bars.unsubscribe.response");
    assert_eq!(reply["id"], json!(9007199254740991_u64));
    assert_eq!(reply["payload"]["status"], "ok");
    // A string with escapes comes back as it was written.
    c.send_text(r#"{"type":"bars.subscribe","id":"\u00e9\"x","payload":{"symbol":"MSFT"}}"#)
        .await;
    let reply = c.recv_text().await;
    assert!(reply.contains(r#""id":"\u00e9\"x""#), "{reply}");
}

#[tokio::test]
async fn replies_to_frames_without_an_id_are_unchanged() {
    let host = host();
    let mut c = host.client().await;
    // The captured frames of shared/reference/wire-format.md.
    c.send_text(r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","resolution":"1"}}"#)
        .await;
    // bars keeps a history: the captured reply with `positions` appended
    // (docs/recovery.md).
    let reply = c.recv_text().await;
    assert!(
        reply.starts_with(
            r#"{"type":"bars.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}","positions":{"#
        ),
        "{reply}"
    );
    c.send_text(r#"{"type":"quotes.subscribe","payload":{},"id":null}"#)
        .await;
    assert_eq!(
        c.recv_text().await,
        r#"{"type":"quotes.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"quotes:{\"fast_symbols\":[],\"symbols\":[]}"}}"#
    );
}

#[tokio::test]
async fn error_replies_carry_the_id_when_it_could_be_read() {
    let host = host();
    let mut c = host.client().await;
    // A command that fails: its own reply type, with the id.
    c.send(&json!({"type": "nope.subscribe", "id": "a1", "payload": {}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "nope.subscribe.response", "{reply}");
    assert_eq!(reply["id"], "a1");
    assert_eq!(reply["payload"]["status"], "error");
    c.send(&json!({"type": "bars.subscribe", "id": 2, "payload": {"resolution": 5}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["id"], 2, "{reply}");
    assert!(!reply["payload"]["errors"].as_array().unwrap().is_empty());
    // A frame naming no valid operation: an `error` frame, with the id.
    for frame in [
        json!({"type": "bars.publish", "id": "a3", "payload": {}}),
        json!({"type": 7, "id": "a3", "payload": {}}),
        json!({"id": "a3", "payload": {}}),
        json!({"type": "bars.update", "id": "a3", "payload": {}}),
    ] {
        c.send(&frame).await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "error", "{frame} -> {reply}");
        assert_eq!(reply["id"], "a3", "{frame} -> {reply}");
    }
    // A missing payload: the command's reply type, with the id.
    c.send(&json!({"type": "bars.subscribe", "id": "a4"})).await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "bars.subscribe.response", "{reply}");
    assert_eq!(reply["id"], "a4");
    assert_eq!(reply["payload"]["status"], "error");
}

#[tokio::test]
async fn an_invalid_id_gets_an_error_reply_naming_it_and_the_connection_stays() {
    let host = host();
    let mut c = host.client().await;
    let too_long = "x".repeat(65);
    for id in [
        json!(too_long),
        json!(-1),
        json!(1.5),
        json!(9007199254740992_u64),
        json!(true),
        json!({"n": 1}),
        json!(["a"]),
    ] {
        c.send(&json!({"type": "bars.subscribe", "id": id, "payload": {"symbol": "AAPL"}}))
            .await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "bars.subscribe.response", "{id}: {reply}");
        assert_eq!(reply["payload"]["status"], "error", "{id}: {reply}");
        assert!(
            reply.get("id").is_none(),
            "an invalid id is not echoed: {reply}"
        );
        let message = reply["payload"]["message"].as_str().unwrap();
        assert!(message.contains("\"id\" must be"), "{message}");
    }
    // Nothing was subscribed, and the connection still serves.
    assert_eq!(
        host.subscribers(r#"bars:{"resolution":"1","symbol":"AAPL"}"#)
            .await,
        0
    );
    c.send(&json!({"type": "bars.subscribe", "id": "x".repeat(64), "payload": {"symbol": "AAPL"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    assert_eq!(reply["id"], "x".repeat(64));
}

#[tokio::test]
async fn the_asyncapi_document_declares_the_optional_id() {
    let host = host();
    let doc = host.get_json("/api/v1/ws/asyncapi.json").await;
    let messages = &doc["components"]["messages"];
    for message in [
        "bars.subscribe",
        "bars.unsubscribe",
        "bars.subscribe.response",
        "quotes.unsubscribe.response",
        "error",
    ] {
        let envelope = &messages[message]["payload"];
        assert_eq!(
            envelope["properties"]["id"]["allOf"][0]["$ref"], "#/components/schemas/MessageId",
            "{message}"
        );
        let required = envelope["required"].as_array().unwrap();
        assert!(
            !required.contains(&json!("id")),
            "{message}: id is optional"
        );
    }
    // Updates and announcements answer no frame.
    for message in ["bars.update", "routes.changed", "route.removed"] {
        assert!(
            messages[message]["payload"]["properties"]
                .get("id")
                .is_none(),
            "{message}"
        );
    }
    let id = &doc["components"]["schemas"]["MessageId"];
    assert_eq!(id["oneOf"][0], json!({"type": "string", "maxLength": 64}));
    assert_eq!(
        id["oneOf"][1],
        json!({"type": "integer", "minimum": 0, "maximum": 9007199254740991_u64})
    );
}
