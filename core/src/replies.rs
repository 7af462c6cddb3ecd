//! Server events out: the JSON of every reply, error and acknowledgement, written in one place.
//! Each payload is serialized once, here, and shared by every socket that receives it.

use serde_json::value::{to_raw_value, RawValue};
use serde_json::{json, Map, Value};
use std::sync::Arc;

use crate::error::CommandError;
use crate::event::ReaderEvent;
use crate::presence::ReaderPresence;
use crate::time::Millis;

/// JSON serialized once and shared: a payload written to any number of sockets, or an event's
/// `data`. Equality compares the text.
#[derive(Clone, Debug)]
pub struct Json(Arc<RawValue>);

/// A payload for sockets.
pub type Payload = Json;

impl Json {
    /// Wraps JSON text, checking that it is JSON.
    pub fn from_text(text: String) -> Result<Json, serde_json::Error> {
        RawValue::from_string(text).map(|raw| Json(Arc::from(raw)))
    }

    /// Serializes a value once; the text is not parsed back to be checked.
    pub fn of_value(value: &Value) -> Json {
        // A `Value` always serializes; the fallback is never taken.
        Json(Arc::from(to_raw_value(value).unwrap_or_default()))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// Parses the text back into a value (for tests and inspection).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.get() == other.get()
    }
}

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Serializes a JSON value once.
pub fn payload(value: &Value) -> Payload {
    Json::of_value(value)
}

/// Names of the events the server emits.
pub mod names {
    pub const READER_ACTIVITY: &str = "reader-activity";
    pub const ONLINE_READERS: &str = "online-readers";
    pub const RECENT_EVENTS: &str = "recent-events";
    pub const EVENT_ERROR: &str = "event-error";
    pub const READER_EVENT_RECEIVED: &str = "reader-event-received";
    pub const SUBSCRIBED: &str = "subscribe-consultant-success";
    pub const UNSUBSCRIBED: &str = "unsubscribe-consultant-success";
    pub const ROOM_JOINED: &str = "room-joined";
    pub const ROOM_LEFT: &str = "room-left";
    pub const TOKEN_REFRESHED: &str = "token-refreshed";
}

/// The acknowledgement of a successful request: `{ ok: true, ...fields }`.
pub fn ack_ok(fields: &Map<String, Value>) -> Payload {
    let mut body = Map::with_capacity(fields.len() + 1);
    body.insert("ok".into(), Value::Bool(true));
    body.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    payload(&Value::Object(body))
}

/// The `event-error` payload: `{ message, code, event?, retryAfterMs? }`.
pub fn event_error(err: &CommandError, event: Option<&str>) -> Payload {
    let mut body = Map::new();
    body.insert("message".into(), err.message.clone().into());
    body.insert("code".into(), err.code.as_str().into());
    if let Some(event) = event {
        body.insert("event".into(), event.into());
    }
    if let Some(ms) = err.retry_after_ms {
        body.insert("retryAfterMs".into(), ms.into());
    }
    payload(&Value::Object(body))
}

/// The acknowledgement of a refused request: `{ ok: false, error: { code, message } }`.
pub fn ack_error(err: &CommandError) -> Payload {
    let mut error = Map::new();
    error.insert("code".into(), err.code.as_str().into());
    error.insert("message".into(), err.message.clone().into());
    if let Some(ms) = err.retry_after_ms {
        error.insert("retryAfterMs".into(), ms.into());
    }
    payload(&json!({ "ok": false, "error": error }))
}

/// The `online-readers` fields: `{ count, readers }`.
pub fn online_readers(readers: &[(String, ReaderPresence)]) -> Map<String, Value> {
    let list: Vec<Value> = readers
        .iter()
        .map(|(user, r)| {
            let mut o = Map::new();
            o.insert("userId".into(), user.as_str().into());
            if let Some(f) = &r.first_name {
                o.insert("firstName".into(), f.as_str().into());
            }
            if let Some(l) = &r.last_name {
                o.insert("lastName".into(), l.as_str().into());
            }
            o.insert("lastActivity".into(), r.last_activity.rfc3339().into());
            for (key, stamped) in [("currentBook", &r.current_book), ("currentPage", &r.current_page)] {
                if let Some(v) = stamped.as_ref().and_then(|s| serde_json::from_str::<Value>(&s.json).ok()) {
                    o.insert(key.into(), v);
                }
            }
            o.insert("connections".into(), r.connections.into());
            Value::Object(o)
        })
        .collect();
    let mut body = Map::new();
    body.insert("count".into(), readers.len().into());
    body.insert("readers".into(), Value::Array(list));
    body
}

/// The `recent-events` fields: `{ events, hasMore }`.
pub fn recent_events(events: &[Arc<ReaderEvent>], has_more: bool) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("events".into(), Value::Array(events.iter().map(|e| e.record_json()).collect()));
    body.insert("hasMore".into(), has_more.into());
    body
}

/// Builds a reply's fields from pairs.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The `token-refreshed` fields.
pub fn token_refreshed(expires_at: Millis) -> Map<String, Value> {
    fields([("expiresAt", expires_at.rfc3339().into())])
}
