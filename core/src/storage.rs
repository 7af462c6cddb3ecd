//! Feeding the store from the durable queue: one batch at a time, retries on their timers,
//! dead letters counted, and the receipts that wait for a batch sent when it is stored.

use crate::queue::{BatchId, StoreFailure};
use crate::timers::Timer;
use crate::{Core, Millis, Output};

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
        if let Some(receipts) = self.queue.stored(batch) {
            for (receipt, event) in receipts {
                self.send_receipt(receipt, &event);
            }
            self.pump_store(now);
        }
    }

    pub(crate) fn on_store_failed(&mut self, now: Millis, batch: BatchId, failure: StoreFailure) {
        let dead = self.queue.failed(batch, failure, now, &mut self.rng);
        self.stats.events_dead_lettered += dead.count as u64;
        for (receipt, event) in dead.receipts {
            self.send_receipt(receipt, &event);
        }
        self.pump_store(now);
    }
}
