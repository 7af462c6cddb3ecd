//! The bus over a Redis stream. Pub/sub would lose whatever is published while a node's
//! connection is down; a stream lets a reconnecting node read on from the last entry it saw. The
//! publisher keeps a bounded outbox while Redis is away; the subscriber reconnects when it has
//! heard nothing (not even this node's own heartbeats) for longer than the presence TTL.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use alice_core::{BusMessage, Input};
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::driver::{Command, DriverHandle};
use crate::redis_link::{RedisLink, BUS_MAXLEN, BUS_STREAM};

/// Messages held for Redis while it is away; the oldest go first when it overflows.
pub const OUTBOX_CAPACITY: usize = 200_000;
/// Messages written to Redis in one round trip.
const PIPELINE: usize = 256;
const READ_BLOCK_MS: usize = 1_000;
const READ_COUNT: usize = 512;

/// Starts the publisher; returns where to send messages.
pub fn spawn_publisher(link: RedisLink) -> mpsc::UnboundedSender<BusMessage> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(publish(link, rx));
    tx
}

async fn publish(link: RedisLink, mut rx: mpsc::UnboundedReceiver<BusMessage>) {
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
        for m in outbox.iter().take(n) {
            pipe.cmd("XADD")
                .arg(BUS_STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(BUS_MAXLEN)
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

/// Starts the subscriber, which feeds every bus entry to the driver. `silence` is how long it
/// waits without hearing anything before it reconnects.
pub fn spawn_subscriber(link: RedisLink, driver: DriverHandle, clock: Arc<dyn Clock>, silence: Duration) {
    tokio::spawn(subscribe(link, driver, clock, silence));
}

async fn subscribe(link: RedisLink, driver: DriverHandle, clock: Arc<dyn Clock>, silence: Duration) {
    let mut last_id: Option<String> = None;
    let mut backoff = link.backoff();
    let response_timeout = Duration::from_millis(READ_BLOCK_MS as u64) + Duration::from_secs(2);
    loop {
        let mut conn = match link.connect(response_timeout).await {
            Ok(c) => c,
            Err(e) => {
                link.health.set_up(false);
                tracing::debug!(error = %e, "bus subscriber cannot reach Redis");
                tokio::time::sleep(backoff.delay()).await;
                continue;
            }
        };
        // The first time, start after the newest entry; after that, wherever we stopped.
        if last_id.is_none() {
            let newest: redis::RedisResult<StreamRangeReply> =
                conn.xrevrange_count(BUS_STREAM, "+", "-", 1).await;
            match newest {
                Ok(r) => last_id = Some(r.ids.first().map_or_else(|| "0-0".to_owned(), |e| e.id.clone())),
                Err(_) => {
                    tokio::time::sleep(backoff.delay()).await;
                    continue;
                }
            }
        }
        link.health.set_up(true);
        backoff.reset();
        let mut heard = Instant::now();
        let options = StreamReadOptions::default().block(READ_BLOCK_MS).count(READ_COUNT);
        loop {
            let from = last_id.clone().unwrap_or_else(|| "0-0".into());
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                conn.xread_options(&[BUS_STREAM], &[from.as_str()], &options).await;
            match reply {
                Ok(Some(reply)) => {
                    for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                        last_id = Some(entry.id.clone());
                        heard = Instant::now();
                        link.health.bus_last_read_ms.set(clock.now().0);
                        let Some(bytes) = entry.get::<Vec<u8>>("m") else { continue };
                        match BusMessage::decode(&bytes) {
                            Ok(msg) => {
                                if !driver.send(Command::Input(Input::Bus(msg))).await {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(?e, id = %entry.id, "undecodable bus entry skipped"),
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "bus read failed; reconnecting");
                    link.health.set_up(false);
                    break;
                }
            }
            if heard.elapsed() > silence {
                // Not even our own heartbeats came back: the subscription is broken. Repair it.
                link.health.bus_repairs.add(1);
                tracing::warn!("bus silent for {silence:?}; reconnecting the subscription");
                break;
            }
        }
        tokio::time::sleep(backoff.delay()).await;
    }
}
