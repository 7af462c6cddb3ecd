//! This node as one of many: presence from other nodes, duplicate and gap handling,
//! heartbeats, expiry of silent nodes, and the coalesced `online-readers` pushes.

use serde_json::Value;
use std::collections::BTreeMap;

use crate::bus::Sequencing;
use crate::replies::{self, names};
use crate::timers::Timer;
use crate::{BusBody, BusMessage, Core, Millis};

impl Core {
    pub(crate) fn on_bus(&mut self, now: Millis, msg: BusMessage) {
        if msg.origin == self.node {
            if msg.incarnation == self.incarnation {
                // Our own message came back: the bus delivers.
                self.stats.bus_last_self_heard = Some(now);
            }
            return;
        }
        match self.seen.observe(&msg.origin, msg.incarnation, msg.seq) {
            Sequencing::Duplicate => {
                self.stats.bus_duplicates += 1;
                return;
            }
            Sequencing::AfterGap { missed } => self.stats.bus_gaps += missed,
            Sequencing::InOrder => {}
        }
        self.presence.heard(&msg.origin, now);
        self.timers.set_earliest(Timer::NodeExpiry, now.plus(self.config.presence_ttl_ms));
        match msg.body {
            // Events travel on the log, never on the bus.
            BusBody::Event(_) => self.stats.bus_malformed += 1,
            BusBody::Presence { user_id, reader } => {
                self.presence.remote_update(&msg.origin, &user_id, reader)
            }
            BusBody::Heartbeat { readers } => self.presence.remote_snapshot(&msg.origin, readers),
            // Its sequence is remembered: a late repeat of its messages stays a duplicate.
            BusBody::Leaving => self.presence.forget(&msg.origin),
        }
    }

    /// Announces this node and its readers; the other nodes expire it when these stop.
    pub(crate) fn heartbeat(&mut self, now: Millis) {
        let readers: BTreeMap<String, _> =
            self.presence.local_readers().map(|(u, r)| (u.clone(), r.clone())).collect();
        self.publish(BusBody::Heartbeat { readers });
        self.timers.set(Timer::Heartbeat, now.plus(self.config.heartbeat_interval_ms()));
    }

    /// Forgets the readers of nodes silent for longer than the presence TTL. Their bus sequences
    /// stay: a node silent only because Redis paused may still have messages in flight, and a
    /// repeat of one (a publisher resending after a failed write) must stay a duplicate.
    pub(crate) fn expire_nodes(&mut self, now: Millis) {
        let ttl = self.config.presence_ttl_ms;
        if let Some(deadline) = now.0.checked_sub(ttl).map(Millis) {
            for node in self.presence.silent_since(deadline) {
                self.presence.forget(&node);
            }
        }
        if let Some(oldest) = self.presence.oldest_heard() {
            self.timers.set(Timer::NodeExpiry, oldest.plus(ttl).max(now.plus(1)));
        }
    }

    /// Arms the next `online-readers` push when the list changed and someone listens.
    pub(crate) fn schedule_presence_push(&mut self, now: Millis) {
        if !self.presence.is_changed() || self.timers.is_set(Timer::PresencePush) {
            return;
        }
        if self.subscribed.is_empty() {
            self.presence.take_changed();
            return;
        }
        let at = match self.last_presence_push {
            Some(last) => last.plus(self.config.presence_push_interval_ms).max(now),
            None => now,
        };
        self.timers.set(Timer::PresencePush, at);
        if at <= now {
            self.timers.cancel(Timer::PresencePush);
            self.push_presence(now);
        }
    }

    /// Sends the current list to every subscribed socket, serialized once.
    pub(crate) fn push_presence(&mut self, now: Millis) {
        if !self.presence.take_changed() || self.subscribed.is_empty() {
            return;
        }
        self.last_presence_push = Some(now);
        let payload = replies::payload(&Value::Object(self.online_readers()));
        let to = self.subscribed.iter().copied().collect();
        self.emit(to, names::ONLINE_READERS, payload);
    }
}
