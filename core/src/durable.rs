//! From accepted to durable to shown. An accepted event waits in the [`crate::log`] until the
//! deployment's log holds it; only then is its sender told and is it shown: delivered, kept in
//! history, recorded in presence and counted. On a single node that happens when this node's own
//! append is confirmed; in a cluster, when any node reads the entry back from the shared log, so
//! every node shows every event in the log's one order, its own included.

use std::sync::Arc;
use uuid::Uuid;

use crate::log::AppendId;
use crate::sequence::Sequencing;
use crate::timers::Timer;
use crate::{BusBody, BusMessage, Core, LogPosition, Millis, Output, ReaderEvent};

impl Core {
    /// Hands the log its next append when none is in flight, and arms the retry timer; inside a
    /// burst, once it ends.
    pub(crate) fn pump_log(&mut self, now: Millis) {
        if self.in_burst {
            return;
        }
        if let Some((append, entries)) = self.log.next_append(now) {
            self.outputs.push_back(Output::Append { append, entries });
        }
        match self.log.retry_at() {
            Some(at) => self.timers.set(Timer::AppendRetry, at),
            None => self.timers.cancel(Timer::AppendRetry),
        }
    }

    /// Recent history read from the store at start. A single node places its next events after
    /// every position the store holds, whatever the clock says now; a cluster node reads the log
    /// on from no later than the newest of them, so that nothing between the store and the log
    /// is missing from its history.
    pub(crate) fn on_history_loaded(&mut self, events: Vec<Arc<ReaderEvent>>, complete: bool) {
        self.placed_before(&events);
        for e in &events {
            self.activity.record(self.wall, e.timestamp, &e.user_id, &e.event_type);
        }
        self.history.warm(events, complete);
        if let (true, Some(newest)) = (self.config.deployment.reads_back(), self.history.newest()) {
            self.log_reader.stored_up_to(newest.to_string());
        }
    }

    /// Events the log placed before this run: later events go after them.
    pub(crate) fn placed_before<'a>(&mut self, events: impl IntoIterator<Item = &'a Arc<ReaderEvent>>) {
        for e in events {
            self.last_position = self.last_position.max(e.position);
        }
    }

    /// The log holds append `append`, except the entries it refused as repeats of a key: each
    /// of those (by event id) with the id of the event that first had its key.
    pub(crate) fn on_appended(&mut self, now: Millis, append: AppendId, repeats: &[(Uuid, Uuid)]) {
        let Some(done) = self.log.appended(append) else { return };
        let deployment = self.config.deployment;
        for (entry, ack) in done {
            let first = repeats.iter().find(|(id, _)| *id == entry.event.id).map(|(_, first)| *first);
            let waiting = match &entry.key {
                Some(key) => {
                    self.keyed.remove(&(entry.event.user_id.clone(), key.clone())).unwrap_or_default()
                }
                None => Vec::new(),
            };
            let id = first.unwrap_or(entry.event.id);
            self.send_receipt(entry.sender, ack, id, first.is_some());
            for (conn, ack) in waiting {
                self.send_receipt(conn, ack, id, true);
            }
            if first.is_some() {
                // Not accepted again: neither shown, stored nor counted.
                self.stats.duplicates += 1;
                continue;
            }
            self.stats.events_accepted += 1;
            self.minute.add(now, 1);
            if deployment.reads_back() {
                // Shown when this node reads it back from the log, in the log's order.
                continue;
            }
            self.show(&entry.event, &entry.origin, true);
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

    /// An entry read from the cluster's log. Repeats are dropped: by their origin's sequence (an
    /// append retried after part of it landed; an entry of it that had not landed is new where
    /// its retry put it, see [`crate::sequence`]), and by id when history already holds the event
    /// (read from the store at start, at its first copy's place), so that every node shows an
    /// event once and at its first place in the log.
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
            Sequencing::Late => self.stats.log_late += 1,
            Sequencing::InOrder => {}
        }
        let Some(event) = e.into_event(position) else {
            self.stats.bus_malformed += 1;
            return;
        };
        if self.history.holds(event.id) {
            self.stats.log_duplicates += 1;
            return;
        }
        let mine = msg.origin == self.node;
        let this_run = mine && msg.incarnation == self.incarnation;
        if !mine {
            self.presence.heard(&msg.origin, now);
            self.timers.set_earliest(Timer::NodeExpiry, now.plus(self.config.presence_ttl_ms));
            self.stats.remote_events += 1;
        }
        self.show(&Arc::new(event), &msg.origin, this_run);
    }

    /// Shows a durable event that `origin` accepted: delivers it to this node's recipients,
    /// records the reader's activity (as this node's reader when `local`, else as the origin's)
    /// and keeps it in history.
    fn show(&mut self, event: &Arc<ReaderEvent>, origin: &str, local: bool) {
        self.deliver(event);
        let (book, page) = (event.reading.book.as_deref(), event.reading.page.as_deref());
        if local {
            // Stamped when accepted (this node's clock), not when shown: an entry shown late,
            // after a later one of the same append, must not move the reader's page back.
            self.presence.local_activity(&event.user_id, event.timestamp, book, page);
        } else if origin != self.node.as_str() {
            self.presence.remote_activity(origin, &event.user_id, event.timestamp, book, page);
        }
        self.activity.record(self.wall, event.timestamp, &event.user_id, &event.event_type);
        self.history.insert(event.clone());
    }
}
