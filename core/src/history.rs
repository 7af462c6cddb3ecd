//! Recent events of the whole cluster, kept in memory for `get-recent-events`. Bounded: when it
//! has forgotten events a query may need, it says so and the shell asks the store instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

use crate::event::ReaderEvent;
use crate::protocol::HistoryQuery;

/// The answer to a history query.
#[derive(Debug, PartialEq)]
pub enum HistoryAnswer {
    /// The events, in the order the protocol gives them, and whether more remain.
    Events { events: Vec<Arc<ReaderEvent>>, has_more: bool },
    /// Memory may not hold every event the query needs: ask the store.
    AskStore,
}

/// A bounded, id-ordered window of recent events.
#[derive(Debug)]
pub struct History {
    events: BTreeMap<Uuid, Arc<ReaderEvent>>,
    capacity: usize,
    /// True while memory holds every event ever stored: nothing was evicted or left unloaded.
    complete: bool,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History { events: BTreeMap::new(), capacity: capacity.max(1), complete: true }
    }

    /// Adds an event; the oldest is forgotten when over capacity.
    pub fn insert(&mut self, event: Arc<ReaderEvent>) {
        self.events.insert(event.id, event);
        while self.events.len() > self.capacity {
            self.events.pop_first();
            self.complete = false;
        }
    }

    /// Loads events read from the store at start. `complete` says the store holds no others.
    pub fn warm(&mut self, events: impl IntoIterator<Item = Arc<ReaderEvent>>, complete: bool) {
        self.complete &= complete;
        for e in events {
            self.insert(e);
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Answers a query: without `since`, the newest matching events, newest first; with `since`,
    /// the oldest matching events newer than it, oldest first.
    pub fn query(&self, q: &HistoryQuery) -> HistoryAnswer {
        let matches = |e: &&Arc<ReaderEvent>| {
            q.user_id.as_deref().is_none_or(|u| *e.user_id == *u)
                && (q.event_types.is_empty() || q.event_types.iter().any(|t| *t == e.event_type))
        };
        let mut found: Vec<Arc<ReaderEvent>> = match q.since {
            None => self.events.values().rev().filter(matches).take(q.limit + 1).cloned().collect(),
            Some(since) => {
                if !self.complete && self.events.first_key_value().is_none_or(|(oldest, _)| since < *oldest) {
                    return HistoryAnswer::AskStore;
                }
                let after = (std::ops::Bound::Excluded(since), std::ops::Bound::Unbounded);
                self.events.range(after).map(|(_, e)| e).filter(matches).take(q.limit + 1).cloned().collect()
            }
        };
        let has_more = found.len() > q.limit;
        if q.since.is_none() && !has_more && !self.complete {
            return HistoryAnswer::AskStore;
        }
        found.truncate(q.limit);
        HistoryAnswer::Events { events: found, has_more }
    }
}
