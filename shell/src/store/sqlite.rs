//! The embedded event store: one SQLite file under `DATA_DIR`, in WAL mode. The default when no
//! `DATABASE_URL` is set (its commit is then the node's log), and the local outbox in front of
//! PostgreSQL (`outbox.db`). In a cluster each node's file holds every event of the cluster.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alice_core::replies::Json;
use alice_core::ReadingPosition;
use alice_core::{
    AssignmentTable, HistoryQuery, LogEntry, LogPosition, Millis, ReaderEvent, ReplayFilter, ReplayFrom,
    SentFrom,
};
use rusqlite::{params, OptionalExtension};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::BTreeSet;
use uuid::Uuid;

use super::{DashboardRow, EventStore, Membership, Page, Replay, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS real_time_events (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    event_data  TEXT NOT NULL,
    timestamp   INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    log_ms      INTEGER NOT NULL DEFAULT 0,
    log_seq     INTEGER NOT NULL DEFAULT 0,
    sender_socket  TEXT NOT NULL DEFAULT '',
    sender_rooms TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS client_keys (
    user_id         TEXT NOT NULL,
    client_event_id TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    accepted_ms     INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_client_keys_accepted ON client_keys (accepted_ms);
CREATE TABLE IF NOT EXISTS recovery_sessions (
    pid         TEXT PRIMARY KEY,
    session     TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_recovery_sessions_expires ON recovery_sessions (expires_ms);
CREATE TABLE IF NOT EXISTS log_end (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    log_ms      INTEGER NOT NULL,
    log_seq     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_membership (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    log_group   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_missing (
    after_ms    INTEGER NOT NULL,
    after_seq   INTEGER NOT NULL,
    until_ms    INTEGER NOT NULL,
    until_seq   INTEGER NOT NULL,
    PRIMARY KEY (after_ms, after_seq, until_ms, until_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consultant_assignments (
    id            TEXT PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))),
    consultant_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    book_id       TEXT,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_consultant_assignments_consultant ON consultant_assignments (consultant_id);
";

/// Narrows a query to these readers' events (a scoped consultant's), passed as one JSON array.
fn push_readers(q: &mut QueryBuilder<'_, Sqlite>, readers: &[String]) {
    let list = serde_json::to_string(readers).unwrap_or_else(|_| "[]".into());
    q.push(" AND user_id IN (SELECT value FROM json_each(").push_bind(list).push("))");
}

/// Files written before events had log positions: each old event is placed at its time, then in
/// the order it was stored. Idempotent; the caller runs it only when the columns are missing.
const ADD_POSITIONS: &str = "
ALTER TABLE real_time_events ADD COLUMN log_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE real_time_events ADD COLUMN log_seq INTEGER NOT NULL DEFAULT 0;
UPDATE real_time_events SET log_ms = timestamp, log_seq = rowid;
";

/// Files written before events recorded their sending socket (its `pid` and rooms, which a
/// recovery's replay asks for): their events keep none.
const ADD_SENDERS: &str = "
ALTER TABLE real_time_events ADD COLUMN sender_socket TEXT NOT NULL DEFAULT '';
ALTER TABLE real_time_events ADD COLUMN sender_rooms TEXT NOT NULL DEFAULT '[]';
";

/// Narrows a replay's query to events sent on a socket in any of `rooms`, both kept as JSON arrays.
fn push_rooms(q: &mut QueryBuilder<'_, Sqlite>, rooms: &[String]) {
    let list = serde_json::to_string(rooms).unwrap_or_else(|_| "[]".into());
    q.push("EXISTS (SELECT 1 FROM json_each(sender_rooms) WHERE value IN (SELECT value FROM json_each(")
        .push_bind(list)
        .push(")))");
}

/// Paging follows the log's order, by position. Every index is one more page written per commit,
/// and on a single node a commit is what each event waits for: time ranges use the position's
/// millisecond rather than an index of their own.
const INDEXES: &str = "
DROP INDEX IF EXISTS idx_rte_user_id;
DROP INDEX IF EXISTS idx_rte_type_id;
DROP INDEX IF EXISTS idx_rte_timestamp;
CREATE INDEX IF NOT EXISTS idx_rte_position ON real_time_events (log_ms, log_seq);
CREATE INDEX IF NOT EXISTS idx_rte_user_position ON real_time_events (user_id, log_ms, log_seq);
CREATE INDEX IF NOT EXISTS idx_rte_type_position ON real_time_events (event_type, log_ms, log_seq);
";

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The one connection that writes the file; the pool's connections only read it (and copy
    /// the write-ahead log). Held apart from the pool so that its page cache stays warm and no
    /// pool check precedes each append. As the only writer it never waits for SQLite's write
    /// lock, which matters because small commits run on the asking task ([`INLINE_ROWS`]): a
    /// commit that waited for a lock held across an await elsewhere would hold up a worker of
    /// the runtime. (Another process writing the file, such as `sqlite3` opened on it by hand,
    /// makes a small commit fail at once rather than wait: see [`open_writer`].)
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// Sessions saved since expired ones were last deleted.
    sessions_saved: Arc<std::sync::atomic::AtomicU32>,
}

/// Expired sessions are deleted once every this many saves (every socket saves one as it
/// connects and as it leaves).
const PURGE_SESSIONS_EVERY: u32 = 256;

/// The connection that writes the file, and how much it wrote since its last checkpoint began. It is
/// SQLite's own (rusqlite), not sqlx's: a commit runs on the task that asks for it, where sqlx
/// hands each statement to a thread of its own and back (one node at one event per commit: 0.93 ×
/// the CPU per event without that hand-off, benches/README.md).
struct Writer {
    conn: rusqlite::Connection,
    commits: u32,
    events: usize,
    /// Commits that recorded keys since expired keys were last deleted.
    keyed_commits: u32,
    /// A checkpoint is under way: no second one starts before it ends.
    checkpointing: bool,
}

/// Expired keys are deleted once every this many commits that recorded keys.
const PRUNE_KEYS_EVERY: u32 = 256;

/// The write-ahead log is copied into the file after this many commits or events, once the
/// commit that crossed the mark has returned, in two steps ([`checkpoint`]). A copy writes each
/// page it copies and syncs twice however many commits changed the page, so copying less often
/// costs less per event (every 1,000 commits rather than 200, one node at 1,000 events/s: 0.89 ×
/// the CPU per event with 5 consultants, 0.96 × with 20, benches/README.md); the log then reaches
/// a few megabytes.
/// (SQLite's own automatic checkpoint runs inside the commit that crosses 1,000 pages, and every
/// event in that commit waited for it; it stays as a backstop, at [`WAL_BACKSTOP_PAGES`].)
const CHECKPOINT_AFTER_COMMITS: u32 = 1_000;
const CHECKPOINT_AFTER_EVENTS: usize = 10_000;
const WAL_BACKSTOP_PAGES: &str = "50000";

/// A position as the store keeps it, two integer columns (`log_ms`, `log_seq`, and the like).
fn from_columns(ms: i64, seq: i64) -> LogPosition {
    LogPosition { ms: ms.max(0) as u64, seq: seq.max(0) as u64 }
}

/// A stretch of the log as `log_missing`'s four columns.
fn stretch_columns((after, until): (LogPosition, LogPosition)) -> [i64; 4] {
    [after.ms as i64, after.seq as i64, until.ms as i64, until.seq as i64]
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_check_violation() => {
            StoreError::Rejected(db.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `url` (`sqlite://path`) or `dir/events.db`.
    pub async fn open(url: Option<&str>, dir: &Path) -> Result<SqliteStore, StoreError> {
        match url {
            Some(url) => Self::open_with(SqliteConnectOptions::from_str(url).map_err(unavailable)?).await,
            None => Self::open_in(dir, "events.db").await,
        }
    }

    /// Opens (creating if needed) the file `name` in `dir`, creating `dir` too.
    pub async fn open_in(dir: &Path, name: &str) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create DATA_DIR {}: {e}", dir.display())))?;
        Self::open_with(SqliteConnectOptions::new().filename(dir.join(name))).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        // WAL with synchronous=NORMAL: a commit is in the operating system's hands when it
        // returns, so a killed process loses nothing committed; only a power loss or a kernel
        // crash could lose the last commits.
        // Small pages: a commit writes each page it changed whole into the write-ahead log, and
        // a group of events changes one page per index. (Only a new file takes the page size.)
        let options = options
            .create_if_missing(true)
            .page_size(1024)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        // The schema is brought up to date on a connection of its own, before any other opens: a
        // connection that prepared a statement on the old schema would read rows of the new one
        // with the old columns (sqlx keeps a statement's columns from when it was prepared).
        let mut setup = options.clone().connect().await.map_err(unavailable)?;
        sqlx::raw_sql(SCHEMA).execute(&mut setup).await.map_err(unavailable)?;
        for (column, migration) in [("log_ms", ADD_POSITIONS), ("sender_socket", ADD_SENDERS)] {
            let present: bool = sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('real_time_events') WHERE name = ?",
            )
            .bind(column)
            .fetch_one(&mut setup)
            .await
            .map_err(unavailable)?;
            if !present {
                let mut tx = sqlx::Connection::begin(&mut setup).await.map_err(unavailable)?;
                sqlx::raw_sql(migration).execute(&mut *tx).await.map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
            }
        }
        sqlx::raw_sql(INDEXES).execute(&mut setup).await.map_err(unavailable)?;
        sqlx::Connection::close(setup).await.map_err(unavailable)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        let conn = open_writer(options.get_filename()).map_err(failed)?;
        let writer = Arc::new(tokio::sync::Mutex::new(Writer {
            conn,
            commits: 0,
            events: 0,
            keyed_commits: 0,
            checkpointing: false,
        }));
        Ok(SqliteStore { pool, writer, sessions_saved: Arc::default() })
    }
}

impl SqliteStore {
    /// Where the event `id` stands in the log; an id this store does not hold reads as a time.
    async fn position_of(&self, id: Uuid) -> Result<LogPosition, StoreError> {
        Ok(self.stored_position(id).await?.unwrap_or_else(|| alice_core::history::position_by_time(id)))
    }

    /// Where the event `id` stands in the log, if this store holds it.
    async fn stored_position(&self, id: Uuid) -> Result<Option<LogPosition>, StoreError> {
        let found: Option<(i64, i64)> =
            sqlx::query_as("SELECT log_ms, log_seq FROM real_time_events WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(found.map(|(ms, seq)| from_columns(ms, seq)))
    }
}

/// Where this file's rows stand, for an outbox: events not yet elsewhere, and those dead-lettered.
pub struct Unstored {
    pub events: Vec<Arc<ReaderEvent>>,
    pub dead: Vec<Arc<ReaderEvent>>,
}

impl SqliteStore {
    /// Forgets events kept elsewhere now (an outbox whose events reached the store).
    /// The newest position among them is kept (`log_end`), so the file still knows where its log
    /// ended when it is empty.
    pub async fn remove(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let list = id_list(ids);
        self.write(ids.len(), move |writer| {
            let tx = writer.conn.transaction()?;
            tx.execute(
                "INSERT INTO log_end (id, log_ms, log_seq)
                 SELECT 1, log_ms, log_seq FROM real_time_events WHERE id IN (SELECT value FROM json_each(?1))
                 ORDER BY log_ms DESC, log_seq DESC LIMIT 1
                 ON CONFLICT (id) DO UPDATE SET log_ms = excluded.log_ms, log_seq = excluded.log_seq
                 WHERE (excluded.log_ms, excluded.log_seq) > (log_end.log_ms, log_end.log_seq)",
                [&list],
            )?;
            tx.execute(
                "DELETE FROM real_time_events WHERE id IN (SELECT value FROM json_each(?1))",
                [&list],
            )?;
            tx.execute("DELETE FROM dead_letters WHERE id IN (SELECT value FROM json_each(?1))", [&list])?;
            tx.commit()
        })
        .await
    }

    /// The newest position this file's log holds or held (`START` for a new file).
    pub async fn log_end(&self) -> Result<LogPosition, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT * FROM (SELECT log_ms, log_seq FROM real_time_events ORDER BY log_ms DESC, log_seq DESC LIMIT 1)
             UNION ALL SELECT log_ms, log_seq FROM log_end",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let placed = rows.into_iter().map(|(ms, seq)| from_columns(ms, seq));
        Ok(placed.max().unwrap_or(LogPosition::START))
    }

    /// Marks events as dead letters: they stay until replayed, across restarts.
    pub async fn mark_dead(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let list = id_list(ids);
        self.write(ids.len(), move |writer| {
            writer
                .conn
                .execute("INSERT OR IGNORE INTO dead_letters (id) SELECT value FROM json_each(?1)", [&list])
                .map(drop)
        })
        .await
    }

    /// Unmarks every dead letter (an admin's replay); returns how many there were.
    pub async fn revive_dead(&self) -> Result<u64, StoreError> {
        let revived = self.write(1, |writer| writer.conn.execute("DELETE FROM dead_letters", [])).await?;
        Ok(revived as u64)
    }

    /// Every row, oldest first, split into live events and dead letters.
    pub async fn unstored(&self) -> Result<Unstored, StoreError> {
        let rows = sqlx::query(
            "SELECT e.*, d.id IS NOT NULL AS dead FROM real_time_events e
             LEFT JOIN dead_letters d ON d.id = e.id ORDER BY e.log_ms ASC, e.log_seq ASC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut found = Unstored { events: Vec::new(), dead: Vec::new() };
        for row in &rows {
            let dead: bool = row.try_get("dead").map_err(unavailable)?;
            let event = event_from(row)?;
            if dead {
                found.dead.push(event);
            } else {
                found.events.push(event);
            }
        }
        Ok(found)
    }
}

fn event_from(row: &SqliteRow) -> Result<Arc<ReaderEvent>, StoreError> {
    let bad = |what: &str| StoreError::Unavailable(format!("stored event has a bad {what}"));
    let id: String = row.try_get("id").map_err(unavailable)?;
    let data: String = row.try_get("event_data").map_err(unavailable)?;
    let data = Json::from_text(data).map_err(|_| bad("event_data"))?;
    let timestamp: i64 = row.try_get("timestamp").map_err(unavailable)?;
    let number = |column: &str| {
        let n: i64 = row.try_get(column).map_err(unavailable)?;
        u64::try_from(n).map_err(|_| bad(column))
    };
    Ok(Arc::new(ReaderEvent {
        id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
        user_id: Arc::from(row.try_get::<String, _>("user_id").map_err(unavailable)?),
        event_type: row.try_get("event_type").map_err(unavailable)?,
        reading: ReadingPosition::of_json(&data),
        data,
        timestamp: Millis(u64::try_from(timestamp).map_err(|_| bad("timestamp"))?),
        session_id: row.try_get("session_id").map_err(unavailable)?,
        position: LogPosition { ms: number("log_ms")?, seq: number("log_seq")? },
        sent_from: SentFrom {
            socket: Arc::from(row.try_get::<String, _>("sender_socket").map_err(unavailable)?),
            rooms: serde_json::from_str(&row.try_get::<String, _>("sender_rooms").map_err(unavailable)?)
                .map_err(|_| bad("sender_rooms"))?,
        },
    }))
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn is_embedded(&self) -> bool {
        true
    }

    async fn membership(&self) -> Result<Option<Membership>, StoreError> {
        let group: Option<String> = sqlx::query_scalar("SELECT log_group FROM log_membership")
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let ranges: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT after_ms, after_seq, until_ms, until_seq FROM log_missing ORDER BY after_ms, after_seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let missing =
            ranges.into_iter().map(|(a, b, c, d)| (from_columns(a, b), from_columns(c, d))).collect();
        Ok(Some(Membership { group, end: self.log_end().await?, missing }))
    }

    async fn join_log(
        &self,
        group: &str,
        missing: Option<(LogPosition, LogPosition)>,
    ) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.write(1, move |writer| {
            let tx = writer.conn.transaction()?;
            tx.execute(
                "INSERT INTO log_membership (id, log_group) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET log_group = excluded.log_group",
                [&group],
            )?;
            if let Some(stretch) = missing {
                tx.execute(
                    "INSERT OR IGNORE INTO log_missing (after_ms, after_seq, until_ms, until_seq)
                     VALUES (?1, ?2, ?3, ?4)",
                    stretch_columns(stretch),
                )?;
            }
            tx.commit()
        })
        .await
    }

    async fn filled(
        &self,
        stretch: (LogPosition, LogPosition),
        to: Option<LogPosition>,
    ) -> Result<(), StoreError> {
        self.write(1, move |writer| {
            let which = "after_ms = ?1 AND after_seq = ?2 AND until_ms = ?3 AND until_seq = ?4";
            let [a, b, c, d] = stretch_columns(stretch);
            match to {
                None => writer.conn.execute(&format!("DELETE FROM log_missing WHERE {which}"), [a, b, c, d]),
                Some(to) => writer.conn.execute(
                    &format!("UPDATE log_missing SET after_ms = ?5, after_seq = ?6 WHERE {which}"),
                    [a, b, c, d, to.ms as i64, to.seq as i64],
                ),
            }
        })
        .await
        .map(drop)
    }

    async fn insert(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.write(events.len(), move |writer| {
            writer.commit(events.iter().map(|e| (&**e, None)), 0).map(drop)
        })
        .await
    }

    async fn append(
        &self,
        entries: &[Arc<LogEntry>],
        window_ms: u64,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let entries = entries.to_vec();
        self.write(entries.len(), move |writer| {
            writer.commit(entries.iter().map(|e| (&*e.event, e.key.as_deref())), window_ms)
        })
        .await
    }

    async fn recent(&self, query: &HistoryQuery) -> Result<Page, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM real_time_events WHERE 1 = 1");
        if let Some(user) = &query.user_id {
            q.push(" AND user_id = ").push_bind(user.clone());
        }
        if let Some(readers) = &query.readers {
            push_readers(&mut q, readers);
        }
        if !query.event_types.is_empty() {
            q.push(" AND event_type IN (");
            let mut list = q.separated(", ");
            for t in &query.event_types {
                list.push_bind(t.clone());
            }
            q.push(")");
        }
        let after = match query.since {
            Some(since) => Some(self.position_of(since).await?),
            None => None,
        };
        super::push_log_order(&mut q, after);
        q.push(" LIMIT ").push_bind(query.limit as i64 + 1);
        let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
        super::page(&rows, query.limit, event_from)
    }

    fn sessions(self: Arc<Self>) -> Option<Arc<dyn crate::sessions::Sessions>> {
        Some(self)
    }

    async fn replay(
        &self,
        from: ReplayFrom,
        filter: &ReplayFilter,
        limit: usize,
    ) -> Result<Option<Replay>, StoreError> {
        let after = match from {
            ReplayFrom::Position(after) => after,
            ReplayFrom::Event(id) => match self.stored_position(id).await? {
                Some(after) => after,
                None => return Ok(None),
            },
        };
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM real_time_events WHERE 1 = 1");
        if let Some(readers) = &filter.readers {
            push_readers(&mut q, readers);
        }
        super::push_replay_filter(&mut q, filter, "instr", push_rooms, after, limit);
        let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
        let events = rows.iter().map(event_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Some((after, events)))
    }

    async fn assignments(&self, consultant: Option<&str>) -> Result<AssignmentTable, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT consultant_id, user_id FROM consultant_assignments
             WHERE active = 1 AND (?1 IS NULL OR consultant_id = ?1)",
        )
        .bind(consultant)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(super::table_of(rows))
    }

    async fn assign(&self, consultant: &str, readers: &BTreeSet<String>) -> Result<(), StoreError> {
        let list = serde_json::to_string(readers).unwrap_or_else(|_| "[]".into());
        let consultant = consultant.to_owned();
        self.write(readers.len(), move |writer| {
            let tx = writer.conn.transaction()?;
            for sql in [
                "UPDATE consultant_assignments SET active = 0, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE consultant_id = ?1 AND active = 1 AND user_id NOT IN (SELECT value FROM json_each(?2))",
                "UPDATE consultant_assignments SET active = 1, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE consultant_id = ?1 AND active = 0 AND user_id IN (SELECT value FROM json_each(?2))",
                "INSERT INTO consultant_assignments (consultant_id, user_id)
                 SELECT ?1, r.value FROM json_each(?2) r
                 WHERE NOT EXISTS (SELECT 1 FROM consultant_assignments a
                                   WHERE a.consultant_id = ?1 AND a.user_id = r.value)",
            ] {
                tx.execute(sql, params![consultant, list])?;
            }
            tx.commit()
        })
        .await
    }

    async fn newest(&self, n: usize) -> Result<Page, StoreError> {
        let rows = sqlx::query("SELECT * FROM real_time_events ORDER BY log_ms DESC, log_seq DESC LIMIT ?")
            .bind(n as i64 + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        super::page(&rows, n, event_from)
    }

    async fn dashboard(&self, since: Millis) -> Result<Vec<DashboardRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT (timestamp / 3600000) * 3600000 AS hour, event_type,
                    COUNT(*) AS event_count, COUNT(DISTINCT user_id) AS unique_users
             FROM real_time_events WHERE log_ms >= ? AND timestamp >= ?
             GROUP BY hour, event_type ORDER BY hour DESC, event_type ASC",
        )
        .bind(since.0.saturating_sub(alice_core::PLACED_WITHIN_MS) as i64)
        .bind(since.0 as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                Ok(DashboardRow {
                    hour: Millis(r.try_get::<i64, _>("hour").map_err(unavailable)?.max(0) as u64).rfc3339(),
                    event_type: r.try_get("event_type").map_err(unavailable)?,
                    event_count: r.try_get("event_count").map_err(unavailable)?,
                    unique_users: r.try_get("unique_users").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn failed(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Rejected(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// How long a commit on a blocking thread waits for SQLite's write lock when another process
/// holds it (this node is the file's only writer otherwise).
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// Opens the appending connection on `file`, which the setup has made a WAL file. Its commits are
/// in the operating system's hands when they return (synchronous=NORMAL, as for the pool).
/// It does not wait for the write lock: a commit on the runtime's thread that found another
/// process writing the file (`sqlite3` opened on it by hand) would hold up every socket while
/// it waited, so it fails at once instead and is retried after a backoff. Commits on a blocking
/// thread wait up to [`BUSY_WAIT`].
fn open_writer(file: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(file)?;
    conn.busy_timeout(Duration::ZERO)?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES};"
    ))?;
    Ok(conn)
}

/// An event's row. An append retried after part of it landed puts an event in the log twice;
/// readers show the first copy, so the store keeps the earliest position it is given.
const INSERT_EVENT: &str = "
    INSERT INTO real_time_events
    (id, user_id, event_type, event_data, timestamp, session_id, created_at, log_ms, log_seq,
     sender_socket, sender_rooms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT (id) DO UPDATE SET log_ms = excluded.log_ms, log_seq = excluded.log_seq
    WHERE (excluded.log_ms, excluded.log_seq) < (real_time_events.log_ms, real_time_events.log_seq)";

/// The event that took a user's key, if it is younger than the window.
const FIRST_WITH_KEY: &str = "
    SELECT event_id FROM client_keys WHERE user_id = ?1 AND client_event_id = ?2 AND accepted_ms >= ?3";

const RECORD_KEY: &str = "
    INSERT INTO client_keys (user_id, client_event_id, event_id, accepted_ms) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (user_id, client_event_id)
    DO UPDATE SET event_id = excluded.event_id, accepted_ms = excluded.accepted_ms";

const SAVE_SESSION: &str = "
    INSERT INTO recovery_sessions (pid, session, expires_ms) VALUES (?1, ?2, ?3)
    ON CONFLICT (pid) DO UPDATE SET session = excluded.session, expires_ms = excluded.expires_ms";

/// Ids as one JSON array, which a statement reads with `json_each`.
fn id_list(ids: &[Uuid]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// Commits of up to this many rows run on the task that asks for them (about 100 µs or less
/// here); larger ones (a burst, a consumer catching up) on a blocking thread, so that no worker of
/// the runtime stalls long.
const INLINE_ROWS: usize = 16;

impl SqliteStore {
    /// Runs `work`, a commit of about `rows` rows, on the writer, and counts it.
    async fn write<T, W>(&self, rows: usize, work: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&mut Writer) -> rusqlite::Result<T> + Send + 'static,
    {
        let mut writer = self.writer.clone().lock_owned().await;
        let (writer, done) = if rows <= INLINE_ROWS {
            let done = work(&mut writer);
            (writer, done)
        } else {
            tokio::task::spawn_blocking(move || {
                // Setting a busy timeout cannot fail but for a misuse of the connection, which
                // the commit itself would then report.
                let _ = writer.conn.busy_timeout(BUSY_WAIT);
                let done = work(&mut writer);
                let _ = writer.conn.busy_timeout(Duration::ZERO);
                (writer, done)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("the commit did not finish: {e}")))?
        };
        let done = done.map_err(failed)?;
        self.wrote(writer, rows);
        Ok(done)
    }

    /// Counts a commit of `rows` rows, and past the marks starts a [`checkpoint`] unless one is
    /// under way.
    fn wrote(&self, mut writer: tokio::sync::OwnedMutexGuard<Writer>, rows: usize) {
        writer.commits += 1;
        writer.events += rows;
        let due = writer.commits >= CHECKPOINT_AFTER_COMMITS || writer.events >= CHECKPOINT_AFTER_EVENTS;
        if due && !writer.checkpointing {
            (writer.commits, writer.events, writer.checkpointing) = (0, 0, true);
            drop(writer);
            tokio::spawn(checkpoint(self.pool.clone(), self.writer.clone()));
        }
    }
}

impl Writer {
    /// One commit of events, each with its key if it has one: a keyed event's key is looked up
    /// (an index probe) and recorded, and the events that are no repeats are inserted. Events
    /// without keys pay nothing for keys. Returns the repeats, each as (its id, the first's id).
    fn commit<'a>(
        &mut self,
        events: impl Iterator<Item = (&'a ReaderEvent, Option<&'a str>)>,
        window_ms: u64,
    ) -> rusqlite::Result<Vec<(Uuid, Uuid)>> {
        let created = chrono_ms();
        // The write lock from the start: a transaction that read first (a key's lookup) and then
        // found the lock taken could not wait for it, whatever the busy timeout.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut repeats = Vec::new();
        let mut keyed = false;
        for (e, key) in events {
            if let Some(key) = key {
                keyed = true;
                let since = e.timestamp.0.saturating_sub(window_ms) as i64;
                let first: Option<String> = tx
                    .prepare_cached(FIRST_WITH_KEY)?
                    .query_row(params![&*e.user_id, key, since], |row| row.get(0))
                    .optional()?;
                match first.and_then(|f| Uuid::parse_str(&f).ok()) {
                    // Its own key, from an earlier attempt of this append that did commit.
                    Some(first) if first == e.id => {}
                    Some(first) => {
                        repeats.push((e.id, first));
                        continue;
                    }
                    None => {
                        tx.prepare_cached(RECORD_KEY)?.execute(params![
                            &*e.user_id,
                            key,
                            e.id.to_string(),
                            e.timestamp.0 as i64
                        ])?;
                    }
                }
            }
            let rooms = serde_json::to_string(&e.sent_from.rooms).unwrap_or_else(|_| "[]".into());
            tx.prepare_cached(INSERT_EVENT)?.execute(params![
                e.id.to_string(),
                &*e.user_id,
                e.event_type,
                e.data.get(),
                e.timestamp.0 as i64,
                e.session_id,
                created,
                e.position.ms as i64,
                e.position.seq as i64,
                &*e.sent_from.socket,
                rooms,
            ])?;
        }
        tx.commit()?;
        if keyed {
            self.keyed_commits += 1;
            if self.keyed_commits >= PRUNE_KEYS_EVERY {
                self.keyed_commits = 0;
                let horizon = chrono_ms().saturating_sub(window_ms as i64);
                if let Err(e) = self.conn.execute("DELETE FROM client_keys WHERE accepted_ms < ?1", [horizon])
                {
                    tracing::debug!(error = %e, "could not delete expired keys; the next prune retries");
                }
            }
        }
        Ok(repeats)
    }
}

/// Copies the write-ahead log into the file in two steps. The first, on a connection of the
/// pool (when one is free), copies what was committed when it began while appends go on; it is
/// most of the work (a copy of 200 commits took about 2 ms here). The second holds the writer
/// and copies what was committed during the first, its syncs included; the log is then wholly
/// copied, unless a reader of the pool still holds an older snapshot, and the next commit starts
/// it again from the beginning. Without the second step a stream of commits would never let the
/// log restart, and it would grow. Appends wait only for the second step, which runs on a
/// blocking thread (it syncs the file).
async fn checkpoint(pool: SqlitePool, writer: Arc<tokio::sync::Mutex<Writer>>) {
    const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
    if let Some(mut conn) = pool.try_acquire() {
        if let Err(e) = sqlx::query(CHECKPOINT).execute(&mut *conn).await {
            tracing::debug!(error = %e, "write-ahead log checkpoint beside the writer failed");
        }
    }
    let mut writer = writer.lock_owned().await;
    let copied = tokio::task::spawn_blocking(move || {
        // (busy, frames in the log, frames copied)
        let copied = writer.conn.query_row(CHECKPOINT, [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        writer.checkpointing = false;
        copied.map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|copied| copied);
    match copied {
        Ok((0, log, done)) if done >= log => {}
        Ok((busy, log, done)) => {
            tracing::debug!(busy, log, done, "write-ahead log not wholly copied; the next checkpoint goes on")
        }
        Err(e) => tracing::debug!(error = %e, "write-ahead log checkpoint failed; the next one retries"),
    }
}

/// Sessions for connection state recovery, in this file (a single node's).
#[async_trait::async_trait]
impl crate::sessions::Sessions for SqliteStore {
    async fn load(&self, pid: &str) -> Result<Option<alice_core::SavedSession>, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT session FROM recovery_sessions WHERE pid = ? AND expires_ms >= ?")
                .bind(pid)
                .bind(chrono_ms())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(found.and_then(|text| serde_json::from_str(&text).ok()))
    }

    async fn save(&self, pid: &str, session: &alice_core::SavedSession) -> Result<(), StoreError> {
        let text = serde_json::to_string(session).map_err(|e| StoreError::Rejected(e.to_string()))?;
        let (pid, expires_ms) = (pid.to_owned(), session.expires_ms as i64);
        // Expired sessions go as new ones come (a lookup never returns one).
        let saved = self.sessions_saved.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let purge = saved.is_multiple_of(PURGE_SESSIONS_EVERY);
        self.write(1, move |writer| {
            writer.conn.prepare_cached(SAVE_SESSION)?.execute(params![pid, text, expires_ms])?;
            if purge {
                writer.conn.execute("DELETE FROM recovery_sessions WHERE expires_ms < ?1", [chrono_ms()])?;
            }
            Ok(())
        })
        .await
    }

    async fn forget(&self, pid: &str) -> Result<(), StoreError> {
        let pid = pid.to_owned();
        self.write(1, move |writer| {
            writer
                .conn
                .prepare_cached("DELETE FROM recovery_sessions WHERE pid = ?1")?
                .execute([pid])
                .map(drop)
        })
        .await
    }
}
