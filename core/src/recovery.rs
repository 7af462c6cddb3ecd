//! Connection state recovery, the official clients' own (PROTOCOL.md, "Connection state
//! recovery"). Every socket is given a `pid` in its CONNECT reply; a socket with something to
//! recover (a subscription, rooms) has its session saved under that `pid` whenever it changes and
//! when it leaves, to expire `recovery_ttl_ms` later. A client that reconnects presents `{ pid,
//! offset }`; the shell looks the session up, and the core recovers it only for the same user,
//! unexpired, with a readable offset and at most `resume_max_events` to replay from memory: it
//! restores the subscription (as the token's role allows) and the rooms, replays what the socket
//! would have received after the offset, and answers with the same `pid`. Otherwise the socket
//! connects fresh; a `pid` shown with another user's token, or with a token that was refused, is
//! forgotten.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::event::ReaderEvent;
use crate::position::LogPosition;
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

impl Core {
    /// A new, unguessable `pid` (128 bits from the core's seeded ChaCha stream).
    fn new_pid(&mut self) -> String {
        use rand_core::RngCore;
        format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64())
    }

    /// Decides what a connecting socket recovers, and names its `pid` before it is accepted.
    pub(crate) fn recover(
        &mut self,
        conn: ConnId,
        principal: &Principal,
        recovery: Option<Recovery>,
    ) -> (String, Option<Recovered>) {
        let recovered = recovery.and_then(|r| self.check(principal, r));
        let pid = match &recovered {
            Some(r) => r.pid.clone(),
            None => self.new_pid(),
        };
        self.outputs.push_back(Output::Pid { conn, pid: pid.clone() });
        (pid, recovered)
    }

    /// A connect with a `pid` was refused: the session recovers nothing any more.
    pub(crate) fn refused_recovery(&mut self, recovery: Option<Recovery>) {
        if let Some(r) = recovery.filter(|r| r.session.is_some()) {
            self.outputs.push_back(Output::ForgetSession { pid: r.pid });
        }
    }

    /// The session, if it may be recovered; a `pid` another user shows is forgotten.
    fn check(&mut self, principal: &Principal, r: Recovery) -> Option<Recovered> {
        let session = r.session?;
        if session.user_id != *principal.user_id {
            self.outputs.push_back(Output::ForgetSession { pid: r.pid });
            return None;
        }
        if session.expires_ms < self.wall.0 {
            return None;
        }
        let offset: LogPosition = match &r.offset {
            Some(offset) => offset.parse().ok()?,
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
        // Only what memory holds: past it, or past the limit, the socket connects fresh.
        if offset < self.frontier() && !self.history.reaches_back_to(offset) {
            return None;
        }
        let staff = principal.role.is_staff();
        let replay: Vec<_> = match &subscription {
            Some(s) => self
                .history
                .after(offset)
                .filter(|e| {
                    s.event_types.is_empty() || s.event_types.contains(&e.event_type) || e.is_support()
                })
                .cloned()
                .collect(),
            None if staff => self.history.after(offset).filter(|e| e.is_support()).cloned().collect(),
            None => Vec::new(),
        };
        if replay.len() > self.config.resume_max_events {
            return None;
        }
        let max_rooms = self.config.max_rooms_per_socket;
        let rooms = session.rooms.into_iter().take(max_rooms).collect();
        Some(Recovered { pid: r.pid, subscription, rooms, replay, offset })
    }

    /// Gives an accepted socket its recovered state and replay.
    pub(crate) fn restore(&mut self, conn: ConnId, r: Recovered) {
        let frontier = self.frontier();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let staff = c.principal.role.is_staff();
        for room in r.rooms {
            if c.rooms.insert(room.clone()) {
                self.routing.join_room(conn, &room, staff);
            }
        }
        if let Some(sent) = c.sent.as_deref_mut() {
            sent.recovered_from(r.offset.min(frontier));
        }
        if let Some(s) = r.subscription {
            self.routing.set_subscription(conn, None, Some(&s.event_types));
            c.subscription = Some(s);
            self.subscribed.insert(conn);
        }
        self.stats.replayed += r.replay.len() as u64;
        if r.offset > LogPosition::START {
            self.seen_up_to.insert(conn, r.offset);
        }
        if !r.replay.is_empty() {
            self.outputs.push_back(Output::Replay { conn, events: r.replay });
        }
        self.save_session(conn);
    }

    /// Saves a socket's session after a change (or as it leaves): what it has to recover, kept
    /// for `recovery_ttl_ms` from now; one with nothing to recover is forgotten.
    pub(crate) fn save_session(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let pid = c.pid.clone();
        if c.subscription.is_none() && c.rooms.is_empty() {
            if std::mem::take(&mut c.saved) {
                self.outputs.push_back(Output::ForgetSession { pid });
            }
            return;
        }
        c.saved = true;
        let session = SavedSession {
            user_id: c.principal.user_id.to_string(),
            consultant_id: c.subscription.as_ref().map(|s| s.consultant_id.clone()),
            event_types: c.subscription.as_ref().map(|s| s.event_types.clone()).unwrap_or_default(),
            rooms: c.rooms.iter().cloned().collect(),
            from: c.sent.as_deref().map_or(LogPosition::START, |s| s.current_from()),
            expires_ms: self.wall.0.saturating_add(self.config.recovery_ttl_ms),
        };
        self.outputs.push_back(Output::SaveSession { pid, session });
    }
}
