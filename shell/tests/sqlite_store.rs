//! The embedded SQLite store: paging in the log's order, and files from before log positions.

mod common;

use std::sync::Arc;

use alice_core::{HistoryQuery, LogEntry, LogPosition};
use alice_shell::store::sqlite::SqliteStore;
use alice_shell::store::EventStore;

#[tokio::test]
async fn pages_in_the_logs_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    common::positions::pages_in_the_logs_order(&store).await;
}

#[tokio::test]
async fn keeps_the_earliest_position_of_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    common::positions::keeps_the_earliest_position_of_an_event(&store).await;
}

#[tokio::test]
async fn replays_after_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    common::positions::replays_after_an_event(&store).await;
}

#[tokio::test]
async fn replays_by_sender() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    common::positions::replays_by_sender(&store).await;
}

fn keyed(user: &str, key: Option<&str>, at_ms: u64, seq: u64) -> Arc<LogEntry> {
    let mut event = (*common::positions::placed(at_ms, LogPosition { ms: at_ms, seq }, user)).clone();
    event.id = uuid::Uuid::from_u128(u128::from(at_ms) << 64 | u128::from(seq) | 0x7000_0000_0000_0000);
    Arc::new(LogEntry {
        event: Arc::new(event),
        origin: Arc::from("n"),
        incarnation: 1,
        seq,
        sender: alice_core::ConnId(1),
        key: key.map(Arc::from),
    })
}

#[tokio::test]
async fn a_key_is_accepted_once_per_user_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    let t = 1_767_225_800_000;
    let window = 60_000;
    let first = keyed("u1", Some("k"), t, 1);
    assert!(store.append(std::slice::from_ref(&first), window).await.unwrap().is_empty());
    // The same append again (its commit was not confirmed): its own key, no repeat.
    assert!(store.append(std::slice::from_ref(&first), window).await.unwrap().is_empty());
    let again = keyed("u1", Some("k"), t + 1_000, 2);
    let other_user = keyed("u2", Some("k"), t + 1_000, 3);
    let plain = keyed("u1", None, t + 1_000, 4);
    let repeats = store.append(&[again.clone(), other_user.clone(), plain.clone()], window).await.unwrap();
    assert_eq!(repeats, [(again.event.id, first.event.id)]);
    let late = keyed("u1", Some("k"), t + window + 1, 5);
    assert!(
        store.append(std::slice::from_ref(&late), window).await.unwrap().is_empty(),
        "after the window it is new"
    );
    let (stored, _) = store.newest(10).await.unwrap();
    let mut ids: Vec<_> = stored.iter().map(|e| e.id).collect();
    ids.sort();
    let mut expected = vec![first.event.id, other_user.event.id, plain.event.id, late.event.id];
    expected.sort();
    assert_eq!(ids, expected, "the repeat was not stored");
}

/// A file the server wrote before events had positions, as that version created it.
const OLD_SCHEMA: &str = "
CREATE TABLE real_time_events (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, event_type TEXT NOT NULL, event_data TEXT NOT NULL,
    timestamp INTEGER NOT NULL, session_id TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE INDEX idx_rte_user_id ON real_time_events (user_id, id);
CREATE INDEX idx_rte_type_id ON real_time_events (event_type, id);
CREATE INDEX idx_rte_timestamp ON real_time_events (timestamp);
CREATE TABLE dead_letters (id TEXT PRIMARY KEY);
INSERT INTO real_time_events VALUES
    ('0194d6a0-0000-7000-8000-000000000001', 'r1', 'A', '{}', 1767225600000, 's', 1767225600000),
    ('0194d6a0-0000-7000-8000-000000000002', 'r1', 'B', '{}', 1767225600000, 's', 1767225600000),
    ('0194d6a0-0001-7000-8000-000000000003', 'r2', 'A', '{}', 1767225600001, 's', 1767225600001);
";

#[tokio::test]
async fn a_file_from_before_positions_places_its_events_by_time_then_storing_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    {
        use sqlx::ConnectOptions;
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut conn = options.create_if_missing(true).connect().await.unwrap();
        sqlx::raw_sql(OLD_SCHEMA).execute(&mut conn).await.unwrap();
    }
    for _ in 0..2 {
        // Opening twice: the second open finds the columns and changes nothing.
        let store = SqliteStore::open(Some(&url), dir.path()).await.unwrap();
        let (events, more) = store.newest(10).await.unwrap();
        assert!(!more);
        assert!(events.iter().all(|e| e.sent_from == Default::default()), "no sender recorded then");
        let placed: Vec<_> = events.iter().map(|e| (e.event_type.as_str(), e.position)).collect();
        assert_eq!(
            placed,
            [
                ("A", LogPosition { ms: 1_767_225_600_001, seq: 3 }),
                ("B", LogPosition { ms: 1_767_225_600_000, seq: 2 }),
                ("A", LogPosition { ms: 1_767_225_600_000, seq: 1 }),
            ]
        );
        let q = HistoryQuery {
            limit: 10,
            user_id: None,
            since: Some(events[2].id),
            event_types: Vec::new(),
            readers: None,
        };
        let (after, _) = store.recent(&q).await.unwrap();
        assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), [events[1].id, events[0].id]);
    }
}

#[tokio::test]
async fn an_emptied_outbox_still_knows_where_its_log_ended() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path(), "outbox.db").await.unwrap();
    assert_eq!(store.log_end().await.unwrap(), LogPosition::START, "a new file");
    let base = 1_767_225_600_000;
    let events: Vec<_> = (0..3)
        .map(|n| common::positions::placed(base + n, LogPosition { ms: base + 50, seq: n }, "r1"))
        .collect();
    store.insert(&events).await.unwrap();
    store.remove(&[events[2].id]).await.unwrap();
    store.remove(&[events[0].id, events[1].id]).await.unwrap();
    assert!(store.newest(10).await.unwrap().0.is_empty(), "every event went on to the store");
    drop(store);
    let store = SqliteStore::open_in(dir.path(), "outbox.db").await.unwrap();
    assert_eq!(store.log_end().await.unwrap(), LogPosition { ms: base + 50, seq: 2 }, "across a restart");
}

/// An outbox drains while appends go on, all on one thread as in the server: only the writer
/// writes the file, so no append waits for SQLite's lock held by a write that is itself waiting
/// for this thread (it would wait out the busy timeout, then fail "database is locked").
#[tokio::test]
async fn an_outbox_drains_while_appends_go_on_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_in(dir.path(), "outbox.db").await.unwrap());
    let base = 1_767_225_600_000;
    let events: Vec<_> = (0..1_000)
        .map(|n| common::positions::placed(base + n, LogPosition { ms: base + n, seq: 0 }, "r1"))
        .collect();
    let appender = {
        let (store, events) = (store.clone(), events.clone());
        tokio::spawn(async move {
            for event in events {
                store.insert(&[event]).await.expect("an append beside the draining");
                tokio::task::yield_now().await;
            }
        })
    };
    loop {
        let appended = appender.is_finished();
        let ids: Vec<_> = store.newest(20).await.unwrap().0.iter().map(|e| e.id).collect();
        store.remove(&ids).await.expect("a removal beside the appends");
        if appended && ids.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    appender.await.unwrap();
    assert!(store.newest(1).await.unwrap().0.is_empty(), "every event went on");
    assert_eq!(store.log_end().await.unwrap(), LogPosition { ms: base + 999, seq: 0 });
}

/// Takes `file`'s write lock from another connection, as another process would, and lets go a
/// second later on a thread of its own.
fn hold_the_write_lock_for_a_second(file: &std::path::Path) -> std::thread::JoinHandle<()> {
    let other = rusqlite::Connection::open(file).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        other.execute_batch("COMMIT").unwrap();
    })
}

/// Another process holding the file's write lock (`sqlite3` opened on it by hand) makes a small
/// append fail at once, to be retried after a backoff, instead of waiting on the runtime's
/// thread, where every socket would wait with it; a large append, on a blocking thread, waits.
#[tokio::test]
async fn another_writer_fails_a_small_append_at_once_and_a_large_one_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    let base = 1_767_225_600_000;
    let event = |n: u64| common::positions::placed(base + n, LogPosition { ms: base + n, seq: 0 }, "r1");
    let release = hold_the_write_lock_for_a_second(&dir.path().join("events.db"));
    // Waiting for the lock, it would have succeeded a second later.
    assert!(store.insert(&[event(0)]).await.is_err(), "a small append does not wait");
    let many: Vec<_> = (1..=100).map(event).collect();
    store.insert(&many).await.expect("a large append waits for the lock");
    release.join().unwrap();
    store.insert(&[event(0)]).await.expect("the retry, once the lock is free");
    let (stored, _) = store.newest(200).await.unwrap();
    assert_eq!(stored.len(), 101);

    // So does a large append of keyed events, which reads (the keys) before it writes.
    let release = hold_the_write_lock_for_a_second(&dir.path().join("events.db"));
    let keyed: Vec<_> = (0..100).map(|n| keyed("u1", Some(&format!("k{n}")), base + 1_000 + n, 0)).collect();
    let repeats = store.append(&keyed, 60_000).await.expect("a large keyed append waits for the lock");
    assert!(repeats.is_empty());
    release.join().unwrap();
}

#[tokio::test]
async fn the_write_ahead_log_stays_small_under_a_stream_of_small_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    let base = 1_767_225_600_000;
    let mut largest = 0;
    for n in 0..4_000u64 {
        let at = LogPosition { ms: base + n, seq: 0 };
        let event = common::positions::placed(base + n, at, &format!("reader-{}", n % 97));
        store.insert(&[event]).await.unwrap();
        largest = largest.max(std::fs::metadata(dir.path().join("events.db-wal")).map_or(0, |m| m.len()));
    }
    // The writer copies it back every 1,000 commits (about 7.5 MB of log here); SQLite alone
    // would let it reach its backstop of 50,000 pages, and these 4,000 commits write about 30 MB.
    assert!(largest > 0, "the store writes ahead");
    assert!(largest < 12 << 20, "the write-ahead log reached {largest} bytes");
    assert_eq!(store.newest(1).await.unwrap().0[0].position, LogPosition { ms: base + 3_999, seq: 0 });
}

#[tokio::test]
async fn replaces_a_consultants_assignments() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    common::assignments::replaces_a_consultants_set(&store, ["r1", "r2", "r3"]).await;
}

#[tokio::test]
async fn narrows_history_and_replays_to_a_consultants_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    common::assignments::narrows_history_and_replays_to_readers(&store, ["r1", "r2", "r3"]).await;
}

/// Sessions for connection state recovery: a lookup never returns an expired one, and expired
/// ones are deleted as new ones are saved (every so many saves, not on each).
#[tokio::test]
async fn expired_sessions_are_never_recovered_and_are_deleted_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(None, dir.path()).await.unwrap());
    let sessions = store.clone().sessions().expect("a single node keeps sessions in its file");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let session = |expires_ms| alice_core::SavedSession {
        user_id: "r1".into(),
        consultant_id: None,
        event_types: Vec::new(),
        rooms: Vec::new(),
        from: LogPosition::START,
        expires_ms,
    };
    sessions.save("old", &session(now - 1)).await.unwrap();
    assert_eq!(sessions.load("old").await.unwrap(), None, "expired");
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let rows = || async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM recovery_sessions").fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    };
    for i in 0..254 {
        sessions.save(&format!("new-{i}"), &session(now + 60_000)).await.unwrap();
    }
    assert_eq!(rows().await, 255, "not yet deleted");
    sessions.save("new-254", &session(now + 60_000)).await.unwrap();
    assert_eq!(rows().await, 255, "the 256th save deleted the expired one");
    assert_eq!(sessions.load("new-254").await.unwrap(), Some(session(now + 60_000)));
}

/// A file records the storing group it fills and the stretches of the log it lacks; a stretch
/// narrows as a fill stores its pages and goes once filled, across reopenings.
#[tokio::test]
async fn a_file_keeps_its_group_and_the_stretches_it_lacks_until_they_are_filled() {
    let dir = tempfile::tempdir().unwrap();
    let at = |ms: u64, seq: u64| LogPosition { ms, seq };
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    let new = store.membership().await.unwrap().unwrap();
    assert_eq!((new.group, new.end, new.missing), (None, LogPosition::START, vec![]), "a new file");
    let stretch = (LogPosition::START, at(500, 0));
    store.join_log("alice-store:n1", Some(stretch)).await.unwrap();
    store.join_log("alice-store:n1", Some(stretch)).await.unwrap();
    store.filled(stretch, Some(at(200, 3))).await.unwrap();
    drop(store);
    let store = SqliteStore::open(None, dir.path()).await.unwrap();
    let file = store.membership().await.unwrap().unwrap();
    assert_eq!(file.group.as_deref(), Some("alice-store:n1"));
    assert_eq!(file.missing, vec![(at(200, 3), at(500, 0))], "recorded once, narrowed by the page stored");
    store.filled(file.missing[0], None).await.unwrap();
    assert_eq!(store.membership().await.unwrap().unwrap().missing, vec![], "filled");
}
