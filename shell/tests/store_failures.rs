//! The store failing: accepted events wait and are stored exactly once when it returns; a poison
//! event is dead-lettered without blocking the rest and stored after a replay, kept across a
//! restart and counted by a graceful stop; a full queue
//! refuses with UNAVAILABLE and `/health` says so; a connect storm writes reader sessions one at a
//! time.

mod common;

use std::sync::atomic::Ordering;

use alice_shell::store::EventStore;
use common::*;
use serde_json::json;

#[tokio::test]
async fn an_outage_loses_nothing_and_stores_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlakyStore::open(dir.path()).await;
    let vars = [("STORE_RETRY_BASE_MS", "20"), ("STORE_RETRY_MAX_MS", "100"), ("STORE_MAX_ATTEMPTS", "1000")];
    let server = alice_shell::start_with_store(settings(dir.path(), &vars), store.clone()).await.unwrap();
    let addr = server.addr;
    let mut r = Client::connect(addr, &token("r1", "reader")).await.unwrap();

    store.down.store(true, Ordering::SeqCst);
    let mut ids = Vec::new();
    for i in 0..30 {
        let ack = r.call("reader-event", json!({"eventType": "OUTAGE", "data": {"i": i}})).await;
        assert_eq!(ack["ok"], true, "accepted while the store is down: {ack}");
        ids.push(ack["eventId"].as_str().unwrap().to_owned());
    }
    let (status, health) = http(addr, "GET", "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")));
    assert_eq!(health["checks"]["store"]["status"], "down");
    let stats = wait_stats(addr, |s| s["queueStats"]["queueSize"] == 30).await;
    assert_eq!(stats["queueStats"]["dlqSize"], 0);

    store.down.store(false, Ordering::SeqCst);
    wait_stats(addr, |s| s["queueStats"]["queueSize"] == 0).await;
    let q = alice_core::HistoryQuery {
        limit: 200,
        user_id: Some("r1".into()),
        since: None,
        event_types: vec![],
        readers: None,
    };
    let (stored, more) = store.recent(&q).await.unwrap();
    let mut stored: Vec<String> = stored.iter().map(|e| e.id.to_string()).collect();
    stored.reverse();
    assert!(!more);
    assert_eq!(stored, ids, "every accepted event, exactly once");
    assert_eq!(http(addr, "GET", "/health", None).await.1["status"], "ok");
    server.shutdown().await;
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_alone_and_replayed_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlakyStore::open(dir.path()).await;
    *store.poison_type.lock().unwrap() = Some("POISON".into());
    let vars = [("STORE_RETRY_BASE_MS", "10"), ("STORE_RETRY_MAX_MS", "20"), ("STORE_MAX_ATTEMPTS", "3")];
    let server = alice_shell::start_with_store(settings(dir.path(), &vars), store.clone()).await.unwrap();
    let addr = server.addr;
    let mut r = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    for t in ["GOOD", "POISON", "GOOD"] {
        assert_eq!(r.call("reader-event", json!({"eventType": t})).await["ok"], true);
    }
    let stats =
        wait_stats(addr, |s| s["queueStats"]["dlqSize"] == 1 && s["queueStats"]["queueSize"] == 0).await;
    assert_eq!(stats["queueStats"]["dlqSize"], 1);
    let good = alice_core::HistoryQuery {
        limit: 10,
        user_id: None,
        since: None,
        event_types: vec!["GOOD".into()],
        readers: None,
    };
    assert_eq!(store.recent(&good).await.unwrap().0.len(), 2, "the good events were stored");
    let (_, metrics) = http(addr, "GET", "/metrics", None).await;
    assert!(metrics.as_str().unwrap().contains("alice_dlq_size 1"));

    *store.poison_type.lock().unwrap() = None;
    let (status, body) = http(addr, "POST", "/admin/dlq/replay", Some(&token("a", "admin"))).await;
    assert_eq!((status, body), (200, json!({"replayed": 1})));
    wait_stats(addr, |s| s["queueStats"]["dlqSize"] == 0 && s["queueStats"]["queueSize"] == 0).await;
    let poison = alice_core::HistoryQuery {
        limit: 10,
        user_id: None,
        since: None,
        event_types: vec!["POISON".into()],
        readers: None,
    };
    assert_eq!(store.recent(&poison).await.unwrap().0.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn dead_letters_are_counted_by_a_graceful_stop_and_kept_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("STORE_RETRY_BASE_MS", "10"), ("STORE_RETRY_MAX_MS", "20"), ("STORE_MAX_ATTEMPTS", "2")];
    let store = FlakyStore::open(dir.path()).await;
    *store.poison_type.lock().unwrap() = Some("POISON".into());
    let server = alice_shell::start_with_store(settings(dir.path(), &vars), store.clone()).await.unwrap();
    let mut r = Client::connect(server.addr, &token("r1", "reader")).await.unwrap();
    for t in ["POISON", "GOOD", "POISON"] {
        assert_eq!(r.call("reader-event", json!({"eventType": t})).await["ok"], true);
    }
    wait_stats(server.addr, |s| s["queueStats"]["dlqSize"] == 2 && s["queueStats"]["queueSize"] == 0).await;
    drop(r);
    let stopped = server.shutdown().await;
    assert_eq!(stopped, alice_shell::Stopped { unstored: 0, dead_letters: 2 });
    drop(store);

    // The next start finds them, and a replay stores them once the store takes them.
    let store = FlakyStore::open(dir.path()).await;
    let server = alice_shell::start_with_store(settings(dir.path(), &vars), store.clone()).await.unwrap();
    wait_stats(server.addr, |s| s["queueStats"]["dlqSize"] == 2).await;
    let (status, body) = http(server.addr, "POST", "/admin/dlq/replay", Some(&token("a", "admin"))).await;
    assert_eq!((status, body), (200, json!({"replayed": 2})));
    wait_stats(server.addr, |s| s["queueStats"]["dlqSize"] == 0 && s["queueStats"]["queueSize"] == 0).await;
    let poison = alice_core::HistoryQuery {
        limit: 10,
        user_id: None,
        since: None,
        event_types: vec!["POISON".into()],
        readers: None,
    };
    assert_eq!(store.recent(&poison).await.unwrap().0.len(), 2);
    assert_eq!(server.shutdown().await, alice_shell::Stopped::default());
}

#[tokio::test]
async fn a_full_queue_refuses_new_events_and_health_is_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlakyStore::open(dir.path()).await;
    let vars = [("EVENT_QUEUE_CAPACITY", "3"), ("STORE_MAX_ATTEMPTS", "1000"), ("STORE_RETRY_MAX_MS", "50")];
    let server = alice_shell::start_with_store(settings(dir.path(), &vars), store.clone()).await.unwrap();
    let addr = server.addr;
    let mut r = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(r.call("reader-event", json!({"eventType": "T"})).await["ok"], true);
    }
    let refused = r.call("reader-event", json!({"eventType": "T"})).await;
    assert_eq!(refused["error"]["code"], "UNAVAILABLE");
    let err = r.next("event-error").await.unwrap();
    assert_eq!(err["code"], "UNAVAILABLE");
    let (status, health) = http(addr, "GET", "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (503, Some("unhealthy")));
    store.down.store(false, Ordering::SeqCst);
    wait_stats(addr, |s| s["queueStats"]["queueSize"] == 0).await;
    assert_eq!(r.call("reader-event", json!({"eventType": "T"})).await["ok"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_flushes_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlakyStore::open(dir.path()).await;
    let vars = [("STORE_RETRY_BASE_MS", "10"), ("STORE_RETRY_MAX_MS", "20"), ("STORE_MAX_ATTEMPTS", "1000")];
    let server = alice_shell::start_with_store(settings(dir.path(), &vars), store.clone()).await.unwrap();
    let mut r = Client::connect(server.addr, &token("r1", "reader")).await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(r.call("reader-event", json!({"eventType": "T"})).await["ok"], true);
    }
    let store2 = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        store2.down.store(false, Ordering::SeqCst);
    });
    assert_eq!(server.shutdown().await.unstored, 0, "nothing left unstored");
    let q = alice_core::HistoryQuery {
        limit: 10,
        user_id: None,
        since: None,
        event_types: vec![],
        readers: None,
    };
    assert_eq!(store.recent(&q).await.unwrap().0.len(), 5);
}

#[tokio::test]
async fn a_connect_storm_writes_reader_sessions_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlakyStore::open(dir.path()).await;
    let server = alice_shell::start_with_store(settings(dir.path(), &[]), store.clone()).await.unwrap();
    let addr = server.addr;
    let tokens: Vec<String> = (0..40).map(|i| token(&format!("storm-{i}"), "reader")).collect();
    let connects = tokens.iter().map(|t| Client::connect(addr, t));
    let clients: Vec<Client> =
        futures_util::future::join_all(connects).await.into_iter().map(|c| c.unwrap()).collect();
    drop(clients);
    let writes = &store.session_writes;
    for _ in 0..1000 {
        if writes.done.load(Ordering::SeqCst) == 80 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(writes.done.load(Ordering::SeqCst), 80, "each open and close recorded");
    assert_eq!(writes.most.load(Ordering::SeqCst), 1, "never two at once");
    server.shutdown().await;
}
