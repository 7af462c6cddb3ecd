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

/// The `online-readers` payload, `{ count, readers }`, or as an acknowledgement, `{ ok: true,
/// count, readers }`. Written straight from the presence it lists, with no JSON tree between: the
/// list is pushed every second and may hold thousands of readers.
pub fn online_readers(readers: &[(&str, &ReaderPresence)], ack: bool) -> Payload {
    let body = OnlineReaders { ok: ack.then_some(true), count: readers.len(), readers: Listing(readers) };
    // Strings, numbers and JSON text always serialize; the fallback is never taken.
    Json(Arc::from(to_raw_value(&body).unwrap_or_default()))
}

#[derive(serde::Serialize)]
struct OnlineReaders<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    count: usize,
    readers: Listing<'a>,
}

struct Listing<'a>(&'a [(&'a str, &'a ReaderPresence)]);

impl serde::Serialize for Listing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(user, r)| OnlineReader {
            user_id: user,
            first_name: r.first_name.as_deref(),
            last_name: r.last_name.as_deref(),
            last_activity: r.last_activity.rfc3339(),
            current_book: r.current_book.as_ref().map(|s| &*s.json),
            current_page: r.current_page.as_ref().map(|s| &*s.json),
            connections: r.connections,
        }))
    }
}

/// One reader of `online-readers`. A book or page is the JSON it was sent as.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OnlineReader<'a> {
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_book: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_page: Option<&'a RawValue>,
    connections: u32,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Stamped;

    #[test]
    fn online_readers_are_written_field_by_field_as_the_protocol_names_them() {
        let at = Millis(1_767_225_600_000);
        let stamped = |json: &str| Some(Stamped { json: RawValue::from_string(json.into()).unwrap(), at });
        let named = ReaderPresence {
            first_name: Some("Ada".into()),
            last_name: Some("L\"ovelace".into()),
            last_activity: at,
            current_book: stamped(r#""b-1""#),
            current_page: stamped("12"),
            connections: 2,
        };
        // A missing name is left out.
        let bare = ReaderPresence {
            first_name: None,
            last_name: None,
            last_activity: at,
            current_book: None,
            current_page: stamped(r#"{"n":[1,2.5]}"#),
            connections: 1,
        };
        let list = [("r1", &named), ("r2", &bare)];
        let readers = concat!(
            r#"[{"userId":"r1","firstName":"Ada","lastName":"L\"ovelace","lastActivity":"2026-01-01T00:00:00.000Z","#,
            r#""currentBook":"b-1","currentPage":12,"connections":2},"#,
            r#"{"userId":"r2","lastActivity":"2026-01-01T00:00:00.000Z","currentPage":{"n":[1,2.5]},"connections":1}]"#
        );
        assert_eq!(online_readers(&list, false).get(), format!(r#"{{"count":2,"readers":{readers}}}"#));
        assert_eq!(
            online_readers(&list, true).get(),
            format!(r#"{{"ok":true,"count":2,"readers":{readers}}}"#)
        );
        assert_eq!(online_readers(&[], false).get(), r#"{"count":0,"readers":[]}"#);
    }
}
