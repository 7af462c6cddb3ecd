//! The load generator: many Socket.IO v4 clients over websockets from one process. Readers send
//! `reader-event`s carrying their send time; subscribed consultants receive `reader-activity`.
//! It reports delivered messages per second, one-way latency percentiles, loss, duplicates,
//! connect times, and the CPU and memory of the servers under test (from /proc) and of itself,
//! as JSON on stdout.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug, Clone)]
#[command(about = "Socket.IO load generator for Alice Realtime (and the Node reference server)")]
struct Args {
    /// Server base URLs (http://host:port); clients are spread over them in turn.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// HS256 secret to sign the clients' tokens with.
    #[arg(long, default_value = "bench-secret-0123456789abcdef")]
    secret: String,
    #[arg(long, default_value_t = 500)]
    readers: usize,
    #[arg(long, default_value_t = 10)]
    consultants: usize,
    /// Extra idle reader connections, to measure memory per connection.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// The role of the idle connections (reader or consultant).
    #[arg(long, default_value = "reader")]
    idle_role: String,
    /// Total reader events per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Process ids of the servers under test (for CPU and memory from /proc).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// A label for the report.
    #[arg(long, default_value = "alice")]
    label: String,
    /// The cluster's Redis (host:port): its commands over the window are counted per accepted
    /// event, from `INFO commandstats`.
    #[arg(long)]
    redis: Option<String>,
}

/// Calls per Redis command so far, from `INFO commandstats` over a plain RESP connection.
async fn redis_calls(addr: &str) -> std::collections::BTreeMap<String, u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut calls = std::collections::BTreeMap::new();
    let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await else { return calls };
    if conn.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n").await.is_err() {
        return calls;
    }
    // A bulk string: `$<len>\r\n<text>\r\n`.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Ok(n) = conn.read(&mut chunk).await else { return calls };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n") {
            let len: usize = head.trim_start_matches('$').parse().unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    for line in String::from_utf8_lossy(&buf).lines() {
        // cmdstat_xadd:calls=123,usec=...
        let Some((name, stats)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let n = stats.split(',').find_map(|kv| kv.strip_prefix("calls=")).and_then(|v| v.parse().ok());
        calls.insert(name.to_owned(), n.unwrap_or(0));
    }
    calls
}

/// Shared counters of one run.
#[derive(Default)]
struct Tally {
    /// Reader events sent while the measurement window was open.
    sent_in_window: AtomicU64,
    /// Whether events sent now are measured.
    window: AtomicBool,
    accepted: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
    latency: Mutex<Option<Histogram<u64>>>,
    connect: Mutex<Option<Histogram<u64>>>,
}

fn token(secret: &str, sub: &str, role: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claims = json!({"sub": sub, "role": role, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a websocket and completes the Engine.IO and Socket.IO handshakes.
async fn connect(url: &str, tok: &str, tally: &Tally) -> Result<Ws, String> {
    let started = Instant::now();
    let ws_url = format!("{}/socket.io/?EIO=4&transport=websocket", url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => break,
            Some(Ok(_)) => continue,
            _ => return Err("closed before open".into()),
        }
    }
    ws.send(Message::text(format!("40{}", json!({"token": tok})))).await.map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("40") => break,
            Some(Ok(Message::Text(t))) if t.starts_with("44") => return Err(format!("refused: {t}")),
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.map_err(|e| e.to_string())?
            }
            Some(Ok(_)) => continue,
            _ => return Err("closed before connect".into()),
        }
    }
    if let Some(h) = tally.connect.lock().unwrap().as_mut() {
        let _ = h.record(started.elapsed().as_micros() as u64);
    }
    Ok(ws)
}

fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

async fn consultant(
    url: String,
    tok: String,
    id: String,
    tally: Arc<Tally>,
    epoch: Instant,
) -> Result<(), String> {
    let mut ws = connect(&url, &tok, &tally).await?;
    let sub = json!(["subscribe-consultant", {"consultantId": id}]);
    ws.send(Message::text(format!("42{sub}"))).await.map_err(|e| e.to_string())?;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    while !tally.stop.load(Ordering::Relaxed) {
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
        let now = micros_since(epoch);
        let Ok(v) = serde_json::from_str::<Value>(body) else { continue };
        let data = &v[1]["data"];
        let (Some(sent), Some(reader), Some(seq)) =
            (data["t"].as_u64(), data["r"].as_u64(), data["s"].as_u64())
        else {
            continue;
        };
        if data["w"].as_bool() == Some(true) || !tally.measuring.load(Ordering::Relaxed) {
            continue;
        }
        if !seen.insert((reader, seq)) {
            tally.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tally.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = tally.latency.lock().unwrap().as_mut() {
            let _ = h.record(now.saturating_sub(sent).max(1));
        }
    }
    Ok(())
}

async fn reader(
    url: String,
    tok: String,
    index: u64,
    interval: Duration,
    tally: Arc<Tally>,
    epoch: Instant,
) -> Result<(), String> {
    let ws = connect(&url, &tok, &tally).await?;
    let (mut tx, mut rx) = ws.split();
    // The reading task cannot write: it counts pings, and the writer answers them.
    let pings = Arc::new(AtomicU64::new(0));
    let reads = {
        let (tally, pings) = (tally.clone(), pings.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(t) = msg else { continue };
                if t.as_str() == "2" {
                    pings.fetch_add(1, Ordering::Relaxed);
                } else if t.starts_with("42[\"reader-event-received\"") {
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                } else if t.starts_with("42[\"event-error\"") {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                }
                if tally.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    // Spread readers' first sends over one interval so the load is even.
    tokio::time::sleep(interval.mul_f64((index % 97) as f64 / 97.0)).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while !tally.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        seq += 1;
        let warm = !tally.window.load(Ordering::Relaxed);
        if !warm {
            tally.sent_in_window.fetch_add(1, Ordering::Relaxed);
        }
        let ev = json!(["reader-event", {"eventType": "PAGE_TURN",
            "data": {"t": micros_since(epoch), "r": index, "s": seq, "w": warm, "bookId": "b", "page": seq}}]);
        if tx.send(Message::text(format!("42{ev}"))).await.is_err() {
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

/// (utime + stime) in seconds, and resident memory in KiB, of a process.
fn proc_usage(pid: &str) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some((ticks as f64 / 100.0, rss))
}

fn servers_usage(pids: &[u32]) -> (f64, u64) {
    pids.iter().filter_map(|p| proc_usage(&p.to_string())).fold((0.0, 0), |(c, m), (c2, m2)| (c + c2, m + m2))
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999), "max": h.max(), "count": h.len(),
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let tally = Arc::new(Tally::default());
    *tally.latency.lock().unwrap() = Some(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap());
    *tally.connect.lock().unwrap() = Some(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap());
    let epoch = Instant::now();
    let url = |i: usize| args.urls[i % args.urls.len()].clone();
    let (_, rss_before) = servers_usage(&args.server_pids);

    let mut tasks = Vec::new();
    for i in 0..args.consultants {
        let id = format!("bench-c{i}");
        let tok = token(&args.secret, &id, "consultant");
        tasks.push(tokio::spawn(consultant(url(i), tok, id, tally.clone(), epoch)));
    }
    // Idle connections, opened before the load, held until the end.
    let mut idle = Vec::new();
    for i in 0..args.idle {
        let tok = token(&args.secret, &format!("bench-idle{i}"), &args.idle_role);
        match connect(&url(i), &tok, &tally).await {
            Ok(ws) => idle.push(ws),
            Err(e) => eprintln!("idle connection {i}: {e}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rss_idle) = servers_usage(&args.server_pids);

    let per_reader = args.rate / args.readers.max(1) as f64;
    let interval = Duration::from_secs_f64(1.0 / per_reader.max(0.001));
    let warmup_until = Instant::now() + Duration::from_secs(args.warmup) + Duration::from_secs(2);
    for i in 0..args.readers {
        let tok = token(&args.secret, &format!("bench-r{i}"), "reader");
        tasks.push(tokio::spawn(reader(url(i), tok, i as u64, interval, tally.clone(), epoch)));
    }
    tokio::time::sleep_until((warmup_until).into()).await;
    let (cpu0, _) = servers_usage(&args.server_pids);
    let (own0, _) = proc_usage("self").unwrap_or((0.0, 0));
    let accepted0 = tally.accepted.load(Ordering::Relaxed);
    let refused0 = tally.refused.load(Ordering::Relaxed);
    let redis0 = match &args.redis {
        Some(addr) => redis_calls(addr).await,
        None => Default::default(),
    };
    tally.measuring.store(true, Ordering::Relaxed);
    tally.window.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    tally.window.store(false, Ordering::Relaxed);
    let accepted = tally.accepted.load(Ordering::Relaxed) - accepted0;
    let elapsed = started.elapsed().as_secs_f64();
    let redis1 = match &args.redis {
        Some(addr) => redis_calls(addr).await,
        None => Default::default(),
    };
    // The counting itself is one INFO at each end.
    let redis_commands: std::collections::BTreeMap<&String, u64> = redis1
        .iter()
        .map(|(name, n)| (name, n - redis0.get(name).copied().unwrap_or(0) - u64::from(name == "info")))
        .filter(|(_, n)| *n > 0)
        .collect();
    let redis_total: u64 = redis_commands.values().sum();
    let (cpu1, rss_loaded) = servers_usage(&args.server_pids);
    let (own1, _) = proc_usage("self").unwrap_or((0.0, 0));
    // Let in-flight deliveries land, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tally.measuring.store(false, Ordering::Relaxed);
    tally.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    drop(idle);

    let delivered = tally.delivered.load(Ordering::Relaxed);
    let refused = tally.refused.load(Ordering::Relaxed) - refused0;
    let sent = tally.sent_in_window.load(Ordering::Relaxed);
    // Every event sent in the window and not refused reaches every consultant (all subscribe to all).
    let expected = sent.saturating_sub(refused) * args.consultants as u64;
    let latency = tally.latency.lock().unwrap().take().unwrap();
    let connect = tally.connect.lock().unwrap().take().unwrap();
    let server_cpu = cpu1 - cpu0;
    let own_cpu = own1 - own0;
    let report = json!({
        "label": args.label,
        "urls": args.urls,
        "readers": args.readers,
        "consultants": args.consultants,
        "idleConnections": args.idle,
        "targetRate": args.rate,
        "seconds": elapsed,
        "sent": sent,
        "accepted": accepted,
        "refused": refused,
        "delivered": delivered,
        "expectedDeliveries": expected,
        "lost": expected.saturating_sub(delivered),
        "duplicates": tally.duplicates.load(Ordering::Relaxed),
        "redisCommands": redis_commands,
        "redisCommandsPerAccepted": if accepted > 0 { redis_total as f64 / accepted as f64 } else { 0.0 },
        "deliveredPerSecond": delivered as f64 / elapsed,
        "latencyMicros": percentiles(&latency),
        "connectMicros": percentiles(&connect),
        "server": {
            "pids": args.server_pids,
            "rssBeforeKiB": rss_before,
            "rssWithIdleKiB": rss_idle,
            "rssLoadedKiB": rss_loaded,
            "bytesPerIdleConnection": if args.idle > 0 { (rss_idle.saturating_sub(rss_before) * 1024) as f64 / args.idle as f64 } else { 0.0 },
            "cpuSeconds": server_cpu,
            "cpuMicrosPerDelivery": if delivered > 0 { server_cpu * 1e6 / delivered as f64 } else { 0.0 },
        },
        "generator": {
            "cpuSeconds": own_cpu,
            "cpuMicrosPerDelivery": if delivered > 0 { own_cpu * 1e6 / delivered as f64 } else { 0.0 },
        },
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
