//! The protocol between nodes. Every message names its origin (node id and incarnation) and
//! carries that origin's sequence number, so receivers drop duplicates and count gaps
//! ([`crate::sequence`]). The codec is a version byte followed by postcard: compact, and strict
//! about what it accepts.
//!
//! Two streams carry these messages in a cluster, each with its own sequence per origin: the log
//! (one [`BusBody::Event`] per accepted event, read by every node in one order and trimmed only
//! behind what is stored) and the bus (presence, heartbeats, leaving: trimmed by age).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::event::{ReaderEvent, ReadingPosition, SentFrom};
use crate::position::LogPosition;
use crate::presence::ReaderPresence;
use crate::replies::Json;
use crate::time::Millis;

/// The codec version this build writes, and reads (with the log entries of version 2).
pub const BUS_VERSION: u8 = 3;

/// The version before, still read from the log: an upgraded node stores and shows the entries
/// its predecessors appended (their senders are known by their rooms only).
const LOG_VERSION_2: u8 = 2;

/// One message on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusMessage {
    /// The node that sent it.
    pub origin: String,
    /// Differs each time that node starts, so a restarted node's sequence starts afresh.
    pub incarnation: u64,
    /// 1, 2, 3, … per origin and incarnation.
    pub seq: u64,
    pub body: BusBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusBody {
    /// A reader event the origin accepted (on the log only).
    Event(BusEvent),
    /// One of the origin's readers changed (connected, disconnected); `None` means gone.
    Presence { user_id: String, reader: Option<ReaderPresence> },
    /// The origin is alive; here is every reader it holds.
    Heartbeat { readers: BTreeMap<String, ReaderPresence> },
    /// The origin is shutting down; forget its readers now.
    Leaving,
    /// An admin replaced a consultant's active assignments on the origin (which wrote them to
    /// its table before announcing them).
    Assigned { consultant_id: String, readers: std::collections::BTreeSet<String> },
}

/// A reader event as it travels between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusEvent {
    /// The UUIDv7 as bytes.
    pub id: [u8; 16],
    pub user_id: String,
    pub event_type: String,
    /// The `data` JSON text, as serialized once by the origin.
    pub data: String,
    pub timestamp: Millis,
    pub session_id: String,
    /// The sending socket's `pid`, which no socket receiving it may have (rule 3).
    pub sender_socket: String,
    /// The rooms the sending socket had joined, sorted (rule 4).
    pub sender_rooms: Vec<String>,
}

/// What version 2 wrote on the log: the same, but with the sender's socket number on its
/// origin instead of its `pid`.
mod v2 {
    use serde::Deserialize;

    use crate::time::Millis;

    #[derive(Deserialize)]
    pub(super) struct LogMessage {
        pub origin: String,
        pub incarnation: u64,
        pub seq: u64,
        pub body: LogBody,
    }

    /// The log carried only events (the first variant, as postcard numbers them).
    #[derive(Deserialize)]
    pub(super) enum LogBody {
        Event(Event),
    }

    #[derive(Deserialize)]
    pub(super) struct Event {
        pub id: [u8; 16],
        pub user_id: String,
        pub event_type: String,
        pub data: String,
        pub timestamp: Millis,
        pub session_id: String,
        pub sender_rooms: Vec<String>,
        pub _sender_conn: u64,
    }

    impl LogMessage {
        pub(super) fn upgraded(self) -> super::BusMessage {
            let LogBody::Event(e) = self.body;
            super::BusMessage {
                origin: self.origin,
                incarnation: self.incarnation,
                seq: self.seq,
                body: super::BusBody::Event(super::BusEvent {
                    id: e.id,
                    user_id: e.user_id,
                    event_type: e.event_type,
                    data: e.data,
                    timestamp: e.timestamp,
                    session_id: e.session_id,
                    sender_socket: String::new(),
                    sender_rooms: e.sender_rooms,
                }),
            }
        }
    }
}

impl BusEvent {
    /// The event itself, placed at `position` in the log, or `None` when its `data` is not JSON.
    /// Takes the message's fields rather than copying them: it is read once per entry.
    pub fn into_event(self, position: LogPosition) -> Option<ReaderEvent> {
        let data = Json::from_text(self.data).ok()?;
        Some(ReaderEvent {
            id: uuid::Uuid::from_bytes(self.id),
            user_id: self.user_id.into(),
            event_type: self.event_type,
            reading: ReadingPosition::of_json(&data),
            data,
            timestamp: self.timestamp,
            session_id: self.session_id,
            position,
            sent_from: SentFrom { socket: self.sender_socket.into(), rooms: self.sender_rooms },
        })
    }
}

/// Why a bus payload could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownVersion(u8),
    Malformed,
}

impl BusMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![BUS_VERSION];
        // Serializing plain data into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<BusMessage, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        match version {
            BUS_VERSION => match postcard::take_from_bytes::<BusMessage>(body) {
                Ok((msg, [])) => Ok(msg),
                _ => Err(DecodeError::Malformed),
            },
            LOG_VERSION_2 => match postcard::take_from_bytes::<v2::LogMessage>(body) {
                Ok((msg, [])) => Ok(msg.upgraded()),
                _ => Err(DecodeError::Malformed),
            },
            _ => Err(DecodeError::UnknownVersion(version)),
        }
    }
}
