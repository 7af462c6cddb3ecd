//! The protocol between nodes: codec round trips; on the log, remote delivery, duplicates and
//! gaps; on the bus, own echoes, sequences and heartbeats.

mod common;

use alice_core::bus::{BusBody, BusEvent, BusMessage, DecodeError, BUS_VERSION};
use alice_core::{Config, Deployment, Input, Millis, Output};
use common::*;
use serde_json::json;

fn event_msg(seq: u64, user: &str, rooms: &[&str]) -> BusMessage {
    BusMessage {
        origin: "node-b".into(),
        incarnation: 42,
        seq,
        body: BusBody::Event(BusEvent {
            id: uuid_bytes(seq),
            user_id: user.into(),
            event_type: "PAGE_TURN".into(),
            data: r#"{"page":1}"#.into(),
            timestamp: Millis(START.0 + seq),
            session_id: "s".into(),
            sender_rooms: rooms.iter().map(|r| r.to_string()).collect(),
            sender_socket: "pid-7".into(),
        }),
    }
}

fn cluster_node() -> Node {
    let mut node = Node::with_config(Config { deployment: Deployment::Cluster, ..Config::default() });
    node.input(log_opened());
    node
}

fn uuid_bytes(n: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    b[6] = 0x70;
    b[8] |= 0x80;
    b
}

#[test]
fn codec_round_trips_and_rejects_garbage() {
    let msg = event_msg(3, "r1", &["x"]);
    let bytes = msg.encode();
    assert_eq!(bytes[0], BUS_VERSION);
    assert_eq!(BusMessage::decode(&bytes), Ok(msg));
    assert_eq!(BusMessage::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(BusMessage::decode(&[99, 1, 2]), Err(DecodeError::UnknownVersion(99)));
    assert_eq!(BusMessage::decode(&[BUS_VERSION, 0xff, 0xff]), Err(DecodeError::Malformed));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(BusMessage::decode(&trailing), Err(DecodeError::Malformed));
}

#[test]
fn remote_events_are_delivered_by_the_same_rules() {
    let mut node = cluster_node();
    let sub = node.connect("c1", "consultant");
    node.send(sub, "subscribe-consultant", json!({"consultantId": "c1", "eventTypes": ["PAGE_TURN"]}));
    let in_room = node.connect("c2", "consultant");
    node.send(in_room, "join-room", json!("x"));
    let same_user = node.connect("r1", "reader");
    let other_reader = node.connect("r2", "reader");
    let out = node.log(event_msg(1, "r1", &["x"]));
    for (conn, n) in [(sub, 1), (in_room, 1), (same_user, 1), (other_reader, 0)] {
        assert_eq!(received(&out, conn, "reader-activity").len(), n, "{conn:?}");
    }
    let act = &received(&out, sub, "reader-activity")[0];
    assert_eq!(act["data"], json!({"page": 1}));
    assert_eq!(act["timestamp"], json!(Millis(START.0 + 1).rfc3339()));
    // In cluster-wide history too.
    let out = node.send(sub, "get-recent-events", json!({}));
    assert_eq!(received(&out, sub, "recent-events")[0]["events"].as_array().unwrap().len(), 1);
}

#[test]
fn duplicates_are_dropped_and_gaps_counted() {
    let mut node = cluster_node();
    let sub = node.connect("c1", "consultant");
    node.send(sub, "subscribe-consultant", json!({"consultantId": "c1"}));
    let count = |node: &mut Node, msg| received(&node.log(msg), sub, "reader-activity").len();
    assert_eq!(count(&mut node, event_msg(1, "r1", &[])), 1);
    assert_eq!(count(&mut node, event_msg(1, "r1", &[])), 0);
    // An append of 2..=4 whose 4 landed alone (Redis refused the others), then its retry.
    assert_eq!(count(&mut node, event_msg(4, "r1", &[])), 1);
    assert_eq!(count(&mut node, event_msg(2, "r1", &[])), 1, "late after a gap: shown where it landed");
    assert_eq!(count(&mut node, event_msg(3, "r1", &[])), 1);
    assert_eq!(count(&mut node, event_msg(4, "r1", &[])), 0);
    assert_eq!(count(&mut node, event_msg(2, "r1", &[])), 0, "once");
    let s = node.core.stats();
    assert_eq!((s.log_duplicates, s.log_gaps, s.log_late), (3, 2, 2));
    // Each shown at the place it was read at: later entries, later positions.
    let out = node.send(sub, "get-recent-events", json!({}));
    let events = received(&out, sub, "recent-events")[0]["events"].as_array().unwrap().clone();
    let order: Vec<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let ids = |seqs: [u64; 4]| seqs.map(|n| uuid::Uuid::from_bytes(uuid_bytes(n)).to_string());
    assert_eq!(order, ids([3, 2, 4, 1]), "newest first, in the order read");
    // A restarted origin (new incarnation) starts its sequence again.
    let mut restarted = event_msg(1, "r1", &[]);
    restarted.incarnation = 43;
    if let BusBody::Event(e) = &mut restarted.body {
        e.id = uuid_bytes(100);
    }
    assert_eq!(count(&mut node, restarted), 1);
}

#[test]
fn a_repeat_from_a_node_expired_as_silent_is_still_a_duplicate() {
    // Redis paused: node-b goes silent past the TTL, then its appender resends a pipeline that
    // had partly landed. Found by shell/tests/redis_cluster.rs (a consultant got one event twice).
    let mut node = cluster_node();
    let sub = node.connect("c1", "consultant");
    node.send(sub, "subscribe-consultant", json!({"consultantId": "c1"}));
    let count = |node: &mut Node, msg| received(&node.log(msg), sub, "reader-activity").len();
    assert_eq!(count(&mut node, event_msg(1, "r1", &[])), 1);
    node.advance(16_000);
    assert_eq!(count(&mut node, event_msg(1, "r1", &[])), 0);
    assert_eq!(count(&mut node, event_msg(2, "r1", &[])), 1);
}

#[test]
fn events_never_ride_the_bus() {
    let mut node = cluster_node();
    let sub = node.connect("c1", "consultant");
    node.send(sub, "subscribe-consultant", json!({"consultantId": "c1"}));
    let out = node.input(Input::Bus(event_msg(1, "r1", &[])));
    assert!(received(&out, sub, "reader-activity").is_empty());
    assert_eq!(node.core.stats().bus_malformed, 1);
    let r = node.connect("r1", "reader");
    let out = node.send(r, "reader-event", json!({"eventType": "T"}));
    assert!(published(&out).iter().all(|m| !matches!(m.body, BusBody::Event(_))), "{out:?}");
}

#[test]
fn own_messages_prove_liveness() {
    let mut node = Node::new();
    node.connect("r1", "reader");
    let msgs = published(&node.advance(5_000));
    assert!(!msgs.is_empty());
    assert_eq!(node.core.stats().bus_last_self_heard, None);
    node.input(Input::Bus(msgs[0].clone()));
    assert_eq!(node.core.stats().bus_last_self_heard, Some(node.now));
}

#[test]
fn another_process_with_this_node_id_is_reported_once_per_run_and_counted() {
    let mut node = Node::new();
    node.connect("r1", "reader");
    let own = published(&node.advance(5_000)).remove(0);
    let shared = |out: &[Output]| {
        out.iter()
            .filter_map(
                |o| if let Output::NodeIdShared { incarnation } = o { Some(*incarnation) } else { None },
            )
            .collect::<Vec<_>>()
    };
    assert!(shared(&node.input(Input::Bus(own.clone()))).is_empty(), "its own run is no other process");
    let other = |incarnation, seq| BusMessage { incarnation, seq, ..own.clone() };
    assert_eq!(shared(&node.input(Input::Bus(other(own.incarnation ^ 1, 1)))), [own.incarnation ^ 1]);
    assert!(shared(&node.input(Input::Bus(other(own.incarnation ^ 1, 2)))).is_empty(), "reported once");
    assert_eq!(shared(&node.input(Input::Bus(other(own.incarnation ^ 2, 1)))), [own.incarnation ^ 2]);
    let stats = node.core.stats();
    assert_eq!(stats.node_id_shared, 3);
    assert_eq!(stats.online_readers, 1, "another run's messages change nothing here");
}

#[test]
fn sequence_numbers_count_up_and_heartbeats_recur() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    node.send(r, "reader-event", json!({"eventType": "T"}));
    let mut seqs = Vec::new();
    let mut heartbeats = 0;
    for _ in 0..4 {
        for m in published(&node.advance(5_000)) {
            seqs.push(m.seq);
            heartbeats += matches!(m.body, BusBody::Heartbeat { .. }) as usize;
        }
    }
    assert_eq!(heartbeats, 4, "one heartbeat per TTL/3");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

/// Log entries version 2 wrote (the sender's socket number rather than its tag) are still read
/// after an upgrade, so none of them is lost; their sender is known by its rooms only.
#[test]
fn log_entries_of_the_previous_version_are_still_read() {
    // `event_msg(9, "r1", &["x"])` with sender_conn 7, as the build before version 3 encoded it.
    let golden = "02066e6f64652d622a09000000000000007000800000000000000902723109504147455f5455524e0a7b\
                  2270616765223a317d89d0eab6b733017301017807";
    let bytes: Vec<u8> =
        (0..golden.len()).step_by(2).map(|i| u8::from_str_radix(&golden[i..i + 2], 16).unwrap()).collect();
    let mut expected = event_msg(9, "r1", &["x"]);
    if let BusBody::Event(e) = &mut expected.body {
        e.sender_socket = String::new();
    }
    assert_eq!(BusMessage::decode(&bytes), Ok(expected.clone()));
    // Only events were ever on the log: anything else of version 2 is not read.
    assert_eq!(BusMessage::decode(&[2, 0xff]), Err(DecodeError::Malformed));

    // And the node shows it, to the consultants it reaches.
    let mut node = cluster_node();
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let out = node.log(expected);
    assert_eq!(received(&out, c, "reader-activity").len(), 1);
}
