//! Consultant scope (PROTOCOL.md, "Consultant scope"): which readers each consultant may watch.
//! The assignments are state fed by inputs (the table, read again every refresh; a `PUT` on this
//! node; a change another node announces), indexed both ways so that a delivery asks "who is
//! assigned this reader" in time proportional to the answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::presence::ReaderPresence;
use crate::replies::{self, names};
use crate::timers::Timer;
use crate::{BusBody, ConnId, Core, Millis, Output, Payload, Principal, Role};

/// Whether consultants see every reader or only those assigned to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsultantScope {
    /// Every consultant sees every reader, as the original server did.
    #[default]
    All,
    /// A consultant sees only readers with an active assignment to them. Admins see everyone.
    Assigned,
}

impl std::str::FromStr for ConsultantScope {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "all" => Ok(ConsultantScope::All),
            "assigned" => Ok(ConsultantScope::Assigned),
            _ => Err(()),
        }
    }
}

/// A read of the assignments table that is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Nothing came in meanwhile: its answer is applied.
    Current,
    /// The table changed meanwhile: its answer is applied, then the table read again.
    ThenAgain,
    /// This node applied a change meanwhile, which the answer may predate: dropped, read again.
    Overtaken,
}

/// Every consultant's active set, by consultant id: what the table holds.
pub type AssignmentTable = BTreeMap<String, BTreeSet<String>>;

/// Active assignments, both ways round.
#[derive(Debug, Default)]
pub struct Assignments {
    readers_of: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
    consultants_of: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
}

impl Assignments {
    /// Replaces one consultant's active set; returns whether it changed.
    pub fn replace(&mut self, consultant: &str, readers: &BTreeSet<String>) -> bool {
        let old = self.readers_of.get(consultant);
        if old.is_some_and(|o| o.iter().map(|r| &**r).eq(readers.iter().map(String::as_str)))
            || (old.is_none() && readers.is_empty())
        {
            return false;
        }
        let consultant: Arc<str> = consultant.into();
        for reader in self.readers_of.remove(&consultant).into_iter().flatten() {
            if let Some(set) = self.consultants_of.get_mut(&reader) {
                set.remove(&consultant);
                if set.is_empty() {
                    self.consultants_of.remove(&reader);
                }
            }
        }
        if readers.is_empty() {
            return true;
        }
        // One copy of each reader's id however many consultants it has.
        let known = |r: &String| self.consultants_of.get_key_value(r.as_str()).map(|(k, _)| k.clone());
        let set: BTreeSet<Arc<str>> =
            readers.iter().map(|r| known(r).unwrap_or_else(|| r.as_str().into())).collect();
        for reader in &set {
            self.consultants_of.entry(reader.clone()).or_default().insert(consultant.clone());
        }
        self.readers_of.insert(consultant, set);
        true
    }

    /// Replaces every set with the table's; returns the consultants whose set changed, sorted.
    pub fn load(&mut self, table: &AssignmentTable) -> Vec<String> {
        let mut consultants: BTreeSet<String> = self.readers_of.keys().map(|c| c.to_string()).collect();
        consultants.extend(table.keys().cloned());
        let empty = BTreeSet::new();
        consultants.into_iter().filter(|c| self.replace(c, table.get(c).unwrap_or(&empty))).collect()
    }

    /// The consultants `reader` is assigned to.
    pub fn consultants_of(&self, reader: &str) -> impl Iterator<Item = &str> {
        self.consultants_of.get(reader).into_iter().flatten().map(|c| &**c)
    }

    /// The readers assigned to `consultant`, sorted.
    pub fn readers_of(&self, consultant: &str) -> Vec<String> {
        self.readers_of.get(consultant).into_iter().flatten().map(|r| r.to_string()).collect()
    }

    pub fn is_assigned(&self, consultant: &str, reader: &str) -> bool {
        self.readers_of.get(consultant).is_some_and(|set| set.contains(reader))
    }
}

/// Whether a sorted list of readers (a scoped consultant's, carried by a query or a replay) lets
/// `user`'s events through; no list lets everyone's through.
pub fn lets_through(readers: Option<&[String]>, user: &str) -> bool {
    readers.is_none_or(|rs| rs.binary_search_by(|r| r.as_str().cmp(user)).is_ok())
}

/// Whose events a socket's principal may see: everyone's, or only those of the readers assigned
/// to it (a consultant under [`ConsultantScope::Assigned`]).
pub fn scoped_consultant(scope: ConsultantScope, principal: &Principal) -> Option<&Arc<str>> {
    (scope == ConsultantScope::Assigned && principal.role == Role::Consultant).then_some(&principal.user_id)
}

impl Core {
    /// The consultant whose assignments limit what `conn` sees, if any.
    pub(crate) fn scope_of(&self, conn: ConnId) -> Option<&Arc<str>> {
        let c = self.conns.get(&conn)?;
        scoped_consultant(self.config.consultant_scope, &c.principal)
    }

    /// Whether `conn` may see `reader`'s events and presence, as the scope stands now.
    pub(crate) fn sees(&self, conn: ConnId, reader: &str) -> bool {
        self.scope_of(conn).is_none_or(|consultant| self.assignments.is_assigned(consultant, reader))
    }

    /// For a scoped principal, the only readers whose events it may read, sorted.
    pub(crate) fn readers_visible_to(&self, principal: &Principal) -> Option<Vec<String>> {
        scoped_consultant(self.config.consultant_scope, principal).map(|c| self.assignments.readers_of(c))
    }

    /// `online-readers` as `conn` sees it, and, with `ack`, the acknowledgement's form too.
    fn online_readers_for(&self, conn: ConnId, ack: bool) -> (Payload, Option<Payload>) {
        let online = self.presence.online();
        let scope = self.scope_of(conn);
        let list: Vec<(&str, &ReaderPresence)> = (online.iter())
            .filter(|(user, _)| scope.is_none_or(|consultant| self.assignments.is_assigned(consultant, user)))
            .map(|(user, r)| (*user, &**r))
            .collect();
        (replies::online_readers(&list, false), ack.then(|| replies::online_readers(&list, true)))
    }

    /// Sends the current list to every subscribed socket: the whole list, serialized once, to
    /// the unscoped; to each scoped consultant's sockets its own view, serialized once per
    /// distinct view, and only to those whose last list differs (nothing they may see changed,
    /// nothing is sent).
    pub(crate) fn push_online_readers(&mut self) {
        let mut everyone = Vec::new();
        let mut scoped: BTreeMap<Arc<str>, Vec<ConnId>> = BTreeMap::new();
        for &conn in &self.subscribed {
            match self.scope_of(conn) {
                Some(consultant) => scoped.entry(consultant.clone()).or_default().push(conn),
                None => everyone.push(conn),
            }
        }
        // Serialized first, from the presence as it stands; sent after.
        let (whole, views) = {
            let online = self.presence.online();
            let listed: Vec<(&str, &ReaderPresence)> = online.iter().map(|(user, r)| (*user, &**r)).collect();
            let whole = (!everyone.is_empty()).then(|| replies::online_readers(&listed, false));
            let place: HashMap<&str, usize> = if scoped.is_empty() {
                HashMap::new()
            } else {
                listed.iter().enumerate().map(|(i, (u, _))| (*u, i)).collect()
            };
            let mut encoded: HashMap<Vec<usize>, Payload> = HashMap::new();
            let mut views = Vec::with_capacity(scoped.len());
            for (consultant, conns) in scoped {
                let mut view: Vec<usize> =
                    (self.assignments.readers_of.get(&consultant).into_iter().flatten())
                        .filter_map(|r| place.get(&**r).copied())
                        .collect();
                view.sort_unstable();
                let payload = encoded
                    .entry(view)
                    .or_insert_with_key(|view| {
                        let list: Vec<_> = view.iter().map(|&i| listed[i]).collect();
                        replies::online_readers(&list, false)
                    })
                    .clone();
                views.push((conns, payload));
            }
            (whole, views)
        };
        if let Some(payload) = whole {
            self.emit(everyone, names::ONLINE_READERS, payload);
        }
        for (mut to, payload) in views {
            to.retain(|conn| self.shown_views.get(conn) != Some(&payload));
            for conn in &to {
                self.shown_views.insert(*conn, payload.clone());
            }
            self.emit(to, names::ONLINE_READERS, payload);
        }
    }

    /// Sends `online-readers` to one socket (a snapshot, an answer), as it sees the list.
    pub(crate) fn send_online_readers(&mut self, conn: ConnId, ack: Option<crate::AckId>) {
        let (payload, acked) = self.online_readers_for(conn, ack.is_some());
        if self.scope_of(conn).is_some() {
            self.shown_views.insert(conn, payload.clone());
        }
        if let (Some(ack), Some(acked)) = (ack, acked) {
            self.outputs.push_back(Output::Ack { conn, ack, payload: acked });
        }
        self.emit(vec![conn], names::ONLINE_READERS, payload);
    }

    /// Asks for the table again, unless a read is out, and arms the next refresh.
    pub(crate) fn refresh_assignments(&mut self, now: Millis) {
        self.load_assignments();
        self.timers.set(Timer::AssignmentRefresh, now.plus(self.config.assignment_refresh_ms.max(1)));
    }

    fn load_assignments(&mut self) {
        if self.assignments_loading.is_none() {
            self.assignments_loading = Some(Reading::Current);
            self.outputs.push_back(Output::LoadAssignments);
        }
    }

    /// The table changed (the database said so): read it now, or, with a read out that may have
    /// begun before the change, once more when that one answers. That answer still holds:
    /// nothing newer than the table came in meanwhile.
    pub(crate) fn reload_assignments(&mut self) {
        if self.config.consultant_scope != ConsultantScope::Assigned {
            return;
        }
        match &mut self.assignments_loading {
            Some(reading @ Reading::Current) => *reading = Reading::ThenAgain,
            Some(_) => {}
            None => self.load_assignments(),
        }
    }

    /// The table as read: applied, unless a change this node applied meanwhile may be newer than
    /// it (that read is dropped); either way read again at once when asked to.
    pub(crate) fn on_assignments_loaded(&mut self, table: Option<AssignmentTable>) {
        let reading = self.assignments_loading.take().unwrap_or(Reading::Current);
        if reading != Reading::Overtaken {
            if let Some(table) = table {
                if !self.assignments.load(&table).is_empty() {
                    self.assignments_changed();
                }
            }
        }
        if reading != Reading::Current {
            self.load_assignments();
        }
    }

    /// An admin's `PUT` on this node (already in the table): applied now, announced to the others.
    pub(crate) fn assign(&mut self, consultant_id: String, readers: BTreeSet<String>) {
        self.apply_assignment(&consultant_id, &readers);
        self.publish(BusBody::Assigned { consultant_id, readers });
    }

    /// A change applied ahead of the table's next read: this node's `PUT`, or another node's
    /// announced on the bus (already in the table they share).
    pub(crate) fn apply_assignment(&mut self, consultant: &str, readers: &BTreeSet<String>) {
        if let Some(reading) = &mut self.assignments_loading {
            *reading = Reading::Overtaken;
        }
        if self.assignments.replace(consultant, readers) {
            self.assignments_changed();
        }
    }

    /// Deliveries follow the new sets at once; the views in `online-readers` at the next push.
    fn assignments_changed(&mut self) {
        if self.config.consultant_scope == ConsultantScope::Assigned {
            self.presence.mark_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(readers: &[&str]) -> BTreeSet<String> {
        readers.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn both_indexes_follow_a_replacement() {
        let mut a = Assignments::default();
        assert!(a.replace("c1", &set(&["r1", "r2"])));
        assert!(a.replace("c2", &set(&["r2"])));
        assert_eq!(a.consultants_of("r2").collect::<Vec<_>>(), ["c1", "c2"]);
        assert!(!a.replace("c1", &set(&["r1", "r2"])), "the same set changes nothing");
        assert!(a.replace("c1", &set(&["r3"])));
        assert_eq!(a.consultants_of("r2").collect::<Vec<_>>(), ["c2"]);
        assert_eq!(a.consultants_of("r1").count(), 0);
        assert!(a.is_assigned("c1", "r3") && !a.is_assigned("c1", "r1"));
        assert!(a.replace("c2", &set(&[])));
        assert_eq!(a.consultants_of("r2").count(), 0);
        assert!(a.readers_of("c2").is_empty());
        assert!(!a.replace("c9", &set(&[])), "an empty set for an unknown consultant changes nothing");
    }

    #[test]
    fn a_load_replaces_everything_and_names_what_changed() {
        let mut a = Assignments::default();
        a.replace("c1", &set(&["r1"]));
        a.replace("c2", &set(&["r2"]));
        let table: AssignmentTable =
            [("c2".to_owned(), set(&["r2"])), ("c3".to_owned(), set(&["r3"]))].into();
        assert_eq!(a.load(&table), ["c1", "c3"]);
        assert!(a.readers_of("c1").is_empty());
        assert_eq!(a.readers_of("c3"), ["r3"]);
        assert!(a.load(&table).is_empty());
    }
}
