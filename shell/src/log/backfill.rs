//! A node's own file filled from a running node's: the events of a stretch of the log that Redis
//! may have trimmed before this node's storing group held it (`log::membership`). A node added to
//! a running cluster thus holds every event of the cluster, as the others do, without an operator
//! copying a file.
//!
//! Everything goes through Redis, which is all the nodes share. At its start, before it loads its
//! recent history, a node whose file lacks a stretch asks for it on `alice:backfill:ask` and names
//! a stream for the answer. Every node with a placed file of its own reads the asks; the first
//! that holds the whole stretch and claims the answer (`<answer>:owner`, kept while it sends and a
//! while after) pages its file into the answer stream, in the log's order, and ends it with an
//! `end` entry. The asking node stores each page as it comes (the store keeps an event once, at
//! its earliest position), narrows the stretch in its file past it, and at the end forgets the
//! stretch. With no answer, or an answer that
//! stops, the stretch stays recorded and the node serves anyway; its next start asks again. So
//! does a stretch recorded while the node runs (Redis was unreachable at its start).
//!
//! Events the answering node dead-lettered are not in its file, so not in the answer either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alice_core::{LogPosition, ReplayFilter, ReplayFrom, ReplayRule};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::driver::DriverHandle;
use crate::log::consumer::{decode_event, encode_event};
use crate::log::membership::Placement;
use crate::redis_link::RedisLink;
use crate::store::EventStore;

/// Where nodes ask for stretches of the log.
const ASKS: &str = "alice:backfill:ask";
/// Events per page of an answer.
const PAGE: usize = 500;
/// An answer no longer than this waits for the asking node to take some.
const AHEAD: u64 = 5_000;
/// How long an asking node waits for an answer to begin, or to go on.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long a claim on an answer lasts unless renewed, page by page.
const CLAIM_MS: u64 = 15_000;
/// How long an answer stream outlives its last page, should its asker be gone.
const ANSWER_TTL_S: i64 = 600;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Places this node's storing group (before the log's reading opens) and fills every stretch its
/// file lacks from a running node that holds it. Never fails the start: without Redis, the
/// placement happens when the log's reading opens, and a stretch no node sends stays recorded.
pub async fn join(link: &RedisLink, placement: &Placement, store: &Arc<dyn EventStore>) {
    let mut c = match link.connect(RESPONSE_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => {
            return tracing::warn!(error = %e, "Redis is unreachable: this node's file joins the log later")
        }
    };
    if let Err(e) = placement.ensure(&mut c).await {
        return tracing::warn!(error = %e, "could not place this node's storing group yet; it will be when the log's reading opens");
    }
    let Ok(Some(file)) = store.membership().await else { return };
    for mut stretch in file.missing {
        let (started, (after, until)) = (Instant::now(), stretch);
        match fill(&mut c, placement.group(), &mut stretch, store).await {
            Ok(events) => {
                tracing::info!(%after, %until, events, took_ms = started.elapsed().as_millis() as u64, "filled a stretch of the log this node's file lacked, from a running node");
                if let Err(e) = store.filled(stretch, None).await {
                    tracing::warn!(error = %e, "could not record the stretch as filled; the next start fills it again");
                }
            }
            Err(why) => {
                tracing::error!(%after, %until, why, "this node's file still lacks a stretch of the log; it asks again at its next start")
            }
        }
    }
    placement.recount().await;
}

/// Asks for the events of `stretch` and stores them as they come; the number stored. What is
/// stored leaves the stretch, in the file too, so that a fill cut short goes on from there.
async fn fill(
    c: &mut MultiplexedConnection,
    group: &str,
    stretch: &mut (LogPosition, LogPosition),
    store: &Arc<dyn EventStore>,
) -> Result<usize, String> {
    let answer = format!("alice:backfill:{group}:{:016x}", rand::random::<u64>());
    let (after, until) = (stretch.0.to_string(), stretch.1.to_string());
    let fields = [("group", group), ("after", &after), ("until", &until), ("answer", &answer)];
    let mut ask = redis::cmd("XADD");
    ask.arg(ASKS).arg("MAXLEN").arg("~").arg(100).arg("*").arg(&fields);
    let outcome = take_answer(c, &ask, &answer, stretch, store).await;
    // The claim stays a while, so that no node answers a copy of the ask read late.
    let mut done = redis::pipe();
    done.del(&answer)
        .ignore()
        .cmd("SET")
        .arg(format!("{answer}:owner"))
        .arg("done")
        .arg("PX")
        .arg(CLAIM_MS)
        .ignore();
    let _: redis::RedisResult<()> = done.query_async(c).await;
    outcome
}

/// Asks, then reads the answer stream to its end, storing each page. The ask is repeated each
/// second until a node claims the answer: a node that has just started may not read asks yet.
async fn take_answer(
    c: &mut MultiplexedConnection,
    ask: &redis::Cmd,
    answer: &str,
    stretch: &mut (LogPosition, LogPosition),
    store: &Arc<dyn EventStore>,
) -> Result<usize, String> {
    let mut read_to = "0-0".to_owned();
    let mut heard = Instant::now();
    let mut stored = 0;
    loop {
        let claimed: bool =
            c.exists(format!("{answer}:owner")).await.map_err(|e| format!("could not ask: {e}"))?;
        if stored == 0 && !claimed {
            ask.query_async::<String>(c).await.map_err(|e| format!("could not ask: {e}"))?;
        }
        let options = StreamReadOptions::default().block(1_000).count(PAGE);
        let reply: Option<StreamReadReply> = c
            .xread_options(&[answer], &[read_to.as_str()], &options)
            .await
            .map_err(|e| format!("could not read the answer: {e}"))?;
        let entries: Vec<_> = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect();
        let Some(last) = entries.last().map(|e| e.id.clone()) else {
            if heard.elapsed() > PATIENCE {
                return Err(if stored == 0 {
                    "no running node answered"
                } else {
                    "the answering node stopped"
                }
                .into());
            }
            continue;
        };
        heard = Instant::now();
        let end = entries.iter().any(|e| e.contains_key("end"));
        let events: Vec<_> = entries
            .iter()
            .filter_map(|e| e.get::<String>("e"))
            .filter_map(|text| decode_event(&text).map(Arc::new))
            .collect();
        if events.len() + usize::from(end) != entries.len() {
            return Err("the answer held an entry that is not an event".into());
        }
        store.insert(&events).await.map_err(|e| format!("could not store a page: {e}"))?;
        stored += events.len();
        // Pages come in the log's order.
        if let Some(to) = events.iter().map(|e| e.position).max().filter(|_| !end) {
            store.filled(*stretch, Some(to)).await.map_err(|e| format!("could not record a page: {e}"))?;
            stretch.0 = to;
        }
        // What is stored leaves the answer, which keeps the answering node's lead bounded.
        let _: redis::RedisResult<u64> =
            redis::cmd("XTRIM").arg(answer).arg("MINID").arg(&last).query_async(c).await;
        let _: redis::RedisResult<u64> = c.xdel(answer, &[&last]).await;
        if end {
            return Ok(stored);
        }
        read_to = last;
    }
}

/// Answers other nodes' asks from this node's file, until the server stops.
pub fn spawn_answering(link: RedisLink, store: Arc<dyn EventStore>, group: String, driver: DriverHandle) {
    tokio::spawn(async move {
        let mut backoff = link.backoff();
        let mut read_to = "$".to_owned();
        while !driver.is_closed() {
            let mut c = match link.connect(RESPONSE_TIMEOUT).await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(backoff.delay()).await;
                    continue;
                }
            };
            loop {
                let options = StreamReadOptions::default().block(1_000).count(10);
                let reply: redis::RedisResult<Option<StreamReadReply>> =
                    c.xread_options(&[ASKS], &[read_to.as_str()], &options).await;
                if driver.is_closed() {
                    return;
                }
                let Ok(reply) = reply else { break };
                backoff.reset();
                for ask in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    read_to = ask.id.clone();
                    let field = |name: &str| ask.get::<String>(name).unwrap_or_default();
                    let (asker, answer) = (field("group"), field("answer"));
                    let stretch = (field("after").parse(), field("until").parse());
                    let (Ok(after), Ok(until)) = stretch else { continue };
                    if asker == group || answer.is_empty() {
                        continue;
                    }
                    match send(&mut c, &store, &group, &driver, &answer, (after, until)).await {
                        Ok(Some(events)) => {
                            tracing::info!(node = asker, %after, %until, events, "sent a stretch of the log to a node that lacked it")
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(node = asker, error = %e, "stopped sending a stretch of the log")
                        }
                    }
                }
            }
            tokio::time::sleep(backoff.delay()).await;
        }
    });
}

/// Sends the events of `stretch` into `answer`, if this file is placed in the log as `group`'s,
/// holds the whole stretch, and no other node claimed the answer first; the number sent.
async fn send(
    c: &mut MultiplexedConnection,
    store: &Arc<dyn EventStore>,
    group: &str,
    driver: &DriverHandle,
    answer: &str,
    (after, until): (LogPosition, LogPosition),
) -> Result<Option<usize>, String> {
    let file = store.membership().await.map_err(|e| e.to_string())?;
    // A file not placed yet may lack stretches it does not know of.
    let holds = file.is_some_and(|f| {
        f.group.as_deref() == Some(group) && !f.missing.iter().any(|&(a, u)| a < until && after < u)
    });
    if !holds {
        return Ok(None);
    }
    let owner = format!("{answer}:owner");
    let claimed: Option<String> = redis::cmd("SET")
        .arg(&owner)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(CLAIM_MS)
        .query_async(c)
        .await
        .map_err(|e| e.to_string())?;
    if claimed.is_none() {
        return Ok(None);
    }
    let every = ReplayFilter::unscoped(ReplayRule::Subscription(Vec::new()));
    let (mut from, mut sent) = (after, 0);
    loop {
        if driver.is_closed() {
            return Err("the server stopped".into());
        }
        let page = store.replay(ReplayFrom::Position(from), &every, PAGE).await.map_err(|e| e.to_string())?;
        let events = page.map(|(_, events)| events).unwrap_or_default();
        let inside: Vec<_> = events.into_iter().filter(|e| e.position < until).collect();
        // A whole page inside the stretch: there may be more.
        let more = inside.len() == PAGE;
        wait_for_room(c, answer).await?;
        let mut pipe = redis::pipe();
        for e in &inside {
            pipe.cmd("XADD").arg(answer).arg("*").arg("e").arg(encode_event(e)).ignore();
        }
        if !more {
            pipe.cmd("XADD").arg(answer).arg("*").arg("end").arg(1).ignore();
        }
        pipe.expire(answer, ANSWER_TTL_S).ignore().pexpire(&owner, CLAIM_MS as i64).ignore();
        pipe.query_async::<()>(c).await.map_err(|e| e.to_string())?;
        sent += inside.len();
        match inside.last() {
            Some(last) if more => from = last.position,
            _ => return Ok(Some(sent)),
        }
    }
}

/// Waits while the answer holds more than [`AHEAD`] entries the asking node has not taken.
async fn wait_for_room(c: &mut MultiplexedConnection, answer: &str) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let len: u64 = c.xlen(answer).await.map_err(|e| e.to_string())?;
        if len <= AHEAD {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            return Err("the asking node stopped taking the answer".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
