//! Executes the core's reads of one of the cluster's streams (the log, the bus): one read at a
//! time, over a connection kept until a read fails or the core asks for a fresh one. Where each
//! read starts and when to try again are the core's (`core/src/readers.rs`); the one thing done
//! here on its own is placing the node's storing group (`log::membership`), or creating it, before
//! the log's opening read asks it where it stands, as the consumer would.

use std::sync::Arc;
use std::time::Duration;

use alice_core::{Input, LogPosition, ReadFrom, Stream};
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamInfoGroupsReply, StreamPendingReply, StreamRangeReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::driver::{Command, DriverHandle};
use crate::log::membership::Placement;
use crate::redis_link::{RedisLink, BUS_STREAM, LOG_STREAM};

/// How long a read waits for new entries before it answers with none.
const READ_BLOCK_MS: usize = 1_000;
const READ_COUNT: usize = 1_024;

/// Where the driver sends the core's reads of one stream.
#[derive(Clone)]
pub struct StreamReader(mpsc::UnboundedSender<(ReadFrom, bool)>);

/// The other end, for the task that runs the reads.
pub struct ReadRequests(mpsc::UnboundedReceiver<(ReadFrom, bool)>);

impl StreamReader {
    pub fn channel() -> (StreamReader, ReadRequests) {
        let (tx, rx) = mpsc::unbounded_channel();
        (StreamReader(tx), ReadRequests(rx))
    }

    /// Asks for a read; `fresh` drops the connection first.
    pub fn read(&self, from: ReadFrom, fresh: bool) {
        let _ = self.0.send((from, fresh));
    }
}

/// Runs the reads of `stream` until the driver goes away. `group` is the node's storing
/// consumer group, whose progress bounds where the log's reading opens (placed first).
pub fn spawn(
    link: RedisLink,
    stream: Stream,
    group: Option<Arc<Placement>>,
    driver: DriverHandle,
    clock: Arc<dyn Clock>,
    requests: ReadRequests,
) {
    tokio::spawn(run(link, stream, group, driver, clock, requests));
}

async fn run(
    link: RedisLink,
    stream: Stream,
    group: Option<Arc<Placement>>,
    driver: DriverHandle,
    clock: Arc<dyn Clock>,
    mut requests: ReadRequests,
) {
    let key = match stream {
        Stream::Log => LOG_STREAM,
        Stream::Bus => BUS_STREAM,
    };
    let mut conn: Option<MultiplexedConnection> = None;
    while let Some((from, fresh)) = requests.0.recv().await {
        if fresh {
            conn = None;
        }
        let input = match read(&link, &mut conn, key, group.as_deref(), from).await {
            Ok(Read { position, entries, at_end }) => {
                if stream == Stream::Bus {
                    // What Redis' health is, for /health: the bus is read all the time.
                    link.health.set_up(true);
                    if !entries.is_empty() {
                        link.health.bus_last_read_ms.set(clock.wall().0);
                    }
                }
                Input::Read { stream, position, entries, at_end }
            }
            Err(e) => {
                tracing::warn!(error = %e, stream = key, "stream read failed");
                conn = None;
                if stream == Stream::Bus {
                    link.health.set_up(false);
                }
                Input::ReadFailed { stream }
            }
        };
        // The log's entries become visible with this read.
        let visible = Command::Visible { input, at: tokio::time::Instant::now() };
        if !driver.send(visible).await {
            return;
        }
    }
}

/// What one read found (see [`Input::Read`]).
struct Read {
    position: Option<String>,
    entries: Vec<(String, Vec<u8>)>,
    at_end: bool,
}

/// One read: where reading opens, or the entries after an id (waiting up to a second).
async fn read(
    link: &RedisLink,
    conn: &mut Option<MultiplexedConnection>,
    key: &str,
    group: Option<&Placement>,
    from: ReadFrom,
) -> redis::RedisResult<Read> {
    if conn.is_none() {
        let timeout = Duration::from_millis(READ_BLOCK_MS as u64) + Duration::from_secs(2);
        *conn = Some(link.connect(timeout).await?);
    }
    let Some(c) = conn.as_mut() else {
        return Ok(Read { position: None, entries: Vec::new(), at_end: false });
    };
    match from {
        ReadFrom::Opening { stored } => {
            if let Some(placement) = group {
                placement.ensure(c).await?;
            }
            let position = Some(opening(c, key, group.map(Placement::group), stored.as_deref()).await?);
            Ok(Read { position, entries: Vec::new(), at_end: false })
        }
        ReadFrom::After(after) => {
            let options = StreamReadOptions::default().block(READ_BLOCK_MS).count(READ_COUNT);
            let reply: Option<StreamReadReply> = c.xread_options(&[key], &[after.as_str()], &options).await?;
            let ids: Vec<_> = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect();
            // Fewer than the count: Redis gave every entry the stream held after `after`.
            let at_end = ids.len() < READ_COUNT;
            let position = ids.last().map(|entry| entry.id.clone());
            let entries = ids
                .into_iter()
                .filter_map(|entry| entry.get::<Vec<u8>>("m").map(|bytes| (entry.id, bytes)))
                .collect();
            Ok(Read { position, entries, at_end })
        }
    }
}

/// Where reading `key` opens (see [`ReadFrom::Opening`]): after the older of `stored` and what
/// `group` has stored, creating `group` from the stream's beginning if it does not exist yet; with
/// neither, after the newest entry (`0-0` for an empty stream).
pub async fn opening(
    c: &mut MultiplexedConnection,
    key: &str,
    group: Option<&str>,
    stored: Option<&str>,
) -> redis::RedisResult<String> {
    let unstored = match group {
        Some(group) => stored_to(c, key, group).await?,
        None => None,
    };
    let opening = match (parse(stored), unstored) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(match opening {
        Some(p) => p.to_string(),
        None => {
            let newest: StreamRangeReply = c.xrevrange_count(key, "+", "-", 1).await?;
            newest.ids.first().map_or_else(|| "0-0".to_owned(), |e| e.id.clone())
        }
    })
}

fn parse(id: Option<&str>) -> Option<LogPosition> {
    id?.parse().ok()
}

/// The last entry before the first one `group` has not stored (its oldest pending entry, or the
/// first after the last it was given).
///
/// The group is created here when it does not exist yet, from the log's beginning, as its
/// consumer creates it: otherwise a node's first opening could run before its consumer's and
/// start after entries that other nodes appended while this one was starting, which the group
/// then stores but this node never shows.
async fn stored_to(
    c: &mut MultiplexedConnection,
    key: &str,
    group: &str,
) -> redis::RedisResult<Option<LogPosition>> {
    let created: redis::RedisResult<()> = c.xgroup_create_mkstream(key, group, "0").await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(e);
        }
    }
    let groups: StreamInfoGroupsReply = c.xinfo_groups(key).await?;
    let Some(g) = groups.groups.iter().find(|g| g.name == group) else { return Ok(None) };
    if g.pending > 0 {
        if let StreamPendingReply::Data(d) = c.xpending(key, group).await? {
            return Ok(parse(Some(&d.start_id)).map(LogPosition::before));
        }
    }
    Ok(parse(Some(&g.last_delivered_id)))
}
