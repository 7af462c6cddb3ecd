//! The bus over a Redis stream: presence, heartbeats and leaving (events travel on the log).
//! Pub/sub would lose whatever is published while a node's connection is down; a stream lets a
//! reconnecting node read on from the last entry it saw (`redis_stream.rs` follows it). The
//! stream is trimmed by age, not count: its messages only matter within the presence TTL. The
//! publisher keeps a bounded outbox while Redis is away, dropping the oldest when it overflows:
//! the next heartbeat repairs whatever a dropped message said.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use alice_core::BusMessage;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::redis_link::{RedisLink, BUS_STREAM};

/// Messages held for Redis while it is away; the oldest go first when it overflows.
pub const OUTBOX_CAPACITY: usize = 200_000;
/// Messages written to Redis in one round trip.
const PIPELINE: usize = 256;

/// Starts the publisher; returns where to send messages. Entries older than `keep` go when the
/// next ones are added.
pub fn spawn_publisher(
    link: RedisLink,
    clock: Arc<dyn Clock>,
    keep: Duration,
) -> mpsc::UnboundedSender<BusMessage> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(publish(link, clock, keep, rx));
    tx
}

async fn publish(
    link: RedisLink,
    clock: Arc<dyn Clock>,
    keep: Duration,
    mut rx: mpsc::UnboundedReceiver<BusMessage>,
) {
    let mut outbox: VecDeque<Vec<u8>> = VecDeque::new();
    let mut conn = None;
    let mut backoff = link.backoff();
    loop {
        if outbox.is_empty() {
            match rx.recv().await {
                Some(m) => outbox.push_back(m.encode()),
                None => return,
            }
        }
        while let Ok(m) = rx.try_recv() {
            outbox.push_back(m.encode());
        }
        while outbox.len() > OUTBOX_CAPACITY {
            outbox.pop_front();
            link.health.bus_dropped.add(1);
        }
        link.health.bus_outbox.set(outbox.len() as u64);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match link.connect(Duration::from_secs(2)).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::debug!(error = %e, "bus publisher cannot reach Redis");
                    tokio::time::sleep(backoff.delay()).await;
                    continue;
                }
            },
        };
        let n = outbox.len().min(PIPELINE);
        let mut pipe = redis::pipe();
        // Stream ids are Redis' own milliseconds; this node's clock is close enough for a
        // horizon many presence TTLs wide.
        let horizon = format!("{}-0", clock.wall().0.saturating_sub(keep.as_millis() as u64));
        for m in outbox.iter().take(n) {
            pipe.cmd("XADD")
                .arg(BUS_STREAM)
                .arg("MINID")
                .arg("~")
                .arg(&horizon)
                .arg("*")
                .arg("m")
                .arg(m)
                .ignore();
        }
        match pipe.query_async::<()>(c).await {
            Ok(()) => {
                outbox.drain(..n);
                backoff.reset();
                link.health.bus_outbox.set(outbox.len() as u64);
            }
            Err(e) => {
                // Part of the pipeline may have landed; receivers drop the repeats by sequence.
                tracing::warn!(error = %e, waiting = outbox.len(), "bus publish failed; holding messages for Redis");
                conn = None;
                tokio::time::sleep(backoff.delay()).await;
            }
        }
    }
}
