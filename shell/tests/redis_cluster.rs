//! Several `alice-realtime` processes over a redis-server of the test's own, sharing one
//! PostgreSQL database: cross-node delivery exactly once, presence across nodes, a killed node's
//! readers and pending events, Redis killed and restarted, Redis paused, Redis out of memory, a
//! password, two processes sharing one `NODE_ID`.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::{json, Value};

async fn online(c: &mut Client) -> Vec<(String, u64)> {
    let list = c.call("get-online-readers", Value::Null).await;
    list["readers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["userId"].as_str().unwrap().to_owned(), r["connections"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_once_share_presence_and_survive_a_killed_node() {
    let Some(db) = TestDb::create().await else { return };
    let Some(redis) = RedisServer::start(None) else { return db.drop_db().await };
    let url = redis.url();
    let vars = node_vars(&url, &db.url);
    let mut a = Node::start("node-a", &vars);
    let b = Node::start("node-b", &vars);
    let c = Node::start("node-c", &vars);

    let mut watchers = Vec::new();
    for (i, node) in [&a, &b, &c].iter().enumerate() {
        watchers.push(subscribed(node.addr, &format!("c{i}")).await);
    }
    let mut reader = Client::connect(a.addr, &token("r1", "reader")).await.unwrap();
    let mut tab_on_b = Client::connect(b.addr, &token("r1", "reader")).await.unwrap();
    let mut stranger_on_c = Client::connect(c.addr, &token("r2", "reader")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Presence across nodes: two tabs on two nodes are one reader.
    let list = online(&mut watchers[2]).await;
    assert!(list.contains(&("r1".to_string(), 2)), "{list:?}");
    assert!(list.contains(&("r2".to_string(), 1)), "{list:?}");

    let mut sent = Vec::new();
    for i in 0..20 {
        let ack = reader.call("reader-event", json!({"eventType": "PAGE_TURN", "data": {"i": i}})).await;
        sent.push(ack["eventId"].as_str().unwrap().to_owned());
    }
    sent.sort();
    for (i, w) in watchers.iter_mut().enumerate() {
        let got = collect_activity(w, 20, Duration::from_secs(10)).await;
        assert_eq!(ids(&got), sent, "consultant on node {i}: every event exactly once");
    }
    assert_eq!(ids(&collect_activity(&mut tab_on_b, 20, Duration::from_secs(10)).await), sent);
    assert!(collect_activity(&mut stranger_on_c, 0, Duration::from_millis(100)).await.is_empty());
    assert_eq!(wait_stored(&db, 20, Duration::from_secs(10)).await, sent, "stored exactly once");

    // Kill node A: its reader's tab there vanishes from everyone's list within the TTL.
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = online(&mut watchers[2]).await;
        if list.contains(&("r1".to_string(), 1)) {
            break;
        }
        assert!(Instant::now() < deadline, "node A's tab still listed: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((b, c));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_nothing() {
    let Some(db) = TestDb::create().await else { return };
    let Some(mut redis) = RedisServer::start(None) else { return db.drop_db().await };
    let url = redis.url();
    let vars = node_vars(&url, &db.url);
    let a = Node::start("node-a", &vars);
    let b = Node::start("node-b", &vars);
    let mut on_a = subscribed(a.addr, "ca").await;
    let mut on_b = subscribed(b.addr, "cb").await;
    let mut reader = Client::connect(a.addr, &token("r1", "reader")).await.unwrap();
    // Receipts wait until Redis holds the event, so everything is sent before any is collected:
    // the events sent while Redis is down are acknowledged once it is back.
    let mut requests = Vec::new();
    for phase in 0..3 {
        if phase == 1 {
            redis.kill();
        }
        if phase == 2 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            redis.restart();
        }
        for i in 0..15 {
            let payload = json!({"eventType": "T", "data": {"phase": phase, "i": i}});
            requests.push(reader.request("reader-event", payload).await);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    let mut sent = Vec::new();
    let mut refused = 0;
    for id in requests {
        let ack = reader.ack(id).await;
        match ack["ok"].as_bool() {
            Some(true) => sent.push(ack["eventId"].as_str().unwrap().to_owned()),
            _ => {
                assert_eq!(ack["error"]["code"], "UNAVAILABLE", "{ack}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 0, "the outbox had room for everything");
    sent.sort();
    assert_eq!(ids(&collect_activity(&mut on_a, sent.len(), Duration::from_secs(15)).await), sent);
    assert_eq!(ids(&collect_activity(&mut on_b, sent.len(), Duration::from_secs(15)).await), sent);
    assert_eq!(wait_stored(&db, sent.len(), Duration::from_secs(15)).await, sent);
    drop((a, b));
    db.drop_db().await;
}

/// Two nodes over `redis`, a consultant subscribed on the second and a reader on the first.
async fn two_nodes_watched(redis: &RedisServer, db: &TestDb) -> (Node, Node, Client, Client) {
    let url = redis.url();
    let vars = node_vars(&url, &db.url);
    let a = Node::start("node-a", &vars);
    let b = Node::start("node-b", &vars);
    let on_b = subscribed(b.addr, "cb").await;
    let reader = Client::connect(a.addr, &token("r1", "reader")).await.unwrap();
    (a, b, on_b, reader)
}

/// Waits for the receipts of `requests`, each `ok`: the events' ids, sorted.
async fn receipts(reader: &mut Client, requests: Vec<u64>) -> Vec<String> {
    let mut sent = Vec::new();
    for id in requests {
        let ack = reader.ack(id).await;
        assert_eq!(ack["ok"], true, "{ack}");
        sent.push(ack["eventId"].as_str().unwrap().to_owned());
    }
    sent.sort();
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_then_resumed_delivers_everything() {
    let Some(db) = TestDb::create().await else { return };
    let Some(redis) = RedisServer::start(None) else { return db.drop_db().await };
    let (a, b, mut on_b, mut reader) = two_nodes_watched(&redis, &db).await;
    // Receipts wait until Redis holds the event: send everything, then collect the receipts.
    let mut requests = Vec::new();
    for i in 0..30 {
        if i == 10 {
            redis.pause();
        }
        if i == 20 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            redis.resume();
        }
        requests.push(reader.request("reader-event", json!({"eventType": "T", "data": {"i": i}})).await);
    }
    let sent = receipts(&mut reader, requests).await;
    assert_eq!(ids(&collect_activity(&mut on_b, 30, Duration::from_secs(20)).await), sent);
    assert_eq!(wait_stored(&db, 30, Duration::from_secs(20)).await, sent);
    let (_, health) = http(b.addr, "GET", "/health", None).await;
    assert_eq!(health["checks"]["redis"]["status"], "ok", "{health}");
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_acknowledges_nothing_until_it_has_room_then_loses_nothing() {
    let Some(db) = TestDb::create().await else { return };
    let Some(redis) = RedisServer::start(None) else { return db.drop_db().await };
    let (a, b, mut on_b, mut reader) = two_nodes_watched(&redis, &db).await;
    let mut requests = Vec::new();
    for i in 0..10 {
        requests.push(reader.request("reader-event", json!({"eventType": "T", "data": {"i": i}})).await);
    }
    let mut sent = receipts(&mut reader, requests).await;

    // Redis at its memory limit with noeviction refuses every command that adds data.
    let client = redis::Client::open(redis.url().as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let config = |name: &str, value: &str| redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone();
    let _: () = config("maxmemory-policy", "noeviction").query_async(&mut admin).await.unwrap();
    let _: () = config("maxmemory", "1").query_async(&mut admin).await.unwrap();
    let probe: redis::RedisResult<String> =
        redis::cmd("XADD").arg("probe").arg("*").arg("f").arg("v").query_async(&mut admin).await;
    assert_eq!(probe.unwrap_err().code(), Some("OOM"), "Redis refuses writes");
    let mut requests = Vec::new();
    for i in 10..20 {
        requests.push(reader.request("reader-event", json!({"eventType": "T", "data": {"i": i}})).await);
    }
    let early = tokio::time::timeout(Duration::from_millis(1500), reader.try_ack(requests[0])).await;
    assert!(early.is_err(), "acknowledged while Redis held nothing: {early:?}");
    assert!(!requests.iter().any(|&id| reader.answered(id)), "acknowledged while Redis held nothing");

    let _: () = config("maxmemory", "0").query_async(&mut admin).await.unwrap();
    sent.extend(receipts(&mut reader, requests).await);
    sent.sort();
    assert_eq!(ids(&collect_activity(&mut on_b, 20, Duration::from_secs(20)).await), sent, "each once");
    assert_eq!(wait_stored(&db, 20, Duration::from_secs(20)).await, sent);
    let (_, metrics) = http(a.addr, "GET", "/metrics", None).await;
    let failures = metrics.as_str().unwrap_or_default().lines().find_map(|l| {
        l.strip_prefix("alice_log_append_failures_total ").and_then(|n| n.trim().parse::<f64>().ok())
    });
    assert!(failures.is_some_and(|n| n > 0.0), "the appends met the refusals: {failures:?}");
    drop((a, b));
    db.drop_db().await;
}

/// XPENDING's summary: count, lowest id, highest id, and (consumer, count) pairs.
type PendingSummary = (u64, Option<String>, Option<String>, Vec<(String, String)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_unstored_events_are_claimed_by_another() {
    let Some(db) = TestDb::create().await else { return };
    let Some(redis) = RedisServer::start(None) else { return db.drop_db().await };
    let url = redis.url();
    // Node A reaches the database through a proxy that is cut: its consumer holds what it reads.
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let db_via_proxy = db.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    let mut a_vars = node_vars(&url, &db_via_proxy);
    a_vars.push(("DATABASE_MIGRATE", "true"));
    let mut a = Node::start("node-a", &a_vars);
    proxy.cut();
    let mut reader = Client::connect(a.addr, &token("r1", "reader")).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..10 {
        let ack = reader.call("reader-event", json!({"eventType": "T", "data": {"i": i}})).await;
        sent.push(ack["eventId"].as_str().unwrap().to_owned());
    }
    sent.sort();
    // Wait until A's consumer has taken them (pending under consumer node-a).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending: PendingSummary = redis::cmd("XPENDING")
            .arg("alice:log")
            .arg("alice-store")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        // A's consumer takes what its store can hold (here: one entry at a time, since the store
        // keeps failing); the rest wait in the log for any consumer.
        if pending.0 >= 1 {
            assert_eq!(pending.3.len(), 1, "{pending:?}");
            assert_eq!(pending.3[0].0, "node-a");
            break;
        }
        assert!(Instant::now() < deadline, "node A never took the events: {pending:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill();
    let b = Node::start("node-b", &node_vars(&url, &db.url));
    assert_eq!(wait_stored(&db, 10, Duration::from_secs(15)).await, sent, "claimed and stored exactly once");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending: PendingSummary =
            redis::cmd("XPENDING").arg("alice:log").arg("alice-store").query_async(&mut conn).await.unwrap();
        if pending.0 == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "stored events stay unacknowledged: {pending:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(b);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis() {
    let Some(db) = TestDb::create().await else { return };
    let Some(redis) = RedisServer::start(Some("s3cret-pass")) else { return db.drop_db().await };
    let url = redis.url();
    let a = Node::start("node-a", &node_vars(&url, &db.url));
    let b = Node::start("node-b", &node_vars(&url, &db.url));
    let mut on_b = subscribed(b.addr, "cb").await;
    let mut reader = Client::connect(a.addr, &token("r1", "reader")).await.unwrap();
    let ack = reader.call("reader-event", json!({"eventType": "T"})).await;
    let got = collect_activity(&mut on_b, 1, Duration::from_secs(10)).await;
    assert_eq!(ids(&got), vec![ack["eventId"].as_str().unwrap().to_owned()]);

    let wrong = format!("redis://:wrong@127.0.0.1:{}", redis.port);
    let c = Node::start("node-c", &node_vars(&wrong, &db.url));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, health) = http(c.addr, "GET", "/health", None).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["redis"]["status"], "down");
    drop((a, b, c));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bus_is_noticed_and_repaired() {
    let Some(db) = TestDb::create().await else { return };
    let Some(redis) = RedisServer::start(None) else { return db.drop_db().await };
    let url = redis.url();
    let a = Node::start("node-a", &node_vars(&url, &db.url));
    let b = Node::start("node-b", &node_vars(&url, &db.url));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Writes are held back while reads are still answered: each node's subscription stays up but
    // hears nothing, not even its own heartbeats.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () =
        redis::cmd("CLIENT").arg("PAUSE").arg(4_000).arg("WRITE").query_async(&mut conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = http(b.addr, "GET", "/metrics", None).await;
        let repairs = metrics
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("alice_bus_repairs_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if repairs >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the silent subscription was never repaired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // After the pause, delivery across nodes works again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut on_b = subscribed(b.addr, "cb").await;
    let mut reader = Client::connect(a.addr, &token("r1", "reader")).await.unwrap();
    let ack = reader.call("reader-event", json!({"eventType": "T"})).await;
    let got = collect_activity(&mut on_b, 1, Duration::from_secs(10)).await;
    assert_eq!(ids(&got), vec![ack["eventId"].as_str().unwrap().to_owned()]);
    drop((a, b));
    db.drop_db().await;
}

/// A counter of `node`'s `/metrics`, 0 while absent.
async fn counter(node: &Node, name: &str) -> u64 {
    let (_, metrics) = http(node.addr, "GET", "/metrics", None).await;
    let prefix = format!("{name} ");
    metrics.as_str().unwrap().lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_with_one_node_id_are_told_apart_and_reported() {
    let Some(redis) = RedisServer::start(None) else { return };
    let url = redis.url();
    // Each on its own embedded file: nothing but Redis in common, and the one NODE_ID.
    let vars = [("REDIS_URL", url.as_str()), ("PRESENCE_TTL_MS", "1500")];
    let a = Node::start("node-twin", &vars);
    let b = Node::start("node-twin", &vars);
    let c = Node::start("node-other", &vars);
    let deadline = Instant::now() + Duration::from_secs(15);
    while counter(&a, "alice_node_id_shared_total").await == 0
        || counter(&b, "alice_node_id_shared_total").await == 0
    {
        assert!(Instant::now() < deadline, "neither twin noticed the other's heartbeats");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A node with an id of its own heard both twins' heartbeats meanwhile, and reports nothing.
    assert_eq!(counter(&c, "alice_node_id_shared_total").await, 0);
    drop((a, b, c));
}
