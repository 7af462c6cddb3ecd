//! A cluster node's storing consumer of the log, as the core decides it: a consumer group (shared
//! by the nodes, or the node's own) reads the log, the store queue feeds the store, and what the
//! store kept is acknowledged. The shell executes one command at a time and reports what came of
//! it; the core decides what comes next and when: its own unacknowledged entries first after a
//! start or a lost connection, new entries while the store keeps up, a dead node's entries
//! claimed every half `claim_idle_ms`, the log trimmed every `TRIM_INTERVAL_MS`, a failure retried
//! after a backoff over a new connection.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use uuid::Uuid;

use crate::event::ReaderEvent;
use crate::position::LogPosition;
use crate::time::Millis;

/// How often the log is trimmed (and the gauges read).
pub const TRIM_INTERVAL_MS: u64 = 500;
/// How long a read of new entries waits in Redis when there are none.
pub const READ_BLOCK_MS: u64 = 500;
const RETRY_BASE_MS: u64 = 100;
const RETRY_MAX_MS: u64 = 5_000;

/// What the consumer asks of Redis; the shell reports [`crate::Input::Consumed`] (with the
/// entries read or claimed, none for the others) or [`crate::Input::ConsumeFailed`].
#[derive(Clone, Debug, PartialEq)]
pub enum ConsumerCommand {
    /// Create the group where missing, then read this consumer's own unacknowledged entries
    /// (over a new connection when `fresh`).
    ReadPending { fresh: bool },
    /// Read up to `count` new entries for the group, waiting up to `block_ms` when there are none.
    ReadNew { count: usize, block_ms: u64 },
    /// Take over the entries other consumers left unacknowledged for longer than `idle_ms`.
    Claim { idle_ms: u64 },
    /// The store kept these entries.
    Acknowledge { ids: Vec<String> },
    /// The store refused these events after their last attempt: keep them in the group's
    /// dead-letter stream and acknowledge their entries.
    DeadLetter { events: Vec<Arc<ReaderEvent>>, ids: Vec<String> },
    /// Trim the log behind what every group has stored ([`trim_point`]), keeping the entries from
    /// `keep_from` on; read the gauges on the way.
    Trim { keep_from: LogPosition },
}

/// A storing group of the log, as a trim finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupPlace {
    /// The last entry the group was given.
    pub given_to: LogPosition,
    /// Its oldest entry given and not acknowledged yet, if any.
    pub oldest_pending: Option<LogPosition>,
}

impl GroupPlace {
    /// Where what the group may still have to store begins at the earliest: its oldest
    /// unacknowledged entry, or the last entry it was given (kept too), whichever comes first. A
    /// group set back to where a new file of its node ends (`XGROUP SETID`) still holds entries
    /// given before, unacknowledged, that lie after its new place.
    pub fn unstored_from(&self) -> LogPosition {
        self.oldest_pending.map_or(self.given_to, |pending| pending.min(self.given_to))
    }
}

/// The first entry the log must keep: behind every group's unstored entries, and never past
/// `keep_from`. `None` when nothing may go.
pub fn trim_point(keep_from: LogPosition, groups: &[GroupPlace]) -> Option<LogPosition> {
    let point = groups.iter().map(GroupPlace::unstored_from).fold(keep_from, LogPosition::min);
    (point > LogPosition::START).then_some(point)
}

/// The consumer's bookkeeping; the store queue itself is the core's [`crate::queue`].
#[derive(Debug)]
pub struct Consumer {
    /// Its own jitter (see `readers.rs`).
    rng: ChaCha8Rng,
    /// The command out now.
    in_flight: Option<ConsumerCommand>,
    /// The last read filled its count: more may wait, so read again without waiting.
    more: bool,
    /// The least time between two reads of new entries that found some (see
    /// [`crate::Config::log_store_pace_ms`]).
    pace_ms: u64,
    /// When the next read of new entries may go, after one that found entries.
    read_not_before: Option<Millis>,
    /// Its own unacknowledged entries must be read first (at start, after a lost connection).
    needs_pending: bool,
    fresh: bool,
    failures: u32,
    retry_at: Option<Millis>,
    /// Stream ids of the events held, by event id (several when an append was repeated).
    held: BTreeMap<Uuid, Vec<String>>,
    to_ack: Vec<String>,
    dead: VecDeque<(Arc<ReaderEvent>, Vec<String>)>,
    /// The newest entry read, in milliseconds of its stream id, for the retention horizon.
    newest_ms: Option<u64>,
    next_claim: Millis,
    next_trim: Millis,
}

impl Consumer {
    /// A consumer whose reads of new entries that found some are `pace_ms` apart at least.
    pub fn new(seed: u64, pace_ms: u64) -> Consumer {
        Consumer {
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_flight: None,
            more: false,
            pace_ms,
            read_not_before: None,
            needs_pending: true,
            fresh: false,
            failures: 0,
            retry_at: None,
            held: BTreeMap::new(),
            to_ack: Vec::new(),
            dead: VecDeque::new(),
            newest_ms: None,
            next_claim: Millis(0),
            next_trim: Millis(0),
        }
    }

    /// The next command, if none is out and no retry waits. `room` says whether the store queue
    /// takes more events now; `idle` whether it holds none: a read may then wait in Redis for
    /// entries. Otherwise the consumer reads again only when the last read filled its count; else
    /// it waits for the store to take what it holds. A read that found entries is followed by the
    /// next only after the pace, unless it filled its count.
    pub fn next(
        &mut self,
        now: Millis,
        room: bool,
        idle: bool,
        batch: usize,
        claim_idle_ms: u64,
        retain_ms: u64,
    ) -> Option<ConsumerCommand> {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|at| at > now) {
            return None;
        }
        self.retry_at = None;
        // A pace that is over holds nothing, and must not keep a timer due in the past.
        if self.read_not_before.is_some_and(|at| at <= now) {
            self.read_not_before = None;
        }
        let command = if self.needs_pending {
            ConsumerCommand::ReadPending { fresh: std::mem::take(&mut self.fresh) }
        } else if let Some((event, ids)) = self.dead.pop_front() {
            ConsumerCommand::DeadLetter { events: vec![event], ids }
        } else if !self.to_ack.is_empty() {
            ConsumerCommand::Acknowledge { ids: std::mem::take(&mut self.to_ack) }
        } else if now >= self.next_claim {
            self.next_claim = now.plus((claim_idle_ms / 2).max(1));
            ConsumerCommand::Claim { idle_ms: claim_idle_ms }
        } else if now >= self.next_trim {
            self.next_trim = now.plus(TRIM_INTERVAL_MS);
            let keep_from = self.newest_ms.map_or(0, |ms| ms.saturating_sub(retain_ms));
            ConsumerCommand::Trim { keep_from: LogPosition::at(Millis(keep_from)) }
        } else if room && (self.more || (idle && self.read_not_before.is_none())) {
            ConsumerCommand::ReadNew { count: batch, block_ms: if idle { READ_BLOCK_MS } else { 0 } }
        } else {
            return None;
        };
        self.in_flight = Some(command.clone());
        Some(command)
    }

    /// When something is next due without any input: a retry, a claim, a trim or a paced read.
    pub fn wake_at(&self) -> Option<Millis> {
        if self.in_flight.is_some() {
            return None;
        }
        let due = self.next_claim.min(self.next_trim);
        self.retry_at.or(Some(self.read_not_before.map_or(due, |at| at.min(due))))
    }

    /// The last command succeeded; `entries` are what it read or claimed, as (stream id, `m`
    /// field). Returns the events the store does not hold yet, in order.
    pub fn done(&mut self, now: Millis, entries: Vec<(String, Arc<ReaderEvent>)>) -> Vec<Arc<ReaderEvent>> {
        if let Some(ConsumerCommand::ReadPending { .. }) = self.in_flight {
            self.needs_pending = false;
        }
        if let Some(ConsumerCommand::ReadNew { count, .. }) = self.in_flight {
            // A read that filled its count leaves a backlog behind: no pace holds the next.
            let full = entries.len() >= count;
            let paced = !entries.is_empty() && !full && self.pace_ms > 0;
            self.read_not_before = paced.then(|| now.plus(self.pace_ms));
            self.more = full;
        } else {
            self.more = false;
        }
        self.in_flight = None;
        self.failures = 0;
        let mut fresh = Vec::new();
        for (id, event) in entries {
            if let Ok(position) = id.parse::<LogPosition>() {
                self.newest_ms = self.newest_ms.max(Some(position.ms));
            }
            // Stored already, its acknowledgement lost with a connection: it is sent again.
            if self.to_ack.contains(&id) {
                continue;
            }
            let ids = self.held.entry(event.id).or_default();
            if ids.contains(&id) {
                continue;
            }
            // A second copy of an event (an append retried after part of it landed) that stands
            // before the held one in the log goes to the store too: it keeps the earliest position.
            let at = |id: &str| id.parse::<LogPosition>().unwrap_or(LogPosition::START);
            let earliest = ids.iter().all(|held| at(held) > at(&id));
            ids.push(id);
            if earliest {
                fresh.push(event);
            }
        }
        fresh
    }

    /// An entry that is no event (it can never be stored) is acknowledged, so it holds nothing.
    pub fn useless(&mut self, id: String) {
        self.to_ack.push(id);
    }

    /// The last command failed: what it did not finish is done again over a new connection,
    /// after a backoff. Entries read and not yet acknowledged are read again as pending.
    pub fn failed(&mut self, now: Millis) {
        let lost = self.in_flight.take();
        self.more = false;
        self.failures = self.failures.saturating_add(1);
        let delay = crate::backoff::delay(RETRY_BASE_MS, RETRY_MAX_MS, self.failures, &mut self.rng);
        self.retry_at = Some(now.plus(delay));
        self.needs_pending = true;
        self.fresh = true;
        match lost {
            Some(ConsumerCommand::Acknowledge { ids }) => self.to_ack.extend(ids),
            Some(ConsumerCommand::DeadLetter { mut events, ids }) => {
                if let Some(event) = events.pop() {
                    self.dead.push_front((event, ids));
                }
            }
            _ => {}
        }
    }

    /// The store kept these events: their entries are acknowledged next.
    pub fn stored(&mut self, events: &[Arc<ReaderEvent>]) {
        for e in events {
            self.to_ack.extend(self.held.remove(&e.id).unwrap_or_default());
        }
    }

    /// The store refused these for good: they go to the dead-letter stream next.
    pub fn dead_lettered(&mut self, events: Vec<Arc<ReaderEvent>>) {
        for e in events {
            let ids = self.held.remove(&e.id).unwrap_or_default();
            self.dead.push_back((e, ids));
        }
    }
}
