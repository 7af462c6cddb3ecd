//! Client events in: an event name and its JSON arguments become a typed [`Command`] or a precise
//! [`CommandError`]. Every rule of PROTOCOL.md's validation list lives here. It must never panic,
//! whatever it is given: it is the first thing network input reaches, and a fuzz target.

use crate::event::ReadingPosition;
use crate::replies::Json;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{CommandError, ErrorCode};
use crate::principal::Role;

/// The longest `eventType`.
pub const MAX_EVENT_TYPE_CHARS: usize = 50;
/// The longest room name.
pub const MAX_ROOM_CHARS: usize = 64;
/// The longest `consultantId`, `userId` or `sessionId`.
pub const MAX_ID_CHARS: usize = 128;
/// Longest `clientEventId`.
pub const MAX_CLIENT_EVENT_ID_CHARS: usize = 128;
/// `get-recent-events` returns at most this many events.
pub const MAX_RECENT_LIMIT: u64 = 200;
/// `get-recent-events` returns this many events when `limit` is absent.
pub const DEFAULT_RECENT_LIMIT: usize = 50;
/// The longest token `refresh-token` accepts.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The longest event name echoed back in `event-error`.
const MAX_ECHOED_NAME_CHARS: usize = 64;

/// The client events this server understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientEvent {
    ReaderEvent,
    SubscribeConsultant,
    UnsubscribeConsultant,
    JoinRoom,
    LeaveRoom,
    GetOnlineReaders,
    GetRecentEvents,
    RefreshToken,
}

impl ClientEvent {
    pub fn from_name(name: &str) -> Option<ClientEvent> {
        Some(match name {
            "reader-event" => ClientEvent::ReaderEvent,
            "subscribe-consultant" => ClientEvent::SubscribeConsultant,
            "unsubscribe-consultant" => ClientEvent::UnsubscribeConsultant,
            "join-room" => ClientEvent::JoinRoom,
            "leave-room" => ClientEvent::LeaveRoom,
            "get-online-readers" => ClientEvent::GetOnlineReaders,
            "get-recent-events" => ClientEvent::GetRecentEvents,
            "refresh-token" => ClientEvent::RefreshToken,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientEvent::ReaderEvent => "reader-event",
            ClientEvent::SubscribeConsultant => "subscribe-consultant",
            ClientEvent::UnsubscribeConsultant => "unsubscribe-consultant",
            ClientEvent::JoinRoom => "join-room",
            ClientEvent::LeaveRoom => "leave-room",
            ClientEvent::GetOnlineReaders => "get-online-readers",
            ClientEvent::GetRecentEvents => "get-recent-events",
            ClientEvent::RefreshToken => "refresh-token",
        }
    }

    /// Whether the event draws on the `reader-event` budget rather than the other one.
    pub fn is_reader_event(self) -> bool {
        self == ClientEvent::ReaderEvent
    }

    /// The role check, first of all checks. Returns the original server's message on refusal.
    fn allowed_for(self, role: Role) -> Result<(), CommandError> {
        let refuse = |m: &str| Err(CommandError::new(ErrorCode::Unauthorized, m));
        match self {
            ClientEvent::ReaderEvent if role != Role::Reader => refuse("Only readers can send reader events"),
            ClientEvent::SubscribeConsultant if !role.is_staff() => refuse("Only consultants can subscribe"),
            ClientEvent::UnsubscribeConsultant if !role.is_staff() => {
                refuse("Only consultants can unsubscribe")
            }
            ClientEvent::GetOnlineReaders if !role.is_staff() => {
                refuse("Only consultants can view online readers")
            }
            _ => Ok(()),
        }
    }
}

/// A validated client request.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    ReaderEvent {
        event_type: String,
        data: Json,
        /// Where `data` says the reader is, found while `data` was at hand parsed.
        reading: ReadingPosition,
        session_id: Option<String>,
        /// The sender's key for this event: a second event with it is the same event.
        client_event_id: Option<String>,
    },
    /// `since`: replay what the subscription would have received after that event first.
    Subscribe {
        consultant_id: String,
        event_types: Vec<String>,
        since: Option<Uuid>,
    },
    Unsubscribe {
        consultant_id: String,
    },
    JoinRoom {
        room: String,
    },
    LeaveRoom {
        room: String,
    },
    GetOnlineReaders,
    GetRecentEvents(HistoryQuery),
    RefreshToken {
        token: String,
    },
}

/// What `get-recent-events` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    pub limit: usize,
    pub user_id: Option<String>,
    pub since: Option<Uuid>,
    /// Empty means every type.
    pub event_types: Vec<String>,
    /// Only these readers' events (sorted): a scoped consultant's assigned readers. `None` means
    /// anyone's. Set by the core after parsing, never by the client.
    pub readers: Option<Vec<String>>,
}

/// A client event after parsing: which event it was (when known), and the command or the error.
pub struct Parsed {
    pub event: Option<ClientEvent>,
    pub result: Result<Command, CommandError>,
}

/// The event name as echoed in `event-error`: cut short so a huge name is not sent back whole.
pub fn echoed_name(name: &str) -> String {
    name.chars().take(MAX_ECHOED_NAME_CHARS).collect()
}

/// Parses one client event. `args` are the event's arguments without the acknowledgement
/// callback; `has_binary` says whether the packet carried binary attachments.
pub fn parse(name: &str, args: &[Value], has_binary: bool, role: Role, config: &Config) -> Parsed {
    let Some(event) = ClientEvent::from_name(name) else {
        return Parsed {
            event: None,
            result: Err(CommandError::new(ErrorCode::UnknownEvent, "Unknown event")),
        };
    };
    Parsed { event: Some(event), result: parse_known(event, args.first(), has_binary, role, config) }
}

fn parse_known(
    event: ClientEvent,
    payload: Option<&Value>,
    has_binary: bool,
    role: Role,
    config: &Config,
) -> Result<Command, CommandError> {
    event.allowed_for(role)?;
    if event == ClientEvent::GetOnlineReaders {
        return Ok(Command::GetOnlineReaders);
    }
    // Size comes before the rest of the payload checks, so it is measured first.
    let data = match (event, payload) {
        (ClientEvent::ReaderEvent, Some(Value::Object(o))) => Some(serialize_data(o.get("data"), config)?),
        _ => None,
    };
    if has_binary {
        return Err(CommandError::invalid("Binary attachments are not accepted"));
    }
    match event {
        ClientEvent::ReaderEvent => {
            let o = object(payload)?;
            let event_type = event_type(o.get("eventType"), "eventType")?;
            let data = data.ok_or_else(|| CommandError::invalid("Payload must be an object"))?;
            check_depth(o.get("data"), config.max_event_depth)?;
            let reading = o.get("data").map(ReadingPosition::of_value).unwrap_or_default();
            let session_id = optional_id(o.get("sessionId"), "sessionId")?;
            if config.store_refuses_nul
                && (holds_nul(o.get("data")) || session_id.as_deref().is_some_and(|s| s.contains('\0')))
            {
                return Err(CommandError::invalid(
                    "data and sessionId must not contain the character U+0000",
                ));
            }
            let client_event_id = client_event_id(o.get("clientEventId"))?;
            Ok(Command::ReaderEvent { event_type, data, reading, session_id, client_event_id })
        }
        ClientEvent::SubscribeConsultant => {
            let o = object(payload)?;
            let consultant_id = id(o.get("consultantId"), "consultantId")?;
            let event_types = event_types(o.get("eventTypes"), config)?;
            let since = event_id(o.get("since"))?;
            Ok(Command::Subscribe { consultant_id, event_types, since })
        }
        ClientEvent::UnsubscribeConsultant => {
            let o = object(payload)?;
            Ok(Command::Unsubscribe { consultant_id: id(o.get("consultantId"), "consultantId")? })
        }
        ClientEvent::JoinRoom => Ok(Command::JoinRoom { room: room(payload)? }),
        ClientEvent::LeaveRoom => Ok(Command::LeaveRoom { room: room(payload)? }),
        ClientEvent::GetRecentEvents => history_query(payload, config).map(Command::GetRecentEvents),
        ClientEvent::RefreshToken => {
            let o = object(payload)?;
            match o.get("token") {
                Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_TOKEN_BYTES => {
                    Ok(Command::RefreshToken { token: t.clone() })
                }
                _ => Err(CommandError::invalid("token must be a non-empty string")),
            }
        }
        ClientEvent::GetOnlineReaders => Ok(Command::GetOnlineReaders),
    }
}

fn object(payload: Option<&Value>) -> Result<&Map<String, Value>, CommandError> {
    match payload {
        Some(Value::Object(o)) => Ok(o),
        _ => Err(CommandError::invalid("Payload must be an object")),
    }
}

/// Serializes `data` once (its text is not parsed back), refusing it when it is larger than
/// `MAX_EVENT_BYTES`.
fn serialize_data(data: Option<&Value>, config: &Config) -> Result<Json, CommandError> {
    let json = Json::of_value(data.unwrap_or(&Value::Null));
    if json.get().len() > config.max_event_bytes {
        return Err(CommandError::new(
            ErrorCode::PayloadTooLarge,
            format!("data exceeds {} bytes", config.max_event_bytes),
        ));
    }
    Ok(json)
}

/// Refuses `data` nested deeper than `max` arrays or objects. Iterative: no recursion on input.
fn check_depth(data: Option<&Value>, max: usize) -> Result<(), CommandError> {
    let mut stack: Vec<(&Value, usize)> = data.into_iter().map(|v| (v, 0)).collect();
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if depth + 1 > max {
            return Err(CommandError::invalid(format!("data is nested deeper than {max} levels")));
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// Whether any string or key in `data` holds the character U+0000. Iterative, as `check_depth`.
fn holds_nul(data: Option<&Value>) -> bool {
    let mut stack: Vec<&Value> = data.into_iter().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(a) => stack.extend(a),
            Value::Object(o) => {
                if o.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    false
}

/// Whether `s` is 1 to `max` characters of `A-Z a-z 0-9 _ . : -`.
pub fn is_valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn event_type(v: Option<&Value>, field: &str) -> Result<String, CommandError> {
    match v {
        Some(Value::String(s)) if is_valid_name(s, MAX_EVENT_TYPE_CHARS) => Ok(s.clone()),
        _ => Err(CommandError::invalid(format!(
            "{field} must be 1 to {MAX_EVENT_TYPE_CHARS} characters of A-Z a-z 0-9 _ . : -"
        ))),
    }
}

fn event_types(v: Option<&Value>, config: &Config) -> Result<Vec<String>, CommandError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(CommandError::invalid("eventTypes must be an array of event types")),
    };
    if items.len() > config.max_event_types {
        return Err(CommandError::invalid(format!(
            "eventTypes may list at most {} event types",
            config.max_event_types
        )));
    }
    let mut types: Vec<String> = Vec::with_capacity(items.len());
    for t in items {
        let t = event_type(Some(t), "eventTypes[]")?;
        // Repeats are dropped; the order the client gave is kept.
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(types)
}

fn is_valid_id(s: &str) -> bool {
    !s.is_empty() && s.chars().take(MAX_ID_CHARS + 1).count() <= MAX_ID_CHARS
}

fn id(v: Option<&Value>, field: &str) -> Result<String, CommandError> {
    match v {
        Some(Value::String(s)) if is_valid_id(s) => Ok(s.clone()),
        _ => {
            Err(CommandError::invalid(format!("{field} must be a string of 1 to {MAX_ID_CHARS} characters")))
        }
    }
}

fn optional_id(v: Option<&Value>, field: &str) -> Result<Option<String>, CommandError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        some => id(some, field).map(Some),
    }
}

fn room(payload: Option<&Value>) -> Result<String, CommandError> {
    match payload {
        Some(Value::String(s)) if is_valid_name(s, MAX_ROOM_CHARS) => Ok(s.clone()),
        _ => Err(CommandError::invalid(format!(
            "Room must be 1 to {MAX_ROOM_CHARS} characters of A-Z a-z 0-9 _ . : -"
        ))),
    }
}

/// An optional `clientEventId`: 1 to 128 characters of `A-Z a-z 0-9 _ . : -`, or absent.
fn client_event_id(value: Option<&Value>) -> Result<Option<String>, CommandError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_valid_name(s, MAX_CLIENT_EVENT_ID_CHARS) => Ok(Some(s.clone())),
        Some(_) => Err(CommandError::invalid(format!(
            "clientEventId must be 1 to {MAX_CLIENT_EVENT_ID_CHARS} characters of A-Z a-z 0-9 _ . : -"
        ))),
    }
}

/// An optional `since`: an event id, or absent (`null` too).
fn event_id(value: Option<&Value>) -> Result<Option<Uuid>, CommandError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match Uuid::try_parse(s) {
            Ok(id) => Ok(Some(id)),
            Err(_) => Err(CommandError::invalid("since must be an event id")),
        },
        Some(_) => Err(CommandError::invalid("since must be an event id")),
    }
}

fn history_query(payload: Option<&Value>, config: &Config) -> Result<HistoryQuery, CommandError> {
    let empty = Map::new();
    let o = match payload {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(CommandError::invalid("Payload must be an object")),
    };
    let limit = match o.get("limit") {
        None | Some(Value::Null) => DEFAULT_RECENT_LIMIT,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=MAX_RECENT_LIMIT) => n as usize,
            _ => {
                return Err(CommandError::invalid(format!(
                    "limit must be an integer from 1 to {MAX_RECENT_LIMIT}"
                )))
            }
        },
    };
    Ok(HistoryQuery {
        limit,
        user_id: optional_id(o.get("userId"), "userId")?,
        since: event_id(o.get("since"))?,
        event_types: event_types(o.get("eventTypes"), config)?,
        readers: None,
    })
}
