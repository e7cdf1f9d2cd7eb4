//! Spec item 10 (issue 12): whenever the host closes a client, the closing
//! handshake completes and the client reads the close frame with its code,
//! even a client that was still sending and reading slowly (its replies
//! still in flight when the host decided to close): closing a socket with
//! unread data makes the kernel reset the connection and drop what was not
//! yet sent, close frame included.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::Host;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket whose socket receive buffer is small and fixed, so that the
/// host's replies back up while the client sends.
async fn connect_slow_reader(host: &Host) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(host.addr.parse().unwrap()).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(host.ws_url(), MaybeTlsStream::Plain(stream))
        .await
        .expect("WebSocket handshake");
    ws
}

/// Read until the connection ends: the close code, or how it ended.
async fn close_code(ws: &mut Ws, wait: Duration) -> Result<u16, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err("still open".into()),
            Ok(None) => return Err("end of stream without a close frame".into()),
            Ok(Some(Err(e))) => return Err(format!("{e}")),
            Ok(Some(Ok(Message::Close(Some(frame))))) => return Ok(u16::from(frame.code)),
            Ok(Some(Ok(Message::Close(None)))) => return Err("close frame without code".into()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn a_flooding_client_that_reads_slowly_still_receives_1008() {
    let host = Host::builder()
        .plugins(&["bars"])
        .arg("--rate-limit-close-after-ms")
        .arg("1000")
        .start();
    let mut ws = connect_slow_reader(&host).await;
    let frame = r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","junk":"0123456789012345678901234567890123456789"}}"#;
    for _ in 0..2000 {
        let sent =
            tokio::time::timeout(Duration::from_secs(5), ws.send(Message::text(frame))).await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    assert_eq!(close_code(&mut ws, Duration::from_secs(15)).await, Ok(1008));
}
