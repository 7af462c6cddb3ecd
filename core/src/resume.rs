//! Resuming a dashboard without a gap (PROTOCOL.md, "Durability and order"): `subscribe-consultant`
//! with `since` first replays every event after that one, in the log's order, that the new
//! subscription would have received by rule 1 or 2, leaving out what this socket was already sent
//! on this connection; then the socket goes on live. The events come from history when it reaches
//! back far enough, else from the store; while the store answers, the socket's live deliveries
//! wait behind the replay, so that it still sees one order. All or nothing above
//! `resume_max_events`: the reply then says `resumed: false` and the client pages instead.
//!
//! A cluster node may not have read yet the event a `since` names (another node accepted it and
//! this node's reading of the log lags). When neither memory nor the store knows the id, the
//! resume waits until this node has read the log to its end as it stood after the question
//! (a read asked for later that took every entry there was), then asks memory again: an id still
//! unknown, while memory holds every event since before the earliest place the log could have
//! given it, was never issued. If the log cannot be read to its end in time (Redis out of reach),
//! or memory does not reach back that far, the node cannot tell, and the client pages.

use std::sync::Arc;
use uuid::Uuid;

use crate::error::CommandError;
use crate::event::ReaderEvent;
use crate::history::position_by_time;
use crate::position::{LogPosition, PLACED_WITHIN_MS};
use crate::protocol::ClientEvent;
use crate::timers::Timer;
use crate::{AckId, ConnId, Core, Output};

/// How long a new staff socket's deliveries wait for its first command. A dashboard subscribes
/// right after it connects; if that is a resume, what came meanwhile (support events, by rule 2)
/// goes into the replay at its place in the log instead of ahead of older events.
pub const FIRST_COMMAND_WAIT_MS: u64 = 500;

/// How long a resume waits for this node to read the log to its end (a read of the log blocks
/// for up to a second when there is nothing new).
pub const LOG_END_WAIT_MS: u64 = 3_000;

/// Earlier subscriptions a socket's record keeps; past that it loses track (see [`Sent`]).
const MAX_PAST_SUBSCRIPTIONS: usize = 16;

/// What a staff socket was sent on this connection, told by rule rather than listed: every
/// support event since it connected, what each of its subscriptions matched while it held it,
/// and the events it got through a room (listed, up to `resume_max_events`). Past a bound it
/// loses track, and a resume then replays nothing rather than risk sending an event twice.
#[derive(Debug)]
pub(crate) struct Sent {
    connected_at: LogPosition,
    /// Subscriptions this socket held before its current one: each covered events in (from, to].
    past: Vec<(LogPosition, LogPosition, Vec<String>)>,
    /// The current subscription covers events after this.
    current_from: LogPosition,
    /// Events sent through a room, in log order.
    rooms: Vec<LogPosition>,
    lost_track: bool,
}

impl Sent {
    pub(crate) fn new(connected_at: LogPosition) -> Sent {
        Sent {
            connected_at,
            past: Vec::new(),
            current_from: connected_at,
            rooms: Vec::new(),
            lost_track: false,
        }
    }

    /// A subscription (with filter `old`, if any) ends at `frontier`, and maybe another begins.
    pub(crate) fn resubscribed(&mut self, old: Option<&[String]>, frontier: LogPosition) {
        if let Some(types) = old {
            if self.past.len() >= MAX_PAST_SUBSCRIPTIONS {
                self.past.remove(0);
                self.lost_track = true;
            }
            self.past.push((self.current_from, frontier, types.to_vec()));
        }
        self.current_from = frontier;
    }

    /// A recovered socket was sent, by its recovery's replay, everything its restored
    /// subscription matches after `offset` (and what came through its rooms, recorded one by
    /// one with [`Sent::through_room`]).
    pub(crate) fn recovered_from(&mut self, offset: LogPosition) {
        self.connected_at = offset;
        self.current_from = offset;
    }

    /// Where the current subscription (or the connection) began.
    pub(crate) fn current_from(&self) -> LogPosition {
        self.current_from
    }

    pub(crate) fn through_room(&mut self, position: LogPosition, cap: usize) {
        if self.rooms.len() >= cap {
            self.lost_track = true;
        } else {
            self.rooms.push(position);
        }
    }

    /// Whether `e` was sent to this socket, which now holds the subscription `current`.
    fn was_sent(&self, e: &ReaderEvent, current: Option<&[String]>) -> bool {
        let at = e.position;
        at > self.connected_at
            && (e.is_support()
                || self.rooms.binary_search(&at).is_ok()
                || self.past.iter().any(|(from, to, types)| *from < at && at <= *to && matches(types, e))
                || current.is_some_and(|types| at > self.current_from && matches(types, e)))
    }
}

/// Whether a filter lets an event through (empty: every type).
fn matches(types: &[String], e: &ReaderEvent) -> bool {
    types.is_empty() || types.contains(&e.event_type)
}

/// Where a replay from the store starts: after the event a `since` names, or after a log position
/// (a recovering client's offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    Event(Uuid),
    Position(LogPosition),
}

/// Which events a replay wants, by the delivery rule that would have sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayRule {
    /// A subscription's: events of these types (of every type when empty), and support events
    /// (rules 1 and 2).
    Subscription(Vec<String>),
    /// Support events only: what a staff socket without a subscription receives (rule 2).
    Support,
    /// A reader's: its own events sent on its other sockets, that is on any socket but the one
    /// tagged `socket` (rule 3), and not those whose sender is unknown (stored before senders
    /// were), which may be its own. The filter's `readers` names the reader.
    OtherSockets { socket: String },
}

/// Which events a replay wants: by rule, also those sent on a socket in one of `rooms` (rule 4),
/// and, for a scoped consultant, only by its readers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayFilter {
    pub rule: ReplayRule,
    /// A staff socket's rooms, sorted (a reader receives nothing through rooms).
    pub rooms: Vec<String>,
    /// Only these readers' events (sorted), as the consultant's scope stands at the replay;
    /// `None` means anyone's.
    pub readers: Option<Vec<String>>,
}

impl ReplayFilter {
    /// Every reader's events by this rule, none through rooms.
    pub fn unscoped(rule: ReplayRule) -> ReplayFilter {
        ReplayFilter { rule, rooms: Vec::new(), readers: None }
    }

    pub fn lets_through(&self, e: &ReaderEvent) -> bool {
        let by_rule = match &self.rule {
            ReplayRule::Subscription(types) => matches(types, e) || e.is_support(),
            ReplayRule::Support => e.is_support(),
            ReplayRule::OtherSockets { socket } => {
                !e.sent_from.socket.is_empty() && *e.sent_from.socket != **socket
            }
        };
        (by_rule || e.sent_from.in_any_of(&self.rooms))
            && crate::scope::lets_through(self.readers.as_deref(), &e.user_id)
    }
}

/// A resume waiting for the store, and the live deliveries held for its socket meanwhile.
#[derive(Debug)]
pub(crate) struct PendingResume {
    ack: Option<AckId>,
    since: Uuid,
    consultant_id: String,
    event_types: Vec<String>,
    held: Vec<Arc<ReaderEvent>>,
    /// Neither memory nor the store knew `since`: the resume waits for a read of the log
    /// numbered above this one that reaches the log's end.
    log_end_after: Option<u64>,
}

impl PendingResume {
    /// Holds a live delivery; false when too many wait (the resume then gives up).
    pub(crate) fn hold(&mut self, event: &Arc<ReaderEvent>, cap: usize) -> bool {
        self.held.push(event.clone());
        self.held.len() <= cap
    }
}

/// How a resume ended.
enum Outcome {
    Replayed(Vec<Arc<ReaderEvent>>),
    /// More than the limit, a store that failed, or a record that lost track: nothing replayed.
    NotResumed,
}

impl Core {
    /// The last position this node has shown (or holds in history, read from its store).
    pub(crate) fn frontier(&self) -> LogPosition {
        self.history.newest().unwrap_or(LogPosition::START)
    }

    /// `subscribe-consultant` with `since`.
    pub(crate) fn resume(
        &mut self,
        conn: ConnId,
        ack: Option<AckId>,
        consultant_id: String,
        event_types: Vec<String>,
        since: Uuid,
    ) {
        self.give_up_resume(conn);
        // Deliveries that waited for this socket's first command: sent with the replay, in order.
        let held = self.first.remove(&conn).unwrap_or_default();
        self.timers.cancel(Timer::FirstCommand(conn));
        let after = self.history.position_if_held(since);
        if after.is_none() && !self.config.deployment.reads_back() && self.history.is_complete() {
            // Memory holds every event this node's log ever had: the id was never issued.
            self.refund(conn, ClientEvent::SubscribeConsultant);
            self.refuse(conn, ack, Some(ClientEvent::SubscribeConsultant.name()), unknown_id());
            return self.send_held(conn, held, Vec::new());
        }
        match after.filter(|p| self.history.reaches_back_to(*p)) {
            Some(after) => self.resume_from_memory(conn, ack, consultant_id, event_types, after, held),
            None => {
                let pending = PendingResume {
                    ack,
                    since,
                    consultant_id,
                    event_types: event_types.clone(),
                    held,
                    log_end_after: None,
                };
                self.resuming.insert(conn, pending);
                let limit = self.config.resume_max_events + 1;
                let readers = self.conns.get(&conn).and_then(|c| self.readers_visible_to(&c.principal));
                let filter =
                    ReplayFilter { rule: ReplayRule::Subscription(event_types), rooms: Vec::new(), readers };
                let from = ReplayFrom::Event(since);
                self.outputs.push_back(Output::QueryReplay { conn, from, filter, limit });
            }
        }
    }

    /// Replays from memory, which holds every event after `after`, then what was `held`.
    fn resume_from_memory(
        &mut self,
        conn: ConnId,
        ack: Option<AckId>,
        consultant_id: String,
        event_types: Vec<String>,
        after: LogPosition,
        held: Vec<Arc<ReaderEvent>>,
    ) {
        let found = self.history.after(after).cloned().collect();
        let outcome = self.replay_of(conn, &event_types, found);
        let resumed = matches!(outcome, Outcome::Replayed(_));
        let replay = self.finish_resume(conn, ack, consultant_id, event_types, outcome);
        if resumed {
            self.saw_up_to(conn, after);
        }
        let held = held.into_iter().filter(|e| !resumed || e.position > after).collect();
        self.send_held(conn, held, replay);
    }

    /// The store's answer to [`Output::QueryReplay`]: the position of `since` and the events
    /// after it, or `Some(None)` when it has no such event, or `None` when it failed.
    pub(crate) fn on_replay_answered(
        &mut self,
        conn: ConnId,
        answer: Option<Option<(LogPosition, Vec<Arc<ReaderEvent>>)>>,
    ) {
        if self.recovering.contains_key(&conn) {
            let stored = answer.flatten().map(|(_, events)| events);
            return self.on_recovery_answered(conn, stored);
        }
        let Some(pending) = self.resuming.remove(&conn) else { return };
        if pending.log_end_after.is_some() {
            // No store query is out for a resume that waits for the log's end: this answer is
            // for an earlier resume of this socket, which a newer one superseded.
            self.resuming.insert(conn, pending);
            return;
        }
        if matches!(answer, Some(None))
            && self.config.deployment.reads_back()
            && self.may_be_unread(pending.since)
        {
            return self.wait_for_log_end(conn, pending);
        }
        let PendingResume { ack, consultant_id, event_types, mut held, .. } = pending;
        let outcome = match answer {
            Some(Some((after, stored))) if stored.len() < self.config.resume_max_events + 1 => {
                let found = self.stored_then_memory(stored, after);
                let outcome = self.replay_of(conn, &event_types, found);
                if matches!(outcome, Outcome::Replayed(_)) {
                    held.retain(|e| e.position > after);
                    self.saw_up_to(conn, after);
                }
                outcome
            }
            Some(None) => return self.refuse_unknown(conn, ack, held),
            Some(Some(_)) | None => Outcome::NotResumed,
        };
        let replay = self.finish_resume(conn, ack, consultant_id, event_types, outcome);
        self.send_held(conn, held, replay);
    }

    /// Neither memory nor the store knows `since`, which this cluster node may not have read
    /// yet: the resume waits for the next read of the log that reaches its end (see the module's
    /// notes), or for [`LOG_END_WAIT_MS`].
    fn wait_for_log_end(&mut self, conn: ConnId, mut pending: PendingResume) {
        pending.log_end_after = Some(self.log_reader.issued());
        self.resuming.insert(conn, pending);
        self.timers.set(Timer::LogEnd(conn), self.now.plus(LOG_END_WAIT_MS));
    }

    /// This node's read of the log numbered `read` took every entry there was: each resume
    /// waiting for a read asked for after it was goes on.
    pub(crate) fn read_log_to_end(&mut self, read: u64) {
        let due: Vec<ConnId> = (self.resuming.iter())
            .filter(|(_, p)| p.log_end_after.is_some_and(|asked| asked < read))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in due {
            let Some(pending) = self.resuming.remove(&conn) else { continue };
            self.timers.cancel(Timer::LogEnd(conn));
            let since = pending.since;
            match self.history.position_if_held(since) {
                Some(after) => {
                    let PendingResume { ack, consultant_id, event_types, held, .. } = pending;
                    self.resume_from_memory(conn, ack, consultant_id, event_types, after, held)
                }
                // Memory holds every event from before the earliest place the log could have
                // given that id. (Not "every event ever" alone: a node that joined a cluster late
                // never had what Redis trimmed before, though its file was complete.)
                None if self.history.oldest().is_some_and(|oldest| oldest <= earliest_place(since)) => {
                    self.refuse_unknown(conn, pending.ack, pending.held)
                }
                None => self.end_without_replay(conn, pending),
            }
        }
    }

    /// A resume waited [`LOG_END_WAIT_MS`] for the log's end (Redis out of reach, or a reading
    /// far behind): this node cannot tell whether its `since` was issued, and the client pages.
    pub(crate) fn stop_waiting_for_log_end(&mut self, conn: ConnId) {
        if self.resuming.get(&conn).is_some_and(|p| p.log_end_after.is_some()) {
            self.give_up_resume(conn);
        }
    }

    /// `INVALID_PAYLOAD` for a `since` this server never issued; what was held goes out.
    fn refuse_unknown(&mut self, conn: ConnId, ack: Option<AckId>, held: Vec<Arc<ReaderEvent>>) {
        self.refund(conn, ClientEvent::SubscribeConsultant);
        self.refuse(conn, ack, Some(ClientEvent::SubscribeConsultant.name()), unknown_id());
        self.send_held(conn, held, Vec::new());
    }

    /// The store's events up to where memory begins, then memory's after `after`: the store may
    /// lag the log. What the store has beyond this node's frontier, the node shows live later.
    pub(crate) fn stored_then_memory(
        &self,
        stored: Vec<Arc<ReaderEvent>>,
        after: LogPosition,
    ) -> Vec<Arc<ReaderEvent>> {
        let oldest = self.history.oldest();
        let mut found: Vec<_> =
            stored.into_iter().filter(|e| oldest.is_none_or(|o| e.position < o)).collect();
        found.extend(self.history.after(after).cloned());
        found
    }

    /// Ends a socket's pending resume without a replay (a newer command of its own superseded
    /// it, or too many live deliveries waited behind it).
    pub(crate) fn give_up_resume(&mut self, conn: ConnId) {
        if let Some(pending) = self.resuming.remove(&conn) {
            self.end_without_replay(conn, pending);
        }
    }

    /// Subscribes the socket of `pending` with `resumed: false` and sends what was held for it.
    fn end_without_replay(&mut self, conn: ConnId, pending: PendingResume) {
        let PendingResume { ack, consultant_id, event_types, held, .. } = pending;
        self.timers.cancel(Timer::LogEnd(conn));
        self.finish_resume(conn, ack, consultant_id, event_types, Outcome::NotResumed);
        self.send_held(conn, held, Vec::new());
    }

    /// What to replay out of `found` (in log order): what the new subscription matches and the
    /// socket was not sent yet, or nothing when that is more than the limit or cannot be told.
    fn replay_of(&self, conn: ConnId, event_types: &[String], found: Vec<Arc<ReaderEvent>>) -> Outcome {
        let Some(c) = self.conns.get(&conn) else { return Outcome::NotResumed };
        let Some(sent) = c.sent.as_deref() else { return Outcome::NotResumed };
        if sent.lost_track {
            return Outcome::NotResumed;
        }
        let current = c.subscription.as_ref().map(|s| s.event_types.as_slice());
        let mut replay = Vec::new();
        for e in found {
            let wanted = (matches(event_types, &e) || e.is_support()) && self.sees(conn, &e.user_id);
            if wanted && !sent.was_sent(&e, current) {
                if replay.len() == self.config.resume_max_events {
                    return Outcome::NotResumed;
                }
                replay.push(e);
            }
        }
        Outcome::Replayed(replay)
    }

    /// Whether the event `id` names could lie beyond what this node has read of the log: its
    /// id's time (the accepting node's clock) is less than [`PLACED_WITHIN_MS`] before the
    /// position of the newest event this node shows (Redis' clock).
    fn may_be_unread(&self, id: Uuid) -> bool {
        position_by_time(id).ms.saturating_add(PLACED_WITHIN_MS) > self.frontier().ms
    }

    /// Subscribes the socket and answers with `resumed` and `replayed`; returns the replay.
    fn finish_resume(
        &mut self,
        conn: ConnId,
        ack: Option<AckId>,
        consultant_id: String,
        event_types: Vec<String>,
        outcome: Outcome,
    ) -> Vec<Arc<ReaderEvent>> {
        let (resumed, replay) = match outcome {
            Outcome::Replayed(replay) => (true, replay),
            Outcome::NotResumed => (false, Vec::new()),
        };
        self.stats.replayed += replay.len() as u64;
        let extra = [("resumed", resumed.into()), ("replayed", replay.len().into())];
        self.apply_subscription(conn, ack, consultant_id, event_types, &extra);
        replay
    }

    /// A resumed socket saw every event up to `after` before it left: a node that shows older
    /// events late (still reading the log up to where its store was, or behind the node the
    /// socket left) sends it none of them again.
    fn saw_up_to(&mut self, conn: ConnId, after: LogPosition) {
        if after > LogPosition::START {
            self.seen_up_to.insert(conn, after);
        }
    }

    /// Lets out what waited for a new staff socket's first command.
    pub(crate) fn release_first(&mut self, conn: ConnId) {
        if let Some(held) = self.first.remove(&conn) {
            self.timers.cancel(Timer::FirstCommand(conn));
            self.send_held(conn, held, Vec::new());
        }
    }

    /// Sends a replay and the live deliveries held behind it, in log order, each once.
    /// What the scope no longer lets the socket see (an assignment ended while they waited) stays.
    fn send_held(&mut self, conn: ConnId, held: Vec<Arc<ReaderEvent>>, replay: Vec<Arc<ReaderEvent>>) {
        let mut events = replay;
        events.extend(held);
        events.retain(|e| self.sees(conn, &e.user_id));
        events.sort_by_key(|e| e.position);
        events.dedup_by_key(|e| e.position);
        if !events.is_empty() && self.conns.contains_key(&conn) {
            self.outputs.push_back(Output::Replay { conn, events });
        }
    }
}

/// The earliest place in the log an event with this id could have: its id's time, less the
/// bound on how far the accepting node's clock may run ahead of Redis'.
fn earliest_place(id: Uuid) -> LogPosition {
    let time = position_by_time(id).ms;
    LogPosition::at(crate::time::Millis(time.saturating_sub(PLACED_WITHIN_MS)))
}

fn unknown_id() -> CommandError {
    CommandError::invalid("since must be the id of an event this server delivered")
}
