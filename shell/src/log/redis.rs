//! The cluster's log: one Redis stream (`alice:log`), one entry per accepted event. An append is
//! one pipelined round trip of `XADD`s; when Redis confirms it, the events are durable (as far as
//! Redis persists them). Every node reads the stream in order (`redis_stream.rs`) and shows events
//! from it, so the stream's order is the cluster's one order. It is trimmed only behind what every
//! storing consumer has stored (`consumer.rs`).
//!
//! This file only executes appends: a failed one drops the connection and reports the error; the
//! core decides when to try again, and the next attempt connects afresh.

use std::sync::Arc;
use std::time::Duration;

use alice_core::LogEntry;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::EventLog;
use crate::redis_link::{RedisLink, LOG_STREAM};
use crate::store::StoreError;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Appends to the cluster's log stream.
pub struct RedisLog {
    link: RedisLink,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisLog {
    pub fn new(link: RedisLink) -> RedisLog {
        RedisLog { link, conn: Mutex::new(None) }
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[async_trait::async_trait]
impl EventLog for RedisLog {
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.cmd("XADD").arg(LOG_STREAM).arg("*").arg("m").arg(entry.to_message().encode()).ignore();
        }
        // The core sends one append at a time, so the lock is never contended.
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.link.connect(RESPONSE_TIMEOUT).await.map_err(unavailable)?);
        }
        let conn = guard.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))?;
        match pipe.query_async::<()>(conn).await {
            Ok(()) => Ok(()),
            Err(e) => {
                *guard = None;
                Err(unavailable(e))
            }
        }
    }
}
