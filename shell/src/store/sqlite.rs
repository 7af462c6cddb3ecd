//! The embedded event store: one SQLite file under `DATA_DIR`, in WAL mode. The default when no
//! `DATABASE_URL` is set (its commit is then the node's log), and the local outbox in front of
//! PostgreSQL (`outbox.db`). In a cluster each node's file holds every event of the cluster.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alice_core::replies::Json;
use alice_core::{HistoryQuery, LogPosition, Millis, ReaderEvent};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::{DashboardRow, EventStore, Page, StoreError};

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
    log_seq     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS log_end (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    log_ms      INTEGER NOT NULL,
    log_seq     INTEGER NOT NULL
);
";

/// Files written before events had log positions: each old event is placed at its time, then in
/// the order it was stored. Idempotent; the caller runs it only when the columns are missing.
const ADD_POSITIONS: &str = "
ALTER TABLE real_time_events ADD COLUMN log_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE real_time_events ADD COLUMN log_seq INTEGER NOT NULL DEFAULT 0;
UPDATE real_time_events SET log_ms = timestamp, log_seq = rowid;
";

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

/// How far an event's position may be placed from its timestamp (the clocks of the accepting
/// node and of Redis): a time range over timestamps scans positions this much wider.
const PLACED_WITHIN_MS: i64 = 3_600_000;

pub struct SqliteStore {
    pool: SqlitePool,
    /// The one connection that appends events. Held apart from the pool so that its page cache
    /// stays warm (no other connection writes the events table under it) and no pool check
    /// precedes each append.
    writer: Arc<tokio::sync::Mutex<Writer>>,
}

/// The appending connection, and how much it wrote since it last checkpointed.
struct Writer {
    conn: SqliteConnection,
    commits: u32,
    events: usize,
}

/// The writer copies its write-ahead log into the file after this many commits or events, once
/// the commit that crossed the mark has returned: no append waits for a checkpoint it did not
/// collide with. (SQLite's own automatic checkpoint runs inside the commit that crosses 1,000
/// pages, and every event in that commit waited for it; it stays as a backstop at 10,000.)
const CHECKPOINT_AFTER_COMMITS: u32 = 200;
const CHECKPOINT_AFTER_EVENTS: usize = 2_000;

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
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(unavailable)?;
        let positioned: bool = sqlx::query_scalar(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('real_time_events') WHERE name = 'log_ms'",
        )
        .fetch_one(&pool)
        .await
        .map_err(unavailable)?;
        if !positioned {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            sqlx::raw_sql(ADD_POSITIONS).execute(&mut *tx).await.map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
        }
        sqlx::raw_sql(INDEXES).execute(&pool).await.map_err(unavailable)?;
        let conn = options.pragma("wal_autocheckpoint", "10000").connect().await.map_err(unavailable)?;
        let writer = Arc::new(tokio::sync::Mutex::new(Writer { conn, commits: 0, events: 0 }));
        Ok(SqliteStore { pool, writer })
    }
}

impl SqliteStore {
    /// Where the event `id` stands in the log; an id this store does not hold reads as a time.
    async fn position_of(&self, id: Uuid) -> Result<LogPosition, StoreError> {
        let found: Option<(i64, i64)> =
            sqlx::query_as("SELECT log_ms, log_seq FROM real_time_events WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(match found {
            Some((ms, seq)) => LogPosition { ms: ms.max(0) as u64, seq: seq.max(0) as u64 },
            None => alice_core::history::position_by_time(id),
        })
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
        for chunk in ids.chunks(500) {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let keep_end = "INSERT INTO log_end (id, log_ms, log_seq)
                 SELECT 1, log_ms, log_seq FROM real_time_events WHERE id IN (";
            for query in [
                keep_end,
                "DELETE FROM real_time_events WHERE id IN (",
                "DELETE FROM dead_letters WHERE id IN (",
            ] {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(query);
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.to_string());
                }
                q.push(")");
                if query == keep_end {
                    q.push(
                        " ORDER BY log_ms DESC, log_seq DESC LIMIT 1
                         ON CONFLICT (id) DO UPDATE SET log_ms = excluded.log_ms, log_seq = excluded.log_seq
                         WHERE (excluded.log_ms, excluded.log_seq) > (log_end.log_ms, log_end.log_seq)",
                    );
                }
                q.build().execute(&mut *tx).await.map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
        }
        Ok(())
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
        let placed =
            rows.into_iter().map(|(ms, seq)| LogPosition { ms: ms.max(0) as u64, seq: seq.max(0) as u64 });
        Ok(placed.max().unwrap_or(LogPosition::START))
    }

    /// Marks events as dead letters: they stay until replayed, across restarts.
    pub async fn mark_dead(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("INSERT OR IGNORE INTO dead_letters (id) ");
            q.push_values(chunk, |mut b, id| {
                b.push_bind(id.to_string());
            });
            q.build().execute(&self.pool).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Unmarks every dead letter (an admin's replay); returns how many there were.
    pub async fn revive_dead(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM dead_letters").execute(&self.pool).await.map_err(unavailable)?;
        Ok(done.rows_affected())
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
    let timestamp: i64 = row.try_get("timestamp").map_err(unavailable)?;
    let number = |column: &str| {
        let n: i64 = row.try_get(column).map_err(unavailable)?;
        u64::try_from(n).map_err(|_| bad(column))
    };
    Ok(Arc::new(ReaderEvent {
        id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
        user_id: Arc::from(row.try_get::<String, _>("user_id").map_err(unavailable)?),
        event_type: row.try_get("event_type").map_err(unavailable)?,
        data: Json::from_text(data).map_err(|_| bad("event_data"))?,
        timestamp: Millis(u64::try_from(timestamp).map_err(|_| bad("timestamp"))?),
        session_id: row.try_get("session_id").map_err(unavailable)?,
        position: LogPosition { ms: number("log_ms")?, seq: number("log_seq")? },
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

    async fn insert(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let created = chrono_ms();
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO real_time_events
             (id, user_id, event_type, event_data, timestamp, session_id, created_at, log_ms, log_seq) ",
        );
        q.push_values(events, |mut b, e| {
            b.push_bind(e.id.to_string())
                .push_bind(e.user_id.to_string())
                .push_bind(e.event_type.clone())
                .push_bind(e.data.get().to_owned())
                .push_bind(e.timestamp.0 as i64)
                .push_bind(e.session_id.clone())
                .push_bind(created)
                .push_bind(e.position.ms as i64)
                .push_bind(e.position.seq as i64);
        });
        // An append retried after part of it landed puts an event in the log twice; readers show
        // the first copy, so the store keeps the earliest position it is given.
        q.push(
            " ON CONFLICT (id) DO UPDATE SET log_ms = excluded.log_ms, log_seq = excluded.log_seq
              WHERE (excluded.log_ms, excluded.log_seq) < (real_time_events.log_ms, real_time_events.log_seq)",
        );
        let mut writer = self.writer.clone().lock_owned().await;
        q.build().execute(&mut writer.conn).await.map_err(unavailable)?;
        writer.commits += 1;
        writer.events += events.len();
        if writer.commits >= CHECKPOINT_AFTER_COMMITS || writer.events >= CHECKPOINT_AFTER_EVENTS {
            (writer.commits, writer.events) = (0, 0);
            // The guard goes with the task: the next append waits until the copy is done.
            tokio::spawn(async move {
                let result = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut writer.conn).await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "write-ahead log checkpoint failed; the next one retries");
                }
            });
        }
        Ok(())
    }

    async fn recent(&self, query: &HistoryQuery) -> Result<Page, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM real_time_events WHERE 1 = 1");
        if let Some(user) = &query.user_id {
            q.push(" AND user_id = ").push_bind(user.clone());
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
        .bind(since.0 as i64 - PLACED_WITHIN_MS)
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
