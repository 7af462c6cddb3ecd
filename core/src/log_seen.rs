//! Which of each origin's log entries this node has read. An origin numbers its entries 1, 2, 3, …
//! as it accepts them, and an append that fails is retried whole, so an entry read again (its
//! first copy had landed) is dropped by its number.
//!
//! Numbers mostly come in order, but not always: Redis runs each `XADD` of an append's pipeline on
//! its own, so when it refuses an earlier one (out of memory) and runs a later one, the retry puts
//! the earlier entry after the later one. That entry is new, and every node shows it there, at
//! its place in the log. So a number skipped stays expected while an append could still bring it:
//! no append spans more than [`MAX_APPEND_ENTRIES`] numbers, and none starts below the lowest
//! number its origin has not had confirmed, so a skipped number that far below the highest is
//! given up. A number below the first this node read from an origin is never expected: the node
//! began reading after it.

use std::collections::BTreeMap;

use crate::bus::Sequencing;

/// The most entries one append carries (`STORE_BATCH_SIZE` is capped at it).
pub const MAX_APPEND_ENTRIES: usize = 10_000;

/// Per origin: its incarnation, the highest number read, and the numbers skipped below it that
/// may still come, as ranges (first to last, inclusive).
#[derive(Debug, Default)]
pub struct LogSeen {
    origins: BTreeMap<String, Origin>,
}

#[derive(Debug)]
struct Origin {
    incarnation: u64,
    highest: u64,
    skipped: BTreeMap<u64, u64>,
}

impl LogSeen {
    pub fn observe(&mut self, origin: &str, incarnation: u64, seq: u64) -> Sequencing {
        match self.origins.get_mut(origin) {
            Some(o) if o.incarnation == incarnation => o.observe(seq),
            _ => {
                // An origin first read, or restarted: its numbers start here.
                let first = Origin { incarnation, highest: seq, skipped: BTreeMap::new() };
                self.origins.insert(origin.to_owned(), first);
                Sequencing::InOrder
            }
        }
    }
}

impl Origin {
    fn observe(&mut self, seq: u64) -> Sequencing {
        if seq > self.highest {
            let missed = seq - self.highest - 1;
            if missed > 0 {
                self.skipped.insert(self.highest + 1, seq - 1);
            }
            self.highest = seq;
            self.give_up_below(seq.saturating_sub(MAX_APPEND_ENTRIES as u64));
            return match missed {
                0 => Sequencing::InOrder,
                missed => Sequencing::AfterGap { missed },
            };
        }
        // Below the highest: new only if it was skipped and is still expected.
        let Some((&first, &last)) = self.skipped.range(..=seq).next_back() else {
            return Sequencing::Duplicate;
        };
        if seq > last {
            return Sequencing::Duplicate;
        }
        self.skipped.remove(&first);
        if first < seq {
            self.skipped.insert(first, seq - 1);
        }
        if seq < last {
            self.skipped.insert(seq + 1, last);
        }
        Sequencing::Late
    }

    /// Forgets the skipped numbers below `floor`: no append can bring them any more.
    fn give_up_below(&mut self, floor: u64) {
        while let Some((&first, &last)) = self.skipped.first_key_value() {
            if first >= floor {
                break;
            }
            self.skipped.remove(&first);
            if last >= floor {
                self.skipped.insert(floor, last);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(seen: &mut LogSeen, seqs: &[u64]) -> Vec<Sequencing> {
        seqs.iter().map(|&s| seen.observe("n1", 7, s)).collect()
    }

    #[test]
    fn in_order_then_repeats_are_duplicates() {
        let mut seen = LogSeen::default();
        assert_eq!(
            read(&mut seen, &[1, 2, 2, 1, 3]),
            [
                Sequencing::InOrder,
                Sequencing::InOrder,
                Sequencing::Duplicate,
                Sequencing::Duplicate,
                Sequencing::InOrder,
            ]
        );
    }

    #[test]
    fn a_skipped_number_is_new_once_when_it_comes_late() {
        let mut seen = LogSeen::default();
        // 1, then an append of 2..=4 whose 3 landed alone, then its retry: 2, 3, 4.
        assert_eq!(
            read(&mut seen, &[1, 3, 2, 3, 4, 2]),
            [
                Sequencing::InOrder,
                Sequencing::AfterGap { missed: 1 },
                Sequencing::Late,
                Sequencing::Duplicate,
                Sequencing::InOrder,
                Sequencing::Duplicate,
            ]
        );
    }

    #[test]
    fn a_gap_filled_from_its_middle_keeps_both_ends_expected() {
        let mut seen = LogSeen::default();
        read(&mut seen, &[1, 10]);
        assert_eq!(
            read(&mut seen, &[5, 5, 2, 9, 1]),
            [
                Sequencing::Late,
                Sequencing::Duplicate,
                Sequencing::Late,
                Sequencing::Late,
                Sequencing::Duplicate,
            ]
        );
        for seq in [3, 4, 6, 7, 8] {
            assert_eq!(seen.observe("n1", 7, seq), Sequencing::Late, "{seq}");
        }
        assert_eq!(read(&mut seen, &[2, 3, 4, 5, 6, 7, 8, 9]), [Sequencing::Duplicate; 8]);
    }

    #[test]
    fn numbers_below_the_first_read_or_beyond_one_append_are_not_expected() {
        let mut seen = LogSeen::default();
        let far = MAX_APPEND_ENTRIES as u64 + 10;
        assert_eq!(
            read(&mut seen, &[5, 4, 1]),
            [Sequencing::InOrder, Sequencing::Duplicate, Sequencing::Duplicate]
        );
        assert_eq!(seen.observe("n1", 7, 5 + far), Sequencing::AfterGap { missed: far - 1 });
        // Only the last MAX_APPEND_ENTRIES numbers below the highest may still come.
        assert_eq!(seen.observe("n1", 7, 14), Sequencing::Duplicate);
        assert_eq!(seen.observe("n1", 7, 5 + far - MAX_APPEND_ENTRIES as u64), Sequencing::Late);
        assert_eq!(seen.observe("n1", 7, 5 + far - 1), Sequencing::Late);
    }

    #[test]
    fn another_incarnation_starts_afresh_and_forgets_the_old_gaps() {
        let mut seen = LogSeen::default();
        read(&mut seen, &[1, 3]);
        assert_eq!(seen.observe("n1", 8, 1), Sequencing::InOrder);
        assert_eq!(seen.observe("n1", 7, 2), Sequencing::InOrder, "the old incarnation, started anew");
        assert_eq!(seen.observe("n2", 7, 2), Sequencing::InOrder, "each origin its own numbers");
    }

    #[test]
    fn skipped_ranges_stay_bounded_however_numbers_jump() {
        let mut seen = LogSeen::default();
        let mut seq = 1;
        for _ in 0..50_000 {
            seq += 2;
            seen.observe("n1", 7, seq);
        }
        let kept = seen.origins["n1"].skipped.len();
        assert!(kept <= MAX_APPEND_ENTRIES / 2 + 1, "{kept} ranges kept");
    }
}
