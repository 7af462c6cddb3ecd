//! Where sessions wait to be recovered (connection state recovery, `core/src/recovery.rs`): in
//! the cluster's Redis (`alice:session:<pid>`, expiring with the session), or on a single node in
//! its own SQLite file (the store, or the outbox in front of PostgreSQL). The core decides what to
//! save and when; saves and forgets run in order on one task, and a handshake that presents a
//! `pid` looks its session up before the core decides.

use std::sync::Arc;
use std::time::Duration;

use alice_core::SavedSession;
use redis::AsyncCommands;
use tokio::sync::{mpsc, Mutex};

use crate::redis_link::{RedisLink, SESSION_PREFIX};
use crate::store::StoreError;

/// How long a handshake waits for a session before connecting fresh.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A backend that keeps sessions.
#[async_trait::async_trait]
pub trait Sessions: Send + Sync + 'static {
    async fn load(&self, pid: &str) -> Result<Option<SavedSession>, StoreError>;
    async fn save(&self, pid: &str, session: &SavedSession) -> Result<(), StoreError>;
    async fn forget(&self, pid: &str) -> Result<(), StoreError>;
}

/// No backend (a store that keeps none): nothing is ever recovered.
pub struct NoSessions;

#[async_trait::async_trait]
impl Sessions for NoSessions {
    async fn load(&self, _pid: &str) -> Result<Option<SavedSession>, StoreError> {
        Ok(None)
    }
    async fn save(&self, _pid: &str, _session: &SavedSession) -> Result<(), StoreError> {
        Ok(())
    }
    async fn forget(&self, _pid: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Sessions in the cluster's Redis, each key expiring with its session.
pub struct RedisSessions {
    link: RedisLink,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisSessions {
    pub fn new(link: RedisLink) -> RedisSessions {
        RedisSessions { link, conn: Mutex::new(None) }
    }

    async fn run<T>(
        &self,
        f: impl AsyncFnOnce(&mut redis::aio::MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let c = self.link.connect(LOOKUP_TIMEOUT).await.map_err(unavailable)?;
            *guard = Some(c);
        }
        let c = guard.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))?;
        f(c).await.map_err(|e| {
            *guard = None;
            unavailable(e)
        })
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

fn key(pid: &str) -> String {
    format!("{SESSION_PREFIX}{pid}")
}

#[async_trait::async_trait]
impl Sessions for RedisSessions {
    async fn load(&self, pid: &str) -> Result<Option<SavedSession>, StoreError> {
        let text: Option<String> = self.run(async |c| c.get(key(pid)).await).await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn save(&self, pid: &str, session: &SavedSession) -> Result<(), StoreError> {
        let text = serde_json::to_string(session).map_err(|e| StoreError::Rejected(e.to_string()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ttl = session.expires_ms.saturating_sub(now).max(1);
        self.run(async |c| {
            redis::cmd("SET").arg(key(pid)).arg(&text).arg("PX").arg(ttl).query_async::<()>(c).await
        })
        .await
    }

    async fn forget(&self, pid: &str) -> Result<(), StoreError> {
        self.run(async |c| c.del::<_, ()>(key(pid)).await).await
    }
}

/// What the core asked to keep or drop, in order.
pub enum Change {
    Save(String, SavedSession),
    Forget(String),
}

/// Changes that may wait for the backend; past this, new ones are dropped (and logged): a lost
/// save only means that session will not be recovered.
const MAX_WAITING: usize = 10_000;

/// Runs the changes one after another, so a later save is never overtaken by an earlier one.
pub fn spawn_writer(sessions: Arc<dyn Sessions>) -> mpsc::Sender<Change> {
    let (tx, mut rx) = mpsc::channel::<Change>(MAX_WAITING);
    tokio::spawn(async move {
        while let Some(change) = rx.recv().await {
            let result = match &change {
                Change::Save(pid, session) => sessions.save(pid, session).await,
                Change::Forget(pid) => sessions.forget(pid).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not keep a session for recovery");
            }
        }
    });
    tx
}
