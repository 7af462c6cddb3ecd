//! A cluster node's bus messages on their way to Redis, decided by the core: one batch out at a
//! time, what comes meanwhile in the next, a failed batch sent again after a backoff, and the
//! oldest dropped (and counted) only when Redis stays away long enough to fill the outbox.

mod common;

use alice_core::bus::{BusBody, BusMessage};
use alice_core::bus_outbox::{BusOutbox, CAPACITY};
use alice_core::{Config, Deployment, Input, Millis, Output};
use common::*;

fn broadcasts(out: &[Output]) -> Vec<Vec<BusMessage>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Broadcast { messages } => Some(messages.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn one_batch_at_a_time_and_a_failed_one_is_sent_again_after_a_backoff() {
    let mut core =
        alice_core::Core::new(Config { deployment: Deployment::Cluster, ..Config::default() }, "node-a", 1);
    core.handle(START, Input::Tick);
    let first: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
    let heartbeat = broadcasts(&first);
    assert_eq!(heartbeat.len(), 1, "the first heartbeat goes at once");
    assert!(first.iter().all(|o| !matches!(o, Output::Publish(_))), "never the single node's loopback");
    let mut node = Node::named("node-a", Config { deployment: Deployment::Cluster, ..Config::default() }, 1);
    let r = node.connect("r1", "reader");
    node.disconnect(r);
    assert!(broadcasts(&node.drain()).is_empty());
    let out = node.input(Input::BroadcastFailed);
    assert!(broadcasts(&out).is_empty(), "not at once");
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((50..=100).contains(&due), "first retry within [base/2, base]: {due}");
    let again = broadcasts(&node.advance(due)).remove(0);
    let bodies: Vec<_> = again.iter().map(|m| std::mem::discriminant(&m.body)).collect();
    assert_eq!(again.len(), 3, "the heartbeat, then the reader's connect and leave: {bodies:?}");
    assert!(matches!(again[0].body, BusBody::Heartbeat { .. }));
    assert_eq!(node.core.stats().bus_outbox, 3);
    node.input(Input::Broadcasted);
    assert_eq!(node.core.stats().bus_outbox, 0);
}

#[test]
fn a_full_outbox_drops_its_oldest_waiting_message_and_counts_it() {
    let mut outbox = BusOutbox::new(1);
    let msg = |seq| BusMessage { origin: "a".into(), incarnation: 1, seq, body: BusBody::Leaving };
    outbox.push(msg(0));
    let out = outbox.next(Millis(0)).unwrap();
    assert_eq!(out.len(), 1);
    for seq in 1..=CAPACITY as u64 {
        outbox.push(msg(seq));
    }
    assert_eq!((outbox.len(), outbox.dropped()), (CAPACITY, 1), "the oldest waiting, not the one out");
    outbox.sent();
    let next = outbox.next(Millis(0)).unwrap();
    assert_eq!(next[0].seq, 2, "message 1 was dropped; 0 went out");
}
