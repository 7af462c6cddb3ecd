//! What each client event does once parsed: the checks in PROTOCOL.md's order (role, size and
//! payload in `protocol`; then the caller's right to the named ids; then the rate limit), then
//! the command itself. A refused event changes nothing and costs no tokens.

use serde_json::Value;
use std::sync::Arc;

use crate::error::CommandError;
use crate::event::{ReaderEvent, SentFrom};
use crate::history::HistoryAnswer;
use crate::protocol::{self, ClientEvent, Command, HistoryQuery};
use crate::replies::{self, fields, names};
use crate::session::forbidden;
use crate::{AckId, ConnId, Core, LogEntry, LogPosition, Millis, Output, Role, Subscription};

impl Core {
    pub(crate) fn on_client_event(
        &mut self,
        now: Millis,
        conn: ConnId,
        name: &str,
        args: &[Value],
        has_binary: bool,
        ack: Option<AckId>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (user, role) = (c.principal.user_id.clone(), c.principal.role);
        let parsed = protocol::parse(name, args, has_binary, role, &self.config);
        let echoed = protocol::echoed_name(name);
        let command = parsed.result.and_then(|cmd| self.authorize(conn, &user, role, cmd));
        let result = command.and_then(|cmd| {
            let event = parsed.event.unwrap_or(ClientEvent::GetOnlineReaders);
            self.charge(now, &user, event).map(|()| cmd)
        });
        // A new staff socket's first command: a resume takes what waited for it into its replay,
        // in the log's order; anything else lets it go out first.
        let resumes = matches!(&result, Ok(Command::Subscribe { since: Some(_), .. }));
        if !resumes {
            self.release_first(conn);
        }
        match result {
            Ok(cmd) => self.execute(now, conn, ack, cmd),
            Err(err) => self.refuse(conn, ack, Some(&echoed), err),
        }
    }

    /// The caller's right to the ids it names: its own consultant id, its own events, and for a
    /// scoped consultant its assigned readers' events only.
    fn authorize(&self, conn: ConnId, user: &str, role: Role, cmd: Command) -> Result<Command, CommandError> {
        match cmd {
            Command::Subscribe { ref consultant_id, .. } | Command::Unsubscribe { ref consultant_id }
                if role == Role::Consultant && consultant_id != user =>
            {
                Err(forbidden("Consultants may only use their own consultant id"))
            }
            Command::GetRecentEvents(mut q) if role == Role::Reader => match &q.user_id {
                Some(other) if other != user => Err(forbidden("Unauthorized access to events")),
                _ => {
                    q.user_id = Some(user.to_owned());
                    Ok(Command::GetRecentEvents(q))
                }
            },
            Command::GetRecentEvents(mut q) => match self.scope_of(conn) {
                Some(consultant) => match &q.user_id {
                    Some(reader) if !self.assignments.is_assigned(consultant, reader) => {
                        Err(forbidden("Unauthorized access to events"))
                    }
                    Some(_) => Ok(Command::GetRecentEvents(q)),
                    None => {
                        q.readers = Some(self.assignments.readers_of(consultant));
                        Ok(Command::GetRecentEvents(q))
                    }
                },
                None => Ok(Command::GetRecentEvents(q)),
            },
            cmd => Ok(cmd),
        }
    }

    /// Gives back the token an event took when it is refused after the rate check (too many
    /// rooms, a refresh that fails verification, a store that cannot answer): refusals are free.
    pub(crate) fn refund(&mut self, conn: ConnId, event: ClientEvent) {
        let Some(user) = self.conns.get(&conn).map(|c| c.principal.user_id.clone()) else { return };
        if let Some(limits) = self.users.get_mut(&user) {
            let bucket =
                if event.is_reader_event() { &mut limits.reader_events } else { &mut limits.other_events };
            bucket.give_back();
        }
    }

    /// Takes a token from the user's budget for this kind of event.
    fn charge(&mut self, now: Millis, user: &Arc<str>, event: ClientEvent) -> Result<(), CommandError> {
        let Some(limits) = self.users.get_mut(user) else {
            return Ok(());
        };
        let bucket =
            if event.is_reader_event() { &mut limits.reader_events } else { &mut limits.other_events };
        bucket.take(now).map_err(CommandError::rate_limited)
    }

    fn execute(&mut self, now: Millis, conn: ConnId, ack: Option<AckId>, cmd: Command) {
        match cmd {
            Command::ReaderEvent { event_type, data, reading, session_id, client_event_id } => self
                .accept_reader_event(now, conn, ack, event_type, data, reading, session_id, client_event_id),
            Command::Subscribe { consultant_id, event_types, since: None } => {
                self.give_up_resume(conn);
                self.apply_subscription(conn, ack, consultant_id, event_types, &[])
            }
            Command::Subscribe { consultant_id, event_types, since: Some(since) } => {
                self.resume(conn, ack, consultant_id, event_types, since)
            }
            Command::Unsubscribe { consultant_id } => self.unsubscribe(conn, ack, consultant_id),
            Command::JoinRoom { room } => self.join_room(conn, ack, room),
            Command::LeaveRoom { room } => self.leave_room(conn, ack, room),
            Command::GetOnlineReaders => self.send_online_readers(conn, ack),
            Command::GetRecentEvents(q) => self.recent_events(conn, ack, q),
            Command::RefreshToken { token } => {
                // Expiry waits for this answer: a refresh sent in time is judged, not raced.
                self.refreshing.entry(conn).or_insert(false);
                self.outputs.push_back(Output::VerifyToken { conn, ack, token })
            }
        }
    }

    /// Accepts a reader event: an id, then the log. It is acknowledged, delivered, remembered,
    /// recorded in presence and counted only once the log holds it (`durable.rs`). An event
    /// whose key (`clientEventId`) is on its way into the log already waits for that one's answer.
    #[allow(clippy::too_many_arguments)]
    fn accept_reader_event(
        &mut self,
        now: Millis,
        conn: ConnId,
        ack: Option<AckId>,
        event_type: String,
        data: crate::replies::Json,
        reading: crate::event::ReadingPosition,
        session_id: Option<String>,
        key: Option<String>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let key: Option<Arc<str>> = key.map(Arc::from);
        if let Some(key) = &key {
            if let Some(waiting) = self.keyed.get_mut(&(c.principal.user_id.clone(), key.clone())) {
                waiting.push((conn, ack));
                return;
            }
        }
        if self.queue_is_full() {
            if let Some(l) = self.users.get_mut(&c.principal.user_id) {
                l.reader_events.give_back();
            }
            return self.refuse(
                conn,
                ack,
                Some(ClientEvent::ReaderEvent.name()),
                CommandError::unavailable(),
            );
        }
        // A single node's log is this node: it places the event now, in the order it appends.
        // A cluster's places it when Redis takes the entry.
        let position = if self.config.deployment.reads_back() {
            LogPosition::START
        } else {
            self.last_position = self.last_position.next(self.wall);
            self.last_position
        };
        let event = Arc::new(ReaderEvent {
            id: self.ids.next(self.wall, &mut self.rng),
            user_id: c.principal.user_id.clone(),
            event_type,
            data,
            reading,
            timestamp: self.wall,
            session_id: session_id.unwrap_or_else(|| c.sid.clone()),
            position,
            sent_from: SentFrom { socket: c.tag.clone(), rooms: c.rooms.iter().cloned().collect() },
        });
        self.log_seq += 1;
        let entry = LogEntry {
            event,
            origin: self.node.as_str().into(),
            incarnation: self.incarnation,
            seq: self.log_seq,
            sender: conn,
            key: key.clone(),
        };
        if let Some(key) = key {
            self.keyed.insert((entry.event.user_id.clone(), key), Vec::new());
        }
        self.log.push(Arc::new(entry), ack);
        self.pump_log(now);
    }

    /// Tells a sender its event is durable: `reader-event-received`, and the acknowledgement
    /// when it asked for one; `duplicate` when it repeated the key of event `id`. A socket gone
    /// meanwhile is told nothing.
    pub(crate) fn send_receipt(&mut self, conn: ConnId, ack: Option<AckId>, id: uuid::Uuid, duplicate: bool) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let fields = fields([
            ("message", "Event received and queued".into()),
            ("eventId", id.to_string().into()),
            ("duplicate", duplicate.into()),
        ]);
        self.reply(conn, ack, names::READER_EVENT_RECEIVED, fields);
    }

    /// Sends `reader-activity` to this node's recipients of `event`, serialized once. A socket
    /// whose resume waits for the store gets it after the replay; a staff socket reached through
    /// a room remembers it, so that a resume does not send it again.
    pub(crate) fn deliver(&mut self, event: &Arc<ReaderEvent>) {
        let rooms: Vec<&str> = event.sent_from.rooms.iter().map(String::as_str).collect();
        let assigned = || self.assignments.consultants_of(&event.user_id);
        // The sending socket, known by its `pid` on whichever node and run it is now.
        let senders: Vec<ConnId> = self
            .routing
            .sockets_of(&event.user_id)
            .filter(|conn| self.conns.get(conn).is_some_and(|c| c.tag == event.sent_from.socket))
            .collect();
        let mut to = self.routing.recipients(
            &senders,
            &event.user_id,
            &event.event_type,
            event.is_support(),
            &rooms,
            assigned(),
        );
        if !rooms.is_empty() {
            let cap = self.config.resume_max_events;
            for conn in self.routing.staff_in_rooms(&rooms, assigned()) {
                if let Some(sent) = self.conns.get_mut(&conn).and_then(|c| c.sent.as_deref_mut()) {
                    sent.through_room(event.position, cap);
                }
            }
        }
        if !self.seen_up_to.is_empty() {
            let at = event.position;
            to.retain(|conn| self.seen_up_to.get(conn).is_none_or(|seen| at > *seen));
            // Positions only grow: once one reaches a mark, the mark has done its work.
            self.seen_up_to.retain(|_, seen| at < *seen);
        }
        if !self.first.is_empty() {
            let cap = self.config.resume_max_events;
            let mut overflowing = Vec::new();
            to.retain(|conn| match self.first.get_mut(conn) {
                Some(held) => {
                    held.push(event.clone());
                    if held.len() > cap {
                        overflowing.push(*conn);
                    }
                    false
                }
                None => true,
            });
            for conn in overflowing {
                self.release_first(conn);
            }
        }
        if !self.resuming.is_empty() {
            let cap = self.config.resume_max_events;
            let mut overflowing = Vec::new();
            to.retain(|conn| match self.resuming.get_mut(conn) {
                Some(pending) => {
                    if !pending.hold(event, cap) {
                        overflowing.push(*conn);
                    }
                    false
                }
                None => true,
            });
            for conn in overflowing {
                self.give_up_resume(conn);
            }
        }
        if to.is_empty() {
            return;
        }
        self.stats.deliveries += to.len() as u64;
        let payload = replies::payload(&event.activity_json());
        self.outputs.push_back(Output::Activity { to, payload, position: event.position });
    }

    /// Gives a socket its subscription and answers (with `extra` fields, for a resume), then
    /// sends the `online-readers` snapshot.
    pub(crate) fn apply_subscription(
        &mut self,
        conn: ConnId,
        ack: Option<AckId>,
        consultant_id: String,
        event_types: Vec<String>,
        extra: &[(&'static str, Value)],
    ) {
        let frontier = self.frontier();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let old = c
            .subscription
            .replace(Subscription { consultant_id: consultant_id.clone(), event_types: event_types.clone() });
        if let Some(sent) = c.sent.as_deref_mut() {
            sent.resubscribed(old.as_ref().map(|s| s.event_types.as_slice()), frontier);
        }
        self.routing.set_subscription(
            conn,
            old.as_ref().map(|s| s.event_types.as_slice()),
            Some(&event_types),
        );
        self.subscribed.insert(conn);
        let mut body = fields([
            ("message", "Subscribed to consultant events".into()),
            ("consultantId", consultant_id.into()),
            ("eventTypes", event_types.into()),
        ]);
        body.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        self.save_session(conn);
        self.reply(conn, ack, names::SUBSCRIBED, body);
        self.send_online_readers(conn, None);
    }

    fn unsubscribe(&mut self, conn: ConnId, ack: Option<AckId>, consultant_id: String) {
        self.give_up_resume(conn);
        let frontier = self.frontier();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.subscription.as_ref().is_some_and(|s| s.consultant_id == consultant_id) {
            let old = c.subscription.take();
            if let Some(sent) = c.sent.as_deref_mut() {
                sent.resubscribed(old.as_ref().map(|s| s.event_types.as_slice()), frontier);
            }
            self.routing.set_subscription(conn, old.as_ref().map(|s| s.event_types.as_slice()), None);
            self.subscribed.remove(&conn);
        }
        self.save_session(conn);
        let body = fields([
            ("message", "Unsubscribed from consultant events".into()),
            ("consultantId", consultant_id.into()),
        ]);
        self.reply(conn, ack, names::UNSUBSCRIBED, body);
    }

    fn join_room(&mut self, conn: ConnId, ack: Option<AckId>, room: String) {
        let max = self.config.max_rooms_per_socket;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.rooms.contains(&room) {
            if c.rooms.len() >= max {
                self.refund(conn, ClientEvent::JoinRoom);
                return self.refuse(
                    conn,
                    ack,
                    Some(ClientEvent::JoinRoom.name()),
                    CommandError::invalid("Too many rooms"),
                );
            }
            c.rooms.insert(room.clone());
            let staff = c.principal.role.is_staff();
            self.routing.join_room(conn, &room, staff);
            self.save_session(conn);
        }
        self.reply(conn, ack, names::ROOM_JOINED, fields([("room", room.into())]));
    }

    fn leave_room(&mut self, conn: ConnId, ack: Option<AckId>, room: String) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.rooms.remove(&room) {
            self.routing.leave_room(conn, &room);
            self.save_session(conn);
        }
        self.reply(conn, ack, names::ROOM_LEFT, fields([("room", room.into())]));
    }

    fn recent_events(&mut self, conn: ConnId, ack: Option<AckId>, query: HistoryQuery) {
        if query.readers.as_ref().is_some_and(Vec::is_empty) {
            // A scoped consultant with no assigned reader: nothing to read, nothing to ask.
            return self.reply(conn, ack, names::RECENT_EVENTS, replies::recent_events(&[], false));
        }
        match self.history.query(&query) {
            HistoryAnswer::Events { events, has_more } => {
                self.reply(conn, ack, names::RECENT_EVENTS, replies::recent_events(&events, has_more))
            }
            HistoryAnswer::AskStore => self.outputs.push_back(Output::QueryStore { conn, ack, query }),
        }
    }

    pub(crate) fn on_store_answer(
        &mut self,
        conn: ConnId,
        ack: Option<AckId>,
        answer: Option<(Vec<Arc<ReaderEvent>>, bool)>,
    ) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        match answer {
            Some((mut events, has_more)) => {
                // The scope as it stands now: an assignment may have ended while the store answered.
                events.retain(|e| self.sees(conn, &e.user_id));
                self.reply(conn, ack, names::RECENT_EVENTS, replies::recent_events(&events, has_more))
            }
            None => {
                self.refund(conn, ClientEvent::GetRecentEvents);
                self.refuse(conn, ack, Some(ClientEvent::GetRecentEvents.name()), CommandError::internal())
            }
        }
    }
}
