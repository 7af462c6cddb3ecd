//! The concurrent handoffs of the shell that are ours rather than a library's: socket numbers,
//! which every handshake task draws; the counters tasks share with the driver and HTTP; and the
//! JWKS key set, which every handshake reads while a refetch replaces it. They are kept small and
//! free of tokio so that loom can explore every interleaving of them (`tests/loom.rs`):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p alice-handoff --release
//! ```
//!
//! The rest crosses threads only through tokio's channels and is decided on the driver's one
//! thread: the driver's input queue and each socket's send queue are tokio's and socketioxide's
//! bounded channels (what the shell adds, refusing when full and disconnecting a socket that
//! cannot keep up, is the driver's); a socket's deliveries wait for its CONNECT answer in the
//! driver's own table, released by the `Ready` command that socketioxide's connect handler sends
//! after the answer is out; the acknowledgement table is the driver's alone. Those are tested in
//! the shell's integration tests and the simulation, not here.

mod sync {
    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicU64, Ordering};
    #[cfg(loom)]
    pub use loom::sync::{Arc, Mutex, RwLock};
    #[cfg(not(loom))]
    pub use std::sync::atomic::{AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub use std::sync::{Arc, Mutex, RwLock};
}

use sync::{Arc, AtomicU64, Mutex, Ordering, RwLock};

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

/// A value that many read and one at a time replaces (the JWKS key set): a reader takes the
/// current version and holds no lock while it uses it, so it never waits for a replacement being
/// prepared, only for the instant of the swap; and it sees a whole version, old or new.
#[derive(Debug, Default)]
pub struct Snapshot<T>(RwLock<Arc<T>>);

impl<T> Snapshot<T> {
    pub fn new(value: T) -> Snapshot<T> {
        Snapshot(RwLock::new(Arc::new(value)))
    }

    /// The current version.
    pub fn load(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the current version; readers holding the old one keep it.
    pub fn publish(&self, value: T) {
        let value = Arc::new(value);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
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
    fn a_snapshot_taken_stays_as_it_was() {
        let s = Snapshot::new(vec![1]);
        let before = s.load();
        s.publish(vec![1, 2]);
        assert_eq!((*before).clone(), vec![1]);
        assert_eq!(*s.load(), vec![1, 2]);
    }

    #[test]
    fn ids_count_up() {
        let ids = Ids::starting_at(1);
        assert_eq!((ids.next(), ids.next()), (1, 2));
    }
}
