//! A cluster node's reading of the log and the bus, decided by the core: where each read starts,
//! one read per stream at a time, backoff and a fresh connection after a failure, and a silent
//! bus read over a fresh connection.

mod common;

use alice_core::bus::{BusBody, BusMessage};
use alice_core::{Config, Deployment, Input, Output, ReadFrom, Stream};
use common::*;
use serde_json::json;

fn reads(out: &[Output]) -> Vec<(Stream, ReadFrom, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Read { stream, from, fresh } => Some((*stream, from.clone(), *fresh)),
            _ => None,
        })
        .collect()
}

/// A cluster node, and what a node like it asks for on its first input.
fn cluster() -> (Node, Vec<Output>) {
    let config = || Config { deployment: Deployment::Cluster, ..Config::default() };
    let mut core = alice_core::Core::new(config(), "node-a", 1);
    core.handle(START, Input::Tick);
    let first = std::iter::from_fn(|| core.poll_output()).collect();
    let mut node = Node::named("node-a", config(), 1);
    node.auto_append = false;
    (node, first)
}

/// A read's answer: `entries` get stream ids in the millisecond of `position`, in order.
fn read(stream: Stream, position: &str, entries: Vec<Vec<u8>>) -> Input {
    let ms = position.split('-').next().unwrap();
    let entries = entries.into_iter().enumerate().map(|(i, bytes)| (format!("{ms}-{i}"), bytes)).collect();
    Input::Read { stream, position: Some(position.into()), entries, at_end: true }
}

#[test]
fn a_cluster_node_first_learns_where_each_stream_ends_and_appends_wait_for_the_log() {
    let (mut node, first) = cluster();
    assert_eq!(
        reads(&first),
        vec![
            (Stream::Log, ReadFrom::Opening { stored: None }, false),
            (Stream::Bus, ReadFrom::Opening { stored: None }, false)
        ]
    );
    let r = node.connect("r1", "reader");
    assert!(appends(&node.send(r, "reader-event", json!({"eventType": "A"}))).is_empty());
    let out = node.input(read(Stream::Log, "17-3", Vec::new()));
    assert_eq!(reads(&out), vec![(Stream::Log, ReadFrom::After("17-3".into()), false)]);
    assert_eq!(appends(&out).len(), 1, "the log is open: the waiting event goes out");
}

#[test]
fn one_read_at_a_time_each_starting_after_the_last_entry_read() {
    let (mut node, _) = cluster();
    assert!(reads(&node.advance(1_000)).is_empty(), "both reads are still out");
    node.input(read(Stream::Log, "17-3", Vec::new()));
    let out = node.input(read(Stream::Log, "20-0", Vec::new()));
    assert_eq!(reads(&out), vec![(Stream::Log, ReadFrom::After("20-0".into()), false)]);
}

#[test]
fn a_failed_read_waits_out_a_backoff_and_reads_on_from_where_it_stopped_over_a_new_connection() {
    let (mut node, _) = cluster();
    node.input(read(Stream::Log, "17-3", Vec::new()));
    let out = node.input(Input::ReadFailed { stream: Stream::Log });
    assert!(reads(&out).is_empty(), "not at once");
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((50..=100).contains(&due), "first retry within [base/2, base]: {due}");
    let out = node.advance(due);
    assert_eq!(reads(&out), vec![(Stream::Log, ReadFrom::After("17-3".into()), true)]);
    node.input(Input::ReadFailed { stream: Stream::Log });
    let due = node.core.poll_timeout().unwrap().since(node.now);
    assert!((100..=200).contains(&due), "the backoff doubles: {due}");
    node.advance(due);
    let out = node.input(read(Stream::Log, "18-0", Vec::new()));
    assert_eq!(reads(&out), vec![(Stream::Log, ReadFrom::After("18-0".into()), false)], "and resets");
}

#[test]
fn a_bus_silent_for_a_presence_ttl_is_read_over_a_fresh_connection_and_counted() {
    let (mut node, _) = cluster();
    node.input(read(Stream::Bus, "1-0", Vec::new()));
    node.advance(10_000);
    let out = node.input(read(Stream::Bus, "1-0", Vec::new()));
    assert_eq!(reads(&out), vec![(Stream::Bus, ReadFrom::After("1-0".into()), false)], "not silent yet");
    node.advance(5_001);
    let out = node.input(read(Stream::Bus, "1-0", Vec::new()));
    assert_eq!(reads(&out), vec![(Stream::Bus, ReadFrom::After("1-0".into()), true)]);
    assert_eq!(node.core.stats().bus_repairs, 1);
    let heartbeat = BusMessage {
        origin: "node-a".into(),
        incarnation: 9,
        seq: 1,
        body: BusBody::Heartbeat { readers: Default::default() },
    };
    node.advance(14_000);
    node.input(read(Stream::Bus, "2-0", vec![heartbeat.encode()]));
    node.advance(14_000);
    node.input(read(Stream::Bus, "2-0", Vec::new()));
    assert_eq!(node.core.stats().bus_repairs, 1, "an entry a TTL ago keeps the bus alive");
}

#[test]
fn entries_read_from_the_log_are_decoded_and_shown_in_order_and_garbage_is_counted() {
    let (mut node, _) = cluster();
    let c = node.connect("c1", "consultant");
    node.send(c, "subscribe-consultant", json!({"consultantId": "c1"}));
    node.input(log_opened());
    let mut other = Node::named("node-b", Config { deployment: Deployment::Cluster, ..Config::default() }, 2);
    other.auto_append = false;
    other.input(log_opened());
    let r = other.connect("r1", "reader");
    let mut entries = Vec::new();
    for ty in ["A", "B"] {
        let (append, e) = appends(&other.send(r, "reader-event", json!({"eventType": ty}))).remove(0);
        other.input(Input::Appended { append, repeats: Vec::new() });
        entries.push(e[0].to_message().encode());
    }
    entries.insert(1, vec![0xff, 1, 2]);
    let out = node.input(read(Stream::Log, "9-0", entries));
    let types: Vec<_> = received(&out, c, "reader-activity").iter().map(|a| a["eventType"].clone()).collect();
    assert_eq!(types, [json!("A"), json!("B")]);
    assert_eq!(node.core.stats().bus_malformed, 1);
}

#[test]
fn a_read_that_found_entries_is_followed_by_the_next_only_after_the_pace() {
    // No budget: every read that found entries is paced.
    let config = Config { deployment: Deployment::Cluster, log_read_budget: 0, ..Config::default() };
    let mut node = Node::named("node-a", config, 1);
    node.auto_append = false;
    node.input(log_opened());
    let mut other = Node::named("node-b", Config { deployment: Deployment::Cluster, ..Config::default() }, 2);
    other.auto_append = false;
    other.input(log_opened());
    let r = other.connect("r1", "reader");
    let (append, e) = appends(&other.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
    other.input(Input::Appended { append, repeats: Vec::new() });
    let out = node.input(read(Stream::Log, "9-0", vec![e[0].to_message().encode()]));
    assert!(reads(&out).is_empty(), "not at once: more entries come with a moment's wait");
    let pace = Config::default().log_read_pace_ms;
    assert_eq!(node.core.poll_timeout(), Some(node.now.plus(pace)));
    let out = node.advance(pace);
    assert_eq!(reads(&out), vec![(Stream::Log, ReadFrom::After("9-0".into()), false)]);
    let out = node.input(read(Stream::Log, "9-0", Vec::new()));
    assert_eq!(reads(&out).len(), 1, "an empty read is followed at once: it waits in Redis");
}

/// `n` entries another node appended, as the log holds them.
fn entries_of_another_node(n: usize) -> Vec<Vec<u8>> {
    let mut other = Node::named("node-b", Config { deployment: Deployment::Cluster, ..Config::default() }, 2);
    other.auto_append = false;
    other.input(log_opened());
    let mut entries = Vec::new();
    for i in 0..n {
        let r = other.connect(&format!("r{i}"), "reader");
        let (append, e) = appends(&other.send(r, "reader-event", json!({"eventType": "A"}))).remove(0);
        other.input(Input::Appended { append, repeats: Vec::new() });
        entries.push(e[0].to_message().encode());
    }
    entries
}

#[test]
fn a_quiet_log_is_read_as_entries_come_and_a_busy_one_after_the_pace() {
    // Reading every entry at once costs up to (nodes + 1) commands per entry: 3 here, once the
    // other node is heard, so with a budget of 100 the pace starts at 34 entries a second.
    let config = Config { deployment: Deployment::Cluster, log_read_budget: 100, ..Config::default() };
    let pace = config.log_read_pace_ms;
    let mut node = Node::named("node-a", config, 1);
    node.auto_append = false;
    node.input(log_opened());
    let mut entries = entries_of_another_node(70);

    let out = node.input(read(Stream::Log, "9-0", entries.drain(..1).collect()));
    assert_eq!(reads(&out).len(), 1, "no rate known yet: read on at once");
    node.advance(1_000);
    let out = node.input(read(Stream::Log, "10-0", entries.drain(..33).collect()));
    assert_eq!(reads(&out).len(), 1, "1 entry in the last second, 3 commands a second unpaced: at once");
    node.advance(1_000);
    let out = node.input(read(Stream::Log, "11-0", entries.drain(..34).collect()));
    assert_eq!(reads(&out).len(), 1, "33 entries in the last second, 99 commands a second unpaced: at once");
    node.advance(1_000);
    let out = node.input(read(Stream::Log, "12-0", entries.drain(..1).collect()));
    assert!(reads(&out).is_empty(), "34 entries in the last second, 102 commands a second unpaced: paced");
    assert_eq!(node.core.poll_timeout(), Some(node.now.plus(pace)));
    assert_eq!(reads(&node.advance(pace)).len(), 1);

    node.advance(1_000);
    let out = node.input(read(Stream::Log, "13-0", entries.drain(..1).collect()));
    assert_eq!(reads(&out).len(), 1, "quiet again (1 entry in the last second): read on at once");
}
