//! An accepted reader event: what is delivered, kept in history, sent over the bus and stored.

use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

use crate::replies::Json;
use std::sync::Arc;
use uuid::Uuid;

use crate::position::LogPosition;
use crate::time::Millis;

/// One reader event the cluster accepted. Immutable once made and shared by `Arc`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReaderEvent {
    /// Time-ordered UUIDv7 assigned by the accepting node.
    pub id: Uuid,
    pub user_id: Arc<str>,
    pub event_type: String,
    /// The client's `data`, serialized once (`null` when absent).
    pub data: Json,
    /// Where `data` says the reader is, read from it when it was read.
    pub reading: ReadingPosition,
    pub timestamp: Millis,
    pub session_id: String,
    /// Where the log placed it ([`LogPosition::START`] until the log has).
    pub position: LogPosition,
    /// The socket it was sent on, as far as deliveries and replays need it.
    pub sent_from: SentFrom,
}

/// The socket an event was sent on, known after that socket is gone: by a tag of its `pid` (which
/// a recovered socket keeps, on any node), so that no socket with that `pid` receives it (rule 3),
/// and by the rooms it had joined, whose consultants and admins receive it (rule 4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SentFrom {
    /// [`socket_tag`] of the sending socket's `pid`; empty for events stored before senders were
    /// recorded.
    pub socket: Arc<str>,
    /// Sorted.
    pub rooms: Vec<String>,
}

/// What the log, history and the store know a socket by: the first 128 bits of the SHA-256 of
/// its `pid`, in hex. The `pid` itself is a secret of the client's (it recovers the session), so
/// it is kept nowhere anyone else can read it.
pub fn socket_tag(pid: &str) -> Arc<str> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(pid.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>().into()
}

impl SentFrom {
    /// Whether the sending socket had joined any of `rooms` (sorted).
    pub fn in_any_of(&self, rooms: &[String]) -> bool {
        self.rooms.iter().any(|r| rooms.binary_search(r).is_ok())
    }
}

impl ReaderEvent {
    /// The `reader-activity` payload sent to sockets.
    pub fn activity_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "userId": &*self.user_id,
            "eventType": self.event_type,
            "data": self.data.raw(),
            "timestamp": self.timestamp.rfc3339(),
            "sessionId": self.session_id,
        })
    }

    /// The `RealTimeEvent` shape used in `recent-events`.
    pub fn record_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "userId": &*self.user_id,
            "eventType": self.event_type,
            "eventData": self.data.raw(),
            "timestamp": self.timestamp.rfc3339(),
            "sessionId": self.session_id,
        })
    }

    /// Support events reach every consultant and admin (delivery rule 2).
    pub fn is_support(&self) -> bool {
        is_support_type(&self.event_type)
    }
}

/// Where a reader is, as an event's `data` says: `bookId` (or `currentBook`) and `page` (or
/// `currentPage`), as the JSON it gave (a `null` counts as absent). Found once, where `data` is
/// read, and kept with the event.
#[derive(Clone, Debug, Default)]
pub struct ReadingPosition {
    pub book: Option<Box<RawValue>>,
    pub page: Option<Box<RawValue>>,
}

/// Equal when the JSON texts are.
impl PartialEq for ReadingPosition {
    fn eq(&self, other: &ReadingPosition) -> bool {
        fn text(v: &Option<Box<RawValue>>) -> Option<&str> {
            v.as_deref().map(RawValue::get)
        }
        text(&self.book) == text(&other.book) && text(&self.page) == text(&other.page)
    }
}

impl ReadingPosition {
    /// From `data` as a client sent it, already parsed: no JSON is read again.
    pub fn of_value(data: &Value) -> ReadingPosition {
        let field = |names: [&str; 2]| {
            names.into_iter().find_map(|name| match data.get(name) {
                None | Some(Value::Null) => None,
                Some(v) => to_raw_value(v).ok(),
            })
        };
        ReadingPosition { book: field(["bookId", "currentBook"]), page: field(["page", "currentPage"]) }
    }

    /// From `data` as JSON text (the log's, a store's): its top-level fields only, the nested
    /// values skipped unparsed.
    pub fn of_json(data: &Json) -> ReadingPosition {
        #[derive(serde::Deserialize)]
        struct Fields<'a> {
            #[serde(rename = "bookId", borrow)]
            book_id: Option<&'a RawValue>,
            #[serde(rename = "currentBook", borrow)]
            current_book: Option<&'a RawValue>,
            #[serde(borrow)]
            page: Option<&'a RawValue>,
            #[serde(rename = "currentPage", borrow)]
            current_page: Option<&'a RawValue>,
        }
        if !data.get().starts_with('{') {
            return ReadingPosition::default();
        }
        let Ok(f) = serde_json::from_str::<Fields>(data.get()) else { return ReadingPosition::default() };
        let present = |v: Option<&RawValue>| v.filter(|v| v.get() != "null").map(RawValue::to_owned);
        ReadingPosition {
            book: present(f.book_id).or_else(|| present(f.current_book)),
            page: present(f.page).or_else(|| present(f.current_page)),
        }
    }
}

/// Whether an event type is a support event: it contains `HELP_REQUEST` or `FEEDBACK`.
pub fn is_support_type(event_type: &str) -> bool {
    event_type.contains("HELP_REQUEST") || event_type.contains("FEEDBACK")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position read from the text, checked against the one read from the parsed value.
    fn reading(data: &str) -> (Option<String>, Option<String>) {
        let r = ReadingPosition::of_json(&Json::from_text(data.into()).unwrap());
        let from_value = ReadingPosition::of_value(&serde_json::from_str(data).unwrap());
        assert_eq!(r, from_value, "text and value agree on {data}");
        (r.book.map(|b| b.get().to_owned()), r.page.map(|p| p.get().to_owned()))
    }

    #[test]
    fn reading_position_keeps_json_types_and_falls_back() {
        let some = |b: &str, p: &str| (Some(b.to_owned()), Some(p.to_owned()));
        assert_eq!(reading(r#"{"bookId":"b1","page":7}"#), some(r#""b1""#, "7"));
        assert_eq!(reading(r#"{"currentBook":3,"currentPage":"iv"}"#), some("3", r#""iv""#));
        assert_eq!(
            reading(r#"{"bookId":null,"currentBook":[1],"page":{"n":2.5}}"#),
            some("[1]", r#"{"n":2.5}"#)
        );
        assert_eq!(reading(r#"{"page":null}"#), (None, None));
        assert_eq!(reading("[1,2]"), (None, None));
        assert_eq!(reading(r#""bookId""#), (None, None));
    }

    #[test]
    fn support_events_match_case_sensitively() {
        assert!(is_support_type("HELP_REQUEST"));
        assert!(is_support_type("reader.FEEDBACK.sent"));
        assert!(!is_support_type("help_request"));
    }
}
