//! The event store: where accepted events end up, exactly once (inserts are idempotent by id).
//! One trait, one implementation per database; the driver never knows which it talks to.

pub mod postgres;
pub mod sqlite;

use std::collections::BTreeSet;
use std::sync::Arc;

use alice_core::{
    AssignmentTable, HistoryQuery, LogEntry, LogPosition, Millis, ReaderEvent, ReplayFilter, ReplayFrom,
    ReplayRule, StoreFailure,
};
use uuid::Uuid;

/// One row of `dashboardStats`: an hour's count of one event type.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardRow {
    pub hour: String,
    pub event_type: String,
    pub event_count: i64,
    pub unique_users: i64,
}

/// Why a store call failed. The text is for logs only, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store rejected the data: {0}")]
    Rejected(String),
}

impl StoreError {
    pub fn failure(&self) -> StoreFailure {
        match self {
            StoreError::Unavailable(_) => StoreFailure::Unavailable,
            StoreError::Rejected(_) => StoreFailure::Rejected,
        }
    }
}

/// A reader socket's session, for the `active_sessions` table where a store keeps one.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: String,
    pub session_id: String,
    pub at: Millis,
}

/// Recent events and whether more remain beyond them.
pub type Page = (Vec<Arc<ReaderEvent>>, bool);

/// Where a resume's `since` stands, and the events after it.
pub type Replay = (LogPosition, Vec<Arc<ReaderEvent>>);

/// Turns the `limit + 1` rows a store fetched into a page: the first `limit` events, and whether
/// the extra row was there.
pub(crate) fn page<R>(
    rows: &[R],
    limit: usize,
    decode: impl Fn(&R) -> Result<Arc<ReaderEvent>, StoreError>,
) -> Result<Page, StoreError> {
    let events = rows.iter().take(limit).map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok((events, rows.len() > limit))
}

/// One copy of each event, at the earliest position among its copies. A batch read from the
/// cluster's log can hold an event twice (an append retried after part of it landed), and one
/// PostgreSQL statement cannot write a row twice.
pub(crate) fn earliest_copies(events: &[Arc<ReaderEvent>]) -> Vec<&Arc<ReaderEvent>> {
    let mut earliest: Vec<&Arc<ReaderEvent>> = Vec::with_capacity(events.len());
    let mut index: std::collections::HashMap<uuid::Uuid, usize> = std::collections::HashMap::new();
    for e in events {
        match index.get(&e.id) {
            Some(&i) if e.position < earliest[i].position => earliest[i] = e,
            Some(_) => {}
            None => {
                index.insert(e.id, earliest.len());
                earliest.push(e);
            }
        }
    }
    earliest
}

/// Ends a history query in the log's order: after `after`, oldest first; without it, newest first.
pub(crate) fn push_log_order<'a, DB>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    after: Option<alice_core::LogPosition>,
) where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    match after {
        Some(after) => q
            .push(" AND (log_ms, log_seq) > (")
            .push_bind(after.ms as i64)
            .push(", ")
            .push_bind(after.seq as i64)
            .push(") ORDER BY log_ms ASC, log_seq ASC"),
        None => q.push(" ORDER BY log_ms DESC, log_seq DESC"),
    };
}

/// Narrows a replay's query to what `filter` lets through by rule or, with `push_rooms` (the
/// database's way of asking whether the sender's rooms meet a list), through rooms: support types
/// are matched case-sensitively by `contains`, the database's name for it. After `after` in log
/// order. The store narrows it by reader itself first, in its own SQL.
pub(crate) fn push_replay_filter<'a, DB>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    filter: &ReplayFilter,
    contains: &str,
    push_rooms: impl FnOnce(&mut sqlx::QueryBuilder<'a, DB>, &[String]),
    after: LogPosition,
    limit: usize,
) where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let support =
        format!("{contains}(event_type, 'HELP_REQUEST') > 0 OR {contains}(event_type, 'FEEDBACK') > 0");
    match &filter.rule {
        ReplayRule::Subscription(types) if types.is_empty() => q.push(" AND (true"),
        ReplayRule::Subscription(types) => {
            q.push(" AND (event_type IN (");
            let mut list = q.separated(", ");
            for t in types {
                list.push_bind(t.clone());
            }
            q.push(format!(") OR {support}"))
        }
        ReplayRule::Support => q.push(format!(" AND ({support}")),
        // Not an event whose sender is unknown (stored before senders were): it may be its own.
        ReplayRule::OtherSockets { socket } => {
            q.push(" AND (sender_socket NOT IN ('', ").push_bind(socket.clone()).push(")")
        }
    };
    if !filter.rooms.is_empty() {
        q.push(" OR ");
        push_rooms(q, &filter.rooms);
    }
    q.push(")");
    push_log_order(q, Some(after));
    q.push(" LIMIT ").push_bind(limit as i64);
}

/// Rows of (consultant, reader) as the table of every consultant's set.
pub(crate) fn table_of(rows: Vec<(String, String)>) -> AssignmentTable {
    let mut table = AssignmentTable::new();
    for (consultant, reader) in rows {
        table.entry(consultant).or_default().insert(reader);
    }
    table
}

/// Where a file of this node's own stands in the cluster's log (see `log::membership`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The storing group the file last stored for: none for a new file (or one written before
    /// files recorded it), another node's group for a file copied from that node.
    pub group: Option<String>,
    /// The newest position the file holds or held.
    pub end: LogPosition,
    /// Stretches of the log that Redis trimmed before this file could store them, each as
    /// (after, until): the file may lack events placed after the first and before the second.
    pub missing: Vec<(LogPosition, LogPosition)>,
}

/// What the server needs of a database.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Which database this is, for `/health`.
    fn kind(&self) -> &'static str;
    /// Whether this store is a file of this node's own (embedded SQLite), whose commit can be the
    /// node's log. A store elsewhere (PostgreSQL) gets a local outbox in front of it.
    fn is_embedded(&self) -> bool {
        false
    }
    /// Whether this store cannot hold the character U+0000 in text (PostgreSQL): events carrying
    /// it are then refused before they are acknowledged (`alice_core::Config::store_refuses_nul`).
    fn refuses_nul(&self) -> bool {
        false
    }
    /// Whether this store keeps user ids in a `uuid` column (PostgreSQL with the original
    /// Supabase schema): readers whose id is not a hyphenated lowercase UUID are then refused on
    /// connect
    /// (`alice_core::Config::store_user_ids_are_uuids`).
    fn user_ids_are_uuids(&self) -> bool {
        false
    }
    /// Whether the assignments table keeps consultant and reader ids in `uuid` columns (the Alice
    /// Suite's own table on PostgreSQL): ids written to it must then be hyphenated lowercase
    /// UUIDs, the form PostgreSQL gives back (`principal::is_uuid_user_id`).
    fn assignment_ids_are_uuids(&self) -> bool {
        false
    }
    /// Stores events; an id already stored is skipped, so retries are safe.
    async fn insert(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError>;
    /// As the node's log (an embedded store): stores the entries' events in one commit, except
    /// an entry whose key (`clientEventId`) an event of the same user younger than `window_ms`
    /// had; returns those as (its event id, that event's id). A store that is never a log
    /// (`is_embedded` false) keeps this default, which decides no repeats.
    async fn append(
        &self,
        entries: &[Arc<LogEntry>],
        _window_ms: u64,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let events: Vec<_> = entries.iter().map(|e| e.event.clone()).collect();
        self.insert(&events).await.map(|()| Vec::new())
    }
    /// Answers a `get-recent-events` query in protocol order.
    async fn recent(&self, query: &HistoryQuery) -> Result<Page, StoreError>;
    /// A replay's events: where `from` stands in the log and up to `limit` events after it in
    /// log order that `filter` lets through; `None` when `from` names an event the store does
    /// not hold.
    async fn replay(
        &self,
        from: ReplayFrom,
        filter: &ReplayFilter,
        limit: usize,
    ) -> Result<Option<Replay>, StoreError>;
    /// The newest `n` events, newest first, and whether they are all there is.
    async fn newest(&self, n: usize) -> Result<Page, StoreError>;
    /// Active consultant assignments (consultant scope), all of them or one consultant's.
    async fn assignments(&self, consultant: Option<&str>) -> Result<AssignmentTable, StoreError>;
    /// Replaces one consultant's active set in one transaction: assignments to readers not in
    /// `readers` end (`active` false), the others are active, missing ones are added.
    async fn assign(&self, consultant: &str, readers: &BTreeSet<String>) -> Result<(), StoreError>;
    /// Calls `wake` whenever the assignments table may have changed, where the database can say
    /// so (PostgreSQL's `LISTEN`), until it returns false (the server stopped). Other stores say
    /// nothing; the refresh timer reads them anyway.
    fn watch_assignments(&self, _wake: Box<dyn Fn() -> bool + Send + Sync>) {}
    /// Hourly counts by event type since `since`.
    async fn dashboard(&self, since: Millis) -> Result<Vec<DashboardRow>, StoreError>;
    /// Where a single node keeps sessions for connection state recovery, if this store can.
    fn sessions(self: Arc<Self>) -> Option<Arc<dyn crate::sessions::Sessions>> {
        None
    }
    /// Where this store stands in the cluster's log, when it is a file of this node's own that
    /// a storing group of its own fills; `None` for a store the cluster shares.
    async fn membership(&self) -> Result<Option<Membership>, StoreError> {
        Ok(None)
    }
    /// Records that this file now stores for `group`, and a stretch of the log it missed.
    async fn join_log(
        &self,
        _group: &str,
        _missing: Option<(LogPosition, LogPosition)>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// Records that a stretch this file lacked (`membership`'s `missing`) is in it now, up to
    /// and including `to`, or all of it when `to` is `None`.
    async fn filled(
        &self,
        _stretch: (LogPosition, LogPosition),
        _to: Option<LogPosition>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    /// A cheap round trip, for `/health`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A reader socket connected (stores without a sessions table ignore it).
    async fn session_opened(&self, _session: &Session) -> Result<(), StoreError> {
        Ok(())
    }
    /// A reader socket disconnected: its session is marked inactive.
    async fn session_closed(&self, _session: &Session) -> Result<(), StoreError> {
        Ok(())
    }
}
