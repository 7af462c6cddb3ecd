//! Durable before visible: an event is acknowledged, delivered, kept in history and counted only
//! once the log holds it; appends go one at a time and carry whatever arrived meanwhile; a failed
//! append is retried, never dropped; in a cluster every node shows events in the log's one order.

mod common;

use alice_core::{Config, Deployment, Input, Output};
use common::*;
use serde_json::{json, Value};

fn manual(deployment: Deployment) -> Node {
    let mut node = Node::with_config(Config { deployment, ..Config::default() });
    node.auto_append = false;
    node
}

/// Ids of the `reader-activity` events `conn` received, in order.
fn activity_ids(out: &[Output], conn: alice_core::ConnId) -> Vec<String> {
    received(out, conn, "reader-activity").iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

fn recent_count(node: &mut Node, conn: alice_core::ConnId) -> usize {
    let out = node.send(conn, "get-recent-events", json!({}));
    received(&out, conn, "recent-events")[0]["events"].as_array().unwrap().len()
}

#[test]
fn nothing_is_acknowledged_shown_or_counted_before_the_log_holds_it() {
    let mut node = manual(Deployment::SingleStore);
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let r = node.connect("r1", "reader");
    let tab = node.connect("r1", "reader");
    let (out, _) = send_ack_deferred(&mut node, r, json!({"eventType": "PAGE_TURN", "data": {"page": 3}}));
    let (append, entries) = appends(&out).remove(0);
    assert_eq!(entries.len(), 1);
    assert!(received(&out, r, "reader-event-received").is_empty(), "no receipt yet");
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })), "no ack yet");
    assert!(received(&out, c, "reader-activity").is_empty(), "not delivered yet");
    assert!(received(&out, tab, "reader-activity").is_empty(), "not to the other tab either");
    assert_eq!(recent_count(&mut node, c), 0, "not in history yet");
    assert_eq!(node.core.stats().events_accepted, 0, "not counted yet");
    assert_eq!(node.core.stats().queue_size, 1, "but waiting");

    let out = node.input(Input::Appended { append, repeats: Vec::new() });
    let id = entries[0].event.id.to_string();
    assert_eq!(received(&out, r, "reader-event-received")[0]["eventId"], json!(id));
    let acks: Vec<Value> = out
        .iter()
        .filter_map(|o| match o {
            Output::Ack { payload, .. } => Some(payload.value()),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        vec![json!({"ok": true, "message": "Event received and queued", "eventId": id, "duplicate": false})]
    );
    assert_eq!(activity_ids(&out, c), vec![id.clone()]);
    assert_eq!(activity_ids(&out, tab), vec![id]);
    assert!(activity_ids(&out, r).is_empty(), "never to the sending socket");
    assert_eq!(recent_count(&mut node, c), 1);
    let s = node.core.stats();
    assert_eq!((s.events_accepted, s.queue_size), (1, 0));
    assert!(!out.iter().any(|o| matches!(o, Output::StoreBatch { .. })), "the store is the log here");
}

/// Sends a reader event with an ack callback, without expecting the ack now.
fn send_ack_deferred(
    node: &mut Node,
    conn: alice_core::ConnId,
    payload: Value,
) -> (Vec<Output>, alice_core::AckId) {
    let ack = alice_core::AckId(1_000 + conn.0);
    let out = node.input(Input::ClientEvent {
        conn,
        name: "reader-event".into(),
        args: vec![payload],
        has_binary: false,
        ack: Some(ack),
    });
    (out, ack)
}

#[test]
fn one_append_in_flight_and_the_next_carries_everything_that_arrived_meanwhile() {
    let mut node = manual(Deployment::SingleStore);
    let r = node.connect("r1", "reader");
    let first = appends(&node.send(r, "reader-event", json!({"eventType": "A"})));
    assert_eq!(first.len(), 1, "the first goes at once: no linger");
    for ty in ["B", "C", "D"] {
        assert!(appends(&node.send(r, "reader-event", json!({"eventType": ty}))).is_empty());
    }
    let out = node.input(Input::Appended { append: first[0].0, repeats: Vec::new() });
    let next = appends(&out);
    let types: Vec<_> = next[0].1.iter().map(|e| e.event.event_type.clone()).collect();
    assert_eq!(types, ["B", "C", "D"], "one group commit, in order");
    assert_eq!(received(&out, r, "reader-event-received").len(), 1, "only A is acknowledged");
}

/// A client event as the shell hands it to the core, without an ack callback.
fn event(conn: alice_core::ConnId, name: &str, payload: Value) -> Input {
    Input::ClientEvent { conn, name: name.into(), args: vec![payload], has_binary: false, ack: None }
}

#[test]
fn events_that_arrive_together_go_to_the_log_as_one_append() {
    let mut node = manual(Deployment::SingleStore);
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let (r1, r2) = (node.connect("r1", "reader"), node.connect("r2", "reader"));
    let out = node.input(Input::Burst(vec![
        event(r1, "reader-event", json!({"eventType": "A"})),
        event(r2, "reader-event", json!({"eventType": "bad type"})),
        event(c, "get-online-readers", json!(null)),
        event(r2, "reader-event", json!({"eventType": "B"})),
        event(r1, "reader-event", json!({"eventType": "C"})),
    ]));
    let asked = appends(&out);
    assert_eq!(asked.len(), 1, "one append for the burst: {out:?}");
    let types: Vec<_> = asked[0].1.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["A", "B", "C"], "in the order they arrived, the refused one left out");
    assert_eq!(error_of(&out, r2)["code"], "INVALID_PAYLOAD", "refusals go at once");
    assert_eq!(received(&out, c, "online-readers").len(), 1, "and so do other answers");
    assert!(received(&out, c, "reader-activity").is_empty(), "nothing shown before the log holds it");

    let out = node.input(Input::Appended { append: asked[0].0, repeats: Vec::new() });
    let shown: Vec<_> = received(&out, c, "reader-activity")
        .iter()
        .map(|a| a["eventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, ["A", "B", "C"]);
    assert_eq!(received(&out, r1, "reader-event-received").len(), 2);
    assert_eq!(received(&out, r2, "reader-event-received").len(), 1);

    // One by one, the first goes alone and the others wait for it.
    let (d, _) = appends(&node.send(r1, "reader-event", json!({"eventType": "D"}))).remove(0);
    assert!(appends(&node.send(r2, "reader-event", json!({"eventType": "E"}))).is_empty());
    // A burst while an append is out waits for it too, and joins what waits.
    let out = node.input(Input::Burst(vec![event(r2, "reader-event", json!({"eventType": "F"}))]));
    assert!(appends(&out).is_empty(), "one append out at a time");
    let out = node.input(Input::Appended { append: d, repeats: Vec::new() });
    let (next, entries) = appends(&out).remove(0);
    let types: Vec<_> = entries.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["E", "F"]);
    node.input(Input::Appended { append: next, repeats: Vec::new() });
    // With none out, a burst of nothing the log takes asks for nothing.
    let out = node.input(Input::Burst(vec![
        event(r2, "reader-event", json!({})),
        event(c, "get-online-readers", json!(null)),
    ]));
    assert!(appends(&out).is_empty());
    assert_eq!(error_of(&out, r2)["code"], "INVALID_PAYLOAD");
}

#[test]
fn a_failed_append_is_retried_whole_after_a_backoff_and_nothing_is_shown_meanwhile() {
    let mut node = manual(Deployment::SingleStore);
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let r = node.connect("r1", "reader");
    let (a1, entries) = appends(&node.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
    node.send(r, "reader-event", json!({"eventType": "B"}));
    let out = node.input(Input::AppendFailed { append: a1 });
    assert!(appends(&out).is_empty(), "not at once");
    assert!(received(&out, c, "reader-activity").is_empty());
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((25..=50).contains(&due), "first retry within [base/2, base]: {due}");
    let (a2, again) = appends(&node.advance(due)).remove(0);
    let types: Vec<_> = again.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["A", "B"], "the failed entries first, then what came after");
    assert_eq!(again[0].event.id, entries[0].event.id, "the same event, not a new one");
    node.input(Input::AppendFailed { append: a2 });
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((50..=100).contains(&due), "the backoff doubles: {due}");
    let (a3, _) = appends(&node.advance(due)).remove(0);
    assert!(
        node.input(Input::Appended { append: alice_core::AppendId(999), repeats: Vec::new() }).is_empty(),
        "stale"
    );
    let out = node.input(Input::Appended { append: a3, repeats: Vec::new() });
    assert_eq!(received(&out, c, "reader-activity").len(), 2);
    assert_eq!(node.core.stats().queue_size, 0);
}

#[test]
fn the_queue_counts_events_waiting_for_the_log() {
    let mut node = Node::with_config(Config { event_queue_capacity: 2, ..Config::default() });
    node.auto_append = false;
    let r = node.connect("r1", "reader");
    let (a1, _) = appends(&node.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
    node.send(r, "reader-event", json!({"eventType": "B"}));
    let out = node.send(r, "reader-event", json!({"eventType": "C"}));
    assert_eq!(error_of(&out, r)["code"], json!("UNAVAILABLE"));
    assert!(node.core.queue_is_full());
    node.input(Input::Appended { append: a1, repeats: Vec::new() });
    assert!(!node.core.queue_is_full());
}

#[test]
fn a_socket_gone_before_its_event_is_durable_gets_nothing_and_the_event_is_still_shown() {
    let mut node = manual(Deployment::SingleStore);
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let r = node.connect("r1", "reader");
    let (out, _) = send_ack_deferred(&mut node, r, json!({"eventType": "A"}));
    let (append, _) = appends(&out).remove(0);
    node.disconnect(r);
    let out = node.input(Input::Appended { append, repeats: Vec::new() });
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })));
    assert!(received(&out, r, "reader-event-received").is_empty());
    assert_eq!(received(&out, c, "reader-activity").len(), 1, "durable, so shown");
}

#[test]
fn with_a_local_outbox_the_store_gets_an_event_once_the_outbox_holds_it() {
    let mut node = manual(Deployment::SingleOutbox);
    let r = node.connect("r1", "reader");
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert!(!out.iter().any(|o| matches!(o, Output::StoreBatch { .. })));
    let (append, entries) = appends(&out).remove(0);
    let out = node.input(Input::Appended { append, repeats: Vec::new() });
    let stored: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::StoreBatch { events, .. } => Some(events.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stored, vec![vec![entries[0].event.clone()]]);
}

#[test]
fn an_outbox_found_at_start_goes_on_to_the_store() {
    let mut node = manual(Deployment::SingleOutbox);
    let r = node.connect("r1", "reader");
    let (append, entries) = appends(&node.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
    let event = entries[0].event.clone();
    let _ = append;
    let mut restarted = manual(Deployment::SingleOutbox);
    let out = restarted.input(Input::Unstored { events: vec![event.clone()], dead: vec![event.clone()] });
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::StoreBatch { events, .. } if events == &vec![event.clone()])));
    assert_eq!(restarted.core.stats().dlq_size, 1, "dead letters stay dead until replayed");
}

fn cluster(name: &str, seed: u64) -> Node {
    let mut node = Node::named(name, Config { deployment: Deployment::Cluster, ..Config::default() }, seed);
    node.auto_append = false;
    node
}

#[test]
fn a_cluster_node_appends_only_once_it_reads_the_log_and_shows_its_own_events_when_read_back() {
    let mut node = cluster("node-a", 1);
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let r = node.connect("r1", "reader");
    let tab = node.connect("r1", "reader");
    assert!(appends(&node.send(r, "reader-event", json!({"eventType": "A"}))).is_empty(), "log not open");
    let (append, entries) = appends(&node.input(log_opened())).remove(0);
    let out = node.input(Input::Appended { append, repeats: Vec::new() });
    assert_eq!(received(&out, r, "reader-event-received").len(), 1, "durable: acknowledged");
    assert!(received(&out, c, "reader-activity").is_empty(), "but shown only when read back");
    let msg = entries[0].to_message();
    let out = node.log(msg.clone());
    assert_eq!(received(&out, c, "reader-activity").len(), 1);
    assert_eq!(received(&out, tab, "reader-activity").len(), 1);
    assert!(received(&out, r, "reader-activity").is_empty(), "never the sending socket");
    let again = node.log(msg);
    assert!(received(&again, c, "reader-activity").is_empty(), "a repeated entry is dropped");
}

#[test]
fn every_node_shows_the_logs_one_order_whatever_it_appended_first() {
    let mut a = cluster("node-a", 1);
    let mut b = cluster("node-b", 2);
    let mut views = Vec::new();
    for node in [&mut a, &mut b] {
        node.input(log_opened());
        let c = node.connect("c1", "consultant");
        node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
        views.push(c);
    }
    let ra = a.connect("ra", "reader");
    let rb = b.connect("rb", "reader");
    // a appends first, and is confirmed first; but b's entry lands in the log before a's.
    let (xa, ea) = appends(&a.send(ra, "reader-event", json!({"eventType": "A"}))).remove(0);
    let (xb, eb) = appends(&b.send(rb, "reader-event", json!({"eventType": "B"}))).remove(0);
    a.input(Input::Appended { append: xa, repeats: Vec::new() });
    b.input(Input::Appended { append: xb, repeats: Vec::new() });
    let log = [eb[0].to_message(), ea[0].to_message()];
    let mut seen = Vec::new();
    for (node, c) in [(&mut a, views[0]), (&mut b, views[1])] {
        let mut order = Vec::new();
        for msg in &log {
            order.extend(activity_ids(&node.log(msg.clone()), c));
        }
        seen.push(order);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], vec![eb[0].event.id.to_string(), ea[0].event.id.to_string()], "the log's order");
}

#[test]
fn an_entry_from_a_previous_run_of_this_node_is_shown_to_all_its_recipients() {
    let mut old = cluster("node-a", 1);
    old.input(log_opened());
    let r = old.connect("r1", "reader");
    let (_, entries) = appends(&old.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
    let mut node = cluster("node-a", 2);
    node.input(log_opened());
    let tab = node.connect("r1", "reader");
    assert_eq!(tab, r, "the same socket number, in a new run");
    let out = node.log(entries[0].to_message());
    assert_eq!(received(&out, tab, "reader-activity").len(), 1, "not mistaken for the sender");
}
