//! Executes the core's storing consumer of the cluster's log (`core/src/consumer.rs`): a consumer
//! group reads the log, the store takes what it read (the driver's store batches), and what the
//! store kept is acknowledged. One group for a store the cluster shares (every node a consumer),
//! or a group per node for each node's own SQLite file, so that every file holds every event.
//! Commands run one at a time, over a connection kept until one fails; the core decides which
//! comes next, when to claim a dead node's entries, when to trim, and when to retry.
//!
//! The log is trimmed only behind what every group has stored, and never past the retention
//! horizon the core gives, so that a node cut off from Redis for less reads on where it stopped.
//! A group that is never read again (a node removed for good with its own file) holds the log
//! until it is destroyed (`XGROUP DESTROY alice:log alice-store:<node>`).

use std::sync::Arc;
use std::time::Duration;

use alice_core::consumer::{trim_point, GroupPlace};
use alice_core::{ConsumerCommand, Input, LogPosition, ReaderEvent};
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingReply,
    StreamRangeReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use tokio::sync::{mpsc, Mutex};

use crate::driver::{Command, DriverHandle};
use crate::log::membership::Placement;
use crate::metrics::Metrics;
use crate::redis_link::{RedisLink, DLQ_PREFIX, LOG_STREAM};
use crate::store::{EventStore, StoreError};

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the driver sends the consumer's commands.
#[derive(Clone)]
pub struct ConsumerLink(mpsc::UnboundedSender<ConsumerCommand>);

/// The other end, for the task that runs them.
pub struct ConsumerRequests(mpsc::UnboundedReceiver<ConsumerCommand>);

impl ConsumerLink {
    pub fn channel() -> (ConsumerLink, ConsumerRequests) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ConsumerLink(tx), ConsumerRequests(rx))
    }

    pub fn send(&self, command: ConsumerCommand) {
        let _ = self.0.send(command);
    }
}

/// The group this node's consumer belongs to, and its name in it.
#[derive(Clone, Debug)]
pub struct ConsumerNames {
    pub group: String,
    pub consumer: String,
}

impl ConsumerNames {
    fn dlq(&self) -> String {
        format!("{DLQ_PREFIX}{}", self.group)
    }
}

/// Runs the consumer's commands until the driver goes away.
pub fn spawn(
    link: RedisLink,
    names: ConsumerNames,
    placement: Arc<Placement>,
    driver: DriverHandle,
    requests: ConsumerRequests,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(run(link, names, placement, driver, requests, metrics));
}

/// The name a command's latency is filed under (`log_read_new` includes its wait for entries).
fn kind(command: &ConsumerCommand) -> &'static str {
    match command {
        ConsumerCommand::ReadPending { .. } => "log_read_pending",
        ConsumerCommand::ReadNew { .. } => "log_read_new",
        ConsumerCommand::Claim { .. } => "log_claim",
        ConsumerCommand::Acknowledge { .. } => "log_acknowledge",
        ConsumerCommand::DeadLetter { .. } => "log_dead_letter",
        ConsumerCommand::Trim { .. } => "log_trim",
    }
}

async fn run(
    link: RedisLink,
    names: ConsumerNames,
    placement: Arc<Placement>,
    driver: DriverHandle,
    mut requests: ConsumerRequests,
    metrics: Arc<Metrics>,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    while let Some(command) = requests.0.recv().await {
        if let ConsumerCommand::ReadPending { fresh: true } = command {
            conn = None;
        }
        let (kind, started) = (kind(&command), std::time::Instant::now());
        let result = execute(&link, &mut conn, &names, &placement, command).await;
        metrics.redis_command(kind, started.elapsed());
        let input = match result {
            Ok(entries) => Input::Consumed { entries },
            Err(e) => {
                tracing::warn!(error = %e, "log consumer command failed");
                conn = None;
                Input::ConsumeFailed
            }
        };
        if !driver.send(Command::Input(input)).await {
            return;
        }
    }
}

/// (stream id, `m` field) of each entry; an entry without the field gives no bytes.
fn entries(ids: impl Iterator<Item = StreamId>) -> Vec<(String, Vec<u8>)> {
    ids.map(|e| {
        let bytes = e.get::<Vec<u8>>("m").unwrap_or_default();
        (e.id, bytes)
    })
    .collect()
}

async fn execute(
    link: &RedisLink,
    conn: &mut Option<MultiplexedConnection>,
    names: &ConsumerNames,
    placement: &Placement,
    command: ConsumerCommand,
) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
    if conn.is_none() {
        let timeout = RESPONSE_TIMEOUT + Duration::from_millis(alice_core::consumer::READ_BLOCK_MS);
        *conn = Some(link.connect(timeout).await?);
    }
    let Some(c) = conn.as_mut() else { return Ok(Vec::new()) };
    let group = names.group.as_str();
    match command {
        ConsumerCommand::ReadPending { .. } => {
            placement.ensure(c).await?;
            let created: redis::RedisResult<()> = c.xgroup_create_mkstream(LOG_STREAM, group, "0").await;
            if let Err(e) = created {
                if e.code() != Some("BUSYGROUP") {
                    return Err(e);
                }
            }
            let options = StreamReadOptions::default().group(group, &names.consumer).count(10_000);
            let own: Option<StreamReadReply> = c.xread_options(&[LOG_STREAM], &["0"], &options).await?;
            Ok(entries(own.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids)))
        }
        ConsumerCommand::ReadNew { count, block_ms } => {
            let mut options = StreamReadOptions::default().group(group, &names.consumer).count(count);
            if block_ms > 0 {
                options = options.block(block_ms as usize);
            }
            let fresh: Option<StreamReadReply> = c.xread_options(&[LOG_STREAM], &[">"], &options).await?;
            Ok(entries(fresh.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids)))
        }
        ConsumerCommand::Claim { idle_ms } => {
            let mut claimed = Vec::new();
            let mut start = "0-0".to_owned();
            loop {
                let reply: StreamAutoClaimReply = c
                    .xautoclaim_options(
                        LOG_STREAM,
                        group,
                        &names.consumer,
                        idle_ms,
                        &start,
                        StreamAutoClaimOptions::default().count(500),
                    )
                    .await?;
                claimed.extend(entries(reply.claimed.into_iter()));
                if reply.next_stream_id == "0-0" {
                    break;
                }
                start = reply.next_stream_id;
            }
            if !claimed.is_empty() {
                tracing::info!(events = claimed.len(), "claimed a silent node's unstored events");
            }
            Ok(claimed)
        }
        ConsumerCommand::Acknowledge { ids } => {
            c.xack::<_, _, _, ()>(LOG_STREAM, group, &ids).await?;
            Ok(Vec::new())
        }
        ConsumerCommand::DeadLetter { events, ids } => {
            let mut pipe = redis::pipe();
            for e in &events {
                pipe.cmd("XADD").arg(names.dlq()).arg("*").arg("e").arg(encode_event(e)).ignore();
            }
            pipe.xack(LOG_STREAM, group, &ids).ignore();
            pipe.query_async::<()>(c).await?;
            tracing::warn!(events = events.len(), "events dead-lettered after their last attempt");
            Ok(Vec::new())
        }
        ConsumerCommand::Trim { keep_from } => {
            trim(link, c, names, keep_from).await?;
            Ok(Vec::new())
        }
    }
}

/// Trims the log behind what every group may still have to store and never past `keep_from`
/// ([`trim_point`]); reads the gauges on the way.
async fn trim(
    link: &RedisLink,
    c: &mut MultiplexedConnection,
    names: &ConsumerNames,
    keep_from: LogPosition,
) -> redis::RedisResult<()> {
    let (groups, log_len, dlq_len): (StreamInfoGroupsReply, u64, u64) =
        redis::pipe().xinfo_groups(LOG_STREAM).xlen(LOG_STREAM).xlen(names.dlq()).query_async(c).await?;
    link.health.log_len.set(log_len);
    link.health.dlq_len.set(dlq_len);
    let mut places = Vec::with_capacity(groups.groups.len());
    for g in &groups.groups {
        if g.name == names.group {
            link.health.unstored.set((g.pending + g.lag.unwrap_or(0)) as u64);
        }
        let oldest_pending = match g.pending {
            0 => None,
            _ => match c.xpending(LOG_STREAM, &g.name).await? {
                StreamPendingReply::Data(d) => Some(d.start_id),
                _ => None,
            },
        };
        // An id that does not parse stops the trim: better a longer log than a lost entry.
        let (Ok(given_to), Ok(oldest_pending)) =
            (g.last_delivered_id.parse(), oldest_pending.map(|id| id.parse()).transpose())
        else {
            return Ok(());
        };
        places.push(GroupPlace { given_to, oldest_pending });
    }
    if let Some(point) = trim_point(keep_from, &places) {
        let _: u64 =
            redis::cmd("XTRIM").arg(LOG_STREAM).arg("MINID").arg(point.to_string()).query_async(c).await?;
    }
    Ok(())
}

/// An event as JSON text, readable with redis-cli: a dead letter as its stream keeps it, and an
/// event sent to fill another node's file (`log::backfill`).
pub(crate) fn encode_event(e: &ReaderEvent) -> String {
    serde_json::json!({
        "id": e.id,
        "userId": &*e.user_id,
        "eventType": e.event_type,
        "data": e.data.raw(),
        "timestamp": e.timestamp.0,
        "sessionId": e.session_id,
        "position": e.position.to_string(),
        "senderSocket": &*e.sent_from.socket,
        "senderRooms": e.sent_from.rooms,
    })
    .to_string()
}

pub(crate) fn decode_event(text: &str) -> Option<ReaderEvent> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let data = alice_core::replies::Json::of_value(&v["data"]);
    Some(ReaderEvent {
        id: v["id"].as_str()?.parse().ok()?,
        user_id: v["userId"].as_str()?.into(),
        event_type: v["eventType"].as_str()?.to_owned(),
        reading: alice_core::ReadingPosition::of_json(&data),
        data,
        timestamp: alice_core::Millis(v["timestamp"].as_u64()?),
        session_id: v["sessionId"].as_str()?.to_owned(),
        // Dead letters from before positions: placed at their time.
        position: match v["position"].as_str() {
            Some(p) => p.parse().ok()?,
            None => alice_core::LogPosition::at(alice_core::Millis(v["timestamp"].as_u64()?)),
        },
        // Dead letters from before senders were recorded: none.
        sent_from: alice_core::SentFrom {
            socket: v["senderSocket"].as_str().unwrap_or_default().into(),
            rooms: serde_json::from_value(v["senderRooms"].clone()).unwrap_or_default(),
        },
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
                .filter_map(|entry| entry.get::<String>("e").as_deref().and_then(decode_event).map(Arc::new))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_keep_their_position_and_older_ones_are_placed_at_their_time() {
        let text = r#"{"id":"019b76da-a800-7000-8000-000000000001","userId":"r1","eventType":"A","data":{"n":1},"timestamp":1767225600000,"sessionId":"s"}"#;
        let old = decode_event(text).expect("a dead letter from before positions still reads");
        assert_eq!(old.position, alice_core::LogPosition { ms: 1_767_225_600_000, seq: 0 });
        let placed = ReaderEvent { position: alice_core::LogPosition { ms: 5, seq: 2 }, ..old };
        assert_eq!(decode_event(&encode_event(&placed)), Some(placed));
    }
}
