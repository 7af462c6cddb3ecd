//! Events prepared once and sent to many sockets arrive exactly as `emit` would send them.
mod utils;

use engineioxide::Packet::*;
use serde_json::json;
use socketioxide::{SocketIo, extract::SocketRef};
use tokio::sync::mpsc;

/// The next message packet a dummy client receives, after its CONNECT reply.
async fn next_message(srx: &mut mpsc::Receiver<engineioxide::Packet>) -> String {
    loop {
        let p = tokio::time::timeout(std::time::Duration::from_millis(200), srx.recv())
            .await
            .expect("a packet")
            .expect("an open channel");
        match p {
            Message(s) if !s.starts_with('0') => return s.to_string(),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_prepared_event_reaches_every_socket_as_emit_sends_it() {
    let (_svc, io) = SocketIo::new_svc();
    let (tx, mut rx) = mpsc::channel::<SocketRef>(4);
    io.ns("/", async move |s: SocketRef| {
        tx.send(s).await.unwrap();
    });
    let (_a_tx, mut a_rx) = io.new_dummy_sock("/", ()).await;
    let (_b_tx, mut b_rx) = io.new_dummy_sock("/", ()).await;
    let a = rx.recv().await.unwrap();
    let b = rx.recv().await.unwrap();

    let data = (json!({"id": 7, "text": "héllo \"there\""}), "1700000000000-3");
    let prepared = a.prepare_event("activity", &data).unwrap();
    a.emit_prepared(&prepared).unwrap();
    b.emit_prepared(&prepared).unwrap();
    b.emit("activity", &data).unwrap();

    let expected = r#"2["activity",{"id":7,"text":"héllo \"there\""},"1700000000000-3"]"#;
    assert_eq!(next_message(&mut a_rx).await, expected);
    assert_eq!(next_message(&mut b_rx).await, expected);
    assert_eq!(next_message(&mut b_rx).await, expected, "emit encodes the same packet");
}

#[tokio::test]
async fn a_prepared_event_sent_on_another_namespace_is_framed_for_it() {
    let (_svc, io) = SocketIo::new_svc();
    let (tx, mut rx) = mpsc::channel::<SocketRef>(4);
    let tx2 = tx.clone();
    io.ns("/", async move |s: SocketRef| {
        tx.send(s).await.unwrap();
    });
    io.ns("/admin", async move |s: SocketRef| {
        tx2.send(s).await.unwrap();
    });
    let (_r_tx, _r_rx) = io.new_dummy_sock("/", ()).await;
    let (_a_tx, mut a_rx) = io.new_dummy_sock("/admin", ()).await;
    let root = rx.recv().await.unwrap();
    let admin = rx.recv().await.unwrap();

    let prepared = root.prepare_event("ping", &json!([1, 2])).unwrap();
    admin.emit_prepared(&prepared).unwrap();
    assert_eq!(next_message(&mut a_rx).await, r#"2/admin,["ping",[1,2]]"#);
}

#[tokio::test]
async fn a_closed_socket_refuses_a_prepared_event() {
    let (_svc, io) = SocketIo::new_svc();
    let (tx, mut rx) = mpsc::channel::<SocketRef>(4);
    io.ns("/", async move |s: SocketRef| {
        tx.send(s).await.unwrap();
    });
    let (_a_tx, _a_rx) = io.new_dummy_sock("/", ()).await;
    let a = rx.recv().await.unwrap();
    let prepared = a.prepare_event("ping", &()).unwrap();
    a.clone().disconnect().unwrap();
    assert!(matches!(
        a.emit_prepared(&prepared),
        Err(socketioxide::SocketError::Closed)
    ));
}
