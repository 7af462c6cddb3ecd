//! Who receives a reader event. Indexes sockets by subscription filter, role, user and room so
//! the recipient set costs time in proportion to its size, never a scan of every socket.
//!
//! Under `CONSULTANT_SCOPE=assigned` a consultant's sockets sit apart, under their consultant:
//! an event reaches them only through its reader's assignments, so the cost stays in proportion
//! to the sockets of the consultants assigned that reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::ConnId;

/// What rules 1 and 4 need to know of a scoped consultant's socket.
#[derive(Debug, Default)]
struct ScopedSocket {
    /// Its subscription's filter (empty: every type), if it holds one.
    subscription: Option<Vec<String>>,
    rooms: BTreeSet<String>,
}

impl ScopedSocket {
    fn receives(&self, event_type: &str, support: bool, sender_rooms: &[&str]) -> bool {
        support
            || self.subscription.as_ref().is_some_and(|t| t.is_empty() || t.iter().any(|t| t == event_type))
            || sender_rooms.iter().any(|r| self.rooms.contains(*r))
    }
}

/// The delivery indexes over this node's sockets.
#[derive(Debug, Default)]
pub struct Routing {
    /// Consultant and admin sockets (rule 2).
    staff: BTreeSet<ConnId>,
    /// Subscribed sockets without a type filter (rule 1).
    subscribed_to_all: BTreeSet<ConnId>,
    /// Subscribed sockets by the types their filter names (rule 1).
    subscribed_by_type: HashMap<String, BTreeSet<ConnId>>,
    /// Every socket by user (rule 3).
    by_user: HashMap<String, BTreeSet<ConnId>>,
    /// Consultant and admin sockets by the rooms they are in (rule 4).
    staff_by_room: HashMap<String, BTreeSet<ConnId>>,
    /// Scoped consultants' sockets, by consultant; none of them is in the indexes above except
    /// `by_user`.
    scoped: HashMap<Arc<str>, BTreeMap<ConnId, ScopedSocket>>,
    scoped_owner: HashMap<ConnId, Arc<str>>,
}

fn remove_from<K: std::hash::Hash + Eq + ?Sized>(
    map: &mut HashMap<String, BTreeSet<ConnId>>,
    key: &K,
    conn: ConnId,
) where
    String: std::borrow::Borrow<K>,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(&conn);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl Routing {
    /// A socket arrives; `scoped_to` names the consultant whose assignments limit what it
    /// receives (a consultant under `assigned`).
    pub fn add_socket(&mut self, conn: ConnId, user: &str, staff: bool, scoped_to: Option<&Arc<str>>) {
        match scoped_to {
            Some(consultant) => {
                self.scoped.entry(consultant.clone()).or_default().insert(conn, ScopedSocket::default());
                self.scoped_owner.insert(conn, consultant.clone());
            }
            None if staff => {
                self.staff.insert(conn);
            }
            None => {}
        }
        self.by_user.entry(user.to_owned()).or_default().insert(conn);
    }

    pub fn remove_socket(&mut self, conn: ConnId, user: &str) {
        self.staff.remove(&conn);
        remove_from(&mut self.by_user, user, conn);
        if let Some(consultant) = self.scoped_owner.remove(&conn) {
            if let Some(sockets) = self.scoped.get_mut(&consultant) {
                sockets.remove(&conn);
                if sockets.is_empty() {
                    self.scoped.remove(&consultant);
                }
            }
        }
    }

    fn scoped_socket(&mut self, conn: ConnId) -> Option<&mut ScopedSocket> {
        let consultant = self.scoped_owner.get(&conn)?;
        self.scoped.get_mut(consultant)?.get_mut(&conn)
    }

    /// Replaces a socket's subscription filter; `None` removes the subscription.
    pub fn set_subscription(&mut self, conn: ConnId, old: Option<&[String]>, new: Option<&[String]>) {
        if let Some(s) = self.scoped_socket(conn) {
            s.subscription = new.map(<[String]>::to_vec);
            return;
        }
        match old {
            Some([]) => {
                self.subscribed_to_all.remove(&conn);
            }
            Some(types) => {
                types.iter().for_each(|t| remove_from(&mut self.subscribed_by_type, t.as_str(), conn))
            }
            None => {}
        }
        match new {
            Some([]) => {
                self.subscribed_to_all.insert(conn);
            }
            Some(types) => {
                for t in types {
                    self.subscribed_by_type.entry(t.clone()).or_default().insert(conn);
                }
            }
            None => {}
        }
    }

    /// Records that a socket entered a room. Only staff sockets receive through rooms.
    pub fn join_room(&mut self, conn: ConnId, room: &str, staff: bool) {
        if let Some(s) = self.scoped_socket(conn) {
            s.rooms.insert(room.to_owned());
        } else if staff {
            self.staff_by_room.entry(room.to_owned()).or_default().insert(conn);
        }
    }

    pub fn leave_room(&mut self, conn: ConnId, room: &str) {
        if let Some(s) = self.scoped_socket(conn) {
            s.rooms.remove(room);
        }
        remove_from(&mut self.staff_by_room, room, conn);
    }

    /// The sockets on this node that receive an event of `event_type` from `user`, sent on a
    /// socket which is in `sender_rooms` and which is, on this node, any of `senders` (its own
    /// socket, and one that recovered its session), whose reader is assigned to the consultants
    /// `assigned_to` (which matters only for scoped consultants' sockets). Sorted, each socket
    /// once, never a sender.
    pub fn recipients<'a, 'b>(
        &self,
        senders: &[ConnId],
        user: &str,
        event_type: &str,
        support: bool,
        sender_rooms: &[&'a str],
        assigned_to: impl IntoIterator<Item = &'b str>,
    ) -> Vec<ConnId> {
        let mut out: Vec<ConnId> = Vec::new();
        out.extend(&self.subscribed_to_all);
        if let Some(set) = self.subscribed_by_type.get(event_type) {
            out.extend(set);
        }
        if support {
            out.extend(&self.staff);
        }
        if let Some(set) = self.by_user.get(user) {
            out.extend(set);
        }
        for room in sender_rooms {
            if let Some(set) = self.staff_by_room.get(*room) {
                out.extend(set);
            }
        }
        for consultant in assigned_to {
            for (conn, s) in self.scoped.get(consultant).into_iter().flatten() {
                if s.receives(event_type, support, sender_rooms) {
                    out.push(*conn);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        if !senders.is_empty() {
            out.retain(|c| !senders.contains(c));
        }
        out
    }

    /// This node's sockets of `user`.
    pub fn sockets_of(&self, user: &str) -> impl Iterator<Item = ConnId> + '_ {
        self.by_user.get(user).into_iter().flatten().copied()
    }

    /// The staff sockets in any of `rooms` (rule 4) that an event of a reader assigned to
    /// `assigned_to` reaches, each once.
    pub fn staff_in_rooms<'a, 'b>(
        &self,
        rooms: &[&'a str],
        assigned_to: impl IntoIterator<Item = &'b str>,
    ) -> BTreeSet<ConnId> {
        let mut found: BTreeSet<ConnId> =
            rooms.iter().filter_map(|r| self.staff_by_room.get(*r)).flatten().copied().collect();
        for consultant in assigned_to {
            for (conn, s) in self.scoped.get(consultant).into_iter().flatten() {
                if rooms.iter().any(|r| s.rooms.contains(*r)) {
                    found.insert(*conn);
                }
            }
        }
        found
    }

    /// Whether every index is empty (no socket left behind after all disconnected).
    pub fn is_empty(&self) -> bool {
        self.staff.is_empty()
            && self.subscribed_to_all.is_empty()
            && self.subscribed_by_type.is_empty()
            && self.by_user.is_empty()
            && self.staff_by_room.is_empty()
            && self.scoped.is_empty()
            && self.scoped_owner.is_empty()
    }
}
