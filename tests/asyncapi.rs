//! The AsyncAPI document and the docs page, against the real host binary.
//! (`just test-browser` runs the official AsyncAPI parser on the same
//! document and drives the page in headless Chromium.)

mod support;

use std::process::Command;

use serde_json::Value;
use support::{HOST_BIN, Host};

#[tokio::test]
async fn document_describes_every_route_with_its_version_and_schemas() {
    let host = Host::builder()
        .plugins(&["bars", "quotes", "trades", "ticker"])
        .start();
    let doc = host.get_json("/api/v1/ws/asyncapi.json").await;

    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["servers"]["ws-router"]["host"], host.addr.as_str());
    assert_eq!(doc["channels"]["ws"]["address"], "/api/v1/ws");
    let routes: Vec<(&str, &str)> = doc["info"]["x-routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        routes,
        [
            ("bars", "0.1.0"),
            ("quotes", "0.1.0"),
            ("ticker", "0.3.1"),
            ("trades", "0.1.0")
        ]
    );
    assert_eq!(
        doc["operations"]["ticker.update"]["x-route"]["version"],
        "0.3.1"
    );

    // The example frames are what the host really answers.
    let messages = &doc["components"]["messages"];
    let subscribe = &messages["quotes.subscribe"]["examples"][0]["payload"];
    let expected_reply = &messages["quotes.subscribe.response"]["examples"][0]["payload"];
    let mut client = host.client().await;
    client.send(subscribe).await;
    assert_eq!(&client.recv().await, expected_reply);
    let bad = &messages["bars.subscribe.response"]["examples"][1]["payload"];
    client
        .send(&serde_json::json!({"type": "bars.subscribe", "payload": []}))
        .await;
    assert_eq!(&client.recv().await, bad);

    // quotes and ticker both define $defs QuoteStatus and QuoteValues.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["quotes.QuoteStatus"]["enum"],
        serde_json::json!(["ok", "error"])
    );
    assert_eq!(
        schemas["ticker.QuoteStatus"]["enum"],
        serde_json::json!(["open", "halted"])
    );
    assert!(
        schemas["quotes.QuoteValues"]["properties"]
            .get("lp")
            .is_some()
    );
    assert!(
        schemas["ticker.QuoteValues"]["properties"]
            .get("last")
            .is_some()
    );
    assert_eq!(
        schemas["ticker.data"]["properties"]["values"]["$ref"],
        "#/components/schemas/ticker.QuoteValues"
    );
    // `v` is `QuoteValues | object` (the earlier design's model).
    assert_eq!(
        schemas["quotes.data"]["properties"]["v"]["allOf"][0]["$ref"],
        "#/components/schemas/quotes.QuoteValue"
    );
    assert_eq!(
        schemas["quotes.QuoteValue"]["anyOf"][0]["$ref"],
        "#/components/schemas/quotes.QuoteValues"
    );
    // No plugin-relative reference is left.
    let text = doc.to_string();
    assert!(!text.contains("#/$defs/"), "unrewritten $ref in {text}");
}

#[tokio::test]
async fn cli_prints_the_served_document() {
    let host = Host::builder().start();
    let served = host.get_json("/api/v1/ws/asyncapi.json").await;

    let out = Command::new(HOST_BIN)
        .arg("asyncapi")
        .arg("--plugins")
        .arg(host.plugins_dir.path())
        .arg("--listen")
        .arg(&host.addr)
        .env("RUST_LOG", "info")
        .output()
        .expect("run ws-router-host asyncapi");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout is the document alone; the log went to stderr.
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed, served);
    assert!(String::from_utf8_lossy(&out.stderr).contains("route loaded"));
}

#[tokio::test]
async fn docs_page_and_assets_are_served_from_the_binary() {
    let host = Host::start();
    let page = reqwest::get(host.http("/api/v1/ws/asyncapi"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    for asset in ["asyncapi/page.js", "asyncapi/page.css"] {
        assert!(html.contains(asset), "page links {asset}");
        let reply = reqwest::get(host.http(&format!("/api/v1/ws/{asset}")))
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{asset}");
        let body = reply.text().await.unwrap();
        // Works offline: nothing is loaded from another host.
        assert!(
            !body.contains("https://") && !body.contains("http://"),
            "{asset} refers to another host"
        );
    }
    assert!(!html.contains("https://") && !html.contains("http://"));
}
