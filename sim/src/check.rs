//! The invariants of the design (`shared/DESIGN.md`), checked over what the clients saw and what the
//! stores hold (the one the cluster shares, or every node's own file).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use alice_core::ReaderEvent;
use uuid::Uuid;

use crate::store::SimStore;

/// One consultant socket's view, from its subscription to the end or to its loss.
#[derive(Debug, Default)]
pub struct ConsultantView {
    pub name: String,
    /// Which consultant this socket belongs to (its views come in connection order).
    pub consultant: usize,
    /// It subscribed with `since` (the last event the consultant received before) and the server
    /// answered `resumed: true`: it continues the previous view's stream.
    pub resumed: bool,
    /// Subscribed before the first event and never disconnected.
    pub throughout: bool,
    /// Subscribed before the first event.
    pub early: bool,
    /// `reader-activity` ids and how often each came.
    pub received: BTreeMap<Uuid, u32>,
    /// `reader-activity` ids in the order they came.
    pub order: Vec<Uuid>,
    /// Whose each of them was, and when it came (simulated ms), in the same order.
    pub arrivals: Vec<(String, u64)>,
    /// Each reader an `online-readers` push or snapshot listed, and when it came.
    pub listed: Vec<(String, u64)>,
    /// The readers `get-online-readers` listed at the check, if this socket asked.
    pub online: Option<BTreeSet<String>>,
    /// It asked for the online list and got no answer.
    pub list_failed: bool,
    /// The server closed it or the connection broke (a planned leave is not a loss).
    pub lost: bool,
    /// Its subscription with `since`, the id of an event the consultant had received, was
    /// refused as naming no event: the error's message.
    pub resume_refused: Option<String>,
}

#[derive(Debug, Default)]
pub struct Observations {
    /// Events acknowledged with `ok: true`: id to (user, event type).
    pub accepted: BTreeMap<Uuid, (String, String)>,
    /// Events refused, by error code.
    pub refused: BTreeMap<String, u32>,
    /// Events sent whose acknowledgement never came, however often they were sent again.
    pub unanswered: u32,
    pub consultants: Vec<ConsultantView>,
    /// Readers whose connection was alive when the online list was checked.
    pub online_readers: BTreeSet<String>,
    /// `reader-activity` that reached a reader about another reader.
    pub leaks: Vec<String>,
    /// Under consultant scope `assigned`: the assignments table from each moment (simulated ms)
    /// it was written on, in time order. Empty when the run is not scoped.
    pub assignments: Vec<(u64, alice_core::AssignmentTable)>,
}

/// How long after the table changes a node may still follow the old assignments: its refresh
/// interval, and the time the read and the deliveries after it take.
const SCOPE_ALLOWANCE_MS: u64 = crate::scenario::ASSIGNMENT_REFRESH_MS + 500;

impl Observations {
    /// Whether `consultant` may be shown `reader`'s activity at `at`: assigned then, or within the
    /// allowance after an assignment that has since ended. Always, when the run is not scoped.
    fn may_see(&self, consultant: &str, reader: &str, at: u64) -> bool {
        if self.assignments.is_empty() {
            return true;
        }
        self.assignments.iter().enumerate().any(|(i, (from, table))| {
            let until = self.assignments.get(i + 1).map_or(u64::MAX, |(next, _)| next + SCOPE_ALLOWANCE_MS);
            *from <= at && at <= until && table.get(consultant).is_some_and(|r| r.contains(reader))
        })
    }

    /// Whether `consultant` had `reader` assigned for the whole run (or the run is not scoped):
    /// only then must it receive every one of that reader's events.
    fn always_sees(&self, consultant: &str, reader: &str) -> bool {
        self.assignments.iter().all(|(_, table)| table.get(consultant).is_some_and(|r| r.contains(reader)))
    }

    /// The accepted events `consultant` must receive, by id.
    fn owed_to(&self, consultant: &str) -> Vec<&Uuid> {
        self.accepted
            .iter()
            .filter(|(_, (user, _))| self.always_sees(consultant, user))
            .map(|(id, _)| id)
            .collect()
    }
}

/// Returns the broken invariants and a summary line.
///
/// `stores` are the store the cluster shares, or every node's own file: each must hold what a
/// store must hold ([`held`]), and own files must agree on every event's position.
///
/// `losses_expected` excuses consultant sockets that broke (a node crashed under them); otherwise
/// a lost consultant socket is a fault of the server. No accepted event is ever excused: a node
/// acknowledges an event only once Redis holds it, so even the node's crash loses none.
///
/// `lone_node_crashes` says the run's only node crashes, so no consultant socket can last
/// throughout; the other invariants (everything acknowledged or shown is stored) still hold.
pub fn invariants(
    obs: &Observations,
    stores: &[SimStore],
    losses_expected: bool,
    lone_node_crashes: bool,
) -> (Vec<String>, String) {
    let mut broken = Vec::new();
    if obs.accepted.is_empty() {
        broken.push("no event was accepted: the run tested nothing".to_owned());
    }
    if obs.consultants.iter().all(|c| c.received.is_empty()) {
        broken.push("no consultant was shown any event: the run tested nothing".to_owned());
    }
    // Liveness: readers go on resending, on whichever node they reach, until half a second
    // after every fault has healed; an event still unanswered then was held by a node that had
    // stopped answering.
    if obs.unanswered > 0 {
        broken.push(format!("{} events sent were never answered (accepted or refused)", obs.unanswered));
    }
    if !lone_node_crashes && !obs.consultants.iter().any(|c| c.throughout) {
        broken.push("no consultant socket stayed subscribed throughout".to_owned());
    }

    for store in stores {
        let whose = match store.owner() {
            "" => String::new(),
            node => format!("{node}'s file: "),
        };
        broken.extend(held(obs, &store.events()).into_iter().map(|v| format!("{whose}{v}")));
        // Once filled, a stretch is no longer recorded as lacking (nor reported by `/health`).
        if let Some(stretch) = store.missing().first() {
            broken.push(format!("{whose}still records a stretch of the log it lacks: {stretch:?}"));
        }
    }
    // Every node's own file holds the cluster's log alike: each event at the same position.
    let stored = stores[0].events();
    for other in &stores[1..] {
        let theirs = other.events();
        let differ: Vec<_> = stored
            .keys()
            .chain(theirs.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|id| stored.get(*id).map(|e| e.position) != theirs.get(*id).map(|e| e.position))
            .collect();
        if let Some(id) = differ.first() {
            let at = |events: &BTreeMap<Uuid, Arc<ReaderEvent>>| {
                events.get(*id).map_or("nowhere".to_owned(), |e| e.position.to_string())
            };
            broken.push(format!(
                "{}'s and {}'s files differ in {} events, first {id}: at {} against {}",
                stores[0].owner(),
                other.owner(),
                differ.len(),
                at(&stored),
                at(&theirs)
            ));
        }
    }

    // One order: any two sockets received the events they have in common in the same order.
    for (i, a) in obs.consultants.iter().enumerate() {
        for b in &obs.consultants[i + 1..] {
            let common = |x: &ConsultantView, y: &ConsultantView| -> Vec<Uuid> {
                x.order.iter().filter(|id| y.received.contains_key(*id)).copied().collect()
            };
            let (ab, ba) = (common(a, b), common(b, a));
            if let Some(at) = ab.iter().zip(&ba).position(|(x, y)| x != y) {
                broken.push(format!(
                    "{} and {} saw events in different orders: {} then {} against {} then {}",
                    a.name,
                    b.name,
                    ab[at],
                    ab.get(at + 1).map_or("nothing".into(), Uuid::to_string),
                    ba[at],
                    ba.get(at + 1).map_or("nothing".into(), Uuid::to_string),
                ));
            }
        }
    }

    // The stored positions are that one order: a `since` cursor taken from any event a socket
    // received resumes exactly after it.
    for c in &obs.consultants {
        let placed: Vec<_> =
            c.order.iter().filter_map(|id| stored.get(id).map(|e| (id, e.position))).collect();
        if let Some(w) = placed.windows(2).find(|w| w[0].1 >= w[1].1) {
            broken.push(format!(
                "{} received {} (stored at {}) before {} (stored at {})",
                c.name, w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }

    // Any id a client has seen is a valid `since` cursor, on any node.
    for c in &obs.consultants {
        if let Some(refusal) = &c.resume_refused {
            broken.push(format!("{} could not resume after an event it had received: {refusal}", c.name));
        }
    }

    // Exactly once across reconnects: a consultant's resumed views continue one stream that
    // repeats nothing, and one that began before the first event misses nothing.
    let mut streams = 0;
    for chain in chains(&obs.consultants) {
        let Some(first) = chain.first() else { continue };
        if chain.len() > 1 {
            streams += 1;
        }
        let mut seen: BTreeMap<Uuid, &str> = BTreeMap::new();
        for view in &chain {
            for id in &view.order {
                if let Some(earlier) = seen.insert(*id, &view.name) {
                    if earlier != view.name {
                        broken.push(format!(
                            "{} received {id} again after resuming (first on {earlier})",
                            view.name
                        ));
                    }
                }
            }
        }
        let placed: Vec<_> = chain
            .iter()
            .flat_map(|v| v.order.iter().map(move |id| (v.name.as_str(), id)))
            .filter_map(|(name, id)| stored.get(id).map(|e| (name, id, e.position)))
            .collect();
        if let Some(w) = placed.windows(2).find(|w| w[0].2 >= w[1].2) {
            broken.push(format!(
                "{}'s resumed stream went back: {} ({}) then {} ({}) on {}",
                w[0].0, w[0].1, w[0].2, w[1].1, w[1].2, w[1].0
            ));
        }
        let lasted = chain.last().is_some_and(|v| !v.lost);
        if chain.len() > 1 && first.early && lasted {
            let owed = obs.owed_to(&consultant_name(first.consultant));
            let missing: Vec<_> = owed.iter().filter(|id| !seen.contains_key(**id)).collect();
            if let Some(id) = missing.first() {
                broken.push(format!(
                    "{} resumed but its stream missed {} of {} accepted events, first {id}",
                    chain.last().map_or("?", |v| v.name.as_str()),
                    missing.len(),
                    owed.len()
                ));
            }
        }
    }

    // Consultant scope: nobody is shown a reader who was not assigned to it then.
    if !obs.assignments.is_empty() {
        let name = |c: &ConsultantView| consultant_name(c.consultant);
        let denied =
            obs.consultants.iter().any(|c| obs.accepted.values().any(|(u, _)| !obs.always_sees(&name(c), u)));
        if !denied {
            broken.push("every reader was assigned to every consultant: the scope was not tested".into());
        }
        for c in &obs.consultants {
            for ((reader, at), id) in c.arrivals.iter().zip(&c.order) {
                if !obs.may_see(&name(c), reader, *at) {
                    broken.push(format!(
                        "{} was shown {id} of {reader} at {at} ms, not assigned to it",
                        c.name
                    ));
                }
            }
            for (reader, at) in &c.listed {
                if !obs.may_see(&name(c), reader, *at) {
                    broken.push(format!(
                        "{} was listed {reader} online at {at} ms, not assigned to it",
                        c.name
                    ));
                }
            }
        }
    }

    let mut deliveries = 0;
    for c in &obs.consultants {
        for (id, n) in &c.received {
            deliveries += n;
            if *n > 1 {
                broken.push(format!("{} received event {id} {n} times", c.name));
            }
        }
        if c.throughout {
            let owed = obs.owed_to(&consultant_name(c.consultant));
            let missing: Vec<_> = owed.iter().filter(|id| !c.received.contains_key(**id)).collect();
            if !missing.is_empty() {
                broken.push(format!(
                    "{} (subscribed throughout) missed {} of {} events owed to it, first {}",
                    c.name,
                    missing.len(),
                    owed.len(),
                    missing[0]
                ));
            }
        }
        if c.lost && !losses_expected {
            broken.push(format!("{} lost its connection with no node crashed", c.name));
        }
        if c.list_failed {
            broken.push(format!("{} asked for the online readers and got no answer", c.name));
        }
        if let Some(online) = &c.online {
            // Under scope, the connected readers assigned to it at the end.
            let expected: BTreeSet<String> = match obs.assignments.last() {
                Some((_, table)) => {
                    let mine = table.get(&consultant_name(c.consultant));
                    obs.online_readers
                        .iter()
                        .filter(|r| mine.is_some_and(|m| m.contains(*r)))
                        .cloned()
                        .collect()
                }
                None => obs.online_readers.clone(),
            };
            if *online != expected {
                broken.push(format!("{} sees online {:?}; it should see {:?}", c.name, online, expected));
            }
        }
    }
    broken.extend(obs.leaks.iter().cloned());

    let throughout = obs.consultants.iter().filter(|c| c.throughout).count();
    let summary = format!(
        "{} accepted, {} refused {:?}, {} unanswered, {} stored, {} deliveries, \
         {} of {} consultant sockets throughout, {} resumed streams",
        obs.accepted.len(),
        obs.refused.values().sum::<u32>(),
        obs.refused,
        obs.unanswered,
        stored.len(),
        deliveries,
        throughout,
        obs.consultants.len(),
        streams
    );
    (broken, summary)
}

/// What one store must hold: every event acknowledged, as it was accepted; everything any
/// consultant was shown (durable before visible); each event a reader sent at most once, whatever
/// ids retries gave it; and nothing no reader sent.
fn held(obs: &Observations, stored: &BTreeMap<Uuid, Arc<ReaderEvent>>) -> Vec<String> {
    let mut broken = Vec::new();
    // Each event a reader sent (its user and its number `n`) is stored at most once, whatever
    // ids retries gave it; and only what readers sent is stored.
    let mut copies: BTreeMap<(String, String), u32> = BTreeMap::new();
    for e in stored.values() {
        let data: serde_json::Value = serde_json::from_str(e.data.get()).unwrap_or_default();
        let reader = format!("reader-{}", data["reader"]);
        if *e.user_id != *reader || !data["n"].is_u64() {
            broken.push(format!("stored event {} was never sent: {} {}", e.id, e.user_id, e.data.get()));
            continue;
        }
        *copies.entry((reader, data["n"].to_string())).or_default() += 1;
    }
    for ((reader, n), count) in copies {
        if count > 1 {
            broken.push(format!("{reader}'s event #{n} is stored {count} times"));
        }
    }

    for (id, (user, kind)) in &obs.accepted {
        match stored.get(id) {
            None => broken.push(format!("accepted event {id} ({user} {kind}) was never stored")),
            Some(e) if &*e.user_id != user.as_str() || e.event_type != *kind => broken.push(format!(
                "event {id} was stored as {} {}, accepted as {user} {kind}",
                e.user_id, e.event_type
            )),
            Some(_) => {}
        }
    }

    // Durable before visible: whatever anyone was shown is stored.
    let shown: BTreeSet<&Uuid> = obs.consultants.iter().flat_map(|c| c.received.keys()).collect();
    let unstored: Vec<_> = shown.iter().filter(|id| !stored.contains_key(**id)).collect();
    if let Some(first) = unstored.first() {
        broken.push(format!("{} delivered events were never stored, first {first}", unstored.len()));
    }

    broken
}

fn consultant_name(j: usize) -> String {
    format!("consultant-{j}")
}

/// Each consultant's views, cut into streams: a view that resumed continues the one before it.
fn chains(views: &[ConsultantView]) -> Vec<Vec<&ConsultantView>> {
    let mut by_consultant: BTreeMap<usize, Vec<&ConsultantView>> = BTreeMap::new();
    for v in views {
        by_consultant.entry(v.consultant).or_default().push(v);
    }
    let mut chains = Vec::new();
    for views in by_consultant.into_values() {
        let mut chain: Vec<&ConsultantView> = Vec::new();
        for v in views {
            if !v.resumed && !chain.is_empty() {
                chains.push(std::mem::take(&mut chain));
            }
            chain.push(v);
        }
        chains.push(chain);
    }
    chains
}
