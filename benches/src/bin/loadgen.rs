//! The load generator: many Socket.IO v4 clients over websockets from one process. Readers send
//! `reader-event`s carrying their send time; subscribed consultants receive `reader-activity`.
//! It reports delivered messages per second, one-way latency percentiles, loss, duplicates,
//! connect times, and the CPU and memory of the servers under test (from /proc) and of itself,
//! as JSON on stdout.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alice_benches::honest::{self, Load};
use alice_benches::usage::{percentiles, proc_usage, servers_usage};
use alice_benches::wire::token;
use clap::Parser;
use serde_json::json;

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

/// The measured window is phase 1; events sent after it (phase 2) are not counted.
const MEASURED: usize = 1;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let load = Load::new(2);
    let url = |i: usize| args.urls[i % args.urls.len()].clone();
    let (_, rss_before) = servers_usage(&args.server_pids);

    let mut tasks = Vec::new();
    for i in 0..args.consultants {
        let id = format!("bench-c{i}");
        let tok = token(&args.secret, &id, "consultant");
        tasks.push(tokio::spawn(honest::consultant(url(i), tok, id, load.clone())));
    }
    // Idle connections, opened before the load, held until the end.
    let mut idle = Vec::new();
    for i in 0..args.idle {
        let tok = token(&args.secret, &format!("bench-idle{i}"), &args.idle_role);
        match load.connect(&url(i), &tok).await {
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
        tasks.push(tokio::spawn(honest::reader(url(i), tok, i as u64, interval, load.clone())));
    }
    tokio::time::sleep_until((warmup_until).into()).await;
    let (cpu0, _) = servers_usage(&args.server_pids);
    let (own0, _) = proc_usage("self").unwrap_or((0.0, 0));
    let redis0 = match &args.redis {
        Some(addr) => redis_calls(addr).await,
        None => Default::default(),
    };
    load.enter(MEASURED);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    load.enter(MEASURED + 1);
    let tally = load.tally(MEASURED);
    let accepted = tally.accepted.load(Ordering::Relaxed);
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
    load.stop();
    for t in tasks {
        t.abort();
    }
    drop(idle);

    let delivered = tally.delivered.load(Ordering::Relaxed);
    let server_cpu = cpu1 - cpu0;
    let own_cpu = own1 - own0;
    let mut report = json!({
        "label": args.label,
        "urls": args.urls,
        "readers": args.readers,
        "consultants": args.consultants,
        "idleConnections": args.idle,
        "targetRate": args.rate,
        "redisCommands": redis_commands,
        "redisCommandsPerAccepted": if accepted > 0 { redis_total as f64 / accepted as f64 } else { 0.0 },
        "connectMicros": percentiles(&load.connect.lock().unwrap_or_else(|e| e.into_inner())),
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
    // Every event sent in the window and not refused reaches every consultant (all subscribe to all).
    if let (Some(report), serde_json::Value::Object(window)) =
        (report.as_object_mut(), tally.report(elapsed, args.consultants))
    {
        report.extend(window);
    }
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
}
