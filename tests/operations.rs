//! Operating the host: the config file and its precedence, `ws-router-host
//! config`, the example file, JSON logs, and log lines that plugin or client
//! values cannot forge.

mod support;

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{HOST_BIN, Host, root};

/// Run the host binary with `args` and only the environment in `env` among
/// its settings' variables; its output once it exits (killed after 60 s).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(HOST_BIN);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("WS_ROUTER_") || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("start host binary");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("host output")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("ws-router.toml");
    std::fs::write(&path, text).expect("write config file");
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// Subscribe to bars `S0`, `S1` ... until the host refuses; how many it
/// took (at most `up_to`).
async fn subscriptions_allowed(host: &Host, up_to: usize) -> usize {
    let mut client = host.client().await;
    for i in 0..up_to {
        client
            .send(&json!({"type": "bars.subscribe", "payload": {"symbol": format!("S{i}")}}))
            .await;
        let reply = client.recv().await;
        assert_eq!(reply["type"], "bars.subscribe.response", "{reply}");
        if reply["payload"]["status"] != "ok" {
            let message = reply["payload"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("subscription limit"), "{reply}");
            return i;
        }
    }
    up_to
}

#[tokio::test]
async fn a_config_file_sets_a_limit_the_host_enforces_and_a_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "# two per connection\nmax_subscriptions = 2\n");

    let host = Host::builder().arg("--config").arg(&file).start();
    assert_eq!(subscriptions_allowed(&host, 5).await, 2);
    host.wait_for_log("configuration read", Duration::from_secs(5))
        .await;
    drop(host);

    // The flag's spelling works in the file too; a flag beats the file.
    let file = write_config(dir.path(), "max-subscriptions = 2\n");
    let host = Host::builder()
        .arg("--config")
        .arg(&file)
        .arg("--max-subscriptions")
        .arg("3")
        .start();
    assert_eq!(subscriptions_allowed(&host, 5).await, 3);
}

#[test]
fn precedence_is_flags_then_environment_then_file_then_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "max_subscriptions = 2\nmax_keys = 3\nmax_connections = 4\nlog_format = \"json\"\n",
    );
    let output = run(
        &["config", "--max-keys", "30"],
        &[
            ("WS_ROUTER_CONFIG", &file),
            ("WS_ROUTER_MAX_KEYS", "20"),
            ("WS_ROUTER_MAX_CONNECTIONS", "40"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    let line = |name: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{report}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("max_keys"), "max_keys = 30 # flag --max-keys");
    assert_eq!(
        line("max_connections"),
        "max_connections = 40 # env WS_ROUTER_MAX_CONNECTIONS"
    );
    assert_eq!(
        line("max_subscriptions"),
        format!("max_subscriptions = 2 # file {file}")
    );
    assert_eq!(
        line("log_format"),
        format!("log_format = \"json\" # file {file}")
    );
    assert_eq!(line("max_frame_bytes"), "max_frame_bytes = 65536 # default");
    assert!(
        report.contains(&format!("# config file: {file}")),
        "{report}"
    );
    // The report is itself TOML.
    let parsed: toml::Table = report.parse().expect("the report is TOML");
    assert_eq!(parsed["max_keys"].as_integer(), Some(30));
}

/// A bad file stops the host at start, naming the file, the line and the
/// setting, before it listens.
#[test]
fn bad_values_and_unknown_keys_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().to_str().unwrap();
    let cases = [
        (
            "listen = \"127.0.0.1:0\"\nmax_subscriptions = -1\n",
            "line 2: setting `max_subscriptions`: invalid value \"-1\"",
        ),
        (
            "listen = \"not an address\"\n",
            "line 1: setting `listen`: invalid value \"not an address\"",
        ),
        (
            "log_format = \"xml\"\n",
            "setting `log_format`: invalid value \"xml\": expected one of: text, json",
        ),
        (
            "\nmax_subscription = 2\n",
            "line 2: setting `max_subscription`: unknown setting",
        ),
        (
            "max_keys = [1, 2]\n",
            "setting `max_keys`: expected a string",
        ),
        ("max_keys = \n", "not valid TOML"),
    ];
    for (text, expected) in cases {
        let file = write_config(dir.path(), text);
        let output = run(
            &[
                "--config",
                &file,
                "--listen",
                "127.0.0.1:0",
                "--plugins",
                plugins,
            ],
            &[],
        );
        let err = stderr(&output);
        assert!(!output.status.success(), "started with {text:?}:\n{err}");
        assert!(err.contains(&file), "{text:?}: {err}");
        assert!(err.contains(expected), "{text:?}: {err}");
        assert!(
            !stdout(&output).contains("listening on"),
            "{}",
            stdout(&output)
        );
    }
    // A missing file too.
    let output = run(&["--config", "/nonexistent/ws-router.toml"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot read config file /nonexistent/ws-router.toml"),
        "{}",
        stderr(&output)
    );
}

/// The committed example is what the binary generates, holds every flag,
/// and yields exactly the defaults.
#[test]
fn the_example_file_lists_every_setting_at_its_default() {
    let example_path = root().join("ws-router.example.toml");
    let committed = std::fs::read_to_string(&example_path).expect("ws-router.example.toml");
    let generated = run(&["config", "--example"], &[]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    assert_eq!(
        stdout(&generated),
        committed,
        "ws-router.example.toml is stale: run `cargo run -p ws-router-host -- config --example > ws-router.example.toml`"
    );

    // Every flag of `--help` is in it, by name, except the ones that are not
    // file settings.
    let help = stdout(&run(&["--help"], &[]));
    // Option lines: `  -h, --help ...`, `      --listen <LISTEN> ...`.
    let flags: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("--")))
        .map(|w| w.trim_end_matches(','))
        .collect();
    assert!(flags.contains(&"max-subscriptions"), "{help}");
    for flag in flags {
        if ["help", "version", "config", "no-demo-feed"].contains(&flag) {
            continue;
        }
        let key = flag.replace('-', "_");
        assert!(
            committed
                .lines()
                .any(|l| l.starts_with(&format!("{key} = "))
                    || l.starts_with(&format!("# {key} = "))),
            "--{flag} is missing from ws-router.example.toml"
        );
    }

    // Read as a config file, it changes nothing.
    let path = example_path.to_str().unwrap();
    let with_file = stdout(&run(&["config", "--config", path], &[]));
    let without = stdout(&run(&["config"], &[]));
    let values = |report: &str| -> Vec<String> {
        report
            .lines()
            .filter(|l| !l.starts_with("# config file:"))
            .map(|l| {
                l.split("  #")
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(values(&with_file), values(&without));
    let from_file = with_file
        .lines()
        .filter(|l| l.ends_with(&format!("# file {path}")))
        .count();
    assert!(from_file >= 25, "{with_file}");
}

/// Wait until some log line satisfies `pred`; the line.
async fn wait_for(host: &Host, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = host.logs().into_iter().find(|l| pred(l)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what}; log:\n{}",
            host.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plugin file whose name carries a newline: the rejection is logged
/// with the name, a value the host does not control.
fn add_evil_file(dir: &Path) {
    std::fs::write(
        dir.join("evil\n2099-01-01T00:00:00Z ERROR FORGED line.wasm"),
        b"not a component",
    )
    .expect("write plugin file");
}

#[tokio::test]
async fn json_logs_parse_line_by_line_and_carry_the_connection_id() {
    let host = Host::builder()
        .plugins(&["bars"])
        .arg("--log-format")
        .arg("json")
        .arg("--log-filter")
        .arg("info,ws_router_host=debug")
        .start_with(add_evil_file);
    let mut client = host.client().await;
    client.subscribe("bars", json!({"symbol": "AAPL"})).await;
    client.close().await;

    let line = wait_for(&host, "about a connection", |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["span"]["name"] == "conn" && v["span"]["id"].is_u64())
    })
    .await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
    assert!(v["message"].is_string(), "{v}");

    let rejected = wait_for(&host, "about the rejected file", |l| {
        l.contains("plugin rejected")
    })
    .await;
    let rejected: Value = serde_json::from_str(&rejected).unwrap();
    assert!(
        rejected["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("evil\n2099-01-01T00:00:00Z ERROR FORGED line.wasm")),
        "{rejected}"
    );
    let loaded = wait_for(&host, "about the loaded plugin", |l| {
        l.contains("bars.wasm")
    })
    .await;
    let loaded: Value = serde_json::from_str(&loaded).unwrap();
    assert!(
        loaded["route"] == "bars" || loaded["file"].is_string(),
        "{loaded}"
    );

    for line in host.logs() {
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
    }
}

#[tokio::test]
async fn values_with_newlines_cannot_forge_text_log_lines() {
    let host = Host::builder().plugins(&["bars"]).start_with(add_evil_file);
    let line = wait_for(&host, "about the rejected file", |l| {
        l.contains("plugin rejected")
    })
    .await;
    assert!(
        line.contains("evil\\n2099-01-01T00:00:00Z ERROR FORGED line.wasm"),
        "{line}"
    );
    // Every line the host wrote starts as the formatter starts one (a
    // timestamp), none as the file name's second line.
    for line in host.logs() {
        assert!(!line.starts_with("2099"), "forged line: {line}");
        assert!(
            line.starts_with("20") || line.starts_with("\u{1b}"),
            "{line}"
        );
    }
}
