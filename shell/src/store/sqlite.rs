//! The embedded event store: one SQLite file under `DATA_DIR`, in WAL mode. The default when no
//! `DATABASE_URL` is set; a cluster of SQLite nodes keeps each node's share in its own file.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alice_core::replies::Json;
use alice_core::{HistoryQuery, Millis, ReaderEvent};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
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
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_rte_user_id ON real_time_events (user_id, id);
CREATE INDEX IF NOT EXISTS idx_rte_type_id ON real_time_events (event_type, id);
CREATE INDEX IF NOT EXISTS idx_rte_timestamp ON real_time_events (timestamp);
";

pub struct SqliteStore {
    pool: SqlitePool,
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
        let options = match url {
            Some(url) => SqliteConnectOptions::from_str(url).map_err(unavailable)?,
            None => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create DATA_DIR {}: {e}", dir.display()))
                })?;
                SqliteConnectOptions::new().filename(dir.join("events.db"))
            }
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
        let pool =
            SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(unavailable)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(unavailable)?;
        Ok(SqliteStore { pool })
    }
}

fn event_from(row: &SqliteRow) -> Result<Arc<ReaderEvent>, StoreError> {
    let bad = |what: &str| StoreError::Unavailable(format!("stored event has a bad {what}"));
    let id: String = row.try_get("id").map_err(unavailable)?;
    let data: String = row.try_get("event_data").map_err(unavailable)?;
    let timestamp: i64 = row.try_get("timestamp").map_err(unavailable)?;
    Ok(Arc::new(ReaderEvent {
        id: Uuid::parse_str(&id).map_err(|_| bad("id"))?,
        user_id: Arc::from(row.try_get::<String, _>("user_id").map_err(unavailable)?),
        event_type: row.try_get("event_type").map_err(unavailable)?,
        data: Json::from_text(data).map_err(|_| bad("event_data"))?,
        timestamp: Millis(u64::try_from(timestamp).map_err(|_| bad("timestamp"))?),
        session_id: row.try_get("session_id").map_err(unavailable)?,
    }))
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let created = chrono_ms();
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO real_time_events (id, user_id, event_type, event_data, timestamp, session_id, created_at) ",
        );
        q.push_values(events, |mut b, e| {
            b.push_bind(e.id.to_string())
                .push_bind(e.user_id.to_string())
                .push_bind(e.event_type.clone())
                .push_bind(e.data.get().to_owned())
                .push_bind(e.timestamp.0 as i64)
                .push_bind(e.session_id.clone())
                .push_bind(created);
        });
        q.push(" ON CONFLICT (id) DO NOTHING");
        q.build().execute(&self.pool).await.map_err(unavailable)?;
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
        match query.since {
            Some(since) => q.push(" AND id > ").push_bind(since.to_string()).push(" ORDER BY id ASC"),
            None => q.push(" ORDER BY id DESC"),
        };
        q.push(" LIMIT ").push_bind(query.limit as i64 + 1);
        let rows = q.build().fetch_all(&self.pool).await.map_err(unavailable)?;
        super::page(&rows, query.limit, event_from)
    }

    async fn newest(&self, n: usize) -> Result<Page, StoreError> {
        let rows = sqlx::query("SELECT * FROM real_time_events ORDER BY id DESC LIMIT ?")
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
             FROM real_time_events WHERE timestamp >= ?
             GROUP BY hour, event_type ORDER BY hour DESC, event_type ASC",
        )
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
