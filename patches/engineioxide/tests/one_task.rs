//! A websocket session opened on its websocket runs on one task, its reader, writer and
//! heartbeat together, and each of the three still does its part; the session still closes when
//! that task fails, and a pong repeated answers no later ping.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use engineioxide::{
    Str,
    handler::EngineIoHandler,
    socket::{DisconnectReason, Socket},
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

mod fixture;

use fixture::{create_server, create_ws_connection};

/// Echoes every message and reports disconnections.
#[derive(Debug, Clone)]
struct Echo {
    disconnect_tx: mpsc::Sender<DisconnectReason>,
}

impl EngineIoHandler for Echo {
    type Data = ();

    fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
    fn on_disconnect(&self, _: Arc<Socket<()>>, reason: DisconnectReason) {
        self.disconnect_tx.try_send(reason).unwrap();
    }
    fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
        assert_ne!(msg, "panic", "the handler fails on this message");
        socket.emit(msg).unwrap();
    }
    fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<()>>) {
        socket.emit_binary(data).unwrap();
    }
}

async fn next_text(
    ws: &mut (impl StreamExt<Item = Result<Message, impl std::fmt::Debug>> + Unpin),
) -> String {
    let msg = tokio::time::timeout(Duration::from_millis(500), ws.next())
        .await
        .expect("a message in time")
        .expect("an open websocket")
        .unwrap();
    msg.into_text().unwrap().to_string()
}

/// Waits for the runtime to hold no more tasks than `before`: the session's have ended.
async fn tasks_back_to(before: usize) {
    let metrics = tokio::runtime::Handle::current().metrics();
    tokio::time::timeout(Duration::from_secs(1), async {
        while metrics.num_alive_tasks() > before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the session's task ends with the session");
}

#[tokio::test(flavor = "current_thread")]
async fn a_websocket_session_runs_on_one_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (disconnect_tx, mut disconnected) = mpsc::channel(10);
    let mut svc = create_server(Echo { disconnect_tx }).await;
    let before = metrics.num_alive_tasks();
    let mut ws = create_ws_connection(&mut svc).await;

    assert!(
        next_text(&mut ws).await.starts_with('0'),
        "the open packet comes first"
    );
    assert_eq!(
        metrics.num_alive_tasks() - before,
        1,
        "one task for the whole session"
    );

    // The reader hands the message to the handler and the writer sends its echo back.
    ws.send(Message::text("4hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "4hello");
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_millis(500), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::binary(vec![1, 2, 3]));

    // The heartbeat pings (the fixture's interval is 300 ms) and is content with a pong.
    for _ in 0..2 {
        assert_eq!(next_text(&mut ws).await, "2");
        ws.send(Message::text("3")).await.unwrap();
    }
    assert!(
        disconnected.try_recv().is_err(),
        "a client that answers stays"
    );

    // Unanswered, it closes the session (timeout 200 ms), and the task ends with it.
    assert_eq!(next_text(&mut ws).await, "2");
    let reason = tokio::time::timeout(Duration::from_secs(1), disconnected.recv())
        .await
        .unwrap();
    assert_eq!(reason, Some(DisconnectReason::HeartbeatTimeout));
    tasks_back_to(before).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_closing_ends_the_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (disconnect_tx, mut disconnected) = mpsc::channel(10);
    let mut svc = create_server(Echo { disconnect_tx }).await;
    let before = metrics.num_alive_tasks();
    let mut ws = create_ws_connection(&mut svc).await;
    next_text(&mut ws).await;

    ws.close(None).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(1), disconnected.recv())
        .await
        .unwrap();
    assert_eq!(reason, Some(DisconnectReason::TransportClose));
    tasks_back_to(before).await;
}

#[tokio::test]
async fn a_handler_that_panics_closes_the_session() {
    let (disconnect_tx, mut disconnected) = mpsc::channel(10);
    let mut svc = create_server(Echo { disconnect_tx }).await;
    let mut ws = create_ws_connection(&mut svc).await;
    next_text(&mut ws).await;

    // The reader's task unwinds; nothing is left to time the heartbeat out, so the session is
    // closed as it goes (a heartbeat timeout would be reported as such).
    ws.send(Message::text("4panic")).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(2), disconnected.recv())
        .await
        .expect("the session is closed");
    assert_eq!(reason, Some(DisconnectReason::TransportError));
}

#[tokio::test]
async fn a_repeated_pong_answers_no_later_ping() {
    let (disconnect_tx, mut disconnected) = mpsc::channel(10);
    let mut svc = create_server(Echo { disconnect_tx }).await;
    let mut ws = create_ws_connection(&mut svc).await;
    next_text(&mut ws).await;

    // The first ping gets two pongs; no later one gets any.
    assert_eq!(next_text(&mut ws).await, "2");
    ws.send(Message::text("3")).await.unwrap();
    ws.send(Message::text("3")).await.unwrap();
    let mut pings = 1;
    let reason = loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => pings += 1,
                // Reading on after a close would flush the client's close reply into the
                // fixture's stream, which the closed session no longer reads (a panic there).
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break disconnected.recv().await,
                Some(Ok(_)) => {}
            },
            reason = disconnected.recv() => break reason,
        }
    };
    assert_eq!(reason, Some(DisconnectReason::HeartbeatTimeout));
    assert_eq!(
        pings, 2,
        "the second ping went unanswered and closed the session"
    );
}
