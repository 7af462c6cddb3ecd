//! Log positions: `since` cursors follow the log's order exactly, whatever the clocks that made
//! the ids said, and a single node places new events after everything its store already holds.

mod common;

use std::sync::Arc;

use alice_core::{Config, Deployment, Input, LogPosition, Millis, ReaderEvent};
use common::*;
use serde_json::{json, Value};

fn recent(node: &mut Node, conn: alice_core::ConnId, q: Value) -> Vec<String> {
    let out = node.send(conn, "get-recent-events", q);
    let page = received(&out, conn, "recent-events").remove(0);
    page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_since_cursor_follows_the_logs_order_not_the_clocks_that_made_the_ids() {
    let mut fast = cluster_by_hand("node-fast", 1);
    let mut slow = cluster_by_hand("node-slow", 2);
    fast.now = Millis(START.0 + 60_000);
    let rf = fast.connect("rf", "reader");
    let rs = slow.connect("rs", "reader");
    let (_, ahead) = appends(&fast.send(rf, "reader-event", json!({"eventType": "A"}))).remove(0);
    let (_, behind) = appends(&slow.send(rs, "reader-event", json!({"eventType": "B"}))).remove(0);
    let (first, second) = (&ahead[0].event, &behind[0].event);
    assert!(second.id < first.id, "the slow clock made the smaller id");

    // The log holds the fast node's event first; a third node reads both.
    let mut node = cluster_by_hand("node-c", 3);
    let c = node.connect("c1", "consultant");
    node.log(ahead[0].to_message());
    node.log(behind[0].to_message());
    assert_eq!(
        recent(&mut node, c, json!({})),
        [second.id.to_string(), first.id.to_string()],
        "newest first"
    );
    assert_eq!(
        recent(&mut node, c, json!({ "since": first.id.to_string() })),
        [second.id.to_string()],
        "after the first entry in the log comes the second, whatever its id"
    );
    assert!(recent(&mut node, c, json!({ "since": second.id.to_string() })).is_empty());
}

#[test]
fn entries_read_from_the_log_carry_their_stream_ids_as_positions() {
    let mut node = cluster_by_hand("node-a", 1);
    let r = node.connect("r1", "reader");
    let (_, entries) = appends(&node.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
    assert_eq!(entries[0].event.position, LogPosition::START, "not placed until the log takes it");
    let read = Input::Read {
        stream: alice_core::Stream::Log,
        position: Some("1767225600123-4".into()),
        entries: vec![("1767225600123-4".into(), entries[0].to_message().encode())],
        at_end: true,
    };
    node.input(read);
    let c = node.connect("c1", "consultant");
    let shown = recent(&mut node, c, json!({}));
    assert_eq!(shown, [entries[0].event.id.to_string()]);
}

fn stored(id: u128, position: LogPosition) -> Arc<ReaderEvent> {
    Arc::new(ReaderEvent {
        id: uuid::Uuid::from_u128(id),
        user_id: Arc::from("r0"),
        event_type: "A".into(),
        data: alice_core::replies::Json::from_text("{}".into()).unwrap(),
        reading: Default::default(),
        timestamp: Millis(position.ms),
        session_id: "s".into(),
        position,
        sent_from: Default::default(),
    })
}

#[test]
fn a_single_node_places_new_events_after_everything_its_store_holds_even_when_its_clock_is_behind() {
    let mut node = Node::new();
    let ahead = LogPosition { ms: START.0 + 3_600_000, seq: 5 };
    node.input(Input::HistoryLoaded { events: vec![stored(1, ahead)], complete: true });
    let r = node.connect("r1", "reader");
    let mut placed = Vec::new();
    for _ in 0..3 {
        node.advance(1);
        for (_, entries) in appends(&node.send(r, "reader-event", json!({"eventType": "A"}))) {
            placed.extend(entries.iter().map(|e| e.event.position));
        }
    }
    assert_eq!(placed.len(), 3);
    assert!(placed[0] > ahead, "{} after {ahead}", placed[0]);
    assert!(placed.windows(2).all(|w| w[0] < w[1]), "{placed:?}");
}

#[test]
fn a_single_node_places_new_events_after_its_logs_end_even_without_history() {
    let mut node = Node::new();
    let end = LogPosition { ms: START.0 + 60_000, seq: 9 };
    node.input(Input::LogEnd(end));
    let r = node.connect("r1", "reader");
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    let (_, entries) = appends(&out).remove(0);
    assert_eq!(entries[0].event.position, LogPosition { ms: end.ms, seq: 10 });
}

#[test]
fn an_event_loaded_twice_keeps_its_place() {
    // With a local outbox, an event the store has and the outbox did not forget is loaded twice.
    let mut node = Node::new();
    let (a, b) = (stored(1, LogPosition { ms: 10, seq: 0 }), stored(2, LogPosition { ms: 11, seq: 0 }));
    node.input(Input::HistoryLoaded { events: vec![a.clone(), b.clone(), b.clone()], complete: true });
    let c = node.connect("c1", "consultant");
    assert_eq!(recent(&mut node, c, json!({ "since": a.id.to_string() })), [b.id.to_string()]);
    assert!(recent(&mut node, c, json!({ "since": b.id.to_string() })).is_empty(), "not again after itself");
}

#[test]
fn a_single_node_places_events_in_the_order_it_accepts_them_at_its_own_time() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let c = node.connect("c1", "consultant");
    let mut sent = Vec::new();
    for step in [0, 0, 5, 0] {
        node.advance(step);
        let out = node.send(r, "reader-event", json!({"eventType": "A"}));
        sent.push(received(&out, r, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned());
    }
    assert_eq!(recent(&mut node, c, json!({ "since": sent[1] })), sent[2..].to_vec());
}

#[test]
fn a_cluster_node_reads_on_from_its_stores_newest_event_and_shows_a_stored_event_once() {
    let config = Config { deployment: Deployment::Cluster, ..Config::default() };
    let mut core = alice_core::Core::new(config.clone(), "node-c", 3);
    // Another node appended an event twice (a retry after the first copy landed); this node's
    // store holds the first copy, and its reading of the log starts between the two.
    let mut other = cluster_by_hand("node-b", 2);
    let r = other.connect("r1", "reader");
    let (_, entries) = appends(&other.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
    let first = LogPosition { ms: START.0, seq: 4 };
    let mut loaded = entries[0].event.as_ref().clone();
    loaded.position = first;
    // The history is the first input, as in the shell.
    core.handle(START, Input::HistoryLoaded { events: vec![Arc::new(loaded.clone())], complete: true });
    let from: Vec<_> = std::iter::from_fn(|| core.poll_output())
        .filter_map(|o| match o {
            alice_core::Output::Read { stream: alice_core::Stream::Log, from, .. } => Some(from.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(from, [alice_core::ReadFrom::Opening { stored: Some(first.to_string()) }]);

    let mut node = Node::named("node-c", config, 3);
    node.auto_append = false;
    node.input(Input::HistoryLoaded { events: vec![Arc::new(loaded)], complete: true });
    node.input(log_opened());
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let out = node.input(Input::Log(LogPosition { ms: START.0 + 5, seq: 0 }, entries[0].to_message()));
    assert!(received(&out, c, "reader-activity").is_empty(), "the second copy is not shown again");
    assert_eq!(node.core.stats().log_duplicates, 1);
    assert_eq!(recent(&mut node, c, json!({})), [entries[0].event.id.to_string()]);
}
