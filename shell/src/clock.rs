//! Where "now" comes from. The core never reads a clock; the shell reads this one, which the
//! simulation replaces with its own.

use alice_core::Millis;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The machine's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        Millis(since.map(|d| d.as_millis() as u64).unwrap_or(0))
    }
}
