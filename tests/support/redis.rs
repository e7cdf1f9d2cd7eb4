//! A real `redis-server` for the cluster tests: on a free loopback port,
//! nothing written to disk, killed on drop. `just redis-deps` installs it.

#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Start `redis-server` on a free port; panics (saying how to install
    /// it) if it is missing.
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Redis {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start it again, on the same port (after [`Redis::kill`]).
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `just redis-deps`")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_command(&["PING"]).is_some_and(|r| r == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    /// Kill it (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command; the reply as text (integers and status lines as their
    /// text, arrays one element per line).
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|| panic!("redis command {args:?} failed"))
    }

    fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        tcp.write_all(request.as_bytes()).ok()?;
        let mut reader = Resp {
            tcp,
            buf: Vec::new(),
        };
        reader.value()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Just enough RESP2 to read a reply.
struct Resp {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Resp {
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            let mut chunk = [0u8; 4096];
            let n = self.tcp.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn value(&mut self) -> Option<String> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" | ":" => Some(rest.to_owned()),
            "-" => None,
            "$" if rest == "-1" => Some(String::new()),
            "$" => self.line(),
            "*" => {
                let n: i64 = rest.parse().ok()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.value()?);
                }
                Some(items.join("\n"))
            }
            _ => None,
        }
    }
}

/// Two hosts joined by one Redis: what the cluster tests share.
pub mod nodes {
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::Redis;
    use crate::support::Host;

    /// A host joined to `redis`, started with `args` besides.
    pub fn node_with(redis: &Redis, args: &[&str]) -> Host {
        let mut b = Host::builder().arg("--redis-url").arg(&redis.url());
        for a in args {
            b = b.arg(a);
        }
        b.start()
    }

    /// A host joined to `redis`.
    pub fn node(redis: &Redis) -> Host {
        node_with(redis, &[])
    }

    /// Wait (at most 15 s) until `check` holds.
    pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// The host's broker state, as `/readyz` reports it.
    pub async fn broker(host: &Host) -> Value {
        host.get_json("/readyz").await["broker"].clone()
    }

    /// Whether the host reaches Redis now.
    pub async fn up(host: &Host) -> bool {
        broker(host).await["up"] == true
    }

    /// Wait until both nodes reach Redis.
    pub async fn connected(a: &Host, b: &Host) {
        until("both nodes reach Redis", async || {
            up(a).await && up(b).await
        })
        .await;
    }
}
