//! The cluster's durable queue: a Redis stream with a consumer group. Accepting nodes append
//! events; every node's storage worker reads its share, writes it to the store, then acknowledges
//! and deletes it, so the stream only ever holds unstored events and is never trimmed blindly.
//! A dead node's unacknowledged events are claimed by the others after `claim_idle`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alice_core::queue::{DurableQueue, StoreFailure};
use alice_core::replies::Json;
use alice_core::{Config, Millis, ReaderEvent};
use rand_chacha::ChaCha8Rng;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadOptions,
    StreamReadReply,
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::EventQueue;
use crate::clock::Clock;
use crate::redis_link::{RedisLink, DLQ_STREAM, QUEUE_STREAM, STORE_GROUP};
use crate::store::{EventStore, StoreError};

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const READ_BLOCK_MS: usize = 500;
/// How often the worker asks Redis the streams' lengths for `/health` and `/metrics`. Under load
/// its loop turns hundreds of times a second; the gauges need not.
const GAUGE_INTERVAL: Duration = Duration::from_millis(250);

/// An event as it sits in the queue and dead-letter streams (JSON, readable with redis-cli).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    id: Uuid,
    user_id: &'a str,
    event_type: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
    timestamp: u64,
    session_id: &'a str,
}

fn encode(e: &ReaderEvent) -> String {
    let entry = Entry {
        id: e.id,
        user_id: &e.user_id,
        event_type: &e.event_type,
        data: e.data.raw(),
        timestamp: e.timestamp.0,
        session_id: &e.session_id,
    };
    serde_json::to_string(&entry).unwrap_or_default()
}

fn decode(s: &str) -> Option<Arc<ReaderEvent>> {
    let e: Entry = serde_json::from_str(s).ok()?;
    Some(Arc::new(ReaderEvent {
        id: e.id,
        user_id: Arc::from(e.user_id),
        event_type: e.event_type.to_owned(),
        data: Json::from_text(e.data.get().to_owned()).ok()?,
        timestamp: Millis(e.timestamp),
        session_id: e.session_id.to_owned(),
    }))
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

/// The accepting side: appends to the queue stream.
pub struct RedisQueue {
    link: RedisLink,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisQueue {
    pub fn new(link: RedisLink) -> RedisQueue {
        RedisQueue { link, conn: Mutex::new(None) }
    }

    async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.link.connect(RESPONSE_TIMEOUT).await.map_err(unavailable)?);
        }
        let conn = guard.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))?;
        match f(conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                *guard = None;
                Err(unavailable(e))
            }
        }
    }
}

#[async_trait::async_trait]
impl EventQueue for RedisQueue {
    async fn enqueue(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for e in events {
            pipe.cmd("XADD").arg(QUEUE_STREAM).arg("*").arg("e").arg(encode(e)).ignore();
        }
        // A retry after a partial failure may append an event twice; the store keeps it once.
        self.with_conn(async |c| pipe.query_async::<()>(c).await).await
    }

    async fn replay_dead(&self) -> Result<usize, StoreError> {
        let mut moved = 0;
        loop {
            let batch: StreamRangeReply =
                self.with_conn(async |c| c.xrange_count(DLQ_STREAM, "-", "+", 500).await).await?;
            if batch.ids.is_empty() {
                return Ok(moved);
            }
            let mut pipe = redis::pipe();
            for entry in &batch.ids {
                let Some(e) = entry.get::<String>("e") else { continue };
                pipe.cmd("XADD").arg(QUEUE_STREAM).arg("*").arg("e").arg(e).ignore();
                pipe.cmd("XDEL").arg(DLQ_STREAM).arg(&entry.id).ignore();
            }
            self.with_conn(async |c| pipe.query_async::<()>(c).await).await?;
            moved += batch.ids.len();
        }
    }
}

/// How the storage worker behaves.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub consumer: String,
    /// Pending entries idle this long belong to a dead consumer and are claimed.
    pub claim_idle: Duration,
    pub core: Config,
}

/// Starts this node's storage worker.
pub fn spawn_worker(
    link: RedisLink,
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    settings: WorkerSettings,
) {
    tokio::spawn(async move {
        let mut worker = Worker {
            queue: DurableQueue::new(&settings.core),
            held: HashMap::new(),
            rng: link.rng(),
            link,
            store,
            clock,
            settings,
        };
        worker.run().await;
    });
}

struct Worker {
    /// The core's own retry bookkeeping, for the events this worker holds.
    queue: DurableQueue,
    /// Stream ids of the events held, by event id (several when an event was appended twice).
    held: HashMap<Uuid, Vec<String>>,
    rng: ChaCha8Rng,
    link: RedisLink,
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    settings: WorkerSettings,
}

impl Worker {
    async fn run(&mut self) {
        let mut backoff = self.link.backoff();
        loop {
            let mut conn =
                match self.link.connect(RESPONSE_TIMEOUT + Duration::from_millis(READ_BLOCK_MS as u64)).await
                {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(backoff.delay()).await;
                        continue;
                    }
                };
            match self.session(&mut conn).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "storage worker lost Redis; reconnecting"),
            }
            tokio::time::sleep(backoff.delay()).await;
        }
    }

    /// Works until Redis fails (an error) or forever.
    async fn session(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> =
            conn.xgroup_create_mkstream(QUEUE_STREAM, STORE_GROUP, "0").await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(e);
            }
        }
        // Entries delivered to this consumer before (a restart, a lost connection) come first.
        let own: Option<StreamReadReply> = conn
            .xread_options(
                &[QUEUE_STREAM],
                &["0"],
                &StreamReadOptions::default().group(STORE_GROUP, &self.settings.consumer).count(10_000),
            )
            .await?;
        self.hold(own.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids));
        let mut last_claim = Instant::now();
        let mut last_gauges: Option<Instant> = None;
        loop {
            if last_claim.elapsed() >= self.settings.claim_idle / 2 {
                self.claim(conn).await?;
                last_claim = Instant::now();
            }
            if self.queue.waiting() < self.settings.core.store_batch_size * 2 {
                let block = if self.queue.is_empty() { READ_BLOCK_MS } else { 1 };
                let opts = StreamReadOptions::default()
                    .group(STORE_GROUP, &self.settings.consumer)
                    .count(self.settings.core.store_batch_size)
                    .block(block);
                let fresh: Option<StreamReadReply> =
                    conn.xread_options(&[QUEUE_STREAM], &[">"], &opts).await?;
                self.hold(fresh.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids));
            }
            self.store_due(conn).await?;
            if last_gauges.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL) {
                let lens: (u64, u64) =
                    redis::pipe().xlen(QUEUE_STREAM).xlen(DLQ_STREAM).query_async(conn).await?;
                self.link.health.queue_len.set(lens.0);
                self.link.health.dlq_len.set(lens.1);
                last_gauges = Some(Instant::now());
            }
            if let Some(at) = self.queue.next_due() {
                // Nothing is due yet (a retry's backoff, or a batch lingering to fill): wait
                // for the earliest, then read on.
                let wait = at.since(self.clock.now()).min(1_000);
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }

    fn hold(&mut self, entries: impl Iterator<Item = StreamId>) {
        for entry in entries {
            let Some(event) = entry.get::<String>("e").as_deref().and_then(decode) else {
                tracing::warn!(id = %entry.id, "undecodable queue entry left pending");
                continue;
            };
            let ids = self.held.entry(event.id).or_default();
            if ids.contains(&entry.id) {
                continue;
            }
            let first = ids.is_empty();
            ids.push(entry.id);
            if first {
                self.queue.push(event, None);
            }
        }
    }

    async fn claim(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let idle = self.settings.claim_idle.as_millis() as u64;
        let mut start = "0-0".to_owned();
        loop {
            let reply: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    QUEUE_STREAM,
                    STORE_GROUP,
                    &self.settings.consumer,
                    idle,
                    &start,
                    StreamAutoClaimOptions::default().count(500),
                )
                .await?;
            if !reply.claimed.is_empty() {
                tracing::info!(events = reply.claimed.len(), "claimed a silent node's unstored events");
            }
            self.hold(reply.claimed.into_iter());
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            start = reply.next_stream_id;
        }
    }

    /// Writes whatever is due to the store; acknowledges and deletes what it kept.
    async fn store_due(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        while let Some((batch, events)) = self.queue.next_batch(self.clock.now()) {
            match self.store.insert(&events).await {
                Ok(()) => {
                    self.queue.stored(batch);
                    let ids: Vec<String> =
                        events.iter().flat_map(|e| self.held.remove(&e.id).unwrap_or_default()).collect();
                    let mut pipe = redis::pipe();
                    pipe.xack(QUEUE_STREAM, STORE_GROUP, &ids).ignore().xdel(QUEUE_STREAM, &ids).ignore();
                    pipe.query_async::<()>(conn).await?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = events.len(), "store batch failed");
                    let failure: StoreFailure = e.failure();
                    self.queue.failed(batch, failure, self.clock.now(), &mut self.rng);
                    break;
                }
            }
        }
        let dead = self.queue.take_dead();
        if !dead.is_empty() {
            let mut pipe = redis::pipe();
            for e in &dead {
                let ids = self.held.remove(&e.id).unwrap_or_default();
                pipe.cmd("XADD").arg(DLQ_STREAM).arg("*").arg("e").arg(encode(e)).ignore();
                pipe.xack(QUEUE_STREAM, STORE_GROUP, &ids).ignore().xdel(QUEUE_STREAM, &ids).ignore();
            }
            pipe.query_async::<()>(conn).await?;
            tracing::warn!(events = dead.len(), "events dead-lettered after their last attempt");
        }
        Ok(())
    }
}
