//! Who receives a reader event. Indexes sockets by subscription filter, role, user and room so
//! the recipient set costs time in proportion to its size, never a scan of every socket.

use std::collections::{BTreeSet, HashMap};

use crate::ConnId;

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
    pub fn add_socket(&mut self, conn: ConnId, user: &str, staff: bool) {
        if staff {
            self.staff.insert(conn);
        }
        self.by_user.entry(user.to_owned()).or_default().insert(conn);
    }

    pub fn remove_socket(&mut self, conn: ConnId, user: &str) {
        self.staff.remove(&conn);
        remove_from(&mut self.by_user, user, conn);
    }

    /// Replaces a socket's subscription filter; `None` removes the subscription.
    pub fn set_subscription(&mut self, conn: ConnId, old: Option<&[String]>, new: Option<&[String]>) {
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
        if staff {
            self.staff_by_room.entry(room.to_owned()).or_default().insert(conn);
        }
    }

    pub fn leave_room(&mut self, conn: ConnId, room: &str) {
        remove_from(&mut self.staff_by_room, room, conn);
    }

    /// The sockets on this node that receive an event of `event_type` from `user`, sent on
    /// `sender` (a socket of this node, or `None` when it came from another node) which is in
    /// `sender_rooms`. Sorted, each socket once, never the sender.
    pub fn recipients<'a>(
        &self,
        sender: Option<ConnId>,
        user: &str,
        event_type: &str,
        support: bool,
        sender_rooms: impl IntoIterator<Item = &'a str>,
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
            if let Some(set) = self.staff_by_room.get(room) {
                out.extend(set);
            }
        }
        out.sort_unstable();
        out.dedup();
        if let Some(sender) = sender {
            out.retain(|c| *c != sender);
        }
        out
    }

    /// The staff sockets in any of `rooms` (rule 4), each once.
    pub fn staff_in_rooms<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) -> BTreeSet<ConnId> {
        rooms.into_iter().filter_map(|r| self.staff_by_room.get(r)).flatten().copied().collect()
    }

    /// Whether every index is empty (no socket left behind after all disconnected).
    pub fn is_empty(&self) -> bool {
        self.staff.is_empty()
            && self.subscribed_to_all.is_empty()
            && self.subscribed_by_type.is_empty()
            && self.by_user.is_empty()
            && self.staff_by_room.is_empty()
    }
}
