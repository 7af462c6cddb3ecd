//! How many entries the cluster's log takes per second, as this node reads them: the count over
//! the last whole window of at least a second. It decides whether reading every entry as it
//! comes fits the log's Redis budget ([`crate::Config::log_read_budget`]).

use crate::time::Millis;

/// The shortest window an entry rate is measured over.
const WINDOW_MS: u64 = 1_000;

/// Entries read, counted per window.
#[derive(Clone, Debug, Default)]
pub struct LogRate {
    /// When the current window began; `None` before the first read.
    since: Option<Millis>,
    /// Entries read in the current window.
    counted: u64,
    /// Entries per second over the last whole window.
    per_second: u64,
}

impl LogRate {
    /// Counts `entries` read at `now`, closing the window first when it is a second old.
    pub fn read(&mut self, now: Millis, entries: u64) {
        let since = *self.since.get_or_insert(now);
        let elapsed = now.since(since);
        if elapsed >= WINDOW_MS {
            self.per_second = self.counted.saturating_mul(1_000) / elapsed;
            self.since = Some(now);
            self.counted = 0;
        }
        self.counted = self.counted.saturating_add(entries);
    }

    /// Entries per second over the last whole window (zero before one has closed).
    pub fn per_second(&self) -> u64 {
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_that_of_the_last_whole_window() {
        let mut rate = LogRate::default();
        rate.read(Millis(0), 300);
        rate.read(Millis(500), 300);
        assert_eq!(rate.per_second(), 0, "no window has closed yet");
        rate.read(Millis(1_000), 7);
        assert_eq!(rate.per_second(), 600);
        rate.read(Millis(3_000), 0);
        assert_eq!(rate.per_second(), 3, "7 entries over the 2 s window that just closed");
    }
}
