//! Presence: multi-tab readers, other nodes' readers, node expiry and coalesced pushes.

mod common;

use alice_core::bus::{BusBody, BusMessage};
use alice_core::presence::ReaderPresence;
use alice_core::{Config, Input, Millis};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn online(node: &mut Node, c: alice_core::ConnId) -> Value {
    let out = node.send(c, "get-online-readers", json!(null));
    received(&out, c, "online-readers").remove(0)
}

fn users(list: &Value) -> Vec<String> {
    list["readers"].as_array().unwrap().iter().map(|r| r["userId"].as_str().unwrap().to_owned()).collect()
}

fn remote(node: &str, seq: u64, body: BusBody) -> Input {
    Input::Bus(BusMessage { origin: node.into(), incarnation: 7, seq, body })
}

fn reader_at(at: Millis, connections: u32) -> ReaderPresence {
    ReaderPresence {
        first_name: None,
        last_name: None,
        last_activity: at,
        current_book: None,
        current_page: None,
        connections,
    }
}

#[test]
fn tabs_are_one_reader_and_staff_are_not_readers() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    let tab1 = node.connect("r1", "reader");
    let tab2 = node.connect("r1", "reader");
    let list = online(&mut node, c);
    assert_eq!(list["count"], json!(1));
    assert_eq!(list["readers"][0]["connections"], json!(2));
    node.disconnect(tab1);
    let list = online(&mut node, c);
    assert_eq!(list["count"], json!(1), "closing one of two tabs keeps the reader");
    node.disconnect(tab2);
    assert_eq!(online(&mut node, c)["count"], json!(0));
}

#[test]
fn most_recently_active_first_with_position() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    let r1 = node.connect("r1", "reader");
    node.advance(10);
    let _r2 = node.connect("r2", "reader");
    assert_eq!(users(&online(&mut node, c)), ["r2", "r1"]);
    node.advance(10);
    node.send(r1, "reader-event", json!({"eventType": "PAGE_TURN", "data": {"bookId": "b-1", "page": 12}}));
    let list = online(&mut node, c);
    assert_eq!(users(&list), ["r1", "r2"]);
    let r = &list["readers"][0];
    assert_eq!(r["currentBook"], json!("b-1"));
    assert_eq!(r["currentPage"], json!(12));
    assert_eq!(r["lastActivity"], json!(node.now.rfc3339()));
    // Book and page update independently and keep their JSON type.
    node.send(r1, "reader-event", json!({"eventType": "PAGE_TURN", "data": {"currentPage": "xii"}}));
    let r = &online(&mut node, c)["readers"][0];
    assert_eq!((r["currentBook"].clone(), r["currentPage"].clone()), (json!("b-1"), json!("xii")));
}

#[test]
fn names_come_from_claims() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    let mut cl = claims("r1", "reader");
    cl["user_metadata"] = json!({"first_name": "Ada", "last_name": "Lovelace"});
    node.try_connect(alice_core::TokenCheck::Verified(cl));
    let r = &online(&mut node, c)["readers"][0];
    assert_eq!((r["firstName"].clone(), r["lastName"].clone()), (json!("Ada"), json!("Lovelace")));
}

#[test]
fn pushes_are_coalesced_per_interval_and_only_to_subscribers() {
    let mut node = Node::new();
    let sub = node.connect("c1", "consultant");
    let unsub = node.connect("c2", "consultant");
    node.send(sub, "subscribe-consultant", json!({"consultantId": "c1"}));
    let out = node.advance(5_000);
    assert!(received(&out, sub, "online-readers").is_empty(), "no change, no push");

    // The first change after a quiet spell goes out at once.
    let (r1, out) = node.try_connect(alice_core::TokenCheck::Verified(claims("r1", "reader")));
    assert_eq!(received(&out, sub, "online-readers").len(), 1);
    assert!(received(&out, unsub, "online-readers").is_empty(), "only subscribers get pushes");

    // Five changes within the next interval make one push, when the interval ends.
    let mut outs = Vec::new();
    for _ in 0..5 {
        outs.extend(node.advance(100));
        outs.extend(node.send(r1, "reader-event", json!({"eventType": "T"})));
    }
    assert!(received(&outs, sub, "online-readers").is_empty());
    let out = node.advance(500);
    let pushes = received(&out, sub, "online-readers");
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0]["readers"][0]["lastActivity"], json!(START.plus(5_500).rfc3339()));
    assert!(received(&out, unsub, "online-readers").is_empty());
}

#[test]
fn push_timing_is_exact() {
    let config = Config { presence_push_interval_ms: 1_000, ..Config::default() };
    let mut node = Node::with_config(config);
    let sub = node.connect("c1", "consultant");
    node.send(sub, "subscribe-consultant", json!({"consultantId": "c1"}));
    node.advance(2_000);
    let r = node.connect("r1", "reader");
    // The connect above produced an immediate push (quiet before). Now change again at +100 ms.
    node.advance(100);
    let out = node.send(r, "reader-event", json!({"eventType": "T"}));
    assert!(received(&out, sub, "online-readers").is_empty(), "within the interval: held back");
    assert_eq!(node.core.poll_timeout().map(|t| t.since(node.now)).filter(|d| *d <= 900), Some(900));
    let out = node.advance(899);
    assert!(received(&out, sub, "online-readers").is_empty());
    let out = node.advance(1);
    assert_eq!(received(&out, sub, "online-readers").len(), 1, "pushed when the interval ends");
}

#[test]
fn other_nodes_readers_merge_and_expire() {
    let config = Config { presence_ttl_ms: 15_000, ..Config::default() };
    let mut node = Node::with_config(config);
    let c = node.connect("c1", "consultant");
    let _local = node.connect("r1", "reader");
    let now = node.now;
    let mut readers = BTreeMap::new();
    readers.insert("r1".to_string(), reader_at(now, 1));
    readers.insert("r2".to_string(), reader_at(now, 3));
    node.input(remote("node-b", 1, BusBody::Heartbeat { readers }));
    let list = online(&mut node, c);
    assert_eq!(list["count"], json!(2), "r1 on two nodes is one reader");
    let r1 = list["readers"].as_array().unwrap().iter().find(|r| r["userId"] == json!("r1")).unwrap().clone();
    assert_eq!(r1["connections"], json!(2));

    // A presence delta: r2 left node-b.
    node.input(remote("node-b", 2, BusBody::Presence { user_id: "r2".into(), reader: None }));
    assert_eq!(online(&mut node, c)["count"], json!(1));
    node.input(remote(
        "node-b",
        3,
        BusBody::Presence { user_id: "r3".into(), reader: Some(reader_at(now, 1)) },
    ));
    assert_eq!(online(&mut node, c)["count"], json!(2));

    // node-b falls silent: its readers go within the TTL, not before.
    node.advance(14_000);
    assert_eq!(online(&mut node, c)["count"], json!(2));
    node.advance(1_000);
    assert_eq!(users(&online(&mut node, c)), ["r1"]);
    assert_eq!(node.core.stats().online_readers, 1);
}

#[test]
fn a_leaving_node_is_forgotten_at_once() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    node.input(remote(
        "node-b",
        1,
        BusBody::Presence { user_id: "r2".into(), reader: Some(reader_at(node.now, 1)) },
    ));
    assert_eq!(online(&mut node, c)["count"], json!(1));
    node.input(remote("node-b", 2, BusBody::Leaving));
    assert_eq!(online(&mut node, c)["count"], json!(0));
}

#[test]
fn reader_connects_and_disconnects_are_announced() {
    let mut node = Node::new();
    let (conn, out) = node.try_connect(alice_core::TokenCheck::Verified(claims("r1", "reader")));
    let msgs = published(&out);
    assert!(
        matches!(&msgs[..], [BusMessage { body: BusBody::Presence { user_id, reader: Some(r) }, .. }] if user_id == "r1" && r.connections == 1)
    );
    let out = node.disconnect(conn);
    let msgs = published(&out);
    assert!(matches!(&msgs[..], [BusMessage { body: BusBody::Presence { reader: None, .. }, .. }]));
}

#[test]
fn an_own_event_shown_late_does_not_move_the_readers_page_back() {
    let mut node = cluster_by_hand("node-a", 1);
    let c = node.connect("c1", "consultant");
    let r1 = node.connect("r1", "reader");
    let out = node.send(r1, "reader-event", json!({"eventType": "PAGE_TURN", "data": {"page": 1}}));
    let (first, earlier) = appends(&out).remove(0);
    node.advance(5);
    let out = node.input(Input::Appended { append: first, repeats: Vec::new() });
    assert!(appends(&out).is_empty());
    let out = node.send(r1, "reader-event", json!({"eventType": "PAGE_TURN", "data": {"page": 2}}));
    let (_, later) = appends(&out).remove(0);
    // The log holds page 2 first (page 1's first append landed nowhere, its retry after).
    node.advance(5);
    node.log(later[0].to_message());
    node.advance(5);
    node.log(earlier[0].to_message());
    let r = &online(&mut node, c)["readers"][0];
    assert_eq!(r["currentPage"], json!(2));
}
