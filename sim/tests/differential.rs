//! Keeps the fake Redis honest: random sequences of the stream commands the shell uses go to the
//! fake and to a real redis-server, over RESP2 and RESP3, and every reply must be the same.
//!
//! The real server is one of the test's own, on a free port. Without `redis-server` on the PATH the
//! test says so loudly and skips, unless `ALICE_REQUIRE_SERVICES=1`, where it fails.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alice_sim::redis::FakeRedis;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use redis::aio::MultiplexedConnection;
use redis::Value;

const SEQUENCES: u64 = 100;
const COMMANDS: usize = 60;
const KEYS: [&str; 2] = ["s1", "s2"];
const GROUPS: [&str; 2] = ["g1", "g2"];
const CONSUMERS: [&str; 2] = ["c1", "c2"];

struct RealRedis {
    child: Child,
    port: u16,
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_real() -> Option<RealRedis> {
    let port = free_port();
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Some(RealRedis { child, port }),
        Err(e) => {
            if std::env::var("ALICE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!("ALICE_REQUIRE_SERVICES=1 but redis-server could not start: {e}");
            }
            eprintln!(
                "\n!!! SKIPPED: redis-server could not start ({e}); the fake Redis was not compared !!!\n"
            );
            None
        }
    }
}

async fn connect(port: u16, resp3: bool) -> MultiplexedConnection {
    let url = format!("redis://127.0.0.1:{port}/{}", if resp3 { "?protocol=resp3" } else { "" });
    let client = redis::Client::open(url).expect("a valid URL");
    for _ in 0..100 {
        if let Ok(c) = client.get_multiplexed_async_connection().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no Redis answered on port {port}");
}

/// One random command over a small key space, with explicit ids so both servers agree on them.
fn command(rng: &mut ChaCha8Rng, next_ms: &mut u64) -> Vec<String> {
    let key = KEYS[rng.random_range(0..KEYS.len())].to_owned();
    let group = GROUPS[rng.random_range(0..GROUPS.len())].to_owned();
    let consumer = CONSUMERS[rng.random_range(0..CONSUMERS.len())].to_owned();
    let some_id = |rng: &mut ChaCha8Rng, next_ms: u64| {
        format!("{}-{}", rng.random_range(0..next_ms + 2), rng.random_range(0..2))
    };
    let count = rng.random_range(1..5).to_string();
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match rng.random_range(0..20) {
        0..=4 => {
            let id = if rng.random_bool(0.9) {
                *next_ms += rng.random_range(0..3);
                format!("{}-{}", *next_ms, rng.random_range(0..3))
            } else {
                some_id(rng, *next_ms)
            };
            let mut c = words(&["XADD", &key]);
            if rng.random_bool(0.2) {
                c.extend(words(&["MAXLEN", "=", &rng.random_range(1..6).to_string()]));
            } else if rng.random_bool(0.1) {
                // As the shell trims the bus: approximately, far above what the test writes.
                c.extend(words(&["MAXLEN", "~", "100000"]));
            }
            c.extend(words(&[&id, "f", &rng.random_range(0..100).to_string()]));
            c
        }
        5 => words(&["XLEN", &key]),
        6 => words(&["XRANGE", &key, "-", "+", "COUNT", &count]),
        7 => words(&["XREVRANGE", &key, "+", &format!("({}", some_id(rng, *next_ms)), "COUNT", &count]),
        8 => words(&["XDEL", &key, &some_id(rng, *next_ms)]),
        9 => words(&["XREAD", "COUNT", &count, "STREAMS", &key, &some_id(rng, *next_ms)]),
        10 => words(&["XREAD", "STREAMS", "s1", "s2", &some_id(rng, *next_ms), "0"]),
        // Redis checks blocked clients' timeouts about every 100 ms: block for real only rarely.
        11 if rng.random_bool(0.1) => words(&["XREAD", "BLOCK", "5", "STREAMS", &key, "$"]),
        11 => words(&["XREAD", "BLOCK", "5", "STREAMS", &key, "0"]),
        12 => {
            let start = if rng.random_bool(0.5) { "0" } else { "$" };
            let mut c = words(&["XGROUP", "CREATE", &key, &group, start]);
            if rng.random_bool(0.7) {
                c.push("MKSTREAM".into());
            }
            c
        }
        13..=14 => {
            let from = if rng.random_bool(0.6) { ">" } else { "0" };
            words(&["XREADGROUP", "GROUP", &group, &consumer, "COUNT", &count, "STREAMS", &key, from])
        }
        15 if rng.random_bool(0.1) => {
            words(&["XREADGROUP", "GROUP", &group, &consumer, "BLOCK", "5", "STREAMS", &key, ">"])
        }
        15 => words(&["XREADGROUP", "GROUP", &group, &consumer, "BLOCK", "5", "STREAMS", &key, "0"]),
        16 => words(&["XACK", &key, &group, &some_id(rng, *next_ms), &some_id(rng, *next_ms)]),
        17 => {
            // Idle 0 claims everything; an hour claims nothing but still drops deleted entries.
            let idle = if rng.random_bool(0.7) { "0" } else { "3600000" };
            let start = if rng.random_bool(0.5) { "0-0".to_owned() } else { some_id(rng, *next_ms) };
            let mut c = words(&["XAUTOCLAIM", &key, &group, &consumer, idle, &start, "COUNT", &count]);
            if rng.random_bool(0.3) {
                c.push("JUSTID".into());
            }
            c
        }
        18 => words(&["DEL", &key]),
        _ => match rng.random_range(0..4) {
            0 => words(&["XADD", &key, "0-0", "f", "v"]),
            1 => words(&["XADD", &key, "not-an-id", "f", "v"]),
            2 => words(&["XADD", &key, "5-1", "f"]),
            _ => words(&["XREAD", "STREAMS", &key]),
        },
    }
}

async fn query(conn: &mut MultiplexedConnection, args: &[String]) -> Result<Value, String> {
    let mut cmd = redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a);
    }
    cmd.query_async::<Value>(conn).await.map_err(|e| e.to_string())
}

/// Serves a fake Redis on a local port; returns the port.
async fn start_fake() -> u16 {
    let fake = FakeRedis::new(
        std::sync::Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        }),
        0,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let fake_port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let fake = fake.clone();
            tokio::spawn(async move { fake.serve(stream).await });
        }
    });
    fake_port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_redis_answers_as_redis_does() {
    let Some(real) = start_real() else { return };
    let fake_port = start_fake().await;

    let mut compared = 0;
    for resp3 in [false, true] {
        let mut theirs = connect(real.port, resp3).await;
        let mut ours = connect(fake_port, resp3).await;
        for sequence in 0..SEQUENCES {
            let seed = sequence + if resp3 { 1 << 32 } else { 0 };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for conn in [&mut theirs, &mut ours] {
                query(conn, &["FLUSHALL".into()]).await.expect("FLUSHALL");
            }
            let mut next_ms = 1;
            let mut history = Vec::new();
            for _ in 0..COMMANDS {
                let args = command(&mut rng, &mut next_ms);
                let (want, got) = (query(&mut theirs, &args).await, query(&mut ours, &args).await);
                history.push(args.join(" "));
                assert_eq!(
                    got,
                    want,
                    "the fake differs from redis-server (RESP{}, sequence seed {seed}) after:\n  {}",
                    if resp3 { 3 } else { 2 },
                    history.join("\n  ")
                );
                compared += 1;
            }
        }
    }
    println!("{compared} replies compared, all equal");
}

/// A read blocked on an empty stream is woken by another connection's write, and replies with
/// exactly that entry, on both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_reads_wake_on_a_write() {
    let Some(real) = start_real() else { return };
    let fake_port = start_fake().await;
    let blocked = [
        "XREAD BLOCK 5000 STREAMS s1 $",
        "XREADGROUP GROUP g1 c1 BLOCK 5000 STREAMS s1 >",
        "XREADGROUP GROUP g1 c1 COUNT 5 STREAMS s1 0",
    ];
    let mut replies = Vec::new();
    for port in [real.port, fake_port] {
        let mut reader = connect(port, false).await;
        let mut writer = connect(port, false).await;
        let words = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        query(&mut writer, &words("FLUSHALL")).await.expect("FLUSHALL");
        query(&mut writer, &words("XGROUP CREATE s1 g1 $ MKSTREAM")).await.expect("a group");
        let mut seen = Vec::new();
        for (n, line) in blocked.iter().enumerate() {
            let args = words(line);
            let read = tokio::spawn(async move { query(&mut reader, &args).await.map(|v| (v, reader)) });
            tokio::time::sleep(Duration::from_millis(200)).await;
            let id = format!("{}-1", n + 1);
            query(&mut writer, &words(&format!("XADD s1 {id} f {n}"))).await.expect("XADD");
            let (value, back) = read.await.expect("the reader").expect("a reply");
            reader = back;
            seen.push(value);
        }
        replies.push(seen);
    }
    assert_eq!(replies[1], replies[0], "the fake woke differently from redis-server");
}
