//! The concurrent handoffs of the shell that are ours rather than a library's: socket number
//! allocation, the counters tasks share with the driver and HTTP, and the gate that lets one
//! caller at a time refetch a JWKS. They are kept small and free of tokio so that loom can
//! explore every interleaving of them (`tests/loom.rs`):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p alice-handoff --release
//! ```
//!
//! The driver's input queue and each socket's send queue are tokio's and socketioxide's bounded
//! channels; what the shell adds to them (refuse when full, disconnect a socket that cannot keep
//! up) is decided on one thread and tested in the shell's integration tests.

mod sync {
    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicU64, Ordering};
    #[cfg(loom)]
    pub use loom::sync::Mutex;
    #[cfg(not(loom))]
    pub use std::sync::atomic::{AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub use std::sync::Mutex;
}

use sync::{AtomicU64, Mutex, Ordering};

/// Hands out distinct numbers (socket numbers), from any thread.
#[derive(Debug)]
pub struct Ids(AtomicU64);

impl Ids {
    /// Numbers start at `first`.
    pub fn starting_at(first: u64) -> Ids {
        Ids(AtomicU64::new(first))
    }

    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// A count that tasks add to and readers sample (metrics): monotonic, never torn.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that tasks overwrite and readers sample (gauges).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Lets at most one caller per `interval_ms` through: however many handshakes with an unknown
/// key id arrive together, only one of them refetches the key set.
#[derive(Debug)]
pub struct Gate {
    interval_ms: u64,
    last: Mutex<Option<u64>>,
}

impl Gate {
    pub fn new(interval_ms: u64) -> Gate {
        Gate { interval_ms, last: Mutex::new(None) }
    }

    /// Claims the gate at `now_ms` (milliseconds on any monotonic clock); `true` for exactly one
    /// caller per interval.
    pub fn try_claim(&self, now_ms: u64) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if now_ms.saturating_sub(t) < self.interval_ms => false,
            _ => {
                *last = Some(now_ms);
                true
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn gate_lets_one_through_per_interval() {
        let g = Gate::new(1_000);
        assert!(g.try_claim(5_000));
        assert!(!g.try_claim(5_000));
        assert!(!g.try_claim(5_999));
        assert!(g.try_claim(6_000));
    }

    #[test]
    fn ids_count_up() {
        let ids = Ids::starting_at(1);
        assert_eq!((ids.next(), ids.next()), (1, 2));
    }
}
