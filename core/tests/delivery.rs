//! The four delivery rules, exactly one copy per socket, never the sender, never another reader.

mod common;

use alice_core::{ConnId, Output};
use common::*;
use serde_json::json;

fn activity_counts(out: &[Output], conns: &[ConnId]) -> Vec<usize> {
    conns.iter().map(|c| received(out, *c, "reader-activity").len()).collect()
}

#[test]
fn rule_1_subscription_filter() {
    let mut node = Node::new();
    let all = node.connect("c1", "consultant");
    let turns = node.connect("c2", "consultant");
    let lookups = node.connect("c3", "consultant");
    let unsubscribed = node.connect("c4", "consultant");
    node.send(all, "subscribe-consultant", json!({"consultantId": "c1"}));
    node.send(turns, "subscribe-consultant", json!({"consultantId": "c2", "eventTypes": ["PAGE_TURN"]}));
    node.send(lookups, "subscribe-consultant", json!({"consultantId": "c3", "eventTypes": ["LOOKUP"]}));
    let reader = node.connect("r1", "reader");

    let out = node.send(reader, "reader-event", json!({"eventType": "PAGE_TURN", "data": {"page": 2}}));
    assert_eq!(activity_counts(&out, &[all, turns, lookups, unsubscribed, reader]), [1, 1, 0, 0, 0]);
    let act = &received(&out, all, "reader-activity")[0];
    assert_eq!(act["userId"], json!("r1"));
    assert_eq!(act["eventType"], json!("PAGE_TURN"));
    assert_eq!(act["data"], json!({"page": 2}));
    assert_eq!(act["sessionId"], json!(format!("sid-{}", reader.0)));
    assert!(act["timestamp"].as_str().unwrap().ends_with('Z'));

    // Re-subscribing replaces the filter.
    node.send(turns, "subscribe-consultant", json!({"consultantId": "c2", "eventTypes": ["LOOKUP"]}));
    let out = node.send(reader, "reader-event", json!({"eventType": "PAGE_TURN"}));
    assert_eq!(activity_counts(&out, &[all, turns, lookups]), [1, 0, 0]);
    let out = node.send(reader, "reader-event", json!({"eventType": "LOOKUP"}));
    assert_eq!(activity_counts(&out, &[all, turns, lookups]), [1, 1, 1]);

    // Unsubscribing stops it.
    node.send(all, "unsubscribe-consultant", json!({"consultantId": "c1"}));
    let out = node.send(reader, "reader-event", json!({"eventType": "PAGE_TURN"}));
    assert_eq!(activity_counts(&out, &[all]), [0]);
}

#[test]
fn rule_2_support_events_reach_every_staff_socket() {
    let mut node = Node::new();
    let consultant = node.connect("c1", "consultant");
    let admin = node.connect("a1", "admin");
    let filtered = node.connect("c2", "consultant");
    node.send(filtered, "subscribe-consultant", json!({"consultantId": "c2", "eventTypes": ["PAGE_TURN"]}));
    let reader = node.connect("r1", "reader");
    let other_reader = node.connect("r2", "reader");
    // A new staff socket's deliveries wait for its first command (`resume.rs`): these have sent one.
    for s in [consultant, admin] {
        node.send(s, "get-online-readers", json!(null));
    }
    let out = node.send(reader, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    assert_eq!(activity_counts(&out, &[consultant, admin, filtered, other_reader]), [1, 1, 1, 0]);
    let out = node.send(reader, "reader-event", json!({"eventType": "book.FEEDBACK"}));
    assert_eq!(activity_counts(&out, &[consultant, admin, filtered, other_reader]), [1, 1, 1, 0]);
    let out = node.send(reader, "reader-event", json!({"eventType": "help_request"}));
    assert_eq!(activity_counts(&out, &[consultant, admin, filtered, other_reader]), [0, 0, 0, 0]);
}

#[test]
fn rule_3_other_devices_of_the_same_reader_never_the_sender() {
    let mut node = Node::new();
    let tab1 = node.connect("r1", "reader");
    let tab2 = node.connect("r1", "reader");
    let tab3 = node.connect("r1", "reader");
    let stranger = node.connect("r2", "reader");
    let out = node.send(tab1, "reader-event", json!({"eventType": "PAGE_TURN"}));
    assert_eq!(activity_counts(&out, &[tab1, tab2, tab3, stranger]), [0, 1, 1, 0]);
}

#[test]
fn rule_4_rooms_route_the_senders_events_to_staff_only() {
    let mut node = Node::new();
    let consultant = node.connect("c1", "consultant");
    let filtered = node.connect("c2", "consultant");
    node.send(filtered, "subscribe-consultant", json!({"consultantId": "c2", "eventTypes": ["OTHER"]}));
    let nosy_reader = node.connect("r9", "reader");
    let reader = node.connect("r1", "reader");
    for c in [consultant, filtered, nosy_reader] {
        node.send(c, "join-room", json!("class-1"));
    }
    // The reader has not joined: nothing through the room.
    let out = node.send(reader, "reader-event", json!({"eventType": "PAGE_TURN"}));
    assert_eq!(activity_counts(&out, &[consultant, filtered, nosy_reader]), [0, 0, 0]);
    node.send(reader, "join-room", json!("class-1"));
    let out = node.send(reader, "reader-event", json!({"eventType": "PAGE_TURN"}));
    assert_eq!(activity_counts(&out, &[consultant, filtered, nosy_reader]), [1, 1, 0]);
    // A staff socket's own room membership alone routes nothing from elsewhere.
    node.send(reader, "leave-room", json!("class-1"));
    let out = node.send(reader, "reader-event", json!({"eventType": "PAGE_TURN"}));
    assert_eq!(activity_counts(&out, &[consultant, filtered]), [0, 0]);
}

#[test]
fn a_socket_in_several_groups_gets_one_copy() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    for room in ["a", "b", "c"] {
        node.send(c, "join-room", json!(room));
    }
    let reader = node.connect("r1", "reader");
    for room in ["a", "b", "c"] {
        node.send(reader, "join-room", json!(room));
    }
    let out = node.send(reader, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    assert_eq!(activity_counts(&out, &[c]), [1]);
    let emits: Vec<&Output> = out.iter().filter(|o| matches!(o, Output::Activity { .. })).collect();
    assert_eq!(emits.len(), 1, "one payload for all recipients");
}

#[test]
fn receipt_and_ack_name_the_event_id() {
    let mut node = Node::new();
    let reader = node.connect("r1", "reader");
    let (out, ack) = node.send_ack(reader, "reader-event", vec![json!({"eventType": "T"})]);
    let receipt = &received(&out, reader, "reader-event-received")[0];
    assert_eq!(receipt["message"], json!("Event received and queued"));
    assert_eq!(ack["ok"], json!(true));
    assert_eq!(ack["eventId"], receipt["eventId"]);
    assert_eq!(ack["message"], receipt["message"]);
}

#[test]
fn consultants_only_use_their_own_id_admins_any() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    let a = node.connect("a1", "admin");
    let out = node.send(c, "subscribe-consultant", json!({"consultantId": "c2"}));
    assert_eq!(error_of(&out, c)["code"], json!("FORBIDDEN"));
    let out = node.send(c, "unsubscribe-consultant", json!({"consultantId": "c2"}));
    assert_eq!(error_of(&out, c)["code"], json!("FORBIDDEN"));
    let (out, ack) = node.send_ack(
        a,
        "subscribe-consultant",
        vec![json!({"consultantId": "c2", "eventTypes": ["B", "A"]})],
    );
    assert_eq!(
        ack,
        json!({"ok": true, "message": "Subscribed to consultant events", "consultantId": "c2", "eventTypes": ["B", "A"]})
    );
    assert_eq!(received(&out, a, "online-readers").len(), 1, "a snapshot follows the subscription");
    let (_, ack) = node.send_ack(c, "subscribe-consultant", vec![json!({"consultantId": "c1"})]);
    assert_eq!(ack["eventTypes"], json!([]));
    // Unsubscribing an id the socket does not hold succeeds and changes nothing.
    let (_, ack) = node.send_ack(a, "unsubscribe-consultant", vec![json!({"consultantId": "zzz"})]);
    assert_eq!(ack["ok"], json!(true));
    let reader = node.connect("r1", "reader");
    let out = node.send(reader, "reader-event", json!({"eventType": "A"}));
    assert_eq!(activity_counts(&out, &[a, c]), [1, 1]);
}

#[test]
fn room_limit_and_replies() {
    let mut node = Node::new();
    let r = node.connect("r1", "reader");
    for i in 0..32 {
        let (_, ack) = node.send_ack(r, "join-room", vec![json!(format!("room{i}"))]);
        assert_eq!(ack, json!({"ok": true, "room": format!("room{i}")}));
    }
    let (_, ack) = node.send_ack(r, "join-room", vec![json!("room0")]);
    assert_eq!(ack["ok"], json!(true), "joining a room again costs nothing");
    let (out, ack) = node.send_ack(r, "join-room", vec![json!("one-too-many")]);
    assert_eq!(ack["error"], json!({"code": "INVALID_PAYLOAD", "message": "Too many rooms"}));
    assert_eq!(error_of(&out, r)["message"], json!("Too many rooms"));
    let (out, ack) = node.send_ack(r, "leave-room", vec![json!("never-joined")]);
    assert_eq!(ack, json!({"ok": true, "room": "never-joined"}));
    assert_eq!(received(&out, r, "room-left"), vec![json!({"room": "never-joined"})]);
}

#[test]
fn disconnected_sockets_receive_nothing() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    node.send(c, "join-room", json!("x"));
    let reader = node.connect("r1", "reader");
    node.send(reader, "join-room", json!("x"));
    node.disconnect(c);
    let out = node.send(reader, "reader-event", json!({"eventType": "HELP_REQUEST"}));
    assert!(out.iter().all(|o| !matches!(o, Output::Activity { .. })), "{out:?}");
}
