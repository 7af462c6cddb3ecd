//! Where time comes from. The core never reads a clock; the shell reads this one, which the
//! simulation replaces with its own. Two readings: monotonic time for everything that waits or
//! measures, and the wall clock only for what is written down (ids, timestamps, token expiry).

use alice_core::{Millis, Now};

pub trait Clock: Send + Sync + 'static {
    /// Monotonic milliseconds: never goes back, and agrees with the wall clock at start.
    fn now(&self) -> Millis;
    /// Milliseconds since the Unix epoch, as the machine's clock says now.
    fn wall(&self) -> Millis;
    /// Both, for the core.
    fn reading(&self) -> Now {
        Now { mono: self.now(), wall: self.wall() }
    }
}

/// The machine's clocks: the wall clock at start plus tokio's monotonic time elapsed since.
pub struct SystemClock {
    start: tokio::time::Instant,
    start_wall: Millis,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { start: tokio::time::Instant::now(), start_wall: unix_now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

fn unix_now() -> Millis {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    Millis(since.map(|d| d.as_millis() as u64).unwrap_or(0))
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        self.start_wall.plus(self.start.elapsed().as_millis() as u64)
    }

    fn wall(&self) -> Millis {
        unix_now()
    }
}
