//! The core's reading of the cluster's two streams: the log (every event, in the one order) and
//! the bus (presence and heartbeats). The shell executes one read at a time per stream and
//! reports what came of it; the core decides the rest: where each read starts, when to try again
//! after a failure (exponential backoff with jitter), and when a bus that has gone silent is read
//! over a fresh connection. A read never skips: it starts after the last entry read.

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::time::Millis;

/// A stream of the cluster's that the core reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    Log,
    Bus,
}

/// Where a read starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// Learn where this run's reading starts, reading nothing. The log's reading starts after
    /// the older of `stored` (the newest event the node's history loaded from its store) and
    /// the last entry before the first one its storing group has not stored yet (a group that
    /// does not exist yet is created from the log's beginning), so that no entry between what
    /// the store gave and what Redis still holds is skipped; with neither known (and always for
    /// the bus), after the newest entry (`0-0` for an empty stream).
    Opening { stored: Option<String> },
    /// The entries after this id, waiting a moment for new ones when there are none.
    After(String),
}

/// First delay after a failed read; it doubles with each failure in a row.
const RETRY_BASE_MS: u64 = 100;
const RETRY_MAX_MS: u64 = 5_000;

/// One stream's reading.
#[derive(Debug)]
pub struct Reader {
    /// Its own jitter: which of two links fails first (they often fail together, when Redis
    /// goes) must not change the other's delays, or a run would depend on the order in which
    /// sockets close.
    rng: ChaCha8Rng,
    /// The last entry read; `None` until the first read learned where to start.
    after: Option<String>,
    /// What the opening read is told of the store (see [`ReadFrom::Opening`]).
    stored: Option<String>,
    reading: bool,
    failures: u32,
    retry_at: Option<Millis>,
    /// The next read goes over a new connection (after a failure, or to repair a silent bus).
    fresh: bool,
    /// Reads asked for so far; the one out (or the last one back) is number `issued`.
    issued: u64,
}

impl Reader {
    pub fn new(seed: u64) -> Reader {
        Reader {
            rng: ChaCha8Rng::seed_from_u64(seed),
            after: None,
            stored: None,
            reading: false,
            failures: 0,
            retry_at: None,
            fresh: false,
            issued: 0,
        }
    }

    /// The newest entry the node's store holds, for the opening read (see [`ReadFrom::Opening`]).
    pub fn stored_up_to(&mut self, position: String) {
        self.stored = Some(position);
    }

    /// Whether the reader knows where it stands in its stream.
    pub fn is_open(&self) -> bool {
        self.after.is_some()
    }

    /// The next read, unless one is out or a retry's wait is not over: where it starts, and
    /// whether it needs a new connection.
    pub fn next_read(&mut self, now: Millis) -> Option<(ReadFrom, bool)> {
        if self.reading || self.retry_at.is_some_and(|at| at > now) {
            return None;
        }
        self.retry_at = None;
        self.reading = true;
        self.issued += 1;
        let from = match &self.after {
            Some(after) => ReadFrom::After(after.clone()),
            None => ReadFrom::Opening { stored: self.stored.clone() },
        };
        Some((from, std::mem::take(&mut self.fresh)))
    }

    /// A read came back; `position` is the id of the last entry it read (or the newest found).
    /// When it found entries, the next read waits until `not_before`, so that it finds more.
    pub fn read(&mut self, position: Option<String>, not_before: Option<Millis>) {
        self.reading = false;
        self.failures = 0;
        self.retry_at = not_before;
        if position.is_some() {
            self.after = position;
        }
    }

    /// A read failed: the next one waits out a backoff and goes over a new connection.
    pub fn failed(&mut self, now: Millis) {
        self.reading = false;
        self.failures = self.failures.saturating_add(1);
        let delay = crate::backoff::delay(RETRY_BASE_MS, RETRY_MAX_MS, self.failures, &mut self.rng);
        self.retry_at = Some(now.plus(delay));
        self.fresh = true;
    }

    /// How many reads were asked for: the one out, or the last one back, is this number.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// The next read goes over a new connection.
    pub fn repair(&mut self) {
        self.fresh = true;
    }

    /// When the next read is due, if it waits (a retry's backoff, or the pace).
    pub fn retry_at(&self) -> Option<Millis> {
        self.retry_at.filter(|_| !self.reading)
    }
}
