//! The deployment's log: where an accepted event becomes durable. The core asks for one append
//! at a time (`Output::Append`); an implementation answers `Ok` only once the events are durable
//! and decides nothing itself: when to retry a failed append is the core's call.
//!
//! - a single node on SQLite: the store's own commit ([`StoreLog`]);
//! - a single node on PostgreSQL: a SQLite outbox under `DATA_DIR` ([`Outbox`]), which the core
//!   then drains into PostgreSQL;
//! - a cluster: one Redis stream every node reads ([`redis::RedisLog`]), stored by
//!   [`consumer`]s.

pub mod backfill;
pub mod consumer;
pub mod membership;
pub mod redis;

use std::sync::Arc;

use alice_core::{LogEntry, LogPosition};
use uuid::Uuid;

use crate::store::sqlite::{SqliteStore, Unstored};
use crate::store::{EventStore, StoreError};

/// Entries a log refused as repeats of an earlier event's key, each as (its event id, the first
/// event's id).
pub type Repeats = Vec<(Uuid, Uuid)>;

/// Makes events durable.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Returns once every entry is durable, except those refused because an event of the same
    /// user with the same key (`clientEventId`) is younger than the idempotency window. On an
    /// error some may be durable, and the core appends them again (readers drop the repeats,
    /// the store keeps each id once).
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<Repeats, StoreError>;

    /// The newest position this log holds or held, where a single node places its next events
    /// after (a cluster's log is placed by Redis: nothing to ask).
    async fn end(&self) -> Result<LogPosition, StoreError> {
        Ok(LogPosition::START)
    }
}

/// A single node whose store is its log: the embedded SQLite commit, which also decides repeats
/// of keys (the file keeps each accepted key for the window).
pub struct StoreLog {
    pub store: Arc<dyn EventStore>,
    pub window_ms: u64,
}

#[async_trait::async_trait]
impl EventLog for StoreLog {
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<Repeats, StoreError> {
        self.store.append(entries, self.window_ms).await
    }

    async fn end(&self) -> Result<LogPosition, StoreError> {
        let (newest, _) = self.store.newest(1).await?;
        Ok(newest.first().map_or(LogPosition::START, |e| e.position))
    }
}

/// A single node's durable outbox in front of a remote store: a SQLite file (`outbox.db` under
/// `DATA_DIR`) holding every acknowledged event the store does not have yet, and the dead
/// letters, so that a restart resumes where the last run stopped.
pub struct Outbox(SqliteStore, u64);

impl Outbox {
    /// Opens `dir/outbox.db`; it keeps accepted keys for `window_ms` to decide repeats.
    pub async fn open(dir: &std::path::Path, window_ms: u64) -> Result<Outbox, StoreError> {
        Ok(Outbox(SqliteStore::open_in(dir, "outbox.db").await?, window_ms))
    }

    /// What the last run left: events to store, and dead letters.
    pub async fn unstored(&self) -> Result<Unstored, StoreError> {
        self.0.unstored().await
    }

    /// The store has these now.
    pub async fn forget(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        self.0.remove(ids).await
    }

    pub async fn mark_dead(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        self.0.mark_dead(ids).await
    }

    pub async fn revive_dead(&self) -> Result<u64, StoreError> {
        self.0.revive_dead().await
    }

    /// The outbox's file also keeps the node's sessions for connection state recovery.
    pub fn sessions(&self) -> &SqliteStore {
        &self.0
    }
}

#[async_trait::async_trait]
impl EventLog for Outbox {
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<Repeats, StoreError> {
        self.0.append(entries, self.1).await
    }

    /// Its own file knows, even when every event went on to the store: the outbox never depends
    /// on the remote store being up to place the next event.
    async fn end(&self) -> Result<LogPosition, StoreError> {
        self.0.log_end().await
    }
}
