//! One accepted TCP connection: counted against `--max-connections` for as
//! long as it is open, and closed gracefully.
//!
//! Closing gracefully matters when the host ends a connection whose client
//! is still sending (a WebSocket closed with 1008 or 1009, a slowloris cut
//! off): closing a socket with unread data makes the kernel answer with a
//! reset, and a reset can overtake the close frame written just before it,
//! so the client never learns why it was closed. [`Conn`] therefore never
//! closes at once: when dropped it shuts down its sending side (the client
//! reads everything written, then end-of-stream) and reads and discards
//! what the client still sends until the client closes too, or
//! [`LINGER`] passes.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};
use tokio_util::task::TaskTracker;

/// The longest a closed connection waits for its client to close too.
pub const LINGER: Duration = Duration::from_secs(2);

/// Marks a request that arrived on a connection over `--max-connections`:
/// a WebSocket upgrade is closed with 1013 (a code a browser can act on).
#[derive(Clone, Copy)]
pub struct OverLimit;

/// Open connections, against a maximum.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    /// Count one more connection, unless `max` are open.
    pub fn admit(&self, max: usize) -> Option<Counted> {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        let counted = Counted(Arc::clone(&self.0));
        (before < max).then_some(counted)
    }

    pub fn open(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One counted connection; uncounted when dropped.
pub struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted TCP connection that stays counted until it is closed, and
/// lingers when dropped (see the module documentation).
pub struct Conn {
    tcp: Option<TcpStream>,
    counted: Option<Counted>,
    lingering: TaskTracker,
}

impl Conn {
    /// `lingering` tracks the closing connections, so that shutdown can let
    /// them finish.
    pub fn new(tcp: TcpStream, counted: Counted, lingering: TaskTracker) -> Conn {
        Conn {
            tcp: Some(tcp),
            counted: Some(counted),
            lingering,
        }
    }

    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.tcp
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let (Some(tcp), counted) = (self.tcp.take(), self.counted.take()) else {
            return;
        };
        // Outside a runtime (the process is ending) the socket just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.lingering.spawn_on(linger(tcp, counted), &runtime);
        }
    }
}

/// Shut down the sending side, then discard what the client sends until
/// it closes or [`LINGER`] passes; then close.
async fn linger(mut tcp: TcpStream, counted: Option<Counted>) {
    let _ = tokio::time::timeout(LINGER, async {
        let _ = tcp.shutdown().await;
        let mut discard = [0u8; 8192];
        while matches!(tcp.read(&mut discard).await, Ok(n) if n > 0) {}
    })
    .await;
    drop(counted);
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.tcp()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.tcp()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()?).poll_shutdown(cx)
    }
}
