//! The store queue's bookkeeping: durable events wait here until the event store confirms them.
//! A failed batch is retried with exponential backoff and seeded jitter; an event that has used
//! its attempts becomes a dead letter until an admin replays it. Nothing leaves silently.
//!
//! Every event here is already durable in the deployment's log (the local outbox, or the
//! cluster's stream for the storage worker), so it has been acknowledged and shown: the queue
//! only decides when the store gets it.

use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::Config;
use crate::event::ReaderEvent;
use crate::time::Millis;

/// Names one store batch, so its result can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// How a store batch failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFailure {
    /// The store could not be reached or timed out: retry the batch as it is.
    Unavailable,
    /// The store refused the batch's content: retry its events one by one, so one poison event
    /// cannot hold back the others.
    Rejected,
}

#[derive(Clone, Debug)]
struct Pending {
    event: Arc<ReaderEvent>,
    attempts: u32,
}

#[derive(Debug)]
struct Retry {
    due: Millis,
    events: Vec<Pending>,
}

/// Durable events not yet stored.
#[derive(Debug)]
pub struct DurableQueue {
    ready: VecDeque<Pending>,
    /// When the oldest of `ready` was first seen waiting: the batch's linger counts from here.
    ready_since: Option<Millis>,
    retrying: Vec<Retry>,
    in_flight: Option<(BatchId, Vec<Pending>)>,
    dead: Vec<Arc<ReaderEvent>>,
    next_batch: u64,
    batch_size: usize,
    linger_ms: u64,
    max_attempts: u32,
    base_ms: u64,
    max_ms: u64,
}

impl DurableQueue {
    pub fn new(config: &Config) -> Self {
        DurableQueue {
            ready: VecDeque::new(),
            ready_since: None,
            retrying: Vec::new(),
            in_flight: None,
            dead: Vec::new(),
            next_batch: 1,
            batch_size: config.store_batch_size.max(1),
            linger_ms: config.store_batch_linger_ms,
            max_attempts: config.store_max_attempts.max(1),
            base_ms: config.store_retry_base_ms.max(1),
            max_ms: config.store_retry_max_ms.max(1),
        }
    }

    /// Events held: waiting, retrying, in flight and dead. The core bounds them with the log's.
    pub fn len(&self) -> usize {
        self.ready.len()
            + self.retrying.iter().map(|r| r.events.len()).sum::<usize>()
            + self.in_flight.as_ref().map_or(0, |(_, b)| b.len())
            + self.dead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events waiting to be stored (everything but dead letters).
    pub fn waiting(&self) -> usize {
        self.len() - self.dead.len()
    }

    pub fn dead_letters(&self) -> usize {
        self.dead.len()
    }

    /// Whether a batch is with the store now.
    pub fn is_processing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Queues a durable event for the store.
    pub fn push(&mut self, event: Arc<ReaderEvent>) {
        self.ready.push_back(Pending { event, attempts: 0 });
    }

    /// Keeps events found dead-lettered at start (a durable dead-letter table).
    pub fn push_dead(&mut self, event: Arc<ReaderEvent>) {
        self.dead.push(event);
    }

    /// The next batch to store, if the store is idle and something is due: a retry whose time
    /// has come, else a full batch, else the waiting events once the oldest has lingered.
    pub fn next_batch(&mut self, now: Millis) -> Option<(BatchId, Vec<Arc<ReaderEvent>>)> {
        if !self.ready.is_empty() {
            self.ready_since.get_or_insert(now);
        }
        if self.in_flight.is_some() {
            return None;
        }
        let batch = match self.retrying.iter().position(|r| r.due <= now) {
            Some(i) => self.retrying.remove(i).events,
            None if self.ready.len() >= self.batch_size
                || self.lingered_until().is_some_and(|t| t <= now) =>
            {
                let n = self.ready.len().min(self.batch_size);
                let batch = self.ready.drain(..n).collect();
                if self.ready.is_empty() {
                    self.ready_since = None;
                }
                batch
            }
            None => return None,
        };
        let id = BatchId(self.next_batch);
        self.next_batch += 1;
        let events = batch.iter().map(|p| p.event.clone()).collect();
        self.in_flight = Some((id, batch));
        Some((id, events))
    }

    /// When the waiting events' batch has lingered long enough to go, if any wait.
    fn lingered_until(&self) -> Option<Millis> {
        self.ready_since.filter(|_| !self.ready.is_empty()).map(|since| since.plus(self.linger_ms))
    }

    /// The store kept batch `id`: returns its events, or `None` when `id` is not the batch in
    /// flight (a stale answer).
    pub fn stored(&mut self, id: BatchId) -> Option<Vec<Arc<ReaderEvent>>> {
        match self.in_flight.take() {
            Some((current, batch)) if current == id => Some(batch.into_iter().map(|p| p.event).collect()),
            other => {
                self.in_flight = other;
                None
            }
        }
    }

    /// The store failed batch `id`; schedules retries and dead-letters what used its attempts.
    /// Returns the events dead-lettered now: a dead letter is held until an admin replays it,
    /// which is what the protocol promises for an event the store keeps refusing.
    pub fn failed(
        &mut self,
        id: BatchId,
        failure: StoreFailure,
        now: Millis,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Arc<ReaderEvent>> {
        let batch = match self.in_flight.take() {
            Some((current, batch)) if current == id => batch,
            other => {
                self.in_flight = other;
                return Vec::new();
            }
        };
        let mut retry = Vec::new();
        let mut dead = Vec::new();
        for mut p in batch {
            p.attempts += 1;
            if p.attempts >= self.max_attempts {
                self.dead.push(p.event.clone());
                dead.push(p.event);
            } else {
                retry.push(p);
            }
        }
        let Some(attempts) = retry.iter().map(|p| p.attempts).max() else {
            return dead;
        };
        let due = now.plus(self.backoff(attempts, rng));
        match failure {
            StoreFailure::Unavailable => self.retrying.push(Retry { due, events: retry }),
            StoreFailure::Rejected => {
                self.retrying.extend(retry.into_iter().map(|p| Retry { due, events: vec![p] }))
            }
        }
        dead
    }

    /// Exponential backoff with "equal jitter": half the delay fixed, half drawn from the seed.
    fn backoff(&self, attempts: u32, rng: &mut ChaCha8Rng) -> u64 {
        crate::backoff::delay(self.base_ms, self.max_ms, attempts, rng)
    }

    /// When [`DurableQueue::next_batch`] next has something to hand out (a retry or a lingered
    /// batch), if nothing is in flight; the caller sets a timer for it.
    pub fn next_due(&self) -> Option<Millis> {
        if self.in_flight.is_some() {
            return None;
        }
        self.retrying.iter().map(|r| r.due).chain(self.lingered_until()).min()
    }

    /// Takes the dead letters out (to keep them elsewhere, such as a Redis dead-letter stream).
    pub fn take_dead(&mut self) -> Vec<Arc<ReaderEvent>> {
        std::mem::take(&mut self.dead)
    }

    /// Puts every dead letter back in line with fresh attempts; returns how many.
    pub fn replay_dead(&mut self) -> usize {
        let n = self.dead.len();
        for event in self.dead.drain(..) {
            self.ready.push_back(Pending { event, attempts: 0 });
        }
        n
    }
}
