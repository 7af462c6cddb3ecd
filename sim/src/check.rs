//! The invariants of DESIGN.md, checked over what the clients saw and what the store holds.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::store::SimStore;

/// One consultant socket's view, from its subscription to the end or to its loss.
#[derive(Debug, Default)]
pub struct ConsultantView {
    pub name: String,
    /// Subscribed before the first event and never disconnected.
    pub throughout: bool,
    /// `reader-activity` ids and how often each came.
    pub received: BTreeMap<Uuid, u32>,
    /// The readers `get-online-readers` listed at the check, if this socket asked.
    pub online: Option<BTreeSet<String>>,
}

#[derive(Debug, Default)]
pub struct Observations {
    /// Events acknowledged with `ok: true`: id to (user, event type).
    pub accepted: BTreeMap<Uuid, (String, String)>,
    /// Events refused, by error code.
    pub refused: BTreeMap<String, u32>,
    /// Events sent whose acknowledgement never came (the connection was lost).
    pub unanswered: u32,
    pub consultants: Vec<ConsultantView>,
    /// Readers whose connection was alive when the online list was checked.
    pub online_readers: BTreeSet<String>,
    /// `reader-activity` that reached a reader about another reader.
    pub leaks: Vec<String>,
}

/// Returns the broken invariants and a summary line.
pub fn invariants(obs: &Observations, store: &SimStore) -> (Vec<String>, String) {
    let mut broken = Vec::new();
    let stored = store.events();

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

    let mut deliveries = 0;
    for c in &obs.consultants {
        for (id, n) in &c.received {
            deliveries += n;
            if *n > 1 {
                broken.push(format!("{} received event {id} {n} times", c.name));
            }
        }
        if c.throughout {
            let missing: Vec<_> = obs.accepted.keys().filter(|id| !c.received.contains_key(*id)).collect();
            if !missing.is_empty() {
                broken.push(format!(
                    "{} (subscribed throughout) missed {} of {} accepted events, first {}",
                    c.name,
                    missing.len(),
                    obs.accepted.len(),
                    missing[0]
                ));
            }
        }
        if let Some(online) = &c.online {
            if *online != obs.online_readers {
                broken.push(format!(
                    "{} sees online {:?}; connected readers are {:?}",
                    c.name, online, obs.online_readers
                ));
            }
        }
    }
    broken.extend(obs.leaks.iter().cloned());

    let throughout = obs.consultants.iter().filter(|c| c.throughout).count();
    let summary = format!(
        "{} accepted, {} refused {:?}, {} unanswered, {} stored, {} deliveries, {} of {} consultant sockets throughout",
        obs.accepted.len(),
        obs.refused.values().sum::<u32>(),
        obs.refused,
        obs.unanswered,
        stored.len(),
        deliveries,
        throughout,
        obs.consultants.len()
    );
    (broken, summary)
}
