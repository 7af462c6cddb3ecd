//! This node as one of many: reading the cluster's streams, presence from other nodes, duplicate and gap handling,
//! heartbeats, expiry of silent nodes, and the coalesced `online-readers` pushes.

use std::collections::BTreeMap;

use crate::readers::{Reader, Stream};
use crate::sequence::Sequencing;

use crate::timers::Timer;
use crate::{BusBody, BusMessage, Core, Millis, Output};

impl Core {
    /// Asks for the next read of each cluster stream that is not being read or waiting out a
    /// backoff, and arms the retry timers. Nothing on a single node.
    pub(crate) fn pump_reads(&mut self, now: Millis) {
        if !self.config.deployment.reads_back() {
            return;
        }
        for stream in [Stream::Log, Stream::Bus] {
            let reader = self.reader(stream);
            let next = reader.next_read(now);
            let retry = reader.retry_at();
            if let Some((from, fresh)) = next {
                self.outputs.push_back(Output::Read { stream, from, fresh });
            }
            match retry {
                Some(at) => self.timers.set(Timer::ReadRetry(stream), at),
                None => self.timers.cancel(Timer::ReadRetry(stream)),
            }
        }
    }

    fn reader(&mut self, stream: Stream) -> &mut Reader {
        match stream {
            Stream::Log => &mut self.log_reader,
            Stream::Bus => &mut self.bus_reader,
        }
    }

    /// Entries read from a stream, in its order. The log opens for appends once its reader knows
    /// where it starts, so this node reads back every entry it appends. A bus that gave nothing
    /// (not even this node's own heartbeats) for a presence TTL is read over a fresh connection.
    pub(crate) fn on_read(
        &mut self,
        now: Millis,
        stream: Stream,
        position: Option<String>,
        entries: Vec<(String, Vec<u8>)>,
        at_end: bool,
    ) {
        let heard = !entries.is_empty();
        let pace = if stream == Stream::Log { self.log_read_pace(now, entries.len()) } else { 0 };
        let not_before = (heard && pace > 0).then(|| now.plus(pace));
        let reader = self.reader(stream);
        let opening = !reader.is_open() && position.is_some();
        reader.read(position, not_before);
        for (id, bytes) in entries {
            match (BusMessage::decode(&bytes), stream) {
                (Ok(msg), Stream::Log) => match id.parse() {
                    Ok(position) => self.on_log(now, position, msg),
                    Err(_) => self.stats.bus_malformed += 1,
                },
                (Ok(msg), Stream::Bus) => self.on_bus(now, msg),
                (Err(_), _) => self.stats.bus_malformed += 1,
            }
        }
        match stream {
            Stream::Log if opening => {
                self.log.open();
                self.pump_log(now);
            }
            Stream::Log if at_end => self.read_log_to_end(self.log_reader.issued()),
            Stream::Log => {}
            Stream::Bus => {
                let silent = self.bus_heard.is_some_and(|at| now.since(at) > self.config.presence_ttl_ms);
                if heard || opening {
                    self.bus_heard = Some(now);
                } else if silent {
                    self.stats.bus_repairs += 1;
                    self.bus_reader.repair();
                    self.bus_heard = Some(now);
                }
            }
        }
        self.pump_reads(now);
    }

    /// How long the log's next read waits after one that read `read` entries: nothing while
    /// reading every entry as it comes stays under the budget ([`crate::Config::log_read_budget`]),
    /// the pace once it does not (always with a budget of 0).
    fn log_read_pace(&mut self, now: Millis, read: usize) -> u64 {
        self.log_rate.add(now, read as u64);
        let nodes = self.presence.nodes().count() as u64 + 1;
        let unpaced = self.log_rate.last_second(now).saturating_mul(nodes + 1);
        if unpaced < self.config.log_read_budget {
            0
        } else {
            self.config.log_read_pace_ms
        }
    }

    pub(crate) fn on_read_failed(&mut self, now: Millis, stream: Stream) {
        self.reader(stream).failed(now);
        self.pump_reads(now);
    }

    pub(crate) fn on_bus(&mut self, now: Millis, msg: BusMessage) {
        if msg.origin == self.node {
            if msg.incarnation == self.incarnation {
                // Our own message came back: the bus delivers.
                self.stats.bus_last_self_heard = Some(now);
            } else {
                // The bus is read from its newest entry on, so an earlier run of this node is
                // never heard: this is another process, which would share this node's store
                // group and presence.
                self.stats.node_id_shared += 1;
                if self.node_id_sharer.replace(msg.incarnation) != Some(msg.incarnation) {
                    self.outputs.push_back(Output::NodeIdShared { incarnation: msg.incarnation });
                }
            }
            return;
        }
        match self.seen.observe(&msg.origin, msg.incarnation, msg.seq) {
            // Read before, or older news than a message read already (the bus's tracker
            // expects nothing late).
            Sequencing::Duplicate | Sequencing::Late => {
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
            BusBody::Assigned { consultant_id, readers } => self.apply_assignment(&consultant_id, &readers),
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
        self.push_online_readers();
    }
}
