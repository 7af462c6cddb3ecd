//! Inputs that arrived together, handed to the core as one [`Input::Burst`], are handled as they
//! would be one by one while the log takes its time: for random mixes of reader events (some
//! refused, some repeating a `clientEventId`), subscriptions, rooms, presence queries and
//! disconnects, grouped into random bursts with time passing between them, every socket
//! receives the same `reader-activity` in the same order and the same replies, receipts, acks
//! and errors, in order; the log gets the same events in the same order, and each burst asks it
//! for one append at most.

mod common;

use alice_core::{AckId, Config, ConnId, Deployment, Input, Output};
use common::Node;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const TYPES: [&str; 4] = ["A", "B", "HELP_REQUEST", "not valid"];
const ROOMS: [&str; 2] = ["r0", "r1"];
/// Readers u0 (two tabs), u1 and u2; consultants c0 and c1; admin a0.
const SOCKETS: [(&str, &str); 7] = [
    ("u0", "reader"),
    ("u0", "reader"),
    ("u1", "reader"),
    ("u2", "reader"),
    ("c0", "consultant"),
    ("c1", "consultant"),
    ("a0", "admin"),
];

#[derive(Clone, Debug)]
enum Op {
    Event { sock: usize, ty: usize, key: Option<u8> },
    Subscribe { sock: usize, types: Vec<usize> },
    Join { sock: usize, room: usize },
    Leave { sock: usize, room: usize },
    Online { sock: usize },
    Disconnect { sock: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let sock = 0..SOCKETS.len();
    prop_oneof![
        8 => (sock.clone(), 0..TYPES.len(), prop::option::of(0..3u8))
            .prop_map(|(sock, ty, key)| Op::Event { sock, ty, key }),
        2 => (sock.clone(), prop::collection::vec(0..3usize, 0..3))
            .prop_map(|(sock, types)| Op::Subscribe { sock, types }),
        2 => (sock.clone(), 0..ROOMS.len()).prop_map(|(sock, room)| Op::Join { sock, room }),
        1 => (sock.clone(), 0..ROOMS.len()).prop_map(|(sock, room)| Op::Leave { sock, room }),
        1 => sock.clone().prop_map(|sock| Op::Online { sock }),
        1 => sock.prop_map(|sock| Op::Disconnect { sock }),
    ]
}

/// A node with every socket connected, whose appends the run confirms itself.
fn node() -> (Node, Vec<ConnId>) {
    let mut node = Node::with_config(Config { deployment: Deployment::SingleStore, ..Config::default() });
    node.auto_append = false;
    let conns = SOCKETS.iter().map(|(user, role)| node.connect(user, role)).collect();
    (node, conns)
}

/// The `n`th operation as the core's input; every other one asks for an ack.
fn input(n: usize, op: &Op, conns: &[ConnId]) -> Input {
    let (sock, name, payload) = match op {
        Op::Event { sock, ty, key } => {
            let mut payload = json!({"eventType": TYPES[*ty], "data": {"n": n}});
            if let Some(key) = key {
                payload["clientEventId"] = json!(format!("key-{key}"));
            }
            (*sock, "reader-event", payload)
        }
        Op::Subscribe { sock, types } => {
            let types: Vec<&str> = types.iter().map(|t| TYPES[*t]).collect();
            (*sock, "subscribe-consultant", json!({"consultantId": SOCKETS[*sock].0, "eventTypes": types}))
        }
        Op::Join { sock, room } => (*sock, "join-room", json!(ROOMS[*room])),
        Op::Leave { sock, room } => (*sock, "leave-room", json!(ROOMS[*room])),
        Op::Online { sock } => (*sock, "get-online-readers", json!(null)),
        Op::Disconnect { sock } => return Input::Disconnect { conn: conns[*sock] },
    };
    let ack = (n % 2 == 1).then_some(AckId(n as u64));
    Input::ClientEvent { conn: conns[sock], name: name.into(), args: vec![payload], has_binary: false, ack }
}

/// Without what differs between two runs by design: ids and times (each run makes its own).
fn content(v: &Value) -> Value {
    match v {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "eventId" | "timestamp" | "lastActivity"))
                .map(|(k, v)| (k.clone(), content(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(content).collect()),
        other => other.clone(),
    }
}

/// What one run saw: per socket, its `reader-activity` in order and everything else it was sent
/// but presence pushes, in order; and the log's events in order.
#[derive(Debug, PartialEq)]
struct Seen {
    activity: BTreeMap<ConnId, Vec<Value>>,
    other: BTreeMap<ConnId, Vec<String>>,
    logged: Vec<(String, Value)>,
}

/// Runs `groups` of operations (each its size and the time that passes before it), each fed as
/// one burst or one by one, confirming every append a group asked for once the group is in (a
/// log that takes as long as the group does); also returns how many appends each group asked
/// for.
fn run(ops: &[Op], groups: &[(usize, u64)], burst: bool) -> (Seen, Vec<usize>) {
    let (mut node, conns) = node();
    let mut seen = Seen { activity: BTreeMap::new(), other: BTreeMap::new(), logged: Vec::new() };
    let mut appends_per_group = Vec::new();
    let mut n = 0;
    for &(size, pause) in groups {
        node.now = node.now.plus(pause);
        let inputs: Vec<Input> = ops[n..(n + size).min(ops.len())]
            .iter()
            .enumerate()
            .map(|(i, op)| input(n + i, op, &conns))
            .collect();
        n += size;
        let mut out = Vec::new();
        if burst {
            out.extend(node.input(Input::Burst(inputs)));
        } else {
            for input in inputs {
                out.extend(node.input(input));
            }
        }
        let mut appends = 0;
        let mut confirmed = 0;
        while let Some((at, append)) = out[confirmed..].iter().enumerate().find_map(|(i, o)| match o {
            Output::Append { append, .. } => Some((confirmed + i, *append)),
            _ => None,
        }) {
            appends += 1;
            confirmed = at + 1;
            out.extend(node.input(Input::Appended { append, repeats: Vec::new() }));
        }
        appends_per_group.push(appends);
        for o in out {
            match o {
                Output::Activity { to, payload, .. } => {
                    for conn in to {
                        seen.activity.entry(conn).or_default().push(content(&payload.value()));
                    }
                }
                // A presence push is scheduled once a burst is in, one by one after each input
                // (a snapshot of the same moment, taken later); the answers to
                // `get-online-readers` are compared through their acks.
                Output::Emit { to, event, payload } if event != "online-readers" => {
                    for conn in to {
                        seen.other
                            .entry(conn)
                            .or_default()
                            .push(format!("{event} {}", content(&payload.value())));
                    }
                }
                Output::Ack { conn, ack, payload } => {
                    seen.other.entry(conn).or_default().push(format!(
                        "ack {} {}",
                        ack.0,
                        content(&payload.value())
                    ));
                }
                Output::Append { entries, .. } => {
                    for e in entries {
                        seen.logged.push((
                            e.event.event_type.clone(),
                            content(&serde_json::from_str(e.event.data.get()).unwrap()),
                        ));
                    }
                }
                _ => {}
            }
        }
        if n >= ops.len() {
            break;
        }
    }
    (seen, appends_per_group)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_burst_changes_how_the_log_is_asked_not_what_anyone_receives(
        ops in prop::collection::vec(op(), 1..60),
        groups in prop::collection::vec((1..12usize, prop_oneof![Just(0u64), 1..2_000u64]), 1..60),
    ) {
        let (one_by_one, _) = run(&ops, &groups, false);
        let (bursts, appends) = run(&ops, &groups, true);
        prop_assert_eq!(&bursts, &one_by_one);
        prop_assert!(appends.iter().all(|&a| a <= 1), "a burst asked for more than one append: {:?}", appends);
    }
}
