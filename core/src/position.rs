//! Where an event stands in the deployment's log. Positions order events exactly as the log does,
//! whatever the nodes' clocks say, so a cursor made of one resumes exactly.
//!
//! In a cluster a position is the Redis stream entry id (`<ms>-<seq>`) of the event's log entry.
//! On a single node this core hands positions out itself, in the same form and the same way Redis
//! does: the wall-clock millisecond, and a sequence within it that never goes back, even when the
//! clock does. A deployment that changes from one to the other keeps one order as long as clocks
//! roughly agree.

use std::fmt;
use std::str::FromStr;

use crate::time::Millis;

/// How far an event's position may lie from its id's and timestamp's time (the clocks of the
/// node that accepted it and of Redis): the store widens time ranges over positions by this, and
/// a resume takes an unknown id this much older than what a node shows as never issued.
pub const PLACED_WITHIN_MS: u64 = 3_600_000;

/// A position in the log: milliseconds, then a sequence within them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub ms: u64,
    pub seq: u64,
}

impl LogPosition {
    /// Before every event; also what an event carries until the log has placed it.
    pub const START: LogPosition = LogPosition { ms: 0, seq: 0 };

    /// The first position of a millisecond: every event placed in it or later comes after.
    pub fn at(ms: Millis) -> LogPosition {
        LogPosition { ms: ms.0, seq: 0 }
    }

    /// The next position after `self` at wall time `now`, as Redis picks stream ids.
    pub fn next(self, now: Millis) -> LogPosition {
        if now.0 > self.ms {
            LogPosition { ms: now.0, seq: 0 }
        } else {
            LogPosition { ms: self.ms, seq: self.seq + 1 }
        }
    }
}

impl LogPosition {
    /// The last position before `self` (reading after it reads `self` first).
    pub fn before(self) -> LogPosition {
        match self {
            LogPosition { ms: 0, seq: 0 } => self,
            LogPosition { ms, seq: 0 } => LogPosition { ms: ms - 1, seq: u64::MAX },
            LogPosition { ms, seq } => LogPosition { ms, seq: seq - 1 },
        }
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A position's text did not read as `<ms>-<seq>`.
#[derive(Debug, PartialEq, Eq)]
pub struct BadPosition;

impl FromStr for LogPosition {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<LogPosition, BadPosition> {
        let (ms, seq) = s.split_once('-').ok_or(BadPosition)?;
        let number = |part: &str| {
            if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadPosition);
            }
            part.parse::<u64>().map_err(|_| BadPosition)
        };
        Ok(LogPosition { ms: number(ms)?, seq: number(seq)? })
    }
}

/// Stored as its text (`<ms>-<seq>`), as Redis writes stream ids.
impl serde::Serialize for LogPosition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LogPosition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(|_| serde::de::Error::custom("a log position is <ms>-<seq>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_redis_stream_ids() {
        let p: LogPosition = "1733140000123-7".parse().unwrap();
        assert_eq!(p, LogPosition { ms: 1_733_140_000_123, seq: 7 });
        assert_eq!(p.to_string(), "1733140000123-7");
        for bad in ["", "-", "1-", "-1", "1", "1-2-3", "a-1", "1- 2", "+1-2", "99999999999999999999999-1"] {
            assert_eq!(bad.parse::<LogPosition>(), Err(BadPosition), "{bad:?}");
        }
    }

    #[test]
    fn orders_by_millisecond_then_sequence() {
        let a = LogPosition { ms: 5, seq: 9 };
        let b = LogPosition { ms: 6, seq: 0 };
        assert!(LogPosition::START < a && a < b);
        assert!(LogPosition::at(Millis(6)) <= b);
    }

    #[test]
    fn before_is_the_last_position_ahead() {
        assert_eq!(LogPosition { ms: 5, seq: 3 }.before(), LogPosition { ms: 5, seq: 2 });
        assert_eq!(LogPosition { ms: 5, seq: 0 }.before(), LogPosition { ms: 4, seq: u64::MAX });
        assert_eq!(LogPosition::START.before(), LogPosition::START);
    }

    #[test]
    fn next_never_goes_back_when_the_clock_does() {
        let mut p = LogPosition::START;
        let mut seen = Vec::new();
        for now in [10, 10, 12, 3, 12, 13] {
            let q = p.next(Millis(now));
            assert!(q > p, "{q} after {p}");
            seen.push(q.to_string());
            p = q;
        }
        assert_eq!(seen, ["10-0", "10-1", "12-0", "12-1", "12-2", "13-0"]);
    }
}
