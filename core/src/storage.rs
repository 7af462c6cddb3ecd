//! Feeding the store from the store queue (a local outbox only): one batch at a time, retries on
//! their timers, dead letters counted and handed to the shell to keep durably.

use std::sync::Arc;

use crate::queue::{BatchId, StoreFailure};
use crate::timers::Timer;
use crate::{Core, Millis, Output, ReaderEvent};

impl Core {
    /// Hands the store its next batch when it is idle and one is due, and arms the timer for
    /// the next (a retry, or a batch lingering for more events).
    pub(crate) fn pump_store(&mut self, now: Millis) {
        if let Some((batch, events)) = self.queue.next_batch(now) {
            self.outputs.push_back(Output::StoreBatch { batch, events });
        }
        match self.queue.next_due() {
            Some(at) => self.timers.set(Timer::StoreDue, at),
            None => self.timers.cancel(Timer::StoreDue),
        }
    }

    pub(crate) fn on_stored(&mut self, now: Millis, batch: BatchId) {
        if self.queue.stored(batch).is_some() {
            self.pump_store(now);
        }
    }

    pub(crate) fn on_store_failed(&mut self, now: Millis, batch: BatchId, failure: StoreFailure) {
        let dead = self.queue.failed(batch, failure, now, &mut self.rng);
        if !dead.is_empty() {
            self.stats.events_dead_lettered += dead.len() as u64;
            self.outputs.push_back(Output::DeadLettered { events: dead });
        }
        self.pump_store(now);
    }

    /// What a local outbox held at start: acknowledged events the store does not have yet go on
    /// to it, and dead letters stay dead until replayed. Both are already in the history the
    /// shell loaded.
    pub(crate) fn on_unstored(
        &mut self,
        now: Millis,
        events: Vec<Arc<ReaderEvent>>,
        dead: Vec<Arc<ReaderEvent>>,
    ) {
        for event in events {
            self.queue.push(event);
        }
        for event in dead {
            self.queue.push_dead(event);
        }
        self.pump_store(now);
    }
}
