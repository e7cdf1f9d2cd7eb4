//! Helpers for the hardening tests (`tests/hardening_*.rs`, which include it
//! with `#[path = "support/attack.rs"] mod attack;` next to `mod support;`): variants of the
//! patchable test plugin, installing files into a running host's plugins
//! directory, raw WebSocket and TCP clients that see exactly how a
//! connection ends, and process probes. Every wait is bounded.

#![allow(dead_code)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::support::{Host, plugin};

/// The marker that starts the patchable plugin's configuration block
/// (`tests/plugins/patchable`), and the block's length.
const MARKER: &[u8] = b"@@WSR-PATCHABLE@@";
const CONFIG_LEN: usize = 512;

/// The patchable test plugin with its configuration block replaced by
/// `config` (`;key=value;...`, see `tests/plugins/patchable/src/lib.rs`).
pub fn patched_plugin(config: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin("patchable")).expect("read patchable.wasm");
    let at = bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("patchable.wasm has its configuration marker");
    assert_eq!(
        bytes[at + 1..]
            .windows(MARKER.len())
            .filter(|w| *w == MARKER)
            .count(),
        0,
        "the marker appears once"
    );
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

/// Write `bytes` to `dir/name` the way deploy tools do: a temporary file
/// next to it, renamed over the target.
pub fn install_bytes(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write plugin");
    std::fs::rename(&tmp, dir.join(name)).expect("rename plugin");
}

/// Install the built plugin `plugin_name` as `dir/name`.
pub fn install_plugin(dir: &Path, plugin_name: &str, name: &str) {
    let bytes = std::fs::read(plugin(plugin_name)).expect("read plugin");
    install_bytes(dir, name, &bytes);
}

/// `GET /api/v1/plugins`, the entry of `file`.
pub async fn plugin_file(host: &Host, file: &str) -> Option<Value> {
    host.get_json("/api/v1/plugins")
        .await
        .as_array()
        .expect("plugins array")
        .iter()
        .find(|p| p["file"] == file)
        .cloned()
}

/// Wait until the entry of `file` in `GET /api/v1/plugins` satisfies `ok`.
pub async fn wait_plugin_file(
    host: &Host,
    file: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let entry = plugin_file(host, file).await;
        if let Some(entry) = &entry
            && ok(entry)
        {
            return entry.clone();
        }
        if start.elapsed() > timeout {
            panic!(
                "{file} never reached the expected state within {timeout:?}; now: {entry:?}; log:\n{}",
                host.logs().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Wait until route `name` is served (at `version`, if given).
pub async fn wait_route(host: &Host, name: &str, version: Option<&str>, timeout: Duration) {
    let start = Instant::now();
    loop {
        let routes = host.get_json("/api/v1/routes").await;
        let found = routes.as_array().is_some_and(|r| {
            r.iter().any(|r| {
                r["name"] == name && version.is_none_or(|v| r["version"].as_str() == Some(v))
            })
        });
        if found {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "route {name} {version:?} not served within {timeout:?}: {routes}; log:\n{}",
                host.logs().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket connection with nothing in between: the test sees every
/// frame, the close frame and how the TCP connection ended.
pub async fn raw_ws(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("WebSocket connect timed out")
    .expect("WebSocket connect");
    ws
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// A close frame with this code and reason.
    CloseFrame(u16, String),
    /// A close frame without a code.
    CloseWithoutCode,
    /// The TCP connection ended (reset or EOF) without a close frame.
    Dropped(String),
    /// Still open when the wait ended.
    StillOpen,
}

/// Read (and discard) frames until the connection ends or `timeout`
/// passes; text frames read on the way are returned too.
pub async fn read_until_end(ws: &mut Ws, timeout: Duration) -> (Ending, Vec<String>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return (Ending::StillOpen, texts),
            Ok(None) => return (Ending::Dropped("end of stream".into()), texts),
            Ok(Some(Err(e))) => return (Ending::Dropped(e.to_string()), texts),
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (
                    Ending::CloseFrame(u16::from(frame.code), frame.reason.to_string()),
                    texts,
                );
            }
            Ok(Some(Ok(Message::Close(None)))) => return (Ending::CloseWithoutCode, texts),
            Ok(Some(Ok(Message::Text(t)))) => texts.push(t.to_string()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Send a text frame; `false` if the connection is gone.
pub async fn send_text(ws: &mut Ws, text: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ws.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}

/// What a raw TCP peer saw when it waited for the server.
#[derive(Debug, PartialEq)]
pub enum TcpOutcome {
    /// The server closed the connection (EOF or reset), after these bytes.
    Closed(Vec<u8>),
    /// Nothing ended within the wait; what had arrived.
    Open(Vec<u8>),
}

/// Read from `stream` until it is closed or `timeout` passes.
pub async fn read_tcp(stream: &mut tokio::net::TcpStream, timeout: Duration) -> TcpOutcome {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return TcpOutcome::Open(got),
            Ok(Ok(0)) | Ok(Err(_)) => return TcpOutcome::Closed(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Write `bytes` one at a time, `gap` apart, until done, the server closes,
/// or `budget` passes; whether the server closed the connection.
pub async fn trickle(
    stream: &mut tokio::net::TcpStream,
    bytes: &[u8],
    gap: Duration,
    budget: Duration,
) -> bool {
    let start = Instant::now();
    for b in bytes {
        if start.elapsed() > budget {
            return false;
        }
        if stream.write_all(&[*b]).await.is_err() {
            return true;
        }
        // A closed connection shows as a readable EOF between bytes.
        let mut probe = [0u8; 256];
        match tokio::time::timeout(gap, stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            _ => {}
        }
    }
    false
}

/// The resident memory of a process, in KiB.
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Cap the data segment of a running process (`prlimit --data`), so that a
/// host that reads an endless file dies instead of eating the machine.
pub fn cap_process_memory(pid: u32, bytes: u64) {
    let status = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--data={bytes}"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit failed");
}

/// Panic at once, with a clear message, unless the host binary has every
/// flag in `args` (the `--...` entries): a host without them would exit on a
/// usage error, which the harness only notices after its start timeout.
pub fn require_flags(args: &[&str]) {
    let out = std::process::Command::new(crate::support::HOST_BIN)
        .arg("--help")
        .output()
        .expect("run the host with --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")),
            "the host has no {flag} flag (see `ws-router-host --help`)"
        );
    }
}
