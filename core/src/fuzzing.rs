//! Entry points for the fuzz targets in `fuzz/`, shared with the test that replays their corpora
//! on the stable toolchain. Each one feeds arbitrary input to a parser or to the whole core and
//! checks invariants, not only the absence of a panic.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Value};

use crate::bus::BusMessage;
use crate::protocol::{self, Command};
use crate::{
    AckId, AppendId, BatchId, Config, ConnId, Core, Deployment, ErrorCode, Input, Millis, Output, Role,
    StoreFailure, TokenCheck,
};

const ROLES: [Role; 3] = [Role::Reader, Role::Consultant, Role::Admin];
const ROLE_NAMES: [&str; 4] = ["reader", "consultant", "admin", "authenticated"];

/// A client event from raw bytes: the first byte picks the role, the rest is `name\npayload`;
/// a payload that is not JSON is sent as a string.
pub fn client_event(data: &[u8]) {
    let Some((&role, rest)) = data.split_first() else { return };
    let role = self::role(role);
    let text = String::from_utf8_lossy(rest);
    let (name, payload) = text.split_once('\n').unwrap_or((&text, ""));
    let value = serde_json::from_str::<Value>(payload).unwrap_or_else(|_| Value::String(payload.to_owned()));
    for (args, binary) in [(vec![value.clone()], false), (vec![value], true), (vec![], false)] {
        parse_checked(name, &args, binary, role);
    }
}

/// Parses a client event as the core does, with the promises of [`check_command`]; the shell's
/// packet target (`fuzz/fuzz_targets/event_packet.rs`) ends here too.
pub fn parse_checked(name: &str, args: &[Value], binary: bool, role: Role) {
    let config = Config::default();
    let parsed = protocol::parse(name, args, binary, role, &config);
    match parsed.result {
        Ok(cmd) => check_command(&cmd, &config),
        Err(e) => {
            assert!(!e.message.is_empty(), "an error always says what went wrong");
            assert_eq!(e.retry_after_ms.is_some(), e.code == ErrorCode::RateLimited);
            if parsed.event.is_none() {
                assert_eq!(e.code, ErrorCode::UnknownEvent);
            }
        }
    }
}

/// The role a fuzzer's byte picks.
pub fn role(byte: u8) -> Role {
    ROLES[usize::from(byte) % 3]
}

/// What a parsed command promises to the rest of the core.
fn check_command(cmd: &Command, config: &Config) {
    match cmd {
        Command::ReaderEvent { event_type, data, reading, session_id, client_event_id } => {
            // The position found in the parsed value is the one its text gives.
            assert_eq!(*reading, crate::event::ReadingPosition::of_json(data));
            assert!(client_event_id
                .as_ref()
                .is_none_or(|k| protocol::is_valid_name(k, protocol::MAX_CLIENT_EVENT_ID_CHARS)));
            assert!(protocol::is_valid_name(event_type, protocol::MAX_EVENT_TYPE_CHARS));
            assert!(data.get().len() <= config.max_event_bytes);
            // The serialized data round-trips as JSON.
            let reparsed: Value = serde_json::from_str(data.get()).expect("data is JSON");
            assert_eq!(serde_json::to_string(&reparsed).expect("serializes"), data.get());
            assert!(session_id.as_ref().is_none_or(|s| !s.is_empty()));
        }
        Command::Subscribe { event_types, .. } => {
            assert!(event_types.len() <= config.max_event_types);
            let mut unique = event_types.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), event_types.len(), "no repeats");
        }
        Command::JoinRoom { room } | Command::LeaveRoom { room } => {
            assert!(protocol::is_valid_name(room, protocol::MAX_ROOM_CHARS));
        }
        Command::GetRecentEvents(q) => assert!((1..=200).contains(&q.limit)),
        _ => {}
    }
}

/// A bus payload: whatever decodes must encode back to the same message.
pub fn bus_message(data: &[u8]) {
    if let Ok(msg) = BusMessage::decode(data) {
        let again = BusMessage::decode(&msg.encode()).expect("what was decoded encodes and decodes");
        assert_eq!(again, msg);
    }
}

/// One step of a core fuzzing run.
#[derive(Arbitrary, Debug)]
pub enum Op {
    Connect {
        user: u8,
        role: u8,
        ttl_s: u8,
        names: bool,
    },
    Disconnect {
        conn: u8,
    },
    Event {
        conn: u8,
        kind: u8,
        a: u8,
        b: u8,
        ack: bool,
    },
    Raw {
        conn: u8,
        name: String,
        payload: String,
    },
    Remote {
        bytes: Vec<u8>,
    },
    RemoteEvent {
        node: u8,
        seq: u8,
        user: u8,
        kind: u8,
        rooms: u8,
    },
    StoreResult {
        ok: bool,
        rejected: bool,
    },
    AppendResult {
        ok: bool,
    },
    Advance {
        ms: u16,
    },
    Refresh {
        conn: u8,
        user: u8,
        role: u8,
        ttl_s: u8,
    },
    Replay,
    /// An admin replaces a consultant's readers (a bit per user).
    Assign {
        consultant: u8,
        readers: u8,
    },
}

impl Op {
    fn is_client_event(&self) -> bool {
        matches!(self, Op::Event { .. } | Op::Raw { .. })
    }
}

/// The most events a fuzzed burst carries.
const MAX_FUZZED_BURST: usize = 16;

/// What the core is handed at one step: one operation, or client events together.
enum Step {
    One(Op),
    Burst(Vec<Op>),
}

/// The operations as steps: each alone, or (`bursts`) runs of consecutive client events, up to
/// [`MAX_FUZZED_BURST`], as one [`Input::Burst`] each, as the driver hands them over.
fn steps(ops: Vec<Op>, bursts: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    for op in ops.into_iter().take(256) {
        match steps.last_mut() {
            Some(Step::Burst(run)) if op.is_client_event() && run.len() < MAX_FUZZED_BURST => run.push(op),
            _ if bursts && op.is_client_event() => steps.push(Step::Burst(vec![op])),
            _ => steps.push(Step::One(op)),
        }
    }
    steps
}

/// Runs arbitrary operations against a core and checks, after every step, that deliveries go
/// to each socket at most once, never to a reader other than the author, never to a closed
/// socket; that every acknowledgement is answered at most once, to the socket that asked, and at
/// once unless it waits for the log; that nothing is shown before the log holds it; and, when the
/// first byte is odd (consultant scope `assigned`), that no consultant is shown or listed a reader
/// not assigned to it at that moment.
pub fn core_ops(data: &[u8]) {
    run_ops(data, false);
}

/// [`core_ops`] with runs of consecutive client events handed to the core as bursts: the same
/// inputs, so its corpus is `core_ops`'s.
pub fn core_bursts(data: &[u8]) {
    run_ops(data, true);
}

fn run_ops(data: &[u8], bursts: bool) {
    let scope = if data.first().is_some_and(|b| b & 1 == 1) {
        crate::ConsultantScope::Assigned
    } else {
        crate::ConsultantScope::All
    };
    let mut u = Unstructured::new(data);
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else { return };
    let config = Config {
        deployment: Deployment::SingleOutbox,
        event_queue_capacity: 20,
        history_capacity: 8,
        max_connections: 12,
        max_connections_per_user: 4,
        store_max_attempts: 3,
        consultant_scope: scope,
        ..Config::default()
    };
    let mut core = Core::new(config, "fuzz-node", 7);
    // Who is assigned to whom, as the admin last set it.
    let mut assigned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut now = Millis(1_767_225_600_000);
    let mut next_conn = 0u64;
    let mut next_ack = 0u64;
    // conn -> (user, role)
    let mut open: BTreeMap<ConnId, (String, Role)> = BTreeMap::new();
    let mut batches: Vec<BatchId> = Vec::new();
    let mut appends: Vec<AppendId> = Vec::new();
    // Event ids handed to the log, and those it confirmed: only those may be shown.
    let mut durable: BTreeSet<String> = BTreeSet::new();
    // Where the log places the entries read from it: one order, as Redis gives it.
    let mut placed = crate::LogPosition::START;
    let mut appending: BTreeMap<AppendId, Vec<String>> = BTreeMap::new();
    // Reader-event acknowledgements waiting for the log, by socket.
    let mut waiting_acks: BTreeMap<AckId, ConnId> = BTreeMap::new();
    let users = ["u0", "u1", "u2", "u3"];
    let pick = |open: &BTreeMap<ConnId, (String, Role)>, i: u8| {
        open.keys().nth(usize::from(i) % open.len().max(1)).copied()
    };
    for step in steps(ops, bursts) {
        // Acknowledgements asked for in this step: by whom, and whether a reader event's (which
        // may wait for the log).
        let mut asked: BTreeMap<AckId, (ConnId, bool)> = BTreeMap::new();
        let mut closing = None;
        let mut client_event = |open: &BTreeMap<ConnId, (String, Role)>, op: Op| match op {
            Op::Event { conn, kind, a, b, ack } => {
                let conn = pick(open, conn)?;
                let (name, payload) = structured_event(kind, a, b, &open[&conn].0);
                let ack = ack.then(|| {
                    next_ack += 1;
                    asked.insert(AckId(next_ack), (conn, name == "reader-event"));
                    AckId(next_ack)
                });
                Some(Input::ClientEvent { conn, name, args: vec![payload], has_binary: false, ack })
            }
            Op::Raw { conn, name, payload } => {
                let conn = pick(open, conn)?;
                let payload = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
                Some(Input::ClientEvent { conn, name, args: vec![payload], has_binary: false, ack: None })
            }
            _ => None,
        };
        let input = match step {
            Step::Burst(run) => {
                Input::Burst(run.into_iter().filter_map(|op| client_event(&open, op)).collect())
            }
            Step::One(op) => match op {
                Op::Connect { user, role, ttl_s, names } => {
                    next_conn += 1;
                    let mut claims = json!({
                        "sub": users[usize::from(user) % 4],
                        "role": ROLE_NAMES[usize::from(role) % 4],
                        "exp": now.0 / 1000 + u64::from(ttl_s),
                    });
                    if names {
                        claims["user_metadata"] = json!({"first_name": "F", "last_name": "L"});
                    }
                    Input::Connect {
                        conn: ConnId(next_conn),
                        sid: format!("s{next_conn}"),
                        token: TokenCheck::Verified(claims),
                        recovery: None,
                    }
                }
                Op::Disconnect { conn } => match pick(&open, conn) {
                    Some(conn) => {
                        closing = Some(conn);
                        Input::Disconnect { conn }
                    }
                    None => Input::Tick,
                },
                op @ (Op::Event { .. } | Op::Raw { .. }) => client_event(&open, op).unwrap_or(Input::Tick),
                Op::Remote { bytes } => match BusMessage::decode(&bytes) {
                    Ok(msg) => match &msg.body {
                        // An entry read from the log is durable by definition.
                        crate::BusBody::Event(e) => {
                            durable.insert(uuid::Uuid::from_bytes(e.id).to_string());
                            placed = placed.next(now);
                            Input::Log(placed, msg)
                        }
                        _ => Input::Bus(msg),
                    },
                    Err(_) => Input::Tick,
                },
                Op::RemoteEvent { node, seq, user, kind, rooms } => {
                    let user = users[usize::from(user) % 4].to_owned();
                    let rooms =
                        (0..3).filter(|i| rooms & (1 << i) != 0).map(|i| format!("room{i}")).collect();
                    let id = u128::from(now.0) << 80 | 0x7000_8000_0000_0000_0000 | u128::from(seq);
                    durable.insert(uuid::Uuid::from_u128(id).to_string());
                    placed = placed.next(now);
                    Input::Log(
                        placed,
                        BusMessage {
                            origin: format!("other-{}", node % 3),
                            incarnation: 1,
                            seq: u64::from(seq),
                            body: crate::BusBody::Event(crate::BusEvent {
                                id: id.to_be_bytes(),
                                user_id: user,
                                event_type: ["PAGE_TURN", "HELP_REQUEST", "LOOKUP"][usize::from(kind) % 3]
                                    .into(),
                                data: "{\"page\":1}".into(),
                                timestamp: now,
                                session_id: "s".into(),
                                sender_rooms: rooms,
                                sender_socket: "pid-0".into(),
                            }),
                        },
                    )
                }
                Op::StoreResult { ok, rejected } => match batches.pop() {
                    Some(batch) if ok => Input::Stored { batch },
                    Some(batch) => Input::StoreFailed {
                        batch,
                        failure: if rejected { StoreFailure::Rejected } else { StoreFailure::Unavailable },
                    },
                    None => Input::Tick,
                },
                Op::AppendResult { ok } => match appends.pop() {
                    Some(append) if ok => {
                        durable.extend(appending.remove(&append).unwrap_or_default());
                        Input::Appended { append, repeats: Vec::new() }
                    }
                    Some(append) => {
                        appending.remove(&append);
                        Input::AppendFailed { append }
                    }
                    None => Input::Tick,
                },
                Op::Advance { ms } => {
                    now = now.plus(u64::from(ms) * 10);
                    Input::Tick
                }
                Op::Refresh { conn, user, role, ttl_s } => match pick(&open, conn) {
                    Some(conn) => {
                        let claims = json!({
                            "sub": users[usize::from(user) % 4],
                            "role": ROLE_NAMES[usize::from(role) % 3],
                            "exp": now.0 / 1000 + u64::from(ttl_s),
                        });
                        Input::TokenVerified { conn, ack: None, token: TokenCheck::Verified(claims) }
                    }
                    None => Input::Tick,
                },
                Op::Replay => {
                    core.replay_dead_letters(now);
                    Input::Tick
                }
                Op::Assign { consultant, readers } => {
                    let consultant = users[usize::from(consultant) % 4].to_owned();
                    let readers: BTreeSet<String> =
                        (0..4).filter(|i| readers & (1 << i) != 0).map(|i| users[i].to_owned()).collect();
                    assigned.insert(consultant.clone(), readers.clone());
                    Input::Assign { consultant_id: consultant, readers }
                }
            },
        };
        // Whether a socket may see a reader, as the scope stands now (its own user's other
        // sockets, rule 3, are never scoped).
        let may_see = |open: &BTreeMap<ConnId, (String, Role)>, conn: &ConnId, reader: &str| {
            let (user, role) = &open[conn];
            scope == crate::ConsultantScope::All
                || *role != Role::Consultant
                || user == reader
                || assigned.get(user).is_some_and(|r| r.contains(reader))
        };
        let mut answered: BTreeSet<AckId> = BTreeSet::new();
        // The shell answers token checks and store queries later; here, at once (as failures).
        let mut follow_ups = vec![input];
        while let Some(input) = follow_ups.pop() {
            core.handle(now, input);
            while let Some(out) = core.poll_output() {
                match out {
                    Output::Accept { conn } => {
                        let p = core.principal(conn).expect("an accepted socket has a principal");
                        assert!(
                            open.insert(conn, (p.user_id.to_string(), p.role)).is_none(),
                            "accepted twice"
                        );
                    }
                    Output::Disconnect { conn } => {
                        assert!(open.remove(&conn).is_some(), "closed an unknown socket");
                    }
                    Output::Activity { to, payload, position } => {
                        assert!(to.windows(2).all(|w| w[0] < w[1]), "recipients sorted, each once");
                        let activity = payload.value();
                        let id = activity["id"].as_str().unwrap_or_default().to_owned();
                        assert!(durable.contains(&id), "an event was shown before the log held it");
                        assert!(position > crate::LogPosition::START, "shown with its place in the log");
                        for c in &to {
                            let (user, role) = open.get(c).expect("no delivery to a closed socket");
                            if *role == Role::Reader {
                                assert_eq!(
                                    activity["userId"].as_str(),
                                    Some(user.as_str()),
                                    "a reader got another reader's activity"
                                );
                            }
                            let reader = activity["userId"].as_str().unwrap_or_default();
                            assert!(
                                may_see(&open, c, reader),
                                "a consultant got an unassigned reader's activity"
                            );
                        }
                    }
                    Output::Emit { to, event, payload } => {
                        assert!(to.windows(2).all(|w| w[0] < w[1]), "recipients sorted, each once");
                        let activity = payload.value();
                        if event == "reader-activity" {
                            let id = activity["id"].as_str().unwrap_or_default().to_owned();
                            assert!(durable.contains(&id), "an event was shown before the log held it");
                        }
                        for c in &to {
                            if event == "online-readers" {
                                for r in activity["readers"].as_array().into_iter().flatten() {
                                    let reader = r["userId"].as_str().unwrap_or_default();
                                    assert!(
                                        may_see(&open, c, reader),
                                        "a consultant listed an unassigned reader"
                                    );
                                }
                            }
                            let (user, role) = open.get(c).expect("no delivery to a closed socket");
                            if event == "reader-activity" && *role == Role::Reader {
                                assert_eq!(
                                    activity["userId"].as_str(),
                                    Some(user.as_str()),
                                    "a reader got another reader's activity"
                                );
                            }
                        }
                    }
                    Output::Ack { ack, conn, payload } => {
                        assert!(answered.insert(ack), "an ack answered twice");
                        if let Some(asker) = waiting_acks.remove(&ack) {
                            assert_eq!(asker, conn, "an ack answered to another socket");
                            let id = payload.value()["eventId"].as_str().unwrap_or_default().to_owned();
                            assert!(
                                payload.value()["ok"] == false || durable.contains(&id),
                                "acknowledged before the log held it"
                            );
                        } else {
                            let asker = asked.get(&ack).map(|(asker, _)| *asker);
                            assert!(asker.is_some(), "an ack answered that was not asked now");
                            assert_eq!(asker, Some(conn), "an ack answered to another socket");
                        }
                        assert!(open.contains_key(&conn), "an ack to a closed socket");
                    }
                    Output::Append { append, entries } => {
                        assert!(!entries.is_empty());
                        appending.insert(append, entries.iter().map(|e| e.event.id.to_string()).collect());
                        appends.push(append);
                    }
                    Output::StoreBatch { batch, events } => {
                        assert!(!events.is_empty());
                        batches.push(batch);
                    }
                    Output::VerifyToken { conn, ack, .. } => {
                        follow_ups.push(Input::TokenVerified { conn, ack, token: TokenCheck::Invalid })
                    }
                    Output::QueryStore { conn, ack, .. } => {
                        follow_ups.push(Input::StoreQueryAnswered { conn, ack, answer: None })
                    }
                    Output::QueryReplay { conn, .. } => {
                        follow_ups.push(Input::ReplayAnswered { conn, answer: None })
                    }
                    Output::Replay { conn, events } => {
                        assert!(open.contains_key(&conn), "a replay to a closed socket");
                        assert!(
                            events.windows(2).all(|w| w[0].position < w[1].position),
                            "in log order, once"
                        );
                        for e in &events {
                            assert!(durable.contains(&e.id.to_string()), "replayed before the log held it");
                            assert!(
                                may_see(&open, &conn, &e.user_id),
                                "a consultant replayed an unassigned reader"
                            );
                        }
                    }
                    Output::Pid { conn, pid } => {
                        assert_eq!(pid.len(), 32, "a pid is 128 bits");
                        assert!(!open.contains_key(&conn), "named before it is accepted");
                    }
                    Output::Refuse { .. }
                    | Output::SaveSession { .. }
                    | Output::ForgetSession { .. }
                    | Output::Publish(_)
                    | Output::DeadLettered { .. }
                    | Output::Read { .. }
                    | Output::Consume(_)
                    | Output::Broadcast { .. }
                    | Output::LoadAssignments
                    | Output::NodeIdShared { .. } => {}
                }
            }
        }
        if let Some(conn) = closing {
            open.remove(&conn);
            waiting_acks.retain(|_, c| *c != conn);
        }
        for (ack, (conn, reader_event)) in asked {
            if !answered.contains(&ack) {
                // A reader event's ack waits for the log, unless it was refused at once.
                assert!(reader_event, "every ack asked for is answered at once");
                waiting_acks.insert(ack, conn);
            }
        }
        assert_eq!(core.stats().connections, open.len());
        let s = core.stats();
        assert!(s.queue_size + s.dlq_size <= 20, "the queue stays within its capacity");
    }
}

fn structured_event(kind: u8, a: u8, b: u8, own: &str) -> (String, Value) {
    let ty = ["PAGE_TURN", "HELP_REQUEST", "LOOKUP", "X.FEEDBACK"][usize::from(a) % 4];
    let room = format!("room{}", b % 3);
    match kind % 8 {
        0 => ("reader-event".into(), json!({"eventType": ty, "data": {"bookId": a, "page": b}})),
        1 => (
            "subscribe-consultant".into(),
            json!({"consultantId": own, "eventTypes": if b.is_multiple_of(2) { json!([ty]) } else { json!([]) }}),
        ),
        2 => ("unsubscribe-consultant".into(), json!({"consultantId": own})),
        3 => ("join-room".into(), json!(room)),
        4 => ("leave-room".into(), json!(room)),
        5 => ("get-online-readers".into(), Value::Null),
        6 => ("get-recent-events".into(), json!({"limit": u64::from(a % 200) + 1})),
        _ => ("refresh-token".into(), json!({"token": "x.y.z"})),
    }
}
