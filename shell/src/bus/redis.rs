//! The bus over a Redis stream: presence, heartbeats and leaving (events travel on the log).
//! Pub/sub would lose whatever is published while a node's connection is down; a stream lets a
//! reconnecting node read on from the last entry it saw (`redis_stream.rs` runs the reads). The
//! stream is trimmed by age, not count: its messages only matter within the presence TTL.
//!
//! This file only executes the core's batches (`core/src/bus_outbox.rs` holds them while Redis
//! is away, retries and, when full, drops the oldest); a failed batch drops the connection and is
//! reported, and the next one connects afresh.

use std::sync::Arc;
use std::time::Duration;

use alice_core::{BusMessage, Input};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::driver::{Command, DriverHandle};
use crate::metrics::Metrics;
use crate::redis_link::{RedisLink, BUS_STREAM};

/// Where the driver sends the core's batches of bus messages.
pub type Batches = mpsc::UnboundedReceiver<Vec<BusMessage>>;

/// Runs the batches until the driver goes away. Entries older than `keep` go when the next ones
/// are added.
pub fn spawn_publisher(
    link: RedisLink,
    clock: Arc<dyn Clock>,
    keep: Duration,
    driver: DriverHandle,
    batches: Batches,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(publish(link, clock, keep, driver, batches, metrics));
}

async fn publish(
    link: RedisLink,
    clock: Arc<dyn Clock>,
    keep: Duration,
    driver: DriverHandle,
    mut batches: Batches,
    metrics: Arc<Metrics>,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    while let Some(messages) = batches.recv().await {
        // Stream ids are Redis' own milliseconds; this node's clock is close enough for a
        // horizon many presence TTLs wide.
        let horizon = format!("{}-0", clock.wall().0.saturating_sub(keep.as_millis() as u64));
        let mut pipe = redis::pipe();
        for m in &messages {
            pipe.cmd("XADD")
                .arg(BUS_STREAM)
                .arg("MINID")
                .arg("~")
                .arg(&horizon)
                .arg("*")
                .arg("m")
                .arg(m.encode())
                .ignore();
        }
        let started = std::time::Instant::now();
        let result = match conn.as_mut() {
            Some(c) => pipe.query_async::<()>(c).await,
            None => match link.connect(Duration::from_secs(2)).await {
                Ok(c) => pipe.query_async::<()>(conn.insert(c)).await,
                Err(e) => Err(e),
            },
        };
        metrics.redis_command("bus_publish", started.elapsed());
        let input = match result {
            Ok(()) => Input::Broadcasted,
            Err(e) => {
                tracing::debug!(error = %e, waiting = messages.len(), "bus publish failed");
                conn = None;
                Input::BroadcastFailed
            }
        };
        if !driver.send(Command::Input(input)).await {
            return;
        }
    }
}
