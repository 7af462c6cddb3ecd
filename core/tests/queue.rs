//! The store queue behind a local outbox: batches, retries with backoff, poison isolation, dead
//! letters (handed to the shell to keep), replay, and refusing new events when full. The log is
//! confirmed at once here (the harness's `auto_append`); `log.rs` tests the log itself.

mod common;

use alice_core::{BatchId, Config, Deployment, Input, Output, StoreFailure};
use common::*;
use serde_json::json;

fn config() -> Config {
    Config {
        store_batch_size: 3,
        store_max_attempts: 3,
        store_retry_base_ms: 100,
        store_retry_max_ms: 1_000,
        event_queue_capacity: 5,
        deployment: Deployment::SingleOutbox,
        ..Config::default()
    }
}

#[test]
fn one_batch_in_flight_then_the_next() {
    let mut node = Node::with_config(config());
    let r = node.connect("r1", "reader");
    let first = batches(&node.send(r, "reader-event", json!({"eventType": "T"})));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1.len(), 1);
    for _ in 0..4 {
        assert!(batches(&node.send(r, "reader-event", json!({"eventType": "T"}))).is_empty());
    }
    assert_eq!(node.core.stats().queue_size, 5);
    let next = batches(&node.input(Input::Stored { batch: first[0].0 }));
    assert_eq!(next[0].1.len(), 3, "up to the batch size");
    let last = batches(&node.input(Input::Stored { batch: next[0].0 }));
    assert_eq!(last[0].1.len(), 1);
    assert!(batches(&node.input(Input::Stored { batch: last[0].0 })).is_empty());
    assert_eq!(node.core.stats().queue_size, 0);
}

#[test]
fn a_full_queue_refuses_with_unavailable_and_keeps_the_token() {
    let mut node = Node::with_config(Config { reader_event_burst: 6, ..config() });
    let r = node.connect("r1", "reader");
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    let mut first = None;
    for _ in 0..5 {
        let out = node.send(r, "reader-event", json!({"eventType": "T"}));
        first = first.or(batches(&out).first().map(|b| b.0));
    }
    let (out, ack) = node.send_ack(r, "reader-event", vec![json!({"eventType": "T"})]);
    assert_eq!(error_of(&out, r)["code"], json!("UNAVAILABLE"));
    assert_eq!(ack["ok"], json!(false));
    assert!(received(&out, c, "reader-activity").is_empty(), "a refused event is not delivered");
    node.input(Input::Stored { batch: first.unwrap() });
    // Room again, and the refused attempt cost no token: the sixth of six succeeds.
    let out = node.send(r, "reader-event", json!({"eventType": "T"}));
    assert_eq!(received(&out, r, "reader-event-received").len(), 1);
}

#[test]
fn unavailable_store_retries_the_batch_with_backoff_then_dead_letters() {
    let mut node = Node::with_config(config());
    let r = node.connect("r1", "reader");
    let (b1, events) = batches(&node.send(r, "reader-event", json!({"eventType": "T"}))).remove(0);
    node.input(Input::StoreFailed { batch: b1, failure: StoreFailure::Unavailable });
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((50..=100).contains(&due), "first retry within [base/2, base]: {due}");
    let (b2, again) = batches(&node.advance(due)).remove(0);
    assert_eq!(again, events);
    node.input(Input::StoreFailed { batch: b2, failure: StoreFailure::Unavailable });
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((100..=200).contains(&due), "second retry doubles: {due}");
    let (b3, _) = batches(&node.advance(due)).remove(0);
    let out = node.input(Input::StoreFailed { batch: b3, failure: StoreFailure::Unavailable });
    let kept: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::DeadLettered { events } => Some(events.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(kept, vec![events.clone()], "the shell is told to keep the dead letter");
    let s = node.core.stats();
    assert_eq!((s.queue_size, s.dlq_size, s.events_dead_lettered), (0, 1, 1));

    assert_eq!(node.core.replay_dead_letters(node.now), 1);
    let replayed = batches(&node.drain());
    assert_eq!(replayed[0].1, events);
    node.input(Input::Stored { batch: replayed[0].0 });
    let s = node.core.stats();
    assert_eq!((s.queue_size, s.dlq_size), (0, 0));
}

#[test]
fn a_rejected_batch_is_retried_one_event_at_a_time() {
    let mut node = Node::with_config(Config { store_max_attempts: 2, ..config() });
    let r = node.connect("r1", "reader");
    let (b0, _) = batches(&node.send(r, "reader-event", json!({"eventType": "T"}))).remove(0);
    for _ in 0..3 {
        node.send(r, "reader-event", json!({"eventType": "T"}));
    }
    let (b1, three) = batches(&node.input(Input::Stored { batch: b0 })).remove(0);
    assert_eq!(three.len(), 3);
    node.input(Input::StoreFailed { batch: b1, failure: StoreFailure::Rejected });
    // Each event comes back alone; the poison one (the second) fails again and is dead-lettered.
    let mut stored = Vec::new();
    let mut next = Vec::new();
    for _ in 0..3 {
        if next.is_empty() {
            let due = node.core.poll_timeout().unwrap().since(node.now);
            next = batches(&node.advance(due));
        }
        let (b, events) = next.remove(0);
        assert_eq!(events.len(), 1);
        let out = if events[0].id == three[1].id {
            node.input(Input::StoreFailed { batch: b, failure: StoreFailure::Rejected })
        } else {
            stored.push(events[0].id);
            node.input(Input::Stored { batch: b })
        };
        next.extend(batches(&out));
    }
    assert_eq!(stored, vec![three[0].id, three[2].id]);
    assert_eq!(node.core.stats().dlq_size, 1);
}

#[test]
fn a_stale_or_unknown_batch_result_changes_nothing() {
    let mut node = Node::with_config(config());
    let r = node.connect("r1", "reader");
    node.send(r, "reader-event", json!({"eventType": "T"}));
    assert!(node.input(Input::Stored { batch: BatchId(999) }).is_empty());
    assert!(node
        .input(Input::StoreFailed { batch: BatchId(999), failure: StoreFailure::Rejected })
        .is_empty());
    assert_eq!(node.core.stats().queue_size, 1);
}

fn lingering() -> Config {
    Config { store_batch_linger_ms: 50, event_queue_capacity: 10, ..config() }
}

#[test]
fn a_batch_lingers_for_more_events_unless_it_fills() {
    let mut node = Node::with_config(lingering());
    let r = node.connect("r1", "reader");
    let event = json!({"eventType": "T"});
    assert!(batches(&node.send(r, "reader-event", event.clone())).is_empty(), "the first event waits");
    assert_eq!(node.core.poll_timeout(), Some(node.now.plus(50)), "a timer for the linger");
    assert!(batches(&node.advance(20)).is_empty());
    assert!(batches(&node.send(r, "reader-event", event.clone())).is_empty());
    assert!(batches(&node.advance(29)).is_empty(), "the linger counts from the oldest event");
    let (first, events) = batches(&node.advance(1)).remove(0);
    assert_eq!(events.len(), 2);

    // While that batch is with the store, three more fill the next: it goes as soon as it can.
    for _ in 0..3 {
        assert!(batches(&node.send(r, "reader-event", event.clone())).is_empty());
    }
    let full = batches(&node.input(Input::Stored { batch: first }));
    assert_eq!(full[0].1.len(), 3, "a full batch does not linger");
    assert_eq!(node.core.stats().queue_size, 3);
}

#[test]
fn events_that_waited_through_a_batch_go_when_it_returns() {
    let mut node = Node::with_config(lingering());
    let r = node.connect("r1", "reader");
    let event = json!({"eventType": "T"});
    node.send(r, "reader-event", event.clone());
    let (first, _) = batches(&node.advance(50)).remove(0);
    node.advance(10);
    assert!(batches(&node.send(r, "reader-event", event.clone())).is_empty(), "one batch at a time");
    node.advance(60);
    let next = batches(&node.input(Input::Stored { batch: first }));
    assert_eq!(next[0].1.len(), 1, "it has lingered long enough while the first was stored");
    node.input(Input::Stored { batch: next[0].0 });
    assert_eq!(node.core.stats().queue_size, 0);
    assert_eq!(node.core.poll_timeout().map(|t| t > node.now.plus(50)), Some(true), "no store timer left");
}
