//! The tables of BENCHMARKS.md, from the JSON lines the scenarios append.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// Column order: the host, the ceiling, then the alternatives. Other
/// builds of the host (`ws-router@<label>`, see `BENCH_HOSTS` in
/// bench/run.sh) come right after `ws-router`.
const SERVERS: [&str; 4] = ["ws-router", "bare-rust", "node-ws", "fastapi-fastws"];

/// The servers of `rows`, in column order.
fn columns(rows: &[&Value]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        if let Some(s) = r["server"].as_str()
            && !names.iter().any(|n| n == s)
        {
            names.push(s.to_owned());
        }
    }
    let rank = |name: &str| {
        let base = name.split('@').next().unwrap_or(name);
        let at = SERVERS
            .iter()
            .position(|s| *s == base)
            .unwrap_or(SERVERS.len());
        (at, name.contains('@'), name.to_owned())
    };
    names.sort_by_key(|n| rank(n));
    names
}

/// The builds of the host in `servers`: `ws-router` and `ws-router@<label>`.
fn hosts(servers: &[String]) -> Vec<&str> {
    servers
        .iter()
        .map(String::as_str)
        .filter(|s| *s == "ws-router" || s.starts_with("ws-router@"))
        .collect()
}

pub fn print(results: &Path, criterion: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(results)
        .with_context(|| format!("cannot read {}", results.display()))?;
    let records: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut scenarios: Vec<String> = Vec::new();
    for r in &records {
        if let Some(s) = r["scenario"].as_str()
            && !scenarios.iter().any(|x| x == s)
        {
            scenarios.push(s.to_owned());
        }
    }
    for scenario in &scenarios {
        let rows: Vec<&Value> = records
            .iter()
            .filter(|r| r["scenario"] == scenario.as_str())
            .collect();
        let by = |server: &str| rows.iter().rev().find(|r| r["server"] == server).copied();
        let names = columns(&rows);
        let servers: Vec<&str> = names.iter().map(String::as_str).collect();
        let first = rows[0];
        println!("\n### {scenario}\n");
        if let Some(conns) = first["conns"].as_u64() {
            let mut shape = format!("{conns} connections");
            if let (Some(t), Some(s), Some(size)) = (
                first["topics"].as_u64(),
                first["subs_per_conn"].as_u64(),
                first["size"].as_u64(),
            ) {
                shape += &format!(", {t} topics, {s} per connection, {size}-byte data");
            }
            println!("{shape}\n");
        }
        // Where the server and the load generator ran (`bench/run.sh` sets
        // it): on a small machine they share cores, and latency shows it.
        if let Ok(placement) = std::env::var("BENCH_PLACEMENT") {
            println!("Placement: {placement}\n");
        }
        println!("| metric | {} |", servers.join(" | "));
        println!("|---|{}", "---|".repeat(servers.len()));
        for (key, label) in metrics(first) {
            let cells: Vec<String> = servers
                .iter()
                .map(|s| by(s).map(|r| cell(&r[key])).unwrap_or_default())
                .collect();
            println!("| {label} | {} |", cells.join(" | "));
        }
        if first.get("max_delivered_per_s").is_some() {
            verdicts(&by, &names);
        }
        if first.get("subscribe_per_s").is_some() {
            subscribe_ratios(&by, &names);
        }
        for host_name in hosts(&names) {
            if let Some(kib) = by(host_name).and_then(|h| h["rss_per_conn_kib"].as_f64()) {
                println!(
                    "\nTarget < 8 KiB host RSS per idle connection ({host_name}): {kib} KiB, {}",
                    if kib < 8.0 { "met" } else { "MISSED" }
                );
            }
        }
    }
    if let Some(dir) = criterion {
        print_criterion(dir);
    }
    Ok(())
}

fn metrics(first: &Value) -> Vec<(&'static str, &'static str)> {
    let all: [(&str, &str); 30] = [
        ("max_delivered_per_s", "delivered msgs/s (max)"),
        ("max_pubs_per_s", "publications/s (max)"),
        ("max_p50_us", "latency p50 µs (max)"),
        ("max_p99_us", "latency p99 µs (max)"),
        ("max_p999_us", "latency p99.9 µs (max)"),
        ("max_server_cores", "server CPU cores (max)"),
        ("max_loadgen_cores", "load generator CPU cores (max)"),
        ("max_lost", "lost deliveries (max)"),
        ("half_pubs_per_s", "publications/s (half)"),
        ("half_delivered_per_s", "delivered msgs/s (half)"),
        ("half_p50_us", "latency p50 µs (half)"),
        ("half_p99_us", "latency p99 µs (half)"),
        ("half_p999_us", "latency p99.9 µs (half)"),
        ("half_server_cores", "server CPU cores (half)"),
        ("half_loadgen_cores", "load generator CPU cores (half)"),
        ("half_closed", "connections closed by server"),
        ("subscribe_per_s", "subscribes/s"),
        ("connect_per_s", "connections/s"),
        ("storm_ms", "storm duration ms"),
        ("reply_p50_ms", "reply p50 ms"),
        ("reply_p99_ms", "reply p99 ms"),
        ("server_cpu_s", "server CPU s"),
        ("loadgen_cpu_s", "load generator CPU s"),
        ("rss_before_mib", "server RSS before MiB"),
        ("rss_after_mib", "server RSS after MiB"),
        ("rss_per_conn_kib", "server RSS per connection KiB"),
        ("closed", "connections closed by server"),
        ("available", "available"),
        ("reload_ms", "copy to first successful subscribe ms"),
        ("server_peak_rss_mib", "server peak RSS MiB"),
    ];
    all.into_iter()
        .filter(|(k, _)| first.get(*k).is_some())
        .collect()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "n/a".to_owned(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() >= 1000.0 => group(f as i64),
            _ => n.to_string(),
        },
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// 1234567 -> "1 234 567".
fn group(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Subscribes per second of each host build against bare Rust's.
fn subscribe_ratios<'a>(by: &dyn Fn(&str) -> Option<&'a Value>, servers: &[String]) {
    let rate = |s: &str| by(s).and_then(|r| r["subscribe_per_s"].as_f64());
    let Some(ceiling) = rate("bare-rust") else {
        return;
    };
    println!();
    for host_name in hosts(servers) {
        if let Some(host) = rate(host_name) {
            println!(
                "- {host_name} subscribes/s / bare-rust = {:.0}%",
                host / ceiling * 100.0
            );
        }
    }
}

fn verdicts<'a>(by: &dyn Fn(&str) -> Option<&'a Value>, servers: &[String]) {
    let rate = |s: &str| by(s).and_then(|r| r["max_delivered_per_s"].as_f64());
    if rate("ws-router").is_none() {
        return;
    }
    println!();
    // Which side ran out of CPU: on a shared 2-core machine, the busier one.
    for s in servers.iter().map(String::as_str) {
        if let Some(r) = by(s) {
            let server = r["max_server_cores"].as_f64().unwrap_or(0.0);
            let gen_ = r["max_loadgen_cores"].as_f64().unwrap_or(0.0);
            let side = if server >= gen_ {
                "server"
            } else {
                "load generator"
            };
            println!(
                "- {s}: at max, server used {server:.2} cores, load generator {gen_:.2}: {side} is the busier side"
            );
        }
    }
    for host_name in hosts(servers).into_iter().filter(|h| *h != "ws-router") {
        if let (Some(build), Some(ceiling)) = (rate(host_name), rate("bare-rust")) {
            println!(
                "- {host_name} / bare-rust = {:.0}%",
                build / ceiling * 100.0
            );
        }
    }
    let Some(host) = rate("ws-router") else {
        return;
    };
    if let Some(ceiling) = rate("bare-rust") {
        let ratio = host / ceiling;
        println!(
            "- ws-router / bare-rust = {:.0}% (target >= 85%): {}",
            ratio * 100.0,
            if ratio >= 0.85 { "met" } else { "MISSED" }
        );
        for alt in ["node-ws", "fastapi-fastws"] {
            if let Some(x) = rate(alt) {
                let margin = ceiling - x;
                if margin > 0.0 {
                    let share = (host - x) / margin;
                    println!(
                        "- ws-router's lead over {alt} = {:.0}% of bare-rust's lead ({:.1}x vs {:.1}x; target >= 85%): {}",
                        share * 100.0,
                        host / x,
                        ceiling / x,
                        if share >= 0.85 { "met" } else { "MISSED" }
                    );
                } else {
                    println!("- bare-rust is not ahead of {alt} here; no margin to compare");
                }
            }
        }
    }
    if let Some(p99) = by("ws-router").and_then(|r| r["half_p99_us"].as_u64()) {
        println!(
            "- ws-router p99 at half max throughput = {:.2} ms (target < 10 ms): {}",
            p99 as f64 / 1000.0,
            if p99 < 10_000 { "met" } else { "MISSED" }
        );
    }
}

fn print_criterion(dir: &Path) {
    let Ok(groups) = std::fs::read_dir(dir) else {
        return;
    };
    println!("\n### topic builder (criterion)\n");
    println!("| benchmark | mean | target |");
    println!("|---|---|---|");
    let mut found: Vec<(String, f64)> = Vec::new();
    for group in groups.flatten() {
        let path = group.path().join("new").join("estimates.json");
        let name = group.file_name().to_string_lossy().into_owned();
        if let Some(mean) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["mean"]["point_estimate"].as_f64())
        {
            found.push((name, mean));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, ns) in found {
        println!(
            "| {name} | {:.2} µs | < 2 µs: {} |",
            ns / 1000.0,
            if ns < 2000.0 { "met" } else { "MISSED" }
        );
    }
}
