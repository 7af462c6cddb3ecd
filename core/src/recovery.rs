//! Connection state recovery, the official clients' own (PROTOCOL.md, "Connection state
//! recovery"). Every socket is given a `pid` in its CONNECT reply and has its session saved under
//! it when it is accepted, whenever its subscription or rooms change and when it leaves, to expire
//! `recovery_ttl_ms` later. A client that reconnects presents `{ pid, offset }`; the shell looks
//! the session up, and the core recovers it only for the same user, unexpired, with a readable
//! offset and at most `resume_max_events` to replay: it restores the subscription (as the token's
//! role allows) and the rooms, replays what the socket would have received after the offset (a
//! staff socket's subscription or support events and its rooms' events; a reader's own events
//! sent on its other sockets, told apart by the tag of the sender's `pid`), and answers with the
//! same `pid`. The replay comes from memory, or, when memory does not reach back to the offset,
//! from the store, and the socket is accepted only once the store has answered. Otherwise the
//! socket connects fresh; a `pid` shown with another user's token, or with a token that was
//! refused, is forgotten.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::event::ReaderEvent;
use crate::position::LogPosition;
use crate::resume::{ReplayFilter, ReplayFrom, ReplayRule};
use crate::{ConnId, Core, Output, Principal, Role, Subscription};

/// What a session keeps for recovery, as the shell stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedSession {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Where the log stood when the socket connected or last subscribed: a client that received
    /// no event since has no offset, and is replayed from here.
    #[serde(default)]
    pub from: LogPosition,
    /// Wall-clock milliseconds after which it recovers nothing.
    pub expires_ms: u64,
}

/// A reconnecting client's `{ pid, offset }`, and the session the shell found for the `pid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub pid: String,
    /// Absent when the client received no event since it was given the `pid`.
    pub offset: Option<String>,
    pub session: Option<SavedSession>,
}

/// A session found fit to recover: what to restore and what to replay.
pub(crate) struct Recovered {
    pid: String,
    subscription: Option<Subscription>,
    rooms: Vec<String>,
    replay: Vec<Arc<ReaderEvent>>,
    offset: LogPosition,
}

/// What a presented session comes to.
pub(crate) enum Check {
    /// Nothing to recover: the socket connects fresh.
    Fresh,
    Recover(Recovered),
    /// Recoverable if the store's replay from the offset, with memory's after it, fits the limit.
    AskStore(Recovered, ReplayFilter),
}

/// An admitted socket whose recovery waits for the store, with what it would recover.
pub(crate) struct PendingRecovery {
    sid: String,
    principal: Principal,
    recovered: Recovered,
    filter: ReplayFilter,
}

impl Core {
    /// A new, unguessable `pid` (128 bits from the core's seeded ChaCha stream).
    fn new_pid(&mut self) -> String {
        use rand_core::RngCore;
        format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64())
    }

    /// Names the `pid` of a socket about to be accepted: the recovered one, or a new one.
    pub(crate) fn give_pid(&mut self, conn: ConnId, recovered: Option<&Recovered>) -> String {
        let pid = match recovered {
            Some(r) => r.pid.clone(),
            None => self.new_pid(),
        };
        self.outputs.push_back(Output::Pid { conn, pid: pid.clone() });
        pid
    }

    /// A connect with a `pid` was refused: the session recovers nothing any more.
    pub(crate) fn refused_recovery(&mut self, recovery: Option<Recovery>) {
        if let Some(r) = recovery.filter(|r| r.session.is_some()) {
            self.outputs.push_back(Output::ForgetSession { pid: r.pid });
        }
    }

    /// What a presented session comes to; a `pid` another user shows is forgotten.
    pub(crate) fn check(&mut self, principal: &Principal, r: Recovery) -> Check {
        let Some(session) = r.session else { return Check::Fresh };
        if session.user_id != *principal.user_id {
            self.outputs.push_back(Output::ForgetSession { pid: r.pid });
            return Check::Fresh;
        }
        if session.expires_ms < self.wall.0 {
            return Check::Fresh;
        }
        let offset: LogPosition = match r.offset.as_deref().map(str::parse) {
            Some(Ok(offset)) => offset,
            Some(Err(_)) => return Check::Fresh,
            None => session.from,
        };
        // The role decides again, as it would for a new `subscribe-consultant`.
        let subscription = session.consultant_id.filter(|id| match principal.role {
            Role::Admin => true,
            Role::Consultant => *id == *principal.user_id,
            Role::Reader => false,
        });
        let subscription = subscription
            .map(|consultant_id| Subscription { consultant_id, event_types: session.event_types.clone() });
        let mut rooms = session.rooms;
        rooms.sort();
        rooms.dedup();
        rooms.truncate(self.config.max_rooms_per_socket);
        // What the socket would have received: by its subscription or the support rule and
        // through its rooms (staff, within the scope as it stands now), or its own events sent
        // on its other sockets (a reader).
        let filter = match (&subscription, principal.role.is_staff()) {
            (Some(s), _) => ReplayFilter {
                rule: ReplayRule::Subscription(s.event_types.clone()),
                rooms: rooms.clone(),
                readers: self.readers_visible_to(principal),
            },
            (None, true) => ReplayFilter {
                rule: ReplayRule::Support,
                rooms: rooms.clone(),
                readers: self.readers_visible_to(principal),
            },
            (None, false) => ReplayFilter {
                rule: ReplayRule::OtherSockets { socket: crate::event::socket_tag(&r.pid).to_string() },
                rooms: Vec::new(),
                readers: Some(vec![principal.user_id.to_string()]),
            },
        };
        let recovered = Recovered { pid: r.pid, subscription, rooms, replay: Vec::new(), offset };
        if offset < self.frontier() && !self.history.reaches_back_to(offset) {
            return Check::AskStore(recovered, filter);
        }
        let found = self.history.after(offset).cloned().collect();
        match self.replay_within_limit(&filter, found) {
            Some(replay) => Check::Recover(Recovered { replay, ..recovered }),
            None => Check::Fresh,
        }
    }

    /// Waits for the store before the socket is accepted, recovered or fresh.
    pub(crate) fn ask_store(
        &mut self,
        conn: ConnId,
        sid: String,
        principal: Principal,
        recovered: Recovered,
        filter: ReplayFilter,
    ) {
        let from = ReplayFrom::Position(recovered.offset);
        let limit = self.config.resume_max_events + 1;
        self.outputs.push_back(Output::QueryReplay { conn, from, filter: filter.clone(), limit });
        self.recovering.insert(conn, PendingRecovery { sid, principal, recovered, filter });
    }

    /// The store's answer for a waiting recovery (`None` when it failed): the socket is accepted,
    /// recovered when the replay fits the limit, else fresh.
    pub(crate) fn on_recovery_answered(&mut self, conn: ConnId, stored: Option<Vec<Arc<ReaderEvent>>>) {
        let Some(PendingRecovery { sid, principal, recovered, filter }) = self.recovering.remove(&conn)
        else {
            return;
        };
        let limit = self.config.resume_max_events;
        let replay = stored.filter(|stored| stored.len() <= limit).and_then(|stored| {
            let found = self.stored_then_memory(stored, recovered.offset);
            self.replay_within_limit(&filter, found)
        });
        let recovered = replay.map(|replay| Recovered { replay, ..recovered });
        self.accept(conn, sid, principal, recovered);
    }

    /// A waiting recovery's socket left before the store answered.
    pub(crate) fn abandon_recovery(&mut self, conn: ConnId) -> bool {
        let Some(pending) = self.recovering.remove(&conn) else { return false };
        if let Some(limits) = self.users.get_mut(&pending.principal.user_id) {
            limits.connections = limits.connections.saturating_sub(1);
        }
        true
    }

    /// What `filter` lets through of `found`, unless that is more than the limit.
    fn replay_within_limit(
        &self,
        filter: &ReplayFilter,
        found: Vec<Arc<ReaderEvent>>,
    ) -> Option<Vec<Arc<ReaderEvent>>> {
        let replay: Vec<_> = found.into_iter().filter(|e| filter.lets_through(e)).collect();
        (replay.len() <= self.config.resume_max_events).then_some(replay)
    }

    /// Gives an accepted socket its recovered state and replay.
    pub(crate) fn restore(&mut self, conn: ConnId, r: Recovered) {
        let frontier = self.frontier();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let staff = c.principal.role.is_staff();
        for room in &r.rooms {
            if c.rooms.insert(room.clone()) {
                self.routing.join_room(conn, room, staff);
            }
        }
        c.connected_at = r.offset.min(frontier);
        if let Some(sent) = c.sent.as_deref_mut() {
            sent.recovered_from(c.connected_at);
        }
        if let Some(s) = r.subscription {
            self.routing.set_subscription(conn, None, Some(&s.event_types));
            c.subscription = Some(s);
            self.subscribed.insert(conn);
        }
        let mut replay = r.replay;
        // The scope as it stands now: an assignment may have ended while the store answered.
        replay.retain(|e| self.sees(conn, &e.user_id));
        // What the replay sends through a room is remembered, so that a resume does not send it
        // again (the rest, its restored subscription covers).
        let cap = self.config.resume_max_events;
        if let Some(sent) = self.conns.get_mut(&conn).and_then(|c| c.sent.as_deref_mut()) {
            for e in replay.iter().filter(|e| e.sent_from.in_any_of(&r.rooms)) {
                sent.through_room(e.position, cap);
            }
        }
        self.stats.replayed += replay.len() as u64;
        if r.offset > LogPosition::START {
            self.seen_up_to.insert(conn, r.offset);
        }
        if !replay.is_empty() {
            self.outputs.push_back(Output::Replay { conn, events: replay });
        }
        self.save_session(conn);
    }

    /// Saves a socket's session as it is accepted, after a change, or as it leaves, kept for
    /// `recovery_ttl_ms` from now. Every socket has something to recover: a staff socket, at
    /// least the support events; a reader's, its own events from its other sockets.
    pub(crate) fn save_session(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let pid = c.pid.to_string();
        let session = SavedSession {
            user_id: c.principal.user_id.to_string(),
            consultant_id: c.subscription.as_ref().map(|s| s.consultant_id.clone()),
            event_types: c.subscription.as_ref().map(|s| s.event_types.clone()).unwrap_or_default(),
            rooms: c.rooms.iter().cloned().collect(),
            from: c.sent.as_deref().map_or(c.connected_at, |s| s.current_from()),
            expires_ms: self.wall.0.saturating_add(self.config.recovery_ttl_ms),
        };
        self.outputs.push_back(Output::SaveSession { pid, session });
    }
}
