//! An accepted reader event: what is delivered, kept in history, sent over the bus and stored.

use serde_json::value::RawValue;

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

    /// `data.bookId` (or `data.currentBook`) and `data.page` (or `data.currentPage`), when present.
    pub fn reading_position(&self) -> (Option<Box<RawValue>>, Option<Box<RawValue>>) {
        #[derive(serde::Deserialize)]
        struct Position<'a> {
            #[serde(rename = "bookId", borrow)]
            book_id: Option<&'a RawValue>,
            #[serde(rename = "currentBook", borrow)]
            current_book: Option<&'a RawValue>,
            #[serde(borrow)]
            page: Option<&'a RawValue>,
            #[serde(rename = "currentPage", borrow)]
            current_page: Option<&'a RawValue>,
        }
        if !self.data.get().starts_with('{') {
            return (None, None);
        }
        let Ok(pos) = serde_json::from_str::<Position>(self.data.get()) else {
            return (None, None);
        };
        let present = |v: Option<&RawValue>| v.filter(|v| v.get() != "null").map(RawValue::to_owned);
        (
            present(pos.book_id).or_else(|| present(pos.current_book)),
            present(pos.page).or_else(|| present(pos.current_page)),
        )
    }
}

/// Whether an event type is a support event: it contains `HELP_REQUEST` or `FEEDBACK`.
pub fn is_support_type(event_type: &str) -> bool {
    event_type.contains("HELP_REQUEST") || event_type.contains("FEEDBACK")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> ReaderEvent {
        ReaderEvent {
            id: Uuid::nil(),
            user_id: Arc::from("u"),
            event_type: "PAGE_TURN".into(),
            data: Json::from_text(data.into()).unwrap(),
            timestamp: Millis(0),
            session_id: "s".into(),
            position: LogPosition::START,
            sent_from: SentFrom::default(),
        }
    }

    #[test]
    fn reading_position_keeps_json_types_and_falls_back() {
        let (book, page) = event(r#"{"bookId":"b1","page":7}"#).reading_position();
        assert_eq!(book.unwrap().get(), r#""b1""#);
        assert_eq!(page.unwrap().get(), "7");
        let (book, page) = event(r#"{"currentBook":3,"currentPage":"iv"}"#).reading_position();
        assert_eq!(book.unwrap().get(), "3");
        assert_eq!(page.unwrap().get(), r#""iv""#);
        let (book, page) = event(r#"{"page":null}"#).reading_position();
        assert!(book.is_none() && page.is_none());
        let (book, page) = event("[1,2]").reading_position();
        assert!(book.is_none() && page.is_none());
    }

    #[test]
    fn support_events_match_case_sensitively() {
        assert!(is_support_type("HELP_REQUEST"));
        assert!(is_support_type("reader.FEEDBACK.sent"));
        assert!(!is_support_type("help_request"));
    }
}
