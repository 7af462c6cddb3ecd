//! SIGKILL under load, on every deployment and of Redis: nothing acknowledged or shown to anyone is
//! lost, and nothing is stored or delivered twice; dashboards on two nodes see one order. Readers keep events in flight until their connection breaks; a
//! consultant records what it was shown; the process is killed mid-stream; then the store (after
//! a restart on the same `DATA_DIR` where the deployment has a local outbox) must hold every
//! acknowledged and every shown event, once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;
use serde_json::json;

const READERS: usize = 20;
/// Events each reader keeps in flight: 80 in all.
const IN_FLIGHT: usize = 4;

const FAST: [(&str, &str); 3] =
    [("READER_EVENT_RATE", "1000000"), ("READER_EVENT_BURST", "1000000"), ("HANDSHAKES_PER_MINUTE", "1000")];

/// What the clients saw: acknowledged event ids with their (reader, n), and what a consultant was
/// shown.
#[derive(Default)]
struct Seen {
    acked: BTreeMap<String, (String, u64)>,
    shown: Vec<String>,
}

/// Starts `readers` readers that send until their connection breaks (or, once `stop` is set, until
/// their outstanding events are answered), `IN_FLIGHT` outstanding each.
fn load_until(
    addr: SocketAddr,
    seen: &Arc<Mutex<Seen>>,
    tag: &str,
    readers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..readers)
        .map(|r| {
            let (seen, user, stop) = (seen.clone(), format!("{tag}-r{r}"), stop.clone());
            tokio::spawn(async move {
                let Ok(mut c) = Client::connect(addr, &token(&user, "reader")).await else { return };
                let mut outstanding = std::collections::VecDeque::new();
                for n in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        for (id, n) in outstanding {
                            let Some(ack) = c.try_ack(id).await else { return };
                            assert_eq!(ack["ok"], true, "{ack}");
                            let event = ack["eventId"].as_str().unwrap().to_owned();
                            seen.lock().unwrap().acked.insert(event, (user.clone(), n));
                        }
                        return;
                    }
                    let payload = json!({"eventType": "KILL_TEST", "data": {"reader": &user, "n": n}});
                    let Some(id) = c.try_request("reader-event", payload).await else { return };
                    outstanding.push_back((id, n));
                    if outstanding.len() < IN_FLIGHT {
                        continue;
                    }
                    let (id, n) = outstanding.pop_front().unwrap();
                    let Some(ack) = c.try_ack(id).await else { return };
                    assert_eq!(ack["ok"], true, "{ack}");
                    let event = ack["eventId"].as_str().unwrap().to_owned();
                    seen.lock().unwrap().acked.insert(event, (user.clone(), n));
                }
            })
        })
        .collect()
}

/// Readers that send until their connection breaks.
fn load(addr: SocketAddr, seen: &Arc<Mutex<Seen>>, tag: &str) -> Vec<tokio::task::JoinHandle<()>> {
    load_until(addr, seen, tag, READERS, &Arc::new(AtomicBool::new(false)))
}

/// A consultant that records every event it is shown until its connection breaks. It runs on a
/// thread and runtime of its own, away from the load's readers.
/// What it returns resolves when it has stopped.
async fn watch(addr: SocketAddr, seen: &Arc<Mutex<Seen>>, id: &str) -> tokio::sync::oneshot::Receiver<()> {
    watch_as(addr, seen, id, Reconnect::Never).await
}

/// What a watching consultant does when its connection breaks.
#[derive(Clone, Copy, PartialEq)]
enum Reconnect {
    /// Stops: its node was killed.
    Never,
    /// Connects again and resumes after the last event it was shown, as a dashboard does, until
    /// the node is gone. On a busy machine a dashboard can fall more than the server's bound
    /// behind the burst that follows a Redis outage and be closed as too slow
    /// (`alice_slow_consumers_disconnected_total`, about one run in a hundred with one core kept
    /// busy): the server's policy at work, after which a dashboard resumes, missing nothing and
    /// repeating nothing.
    Resuming,
}

async fn watch_as(
    addr: SocketAddr,
    seen: &Arc<Mutex<Seen>>,
    id: &str,
    reconnect: Reconnect,
) -> tokio::sync::oneshot::Receiver<()> {
    let (seen, id) = (seen.clone(), id.to_owned());
    let (ready, subscribed_now) = tokio::sync::oneshot::channel();
    let (stopped, watcher) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut c = subscribed(addr, &id).await;
            let _ = ready.send(());
            loop {
                while let Some(activity) = c.next("reader-activity").await {
                    seen.lock().unwrap().shown.push(activity["id"].as_str().unwrap().to_owned());
                }
                let since = seen.lock().unwrap().shown.last().cloned();
                let (Reconnect::Resuming, Some(since)) = (reconnect, since) else { break };
                let Ok(again) = Client::connect(addr, &token(&id, "consultant")).await else { break };
                c = again;
                let Some(asked) =
                    c.try_request("subscribe-consultant", json!({"consultantId": id, "since": since})).await
                else {
                    break;
                };
                let Some(reply) = c.try_ack(asked).await else { break };
                assert_eq!(reply["resumed"], true, "{id} resumes after {since}: {reply}");
                eprintln!("{id} resumed after {since}: {reply}");
            }
        });
        let _ = stopped.send(());
    });
    subscribed_now.await.expect("the dashboard subscribed");
    watcher
}

/// Waits for the readers to notice the kill (bounded: a reader's connection breaks at once).
async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
}

/// Rows as (id, reader, n).
type Rows = Vec<(String, String, i64)>;

/// Whether every acknowledged and every shown event is among `rows` (stored events may take a
/// claim interval to arrive after a node died holding them).
fn all_stored(rows: &Rows, acked: &BTreeMap<String, (String, u64)>, shown: &[String]) -> bool {
    let stored: BTreeSet<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    acked.keys().chain(shown).all(|id| stored.contains(id.as_str()))
}

/// Checks the stored rows against what clients saw: every acknowledged and every shown event is
/// stored, with the data it was acknowledged for; no reader's event is stored twice.
fn check(rows: &Rows, seen: &Seen, what: &str) {
    let stored: BTreeMap<&str, (&str, i64)> =
        rows.iter().map(|(id, r, n)| (id.as_str(), (r.as_str(), *n))).collect();
    assert_eq!(stored.len(), rows.len(), "{what}: an id stored twice");
    let sent: BTreeSet<(&str, i64)> = rows.iter().map(|(_, r, n)| (r.as_str(), *n)).collect();
    assert_eq!(sent.len(), rows.len(), "{what}: one reader event stored under two ids");
    assert!(seen.acked.len() > 100, "{what}: the load ran ({} acknowledged)", seen.acked.len());
    let missing: Vec<_> = seen.acked.keys().filter(|id| !stored.contains_key(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acknowledged events lost, first {}",
        missing.len(),
        seen.acked.len(),
        missing[0]
    );
    for (id, (reader, n)) in &seen.acked {
        assert_eq!(stored[id.as_str()], (reader.as_str(), *n as i64), "{what}: {id} stored with other data");
    }
    let unshown: Vec<_> = seen.shown.iter().filter(|id| !stored.contains_key(id.as_str())).collect();
    assert!(unshown.is_empty(), "{what}: {} shown events never stored, first {}", unshown.len(), unshown[0]);
}

async fn sqlite_rows(dir: &std::path::Path) -> Rows {
    let url = format!("sqlite://{}", dir.join("events.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open events.db");
    let rows = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT id, json_extract(event_data, '$.reader'), json_extract(event_data, '$.n') FROM real_time_events",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

async fn pg_rows(db: &TestDb) -> Rows {
    let pool = db.pool().await;
    let rows = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT id::text, event_data->>'reader', (event_data->>'n')::bigint FROM real_time_events",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_on_sqlite_killed_under_load_loses_nothing_acknowledged_or_shown() {
    for (round, after_ms) in [700u64, 1_200, 1_700].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let mut vars = FAST.to_vec();
        vars.push(("DATA_DIR", &data));
        let mut node = Node::start("kill-sqlite", &vars);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let watcher = watch(node.addr, &seen, "kill-c").await;
        let readers = load(node.addr, &seen, &format!("s{round}"));
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        node.kill();
        join(readers).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let rows = sqlite_rows(dir.path()).await;
        check(&rows, &seen, &format!("round {round}, killed after {after_ms} ms"));
        eprintln!(
            "round {round}: {} acknowledged ({:.0}/s over the {after_ms} ms before the kill), {} shown, {} stored",
            seen.acked.len(),
            seen.acked.len() as f64 * 1000.0 / after_ms as f64,
            seen.shown.len(),
            rows.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_on_postgres_killed_under_load_drains_its_outbox_after_a_restart() {
    let Some(db) = TestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut vars = FAST.to_vec();
    vars.extend([("DATA_DIR", data.as_str()), ("DATABASE_URL", db.url.as_str())]);
    let mut node = Node::start("kill-pg", &vars);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = watch(node.addr, &seen, "kill-c").await;
    let readers = load(node.addr, &seen, "pg");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    node.kill();
    join(readers).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    // The same DATA_DIR: the outbox's events go on to PostgreSQL.
    let restarted = Node::start("kill-pg", &vars);
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = pg_rows(&db).await;
        let (_, health) = http(restarted.addr, "GET", "/health", None).await;
        let drained = health["checks"]["store"]["queueSize"] == 0;
        if drained && all_stored(&rows, &seen.acked, &seen.shown) {
            break rows;
        }
        if Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    check(&rows, &seen, "after the restart");
    eprintln!("{} acknowledged, {} shown, {} stored", seen.acked.len(), seen.shown.len(), rows.len());
    drop(restarted);
    db.drop_db().await;
}

/// Two nodes over Redis: readers on A, a consultant on B; A is killed under load (with Redis
/// paused at that moment when `pause`). Every acknowledged event is stored once, and the consultant
/// on B receives each exactly once.
async fn cluster_node_killed(pause: bool) {
    let Some(db) = TestDb::create().await else { return };
    let Some(redis) = RedisServer::start(None) else { return db.drop_db().await };
    let url = redis.url();
    let mut vars = node_vars(&url, &db.url);
    vars.extend(FAST);
    let mut a = Node::start("node-a", &vars);
    let b = Node::start("node-b", &vars);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut on_b = subscribed(b.addr, "cb").await;
    let readers = load(a.addr, &seen, if pause { "cp" } else { "ck" });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    if pause {
        redis.pause();
    }
    a.kill();
    join(readers).await;
    if pause {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        redis.resume();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // B stores what A left unstored once it claims it (REDIS_CLAIM_IDLE_MS), and delivers it all.
    let got = collect_activity(&mut on_b, seen.acked.len(), Duration::from_secs(20)).await;
    let received = ids(&got);
    let unique: BTreeSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "the consultant on B got an event twice");
    let missed: Vec<_> = seen.acked.keys().filter(|id| !unique.contains(id)).collect();
    assert!(
        missed.is_empty(),
        "B's consultant missed {} of {} acknowledged events",
        missed.len(),
        seen.acked.len()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = pg_rows(&db).await;
        if all_stored(&rows, &seen.acked, &received) || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shown = Seen { acked: seen.acked.clone(), shown: received.clone() };
    check(&rows, &shown, if pause { "Redis paused at the kill" } else { "node killed" });
    eprintln!("{} acknowledged, {} delivered on B, {} stored", seen.acked.len(), received.len(), rows.len());
    drop(b);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_under_load_loses_nothing() {
    cluster_node_killed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_while_redis_is_paused_loses_nothing() {
    cluster_node_killed(true).await;
}

/// Redis is SIGKILLed for 5 s while readers on two nodes keep sending and a dashboard on each
/// node watches (resuming, should its node close it as too slow): every acknowledged event is
/// stored once and reaches both dashboards once, in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_for_five_seconds_under_load_loses_nothing_and_keeps_one_order() {
    let Some(db) = TestDb::create().await else { return };
    let Some(mut redis) = RedisServer::start(None) else { return db.drop_db().await };
    let url = redis.url();
    let mut vars = node_vars(&url, &db.url);
    vars.extend(FAST);
    // A dashboard closed as too slow resumes from memory, however far behind it was.
    vars.extend([("HISTORY_CAPACITY", "200000"), ("RESUME_MAX_EVENTS", "200000")]);
    let a = Node::start("rk-a", &vars);
    let b = Node::start("rk-b", &vars);
    let (seen, on_a, on_b) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    );
    let watchers = [
        watch_as(a.addr, &on_a, "ca", Reconnect::Resuming).await,
        watch_as(b.addr, &on_b, "cb", Reconnect::Resuming).await,
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = load_until(a.addr, &seen, "oa", READERS / 2, &stop);
    readers.extend(load_until(b.addr, &seen, "ob", READERS / 2, &stop));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::SeqCst);
    join(readers).await;
    let acked = std::mem::take(&mut seen.lock().unwrap().acked);
    // Both dashboards get everything acknowledged, then a little longer for anything extra.
    let deadline = Instant::now() + Duration::from_secs(20);
    while [&on_a, &on_b].iter().any(|w| w.lock().unwrap().shown.len() < acked.len())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (shown_a, shown_b) = (on_a.lock().unwrap().shown.clone(), on_b.lock().unwrap().shown.clone());
    for (name, shown) in [("A", &shown_a), ("B", &shown_b)] {
        let unique: BTreeSet<&String> = shown.iter().collect();
        assert_eq!(unique.len(), shown.len(), "the dashboard on {name} got an event twice");
        let missed = acked.keys().filter(|id| !unique.contains(id)).count();
        if missed > 0 {
            let mut by_origin: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
            for (reader, n) in acked.iter().filter(|(id, _)| !unique.contains(id)).map(|(_, v)| v) {
                let e = by_origin.entry(reader[..2].to_owned()).or_insert((0, u64::MAX, 0));
                e.0 += 1;
                e.1 = e.1.min(*n);
                e.2 = e.2.max(*n);
            }
            // Which node's events, and which of each reader's numbers: says where to look.
            eprintln!("the dashboard on {name} missed, by origin (count, first n, last n): {by_origin:?}");
            for node in [&a, &b] {
                let (_, metrics) = http(node.addr, "GET", "/metrics", None).await;
                // Entries read twice or skipped, sockets closed as too slow, remote events.
                let counters = metrics.as_str().unwrap_or_default().lines().filter(|l| {
                    ["alice_log_duplicates", "alice_log_gaps", "alice_log_late", "alice_slow", "alice_remote"]
                        .iter()
                        .any(|m| l.starts_with(m))
                });
                eprintln!("{}: {}", node.name, counters.collect::<Vec<_>>().join("; "));
            }
        }
        assert_eq!(
            missed,
            0,
            "the dashboard on {name} missed {missed} of {} acknowledged events",
            acked.len()
        );
    }
    assert_eq!(shown_a, shown_b, "the two dashboards saw different orders");
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = pg_rows(&db).await;
        if all_stored(&rows, &acked, &shown_a) || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    check(&rows, &Seen { acked: acked.clone(), shown: shown_a.clone() }, "Redis killed for 5 s");
    eprintln!(
        "{} acknowledged, {} shown on each dashboard, {} stored",
        acked.len(),
        shown_a.len(),
        rows.len()
    );
    // Each watcher ends when its node does.
    drop((a, b));
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    db.drop_db().await;
}
