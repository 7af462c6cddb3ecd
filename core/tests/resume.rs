//! Resuming a dashboard with `subscribe-consultant { since }`: exactly what it missed, in the
//! log's order, then live; nothing it was already sent on this connection; all or nothing above
//! the limit; from the store when memory does not reach back, with live events held behind.

mod common;

use std::sync::Arc;

use alice_core::{
    AckId, Config, Input, LogPosition, Output, ReaderEvent, ReplayFilter, ReplayFrom, ReplayRule,
};
use common::*;
use serde_json::{json, Value};

/// Sends a reader event and returns its id.
fn event(node: &mut Node, reader: alice_core::ConnId, ty: &str) -> String {
    let out = node.send(reader, "reader-event", json!({"eventType": ty}));
    received(&out, reader, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned()
}

fn subscribe(node: &mut Node, conn: alice_core::ConnId, body: Value) -> (Vec<Output>, Value) {
    node.send_ack(conn, "subscribe-consultant", vec![body])
}

#[test]
fn a_dashboard_that_resubscribes_with_since_gets_exactly_what_it_missed_then_live() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let old = node.connect("c1", "consultant");
    subscribe(&mut node, old, json!({"consultantId": "c1"}));
    let seen = event(&mut node, r, "A");
    node.disconnect(old);
    let missed = [event(&mut node, r, "A"), event(&mut node, r, "B"), event(&mut node, r, "HELP_REQUEST")];

    let c = node.connect("c1", "consultant");
    let (out, ack) =
        subscribe(&mut node, c, json!({"consultantId": "c1", "eventTypes": ["A"], "since": seen}));
    assert_eq!(
        (ack["ok"].clone(), ack["resumed"].clone(), ack["replayed"].clone()),
        (json!(true), json!(true), json!(2))
    );
    // Type A by the filter, the help request by rule 2; not B.
    assert_eq!(activity_ids(&out, c), [missed[0].clone(), missed[2].clone()]);
    let reply = &received(&out, c, "subscribe-consultant-success")[0];
    assert_eq!((reply["resumed"].clone(), reply["replayed"].clone()), (json!(true), json!(2)));
    let live = event(&mut node, r, "A");
    assert_eq!(
        activity_ids(&node.send(r, "reader-event", json!({"eventType": "B"})), c),
        Vec::<String>::new()
    );
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert_eq!(activity_ids(&out, c).len(), 1, "live, once");
    assert_eq!(node.core.stats().replayed, 2);
    let _ = live;
}

#[test]
fn without_since_the_reply_has_no_resume_fields() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    let (_, ack) = subscribe(&mut node, c, json!({"consultantId": "c1"}));
    assert!(ack.get("resumed").is_none() && ack.get("replayed").is_none(), "{ack}");
}

#[test]
fn what_the_socket_was_sent_before_it_subscribed_is_not_sent_again() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    node.send(r, "join-room", json!("class-1"));
    let seen = event(&mut node, r, "A");
    let c = node.connect("c1", "consultant");
    node.send(c, "join-room", json!("class-1"));
    // Before subscribing it gets the help request (rule 2) and the room's events (rule 4).
    let out = node.send(r, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    let help = activity_ids(&out, c);
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    let in_room = activity_ids(&out, c);
    assert_eq!((help.len(), in_room.len()), (1, 1));
    let unseen = {
        node.send(c, "leave-room", json!("class-1"));
        event(&mut node, r, "A")
    };
    let (out, ack) = subscribe(&mut node, c, json!({"consultantId": "c1", "since": seen}));
    assert_eq!(activity_ids(&out, c), [unseen], "only what it was not sent");
    assert_eq!(ack["replayed"], json!(1));
}

#[test]
fn a_resubscription_with_since_leaves_out_what_the_old_filter_sent() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let c = node.connect("c1", "consultant");
    let start = event(&mut node, r, "A");
    subscribe(&mut node, c, json!({"consultantId": "c1", "eventTypes": ["A"]}));
    let a = event(&mut node, r, "A");
    let b = event(&mut node, r, "B");
    let (out, _) = subscribe(&mut node, c, json!({"consultantId": "c1", "eventTypes": ["B"]}));
    assert!(activity_ids(&out, c).is_empty());
    let b2 = event(&mut node, r, "B");
    let (out, ack) = subscribe(&mut node, c, json!({"consultantId": "c1", "since": start}));
    assert_eq!(activity_ids(&out, c), [b], "A and the second B were sent under the earlier filters");
    assert_eq!(ack["replayed"], json!(1));
    let _ = (a, b2);
}

#[test]
fn more_than_the_limit_replays_nothing() {
    let config = Config { resume_max_events: 3, ..Config::default() };
    let mut node = Node::with_config(config);
    let r = node.connect("r1", "reader");
    let seen = event(&mut node, r, "A");
    for _ in 0..3 {
        event(&mut node, r, "A");
    }
    let c = node.connect("c1", "consultant");
    let (out, ack) = subscribe(&mut node, c, json!({"consultantId": "c1", "since": seen.clone()}));
    assert_eq!(
        (ack["resumed"].clone(), ack["replayed"].clone()),
        (json!(true), json!(3)),
        "exactly the limit"
    );
    assert_eq!(activity_ids(&out, c).len(), 3);

    event(&mut node, r, "A");
    let c2 = node.connect("c1", "consultant");
    let (out, ack) = subscribe(&mut node, c2, json!({"consultantId": "c1", "since": seen}));
    assert_eq!(
        (ack["ok"].clone(), ack["resumed"].clone(), ack["replayed"].clone()),
        (json!(true), json!(false), json!(0))
    );
    assert!(activity_ids(&out, c2).is_empty(), "all or nothing");
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert_eq!(activity_ids(&out, c2).len(), 1, "subscribed all the same");
}

#[test]
fn an_id_never_issued_or_malformed_is_invalid_and_subscribes_nothing() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let c = node.connect("c1", "consultant");
    event(&mut node, r, "A");
    for since in [json!("01900000-0000-7000-8000-000000000001"), json!("not-an-id"), json!(7)] {
        let (out, ack) = subscribe(&mut node, c, json!({"consultantId": "c1", "since": since}));
        assert_eq!(ack["error"]["code"], "INVALID_PAYLOAD", "{since}");
        assert!(received(&out, c, "subscribe-consultant-success").is_empty());
    }
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert!(activity_ids(&out, c).is_empty(), "not subscribed");
}

/// Sends a reader event and returns it as the log placed it.
fn placed(node: &mut Node, reader: alice_core::ConnId, ty: &str) -> Arc<ReaderEvent> {
    let out = node.send(reader, "reader-event", json!({"eventType": ty}));
    appends(&out).remove(0).1[0].event.clone()
}

fn ask(node: &mut Node, conn: alice_core::ConnId, body: Value) -> Vec<Output> {
    node.input(Input::ClientEvent {
        conn,
        name: "subscribe-consultant".into(),
        args: vec![body],
        has_binary: false,
        ack: Some(AckId(99)),
    })
}

fn ack_of(out: &[Output]) -> Value {
    out.iter()
        .find_map(|o| match o {
            Output::Ack { ack: AckId(99), payload, .. } => Some(payload.value()),
            _ => None,
        })
        .expect("answered")
}

#[test]
fn from_the_store_when_memory_does_not_reach_back_with_live_events_held_behind_the_replay() {
    let mut node = Node::with_config(Config { history_capacity: 2, ..Config::default() });
    let r = node.connect("r1", "reader");
    let seen = placed(&mut node, r, "A");
    let older: Vec<_> = (0..3).map(|_| placed(&mut node, r, "A")).collect();
    let recent = placed(&mut node, r, "A");
    let c = node.connect("c1", "consultant");
    let out = ask(&mut node, c, json!({"consultantId": "c1", "since": seen.id.to_string()}));
    let query = out.iter().find_map(|o| match o {
        Output::QueryReplay { conn, from, filter, limit } => Some((*conn, *from, filter.clone(), *limit)),
        _ => None,
    });
    let subscription = ReplayFilter::unscoped(ReplayRule::Subscription(Vec::new()));
    assert_eq!(query, Some((c, ReplayFrom::Event(seen.id), subscription, 10_001)));
    assert!(out.iter().all(|o| !matches!(o, Output::Ack { .. })), "answered with the store");

    // A help request reaches the socket by rule 2 meanwhile: it waits behind the replay.
    let help = placed(&mut node, r, "HELP_REQUEST");
    assert!(activity_ids(&node.drain(), c).is_empty());
    let out = node.send(r, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    assert!(activity_ids(&out, c).is_empty(), "held");
    let help2 = node.core.stats().events_accepted;

    // The store lags: it has the older events, not the help requests, which memory holds.
    let mut stored = older.clone();
    stored.push(recent.clone());
    let out = node.input(Input::ReplayAnswered { conn: c, answer: Some(Some((seen.position, stored))) });
    let ack = ack_of(&out);
    // The help requests were live deliveries, held: not counted as replayed.
    assert_eq!((ack["resumed"].clone(), ack["replayed"].clone()), (json!(true), json!(4)));
    let mut expected: Vec<String> = older.iter().map(|e| e.id.to_string()).collect();
    expected.push(recent.id.to_string());
    expected.push(help.id.to_string());
    let ids = activity_ids(&out, c);
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert_eq!(ids[..5], expected[..], "in log order, each once");
    assert_eq!(node.core.stats().events_accepted, help2, "nothing new was accepted meanwhile");

    let out = node.send(r, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    assert_eq!(activity_ids(&out, c).len(), 1, "then live");
}

#[test]
fn an_id_the_store_does_not_know_is_invalid_and_held_events_still_arrive() {
    let mut node = Node::with_config(Config { history_capacity: 1, ..Config::default() });
    let r = node.connect("r1", "reader");
    placed(&mut node, r, "A");
    placed(&mut node, r, "A");
    let c = node.connect("c1", "consultant");
    ask(&mut node, c, json!({"consultantId": "c1", "since": "01900000-0000-7000-8000-000000000001"}));
    let help = placed(&mut node, r, "HELP_REQUEST");
    let out = node.input(Input::ReplayAnswered { conn: c, answer: Some(None) });
    assert_eq!(ack_of(&out)["error"]["code"], "INVALID_PAYLOAD");
    assert_eq!(activity_ids(&out, c), [help.id.to_string()]);
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert!(activity_ids(&out, c).is_empty(), "not subscribed");
}

#[test]
fn a_store_that_fails_subscribes_without_a_replay() {
    let mut node = Node::with_config(Config { history_capacity: 1, ..Config::default() });
    let r = node.connect("r1", "reader");
    let seen = placed(&mut node, r, "A");
    placed(&mut node, r, "A");
    let c = node.connect("c1", "consultant");
    ask(&mut node, c, json!({"consultantId": "c1", "since": seen.id.to_string()}));
    let out = node.input(Input::ReplayAnswered { conn: c, answer: None });
    let ack = ack_of(&out);
    assert_eq!((ack["ok"].clone(), ack["resumed"].clone()), (json!(true), json!(false)));
    let out = node.send(r, "reader-event", json!({"eventType": "A"}));
    assert_eq!(activity_ids(&out, c).len(), 1);
    let _ = LogPosition::START;
}

#[test]
fn on_a_node_behind_the_one_it_left_it_skips_what_the_socket_already_saw() {
    let config = || Config { deployment: alice_core::Deployment::Cluster, ..Config::default() };
    let mut ahead = Node::named("node-a", config(), 1);
    ahead.auto_append = false;
    ahead.input(log_opened());
    let r = ahead.connect("r1", "reader");
    let entries: Vec<_> = (0..3)
        .map(|_| {
            let out = ahead.send(r, "reader-event", json!({"eventType": "A"}));
            let (append, entries) = appends(&out).remove(0);
            ahead.input(Input::Appended { append, repeats: Vec::new() });
            entries[0].clone()
        })
        .collect();
    // node-b has read only the first entry; the dashboard saw the second on node-a.
    let mut behind = Node::named("node-b", config(), 2);
    behind.input(log_opened());
    let positions: Vec<LogPosition> = (0..3).map(|i| LogPosition { ms: 5_000, seq: i }).collect();
    behind.input(Input::Log(positions[0], entries[0].to_message()));
    let c = behind.connect("c1", "consultant");
    let seen = entries[1].event.id;
    let out = ask(&mut behind, c, json!({"consultantId": "c1", "since": seen.to_string()}));
    assert!(out.iter().any(|o| matches!(o, Output::QueryReplay { .. })), "memory does not know it");
    let mut stored_second = (*entries[2].event).clone();
    stored_second.position = positions[2];
    let answer = Some(Some((positions[1], vec![Arc::new(stored_second)])));
    let out = behind.input(Input::ReplayAnswered { conn: c, answer });
    assert_eq!(ack_of(&out)["resumed"], json!(true));
    assert!(activity_ids(&out, c).is_empty(), "node-b shows the third live when it reads it, not now");
    let out = behind.input(Input::Log(positions[1], entries[1].to_message()));
    assert!(activity_ids(&out, c).is_empty(), "the socket saw the second already");
    let out = behind.input(Input::Log(positions[2], entries[2].to_message()));
    assert_eq!(activity_ids(&out, c), [entries[2].event.id.to_string()], "then live, once");
}

#[test]
fn a_new_staff_sockets_deliveries_wait_for_its_first_command_so_a_resume_keeps_the_order() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    let seen = event(&mut node, r, "A");
    let missed = event(&mut node, r, "A");
    let c = node.connect("c1", "consultant");
    // A support event comes between the connect and the resume: it waits.
    let out = node.send(r, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    assert!(activity_ids(&out, c).is_empty(), "held for the first command");
    let help = received(&out, r, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned();
    let (out, ack) = subscribe(&mut node, c, json!({"consultantId": "c1", "since": seen}));
    assert_eq!(ack["replayed"], json!(1), "the help request was live, not replayed");
    assert_eq!(activity_ids(&out, c), [missed, help], "in the log's order, each once");

    // Any other first command lets what waited go out first; so does the timeout.
    let c2 = node.connect("c2", "consultant");
    node.send(r, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    let out = node.send(c2, "get-online-readers", json!(null));
    assert_eq!(activity_ids(&out, c2).len(), 1);
    let c3 = node.connect("c3", "consultant");
    node.send(r, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    assert!(activity_ids(&node.advance(499), c3).is_empty());
    assert_eq!(activity_ids(&node.advance(1), c3).len(), 1, "after 500 ms at most");
}

/// Entries `node-b` appended to the cluster's log, which the test confirms one by one.
fn entries_of_another_node(n: usize) -> Vec<Arc<alice_core::LogEntry>> {
    entries_of_types(&vec!["A"; n])
}

/// Entries `node-b` appended to the cluster's log, one of each type, in order.
fn entries_of_types(types: &[&str]) -> Vec<Arc<alice_core::LogEntry>> {
    let mut other = cluster_by_hand("node-b", 8);
    let r = other.connect("r1", "reader");
    (types.iter())
        .map(|ty| {
            let out = other.send(r, "reader-event", json!({"eventType": ty}));
            let (append, entries) = appends(&out).remove(0);
            other.input(Input::Appended { append, repeats: Vec::new() });
            entries[0].clone()
        })
        .collect()
}

/// A read of the log: these entries (each at the stream id of its time and sequence number), and
/// whether it took every entry there was.
fn log_read(entries: &[Arc<alice_core::LogEntry>], at_end: bool) -> Input {
    let entries: Vec<_> = (entries.iter())
        .map(|e| (format!("{}-{}", e.event.timestamp.0, e.seq), e.to_message().encode()))
        .collect();
    let position = entries.last().map(|(id, _)| id.clone());
    Input::Read { stream: alice_core::Stream::Log, position, entries, at_end }
}

#[test]
fn in_a_cluster_an_unknown_id_waits_until_the_log_is_read_to_its_end_then_resumes_or_is_invalid() {
    let entries = entries_of_another_node(2);
    let mut node = cluster_by_hand("node-a", 7);
    // This node's memory reaches back two hours before them.
    let mut old = (*single_node_event()).clone();
    old.position =
        LogPosition { ms: entries[0].event.timestamp.0 - 2 * alice_core::PLACED_WITHIN_MS, seq: 0 };
    node.input(Input::HistoryLoaded { events: vec![Arc::new(old)], complete: false });
    let c = node.connect("c1", "consultant");
    // The dashboard saw the first entry on node-b; node-a has not read it yet.
    ask(&mut node, c, json!({"consultantId": "c1", "since": entries[0].event.id.to_string()}));
    let out = node.input(Input::ReplayAnswered { conn: c, answer: Some(None) });
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })), "it waits: {out:?}");
    // A store answer meant for an earlier resume of this socket changes nothing.
    let out = node.input(Input::ReplayAnswered { conn: c, answer: None });
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })), "a stale answer: {out:?}");
    // The read that was out when the question came cannot settle it, even at the log's end.
    let out = node.input(log_read(&[], true));
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })), "a read asked before: {out:?}");
    // Nor a read after it that did not reach the end.
    let out = node.input(log_read(&entries[..1], false));
    assert!(!out.iter().any(|o| matches!(o, Output::Ack { .. })), "not at the end: {out:?}");
    let out = node.input(log_read(&entries[1..], true));
    let ack = ack_of(&out);
    assert_eq!(
        (ack["ok"].clone(), ack["resumed"].clone(), ack["replayed"].clone()),
        (json!(true), json!(true), json!(1))
    );
    assert_eq!(activity_ids(&out, c), [entries[1].event.id.to_string()], "what came after it, once");

    // An id as recent that no node issued: once the log is read to its end, memory, which holds
    // every event since well before that id's time, does not know it.
    let mut never = entries[1].event.id.into_bytes();
    never[15] ^= 0xff;
    let never = uuid::Uuid::from_bytes(never).to_string();
    let ack = resumed_after_reading_to_the_end(&mut node, c, &never);
    assert_eq!(ack["error"]["code"], "INVALID_PAYLOAD");
}

/// The answer to a resume from `since`, which the store does not know, once the log has been
/// read to its end (the read out when the question came, then one asked after it).
fn resumed_after_reading_to_the_end(node: &mut Node, c: alice_core::ConnId, since: &str) -> Value {
    ask(node, c, json!({"consultantId": "c1", "since": since}));
    node.input(Input::ReplayAnswered { conn: c, answer: Some(None) });
    node.input(log_read(&[], true));
    ack_of(&node.input(log_read(&[], true)))
}

#[test]
fn a_resume_waiting_for_the_log_end_holds_live_deliveries_and_a_disconnect_ends_it() {
    let entries = entries_of_types(&["A", "HELP_REQUEST", "A"]);
    let (seen, help, after) = (&entries[0], &entries[1], &entries[2]);
    let mut node = cluster_by_hand("node-a", 7);
    let mut old = (*single_node_event()).clone();
    old.position = LogPosition { ms: seen.event.timestamp.0 - 2 * alice_core::PLACED_WITHIN_MS, seq: 0 };
    node.input(Input::HistoryLoaded { events: vec![Arc::new(old)], complete: false });
    let c = node.connect("c1", "consultant");
    ask(&mut node, c, json!({"consultantId": "c1", "since": seen.event.id.to_string()}));
    node.input(Input::ReplayAnswered { conn: c, answer: Some(None) });
    node.input(log_read(&[], true));
    // A support event, which every staff socket receives live, waits behind the resume.
    let out = node.input(log_read(&[seen.clone(), help.clone()], false));
    assert!(activity_ids(&out, c).is_empty(), "held: {out:?}");
    let out = node.input(log_read(std::slice::from_ref(after), true));
    assert_eq!(ack_of(&out)["resumed"], json!(true));
    let ids = [help.event.id.to_string(), after.event.id.to_string()];
    assert_eq!(activity_ids(&out, c), ids, "what came after the seen one, once each, in order");

    // A socket that leaves while it waits is answered nothing, then or when the wait is over.
    let c2 = node.connect("c2", "consultant");
    let mut never = after.event.id.into_bytes();
    never[15] ^= 0xff;
    let never = uuid::Uuid::from_bytes(never).to_string();
    ask(&mut node, c2, json!({"consultantId": "c2", "since": never}));
    node.input(Input::ReplayAnswered { conn: c2, answer: Some(None) });
    node.disconnect(c2);
    let to_c2 = |out: &[Output]| {
        out.iter().any(|o| match o {
            Output::Ack { conn, .. } => *conn == c2,
            Output::Emit { to, .. } => to.contains(&c2),
            _ => false,
        })
    };
    assert!(!to_c2(&node.advance(alice_core::LOG_END_WAIT_MS)));
    assert!(!to_c2(&node.input(log_read(&[], true))));
}

#[test]
fn in_a_cluster_a_node_that_cannot_tell_subscribes_without_a_replay() {
    let mut node = cluster_by_hand("node-a", 7);
    let c = node.connect("c1", "consultant");
    let recent = "01900000-0000-7000-8000-000000000001";
    let id_ms = 0x0190_0000_0000u64;

    // The log cannot be read to its end (Redis out of reach): after the wait, no replay.
    ask(&mut node, c, json!({"consultantId": "c1", "since": recent}));
    node.input(Input::ReplayAnswered { conn: c, answer: Some(None) });
    node.input(Input::ReadFailed { stream: alice_core::Stream::Log });
    assert!(!node.advance(alice_core::LOG_END_WAIT_MS - 1).iter().any(|o| matches!(o, Output::Ack { .. })));
    let ack = ack_of(&node.advance(1));
    assert_eq!(
        (ack["ok"].clone(), ack["resumed"].clone(), ack["replayed"].clone()),
        (json!(true), json!(false), json!(0))
    );

    // Memory that does not reach back to where the log could have placed the id cannot tell
    // either, even with the log read to its end: so a node that joined late (its memory holds
    // every event it ever read, not what Redis trimmed before) ...
    let ack = resumed_after_reading_to_the_end(&mut node, c, recent);
    assert_eq!((ack["ok"].clone(), ack["resumed"].clone()), (json!(true), json!(false)));
    // ... and one whose memory begins after that place.
    let mut shown = (*single_node_event()).clone();
    shown.position = LogPosition { ms: id_ms + 10_000, seq: 0 };
    node.input(Input::HistoryLoaded { events: vec![Arc::new(shown)], complete: false });
    let ack = resumed_after_reading_to_the_end(&mut node, c, recent);
    assert_eq!((ack["ok"].clone(), ack["resumed"].clone()), (json!(true), json!(false)));

    // Once this node has shown an event placed two hours after that id's time, the id would
    // have been read: never issued, at once.
    let mut shown = (*single_node_event()).clone();
    shown.position = LogPosition { ms: id_ms + 2 * alice_core::PLACED_WITHIN_MS, seq: 0 };
    node.input(Input::HistoryLoaded { events: vec![Arc::new(shown)], complete: false });
    ask(&mut node, c, json!({"consultantId": "c1", "since": recent}));
    let out = node.input(Input::ReplayAnswered { conn: c, answer: Some(None) });
    assert_eq!(ack_of(&out)["error"]["code"], "INVALID_PAYLOAD");
}

/// An event as a single node's log placed it.
fn single_node_event() -> Arc<ReaderEvent> {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    placed(&mut node, r, "A")
}
