//! What the servers under test cost, read from /proc, and latency summaries.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// (utime + stime) in seconds, and resident memory in KiB, of a process.
pub fn proc_usage(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((ticks as f64 / 100.0, rss))
}

/// CPU seconds and RSS in KiB, summed over processes.
pub fn servers_usage(pids: &[u32]) -> (f64, u64) {
    pids.iter().filter_map(|p| proc_usage(&p.to_string())).fold((0.0, 0), |(c, m), (c2, m2)| (c + c2, m + m2))
}

/// A histogram of microseconds, from 1 µs to a minute.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

pub fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999), "max": h.max(), "count": h.len(),
    })
}
