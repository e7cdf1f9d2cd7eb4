//! Hot reload against the real host: plugins added, upgraded, removed and
//! rejected while clients stay connected, and the compiled-artifact cache.

mod support;

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use support::{Client, Event, Host, plugin};

const BARS_AAPL: &str = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;
const WAIT: Duration = Duration::from_secs(30);

fn bar(seq: u64) -> Value {
    json!({"time": seq, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1})
}

/// Publishes bars for AAPL by request, one at a time, numbering them from
/// 0 in `time`, until told to stop; returns how many it published. Every
/// publication must be accepted.
struct Publisher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Publisher {
    fn start(host: &Host) -> Publisher {
        let url = host.http("/api/v1/publish");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seq = 0;
            while !flag.load(Ordering::Relaxed) {
                let body =
                    json!({"route": "bars", "request": {"symbol": "AAPL"}, "data": bar(seq)});
                let reply: Value = client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("publish")
                    .json()
                    .await
                    .expect("publish reply");
                assert_eq!(reply["failed"], 0, "publish {seq} failed: {reply}");
                seq += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            seq
        });
        Publisher { stop, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("publisher")
    }
}

/// Frames a client received, sorted by kind.
#[derive(Default)]
struct Seen {
    /// `time` of each bars update, in arrival order, with its topic.
    bars: Vec<(u64, String)>,
    other: Vec<Value>,
}

impl Seen {
    /// Read until `count` bars updates have arrived.
    async fn read_bars(&mut self, c: &mut Client, count: u64) {
        while (self.bars.len() as u64) < count {
            match c.next_event(Duration::from_secs(10)).await {
                Some(Event::Text(text)) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    if frame["type"] == "bars.update" {
                        let seq = frame["payload"]["payload"]["time"].as_u64().expect("time");
                        let topic = frame["payload"]["topic"].as_str().unwrap_or_default();
                        self.bars.push((seq, topic.to_owned()));
                    } else {
                        self.other.push(frame);
                    }
                }
                other => panic!(
                    "after {} updates, expected more, got {other:?}",
                    self.bars.len()
                ),
            }
        }
    }

    /// Exactly 0..count, in order, each once, all under `topic`.
    fn assert_exact_sequence(&self, count: u64, topic: &str) {
        let seqs: Vec<u64> = self.bars.iter().map(|(s, _)| *s).collect();
        let expected: Vec<u64> = (0..count).collect();
        assert_eq!(seqs, expected, "updates lost, duplicated or reordered");
        assert!(
            self.bars.iter().all(|(_, t)| t == topic),
            "an update arrived under another topic than {topic}"
        );
    }

    fn of_type(&self, ty: &str) -> Vec<&Value> {
        self.other.iter().filter(|f| f["type"] == ty).collect()
    }
}

/// Copy `from` into `dir/name` the way deploy tools do: write a temporary
/// file next to it, then rename it over the target.
fn install_atomically(from: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(from, &tmp).expect("copy plugin");
    std::fs::rename(&tmp, dir.join(name)).expect("rename plugin");
}

async fn route_versions(host: &Host) -> Vec<(String, String)> {
    let routes = host.get_json("/api/v1/routes").await;
    routes
        .as_array()
        .expect("routes array")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Wait until `/api/v1/routes` satisfies `ok`.
async fn wait_routes(host: &Host, what: &str, ok: impl Fn(&[(String, String)]) -> bool) {
    let start = std::time::Instant::now();
    loop {
        let routes = route_versions(host).await;
        if ok(&routes) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "routes never became {what}: {routes:?}; log:\n{}",
            host.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn plugin_files(host: &Host) -> Vec<Value> {
    host.get_json("/api/v1/plugins")
        .await
        .as_array()
        .expect("plugins array")
        .clone()
}

async fn plugin_file(host: &Host, file: &str) -> Option<Value> {
    plugin_files(host)
        .await
        .into_iter()
        .find(|p| p["file"] == file)
}

fn rejections(host: &Host) -> Vec<String> {
    host.logs()
        .into_iter()
        .filter(|l| l.contains("plugin rejected"))
        .collect()
}

fn dir(host: &Host) -> PathBuf {
    host.plugins_dir.path().to_path_buf()
}

#[tokio::test]
async fn adding_a_plugin_does_not_interrupt_other_subscribers() {
    let host = Host::builder().plugins(&["bars"]).start();
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let publisher = Publisher::start(&host);
    let mut seen = Seen::default();
    seen.read_bars(&mut c, 20).await;

    install_atomically(&plugin("quotes"), &dir(&host), "quotes.wasm");
    wait_routes(&host, "bars and quotes", |r| {
        r.iter().any(|(n, _)| n == "quotes")
    })
    .await;
    seen.read_bars(&mut c, seen.bars.len() as u64 + 20).await;
    let published = publisher.stop().await;
    seen.read_bars(&mut c, published).await;
    seen.assert_exact_sequence(published, BARS_AAPL);

    // The client was told, and can use the new route on the same connection.
    let changed = seen.of_type("routes.changed");
    let last = changed.last().expect("a routes.changed frame");
    let names: Vec<&str> = last["payload"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["bars", "quotes"]);
    c.subscribe("quotes", json!({"symbols": ["AAPL"]})).await;
    let line = host.wait_for_log("route loaded", WAIT).await;
    assert!(line.contains("since_last_write_ms"), "{line}");
}

#[tokio::test]
async fn upgrading_a_plugin_loses_and_duplicates_no_update() {
    let host = Host::builder().plugins(&["bars"]).start();
    let mut old = host.client().await;
    assert_eq!(
        old.subscribe("bars", json!({"symbol": "AAPL"})).await["topic"],
        BARS_AAPL
    );
    let publisher = Publisher::start(&host);
    let mut seen = Seen::default();
    seen.read_bars(&mut old, 30).await;

    install_atomically(&plugin("bars-v2"), &dir(&host), "bars.wasm");
    wait_routes(&host, "bars 0.2.0", |r| {
        r.iter().any(|(n, v)| n == "bars" && v == "0.2.0")
    })
    .await;
    seen.read_bars(&mut old, seen.bars.len() as u64 + 30).await;
    let published = publisher.stop().await;
    seen.read_bars(&mut old, published).await;
    // Every update, once, in order, under the topic the client subscribed to.
    seen.assert_exact_sequence(published, BARS_AAPL);
    old.expect_silence(Duration::from_millis(200)).await;
    let changed = seen.of_type("routes.changed");
    assert_eq!(
        changed.last().expect("routes.changed")["payload"]["routes"],
        json!([{"name": "bars", "version": "0.2.0"}])
    );

    // New subscriptions use the new version's topic builder; both receive.
    let mut new = host.client().await;
    assert_eq!(
        new.subscribe("bars", json!({"symbol": "AAPL"})).await["topic"],
        "bars:v2:AAPL:1"
    );
    host.publish(&json!({"route": "bars", "request": {"symbol": "AAPL"}, "data": bar(7)}))
        .await;
    assert_eq!(new.recv().await["payload"]["topic"], "bars:v2:AAPL:1");
    assert_eq!(old.recv().await["payload"]["topic"], BARS_AAPL);

    // The old subscription can still be ended with the request it was made with.
    old.send(&json!({"type": "bars.unsubscribe", "payload": {"symbol": "AAPL"}}))
        .await;
    let reply = old.recv().await;
    assert_eq!(reply["payload"]["status"], "ok");
    assert_eq!(reply["payload"]["topic"], BARS_AAPL);
    assert_eq!(host.subscribers("bars:v2:AAPL:1").await, 1);

    let file = plugin_file(&host, "bars.wasm")
        .await
        .expect("bars.wasm listed");
    assert_eq!(file["version"], "0.2.0");
    assert_eq!(file["status"], "serving");
}

#[tokio::test]
async fn removing_a_plugin_tells_its_subscribers_and_drops_the_route() {
    let host = Host::builder().plugins(&["bars", "trades"]).start();
    let mut c = host.client().await;
    let topic = c.subscribe("trades", json!({"symbols": ["AAPL"]})).await["topic"].clone();
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let mut bystander = host.client().await;

    std::fs::remove_file(dir(&host).join("trades.wasm")).expect("remove plugin");
    let mut removed = None;
    let mut changed = None;
    while removed.is_none() || changed.is_none() {
        let frame = c.recv().await;
        match frame["type"].as_str() {
            Some("route.removed") => removed = Some(frame),
            Some("routes.changed") => changed = Some(frame),
            _ => panic!("unexpected frame {frame}"),
        }
    }
    let removed = removed.unwrap();
    assert_eq!(removed["payload"]["route"], "trades");
    assert_eq!(removed["payload"]["topics"], json!([topic]));
    assert_eq!(
        changed.unwrap()["payload"]["routes"],
        json!([{"name": "bars", "version": "0.1.0"}])
    );
    // Clients without subscriptions to it are told the routes changed, only.
    assert_eq!(bystander.recv().await["type"], "routes.changed");
    bystander.expect_silence(Duration::from_millis(200)).await;

    assert!(
        route_versions(&host)
            .await
            .iter()
            .all(|(n, _)| n != "trades")
    );
    assert!(plugin_file(&host, "trades.wasm").await.is_none());
    assert_eq!(host.subscribers(topic.as_str().unwrap()).await, 0);

    c.send(&json!({"type": "trades.subscribe", "payload": {"symbols": ["AAPL"]}}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "trades.subscribe.response");
    assert_eq!(reply["payload"]["status"], "error");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown route \"trades\""),
        "{reply}"
    );
    // The connection and its other subscription are untouched.
    host.publish(&json!({"route": "bars", "request": {"symbol": "AAPL"}, "data": bar(1)}))
        .await;
    assert_eq!(c.recv().await["type"], "bars.update");
}

#[tokio::test]
async fn a_plugin_written_in_chunks_is_loaded_only_once_complete() {
    let host = Host::builder().plugins(&["bars"]).start();
    let bytes = std::fs::read(plugin("quotes")).expect("quotes.wasm");
    let target = dir(&host).join("quotes.wasm");
    let mut file = std::fs::File::create(&target).expect("create");
    for chunk in bytes.chunks(bytes.len() / 4 + 1) {
        file.write_all(chunk).expect("write");
        file.sync_data().expect("sync");
        // Longer than the watcher's quiet period.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            route_versions(&host)
                .await
                .iter()
                .all(|(n, _)| n != "quotes")
        );
    }
    drop(file);
    wait_routes(&host, "with quotes", |r| {
        r.iter().any(|(n, _)| n == "quotes")
    })
    .await;
    assert_eq!(rejections(&host), Vec::<String>::new());
    let mut c = host.client().await;
    c.subscribe("quotes", json!({"symbols": ["AAPL"]})).await;
}

#[tokio::test]
async fn garbage_and_wrong_world_are_rejected_and_the_rest_keeps_serving() {
    let host = Host::builder().plugins(&["bars"]).start();
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let publisher = Publisher::start(&host);
    let mut seen = Seen::default();

    std::fs::write(dir(&host).join("garbage.wasm"), b"this is not WebAssembly").unwrap();
    install_atomically(&plugin("other-world"), &dir(&host), "other-world.wasm");
    let garbage = host
        .wait_for_log("garbage.wasm: not a WebAssembly component", WAIT)
        .await;
    assert!(garbage.contains("plugin rejected"), "{garbage}");
    let world = host
        .wait_for_log("other-world.wasm: not a route plugin", WAIT)
        .await;
    assert!(world.contains("ws-router:plugin/route"), "{world}");
    assert_eq!(rejections(&host).len(), 2, "one line per file");

    // A broken upgrade of a serving route: the old version keeps serving.
    std::fs::write(dir(&host).join("bars.wasm"), b"\0asm truncated").unwrap();
    host.wait_for_log("bars.wasm: not a WebAssembly component", WAIT)
        .await;
    let bars = plugin_file(&host, "bars.wasm").await.unwrap();
    assert_eq!(bars["status"], "serving");
    assert_eq!(bars["version"], "0.1.0");
    assert!(
        bars["last_error"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly component")
    );

    let published = publisher.stop().await;
    seen.read_bars(&mut c, published).await;
    seen.assert_exact_sequence(published, BARS_AAPL);
    assert!(seen.of_type("routes.changed").is_empty(), "nothing changed");

    for file in ["garbage.wasm", "other-world.wasm"] {
        let view = plugin_file(&host, file).await.expect("listed");
        assert_eq!(view["status"], "rejected", "{view}");
        assert!(view["route"].is_null());
        assert!(view["last_error"].is_string());
    }
    assert_eq!(
        route_versions(&host).await,
        [("bars".into(), "0.1.0".into())]
    );
}

#[tokio::test]
async fn two_files_for_one_route_the_serving_file_keeps_it() {
    // At startup, file-name order decides: bars.wasm before zz-bars.wasm.
    let host = Host::builder().plugins(&["bars"]).start_with(|dir| {
        std::fs::copy(plugin("bars-v2"), dir.join("zz-bars.wasm")).unwrap();
    });
    let line = host
        .wait_for_log("zz-bars.wasm: route \"bars\" is already served by", WAIT)
        .await;
    assert!(line.contains("bars.wasm"), "{line}");
    assert_eq!(
        route_versions(&host).await,
        [("bars".into(), "0.1.0".into())]
    );

    // At runtime, the file serving the route keeps it, whatever the names.
    install_atomically(&plugin("bars-v2"), &dir(&host), "aa-bars.wasm");
    host.wait_for_log("aa-bars.wasm: route \"bars\" is already served by", WAIT)
        .await;
    assert_eq!(
        route_versions(&host).await,
        [("bars".into(), "0.1.0".into())]
    );
    let aa = plugin_file(&host, "aa-bars.wasm").await.unwrap();
    assert_eq!(aa["status"], "rejected");

    // When the serving file goes, the first claimant in name order takes over.
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    std::fs::remove_file(dir(&host).join("bars.wasm")).unwrap();
    wait_routes(&host, "bars 0.2.0", |r| {
        r == [("bars".to_owned(), "0.2.0".to_owned())]
    })
    .await;
    assert_eq!(
        plugin_file(&host, "aa-bars.wasm").await.unwrap()["status"],
        "serving"
    );
    assert_eq!(
        plugin_file(&host, "zz-bars.wasm").await.unwrap()["status"],
        "rejected"
    );
    let removed = loop {
        let frame = c.recv().await;
        if frame["type"] == "route.removed" {
            break frame;
        }
    };
    assert_eq!(removed["payload"]["topics"], json!([BARS_AAPL]));
}

#[tokio::test]
async fn warm_restart_loads_from_the_cache_and_a_corrupt_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap().to_owned();
    let start = || {
        Host::builder()
            .plugins(&["bars"])
            .arg("--cache-dir")
            .arg(&cache_arg)
            .start()
    };
    let cold = start();
    cold.wait_for_log("compiled plugin", WAIT).await;
    assert_eq!(
        plugin_file(&cold, "bars.wasm").await.unwrap()["compile"]["cached"],
        false
    );
    drop(cold);

    let warm = start();
    warm.wait_for_log("compiled plugin loaded from cache", WAIT)
        .await;
    assert_eq!(
        plugin_file(&warm, "bars.wasm").await.unwrap()["compile"]["cached"],
        true
    );
    let mut c = warm.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    drop(c);
    drop(warm);

    // Flip one byte of the compiled code: detected, discarded, recompiled.
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();

    let repaired = start();
    let line = repaired
        .wait_for_log("discarded compiled-plugin cache entry", WAIT)
        .await;
    assert!(line.contains("corrupt"), "{line}");
    repaired.wait_for_log("route loaded", WAIT).await;
    assert_eq!(
        plugin_file(&repaired, "bars.wasm").await.unwrap()["compile"]["cached"],
        false
    );
    let mut c = repaired.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    drop(repaired);

    // Truncated: also detected.
    let bytes = std::fs::read(&entries[0]).unwrap();
    std::fs::write(&entries[0], &bytes[..bytes.len() / 2]).unwrap();
    let again = start();
    again
        .wait_for_log("discarded compiled-plugin cache entry", WAIT)
        .await;
    again.wait_for_log("route loaded", WAIT).await;
}

#[tokio::test]
async fn a_briefly_missing_directory_changes_nothing_and_watching_resumes() {
    let host = Host::builder().plugins(&["bars"]).start();
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let plugins = dir(&host);
    let aside = plugins.with_extension("aside");
    std::fs::rename(&plugins, &aside).unwrap();
    host.wait_for_log("plugins directory is missing", WAIT)
        .await;
    assert_eq!(
        route_versions(&host).await,
        [("bars".into(), "0.1.0".into())]
    );
    std::fs::rename(&aside, &plugins).unwrap();
    // Watching again: a new file is picked up.
    let resumed = || {
        host.logs()
            .iter()
            .filter(|l| l.contains("watching plugins directory"))
            .count()
    };
    let start = std::time::Instant::now();
    while resumed() < 2 {
        assert!(start.elapsed() < WAIT, "watching never resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    install_atomically(&plugin("quotes"), &plugins, "quotes.wasm");
    wait_routes(&host, "bars and quotes", |r| r.len() == 2).await;
    host.publish(&json!({"route": "bars", "request": {"symbol": "AAPL"}, "data": bar(1)}))
        .await;
    loop {
        let frame = c.recv().await;
        if frame["type"] == "bars.update" {
            break;
        }
    }
    assert!(rejections(&host).is_empty());
}

#[tokio::test]
async fn plugins_that_fail_while_loading_are_rejected_with_one_line_each() {
    let host = Host::builder().plugins(&["bars"]).start();
    install_atomically(&plugin("bad-schema"), &dir(&host), "bad-schema.wasm");
    install_atomically(
        &plugin("future-contract"),
        &dir(&host),
        "future-contract.wasm",
    );
    let schema = host
        .wait_for_log("bad-schema.wasm: invalid request schema", WAIT)
        .await;
    assert!(schema.contains("plugin rejected"), "{schema}");
    let contract = host
        .wait_for_log("future-contract.wasm: incompatible contract", WAIT)
        .await;
    assert!(
        contract.contains("ws-router:plugin/route@1.0.0"),
        "{contract}"
    );
    assert_eq!(rejections(&host).len(), 2, "one line per file");
    assert_eq!(
        route_versions(&host).await,
        [("bars".into(), "0.1.0".into())]
    );
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
}
