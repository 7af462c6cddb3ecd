//! The honest load: readers sending `reader-event`s at a fixed rate and consultants subscribed to
//! everything, timing each `reader-activity` on arrival (one process, one clock).
//!
//! A run is cut into phases. Every event carries the phase it was sent in, so its delivery counts
//! there even when it lands after the next phase began: loss and latency are exact per phase.
//! Phase 0 is the warm-up and is never counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::usage::{micros_histogram, percentiles};
use crate::wire;

/// What the honest clients saw in one phase.
pub struct PhaseTally {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub latency: Mutex<Histogram<u64>>,
}

impl PhaseTally {
    fn new() -> PhaseTally {
        PhaseTally {
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            latency: Mutex::new(micros_histogram()),
        }
    }

    /// The phase's figures; every event sent and not refused should reach each of `consultants`.
    pub fn report(&self, seconds: f64, consultants: usize) -> Value {
        let (sent, refused) = (self.sent.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed));
        let delivered = self.delivered.load(Ordering::Relaxed);
        let expected = sent.saturating_sub(refused) * consultants as u64;
        let latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "seconds": seconds,
            "sent": sent,
            "accepted": self.accepted.load(Ordering::Relaxed),
            "refused": refused,
            "delivered": delivered,
            "expectedDeliveries": expected,
            "lost": expected.saturating_sub(delivered),
            "duplicates": self.duplicates.load(Ordering::Relaxed),
            "deliveredPerSecond": delivered as f64 / seconds.max(1e-9),
            "latencyMicros": percentiles(&latency),
        })
    }
}

/// The shared state of an honest load.
pub struct Load {
    epoch: Instant,
    phase: AtomicUsize,
    phases: Vec<PhaseTally>,
    stop: AtomicBool,
    /// Time to complete both handshakes, for every honest connection.
    pub connect: Mutex<Histogram<u64>>,
}

impl Load {
    /// A load with `phases` phases besides the warm-up (phase 0).
    pub fn new(phases: usize) -> Arc<Load> {
        Arc::new(Load {
            epoch: Instant::now(),
            phase: AtomicUsize::new(0),
            phases: (0..=phases).map(|_| PhaseTally::new()).collect(),
            stop: AtomicBool::new(false),
            connect: Mutex::new(micros_histogram()),
        })
    }

    /// Events sent from now on count in `phase`.
    pub fn enter(&self, phase: usize) {
        self.phase.store(phase.min(self.phases.len() - 1), Ordering::Relaxed);
    }

    /// The phase events are counted in now.
    pub fn phase(&self) -> usize {
        self.phase.load(Ordering::Relaxed)
    }

    pub fn tally(&self, phase: usize) -> &PhaseTally {
        &self.phases[phase]
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn now_micros(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn current(&self) -> &PhaseTally {
        &self.phases[self.phase.load(Ordering::Relaxed)]
    }

    /// Connects, recording the handshakes' time.
    pub async fn connect(&self, url: &str, token: &str) -> Result<wire::Ws, String> {
        let started = Instant::now();
        let ws = wire::connect(url, token).await?;
        let _ = self
            .connect
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(started.elapsed().as_micros() as u64);
        Ok(ws)
    }
}

/// A consultant subscribed to every event, counting each delivery in the phase it was sent in.
/// Each reader's events arrive in the order it sent them (one log order), so a delivery at or
/// behind the last one seen from its reader is a repeat (or out of order), and is counted as a
/// duplicate; one number per reader keeps that check from growing with the run.
pub async fn consultant(url: String, token: String, id: String, load: Arc<Load>) -> Result<(), String> {
    let mut ws = load.connect(&url, &token).await?;
    let subscribe = json!(["subscribe-consultant", {"consultantId": id}]);
    ws.send(Message::text(format!("42{subscribe}"))).await.map_err(|e| e.to_string())?;
    let mut last: HashMap<u64, u64> = HashMap::new();
    while !load.stopped() {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await else {
            continue;
        };
        let Message::Text(t) = msg else { continue };
        if t.as_str() == "2" {
            let _ = ws.send(Message::text("3")).await;
            continue;
        }
        let Some(body) = t.strip_prefix("42") else { continue };
        if !body.starts_with("[\"reader-activity\"") {
            continue;
        }
        let now = load.now_micros();
        let Ok(v) = serde_json::from_str::<Value>(body) else { continue };
        let data = &v[1]["data"];
        let (Some(sent), Some(reader), Some(seq), Some(phase)) =
            (data["t"].as_u64(), data["r"].as_u64(), data["s"].as_u64(), data["p"].as_u64())
        else {
            continue;
        };
        let Some(tally) = load.phases.get(phase as usize).filter(|_| phase > 0) else { continue };
        let newest = last.entry(reader).or_insert(0);
        if seq <= *newest {
            tally.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        *newest = seq;
        tally.delivered.fetch_add(1, Ordering::Relaxed);
        let _ =
            tally.latency.lock().unwrap_or_else(|e| e.into_inner()).record(now.saturating_sub(sent).max(1));
    }
    Ok(())
}

/// A reader sending one `PAGE_TURN` every `interval`, its first send offset by its index so the
/// readers together send evenly.
pub async fn reader(
    url: String,
    token: String,
    index: u64,
    interval: Duration,
    load: Arc<Load>,
) -> Result<(), String> {
    let ws = load.connect(&url, &token).await?;
    let (mut tx, mut rx) = ws.split();
    // The reading task cannot write: it counts pings, and the writer answers them.
    let pings = Arc::new(AtomicU64::new(0));
    let reads = {
        let (load, pings) = (load.clone(), pings.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(t) = msg else { continue };
                if t.as_str() == "2" {
                    pings.fetch_add(1, Ordering::Relaxed);
                } else if t.starts_with("42[\"reader-event-received\"") {
                    load.current().accepted.fetch_add(1, Ordering::Relaxed);
                } else if t.starts_with("42[\"event-error\"") {
                    load.current().refused.fetch_add(1, Ordering::Relaxed);
                }
                if load.stopped() {
                    break;
                }
            }
        })
    };
    tokio::time::sleep(interval.mul_f64((index % 97) as f64 / 97.0)).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while !load.stopped() {
        ticker.tick().await;
        seq += 1;
        let phase = load.phase.load(Ordering::Relaxed);
        if phase > 0 {
            load.phases[phase].sent.fetch_add(1, Ordering::Relaxed);
        }
        let event = json!(["reader-event", {"eventType": "PAGE_TURN",
            "data": {"t": load.now_micros(), "r": index, "s": seq, "p": phase, "bookId": "b", "page": seq}}]);
        if tx.send(Message::text(format!("42{event}"))).await.is_err() {
            break;
        }
        while pings.load(Ordering::Relaxed) > 0 {
            pings.fetch_sub(1, Ordering::Relaxed);
            if tx.send(Message::text("3")).await.is_err() {
                break;
            }
        }
    }
    reads.abort();
    Ok(())
}
