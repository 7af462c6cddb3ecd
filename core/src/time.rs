//! Time as the core sees it, handed in with every input: a monotonic reading for everything that
//! waits or measures (timers, rate limits, intervals, silence), and the wall clock for what is
//! written down (event ids and timestamps, token expiry, `lastActivity`). A wall clock that steps
//! back then freezes nothing. The core never reads a clock; the shell (or the simulation) decides.

use chrono::{DateTime, SecondsFormat};

/// A point in time in milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The point `ms` milliseconds later, saturating at the end of time.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 in UTC with milliseconds, as every time on the wire is written.
    pub fn rfc3339(self) -> String {
        let ms = i64::try_from(self.0).unwrap_or(i64::MAX);
        match DateTime::from_timestamp_millis(ms) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => "9999-12-31T23:59:59.999Z".to_owned(),
        }
    }
}

/// One reading of both clocks, in milliseconds since the Unix epoch. `mono` never goes back: the
/// shell takes it as the wall clock at start plus the time elapsed since, so the two agree until
/// the wall clock is stepped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    pub mono: Millis,
    pub wall: Millis,
}

impl From<Millis> for Now {
    /// Both clocks at the same reading (tests, and clocks that are never stepped).
    fn from(t: Millis) -> Now {
        Now { mono: t, wall: t }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(Millis(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Millis(1_764_156_875_123).rfc3339(), "2025-11-26T11:34:35.123Z");
        assert_eq!(Millis(u64::MAX).rfc3339(), "9999-12-31T23:59:59.999Z");
    }
}
