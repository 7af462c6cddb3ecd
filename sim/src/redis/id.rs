//! Stream entry ids (`<ms>-<seq>`) and how commands write them.

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId { ms: u64::MAX, seq: u64::MAX };

    /// The id right after this one, if any.
    pub fn next(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| StreamId { ms, seq: 0 }),
        }
    }

    /// The id right before this one, if any.
    pub fn prev(self) -> Option<StreamId> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self.ms.checked_sub(1).map(|ms| StreamId { ms, seq: u64::MAX }),
        }
    }

    /// Parses `ms-seq`, or `ms` alone with `missing_seq` as its sequence (0 for a range's start,
    /// the largest for its end).
    pub fn parse(arg: &[u8], missing_seq: u64) -> Option<StreamId> {
        let text = std::str::from_utf8(arg).ok()?;
        let (ms, seq) = match text.split_once('-') {
            Some((ms, seq)) => (ms.parse().ok()?, seq.parse().ok()?),
            None => (text.parse().ok()?, missing_seq),
        };
        Some(StreamId { ms, seq })
    }

    pub fn to_bytes(self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_step() {
        assert_eq!(StreamId::parse(b"5-3", 0), Some(StreamId { ms: 5, seq: 3 }));
        assert_eq!(StreamId::parse(b"5", u64::MAX), Some(StreamId { ms: 5, seq: u64::MAX }));
        assert_eq!(StreamId::parse(b"x-1", 0), None);
        assert_eq!(StreamId { ms: 1, seq: u64::MAX }.next(), Some(StreamId { ms: 2, seq: 0 }));
        assert_eq!(StreamId::MIN.prev(), None);
        assert_eq!(StreamId::MAX.next(), None);
    }
}
