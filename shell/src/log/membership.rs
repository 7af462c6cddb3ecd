//! A file of this node's own joins the cluster's log. Each node of a cluster without a shared
//! store keeps every event in its own SQLite file, filled by a storing group of its own. The
//! group stores what the log still holds, and Redis keeps only what every group has stored plus
//! the newest `REDIS_LOG_RETAIN_MS`. So a file that is new to its group (a node added to a running
//! cluster, a node whose `DATA_DIR` was emptied, or a file copied from another node) must be
//! placed right: its group reads the log on from the newest position the file holds, and the
//! stretch after that position that Redis may have trimmed before the group held it is recorded
//! in the file as missing, for `log::backfill` to fill from a running node's file, and counted
//! until it is (`alice_store_missing_ranges`, `/health`).

use std::collections::HashMap;
use std::sync::Arc;

use alice_core::{LogPosition, Millis};
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::redis_link::{RedisHealth, LOG_STREAM};
use crate::store::{EventStore, Membership, StoreError};

/// The node's storing group and the file it fills, placed once per process, before the log's
/// reading opens or the group reads anything.
pub struct Placement {
    store: Arc<dyn EventStore>,
    group: String,
    /// `REDIS_LOG_RETAIN_MS`: how much of the log's newest stretch no node trims.
    retain_ms: u64,
    health: Arc<RedisHealth>,
    placed: Mutex<bool>,
}

impl Placement {
    pub fn new(
        store: Arc<dyn EventStore>,
        group: &str,
        retain_ms: u64,
        health: Arc<RedisHealth>,
    ) -> Placement {
        Placement { store, group: group.to_owned(), retain_ms, health, placed: Mutex::new(false) }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Places the group where the file's log ends, unless the file already stores for it; until
    /// that has succeeded, each call tries again (the start, the reader's opening and the
    /// consumer's first read each call it, one at a time). A store the cluster shares has nothing
    /// to place: its group starts at the log's beginning.
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
        // A file written before files recorded their group, whose group exists: this node's own,
        // from before an upgrade (a copy of another node's file would record that node's group).
        let from_before = file.group.is_none() && file.end > LogPosition::START;
        if !created && (ours || from_before) {
            if from_before {
                self.store.join_log(&self.group, None).await.map_err(store_failed)?;
            }
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
        let missing = at_risk(c, self.retain_ms)
            .await?
            .filter(|&until| until > after(file.end))
            .map(|until| (file.end, until));
        match missing {
            Some((after, until)) => tracing::warn!(
                %after,
                %until,
                "this node's file joined the cluster's log, which Redis may have trimmed after the file's end: \
                 the file lacks that stretch until a running node sends it"
            ),
            None => {
                tracing::info!(from = %end, group = %self.group, "this node's file joined the cluster's log")
            }
        }
        self.store.join_log(&self.group, missing).await.map_err(store_failed)?;
        self.health.log_missing.set((file.missing.len() + usize::from(missing.is_some())) as u64);
        Ok(())
    }

    /// Counts the stretches the file lacks (at a start, and after some were filled); returns them.
    pub async fn recount(&self) -> Vec<(LogPosition, LogPosition)> {
        let missing = match self.store.membership().await {
            Ok(Some(file)) => file.missing,
            _ => Vec::new(),
        };
        self.health.log_missing.set(missing.len() as u64);
        missing
    }
}

/// The position right after `p`: no entry of the log lies between the two.
fn after(p: LogPosition) -> LogPosition {
    LogPosition { seq: p.seq.saturating_add(1), ..p }
}

/// Where the log a group placed now is sure to read begins: entries before it may be gone.
/// Those Redis trimmed already lie before the log's first entry (or after its last one ever,
/// when it holds none: the log loses entries only at its head, `XTRIM MINID`). And another node
/// may be trimming right now behind the groups it saw, without the one just placed: never past
/// the retention horizon, the newest entry's time less `retain_ms`, so entries older than that
/// are at risk too. `None` when no entry was or can be lost, or when Redis does not say what it
/// trimmed (before 7.0).
async fn at_risk(c: &mut MultiplexedConnection, retain_ms: u64) -> redis::RedisResult<Option<LogPosition>> {
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
    let last: LogPosition =
        redis::from_redis_value::<String>(field("last-generated-id"))?.parse().unwrap_or(LogPosition::START);
    let first: Option<(String, redis::Value)> = redis::from_redis_value(field("first-entry"))?;
    let first = first.and_then(|(id, _)| id.parse::<LogPosition>().ok());
    let trimmed = (added > length).then(|| first.unwrap_or(after(last)));
    let horizon = LogPosition::at(Millis(last.ms.saturating_sub(retain_ms)));
    let trimming = first.filter(|&f| f < horizon).map(|_| horizon);
    Ok(trimmed.max(trimming).filter(|&p| p > LogPosition::START))
}

fn store_failed(e: StoreError) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "the node's file", e.to_string()))
}
