//! Versioning of the WIT package: plugins built against copies of
//! `wit/ws-router.wit` that differ only in the package version
//! (tests/plugins/contract-v*), loaded by the real host, which offers the
//! version in `wit/ws-router.wit` (0.1.1 since the optional `delivery`
//! interface).
//!
//! * 0.1.0 (a frozen copy of the first release: built against an older
//!   compatible version) and 0.1.9 (a later patch release) are compatible in
//!   the component model's semver sense: they load and serve.
//! * 0.2.0 and 1.0.0 are not: the host rejects them with a line naming the
//!   version the plugin needs and the one the host offers, and they are not
//!   routes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::Host;

const COMPATIBLE: [&str; 2] = ["contract-v0-1-0", "contract-v0-1-9"];
const INCOMPATIBLE: [(&str, &str); 2] =
    [("contract-v0-2-0", "0.2.0"), ("contract-v1-0-0", "1.0.0")];

/// The version the host offers: the one `wit/ws-router.wit` declares.
fn offered() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/ws-router.wit");
    let wit = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    wit.lines()
        .find_map(|l| l.strip_prefix("package ws-router:plugin@"))
        .map(|v| v.trim_end_matches(';').trim().to_owned())
        .unwrap_or_else(|| panic!("no package line in {path}"))
}

#[tokio::test]
async fn compatible_versions_load_and_incompatible_ones_are_rejected_by_name() {
    let mut plugins = vec!["bars"];
    plugins.extend(COMPATIBLE);
    plugins.extend(INCOMPATIBLE.iter().map(|(name, _)| *name));
    let host = Host::builder().plugins(&plugins).start();

    for (file, needs) in INCOMPATIBLE {
        let line = host
            .wait_for_log(
                &format!("the plugin needs ws-router:plugin/route@{needs},"),
                Duration::from_secs(30),
            )
            .await;
        assert!(line.contains("plugin rejected"), "{line}");
        assert!(
            line.contains(&format!("{file}.wasm")),
            "names the file: {line}"
        );
        assert!(
            line.contains(&format!(
                "the plugin needs ws-router:plugin/route@{needs}, this host offers ws-router:plugin/route@{}",
                offered()
            )),
            "names both versions: {line}"
        );
    }

    assert_eq!(
        host.route_names().await,
        ["bars", "contract-v0-1-0", "contract-v0-1-9"]
    );

    // The compatible ones serve; the rejected ones are unknown routes.
    let mut c = host.client().await;
    for route in COMPATIBLE {
        let reply = c.subscribe(route, json!({"symbol": "AAPL"})).await;
        let topic = reply["topic"].as_str().unwrap_or_default().to_owned();
        host.publish(&json!({"route": route, "topic": topic, "data": {"n": 1}}))
            .await;
        let update = c.recv().await;
        assert_eq!(update["type"], format!("{route}.update"), "{update}");
    }
    c.send(&json!({"type": "contract-v0-2-0.subscribe", "payload": {"symbol": "AAPL"}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown route"),
        "{reply}"
    );
}
