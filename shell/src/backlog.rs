//! What waits for one socket when its send queue is full. A resume can send a socket thousands
//! of events at once, and a node catching up on the log after an outage delivers what it reads in
//! bursts of up to a thousand; more than the socket's bounded send queue holds. They wait here and
//! go out as the socket takes them (the driver drains every few milliseconds), a replayed event
//! serialized only when its turn comes, so that neither stalls the driver nor disconnects a
//! socket that keeps up on average. Live deliveries queue behind, in order, within a bound: a
//! socket that falls further behind than that is too slow and is closed.

use std::collections::VecDeque;
use std::sync::Arc;

use alice_core::replies::{self, names};
use alice_core::{LogPosition, Payload, ReaderEvent};
use socketioxide::extract::SocketRef;
use socketioxide::socket::PreparedEvent;
use socketioxide::{ParserError, SocketError};

/// Live deliveries that may wait (behind a full send queue, or a replay) before the socket
/// counts as too slow: ten log reads' worth.
const MAX_LIVE_BEHIND: usize = 10_240;

/// One packet, encoded once for every socket it goes to. A `reader-activity` carries the event's
/// position in the log as its last argument (the offset an official client recovers from).
#[derive(Clone)]
pub struct Frame(PreparedEvent);

impl Frame {
    /// `event` with `payload`, encoded on `socket` (any socket of the namespace will do).
    pub fn new(socket: &SocketRef, event: &'static str, payload: &Payload) -> Option<Frame> {
        Frame::prepared(socket.prepare_event(event, payload.raw()))
    }

    pub fn activity(socket: &SocketRef, payload: &Payload, position: LogPosition) -> Option<Frame> {
        let offset = position.to_string();
        Frame::prepared(socket.prepare_event(names::READER_ACTIVITY, &(payload.raw(), offset.as_str())))
    }

    fn prepared(encoded: Result<PreparedEvent, ParserError>) -> Option<Frame> {
        // A payload is JSON the core made, and an offset a string: encoding them cannot fail.
        encoded.map(Frame).inspect_err(|e| tracing::error!(error = %e, "a packet could not be encoded")).ok()
    }

    /// Writes it to the socket's send queue, without waiting.
    pub fn send(&self, socket: &SocketRef) -> Result<(), SocketError> {
        socket.emit_prepared(&self.0)
    }
}

enum Queued {
    Ready(Frame),
    Activity(Arc<ReaderEvent>),
}

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Everything went out.
    Empty,
    /// The socket's send queue is full; try again later.
    Waiting,
}

#[derive(Default)]
pub struct Backlog {
    queue: VecDeque<Queued>,
    live: usize,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a replay.
    pub fn replay(&mut self, events: Vec<Arc<ReaderEvent>>) {
        self.queue.extend(events.into_iter().map(Queued::Activity));
    }

    /// Queues a live delivery behind the replay; false when too many wait already.
    pub fn live(&mut self, frame: &Frame) -> bool {
        if self.live >= MAX_LIVE_BEHIND {
            return false;
        }
        self.live += 1;
        self.queue.push_back(Queued::Ready(frame.clone()));
        true
    }

    /// Sends what the socket takes now, oldest first.
    pub fn drain(&mut self, socket: &SocketRef) -> Drained {
        while let Some(front) = self.queue.pop_front() {
            let frame = match front {
                Queued::Ready(frame) => {
                    self.live = self.live.saturating_sub(1);
                    frame
                }
                Queued::Activity(e) => {
                    let payload = replies::payload(&e.activity_json());
                    let Some(frame) = Frame::activity(socket, &payload, e.position) else { continue };
                    frame
                }
            };
            match frame.send(socket) {
                Ok(()) | Err(SocketError::Closed) => {}
                Err(SocketError::InternalChannelFull) => {
                    self.live += 1;
                    self.queue.push_front(Queued::Ready(frame));
                    return Drained::Waiting;
                }
            }
        }
        self.live = 0;
        Drained::Empty
    }
}
