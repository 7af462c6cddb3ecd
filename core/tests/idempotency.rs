//! `clientEventId`: a repeat of a key on its way into the log waits for the first's answer; the
//! log (the store's commit, or Redis) decides repeats of keys it already holds, and the core then
//! answers like the first, with `duplicate: true`, and shows, stores and counts nothing.

mod common;

use alice_core::{Input, Output};
use common::*;
use serde_json::{json, Value};

fn receipts(out: &[Output], conn: alice_core::ConnId) -> Vec<Value> {
    received(out, conn, "reader-event-received")
}

fn keyed(node: &mut Node, conn: alice_core::ConnId, key: &str) -> Vec<Output> {
    node.send(conn, "reader-event", json!({"eventType": "A", "clientEventId": key}))
}

#[test]
fn a_repeat_while_the_first_is_on_its_way_gets_the_first_answer_when_it_is_durable() {
    let mut node = Node::new();
    node.auto_append = false;
    let r = node.connect("r1", "reader");
    let tab = node.connect("r1", "reader");
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let (append, entries) = appends(&keyed(&mut node, r, "k1")).remove(0);
    assert_eq!(entries[0].key.as_deref(), Some("k1"));
    let out = keyed(&mut node, tab, "k1");
    assert!(appends(&out).is_empty() && receipts(&out, tab).is_empty(), "waits, not appended: {out:?}");
    let out = keyed(&mut node, r, "k1");
    assert!(appends(&out).is_empty());

    let out = node.input(Input::Appended { append, repeats: Vec::new() });
    let id = entries[0].event.id.to_string();
    let first = receipts(&out, r);
    assert_eq!(first.len(), 2, "the first answer and the repeat's");
    assert_eq!((first[0]["eventId"].clone(), first[0]["duplicate"].clone()), (json!(id), json!(false)));
    assert_eq!((first[1]["eventId"].clone(), first[1]["duplicate"].clone()), (json!(id), json!(true)));
    let other = receipts(&out, tab);
    assert_eq!((other[0]["eventId"].clone(), other[0]["duplicate"].clone()), (json!(id), json!(true)));
    assert_eq!(activity_ids(&out, c), [id], "shown once");
    let s = node.core.stats();
    assert_eq!((s.events_accepted, s.duplicates), (1, 0), "a repeat that waited is not an event");
}

#[test]
fn a_key_the_log_already_holds_is_answered_as_its_first_and_nothing_else_happens() {
    let mut node = Node::new();
    node.auto_append = false;
    let r = node.connect("r1", "reader");
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let (append, entries) = appends(&keyed(&mut node, r, "k1")).remove(0);
    let earlier = uuid::Uuid::from_u128(7);
    let out = node.input(Input::Appended { append, repeats: vec![(entries[0].event.id, earlier)] });
    let receipt = &receipts(&out, r)[0];
    assert_eq!(
        (receipt["eventId"].clone(), receipt["duplicate"].clone()),
        (json!(earlier.to_string()), json!(true))
    );
    assert!(activity_ids(&out, c).is_empty(), "not delivered");
    assert!(batches(&out).is_empty(), "not stored");
    let s = node.core.stats();
    assert_eq!((s.events_accepted, s.duplicates, s.history_size), (0, 1, 0));
    // The key is free in the core again: the next repeat asks the log too.
    assert_eq!(appends(&keyed(&mut node, r, "k1")).len(), 1);
}

#[test]
fn keys_are_per_user_and_events_without_one_are_never_held() {
    let mut node = Node::new();
    node.auto_append = false;
    let r1 = node.connect("r1", "reader");
    let r2 = node.connect("r2", "reader");
    let (first, _) = appends(&keyed(&mut node, r1, "same")).remove(0);
    keyed(&mut node, r2, "same");
    node.send(r1, "reader-event", json!({"eventType": "A"}));
    node.send(r1, "reader-event", json!({"eventType": "A"}));
    // All go in the log's next append: another user's key is no repeat, and no key is none.
    let out = node.input(Input::Appended { append: first, repeats: Vec::new() });
    let (_, next) = appends(&out).remove(0);
    assert_eq!(next.len(), 3);
    assert_eq!(next[0].key.as_deref(), Some("same"));
    assert!(next[1..].iter().all(|e| e.key.is_none()));
}
