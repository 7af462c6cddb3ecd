//! Criterion benchmarks of the core's hot paths: parsing, the recipient set, a whole
//! handle/poll_output cycle per event, the `online-readers` push, and the bus codec.

use std::hint::black_box;

use alice_core::bus::BusMessage;
use alice_core::protocol;
use alice_core::routing::Routing;
use alice_core::{Config, ConnId, Core, Input, Millis, Output, Role, TokenCheck};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

const NOW: Millis = Millis(1_767_225_600_000);
const TYPES: [&str; 10] = ["T0", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9"];

fn parsing(c: &mut Criterion) {
    let config = Config::default();
    let event =
        [json!({"eventType": "PAGE_TURN", "data": {"bookId": "moby-dick", "page": 42, "chapter": 7}})];
    let subscribe = [json!({"consultantId": "c1", "eventTypes": ["PAGE_TURN", "LOOKUP", "HELP_REQUEST"]})];
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("reader-event", |b| {
        b.iter(|| {
            protocol::parse(black_box("reader-event"), black_box(&event), false, Role::Reader, &config).result
        })
    });
    g.bench_function("subscribe-consultant", |b| {
        b.iter(|| {
            protocol::parse("subscribe-consultant", black_box(&subscribe), false, Role::Consultant, &config)
                .result
        })
    });
    g.finish();
}

/// 10,000 subscribed consultants (a tenth with no filter, the rest on one of ten types) and 100
/// rooms of staff.
fn routing() -> Routing {
    let mut r = Routing::default();
    for i in 0..10_000u64 {
        let conn = ConnId(i);
        r.add_socket(conn, &format!("c{i}"), true, None);
        let filter: Vec<String> =
            if i % 10 == 0 { vec![] } else { vec![TYPES[(i % 10) as usize].to_owned()] };
        r.set_subscription(conn, None, Some(&filter));
        r.join_room(conn, &format!("room{}", i % 100), true);
    }
    r
}

/// The same sockets under consultant scope `assigned`: 1,000 consultants with ten sockets each,
/// all subscribed to every type; what an event costs follows the consultants its reader is
/// assigned to, not the 10,000 sockets.
fn scoped_routing() -> Routing {
    let mut r = Routing::default();
    for i in 0..10_000u64 {
        let conn = ConnId(i);
        let consultant: std::sync::Arc<str> = format!("c{}", i / 10).into();
        r.add_socket(conn, &consultant, true, Some(&consultant));
        r.set_subscription(conn, None, Some(&[]));
    }
    r
}

fn recipients(c: &mut Criterion) {
    let r = routing();
    let mut g = c.benchmark_group("recipients");
    g.bench_function("10k subscribers, typed event, 2 rooms", |b| {
        b.iter(|| {
            r.recipients(&[], black_box("reader-1"), black_box("T3"), false, &["room1", "room2"], []).len()
        })
    });
    g.bench_function("10k subscribers, support event", |b| {
        b.iter(|| r.recipients(&[], black_box("reader-1"), black_box("HELP_REQUEST"), true, &[], []).len())
    });
    let scoped = scoped_routing();
    g.bench_function("10k scoped consultant sockets, reader assigned to 3 consultants", |b| {
        b.iter(|| {
            let assigned = black_box(["c1", "c500", "c999"]);
            scoped.recipients(&[], "reader-1", "T3", false, &[], assigned).len()
        })
    });
    g.finish();
}

fn claims(sub: &str, role: &str) -> Value {
    json!({"sub": sub, "role": role, "exp": NOW.0 / 1000 + 86_400})
}

fn cycle(c: &mut Criterion) {
    let config =
        Config { reader_event_burst: u32::MAX, reader_event_rate: u32::MAX / 1000, ..Config::default() };
    let mut core = Core::new(config, "bench", 1);
    let mut conn = 0;
    let mut connect = |core: &mut Core, sub: &str, role: &str| {
        conn += 1;
        core.handle(
            NOW,
            Input::Connect {
                conn: ConnId(conn),
                sid: format!("s{conn}"),
                token: TokenCheck::Verified(claims(sub, role)),
                recovery: None,
            },
        );
        ConnId(conn)
    };
    for i in 0..10 {
        let c = connect(&mut core, &format!("c{i}"), "consultant");
        core.handle(
            NOW,
            Input::ClientEvent {
                conn: c,
                name: "subscribe-consultant".into(),
                args: vec![json!({"consultantId": format!("c{i}")})],
                has_binary: false,
                ack: None,
            },
        );
    }
    let readers: Vec<ConnId> = (0..500).map(|i| connect(&mut core, &format!("r{i}"), "reader")).collect();
    while core.poll_output().is_some() {}
    let mut g = c.benchmark_group("cycle");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut now = NOW;
    // The same event without and with a `clientEventId` (a new key each time, as a reader app
    // sends): the key's cost in the core.
    for keyed in [false, true] {
        let name = if keyed { "keyed reader-event" } else { "reader-event" };
        g.bench_function(format!("{name} to 10 subscribed consultants"), |b| {
            b.iter(|| {
                i += 1;
                now = now.plus(1);
                let conn = readers[i % readers.len()];
                // Both build the same payload; only the keyed one sends its key.
                let key = format!("0190a1b2-c3d4-7e5f-8a6b-{i:012}");
                let mut payload =
                    json!({"eventType": "PAGE_TURN", "data": {"bookId": "moby-dick", "page": 42}});
                if keyed {
                    payload["clientEventId"] = json!(key);
                }
                core.handle(
                    now,
                    Input::ClientEvent {
                        conn,
                        name: "reader-event".into(),
                        args: vec![payload],
                        has_binary: false,
                        ack: None,
                    },
                );
                let mut n = 0;
                while let Some(out) = core.poll_output() {
                    if let Output::Append { append, .. } = out {
                        core.handle(now, Input::Appended { append, repeats: Vec::new() });
                    }
                    n += 1;
                }
                n
            })
        });
    }
    g.finish();
}

/// The once-a-second `online-readers` push at the fixed load's size (2,500 readers online, each
/// with names, a book and a page; 20 subscribed consultants), measured as the event that makes
/// it due: the push is all but the whole of it (compare the cycle above).
fn presence_push(c: &mut Criterion) {
    let config =
        Config { reader_event_burst: u32::MAX, reader_event_rate: u32::MAX / 1000, ..Config::default() };
    let interval = config.presence_push_interval_ms;
    let mut core = Core::new(config, "bench", 1);
    let mut now = NOW;
    let mut conn = 0;
    let mut connect = |core: &mut Core, claims: Value| {
        conn += 1;
        let token = TokenCheck::Verified(claims);
        core.handle(
            NOW,
            Input::Connect { conn: ConnId(conn), sid: format!("s{conn}"), token, recovery: None },
        );
        ConnId(conn)
    };
    let event = |page: usize| json!({"eventType": "PAGE_TURN", "data": {"bookId": format!("book-{}", page % 40), "page": page}});
    let send = |core: &mut Core, now: Millis, conn: ConnId, name: &str, payload: Value| {
        core.handle(
            now,
            Input::ClientEvent { conn, name: name.into(), args: vec![payload], has_binary: false, ack: None },
        );
        let mut pushed = 0;
        while let Some(out) = core.poll_output() {
            match out {
                Output::Append { append, .. } => {
                    core.handle(now, Input::Appended { append, repeats: Vec::new() })
                }
                Output::Emit { event: "online-readers", .. } => pushed += 1,
                _ => {}
            }
        }
        pushed
    };
    for i in 0..20 {
        let c = connect(&mut core, claims(&format!("c{i}"), "consultant"));
        send(&mut core, NOW, c, "subscribe-consultant", json!({"consultantId": format!("c{i}")}));
    }
    let mut readers = Vec::new();
    for i in 0..2_500 {
        let mut who = claims(&format!("reader-{i:05}"), "reader");
        who["user_metadata"] = json!({"first_name": format!("First{i}"), "last_name": format!("Last{i}")});
        let r = connect(&mut core, who);
        send(&mut core, NOW, r, "reader-event", event(i));
        readers.push(r);
    }
    let mut g = c.benchmark_group("presence");
    let mut i = 0usize;
    g.bench_function("online-readers push, 2,500 readers to 20 consultants", |b| {
        b.iter(|| {
            i += 1;
            now = now.plus(interval);
            let pushed = send(&mut core, now, readers[i % readers.len()], "reader-event", event(i));
            assert_eq!(pushed, 1, "one push, serialized once");
        })
    });
    g.finish();
}

fn bus(c: &mut Criterion) {
    let msg = BusMessage {
        origin: "node-a".into(),
        incarnation: 7,
        seq: 12345,
        body: alice_core::BusBody::Event(alice_core::BusEvent {
            id: [7; 16],
            user_id: "reader-1".into(),
            event_type: "PAGE_TURN".into(),
            data: r#"{"bookId":"moby-dick","page":42}"#.into(),
            timestamp: NOW,
            session_id: "AbCdEfGhIjKlMnOp".into(),
            sender_rooms: vec!["class-1".into()],
            sender_socket: "pid-42".into(),
        }),
    };
    let bytes = msg.encode();
    let mut g = c.benchmark_group("bus");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode event", |b| b.iter(|| black_box(&msg).encode()));
    g.bench_function("decode event", |b| b.iter(|| BusMessage::decode(black_box(&bytes))));
    g.finish();
}

criterion_group!(benches, parsing, recipients, cycle, presence_push, bus);
criterion_main!(benches);
