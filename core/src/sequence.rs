//! What a node makes of the sequence numbers on the messages it reads. Every origin (a node, in
//! one incarnation) numbers its messages 1, 2, 3, … on each of the two streams, so a message read
//! again is dropped by its number and one skipped is counted.
//!
//! On the bus a message that comes after a higher number is dropped: its news is older than what
//! came first. On the log it may be new. Redis runs each `XADD` of an append's pipeline on its
//! own, so when it refuses an earlier one (out of memory) and runs a later one, the retry of the
//! whole append puts the earlier entry after the later one, and every node must show it there.
//! So the log's tracker keeps each number skipped expected while an append could still bring
//! it: an append carries at most [`MAX_APPEND_ENTRIES`] consecutive numbers and starts no higher
//! than its origin's lowest unconfirmed one, so a skipped number that far below the highest is
//! given up. The numbers below the first one read from an origin count as skipped too, for the
//! same reason: an origin's first append can be refused in part as well. (A node that begins
//! reading the log mid-stream may then take a later copy of an entry it never read for new;
//! history, loaded from the store, drops the copies of the stored events it holds, the newest
//! `HISTORY_CAPACITY`. So do two live processes sharing a node id, whose incarnations take
//! turns here: each turn starts the origin afresh.)

use std::collections::BTreeMap;

use crate::log::MAX_APPEND_ENTRIES;

/// What a message's number says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequencing {
    /// New and in order.
    InOrder,
    /// New, after `missed` numbers not read (yet).
    AfterGap { missed: u64 },
    /// New, below the highest number read: one skipped before, come late (only with a window).
    Late,
    /// Read before: drop it.
    Duplicate,
}

/// Per origin: its incarnation, the highest number read, and the numbers skipped below it that
/// may still come, as ranges (first to last, inclusive).
#[derive(Debug, Default)]
pub struct SeqTracker {
    /// How far below the highest a skipped number stays expected; 0 expects none.
    window: u64,
    origins: BTreeMap<String, Origin>,
}

#[derive(Debug)]
struct Origin {
    incarnation: u64,
    highest: u64,
    skipped: BTreeMap<u64, u64>,
}

impl SeqTracker {
    /// A tracker that drops every number below the highest (the bus).
    pub fn in_order() -> SeqTracker {
        SeqTracker::default()
    }

    /// A tracker that expects skipped numbers up to one append's span below the highest (the log).
    pub fn for_appends() -> SeqTracker {
        SeqTracker { window: MAX_APPEND_ENTRIES as u64, origins: BTreeMap::new() }
    }

    pub fn observe(&mut self, origin: &str, incarnation: u64, seq: u64) -> Sequencing {
        match self.origins.get_mut(origin) {
            Some(o) if o.incarnation == incarnation => o.observe(seq, self.window),
            _ => {
                // An origin first read, or restarted: it numbered from 1.
                let mut first = Origin { incarnation, highest: 0, skipped: BTreeMap::new() };
                first.observe(seq, self.window);
                self.origins.insert(origin.to_owned(), first);
                Sequencing::InOrder
            }
        }
    }
}

impl Origin {
    fn observe(&mut self, seq: u64, window: u64) -> Sequencing {
        if seq > self.highest {
            let missed = seq - self.highest - 1;
            let floor = seq.saturating_sub(window).max(self.highest + 1);
            if window > 0 && floor < seq {
                self.skipped.insert(floor, seq - 1);
            }
            self.highest = seq;
            self.give_up_below(seq.saturating_sub(window));
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

    fn read(seen: &mut SeqTracker, seqs: &[u64]) -> Vec<Sequencing> {
        seqs.iter().map(|&s| seen.observe("n1", 7, s)).collect()
    }

    #[test]
    fn in_order_then_repeats_are_duplicates() {
        for mut seen in [SeqTracker::in_order(), SeqTracker::for_appends()] {
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
    }

    #[test]
    fn in_order_drops_what_comes_late_and_counts_the_gap() {
        let mut seen = SeqTracker::in_order();
        assert_eq!(
            read(&mut seen, &[1, 3, 2, 4]),
            [
                Sequencing::InOrder,
                Sequencing::AfterGap { missed: 1 },
                Sequencing::Duplicate,
                Sequencing::InOrder,
            ]
        );
        assert!(seen.origins["n1"].skipped.is_empty());
    }

    #[test]
    fn a_skipped_number_is_new_once_when_it_comes_late() {
        let mut seen = SeqTracker::for_appends();
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
        let mut seen = SeqTracker::for_appends();
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
    fn an_origins_first_append_refused_in_part_is_read_whole() {
        // A node (re)started: its first append of 1..=3 landed 3 only, then its retry.
        let mut seen = SeqTracker::for_appends();
        assert_eq!(
            read(&mut seen, &[3, 1, 2, 3, 1]),
            [
                Sequencing::InOrder,
                Sequencing::Late,
                Sequencing::Late,
                Sequencing::Duplicate,
                Sequencing::Duplicate,
            ]
        );
    }

    #[test]
    fn numbers_beyond_one_append_below_the_highest_are_not_expected() {
        let mut seen = SeqTracker::for_appends();
        let w = MAX_APPEND_ENTRIES as u64;
        assert_eq!(read(&mut seen, &[5, 4]), [Sequencing::InOrder, Sequencing::Late]);
        assert_eq!(seen.observe("n1", 7, 5 + w + 10), Sequencing::AfterGap { missed: w + 9 });
        // Only the last MAX_APPEND_ENTRIES numbers below the highest may still come.
        assert_eq!(seen.observe("n1", 7, 14), Sequencing::Duplicate);
        assert_eq!(seen.observe("n1", 7, 3), Sequencing::Duplicate);
        assert_eq!(seen.observe("n1", 7, 15), Sequencing::Late);
        assert_eq!(seen.observe("n1", 7, 5 + w + 9), Sequencing::Late);
    }

    #[test]
    fn another_incarnation_starts_afresh_and_forgets_the_old_gaps() {
        let mut seen = SeqTracker::for_appends();
        read(&mut seen, &[1, 3]);
        assert_eq!(seen.observe("n1", 8, 1), Sequencing::InOrder);
        assert_eq!(seen.observe("n1", 8, 1), Sequencing::Duplicate);
        assert_eq!(seen.observe("n2", 7, 2), Sequencing::InOrder, "each origin its own numbers");
        assert_eq!(seen.observe("n2", 7, 1), Sequencing::Late);
    }

    #[test]
    fn skipped_ranges_stay_bounded_however_numbers_jump() {
        let mut seen = SeqTracker::for_appends();
        let mut seq = 1;
        for _ in 0..50_000 {
            seq += 2;
            seen.observe("n1", 7, seq);
        }
        let kept = seen.origins["n1"].skipped.len();
        assert!(kept <= MAX_APPEND_ENTRIES / 2 + 1, "{kept} ranges kept");
    }
}
