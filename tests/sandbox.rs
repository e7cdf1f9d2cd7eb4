//! Misbehaving plugins are contained: a plugin that loops forever, allocates
//! without bound, traps or returns invalid topics costs its client one error
//! reply, while a normal route on the same host keeps streaming to its
//! subscriber. Plugins see no environment, files or network; their output
//! goes to the log, rate-limited.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{Client, Event, Host};

const BARS_TOPIC: &str = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;

fn host() -> Host {
    Host::builder().plugins(&["bars", "misbehave"]).start()
}

/// Ask the misbehave route for `mode`; the reply frame.
async fn ask(c: &mut Client, mode: &str, id: u32) -> Value {
    c.send(&json!({"type": "misbehave.subscribe", "payload": {"mode": mode, "id": id}}))
        .await;
    let v = c.recv().await;
    assert_eq!(v["type"], "misbehave.subscribe.response", "{v}");
    v
}

fn bar(n: u64) -> Value {
    json!({"route": "bars", "request": {"symbol": "AAPL"},
           "data": {"time": n, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}})
}

/// Publishes a numbered bar every 10 ms until stopped.
fn start_feed(host: &Host) -> (Arc<AtomicBool>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let url = host.http("/api/v1/publish");
    let task = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let reply = http.post(&url).json(&bar(n)).send().await.expect("publish");
                assert!(reply.status().is_success());
                sent.store(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    (stop, sent, task)
}

#[tokio::test]
async fn misbehaving_plugin_is_contained_while_another_route_keeps_streaming() {
    let host = host();
    let mut watcher = host.client().await;
    watcher.subscribe("bars", json!({"symbol": "AAPL"})).await;
    let (stop, sent, feed) = start_feed(&host);

    // The stream is flowing before the bad calls start.
    let first = watcher.recv().await;
    assert_eq!(first["payload"]["topic"], BARS_TOPIC);
    let watch = tokio::spawn(async move {
        // Every bar, in order, with no long pause.
        let mut last = first["payload"]["payload"]["time"].as_u64().unwrap();
        let mut longest_gap = Duration::ZERO;
        let mut at = Instant::now();
        loop {
            match watcher.next_event(Duration::from_secs(3)).await {
                Some(Event::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    let n = v["payload"]["payload"]["time"].as_u64().unwrap();
                    assert_eq!(n, last + 1, "bars lost or reordered");
                    last = n;
                    longest_gap = longest_gap.max(at.elapsed());
                    at = Instant::now();
                }
                None => return (last, longest_gap),
                Some(other) => panic!("the bars subscriber was disturbed: {other:?}"),
            }
        }
    });

    let mut c = host.client().await;
    let error = |v: &Value| {
        assert_eq!(v["payload"]["status"], "error", "{v}");
        v["payload"]["message"].as_str().unwrap().to_owned()
    };
    // Loops forever: one error reply after the deadline (50 ms by default).
    let started = Instant::now();
    let m = error(&ask(&mut c, "loop", 1).await);
    assert!(m.contains("did not answer within 50 ms"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The poisoned instance was replaced: the route answers again.
    assert_eq!(ask(&mut c, "ok", 1).await["payload"]["status"], "ok");
    // Allocates without bound: trapped at the memory cap, not grown.
    let m = error(&ask(&mut c, "alloc", 1).await);
    assert!(m.contains("the route's plugin failed"), "{m}");
    assert_eq!(ask(&mut c, "ok", 2).await["payload"]["status"], "ok");
    // Traps (a Rust panic in the plugin).
    let m = error(&ask(&mut c, "trap", 1).await);
    assert_eq!(m, "cannot subscribe: the route's plugin failed");
    // Invalid topics.
    for mode in ["empty-keys", "foreign", "foreign-key", "long", "many"] {
        let m = error(&ask(&mut c, mode, 1).await);
        assert!(m.contains("returned an invalid answer"), "{mode}: {m}");
    }
    // An internal error is reported without its details.
    let m = error(&ask(&mut c, "internal", 1).await);
    assert_eq!(
        m,
        "cannot subscribe: the route could not handle this request"
    );
    // Several at once, from several connections: each gets its reply.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(host.client().await);
    }
    let replies = futures_util::future::join_all(
        clients
            .iter_mut()
            .zip(["loop", "alloc", "trap", "loop"])
            .map(|(c, mode)| async move { ask(c, mode, 2).await }),
    )
    .await;
    for v in &replies {
        error(v);
    }
    assert_eq!(ask(&mut c, "ok", 3).await["payload"]["status"], "ok");

    // Let the stream run a little longer, then stop it and check it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    feed.await.unwrap();
    let (last, longest_gap) = watch.await.unwrap();
    assert_eq!(
        last,
        sent.load(Ordering::Relaxed),
        "the subscriber missed bars"
    );
    // Generous: CI machines are slow, but a blocked host would stall here.
    assert!(
        longest_gap < Duration::from_secs(1),
        "stream stalled for {longest_gap:?}"
    );

    // The failures are counted per route and logged; nothing panicked.
    let routes = host.get_json("/api/v1/routes").await;
    let failures = |name: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["failures"]
            .as_u64()
            .unwrap()
    };
    assert!(failures("misbehave") >= 12, "{routes}");
    assert_eq!(failures("bars"), 0);
    host.wait_for_log("plugin call failed", Duration::from_secs(1))
        .await;
    // The plugin's own panic message is in the log as plugin output; the
    // host itself never panicked.
    let host_panics: Vec<String> = host
        .logs()
        .into_iter()
        .filter(|l| l.contains("panicked") && !l.contains("plugin output"))
        .collect();
    assert!(host_panics.is_empty(), "{host_panics:?}");
    let rss = vm_rss_kib(host.pid());
    assert!(rss < 512 * 1024, "host RSS {rss} KiB");
}

#[tokio::test]
async fn plugins_see_no_environment_files_or_network() {
    let host = Host::builder()
        .plugins(&["misbehave"])
        .arg("--plugin-memory-mib")
        .arg("16")
        .start();
    let mut c = host.client().await;
    let v = ask(&mut c, "probe", 1).await;
    assert_eq!(
        v["payload"]["topic"], "misbehave:probe:env=0:args=0:fs=denied:file=denied:net=denied",
        "{v}"
    );
    // A smaller memory cap is honoured too.
    let v = ask(&mut c, "alloc", 1).await;
    assert_eq!(v["payload"]["status"], "error");
}

#[tokio::test]
async fn plugin_output_goes_to_the_log_tagged_and_rate_limited() {
    // 2,000 lines take longer than the default deadline on a loaded machine.
    let host = Host::builder()
        .plugins(&["misbehave"])
        .arg("--plugin-deadline-ms")
        .arg("1000")
        .start();
    let mut c = host.client().await;
    // 2000 lines (stdout and stderr) in one call.
    assert_eq!(ask(&mut c, "print", 1).await["payload"]["status"], "ok");
    let line = host
        .wait_for_log("misbehave stdout line 0", Duration::from_secs(5))
        .await;
    assert!(line.contains("misbehave.wasm"), "not tagged: {line}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ask(&mut c, "print", 2).await["payload"]["status"], "ok");
    host.wait_for_log("plugin output rate-limited", Duration::from_secs(5))
        .await;
    let logged = host
        .logs()
        .iter()
        .filter(|l| l.contains("plugin output:"))
        .count();
    assert!(logged <= 60, "{logged} plugin lines logged");
}

/// The resident memory of a process, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}
