//! This node's delivery latency minute by minute over the last hour, for the console's chart:
//! the delivery histogram (`alice_delivery_seconds`) is read at every minute's start, the way a
//! Prometheus scrape reads it, and a minute's p50 and p99 are estimated from what its buckets
//! gained in that minute, interpolating within a bucket as PromQL's `histogram_quantile` does.
//! Nothing is added to a delivery's own path.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::clock::Clock;

const MINUTE_MS: u64 = 60_000;
/// Minutes charted.
pub const MINUTES: usize = alice_core::activity::MINUTES;

/// A histogram's cumulative counts: `(upper bound, observations at or under it)`, the last bound
/// infinite.
type Buckets = Vec<(f64, u64)>;

/// The histogram as read at the start of each of the last minutes.
pub struct DeliveryMinutes {
    histogram: Histogram,
    /// `(minute since the epoch, buckets at its start)`, oldest first.
    samples: Mutex<VecDeque<(u64, Buckets)>>,
}

/// One quantile per minute; `None` for a minute without deliveries (or before this run).
pub type Quantiles = Vec<Option<f64>>;

impl DeliveryMinutes {
    pub fn new(histogram: Histogram) -> DeliveryMinutes {
        DeliveryMinutes { histogram, samples: Mutex::new(VecDeque::new()) }
    }

    /// Reads the histogram now (at the wall clock `wall`) as the start of its minute.
    pub fn sample(&self, wall: u64) {
        let buckets = read(&self.histogram);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let minute = wall / MINUTE_MS;
        if samples.back().is_some_and(|(m, _)| *m >= minute) {
            return;
        }
        samples.push_back((minute, buckets));
        while samples.len() > MINUTES {
            samples.pop_front();
        }
    }

    /// p50 and p99 in seconds for each of the [`MINUTES`] minutes ending with `wall`'s; the
    /// current minute counts what it has so far.
    pub fn quantiles(&self, wall: u64) -> (Quantiles, Quantiles) {
        let now = wall / MINUTE_MS;
        let first = (now + 1).saturating_sub(MINUTES as u64);
        let current = (now + 1, read(&self.histogram));
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut p50 = vec![None; MINUTES];
        let mut p99 = vec![None; MINUTES];
        let readings: Vec<&(u64, Buckets)> = samples.iter().chain(std::iter::once(&current)).collect();
        for pair in readings.windows(2) {
            let ((start, before), (end, after)) = (pair[0], pair[1]);
            // Only a minute read at both ends; a gap (a stalled sampler) leaves its minutes out.
            if *end != start + 1 || *start < first || *start > now {
                continue;
            }
            let gained: Buckets =
                after.iter().zip(before).map(|((le, a), (_, b))| (*le, a.saturating_sub(*b))).collect();
            let i = (start - first) as usize;
            p50[i] = quantile(0.5, &gained);
            p99[i] = quantile(0.99, &gained);
        }
        (p50, p99)
    }
}

/// Samples `minutes` at each minute's start, as the clock says, until the server lets go of it.
pub fn spawn_sampler(minutes: &Arc<DeliveryMinutes>, clock: Arc<dyn Clock>) {
    let minutes = Arc::downgrade(minutes);
    tokio::spawn(async move {
        loop {
            let wall = clock.wall().0;
            let Some(minutes) = minutes.upgrade() else { return };
            minutes.sample(wall);
            drop(minutes);
            let next = (wall / MINUTE_MS + 1) * MINUTE_MS;
            tokio::time::sleep(Duration::from_millis(next - wall)).await;
        }
    });
}

/// The histogram's cumulative bucket counts, from its Prometheus text (prometheus-client gives
/// no other way to read them).
fn read(histogram: &Histogram) -> Buckets {
    let mut registry = Registry::default();
    registry.register("d", "", histogram.clone());
    let mut text = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("d_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of cumulative `buckets`, interpolated linearly within its bucket; the
/// highest finite bound when it falls in the last, infinite one.
fn quantile(q: f64, buckets: &Buckets) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = (count - below) as f64;
            let share = if within > 0.0 { (rank - below as f64) / within } else { 1.0 };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram() -> Histogram {
        Histogram::new([0.001, 0.002, 0.004, 0.008])
    }

    #[test]
    fn buckets_are_read_back_cumulative_with_the_infinite_one_last() {
        let h = histogram();
        for v in [0.0005, 0.0015, 0.0015, 0.1] {
            h.observe(v);
        }
        assert_eq!(read(&h), vec![(0.001, 1), (0.002, 3), (0.004, 3), (0.008, 3), (f64::INFINITY, 4)]);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket_as_promql_does() {
        let buckets = vec![(0.001, 0), (0.002, 100), (0.004, 100), (f64::INFINITY, 100)];
        let p50 = quantile(0.5, &buckets).unwrap();
        assert!((p50 - 0.0015).abs() < 1e-12, "{p50}");
        assert_eq!(quantile(0.5, &vec![(0.001, 0), (f64::INFINITY, 0)]), None);
        assert_eq!(quantile(0.99, &vec![(0.001, 0), (f64::INFINITY, 10)]), Some(0.001));
    }

    #[test]
    fn each_minute_counts_only_what_it_gained() {
        let h = histogram();
        let m = DeliveryMinutes::new(h.clone());
        let minute = |n: u64| 1_000 * MINUTE_MS + n * MINUTE_MS;
        m.sample(minute(0));
        for _ in 0..100 {
            h.observe(0.0035);
        }
        m.sample(minute(1));
        m.sample(minute(1) + 5_000);
        for _ in 0..10 {
            h.observe(0.0005);
        }
        let (p50, p99) = m.quantiles(minute(1) + 30_000);
        let (first, current) = (p50[MINUTES - 2].unwrap(), p50[MINUTES - 1].unwrap());
        assert!((0.002..=0.004).contains(&first), "minute 0 saw only 3.5 ms deliveries: {first}");
        assert!(current <= 0.001, "this minute saw only 0.5 ms deliveries: {current}");
        assert!(p99[MINUTES - 2].unwrap() <= 0.004);
        assert!(p50[..MINUTES - 2].iter().all(Option::is_none), "before this run: nothing");
    }

    #[test]
    fn a_minute_the_sampler_missed_is_left_out() {
        let h = histogram();
        let m = DeliveryMinutes::new(h.clone());
        m.sample(0);
        h.observe(0.001);
        m.sample(3 * MINUTE_MS);
        let (p50, _) = m.quantiles(3 * MINUTE_MS);
        assert!(p50.iter().all(Option::is_none), "{p50:?}");
    }
}
