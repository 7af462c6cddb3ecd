//! The cluster's log: one Redis stream (`alice:log`), one entry per accepted event. An append is
//! one pipelined round trip of `XADD`s; when Redis confirms it, the events are durable (as far as
//! Redis persists them). Every node reads the stream in order (`redis_stream.rs`) and shows events
//! from it, so the stream's order is the cluster's one order. It is trimmed only behind what every
//! storing consumer has stored (`consumer.rs`).
//!
//! An append with keyed entries (`clientEventId`) runs as one script instead, which Redis runs
//! atomically: for each keyed entry it looks up `alice:key:<user>`'s key, and appends the entry
//! and records its key (expiring after the idempotency window) only if no other event holds it.
//! So two nodes given the same key at the same moment accept it once, and a key recorded means
//! its entry is in the log. Entries without keys cost what they did.
//!
//! This file only executes appends: a failed one drops the connection and reports the error; the
//! core decides when to try again, and the next attempt connects afresh.

use std::sync::Arc;
use std::time::Duration;

use alice_core::LogEntry;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{EventLog, Repeats};
use crate::redis_link::{RedisLink, KEY_PREFIX, LOG_STREAM};
use crate::store::StoreError;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Appends a batch with keyed entries. KEYS: the log, then one key name per keyed entry. ARGV:
/// the window in ms, the number of entries, then per entry its message, its event id and the
/// index of its key name in KEYS (0 for none). Returns per entry `""` (in the log) or the id of
/// the event that holds its key. A key holding the entry's own id was recorded, with the entry,
/// by an earlier attempt of this very append: the entry is in the log already.
pub const APPEND_KEYED: &str = r"
local window, n, out = ARGV[1], tonumber(ARGV[2]), {}
for i = 1, n do
  local msg, id, k = ARGV[3 * i], ARGV[3 * i + 1], tonumber(ARGV[3 * i + 2])
  local first = false
  if k > 0 then first = redis.call('GET', KEYS[k]) end
  if first and first ~= id then
    out[i] = first
  else
    if not first then
      redis.call('XADD', KEYS[1], '*', 'm', msg)
      if k > 0 then redis.call('SET', KEYS[k], id, 'PX', window) end
    end
    out[i] = ''
  end
end
return out
";

/// Appends to the cluster's log stream.
pub struct RedisLog {
    link: RedisLink,
    conn: Mutex<Option<MultiplexedConnection>>,
    window_ms: u64,
    keyed: redis::Script,
}

impl RedisLog {
    pub fn new(link: RedisLink, window_ms: u64) -> RedisLog {
        RedisLog { link, conn: Mutex::new(None), window_ms, keyed: redis::Script::new(APPEND_KEYED) }
    }
}

/// Where a user's key is kept: the user id's length first, so that no two (user, key) pairs
/// share a name.
fn key_name(user: &str, key: &str) -> String {
    format!("{KEY_PREFIX}{}:{user}:{key}", user.len())
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[async_trait::async_trait]
impl EventLog for RedisLog {
    async fn append(&self, entries: &[Arc<LogEntry>]) -> Result<Repeats, StoreError> {
        // The core sends one append at a time, so the lock is never contended.
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.link.connect(RESPONSE_TIMEOUT).await.map_err(unavailable)?);
        }
        let conn = guard.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))?;
        let result = if entries.iter().any(|e| e.key.is_some()) {
            self.append_keyed(conn, entries).await
        } else {
            let mut pipe = redis::pipe();
            for entry in entries {
                pipe.cmd("XADD").arg(LOG_STREAM).arg("*").arg("m").arg(entry.to_message().encode()).ignore();
            }
            pipe.query_async::<()>(conn).await.map(|()| Vec::new())
        };
        result.map_err(|e| {
            *guard = None;
            unavailable(e)
        })
    }
}

impl RedisLog {
    async fn append_keyed(
        &self,
        conn: &mut MultiplexedConnection,
        entries: &[Arc<LogEntry>],
    ) -> redis::RedisResult<Repeats> {
        let mut invocation = self.keyed.prepare_invoke();
        invocation.key(LOG_STREAM).arg(self.window_ms).arg(entries.len());
        let mut keys = 1;
        for entry in entries {
            invocation.arg(entry.to_message().encode()).arg(entry.event.id.to_string());
            match &entry.key {
                Some(key) => {
                    keys += 1;
                    invocation.key(key_name(&entry.event.user_id, key)).arg(keys);
                }
                None => {
                    invocation.arg(0);
                }
            }
        }
        let firsts: Vec<String> = invocation.invoke_async(conn).await?;
        Ok(entries
            .iter()
            .zip(firsts)
            .filter_map(|(entry, first)| Some((entry.event.id, uuid::Uuid::parse_str(&first).ok()?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_never_collide_across_users() {
        assert_ne!(key_name("a:b", "c"), key_name("a", "b:c"));
        assert_eq!(key_name("u1", "k"), "alice:key:2:u1:k");
    }
}
