//! A client event's arguments, as the core reads them.
//!
//! serde_json builds a `Value` at most 128 levels deep, and a client may send deeper JSON (within
//! `MAX_PACKET_BYTES`). Such an argument, or such a field of an object argument (a reader event's
//! `data`), is handed to the core as a stand-in that the core judges as it would the original: as
//! many bytes long, and nested too deep. So deep data that is also too large gets
//! `PAYLOAD_TOO_LARGE` like any other, and the rest of its payload is checked as usual.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::handler::Value as SioValue;

/// The nesting of a stand-in: deeper than `MAX_EVENT_DEPTH` may be set (`config.rs`).
pub const STAND_IN_DEPTH: usize = 101;

/// The arguments after the event name, and whether binary attachments came with them.
pub fn arguments(v: &SioValue) -> (Vec<Value>, bool) {
    match v {
        // The packet's JSON array: the event name, then the arguments.
        SioValue::Str(s, attachments) => {
            // Reading raw values has no depth limit and no recursion.
            let values = match serde_json::from_str::<Vec<&RawValue>>(s.as_str()) {
                Ok(all) if !all.is_empty() => all[1..].iter().map(|raw| argument(raw)).collect(),
                _ => vec![Value::Null],
            };
            (values, attachments.as_ref().is_some_and(|a| !a.is_empty()))
        }
        SioValue::Bytes(_) => (vec![Value::Null], true),
    }
}

fn argument(raw: &RawValue) -> Value {
    if let Ok(value) = serde_json::from_str(raw.get()) {
        return value;
    }
    // Too deep somewhere: keep an object's fields that can be read, stand in for the others.
    match serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) {
        Ok(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, raw)| (name, serde_json::from_str(raw.get()).unwrap_or_else(|_| stand_in(raw))))
                .collect(),
        ),
        Err(_) => stand_in(raw),
    }
}

/// Arrays [`STAND_IN_DEPTH`] deep around a string, padded to the length of `raw` as sent.
fn stand_in(raw: &RawValue) -> Value {
    let frame = 2 * STAND_IN_DEPTH + 2;
    let mut value = Value::String(" ".repeat(raw.get().len().saturating_sub(frame)));
    for _ in 0..STAND_IN_DEPTH {
        value = Value::Array(vec![value]);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize, inner: &str) -> String {
        format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn depth(mut v: &Value) -> usize {
        let mut n = 0;
        while let Value::Array(a) = v {
            n += 1;
            v = &a[0];
        }
        n
    }

    fn args(packet: &str) -> Vec<Value> {
        arguments(&SioValue::Str(packet.to_owned().into(), None)).0
    }

    #[test]
    fn readable_arguments_are_read_as_they_are() {
        let a = args(r#"["reader-event",{"eventType":"T","data":[[1]]},2]"#);
        assert_eq!(a, vec![serde_json::json!({"eventType": "T", "data": [[1]]}), serde_json::json!(2)]);
    }

    #[test]
    fn a_field_too_deep_to_read_keeps_its_length_and_its_siblings() {
        let data = nested(500, r#""x""#);
        let a = args(&format!(r#"["reader-event",{{"eventType":"T","data":{data}}}]"#));
        assert_eq!(a[0]["eventType"], "T");
        let stand_in = &a[0]["data"];
        assert_eq!(serde_json::to_string(stand_in).unwrap().len(), data.len());
        assert_eq!(depth(stand_in), STAND_IN_DEPTH);
    }

    #[test]
    fn an_argument_too_deep_to_read_is_stood_in_for_whole() {
        let deep = nested(300, "0");
        let a = args(&format!(r#"["join-room",{deep}]"#));
        assert_eq!(serde_json::to_string(&a[0]).unwrap().len(), deep.len());
        assert_eq!(depth(&a[0]), STAND_IN_DEPTH);
    }

    #[test]
    fn an_unreadable_packet_has_no_payload() {
        assert_eq!(args("not json"), vec![Value::Null]);
        assert_eq!(args("[]"), vec![Value::Null]);
    }
}
