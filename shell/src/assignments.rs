//! Where a node reads and writes consultant assignments: the event store's
//! `consultant_assignments` table, which every node of a deployment shares (the one node's file,
//! or the cluster's PostgreSQL); or, in a cluster whose nodes each keep their own SQLite file and
//! so share no table, one Redis hash that every node reads, a restarted one included.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use alice_core::AssignmentTable;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use crate::redis_link::RedisLink;
use crate::store::{EventStore, StoreError};

/// The hash of a cluster without a shared table: consultant id → its readers, as a JSON array.
pub const ASSIGNMENTS_KEY: &str = "alice:assignments";

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub enum AssignmentSource {
    Table(Arc<dyn EventStore>),
    Redis(Arc<RedisAssignments>),
}

impl AssignmentSource {
    /// Active assignments: all of them, or one consultant's.
    pub async fn load(&self, consultant: Option<&str>) -> Result<AssignmentTable, StoreError> {
        match self {
            AssignmentSource::Table(store) => store.assignments(consultant).await,
            AssignmentSource::Redis(redis) => redis.load(consultant).await,
        }
    }

    /// Whether ids must be hyphenated lowercase UUIDs here (a table whose id columns are `uuid`).
    pub fn ids_are_uuids(&self) -> bool {
        match self {
            AssignmentSource::Table(store) => store.assignment_ids_are_uuids(),
            AssignmentSource::Redis(_) => false,
        }
    }

    /// Replaces one consultant's active set.
    pub async fn replace(&self, consultant: &str, readers: &BTreeSet<String>) -> Result<(), StoreError> {
        match self {
            AssignmentSource::Table(store) => store.assign(consultant, readers).await,
            AssignmentSource::Redis(redis) => redis.replace(consultant, readers).await,
        }
    }
}

/// The Redis hash, over a connection of its own opened when first needed.
pub struct RedisAssignments {
    link: RedisLink,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

impl RedisAssignments {
    pub fn new(link: RedisLink) -> RedisAssignments {
        RedisAssignments { link, conn: tokio::sync::Mutex::new(None) }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.link.connect(RESPONSE_TIMEOUT).await.map_err(unavailable)?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one command; a failed connection is dropped so that the next call opens another.
    async fn run<T>(
        &self,
        command: impl AsyncFnOnce(MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let conn = self.connection().await?;
        let result = command(conn).await;
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        result.map_err(unavailable)
    }

    async fn load(&self, consultant: Option<&str>) -> Result<AssignmentTable, StoreError> {
        let rows: Vec<(String, String)> = match consultant {
            None => self.run(async |mut c| c.hgetall(ASSIGNMENTS_KEY).await).await?,
            Some(id) => {
                let one: Option<String> = self.run(async |mut c| c.hget(ASSIGNMENTS_KEY, id).await).await?;
                one.map(|readers| (id.to_owned(), readers)).into_iter().collect()
            }
        };
        let mut table = AssignmentTable::new();
        for (consultant, readers) in rows {
            let readers: BTreeSet<String> = serde_json::from_str(&readers).map_err(|_| {
                StoreError::Unavailable(format!("{ASSIGNMENTS_KEY} holds no list for {consultant}"))
            })?;
            if !readers.is_empty() {
                table.insert(consultant, readers);
            }
        }
        Ok(table)
    }

    async fn replace(&self, consultant: &str, readers: &BTreeSet<String>) -> Result<(), StoreError> {
        if readers.is_empty() {
            return self.run(async |mut c| c.hdel(ASSIGNMENTS_KEY, consultant).await).await;
        }
        let list = serde_json::to_string(readers).unwrap_or_else(|_| "[]".into());
        self.run(async |mut c| c.hset(ASSIGNMENTS_KEY, consultant, list).await).await
    }
}
