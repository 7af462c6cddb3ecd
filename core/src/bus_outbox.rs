//! A cluster node's bus messages (presence, heartbeats, leaving) on their way to Redis, as the
//! core decides it: one batch out at a time, a failed batch retried after a backoff, and, when
//! Redis stays away long enough for the outbox to fill, the oldest messages dropped. Dropping is
//! safe for the bus alone: every heartbeat carries the node's whole list of readers, so the next
//! one repairs whatever a dropped message said. (Events never ride here: they are the log's.)

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use std::collections::VecDeque;

use crate::bus::BusMessage;
use crate::time::Millis;

/// Messages held while Redis is away.
pub const CAPACITY: usize = 10_000;
/// Messages in one batch (one round trip).
const BATCH: usize = 256;
const RETRY_BASE_MS: u64 = 100;
const RETRY_MAX_MS: u64 = 5_000;

#[derive(Debug)]
pub struct BusOutbox {
    rng: ChaCha8Rng,
    waiting: VecDeque<BusMessage>,
    /// How many of the oldest waiting messages are out now.
    in_flight: usize,
    failures: u32,
    retry_at: Option<Millis>,
    dropped: u64,
}

impl BusOutbox {
    pub fn new(seed: u64) -> BusOutbox {
        BusOutbox {
            rng: ChaCha8Rng::seed_from_u64(seed),
            waiting: VecDeque::new(),
            in_flight: 0,
            failures: 0,
            retry_at: None,
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Messages dropped from a full outbox so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Holds a message; when full, the oldest one not out now is dropped.
    pub fn push(&mut self, msg: BusMessage) {
        if self.waiting.len() >= CAPACITY && self.waiting.len() > self.in_flight {
            self.waiting.remove(self.in_flight);
            self.dropped += 1;
        }
        self.waiting.push_back(msg);
    }

    /// The next batch, if none is out and no retry waits.
    pub fn next(&mut self, now: Millis) -> Option<Vec<BusMessage>> {
        if self.in_flight > 0 || self.waiting.is_empty() || self.retry_at.is_some_and(|at| at > now) {
            return None;
        }
        self.retry_at = None;
        self.in_flight = self.waiting.len().min(BATCH);
        Some(self.waiting.iter().take(self.in_flight).cloned().collect())
    }

    /// Redis holds the batch out now.
    pub fn sent(&mut self) {
        self.waiting.drain(..self.in_flight);
        self.in_flight = 0;
        self.failures = 0;
    }

    /// The batch failed (part of it may have landed: receivers drop repeats by sequence); it is
    /// sent again after a backoff.
    pub fn failed(&mut self, now: Millis) {
        self.in_flight = 0;
        self.failures = self.failures.saturating_add(1);
        let delay = crate::backoff::delay(RETRY_BASE_MS, RETRY_MAX_MS, self.failures, &mut self.rng);
        self.retry_at = Some(now.plus(delay));
    }

    /// When a retry is due, if one waits.
    pub fn retry_at(&self) -> Option<Millis> {
        self.retry_at.filter(|_| self.in_flight == 0 && !self.waiting.is_empty())
    }
}
