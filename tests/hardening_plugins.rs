//! Hardening against hostile plugins (issue 12, `hardening-spec` items 1-4):
//! plugins that wait in WASI, hold many instances or memories, report
//! unbounded metadata or recursive schemas. Plugins come from
//! `tests/plugins/patchable` (configured by patching its `.wasm`) and the
//! committed fixture `tests/fixtures/many-memories.wasm`.

#[path = "support/attack.rs"]
mod attack;
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use attack::{install_bytes, install_plugin, patched_plugin, wait_plugin_file, wait_route};
use serde_json::{Value, json};
use support::{Client, Event, Host};

const WAIT: Duration = Duration::from_secs(10);

/// Subscribe to the patchable route `route` with `request`; the reply frame.
async fn ask(c: &mut Client, route: &str, request: Value) -> Value {
    c.send(&json!({"type": format!("{route}.subscribe"), "payload": request}))
        .await;
    let v = c.recv().await;
    assert_eq!(v["type"], format!("{route}.subscribe.response"), "{v}");
    v
}

/// A value's JSON text, cut to a readable length (some carry megabytes).
fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text,
    }
}

fn host_with_patchable(args: &[&str]) -> Host {
    attack::require_flags(args);
    let mut builder = Host::builder().plugins(&["bars"]);
    for a in args {
        builder = builder.arg(a);
    }
    builder.start_with(|dir| {
        std::fs::write(
            dir.join("patchable.wasm"),
            patched_plugin(";name=patchable"),
        )
        .unwrap();
    })
}

/// Spec item 1: a plugin whose `topics` sleeps in WASI (where the epoch
/// deadline never fires) costs its client one error reply within about the
/// deadline; the connection keeps serving and the failure is counted.
#[tokio::test]
async fn a_plugin_sleeping_in_topics_gets_an_error_reply_and_the_connection_keeps_serving() {
    let host = host_with_patchable(&[]);
    let mut c = host.client().await;
    let started = Instant::now();
    c.send(&json!({"type": "patchable.subscribe", "payload": {"mode": "sleep"}}))
        .await;
    let reply = match c.next_event(Duration::from_secs(3)).await {
        Some(Event::Text(t)) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!(
            "no reply within 3 s to a subscribe whose plugin sleeps (got {other:?}): \
             the call has no wall-clock bound"
        ),
    };
    assert_eq!(reply["type"], "patchable.subscribe.response", "{reply}");
    assert_eq!(reply["payload"]["status"], "error", "{reply}");
    let message = reply["payload"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not answer within 50 ms"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The same connection serves later commands, on this route and others.
    let ok = ask(&mut c, "patchable", json!({"mode": "ok"})).await;
    assert_eq!(ok["payload"]["status"], "ok", "{ok}");
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let file = attack::plugin_file(&host, "patchable.wasm").await.unwrap();
    assert!(file["failures"].as_u64().unwrap_or(0) >= 1, "{file}");
}

/// Spec item 1: a plugin whose `info`, `request-schema` or `data-schema`
/// sleeps is rejected ("did not answer within ..."), and hot reload keeps
/// working: a valid plugin dropped in afterwards loads.
#[tokio::test]
async fn a_plugin_sleeping_at_load_is_rejected_and_hot_reload_keeps_working() {
    let host = Host::builder().plugins(&["bars"]).start();
    let dir = host.plugins_dir.path().to_path_buf();
    for (file, call) in [
        ("sleep-info.wasm", "info"),
        ("sleep-request-schema.wasm", "request-schema"),
        ("sleep-data-schema.wasm", "data-schema"),
    ] {
        let name = file.trim_end_matches(".wasm");
        install_bytes(
            &dir,
            file,
            &patched_plugin(&format!(";name={name};sleep={call}")),
        );
        let entry = wait_plugin_file(&host, file, WAIT, |f| f["status"] == "rejected").await;
        let error = entry["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("did not answer within"), "{call}: {entry}");
    }
    // Loading never blocked the reload loop: the next file loads.
    install_plugin(&dir, "ticker", "ticker.wasm");
    wait_route(&host, "ticker", None, WAIT).await;
    let mut c = host.client().await;
    c.subscribe("ticker", json!({"symbol": "AAPL"})).await;
}

/// Drive `callers` connections, each subscribing in a loop to the
/// patchable route with a request that holds an instance for 25 ms, while
/// `GET /api/v1/plugins` is polled; returns the highest `instances` seen,
/// `max_instances`, and the replies by kind (ok, busy, deadline).
async fn storm(host: &Host, callers: usize, rounds: u32) -> (u64, Value, [u64; 3]) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let max_seen = Arc::new(std::sync::Mutex::new(Value::Null));
    let poller = {
        let (stop, peak, max_seen) = (stop.clone(), peak.clone(), max_seen.clone());
        let url = host.http("/api/v1/plugins");
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let files: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
                let entry = files
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["file"] == "patchable.wasm")
                    .cloned()
                    .unwrap_or(Value::Null);
                let live = entry["instances"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no `instances` in {entry}"));
                peak.fetch_max(live, Ordering::Relaxed);
                *max_seen.lock().unwrap() = entry["max_instances"].clone();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let url = host.ws_url();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            let mut kinds = [0u64; 3];
            for round in 0..rounds {
                let request = json!({"mode": "busy", "caller": caller, "round": round});
                c.send(&json!({"type": "patchable.subscribe", "payload": request}))
                    .await;
                let reply = match c.next_event(Duration::from_secs(3)).await {
                    Some(Event::Text(t)) => serde_json::from_str::<Value>(&t).unwrap(),
                    other => panic!("caller {caller} got no reply (a hang): {other:?}"),
                };
                let payload = &reply["payload"];
                let message = payload["message"].as_str().unwrap_or_default();
                if payload["status"] == "ok" {
                    kinds[0] += 1;
                } else if message.contains("busy") {
                    kinds[1] += 1;
                } else if message.contains("did not answer within") {
                    kinds[2] += 1;
                } else {
                    panic!("unexpected reply {reply}");
                }
            }
            kinds
        }));
    }
    let mut kinds = [0u64; 3];
    for t in tasks {
        let k = tokio::time::timeout(Duration::from_secs(12), t)
            .await
            .expect("callers finished")
            .expect("caller task");
        for i in 0..3 {
            kinds[i] += k[i];
        }
    }
    stop.store(true, Ordering::Relaxed);
    poller.await.expect("poller");
    let max = max_seen.lock().unwrap().clone();
    (peak.load(Ordering::Relaxed), max, kinds)
}

/// Spec item 2: with `--plugin-instances 4`, concurrent calls never hold
/// more than 4 live instances of a plugin, and callers beyond capacity get
/// a reply (ok or "the route is busy"), never a hang.
#[tokio::test]
async fn live_instances_never_exceed_plugin_instances_and_callers_beyond_get_a_reply() {
    let host = host_with_patchable(&["--plugin-instances", "4", "--plugin-deadline-ms", "200"]);
    let (peak, max, kinds) = storm(&host, 16, 6).await;
    assert_eq!(max, json!(4), "max_instances");
    assert!(peak <= 4, "{peak} live instances with --plugin-instances 4");
    assert!(kinds[0] > 0, "no call succeeded: {kinds:?}");
}

/// Spec item 2: the default bound (8 live instances per plugin) holds
/// under a burst of concurrent calls, and `GET /api/v1/plugins` shows
/// `instances` and `max_instances`.
#[tokio::test]
async fn live_instances_are_bounded_by_default_and_shown() {
    let host = host_with_patchable(&[]);
    let (peak, max, kinds) = storm(&host, 24, 4).await;
    assert_eq!(max, json!(8), "max_instances");
    assert!(peak <= 8, "{peak} live instances by default");
    assert!(kinds[0] > 0, "no call succeeded: {kinds:?}");
}

/// Spec item 2: memories are bounded per store: a component that defines
/// 64 linear memories (each under the per-memory cap) is rejected at load
/// with a reason about memories, and the host keeps serving.
#[tokio::test]
async fn a_component_with_many_memories_is_rejected_at_load() {
    let host = Host::builder().plugins(&["bars"]).start_with(|dir| {
        std::fs::copy(
            support::root().join("tests/fixtures/many-memories.wasm"),
            dir.join("many-memories.wasm"),
        )
        .unwrap();
    });
    let entry = wait_plugin_file(&host, "many-memories.wasm", WAIT, |_| true).await;
    assert_eq!(entry["status"], "rejected", "{entry}");
    let error = entry["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(error.contains("memor"), "{entry}");
    let mut c = host.client().await;
    c.subscribe("bars", json!({"symbol": "AAPL"})).await;
}

/// Spec item 3: out-of-bounds or invalid metadata rejects the plugin, with
/// the field named in `last_error`; metadata at the bounds is accepted; a
/// connected client is not disturbed by any of it.
#[tokio::test]
async fn out_of_bounds_metadata_rejects_the_plugin_naming_the_field() {
    let host = Host::builder().plugins(&["bars"]).start();
    let dir = host.plugins_dir.path().to_path_buf();
    let mut watcher = host.client().await;
    watcher.subscribe("bars", json!({"symbol": "AAPL"})).await;

    // At the bounds: loads.
    let long_tag = "a".repeat(32);
    install_bytes(
        &dir,
        "meta-ok.wasm",
        &patched_plugin(&format!(
            ";name=meta-ok;version=1.2.3-beta.1+build.5;description=d;description_repeat=4096;\
             tags=x_-9,{long_tag};tag_count=14"
        )),
    );
    let ok = wait_plugin_file(&host, "meta-ok.wasm", WAIT, |_| true).await;
    assert_eq!(ok["status"], "serving", "metadata at the bounds: {ok}");

    let cases = [
        // 8 MiB of version.
        (
            "version-huge",
            "version=1.2.3;version_repeat=1677722".to_owned(),
            "version",
        ),
        // 65 bytes, valid semver otherwise.
        (
            "version-65",
            format!("version=1.0.0-{}", "a".repeat(59)),
            "version",
        ),
        (
            "version-not-semver",
            "version=not a version".to_owned(),
            "version",
        ),
        ("version-two-parts", "version=1.2".to_owned(), "version"),
        (
            "description-long",
            "description=d;description_repeat=4097".to_owned(),
            "description",
        ),
        ("tags-17", "tag_count=17".to_owned(), "tag"),
        ("tag-upper", "tags=Datafeed".to_owned(), "tag"),
        ("tag-space", "tags=two words".to_owned(), "tag"),
        ("tag-long", format!("tags={}", "a".repeat(33)), "tag"),
        ("tag-empty", "tags=ok,".to_owned(), "tag"),
    ];
    for (name, config, field) in cases {
        let file = format!("{name}.wasm");
        install_bytes(
            &dir,
            &file,
            &patched_plugin(&format!(";name={name};{config}")),
        );
        let entry = wait_plugin_file(&host, &file, WAIT, |_| true).await;
        assert_eq!(entry["status"], "rejected", "{name}: {}", short(&entry));
        let error = entry["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(field),
            "{name}: the reason must name {field:?}: {}",
            short(&json!(error))
        );
        assert!(error.len() < 2048, "{name}: the reason is bounded too");
    }
    let names = host.route_names().await;
    assert_eq!(names, ["bars", "meta-ok"], "only valid metadata is served");

    // The watcher got at most the routes.changed for meta-ok, and is served.
    host.publish(&json!({"route": "bars", "request": {"symbol": "AAPL"},
        "data": {"time": 1, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}}))
        .await;
    loop {
        let frame = watcher.recv().await;
        if frame["type"] == "bars.update" {
            break;
        }
        assert_eq!(frame["type"], "routes.changed", "{}", short(&frame));
    }
}

/// Spec item 4: a recursive schema (a `$defs` node whose properties all
/// refer to itself) keeps `GET /api/v1/ws/asyncapi.json` quick (well under
/// 1 s) and small (under 1 MiB).
#[tokio::test]
async fn a_recursive_schema_keeps_the_asyncapi_document_small_and_quick() {
    let host = Host::builder().plugins(&["bars"]).start();
    install_bytes(
        host.plugins_dir.path(),
        "recursive.wasm",
        &patched_plugin(";name=recursive;schema=recursive;branch=8"),
    );
    wait_route(&host, "recursive", None, WAIT).await;
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        reqwest::get(host.http("/api/v1/ws/asyncapi.json")),
    )
    .await
    .expect("the AsyncAPI document did not answer within 3 s")
    .expect("GET asyncapi.json");
    assert!(reply.status().is_success(), "{}", reply.status());
    let body = tokio::time::timeout(Duration::from_secs(3), reply.bytes())
        .await
        .expect("body within 3 s")
        .expect("body");
    let elapsed = started.elapsed();
    assert!(
        body.len() < 1 << 20,
        "the document is {} bytes for one recursive schema",
        body.len()
    );
    assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
    let doc: Value = serde_json::from_slice(&body).expect("JSON document");
    assert!(doc.to_string().contains("recursive"));
}
