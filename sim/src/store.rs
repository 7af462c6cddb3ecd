//! The event store of the simulated nodes, in memory and outliving any node: one the cluster
//! shares (PostgreSQL's part), or one per node (each node's own SQLite file). It records every
//! write, and fails on demand.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use alice_core::{
    AssignmentTable, HistoryQuery, LogEntry, LogPosition, Millis, ReaderEvent, ReplayFilter, ReplayFrom,
};
use alice_shell::store::{DashboardRow, EventStore, Membership, Page, StoreError};
use uuid::Uuid;

use crate::trace::Trace;

#[derive(Default)]
struct Rows {
    events: BTreeMap<Uuid, Arc<ReaderEvent>>,
    /// The stored events in the log's order, as the real stores page them.
    by_position: BTreeMap<LogPosition, Uuid>,
    /// How many times each id was written, repeats included.
    writes: BTreeMap<Uuid, u32>,
    /// Accepted `clientEventId`s, by user and key: the event that has it and when.
    keys: BTreeMap<(String, String), (Uuid, u64)>,
    /// The `consultant_assignments` table's active rows.
    assignments: AssignmentTable,
    /// A node's own file in a cluster: the storing group it last stored for, and the stretches of
    /// the log it lacks (`log_membership`, `log_missing`).
    group: Option<String>,
    missing: BTreeSet<(LogPosition, LogPosition)>,
}

/// An in-memory store; its clones are the same store.
#[derive(Clone)]
pub struct SimStore {
    rows: Arc<Mutex<Rows>>,
    down: Arc<AtomicBool>,
    /// Stands for a node's own embedded file (a single node's log, or a cluster node's copy of
    /// the whole log) rather than a shared database.
    embedded: bool,
    /// Whose file it is, in the trace; empty for the store the cluster shares.
    owner: &'static str,
    trace: Trace,
}

impl SimStore {
    pub fn new(trace: Trace) -> SimStore {
        SimStore { rows: Arc::default(), down: Arc::default(), embedded: false, owner: "", trace }
    }

    /// The same store, presented to a node as its own embedded file.
    pub fn embedded(mut self, embedded: bool) -> SimStore {
        self.embedded = embedded;
        self
    }

    /// A new store, `node`'s own file in a cluster.
    pub fn own_file(node: &'static str, trace: Trace) -> SimStore {
        SimStore { embedded: true, owner: node, ..SimStore::new(trace) }
    }

    /// Whose file it is (empty for a shared store).
    pub fn owner(&self) -> &'static str {
        self.owner
    }

    /// The stretches of the log the file records as lacking (`log_missing`).
    pub fn missing(&self) -> Vec<(LogPosition, LogPosition)> {
        self.rows.lock().unwrap().missing.iter().copied().collect()
    }

    /// Empties the file, as an operator emptying a stopped node's `DATA_DIR` does.
    pub fn wipe(&self) {
        self.note(format_args!("wiped"));
        *self.rows.lock().unwrap() = Rows::default();
    }

    fn note(&self, what: std::fmt::Arguments<'_>) {
        match self.owner {
            "" => self.trace.line(format!("store {what}")),
            owner => self.trace.line(format!("store of {owner} {what}")),
        }
    }

    /// While down, every call fails as an unreachable database does.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every stored event, by id.
    pub fn events(&self) -> BTreeMap<Uuid, Arc<ReaderEvent>> {
        self.rows.lock().unwrap().events.clone()
    }

    /// Rewrites the assignments table, as the Alice Suite (not a node) would.
    pub fn set_assignments(&self, table: AssignmentTable) {
        self.trace.line(format!("assignments set to {table:?}"));
        self.rows.lock().unwrap().assignments = table;
    }

    /// How often each id was written (retries write again; the store keeps one row).
    pub fn writes(&self) -> BTreeMap<Uuid, u32> {
        self.rows.lock().unwrap().writes.clone()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the simulated database is down".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventStore for SimStore {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn is_embedded(&self) -> bool {
        self.embedded
    }

    async fn insert(&self, events: &[Arc<ReaderEvent>]) -> Result<(), StoreError> {
        self.check()?;
        let mut rows = self.rows.lock().unwrap();
        for e in events {
            *rows.writes.entry(e.id).or_default() += 1;
            // As the real stores' upsert: the first row of an id stays, at the earliest position
            // any copy of it was given.
            match rows.events.entry(e.id) {
                Entry::Vacant(row) => {
                    row.insert(e.clone());
                    rows.by_position.insert(e.position, e.id);
                    self.note(format_args!("{} {} at {}", e.id, e.event_type, e.position));
                }
                Entry::Occupied(mut row) if e.position < row.get().position => {
                    let earlier = Arc::new(ReaderEvent { position: e.position, ..(**row.get()).clone() });
                    let later = std::mem::replace(row.get_mut(), earlier).position;
                    rows.by_position.remove(&later);
                    rows.by_position.insert(e.position, e.id);
                    self.note(format_args!("{} moved from {later} to {}", e.id, e.position));
                }
                Entry::Occupied(_) => {}
            }
        }
        Ok(())
    }

    async fn recent(&self, query: &HistoryQuery) -> Result<Page, StoreError> {
        self.check()?;
        let rows = self.rows.lock().unwrap();
        let wanted = |e: &&Arc<ReaderEvent>| {
            query.user_id.as_deref().is_none_or(|u| &*e.user_id == u)
                && query.readers.as_ref().is_none_or(|rs| rs.iter().any(|r| **r == *e.user_id))
                && (query.event_types.is_empty() || query.event_types.contains(&e.event_type))
        };
        // Newest first; with `since`, the oldest after it in the log first.
        let in_order = rows.by_position.values().map(|id| &rows.events[id]);
        let events: Vec<_> = match query.since {
            Some(since) => {
                let after = rows
                    .events
                    .get(&since)
                    .map_or_else(|| alice_core::history::position_by_time(since), |e| e.position);
                in_order
                    .filter(|e| e.position > after)
                    .filter(wanted)
                    .take(query.limit + 1)
                    .cloned()
                    .collect()
            }
            None => in_order.rev().filter(wanted).take(query.limit + 1).cloned().collect(),
        };
        let more = events.len() > query.limit;
        Ok((events.into_iter().take(query.limit).collect(), more))
    }

    /// As the embedded store: a keyed entry whose key an event younger than the window holds
    /// is a repeat and not stored.
    async fn append(
        &self,
        entries: &[Arc<LogEntry>],
        window_ms: u64,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        self.check()?;
        let mut repeats = Vec::new();
        let mut fresh = Vec::new();
        {
            let mut rows = self.rows.lock().unwrap();
            for entry in entries {
                let e = &entry.event;
                if let Some(key) = &entry.key {
                    let name = (e.user_id.to_string(), key.to_string());
                    match rows.keys.get(&name) {
                        Some((first, at)) if *first != e.id && *at + window_ms >= e.timestamp.0 => {
                            repeats.push((e.id, *first));
                            continue;
                        }
                        _ => {
                            rows.keys.insert(name, (e.id, e.timestamp.0));
                        }
                    }
                }
                fresh.push(e.clone());
            }
        }
        self.insert(&fresh).await?;
        Ok(repeats)
    }

    async fn replay(
        &self,
        from: ReplayFrom,
        filter: &ReplayFilter,
        limit: usize,
    ) -> Result<Option<alice_shell::store::Replay>, StoreError> {
        self.check()?;
        let rows = self.rows.lock().unwrap();
        let after = match from {
            ReplayFrom::Position(after) => after,
            ReplayFrom::Event(id) => match rows.events.get(&id) {
                Some(e) => e.position,
                None => return Ok(None),
            },
        };
        let events = rows
            .by_position
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(_, id)| &rows.events[id])
            .filter(|e| filter.lets_through(e))
            .take(limit)
            .cloned()
            .collect();
        Ok(Some((after, events)))
    }

    async fn newest(&self, n: usize) -> Result<Page, StoreError> {
        self.check()?;
        let rows = self.rows.lock().unwrap();
        let events: Vec<_> =
            rows.by_position.values().rev().take(n).map(|id| rows.events[id].clone()).collect();
        Ok((events, rows.events.len() > n))
    }

    async fn assignments(&self, consultant: Option<&str>) -> Result<AssignmentTable, StoreError> {
        self.check()?;
        let rows = self.rows.lock().unwrap();
        Ok(match consultant {
            Some(c) => rows.assignments.get(c).map(|r| (c.to_owned(), r.clone())).into_iter().collect(),
            None => rows.assignments.clone(),
        })
    }

    async fn assign(&self, consultant: &str, readers: &BTreeSet<String>) -> Result<(), StoreError> {
        self.check()?;
        self.trace.line(format!("assign {consultant} {readers:?}"));
        let mut rows = self.rows.lock().unwrap();
        if readers.is_empty() {
            rows.assignments.remove(consultant);
        } else {
            rows.assignments.insert(consultant.to_owned(), readers.clone());
        }
        Ok(())
    }

    async fn dashboard(&self, _since: Millis) -> Result<Vec<DashboardRow>, StoreError> {
        self.check()?;
        Ok(Vec::new())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }

    /// As the embedded store: where the file stands in the cluster's log (only a cluster node's
    /// own file is ever asked).
    async fn membership(&self) -> Result<Option<Membership>, StoreError> {
        self.check()?;
        if !self.embedded {
            return Ok(None);
        }
        let rows = self.rows.lock().unwrap();
        let end = rows.by_position.keys().next_back().copied().unwrap_or(LogPosition::START);
        Ok(Some(Membership {
            group: rows.group.clone(),
            end,
            missing: rows.missing.iter().copied().collect(),
        }))
    }

    async fn join_log(
        &self,
        group: &str,
        missing: Option<(LogPosition, LogPosition)>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.note(format_args!("joins the log as {group}, lacking {missing:?}"));
        let mut rows = self.rows.lock().unwrap();
        rows.group = Some(group.to_owned());
        rows.missing.extend(missing);
        Ok(())
    }

    async fn filled(
        &self,
        stretch: (LogPosition, LogPosition),
        to: Option<LogPosition>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.note(format_args!("filled {stretch:?} up to {to:?}"));
        let mut rows = self.rows.lock().unwrap();
        if rows.missing.remove(&stretch) {
            rows.missing.extend(to.map(|to| (to, stretch.1)));
        }
        Ok(())
    }
}
