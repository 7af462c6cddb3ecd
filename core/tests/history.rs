//! Recent events: newest first, paging forward with `since`, filters, role checks, and the
//! fallback to the store once memory has forgotten events.

mod common;

use alice_core::{Config, Input, Output};
use common::*;
use serde_json::{json, Value};

fn recent(node: &mut Node, conn: alice_core::ConnId, q: Value) -> Value {
    let out = node.send(conn, "get-recent-events", q);
    let mut r = received(&out, conn, "recent-events");
    assert_eq!(r.len(), 1, "{out:?}");
    r.remove(0)
}

fn ids(v: &Value) -> Vec<String> {
    v["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

fn send_events(node: &mut Node, conn: alice_core::ConnId, types: &[&str]) -> Vec<String> {
    types
        .iter()
        .map(|t| {
            node.advance(1);
            let out = node.send(conn, "reader-event", json!({"eventType": t, "data": {"n": 1}}));
            received(&out, conn, "reader-event-received")[0]["eventId"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn newest_first_then_page_forward_with_since() {
    let mut node = Node::new();
    let c = node.connect("c1", "consultant");
    let r = node.connect("r1", "reader");
    let sent = send_events(&mut node, r, &["A", "B", "A", "B", "A"]);

    let page = recent(&mut node, c, json!({"limit": 2}));
    assert_eq!(ids(&page), [sent[4].clone(), sent[3].clone()]);
    assert_eq!(page["hasMore"], json!(true));
    let e = &page["events"][0];
    assert_eq!(e["userId"], json!("r1"));
    assert_eq!(e["eventType"], json!("A"));
    assert_eq!(e["eventData"], json!({"n": 1}));

    let all = recent(&mut node, c, json!(null));
    assert_eq!(all["hasMore"], json!(false));
    assert_eq!(ids(&all).len(), 5);

    let fwd = recent(&mut node, c, json!({"since": sent[1], "limit": 2}));
    assert_eq!(ids(&fwd), [sent[2].clone(), sent[3].clone()]);
    assert_eq!(fwd["hasMore"], json!(true));
    let fwd = recent(&mut node, c, json!({"since": sent[3]}));
    assert_eq!(ids(&fwd), [sent[4].clone()]);
    assert_eq!(fwd["hasMore"], json!(false));

    let only_a = recent(&mut node, c, json!({"eventTypes": ["A"]}));
    assert_eq!(ids(&only_a), [sent[4].clone(), sent[2].clone(), sent[0].clone()]);
}

#[test]
fn readers_see_only_their_own_events() {
    let mut node = Node::new();
    let r1 = node.connect("r1", "reader");
    let r2 = node.connect("r2", "reader");
    let c = node.connect("c1", "consultant");
    let mine = send_events(&mut node, r1, &["A"]);
    send_events(&mut node, r2, &["A"]);
    assert_eq!(ids(&recent(&mut node, r1, json!({}))), mine);
    assert_eq!(ids(&recent(&mut node, r1, json!({"userId": "r1"}))), mine);
    let out = node.send(r1, "get-recent-events", json!({"userId": "r2"}));
    let err = error_of(&out, r1);
    assert_eq!(
        (err["code"].clone(), err["message"].clone()),
        (json!("FORBIDDEN"), json!("Unauthorized access to events"))
    );
    assert_eq!(ids(&recent(&mut node, c, json!({}))).len(), 2);
    assert_eq!(ids(&recent(&mut node, c, json!({"userId": "r1"}))), mine);
}

#[test]
fn forgotten_events_are_asked_of_the_store() {
    let config = Config { history_capacity: 3, ..Config::default() };
    let mut node = Node::with_config(config);
    let c = node.connect("c1", "consultant");
    let r = node.connect("r1", "reader");
    let sent = send_events(&mut node, r, &["A", "A", "A", "A"]);
    // Memory holds three, enough for limit 2 (and to know more exist).
    assert_eq!(ids(&recent(&mut node, c, json!({"limit": 2}))), [sent[3].clone(), sent[2].clone()]);
    // Limit 3 needs a fourth to know whether more exist: ask the store.
    let out = node.send(c, "get-recent-events", json!({"limit": 3}));
    let query = match &out[..] {
        [Output::QueryStore { conn, query, .. }] if *conn == c => query.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(query.limit, 3);
    // Since an id older than memory holds: the store too.
    let out = node.send(c, "get-recent-events", json!({"since": sent[0]}));
    assert!(matches!(&out[..], [Output::QueryStore { .. }]), "{out:?}");
    // Since an id memory holds: memory answers.
    assert_eq!(ids(&recent(&mut node, c, json!({"since": sent[1]}))), [sent[2].clone(), sent[3].clone()]);
    // The store's answer reaches the socket.
    let out = node.input(Input::StoreQueryAnswered { conn: c, ack: None, answer: Some((vec![], false)) });
    assert_eq!(received(&out, c, "recent-events"), vec![json!({"events": [], "hasMore": false})]);
    let out = node.input(Input::StoreQueryAnswered { conn: c, ack: None, answer: None });
    assert_eq!(error_of(&out, c)["code"], json!("INTERNAL"));
}
