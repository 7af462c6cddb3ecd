//! The core against a small, obviously correct model. For random sequences of connects,
//! disconnects, subscriptions, rooms, local and remote events, remote presence and time steps,
//! the core's deliveries, errors and online-reader lists must equal what naive scans over every
//! socket say they should be.

mod common;

use alice_core::bus::{BusBody, BusEvent, BusMessage};
use alice_core::presence::ReaderPresence;
use alice_core::{Config, ConnId, Input, Millis, Output, TokenCheck};
use common::{claims, received, Node};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const ROLES: [&str; 3] = ["reader", "consultant", "admin"];
const TYPES: [&str; 3] = ["A", "B", "HELP_REQUEST"];
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
const TTL: u64 = 15_000;
const MAX_ROOMS: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    Connect { user: usize, role: usize },
    Disconnect { sock: usize },
    Subscribe { sock: usize, own: bool, types: Vec<usize> },
    Unsubscribe { sock: usize, own: bool },
    Join { sock: usize, room: usize },
    Leave { sock: usize, room: usize },
    Event { sock: usize, ty: usize },
    RemoteEvent { user: usize, ty: usize, rooms: Vec<usize> },
    RemotePresence { user: usize, connections: u32 },
    Advance { ms: u64 },
    Online { sock: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize, 0..3usize).prop_map(|(user, role)| Op::Connect { user, role }),
        1 => (0..16usize).prop_map(|sock| Op::Disconnect { sock }),
        2 => (0..16usize, any::<bool>(), prop::collection::vec(0..3usize, 0..3))
            .prop_map(|(sock, own, types)| Op::Subscribe { sock, own, types }),
        1 => (0..16usize, any::<bool>()).prop_map(|(sock, own)| Op::Unsubscribe { sock, own }),
        2 => (0..16usize, 0..3usize).prop_map(|(sock, room)| Op::Join { sock, room }),
        1 => (0..16usize, 0..3usize).prop_map(|(sock, room)| Op::Leave { sock, room }),
        5 => (0..16usize, 0..3usize).prop_map(|(sock, ty)| Op::Event { sock, ty }),
        2 => (0..4usize, 0..3usize, prop::collection::vec(0..3usize, 0..3))
            .prop_map(|(user, ty, rooms)| Op::RemoteEvent { user, ty, rooms }),
        1 => (0..4usize, 0..3u32).prop_map(|(user, connections)| Op::RemotePresence { user, connections }),
        2 => prop_oneof![1u64..2_000, 5_000u64..20_000].prop_map(|ms| Op::Advance { ms }),
        2 => (0..16usize).prop_map(|sock| Op::Online { sock }),
    ]
}

struct Sock {
    conn: ConnId,
    user: &'static str,
    role: &'static str,
    rooms: BTreeSet<&'static str>,
    /// `Some(empty)`: every type.
    sub: Option<(String, BTreeSet<&'static str>)>,
}

impl Sock {
    fn staff(&self) -> bool {
        self.role != "reader"
    }
}

#[derive(Default)]
struct Model {
    socks: Vec<Sock>,
    /// Local readers' last activity.
    local_activity: BTreeMap<&'static str, Millis>,
    /// node-b's readers: connections and last activity.
    remote: BTreeMap<&'static str, (u32, Millis)>,
    remote_heard: Option<Millis>,
}

impl Model {
    fn expire(&mut self, now: Millis) {
        if self.remote_heard.is_some_and(|h| h.plus(TTL) <= now) {
            self.remote.clear();
            self.remote_heard = None;
        }
    }

    fn recipients(
        &self,
        sender: Option<ConnId>,
        user: &str,
        ty: &str,
        rooms: &BTreeSet<&str>,
    ) -> BTreeSet<ConnId> {
        let support = ty.contains("HELP_REQUEST") || ty.contains("FEEDBACK");
        self.socks
            .iter()
            .filter(|s| Some(s.conn) != sender)
            .filter(|s| {
                let subscribed = s.sub.as_ref().is_some_and(|(_, t)| t.is_empty() || t.contains(ty));
                subscribed
                    || (s.staff() && support)
                    || s.user == user
                    || (s.staff() && s.rooms.iter().any(|r| rooms.contains(r)))
            })
            .map(|s| s.conn)
            .collect()
    }

    /// (user, connections), most recently active first.
    fn online(&self) -> Vec<(String, u64)> {
        let mut merged: BTreeMap<&str, (u64, Millis)> = BTreeMap::new();
        for s in self.socks.iter().filter(|s| s.role == "reader") {
            let e = merged.entry(s.user).or_insert((0, self.local_activity[s.user]));
            e.0 += 1;
        }
        for (u, (n, at)) in &self.remote {
            let e = merged.entry(u).or_insert((0, *at));
            e.0 += u64::from(*n);
            e.1 = e.1.max(*at);
        }
        let mut list: Vec<(&str, (u64, Millis))> = merged.into_iter().collect();
        list.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        list.into_iter().map(|(u, (n, _))| (u.to_owned(), n)).collect()
    }
}

fn deliveries(out: &[Output]) -> BTreeSet<ConnId> {
    let mut all = BTreeSet::new();
    for o in out {
        if let Output::Activity { to, .. } = o {
            for c in to {
                assert!(all.insert(*c), "a socket got two copies: {out:?}");
            }
        }
    }
    all
}

fn error_code(out: &[Output], conn: ConnId) -> Option<String> {
    received(out, conn, "event-error").first().map(|e| e["code"].as_str().unwrap().to_owned())
}

fn config() -> Config {
    Config {
        reader_event_burst: 1_000_000,
        other_event_burst: 1_000_000,
        handshakes_per_minute: 1_000_000,
        max_rooms_per_socket: MAX_ROOMS,
        presence_ttl_ms: TTL,
        ..Config::default()
    }
}

fn run(ops: Vec<Op>) {
    let mut node = Node::with_config(config());
    let mut model = Model::default();
    let mut seq = 0;
    let mut seq_ids = 1u64..;
    let mut remote_msg = |body| {
        seq += 1;
        Input::Bus(BusMessage { origin: "node-b".into(), incarnation: 1, seq, body })
    };
    let mut log_seq = 0;
    let mut log_msg = |body| {
        log_seq += 1;
        let position = alice_core::LogPosition { ms: 1, seq: log_seq };
        Input::Log(position, BusMessage { origin: "node-b".into(), incarnation: 1, seq: log_seq, body })
    };
    for op in ops {
        let pick = |m: &Model, i: usize| (!m.socks.is_empty()).then(|| i % m.socks.len());
        match op {
            Op::Connect { user, role } => {
                let (user, role) = (USERS[user], ROLES[role]);
                let (conn, out) = node.try_connect(TokenCheck::Verified(claims(user, role)));
                assert!(out.contains(&Output::Accept { conn }));
                if role == "reader" {
                    model.local_activity.insert(user, node.now);
                } else {
                    // A staff socket's deliveries wait for its first command (`resume.rs`), which
                    // the model does not describe: send one at once.
                    node.send(conn, "get-online-readers", Value::Null);
                }
                model.socks.push(Sock { conn, user, role, rooms: BTreeSet::new(), sub: None });
            }
            Op::Disconnect { sock } => {
                let Some(i) = pick(&model, sock) else { continue };
                let s = model.socks.remove(i);
                node.disconnect(s.conn);
                if s.role == "reader" && !model.socks.iter().any(|o| o.user == s.user && o.role == "reader") {
                    model.local_activity.remove(s.user);
                }
            }
            Op::Subscribe { sock, own, types } => {
                let Some(i) = pick(&model, sock) else { continue };
                let s = &mut model.socks[i];
                let id = if own { s.user.to_owned() } else { "someone-else".to_owned() };
                let types: BTreeSet<&str> = types.into_iter().map(|t| TYPES[t]).collect();
                let out = node.send(
                    s.conn,
                    "subscribe-consultant",
                    json!({"consultantId": id, "eventTypes": types}),
                );
                let expected = match s.role {
                    "reader" => Some("UNAUTHORIZED"),
                    "consultant" if !own => Some("FORBIDDEN"),
                    _ => None,
                };
                assert_eq!(error_code(&out, s.conn).as_deref(), expected);
                if expected.is_none() {
                    s.sub = Some((id, types));
                }
            }
            Op::Unsubscribe { sock, own } => {
                let Some(i) = pick(&model, sock) else { continue };
                let s = &mut model.socks[i];
                let id = if own { s.user.to_owned() } else { "someone-else".to_owned() };
                let out = node.send(s.conn, "unsubscribe-consultant", json!({"consultantId": id}));
                let expected = match s.role {
                    "reader" => Some("UNAUTHORIZED"),
                    "consultant" if !own => Some("FORBIDDEN"),
                    _ => None,
                };
                assert_eq!(error_code(&out, s.conn).as_deref(), expected);
                if expected.is_none() && s.sub.as_ref().is_some_and(|(held, _)| *held == id) {
                    s.sub = None;
                }
            }
            Op::Join { sock, room } => {
                let Some(i) = pick(&model, sock) else { continue };
                let s = &mut model.socks[i];
                let out = node.send(s.conn, "join-room", json!(ROOMS[room]));
                let full = !s.rooms.contains(ROOMS[room]) && s.rooms.len() >= MAX_ROOMS;
                assert_eq!(error_code(&out, s.conn).as_deref(), full.then_some("INVALID_PAYLOAD"));
                if !full {
                    s.rooms.insert(ROOMS[room]);
                }
            }
            Op::Leave { sock, room } => {
                let Some(i) = pick(&model, sock) else { continue };
                let s = &mut model.socks[i];
                let out = node.send(s.conn, "leave-room", json!(ROOMS[room]));
                assert_eq!(error_code(&out, s.conn), None);
                s.rooms.remove(ROOMS[room]);
            }
            Op::Event { sock, ty } => {
                let Some(i) = pick(&model, sock) else { continue };
                let out = node.send(model.socks[i].conn, "reader-event", json!({"eventType": TYPES[ty]}));
                model.expire(node.now);
                let s = &model.socks[i];
                if s.role != "reader" {
                    assert_eq!(error_code(&out, s.conn).as_deref(), Some("UNAUTHORIZED"));
                    assert!(deliveries(&out).is_empty());
                    continue;
                }
                assert_eq!(error_code(&out, s.conn), None);
                let expected = model.recipients(Some(s.conn), s.user, TYPES[ty], &s.rooms);
                assert_eq!(deliveries(&out), expected, "local {} from {:?}", TYPES[ty], s.conn);
                let user = s.user;
                model.local_activity.insert(user, node.now);
            }
            Op::RemoteEvent { user, ty, rooms } => {
                let user = USERS[user];
                let rooms: BTreeSet<&str> = rooms.into_iter().map(|r| ROOMS[r]).collect();
                let id = (u128::from(seq_ids.next().unwrap_or(0)) | 0x7000_8000_0000_0000_0000).to_be_bytes();
                let body = BusBody::Event(BusEvent {
                    id,
                    user_id: user.into(),
                    event_type: TYPES[ty].into(),
                    data: "null".into(),
                    timestamp: node.now,
                    session_id: "s".into(),
                    sender_rooms: rooms.iter().map(|r| r.to_string()).collect(),
                    sender_socket: "pid-1".into(),
                });
                let out = node.input(log_msg(body));
                model.expire(node.now);
                model.remote_heard = Some(node.now);
                if let Some(r) = model.remote.get_mut(user) {
                    r.1 = r.1.max(node.now);
                }
                assert_eq!(
                    deliveries(&out),
                    model.recipients(None, user, TYPES[ty], &rooms),
                    "remote {}",
                    TYPES[ty]
                );
            }
            Op::RemotePresence { user, connections } => {
                let user = USERS[user];
                let reader = (connections > 0).then_some(ReaderPresence {
                    first_name: None,
                    last_name: None,
                    last_activity: node.now,
                    current_book: None,
                    current_page: None,
                    connections,
                });
                node.input(remote_msg(BusBody::Presence { user_id: user.into(), reader }));
                model.expire(node.now);
                model.remote_heard = Some(node.now);
                if connections > 0 {
                    model.remote.insert(user, (connections, node.now));
                } else {
                    model.remote.remove(user);
                }
            }
            Op::Advance { ms } => {
                node.advance(ms);
            }
            Op::Online { sock } => {
                let Some(i) = pick(&model, sock) else { continue };
                let out = node.send(model.socks[i].conn, "get-online-readers", Value::Null);
                model.expire(node.now);
                let s = &model.socks[i];
                if s.role == "reader" {
                    assert_eq!(error_code(&out, s.conn).as_deref(), Some("UNAUTHORIZED"));
                    continue;
                }
                let list = received(&out, s.conn, "online-readers").remove(0);
                let got: Vec<(String, u64)> = list["readers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (r["userId"].as_str().unwrap().to_owned(), r["connections"].as_u64().unwrap()))
                    .collect();
                assert_eq!(got, model.online(), "online readers");
                assert_eq!(list["count"], json!(got.len()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn core_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
