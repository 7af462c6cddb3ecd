//! What a client may hold before it is authenticated: a connection that never finishes its HTTP
//! request, or never sends its Socket.IO CONNECT, is closed after `HANDSHAKE_TIMEOUT_MS`, and `HANDSHAKES_PER_IP_PER_MINUTE`
//! meters handshakes per client address (read from `X-Forwarded-For` only behind
//! `TRUSTED_PROXIES`).

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const REFUSED: &str = "Rate limit exceeded";

#[tokio::test]
async fn a_connection_that_never_sends_connect_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(settings(dir.path(), &[("HANDSHAKE_TIMEOUT_MS", "300")])).await.unwrap();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let started = tokio::time::Instant::now();
    let (mut silent, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut honest = Client::connect(server.addr, &token("on-time", "consultant")).await.unwrap();

    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = silent.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the silent connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(250), "not before its time");
    // One that connected in time is not touched.
    assert_eq!(honest.call("get-online-readers", Value::Null).await["ok"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(settings(dir.path(), &[("HANDSHAKE_TIMEOUT_MS", "300")])).await.unwrap();
    // Half a request; nothing at all; the start of an HTTP/2 preface (whose first bytes leave a
    // server that guesses the protocol's version waiting, with no deadline of its own).
    let sent: [&[u8]; 3] = [
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n",
        b"",
        b"PRI * HTTP",
    ];
    for bytes in sent {
        let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(bytes).await.unwrap();
        let started = tokio::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
        let what = String::from_utf8_lossy(bytes);
        assert!(read.is_ok(), "the connection that sent {what:?} is closed");
        assert!(started.elapsed() >= Duration::from_millis(250), "not before its time");
    }
    // Requests that arrive whole are served as before.
    let mut honest = Client::connect(server.addr, &token("whole", "consultant")).await.unwrap();
    assert_eq!(honest.call("get-online-readers", Value::Null).await["ok"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn handshakes_are_metered_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("HANDSHAKES_PER_IP_PER_MINUTE", "3")];
    let server = alice_shell::start(settings(dir.path(), &vars)).await.unwrap();
    // A bad token costs the budget as much as a good one.
    let bad = Client::connect(server.addr, "not-a-token").await;
    assert_eq!(bad.err().as_deref(), Some("Invalid authentication token"));
    let mut kept = vec![];
    for i in 0..2 {
        kept.push(Client::connect(server.addr, &token(&format!("ip-{i}"), "reader")).await.unwrap());
    }
    // Another user, the same address.
    let refused = Client::connect(server.addr, &token("ip-new", "reader")).await;
    assert_eq!(refused.err().as_deref(), Some(REFUSED));
    // Without a trusted proxy, X-Forwarded-For is anyone's to write, and is not read.
    let forwarded = [("x-forwarded-for", "203.0.113.9")];
    let refused = Client::connect_with_headers(server.addr, &token("ip-new", "reader"), &forwarded).await;
    assert_eq!(refused.err().as_deref(), Some(REFUSED));
    server.shutdown().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("HANDSHAKES_PER_IP_PER_MINUTE", "2"), ("TRUSTED_PROXIES", "127.0.0.0/8")];
    let server = alice_shell::start(settings(dir.path(), &vars)).await.unwrap();
    let connect = |user: &'static str, client: &'static str| {
        let headers = [("x-forwarded-for", client)];
        async move { Client::connect_with_headers(server.addr, &token(user, "reader"), &headers).await }
    };
    let mut kept = vec![];
    kept.push(connect("fw-1", "203.0.113.1").await.unwrap());
    kept.push(connect("fw-2", "203.0.113.1").await.unwrap());
    assert_eq!(connect("fw-3", "203.0.113.1").await.err().as_deref(), Some(REFUSED));
    kept.push(connect("fw-3", "203.0.113.2").await.unwrap());
    // A hop the client wrote itself, left of the proxy's, changes nothing.
    assert_eq!(connect("fw-4", "198.51.100.7, 203.0.113.1").await.err().as_deref(), Some(REFUSED));
    server.shutdown().await;
}
