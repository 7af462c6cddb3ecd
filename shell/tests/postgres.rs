//! The PostgreSQL store against the real server on 127.0.0.1:5432 (or ALICE_TEST_DATABASE_URL):
//! migrations (twice, and over the original Supabase schema), outages through a proxy, a poison
//! row, and a restart served from the database. Each test uses a database of its own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use alice_core::{HistoryQuery, Millis, ReaderEvent};
use alice_shell::store::postgres::{PgSettings, PgStore, MIGRATOR};
use alice_shell::store::{EventStore, Session};
use common::*;
use serde_json::{json, Value};
use sqlx::Row;

const ORIGINAL_SCHEMA: &str = include_str!("fixtures/original_supabase_schema.sql");

fn pg_settings(url: &str) -> PgSettings {
    PgSettings { url: url.into(), pool_size: 4, timeout: Duration::from_secs(5) }
}

/// The store on the database at `url`, migrated and ready (as the server opens it).
async fn migrated(url: &str) -> PgStore {
    let store = PgStore::connect(&pg_settings(url)).unwrap();
    store.migrate().await.unwrap();
    store.inspect().await.unwrap()
}

fn event(user: &str, ty: &str, ms: u64) -> Arc<ReaderEvent> {
    let mut ids = alice_core::ids::EventIds::default();
    let mut rng = <rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(ms);
    let data = alice_core::replies::Json::from_text(r#"{"page":3}"#.into()).unwrap();
    Arc::new(ReaderEvent {
        id: ids.next(Millis(ms), &mut rng),
        user_id: Arc::from(user),
        event_type: ty.into(),
        reading: alice_core::ReadingPosition::of_json(&data),
        data,
        timestamp: Millis(ms),
        session_id: "s-1".into(),
        position: alice_core::LogPosition { ms, seq: 0 },
        sent_from: Default::default(),
    })
}

fn db_settings(dir: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> alice_shell::config::Settings {
    let mut vars = vec![("DATABASE_URL", url)];
    vars.extend_from_slice(extra);
    settings(dir, &vars)
}

#[tokio::test]
async fn migrations_apply_twice_and_over_the_original_schema() {
    let Some(fresh) = TestDb::create().await else { return };
    let store = PgStore::connect(&pg_settings(&fresh.url)).unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    // The migration's SQL itself is idempotent, not only its bookkeeping.
    let pool = fresh.pool().await;
    for m in MIGRATOR.iter() {
        sqlx::raw_sql(&m.sql).execute(&pool).await.unwrap();
    }
    let store = store.inspect().await.unwrap();
    store.insert(&[event("reader-a", "PAGE_TURN", 1_767_225_600_000)]).await.unwrap();
    let views: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_views WHERE viewname IN ('active_readers_view', 'consultant_dashboard_view')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(views, 2);
    pool.close().await;
    fresh.drop_db().await;

    let Some(original) = TestDb::create().await else { return };
    let pool = original.pool().await;
    sqlx::raw_sql(ORIGINAL_SCHEMA).execute(&pool).await.unwrap();
    let user = "6f1c2f2e-8a4b-4b7e-9d3a-0c1e2d3f4a5b";
    sqlx::query("INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES ($1::uuid, 'ada@example.org', '{\"first_name\":\"Ada\"}')")
        .bind(user)
        .execute(&pool)
        .await
        .unwrap();
    let store = PgStore::connect(&pg_settings(&original.url)).unwrap();
    store.migrate().await.unwrap();
    let store = store.inspect().await.unwrap();
    let now = 1_767_225_600_000 + 3_600_000 * 24 * 365 * 10;
    let e = event(user, "PAGE_TURN", now);
    store.insert(&[e.clone(), e.clone()]).await.unwrap();
    let q = HistoryQuery {
        limit: 10,
        user_id: Some(user.into()),
        since: None,
        event_types: vec![],
        readers: None,
    };
    let (found, more) = store.recent(&q).await.unwrap();
    assert_eq!((found.len(), more), (1, false), "idempotent by id, on the original uuid column");
    assert_eq!(found[0].id, e.id);
    assert_eq!(found[0].data.value(), json!({"page": 3}));
    assert_eq!(found[0].timestamp, Millis(now));
    // A non-uuid user id cannot match the original schema's uuid column: no rows, no error.
    let q = HistoryQuery {
        limit: 10,
        user_id: Some("dev-reader".into()),
        since: None,
        event_types: vec![],
        readers: None,
    };
    assert!(store.recent(&q).await.unwrap().0.is_empty());

    let session = Session { user_id: user.into(), session_id: "sid-1".into(), at: Millis(now) };
    store.session_opened(&session).await.unwrap();
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM active_readers_view").fetch_one(&pool).await.unwrap();
    assert_eq!(active, 1);
    store.session_closed(&session).await.unwrap();
    let row = sqlx::query("SELECT is_active FROM active_sessions WHERE session_id = 'sid-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!row.get::<bool, _>("is_active"), "a closed socket's session is inactive");
    let dash = store.dashboard(Millis(now - 3_600_000)).await.unwrap();
    assert_eq!(dash.len(), 1);
    assert_eq!(dash[0].event_count, 1);
    pool.close().await;
    original.drop_db().await;
}

#[tokio::test]
async fn a_database_outage_loses_nothing_and_stores_each_event_once() {
    let Some(db) = TestDb::create().await else { return };
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(pg).await;
    let proxied = db.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("STORE_RETRY_BASE_MS", "50"),
        ("STORE_RETRY_MAX_MS", "300"),
        ("STORE_MAX_ATTEMPTS", "1000"),
        ("DATABASE_TIMEOUT_MS", "1000"),
        ("READER_EVENT_BURST", "100"),
    ];
    let server = alice_shell::start(db_settings(dir.path(), &proxied, &vars)).await.unwrap();
    let addr = server.addr;
    let mut r = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    let mut ids = Vec::new();
    for phase in ["before", "during", "after"] {
        if phase == "during" {
            proxy.cut();
        }
        if phase == "after" {
            proxy.restore();
        }
        for i in 0..20 {
            let ack = r
                .call("reader-event", json!({"eventType": "OUTAGE", "data": {"phase": phase, "i": i}}))
                .await;
            assert_eq!(ack["ok"], true, "{ack}");
            ids.push(ack["eventId"].as_str().unwrap().to_owned());
        }
        if phase == "during" {
            let (_, health) = http(addr, "GET", "/health", None).await;
            assert_eq!(health["status"], "degraded");
            assert_eq!(health["checks"]["store"]["kind"], "postgres");
        }
    }
    wait_stats(addr, |s| s["queueStats"]["queueSize"] == 0).await;
    let pool = db.pool().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT id::text FROM real_time_events ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored, ids, "every accepted event exactly once, none lost, none doubled");
    server.shutdown().await;
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_poison_row_is_dead_lettered_and_stored_after_replay_once_fixed() {
    let Some(db) = TestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let vars = [("STORE_RETRY_BASE_MS", "10"), ("STORE_RETRY_MAX_MS", "40"), ("STORE_MAX_ATTEMPTS", "3")];
    let server = alice_shell::start(db_settings(dir.path(), &db.url, &vars)).await.unwrap();
    let addr = server.addr;
    let pool = db.pool().await;
    sqlx::query("ALTER TABLE real_time_events ADD CONSTRAINT no_poison CHECK (event_type <> 'POISON')")
        .execute(&pool)
        .await
        .unwrap();
    let mut r = Client::connect(addr, &token("r1", "reader")).await.unwrap();
    for t in ["GOOD", "POISON", "GOOD", "GOOD"] {
        assert_eq!(r.call("reader-event", json!({"eventType": t})).await["ok"], true);
    }
    let stats =
        wait_stats(addr, |s| s["queueStats"]["dlqSize"] == 1 && s["queueStats"]["queueSize"] == 0).await;
    assert_eq!(stats["queueStats"]["dlqSize"], 1);
    let good: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM real_time_events").fetch_one(&pool).await.unwrap();
    assert_eq!(good, 3, "the poison event did not hold back the others");

    sqlx::query("ALTER TABLE real_time_events DROP CONSTRAINT no_poison").execute(&pool).await.unwrap();
    let (status, body) = http(addr, "POST", "/admin/dlq/replay", Some(&token("a", "admin"))).await;
    assert_eq!((status, body), (200, json!({"replayed": 1})));
    wait_stats(addr, |s| s["queueStats"]["dlqSize"] == 0 && s["queueStats"]["queueSize"] == 0).await;
    let all: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM real_time_events").fetch_one(&pool).await.unwrap();
    assert_eq!(all, 4);
    server.shutdown().await;
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn after_a_restart_recent_events_and_dashboard_come_from_postgres() {
    let Some(db) = TestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(db_settings(dir.path(), &db.url, &[])).await.unwrap();
    let mut r = Client::connect(server.addr, &token("r1", "reader")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let ack = r.call("reader-event", json!({"eventType": "RESTART", "data": {"i": i}})).await;
        ids.push(ack["eventId"].as_str().unwrap().to_owned());
    }
    assert_eq!(server.shutdown().await.unstored, 0);

    // History holds two events, so older pages must be read from PostgreSQL.
    let dir2 = tempfile::tempdir().unwrap();
    let server =
        alice_shell::start(db_settings(dir2.path(), &db.url, &[("HISTORY_CAPACITY", "2")])).await.unwrap();
    let mut c = Client::connect(server.addr, &token("c1", "consultant")).await.unwrap();
    let newest = c.call("get-recent-events", json!({"limit": 4})).await;
    let got: Vec<&str> =
        newest["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    let want: Vec<&str> = ids.iter().rev().take(4).map(String::as_str).collect();
    assert_eq!(got, want);
    assert_eq!(newest["hasMore"], true);
    assert_eq!(newest["events"][0]["eventData"], json!({"i": 5}));
    let forward = c.call("get-recent-events", json!({"since": ids[0], "limit": 2})).await;
    let got: Vec<&str> =
        forward["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[1].as_str(), ids[2].as_str()]);
    let (_, stats) = http(server.addr, "GET", "/stats", Some(&token("c1", "consultant"))).await;
    let row = &stats["dashboardStats"][0];
    assert_eq!((row["eventType"].as_str(), row["eventCount"].as_i64()), (Some("RESTART"), Some(6)));
    server.shutdown().await;
    db.drop_db().await;
}

#[tokio::test]
async fn an_event_postgresql_could_never_hold_is_refused_not_acknowledged() {
    let Some(db) = TestDb::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(db_settings(dir.path(), &db.url, &[])).await.unwrap();
    // Nor a reader whose id holds it: refused on connect, as its events could never be stored.
    let refused = Client::connect(server.addr, &token("r\u{0}1", "reader")).await.err();
    assert_eq!(refused.as_deref(), Some("Invalid authentication token"));
    let mut r = Client::connect(server.addr, &token("r1", "reader")).await.unwrap();
    // Neither `jsonb` nor `text` holds U+0000: acknowledged, such an event would never be stored.
    let refused = r.call("reader-event", json!({"eventType": "NUL", "data": {"note": "a\u{0}b"}})).await;
    assert_eq!(refused["error"]["code"], "INVALID_PAYLOAD", "{refused}");
    let refused = r.call("reader-event", json!({"eventType": "NUL", "sessionId": "s\u{0}"})).await;
    assert_eq!(refused["error"]["code"], "INVALID_PAYLOAD", "{refused}");
    let ack = r.call("reader-event", json!({"eventType": "NUL", "data": {"note": "a\\u0000b"}})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let report = server.shutdown().await;
    assert_eq!((report.unstored, report.dead_letters), (0, 0));
    let pool = db.pool().await;
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT event_data::text FROM real_time_events").fetch_all(&pool).await.unwrap();
    assert_eq!(rows, [r#"{"note": "a\\u0000b"}"#]);
    db.drop_db().await;
}

/// On the original Supabase schema a reader's id is a uuid: a reader whose token's `sub` is not
/// one is refused on connect (acknowledged, its events would be dead-lettered); staff are not, and
/// a uuid reader's events are stored.
#[tokio::test]
async fn on_the_original_schema_a_reader_whose_id_is_not_a_uuid_is_refused_on_connect() {
    let Some((db, pool)) = original_with_reader().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = alice_shell::start(db_settings(dir.path(), &db.url, &[])).await.unwrap();
    // PostgreSQL would refuse the first, and give the second back in lowercase, as another id.
    for sub in ["reader-1", &common::positions::USER.to_uppercase()] {
        let refused = Client::connect(server.addr, &token(sub, "reader")).await.err();
        assert_eq!(refused.as_deref(), Some("Invalid authentication token"), "{sub}");
    }
    let upper: String = sqlx::query_scalar("SELECT CAST($1 AS uuid)::text")
        .bind(common::positions::USER.to_uppercase())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(upper, common::positions::USER, "PostgreSQL gives a uuid back in lowercase");
    let _consultant = Client::connect(server.addr, &token("consultant-1", "consultant")).await.unwrap();
    let mut r = Client::connect(server.addr, &token(common::positions::USER, "reader")).await.unwrap();
    let ack = r.call("reader-event", json!({"eventType": "PAGE_TURN", "data": {"page": 1}})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let report = server.shutdown().await;
    assert_eq!((report.unstored, report.dead_letters), (0, 0));
    let users: Vec<String> =
        sqlx::query_scalar("SELECT user_id::text FROM real_time_events").fetch_all(&pool).await.unwrap();
    assert_eq!(users, [common::positions::USER]);
    pool.close().await;
    db.drop_db().await;
}

/// On the suite's own table, whose ids are uuids, the admin API takes only the form PostgreSQL
/// gives back: an uppercase or braced id would be stored rewritten while this node applied and
/// answered it as sent.
#[tokio::test]
async fn on_the_suites_table_the_admin_api_takes_only_lowercase_hyphenated_ids() {
    let Some((db, pool)) = original_with_reader().await else { return };
    create_suites_assignments(&pool).await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [("CONSULTANT_SCOPE", "assigned")];
    let server = alice_shell::start(db_settings(dir.path(), &db.url, &vars)).await.unwrap();
    let (c, r) = ("aaaaaaaa-1111-4111-8111-11111111111b", common::positions::USER);
    let admin = token("admin-1", "admin");
    let put = |consultant: String, reader: String| {
        let request = reqwest::Client::new()
            .put(format!("http://{}/admin/assignments/{consultant}", server.addr))
            .bearer_auth(&admin)
            .json(&json!({ "readers": [reader] }));
        async move {
            let answer = request.send().await.unwrap();
            (answer.status().as_u16(), answer.json::<Value>().await.unwrap_or_default())
        }
    };
    let refused = "On this database, consultant and reader ids are lowercase hyphenated UUIDs";
    for (consultant, reader) in [
        (c.to_uppercase(), r.to_owned()),
        (c.to_owned(), r.to_uppercase()),
        (c.to_owned(), format!("{{{r}}}")),
        (c.to_owned(), "reader-1".to_owned()),
    ] {
        let (status, body) = put(consultant.clone(), reader.clone()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(refused)), "{consultant} {reader}");
    }
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM consultant_assignments").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 0, "nothing refused was written");
    let path = format!("/admin/assignments/{}", c.to_uppercase());
    assert_eq!(http(server.addr, "GET", &path, Some(&admin)).await.0, 400);

    assert_eq!(put(c.to_owned(), r.to_owned()).await.0, 200);
    let (status, body) = http(server.addr, "GET", &format!("/admin/assignments/{c}"), Some(&admin)).await;
    assert_eq!((status, &body["readers"]), (200, &json!([r])));
    server.shutdown().await;
    pool.close().await;
    db.drop_db().await;
}

/// The Alice Suite's own `consultant_assignments` table: uuid ids, a book per row.
async fn create_suites_assignments(pool: &sqlx::PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE consultant_assignments (
             id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
             consultant_id UUID NOT NULL, user_id UUID NOT NULL, book_id UUID,
             active BOOLEAN DEFAULT true, created_at TIMESTAMPTZ DEFAULT now())",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// A new database with the original Supabase schema and the positions tests' reader as a user.
async fn original_with_reader() -> Option<(TestDb, sqlx::PgPool)> {
    let db = TestDb::create().await?;
    let pool = db.pool().await;
    sqlx::raw_sql(ORIGINAL_SCHEMA).execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO auth.users (id, email) VALUES ($1::uuid, 'r@example.org')")
        .bind(common::positions::USER)
        .execute(&pool)
        .await
        .unwrap();
    Some((db, pool))
}

#[tokio::test]
async fn pages_in_the_logs_order_on_the_original_schema() {
    let Some((db, pool)) = original_with_reader().await else { return };
    let store = migrated(&db.url).await;
    common::positions::pages_in_the_logs_order(&store).await;
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn the_positions_migration_accepts_the_original_schemas_null_timestamps() {
    let Some((db, pool)) = original_with_reader().await else { return };
    sqlx::query(
        "INSERT INTO real_time_events (id, user_id, event_type, event_data, timestamp, created_at)
         VALUES (gen_random_uuid(), $1::uuid, 'A', '{}', NULL, to_timestamp(1767225600))",
    )
    .bind(common::positions::USER)
    .execute(&pool)
    .await
    .unwrap();
    let store = PgStore::connect(&pg_settings(&db.url)).unwrap();
    store.migrate().await.unwrap();
    let placed: (i64, i64) =
        sqlx::query_as("SELECT log_ms, log_seq FROM real_time_events").fetch_one(&pool).await.unwrap();
    assert_eq!(placed, (1_767_225_600_000, 1), "placed at its creation time");
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn keeps_the_earliest_position_of_an_event() {
    let Some(db) = TestDb::create().await else { return };
    let store = migrated(&db.url).await;
    common::positions::keeps_the_earliest_position_of_an_event(&store).await;
    db.drop_db().await;
}

#[tokio::test]
async fn replays_after_an_event() {
    let Some(db) = TestDb::create().await else { return };
    let store = migrated(&db.url).await;
    common::positions::replays_after_an_event(&store).await;
    db.drop_db().await;
}

#[tokio::test]
async fn replays_by_sender() {
    let Some(db) = TestDb::create().await else { return };
    let store = migrated(&db.url).await;
    common::positions::replays_by_sender(&store).await;
    db.drop_db().await;
}

#[tokio::test]
async fn replays_by_sender_on_the_original_schema() {
    let Some((db, pool)) = original_with_reader().await else { return };
    sqlx::query("INSERT INTO auth.users (id, email) VALUES ($1::uuid, 'r2@example.org')")
        .bind(common::positions::OTHER_USER)
        .execute(&pool)
        .await
        .unwrap();
    let store = migrated(&db.url).await;
    common::positions::replays_by_sender(&store).await;
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn events_stored_before_positions_are_placed_by_time_then_id() {
    let Some(db) = TestDb::create().await else { return };
    let pool = db.pool().await;
    // The first migration alone, and events stored as that version stored them.
    let first = MIGRATOR.iter().next().unwrap();
    sqlx::raw_sql(&first.sql).execute(&pool).await.unwrap();
    let unplaced = |n| alice_core::LogPosition { ms: 0, seq: n };
    let old = [
        common::positions::placed(1_767_225_600_000, unplaced(2), "r1"),
        common::positions::placed(1_767_225_600_000, unplaced(1), "r1"),
        common::positions::placed(1_767_225_600_007, unplaced(0), "r2"),
    ];
    for e in &old {
        sqlx::query(
            "INSERT INTO real_time_events (id, user_id, event_type, event_data, timestamp)
             VALUES ($1::uuid, $2, $3, '{}'::jsonb, to_timestamp($4 / 1000.0))",
        )
        .bind(e.id.to_string())
        .bind(&*e.user_id)
        .bind(&e.event_type)
        .bind(e.timestamp.0 as i64)
        .execute(&pool)
        .await
        .unwrap();
    }
    for m in MIGRATOR.iter().skip(1) {
        sqlx::raw_sql(&m.sql).execute(&pool).await.unwrap();
    }
    let store = PgStore::connect(&pg_settings(&db.url)).unwrap().inspect().await.unwrap();
    let (events, _) = store.newest(10).await.unwrap();
    let mut by_id = old.to_vec();
    by_id.sort_by_key(|e| e.id);
    let rank = |id| by_id.iter().position(|e| e.id == id).unwrap() as u64 + 1;
    let placed: Vec<_> = events.iter().map(|e| (e.id, e.position)).collect();
    let mut expected: Vec<_> =
        old.iter().map(|e| (e.id, alice_core::LogPosition { ms: e.timestamp.0, seq: rank(e.id) })).collect();
    expected.sort_by_key(|(_, p)| std::cmp::Reverse(*p));
    assert_eq!(placed, expected);
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn replaces_a_consultants_assignments_and_narrows_history_to_them() {
    let Some(db) = TestDb::create().await else { return };
    let store = migrated(&db.url).await;
    common::assignments::replaces_a_consultants_set(&store, ["r1", "r2", "r3"]).await;
    common::assignments::narrows_history_and_replays_to_readers(&store, ["r1", "r2", "r3"]).await;
    db.drop_db().await;
}

/// The Alice Suite's own table (uuid ids, a book per row) is kept as it is: read and written
/// through casts, and every change to it, made by anyone, is announced to listeners.
#[tokio::test]
async fn works_on_the_suites_own_table_and_announces_changes_to_it() {
    let Some((db, pool)) = original_with_reader().await else { return };
    create_suites_assignments(&pool).await;
    let store = migrated(&db.url).await;
    let ty: String = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns
         WHERE table_name = 'consultant_assignments' AND column_name = 'consultant_id'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ty, "uuid", "the suite's table is left as it was");
    let [c, r1, r2, r3] = [
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333",
        "44444444-4444-4444-8444-444444444444",
    ];
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen("alice_realtime_assignments").await.unwrap();
    // As the suite's trigger would: a row written straight into the table.
    sqlx::query("INSERT INTO consultant_assignments (consultant_id, user_id) VALUES ($1::uuid, $2::uuid)")
        .bind(c)
        .bind(r1)
        .execute(&pool)
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert!(heard.is_ok_and(|n| n.is_ok()), "a direct change is announced");
    assert_eq!(store.assignments(Some(c)).await.unwrap().get(c).map(|s| s.len()), Some(1));
    let readers: std::collections::BTreeSet<String> = [r2, r3].iter().map(|r| r.to_string()).collect();
    store.assign(c, &readers).await.unwrap();
    assert_eq!(store.assignments(None).await.unwrap().get(c), Some(&readers));
    let ended: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consultant_assignments WHERE NOT active")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ended, 1, "the replaced assignment is ended, not deleted");
    // An id the suite's uuid column cannot hold is the data's fault: refused, nothing changed.
    let bad: std::collections::BTreeSet<String> = ["not-a-uuid".to_owned()].into();
    assert!(matches!(store.assign(c, &bad).await, Err(alice_shell::store::StoreError::Rejected(_))));
    assert_eq!(store.assignments(None).await.unwrap().get(c), Some(&readers));
    drop(listener);
    pool.close().await;
    db.drop_db().await;
}
