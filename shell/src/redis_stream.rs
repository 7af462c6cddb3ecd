//! Follows one Redis stream in order and hands every entry to the driver as an input: the log
//! (every node reads every event, its own included) and the bus (presence and heartbeats). It
//! never skips ahead: after a lost connection it reads on from the last entry it saw.

use std::sync::Arc;
use std::time::Duration;

use alice_core::{BusMessage, Input};
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::driver::{Command, DriverHandle};
use crate::redis_link::RedisLink;

const READ_BLOCK_MS: usize = 1_000;
const READ_COUNT: usize = 1_024;

/// What to follow and what to tell the driver.
pub struct Follow {
    pub stream: &'static str,
    /// The driver's input for one decoded message.
    pub input: fn(BusMessage) -> Input,
    /// Sent once, when the starting position is known (a node's log reader: appends may go).
    pub opened: Option<Input>,
    /// For the bus: report Redis' health, and reconnect when nothing at all (not even this node's
    /// own heartbeats) was read for this long.
    pub watch: Option<Duration>,
}

pub fn spawn(link: RedisLink, driver: DriverHandle, clock: Arc<dyn Clock>, follow: Follow) {
    tokio::spawn(run(link, driver, clock, follow));
}

async fn run(link: RedisLink, driver: DriverHandle, clock: Arc<dyn Clock>, mut follow: Follow) {
    let stream = follow.stream;
    let mut last_id: Option<String> = None;
    let mut backoff = link.backoff();
    let response_timeout = Duration::from_millis(READ_BLOCK_MS as u64) + Duration::from_secs(2);
    let watching = follow.watch.is_some();
    loop {
        let mut conn = match link.connect(response_timeout).await {
            Ok(c) => c,
            Err(e) => {
                if watching {
                    link.health.set_up(false);
                }
                tracing::debug!(error = %e, stream, "cannot reach Redis to read");
                tokio::time::sleep(backoff.delay()).await;
                continue;
            }
        };
        // The first time, start after the newest entry; after that, wherever we stopped.
        if last_id.is_none() {
            let newest: redis::RedisResult<StreamRangeReply> =
                conn.xrevrange_count(stream, "+", "-", 1).await;
            match newest {
                Ok(r) => last_id = Some(r.ids.first().map_or_else(|| "0-0".to_owned(), |e| e.id.clone())),
                Err(_) => {
                    tokio::time::sleep(backoff.delay()).await;
                    continue;
                }
            }
            if let Some(opened) = follow.opened.take() {
                if !driver.send(Command::Input(opened)).await {
                    return;
                }
            }
        }
        if watching {
            link.health.set_up(true);
        }
        backoff.reset();
        let mut heard = Instant::now();
        let options = StreamReadOptions::default().block(READ_BLOCK_MS).count(READ_COUNT);
        loop {
            let from = last_id.clone().unwrap_or_else(|| "0-0".into());
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                conn.xread_options(&[stream], &[from.as_str()], &options).await;
            match reply {
                Ok(Some(reply)) => {
                    for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                        last_id = Some(entry.id.clone());
                        heard = Instant::now();
                        if watching {
                            link.health.bus_last_read_ms.set(clock.wall().0);
                        }
                        let Some(bytes) = entry.get::<Vec<u8>>("m") else { continue };
                        match BusMessage::decode(&bytes) {
                            Ok(msg) => {
                                if !driver.send(Command::Input((follow.input)(msg))).await {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(?e, id = %entry.id, stream, "undecodable entry skipped"),
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, stream, "stream read failed; reconnecting");
                    if watching {
                        link.health.set_up(false);
                    }
                    break;
                }
            }
            if follow.watch.is_some_and(|silence| heard.elapsed() > silence) {
                // Not even our own heartbeats came back: the subscription is broken. Repair it.
                link.health.bus_repairs.add(1);
                tracing::warn!(stream, "stream silent for too long; reconnecting the subscription");
                break;
            }
        }
        tokio::time::sleep(backoff.delay()).await;
    }
}
