//! Feeding the store from the store queue (behind a local outbox, or a cluster node's consumer of
//! the log): one batch at a time, retries on their timers, dead letters counted and kept durably
//! (in the outbox, or the consumer group's dead-letter stream).

use std::sync::Arc;

use crate::queue::{BatchId, StoreFailure};
use crate::timers::Timer;
use crate::{BusBody, BusMessage, Core, Millis, Output, ReaderEvent};

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
        if let Some(events) = self.queue.stored(batch) {
            if self.config.deployment.reads_back() {
                self.consumer.stored(&events);
                self.pump_consumer(now);
            }
            self.pump_store(now);
        }
    }

    pub(crate) fn on_store_failed(&mut self, now: Millis, batch: BatchId, failure: StoreFailure) {
        let dead = self.queue.failed(batch, failure, now, &mut self.rng);
        if !dead.is_empty() {
            self.stats.events_dead_lettered += dead.len() as u64;
            if self.config.deployment.reads_back() {
                // Out of the queue: they live on in the group's dead-letter stream.
                self.queue.take_dead();
                self.consumer.dead_lettered(dead);
                self.pump_consumer(now);
            } else {
                self.outputs.push_back(Output::DeadLettered { events: dead });
            }
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

impl Core {
    /// Asks for the consumer's next command and arms its timer. Nothing on a single node.
    pub(crate) fn pump_consumer(&mut self, now: Millis) {
        if !self.config.deployment.reads_back() {
            return;
        }
        let batch = self.config.store_batch_size.max(1);
        let waiting = self.queue.waiting();
        let (claim_idle, retain) = (self.config.claim_idle_ms, self.config.log_retain_ms);
        if let Some(command) =
            self.consumer.next(now, waiting < 2 * batch, waiting == 0, batch, claim_idle, retain)
        {
            self.outputs.push_back(Output::Consume(command));
        }
        match self.consumer.wake_at() {
            Some(at) => self.timers.set(Timer::Consumer, at.max(now)),
            None => self.timers.cancel(Timer::Consumer),
        }
    }

    /// What the consumer's last command read or claimed: new events go to the store queue; an
    /// entry that is no event can never be stored and is acknowledged.
    pub(crate) fn on_consumed(&mut self, now: Millis, entries: Vec<(String, Vec<u8>)>) {
        let mut events = Vec::with_capacity(entries.len());
        for (id, bytes) in entries {
            // The entry's id is the event's position in the log.
            let event = match (BusMessage::decode(&bytes).map(|m| m.body), id.parse()) {
                (Ok(BusBody::Event(e)), Ok(position)) => e.into_event(position),
                _ => None,
            };
            match event {
                Some(event) => events.push((id, Arc::new(event))),
                None => {
                    self.stats.bus_malformed += 1;
                    self.consumer.useless(id);
                }
            }
        }
        for event in self.consumer.done(now, events) {
            self.queue.push(event);
        }
        self.pump_store(now);
        self.pump_consumer(now);
    }
}
