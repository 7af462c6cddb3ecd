//! What waits for one socket behind a replay. A resume can send a socket thousands of events at
//! once, more than its bounded send queue holds; they wait here and go out as the socket takes
//! them (the driver drains every few milliseconds), each serialized only when its turn comes, so
//! that a long replay neither stalls the driver nor disconnects a socket that keeps up. Live
//! deliveries that arrive meanwhile queue behind it, in order, within a bound.

use std::collections::VecDeque;
use std::sync::Arc;

use alice_core::replies::{self, names};
use alice_core::{Payload, ReaderEvent};
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

/// Live deliveries that may wait behind a replay before the socket counts as too slow.
const MAX_LIVE_BEHIND: usize = 1024;

enum Queued {
    Ready(&'static str, Payload),
    Activity(Arc<ReaderEvent>),
}

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Everything went out.
    Empty,
    /// The socket's send queue is full; try again later.
    Waiting,
    /// The socket cannot take it: disconnect it.
    Failed,
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
    pub fn live(&mut self, event: &'static str, payload: &Payload) -> bool {
        if self.live >= MAX_LIVE_BEHIND {
            return false;
        }
        self.live += 1;
        self.queue.push_back(Queued::Ready(event, payload.clone()));
        true
    }

    /// Sends what the socket takes now, oldest first.
    pub fn drain(&mut self, socket: &SocketRef) -> Drained {
        while let Some(front) = self.queue.pop_front() {
            let (event, payload) = match front {
                Queued::Ready(event, payload) => {
                    self.live = self.live.saturating_sub(1);
                    (event, payload)
                }
                Queued::Activity(e) => (names::READER_ACTIVITY, replies::payload(&e.activity_json())),
            };
            match socket.emit(event, payload.raw()) {
                Ok(()) | Err(SendError::Socket(SocketError::Closed)) => {}
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    self.live += 1;
                    self.queue.push_front(Queued::Ready(event, payload));
                    return Drained::Waiting;
                }
                Err(_) => return Drained::Failed,
            }
        }
        self.live = 0;
        Drained::Empty
    }
}
