//! The one place that opens Redis connections: the URL, timeouts, the key names and a reconnect
//! backoff shared by the bus and the log. It holds the health they report, and no data.
//!
//! Connections go over TCP (or TLS) by default; a [`Dialer`] replaces that transport, which is how
//! the simulation runs the real redis-rs client over its simulated network.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alice_handoff::Gauge;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::io::{AsyncRead, AsyncWrite};

/// The cluster's log: one entry per accepted event, in the cluster's one order. Every node reads
/// it; storing consumer groups (`alice-store`, or `alice-store:<node>` for a node's own SQLite
/// file) keep it, and it is trimmed only behind them.
pub const LOG_STREAM: &str = "alice:log";
/// Where each accepted `clientEventId` is kept for the idempotency window: `<prefix><user id's length>:<user>:<key>`.
pub const KEY_PREFIX: &str = "alice:key:";
/// Sessions kept for connection state recovery: `<prefix><pid>`, expiring with the session.
pub const SESSION_PREFIX: &str = "alice:session:";
/// Presence, heartbeats and leaving; trimmed by age.
pub const BUS_STREAM: &str = "alice:bus";
/// Events a consumer group's store refused after their last attempt (`alice:dlq:<group>`), until
/// an admin replays them.
pub const DLQ_PREFIX: &str = "alice:dlq:";
/// The consumer group of a store the whole cluster shares (PostgreSQL).
pub const SHARED_STORE_GROUP: &str = "alice-store";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the Redis parts of a node report to `/health`, `/stats` and `/metrics`.
#[derive(Default)]
pub struct RedisHealth {
    pub up: AtomicBool,
    /// Entries of the log this node's store has not stored yet (pending and not yet read by its
    /// consumer group), as last read.
    pub unstored: Gauge,
    /// Entries in the log stream, as last read.
    pub log_len: Gauge,
    pub dlq_len: Gauge,
    /// Stretches of the log this node's own file lacks (`log::membership`).
    pub log_missing: Gauge,
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

/// A byte stream to Redis.
pub trait RedisStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> RedisStream for T {}

/// Opens the byte stream under a Redis connection; the URL still gives the password and database.
#[async_trait::async_trait]
pub trait Dialer: Send + Sync + 'static {
    async fn dial(&self) -> std::io::Result<Box<dyn RedisStream>>;
}

/// Opens connections to one Redis.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    dialer: Option<Arc<dyn Dialer>>,
    /// Seeds the jitter of every backoff and worker this link hands out.
    seed: u64,
    handed_out: Arc<AtomicU64>,
    pub health: Arc<RedisHealth>,
}

impl RedisLink {
    /// A link to the Redis of `url`, over TCP unless `dialer` says otherwise.
    pub fn new(url: &str, dialer: Option<Arc<dyn Dialer>>, seed: u64) -> Result<RedisLink, String> {
        let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL is not usable: {e}"))?;
        Ok(RedisLink { client, dialer, seed, handed_out: Arc::default(), health: Arc::default() })
    }

    /// A new connection whose every reply must come within `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        let Some(dialer) = &self.dialer else {
            return self.client.get_multiplexed_async_connection_with_config(&config).await;
        };
        let settings = self.client.get_connection_info().redis_settings();
        let connect = async {
            let stream = dialer.dial().await?;
            let (conn, driver) = MultiplexedConnection::new_with_config(settings, stream, config).await?;
            tokio::spawn(driver);
            Ok(conn)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        }
    }

    /// A fresh random generator, seeded from the link's seed and how many were handed out before.
    pub fn rng(&self) -> ChaCha8Rng {
        let n = self.handed_out.fetch_add(1, Ordering::Relaxed);
        ChaCha8Rng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn backoff(&self) -> Backoff {
        Backoff { attempt: 0, rng: self.rng() }
    }
}

/// Exponential backoff with jitter for reconnects: 100 ms doubling to 5 s.
pub struct Backoff {
    attempt: u32,
    rng: ChaCha8Rng,
}

impl Backoff {
    pub fn delay(&mut self) -> Duration {
        let base = 100u64.saturating_mul(1 << self.attempt.min(6)).min(5_000);
        self.attempt += 1;
        Duration::from_millis(base / 2 + self.rng.random_range(0..=base / 2))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
