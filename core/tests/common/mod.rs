//! The shared harness for core tests: a node on a virtual clock, sockets by role, and helpers
//! that read the outputs the way a client would see them.
#![allow(dead_code)]

use alice_core::{AckId, Config, ConnId, Core, Input, Millis, Output, TokenCheck};
use serde_json::{json, Value};

/// The virtual clock starts here (2026-01-01), well after the epoch.
pub const START: Millis = Millis(1_767_225_600_000);

pub struct Node {
    pub core: Core,
    pub now: Millis,
    /// Confirms every append at once, as a log that never fails would: tests of other behaviours
    /// then see an event's receipt and deliveries in the outputs of the input that sent it. The
    /// `Append` outputs stay in the list. Tests of the log itself turn it off.
    pub auto_append: bool,
    next_conn: u64,
    next_ack: u64,
    /// Where the cluster's log placed the last entry [`Node::log`] fed.
    placed: alice_core::LogPosition,
}

pub fn claims(sub: &str, role: &str) -> Value {
    json!({ "sub": sub, "role": role, "exp": START.0 / 1000 + 3600 })
}

impl Node {
    pub fn new() -> Node {
        Node::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Node {
        Node::named("node-a", config, 1)
    }

    pub fn named(name: &str, config: Config, seed: u64) -> Node {
        let mut n = Node {
            core: Core::new(config, name, seed),
            now: START,
            auto_append: true,
            next_conn: 0,
            next_ack: 0,
            placed: alice_core::LogPosition::START,
        };
        n.input(Input::Tick);
        n
    }

    /// Feeds an input and returns every output it caused.
    pub fn input(&mut self, input: Input) -> Vec<Output> {
        self.core.handle(self.now, input);
        self.drain()
    }

    /// Feeds an entry read from the cluster's log, placed after the last one fed.
    pub fn log(&mut self, msg: alice_core::BusMessage) -> Vec<Output> {
        self.placed = self.placed.next(self.now);
        self.input(Input::Log(self.placed, msg))
    }

    pub fn drain(&mut self) -> Vec<Output> {
        let mut out: Vec<Output> = std::iter::from_fn(|| self.core.poll_output()).collect();
        let mut confirmed = 0;
        while self.auto_append {
            let Some(append) = out[confirmed..].iter().find_map(|o| match o {
                Output::Append { append, .. } => Some(*append),
                _ => None,
            }) else {
                break;
            };
            confirmed = out.len();
            self.core.handle(self.now, Input::Appended { append, repeats: Vec::new() });
            out.extend(std::iter::from_fn(|| self.core.poll_output()));
        }
        out
    }

    /// Moves the clock forward and runs what fell due.
    pub fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now = self.now.plus(ms);
        self.input(Input::Tick)
    }

    pub fn next_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Connects with a token check; returns the socket and what the core answered.
    pub fn try_connect(&mut self, token: TokenCheck) -> (ConnId, Vec<Output>) {
        let conn = self.next_conn();
        let out = self.input(Input::Connect { conn, sid: format!("sid-{}", conn.0), token, recovery: None });
        (conn, out)
    }

    /// Connects a socket that must be accepted.
    pub fn connect(&mut self, sub: &str, role: &str) -> ConnId {
        let (conn, out) = self.try_connect(TokenCheck::Verified(claims(sub, role)));
        assert!(out.contains(&Output::Accept { conn }), "{sub} refused: {out:?}");
        conn
    }

    pub fn send(&mut self, conn: ConnId, name: &str, payload: Value) -> Vec<Output> {
        self.input(Input::ClientEvent {
            conn,
            name: name.into(),
            args: vec![payload],
            has_binary: false,
            ack: None,
        })
    }

    /// Sends with an acknowledgement callback; returns the outputs and the ack's payload.
    pub fn send_ack(&mut self, conn: ConnId, name: &str, args: Vec<Value>) -> (Vec<Output>, Value) {
        self.next_ack += 1;
        let ack = AckId(self.next_ack);
        let out = self.input(Input::ClientEvent {
            conn,
            name: name.into(),
            args,
            has_binary: false,
            ack: Some(ack),
        });
        let acks: Vec<Value> = out
            .iter()
            .filter_map(|o| match o {
                Output::Ack { conn: c, ack: a, payload } if *c == conn && *a == ack => Some(payload.value()),
                _ => None,
            })
            .collect();
        assert_eq!(acks.len(), 1, "exactly one ack expected: {out:?}");
        (out, acks[0].clone())
    }

    pub fn disconnect(&mut self, conn: ConnId) -> Vec<Output> {
        self.input(Input::Disconnect { conn })
    }
}

/// Payloads of `event` sent to `conn`, in order.
pub fn received(out: &[Output], conn: ConnId, event: &str) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            Output::Emit { to, event: e, payload } if *e == event && to.contains(&conn) => {
                Some(payload.value())
            }
            Output::Activity { to, payload, .. } if event == "reader-activity" && to.contains(&conn) => {
                Some(payload.value())
            }
            _ => None,
        })
        .collect()
}

/// The single `event-error` sent to `conn`.
pub fn error_of(out: &[Output], conn: ConnId) -> Value {
    let errs = received(out, conn, "event-error");
    assert_eq!(errs.len(), 1, "exactly one event-error expected: {out:?}");
    errs[0].clone()
}

/// A cluster node named `name` that has opened the log, whose appends the test confirms itself.
pub fn cluster_by_hand(name: &str, seed: u64) -> Node {
    let config = Config { deployment: alice_core::Deployment::Cluster, ..Config::default() };
    let mut node = Node::named(name, config, seed);
    node.auto_append = false;
    node.input(log_opened());
    node
}

/// What a cluster node's log reader reports when it learned where the log ends (empty here):
/// the node reads from there, and its appends may go out.
pub fn log_opened() -> Input {
    Input::Read {
        stream: alice_core::Stream::Log,
        position: Some("0-0".into()),
        entries: Vec::new(),
        at_end: false,
    }
}

/// Store batches asked for, with their events.
pub fn batches(out: &[Output]) -> Vec<(alice_core::BatchId, Vec<std::sync::Arc<alice_core::ReaderEvent>>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::StoreBatch { batch, events } => Some((*batch, events.clone())),
            _ => None,
        })
        .collect()
}

/// Appends asked of the log, with their entries.
pub fn appends(out: &[Output]) -> Vec<(alice_core::AppendId, Vec<std::sync::Arc<alice_core::LogEntry>>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Append { append, entries } => Some((*append, entries.clone())),
            _ => None,
        })
        .collect()
}

/// Bus messages published.
pub fn published(out: &[Output]) -> Vec<alice_core::BusMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Publish(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Ids of the `reader-activity` sent to `conn`, live or replayed, in the order sent.
pub fn activity_ids(out: &[Output], conn: ConnId) -> Vec<String> {
    let mut ids = Vec::new();
    for o in out {
        match o {
            Output::Activity { to, payload, .. } if to.contains(&conn) => {
                ids.push(payload.value()["id"].as_str().unwrap_or_default().to_owned())
            }
            Output::Replay { conn: c, events } if *c == conn => {
                ids.extend(events.iter().map(|e| e.id.to_string()))
            }
            _ => {}
        }
    }
    ids
}
