//! Receipts once queued (a cluster's setting): an event is acknowledged only when its store batch
//! is confirmed, so a node that crashes before Redis has the event has acknowledged nothing.

mod common;

use alice_core::{AckId, BatchId, Config, Input, Output, StoreFailure};
use common::*;
use serde_json::{json, Value};

fn config() -> Config {
    Config {
        receipt_once_queued: true,
        store_batch_size: 10,
        store_retry_base_ms: 100,
        store_retry_max_ms: 1_000,
        ..Config::default()
    }
}

fn send_with_ack(node: &mut Node, conn: alice_core::ConnId, ack: u64, event_type: &str) -> Vec<Output> {
    node.input(Input::ClientEvent {
        conn,
        name: "reader-event".into(),
        args: vec![json!({"eventType": event_type})],
        has_binary: false,
        ack: Some(AckId(ack)),
    })
}

fn batch_of(out: &[Output]) -> Option<(BatchId, Vec<String>)> {
    out.iter().find_map(|o| match o {
        Output::StoreBatch { batch, events } => {
            Some((*batch, events.iter().map(|e| e.id.to_string()).collect()))
        }
        _ => None,
    })
}

/// Acknowledgements answered in `out`: (ack id, payload).
fn acks(out: &[Output]) -> Vec<(u64, Value)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Ack { ack, payload, .. } => Some((ack.0, payload.value())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_receipt_waits_for_the_batch_but_delivery_does_not() {
    let mut node = Node::with_config(config());
    let r = node.connect("r1", "reader");
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));

    let out = send_with_ack(&mut node, r, 1, "T");
    assert_eq!(received(&out, c, "reader-activity").len(), 1, "delivered at once");
    assert!(acks(&out).is_empty(), "no acknowledgement before the batch is stored: {out:?}");
    assert!(received(&out, r, "reader-event-received").is_empty());
    let (batch, ids) = batch_of(&out).expect("a store batch");

    let out = node.input(Input::Stored { batch });
    let answered = acks(&out);
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].0, 1);
    assert_eq!(answered[0].1["ok"], true);
    assert_eq!(answered[0].1["eventId"], ids[0].as_str());
    let receipt = received(&out, r, "reader-event-received");
    assert_eq!(receipt, vec![json!({"message": "Event received and queued", "eventId": ids[0]})]);
}

#[test]
fn events_waiting_behind_a_batch_are_acknowledged_with_their_own_batch() {
    let mut node = Node::with_config(config());
    let r = node.connect("r1", "reader");
    let (first, _) = batch_of(&send_with_ack(&mut node, r, 1, "T")).unwrap();
    assert!(acks(&send_with_ack(&mut node, r, 2, "T")).is_empty());
    assert!(acks(&send_with_ack(&mut node, r, 3, "T")).is_empty());

    let out = node.input(Input::Stored { batch: first });
    assert_eq!(acks(&out).iter().map(|a| a.0).collect::<Vec<_>>(), vec![1]);
    let (second, ids) = batch_of(&out).expect("the next batch");
    assert_eq!(ids.len(), 2);
    let out = node.input(Input::Stored { batch: second });
    assert_eq!(acks(&out).iter().map(|a| a.0).collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn a_failed_batch_holds_its_receipts_until_a_retry_is_stored() {
    let mut node = Node::with_config(config());
    let r = node.connect("r1", "reader");
    let (b1, _) = batch_of(&send_with_ack(&mut node, r, 1, "T")).unwrap();
    let out = node.input(Input::StoreFailed { batch: b1, failure: StoreFailure::Unavailable });
    assert!(acks(&out).is_empty(), "a failure acknowledges nothing");
    let due = node.core.poll_timeout().unwrap().since(node.now);
    let (b2, _) = batch_of(&node.advance(due)).expect("the retry");
    assert_eq!(acks(&node.input(Input::Stored { batch: b2 })).len(), 1);
}

#[test]
fn a_sender_gone_before_the_batch_is_stored_is_told_nothing() {
    let mut node = Node::with_config(config());
    let r = node.connect("r1", "reader");
    let (batch, _) = batch_of(&send_with_ack(&mut node, r, 1, "T")).unwrap();
    node.disconnect(r);
    let out = node.input(Input::Stored { batch });
    assert!(out.iter().all(|o| !matches!(o, Output::Ack { .. } | Output::Emit { .. })), "{out:?}");
    assert_eq!(node.core.stats().queue_size, 0, "the event is stored all the same");
}

#[test]
fn a_dead_lettered_event_is_acknowledged_as_held() {
    let mut node = Node::with_config(Config { store_max_attempts: 1, ..config() });
    let r = node.connect("r1", "reader");
    let (batch, _) = batch_of(&send_with_ack(&mut node, r, 1, "POISON")).unwrap();
    let out = node.input(Input::StoreFailed { batch, failure: StoreFailure::Rejected });
    assert_eq!(acks(&out).len(), 1, "held in the dead-letter queue, replayable by an admin");
    assert_eq!(node.core.stats().dlq_size, 1);
}

#[test]
fn without_the_setting_the_receipt_comes_at_once() {
    let mut node = Node::with_config(Config { receipt_once_queued: false, ..config() });
    let r = node.connect("r1", "reader");
    let out = send_with_ack(&mut node, r, 1, "T");
    assert_eq!(acks(&out).len(), 1);
    let (batch, _) = batch_of(&out).unwrap();
    assert!(acks(&node.input(Input::Stored { batch })).is_empty(), "and only once");
}
