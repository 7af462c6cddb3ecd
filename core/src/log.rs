//! The log's bookkeeping: accepted events wait here until the deployment's log holds them (the
//! SQLite commit, the local outbox, or the cluster's Redis stream). Nothing here has been
//! acknowledged or shown to anyone, so nothing here is ever dropped or dead-lettered: a failed
//! append is retried whole after a backoff, and the queue's capacity bounds the wait.
//!
//! One append is in flight at a time and whatever arrived meanwhile goes in the next (group
//! commit): under load each append carries more events, with no fixed linger.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::bus::{BusBody, BusEvent, BusMessage};
use crate::event::ReaderEvent;
use crate::time::Millis;
use crate::{AckId, ConnId};

/// Names one append, so its result can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppendId(pub u64);

/// The most entries one append carries (`STORE_BATCH_SIZE` is capped at it): the log's readers
/// expect a number skipped this far below the highest they read (`crate::sequence`).
pub const MAX_APPEND_ENTRIES: usize = 10_000;

/// First delay after a failed append; it doubles with each failure in a row.
const RETRY_BASE_MS: u64 = 50;
/// Longest delay between two attempts.
const RETRY_MAX_MS: u64 = 5_000;

/// One accepted event as the log holds it: the event, where it came from (node, incarnation and
/// that origin's log sequence, so repeats are dropped) and who waits for its receipt.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub event: Arc<ReaderEvent>,
    pub origin: Arc<str>,
    pub incarnation: u64,
    pub seq: u64,
    /// The sending socket on this run of this node, told when the event is durable.
    pub sender: ConnId,
    /// The sender's `clientEventId`: the log takes the entry only if no entry of the same user
    /// with this key is younger than the idempotency window. Only the appending node knows it.
    pub key: Option<Arc<str>>,
}

impl LogEntry {
    /// The entry as it travels in the cluster's log stream.
    pub fn to_message(&self) -> BusMessage {
        let e = &self.event;
        BusMessage {
            origin: self.origin.to_string(),
            incarnation: self.incarnation,
            seq: self.seq,
            body: BusBody::Event(BusEvent {
                id: e.id.into_bytes(),
                user_id: e.user_id.to_string(),
                event_type: e.event_type.clone(),
                data: e.data.get().to_owned(),
                timestamp: e.timestamp,
                session_id: e.session_id.clone(),
                sender_socket: e.sent_from.socket.to_string(),
                sender_rooms: e.sent_from.rooms.clone(),
            }),
        }
    }
}

/// An entry and the acknowledgement callback its sender waits on, if any.
#[derive(Clone, Debug)]
struct Waiting {
    entry: Arc<LogEntry>,
    ack: Option<AckId>,
}

/// Entries whose append was confirmed, with the acknowledgement callbacks now due.
pub type Appended = Vec<(Arc<LogEntry>, Option<AckId>)>;

/// Accepted events on their way into the log.
#[derive(Debug)]
pub struct Log {
    /// Its own jitter, so that when an append fails relative to other inputs changes no other
    /// random draw (event ids), and runs replay exactly.
    rng: ChaCha8Rng,
    waiting: VecDeque<Waiting>,
    in_flight: Option<(AppendId, Vec<Waiting>)>,
    /// Failed appends in a row; the next attempt waits until `retry_at`.
    failures: u32,
    retry_at: Option<Millis>,
    /// Whether appends may go out: a cluster node first learns where its reading of the log
    /// starts, so that it reads back every entry it appends.
    open: bool,
    next_append: u64,
    batch_size: usize,
}

impl Log {
    pub fn new(batch_size: usize, open: bool, seed: u64) -> Log {
        Log {
            rng: ChaCha8Rng::seed_from_u64(seed),
            waiting: VecDeque::new(),
            in_flight: None,
            failures: 0,
            retry_at: None,
            open,
            next_append: 1,
            batch_size: batch_size.clamp(1, MAX_APPEND_ENTRIES),
        }
    }

    /// Entries not yet durable: waiting and in flight.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.as_ref().map_or(0, |(_, b)| b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an append is with the log now.
    pub fn is_appending(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Lets appends go out (see [`Log::new`]).
    pub fn open(&mut self) {
        self.open = true;
    }

    pub fn push(&mut self, entry: Arc<LogEntry>, ack: Option<AckId>) {
        self.waiting.push_back(Waiting { entry, ack });
    }

    /// The next append, if none is in flight and a retry's wait (if any) is over.
    pub fn next_append(&mut self, now: Millis) -> Option<(AppendId, Vec<Arc<LogEntry>>)> {
        if !self.open || self.in_flight.is_some() || self.waiting.is_empty() {
            return None;
        }
        if self.retry_at.is_some_and(|at| at > now) {
            return None;
        }
        self.retry_at = None;
        let n = self.waiting.len().min(self.batch_size);
        let batch: Vec<Waiting> = self.waiting.drain(..n).collect();
        let id = AppendId(self.next_append);
        self.next_append += 1;
        let entries = batch.iter().map(|w| w.entry.clone()).collect();
        self.in_flight = Some((id, batch));
        Some((id, entries))
    }

    /// When a retry is due, if one waits.
    pub fn retry_at(&self) -> Option<Millis> {
        self.retry_at.filter(|_| self.in_flight.is_none() && !self.waiting.is_empty())
    }

    /// The log holds append `id`: its entries are durable. `None` for a stale answer.
    pub fn appended(&mut self, id: AppendId) -> Option<Appended> {
        match self.in_flight.take() {
            Some((current, batch)) if current == id => {
                self.failures = 0;
                Some(batch.into_iter().map(|w| (w.entry, w.ack)).collect())
            }
            other => {
                self.in_flight = other;
                None
            }
        }
    }

    /// Append `id` failed: its entries go back to the front, in order, and wait out a backoff.
    /// Some of them may have landed, in any subset: the log's readers drop the repeats by
    /// sequence and show the rest where the retry puts them, and the store keeps each id once.
    pub fn failed(&mut self, id: AppendId, now: Millis) {
        match self.in_flight.take() {
            Some((current, batch)) if current == id => {
                for w in batch.into_iter().rev() {
                    self.waiting.push_front(w);
                }
                self.failures = self.failures.saturating_add(1);
                let delay = crate::backoff::delay(RETRY_BASE_MS, RETRY_MAX_MS, self.failures, &mut self.rng);
                self.retry_at = Some(now.plus(delay));
            }
            other => self.in_flight = other,
        }
    }
}
