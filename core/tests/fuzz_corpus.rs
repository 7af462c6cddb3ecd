//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/) through the same entry
//! points the cargo-fuzz targets use, so CI exercises them on the stable toolchain, crashes
//! found earlier included.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the {target} corpus has seed files");
    for f in files {
        let data = std::fs::read(&f).unwrap();
        run(&data);
    }
}

#[test]
fn client_event_corpus() {
    replay("client_event", alice_core::fuzzing::client_event);
}

#[test]
fn bus_message_corpus() {
    replay("bus_message", alice_core::fuzzing::bus_message);
}

#[test]
fn core_ops_corpus() {
    replay("core_ops", alice_core::fuzzing::core_ops);
}

/// The same inputs, with runs of client events handed over as bursts.
#[test]
fn core_bursts_corpus() {
    replay("core_ops", alice_core::fuzzing::core_bursts);
}

/// Writes the bus_message seed files from real messages. Run by hand when the codec changes:
/// `cargo test -p alice-core --test fuzz_corpus -- --ignored write_bus_seeds`.
#[test]
#[ignore]
fn write_bus_seeds() {
    use alice_core::bus::{BusBody, BusEvent, BusMessage};
    use alice_core::presence::{ReaderPresence, Stamped};
    use alice_core::Millis;
    let json_text = |text: &str| serde_json::value::RawValue::from_string(text.into()).unwrap();
    let reader = ReaderPresence {
        first_name: Some("Ada".into()),
        last_name: None,
        last_activity: Millis(1_767_225_600_000),
        current_book: Some(Stamped { json: json_text("\"moby\""), at: Millis(1) }),
        current_page: Some(Stamped { json: json_text("12"), at: Millis(2) }),
        connections: 2,
    };
    let bodies = [
        (
            "event",
            BusBody::Event(BusEvent {
                id: [1; 16],
                user_id: "u1".into(),
                event_type: "PAGE_TURN".into(),
                data: "{\"page\":3}".into(),
                timestamp: Millis(1_767_225_600_000),
                session_id: "s".into(),
                sender_rooms: vec!["class".into()],
                sender_socket: "pid-3".into(),
            }),
        ),
        ("presence", BusBody::Presence { user_id: "u1".into(), reader: Some(reader.clone()) }),
        ("gone", BusBody::Presence { user_id: "u1".into(), reader: None }),
        ("heartbeat", BusBody::Heartbeat { readers: [("u1".to_string(), reader)].into() }),
        ("leaving", BusBody::Leaving),
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/bus_message");
    for (i, (name, body)) in bodies.into_iter().enumerate() {
        let msg = BusMessage { origin: "node-a".into(), incarnation: 42, seq: i as u64 + 1, body };
        std::fs::write(dir.join(name), msg.encode()).unwrap();
    }
}
