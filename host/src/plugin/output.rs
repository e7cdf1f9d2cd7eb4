//! Plugin stdout and stderr: each line goes to the host's log, tagged with
//! the plugin file, rate-limited so that a chatty (or hostile) plugin cannot
//! flood the log or slow the host down.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Lines a plugin may log per window; the rest are counted and reported.
const LINES_PER_WINDOW: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);
/// Longest line logged; longer lines are cut.
const MAX_LINE: usize = 1024;

/// One plugin's output channel, shared by all its instances.
pub struct PluginOutput {
    /// The plugin's file name, known before the plugin says who it is.
    plugin: Arc<str>,
    window: Mutex<Window>,
}

struct Window {
    started: Instant,
    lines: u32,
    suppressed: u64,
}

impl PluginOutput {
    pub fn new(plugin: &str) -> Arc<Self> {
        Arc::new(PluginOutput {
            plugin: Arc::from(plugin),
            window: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
                suppressed: 0,
            }),
        })
    }

    /// The WASI stdout or stderr of one instance.
    pub fn stream(self: &Arc<Self>, stream: &'static str) -> OutputStream {
        OutputStream {
            output: Arc::clone(self),
            stream,
        }
    }

    fn line(&self, stream: &str, bytes: &[u8]) {
        let mut window = self.window.lock();
        if window.started.elapsed() >= WINDOW {
            if window.suppressed > 0 {
                tracing::warn!(plugin = %self.plugin, suppressed = window.suppressed, "plugin output rate-limited: lines dropped");
            }
            *window = Window {
                started: Instant::now(),
                lines: 0,
                suppressed: 0,
            };
        }
        if window.lines >= LINES_PER_WINDOW {
            window.suppressed += 1;
            return;
        }
        window.lines += 1;
        drop(window);
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LINE)]);
        tracing::info!(plugin = %self.plugin, stream, "plugin output: {}", text.trim_end());
    }
}

/// Implements WASI stdout/stderr for an instance.
pub struct OutputStream {
    output: Arc<PluginOutput>,
    stream: &'static str,
}

impl IsTerminal for OutputStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: Arc::clone(&self.output),
            stream: self.stream,
            pending: Vec::new(),
        })
    }
}

/// Splits what the plugin writes into lines.
struct LineWriter {
    output: Arc<PluginOutput>,
    stream: &'static str,
    pending: Vec<u8>,
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        for &b in buf {
            if b == b'\n' {
                this.output.line(this.stream, &this.pending);
                this.pending.clear();
            } else if this.pending.len() < MAX_LINE {
                this.pending.push(b);
            }
            // Bytes past MAX_LINE are dropped: the line is cut.
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            let this = &mut *self;
            this.output.line(this.stream, &this.pending);
            this.pending.clear();
        }
        Poll::Ready(Ok(()))
    }
}
