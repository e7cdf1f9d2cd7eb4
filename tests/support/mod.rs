//! Test harness: start the real host binary on a loopback port with a chosen
//! set of plugins, and talk to it with a real WebSocket client and HTTP.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

pub const HOST_BIN: &str = env!("CARGO_BIN_EXE_ws-router-host");

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A built plugin, by file stem: `plugins/<name>.wasm`, or a test plugin in
/// `target/test-plugins/<name>.wasm`.
pub fn plugin(name: &str) -> PathBuf {
    for dir in ["plugins", "target/test-plugins", "tests/fixtures"] {
        let path = root().join(dir).join(format!("{name}.wasm"));
        if path.exists() {
            return path;
        }
    }
    panic!(
        "plugin {name}.wasm is not built: run `just build-plugins` (or `just test`, which builds it)"
    );
}

/// A running host process, killed on drop.
pub struct Host {
    child: Child,
    pub addr: String,
    pub plugins_dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
}

pub struct HostBuilder {
    plugins: Vec<String>,
    args: Vec<String>,
}

impl HostBuilder {
    pub fn plugins(mut self, names: &[&str]) -> Self {
        self.plugins = names.iter().map(|n| n.to_string()).collect();
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn start(self) -> Host {
        self.start_with(|_| {})
    }

    /// Start after `prepare` has had its way with the plugins directory.
    pub fn start_with(self, prepare: impl FnOnce(&Path)) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in &self.plugins {
            std::fs::copy(plugin(name), dir.path().join(format!("{name}.wasm")))
                .expect("copy plugin");
        }
        prepare(dir.path());
        Host::spawn(dir, &self.args)
    }
}

impl Host {
    /// bars, quotes and trades, no demo feed.
    pub fn start() -> Host {
        Host::builder().start()
    }

    pub fn builder() -> HostBuilder {
        HostBuilder {
            plugins: vec!["bars".into(), "quotes".into(), "trades".into()],
            args: vec![],
        }
    }

    fn spawn(plugins_dir: tempfile::TempDir, args: &[String]) -> Host {
        let mut child = Command::new(HOST_BIN)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--plugins")
            .arg(plugins_dir.path())
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("TEST_HOST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("WS_ROUTER_DEMO_FEED")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start host binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = Arc::clone(&logs);
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("TEST_HOST_ECHO").is_some() {
                        eprintln!("[host] {line}");
                    }
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let _ = addr_tx.send(addr);
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "host did not start; log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Host {
            child,
            addr,
            plugins_dir,
            logs,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// `POST /api/v1/publish` with `body`; the JSON reply.
    pub async fn publish(&self, body: &Value) -> Value {
        let reply = reqwest::Client::new()
            .post(self.http("/api/v1/publish"))
            .json(body)
            .send()
            .await
            .expect("publish");
        assert!(
            reply.status().is_success(),
            "publish failed: {}",
            reply.status()
        );
        reply.json().await.expect("publish reply is JSON")
    }

    /// `POST /api/v1/publish` with a body sent byte for byte.
    pub async fn publish_raw(&self, body: &str) -> Value {
        let reply = reqwest::Client::new()
            .post(self.http("/api/v1/publish"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("publish");
        reply.json().await.expect("publish reply is JSON")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        reqwest::get(self.http(path))
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// The names of the routes served now (`/api/v1/routes`), sorted.
    pub async fn route_names(&self) -> Vec<String> {
        let routes = self.get_json("/api/v1/routes").await;
        let mut names: Vec<String> = routes
            .as_array()
            .unwrap_or_else(|| panic!("routes are not an array: {routes}"))
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect();
        names.sort_unstable();
        names
    }

    /// Subscriptions reached by publishing to `topic`.
    pub async fn subscribers(&self, topic: &str) -> u64 {
        let url =
            reqwest::Url::parse_with_params(&self.http("/api/v1/subscribers"), &[("topic", topic)])
                .unwrap();
        let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        v["subscribers"].as_u64().unwrap()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Wait until a log line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if start.elapsed() > timeout {
                panic!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking the wire format.
pub struct Client {
    ws: Ws,
}

/// What a client saw instead of a text frame.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Closed(Option<(u16, String)>),
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connect");
        Client { ws }
    }

    /// Open a WebSocket with a handshake request of one's own (extra
    /// headers); the handshake's error (an HTTP refusal among them) as is.
    pub async fn try_connect(
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws })
    }

    /// Connect with a small, fixed socket receive buffer (no autotuning), so
    /// that a client that stops reading pushes back on the host quickly.
    pub async fn connect_with_recv_buffer(url: &str, bytes: u32) -> Client {
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .parse()
            .expect("socket address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("TCP connect");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("WebSocket handshake");
        Client { ws }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame, raw; panics after 5 s or on close.
    pub async fn recv_text(&mut self) -> String {
        match self.next_event(Duration::from_secs(5)).await {
            Some(Event::Text(t)) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
    }

    /// The next text frame or close within `timeout`; `None` on timeout.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next {
                Some(Ok(Message::Text(t))) => return Some(Event::Text(t.to_string())),
                Some(Ok(Message::Close(frame))) => {
                    return Some(Event::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Event::Closed(None)),
            }
        }
    }

    /// Assert nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(event) = self.next_event(quiet).await {
            panic!("expected no frame, got {event:?}");
        }
    }

    /// Subscribe and return the reply payload (asserting status ok).
    pub async fn subscribe(&mut self, route: &str, request: Value) -> Value {
        self.send(&serde_json::json!({"type": format!("{route}.subscribe"), "payload": request}))
            .await;
        self.subscribed(route).await
    }

    /// The reply to a subscribe sent to `route`: its payload, asserting
    /// status ok.
    pub async fn subscribed(&mut self, route: &str) -> Value {
        let reply = self.recv().await;
        assert_eq!(
            reply["type"],
            format!("{route}.subscribe.response"),
            "reply: {reply}"
        );
        assert_eq!(reply["payload"]["status"], "ok", "reply: {reply}");
        reply["payload"].clone()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
