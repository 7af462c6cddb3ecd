//! A consultant that stops reading is disconnected once its bounded send queue and the backlog
//! behind it are full, rather than growing the server's memory; everyone else keeps receiving.

mod common;

use common::*;
use serde_json::json;

const EVENTS: u64 = 16_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("READER_EVENT_RATE", "100000"), ("READER_EVENT_BURST", "100000")];
    let server = alice_shell::start(settings(dir.path(), &vars)).await.unwrap();
    let addr = server.addr;

    // The stalled consultant subscribes, then never reads again.
    let mut stalled = Client::connect(addr, &token("slow", "consultant")).await.unwrap();
    assert_eq!(stalled.call("subscribe-consultant", json!({"consultantId": "slow"})).await["ok"], true);
    let mut healthy = Client::connect(addr, &token("fast", "consultant")).await.unwrap();
    assert_eq!(healthy.call("subscribe-consultant", json!({"consultantId": "fast"})).await["ok"], true);

    // The healthy consultant reads everything, on its own task.
    let healthy = tokio::spawn(async move {
        let mut received = 0u32;
        loop {
            let v = healthy.next("reader-activity").await.expect("the healthy consultant stays connected");
            received += 1;
            if v["data"]["i"].as_u64() == Some(EVENTS - 1) {
                return received;
            }
        }
    });

    // Enough events to fill the kernel's buffers, the stalled socket's queue (1,024) and its
    // backlog (10,240).
    let mut reader = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    let page = "x".repeat(2_000);
    for i in 0..EVENTS {
        reader.emit("reader-event", json!({"eventType": "BIG", "data": {"i": i, "text": page}})).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, metrics) = http(addr, "GET", "/metrics", None).await;
        let text = metrics.as_str().unwrap().to_owned();
        if text.contains("alice_slow_consumers_disconnected_total 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the stalled socket was never disconnected:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The healthy consultant received every event, in order, to the last.
    let received = tokio::time::timeout(std::time::Duration::from_secs(30), healthy).await.unwrap().unwrap();
    assert_eq!(u64::from(received), EVENTS);
    drop(stalled);
    server.shutdown().await;
}
