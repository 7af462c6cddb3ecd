//! The floor: the least a server must do to carry the load generator's load over Socket.IO v4
//! websockets, so that Alice's figures can be read against what just pushing these frames through
//! tungstenite and the kernel costs on this machine. tokio and tungstenite only: no auth, no
//! store, no log, no presence. A `reader-event` is answered, and its `reader-activity` frame is
//! encoded once and written once to each subscribed socket.
//!
//! It speaks only what the load generator uses: Engine.IO's open packet and pings, Socket.IO's
//! CONNECT, `subscribe-consultant` and `reader-event`. Anything else is ignored.
//!
//! `REALTIME_PORT=3101 floor` (the port defaults to 3001, as Alice's does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const OPEN: &str =
    r#"0{"sid":"floor","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
const PING_EVERY: Duration = Duration::from_secs(25);
const READ_BUFFER: usize = 4 * 1024;

/// The sockets subscribed to every event, by connection number.
#[derive(Default)]
struct Hub {
    next: AtomicU64,
    events: AtomicU64,
    subscribed: Mutex<Vec<(u64, mpsc::UnboundedSender<Utf8Bytes>)>>,
}

impl Hub {
    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, mpsc::UnboundedSender<Utf8Bytes>)>> {
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Deserialize)]
struct ReaderEvent<'a> {
    #[serde(rename = "eventType")]
    event_type: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("REALTIME_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3001);
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("the port is free");
    let hub = Arc::new(Hub::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(serve(stream, hub.clone()));
    }
}

/// One connection: a task reading it (this one) and a task writing it, one write per frame.
async fn serve(stream: TcpStream, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    // tungstenite reserves 128 KiB to read into by default; these frames are small.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else { return };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(Message::Text(frame)).await.is_err() {
                break;
            }
        }
    });
    let id = hub.next.fetch_add(1, Ordering::Relaxed);
    let _ = tx.send(Utf8Bytes::from_static(OPEN));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Text(text))) => packet(&text, id, &tx, &hub),
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = ping.tick() => {
                let _ = tx.send(Utf8Bytes::from_static("2"));
            }
        }
    }
    hub.subscribers().retain(|(n, _)| *n != id);
    writer.abort();
}

/// One Engine.IO packet from connection `id`.
fn packet(text: &str, id: u64, tx: &mpsc::UnboundedSender<Utf8Bytes>, hub: &Hub) {
    if text.starts_with("40") {
        let _ = tx.send(format!(r#"40{{"sid":"s{id}"}}"#).into());
    } else if let Some(body) = text.strip_prefix(r#"42["reader-event","#) {
        reader_event(body.strip_suffix(']').unwrap_or(body), id, tx, hub);
    } else if text.starts_with(r#"42["subscribe-consultant""#) {
        hub.subscribers().push((id, tx.clone()));
        let _ = tx.send(Utf8Bytes::from_static(r#"42["subscribe-consultant-success",{"eventTypes":[]}]"#));
    }
}

/// A reader's event: its receipt to the sender, then one frame, encoded once, to every subscriber.
fn reader_event(body: &str, id: u64, tx: &mpsc::UnboundedSender<Utf8Bytes>, hub: &Hub) {
    let Ok(event) = serde_json::from_str::<ReaderEvent>(body) else { return };
    let n = hub.events.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let event_type = serde_json::to_string(&event.event_type).unwrap_or_default();
    let data = event.data.map_or("null", RawValue::get);
    let frame: Utf8Bytes = format!(
        r#"42["reader-activity",{{"id":"e{n}","userId":"r{id}","eventType":{event_type},"data":{data},"timestamp":{millis},"sessionId":null}}]"#
    )
    .into();
    let receipt = format!(
        r#"42["reader-event-received",{{"message":"Event received and queued","eventId":"e{n}","duplicate":false}}]"#
    );
    let _ = tx.send(receipt.into());
    for (_, subscriber) in hub.subscribers().iter() {
        let _ = subscriber.send(frame.clone());
    }
}
