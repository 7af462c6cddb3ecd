//! The assignments contract every store keeps: a consultant's set replaced whole, read back, and
//! history and replays narrowed to a scoped consultant's readers.

use std::collections::BTreeSet;

use alice_core::{HistoryQuery, LogPosition, ReplayFilter, ReplayFrom, ReplayRule};
use alice_shell::store::EventStore;

fn set(readers: &[&str]) -> BTreeSet<String> {
    readers.iter().map(|r| r.to_string()).collect()
}

/// `c1` and `c2` in turn: replaced, emptied, re-added; each read as the table holds it.
pub async fn replaces_a_consultants_set(store: &dyn EventStore, r: [&str; 3]) {
    store.assign("c1", &set(&[r[0], r[1]])).await.unwrap();
    store.assign("c2", &set(&[r[1]])).await.unwrap();
    store.assign("c1", &set(&[r[1], r[2]])).await.unwrap();
    let all = store.assignments(None).await.unwrap();
    assert_eq!(all.get("c1"), Some(&set(&[r[1], r[2]])));
    assert_eq!(all.get("c2"), Some(&set(&[r[1]])));
    assert_eq!(store.assignments(Some("c2")).await.unwrap().len(), 1);
    assert!(store.assignments(Some("c9")).await.unwrap().is_empty());
    store.assign("c1", &set(&[])).await.unwrap();
    assert!(!store.assignments(None).await.unwrap().contains_key("c1"), "an empty set ends them all");
    // An ended assignment is active again, and a repeated replacement changes nothing.
    store.assign("c1", &set(&[r[0]])).await.unwrap();
    store.assign("c1", &set(&[r[0]])).await.unwrap();
    assert_eq!(store.assignments(Some("c1")).await.unwrap().get("c1"), Some(&set(&[r[0]])));
}

/// Recent events and replays for a scoped consultant hold only its readers' events, and none for
/// a consultant with no reader.
pub async fn narrows_history_and_replays_to_readers(store: &dyn EventStore, r: [&str; 3]) {
    let events: Vec<_> = (0..6u64)
        .map(|n| {
            super::positions::placed(
                1_767_225_600_000 + n,
                LogPosition { ms: 1_767_225_600_000 + n, seq: 0 },
                r[(n % 3) as usize],
            )
        })
        .collect();
    store.insert(&events).await.unwrap();
    let query = |readers: Vec<String>| HistoryQuery {
        limit: 50,
        user_id: None,
        since: None,
        event_types: Vec::new(),
        readers: Some(readers),
    };
    let users = |found: &[std::sync::Arc<alice_core::ReaderEvent>]| -> BTreeSet<String> {
        found.iter().map(|e| e.user_id.to_string()).collect()
    };
    let (found, _) = store.recent(&query(vec![r[0].into(), r[2].into()])).await.unwrap();
    assert_eq!((found.len(), users(&found)), (4, set(&[r[0], r[2]])));
    let (found, _) = store.recent(&query(Vec::new())).await.unwrap();
    assert!(found.is_empty(), "no reader, no event");
    let filter = ReplayFilter {
        readers: Some(vec![r[1].into()]),
        ..ReplayFilter::unscoped(ReplayRule::Subscription(Vec::new()))
    };
    let (_, found) = store.replay(ReplayFrom::Event(events[0].id), &filter, 50).await.unwrap().unwrap();
    assert_eq!((found.len(), users(&found)), (2, set(&[r[1]])));
    let filter =
        ReplayFilter { readers: Some(vec![r[1].into()]), ..ReplayFilter::unscoped(ReplayRule::Support) };
    let (_, found) = store.replay(ReplayFrom::Event(events[0].id), &filter, 50).await.unwrap().unwrap();
    assert!(found.is_empty(), "no support event among them");
}
