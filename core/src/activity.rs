//! The last hour of activity, minute by minute, for the console's charts (`GET
//! /console/activity`): events per minute by type, readers online per minute, and each reader's
//! events per minute. Every node shows every event of the cluster and knows every node's
//! readers, so every node's figures are the cluster's.
//!
//! An event counts in the minute of its own timestamp, so a backlog read late (after an outage,
//! or a new node reading the log from its beginning) lands where it happened; one stamped outside
//! the hour is not charted. Readers online are sampled every [`SAMPLE_MS`]: a reader counts in a
//! minute if a sample found them online in it.
//!
//! Memory is bounded. Types: at most [`MAX_TYPES`] distinct ones within the hour, the rest count as
//! [`OTHER_TYPE`]. Readers: only those online or active within the hour are kept, each with at most one
//! count per minute and type (8 bytes each, so at most 7.7 KB for a reader sending every type every
//! minute, 480 bytes for one sending one type every minute) and 16 bytes of online minutes. An
//! answer carries at most [`MAX_SPARKLINES`] sparklines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::time::Millis;

/// Minutes charted.
pub const MINUTES: usize = 60;
/// Distinct event types charted within the hour; the rest count as [`OTHER_TYPE`].
pub const MAX_TYPES: usize = 15;
/// How often the readers online are sampled.
pub const SAMPLE_MS: u64 = 15_000;
/// Most readers given a sparkline in one answer (the first asked for: the most recently active).
pub const MAX_SPARKLINES: usize = 200;
/// The name the types beyond [`MAX_TYPES`] are charted under: no event type can be called so
/// (parentheses and spaces are not allowed in one).
pub const OTHER_TYPE: &str = "(other types)";

const MINUTE_MS: u64 = 60_000;
/// How far ahead of this node's clock an event's own may be and still count (in this minute).
const AHEAD_MINUTES: Minute = 2;
const OTHER: u8 = MAX_TYPES as u8;
const SLOTS: usize = MAX_TYPES + 1;

/// Minutes since the epoch.
type Minute = u64;

fn minute_of(at: Millis) -> Minute {
    at.0 / MINUTE_MS
}

/// `m` is within the hour that ends with minute `now`.
fn in_hour(m: Minute, now: Minute) -> bool {
    m <= now && now - m < MINUTES as u64
}

/// Events of one type index in one minute, for one reader: 8 bytes (minutes since the epoch fit
/// a `u32` for another 8,000 years).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Count {
    minute: u32,
    kind: u8,
    n: u16,
}

impl Count {
    fn minute(&self) -> Minute {
        Minute::from(self.minute)
    }
}

/// One reader's hour.
#[derive(Debug, Default)]
struct ReaderHour {
    /// Sorted by minute and type; none older than the hour after each insert.
    counts: Vec<Count>,
    /// Bit `k` set: sampled online in minute `online_to - k`.
    online: u64,
    online_to: Minute,
}

impl ReaderHour {
    fn add(&mut self, minute: Minute, kind: u8, now: Minute) {
        let stale = self.counts.iter().take_while(|c| !in_hour(c.minute(), now)).count();
        self.counts.drain(..stale);
        let minute = minute as u32;
        match self.counts.binary_search_by(|c| (c.minute, c.kind).cmp(&(minute, kind))) {
            Ok(i) => self.counts[i].n = self.counts[i].n.saturating_add(1),
            Err(i) => self.counts.insert(i, Count { minute, kind, n: 1 }),
        }
    }

    fn mark_online(&mut self, minute: Minute) {
        if minute > self.online_to {
            let shift = minute - self.online_to;
            self.online = if shift >= 64 { 0 } else { self.online << shift };
            self.online_to = minute;
        }
        let back = self.online_to - minute;
        if back < 64 {
            self.online |= 1 << back;
        }
    }

    fn online_in(&self, minute: Minute) -> bool {
        minute <= self.online_to
            && self.online_to - minute < 64
            && self.online & (1 << (self.online_to - minute)) != 0
    }

    fn is_idle(&self, now: Minute) -> bool {
        !self.counts.iter().any(|c| in_hour(c.minute(), now)) && !in_hour(self.online_to, now)
    }

    /// Events per minute over the hour starting at minute `first`, in one pass over the counts.
    fn per_minute(&self, first: Minute) -> PerMinute {
        let mut minutes = vec![0u32; MINUTES];
        for c in &self.counts {
            if let Some(slot) = c.minute().checked_sub(first).and_then(|i| minutes.get_mut(i as usize)) {
                *slot = slot.saturating_add(u32::from(c.n));
            }
        }
        minutes
    }
}

/// The hour of one kind of figure, for one viewer: a value per minute, oldest first.
pub type PerMinute = Vec<u32>;

/// What the console charts for one viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivitySeries {
    /// The wall-clock start of the first of the [`MINUTES`] minutes.
    pub first_minute: Millis,
    /// Events per minute by type, the busiest type first; types without an event left out.
    pub by_type: Vec<(String, PerMinute)>,
    /// Readers online per minute.
    pub online: PerMinute,
    /// Events per minute of each reader asked for, in the order asked.
    pub readers: Vec<(String, PerMinute)>,
}

/// The hour of activity (see the module's documentation).
#[derive(Debug, Default)]
pub struct Activity {
    /// The types charted, with the newest minute each was seen in; an index is reused once its
    /// type has not been seen for an hour.
    types: Vec<(Arc<str>, Minute)>,
    /// Events per minute by type index, for everyone: slot `m % MINUTES` holds minute `m`.
    everyone: Vec<(Minute, [u32; SLOTS])>,
    readers: BTreeMap<Arc<str>, ReaderHour>,
}

impl Activity {
    /// Counts one event of `user`'s, stamped `at`, as of the wall clock `now`.
    pub fn record(&mut self, now: Millis, at: Millis, user: &Arc<str>, event_type: &str) {
        let now = minute_of(now);
        // An event stamped by a node whose clock runs a little ahead counts now, not never.
        let minute = match minute_of(at) {
            m if m > now && m - now <= AHEAD_MINUTES => now,
            m => m,
        };
        if !in_hour(minute, now) {
            return;
        }
        let kind = self.kind_of(event_type, minute, now);
        if self.everyone.is_empty() {
            self.everyone = vec![(Minute::MAX, [0; SLOTS]); MINUTES];
        }
        let slot = &mut self.everyone[(minute % MINUTES as u64) as usize];
        if slot.0 != minute {
            *slot = (minute, [0; SLOTS]);
        }
        slot.1[usize::from(kind)] = slot.1[usize::from(kind)].saturating_add(1);
        match self.readers.get_mut(user) {
            Some(hour) => hour.add(minute, kind, now),
            None => {
                let mut hour = ReaderHour::default();
                hour.add(minute, kind, now);
                self.readers.insert(user.clone(), hour);
            }
        }
    }

    fn kind_of(&mut self, event_type: &str, minute: Minute, now: Minute) -> u8 {
        if let Some(i) = self.types.iter().position(|(t, _)| &**t == event_type) {
            self.types[i].1 = self.types[i].1.max(minute);
            return i as u8;
        }
        let fresh = (Arc::from(event_type), minute);
        if self.types.len() < MAX_TYPES {
            self.types.push(fresh);
            return (self.types.len() - 1) as u8;
        }
        // A type unseen for an hour has no count left in the hour: its index can be reused.
        match self.types.iter().position(|(_, seen)| *seen <= now && now - seen >= MINUTES as u64) {
            Some(i) => {
                self.types[i] = fresh;
                i as u8
            }
            None => OTHER,
        }
    }

    /// A sample of who is online at the wall clock `now`; readers neither online nor active
    /// within the hour are forgotten.
    pub fn sample<'a>(&mut self, now: Millis, online: impl IntoIterator<Item = &'a str>) {
        let now = minute_of(now);
        for user in online {
            match self.readers.get_mut(user) {
                Some(hour) => hour.mark_online(now),
                None => {
                    let mut hour = ReaderHour { online_to: now, ..ReaderHour::default() };
                    hour.mark_online(now);
                    self.readers.insert(Arc::from(user), hour);
                }
            }
        }
        self.readers.retain(|_, hour| !hour.is_idle(now));
    }

    /// The hour ending with the wall clock `now`'s minute. `only`: the readers a scoped viewer
    /// may see (sorted), whose events and presence alone are counted; `None` counts everyone.
    /// `online_now`: who is online now, counted in the current minute whatever the last sample
    /// found. `sparklines`: the readers whose own events per minute are wanted, most wanted first;
    /// at most [`MAX_SPARKLINES`] of those the viewer may see get one.
    pub fn series(
        &self,
        now: Millis,
        only: Option<&[String]>,
        online_now: &[&str],
        sparklines: &[&str],
    ) -> ActivitySeries {
        let now = minute_of(now);
        let first = (now + 1).saturating_sub(MINUTES as u64);
        let mut by_kind = vec![vec![0u32; MINUTES]; SLOTS];
        let mut online = vec![0u32; MINUTES];
        let visible = |user: &str| crate::scope::lets_through(only, user);
        match only {
            None => {
                for (minute, counts) in &self.everyone {
                    if in_hour(*minute, now) {
                        for (kind, n) in counts.iter().enumerate() {
                            by_kind[kind][(minute - first) as usize] += n;
                        }
                    }
                }
            }
            Some(readers) => {
                for hour in readers.iter().filter_map(|r| self.readers.get(r.as_str())) {
                    for c in hour.counts.iter().filter(|c| in_hour(c.minute(), now)) {
                        by_kind[usize::from(c.kind)][(c.minute() - first) as usize] += u32::from(c.n);
                    }
                }
            }
        }
        let online_now: BTreeSet<&str> = online_now.iter().copied().filter(|u| visible(u)).collect();
        for (user, hour) in self.readers.iter().filter(|(u, _)| visible(u)) {
            for (i, count) in online.iter_mut().enumerate() {
                let minute = first + i as u64;
                let now_online = minute == now && online_now.contains(&**user);
                if now_online || hour.online_in(minute) {
                    *count += 1;
                }
            }
        }
        // Online now but never sampled (it came online since the last sample).
        online[MINUTES - 1] += online_now.iter().filter(|u| !self.readers.contains_key(**u)).count() as u32;

        let mut by_type: Vec<(String, PerMinute)> = by_kind
            .into_iter()
            .enumerate()
            .filter(|(_, counts)| counts.iter().any(|n| *n > 0))
            .map(|(kind, counts)| {
                let name = match self.types.get(kind) {
                    Some((name, _)) if kind < MAX_TYPES => name.to_string(),
                    _ => OTHER_TYPE.to_owned(),
                };
                (name, counts)
            })
            .collect();
        by_type.sort_by(|a, b| {
            let total = |c: &PerMinute| c.iter().map(|n| u64::from(*n)).sum::<u64>();
            total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0))
        });
        let readers = sparklines
            .iter()
            .filter(|u| visible(u))
            .take(MAX_SPARKLINES)
            .map(|user| {
                let counts =
                    self.readers.get(*user).map_or_else(|| vec![0; MINUTES], |h| h.per_minute(first));
                ((*user).to_owned(), counts)
            })
            .collect();
        ActivitySeries { first_minute: Millis(first * MINUTE_MS), by_type, online, readers }
    }

    /// Readers kept (online or active within the hour).
    pub fn readers_kept(&self) -> usize {
        self.readers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000 * MINUTE_MS;

    fn at(minute: u64, second: u64) -> Millis {
        Millis(T0 + minute * MINUTE_MS + second * 1_000)
    }

    fn user(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn last(series: &PerMinute, n: usize) -> Vec<u32> {
        series[MINUTES - n..].to_vec()
    }

    #[test]
    fn events_count_in_their_own_minute_by_type() {
        let mut a = Activity::default();
        let now = at(10, 30);
        a.record(now, at(8, 5), &user("ada"), "PAGE_TURN");
        a.record(now, at(8, 59), &user("ada"), "PAGE_TURN");
        a.record(now, at(10, 1), &user("bob"), "PAGE_TURN");
        a.record(now, at(10, 2), &user("bob"), "HELP_REQUEST");
        let s = a.series(now, None, &[], &[]);
        assert_eq!(s.first_minute, Millis(T0 + (10 + 1) * MINUTE_MS - MINUTES as u64 * MINUTE_MS));
        assert_eq!(s.by_type.len(), 2);
        assert_eq!(s.by_type[0].0, "PAGE_TURN");
        assert_eq!(last(&s.by_type[0].1, 3), vec![2, 0, 1]);
        assert_eq!(s.by_type[1].0, "HELP_REQUEST");
        assert_eq!(last(&s.by_type[1].1, 3), vec![0, 0, 1]);
    }

    #[test]
    fn events_outside_the_hour_are_not_charted_and_old_ones_fall_off() {
        let mut a = Activity::default();
        let now = at(100, 0);
        a.record(now, at(40, 0), &user("ada"), "OLD");
        a.record(now, at(103, 0), &user("ada"), "FUTURE");
        a.record(now, at(41, 0), &user("ada"), "EDGE");
        let s = a.series(now, None, &[], &[]);
        assert_eq!(s.by_type.len(), 1);
        assert_eq!(s.by_type[0].1[0], 1, "minute 41 is the hour's first");
        let later = a.series(at(101, 0), None, &[], &[]);
        assert!(later.by_type.is_empty(), "{later:?}");
    }

    #[test]
    fn types_beyond_the_cap_count_as_other_until_a_type_goes_quiet_for_an_hour() {
        let mut a = Activity::default();
        let now = at(0, 0);
        for k in 0..MAX_TYPES + 3 {
            a.record(now, now, &user("ada"), &format!("T{k}"));
        }
        let s = a.series(now, None, &[], &[]);
        assert_eq!(s.by_type.len(), MAX_TYPES + 1);
        let other = s.by_type.iter().find(|(t, _)| t == OTHER_TYPE).unwrap();
        assert_eq!(other.1[MINUTES - 1], 3);
        // An hour later, T0..T14 are quiet: a new type takes a slot of its own.
        let later = at(60, 0);
        a.record(later, later, &user("ada"), "NEW");
        let s = a.series(later, None, &[], &[]);
        assert_eq!(s.by_type, vec![("NEW".to_owned(), last_only(1))]);
    }

    fn last_only(n: u32) -> PerMinute {
        let mut v = vec![0; MINUTES];
        v[MINUTES - 1] = n;
        v
    }

    #[test]
    fn a_scoped_view_counts_only_its_readers() {
        let mut a = Activity::default();
        let now = at(5, 0);
        a.record(now, now, &user("ada"), "PAGE_TURN");
        a.record(now, now, &user("bob"), "PAGE_TURN");
        a.record(now, now, &user("bob"), "LOOKUP");
        a.sample(now, ["ada", "bob"]);
        let only = vec!["ada".to_owned()];
        let s = a.series(now, Some(&only), &["ada", "bob"], &["ada", "bob"]);
        assert_eq!(s.by_type, vec![("PAGE_TURN".to_owned(), last_only(1))]);
        assert_eq!(s.online, last_only(1));
        assert_eq!(s.readers, vec![("ada".to_owned(), last_only(1))], "bob's sparkline is not shown");
        let everyone = a.series(now, None, &["ada", "bob"], &["ada", "bob"]);
        assert_eq!(everyone.online, last_only(2));
        assert_eq!(everyone.by_type.len(), 2);
    }

    #[test]
    fn online_readers_per_minute_come_from_the_samples_and_who_is_online_now() {
        let mut a = Activity::default();
        a.sample(at(0, 0), ["ada", "bob"]);
        a.sample(at(1, 0), ["ada"]);
        a.sample(at(2, 0), Vec::<&str>::new());
        let s = a.series(at(3, 10), None, &["cat"], &[]);
        assert_eq!(last(&s.online, 4), vec![2, 1, 0, 1]);
    }

    #[test]
    fn readers_neither_online_nor_active_for_an_hour_are_forgotten() {
        let mut a = Activity::default();
        a.record(at(0, 0), at(0, 0), &user("ada"), "PAGE_TURN");
        a.sample(at(0, 0), ["bob"]);
        a.sample(at(59, 0), ["cat"]);
        assert_eq!(a.readers_kept(), 3);
        a.sample(at(60, 0), ["cat"]);
        assert_eq!(a.readers_kept(), 1);
    }

    #[test]
    fn a_reader_keeps_one_count_per_minute_and_type() {
        let mut hour = ReaderHour::default();
        for second in 0..500 {
            hour.add(second / 10, (second % 3) as u8, 49);
        }
        assert_eq!(hour.counts.len(), 50 * 3);
        assert_eq!(hour.per_minute(0)[7], 10);
        assert_eq!(std::mem::size_of::<Count>(), 8);
        hour.add(120, 0, 120);
        assert_eq!(hour.counts.len(), 1, "the hour before was dropped");
    }

    #[test]
    fn an_event_from_a_clock_a_little_ahead_counts_now_and_one_far_ahead_not_at_all() {
        let mut a = Activity::default();
        let now = at(10, 0);
        a.record(now, at(12, 0), &user("ada"), "AHEAD");
        a.record(now, at(13, 0), &user("ada"), "FAR");
        let s = a.series(now, None, &[], &["ada"]);
        assert_eq!(s.by_type, vec![("AHEAD".to_owned(), last_only(1))]);
        assert_eq!(s.readers, vec![("ada".to_owned(), last_only(1))]);
    }

    #[test]
    fn a_clock_stepping_back_does_not_free_a_type_still_charted() {
        let mut a = Activity::default();
        for k in 0..MAX_TYPES {
            a.record(at(10, 0), at(10, 0), &user("ada"), &format!("T{k}"));
        }
        // The wall clock went back five minutes: T0..T14 are still in the hour.
        a.record(at(5, 0), at(5, 0), &user("ada"), "NEW");
        let s = a.series(at(10, 0), None, &[], &[]);
        assert!(s.by_type.iter().any(|(t, _)| t == "T0"), "{s:?}");
        assert!(s.by_type.iter().any(|(t, _)| t == OTHER_TYPE), "{s:?}");
    }

    #[test]
    fn sparklines_are_capped() {
        let a = Activity::default();
        let names: Vec<String> = (0..MAX_SPARKLINES + 5).map(|n| format!("r{n}")).collect();
        let asked: Vec<&str> = names.iter().map(String::as_str).collect();
        let s = a.series(at(0, 0), None, &[], &asked);
        assert_eq!(s.readers.len(), MAX_SPARKLINES);
        assert_eq!(s.readers[0].0, "r0", "the first asked for come first");
    }

    #[test]
    fn online_minutes_survive_gaps_and_long_absences() {
        let mut hour = ReaderHour::default();
        hour.mark_online(10);
        hour.mark_online(12);
        assert!(hour.online_in(10) && !hour.online_in(11) && hour.online_in(12));
        hour.mark_online(200);
        assert!(!hour.online_in(136) && hour.online_in(200));
    }
}
