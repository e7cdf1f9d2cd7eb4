//! Hardening of what the host reads from disk, and fresh-machine chores
//! (issue 12, `hardening-spec` items 13-17): only regular plugin files of
//! bounded size, symlinks only inside the plugins directory, a private
//! compiled-plugin cache, the justfile's target install, the demo feed on
//! every route, concurrent compilation at startup.

#[path = "support/attack.rs"]
mod attack;
mod support;

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use attack::{
    install_bytes, install_plugin, patched_plugin, plugin_file, wait_plugin_file, wait_route,
};
use serde_json::{Value, json};
use support::{Event, HOST_BIN, Host, plugin};

const WAIT: Duration = Duration::from_secs(10);

// --------------------------------------------------------------- item 13

/// Spec item 13: a FIFO named `x.wasm` is rejected ("not a regular file")
/// without blocking anything: a valid plugin added afterwards loads.
#[tokio::test]
async fn a_fifo_named_wasm_is_rejected_and_reload_goes_on() {
    let host = Host::builder().plugins(&["bars"]).start();
    let dir = host.plugins_dir.path().to_path_buf();
    let status = Command::new("mkfifo")
        .arg(dir.join("x.wasm"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let entry = wait_plugin_file(&host, "x.wasm", WAIT, |_| true).await;
    assert_eq!(entry["status"], "rejected", "{entry}");
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a regular file"),
        "{entry}"
    );
    install_plugin(&dir, "ticker", "ticker.wasm");
    wait_route(&host, "ticker", None, WAIT).await;
}

/// Spec item 13: a symlink `z.wasm -> /dev/zero` is rejected, and the host
/// neither hangs nor grows. (The host's data segment is capped with
/// `prlimit` first, so a host that reads it dies instead of eating the
/// machine.)
#[tokio::test]
async fn a_symlink_to_dev_zero_is_rejected() {
    let mut host = Host::builder().plugins(&["bars"]).start();
    attack::cap_process_memory(host.pid(), 2 << 30);
    let dir = host.plugins_dir.path().to_path_buf();
    let rss_before = attack::vm_rss_kib(host.pid());
    std::os::unix::fs::symlink("/dev/zero", dir.join("z.wasm")).unwrap();
    let start = Instant::now();
    let entry = loop {
        assert!(host.is_running(), "the host died reading /dev/zero");
        let rss = attack::vm_rss_kib(host.pid());
        assert!(
            rss < rss_before + 512 * 1024,
            "the host is reading /dev/zero: RSS {rss} KiB"
        );
        if let Some(entry) = plugin_file(&host, "z.wasm").await {
            break entry;
        }
        assert!(start.elapsed() < WAIT, "z.wasm never rejected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry["status"], "rejected", "{entry}");
    install_plugin(&dir, "ticker", "ticker.wasm");
    wait_route(&host, "ticker", None, WAIT).await;
}

/// Spec item 13: a symlink to a regular file inside the plugins directory
/// loads; one to a file outside it is rejected.
#[tokio::test]
async fn symlinks_load_only_when_they_resolve_inside_the_plugins_directory() {
    let host = Host::builder().plugins(&["bars"]).start();
    let dir = host.plugins_dir.path().to_path_buf();
    std::fs::create_dir(dir.join("store")).unwrap();
    std::fs::copy(plugin("ticker"), dir.join("store/ticker.bin")).unwrap();
    std::os::unix::fs::symlink("store/ticker.bin", dir.join("ticker.wasm")).unwrap();
    wait_route(&host, "ticker", None, WAIT).await;

    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("outside.wasm"),
        patched_plugin(";name=outside"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("outside.wasm"),
        dir.join("outside.wasm"),
    )
    .unwrap();
    let entry = wait_plugin_file(&host, "outside.wasm", WAIT, |_| true).await;
    assert_eq!(entry["status"], "rejected", "{entry}");
    assert!(!host.route_names().await.contains(&"outside".to_owned()));
}

/// Spec item 13: `--max-plugin-bytes`: a larger file is rejected with a
/// reason naming the size limit.
#[tokio::test]
async fn a_plugin_file_over_max_plugin_bytes_is_rejected_naming_the_limit() {
    attack::require_flags(&["--max-plugin-bytes"]);
    let host = Host::builder()
        .plugins(&["bars"])
        .arg("--max-plugin-bytes")
        .arg("50000")
        .start();
    let size = std::fs::metadata(plugin("patchable")).unwrap().len();
    assert!(size > 50_000, "patchable.wasm is {size} bytes");
    install_bytes(
        host.plugins_dir.path(),
        "big.wasm",
        &patched_plugin(";name=big"),
    );
    let entry = wait_plugin_file(&host, "big.wasm", WAIT, |_| true).await;
    assert_eq!(entry["status"], "rejected", "{entry}");
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("50000"),
        "{entry}"
    );
}

/// Spec item 13: the default size limit is 64 MiB (67108864 bytes): a
/// 70 MiB file (sparse, so it costs no disk) is rejected for its size.
#[tokio::test]
async fn a_plugin_file_over_64_mib_is_rejected_for_its_size_by_default() {
    let host = Host::builder().plugins(&["bars"]).start();
    let dir = host.plugins_dir.path();
    let tmp = dir.join(".huge.wasm.tmp");
    let file = std::fs::File::create(&tmp).unwrap();
    file.set_len(70 << 20).unwrap();
    drop(file);
    std::fs::rename(&tmp, dir.join("huge.wasm")).unwrap();
    let entry = wait_plugin_file(&host, "huge.wasm", WAIT, |_| true).await;
    assert_eq!(entry["status"], "rejected", "{entry}");
    let error = entry["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("67108864") || error.contains("64 MiB"),
        "the reason must name the size limit: {error}"
    );
}

// --------------------------------------------------------------- item 14

fn host_with_cache(dir: &Path) -> Host {
    Host::builder()
        .plugins(&["bars"])
        .arg("--cache-dir")
        .arg(dir.to_str().unwrap())
        .start()
}

fn cache_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Spec item 14: the compiled-plugin cache directory is created with mode
/// 0700.
#[tokio::test]
async fn the_cache_directory_is_created_private() {
    let base = tempfile::tempdir().unwrap();
    let cache = base.path().join("new").join("cache");
    let host = host_with_cache(&cache);
    host.wait_for_log("route loaded", WAIT).await;
    let mode = std::fs::metadata(&cache)
        .expect("cache dir created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "cache dir mode {:o}", mode & 0o777);
}

/// Spec item 14: a cache directory writable by group or others is not used:
/// a warning is logged, the host compiles and writes nothing there.
#[tokio::test]
async fn a_group_or_world_writable_cache_directory_is_not_used() {
    for mode in [0o770, 0o707] {
        let cache = tempfile::tempdir().unwrap();
        std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let host = host_with_cache(cache.path());
        host.wait_for_log("route loaded", WAIT).await;
        let bars = plugin_file(&host, "bars.wasm").await.unwrap();
        assert_eq!(bars["compile"]["cached"], false, "{bars}");
        assert_eq!(
            cache_entries(cache.path()),
            Vec::<String>::new(),
            "mode {mode:o}"
        );
        let shown = cache.path().display().to_string();
        assert!(
            host.logs()
                .iter()
                .any(|l| l.contains("WARN") && l.contains(&shown)),
            "no warning naming {shown}; log:\n{}",
            host.logs().join("\n")
        );
    }
}

/// Spec item 14: a cache directory owned by another user is not used
/// (needs root to give it away; skipped otherwise).
#[tokio::test]
async fn a_cache_directory_owned_by_another_user_is_not_used() {
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let me = std::fs::metadata(cache.path()).unwrap().uid();
    if me != 0 {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    // nobody
    std::os::unix::fs::chown(cache.path(), Some(65534), Some(65534)).unwrap();
    let host = host_with_cache(cache.path());
    host.wait_for_log("route loaded", WAIT).await;
    let bars = plugin_file(&host, "bars.wasm").await.unwrap();
    assert_eq!(bars["compile"]["cached"], false, "{bars}");
    assert_eq!(cache_entries(cache.path()), Vec::<String>::new());
}

/// Spec item 14: with neither `--cache-dir`, `XDG_CACHE_HOME` nor `HOME`,
/// there is no cache, and nothing is written under the working directory.
#[tokio::test]
async fn without_home_there_is_no_cache_and_nothing_in_the_working_directory() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(plugin("bars"), plugins.path().join("bars.wasm")).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(HOST_BIN)
        .arg("asyncapi")
        .arg("--plugins")
        .arg(plugins.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(cwd.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start host");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`ws-router-host asyncapi` did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert_eq!(
        cache_entries(cwd.path()),
        Vec::<String>::new(),
        "written under the working directory"
    );
}

// --------------------------------------------------------------- item 15

/// Spec item 15: `just build-plugins` adds the wasm32-wasip2 target before
/// building (rustup does not add it to an already installed toolchain).
#[test]
fn build_plugins_adds_the_wasm_target_before_building() {
    let justfile = std::fs::read_to_string(support::root().join("justfile")).unwrap();
    let recipe: Vec<&str> = justfile
        .lines()
        .skip_while(|l| !l.starts_with("build-plugins:"))
        .skip(1)
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t') || l.is_empty())
        .collect();
    assert!(!recipe.is_empty(), "no build-plugins recipe");
    let add = recipe
        .iter()
        .position(|l| l.contains("rustup target add wasm32-wasip2"));
    let build = recipe.iter().position(|l| l.contains("cargo build"));
    match (add, build) {
        (Some(a), Some(b)) => assert!(a < b, "the target is added after building"),
        _ => panic!(
            "build-plugins does not run `rustup target add wasm32-wasip2` before `cargo build`:\n{}",
            recipe.join("\n")
        ),
    }
}

// --------------------------------------------------------------- item 16

/// Prices in `v` (any depth) whose shortest decimal form has more than two
/// decimals, with their field names.
fn off_tick(v: &Value, field: &str, out: &mut Vec<String>) {
    const PRICES: &[&str] = &[
        "open",
        "high",
        "low",
        "close",
        "price",
        "lp",
        "ask",
        "bid",
        "open_price",
        "high_price",
        "low_price",
        "prev_close_price",
    ];
    match v {
        Value::Number(n) if PRICES.contains(&field) => {
            let text = n.to_string();
            if text.split_once('.').is_some_and(|(_, d)| d.len() > 2) || text.contains('e') {
                out.push(format!("{field}={text}"));
            }
        }
        Value::Object(map) => map.iter().for_each(|(k, v)| off_tick(v, k, out)),
        Value::Array(items) => items.iter().for_each(|v| off_tick(v, field, out)),
        _ => {}
    }
}

/// Spec item 16: the demo feed publishes to every bundled route (bars,
/// quotes, trades, news, orderbook), with prices on the 0.01 tick.
#[tokio::test]
async fn the_demo_feed_feeds_every_bundled_route_on_the_tick() {
    let host = Host::builder()
        .plugins(&["bars", "quotes", "trades", "news", "orderbook"])
        .arg("--demo-feed")
        .arg("--demo-rate")
        .arg("20")
        .start();
    let mut c = host.client().await;
    // The feed runs already: updates may come between the replies.
    for (route, request) in [
        ("bars", json!({"symbol": "AAPL"})),
        ("quotes", json!({"symbols": ["AAPL"]})),
        ("trades", json!({"symbols": ["AAPL"]})),
        ("news", json!({"symbols": ["AAPL"]})),
        ("orderbook", json!({"symbol": "AAPL"})),
    ] {
        c.send(&json!({"type": format!("{route}.subscribe"), "payload": request}))
            .await;
    }
    let mut seen = std::collections::BTreeMap::new();
    let mut bad = Vec::new();
    let start = Instant::now();
    while seen.len() < 5 && start.elapsed() < Duration::from_secs(8) {
        match c.next_event(Duration::from_secs(1)).await {
            Some(Event::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let ty = v["type"].as_str().unwrap_or_default().to_owned();
                if ty.ends_with(".subscribe.response") {
                    assert_eq!(v["payload"]["status"], "ok", "{v}");
                } else if let Some(route) = ty.strip_suffix(".update") {
                    *seen.entry(route.to_owned()).or_insert(0) += 1;
                    off_tick(&v["payload"]["payload"], "", &mut bad);
                }
            }
            Some(other) => panic!("connection ended: {other:?}"),
            None => {}
        }
    }
    let routes: Vec<&String> = seen.keys().collect();
    assert_eq!(
        routes,
        ["bars", "news", "orderbook", "quotes", "trades"],
        "routes the demo feed reached"
    );
    bad.sort();
    bad.dedup();
    assert!(bad.is_empty(), "prices off the 0.01 tick: {bad:?}");
}

// --------------------------------------------------------------- item 17

/// Spec item 17: the startup plugins compile concurrently: with
/// `--no-cache`, "compiling plugin" is logged for news.wasm and
/// orderbook.wasm before "compiled plugin" for either.
#[tokio::test]
async fn startup_plugins_compile_concurrently() {
    let host = Host::builder()
        .plugins(&["news", "orderbook"])
        .arg("--no-cache")
        .start();
    let logs = host.logs();
    let first = |needle: &str, file: &str| {
        logs.iter()
            .position(|l| l.contains(needle) && l.contains(file))
            .unwrap_or_else(|| panic!("no {needle:?} line for {file}; log:\n{}", logs.join("\n")))
    };
    let compiling =
        first("compiling plugin", "news.wasm").max(first("compiling plugin", "orderbook.wasm"));
    let compiled =
        first("compiled plugin", "news.wasm").min(first("compiled plugin", "orderbook.wasm"));
    assert!(
        compiling < compiled,
        "one plugin finished compiling before the other started; log:\n{}",
        logs.join("\n")
    );
}
