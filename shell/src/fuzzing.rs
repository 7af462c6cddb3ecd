//! The entry point of the `event_packet` fuzz target (`fuzz/`), shared with the test that replays
//! its corpus: an event packet as the shell reads it (`arguments.rs`, what `socket.rs`'s
//! forwarder hands the driver), then parsed by the core.
//!
//! Checks: a readable argument reaches the core as it was sent; one too deep to read becomes a
//! stand-in just as long and still too deep; and the core's parse keeps its promises.

use crate::arguments::{incoming, STAND_IN_DEPTH};
use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::handler::Value as SioValue;

/// An event packet from raw bytes: the first byte picks the role (and, its top bit, whether an
/// attachment came along); the rest is the packet's JSON text.
pub fn event_packet(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let attachments = (flags & 0x80 != 0).then(|| [bytes::Bytes::from_static(b"\x01")].into());
    let packet = SioValue::Str(text.to_owned().into(), attachments);
    let Some(event) = incoming(&packet) else { return };
    assert_eq!(event.has_binary, flags & 0x80 != 0);

    let raw: Vec<&RawValue> = serde_json::from_str(text).expect("an event came from a JSON array");
    assert_eq!(event.args.len(), raw.len() - 1);
    for (arg, raw) in event.args.iter().zip(&raw[1..]) {
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => assert_eq!(arg, &value),
            Err(_) => check_deep(arg, raw),
        }
    }
    alice_core::fuzzing::parse_checked(
        &event.name,
        &event.args,
        event.has_binary,
        alice_core::fuzzing::role(flags),
    );
}

/// An argument serde_json cannot read: a stand-in, or an object whose unreadable fields are; or
/// nothing (`null`) when it holds a number no value can.
fn check_deep(arg: &Value, raw: &RawValue) {
    if arg.is_null() {
        return;
    }
    if let Value::Object(fields) = arg {
        let raw_fields: std::collections::BTreeMap<String, &RawValue> =
            serde_json::from_str(raw.get()).expect("an object argument");
        assert_eq!(fields.len(), raw_fields.len());
        for (name, field) in fields {
            let raw = raw_fields[name];
            if serde_json::from_str::<Value>(raw.get()).is_err() {
                check_stand_in(field, raw);
            }
        }
    } else {
        check_stand_in(arg, raw);
    }
}

fn check_stand_in(v: &Value, raw: &RawValue) {
    let frame = 2 * STAND_IN_DEPTH + 2;
    let len = serde_json::to_string(v).expect("serializes").len();
    assert_eq!(len, raw.get().len().max(frame), "as long as sent");
    let mut depth = 0;
    let mut v = v;
    while let Value::Array(a) = v {
        depth += 1;
        v = &a[0];
    }
    assert_eq!(depth, STAND_IN_DEPTH);
}
