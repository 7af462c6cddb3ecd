//! The deployment's log: where an accepted event becomes durable. The core asks for one append
//! at a time (`Output::Append`); an implementation answers `Ok` only once the events are durable
//! and decides nothing itself: when to retry a failed append is the core's call.
//!
//! - a single node on SQLite: the store's own commit ([`StoreLog`]);
//! - a single node on PostgreSQL: a SQLite outbox under `DATA_DIR` ([`Outbox`]), which the core
//!   then drains into PostgreSQL;
//! - a cluster: one Redis stream every node reads ([`redis::RedisLog`]), stored by
//!   [`consumer`]s.

pub mod consumer;
pub mod redis;

use std::sync::Arc;

use alice_core::{LogEntry, LogPosition, ReaderEvent};
use uuid::Uuid;

use crate::store::sqlite::{SqliteStore, Unstored};
use crate::store::{EventStore, StoreError};

/// Makes events durable.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Returns once every entry is durable; on an error some may be, and the core appends them
    /// again (readers drop the repeats, the store keeps each id once).
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<(), StoreError>;

    /// The newest position this log holds or held, where a single node places its next events
    /// after (a cluster's log is placed by Redis: nothing to ask).
    async fn end(&self) -> Result<LogPosition, StoreError> {
        Ok(LogPosition::START)
    }
}

fn events(entries: &[Arc<LogEntry>]) -> Vec<Arc<ReaderEvent>> {
    entries.iter().map(|e| e.event.clone()).collect()
}

/// A single node whose store is its log: the embedded SQLite commit.
pub struct StoreLog(pub Arc<dyn EventStore>);

#[async_trait::async_trait]
impl EventLog for StoreLog {
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<(), StoreError> {
        self.0.insert(&events(entries)).await
    }

    async fn end(&self) -> Result<LogPosition, StoreError> {
        let (newest, _) = self.0.newest(1).await?;
        Ok(newest.first().map_or(LogPosition::START, |e| e.position))
    }
}

/// A single node's durable outbox in front of a remote store: a SQLite file (`outbox.db` under
/// `DATA_DIR`) holding every acknowledged event the store does not have yet, and the dead
/// letters, so that a restart resumes where the last run stopped.
pub struct Outbox(SqliteStore);

impl Outbox {
    pub async fn open(dir: &std::path::Path) -> Result<Outbox, StoreError> {
        Ok(Outbox(SqliteStore::open_in(dir, "outbox.db").await?))
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
}

#[async_trait::async_trait]
impl EventLog for Outbox {
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<(), StoreError> {
        self.0.insert(&events(entries)).await
    }

    /// Its own file knows, even when every event went on to the store: the outbox never depends
    /// on the remote store being up to place the next event.
    async fn end(&self) -> Result<LogPosition, StoreError> {
        self.0.log_end().await
    }
}
