//! The one place that opens Redis connections: the URL, timeouts, the key names and a reconnect
//! backoff shared by the bus and the queue. It holds the health they report, and no data.

use std::sync::atomic::{AtomicBool, Ordering};

use alice_handoff::{Counter, Gauge};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// The stream every node publishes bus messages to and reads them from.
pub const BUS_STREAM: &str = "alice:bus";
/// Accepted events not yet in the store (consumer group [`STORE_GROUP`]).
pub const QUEUE_STREAM: &str = "alice:queue";
/// Events the store refused after their last attempt, until an admin replays them.
pub const DLQ_STREAM: &str = "alice:dlq";
pub const STORE_GROUP: &str = "alice-store";
/// The bus keeps about this many messages for nodes catching up.
pub const BUS_MAXLEN: usize = 100_000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the Redis parts of a node report to `/health`, `/stats` and `/metrics`.
#[derive(Default)]
pub struct RedisHealth {
    pub up: AtomicBool,
    /// Entries in the cluster's queue stream (accepted, not yet stored), as last read.
    pub queue_len: Gauge,
    pub dlq_len: Gauge,
    /// Bus messages waiting in this node's outbox for Redis.
    pub bus_outbox: Gauge,
    /// Bus messages dropped because the outbox overflowed.
    pub bus_dropped: Counter,
    /// Times the bus subscription was found silent and reconnected.
    pub bus_repairs: Counter,
    /// Unix ms of the last bus entry read (any node's, this one's heartbeats included).
    pub bus_last_read_ms: Gauge,
}

impl RedisHealth {
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// Opens connections to one Redis.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    pub health: Arc<RedisHealth>,
}

impl RedisLink {
    pub fn new(url: &str) -> Result<RedisLink, String> {
        let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL is not usable: {e}"))?;
        Ok(RedisLink { client, health: Arc::default() })
    }

    /// A new connection whose every reply must come within `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }
}

/// Exponential backoff with jitter for reconnects: 100 ms doubling to 5 s.
#[derive(Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub fn delay(&mut self) -> Duration {
        let base = 100u64.saturating_mul(1 << self.attempt.min(6)).min(5_000);
        self.attempt += 1;
        Duration::from_millis(base / 2 + rand::random_range(0..=base / 2))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
