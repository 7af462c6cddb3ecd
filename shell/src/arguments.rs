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

/// A client event as the forwarder hands it to the driver.
#[derive(Debug, PartialEq)]
pub struct Incoming {
    pub name: String,
    /// The arguments after the name.
    pub args: Vec<Value>,
    /// Whether binary attachments came with it.
    pub has_binary: bool,
}

/// Reads an event packet's JSON array (the name, then the arguments) in one pass; `None` when
/// it has no name to route by, which socketioxide's own extractor would refuse too.
pub fn incoming(v: &SioValue) -> Option<Incoming> {
    let SioValue::Str(s, attachments) = v else { return None };
    // Reading raw values has no depth limit and no recursion.
    let all = serde_json::from_str::<Vec<&RawValue>>(s.as_str()).ok()?;
    let (name, rest) = all.split_first()?;
    let name = serde_json::from_str::<String>(name.get()).ok()?;
    let args = rest.iter().map(|raw| argument(raw)).collect();
    Some(Incoming { name, args, has_binary: attachments.as_ref().is_some_and(|a| !a.is_empty()) })
}

fn argument(raw: &RawValue) -> Value {
    match read(raw) {
        Read::Value(value) => value,
        // Too deep somewhere: keep an object's fields that can be read, stand in for the others.
        Read::TooDeep => match serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) {
            Ok(fields) => {
                let fields = fields.into_iter().map(|(name, raw)| match read(raw) {
                    Read::Value(value) => Some((name, value)),
                    Read::TooDeep => Some((name, stand_in(raw))),
                    Read::Unrepresentable => None,
                });
                fields.collect::<Option<_>>().map_or(Value::Null, Value::Object)
            }
            Err(_) => stand_in(raw),
        },
        // A number beyond f64 (`1e400`): valid JSON that no value holds. The argument is
        // unusable as a whole, which the core answers as a payload of the wrong shape.
        Read::Unrepresentable => Value::Null,
    }
}

enum Read {
    Value(Value),
    TooDeep,
    Unrepresentable,
}

fn read(raw: &RawValue) -> Read {
    match serde_json::from_str(raw.get()) {
        Ok(value) => Read::Value(value),
        // serde_json names no error kind for its depth limit; its message is the only sign.
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => Read::TooDeep,
        Err(_) => Read::Unrepresentable,
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
        incoming(&SioValue::Str(packet.to_owned().into(), None)).expect("an event").args
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
    fn a_number_no_value_holds_leaves_no_usable_argument() {
        assert_eq!(args(r#"["reader-event",{"eventType":"T","data":1e400}]"#), vec![Value::Null]);
    }

    #[test]
    fn a_packet_without_a_name_is_no_event() {
        for packet in ["not json", "[]", "[1,2]", "{}", r#"[{"a":1}]"#] {
            assert_eq!(incoming(&SioValue::Str(packet.to_owned().into(), None)), None, "{packet}");
        }
        assert_eq!(args(r#"["ping"]"#), Vec::<Value>::new());
    }
}
