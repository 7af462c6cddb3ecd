//! The PostgreSQL event store: a Supabase project's database (through its transaction or session
//! pooler, so no prepared-statement cache) or any PostgreSQL. Keeps the original project's tables
//! and views; inserts are batched with UNNEST and idempotent by id. It never lets a database
//! error text reach a client.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alice_core::replies::Json;
use alice_core::ReadingPosition;
use alice_core::{
    AssignmentTable, HistoryQuery, LogPosition, Millis, ReaderEvent, ReplayFilter, ReplayFrom, SentFrom,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use std::collections::BTreeSet;
use uuid::Uuid;

use super::{DashboardRow, EventStore, Page, Replay, Session, StoreError};

/// The migrations embedded in the binary (`alice-realtime migrate`, and at start).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel the migration's trigger notifies on every change to `consultant_assignments`.
const ASSIGNMENTS_CHANNEL: &str = "alice_realtime_assignments";

/// How long a listener that failed waits before it connects again.
const LISTEN_RETRY: Duration = Duration::from_secs(5);

/// Wakes the core on every notification of the assignments trigger. Polling stays underneath:
/// a notification is lost while the listener reconnects (so a reconnect wakes the core too), and
/// never arrives through a transaction pooler, which cannot hold a `LISTEN`.
///
/// The listener holds a connection of its own, outside the pool: the pool's are for the store's
/// calls (a pool of one would otherwise be left with none).
async fn listen_for_assignments(url: String, wake: Box<dyn Fn() -> bool + Send + Sync>) {
    while wake() {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for assignment changes; polling only for now");
                tokio::time::sleep(LISTEN_RETRY).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(ASSIGNMENTS_CHANNEL).await {
            tracing::debug!(error = %e, "LISTEN for assignment changes failed; polling only for now");
            tokio::time::sleep(LISTEN_RETRY).await;
            continue;
        }
        tracing::info!("listening for consultant assignment changes");
        loop {
            // A notification, or a dropped connection (the listener reconnects on the next call,
            // and whatever changed meanwhile went unheard): either way, read the table again.
            match listener.try_recv().await {
                Ok(_) if wake() => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "the assignments listener failed");
                    break;
                }
            }
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

/// Pool and timeout settings.
#[derive(Clone, Debug)]
pub struct PgSettings {
    pub url: String,
    pub pool_size: u32,
    pub timeout: Duration,
}

pub struct PgStore {
    pool: PgPool,
    timeout: Duration,
    /// `uuid` on a Supabase database with the original schema, `text` on ours.
    user_id_type: &'static str,
    /// The same for `consultant_assignments` (the Alice Suite's table has uuid ids).
    assignment_id_type: &'static str,
    /// Whether that table has `updated_at` (ours does; the suite's may not).
    assignment_updated_at: bool,
    /// For a `LISTEN` connection of its own, outside the pool.
    url: String,
}

/// Data and constraint errors are the data's fault: retry those events alone. Everything else
/// (connections, timeouts, a database restarting) is the database's: retry as it is.
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code.starts_with("22") || code.starts_with("23") {
                StoreError::Rejected(e.to_string())
            } else {
                StoreError::Unavailable(e.to_string())
            }
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

impl PgStore {
    /// Connects (lazily: the server starts and reports `degraded` while the database is down).
    pub fn connect(settings: &PgSettings) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(&settings.url)
            .map_err(|_| StoreError::Unavailable("DATABASE_URL is not a valid PostgreSQL URL".into()))?
            // Supabase's transaction pooler cannot keep prepared statements between transactions:
            // no cache here, and every query is sent unnamed (`persistent(false)`).
            .statement_cache_capacity(0)
            // PgBouncer refuses this startup parameter unless told to ignore it; we need no float text.
            .extra_float_digits(None)
            .application_name("alice-realtime");
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size)
            .acquire_timeout(settings.timeout)
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            timeout: settings.timeout,
            user_id_type: "text",
            assignment_id_type: "text",
            assignment_updated_at: true,
            url: settings.url.clone(),
        })
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    /// Reads how the existing schema types user ids (uuid on the original Supabase schema and in
    /// the Alice Suite's `consultant_assignments`).
    pub async fn inspect(mut self) -> Result<PgStore, StoreError> {
        let id_type = |ty: Option<String>| if ty.as_deref() == Some("uuid") { "uuid" } else { "text" };
        self.user_id_type = id_type(self.column_type("real_time_events", "user_id").await?);
        self.assignment_id_type = id_type(self.column_type("consultant_assignments", "user_id").await?);
        self.assignment_updated_at =
            self.column_type("consultant_assignments", "updated_at").await?.is_some();
        Ok(self)
    }

    /// A column's data type, if the table has it.
    async fn column_type(&self, table: &str, column: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin().await?;
        let ty: Option<String> = self
            .bounded(
                sqlx::query_scalar(
                    "SELECT data_type FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
                )
                .bind(table)
                .bind(column)
                .persistent(false)
                .fetch_optional(&mut *tx),
            )
            .await?;
        self.bounded(tx.commit()).await?;
        Ok(ty)
    }

    /// Narrows a query to these readers' events (a scoped consultant's).
    fn push_readers(&self, q: &mut QueryBuilder<'_, Postgres>, readers: &[String]) {
        let possible: Vec<String> = readers.iter().filter(|r| self.possible_user(r)).cloned().collect();
        q.push(" AND user_id = ANY(CAST(").push_bind(possible).push(format!(" AS {}[]))", self.user_id_type));
    }

    /// Every call runs in an explicit transaction: a transaction pooler keeps one server
    /// connection for it, so the statement sqlx prepares is still there when it is executed.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.bounded(self.pool.begin()).await
    }

    /// Runs one statement in its own transaction.
    async fn execute(
        &self,
        q: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.bounded(q.persistent(false).execute(&mut *tx)).await?;
        self.bounded(tx.commit()).await
    }

    /// Fetches the rows of one query in its own transaction.
    async fn fetch(&self, mut q: QueryBuilder<'_, Postgres>) -> Result<Vec<PgRow>, StoreError> {
        let mut tx = self.begin().await?;
        let rows = self.bounded(q.build().persistent(false).fetch_all(&mut *tx)).await?;
        self.bounded(tx.commit()).await?;
        Ok(rows)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(StoreError::Unavailable("database call timed out".into())),
        }
    }

    /// Where the event `id` stands in the log; an id this store does not hold reads as a time.
    async fn position_of(&self, id: Uuid) -> Result<LogPosition, StoreError> {
        Ok(self.stored_position(id).await?.unwrap_or_else(|| alice_core::history::position_by_time(id)))
    }

    /// Where the event `id` stands in the log, if this store holds it.
    async fn stored_position(&self, id: Uuid) -> Result<Option<LogPosition>, StoreError> {
        let mut q = QueryBuilder::new("SELECT log_ms, log_seq FROM real_time_events WHERE id = CAST(");
        q.push_bind(id.to_string()).push(" AS uuid)");
        let rows = self.fetch(q).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let ms: i64 = row.try_get("log_ms").map_err(classify)?;
        let seq: i64 = row.try_get("log_seq").map_err(classify)?;
        Ok(Some(LogPosition { ms: ms.max(0) as u64, seq: seq.max(0) as u64 }))
    }

    /// Whether `user` can be a user id in this schema (on a uuid column, only uuids can).
    fn possible_user(&self, user: &str) -> bool {
        self.user_id_type != "uuid" || alice_core::principal::is_uuid_user_id(user)
    }

    fn select(&self) -> QueryBuilder<'static, Postgres> {
        QueryBuilder::new(
            "SELECT id::text AS id, user_id::text AS user_id, event_type::text AS event_type,
                    event_data::text AS event_data,
                    round(extract(epoch FROM timestamp) * 1000)::int8 AS ts,
                    COALESCE(session_id, '')::text AS session_id, log_ms, log_seq,
                    sender_socket, sender_rooms
             FROM real_time_events WHERE true",
        )
    }
}

fn event_from(row: &PgRow) -> Result<Arc<ReaderEvent>, StoreError> {
    let bad = |what: &str| StoreError::Unavailable(format!("stored event has a bad {what}"));
    let get = |col: &str| row.try_get::<String, _>(col).map_err(classify);
    let ts: i64 = row.try_get("ts").map_err(classify)?;
    let number = |column: &str| {
        let n: i64 = row.try_get(column).map_err(classify)?;
        u64::try_from(n).map_err(|_| bad(column))
    };
    let data = Json::from_text(get("event_data")?).map_err(|_| bad("event_data"))?;
    Ok(Arc::new(ReaderEvent {
        id: Uuid::parse_str(&get("id")?).map_err(|_| bad("id"))?,
        user_id: Arc::from(get("user_id")?),
        event_type: get("event_type")?,
        reading: ReadingPosition::of_json(&data),
        data,
        timestamp: Millis(u64::try_from(ts).map_err(|_| bad("timestamp"))?),
        session_id: get("session_id")?,
        position: LogPosition { ms: number("log_ms")?, seq: number("log_seq")? },
        sent_from: SentFrom {
            socket: Arc::from(get("sender_socket")?),
            rooms: row.try_get::<Vec<String>, _>("sender_rooms").map_err(classify)?,
        },
    }))
}

/// Narrows a replay's query to events sent on a socket in any of `rooms`.
fn push_rooms(q: &mut QueryBuilder<'_, Postgres>, rooms: &[String]) {
    q.push("sender_rooms && CAST(").push_bind(rooms.to_vec()).push(" AS text[])");
}

#[async_trait::async_trait]
impl EventStore for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn refuses_nul(&self) -> bool {
        true
    }

    fn user_ids_are_uuids(&self) -> bool {
        self.user_id_type == "uuid"
    }

    fn assignment_ids_are_uuids(&self) -> bool {
        self.assignment_id_type == "uuid"
    }

    /// Idempotent by id; of two copies of one event (an append retried after part of it landed
    /// puts it in the log twice, and readers show the first), the earliest position stays.
    async fn insert(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = super::earliest_copies(events);
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let users: Vec<String> = events.iter().map(|e| e.user_id.to_string()).collect();
        let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
        let data: Vec<String> = events.iter().map(|e| e.data.get().to_owned()).collect();
        let stamps: Vec<i64> = events.iter().map(|e| e.timestamp.0 as i64).collect();
        let sessions: Vec<String> = events.iter().map(|e| e.session_id.clone()).collect();
        let log_ms: Vec<i64> = events.iter().map(|e| e.position.ms as i64).collect();
        let log_seq: Vec<i64> = events.iter().map(|e| e.position.seq as i64).collect();
        let pids: Vec<String> = events.iter().map(|e| e.sent_from.socket.to_string()).collect();
        // One text per event (PostgreSQL arrays cannot nest rows of different lengths).
        let rooms: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(&e.sent_from.rooms).unwrap_or_else(|_| "[]".into()))
            .collect();
        let sql = format!(
            "INSERT INTO real_time_events
                 (id, user_id, event_type, event_data, timestamp, session_id, metadata, log_ms, log_seq,
                  sender_socket, sender_rooms)
             SELECT id::uuid, user_id::{}, event_type, event_data::jsonb, to_timestamp(ts / 1000.0), session_id,
                    '{{}}'::jsonb, log_ms, log_seq, sender_socket,
                    ARRAY(SELECT jsonb_array_elements_text(sender_rooms::jsonb))
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::int8[], $8::int8[],
                         $9::text[], $10::text[])
                  AS t(id, user_id, event_type, event_data, ts, session_id, log_ms, log_seq, sender_socket, sender_rooms)
             ON CONFLICT (id) DO UPDATE SET log_ms = EXCLUDED.log_ms, log_seq = EXCLUDED.log_seq
             WHERE (EXCLUDED.log_ms, EXCLUDED.log_seq) < (real_time_events.log_ms, real_time_events.log_seq)",
            self.user_id_type
        );
        let q = sqlx::query(&sql).bind(ids).bind(users).bind(types).bind(data).bind(stamps).bind(sessions);
        self.execute(q.bind(log_ms).bind(log_seq).bind(pids).bind(rooms)).await
    }

    async fn recent(&self, query: &HistoryQuery) -> Result<Page, StoreError> {
        let mut q = self.select();
        if let Some(user) = &query.user_id {
            if !self.possible_user(user) {
                return Ok((Vec::new(), false));
            }
            q.push(" AND user_id = CAST(")
                .push_bind(user.clone())
                .push(format!(" AS {})", self.user_id_type));
        }
        if let Some(readers) = &query.readers {
            self.push_readers(&mut q, readers);
        }
        if !query.event_types.is_empty() {
            q.push(" AND event_type = ANY(").push_bind(query.event_types.clone()).push(")");
        }
        let after = match query.since {
            Some(since) => Some(self.position_of(since).await?),
            None => None,
        };
        super::push_log_order(&mut q, after);
        q.push(" LIMIT ").push_bind(query.limit as i64 + 1);
        super::page(&self.fetch(q).await?, query.limit, event_from)
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
        let mut q = self.select();
        if let Some(readers) = &filter.readers {
            self.push_readers(&mut q, readers);
        }
        super::push_replay_filter(&mut q, filter, "strpos", push_rooms, after, limit);
        let events = self.fetch(q).await?.iter().map(event_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Some((after, events)))
    }

    async fn assignments(&self, consultant: Option<&str>) -> Result<AssignmentTable, StoreError> {
        let mut tx = self.begin().await?;
        let rows: Vec<(String, String)> = self
            .bounded(
                sqlx::query_as(
                    "SELECT consultant_id::text, user_id::text FROM consultant_assignments
                     WHERE active AND ($1::text IS NULL OR consultant_id::text = $1)",
                )
                .bind(consultant)
                .persistent(false)
                .fetch_all(&mut *tx),
            )
            .await?;
        self.bounded(tx.commit()).await?;
        Ok(super::table_of(rows))
    }

    async fn assign(&self, consultant: &str, readers: &BTreeSet<String>) -> Result<(), StoreError> {
        let ty = self.assignment_id_type;
        let touched = if self.assignment_updated_at { ", updated_at = now()" } else { "" };
        let readers: Vec<String> = readers.iter().cloned().collect();
        let mut tx = self.begin().await?;
        // Two replacements of one consultant's set at once take turns.
        let lock =
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('alice-assign:' || $1))").bind(consultant);
        self.bounded(lock.persistent(false).execute(&mut *tx)).await?;
        for sql in [
            format!(
                "UPDATE consultant_assignments SET active = false{touched}
                 WHERE consultant_id = CAST($1 AS {ty}) AND active AND NOT (user_id = ANY(CAST($2 AS {ty}[])))"
            ),
            format!(
                "UPDATE consultant_assignments SET active = true{touched}
                 WHERE consultant_id = CAST($1 AS {ty}) AND NOT active AND user_id = ANY(CAST($2 AS {ty}[]))"
            ),
            format!(
                "INSERT INTO consultant_assignments (consultant_id, user_id, active)
                 SELECT CAST($1 AS {ty}), r, true FROM unnest(CAST($2 AS {ty}[])) r
                 WHERE NOT EXISTS (SELECT 1 FROM consultant_assignments a
                                   WHERE a.consultant_id = CAST($1 AS {ty}) AND a.user_id = r)"
            ),
        ] {
            let q = sqlx::query(&sql).bind(consultant).bind(&readers).persistent(false);
            self.bounded(q.execute(&mut *tx)).await?;
        }
        self.bounded(tx.commit()).await
    }

    fn watch_assignments(&self, wake: Box<dyn Fn() -> bool + Send + Sync>) {
        tokio::spawn(listen_for_assignments(self.url.clone(), wake));
    }

    async fn newest(&self, n: usize) -> Result<Page, StoreError> {
        let mut q = self.select();
        q.push(" ORDER BY log_ms DESC, log_seq DESC LIMIT ").push_bind(n as i64 + 1);
        super::page(&self.fetch(q).await?, n, event_from)
    }

    async fn dashboard(&self, since: Millis) -> Result<Vec<DashboardRow>, StoreError> {
        let mut q = QueryBuilder::new(
            "SELECT round(extract(epoch FROM date_trunc('hour', timestamp AT TIME ZONE 'UTC')) * 1000)::int8 AS hour,
                    event_type::text AS event_type, COUNT(*)::int8 AS event_count,
                    COUNT(DISTINCT user_id)::int8 AS unique_users
             FROM real_time_events WHERE timestamp >= to_timestamp(",
        );
        q.push_bind(since.0 as i64).push(" / 1000.0) GROUP BY 1, 2 ORDER BY 1 DESC, 2 ASC");
        let rows = self.fetch(q).await?;
        rows.iter()
            .map(|r| {
                Ok(DashboardRow {
                    hour: Millis(r.try_get::<i64, _>("hour").map_err(classify)?.max(0) as u64).rfc3339(),
                    event_type: r.try_get("event_type").map_err(classify)?,
                    event_count: r.try_get("event_count").map_err(classify)?,
                    unique_users: r.try_get("unique_users").map_err(classify)?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.execute(sqlx::query("SELECT 1")).await
    }

    async fn session_opened(&self, s: &Session) -> Result<(), StoreError> {
        if !self.possible_user(&s.user_id) {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO active_sessions (user_id, session_id, last_activity, is_active)
             VALUES ($1::{}, $2, to_timestamp($3 / 1000.0), true)
             ON CONFLICT (session_id) DO UPDATE SET last_activity = EXCLUDED.last_activity, is_active = true",
            self.user_id_type
        );
        self.execute(sqlx::query(&sql).bind(&s.user_id).bind(&s.session_id).bind(s.at.0 as i64)).await
    }

    async fn session_closed(&self, s: &Session) -> Result<(), StoreError> {
        let q = sqlx::query(
            "UPDATE active_sessions SET is_active = false, last_activity = to_timestamp($2 / 1000.0)
             WHERE session_id = $1",
        );
        self.execute(q.bind(&s.session_id).bind(s.at.0 as i64)).await
    }
}
