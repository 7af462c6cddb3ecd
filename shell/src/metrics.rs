//! `/metrics` through prometheus-client: the latency histograms the shell observes as events and
//! handshakes pass, and at each scrape the core's counters and gauges from the driver's snapshot.
//! One registry per server, never a global one: tests and the simulation run several servers in
//! one process, and each must report only its own.

use std::time::Duration;

use alice_core::ErrorCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::driver::Snapshot;

/// The `Content-Type` of what [`Metrics::render`] writes (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// 100 µs to about 13 s, doubling: a delivery on an idle node takes well under a millisecond, a
/// store batch behind a busy database seconds.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_1, 2.0, 18)
}

fn histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Which Redis command a latency is of.
pub type RedisCommand = [(&'static str, &'static str); 1];

/// The histograms, shared by the tasks that observe them.
pub struct Metrics {
    registry: Registry,
    /// From an event's acceptance to the log's holding it (its receipt may go out then).
    pub durable: Histogram,
    /// From the moment an event became visible on this node (the log confirmed this node's append,
    /// or this node read it from the cluster's log) to its hand-off to each recipient's socket.
    pub delivered: Histogram,
    /// One append to the log: a SQLite commit, an outbox commit or a Redis pipeline.
    pub append: Histogram,
    /// One batch written to the event store (behind an outbox, or from the cluster's log).
    pub store_batch: Histogram,
    /// One Redis command (or pipeline) by what it was for.
    pub redis: Family<RedisCommand, Histogram, fn() -> Histogram>,
    /// From a Socket.IO CONNECT to its answer (accepted or refused).
    pub handshake: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("alice");
        let metrics = Metrics {
            durable: histogram(),
            delivered: histogram(),
            append: histogram(),
            store_batch: histogram(),
            redis: Family::new_with_constructor(histogram),
            handshake: histogram(),
            registry: Registry::default(),
        };
        let seconds = [
            ("event_durable", "From an event's acceptance to the log holding it", &metrics.durable),
            (
                "delivery",
                "From an event becoming visible on this node to its hand-off to a recipient's socket, per delivery",
                &metrics.delivered,
            ),
            ("log_append", "One append to the log (a commit, or a Redis pipeline)", &metrics.append),
            ("store_batch", "One batch written to the event store", &metrics.store_batch),
            ("handshake", "From a Socket.IO CONNECT to its answer", &metrics.handshake),
        ];
        for (name, help, h) in seconds {
            registry.register_with_unit(name, help, Unit::Seconds, h.clone());
        }
        registry.register_with_unit(
            "redis_command",
            "One Redis command or pipeline, by what it was for",
            Unit::Seconds,
            metrics.redis.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// Observes a duration in seconds.
    pub fn observe(h: &Histogram, took: Duration) {
        h.observe(took.as_secs_f64());
    }

    /// Observes one Redis command (or pipeline) of a kind.
    pub fn redis_command(&self, command: &'static str, took: Duration) {
        self.redis.get_or_create(&[("command", command)]).observe(took.as_secs_f64());
    }

    /// The histograms, then the snapshot's counters and gauges and `extra` gauges, as Prometheus
    /// text.
    pub fn render(&self, snap: &Snapshot, extra: Vec<Gauge>) -> String {
        let mut scrape = Registry::with_prefix("alice");
        scrape.register_collector(Box::new(SnapshotFigures { snap: snap.clone(), extra }));
        let mut out = String::new();
        let encode = prometheus_client::encoding::prometheus_text::encode;
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry).and_then(|()| encode(&mut out, &scrape));
        out
    }
}

/// A gauge read at the scrape: name (without the `alice_` prefix), help, value.
pub type Gauge = (&'static str, &'static str, i64);

/// The core's counters and gauges as of one snapshot.
#[derive(Debug)]
struct SnapshotFigures {
    snap: Snapshot,
    extra: Vec<Gauge>,
}

impl Collector for SnapshotFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (s, snap) = (&self.snap.stats, &self.snap);
        let gauges: [Gauge; 6] = [
            ("connections", "Sockets connected to this node", s.connections as i64),
            ("online_readers", "Distinct readers online in the cluster", s.online_readers as i64),
            (
                "queue_size",
                "Accepted events this node holds: waiting for the log or the store",
                s.queue_size as i64,
            ),
            ("dlq_size", "Dead-lettered events awaiting replay", s.dlq_size as i64),
            ("history_size", "Recent events held in memory", s.history_size as i64),
            ("bus_outbox", "Bus messages waiting for Redis on this node", s.bus_outbox as i64),
        ];
        let capacity = [(
            "queue_capacity",
            "Events the queue holds before new ones are refused",
            s.queue_capacity as i64,
        )];
        for (name, help, value) in gauges.iter().chain(&capacity).chain(&self.extra) {
            let gauge = ConstGauge::new(*value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Some(heard) = s.bus_last_self_heard {
            // This node's own heartbeats come back over the bus three times per presence TTL.
            let silence = ConstGauge::new(snap.now.since(heard) as f64 / 1000.0);
            let help = "Time since this node last heard its own message on the bus";
            silence.encode(encoder.encode_descriptor(
                "bus_silence",
                help,
                Some(&Unit::Seconds),
                silence.metric_type(),
            )?)?;
        }
        let counters: [(&str, &str, u64); 20] = [
            ("events_accepted", "Reader events accepted by this node", s.events_accepted),
            ("deliveries", "reader-activity messages sent to sockets", s.deliveries),
            ("events_dead_lettered", "Events moved to the dead-letter queue", s.events_dead_lettered),
            ("connects_refused", "Handshakes refused", s.connects_refused),
            (
                "slow_consumers_disconnected",
                "Sockets closed for not keeping up",
                snap.slow_consumers_disconnected,
            ),
            ("log_appends", "Appends to the log that succeeded", snap.appends.ok),
            ("log_append_failures", "Appends to the log that failed", snap.appends.failed),
            ("store_batches", "Store batch writes from the outbox that succeeded", snap.store.ok),
            ("store_batch_failures", "Store batch writes that failed", snap.store.failed),
            ("bus_duplicates", "Bus messages dropped as duplicates", s.bus_duplicates),
            ("bus_gaps", "Bus messages missed (sequence gaps)", s.bus_gaps),
            ("log_duplicates", "Log entries dropped as repeats", s.log_duplicates),
            ("bus_dropped", "Bus messages dropped from a full outbox", s.bus_dropped),
            ("bus_repairs", "Times a silent bus was read over a fresh connection", s.bus_repairs),
            ("log_gaps", "Log entries skipped when a later one of their origin was read", s.log_gaps),
            ("log_late", "Log entries read after a later one of their origin (a retried append)", s.log_late),
            ("remote_events", "Events received from other nodes", s.remote_events),
            (
                "node_id_shared",
                "Bus messages from another process with this node's NODE_ID (each node needs its own)",
                s.node_id_shared,
            ),
            ("replayed_events", "Events sent by resumes and recoveries", s.replayed),
            (
                "duplicate_events",
                "Reader events not accepted again: their clientEventId was accepted before",
                s.duplicates,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let mut refused = encoder.encode_descriptor(
            "events_refused",
            "Client events refused, by code",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for code in ErrorCode::ALL {
            let n = s.refused.get(&code).copied().unwrap_or(0);
            let labels = [("code", code.as_str())];
            ConstCounter::new(n).encode(refused.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
