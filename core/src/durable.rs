//! From accepted to durable to shown. An accepted event waits in the [`crate::log`] until the
//! deployment's log holds it; only then is its sender told and is it shown: delivered, kept in
//! history, recorded in presence and counted. On a single node that happens when this node's own
//! append is confirmed; in a cluster, when any node reads the entry back from the shared log, so
//! every node shows every event in the log's one order, its own included.

use std::sync::Arc;

use crate::bus::Sequencing;
use crate::log::AppendId;
use crate::timers::Timer;
use crate::{BusBody, BusMessage, ConnId, Core, LogEntry, LogPosition, Millis, Output, ReaderEvent};

impl Core {
    /// Hands the log its next append when none is in flight, and arms the retry timer.
    pub(crate) fn pump_log(&mut self, now: Millis) {
        if let Some((append, entries)) = self.log.next_append(now) {
            self.outputs.push_back(Output::Append { append, entries });
        }
        match self.log.retry_at() {
            Some(at) => self.timers.set(Timer::AppendRetry, at),
            None => self.timers.cancel(Timer::AppendRetry),
        }
    }

    /// Recent history read from the store at start. A single node places its next events after
    /// every position the store holds, whatever the clock says now.
    pub(crate) fn on_history_loaded(&mut self, events: Vec<Arc<ReaderEvent>>, complete: bool) {
        self.placed_before(&events);
        self.history.warm(events, complete);
    }

    /// Events the log placed before this run: later events go after them.
    pub(crate) fn placed_before<'a>(&mut self, events: impl IntoIterator<Item = &'a Arc<ReaderEvent>>) {
        for e in events {
            self.last_position = self.last_position.max(e.position);
        }
    }

    pub(crate) fn on_appended(&mut self, now: Millis, append: AppendId) {
        let Some(done) = self.log.appended(append) else { return };
        let deployment = self.config.deployment;
        for (entry, ack) in done {
            self.stats.events_accepted += 1;
            self.minute.add(now);
            self.send_receipt(entry.sender, ack, &entry.event);
            if deployment.reads_back() {
                // Shown when this node reads it back from the log, in the log's order.
                continue;
            }
            self.show(Some(entry.sender), &entry, true);
            if deployment.stores_after_log() {
                self.queue.push(entry.event.clone());
            }
        }
        if deployment.stores_after_log() {
            self.pump_store(now);
        }
        self.pump_log(now);
    }

    pub(crate) fn on_append_failed(&mut self, now: Millis, append: AppendId) {
        self.log.failed(append, now);
        self.pump_log(now);
    }

    /// An entry read from the cluster's log. Repeats (an append retried after part of it landed)
    /// are dropped by their origin's sequence.
    pub(crate) fn on_log(&mut self, now: Millis, position: LogPosition, msg: BusMessage) {
        let BusBody::Event(e) = msg.body else {
            self.stats.bus_malformed += 1;
            return;
        };
        match self.log_seen.observe(&msg.origin, msg.incarnation, msg.seq) {
            Sequencing::Duplicate => {
                self.stats.log_duplicates += 1;
                return;
            }
            Sequencing::AfterGap { missed } => self.stats.log_gaps += missed,
            Sequencing::InOrder => {}
        }
        let Some(event) = e.to_event(position) else {
            self.stats.bus_malformed += 1;
            return;
        };
        let mine = msg.origin == self.node;
        let this_run = mine && msg.incarnation == self.incarnation;
        if !mine {
            self.presence.heard(&msg.origin, now);
            self.timers.set_earliest(Timer::NodeExpiry, now.plus(self.config.presence_ttl_ms));
            self.stats.remote_events += 1;
        }
        let entry = LogEntry {
            event: Arc::new(event),
            origin: Arc::from(msg.origin),
            incarnation: msg.incarnation,
            seq: msg.seq,
            sender: ConnId(e.sender_conn),
            sender_rooms: e.sender_rooms,
        };
        // The sending socket is ours only if this very run of the node appended the entry; a
        // previous run's socket numbers mean nothing now, and its readers are gone.
        let sender = this_run.then_some(entry.sender);
        self.show(sender, &entry, this_run);
    }

    /// Shows a durable event: delivers it to this node's recipients, records the reader's
    /// activity (as this node's reader when `local`, else as the origin's) and keeps it in history.
    fn show(&mut self, sender: Option<ConnId>, entry: &LogEntry, local: bool) {
        let event = &entry.event;
        self.deliver(sender, event, entry.sender_rooms.iter().map(String::as_str));
        let (book, page) = event.reading_position();
        if local {
            self.presence.local_activity(&event.user_id, self.wall, book.as_deref(), page.as_deref());
        } else if *entry.origin != *self.node {
            self.presence.remote_activity(
                &entry.origin,
                &event.user_id,
                event.timestamp,
                book.as_deref(),
                page.as_deref(),
            );
        }
        self.history.insert(event.clone());
    }
}
