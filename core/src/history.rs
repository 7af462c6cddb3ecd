//! Recent events of the whole cluster, in the log's order, kept in memory for `get-recent-events`.
//! Bounded: when it has forgotten events a query may need, it says so and the shell asks the store
//! instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use uuid::Uuid;

use crate::event::ReaderEvent;
use crate::position::LogPosition;
use crate::protocol::HistoryQuery;
use crate::time::Millis;

/// The answer to a history query.
#[derive(Debug, PartialEq)]
pub enum HistoryAnswer {
    /// The events, in the order the protocol gives them, and whether more remain.
    Events { events: Vec<Arc<ReaderEvent>>, has_more: bool },
    /// Memory may not hold every event the query needs: ask the store.
    AskStore,
}

/// A bounded window of recent events in log order, with each one's position by id so that a
/// `since` id resumes exactly where that event stands in the log.
#[derive(Debug)]
pub struct History {
    events: BTreeMap<LogPosition, Arc<ReaderEvent>>,
    positions: HashMap<Uuid, LogPosition>,
    capacity: usize,
    /// True while memory holds every event ever stored: nothing was evicted or left unloaded.
    complete: bool,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            events: BTreeMap::new(),
            positions: HashMap::new(),
            capacity: capacity.max(1),
            complete: true,
        }
    }

    /// Adds an event; the oldest is forgotten when over capacity.
    pub fn insert(&mut self, event: Arc<ReaderEvent>) {
        self.positions.insert(event.id, event.position);
        let id = event.id;
        if let Some(replaced) = self.events.insert(event.position, event) {
            if replaced.id != id {
                self.positions.remove(&replaced.id);
            }
        }
        while self.events.len() > self.capacity {
            if let Some((_, oldest)) = self.events.pop_first() {
                self.positions.remove(&oldest.id);
            }
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

    /// Whether memory holds the event `id`.
    pub fn holds(&self, id: Uuid) -> bool {
        self.positions.contains_key(&id)
    }

    /// The newest event's position, if memory holds any.
    pub fn newest(&self) -> Option<LogPosition> {
        self.events.last_key_value().map(|(p, _)| *p)
    }

    /// Where the event `id` stands in the log, when memory holds it.
    pub fn position_if_held(&self, id: Uuid) -> Option<LogPosition> {
        self.positions.get(&id).copied()
    }

    /// True while memory holds every event ever stored.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The oldest event's position, if memory holds any.
    pub fn oldest(&self) -> Option<LogPosition> {
        self.events.first_key_value().map(|(p, _)| *p)
    }

    /// Whether memory holds every event after `position`.
    pub fn reaches_back_to(&self, position: LogPosition) -> bool {
        self.complete || self.oldest().is_some_and(|oldest| oldest <= position)
    }

    /// The events after `position`, in log order.
    pub fn after(&self, position: LogPosition) -> impl Iterator<Item = &Arc<ReaderEvent>> {
        self.events.range((std::ops::Bound::Excluded(position), std::ops::Bound::Unbounded)).map(|(_, e)| e)
    }

    /// Where the event `id` stands in the log, when memory knows; `None` when only the store can
    /// tell (memory is incomplete and does not hold it).
    pub fn position_of(&self, id: Uuid) -> Option<LogPosition> {
        match self.positions.get(&id) {
            Some(p) => Some(*p),
            // Memory holds every event: an id it does not know was never placed in the log, and
            // reads as a time.
            None if self.complete => Some(position_by_time(id)),
            None => None,
        }
    }

    /// Answers a query: without `since`, the newest matching events, newest first; with `since`,
    /// the oldest matching events after it in the log, oldest first.
    pub fn query(&self, q: &HistoryQuery) -> HistoryAnswer {
        let matches = |e: &&Arc<ReaderEvent>| {
            q.user_id.as_deref().is_none_or(|u| *e.user_id == *u)
                && crate::scope::lets_through(q.readers.as_deref(), &e.user_id)
                && (q.event_types.is_empty() || q.event_types.iter().any(|t| *t == e.event_type))
        };
        let mut found: Vec<Arc<ReaderEvent>> = match q.since {
            None => self.events.values().rev().filter(matches).take(q.limit + 1).cloned().collect(),
            Some(since) => {
                let Some(after) = self.position_of(since) else { return HistoryAnswer::AskStore };
                let range = (std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded);
                self.events.range(range).map(|(_, e)| e).filter(matches).take(q.limit + 1).cloned().collect()
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

/// Where an id that names no event in the log stands: at the millisecond of its UUIDv7 time, so
/// that any id still works as a cursor in time.
pub fn position_by_time(id: Uuid) -> LogPosition {
    let ms = id.get_timestamp().map_or(0, |t| {
        let (secs, nanos) = t.to_unix();
        secs * 1000 + u64::from(nanos) / 1_000_000
    });
    LogPosition::at(Millis(ms))
}
