//! A consultant that stops reading is disconnected once its bounded send queue and the backlog
//! behind it are full, rather than growing the server's memory; everyone else keeps receiving.
//! A long replay waits for its own socket alone.

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

/// A dashboard that resumes far back and does not read holds up no one: while its replay waits
/// for its socket, the reader's events are acknowledged and delivered live to another dashboard.
/// When it reads at last, it gets the replay and then the live events, each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_waits_for_its_socket_holds_up_no_one() {
    const REPLAYED: u64 = 4_000;
    const LIVE: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let vars = [("READER_EVENT_RATE", "100000"), ("READER_EVENT_BURST", "100000")];
    let server = alice_shell::start(settings(dir.path(), &vars)).await.unwrap();
    let addr = server.addr;
    let mut reader = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    // Far more than the kernel's buffers hold, so the replay really waits for the socket.
    let page = "x".repeat(2_000);
    let event = |i: u64| json!({"eventType": "BIG", "data": {"i": i, "text": page}});
    let since = reader.call("reader-event", event(0)).await["eventId"].as_str().unwrap().to_owned();
    for i in 1..REPLAYED {
        reader.emit("reader-event", event(i)).await;
    }
    assert_eq!(reader.call("reader-event", event(REPLAYED)).await["ok"], true);

    let mut healthy = Client::connect(addr, &token("fast", "consultant")).await.unwrap();
    assert_eq!(healthy.call("subscribe-consultant", json!({"consultantId": "fast"})).await["ok"], true);
    let mut slow = Client::connect(addr, &token("slow", "consultant")).await.unwrap();
    let resume = slow.request("subscribe-consultant", json!({"consultantId": "slow", "since": since})).await;

    // The slow dashboard reads nothing now; everyone else carries on.
    for i in REPLAYED + 1..=REPLAYED + LIVE {
        assert_eq!(reader.call("reader-event", event(i)).await["ok"], true, "acknowledged");
        let live = healthy.next("reader-activity").await.expect("delivered live");
        assert_eq!(live["data"]["i"], i);
    }

    // The replay holds the 4,000 missed events and whatever live ones were accepted while the
    // store was read (on a busy machine the read can outlast some of them); the rest arrive live.
    let reply = slow.ack(resume).await;
    assert_eq!(reply["resumed"].as_bool(), Some(true));
    let replayed = reply["replayed"].as_u64().unwrap();
    assert!((REPLAYED..=REPLAYED + LIVE).contains(&replayed), "replayed {replayed}");
    for i in 1..=REPLAYED + LIVE {
        let got = slow.next("reader-activity").await.expect("the slow dashboard stays connected");
        assert_eq!(got["data"]["i"], i, "the replay, then the live events, each once, in order");
    }
    server.shutdown().await;
}
