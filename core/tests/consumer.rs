//! A cluster node's storing consumer of the log, decided by the core: its own unacknowledged
//! entries first, new ones while the store keeps up, the store's batches acknowledged once kept,
//! repeats held once, a failure retried after a backoff from its pending entries, dead letters
//! kept in the group's stream, and claims and trims on their timers.

mod common;

use alice_core::consumer::{trim_point, ConsumerCommand, GroupPlace, READ_BLOCK_MS, TRIM_INTERVAL_MS};
use alice_core::{Config, Deployment, Input, LogPosition, Millis, Output, StoreFailure};
use common::*;
use serde_json::json;

fn config() -> Config {
    Config {
        deployment: Deployment::Cluster,
        store_batch_size: 2,
        store_max_attempts: 2,
        claim_idle_ms: 10_000,
        log_retain_ms: 1_000,
        ..Config::default()
    }
}

fn commands(out: &[Output]) -> Vec<ConsumerCommand> {
    out.iter()
        .filter_map(|o| match o {
            Output::Consume(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Log entries as another node appended them: (stream id, bytes).
fn entries(n: usize) -> Vec<(String, Vec<u8>)> {
    let mut other = Node::named("node-b", config(), 2);
    other.auto_append = false;
    other.input(log_opened());
    let r = other.connect("r1", "reader");
    (0..n)
        .map(|i| {
            let (append, e) =
                appends(&other.send(r, "reader-event", json!({"eventType": "T", "data": i}))).remove(0);
            other.input(Input::Appended { append, repeats: Vec::new() });
            (format!("{}-0", 1_000 + i), e[0].to_message().encode())
        })
        .collect()
}

/// A node whose first command (read its own pending entries) was answered with `pending`.
fn started(pending: Vec<(String, Vec<u8>)>) -> (Node, Vec<Output>) {
    let mut core = alice_core::Core::new(config(), "node-a", 1);
    core.handle(START, Input::Tick);
    let first: Vec<Output> = std::iter::from_fn(|| core.poll_output()).collect();
    assert_eq!(
        commands(&first),
        vec![ConsumerCommand::ReadPending { fresh: false }],
        "own pending entries first"
    );
    let mut node = Node::named("node-a", config(), 1);
    node.auto_append = false;
    let out = node.input(Input::Consumed { entries: pending });
    (node, out)
}

#[test]
fn pending_first_then_claims_trims_and_new_entries_and_what_is_stored_is_acknowledged() {
    let log = entries(3);
    let (mut node, out) = started(log[..1].to_vec());
    let (b1, events) = batches(&out).remove(0);
    assert_eq!(events.len(), 1);
    // Nothing is claimed or trimmed yet at start: both are due at once.
    assert_eq!(commands(&out), vec![ConsumerCommand::Claim { idle_ms: 10_000 }]);
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert_eq!(
        commands(&out),
        vec![ConsumerCommand::Trim { keep_from: LogPosition::START }],
        "newest read: 1000-0"
    );
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert!(commands(&out).is_empty(), "the store holds an event: no read until it takes it");
    let out = node.input(Input::Stored { batch: b1 });
    assert_eq!(commands(&out), vec![ConsumerCommand::Acknowledge { ids: vec!["1000-0".into()] }]);
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert_eq!(commands(&out), vec![ConsumerCommand::ReadNew { count: 2, block_ms: READ_BLOCK_MS }]);
    let out = node.input(Input::Consumed { entries: log[1..].to_vec() });
    let (_, events) = batches(&out).remove(0);
    assert_eq!(events.len(), 2, "both new entries go to the store");
    assert_eq!(
        commands(&out),
        vec![ConsumerCommand::ReadNew { count: 2, block_ms: 0 }],
        "a full read: more may wait"
    );
    node.advance(TRIM_INTERVAL_MS);
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert_eq!(
        commands(&out),
        vec![ConsumerCommand::Trim { keep_from: LogPosition::at(Millis(2)) }],
        "kept: the log's last second before the newest entry read (1002-0)"
    );
}

#[test]
fn a_repeated_append_is_held_once_and_both_entries_are_acknowledged() {
    let log = entries(1);
    let repeat = vec![log[0].clone(), ("1005-0".to_string(), log[0].1.clone())];
    let (mut node, out) = started(repeat);
    let (b1, events) = batches(&out).remove(0);
    assert_eq!(events.len(), 1, "one event, stored once");
    node.input(Input::Consumed { entries: Vec::new() }); // the claim
    node.input(Input::Consumed { entries: Vec::new() }); // the trim
    let out = node.input(Input::Stored { batch: b1 });
    assert_eq!(
        commands(&out),
        vec![ConsumerCommand::Acknowledge { ids: vec!["1000-0".into(), "1005-0".into()] }]
    );
}

#[test]
fn an_earlier_copy_read_after_the_later_one_goes_to_the_store_too() {
    // The later copy first (the earlier one was pending on a node that died, and is claimed).
    let log = entries(1);
    let later_first = vec![("1005-0".to_string(), log[0].1.clone()), log[0].clone()];
    let (_, out) = started(later_first);
    let stored: Vec<_> = batches(&out).into_iter().flat_map(|(_, events)| events).collect();
    let positions: Vec<String> = stored.iter().map(|e| e.position.to_string()).collect();
    assert_eq!(positions, ["1005-0", "1000-0"], "the store keeps the earliest it is given");
    assert_eq!(stored[0].id, stored[1].id);
}

#[test]
fn a_failure_backs_off_then_rereads_the_pending_entries_over_a_fresh_connection_and_keeps_its_acks() {
    let log = entries(1);
    let (mut node, out) = started(log.clone());
    let (b1, _) = batches(&out).remove(0);
    node.input(Input::Consumed { entries: Vec::new() }); // the claim
    node.input(Input::Consumed { entries: Vec::new() }); // the trim
    let out = node.input(Input::Stored { batch: b1 });
    assert!(matches!(commands(&out)[..], [ConsumerCommand::Acknowledge { .. }]));
    let out = node.input(Input::ConsumeFailed);
    assert!(commands(&out).is_empty(), "not at once");
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((50..=100).contains(&due), "first retry within [base/2, base]: {due}");
    let out = node.advance(due);
    assert_eq!(commands(&out), vec![ConsumerCommand::ReadPending { fresh: true }]);
    let out = node.input(Input::Consumed { entries: log.clone() });
    assert!(batches(&out).is_empty(), "the pending entry was stored already: not again");
    assert_eq!(
        commands(&out),
        vec![ConsumerCommand::Acknowledge { ids: vec!["1000-0".into()] }],
        "the lost acknowledgement is sent again"
    );
}

#[test]
fn an_event_the_store_keeps_refusing_goes_to_the_dead_letter_stream() {
    let log = entries(1);
    let (mut node, out) = started(log);
    let (b1, events) = batches(&out).remove(0);
    node.input(Input::Consumed { entries: Vec::new() }); // the claim
    node.input(Input::Consumed { entries: Vec::new() }); // the trim
    node.input(Input::StoreFailed { batch: b1, failure: StoreFailure::Rejected });
    let due = node.core.poll_timeout().unwrap().since(node.now);
    let (b2, _) = batches(&node.advance(due)).remove(0);
    let out = node.input(Input::StoreFailed { batch: b2, failure: StoreFailure::Rejected });
    assert_eq!(
        commands(&out),
        vec![ConsumerCommand::DeadLetter { events: events.clone(), ids: vec!["1000-0".into()] }]
    );
    assert_eq!(node.core.stats().events_dead_lettered, 1);
    assert!(
        !out.iter().any(|o| matches!(o, Output::DeadLettered { .. })),
        "not the outbox's: Redis keeps it"
    );
}

#[test]
fn an_entry_that_is_no_event_is_acknowledged_unstored() {
    let (node, out) = started(vec![("1000-0".into(), vec![0xff])]);
    assert!(batches(&out).is_empty());
    assert_eq!(commands(&out), vec![ConsumerCommand::Acknowledge { ids: vec!["1000-0".into()] }], "at once");
    assert_eq!(node.core.stats().bus_malformed, 1);
}

#[test]
fn claims_come_every_half_claim_interval() {
    let (mut node, _) = started(Vec::new());
    node.input(Input::Consumed { entries: Vec::new() }); // the claim
    node.input(Input::Consumed { entries: Vec::new() }); // the trim
    let out = node.input(Input::Consumed { entries: Vec::new() }); // a blocking read
    assert_eq!(commands(&out), vec![ConsumerCommand::ReadNew { count: 2, block_ms: READ_BLOCK_MS }]);
    node.advance(5_000);
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert_eq!(commands(&out), vec![ConsumerCommand::Claim { idle_ms: 10_000 }]);
}

#[test]
fn a_read_that_found_entries_is_followed_by_the_next_only_after_the_pace() {
    let pace = Config::default().log_store_pace_ms;
    assert!(pace > 0, "paced by default");
    let log = entries(2);
    let (mut node, out) = started(Vec::new());
    assert!(batches(&out).is_empty());
    node.input(Input::Consumed { entries: Vec::new() }); // the claim
    let out = node.input(Input::Consumed { entries: Vec::new() }); // the trim
    assert_eq!(commands(&out), vec![ConsumerCommand::ReadNew { count: 2, block_ms: READ_BLOCK_MS }]);
    let out = node.input(Input::Consumed { entries: log[..1].to_vec() });
    let (b1, _) = batches(&out).remove(0);
    // The store is slower than the pace. A pace kept once it is over would leave the consumer's
    // timer due in the past, and the core would run it again and again: this call would never
    // return (it did not, before the pace was cleared).
    node.advance(pace + 1);
    let out = node.input(Input::Stored { batch: b1 });
    assert_eq!(commands(&out), vec![ConsumerCommand::Acknowledge { ids: vec!["1000-0".into()] }]);
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert_eq!(
        commands(&out),
        vec![ConsumerCommand::ReadNew { count: 2, block_ms: READ_BLOCK_MS }],
        "the pace is over: the store's being idle is enough"
    );
    let out = node.input(Input::Consumed { entries: log[1..].to_vec() });
    let (b2, _) = batches(&out).remove(0);
    let out = node.input(Input::Stored { batch: b2 });
    assert_eq!(commands(&out), vec![ConsumerCommand::Acknowledge { ids: vec!["1001-0".into()] }]);
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert!(commands(&out).is_empty(), "the store is idle, but the last read found an entry: wait");
    let out = node.advance(pace - 1);
    assert!(commands(&out).is_empty(), "not before the pace");
    let out = node.advance(1);
    assert_eq!(commands(&out), vec![ConsumerCommand::ReadNew { count: 2, block_ms: READ_BLOCK_MS }]);
    // A read that found nothing waits for no pace.
    let out = node.input(Input::Consumed { entries: Vec::new() });
    assert_eq!(commands(&out), vec![ConsumerCommand::ReadNew { count: 2, block_ms: READ_BLOCK_MS }]);
}

#[test]
fn a_read_that_filled_its_count_holds_no_pace_over_the_next() {
    let log = entries(4);
    let (mut node, _) = started(Vec::new());
    node.input(Input::Consumed { entries: Vec::new() }); // the claim
    node.input(Input::Consumed { entries: Vec::new() }); // the trim
    let out = node.input(Input::Consumed { entries: log[..2].to_vec() });
    assert_eq!(commands(&out), vec![ConsumerCommand::ReadNew { count: 2, block_ms: 0 }], "full: read on");
    let mut waiting: std::collections::VecDeque<_> = batches(&out).into_iter().collect();
    let out = node.input(Input::Consumed { entries: log[2..].to_vec() });
    assert!(commands(&out).is_empty(), "the store queue is full: no read until it takes some");
    waiting.extend(batches(&out));
    // The store takes every batch it is given, each acknowledged in turn, until it is idle.
    while let Some((batch, _)) = waiting.pop_front() {
        let out = node.input(Input::Stored { batch });
        waiting.extend(batches(&out));
        assert!(matches!(commands(&out)[..], [ConsumerCommand::Acknowledge { .. }]), "{out:?}");
        let out = node.input(Input::Consumed { entries: Vec::new() });
        let reads = commands(&out);
        if !reads.is_empty() {
            assert!(waiting.is_empty(), "a read while the store holds events: {reads:?}");
            assert_eq!(reads, vec![ConsumerCommand::ReadNew { count: 2, block_ms: READ_BLOCK_MS }]);
            return;
        }
    }
    panic!("the store is idle and the last read filled its count: the next read must not wait for the pace");
}

#[test]
fn the_log_is_trimmed_behind_every_group_and_never_past_the_retained_stretch() {
    let at = |ms: u64, seq: u64| LogPosition { ms, seq };
    let group = |given_to, oldest_pending| GroupPlace { given_to, oldest_pending };
    let keep_from = at(100, 0);
    // Behind the group furthest back: its oldest unacknowledged entry, or its last given.
    let groups = [group(at(90, 0), Some(at(50, 2))), group(at(70, 0), None)];
    assert_eq!(trim_point(keep_from, &groups), Some(at(50, 2)));
    // Never past the retained stretch, however far every group has stored.
    assert_eq!(trim_point(keep_from, &[group(at(500, 0), None)]), Some(keep_from));
    // A group set back to where a new file ends, its entries from before still unacknowledged:
    // the entries after its new place are not stored in that file yet.
    let set_back = group(at(20, 0), Some(at(60, 0)));
    assert_eq!(set_back.unstored_from(), at(20, 0));
    assert_eq!(trim_point(keep_from, &[set_back, group(at(90, 0), None)]), Some(at(20, 0)));
    // A group set back to the log's beginning holds every entry.
    assert_eq!(trim_point(keep_from, &[group(LogPosition::START, Some(at(60, 0)))]), None);
    // No group, nothing retained: nothing to trim.
    assert_eq!(trim_point(LogPosition::START, &[]), None);
}
