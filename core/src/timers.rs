//! The core's one timer table: each kind of wake-up, keyed by what it is for.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Millis;
use crate::ConnId;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// A socket's token expires.
    TokenExpiry(ConnId),
    /// A new staff socket sent no command in time: what waited for it goes out.
    FirstCommand(ConnId),
    /// A resume waited this long for this node to read the log to its end, and waits no longer.
    LogEnd(ConnId),
    /// A store batch is due: a retry, or a batch that has lingered for more events.
    StoreDue,
    /// A failed append to the log has waited out its backoff.
    AppendRetry,
    /// A read of a cluster stream has waited long enough: a backoff after a failure, or the log's
    /// pace after a read that found entries.
    ReadRetry(crate::readers::Stream),
    /// The storing consumer's next command is due: a retry, a claim, a trim or a paced read.
    Consumer,
    /// A failed batch of bus messages has waited out its backoff.
    BroadcastRetry,
    /// A coalesced `online-readers` push is due.
    PresencePush,
    /// Time to announce this node on the bus.
    Heartbeat,
    /// A silent node may have outlived the presence TTL.
    NodeExpiry,
    /// Forget idle per-user rate limit state.
    ForgetIdleUsers,
    /// Read the assignments table again (consultant scope `assigned`).
    AssignmentRefresh,
    /// Sample who is online, for the activity charts.
    ActivitySample,
}

/// Deadlines by timer, ordered by time.
#[derive(Debug, Default)]
pub struct Timers {
    by_deadline: BTreeSet<(Millis, Timer)>,
    by_timer: BTreeMap<Timer, Millis>,
}

impl Timers {
    /// Arms `timer` for `at`, replacing its earlier deadline.
    pub fn set(&mut self, timer: Timer, at: Millis) {
        if let Some(old) = self.by_timer.insert(timer, at) {
            self.by_deadline.remove(&(old, timer));
        }
        self.by_deadline.insert((at, timer));
    }

    /// Arms `timer` for `at` unless it is already armed for no later.
    pub fn set_earliest(&mut self, timer: Timer, at: Millis) {
        if self.by_timer.get(&timer).is_none_or(|old| at < *old) {
            self.set(timer, at);
        }
    }

    pub fn cancel(&mut self, timer: Timer) {
        if let Some(old) = self.by_timer.remove(&timer) {
            self.by_deadline.remove(&(old, timer));
        }
    }

    pub fn is_set(&self, timer: Timer) -> bool {
        self.by_timer.contains_key(&timer)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Millis> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<Timer> {
        let &(at, timer) = self.by_deadline.first()?;
        if at > now {
            return None;
        }
        self.by_deadline.pop_first();
        self.by_timer.remove(&timer);
        Some(timer)
    }
}
