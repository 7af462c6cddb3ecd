//! The paging contract every store keeps: the log's order, by position, not the ids' order.

use std::sync::Arc;

use alice_core::{HistoryQuery, LogPosition, Millis, ReaderEvent, ReplayFilter, ReplayFrom, ReplayRule};
use alice_shell::store::EventStore;
use uuid::Uuid;

/// An event whose id was made at `id_ms` by some node's clock and that the log placed at `at`.
pub fn placed(id_ms: u64, at: LogPosition, user: &str) -> Arc<ReaderEvent> {
    let data = alice_core::replies::Json::from_text(r#"{"page":1}"#.into()).unwrap();
    Arc::new(ReaderEvent {
        id: Uuid::from_u128(u128::from(id_ms) << 80 | 0x7000_8000_0000_0000_0000 | u128::from(at.seq)),
        user_id: Arc::from(user),
        event_type: "PAGE_TURN".into(),
        reading: alice_core::ReadingPosition::of_json(&data),
        data,
        timestamp: Millis(id_ms),
        session_id: "s".into(),
        position: at,
        sent_from: Default::default(),
    })
}

fn query(since: Option<Uuid>, user: Option<&str>) -> HistoryQuery {
    HistoryQuery {
        limit: 10,
        user_id: user.map(str::to_owned),
        since,
        event_types: Vec::new(),
        readers: None,
    }
}

fn ids(events: &[Arc<ReaderEvent>]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// The reader of [`pages_in_the_logs_order`] (a uuid, as the original schema's users are).
pub const USER: &str = "6f1c2f2e-8a4b-4b7e-9d3a-0c1e2d3f4a5b";

/// Three events whose ids run against the log's order: `newest` and `recent` follow the log.
pub async fn pages_in_the_logs_order(store: &dyn EventStore) {
    let base = 1_767_225_600_000;
    let user = USER;
    // Made by clocks that disagree: the event the log holds first has the largest id.
    let first = placed(base + 5_000, LogPosition { ms: base + 10, seq: 0 }, user);
    let second = placed(base + 1_000, LogPosition { ms: base + 10, seq: 1 }, user);
    let third = placed(base + 3_000, LogPosition { ms: base + 11, seq: 0 }, user);
    store.insert(&[second.clone(), third.clone(), first.clone()]).await.unwrap();

    let (newest, more) = store.newest(10).await.unwrap();
    assert_eq!(
        (ids(&newest), more),
        (vec![third.id, second.id, first.id], false),
        "newest first, by position"
    );
    assert_eq!(newest[1].position, second.position, "positions read back");
    let (page, _) = store.recent(&query(None, Some(user))).await.unwrap();
    assert_eq!(ids(&page), [third.id, second.id, first.id]);
    let (after_first, _) = store.recent(&query(Some(first.id), None)).await.unwrap();
    assert_eq!(ids(&after_first), [second.id, third.id], "after the first in the log, whatever the ids say");
    let (after_second, _) = store.recent(&query(Some(second.id), Some(user))).await.unwrap();
    assert_eq!(ids(&after_second), [third.id]);
    // An id the store never held still works as a cursor in time.
    let unknown = placed(base + 9, LogPosition::START, user).id;
    let (by_time, _) = store.recent(&query(Some(unknown), None)).await.unwrap();
    assert_eq!(ids(&by_time), [first.id, second.id, third.id]);
}

/// An append retried after part of it landed puts an event in the log twice, and readers show the
/// first copy: whichever copy the store gets first, it keeps the earliest position.
pub async fn keeps_the_earliest_position_of_an_event(store: &dyn EventStore) {
    let base = 1_767_225_600_000;
    let at = |ms: u64| LogPosition { ms: base + ms, seq: 0 };
    let second_copy = placed(base, at(50), USER);
    let first_copy = Arc::new(ReaderEvent { position: at(10), ..(*second_copy).clone() });
    let between = placed(base + 1, at(20), USER);
    store.insert(&[second_copy.clone(), between.clone()]).await.unwrap();
    // Both copies in one batch too, as one read of the log can carry them.
    store.insert(&[second_copy.clone(), first_copy.clone(), second_copy.clone()]).await.unwrap();
    store.insert(std::slice::from_ref(&second_copy)).await.unwrap();
    let (newest, _) = store.newest(10).await.unwrap();
    let placed: Vec<_> = newest.iter().map(|e| (e.id, e.position)).collect();
    assert_eq!(placed, [(between.id, at(20)), (first_copy.id, at(10))]);
    let (after, _) = store.recent(&query(Some(first_copy.id), None)).await.unwrap();
    assert_eq!(ids(&after), [between.id]);
}

/// A replay's store query: after an event (`since`) or a position (a recovery's offset) in the
/// log's order, by type or support type, within the limit; `None` for an id the store does not
/// hold.
pub async fn replays_after_an_event(store: &dyn EventStore) {
    let base = 1_767_225_700_000;
    let typed = |ty: &str, seq: u64| {
        let mut e = (*placed(base + seq, LogPosition { ms: base, seq }, USER)).clone();
        e.event_type = ty.into();
        Arc::new(e)
    };
    let events =
        [typed("A", 0), typed("B", 1), typed("X_HELP_REQUEST", 2), typed("A", 3), typed("x_feedback", 4)];
    store.insert(&events).await.unwrap();
    let from = ReplayFrom::Event(events[0].id);
    let only = |types: &[&str]| {
        ReplayFilter::unscoped(ReplayRule::Subscription(types.iter().map(|t| t.to_string()).collect()))
    };
    let (at, found) = store.replay(from, &only(&["A"]), 10).await.unwrap().expect("held");
    assert_eq!(at, events[0].position);
    assert_eq!(ids(&found), [events[2].id, events[3].id], "its types and support types, case-sensitively");
    let (_, all) = store.replay(from, &only(&[]), 10).await.unwrap().unwrap();
    assert_eq!(ids(&all), ids(&events[1..]));
    let (_, two) = store.replay(from, &only(&[]), 2).await.unwrap().unwrap();
    assert_eq!(ids(&two), ids(&events[1..3]));
    let (_, support) =
        store.replay(from, &ReplayFilter::unscoped(ReplayRule::Support), 10).await.unwrap().unwrap();
    assert_eq!(ids(&support), [events[2].id], "support types only");
    let (at, after_one) = store
        .replay(ReplayFrom::Position(events[1].position), &only(&[]), 10)
        .await
        .unwrap()
        .expect("a position");
    assert_eq!((at, ids(&after_one)), (events[1].position, ids(&events[2..])));
    let never = ReplayFrom::Event(Uuid::from_u128(99));
    assert!(store.replay(never, &only(&[]), 10).await.unwrap().is_none(), "never issued");
}

/// A second reader, for [`replays_by_sender`].
pub const OTHER_USER: &str = "7a1c2f2e-8a4b-4b7e-9d3a-0c1e2d3f4a5b";

/// A recovery's replay by sender: a reader's own events sent on its other sockets (any socket but
/// its own, and not one unknown), and a consultant's events sent on a socket in one of its rooms,
/// with or without a subscription; what the store reads back keeps its sender.
pub async fn replays_by_sender(store: &dyn EventStore) {
    let base = 1_767_225_900_000;
    let sent = |seq: u64, user: &str, pid: &str, rooms: &[&str]| {
        let mut e = (*placed(base + seq, LogPosition { ms: base, seq }, user)).clone();
        e.sent_from =
            alice_core::SentFrom { socket: pid.into(), rooms: rooms.iter().map(|r| r.to_string()).collect() };
        Arc::new(e)
    };
    let events = [
        sent(0, USER, "tab-1", &[]),
        sent(1, USER, "tab-2", &["class-1"]),
        sent(2, USER, "tab-1", &["class-2", "class-3"]),
        sent(3, OTHER_USER, "tab-9", &["class-3"]),
        sent(4, USER, "", &[]),
    ];
    store.insert(&events).await.unwrap();
    let from = ReplayFrom::Position(events[0].position);

    let rooms = |rule: ReplayRule, rooms: &[&str]| ReplayFilter {
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        ..ReplayFilter::unscoped(rule)
    };
    let other_tabs = ReplayFilter {
        readers: Some(vec![USER.into()]),
        ..ReplayFilter::unscoped(ReplayRule::OtherSockets { socket: "tab-1".into() })
    };
    let (_, found) = store.replay(from, &other_tabs, 10).await.unwrap().unwrap();
    assert_eq!(ids(&found), [events[1].id], "the reader's other sockets: not tab-1, not unknown");
    let (_, all) =
        store.replay(from, &ReplayFilter::unscoped(ReplayRule::Support), 10).await.unwrap().unwrap();
    assert!(all.is_empty());
    let everything = rooms(ReplayRule::Subscription(Vec::new()), &["class-1"]);
    let (_, all) = store.replay(from, &everything, 10).await.unwrap().unwrap();
    assert_eq!(ids(&all), ids(&events[1..]), "every type: the rooms add nothing");
    let senders: Vec<_> = all.iter().map(|e| e.sent_from.clone()).collect();
    let expected: Vec<_> = events[1..].iter().map(|e| e.sent_from.clone()).collect();
    assert_eq!(senders, expected, "every sender is read back, its rooms in order");

    let (_, found) =
        store.replay(from, &rooms(ReplayRule::Support, &["class-3"]), 10).await.unwrap().unwrap();
    assert_eq!(ids(&found), [events[2].id, events[3].id], "through a room it shares with the sender");
    let typed = rooms(ReplayRule::Subscription(vec!["NONE".into()]), &["class-1", "class-2"]);
    let (_, found) = store.replay(from, &typed, 10).await.unwrap().unwrap();
    assert_eq!(ids(&found), [events[1].id, events[2].id], "its subscription matches none of them");
    let scoped =
        ReplayFilter { readers: Some(vec![USER.into()]), ..rooms(ReplayRule::Support, &["class-3"]) };
    let (_, found) = store.replay(from, &scoped, 10).await.unwrap().unwrap();
    assert_eq!(ids(&found), [events[2].id], "within the consultant's scope");
}
