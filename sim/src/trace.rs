//! The trace of a run: what clients saw, what the store wrote and which faults were injected, one
//! line each with the simulated millisecond. A run is a function of its seed, so two runs of one
//! seed give the same trace byte for byte; its SHA-256 is the run's fingerprint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

#[derive(Clone, Default)]
pub struct Trace {
    lines: Arc<Mutex<Vec<String>>>,
    /// Simulated milliseconds, set by the runner before every step.
    now_ms: Arc<AtomicU64>,
}

impl Trace {
    pub fn set_now(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::Relaxed);
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    pub fn line(&self, text: impl AsRef<str>) {
        let line = format!("{:>7} {}", self.now_ms(), text.as_ref());
        self.lines.lock().unwrap().push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The hex SHA-256 of every line, newline-terminated.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for line in self.lines.lock().unwrap().iter() {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
