//! Versioning of the WIT package: plugins built against copies of
//! `wit/ws-router.wit` that differ only in the package version
//! (tests/plugins/contract-v*), loaded by the real host, which offers the
//! version in `wit/ws-router.wit` (0.1.3 since the optional `retention`
//! interface).
//!
//! * 0.1.0 (a frozen copy of the first release), 0.1.2 (a frozen copy of
//!   the release with `delivery` and `authorize`, from before `retention`),
//!   0.1.3 (with `retention`) and 0.1.9 (a later patch release) are
//!   compatible in the component model's semver sense: they load and serve.
//!   A plugin from before 0.1.3 gets no snapshot and no history.
//! * 0.2.0 and 1.0.0 are not: the host rejects them with a line naming the
//!   version the plugin needs and the one the host offers, and they are not
//!   routes.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Host;

const COMPATIBLE: [&str; 4] = [
    "contract-v0-1-0",
    "contract-v0-1-2",
    "contract-v0-1-3",
    "contract-v0-1-9",
];
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
        [
            "bars",
            "contract-v0-1-0",
            "contract-v0-1-2",
            "contract-v0-1-3",
            "contract-v0-1-9"
        ]
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

/// A route's entry in `/api/v1/routes`.
fn route_view(routes: &Value, name: &str) -> Value {
    routes
        .as_array()
        .and_then(|all| all.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("{name} not loaded: {routes}"))
        .clone()
}

#[tokio::test]
async fn retention_is_read_from_0_1_3_plugins_and_older_ones_keep_nothing() {
    let host = Host::builder()
        .plugins(&["contract-v0-1-0", "contract-v0-1-2", "contract-v0-1-3"])
        .start();
    let routes = host.get_json("/api/v1/routes").await;
    let none = json!({"snapshot": false, "history_size": 0, "history_ttl_ms": 0});
    let v0_1_0 = route_view(&routes, "contract-v0-1-0");
    assert_eq!(v0_1_0["retention"], none, "{v0_1_0}");
    assert_eq!(v0_1_0["delivery"], "queue-all", "{v0_1_0}");
    // A 0.1.2 plugin's own optional interfaces are still read.
    let v0_1_2 = route_view(&routes, "contract-v0-1-2");
    assert_eq!(v0_1_2["retention"], none, "{v0_1_2}");
    assert_eq!(v0_1_2["delivery"], "latest-value", "{v0_1_2}");
    let v0_1_3 = route_view(&routes, "contract-v0-1-3");
    assert_eq!(
        v0_1_3["retention"],
        json!({"snapshot": true, "history_size": 3, "history_ttl_ms": 60_000}),
        "{v0_1_3}"
    );

    // Without retention, a route behaves as before: nothing at subscribe
    // for what was published earlier, and updates without offsets.
    for route in ["contract-v0-1-0", "contract-v0-1-2"] {
        let request = json!({"symbol": "AAPL"});
        let topic = format!("{route}:{request}");
        host.publish(&json!({"route": route, "topic": topic, "data": {"n": 1}}))
            .await;
        let mut c = host.client().await;
        let reply = c.subscribe(route, request).await;
        assert_eq!(reply["topic"], topic.as_str(), "{reply}");
        for field in ["recovered", "offset", "epoch", "positions"] {
            assert!(reply.get(field).is_none(), "{route}: {field} in {reply}");
        }
        c.expect_silence(Duration::from_millis(300)).await;
        host.publish(&json!({"route": route, "topic": topic, "data": {"n": 2}}))
            .await;
        let update = c.recv().await;
        assert_eq!(update["type"], format!("{route}.update"), "{update}");
        assert_eq!(update["payload"]["payload"], json!({"n": 2}), "{update}");
        for field in ["offset", "epoch", "key"] {
            assert!(
                update.get(field).is_none() && update["payload"].get(field).is_none(),
                "{route}: {field} in {update}"
            );
        }
    }
}

/// The contract-v0-1-3 test plugin with its retention configuration
/// (`;snapshot=..;size=..;ttl=..`, see its lib.rs) replaced by `config`.
fn retention_plugin(config: &str) -> Vec<u8> {
    const MARKER: &[u8] = b"@@WSR-RETENTION@@";
    const CONFIG_LEN: usize = 64;
    let mut bytes =
        std::fs::read(support::plugin("contract-v0-1-3")).expect("read contract-v0-1-3.wasm");
    let found: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter_map(|(i, w)| (w == MARKER).then_some(i))
        .collect();
    let [at] = found[..] else {
        panic!("the marker must appear once in contract-v0-1-3.wasm: {found:?}");
    };
    let mut block = MARKER.to_vec();
    block.extend_from_slice(config.as_bytes());
    assert!(
        block.len() <= CONFIG_LEN,
        "configuration too long: {config}"
    );
    block.resize(CONFIG_LEN, b' ');
    bytes[at..at + CONFIG_LEN].copy_from_slice(&block);
    bytes
}

#[tokio::test]
async fn retention_out_of_bounds_is_rejected_at_load_with_the_reason() {
    let cases = [
        (
            "too-many",
            ";snapshot=1;size=100001;ttl=1000",
            "invalid retention settings: history-size 100001 is over the limit of 100000",
        ),
        (
            "too-long",
            ";size=10;ttl=86400001",
            "invalid retention settings: history-ttl-ms 86400001 is over the limit of 86400000",
        ),
        (
            "no-ttl",
            ";size=10;ttl=0",
            "invalid retention settings: history-size is 10 but history-ttl-ms is 0",
        ),
        (
            "ttl-alone",
            ";size=0;ttl=5000",
            "invalid retention settings: history-ttl-ms is 5000 but history-size is 0",
        ),
    ];
    let host = Host::builder().plugins(&["bars"]).start_with(|dir| {
        for (name, config, _) in cases {
            std::fs::write(dir.join(format!("{name}.wasm")), retention_plugin(config))
                .expect("write plugin");
        }
    });
    for (name, _, reason) in cases {
        let line = host.wait_for_log(reason, Duration::from_secs(30)).await;
        assert!(line.contains("plugin rejected"), "{line}");
        assert!(
            line.contains(&format!("{name}.wasm")),
            "names the file: {line}"
        );
    }
    assert_eq!(host.route_names().await, ["bars"]);
}
