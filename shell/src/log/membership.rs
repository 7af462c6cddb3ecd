//! A file of this node's own joins the cluster's log. Each node of a cluster without a shared
//! store keeps every event in its own SQLite file, filled by a storing group of its own. The
//! group stores what the log still holds, and Redis keeps only what every group has stored plus
//! the newest `REDIS_LOG_RETAIN_MS`. So a file that is new to its group (a node added to a running
//! cluster, a node whose `DATA_DIR` was emptied, or a file copied from another node to seed a new
//! one) must be placed right: its group reads the log on from the newest position the file holds,
//! and whatever Redis trimmed after that position before the group held it is recorded in the
//! file as missing, logged as an error, and counted (`alice_store_missing_ranges`, `/health`).
//!
//! Seeding a new node with a copy of a running node's file (README, "Adding a node") makes it
//! join with nothing missing, as long as the copy is younger than the log's retention.

use std::collections::HashMap;
use std::sync::Arc;

use alice_core::LogPosition;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::redis_link::{RedisHealth, LOG_STREAM};
use crate::store::{EventStore, Membership, StoreError};

/// The node's storing group and the file it fills, placed once per process, before the log's
/// reading opens or the group reads anything.
pub struct Placement {
    store: Arc<dyn EventStore>,
    group: String,
    health: Arc<RedisHealth>,
    placed: Mutex<bool>,
}

impl Placement {
    pub fn new(store: Arc<dyn EventStore>, group: &str, health: Arc<RedisHealth>) -> Placement {
        Placement { store, group: group.to_owned(), health, placed: Mutex::new(false) }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Places the group where the file's log ends, unless the file already stores for it; until
    /// that has succeeded, each call tries again (the reader's opening and the consumer's first
    /// read each call it, one at a time). A store the cluster shares has nothing to place: its
    /// group starts at the log's beginning.
    pub async fn ensure(&self, c: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let mut placed = self.placed.lock().await;
        if *placed {
            return Ok(());
        }
        if let Some(file) = self.store.membership().await.map_err(store_failed)? {
            self.place(c, &file).await?;
        }
        *placed = true;
        Ok(())
    }

    async fn place(&self, c: &mut MultiplexedConnection, file: &Membership) -> redis::RedisResult<()> {
        let end = file.end.to_string();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(LOG_STREAM)
            .arg(&self.group)
            .arg(&end)
            .arg("MKSTREAM")
            .query_async(c)
            .await;
        let created = match created {
            Ok(()) => true,
            Err(e) if e.code() == Some("BUSYGROUP") => false,
            Err(e) => return Err(e),
        };
        let ours = file.group.as_deref() == Some(self.group.as_str());
        if ours && !created {
            return Ok(());
        }
        if !created {
            // The group stored into another file: it reads on from where this one ends. Its
            // pending entries stay pending and are read again, which the store takes as repeats.
            redis::cmd("XGROUP")
                .arg("SETID")
                .arg(LOG_STREAM)
                .arg(&self.group)
                .arg(&end)
                .query_async::<()>(c)
                .await?;
        }
        // The group holds the log from `end` on now; anything Redis trimmed after `end` before
        // that is out of reach. (No entry lies between `end` and the one right after it.)
        let next = LogPosition { seq: file.end.seq.saturating_add(1), ..file.end };
        let missing = trimmed_until(c).await?.filter(|&until| until > next).map(|until| (file.end, until));
        if let Some((after, until)) = missing {
            tracing::error!(
                after = %after,
                until = %until,
                "this node's file joined the cluster's log after Redis trimmed entries it does not hold: \
                 events in that stretch are missing from it; seed a new node with a copy of a running \
                 node's file (README, \"Adding a node\")"
            );
        } else {
            tracing::info!(from = %end, group = %self.group, "this node's file joined the cluster's log");
        }
        self.store.join_log(&self.group, missing).await.map_err(store_failed)?;
        self.health.log_missing.set((file.missing.len() + usize::from(missing.is_some())) as u64);
        Ok(())
    }

    /// Counts again the stretches the file lacks (after some were filled).
    pub async fn recount(&self) {
        if let Ok(Some(file)) = self.store.membership().await {
            self.health.log_missing.set(file.missing.len() as u64);
        }
    }
}

/// Reports, at a start, the stretches of the log a file of this node's own already knows it
/// lacks.
pub async fn report_missing(store: &dyn EventStore, health: &RedisHealth) {
    let Ok(Some(file)) = store.membership().await else { return };
    for (after, until) in &file.missing {
        tracing::error!(
            after = %after,
            until = %until,
            "this node's file lacks events of the cluster's log in this stretch (trimmed before it \
             joined); seed it from a running node's file (README, \"Adding a node\")"
        );
    }
    health.log_missing.set(file.missing.len() as u64);
}

/// Where the log Redis holds begins, when it trimmed entries: its first entry (or just after
/// its last entry ever, when it holds none); `None` when nothing was trimmed, or when Redis does
/// not say (before 7.0). The log loses entries only at its head (`XTRIM MINID`).
async fn trimmed_until(c: &mut MultiplexedConnection) -> redis::RedisResult<Option<LogPosition>> {
    let info: HashMap<String, redis::Value> =
        redis::cmd("XINFO").arg("STREAM").arg(LOG_STREAM).query_async(c).await?;
    let field = |name: &str| info.get(name).cloned().unwrap_or(redis::Value::Nil);
    let Some(added) = redis::from_redis_value::<Option<u64>>(field("entries-added"))? else {
        tracing::warn!(
            "Redis does not say whether it trimmed the log (it is older than 7.0): a file that \
             joins late cannot tell what it misses"
        );
        return Ok(None);
    };
    let length: u64 = redis::from_redis_value(field("length"))?;
    if added <= length {
        return Ok(None);
    }
    let first: Option<(String, redis::Value)> = redis::from_redis_value(field("first-entry"))?;
    let until = match first {
        Some((id, _)) => id.parse::<LogPosition>().ok(),
        None => redis::from_redis_value::<String>(field("last-generated-id"))?
            .parse::<LogPosition>()
            .ok()
            .map(|last| LogPosition { seq: last.seq + 1, ..last }),
    };
    Ok(until.filter(|&p| p > LogPosition::START))
}

fn store_failed(e: StoreError) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "the node's file", e.to_string()))
}
