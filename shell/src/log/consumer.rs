//! Stores the cluster's log. A consumer group reads the log stream, writes each batch to the
//! store, then acknowledges it: one group for a store the cluster shares (every node a consumer; a
//! dead node's unacknowledged entries are claimed by the others after `claim_idle`), or a group
//! per node for each node's own SQLite file, so that every file holds every event of the cluster.
//!
//! The stream is trimmed only behind what every group has stored, and never closer than `retain`
//! to the newest entry this consumer read, so that a node cut off from Redis for less than that
//! reads on where it stopped. A group that is never read again (a node removed for good with its
//! own file) holds the log until it is destroyed (`XGROUP DESTROY alice:log alice-store:<node>`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alice_core::queue::{DurableQueue, StoreFailure};
use alice_core::{BusBody, BusMessage, Config, ReaderEvent};
use rand_chacha::ChaCha8Rng;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingReply,
    StreamRangeReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::Clock;
use crate::redis_link::{RedisLink, DLQ_PREFIX, LOG_STREAM};
use crate::store::{EventStore, StoreError};

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
const READ_BLOCK_MS: usize = 500;
/// How often the consumer trims the log and reads the gauges for `/health` and `/metrics`.
const TRIM_INTERVAL: Duration = Duration::from_millis(500);

/// How a node's consumer behaves.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    /// The consumer group: shared by every node, or this node's own.
    pub group: String,
    /// This node's name in the group.
    pub consumer: String,
    /// Pending entries idle this long belong to a dead consumer and are claimed.
    pub claim_idle: Duration,
    /// Entries at least this much younger than the newest read are never trimmed.
    pub retain: Duration,
    pub core: Config,
}

impl ConsumerSettings {
    fn dlq(&self) -> String {
        format!("{DLQ_PREFIX}{}", self.group)
    }
}

/// Starts this node's consumer.
pub fn spawn(link: RedisLink, store: Arc<dyn EventStore>, clock: Arc<dyn Clock>, settings: ConsumerSettings) {
    tokio::spawn(async move {
        let mut consumer = Consumer {
            queue: DurableQueue::new(&settings.core),
            held: HashMap::new(),
            newest_read: None,
            rng: link.rng(),
            link,
            store,
            clock,
            settings,
        };
        consumer.run().await;
    });
}

/// An entry's id as two numbers, for comparing and for trimming.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn decode(entry: &StreamId) -> Option<Arc<ReaderEvent>> {
    let bytes = entry.get::<Vec<u8>>("m")?;
    match BusMessage::decode(&bytes).ok()?.body {
        BusBody::Event(e) => e.to_event().map(Arc::new),
        _ => None,
    }
}

struct Consumer {
    /// The core's retry bookkeeping, for the events this consumer holds.
    queue: DurableQueue,
    /// Entry ids of the events held, by event id (several when an append was repeated).
    held: HashMap<Uuid, Vec<String>>,
    /// The newest entry this consumer has read, for the retention horizon.
    newest_read: Option<(u64, u64)>,
    rng: ChaCha8Rng,
    link: RedisLink,
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    settings: ConsumerSettings,
}

impl Consumer {
    async fn run(&mut self) {
        let mut backoff = self.link.backoff();
        loop {
            let timeout = RESPONSE_TIMEOUT + Duration::from_millis(READ_BLOCK_MS as u64);
            let mut conn = match self.link.connect(timeout).await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(backoff.delay()).await;
                    continue;
                }
            };
            match self.session(&mut conn).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "log consumer lost Redis; reconnecting"),
            }
            tokio::time::sleep(backoff.delay()).await;
        }
    }

    /// Works until Redis fails (an error) or forever.
    async fn session(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let group = self.settings.group.clone();
        let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(LOG_STREAM, &group, "0").await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(e);
            }
        }
        // Entries delivered to this consumer before (a restart, a lost connection) come first.
        let own: Option<StreamReadReply> = conn
            .xread_options(
                &[LOG_STREAM],
                &["0"],
                &StreamReadOptions::default().group(&group, &self.settings.consumer).count(10_000),
            )
            .await?;
        self.hold(conn, own.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids)).await?;
        let mut last_claim = Instant::now();
        let mut last_trim: Option<Instant> = None;
        loop {
            if last_claim.elapsed() >= self.settings.claim_idle / 2 {
                self.claim(conn).await?;
                last_claim = Instant::now();
            }
            if self.queue.waiting() < self.settings.core.store_batch_size * 2 {
                let block = if self.queue.is_empty() { READ_BLOCK_MS } else { 1 };
                let opts = StreamReadOptions::default()
                    .group(&group, &self.settings.consumer)
                    .count(self.settings.core.store_batch_size)
                    .block(block);
                let fresh: Option<StreamReadReply> = conn.xread_options(&[LOG_STREAM], &[">"], &opts).await?;
                self.hold(conn, fresh.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids)).await?;
            }
            self.store_due(conn).await?;
            if last_trim.is_none_or(|at| at.elapsed() >= TRIM_INTERVAL) {
                self.trim(conn).await?;
                last_trim = Some(Instant::now());
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

    /// Takes entries into the store queue. One that is not an event (it cannot be stored, ever)
    /// is acknowledged at once, so that it does not hold the log.
    async fn hold(
        &mut self,
        conn: &mut MultiplexedConnection,
        entries: impl Iterator<Item = StreamId>,
    ) -> redis::RedisResult<()> {
        let mut useless = Vec::new();
        for entry in entries {
            if let Some(id) = parse_id(&entry.id) {
                self.newest_read = self.newest_read.max(Some(id));
            }
            let Some(event) = decode(&entry) else {
                tracing::warn!(id = %entry.id, "log entry that is no event acknowledged unstored");
                useless.push(entry.id);
                continue;
            };
            let ids = self.held.entry(event.id).or_default();
            if ids.contains(&entry.id) {
                continue;
            }
            let first = ids.is_empty();
            ids.push(entry.id);
            if first {
                self.queue.push(event);
            }
        }
        if !useless.is_empty() {
            conn.xack::<_, _, _, ()>(LOG_STREAM, &self.settings.group, &useless).await?;
        }
        Ok(())
    }

    async fn claim(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let idle = self.settings.claim_idle.as_millis() as u64;
        let mut start = "0-0".to_owned();
        loop {
            let reply: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    LOG_STREAM,
                    &self.settings.group,
                    &self.settings.consumer,
                    idle,
                    &start,
                    StreamAutoClaimOptions::default().count(500),
                )
                .await?;
            if !reply.claimed.is_empty() {
                tracing::info!(events = reply.claimed.len(), "claimed a silent node's unstored events");
            }
            self.hold(conn, reply.claimed.into_iter()).await?;
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            start = reply.next_stream_id;
        }
    }

    /// Writes whatever is due to the store; acknowledges what it kept.
    async fn store_due(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let group = self.settings.group.clone();
        while let Some((batch, events)) = self.queue.next_batch(self.clock.now()) {
            match self.store.insert(&events).await {
                Ok(()) => {
                    self.queue.stored(batch);
                    let ids: Vec<String> =
                        events.iter().flat_map(|e| self.held.remove(&e.id).unwrap_or_default()).collect();
                    conn.xack::<_, _, _, ()>(LOG_STREAM, &group, &ids).await?;
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
                pipe.cmd("XADD").arg(self.settings.dlq()).arg("*").arg("e").arg(encode_dead(e)).ignore();
                pipe.xack(LOG_STREAM, &group, &ids).ignore();
            }
            pipe.query_async::<()>(conn).await?;
            tracing::warn!(events = dead.len(), "events dead-lettered after their last attempt");
        }
        Ok(())
    }

    /// Trims the log behind every group's stored point and the retention horizon, and reads the
    /// gauges on the way.
    async fn trim(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let (groups, log_len, dlq_len): (StreamInfoGroupsReply, u64, u64) = redis::pipe()
            .xinfo_groups(LOG_STREAM)
            .xlen(LOG_STREAM)
            .xlen(self.settings.dlq())
            .query_async(conn)
            .await?;
        self.link.health.log_len.set(log_len);
        self.link.health.dlq_len.set(dlq_len);
        let mut floor: Option<(u64, u64)> = None;
        for g in &groups.groups {
            if g.name == self.settings.group {
                self.link.health.unstored.set((g.pending + g.lag.unwrap_or(0)) as u64);
            }
            let stored_to = if g.pending > 0 {
                match conn.xpending(LOG_STREAM, &g.name).await? {
                    StreamPendingReply::Data(d) => parse_id(&d.start_id),
                    _ => parse_id(&g.last_delivered_id),
                }
            } else {
                parse_id(&g.last_delivered_id)
            };
            let Some(stored_to) = stored_to else { return Ok(()) };
            floor = Some(floor.map_or(stored_to, |f| f.min(stored_to)));
        }
        let (Some(floor), Some((newest_ms, _))) = (floor, self.newest_read) else { return Ok(()) };
        let horizon = (newest_ms.saturating_sub(self.settings.retain.as_millis() as u64), 0);
        let min_id = floor.min(horizon);
        if min_id > (0, 0) {
            let _: u64 = redis::cmd("XTRIM")
                .arg(LOG_STREAM)
                .arg("MINID")
                .arg(format!("{}-{}", min_id.0, min_id.1))
                .query_async(conn)
                .await?;
        }
        Ok(())
    }
}

/// A dead letter as its stream keeps it: the event's JSON, readable with redis-cli.
fn encode_dead(e: &ReaderEvent) -> String {
    serde_json::json!({
        "id": e.id,
        "userId": &*e.user_id,
        "eventType": e.event_type,
        "data": e.data.raw(),
        "timestamp": e.timestamp.0,
        "sessionId": e.session_id,
    })
    .to_string()
}

fn decode_dead(text: &str) -> Option<ReaderEvent> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(ReaderEvent {
        id: v["id"].as_str()?.parse().ok()?,
        user_id: v["userId"].as_str()?.into(),
        event_type: v["eventType"].as_str()?.to_owned(),
        data: alice_core::replies::Json::from_text(v["data"].to_string()).ok()?,
        timestamp: alice_core::Millis(v["timestamp"].as_u64()?),
        session_id: v["sessionId"].as_str()?.to_owned(),
    })
}

/// A consumer group's dead letters, replayed by an admin: each is given to the store again and
/// leaves the dead-letter stream once the store has it. (Back into the log they must not go: the
/// log delivers, and these were delivered long ago.)
pub struct DeadLetters {
    link: RedisLink,
    store: Arc<dyn EventStore>,
    key: String,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl DeadLetters {
    pub fn new(link: RedisLink, store: Arc<dyn EventStore>, group: &str) -> DeadLetters {
        DeadLetters { link, store, key: format!("{DLQ_PREFIX}{group}"), conn: Mutex::new(None) }
    }

    /// Stores every dead letter it can; returns how many it stored.
    pub async fn replay(&self) -> Result<usize, StoreError> {
        let unavailable = |e: redis::RedisError| StoreError::Unavailable(format!("redis: {e}"));
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.link.connect(RESPONSE_TIMEOUT).await.map_err(unavailable)?);
        }
        let conn = guard.as_mut().ok_or_else(|| StoreError::Unavailable("no connection".into()))?;
        let mut replayed = 0;
        loop {
            let batch: StreamRangeReply = match conn.xrange_count(&self.key, "-", "+", 500).await {
                Ok(b) => b,
                Err(e) => {
                    *guard = None;
                    return Err(unavailable(e));
                }
            };
            if batch.ids.is_empty() {
                return Ok(replayed);
            }
            let events: Vec<Arc<ReaderEvent>> = batch
                .ids
                .iter()
                .filter_map(|entry| entry.get::<String>("e").as_deref().and_then(decode_dead).map(Arc::new))
                .collect();
            self.store.insert(&events).await?;
            let ids: Vec<&str> = batch.ids.iter().map(|e| e.id.as_str()).collect();
            if let Err(e) = conn.xdel::<_, _, ()>(&self.key, &ids).await {
                *guard = None;
                return Err(unavailable(e));
            }
            replayed += events.len();
        }
    }
}
